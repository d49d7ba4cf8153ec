/* Masks: bitsets over n entries, entry i at bit i % 64 of word i / 64, the
 * bits past n always clear (so counts and set operations need no care at
 * the end). Selection by magnitude goes through the streaming radix
 * selection of util/topk.c, one segment at a time; random masks through
 * selection sampling on the library's xoshiro256**. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amp/amp.h"
#include "util/topk.h"

struct sresid_mask {
    uint64_t n;
    uint64_t nwords;
    uint64_t *words; /* nwords (at least one allocated) */
};

#define FORMAT_TAG "sparseresid.mask"
#define FORMAT_VERSION "1"

const uint64_t *sresid__mask_words(const sresid_mask *m)
{
    return m->words;
}

uint64_t *sresid__mask_words_mut(sresid_mask *m)
{
    return m->words;
}

sresid_status sresid__check_segments(const uint64_t *offsets, size_t nseg, uint64_t n,
                                     const char *fn)
{
    if (!offsets || nseg == 0)
        return SRESID_OK;
    if (offsets[0] != 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: offsets[0] is %llu, not 0", fn,
                            (unsigned long long)offsets[0]);
    for (size_t j = 0; j < nseg; j++)
        if (offsets[j + 1] < offsets[j])
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "%s: offsets[%zu] = %llu is below offsets[%zu] = %llu", fn,
                                j + 1, (unsigned long long)offsets[j + 1], j,
                                (unsigned long long)offsets[j]);
    if (offsets[nseg] != n)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: offsets[%zu] = %llu, want the entry count %llu", fn, nseg,
                            (unsigned long long)offsets[nseg], (unsigned long long)n);
    return SRESID_OK;
}

/* Segments: count, and bounds of segment j. */
static size_t seg_count(const uint64_t *offsets, size_t nseg)
{
    return offsets && nseg ? nseg : 1;
}

static void seg_bounds(const uint64_t *offsets, size_t nseg, uint64_t n, size_t j,
                       uint64_t *first, uint64_t *end)
{
    if (offsets && nseg) {
        *first = offsets[j];
        *end = offsets[j + 1];
    } else {
        *first = 0;
        *end = n;
    }
}

static inline bool bit_get(const uint64_t *w, uint64_t i)
{
    return (w[i >> 6] >> (i & 63)) & 1;
}

static inline void bit_set(uint64_t *w, uint64_t i)
{
    w[i >> 6] |= 1ull << (i & 63);
}

static inline void bit_clear(uint64_t *w, uint64_t i)
{
    w[i >> 6] &= ~(1ull << (i & 63));
}

/* A mask of n entries, all clear. */
static sresid_status alloc_mask(uint64_t n, const char *fn, sresid_mask **out)
{
    uint64_t nwords = n / 64 + (n % 64 != 0);
    if (nwords > SIZE_MAX / sizeof(uint64_t))
        return sresid__fail(SRESID_ERR_OVERFLOW, "%s: %llu entries do not fit in memory", fn,
                            (unsigned long long)n);
    sresid_mask *m = malloc(sizeof *m);
    uint64_t *w = calloc(nwords ? (size_t)nwords : 1, sizeof *w);
    if (!m || !w) {
        free(m);
        free(w);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for a mask of %llu entries", fn,
                            (unsigned long long)n);
    }
    m->n = n;
    m->nwords = nwords;
    m->words = w;
    *out = m;
    return SRESID_OK;
}

/* Clear the bits past n in the last word. */
static void clear_tail(sresid_mask *m)
{
    if (m->n % 64)
        m->words[m->nwords - 1] &= (1ull << (m->n % 64)) - 1;
}

/* Set bits [a, b). */
static void set_range(uint64_t *w, uint64_t a, uint64_t b)
{
    while (a < b && (a & 63))
        bit_set(w, a++);
    for (; a + 64 <= b; a += 64)
        w[a >> 6] = ~0ull;
    while (a < b)
        bit_set(w, a++);
}

