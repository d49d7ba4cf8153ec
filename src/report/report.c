/* The residual report: every probe over a residual or one model, grouped by
 * tensor, kind, layer and overall.
 *
 * Tensors stream through per-worker buffers in up to three passes, each a
 * plan for the job engine (util/jobs.h), largest tensors first, progress
 * reported on the calling thread, the first failing job in report order
 * giving the error:
 *   1. per tensor: moments, entropy, sparsity, and for matrices PR,
 *      low-frequency power, k-means and the permutation nulls;
 *   2. per tensor again: pooled histograms of its kind, its layer and "all"
 *      over the ranges pass 1 found (entropy needs [min, max] first), and
 *      the entropy baselines, one per distinct count;
 *   3. per pair of same-role tensors in adjacent layers of one stack (and
 *      its first vs last layer): Pearson r.
 * A layer is (stack, index) (util.h, sresid__layer_role): an encoder's
 * layer 0 is not its decoder's.
 * Group moments merge the tensors' states in tensor order and seeds come
 * from names, so the figures do not depend on the thread count or on
 * scheduling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "util/blas.h"
#include "util/jobs.h"

/* Pass 2 gives each worker its own histograms; fewer workers when those
 * would take more than this many bytes together. */
#define HIST_BUDGET ((size_t)256 << 20)

/* ---- seeds ---- */

/* A tensor's seed follows its name (FNV-1a), not its position, so filtering
 * or reordering tensors does not change any other tensor's figures. */

/* Per-probe streams (docs/probes.md, "Seeds"). */
enum { SEED_ENTROPY = 1, SEED_KMEANS = 2, SEED_NULL_PR = 3, SEED_NULL_LOWFREQ = 4 };

static uint64_t sub_seed(uint64_t base, int which)
{
    return sresid__mix64(base + (uint64_t)which);
}

/* Every entropy baseline of a run draws from one fixed seed, so it depends
 * only on the count: equal counts (same-shape tensors, equal layers) share
 * one computation. */
static uint64_t baseline_seed(uint64_t seed)
{
    return sub_seed(sresid__mix64(seed), SEED_ENTROPY);
}

/* ---- options ---- */

static const int32_t default_ks[] = {2, 4, 8, 16};

static sresid_status resolve_opts(const sresid_report_opts *opts, sresid_report *r)
{
    static const char fn[] = "sresid_report";
    sresid_report_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (o.probes & ~SRESID_PROBE_ALL)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown probe bits 0x%x", fn,
                            (unsigned)(o.probes & ~SRESID_PROBE_ALL));
    if (o.kinds & ~((1u << SRESID_KIND_COUNT) - 1))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown kind bits 0x%x", fn,
                            (unsigned)o.kinds);
    if (o.flags & ~SRESID_REPORT_FAIL_NONFINITE)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)o.flags);
    if (o.bins < 0 || o.bins > MAX_BINS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: bins %d is not in [1, %d]", fn,
                            (int)o.bins, MAX_BINS);
    if (!(o.band >= 0 && o.band <= 1)) /* also NaN */
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: band %g is not in (0, 1]", fn, o.band);
    if (o.null_draws < 0 || o.null_draws > MAX_DRAWS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: null_draws %d is not in [0, %d]", fn,
                            (int)o.null_draws, MAX_DRAWS);
    if (o.kmeans_restarts < 0 || o.kmeans_restarts > SRESID_KMEANS_MAX_INIT)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: kmeans_restarts %d is not in [0, %d]",
                            fn, (int)o.kmeans_restarts, SRESID_KMEANS_MAX_INIT);
    if (o.threads < 0 || o.threads > 4096)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: threads %d is not in [0, 4096]", fn,
                            (int)o.threads);
    if (!o.ks && o.nks)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: ks is NULL but nks is %zu", fn,
                            o.nks);
    if (o.ks && (o.nks == 0 || o.nks > MAX_KS))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: nks %zu is not in [1, %d]", fn,
                            o.nks, MAX_KS);
    const int32_t *ks = o.ks ? o.ks : default_ks;
    size_t nks = o.ks ? o.nks : sizeof default_ks / sizeof default_ks[0];
    for (size_t i = 0; i < nks; i++) {
        if (ks[i] < 1 || ks[i] > 65536)
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: ks[%zu] = %d is not in [1, 65536]",
                                fn, i, (int)ks[i]);
        r->ks[i] = ks[i];
    }
    o.size = sizeof o;
    o.probes = o.probes ? o.probes : SRESID_PROBE_ALL;
    o.kinds = o.kinds ? o.kinds : (1u << SRESID_KIND_COUNT) - 1;
    o.bins = o.bins ? o.bins : 100;
    o.band = o.band > 0 ? o.band : 0.125;
    o.ks = r->ks;
    o.nks = nks;
    o.threads = o.threads ? o.threads : sresid_get_threads();
    r->o = o;
    return SRESID_OK;
}

/* ---- the run: three plans for the job engine ---- */

enum { PASS_PROBE, PASS_POOL, PASS_CORR };

typedef struct cjob {
    size_t a, b; /* report tensors, layer a < layer b */
    double r;
} cjob;

typedef struct baseline {
    uint64_t count; /* draws */
    double bits;
} baseline;

typedef struct worker worker;

