#!/usr/bin/python3
"""The scale check (make check-scale): a generated Llama-shaped BF16 pair of
about 110 M parameters, sharded (bench/gen-llama.c --size 100m), through
sr-probe, sr-amp share --rank 64, sr-compress --keep 0.01 and sr-apply, with

  - bounded memory: each program's peak RSS under 400 MB while a checkpoint
    is 220 MB (tensors are streamed, never the whole model);
  - correct figures: one tensor of each kind recomputed with numpy from the
    files (kurtosis, entropy ratio inputs, sparsity); the delta keeps
    exactly floor(0.01 N + 0.5) entries, the largest |R|; base + delta read
    back equals base + R at the kept positions and base elsewhere.

Run from the repository root after make all bin/gen-llama.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
BIN = os.path.join(ROOT, "bin")
RSS_LIMIT_MB = 400
passed = failed = 0


def check(desc, ok):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + desc)
    else:
        failed += 1
        print("FAIL " + desc)


def run(*cmd):
    """Run; (returncode, stdout, stderr, peak RSS in MB, wall seconds)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (p.returncode, out.read().decode(), err.read().decode(), ru.ru_maxrss / 1024,
                time.monotonic() - t0)


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def read(ckpt, name):
    """Tensor name of a sharded checkpoint, as float64 (BF16 widened)."""
    idx = json.load(open(os.path.join(ckpt, "model.safetensors.index.json")))["weight_map"]
    path = os.path.join(ckpt, idx[name]) if os.path.isdir(ckpt) else ckpt
    h, start = header(path)
    a, b = h[name]["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + a)
        raw = f.read(b - a)
    assert h[name]["dtype"] == "BF16"
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).astype(np.float64).reshape(h[name]["shape"])


def read_file(path, name):
    h, start = header(path)
    a, b = h[name]["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + a)
        raw = f.read(b - a)
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).astype(np.float64).reshape(h[name]["shape"])


def main():
    tmp = tempfile.mkdtemp(prefix="sr-scale.")
    try:
        d = os.path.join(tmp, "pair")
        rc, out, err, _, wall = run(os.path.join(BIN, "gen-llama"), "--size", "100m", d)
        check("gen-llama --size 100m writes the pair (%.1f s)" % wall, rc == 0)
        base, trained = os.path.join(d, "base"), os.path.join(d, "trained")
        names = list(json.load(open(os.path.join(base, "model.safetensors.index.json")))
                     ["weight_map"])
        check("111 tensors: 12 layers of 9, embeddings, head, final norm", len(names) == 111)

        report = os.path.join(tmp, "report.json")
        rc, out, err, rss, wall = run(os.path.join(BIN, "sr-probe"), "--no-progress",
                                      "--probes", "moments,entropy,sparsity,pr,correlation",
                                      "--json", report, base, trained)
        check("sr-probe: exit 0 (%.1f s)" % wall, rc == 0)
        check("sr-probe: peak RSS %.0f MB < %d MB" % (rss, RSS_LIMIT_MB), rss < RSS_LIMIT_MB)
        doc = json.load(open(report))
        by = {t["name"]: t for t in doc["tensors"]}
        check("sr-probe: every tensor reported", len(by) == 111)
        for name in ("model.layers.3.self_attn.q_proj.weight", "model.layers.11.mlp.down_proj.weight",
                     "model.layers.0.input_layernorm.weight"):
            r = (read(trained, name) - read(base, name)).ravel()
            t = by[name]
            mean, var = r.mean(), r.var()
            kurt = ((r - mean) ** 4).mean() / var ** 2 - 3
            check("%s: mean, variance and kurtosis as numpy" % name,
                  abs(t["mean"] - mean) <= 1e-9 + 1e-6 * abs(mean) and
                  abs(t["variance"] - var) <= 1e-6 * var and abs(t["kurtosis"] - kurt) <= 1e-6 * abs(kurt))
        q = by["model.layers.3.self_attn.q_proj.weight"]
        k = by["model.layers.3.self_attn.k_proj.weight"]
        check("the planted rank-4 product: q_proj's PR is below k_proj's",
              q["pr"] is not None and k["pr"] is not None and q["pr"] < k["pr"])

        rc, out, err, rss, wall = run(os.path.join(BIN, "sr-amp"), "share", "--no-progress",
                                      "--rank", "64", base, trained)
        check("sr-amp share --rank 64: exit 0 (%.1f s)" % wall, rc == 0)
        check("sr-amp share: peak RSS %.0f MB < %d MB" % (rss, RSS_LIMIT_MB), rss < RSS_LIMIT_MB)

        delta, applied = os.path.join(tmp, "delta.safetensors"), os.path.join(tmp, "applied.safetensors")
        rc, out, err, rss, wall = run(os.path.join(BIN, "sr-compress"), "--no-progress",
                                      "--keep", "0.01", base, trained, "-o", delta)
        check("sr-compress --keep 0.01: exit 0 (%.1f s)" % wall, rc == 0)
        check("sr-compress: peak RSS %.0f MB < %d MB" % (rss, RSS_LIMIT_MB), rss < RSS_LIMIT_MB)
        total = sum(int(np.prod(v["shape"])) for sh in set(
            json.load(open(os.path.join(base, "model.safetensors.index.json")))["weight_map"].values())
            for k2, v in header(os.path.join(base, sh))[0].items() if k2 != "__metadata__")
        want = int(np.floor(0.01 * total + 0.5))
        check("sr-compress keeps floor(0.01 N + 0.5) = %d entries" % want,
              ("kept %d of %d entries" % (want, total)) in out)

        rc, out, err, rss, wall = run(os.path.join(BIN, "sr-apply"), "--no-progress", base, delta,
                                      "-o", applied)
        check("sr-apply: exit 0 (%.1f s)" % wall, rc == 0)
        check("sr-apply: peak RSS %.0f MB < %d MB" % (rss, RSS_LIMIT_MB), rss < RSS_LIMIT_MB)
        name = "model.layers.5.mlp.up_proj.weight"
        b, t, a = read(base, name), read(trained, name), read_file(applied, name)
        changed = a != b
        check("%s: the applied entries equal trained, the others base" % name,
              changed.any() and np.array_equal(a[changed], t[changed]) and
              np.array_equal(a[~changed], b[~changed]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("scale: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
