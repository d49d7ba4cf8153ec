#!/bin/sh
# Streaming benchmark: open and read every tensor of a ~2 GB F32 and a ~2 GB
# BF16 safetensors file with the library, against read(2), cat, a plain
# mmap+memcpy loop and numpy, interleaved, single-threaded. See bench/README.md.
#
# usage: sh bench/run-stream.sh [--reps N] [--cold-reps N] [--dir DIR] [--clean]
#
#   --reps N       warm repetitions per page-cache state (default 7, at least 5)
#   --cold-reps N  cold-cache repetitions per tool (default 3; 0 skips them)
#   --dir DIR      where the checkpoints, binaries and raw results go
#                  (default /tmp/sresid-bench; files are kept for reruns)
#   --clean        delete the generated checkpoints at the end
#
# Every measurement is a fresh process making 2 passes over the file; the
# tables use the second pass ("steady") and also show the first one.
set -eu

REPS=7
COLD_REPS=3
DIR=/tmp/sresid-bench
CLEAN=0
PASSES=2
PY=/usr/bin/python3
TOOLS="read cat mmap numpy lib libkeep"

usage() {
    sed -n '6,12s/^# \{0,1\}//p' "$0"
}

die() {
    echo "run-stream.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --reps) [ $# -ge 2 ] || die "--reps needs a value"; REPS=$2; shift 2 ;;
    --cold-reps) [ $# -ge 2 ] || die "--cold-reps needs a value"; COLD_REPS=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR=$2; shift 2 ;;
    --clean) CLEAN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
case $REPS in '' | *[!0-9]*) die "--reps must be a number" ;; esac
case $COLD_REPS in '' | *[!0-9]*) die "--cold-reps must be a number" ;; esac
[ "$REPS" -ge 5 ] || die "--reps must be at least 5"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# ---- build and data ----
make -s lib
BIN=$DIR/bin
# The benchmark runs against a snapshot of the shared library, so a
# concurrent `make clean` or rebuild in the tree cannot pull it away mid-run.
mkdir -p "$BIN/lib"
cp lib/libsparseresid.so.1 "$BIN/lib/libsparseresid.so.1"
ln -sf libsparseresid.so.1 "$BIN/lib/libsparseresid.so"
cc -std=c11 -O2 -Wall -Wextra -Iinclude -o "$BIN/stream" bench/stream.c \
    -L"$BIN/lib" -lsparseresid -Wl,-rpath,"$BIN/lib"
cc -std=c11 -O2 -Wall -Wextra -o "$BIN/readref" bench/readref.c
"$PY" bench/gen.py "$DIR"
F32=$DIR/stream-f32.safetensors
BF16=$DIR/stream-bf16.safetensors

RAW=$DIR/results.tsv
LOG=$DIR/run.log
printf 'file\tbytes\tstate\ttool\trep\tpass\tsecs\tread_s\thwm_mb\n' > "$RAW"
: > "$LOG"

note() {
    echo "$*" | tee -a "$LOG" >&2
}

file_huge_kb() {
    awk '/^FileHugePages:/ { print $2 }' /proc/meminfo
}

# measure TOOL FILE STATE REP PASSES: one fresh process (cat: one per pass);
# appends one row per pass to $RAW unless REP is "warmup".
measure() {
    tool=$1 file=$2 state=$3 rep=$4 passes=$5
    case $tool in
    read) out=$("$BIN/readref" read "$file" "$passes") ;;
    mmap) out=$("$BIN/readref" mmap "$file" "$passes") ;;
    numpy) out=$("$PY" bench/ref_numpy.py "$file" --passes "$passes") ;;
    lib) out=$("$BIN/stream" "$file" --reps "$passes") ;;
    libkeep) out=$("$BIN/stream" "$file" --reps "$passes" --keep-pages) ;;
    cat)
        out=
        p=1
        while [ "$p" -le "$passes" ]; do
            t0=$(date +%s.%N)
            cat "$file" > /dev/null
            t1=$(date +%s.%N)
            out="${out}rep=$p secs=$(echo "$t1 $t0" | awk '{ printf "%.4f", $1 - $2 }')
"
            p=$((p + 1))
        done
        ;;
    *) die "unknown tool $tool" ;;
    esac
    printf '%s\n' "$out" | grep '^rep=' >> "$LOG" || true
    [ "$rep" = warmup ] && return 0
    printf '%s\n' "$out" | awk -v f="$(basename "$file")" -v bytes="$(stat -c %s "$file")" \
        -v st="$state" -v tool="$tool" -v rep="$rep" '
        /^rep=/ {
            split("", v)
            for (i = 1; i <= NF; i++) {
                k = $i; sub(/=.*/, "", k)
                x = $i; sub(/^[^=]*=/, "", x)
                v[k] = x
            }
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f, bytes, st, tool, rep, v["rep"],
                v["secs"], ("read_s" in v) ? v["read_s"] : "-", ("hwm_mb" in v) ? v["hwm_mb"] : "-"
        }' >> "$RAW"
}

evict() {
    "$BIN/readref" evict "$1"
    if command -v fincore > /dev/null 2>&1; then
        left=$(fincore -n -b -o RES "$1" | tr -d ' ')
        [ "$left" = 0 ] || note "warning: $1 still has $left bytes cached after eviction"
    fi
}

# warm_state FILE STATE: a warm-up round (untimed), then REPS interleaved
# rounds, the tool order rotated by one each round.
warm_state() {
    file=$1 state=$2
    note "== $(basename "$file"), $state (FileHugePages $(file_huge_kb) kB)"
    for t in $TOOLS; do
        measure "$t" "$file" "$state" warmup 1
    done
    ntools=$(echo "$TOOLS" | wc -w)
    r=1
    while [ "$r" -le "$REPS" ]; do
        k=0
        while [ "$k" -lt "$ntools" ]; do
            idx=$(((k + r) % ntools + 1))
            t=$(echo "$TOOLS" | cut -d' ' -f"$idx")
            measure "$t" "$file" "$state" "$r" "$PASSES"
            k=$((k + 1))
        done
        note "   round $r/$REPS done"
        r=$((r + 1))
    done
}

note "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
note "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
for file in "$F32" "$BF16"; do
    # Cold: the file's pages are dropped from the page cache
    # (posix_fadvise DONTNEED) before each run. The library runs last, so
    # the page cache is then as the library's own mmap faults filled it.
    if [ "$COLD_REPS" -gt 0 ]; then
        note "== $(basename "$file"), cold cache"
        r=1
        while [ "$r" -le "$COLD_REPS" ]; do
            for t in read numpy lib; do
                evict "$file"
                measure "$t" "$file" cold "$r" 1
            done
            r=$((r + 1))
        done
    else
        evict "$file"
        measure lib "$file" cold warmup 1
    fi
    warm_state "$file" "warm, cache filled by mmap faults"
    # Same data, page cache filled by read(2) instead (as after a download
    # or a copy): on this kernel that gives large folios, mapped with PMDs.
    evict "$file"
    cat "$file" > /dev/null
    warm_state "$file" "warm, cache filled by read()"
done

"$PY" bench/summary.py "$RAW" "$PASSES" | tee "$DIR/summary.md"
note "raw results: $RAW; log: $LOG; tables: $DIR/summary.md"

if [ "$CLEAN" = 1 ]; then
    rm -f "$F32" "$BF16"
    note "removed $F32 and $BF16"
fi
