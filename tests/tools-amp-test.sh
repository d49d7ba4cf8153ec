#!/bin/sh
# Tests of sr-amp (share, fit) against the fixture pair, checked with numpy,
# and its failures on bad usage and broken files. Run from the repository
# root after `make all` (make check-tools).
SUITE=tools-amp
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"
set -f # the selection's glob goes to sr-amp, not to the shell

AMP=${SR_AMP:-bin/sr-amp}
# The pair's heads differ in shape (fc/weights [256,136] vs [256,7]) and its
# tensors are all of kind "other": select the dense blocks' matrices.
SEL="--kinds all --pattern dense* --layout out-last"

# run NAME ARGS...: run sr-amp, keep stdout, stderr and the exit status.
run() { run_with "$AMP" "$@"; }

# numpy NAME SCRIPT ARGS...: run a Python check, print its complaint on failure.
numpy_check() {
    "$PY" - "$@" 2>"$TMP/py.err" || { sed 's/^/     /' "$TMP/py.err"; return 1; }
}

need "$AMP"

# A safetensors reader and the closed form, in numpy (float64 SVD).
cat >"$TMP/ref.py" <<'EOF'
import json, struct, sys
import numpy as np

def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    out = {}
    for name, t in hdr.items():
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], raw[8 + n + a:8 + n + b])
    return out

def f32(entry):
    dtype, shape, data = entry
    assert dtype == "F32", dtype
    return np.frombuffer(data, dtype="<f4").reshape(shape)

def matrix(x):  # out-last view
    return x.reshape(1, -1) if x.ndim < 2 else x.reshape(-1, x.shape[-1])

def share(base, trained, names, core):
    """energy and D (the layout's entries) per tensor, float64."""
    rows = []
    for name in names:
        w0 = matrix(f32(base[name])).astype(np.float64)
        r = matrix(f32(trained[name])).astype(np.float64) - w0
        u, s, vt = np.linalg.svd(w0, full_matrices=False)
        dm = u.T @ r @ vt.T
        d = dm.ravel() if core else np.diag(dm)
        s0 = np.diag(s).ravel() if core else s
        rows.append((name, float((r * r).sum()), d, s0, u, s, vt))
    return rows
EOF

# ---- usage ----
run help --help
check "--help exits 0" rc_is help 0
check "--help prints usage on stdout" grep -q '^usage:' "$TMP/help.out"
check "--help mentions --kinds all" grep -q 'all' "$TMP/help.out"
run noargs
check "no arguments exits 2" rc_is noargs 2
run badcmd frobnicate "$BASE" "$TRAINED"
check "an unknown command exits 2" rc_is badcmd 2
run onecp share "$BASE"
check "share with one checkpoint exits 2" rc_is onecp 2
for bad_args in "--layout sideways" "--rank -1" "--rank x" "--kinds attention,bogus" \
    "--fractions 1.5" "--fractions 0.5,,0.1" "--fractions" "--matrix-layout up" \
    "--threads 0" "--frobnicate" "--fraction 0.5" "--rule magnitude" "-o $TMP/x.safetensors"; do
    # shellcheck disable=SC2086
    run sbad share $bad_args "$BASE" "$TRAINED"
    check "share $bad_args exits 2" rc_is sbad 2
done
for bad_args in "--fraction 2" "--fraction -0.1" "--rule bogus" "--seed -3" \
    "--json $TMP/x.json" "--fractions 0.5"; do
    # shellcheck disable=SC2086
    run fbad fit $bad_args -o "$TMP/x.safetensors" "$BASE" "$TRAINED"
    check "fit $bad_args exits 2" rc_is fbad 2
done
run noout fit "$BASE" "$TRAINED"
check "fit without -o exits 2" rc_is noout 2
check "fit without -o says so" grep -q -- '-o' "$TMP/noout.err"
check "no output file after usage errors" sh -c "[ ! -e '$TMP/x.safetensors' ] && [ ! -e '$TMP/x.json' ]"

# ---- share ----
run defkinds share --layout out-last "$BASE" "$TRAINED"
check "default kinds on the conv nets: exit 1" rc_is defkinds 1
check "... one line naming the file and --kinds" sh -c \
    "[ \$(wc -l <'$TMP/defkinds.err') -eq 1 ] && grep -qF -- '$BASE' '$TMP/defkinds.err' && grep -q -- '--kinds' '$TMP/defkinds.err'"
