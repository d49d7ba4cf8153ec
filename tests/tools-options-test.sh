#!/bin/sh
# The options common to the programs (docs/tools.md): one name, meaning and
# value syntax each; the deprecated spellings; the format keys of every JSON
# document; the warning for a matrix view that does not fit the kernels;
# exit status 2 for bad usage, 1 for errors. Run from the repository root
# after `make all` (make check-tools).
SUITE=tools-options
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"

BIN=${SR_BIN:-bin}
INFO=$BIN/sr-info
PROBE=$BIN/sr-probe
AMP=$BIN/sr-amp
COMPRESS=$BIN/sr-compress
APPLY=$BIN/sr-apply
need "$INFO" "$PROBE" "$AMP" "$COMPRESS" "$APPLY"

# jpy FILE EXPR: EXPR, a Python expression over the JSON document d, is true.
jpy() {
    "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
' "$1" "$2" 2>"$TMP/jpy.err" || { sed 's/^/     /' "$TMP/jpy.err"; return 1; }
}

# lines NAME N: NAME's stderr has exactly N lines.
lines() { [ "$(wc -l <"$TMP/$1.err")" -eq "$2" ]; }
# err_has NAME TEXT: NAME's stderr holds TEXT (fixed string).
err_has() { grep -qF -- "$2" "$TMP/$1.err"; }

# Small checkpoints: convolution kernels in either layout, and a transformer
# block whose names carry every kind. write_st PATH SEED NAME:SHAPE...
cat >"$TMP/write.py" <<'EOF'
import json, struct, sys
import numpy as np
path, seed, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rng = np.random.default_rng(seed)
hdr, blobs, off = {}, [], 0
for spec in specs:
    name, shape = spec.split(":")
    shape = [int(x) for x in shape.split("x")]
    a = rng.standard_normal(shape).astype("<f4")
    hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + a.nbytes]}
    blobs.append(a.tobytes())
    off += a.nbytes
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
write_st() { "$PY" "$TMP/write.py" "$@"; }

TF_SPEC="conv1.weight:3x3x16x32 conv1.bias:32 conv2.weight:1x1x32x64 dw.weight:3x3x64x1"
PT_SPEC="conv1.weight:32x16x3x3 conv1.bias:32 conv2.weight:64x32x1x1"
# shellcheck disable=SC2086
{
    write_st "$TMP/tf-a.safetensors" 1 $TF_SPEC
    write_st "$TMP/tf-b.safetensors" 2 $TF_SPEC
    write_st "$TMP/pt-a.safetensors" 3 $PT_SPEC
    write_st "$TMP/pt-b.safetensors" 4 $PT_SPEC
    # two PyTorch-shaped kernels and one TF-shaped: the majority decides
    write_st "$TMP/mixed.safetensors" 5 a.weight:32x16x3x3 b.weight:64x32x1x1 c.weight:3x3x16x32
    # kernels no shape can tell apart
    write_st "$TMP/amb.safetensors" 6 a.weight:3x3x3x3 b.weight:5x5x5x5
}
TX_SPEC="model.embed_tokens.weight:50x16 model.layers.0.self_attn.q_proj.weight:16x16
model.layers.0.mlp.up_proj.weight:32x16 model.layers.0.input_layernorm.weight:16"
# shellcheck disable=SC2086
{
    write_st "$TMP/tx-a.safetensors" 7 $TX_SPEC
    write_st "$TMP/tx-b.safetensors" 8 $TX_SPEC
}
TFA=$TMP/tf-a.safetensors
TFB=$TMP/tf-b.safetensors
PTA=$TMP/pt-a.safetensors
PTB=$TMP/pt-b.safetensors

