"""Tests of the ctypes binding (python/sparseresid.py) against the shared
library, checked with an independent safetensors writer and reader written
here with json + struct + numpy (they never call the library).

Run from the repository root: make check-python, i.e.
    /usr/bin/python3 -m unittest discover -s tests/python -t . -v
"""

import json
import os
import shutil
import struct
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402  (needs the path and SPARSERESID_LIB above)

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BASE = os.path.join(FIXTURES, "faceapi.face_landmark_68_model.f32.safetensors")
TRAINED = os.path.join(FIXTURES, "faceapi.face_expression_model.f32.safetensors")

# ---- reference safetensors writer and reader (json + struct + numpy) ----

NP_OF = {  # safetensors dtype -> numpy dtype of the stored (little-endian) bytes
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "<i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "<u1", "BOOL": "|b1",
    "F8_E5M2": "<u1", "F8_E4M3": "<u1",
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E5M2", "F8_E4M3")
SIZE_OF = {k: np.dtype(v).itemsize for k, v in NP_OF.items()}
# the Dtype enum of the reference implementation, in declaration order
ST_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
                  "I32", "U32", "F32", "F64", "I64", "U64"]


def st_write(path, tensors, metadata=None):
    """Write (name, dtype, ndarray) tensors, data in the given order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr, dtype=np.dtype(NP_OF[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": [int(d) for d in arr.shape],
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(b"".join(blobs))


class StFile:
    """A parsed safetensors file: header bytes, metadata, entries in header
    order, and per tensor (dtype, shape, raw bytes, numpy view)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        (n,) = struct.unpack_from("<Q", data, 0)
        self.header_bytes = data[8:8 + n]
        self.body = data[8 + n:]
        header = json.loads(self.header_bytes.decode("utf-8"))
        self.metadata = header.pop("__metadata__", None)
        self.entries = header
        self.tensors = {}
        for name, e in header.items():
            a, b = e["data_offsets"]
            raw = self.body[a:b]
            arr = np.frombuffer(raw, dtype=np.dtype(NP_OF[e["dtype"]])).reshape(e["shape"])
            self.tensors[name] = (e["dtype"], tuple(e["shape"]), raw, arr)

    def names_by_offset(self):
        return sorted(self.entries, key=lambda k: tuple(self.entries[k]["data_offsets"]))


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN kept quiet)."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32).astype(np.uint64)
    s16, one = np.uint64(16), np.uint64(1)
    rounded = ((u + np.uint64(0x7FFF) + ((u >> s16) & one)) >> s16).astype(np.uint16)
    nan = np.isnan(x)
    rounded[nan] = ((u[nan] >> s16) | np.uint64(0x40)).astype(np.uint16)
    return rounded


def bf16_to_f32(bits):
    bits = np.asarray(bits, dtype=np.uint16)
    wide = np.atleast_1d(bits).astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32).reshape(bits.shape)


def f16(bits):
    return np.array(bits, dtype=np.uint16).view(np.float16)


def le_bytes(arr, dtype):
    return np.ascontiguousarray(arr, dtype=np.dtype(NP_OF[dtype])).tobytes()


class TmpDirCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sresid-py-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def assertF32Identical(self, got, want, what=""):
        """Same shape, float32, and the same bits (any NaN matches any NaN)."""
        self.assertEqual(got.dtype, np.float32, what)
        self.assertEqual(got.shape, want.shape, what)
        want = np.asarray(want, dtype=np.float32)
        gn, wn = np.isnan(got), np.isnan(want)
        self.assertTrue(np.array_equal(gn, wn), "%s: NaN positions differ" % what)
        gb, wb = got.view(np.uint32)[~gn], want.view(np.uint32)[~wn]
        bad = np.nonzero(gb != wb)[0]
        self.assertEqual(bad.size, 0, "%s: %d values differ, first got %r want %r" % (
            what, bad.size, got[~gn][bad[:1]], want[~wn][bad[:1]]))


