#!/bin/sh
# Probe benchmark: the library's probes (moments + entropy, participation
# ratio, low-frequency band, k-means) against scipy / numpy / scikit-learn,
# single-threaded for the targets, then with 2 threads for information.
# See bench/README.md, "## Probes".
#
# usage: sh bench/run-probes.sh [--reps N] [--ref-reps N] [--threads "1 2"]
#                               [--dir DIR] [--quick]
#
#   --reps N       timed repetitions per contender (default 5, at least 5)
#   --ref-reps N   repetitions of the slow SVD references (default: --reps)
#   --threads L    thread counts to run, one process each (default "1 2")
#   --dir DIR      where the helper, logs and JSON results go
#                  (default /tmp/sresid-bench/probes)
#   --quick        small sizes, 2 repetitions: a smoke test, not a result
#
# BLIS_ARCH_TYPE: unless already set, exported here before anything loads
# BLIS (0 = skx with AVX-512 F/DQ/BW/VL, else 6 = zen3 with AVX2 + FMA), for
# the library and for numpy/scipy alike (Debian's libblas.so.3 is BLIS).
set -eu

REPS=5
REF_REPS=
THREADS="1 2"
DIR=/tmp/sresid-bench/probes
QUICK=
PY=/usr/bin/python3

usage() {
    sed -n '7,15s/^# \{0,1\}//p' "$0"
}

die() {
    echo "run-probes.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --reps) [ $# -ge 2 ] || die "--reps needs a value"; REPS=$2; shift 2 ;;
    --ref-reps) [ $# -ge 2 ] || die "--ref-reps needs a value"; REF_REPS=$2; shift 2 ;;
    --threads) [ $# -ge 2 ] || die "--threads needs a value"; THREADS=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR=$2; shift 2 ;;
    --quick) QUICK=--quick; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
case $REPS in '' | *[!0-9]*) die "--reps must be a number" ;; esac
[ -n "$QUICK" ] || [ "$REPS" -ge 5 ] || die "--reps must be at least 5"
[ -z "$REF_REPS" ] || case $REF_REPS in *[!0-9]*) die "--ref-reps must be a number" ;; esac
for t in $THREADS; do
    case $t in '' | *[!0-9]*) die "--threads takes numbers" ;; esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/blis-arch.sh

make -s lib
mkdir -p "$DIR"
HELPER=$DIR/libprobesbench.so
cc -std=c11 -O3 -march=native -Wall -Wextra -shared -fPIC -o "$HELPER" bench/probes.c

LOG=$DIR/run.log
: > "$LOG"
echo "BLIS_ARCH_TYPE=${BLIS_ARCH_TYPE:-(unset)}; $(nproc) cores; $(uname -r)" | tee -a "$LOG"
for t in $THREADS; do
    set -- --threads "$t" --reps "$REPS" --helper "$HELPER" --json "$DIR/probes-$t.json"
    [ -z "$REF_REPS" ] || set -- "$@" --ref-reps "$REF_REPS"
    [ -z "$QUICK" ] || set -- "$@" "$QUICK"
    OMP_NUM_THREADS=$t BLIS_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t \
        SRESID_NUM_THREADS=$t "$PY" bench/probes.py "$@" 2>&1 | tee -a "$LOG"
done
echo "log: $LOG; raw results: $DIR/probes-*.json"
