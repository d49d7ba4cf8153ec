#!/bin/sh
# Tests of sr-demo: a --quick run end to end, its JSON and chart, the cache
# on a second run, and the error cases. The validation losses of the base
# and the full fine-tune are recomputed from the cached checkpoints by an
# independent numpy forward pass over an independently computed corpus
# split. Run from the repository root after `make bin/sr-demo`.
set -u

SUITE=demo
. tests/tools-lib.sh
SR=${SR_DEMO:-bin/sr-demo}
HERE=$(pwd)

# run NAME ARGS...: sr-demo in $TMP, keeping stdout, stderr and the status.
run() {
    name=$1
    shift
    (cd "$TMP" && "$HERE/$SR" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err")
    echo $? >"$TMP/$name.rc"
}

err_has() { grep -q -- "$2" "$TMP/$1.err"; }
one_line() { [ "$(wc -l <"$TMP/$1.err")" -eq 1 ]; }

# jpy FILE EXPR: EXPR, a Python expression over the JSON document d, is true.
jpy() {
    "$PY" -c '
import json, math, sys
d = json.load(open(sys.argv[1]))
t2 = d["table2"]
def cell(rule, f, s):
    return [c for c in t2["cells"] if c["rule"] == rule and c["fraction"] == f and c["seed_index"] == s]
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)
' "$1" "$2" 2>"$TMP/jpy.err" || { sed 's/^/     /' "$TMP/jpy.err"; return 1; }
}

if [ ! -x "$SR" ]; then
    echo "FAIL $SR is missing: run make bin/sr-demo first"
    echo "demo: 0 passed, 1 failed"
    exit 1
fi

# ---- a quick run ----
start=$(date +%s)
run quick --quick --out q --no-progress
secs=$(($(date +%s) - start))
J=$TMP/q/sr-demo.json
check "--quick exits 0" rc_is quick 0
check "--quick within 60 s (took $secs s)" [ "$secs" -lt 60 ]
check "stdout has both tables" sh -c "grep -q '^Table 1' '$TMP/quick.out' && grep -q '^Table 2' '$TMP/quick.out'"
check "stderr is quiet" [ ! -s "$TMP/quick.err" ]
check "JSON written" [ -s "$J" ]
check "every cell present once, with a finite loss" jpy "$J" '
all(len(cell("all", 1.0, s)) == 1 for s in range(d["settings"]["seeds"])) and
all(len(cell(r, f, s)) == 1 and math.isfinite(cell(r, f, s)[0]["val_loss"])
    for r in ("magnitude", "random", "gradient", "warmup", "dynamic")
    for f in (0.5, 0.25, 0.1, 0.05) for s in range(d["settings"]["seeds"])) and
len(t2["cells"]) == 21 * d["settings"]["seeds"] and len(t2["rows"]) == 21'
check "trainable counts follow the fractions (k = floor(f n + 1/2))" jpy "$J" '
all(c["trainable"] == math.floor(c["fraction"] * t2["scores"] + 0.5) for c in t2["cells"])'
check "full fine-tune lowers the task validation loss" jpy "$J" '
d["stages"]["finetune"]["val_loss_task"] < d["stages"]["pretrain"]["val_loss_task"] - 0.005'
check "amplitude-only at 100 % lowers it too, on every seed" jpy "$J" '
all(cell("all", 1.0, s)[0]["val_loss"] < d["stages"]["pretrain"]["val_loss_task"] - 0.002
    for s in range(d["settings"]["seeds"]))'
check "improvements and efficiencies follow from the losses" jpy "$J" '
all(abs(c["improvement"] - (t2["base_task_loss"] - c["val_loss"])) < 1e-6 for c in t2["cells"]) and
all(abs(r["efficiency"]["mean"] - sum((t2["base_task_loss"] - cell(r["rule"], r["fraction"], s)[0]["val_loss"]) /
        (t2["base_task_loss"] - cell("all", 1.0, s)[0]["val_loss"]) for s in range(d["settings"]["seeds"]))
        / d["settings"]["seeds"]) < 1e-6 for r in t2["rows"] if r["rule"] != "all")'
