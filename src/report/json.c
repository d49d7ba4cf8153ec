/* The report as JSON (schema: docs/report.md, docs/report.schema.json).
 * Built with Jansson from the report's accessors; every figure that is NaN
 * or infinite is written as null, integers stay integers. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"

#define REPORT_FORMAT_VERSION 1


/* Groups in the order the document lists them. */
static const int32_t group_order[] = {SRESID_KIND_ATTENTION, SRESID_KIND_MLP,
                                      SRESID_KIND_EMBEDDING, SRESID_KIND_NORM,
                                      SRESID_KIND_OTHER};
#define NKINDS (sizeof group_order / sizeof group_order[0])

static const struct {
    uint32_t bit;
    const char *name;
} probe_names[] = {
    {SRESID_PROBE_MOMENTS, "moments"}, {SRESID_PROBE_ENTROPY, "entropy"},
    {SRESID_PROBE_PR, "pr"},           {SRESID_PROBE_LOWFREQ, "lowfreq"},
    {SRESID_PROBE_KMEANS, "kmeans"},   {SRESID_PROBE_SPARSITY, "sparsity"},
    {SRESID_PROBE_CORRELATION, "correlation"},
};

/* A failed constructor or insertion anywhere clears ok; the document is
 * then thrown away as a whole (NOMEM). Jansson's set_new/append_new accept
 * NULL and release the value on failure, so nothing leaks. */
typedef struct jb {
    bool ok;
} jb;

static json_t *chk(jb *b, json_t *v)
{
    if (!v)
        b->ok = false;
    return v;
}

static void put(jb *b, json_t *obj, const char *key, json_t *v)
{
    if (!v || json_object_set_new(obj, key, v) != 0)
        b->ok = false;
}

static void push(jb *b, json_t *arr, json_t *v)
{
    if (!v || json_array_append_new(arr, v) != 0)
        b->ok = false;
}

static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *unum(uint64_t x)
{
    return json_integer((json_int_t)x);
}

static json_t *ratio(double a, double b)
{
    return num(isfinite(a) && isfinite(b) && b != 0 ? a / b : NAN);
}

static json_t *layer_num(int32_t layer)
{
    return layer < 0 ? json_null() : json_integer(layer);
}

/* The stack of a layered thing, null when there is no layer. */
static json_t *stack_str(jb *b, sresid_status st, const char *stack, bool layered)
{
    if (st != SRESID_OK)
        b->ok = false;
    return layered && st == SRESID_OK ? json_string(stack) : json_null();
}

static json_t *kind_str(int32_t kind)
{
    const char *k = sresid_kind_name(kind);
    return json_string(k ? k : "other");
}

static void put_moments(jb *b, json_t *o, const sresid_moment_stats *ms, bool moments_on)
{
    put(b, o, "mean", num(moments_on ? ms->mean : NAN));
    put(b, o, "variance", num(moments_on ? ms->variance : NAN));
    put(b, o, "skewness", num(moments_on ? ms->skewness : NAN));
    put(b, o, "kurtosis", num(moments_on ? ms->kurtosis : NAN));
    put(b, o, "min", num(ms->min));
    put(b, o, "max", num(ms->max));
}

