/* Histograms with equal bins, their Shannon entropy, and the entropy of a
 * matrix against a random baseline.
 *
 * Binning is numpy.histogram's on float64 data: the edges are those of
 * numpy.linspace(lo, hi, bins + 1) (edge[k] = k * step + lo with step =
 * (hi - lo) / bins, edge[bins] = hi), a first guess of the bin from
 * (x - lo) * bins / (hi - lo) is corrected by one against those edges, and
 * the last bin is closed. So a value lands in the bin numpy puts it in, also
 * right on an edge. Finite values outside [lo, hi] are counted apart
 * (sresid_histogram_outside); NaN and infinities are counted nowhere.
 *
 * Work goes in blocks: a vector pass turns up to BLOCK values into bin
 * indices (with two extra slots: "outside" and "non-finite"), then a scalar
 * pass counts them into LANES interleaved copies of the counts, so that runs
 * of equal bins do not wait on each other's store-to-load forwarding. The
 * copies are summed when read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* The edges k * step + lo must be rounded as numpy rounds them: no fused
 * multiply-add. GCC contracts only outside ISO C mode (the Makefile builds
 * with -std=c11); clang contracts within an expression unless told. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define BLOCK 4096
#define MAX_BINS (1 << 24)
#define LANES 4
#define LANE_MAX_BINS 16384 /* above this, one copy (repeats are rarer, memory counts) */
#define DEFAULT_BINS 100

#include "util/simd.h" /* AVX-512 or portable vector kernels */

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4si __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4di __attribute__((vector_size(32)));

struct sresid_histogram {
    int32_t bins;
    int32_t lanes;
    size_t stride; /* bins + 2: slot bins = outside, bins + 1 = non-finite */
    double lo, hi, step, norm, delta, delta_f;
    uint64_t *counts; /* lanes x stride */
};

/* Binning constants, copied out of the handle for the kernels. */
typedef struct binning {
    double lo, hi, step, norm;
    double delta, delta_f; /* fast-path margins, see fast_margin */
    int32_t bins;
} binning;

/* Bin index of one value by the exact rule: 0..bins-1 inside [lo, hi], bins
 * for a finite value outside, bins + 1 for NaN and infinities. */
static inline uint32_t bin_of(const binning *b, double v)
{
    if (!(v >= b->lo && v <= b->hi))
        return v - v == 0 ? (uint32_t)b->bins : (uint32_t)b->bins + 1;
    double t = (v - b->lo) * b->norm; /* in [0, bins (1 + eps)] */
    int32_t j = (int32_t)t;
    if (j > b->bins - 1)
        j = b->bins - 1;
    double e = (double)j * b->step;
    e += b->lo;
    if (v < e) {
        j--;
    } else if (j != b->bins - 1) {
        double e1 = (double)(j + 1) * b->step;
        e1 += b->lo;
        if (v >= e1)
            j++;
    }
    return (uint32_t)j;
}

static void index_exact(const binning *b, const float *x, size_t n, uint32_t *idx)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = bin_of(b, x[i]);
}

/* The fast path. Let m = max(|lo|, |hi|) / (hi - lo) and u the unit
 * roundoff of the arithmetic (2^-53 in double; 2^-24 in the float kernel,
 * where lo, x - lo and the scale are rounded to float). The computed t =
 * (x - lo) * bins / (hi - lo) lies within about u bins (4 + m) of the exact
 * value, and the computed edges (in units of t) within 2^-53 bins (3 + m) of
 * their integers. So when 0 <= t < bins and the fraction of t keeps a margin
 * delta = 4 u bins (7 + 2m) from 0 and 1, x lies strictly between two edges,
 * in bin trunc(t), where the exact rule puts it too. Values that miss the
 * margin (outside, not finite, or near an edge, such as the minimum itself)
 * take the exact rule. */
static double fast_margin(double lo, double hi, int32_t bins, double u)
{
    double m = fmax(fabs(lo), fabs(hi)) / (hi - lo);
    double d = 4 * u * bins * (7 + 2 * m);
    return d < 0.125 ? d : 2; /* 2: the fast path never applies */
}

#define LOAD(v, p) memcpy(&(v), (p), sizeof(v))

/* Portable fast kernel (vector extensions, compiled for AVX2 and the
 * baseline): the compares give all-ones lanes, out-of-range lanes are
 * zeroed before the conversion so that it stays defined. */
