/* Check suite of the mask module and of the top-k selection under it.
 * References are written here independently: a qsort of (|x|, index) pairs
 * for the selection, bytewise loops for the set operations, a splitmix64 /
 * xoshiro256** transcription of the documented recipe for random masks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amp/amp.h"
#include "util/topk.h"
#include "testutil.h"

/* ---- reference selection ------------------------------------------------ */

typedef struct pair {
    float a;
    uint64_t i;
} pair;

static int cmp_pair(const void *pa, const void *pb)
{
    const pair *a = pa, *b = pb;
    if (a->a != b->a)
        return a->a > b->a ? -1 : 1; /* |x| descending */
    return a->i < b->i ? -1 : a->i > b->i; /* then index ascending */
}

/* Sorted (|x|, index) pairs of x. */
static pair *sorted_pairs(const float *x, uint64_t n)
{
    pair *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (uint64_t i = 0; i < n; i++)
        p[i] = (pair){fabsf(x[i]), i};
    qsort(p, n, sizeof *p, cmp_pair);
    return p;
}

/* Flags of the first k sorted entries. */
static uint8_t *ref_top(const float *x, uint64_t n, uint64_t k)
{
    pair *p = sorted_pairs(x, n);
    uint8_t *f = calloc(n ? n : 1, 1);
    ck_assert_ptr_nonnull(f);
    for (uint64_t j = 0; j < k && j < n; j++)
        f[p[j].i] = 1;
    free(p);
    return f;
}

/* Smallest k whose k largest squares (summed largest first, in double)
 * reach share * total; zeros are never needed; share 1: all non-zeros. */
static uint64_t ref_energy_k(const float *x, uint64_t n, double share)
{
    pair *p = sorted_pairs(x, n);
    double total = 0;
    uint64_t nonzero = 0;
    for (uint64_t j = 0; j < n; j++) {
        total += (double)p[j].a * p[j].a;
        nonzero += p[j].a != 0;
    }
    double target = share * total;
    uint64_t k = 0;
    if (share >= 1)
        k = nonzero;
    else if (target > 0) {
        double acc = 0;
        k = nonzero;
        for (uint64_t j = 0; j < nonzero; j++) {
            acc += (double)p[j].a * p[j].a;
            if (acc >= target) {
                k = j + 1;
                break;
            }
        }
    }
    free(p);
    return k;
}

/* Run a selection over x fed in chunks (chunk 0: random sizes), then the
 * collection pass; flags get the kept entries. Returns the settled state
 * (buffers freed). */
static sresid__sel run_sel(const float *x, uint64_t n, int energy, uint64_t k, double share,
                           size_t chunk, uint8_t *flags, int *passes)
{
    sresid__sel s;
    if (energy)
        ck_assert_ok(sresid__sel_init_energy(&s, share));
    else
        ck_assert_ok(sresid__sel_init(&s, k));
    uint64_t rs = 77 + chunk;
    *passes = 0;
    while (s.pass < 2) {
        ck_assert_int_lt(*passes, 2);
        for (uint64_t i = 0; i < n;) {
            size_t c = chunk ? chunk : 1 + tu_rand_u64(&rs) % 1000;
            if (c > n - i)
                c = (size_t)(n - i);
            sresid__sel_feed(&s, x + i, c);
            i += c;
        }
        sresid__sel_next(&s);
        (*passes)++;
    }
    sresid__sel_cursor cur = {s.threshold, s.take_equal};
    for (uint64_t i = 0; i < n; i++)
        flags[i] = sresid__sel_keep(&cur, x[i]);
    ck_assert_uint_eq(cur.equal_left, 0);
    sresid__sel_free(&s);
    return s;
}

/* Check one query against the reference, for several chunkings. */
static void check_query(const float *x, uint64_t n, int energy, uint64_t k, double share)
{
    uint64_t want_k = energy ? ref_energy_k(x, n, share) : (k < n ? k : n);
    uint8_t *want = ref_top(x, n, want_k);
    pair *p = sorted_pairs(x, n);
    uint8_t *got = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(got);
    static const size_t chunks[] = {0, 1, 7, 4096, SIZE_MAX / 2};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        int passes;
        sresid__sel s = run_sel(x, n, energy, k, share, chunks[c], got, &passes);
        ck_assert_msg(s.k == want_k, "n %llu energy %d k %llu share %g chunk %zu: k %llu, want %llu",
                      (unsigned long long)n, energy, (unsigned long long)k, share, chunks[c],
                      (unsigned long long)s.k, (unsigned long long)want_k);
        ck_assert_uint_eq(s.total, n);
        uint64_t kept = 0, eq = 0, bad = UINT64_MAX;
        for (uint64_t i = 0; i < n; i++) {
            if (got[i] != want[i] && bad == UINT64_MAX)
                bad = i;
            kept += got[i];
            eq += got[i] && fabsf(x[i]) == s.threshold;
        }
        ck_assert_msg(bad == UINT64_MAX, "n %llu k %llu share %g chunk %zu: entry %llu %s",
                      (unsigned long long)n, (unsigned long long)want_k, share, chunks[c],
                      (unsigned long long)bad, got[bad] ? "kept, not wanted" : "wanted, not kept");
        ck_assert_uint_eq(kept, want_k);
        if (want_k == 0) {
            ck_assert(isinf(s.threshold) && s.take_equal == 0);
            ck_assert_int_eq(passes, 1); /* settled by pass 0 alone */
        } else {
            /* the threshold is |x| of the k-th entry in the reference order */
            ck_assert(s.threshold == p[want_k - 1].a);
            ck_assert_uint_eq(s.take_equal, eq);
            ck_assert_uint_eq(s.above, want_k - eq);
        }
    }
    free(p);
    free(got);
    free(want);
}

/* Data with many ties and zeros: kind 0 multiples of 1/4 up to 16 (ties in
 * the high buckets); kind 1 values (4096 + j) / 4096 * 2^e, several per
 * bucket (pass 1 at work; squares and their sums exact in double); kind 2
 * Gaussian with some -0, +0 and subnormals. */
