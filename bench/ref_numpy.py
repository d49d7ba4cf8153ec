#!/usr/bin/python3
"""numpy reference for the streaming benchmark: what a Python user would do.

    /usr/bin/python3 bench/ref_numpy.py FILE [--passes N]

Per pass: parse the safetensors header (json + struct), np.memmap the file,
and for every F32/BF16 tensor convert it to float32 in chunks of at most
16 Mi elements (64 MiB of float32) into one preallocated buffer, then sum the
chunk (numpy's pairwise float32 sum). F32: np.copyto from the float32 view;
BF16: np.left_shift of the uint16 view into a uint32 buffer, viewed as
float32. This is the fast way to do it in numpy (no temporaries); a plain
`.astype(np.float32)` per tensor would be slower and allocate more.

Prints one line per pass in the format of bench/stream.c:
    rep=R secs=S gbps=G hwm_mb=M maxrss_mb=X checksum=C
hwm_mb is VmHWM of that pass (reset through /proc/self/clear_refs);
maxrss_mb is getrusage's ru_maxrss for the process. 1 GB = 1e9 bytes,
MB = 2^20 bytes.
"""

import json
import resource
import struct
import sys
import time

import numpy as np

CHUNK = 16 << 20  # elements


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def one_pass(path, fbuf, ubuf):
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
    header.pop("__metadata__", None)
    base = 8 + hlen
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    total = 0.0
    nbytes = 0
    for info in sorted(header.values(), key=lambda t: t["data_offsets"][0]):
        dtype = info["dtype"]
        if dtype not in ("F32", "BF16"):
            continue
        lo, hi = info["data_offsets"]
        raw = mm[base + lo:base + hi]
        nbytes += hi - lo
        if dtype == "F32":
            src = raw.view("<f4")
            for c in range(0, src.size, CHUNK):
                k = min(CHUNK, src.size - c)
                np.copyto(fbuf[:k], src[c:c + k])
                total += float(fbuf[:k].sum())
        else:
            src = raw.view("<u2")
            for c in range(0, src.size, CHUNK):
                k = min(CHUNK, src.size - c)
                np.left_shift(src[c:c + k], 16, out=ubuf[:k], dtype=np.uint32)
                total += float(fbuf[:k].sum())
    del mm
    return total, nbytes


def main(argv):
    passes = 1
    args = list(argv)
    if "--passes" in args:
        i = args.index("--passes")
        passes = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1 or passes < 1:
        sys.stderr.write(__doc__)
        return 2
    path = args[0]
    ubuf = np.zeros(CHUNK, dtype=np.uint32)  # touched before timing
    fbuf = ubuf.view(np.float32)
    for r in range(1, passes + 1):
        reset_hwm()
        t0 = time.perf_counter()
        total, nbytes = one_pass(path, fbuf, ubuf)
        t = time.perf_counter() - t0
        hwm = status_kb("VmHWM") / 1024.0
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(f"rep={r} secs={t:.4f} gbps={nbytes / t / 1e9:.3f} hwm_mb={hwm:.1f} "
              f"maxrss_mb={maxrss:.1f} checksum={total:.9g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
