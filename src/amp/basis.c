/* Amplitude basis: W0 = U diag(s0) V^T per selected matrix, scores s in one
 * vector, W = W0 + U (S - S0) V^T back, and the adjoint (the score
 * gradient from dL/dW).
 *
 * Cost. materialize and project gather only the basis columns whose scores
 * changed (or that the mask allows) into contiguous copies and hand them to
 * one or two BLIS products, so the work is m n |J| multiply-adds for |J|
 * columns rather than m n r. Gathering costs (m + n) |J| copies, which is
 * small beside the product. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amp/amp.h"
#include "util/blas.h"
#include "util/jobs.h"

#define DEFAULT_KINDS ((1u << SRESID_KIND_ATTENTION) | (1u << SRESID_KIND_MLP))
#define ALL_KINDS ((1u << SRESID_KIND_COUNT) - 1u)

static float *falloc(size_t n)
{
    if (n > SIZE_MAX / sizeof(float) - SRESID__BLAS_SLACK)
        return NULL;
    return malloc((n + SRESID__BLAS_SLACK) * sizeof(float));
}

/* Scratch buffers kept between materialize and project calls. Fresh pages
 * are costly (a first touch of a 16 MiB buffer took as long as a third of
 * a 2048 x 2048 product here), so the buffers of one call serve the next.
 * Up to POOL_SLOTS buffers, the largest ones, stay until the amp is freed;
 * the lock makes concurrent calls on a const amp safe. */
#define POOL_SLOTS 4

typedef struct scratch_head {
    size_t cap; /* floats after the header (slack included) */
    size_t pad; /* keeps the floats 16-byte aligned */
} scratch_head;

struct sresid__amp_pool {
    pthread_mutex_t lock;
    scratch_head *slot[POOL_SLOTS];
};

static float *scratch_get(const sresid_amp *amp, size_t n)
{
    struct sresid__amp_pool *p = amp->pool;
    scratch_head *h = NULL;
    pthread_mutex_lock(&p->lock);
    int best = -1;
    for (int i = 0; i < POOL_SLOTS; i++)
        if (p->slot[i] && p->slot[i]->cap >= n + SRESID__BLAS_SLACK &&
            (best < 0 || p->slot[i]->cap < p->slot[best]->cap))
            best = i;
    if (best >= 0) {
        h = p->slot[best];
        p->slot[best] = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (!h) {
        if (n > (SIZE_MAX - sizeof *h) / sizeof(float) - SRESID__BLAS_SLACK)
            return NULL;
        h = malloc(sizeof *h + (n + SRESID__BLAS_SLACK) * sizeof(float));
        if (!h)
            return NULL;
        h->cap = n + SRESID__BLAS_SLACK;
    }
    return (float *)(h + 1);
}

static void scratch_put(const sresid_amp *amp, float *buf)
{
    if (!buf)
        return;
    struct sresid__amp_pool *p = amp->pool;
    scratch_head *h = (scratch_head *)buf - 1;
    pthread_mutex_lock(&p->lock);
    int small = 0;
    for (int i = 0; i < POOL_SLOTS; i++) {
        if (!p->slot[i]) {
            small = i;
            break;
        }
        if (p->slot[i]->cap < p->slot[small]->cap)
            small = i;
    }
    if (!p->slot[small] || p->slot[small]->cap < h->cap) {
        scratch_head *old = p->slot[small];
        p->slot[small] = h;
        h = old;
    }
    pthread_mutex_unlock(&p->lock);
    free(h);
}

static inline bool mask_bit(const uint64_t *w, uint64_t i)
{
    return (w[i >> 6] >> (i & 63)) & 1u;
}

void sresid_amp_free(sresid_amp *amp)
{
    if (!amp)
        return;
    for (size_t i = 0; i < amp->count; i++) {
        free(amp->t[i].u);
        free(amp->t[i].v);
    }
    free(amp->t);
    free(amp->offsets);
    free(amp->scores);
    free(amp->s0);
    if (amp->pool) {
        for (int i = 0; i < POOL_SLOTS; i++)
            free(amp->pool->slot[i]);
        pthread_mutex_destroy(&amp->pool->lock);
        free(amp->pool);
    }
    free(amp);
}

/* ---- creation ---- */

/* Make the basis reproducible: the largest-|.| entry of each u_j (lowest
 * index among equal ones) positive, v_j flipped along with u_j. Row by row,
 * so that the passes run along memory. */
static bool canonical_signs(float *u, float *v, int64_t m, int64_t n, int64_t r)
{
    float *big = malloc((size_t)r * sizeof *big), *sign = malloc((size_t)r * sizeof *sign);
    if (!big || !sign) {
        free(big);
        free(sign);
        return false;
    }
    for (int64_t j = 0; j < r; j++) {
        big[j] = -1;
        sign[j] = 1;
    }
    for (int64_t i = 0; i < m; i++) /* strictly greater: the first maximum wins */
        for (int64_t j = 0; j < r; j++) {
            float x = u[i * r + j], ax = fabsf(x);
            if (ax > big[j]) {
                big[j] = ax;
                sign[j] = x < 0 ? -1.0f : 1.0f;
            }
        }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < r; j++)
            u[i * r + j] *= sign[j];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < r; j++)
            v[i * r + j] *= sign[j];
    free(big);
    free(sign);
    return true;
}

typedef struct basis_job {
    sresid__amp_tensor *t;
    float *s;         /* rank singular values */
} basis_job;

