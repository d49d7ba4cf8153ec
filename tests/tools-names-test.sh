#!/bin/sh
# Name rules in the programs: --kind-rules FILE on sr-info, sr-probe and
# sr-amp (the file's format and its errors), and an encoder-decoder pair
# whose encoder and decoder layers are distinct layers of the report,
# checked with numpy. Run from the repository root after `make all`
# (make check-tools).
SUITE=tools-names
# shellcheck source=tests/tools-lib.sh
. "$(dirname "$0")/tools-lib.sh"
set -f # patterns go to the programs, not to the shell

INFO=${SR_INFO:-bin/sr-info}
PROBE=${SR_PROBE:-bin/sr-probe}
AMP=${SR_AMP:-bin/sr-amp}
need "$INFO" "$PROBE" "$AMP"

# py_check SCRIPT ARGS...: a Python check; its complaint is shown on failure.
py_check() {
    "$PY" - "$@" 2>"$TMP/py.err" || { sed 's/^/     /' "$TMP/py.err"; return 1; }
}

# A Whisper-style pair: three encoder layers, two decoder layers, the
# encoder's convolutional stem; residuals of 0.1 x Gaussian noise.
cat >"$TMP/make.py" <<'EOF'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(7)
names = [("model.encoder.conv1.weight", (8, 12))]
for stack, n in (("model.encoder.layers", 3), ("model.decoder.layers", 2)):
    for l in range(n):
        names.append(("%s.%d.self_attn.q_proj.weight" % (stack, l), (8, 8)))
        names.append(("%s.%d.fc1.weight" % (stack, l), (16, 8)))
base = {k: rng.standard_normal(s).astype("<f4") for k, s in names}
trained = {k: v + np.float32(0.1) * rng.standard_normal(v.shape).astype("<f4")
           for k, v in base.items()}
def save(path, d):
    hdr, off, blobs = {}, 0, []
    for k, a in d.items():
        hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
save(sys.argv[1], base)
save(sys.argv[2], trained)
EOF
EB=$TMP/ed-base.safetensors
ET=$TMP/ed-trained.safetensors
"$PY" "$TMP/make.py" "$EB" "$ET" || bad "the encoder-decoder pair could not be written"

# kinds NAME: "name kind" lines of sr-info --json output NAME.out
kinds_of() {
    "$PY" -c 'import json, sys
for t in json.load(open(sys.argv[1]))["tensors"]:
    print(t["name"], t["kind"])' "$TMP/$1.out"
}

