"""Tests of the residual report through bin/sr-probe --json: the document
validates against docs/report.schema.json, and its figures agree with numpy
and scipy computed from this suite's own safetensors reader (test_model.py),
on the fixture pair and on a generated Llama-style pair.

Run from the repository root: make check-python (needs make all for
bin/sr-probe), i.e.
    /usr/bin/python3 -m unittest discover -s tests/python -t . -v
"""

import json
import math
import os
import subprocess
import unittest

import numpy as np

from .test_model import BASE, ROOT, TRAINED, StFile, TmpDirCase, sr, st_write

try:
    import scipy.stats
except ImportError:  # pragma: no cover - the Debian packages are in .ci/deps.sh
    scipy = None
try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

PROBE = os.path.join(ROOT, "bin", "sr-probe")
SCHEMA = os.path.join(ROOT, "docs", "report.schema.json")


def sr_probe(*args):
    """Run sr-probe --json - with args; the parsed document."""
    env = dict(os.environ, SRESID_NUM_THREADS=os.environ.get("SRESID_NUM_THREADS", "2"))
    p = subprocess.run([PROBE, "--json", "-", *args], capture_output=True, env=env, timeout=120)
    if p.returncode != 0:
        raise AssertionError("sr-probe %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                            p.stderr.decode(errors="replace")))
    return json.loads(p.stdout)


def validate(case, doc):
    if jsonschema is None:
        case.fail("python3-jsonschema is not installed (make deps)")
    with open(SCHEMA) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)


def entropy_bits(counts):
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def participation_ratio(a):
    s2 = np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False) ** 2
    return float(s2.sum() ** 2 / (s2 ** 2).sum())


def assert_rel(case, got, want, rel, what, floor=0.0):
    case.assertIsNotNone(got, what)
    case.assertLessEqual(abs(got - want), rel * max(abs(want), floor), "%s: %r vs %r" % (what, got, want))


def need_tools(case):
    if not os.access(PROBE, os.X_OK):
        case.fail("bin/sr-probe is missing: run make all")
    if scipy is None:
        case.fail("scipy is not installed (make deps)")


