/* Statistics probes: moments, histograms and entropy, sparsity, correlation.
 * References are written here independently: long-double two-pass sums,
 * closed forms, a sort-based selection, numpy's edge rule by binary search. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Relative difference, with a floor so that exact zeros compare. */
static double rel(double got, double want)
{
    double d = fabs(got - want), m = fabs(want);
    return m > 1e-300 ? d / m : d;
}

#define ck_rel(got, want, tol)                                                            \
    do {                                                                                  \
        double g_ = (got), w_ = (want);                                                   \
        ck_assert_msg(rel(g_, w_) <= (tol), "%s = %.17g, want %.17g (rel %.3g > %.3g)", \
                      #got, g_, w_, rel(g_, w_), (double)(tol));                         \
    } while (0)

static float *rand_normal_f32(size_t n, uint64_t seed, double mean, double sd)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(mean + sd * tu_rand_normal(&seed));
    return x;
}

/* ---- moments ------------------------------------------------------------ */

typedef struct ref_moments {
    size_t n;
    long double mean, m2, m3, m4; /* sums of powers of deviations */
    long double a3;               /* sum of |d|^3: the scale of m3's rounding */
} ref_moments;

/* Two-pass long-double reference over the finite values. */
static ref_moments ref_of(const float *x, size_t n)
{
    ref_moments r = {0};
    long double s = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            s += x[i];
            r.n++;
        }
    r.mean = r.n ? s / r.n : 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            long double d = x[i] - r.mean, d2 = d * d;
            r.m2 += d2;
            r.m3 += d2 * d;
            r.m4 += d2 * d2;
            r.a3 += d2 * fabsl(d);
        }
    return r;
}

/* Relative tolerance tol on the sums; sums of odd powers cancel, so m3 and
 * the skewness are held to tol times their scale sum |d|^3 instead, and the
 * kurtosis (near 0 for Gaussian data) through m4 / (n var^2) = kurtosis + 3. */
static void check_state_vs_ref(const sresid_moments *m, const ref_moments *r, double tol)
{
    ck_assert_uint_eq(m->count, r->n);
    ck_rel(m->mean, (double)r->mean, tol);
    ck_rel(m->m2, (double)r->m2, tol);
    ck_assert_msg(fabsl(m->m3 - r->m3) <= tol * r->a3, "m3 = %.17g, want %.17Lg (scale %.3Lg)",
                  m->m3, r->m3, r->a3);
    ck_rel(m->m4, (double)r->m4, tol);
    sresid_moment_stats st = {.size = sizeof st};
    ck_assert_ok(sresid_moments_stats(m, &st));
    long double n = r->n, var = r->m2 / n, sd3 = powl(var, 1.5L);
    ck_rel(st.variance, (double)var, tol);
    ck_assert_msg(fabsl(st.skewness - r->m3 / n / sd3) <= tol * (r->a3 / n / sd3),
                  "skewness = %.17g, want %.17Lg", st.skewness, r->m3 / n / sd3);
    ck_rel(st.kurtosis + 3, (double)(r->m4 / n / (var * var)), tol);
}

static sresid_moments moments_of(const float *x, int64_t rows, int64_t cols, int64_t ld)
{
    sresid_moments m;
    ck_assert_ok(sresid_moments_init(&m));
    ck_assert_ok(sresid_moments_add(&m, x, rows, cols, ld));
    return m;
}

/* A skewed, heavy-ish sample with an offset: a mixture of a normal and an
 * exponential, so that every moment is far from zero. */
static float *mixture_sample(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) {
        double u = tu_rand_uniform(&seed);
        x[i] = u < 0.8 ? (float)(3.0 + tu_rand_normal(&seed))
                       : (float)(3.0 - 4.0 * log(1.0 - tu_rand_uniform(&seed)));
    }
    return x;
}

START_TEST(moments_merge_tree_equals_concatenation)
{
    const size_t n = tu_quick() ? 20000 : 100000;
    float *x = mixture_sample(n, 11);
    uint64_t seed = 99;
    /* 7 uneven parts from 6 random cut points */
    size_t cut[8] = {0};
    for (int i = 1; i < 7; i++)
        cut[i] = (size_t)(tu_rand_uniform(&seed) * n);
    cut[7] = n;
    for (int i = 1; i < 8; i++) /* insertion sort */
        for (int j = i; j > 0 && cut[j] < cut[j - 1]; j--) {
            size_t t = cut[j];
            cut[j] = cut[j - 1];
            cut[j - 1] = t;
        }
    sresid_moments part[7];
    for (int i = 0; i < 7; i++) {
        size_t len = cut[i + 1] - cut[i];
        ck_assert_ok(sresid_moments_init(&part[i]));
        /* first half as one row, the rest as a matrix of rows of 3 */
        size_t a = len / 2, rows = (len - a) / 3, rest = len - a - rows * 3;
        ck_assert_ok(sresid_moments_add(&part[i], x + cut[i], 1, (int64_t)a, (int64_t)a));
        ck_assert_ok(sresid_moments_add(&part[i], x + cut[i] + a, (int64_t)rows, 3, 3));
        ck_assert_ok(sresid_moments_add(&part[i], x + cut[i] + a + rows * 3, 1, (int64_t)rest,
                                        (int64_t)rest + 1));
    }
    /* merge in a shuffled tree: repeatedly merge two random survivors */
    int alive[7] = {0, 1, 2, 3, 4, 5, 6}, na = 7;
    while (na > 1) {
        int i = (int)(tu_rand_uniform(&seed) * na), j = (int)(tu_rand_uniform(&seed) * na);
        if (i == j)
            j = (j + 1) % na;
        ck_assert_ok(sresid_moments_merge(&part[alive[i]], &part[alive[j]]));
        alive[j] = alive[--na];
    }
    const sresid_moments *merged = &part[alive[0]];
    sresid_moments whole = moments_of(x, 1, (int64_t)n, (int64_t)n);
    ref_moments r = ref_of(x, n);
    check_state_vs_ref(merged, &r, 1e-12);
    check_state_vs_ref(&whole, &r, 1e-12);
    ck_assert(merged->min == whole.min && merged->max == whole.max);
    free(x);
}
END_TEST

START_TEST(moments_merge_empty_and_self)
{
    float x[5] = {1, 2, 3, 4, 10};
    sresid_moments a = moments_of(x, 1, 5, 5), e, b;
    ck_assert_ok(sresid_moments_init(&e));
    b = a;
    ck_assert_ok(sresid_moments_merge(&b, &e)); /* + empty: unchanged */
    ck_assert_mem_eq(&a, &b, sizeof a);
    ck_assert_ok(sresid_moments_merge(&e, &a)); /* empty + a = a */
    ck_assert_mem_eq(&a, &e, sizeof a);
    /* a merged with itself: every value twice */
    float xx[10] = {1, 2, 3, 4, 10, 1, 2, 3, 4, 10};
    ref_moments r = ref_of(xx, 10);
    ck_assert_ok(sresid_moments_merge(&b, &b));
    check_state_vs_ref(&b, &r, 1e-14);
}
END_TEST

