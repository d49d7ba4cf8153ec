"""The library picks BLIS's fast kernels by itself (docs/conventions.md,
"BLIS kernels"): at load, with BLIS_ARCH_TYPE unset, a CPU with AVX-512
F/DQ/BW/VL gets skx (0), one with AVX2 and FMA zen3 (6), read here from
/proc/cpuinfo; a value the user set is kept; SRESID_BLIS_ARCH_PICK=0 leaves
BLIS's own detection and the variable unset. Each case runs in a fresh
interpreter, since BLIS reads the variable once.

Run from the repository root: make check-python, i.e.
    /usr/bin/python3 -m unittest discover -s tests/python -t . -v
"""

import json
import os
import subprocess
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
LIB = os.environ.get("SPARSERESID_LIB", os.path.join(ROOT, "lib", "libsparseresid.so.1"))

PROBE = r"""
import ctypes, json, sys
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
lib = ctypes.CDLL(sys.argv[1])
lib.sresid_blas_arch.restype = ctypes.c_char_p
env = libc.getenv(b"BLIS_ARCH_TYPE")
print(json.dumps({"arch": lib.sresid_blas_arch().decode(),
                  "env": None if env is None else env.decode()}))
"""


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def run(**env):
    e = {k: v for k, v in os.environ.items() if k not in ("BLIS_ARCH_TYPE", "SRESID_BLIS_ARCH_PICK")}
    e.update(env)
    p = subprocess.run([sys.executable, "-c", PROBE, LIB], env=e, capture_output=True, text=True,
                       timeout=60, check=True)
    return json.loads(p.stdout)


class BlisKernels(unittest.TestCase):
    def test_picked_at_load_from_the_cpu(self):
        flags = cpu_flags()
        got = run()
        if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
            self.assertEqual(got, {"arch": "skx", "env": "0"})
        elif {"avx2", "fma"} <= flags:
            self.assertEqual(got, {"arch": "zen3", "env": "6"})
        else:  # no kernel set to prefer: the variable stays unset
            self.assertIsNone(got["env"])

    def test_a_users_choice_is_kept(self):
        self.assertEqual(run(BLIS_ARCH_TYPE="6"), {"arch": "zen3", "env": "6"})

    def test_opt_out_leaves_blis_alone(self):
        got = run(SRESID_BLIS_ARCH_PICK="0")
        self.assertIsNone(got["env"])  # BLIS detects on its own
        self.assertTrue(got["arch"] and got["arch"] != "unknown")


if __name__ == "__main__":
    unittest.main()