typedef struct basis_run {
    const sresid_model *base;
    basis_job *jobs;
} basis_run;

typedef struct reload_ctx {
    const sresid_model *base;
    const sresid__tensor *t;
} reload_ctx;

static sresid_status reload_w0(void *ctx, float *w)
{
    const reload_ctx *c = ctx;
    return sresid__tensor_to_f32(c->base, c->t, 0, (size_t)c->t->numel, w);
}

static sresid_status basis_of(const sresid_model *base, sresid__amp_tensor *a, float *s)
{
    const sresid__tensor *T = &base->tensors[a->index];
    int64_t m = a->rows, n = a->cols, r = a->rank;
    size_t mn = (size_t)m * (size_t)n;
    float *w = falloc(mn), *u = falloc((size_t)m * (size_t)r), *v = falloc((size_t)n * (size_t)r);
    sresid_status st;
    if (!w || !u || !v) {
        st = sresid__fail(SRESID_ERR_NOMEM, "sresid_amp_create: out of memory for tensor '%s'",
                          T->name);
        goto fail;
    }
    if ((st = sresid__tensor_to_f32(base, T, 0, mn, w)))
        goto fail;
    if (!sresid__all_finite(w, m, n, n)) {
        st = sresid__fail(SRESID_ERR_NONFINITE, "sresid_amp_create: tensor '%s' holds NaN or Inf",
                          T->name);
        goto fail;
    }
    reload_ctx rc = {base, T};
    if ((st = sresid__svd(w, m, n, r, u, s, v, T->name, reload_w0, &rc)))
        goto fail;
    /* finite entries can still have a norm beyond float32 (entries near
     * 3.4e38): such scores could not be materialized, saved or exported */
    for (int64_t j = 0; j < r; j++)
        if (!isfinite(s[j])) {
            st = sresid__fail(SRESID_ERR_NONFINITE, "sresid_amp_create: tensor '%s': its "
                              "singular values overflow float32 (entries too large)", T->name);
            goto fail;
        }
    free(w);
    w = NULL;
    if (!canonical_signs(u, v, m, n, r)) {
        st = sresid__fail(SRESID_ERR_NOMEM, "sresid_amp_create: out of memory for tensor '%s'",
                          T->name);
        goto fail;
    }
    a->u = u;
    a->v = v;
    return SRESID_OK;
fail:
    free(w);
    free(u);
    free(v);
    return st;
}

static sresid_status basis_job_run(void *ctx, size_t i, int worker)
{
    (void)worker;
    basis_run *b = ctx;
    return basis_of(b->base, b->jobs[i].t, b->jobs[i].s);
}

static const char *basis_job_label(void *ctx, size_t i)
{
    basis_run *b = ctx;
    return b->base->tensors[b->jobs[i].t->index].name;
}

/* Every tensor's basis through the job engine, largest SVD first. Each
 * job writes only its own tensor, so the result does not depend on the
 * thread count; the engine reports the first failing tensor in model
 * order. A unit of the monitor is one tensor's basis. */
static sresid_status compute_bases(const sresid_model *base, basis_job *jobs, size_t n,
                                   int32_t threads, const sresid_amp_opts *o)
{
    uint64_t *cost = malloc((n ? n : 1) * sizeof *cost);
    if (!cost)
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_amp_create: out of memory");
    for (size_t i = 0; i < n; i++) { /* an SVD costs about m n min(m, n) */
        const sresid__amp_tensor *a = jobs[i].t;
        uint64_t k = (uint64_t)(a->rows < a->cols ? a->rows : a->cols);
        cost[i] = (uint64_t)a->rows * (uint64_t)a->cols * k;
    }
    basis_run b = {base, jobs};
    sresid__watch w;
    sresid__watch_begin(&w, "sresid_amp_create", o->monitor, o->monitor_user, n);
    sresid__plan p = {.njobs = n, .cost = cost, .run = basis_job_run, .ctx = &b, .watch = &w,
                      .label = basis_job_label};
    sresid__plan_threads(&p, threads);
    sresid_status st = sresid__plan_run(&p);
    free(cost);
    return st;
}

static bool selected(const sresid_model *base, const sresid__tensor *T, uint32_t kinds,
                     const char *pattern, int64_t min_dim, int64_t *rows, int64_t *cols)
{
    if (!sresid_dtype_is_float(T->dtype) || T->ndim < 2)
        return false;
    if (!(kinds & (1u << T->kind)))
        return false;
    if (pattern && !sresid__glob_match(pattern, T->name))
        return false;
    sresid__matrix_view(T, base->layout, rows, cols);
    return (*rows < *cols ? *rows : *cols) >= min_dim;
}

/* An amp for count tensors whose index, rows, cols and rank the caller
 * sets afterwards; offsets and score buffers then come from
 * sresid__amp_lay_out. */
sresid_amp *sresid__amp_new(const sresid_model *base, int32_t layout, size_t count)
{
    sresid_amp *amp = calloc(1, sizeof *amp);
    if (!amp)
        return NULL;
    amp->base = base;
    amp->layout = layout;
    amp->t = calloc(count ? count : 1, sizeof *amp->t);
    amp->offsets = calloc(count + 1, sizeof *amp->offsets);
    amp->pool = calloc(1, sizeof *amp->pool);
    if (amp->pool && pthread_mutex_init(&amp->pool->lock, NULL) != 0) {
        free(amp->pool);
        amp->pool = NULL;
    }
    if (!amp->t || !amp->offsets || !amp->pool) {
        sresid_amp_free(amp);
        return NULL;
    }
    amp->count = count;
    return amp;
}

