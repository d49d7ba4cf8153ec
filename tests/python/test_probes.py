"""Tests of the probes (include/sparseresid/probe.h) through the ctypes binding,
each against an independent reference: scipy.stats for the moments,
numpy.histogram for the bin counts and entropy, numpy.linalg.svd for the
participation ratio, numpy.corrcoef, numpy.fft.fft2 for the low-frequency
band, scikit-learn's KMeans for k-means, and a sort-based numpy reference for
the sparsity figures.

Run from the repository root: make check-python, i.e.
    /usr/bin/python3 -m unittest discover -s tests/python -t . -v
"""

import importlib.util
import math
import os
import pickle
import subprocess
import sys
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402  (needs the path and SPARSERESID_LIB above)

import scipy.stats  # Debian's python3-scipy and python3-sklearn, from .ci/deps.sh
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


def rel_close(test, got, want, rel, msg=None, abs_tol=0.0):
    test.assertTrue(math.isfinite(got), "%s: got %r" % (msg, got))
    test.assertLessEqual(abs(got - want), rel * abs(want) + abs_tol,
                         "%s: got %.17g, want %.17g" % (msg, got, want))


def rng(seed):
    return np.random.default_rng(seed)


# ---- data sets -------------------------------------------------------------

def gaussian(n, seed=1, scale=0.02, loc=0.001):
    return (rng(seed).standard_normal(n) * scale + loc).astype(np.float32)


def student_t(n, seed=2, nu=5):
    return (rng(seed).standard_t(nu, n) * 0.01).astype(np.float32)


def sparse_spikes(n, seed=3, share=0.005):
    """A quiet background with rare large spikes: very heavy-tailed."""
    g = rng(seed)
    x = g.standard_normal(n) * 1e-3
    idx = g.choice(n, int(n * share), replace=False)
    x[idx] = g.standard_normal(idx.size) * 0.5
    return x.astype(np.float32)


def blobs(n, dims, k, seed, spread=10.0, sd=1.0):
    """make_blobs-like: k centres ~ N(0, spread^2), points ~ N(centre, sd^2)."""
    g = rng(seed)
    centres = g.standard_normal((k, dims)) * spread
    truth = np.arange(n) % k
    g.shuffle(truth)
    x = centres[truth] + g.standard_normal((n, dims)) * sd
    return x.astype(np.float32), truth


def smooth(m, n, seed=5, noise=0.05):
    """Sum of a few low-frequency plane waves plus a little noise."""
    g = rng(seed)
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    a = np.zeros((m, n))
    for _ in range(4):
        p, q = g.integers(0, 3, size=2)
        a += g.standard_normal() * np.cos(2 * np.pi * (p * i / m + q * j / n) + g.uniform(0, 6))
    a += noise * g.standard_normal((m, n))
    return a.astype(np.float32)


# ---- references --------------------------------------------------------------

def entropy_bits(counts):
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def pr_reference(a):
    s = np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)
    s2 = s * s
    pr = s2.sum() ** 2 / (s2 * s2).sum()
    return pr, pr / min(a.shape)


def band_residues(k, m):
    return sorted({j % m for j in range(-k, k + 1)})


def lowfreq_reference(a, band):
    x = np.asarray(a, dtype=np.float64)
    x = x - x.mean()
    m, n = x.shape
    power = np.abs(np.fft.fft2(x)) ** 2
    r1 = band_residues(int(math.floor(band * m / 2)), m)
    r2 = band_residues(int(math.floor(band * n / 2)), n)
    count = len(r1) * len(r2)
    total = power.sum() - power[0, 0]
    inband = power[np.ix_(r1, r2)].sum() - power[0, 0]
    if count <= 1 or total == 0:
        return float("nan")
    return (inband / total) / ((count - 1) / (m * n - 1))


def sparsity_reference(x):
    v = np.asarray(x, dtype=np.float64).ravel()
    n = v.size
    e = np.sort(v * v)[::-1]
    c = np.cumsum(e)
    total = c[-1]
    ks = [int(np.searchsorted(c, p * total, side="left")) + 1 for p in sr.SPARSITY_ENERGY_LEVELS]
    tops = [c[int(math.ceil(q * n)) - 1] / total for q in sr.SPARSITY_TOP_SHARES]
    l1 = np.abs(v).sum()
    l2 = math.sqrt((v * v).sum())
    hoyer = (math.sqrt(n) - l1 / l2) / (math.sqrt(n) - 1)
    return ks, tops, hoyer


# ---- the binding's argument checks -------------------------------------------