class TestFixtureReport(unittest.TestCase):
    """The real base / fine-tune pair, TF.js kernels viewed out-last."""

    @classmethod
    def setUpClass(cls):
        cls.doc = None
        if not os.access(PROBE, os.X_OK):
            return
        cls.doc = sr_probe("--skip-mismatched", "--layout", "out-last", BASE, TRAINED)
        base, trained = StFile(BASE), StFile(TRAINED)
        cls.resid = {}
        for name, (_, shape, _, arr) in base.tensors.items():
            other = trained.tensors.get(name)
            if other is not None and other[1] == shape:
                # float32 minus float32, as the library computes it
                cls.resid[name] = (other[3].astype(np.float32) - arr.astype(np.float32))

    def setUp(self):
        need_tools(self)

    def test_schema(self):
        validate(self, self.doc)
        self.assertEqual(self.doc["source"], "residual")
        self.assertEqual(len(self.doc["tensors"]), 47)
        self.assertEqual(sorted(s["name"] for s in self.doc["skipped"]), ["fc/bias", "fc/weights"])

    def test_moments_per_tensor(self):
        for t in self.doc["tensors"]:
            x = self.resid[t["name"]].ravel().astype(np.float64)
            self.assertEqual(t["count"], x.size)
            self.assertEqual(t["shape"], list(self.resid[t["name"]].shape))
            assert_rel(self, t["mean"], x.mean(), 1e-6, t["name"] + " mean", floor=np.abs(x).max())
            assert_rel(self, t["variance"], x.var(), 1e-6, t["name"] + " variance")
            assert_rel(self, t["skewness"], scipy.stats.skew(x), 1e-6, t["name"] + " skewness", 1)
            assert_rel(self, t["kurtosis"], scipy.stats.kurtosis(x), 1e-6, t["name"] + " kurtosis", 1)

    def test_pooled_kurtosis(self):
        x = np.concatenate([r.ravel() for r in self.resid.values()]).astype(np.float64)
        g = self.doc["groups"]["all"]
        self.assertEqual(g["count"], x.size)
        self.assertEqual(g["tensors"], 47)
        assert_rel(self, g["kurtosis"], scipy.stats.kurtosis(x), 1e-6, "all kurtosis", 1)
        assert_rel(self, g["skewness"], scipy.stats.skew(x), 1e-6, "all skewness", 1)
        self.assertEqual(self.doc["groups"]["other"]["kurtosis"], g["kurtosis"])
        for kind in ("attention", "mlp", "embedding", "norm"):
            self.assertEqual(self.doc["groups"][kind]["tensors"], 0)
            self.assertIsNone(self.doc["groups"][kind]["kurtosis"])

    def test_entropy_bin_counts(self):
        bins = self.doc["options"]["bins"]
        for t in self.doc["tensors"]:
            x = self.resid[t["name"]].ravel().astype(np.float64)
            counts, _ = np.histogram(x, bins=bins, range=(x.min(), x.max()))
            self.assertAlmostEqual(t["entropy_bits"], entropy_bits(counts), delta=1e-12,
                                   msg=t["name"])
        x = np.concatenate([r.ravel() for r in self.resid.values()]).astype(np.float64)
        counts, _ = np.histogram(x, bins=bins, range=(x.min(), x.max()))
        self.assertAlmostEqual(self.doc["groups"]["all"]["entropy_bits"], entropy_bits(counts),
                               delta=1e-12)

    def test_participation_ratio(self):
        matrices = 0
        for t in self.doc["tensors"]:
            r = self.resid[t["name"]]
            a = r.reshape(-1, r.shape[-1]) if r.ndim >= 2 else None  # out-last view
            if a is None or min(a.shape) < 2:  # no matrix structure to probe
                self.assertIsNone(t["pr"])
                self.assertFalse(t["is_matrix"])
                continue
            matrices += 1
            self.assertEqual([t["rows"], t["cols"]], list(a.shape))
            pr = participation_ratio(a)
            assert_rel(self, t["pr"], pr, 1e-4, t["name"] + " PR")
            assert_rel(self, t["pr_normalized"], pr / min(a.shape), 1e-4, t["name"] + " PR/min")
        self.assertEqual(self.doc["groups"]["all"]["matrices"], matrices)

    def test_sparsity(self):
        for t in self.doc["tensors"]:
            x = np.abs(self.resid[t["name"]].ravel().astype(np.float64))
            n = x.size
            hoyer = (math.sqrt(n) - x.sum() / math.sqrt((x * x).sum())) / (math.sqrt(n) - 1)
            assert_rel(self, t["sparsity"]["hoyer"], hoyer, 1e-9, t["name"] + " hoyer", 1)
            e = np.sort(x * x)[::-1]
            top = e[:math.ceil(0.1 * n)].sum() / e.sum()
            assert_rel(self, t["sparsity"]["energy_in_top"]["0.1"], top, 1e-9, t["name"], 1)

    def test_out_first_view(self):
        doc = sr_probe("--skip-mismatched", "--probes", "moments,pr", BASE, TRAINED)
        validate(self, doc)
        self.assertEqual(doc["options"]["layout"], "out-first")
        t = [t for t in doc["tensors"] if t["name"] == "dense0/conv0/filters"][0]
        r = self.resid["dense0/conv0/filters"]
        a = r.reshape(r.shape[0], -1)
        self.assertEqual([t["rows"], t["cols"]], list(a.shape))
        assert_rel(self, t["pr"], participation_ratio(a), 1e-4, "out-first PR")
        self.assertIsNone(t["entropy_bits"])
        self.assertIsNone(t["kmeans"])
        self.assertIsNone(t["sparsity"])


ROLES = ("input_layernorm", "self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj",
         "mlp.down_proj")


def llama_pair(seed, layers=3, d=24):
    """(name, base, trained) of a small Llama-style model: heavy-tailed
    attention residuals, Gaussian MLP ones, q_proj correlated across layers."""
    rng = np.random.default_rng(seed)
    out = []

    def add(name, shape, resid):
        b = rng.standard_normal(shape).astype(np.float32)
        out.append((name, b, (b + resid.astype(np.float32)).astype(np.float32)))

    add("model.embed_tokens.weight", (40, d), 0.05 * rng.standard_normal((40, d)))
    prev_q = None
    for layer in range(layers):
        for role in ROLES:
            shape = {"input_layernorm": (d,), "mlp.up_proj": (2 * d, d),
                     "mlp.down_proj": (d, 2 * d)}.get(role, (d, d))
            if role.startswith("self_attn"):
                r = rng.standard_t(3, shape) * 0.01
                if role.endswith("q_proj"):
                    if prev_q is not None:
                        r = r + 0.7 * prev_q
                    prev_q = r
            else:
                r = 0.1 * rng.standard_normal(shape)
            add("model.layers.%d.%s.weight" % (layer, role), shape, r)
    add("model.norm.weight", (d,), 0.01 * rng.standard_normal(d))
    add("lm_head.weight", (40, d), 0.02 * rng.standard_normal((40, d)))
    return out


