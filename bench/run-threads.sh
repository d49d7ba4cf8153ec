#!/bin/sh
# Threads benchmark: sr-compress --threads 1 against --threads 2 on a
# 1e8-parameter pair, streamed and --in-memory, with byte-identical deltas.
# See bench/README.md, "## Threads".
#
# usage: sh bench/run-threads.sh [--reps N] [--params N] [--dir DIR] [--keep-files]
set -eu
cd "$(dirname "$0")/.."
make -s all
. bench/blis-arch.sh
exec /usr/bin/python3 bench/threads.py "$@"