static json_t *options_json(jb *b, const sresid_report *r)
{
    const sresid_report_opts *o = sresid__report_opts(r);
    json_t *j = chk(b, json_object()), *probes = chk(b, json_array()),
           *kinds = chk(b, json_array()), *ks = chk(b, json_array());
    for (size_t i = 0; i < sizeof probe_names / sizeof probe_names[0]; i++)
        if (o->probes & probe_names[i].bit)
            push(b, probes, json_string(probe_names[i].name));
    for (size_t i = 0; i < NKINDS; i++)
        if (o->kinds & (1u << group_order[i]))
            push(b, kinds, kind_str(group_order[i]));
    for (size_t i = 0; i < o->nks; i++)
        push(b, ks, json_integer(o->ks[i]));
    put(b, j, "probes", probes);
    put(b, j, "kinds", kinds);
    put(b, j, "bins", json_integer(o->bins));
    put(b, j, "band", json_real(o->band));
    /* JSON integers here are signed 64-bit: a larger seed goes as digits */
    if (o->seed <= (uint64_t)INT64_MAX) {
        put(b, j, "seed", json_integer((json_int_t)o->seed));
    } else {
        char digits[24];
        snprintf(digits, sizeof digits, "%llu", (unsigned long long)o->seed);
        put(b, j, "seed", json_string(digits));
    }
    put(b, j, "ks", ks);
    put(b, j, "null_draws", json_integer(o->null_draws));
    put(b, j, "kmeans_restarts", json_integer(o->kmeans_restarts));
    put(b, j, "threads", json_integer(o->threads));
    put(b, j, "nonfinite",
        json_string(o->flags & SRESID_REPORT_FAIL_NONFINITE ? "fail" : "exclude"));
    put(b, j, "layout",
        json_string(sresid__report_layout(r) == SRESID_LAYOUT_OUT_LAST ? "out-last" : "out-first"));
    return j;
}

static json_t *null_json(jb *b, double mean, double sd, double z)
{
    if (isnan(mean) && isnan(sd) && isnan(z))
        return json_null();
    json_t *o = chk(b, json_object());
    put(b, o, "mean", num(mean));
    put(b, o, "std", num(sd));
    put(b, o, "z", num(z));
    return o;
}

static json_t *tensor_json(jb *b, const sresid_report *r, size_t i)
{
    const sresid_report_opts *o = sresid__report_opts(r);
    sresid_tensor_report t = {.size = sizeof t};
    sresid_moment_stats ms;
    if (sresid_report_tensor(r, i, &t) != SRESID_OK || !sresid__report_stats(r, 0, i, &ms)) {
        b->ok = false;
        return NULL;
    }
    const int64_t *shape = sresid__report_shape(r, i);
    json_t *j = chk(b, json_object()), *sh = chk(b, json_array());
    for (int32_t d = 0; d < t.ndim; d++)
        push(b, sh, json_integer(shape[d]));
    bool matrix = t.is_matrix != 0;
    put(b, j, "name", json_string(t.name));
    put(b, j, "role", json_string(t.role));
    const char *stack = NULL;
    sresid_status sst = sresid_report_tensor_stack(r, i, &stack);
    put(b, j, "kind", kind_str(t.kind));
    put(b, j, "stack", stack_str(b, sst, stack, t.layer >= 0));
    put(b, j, "layer", layer_num(t.layer));
    put(b, j, "shape", sh);
    put(b, j, "rows", json_integer(t.rows));
    put(b, j, "cols", json_integer(t.cols));
    put(b, j, "is_matrix", json_boolean(matrix));
    put(b, j, "count", unum(t.count));
    put(b, j, "nonfinite", unum(t.nonfinite));
    put_moments(b, j, &ms, (o->probes & SRESID_PROBE_MOMENTS) != 0);
    put(b, j, "entropy_bits", num(t.entropy_bits));
    put(b, j, "entropy_random_bits", num(t.entropy_random_bits));
    put(b, j, "entropy_ratio", ratio(t.entropy_bits, t.entropy_random_bits));
    put(b, j, "pr", num(t.pr));
    put(b, j, "pr_normalized", num(t.pr_normalized));
    put(b, j, "lowfreq_ratio", num(t.lowfreq_ratio));

    json_t *km = json_null();
    if (matrix && (o->probes & SRESID_PROBE_KMEANS)) {
        km = chk(b, json_array());
        for (size_t k = 0; k < o->nks; k++) {
            sresid_kmeans_result kr = {.size = sizeof kr};
            if (sresid_report_tensor_kmeans(r, i, k, &kr) != SRESID_OK) {
                b->ok = false;
                break;
            }
            json_t *e = chk(b, json_object());
            put(b, e, "k", json_integer(kr.k));
            put(b, e, "explained", num(kr.explained));
            put(b, e, "explained_random", num(kr.explained_random));
            put(b, e, "difference", num(kr.difference));
            put(b, e, "iterations", json_integer(kr.iterations));
            push(b, km, e);
        }
    }
    put(b, j, "kmeans", km);

    json_t *sp = json_null();
    if (o->probes & SRESID_PROBE_SPARSITY) {
        static const char *const fe[3] = {"0.5", "0.9", "0.99"},
                                 *const top[3] = {"0.01", "0.1", "0.5"};
        json_t *a = chk(b, json_object()), *c = chk(b, json_object());
        sp = chk(b, json_object());
        for (int k = 0; k < 3; k++) {
            put(b, a, fe[k], num(t.elements_for_energy[k]));
            put(b, c, top[k], num(t.energy_in_top[k]));
        }
        put(b, sp, "elements_for_energy", a);
        put(b, sp, "hoyer", num(t.hoyer));
        put(b, sp, "energy_in_top", c);
    }
    put(b, j, "sparsity", sp);

    json_t *nl = json_null();
    if (matrix && o->null_draws > 0) {
        nl = chk(b, json_object());
        put(b, nl, "draws", json_integer(o->null_draws));
        put(b, nl, "pr", null_json(b, t.pr_null_mean, t.pr_null_std, t.pr_null_z));
        put(b, nl, "lowfreq",
            null_json(b, t.lowfreq_null_mean, t.lowfreq_null_std, t.lowfreq_null_z));
    }
    put(b, j, "null", nl);
    return j;
}