static float *tie_data(uint64_t n, int kind, uint64_t seed)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = tu_rand_u64(&seed);
        float sign = (r & 1) ? -1.0f : 1.0f;
        switch (kind) {
        case 0:
            x[i] = (r >> 1) % 5 == 0 ? 0.0f * sign : sign * (float)((r >> 8) % 65) / 4.0f;
            break;
        case 1:
            x[i] = (r >> 1) % 7 == 0
                       ? 0.0f * sign
                       : sign * ldexpf((float)(4096 + (r >> 8) % 300) / 4096.0f,
                                       (int)((r >> 20) % 5) - 2);
            break;
        default: {
            uint64_t m = (r >> 1) % 50;
            x[i] = m == 0   ? 0.0f * sign
                   : m == 1 ? sign * 1e-40f * (float)(1 + (r >> 8) % 4)
                            : (float)tu_rand_normal(&seed);
        }
        }
    }
    return x;
}

START_TEST(select_matches_sort_reference)
{
    const uint64_t sizes[] = {0, 1, 2, 17, 1000, tu_quick() ? 5000 : 60000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        uint64_t n = sizes[si];
        for (int kind = 0; kind < 3; kind++) {
            float *x = tie_data(n, kind, 1000 * si + kind);
            const uint64_t ks[] = {0, 1, n / 3, n / 2, n > 0 ? n - 1 : 0, n, n + 5};
            for (size_t j = 0; j < sizeof ks / sizeof *ks; j++)
                check_query(x, n, 0, ks[j], 0);
            const double shares[] = {0, 0.5, 0.9, 0.99, 1};
            for (size_t j = 0; j < sizeof shares / sizeof *shares; j++)
                check_query(x, n, 1, 0, shares[j]);
            free(x);
        }
    }
}
END_TEST

START_TEST(select_hand_cases)
{
    /* |x| = 3, 0, 3, 1, 2, 3 with -0 */
    const float x[] = {-3, -0.0f, 3, 1, 2, 3};
    uint8_t f[6];
    int passes;
    sresid__sel s = run_sel(x, 6, 0, 2, 0, 0, f, &passes);
    ck_assert(s.threshold == 3 && s.take_equal == 2 && s.above == 0);
    ck_assert(f[0] && !f[1] && f[2] && !f[3] && !f[4] && !f[5]);
    s = run_sel(x, 6, 0, 4, 0, 0, f, &passes);
    ck_assert(s.threshold == 2 && s.take_equal == 1 && s.above == 3);
    /* everything: the zero is kept last */
    s = run_sel(x, 6, 0, 6, 0, 0, f, &passes);
    ck_assert(s.threshold == 0 && s.take_equal == 1);
    for (int i = 0; i < 6; i++)
        ck_assert(f[i]);
    /* energy: total 9+9+1+4+9 = 32; half = 16 -> 9 + 9 = 18 >= 16: k 2 */
    s = run_sel(x, 6, 1, 0, 0.5, 0, f, &passes);
    ck_assert_uint_eq(s.k, 2);
    ck_assert(f[0] && f[2] && !f[5]);
    /* 27/32 exactly reached by the three 3s */
    s = run_sel(x, 6, 1, 0, 27.0 / 32, 0, f, &passes);
    ck_assert_uint_eq(s.k, 3);
    /* just above: one more (the 2) */
    s = run_sel(x, 6, 1, 0, 27.5 / 32, 0, f, &passes);
    ck_assert_uint_eq(s.k, 4);
    ck_assert(f[4] && !f[3]);
    /* share 1: every non-zero entry, not the zero */
    s = run_sel(x, 6, 1, 0, 1, 0, f, &passes);
    ck_assert_uint_eq(s.k, 5);
    ck_assert(!f[1]);
    /* all zeros: an energy query needs nothing, a count query takes zeros */
    const float z[] = {0, -0.0f, 0};
    s = run_sel(z, 3, 1, 0, 1, 0, f, &passes);
    ck_assert_uint_eq(s.k, 0);
    ck_assert(!f[0] && !f[1] && !f[2]);
    s = run_sel(z, 3, 0, 2, 0, 0, f, &passes);
    ck_assert(f[0] && f[1] && !f[2]);
    /* k == 0 keeps nothing, zeros included */
    s = run_sel(z, 3, 0, 0, 0, 0, f, &passes);
    ck_assert(!f[0] && !f[1] && !f[2] && passes == 1);
}
END_TEST

/* ---- masks: helpers ------------------------------------------------------ */

static uint8_t *mask_bytes(const sresid_mask *m)
{
    uint64_t n = sresid_mask_size(m);
    uint8_t *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_ok(sresid_mask_to_bytes(m, b, n));
    return b;
}

static sresid_mask *mask_of(const uint8_t *b, uint64_t n)
{
    sresid_mask *m = NULL;
    ck_assert_ok(sresid_mask_from_bytes(b, n, &m));
    return m;
}

/* k = floor(f * n + 0.5) as the header defines it */
static uint64_t want_count(double f, uint64_t n)
{
    return (uint64_t)floor(f * (double)n + 0.5);
}

/* Random segment offsets over n: nseg segments, some empty. */
static uint64_t *rand_offsets(uint64_t n, size_t nseg, uint64_t *rs)
{
    uint64_t *o = malloc((nseg + 1) * sizeof *o);
    ck_assert_ptr_nonnull(o);
    o[0] = 0;
    o[nseg] = n;
    for (size_t j = 1; j < nseg; j++)
        o[j] = n ? tu_rand_u64(rs) % (n + 1) : 0;
    /* sort the inner cut points */
    for (size_t a = 1; a < nseg; a++)
        for (size_t b = a + 1; b < nseg; b++)
            if (o[b] < o[a]) {
                uint64_t t = o[a];
                o[a] = o[b];
                o[b] = t;
            }
    return o;
}

/* ---- basics -------------------------------------------------------------- */

