/* k-means on the rows of a matrix.
 *
 * Seeding is greedy k-means++ (as scikit-learn's): the first centre is a
 * uniform row; at each next step 2 + floor(ln k) candidate rows are drawn
 * with probability proportional to D(x)^2, the squared distance to the
 * nearest centre so far (uniform if every D(x)^2 is zero), and the one that
 * leaves the smallest sum of D(x)^2 is kept. Lloyd iterations then alternate
 *   assignment: nearest centre through ||x||^2 + ||c||^2 - 2 x.c, the dot
 *               products per block of rows (kmeans_kernels.c for a few
 *               centres, a BLIS product otherwise); ties go to the lower
 *               index;
 *   update:     each centre the mean of its rows, from per-cluster sums in
 *               double that are updated only for the rows that moved, while
 *               the block is still in cache.
 * A cluster left empty takes the row farthest from its centre among the
 * clusters that keep at least one other row. The loop stops when no row
 * changes cluster, when the centres moved by at most the tolerance (as
 * scikit-learn: sum of squared shifts <= 1e-4 x the mean variance of the
 * columns), or after max_iter iterations; then (like scikit-learn) the rows
 * are assigned once more to the final centres. The inertia is summed in
 * double from the differences, not from the expanded formula. Restarts run
 * the whole from other seeds and keep the lowest inertia (the first on a
 * tie). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "probes/kmeans_kernels.h"
#include "util/blas.h"
#include "util/jobs.h"
#include "util/util.h"

/* The Gaussian baseline of sresid_kmeans_explained draws from this seed. */
#define KM_RANDOM_SEED_XOR 0x5DEECE66Dull
#define KM_DOT_ELEMS (1 << 20) /* bound on the block of dot products */
#define KM_BLOCK_BYTES (1 << 18) /* rows per block for the kernel: about L2 */
#define KM_MAX_TRIALS 32
#define KM_TOL 1e-4 /* scikit-learn's default tol */

/* A matrix ready for k-means: finite, scaled if need be, with row norms. */
typedef struct kmdata {
    const float *x;
    int64_t rows, cols, ld;
    int e;        /* x = the caller's matrix x 2^-e */
    float *scaled; /* owned copy when e != 0 */
    double *xn;   /* ||x||^2 per row */
} kmdata;

