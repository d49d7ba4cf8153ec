#!/bin/sh
# Amplitude-basis benchmark: sresid_amp_project / sresid_amp_materialize
# against bli_sgemm of the same shapes, and the SVD set-up
# (sresid_amp_create) against numpy.linalg.svd and scipy.linalg.svd.
# Single-threaded. See bench/README.md, "## Amplitude basis".
#
# usage: sh bench/run-amp.sh [--reps N] [--n N] [--sizes LIST] [--dir DIR] [--quick]
#
#   --reps N       timed repetitions per contender (default 5, at least 5)
#   --n N          matrix size of the kernel timings (default 2048)
#   --sizes LIST   comma-separated SVD sizes (default 256,512,1024,2048)
#   --dir DIR      where the helper, logs and JSON results go
#                  (default /tmp/sresid-bench/amp)
#   --quick        small sizes, 2 repetitions: a smoke test, not a result
#
# BLIS_ARCH_TYPE: unless already set, exported here before anything loads
# BLIS (0 = skx with AVX-512 F/DQ/BW/VL, else 6 = zen3 with AVX2 + FMA), for
# the library and for numpy/scipy alike (Debian's libblas.so.3 is BLIS).
set -eu

REPS=5
N=2048
SIZES=256,512,1024,2048
DIR=/tmp/sresid-bench/amp
QUICK=
PY=/usr/bin/python3

usage() {
    sed -n '7,14s/^# \{0,1\}//p' "$0"
}

die() {
    echo "run-amp.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --reps) [ $# -ge 2 ] || die "--reps needs a value"; REPS=$2; shift 2 ;;
    --n) [ $# -ge 2 ] || die "--n needs a value"; N=$2; shift 2 ;;
    --sizes) [ $# -ge 2 ] || die "--sizes needs a value"; SIZES=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
case $REPS in '' | *[!0-9]*) die "--reps must be a number" ;; esac
case $N in '' | *[!0-9]*) die "--n must be a number" ;; esac
case $SIZES in '' | *[!0-9,]*) die "--sizes takes comma-separated numbers" ;; esac
if [ -n "$QUICK" ]; then
    REPS=2
    N=256
    SIZES=64,128
else
    [ "$REPS" -ge 5 ] || die "--reps must be at least 5"
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/blis-arch.sh

make -s lib
mkdir -p "$DIR"
# a private copy of the library, so that a concurrent rebuild cannot pull it away
cp lib/libsparseresid.so.1 "$DIR/libsparseresid.so.1"
HELPER=$DIR/amp-bench
BLIS_CFLAGS=$(pkg-config --cflags blis 2>/dev/null || true)
BLIS_LIBS=$(pkg-config --libs blis 2>/dev/null || echo -lblis)
# shellcheck disable=SC2086
cc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -Iinclude $BLIS_CFLAGS -o "$HELPER" bench/amp.c \
    "$DIR/libsparseresid.so.1" -Wl,-rpath,"$DIR" $BLIS_LIBS -lm

LOG=$DIR/run.log
: > "$LOG"
echo "BLIS_ARCH_TYPE=${BLIS_ARCH_TYPE:-(unset)}; $(nproc) cores; $(uname -r)" | tee -a "$LOG"
OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    SRESID_NUM_THREADS=1 "$PY" bench/amp.py --helper "$HELPER" --dir "$DIR" --reps "$REPS" \
    --n "$N" --sizes "$SIZES" --json "$DIR/amp.json" 2>&1 | tee -a "$LOG"
echo "log: $LOG; raw results: $DIR/amp.json"
