#!/usr/bin/python3
"""Tables of medians from bench/run-stream.sh's raw results.

    /usr/bin/python3 bench/summary.py RESULTS.tsv [PASSES]

"steady" is pass PASSES (default 2) of each process, "1st" its first pass.
Ratios are paired: for each repetition, the reference's seconds divided by
the tool's seconds in the same round, then the median over the rounds; so
0.25x means a quarter of the reference's speed. GB/s = file bytes / seconds,
1 GB = 1e9 bytes. RSS is VmHWM of the pass in MiB.
"""

import csv
import statistics
import sys

NAMES = {
    "read": "read(2), 1 MiB buffer (C)",
    "cat": "cat FILE > /dev/null",
    "mmap": "mmap + memcpy 64 MiB blocks (C)",
    "numpy": "numpy memmap -> float32 + sum",
    "lib": "**library**: read_f32 + sum",
    "lib_read": "**library**: read_f32 only",
    "libkeep": "library --keep-pages: read_f32 + sum",
}
ORDER = ["read", "cat", "mmap", "numpy", "lib", "lib_read", "libkeep"]


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def main(argv):
    if not argv or len(argv) > 2:
        sys.stderr.write(__doc__)
        return 2
    passes = argv[1] if len(argv) > 1 else "2"
    # rows[(file, state)][tool][pass][rep] = (secs, hwm)
    rows = {}
    sizes = {}
    with open(argv[0], newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (r["file"], r["state"])
            sizes[r["file"]] = int(r["bytes"])
            hwm = None if r["hwm_mb"] == "-" else float(r["hwm_mb"])
            per = rows.setdefault(key, {})
            per.setdefault(r["tool"], {}).setdefault(r["pass"], {})[r["rep"]] = (
                float(r["secs"]), hwm)
            if r["tool"] == "lib":
                per.setdefault("lib_read", {}).setdefault(r["pass"], {})[r["rep"]] = (
                    float(r["read_s"]), hwm)

    for (fname, state), per in rows.items():
        cold = state == "cold"
        p = "1" if cold else passes
        size = sizes[fname]
        nreps = len(per.get("lib", per.get("read", {})).get(p, {}))
        print(f"\n### {fname}: {state} ({size / 1e9:.2f} GB, "
              f"median of {nreps}{'' if cold else ' interleaved'} runs)\n")
        head = "| tool | s | GB/s | vs read() | vs numpy |"
        if not cold:
            head += " 1st pass s |"
        head += " peak RSS MiB |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for tool in ORDER:
            if tool not in per or p not in per[tool]:
                continue
            runs = per[tool][p]
            secs = med([s for s, _ in runs.values()])
            hwm = med([h for _, h in runs.values() if h is not None])

            def ratio(ref):
                if ref not in per or p not in per[ref]:
                    return None
                refruns = per[ref][p]
                xs = [refruns[k][0] / runs[k][0] for k in runs if k in refruns]
                return med(xs)

            line = (f"| {NAMES[tool]} | {secs:.3f} | {size / secs / 1e9:.2f} | "
                    f"{fmt(ratio('read'), '.2f')}x | {fmt(ratio('numpy'), '.2f')}x |")
            if not cold:
                first = med([s for s, _ in per[tool].get("1", {}).values()])
                line += f" {fmt(first, '.3f')} |"
            line += f" {fmt(hwm, '.0f')} |"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
