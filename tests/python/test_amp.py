"""Tests of the amplitude basis (include/sparseresid/amp.h) through the ctypes
binding, against numpy: the captured share on the bundled real pair (a
float64 numpy.linalg.svd basis and U^T R V, squared so that the singular
vectors' signs do not matter), the fractions' selections by a sort-based
reference with the same counts and tie rule, materialize / project (the
adjoint identity and direct formulas), the zero-copy score view, and export
and save / load.

Run from the repository root: make check-python, i.e.
    /usr/bin/python3 -m unittest discover -s tests/python -t . -v
"""

import json
import math
import os
import struct
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402  (needs the path and SPARSERESID_LIB above)

FIX = os.path.join(ROOT, "tests", "fixtures")
BASE = os.path.join(FIX, "faceapi.face_landmark_68_model.f32.safetensors")
TRAINED = os.path.join(FIX, "faceapi.face_expression_model.f32.safetensors")
FRACTIONS = [1.0, 0.5, 0.25, 0.1, 0.05]


def read_safetensors(path):
    """name -> (dtype, shape, raw bytes), read here without the library."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    return {name: (t["dtype"], t["shape"], raw[8 + n + t["data_offsets"][0]:
                                               8 + n + t["data_offsets"][1]])
            for name, t in hdr.items()}


def f32(entry):
    dtype, shape, data = entry
    assert dtype == "F32"
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def out_last(x):
    """The out-last matrix view: [kh, kw, in, out] -> (kh kw in) x out."""
    return x.reshape(1, -1) if x.ndim < 2 else x.reshape(-1, x.shape[-1])


def pick(key, fraction, segments):
    """Top floor(f n + 1/2) of each segment by |key|, ties to the lower index."""
    chosen = np.zeros(len(key), bool)
    for a, b in segments:
        k = int(math.floor(fraction * (b - a) + 0.5))
        order = sorted(range(a, b), key=lambda i: (-abs(key[i]), i))
        chosen[order[:k]] = True
    return chosen


class FixtureShare(unittest.TestCase):
    """sresid_amp_share on the real pair against numpy."""

    @classmethod
    def setUpClass(cls):
        cls.base_st = read_safetensors(BASE)
        cls.trained_st = read_safetensors(TRAINED)
        # tensors present in both with the same shape; the others left out
        cls.paired = [n for n in cls.base_st if n in cls.trained_st
                      and cls.base_st[n][1] == cls.trained_st[n][1]]
        cls.unpaired = sorted(set(cls.base_st) - set(cls.paired))
        cls.expected = [n for n in cls.paired if len(cls.base_st[n][1]) >= 2
                        and min(out_last(f32(cls.base_st[n])).shape) >= 2]
        cls.base = sr.Model.open(BASE, layout="out-last")
        cls.trained = sr.Model.open(TRAINED, layout="out-last")
        # every tensor of the pair is of kind "other": relabel the unpaired ones
        cls.base.set_kind_rules([(n, "norm") for n in cls.unpaired])
        cls.ref = {}
        for core in (False, True):
            rows = []
            for name in cls.expected:
                w0 = out_last(f32(cls.base_st[name])).astype(np.float64)
                r = out_last(f32(cls.trained_st[name])).astype(np.float64) - w0
                u, s, vt = np.linalg.svd(w0, full_matrices=False)
                dm = u.T @ r @ vt.T
                d = dm.ravel() if core else np.diag(dm)
                s0 = np.diag(s).ravel() if core else s
                rows.append((float((r * r).sum()), d, s0))
            cls.ref[core] = rows

    @classmethod
    def tearDownClass(cls):
        cls.base.close()
        cls.trained.close()

    def test_unpaired_tensors_are_the_heads(self):
        self.assertEqual(self.unpaired, ["fc/bias", "fc/weights"])

    def test_mismatch_names_the_tensor(self):
        with sr.Model.open(BASE, layout="out-last") as base:
            with sr.Amp.create(base, kinds="all") as amp:
                with self.assertRaises(sr.SparseResidError) as cm:
                    amp.share(self.trained, [0.5])
                self.assertEqual(cm.exception.status, sr.ERR_MISMATCH)
                self.assertIn("fc/weights", cm.exception.message)

    def check_share(self, layout, per_tensor):
        core = layout == "core"
        with sr.Amp.create(self.base, layout=layout, kinds=["other"]) as amp:
            self.assertEqual(amp.names(), self.expected)
            got = amp.share(self.trained, FRACTIONS, per_tensor=per_tensor)
        rows = self.ref[core]
        energy = np.array([e for e, _, _ in rows])
        dsq = np.array([float((d ** 2).sum()) for _, d, _ in rows])
        self.assertEqual(got["names"], self.expected + ["total"])
        np.testing.assert_allclose(got["energy"][:-1], energy, rtol=1e-5)
        np.testing.assert_allclose(got["energy"][-1], energy.sum(), rtol=1e-5)
        np.testing.assert_allclose(got["captured"][:-1], dsq / energy, atol=1e-4, rtol=0)
        self.assertAlmostEqual(got["captured"][-1], dsq.sum() / energy.sum(), delta=1e-4)
        if core:  # square matrices of full rank: the core spans every residual
            for name, c in zip(self.expected, got["captured"]):
                m = out_last(f32(self.base_st[name])).shape
                if m[0] == m[1]:
                    self.assertAlmostEqual(c, 1.0, delta=1e-4, msg=name)
        dall = np.concatenate([d for _, d, _ in rows])
        sall = np.concatenate([s for _, _, s in rows])
        seg = np.cumsum([0] + [len(d) for _, d, _ in rows])
        spans = list(zip(seg[:-1], seg[1:]))
        for k, f in enumerate(FRACTIONS):
            for key, name in ((sall, "captured_magnitude"), (dall, "captured_oracle")):
                c = pick(key, f, spans if per_tensor else [(0, len(key))])
                want = [float((dall[a:b][c[a:b]] ** 2).sum()) / e
                        for (a, b), e in zip(spans, energy)]
                want.append(float((dall[c] ** 2).sum()) / energy.sum())
                np.testing.assert_allclose(got[name][:, k], want, atol=1e-4, rtol=0,
                                           err_msg="%s at %g" % (name, f))
            self.assertGreaterEqual(got["captured_oracle"][-1, k],
                                    got["captured_magnitude"][-1, k] - 1e-12)

    def test_share_diag(self):
        self.check_share("diag", False)

    def test_share_diag_per_tensor(self):
        self.check_share("diag", True)

    def test_share_core(self):
        self.check_share("core", False)

    def test_share_core_per_tensor(self):
        self.check_share("core", True)

    def test_fit_and_export_match_numpy(self):
        """fit with all scores, export, save with the library and reopen:
        selected tensors are U diag(s) V^T + (W0 - U diag(s0) V^T) with s the
        fitted scores; the others are byte-identical."""
        with sr.Amp.create(self.base, kinds=["other"]) as amp, \
                tempfile.TemporaryDirectory() as tmp:
            amp.fit(self.trained)
            s, s0 = amp.scores.copy(), amp.initial_scores.copy()
            out_path = os.path.join(tmp, "fit.safetensors")
            with amp.export() as out:
                out.save(out_path)
            out = read_safetensors(out_path)
            self.assertEqual(sorted(out), sorted(self.base_st))
            offs = amp.offsets
            for t, name in enumerate(amp.names()):
                u, v = (x.astype(np.float64) for x in amp.basis(t))
                w0 = out_last(f32(self.base_st[name])).astype(np.float64)
                st, s0t = s[offs[t]:offs[t + 1]], s0[offs[t]:offs[t + 1]]
                want = (u * st) @ v.T + (w0 - (u * s0t) @ v.T)
                got = out_last(f32(out[name]))
                self.assertLessEqual(np.abs(got - want).max(),
                                     1e-5 * max(1.0, np.abs(want).max()), name)
                # and the fitted change is diag(U^T R V) of the numpy basis (up to sign)
                d = self.ref[False][t][1]
                np.testing.assert_allclose(np.abs(st - s0t), np.abs(d), atol=1e-4)
            for name in self.base_st:
                self.assertEqual(out[name][:2], self.base_st[name][:2], name)
                if name not in amp.names():
                    self.assertEqual(out[name][2], self.base_st[name][2], name)


def random_base(shapes, seed, names=None):
    rng = np.random.default_rng(seed)
    m = sr.Model.create()
    mats = {}
    for i, shape in enumerate(shapes):
        name = names[i] if names else "layers.%d.mlp.w" % i
        w = rng.standard_normal(shape).astype(np.float32)
        m.add(name, w)
        mats[name] = w
    return m, mats


class MaterializeProject(unittest.TestCase):

    def setUp(self):
        self.base, self.mats = random_base([(9, 6), (5, 12)], 1)

    def tearDown(self):
        self.base.close()

    def test_basis_is_the_svd(self):
        for layout in ("diag", "core"):
            with sr.Amp.create(self.base, layout=layout) as amp:
                for t, name in enumerate(amp.names()):
                    u, v = amp.basis(t)
                    w0 = self.mats[name].astype(np.float64)
                    r = min(w0.shape)
                    self.assertEqual(u.shape, (w0.shape[0], r))
                    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(r), atol=1e-5)
                    np.testing.assert_allclose(v.T.astype(np.float64) @ v, np.eye(r), atol=1e-5)
                    s0 = amp.initial_scores[amp.offsets[t]:amp.offsets[t + 1]]
                    sv = np.linalg.svd(w0, compute_uv=False)
                    sd = np.diag(s0.reshape(r, r)) if layout == "core" else s0
                    np.testing.assert_allclose(sd, sv, rtol=1e-5)
                    if layout == "core":
                        self.assertTrue(np.all(s0.reshape(r, r)[~np.eye(r, dtype=bool)] == 0))

    def test_materialize_and_adjoint(self):
        rng = np.random.default_rng(2)
        for layout in ("diag", "core"):
            with sr.Amp.create(self.base, layout=layout) as amp:
                delta = rng.standard_normal(amp.score_count).astype(np.float32)
                amp.scores[:] = amp.initial_scores + delta
                for t, name in enumerate(amp.names()):
                    info = amp.tensor(t)
                    r = info["rank"]
                    u, v = (x.astype(np.float64) for x in amp.basis(t))
                    dt = delta[info["offset"]:info["offset"] + info["count"]].astype(np.float64)
                    dm = dt.reshape(r, r) if layout == "core" else np.diag(dt)
                    w = amp.materialize(t)
                    want = self.mats[name] + u @ dm @ v.T
                    np.testing.assert_allclose(w, want, atol=1e-5)
                    # add mode: out += U (S - S0) V^T
                    acc = np.ones_like(w)
                    amp.materialize(t, out=acc, add=True)
                    np.testing.assert_allclose(acc, 1 + u @ dm @ v.T, atol=1e-5)
                    # project: U^T G V (or its diagonal) into tensor t's segment
                    g = rng.standard_normal(w.shape).astype(np.float32)
                    out = np.full(amp.score_count, 7, dtype=np.float32)
                    amp.project(t, g, out=out)
                    full = u.T @ g @ v
                    want_p = full.ravel() if layout == "core" else np.diag(full)
                    seg = slice(info["offset"], info["offset"] + info["count"])
                    np.testing.assert_allclose(out[seg], want_p, atol=1e-5)
                    rest = np.ones(amp.score_count, bool)
                    rest[seg] = False
                    self.assertTrue(np.all(out[rest] == 7))
                    # adjoint identity: <project(G), ds> = <G, W - W0>
                    lhs = float(out[seg].astype(np.float64) @ dt)
                    rhs = float((g.astype(np.float64) * (w - self.mats[name])).sum())
                    self.assertAlmostEqual(lhs, rhs, delta=1e-4 * max(1.0, abs(rhs)))
                    # abs accumulates |.|
                    sal = np.zeros(amp.score_count, dtype=np.float32)
                    amp.project(t, g, out=sal, abs=True)
                    amp.project(t, g, out=sal, abs=True)
                    np.testing.assert_allclose(sal[seg], 2 * np.abs(want_p), atol=1e-5)

    def test_scores_view_is_zero_copy(self):
        with sr.Amp.create(self.base) as amp:
            view = amp.scores
            w_before = amp.materialize(1)
            np.testing.assert_allclose(w_before, self.mats[amp.names()[1]], atol=1e-5)
            off = amp.tensor(1)["offset"]
            view[off] += 2.0  # through the numpy view only
            u, v = amp.basis(1)
            want = self.mats[amp.names()[1]] + 2.0 * np.outer(u[:, 0], v[:, 0])
            np.testing.assert_allclose(amp.materialize(1), want, atol=1e-5)
            self.assertEqual(amp.scores[off], view[off])
            with self.assertRaises(ValueError):
                amp.initial_scores[0] = 1.0  # read-only
            amp.reset()
            self.assertTrue(np.array_equal(view, amp.initial_scores))

    def test_closing_the_base_closes_the_amp(self):
        base, _ = random_base([(4, 4)], 3)
        amp = sr.Amp.create(base)
        base.close()
        self.assertTrue(amp._h is None)
        with self.assertRaises(ValueError):
            len(amp)


class SelectDropGrowSave(unittest.TestCase):

    def setUp(self):
        self.base, self.mats = random_base([(12, 8), (7, 10), (6, 6)], 4)

    def tearDown(self):
        self.base.close()

    def test_select_rules(self):
        rng = np.random.default_rng(5)
        with sr.Amp.create(self.base, layout="core") as amp:
            offs = amp.offsets
            spans = list(zip(offs[:-1], offs[1:]))
            n = amp.score_count
            amp.scores[:] += np.round(rng.standard_normal(n) * 4).astype(np.float32) / 4
            sal = np.abs(np.round(rng.standard_normal(n) * 3)).astype(np.float32)
            change = np.abs(amp.scores - amp.initial_scores)
            for per in (False, True):
                segs = spans if per else [(0, n)]
                for f in (0.05, 0.3, 0.5):
                    for rule, key in (("magnitude", amp.initial_scores), ("gradient", sal),
                                      ("warmup", change)):
                        m = amp.select(rule, f, per_tensor=per, saliency=sal)
                        self.assertTrue(np.array_equal(m.to_numpy(), pick(key, f, segs)),
                                        (rule, f, per))
                    r = amp.select("random", f, per_tensor=per, seed=9)
                    for a, b in segs:
                        self.assertEqual(r.count(int(a), int(b - a)),
                                         int(math.floor(f * (b - a) + 0.5)))
            with self.assertRaises(sr.SparseResidError) as cm:
                amp.select("gradient", 0.5)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
            with self.assertRaises(ValueError):
                amp.select("biggest", 0.5)

    def test_drop_grow(self):
        rng = np.random.default_rng(6)
        with sr.Amp.create(self.base) as amp:
            n = amp.score_count
            mask = amp.select("magnitude", 0.5, per_tensor=True)
            before = mask.to_numpy().copy()
            amp.scores[before] += rng.uniform(0.1, 1.0, before.sum()).astype(np.float32)
            old = amp.scores.copy()
            sal = rng.uniform(0, 1, n).astype(np.float32)
            changed = amp.drop_grow(mask, 0.25, sal, per_tensor=True)
            after = mask.to_numpy()
            self.assertTrue(np.array_equal(changed.to_numpy(), before ^ after))
            offs = amp.offsets
            for a, b in zip(offs[:-1], offs[1:]):
                self.assertEqual(after[a:b].sum(), before[a:b].sum())
                act = [i for i in range(a, b) if before[i]]
                d = min(int(math.floor(0.25 * len(act) + 0.5)), (b - a) - len(act))
                keep = np.abs(old - amp.initial_scores)
                dropped = sorted(act, key=lambda i: (keep[i], -i))[:d]
                grown = sorted([i for i in range(a, b) if not before[i]],
                               key=lambda i: (-sal[i], i))[:d]
                self.assertEqual(sorted(np.flatnonzero(before[a:b] & ~after[a:b]) + a),
                                 sorted(dropped))
                self.assertEqual(sorted(np.flatnonzero(~before[a:b] & after[a:b]) + a),
                                 sorted(grown))
            dropped = before & ~after
            self.assertTrue(np.array_equal(amp.scores[dropped], amp.initial_scores[dropped]))
            self.assertTrue(np.array_equal(amp.scores[~dropped], old[~dropped]))

    def test_save_load_roundtrip(self):
        rng = np.random.default_rng(7)
        with sr.Amp.create(self.base, layout="core") as amp, \
                tempfile.TemporaryDirectory() as tmp:
            amp.scores[:] += rng.standard_normal(amp.score_count).astype(np.float32)
            mask = amp.select("random", 0.3, seed=1)
            path = os.path.join(tmp, "state.safetensors")
            amp.save(path, mask=mask)
            loaded, lmask = sr.Amp.load(self.base, path)
            with loaded:
                self.assertEqual(loaded.layout, "core")
                self.assertTrue(np.array_equal(loaded.scores, amp.scores))
                self.assertTrue(np.array_equal(lmask.to_numpy(), mask.to_numpy()))
                for t in range(len(amp)):
                    self.assertTrue(np.array_equal(loaded.materialize(t), amp.materialize(t)))
            amp.save(os.path.join(tmp, "nomask.safetensors"))
            again, none = sr.Amp.load(self.base, os.path.join(tmp, "nomask.safetensors"))
            self.assertIsNone(none)
            again.close()


if __name__ == "__main__":
    unittest.main()
