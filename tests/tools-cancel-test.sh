#!/bin/sh
# Long commands can be followed and stopped: on a terminal they draw a
# progress line on stderr (not with --no-progress, not into a file); SIGINT
# or SIGTERM stops them within a second with exit 130 or 143, no output file
# and no temporary left; a signal at any moment of a short run leaves either
# the whole output (exit 0) or nothing. Run from the repository root after
# `make all` (make check-tools).
SUITE=tools-cancel
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"

BIN=${SR_BIN:-bin}
need "$BIN/sr-probe" "$BIN/sr-amp" "$BIN/sr-compress" "$BIN/sr-apply"
export SRESID_NUM_THREADS=1

# A pair of 24 float32 768 x 768 matrices (about 57 MB each): a report or a
# basis on one thread takes seconds.
"$PY" - "$TMP" <<'EOF'
import json, struct, sys
import numpy as np

def write(path, tensors):
    header, off, blobs = {}, 0, []
    for name, a in tensors:
        b = a.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

rng = np.random.default_rng(5)
base, trained = [], []
for i in range(24):
    a = rng.standard_normal((768, 768), dtype=np.float32)
    name = "model.layers.%d.mlp.up_proj.weight" % i
    base.append((name, a))
    trained.append((name, a + np.float32(0.01) * rng.standard_normal((768, 768), dtype=np.float32)))
write(sys.argv[1] + "/base.safetensors", base)
write(sys.argv[1] + "/trained.safetensors", trained)
EOF
B=$TMP/base.safetensors
T=$TMP/trained.safetensors
mkdir "$TMP/out"

# stopped NAME SIGNAL AFTER PROG ARGS...: run PROG, send SIGNAL after AFTER
# seconds; NAME.rc gets the exit status, NAME.lag the seconds from the
# signal to the exit, NAME.err its stderr. A process the signal killed
# (no handler) gets -SIGNAL, not 128 + SIGNAL. (Python starts it, so that SIGINT
# is not ignored as in a background job of a script.)
stopped() {
    what=$1
    sig=$2
    after=$3
    shift 3
    "$PY" - "$TMP/$what" "$sig" "$after" "$@" <<'EOF'
import signal, subprocess, sys, time
out, sig, after, cmd = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
with open(out + ".err", "wb") as err:
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    time.sleep(after)
    running = p.poll() is None
    t0 = time.monotonic()
    p.send_signal(getattr(signal, "SIG" + sig))
    rc = p.wait()
    lag = time.monotonic() - t0
with open(out + ".rc", "w") as f:
    f.write("%d\n" % rc)  # killed by the signal (no handler): negative
with open(out + ".lag", "w") as f:
    f.write("%.3f\n" % (lag if running else 99))
EOF
}

lag_under() { awk -v l="$(cat "$TMP/$1.lag")" -v m="$2" 'BEGIN { exit !(l < m) }'; }
nothing_in() { [ -z "$(ls -A "$1")" ]; }
one_line() { [ "$(wc -l <"$TMP/$1.err")" -eq 1 ] && grep -q "$2" "$TMP/$1.err"; }

stopped probe INT 0.5 "$BIN/sr-probe" --json "$TMP/out/r.json" "$B" "$T"
check "sr-probe: SIGINT exits 130" rc_is probe 130
check "sr-probe: stopped within a second of SIGINT" lag_under probe 1.0
check "sr-probe: says it was stopped, in one line" one_line probe "sr-probe: stopped by SIGINT; nothing was written"
check "sr-probe: no JSON, no temporary" nothing_in "$TMP/out"

stopped share TERM 0.5 "$BIN/sr-amp" share --kinds all --json "$TMP/out/s.json" "$B" "$T"
check "sr-amp share: SIGTERM exits 143" rc_is share 143
check "sr-amp share: stopped within a second of SIGTERM" lag_under share 1.0
check "sr-amp share: says it was stopped" one_line share "stopped by SIGTERM"
check "sr-amp share: no JSON, no temporary" nothing_in "$TMP/out"