def mixed_tensors():
    """Tensors of every kind the tests need, in a deliberately unsorted order."""
    rng = np.random.default_rng(1234)
    f32 = rng.standard_normal((4, 5)).astype(np.float32)
    f32[0, :4] = [0.0, -0.0, np.inf, -np.float32(1e-42)]
    f64 = np.concatenate([rng.standard_normal(20) * 1e3,
                          [1.0 + 2.0 ** -24, 1.0 + 3 * 2.0 ** -24, 1e300, -1e300, 1e-50,
                           1e-40, -0.0, np.inf, -np.inf, np.nan, 3.4028235e38, 0.1]])
    f64 = f64.reshape(4, 8)
    f16_vals = np.concatenate([
        rng.standard_normal(24).astype(np.float16),
        f16([0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x0001, 0x8001, 0x03FF,
             0x0400, 0x7E01, 0xFE00])])
    f16_vals = f16_vals.reshape(2, 3, 6)
    bf_src = np.concatenate([rng.standard_normal(13).astype(np.float32) * 1e5,
                             np.array([1.00390625, 1.01171875, -0.0, np.inf, -np.inf,
                                       1e-40, 3.0e38, np.nan], dtype=np.float32)])
    bf = bf16_bits(bf_src).reshape(3, 7)
    i32 = rng.integers(-2 ** 31, 2 ** 31, size=(3, 2), dtype=np.int64).astype(np.int32)
    u8 = rng.integers(0, 256, size=(11,), dtype=np.int64).astype(np.uint8)
    boolean = rng.integers(0, 2, size=(2, 2, 2)).astype(bool)
    return [
        ("layers.1.mlp.up_proj.weight", "F16", f16_vals),
        ("scalar_f32", "F32", np.array(2.5, dtype=np.float32)),
        ("model.embed_tokens.weight", "BF16", bf),
        ("ints", "I32", i32),
        ("empty_f32", "F32", np.zeros((0,), dtype=np.float32)),
        ("layers.0.self_attn.q_proj.weight", "F32", f32),
        ("mask", "BOOL", boolean),
        ("bytes", "U8", u8),
        ("wide", "F64", f64),
        ("empty_f16", "F16", np.zeros((2, 0, 3), dtype=np.float16)),
        ("scalar_bf16", "BF16", bf16_bits(np.float32(-3.75)).reshape(())),
        ("rank4", "F32", rng.standard_normal((2, 3, 1, 2)).astype(np.float32)),
    ]


def expected_f32(dtype, arr):
    """numpy's own conversion of a stored float tensor to float32."""
    if dtype == "BF16":
        return bf16_to_f32(arr).reshape(arr.shape)
    with np.errstate(over="ignore"):  # F64 beyond float32 range becomes +-inf
        return np.asarray(arr).astype(np.float32)


# ---------------------------------------------------------------------------