/* Means over a group's matrices of the figures the group struct lacks:
 * low-frequency ratio and k-means explained variance per K, each over the
 * matrices where it is defined. */
static void put_matrix_means(jb *b, json_t *g, const sresid_report *r, int32_t kind)
{
    const sresid_report_opts *o = sresid__report_opts(r);
    size_t nt = sresid_report_tensor_count(r), nks = o->nks;
    double lf = 0, ex[64] = {0}, exr[64] = {0};
    uint64_t nlf = 0, nex[64] = {0};
    for (size_t i = 0; i < nt; i++) {
        sresid_tensor_report t = {.size = sizeof t};
        if (sresid_report_tensor(r, i, &t) != SRESID_OK) {
            b->ok = false;
            return;
        }
        if (!t.is_matrix || (kind != SRESID_GROUP_ALL && t.kind != kind))
            continue;
        if (isfinite(t.lowfreq_ratio)) {
            lf += t.lowfreq_ratio;
            nlf++;
        }
        for (size_t k = 0; k < nks && (o->probes & SRESID_PROBE_KMEANS); k++) {
            sresid_kmeans_result kr = {.size = sizeof kr};
            if (sresid_report_tensor_kmeans(r, i, k, &kr) == SRESID_OK &&
                isfinite(kr.explained) && isfinite(kr.explained_random)) {
                ex[k] += kr.explained;
                exr[k] += kr.explained_random;
                nex[k]++;
            }
        }
    }
    put(b, g, "mean_lowfreq_ratio", num(nlf ? lf / (double)nlf : NAN));
    json_t *km = chk(b, json_array());
    for (size_t k = 0; k < nks && (o->probes & SRESID_PROBE_KMEANS); k++) {
        json_t *e = chk(b, json_object());
        put(b, e, "k", json_integer(o->ks[k]));
        put(b, e, "explained", num(nex[k] ? ex[k] / (double)nex[k] : NAN));
        put(b, e, "explained_random", num(nex[k] ? exr[k] / (double)nex[k] : NAN));
        put(b, e, "matrices", unum(nex[k]));
        push(b, km, e);
    }
    put(b, g, "kmeans", km);
}

