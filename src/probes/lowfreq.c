/* Low-frequency power ratio from partial DFT matrices: only the frequencies
 * of the band are computed, as two BLIS products per block of rows,
 *   Y = A'_blk [C_n S_n]              (the k2 side: blk x 2 h)
 *   Z += [C_m S_m]_blk^T Y            (the k1 side: 2 n1 x 2 h)
 * with A' the centred matrix and C/S the cos/sin of 2 pi (j k mod n) / n.
 * With a = 2 pi i k1 / m and b = 2 pi j k2 / n,
 *   X[k1,k2] = sum_ij a'_ij (cos a - i sin a)(cos b - i sin b)
 * so Re X = C_m^T A' C_n - S_m^T A' S_n and -Im X = C_m^T A' S_n + S_m^T A' C_n.
 * A real input has X[-k1,-k2] = conj X[k1,k2] and the band is symmetric, so
 * only k2 in 0 .. h-1 is computed and the k2 that stand for a distinct
 * mirror frequency count twice. The k2 table is the only one held whole, so
 * the k2 side is the shorter dimension (a wide matrix is read transposed).
 * Memory: O(band n^2 + band^2 m n + block (m + n)) floats for m >= n;
 * work: 4 band m n (n + m band) flops. */
#include <math.h>
#include <stdlib.h>

#include "util/blas.h"
#include "util/util.h"

#define LF_ROWS 256               /* rows per block: the depth of the Z product */
#define LF_BLOCK_ELEMS (1 << 20)  /* bound on the centred block */

/* malloc of a x b floats and BLIS's slack, NULL when the size overflows */
static float *alloc_floats(int64_t a, int64_t b)
{
    uint64_t n;
    if (!sresid__mul_u64((uint64_t)a, (uint64_t)b, &n) ||
        !sresid__add_u64(n, SRESID__BLAS_SLACK, &n) ||
        !sresid__mul_u64(n, sizeof(float), &n) || n > SIZE_MAX)
        return NULL;
    return malloc((size_t)n);
}

/* cos and sin of 2 pi r / n for every residue r, in double, stored float. */
static void unit_circle(int64_t n, float *c, float *s)
{
    for (int64_t r = 0; r < n; r++) {
        double t = 6.283185307179586476925 * (double)r / (double)n;
        c[r] = (float)cos(t);
        s[r] = (float)sin(t);
    }
}

/* rows rows (row stride ld) of a table of the cos and sin of the frequencies
 * ks[0 .. nk): t[j][q] = c[j ks[q] mod n], t[j][nk + q] = s[j ks[q] mod n],
 * j counted on from the residues res[q] (= j ks[q] mod n, 0 at j = 0), which
 * advance by ks[q] per row: no product j k is formed (it could overflow)
 * and the angle is exact. */
static void fill_table(float *t, int64_t ld, int64_t rows, int64_t n, const int64_t *ks,
                       int64_t nk, int64_t *res, const float *c, const float *s)
{
    for (int64_t j = 0; j < rows; j++) {
        float *row = t + j * ld;
        for (int64_t q = 0; q < nk; q++) {
            int64_t r = res[q];
            row[q] = c[r];
            row[nk + q] = s[r];
            r += ks[q];
            res[q] = r >= n ? r - n : r;
        }
    }
}

