"""Progress and stopping from Python: every long call takes progress=, a
callable(done, total, name) called after each unit of work in order; an
exception it raises stops the call (nothing written, no object made) and is
raised again; Ctrl-C (SIGINT) during a call stops it within a fraction of a
second with KeyboardInterrupt.

Run from the repository root: make check-python, i.e.
    /usr/bin/python3 -m unittest discover -s tests/python -t . -v
"""

import math
import os
import signal
import sys
import tempfile
import threading
import time
import unittest
import warnings

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402  (needs the path and SPARSERESID_LIB above)


class Stop(Exception):
    pass


class Log:
    """A progress callable recording its calls; raises Stop at unit stop_at."""

    def __init__(self, stop_at=0):
        self.calls, self.stop_at = [], stop_at

    def __call__(self, done, total, name):
        self.calls.append((done, total, name))
        if self.stop_at and len(self.calls) >= self.stop_at:
            raise Stop("enough")

    def check_full(self, case, total):
        done = [c[0] for c in self.calls]
        case.assertEqual(done[-1], total)
        case.assertEqual(done, sorted(set(done)))  # strictly increasing
        case.assertTrue(all(c[1] == total for c in self.calls))
        case.assertTrue(all(isinstance(c[2], str) and c[2] for c in self.calls))


def pair(n, size, seed=1):
    rng = np.random.default_rng(seed)
    base, trained = sr.Model.create(), sr.Model.create()
    for i in range(n):
        a = rng.standard_normal((size, size)).astype(np.float32)
        name = "layers.%d.mlp.up.weight" % i
        base.add(name, a)
        trained.add(name, a + np.float32(0.01) * rng.standard_normal((size, size),
                                                                     dtype=np.float32))
    return base, trained