class TestArguments(unittest.TestCase):
    def test_constants_match_header(self):
        with open(os.path.join(ROOT, "include", "sparseresid", "probe.h")) as f:
            text = f.read()
        checked = 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#define" and parts[1].startswith("SRESID_PROBE_"):
                name = parts[1][len("SRESID_"):]
                self.assertEqual(getattr(sr, name), int(parts[2].rstrip("uU"), 0), name)
                checked += 1
        self.assertEqual(checked, 8)

    def test_matrix_views(self):
        a = np.zeros((6, 10), dtype=np.float32)
        self.assertEqual(sr._Mat(a).args()[1:], (6, 10, 10))
        self.assertEqual(sr._Mat(a[:, 2:7]).args()[1:], (6, 5, 10))
        self.assertEqual(sr._Mat(a[::3]).args()[1:], (2, 10, 30))
        self.assertEqual(sr._Mat(a[0]).args()[1:], (1, 10, 10))
        self.assertEqual(sr._Mat(a[1:2, 3:5]).args()[1:], (1, 2, 2))
        # zero-copy: the pointer is the array's own memory
        self.assertEqual(sr._Mat(a[:, 2:7]).ptr, a.ctypes.data + 8)
        # values-only probes take any C-contiguous array as one row
        self.assertEqual(sr._Mat(np.zeros((2, 3, 4), np.float32), flat=True).args()[1:],
                         (1, 24, 24))

    def test_bad_arrays_raise(self):
        a = np.zeros((8, 8), dtype=np.float32)
        for bad, exc in ((a.astype(np.float64), TypeError),
                         (a.astype(np.float16), TypeError),
                         (a.astype(">f4"), TypeError),
                         (a.astype(np.int32), TypeError),
                         ([[1.0, 2.0]], TypeError),
                         (np.zeros((2, 3, 4), np.float32), ValueError),
                         (np.float32(1.0), ValueError),
                         (a[:, ::2], ValueError),
                         (np.asfortranarray(a), ValueError),
                         (a[::-1], ValueError)):
            with self.assertRaises(exc, msg=repr(getattr(bad, "dtype", bad))):
                sr._Mat(bad)
        with self.assertRaises(ValueError):
            sr._Mat(a[:, 0], flat=True)  # 1-D strided
        with self.assertRaises(ValueError):
            sr._Mat(np.zeros((2, 3, 4), np.float32)[:, :, :2], flat=True)
        raw = np.zeros(41, dtype=np.uint8)
        with self.assertRaises(ValueError):
            sr._Mat(raw[1:41].view(np.float32))  # misaligned

    def test_blis_initialised_for_threadpoolctl(self):
        # BLIS 0.9 aborts when BLIS_ARCH_TYPE is set and threadpoolctl (which
        # scikit-learn calls in KMeans.fit) queries the library's BLIS before
        # bli_init: the binding initialises BLIS at import.
        # python3-threadpoolctl comes with python3-sklearn (.ci/deps.sh)
        self.assertIsNotNone(importlib.util.find_spec("threadpoolctl"), "threadpoolctl missing")
        with open("/proc/cpuinfo") as f:
            flags = set(next((ln for ln in f if ln.startswith("flags")), "").split())
        if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
            arch = "0"
        elif {"avx2", "fma"} <= flags:
            arch = "6"
        else:
            self.skipTest("CPU has neither AVX-512 nor AVX2")
        code = ("import sys; sys.path.insert(0, %r); import sparseresid as sr; "
                "import threadpoolctl; "
                "print([p.get('architecture') for p in threadpoolctl.threadpool_info() "
                "if p.get('internal_api') == 'blis'], sr.blas_arch())"
                % os.path.join(ROOT, "python"))
        env = dict(os.environ, BLIS_ARCH_TYPE=arch)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertNotIn("generic", run.stdout)

    def test_wrappers_reject_before_calling(self):
        d = np.ones((4, 4))
        for fn in (sr.participation_ratio, sr.lowfreq_ratio, sr.sparsity, sr.entropy,
                   lambda x: sr.kmeans_fit(x, 2), lambda x: sr.Moments().add(x)):
            with self.assertRaises(TypeError):
                fn(d)
            with self.assertRaises(ValueError):
                fn(np.ones((2, 2, 2), np.float32)[:, :, :1])
        with self.assertRaises(ValueError):
            sr.correlation(np.ones(5, np.float32), np.ones(6, np.float32))
        with self.assertRaises(ValueError):
            sr.correlation(np.ones((5, 4), np.float32)[:, :2], np.ones(10, np.float32))


# ---- moments -----------------------------------------------------------------