sresid_status sresid__amp_lay_out(sresid_amp *amp, const char *fn)
{
    uint64_t total = 0;
    for (size_t i = 0; i < amp->count; i++) {
        sresid__amp_tensor *a = &amp->t[i];
        uint64_t c = (uint64_t)a->rank;
        if (amp->layout == SRESID_AMP_CORE && !sresid__mul_u64(c, c, &c))
            return sresid__fail(SRESID_ERR_OVERFLOW, "%s: score count overflows", fn);
        a->offset = total;
        a->count = c;
        amp->offsets[i] = total;
        if (!sresid__add_u64(total, c, &total) || total > SIZE_MAX / sizeof(float) / 2)
            return sresid__fail(SRESID_ERR_OVERFLOW, "%s: score count overflows", fn);
    }
    amp->offsets[amp->count] = total;
    amp->nscores = total;
    amp->scores = falloc((size_t)total);
    amp->s0 = falloc((size_t)total);
    if (!amp->scores || !amp->s0)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for %llu scores", fn,
                            (unsigned long long)total);
    return SRESID_OK;
}

sresid_status sresid_amp_create(const sresid_model *base, const sresid_amp_opts *opts,
                                sresid_amp **out)
{
    static const char fn[] = "sresid_amp_create";
    if (!base || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, base ? "out" : "base");
    sresid_amp_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (o.layout != SRESID_AMP_DIAG && o.layout != SRESID_AMP_CORE)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: layout %d unknown", fn, (int)o.layout);
    if (o.rank < 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: rank %d is negative", fn, (int)o.rank);
    if (o.kinds & ~ALL_KINDS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown kind bits 0x%x", fn,
                            (unsigned)(o.kinds & ~ALL_KINDS));
    if (o.threads < 0 || o.threads > 4096)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: threads %d is not in [0, 4096]", fn,
                            (int)o.threads);
    if (o.min_dim < 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: min_dim %lld is negative", fn,
                            (long long)o.min_dim);
    uint32_t kinds = o.kinds ? o.kinds : DEFAULT_KINDS;
    int64_t min_dim = o.min_dim ? o.min_dim : 2;
    int32_t threads = o.threads ? o.threads : sresid_get_threads();

    size_t count = 0;
    for (size_t i = 0; i < base->count; i++) {
        int64_t m, n;
        if (!selected(base, &base->tensors[i], kinds, o.pattern, min_dim, &m, &n))
            continue;
        if (m > INT32_MAX || n > INT32_MAX)
            return sresid__fail(SRESID_ERR_UNSUPPORTED,
                                "%s: tensor '%s' (%lld x %lld) is beyond LAPACK's 32-bit sizes",
                                fn, base->tensors[i].name, (long long)m, (long long)n);
        count++;
    }
    if (!count)
        return sresid__fail(SRESID_ERR_NOT_FOUND, "%s: no tensor matches the selection", fn);

    sresid_amp *amp = sresid__amp_new(base, o.layout, count);
    basis_job *jobs = calloc(count, sizeof *jobs);
    float *sv = NULL;
    if (!amp || !jobs) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
        goto out;
    }
    uint64_t nsv = 0;
    for (size_t i = 0, k = 0; i < base->count; i++) {
        int64_t m, n;
        if (!selected(base, &base->tensors[i], kinds, o.pattern, min_dim, &m, &n))
            continue;
        int64_t full = m < n ? m : n;
        sresid__amp_tensor *a = &amp->t[k++];
        a->index = i;
        a->rows = m;
        a->cols = n;
        a->rank = o.rank && o.rank < full ? o.rank : full;
        nsv += (uint64_t)a->rank;
    }
    if ((st = sresid__amp_lay_out(amp, fn)))
        goto out;
    if (!(sv = falloc((size_t)nsv))) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
        goto out;
    }
    for (size_t i = 0, pos = 0; i < count; i++) {
        jobs[i].t = &amp->t[i];
        jobs[i].s = sv + pos;
        pos += (size_t)amp->t[i].rank;
    }
    if ((st = compute_bases(base, jobs, count, threads, &o)))
        goto out;
    /* s0: the singular values, or diag(s0) as r x r matrices */
    memset(amp->s0, 0, (size_t)amp->nscores * sizeof *amp->s0);
    for (size_t i = 0; i < count; i++) {
        const sresid__amp_tensor *a = &amp->t[i];
        for (int64_t j = 0; j < a->rank; j++)
            amp->s0[a->offset + (o.layout == SRESID_AMP_CORE ? (uint64_t)(j * a->rank + j)
                                                             : (uint64_t)j)] = jobs[i].s[j];
    }
    memcpy(amp->scores, amp->s0, (size_t)amp->nscores * sizeof *amp->s0);
    *out = amp;
    amp = NULL;
out:
    free(jobs);
    free(sv);
    sresid_amp_free(amp);
    return st;
}

/* ---- accessors ---- */

size_t sresid_amp_count(const sresid_amp *amp)
{
    return amp ? amp->count : 0;
}

uint64_t sresid_amp_score_count(const sresid_amp *amp)
{
    return amp ? amp->nscores : 0;
}

int32_t sresid_amp_layout(const sresid_amp *amp)
{
    return amp ? amp->layout : -1;
}