/* +-1 in equal numbers: m2/n = m4/n = 1, so kurtosis is -2 and skewness 0. */
START_TEST(moments_two_point)
{
    const size_t n = 20000;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (i & 1) ? -1.0f : 1.0f;
    sresid_moments m = moments_of(x, 1, (int64_t)n, (int64_t)n);
    sresid_moment_stats st = {.size = sizeof st};
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert(st.kurtosis == -2.0);
    ck_assert(st.skewness == 0.0);
    ck_assert(st.variance == 1.0 && st.mean == 0.0);
    /* halves of one sign each: the merges round, but barely */
    for (size_t i = 0; i < n; i++)
        x[i] = i < n / 2 ? 1.0f : -1.0f;
    m = moments_of(x, 1, (int64_t)n, (int64_t)n);
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert_double_eq_tol(st.kurtosis, -2.0, 1e-13);
    ck_assert_double_eq_tol(st.skewness, 0.0, 1e-13);
    ck_assert(st.min == -1.0 && st.max == 1.0);
    free(x);
}
END_TEST

/* n equally spaced points: variance (n^2 - 1) / 12 (unit spacing), skewness
 * 0, excess kurtosis -6 (n^2 + 1) / (5 (n^2 - 1)). */
START_TEST(moments_uniform_grid)
{
    const size_t sizes[] = {2, 3, 10, 4097, 10001};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        float *x = malloc(n * sizeof *x);
        for (size_t i = 0; i < n; i++)
            x[i] = (float)i - 7.0f;
        sresid_moments m = moments_of(x, 1, (int64_t)n, (int64_t)n);
        sresid_moment_stats st = {.size = sizeof st};
        ck_assert_ok(sresid_moments_stats(&m, &st));
        double nn = (double)n * n;
        ck_rel(st.variance, (nn - 1) / 12, 1e-13);
        ck_assert_double_eq_tol(st.skewness, 0.0, 1e-12);
        ck_rel(st.kurtosis, -6.0 * (nn + 1) / (5.0 * (nn - 1)), 1e-12);
        ck_rel(st.mean, (n - 1) / 2.0 - 7.0, 1e-15);
        free(x);
    }
}
END_TEST

/* N values, s of them a and the rest 0: a Bernoulli(p = s/N) scaled by a,
 * so mean a p, variance a^2 p q, skewness (1 - 2p) / sqrt(p q) and excess
 * kurtosis (1 - 6 p q) / (p q) with q = 1 - p. Heavy tails, exact answer. */
START_TEST(moments_sparse_spikes)
{
    const size_t n = tu_quick() ? 30011 : 100003, s = 37;
    const double a = -2.5;
    float *x = calloc(n, sizeof *x);
    uint64_t seed = 5;
    for (size_t k = 0; k < s;) {
        size_t i = (size_t)(tu_rand_uniform(&seed) * n);
        if (x[i] == 0) {
            x[i] = (float)a;
            k++;
        }
    }
    sresid_moments m = moments_of(x, 1, (int64_t)n, (int64_t)n);
    sresid_moment_stats st = {.size = sizeof st};
    ck_assert_ok(sresid_moments_stats(&m, &st));
    const double p = (double)s / n, q = 1 - p;
    ck_rel(st.mean, a * p, 1e-12);
    ck_rel(st.variance, a * a * p * q, 1e-12);
    ck_rel(st.skewness, -(1 - 2 * p) / sqrt(p * q), 1e-9);
    ck_rel(st.kurtosis, (1 - 6 * p * q) / (p * q), 1e-9);
    ck_assert(st.kurtosis > 500); /* the case is heavy-tailed indeed */
    free(x);
}
END_TEST

START_TEST(moments_nonfinite_counted_and_skipped)
{
    const size_t n = 10007;
    float *x = mixture_sample(n, 3);
    float *clean = malloc(n * sizeof *clean);
    uint64_t seed = 17;
    size_t bad = 0, nc = 0;
    const float specials[3] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < n; i++) {
        /* scattered in the first two blocks (gathered), none in the last
         * (summarised in place) */
        if ((i < 5000 && tu_rand_uniform(&seed) < 0.01) || (i >= 5000 && i < 5100)) {
            x[i] = specials[bad % 3];
            bad++;
        } else {
            clean[nc++] = x[i];
        }
    }
    sresid_moments m = moments_of(x, 1, (int64_t)n, (int64_t)n);
    ck_assert_uint_eq(m.nonfinite, bad);
    ck_assert_uint_eq(m.count, nc);
    ref_moments r = ref_of(clean, nc);
    check_state_vs_ref(&m, &r, 1e-12);
    sresid_moments mc = moments_of(clean, 1, (int64_t)nc, (int64_t)nc);
    ck_assert(m.min == mc.min && m.max == mc.max);
    sresid_moment_stats st = {.size = sizeof st};
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert_uint_eq(st.nonfinite, bad);
    ck_assert(isfinite(st.min) && isfinite(st.max) && isfinite(st.kurtosis));
    /* nothing finite at all */
    float all_bad[4] = {NAN, INFINITY, -INFINITY, NAN};
    m = moments_of(all_bad, 2, 2, 2);
    ck_assert_uint_eq(m.count, 0);
    ck_assert_uint_eq(m.nonfinite, 4);
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert(isnan(st.mean) && isnan(st.variance) && isnan(st.min) && isnan(st.max));
    free(x);
    free(clean);
}
END_TEST

/* Matrices with ld > cols: the padding (NaN, huge values) must not be read. */
START_TEST(moments_stride_skips_padding)
{
    const int64_t shapes[][2] = {{1000, 3}, {7, 5000}, {1, 4099}, {300, 64}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t rows = shapes[t][0], cols = shapes[t][1], ld = cols + 5;
        float *a = malloc((size_t)(rows * ld) * sizeof *a);
        float *dense = rand_normal_f32((size_t)(rows * cols), 40 + t, 1.0, 2.0);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < ld; j++)
                a[i * ld + j] = j < cols ? dense[i * cols + j] : (j & 1) ? NAN : 1e30f;
        sresid_moments ms = moments_of(a, rows, cols, ld);
        ref_moments r = ref_of(dense, (size_t)(rows * cols));
        ck_assert_uint_eq(ms.nonfinite, 0);
        check_state_vs_ref(&ms, &r, 1e-12);
        ck_assert(ms.max < 1e29);
        free(a);
        free(dense);
    }
}
END_TEST

