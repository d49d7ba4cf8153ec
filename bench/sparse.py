"""Sparse residual benchmark (bench/README.md, "## Sparse residual deltas").

1. Throughput: sr-compress --keep 0.1 (streaming, and --in-memory) and
   sr-apply on a synthetic 1e8-parameter F32 pair, against a numpy reference
   doing the same job: read both checkpoints, R = T - B, global top-k by
   argpartition, sort the kept positions per tensor, write them; apply with
   np.add.at on a copy of the base, write it. Medians of --reps runs, wall
   time of whole processes (files in the page cache after a warm-up run).
2. Memory: peak RSS (getrusage of the child) of sr-compress with a global
   top 1 % over a 1e9-parameter (4 GB) F32 pair, against the bound the
   library states: kept entries (12 bytes each: U8-U32 index, F32 value, F32
   low part) plus fixed buffers.

usage: /usr/bin/python3 bench/sparse.py [--reps N] [--params N] [--big N] [--dir DIR]
                                         [--no-big]
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
COMPRESS = os.path.join(ROOT, "bin", "sr-compress")
APPLY = os.path.join(ROOT, "bin", "sr-apply")


def write_pair(dirname, params, ntensors, seed):
    """base.safetensors and trained.safetensors: ntensors F32 tensors,
    base ~ N(0, 0.02), trained = base + heavy-tailed residual (Student t, 3
    degrees of freedom, scale 1e-3). Written in chunks."""
    rng = np.random.default_rng(seed)
    per = params // ntensors
    names = ["layers.%d.mlp.weight" % i for i in range(ntensors)]
    for which in ("base", "trained"):
        header = {}
        off = 0
        for n in names:
            header[n] = {"dtype": "F32", "shape": [per], "data_offsets": [off, off + 4 * per]}
            off += 4 * per
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(dirname, which + ".safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
    chunk = 1 << 24
    fb = open(os.path.join(dirname, "base.safetensors"), "ab")
    ft = open(os.path.join(dirname, "trained.safetensors"), "ab")
    left = per * ntensors
    while left:
        m = min(chunk, left)
        b = (0.02 * rng.standard_normal(m, dtype=np.float32)).astype(np.float32)
        r = (1e-3 * rng.standard_t(3, m)).astype(np.float32)
        fb.write(b.tobytes())
        ft.write((b + r).tobytes())
        left -= m
    fb.close()
    ft.close()


def st_arrays(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = []
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out.append((k, np.fromfile(path, dtype="<f4", count=(e - b) // 4, offset=8 + n + b)))
    return out


def numpy_compress(base, trained, frac, out):
    b = st_arrays(base)
    t = st_arrays(trained)
    r = [tt - bb for (_, bb), (_, tt) in zip(b, t)]
    sizes = [x.size for x in r]
    allr = np.concatenate(r)
    k = int(np.floor(frac * allr.size + 0.5))
    idx = np.argpartition(np.abs(allr), allr.size - k)[allr.size - k:]
    idx.sort()
    val = allr[idx]
    np.savez(out, idx=idx, val=val, sizes=np.array(sizes))


def numpy_apply(base, delta, out):
    d = np.load(delta)
    b = np.concatenate([x for _, x in st_arrays(base)])
    np.add.at(b, d["idx"], d["val"])
    b.tofile(out)


def warm_up(cmd):
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("bench: %s failed: %s" % (" ".join(cmd), p.stderr.decode()))


def peak_rss(cmd):
    """Wall time and peak RSS (MiB) of one child process."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(cmd[0], cmd)
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        sys.exit("bench: %s failed" % " ".join(cmd))
    return dt, ru.ru_maxrss / 1024.0