static json_t *group_json(jb *b, const sresid_report *r, int32_t id)
{
    const sresid_report_opts *o = sresid__report_opts(r);
    sresid_group_report g = {.size = sizeof g};
    sresid_moment_stats ms;
    size_t slot = id == SRESID_GROUP_ALL ? SRESID_KIND_COUNT : (size_t)id;
    if (sresid_report_group(r, id, &g) != SRESID_OK || !sresid__report_stats(r, 1, slot, &ms)) {
        b->ok = false;
        return NULL;
    }
    json_t *j = chk(b, json_object());
    put(b, j, "tensors", unum(g.tensors));
    put(b, j, "count", unum(g.count));
    put(b, j, "nonfinite", unum(g.nonfinite));
    put_moments(b, j, &ms, (o->probes & SRESID_PROBE_MOMENTS) != 0);
    put(b, j, "entropy_bits", num(g.entropy_bits));
    put(b, j, "entropy_random_bits", num(g.entropy_random_bits));
    put(b, j, "entropy_ratio", ratio(g.entropy_bits, g.entropy_random_bits));
    put(b, j, "mean_pr", num(g.mean_pr));
    put(b, j, "matrices", unum(g.matrices));
    put_matrix_means(b, j, r, id);
    return j;
}

static json_t *layer_json(jb *b, const sresid_report *r, size_t i)
{
    const sresid_report_opts *o = sresid__report_opts(r);
    sresid_layer_report l = {.size = sizeof l};
    sresid_moment_stats ms;
    if (sresid_report_layer(r, i, &l) != SRESID_OK || !sresid__report_stats(r, 2, i, &ms)) {
        b->ok = false;
        return NULL;
    }
    const char *stack = NULL;
    sresid_status sst = sresid_report_layer_stack(r, i, &stack);
    json_t *j = chk(b, json_object());
    put(b, j, "stack", stack_str(b, sst, stack, true));
    put(b, j, "layer", json_integer(l.layer));
    put(b, j, "tensors", unum(l.tensors));
    put(b, j, "count", unum(l.count));
    put(b, j, "nonfinite", unum(ms.nonfinite));
    put_moments(b, j, &ms, (o->probes & SRESID_PROBE_MOMENTS) != 0);
    put(b, j, "entropy_bits", num(l.entropy_bits));
    put(b, j, "entropy_random_bits", num(l.entropy_random_bits));
    put(b, j, "entropy_ratio", ratio(l.entropy_bits, l.entropy_random_bits));
    return j;
}