CLONES static bool index_fast_generic(const binning *b, const float *x, size_t n, uint32_t *idx)
{
    const double lo = b->lo, norm = b->norm, top = b->bins, dl = b->delta, dh = 1 - b->delta;
    const v4d vlo = {lo, lo, lo, lo}, vnorm = {norm, norm, norm, norm};
    const v4d vtop = {top, top, top, top}, vdl = {dl, dl, dl, dl}, vdh = {dh, dh, dh, dh};
    const v4d vzero = {0, 0, 0, 0};
    v4di ok = {-1, -1, -1, -1};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f f;
        LOAD(f, x + i);
        v4d t = (__builtin_convertvector(f, v4d) - vlo) * vnorm;
        v4di in = (t >= vzero) & (t < vtop); /* false for NaN */
        t = (v4d)((v4di)t & in);
        v4si j = __builtin_convertvector(t, v4si);
        v4d frac = t - __builtin_convertvector(j, v4d);
        ok &= in & (frac >= vdl) & (frac <= vdh);
        memcpy(idx + i, &j, sizeof j);
    }
    bool all = (ok[0] & ok[1] & ok[2] & ok[3]) != 0;
    index_exact(b, x + i, n - i, idx + i);
    return all;
}

#if HAVE_AVX512
__attribute__((target("avx512f"))) static void index_exact_avx512(const binning *b,
                                                                  const float *x, size_t n,
                                                                  uint32_t *idx);

/* The fast path with AVX-512 runs in float, 16 values at a time: x and lo
 * rounded to float add an error of u_f bins max(|lo|, |hi|) / (hi - lo) to
 * t (u_f = 2^-24), so the margin is delta_f (see fast_margin). Values that
 * miss it are rarer than one in a thousand for a few hundred bins, so they
 * are redone 16 at a time by the exact rule rather than failing the block;
 * a block fails only for a value above the range or not finite. Without a
 * usable float margin (many bins, a range far from 0) every block takes
 * the exact rule. */
__attribute__((target("avx512f"))) static bool index_fast_avx512(const binning *b, const float *x,
                                                                 size_t n, uint32_t *idx)
{
    if (!(b->delta_f < 0.05)) {
        index_exact_avx512(b, x, n, idx);
        return true;
    }
    const __m512 lo = _mm512_set1_ps((float)b->lo), norm = _mm512_set1_ps((float)b->norm);
    const __m512 half = _mm512_set1_ps(0.5f), lim = _mm512_set1_ps((float)(0.5 - b->delta_f));
    const __m512i abs = _mm512_set1_epi32(0x7fffffff);
    __m512 tmax = _mm512_set1_ps(-INFINITY);
    __m512i z = _mm512_setzero_si512();
    uint32_t redo[BLOCK / 16]; /* groups of 16 to redo; n <= BLOCK */
    size_t nredo = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(v, lo), norm);
        __m512 whole = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m512 f = _mm512_sub_ps(t, whole);
        /* |f - 1/2| >= 1/2 - delta_f: near an edge, below lo, or NaN */
        __m512i d = _mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(f, half)), abs);
        __mmask16 near = _mm512_cmp_ps_mask(_mm512_castsi512_ps(d), lim, _CMP_NLT_UQ);
        /* v - v is +0 (all bits clear) unless v is NaN or infinite */
        z = _mm512_or_si512(z, _mm512_castps_si512(_mm512_sub_ps(v, v)));
        tmax = _mm512_max_ps(tmax, t);
        /* lanes out of range convert to garbage; their block is redone */
        _mm512_storeu_si512((void *)(idx + i), _mm512_cvttps_epi32(t));
        /* noted without a branch; redone after the loop, which then makes
         * no call and keeps its constants in registers */
        redo[nredo] = (uint32_t)i;
        nredo += near != 0;
    }
    for (size_t k = 0; k < nredo; k++)
        index_exact_avx512(b, x + redo[k], 16, idx + redo[k]);
    bool all = _mm512_test_epi32_mask(z, z) == 0 && _mm512_reduce_max_ps(tmax) < b->bins;
    index_exact(b, x + i, n - i, idx + i);
    return all;
}