typedef struct run {
    sresid_report *r;
    const sresid_residual *res; /* one of these two */
    const sresid_model *model;
    sresid_progress_fn progress; /* the caller's, for the run only */
    void *progress_user;
    sresid_monitor_fn monitor;
    void *monitor_user;
    sresid__watch watch;         /* progress over all passes */
    size_t cap;      /* floats in the largest tensor */
    int32_t threads; /* resolved */
    worker *w;
    int nalloc;      /* workers allocated */
    /* pass 2 */
    size_t nslots;   /* kinds, all, then one per layer */
    double *lo, *hi; /* a slot's histogram range; lo >= hi: no histogram */
    baseline *bl;    /* entropy baselines, by count descending: pass 2 jobs 0 .. nbl-1 */
    size_t nbl;
    /* pass 3 */
    cjob *cj;
    size_t ncj;
    size_t nadjacent; /* cj[0..nadjacent) adjacent pairs, then first vs last */
    int pass;        /* the current pass */
} run;

struct worker {
    run *u;
    float *buf[2];
    sresid_histogram **hist; /* pass 2: nslots entries, made on first use */
};

static sresid_status nomem(void)
{
    return sresid__fail(SRESID_ERR_NOMEM, "report: out of memory");
}

static sresid_status get_buf(worker *w, int k, float **out)
{
    if (!w->buf[k]) {
        size_t n = w->u->cap ? w->u->cap : 1;
        w->buf[k] = malloc(n * sizeof(float));
        if (!w->buf[k])
            return sresid__fail(SRESID_ERR_NOMEM, "report: cannot allocate a buffer of %zu floats",
                                n);
    }
    *out = w->buf[k];
    return SRESID_OK;
}

static sresid_status read_tensor(const run *u, const sresid__rtensor *t, float *dst)
{
    sresid_status st = u->res ? sresid_residual_read(u->res, t->src, dst, u->cap ? u->cap : 1)
                              : sresid_model_read_f32(u->model, t->src, dst, u->cap ? u->cap : 1);
    return st;
}

static sresid_status probe_fail(sresid_status st, const sresid__rtensor *t, const char *probe)
{
    return sresid__fail(st, "tensor '%s': %s: %s", t->name, probe, sresid_last_error());
}

static bool probe_on(const run *u, uint32_t bit)
{
    return (u->r->o.probes & bit) != 0;
}

/* Histogram entropy of n values over [min, max] of a state's finite values
 * (the baseline comes in pass 2). */
static sresid_status entropy_of(const float *x, size_t n, const sresid_moments *m, int32_t bins,
                                double *bits)
{
    *bits = NAN;
    if (m->count == 0)
        return SRESID_OK;
    if (!(m->min < m->max)) { /* one value, one bin */
        *bits = 0;
        return SRESID_OK;
    }
    sresid_histogram *h = NULL;
    sresid_status st = sresid_histogram_create(bins, m->min, m->max, &h);
    if (!st)
        st = sresid_histogram_add(h, x, 1, (int64_t)n, (int64_t)n);
    if (!st)
        st = sresid_histogram_entropy(h, bits);
    sresid_histogram_free(h);
    return st;
}

/* The permutation null of one matrix probe: its mean, std and z. */
static sresid_status null_of(const run *u, const sresid__rtensor *t, const float *x, int32_t probe,
                             int which_seed, const char *label, double *mean, double *std,
                             double *z)
{
    const sresid_report_opts *o = &u->r->o;
    int64_t m = t->fig.rows, n = t->fig.cols;
    sresid_null_result nr = {.size = sizeof nr};
    sresid_status st = sresid_permutation_null(probe, x, m, n, n,
                                               probe == SRESID_PROBE_LOWFREQ ? o->band : 0,
                                               o->null_draws, sub_seed(t->seed, which_seed), &nr);
    if (st)
        return probe_fail(st, t, label);
    *mean = nr.mean;
    *std = nr.std;
    *z = nr.z;
    return SRESID_OK;
}

static sresid_status matrix_probes(const run *u, sresid__rtensor *t, const float *x)
{
    sresid_tensor_report *f = &t->fig;
    const sresid_report_opts *o = &u->r->o;
    int64_t m = f->rows, n = f->cols;
    sresid_status st;
    if (probe_on(u, SRESID_PROBE_PR)) {
        st = sresid_participation_ratio(x, m, n, n, &f->pr, &f->pr_normalized);
        if (st)
            return probe_fail(st, t, "participation ratio");
    }
    if (probe_on(u, SRESID_PROBE_LOWFREQ)) {
        st = sresid_lowfreq_ratio(x, m, n, n, o->band, &f->lowfreq_ratio);
        if (st)
            return probe_fail(st, t, "low-frequency power");
    }
    if (probe_on(u, SRESID_PROBE_KMEANS)) {
        sresid_kmeans_opts ko = {.size = sizeof ko,
                                 .seed = sub_seed(t->seed, SEED_KMEANS),
                                 .n_init = o->kmeans_restarts ? o->kmeans_restarts
                                                              : SRESID_KMEANS_INIT_AUTO};
        for (size_t j = 0; j < o->nks; j++)
            t->km[j].size = sizeof t->km[j];
        st = sresid_kmeans_explained(x, m, n, n, o->ks, o->nks, &ko, t->km);
        if (st)
            return probe_fail(st, t, "k-means");
    }
    if (o->null_draws > 0 && probe_on(u, SRESID_PROBE_PR) &&
        (st = null_of(u, t, x, SRESID_PROBE_PR, SEED_NULL_PR, "participation ratio null",
                      &f->pr_null_mean, &f->pr_null_std, &f->pr_null_z)))
        return st;
    if (o->null_draws > 0 && probe_on(u, SRESID_PROBE_LOWFREQ) &&
        (st = null_of(u, t, x, SRESID_PROBE_LOWFREQ, SEED_NULL_LOWFREQ, "low-frequency null",
                      &f->lowfreq_null_mean, &f->lowfreq_null_std, &f->lowfreq_null_z)))
        return st;
    return SRESID_OK;
}

