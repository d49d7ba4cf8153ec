/* Element types: names, sizes, and conversions between the float formats.
 *
 * All conversions are done on bit patterns with integer arithmetic (plus one
 * exact float subtraction for F16 subnormals), so the library needs no
 * compiler support for _Float16 or __bf16 and gives the same bits on every
 * target. Stored tensors are little-endian; loads go through memcpy so the
 * source may have any alignment. */
#include <math.h>
#include <string.h>

#include "util/util.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SRESID__BIG_ENDIAN 1
#else
#define SRESID__BIG_ENDIAN 0
#endif

/* ---- names and sizes ---- */

/* Indexed by sresid_dtype; entry 0 is never valid. */
static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [SRESID_DTYPE_BOOL] = {"BOOL", 1},       [SRESID_DTYPE_U8] = {"U8", 1},
    [SRESID_DTYPE_I8] = {"I8", 1},           [SRESID_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [SRESID_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [SRESID_DTYPE_I16] = {"I16", 2},
    [SRESID_DTYPE_U16] = {"U16", 2},         [SRESID_DTYPE_F16] = {"F16", 2},
    [SRESID_DTYPE_BF16] = {"BF16", 2},       [SRESID_DTYPE_I32] = {"I32", 4},
    [SRESID_DTYPE_U32] = {"U32", 4},         [SRESID_DTYPE_F32] = {"F32", 4},
    [SRESID_DTYPE_F64] = {"F64", 8},         [SRESID_DTYPE_I64] = {"I64", 8},
    [SRESID_DTYPE_U64] = {"U64", 8},
};
#define DTYPE_TABLE_LEN ((sresid_dtype)(sizeof dtype_table / sizeof dtype_table[0]))

static const char *const kind_names[SRESID_KIND_COUNT] = {
    [SRESID_KIND_OTHER] = "other",
    [SRESID_KIND_ATTENTION] = "attention",
    [SRESID_KIND_MLP] = "mlp",
    [SRESID_KIND_EMBEDDING] = "embedding",
    [SRESID_KIND_NORM] = "norm",
};

const char *sresid_dtype_name(sresid_dtype dtype)
{
    if (dtype <= 0 || dtype >= DTYPE_TABLE_LEN)
        return NULL;
    return dtype_table[dtype].name;
}

size_t sresid_dtype_size(sresid_dtype dtype)
{
    if (dtype <= 0 || dtype >= DTYPE_TABLE_LEN)
        return 0;
    return dtype_table[dtype].size;
}

sresid_status sresid_dtype_from_name(const char *name, sresid_dtype *out)
{
    if (!name || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_dtype_from_name: %s is NULL",
                            !name ? "name" : "out");
    for (sresid_dtype d = 1; d < DTYPE_TABLE_LEN; d++) {
        if (strcmp(name, dtype_table[d].name) == 0) {
            *out = d;
            return SRESID_OK;
        }
    }
    /* Names come from untrusted headers: bound the quoted text. */
    return sresid__fail(SRESID_ERR_DTYPE, "unknown dtype \"%.64s\"%s", name,
                        strlen(name) > 64 ? "..." : "");
}

int32_t sresid_dtype_is_float(sresid_dtype dtype)
{
    switch (dtype) {
    case SRESID_DTYPE_F64:
    case SRESID_DTYPE_F32:
    case SRESID_DTYPE_F16:
    case SRESID_DTYPE_BF16:
    case SRESID_DTYPE_F8_E5M2:
    case SRESID_DTYPE_F8_E4M3:
        return 1;
    default:
        return 0;
    }
}

const char *sresid_kind_name(int32_t kind)
{
    if (kind < 0 || kind >= SRESID_KIND_COUNT)
        return NULL;
    return kind_names[kind];
}

/* ---- bit helpers ---- */

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline uint16_t load_u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
#if SRESID__BIG_ENDIAN
    v = __builtin_bswap16(v);
#endif
    return v;
}

#if SRESID__BIG_ENDIAN
static inline uint32_t load_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap32(v);
}
#endif

static inline uint64_t load_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if SRESID__BIG_ENDIAN
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* ---- narrow formats to float32 (always exact) ---- */