sresid_status sresid_lowfreq_ratio(const float *a, int64_t rows, int64_t cols, int64_t ld,
                                   double band, double *ratio)
{
    static const char *const fn = "sresid_lowfreq_ratio";
    sresid_status st = sresid__check_matrix(a, rows, cols, ld, fn);
    if (st != SRESID_OK)
        return st;
    if (!ratio)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: ratio is NULL", fn);
    if (band == 0)
        band = 0.125;
    if (!(band > 0 && band <= 1))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: band %g is not in (0, 1]", fn, band);

    /* Mean, and a power-of-two scale that brings the root mean square near 1
     * (the ratio does not depend on it; it keeps the float32 products in
     * range). The sums in double are finite exactly when every entry is. */
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < rows; i++) {
        const float *r = a + i * ld;
        double s0 = 0, s1 = 0, q0 = 0, q1 = 0;
        int64_t j = 0;
        for (; j + 2 <= cols; j += 2) {
            s0 += r[j];
            s1 += r[j + 1];
            q0 += (double)r[j] * r[j];
            q1 += (double)r[j + 1] * r[j + 1];
        }
        for (; j < cols; j++) {
            s0 += r[j];
            q0 += (double)r[j] * r[j];
        }
        sum += s0 + s1;
        sq += q0 + q1;
    }
    if (!isfinite(sum) || !isfinite(sq))
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the matrix has NaN or Inf values", fn);
    if (rows == 0 || cols == 0) {
        *ratio = NAN;
        return SRESID_OK;
    }

    /* The view: m x n with m >= n, A itself or A read transposed (the DFT
     * and the band are the same up to swapping k1 and k2). */
    const int swap = cols > rows;
    const int64_t m = swap ? cols : rows, n = swap ? rows : cols;
    /* Band: |k| <= K as residues mod m; all m of them once 2K + 1 >= m. */
    int64_t K1 = (int64_t)floor(band * (double)m / 2), K2 = (int64_t)floor(band * (double)n / 2);
    int64_t n1 = 2 * K1 + 1 >= m ? m : 2 * K1 + 1;
    int64_t n2 = 2 * K2 + 1 >= n ? n : 2 * K2 + 1;
    /* k2 = 0 .. h-1 stand for the whole k2 set: h - 1 = min(K2, n / 2) */
    int64_t h = (K2 < n / 2 ? K2 : n / 2) + 1;
    const double mn = (double)m * (double)n, band_count = (double)n1 * (double)n2;
    if (band_count <= 1) {
        *ratio = NAN;
        return SRESID_OK;
    }
    const double mean = sum / mn;
    const double scale = sq > 0 ? ldexp(1.0, -ilogb(sqrt(sq / mn))) : 1.0;

    int64_t rb = LF_BLOCK_ELEMS / n;
    rb = rb < 16 ? 16 : rb > LF_ROWS ? LF_ROWS : rb;
    rb = rb > m ? m : rb;
    float *cm = alloc_floats(m, 2), *cn = alloc_floats(n, 2);
    float *tn = alloc_floats(n, 2 * h), *tm = alloc_floats(rb, 2 * n1);
    float *blk = alloc_floats(rb, n), *yb = alloc_floats(rb, 2 * h);
    float *z = alloc_floats(2 * n1, 2 * h);
    int64_t *ks = malloc((size_t)(h > n1 ? h : n1) * sizeof *ks);
    int64_t *res = malloc((size_t)(h > n1 ? h : n1) * sizeof *res);
    if (!cm || !cn || !tn || !tm || !blk || !yb || !z || !ks || !res) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory (%lld x %lld, band %g)", fn,
                          (long long)rows, (long long)cols, band);
        goto done;
    }
    unit_circle(m, cm, cm + m);
    unit_circle(n, cn, cn + n);
    for (int64_t c = 0; c < h; c++) {
        ks[c] = c;
        res[c] = 0;
    }
    fill_table(tn, 2 * h, n, n, ks, h, res, cn, cn + n);
    /* k1 = 0 .. K1, then the negative residues m - K1 .. m - 1 (or simply
     * 0 .. m - 1 when the band wraps) */
    for (int64_t q = 0; q < n1; q++) {
        ks[q] = n1 == m || q <= K1 ? q : m - n1 + q;
        res[q] = 0;
    }

    /* Block by block of rows of the centred, scaled view; the total power
     * comes from the same values (Parseval: sum |X|^2 = m n sum a'^2). */
    double ss = 0;
    for (int64_t i0 = 0; i0 < m; i0 += rb) {
        int64_t bi = m - i0 < rb ? m - i0 : rb;
        double s0 = 0, s1 = 0;
        /* not swapped: blk is bi x n (view rows = rows of A); swapped: blk is
         * n x bi, the columns i0 .. i0+bi of A as they lie in memory */
        int64_t outer = swap ? n : bi, inner = swap ? bi : n;
        for (int64_t i = 0; i < outer; i++) {
            const float *r = swap ? a + i * ld + i0 : a + (i0 + i) * ld;
            float *o = blk + i * inner;
            int64_t j = 0;
            for (; j + 2 <= inner; j += 2) {
                double d0 = ((double)r[j] - mean) * scale, d1 = ((double)r[j + 1] - mean) * scale;
                o[j] = (float)d0;
                o[j + 1] = (float)d1;
                s0 += d0 * d0;
                s1 += d1 * d1;
            }
            for (; j < inner; j++) {
                double d0 = ((double)r[j] - mean) * scale;
                o[j] = (float)d0;
                s0 += d0 * d0;
            }
        }
        ss += s0 + s1;
        sresid__sgemm(swap, 0, bi, 2 * h, n, 1.0f, blk, inner, tn, 2 * h, 0.0f, yb, 2 * h);
        fill_table(tm, 2 * n1, bi, m, ks, n1, res, cm, cm + m);
        sresid__sgemm(1, 0, 2 * n1, 2 * h, bi, 1.0f, tm, 2 * n1, yb, 2 * h, i0 ? 1.0f : 0.0f, z,
                      2 * h);
    }
    double total = mn * ss;
    if (!(total > 0)) {
        *ratio = NAN;
        goto done;
    }

    double power = 0;
    for (int64_t q = 0; q < n1; q++) {
        const float *zc = z + q * 2 * h, *zs = z + (n1 + q) * 2 * h;
        double p = 0;
        for (int64_t c = (q == 0); c < h; c++) { /* k1 = 0: skip DC */
            double re = (double)zc[c] - zs[h + c], im = (double)zc[h + c] + zs[c];
            double w = c == 0 || 2 * c == n ? 1 : 2;
            p += w * (re * re + im * im);
        }
        power += p;
    }
    double share = power / total;
    double white = (band_count - 1) / (mn - 1);
    *ratio = share / white;

done:
    free(cm);
    free(cn);
    free(tn);
    free(tm);
    free(blk);
    free(yb);
    free(z);
    free(ks);
    free(res);
    return st;
}