static json_t *report_to_json(const sresid_report *r)
{
    jb b = {true};
    json_t *root = chk(&b, json_object());
    put(&b, root, "format", json_string("sparseresid-report"));
    put(&b, root, "format_version", json_integer(REPORT_FORMAT_VERSION));
    put(&b, root, "library", json_string(sresid_version_string()));
    put(&b, root, "source", json_string(sresid__report_source(r) == 0 ? "residual" : "model"));
    put(&b, root, "options", options_json(&b, r));

    json_t *tensors = chk(&b, json_array());
    size_t nt = sresid_report_tensor_count(r);
    for (size_t i = 0; i < nt && b.ok; i++)
        push(&b, tensors, tensor_json(&b, r, i));
    put(&b, root, "tensors", tensors);

    json_t *skipped = chk(&b, json_array());
    const char *name = NULL, *why = NULL;
    size_t ns = sresid__report_skipped(r, 0, &name, &why);
    for (size_t i = 0; i < ns; i++) {
        sresid__report_skipped(r, i, &name, &why);
        json_t *e = chk(&b, json_object());
        put(&b, e, "name", json_string(name));
        put(&b, e, "reason", json_string(why));
        push(&b, skipped, e);
    }
    put(&b, root, "skipped", skipped);

    json_t *groups = chk(&b, json_object());
    for (size_t k = 0; k < NKINDS; k++)
        put(&b, groups, sresid_kind_name(group_order[k]), group_json(&b, r, group_order[k]));
    put(&b, groups, "all", group_json(&b, r, SRESID_GROUP_ALL));
    put(&b, root, "groups", groups);

    json_t *layers = chk(&b, json_array());
    size_t nl = sresid_report_layer_count(r);
    for (size_t i = 0; i < nl && b.ok; i++)
        push(&b, layers, layer_json(&b, r, i));
    put(&b, root, "layers", layers);

    json_t *lc = chk(&b, json_array());
    size_t nc = sresid_report_layer_correlation_count(r);
    for (size_t i = 0; i < nc && b.ok; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        if (sresid_report_layer_correlation(r, i, &c) != SRESID_OK) {
            b.ok = false;
            break;
        }
        const char *stack = NULL;
        sresid_status sst = sresid_report_layer_correlation_stack(r, i, &stack);
        json_t *e = chk(&b, json_object());
        put(&b, e, "stack", stack_str(&b, sst, stack, true));
        put(&b, e, "layer_a", json_integer(c.layer_a));
        put(&b, e, "layer_b", json_integer(c.layer_b));
        put(&b, e, "r", num(c.r));
        put(&b, e, "pairs", unum(c.pairs));
        put(&b, e, "first_last", json_boolean(sresid__report_first_last(r, i)));
        push(&b, lc, e);
    }
    put(&b, root, "layer_correlation", lc);

    json_t *pairs = chk(&b, json_array());
    size_t np = sresid_report_pair_count(r);
    for (size_t i = 0; i < np && b.ok; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        if (sresid_report_pair(r, i, &c) != SRESID_OK) {
            b.ok = false;
            break;
        }
        const char *stack = NULL;
        sresid_status sst = sresid_report_pair_stack(r, i, &stack);
        json_t *e = chk(&b, json_object());
        put(&b, e, "stack", stack_str(&b, sst, stack, true));
        put(&b, e, "role", json_string(c.role));
        put(&b, e, "layer_a", json_integer(c.layer_a));
        put(&b, e, "layer_b", json_integer(c.layer_b));
        put(&b, e, "r", num(c.r));
        push(&b, pairs, e);
    }
    put(&b, root, "correlation_pairs", pairs);

    if (!b.ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static sresid_status dump(const sresid_report *r, uint32_t flags, const char *fn, char **text)
{
    if (!r)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: report is NULL", fn);
    if (flags & ~SRESID_JSON_INDENT)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)flags);
    json_t *root = report_to_json(r);
    /* 17 significant digits: every double reads back exactly */
    size_t jf = JSON_REAL_PRECISION(17) | JSON_PRESERVE_ORDER |
                ((flags & SRESID_JSON_INDENT) ? JSON_INDENT(2) : JSON_COMPACT);
    char *s = root ? json_dumps(root, jf) : NULL;
    json_decref(root);
    if (!s)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    *text = s;
    return SRESID_OK;
}

sresid_status sresid_report_json(const sresid_report *r, uint32_t flags, char **json)
{
    if (!json)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_report_json: json is NULL");
    return dump(r, flags, "sresid_report_json", json);
}

sresid_status sresid_report_save_json(const sresid_report *r, uint32_t flags, const char *path)
{
    static const char fn[] = "sresid_report_save_json";
    if (!path || !*path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: path is NULL or empty", fn);
    char *text = NULL;
    sresid_status st = dump(r, flags, fn, &text);
    if (st)
        return st;
    /* a temporary file beside path, renamed over it: never a partial file */
    sresid__afile f;
    st = sresid__afile_open_guarded(&f, path, r->inputs, r->ninputs);
    if (!st) {
        sresid__afile_write(&f, text, strlen(text));
        sresid__afile_write(&f, "\n", 1);
        st = sresid__afile_close(&f, SRESID_OK, 0);
    }
    free(text);
    return st;
}
