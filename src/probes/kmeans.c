/* k-means on the rows of a matrix.
 *
 * Seeding is greedy k-means++ (as scikit-learn's): the first centre is a
 * uniform row; at each next step 2 + floor(ln k) candidate rows are drawn
 * with probability proportional to D(x)^2, the squared distance to the
 * nearest centre so far (uniform if every D(x)^2 is zero), and the one that
 * leaves the smallest sum of D(x)^2 is kept. Lloyd iterations then alternate
 *   assignment: nearest centre through ||x||^2 + ||c||^2 - 2 x.c, the dot
 *               products from one BLIS product per block of rows; ties go
 *               to the lower index;
 *   update:     each centre the mean of its rows, from per-cluster sums in
 *               double that are updated only for the rows that moved.
 * A cluster left empty takes the row farthest from its centre among the
 * clusters that keep at least one other row. The loop stops when no row
 * changes cluster, or after max_iter iterations, then (like scikit-learn) the
 * rows are assigned once more to the final centres. The inertia is summed
 * in double from the differences, not from the expanded formula. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "util/jobs.h"
#include "util/util.h"

/* The Gaussian baseline of sresid_kmeans_explained draws from this seed. */
#define KM_RANDOM_SEED_XOR 0x5DEECE66Dull
#define KM_DOT_ELEMS (1 << 20) /* bound on the block of dot products */
#define KM_MAX_TRIALS 32

typedef struct km {
    const float *x;
    int64_t rows, cols, ld, k, blk;
    double *xn;    /* ||x||^2 per row */
    double *dist;  /* squared distance to the assigned (or nearest) centre */
    int32_t *lab;  /* cluster per row, -1 before the first assignment */
    float *c;      /* k x cols centres */
    double *cn;    /* ||c||^2 */
    double *sums;  /* k x cols sums of the rows of each cluster */
    int64_t *cnt;  /* rows per cluster */
    float *dots;   /* blk x max(k, trials) */
    float *cand;   /* trials x cols candidate centres */
    double *nd;    /* rows x trials candidate distances */
    int64_t trials;
} km;

static double dot_self(const float *r, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += (double)r[j] * r[j];
        s1 += (double)r[j + 1] * r[j + 1];
        s2 += (double)r[j + 2] * r[j + 2];
        s3 += (double)r[j + 3] * r[j + 3];
    }
    for (; j < n; j++)
        s0 += (double)r[j] * r[j];
    return (s0 + s1) + (s2 + s3);
}

static double dist_exact(const float *r, const float *c, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        double d0 = (double)r[j] - c[j], d1 = (double)r[j + 1] - c[j + 1];
        double d2 = (double)r[j + 2] - c[j + 2], d3 = (double)r[j + 3] - c[j + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; j < n; j++) {
        double d0 = (double)r[j] - c[j];
        s0 += d0 * d0;
    }
    return (s0 + s1) + (s2 + s3);
}

static void move_row(km *w, int64_t i, int32_t to)
{
    const float *r = w->x + i * w->ld;
    int32_t from = w->lab[i];
    if (from >= 0) {
        double *s = w->sums + from * w->cols;
        for (int64_t j = 0; j < w->cols; j++)
            s[j] -= r[j];
        w->cnt[from]--;
    }
    double *s = w->sums + to * w->cols;
    for (int64_t j = 0; j < w->cols; j++)
        s[j] += r[j];
    w->cnt[to]++;
    w->lab[i] = to;
}

/* Centre c := row i; its squared norm follows. */
static void set_centre(km *w, int64_t c, int64_t i)
{
    memcpy(w->c + c * w->cols, w->x + i * w->ld, (size_t)w->cols * sizeof(float));
    w->cn[c] = w->xn[i];
}

/* Squared distances of every row to the candidate rows idx[0 .. nc) into
 * nd (rows x nc), from one product per block; pot[l] = the potential
 * sum_x min(D(x)^2, d(x, candidate l)^2) if candidate l were taken. */
