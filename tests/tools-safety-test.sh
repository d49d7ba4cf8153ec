#!/bin/sh
# Users' files are never at risk: no program writes an output over one of
# its inputs or over another output of the same run (same file through
# symlinks, "./" and hard links), nor replaces anything but a regular file;
# the inputs stay byte for byte as they were. Run from the repository root
# after `make all` (make check-tools).
SUITE=tools-safety
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"

BIN=${SR_BIN:-bin}
A=$TMP/a.safetensors
B=$TMP/b.safetensors
cp "$BASE" "$A"
cp "$TRAINED" "$B"
"$BIN/sr-compress" "$A" "$B" --skip-mismatched --keep 0.05 -o "$TMP/d.safetensors" >/dev/null 2>&1
cp "$TMP/d.safetensors" "$TMP/d.orig"
ln -s "$A" "$TMP/alias-a.safetensors"
ln "$B" "$TMP/hard-b.safetensors"
mkfifo "$TMP/fifo"
mkdir "$TMP/dir"

intact() {
    cmp -s "$A" "$BASE" && cmp -s "$B" "$TRAINED" && cmp -s "$TMP/d.safetensors" "$TMP/d.orig" &&
        [ -p "$TMP/fifo" ] && [ -d "$TMP/dir" ]
}

# refused NAME WANT_RC PROG ARGS...: the run exits WANT_RC with one line on
# stderr, and every input is intact.
refused() {
    nm=$1
    want=$2
    shift 2
    prog=$1
    shift
    (cd "$TMP" && "$OLDPWD/$BIN/$prog" "$@" >"$TMP/$nm.out" 2>"$TMP/$nm.err")
    echo $? >"$TMP/$nm.rc"
    check "$prog $(echo "$*" | sed "s|$TMP/||g"): refused (exit $want, one line)" sh -c \
        "[ \$(cat '$TMP/$nm.rc') -eq $want ] && [ \$(grep -vc '^(try' '$TMP/$nm.err') -eq 1 ] &&
         [ ! -s '$TMP/$nm.out' ]"
    check "... inputs intact" intact
}

SK=--skip-mismatched
refused p1 1 sr-probe $SK --json "$B" "$A" "$B"
refused p2 1 sr-probe $SK --json ./b.safetensors "$A" "$B"
refused p3 1 sr-probe $SK --json "$TMP/alias-a.safetensors" "$A" "$B"
refused p4 1 sr-probe $SK --json "$TMP/fifo" "$A" "$B"
refused c1 1 sr-compress "$A" "$B" $SK -o "$B"
refused c2 1 sr-compress "$A" "$B" $SK -o "$TMP/x.safetensors" --json "$A"
refused c3 1 sr-compress "$A" "$B" $SK -o "$TMP/x.safetensors" --json ./x.safetensors
refused c4 1 sr-compress "$A" "$B" $SK -o "$TMP/hard-b.safetensors"
refused c5 1 sr-compress "$A" "$B" $SK -o "$TMP/dir"
refused c6 2 sr-compress "$A" "$B" $SK -o ''
refused a1 1 sr-apply "$A" "$TMP/d.safetensors" -o "$A"
refused a2 1 sr-apply "$A" "$TMP/d.safetensors" -o "$TMP/d.safetensors"
refused a3 1 sr-apply "$A" "$TMP/d.safetensors" -o "$TMP/alias-a.safetensors"
refused s1 1 sr-amp share --rank 4 "$A" "$B" --json "$B"
refused s2 1 sr-amp fit --rank 4 "$A" "$B" -o ./a.safetensors
check "nothing else appeared beside the inputs (no temporary files)" sh -c \
    "[ -z \"\$(ls '$TMP' | grep -e '\\.tmp-' -e '^x\\.safetensors')\" ]"

# a sharded checkpoint: an output over one of its shards is refused too
mkdir "$TMP/shards"
cp "$A" "$TMP/shards/model-00001-of-00001.safetensors"
refused sh1 1 sr-probe $SK --json "$TMP/shards/model-00001-of-00001.safetensors" \
    "$TMP/shards" "$B"
check "... the shard is intact" cmp -s "$TMP/shards/model-00001-of-00001.safetensors" "$BASE"

# other formats are named, with the way to convert them
printf 'GGUF\003\000\000\000\020\000\000\000\000\000\000\000' >"$TMP/m.gguf"
run_with "$BIN/sr-info" gguf "$TMP/m.gguf"
check "sr-info on a GGUF file: exit 1, one line naming GGUF and docs/formats.md" sh -c \
    "[ \$(cat '$TMP/gguf.rc') -eq 1 ] && [ \$(wc -l <'$TMP/gguf.err') -eq 1 ] &&
     grep -q 'looks like a GGUF file' '$TMP/gguf.err' && grep -q 'Other formats' '$TMP/gguf.err'"

# killed at random moments, a run leaves neither a partial output nor a
# temporary file (anonymous temporaries where the filesystem allows)
"$PY" -c '
import json, struct, sys
import numpy as np
n = 6_000_000
rng = np.random.default_rng(3)
b = rng.standard_normal(n).astype("<f4")
for path, x in ((sys.argv[1], b), (sys.argv[2], b + np.float32(0.01))):
    h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + x.tobytes())
' "$TMP/big-a.safetensors" "$TMP/big-b.safetensors"
"$BIN/sr-compress" "$TMP/big-a.safetensors" "$TMP/big-b.safetensors" --keep 0.5 \
    -o "$TMP/big.delta" >/dev/null 2>&1
"$BIN/sr-apply" "$TMP/big-a.safetensors" "$TMP/big.delta" -o "$TMP/ref.safetensors"
mkdir "$TMP/kill"
# one run takes about 0.2 s here: the kills spread over all of it
for d in 0.03 0.06 0.09 0.11 0.13 0.15 0.17 0.19 0.21 0.25; do
    "$BIN/sr-apply" "$TMP/big-a.safetensors" "$TMP/big.delta" -o "$TMP/kill/out.safetensors" &
    pid=$!
    sleep "$d"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
done
check "10 runs killed at moments across the run: no temporary file left" sh -c \
    "[ -z \"\$(ls '$TMP/kill' | grep -v '^out\.safetensors\$')\" ]"
check "... and an output, if any, is whole" sh -c \
    "[ ! -e '$TMP/kill/out.safetensors' ] || cmp -s '$TMP/kill/out.safetensors' '$TMP/ref.safetensors'"

finish