/* Set bits in [a, b). */
static uint64_t count_range(const uint64_t *w, uint64_t a, uint64_t b)
{
    uint64_t c = 0;
    while (a < b && (a & 63))
        c += bit_get(w, a++);
    for (; a + 64 <= b; a += 64)
        c += (uint64_t)__builtin_popcountll(w[a >> 6]);
    while (a < b)
        c += bit_get(w, a++);
    return c;
}

static sresid_status check_fraction(double f, const char *fn, const char *name)
{
    if (!(f >= 0 && f <= 1))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s %g is not in [0, 1]", fn, name, f);
    return SRESID_OK;
}

/* ---- basics ---- */

sresid_status sresid_mask_create(uint64_t n, int32_t value, sresid_mask **out)
{
    static const char fn[] = "sresid_mask_create";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if (value != 0 && value != 1)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: value %d is not 0 or 1", fn,
                            (int)value);
    sresid_mask *m;
    sresid_status st = alloc_mask(n, fn, &m);
    if (st)
        return st;
    if (value) {
        memset(m->words, 0xFF, (size_t)m->nwords * sizeof *m->words);
        clear_tail(m);
    }
    *out = m;
    return SRESID_OK;
}

sresid_status sresid_mask_copy(const sresid_mask *mask, sresid_mask **out)
{
    static const char fn[] = "sresid_mask_copy";
    if (!mask || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !mask ? "mask" : "out");
    sresid_mask *m;
    sresid_status st = alloc_mask(mask->n, fn, &m);
    if (st)
        return st;
    memcpy(m->words, mask->words, (size_t)mask->nwords * sizeof *m->words);
    *out = m;
    return SRESID_OK;
}

void sresid_mask_free(sresid_mask *mask)
{
    if (!mask)
        return;
    free(mask->words);
    free(mask);
}

uint64_t sresid_mask_size(const sresid_mask *mask)
{
    return mask ? mask->n : 0;
}

uint64_t sresid_mask_count(const sresid_mask *mask)
{
    if (!mask)
        return 0;
    uint64_t c = 0;
    for (uint64_t w = 0; w < mask->nwords; w++)
        c += (uint64_t)__builtin_popcountll(mask->words[w]);
    return c;
}

sresid_status sresid_mask_count_range(const sresid_mask *mask, uint64_t first, uint64_t len,
                                      uint64_t *out)
{
    static const char fn[] = "sresid_mask_count_range";
    if (!mask || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !mask ? "mask" : "out");
    if (first > mask->n || len > mask->n - first)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: range [%llu, %llu + %llu) is beyond the %llu entries", fn,
                            (unsigned long long)first, (unsigned long long)first,
                            (unsigned long long)len, (unsigned long long)mask->n);
    *out = count_range(mask->words, first, first + len);
    return SRESID_OK;
}

sresid_status sresid_mask_get(const sresid_mask *mask, uint64_t i, int32_t *value)
{
    static const char fn[] = "sresid_mask_get";
    if (!mask || !value)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !mask ? "mask" : "value");
    if (i >= mask->n)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: entry %llu is beyond the %llu entries",
                            fn, (unsigned long long)i, (unsigned long long)mask->n);
    *value = bit_get(mask->words, i);
    return SRESID_OK;
}

sresid_status sresid_mask_set(sresid_mask *mask, uint64_t i, int32_t value)
{
    static const char fn[] = "sresid_mask_set";
    if (!mask)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: mask is NULL", fn);
    if (value != 0 && value != 1)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: value %d is not 0 or 1", fn,
                            (int)value);
    if (i >= mask->n)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: entry %llu is beyond the %llu entries",
                            fn, (unsigned long long)i, (unsigned long long)mask->n);
    if (value)
        bit_set(mask->words, i);
    else
        bit_clear(mask->words, i);
    return SRESID_OK;
}

/* ---- set operations ---- */

