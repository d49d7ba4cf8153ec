/* Private BLIS wrappers: thread count per call, never BLIS's global state.
 * Only this header and blas.c see <blis.h>. */
#ifndef SPARSERESID_BLAS_H
#define SPARSERESID_BLAS_H

#include <stdint.h>

/* C (m x n, row stride ldc) = alpha * op(A) * op(B) + beta * C, float32,
 * row-major, with op = transpose when ta/tb is non-zero. Runs with
 * sresid_get_threads() threads. Arguments must already be validated. */
void sresid__sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                   float *c, int64_t ldc);

/* Thread count for BLIS calls made by the calling thread: n >= 1 overrides
 * sresid_get_threads() (worker threads that already split the work use 1);
 * 0 restores the global setting. */
void sresid__blas_local_threads(int n);

#endif
