/* Matrix probes: participation ratio, low-frequency power, k-means, the
 * permutation null. Every expected value is computed here, in double, by a
 * route independent of the library's (closed forms, a direct DFT, cluster
 * means from the labels). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define PI 3.14159265358979323846

static int rel_close(double got, double want, double tol)
{
    return fabs(got - want) <= tol * fabs(want);
}

#define ck_assert_rel(got, want, tol)                                                    \
    do {                                                                                 \
        double g_ = (got), w_ = (want);                                                  \
        ck_assert_msg(rel_close(g_, w_, tol), "%s = %.12g, want %.12g (rel tol %g)", #got, \
                      g_, w_, (double)(tol));                                            \
    } while (0)

static float *gaussian(int64_t n, uint64_t seed)
{
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)tu_rand_normal(&seed);
    return x;
}

/* Orthonormal DCT-II matrix of order n, in double. */
static double *dct(int n)
{
    double *d = malloc((size_t)n * n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int k = 0; k < n; k++)
        for (int j = 0; j < n; j++)
            d[k * n + j] = sqrt((k ? 2.0 : 1.0) / n) * cos(PI * (j + 0.5) * k / n);
    return d;
}

/* A = D_m[:, :r] diag(s) D_n[:, :r]^T (singular values s, r = min(m, n)), as
 * float with row stride ld. */
static float *with_singular_values(int m, int n, int ld, const double *s)
{
    int r = m < n ? m : n;
    double *dm = dct(m), *dn = dct(n);
    float *a = calloc((size_t)m * ld, sizeof *a);
    ck_assert_ptr_nonnull(a);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int k = 0; k < r; k++)
                v += dm[i * m + k] * s[k] * dn[j * n + k];
            a[i * ld + j] = (float)v;
        }
    free(dm);
    free(dn);
    return a;
}