static sresid_status get_t(const sresid_amp *amp, size_t t, const char *fn,
                           const sresid__amp_tensor **a)
{
    if (!amp)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: amp is NULL", fn);
    if (t >= amp->count)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: tensor %zu out of range (%zu tensors)",
                            fn, t, amp->count);
    *a = &amp->t[t];
    return SRESID_OK;
}

sresid_status sresid_amp_tensor(const sresid_amp *amp, size_t t, sresid_amp_tensor_info *info)
{
    const sresid__amp_tensor *a = NULL;
    sresid_status st = get_t(amp, t, "sresid_amp_tensor", &a);
    if (st)
        return st;
    if (!info || info->size < sizeof(sresid_amp_tensor_info))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_amp_tensor: info is NULL or its size is too small");
    sresid_amp_tensor_info v = {.size = info->size,
                                .name = amp->base->tensors[a->index].name,
                                .index = a->index,
                                .rows = a->rows,
                                .cols = a->cols,
                                .rank = a->rank,
                                .offset = a->offset,
                                .count = a->count};
    memcpy(info, &v, sizeof v);
    return SRESID_OK;
}

float *sresid_amp_scores(sresid_amp *amp)
{
    return amp ? amp->scores : NULL;
}

const float *sresid_amp_initial_scores(const sresid_amp *amp)
{
    return amp ? amp->s0 : NULL;
}

const uint64_t *sresid_amp_offsets(const sresid_amp *amp)
{
    return amp ? amp->offsets : NULL;
}

sresid_status sresid_amp_basis(const sresid_amp *amp, size_t t, const float **u, const float **v)
{
    const sresid__amp_tensor *a = NULL;
    sresid_status st = get_t(amp, t, "sresid_amp_basis", &a);
    if (st)
        return st;
    if (u)
        *u = a->u;
    if (v)
        *v = a->v;
    return SRESID_OK;
}

sresid_status sresid_amp_reset(sresid_amp *amp)
{
    if (!amp)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_amp_reset: amp is NULL");
    memcpy(amp->scores, amp->s0, (size_t)amp->nscores * sizeof *amp->s0);
    return SRESID_OK;
}

/* ---- materialize ---- */

/* Columns idx[0..k) of the row-major rows x r matrix src, each scaled by
 * scale[q] (NULL: 1), into the row-major rows x k matrix dst. */
static void gather_cols(const float *src, int64_t rows, int64_t r, const int64_t *idx, int64_t k,
                        const float *scale, float *dst)
{
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * r;
        float *d = dst + i * k;
        if (scale)
            for (int64_t q = 0; q < k; q++)
                d[q] = s[idx[q]] * scale[q];
        else
            for (int64_t q = 0; q < k; q++)
                d[q] = s[idx[q]];
    }
}

static sresid_status read_w0(const sresid_amp *amp, const sresid__amp_tensor *a, float *dst,
                             int64_t ld)
{
    const sresid__tensor *T = &amp->base->tensors[a->index];
    if (ld == a->cols)
        return sresid__tensor_to_f32(amp->base, T, 0, (size_t)a->rows * (size_t)a->cols, dst);
    for (int64_t i = 0; i < a->rows; i++) {
        sresid_status st = sresid__tensor_to_f32(amp->base, T, (size_t)i * (size_t)a->cols,
                                                 (size_t)a->cols, dst + i * ld);
        if (st)
            return st;
    }
    return SRESID_OK;
}

/* The basis columns idx (k of them) of U or V: the matrix itself when they
 * are all of them, else a gathered copy in *buf. */
static const float *cols_of(const float *x, int64_t rows, int64_t r, const int64_t *idx,
                            int64_t k, float *buf, int64_t *ld)
{
    if (k == r) {
        *ld = r;
        return x;
    }
    gather_cols(x, rows, r, idx, k, NULL, buf);
    *ld = k;
    return buf;
}

/* Rows of the caller's dst that go through a padded copy: BLIS may read a
 * few floats past C when beta != 0 (blas.h), so the rows whose end lies
 * within SRESID__BLAS_SLACK floats of the end of dst are not handed to it. */
static int64_t tail_rows(int64_t m, int64_t ld)
{
    int64_t h = (SRESID__BLAS_SLACK + ld - 1) / ld;
    return h < m ? h : m;
}

/* dst (m x n, stride ld) += X Y^T with X m x k and Y n x k, row-major;
 * tail holds tail_rows(m, ld) * n floats + slack. */
static void add_product(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                        const float *y, int64_t ldy, float *dst, int64_t ld, float *tail)
{
    int64_t h = tail_rows(m, ld), top = m - h;
    if (top > 0)
        sresid__sgemm(0, 1, top, n, k, 1.0f, x, ldx, y, ldy, 1.0f, dst, ld);
    for (int64_t i = 0; i < h; i++)
        memcpy(tail + i * n, dst + (top + i) * ld, (size_t)n * sizeof *tail);
    sresid__sgemm(0, 1, h, n, k, 1.0f, x + top * ldx, ldx, y, ldy, 1.0f, tail, n);
    for (int64_t i = 0; i < h; i++)
        memcpy(dst + (top + i) * ld, tail + i * n, (size_t)n * sizeof *tail);
}

/* dst += U (S - S0) V^T over the changed scores of tensor a, whose lists
 * are already known: DIAG changed columns J; CORE rows I and columns J of
 * the changed entries. With alloc_only, only allocate *scratch (so that
 * every allocation is done before dst is touched). */
