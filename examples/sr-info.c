/* sr-info: the tensors of a checkpoint, or how far a fine-tune moved from
 * its base, tensor by tensor. An example program of libsparseresid. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"

static const char *prog = "sr-info";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s CHECKPOINT [--json] [--layout out-first|out-last] [--verbose]\n"
            "       %s BASE TRAINED [--json] [--strict] [--layout ...] [--verbose]\n"
            "\n"
            "One checkpoint: list its tensors (name, dtype, shape, matrix view, kind,\n"
            "layer, role, Frobenius norm) and its metadata.\n"
            "Two checkpoints: pair them by tensor name and list, per pair, the norms of\n"
            "base, trained and residual R = trained - base, then all pairs together,\n"
            "then the tensors left out and why.\n"
            "\n"
            "  --json      write a JSON document instead of text tables\n"
            "  --strict    fail if any tensor is one-sided or changes shape\n"
            "  --layout L  matrix view of rank >= 3 tensors: out-first (PyTorch,\n"
            "              default) or out-last (TF/Keras)\n"
            "  --verbose   say which BLIS kernels are used\n"
            "  --help      show this text\n"
            "\n"
            "A checkpoint is a .safetensors file, a *.safetensors.index.json or a\n"
            "directory of shards. Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog, prog);
}

static _Noreturn void bad_usage(const char *fmt, const char *arg)
    __attribute__((format(printf, 1, 0)));
static _Noreturn void bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    usage(stderr);
    exit(2);
}

static _Noreturn void die_nomem(void)
{
    fprintf(stderr, "%s: out of memory\n", prog);
    exit(1);
}

static void *xmalloc(size_t n)
{
    return sr_cli_xmalloc(prog, n);
}

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

/* ---- JSON: every constructor is checked ---- */

static void jset(json_t *obj, const char *key, json_t *v)
{
    if (!v || json_object_set_new(obj, key, v) != 0)
        die_nomem();
}

static void jpush(json_t *arr, json_t *v)
{
    if (!v || json_array_append_new(arr, v) != 0)
        die_nomem();
}

static json_t *jnew(json_t *v)
{
    if (!v)
        die_nomem();
    return v;
}

/* Names from the library are valid UTF-8; a path from the command line may
 * not be, and Jansson refuses such strings: replace the stray bytes. */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = xfmt("%s", s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return jnew(v);
}