static float *transpose(const float *a, int m, int n)
{
    float *t = malloc((size_t)m * n * sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            t[j * m + i] = a[i * n + j];
    return t;
}

/* ---- participation ratio ---------------------------------------------- */

START_TEST(pr_rank_one)
{
    const int m = 37, n = 53;
    uint64_t seed = 11;
    float *a = malloc((size_t)m * n * sizeof *a);
    double u[37], v[53];
    for (int i = 0; i < m; i++)
        u[i] = tu_rand_normal(&seed);
    for (int j = 0; j < n; j++)
        v[j] = tu_rand_normal(&seed);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            a[i * n + j] = (float)(u[i] * v[j]);
    double pr = 0, norm = 0;
    ck_assert_ok(sresid_participation_ratio(a, m, n, n, &pr, &norm));
    ck_assert_rel(pr, 1.0, 1e-5);
    ck_assert_rel(norm, 1.0 / m, 1e-5);
    float *t = transpose(a, m, n);
    ck_assert_ok(sresid_participation_ratio(t, n, m, m, &pr, NULL));
    ck_assert_rel(pr, 1.0, 1e-5);
    free(t);
    free(a);
}
END_TEST

/* An orthogonal matrix has n equal singular values: PR = n. Order 300 spans
 * two row blocks of the Gram matrix, the second one partial. */
START_TEST(pr_orthogonal)
{
    const int n = 300;
    double *d = dct(n);
    float *a = malloc((size_t)n * n * sizeof *a);
    for (int i = 0; i < n * n; i++)
        a[i] = (float)d[i];
    double pr, norm;
    ck_assert_ok(sresid_participation_ratio(a, n, n, n, &pr, &norm));
    ck_assert_rel(pr, n, 1e-5);
    ck_assert_rel(norm, 1.0, 1e-5);

    /* Sylvester-Hadamard of order 64: entries +-1, orthogonal rows */
    float h[64 * 64];
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
            h[i * 64 + j] = __builtin_popcount((unsigned)(i & j)) & 1 ? -1.0f : 1.0f;
    ck_assert_ok(sresid_participation_ratio(h, 64, 64, 64, &pr, NULL));
    ck_assert_rel(pr, 64, 1e-6);
    free(a);
    free(d);
}
END_TEST

/* Chosen singular values: PR = (sum s^2)^2 / sum s^4, whatever the shape
 * (tall, wide, transposed, strided) and the scale. */
START_TEST(pr_closed_form)
{
    const int m = 300, n = 270, ld = 281;
    double s[270], s2 = 0, s4 = 0;
    for (int k = 0; k < n; k++) {
        s[k] = 1.0 / (1.0 + 0.05 * k) + (k % 7 == 0 ? 0.5 : 0.0);
        s2 += s[k] * s[k];
        s4 += s[k] * s[k] * s[k] * s[k];
    }
    double want = s2 * s2 / s4, pr, norm;
    float *a = with_singular_values(m, n, ld, s);
    ck_assert_ok(sresid_participation_ratio(a, m, n, ld, &pr, &norm));
    ck_assert_rel(pr, want, 1e-5);
    ck_assert_rel(norm, want / n, 1e-5);

    float *c = malloc((size_t)m * n * sizeof *c);
    for (int i = 0; i < m; i++)
        memcpy(c + i * n, a + i * ld, (size_t)n * sizeof *c);
    float *t = transpose(c, m, n);
    ck_assert_ok(sresid_participation_ratio(t, n, m, m, &pr, NULL));
    ck_assert_rel(pr, want, 1e-5);
    ck_assert_ok(sresid_participation_ratio(c, m, n, n, &pr, NULL));
    ck_assert_rel(pr, want, 1e-5);

    /* far outside float32's comfortable range: same PR */
    for (int i = 0; i < m * n; i++)
        c[i] = ldexpf(c[i], 100);
    ck_assert_ok(sresid_participation_ratio(c, m, n, n, &pr, NULL));
    ck_assert_rel(pr, want, 1e-5);
    for (int i = 0; i < m * n; i++)
        c[i] = ldexpf(c[i], -180);
    ck_assert_ok(sresid_participation_ratio(c, m, n, n, &pr, NULL));
    ck_assert_rel(pr, want, 1e-5);
    free(t);
    free(c);
    free(a);
}
END_TEST

START_TEST(pr_degenerate_and_errors)
{
    float z[12] = {0}, bad[4] = {1, 2, NAN, 4};
    double pr = 7, norm = 7;
    ck_assert_ok(sresid_participation_ratio(z, 3, 4, 4, &pr, &norm));
    ck_assert(isnan(pr) && isnan(norm));
    pr = 7;
    ck_assert_ok(sresid_participation_ratio(NULL, 0, 4, 4, &pr, NULL));
    ck_assert(isnan(pr));

    pr = norm = 7;
    ck_assert_status(sresid_participation_ratio(bad, 2, 2, 2, &pr, &norm), SRESID_ERR_NONFINITE);
    bad[2] = INFINITY;
    ck_assert_status(sresid_participation_ratio(bad, 2, 2, 2, &pr, &norm), SRESID_ERR_NONFINITE);
    ck_assert_status(sresid_participation_ratio(NULL, 2, 2, 2, &pr, &norm),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_participation_ratio(z, 2, 4, 3, &pr, &norm), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_participation_ratio(z, -1, 4, 4, &pr, &norm),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_participation_ratio(z, 3, 4, 4, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert(pr == 7 && norm == 7); /* untouched */
}
END_TEST

/* ---- low-frequency power ---------------------------------------------- */

/* Reference: band power over the distinct (k1, k2) residues by direct sums
 * in double, total by Parseval, white share by counting. */
static double lowfreq_direct(const float *a, int m, int n, int ld, double band)
{
    double mean = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            mean += a[i * ld + j];
    mean /= (double)m * n;
    double ss = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            ss += (a[i * ld + j] - mean) * (a[i * ld + j] - mean);
    int K1 = (int)floor(band * m / 2), K2 = (int)floor(band * n / 2);
    char *in1 = calloc((size_t)m, 1), *in2 = calloc((size_t)n, 1);
    for (int k = -K1; k <= K1; k++)
        in1[((k % m) + m) % m] = 1;
    for (int k = -K2; k <= K2; k++)
        in2[((k % n) + n) % n] = 1;
    double power = 0, count = 0;
    for (int k1 = 0; k1 < m; k1++)
        for (int k2 = 0; k2 < n; k2++) {
            if (!in1[k1] || !in2[k2])
                continue;
            count++;
            if (k1 == 0 && k2 == 0)
                continue;
            double re = 0, im = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double t = 2 * PI * ((double)i * k1 / m + (double)j * k2 / n);
                    re += (a[i * ld + j] - mean) * cos(t);
                    im -= (a[i * ld + j] - mean) * sin(t);
                }
            power += re * re + im * im;
        }
    free(in1);
    free(in2);
    double total = (double)m * n * ss;
    if (count <= 1 || total == 0)
        return NAN;
    return (power / total) / ((count - 1) / ((double)m * n - 1));
}

START_TEST(lowfreq_direct_dft)
{
    const int shapes[][2] = {{12, 10}, {10, 12}, {7, 9}, {1, 40}, {40, 1}, {5, 5}};
    const double bands[] = {0.125, 0.3, 0.4, 0.5, 0.75, 0.99, 1.0};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], n = shapes[s][1], ld = n + 3;
        uint64_t seed = 100 + s;
        float *a = calloc((size_t)m * ld, sizeof *a);
        /* a mean far from zero and some smooth structure */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                a[i * ld + j] = (float)(100 + 0.3 * i - 0.2 * j + tu_rand_normal(&seed));
        for (size_t b = 0; b < sizeof bands / sizeof bands[0]; b++) {
            double want = lowfreq_direct(a, m, n, ld, bands[b]), got = -1;
            ck_assert_ok(sresid_lowfreq_ratio(a, m, n, ld, bands[b], &got));
            if (isnan(want))
                ck_assert_msg(isnan(got), "%dx%d band %g: got %g, want NaN", m, n, bands[b], got);
            else
                ck_assert_msg(rel_close(got, want, 1e-5), "%dx%d band %g: got %.10g, want %.10g",
                              m, n, bands[b], got, want);
        }
        free(a);
    }
}
END_TEST

