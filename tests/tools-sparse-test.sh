#!/bin/sh
# Tests of sr-compress and sr-apply against the fixture pair and broken
# inputs. Run from the repository root after `make all` (make check-tools).
SUITE=tools-sparse
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"

COMPRESS=${SR_COMPRESS:-bin/sr-compress}
APPLY=${SR_APPLY:-bin/sr-apply}

# pyck EXPR ARGS...: EXPR, Python over st(path) -> (header, tensors), is true.
pyck() {
    expr=$1
    shift
    "$PY" -c '
import json, struct, sys
import numpy as np
NP = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}
def st(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    return h, {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                dtype=NP[v["dtype"]]) for k, v in h.items() if k != "__metadata__"}
a = sys.argv[2:]
# statements separated by "; " on the lines, the last one the verdict
code = [c for line in sys.argv[1].strip().splitlines() for c in line.split("; ")]
for c in code[:-1]:
    exec(c)
sys.exit(0 if eval(code[-1]) else 1)
' "$expr" "$@" 2>"$TMP/py.err" || { sed 's/^/     /' "$TMP/py.err"; return 1; }
}

need "$COMPRESS" "$APPLY"

# ---- usage ----
run_with "$COMPRESS" help --help
check "sr-compress --help exits 0 with usage on stdout" sh -c "[ \$(cat $TMP/help.rc) -eq 0 ] && grep -q '^usage:' $TMP/help.out"
run_with "$APPLY" ahelp --help
check "sr-apply --help exits 0 with usage on stdout" sh -c "[ \$(cat $TMP/ahelp.rc) -eq 0 ] && grep -q '^usage:' $TMP/ahelp.out"
for args in "" "$BASE" "$BASE $TRAINED" "--keep 0.1 --energy 0.5 $BASE $TRAINED -o x" \
    "--keep 1.5 $BASE $TRAINED -o x" "--keep x $BASE $TRAINED -o x" "--threshold 0 $BASE $TRAINED -o x" \
    "--dare 0 $BASE $TRAINED -o x" "--dtype f64 $BASE $TRAINED -o x" "--seed -1 $BASE $TRAINED -o x" \
    "--frobnicate $BASE $TRAINED -o x" "--layout sideways $BASE $TRAINED -o x"; do
    # shellcheck disable=SC2086
    run_with "$COMPRESS" usage $args
    check "sr-compress ${args:-(no arguments)} exits 2" rc_is usage 2
done
for args in "" "$BASE" "$BASE x.safetensors" "--scale 0 $BASE d -o x" "--scale nan $BASE d -o x" \
    "--bogus $BASE d -o x"; do
    # shellcheck disable=SC2086
    run_with "$APPLY" usage $args
    check "sr-apply ${args:-(no arguments)} exits 2" rc_is usage 2
done

# ---- keep everything in F32: TRAINED back bit for bit ----
D=$TMP/all.safetensors
run_with "$COMPRESS" all "$BASE" "$TRAINED" -o "$D" --keep 1 --dtype f32 --skip-mismatched
check "--keep 1 --dtype f32 exits 0" rc_is all 0
check "... prints the summary naming the output" grep -q "all.safetensors: 47 tensors, kept 321888 of 321888" "$TMP/all.out"
run_with "$APPLY" allapply "$BASE" "$D" -o "$TMP/applied.safetensors"
check "sr-apply exits 0 and prints nothing" sh -c "[ \$(cat $TMP/allapply.rc) -eq 0 ] && [ ! -s $TMP/allapply.out ] && [ ! -s $TMP/allapply.err ]"
check "applied == TRAINED bit for bit on the 47 paired tensors, BASE on the others" pyck '
hb, b = st(a[0]); ht, t = st(a[1]); ho, o = st(a[2])
paired = [k for k in b if k in t and b[k].size == t[k].size and hb[k]["shape"] == ht[k]["shape"]]
len(paired) == 47 and all((o[k].view("u4") == t[k].view("u4")).all() for k in paired) and all((o[k] == b[k]).all() for k in b if k not in paired) and ho.get("__metadata__") == hb.get("__metadata__")
' "$BASE" "$TRAINED" "$TMP/applied.safetensors"

# ---- --threads: the same bytes for 1 and 3 workers ----
for th in 1 3; do
    run_with "$COMPRESS" th$th "$BASE" "$TRAINED" -o "$TMP/th$th.safetensors" --keep 0.05 \
        --skip-mismatched --threads $th
done
check "--threads 1 and --threads 3 exit 0 and write the same bytes" sh -c \
    "[ \$(cat $TMP/th1.rc) -eq 0 ] && [ \$(cat $TMP/th3.rc) -eq 0 ] && cmp -s $TMP/th1.safetensors $TMP/th3.safetensors"
run_with "$COMPRESS" th0 "$BASE" "$TRAINED" -o "$TMP/th0.safetensors" --threads 0
check "--threads 0 is a usage error (exit 2), nothing written" sh -c \
    "[ \$(cat $TMP/th0.rc) -eq 2 ] && [ ! -e $TMP/th0.safetensors ] && grep -q -- '--threads' $TMP/th0.err"