/* Pass 1: everything about one tensor. */
static sresid_status probe_tensor(worker *w, size_t j)
{
    run *u = w->u;
    sresid__rtensor *t = &u->r->t[j];
    sresid_tensor_report *f = &t->fig;
    const sresid_report_opts *o = &u->r->o;
    float *x = NULL;
    sresid_status st = get_buf(w, 0, &x);
    if (!st)
        st = read_tensor(u, t, x);
    if (st)
        return st;
    size_t n = (size_t)t->numel;
    int64_t ld = n ? (int64_t)n : 1;

    st = sresid_moments_init(&t->mom);
    if (!st)
        st = sresid_moments_add(&t->mom, x, n ? 1 : 0, (int64_t)n, ld);
    if (st)
        return probe_fail(st, t, "moments");
    if (t->mom.nonfinite && (o->flags & SRESID_REPORT_FAIL_NONFINITE))
        return sresid__fail(SRESID_ERR_NONFINITE,
                            "tensor '%s': %llu non-finite values (NaN or Inf)", t->name,
                            (unsigned long long)t->mom.nonfinite);
    f->count = t->mom.count;
    f->nonfinite = t->mom.nonfinite;
    if (probe_on(u, SRESID_PROBE_MOMENTS)) {
        sresid_moment_stats ms = {.size = sizeof ms};
        st = sresid_moments_stats(&t->mom, &ms);
        if (st)
            return probe_fail(st, t, "moments");
        f->mean = ms.mean;
        f->variance = ms.variance;
        f->skewness = ms.skewness;
        f->kurtosis = ms.kurtosis;
    }
    if (probe_on(u, SRESID_PROBE_ENTROPY)) {
        st = entropy_of(x, n, &t->mom, o->bins, &f->entropy_bits);
        if (st)
            return probe_fail(st, t, "entropy");
    }
    if (sresid__job_stopping())
        return sresid__job_stopped();
    /* Matrix probes need every value: a tensor with non-finite ones keeps
     * NaN figures there (its nonfinite count says why). */
    if (f->is_matrix && n > 0 && t->mom.nonfinite == 0) {
        st = matrix_probes(u, t, x);
        if (st)
            return st;
    }
    if (probe_on(u, SRESID_PROBE_SPARSITY) && t->mom.count > 0) { /* it skips non-finite values */
        sresid_sparsity_result sp = {.size = sizeof sp};
        st = sresid_sparsity(x, 1, (int64_t)n, ld, &sp);
        if (st)
            return probe_fail(st, t, "sparsity");
        memcpy(f->elements_for_energy, sp.elements_for_energy, sizeof sp.elements_for_energy);
        f->hoyer = sp.hoyer;
        memcpy(f->energy_in_top, sp.energy_in_top, sizeof sp.energy_in_top);
    }
    return SRESID_OK;
}

/* Pass 2: add one tensor to the histograms of its kind, its layer and all. */
static sresid_status pool_tensor(worker *w, size_t j)
{
    run *u = w->u;
    const sresid__rtensor *t = &u->r->t[j];
    if (t->mom.count == 0)
        return SRESID_OK;
    size_t slots[3] = {(size_t)t->fig.kind, SLOT_ALL, SIZE_MAX}, ns = 0;
    if (t->layer_slot != SIZE_MAX)
        slots[2] = NGROUPS + t->layer_slot;
    for (int k = 0; k < 3; k++)
        if (slots[k] != SIZE_MAX && u->lo[slots[k]] < u->hi[slots[k]])
            slots[ns++] = slots[k];
    if (ns == 0)
        return SRESID_OK;
    float *x = NULL;
    sresid_status st = get_buf(w, 0, &x);
    if (!st)
        st = read_tensor(u, t, x);
    if (st)
        return st;
    int64_t n = t->numel;
    for (size_t k = 0; k < ns; k++) {
        size_t s = slots[k];
        if (!w->hist[s]) {
            st = sresid_histogram_create(u->r->o.bins, u->lo[s], u->hi[s], &w->hist[s]);
            if (st)
                return probe_fail(st, t, "pooled histogram");
        }
        st = sresid_histogram_add(w->hist[s], x, 1, n, n);
        if (st)
            return probe_fail(st, t, "pooled histogram");
    }
    return SRESID_OK;
}

/* Pass 3: Pearson r of two same-shape tensors. */
static sresid_status correlate(worker *w, size_t j)
{
    run *u = w->u;
    cjob *c = &u->cj[j];
    const sresid__rtensor *a = &u->r->t[c->a], *b = &u->r->t[c->b];
    float *x = NULL, *y = NULL;
    sresid_status st = get_buf(w, 0, &x);
    if (!st)
        st = get_buf(w, 1, &y);
    if (!st)
        st = read_tensor(u, a, x);
    if (!st)
        st = read_tensor(u, b, y);
    if (!st) {
        st = sresid_correlation(x, y, (size_t)a->numel, &c->r);
        if (st)
            return sresid__fail(st, "tensors '%s' and '%s': correlation: %s", a->name, b->name,
                                sresid_last_error());
    }
    return st;
}

