#!/bin/sh
# Nothing to measure: identical checkpoints (a zero residual) and a
# selection of no tensor stop with exit 1, one line naming the flag that
# accepts them, and no output; with the flag the run goes on with a warning
# and prints "-" for undefined figures, never nan, inf or "infx". Run from
# the repository root after `make all` (make check-tools).
SUITE=tools-degenerate
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"

BIN=${SR_BIN:-bin}
need "$BIN/sr-probe" "$BIN/sr-amp" "$BIN/sr-compress"
A=$TMP/a.safetensors
cp "$BASE" "$A"
mkdir "$TMP/out"

# no_nan FILE: no nan, inf or infx in FILE
no_nan() { ! grep -qiE '(^|[^a-z])(nan|inf|infx)([^a-z]|$)' "$1"; }

# identical checkpoints
run_with "$BIN/sr-probe" pz "$A" "$A"
check "sr-probe A A: exit 1" rc_is pz 1
check "sr-probe A A: says the residual is zero and names --allow-zero" sh -c \
    "grep -q 'the residual is zero' '$TMP/pz.err' && grep -q 'pass --allow-zero to go on anyway' '$TMP/pz.err'"
check "sr-probe A A: no table" sh -c "[ ! -s '$TMP/pz.out' ]"
run_with "$BIN/sr-probe" pzj --json "$TMP/out/r.json" "$A" "$A"
check "sr-probe --json A A: exit 1, no JSON written" sh -c \
    "[ \$(cat '$TMP/pzj.rc') -eq 1 ] && [ -z \"\$(ls -A '$TMP/out')\" ]"
run_with "$BIN/sr-probe" pzok --allow-zero "$A" "$A"
check "sr-probe --allow-zero A A: exit 0 with a warning" sh -c \
    "[ \$(cat '$TMP/pzok.rc') -eq 0 ] && grep -q 'warning: .*the residual is zero' '$TMP/pzok.err'"
check "sr-probe --allow-zero A A: undefined figures print as -, no nan" no_nan "$TMP/pzok.out"
# the check also works when the moments probe is off
run_with "$BIN/sr-probe" pzpr --probes pr "$A" "$A"
check "sr-probe --probes pr A A: exit 1 all the same" rc_is pzpr 1

run_with "$BIN/sr-compress" cz "$A" "$A" -o "$TMP/out/d.safetensors"
check "sr-compress A A: exit 1 naming --allow-zero, nothing written" sh -c \
    "[ \$(cat '$TMP/cz.rc') -eq 1 ] && grep -q 'pass --allow-zero' '$TMP/cz.err' && [ -z \"\$(ls -A '$TMP/out')\" ]"
run_with "$BIN/sr-compress" czok --allow-zero --energy 0.9 "$A" "$A" -o "$TMP/out/d.safetensors"
check "sr-compress --allow-zero --energy 0.9 A A: exit 0, the delta written" sh -c \
    "[ \$(cat '$TMP/czok.rc') -eq 0 ] && [ -s '$TMP/out/d.safetensors' ]"
check "sr-compress --allow-zero: 'nothing stored' and '-', never nan or infx" sh -c \
    "grep -q 'nothing stored, relative error -, energy kept -' '$TMP/czok.out' && ! grep -qiE 'nan|infx' '$TMP/czok.out'"
rm -f "$TMP/out/d.safetensors"

run_with "$BIN/sr-amp" az share --kinds all "$A" "$A"
check "sr-amp share A A: exit 1 naming --allow-zero" sh -c \
    "[ \$(cat '$TMP/az.rc') -eq 1 ] && grep -q 'pass --allow-zero' '$TMP/az.err'"
run_with "$BIN/sr-amp" afz fit --kinds all -o "$TMP/out/f.safetensors" "$A" "$A"
check "sr-amp fit A A: exit 1 naming --allow-zero, nothing written" sh -c \
    "[ \$(cat '$TMP/afz.rc') -eq 1 ] && grep -q 'pass --allow-zero' '$TMP/afz.err' && [ -z \"\$(ls -A '$TMP/out')\" ]"
run_with "$BIN/sr-amp" afzok fit --allow-zero --kinds all -o "$TMP/out/f.safetensors" "$A" "$A"
check "sr-amp fit --allow-zero A A: exit 0, captured -" sh -c \
    "[ \$(cat '$TMP/afzok.rc') -eq 0 ] && grep -q 'captured - of' '$TMP/afzok.out'"
rm -f "$TMP/out/f.safetensors"

# a selection of no tensor: the fixture pair has no attention tensor
run_with "$BIN/sr-probe" pe --skip-mismatched --kinds attention "$A" "$TRAINED"
check "sr-probe --kinds attention (none): exit 1 naming --allow-empty" sh -c \
    "[ \$(cat '$TMP/pe.rc') -eq 1 ] && grep -q 'no tensor is selected' '$TMP/pe.err' && grep -q 'pass --allow-empty' '$TMP/pe.err'"
run_with "$BIN/sr-probe" peok --allow-empty --skip-mismatched --kinds attention "$A" "$TRAINED"
check "sr-probe --allow-empty: exit 0, 'tensors: 0', a warning" sh -c \
    "[ \$(cat '$TMP/peok.rc') -eq 0 ] && grep -q 'tensors: 0' '$TMP/peok.out' && grep -q 'warning: no tensor' '$TMP/peok.err'"

# a real pair is not degenerate: no warning, exit 0
run_with "$BIN/sr-probe" real --skip-mismatched --probes moments "$A" "$TRAINED"
check "a real pair: exit 0, no 'nothing to' message" sh -c \
    "[ \$(cat '$TMP/real.rc') -eq 0 ] && ! grep -q 'go on anyway\\|nothing to' '$TMP/real.err'"

finish
