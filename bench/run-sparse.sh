#!/bin/sh
# Sparse residual benchmark: sr-compress / sr-apply against numpy
# (argpartition, np.add.at) on a 1e8-parameter pair, and the peak RSS of a
# global top-k over a 4 GB checkpoint. See bench/README.md, "## Sparse
# residual deltas".
#
# usage: sh bench/run-sparse.sh [--reps N] [--no-big] [--dir DIR]
#
# One thread (SRESID_NUM_THREADS=1, OMP/BLIS threads 1) and the best BLIS
# kernels of the CPU unless BLIS_ARCH_TYPE is set (bench/blis-arch.sh), for
# the library and numpy alike.
set -eu
cd "$(dirname "$0")/.."
make -s all
. bench/blis-arch.sh
export SRESID_NUM_THREADS=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec /usr/bin/python3 bench/sparse.py "$@"
