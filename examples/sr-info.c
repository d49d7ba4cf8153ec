/* sr-info: the tensors of a checkpoint, or how far a fine-tune moved from
 * its base, tensor by tensor. An example program of libsparseresid. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"
#include "cli_json.h"

static const char *prog = "sr-info";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s CHECKPOINT [options]     its tensors and metadata\n"
            "       %s BASE TRAINED [options]   the norms of TRAINED - BASE, pair by pair\n"
            "\n"
            "One checkpoint: list its tensors (name, dtype, shape, matrix view, kind,\n"
            "layer, role, Frobenius norm) and its metadata.\n"
            "Two checkpoints: pair them by tensor name and list, per pair, the norms of\n"
            "base, trained and residual R = trained - base, then all pairs together,\n"
            "then the tensors left out and why.\n"
            "\n"
            "  --json FILE|-  write the JSON document to FILE (the tables still go to\n"
            "                 stdout), or to stdout with - (then no tables)\n"
            "  --strict       fail if any tensor is one-sided or changes shape\n"
            "  --layout L     matrix view of rank >= 3 tensors: out-first (PyTorch,\n"
            "                 rows = shape[0]; default) or out-last (TF/Keras/TF.js\n"
            "                 [kh,kw,in,out], cols = shape[-1])\n"
            "  --kind-rules FILE\n"
            "                 kind rules tried before the defaults: lines PATTERN KIND\n"
            "                 (docs/tools.md, Kind rules)\n"
            "  --verbose      say which BLIS kernels are used\n"
            "  --help         show this text\n"
            "Deprecated (until the next minor release, with a warning): --json with no\n"
            "file name (before a checkpoint, an option or nothing) for --json -.\n"
            "\n"
            "A checkpoint is a .safetensors file, a *.safetensors.index.json or a\n"
            "directory of shards. Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog, prog);
}

#define bad_usage(...) sr_cli_bad_usage(prog, __VA_ARGS__)
#define xmalloc(n) sr_cli_xmalloc(prog, n)
#define xfmt(...) sr_cli_xfmt(prog, __VA_ARGS__)

static char *shape_str(const int64_t *shape, int32_t ndim)
{
    /* 20 digits and a comma per dimension, brackets, NUL. */
    size_t cap = (size_t)ndim * 21 + 3, len = 1;
    char *s = xmalloc(cap);
    s[0] = '[';
    for (int32_t d = 0; d < ndim; d++)
        len += (size_t)snprintf(s + len, cap - len, "%s%lld", d ? "," : "",
                                (long long)shape[d]);
    snprintf(s + len, cap - len, "]");
    return s;
}

static char *num_str(double x)
{
    return isnan(x) ? xfmt("-") : xfmt("%.6g", x);
}

/* ---- JSON (cli_json.h: a failed constructor shows when the document is dumped) ---- */

static json_t *jshape(const int64_t *shape, int32_t ndim)
{
    json_t *a = json_array();
    for (int32_t d = 0; d < ndim; d++)
        sr_cli_jpush(a, json_integer((json_int_t)shape[d]));
    return a;
}

static json_t *jlayer(int32_t layer)
{
    return layer < 0 ? json_null() : json_integer(layer);
}

/* The document kinds of --json (docs/tools.md): one checkpoint, or a pair. */
#define FORMAT_ONE "sparseresid-info"
#define FORMAT_PAIR "sparseresid-info-pair"
#define FORMAT_VERSION 1

static void json_emit(json_t *root, const char *path)
{
    sr_cli_json_write(prog, path, root, JSON_INDENT(2));
}


/* ---- models ---- */

static void tensor_info(const sresid_model *m, size_t i, const char *path,
                        sresid_tensor_info *info)
{
    memset(info, 0, sizeof *info);
    info->size = sizeof *info;
    sresid_status st = sresid_model_tensor_info(m, i, info);
    if (st != SRESID_OK)
        sr_cli_die(prog, path, st);
}

static const char *kind_str(int32_t kind)
{
    const char *k = sresid_kind_name(kind);
    return k ? k : "?";
}

static const char *dtype_str(sresid_dtype dtype)
{
    const char *d = sresid_dtype_name(dtype);
    return d ? d : "?";
}

