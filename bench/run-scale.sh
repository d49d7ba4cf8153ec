#!/bin/sh
# The scale benchmark (bench/README.md, "Scale"): builds the programs and the
# generator, then bench/scale.py on a generated Llama-shaped BF16 pair.
#   sh bench/run-scale.sh [100m|1b|7b] [scale.py options]
# The pair goes to /tmp/sresid-scale/SIZE and is deleted afterwards (7b:
# about 27 GB of disk while it runs).
set -eu
cd "$(dirname "$0")/.."
size=${1:-100m}
[ $# -gt 0 ] && shift
make -s all bin/gen-llama
mkdir -p bench/out
exec /usr/bin/python3 bench/scale.py --size "$size" --json "bench/out/scale-$size.json" "$@"
