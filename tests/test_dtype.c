/* Float format conversions and the public dtype functions.
 *
 * Every conversion is checked against a reference that does not share code
 * with the library: the compiler's _Float16 (when it has one), formulas in
 * double built from ldexp, and the BF16 definition (the top half of a float). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "testutil.h"

/* ck_assert_msg passes a checkpoint through a pipe on every call, which
 * dominates loops of millions of checks; this reports only failures. */
#define EXPECT(cond, ...)              \
    do {                               \
        if (!(cond))                   \
            ck_abort_msg(__VA_ARGS__); \
    } while (0)

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Value of an F16 pattern, straight from the IEEE definition. */
static double ref_f16_value(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v;
    if (exp == 0x1f)
        v = man ? NAN : INFINITY;
    else if (exp == 0)
        v = ldexp((double)man, -24);
    else
        v = ldexp((double)(1024 + man), exp - 25);
    return sign ? -v : v;
}

/* Value of an OCP E4M3 (fn) pattern: bias 7, S.1111.111 is NaN, no Inf. */
static double ref_e4m3_value(uint8_t b)
{
    int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
    double v;
    if (exp == 0xf && man == 7)
        v = NAN;
    else if (exp == 0)
        v = ldexp((double)man, -9);
    else
        v = ldexp((double)(8 + man), exp - 10);
    return sign ? -v : v;
}

/* Round a finite float to a binary format with p significant bits, smallest
 * normal exponent emin and largest finite value maxv, to nearest even, in
 * double arithmetic (every step below is exact). Returns the rounded value,
 * +-Inf on overflow. */
static double ref_round(float f, int p, int emin, double maxv)
{
    double a = fabs((double)f);
    if (isinf(a))
        return (double)f;
    double ulp;
    if (a < ldexp(1.0, emin)) {
        ulp = ldexp(1.0, emin - p + 1);
    } else {
        int e;
        (void)frexp(a, &e); /* a in [2^(e-1), 2^e) */
        ulp = ldexp(1.0, e - p);
    }
    double lo = floor(a / ulp) * ulp; /* the two neighbouring candidates */
    double hi = lo + ulp;
    double dlo = a - lo, dhi = hi - a;
    double v;
    if (dlo < dhi)
        v = lo;
    else if (dhi < dlo)
        v = hi;
    else /* tie: the one with an even last significand bit */
        v = fmod(lo / ulp, 2.0) == 0.0 ? lo : hi;
    if (v > maxv)
        v = INFINITY;
    return signbit(f) ? -v : v;
}

static double ref_to_f16(float f)
{
    return ref_round(f, 11, -14, 65504.0);
}

static double ref_to_bf16(float f)
{
    return ref_round(f, 8, -126, ldexp(255.0, 120));
}

/* Same value and same sign of zero. */
static int same_value(double a, double b)
{
    return a == b && !signbit(a) == !signbit(b);
}

#ifdef __FLT16_MAX__
static uint16_t cc_f32_to_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

static float cc_f16_to_f32(uint16_t u)
{
    _Float16 h;
    memcpy(&h, &u, sizeof h);
    return (float)h;
}
#endif

Suite *suite_dtype(void);

/* ---- narrow to float32, exhaustive ---- */

START_TEST(f16_all_patterns)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float got = sresid__f16_to_f32(h);
        uint32_t gb = fbits(got);
        double want = ref_f16_value(h);
        if (isnan(want)) {
            EXPECT(isnan(got), "f16 %04x: want NaN, got %08x", h, gb);
            EXPECT((gb >> 31) == (uint32_t)(h >> 15), "f16 %04x: NaN sign lost", h);
            /* payload: the 10 mantissa bits on top of float32's 23, rest zero */
            EXPECT(((gb >> 13) & 0x3ff) == (h & 0x3ffu) && (gb & 0x1fff) == 0,
                   "f16 %04x: NaN payload %08x", h, gb);
        } else {
            EXPECT(gb == fbits((float)want), "f16 %04x: got %08x want %08x", h, gb,
                   fbits((float)want));
        }
