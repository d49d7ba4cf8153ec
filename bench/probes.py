#!/usr/bin/python3
"""Probe benchmark: the library's probes through the Python binding against
the reference tools a Python user would reach for, in one process, on the
same arrays, interleaved round by round.

    /usr/bin/python3 bench/probes.py [--threads T] [--reps R] [--ref-reps R]
                                     [--n N] [--size S] [--sections abcd]
                                     [--helper SO] [--json FILE] [--quick]

  --threads T    threads for the library (sresid_set_threads) and for the
                 references (OMP/BLIS/OPENBLAS/MKL_NUM_THREADS, scipy.fft
                 workers), set before numpy loads (default 1)
  --reps R       timed repetitions of each contender (default 5, at least 5
                 unless --quick); the table shows medians
  --ref-reps R   repetitions of the slow SVD references (default: --reps)
  --n N          values for section a (default 100000000)
  --size S       matrix side for sections b, c, d (default 4096)
  --sections     any of a (moments + entropy), b (participation ratio),
                 c (low-frequency band), d (k-means); default abcd
  --helper SO    bench/probes.c built as a shared object (the memory
                 bandwidth yardstick); without it section a has no C row
  --json FILE    also write the raw results there
  --quick        small sizes and 2 repetitions: a smoke test, not a result

Sections (all data float32, fixed seeds):
  a  N values, Student-t(5) x 0.01 (a heavy-tailed residual): the library's
     moments (one pass) and 100-bin histogram over [min, max] + entropy (one
     more pass) vs scipy.stats.kurtosis + numpy.histogram(bins=100), and vs
     one streaming read of the same array (C, and numpy's sum)
  b  S x S Gaussian: participation ratio vs numpy.linalg.svd(compute_uv=False)
     (float64 LAPACK) and scipy.linalg.svdvals (float32), and the same Gram
     formula written in numpy
  c  S x S smooth + noise: low-frequency band ratio (band 1/8) vs the
     transforms alone: numpy.fft.fft2 (complex128) and scipy.fft.rfft2
     (float32)
  d  S x S, K = 8: k-means vs sklearn KMeans(n_clusters=8, n_init=1,
     random_state=0) on a Gaussian matrix and on 8 separated clusters; time
     and inertia

BLIS_ARCH_TYPE: if unset, set here before BLIS loads, as DESIGN.md's platform
notes say: 0 (skx) on CPUs with AVX-512 F/DQ/BW/VL, else 6 (zen3) with
AVX2 + FMA; both the library and numpy/scipy (Debian's libblas.so.3 is BLIS)
then use it.
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pick_blis_arch():
    """BLIS_ARCH_TYPE as the platform notes say; returns (value, how chosen)."""
    if os.environ.get("BLIS_ARCH_TYPE"):
        return os.environ["BLIS_ARCH_TYPE"], "set by the caller"
    flags = cpu_flags()
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
        return "0", "AVX-512 F/DQ/BW/VL -> skx"
    if {"avx2", "fma"} <= flags:
        return "6", "AVX2 + FMA -> zen3"
    return None, "no AVX2: BLIS picks"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ref-reps", type=int, default=0)
    p.add_argument("--n", type=int, default=100_000_000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--sections", default="abcd")
    p.add_argument("--helper", default="")
    p.add_argument("--json", default="")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.size, a.reps = min(a.n, 2_000_000), min(a.size, 512), min(a.reps, 2)
    elif a.reps < 5:
        p.error("--reps must be at least 5 (medians of >= 5 runs); use --quick to smoke-test")
    if a.threads < 1:
        p.error("--threads must be >= 1")
    a.ref_reps = a.ref_reps or a.reps
    if set(a.sections) - set("abcd") or not a.sections:
        p.error("--sections takes letters from abcd")
    return a


class Bench:
    """Contenders of one section, timed in interleaved rounds."""

    def __init__(self, section, title, reps):
        self.section, self.title, self.reps = section, title, reps
        self.items = []  # dict(name, fn, reps, warm, times, value, lib)
        self.base = None  # the library row the references are compared with

    def add(self, name, fn, lib=False, reps=None, warm=True, base=False):
        if base or (lib and self.base is None):
            self.base = name
        self.items.append({"name": name, "fn": fn, "reps": reps or self.reps, "warm": warm,
                           "times": [], "value": None, "lib": lib})

    def run(self):
        print("== %s: %s" % (self.section, self.title), flush=True)
        for it in self.items:
            if it["warm"]:
                it["value"] = it["fn"]()
        rounds = max(it["reps"] for it in self.items)
        for r in range(rounds):
            for it in self.items:
                if r >= it["reps"]:
                    continue
                t0 = time.perf_counter()
                v = it["fn"]()
                it["times"].append(time.perf_counter() - t0)
                it["value"] = v
            print("   round %d/%d: %s" % (r + 1, rounds, ", ".join(
                "%s %.4gs" % (it["name"], it["times"][-1]) for it in self.items
                if len(it["times"]) == r + 1)), flush=True)
        for it in self.items:
            it["median"] = statistics.median(it["times"])
            it["min"], it["max"] = min(it["times"]), max(it["times"])
        return self

    def median(self, name):
        for it in self.items:
            if it["name"] == name:
                return it["median"]
        raise KeyError(name)

    def value(self, name):
        for it in self.items:
            if it["name"] == name:
                return it["value"]
        raise KeyError(name)


def fmt_s(s):
    if s >= 10:
        return "%.1f" % s
    if s >= 1:
        return "%.2f" % s
    if s >= 0.01:
        return "%.3f" % s
    return "%.4f" % s


def main(argv):
    args = parse(argv)
    threads = str(args.threads)
    # Before numpy, scipy or the library load BLIS / OpenMP.
    for var in ("OMP_NUM_THREADS", "BLIS_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "SRESID_NUM_THREADS"):
        os.environ[var] = threads
    arch, why = pick_blis_arch()
    if arch is not None:
        os.environ["BLIS_ARCH_TYPE"] = arch

    sys.path.insert(0, os.path.join(ROOT, "python"))
    os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))
    import numpy as np
    import scipy
    import scipy.fft
    import scipy.linalg
    import scipy.stats
    import sklearn
    from sklearn.cluster import KMeans
    import sparseresid as sr

    sr.set_threads(args.threads)
    try:
        from threadpoolctl import threadpool_info
        pools = ", ".join("%s %s (%s threads)" % (p.get("internal_api"),
                                                  os.path.basename(p.get("filepath", "")),
                                                  p.get("num_threads"))
                          for p in threadpool_info())
    except ImportError:
        pools = "threadpoolctl not installed"

    helper = None
    if args.helper:
        helper = ctypes.CDLL(args.helper)
        helper.probes_sum_f32.restype = ctypes.c_double
        helper.probes_sum_f32.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    info = {
        "threads": args.threads, "reps": args.reps, "ref_reps": args.ref_reps,
        "blis_arch_type": os.environ.get("BLIS_ARCH_TYPE", "(unset)"), "arch_choice": why,
        "library_blis_kernels": sr.blas_arch(), "library": sr.version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__,
        "cpu": cpu, "nproc": os.cpu_count(), "threadpools": pools, "quick": args.quick,
    }
    print("probes benchmark: %s" % json.dumps(info), flush=True)
    T = args.threads
    results = []
    gates = []

    def gate(text, ok, detail):
        gates.append({"target": text, "met": bool(ok), "detail": detail})

    # ---- a: moments + entropy over N values ----
    if "a" in args.sections:
        n = args.n
        x = np.empty(n, dtype=np.float32)
        g = np.random.default_rng(1)
        step = 10_000_000
        for i in range(0, n, step):
            k = min(step, n - i)
            x[i:i + k] = g.standard_t(5, k) * 0.01
        st = sr.Moments(x).stats()
        lo, hi = st["min"], st["max"]

        def lib_moments():
            return sr.Moments(x).stats()["kurtosis"]

        def lib_hist():
            with sr.Histogram(100, lo, hi) as h:
                return h.add(x).entropy()

        def lib_both():
            s = sr.Moments(x).stats()
            with sr.Histogram(100, s["min"], s["max"]) as h:
                return (s["kurtosis"], h.add(x).entropy())

        def ref_both():
            k = scipy.stats.kurtosis(x)
            counts, _ = np.histogram(x, bins=100)
            p = counts[counts > 0] / counts.sum()
            return (float(k), float(-(p * np.log2(p)).sum()))

        b = Bench("a", "moments + entropy, %d float32 values (%.0f MB)" % (n, x.nbytes / 1e6),
                  args.reps)
        if helper is not None:
            b.add("C streaming read (sum)", lambda: helper.probes_sum_f32(x.ctypes.data, n))
        b.add("numpy x.sum()", lambda: float(x.sum()))
        b.add("library Moments.add (1 pass)", lib_moments, lib=True)
        b.add("library Histogram(100).add + entropy (1 pass)", lib_hist, lib=True)
        b.add("library moments + entropy (2 passes)", lib_both, lib=True, base=True)
        b.add("library entropy() incl. %d-draw baseline" % n,
              lambda: sr.entropy(x, 100)["bits"], lib=True)
        b.add("scipy.stats.kurtosis", lambda: float(scipy.stats.kurtosis(x)))
        b.add("numpy.histogram(bins=100)", lambda: int(np.histogram(x, bins=100)[0].max()))
        b.add("scipy kurtosis + numpy histogram + entropy", ref_both)
        b.run()
        lib_t = b.median("library moments + entropy (2 passes)")
        ref_t = b.median("scipy kurtosis + numpy histogram + entropy")
        lv, rv = b.value("library moments + entropy (2 passes)"), b.value(
            "scipy kurtosis + numpy histogram + entropy")
        gate("a: moments + entropy >= 10x faster than scipy.stats.kurtosis + numpy.histogram",
             ref_t / lib_t >= 10, "%.1fx (%s s vs %s s); kurtosis %.6g vs %.6g, entropy "
             "%.6f vs %.6f bits" % (ref_t / lib_t, fmt_s(lib_t), fmt_s(ref_t), lv[0], rv[0],
                                    lv[1], rv[1]))
        bw_name = "C streaming read (sum)" if helper is not None else "numpy x.sum()"
        bw = b.median(bw_name)
        for name, passes in (("library Moments.add (1 pass)", 1),
                             ("library Histogram(100).add + entropy (1 pass)", 1),
                             ("library moments + entropy (2 passes)", 2)):
            t = b.median(name)
            gate("a: %s within 2x of %d streaming read%s" % (name, passes, "s" * (passes > 1)),
                 t <= 2 * passes * bw, "%.2fx of %s (%.1f GB/s read)"
                 % (t / (passes * bw), bw_name, x.nbytes / bw / 1e9))
        b.bytes = x.nbytes
        results.append(b)
        del x

    # ---- b: participation ratio ----
    S = args.size
    if "b" in args.sections:
        a = np.random.default_rng(2).standard_normal((S, S), dtype=np.float32)

        def pr_of(s):
            s2 = np.asarray(s, dtype=np.float64) ** 2
            return float(s2.sum() ** 2 / (s2 * s2).sum())

        def numpy_gram():
            g = a @ a.T
            return float(np.float64(np.linalg.norm(a)) ** 4 / np.float64(np.linalg.norm(g)) ** 2)

        b = Bench("b", "participation ratio, %d x %d float32" % (S, S), args.reps)
        b.add("library participation_ratio", lambda: sr.participation_ratio(a)[0], lib=True)
        b.add("numpy Gram formula (a @ a.T, norms)", numpy_gram)
        b.add("scipy.linalg.svdvals (float32)", lambda: pr_of(scipy.linalg.svdvals(a)),
              reps=args.ref_reps, warm=False)
        b.add("numpy.linalg.svd(compute_uv=False)",
              lambda: pr_of(np.linalg.svd(a, compute_uv=False)), reps=args.ref_reps, warm=False)
        b.run()
        lib_t = b.median("library participation_ratio")
        for ref, target in (("numpy.linalg.svd(compute_uv=False)", 5),
                            ("scipy.linalg.svdvals (float32)", None)):
            t = b.median(ref)
            rel = abs(b.value("library participation_ratio") / b.value(ref) - 1)
            if target:
                gate("b: PR >= %dx faster than %s" % (target, ref), t / lib_t >= target,
                     "%.1fx (%s s vs %s s), PR rel. diff %.1e" % (t / lib_t, fmt_s(lib_t),
                                                                  fmt_s(t), rel))
            else:
                gate("b: (info) PR vs %s" % ref, t / lib_t >= 1,
                     "%.1fx, PR rel. diff %.1e" % (t / lib_t, rel))
        results.append(b)
        del a

    # ---- c: low-frequency band ----
    if "c" in args.sections:
        g = np.random.default_rng(3)
        i = np.arange(S, dtype=np.float32)[:, None] / S
        j = np.arange(S, dtype=np.float32)[None, :] / S
        a = (np.cos(2 * np.pi * (3 * i + 2 * j)) + np.sin(2 * np.pi * 5 * j) +
             g.standard_normal((S, S), dtype=np.float32)).astype(np.float32)
        band = 0.125

        def ref_ratio():
            xx = a.astype(np.float64)
            xx -= xx.mean()
            p = np.abs(np.fft.fft2(xx)) ** 2
            k1, k2 = int(math.floor(band * S / 2)), int(math.floor(band * S / 2))
            r1 = sorted({q % S for q in range(-k1, k1 + 1)})
            r2 = sorted({q % S for q in range(-k2, k2 + 1)})
            cnt = len(r1) * len(r2)
            inband = p[np.ix_(r1, r2)].sum() - p[0, 0]
            return (inband / (p.sum() - p[0, 0])) / ((cnt - 1) / (S * S - 1))

        b = Bench("c", "low-frequency band 1/8, %d x %d float32" % (S, S), args.reps)
        b.add("library lowfreq_ratio", lambda: sr.lowfreq_ratio(a, band), lib=True)
        b.add("numpy.fft.fft2 (complex128)", lambda: np.fft.fft2(a).shape)
        b.add("scipy.fft.rfft2 (float32, workers=%d)" % T,
              lambda: scipy.fft.rfft2(a, workers=T).shape)
        b.run()
        want = ref_ratio()
        lib_t = b.median("library lowfreq_ratio")
        got = b.value("library lowfreq_ratio")
        for ref, strict in (("numpy.fft.fft2 (complex128)", True),
                            ("scipy.fft.rfft2 (float32, workers=%d)" % T, False)):
            t = b.median(ref)
            gate("c: lowfreq faster than %s%s" % (ref, "" if strict else " (info)"), t > lib_t,
                 "%.2fx (%s s vs %s s); ratio %.6g vs fft2 reference %.6g (rel. diff %.1e)"
                 % (t / lib_t, fmt_s(lib_t), fmt_s(t), got, want, abs(got / want - 1)))
        results.append(b)
        del a

    # ---- d: k-means ----
    if "d" in args.sections:
        g = np.random.default_rng(4)
        data = {"gaussian": g.standard_normal((S, S), dtype=np.float32)}
        centres = g.standard_normal((8, S), dtype=np.float32) * 0.5
        truth = np.arange(S) % 8
        data["8 clusters"] = (centres[truth] +
                              g.standard_normal((S, S), dtype=np.float32)).astype(np.float32)
        for name, a in data.items():
            def lib_fit(a=a):
                _, _, inertia, iters = sr.kmeans_fit(a, 8, seed=0)
                return (inertia, iters)

            def sk_fit(a=a):
                km = KMeans(n_clusters=8, n_init=1, random_state=0).fit(a)
                return (float(km.inertia_), int(km.n_iter_))

            b = Bench("d", "k-means K=8, %d x %d float32, %s" % (S, S, name), args.reps)
            b.add("library kmeans_fit", lib_fit, lib=True)
            b.add("sklearn KMeans(n_init=1)", sk_fit)
            b.run()
            lt, st_ = b.median("library kmeans_fit"), b.median("sklearn KMeans(n_init=1)")
            (li, lit), (si, sit) = b.value("library kmeans_fit"), b.value(
                "sklearn KMeans(n_init=1)")
            gate("d: k-means (%s) >= 3x faster than sklearn at equal or lower inertia" % name,
                 st_ >= 3 * lt and li <= si * 1.0001,
                 "%.2fx (%s s vs %s s); inertia %.7g vs %.7g (%+.3f %%); iterations %d vs %d"
                 % (st_ / lt, fmt_s(lt), fmt_s(st_), li, si, 100 * (li / si - 1), lit, sit))
            results.append(b)
        del data

    # ---- table ----
    print()
    print("### %d thread%s%s" % (T, "s" * (T > 1), " (QUICK: not a result)" * args.quick))
    print()
    print("| section | contender | median s | min–max s | library faster by |")
    print("|---|---|---:|---:|---:|")
    out = []
    for b in results:
        base = b.median(b.base) if b.base else None
        for it in b.items:
            ratio = "" if it["lib"] or base is None else "%.1f×" % (it["median"] / base)
            print("| %s | %s | %s | %s–%s | %s |" % (b.title, it["name"], fmt_s(it["median"]),
                                                    fmt_s(it["min"]), fmt_s(it["max"]), ratio))
            out.append({"section": b.section, "title": b.title, "contender": it["name"],
                        "library": it["lib"], "median_s": it["median"], "times_s": it["times"],
                        "value": it["value"]})
    print()
    print("(\"library faster by\" = the contender's median over the median of the section's "
          "main library row: moments + entropy in a, the only one elsewhere)")
    print()
    for gt in gates:
        print("- %s %s: %s" % ("MET    " if gt["met"] else "NOT MET", gt["target"], gt["detail"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": out, "gates": gates}, f, indent=1,
                      default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