class TestMoments(unittest.TestCase):
    def check_scipy(self, x, stats, msg):
        ref = np.asarray(x, dtype=np.float64).ravel()
        ref = ref[np.isfinite(ref)]
        self.assertEqual(stats["count"], ref.size, msg)
        sd = ref.std()
        rel_close(self, stats["mean"], ref.mean(), 1e-9, msg + " mean", abs_tol=1e-12 * sd)
        rel_close(self, stats["variance"], ref.var(), 1e-9, msg + " variance")
        rel_close(self, stats["skewness"], scipy.stats.skew(ref), 1e-6, msg + " skewness",
                  abs_tol=1e-9)
        rel_close(self, stats["kurtosis"], scipy.stats.kurtosis(ref), 1e-6, msg + " kurtosis",
                  abs_tol=1e-9)
        self.assertEqual(stats["min"], ref.min(), msg)
        self.assertEqual(stats["max"], ref.max(), msg)

    def test_against_scipy(self):
        for name, x in (("gaussian", gaussian(200_000)), ("student-t(5)", student_t(100_000)),
                        ("sparse spikes", sparse_spikes(100_000)),
                        ("gaussian 2-D", gaussian(300 * 257, seed=7).reshape(300, 257))):
            st = sr.Moments(x).stats()
            self.check_scipy(x, st, name)
            self.assertEqual(st["nonfinite"], 0)
        self.assertGreater(sr.Moments(sparse_spikes(100_000)).stats()["kurtosis"], 50)

    def test_merged_chunks_equal_one_pass(self):
        x = student_t(123_457, seed=11)
        whole = sr.Moments(x)
        cuts = [0, 1, 1000, 1001, 50_000, 99_999, x.size]
        merged = sr.Moments()
        for a, b in zip(cuts[:-1], cuts[1:]):
            merged.merge(sr.Moments(x[a:b]))
        sequential = sr.Moments()
        for a, b in zip(cuts[:-1], cuts[1:]):
            sequential.add(x[a:b])
        w = whole.stats()
        for other in (merged.stats(), sequential.stats()):
            self.assertEqual(other["count"], w["count"])
            for key in ("mean", "variance", "skewness", "kurtosis"):
                rel_close(self, other[key], w[key], 1e-9, key, abs_tol=1e-15)
            self.assertEqual((other["min"], other["max"]), (w["min"], w["max"]))
        self.check_scipy(x, merged.stats(), "merged")
        # merging an empty state changes nothing, either way round
        e = sr.Moments().merge(whole.copy()).merge(sr.Moments())
        self.assertEqual(e.state(), whole.state())

    def test_strided_view_and_nonfinite(self):
        big = gaussian(200 * 64, seed=12).reshape(200, 64)
        view = big[:, 5:45]
        st = sr.Moments(view).stats()
        ref = sr.Moments(np.ascontiguousarray(view)).stats()
        for key in ("count", "mean", "variance", "skewness", "kurtosis", "min", "max"):
            rel_close(self, st[key], ref[key], 1e-12, key, abs_tol=1e-15)
        x = gaussian(10_000, seed=13)
        x[[3, 500, 9000]] = [np.nan, np.inf, -np.inf]
        st = sr.Moments(x).stats()
        self.assertEqual(st["nonfinite"], 3)
        self.check_scipy(x, st, "with non-finite")

    def test_undefined_and_state(self):
        st = sr.Moments(np.full(100, 0.25, np.float32)).stats()
        self.assertEqual(st["count"], 100)
        self.assertEqual(st["mean"], 0.25)
        self.assertEqual(st["variance"], 0.0)
        self.assertTrue(math.isnan(st["kurtosis"]))
        self.assertTrue(math.isnan(st["skewness"]))
        empty = sr.Moments().stats()
        self.assertEqual(empty["count"], 0)
        self.assertTrue(math.isnan(empty["kurtosis"]))
        m = sr.Moments(gaussian(1000))
        clone = pickle.loads(pickle.dumps(m))
        self.assertEqual(clone.state(), m.state())
        self.assertEqual(m.copy().stats(), m.stats())
        with self.assertRaises(TypeError):
            m.merge("not moments")


# ---- histogram and entropy -----------------------------------------------------

def edge_data(lo, hi, bins, seed):
    """Random values in and around [lo, hi], float32 values next to every
    numpy bin edge, lo and hi themselves (when float32-exact), NaN and Inf."""
    g = rng(seed)
    edges = np.linspace(lo, hi, bins + 1)
    e32 = edges.astype(np.float32)
    near = np.concatenate([e32, np.nextafter(e32, np.float32(np.inf)),
                           np.nextafter(e32, np.float32(-np.inf))])
    span = hi - lo
    body = g.uniform(lo - 0.1 * span, hi + 0.1 * span, 20_000).astype(np.float32)
    x = np.concatenate([body, near, near[:50],
                        np.array([np.nan, np.inf, -np.inf], np.float32)])
    g.shuffle(x)
    return x


def numpy_counts(x, bins, lo, hi):
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    counts, _ = np.histogram(v, bins=bins, range=(lo, hi))
    outside = int(((v < lo) | (v > hi)).sum())
    return counts.astype(np.uint64), outside


class TestHistogram(unittest.TestCase):
    CASES = ((8, -1.0, 1.0), (100, -0.37, 0.83), (7, 0.1, 0.7), (1, -2.0, 3.0),
             (100, 1e-4, 1e-4 + 3e-7), (1000, -3.0, 3.0), (64, 0.0, 1.0))

    def test_counts_equal_numpy_exactly(self):
        for i, (bins, lo, hi) in enumerate(self.CASES):
            x = edge_data(lo, hi, bins, seed=100 + i)
            want, outside = numpy_counts(x, bins, lo, hi)
            with sr.Histogram(bins, lo, hi) as h:
                h.add(x)
                got = h.counts()
                self.assertEqual(got.dtype, np.uint64)
                bad = np.nonzero(got != want)[0]
                self.assertEqual(bad.size, 0, "bins=%d [%r, %r]: bins %s differ: got %s, "
                                 "numpy %s" % (bins, lo, hi, bad[:5], got[bad[:5]],
                                               want[bad[:5]]))
                self.assertEqual(h.outside(), outside, "bins=%d" % bins)
                rel_close(self, h.entropy(), entropy_bits(want), 1e-12, "entropy")

    def test_values_exactly_on_edges_and_the_maximum(self):
        # edges k/4 are float32-exact: each lands in the bin it opens, the max in the last
        x = np.array([-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0], np.float32)
        with sr.Histogram(8, -1.0, 1.0) as h:
            np.testing.assert_array_equal(h.add(x).counts(), [1, 1, 1, 1, 1, 1, 1, 3])
            self.assertEqual(h.outside(), 0)
        # the data's own min and max as the range (what entropy() does)
        for seed in range(5):
            x = student_t(5000, seed=seed)
            lo, hi = float(x.min()), float(x.max())
            with sr.Histogram(100, lo, hi) as h:
                want, outside = numpy_counts(x, 100, lo, hi)
                np.testing.assert_array_equal(h.add(x).counts(), want)
                self.assertEqual(outside, 0)
                self.assertEqual(h.outside(), 0)

    def test_strided_and_merge(self):
        x = gaussian(120 * 50, seed=21).reshape(120, 50)
        lo, hi = -0.05, 0.06
        view = x[::2, 3:41]
        want, outside = numpy_counts(view, 37, lo, hi)
        with sr.Histogram(37, lo, hi) as a, sr.Histogram(37, lo, hi) as b:
            a.add(view[:25])
            b.add(view[25:])
            a.merge(b)
            np.testing.assert_array_equal(a.counts(), want)
            self.assertEqual(a.outside(), outside)
        with sr.Histogram(10, 0.0, 1.0) as a, sr.Histogram(11, 0.0, 1.0) as b, \
                sr.Histogram(10, 0.0, 2.0) as c:
            for other in (b, c):
                with self.assertRaises(sr.SparseResidError) as cm:
                    a.merge(other)
                self.assertEqual(cm.exception.status, sr.ERR_SHAPE)

    def test_bad_binning_and_empty(self):
        for bins, lo, hi in ((0, 0.0, 1.0), (-3, 0.0, 1.0), (10, 1.0, 1.0), (10, 2.0, 1.0),
                             (10, float("nan"), 1.0), (10, 0.0, float("inf")),
                             ((1 << 24) + 1, 0.0, 1.0)):
            with self.assertRaises(sr.SparseResidError, msg=(bins, lo, hi)) as cm:
                sr.Histogram(bins, lo, hi)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
            self.assertTrue(cm.exception.message)
        with sr.Histogram(5, 0.0, 1.0) as h:
            self.assertTrue(math.isnan(h.entropy()))
            np.testing.assert_array_equal(h.counts(), np.zeros(5, np.uint64))
        h = sr.Histogram(5, 0.0, 1.0)
        h.close()
        h.close()
        with self.assertRaises(ValueError):
            h.counts()


