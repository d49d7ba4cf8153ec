/* Private BLIS and LAPACK wrappers: thread count per call, never BLIS's
 * global state. Only blas.c sees <blis.h>, only svd.c LAPACK. Never
 * installed. */
#ifndef SPARSERESID_UTIL_BLAS_H
#define SPARSERESID_UTIL_BLAS_H

#include <stdint.h>

#include "sparseresid/sparseresid.h"

/* Floats of slack to allocate past the end of every buffer the library
 * hands to BLIS: the small-matrix ("sup") kernels of BLIS 0.9 for
 * haswell/zen can read a few elements past an operand (flame/blis#635),
 * seen here on C when beta != 0. */
#define SRESID__BLAS_SLACK 16

/* C (m x n, row stride ldc) = alpha * op(A) * op(B) + beta * C, float32,
 * row-major, with op = transpose when ta/tb is non-zero. Runs with
 * sresid_get_threads() threads, fewer for a small product. Arguments must
 * already be validated. */
void sresid__sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                   float *c, int64_t ldc);

/* y (m) = alpha * A * x + beta * y, A row-major m x n with row stride lda,
 * float32, same threading rule as sresid__sgemm (BLIS 0.9 runs level-2
 * operations on one thread whatever the count). */
void sresid__sgemv(int64_t m, int64_t n, float alpha, const float *a, int64_t lda,
                   const float *x, float beta, float *y);

/* Thread count for BLIS calls made by the calling thread: n >= 1 overrides
 * sresid_get_threads() (the job engine gives each worker its share of the
 * threads, at least 1); 0 restores the global setting. Returns the
 * previous value, for the caller to restore. */
int sresid__blas_local_threads(int n);

/* Thin SVD (svd.c) of the row-major m x n matrix w, truncated to r <=
 * min(m, n): u (m x r) and v (n x r) row-major, s the r largest singular
 * values, descending. w is overwritten; reload(ctx, w) refills it for a
 * second attempt (sgesvd after sgesdd fails). name is for messages.
 * UNSUPPORTED (sizes beyond LAPACK's 32-bit integers, no convergence),
 * NOMEM, or reload's status. */
sresid_status sresid__svd(float *w, int64_t m, int64_t n, int64_t r, float *u, float *s, float *v,
                          const char *name, sresid_status (*reload)(void *ctx, float *w),
                          void *ctx);

#endif /* SPARSERESID_UTIL_BLAS_H */