class TestLibrary(unittest.TestCase):
    def test_version(self):
        self.assertEqual(sr.version_number(), sr.VERSION_NUMBER)
        self.assertEqual(sr.version(), sr.VERSION_STRING)
        self.assertEqual(sr.version(), "%d.%d.%d" % (sr.VERSION_MAJOR, sr.VERSION_MINOR,
                                                     sr.VERSION_PATCH))

    def test_version_is_the_headers(self):
        """The binding's VERSION_* are common.h's, the one source of the
        version, and it loads the soname of that major version."""
        import re
        with open(os.path.join(ROOT, "include", "sparseresid", "common.h")) as f:
            text = f.read()
        want = {k: int(v) for k, v in
                re.findall(r"^#define SRESID_VERSION_(MAJOR|MINOR|PATCH) (\d+)$", text, re.M)}
        self.assertEqual(len(want), 3)
        self.assertEqual((sr.VERSION_MAJOR, sr.VERSION_MINOR, sr.VERSION_PATCH),
                         (want["MAJOR"], want["MINOR"], want["PATCH"]))
        self.assertEqual(os.path.basename(sr.library_path),
                         "libsparseresid.so.%d" % want["MAJOR"])
        self.assertEqual(os.path.basename(sr._find_library()),
                         "libsparseresid.so.%d" % want["MAJOR"])

    def test_header_constants_match_binding(self):
        header = ""
        for h in ("common.h", "model.h", "residual.h"):
            with open(os.path.join(ROOT, "include", "sparseresid", h)) as f:
                header += f.read()
        checked = 0
        for line in header.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#define" and parts[1].startswith("SRESID_"):
                value = parts[2].rstrip("uU")
                try:
                    value = int(value, 0)
                except ValueError:
                    continue
                name = parts[1][len("SRESID_"):]
                self.assertTrue(hasattr(sr, name), "binding lacks %s" % parts[1])
                self.assertEqual(getattr(sr, name), value, parts[1])
                checked += 1
        self.assertGreater(checked, 40)

    def test_every_exported_function_is_declared(self):
        with open(os.path.join(ROOT, "src", "libsparseresid.map")) as f:
            exported = {w.rstrip(";") for w in f.read().split()
                        if w.startswith("sresid_") and w.endswith(";")}
        self.assertEqual(set(sr._PROTOTYPES), exported)
        for name in exported:
            fn = getattr(sr._lib, name)
            self.assertIsNotNone(fn.argtypes, name)

    def test_dtype_and_kind_names(self):
        for name in NP_OF:
            code = getattr(sr, "DTYPE_" + name)
            self.assertEqual(sr.dtype_name(code), name)
            self.assertEqual(sr.dtype_from_name(name), code)
            self.assertEqual(sr.dtype_size(code), SIZE_OF[name])
            self.assertEqual(sr.dtype_is_float(code), name in FLOAT_DTYPES)
        self.assertIsNone(sr.dtype_name(0))
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.dtype_from_name("F128")
        self.assertEqual(cm.exception.status, sr.ERR_DTYPE)
        kinds = [sr.kind_name(k) for k in range(sr.KIND_COUNT)]
        self.assertEqual(kinds, ["other", "attention", "mlp", "embedding", "norm"])

    def test_strerror_distinct(self):
        texts = {sr.strerror(code) for code in range(0, sr.ERR_UNSUPPORTED + 1)}
        self.assertEqual(len(texts), sr.ERR_UNSUPPORTED + 1)
        self.assertTrue(sr.strerror(9999))

    def test_threads_and_arch(self):
        default = sr.get_threads()
        self.assertGreaterEqual(default, 1)
        try:
            sr.set_threads(3)
            self.assertEqual(sr.get_threads(), 3)
            with self.assertRaises(sr.SparseResidError) as cm:
                sr.set_threads(-1)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
            self.assertEqual(sr.get_threads(), 3)
        finally:
            sr.set_threads(0)
        self.assertEqual(sr.get_threads(), default)
        arch = sr.blas_arch()
        self.assertIsInstance(arch, str)
        self.assertTrue(arch)