# ---- 10 %: the delta's structure, the JSON report ----
D10=$TMP/top10.safetensors
run_with "$COMPRESS" top10 "$BASE" "$TRAINED" -o "$D10" --keep 0.1 --skip-mismatched --json "$TMP/top10.json" --tensors
check "--keep 0.1 exits 0" rc_is top10 0
check "--tensors lists the tensors" grep -q "dense3/conv3/pointwise_filter" "$TMP/top10.out"
check "the report keeps floor(0.1 * 321888 + 0.5) = 32189 entries" pyck '
d = json.load(open(a[0])); d["total"]["kept"] == 32189 and len(d["tensors"]) == 47 and d["rule"] == "top" and sorted(d["unpaired"]) == ["fc/bias", "fc/weights"]
' "$TMP/top10.json"
check "the delta is safetensors with NAME.idx / NAME.val per tensor" pyck '
h, t = st(a[0]); m = h["__metadata__"]; ts = json.loads(m["tensors"])
m["format"] == "sparseresid.delta" and m["format_version"] == "1" and len(ts) == 47 and all(e["name"] + ".idx" in t and e["name"] + ".val" in t and len(t[e["name"] + ".val"]) == e["kept"] for e in ts) and sum(e["kept"] for e in ts) == 32189
' "$D10"
run_with "$COMPRESS" json "$BASE" "$TRAINED" -o "$TMP/j.safetensors" --energy 0.99 --dtype bf16 --skip-mismatched --json -
check "--json - writes the report alone on stdout" pyck '
d = json.load(open(a[0])); d["value_dtype"] == "BF16" and d["total"]["kept_energy"] >= 0.99
' "$TMP/json.out"
run_with "$COMPRESS" dare "$BASE" "$TRAINED" -o "$TMP/dare.safetensors" --dare 0.2 --seed 7 --skip-mismatched
run_with "$COMPRESS" dare2 "$BASE" "$TRAINED" -o "$TMP/dare2.safetensors" --dare 0.2 --seed 7 --skip-mismatched --in-memory
check "--dare with one seed gives the same file twice" cmp -s "$TMP/dare.safetensors" "$TMP/dare2.safetensors"

# ---- refusals: exit 1, one line naming the file or tensor, no output ----
run_with "$COMPRESS" strict "$BASE" "$TRAINED" -o "$TMP/never.safetensors"
check "a mismatched pair without --skip-mismatched exits 1" rc_is strict 1
check "... one line naming fc/weights, no output" sh -c "[ \$(wc -l <$TMP/strict.err) -eq 1 ] && grep -q fc/weights $TMP/strict.err && [ ! -e $TMP/never.safetensors ]"
run_with "$APPLY" wrongbase "$TRAINED" "$D10" -o "$TMP/never.safetensors"
check "applying to another base exits 1" rc_is wrongbase 1
check "... one line naming a tensor and the delta" sh -c "grep -q \"tensor '\" $TMP/wrongbase.err && grep -qF '$D10' $TMP/wrongbase.err"
check "... and writes nothing" sh -c "[ ! -e $TMP/never.safetensors ]"
head -c 2000 "$D10" >"$TMP/cut.delta.safetensors"
run_with "$APPLY" cut "$BASE" "$TMP/cut.delta.safetensors" -o "$TMP/never.safetensors"
check "a truncated delta exits 1 with one line naming it" sh -c "[ \$(cat $TMP/cut.rc) -eq 1 ] && [ \$(wc -l <$TMP/cut.err) -eq 1 ] && grep -qF cut.delta.safetensors $TMP/cut.err"
run_with "$APPLY" notdelta "$BASE" "$BASE" -o "$TMP/never.safetensors"
check "a model given as the delta exits 1 with one line saying so" sh -c "[ \$(cat $TMP/notdelta.rc) -eq 1 ] && [ \$(wc -l <$TMP/notdelta.err) -eq 1 ] && grep -q 'not a sparse residual' $TMP/notdelta.err"
run_with "$COMPRESS" outdir "$BASE" "$TRAINED" --skip-mismatched -o "$TMP/no-such-dir/d.safetensors"
check "an unwritable output exits 1 with one line" sh -c "[ \$(cat $TMP/outdir.rc) -eq 1 ] && [ \$(wc -l <$TMP/outdir.err) -eq 1 ]"
run_with "$APPLY" clobber "$BASE" "$D10" -o "$TMP/applied.safetensors" --no-clobber
check "--no-clobber refuses an existing output" rc_is clobber 1
check "no temporary file is left behind" no_temp_files "$TMP"
check "nothing was written under the never-written name" sh -c "[ ! -e $TMP/never.safetensors ]"