static sresid_status check_pair(const sresid_mask *a, const sresid_mask *b, const char *fn,
                                const char *na, const char *nb)
{
    if (!a || !b)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, !a ? na : nb);
    if (a->n != b->n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: %s has %llu entries, %s %llu", fn, na,
                            (unsigned long long)a->n, nb, (unsigned long long)b->n);
    return SRESID_OK;
}

sresid_status sresid_mask_combine(sresid_mask *dst, const sresid_mask *src, int32_t op)
{
    static const char fn[] = "sresid_mask_combine";
    sresid_status st = check_pair(dst, src, fn, "dst", "src");
    if (st)
        return st;
    if (op < SRESID_MASK_AND || op > SRESID_MASK_XOR)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown operation %d", fn, (int)op);
    uint64_t *d = dst->words;
    const uint64_t *s = src->words;
    for (uint64_t w = 0; w < dst->nwords; w++) {
        uint64_t a = d[w], b = s[w];
        d[w] = op == SRESID_MASK_AND ? a & b
               : op == SRESID_MASK_OR ? a | b
               : op == SRESID_MASK_ANDNOT ? a & ~b
                                           : a ^ b;
    }
    return SRESID_OK;
}

sresid_status sresid_mask_not(sresid_mask *mask)
{
    if (!mask)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_mask_not: mask is NULL");
    for (uint64_t w = 0; w < mask->nwords; w++)
        mask->words[w] = ~mask->words[w];
    clear_tail(mask);
    return SRESID_OK;
}

sresid_status sresid_mask_jaccard(const sresid_mask *a, const sresid_mask *b, double *out)
{
    static const char fn[] = "sresid_mask_jaccard";
    sresid_status st = check_pair(a, b, fn, "a", "b");
    if (st)
        return st;
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    uint64_t both = 0, any = 0;
    for (uint64_t w = 0; w < a->nwords; w++) {
        both += (uint64_t)__builtin_popcountll(a->words[w] & b->words[w]);
        any += (uint64_t)__builtin_popcountll(a->words[w] | b->words[w]);
    }
    *out = any ? (double)both / (double)any : 1.0;
    return SRESID_OK;
}

/* ---- bytes and floats ---- */

sresid_status sresid_mask_from_bytes(const uint8_t *flags, uint64_t n, sresid_mask **out)
{
    static const char fn[] = "sresid_mask_from_bytes";
    if (!out || (!flags && n))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !out ? "out" : "flags");
    sresid_mask *m;
    sresid_status st = alloc_mask(n, fn, &m);
    if (st)
        return st;
    for (uint64_t i = 0; i < n; i++)
        m->words[i >> 6] |= (uint64_t)(flags[i] != 0) << (i & 63);
    *out = m;
    return SRESID_OK;
}

sresid_status sresid_mask_to_bytes(const sresid_mask *mask, uint8_t *dst, uint64_t count)
{
    static const char fn[] = "sresid_mask_to_bytes";
    if (!mask || (!dst && mask->n))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !mask ? "mask" : "dst");
    if (count < mask->n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: dst holds %llu bytes, the mask %llu entries",
                            fn, (unsigned long long)count, (unsigned long long)mask->n);
    for (uint64_t i = 0; i < mask->n; i++)
        dst[i] = bit_get(mask->words, i);
    return SRESID_OK;
}

sresid_status sresid_mask_apply(const sresid_mask *mask, float *x, uint64_t n)
{
    static const char fn[] = "sresid_mask_apply";
    if (!mask || (!x && n))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, !mask ? "mask" : "x");
    if (n != mask->n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: x has %llu entries, the mask %llu", fn,
                            (unsigned long long)n, (unsigned long long)mask->n);
    for (uint64_t i = 0; i < n; i++)
        if (!bit_get(mask->words, i))
            x[i] = 0.0f;
    return SRESID_OK;
}

/* ---- selection ---- */

