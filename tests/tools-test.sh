#!/bin/sh
# Tests of the example programs against the fixture pair and a few broken
# files. Run from the repository root after `make all` (make check-tools).
SUITE=tools
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"

SR=${SR_INFO:-bin/sr-info}

# run NAME ARGS...: run sr-info, keep stdout, stderr and the exit status.
run() { run_with "$SR" "$@"; }

# jpy FILE EXPR: EXPR, a Python expression over the JSON document d, is true.
jpy() {
    "$PY" -c '
import json, math, sys
d = json.load(open(sys.argv[1]))
def pair(name):
    return [p for p in d["pairs"] if p["name"] == name][0]
def unpaired(name):
    return [u for u in d["unpaired"] if u["name"] == name][0]
def tensor(name):
    return [t for t in d["tensors"] if t["name"] == name][0]
def close(a, b, tol):
    return a is not None and abs(a - b) <= tol
sys.exit(0 if eval(sys.argv[2]) else 1)
' "$1" "$2" 2>"$TMP/jpy.err" || { sed 's/^/     /' "$TMP/jpy.err"; return 1; }
}

need "$SR"

# ---- usage ----
run help --help
check "--help exits 0" rc_is help 0
check "--help prints usage on stdout" grep -q '^usage:' "$TMP/help.out"
run noargs
check "no arguments exits 2" rc_is noargs 2
check "no arguments: one line and (try sr-info --help) on stderr" sh -c \
    "[ \$(wc -l <'$TMP/noargs.err') -eq 2 ] && grep -qx '(try sr-info --help)' '$TMP/noargs.err'"
run badopt --frobnicate "$BASE"
check "unknown option exits 2" rc_is badopt 2
run badlayout --layout sideways "$BASE"
check "bad --layout exits 2" rc_is badlayout 2
run three "$BASE" "$TRAINED" "$BASE"
check "three checkpoints exit 2" rc_is three 2

# ---- one checkpoint ----
run one --json - "$BASE"
check "one checkpoint --json exits 0" rc_is one 0
check "one checkpoint lists 49 tensors" jpy "$TMP/one.out" 'len(d["tensors"]) == 49'
check "tensor names are unique" jpy "$TMP/one.out" \
    'len(set(t["name"] for t in d["tensors"])) == 49'
check "fc/weights is F32 [256,136]" jpy "$TMP/one.out" \
    'tensor("fc/weights")["dtype"] == "F32" and tensor("fc/weights")["shape"] == [256, 136]'
check "numel is the product of the shape" jpy "$TMP/one.out" \
    'all(t["numel"] == math.prod(t["shape"]) for t in d["tensors"])'
check "every F32 tensor has a positive norm" jpy "$TMP/one.out" \
    'all(isinstance(t["norm"], float) and t["norm"] > 0 for t in d["tensors"])'
check "path and metadata are reported" jpy "$TMP/one.out" \
    'd["path"].endswith("face_landmark_68_model.f32.safetensors") and d["metadata"]["license"] == "MIT"'
run onetext "$BASE"
check "one checkpoint as text exits 0" rc_is onetext 0
check "text lists 49 tensors" [ "$(grep -cE '^(dense[0-3]|fc)/' "$TMP/onetext.out")" -eq 49 ]
run outlast --json - --layout out-last "$BASE"
check "--layout out-last: [1,1,256,256] is 256x256" jpy "$TMP/outlast.out" \
    'tensor("dense3/conv3/pointwise_filter")["matrix"] == [256, 256]'
run verbose --verbose "$BASE"
check "--verbose says which BLIS kernels" grep -q 'BLIS' "$TMP/verbose.err"

# ---- base and fine-tune ----
run pair --json - "$BASE" "$TRAINED"
P=$TMP/pair.out
check "pair --json exits 0" rc_is pair 0
check "47 paired tensors" jpy "$P" 'len(d["pairs"]) == 47'
check "global |B-A|/|A| = 0.525552" jpy "$P" 'close(d["total"]["relative"], 0.525552, 1e-6)'
check "dense3/conv3/pointwise_filter |R| = 42.526396" jpy "$P" \
    'close(pair("dense3/conv3/pointwise_filter")["norm_residual"], 42.526396, 1e-5)'