/* A pure cosine at (p, q) has all its power at +-(p, q): inside the band the
 * ratio is 1 / white share, outside it is 0. */
static float *cosine(int m, int n, int p, int q)
{
    float *a = malloc((size_t)m * n * sizeof *a);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            a[i * n + j] = (float)cos(2 * PI * ((double)(i * p % m) / m + (double)(j * q % n) / n));
    return a;
}

START_TEST(lowfreq_cosines)
{
    const int m = 64, n = 48;
    /* band 1/8: |k1| <= 4, |k2| <= 3, 9 x 7 frequencies */
    double white = (9.0 * 7 - 1) / (m * n - 1.0), r;
    float *a = cosine(m, n, 3, 2);
    ck_assert_ok(sresid_lowfreq_ratio(a, m, n, n, 0, &r));
    ck_assert_rel(r, 1 / white, 1e-4);
    free(a);
    a = cosine(m, n, 60, 3); /* k1 = -4: still inside */
    ck_assert_ok(sresid_lowfreq_ratio(a, m, n, n, 0.125, &r));
    ck_assert_rel(r, 1 / white, 1e-4);
    free(a);
    a = cosine(m, n, 20, 17);
    ck_assert_ok(sresid_lowfreq_ratio(a, m, n, n, 0, &r));
    ck_assert_msg(fabs(r) < 1e-4, "out-of-band cosine: ratio %g", r);
    free(a);
    a = cosine(m, n, 2, 20); /* k1 inside, k2 outside */
    ck_assert_ok(sresid_lowfreq_ratio(a, m, n, n, 0, &r));
    ck_assert_msg(fabs(r) < 1e-4, "half-out cosine: ratio %g", r);
    free(a);

    /* vectors: one row (k1 set {0}) and one column */
    a = cosine(1, 64, 0, 3); /* |k2| <= 4: 9 frequencies */
    ck_assert_ok(sresid_lowfreq_ratio(a, 1, 64, 64, 0, &r));
    ck_assert_rel(r, 63.0 / 8, 1e-4);
    ck_assert_ok(sresid_lowfreq_ratio(a, 64, 1, 1, 0, &r));
    ck_assert_rel(r, 63.0 / 8, 1e-4);
    free(a);

    /* a smooth ramp is far above white noise */
    float ramp[32 * 32];
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 32; j++)
            ramp[i * 32 + j] = (float)(i + 0.5 * j);
    ck_assert_ok(sresid_lowfreq_ratio(ramp, 32, 32, 32, 0, &r));
    ck_assert_msg(r > 5, "ramp: ratio %g", r);
}
END_TEST

START_TEST(lowfreq_white_noise)
{
    const int n = 256;
    float *a = gaussian((int64_t)n * n, 77);
    double r;
    ck_assert_ok(sresid_lowfreq_ratio(a, n, n, n, 0, &r));
    ck_assert_msg(fabs(r - 1) < 0.1, "white noise: ratio %g", r);
    /* the ratio ignores the mean and the scale */
    double r2;
    for (int i = 0; i < n * n; i++)
        a[i] = 3 * a[i] + 50;
    ck_assert_ok(sresid_lowfreq_ratio(a, n, n, n, 0, &r2));
    ck_assert_rel(r2, r, 1e-4);
    /* and values near float32's limits */
    for (int i = 0; i < n * n; i++)
        a[i] = ldexpf(a[i] - 50, 118);
    ck_assert_ok(sresid_lowfreq_ratio(a, n, n, n, 0, &r2));
    ck_assert_rel(r2, r, 1e-4);
    for (int i = 0; i < n * n; i++)
        a[i] = ldexpf(a[i], -236);
    ck_assert_ok(sresid_lowfreq_ratio(a, n, n, n, 0, &r2));
    ck_assert_rel(r2, r, 1e-4);
    free(a);
}
END_TEST