/* One checkpoint: its tensors with their norms, and its metadata; json is
 * NULL (text only), "-" (JSON only, on stdout) or a file (both). */
static void run_one(sresid_model *m, const char *path, const char *json)
{
    size_t n = sresid_model_tensor_count(m);
    sresid_tensor_info info;

    /* One buffer, as large as the largest float tensor, serves every read. */
    uint64_t biggest = 0;
    for (size_t i = 0; i < n; i++) {
        tensor_info(m, i, path, &info);
        if (sresid_dtype_is_float(info.dtype) && (uint64_t)info.numel > biggest)
            biggest = (uint64_t)info.numel;
    }
    if (biggest > SIZE_MAX / sizeof(float)) {
        sr_cli_fatal(prog, "%s: a tensor of %llu elements does not fit in memory", path,
                     (unsigned long long)biggest);
    }
    float *buf = xmalloc((size_t)biggest * sizeof(float));
    double *norm = xmalloc(n * sizeof *norm);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        tensor_info(m, i, path, &info);
        total += (uint64_t)info.numel;
        norm[i] = NAN;
        if (!sresid_dtype_is_float(info.dtype))
            continue;
        sresid_status st = sresid_model_read_f32(m, i, buf, (size_t)biggest);
        if (st != SRESID_OK)
            sr_cli_die(prog, path, st);
        double ss = 0.0;
        for (int64_t k = 0; k < info.numel; k++)
            ss += (double)buf[k] * (double)buf[k];
        norm[i] = sqrt(ss);
    }
    free(buf);

    size_t nmeta = sresid_model_metadata_count(m);
    if (json) {
        json_t *root = sr_cli_json_doc(FORMAT_ONE, FORMAT_VERSION);
        json_t *tensors = json_array();
        json_t *meta = json_object();
        sr_cli_jset(root, "path", sr_cli_jstr(path));
        for (size_t i = 0; i < n; i++) {
            tensor_info(m, i, path, &info);
            json_t *t = json_object();
            sr_cli_jset(t, "name", sr_cli_jstr(info.name));
            sr_cli_jset(t, "dtype", sr_cli_jstr(dtype_str(info.dtype)));
            sr_cli_jset(t, "shape", jshape(info.shape, info.ndim));
            json_t *mv = json_array();
            sr_cli_jpush(mv, json_integer(info.rows));
            sr_cli_jpush(mv, json_integer(info.cols));
            sr_cli_jset(t, "matrix", mv);
            sr_cli_jset(t, "kind", sr_cli_jstr(kind_str(info.kind)));
            sr_cli_jset(t, "layer", jlayer(info.layer));
            sr_cli_jset(t, "role", sr_cli_jstr(info.role));
            sr_cli_jset(t, "numel", json_integer(info.numel));
            sr_cli_jset(t, "norm", sr_cli_jnum(norm[i]));
            sr_cli_jpush(tensors, t);
        }
        for (size_t i = 0; i < nmeta; i++) {
            const char *k = NULL, *v = NULL;
            sresid_status st = sresid_model_metadata_at(m, i, &k, &v);
            if (st != SRESID_OK)
                sr_cli_die(prog, path, st);
            sr_cli_jset(meta, k, sr_cli_jstr(v));
        }
        sr_cli_jset(root, "tensors", tensors);
        sr_cli_jset(root, "metadata", meta);
        json_emit(root, json);
    }
    if (!json || strcmp(json, "-") != 0) {
        printf("%s: %zu tensors, %llu elements\n", path, n, (unsigned long long)total);
        sr_cli_table t = { .ncols = 8, .right = "lllllrlr", .prog = prog};
        const char *head[] = { "name", "dtype", "shape", "matrix", "kind", "layer", "role",
                               "norm" };
        for (size_t c = 0; c < 8; c++)
            sr_cli_table_put(&t, xfmt("%s", head[c]));
        for (size_t i = 0; i < n; i++) {
            tensor_info(m, i, path, &info);
            sr_cli_table_put(&t, xfmt("%s", info.name));
            sr_cli_table_put(&t, xfmt("%s", dtype_str(info.dtype)));
            sr_cli_table_put(&t, shape_str(info.shape, info.ndim));
            sr_cli_table_put(&t, xfmt("%lldx%lld", (long long)info.rows, (long long)info.cols));
            sr_cli_table_put(&t, xfmt("%s", kind_str(info.kind)));
            sr_cli_table_put(&t, info.layer < 0 ? xfmt("-") : xfmt("%d", (int)info.layer));
            sr_cli_table_put(&t, xfmt("%s", info.role));
            sr_cli_table_put(&t, num_str(norm[i]));
        }
        sr_cli_table_print(&t);
        if (nmeta)
            printf("metadata (%zu):\n", nmeta);
        for (size_t i = 0; i < nmeta; i++) {
            const char *k = NULL, *v = NULL;
            sresid_status st = sresid_model_metadata_at(m, i, &k, &v);
            if (st != SRESID_OK)
                sr_cli_die(prog, path, st);
            fputs("  ", stdout);
            sr_cli_put_clean(k);
            fputs(" = ", stdout);
            sr_cli_put_clean(v);
            fputc('\n', stdout);
        }
    }
    free(norm);
}