/* The exact rule, 8 values at a time in double. */
__attribute__((target("avx512f"))) static void index_exact_avx512(const binning *b,
                                                                  const float *x, size_t n,
                                                                  uint32_t *idx)
{
    const __m512d lo = _mm512_set1_pd(b->lo), hi = _mm512_set1_pd(b->hi);
    const __m512d step = _mm512_set1_pd(b->step), norm = _mm512_set1_pd(b->norm);
    const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd();
    const __m512d last = _mm512_set1_pd((double)(b->bins - 1));
    const __m512d outside = _mm512_set1_pd((double)b->bins);
    const __m512d nonfinite = _mm512_set1_pd((double)b->bins + 1);
    const __m256i lastj = _mm256_set1_epi32(b->bins - 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        __mmask8 in = _mm512_cmp_pd_mask(v, lo, _CMP_GE_OQ) & _mm512_cmp_pd_mask(v, hi, _CMP_LE_OQ);
        __mmask8 fin = _mm512_cmp_pd_mask(_mm512_sub_pd(v, v), zero, _CMP_EQ_OQ);
        /* out-of-range lanes get t = 0, so the conversion stays defined */
        __m512d t = _mm512_maskz_mul_pd(in, _mm512_sub_pd(v, lo), norm);
        __m256i j = _mm256_min_epi32(_mm512_cvttpd_epi32(t), lastj);
        __m512d jd = _mm512_cvtepi32_pd(j);
        __m512d e = _mm512_add_pd(_mm512_mul_pd(jd, step), lo);
        __m512d e1 = _mm512_add_pd(_mm512_mul_pd(_mm512_add_pd(jd, one), step), lo);
        __mmask8 islast = _mm512_cmp_pd_mask(jd, last, _CMP_EQ_OQ);
        __mmask8 dec = _mm512_cmp_pd_mask(v, e, _CMP_LT_OQ);
        __mmask8 inc = _mm512_cmp_pd_mask(v, e1, _CMP_GE_OQ) & (__mmask8)~dec & (__mmask8)~islast;
        jd = _mm512_mask_sub_pd(jd, dec, jd, one);
        jd = _mm512_mask_add_pd(jd, inc, jd, one);
        jd = _mm512_mask_mov_pd(jd, (__mmask8)~in, outside);
        jd = _mm512_mask_mov_pd(jd, (__mmask8)~fin, nonfinite);
        _mm256_storeu_si256((__m256i *)(idx + i), _mm512_cvttpd_epi32(jd));
    }
    index_exact(b, x + i, n - i, idx + i);
}
#endif

typedef struct indexer {
    bool (*fast)(const binning *, const float *, size_t, uint32_t *);
    void (*exact)(const binning *, const float *, size_t, uint32_t *);
} indexer;

static indexer pick_indexer(void)
{
#if HAVE_AVX512
    if (__builtin_cpu_supports("avx512f"))
        return (indexer){index_fast_avx512, index_exact_avx512};
#endif
    return (indexer){index_fast_generic, index_exact};
}

/* Count x[0..n) into h: bin indices of a block, then the increments. The
 * index kernels are only ever given up to BLOCK values. */
static void hist_run(sresid_histogram *h, indexer ix, const float *x, size_t n)
{
    const binning b = {h->lo, h->hi, h->step, h->norm, h->delta, h->delta_f, h->bins};
    uint32_t idx[BLOCK];
    uint64_t *c0 = h->counts;
    for (size_t off = 0; off < n; off += BLOCK) {
        size_t len = n - off < BLOCK ? n - off : BLOCK, i = 0;
        if (!ix.fast(&b, x + off, len, idx))
            ix.exact(&b, x + off, len, idx);
        if (h->lanes == LANES) {
            /* the next block is fetched while this one is counted */
            const float *next = n - off > BLOCK ? x + off + BLOCK : NULL;
            uint64_t *c1 = c0 + h->stride, *c2 = c1 + h->stride, *c3 = c2 + h->stride;
            for (; i + 4 <= len; i += 4) {
                if (next && (i & 15) == 0)
                    __builtin_prefetch(next + i);
                c0[idx[i]]++;
                c1[idx[i + 1]]++;
                c2[idx[i + 2]]++;
                c3[idx[i + 3]]++;
            }
        }
        for (; i < len; i++)
            c0[idx[i]]++;
    }
}

/* Total of slot k over the copies. */
static uint64_t slot_total(const sresid_histogram *h, size_t k)
{
    uint64_t t = 0;
    for (int32_t l = 0; l < h->lanes; l++)
        t += h->counts[(size_t)l * h->stride + k];
    return t;
}

static sresid_status check_bins(int32_t bins, const char *fn)
{
    if (bins < 1 || bins > MAX_BINS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: bins %d is not in [1, %d]", fn,
                            (int)bins, MAX_BINS);
    return SRESID_OK;
}