static sresid_status apply_delta(const sresid_amp *amp, const sresid__amp_tensor *a,
                                 const int64_t *I, int64_t ni, const int64_t *J, int64_t nj,
                                 float *dst, int64_t ld, bool alloc_only, void **scratch)
{
    int64_t m = a->rows, n = a->cols, r = a->rank;
    size_t ntail = (size_t)tail_rows(m, ld) * (size_t)n;
    const float *s = amp->scores + a->offset, *s0 = amp->s0 + a->offset;
    if (amp->layout == SRESID_AMP_DIAG) {
        /* scratch: tail rows, the scaled U columns, d = s - s0, V columns (unless all) */
        if (alloc_only) {
            size_t need = ntail + (size_t)m * (size_t)nj + (size_t)nj +
                          (nj < r ? (size_t)n * (size_t)nj : 0);
            return (*scratch = scratch_get(amp, need)) ? SRESID_OK : SRESID_ERR_NOMEM;
        }
        float *tail = *scratch, *ug = tail + ntail, *d = ug + (size_t)m * (size_t)nj;
        float *vbuf = d + nj;
        for (int64_t q = 0; q < nj; q++)
            d[q] = s[J[q]] - s0[J[q]];
        gather_cols(a->u, m, r, J, nj, d, ug);
        int64_t ldv;
        const float *vg = cols_of(a->v, n, r, J, nj, vbuf, &ldv);
        add_product(m, n, nj, ug, nj, vg, ldv, dst, ld, tail);
        return SRESID_OK;
    }
    /* CORE: dst += U_I D V_J^T with D = (S - S0)[I, J], associated the
     * cheaper way: (U_I D) V_J^T or U_I (V_J D^T)^T */
    double cost_a = (double)m * ni * nj + (double)m * n * nj;
    double cost_b = (double)n * ni * nj + (double)m * n * ni;
    size_t inner = cost_a <= cost_b ? (size_t)m * (size_t)nj : (size_t)n * (size_t)ni;
    if (alloc_only) {
        size_t need = ntail + (size_t)ni * (size_t)nj + inner +
                      (ni < r ? (size_t)m * (size_t)ni : 0) + (nj < r ? (size_t)n * (size_t)nj : 0);
        return (*scratch = scratch_get(amp, need)) ? SRESID_OK : SRESID_ERR_NOMEM;
    }
    float *tail = *scratch, *D = tail + ntail, *P = D + (size_t)ni * (size_t)nj;
    float *ubuf = P + inner, *vbuf = ubuf + (ni < r ? (size_t)m * (size_t)ni : 0);
    for (int64_t x = 0; x < ni; x++)
        for (int64_t y = 0; y < nj; y++) {
            size_t e = (size_t)(I[x] * r + J[y]);
            D[x * nj + y] = s[e] - s0[e];
        }
    int64_t ldu, ldv;
    const float *ug = cols_of(a->u, m, r, I, ni, ubuf, &ldu);
    const float *vg = cols_of(a->v, n, r, J, nj, vbuf, &ldv);
    if (cost_a <= cost_b) {
        sresid__sgemm(0, 0, m, nj, ni, 1.0f, ug, ldu, D, nj, 0.0f, P, nj);
        add_product(m, n, nj, P, nj, vg, ldv, dst, ld, tail);
    } else {
        sresid__sgemm(0, 1, n, ni, nj, 1.0f, vg, ldv, D, nj, 0.0f, P, ni);
        add_product(m, n, ni, ug, ldu, P, ni, dst, ld, tail);
    }
    return SRESID_OK;
}

/* Which scores of tensor a differ from s0: DIAG columns J; CORE rows I and
 * columns J holding a change. False when a score is not finite. I and J
 * hold rank entries each. */
static bool changed_lists(const sresid_amp *amp, const sresid__amp_tensor *a, int64_t *I,
                          int64_t *ni, int64_t *J, int64_t *nj)
{
    const float *s = amp->scores + a->offset, *s0 = amp->s0 + a->offset;
    int64_t r = a->rank;
    *ni = *nj = 0;
    if (amp->layout == SRESID_AMP_DIAG) {
        for (int64_t j = 0; j < r; j++) {
            if (!isfinite(s[j]))
                return false;
            if (s[j] != s0[j])
                J[(*nj)++] = j;
        }
        return true;
    }
    /* column flags in J's storage first, then compacted */
    memset(J, 0, (size_t)r * sizeof *J);
    for (int64_t x = 0; x < r; x++) {
        bool any = false;
        for (int64_t y = 0; y < r; y++) {
            float v = s[x * r + y];
            if (!isfinite(v))
                return false;
            if (v != s0[x * r + y]) {
                any = true;
                J[y] = 1;
            }
        }
        if (any)
            I[(*ni)++] = x;
    }
    for (int64_t y = 0; y < r; y++)
        if (J[y])
            J[(*nj)++] = y;
    return true;
}