START_TEST(moments_empty_and_constant)
{
    sresid_moments m;
    ck_assert_ok(sresid_moments_init(&m));
    ck_assert_uint_eq(m.count, 0);
    ck_assert(m.min == INFINITY && m.max == -INFINITY);
    ck_assert_ok(sresid_moments_add(&m, NULL, 0, 5, 5)); /* empty: NULL is fine */
    ck_assert_ok(sresid_moments_add(&m, NULL, 3, 0, 1));
    sresid_moment_stats st = {.size = sizeof st};
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert_uint_eq(st.count, 0);
    ck_assert(isnan(st.mean) && isnan(st.variance) && isnan(st.skewness) && isnan(st.kurtosis));
    float c[5000];
    for (int i = 0; i < 5000; i++)
        c[i] = 0.1f;
    m = moments_of(c, 1, 5000, 5000);
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert_double_eq_tol(st.mean, (double)0.1f, 1e-16);
    /* min == max: a constant, whatever the rounding of block means */
    ck_assert(st.mean == (double)0.1f && st.variance == 0);
    ck_assert(isnan(st.skewness) && isnan(st.kurtosis));
    ck_assert(st.min == (double)0.1f && st.max == (double)0.1f);
    /* exactly representable constant: no rounding, m2 exactly 0 */
    for (int i = 0; i < 5000; i++)
        c[i] = 4.0f;
    m = moments_of(c, 1, 5000, 5000);
    ck_assert_ok(sresid_moments_stats(&m, &st));
    ck_assert(st.variance == 0 && isnan(st.skewness) && isnan(st.kurtosis));
}
END_TEST

/* A struct larger than 1.0's keeps its tail; a smaller one is refused. */
START_TEST(moments_stats_size_rules)
{
    float x[4] = {1, 2, 3, 5};
    sresid_moments m = moments_of(x, 1, 4, 4);
    struct {
        sresid_moment_stats s;
        double extra;
    } big;
    memset(&big, 0xAB, sizeof big);
    big.s.size = sizeof big;
    ck_assert_ok(sresid_moments_stats(&m, &big.s));
    ck_assert_uint_eq(big.s.size, sizeof big);
    ck_assert_uint_eq(big.s.count, 4);
    unsigned char pattern[sizeof(double)];
    memset(pattern, 0xAB, sizeof pattern);
    ck_assert_mem_eq(&big.extra, pattern, sizeof pattern);
    sresid_moment_stats small;
    memset(&small, 0x5A, sizeof small);
    small.size = sizeof small - 1;
    sresid_moment_stats copy = small;
    ck_assert_status(sresid_moments_stats(&m, &small), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&small, &copy, sizeof small);
}
END_TEST

