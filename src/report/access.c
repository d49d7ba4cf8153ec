/* The report's accessors: its figures copied out by tensor, group, layer
 * and correlation pair, under the options structs' size rule, and the
 * private views json.c reads. */
#include <math.h>
#include <string.h>

#include "report/report.h"

size_t sresid_report_tensor_count(const sresid_report *r)
{
    return r ? r->nt : 0;
}

/* The checks every accessor makes: a report, an output struct whose size
 * covers the 1.0 struct (min_size), and index i below n (noun names what n
 * counts; NULL: no index). */
static sresid_status check_access(const sresid_report *r, const void *out, size_t min_size,
                                  size_t i, size_t n, const char *noun, const char *fn)
{
    size_t size = 0;
    if (!r)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: report is NULL", fn);
    if (out)
        memcpy(&size, out, sizeof size);
    if (!out || size < min_size)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL or its size is too small",
                            fn);
    if (noun && i >= n)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: index %zu out of range (%zu %s)", fn, i,
                            n, noun);
    return SRESID_OK;
}

static void copy_out(void *out, const void *v, size_t vsize)
{
    size_t size;
    memcpy(&size, out, sizeof size);
    memcpy(out, v, size < vsize ? size : vsize);
    memcpy(out, &size, sizeof size); /* keep the caller's size */
}

sresid_status sresid_report_tensor(const sresid_report *r, size_t i, sresid_tensor_report *out)
{
    sresid_status st = check_access(r, out, sizeof *out, i, r ? r->nt : 0, "tensors",
                                    "sresid_report_tensor");
    if (st)
        return st;
    copy_out(out, &r->t[i].fig, sizeof r->t[i].fig);
    return SRESID_OK;
}

sresid_status sresid_report_tensor_kmeans(const sresid_report *r, size_t i, size_t j,
                                          sresid_kmeans_result *out)
{
    static const char fn[] = "sresid_report_tensor_kmeans";
    sresid_status st = check_access(r, out, sizeof *out, 0, 0, NULL, fn);
    if (st)
        return st;
    if (i >= r->nt || j >= r->o.nks)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: index (%zu, %zu) out of range (%zu tensors, %zu K values)",
                            fn, i, j, r->nt, r->o.nks);
    sresid_kmeans_result v = {.size = sizeof v, .k = r->ks[j], .explained = NAN,
                              .explained_random = NAN, .difference = NAN};
    if (r->t[i].km)
        v = r->t[i].km[j];
    copy_out(out, &v, sizeof v);
    return SRESID_OK;
}

static double stat_or_nan(const sresid_report *r, double v)
{
    return (r->o.probes & SRESID_PROBE_MOMENTS) ? v : NAN;
}

static void group_stats(const sresid__rgroup *g, sresid_moment_stats *ms)
{
    memset(ms, 0, sizeof *ms);
    ms->size = sizeof *ms;
    if (sresid_moments_stats(&g->mom, ms) != SRESID_OK)
        ms->mean = ms->variance = ms->skewness = ms->kurtosis = ms->min = ms->max = NAN;
}

sresid_status sresid_report_group(const sresid_report *r, int32_t group_id,
                                  sresid_group_report *out)
{
    static const char fn[] = "sresid_report_group";
    sresid_status st = check_access(r, out, sizeof *out, 0, 0, NULL, fn);
    if (st)
        return st;
    if (group_id != SRESID_GROUP_ALL && (group_id < 0 || group_id >= SRESID_KIND_COUNT))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown group %d", fn, (int)group_id);
    const sresid__rgroup *g = &r->groups[group_id == SRESID_GROUP_ALL ? SLOT_ALL : (size_t)group_id];
    sresid_moment_stats ms;
    group_stats(g, &ms);
    sresid_group_report v = {.size = sizeof v,
                             .group = group_id,
                             .tensors = g->tensors,
                             .count = g->mom.count,
                             .nonfinite = g->mom.nonfinite,
                             .mean = stat_or_nan(r, ms.mean),
                             .variance = stat_or_nan(r, ms.variance),
                             .skewness = stat_or_nan(r, ms.skewness),
                             .kurtosis = stat_or_nan(r, ms.kurtosis),
                             .entropy_bits = g->bits,
                             .entropy_random_bits = g->random_bits,
                             .mean_pr = g->matrices ? g->pr_sum / (double)g->matrices : NAN,
                             .matrices = g->matrices};
    copy_out(out, &v, sizeof v);
    return SRESID_OK;
}

size_t sresid_report_layer_count(const sresid_report *r)
{
    return r ? r->nlayers : 0;
}