/* ---- two checkpoints ---- */

static void norms_of(const sresid_residual *r, size_t i, const char *what, sresid_norms *out)
{
    memset(out, 0, sizeof *out);
    out->size = sizeof *out;
    sresid_status st = sresid_residual_norms(r, i, out);
    if (st != SRESID_OK)
        sr_cli_die(prog, what, st);
}

static void jset_norms(json_t *obj, const sresid_norms *nm)
{
    sr_cli_jset(obj, "norm_base", sr_cli_jnum(nm->base));
    sr_cli_jset(obj, "norm_trained", sr_cli_jnum(nm->trained));
    sr_cli_jset(obj, "norm_residual", sr_cli_jnum(nm->residual));
    sr_cli_jset(obj, "relative", sr_cli_jnum(nm->relative));
}

static void put_norms(sr_cli_table *t, const sresid_norms *nm)
{
    sr_cli_table_put(t, num_str(nm->base));
    sr_cli_table_put(t, num_str(nm->trained));
    sr_cli_table_put(t, num_str(nm->residual));
    sr_cli_table_put(t, isfinite(nm->relative) ? xfmt("%.6f", nm->relative) : xfmt("-"));
}

/* Facts of a tensor by name; 0 when the model lacks it. */
static int find_info(const sresid_model *m, const char *name, const char *path,
                     sresid_tensor_info *info)
{
    size_t idx;
    if (sresid_model_find(m, name, &idx) != SRESID_OK)
        return 0;
    tensor_info(m, idx, path, info);
    return 1;
}

static char *unpaired_reason(int32_t reason, const sresid_tensor_info *bi, int has_b,
                             const sresid_tensor_info *ti, int has_t)
{
    switch (reason) {
    case SRESID_UNPAIRED_BASE_ONLY:
        return xfmt("only in base");
    case SRESID_UNPAIRED_TRAINED_ONLY:
        return xfmt("only in trained");
    case SRESID_UNPAIRED_NOT_FLOAT:
        return xfmt("not a float tensor");
    case SRESID_UNPAIRED_SHAPE:
        if (has_b && has_t) {
            char *a = shape_str(bi->shape, bi->ndim), *b = shape_str(ti->shape, ti->ndim);
            char *s = xfmt("shape %s vs %s", a, b);
            free(a);
            free(b);
            return s;
        }
        return xfmt("shape differs");
    default:
        return xfmt("unknown reason %d", (int)reason);
    }
}

/* Two checkpoints: the norms pair by pair, then the tensors left out; json
 * as for run_one. */
