/* Moments: a mergeable state of count, mean and central sums M2, M3, M4.
 *
 * Values are taken in blocks of up to BLOCK finite floats. Each block is
 * summarised with two passes while it sits in L1 (block mean, then the
 * central sums in double, shifted exactly onto the block's true mean), and
 * the block summary joins the state through the pairwise update of Chan et
 * al. / Pebay, which is exact in real arithmetic: a merged state equals the
 * state of the concatenation up to rounding. */
#include <math.h>
#include <string.h>

#include "util/util.h"

#define BLOCK 4096      /* floats per block: 16 KiB, fits L1 with room to spare */
#define MIN_DIRECT 256  /* shorter runs are gathered rather than summarised alone */

/* The block kernel: AVX-512 or portable vector code, see simd.h. */
#include "util/simd.h"

/* GCC/clang vector extensions: the compiler maps them onto whatever vector
 * width the clone targets (16-byte float vectors stay native on SSE2, where
 * wider masks would be split element by element). Plain loops with double
 * reductions would not vectorise without -ffast-math, since that reorders
 * the sums. Helpers are macros: passing such vectors to functions changes
 * the baseline ABI. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

#define LOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define TO_D(f) __builtin_convertvector((f), v4d)
#define VMIN(a, b) ((v4f)(((v4i)(a) & ((a) < (b))) | ((v4i)(b) & ~((a) < (b)))))
#define VMAX(a, b) ((v4f)(((v4i)(a) & ((a) > (b))) | ((v4i)(b) & ~((a) > (b)))))
#define HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))

/* Summary of one block (also the form a state takes while merging). */
typedef struct summary {
    uint64_t n;
    double mean, m2, m3, m4;
} summary;

/* Raw sums of one block: sum, min, max (pass 1) and, around b = sum / n,
 * the sums of d = x - b and of d^2, d^3, d^4 (pass 2). */
typedef struct raw {
    double sum, s1, s2, s3, s4;
    float mn, mx;
} raw;

/* Pass 1 over x[0..n); returns false when a value is NaN or infinite: their
 * sum in double is then not finite, while a sum of up to BLOCK finite floats
 * can never overflow. Pass 2 runs only for a finite block. next (may be
 * NULL) is the following block, prefetched during pass 2 by the AVX-512
 * kernel so that memory traffic overlaps the arithmetic. */
CLONES static bool kernel_generic(const float *x, size_t n, const float *next, raw *r)
{
    (void)next;
    v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    v4f lo = {INFINITY, INFINITY, INFINITY, INFINITY}, hi = -lo, f0, f1, f2, f3;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        LOAD(f0, x + i);
        LOAD(f1, x + i + 4);
        LOAD(f2, x + i + 8);
        LOAD(f3, x + i + 12);
        a0 += TO_D(f0);
        a1 += TO_D(f1);
        a2 += TO_D(f2);
        a3 += TO_D(f3);
        v4f m0 = VMIN(f0, f1), m1 = VMIN(f2, f3), M0 = VMAX(f0, f1), M1 = VMAX(f2, f3);
        m0 = VMIN(m0, m1);
        M0 = VMAX(M0, M1);
        lo = VMIN(m0, lo);
        hi = VMAX(M0, hi);
    }
    double sum = HSUM((a0 + a1) + (a2 + a3));
    float fmn = INFINITY, fmx = -INFINITY;
    for (int j = 0; j < 4; j++) {
        fmn = lo[j] < fmn ? lo[j] : fmn;
        fmx = hi[j] > fmx ? hi[j] : fmx;
    }
    for (; i < n; i++) {
        sum += x[i];
        fmn = x[i] < fmn ? x[i] : fmn;
        fmx = x[i] > fmx ? x[i] : fmx;
    }
    if (!isfinite(sum))
        return false;
    const double b = sum / (double)n;
    v4d vb = {b, b, b, b};
    v4d s1a = {0}, s2a = {0}, s3a = {0}, s4a = {0};
    v4d s1b = {0}, s2b = {0}, s3b = {0}, s4b = {0};
    for (i = 0; i + 8 <= n; i += 8) {
        LOAD(f0, x + i);
        LOAD(f1, x + i + 4);
        v4d d = TO_D(f0) - vb, e = TO_D(f1) - vb;
        v4d d2 = d * d, e2 = e * e;
        s1a += d;
        s2a += d2;
        s3a += d2 * d;
        s4a += d2 * d2;
        s1b += e;
        s2b += e2;
        s3b += e2 * e;
        s4b += e2 * e2;
    }
    r->s1 = HSUM(s1a + s1b);
    r->s2 = HSUM(s2a + s2b);
    r->s3 = HSUM(s3a + s3b);
    r->s4 = HSUM(s4a + s4b);
    for (; i < n; i++) {
        double d = (double)x[i] - b, d2 = d * d;
        r->s1 += d;
        r->s2 += d2;
        r->s3 += d2 * d;
        r->s4 += d2 * d2;
    }
    r->sum = sum;
    r->mn = fmn;
    r->mx = fmx;
    return true;
}