#ifdef __FLT16_MAX__
        float cc = cc_f16_to_f32(h);
        uint32_t cb = fbits(cc);
        if (isnan(cc)) {
            /* the compiler may quiet a signalling NaN; sign and the rest of
             * the payload must agree */
            EXPECT(isnan(got) && (gb >> 31) == (cb >> 31) &&
                       (gb & 0x3fffffu) == (cb & 0x3fffffu),
                   "f16 %04x: got %08x, _Float16 gives %08x", h, gb, cb);
        } else {
            EXPECT(gb == cb, "f16 %04x: got %08x, _Float16 gives %08x", h, gb, cb);
        }
#endif
    }
}
END_TEST

START_TEST(bf16_all_patterns)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float got = sresid__bf16_to_f32(h);
        uint32_t gb = fbits(got), want = i << 16;
        if (isnan(bitsf(want))) /* allow only the quiet bit to differ */
            EXPECT(isnan(got) && (gb & ~0x400000u) == (want & ~0x400000u),
                   "bf16 %04x: got %08x want %08x", h, gb, want);
        else
            EXPECT(gb == want, "bf16 %04x: got %08x want %08x", h, gb, want);
    }
}
END_TEST

START_TEST(e5m2_all_patterns)
{
    for (uint32_t i = 0; i < 256; i++) {
        float got = sresid__e5m2_to_f32((uint8_t)i);
        double want = ref_f16_value((uint16_t)(i << 8));
        if (isnan(want))
            EXPECT(isnan(got) && !signbit(got) == !signbit(want) &&
                       ((fbits(got) >> 21) & 3u) == (i & 3u),
                   "e5m2 %02x: got %08x", i, fbits(got));
        else
            EXPECT(fbits(got) == fbits((float)want), "e5m2 %02x: got %08x want %08x",
                   i, fbits(got), fbits((float)want));
    }
    /* a few landmarks */
    ck_assert_float_eq(sresid__e5m2_to_f32(0x3c), 1.0f);
    ck_assert_float_eq(sresid__e5m2_to_f32(0x7b), 57344.0f);
    ck_assert(isinf(sresid__e5m2_to_f32(0x7c)) && sresid__e5m2_to_f32(0xfc) < 0);
    ck_assert_float_eq(sresid__e5m2_to_f32(0x01), 0x1p-16f);
}
END_TEST

START_TEST(e4m3_all_patterns)
{
    int nans = 0;
    for (uint32_t i = 0; i < 256; i++) {
        float got = sresid__e4m3_to_f32((uint8_t)i);
        double want = ref_e4m3_value((uint8_t)i);
        EXPECT(!isinf(got), "e4m3 %02x: E4M3 has no infinities", i);
        if (isnan(want)) {
            nans++;
            EXPECT(isnan(got) && !signbit(got) == !signbit(want),
                   "e4m3 %02x: got %08x", i, fbits(got));
        } else {
            EXPECT(fbits(got) == fbits((float)want), "e4m3 %02x: got %08x want %08x",
                   i, fbits(got), fbits((float)want));
        }
    }
    ck_assert_int_eq(nans, 2);
    ck_assert_float_eq(sresid__e4m3_to_f32(0x7e), 448.0f);
    ck_assert_float_eq(sresid__e4m3_to_f32(0xfe), -448.0f);
    ck_assert_float_eq(sresid__e4m3_to_f32(0x38), 1.0f);
    ck_assert_float_eq(sresid__e4m3_to_f32(0x01), 0x1p-9f);
    ck_assert(isnan(sresid__e4m3_to_f32(0x7f)) && !signbit(sresid__e4m3_to_f32(0x7f)));
    ck_assert(isnan(sresid__e4m3_to_f32(0xff)) && signbit(sresid__e4m3_to_f32(0xff)));
    ck_assert_uint_eq(fbits(sresid__e4m3_to_f32(0x80)), 0x80000000u);
}
END_TEST