class TestGeneratedPair(TmpDirCase):
    def setUp(self):
        super().setUp()
        need_tools(self)
        self.tensors = llama_pair(5)
        self.base = self.path("base.safetensors")
        self.trained = self.path("trained.safetensors")
        st_write(self.base, [(n, "F32", b) for n, b, _ in self.tensors])
        st_write(self.trained, [(n, "F32", t) for n, _, t in self.tensors])
        self.resid = {n: (t - b) for n, b, t in self.tensors}

    def kind_of(self, name):
        if "norm" in name:
            return "norm"
        if "embed" in name:
            return "embedding"
        if "attn" in name:
            return "attention"
        if "mlp" in name:
            return "mlp"
        return "other"

    def concat(self, names):
        return np.concatenate([self.resid[n].ravel() for n in names]).astype(np.float64)

    def test_binding_report(self):
        """sparseresid.Report over the same pair: the struct accessors agree
        with the JSON, the JSON with sr-probe's, and the figures with scipy."""
        from .test_model import sr
        with sr.Model.open(self.base) as b, sr.Model.open(self.trained) as t, \
                sr.Residual(b, t) as res, \
                sr.Report(res, bins=64, ks=[2, 3], seed=7, threads=1) as rep:
            doc = rep.json()
            validate(self, doc)
            cli = sr_probe("--bins", "64", "--k", "2,3", "--seed", "7", "--threads", "1",
                           self.base, self.trained)
            self.assertEqual(len(rep), len(doc["tensors"]))
            for i, jt in enumerate(doc["tensors"]):
                st = rep.tensor(i)
                self.assertEqual(st["name"], jt["name"])
                self.assertEqual([st["rows"], st["cols"]], [jt["rows"], jt["cols"]])
                for f in ("count", "kurtosis", "entropy_bits", "pr", "lowfreq_ratio"):
                    if jt[f] is None:
                        self.assertTrue(math.isnan(st[f]), f)
                    else:
                        self.assertEqual(st[f], jt[f], f)
                # sr-probe picks BLIS's kernel set itself (BLIS_ARCH_TYPE), so
                # the BLIS-based figures may differ in the last bits
                ct = [c for c in cli["tensors"] if c["name"] == jt["name"]][0]
                for f in ("kurtosis", "entropy_random_bits"):
                    self.assertEqual(ct[f], jt[f], f)
                for f in ("pr", "lowfreq_ratio"):
                    if jt[f] is None:
                        self.assertIsNone(ct[f], f)
                    else:
                        assert_rel(self, ct[f], jt[f], 1e-5, f, 1e-12)
                self.assertEqual(ct["kmeans"] is None, jt["kmeans"] is None)
                for kc, kj in zip(ct["kmeans"] or [], jt["kmeans"] or []):
                    assert_rel(self, kc["explained"], kj["explained"], 1e-4, "kmeans", 1e-9)
                if jt["is_matrix"]:
                    self.assertEqual([k["k"] for k in rep.kmeans(i)], [2, 3])
            g = rep.group("all")
            x = self.concat([n for n, _, _ in self.tensors])
            self.assertEqual(g["count"], x.size)
            assert_rel(self, g["kurtosis"], scipy.stats.kurtosis(x), 1e-6, "all kurtosis", 1)
            self.assertEqual(g["mean_pr"], doc["groups"]["all"]["mean_pr"])
            self.assertEqual([(l["stack"], l["layer"]) for l in rep.layers()],
                             [("model.layers", 0), ("model.layers", 1), ("model.layers", 2)])
            lc = rep.layer_correlation()
            self.assertEqual([(e["layer_a"], e["layer_b"]) for e in lc], [(0, 1), (1, 2), (0, 2)])
            self.assertEqual({e["stack"] for e in lc}, {"model.layers"})
            for e, je in zip(lc, doc["layer_correlation"]):
                self.assertAlmostEqual(e["r"], je["r"], delta=1e-15)
            out = self.path("report.json")
            rep.save_json(out)
            with open(out) as f:
                self.assertEqual(json.load(f)["groups"], doc["groups"])

    def test_groups_layers_correlation(self):
        doc = sr_probe("--bins", "64", "--k", "2,3", "--seed", "7", "--null-draws", "3",
                       self.base, self.trained)
        validate(self, doc)
        o = doc["options"]
        self.assertEqual((o["bins"], o["ks"], o["seed"], o["null_draws"]), (64, [2, 3], 7, 3))
        names = [n for n, _, _ in self.tensors]
        for kind in ("attention", "mlp", "norm", "embedding", "other", "all"):
            sel = [n for n in names if kind == "all" or self.kind_of(n) == kind]
            x = self.concat(sel)
            g = doc["groups"][kind]
            self.assertEqual((g["tensors"], g["count"]), (len(sel), x.size), kind)
            assert_rel(self, g["kurtosis"], scipy.stats.kurtosis(x), 1e-6, kind + " kurtosis", 1)
            counts, _ = np.histogram(x, bins=64, range=(x.min(), x.max()))
            self.assertAlmostEqual(g["entropy_bits"], entropy_bits(counts), delta=1e-12, msg=kind)
        # Student-t attention residuals are heavy-tailed, Gaussian MLP ones not
        self.assertGreater(doc["groups"]["attention"]["kurtosis"], 3)
        self.assertLess(abs(doc["groups"]["mlp"]["kurtosis"]), 0.5)

        self.assertEqual([l["layer"] for l in doc["layers"]], [0, 1, 2])
        for l in doc["layers"]:
            x = self.concat([n for n in names if ".layers.%d." % l["layer"] in n])
            assert_rel(self, l["kurtosis"], scipy.stats.kurtosis(x), 1e-6, "layer kurtosis", 1)

        def r_of(role, a, b):
            x = self.resid["model.layers.%d.%s.weight" % (a, role)].ravel().astype(np.float64)
            y = self.resid["model.layers.%d.%s.weight" % (b, role)].ravel().astype(np.float64)
            return float(np.corrcoef(x, y)[0, 1])

        pairs = doc["correlation_pairs"]
        self.assertEqual(len(pairs), len(ROLES) * 2)
        for p in pairs:
            role = p["role"].replace("model.layers.{L}.", "").replace(".weight", "")
            self.assertAlmostEqual(p["r"], r_of(role, p["layer_a"], p["layer_b"]), delta=1e-9)
        lc = doc["layer_correlation"]
        self.assertEqual([(e["layer_a"], e["layer_b"], e["first_last"]) for e in lc],
                         [(0, 1, False), (1, 2, False), (0, 2, True)])
        for e in lc:
            want = np.mean([r_of(role, e["layer_a"], e["layer_b"]) for role in ROLES])
            self.assertEqual(e["pairs"], len(ROLES))
            self.assertAlmostEqual(e["r"], want, delta=1e-9)
        q01 = [p for p in pairs if "q_proj" in p["role"] and p["layer_a"] == 0][0]
        self.assertGreater(q01["r"], 0.3)

        for t in doc["tensors"]:
            if t["is_matrix"]:
                self.assertEqual([k["k"] for k in t["kmeans"]], [2, 3])
                self.assertEqual(t["null"]["draws"], 3)
                self.assertIsNotNone(t["null"]["pr"]["mean"])
            else:
                self.assertIsNone(t["null"])
                self.assertIsNone(t["pr"])

    def test_filters_model_and_big_seed(self):
        doc = sr_probe("--kinds", "attention,mlp", "--seed", str(2 ** 64 - 1), "--probes",
                       "moments,correlation", self.base, self.trained)
        validate(self, doc)
        self.assertEqual(doc["options"]["seed"], str(2 ** 64 - 1))
        self.assertEqual(doc["options"]["kinds"], ["attention", "mlp"])
        self.assertEqual(doc["groups"]["norm"]["tensors"], 0)
        self.assertEqual(doc["groups"]["all"]["tensors"], 12)
        self.assertEqual(doc["layer_correlation"][-1]["pairs"], 4)
        model = sr_probe("--probes", "moments,entropy,sparsity", self.trained)
        validate(self, model)
        self.assertEqual(model["source"], "model")
        t = [t for t in model["tensors"] if t["name"] == "lm_head.weight"][0]
        x = [a for n, _, a in self.tensors if n == "lm_head.weight"][0].ravel().astype(np.float64)
        assert_rel(self, t["kurtosis"], scipy.stats.kurtosis(x), 1e-6, "model kurtosis", 1)


