/* Participation ratio without an SVD: sum s^2 = ||A||_F^2 and
 * sum s^4 = ||G||_F^2 for the Gram matrix G of A, so
 * PR = ||A||_F^4 / ||G||_F^2. G is the smaller of A A^T and A^T A and is
 * never held whole: it is produced one block of rows at a time, and only
 * the blocks on or right of the diagonal (G is symmetric). */
#include <math.h>
#include <stdlib.h>

#include "util/blas.h"
#include "util/util.h"

/* Rows of G per product: large enough for BLIS to run near its peak, small
 * enough that the diagonal blocks (counted in full) add little work. */
#ifndef PR_BLOCK
#define PR_BLOCK 256
#endif

/* Sum of squares in double and the largest |a|. */
static double sum_squares(const float *a, int64_t rows, int64_t cols, int64_t ld, float *amax)
{
    double total = 0;
    float mx = 0;
    for (int64_t i = 0; i < rows; i++) {
        const float *r = a + i * ld;
        /* four partial sums: a shorter dependency chain, as accurate */
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t j = 0;
        for (; j + 4 <= cols; j += 4) {
            s0 += (double)r[j] * r[j];
            s1 += (double)r[j + 1] * r[j + 1];
            s2 += (double)r[j + 2] * r[j + 2];
            s3 += (double)r[j + 3] * r[j + 3];
        }
        for (; j < cols; j++)
            s0 += (double)r[j] * r[j];
        total += (s0 + s1) + (s2 + s3);
        for (j = 0; j < cols; j++)
            mx = fabsf(r[j]) > mx ? fabsf(r[j]) : mx;
    }
    *amax = mx;
    return total;
}

sresid_status sresid_participation_ratio(const float *a, int64_t rows, int64_t cols, int64_t ld,
                                         double *pr, double *normalized)
{
    sresid_status st = sresid__check_matrix(a, rows, cols, ld, "sresid_participation_ratio");
    if (st != SRESID_OK)
        return st;
    if (!pr && !normalized)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_participation_ratio: pr and normalized are both NULL");

    /* a sum of squares of floats in double is finite exactly when every
     * entry is, so this pass is also the finiteness check */
    float amax = 0;
    double fro2 = sum_squares(a, rows, cols, ld, &amax);
    if (!isfinite(fro2))
        return sresid__fail(SRESID_ERR_NONFINITE,
                            "sresid_participation_ratio: the matrix has NaN or Inf values");
    if (rows == 0 || cols == 0 || fro2 == 0) {
        if (pr)
            *pr = NAN;
        if (normalized)
            *normalized = NAN;
        return SRESID_OK;
    }

    /* G's entries are bounded by ||A||_F^2 and its large ones are sums of
     * products of the large |a|: in float32 they overflow when ||A||_F^2
     * nears 2^128 and underflow when max|a|^2 nears 2^-126. PR does not
     * depend on the scale, so such a matrix is copied, scaled by a power of
     * two (exact) to max|a| in [1, 2). */
    float *scaled = NULL;
    if (fro2 >= 0x1p100 || amax < 0x1p-50f) {
        scaled = malloc(((size_t)rows * (size_t)cols + SRESID__BLAS_SLACK) * sizeof *scaled);
        if (!scaled)
            return sresid__fail(SRESID_ERR_NOMEM, "sresid_participation_ratio: out of memory");
        int e = ilogbf(amax);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                scaled[i * cols + j] = ldexpf(a[i * ld + j], -e);
        a = scaled;
        ld = cols;
        fro2 = sum_squares(a, rows, cols, ld, &amax);
    }

    /* by_rows: G = A A^T (order rows); else G = A^T A (order cols), whose
     * row block p0.. is A[:, p0..]^T A[:, p0..], read through the transpose
     * flag from the same strided storage. */
    int by_rows = rows <= cols;
    int64_t order = by_rows ? rows : cols, depth = by_rows ? cols : rows;
    int64_t block = order < PR_BLOCK ? order : PR_BLOCK;
    float *g = malloc(((size_t)block * (size_t)order + SRESID__BLAS_SLACK) * sizeof *g);
    if (!g) {
        free(scaled);
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_participation_ratio: out of memory");
    }

    double g2 = 0;
    for (int64_t p0 = 0; p0 < order; p0 += block) {
        int64_t bp = order - p0 < block ? order - p0 : block, width = order - p0;
        const float *base = by_rows ? a + p0 * ld : a + p0;
        /* g (width x bp) = G[p0 .. order, p0 .. p0+bp): the tall side first
         * (BLIS runs this shape faster than its transpose) */
        sresid__sgemm(!by_rows, by_rows, width, bp, depth, 1.0f, base, ld, base, ld, 0.0f, g,
                      bp);
        /* its first bp rows are the diagonal block, holding both G[p][q] and
         * G[q][p]; the rows below stand for their mirror image too */
        double diag = 0, off0 = 0, off1 = 0;
        for (int64_t i = 0; i < bp; i++)
            for (int64_t j = 0; j < bp; j++)
                diag += (double)g[i * bp + j] * g[i * bp + j];
        const float *rest = g + bp * bp;
        size_t nrest = (size_t)(width - bp) * (size_t)bp, j = 0;
        for (; j + 2 <= nrest; j += 2) {
            off0 += (double)rest[j] * rest[j];
            off1 += (double)rest[j + 1] * rest[j + 1];
        }
        for (; j < nrest; j++)
            off0 += (double)rest[j] * rest[j];
        g2 += diag + 2 * (off0 + off1);
    }
    free(g);
    free(scaled);

    double v = fro2 * fro2 / g2;
    if (pr)
        *pr = v;
    if (normalized)
        *normalized = v / (double)order;
    return SRESID_OK;
}