/* Pass 2, first jobs: one entropy baseline per distinct count. */
static sresid_status draw_baseline(worker *w, size_t j)
{
    run *u = w->u;
    sresid_status st = sresid_entropy_random(u->bl[j].count, u->r->o.bins,
                                             baseline_seed(u->r->o.seed), &u->bl[j].bits);
    if (st)
        return sresid__fail(st, "entropy baseline of %llu values: %s",
                            (unsigned long long)u->bl[j].count, sresid_last_error());
    return SRESID_OK;
}

static sresid_status do_job(worker *w, size_t j)
{
    run *u = w->u;
    switch (u->pass) {
    case PASS_PROBE: return probe_tensor(w, j);
    case PASS_POOL: return j < u->nbl ? draw_baseline(w, j) : pool_tensor(w, j - u->nbl);
    default: return correlate(w, j);
    }
}

static sresid_status job_run(void *ctx, size_t j, int wi)
{
    run *u = ctx;
    return do_job(&u->w[wi], j);
}

/* Baselines are not units of progress: their number is known only after
 * pass 1, and total is promised fixed. */
static const char *job_label(void *ctx, size_t j)
{
    const run *u = ctx;
    switch (u->pass) {
    case PASS_PROBE: return u->r->t[j].name;
    case PASS_POOL: return j < u->nbl ? NULL : u->r->t[j - u->nbl].name;
    default: return u->r->t[u->cj[j].b].name;
    }
}

/* The cost of a job: the values it reads (a baseline: those it draws). */
static uint64_t job_cost(const run *u, size_t j)
{
    switch (u->pass) {
    case PASS_PROBE: return (uint64_t)u->r->t[j].numel;
    case PASS_POOL: return j < u->nbl ? u->bl[j].count : (uint64_t)u->r->t[j - u->nbl].numel;
    default: return 2 * (uint64_t)u->r->t[u->cj[j].a].numel;
    }
}

/* Run the njobs jobs of a pass through the job engine on at most nworkers
 * workers; progress goes to the caller's callback on this thread. */
static sresid_status run_pass(run *u, int pass, size_t njobs, int nworkers)
{
    u->pass = pass;
    uint64_t *cost = malloc((njobs ? njobs : 1) * sizeof *cost);
    if (!cost)
        return nomem();
    for (size_t j = 0; j < njobs; j++)
        cost[j] = job_cost(u, j);
    sresid__plan p = {.njobs = njobs, .cost = cost, .run = job_run, .ctx = u,
                      .watch = &u->watch, .label = job_label};
    sresid__plan_threads(&p, u->threads);
    if (p.workers > nworkers) { /* fewer workers than threads: BLIS gets the rest */
        p.workers = nworkers;
        p.blas_threads = u->threads / nworkers > 1 ? u->threads / nworkers : 1;
    }
    sresid_status st = sresid__plan_run(&p);
    free(cost);
    return st;
}

/* ---- building the report ---- */

static void fig_init(sresid_tensor_report *f)
{
    f->mean = f->variance = f->skewness = f->kurtosis = NAN;
    f->entropy_bits = f->entropy_random_bits = NAN;
    f->pr = f->pr_normalized = f->lowfreq_ratio = f->hoyer = NAN;
    for (int i = 0; i < 3; i++)
        f->elements_for_energy[i] = f->energy_in_top[i] = NAN;
    f->pr_null_mean = f->pr_null_std = f->pr_null_z = NAN;
    f->lowfreq_null_mean = f->lowfreq_null_std = f->lowfreq_null_z = NAN;
}

static void group_init(sresid__rgroup *g)
{
    sresid_moments_init(&g->mom);
    g->tensors = g->matrices = 0;
    g->pr_sum = 0;
    g->bits = g->random_bits = NAN;
}

void sresid_report_free(sresid_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nt; i++) {
        free(r->t[i].name);
        free(r->t[i].role);
        free(r->t[i].stack);
        free(r->t[i].shape);
        free(r->t[i].km);
    }
    for (size_t i = 0; i < r->nskip; i++)
        free(r->skip[i].name);
    free(r->t);
    free(r->layers);
    free(r->pairs);
    free(r->lcorr);
    free(r->skip);
    free(r->inputs);
    free(r);
}

static sresid_status add_skipped(sresid_report *r, size_t cap, const char *name, const char *why)
{
    if (r->nskip >= cap)
        return SRESID_OK;
    char *s = strdup(name);
    if (!s)
        return nomem();
    r->skip[r->nskip++] = (sresid__rskipped){s, why};
    return SRESID_OK;
}