/* ---- float32 to FP8: every code back, midpoints to even, hand cases ---- */

START_TEST(f8_from_f32)
{
    for (int e4 = 0; e4 < 2; e4++) {
        float (*dec)(uint8_t) = e4 ? sresid__e4m3_to_f32 : sresid__e5m2_to_f32;
        uint8_t (*enc)(float) = e4 ? sresid__f32_to_e4m3 : sresid__f32_to_e5m2;
        int max = e4 ? 0x7e : 0x7b;
        for (int c = 0; c <= max; c++) {
            for (int s = 0; s < 2; s++) {
                uint8_t code = (uint8_t)(c | (s ? 0x80 : 0));
                ck_assert_uint_eq(enc(dec(code)), code); /* every finite code back, -0 too */
            }
            if (c == max)
                break;
            /* the midpoint to the next code goes to the even one, a hair
             * either side to the nearer one (midpoints are exact in double,
             * then in float: F8 has 2-3 mantissa bits) */
            double a = dec((uint8_t)c), b = dec((uint8_t)(c + 1)), mid = (a + b) / 2;
            ck_assert_uint_eq(enc((float)mid), (c & 1) ? c + 1 : c);
            ck_assert_uint_eq(enc(nextafterf((float)mid, 0)), c);
            ck_assert_uint_eq(enc(nextafterf((float)mid, INFINITY)), c + 1);
        }
    }
    /* by hand: E4M3 1.0 = 0x38, 1.0625 ties to 1.0 (even), 1.1 to 1.125 (0x39),
     * 448 + 16 = 464 ties down to 448, 465 is NaN; E5M2 57344 + 4096 goes to Inf */
    ck_assert_uint_eq(sresid__f32_to_e4m3(1.0f), 0x38);
    ck_assert_uint_eq(sresid__f32_to_e4m3(1.0625f), 0x38);
    ck_assert_uint_eq(sresid__f32_to_e4m3(1.1f), 0x39);
    ck_assert_uint_eq(sresid__f32_to_e4m3(-1.1f), 0xb9);
    ck_assert_uint_eq(sresid__f32_to_e4m3(464.0f), 0x7e);
    ck_assert_uint_eq(sresid__f32_to_e4m3(465.0f), 0x7f);
    ck_assert_uint_eq(sresid__f32_to_e4m3(-INFINITY), 0xff);
    ck_assert_uint_eq(sresid__f32_to_e4m3(NAN), 0x7f);
    ck_assert_uint_eq(sresid__f32_to_e4m3(0x1p-10f), 0x00); /* half the smallest: to even 0 */
    ck_assert_uint_eq(sresid__f32_to_e5m2(57344.0f), 0x7b);
    ck_assert_uint_eq(sresid__f32_to_e5m2(61440.0f), 0x7c);
    ck_assert_uint_eq(sresid__f32_to_e5m2(-INFINITY), 0xfc);
    ck_assert_uint_eq(sresid__f32_to_e5m2(1.0f), 0x3c);
}
END_TEST

/* ---- float32 to narrow, round trips ---- */

START_TEST(f16_bf16_round_trip)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t p = (uint16_t)i;
        if ((p & 0x7c00) != 0x7c00 || (p & 0x3ff) == 0)
            EXPECT(sresid__f32_to_f16(sresid__f16_to_f32(p)) == p, "f16 %04x", p);
        if ((p & 0x7f80) != 0x7f80 || (p & 0x7f) == 0)
            EXPECT(sresid__f32_to_bf16(sresid__bf16_to_f32(p)) == p, "bf16 %04x", p);
    }
}
END_TEST