# Every malformed file of the unit tests' corpus: as BASE, TRAINED or DELTA,
# exit 1 with one line naming the file, never a crash, never an output.
try_corpus() {
    for how in compress-base compress-trained apply-base apply-delta; do
        case $how in
        compress-base) "$COMPRESS" "$1" "$TRAINED" -o "$TMP/out.safetensors" ;;
        compress-trained) "$COMPRESS" "$BASE" "$1" -o "$TMP/out.safetensors" ;;
        apply-base) "$APPLY" "$1" "$D10" -o "$TMP/out.safetensors" ;;
        apply-delta) "$APPLY" "$BASE" "$1" -o "$TMP/out.safetensors" ;;
        esac >/dev/null 2>"$TMP/corpus.err"
        rc=$?
        if ! failed_cleanly "$rc" "$TMP/corpus.err" "$1" || [ -e "$TMP/out.safetensors" ]; then
            badfiles="$badfiles $how:$(basename "$1")(rc=$rc)"
            rm -f "$TMP/out.safetensors"
        fi
    done
}
# ---- a delta larger than the dense residual says so ----
run_with "$COMPRESS" big "$BASE" "$TRAINED" --skip-mismatched -o "$TMP/big.safetensors" --keep 0.9
check "--keep 0.9: the delta is larger than the dense residual, and says so" \
    grep -q "x larger than the dense residual" "$TMP/big.out"

# ---- --rounded: no low parts, 4 bytes an entry less ----
run_with "$COMPRESS" rnd "$BASE" "$TRAINED" --skip-mismatched -o "$TMP/rnd.safetensors" --keep 0.9 \
    --rounded
run_with "$COMPRESS" nrnd "$BASE" "$TRAINED" --skip-mismatched -o "$TMP/nrnd.safetensors" --keep 0.9
check "--rounded: the same tensors but no NAME.lo, whose values are 4 bytes an entry" "$PY" - \
    "$TMP/rnd.safetensors" "$TMP/nrnd.safetensors" <<'EOF'
import json, struct, sys
def header(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
r, n = header(sys.argv[1]), header(sys.argv[2])
r.pop("__metadata__", None)
n.pop("__metadata__", None)
lo = [k for k in n if k.endswith(".lo")]
assert lo, "the unrounded delta has low parts"
assert not [k for k in r if k.endswith(".lo")]
assert set(n) - set(lo) == set(r)
for k in lo:
    e = n[k]
    assert e["dtype"] == "F32" and e["data_offsets"][1] - e["data_offsets"][0] == 4 * e["shape"][0]
EOF

# ---- a report that cannot be written is an error ----
if [ -w /dev/full ]; then
    "$COMPRESS" "$BASE" "$TRAINED" --skip-mismatched -o "$TMP/full.safetensors" --json - \
        >/dev/full 2>"$TMP/full.err"
    echo $? >"$TMP/full.rc"
    check "--json - on a full stdout exits 1" rc_is full 1
    check "... saying so" grep -q "error writing the output" "$TMP/full.err"
fi

# ---- --keep 1 reproduces TRAINED exactly: F8 tensors (unchanged or not), an empty name ----
F8BASE=78000000000000007b2277223a7b226474797065223a22463332222c227368617065223a5b345d2c22646174615f6f666673657473223a5b302c31365d7d2c2271223a7b226474797065223a2246385f45344d33222c227368617065223a5b345d2c22646174615f6f666673657473223a5b31362c32305d7d7d2020202020200000803f00000040000040400000804038404448
EMPTYNAME=38000000000000007b22223a7b226474797065223a22463332222c227368617065223a5b315d2c22646174615f6f666673657473223a5b302c345d7d7d20202000000000
hexfile() { "$PY" -c 'import sys; open(sys.argv[2], "wb").write(bytes.fromhex(sys.argv[1]))' "$1" "$2"; }
hexfile "$F8BASE" "$TMP/f8b.safetensors"
hexfile "$(echo "$F8BASE" | sed 's/00000040/00002040/')" "$TMP/f8t.safetensors"
hexfile "$(echo "$F8BASE" | sed 's/00000040/00002040/; s/38404448$/38404449/')" "$TMP/f8t2.safetensors"
hexfile "$EMPTYNAME" "$TMP/eb.safetensors"
hexfile "$(echo "$EMPTYNAME" | sed 's/00000000$/0000803f/')" "$TMP/et.safetensors"
for case in f8:f8t f8c:f8t2 empty:et; do
    k=${case%%:*}
    trained=$TMP/${case#*:}.safetensors
    base=$TMP/f8b.safetensors
    [ "$k" = empty ] && base=$TMP/eb.safetensors
    run_with "$COMPRESS" c$k "$base" "$trained" -o "$TMP/$k.delta" --keep 1
    run_with "$APPLY" a$k "$base" "$TMP/$k.delta" -o "$TMP/$k.out"
    check "--keep 1 then apply gives TRAINED byte for byte ($k)" sh -c \
        "[ \$(cat $TMP/c$k.rc) -eq 0 ] && [ \$(cat $TMP/a$k.rc) -eq 0 ] && cmp -s $TMP/$k.out $trained"
done

sweep_corpus try_corpus "sr-compress and sr-apply fail cleanly"

finish