#if HAVE_AVX512
/* Halves of a 16-float register (AVX-512F has no 256-bit float extract). */
#define LOW8(v) _mm512_castps512_ps256(v)
#define HIGH8(v) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))

__attribute__((target("avx512f"))) static bool kernel_avx512(const float *x, size_t n,
                                                             const float *next, raw *r)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 f0 = _mm512_loadu_ps(x + i), f1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(LOW8(f0)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(HIGH8(f0)));
        a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(LOW8(f1)));
        a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(HIGH8(f1)));
        lo = _mm512_min_ps(lo, _mm512_min_ps(f0, f1));
        hi = _mm512_max_ps(hi, _mm512_max_ps(f0, f1));
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
    float fmn = _mm512_reduce_min_ps(lo), fmx = _mm512_reduce_max_ps(hi);
    for (; i < n; i++) {
        sum += x[i];
        fmn = x[i] < fmn ? x[i] : fmn;
        fmx = x[i] > fmx ? x[i] : fmx;
    }
    if (!isfinite(sum))
        return false;
    const double b = sum / (double)n;
    const __m512d vb = _mm512_set1_pd(b);
    __m512d s1a = _mm512_setzero_pd(), s2a = s1a, s3a = s1a, s4a = s1a;
    __m512d s1b = s1a, s2b = s1a, s3b = s1a, s4b = s1a;
    for (i = 0; i + 16 <= n; i += 16) {
        if (next)
            _mm_prefetch((const char *)(next + i), _MM_HINT_T0);
        __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vb);
        __m512d e = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)), vb);
        __m512d d2 = _mm512_mul_pd(d, d), e2 = _mm512_mul_pd(e, e);
        s1a = _mm512_add_pd(s1a, d);
        s1b = _mm512_add_pd(s1b, e);
        s2a = _mm512_add_pd(s2a, d2);
        s2b = _mm512_add_pd(s2b, e2);
        s3a = _mm512_fmadd_pd(d2, d, s3a);
        s3b = _mm512_fmadd_pd(e2, e, s3b);
        s4a = _mm512_fmadd_pd(d2, d2, s4a);
        s4b = _mm512_fmadd_pd(e2, e2, s4b);
    }
    r->s1 = _mm512_reduce_add_pd(_mm512_add_pd(s1a, s1b));
    r->s2 = _mm512_reduce_add_pd(_mm512_add_pd(s2a, s2b));
    r->s3 = _mm512_reduce_add_pd(_mm512_add_pd(s3a, s3b));
    r->s4 = _mm512_reduce_add_pd(_mm512_add_pd(s4a, s4b));
    for (; i < n; i++) {
        double d = (double)x[i] - b, d2 = d * d;
        r->s1 += d;
        r->s2 += d2;
        r->s3 += d2 * d;
        r->s4 += d2 * d2;
    }
    r->sum = sum;
    r->mn = fmn;
    r->mx = fmx;
    return true;
}
#endif

typedef bool (*kernel_fn)(const float *, size_t, const float *, raw *);

static kernel_fn pick_kernel(void)
{
#if HAVE_AVX512
    if (__builtin_cpu_supports("avx512f"))
        return kernel_avx512;
#endif
    return kernel_generic;
}