static void try_candidates(km *w, const int64_t *idx, int64_t nc, double *pot)
{
    for (int64_t l = 0; l < nc; l++) {
        memcpy(w->cand + l * w->cols, w->x + idx[l] * w->ld, (size_t)w->cols * sizeof(float));
        pot[l] = 0;
    }
    for (int64_t i0 = 0; i0 < w->rows; i0 += w->blk) {
        int64_t bi = w->rows - i0 < w->blk ? w->rows - i0 : w->blk;
        if (w->cols > 0)
            sresid__sgemm(0, 1, bi, nc, w->cols, 1.0f, w->x + i0 * w->ld, w->ld, w->cand,
                          w->cols, 0.0f, w->dots, nc);
        else
            memset(w->dots, 0, (size_t)(bi * nc) * sizeof *w->dots);
        for (int64_t i = i0; i < i0 + bi; i++)
            for (int64_t l = 0; l < nc; l++) {
                double d = w->xn[i] + w->xn[idx[l]] - 2.0 * w->dots[(i - i0) * nc + l];
                d = d > 0 ? d : 0;
                w->nd[i * nc + l] = d;
                pot[l] += d < w->dist[i] ? d : w->dist[i];
            }
    }
}

/* One row drawn with probability proportional to dist (uniform if all 0). */
static int64_t draw_row(const km *w, sresid__rng *rng, double total)
{
    if (!(total > 0))
        return (int64_t)sresid__rng_below(rng, (uint64_t)w->rows);
    double u = sresid__rng_uniform(rng) * total, acc = 0;
    int64_t pick = -1;
    for (int64_t i = 0; i < w->rows; i++) {
        if (w->dist[i] > 0)
            pick = i; /* the last positive one if rounding runs out */
        acc += w->dist[i];
        if (acc > u && w->dist[i] > 0)
            break;
    }
    return pick;
}

static void seed_pp(km *w, sresid__rng *rng)
{
    int64_t idx[KM_MAX_TRIALS];
    double pot[KM_MAX_TRIALS];
    for (int64_t i = 0; i < w->rows; i++)
        w->dist[i] = INFINITY;
    for (int64_t c = 0; c < w->k; c++) {
        int64_t nc = 1;
        if (c == 0) {
            idx[0] = (int64_t)sresid__rng_below(rng, (uint64_t)w->rows);
        } else {
            double total = 0;
            for (int64_t i = 0; i < w->rows; i++)
                total += w->dist[i];
            nc = w->trials;
            for (int64_t l = 0; l < nc; l++)
                idx[l] = draw_row(w, rng, total);
        }
        set_centre(w, c, idx[0]);
        if (c == w->k - 1 && nc == 1)
            break; /* nothing left to choose between or to measure */
        try_candidates(w, idx, nc, pot);
        int64_t best = 0;
        for (int64_t l = 1; l < nc; l++)
            if (pot[l] < pot[best])
                best = l;
        set_centre(w, c, idx[best]);
        if (c == w->k - 1)
            break;
        for (int64_t i = 0; i < w->rows; i++) {
            double d = w->nd[i * nc + best];
            w->dist[i] = d < w->dist[i] ? d : w->dist[i];
        }
        w->dist[idx[best]] = 0; /* exactly, whatever the rounding said */
    }
}

/* Assign every row to its nearest centre; returns how many rows moved. */
static int64_t assign(km *w)
{
    for (int64_t c = 0; c < w->k; c++)
        w->cn[c] = dot_self(w->c + c * w->cols, w->cols);
    int64_t moved = 0;
    for (int64_t i0 = 0; i0 < w->rows; i0 += w->blk) {
        int64_t bi = w->rows - i0 < w->blk ? w->rows - i0 : w->blk;
        if (w->cols > 0)
            sresid__sgemm(0, 1, bi, w->k, w->cols, 1.0f, w->x + i0 * w->ld, w->ld, w->c,
                          w->cols, 0.0f, w->dots, w->k);
        else
            memset(w->dots, 0, (size_t)(bi * w->k) * sizeof *w->dots);
        for (int64_t i = 0; i < bi; i++) {
            const float *d = w->dots + i * w->k;
            int32_t best = 0;
            double bv = w->cn[0] - 2.0 * d[0];
            for (int64_t c = 1; c < w->k; c++) {
                double v = w->cn[c] - 2.0 * d[c];
                if (v < bv) {
                    bv = v;
                    best = (int32_t)c;
                }
            }
            double dd = w->xn[i0 + i] + bv;
            w->dist[i0 + i] = dd > 0 ? dd : 0;
            if (w->lab[i0 + i] != best) {
                move_row(w, i0 + i, best);
                moved++;
            }
        }
    }
    return moved;
}

/* Give each empty cluster the row farthest from its centre, taken from a
 * cluster that keeps another row (one exists: k <= rows). */