class ProgressAndStop(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.base, self.trained = pair(5, 16)
        self.res = sr.Residual(self.base, self.trained)

    def tearDown(self):
        self.res.close()
        self.base.close()
        self.trained.close()
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_report(self):
        log = Log()
        rep = sr.Report(self.res, progress=log)
        # 5 tensors, 5 pooled histograms, 4 adjacent layer pairs + first vs last
        log.check_full(self, 5 + 5 + 4 + 1)
        self.assertEqual({c[2] for c in log.calls[:5]},
                         {"layers.%d.mlp.up.weight" % i for i in range(5)})
        rep.close()
        stop = Log(stop_at=3)
        with self.assertRaises(Stop):
            sr.Report(self.res, progress=stop)
        self.assertEqual(len(stop.calls), 3)  # not called again after the stop
        with self.assertRaises(TypeError):
            sr.Report(self.res, progress=42)

    def test_amp_and_files(self):
        log = Log()
        amp = sr.Amp.create(self.base, kinds="all", progress=log)
        log.check_full(self, 5)
        with self.assertRaises(Stop):
            sr.Amp.create(self.base, kinds="all", progress=Log(stop_at=1))
        before = np.array(amp.scores)
        with self.assertRaises(Stop):
            amp.fit(self.trained, progress=Log(stop_at=4))
        np.testing.assert_array_equal(np.array(amp.scores), before)  # unchanged
        amp.fit(self.trained, progress=log)
        self.assertFalse(np.array_equal(np.array(amp.scores), before))
        share = Log()
        amp.share(self.trained, progress=share)
        share.check_full(self, 5)
        with self.assertRaises(Stop):
            amp.export(progress=Log(stop_at=2))
        state = self.path("state.safetensors")
        with self.assertRaises(Stop):
            amp.save(state, progress=Log(stop_at=9))
        self.assertEqual(os.listdir(self.tmp.name), [])  # nothing written, no temporary
        saved = Log()
        amp.save(state, progress=saved)
        saved.check_full(self, 3 * 5 + 2)
        with self.assertRaises(Stop):
            sr.Amp.load(self.base, state, progress=Log(stop_at=1))
        back, _ = sr.Amp.load(self.base, state)
        np.testing.assert_array_equal(np.array(back.scores), np.array(amp.scores))
        back.close()
        amp.close()

    def test_sparse_and_save(self):
        log = Log()
        sp = sr.Sparse.create(self.res, param=0.1, progress=log)
        log.check_full(self, 4 * 5)  # two counting passes, ties, collecting
        with self.assertRaises(Stop):
            sr.Sparse.create(self.res, param=0.1, progress=Log(stop_at=2))
        out = self.path("out.safetensors")
        with self.assertRaises(Stop):
            sp.apply(self.base, out, progress=Log(stop_at=7))
        with self.assertRaises(Stop):
            sp.save(self.path("delta.safetensors"), progress=Log(stop_at=1))
        with self.assertRaises(Stop):
            self.base.save(self.path("copy.safetensors"), progress=Log(stop_at=5))
        self.assertEqual(os.listdir(self.tmp.name), [])
        applied = Log()
        sp.apply(self.base, out, progress=applied)
        applied.check_full(self, 5 + 5)
        sp.close()

    def test_a_stop_is_not_an_error_of_the_library(self):
        # the status reaches Python as the callable's own exception, and the
        # monitor is removed after the call: the next call runs to the end
        with self.assertRaises(Stop):
            sr.Report(self.res, progress=Log(stop_at=1))
        sr.Report(self.res).close()
        self.assertEqual(sr.ERR_CANCELLED, 18)
        self.assertEqual(sr.strerror(sr.ERR_CANCELLED), "cancelled")


class NonFinitePolicy(unittest.TestCase):
    """docs/conventions.md, "Non-finite values: one policy": counted,
    excluded and said (a RuntimeWarning), or refused on request."""

    def test_counted_excluded_and_said(self):
        base, trained = pair(2, 8, seed=3)
        x = np.array(trained.read(1)).reshape(8, 8)
        x[2, 3], x[5, 1], x[7, 7] = np.nan, np.inf, -np.inf
        bad = sr.Model.create()
        bad.add("layers.0.mlp.up.weight", trained.read(0).reshape(8, 8))
        bad.add("layers.1.mlp.up.weight", x)
        res = sr.Residual(base, bad)
        with self.assertWarnsRegex(RuntimeWarning, "3 NaN or Inf values counted and excluded"):
            rep = sr.Report(res)
        t = rep.tensor(1)
        self.assertEqual(t["nonfinite"], 3)
        self.assertEqual(t["count"], 64 - 3)
        self.assertTrue(math.isnan(t["pr"]))  # no matrix figures for that tensor
        rep.close()
        with self.assertRaises(sr.SparseResidError) as cm:
            sr.Report(res, fail_nonfinite=True)
        self.assertEqual(cm.exception.status, sr.ERR_NONFINITE)
        self.assertIn("layers.1.mlp.up.weight", str(cm.exception))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a clean pair warns nothing
            sr.Report(sr.Residual(base, trained)).close()
        for m in (base, trained, bad):
            m.close()


class CtrlC(unittest.TestCase):
    def test_sigint_stops_a_long_report(self):
        # (unittest runs tests on the main thread, where Python handles signals)
        self.assertIs(threading.current_thread(), threading.main_thread())
        base, trained = pair(160, 384, seed=2)
        res = sr.Residual(base, trained)
        # the same report, whole, for the time it takes
        t0 = time.monotonic()
        sr.Report(res, threads=1, probes=sr.PROBE_ALL).close()
        whole = time.monotonic() - t0
        self.assertGreater(whole, 1.2)  # long enough to be cut at 0.3 s
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        timer.start()
        with self.assertRaises(KeyboardInterrupt):
            sr.Report(res, threads=1, probes=sr.PROBE_ALL)
        stopped = time.monotonic() - t0
        timer.join()
        # the signal at 0.3 s is seen at the next unit or heartbeat (100 ms)
        self.assertLess(stopped, 0.3 + 0.5)
        self.assertLess(stopped, whole / 2)
        res.close()
        base.close()
        trained.close()


if __name__ == "__main__":
    unittest.main()