# ---- the default rules ----
run_with "$INFO" idef --json "$EB"
check "sr-info on the pair exits 0" rc_is idef 0
check "Whisper's conv stem is an embedding, fc1 mlp, q_proj attention" sh -c "
    kinds=\$(\"$PY\" -c 'import json, sys
k = {t[\"name\"]: t[\"kind\"] for t in json.load(open(sys.argv[1]))[\"tensors\"]}
print(k[\"model.encoder.conv1.weight\"], k[\"model.decoder.layers.1.fc1.weight\"],
      k[\"model.encoder.layers.2.self_attn.q_proj.weight\"])' '$TMP/idef.out')
    [ \"\$kinds\" = 'embedding mlp attention' ]"

# ---- a rules file: comments, blanks, tabs, a trailing comment ----
printf '%s\n' '# fc1 counted as attention, the stem as a norm' '' \
    "*.fc1.*$(printf '\t')attention   # trailing" '  *conv1*  norm' '*fc1* mlp' >"$TMP/rules.txt"
run_with "$INFO" irules --json --kind-rules "$TMP/rules.txt" "$EB"
check "sr-info --kind-rules FILE exits 0" rc_is irules 0
kinds_of irules >"$TMP/irules.kinds"
check "the file's rules come first: every fc1 is attention (5)" \
    [ "$(grep -c '\.fc1\.weight attention$' "$TMP/irules.kinds")" -eq 5 ]
check "... the stem is a norm" grep -qx 'model.encoder.conv1.weight norm' "$TMP/irules.kinds"
check "... names no rule of the file matches keep the default kind" \
    [ "$(grep -c 'q_proj.weight attention$' "$TMP/irules.kinds")" -eq 5 ]
run_with "$INFO" irules2 --json "--kind-rules=$TMP/rules.txt" "$EB" "$ET"
check "--kind-rules=FILE with two checkpoints: fc1 pairs are attention" sh -c "
    [ \$(cat '$TMP/irules2.rc') -eq 0 ] &&
    \"$PY\" -c 'import json, sys
p = json.load(open(sys.argv[1]))[\"pairs\"]
assert sum(x[\"kind\"] == \"attention\" for x in p) == 10, p' '$TMP/irules2.out'"

# no-defaults: only the file's rules
printf 'no-defaults\n*q_proj* mlp\n' >"$TMP/only.txt"
run_with "$INFO" ionly --json --kind-rules "$TMP/only.txt" "$EB"
kinds_of ionly >"$TMP/ionly.kinds"
check "no-defaults: q_proj is mlp (5) ..." \
    [ "$(grep -c 'q_proj.weight mlp$' "$TMP/ionly.kinds")" -eq 5 ]
check "... and every other tensor other (6)" \
    [ "$(grep -c ' other$' "$TMP/ionly.kinds")" -eq 6 ]
# an empty file (comments only) leaves the defaults
printf '# nothing\n\n' >"$TMP/empty.txt"
run_with "$INFO" iempty --json --kind-rules "$TMP/empty.txt" "$EB"
check "a file of comments only keeps the default kinds" cmp -s "$TMP/idef.out" "$TMP/iempty.out"

# ---- bad files ----
# bad_file DESC FILE-CONTENT WANT-RC WANT-TEXT: sr-info on a rules file
bad_file() {
    # shellcheck disable=SC2059 # the content is a printf format on purpose
    printf "$2" >"$TMP/bad.txt"
    run_with "$INFO" ibad --kind-rules "$TMP/bad.txt" "$EB"
    check "$1: exit $3" rc_is ibad "$3"
    check "$1: the message names $4" grep -qF "$4" "$TMP/ibad.err"
    check "$1: nothing on stdout" [ ! -s "$TMP/ibad.out" ]
}
bad_file "an unknown kind" '*x* mlp\n*y* bogus\n' 2 "bad.txt:2: unknown kind 'bogus'"
bad_file "a kind in capitals" '*x* MLP\n' 2 "bad.txt:1: unknown kind 'MLP'"
bad_file "three fields" '\n# c\n*a b* mlp\n' 2 "bad.txt:3: want PATTERN KIND"
bad_file "a pattern alone" '*x*\n' 2 "bad.txt:1: want PATTERN KIND, not '*x*'"
bad_file "a pattern and a comment" '*x* # mlp\n' 2 "bad.txt:1: want PATTERN KIND"
bad_file "a NUL byte" '*x* mlp\n*y\000* mlp\n' 2 "bad.txt:2: the line holds a NUL byte"
run_with "$INFO" imissing --kind-rules "$TMP/no-such-rules.txt" "$EB"
check "a missing rules file: exit 1" rc_is imissing 1
check "... with one line naming it" sh -c \
    "[ \$(wc -l <'$TMP/imissing.err') -eq 1 ] &&
     grep -qF 'no-such-rules.txt: cannot read the kind rules' '$TMP/imissing.err'"
run_with "$INFO" idir --kind-rules "$TMP" "$EB"
check "a directory as the rules file: exit 1 with one line" sh -c \
    "[ \$(cat '$TMP/idir.rc') -eq 1 ] && [ \$(wc -l <'$TMP/idir.err') -eq 1 ]"
run_with "$INFO" inoval "$EB" --kind-rules
check "sr-info --kind-rules without a file: exit 2" rc_is inoval 2
run_with "$PROBE" pbad --no-progress --kind-rules "$TMP/bad.txt" "$EB"
check "sr-probe on a bad rules file: exit 2 naming file:line" sh -c \
    "[ \$(cat '$TMP/pbad.rc') -eq 2 ] && grep -qF 'bad.txt:2:' '$TMP/pbad.err'"
run_with "$AMP" abad share --kind-rules "$TMP/no-such-rules.txt" "$EB" "$ET"
check "sr-amp on a missing rules file: exit 1" rc_is abad 1
run_with "$PROBE" pnoval --no-progress "$EB" --kind-rules
check "sr-probe --kind-rules without a file: exit 2" rc_is pnoval 2

# ---- sr-probe: the rules reach the report; encoder and decoder layers ----
run_with "$PROBE" prules --no-progress --json - --kind-rules "$TMP/rules.txt" "$EB" "$ET"
check "sr-probe --kind-rules exits 0" rc_is prules 0
check "... its groups: 10 attention tensors, no mlp, one norm" py_check "$TMP/prules.out" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))["groups"]
assert (g["attention"]["tensors"], g["mlp"]["tensors"], g["norm"]["tensors"]) == (10, 0, 1), g
EOF
run_with "$PROBE" ponly --no-progress --json - --kinds mlp --kind-rules "$TMP/only.txt" "$EB" "$ET"
check "--kinds mlp with no-defaults rules reports the five q_proj" py_check "$TMP/ponly.out" <<'EOF'
import json, sys
names = sorted(t["name"] for t in json.load(open(sys.argv[1]))["tensors"])
assert len(names) == 5 and all("q_proj" in n for n in names), names
EOF

run_with "$PROBE" ped --no-progress --json - --probes moments,correlation "$EB" "$ET"
check "sr-probe on the encoder-decoder pair exits 0" rc_is ped 0
check "five layers (decoder 0-1, encoder 0-2), each with its stack and 2 tensors" \
    py_check "$TMP/ped.out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
got = [(l["stack"], l["layer"], l["tensors"], l["count"]) for l in d["layers"]]
dec, enc = "model.decoder.layers", "model.encoder.layers"
want = [(dec, 0, 2, 192), (dec, 1, 2, 192), (enc, 0, 2, 192), (enc, 1, 2, 192), (enc, 2, 2, 192)]
assert got == want, got
stacks = {t["name"]: t["stack"] for t in d["tensors"]}
assert stacks["model.encoder.conv1.weight"] is None, stacks
assert stacks["model.decoder.layers.1.fc1.weight"] == dec, stacks
EOF
check "correlation within each stack only, r as numpy's" py_check "$TMP/ped.out" "$EB" "$ET" <<'EOF'
import json, struct, sys
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             dtype="<f4").astype(np.float64) for k, v in hdr.items()}
b, t = load(sys.argv[2]), load(sys.argv[3])
R = {k: t[k] - b[k] for k in b}  # float64 differences of float32 values
def r(x, y):
    return float(np.corrcoef(R[x], R[y])[0, 1])
d = json.load(open(sys.argv[1]))
dec, enc = "model.decoder.layers", "model.encoder.layers"
def role_r(stack, la, lb):
    return [r("%s.%d.%s" % (stack, la, s), "%s.%d.%s" % (stack, lb, s))
            for s in ("self_attn.q_proj.weight", "fc1.weight")]
want = [(dec, 0, 1, False, np.mean(role_r(dec, 0, 1))),
        (dec, 0, 1, True, np.mean(role_r(dec, 0, 1))),
        (enc, 0, 1, False, np.mean(role_r(enc, 0, 1))),
        (enc, 1, 2, False, np.mean(role_r(enc, 1, 2))),
        (enc, 0, 2, True, np.mean(role_r(enc, 0, 2)))]
lc = d["layer_correlation"]
assert len(lc) == 5, lc
for e, (stack, la, lb, fl, rr) in zip(lc, want):
    assert (e["stack"], e["layer_a"], e["layer_b"], e["first_last"], e["pairs"]) == \
        (stack, la, lb, fl, 2), e
    assert abs(e["r"] - rr) < 1e-6, (e, rr)
pairs = d["correlation_pairs"]
assert len(pairs) == 6, pairs
for p in pairs:
    assert p["role"].startswith(p["stack"] + ".{L}."), p
    name = lambda l: p["role"].replace("{L}", str(l))
    assert abs(p["r"] - r(name(p["layer_a"]), name(p["layer_b"]))) < 1e-6, p
EOF
run_with "$PROBE" pedt --no-progress --probes moments,entropy,correlation "$EB" "$ET"
check "the tables name the stack of each layer" sh -c "
    grep -q '^  model.encoder.layers  *2  *2  *192 ' '$TMP/pedt.out' &&
    grep -q '^  model.decoder.layers  *0-1  *first vs last  *2 ' '$TMP/pedt.out'"

# a single stack (Llama naming) prints no stack column
"$PY" - "$TMP/llama-b.safetensors" "$TMP/llama-t.safetensors" <<'EOF'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(3)
base = [rng.standard_normal((8, 8)).astype("<f4") for _ in range(3)]
trained = [b + np.float32(0.1) * rng.standard_normal((8, 8)).astype("<f4") for b in base]
for path, arrs in ((sys.argv[1], base), (sys.argv[2], trained)):
    hdr, off, blobs = {}, 0, []
    for l, a in enumerate(arrs):
        hdr["model.layers.%d.mlp.up_proj.weight" % l] = {
            "dtype": "F32", "shape": [8, 8], "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
run_with "$PROBE" pllama --no-progress --probes moments,entropy,correlation \
    "$TMP/llama-b.safetensors" "$TMP/llama-t.safetensors"
check "one stack: the layer tables have no stack column" sh -c "
    [ \$(cat '$TMP/pllama.rc') -eq 0 ] && ! grep -q 'stack' '$TMP/pllama.out' &&
    grep -q '^  layer  tensors' '$TMP/pllama.out' && grep -q '^  layers  ' '$TMP/pllama.out'"

# ---- sr-amp: the rules decide the kinds it selects ----
printf '*q_proj* norm\n' >"$TMP/qnorm.txt"
run_with "$AMP" aq share --kinds norm --kind-rules "$TMP/qnorm.txt" --json - "$EB" "$ET"
check "sr-amp --kinds norm with q_proj made norms exits 0" rc_is aq 0
check "... selects exactly the five q_proj, their energy |R|^2 as numpy's" \
    py_check "$TMP/aq.out" "$EB" "$ET" <<'EOF'
import json, struct, sys
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             dtype="<f4").astype(np.float64) for k, v in hdr.items()}
b, t = load(sys.argv[2]), load(sys.argv[3])
ts = json.load(open(sys.argv[1]))["tensors"]
assert sorted(x["name"] for x in ts) == sorted(k for k in b if "q_proj" in k), ts
for x in ts:
    e = float(((t[x["name"]] - b[x["name"]]) ** 2).sum())
    assert abs(x["energy"] - e) <= 1e-6 * e, (x["name"], x["energy"], e)
EOF
run_with "$AMP" anone share --kinds norm "$EB" "$ET"
check "without the rules there is no norm matrix to select (exit 1)" rc_is anone 1

finish