START_TEST(lowfreq_degenerate_and_errors)
{
    float c[20], bad[6] = {1, 2, 3, 4, 5, INFINITY};
    for (int i = 0; i < 20; i++)
        c[i] = 2.5f;
    double r = 7;
    ck_assert_ok(sresid_lowfreq_ratio(c, 4, 5, 5, 0.5, &r)); /* constant */
    ck_assert(isnan(r));
    r = 7;
    ck_assert_ok(sresid_lowfreq_ratio(c, 4, 5, 5, 0.1, &r)); /* DC only */
    ck_assert(isnan(r));
    r = 7;
    ck_assert_ok(sresid_lowfreq_ratio(NULL, 0, 0, 1, 0, &r));
    ck_assert(isnan(r));
    r = 7;
    ck_assert_status(sresid_lowfreq_ratio(bad, 2, 3, 3, 0, &r), SRESID_ERR_NONFINITE);
    ck_assert_status(sresid_lowfreq_ratio(c, 4, 5, 5, -0.1, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_lowfreq_ratio(c, 4, 5, 5, 1.5, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_lowfreq_ratio(c, 4, 5, 5, NAN, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_lowfreq_ratio(c, 4, 5, 4, 0, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_lowfreq_ratio(NULL, 4, 5, 5, 0, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_lowfreq_ratio(c, 4, 5, 5, 0, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert(r == 7);
}
END_TEST

/* ---- k-means ---------------------------------------------------------- */

/* Inertia and total scatter from labels, in double: the cluster means. */
static double inertia_of(const float *x, int rows, int cols, int ld, const int32_t *lab, int k)
{
    double *mean = calloc((size_t)k * cols, sizeof *mean), w = 0;
    int *cnt = calloc((size_t)k, sizeof *cnt);
    for (int i = 0; i < rows; i++) {
        cnt[lab[i]]++;
        for (int j = 0; j < cols; j++)
            mean[lab[i] * cols + j] += x[i * ld + j];
    }
    for (int c = 0; c < k; c++)
        for (int j = 0; j < cols; j++)
            mean[c * cols + j] /= cnt[c] ? cnt[c] : 1;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double d = x[i * ld + j] - mean[lab[i] * cols + j];
            w += d * d;
        }
    free(mean);
    free(cnt);
    return w;
}

/* 4 blobs far apart (centres 20 apart, noise sd 0.3) in 16 dimensions. */
static float *blobs(int per, int cols, int ld, int32_t *truth)
{
    uint64_t seed = 5;
    float *x = calloc((size_t)4 * per * ld, sizeof *x);
    for (int i = 0; i < 4 * per; i++) {
        int b = (i * 7) % 4; /* interleaved, so that order gives nothing away */
        truth[i] = b;
        for (int j = 0; j < cols; j++)
            x[i * ld + j] = (float)((j == b ? 10.0 : 0.0) - (j == b + 4 ? 10.0 : 0.0) +
                                    0.3 * tu_rand_normal(&seed));
    }
    return x;
}

/* labels equal truth up to a permutation of the cluster ids */
static int same_partition(const int32_t *a, const int32_t *b, int n, int k)
{
    int map[64], back[64];
    for (int c = 0; c < k; c++)
        map[c] = back[c] = -1;
    for (int i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= k || b[i] < 0 || b[i] >= k)
            return 0;
        if (map[a[i]] < 0 && back[b[i]] < 0) {
            map[a[i]] = b[i];
            back[b[i]] = a[i];
        }
        if (map[a[i]] != b[i] || back[b[i]] != a[i])
            return 0;
    }
    return 1;
}

START_TEST(kmeans_blobs)
{
    const int per = 50, rows = 4 * per, cols = 16, ld = 19;
    int32_t truth[200], lab[200];
    float *x = blobs(per, cols, ld, truth);
    float cen[4 * 16];
    double w = -1;
    int32_t it = -1;
    sresid_kmeans_opts o = {.size = sizeof o, .seed = 42};
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, ld, 4, &o, lab, cen, &w, &it));
    ck_assert(same_partition(lab, truth, rows, 4));
    ck_assert_rel(w, inertia_of(x, rows, cols, ld, lab, 4), 1e-6);
    ck_assert(it >= 1 && it <= 100);
    /* centres are the cluster means */
    for (int c = 0; c < 4; c++)
        for (int j = 0; j < cols; j++) {
            double m = 0;
            int n = 0;
            for (int i = 0; i < rows; i++)
                if (lab[i] == c) {
                    m += x[i * ld + j];
                    n++;
                }
            ck_assert_msg(fabs(cen[c * cols + j] - m / n) < 1e-5, "centre %d[%d]", c, j);
        }

    /* explained variance against the scatter computed here */
    double mean[16] = {0}, t = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            mean[j] += x[i * ld + j] / rows;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            t += (x[i * ld + j] - mean[j]) * (x[i * ld + j] - mean[j]);
    int32_t ks[3] = {4, 2, 201};
    sresid_kmeans_result res[3];
    for (int i = 0; i < 3; i++)
        res[i].size = sizeof res[i];
    ck_assert_ok(sresid_kmeans_explained(x, rows, cols, ld, ks, 3, &o, res));
    ck_assert_int_eq(res[0].k, 4);
    ck_assert_rel(res[0].explained, 1 - w / t, 1e-9);
    ck_assert(res[0].explained > 0.99);
    ck_assert(res[0].explained_random < 0.5);
    ck_assert_rel(res[0].difference, res[0].explained - res[0].explained_random, 1e-12);
    ck_assert(res[1].explained > 0.3 && res[1].explained < res[0].explained);
    ck_assert(isnan(res[2].explained) && isnan(res[2].explained_random) &&
              isnan(res[2].difference)); /* k > rows */

    /* near float32's limits: the same clusters, the inertia scaled */
    int32_t lab2[200];
    for (int scale = -100; scale <= 100; scale += 200) {
        float *y = malloc((size_t)rows * ld * sizeof *y);
        for (int i = 0; i < rows * ld; i++)
            y[i] = ldexpf(x[i], scale);
        double w2;
        ck_assert_ok(sresid_kmeans_fit(y, rows, cols, ld, 4, &o, lab2, NULL, &w2, NULL));
        ck_assert(same_partition(lab2, truth, rows, 4));
        ck_assert_rel(w2, ldexp(w, 2 * scale), 1e-6);
        free(y);
    }
    /* points in zero dimensions: all at distance 0 */
    ck_assert_ok(sresid_kmeans_fit(x, rows, 0, ld, 3, &o, lab2, NULL, &w, NULL));
    ck_assert(w == 0);
    free(x);
}
END_TEST

START_TEST(kmeans_gaussian_matches_baseline)
{
    const int rows = tu_quick() ? 300 : 600, cols = 24;
    float *x = gaussian((int64_t)rows * cols, 9);
    int32_t ks[3] = {2, 4, 8};
    sresid_kmeans_result res[3];
    for (int i = 0; i < 3; i++)
        res[i].size = sizeof res[i];
    sresid_kmeans_opts o = {.size = sizeof o, .seed = 3};
    ck_assert_ok(sresid_kmeans_explained(x, rows, cols, cols, ks, 3, NULL, res));
    ck_assert_ok(sresid_kmeans_explained(x, rows, cols, cols, ks, 3, &o, res));
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(res[i].explained > 0 && res[i].explained < 0.5, "k=%d explained %g",
                      ks[i], res[i].explained);
        ck_assert_msg(fabs(res[i].difference) < 0.03, "k=%d explained %g vs random %g", ks[i],
                      res[i].explained, res[i].explained_random);
        if (i > 0)
            ck_assert(res[i].explained > res[i - 1].explained);
    }
    free(x);
}
END_TEST

START_TEST(kmeans_k_equals_rows_and_one)
{
    const int rows = 12, cols = 5;
    float *x = gaussian(rows * cols, 21);
    int32_t lab[12];
    double w = -1;
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, rows, NULL, lab, NULL, &w, NULL));
    ck_assert(w == 0);
    int seen[12] = {0};
    for (int i = 0; i < rows; i++)
        seen[lab[i]]++;
    for (int c = 0; c < rows; c++)
        ck_assert_int_eq(seen[c], 1);

    /* k = 1: the inertia is the total scatter */
    float cen[5];
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, 1, NULL, lab, cen, &w, NULL));
    for (int i = 0; i < rows; i++)
        ck_assert_int_eq(lab[i], 0);
    ck_assert_rel(w, inertia_of(x, rows, cols, cols, lab, 1), 1e-9);

    /* only 3 distinct points, k = 5: duplicate centres, no crash, inertia 0 */
    for (int i = 3; i < rows; i++)
        memcpy(x + i * cols, x + (i % 3) * cols, cols * sizeof *x);
    float cen5[5 * 5];
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, 5, NULL, lab, cen5, &w, NULL));
    ck_assert(w == 0);
    /* the duplicate centres' clusters empty out; each must get a row back */
    for (int i = 0; i < 5 * cols; i++)
        ck_assert_msg(isfinite(cen5[i]), "centre value %d is %g", i, cen5[i]);
    for (int c = 0; c < 5; c++) {
        int found = 0;
        for (int i = 0; i < 3; i++)
            found |= memcmp(cen5 + c * cols, x + i * cols, cols * sizeof *x) == 0;
        ck_assert_msg(found, "centre %d is none of the points", c);
    }
    free(x);
}
END_TEST