static void fill_empty(km *w)
{
    for (int64_t c = 0; c < w->k; c++) {
        if (w->cnt[c] > 0)
            continue;
        int64_t far = -1;
        double fd = -1;
        for (int64_t i = 0; i < w->rows; i++)
            if (w->cnt[w->lab[i]] >= 2 && w->dist[i] > fd) {
                fd = w->dist[i];
                far = i;
            }
        move_row(w, far, (int32_t)c);
        w->dist[far] = 0;
    }
}

static void update_centres(km *w)
{
    for (int64_t c = 0; c < w->k; c++) {
        const double *s = w->sums + c * w->cols;
        float *cv = w->c + c * w->cols;
        double inv = 1.0 / (double)w->cnt[c];
        for (int64_t j = 0; j < w->cols; j++)
            cv[j] = (float)(s[j] * inv);
    }
}

/* One k-means run (1 <= k <= rows, finite input). labels (rows) and centers
 * (k x cols) may be NULL. Fails only with NOMEM. */
static sresid_status kmeans_run(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                int64_t k, uint64_t seed, int32_t max_iter, int32_t *labels,
                                float *centers, double *inertia, int32_t *iterations)
{
    km w = {.x = x, .rows = rows, .cols = cols, .ld = ld, .k = k};
    float *scaled = NULL;

    /* The expanded distance overflows float32 for |x| near 2^63 and loses
     * everything to underflow near 2^-63: a matrix with max |x| beyond 2^40
     * or below 2^-40 runs on a copy scaled by a power of two (exact; k-means
     * commutes with the scale). */
    float amax = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            amax = fabsf(x[i * ld + j]) > amax ? fabsf(x[i * ld + j]) : amax;
    int e = 0;
    if (amax > 0x1p40f || (amax > 0 && amax < 0x1p-40f)) {
        e = ilogbf(amax);
        scaled = malloc(((size_t)rows * (size_t)cols + SRESID__BLAS_SLACK) * sizeof *scaled);
        if (!scaled)
            return sresid__fail(SRESID_ERR_NOMEM, "k-means: out of memory");
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                scaled[i * cols + j] = ldexpf(x[i * ld + j], -e);
        w.x = scaled;
        w.ld = cols;
    }

    w.blk = KM_DOT_ELEMS / (k > KM_MAX_TRIALS ? k : KM_MAX_TRIALS);
    w.blk = w.blk < 16 ? 16 : w.blk;
    w.blk = w.blk > rows ? rows : w.blk;
    size_t ck = (size_t)k * (size_t)cols;
    w.xn = malloc((size_t)rows * sizeof *w.xn);
    w.dist = malloc((size_t)rows * sizeof *w.dist);
    w.lab = malloc((size_t)rows * sizeof *w.lab);
    w.c = malloc((ck + SRESID__BLAS_SLACK) * sizeof *w.c);
    w.cn = malloc((size_t)k * sizeof *w.cn);
    w.sums = calloc(ck + 1, sizeof *w.sums);
    w.cnt = calloc((size_t)k, sizeof *w.cnt);
    /* seeding candidates per step: 2 + ln k, as scikit-learn */
    w.trials = 2 + (int64_t)log((double)k);
    w.trials = w.trials > KM_MAX_TRIALS ? KM_MAX_TRIALS : w.trials;
    int64_t dk = k > w.trials ? k : w.trials;
    w.dots = malloc(((size_t)w.blk * (size_t)dk + SRESID__BLAS_SLACK) * sizeof *w.dots);
    w.cand = malloc(((size_t)w.trials * (size_t)cols + SRESID__BLAS_SLACK) * sizeof *w.cand);
    w.nd = malloc((size_t)rows * (size_t)w.trials * sizeof *w.nd);
    sresid_status st = SRESID_OK;
    if (!w.xn || !w.dist || !w.lab || !w.c || !w.cn || !w.sums || !w.cnt || !w.dots || !w.cand ||
        !w.nd) {
        st = sresid__fail(SRESID_ERR_NOMEM, "k-means: out of memory (%lld x %lld, k = %lld)",
                          (long long)rows, (long long)cols, (long long)k);
        goto done;
    }

    for (int64_t i = 0; i < rows; i++) {
        w.xn[i] = dot_self(w.x + i * w.ld, cols);
        w.lab[i] = -1;
    }
    sresid__rng rng;
    sresid__rng_seed(&rng, seed);
    seed_pp(&w, &rng);

    int32_t it = 0;
    for (;;) {
        if (sresid__job_stopping()) { /* inside a job whose result is not wanted */
            st = sresid__job_stopped();
            goto done;
        }
        int64_t moved = assign(&w);
        it++;
        if (moved == 0)
            break; /* the centres are already the means of these clusters */
        fill_empty(&w);
        update_centres(&w);
        if (it >= max_iter) {
            assign(&w); /* labels of the final centres */
            break;
        }
    }

    double wk = 0;
    for (int64_t i = 0; i < rows; i++)
        wk += dist_exact(w.x + i * w.ld, w.c + w.lab[i] * cols, cols);
    if (e != 0)
        for (size_t j = 0; j < ck; j++)
            w.c[j] = ldexpf(w.c[j], e);
    if (labels)
        memcpy(labels, w.lab, (size_t)rows * sizeof *labels);
    if (centers)
        memcpy(centers, w.c, ck * sizeof *centers);
    if (inertia)
        *inertia = ldexp(wk, 2 * e);
    if (iterations)
        *iterations = it;

done:
    free(scaled);
    free(w.xn);
    free(w.dist);
    free(w.lab);
    free(w.c);
    free(w.cn);
    free(w.sums);
    free(w.cnt);
    free(w.dots);
    free(w.cand);
    free(w.nd);
    return st;
}

