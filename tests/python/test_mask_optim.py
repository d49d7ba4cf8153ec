"""Tests of masks (mask.h) and masked optimisers (optim.h) through the ctypes
binding, against independent references: numpy for the set operations and
selections (a stable argsort), a pure-Python transcription of the documented
random-mask recipe (splitmix64, xoshiro256**, Lemire's bounded integers,
selection sampling), and numpy float64 re-implementations of PyTorch's AdamW
and SGD update rules.

Run from the repository root:
    /usr/bin/python3 -m unittest tests.python.test_mask_optim -v
"""

import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


# ---- the random-mask recipe of docs/mask.md, in plain Python ----
def mix64(z):
    z = (z + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Xoshiro:
    def __init__(self, seed):
        self.s = [mix64((seed + i * GOLDEN) & M64) for i in range(4)]

    def next(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & M64  # noqa: E731
        out = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return out

    def below(self, n):
        threshold = (-n) % n  # (2^64 - n) mod n
        while True:
            m = self.next() * n
            if (m & M64) >= threshold:
                return m >> 64


def count_of(f, n):
    return int(np.floor(f * n + 0.5))


def ref_random(n, f, seed, offsets=None):
    offsets = [0, n] if offsets is None else list(offsets)
    out = np.zeros(n, dtype=bool)
    for j in range(len(offsets) - 1):
        a, b = offsets[j], offsets[j + 1]
        rng = Xoshiro(mix64(seed ^ mix64(j)))
        need, left = count_of(f, b - a), b - a
        for i in range(a, b):
            if need == 0:
                break
            if rng.below(left) < need:
                out[i] = True
                need -= 1
            left -= 1
    return out


def ref_top(x, f, offsets=None):
    n = x.size
    offsets = [0, n] if offsets is None else list(offsets)
    out = np.zeros(n, dtype=bool)
    for j in range(len(offsets) - 1):
        a, b = offsets[j], offsets[j + 1]
        seg = np.abs(x[a:b].astype(np.float64))
        order = np.argsort(-seg, kind="stable")  # |x| descending, index ascending
        out[a + order[:count_of(f, b - a)]] = True
    return out


class MaskTest(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(7)
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_numpy_round_trip_and_counts(self):
        for n in (0, 1, 63, 64, 65, 1000):
            b = self.rng.random(n) < 0.3
            m = sr.Mask.from_numpy(b)
            self.assertEqual(len(m), n)
            self.assertEqual(m.count(), int(b.sum()))
            np.testing.assert_array_equal(m.to_numpy(), b)
            if n > 10:
                self.assertEqual(m.count(3, 7), int(b[3:10].sum()))
                self.assertEqual(m[5], bool(b[5]))
                self.assertEqual(m[-1], bool(b[-1]))
                m[5] = not b[5]
                self.assertEqual(m[5], not b[5])
            m.close()
        # any non-zero value is set
        m = sr.Mask.from_numpy(np.array([0, 2, -1, 0], dtype=np.int64))
        np.testing.assert_array_equal(m.to_numpy(), [False, True, True, False])
        with self.assertRaises(IndexError):
            m[4]
        self.assertEqual(sr.Mask.create(5, True).count(), 5)

    def test_set_operations_and_jaccard(self):
        n = 777
        a = self.rng.random(n) < 0.4
        b = self.rng.random(n) < 0.6
        ma, mb = sr.Mask.from_numpy(a), sr.Mask.from_numpy(b)
        np.testing.assert_array_equal((ma & mb).to_numpy(), a & b)
        np.testing.assert_array_equal((ma | mb).to_numpy(), a | b)
        np.testing.assert_array_equal((ma ^ mb).to_numpy(), a ^ b)
        np.testing.assert_array_equal((ma - mb).to_numpy(), a & ~b)
        np.testing.assert_array_equal((~ma).to_numpy(), ~a)
        self.assertAlmostEqual(ma.jaccard(mb), (a & b).sum() / (a | b).sum(), places=15)
        c = ma.copy()
        c |= mb
        np.testing.assert_array_equal(c.to_numpy(), a | b)
        np.testing.assert_array_equal(ma.to_numpy(), a)  # the original is untouched
        with self.assertRaises(sr.SparseResidError) as cm:
            ma.combine(sr.Mask.create(n + 1), sr.MASK_OR)
        self.assertEqual(cm.exception.status, sr.ERR_SHAPE)
        x = self.rng.standard_normal(n).astype(np.float32)
        want = np.where(a, x, 0).astype(np.float32)
        ma.apply(x)
        np.testing.assert_array_equal(x, want)

    def test_top_matches_argsort(self):
        for trial in range(20):
            n = int(self.rng.integers(0, 3000))
            # ties and zeros: small integers, some negative zero
            x = (self.rng.integers(-6, 7, n) / 2).astype(np.float32)
            x[self.rng.random(n) < 0.1] = -0.0
            f = float(self.rng.random()) if trial % 4 else trial / 40
            offsets = None
            if trial % 2:
                cuts = np.sort(self.rng.integers(0, n + 1, 3))
                offsets = [0, *cuts.tolist(), n]
            m = sr.Mask.top(x, f, offsets)
            np.testing.assert_array_equal(m.to_numpy(), ref_top(x, f, offsets),
                                          err_msg="trial %d" % trial)
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.Mask.top(np.array([1, np.nan], dtype=np.float32), 0.5)
        self.assertEqual(cm.exception.status, sr.ERR_NONFINITE)
        with self.assertRaises(TypeError):
            sr.Mask.top(np.ones(3), 0.5)  # float64

    def test_random_follows_the_documented_recipe(self):
        # the first entries of a small case, from the pure-Python generator
        for n, f, seed, offsets in ((20, 0.25, 0, None), (50, 0.5, 12345, [0, 10, 10, 50]),
                                    (300, 0.1, 2**64 - 1, None), (7, 1.0, 3, None)):
            m = sr.Mask.random(n, f, seed, offsets)
            np.testing.assert_array_equal(m.to_numpy(), ref_random(n, f, seed, offsets))
        # the generator itself: splitmix64's published first output for seed 0
        # (0xE220A8397B1DCDAF) is mix64(0)
        self.assertEqual(mix64(0), 0xE220A8397B1DCDAF)

    def test_drop_grow(self):
        n = 400
        a = self.rng.random(n) < 0.3
        keep = self.rng.integers(0, 5, n).astype(np.float32)
        grow = self.rng.integers(0, 5, n).astype(np.float32)
        m = sr.Mask.from_numpy(a)
        changed = m.drop_grow(keep, grow, 0.25)
        got = m.to_numpy()
        act, ina = np.flatnonzero(a), np.flatnonzero(~a)
        d = min(count_of(0.25, act.size), ina.size)
        # drop: smallest keep, the higher index first among equals
        order = sorted(act, key=lambda i: (keep[i], -i))[:d]
        grown = sorted(ina, key=lambda i: (-grow[i], i))[:d]
        want = a.copy()
        want[order] = False
        want[grown] = True
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(changed.to_numpy(), a ^ want)
        self.assertEqual(got.sum(), a.sum())

    def test_save_load(self):
        b = self.rng.random(1003) < 0.5
        path = os.path.join(self.tmp.name, "m.safetensors")
        sr.Mask.from_numpy(b).save(path)
        np.testing.assert_array_equal(sr.Mask.load(path).to_numpy(), b)
        # the documented layout: U8 tensor "mask", bit i % 8 of byte i / 8
        with sr.Model.open(path) as md:
            self.assertEqual(md.metadata["format"], "sparseresid.mask")
            self.assertEqual(md.metadata["n"], "1003")
            raw = md.read_raw("mask")
        np.testing.assert_array_equal(np.unpackbits(raw, bitorder="little")[:1003], b)
        with self.assertRaises(sr.SparseResidError):
            sr.Mask.load(os.path.join(self.tmp.name, "missing.safetensors"))


# ---- numpy float64 references of the update rules ----
def ref_adamw(p, m, v, g, t, lr, b1, b2, eps, wd, correct=True):
    p = p - lr * wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh, vh = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if correct else (m, v)
    return p - lr * mh / (np.sqrt(vh) + eps), m, v


def ref_sgd(p, buf, g, lr, momentum, wd, nesterov):
    g = g + wd * p
    if momentum:
        buf = momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


class OptimTest(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(3)
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def close(self, got, want, tol=1e-5):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 1e-1)

    def test_adamw_ten_steps(self):
        n = 500
        for kw in ({"lr": 0.01}, {"lr": 0.003, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
                                  "weight_decay": 0.1},
                   {"lr": 0.01, "weight_decay": 0.01, "bias_correction": False}):
            o = sr.Optim(n, "adamw", **kw)
            opts = o.opts()
            p = self.rng.standard_normal(n).astype(np.float32)
            allow = self.rng.random(n) < 0.5
            mask = sr.Mask.from_numpy(allow)
            rp, rm, rv = p.astype(np.float64), np.zeros(n), np.zeros(n)
            for t in range(1, 11):
                g = self.rng.standard_normal(n).astype(np.float32)
                o.step(p, g, mask)
                np_, nm, nv = ref_adamw(rp, rm, rv, g.astype(np.float64), t, opts["lr"],
                                        opts["beta1"], opts["beta2"], opts["eps"],
                                        opts["weight_decay"], kw.get("bias_correction", True))
                rp, rm, rv = (np.where(allow, a, b) for a, b in ((np_, rp), (nm, rm), (nv, rv)))
            m, v = o.state()
            self.close(p, rp)
            self.close(m, rm)
            self.close(v, rv, 1e-5)
            self.assertEqual(o.steps, 10)

    def test_sgd_ten_steps(self):
        n = 500
        for momentum, wd, nesterov in ((0, 0, False), (0.9, 0.01, False), (0.5, 0.2, True)):
            o = sr.Optim(n, "sgd", lr=0.05, momentum=momentum, weight_decay=wd,
                         nesterov=nesterov)
            p = self.rng.standard_normal(n).astype(np.float32)
            rp, rb = p.astype(np.float64), np.zeros(n)
            for _ in range(10):
                g = self.rng.standard_normal(n).astype(np.float32)
                o.step(p, g)
                rp, rb = ref_sgd(rp, rb, g.astype(np.float64), 0.05, momentum, wd, nesterov)
            self.close(p, rp)
            m, v = o.state()
            self.assertIsNone(v)
            self.close(m, rb)

    def test_frozen_entries_and_views(self):
        n = 300
        o = sr.Optim(n, "adamw", lr=0.01)
        p = self.rng.standard_normal(n).astype(np.float32)
        allow = np.arange(n) % 3 == 0
        mask = sr.Mask.from_numpy(allow)
        before = p.copy()
        for _ in range(50):
            o.step(p, self.rng.standard_normal(n).astype(np.float32), mask)
        np.testing.assert_array_equal(p[~allow].view(np.uint32), before[~allow].view(np.uint32))
        m_view, v_view = o.state(copy=False)
        self.assertTrue(np.all(m_view[~allow] == 0) and np.all(v_view[~allow] == 0))
        self.assertFalse(m_view.flags.writeable)
        m_copy, _ = o.state()
        o.reset(mask)
        self.assertTrue(np.all(m_view[allow] == 0))  # a view sees the change
        self.assertTrue(np.any(m_copy[allow] != 0))  # a copy does not
        o.reset()
        self.assertEqual(o.steps, 0)

    def test_in_place_zero_copy_and_checks(self):
        o = sr.Optim(4, "sgd", lr=0.5)
        p = np.ones(4, dtype=np.float32)
        q = o.step(p, np.full(4, 2, dtype=np.float32))
        self.assertIs(q, p)
        np.testing.assert_array_equal(p, np.zeros(4, dtype=np.float32))
        with self.assertRaises(TypeError):
            o.step(np.ones(4), np.ones(4, dtype=np.float32))
        with self.assertRaises(ValueError):
            o.step(np.ones(8, dtype=np.float32)[::2], np.ones(4, dtype=np.float32))
        with self.assertRaises(sr.SparseResidError) as cm:
            o.step(np.ones(5, dtype=np.float32), np.ones(5, dtype=np.float32))
        self.assertEqual(cm.exception.status, sr.ERR_SHAPE)
        g = np.array([1, np.nan, 1, 1], dtype=np.float32)
        p[:] = 1
        with self.assertRaises(sr.SparseResidError) as cm:
            o.step(p, g)
        self.assertEqual(cm.exception.status, sr.ERR_NONFINITE)
        np.testing.assert_array_equal(p, np.ones(4, dtype=np.float32))
        with self.assertRaises(sr.SparseResidError):
            sr.Optim(3, "adamw", beta1=1.0)
        with self.assertRaises(ValueError):
            sr.Optim(3, "adam")
        o.lr = 0.25
        self.assertEqual(o.lr, 0.25)

    def test_save_load_continues_identically(self):
        n = 200
        for kind, kw in (("adamw", {"lr": 0.02, "weight_decay": 0.05}),
                         ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True})):
            o = sr.Optim(n, kind, **kw)
            p = self.rng.standard_normal(n).astype(np.float32)
            for _ in range(3):
                o.step(p, self.rng.standard_normal(n).astype(np.float32))
            path = os.path.join(self.tmp.name, kind + ".safetensors")
            o.save(path)
            o2 = sr.Optim.load(path)
            self.assertEqual(o2.steps, 3)
            self.assertEqual(o2.opts(), o.opts())
            for a, b in zip(o.state(), o2.state()):
                if a is None:
                    self.assertIsNone(b)
                else:
                    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
            q = p.copy()
            for _ in range(3):
                g = self.rng.standard_normal(n).astype(np.float32)
                o.step(p, g)
                o2.step(q, g)
            np.testing.assert_array_equal(p.view(np.uint32), q.view(np.uint32))


class BindingEdgeTest(unittest.TestCase):
    """Argument handling of the binding itself: views outliving their
    optimiser, negative sizes, foreign types."""

    def test_state_view_keeps_optimiser_alive(self):
        import gc

        def make():
            o = sr.Optim(1000, kind="sgd", lr=0.1, momentum=0.9)
            p = np.zeros(1000, np.float32)
            o.step(p, np.ones(1000, np.float32))
            return o.state(copy=False)[0]
        m = make()
        gc.collect()
        junk = [np.full(1000, 7.0, np.float32) for _ in range(50)]  # reuse freed memory
        # SGD momentum buffer after one step from zero: buf = g = 1
        np.testing.assert_array_equal(m, np.ones(1000, np.float32))
        del junk

    def test_negative_sizes_rejected(self):
        with self.assertRaises(ValueError):
            sr.Mask.create(-1)
        with self.assertRaises(ValueError):
            sr.Mask.random(-1, 0.5)
        with self.assertRaises(ValueError):
            sr.Optim(-1)
        with self.assertRaises(ValueError):
            sr.Mask.random(10, 0.5, offsets=[0, -5, 10])

    def test_jaccard_type_and_index_message(self):
        m = sr.Mask.create(10)
        with self.assertRaises(TypeError):
            m.jaccard([1, 2])
        with self.assertRaisesRegex(IndexError, "entry -11 of a mask of 10"):
            m[-11]

    def test_step_size_mismatch_is_shape(self):
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.Optim(0).step(np.zeros(2, np.float32), np.zeros(2, np.float32))
        self.assertEqual(cm.exception.status, sr.ERR_SHAPE)


if __name__ == "__main__":
    unittest.main()