/* JSON has no NaN or Inf: those become null. */
static json_t *jnum(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *jshape(const int64_t *shape, int32_t ndim)
{
    json_t *a = jnew(json_array());
    for (int32_t d = 0; d < ndim; d++)
        jpush(a, json_integer((json_int_t)shape[d]));
    return a;
}

static json_t *jlayer(int32_t layer)
{
    return layer < 0 ? json_null() : json_integer(layer);
}

static void json_print(json_t *root)
{
    if (json_dumpf(root, stdout, JSON_INDENT(2)) != 0)
        die_nomem();
    fputc('\n', stdout);
    json_decref(root);
}


/* ---- models ---- */

static sresid_model *open_model(const char *path, int32_t layout)
{
    sresid_model_opts o = { .size = sizeof o, .layout = layout };
    sresid_model *m = NULL;
    sresid_status st = sresid_model_open(path, &o, &m);
    if (st != SRESID_OK)
        sr_cli_die_open(prog, path, st);
    return m;
}

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

/* One checkpoint: its tensors with their norms, and its metadata. */
static void run_one(const char *path, int json, int32_t layout)
{
    sresid_model *m = open_model(path, layout);
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
        fprintf(stderr, "%s: %s: a tensor of %llu elements does not fit in memory\n", prog,
                path, (unsigned long long)biggest);
        exit(1);
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
        json_t *root = jnew(json_object());
        json_t *tensors = jnew(json_array());
        json_t *meta = jnew(json_object());
        jset(root, "path", jstr(path));
        for (size_t i = 0; i < n; i++) {
            tensor_info(m, i, path, &info);
            json_t *t = jnew(json_object());
            jset(t, "name", jstr(info.name));
            jset(t, "dtype", jstr(dtype_str(info.dtype)));
            jset(t, "shape", jshape(info.shape, info.ndim));
            json_t *mv = jnew(json_array());
            jpush(mv, json_integer(info.rows));
            jpush(mv, json_integer(info.cols));
            jset(t, "matrix", mv);
            jset(t, "kind", jstr(kind_str(info.kind)));
            jset(t, "layer", jlayer(info.layer));
            jset(t, "role", jstr(info.role));
            jset(t, "numel", json_integer(info.numel));
            jset(t, "norm", jnum(norm[i]));
            jpush(tensors, t);
        }
        for (size_t i = 0; i < nmeta; i++) {
            const char *k = NULL, *v = NULL;
            sresid_status st = sresid_model_metadata_at(m, i, &k, &v);
            if (st != SRESID_OK)
                sr_cli_die(prog, path, st);
            jset(meta, k, jstr(v));
        }
        jset(root, "tensors", tensors);
        jset(root, "metadata", meta);
        json_print(root);
    } else {
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
    sresid_model_free(m);
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
    jset(obj, "norm_base", jnum(nm->base));
    jset(obj, "norm_trained", jnum(nm->trained));
    jset(obj, "norm_residual", jnum(nm->residual));
    jset(obj, "relative", jnum(nm->relative));
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

static void run_pair(const char *bpath, const char *tpath, int json, int strict, int32_t layout)
{
    sresid_model *base = open_model(bpath, layout);
    sresid_model *trained = open_model(tpath, layout);
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
    sr_cli_table t = { .ncols = 8, .right = "llrlrrrr", .prog = prog};

    if (json) {
        root = jnew(json_object());
        pairs = jnew(json_array());
        unpaired = jnew(json_array());
        jset(root, "base", jstr(bpath));
        jset(root, "trained", jstr(tpath));
    } else {
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
            json_t *p = jnew(json_object());
            jset(p, "name", jstr(info.name));
            jset(p, "kind", jstr(kind_str(info.kind)));
            jset(p, "layer", jlayer(info.layer));
            jset(p, "shape", jshape(info.shape, info.ndim));
            jset_norms(p, &nm);
            jpush(pairs, p);
        } else {
            sr_cli_table_put(&t, xfmt("%s", info.name));
            sr_cli_table_put(&t, xfmt("%s", kind_str(info.kind)));
            sr_cli_table_put(&t, info.layer < 0 ? xfmt("-") : xfmt("%d", (int)info.layer));
            sr_cli_table_put(&t, shape_str(info.shape, info.ndim));
            put_norms(&t, &nm);
        }
    }
    norms_of(r, SRESID_ALL, what, &all);

    if (json) {
        json_t *tot = jnew(json_object());
        jset_norms(tot, &all);
        jset(root, "pairs", pairs);
        jset(root, "total", tot);
    } else {
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
            json_t *u = jnew(json_object());
            jset(u, "name", jstr(name));
            jset(u, "reason", jstr(why));
            jset(u, "shape_base", has_b ? jshape(info.shape, info.ndim) : json_null());
            jset(u, "shape_trained", has_t ? jshape(tinfo.shape, tinfo.ndim) : json_null());
            jpush(unpaired, u);
            free(why);
        } else {
            sr_cli_table_put(&ut, xfmt("  %s", name));
            sr_cli_table_put(&ut, why);
        }
    }
    if (json) {
        jset(root, "unpaired", unpaired);
        json_print(root);
    } else {
        sr_cli_table_print(&ut);
    }

    free(what);
    sresid_residual_free(r);
    sresid_model_free(trained);
    sresid_model_free(base);
}

int main(int argc, char **argv)
{
    /* Only a look for --verbose precedes this: it must come before any BLIS call. */
    int verbose = 0;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        verbose |= strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0;
    sr_cli_pick_blis_arch(verbose);
    prog = sr_cli_prog(argc > 0 ? argv[0] : NULL);

    int json = 0, strict = 0, npos = 0, options_done = 0;
    const char *pos[2] = { NULL, NULL }, *layout_s = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {
            if (npos == 2)
                bad_usage("too many arguments: %s", a);
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--strict") == 0) {
            strict = 1;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            verbose = 1;
        } else {
            int rc = sr_cli_opt_value(argc, argv, &i, "--layout", &layout_s);
            if (rc < 0)
                bad_usage("%s needs a value", a);
            if (rc == 0)
                bad_usage("unknown option %s", a);
        }
    }
    if (npos == 0)
        bad_usage("%s", "no checkpoint given");
    if (strict && npos != 2)
        bad_usage("%s", "--strict needs two checkpoints");

    int32_t layout = SRESID_LAYOUT_OUT_FIRST;
    if (layout_s && strcmp(layout_s, "out-last") == 0)
        layout = SRESID_LAYOUT_OUT_LAST;
    else if (layout_s && strcmp(layout_s, "out-first") != 0)
        bad_usage("unknown layout %s (want out-first or out-last)", layout_s);

    if (verbose)
        fprintf(stderr, "%s: libsparseresid %s, BLIS kernels %s\n", prog,
                sresid_version_string(), sresid_blas_arch());

    if (npos == 1)
        run_one(pos[0], json, layout);
    else
        run_pair(pos[0], pos[1], json, strict, layout);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: error writing the output\n", prog);
        return 1;
    }
    return 0;
}