check "dense3/conv3/pointwise_filter shape [1,1,256,256]" jpy "$P" \
    'pair("dense3/conv3/pointwise_filter")["shape"] == [1, 1, 256, 256]'
check "two unpaired tensors: fc/weights and fc/bias" jpy "$P" \
    'sorted(u["name"] for u in d["unpaired"]) == ["fc/bias", "fc/weights"]'
check "fc/weights reason names both shapes" jpy "$P" \
    'unpaired("fc/weights")["reason"] == "shape [256,136] vs [256,7]"'
check "fc/bias reason names both shapes" jpy "$P" \
    'unpaired("fc/bias")["reason"] == "shape [136] vs [7]"'
check "fc/weights shapes in JSON" jpy "$P" \
    'unpaired("fc/weights")["shape_base"] == [256, 136] and unpaired("fc/weights")["shape_trained"] == [256, 7]'
check "relative = |R|/|base| for every pair" jpy "$P" \
    'all(close(p["relative"], p["norm_residual"] / p["norm_base"], 1e-9 * p["relative"] + 1e-12) for p in d["pairs"])'
check "total |R| squared = sum of pair |R| squared" jpy "$P" \
    'close(d["total"]["norm_residual"] ** 2, sum(p["norm_residual"] ** 2 for p in d["pairs"]), 1e-9 * d["total"]["norm_residual"] ** 2)'
check "the pairs' paths are reported" jpy "$P" \
    'd["base"].endswith("landmark_68_model.f32.safetensors") and d["trained"].endswith("expression_model.f32.safetensors")'
run pairtext "$BASE" "$TRAINED"
check "pair as text exits 0" rc_is pairtext 0
check "text names the fc/weights mismatch" \
    grep -q 'fc/weights.*shape \[256,136\] vs \[256,7\]' "$TMP/pairtext.out"
run strict --strict "$BASE" "$TRAINED"
check "--strict on a mismatched pair exits 1" rc_is strict 1
check "--strict names fc/weights on stderr" grep -q 'fc/weights' "$TMP/strict.err"
check "--strict prints one line on stderr" [ "$(wc -l <"$TMP/strict.err")" -eq 1 ]
run self --strict --json - "$BASE" "$BASE"
check "a checkpoint against itself: 49 pairs, |R| = 0" jpy "$TMP/self.out" \
    'len(d["pairs"]) == 49 and d["total"]["norm_residual"] == 0 and d["unpaired"] == []'

# ---- broken inputs: exit 1, one line on stderr naming the file, no crash ----
head -c 100 "$BASE" >"$TMP/cut-header.safetensors"
head -c 100000 "$BASE" >"$TMP/cut-data.safetensors"
printf '\377\377\377\377\377\377\377\177{}' >"$TMP/huge-header.safetensors"
printf '\010\000\000\000\000\000\000\000notjson!' >"$TMP/not-json.safetensors"
mkdir "$TMP/no-checkpoints" && echo hello >"$TMP/no-checkpoints/README.txt"

# broken NAME FILE [ARGS...]: FILE is the path the message must name.
broken() {
    name=$1
    file=$2
    shift 2
    run "$name" "$@"
    rc=$(cat "$TMP/$name.rc")
    if [ "$rc" -ge 128 ]; then
        bad "$name: crashed (exit $rc)"
        return
    fi
    check "$name: exits 1" [ "$rc" -eq 1 ]
    check "$name: one line on stderr" [ "$(wc -l <"$TMP/$name.err")" -eq 1 ]
    check "$name: stderr names the file" grep -qF "$file" "$TMP/$name.err"
}