class TestEntropy(unittest.TestCase):
    def test_bits_equal_numpy_over_min_max(self):
        for name, x, bins in (("gaussian", gaussian(50_000), 100),
                              ("student-t", student_t(40_000), 100),
                              ("spikes", sparse_spikes(60_000), 100),
                              ("2-D 37 bins", gaussian(200 * 90, seed=31).reshape(200, 90), 37)):
            v = np.asarray(x, np.float64).ravel()
            counts, _ = np.histogram(v, bins=bins, range=(v.min(), v.max()))
            r = sr.entropy(x, bins=bins)
            self.assertEqual(r["count"], v.size, name)
            rel_close(self, r["bits"], entropy_bits(counts), 1e-12, name)
            rel_close(self, r["ratio"], r["bits"] / r["random_bits"], 1e-12, name + " ratio")
        spikes = sr.entropy(sparse_spikes(60_000))
        self.assertLess(spikes["ratio"], 0.6)  # concentrated: far below the Gaussian

    def test_strided_equals_contiguous_and_nonfinite_skipped(self):
        big = student_t(300 * 70, seed=32).reshape(300, 70)
        view = big[:, 10:60]
        self.assertEqual(sr.entropy(view), sr.entropy(np.ascontiguousarray(view)))
        x = gaussian(10_000, seed=33)
        y = x.copy()
        y[[1, 2]] = [np.nan, np.inf]
        r = sr.entropy(y)
        self.assertEqual(r["count"], 9998)
        v = np.delete(x, [1, 2]).astype(np.float64)
        counts, _ = np.histogram(v, bins=100, range=(v.min(), v.max()))
        rel_close(self, r["bits"], entropy_bits(counts), 1e-12)

    def test_random_baseline(self):
        # the baseline equals entropy_random for the same count, bins and seed
        # (binning over [min, max] is affine-invariant)
        x = gaussian(30_000, seed=34)
        for seed in (0, 7):
            r = sr.entropy(x, bins=100, seed=seed)
            rel_close(self, r["random_bits"], sr.entropy_random(30_000, 100, seed), 1e-6)
        # reproducible, seed-dependent, and close to a numpy Gaussian sample's
        a = sr.entropy_random(200_000, 100, 5)
        self.assertEqual(a, sr.entropy_random(200_000, 100, 5))
        self.assertNotEqual(a, sr.entropy_random(200_000, 100, 6))
        g = rng(35).standard_normal(200_000)
        counts, _ = np.histogram(g, bins=100, range=(g.min(), g.max()))
        self.assertLess(abs(a - entropy_bits(counts)), 0.2)
        self.assertTrue(math.isnan(sr.entropy_random(1, 100, 0)))
        self.assertTrue(math.isnan(sr.entropy_random(0, 100, 0)))

    def test_constant_and_bad_bins(self):
        r = sr.entropy(np.full(1000, 3.5, np.float32))
        self.assertEqual(r["bits"], 0.0)
        self.assertTrue(math.isnan(r["random_bits"]))
        self.assertEqual(r["count"], 1000)
        default = sr.entropy(gaussian(5000), bins=0)
        self.assertEqual(default, sr.entropy(gaussian(5000), bins=100))
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.entropy(gaussian(100), bins=-1)
        self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)


# ---- participation ratio, correlation, low frequencies ------------------------------