/* Append a tensor to the report from its model facts. */
static sresid_status add_tensor(sresid_report *r, const sresid_tensor_info *info,
                                const char *stack, size_t src)
{
    sresid__rtensor *t = &r->t[r->nt];
    memset(t, 0, sizeof *t);
    t->name = strdup(info->name);
    t->role = strdup(info->role);
    t->stack = strdup(stack);
    t->shape = malloc((info->ndim ? (size_t)info->ndim : 1) * sizeof *t->shape);
    /* A view with a single row or column (a 1x1 convolution read out-first,
     * say) has no matrix structure to probe. */
    bool matrix = info->ndim >= 2 && info->rows >= 2 && info->cols >= 2;
    bool kmeans = matrix && (r->o.probes & SRESID_PROBE_KMEANS);
    if (kmeans)
        t->km = calloc(r->o.nks, sizeof *t->km);
    if (!t->name || !t->role || !t->stack || !t->shape || (kmeans && !t->km)) {
        free(t->name);
        free(t->role);
        free(t->stack);
        free(t->shape);
        free(t->km);
        return nomem();
    }
    if (info->ndim)
        memcpy(t->shape, info->shape, (size_t)info->ndim * sizeof *t->shape);
    t->numel = info->numel;
    t->src = src;
    t->layer_slot = SIZE_MAX;
    t->seed = sresid__mix64(r->o.seed ^ sresid__fnv1a(info->name));
    sresid_tensor_report *f = &t->fig;
    f->size = sizeof *f;
    f->name = t->name;
    f->role = t->role;
    f->kind = info->kind;
    f->layer = info->layer;
    f->ndim = info->ndim;
    f->is_matrix = matrix;
    f->rows = info->rows;
    f->cols = info->cols;
    fig_init(f);
    for (size_t j = 0; t->km && j < r->o.nks; j++)
        t->km[j] = (sresid_kmeans_result){.size = sizeof t->km[j], .k = r->ks[j],
                                          .explained = NAN, .explained_random = NAN,
                                          .difference = NAN};
    r->nt++;
    return SRESID_OK;
}

static bool kind_wanted(const sresid_report *r, int32_t kind)
{
    return kind >= 0 && kind < SRESID_KIND_COUNT && (r->o.kinds & (1u << kind));
}

static sresid_status tensor_facts(const sresid_model *m, size_t i, sresid_tensor_info *info,
                                  const char **stack)
{
    memset(info, 0, sizeof *info);
    info->size = sizeof *info;
    sresid_status st = sresid_model_tensor_info(m, i, info);
    return st ? st : sresid_model_tensor_stack(m, i, stack);
}

static sresid_status collect_residual(sresid_report *r, const sresid_residual *res)
{
    const sresid_model *base = sresid__residual_base(res);
    size_t n = sresid_residual_count(res), nu = sresid_residual_unpaired_count(res);
    r->t = calloc(n ? n : 1, sizeof *r->t);
    r->skip = calloc(nu ? nu : 1, sizeof *r->skip);
    if (!r->t || !r->skip)
        return nomem();
    r->layout = base ? base->layout : SRESID_LAYOUT_OUT_FIRST;
    for (size_t i = 0; i < n; i++) {
        size_t bi, ti;
        sresid_status st = sresid_residual_pair(res, i, &bi, &ti);
        if (st)
            return st;
        if (!base || bi >= base->count)
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "report: the residual's base model is not reachable");
        sresid_tensor_info info;
        const char *stack = NULL;
        st = tensor_facts(base, bi, &info, &stack);
        if (st)
            return st;
        if (!kind_wanted(r, info.kind))
            continue;
        st = add_tensor(r, &info, stack, i);
        if (st)
            return st;
    }
    for (size_t i = 0; i < nu; i++) {
        const char *name, *why = "not a float tensor";
        int32_t reason;
        sresid_status st = sresid_residual_unpaired(res, i, &name, &reason);
        if (st)
            return st;
        if (reason == SRESID_UNPAIRED_BASE_ONLY)
            why = "only in base";
        else if (reason == SRESID_UNPAIRED_TRAINED_ONLY)
            why = "only in trained";
        else if (reason == SRESID_UNPAIRED_SHAPE)
            why = "shapes differ";
        st = add_skipped(r, nu, name, why);
        if (st)
            return st;
    }
    return SRESID_OK;
}

static sresid_status collect_model(sresid_report *r, const sresid_model *m)
{
    size_t n = sresid_model_tensor_count(m);
    r->t = calloc(n ? n : 1, sizeof *r->t);
    r->skip = calloc(n ? n : 1, sizeof *r->skip);
    if (!r->t || !r->skip)
        return nomem();
    r->layout = m->layout;
    for (size_t i = 0; i < n; i++) {
        sresid_tensor_info info;
        const char *stack = NULL;
        sresid_status st = tensor_facts(m, i, &info, &stack);
        if (st)
            return st;
        if (!sresid_dtype_is_float(info.dtype)) {
            st = add_skipped(r, n, info.name, "not a float tensor");
            if (st)
                return st;
            continue;
        }
        if (!kind_wanted(r, info.kind))
            continue;
        st = add_tensor(r, &info, stack, i);
        if (st)
            return st;
    }
    return SRESID_OK;
}

/* Layers sort by stack (bytes), then index. */
static int cmp_stack_layer(const sresid__rtensor *x, const sresid__rtensor *y)
{
    int c = strcmp(x->stack, y->stack);
    if (c)
        return c;
    return (x->fig.layer > y->fig.layer) - (x->fig.layer < y->fig.layer);
}

static int cmp_tensor_layer(const void *a, const void *b, void *ctx)
{
    const sresid__rtensor *t = ctx;
    return cmp_stack_layer(&t[*(const size_t *)a], &t[*(const size_t *)b]);
}

/* The distinct layers (stack, index), sorted, each tensor's slot among them,
 * each stack's range of slots, and where each layer's correlation entries
 * go: *nentries gets their number (a stack of n >= 2 layers has n). */