# ---- usage errors: exit 2, "prog: MESSAGE" and "(try prog --help)" ----
# usage_error PROG ARGS...: one check of the three.
usage_error() {
    prog=$1
    shift
    run_with "$prog" usage "$@"
    p=$(basename "$prog")
    check "$p $*: exit 2, one line and (try $p --help)" sh -c \
        "[ \$(cat '$TMP/usage.rc') -eq 2 ] && [ \$(wc -l <'$TMP/usage.err') -eq 2 ] &&
         head -n 1 '$TMP/usage.err' | grep -q '^$p: ' &&
         tail -n 1 '$TMP/usage.err' | grep -qx '(try $p --help)' && [ ! -s '$TMP/usage.out' ]"
}
usage_error "$INFO"
usage_error "$INFO" --frobnicate "$BASE"
usage_error "$INFO" "$BASE" --layout
usage_error "$INFO" --layout sideways "$BASE"
usage_error "$INFO" "$BASE" "$TRAINED" "$BASE"
usage_error "$INFO" --strict "$BASE"
usage_error "$INFO" --json '' "$BASE"
usage_error "$PROBE"
usage_error "$PROBE" --frobnicate "$BASE"
usage_error "$PROBE" --bins x "$BASE"
usage_error "$PROBE" --kinds mlp,bogus "$BASE"
usage_error "$PROBE" "$BASE" "$TRAINED" "$BASE"
usage_error "$AMP"
usage_error "$AMP" share "$BASE"
usage_error "$AMP" share --score-layout out-last "$BASE" "$TRAINED"
usage_error "$AMP" share --layout sideways "$BASE" "$TRAINED"
usage_error "$AMP" fit "$BASE" "$TRAINED"
usage_error "$COMPRESS"
usage_error "$COMPRESS" "$BASE" -o "$TMP/d.safetensors"
usage_error "$COMPRESS" "$BASE" "$TRAINED" "$BASE" -o "$TMP/d.safetensors"
usage_error "$COMPRESS" "$BASE" "$TRAINED" -o "$TMP/d.safetensors" --keep
usage_error "$COMPRESS" "$BASE" "$TRAINED" -o "$TMP/d.safetensors" --dtype f8
usage_error "$COMPRESS" "$BASE" "$TRAINED" -o "$TMP/d.safetensors" --keep 0.1 --dare 0.5
usage_error "$APPLY"
usage_error "$APPLY" "$BASE"
usage_error "$APPLY" "$BASE" "$TRAINED" "$BASE" -o "$TMP/o.safetensors"
usage_error "$APPLY" "$BASE" "$TRAINED" -o "$TMP/o.safetensors" --scale 0
usage_error "$APPLY" "$BASE" "$TRAINED" -o "$TMP/o.safetensors" --frobnicate
check "no output after the usage errors" sh -c "[ ! -e '$TMP/d.safetensors' ] && [ ! -e '$TMP/o.safetensors' ]"

# The same option, the same words: bad values of --layout, --threads,
# --kinds and --json are said alike by every program that has them.
# same_words OPT VALUE PROG ARGS...: PROG's first line, without "prog: ".
same_words() {
    opt=$1
    val=$2
    prog=$3
    shift 3
    "$prog" "$@" "$opt" "$val" 2>&1 >/dev/null | head -n 1 | sed "s/^$(basename "$prog"): //"
}
for ov in "--layout|up" "--threads|0" "--threads|4097" "--threads|x" "--kinds|mlp,,norm" "--json|"; do
    opt=${ov%%|*}
    val=${ov#*|}
    words=""
    for cmd in "$INFO $BASE" "$PROBE $BASE" "$AMP share $BASE $TRAINED" \
        "$COMPRESS $BASE $TRAINED -o $TMP/d.safetensors"; do
        prog=${cmd%% *}
        case "$opt:$(basename "$prog")" in
        --threads:sr-info | --kinds:sr-info | --kinds:sr-compress) continue ;;
        esac
        # shellcheck disable=SC2086
        w=$(same_words "$opt" "$val" $cmd)
        words="$words$w
"
    done
    check "$opt '$val': the same message from every program that has $opt" \
        [ "$(printf '%s' "$words" | sort -u | grep -c .)" -eq 1 ]
done