class TestParticipationRatio(unittest.TestCase):
    def test_against_svd(self):
        g = rng(41)
        big = g.standard_normal((160, 130)).astype(np.float32)
        u = g.standard_normal((200, 3))
        v = g.standard_normal((3, 150))
        cases = {
            "square": g.standard_normal((96, 96)).astype(np.float32),
            "tall": g.standard_normal((300, 40)).astype(np.float32),
            "wide": g.standard_normal((40, 300)).astype(np.float32),
            "column view": big[:, 7:77],
            "row view": big[::2],
            "low rank 3": (u @ v).astype(np.float32),
            "decaying spectrum": (g.standard_normal((120, 80)) *
                                  (0.9 ** np.arange(80))).astype(np.float32),
            "heavy tailed": (g.standard_t(3, (150, 90)) * 0.01).astype(np.float32),
            "one row": g.standard_normal((1, 50)).astype(np.float32),
            "one column": g.standard_normal((50, 1)).astype(np.float32),
            "large square": g.standard_normal((512, 512)).astype(np.float32),
        }
        for name, a in cases.items():
            pr, norm = sr.participation_ratio(a)
            want_pr, want_norm = pr_reference(a)
            rel_close(self, pr, want_pr, 1e-4, name)
            rel_close(self, norm, want_norm, 1e-4, name + " normalized")
            self.assertGreaterEqual(pr, 1 - 1e-6, name)
            self.assertLessEqual(pr, min(a.shape) * (1 + 1e-6), name)
        self.assertLess(sr.participation_ratio(cases["low rank 3"])[0], 3.0 + 1e-4)

    def test_undefined_and_errors(self):
        pr, norm = sr.participation_ratio(np.zeros((10, 12), np.float32))
        self.assertTrue(math.isnan(pr) and math.isnan(norm))
        self.assertEqual(sr.participation_ratio(np.arange(1, 9, dtype=np.float32))[0], 1.0)
        a = rng(42).standard_normal((20, 20)).astype(np.float32)
        a[3, 4] = np.nan
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.participation_ratio(a)
        self.assertEqual(cm.exception.status, sr.ERR_NONFINITE)


class TestCorrelation(unittest.TestCase):
    def test_against_corrcoef(self):
        g = rng(51)
        x = g.standard_normal(20_000).astype(np.float32)
        for rho in (0.0, 0.003, 0.5, -0.9, 1.0):
            y = (rho * x + math.sqrt(1 - rho * rho) * g.standard_normal(x.size) + 2.0)
            y = y.astype(np.float32)
            want = np.corrcoef(x.astype(np.float64), y.astype(np.float64))[0, 1]
            self.assertAlmostEqual(sr.correlation(x, y), want, delta=1e-9, msg=rho)
        # matrices are compared element by element, as flattened
        a = g.standard_normal((64, 48)).astype(np.float32)
        b = (a + g.standard_normal((64, 48))).astype(np.float32)
        want = np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1]
        self.assertAlmostEqual(sr.correlation(a, b), want, delta=1e-9)

    def test_nonfinite_positions_and_constant(self):
        g = rng(52)
        x = g.standard_normal(5000).astype(np.float32)
        y = (x + g.standard_normal(5000)).astype(np.float32)
        x[[10, 20]] = [np.nan, np.inf]
        y[[20, 30, 40]] = [np.nan, -np.inf, np.nan]
        keep = np.isfinite(x) & np.isfinite(y)
        want = np.corrcoef(x[keep].astype(np.float64), y[keep].astype(np.float64))[0, 1]
        self.assertAlmostEqual(sr.correlation(x, y), want, delta=1e-9)
        self.assertTrue(math.isnan(sr.correlation(np.ones(100, np.float32),
                                                  g.standard_normal(100).astype(np.float32))))
        self.assertTrue(math.isnan(sr.correlation(np.zeros(100, np.float32),
                                                  np.zeros(100, np.float32))))


class TestLowFrequency(unittest.TestCase):
    def test_against_fft2(self):
        g = rng(61)
        big = g.standard_normal((90, 80)).astype(np.float32)
        cases = [
            ("noise 64x64", g.standard_normal((64, 64)).astype(np.float32), 0.125),
            ("smooth 64x64", smooth(64, 64), 0.125),
            ("smooth odd 37x53", smooth(37, 53, seed=6), 0.3),
            ("noise odd 45x27", g.standard_normal((45, 27)).astype(np.float32), 0.2),
            ("smooth 100x30 band 0.5", smooth(100, 30, seed=7), 0.5),
            ("noise 33x17 band 0.9", g.standard_normal((33, 17)).astype(np.float32), 0.9),
            ("one axis only 10x60", smooth(10, 60, seed=8), 0.1),
            ("column view", big[:, 5:70], 0.25),
            ("row view", big[::3], 0.4),
            ("smooth 128x96", smooth(128, 96, seed=9), 0.0625),
            ("one row", g.standard_normal((1, 200)).astype(np.float32), 0.2),
        ]
        for name, a, band in cases:
            want = lowfreq_reference(a, band)
            rel_close(self, sr.lowfreq_ratio(a, band), want, 1e-4, name)
        self.assertGreater(sr.lowfreq_ratio(smooth(64, 64)), 20)

    def test_full_band_and_default(self):
        for shape in ((48, 80), (37, 53), (16, 16)):
            a = rng(62).standard_normal(shape).astype(np.float32)
            rel_close(self, sr.lowfreq_ratio(a, 1.0), 1.0, 1e-4, str(shape))
        a = smooth(64, 48)
        self.assertEqual(sr.lowfreq_ratio(a), sr.lowfreq_ratio(a, 0.125))
        self.assertEqual(sr.lowfreq_ratio(a, 0.0), sr.lowfreq_ratio(a, 0.125))

    def test_undefined_and_errors(self):
        a = rng(63).standard_normal((16, 16)).astype(np.float32)
        self.assertTrue(math.isnan(sr.lowfreq_ratio(a, 0.05)))  # only DC in the band
        self.assertTrue(math.isnan(sr.lowfreq_ratio(np.full((16, 16), 2.0, np.float32))))
        for band in (-0.1, 1.5, float("nan")):
            with self.assertRaises(sr.SparseResidError, msg=band) as cm:
                sr.lowfreq_ratio(a, band)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
        a[2, 2] = np.inf
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.lowfreq_ratio(a)
        self.assertEqual(cm.exception.status, sr.ERR_NONFINITE)