static sresid_status find_layers(sresid_report *r, size_t *nentries)
{
    size_t *idx = malloc((r->nt ? r->nt : 1) * sizeof *idx), n = 0;
    r->layers = calloc(r->nt ? r->nt : 1, sizeof *r->layers);
    if (!idx || !r->layers) {
        free(idx);
        return nomem();
    }
    for (size_t i = 0; i < r->nt; i++)
        if (r->t[i].fig.layer >= 0)
            idx[n++] = i;
    qsort_r(idx, n, sizeof *idx, cmp_tensor_layer, r->t);
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        sresid__rtensor *t = &r->t[idx[i]];
        if (i == 0 || cmp_stack_layer(&r->t[idx[i - 1]], t) != 0) {
            sresid__rlayer *l = &r->layers[d++];
            l->stack = t->stack;
            l->layer = t->fig.layer;
            group_init(&l->g);
        }
        t->layer_slot = d - 1;
    }
    free(idx);
    r->nlayers = d;
    size_t e = 0;
    for (size_t f = 0, end; f < d; f = end) {
        for (end = f + 1; end < d && strcmp(r->layers[end].stack, r->layers[f].stack) == 0;)
            end++;
        for (size_t s = f; s < end; s++) {
            r->layers[s].first = f;
            r->layers[s].end = end;
            r->layers[s].lc = e + (s - f);
        }
        if (end - f >= 2)
            e += end - f;
    }
    *nentries = e;
    return SRESID_OK;
}

/* Sorting tensors by (stack, role, layer) puts each role's layers side by side. */
static int cmp_role_layer(const void *a, const void *b, void *ctx)
{
    const sresid__rtensor *t = ctx;
    const sresid__rtensor *x = &t[*(const size_t *)a], *y = &t[*(const size_t *)b];
    int c = strcmp(x->stack, y->stack);
    if (!c)
        c = strcmp(x->role, y->role);
    if (c)
        return c;
    return (x->fig.layer > y->fig.layer) - (x->fig.layer < y->fig.layer);
}

static bool same_role(const sresid__rtensor *a, const sresid__rtensor *b)
{
    return strcmp(a->stack, b->stack) == 0 && strcmp(a->role, b->role) == 0;
}

