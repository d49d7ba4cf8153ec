#!/usr/bin/python3
"""The scale benchmark: a Llama-shaped BF16 pair (bench/gen-llama.c) through
the programs, with wall and CPU time, peak RSS and bytes read, and the peers
on one matrix of each shape, extrapolated to the whole model.

    /usr/bin/python3 bench/scale.py --size 100m|1b|7b [--dir /tmp/sresid-scale]
                                    [--keep] [--no-peers] [--json OUT]

Run through bench/run-scale.sh, which builds the programs and the generator.
The pair is generated into DIR and deleted afterwards unless --keep.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
BIN = os.path.join(ROOT, "bin")


def run(cmd, env=None):
    """Run cmd; its wall and CPU seconds, peak RSS (MB) and bytes read."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        read_bytes, ru, status = 0, None, 0
        io = "/proc/%d/io" % p.pid
        while True:  # wait4 gives this child's own rusage
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(io) as f:
                    for line in f:
                        if line.startswith("rchar:"):
                            read_bytes = int(line.split()[1])
            except OSError:
                pass
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            sys.exit("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                              err.read().decode()[-2000:]))
        return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                "maxrss_mb": ru.ru_maxrss / 1024, "read_gb": read_bytes / 1e9,
                "stdout": out.read().decode(errors="replace")}


def peers(base_dir, trained_dir):
    """numpy/scipy/sklearn on one residual matrix of each shape, timed, then
    multiplied by the number of matrices of that shape."""
    import numpy as np
    import scipy.stats
    from sklearn.cluster import KMeans
    import struct

    def header(path):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            return json.loads(f.read(n)), 8 + n

    def read_bf16(path, name):
        h, start = header(path)
        a, b = h[name]["data_offsets"]
        with open(path, "rb") as f:
            f.seek(start + a)
            bits = np.frombuffer(f.read(b - a), dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(h[name]["shape"]).astype(np.float64)

    idx = json.load(open(os.path.join(base_dir, "model.safetensors.index.json")))["weight_map"]
    shapes, first, heads = {}, {}, {}
    for name, shard in idx.items():
        if shard not in heads:
            heads[shard] = header(os.path.join(base_dir, shard))[0]
        shp = tuple(heads[shard][name]["shape"])
        if len(shp) == 2:
            shapes[shp] = shapes.get(shp, 0) + 1
            first.setdefault(shp, (name, shard))
    rows = []
    for shp, count in sorted(shapes.items()):
        name, shard = first[shp]
        b = read_bf16(os.path.join(base_dir, shard), name)
        t = read_bf16(os.path.join(trained_dir, shard), name)
        r = t - b
        t0 = time.monotonic()
        s = np.linalg.svd(r, compute_uv=False)
        pr = (s ** 2).sum() ** 2 / (s ** 4).sum()
        t_pr = time.monotonic() - t0
        t0 = time.monotonic()
        KMeans(n_clusters=8, n_init=1, random_state=0).fit(r.astype(np.float32))
        t_km = time.monotonic() - t0
        t0 = time.monotonic()
        scipy.stats.kurtosis(r, axis=None)
        np.histogram(r, bins=100)
        t_mom = time.monotonic() - t0
        rows.append({"shape": list(shp), "count": count, "pr": float(pr),
                     "svd_pr_s": t_pr, "kmeans8_s": t_km, "kurtosis_hist_s": t_mom})
    total = {k: sum(r[k] * r["count"] for r in rows) for k in ("svd_pr_s", "kmeans8_s",
                                                               "kurtosis_hist_s")}
    return {"per_shape": rows, "extrapolated_s": total}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="100m", choices=["100m", "1b", "7b"])
    ap.add_argument("--dir", default="/tmp/sresid-scale")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    d = os.path.join(a.dir, a.size)
    base, trained = os.path.join(d, "base"), os.path.join(d, "trained")
    res = {"size": a.size, "cores": os.cpu_count(), "runs": {}}
    os.makedirs(a.dir, exist_ok=True)
    try:
        if not os.path.exists(os.path.join(trained, "model.safetensors.index.json")):
            res["runs"]["generate"] = run([os.path.join(BIN, "gen-llama"), "--size", a.size, d])
        delta, out = os.path.join(d, "delta.safetensors"), os.path.join(d, "applied.safetensors")
        steps = [
            ("sr-probe report", [os.path.join(BIN, "sr-probe"), "--no-progress", "--verbose",
                                 "--json", os.path.join(d, "report.json"), base, trained]),
            ("sr-amp share --rank 64", [os.path.join(BIN, "sr-amp"), "share", "--no-progress",
                                        "--rank", "64", base, trained]),
            ("sr-compress --keep 0.01", [os.path.join(BIN, "sr-compress"), "--no-progress",
                                         "--keep", "0.01", base, trained, "-o", delta]),
            ("sr-apply", [os.path.join(BIN, "sr-apply"), "--no-progress", base, delta, "-o", out]),
        ]
        for label, cmd in steps:
            res["runs"][label] = run(cmd)
            r = res["runs"][label]
            print("%-26s wall %8.1f s  cpu %8.1f s  peak RSS %7.0f MB  read %6.2f GB"
                  % (label, r["wall_s"], r["cpu_s"], r["maxrss_mb"], r["read_gb"]), flush=True)
        if not a.no_peers:
            res["peers"] = peers(base, trained)
            for k, v in res["peers"]["extrapolated_s"].items():
                print("peer %-22s extrapolated %8.1f s" % (k, v))
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    if a.json:
        for r in res["runs"].values():
            r.pop("stdout", None)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