/* Index of the first non-finite value of x[0, n), or n. */
static uint64_t first_nonfinite(const float *x, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

/* Set the k entries of x[first, end) with the largest |x| (lower index first
 * among equals), 0 < k < end - first. */
static sresid_status top_segment(const float *x, uint64_t first, uint64_t end, uint64_t k,
                                 uint64_t *words)
{
    sresid__sel sel;
    sresid_status st = sresid__sel_init(&sel, k);
    if (st)
        return st;
    const size_t len = (size_t)(end - first);
    while (sel.pass < 2) {
        sresid__sel_feed(&sel, x + first, len);
        sresid__sel_next(&sel);
    }
    sresid__sel_cursor cur = {sel.threshold, sel.take_equal};
    sresid__sel_free(&sel);
    for (uint64_t i = first; i < end; i++)
        if (sresid__sel_keep(&cur, x[i]))
            bit_set(words, i);
    return SRESID_OK;
}

sresid_status sresid_mask_top(const float *x, uint64_t n, double fraction,
                              const uint64_t *offsets, size_t nseg, sresid_mask **out)
{
    static const char fn[] = "sresid_mask_top";
    if (!out || (!x && n))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, !out ? "out" : "x");
    sresid_status st = check_fraction(fraction, fn, "fraction");
    if (st || (st = sresid__check_segments(offsets, nseg, n, fn)))
        return st;
    if (n > SIZE_MAX / sizeof(float))
        return sresid__fail(SRESID_ERR_OVERFLOW, "%s: %llu floats do not fit in memory", fn,
                            (unsigned long long)n);
    uint64_t bad = first_nonfinite(x, n);
    if (bad < n)
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: x[%llu] is %g", fn,
                            (unsigned long long)bad, (double)x[bad]);
    sresid_mask *m;
    if ((st = alloc_mask(n, fn, &m)))
        return st;
    const size_t ns = seg_count(offsets, nseg);
    for (size_t j = 0; j < ns; j++) {
        uint64_t a, b;
        seg_bounds(offsets, nseg, n, j, &a, &b);
        uint64_t k = sresid__fraction_count(fraction, b - a);
        if (k == 0)
            continue;
        if (k == b - a) {
            set_range(m->words, a, b);
            continue;
        }
        if ((st = top_segment(x, a, b, k, m->words))) {
            sresid_mask_free(m);
            return sresid__fail(st, "%s: %s", fn, sresid_last_error());
        }
    }
    *out = m;
    return SRESID_OK;
}

sresid_status sresid_mask_random(uint64_t n, double fraction, uint64_t seed,
                                 const uint64_t *offsets, size_t nseg, sresid_mask **out)
{
    static const char fn[] = "sresid_mask_random";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    sresid_status st = check_fraction(fraction, fn, "fraction");
    if (st || (st = sresid__check_segments(offsets, nseg, n, fn)))
        return st;
    sresid_mask *m;
    if ((st = alloc_mask(n, fn, &m)))
        return st;
    const size_t ns = seg_count(offsets, nseg);
    for (size_t j = 0; j < ns; j++) {
        uint64_t a, b;
        seg_bounds(offsets, nseg, n, j, &a, &b);
        uint64_t need = sresid__fraction_count(fraction, b - a), left = b - a;
        sresid__rng rng;
        sresid__rng_seed(&rng, sresid__mix64(seed ^ sresid__mix64((uint64_t)j)));
        /* Knuth's algorithm S: entry i is picked with probability need / left */
        for (uint64_t i = a; need; i++, left--)
            if (sresid__rng_below(&rng, left) < need) {
                bit_set(m->words, i);
                need--;
            }
    }
    *out = m;
    return SRESID_OK;
}

/* ---- drop and grow ---- */

typedef struct ranked {
    float v;
    uint64_t i;
} ranked;

/* Drop order: smallest keep first; among equals the higher index first. */
static int cmp_drop(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return a->i > b->i ? -1 : a->i < b->i;
}

