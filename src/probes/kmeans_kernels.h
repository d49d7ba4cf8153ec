/* Private: the row kernels of k-means (kmeans.c). AVX-512 versions where
 * the CPU has it, portable vector code elsewhere (util/simd.h). Never
 * installed. */
#ifndef SPARSERESID_PROBES_KMEANS_KERNELS_H
#define SPARSERESID_PROBES_KMEANS_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* Centres up to this many go through sresid__km_dots; more through BLIS. */
#define SRESID__KM_DOTS_MAX 32

/* xn[i] = ||row i||^2 in double for rows rows of x (row stride ld); returns
 * the largest |x| as float bits, >= 0x7f800000 when a value is NaN or Inf. */
uint32_t sresid__km_scan(const float *x, int64_t rows, int64_t cols, int64_t ld, double *xn);

/* Whether sresid__km_dots runs here (AVX-512 F). */
bool sresid__km_have_dots(void);

/* out[i * nc + l] = x_i . c_l for rows i < nr of x (stride ld) and centres
 * l < nc <= SRESID__KM_DOTS_MAX of c (stride ldc), float32 sums. Only when
 * sresid__km_have_dots(). */
void sresid__km_dots(const float *x, int64_t ld, int64_t nr, int64_t cols, const float *c,
                     int64_t ldc, int64_t nc, float *out);

/* ||r - c||^2 over n values, in double. */
double sresid__km_dist(const float *r, const float *c, int64_t n);

/* s[j] += r[j] (sign > 0) or s[j] -= r[j] (sign < 0), j < n, in double. */
void sresid__km_add_row(double *s, const float *r, int64_t n, int sign);

#endif
