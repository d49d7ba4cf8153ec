#!/usr/bin/python3
"""Amplitude-basis benchmark (see bench/README.md, "## Amplitude basis").

Run by bench/run-amp.sh, single-threaded:

1. kernels: bench/amp.c times sresid_amp_project and sresid_amp_materialize
   on an N x N matrix, and bli_sgemm calls of the same shapes in the same
   process, interleaved; reported as efficiency = sgemm time / library time
   (1.0 = as fast as the bare product).
2. SVD set-up: random float32 matrices of several sizes are written to one
   safetensors file; bench/amp.c times sresid_amp_create on each (sgesdd in
   float32 plus reading, checking and sign canonicalisation), and this
   script times numpy.linalg.svd and scipy.linalg.svd (float32, gesdd, no
   check_finite) on the very same arrays.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import scipy.linalg


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, arr in tensors:
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def run(helper, *args):
    out = subprocess.run([helper, *map(str, args)], check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def time_ref(fn, a, reps):
    fn(a)  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(a)
        ts.append(time.perf_counter() - t0)
    return ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helper", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--sizes", default="256,512,1024,2048")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results = {"kernels": {}, "svd": {}}

    # 1. kernels
    rows = {r["op"]: r for r in run(args.helper, "kernels", args.n, args.reps)}
    results["kernels"] = rows
    print(f"\nkernels, {args.n} x {args.n}, 1 thread, median of {args.reps}")
    print(f"{'operation':28s} {'library s':>10s} {'sgemm s':>10s} {'efficiency':>10s}")
    for lay in ("diag", "core"):
        for op in ("project", "materialize_full", "materialize_10"):
            lib = rows[f"{lay}_{op}"]["median_s"]
            ref = rows[f"{lay}_{op}_ref"]["median_s"]
            print(f"{lay + ' ' + op:28s} {lib:10.4f} {ref:10.4f} {ref / lib:10.2f}")
        share = rows[f"{lay}_materialize_10"]["median_s"] / rows[f"{lay}_materialize_full"]["median_s"]
        print(f"{lay + ' 10% / full materialize':28s} {share:10.3f}")

    # 2. SVD set-up
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(7)
    mats = [(f"layers.{i}.attn.w", rng.standard_normal((n, n), dtype=np.float32))
            for i, n in enumerate(sizes)]
    path = os.path.join(args.dir, "amp-svd.safetensors")
    write_safetensors(path, mats)
    lib = {r["n"]: r for r in run(args.helper, "svd", path, args.reps)}
    print(f"\nSVD set-up, square float32, 1 thread, median of {args.reps}")
    print(f"{'n':>6s} {'amp_create s':>13s} {'numpy s':>10s} {'scipy f32 s':>12s}"
          f" {'numpy/lib':>10s} {'scipy/lib':>10s}")
    for (name, a), n in zip(mats, sizes):
        t_np = time_ref(lambda x: np.linalg.svd(x, full_matrices=False), a, args.reps)
        t_sp = time_ref(lambda x: scipy.linalg.svd(x, full_matrices=False, check_finite=False,
                                                   lapack_driver="gesdd"), a, args.reps)
        tl = lib[n]["median_s"]
        mn, ms = median(t_np), median(t_sp)
        results["svd"][n] = {"library": lib[n], "numpy": t_np, "scipy": t_sp}
        print(f"{n:6d} {tl:13.4f} {mn:10.4f} {ms:12.4f} {mn / tl:10.2f} {ms / tl:10.2f}")
    os.remove(path)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