static void check_f16_one(uint32_t x)
{
    float f = bitsf(x);
    uint16_t got = sresid__f32_to_f16(f);
    if (isnan(f)) {
        EXPECT((got & 0x7c00) == 0x7c00 && (got & 0x200) && (got >> 15) == (x >> 31) &&
                   (got & 0x1ffu) == ((x >> 13) & 0x1ffu),
               "f32 %08x -> f16 %04x: NaN must stay a quiet NaN with sign and payload",
               x, got);
    } else {
        double want = ref_to_f16(f);
        double gv = (double)sresid__f16_to_f32(got);
        EXPECT(same_value(gv, want), "f32 %08x (%a) -> f16 %04x (%a), want %a", x,
               (double)f, got, gv, want);
    }
#ifdef __FLT16_MAX__
    uint16_t cc = cc_f32_to_f16(f);
    if (isnan(f))
        EXPECT((cc & 0x7fff) > 0x7c00 && (cc >> 15) == (got >> 15),
               "f32 %08x: got %04x, _Float16 gives %04x", x, got, cc);
    else
        EXPECT(got == cc, "f32 %08x (%a): got %04x, _Float16 gives %04x", x, (double)f,
               got, cc);
#endif
}

static void check_bf16_one(uint32_t x)
{
    float f = bitsf(x);
    uint16_t got = sresid__f32_to_bf16(f);
    if (isnan(f)) {
        EXPECT((got & 0x7f80) == 0x7f80 && (got & 0x40) && (got >> 15) == (x >> 31) &&
                   (got & 0x3fu) == ((x >> 16) & 0x3fu),
               "f32 %08x -> bf16 %04x: NaN must stay a quiet NaN with sign and payload",
               x, got);
    } else {
        double want = ref_to_bf16(f);
        double gv = (double)bitsf((uint32_t)got << 16);
        EXPECT(same_value(gv, want), "f32 %08x (%a) -> bf16 %04x (%a), want %a", x,
               (double)f, got, gv, want);
    }
}

START_TEST(f32_to_narrow_random)
{
    uint64_t rng = 0x5eed0001u;
    long n = tu_quick() ? 50000 : 500000;
    for (long i = 0; i < n; i++) {
        uint64_t r = tu_rand_u64(&rng);
        uint32_t x = (uint32_t)r;
        /* exponent forced into F16's range (and a little around it) */
        uint32_t e = 100u + (uint32_t)((r >> 32) % 46u);
        uint32_t y = (x & 0x807fffffu) | (e << 23);
        check_f16_one(x);
        check_f16_one(y);
        check_f16_one((y & ~0x1fffu) | 0x1000u); /* exact F16 ties */
        check_bf16_one(x);
        check_bf16_one((x & ~0xffffu) | 0x8000u); /* exact BF16 ties */
    }
}
END_TEST