run allkinds share --kinds all --layout out-last "$BASE" "$TRAINED"
check "--kinds all takes in fc/weights, which does not pair: exit 1" rc_is allkinds 1
check "... one line naming fc/weights, the trained file and --pattern" sh -c \
    "[ \$(wc -l <'$TMP/allkinds.err') -eq 1 ] && grep -q 'fc/weights' '$TMP/allkinds.err' && grep -qF -- '$TRAINED' '$TMP/allkinds.err' && grep -q -- '--pattern' '$TMP/allkinds.err'"

for layout in diag core; do
    for per in "" --per-tensor; do
        tag="$layout${per:+ per tensor}"
        # shellcheck disable=SC2086
        run "sj$layout$per" share $SEL --score-layout $layout $per --json - "$BASE" "$TRAINED"
        J=$TMP/sj$layout$per.out
        check "share --json - ($tag) exits 0, nothing on stderr" sh -c \
            "[ \$(cat '$TMP/sj$layout$per.rc') -eq 0 ] && [ ! -s '$TMP/sj$layout$per.err' ]"
        check "share ($tag): totals, tensors and fractions match numpy to 1e-4" numpy_check \
            "$J" "$BASE" "$TRAINED" "$layout" "$per" "$TMP/ref.py" <<'EOF'
import json, math, sys
import numpy as np
j, base_p, trained_p, layout, per, ref = sys.argv[1:7]
exec(open(ref).read())
d = json.load(open(j))
base, trained = load(base_p), load(trained_p)
# the selection: dense* tensors of rank >= 2 whose matrix has min(m, n) >= 2
want = [n for n, (dt, sh, _) in base.items() if n.lower().startswith("dense") and len(sh) >= 2
        and min(matrix(np.zeros(sh, np.float32)).shape) >= 2]
names = [t["name"] for t in d["tensors"]]
assert sorted(names) == sorted(want), (names, want)
rows = share(base, trained, names, layout == "core")
energy = np.array([r[1] for r in rows])
dsq = np.array([float((r[2] ** 2).sum()) for r in rows])
assert abs(d["total"]["captured"] - dsq.sum() / energy.sum()) <= 1e-4, d["total"]["captured"]
for t, r, e, q in zip(d["tensors"], rows, energy, dsq):
    m = matrix(np.zeros(base[t["name"]][1], np.float32)).shape
    assert (t["rows"], t["cols"], t["rank"]) == (m[0], m[1], min(m)), t
    assert abs(t["captured"] - q / e) <= 1e-4, (t["name"], t["captured"], q / e)
    assert abs(t["energy"] - e) <= 1e-5 * e, (t["name"], t["energy"], e)
# fractions: the count floor(f n + 1/2) by |s0| or |D|, ties to the lower index
fr = d["options"]["fractions"]
assert fr == [1, 0.5, 0.25, 0.1, 0.05], fr
dall = np.concatenate([r[2] for r in rows])
sall = np.concatenate([r[3] for r in rows])
seg = np.cumsum([0] + [len(r[2]) for r in rows])
def pick(key, f):
    chosen = np.zeros(len(key), bool)
    spans = list(zip(seg[:-1], seg[1:])) if per else [(0, len(key))]
    for a, b in spans:
        k = int(math.floor(f * (b - a) + 0.5))
        order = sorted(range(a, b), key=lambda i: (-abs(key[i]), i))
        chosen[order[:k]] = True
    return chosen
for i, f in enumerate(fr):
    for rule, key in (("captured_magnitude", sall), ("captured_oracle", dall)):
        c = pick(key, f)
        tot = float((dall[c] ** 2).sum()) / energy.sum()
        got = d["total"]["fractions"][i][rule]
        assert abs(got - tot) <= 1e-4, (rule, f, got, tot)
        for t, (a, b), e in zip(d["tensors"], zip(seg[:-1], seg[1:]), energy):
            want_t = float((dall[a:b][c[a:b]] ** 2).sum()) / e
            assert abs(t["fractions"][i][rule] - want_t) <= 1e-4, (t["name"], rule, f)
    o, m = d["total"]["fractions"][i]["captured_oracle"], d["total"]["fractions"][i]["captured_magnitude"]
    assert o >= m - 1e-12, (f, o, m)
EOF
    done