stopped fit INT 0.5 "$BIN/sr-amp" fit --kinds all -o "$TMP/out/f.safetensors" "$B" "$T"
check "sr-amp fit: SIGINT exits 130" rc_is fit 130
check "sr-amp fit: stopped within a second" lag_under fit 1.0
check "sr-amp fit: no checkpoint, no temporary" nothing_in "$TMP/out"

# short runs: a signal at any moment leaves all or nothing
"$BIN/sr-compress" "$B" "$T" --keep 0.1 -o "$TMP/delta.safetensors" >/dev/null 2>&1
"$BIN/sr-apply" "$B" "$TMP/delta.safetensors" -o "$TMP/whole.safetensors" >/dev/null 2>&1
all_or_nothing=1
for at in 0.02 0.05 0.08 0.11 0.14 0.17 0.2 0.25; do
    stopped c TERM "$at" "$BIN/sr-compress" "$B" "$T" --keep 0.1 -o "$TMP/out/d.safetensors"
    case $(cat "$TMP/c.rc") in
    0) cmp -s "$TMP/out/d.safetensors" "$TMP/delta.safetensors" || all_or_nothing=0 ;;
    143) nothing_in "$TMP/out" || all_or_nothing=0 ;;
    *) all_or_nothing=0 ;;
    esac
    rm -f "$TMP/out/d.safetensors"
    stopped a INT "$at" "$BIN/sr-apply" "$B" "$TMP/delta.safetensors" -o "$TMP/out/o.safetensors"
    case $(cat "$TMP/a.rc") in
    0) cmp -s "$TMP/out/o.safetensors" "$TMP/whole.safetensors" || all_or_nothing=0 ;;
    130) nothing_in "$TMP/out" || all_or_nothing=0 ;;
    *) all_or_nothing=0 ;;
    esac
    rm -f "$TMP/out/o.safetensors"
done
check "sr-compress and sr-apply stopped at 8 moments: the whole output or nothing" \
    [ "$all_or_nothing" -eq 1 ]
check "no temporary anywhere" no_temp_files "$TMP"

# the progress line: on a terminal (script(1) gives one) and only there
tty_run() { script -qec "$1" /dev/null >"$TMP/$2.tty" 2>&1; }
tty_run "$BIN/sr-amp share --kinds all --fractions 1 '$B' '$T'" tty
check "sr-amp share on a terminal: the basis and share lines are drawn" \
    sh -c "grep -q 'basis \[#' '$TMP/tty.tty' && grep -q 'share \[#' '$TMP/tty.tty' && grep -q '24/24' '$TMP/tty.tty'"
check "sr-amp share on a terminal: the line is erased before the table" \
    grep -q "$(printf '\r\033\\[K')" "$TMP/tty.tty"
tty_run "$BIN/sr-amp share --no-progress --kinds all --fractions 1 '$B' '$T'" quiet
check "sr-amp share --no-progress on a terminal: no line" sh -c "! grep -q 'basis \[' '$TMP/quiet.tty'"
"$BIN/sr-amp" share --kinds all --fractions 1 "$B" "$T" >/dev/null 2>"$TMP/file.err"
check "sr-amp share with stderr in a file: no line" sh -c "! grep -q '\[#' '$TMP/file.err'"
tty_run "$BIN/sr-compress '$B' '$T' --keep 0.1 -o '$TMP/out/p.safetensors'" ctty
check "sr-compress on a terminal: delta and save lines" \
    sh -c "grep -q 'delta \[' '$TMP/ctty.tty' && grep -q 'save \[' '$TMP/ctty.tty'"
tty_run "$BIN/sr-probe --probes moments '$B' '$T'" ptty
check "sr-probe on a terminal: the report line" grep -q 'report \[#' "$TMP/ptty.tty"

finish