/* Grow order: largest grow first; among equals the lower index first. */
static int cmp_grow(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

sresid_status sresid_mask_drop_grow(sresid_mask *mask, const float *keep, const float *grow,
                                    uint64_t n, double share, const uint64_t *offsets,
                                    size_t nseg, sresid_mask *changed)
{
    static const char fn[] = "sresid_mask_drop_grow";
    if (!mask || ((!keep || !grow) && n))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !mask ? "mask" : !keep ? "keep" : "grow");
    if (changed == mask)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: changed must not be mask", fn);
    sresid_status st = check_fraction(share, fn, "share");
    if (st || (st = sresid__check_segments(offsets, nseg, n, fn)))
        return st;
    if (n != mask->n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: keep and grow hold %llu entries, the mask %llu",
                            fn, (unsigned long long)n, (unsigned long long)mask->n);
    if (changed && changed->n != n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: changed has %llu entries, the mask %llu", fn,
                            (unsigned long long)changed->n, (unsigned long long)n);
    uint64_t bad = first_nonfinite(keep, n);
    if (bad < n)
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: keep[%llu] is %g", fn,
                            (unsigned long long)bad, (double)keep[bad]);
    if ((bad = first_nonfinite(grow, n)) < n)
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: grow[%llu] is %g", fn,
                            (unsigned long long)bad, (double)grow[bad]);

    /* work on a copy; the mask changes only once everything has succeeded */
    const size_t bytes = (size_t)mask->nwords * sizeof(uint64_t);
    uint64_t *next = malloc(bytes ? bytes : 1);
    uint64_t largest = 0;
    const size_t ns = seg_count(offsets, nseg);
    for (size_t j = 0; j < ns; j++) {
        uint64_t a, b;
        seg_bounds(offsets, nseg, n, j, &a, &b);
        if (b - a > largest)
            largest = b - a;
    }
    ranked *act = NULL, *ina = NULL;
    if (largest > SIZE_MAX / sizeof(ranked)) {
        free(next);
        return sresid__fail(SRESID_ERR_OVERFLOW, "%s: a segment of %llu entries is too large",
                            fn, (unsigned long long)largest);
    }
    if (largest) {
        act = malloc((size_t)largest * sizeof *act);
        ina = malloc((size_t)largest * sizeof *ina);
    }
    if (!next || (largest && (!act || !ina))) {
        free(next);
        free(act);
        free(ina);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", fn);
    }
    memcpy(next, mask->words, bytes);
    for (size_t j = 0; j < ns; j++) {
        uint64_t a, b;
        seg_bounds(offsets, nseg, n, j, &a, &b);
        size_t na = 0, ni = 0;
        for (uint64_t i = a; i < b; i++) {
            if (bit_get(mask->words, i))
                act[na++] = (ranked){keep[i], i};
            else
                ina[ni++] = (ranked){grow[i], i};
        }
        uint64_t d = sresid__fraction_count(share, na);
        if (d > ni)
            d = ni;
        if (d == 0)
            continue;
        qsort(act, na, sizeof *act, cmp_drop);
        qsort(ina, ni, sizeof *ina, cmp_grow);
        for (uint64_t q = 0; q < d; q++) {
            bit_clear(next, act[q].i);
            bit_set(next, ina[q].i);
        }
    }
    free(act);
    free(ina);
    if (changed)
        for (uint64_t w = 0; w < mask->nwords; w++)
            changed->words[w] = mask->words[w] ^ next[w];
    free(mask->words);
    mask->words = next;
    return SRESID_OK;
}

/* ---- files ---- */