done
check "share (core) captures at least as much as diag" numpy_check \
    "$TMP/sjdiag.out" "$TMP/sjcore.out" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert b["total"]["captured"] >= a["total"]["captured"] - 1e-9
assert a["options"]["score_layout"] == "diag" and b["options"]["score_layout"] == "core"
EOF

# shellcheck disable=SC2086
run stext share $SEL --json "$TMP/share.json" "$BASE" "$TRAINED"
check "share with --json FILE exits 0" rc_is stext 0
check "... prints the table with a total row" grep -q '^  total ' "$TMP/stext.out"
check "... and a 50 % column" grep -q '50 % mag / oracle' "$TMP/stext.out"
check "... the file holds the same figures as --json -" numpy_check \
    "$TMP/share.json" "$TMP/sjdiag.out" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["tensors"] == b["tensors"] and a["total"] == b["total"]
EOF
check "... and leaves no temporary file" no_temp_files "$TMP"
run sbadjson share $SEL --json "$TMP/no-such-dir/s.json" "$BASE" "$TRAINED"
check "share to an unwritable --json FILE exits 1 with one line" sh -c \
    "[ \$(cat '$TMP/sbadjson.rc') -eq 1 ] && [ \$(wc -l <'$TMP/sbadjson.err') -eq 1 ]"

# ---- fit ----
OUT=$TMP/fit.safetensors
# shellcheck disable=SC2086
run fitall fit $SEL -o "$OUT" "$BASE" "$TRAINED"
check "fit (all scores) exits 0" rc_is fitall 0
check "... prints one line naming the output" sh -c \
    "[ \$(wc -l <'$TMP/fitall.out') -eq 1 ] && grep -qF '$OUT' '$TMP/fitall.out'"
check "... its captured share is share's total" numpy_check \
    "$TMP/fitall.out" "$TMP/sjdiag.out" <<'EOF'
import json, re, sys
line = open(sys.argv[1]).read()
got = float(re.search(r"captured ([0-9.]+) %", line).group(1))
want = 100 * json.load(open(sys.argv[2]))["total"]["captured"]
assert abs(got - want) <= 0.006, (got, want)
assert "1691 of 1691 scores" in line, line
EOF
check "fit output: base's tensors, dtypes, shapes; selected ones are W0 + U diag(D) V^T; others byte-identical" \
    numpy_check "$OUT" "$BASE" "$TRAINED" "$TMP/sjdiag.out" "$TMP/ref.py" <<'EOF'
import json, sys
import numpy as np
out_p, base_p, trained_p, j, ref = sys.argv[1:6]
exec(open(ref).read())
out, base, trained = load(out_p), load(base_p), load(trained_p)
assert sorted(out) == sorted(base), "tensor names differ"
sel = [t["name"] for t in json.load(open(j))["tensors"]]
for name, (dt, sh, data) in base.items():
    assert out[name][0] == dt and out[name][1] == sh, name
    if name not in sel:
        assert out[name][2] == data, name + " changed"
for name, _, d, _, u, s, vt in share(base, trained, sel, False):
    w0 = matrix(f32(base[name])).astype(np.float64)
    want = w0 + (u * d) @ vt
    got = matrix(f32(out[name]))
    assert out[name][2] != base[name][2], name + " unchanged"
    err = np.abs(got - want).max()
    assert err <= 1e-4 * max(1.0, np.abs(want).max()), (name, err)
EOF
check "... and leaves no temporary file" no_temp_files "$TMP"

# oracle >= magnitude at 10 %, and the counts
for rule in magnitude oracle random; do
    # shellcheck disable=SC2086
    run "fit$rule" fit $SEL --fraction 0.1 --rule $rule --seed 5 -o "$TMP/fit-$rule.safetensors" \
        "$BASE" "$TRAINED"
    check "fit --fraction 0.1 --rule $rule exits 0" rc_is "fit$rule" 0
    check "... trains floor(0.1 * 1691 + 0.5) = 169 scores" grep -q '169 of 1691 scores' \
        "$TMP/fit$rule.out"
done
check "fit shares at 10 %: magnitude and oracle equal share's, oracle >= random" numpy_check \
    "$TMP/fitmagnitude.out" "$TMP/fitoracle.out" "$TMP/fitrandom.out" "$TMP/sjdiag.out" <<'EOF'
