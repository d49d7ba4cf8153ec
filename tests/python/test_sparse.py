"""Sparse residual deltas (sresid_sparse_*, sr-compress, sr-apply) against
numpy on the fixture pair and on synthetic data. The delta files and the
applied models are read here with json + struct + numpy, never through the
library.

Run from the repository root:
    /usr/bin/python3 -m unittest tests.python.test_sparse -v
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BASE = os.path.join(FIXTURES, "faceapi.face_landmark_68_model.f32.safetensors")
TRAINED = os.path.join(FIXTURES, "faceapi.face_expression_model.f32.safetensors")
COMPRESS = os.path.join(ROOT, "bin", "sr-compress")
APPLY = os.path.join(ROOT, "bin", "sr-apply")

NP_OF = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "U8": "<u1", "U16": "<u2",
         "U32": "<u4", "U64": "<u8"}


def st_read(path):
    """(header dict, {name: ndarray}) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[b:en], dtype=NP_OF[e["dtype"]]).reshape(e["shape"])
    return header, out


def st_write(path, tensors, metadata=None):
    header = {} if metadata is None else {"__metadata__": metadata}
    blobs, off = [], 0
    for name, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr, dtype=np.dtype(NP_OF[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def pairs_of(base, trained):
    """Paired (name, base, trained) in base file order (by data offset)."""
    hb, tb = st_read(base)
    ht, tt = st_read(trained)
    names = sorted((k for k in tb if k in tt and tb[k].shape == tt[k].shape),
                   key=lambda k: hb[k]["data_offsets"][0])
    return [(k, tb[k], tt[k]) for k in names]


def decode_delta(path):
    """{name: (positions, values, lo or None)} and the metadata of a delta."""
    header, t = st_read(path)
    meta = header["__metadata__"]
    out = {}
    for e in json.loads(meta["tensors"]):
        name = e["name"]
        pos = np.cumsum(t[name + ".idx"].astype(np.uint64), dtype=np.uint64)
        val = t[name + ".val"]
        if meta["value_dtype"] == "BF16":
            val = (val.astype(np.uint32) << 16).view(np.float32)
        out[name] = (pos, val.astype(np.float32), t.get(name + ".lo"))
    return out, meta


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & 0xFFFFFFFFFFFFFFFF


def mix64(z):
    m = 0xFFFFFFFFFFFFFFFF
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def dare_keep(seed, index, n, p):
    """The DARE draws of docs/sparse.md: xoshiro256** seeded by splitmix64."""
    m = 0xFFFFFFFFFFFFFFFF
    s0 = mix64(seed ^ mix64(index))
    s = [mix64((s0 + i * 0x9E3779B97F4A7C15) & m) for i in range(4)]
    keep = np.zeros(n, dtype=bool)
    for j in range(n):
        out = (rotl((s[1] * 5) & m, 7) * 9) & m
        t = (s[1] << 17) & m
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        keep[j] = (out >> 11) * 2.0 ** -53 < p
    return keep


class FixturePair(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sr-sparse-py.")
        cls.pairs = pairs_of(BASE, TRAINED)
        cls.res = {k: (t - b).ravel() for k, b, t in cls.pairs}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_tool(self, *args):
        p = subprocess.run(list(args), capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def reference_top(self, k):
        """Global top-k by |R|, ties by tensor order then position."""
        names = [k_ for k_, _, _ in self.pairs]
        allr = np.concatenate([self.res[n] for n in names])
        tid = np.concatenate([np.full(self.res[n].size, i) for i, n in enumerate(names)])
        pos = np.concatenate([np.arange(self.res[n].size) for n in names])
        order = np.lexsort((pos, tid, -np.abs(allr).astype(np.float64)))[:k]
        sel = {n: np.sort(pos[order][tid[order] == i]) for i, n in enumerate(names)}
        return sel

    def check_apply(self, delta, sel):
        out = os.path.join(self.tmp, "applied.safetensors")
        self.run_tool(APPLY, BASE, delta, "-o", out)
        _, got = st_read(out)
        _, base = st_read(BASE)
        for name, b, t in self.pairs:
            want = b.ravel().copy()
            idx = sel[name]
            want[idx] = t.ravel()[idx]  # F32 values with low parts: exactly trained
            np.testing.assert_array_equal(got[name].ravel().view(np.uint32),
                                          want.view(np.uint32), err_msg=name)
        for name in base:  # unpaired tensors copied as they are
            if name not in self.res:
                np.testing.assert_array_equal(got[name], base[name])

    def test_top_10_percent(self):
        delta = os.path.join(self.tmp, "top10.safetensors")
        rep = os.path.join(self.tmp, "top10.json")
        self.run_tool(COMPRESS, BASE, TRAINED, "-o", delta, "--keep", "0.1",
                      "--skip-mismatched", "--json", rep)
        n = sum(r.size for r in self.res.values())
        k = math.floor(0.1 * n + 0.5)
        sel = self.reference_top(k)
        got, meta = decode_delta(delta)
        self.assertEqual(meta["format"], "sparseresid.delta")
        self.assertEqual(meta["rule"], "top")
        self.assertEqual(int(meta["kept"]), k)
        total_e = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in self.res.values())
        kept_e = 0.0
        for name, r in self.res.items():
            pos, val, _ = got[name]
            np.testing.assert_array_equal(pos, sel[name], err_msg=name)
            np.testing.assert_array_equal(val, r[pos], err_msg=name)
            kept_e += float(np.sum(r[pos].astype(np.float64) ** 2))
        report = json.load(open(rep))
        self.assertEqual(report["total"]["kept"], k)
        self.assertAlmostEqual(report["total"]["kept_energy"], kept_e / total_e, places=12)
        # relative error with exact values: sqrt of the energy left out
        self.assertAlmostEqual(report["total"]["error"], math.sqrt(1 - kept_e / total_e),
                               places=9)
        # bytes: per tensor, smallest index type of the largest code + 4 bytes a value
        for t in report["tensors"]:
            pos = got[t["name"]][0]
            codes = np.diff(pos, prepend=np.uint64(0)) if pos.size else pos
            big = int(codes.max()) if pos.size else 0
            isize = 1 if big < 256 else 2 if big < 65536 else 4 if big < 2 ** 32 else 8
            lo = 4 if got[t["name"]][2] is not None else 0
            self.assertEqual(t["bytes"], pos.size * (isize + 4 + lo), t["name"])
            self.assertEqual(t["dense_bytes"], t["numel"] * 4)
        self.check_apply(delta, sel)

    def test_energy_99_percent(self):
        delta = os.path.join(self.tmp, "e99.safetensors")
        self.run_tool(COMPRESS, BASE, TRAINED, "-o", delta, "--energy", "0.99",
                      "--skip-mismatched")
        names = [k for k, _, _ in self.pairs]
        allr = np.concatenate([self.res[n] for n in names]).astype(np.float64)
        sq = np.sort(allr ** 2)[::-1]
        k = int(np.searchsorted(np.cumsum(sq), 0.99 * sq.sum())) + 1
        sel = self.reference_top(k)
        got, meta = decode_delta(delta)
        self.assertEqual(int(meta["kept"]), k)
        for name in names:
            np.testing.assert_array_equal(got[name][0], sel[name], err_msg=name)
        self.check_apply(delta, sel)

    def test_f16_and_bf16_error_is_the_rounding_error(self):
        for dt in ("f16", "bf16"):
            delta = os.path.join(self.tmp, "half.safetensors")
            rep = os.path.join(self.tmp, "half.json")
            self.run_tool(COMPRESS, BASE, TRAINED, "-o", delta, "--keep", "0.1", "--dtype", dt,
                          "--skip-mismatched", "--json", rep)
            got, meta = decode_delta(delta)
            report = {t["name"]: t for t in json.load(open(rep))["tensors"]}
            for name, r in self.res.items():
                pos, val, lo = got[name]
                self.assertIsNone(lo)
                x = r[pos]
                if dt == "f16":
                    want = x.astype(np.float16).astype(np.float32)
                else:  # round to nearest even on the top 16 bits
                    u = x.view(np.uint32).astype(np.uint64)
                    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
                    want = u.astype(np.uint32).view(np.float32)
                np.testing.assert_array_equal(val, want, err_msg=name)
                e = np.sum(r.astype(np.float64) ** 2)
                err = np.sum(r.astype(np.float64) ** 2) - np.sum(x.astype(np.float64) ** 2) + \
                    np.sum((x.astype(np.float64) - want) ** 2)
                self.assertAlmostEqual(report[name]["error"], math.sqrt(err / e), places=10)


class Synthetic(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sr-sparse-py.")
        rng = np.random.default_rng(3)
        self.b = {"a": rng.standard_normal((37, 41)).astype(np.float32),
                  "b": rng.standard_normal(1000).astype(np.float32),
                  "e": np.zeros(0, np.float32)}
        self.t = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32)
                  for k, v in self.b.items()}
        self.bp = os.path.join(self.tmp, "b.safetensors")
        self.tp = os.path.join(self.tmp, "t.safetensors")
        st_write(self.bp, [(k, "F32", v) for k, v in self.b.items()], {"format": "pt"})
        st_write(self.tp, [(k, "F32", v) for k, v in self.t.items()])

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_dare_matches_the_documented_generator(self):
        with sr.Model.open(self.bp) as b, sr.Model.open(self.tp) as t:
            res = sr.Residual(b, t)
            names = res.names()
            with sr.Sparse.create(res, rule="dare", param=0.3, seed=42) as s:
                for i, name in enumerate(names):
                    r = (self.t[name] - self.b[name]).ravel()
                    keep = dare_keep(42, i, r.size, 0.3)
                    pos, val = s.entries(i)
                    np.testing.assert_array_equal(pos, np.nonzero(keep)[0])
                    np.testing.assert_array_equal(
                        val, (r[keep].astype(np.float64) / 0.3).astype(np.float32))
            res.close()

    def test_per_tensor_and_threshold_counts(self):
        with sr.Model.open(self.bp) as b, sr.Model.open(self.tp) as t:
            res = sr.Residual(b, t)
            with sr.Sparse.create(res, rule="top_per_tensor", param=0.37) as s:
                for i, name in enumerate(res.names()):
                    self.assertEqual(s.info(i)["kept"],
                                     math.floor(0.37 * self.b[name].size + 0.5))
            with sr.Sparse.create(res, rule="threshold", param=0.08) as s:
                for i, name in enumerate(res.names()):
                    r = self.t[name] - self.b[name]
                    self.assertEqual(s.info(i)["kept"], int(np.sum(np.abs(r) >= np.float32(0.08))))
                path = os.path.join(self.tmp, "d.safetensors")
                s.save(path)
                out = os.path.join(self.tmp, "o.safetensors")
                with sr.Sparse.load(path) as l2:
                    l2.apply(b, out, scale=2.0)
                hdr, o = st_read(out)
                self.assertEqual(hdr["__metadata__"], {"format": "pt"})
                entries, _ = decode_delta(path)
                for i, name in enumerate(res.names()):
                    r = (self.t[name] - self.b[name]).ravel()
                    want = self.b[name].ravel().copy()
                    m = np.abs(r) >= np.float32(0.08)
                    pos, val, lo = entries[name]
                    np.testing.assert_array_equal(pos, np.nonzero(m)[0])
                    if lo is None:  # float32: 2 * value, then the sum
                        want[m] = want[m] + np.float32(2) * r[m]
                    else:  # with low parts: in double, rounded once
                        want[m] = (want[m].astype(np.float64) +
                                   2 * (val.astype(np.float64) + lo)).astype(np.float32)
                    np.testing.assert_array_equal(o[name].ravel(), want)
            res.close()

    def test_tools_refuse_a_changed_base(self):
        delta = os.path.join(self.tmp, "d.safetensors")
        subprocess.run([COMPRESS, self.bp, self.tp, "-o", delta], check=True,
                       capture_output=True)
        other = os.path.join(self.tmp, "other.safetensors")
        b2 = dict(self.b)
        b2["b"] = b2["b"].copy()
        b2["b"][7] += 1
        st_write(other, [(k, "F32", v) for k, v in b2.items()])
        out = os.path.join(self.tmp, "out.safetensors")
        p = subprocess.run([APPLY, other, delta, "-o", out], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("'b'", p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1)
        self.assertFalse(os.path.exists(out))
        p = subprocess.run([APPLY, other, delta, "-o", out, "--force"], capture_output=True)
        self.assertEqual(p.returncode, 0)


if __name__ == "__main__":
    unittest.main()