broken cut-header "$TMP/cut-header.safetensors" "$TMP/cut-header.safetensors"
broken cut-data "$TMP/cut-data.safetensors" "$TMP/cut-data.safetensors"
broken huge-header "$TMP/huge-header.safetensors" "$TMP/huge-header.safetensors"
broken not-json "$TMP/not-json.safetensors" --json - "$TMP/not-json.safetensors"
broken missing "$TMP/missing.safetensors" "$TMP/missing.safetensors"
broken empty-dir "$TMP/no-checkpoints" "$TMP/no-checkpoints"
broken bad-trained "$TMP/cut-data.safetensors" "$BASE" "$TMP/cut-data.safetensors"

# ---- sr-probe ----
PROBE=${SR_PROBE:-bin/sr-probe}
# runp NAME ARGS...: as run, for sr-probe.
runp() { run_with "$PROBE" "$@"; }

if [ ! -x "$PROBE" ]; then
    bad "$PROBE is missing: run make all first"
else
    runp phelp --help
    check "sr-probe --help exits 0" rc_is phelp 0
    check "sr-probe --help prints usage on stdout" grep -q '^usage:' "$TMP/phelp.out"
    check "sr-probe --help mentions out-last" grep -q 'out-last' "$TMP/phelp.out"
    runp pnoargs
    check "sr-probe without arguments exits 2" rc_is pnoargs 2
    for bad_args in "--frobnicate" "--bins 0" "--bins x" "--k 2,,4" "--k 0" "--band 0" \
        "--band 1.5" "--null-draws -1" "--seed -3" "--threads 0" "--kinds attention,bogus" "--only attention,bogus" \
        "--probes pr,bogus" "--layout sideways" "--kmeans-restarts 0" "--kmeans-restarts 1001"; do
        # shellcheck disable=SC2086
        runp pbad $bad_args "$BASE"
        check "sr-probe $bad_args exits 2" rc_is pbad 2
    done
    runp pbadjson "$BASE" --json
    check "sr-probe --json without a value exits 2" rc_is pbadjson 2
    runp pthree "$BASE" "$TRAINED" "$BASE"
    check "sr-probe with three checkpoints exits 2" rc_is pthree 2

    # out-last: the fixture pair's TF.js [kh,kw,in,out] kernels as in x out
    runp pjson --json - --skip-mismatched --layout out-last "$BASE" "$TRAINED"
    J=$TMP/pjson.out
    check "sr-probe --json - exits 0" rc_is pjson 0
    check "sr-probe --json - prints nothing on stderr" [ ! -s "$TMP/pjson.err" ]
    check "report: 47 tensors, source residual" jpy "$J" \
        'len(d["tensors"]) == 47 and d["source"] == "residual"'
    check "report: groups keyed by kind and all" jpy "$J" \
        'sorted(d["groups"]) == ["all", "attention", "embedding", "mlp", "norm", "other"]'
    check "report: all 47 tensors are other" jpy "$J" \
        'd["groups"]["other"]["tensors"] == 47 and d["groups"]["all"]["tensors"] == 47'
    check "report: fc/bias and fc/weights skipped" jpy "$J" \
        'sorted(s["name"] for s in d["skipped"]) == ["fc/bias", "fc/weights"]'
    check "report: no layers, no correlation" jpy "$J" \
        'd["layers"] == [] and d["layer_correlation"] == []'
    check "report: options say out-last and count and exclude non-finite values (the default)" jpy "$J" \
        'd["options"]["layout"] == "out-last" and d["options"]["nonfinite"] == "exclude"'
    check "report: pointwise filter is 256x256, PR in [1, 256]" jpy "$J" \
        'tensor("dense3/conv3/pointwise_filter")["rows"] == 256 and 1 <= tensor("dense3/conv3/pointwise_filter")["pr"] <= 256'
    check "report: vectors have null matrix figures" jpy "$J" \
        'tensor("dense0/conv0/bias")["pr"] is None and tensor("dense0/conv0/bias")["kmeans"] is None'
    check "report: k-means runs by size by default (kmeans_restarts 0)" jpy "$J" \
        'd["options"]["kmeans_restarts"] == 0'

    # every matrix here has at most 65536 values: the size rule gives 50 runs
    runp prestarts --json - --skip-mismatched --layout out-last --probes kmeans \
        --kmeans-restarts 50 "$BASE" "$TRAINED"
    runp prestart1 --json - --skip-mismatched --layout out-last --probes kmeans \
        --kmeans-restarts 1 "$BASE" "$TRAINED"
    check "--kmeans-restarts 50 exits 0 and is recorded" jpy "$TMP/prestarts.out" \
        'd["options"]["kmeans_restarts"] == 50'
    # kmcmp OP A B: the k-means figures of report A against report B (same
    # tensors): "eq" all equal, "lower" A below B somewhere
    kmcmp() {
        "$PY" -c '
import json, sys
def km(p):
    return [x["explained"] for t in json.load(open(p))["tensors"] if t["kmeans"] for x in t["kmeans"]]
a, b = km(sys.argv[2]), km(sys.argv[3])
ok = a == b if sys.argv[1] == "eq" else len(a) == len(b) and any(x < y - 1e-9 for x, y in zip(a, b))
sys.exit(0 if ok and a else 1)' "$@"
    }
    check "--kmeans-restarts 50 gives the default's figures" kmcmp eq "$TMP/prestarts.out" "$J"
    check "--kmeans-restarts 1 lands lower somewhere" kmcmp lower "$TMP/prestart1.out" "$J"

    runp ptext --skip-mismatched --layout out-last --json "$TMP/saved.json" "$BASE" "$TRAINED"
    check "sr-probe text + --json FILE exits 0" rc_is ptext 0
    check "text has the component table" grep -q '^  all  *47 ' "$TMP/ptext.out"
    check "text says the names carry no layers" \
        grep -q 'no layer indices in tensor names' "$TMP/ptext.out"
    check "text has the k-means table" grep -q 'K-means explained variance' "$TMP/ptext.out"
    check "no progress bar when stderr is not a terminal" [ ! -s "$TMP/ptext.err" ]
    check "--json FILE holds the report" jpy "$TMP/saved.json" 'len(d["tensors"]) == 47'
    check "--json FILE leaves no temporary file" no_temp_files "$TMP"

    runp pmodel --json - --probes moments,entropy "$BASE"
    check "sr-probe MODEL exits 0" rc_is pmodel 0
    check "one model: 49 tensors, source model" jpy "$TMP/pmodel.out" \
        'len(d["tensors"]) == 49 and d["source"] == "model" and d["options"]["probes"] == ["moments", "entropy"]'
    check "--probes moments,entropy leaves PR null" jpy "$TMP/pmodel.out" \
        'all(t["pr"] is None for t in d["tensors"])'

    runp pstrict "$BASE" "$TRAINED"
    check "a mismatched pair without --skip-mismatched exits 1" rc_is pstrict 1
    check "... with one line naming fc/weights" sh -c \
        "[ \$(wc -l <'$TMP/pstrict.err') -eq 1 ] && grep -q 'fc/weights' '$TMP/pstrict.err'"

    runp pcut "$TMP/cut-data.safetensors"
    check "sr-probe on a truncated file exits 1" rc_is pcut 1
    check "... with one line naming the file" sh -c \
        "[ \$(wc -l <'$TMP/pcut.err') -eq 1 ] && grep -qF '$TMP/cut-data.safetensors' '$TMP/pcut.err'"
    runp pnotjson --json - "$TMP/not-json.safetensors"
    check "sr-probe on a bad header exits 1 with one line" sh -c \
        "[ \$(cat '$TMP/pnotjson.rc') -eq 1 ] && [ \$(wc -l <'$TMP/pnotjson.err') -eq 1 ] && [ ! -s '$TMP/pnotjson.out' ]"
    runp pbadout --probes moments --json "$TMP/no-such-dir/r.json" "$BASE"
    check "an unwritable --json FILE exits 1 with one line" sh -c \
        "[ \$(cat '$TMP/pbadout.rc') -eq 1 ] && [ \$(wc -l <'$TMP/pbadout.err') -eq 1 ]"

    # NaN and Inf in a checkpoint: counted, excluded and said, or refused
    "$PY" -c '