class TestReadReference(TmpDirCase):
    """Files from the reference writer, read through the library."""

    def setUp(self):
        super().setUp()
        self.tensors = mixed_tensors()
        self.meta = {"format": "pt", "note": "ünïcode ✓", "empty": ""}
        self.file = self.path("ref.safetensors")
        st_write(self.file, self.tensors, self.meta)

    def test_names_dtypes_shapes_metadata(self):
        with sr.Model.open(self.file) as m:
            self.assertEqual(len(m), len(self.tensors))
            # ordered by data offset = the order written
            self.assertEqual(m.names(), [t[0] for t in self.tensors])
            for i, (name, dtype, arr) in enumerate(self.tensors):
                info = m.info(name)
                self.assertEqual(info, m.info(i))
                self.assertEqual(info["name"], name)
                self.assertEqual(info["dtype"], dtype, name)
                self.assertEqual(info["shape"], arr.shape, name)
                self.assertEqual(info["numel"], int(np.prod(arr.shape, dtype=np.int64)), name)
                self.assertEqual(info["nbytes"], arr.size * SIZE_OF[dtype], name)
                self.assertEqual(m.index(name), i)
            self.assertEqual(list(m.metadata.items()), list(self.meta.items()))
            self.assertEqual(m.get_metadata("note"), "ünïcode ✓")
            self.assertIsNone(m.get_metadata("absent"))
            self.assertNotIn("absent", m)
            self.assertIn("ints", m)

    def test_float_tensors_as_numpy_converts(self):
        with sr.Model.open(self.file) as m:
            n_float = 0
            for name, dtype, arr in self.tensors:
                if dtype not in ("F64", "F32", "F16", "BF16"):
                    continue
                got = m.read(name)
                want = expected_f32(dtype, arr)
                if dtype in ("F16", "BF16", "F32"):
                    # exact conversions: every bit, NaN payloads included
                    self.assertEqual(got.shape, want.shape, name)
                    self.assertTrue(np.array_equal(got.view(np.uint32), want.view(np.uint32)),
                                    "%s (%s) differs from numpy's conversion" % (name, dtype))
                else:
                    self.assertF32Identical(got, want, name)
                n_float += 1
            self.assertEqual(n_float, 9)

    def test_raw_bytes_of_every_tensor(self):
        with sr.Model.open(self.file) as m:
            for name, dtype, arr in self.tensors:
                got = m.read_raw(name)
                self.assertEqual(got.shape, arr.shape, name)
                self.assertEqual(got.tobytes(), le_bytes(arr, dtype), name)

    def test_integer_tensor_read_as_float_is_refused(self):
        with sr.Model.open(self.file) as m:
            for name in ("ints", "mask", "bytes"):
                with self.assertRaises(sr.SparseResidError) as cm:
                    m.read(name)
                self.assertEqual(cm.exception.status, sr.ERR_DTYPE, name)

    def test_read_into_caller_buffer(self):
        with sr.Model.open(self.file) as m:
            buf = np.full(64, np.float32(-7.0))
            out = m.read("layers.0.self_attn.q_proj.weight", out=buf)
            self.assertIs(out, buf)
            want = [a for n, _, a in self.tensors if n == "layers.0.self_attn.q_proj.weight"][0]
            self.assertTrue(np.array_equal(buf[:20].view(np.uint32),
                                           want.reshape(-1).view(np.uint32)))
            self.assertTrue(np.all(buf[20:] == -7.0))
            with self.assertRaises(ValueError):
                m.read("layers.0.self_attn.q_proj.weight", out=np.empty(19, np.float32))
            with self.assertRaises(TypeError):
                m.read("layers.0.self_attn.q_proj.weight", out=np.empty(20, np.float64))

    def test_names_kinds_layers(self):
        with sr.Model.open(self.file) as m:
            q = m.info("layers.0.self_attn.q_proj.weight")
            self.assertEqual((q["kind"], q["layer"], q["role"]),
                             ("attention", 0, "layers.{L}.self_attn.q_proj.weight"))
            up = m.info("layers.1.mlp.up_proj.weight")
            self.assertEqual((up["kind"], up["layer"]), ("mlp", 1))
            self.assertEqual(m.info("model.embed_tokens.weight")["kind"], "embedding")
            self.assertEqual(m.info("ints")["layer"], -1)
            # matrix views: rank 0 is 1x1, rank 1 1xN, rank >= 3 out-first
            self.assertEqual((m.info("scalar_f32")["rows"], m.info("scalar_f32")["cols"]), (1, 1))
            self.assertEqual((m.info("bytes")["rows"], m.info("bytes")["cols"]), (1, 11))
            self.assertEqual((m.info("rank4")["rows"], m.info("rank4")["cols"]), (2, 6))
        with sr.Model.open(self.file, layout="out-last") as m:
            self.assertEqual((m.info("rank4")["rows"], m.info("rank4")["cols"]), (6, 2))

    def test_index_errors(self):
        with sr.Model.open(self.file) as m:
            with self.assertRaises(sr.SparseResidError) as cm:
                m.info("no/such/tensor")
            self.assertEqual(cm.exception.status, sr.ERR_NOT_FOUND)
            with self.assertRaises(IndexError):
                m.info(len(self.tensors))
            self.assertEqual(m.info(-1)["name"], self.tensors[-1][0])


