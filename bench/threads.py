"""Threads benchmark (bench/README.md, "## Threads"): sr-compress with
--threads 1 against --threads 2 on the 1e8-parameter F32 pair of
bench/sparse.py (10 tensors), global top 1 %, streamed and --in-memory.
Runs alternate (1, 2, 1, 2, ...) after a warm-up run that puts the files in
the page cache; medians of --reps wall times of whole processes. The deltas
written with 1 and 2 threads must be byte-identical.

usage: /usr/bin/python3 bench/threads.py [--reps N] [--params N] [--dir DIR] [--keep-files]
"""

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from sparse import COMPRESS, write_pair  # noqa: E402


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("bench: %s failed: %s" % (" ".join(cmd), p.stderr.decode()))
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--params", type=int, default=100_000_000)
    ap.add_argument("--dir", default="/tmp/sresid-bench/threads")
    ap.add_argument("--keep-files", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    base = os.path.join(a.dir, "base.safetensors")
    trained = os.path.join(a.dir, "trained.safetensors")
    if not (os.path.exists(base) and os.path.exists(trained)):
        write_pair(a.dir, a.params, 10, 1)
    print("bench/threads.py: %d parameters, %d CPUs, BLIS_ARCH_TYPE=%s" % (
        a.params, os.cpu_count(), os.environ.get("BLIS_ARCH_TYPE")), flush=True)
    print("%-28s %10s %10s %8s" % ("sr-compress --keep 0.01", "1 thread", "2 threads",
                                    "speed-up"))
    for extra in ([], ["--in-memory"]):
        outs = {t: os.path.join(a.dir, "delta-%d.safetensors" % t) for t in (1, 2)}

        def cmd(t):
            return [COMPRESS, base, trained, "--keep", "0.01", "--threads", str(t),
                    "-o", outs[t]] + extra

        run(cmd(1))  # warm-up: page cache
        times = {1: [], 2: []}
        for _ in range(a.reps):
            for t in (1, 2):
                times[t].append(run(cmd(t)))
        if not filecmp.cmp(outs[1], outs[2], shallow=False):
            sys.exit("bench: the deltas of 1 and 2 threads differ")
        m1, m2 = statistics.median(times[1]), statistics.median(times[2])
        print("%-28s %9.2fs %9.2fs %7.2fx" % ("streamed" if not extra else "--in-memory",
                                              m1, m2, m1 / m2), flush=True)
    if not a.keep_files:
        shutil.rmtree(a.dir)


if __name__ == "__main__":
    main()