START_TEST(f32_to_f16_cases)
{
    static const struct {
        float f;
        uint16_t want;
    } cases[] = {
        {1.0f, 0x3c00},
        {1.0f + 0x1p-11f, 0x3c00},          /* tie, even is down */
        {1.0f + 0x1p-11f + 0x1p-23f, 0x3c01}, /* just above the tie */
        {1.0f + 3 * 0x1p-11f, 0x3c02},      /* tie, even is up */
        {-1.0f - 3 * 0x1p-11f, 0xbc02},
        {65504.0f, 0x7bff},
        {65519.99f, 0x7bff},
        {65520.0f, 0x7c00}, /* tie between 65504 (odd) and 2^16: Inf */
        {-65520.0f, 0xfc00},
        {FLT_MAX, 0x7c00},
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {0x1p-24f, 0x0001},                /* smallest subnormal */
        {0x1p-25f, 0x0000},                /* half of it: tie to even zero */
        {0x1p-25f + 0x1p-40f, 0x0001},     /* just above */
        {-0x1p-25f, 0x8000},
        {3 * 0x1p-25f, 0x0002},            /* tie between 1 and 2 ulps */
        {5 * 0x1p-25f, 0x0002},            /* tie between 2 and 3 ulps */
        {0x1p-14f - 0x1p-25f, 0x0400},     /* tie at the subnormal/normal edge */
        {0x1p-14f, 0x0400},
        {0x1p-26f, 0x0000},
        {1e-30f, 0x0000},
        {0x1p-149f, 0x0000},               /* float32 subnormal */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = sresid__f32_to_f16(cases[i].f);
        EXPECT(got == cases[i].want, "case %zu (%a): got %04x want %04x", i,
               (double)cases[i].f, got, cases[i].want);
        check_f16_one(fbits(cases[i].f));
    }
    /* NaN: never Inf even when the payload is only in the low bits */
    ck_assert_uint_eq(sresid__f32_to_f16(bitsf(0x7f800001u)), 0x7e00);
    ck_assert_uint_eq(sresid__f32_to_f16(bitsf(0xff800001u)), 0xfe00);
    ck_assert_uint_eq(sresid__f32_to_f16(bitsf(0x7fc00000u)), 0x7e00);
    ck_assert_uint_eq(sresid__f32_to_f16(bitsf(0xffe02000u)), 0xff01);
    /* NaN F16 -> F32 -> F16 keeps a quiet payload exactly */
    ck_assert_uint_eq(sresid__f32_to_f16(sresid__f16_to_f32(0x7e55)), 0x7e55);
}
END_TEST

START_TEST(f32_to_bf16_cases)
{
    static const struct {
        uint32_t x;
        uint16_t want;
    } cases[] = {
        {0x3f800000u, 0x3f80},
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: tie, even is down */
        {0x3f808001u, 0x3f81},
        {0x3f818000u, 0x3f82}, /* 1 + 3*2^-8: tie, even is up */
        {0xbf818000u, 0xbf82},
        {0x7f7f7fffu, 0x7f7f},
        {0x7f7f8000u, 0x7f80}, /* tie above the largest BF16 (odd): Inf */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX */
        {0xff7fffffu, 0xff80},
        {0x7f800000u, 0x7f80},
        {0xff800000u, 0xff80},
        {0x00000000u, 0x0000},
        {0x80000000u, 0x8000},
        {0x00000001u, 0x0000}, /* float32 subnormals round on the BF16 grid */
        {0x00008000u, 0x0000}, /* tie to even zero */
        {0x00018000u, 0x0002}, /* tie between 1 and 2 */
        {0x00010000u, 0x0001},
        {0x007fffffu, 0x0080}, /* rounds up to the smallest normal */
        {0x7f800001u, 0x7fc0}, /* NaN with low payload: must not become Inf */
        {0xff800001u, 0xffc0},
        {0x7fc00000u, 0x7fc0},
        {0x7fa50000u, 0x7fe5}, /* signalling NaN: quieted, payload kept */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = sresid__f32_to_bf16(bitsf(cases[i].x));
        EXPECT(got == cases[i].want, "case %zu (%08x): got %04x want %04x", i,
               cases[i].x, got, cases[i].want);
        check_bf16_one(cases[i].x);
    }
}
END_TEST

/* ---- bulk conversion ---- */

/* Copy n elements of size sz to a buffer at offset 1 (never aligned). */
static unsigned char *unaligned_copy(const void *src, size_t sz, size_t n)
{
    unsigned char *buf = malloc(n * sz + 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf + 1, src, n * sz);
    return buf;
}