def py(code, *args):
    return [sys.executable, "-c", code] + list(args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--params", type=int, default=100_000_000)
    ap.add_argument("--big", type=int, default=1_000_000_000)
    ap.add_argument("--dir", default="/tmp/sresid-bench/sparse")
    ap.add_argument("--no-big", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    env_note = "BLIS_ARCH_TYPE=%s SRESID_NUM_THREADS=%s" % (
        os.environ.get("BLIS_ARCH_TYPE"), os.environ.get("SRESID_NUM_THREADS"))
    print("bench/sparse.py:", env_note, flush=True)
    d = os.path.join(a.dir, "small")
    os.makedirs(d, exist_ok=True)
    base, trained = os.path.join(d, "base.safetensors"), os.path.join(d, "trained.safetensors")
    write_pair(d, a.params, 10, 1)
    delta, out = os.path.join(d, "delta.safetensors"), os.path.join(d, "out.safetensors")
    ndelta, nout = os.path.join(d, "delta.npz"), os.path.join(d, "out.bin")
    me = os.path.abspath(__file__)
    ref_c = py("import sys; sys.path.insert(0, %r); import sparse as s; "
               "s.numpy_compress(sys.argv[1], sys.argv[2], 0.1, sys.argv[3])"
               % os.path.dirname(me), base, trained, ndelta)
    ref_a = py("import sys; sys.path.insert(0, %r); import sparse as s; "
               "s.numpy_apply(sys.argv[1], sys.argv[2], sys.argv[3])"
               % os.path.dirname(me), base, ndelta, nout)
    jobs = {
        "sr-compress --keep 0.1": [COMPRESS, base, trained, "-o", delta, "--keep", "0.1"],
        "sr-compress --keep 0.1 --in-memory": [COMPRESS, base, trained, "-o", delta, "--keep",
                                               "0.1", "--in-memory"],
        "sr-compress --keep 0.1 --dtype bf16": [COMPRESS, base, trained, "-o",
                                                os.path.join(d, "bf16.safetensors"), "--keep",
                                                "0.1", "--dtype", "bf16"],
        "numpy compress (argpartition)": ref_c,
        "sr-apply": [APPLY, base, delta, "-o", out],
        "numpy apply (np.add.at)": ref_a,
    }
    results = {}
    for name, cmd in jobs.items():
        warm_up(cmd)  # page cache, and the delta for the apply
    for _ in range(a.reps):
        for name, cmd in jobs.items():
            dt, rss = peak_rss(cmd)
            results.setdefault(name, []).append((dt, rss))
    n = a.params
    print("\n%d parameters (%.0f MB per checkpoint), median of %d runs" % (n, 4 * n / 1e6, a.reps))
    print("%-40s %9s %12s %10s" % ("job", "seconds", "Mparams/s", "peak MiB"))
    for name, v in results.items():
        t = float(np.median([x[0] for x in v]))
        r = float(np.median([x[1] for x in v]))
        print("%-40s %9.3f %12.1f %10.0f" % (name, t, n / t / 1e6, r))
    print("delta: %d bytes (bf16: %d), numpy delta: %d bytes" % (
        os.path.getsize(delta), os.path.getsize(os.path.join(d, "bf16.safetensors")),
        os.path.getsize(ndelta)))
    shutil.rmtree(d)

    if a.no_big:
        return
    d = os.path.join(a.dir, "big")
    os.makedirs(d, exist_ok=True)
    st = os.statvfs(d)
    need = 2 * 4 * a.big + (1 << 30)
    if st.f_bavail * st.f_frsize < need:
        sys.exit("bench: %s has less than %.1f GB free" % (d, need / 1e9))
    t0 = time.perf_counter()
    write_pair(d, a.big, 16, 2)
    print("\nwrote a %d-parameter pair (%.1f GB each) in %.0f s" % (
        a.big, 4 * a.big / 1e9, time.perf_counter() - t0), flush=True)
    base, trained = os.path.join(d, "base.safetensors"), os.path.join(d, "trained.safetensors")
    delta = os.path.join(d, "delta.safetensors")
    for frac in ("0.001", "0.01"):
        dt, rss = peak_rss([COMPRESS, base, trained, "-o", delta, "--keep", frac])
        k = int(np.floor(float(frac) * a.big + 0.5))
        print("global top %s over %d params: %.1f s, peak RSS %.0f MiB; kept %d entries, "
              "delta %.0f MiB (at most 12 B an entry: %.0f MiB)"
              % (frac, a.big, dt, rss, k, os.path.getsize(delta) / 2**20, 12 * k / 2**20),
              flush=True)
    os.unlink(delta)
    shutil.rmtree(d)


if __name__ == "__main__":
    main()