sresid_status sresid_histogram_create(int32_t bins, double lo, double hi, sresid_histogram **out)
{
    static const char fn[] = "sresid_histogram_create";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    sresid_status st = check_bins(bins, fn);
    if (st)
        return st;
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: range [%g, %g] must be finite with lo < hi", fn, lo, hi);
    const double width = hi - lo, step = width / bins, norm = bins / width;
    /* hi - lo can overflow; a subnormal width gives step 0 or norm Inf */
    if (!isfinite(width) || !(step > 0) || !isfinite(norm))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: range [%g, %g] is too wide or too narrow for %d bins", fn, lo,
                            hi, (int)bins);
    sresid_histogram *h = malloc(sizeof *h);
    int32_t lanes = bins <= LANE_MAX_BINS ? LANES : 1;
    size_t stride = (size_t)bins + 2;
    uint64_t *counts = calloc((size_t)lanes * stride, sizeof *counts);
    if (!h || !counts) {
        free(h);
        free(counts);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for %d bins", fn, (int)bins);
    }
    *h = (sresid_histogram){.bins = bins,
                            .lanes = lanes,
                            .stride = stride,
                            .lo = lo,
                            .hi = hi,
                            .step = step,
                            .norm = norm,
                            .delta = fast_margin(lo, hi, bins, 0x1.0p-53),
                            .delta_f = fast_margin(lo, hi, bins, 0x1.0p-24),
                            .counts = counts};
    *out = h;
    return SRESID_OK;
}

void sresid_histogram_free(sresid_histogram *h)
{
    if (!h)
        return;
    free(h->counts);
    free(h);
}

/* Feed a checked matrix: contiguous data as one run, else row by row. */
static void hist_add_matrix(sresid_histogram *h, const float *x, int64_t rows, int64_t cols,
                            int64_t ld)
{
    if (rows == 0 || cols == 0)
        return;
    indexer ix = pick_indexer();
    if (ld == cols || rows == 1)
        hist_run(h, ix, x, (size_t)rows * (size_t)cols);
    else
        for (int64_t r = 0; r < rows; r++)
            hist_run(h, ix, x + r * ld, (size_t)cols);
}

sresid_status sresid_histogram_add(sresid_histogram *h, const float *x, int64_t rows,
                                   int64_t cols, int64_t ld)
{
    if (!h)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_histogram_add: histogram is NULL");
    sresid_status st = sresid__check_matrix(x, rows, cols, ld, "sresid_histogram_add");
    if (st)
        return st;
    hist_add_matrix(h, x, rows, cols, ld);
    return SRESID_OK;
}

sresid_status sresid_histogram_merge(sresid_histogram *into, const sresid_histogram *other)
{
    if (!into || !other)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_histogram_merge: %s is NULL",
                            into ? "other" : "into");
    if (into->bins != other->bins || into->lo != other->lo || into->hi != other->hi)
        return sresid__fail(SRESID_ERR_SHAPE,
                            "sresid_histogram_merge: binning differs (%d bins over [%.17g, %.17g] "
                            "vs %d over [%.17g, %.17g])",
                            (int)into->bins, into->lo, into->hi, (int)other->bins, other->lo,
                            other->hi);
    /* slot by slot, read before write: other may be into */
    for (size_t k = 0; k < into->stride; k++) {
        uint64_t t = slot_total(other, k);
        into->counts[k] += t;
    }
    return SRESID_OK;
}

sresid_status sresid_histogram_counts(const sresid_histogram *h, uint64_t *counts, size_t n)
{
    if (!h || !counts)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_histogram_counts: %s is NULL",
                            h ? "counts" : "histogram");
    if (n < (size_t)h->bins)
        return sresid__fail(SRESID_ERR_SHAPE,
                            "sresid_histogram_counts: room for %zu counts, the histogram has %d "
                            "bins",
                            n, (int)h->bins);
    for (int32_t k = 0; k < h->bins; k++)
        counts[k] = slot_total(h, (size_t)k);
    return SRESID_OK;
}

uint64_t sresid_histogram_outside(const sresid_histogram *h)
{
    return h ? slot_total(h, (size_t)h->bins) : 0;
}