# ---- runtime errors: exit 1, one line ----
for cmd in "$INFO $TMP/missing.safetensors" "$PROBE $TMP/missing.safetensors" \
    "$AMP share $BASE $TMP/missing.safetensors" \
    "$COMPRESS $BASE $TMP/missing.safetensors -o $TMP/d.safetensors" \
    "$APPLY $BASE $TMP/missing.safetensors -o $TMP/o.safetensors"; do
    # shellcheck disable=SC2086
    run_with ${cmd%% *} rt ${cmd#* }
    check "$(basename "${cmd%% *}") on a missing file: exit 1, one line naming it" sh -c \
        "[ \$(cat '$TMP/rt.rc') -eq 1 ] && [ \$(wc -l <'$TMP/rt.err') -eq 1 ] && grep -q missing.safetensors '$TMP/rt.err'"
done
# A missing directory of an output is found before any work: sr-compress
# writes no delta when its --json cannot be written.
run_with "$COMPRESS" nodir "$BASE" "$TRAINED" --skip-mismatched -o "$TMP/kept.safetensors" \
    --json "$TMP/no-such-dir/r.json"
check "sr-compress --json in a missing directory: exit 1, one line naming the directory" sh -c \
    "[ \$(cat '$TMP/nodir.rc') -eq 1 ] && [ \$(wc -l <'$TMP/nodir.err') -eq 1 ] && grep -qF 'the directory $TMP/no-such-dir does not exist' '$TMP/nodir.err'"
check "... and no delta written" [ ! -e "$TMP/kept.safetensors" ]
run_with "$AMP" nodir2 share --kinds all --layout out-last --json "$TMP/no-such-dir/s.json" "$TFA" "$TFB"
check "sr-amp --json in a missing directory: the same words" \
    err_has nodir2 "the directory $TMP/no-such-dir does not exist"

# ---- --layout: the matrix view in every program ----
run_with "$AMP" amplast share --kinds all --layout out-last --json - "$TFA" "$TFB"
check "sr-amp --layout out-last: conv2.weight [1,1,32,64] is a 32x64 matrix, no warning" sh -c \
    "[ \$(cat '$TMP/amplast.rc') -eq 0 ] && [ ! -s '$TMP/amplast.err' ]"
check "... options say out-last and diag" jpy "$TMP/amplast.out" \
    '[(t["rows"], t["cols"], t["rank"]) for t in d["tensors"] if t["name"] == "conv2.weight"] == [(32, 64, 32)] and d["options"]["matrix_layout"] == "out-last" and d["options"]["score_layout"] == "diag"'
run_with "$AMP" ampfirst share --kinds all --json - "$TFA" "$TFB"
check "sr-amp default view: conv2.weight is 1x2048, not selected" jpy "$TMP/ampfirst.out" \
    '"conv2.weight" not in [t["name"] for t in d["tensors"]] and d["options"]["matrix_layout"] == "out-first"'
run_with "$INFO" infolast --json - --layout out-last "$TFA"
check "sr-info --layout out-last: conv2.weight is 32x64" jpy "$TMP/infolast.out" \
    '[t["matrix"] for t in d["tensors"] if t["name"] == "conv2.weight"] == [[32, 64]]'
run_with "$PROBE" probelast --json - --layout out-last "$TFA"
check "sr-probe --layout out-last: conv2.weight is 32x64" jpy "$TMP/probelast.out" \
    '[(t["rows"], t["cols"]) for t in d["tensors"] if t["name"] == "conv2.weight"] == [(32, 64)]'

# ---- sr-amp's score layout and the deprecated spellings ----
run_with "$AMP" core share --kinds all --layout out-last --score-layout core --json - "$TFA" "$TFB"
check "sr-amp --score-layout core: r x r scores, no warning" sh -c \
    "[ \$(cat '$TMP/core.rc') -eq 0 ] && [ ! -s '$TMP/core.err' ]"
check "... scores = rank^2 and options say core" jpy "$TMP/core.out" \
    'all(t["scores"] == t["rank"] ** 2 for t in d["tensors"]) and d["options"]["score_layout"] == "core"'
run_with "$AMP" oldcore share --kinds all --layout core --layout out-last --json - --layout core \
    "$TFA" "$TFB"
check "deprecated sr-amp --layout core: the same document as --score-layout core" \
    cmp -s "$TMP/core.out" "$TMP/oldcore.out"
check "... one warning line (given twice) naming --score-layout" sh -c \
    "[ \$(wc -l <'$TMP/oldcore.err') -eq 1 ] && grep -q 'deprecated.*--score-layout diag|core' '$TMP/oldcore.err'"
check "... and the old options.layout key still holds core" jpy "$TMP/oldcore.out" \
    'd["options"]["layout"] == "core"'
run_with "$AMP" oldview share --kinds all --matrix-layout out-last --json - "$TFA" "$TFB"
check "deprecated sr-amp --matrix-layout out-last: the same document as --layout out-last" \
    cmp -s "$TMP/amplast.out" "$TMP/oldview.out"
check "... one warning line naming --layout" sh -c \
    "[ \$(wc -l <'$TMP/oldview.err') -eq 1 ] && grep -q 'matrix-layout is deprecated.*use --layout' '$TMP/oldview.err'"
run_with "$AMP" oldmix share --kinds all --layout out-last --layout diag --json - "$TFA" "$TFB"
check "sr-amp --layout out-last --layout diag: both meanings kept" jpy "$TMP/oldmix.out" \
    'd["options"]["matrix_layout"] == "out-last" and d["options"]["score_layout"] == "diag"'

# ---- --kinds: the same syntax and selection in sr-probe and sr-amp ----
for kinds in mlp attention,mlp embedding,mlp all; do
    run_with "$PROBE" pk --json - --kinds "$kinds" "$TMP/tx-a.safetensors" "$TMP/tx-b.safetensors"
    run_with "$AMP" ak share --json - --kinds "$kinds" "$TMP/tx-a.safetensors" "$TMP/tx-b.safetensors"
    check "--kinds $kinds: sr-probe's matrices are sr-amp's selection" "$PY" -c '
import json, sys
p, a = (json.load(open(f)) for f in sys.argv[1:3])
want = {"mlp": 1, "attention,mlp": 2, "embedding,mlp": 2, "all": 3}[sys.argv[3]]
pm = sorted(t["name"] for t in p["tensors"] if t["is_matrix"])
am = sorted(t["name"] for t in a["tensors"])
sys.exit(0 if pm == am and len(am) == want else 1)
' "$TMP/pk.out" "$TMP/ak.out" "$kinds"
done
run_with "$PROBE" pall --json - --kinds all "$TMP/tx-a.safetensors"
check "sr-probe --kinds all takes every tensor, the norm too" jpy "$TMP/pall.out" \
    'len(d["tensors"]) == 4 and d["groups"]["norm"]["tensors"] == 1'
run_with "$PROBE" pkinds --json - --kinds mlp "$TMP/tx-a.safetensors"
run_with "$PROBE" ponly --json - --only mlp "$TMP/tx-a.safetensors"
check "deprecated sr-probe --only mlp: the same report as --kinds mlp" \
    cmp -s "$TMP/pkinds.out" "$TMP/ponly.out"
check "... one warning line naming --kinds" sh -c \
    "[ \$(wc -l <'$TMP/ponly.err') -eq 1 ] && grep -q 'only is deprecated.*use --kinds' '$TMP/ponly.err'"

# ---- --json FILE|- in sr-info too; the old bare --json ----
run_with "$INFO" jdash --json - --layout out-last "$BASE"
run_with "$INFO" jfile --json "$TMP/info.json" --layout out-last "$BASE"
run_with "$INFO" jtext --layout out-last "$BASE"
check "sr-info --json FILE: the document in FILE, the tables on stdout" sh -c \
    "[ \$(cat '$TMP/jfile.rc') -eq 0 ] && cmp -s '$TMP/jdash.out' '$TMP/info.json' && cmp -s '$TMP/jtext.out' '$TMP/jfile.out'"
run_with "$INFO" jagain --json "$TMP/info.json" --layout out-last "$BASE"
check "sr-info --json FILE again: an earlier document is an output, not a checkpoint" sh -c \
    "[ \$(cat '$TMP/jagain.rc') -eq 0 ] && [ ! -s '$TMP/jagain.err' ] && cmp -s '$TMP/jdash.out' '$TMP/info.json'"
run_with "$INFO" jold --layout out-last --json "$BASE"
check "deprecated sr-info --json CHECKPOINT: the document on stdout" cmp -s "$TMP/jdash.out" "$TMP/jold.out"
check "... one warning line naming --json -" sh -c \
    "[ \$(wc -l <'$TMP/jold.err') -eq 1 ] && grep -q 'deprecated.*--json -' '$TMP/jold.err'"
run_with "$INFO" joldend "$BASE" "$TRAINED" --json
run_with "$INFO" jpair --json - "$BASE" "$TRAINED"
check "deprecated sr-info BASE TRAINED --json: the pair document on stdout" \
    cmp -s "$TMP/jpair.out" "$TMP/joldend.out"
cp "$BASE" "$TMP/model.ckpt"
run_with "$INFO" joldsniff --layout out-last --json "$TMP/model.ckpt"
check "deprecated sr-info --json FILE: a safetensors file by any name is the checkpoint" jpy \
    "$TMP/joldsniff.out" 'd["format"] == "sparseresid-info" and len(d["tensors"]) == 49'
check "... and is left as it was" cmp -s "$TMP/model.ckpt" "$BASE"

# ---- format and format_version, first in every document ----
run_with "$PROBE" fprobe --json - --probes moments "$BASE"
run_with "$AMP" famp share --kinds all --layout out-last --json - "$TFA" "$TFB"
run_with "$COMPRESS" fcomp --skip-mismatched -o "$TMP/delta.safetensors" --json - "$BASE" "$TRAINED"
for doc in "jdash:sparseresid-info" "jpair:sparseresid-info-pair" "fprobe:sparseresid-report" \
    "famp:sparseresid-amp-share" "fcomp:sparseresid-delta-report"; do
    check "${doc%%:*}: format ${doc#*:}, format_version 1, the first two keys" jpy "$TMP/${doc%%:*}.out" \
        "list(d)[:2] == ['format', 'format_version'] and d['format'] == '${doc#*:}' and d['format_version'] == 1 and type(d['format_version']) is int"
done

# ---- the warning when the kernels look like the other layout ----
run_with "$INFO" wtf "$TFA"
check "sr-info on TF kernels, default view: exit 0, one warning line" sh -c \
    "[ \$(cat '$TMP/wtf.rc') -eq 0 ] && [ \$(wc -l <'$TMP/wtf.err') -eq 1 ]"
check "... naming the file, the first kernel, its shape, the count and --layout out-last" grep -qF \
    "sr-info: $TFA: tensor 'conv1.weight' of shape [3,3,16,32] looks like the TF/Keras layout (kh, kw, in, out), as 3 of its 3 rank-4 tensors do: pass --layout out-last" \
    "$TMP/wtf.err"
run_with "$INFO" wtflast --layout out-last "$TFA"
check "sr-info on TF kernels with --layout out-last: no warning" [ ! -s "$TMP/wtflast.err" ]
run_with "$INFO" wpt "$PTA"
check "sr-info on PyTorch kernels, default view: no warning" [ ! -s "$TMP/wpt.err" ]
run_with "$INFO" wptlast --layout out-last "$PTA"
check "sr-info on PyTorch kernels with --layout out-last: a warning for --layout out-first" \
    sh -c "[ \$(wc -l <'$TMP/wptlast.err') -eq 1 ] && grep -qF \"tensor 'conv1.weight' of shape [32,16,3,3] looks like the PyTorch layout (out, in, kh, kw), as 2 of its 2 rank-4 tensors do: pass --layout out-first\" '$TMP/wptlast.err'"
run_with "$INFO" wmixed "$TMP/mixed.safetensors"
check "two PyTorch kernels and one TF kernel, default view: no warning" [ ! -s "$TMP/wmixed.err" ]
run_with "$INFO" wmixedlast --layout out-last "$TMP/mixed.safetensors"
check "... with --layout out-last: the warning (2 of its 3)" \
    err_has wmixedlast "as 2 of its 3 rank-4 tensors do: pass --layout out-first"
run_with "$INFO" wamb "$TMP/amb.safetensors"
run_with "$INFO" wamblast --layout out-last "$TMP/amb.safetensors"
check "kernels no shape tells apart: no warning in either view" \
    sh -c "[ ! -s '$TMP/wamb.err' ] && [ ! -s '$TMP/wamblast.err' ]"
run_with "$PROBE" pwtf --json - "$TFA" "$TFB"
check "sr-probe on a TF pair, default view: one warning line for the two files" sh -c \
    "[ \$(cat '$TMP/pwtf.rc') -eq 0 ] && [ \$(wc -l <'$TMP/pwtf.err') -eq 1 ] && grep -q 'pass --layout out-last' '$TMP/pwtf.err'"
run_with "$PROBE" pwtflast --json - --layout out-last "$TFA" "$TFB"
check "sr-probe on a TF pair with --layout out-last: no warning" [ ! -s "$TMP/pwtflast.err" ]
run_with "$PROBE" pwpt --json - "$PTA" "$PTB"
check "sr-probe on a PyTorch pair, default view: no warning" [ ! -s "$TMP/pwpt.err" ]
run_with "$AMP" awtf share --kinds all --json - "$TFA" "$TFB"
check "sr-amp on a TF pair, default view: one warning line" sh -c \
    "[ \$(cat '$TMP/awtf.rc') -eq 0 ] && [ \$(wc -l <'$TMP/awtf.err') -eq 1 ] && grep -q 'pass --layout out-last' '$TMP/awtf.err'"
run_with "$COMPRESS" cwtf -o "$TMP/tf-delta.safetensors" "$TFA" "$TFB"
check "sr-compress, whose delta the view does not change: no warning" sh -c \
    "[ \$(cat '$TMP/cwtf.rc') -eq 0 ] && [ ! -s '$TMP/cwtf.err' ]"
run_with "$INFO" iwpair "$TFA" "$TFB"
check "sr-info BASE TRAINED, which shows no matrix view: no warning" [ ! -s "$TMP/iwpair.err" ]

finish