def encoder_decoder_pair(seed, d=12):
    """(name, base, trained) of a small Whisper-style model: a convolutional
    stem, three encoder layers and two decoder layers whose residuals share
    their roles' names but nothing else (the encoder's q_proj residuals are
    correlated across layers, the decoder's are not)."""
    rng = np.random.default_rng(seed)
    out = []

    def add(name, shape, resid):
        b = rng.standard_normal(shape).astype(np.float32)
        out.append((name, b, (b + resid.astype(np.float32)).astype(np.float32)))

    add("model.encoder.conv1.weight", (d, 3 * 4), 0.05 * rng.standard_normal((d, 12)))
    for stack, layers, scale in (("model.encoder.layers", 3, 0.1), ("model.decoder.layers", 2, 1)):
        prev_q = None
        for layer in range(layers):
            r = scale * rng.standard_t(4, (d, d))
            if prev_q is not None and stack.startswith("model.encoder"):
                r = r + 0.8 * prev_q
            prev_q = r
            add("%s.%d.self_attn.q_proj.weight" % (stack, layer), (d, d), r)
            add("%s.%d.fc1.weight" % (stack, layer), (2 * d, d),
                scale * rng.standard_normal((2 * d, d)))
            add("%s.%d.final_layer_norm.weight" % (stack, layer), (d,),
                0.01 * rng.standard_normal(d))
    return out