/* Options: NULL or a valid struct; fills seed and max_iter. */
static sresid_status read_opts(const sresid_kmeans_opts *opts, const char *fn, uint64_t *seed,
                               int32_t *max_iter)
{
    sresid_kmeans_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (o.max_iter < 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: max_iter %d is negative", fn,
                            (int)o.max_iter);
    if (o.reserved != 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: reserved field is not zero", fn);
    *seed = o.seed;
    *max_iter = o.max_iter ? o.max_iter : 100;
    return SRESID_OK;
}

sresid_status sresid_kmeans_fit(const float *a, int64_t rows, int64_t cols, int64_t ld,
                                int32_t k, const sresid_kmeans_opts *opts, int32_t *labels,
                                float *centers, double *inertia, int32_t *iterations)
{
    static const char *const fn = "sresid_kmeans_fit";
    sresid_status st = sresid__check_matrix(a, rows, cols, ld, fn);
    if (st != SRESID_OK)
        return st;
    uint64_t seed;
    int32_t max_iter;
    if ((st = read_opts(opts, fn, &seed, &max_iter)) != SRESID_OK)
        return st;
    if (k < 1 || k > rows)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: k = %d is not in [1, rows = %lld]", fn,
                            (int)k, (long long)rows);
    if (rows > INT32_MAX)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %lld rows do not fit int32 labels", fn,
                            (long long)rows);
    if (!sresid__all_finite(a, rows, cols, ld))
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the matrix has NaN or Inf values", fn);

    /* Private outputs first, so that a failure writes nothing. */
    int32_t *lab = labels ? malloc((size_t)rows * sizeof *lab) : NULL;
    float *cen = centers ? malloc((size_t)k * (size_t)cols * sizeof *cen + 1) : NULL;
    if ((labels && !lab) || (centers && !cen)) {
        free(lab);
        free(cen);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    }
    double wk;
    int32_t it;
    st = kmeans_run(a, rows, cols, ld, k, seed, max_iter, lab, cen, &wk, &it);
    if (st == SRESID_OK) {
        if (labels)
            memcpy(labels, lab, (size_t)rows * sizeof *lab);
        if (centers)
            memcpy(centers, cen, (size_t)k * (size_t)cols * sizeof *cen);
        if (inertia)
            *inertia = wk;
        if (iterations)
            *iterations = it;
    }
    free(lab);
    free(cen);
    return st;
}

/* T = sum over rows of ||x - mean row||^2 and the variance of all entries. */
static sresid_status total_scatter(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                   double *t, double *var)
{
    double *mean = calloc((size_t)cols + 1, sizeof *mean);
    if (!mean)
        return sresid__fail(SRESID_ERR_NOMEM, "k-means: out of memory");
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            mean[j] += x[i * ld + j];
    double gm = 0;
    for (int64_t j = 0; j < cols; j++) {
        mean[j] /= (double)rows;
        gm += mean[j];
    }
    gm /= (double)cols;
    double s = 0, b = 0;
    for (int64_t i = 0; i < rows; i++) {
        const float *r = x + i * ld;
        double s0 = 0, s1 = 0;
        int64_t j = 0;
        for (; j + 2 <= cols; j += 2) {
            double d0 = r[j] - mean[j], d1 = r[j + 1] - mean[j + 1];
            s0 += d0 * d0;
            s1 += d1 * d1;
        }
        for (; j < cols; j++)
            s0 += (r[j] - mean[j]) * (r[j] - mean[j]);
        s += s0 + s1;
    }
    /* total variance = within-column scatter + rows x spread of the column means */
    for (int64_t j = 0; j < cols; j++)
        b += (mean[j] - gm) * (mean[j] - gm);
    free(mean);
    *t = s;
    *var = (s + (double)rows * b) / ((double)rows * (double)cols);
    return SRESID_OK;
}