/* every row's label is a nearest centre (up to float rounding) */
static void assert_nearest(const float *x, int rows, int cols, const int32_t *lab,
                           const float *cen, int k)
{
    for (int i = 0; i < rows; i++) {
        double best = INFINITY, mine = 0;
        for (int c = 0; c < k; c++) {
            double d = 0;
            for (int j = 0; j < cols; j++) {
                double e = (double)x[i * cols + j] - cen[c * cols + j];
                d += e * e;
            }
            best = d < best ? d : best;
            if (c == lab[i])
                mine = d;
        }
        ck_assert_msg(mine <= best * (1 + 1e-5) + 1e-9, "row %d not at its nearest centre", i);
    }
}

START_TEST(kmeans_deterministic)
{
    const int rows = 300, cols = 10;
    float *x = gaussian(rows * cols, 31);
    int32_t l1[300], l2[300], it1, it2;
    float c1[6 * 10], c2[6 * 10];
    double w1, w2;
    sresid_kmeans_opts o = {.size = sizeof o, .seed = 12345};
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, 6, &o, l1, c1, &w1, &it1));
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, 6, &o, l2, c2, &w2, &it2));
    ck_assert(memcmp(l1, l2, sizeof l1) == 0 && memcmp(c1, c2, sizeof c1) == 0);
    ck_assert(w1 == w2 && it1 == it2);
    ck_assert_rel(w1, inertia_of(x, rows, cols, cols, l1, 6), 1e-6);
    /* a run that converged is a fixed point: every row is at its nearest centre */
    if (it1 < 100)
        assert_nearest(x, rows, cols, l1, c1, 6);
    /* max_iter = 1 stops after one iteration */
    o.max_iter = 1;
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, 6, &o, l2, c2, &w2, &it2));
    ck_assert_int_eq(it2, 1);
    assert_nearest(x, rows, cols, l2, c2, 6); /* labels of the final centres */
    double w3 = 0; /* the inertia is to the returned centres */
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double e = (double)x[i * cols + j] - c2[l2[i] * cols + j];
            w3 += e * e;
        }
    ck_assert_rel(w2, w3, 1e-9);
    ck_assert(w2 >= w1 * (1 - 1e-9) || it1 == 1);
    free(x);
}
END_TEST