/* Summarise x[0..n), n >= 1; false for a block with a non-finite value. */
static bool block_summary(kernel_fn kernel, const float *x, size_t n, const float *next,
                          summary *s, float *mn, float *mx)
{
    raw r;
    if (!kernel(x, n, next, &r))
        return false;
    /* b is the mean only up to rounding; shift the sums onto b + delta
     * exactly (s1 = n delta), which keeps M2..M4 accurate even when the
     * mean is large against the spread. */
    const double dn = (double)n, b = r.sum / dn, delta = r.s1 / dn, d2 = delta * delta;
    s->n = n;
    s->mean = b + delta;
    s->m2 = r.s2 - dn * d2;
    s->m3 = r.s3 - 3.0 * delta * r.s2 + 2.0 * dn * d2 * delta;
    s->m4 = r.s4 - 4.0 * delta * r.s3 + 6.0 * d2 * r.s2 - 3.0 * dn * d2 * d2;
    if (r.mn == r.mx) { /* a constant block: no rounding residue */
        s->mean = r.mn;
        s->m2 = s->m3 = s->m4 = 0;
    }
    if (s->m2 < 0)
        s->m2 = 0;
    if (s->m4 < 0)
        s->m4 = 0;
    *mn = r.mn;
    *mx = r.mx;
    return true;
}

/* a := a + b (pairwise update of the central sums; Pebay 2008, eq. 3.1). */
static void summary_merge(summary *a, const summary *b)
{
    if (b->n == 0)
        return;
    if (a->n == 0) {
        *a = *b;
        return;
    }
    const double na = (double)a->n, nb = (double)b->n, n = na + nb;
    const double delta = b->mean - a->mean, dn = delta / n, dn2 = dn * dn;
    const double m2 = a->m2 + b->m2 + delta * dn * na * nb;
    const double m3 = a->m3 + b->m3 + delta * dn2 * na * nb * (na - nb) +
                      3.0 * dn * (na * b->m2 - nb * a->m2);
    const double m4 = a->m4 + b->m4 + delta * dn2 * dn * na * nb * (na * na - na * nb + nb * nb) +
                      6.0 * dn2 * (na * na * b->m2 + nb * nb * a->m2) +
                      4.0 * dn * (na * b->m3 - nb * a->m3);
    /* weighted mean: exact for equal means, no cancellation for far ones */
    a->mean = a->mean + delta * (nb / n);
    a->m2 = m2;
    a->m3 = m3;
    a->m4 = m4;
    a->n += b->n;
}

static summary state_summary(const sresid_moments *st)
{
    return (summary){st->count, st->mean, st->m2, st->m3, st->m4};
}

static void state_take(sresid_moments *st, const summary *s)
{
    st->count = s->n;
    st->mean = s->mean;
    st->m2 = s->m2;
    st->m3 = s->m3;
    st->m4 = s->m4;
}

static bool initialised(const sresid_moments *st)
{
    return st->size == sizeof(sresid_moments);
}

sresid_status sresid_moments_init(sresid_moments *state)
{
    if (!state)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_moments_init: state is NULL");
    *state = (sresid_moments){.size = sizeof(sresid_moments), .min = INFINITY, .max = -INFINITY};
    return SRESID_OK;
}

/* Accumulates into a local summary, written back once at the end. */
typedef struct adder {
    kernel_fn kernel;
    summary acc;
    uint64_t nonfinite;
    float mn, mx;
    size_t len; /* finite values waiting in buf */
    float buf[BLOCK];
} adder;

static void adder_block(adder *ad, const float *x, size_t n)
{
    summary s;
    float mn, mx;
    if (!block_summary(ad->kernel, x, n, NULL, &s, &mn, &mx))
        return; /* cannot happen: callers pass finite values only */
    summary_merge(&ad->acc, &s);
    ad->mn = mn < ad->mn ? mn : ad->mn;
    ad->mx = mx > ad->mx ? mx : ad->mx;
}

/* Slow path: copy the finite values aside, count the others. */
static void adder_gather(adder *ad, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v - v == 0) {
            ad->buf[ad->len++] = v;
            if (ad->len == BLOCK) {
                adder_block(ad, ad->buf, BLOCK);
                ad->len = 0;
            }
        } else {
            ad->nonfinite++;
        }
    }
}

