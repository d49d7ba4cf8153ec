/* Thin SVD through LAPACK (sgesdd, sgesvd when sgesdd does not converge).
 *
 * The only file that calls LAPACK: <lapacke.h> and <blis.h> cannot share a
 * translation unit (their lsame_ prototypes conflict), so the Fortran
 * symbols are declared here, with gfortran's hidden string lengths at the
 * end of the argument list.
 *
 * Layouts. The caller's matrix W is row-major m x n, which is the
 * column-major matrix W^T (n x m). LAPACK factors W^T = A diag(s) B^T, so
 * W = B diag(s) A^T: the left vectors of W are B and its right vectors A.
 * With ldvt = k, LAPACK's B^T (k x m, column-major) has the very bytes of
 * B as a row-major m x k matrix; A (n x k, column-major) is transposed
 * into the row-major n x r output. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "util/util.h"

void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);
void sgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, float *a,
             const int *lda, float *s, float *u, const int *ldu, float *vt, const int *ldvt,
             float *work, const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

/* LAPACK's workspace answer is a float: round it up and keep it in int. */
static bool lwork_from(float q, int *out)
{
    double w = (double)q * (1.0 + 1e-6) + 1.0;
    if (!(w < (double)INT_MAX))
        return false;
    *out = (int)w;
    return true;
}

/* One factorisation of a (overwritten) by sgesdd (dd) or sgesvd. Returns
 * LAPACK's info, or a negative status-like code: -1000 workspace beyond
 * 32-bit, -1001 out of memory. */
static int factor(bool dd, int lm, int ln, float *a, float *s, float *uu, float *vt)
{
    int k = lm < ln ? lm : ln, info = 0, lwork = -1;
    float q = 0;
    int *iwork = NULL;
    if (dd) {
        iwork = malloc((size_t)8 * (size_t)k * sizeof *iwork);
        if (!iwork)
            return -1001;
        sgesdd_("S", &lm, &ln, a, &lm, s, uu, &lm, vt, &k, &q, &lwork, iwork, &info, 1);
    } else {
        sgesvd_("S", "S", &lm, &ln, a, &lm, s, uu, &lm, vt, &k, &q, &lwork, &info, 1, 1);
    }
    if (info != 0) {
        free(iwork);
        return info;
    }
    if (!lwork_from(q, &lwork)) {
        free(iwork);
        return -1000;
    }
    float *work = malloc(((size_t)lwork + SRESID__BLAS_SLACK) * sizeof *work);
    if (!work) {
        free(iwork);
        return -1001;
    }
    if (dd)
        sgesdd_("S", &lm, &ln, a, &lm, s, uu, &lm, vt, &k, work, &lwork, iwork, &info, 1);
    else
        sgesvd_("S", "S", &lm, &ln, a, &lm, s, uu, &lm, vt, &k, work, &lwork, &info, 1, 1);
    free(work);
    free(iwork);
    return info;
}

sresid_status sresid__svd(float *w, int64_t m, int64_t n, int64_t r, float *u, float *s, float *v,
                          const char *name, sresid_status (*reload)(void *ctx, float *w),
                          void *ctx)
{
    if (m < 1 || n < 1 || m > INT_MAX || n > INT_MAX)
        return sresid__fail(SRESID_ERR_UNSUPPORTED,
                            "tensor '%s': %lld x %lld is beyond LAPACK's 32-bit sizes", name,
                            (long long)m, (long long)n);
    int lm = (int)n, ln = (int)m; /* LAPACK sees W^T */
    int64_t k = m < n ? m : n;
    /* fresh pages cost more than the copies they would save here, so
     * LAPACK writes B straight into u when no column is cut */
    float *sv = malloc(((size_t)k + SRESID__BLAS_SLACK) * sizeof *sv);
    float *uu = malloc(((size_t)n * (size_t)k + SRESID__BLAS_SLACK) * sizeof *uu);
    float *vt = r == k ? u : malloc(((size_t)k * (size_t)m + SRESID__BLAS_SLACK) * sizeof *vt);
    sresid_status st = SRESID_OK;
    if (!sv || !uu || !vt) {
        st = sresid__fail(SRESID_ERR_NOMEM, "tensor '%s': out of memory for its SVD", name);
        goto out;
    }
    int info = factor(true, lm, ln, w, sv, uu, vt);
    if (info > 0) { /* divide and conquer did not converge: the QR iteration may */
        if ((st = reload(ctx, w)))
            goto out;
        info = factor(false, lm, ln, w, sv, uu, vt);
    }
    if (info == -1000)
        st = sresid__fail(SRESID_ERR_UNSUPPORTED,
                          "tensor '%s': the SVD workspace of %lld x %lld is beyond LAPACK's "
                          "32-bit sizes",
                          name, (long long)m, (long long)n);
    else if (info == -1001)
        st = sresid__fail(SRESID_ERR_NOMEM, "tensor '%s': out of memory for its SVD", name);
    else if (info != 0) /* neither algorithm converged (or LAPACK refused an argument) */
        st = sresid__fail(SRESID_ERR_UNSUPPORTED,
                          "tensor '%s': the SVD failed (LAPACK info %d)", name, info);
    if (st)
        goto out;
    /* U = B: row i of the row-major m x k matrix vt, first r entries */
    if (vt != u)
        for (int64_t i = 0; i < m; i++)
            memcpy(u + i * r, vt + i * k, (size_t)r * sizeof *u);
    /* V = A: transpose of the column-major n x k matrix uu, first r
     * columns, by tiles so that both sides stay in cache */
    for (int64_t i0 = 0; i0 < n; i0 += 64)
        for (int64_t j0 = 0; j0 < r; j0 += 64)
            for (int64_t j = j0; j < j0 + 64 && j < r; j++)
                for (int64_t i = i0; i < i0 + 64 && i < n; i++)
                    v[i * r + j] = uu[i + j * n];
    memcpy(s, sv, (size_t)r * sizeof *s);
out:
    free(sv);
    free(uu);
    if (vt != u)
        free(vt);
    return st;
}