/* splitmix64's output function (docs/probes.md, Generator), for the seeds
 * of the restarts */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

START_TEST(kmeans_restarts)
{
    /* overlapping Gaussian data: the runs of different seeds differ */
    const int rows = 240, cols = 12, k = 7, runs = 5;
    float *x = gaussian((int64_t)rows * cols, 41);
    int32_t lab[240], blab[240], it, bit = 0;
    float cen[7 * 12], bcen[7 * 12];
    double w, best = INFINITY, worst = 0;
    const uint64_t seed = 77;
    for (int r = 0; r < runs; r++) {
        sresid_kmeans_opts o = {.size = sizeof o, .seed = r ? mix64(seed + (uint64_t)r) : seed};
        ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, k, &o, lab, cen, &w, &it));
        worst = w > worst ? w : worst;
        if (w < best) { /* the first on a tie */
            best = w;
            bit = it;
            memcpy(blab, lab, sizeof lab);
            memcpy(bcen, cen, sizeof cen);
        }
    }
    ck_assert(worst > best * 1.001);
    sresid_kmeans_opts o = {.size = sizeof o, .seed = seed, .n_init = runs};
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, k, &o, lab, cen, &w, &it));
    ck_assert_double_eq(w, best);
    ck_assert_int_eq(it, bit);
    ck_assert(memcmp(lab, blab, sizeof lab) == 0 && memcmp(cen, bcen, sizeof cen) == 0);
    /* only the inertia asked for */
    double w2;
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, k, &o, NULL, NULL, &w2, NULL));
    ck_assert_double_eq(w2, best);
    /* 2880 values: the size rule gives 50 runs */
    double wa, w50;
    o.n_init = SRESID_KMEANS_INIT_AUTO;
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, k, &o, NULL, NULL, &wa, NULL));
    o.n_init = 50;
    ck_assert_ok(sresid_kmeans_fit(x, rows, cols, cols, k, &o, NULL, NULL, &w50, NULL));
    ck_assert_double_eq(wa, w50);
    ck_assert(wa <= best);
    free(x);
}
END_TEST