class TestSave(TmpDirCase):
    """Models built in Python, saved by the library, read by the reference reader."""

    def build(self):
        rng = np.random.default_rng(99)
        items = [
            ("b_f16", rng.standard_normal((3, 4)).astype(np.float16), None),
            ("a_f32", rng.standard_normal((2, 3)).astype(np.float32), None),
            ("Z_u8", np.arange(7, dtype=np.uint8), None),
            ("c_f64", rng.standard_normal((5,)), None),
            ("_i64", np.array([-(2 ** 62), 5, 2 ** 40], dtype=np.int64), None),
            ("m_bool", np.array([[True, False, True]]), None),
            ("bf", bf16_bits(rng.standard_normal((2, 2)).astype(np.float32)), "BF16"),
            ("a_i32", np.array(-123456, dtype=np.int32), None),
            ("i16", np.array([-3, 4], dtype=">i2"), None),  # big-endian input
            ("u32", np.array([1, 2 ** 32 - 1], dtype=np.uint32), None),
            ("zero", np.zeros((0, 4), dtype=np.float32), None),
            ("e4m3", np.array([0x38, 0xB8, 0x7E], dtype=np.uint8), "F8_E4M3"),
            ("i8", np.array([-128, 127], dtype=np.int8), None),
            ("u16", np.array([65535], dtype=np.uint16), None),
            ("u64", np.array([2 ** 64 - 1], dtype=np.uint64), None),
            ("strided", np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2], None),
        ]
        m = sr.Model.create()
        for name, arr, dtype in items:
            m.add(name, arr, dtype=dtype)
        m.set_metadata("format", "pt")
        m.set_metadata("drop", "me")
        m.set_metadata("drop", None)
        m.set_metadata("who", "tests ✓")
        return m, items

    def test_never_over_its_own_file(self):
        """A model saved over the file it reads is refused, through a link
        too; uses_file says so; the file stays byte for byte."""
        src = self.path("own.safetensors")
        shutil.copy(BASE, src)
        alias = self.path("alias.safetensors")
        os.symlink(src, alias)
        with open(src, "rb") as f:
            before = f.read()
        with sr.Model.open(src) as m:
            self.assertTrue(m.uses_file(src))
            self.assertTrue(m.uses_file(alias))
            self.assertTrue(m.uses_file(os.path.join(self.tmp, ".", "own.safetensors")))
            self.assertFalse(m.uses_file(BASE))           # a copy is another file
            self.assertFalse(m.uses_file(self.path("none")))
            for p in (src, alias):
                with self.assertRaises(sr.SparseResidError) as cm:
                    m.save(p)
                self.assertEqual(cm.exception.status, sr.ERR_IO)
                self.assertIn("refusing to replace an input", cm.exception.message)
            m.save(self.path("copy.safetensors"))
        with open(src, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertFalse([n for n in os.listdir(self.tmp) if ".tmp-" in n])

    def test_saved_file_layout_and_bytes(self):
        m, items = self.build()
        out = self.path("saved.safetensors")
        with m:
            self.assertEqual(m.metadata, {"format": "pt", "who": "tests ✓"})
            m.save(out)
        st = StFile(out)
        # header: 8-byte aligned, padded with spaces, valid JSON
        self.assertEqual(len(st.header_bytes) % 8, 0)
        text = st.header_bytes.rstrip(b" ")
        self.assertTrue(text.endswith(b"}"))
        json.loads(text.decode("utf-8"))
        self.assertEqual(st.metadata, {"format": "pt", "who": "tests ✓"})
        # the reference writer's order: dtype descending in safetensors' enum
        # order, then name; data contiguous
        order = st.names_by_offset()
        rank = {n: ST_DTYPE_ORDER.index(st.entries[n]["dtype"]) for n in order}
        self.assertEqual(order, sorted(order, key=lambda n: (-rank[n], n.encode("utf-8"))))
        end = 0
        for n in order:
            a, b = st.entries[n]["data_offsets"]
            self.assertEqual(a, end, "data of %s is not contiguous" % n)
            end = b
        self.assertEqual(end, len(st.body))
        # every tensor: dtype, shape and the little-endian bytes of its input
        self.assertEqual(set(st.entries), {name for name, _, _ in items})
        for name, arr, dtype in items:
            e = st.entries[name]
            want_dtype = dtype or {"float16": "F16", "float32": "F32", "float64": "F64",
                                   "uint8": "U8", "int64": "I64", "bool": "BOOL",
                                   "int32": "I32", "int16": "I16", "uint32": "U32",
                                   "int8": "I8", "uint16": "U16",
                                   "uint64": "U64"}[arr.dtype.name]
            self.assertEqual(e["dtype"], want_dtype, name)
            self.assertEqual(tuple(e["shape"]), arr.shape, name)
            a, b = e["data_offsets"]
            want = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            self.assertEqual(st.body[a:b], want, name)

    def test_save_then_reopen(self):
        m, items = self.build()
        out = self.path("again.safetensors")
        with m:
            m.save(out)
            with self.assertRaises(sr.SparseResidError) as cm:
                m.save(out, no_clobber=True)
            self.assertEqual(cm.exception.status, sr.ERR_IO)
        with sr.Model.open(out) as r:
            self.assertEqual(sorted(r.names()), sorted(n for n, _, _ in items))
            a = r.read("a_f32")
            self.assertTrue(np.array_equal(a, items[1][1]))
            self.assertEqual(r.read("c_f64").dtype, np.float32)
            self.assertTrue(np.array_equal(r.read("c_f64"), items[3][1].astype(np.float32)))
            self.assertEqual(r.read_raw("i16").tolist(), [-3, 4])
            self.assertEqual(r.read("zero").shape, (0, 4))
            self.assertEqual(r.read("strided").tolist(), [[0, 2], [4, 6], [8, 10]])

    def test_add_errors(self):
        with sr.Model.create() as m:
            m.add("x", np.zeros(2, np.float32))
            with self.assertRaises(sr.SparseResidError) as cm:
                m.add("x", np.zeros(2, np.float32))
            self.assertEqual(cm.exception.status, sr.ERR_DUPLICATE)
            self.assertIn("x", cm.exception.message)
            with self.assertRaises(TypeError):
                m.add("c", np.zeros(2, np.complex64))
            with self.assertRaises(TypeError):
                m.add("bf", np.zeros(2, np.float32), dtype="BF16")
            with self.assertRaises(sr.SparseResidError) as cm:
                m.add("", np.zeros(2, np.float32))
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
            self.assertEqual(len(m), 1)

    def test_closed_model(self):
        m = sr.Model.create()
        m.close()
        m.close()
        self.assertTrue(m.closed)
        with self.assertRaises(ValueError):
            len(m)


class TestShards(TmpDirCase):
    def write_shards(self):
        rng = np.random.default_rng(5)
        tensors = {}
        shards = {}
        for s in range(3):
            fname = "model-%05d-of-00003.safetensors" % (s + 1)
            part = []
            for k in range(3):
                name = "model.layers.%d.mlp.w%d" % (s, k)
                arr = rng.standard_normal((k + 1, 4)).astype(np.float32)
                part.append((name, "F32", arr))
                tensors[name] = arr
                shards[name] = fname
            st_write(self.path("ckpt", fname), part, {"format": "pt"})
        total = sum(a.nbytes for a in tensors.values())
        with open(self.path("ckpt", "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": shards}, f)
        return tensors

    def check(self, path, tensors):
        with sr.Model.open(path) as m:
            names = m.names()
            self.assertEqual(len(names), len(tensors))
            self.assertEqual(sorted(names), sorted(tensors))
            for name, arr in tensors.items():
                self.assertTrue(np.array_equal(m.read(name), arr), name)

    def test_index_file_and_directory(self):
        os.mkdir(self.path("ckpt"))
        tensors = self.write_shards()
        self.check(self.path("ckpt", "model.safetensors.index.json"), tensors)
        self.check(self.path("ckpt"), tensors)


class TestFixturePair(unittest.TestCase):
    """The real base / fine-tune pair in tests/fixtures (see its README.md)."""

    @classmethod
    def setUpClass(cls):
        cls.a = StFile(BASE)
        cls.b = StFile(TRAINED)

    def test_residual_norms_match_numpy(self):
        with sr.Model.open(BASE) as base, sr.Model.open(TRAINED) as trained:
            with sr.Residual(base, trained, skip_mismatched=True) as res:
                shared = [n for n in self.a.names_by_offset()
                          if n in self.b.tensors and self.a.tensors[n][1] == self.b.tensors[n][1]]
                self.assertEqual(len(shared), 47)
                self.assertEqual(len(res), 47)
                self.assertEqual(res.names(), shared)
                tb = tt = tr = 0.0
                for i, name in enumerate(shared):
                    bi, ti = res.pair(i)
                    self.assertEqual(base.info(bi)["name"], name)
                    self.assertEqual(trained.info(ti)["name"], name)
                    x = self.a.tensors[name][3].astype(np.float64)
                    y = self.b.tensors[name][3].astype(np.float64)
                    nb, nt = np.sum(x * x), np.sum(y * y)
                    nr = np.sum((y - x) ** 2)
                    tb, tt, tr = tb + nb, tt + nt, tr + nr
                    got = res.norms(i)
                    for key, want in (("base", np.sqrt(nb)), ("trained", np.sqrt(nt)),
                                      ("residual", np.sqrt(nr))):
                        self.assertAlmostEqual(got[key] / want if want else got[key],
                                               1.0 if want else 0.0, delta=1e-6,
                                               msg="%s %s" % (name, key))
                    if nb > 0:
                        self.assertAlmostEqual(got["relative"], np.sqrt(nr / nb),
                                               delta=1e-6 * np.sqrt(nr / nb) + 1e-12, msg=name)
                    # the residual itself, in float32, as numpy computes it
                    r32 = res.read(i)
                    want32 = self.b.tensors[name][3] - self.a.tensors[name][3]
                    self.assertEqual(r32.shape, self.a.tensors[name][1])
                    self.assertTrue(np.array_equal(r32, want32), name)
                total = res.norms()
                self.assertAlmostEqual(total["base"] / np.sqrt(tb), 1.0, delta=1e-6)
                self.assertAlmostEqual(total["trained"] / np.sqrt(tt), 1.0, delta=1e-6)
                self.assertAlmostEqual(total["residual"] / np.sqrt(tr), 1.0, delta=1e-6)
                self.assertAlmostEqual(total["relative"], np.sqrt(tr / tb), delta=1e-6)
                self.assertAlmostEqual(total["relative"], 0.525552, delta=1e-6)
                # the README's named figure
                k = shared.index("dense3/conv3/pointwise_filter")
                self.assertAlmostEqual(res.norms(k)["residual"], 42.526396, delta=1e-6)

    def test_mismatched_heads_listed(self):
        with sr.Model.open(BASE) as base, sr.Model.open(TRAINED) as trained:
            with sr.Residual(base, trained, skip_mismatched=True) as res:
                want = [(n, "shape") for n in self.a.names_by_offset()
                        if n in ("fc/weights", "fc/bias")]
                self.assertEqual(len(want), 2)
                self.assertEqual(res.unpaired(), want)

    def test_mismatch_without_skip_raises(self):
        with sr.Model.open(BASE) as base, sr.Model.open(TRAINED) as trained:
            with self.assertRaises(sr.SparseResidError) as cm:
                sr.Residual(base, trained)
            self.assertEqual(cm.exception.status, sr.ERR_MISMATCH)
            self.assertIn("fc/weights", cm.exception.message)
            self.assertIn("fc/weights", str(cm.exception))

    def test_closing_a_model_closes_its_residual(self):
        base, trained = sr.Model.open(BASE), sr.Model.open(TRAINED)
        res = sr.Residual(base, trained, skip_mismatched=True)
        base.close()
        with self.assertRaises(ValueError):
            len(res)
        trained.close()

    def test_fixture_values_via_library(self):
        with sr.Model.open(BASE) as base:
            self.assertEqual(len(base), len(self.a.entries))
            self.assertEqual(base.names(), self.a.names_by_offset())
            self.assertEqual(base.metadata, self.a.metadata or {})
            name = "dense3/conv3/pointwise_filter"
            self.assertEqual(base.info(name)["shape"], (1, 1, 256, 256))
            self.assertTrue(np.array_equal(base.read(name), self.a.tensors[name][3]))


class TestErrors(TmpDirCase):
    def test_missing_file(self):
        missing = self.path("does-not-exist.safetensors")
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.Model.open(missing)
        self.assertEqual(cm.exception.status, sr.ERR_IO)
        self.assertEqual(cm.exception.status, 3)
        self.assertTrue(cm.exception.message)
        self.assertIn("does-not-exist", cm.exception.message)

    def truncated(self, nbytes):
        with open(BASE, "rb") as f:
            data = f.read()
        path = self.path("cut-%d.safetensors" % nbytes)
        with open(path, "wb") as f:
            f.write(data[:nbytes] if nbytes >= 0 else data[:len(data) + nbytes])
        return path

    def test_truncated_data(self):
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.Model.open(self.truncated(-1))
        self.assertIn(cm.exception.status, (sr.ERR_TRUNCATED, sr.ERR_HEADER))
        self.assertTrue(cm.exception.message)

    def test_truncated_header(self):
        for n in (4, 100):
            with self.assertRaises(sr.SparseResidError) as cm:
                sr.Model.open(self.truncated(n))
            self.assertIn(cm.exception.status, (sr.ERR_TRUNCATED, sr.ERR_HEADER), n)


if __name__ == "__main__":
    unittest.main()