/* Branch-free (selects by mask) so that the conversion loops vectorise.
 * Shifting the exponent and mantissa left by 13 lines the F16 fields up with
 * float32's; then:
 * normal:    add the bias difference (127 - 15) << 23;
 * Inf/NaN:   add (255 - 31) << 23, which keeps the payload bits as they are;
 * subnormal: m * 2^-24 is computed as (1.m * 2^-14) - 2^-14, which is exact
 *            (both operands and the result are normal float32 numbers, so
 *            flush-to-zero modes do not disturb it); zero falls out as +0. */
static inline uint32_t f16_bits_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t exp = em & 0x0f800000u;
    uint32_t is_special = 0u - (uint32_t)(exp == 0x0f800000u); /* all ones or 0 */
    uint32_t is_sub = 0u - (uint32_t)(exp == 0);
    uint32_t normal = em + 0x38000000u + (is_special & 0x38000000u);
    uint32_t sub = f32_to_bits(bits_to_f32(em + 0x38800000u) - 0x1p-14f);
    return ((normal & ~is_sub) | (sub & is_sub)) | sign;
}

float sresid__f16_to_f32(uint16_t h)
{
    return bits_to_f32(f16_bits_to_f32_bits(h));
}

float sresid__bf16_to_f32(uint16_t h)
{
    /* BF16 is the upper half of a float32, by definition. */
    return bits_to_f32((uint32_t)h << 16);
}

float sresid__e5m2_to_f32(uint8_t v)
{
    /* E5M2 is the upper byte of an F16 (same exponent width and bias). */
    return sresid__f16_to_f32((uint16_t)((unsigned)v << 8));
}

/* OCP E4M3 ("fn"): bias 7, no infinities; S.1111.111 is NaN, so the largest
 * finite value is S.1111.110 = 448. */
float sresid__e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80u) << 24;
    uint32_t exp = (v >> 3) & 0xfu;
    uint32_t man = v & 0x7u;
    uint32_t bits;
    if (exp == 0xf && man == 0x7)
        bits = 0x7ff00000u; /* quiet NaN, the mantissa bits on top as for F16 */
    else if (exp != 0)
        bits = ((exp + 120u) << 23) | (man << 20);
    else
        bits = f32_to_bits((float)man * 0x1p-9f); /* subnormal: man * 2^-9, exact */
    return bits_to_f32(bits | sign);
}

/* ---- float32 to narrow formats (round to nearest even) ---- */

/* FP8: round to nearest, ties to the even code, by search over the 127
 * (E4M3) or 124 (E5M2) non-negative finite codes, which ascend with their
 * value. Beyond the largest finite value by half an ulp or more (ties:
 * to even), E5M2 gives infinity and E4M3, which has none, NaN. */
static uint8_t f32_to_f8(float f, float (*dec)(uint8_t), uint8_t max_code, uint8_t over_code,
                         uint8_t nan_code)
{
    uint8_t sign = signbit(f) ? 0x80u : 0;
    if (isnan(f))
        return nan_code | sign;
    double a = fabs((double)f);
    uint8_t lo = 0, hi = max_code; /* largest code with value <= a */
    if (a >= (double)dec(max_code)) {
        lo = max_code;
    } else {
        while (lo < hi) {
            uint8_t mid = (uint8_t)((lo + hi + 1) / 2);
            if ((double)dec(mid) <= a)
                lo = mid;
            else
                hi = (uint8_t)(mid - 1);
        }
    }
    double below = dec(lo);
    double above = lo < max_code ? (double)dec((uint8_t)(lo + 1))
                                 : below + (below - (double)dec((uint8_t)(max_code - 1)));
    uint8_t code;
    if (a - below < above - a)
        code = lo;
    else if (a - below > above - a)
        code = (uint8_t)(lo + 1);
    else
        code = (lo & 1u) ? (uint8_t)(lo + 1) : lo;
    if (code > max_code)
        code = over_code;
    return code | sign;
}

uint8_t sresid__f32_to_e4m3(float f)
{
    return f32_to_f8(f, sresid__e4m3_to_f32, 0x7e, 0x7f, 0x7f);
}

uint8_t sresid__f32_to_e5m2(float f)
{
    return f32_to_f8(f, sresid__e5m2_to_f32, 0x7b, 0x7c, 0x7e);
}