sresid_status sresid_amp_materialize(const sresid_amp *amp, size_t t, float *dst, int64_t ld,
                                     uint32_t flags)
{
    static const char fn[] = "sresid_amp_materialize";
    const sresid__amp_tensor *a = NULL;
    sresid_status st = get_t(amp, t, fn, &a);
    if (st)
        return st;
    if (flags & ~SRESID_MATERIALIZE_ADD)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)flags);
    if (!dst)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: dst is NULL", fn);
    if ((st = sresid__check_matrix(dst, a->rows, a->cols, ld, fn)))
        return st;
    int64_t *I = malloc(2 * (size_t)a->rank * sizeof *I), *J = I ? I + a->rank : NULL;
    if (!I)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    int64_t ni, nj;
    void *scratch = NULL;
    if (!changed_lists(amp, a, I, &ni, J, &nj)) {
        st = sresid__fail(SRESID_ERR_NONFINITE, "%s: a score of tensor '%s' is NaN or Inf", fn,
                          amp->base->tensors[a->index].name);
        goto out;
    }
    bool any = nj > 0;
    if (any && apply_delta(amp, a, I, ni, J, nj, NULL, ld, true, &scratch)) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
        goto out;
    }
    if (!(flags & SRESID_MATERIALIZE_ADD) && (st = read_w0(amp, a, dst, ld)))
        goto out;
    if (any)
        apply_delta(amp, a, I, ni, J, nj, dst, ld, false, &scratch);
out:
    scratch_put(amp, scratch);
    free(I);
    return st;
}

/* ---- project ---- */

/* The values of U^T G V that tensor a's scores take (its diagonal for
 * DIAG), for the entries allowed by words (NULL: all), into val (count
 * floats, indexed as the scores; other entries left alone). DIAG
 * accumulates each u_j . (G v_j) in double; CORE takes U_I^T (G V_J) from
 * two float products. */
static sresid_status project_values(const sresid_amp *amp, const sresid__amp_tensor *a,
                                    const float *g, int64_t ld, const uint64_t *words,
                                    float *val, const char *fn)
{
    int64_t m = a->rows, n = a->cols, r = a->rank;
    uint64_t off = a->offset;
    int64_t *I = malloc(2 * (size_t)r * sizeof *I), *J = I ? I + r : NULL;
    if (!I)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    int64_t ni = 0, nj = 0;
    if (amp->layout == SRESID_AMP_DIAG) {
        for (int64_t j = 0; j < r; j++)
            if (!words || mask_bit(words, off + (uint64_t)j))
                J[nj++] = j;
        ni = nj;
        memcpy(I, J, (size_t)nj * sizeof *I);
    } else {
        memset(J, 0, (size_t)r * sizeof *J);
        for (int64_t x = 0; x < r; x++) {
            bool any = false;
            for (int64_t y = 0; y < r; y++)
                if (!words || mask_bit(words, off + (uint64_t)(x * r + y))) {
                    any = true;
                    J[y] = 1;
                }
            if (any)
                I[ni++] = x;
        }
        for (int64_t y = 0; y < r; y++)
            if (J[y])
                J[nj++] = y;
    }
    if (nj == 0) {
        free(I);
        return SRESID_OK;
    }
    size_t need = (size_t)m * (size_t)nj + (nj < r ? (size_t)n * (size_t)nj : 0) +
                  (ni < r ? (size_t)m * (size_t)ni : 0) +
                  (amp->layout == SRESID_AMP_CORE ? (size_t)ni * (size_t)nj : 0);
    float *T = scratch_get(amp, need);
    double *acc = amp->layout == SRESID_AMP_DIAG ? calloc((size_t)nj, sizeof *acc) : NULL;
    if (!T || (amp->layout == SRESID_AMP_DIAG && !acc)) {
        scratch_put(amp, T);
        free(acc);
        free(I);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    }
    float *vbuf = T + (size_t)m * (size_t)nj;
    float *ubuf = vbuf + (nj < r ? (size_t)n * (size_t)nj : 0);
    float *C = ubuf + (ni < r ? (size_t)m * (size_t)ni : 0);
    int64_t ldv, ldu;
    const float *vg = cols_of(a->v, n, r, J, nj, vbuf, &ldv);
    const float *ug = cols_of(a->u, m, r, I, ni, ubuf, &ldu);
    /* T = G V_J, m x nj */
    sresid__sgemm(0, 0, m, nj, n, 1.0f, g, ld, vg, ldv, 0.0f, T, nj);
    if (amp->layout == SRESID_AMP_DIAG) {
        for (int64_t i = 0; i < m; i++) {
            const float *ur = ug + i * ldu, *tr = T + i * nj;
            for (int64_t q = 0; q < nj; q++)
                acc[q] += (double)ur[q] * tr[q];
        }
        for (int64_t q = 0; q < nj; q++)
            val[J[q]] = (float)acc[q];
    } else {
        /* C = U_I^T T, ni x nj */
        sresid__sgemm(1, 0, ni, nj, m, 1.0f, ug, ldu, T, nj, 0.0f, C, nj);
        for (int64_t x = 0; x < ni; x++)
            for (int64_t y = 0; y < nj; y++) {
                uint64_t e = (uint64_t)(I[x] * r + J[y]);
                if (!words || mask_bit(words, off + e))
                    val[e] = C[x * nj + y];
            }
    }
    free(acc);
    scratch_put(amp, T);
    free(I);
    return SRESID_OK;
}

static sresid_status check_mask(const sresid_amp *amp, const sresid_mask *mask, const char *fn,
                                const uint64_t **words)
{
    *words = NULL;
    if (!mask)
        return SRESID_OK;
    if (sresid_mask_size(mask) != amp->nscores)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: the mask has %llu entries, the scores %llu",
                            fn, (unsigned long long)sresid_mask_size(mask),
                            (unsigned long long)amp->nscores);
    *words = sresid__mask_words(mask);
    return SRESID_OK;
}