START_TEST(to_f32_f16_bf16_unaligned)
{
    uint16_t *pat = malloc(65536 * sizeof *pat);
    float *out = malloc(65536 * sizeof *out);
    ck_assert(pat && out);
    for (uint32_t i = 0; i < 65536; i++)
        pat[i] = (uint16_t)i;
    unsigned char *buf = unaligned_copy(pat, 2, 65536);

    sresid__to_f32(SRESID_DTYPE_F16, buf + 1, out, 65536);
    for (uint32_t i = 0; i < 65536; i++)
        EXPECT(fbits(out[i]) == fbits(sresid__f16_to_f32((uint16_t)i)), "f16 %04x", i);
    sresid__to_f32(SRESID_DTYPE_BF16, buf + 1, out, 65536);
    for (uint32_t i = 0; i < 65536; i++)
        EXPECT(fbits(out[i]) == fbits(sresid__bf16_to_f32((uint16_t)i)), "bf16 %04x", i);
    /* odd lengths (vector loop tails) and n == 0 leave the rest alone */
    for (size_t n = 0; n < 20; n++) {
        for (size_t k = 0; k < 21; k++)
            out[k] = -7.0f;
        sresid__to_f32(SRESID_DTYPE_F16, buf + 1 + 2 * 0x3c00, out, n);
        for (size_t k = 0; k < n; k++)
            ck_assert_float_eq(out[k], sresid__f16_to_f32((uint16_t)(0x3c00 + k)));
        ck_assert_float_eq(out[n], -7.0f);
    }
    free(buf);
    free(pat);
    free(out);
}
END_TEST

START_TEST(to_f32_f8_unaligned)
{
    unsigned char codes[300];
    float out[300];
    for (size_t i = 0; i < 300; i++)
        codes[i] = (unsigned char)(i * 7 + 3);
    unsigned char *buf = unaligned_copy(codes, 1, 300);
    /* both the long (table) path and the short path */
    const size_t lens[] = {300, 10};
    for (size_t l = 0; l < 2; l++) {
        size_t n = lens[l];
        sresid__to_f32(SRESID_DTYPE_F8_E5M2, buf + 1, out, n);
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(fbits(out[i]), fbits(sresid__e5m2_to_f32(codes[i])));
        sresid__to_f32(SRESID_DTYPE_F8_E4M3, buf + 1, out, n);
        for (size_t i = 0; i < n; i++) {
            float want = sresid__e4m3_to_f32(codes[i]);
            EXPECT(fbits(out[i]) == fbits(want), "e4m3 %02x", codes[i]);
        }
    }
    free(buf);
}
END_TEST

START_TEST(to_f32_f32_unaligned)
{
    const uint32_t vals[] = {0x3f800000u, 0x80000000u, 0x00000001u, 0x7f800000u,
                             0xff800000u, 0x7fc00001u, 0x7f800001u, 0xc2f6e979u,
                             0x7f7fffffu};
    const size_t n = sizeof vals / sizeof vals[0];
    float out[sizeof vals / sizeof vals[0]];
    unsigned char *buf = unaligned_copy(vals, 4, n);
    sresid__to_f32(SRESID_DTYPE_F32, buf + 1, out, n);
    for (size_t i = 0; i < n; i++) /* a plain copy: NaN payloads untouched */
        ck_assert_uint_eq(fbits(out[i]), vals[i]);
    sresid__to_f32(SRESID_DTYPE_F32, NULL, NULL, 0); /* n == 0 touches nothing */
    free(buf);
}
END_TEST