sresid_status sresid_report_layer(const sresid_report *r, size_t i, sresid_layer_report *out)
{
    sresid_status st = check_access(r, out, sizeof *out, i, r ? r->nlayers : 0, "layers",
                                    "sresid_report_layer");
    if (st)
        return st;
    const sresid__rgroup *g = &r->layers[i].g;
    sresid_moment_stats ms;
    group_stats(g, &ms);
    sresid_layer_report v = {.size = sizeof v,
                             .layer = r->layers[i].layer,
                             .tensors = g->tensors,
                             .count = g->mom.count,
                             .kurtosis = stat_or_nan(r, ms.kurtosis),
                             .entropy_bits = g->bits,
                             .entropy_random_bits = g->random_bits};
    copy_out(out, &v, sizeof v);
    return SRESID_OK;
}

size_t sresid_report_pair_count(const sresid_report *r)
{
    return r ? r->npairs : 0;
}

sresid_status sresid_report_pair(const sresid_report *r, size_t i, sresid_correlation_report *out)
{
    sresid_status st = check_access(r, out, sizeof *out, i, r ? r->npairs : 0, "pairs",
                                    "sresid_report_pair");
    if (st)
        return st;
    copy_out(out, &r->pairs[i].c, sizeof r->pairs[i].c);
    return SRESID_OK;
}

size_t sresid_report_layer_correlation_count(const sresid_report *r)
{
    return r ? r->nlcorr : 0;
}

sresid_status sresid_report_layer_correlation(const sresid_report *r, size_t i,
                                              sresid_correlation_report *out)
{
    sresid_status st = check_access(r, out, sizeof *out, i, r ? r->nlcorr : 0, "entries",
                                    "sresid_report_layer_correlation");
    if (st)
        return st;
    copy_out(out, &r->lcorr[i].c, sizeof r->lcorr[i].c);
    return SRESID_OK;
}

/* ---- stacks (since 1.1) ---- */

/* The checks of the stack accessors: a report, an index below n, an out. */
static sresid_status check_stack(const sresid_report *r, size_t i, size_t n, const char *noun,
                                 const char **stack, const char *fn)
{
    if (!r || !stack)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (i >= n)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: index %zu out of range (%zu %s)", fn, i,
                            n, noun);
    return SRESID_OK;
}

sresid_status sresid_report_tensor_stack(const sresid_report *r, size_t i, const char **stack)
{
    sresid_status st = check_stack(r, i, r ? r->nt : 0, "tensors", stack,
                                   "sresid_report_tensor_stack");
    if (!st)
        *stack = r->t[i].stack;
    return st;
}

sresid_status sresid_report_layer_stack(const sresid_report *r, size_t i, const char **stack)
{
    sresid_status st = check_stack(r, i, r ? r->nlayers : 0, "layers", stack,
                                   "sresid_report_layer_stack");
    if (!st)
        *stack = r->layers[i].stack;
    return st;
}

sresid_status sresid_report_pair_stack(const sresid_report *r, size_t i, const char **stack)
{
    sresid_status st = check_stack(r, i, r ? r->npairs : 0, "pairs", stack,
                                   "sresid_report_pair_stack");
    if (!st)
        *stack = r->pairs[i].stack;
    return st;
}

sresid_status sresid_report_layer_correlation_stack(const sresid_report *r, size_t i,
                                                    const char **stack)
{
    sresid_status st = check_stack(r, i, r ? r->nlcorr : 0, "entries", stack,
                                   "sresid_report_layer_correlation_stack");
    if (!st)
        *stack = r->lcorr[i].stack;
    return st;
}

/* ---- for json.c ---- */

bool sresid__report_first_last(const sresid_report *r, size_t i)
{
    return i < r->nlcorr && r->lcorr[i].first_last;
}

int32_t sresid__report_source(const sresid_report *r)
{
    return r->source;
}

int32_t sresid__report_layout(const sresid_report *r)
{
    return r->layout;
}

const sresid_report_opts *sresid__report_opts(const sresid_report *r)
{
    return &r->o;
}

const int64_t *sresid__report_shape(const sresid_report *r, size_t i)
{
    return r->t[i].shape;
}

/* Moment statistics (min and max included) of tensor i (what 0), group i
 * (what 1: a kind, or SRESID_KIND_COUNT for all) or layer i (what 2). */
bool sresid__report_stats(const sresid_report *r, int what, size_t i, sresid_moment_stats *out)
{
    sresid__rgroup tmp;
    const sresid__rgroup *g;
    if (what == 0) {
        if (i >= r->nt)
            return false;
        tmp.mom = r->t[i].mom;
        g = &tmp;
    } else if (what == 1) {
        if (i >= NGROUPS)
            return false;
        g = &r->groups[i];
    } else {
        if (i >= r->nlayers)
            return false;
        g = &r->layers[i].g;
    }
    group_stats(g, out);
    return true;
}

size_t sresid__report_skipped(const sresid_report *r, size_t i, const char **name,
                              const char **why)
{
    if (i < r->nskip) {
        *name = r->skip[i].name;
        *why = r->skip[i].why;
    }
    return r->nskip;
}