# ---- k-means ------------------------------------------------------------------

def same_partition(a, b):
    """True when labels a and b are equal up to a renaming of the clusters."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


class TestKMeans(unittest.TestCase):
    def sk(self, x, k):
        return KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)

    def test_separable_clusters_recovered(self):
        for n, dims, k, seed in ((2000, 16, 8, 71), (600, 5, 3, 72), (1500, 40, 12, 73)):
            x, truth = blobs(n, dims, k, seed)
            labels, centres, inertia, iters = sr.kmeans_fit(x, k, seed=0)
            self.assertEqual(labels.shape, (n,))
            self.assertEqual(centres.shape, (k, dims))
            self.assertEqual(adjusted_rand_score(truth, labels), 1.0, (n, dims, k))
            self.assertTrue(same_partition(truth, labels))
            ref = self.sk(x, k)
            self.assertLessEqual(inertia, ref.inertia_ * 1.01, (n, dims, k))
            self.assertGreaterEqual(iters, 1)

    def test_inertia_within_one_percent_of_sklearn(self):
        # Overlapping clusters: a real optimisation problem. One k-means++ run
        # (the library's, or sklearn's with n_init=1) misses sklearn's best of
        # 10 by more than 1 % for about a quarter of the seeds on such data;
        # data and seed are fixed here, so the test is deterministic, and a
        # change of the library's seeding may need other fixed seeds.
        for n, dims, k, spread, seed in ((3000, 10, 6, 2.5, 74), (2000, 30, 8, 1.5, 75),
                                         (1000, 4, 5, 3.0, 76)):
            x, _ = blobs(n, dims, k, seed, spread=spread)
            _, _, inertia, _ = sr.kmeans_fit(x, k, seed=0)
            ref = self.sk(x, k).inertia_
            self.assertLessEqual(inertia, ref * 1.01, "n=%d k=%d: %.6g vs sklearn %.6g"
                                 % (n, k, inertia, ref))

    def test_solution_is_consistent(self):
        x, _ = blobs(1200, 12, 6, 77, spread=2.0)
        big = np.zeros((1200, 20), np.float32)
        big[:, 3:15] = x
        view = big[:, 3:15]
        labels, centres, inertia, iters = sr.kmeans_fit(view, 6, seed=3, max_iter=300)
        self.assertLess(iters, 300)  # converged: no assignment changed
        x64 = x.astype(np.float64)
        d = ((x64[:, None, :] - centres.astype(np.float64)[None]) ** 2).sum(-1)
        rel_close(self, inertia, d[np.arange(1200), labels].sum(), 1e-4, "inertia")
        best = d.min(axis=1)
        # each point sits with its nearest centre (up to float32 rounding of ties)
        self.assertTrue(np.all(d[np.arange(1200), labels] <= best * (1 + 1e-5) + 1e-6))
        for j in range(6):
            np.testing.assert_allclose(centres[j], x64[labels == j].mean(axis=0),
                                       rtol=1e-4, atol=1e-5)
        again = sr.kmeans_fit(np.ascontiguousarray(view), 6, seed=3, max_iter=300)
        np.testing.assert_array_equal(again[0], labels)  # strided == contiguous, reproducible
        self.assertEqual(sr.kmeans_fit(view, 6, seed=3, max_iter=1)[3], 1)
        labels1, centres1, inertia1, _ = sr.kmeans_fit(x, 1)
        self.assertTrue(np.all(labels1 == 0))
        rel_close(self, inertia1, ((x64 - x64.mean(0)) ** 2).sum(), 1e-5, "K=1")

    def test_explained(self):
        x, _ = blobs(800, 10, 4, 78)
        x64 = x.astype(np.float64)
        total = ((x64 - x64.mean(0)) ** 2).sum()
        res = sr.kmeans_explained(x, (2, 4, 8), seed=0)
        self.assertEqual([r["k"] for r in res], [2, 4, 8])
        for r in res:
            _, _, inertia, _ = sr.kmeans_fit(x, r["k"], seed=0)
            rel_close(self, r["explained"], 1 - inertia / total, 1e-5, "K=%d" % r["k"])
            rel_close(self, r["difference"], r["explained"] - r["explained_random"], 1e-12,
                      "difference", abs_tol=1e-15)
            self.assertGreater(r["explained"], r["explained_random"])
        self.assertGreater(res[1]["explained"], 0.95)
        # Gaussian matrix: about as clusterable as its own random baseline
        noise = rng(79).standard_normal((400, 30)).astype(np.float32)
        for r in sr.kmeans_explained(noise):
            self.assertLess(abs(r["difference"]), 0.05, r)
        tiny = sr.kmeans_explained(x[:5], (2, 8))
        self.assertTrue(math.isfinite(tiny[0]["explained"]))
        self.assertTrue(math.isnan(tiny[1]["explained"]))

    def test_tolerance_as_sklearn(self):
        # Overlapping blobs in few dimensions: Lloyd creeps on for many
        # iterations while the centres barely move. sklearn continued from
        # the library's centres after its first iteration (init=those) must
        # stop at the same point: tol 1e-4 x the mean column variance.
        x, _ = blobs(4000, 3, 6, 81, spread=1.0)
        _, c1, _, it1 = sr.kmeans_fit(x, 6, seed=5, max_iter=1)
        self.assertEqual(it1, 1)
        labels, centres, inertia, iters = sr.kmeans_fit(x, 6, seed=5)
        strict = sr.kmeans_fit(x, 6, seed=5, max_iter=1000)
        ref = KMeans(n_clusters=6, init=c1, n_init=1, tol=1e-4).fit(x)
        self.assertEqual(iters, ref.n_iter_ + 1)
        rel_close(self, inertia, ref.inertia_, 1e-5, "inertia vs sklearn")
        self.assertEqual(adjusted_rand_score(ref.labels_, labels), 1.0)
        # the tolerance stopped it before the labels settled (else this
        # data would not test it)
        self.assertLess(iters, 100)
        ref_strict = KMeans(n_clusters=6, init=c1, n_init=1, tol=0).fit(x)
        self.assertGreater(ref_strict.n_iter_ + 1, iters)
        self.assertEqual(strict[3], iters)  # max_iter only bounds it

    def test_restarts_keep_the_best_run(self):
        # n_init runs from seed, then mix(seed + r) (splitmix64's output
        # function, docs/probes.md "Restarts"); the lowest inertia is kept,
        # the first on a tie.
        def mix(z):
            m = (1 << 64) - 1
            z = (z + 0x9E3779B97F4A7C15) & m
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
            return z ^ (z >> 31)

        x = student_t(192 * 320, seed=82, nu=3).reshape(192, 320)
        seed = 1234
        runs = [sr.kmeans_fit(x, 8, seed=seed if r == 0 else mix(seed + r)) for r in range(6)]
        inertias = [r[2] for r in runs]
        self.assertGreater(max(inertias), min(inertias) * 1.001)  # the runs differ
        best = runs[int(np.argmin(inertias))]
        labels, centres, inertia, iters = sr.kmeans_fit(x, 8, seed=seed, n_init=6)
        self.assertEqual(inertia, best[2])
        np.testing.assert_array_equal(labels, best[0])
        np.testing.assert_array_equal(centres, best[1])
        self.assertEqual(iters, best[3])
        one = sr.kmeans_fit(x, 8, seed=seed, n_init=1)
        self.assertEqual(one[2], runs[0][2])
        np.testing.assert_array_equal(sr.kmeans_fit(x, 8, seed=seed, n_init=0)[0], one[0])
        # explained variance: the best run on the matrix and on the baseline
        x64 = x.astype(np.float64)
        total = ((x64 - x64.mean(0)) ** 2).sum()
        r = sr.kmeans_explained(x, (8,), seed=seed, n_init=6)[0]
        rel_close(self, r["explained"], 1 - min(inertias) / total, 1e-12, "explained")

    def test_auto_restarts_follow_the_size(self):
        # min(50, max(1, 2^24 // (rows * cols))) runs
        small = sparse_spikes(192 * 320, seed=83).reshape(192, 320)
        self.assertEqual(sr.kmeans_explained(small, (4,), seed=2, n_init="auto"),
                         sr.kmeans_explained(small, (4,), seed=2, n_init=50))
        mid = student_t(1024 * 2048, seed=84, nu=3).reshape(1024, 2048)  # 8 runs
        # seeds where the 8th run is the best of 8 (4) and the 9th beats it (6)
        for seed, other in ((4, 7), (6, 9)):
            auto = sr.kmeans_fit(mid, 4, seed=seed, n_init=sr.KMEANS_INIT_AUTO)[2]
            self.assertEqual(auto, sr.kmeans_fit(mid, 4, seed=seed, n_init=8)[2])
            self.assertNotEqual(auto, sr.kmeans_fit(mid, 4, seed=seed, n_init=other)[2])

    def test_default_restarts_near_sklearn_n_init_10(self):
        # Heavy-tailed sparse matrices, where single k-means++ runs land in
        # poor local optima: the figure the report gives by default must
        # come within 0.005 of scikit-learn's best of 10 runs (averaged
        # over its random states), for several seeds of the data and of
        # the library. One run falls short by up to 0.05 here.
        short_one = 0.0
        for kind, seed in (("spikes", 85), ("spikes", 86), ("t3", 87), ("t3", 88)):
            if kind == "spikes":
                x = sparse_spikes(192 * 320, seed=seed, share=0.01).reshape(192, 320)
            else:
                x = student_t(192 * 320, seed=seed, nu=3).reshape(192, 320)
            x64 = x.astype(np.float64)
            total = ((x64 - x64.mean(0)) ** 2).sum()
            for k in (2, 4, 8, 16):
                ref = np.mean([1 - KMeans(n_clusters=k, n_init=10, random_state=rs)
                               .fit(x).inertia_ / total for rs in range(3)])
                for s in (0, 1):
                    got = sr.kmeans_explained(x, (k,), seed=s, n_init="auto")[0]["explained"]
                    self.assertGreaterEqual(got, ref - 0.005, "%s %d K=%d seed %d: %.4f vs "
                                            "sklearn n_init=10 %.4f" % (kind, seed, k, s, got,
                                                                        ref))
                    one = sr.kmeans_explained(x, (k,), seed=s)[0]["explained"]
                    short_one = max(short_one, ref - one)
        self.assertGreater(short_one, 0.01)  # without restarts the test would fail

    def test_errors(self):
        x, _ = blobs(50, 3, 2, 80)
        for n_init in (-2, sr.KMEANS_MAX_INIT + 1):
            with self.assertRaises(sr.SparseResidError, msg=n_init) as cm:
                sr.kmeans_fit(x, 2, n_init=n_init)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
            with self.assertRaises(sr.SparseResidError, msg=n_init):
                sr.kmeans_explained(x, (2,), n_init=n_init)
        for k in (0, -1, 51):
            with self.assertRaises(sr.SparseResidError, msg=k) as cm:
                sr.kmeans_fit(x, k)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
        x[7, 1] = np.nan
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.kmeans_fit(x, 2)
        self.assertEqual(cm.exception.status, sr.ERR_NONFINITE)


# ---- sparsity -------------------------------------------------------------------

class TestSparsity(unittest.TestCase):
    def check(self, x, name):
        n = np.asarray(x).size
        ks, tops, hoyer = sparsity_reference(x)
        r = sr.sparsity(x)
        for level, k, got in zip(sr.SPARSITY_ENERGY_LEVELS, ks, r["elements_for_energy"]):
            self.assertEqual(round(got * n), k, "%s: %g of the energy" % (name, level))
            rel_close(self, got, k / n, 1e-15, name)
        for share, want, got in zip(sr.SPARSITY_TOP_SHARES, tops, r["energy_in_top"]):
            rel_close(self, got, want, 1e-12, "%s: top %g" % (name, share))
        rel_close(self, r["hoyer"], hoyer, 1e-10, name + " hoyer")

    def test_against_sorted_reference(self):
        g = rng(91)
        big = (g.standard_t(4, (200, 150)) * 0.01).astype(np.float32)
        self.check(gaussian(20_000), "gaussian")
        self.check(student_t(30_000), "student-t")
        self.check(sparse_spikes(40_000), "spikes")
        self.check(big, "2-D")
        self.check(np.ascontiguousarray(big[:, 10:110]), "2-D contiguous copy")
        self.check(g.uniform(-1, 1, 777).astype(np.float32), "odd size")
        self.assertEqual(sr.sparsity(big[:, 10:110]),
                         sr.sparsity(np.ascontiguousarray(big[:, 10:110])))

    def test_extremes(self):
        one = np.zeros(1000, np.float32)
        one[123] = -2.0
        r = sr.sparsity(one)
        self.assertEqual(r["elements_for_energy"], (0.001, 0.001, 0.001))
        self.assertEqual(r["energy_in_top"], (1.0, 1.0, 1.0))
        rel_close(self, r["hoyer"], 1.0, 1e-12)
        flat = np.full(1000, 0.5, np.float32)
        r = sr.sparsity(flat)
        self.assertAlmostEqual(r["hoyer"], 0.0, delta=1e-12)
        self.assertEqual(r["elements_for_energy"], (0.5, 0.9, 0.99))
        z = sr.sparsity(np.zeros(100, np.float32))
        self.assertTrue(all(math.isnan(v) for v in z["elements_for_energy"]))
        self.assertTrue(math.isnan(z["hoyer"]))


# ---- permutation null -------------------------------------------------------------

class TestPermutationNull(unittest.TestCase):
    def test_structure_is_detected(self):
        g = rng(101)
        low = (g.standard_normal((64, 2)) @ g.standard_normal((2, 48))).astype(np.float32)
        r = sr.permutation_null(sr.PROBE_PR, low, draws=12, seed=1)
        self.assertEqual(r["draws"], 12)
        rel_close(self, r["observed"], sr.participation_ratio(low)[0], 1e-9, "observed PR")
        self.assertLess(r["z"], -5)
        self.assertGreater(r["mean"], 5 * r["observed"])
        rel_close(self, r["z"], (r["observed"] - r["mean"]) / r["std"], 1e-9, "z")

        s = smooth(48, 40)
        r = sr.permutation_null("lowfreq", s, 0.25, draws=10, seed=2)
        rel_close(self, r["observed"], sr.lowfreq_ratio(s, 0.25), 1e-9, "observed lowfreq")
        self.assertGreater(r["z"], 5)
        self.assertLess(abs(r["mean"] - 1.0), 0.5)

        x, _ = blobs(300, 8, 4, 102)
        r = sr.permutation_null(sr.PROBE_KMEANS, x, 4, draws=5, seed=3)
        self.assertGreater(r["observed"], 0.9)
        self.assertGreater(r["z"], 3)

    def test_reproducible_and_errors(self):
        a = rng(103).standard_normal((30, 20)).astype(np.float32)
        one = sr.permutation_null("pr", a, draws=8, seed=4)
        self.assertEqual(one, sr.permutation_null(sr.PROBE_PR, a, draws=8, seed=4))
        self.assertLess(abs(one["z"]), 6)
        with self.assertRaises(ValueError):
            sr.permutation_null("entropy-of-nothing", a)
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.permutation_null(sr.PROBE_MOMENTS, a, draws=4)
        self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.permutation_null(sr.PROBE_PR, a, draws=-1)
        self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)


if __name__ == "__main__":
    unittest.main()