/* -sum p log2 p over the non-empty bins, p = c / N; NaN when N = 0. */
static double hist_entropy(const sresid_histogram *h)
{
    uint64_t total = 0;
    for (int32_t k = 0; k < h->bins; k++)
        total += slot_total(h, (size_t)k);
    if (total == 0)
        return NAN;
    const double n = (double)total;
    double bits = 0;
    for (int32_t k = 0; k < h->bins; k++) {
        uint64_t c = slot_total(h, (size_t)k);
        if (c) {
            double p = (double)c / n;
            bits -= p * log2(p);
        }
    }
    return bits > 0 ? bits : 0; /* one full bin: -1 * log2(1) = -0 */
}

sresid_status sresid_histogram_entropy(const sresid_histogram *h, double *bits)
{
    if (!h || !bits)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_histogram_entropy: %s is NULL",
                            h ? "bits" : "histogram");
    *bits = hist_entropy(h);
    return SRESID_OK;
}

/* ---- random baseline ------------------------------------------------- */

/* Standard normal draws by the ziggurat method (Marsaglia and Tsang, 2000)
 * with 256 layers over the library's xoshiro256** generator: one 64-bit
 * output per draw in about 99 % of cases (8 bits pick the layer, one the
 * sign, the top 53 the position), instead of Box-Muller's log, sqrt, sin
 * and cos. The baseline of a large tensor needs as many draws as it has
 * values, twice, so this is where its time goes.
 *
 * Layers: x[1] = r, x[i+1] = f^-1(f(x[i]) + v / x[i]) for f(x) = exp(-x^2/2),
 * each of area v = r f(r) + integral of f beyond r; layer 0 is the base strip
 * (width x[0] = v / f(r)) with the tail past r; x[256] = 0. With r below the
 * top layer closes to 1e-13 relative. */
#define ZIG_LAYERS 256
#define ZIG_R 3.6541528853610088

typedef struct zig {
    double x[ZIG_LAYERS + 1];
    double f[ZIG_LAYERS + 1];
} zig;

static void zig_init(zig *z)
{
    const double r = ZIG_R, fr = exp(-0.5 * r * r);
    const double v = r * fr + sqrt(acos(-1.0) / 2) * erfc(r / sqrt(2.0));
    z->x[0] = v / fr;
    z->x[1] = r;
    for (int i = 1; i < ZIG_LAYERS - 1; i++)
        z->x[i + 1] = sqrt(-2.0 * log(v / z->x[i] + exp(-0.5 * z->x[i] * z->x[i])));
    z->x[ZIG_LAYERS] = 0;
    for (int i = 0; i <= ZIG_LAYERS; i++)
        z->f[i] = exp(-0.5 * z->x[i] * z->x[i]);
    z->f[0] = 0; /* base strip: from the axis (never used for a wedge) */
}

/* t with the sign bit taken from bit 8 of u (no branch on a random bit). */
static inline double signed_by(double t, uint64_t u)
{
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits ^= (u & ZIG_LAYERS) << 55;
    memcpy(&t, &bits, sizeof t);
    return t;
}

static inline double zig_uniform(sresid__rng *g)
{
    return (double)(sresid__rng_next(g) >> 11) * 0x1.0p-53;
}

/* The rare cases (about 1 %): the tail of layer 0 and the wedges; returns
 * false when the point is rejected and a new draw must start. */
static bool zig_slow(sresid__rng *g, const zig *z, uint64_t u, unsigned i, double t,
                     double *out)
{
    if (i == 0) {
        /* tail beyond r (Marsaglia 1964) */
        double a, b;
        do {
            a = -log(1.0 - zig_uniform(g)) / ZIG_R;
            b = -log(1.0 - zig_uniform(g));
        } while (b + b < a * a);
        *out = signed_by(ZIG_R + a, u);
        return true;
    }
    /* wedge: uniform height within the layer against the curve */
    double y = z->f[i] + zig_uniform(g) * (z->f[i + 1] - z->f[i]);
    if (y < exp(-0.5 * t * t)) {
        *out = signed_by(t, u);
        return true;
    }
    return false;
}

/* n draws rounded to float into dst; their min and max too. */
static void zig_fill(sresid__rng *g, const zig *z, float *dst, size_t n, float *mn, float *mx)
{
    float lo = *mn, hi = *mx;
    for (size_t k = 0; k < n; k++) {
        double v;
        for (;;) {
            uint64_t u = sresid__rng_next(g);
            unsigned i = (unsigned)(u & (ZIG_LAYERS - 1));
            double t = (double)(u >> 11) * 0x1.0p-53 * z->x[i];
            if (t < z->x[i + 1]) { /* inside the layer's core rectangle */
                v = signed_by(t, u);
                break;
            }
            if (zig_slow(g, z, u, i, t, &v))
                break;
        }
        float f = (float)v;
        dst[k] = f;
        lo = f < lo ? f : lo;
        hi = f > hi ? f : hi;
    }
    *mn = lo;
    *mx = hi;
}