check "table 1 figures are finite where the study has them" jpy "$J" '
all(x is not None and math.isfinite(x) for x in (
    d["table1"]["this_model"]["kurtosis"]["attention"], d["table1"]["this_model"]["kurtosis"]["mlp"],
    d["table1"]["this_model"]["entropy_bits"]["all"], d["table1"]["this_model"]["participation_ratio"]["mlp"],
    d["table1"]["this_model"]["layer_correlation"]["adjacent_mean"], d["table1"]["this_model"]["lowfreq_ratio"]))'

# The losses recomputed independently: the split and the windows from the
# documented rules, the forward pass in float64 numpy on the cached files.
check "base and fine-tune losses match an independent numpy forward pass" "$PY" - "$J" "$HERE" <<'EOF'
import json, struct, sys
import numpy as np
d = json.load(open(sys.argv[1]))
s = d["settings"]; m = s["model"]; T, dim, H, L = m["context"], m["dim"], m["heads"], m["layers"]
text = open(s["corpus"], "rb").read()
vocab = sorted(set(text)); idx = {b: i for i, b in enumerate(vocab)}
ids = np.array([idx[b] for b in text], dtype=np.int64)
g = text.find(b"\nGlossary\n"); a = text.find(b"\nAppendix", g + 1)
assert g >= 0 and a >= 0, "bundled corpus markers"
lo, hi = g + 1, a + 1
task = np.concatenate([ids[:lo], ids[hi:]])
def val_part(x):
    n = len(x); block = 2048 if n >= 20 * 2048 else max(n // 20, 1)
    keep = (np.arange(n) // block) % 10 == 9
    return x[keep]
val = val_part(task)
assert len(val) == d["corpus"]["task_val_tokens"], (len(val), d["corpus"]["task_val_tokens"])
def load(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s0, e0 = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s0:8 + n + e0], dtype=np.float32).reshape(v["shape"]).astype(np.float64)
    return out
def rms(x, w): return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w
def loss(p, x, y):
    B = x.shape[0]
    h = p["model.embed_tokens.weight"][x] + p["model.embed_positions.weight"][:T]
    mask = np.triu(np.ones((T, T), bool), 1)
    for l in range(L):
        q = "model.layers.%d." % l
        z = rms(h, p[q + "input_layernorm.weight"])
        Q, K, V = (z @ p[q + "self_attn.%s_proj.weight" % c].T for c in "qkv")
        sp = lambda t: t.reshape(B, T, H, dim // H).transpose(0, 2, 1, 3)
        S = sp(Q) @ sp(K).transpose(0, 1, 3, 2) / np.sqrt(dim // H)
        S[:, :, mask] = -np.inf
        P = np.exp(S - S.max(-1, keepdims=True)); P /= P.sum(-1, keepdims=True)
        A = (P @ sp(V)).transpose(0, 2, 1, 3).reshape(B, T, dim)
        h = h + A @ p[q + "self_attn.o_proj.weight"].T
        z = rms(h, p[q + "post_attention_layernorm.weight"]) @ p[q + "mlp.up_proj.weight"].T
        z = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
        h = h + z @ p[q + "mlp.down_proj.weight"].T
    z = rms(h, p["model.norm.weight"]) @ p["lm_head.weight"].T
    z = z - z.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(lp, y[..., None], -1).mean()
room = len(val) - T
nw = min(s["eval_windows"], room // T + 1)
at = [i * (room - 1) // (nw - 1) for i in range(nw)]
x = np.stack([val[i:i + T] for i in at]); y = np.stack([val[i + 1:i + 1 + T] for i in at])
for stage in ("pretrain", "finetune"):
    st = d["stages"][stage]
    mine = loss(load(st["checkpoint"] if st["checkpoint"].startswith("/") else
                     sys.argv[1].rsplit("/", 2)[0] + "/" + st["checkpoint"]), x, y)
    assert abs(mine - st["val_loss_task"]) < 1e-4, (stage, mine, st["val_loss_task"])
EOF

check "chart is well-formed SVG with a line per rule, axes labels and a legend" "$PY" - "$TMP/q/efficiency.svg" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg"
lines = root.findall(".//" + ns + "polyline")
assert len(lines) == 6, len(lines)  # five rules and the study's line
for l in lines:
    assert len(l.get("points").split()) == 5
texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
for word in ("magnitude", "random", "gradient", "warmup", "dynamic", "fraction of scores trained", "efficiency", "5 %", "100 %"):
    assert word in texts, word
EOF

check "the kinds of a cached checkpoint come out right (sr-info)" sh -c "
    out=\$(bin/sr-info '$TMP'/q/cache/base-*.safetensors) &&
    echo \"\$out\" | grep -q 'self_attn.q_proj.weight .* attention ' &&
    echo \"\$out\" | grep -q 'mlp.down_proj.weight .* mlp ' &&
    echo \"\$out\" | grep -q 'model.embed_tokens.weight .* embedding '"

# ---- the same seed again, on one thread: cache reused, same tables ----
cp "$J" "$TMP/first.json"
run again --quick --out q --no-progress --threads 1
check "second run exits 0" rc_is again 0
check "second run reuses both checkpoints" sh -c "[ \$(grep -c 'reused from the cache' '$TMP/again.out') -eq 2 ]"
check "JSON says reused" jpy "$J" 'd["stages"]["pretrain"]["reused"] and d["stages"]["finetune"]["reused"]'
check "tables identical to the first run (another thread count)" "$PY" -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
sys.exit(0 if a["table1"] == b["table1"] and a["table2"] == b["table2"] else 1)' "$TMP/first.json" "$J"
check "printed tables identical too" sh -c "
    sed -n '/^Table 1/,/^wrote/p' '$TMP/quick.out' | grep -v '^wrote' >'$TMP/t.a' &&
    sed -n '/^Table 1/,/^wrote/p' '$TMP/again.out' | grep -v '^wrote' >'$TMP/t.b' && cmp -s '$TMP/t.a' '$TMP/t.b'"

# ---- errors: one line on stderr, exit 1, no output file ----
: >"$TMP/empty.txt"
run empty --quick --out e1 --corpus empty.txt
check "empty corpus: exit 1" rc_is empty 1
check "empty corpus: says so in one line" sh -c "grep -q 'empty.txt is empty' '$TMP/empty.err' && [ \$(wc -l <'$TMP/empty.err') -eq 1 ]"
check "empty corpus: no JSON" [ ! -e "$TMP/e1/sr-demo.json" ]
run missing --quick --out e2 --corpus no-such-file.txt
check "missing corpus: exit 1" rc_is missing 1
check "missing corpus: names the file and the reason" err_has missing "cannot read corpus no-such-file.txt: No such file"
check "missing corpus: one line" one_line missing
head -c 3000 "$HERE/LICENSE" >"$TMP/short.txt" 2>/dev/null || printf '%3000s' x >"$TMP/short.txt"
run short --quick --out e3 --corpus short.txt --context 512
check "corpus too short for the context: exit 1" rc_is short 1
check "corpus too short: says so" err_has short "too short for a context of 512"
run baddim --quick --dim abc
check "bad number: exit 2 with a message" sh -c "[ \$(cat '$TMP/baddim.rc') -eq 2 ] && grep -q -- '--dim wants an integer' '$TMP/baddim.err'"
run badheads --quick --dim 64 --heads 3
check "heads not dividing the width: exit 2" sh -c "[ \$(cat '$TMP/badheads.rc') -eq 2 ] && grep -q 'does not divide' '$TMP/badheads.err'"
run badopt --quick --frobnicate
check "unknown option: exit 2" sh -c "[ \$(cat '$TMP/badopt.rc') -eq 2 ] && grep -q 'unknown option --frobnicate' '$TMP/badopt.err'"
run help --help
check "--help: exit 0 with usage" sh -c "[ \$(cat '$TMP/help.rc') -eq 0 ] && grep -q '^usage: sr-demo' '$TMP/help.out'"

finish