typedef struct km {
    const float *x;
    int64_t rows, cols, ld, k, blk;
    int fast;      /* dot products through sresid__km_dots */
    const double *xn;
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

/* out (nr x nc) = rows x[0 .. nr) . centres c[0 .. nc) (row stride cols). */
static void block_dots(const km *w, const float *x, int64_t nr, const float *c, int64_t nc,
                       float *out)
{
    if (w->cols == 0)
        memset(out, 0, (size_t)(nr * nc) * sizeof *out);
    else if (w->fast && nc <= SRESID__KM_DOTS_MAX)
        sresid__km_dots(x, w->ld, nr, w->cols, c, w->cols, nc, out);
    else
        sresid__sgemm(0, 1, nr, nc, w->cols, 1.0f, x, w->ld, c, w->cols, 0.0f, out, nc);
}

static void move_row(km *w, int64_t i, int32_t to)
{
    const float *r = w->x + i * w->ld;
    int32_t from = w->lab[i];
    if (from >= 0) {
        sresid__km_add_row(w->sums + from * w->cols, r, w->cols, -1);
        w->cnt[from]--;
    }
    sresid__km_add_row(w->sums + to * w->cols, r, w->cols, 1);
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
 * nd (rows x nc), block by block; pot[l] = the potential
 * sum_x min(D(x)^2, d(x, candidate l)^2) if candidate l were taken. */
static void try_candidates(km *w, const int64_t *idx, int64_t nc, double *pot)
{
    for (int64_t l = 0; l < nc; l++) {
        memcpy(w->cand + l * w->cols, w->x + idx[l] * w->ld, (size_t)w->cols * sizeof(float));
        pot[l] = 0;
    }
    for (int64_t i0 = 0; i0 < w->rows; i0 += w->blk) {
        int64_t bi = w->rows - i0 < w->blk ? w->rows - i0 : w->blk;
        block_dots(w, w->x + i0 * w->ld, bi, w->cand, nc, w->dots);
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

/* Greedy k-means++; false when stopped from outside. */
static bool seed_pp(km *w, sresid__rng *rng)
{
    int64_t idx[KM_MAX_TRIALS];
    double pot[KM_MAX_TRIALS];
    for (int64_t i = 0; i < w->rows; i++)
        w->dist[i] = INFINITY;
    for (int64_t c = 0; c < w->k; c++) {
        if (sresid__job_stopping())
            return false;
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
    return true;
}

/* Assign every row to its nearest centre; returns how many rows moved. */
static int64_t assign(km *w)
{
    for (int64_t c = 0; c < w->k; c++) {
        double s = 0;
        for (int64_t j = 0; j < w->cols; j++)
            s += (double)w->c[c * w->cols + j] * w->c[c * w->cols + j];
        w->cn[c] = s;
    }
    int64_t moved = 0;
    for (int64_t i0 = 0; i0 < w->rows; i0 += w->blk) {
        int64_t bi = w->rows - i0 < w->blk ? w->rows - i0 : w->blk;
        block_dots(w, w->x + i0 * w->ld, bi, w->c, w->k, w->dots);
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
                move_row(w, i0 + i, best); /* the row is still in cache */
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

/* Centres := the means of their clusters; returns the sum of the squared
 * shifts. */
static double update_centres(km *w)
{
    double shift = 0;
    for (int64_t c = 0; c < w->k; c++) {
        const double *s = w->sums + c * w->cols;
        float *cv = w->c + c * w->cols;
        double inv = 1.0 / (double)w->cnt[c];
        for (int64_t j = 0; j < w->cols; j++) {
            float v = (float)(s[j] * inv);
            double d = (double)v - cv[j];
            shift += d * d;
            cv[j] = v;
        }
    }
    return shift;
}

/* The tolerance on the centres' shift: KM_TOL x the mean variance of the
 * columns, from the row norms and the column sums (the clusters' sums
 * together). Only a threshold, so the one-pass formula is close enough. */
static double tolerance(const km *w)
{
    double sq = 0, cs = 0;
    for (int64_t i = 0; i < w->rows; i++)
        sq += w->xn[i];
    for (int64_t j = 0; j < w->cols; j++) {
        double s = 0;
        for (int64_t c = 0; c < w->k; c++)
            s += w->sums[c * w->cols + j];
        cs += s * s;
    }
    double t = sq - cs / (double)w->rows;
    return t > 0 && w->cols > 0 ? KM_TOL * t / ((double)w->rows * (double)w->cols) : 0;
}

/* One run from a seed: seeding, Lloyd, final labels in w->lab and centres
 * in w->c; *it the Lloyd iterations. false when stopped from outside. */
static bool lloyd(km *w, uint64_t seed, int32_t max_iter, int32_t *it)
{
    for (int64_t i = 0; i < w->rows; i++)
        w->lab[i] = -1;
    memset(w->sums, 0, (size_t)w->k * (size_t)w->cols * sizeof *w->sums);
    memset(w->cnt, 0, (size_t)w->k * sizeof *w->cnt);
    sresid__rng rng;
    sresid__rng_seed(&rng, seed);
    if (!seed_pp(w, &rng))
        return false;
    double tol = -1;
    for (*it = 0;;) {
        if (sresid__job_stopping()) /* inside a job whose result is not wanted */
            return false;
        int64_t moved = assign(w);
        ++*it;
        if (moved == 0)
            break; /* the centres are already the means of these clusters */
        if (tol < 0)
            tol = tolerance(w);
        fill_empty(w);
        double shift = update_centres(w);
        if (*it >= max_iter || shift <= tol) {
            assign(w); /* labels of the final centres */
            break;
        }
    }
    return true;
}

static void kmdata_free(kmdata *d)
{
    free(d->scaled);
    free(d->xn);
    d->scaled = NULL;
    d->xn = NULL;
}

/* Checks that a is finite (NONFINITE, with fn in the message), computes the
 * row norms and, for values beyond 2^40 or below 2^-40, a copy scaled by a
 * power of two: the expanded distance overflows float32 for |x| near 2^63
 * and loses everything to underflow near 2^-63 (exact; k-means commutes
 * with the scale). */
static sresid_status kmdata_init(kmdata *d, const float *a, int64_t rows, int64_t cols,
                                 int64_t ld, const char *fn)
{
    *d = (kmdata){.x = a, .rows = rows, .cols = cols, .ld = ld};
    d->xn = malloc(((size_t)rows + 1) * sizeof *d->xn);
    if (!d->xn)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    uint32_t bits = sresid__km_scan(a, rows, cols, ld, d->xn);
    if (bits >= 0x7f800000u) {
        kmdata_free(d);
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the matrix has NaN or Inf values", fn);
    }
    float amax;
    memcpy(&amax, &bits, sizeof amax);
    if (amax > 0x1p40f || (amax > 0 && amax < 0x1p-40f)) {
        d->e = ilogbf(amax);
        d->scaled = malloc(((size_t)rows * (size_t)cols + SRESID__BLAS_SLACK) * sizeof *d->scaled);
        if (!d->scaled) {
            kmdata_free(d);
            return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
        }
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                d->scaled[i * cols + j] = ldexpf(a[i * ld + j], -d->e);
        d->x = d->scaled;
        d->ld = cols;
        sresid__km_scan(d->x, rows, cols, d->ld, d->xn);
    }
    return SRESID_OK;
}

/* Seed of restart r: the seed itself first, so that one run is the run of
 * that seed. */
static uint64_t restart_seed(uint64_t seed, int32_t r)
{
    return r == 0 ? seed : sresid__mix64(seed + (uint64_t)r);
}

/* k-means with n_init restarts (1 <= k <= rows), the lowest inertia kept.
 * labels (rows) and centers (k x cols) may be NULL. Fails with NOMEM, or
 * the stop status inside a job being stopped. */
static sresid_status kmeans_run(const kmdata *d, int64_t k, uint64_t seed, int32_t max_iter,
                                int32_t n_init, int32_t *labels, float *centers,
                                double *inertia, int32_t *iterations)
{
    int64_t rows = d->rows, cols = d->cols;
    km w = {.x = d->x, .rows = rows, .cols = cols, .ld = d->ld, .k = k, .xn = d->xn};
    w.fast = sresid__km_have_dots() && k <= SRESID__KM_DOTS_MAX;
    /* seeding candidates per step: 2 + ln k, as scikit-learn */
    w.trials = 2 + (int64_t)log((double)k);
    w.trials = w.trials > KM_MAX_TRIALS ? KM_MAX_TRIALS : w.trials;
    int64_t dk = k > w.trials ? k : w.trials;
    if (w.fast) /* a block of rows about the size of L2, for the sums */
        w.blk = KM_BLOCK_BYTES / (int64_t)sizeof(float) / (cols > 1 ? cols : 1);
    else
        w.blk = KM_DOT_ELEMS / (k > KM_MAX_TRIALS ? k : KM_MAX_TRIALS);
    w.blk = w.blk < 16 ? 16 : w.blk;
    w.blk = w.blk > rows ? rows : w.blk;
    size_t ck = (size_t)k * (size_t)cols;
    bool keep = n_init > 1; /* the best run so far is copied aside */
    w.dist = malloc((size_t)rows * sizeof *w.dist);
    w.lab = malloc((size_t)rows * sizeof *w.lab);
    w.c = malloc((ck + SRESID__BLAS_SLACK) * sizeof *w.c);
    w.cn = malloc((size_t)k * sizeof *w.cn);
    w.sums = malloc((ck + 1) * sizeof *w.sums);
    w.cnt = malloc((size_t)k * sizeof *w.cnt);
    w.dots = malloc(((size_t)w.blk * (size_t)dk + SRESID__BLAS_SLACK) * sizeof *w.dots);
    w.cand = malloc(((size_t)w.trials * (size_t)cols + SRESID__BLAS_SLACK) * sizeof *w.cand);
    w.nd = malloc((size_t)rows * (size_t)w.trials * sizeof *w.nd);
    int32_t *best_lab = keep && labels ? malloc((size_t)rows * sizeof *best_lab) : NULL;
    float *best_c = keep && centers ? malloc((ck + 1) * sizeof *best_c) : NULL;
    sresid_status st = SRESID_OK;
    if (!w.dist || !w.lab || !w.c || !w.cn || !w.sums || !w.cnt || !w.dots || !w.cand || !w.nd ||
        (keep && labels && !best_lab) || (keep && centers && !best_c)) {
        st = sresid__fail(SRESID_ERR_NOMEM, "k-means: out of memory (%lld x %lld, k = %lld)",
                          (long long)rows, (long long)cols, (long long)k);
        goto done;
    }

    double best = INFINITY;
    int32_t best_it = 0;
    for (int32_t r = 0; r < n_init; r++) {
        int32_t it;
        if (!lloyd(&w, restart_seed(seed, r), max_iter, &it)) {
            st = sresid__job_stopped();
            goto done;
        }
        double wk = 0;
        for (int64_t i = 0; i < rows; i++)
            wk += sresid__km_dist(w.x + i * w.ld, w.c + w.lab[i] * cols, cols);
        if (r > 0 && !(wk < best))
            continue;
        best = wk;
        best_it = it;
        if (best_lab)
            memcpy(best_lab, w.lab, (size_t)rows * sizeof *best_lab);
        if (best_c)
            memcpy(best_c, w.c, ck * sizeof *best_c);
    }
    const int32_t *lab = best_lab ? best_lab : w.lab;
    float *cen = best_c ? best_c : w.c;
    if (d->e != 0)
        for (size_t j = 0; j < ck; j++)
            cen[j] = ldexpf(cen[j], d->e);
    if (labels)
        memcpy(labels, lab, (size_t)rows * sizeof *labels);
    if (centers)
        memcpy(centers, cen, ck * sizeof *centers);
    if (inertia)
        *inertia = ldexp(best, 2 * d->e);
    if (iterations)
        *iterations = best_it;

done:
    free(w.dist);
    free(w.lab);
    free(w.c);
    free(w.cn);
    free(w.sums);
    free(w.cnt);
    free(w.dots);
    free(w.cand);
    free(w.nd);
    free(best_lab);
    free(best_c);
    return st;
}

/* Runs for SRESID_KMEANS_INIT_AUTO: local optima matter most on small
 * heavy-tailed matrices, where runs are cheap; a budget of 2^24 values per
 * K keeps a large matrix at the cost of one run (docs/probes.md). */
#define KM_AUTO_BUDGET 16777216.0
#define KM_AUTO_MAX 50

static int32_t restarts_for(int32_t n_init, int64_t rows, int64_t cols)
{
    if (n_init != SRESID_KMEANS_INIT_AUTO)
        return n_init;
    double size = (double)(rows > 1 ? rows : 1) * (double)(cols > 1 ? cols : 1);
    double n = floor(KM_AUTO_BUDGET / size);
    return n >= KM_AUTO_MAX ? KM_AUTO_MAX : n < 1 ? 1 : (int32_t)n;
}

/* Options: NULL or a valid struct; fills seed, max_iter and n_init. */
static sresid_status read_opts(const sresid_kmeans_opts *opts, const char *fn, uint64_t *seed,
                               int32_t *max_iter, int32_t *n_init)
{
    sresid_kmeans_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (o.max_iter < 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: max_iter %d is negative", fn,
                            (int)o.max_iter);
    if ((o.n_init < 0 && o.n_init != SRESID_KMEANS_INIT_AUTO) ||
        o.n_init > SRESID_KMEANS_MAX_INIT)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: n_init %d is not in [0, %d] nor SRESID_KMEANS_INIT_AUTO", fn,
                            (int)o.n_init, SRESID_KMEANS_MAX_INIT);
    if (o.reserved != 0 || o.reserved2 != 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: reserved field is not zero", fn);
    *seed = o.seed;
    *max_iter = o.max_iter ? o.max_iter : 100;
    *n_init = o.n_init ? o.n_init : 1;
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
    int32_t max_iter, n_init;
    if ((st = read_opts(opts, fn, &seed, &max_iter, &n_init)) != SRESID_OK)
        return st;
    if (k < 1 || k > rows)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: k = %d is not in [1, rows = %lld]", fn,
                            (int)k, (long long)rows);
    if (rows > INT32_MAX)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %lld rows do not fit int32 labels", fn,
                            (long long)rows);
    n_init = restarts_for(n_init, rows, cols);
    kmdata d;
    if ((st = kmdata_init(&d, a, rows, cols, ld, fn)) != SRESID_OK)
        return st;

    /* Private outputs first, so that a failure writes nothing. */
    int32_t *lab = labels ? malloc((size_t)rows * sizeof *lab) : NULL;
    float *cen = centers ? malloc((size_t)k * (size_t)cols * sizeof *cen + 1) : NULL;
    if ((labels && !lab) || (centers && !cen)) {
        free(lab);
        free(cen);
        kmdata_free(&d);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    }
    double wk;
    int32_t it;
    st = kmeans_run(&d, k, seed, max_iter, n_init, lab, cen, &wk, &it);
    kmdata_free(&d);
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
    int32_t max_iter, n_init;
    if ((st = read_opts(opts, fn, &seed, &max_iter, &n_init)) != SRESID_OK)
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
    n_init = restarts_for(n_init, rows, cols);
    kmdata d, dr = {0};
    if ((st = kmdata_init(&d, a, rows, cols, ld, fn)) != SRESID_OK)
        return st;

    sresid_kmeans_result *res = calloc(nk, sizeof *res);
    if (!res) {
        kmdata_free(&d);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    }
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
        /* draws scaled to values near FLT_MAX can overflow: no baseline then */
        st = kmdata_init(&dr, rnd, rows, cols, cols ? cols : 1, fn);
        if (st == SRESID_ERR_NONFINITE)
            tr = NAN;
        else if (st != SRESID_OK)
            goto done;
        st = SRESID_OK;
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
        wr = NAN;
        st = kmeans_run(&d, ks[i], seed, max_iter, n_init, NULL, NULL, &w, &it);
        if (st == SRESID_OK && dr.xn)
            st = kmeans_run(&dr, ks[i], seed, max_iter, n_init, NULL, NULL, &wr, &itr);
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
    kmdata_free(&dr);
    kmdata_free(&d);
    free(res);
    free(rnd);
    return st;
}
