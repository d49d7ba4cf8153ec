/* The row kernels of k-means: norms and the finiteness scan, the dot
 * products of rows with a few centres, exact distances, cluster sums.
 *
 * Why a dot-product kernel of its own: with few centres, a Lloyd pass is
 * bound by reading the matrix once. BLIS's skx kernels pack every operand
 * first (three passes over the rows instead of one; 4096 x 4096 x 8 ran at
 * 17 GFLOP/s), and BLIS 0.9 has unpacked small-n kernels only for
 * haswell/zen. This one streams each row once against the centres held in
 * cache: two rows by eight centres in sixteen 16-lane accumulators. */
#include <string.h>

#include "probes/kmeans_kernels.h"
#include "util/simd.h"

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

#define LOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define TO_D(f) __builtin_convertvector((f), v4d)
#define HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))

/* ---- portable versions ---- */

CLONES static uint32_t scan_row_generic(const float *x, int64_t n, double *sq)
{
    v4d a0 = {0}, a1 = {0};
    v4i m = {0}, abs = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v4f f0, f1;
        LOAD(f0, x + j);
        LOAD(f1, x + j + 4);
        v4d d0 = TO_D(f0), d1 = TO_D(f1);
        a0 += d0 * d0;
        a1 += d1 * d1;
        v4i b0 = (v4i)f0 & abs, b1 = (v4i)f1 & abs;
        v4i g0 = b0 > m;
        m = (b0 & g0) | (m & ~g0);
        v4i g1 = b1 > m;
        m = (b1 & g1) | (m & ~g1);
    }
    double s = HSUM(a0 + a1);
    uint32_t mx = 0;
    for (int l = 0; l < 4; l++)
        mx = (uint32_t)m[l] > mx ? (uint32_t)m[l] : mx;
    for (; j < n; j++) {
        uint32_t b;
        memcpy(&b, x + j, sizeof b);
        b &= 0x7fffffffu;
        mx = b > mx ? b : mx;
        s += (double)x[j] * x[j];
    }
    *sq = s;
    return mx;
}

CLONES static double dist_generic(const float *r, const float *c, int64_t n)
{
    v4d a0 = {0}, a1 = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v4f r0, r1, c0, c1;
        LOAD(r0, r + j);
        LOAD(r1, r + j + 4);
        LOAD(c0, c + j);
        LOAD(c1, c + j + 4);
        v4d d0 = TO_D(r0) - TO_D(c0), d1 = TO_D(r1) - TO_D(c1);
        a0 += d0 * d0;
        a1 += d1 * d1;
    }
    double s = HSUM(a0 + a1);
    for (; j < n; j++) {
        double d = (double)r[j] - c[j];
        s += d * d;
    }
    return s;
}

CLONES static void add_row_generic(double *s, const float *r, int64_t n, int sign)
{
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        v4f f;
        v4d d;
        LOAD(f, r + j);
        LOAD(d, s + j);
        d = sign > 0 ? d + TO_D(f) : d - TO_D(f);
        memcpy(s + j, &d, sizeof d);
    }
    for (; j < n; j++)
        s[j] = sign > 0 ? s[j] + r[j] : s[j] - r[j];
}

/* ---- AVX-512 versions ---- */

#if HAVE_AVX512
#define AVX512 __attribute__((target("avx512f")))
#define LOW8(v) _mm512_castps512_ps256(v)
#define HIGH8(v) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))

AVX512 static uint32_t scan_row_avx512(const float *x, int64_t n, double *sq)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    __m512i m = _mm512_setzero_si512(), abs = _mm512_set1_epi32(0x7fffffff);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 f = _mm512_maskz_loadu_ps(k, x + j);
        m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_castps_si512(f), abs));
        __m512d d0 = _mm512_cvtps_pd(LOW8(f)), d1 = _mm512_cvtps_pd(HIGH8(f));
        a0 = _mm512_fmadd_pd(d0, d0, a0);
        a1 = _mm512_fmadd_pd(d1, d1, a1);
    }
    *sq = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    return (uint32_t)_mm512_reduce_max_epu32(m);
}

AVX512 static double dist_avx512(const float *r, const float *c, int64_t n)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 f = _mm512_maskz_loadu_ps(k, r + j), g = _mm512_maskz_loadu_ps(k, c + j);
        __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(LOW8(f)), _mm512_cvtps_pd(LOW8(g)));
        __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(HIGH8(f)), _mm512_cvtps_pd(HIGH8(g)));
        a0 = _mm512_fmadd_pd(d0, d0, a0);
        a1 = _mm512_fmadd_pd(d1, d1, a1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

AVX512 static void add_row_avx512(double *s, const float *r, int64_t n, int sign)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m512d f = _mm512_cvtps_pd(_mm256_loadu_ps(r + j)), d = _mm512_loadu_pd(s + j);
        _mm512_storeu_pd(s + j, sign > 0 ? _mm512_add_pd(d, f) : _mm512_sub_pd(d, f));
    }
    for (; j < n; j++)
        s[j] = sign > 0 ? s[j] + r[j] : s[j] - r[j];
}

/* Tiles of R rows by G centres in R x G accumulators, all named so that
 * they stay in registers: 2 x 8 and 4 x 4 (sixteen each). Rows beyond the
 * matrix and centres beyond the list point at real ones; their sums are
 * dropped. The last partial 16 columns go through a masked load. */
#define FMA1(a, x, c) a = _mm512_fmadd_ps(x, c, a)