START_TEST(to_f32_f64_unaligned)
{
    static const struct {
        uint64_t d;    /* double bits */
        uint32_t want; /* float bits */
    } cases[] = {
        {0x3ff0000000000000ull, 0x3f800000u}, /* 1 */
        {0xc004000000000000ull, 0xc0200000u}, /* -2.5 */
        {0x8000000000000000ull, 0x80000000u}, /* -0 */
        {0x36a0000000000000ull, 0x00000001u}, /* 2^-149: smallest f32 subnormal */
        {0x3690000000000000ull, 0x00000000u}, /* 2^-150: tie, to even zero */
        {0x3690000000000001ull, 0x00000001u}, /* just above the tie */
        {0x36a8000000000000ull, 0x00000002u}, /* 3 * 2^-150: tie, even is 2 */
        {0x380fffffc0000000ull, 0x007fffffu}, /* largest f32 subnormal */
        {0xb80fffffe0000000ull, 0x80800000u}, /* tie to the smallest normal */
        {0x3ff0000010000000ull, 0x3f800000u}, /* 1 + 2^-24: tie, down */
        {0x3ff0000030000000ull, 0x3f800002u}, /* 1 + 3 * 2^-24: tie, up */
        {0x47efffffe0000000ull, 0x7f7fffffu}, /* FLT_MAX */
        {0x47efffffefffffffull, 0x7f7fffffu}, /* just below FLT_MAX + half ulp */
        {0x47effffff0000000ull, 0x7f800000u}, /* FLT_MAX + half ulp: Inf */
        {0x4800000000000000ull, 0x7f800000u}, /* 2^129, above FLT_MAX */
        {0xfe3c000000000000ull, 0xff800000u}, /* about -6.7e299 */
        {0x7fefffffffffffffull, 0x7f800000u}, /* DBL_MAX */
        {0x7ff0000000000000ull, 0x7f800000u}, /* +Inf */
        {0xfff0000000000000ull, 0xff800000u}, /* -Inf */
        {0x0000000000000001ull, 0x00000000u}, /* double subnormal */
    };
    const size_t n = sizeof cases / sizeof cases[0];
    double vals[sizeof cases / sizeof cases[0] + 2];
    float out[sizeof cases / sizeof cases[0] + 2];
    for (size_t i = 0; i < n; i++)
        vals[i] = bitsd(cases[i].d);
    vals[n] = bitsd(0x7ff8000000000000ull);     /* NaN */
    vals[n + 1] = bitsd(0xfff8000000000123ull); /* negative NaN */
    ck_assert_uint_eq(dbits(vals[n + 1]), 0xfff8000000000123ull);
    unsigned char *buf = unaligned_copy(vals, 8, n + 2);
    sresid__to_f32(SRESID_DTYPE_F64, buf + 1, out, n + 2);
    for (size_t i = 0; i < n; i++)
        EXPECT(fbits(out[i]) == cases[i].want, "case %zu (%a): got %08x want %08x", i,
               bitsd(cases[i].d), fbits(out[i]), cases[i].want);
    ck_assert(isnan(out[n]) && !signbit(out[n]));
    ck_assert(isnan(out[n + 1]) && signbit(out[n + 1]));
    free(buf);
}
END_TEST

/* ---- public functions ---- */

START_TEST(dtype_names_sizes)
{
    static const struct {
        sresid_dtype d;
        const char *name;
        size_t size;
        int32_t is_float;
    } all[] = {
        {SRESID_DTYPE_BOOL, "BOOL", 1, 0},       {SRESID_DTYPE_U8, "U8", 1, 0},
        {SRESID_DTYPE_I8, "I8", 1, 0},           {SRESID_DTYPE_F8_E5M2, "F8_E5M2", 1, 1},
        {SRESID_DTYPE_F8_E4M3, "F8_E4M3", 1, 1}, {SRESID_DTYPE_I16, "I16", 2, 0},
        {SRESID_DTYPE_U16, "U16", 2, 0},         {SRESID_DTYPE_F16, "F16", 2, 1},
        {SRESID_DTYPE_BF16, "BF16", 2, 1},       {SRESID_DTYPE_I32, "I32", 4, 0},
        {SRESID_DTYPE_U32, "U32", 4, 0},         {SRESID_DTYPE_F32, "F32", 4, 1},
        {SRESID_DTYPE_F64, "F64", 8, 1},         {SRESID_DTYPE_I64, "I64", 8, 0},
        {SRESID_DTYPE_U64, "U64", 8, 0},
    };
    ck_assert_uint_eq(sizeof all / sizeof all[0], 15);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        ck_assert_str_eq(sresid_dtype_name(all[i].d), all[i].name);
        ck_assert_uint_eq(sresid_dtype_size(all[i].d), all[i].size);
        ck_assert_int_eq(sresid_dtype_is_float(all[i].d), all[i].is_float);
        sresid_dtype d = 0;
        ck_assert_ok(sresid_dtype_from_name(all[i].name, &d));
        ck_assert_int_eq(d, all[i].d);
    }
    const sresid_dtype bad[] = {0, -1, 16, 1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(sresid_dtype_name(bad[i]));
        ck_assert_uint_eq(sresid_dtype_size(bad[i]), 0);
        ck_assert_int_eq(sresid_dtype_is_float(bad[i]), 0);
    }
}
END_TEST