START_TEST(mask_basics)
{
    sresid_mask *m = NULL, *c = NULL;
    ck_assert_ok(sresid_mask_create(130, 0, &m));
    ck_assert_uint_eq(sresid_mask_size(m), 130);
    ck_assert_uint_eq(sresid_mask_count(m), 0);
    int32_t v = 7;
    ck_assert_ok(sresid_mask_set(m, 0, 1));
    ck_assert_ok(sresid_mask_set(m, 64, 1));
    ck_assert_ok(sresid_mask_set(m, 129, 1));
    ck_assert_ok(sresid_mask_set(m, 129, 1));
    ck_assert_ok(sresid_mask_get(m, 64, &v));
    ck_assert_int_eq(v, 1);
    ck_assert_ok(sresid_mask_get(m, 63, &v));
    ck_assert_int_eq(v, 0);
    ck_assert_uint_eq(sresid_mask_count(m), 3);
    uint64_t cnt = 99;
    ck_assert_ok(sresid_mask_count_range(m, 1, 64, &cnt)); /* [1, 65) holds 64 */
    ck_assert_uint_eq(cnt, 1);
    ck_assert_ok(sresid_mask_count_range(m, 0, 130, &cnt));
    ck_assert_uint_eq(cnt, 3);
    ck_assert_ok(sresid_mask_count_range(m, 130, 0, &cnt));
    ck_assert_uint_eq(cnt, 0);
    ck_assert_ok(sresid_mask_copy(m, &c));
    ck_assert_ok(sresid_mask_set(m, 64, 0));
    ck_assert_uint_eq(sresid_mask_count(m), 2);
    ck_assert_uint_eq(sresid_mask_count(c), 3); /* the copy is independent */
    /* not: 127 set, bits past n stay clear (count would show them) */
    ck_assert_ok(sresid_mask_not(c));
    ck_assert_uint_eq(sresid_mask_count(c), 127);
    ck_assert_ok(sresid_mask_get(c, 0, &v));
    ck_assert_int_eq(v, 0);
    sresid_mask_free(c);
    c = NULL;
    ck_assert_ok(sresid_mask_create(70, 1, &c));
    ck_assert_uint_eq(sresid_mask_count(c), 70);
    ck_assert_ok(sresid_mask_not(c));
    ck_assert_uint_eq(sresid_mask_count(c), 0);
    sresid_mask_free(c);
    /* empty masks */
    ck_assert_ok(sresid_mask_create(0, 1, &c));
    ck_assert_uint_eq(sresid_mask_size(c), 0);
    ck_assert_uint_eq(sresid_mask_count(c), 0);
    ck_assert_ok(sresid_mask_not(c));
    ck_assert_uint_eq(sresid_mask_count(c), 0);
    double j = 0;
    ck_assert_ok(sresid_mask_jaccard(c, c, &j));
    ck_assert(j == 1.0);
    sresid_mask_free(c);
    sresid_mask_free(m);
    /* NULL: zero counts, free accepts it */
    ck_assert_uint_eq(sresid_mask_size(NULL), 0);
    ck_assert_uint_eq(sresid_mask_count(NULL), 0);
    sresid_mask_free(NULL);
}
END_TEST

START_TEST(mask_set_ops_match_bytewise)
{
    uint64_t rs = 5;
    const uint64_t sizes[] = {1, 63, 64, 65, 200, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        uint64_t n = sizes[si];
        uint8_t *a = malloc(n), *b = malloc(n);
        for (uint64_t i = 0; i < n; i++) {
            a[i] = tu_rand_u64(&rs) % 3 == 0 ? (uint8_t)(1 + i % 200) : 0; /* any non-zero */
            b[i] = tu_rand_u64(&rs) % 2;
        }
        for (int32_t op = SRESID_MASK_AND; op <= SRESID_MASK_XOR; op++) {
            sresid_mask *ma = mask_of(a, n), *mb = mask_of(b, n);
            ck_assert_ok(sresid_mask_combine(ma, mb, op));
            uint8_t *got = mask_bytes(ma);
            for (uint64_t i = 0; i < n; i++) {
                int x = a[i] != 0, y = b[i] != 0;
                int want = op == SRESID_MASK_AND ? x & y
                           : op == SRESID_MASK_OR ? x | y
                           : op == SRESID_MASK_ANDNOT ? x & !y
                                                       : x ^ y;
                if (got[i] != want)
                    ck_abort_msg("n %llu op %d entry %llu: %d, want %d", (unsigned long long)n,
                                 op, (unsigned long long)i, got[i], want);
            }
            free(got);
            /* dst may be src */
            ck_assert_ok(sresid_mask_combine(mb, mb, op));
            uint64_t want_self = 0;
            for (uint64_t i = 0; i < n; i++)
                want_self += (op == SRESID_MASK_AND || op == SRESID_MASK_OR) ? b[i] : 0;
            ck_assert_uint_eq(sresid_mask_count(mb), want_self);
            sresid_mask_free(ma);
            sresid_mask_free(mb);
        }
        /* Jaccard by counting */
        sresid_mask *ma = mask_of(a, n), *mb = mask_of(b, n);
        uint64_t both = 0, any = 0;
        for (uint64_t i = 0; i < n; i++) {
            both += a[i] && b[i];
            any += a[i] || b[i];
        }
        double j = -1;
        ck_assert_ok(sresid_mask_jaccard(ma, mb, &j));
        ck_assert(j == (any ? (double)both / (double)any : 1.0));
        /* apply */
        float *x = malloc(n * sizeof *x);
        for (uint64_t i = 0; i < n; i++)
            x[i] = (float)i + 0.5f;
        ck_assert_ok(sresid_mask_apply(ma, x, n));
        for (uint64_t i = 0; i < n; i++)
            ck_assert(x[i] == (a[i] ? (float)i + 0.5f : 0.0f));
        /* to_bytes into a larger buffer leaves the tail alone */
        uint8_t *buf = malloc(n + 3);
        memset(buf, 0xAB, n + 3);
        ck_assert_ok(sresid_mask_to_bytes(mb, buf, n + 3));
        for (uint64_t i = 0; i < n; i++)
            ck_assert_uint_eq(buf[i], b[i]);
        ck_assert(buf[n] == 0xAB && buf[n + 2] == 0xAB);
        free(buf);
        free(x);
        sresid_mask_free(ma);
        sresid_mask_free(mb);
        free(a);
        free(b);
    }
    /* hand Jaccard: {0,1,2} vs {1,2,3}: 2 / 4 */
    const uint8_t p[] = {1, 1, 1, 0}, q[] = {0, 1, 1, 1};
    sresid_mask *mp = mask_of(p, 4), *mq = mask_of(q, 4);
    double j = 0;
    ck_assert_ok(sresid_mask_jaccard(mp, mq, &j));
    ck_assert(j == 0.5);
    sresid_mask_free(mp);
    sresid_mask_free(mq);
}
END_TEST