static bool same_shape(const sresid__rtensor *a, const sresid__rtensor *b)
{
    if (a->fig.ndim != b->fig.ndim)
        return false;
    for (int32_t d = 0; d < a->fig.ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static int cmp_cjob(const void *pa, const void *pb, void *ctx)
{
    const sresid__rtensor *t = ctx;
    const cjob *a = pa, *b = pb;
    size_t la = t[a->a].layer_slot, lb = t[b->a].layer_slot;
    if (la != lb)
        return (la > lb) - (la < lb);
    return (a->a > b->a) - (a->a < b->a);
}

/* Correlation jobs, within each stack: per role, each pair of adjacent
 * layers it has in the same shape; then, for stacks of three layers or
 * more, first vs last layer (with two layers that is the adjacent pair
 * itself). Tensors of different stacks are never paired. */
static sresid_status plan_correlation(run *u)
{
    sresid_report *r = u->r;
    size_t *idx = malloc(r->nt * sizeof *idx), n = 0;
    u->cj = malloc(2 * r->nt * sizeof *u->cj);
    if (!idx || !u->cj) {
        free(idx);
        return nomem();
    }
    for (size_t i = 0; i < r->nt; i++)
        if (r->t[i].fig.layer >= 0)
            idx[n++] = i;
    qsort_r(idx, n, sizeof *idx, cmp_role_layer, r->t);
    for (size_t i = 0; i + 1 < n; i++) {
        const sresid__rtensor *a = &r->t[idx[i]], *b = &r->t[idx[i + 1]];
        if (same_role(a, b) && b->layer_slot == a->layer_slot + 1 && same_shape(a, b))
            u->cj[u->ncj++] = (cjob){idx[i], idx[i + 1], NAN};
    }
    qsort_r(u->cj, u->ncj, sizeof *u->cj, cmp_cjob, r->t);
    u->nadjacent = u->ncj;
    for (size_t i = 0; i < n;) {
        size_t e = i + 1;
        while (e < n && same_role(&r->t[idx[e]], &r->t[idx[i]]))
            e++;
        const sresid__rtensor *a = &r->t[idx[i]], *b = &r->t[idx[e - 1]];
        const sresid__rlayer *la = &r->layers[a->layer_slot];
        if (la->end - la->first > 2 && a->layer_slot == la->first &&
            b->layer_slot == la->end - 1 && same_shape(a, b))
            u->cj[u->ncj++] = (cjob){idx[i], idx[e - 1], NAN};
        i = e;
    }
    free(idx);
    return SRESID_OK;
}

/* Per-role entries, then per stack of two layers or more one entry per
 * adjacent pair of its layers and a final first-vs-last entry: as many
 * entries as the stack has layers, whatever pairs exist (r NaN and pairs 0
 * where no role has a same-shape tensor in both). */
static sresid_status finish_correlation(run *u, size_t nentries)
{
    sresid_report *r = u->r;
    r->pairs = calloc(u->nadjacent ? u->nadjacent : 1, sizeof *r->pairs);
    r->lcorr = calloc(nentries ? nentries : 1, sizeof *r->lcorr);
    if (!r->pairs || !r->lcorr)
        return nomem();
    for (size_t s = 0; s < r->nlayers; s++) { /* r holds the sum until the division below */
        const sresid__rlayer *l = &r->layers[s];
        if (l->end - l->first < 2)
            continue;
        bool last = s + 1 == l->end;
        r->lcorr[l->lc] = (sresid__rcorr){
            .c = {.size = sizeof r->lcorr[0].c, .layer_a = r->layers[last ? l->first : s].layer,
                  .layer_b = r->layers[last ? s : s + 1].layer},
            .stack = l->stack, .first_last = last};
    }
    for (size_t j = 0; j < u->ncj; j++) {
        const cjob *c = &u->cj[j];
        const sresid__rtensor *a = &r->t[c->a], *b = &r->t[c->b];
        const sresid__rlayer *la = &r->layers[a->layer_slot];
        bool adjacent = j < u->nadjacent;
        if (adjacent)
            r->pairs[r->npairs++] = (sresid__rcorr){
                .c = {.size = sizeof r->pairs[0].c, .role = a->role, .layer_a = a->fig.layer,
                      .layer_b = b->fig.layer, .r = c->r, .pairs = 1},
                .stack = a->stack};
        /* with two layers the adjacent pairs are also first vs last */
        size_t fl = r->layers[la->end - 1].lc;
        size_t e = adjacent ? la->lc : fl;
        for (int k = 0; k < (adjacent && la->end - la->first == 2 ? 2 : 1); k++, e = fl)
            if (isfinite(c->r)) { /* a constant residual has no r: left out */
                r->lcorr[e].c.r += c->r;
                r->lcorr[e].c.pairs++;
            }
    }
    for (size_t i = 0; i < nentries; i++)
        r->lcorr[i].c.r = r->lcorr[i].c.pairs ? r->lcorr[i].c.r / (double)r->lcorr[i].c.pairs : NAN;
    r->nlcorr = nentries;
    return SRESID_OK;
}

static void merge_into(sresid__rgroup *g, const sresid__rtensor *t)
{
    sresid_moments_merge(&g->mom, &t->mom);
    g->tensors++;
    if (t->fig.is_matrix && isfinite(t->fig.pr)) {
        g->pr_sum += t->fig.pr;
        g->matrices++;
    }
}

static sresid__rgroup *slot_group(sresid_report *r, size_t s)
{
    return s < NGROUPS ? &r->groups[s] : &r->layers[s - NGROUPS].g;
}

static sresid_status plan_pool(run *u)
{
    sresid_report *r = u->r;
    u->nslots = NGROUPS + r->nlayers;
    u->lo = malloc(u->nslots * sizeof *u->lo);
    u->hi = malloc(u->nslots * sizeof *u->hi);
    if (!u->lo || !u->hi)
        return nomem();
    for (size_t s = 0; s < u->nslots; s++) {
        const sresid__rgroup *g = slot_group(r, s);
        u->lo[s] = g->mom.count ? g->mom.min : 0;
        u->hi[s] = g->mom.count ? g->mom.max : 0;
    }
    for (int i = 0; i < u->nalloc; i++) {
        u->w[i].hist = calloc(u->nslots, sizeof *u->w[i].hist);
        if (!u->w[i].hist)
            return nomem();
    }
    return SRESID_OK;
}

static int cmp_count_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* The distinct counts that need a baseline: every non-constant tensor,
 * group and layer (a constant has entropy 0 and no baseline). Largest
 * first, so the longest draws start first. */
static sresid_status plan_baselines(run *u)
{
    sresid_report *r = u->r;
    size_t cap = r->nt + u->nslots, n = 0;
    uint64_t *c = malloc(cap * sizeof *c);
    if (!c)
        return nomem();
    for (size_t i = 0; i < r->nt; i++)
        if (r->t[i].mom.count && r->t[i].mom.min < r->t[i].mom.max)
            c[n++] = r->t[i].mom.count;
    for (size_t s = 0; s < u->nslots; s++)
        if (u->lo[s] < u->hi[s])
            c[n++] = slot_group(r, s)->mom.count;
    qsort(c, n, sizeof *c, cmp_count_desc);
    u->bl = malloc((n ? n : 1) * sizeof *u->bl);
    if (!u->bl) {
        free(c);
        return nomem();
    }
    for (size_t i = 0; i < n; i++)
        if (i == 0 || c[i] != c[i - 1])
            u->bl[u->nbl++] = (baseline){c[i], NAN};
    free(c);
    return SRESID_OK;
}

static double baseline_of(const run *u, uint64_t count)
{
    size_t lo = 0, hi = u->nbl; /* bl is sorted by count, descending */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->bl[mid].count == count)
            return u->bl[mid].bits;
        if (u->bl[mid].count > count)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NAN;
}

/* Merge the workers' histograms per slot and read the entropies. */
static sresid_status finish_pool(run *u)
{
    sresid_report *r = u->r;
    for (size_t s = 0; s < u->nslots; s++) {
        sresid__rgroup *g = slot_group(r, s);
        if (g->mom.count == 0)
            continue;
        if (!(u->lo[s] < u->hi[s])) {
            g->bits = 0;
            continue;
        }
        sresid_histogram *h = NULL;
        for (int i = 0; i < u->nalloc; i++) {
            sresid_histogram *wh = u->w[i].hist[s];
            if (!wh)
                continue;
            if (!h) {
                h = wh;
                continue;
            }
            sresid_status st = sresid_histogram_merge(h, wh);
            if (st)
                return st;
        }
        if (h) {
            sresid_status st = sresid_histogram_entropy(h, &g->bits);
            if (st)
                return st;
        }
        g->random_bits = baseline_of(u, g->mom.count);
    }
    for (size_t i = 0; i < r->nt; i++) {
        sresid__rtensor *t = &r->t[i];
        if (t->mom.count && t->mom.min < t->mom.max)
            t->fig.entropy_random_bits = baseline_of(u, t->mom.count);
    }
    return SRESID_OK;
}

static void run_free(run *u)
{
    for (int i = 0; u->w && i < u->nalloc; i++) {
        free(u->w[i].buf[0]);
        free(u->w[i].buf[1]);
        if (u->w[i].hist)
            for (size_t s = 0; s < u->nslots; s++)
                sresid_histogram_free(u->w[i].hist[s]);
        free(u->w[i].hist);
    }
    free(u->w);
    free(u->lo);
    free(u->hi);
    free(u->cj);
    free(u->bl);
}

static sresid_status build(run *u)
{
    sresid_report *r = u->r;
    size_t nentries = 0;
    sresid_status st = find_layers(r, &nentries);
    if (st)
        return st;
    for (size_t i = 0; i < r->nt; i++) {
        if ((uint64_t)r->t[i].numel > SIZE_MAX / sizeof(float))
            return sresid__fail(SRESID_ERR_OVERFLOW, "tensor '%s' does not fit in memory",
                                r->t[i].name);
        if ((size_t)r->t[i].numel > u->cap)
            u->cap = (size_t)r->t[i].numel;
    }
    bool corr = probe_on(u, SRESID_PROBE_CORRELATION) && nentries > 0;
    if (corr) {
        st = plan_correlation(u);
        if (st)
            return st;
    }
    bool pool = probe_on(u, SRESID_PROBE_ENTROPY);
    sresid__watch_begin(&u->watch, u->res ? "sresid_report_residual" : "sresid_report_model",
                        u->monitor, u->monitor_user, r->nt + (pool ? r->nt : 0) + u->ncj);
    u->watch.progress = u->progress;
    u->watch.progress_user = u->progress_user;
    /* pass 2 runs up to one baseline per tensor, group and layer too */
    size_t most = 2 * r->nt + NGROUPS + r->nlayers;
    most = most > u->ncj ? most : u->ncj;
    u->threads = r->o.threads;
    u->nalloc = (size_t)u->threads < most ? u->threads : most ? (int)most : 1;
    u->w = calloc((size_t)u->nalloc, sizeof *u->w);
    if (!u->w)
        return nomem();
    for (int i = 0; i < u->nalloc; i++)
        u->w[i].u = u;

    st = run_pass(u, PASS_PROBE, r->nt, u->nalloc);
    if (st)
        return st;
    for (int g = 0; g < NGROUPS; g++)
        group_init(&r->groups[g]);
    for (size_t i = 0; i < r->nt; i++) { /* in tensor order: reproducible sums */
        const sresid__rtensor *t = &r->t[i];
        merge_into(&r->groups[t->fig.kind], t);
        merge_into(&r->groups[SLOT_ALL], t);
        if (t->layer_slot != SIZE_MAX)
            merge_into(&r->layers[t->layer_slot].g, t);
    }

    if (pool) {
        st = plan_pool(u);
        if (!st)
            st = plan_baselines(u);
        if (st)
            return st;
        size_t per = u->nslots * (size_t)r->o.bins * sizeof(uint64_t);
        size_t fit = HIST_BUDGET / per;
        int nw = fit < 1 ? 1 : fit < (size_t)u->nalloc ? (int)fit : u->nalloc;
        st = run_pass(u, PASS_POOL, u->nbl + r->nt, nw);
        if (!st)
            st = finish_pool(u);
        if (st)
            return st;
    }

    if (corr) {
        st = run_pass(u, PASS_CORR, u->ncj, u->nalloc);
        if (!st)
            st = finish_correlation(u, nentries);
    }
    return st;
}

static sresid_status report_run(const sresid_residual *res, const sresid_model *model,
                                const sresid_report_opts *opts, sresid_report **out)
{
    sresid_report *r = calloc(1, sizeof *r);
    if (!r)
        return nomem();
    sresid_status st = resolve_opts(opts, r);
    if (st) {
        sresid_report_free(r);
        return st;
    }
    r->source = res ? 0 : 1;
    st = res ? collect_residual(r, res) : collect_model(r, model);
    if (!st)
        st = sresid__model_file_ids(res ? sresid__residual_base(res) : model, &r->inputs,
                                    &r->ninputs);
    if (!st && res)
        st = sresid__model_file_ids(sresid__residual_trained(res), &r->inputs, &r->ninputs);
    if (st) {
        sresid_report_free(r);
        return st;
    }
    run u = {.r = r, .res = res, .model = model, .progress = r->o.progress,
             .progress_user = r->o.progress_user, .monitor = r->o.monitor,
             .monitor_user = r->o.monitor_user};
    /* the callbacks are the caller's business during the run only */
    r->o.progress = NULL;
    r->o.progress_user = NULL;
    r->o.monitor = NULL;
    r->o.monitor_user = NULL;
    st = build(&u);
    run_free(&u);
    if (st) {
        sresid_report_free(r);
        return st;
    }
    *out = r;
    return SRESID_OK;
}

sresid_status sresid_report_residual(const sresid_residual *residual,
                                     const sresid_report_opts *opts, sresid_report **out)
{
    if (!residual || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_report_residual: NULL argument");
    return report_run(residual, NULL, opts, out);
}

sresid_status sresid_report_model(const sresid_model *model, const sresid_report_opts *opts,
                                  sresid_report **out)
{
    if (!model || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_report_model: NULL argument");
    return report_run(NULL, model, opts, out);
}

/* ---- accessors ---- */