import json, re, sys
def cap(p):
    return float(re.search(r"captured ([0-9.-]+) %", open(p).read()).group(1))
m, o, r = (cap(p) for p in sys.argv[1:4])
f = json.load(open(sys.argv[4]))["total"]["fractions"][3]
assert f["fraction"] == 0.1
assert abs(m - 100 * f["captured_magnitude"]) <= 0.006, (m, f)
assert abs(o - 100 * f["captured_oracle"]) <= 0.006, (o, f)
assert o >= r - 0.006 and o >= m - 0.006, (m, o, r)
EOF

cp "$BASE" "$TMP/base-copy.safetensors"
# shellcheck disable=SC2086
run fitself fit $SEL -o "$TMP/base-copy.safetensors" "$TMP/base-copy.safetensors" "$TRAINED"
check "fit refuses to write over its base (exit 1, one line)" sh -c "[ \$(cat $TMP/fitself.rc) -eq 1 ] && [ \$(wc -l <$TMP/fitself.err) -eq 1 ] && grep -q input $TMP/fitself.err"
check "... and leaves the base as it was" cmp -s "$BASE" "$TMP/base-copy.safetensors"
# shellcheck disable=SC2086
run fitnodir fit $SEL -o "$TMP/no-such-dir/o.safetensors" "$BASE" "$TRAINED"
check "fit to an unwritable path exits 1 with one line" sh -c \
    "[ \$(cat '$TMP/fitnodir.rc') -eq 1 ] && [ \$(wc -l <'$TMP/fitnodir.err') -eq 1 ]"
run fitmis fit --kinds all --layout out-last -o "$TMP/mis.safetensors" "$BASE" "$TRAINED"
check "fit on a pair that does not match exits 1 naming fc/weights" sh -c \
    "[ \$(cat '$TMP/fitmis.rc') -eq 1 ] && [ \$(wc -l <'$TMP/fitmis.err') -eq 1 ] && grep -q 'fc/weights' '$TMP/fitmis.err'"
check "... and writes nothing" [ ! -e "$TMP/mis.safetensors" ]

# NaN in a base matrix: exit 1, one line naming the file and the tensor
"$PY" -c '
import json, struct, sys
vals = [1.0, float("nan"), 2.0, 0.5, -1.0, 0.25]
hdr = json.dumps({"layers.0.mlp.w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + struct.pack("<6f", *vals))
' "$TMP/nan.safetensors"
run nan share "$TMP/nan.safetensors" "$TMP/nan.safetensors"
check "a NaN in a base matrix: exit 1, one line naming file and tensor" sh -c \
    "[ \$(cat '$TMP/nan.rc') -eq 1 ] && [ \$(wc -l <'$TMP/nan.err') -eq 1 ] && grep -qF '$TMP/nan.safetensors' '$TMP/nan.err' && grep -q 'layers.0.mlp.w' '$TMP/nan.err'"

# ---- broken files: exit 1, one line naming the file, no output left ----
head -c 100000 "$BASE" >"$TMP/cut-data.safetensors"
printf '\010\000\000\000\000\000\000\000notjson!' >"$TMP/not-json.safetensors"
# swept with the unit tests' malformed files
mkdir "$TMP/corpus"
cp "$TMP/cut-data.safetensors" "$TMP/not-json.safetensors" "$TMP/corpus/"
mkdir "$TMP/outs"
try_corpus() {
    o="$TMP/outs/out.safetensors"
    for mode in share-base share-trained fit-trained; do
        case $mode in
        share-base) "$AMP" share --kinds all "$1" "$BASE" >/dev/null 2>"$TMP/c.err" ;;
        share-trained) "$AMP" share $SEL "$BASE" "$1" >/dev/null 2>"$TMP/c.err" ;;
        fit-trained) "$AMP" fit $SEL -o "$o" "$BASE" "$1" >/dev/null 2>"$TMP/c.err" ;;
        esac
        rc=$?
        if ! failed_cleanly "$rc" "$TMP/c.err" "$1" || [ -e "$o" ] ||
            [ -n "$(ls -A "$TMP/outs")" ]; then
            badfiles="$badfiles $mode:$(basename "$1")(rc=$rc)"
            rm -rf "$TMP/outs" && mkdir "$TMP/outs"
        fi
    done
}
sweep_corpus try_corpus "sr-amp fails cleanly and leaves no output"

finish