START_TEST(kmeans_errors)
{
    float x[20];
    for (int i = 0; i < 20; i++)
        x[i] = (float)i;
    int32_t lab[5] = {-7, -7, -7, -7, -7}, ks[2] = {2, 0};
    double w = -1;
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 0, NULL, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 6, NULL, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_kmeans_fit(NULL, 5, 4, 4, 2, NULL, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    sresid_kmeans_opts o = {.size = sizeof o, .max_iter = -1};
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 2, &o, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    o.max_iter = 0;
    o.reserved = 1;
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 2, &o, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    o.reserved = 0;
    const int32_t bad_init[3] = {-2, SRESID_KMEANS_MAX_INIT + 1, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        o.n_init = bad_init[i];
        ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 2, &o, lab, NULL, &w, NULL),
                         SRESID_ERR_INVALID_ARG);
    }
    o.n_init = 0;
    o.reserved2 = 1;
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 2, &o, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    o.reserved2 = 0;
    o.size = 4;
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 2, &o, lab, NULL, &w, NULL),
                     SRESID_ERR_INVALID_ARG);
    x[7] = NAN;
    ck_assert_status(sresid_kmeans_fit(x, 5, 4, 4, 2, NULL, lab, NULL, &w, NULL),
                     SRESID_ERR_NONFINITE);
    sresid_kmeans_result res[2] = {{.size = sizeof res[0]}, {.size = sizeof res[0]}};
    ck_assert_status(sresid_kmeans_explained(x, 5, 4, 4, ks, 1, NULL, res),
                     SRESID_ERR_NONFINITE);
    x[7] = 7;
    ck_assert(lab[0] == -7 && w == -1); /* untouched */
    ck_assert_status(sresid_kmeans_explained(x, 5, 4, 4, ks, 2, NULL, res),
                     SRESID_ERR_INVALID_ARG); /* ks[1] = 0 */
    ck_assert_status(sresid_kmeans_explained(x, 5, 4, 4, NULL, 1, NULL, res),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_kmeans_explained(x, 5, 4, 4, ks, 1, NULL, NULL),
                     SRESID_ERR_INVALID_ARG);
    res[0].size = 8;
    ck_assert_status(sresid_kmeans_explained(x, 5, 4, 4, ks, 1, NULL, res),
                     SRESID_ERR_INVALID_ARG);
    res[0].size = sizeof res[0];
    res[1].size = 8;
    ks[1] = 3;
    ck_assert_status(sresid_kmeans_explained(x, 5, 4, 4, ks, 2, NULL, res),
                     SRESID_ERR_INVALID_ARG);
    ck_assert(res[0].k == 0); /* untouched */
    res[1].size = sizeof res[1];
    ck_assert_ok(sresid_kmeans_explained(x, 5, 4, 4, ks, 2, NULL, res));
    ck_assert(res[0].k == 2 && res[1].k == 3 && res[1].explained > res[0].explained);
}
END_TEST

/* ---- permutation null ------------------------------------------------- */

START_TEST(null_rank_one)
{
    const int m = 32, n = 24;
    uint64_t seed = 8;
    float *a = malloc((size_t)m * n * sizeof *a);
    double u[32], v[24];
    for (int i = 0; i < m; i++)
        u[i] = 1 + 0.5 * tu_rand_normal(&seed);
    for (int j = 0; j < n; j++)
        v[j] = tu_rand_normal(&seed);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            a[i * n + j] = (float)(u[i] * v[j]);
    sresid_null_result r = {.size = sizeof r}, r2 = {.size = sizeof r2};
    int draws = tu_quick() ? 10 : 30;
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_PR, a, m, n, n, 0, draws, 1, &r));
    ck_assert_int_eq(r.draws, draws);
    ck_assert_rel(r.observed, 1.0, 1e-5);
    ck_assert_msg(r.mean > 5, "null mean %g", r.mean);
    ck_assert_msg(r.std > 0 && r.z < -10, "std %g z %g", r.std, r.z);
    ck_assert_rel(r.z, (r.observed - r.mean) / r.std, 1e-12);
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_PR, a, m, n, n, 0, draws, 1, &r2));
    ck_assert(memcmp(&r, &r2, sizeof r) == 0); /* same seed, same figures */
    float *wide = calloc((size_t)m * (n + 5), sizeof *wide); /* strided: same figures */
    for (int i = 0; i < m; i++)
        memcpy(wide + i * (n + 5), a + i * n, n * sizeof *a);
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_PR, wide, m, n, n + 5, 0, draws, 1, &r2));
    ck_assert(memcmp(&r, &r2, sizeof r) == 0);
    free(wide);

    /* a smooth matrix: low-frequency power far above its shuffles */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            a[i * n + j] = (float)(sin(i / 5.0) + cos(j / 4.0));
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_LOWFREQ, a, m, n, n, 0.25, draws, 2, &r));
    ck_assert_msg(r.observed > 5 && fabs(r.mean - 1) < 0.5 && r.z > 10,
                  "lowfreq observed %g mean %g z %g", r.observed, r.mean, r.z);
    free(a);

    /* well-separated blobs: explained variance far above its shuffles */
    int32_t truth[80];
    float *x = blobs(20, 16, 16, truth);
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_KMEANS, x, 80, 16, 16, 4, draws, 3, &r));
    ck_assert_msg(r.observed > 0.99 && r.mean < 0.6 && r.z > 10,
                  "kmeans observed %g mean %g z %g", r.observed, r.mean, r.z);
    free(x);
}
END_TEST