START_TEST(mask_argument_errors)
{
    sresid_mask *m = NULL, *o = NULL, *out = NULL;
    ck_assert_status(sresid_mask_create(5, 2, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_create(5, 0, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
    ck_assert_ok(sresid_mask_create(10, 0, &m));
    ck_assert_ok(sresid_mask_create(11, 0, &o));
    int32_t v = 42;
    ck_assert_status(sresid_mask_get(m, 10, &v), SRESID_ERR_INVALID_ARG);
    ck_assert_int_eq(v, 42);
    ck_assert_status(sresid_mask_get(NULL, 0, &v), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_get(m, 0, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_set(m, 10, 1), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_set(m, 0, -1), SRESID_ERR_INVALID_ARG);
    uint64_t c = 7;
    ck_assert_status(sresid_mask_count_range(m, 5, 6, &c), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_count_range(m, 11, 0, &c), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_count_range(m, 1, UINT64_MAX, &c), SRESID_ERR_INVALID_ARG);
    ck_assert_uint_eq(c, 7);
    ck_assert_status(sresid_mask_combine(m, o, SRESID_MASK_OR), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_mask_combine(m, m, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_combine(m, m, 5), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_combine(NULL, m, 1), SRESID_ERR_INVALID_ARG);
    double j = 3;
    ck_assert_status(sresid_mask_jaccard(m, o, &j), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_mask_jaccard(m, m, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert(j == 3);
    ck_assert_status(sresid_mask_not(NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_copy(NULL, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_from_bytes(NULL, 3, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(out);
    uint8_t buf[16];
    ck_assert_status(sresid_mask_to_bytes(m, buf, 9), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_mask_to_bytes(m, NULL, 10), SRESID_ERR_INVALID_ARG);
    float x[12] = {0};
    ck_assert_status(sresid_mask_apply(m, x, 12), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_mask_apply(m, NULL, 10), SRESID_ERR_INVALID_ARG);
    /* top and random: fractions, offsets, non-finite values */
    float y[4] = {1, 2, 3, 4};
    ck_assert_status(sresid_mask_top(y, 4, -0.1, NULL, 0, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(y, 4, 1.5, NULL, 0, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(y, 4, NAN, NULL, 0, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(NULL, 4, 0.5, NULL, 0, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(y, 4, 0.5, NULL, 0, NULL), SRESID_ERR_INVALID_ARG);
    const uint64_t bad1[] = {1, 4}, bad2[] = {0, 3, 2, 4}, bad3[] = {0, 2, 5};
    ck_assert_status(sresid_mask_top(y, 4, 0.5, bad1, 1, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(y, 4, 0.5, bad2, 3, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(y, 4, 0.5, bad3, 2, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_random(4, 0.5, 1, bad3, 2, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_random(4, 2, 1, NULL, 0, &out), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_random(4, 0.5, 1, NULL, 0, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_top(y, UINT64_MAX / 2, 0.5, NULL, 0, &out), SRESID_ERR_OVERFLOW);
    y[2] = NAN;
    ck_assert_status(sresid_mask_top(y, 4, 0.5, NULL, 0, &out), SRESID_ERR_NONFINITE);
    ck_assert_msg(strstr(sresid_last_error(), "x[2]"), "message: %s", sresid_last_error());
    y[2] = -INFINITY;
    ck_assert_status(sresid_mask_top(y, 4, 0.5, NULL, 0, &out), SRESID_ERR_NONFINITE);
    ck_assert_ptr_null(out);
    sresid_mask_free(m);
    sresid_mask_free(o);
}
END_TEST

/* ---- selection rules -------------------------------------------------- */

START_TEST(mask_counts_exact)
{
    /* hand cases of floor(f n + 0.5): halves round up */
    const struct {
        double f;
        uint64_t n, k;
    } hand[] = {{0.5, 3, 2}, {0.25, 2, 1}, {0.1, 5, 1}, {0.1, 4, 0}, {1.0 / 3, 3, 1},
                {0.05, 10, 1}, {0.049, 10, 0}, {0.999, 1000, 999}, {0, 7, 0}, {1, 7, 7},
                {0.3, 0, 0}};
    for (size_t i = 0; i < sizeof hand / sizeof *hand; i++) {
        ck_assert_uint_eq(sresid__fraction_count(hand[i].f, hand[i].n), hand[i].k);
        float *x = tie_data(hand[i].n, 0, i);
        sresid_mask *m = NULL;
        ck_assert_ok(sresid_mask_top(x, hand[i].n, hand[i].f, NULL, 0, &m));
        ck_assert_uint_eq(sresid_mask_count(m), hand[i].k);
        sresid_mask_free(m);
        ck_assert_ok(sresid_mask_random(hand[i].n, hand[i].f, 9, NULL, 0, &m));
        ck_assert_uint_eq(sresid_mask_count(m), hand[i].k);
        sresid_mask_free(m);
        free(x);
    }
    /* many fractions and sizes, per segment */
    uint64_t rs = 11;
    for (int trial = 0; trial < (tu_quick() ? 20 : 120); trial++) {
        uint64_t n = tu_rand_u64(&rs) % 3000;
        size_t nseg = 1 + tu_rand_u64(&rs) % 6;
        uint64_t *off = rand_offsets(n, nseg, &rs);
        double f = trial % 10 == 0 ? (double)(trial % 3) / 2 : tu_rand_uniform(&rs);
        float *x = tie_data(n, trial % 3, trial);
        sresid_mask *t = NULL, *r = NULL;
        ck_assert_ok(sresid_mask_top(x, n, f, off, nseg, &t));
        ck_assert_ok(sresid_mask_random(n, f, trial, off, nseg, &r));
        for (size_t j = 0; j < nseg; j++) {
            uint64_t len = off[j + 1] - off[j], ct = 0, cr = 0;
            ck_assert_ok(sresid_mask_count_range(t, off[j], len, &ct));
            ck_assert_ok(sresid_mask_count_range(r, off[j], len, &cr));
            ck_assert_uint_eq(ct, want_count(f, len));
            ck_assert_uint_eq(cr, want_count(f, len));
        }
        sresid_mask_free(t);
        sresid_mask_free(r);
        free(x);
        free(off);
    }
}
END_TEST

START_TEST(mask_top_matches_sort_reference)
{
    uint64_t rs = 21;
    for (int trial = 0; trial < (tu_quick() ? 12 : 60); trial++) {
        uint64_t n = trial < 3 ? (uint64_t)trial : tu_rand_u64(&rs) % 20000;
        size_t nseg = trial % 2 ? 1 + tu_rand_u64(&rs) % 5 : 0;
        uint64_t *off = nseg ? rand_offsets(n, nseg, &rs) : NULL;
        const double fs[] = {0, 0.01, 0.1, 0.25, 0.5, 0.9, 1};
        double f = fs[trial % 7];
        float *x = tie_data(n, trial % 3, 100 + trial);
        sresid_mask *m = NULL;
        ck_assert_ok(sresid_mask_top(x, n, f, off, nseg, &m));
        uint8_t *got = mask_bytes(m);
        size_t ns = nseg ? nseg : 1;
        for (size_t j = 0; j < ns; j++) {
            uint64_t a = nseg ? off[j] : 0, b = nseg ? off[j + 1] : n;
            uint8_t *want = ref_top(x + a, b - a, want_count(f, b - a));
            for (uint64_t i = a; i < b; i++)
                if (got[i] != want[i - a])
                    ck_abort_msg("trial %d segment %zu entry %llu: %d, want %d", trial, j,
                                 (unsigned long long)i, got[i], want[i - a]);
            free(want);
        }
        free(got);
        sresid_mask_free(m);
        free(x);
        free(off);
    }
    /* hand case: ties go to the lower index, -0 == +0 */
    const float x[] = {1, -2, 2, 0, -0.0f, 2, 0};
    sresid_mask *m = NULL;
    ck_assert_ok(sresid_mask_top(x, 7, 2.0 / 7, NULL, 0, &m)); /* k = 2 */
    uint8_t *b = mask_bytes(m);
    ck_assert(!b[0] && b[1] && b[2] && !b[5]);
    free(b);
    sresid_mask_free(m);
    ck_assert_ok(sresid_mask_top(x, 7, 5.0 / 7, NULL, 0, &m)); /* k = 5: 2, 2, 2, 1, first zero */
    b = mask_bytes(m);
    ck_assert(b[0] && b[1] && b[2] && b[3] && !b[4] && b[5] && !b[6]);
    free(b);
    sresid_mask_free(m);
}
END_TEST

/* The documented random recipe, transcribed: splitmix64 seeding of
 * xoshiro256**, Lemire's bounded integers, selection sampling. */
typedef struct ref_rng {
    uint64_t s[4];
} ref_rng;

static uint64_t ref_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t ref_next(ref_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static uint64_t ref_below(ref_rng *r, uint64_t n)
{
    for (;;) {
        unsigned __int128 m = (unsigned __int128)ref_next(r) * n;
        if ((uint64_t)m >= (0 - n) % n)
            return (uint64_t)(m >> 64);
    }
}

static void ref_random(uint64_t n, double f, uint64_t seed, const uint64_t *off, size_t nseg,
                       uint8_t *out)
{
    memset(out, 0, n);
    size_t ns = nseg ? nseg : 1;
    for (size_t j = 0; j < ns; j++) {
        uint64_t a = nseg ? off[j] : 0, b = nseg ? off[j + 1] : n;
        uint64_t x = j, sj;
        sj = ref_splitmix(&x); /* mix64(j) */
        x = seed ^ sj;
        uint64_t s = ref_splitmix(&x); /* mix64(seed ^ mix64(j)) */
        ref_rng r;
        uint64_t st = s; /* the state: splitmix64's first four outputs from s */
        for (int i = 0; i < 4; i++)
            r.s[i] = ref_splitmix(&st);
        uint64_t need = want_count(f, b - a), left = b - a;
        for (uint64_t i = a; i < b && need; i++, left--)
            if (ref_below(&r, left) < need) {
                out[i] = 1;
                need--;
            }
    }
}

START_TEST(mask_random_reproducible)
{
    uint64_t rs = 31;
    for (int trial = 0; trial < 30; trial++) {
        uint64_t n = tu_rand_u64(&rs) % 5000;
        size_t nseg = trial % 3 ? 1 + tu_rand_u64(&rs) % 5 : 0;
        uint64_t *off = nseg ? rand_offsets(n, nseg, &rs) : NULL;
        double f = tu_rand_uniform(&rs);
        uint64_t seed = tu_rand_u64(&rs);
        sresid_mask *a = NULL, *b = NULL;
        ck_assert_ok(sresid_mask_random(n, f, seed, off, nseg, &a));
        ck_assert_ok(sresid_mask_random(n, f, seed, off, nseg, &b));
        uint8_t *ga = mask_bytes(a), *gb = mask_bytes(b), *want = malloc(n ? n : 1);
        ck_assert(n == 0 || memcmp(ga, gb, n) == 0);
        ref_random(n, f, seed, off, nseg, want);
        ck_assert_msg(n == 0 || memcmp(ga, want, n) == 0, "trial %d differs from the recipe",
                      trial);
        free(ga);
        free(gb);
        free(want);
        sresid_mask_free(a);
        sresid_mask_free(b);
        free(off);
    }
    /* other seeds give other masks */
    sresid_mask *a = NULL, *b = NULL;
    ck_assert_ok(sresid_mask_random(1000, 0.5, 1, NULL, 0, &a));
    ck_assert_ok(sresid_mask_random(1000, 0.5, 2, NULL, 0, &b));
    double j = 1;
    ck_assert_ok(sresid_mask_jaccard(a, b, &j));
    ck_assert(j < 0.6);
    sresid_mask_free(a);
    sresid_mask_free(b);
}
END_TEST

START_TEST(mask_random_uniform)
{
    /* every position of 20 picked with probability 5/20 over many seeds, and
     * every pair (i, i+1) with probability (5/20)(4/19) */
    enum { N = 20, K = 5 };
    const int seeds = tu_quick() ? 2000 : 8000;
    uint64_t hits[N] = {0}, pairs[N - 1] = {0};
    for (int s = 0; s < seeds; s++) {
        sresid_mask *m = NULL;
        ck_assert_ok(sresid_mask_random(N, (double)K / N, (uint64_t)s, NULL, 0, &m));
        uint8_t *b = mask_bytes(m);
        for (int i = 0; i < N; i++) {
            hits[i] += b[i];
            if (i + 1 < N)
                pairs[i] += b[i] && b[i + 1];
        }
        free(b);
        sresid_mask_free(m);
    }
    double e = (double)seeds * K / N, chi = 0;
    for (int i = 0; i < N; i++)
        chi += (hits[i] - e) * (hits[i] - e) / e;
    /* 19 degrees of freedom: P(chi2 > 50) ~ 1e-4 */
    ck_assert_msg(chi < 50, "chi-square of positions %g", chi);
    double ep = (double)seeds * K / N * (K - 1) / (N - 1), chp = 0;
    for (int i = 0; i < N - 1; i++)
        chp += (pairs[i] - ep) * (pairs[i] - ep) / ep;
    ck_assert_msg(chp < 50, "chi-square of adjacent pairs %g", chp);
}
END_TEST

/* ---- drop and grow ---------------------------------------------------- */

/* Reference: d rounds of a linear scan for the next entry to drop (smallest
 * keep, higher index on ties) and to grow (largest grow, lower index). */
static void ref_drop_grow(const uint8_t *in, const float *keep, const float *grow, uint64_t a,
                          uint64_t b, double share, uint8_t *out)
{
    uint64_t act = 0;
    for (uint64_t i = a; i < b; i++)
        act += in[i];
    uint64_t d = want_count(share, act);
    if (d > (b - a) - act)
        d = (b - a) - act;
    uint8_t *dropped = calloc(b - a + 1, 1), *grown = calloc(b - a + 1, 1);
    for (uint64_t r = 0; r < d; r++) {
        uint64_t best = UINT64_MAX;
        for (uint64_t i = a; i < b; i++)
            if (in[i] && !dropped[i - a] &&
                (best == UINT64_MAX || keep[i] < keep[best] ||
                 (keep[i] == keep[best] && i > best)))
                best = i;
        dropped[best - a] = 1;
        best = UINT64_MAX;
        for (uint64_t i = a; i < b; i++)
            if (!in[i] && !grown[i - a] &&
                (best == UINT64_MAX || grow[i] > grow[best]))
                best = i;
        grown[best - a] = 1;
    }
    for (uint64_t i = a; i < b; i++)
        out[i] = (in[i] && !dropped[i - a]) || grown[i - a];
    free(dropped);
    free(grown);
}

START_TEST(mask_drop_grow_matches_reference)
{
    uint64_t rs = 41;
    for (int trial = 0; trial < (tu_quick() ? 15 : 60); trial++) {
        uint64_t n = trial == 0 ? 0 : tu_rand_u64(&rs) % 700;
        size_t nseg = trial % 2 ? 1 + tu_rand_u64(&rs) % 4 : 0;
        uint64_t *off = nseg ? rand_offsets(n, nseg, &rs) : NULL;
        double share = trial % 5 == 0 ? (trial % 10 ? 1.0 : 0.0) : tu_rand_uniform(&rs);
        double density = tu_rand_uniform(&rs);
        uint8_t *in = malloc(n + 1), *want = malloc(n + 1);
        float *keep = malloc((n + 1) * sizeof *keep), *grow = malloc((n + 1) * sizeof *grow);
        for (uint64_t i = 0; i < n; i++) {
            in[i] = tu_rand_uniform(&rs) < density;
            keep[i] = (float)(tu_rand_u64(&rs) % 8) * (i % 2 ? 1.0f : -1.0f); /* ties, -0 */
            grow[i] = (float)(tu_rand_u64(&rs) % 8);
        }
        size_t ns = nseg ? nseg : 1;
        for (size_t j = 0; j < ns; j++)
            ref_drop_grow(in, keep, grow, nseg ? off[j] : 0, nseg ? off[j + 1] : n, share, want);
        sresid_mask *m = mask_of(in, n), *ch = NULL;
        ck_assert_ok(sresid_mask_create(n, 1, &ch)); /* overwritten */
        ck_assert_ok(sresid_mask_drop_grow(m, keep, grow, n, share, off, nseg, ch));
        uint8_t *got = mask_bytes(m), *chg = mask_bytes(ch);
        for (uint64_t i = 0; i < n; i++) {
            if (got[i] != want[i])
                ck_abort_msg("trial %d entry %llu: %d, want %d", trial, (unsigned long long)i,
                             got[i], want[i]);
            ck_assert_uint_eq(chg[i], in[i] ^ want[i]);
        }
        for (size_t j = 0; j < ns; j++) {
            uint64_t a = nseg ? off[j] : 0, b = nseg ? off[j + 1] : n, c0 = 0, c1 = 0;
            for (uint64_t i = a; i < b; i++) {
                c0 += in[i];
                c1 += got[i];
            }
            ck_assert_uint_eq(c0, c1); /* count fixed per segment */
        }
        /* without a changed mask: the same result */
        sresid_mask *m2 = mask_of(in, n);
        ck_assert_ok(sresid_mask_drop_grow(m2, keep, grow, n, share, off, nseg, NULL));
        uint8_t *got2 = mask_bytes(m2);
        ck_assert(n == 0 || memcmp(got, got2, n) == 0);
        free(got2);
        sresid_mask_free(m2);
        free(got);
        free(chg);
        sresid_mask_free(m);
        sresid_mask_free(ch);
        free(in);
        free(want);
        free(keep);
        free(grow);
        free(off);
    }
}
END_TEST

START_TEST(mask_drop_grow_hand_and_errors)
{
    /* active {0, 1, 2, 3}, keep 5 1 1 9: share 0.5 drops 2 -> the two 1s
     * (index 2 goes first, then 1); grow among {4, 5, 6}: 3 7 7 -> 5, 6 */
    const uint8_t in[] = {1, 1, 1, 1, 0, 0, 0};
    const float keep[] = {5, 1, 1, 9, 0, 0, 0}, grow[] = {9, 9, 9, 9, 3, 7, 7};
    sresid_mask *m = mask_of(in, 7), *ch = NULL;
    ck_assert_ok(sresid_mask_create(7, 0, &ch));
    ck_assert_ok(sresid_mask_drop_grow(m, keep, grow, 7, 0.5, NULL, 0, ch));
    uint8_t *b = mask_bytes(m), *c = mask_bytes(ch);
    const uint8_t want[] = {1, 0, 0, 1, 0, 1, 1}, wantc[] = {0, 1, 1, 0, 0, 1, 1};
    ck_assert(memcmp(b, want, 7) == 0 && memcmp(c, wantc, 7) == 0);
    free(b);
    free(c);
    /* share 0.3 of 4 = 1.7 -> 1: only index 2 (the higher of the tied 1s)
     * is dropped, index 5 (the lower of the tied 7s) grows */
    sresid_mask_free(m);
    m = mask_of(in, 7);
    ck_assert_ok(sresid_mask_drop_grow(m, keep, grow, 7, 0.3, NULL, 0, NULL));
    b = mask_bytes(m);
    const uint8_t want2[] = {1, 1, 0, 1, 0, 1, 0};
    ck_assert(memcmp(b, want2, 7) == 0);
    free(b);
    /* d is capped by the inactive entries: 4 active of 5, share 1 -> 1 */
    const uint8_t in3[] = {1, 1, 0, 1, 1};
    const float k3[] = {4, 3, 0, 2, 1}, g3[] = {0, 0, 5, 0, 0};
    sresid_mask *m3 = mask_of(in3, 5);
    ck_assert_ok(sresid_mask_drop_grow(m3, k3, g3, 5, 1.0, NULL, 0, NULL));
    b = mask_bytes(m3);
    const uint8_t want3[] = {1, 1, 1, 1, 0};
    ck_assert(memcmp(b, want3, 5) == 0);
    free(b);
    sresid_mask_free(m3);

    /* failures change nothing */
    sresid_mask_free(m);
    m = mask_of(in, 7);
    sresid_mask *small = NULL;
    ck_assert_ok(sresid_mask_create(6, 0, &small));
    float badg[7];
    memcpy(badg, grow, sizeof badg);
    badg[6] = NAN;
    sresid_mask_free(ch);
    ck_assert_ok(sresid_mask_create(7, 0, &ch));
    ck_assert_status(sresid_mask_drop_grow(m, keep, badg, 7, 0.5, NULL, 0, ch),
                     SRESID_ERR_NONFINITE);
    ck_assert_status(sresid_mask_drop_grow(m, keep, grow, 7, 1.5, NULL, 0, ch),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_drop_grow(m, keep, grow, 6, 0.5, NULL, 0, ch), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_mask_drop_grow(m, keep, grow, 7, 0.5, NULL, 0, small),
                     SRESID_ERR_SHAPE);
    ck_assert_status(sresid_mask_drop_grow(m, keep, grow, 7, 0.5, NULL, 0, m),
                     SRESID_ERR_INVALID_ARG);
    const uint64_t bad[] = {0, 8};
    ck_assert_status(sresid_mask_drop_grow(m, keep, grow, 7, 0.5, bad, 1, ch),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_drop_grow(m, NULL, grow, 7, 0.5, NULL, 0, ch),
                     SRESID_ERR_INVALID_ARG);
    b = mask_bytes(m);
    ck_assert(memcmp(b, in, 7) == 0);
    free(b);
    ck_assert_uint_eq(sresid_mask_count(ch), 0);
    sresid_mask_free(small);
    sresid_mask_free(ch);
    sresid_mask_free(m);
}
END_TEST

/* ---- files ------------------------------------------------------------ */

START_TEST(mask_save_load_round_trip)
{
    uint64_t rs = 51;
    const uint64_t sizes[] = {0, 1, 7, 8, 9, 64, 65, 1001};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        uint64_t n = sizes[si];
        uint8_t *b = malloc(n + 1);
        for (uint64_t i = 0; i < n; i++)
            b[i] = tu_rand_u64(&rs) % 2;
        sresid_mask *m = mask_of(b, n), *l = NULL;
        const char *path = tu_path("rt.mask.safetensors");
        ck_assert_ok(sresid_mask_save(m, path, NULL));
        ck_assert_ok(sresid_mask_load(path, &l));
        ck_assert_uint_eq(sresid_mask_size(l), n);
        uint8_t *g = mask_bytes(l);
        ck_assert(n == 0 || memcmp(g, b, n) == 0);
        /* the file as documented: U8 tensor "mask", bit i % 8 of byte i / 8 */
        sresid_model *md = NULL;
        ck_assert_ok(sresid_model_open(path, NULL, &md));
        size_t idx;
        ck_assert_ok(sresid_model_find(md, "mask", &idx));
        sresid_tensor_info info = {.size = sizeof info};
        ck_assert_ok(sresid_model_tensor_info(md, idx, &info));
        ck_assert_int_eq(info.dtype, SRESID_DTYPE_U8);
        ck_assert_uint_eq(info.nbytes, (n + 7) / 8);
        const uint8_t *raw = info.data;
        for (uint64_t i = 0; i < n; i++)
            ck_assert_uint_eq((raw[i / 8] >> (i % 8)) & 1, b[i]);
        const char *v = NULL;
        ck_assert_ok(sresid_model_metadata_get(md, "format", &v));
        ck_assert_str_eq(v, "sparseresid.mask");
        ck_assert_ok(sresid_model_metadata_get(md, "version", &v));
        ck_assert_str_eq(v, "1");
        ck_assert_ok(sresid_model_metadata_get(md, "n", &v));
        char nb[32];
        snprintf(nb, sizeof nb, "%llu", (unsigned long long)n);
        ck_assert_str_eq(v, nb);
        sresid_model_free(md);
        free(g);
        free(b);
        sresid_mask_free(m);
        sresid_mask_free(l);
    }
    /* NO_CLOBBER and bad options */
    sresid_mask *m = NULL;
    ck_assert_ok(sresid_mask_create(3, 1, &m));
    sresid_save_opts so = {.size = sizeof so, .flags = SRESID_SAVE_NO_CLOBBER};
    ck_assert_status(sresid_mask_save(m, tu_path("rt.mask.safetensors"), &so), SRESID_ERR_IO);
    so.size = 2;
    ck_assert_status(sresid_mask_save(m, tu_path("x.safetensors"), &so), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_save(NULL, tu_path("x.safetensors"), NULL),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_save(m, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_save(m, tu_path("no/such/dir/x.safetensors"), NULL),
                     SRESID_ERR_IO);
    sresid_mask_free(m);
}
END_TEST

/* Write a would-be mask file: tensor name, dtype, bytes, metadata (NULL
 * value: key left out). */
static const char *write_mask_file(const char *file, const char *tensor, sresid_dtype dtype,
                                   const uint8_t *bytes, size_t nbytes, const char *format,
                                   const char *version, const char *n)
{
    sresid_model *md = NULL;
    ck_assert_ok(sresid_model_create(NULL, &md));
    size_t es = sresid_dtype_size(dtype);
    int64_t shape[1] = {(int64_t)(nbytes / es)};
    ck_assert_ok(sresid_model_add_tensor(md, tensor, dtype, 1, shape, bytes, nbytes, 0));
    if (format)
        ck_assert_ok(sresid_model_set_metadata(md, "format", format));
    if (version)
        ck_assert_ok(sresid_model_set_metadata(md, "version", version));
    if (n)
        ck_assert_ok(sresid_model_set_metadata(md, "n", n));
    const char *path = tu_path(file);
    ck_assert_ok(sresid_model_save(md, path, NULL));
    sresid_model_free(md);
    return path;
}

START_TEST(mask_load_rejects_malformed)
{
    const uint8_t ok2[2] = {0xFF, 0x03}; /* n = 10: 10 set */
    const char *p;
    sresid_mask *m = NULL;
    p = write_mask_file("good.safetensors", "mask", SRESID_DTYPE_U8, ok2, 2,
                        "sparseresid.mask", "1", "10");
    ck_assert_ok(sresid_mask_load(p, &m));
    ck_assert_uint_eq(sresid_mask_size(m), 10);
    ck_assert_uint_eq(sresid_mask_count(m), 10);
    sresid_mask_free(m);
    m = NULL;
    const struct {
        const char *tensor;
        sresid_dtype dtype;
        const uint8_t *bytes;
        size_t nbytes;
        const char *format, *version, *n;
        sresid_status want;
        const char *says;
    } bad[] = {
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.maskx", "1", "10", SRESID_ERR_METADATA,
         "format"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, NULL, "1", "10", SRESID_ERR_METADATA, "format"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "2", "10", SRESID_ERR_METADATA,
         "version"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", NULL, "10", SRESID_ERR_METADATA,
         "version"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", NULL, SRESID_ERR_METADATA,
         "\"n\""},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "1O", SRESID_ERR_METADATA,
         "decimal"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "-10", SRESID_ERR_METADATA,
         "decimal"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "", SRESID_ERR_METADATA,
         "decimal"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "010", SRESID_ERR_METADATA,
         "decimal"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", " 10", SRESID_ERR_METADATA,
         "decimal"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "99999999999999999999999",
         SRESID_ERR_METADATA, "decimal"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "17", SRESID_ERR_SHAPE,
         "bytes"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "8", SRESID_ERR_SHAPE,
         "bytes"},
        {"mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "9", SRESID_ERR_SHAPE,
         "padding"},
        {"bits", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask", "1", "10", SRESID_ERR_NOT_FOUND,
         "mask"},
        {"mask", SRESID_DTYPE_I8, ok2, 2, "sparseresid.mask", "1", "10", SRESID_ERR_DTYPE,
         "I8"},
        {"mask", SRESID_DTYPE_U16, ok2, 2, "sparseresid.mask", "1", "10", SRESID_ERR_DTYPE,
         "U16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[40];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        p = write_mask_file(name, bad[i].tensor, bad[i].dtype, bad[i].bytes, bad[i].nbytes,
                            bad[i].format, bad[i].version, bad[i].n);
        ck_assert_status(sresid_mask_load(p, &m), bad[i].want);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(sresid_last_error(), bad[i].says), "case %zu: message %s", i,
                      sresid_last_error());
    }
    /* padding bit in the one partial byte of n = 3 */
    const uint8_t pad[1] = {0x09};
    p = write_mask_file("pad.safetensors", "mask", SRESID_DTYPE_U8, pad, 1, "sparseresid.mask",
                        "1", "3");
    ck_assert_status(sresid_mask_load(p, &m), SRESID_ERR_SHAPE);
    /* not a safetensors file at all, a truncated one, a missing one */
    ck_assert_int_eq(tu_write_file(tu_path("junk.safetensors"), "hello", 5), 0);
    sresid_status st = sresid_mask_load(tu_path("junk.safetensors"), &m);
    ck_assert(st != SRESID_OK);
    p = write_mask_file("trunc.safetensors", "mask", SRESID_DTYPE_U8, ok2, 2, "sparseresid.mask",
                        "1", "10");
    size_t len = 0;
    unsigned char *data = tu_read_file(p, &len);
    ck_assert_ptr_nonnull(data);
    ck_assert_int_eq(tu_write_file(p, data, len - 1), 0);
    free(data);
    ck_assert_status(sresid_mask_load(p, &m), SRESID_ERR_TRUNCATED);
    ck_assert_status(sresid_mask_load(tu_path("none.safetensors"), &m), SRESID_ERR_IO);
    ck_assert_status(sresid_mask_load(NULL, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_mask_load(p, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
}
END_TEST

Suite *suite_mask(void)
{
    Suite *s = suite_create("mask");
    TCase *tc = tcase_create("select");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, select_hand_cases);
    tcase_add_test(tc, select_matches_sort_reference);
    suite_add_tcase(s, tc);

    tc = tcase_create("mask");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mask_basics);
    tcase_add_test(tc, mask_set_ops_match_bytewise);
    tcase_add_test(tc, mask_argument_errors);
    tcase_add_test(tc, mask_counts_exact);
    tcase_add_test(tc, mask_top_matches_sort_reference);
    tcase_add_test(tc, mask_random_reproducible);
    tcase_add_test(tc, mask_random_uniform);
    tcase_add_test(tc, mask_drop_grow_matches_reference);
    tcase_add_test(tc, mask_drop_grow_hand_and_errors);
    tcase_add_test(tc, mask_save_load_round_trip);
    tcase_add_test(tc, mask_load_rejects_malformed);
    suite_add_tcase(s, tc);
    return s;
}
