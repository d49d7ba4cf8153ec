"""numpy views of library memory never outlive it: an Amp's scores,
initial_scores, offsets and basis(), and an Optim's state(copy=False), keep
the memory they see allocated, whatever is closed, deleted or collected
first (the base model included). Each case compares the view with a copy
taken while everything was open, then writes through the writeable ones.

`make check-python-asan` runs this file against a library built with
AddressSanitizer, which turns any read of freed memory into a failure.
"""

import gc
import itertools
import os
import sys
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

import sparseresid as sr  # noqa: E402  (needs the path and SPARSERESID_LIB above)

BASE = os.path.join(ROOT, "tests", "fixtures", "faceapi.face_landmark_68_model.f32.safetensors")


def make():
    """A base model, an amp on it, and its views with reference copies."""
    base = sr.Model.open(BASE, layout="out-last")
    amp = sr.Amp.create(base, layout="diag", kinds="all", rank=4)
    views = {"scores": amp.scores, "initial": amp.initial_scores, "offsets": amp.offsets}
    views["u"], views["v"] = amp.basis(len(amp) - 1)
    want = {k: v.copy() for k, v in views.items()}
    return base, amp, views, want


class TestAmpViews(unittest.TestCase):
    def check(self, views, want):
        for k in want:
            np.testing.assert_array_equal(views[k], want[k], err_msg=k)
        views["scores"][:3] = [1.5, -2.0, 0.25]  # writes land in live memory
        want["scores"][:3] = [1.5, -2.0, 0.25]
        np.testing.assert_array_equal(views["scores"], want["scores"])

    def test_every_order_of_close_delete_collect(self):
        steps = ("close amp", "close base", "del amp", "del base")
        for order in itertools.permutations(steps):
            base, amp, views, want = make()
            held = {"amp": amp, "base": base}
            del amp, base
            for step in order:
                verb, what = step.split()
                if verb == "close" and what in held:
                    held[what].close()
                elif verb == "del":
                    held.pop(what, None)
                gc.collect()
                self.check(views, want)
            views.clear()
            gc.collect()

    def test_with_blocks(self):
        with sr.Model.open(BASE, layout="out-last") as base:
            with sr.Amp.create(base, kinds="all", rank=2) as amp:
                s = amp.scores
                u, _ = amp.basis(0)
                ws, wu = s.copy(), u.copy()
        gc.collect()
        np.testing.assert_array_equal(s, ws)
        np.testing.assert_array_equal(u, wu)
        with self.assertRaises(ValueError):
            amp.scores  # noqa: B018  a closed amp gives no new views

    def test_views_outlive_a_deleted_view_sibling(self):
        base, amp, views, want = make()
        del views["u"]
        amp.close()
        base.close()
        del amp, base
        gc.collect()
        want.pop("u")
        self.check(views, want)


class TestOptimViews(unittest.TestCase):
    def test_state_views_after_close(self):
        for order in itertools.permutations(("close", "del")):
            opt = sr.Optim(5, "adamw", lr=0.1)
            x = np.arange(5, dtype=np.float32)
            opt.step(x, np.ones(5, dtype=np.float32))
            m, v = opt.state(copy=False)
            wm, wv = m.copy(), v.copy()
            self.assertTrue(np.all(wm != 0))
            for step in order:
                if step == "close" and opt is not None:
                    opt.close()
                else:
                    opt = None
                gc.collect()
                np.testing.assert_array_equal(m, wm)
                np.testing.assert_array_equal(v, wv)


if __name__ == "__main__":
    unittest.main()