START_TEST(null_constant_and_single_draw)
{
    float c[30];
    for (int i = 0; i < 30; i++)
        c[i] = 1.5f;
    sresid_null_result r = {.size = sizeof r};
    /* every shuffle of a constant matrix is itself: std 0, z undefined */
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_PR, c, 5, 6, 6, 0, 5, 0, &r));
    ck_assert_rel(r.observed, 1.0, 1e-6);
    ck_assert_rel(r.mean, 1.0, 1e-6);
    ck_assert(r.std == 0 && isnan(r.z));
    float g[30];
    uint64_t s = 4;
    for (int i = 0; i < 30; i++)
        g[i] = (float)tu_rand_normal(&s);
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_PR, g, 5, 6, 6, 0, 1, 0, &r));
    ck_assert(isfinite(r.mean) && isnan(r.std) && isnan(r.z));
    /* the generator is seeded once, so the first draw of a 2-draw run is the
     * 1-draw run: v2 follows from the mean, and the sample std of two values
     * is |v1 - v2| / sqrt 2 */
    double v1 = r.mean;
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_PR, g, 5, 6, 6, 0, 2, 0, &r));
    double v2 = 2 * r.mean - v1;
    ck_assert(v1 != v2);
    ck_assert_rel(r.std, fabs(v1 - v2) / sqrt(2.0), 1e-9);
    ck_assert_rel(r.z, (r.observed - r.mean) / r.std, 1e-12);
}
END_TEST

START_TEST(null_errors)
{
    float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    sresid_null_result r = {.size = sizeof r};
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR, x, 3, 4, 4, 0, 0, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR, x, 3, 4, 4, 0, 10001, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_MOMENTS, x, 3, 4, 4, 0, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR | SRESID_PROBE_LOWFREQ, x, 3, 4, 4,
                                             0, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_LOWFREQ, x, 3, 4, 4, 1.5, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_KMEANS, x, 3, 4, 4, 0, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_KMEANS, x, 3, 4, 4, 2.5, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_KMEANS, x, 3, 4, 4, 4, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR, x, 3, 4, 4, 0, 5, 1, NULL),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR, NULL, 3, 4, 4, 0, 5, 1, &r),
                     SRESID_ERR_INVALID_ARG);
    sresid_null_result small = {.size = 8};
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR, x, 3, 4, 4, 0, 5, 1, &small),
                     SRESID_ERR_INVALID_ARG);
    x[5] = NAN;
    ck_assert_status(sresid_permutation_null(SRESID_PROBE_PR, x, 3, 4, 4, 0, 5, 1, &r),
                     SRESID_ERR_NONFINITE);
    ck_assert(r.draws == 0); /* untouched */
    x[5] = 6;
    ck_assert_ok(sresid_permutation_null(SRESID_PROBE_KMEANS, x, 3, 4, 4, 2, 5, 1, &r));
    ck_assert_int_eq(r.draws, 5);
}
END_TEST

Suite *suite_matrix(void)
{
    Suite *s = suite_create("matrix");
    TCase *tc = tcase_create("pr");
    tcase_add_test(tc, pr_rank_one);
    tcase_add_test(tc, pr_orthogonal);
    tcase_add_test(tc, pr_closed_form);
    tcase_add_test(tc, pr_degenerate_and_errors);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("lowfreq");
    tcase_add_test(tc, lowfreq_direct_dft);
    tcase_add_test(tc, lowfreq_cosines);
    tcase_add_test(tc, lowfreq_white_noise);
    tcase_add_test(tc, lowfreq_degenerate_and_errors);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("kmeans");
    tcase_add_test(tc, kmeans_blobs);
    tcase_add_test(tc, kmeans_gaussian_matches_baseline);
    tcase_add_test(tc, kmeans_k_equals_rows_and_one);
    tcase_add_test(tc, kmeans_restarts);
    tcase_add_test(tc, kmeans_deterministic);
    tcase_add_test(tc, kmeans_errors);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("null");
    tcase_add_test(tc, null_rank_one);
    tcase_add_test(tc, null_constant_and_single_draw);
    tcase_add_test(tc, null_errors);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