class TestEncoderDecoderPair(TmpDirCase):
    """The encoder's and the decoder's layer i are two layers (stack, i):
    figures per layer and correlations against numpy and scipy."""

    def setUp(self):
        super().setUp()
        need_tools(self)
        self.tensors = encoder_decoder_pair(11)
        self.base = self.path("base.safetensors")
        self.trained = self.path("trained.safetensors")
        st_write(self.base, [(n, "F32", b) for n, b, _ in self.tensors])
        st_write(self.trained, [(n, "F32", t) for n, _, t in self.tensors])
        self.resid = {n: (t - b).ravel().astype(np.float64) for n, b, t in self.tensors}

    def test_layers_per_stack(self):
        doc = sr_probe("--bins", "32", "--probes", "moments,entropy,correlation",
                       self.base, self.trained)
        validate(self, doc)
        dec, enc = "model.decoder.layers", "model.encoder.layers"
        want = [(dec, 0), (dec, 1), (enc, 0), (enc, 1), (enc, 2)]
        self.assertEqual([(l["stack"], l["layer"]) for l in doc["layers"]], want)
        for l in doc["layers"]:
            prefix = "%s.%d." % (l["stack"], l["layer"])
            x = np.concatenate([v for n, v in self.resid.items() if n.startswith(prefix)])
            self.assertEqual((l["tensors"], l["count"]), (3, x.size), prefix)
            assert_rel(self, l["kurtosis"], scipy.stats.kurtosis(x), 1e-6, prefix + " kurtosis", 1)
            counts, _ = np.histogram(x, bins=32, range=(x.min(), x.max()))
            self.assertAlmostEqual(l["entropy_bits"], entropy_bits(counts), delta=1e-12)
        stem = [t for t in doc["tensors"] if t["name"] == "model.encoder.conv1.weight"][0]
        self.assertEqual((stem["kind"], stem["stack"], stem["layer"]), ("embedding", None, None))

        roles = ("self_attn.q_proj.weight", "fc1.weight", "final_layer_norm.weight")

        def r_of(stack, role, a, b):
            return float(np.corrcoef(self.resid["%s.%d.%s" % (stack, a, role)],
                                     self.resid["%s.%d.%s" % (stack, b, role)])[0, 1])

        lc = doc["layer_correlation"]
        self.assertEqual([(e["stack"], e["layer_a"], e["layer_b"], e["first_last"]) for e in lc],
                         [(dec, 0, 1, False), (dec, 0, 1, True), (enc, 0, 1, False),
                          (enc, 1, 2, False), (enc, 0, 2, True)])
        for e in lc:
            want_r = np.mean([r_of(e["stack"], role, e["layer_a"], e["layer_b"])
                              for role in roles])
            self.assertEqual(e["pairs"], 3)
            self.assertAlmostEqual(e["r"], want_r, delta=1e-9)
        pairs = doc["correlation_pairs"]
        self.assertEqual(len(pairs), 3 * 1 + 3 * 2)
        for p in pairs:
            self.assertTrue(p["role"].startswith(p["stack"] + ".{L}."), p)
            role = p["role"][len(p["stack"]) + len(".{L}."):]
            self.assertAlmostEqual(p["r"], r_of(p["stack"], role, p["layer_a"], p["layer_b"]),
                                   delta=1e-9)
        # built so: the encoder's q_proj residuals follow each other, the decoder's do not
        q = {(p["stack"], p["layer_a"]): p["r"] for p in pairs if "q_proj" in p["role"]}
        self.assertGreater(q[(enc, 0)], 0.5)
        self.assertLess(abs(q[(dec, 0)]), 0.5)

    def test_binding_stacks(self):
        from .test_model import sr
        with sr.Model.open(self.base) as b, sr.Model.open(self.trained) as t, \
                sr.Residual(b, t) as res, sr.Report(res, threads=1) as rep:
            info = b.info("model.decoder.layers.1.fc1.weight")
            self.assertEqual((info["stack"], info["layer"], info["role"]),
                             ("model.decoder.layers", 1, "model.decoder.layers.{L}.fc1.weight"))
            self.assertEqual(b.info("model.encoder.conv1.weight")["stack"], "")
            doc = rep.json()
            self.assertEqual([(l["stack"], l["layer"]) for l in rep.layers()],
                             [(l["stack"], l["layer"]) for l in doc["layers"]])
            self.assertEqual([e["stack"] for e in rep.layer_correlation()],
                             [e["stack"] for e in doc["layer_correlation"]])
            self.assertEqual([e["stack"] for e in rep.layer_correlation(per_role=True)],
                             [e["stack"] for e in doc["correlation_pairs"]])
            self.assertEqual([rep.tensor(i)["stack"] for i in range(len(rep))],
                             [t["stack"] or "" for t in doc["tensors"]])