sresid_status sresid_mask_save(const sresid_mask *mask, const char *path,
                               const sresid_save_opts *opts)
{
    static const char fn[] = "sresid_mask_save";
    if (!mask || !path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !mask ? "mask" : "path");
    sresid_status st = sresid__check_opts(opts, sizeof(sresid_save_opts), sizeof(size_t), fn);
    if (st)
        return st;
    const uint64_t nbytes = mask->n / 8 + (mask->n % 8 != 0);
    uint8_t *bytes = malloc(nbytes ? (size_t)nbytes : 1);
    if (!bytes)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", fn);
    for (uint64_t b = 0; b < nbytes; b++)
        bytes[b] = (uint8_t)(mask->words[b / 8] >> (8 * (b % 8)));
    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%llu", (unsigned long long)mask->n);
    sresid_model *model = NULL;
    const int64_t shape[1] = {(int64_t)nbytes};
    if (!(st = sresid_model_create(NULL, &model)) &&
        !(st = sresid_model_add_tensor(model, "mask", SRESID_DTYPE_U8, 1, shape, bytes,
                                       (size_t)nbytes, SRESID_ADD_BORROW)) &&
        !(st = sresid_model_set_metadata(model, "format", FORMAT_TAG)) &&
        !(st = sresid_model_set_metadata(model, "version", FORMAT_VERSION)) &&
        !(st = sresid_model_set_metadata(model, "n", nbuf)))
        st = sresid_model_save(model, path, opts);
    if (st)
        st = sresid__fail(st, "%s: %s", fn, sresid_last_error());
    sresid_model_free(model);
    free(bytes);
    return st;
}

sresid_status sresid_mask_load(const char *path, sresid_mask **out)
{
    static const char fn[] = "sresid_mask_load";
    sresid_model *model = NULL;
    sresid_status st = sresid__meta_open(path, out, fn, &model);
    if (st)
        return st;
    uint64_t n = 0;
    sresid_mask *m = NULL;
    uint8_t *bytes = NULL;
    size_t index;
    sresid_tensor_info info = {.size = sizeof info};
    if ((st = sresid__meta_format(model, path, FORMAT_TAG, "version", FORMAT_VERSION,
                                  "score mask")) ||
        (st = sresid__meta_u64(model, path, "n", UINT64_MAX, &n)))
        goto done;
    if (sresid_model_find(model, "mask", &index)) {
        st = sresid__fail(SRESID_ERR_NOT_FOUND, "%s: no tensor \"mask\"", path);
        goto done;
    }
    if ((st = sresid_model_tensor_info(model, index, &info)))
        goto done;
    if (info.dtype != SRESID_DTYPE_U8) {
        const char *dn = sresid_dtype_name(info.dtype);
        st = sresid__fail(SRESID_ERR_DTYPE, "%s: tensor \"mask\" is %s, want U8", path,
                          dn ? dn : "?");
        goto done;
    }
    const uint64_t nbytes = n / 8 + (n % 8 != 0);
    if (info.ndim != 1 || info.nbytes != nbytes) {
        st = sresid__fail(SRESID_ERR_SHAPE,
                          "%s: tensor \"mask\" has %llu bytes in %d dimensions, want %llu bytes "
                          "in 1 for n = %llu",
                          path, (unsigned long long)info.nbytes, (int)info.ndim,
                          (unsigned long long)nbytes, (unsigned long long)n);
        goto done;
    }
    if ((st = alloc_mask(n, fn, &m)))
        goto done;
    bytes = malloc(nbytes ? (size_t)nbytes : 1);
    if (!bytes) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", fn);
        goto done;
    }
    if (nbytes && (st = sresid_model_read_raw(model, index, bytes, (size_t)nbytes)))
        goto done;
    if (n % 8 && (bytes[nbytes - 1] >> (n % 8))) {
        st = sresid__fail(SRESID_ERR_SHAPE, "%s: padding bits past entry %llu are set (byte %llu)",
                          path, (unsigned long long)n, (unsigned long long)(nbytes - 1));
        goto done;
    }
    for (uint64_t b = 0; b < nbytes; b++)
        m->words[b / 8] |= (uint64_t)bytes[b] << (8 * (b % 8));
done:
    free(bytes);
    sresid_model_free(model);
    if (st) {
        sresid_mask_free(m);
        if (strncmp(sresid_last_error(), fn, sizeof fn - 1))
            sresid__fail(st, "%s: %s", fn, sresid_last_error());
        return st;
    }
    *out = m;
    return SRESID_OK;
}