static void adder_run(adder *ad, const float *x, size_t n)
{
    for (size_t off = 0; off < n; off += BLOCK) {
        size_t len = n - off < BLOCK ? n - off : BLOCK;
        summary s;
        float mn, mx;
        const float *next = n - off > BLOCK ? x + off + BLOCK : NULL;
        if (len >= MIN_DIRECT && block_summary(ad->kernel, x + off, len, next, &s, &mn, &mx)) {
            summary_merge(&ad->acc, &s);
            ad->mn = mn < ad->mn ? mn : ad->mn;
            ad->mx = mx > ad->mx ? mx : ad->mx;
        } else {
            adder_gather(ad, x + off, len);
        }
    }
}

sresid_status sresid_moments_add(sresid_moments *state, const float *x, int64_t rows,
                                 int64_t cols, int64_t ld)
{
    if (!state)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_moments_add: state is NULL");
    if (!initialised(state))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_moments_add: state not initialised (sresid_moments_init)");
    sresid_status st = sresid__check_matrix(x, rows, cols, ld, "sresid_moments_add");
    if (st)
        return st;
    if (rows == 0 || cols == 0)
        return SRESID_OK;

    adder ad;
    ad.kernel = pick_kernel();
    ad.acc = state_summary(state);
    ad.nonfinite = 0;
    ad.mn = INFINITY;
    ad.mx = -INFINITY;
    ad.len = 0;
    if (ld == cols || rows == 1) /* contiguous: one run */
        adder_run(&ad, x, (size_t)rows * (size_t)cols);
    else
        for (int64_t r = 0; r < rows; r++)
            adder_run(&ad, x + r * ld, (size_t)cols);
    if (ad.len)
        adder_block(&ad, ad.buf, ad.len);

    state_take(state, &ad.acc);
    state->nonfinite += ad.nonfinite;
    if (ad.mn < state->min)
        state->min = ad.mn;
    if (ad.mx > state->max)
        state->max = ad.mx;
    return SRESID_OK;
}

sresid_status sresid_moments_merge(sresid_moments *into, const sresid_moments *other)
{
    if (!into || !other)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_moments_merge: %s is NULL",
                            into ? "other" : "into");
    if (!initialised(into) || !initialised(other))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_moments_merge: %s state not initialised (sresid_moments_init)",
                            initialised(into) ? "other" : "into");
    uint64_t count, nonfinite;
    if (!sresid__add_u64(into->count, other->count, &count) ||
        !sresid__add_u64(into->nonfinite, other->nonfinite, &nonfinite))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_moments_merge: counts overflow");
    /* other may alias into: read everything before writing */
    summary a = state_summary(into), b = state_summary(other);
    double mn = fmin(into->min, other->min), mx = fmax(into->max, other->max);
    summary_merge(&a, &b);
    state_take(into, &a);
    into->nonfinite = nonfinite;
    into->min = mn;
    into->max = mx;
    return SRESID_OK;
}

sresid_status sresid_moments_stats(const sresid_moments *state, sresid_moment_stats *out)
{
    if (!state || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_moments_stats: %s is NULL",
                            state ? "out" : "state");
    if (!initialised(state))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_moments_stats: state not initialised (sresid_moments_init)");
    if (out->size < sizeof(sresid_moment_stats))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_moments_stats: out->size %zu is below %zu (set it to sizeof)",
                            out->size, sizeof(sresid_moment_stats));
    sresid_moment_stats v = {.size = out->size,
                             .count = state->count,
                             .nonfinite = state->nonfinite,
                             .mean = NAN,
                             .variance = NAN,
                             .skewness = NAN,
                             .kurtosis = NAN,
                             .min = NAN,
                             .max = NAN};
    if (state->count > 0) {
        const double n = (double)state->count, var = state->m2 / n;
        v.mean = state->mean;
        v.variance = var;
        v.min = state->min;
        v.max = state->max;
        if (state->min == state->max) {
            /* a constant: exact figures, not the rounding residue of merges */
            v.mean = state->min;
            v.variance = 0;
        } else if (state->m2 > 0) {
            v.skewness = state->m3 / n / (var * sqrt(var));
            v.kurtosis = state->m4 / n / (var * var) - 3.0;
        }
    }
    /* fill only what the caller's struct covers */
    memcpy(out, &v, out->size < sizeof v ? out->size : sizeof v);
    return SRESID_OK;
}