static void run_pair(sresid_model *base, const char *bpath, sresid_model *trained,
                     const char *tpath, const char *json, int strict)
{
    sresid_pair_opts po = { .size = sizeof po,
                            .flags = strict ? 0u : SRESID_PAIR_SKIP_MISMATCHED };
    sresid_residual *r = NULL;
    sresid_status st = sresid_residual_create(base, trained, &po, &r);
    if (st != SRESID_OK) {
        char *what = xfmt("cannot pair %s with %s", bpath, tpath);
        sr_cli_die(prog, what, st);
    }
    char *what = xfmt("%s vs %s", bpath, tpath);

    size_t np = sresid_residual_count(r), nu = sresid_residual_unpaired_count(r);
    sresid_tensor_info info, tinfo;
    sresid_norms nm, all;
    json_t *root = NULL, *pairs = NULL, *unpaired = NULL;
    int text = !json || strcmp(json, "-") != 0;
    sr_cli_table t = { .ncols = 8, .right = "llrlrrrr", .prog = prog};

    if (json) {
        root = sr_cli_json_doc(FORMAT_PAIR, FORMAT_VERSION);
        pairs = json_array();
        unpaired = json_array();
        sr_cli_jset(root, "base", sr_cli_jstr(bpath));
        sr_cli_jset(root, "trained", sr_cli_jstr(tpath));
    }
    if (text) {
        printf("base:    %s\ntrained: %s\n", bpath, tpath);
        const char *head[] = { "name",    "kind",      "layer", "shape",
                               "|base|", "|trained|", "|R|",   "|R|/|base|" };
        for (size_t c = 0; c < 8; c++)
            sr_cli_table_put(&t, xfmt("%s", head[c]));
    }

    for (size_t i = 0; i < np; i++) {
        size_t bi, ti;
        st = sresid_residual_pair(r, i, &bi, &ti);
        if (st != SRESID_OK)
            sr_cli_die(prog, what, st);
        tensor_info(base, bi, bpath, &info);
        norms_of(r, i, what, &nm);
        if (json) {
            json_t *p = json_object();
            sr_cli_jset(p, "name", sr_cli_jstr(info.name));
            sr_cli_jset(p, "kind", sr_cli_jstr(kind_str(info.kind)));
            sr_cli_jset(p, "layer", jlayer(info.layer));
            sr_cli_jset(p, "shape", jshape(info.shape, info.ndim));
            jset_norms(p, &nm);
            sr_cli_jpush(pairs, p);
        }
        if (text) {
            sr_cli_table_put(&t, xfmt("%s", info.name));
            sr_cli_table_put(&t, xfmt("%s", kind_str(info.kind)));
            sr_cli_table_put(&t, info.layer < 0 ? xfmt("-") : xfmt("%d", (int)info.layer));
            sr_cli_table_put(&t, shape_str(info.shape, info.ndim));
            put_norms(&t, &nm);
        }
    }
    norms_of(r, SRESID_ALL, what, &all);

    if (json) {
        json_t *tot = json_object();
        jset_norms(tot, &all);
        sr_cli_jset(root, "pairs", pairs);
        sr_cli_jset(root, "total", tot);
    }
    if (text) {
        sr_cli_table_put(&t, xfmt("all %zu pairs", np));
        sr_cli_table_put(&t, xfmt("%s", ""));
        sr_cli_table_put(&t, xfmt("%s", ""));
        sr_cli_table_put(&t, xfmt("%s", ""));
        put_norms(&t, &all);
        sr_cli_table_print(&t);
        printf("unpaired (%zu)%s\n", nu, nu ? ":" : "");
    }

    sr_cli_table ut = { .ncols = 2, .right = "ll", .prog = prog};
    for (size_t i = 0; i < nu; i++) {
        const char *name = NULL;
        int32_t reason = 0;
        st = sresid_residual_unpaired(r, i, &name, &reason);
        if (st != SRESID_OK)
            sr_cli_die(prog, what, st);
        int has_b = find_info(base, name, bpath, &info);
        int has_t = find_info(trained, name, tpath, &tinfo);
        char *why = unpaired_reason(reason, &info, has_b, &tinfo, has_t);
        if (json) {
            json_t *u = json_object();
            sr_cli_jset(u, "name", sr_cli_jstr(name));
            sr_cli_jset(u, "reason", sr_cli_jstr(why));
            sr_cli_jset(u, "shape_base", has_b ? jshape(info.shape, info.ndim) : json_null());
            sr_cli_jset(u, "shape_trained", has_t ? jshape(tinfo.shape, tinfo.ndim) : json_null());
            sr_cli_jpush(unpaired, u);
        }
        if (text) {
            sr_cli_table_put(&ut, xfmt("  %s", name));
            sr_cli_table_put(&ut, why);
        } else {
            free(why);
        }
    }
    if (json) {
        sr_cli_jset(root, "unpaired", unpaired);
        json_emit(root, json);
    }
    if (text)
        sr_cli_table_print(&ut);

    free(what);
    sresid_residual_free(r);
}