sresid_status sresid_amp_project(const sresid_amp *amp, size_t t, const float *grad, int64_t ld,
                                 float *out, const sresid_mask *mask, uint32_t flags)
{
    static const char fn[] = "sresid_amp_project";
    const sresid__amp_tensor *a = NULL;
    sresid_status st = get_t(amp, t, fn, &a);
    if (st)
        return st;
    if (flags & ~(SRESID_PROJECT_ACCUMULATE | SRESID_PROJECT_ABS))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)flags);
    if (!grad || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, grad ? "out" : "grad");
    if ((st = sresid__check_matrix(grad, a->rows, a->cols, ld, fn)))
        return st;
    const uint64_t *words;
    if ((st = check_mask(amp, mask, fn, &words)))
        return st;
    if (!sresid__all_finite(grad, a->rows, a->cols, ld))
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the gradient of tensor '%s' holds NaN or Inf",
                            fn, amp->base->tensors[a->index].name);
    float *val = falloc((size_t)a->count);
    if (!val)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    if ((st = project_values(amp, a, grad, ld, words, val, fn))) {
        free(val);
        return st;
    }
    float *o = out + a->offset;
    /* for CORE the values of entries the mask leaves out are never set */
    for (uint64_t q = 0; q < a->count; q++) {
        if (words && !mask_bit(words, a->offset + q))
            continue;
        if (flags & SRESID_PROJECT_ABS)
            o[q] += fabsf(val[q]);
        else if (flags & SRESID_PROJECT_ACCUMULATE)
            o[q] += val[q];
        else
            o[q] = val[q];
    }
    free(val);
    return SRESID_OK;
}

/* ---- fit ---- */

sresid_status sresid__amp_pair(const sresid_amp *amp, const sresid_model *trained,
                              const char *fn, size_t *tidx)
{
    for (size_t i = 0; i < amp->count; i++) {
        const sresid__tensor *B = &amp->base->tensors[amp->t[i].index];
        if (sresid_model_find(trained, B->name, &tidx[i]) != SRESID_OK)
            return sresid__fail(SRESID_ERR_MISMATCH, "%s: tensor '%s' is missing in the trained "
                                "model", fn, B->name);
        const sresid__tensor *T = &trained->tensors[tidx[i]];
        bool same = sresid__same_shape(B, T);
        if (!sresid_dtype_is_float(T->dtype) || !same)
            return sresid__fail(SRESID_ERR_MISMATCH,
                                "%s: tensor '%s' of the trained model has another %s", fn,
                                B->name, same ? "dtype (not a float)" : "shape");
    }
    return SRESID_OK;
}

/* One fit job: the projection of tensor i's residual into its segment of
 * fresh. Each worker has its own two buffers of the largest matrix. */
typedef struct fit_run {
    const sresid_amp *amp;
    const sresid_model *trained;
    const size_t *tidx;
    const uint64_t *words;
    float *fresh;
    float **buf;    /* 2 per worker, allocated on first use */
    size_t maxmn;
} fit_run;

static sresid_status fit_job(void *ctx, size_t i, int worker)
{
    static const char fn[] = "sresid_amp_fit";
    fit_run *u = ctx;
    const sresid_amp *amp = u->amp;
    float **buf = u->buf + 2 * worker;
    for (int k = 0; k < 2; k++)
        if (!buf[k] && !(buf[k] = falloc(u->maxmn)))
            return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    float *r = buf[0], *w0 = buf[1];
    const sresid__amp_tensor *a = &amp->t[i];
    const sresid__tensor *B = &amp->base->tensors[a->index];
    size_t mn = (size_t)a->rows * (size_t)a->cols;
    sresid_status st;
    if ((st = sresid__tensor_to_f32(u->trained, &u->trained->tensors[u->tidx[i]], 0, mn, r)) ||
        (st = sresid__tensor_to_f32(amp->base, B, 0, mn, w0)))
        return st;
    for (size_t e = 0; e < mn; e++)
        r[e] -= w0[e];
    if (!sresid__all_finite(r, a->rows, a->cols, a->cols))
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the residual of tensor '%s' holds NaN "
                            "or Inf", fn, B->name);
    /* the projections land in fresh; the s0 offsets are added after */
    float *seg = u->fresh + a->offset;
    const float *s0 = amp->s0 + a->offset;
    memset(seg, 0, (size_t)a->count * sizeof *seg);
    if ((st = project_values(amp, a, r, a->cols, u->words, seg, fn)))
        return st;
    for (uint64_t q = 0; q < a->count; q++)
        seg[q] += s0[q];
    return SRESID_OK;
}

static const char *fit_label(void *ctx, size_t i)
{
    return sresid__amp_name(((fit_run *)ctx)->amp, i);
}