/* Entropy of count draws over their own [min, max]: pass 1 finds the range,
 * pass 2 regenerates the same stream (same seed) and bins it, so memory is
 * one block whatever count is. Draws are rounded to float32, like the
 * tensors they stand for. Binning over [min, max] is affine-invariant, so
 * standard normal draws give the baseline of N(mean, variance) draws for
 * any mean and variance. */
static sresid_status random_entropy(uint64_t count, int32_t bins, uint64_t seed, double *bits)
{
    if (count < 2) {
        *bits = NAN;
        return SRESID_OK;
    }
    zig z;
    zig_init(&z);
    float *buf = malloc(BLOCK * sizeof *buf);
    if (!buf)
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_entropy_random: no memory");
    sresid__rng g;
    sresid__rng_seed(&g, seed);
    float mn = INFINITY, mx = -INFINITY;
    for (uint64_t done = 0; done < count;) {
        size_t len = count - done < BLOCK ? (size_t)(count - done) : BLOCK;
        zig_fill(&g, &z, buf, len, &mn, &mx);
        done += len;
    }
    if (!(mn < mx)) { /* all draws equal: one bin */
        free(buf);
        *bits = 0;
        return SRESID_OK;
    }
    sresid_histogram *h = NULL;
    sresid_status st = sresid_histogram_create(bins, mn, mx, &h);
    if (st) {
        free(buf);
        return st;
    }
    indexer ix = pick_indexer();
    sresid__rng_seed(&g, seed);
    for (uint64_t done = 0; done < count;) {
        size_t len = count - done < BLOCK ? (size_t)(count - done) : BLOCK;
        float unused_mn = INFINITY, unused_mx = -INFINITY;
        zig_fill(&g, &z, buf, len, &unused_mn, &unused_mx);
        hist_run(h, ix, buf, len);
        done += len;
    }
    *bits = hist_entropy(h);
    sresid_histogram_free(h);
    free(buf);
    return SRESID_OK;
}

sresid_status sresid_entropy_random(uint64_t count, int32_t bins, uint64_t seed, double *bits)
{
    if (!bits)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_entropy_random: bits is NULL");
    sresid_status st = check_bins(bins, "sresid_entropy_random");
    if (st)
        return st;
    double b;
    st = random_entropy(count, bins, seed, &b);
    if (st)
        return st;
    *bits = b;
    return SRESID_OK;
}

sresid_status sresid_entropy(const float *x, int64_t rows, int64_t cols, int64_t ld,
                             int32_t bins, uint64_t seed, sresid_entropy_result *out)
{
    static const char fn[] = "sresid_entropy";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if (out->size < sizeof(sresid_entropy_result))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: out->size %zu is below %zu (set it to sizeof)", fn, out->size,
                            sizeof(sresid_entropy_result));
    if (bins == 0)
        bins = DEFAULT_BINS;
    sresid_status st = check_bins(bins, fn);
    if (st)
        return st;
    st = sresid__check_matrix(x, rows, cols, ld, fn);
    if (st)
        return st;

    /* pass 1: count and range of the finite values */
    sresid_moments m;
    sresid_moments_init(&m);
    st = sresid_moments_add(&m, x, rows, cols, ld);
    if (st)
        return st;
    sresid_entropy_result v = {
        .size = out->size, .count = m.count, .bits = NAN, .random_bits = NAN, .ratio = NAN};
    if (m.count > 0 && m.min == m.max) {
        v.bits = 0; /* one value, one bin; the baseline's range is not */
    } else if (m.count > 0) {
        /* pass 2: the histogram over [min, max] */
        sresid_histogram *h = NULL;
        st = sresid_histogram_create(bins, m.min, m.max, &h);
        if (st)
            return st;
        hist_add_matrix(h, x, rows, cols, ld);
        v.bits = hist_entropy(h);
        sresid_histogram_free(h);
        st = random_entropy(m.count, bins, seed, &v.random_bits);
        if (st)
            return st;
        v.ratio = v.bits / v.random_bits;
    }
    memcpy(out, &v, out->size < sizeof v ? out->size : sizeof v);
    return SRESID_OK;
}