/* The old spelling "--json" without a file (JSON on stdout) is recognised
 * while it lasts by what follows it: nothing, another option, or a
 * checkpoint — a directory, a name ending in .safetensors or
 * .safetensors.index.json, or a file that starts as safetensors files do
 * (a little-endian header length, then '{'). */
static int old_json_flag(int argc, char **argv, int i)
{
    if (i + 1 >= argc)
        return 1;
    const char *p = argv[i + 1];
    size_t n = strlen(p);
    if ((p[0] == '-' && p[1] != '\0') ||
        (n >= 12 && strcmp(p + n - 12, ".safetensors") == 0) ||
        (n >= 23 && strcmp(p + n - 23, ".safetensors.index.json") == 0))
        return 1;
    struct stat sb;
    if (stat(p, &sb) != 0)
        return 0;
    if (S_ISDIR(sb.st_mode))
        return 1;
    unsigned char head[9] = {0};
    FILE *f = S_ISREG(sb.st_mode) ? fopen(p, "rb") : NULL;
    size_t got = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    uint64_t len = 0;
    for (int k = 7; k >= 0; k--)
        len = len << 8 | head[k];
    return got == sizeof head && head[8] == '{' && len >= 2 && len < (uint64_t)sb.st_size;
}

int main(int argc, char **argv)
{
    /* First: it picks the BLIS kernels, which must come before any BLIS call. */
    int verbose;
    prog = sr_cli_start(argc, argv, &verbose);

    int strict = 0, npos = 0, options_done = 0;
    const char *pos[2] = { NULL, NULL }, *json = NULL, *rules = NULL;
    int32_t layout = SRESID_LAYOUT_OUT_FIRST;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (options_done || a[0] != '-' || a[1] == '\0') {
            sr_cli_add_checkpoint(prog, pos, &npos, a);
        } else if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            sr_cli_help_done(prog);
        } else if (strcmp(a, "--json") == 0 && old_json_flag(argc, argv, i)) {
            sr_cli_deprecated(prog, "--json without a file name",
                              "write --json - for the JSON document on stdout");
            json = "-";
        } else if (sr_cli_value(prog, argc, argv, &i, "--json", &val)) {
            json = sr_cli_parse_json(prog, "--json", val);
        } else if (strcmp(a, "--strict") == 0) {
            strict = 1;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            verbose = 1;
        } else if (sr_cli_value(prog, argc, argv, &i, "--layout", &val)) {
            layout = sr_cli_parse_layout(prog, "--layout", val);
        } else if (sr_cli_value(prog, argc, argv, &i, "--kind-rules", &val)) {
            rules = val;
        } else {
            bad_usage("unknown option %s", a);
        }
    }
    if (npos == 0)
        bad_usage("no checkpoint given");
    if (strict && npos != 2)
        bad_usage("--strict needs two checkpoints");

    if (verbose)
        fprintf(stderr, "%s: libsparseresid %s, BLIS kernels %s\n", prog,
                sresid_version_string(), sresid_blas_arch());

    sresid_model *m[2] = { NULL, NULL };
    for (int k = 0; k < npos; k++)
        m[k] = sr_cli_open_model(prog, pos[k], layout);
    sr_cli_kind_rules(prog, rules, m, (size_t)npos);
    const char *const outs[1] = { json };
    sr_cli_guard_outputs(prog, m, pos, (size_t)npos, outs, 1);
    if (npos == 1) {
        /* only the one-checkpoint listing shows the matrix view */
        sr_cli_check_layout(prog, m[0], pos[0], layout);
        run_one(m[0], pos[0], json);
    } else {
        run_pair(m[0], pos[0], m[1], pos[1], json, strict);
    }
    sresid_model_free(m[1]);
    sresid_model_free(m[0]);
    return sr_cli_finish(prog);
}