START_TEST(moments_argument_errors)
{
    float x[6] = {1, 2, 3, 4, 5, 6};
    sresid_moments m, before, raw;
    ck_assert_status(sresid_moments_init(NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_ok(sresid_moments_init(&m));
    ck_assert_ok(sresid_moments_add(&m, x, 2, 3, 3));
    before = m;
    ck_assert_status(sresid_moments_add(NULL, x, 1, 6, 6), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_add(&m, NULL, 1, 6, 6), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_add(&m, x, -1, 6, 6), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_add(&m, x, 1, -6, 6), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_add(&m, x, 2, 3, 2), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_add(&m, x, 1, 0, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&m, &before, sizeof m);
    memset(&raw, 0, sizeof raw); /* never initialised */
    ck_assert_status(sresid_moments_add(&raw, x, 1, 6, 6), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "not initialised"));
    ck_assert_status(sresid_moments_merge(&m, &raw), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_merge(&raw, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_merge(NULL, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_merge(&m, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&m, &before, sizeof m);
    sresid_moment_stats st = {.size = sizeof st};
    ck_assert_status(sresid_moments_stats(NULL, &st), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_stats(&m, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_moments_stats(&raw, &st), SRESID_ERR_INVALID_ARG);
    st.size = 0;
    ck_assert_status(sresid_moments_stats(&m, &st), SRESID_ERR_INVALID_ARG);
}
END_TEST

/* ---- histograms ---------------------------------------------------------- */

/* numpy's rule, written out: edges k * step + lo (numpy.linspace), last
 * edge hi, bin = the k with edge[k] <= x < edge[k+1], last bin closed;
 * found by binary search. -1 outside [lo, hi]. */
static int32_t ref_bin(double x, double lo, double hi, int32_t bins)
{
    if (!(x >= lo && x <= hi))
        return -1;
    const double step = (hi - lo) / bins;
    int32_t a = 0, b = bins - 1;
    while (a < b) {
        int32_t m = a + (b - a + 1) / 2;
        double e = (double)m * step; /* two statements: never fused */
        e += lo;
        if (e <= x)
            a = m;
        else
            b = m - 1;
    }
    return a;
}

static double ref_entropy(const uint64_t *c, int32_t bins)
{
    long double n = 0, h = 0;
    for (int32_t k = 0; k < bins; k++)
        n += c[k];
    for (int32_t k = 0; k < bins; k++)
        if (c[k]) {
            long double p = c[k] / n;
            h -= p * log2l(p);
        }
    return (double)h;
}

static sresid_histogram *hist_new(int32_t bins, double lo, double hi)
{
    sresid_histogram *h = NULL;
    ck_assert_ok(sresid_histogram_create(bins, lo, hi, &h));
    ck_assert_ptr_nonnull(h);
    return h;
}

START_TEST(histogram_uniform_entropy_is_log2_bins)
{
    const int32_t bs[] = {1, 2, 7, 100, 1000, 20000};
    for (size_t t = 0; t < sizeof bs / sizeof bs[0]; t++) {
        int32_t b = bs[t];
        sresid_histogram *h = hist_new(b, 0, b);
        const int reps = b > 1000 ? 3 : 11;
        float *x = malloc((size_t)b * reps * sizeof *x);
        for (int r = 0; r < reps; r++)
            for (int32_t k = 0; k < b; k++)
                x[r * b + k] = (float)k + 0.5f;
        ck_assert_ok(sresid_histogram_add(h, x, reps, b, b));
        double bits;
        ck_assert_ok(sresid_histogram_entropy(h, &bits));
        if (b == 1)
            ck_assert(bits == 0);
        else
            ck_rel(bits, log2((double)b), 1e-12);
        uint64_t *c = malloc((size_t)b * sizeof *c);
        ck_assert_ok(sresid_histogram_counts(h, c, (size_t)b));
        for (int32_t k = 0; k < b; k++)
            ck_assert_uint_eq(c[k], (uint64_t)reps);
        free(c);
        free(x);
        sresid_histogram_free(h);
    }
}
END_TEST

START_TEST(histogram_edges_closed_last_bin)
{
    /* integer edges: exact */
    sresid_histogram *h = hist_new(8, 0, 8);
    float x[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, nextafterf(3, 0), nextafterf(8, 0), -0.0f,
                 -1e-30f, 8.0000005f, NAN, INFINITY, -INFINITY};
    const uint64_t want[8] = {2, 1, 2, 1, 1, 1, 1, 3};
    ck_assert_ok(sresid_histogram_add(h, x, 1, sizeof x / sizeof x[0], sizeof x / sizeof x[0]));
    uint64_t c[9];
    c[8] = 12345;
    ck_assert_ok(sresid_histogram_counts(h, c, 9));
    for (int k = 0; k < 8; k++)
        ck_assert_msg(c[k] == want[k], "bin %d: %llu, want %llu", k, (unsigned long long)c[k],
                      (unsigned long long)want[k]);
    ck_assert_uint_eq(c[8], 12345); /* only bins entries are written */
    ck_assert_uint_eq(sresid_histogram_outside(h), 2); /* NaN and Inf are nowhere */
    sresid_histogram_free(h);
}
END_TEST

/* Values where the first guess (x - lo) * bins / (hi - lo) lands one bin
 * off numpy's edges (found by search), so the correction decides: each is
 * added 20 times, through the vector kernels and the scalar tail. */
START_TEST(histogram_guess_corrected_against_edges)
{
    static const struct {
        int32_t bins;
        double lo, hi;
        float x;
        int32_t want;
    } cases[] = {
        {3, -0x1.e66666p+0, 0x1.ee147ap+2, 0x1.4e81b4p+0f, 1},  /* guess 0: step up */
        {3, -0x1.e66666p+0, 0x1.1a8f5ep+3, 0x1.ad3a0cp+0f, 1},  /* guess 0 */
        {3, -0x1.cccccep+0, 0x1.f47aep+2, 0x1.681b4cp+0f, 1},   /* guess 0 */
        {14, -0x1p+1, 0x1.b33334p+0, -0x1.33333p-3f, 6},        /* guess 7: step down */
        {14, -0x1p+1, 0x1.59999ap+2, 0x1.b33334p+0f, 6},        /* guess 7 */
        {14, -0x1p+1, 0x1.99999ap+3, 0x1.59999ap+2f, 6},        /* guess 7 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ck_assert_int_eq(ref_bin(cases[c].x, cases[c].lo, cases[c].hi, cases[c].bins),
                         cases[c].want);
        sresid_histogram *h = hist_new(cases[c].bins, cases[c].lo, cases[c].hi);
        float x[20];
        for (int i = 0; i < 20; i++)
            x[i] = cases[c].x;
        ck_assert_ok(sresid_histogram_add(h, x, 1, 20, 20));
        uint64_t counts[14] = {0};
        ck_assert_ok(sresid_histogram_counts(h, counts, 14));
        ck_assert_msg(counts[cases[c].want] == 20, "case %zu: %llu of 20 in bin %d", c,
                      (unsigned long long)counts[cases[c].want], (int)cases[c].want);
        sresid_histogram_free(h);
    }
}
END_TEST

/* Random ranges and values, many of them right on (float-rounded) edges and
 * their neighbours: every count must match numpy's rule. */
START_TEST(histogram_matches_numpy_rule)
{
    uint64_t seed = 2024;
    const int trials = tu_quick() ? 10 : 40;
    for (int t = 0; t < trials; t++) {
        int32_t bins = 1 + (int32_t)(tu_rand_uniform(&seed) * (t % 3 == 0 ? 7 : 300));
        double lo = (tu_rand_uniform(&seed) - 0.5) * 10;
        double hi = lo + 0.01 + tu_rand_uniform(&seed) * 5;
        if (t % 5 == 0) { /* float-valued bounds, as a [min, max] range is */
            lo = (float)lo;
            hi = (float)hi;
        }
        const size_t n = 3000;
        float *x = malloc(n * sizeof *x);
        const double step = (hi - lo) / bins;
        for (size_t i = 0; i < n; i++) {
            double u = tu_rand_uniform(&seed);
            int32_t k = (int32_t)(tu_rand_uniform(&seed) * (bins + 1));
            double e = (double)k * step;
            e += lo;
            if (k == bins)
                e = hi;
            float f = (float)e;
            if (u < 0.3)
                x[i] = f;
            else if (u < 0.45)
                x[i] = nextafterf(f, -INFINITY);
            else if (u < 0.6)
                x[i] = nextafterf(f, INFINITY);
            else
                x[i] = (float)(lo - 0.5 + (hi - lo + 1) * tu_rand_uniform(&seed));
        }
        sresid_histogram *h = hist_new(bins, lo, hi);
        ck_assert_ok(sresid_histogram_add(h, x, 1, (int64_t)n, (int64_t)n));
        uint64_t *want = calloc((size_t)bins, sizeof *want), *got = malloc((size_t)bins * 8);
        uint64_t out = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t b = ref_bin(x[i], lo, hi, bins);
            if (b < 0)
                out++;
            else
                want[b]++;
        }
        ck_assert_ok(sresid_histogram_counts(h, got, (size_t)bins));
        for (int32_t k = 0; k < bins; k++)
            ck_assert_msg(got[k] == want[k],
                          "trial %d, %d bins over [%.17g, %.17g]: bin %d has %llu, want %llu", t,
                          (int)bins, lo, hi, (int)k, (unsigned long long)got[k],
                          (unsigned long long)want[k]);
        ck_assert_uint_eq(sresid_histogram_outside(h), out);
        double bits;
        ck_assert_ok(sresid_histogram_entropy(h, &bits));
        ck_rel(bits, ref_entropy(want, bins), 1e-12);
        sresid_histogram_free(h);
        free(want);
        free(got);
        free(x);
    }
}
END_TEST

START_TEST(histogram_merge_equals_concatenation)
{
    const size_t n = 50000;
    float *x = rand_normal_f32(n, 8, 0.0, 1.0);
    const size_t cut = 12345;
    sresid_histogram *a = hist_new(37, -2.5, 3.0), *b = hist_new(37, -2.5, 3.0),
                     *all = hist_new(37, -2.5, 3.0);
    ck_assert_ok(sresid_histogram_add(a, x, 1, (int64_t)cut, (int64_t)cut));
    ck_assert_ok(sresid_histogram_add(b, x + cut, 1, (int64_t)(n - cut), (int64_t)(n - cut)));
    ck_assert_ok(sresid_histogram_add(all, x, 1, (int64_t)n, (int64_t)n));
    ck_assert_ok(sresid_histogram_merge(a, b));
    uint64_t ca[37], call[37];
    ck_assert_ok(sresid_histogram_counts(a, ca, 37));
    ck_assert_ok(sresid_histogram_counts(all, call, 37));
    ck_assert_mem_eq(ca, call, sizeof ca);
    ck_assert_uint_eq(sresid_histogram_outside(a), sresid_histogram_outside(all));
    ck_assert_uint_gt(sresid_histogram_outside(a), 0);
    double ea, eall;
    ck_assert_ok(sresid_histogram_entropy(a, &ea));
    ck_assert_ok(sresid_histogram_entropy(all, &eall));
    ck_assert(ea == eall);
    /* with itself: every count doubles */
    ck_assert_ok(sresid_histogram_merge(all, all));
    ck_assert_ok(sresid_histogram_counts(all, ca, 37));
    for (int k = 0; k < 37; k++)
        ck_assert_uint_eq(ca[k], 2 * call[k]);
    /* different binning */
    sresid_histogram *c = hist_new(36, -2.5, 3.0), *d = hist_new(37, -2.5, 3.5);
    ck_assert_status(sresid_histogram_merge(a, c), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_histogram_merge(a, d), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_histogram_merge(NULL, d), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_merge(a, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_ok(sresid_histogram_counts(a, ca, 37));
    ck_assert_mem_eq(ca, call, sizeof ca); /* failed merges changed nothing */
    sresid_histogram_free(a);
    sresid_histogram_free(b);
    sresid_histogram_free(c);
    sresid_histogram_free(d);
    sresid_histogram_free(all);
    free(x);
}
END_TEST

START_TEST(histogram_stride_and_large_bins)
{
    const int64_t rows = 200, cols = 33, ld = 40;
    float *a = malloc((size_t)(rows * ld) * sizeof *a), *dense = malloc((size_t)(rows * cols) * 4);
    uint64_t seed = 4;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < ld; j++) {
            float v = (float)tu_rand_uniform(&seed);
            a[i * ld + j] = j < cols ? v : 0.5f; /* padding inside the range */
            if (j < cols)
                dense[i * cols + j] = v;
        }
    const int32_t bins[] = {10, 70000}; /* one count copy above 16384 bins */
    for (int t = 0; t < 2; t++) {
        sresid_histogram *h1 = hist_new(bins[t], 0, 1), *h2 = hist_new(bins[t], 0, 1);
        ck_assert_ok(sresid_histogram_add(h1, a, rows, cols, ld));
        ck_assert_ok(sresid_histogram_add(h2, dense, 1, rows * cols, rows * cols));
        uint64_t *c1 = malloc((size_t)bins[t] * 8), *c2 = malloc((size_t)bins[t] * 8);
        ck_assert_ok(sresid_histogram_counts(h1, c1, (size_t)bins[t]));
        ck_assert_ok(sresid_histogram_counts(h2, c2, (size_t)bins[t]));
        ck_assert_mem_eq(c1, c2, (size_t)bins[t] * 8);
        uint64_t total = 0;
        for (int32_t k = 0; k < bins[t]; k++)
            total += c1[k];
        ck_assert_uint_eq(total, (uint64_t)(rows * cols));
        free(c1);
        free(c2);
        sresid_histogram_free(h1);
        sresid_histogram_free(h2);
    }
    free(a);
    free(dense);
}
END_TEST

START_TEST(histogram_argument_errors)
{
    sresid_histogram *h = (sresid_histogram *)&h; /* sentinel: must stay */
    sresid_histogram *const sentinel = h;
    ck_assert_status(sresid_histogram_create(0, 0, 1, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(-3, 0, 1, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create((1 << 24) + 1, 0, 1, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(10, 1, 1, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(10, 2, 1, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(10, NAN, 1, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(10, 0, INFINITY, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(10, -DBL_MAX, DBL_MAX, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_create(10, 0, 4.9e-324, &h), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_eq(h, sentinel);
    ck_assert_status(sresid_histogram_create(10, 0, 1, NULL), SRESID_ERR_INVALID_ARG);
    h = hist_new(4, 0, 1);
    float x[4] = {0.1f, 0.2f, 0.3f, 0.9f};
    ck_assert_status(sresid_histogram_add(NULL, x, 1, 4, 4), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_add(h, NULL, 1, 4, 4), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_add(h, x, -1, 4, 4), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_add(h, x, 2, 2, 1), SRESID_ERR_INVALID_ARG);
    uint64_t c[4] = {9, 9, 9, 9};
    ck_assert_status(sresid_histogram_counts(h, c, 3), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_histogram_counts(h, NULL, 4), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_counts(NULL, c, 4), SRESID_ERR_INVALID_ARG);
    ck_assert(c[0] == 9 && c[1] == 9 && c[2] == 9 && c[3] == 9);
    ck_assert_uint_eq(sresid_histogram_outside(NULL), 0);
    double bits = 42;
    ck_assert_status(sresid_histogram_entropy(NULL, &bits), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_histogram_entropy(h, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert(bits == 42);
    ck_assert_ok(sresid_histogram_entropy(h, &bits)); /* empty: NaN */
    ck_assert(isnan(bits));
    ck_assert_ok(sresid_histogram_add(h, x, 1, 4, 4));
    ck_assert_ok(sresid_histogram_counts(h, c, 4));
    ck_assert(c[0] == 2 && c[1] == 1 && c[2] == 0 && c[3] == 1); /* 0.1 0.2 | 0.3 | | 0.9 */
    sresid_histogram_free(h);
    sresid_histogram_free(NULL);
}
END_TEST

/* ---- entropy of a matrix and the random baseline ------------------------ */

START_TEST(entropy_matrix_matches_reference)
{
    const int64_t rows = 300, cols = 101, ld = 103;
    float *a = malloc((size_t)(rows * ld) * sizeof *a);
    uint64_t seed = 21;
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < rows * ld; i++) {
        double u = tu_rand_uniform(&seed);
        /* heavy-tailed values, a few NaNs; padding out of range */
        float v = (float)(0.01 * tu_rand_normal(&seed) / (0.05 + u));
        if (i % 997 == 0)
            v = NAN;
        if (i % ld >= cols)
            v = 1e6f;
        a[i] = v;
        if (i % ld < cols && isfinite(v)) {
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    }
    const int32_t bins = 64;
    uint64_t c[64] = {0}, count = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float v = a[i * ld + j];
            if (isfinite(v)) {
                c[ref_bin(v, mn, mx, bins)]++;
                count++;
            }
        }
    sresid_entropy_result r = {.size = sizeof r};
    ck_assert_ok(sresid_entropy(a, rows, cols, ld, bins, 77, &r));
    ck_assert_uint_eq(r.count, count);
    ck_rel(r.bits, ref_entropy(c, bins), 1e-12);
    double rb;
    ck_assert_ok(sresid_entropy_random(count, bins, 77, &rb));
    ck_assert(r.random_bits == rb);
    ck_assert(r.ratio == r.bits / rb);
    ck_assert(r.bits < rb); /* heavy tails: fewer bits than a Gaussian */
    /* bins 0 means 100 */
    sresid_entropy_result r0 = {.size = sizeof r0}, r100 = {.size = sizeof r100};
    ck_assert_ok(sresid_entropy(a, rows, cols, ld, 0, 5, &r0));
    ck_assert_ok(sresid_entropy(a, rows, cols, ld, 100, 5, &r100));
    ck_assert_mem_eq(&r0, &r100, sizeof r0);
    free(a);
}
END_TEST

START_TEST(entropy_constant_and_empty)
{
    float c[50];
    for (int i = 0; i < 50; i++)
        c[i] = i % 7 ? 2.5f : NAN;
    sresid_entropy_result r = {.size = sizeof r};
    ck_assert_ok(sresid_entropy(c, 5, 10, 10, 100, 1, &r));
    ck_assert_uint_eq(r.count, 42);
    ck_assert(r.bits == 0 && isnan(r.random_bits) && isnan(r.ratio));
    for (int i = 0; i < 50; i++)
        c[i] = NAN;
    ck_assert_ok(sresid_entropy(c, 5, 10, 10, 100, 1, &r));
    ck_assert_uint_eq(r.count, 0);
    ck_assert(isnan(r.bits) && isnan(r.random_bits) && isnan(r.ratio));
    ck_assert_ok(sresid_entropy(NULL, 0, 0, 1, 100, 1, &r));
    ck_assert_uint_eq(r.count, 0);
    ck_assert(isnan(r.bits));
}
END_TEST

static double norm_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

/* Expected maximum of n standard normals: integral of P(max > m) over m > 0
 * minus that of P(max < m) over m < 0, midpoint rule. */
static double expected_max(double n)
{
    double s = 0, h = 1e-3;
    for (double m = 0; m < 12; m += h)
        s += (1 - pow(norm_cdf(m + h / 2), n)) * h - pow(norm_cdf(-(m + h / 2)), n) * h;
    return s;
}

/* Entropy of N(0, 1) restricted to [-a, a] in equal bins, from the CDF. */
static double binned_normal_entropy(double a, int bins)
{
    double total = norm_cdf(a) - norm_cdf(-a), h = 0;
    for (int k = 0; k < bins; k++) {
        double e0 = -a + 2 * a * k / bins, e1 = -a + 2 * a * (k + 1) / bins;
        double p = (norm_cdf(e1) - norm_cdf(e0)) / total;
        if (p > 0)
            h -= p * log2(p);
    }
    return h;
}

/* The draws' range [min, max] is itself random (sd of the entropy about
 * 0.07 bits at 2e4 draws, 100 bins, measured over 200 seeds), so compare the
 * mean over 16 seeds (sd about 0.019) with the closed form at the expected
 * range, less the Miller-Madow bias (B - 1) / (2 N ln 2): tolerance 0.08
 * bits, over 4 sd. A uniform generator would give about 6.6 bits, one with
 * tails twice as heavy far less than 5.5. */
START_TEST(entropy_random_close_to_binned_gaussian)
{
    const uint64_t n = 20000;
    const int bins = 100, seeds = 16;
    double sum = 0;
    for (int s = 0; s < seeds; s++) {
        double h;
        ck_assert_ok(sresid_entropy_random(n, bins, 1000 + s, &h));
        sum += h;
    }
    double want = binned_normal_entropy(expected_max((double)n), bins) -
                  (bins - 1) / (2.0 * n * log(2.0));
    ck_assert_msg(fabs(sum / seeds - want) < 0.08, "mean entropy %.5f, closed form %.5f",
                  sum / seeds, want);
    /* deterministic for a seed, different for another */
    double a, b, c;
    ck_assert_ok(sresid_entropy_random(100000, 100, 42, &a));
    ck_assert_ok(sresid_entropy_random(100000, 100, 42, &b));
    ck_assert_ok(sresid_entropy_random(100000, 100, 43, &c));
    ck_assert(a == b);
    ck_assert(a != c);
    ck_assert(fabs(a - c) < 0.5);
    /* two draws: one in the first bin, one in the last */
    ck_assert_ok(sresid_entropy_random(2, 100, 9, &a));
    ck_assert(a == 1.0);
    ck_assert_ok(sresid_entropy_random(1, 100, 9, &a));
    ck_assert(isnan(a));
    ck_assert_ok(sresid_entropy_random(0, 100, 9, &a));
    ck_assert(isnan(a));
    ck_assert_ok(sresid_entropy_random(1000, 1, 9, &a)); /* one bin */
    ck_assert(a == 0);
}
END_TEST

START_TEST(entropy_argument_errors)
{
    float x[6] = {1, 2, 3, 4, 5, 6};
    sresid_entropy_result r, before;
    memset(&r, 0x33, sizeof r);
    r.size = sizeof r;
    before = r;
    ck_assert_status(sresid_entropy(x, 1, 6, 6, 100, 1, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy(NULL, 1, 6, 6, 100, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy(x, -1, 6, 6, 100, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy(x, 2, 3, 2, 100, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy(x, 1, 6, 6, -1, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy(x, 1, 6, 6, (1 << 24) + 1, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&r, &before, sizeof r);
    r.size = sizeof r - 8;
    before = r;
    ck_assert_status(sresid_entropy(x, 1, 6, 6, 100, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&r, &before, sizeof r);
    double bits = 7;
    ck_assert_status(sresid_entropy_random(100, 100, 1, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy_random(100, 0, 1, &bits), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy_random(100, -5, 1, &bits), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_entropy_random(100, (1 << 24) + 1, 1, &bits),
                     SRESID_ERR_INVALID_ARG);
    ck_assert(bits == 7);
}
END_TEST

/* ---- sparsity ------------------------------------------------------------ */

START_TEST(sparsity_hand_computed)
{
    /* x^2 = 9, 16, 0, 0; E = 25 */
    float x[4] = {3, -4, 0, 0};
    sresid_sparsity_result r = {.size = sizeof r};
    ck_assert_ok(sresid_sparsity(x, 1, 4, 4, &r));
    ck_assert(r.elements_for_energy[0] == 0.25); /* 16 >= 12.5 */
    ck_assert(r.elements_for_energy[1] == 0.5);  /* 16 < 22.5 <= 25 */
    ck_assert(r.elements_for_energy[2] == 0.5);  /* 24.75 */
    ck_assert(r.energy_in_top[0] == 16.0 / 25);  /* ceil(0.04) = 1 */
    ck_assert(r.energy_in_top[1] == 16.0 / 25);  /* ceil(0.4) = 1 */
    ck_assert(r.energy_in_top[2] == 1.0);        /* 2 of them */
    /* Hoyer: (sqrt 4 - 7 / 5) / (sqrt 4 - 1) = 0.6 */
    ck_assert_double_eq_tol(r.hoyer, 0.6, 1e-15);
    /* non-finite values are left out; padding is not read */
    float y[2][6] = {{NAN, 3, INFINITY, 0, 100, 100}, {-4, 0, -INFINITY, NAN, 100, -100}};
    sresid_sparsity_result r2 = {.size = sizeof r2};
    ck_assert_ok(sresid_sparsity(&y[0][0], 2, 4, 6, &r2));
    ck_assert_mem_eq(&r, &r2, sizeof r);
    /* one value */
    ck_assert_ok(sresid_sparsity(x, 1, 1, 1, &r));
    ck_assert(r.elements_for_energy[0] == 1 && r.energy_in_top[0] == 1 && isnan(r.hoyer));
    /* all equal: shares follow the counts, Hoyer 0 */
    float e[1000];
    for (int i = 0; i < 1000; i++)
        e[i] = i & 1 ? 2.0f : -2.0f;
    ck_assert_ok(sresid_sparsity(e, 10, 100, 100, &r));
    ck_assert(r.elements_for_energy[0] == 0.5 && r.elements_for_energy[1] == 0.9 &&
              r.elements_for_energy[2] == 0.99);
    ck_assert(r.energy_in_top[0] == 0.01 && r.energy_in_top[1] == 0.1 && r.energy_in_top[2] == 0.5);
    ck_assert_double_eq_tol(r.hoyer, 0.0, 1e-12);
    /* one spike: Hoyer 1 */
    memset(e, 0, sizeof e);
    e[500] = -7;
    ck_assert_ok(sresid_sparsity(e, 1, 1000, 1000, &r));
    ck_assert_double_eq_tol(r.hoyer, 1.0, 1e-12);
    ck_assert(r.elements_for_energy[2] == 0.001 && r.energy_in_top[0] == 1.0);
}
END_TEST

START_TEST(sparsity_zero_input_is_nan)
{
    float z[6] = {0, -0.0f, 0, 0, NAN, 0};
    sresid_sparsity_result r = {.size = sizeof r};
    ck_assert_ok(sresid_sparsity(z, 2, 3, 3, &r));
    for (int j = 0; j < 3; j++)
        ck_assert(isnan(r.elements_for_energy[j]) && isnan(r.energy_in_top[j]));
    ck_assert(isnan(r.hoyer));
    ck_assert_ok(sresid_sparsity(NULL, 0, 0, 1, &r));
    ck_assert(isnan(r.hoyer) && isnan(r.elements_for_energy[0]));
}
END_TEST

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Sort-based reference: squares in decreasing order, running sums. */
static void ref_sparsity(const float *x, size_t n, double k_share[3], double top[3],
                         double *hoyer)
{
    double *s = malloc(n * sizeof *s);
    size_t m = 0;
    double e = 0, l1 = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            s[m++] = (double)x[i] * x[i];
            e += (double)x[i] * x[i];
            l1 += fabs(x[i]);
        }
    qsort(s, m, sizeof *s, cmp_desc);
    if (!(e > 0)) {
        for (int j = 0; j < 3; j++)
            k_share[j] = top[j] = NAN;
        *hoyer = NAN;
        free(s);
        return;
    }
    const double tg[3] = {0.5, 0.9, 0.99};
    const int pct[3] = {1, 10, 50};
    for (int j = 0; j < 3; j++) {
        double t = tg[j] * e, run = 0;
        size_t k = 0;
        while (k < m && run < t)
            run += s[k++];
        k_share[j] = (double)k / m;
        size_t kk = (size_t)ceil((double)pct[j] * m / 100.0 - 1e-9);
        kk = kk < 1 ? 1 : kk;
        run = 0;
        for (size_t i = 0; i < kk; i++)
            run += s[i];
        top[j] = run / e;
    }
    *hoyer = (sqrt((double)m) - l1 / sqrt(e)) / (sqrt((double)m) - 1);
    free(s);
}

/* Integer values (sums exact in double whatever the order, so k must match
 * exactly), many ties and zeros, some NaN; then plain Gaussian floats. */
START_TEST(sparsity_matches_sort_reference)
{
    const size_t n = tu_quick() ? 20011 : 100003;
    float *x = malloc(n * sizeof *x);
    uint64_t seed = 31;
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < n; i++) {
            double u = tu_rand_uniform(&seed);
            if (kind == 0)
                x[i] = u < 0.3 ? 0.0f : (float)((int)(tu_rand_uniform(&seed) * 41) - 20);
            else if (kind == 1)
                x[i] = (float)tu_rand_normal(&seed);
            else /* heavy tail: few values hold the energy */
                x[i] = (float)(tu_rand_normal(&seed) / (0.01 + u * u));
            if (tu_rand_uniform(&seed) < 0.001)
                x[i] = NAN;
        }
        double ks[3], top[3], hoyer;
        ref_sparsity(x, n, ks, top, &hoyer);
        sresid_sparsity_result r = {.size = sizeof r};
        ck_assert_ok(sresid_sparsity(x, 1, (int64_t)n, (int64_t)n, &r));
        for (int j = 0; j < 3; j++) {
            ck_assert_msg(r.elements_for_energy[j] == ks[j], "kind %d target %d: %.17g vs %.17g",
                          kind, j, r.elements_for_energy[j], ks[j]);
            ck_rel(r.energy_in_top[j], top[j], kind == 0 ? 0 : 1e-12);
        }
        ck_rel(r.hoyer, hoyer, 1e-12);
    }
    free(x);
}
END_TEST

/* Many small integer vectors: ties everywhere and running sums that hit
 * the targets exactly (sums of small integers are exact in double), so
 * every branch of the selection is taken and k must match exactly. */
START_TEST(sparsity_small_integer_vectors)
{
    uint64_t seed = 8;
    /* each call zeroes its ~0.5 MB bucket tables: slow under the sanitizers */
    const int vectors = tu_quick() ? 600 : 3000;
    for (int t = 0; t < vectors; t++) {
        size_t n = 1 + (size_t)(tu_rand_uniform(&seed) * 40);
        int span = 1 + t % 4;
        float x[40];
        for (size_t i = 0; i < n; i++)
            x[i] = (float)((int)(tu_rand_uniform(&seed) * (2 * span + 1)) - span);
        double ks[3], top[3], hoyer;
        ref_sparsity(x, n, ks, top, &hoyer);
        sresid_sparsity_result r = {.size = sizeof r};
        ck_assert_ok(sresid_sparsity(x, 1, (int64_t)n, (int64_t)n, &r));
        for (int j = 0; j < 3; j++) {
            if (isnan(ks[j])) { /* all zero */
                ck_assert(isnan(r.elements_for_energy[j]) && isnan(r.energy_in_top[j]));
                continue;
            }
            ck_assert_msg(r.elements_for_energy[j] == ks[j] && r.energy_in_top[j] == top[j],
                          "vector %d (n %zu), figure %d: %g %g, want %g %g", t, n, j,
                          r.elements_for_energy[j], r.energy_in_top[j], ks[j], top[j]);
        }
    }
}
END_TEST

START_TEST(sparsity_argument_errors)
{
    float x[4] = {1, 2, 3, 4};
    sresid_sparsity_result r, before;
    memset(&r, 0x44, sizeof r);
    r.size = sizeof r;
    before = r;
    ck_assert_status(sresid_sparsity(x, 1, 4, 4, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparsity(NULL, 1, 4, 4, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparsity(x, 1, -4, 4, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparsity(x, 2, 2, 1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&r, &before, sizeof r);
    r.size = 8;
    before = r;
    ck_assert_status(sresid_sparsity(x, 1, 4, 4, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_mem_eq(&r, &before, sizeof r);
}
END_TEST

/* ---- correlation ---------------------------------------------------------- */

static double ref_corr(const float *x, const float *y, size_t n)
{
    long double sx = 0, sy = 0, m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) {
            sx += x[i];
            sy += y[i];
            m++;
        }
    long double mx = sx / m, my = sy / m, cxy = 0, cxx = 0, cyy = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) {
            long double dx = x[i] - mx, dy = y[i] - my;
            cxy += dx * dy;
            cxx += dx * dx;
            cyy += dy * dy;
        }
    return (double)(cxy / sqrtl(cxx * cyy));
}

START_TEST(correlation_matches_reference)
{
    const size_t sizes[] = {3, 17, 4096, 10007};
    uint64_t seed = 77;
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)(5.0 + tu_rand_normal(&seed));
            y[i] = (float)(-100.0 + 0.3 * x[i] + 0.2 * tu_rand_normal(&seed));
            if (n > 100 && tu_rand_uniform(&seed) < 0.02) {
                float bad = tu_rand_uniform(&seed) < 0.5 ? NAN : -INFINITY;
                (tu_rand_uniform(&seed) < 0.5 ? x : y)[i] = bad;
            }
        }
        double r;
        ck_assert_ok(sresid_correlation(x, y, n, &r));
        ck_rel(r, ref_corr(x, y, n), 1e-12);
        free(x);
        free(y);
    }
}
END_TEST

START_TEST(correlation_affine_and_degenerate)
{
    const size_t n = 9001;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((int)(i * 7919 % 1000) - 500);
        y[i] = 2 * x[i] + 1; /* exact in float */
    }
    double r;
    ck_assert_ok(sresid_correlation(x, y, n, &r));
    ck_assert_double_eq_tol(r, 1.0, 1e-14);
    for (size_t i = 0; i < n; i++)
        y[i] = -3 * x[i] + 5;
    ck_assert_ok(sresid_correlation(x, y, n, &r));
    ck_assert_double_eq_tol(r, -1.0, 1e-14);
    /* constant side, too few pairs, no finite pair: NaN */
    for (size_t i = 0; i < n; i++)
        y[i] = 0.25f;
    ck_assert_ok(sresid_correlation(x, y, n, &r));
    ck_assert(isnan(r));
    ck_assert_ok(sresid_correlation(x, x, 1, &r));
    ck_assert(isnan(r));
    ck_assert_ok(sresid_correlation(NULL, NULL, 0, &r));
    ck_assert(isnan(r));
    for (size_t i = 0; i < n; i++)
        y[i] = i % 2 ? NAN : x[i];
    for (size_t i = 0; i < n; i++)
        x[i] = i % 2 ? x[i] : INFINITY;
    ck_assert_ok(sresid_correlation(x, y, n, &r));
    ck_assert(isnan(r));
    /* the finite pairs alone decide */
    float a[6] = {1, NAN, 2, 3, 100, 4}, b[6] = {2, 5, 4, 6, INFINITY, 8};
    ck_assert_ok(sresid_correlation(a, b, 6, &r));
    ck_assert_double_eq_tol(r, 1.0, 1e-15);
    free(x);
    free(y);
}
END_TEST

START_TEST(correlation_argument_errors)
{
    float x[3] = {1, 2, 3};
    double r = 5;
    ck_assert_status(sresid_correlation(x, x, 3, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_correlation(NULL, x, 3, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_correlation(x, NULL, 3, &r), SRESID_ERR_INVALID_ARG);
    ck_assert(r == 5);
    ck_assert_ok(sresid_correlation(x, x, 3, &r));
    ck_assert_double_eq_tol(r, 1.0, 1e-15);
}
END_TEST

Suite *suite_stats(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("moments");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, moments_merge_tree_equals_concatenation);
    tcase_add_test(tc, moments_merge_empty_and_self);
    tcase_add_test(tc, moments_two_point);
    tcase_add_test(tc, moments_uniform_grid);
    tcase_add_test(tc, moments_sparse_spikes);
    tcase_add_test(tc, moments_nonfinite_counted_and_skipped);
    tcase_add_test(tc, moments_stride_skips_padding);
    tcase_add_test(tc, moments_empty_and_constant);
    tcase_add_test(tc, moments_stats_size_rules);
    tcase_add_test(tc, moments_argument_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("histogram");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, histogram_uniform_entropy_is_log2_bins);
    tcase_add_test(tc, histogram_edges_closed_last_bin);
    tcase_add_test(tc, histogram_guess_corrected_against_edges);
    tcase_add_test(tc, histogram_matches_numpy_rule);
    tcase_add_test(tc, histogram_merge_equals_concatenation);
    tcase_add_test(tc, histogram_stride_and_large_bins);
    tcase_add_test(tc, histogram_argument_errors);
    tcase_add_test(tc, entropy_matrix_matches_reference);
    tcase_add_test(tc, entropy_constant_and_empty);
    tcase_add_test(tc, entropy_random_close_to_binned_gaussian);
    tcase_add_test(tc, entropy_argument_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("sparsity");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sparsity_hand_computed);
    tcase_add_test(tc, sparsity_zero_input_is_nan);
    tcase_add_test(tc, sparsity_matches_sort_reference);
    tcase_add_test(tc, sparsity_small_integer_vectors);
    tcase_add_test(tc, sparsity_argument_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("correlation");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, correlation_matches_reference);
    tcase_add_test(tc, correlation_affine_and_degenerate);
    tcase_add_test(tc, correlation_argument_errors);
    suite_add_tcase(s, tc);
    return s;
}