uint16_t sresid__f32_to_f16(float f)
{
    uint32_t x = f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;

    if (x > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    /* 65520 is halfway between 65504 (odd mantissa) and 2^16: ties go up,
     * so it and everything above (Inf included) become Inf. */
    if (x >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);

    uint32_t e = x >> 23;
    if (e >= 113) { /* normal F16 */
        uint32_t h = ((e - 112u) << 10) | ((x >> 13) & 0x3ffu);
        uint32_t rem = x & 0x1fffu;
        /* a carry out of the mantissa moves to the next exponent, as it should */
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* Subnormal F16 result: value = m * 2^(e-150), in units of 2^-24 that is
     * m >> (126 - e). Below 2^-25 (shift > 24) everything rounds to zero;
     * that also covers float32 subnormals. */
    uint32_t shift = 126u - e;
    if (shift > 24)
        return sign;
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++; /* 0x400 is the smallest normal: the encoding is still right */
    return (uint16_t)(sign | q);
}

uint16_t sresid__f32_to_bf16(float f)
{
    uint32_t x = f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    /* Add just under half an ulp, plus one if the kept part is odd: the carry
     * rounds to nearest even, and overflows to Inf where it should. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ---- bulk conversion ---- */

/* GCC at -O2 vectorises only loops whose trip count is a multiple of the
 * vector width, so the F16/BF16/E5M2 loops run in fixed blocks plus a scalar
 * tail. restrict: the tensor bytes and the output never overlap. */
#define BLOCK 16

static inline float f16_at(const unsigned char *src, size_t i)
{
    return bits_to_f32(f16_bits_to_f32_bits(load_u16(src + 2 * i)));
}

static inline float bf16_at(const unsigned char *src, size_t i)
{
    return bits_to_f32((uint32_t)load_u16(src + 2 * i) << 16);
}

static inline float e5m2_at(const unsigned char *src, size_t i)
{
    return bits_to_f32(f16_bits_to_f32_bits((uint16_t)((unsigned)src[i] << 8)));
}

/* One such loop per dtype, its element function inlined. */
#define DEFINE_RUN(name, at)                                                                \
    static void name(const unsigned char *restrict src, float *restrict dst, size_t n)      \
    {                                                                                       \
        size_t i = 0;                                                                       \
        for (; n - i >= BLOCK; i += BLOCK)                                                  \
            for (size_t k = 0; k < BLOCK; k++)                                              \
                dst[i + k] = at(src, i + k);                                                \
        for (; i < n; i++)                                                                  \
            dst[i] = at(src, i);                                                            \
    }

DEFINE_RUN(f16_run, f16_at)
DEFINE_RUN(bf16_run, bf16_at)
DEFINE_RUN(e5m2_run, e5m2_at)

static void f64_run(const unsigned char *restrict src, float *restrict dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t u = load_u64(src + 8 * i);
        double d;
        memcpy(&d, &u, sizeof d);
        dst[i] = (float)d; /* IEEE: nearest even, overflow to Inf, NaN kept */
    }
}

static void e4m3_run(const unsigned char *restrict src, float *restrict dst, size_t n)
{
    if (n <= 256) {
        for (size_t i = 0; i < n; i++)
            dst[i] = sresid__e4m3_to_f32(src[i]);
        return;
    }
    /* Only 256 codes: a table beats per-element branches. Built per call
     * (cheap next to the tensor) to stay reentrant without global state. */
    float table[256];
    for (unsigned v = 0; v < 256; v++)
        table[v] = sresid__e4m3_to_f32((uint8_t)v);
    for (size_t i = 0; i < n; i++)
        dst[i] = table[src[i]];
}

void sresid__to_f32(sresid_dtype dtype, const unsigned char *src, float *dst, size_t n)
{
    switch (dtype) {
    case SRESID_DTYPE_F32:
#if SRESID__BIG_ENDIAN
        for (size_t i = 0; i < n; i++)
            dst[i] = bits_to_f32(load_u32(src + 4 * i));
#else
        if (n)
            memcpy(dst, src, n * sizeof(float));
#endif
        break;
    case SRESID_DTYPE_F64:
        f64_run(src, dst, n);
        break;
    case SRESID_DTYPE_F16:
        f16_run(src, dst, n);
        break;
    case SRESID_DTYPE_BF16:
        bf16_run(src, dst, n);
        break;
    case SRESID_DTYPE_F8_E5M2:
        e5m2_run(src, dst, n);
        break;
    case SRESID_DTYPE_F8_E4M3:
        e4m3_run(src, dst, n);
        break;
    default:
        /* Not a float dtype: the caller checks sresid_dtype_is_float first. */
        break;
    }
}