import json, struct, sys
vals = [1.0, float("nan"), 2.0, float("inf"), -1.0, 0.5]
hdr = json.dumps({"layers.0.mlp.w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + struct.pack("<6f", *vals))
' "$TMP/nan.safetensors"
    runp pnan "$TMP/nan.safetensors"
    check "non-finite values are counted and excluded by default (exit 0)" rc_is pnan 0
    check "... with one warning on stderr giving the count" sh -c \
        "[ \$(wc -l <'$TMP/pnan.err') -eq 1 ] && grep -q 'warning: 2 NaN or Inf values in 1 tensors are counted and excluded' '$TMP/pnan.err'"
    check "... and the line under the tables" grep -q 'non-finite values: 2 in 1 tensors, excluded' "$TMP/pnan.out"
    runp pnanf --fail-nonfinite "$TMP/nan.safetensors"
    check "--fail-nonfinite: exit 1 with one line naming the tensor" sh -c \
        "[ \$(cat '$TMP/pnanf.rc') -eq 1 ] && [ \$(wc -l <'$TMP/pnanf.err') -eq 1 ] && grep -q 'layers.0.mlp.w' '$TMP/pnanf.err'"
    # two tensors with NaN: the same message, naming the first in order,
    # for any thread count and run (the larger tensor starts first)
    "$PY" -c '
import json, struct, sys
import numpy as np
rng = np.random.default_rng(5)
sizes = [(16, 16), (8, 8), (32, 32), (4, 4), (256, 256), (16, 16)]
base = [rng.standard_normal(s).astype("<f4") for s in sizes]
trained = [b + np.float32(0.01) * rng.standard_normal(b.shape).astype("<f4") for b in base]
trained[1][3, 2] = np.nan
trained[4][100, 7] = np.nan
for path, arrs in ((sys.argv[1], base), (sys.argv[2], trained)):
    hdr, off = {}, 0
    for i, a in enumerate(arrs):
        hdr["model.layers.%d.mlp.up_proj.weight" % i] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(a.tobytes() for a in arrs))
' "$TMP/nan2-base.safetensors" "$TMP/nan2-trained.safetensors"
    runp pnan2 --fail-nonfinite --threads 1 "$TMP/nan2-base.safetensors" "$TMP/nan2-trained.safetensors"
    check "NaN in two tensors: the first in order is named" sh -c \
        "[ \$(cat '$TMP/pnan2.rc') -eq 1 ] && grep -q \"tensor 'model.layers.1.mlp.up_proj.weight': 1 non-finite\" '$TMP/pnan2.err'"
    same=1
    for rep in 1 2 3; do
        for th in 1 2 4; do
            runp pnan2b --fail-nonfinite --threads $th "$TMP/nan2-base.safetensors" "$TMP/nan2-trained.safetensors"
            cmp -s "$TMP/pnan2.err" "$TMP/pnan2b.err" && rc_is pnan2b 1 || same=0
        done
    done
    check "... byte-identical message for --threads 1, 2, 4, three runs each" [ $same -eq 1 ]
    runp pnanok --allow-nonfinite --json - "$TMP/nan.safetensors"
    check "--allow-nonfinite (the default) counts and excludes them" jpy "$TMP/pnanok.out" \
        'd["tensors"][0]["nonfinite"] == 2 and d["tensors"][0]["count"] == 4 and d["groups"]["mlp"]["nonfinite"] == 2 and d["options"]["nonfinite"] == "exclude"'
fi

# Every malformed file of the unit tests' corpus: sr-info and sr-probe exit 1
# with one line on stderr naming the file, never a crash.
try_corpus() {
    for prog in "$SR" bin/sr-probe; do
        "$prog" "$1" >/dev/null 2>"$TMP/corpus.err"
        rc=$?
        failed_cleanly "$rc" "$TMP/corpus.err" "$1" ||
            badfiles="$badfiles $(basename "$prog"):$(basename "$1")(rc=$rc)"
    done
}
sweep_corpus try_corpus "sr-info and sr-probe fail cleanly"

finish