sresid_status sresid_amp_fit(sresid_amp *amp, const sresid_model *trained, const sresid_mask *mask)
{
    static const char fn[] = "sresid_amp_fit";
    if (!amp || !trained)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, amp ? "trained" : "amp");
    const uint64_t *words;
    sresid_status st = check_mask(amp, mask, fn, &words);
    if (st)
        return st;
    /* pair everything first: a mismatch leaves the scores as they are */
    size_t *tidx = malloc(amp->count * sizeof *tidx);
    uint64_t *cost = malloc(amp->count * sizeof *cost);
    if (!tidx || !cost) {
        free(tidx);
        free(cost);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    }
    if ((st = sresid__amp_pair(amp, trained, fn, tidx))) {
        free(tidx);
        free(cost);
        return st;
    }
    fit_run u = {.amp = amp, .trained = trained, .tidx = tidx, .words = words};
    for (size_t i = 0; i < amp->count; i++) {
        size_t mn = (size_t)amp->t[i].rows * (size_t)amp->t[i].cols;
        u.maxmn = mn > u.maxmn ? mn : u.maxmn;
        cost[i] = (uint64_t)mn * (uint64_t)amp->t[i].rank; /* the projection's products */
    }
    sresid__watch w;
    sresid__watch_begin(&w, fn, NULL, NULL, amp->count);
    sresid__plan p = {.njobs = amp->count, .cost = cost, .run = fit_job, .ctx = &u,
                      .watch = &w, .label = fit_label};
    sresid__plan_threads(&p, sresid_get_threads());
    u.fresh = falloc((size_t)amp->nscores);
    u.buf = calloc(2 * (size_t)p.workers, sizeof *u.buf);
    if (!u.fresh || !u.buf) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    } else {
        memcpy(u.fresh, amp->s0, (size_t)amp->nscores * sizeof *u.fresh);
        st = sresid__plan_run(&p);
    }
    if (!st) /* every tensor done: only now the scores change */
        memcpy(amp->scores, u.fresh, (size_t)amp->nscores * sizeof *u.fresh);
    for (int k = 0; u.buf && k < 2 * p.workers; k++)
        free(u.buf[k]);
    free(u.buf);
    free(u.fresh);
    free(tidx);
    free(cost);
    return st;
}

/* ---- export ---- */

sresid_status sresid_amp_export(const sresid_amp *amp, sresid_model **out)
{
    static const char fn[] = "sresid_amp_export";
    if (!amp || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, amp ? "out" : "amp");
    const sresid_model *base = amp->base;
    /* which amp tensor each base tensor is, or -1 */
    ptrdiff_t *which = malloc((base->count ? base->count : 1) * sizeof *which);
    if (!which)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; i < base->count; i++)
        which[i] = -1;
    for (size_t i = 0; i < amp->count; i++) {
        const sresid__tensor *T = &base->tensors[amp->t[i].index];
        which[amp->t[i].index] = (ptrdiff_t)i;
        if (T->dtype != SRESID_DTYPE_F32 && T->dtype != SRESID_DTYPE_F16 &&
            T->dtype != SRESID_DTYPE_BF16 && T->dtype != SRESID_DTYPE_F64) {
            free(which);
            return sresid__fail(SRESID_ERR_UNSUPPORTED,
                                "%s: tensor '%s' is %s: no rounding back to it is defined", fn,
                                T->name, sresid_dtype_name(T->dtype));
        }
    }
    sresid_model *m = NULL;
    sresid_model_opts mo = {.size = sizeof mo, .layout = base->layout};
    sresid_status st = sresid_model_create(&mo, &m);
    void *buf = NULL;
    float *w = NULL;
    if (st)
        goto out;
    for (size_t i = 0; i < base->meta_count; i++)
        if ((st = sresid_model_set_metadata(m, base->meta_keys[i], base->meta_values[i])))
            goto out;
    sresid__watch watch; /* one unit a base tensor */
    sresid__watch_begin(&watch, fn, NULL, NULL, base->count);
    for (size_t i = 0; i < base->count; i++) {
        const sresid__tensor *T = &base->tensors[i];
        buf = malloc(T->nbytes ? (size_t)T->nbytes : 1);
        if (!buf) {
            st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for tensor '%s'", fn, T->name);
            goto out;
        }
        if (which[i] < 0) {
            if ((st = sresid__tensor_bytes(base, T, 0, buf, (size_t)T->nbytes)))
                goto out;
        } else {
            size_t n = (size_t)T->numel;
            w = T->dtype == SRESID_DTYPE_F32 ? buf : falloc(n);
            if (!w) {
                st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for tensor '%s'", fn,
                                  T->name);
                goto out;
            }
            const sresid__amp_tensor *a = &amp->t[which[i]];
            if ((st = sresid_amp_materialize(amp, (size_t)which[i], w, a->cols, 0)))
                goto out;
            unsigned char *b = buf;
            if (T->dtype == SRESID_DTYPE_F16 || T->dtype == SRESID_DTYPE_BF16) {
                for (size_t e = 0; e < n; e++) {
                    uint16_t h = T->dtype == SRESID_DTYPE_F16 ? sresid__f32_to_f16(w[e])
                                                              : sresid__f32_to_bf16(w[e]);
                    b[2 * e] = (unsigned char)(h & 0xff);
                    b[2 * e + 1] = (unsigned char)(h >> 8);
                }
            } else if (T->dtype == SRESID_DTYPE_F64) {
                for (size_t e = 0; e < n; e++) {
                    double d = w[e];
                    memcpy(b + 8 * e, &d, sizeof d);
                }
            }
            if (w != buf)
                free(w);
            w = NULL;
        }
        if ((st = sresid_model_add_tensor(m, T->name, T->dtype, T->ndim, T->shape, buf,
                                          (size_t)T->nbytes, 0)))
            goto out;
        free(buf);
        buf = NULL;
        if ((st = sresid__watch_step(&watch, T->name)))
            goto out;
    }
    *out = m;
    m = NULL;
out:
    if (w && w != buf)
        free(w);
    free(buf);
    free(which);
    sresid_model_free(m);
    return st;
}