sresid_status sresid_kmeans_explained(const float *a, int64_t rows, int64_t cols, int64_t ld,
                                      const int32_t *ks, size_t nk,
                                      const sresid_kmeans_opts *opts, sresid_kmeans_result *out)
{
    static const char *const fn = "sresid_kmeans_explained";
    sresid_status st = sresid__check_matrix(a, rows, cols, ld, fn);
    if (st != SRESID_OK)
        return st;
    uint64_t seed;
    int32_t max_iter;
    if ((st = read_opts(opts, fn, &seed, &max_iter)) != SRESID_OK)
        return st;
    if (nk == 0)
        return SRESID_OK;
    if (!ks || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, ks ? "out" : "ks");
    if (nk > (1u << 20))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: nk = %zu is absurd", fn, nk);
    /* Entries lie out[0].size bytes apart, so that an array of a later,
     * larger struct works too; each must carry the same size. */
    size_t stride = out->size;
    if (stride < sizeof *out || stride > (1u << 20) || stride % _Alignof(sresid_kmeans_result))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: out[0].size %zu is not a valid size (set it to sizeof)", fn,
                            stride);
    for (size_t i = 0; i < nk; i++) {
        const sresid_kmeans_result *o = (const void *)((const char *)out + i * stride);
        if (o->size != stride)
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "%s: out[%zu].size %zu differs from out[0].size %zu", fn, i,
                                o->size, stride);
        if (ks[i] < 1)
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: ks[%zu] = %d is below 1", fn, i,
                                (int)ks[i]);
    }
    if (rows > INT32_MAX)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %lld rows are too many", fn,
                            (long long)rows);
    if (!sresid__all_finite(a, rows, cols, ld))
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the matrix has NaN or Inf values", fn);

    sresid_kmeans_result *res = calloc(nk, sizeof *res);
    if (!res)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    float *rnd = NULL;
    double t = 0, var = 0, tr = 0, vr = 0;
    int any = 0;
    for (size_t i = 0; i < nk; i++)
        any |= ks[i] <= rows;
    if (any) {
        if ((st = total_scatter(a, rows, cols, ld, &t, &var)) != SRESID_OK)
            goto done;
        /* The baseline: a Gaussian matrix of the same shape and overall
         * variance, from a seed derived from the user's (the figure does not
         * depend on the variance; matching it keeps the arithmetic alike). */
        rnd = malloc(((size_t)rows * (size_t)cols + SRESID__BLAS_SLACK) * sizeof *rnd);
        if (!rnd) {
            st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
            goto done;
        }
        sresid__rng g;
        sresid__rng_seed(&g, seed ^ KM_RANDOM_SEED_XOR);
        sresid__rng_normal_f32(&g, rnd, (size_t)rows * (size_t)cols, 0.0, sqrt(var));
        if ((st = total_scatter(rnd, rows, cols, cols ? cols : 1, &tr, &vr)) != SRESID_OK)
            goto done;
    }
    for (size_t i = 0; i < nk; i++) {
        sresid_kmeans_result *r = &res[i];
        r->size = stride;
        r->k = ks[i];
        r->explained = r->explained_random = r->difference = NAN;
        if (ks[i] > rows)
            continue;
        double w, wr;
        int32_t it, itr;
        st = kmeans_run(a, rows, cols, ld, ks[i], seed, max_iter, NULL, NULL, &w, &it);
        if (st == SRESID_OK)
            st = kmeans_run(rnd, rows, cols, cols ? cols : 1, ks[i], seed, max_iter, NULL, NULL,
                            &wr, &itr);
        if (st != SRESID_OK)
            goto done;
        r->iterations = it;
        r->explained = t > 0 ? 1 - w / t : NAN;
        r->explained_random = tr > 0 ? 1 - wr / tr : NAN;
        r->difference = r->explained - r->explained_random;
    }
    for (size_t i = 0; i < nk; i++)
        memcpy((char *)out + i * stride, &res[i], sizeof res[i]);

done:
    free(res);
    free(rnd);
    return st;
}
