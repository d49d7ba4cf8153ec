/* BLIS calls. The thread count travels in a runtime object per call so that
 * a host program sharing BLIS (numpy, a trainer) keeps its own settings. */
#include <blis.h>

#include "util/blas.h"
#include "util/util.h"

static _Thread_local int local_threads;

/* Threads for a product of m n k multiply-adds: small products run on one
 * thread, since waking and joining BLIS's workers costs more than they
 * save (and much more on a loaded machine, where workers spin waiting for
 * a core); then one more thread per 2^21 multiply-adds, up to the setting. */
static int threads_for(int64_t m, int64_t n, int64_t k)
{
    int want = local_threads ? local_threads : sresid_get_threads();
    double work = (double)m * (double)n * (double)k / 2097152.0;
    return work < want ? (work < 1 ? 1 : (int)work) : want;
}

int sresid__blas_local_threads(int n)
{
    int old = local_threads;
    local_threads = n > 0 ? n : 0;
    return old;
}

void sresid__sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                   float *c, int64_t ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads_for(m, n, k), &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1,
                 NULL, &rntm);
}

void sresid__sgemv(int64_t m, int64_t n, float alpha, const float *a, int64_t lda,
                   const float *x, float beta, float *y)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads_for(m, n, 1), &rntm);
    bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, m, n, &alpha, (float *)a, lda, 1,
                 (float *)x, 1, &beta, y, 1, NULL, &rntm);
}

const char *sresid_blas_arch(void)
{
    bli_init();
    const char *s = bli_arch_string(bli_arch_query_id());
    return s ? s : "unknown";
}