AVX512 static void tile_2x8(const float *const *x, const float *const *next, int64_t n,
                            const float *const *c, float *o, int64_t ldo, int nr, int nc)
{
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a04 = a00, a05 = a00,
           a06 = a00, a07 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00, a14 = a00,
           a15 = a00, a16 = a00, a17 = a00;
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 v0 = _mm512_maskz_loadu_ps(k, x[0] + j), v1 = _mm512_maskz_loadu_ps(k, x[1] + j);
        _mm_prefetch((const char *)(next[0] + j), _MM_HINT_T0);
        _mm_prefetch((const char *)(next[1] + j), _MM_HINT_T0);
        __m512 cv;
#define STEP(l)                                                                                \
    cv = _mm512_maskz_loadu_ps(k, c[l] + j);                                                   \
    FMA1(a0##l, v0, cv);                                                                       \
    FMA1(a1##l, v1, cv);
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
    }
    __m512 acc[2][8] = {{a00, a01, a02, a03, a04, a05, a06, a07},
                        {a10, a11, a12, a13, a14, a15, a16, a17}};
    for (int r = 0; r < nr; r++)
        for (int l = 0; l < nc; l++)
            o[r * ldo + l] = _mm512_reduce_add_ps(acc[r][l]);
}

AVX512 static void tile_4x4(const float *const *x, const float *const *next, int64_t n,
                            const float *const *c, float *o, int64_t ldo, int nr, int nc)
{
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00,
           a12 = a00, a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00,
           a31 = a00, a32 = a00, a33 = a00;
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 v0 = _mm512_maskz_loadu_ps(k, x[0] + j), v1 = _mm512_maskz_loadu_ps(k, x[1] + j);
        __m512 v2 = _mm512_maskz_loadu_ps(k, x[2] + j), v3 = _mm512_maskz_loadu_ps(k, x[3] + j);
        for (int r = 0; r < 4; r++)
            _mm_prefetch((const char *)(next[r] + j), _MM_HINT_T0);
        __m512 cv;
#define STEP(l)                                                                                \
    cv = _mm512_maskz_loadu_ps(k, c[l] + j);                                                   \
    FMA1(a0##l, v0, cv);                                                                       \
    FMA1(a1##l, v1, cv);                                                                       \
    FMA1(a2##l, v2, cv);                                                                       \
    FMA1(a3##l, v3, cv);
        STEP(0) STEP(1) STEP(2) STEP(3)
#undef STEP
    }
    __m512 acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23},
                        {a30, a31, a32, a33}};
    for (int r = 0; r < nr; r++)
        for (int l = 0; l < nc; l++)
            o[r * ldo + l] = _mm512_reduce_add_ps(acc[r][l]);
}
#endif

/* ---- dispatch ---- */

static bool have_avx512(void)
{
#if HAVE_AVX512
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

uint32_t sresid__km_scan(const float *x, int64_t rows, int64_t cols, int64_t ld, double *xn)
{
    uint32_t mx = 0;
    bool fast = have_avx512();
    for (int64_t i = 0; i < rows; i++) {
        uint32_t b;
#if HAVE_AVX512
        if (fast)
            b = scan_row_avx512(x + i * ld, cols, &xn[i]);
        else
#endif
            b = scan_row_generic(x + i * ld, cols, &xn[i]);
        mx = b > mx ? b : mx;
    }
    (void)fast;
    return mx;
}

bool sresid__km_have_dots(void)
{
    return have_avx512();
}

void sresid__km_dots(const float *x, int64_t ld, int64_t nr, int64_t cols, const float *c,
                     int64_t ldc, int64_t nc, float *out)
{
#if HAVE_AVX512
    /* 8 centres at a time while more than 4 remain, else 4 */
    const int g = nc > 4 ? 8 : 4, rt = g == 8 ? 2 : 4;
    for (int64_t l0 = 0; l0 < nc; l0 += g) {
        const float *cp[8];
        int gl = nc - l0 < g ? (int)(nc - l0) : g;
        for (int l = 0; l < g; l++)
            cp[l] = c + (l0 + (l < gl ? l : gl - 1)) * ldc;
        for (int64_t i = 0; i < nr; i += rt) {
            /* the next tile's rows are prefetched while this one runs */
            const float *xp[4], *np[4];
            int rl = nr - i < rt ? (int)(nr - i) : rt;
            for (int r = 0; r < rt; r++) {
                xp[r] = x + (i + (r < rl ? r : rl - 1)) * ld;
                np[r] = i + rt + r < nr ? x + (i + rt + r) * ld : xp[r];
            }
            if (g == 8)
                tile_2x8(xp, np, cols, cp, out + i * nc + l0, nc, rl, gl);
            else
                tile_4x4(xp, np, cols, cp, out + i * nc + l0, nc, rl, gl);
        }
    }
#else
    (void)x, (void)ld, (void)nr, (void)cols, (void)c, (void)ldc, (void)nc, (void)out;
#endif
}

double sresid__km_dist(const float *r, const float *c, int64_t n)
{
#if HAVE_AVX512
    if (have_avx512())
        return dist_avx512(r, c, n);
#endif
    return dist_generic(r, c, n);
}

void sresid__km_add_row(double *s, const float *r, int64_t n, int sign)
{
#if HAVE_AVX512
    if (have_avx512()) {
        add_row_avx512(s, r, n, sign);
        return;
    }
#endif
    add_row_generic(s, r, n, sign);
}