class TestKMeansRestarts(unittest.TestCase):
    """The report's k-means runs (kmeans_restarts; 0 = by size)."""

    def test_default_on_a_spike_matrix(self):
        from sklearn.cluster import KMeans
        g = np.random.default_rng(31)
        x = np.zeros((192, 320), np.float32)  # mostly zeros, a few large entries
        hit = g.random(x.shape) < 0.01
        x[hit] = g.standard_normal(hit.sum()).astype(np.float32) * 10
        x64 = x.astype(np.float64)
        total = ((x64 - x64.mean(0)) ** 2).sum()
        with sr.Model.create() as m:
            m.add("model.layers.0.mlp.down_proj.weight", x)
            docs = {}
            for n in (0, 1, 50):
                with sr.Report(m, probes=sr.PROBE_KMEANS, ks=[4, 8], threads=1,
                               kmeans_restarts=n) as rep:
                    docs[n] = rep.json()
            with self.assertRaises(sr.SparseResidError) as cm:
                sr.Report(m, kmeans_restarts=-1)
            self.assertEqual(cm.exception.status, sr.ERR_INVALID_ARG)
        for n, doc in docs.items():
            self.assertEqual(doc["options"]["kmeans_restarts"], n)
        km = {n: [k["explained"] for k in doc["tensors"][0]["kmeans"]] for n, doc in docs.items()}
        self.assertEqual(km[0], km[50])  # 61440 values: 50 runs
        for j, k in enumerate((4, 8)):
            ref = np.mean([1 - KMeans(n_clusters=k, n_init=10, random_state=rs).fit(x).inertia_
                           / total for rs in range(3)])
            self.assertGreaterEqual(km[0][j], ref - 0.005, "K=%d: %.4f vs sklearn %.4f"
                                    % (k, km[0][j], ref))
        self.assertLess(min(a - b for a, b in zip(km[1], km[0])), -0.005)


if __name__ == "__main__":
    unittest.main()