START_TEST(dtype_from_name_errors)
{
    const char *bad[] = {"F32 ", "f32", "", "F8_E4M3FN", "BFLOAT16", " F32", "F3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sresid_dtype d = 99;
        ck_assert_status(sresid_dtype_from_name(bad[i], &d), SRESID_ERR_DTYPE);
        ck_assert_int_eq(d, 99); /* untouched on failure */
        ck_assert_str_ne(sresid_last_error(), "");
        if (bad[i][0]) /* the message quotes the name */
            ck_assert_ptr_nonnull(strstr(sresid_last_error(), bad[i]));
    }
    /* a long hostile name is quoted, but bounded */
    char longname[5000];
    memset(longname, 'X', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    sresid_dtype d = 99;
    ck_assert_status(sresid_dtype_from_name(longname, &d), SRESID_ERR_DTYPE);
    ck_assert_uint_lt(strlen(sresid_last_error()), 200);

    ck_assert_status(sresid_dtype_from_name(NULL, &d), SRESID_ERR_INVALID_ARG);
    ck_assert_str_ne(sresid_last_error(), "");
    ck_assert_status(sresid_dtype_from_name("F32", NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_str_ne(sresid_last_error(), "");
    ck_assert_int_eq(d, 99);
}
END_TEST

START_TEST(kind_names)
{
    ck_assert_str_eq(sresid_kind_name(SRESID_KIND_OTHER), "other");
    ck_assert_str_eq(sresid_kind_name(SRESID_KIND_ATTENTION), "attention");
    ck_assert_str_eq(sresid_kind_name(SRESID_KIND_MLP), "mlp");
    ck_assert_str_eq(sresid_kind_name(SRESID_KIND_EMBEDDING), "embedding");
    ck_assert_str_eq(sresid_kind_name(SRESID_KIND_NORM), "norm");
    ck_assert_ptr_null(sresid_kind_name(-1));
    ck_assert_ptr_null(sresid_kind_name(SRESID_KIND_COUNT));
    ck_assert_ptr_null(sresid_kind_name(INT32_MIN));
}
END_TEST

Suite *suite_dtype(void)
{
    Suite *s = suite_create("dtype");

    TCase *tc = tcase_create("to_f32");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, f16_all_patterns);
    tcase_add_test(tc, bf16_all_patterns);
    tcase_add_test(tc, e5m2_all_patterns);
    tcase_add_test(tc, f8_from_f32);
    tcase_add_test(tc, e4m3_all_patterns);
    suite_add_tcase(s, tc);

    tc = tcase_create("from_f32");
    tcase_set_timeout(tc, 300); /* exhaustive and random sweeps; slow under valgrind */
    tcase_add_test(tc, f16_bf16_round_trip);
    tcase_add_test(tc, f32_to_narrow_random);
    tcase_add_test(tc, f32_to_f16_cases);
    tcase_add_test(tc, f32_to_bf16_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("bulk");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, to_f32_f16_bf16_unaligned);
    tcase_add_test(tc, to_f32_f8_unaligned);
    tcase_add_test(tc, to_f32_f32_unaligned);
    tcase_add_test(tc, to_f32_f64_unaligned);
    suite_add_tcase(s, tc);

    tc = tcase_create("public");
    tcase_add_test(tc, dtype_names_sizes);
    tcase_add_test(tc, dtype_from_name_errors);
    tcase_add_test(tc, kind_names);
    suite_add_tcase(s, tc);

    return s;
}
