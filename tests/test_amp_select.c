/* Check suite of the amplitude selection rules, drop-and-grow and the captured share.
 *
 * References are written here independently: a sort-based top-k with the
 * documented count and tie rules, a sort-based drop-and-grow, and closed
 * forms for the share: with orthonormal U, V and R = U A V^T + C where
 * U^T C = 0, |R|^2 = |A|^2 + |C|^2 and U^T R V = A exactly.
 *
 * Most cases run on amps assembled here from a known basis (struct
 * sresid_amp of src/util/util.h), so the share's closed form does not lean on
 * the SVD; the last ones go through sresid_amp_create. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "amp/amp.h"
#include "testutil.h"

#define ALL_KINDS ((1u << SRESID_KIND_COUNT) - 1u)

/* ---- a sort-based reference ---- */

static const float *g_key;
static int g_abs; /* compare |key| rather than key */

static float key_of(size_t i)
{
    return g_abs ? fabsf(g_key[i]) : g_key[i];
}

/* largest first, ties to the lower index */
static int cmp_desc_low(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    float x = key_of(i), y = key_of(j);
    if (x != y)
        return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* smallest first, ties to the higher index */
static int cmp_asc_high(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    float x = key_of(i), y = key_of(j);
    if (x != y)
        return x < y ? -1 : 1;
    return i > j ? -1 : i < j;
}

static uint64_t count_of(double f, uint64_t n)
{
    return (uint64_t)floor(f * (double)n + 0.5);
}

/* out[i] = 1 for the top fraction of x by |x| in each segment; returns the
 * number set. offs NULL: one segment. */
static uint64_t ref_top(const float *x, uint64_t n, double f, const uint64_t *offs, size_t nseg,
                        uint8_t *out)
{
    uint64_t one[2] = {0, n};
    if (!offs) {
        offs = one;
        nseg = 1;
    }
    memset(out, 0, n);
    uint64_t total = 0;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    for (size_t s = 0; s < nseg; s++) {
        uint64_t lo = offs[s], len = offs[s + 1] - lo;
        for (uint64_t i = 0; i < len; i++)
            idx[i] = lo + i;
        g_key = x;
        g_abs = 1;
        qsort(idx, len, sizeof *idx, cmp_desc_low);
        uint64_t k = count_of(f, len);
        for (uint64_t i = 0; i < k; i++)
            out[idx[i]] = 1;
        total += k;
    }
    free(idx);
    return total;
}

static uint8_t *mask_bytes(const sresid_mask *m)
{
    uint64_t n = sresid_mask_size(m);
    uint8_t *b = malloc(n ? n : 1);
    ck_assert_ok(sresid_mask_to_bytes(m, b, n));
    return b;
}

static void assert_mask_eq(const sresid_mask *m, const uint8_t *want, uint64_t n, const char *what)
{
    ck_assert_uint_eq(sresid_mask_size(m), n);
    uint8_t *got = mask_bytes(m);
    for (uint64_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s: entry %llu is %d, want %d", what,
                      (unsigned long long)i, got[i], want[i]);
    free(got);
}

/* ---- amps assembled from a known basis ---- */

/* Orthonormal columns: m x r (r <= m), row-major, by modified Gram-Schmidt
 * in double on Gaussian draws. */
static double *orthonormal(int64_t m, int64_t r, uint64_t seed)
{
    double *q = malloc((size_t)(m * r) * sizeof *q);
    for (int64_t i = 0; i < m * r; i++)
        q[i] = tu_rand_normal(&seed);
    for (int64_t j = 0; j < r; j++) {
        for (int pass = 0; pass < 2; pass++) /* twice is enough in double */
            for (int64_t k = 0; k < j; k++) {
                double d = 0;
                for (int64_t i = 0; i < m; i++)
                    d += q[i * r + j] * q[i * r + k];
                for (int64_t i = 0; i < m; i++)
                    q[i * r + j] -= d * q[i * r + k];
            }
        double nrm = 0;
        for (int64_t i = 0; i < m; i++)
            nrm += q[i * r + j] * q[i * r + j];
        nrm = sqrt(nrm);
        for (int64_t i = 0; i < m; i++)
            q[i * r + j] /= nrm;
    }
    return q;
}

static float *to_f32_slack(const double *x, size_t n)
{
    float *f = calloc(n + SRESID__BLAS_SLACK, sizeof *f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    return f;
}

/* Shapes of the assembled amp: tensor t is rows x cols with rank r (the
 * first truncated), and a vector between them that is not selected. */
#define NT 2
static const int64_t F_ROWS[NT] = {12, 6}, F_COLS[NT] = {7, 9}, F_RANK[NT] = {5, 6};
static const char *const F_NAMES[NT] = {"layers.0.attn.q", "layers.1.mlp.w"};

typedef struct fake {
    sresid_amp *amp;
    double *u[NT], *v[NT]; /* the basis in double */
    double *w0[NT];        /* base matrices */
} fake;

static void add_f32(sresid_model *m, const char *name, int64_t rows, int64_t cols, const double *x)
{
    size_t n = (size_t)(rows * cols);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    int64_t shape[2] = {rows, cols};
    ck_assert_ok(sresid_model_add_tensor(m, name, SRESID_DTYPE_F32, rows == 1 ? 1 : 2,
                                         rows == 1 ? shape + 1 : shape, f, n * sizeof *f, 0));
    free(f);
}

/* s0 of tensor t, entry j (DIAG): a few values repeat and some are negative
 * so that ties and |.| matter (an amp built by sresid_amp_create has
 * descending non-negative values; the rules do not rely on it). */
static double fake_s0(size_t t, int64_t j)
{
    static const double vals[] = {3.0, -2.0, 2.0, 0.5, 1.25, 2.0, -0.5, 4.0, 1.25, 0.75, 3.0};
    return vals[(t * 5 + (size_t)j) % (sizeof vals / sizeof vals[0])];
}

static fake make_fake(int32_t layout, uint64_t seed)
{
    fake f = {0};
    sresid_model *base = NULL;
    ck_assert_ok(sresid_model_create(NULL, &base));
    sresid_amp *a = calloc(1, sizeof *a);
    a->base = base;
    a->layout = layout;
    a->count = NT;
    a->t = calloc(NT, sizeof *a->t);
    a->offsets = calloc(NT + 1, sizeof *a->offsets);
    uint64_t off = 0;
    for (size_t t = 0; t < NT; t++) {
        int64_t m = F_ROWS[t], n = F_COLS[t], r = F_RANK[t];
        f.u[t] = orthonormal(m, r, seed + 10 * t + 1);
        f.v[t] = orthonormal(n, r, seed + 10 * t + 2);
        f.w0[t] = malloc((size_t)(m * n) * sizeof(double));
        uint64_t s = seed + 10 * t + 3;
        for (int64_t i = 0; i < m * n; i++)
            f.w0[t][i] = tu_rand_normal(&s);
        add_f32(base, F_NAMES[t], m, n, f.w0[t]);
        if (t == 0) {
            double vec[4] = {1, 2, 3, 4};
            add_f32(base, "layers.0.bias", 1, 4, vec);
        }
        sresid__amp_tensor *at = &a->t[t];
        at->index = t == 0 ? 0 : 2;
        at->rows = m;
        at->cols = n;
        at->rank = r;
        at->offset = off;
        at->count = layout == SRESID_AMP_CORE ? (uint64_t)(r * r) : (uint64_t)r;
        at->u = to_f32_slack(f.u[t], (size_t)(m * r));
        at->v = to_f32_slack(f.v[t], (size_t)(n * r));
        a->offsets[t] = off;
        off += at->count;
    }
    a->offsets[NT] = off;
    a->nscores = off;
    a->scores = calloc(off + SRESID__BLAS_SLACK, sizeof(float));
    a->s0 = calloc(off + SRESID__BLAS_SLACK, sizeof(float));
    for (size_t t = 0; t < NT; t++)
        for (int64_t j = 0; j < F_RANK[t]; j++) {
            uint64_t i = a->offsets[t] + (layout == SRESID_AMP_CORE ? (uint64_t)(j * F_RANK[t] + j)
                                                                     : (uint64_t)j);
            a->s0[i] = (float)fake_s0(t, j);
        }
    memcpy(a->scores, a->s0, off * sizeof(float));
    f.amp = a;
    return f;
}

static void free_fake(fake *f)
{
    sresid_amp *a = f->amp;
    for (size_t t = 0; t < NT; t++) {
        free(a->t[t].u);
        free(a->t[t].v);
        free(f->u[t]);
        free(f->v[t]);
        free(f->w0[t]);
    }
    sresid_model_free((sresid_model *)a->base);
    free(a->t);
    free(a->offsets);
    free(a->scores);
    free(a->s0);
    free(a);
}

/* ---- selection rules ---- */

static void check_select(const sresid_amp *a, int32_t rule, double f, uint32_t flags,
                         const float *key, const float *saliency)
{
    uint64_t n = a->nscores;
    uint8_t *want = malloc(n);
    uint64_t k = ref_top(key, n, f, flags ? a->offsets : NULL, flags ? a->count : 0, want);
    sresid_select_opts o = {.size = sizeof o, .flags = flags, .saliency = saliency};
    sresid_mask *m = NULL;
    ck_assert_ok(sresid_amp_select(a, rule, f, &o, &m));
    ck_assert_uint_eq(sresid_mask_count(m), k);
    assert_mask_eq(m, want, n, "select");
    sresid_mask_free(m);
    free(want);
}

static const double FRACTIONS[] = {0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.77, 1};
#define NFRAC (sizeof FRACTIONS / sizeof FRACTIONS[0])

START_TEST(select_magnitude)
{
    for (int32_t layout = 0; layout < 2; layout++) {
        fake f = make_fake(layout, 7);
        for (size_t i = 0; i < NFRAC; i++)
            for (uint32_t flags = 0; flags < 2; flags++)
                check_select(f.amp, SRESID_RULE_MAGNITUDE, FRACTIONS[i], flags, f.amp->s0, NULL);
        free_fake(&f);
    }
}
END_TEST

START_TEST(select_counts_by_hand)
{
    /* DIAG: tensor 0 has s0 = 3, -2, 2, 0.5, 1.25 and tensor 1
     * 2, -0.5, 4, 1.25, 0.75, 3 (fake_s0). Global 25 % of 11: k = 3,
     * the largest |s0| are 4 (index 7), 3 (index 0) and 3 (index 10). */
    fake f = make_fake(SRESID_AMP_DIAG, 1);
    sresid_mask *m = NULL;
    ck_assert_ok(sresid_amp_select(f.amp, SRESID_RULE_MAGNITUDE, 0.25, NULL, &m));
    uint8_t *b = mask_bytes(m);
    static const uint8_t want[11] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1};
    ck_assert_mem_eq(b, want, 11);
    free(b);
    sresid_mask_free(m);
    /* per tensor at 40 %: k = 2 of 5 (3, then |-2| and 2 tie: the lower
     * index 1) and k = 2 of 6 (4 at 7 and 3 at 10) */
    sresid_select_opts o = {.size = sizeof o, .flags = SRESID_SELECT_PER_TENSOR};
    ck_assert_ok(sresid_amp_select(f.amp, SRESID_RULE_MAGNITUDE, 0.4, &o, &m));
    b = mask_bytes(m);
    static const uint8_t want2[11] = {1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1};
    ck_assert_mem_eq(b, want2, 11);
    free(b);
    sresid_mask_free(m);
    free_fake(&f);
}
END_TEST

START_TEST(select_random)
{
    fake f = make_fake(SRESID_AMP_CORE, 3);
    const sresid_amp *a = f.amp;
    for (size_t i = 0; i < NFRAC; i++)
        for (uint32_t flags = 0; flags < 2; flags++) {
            sresid_select_opts o = {.size = sizeof o, .flags = flags, .seed = 42};
            sresid_mask *m = NULL, *same = NULL, *ref = NULL;
            ck_assert_ok(sresid_amp_select(a, SRESID_RULE_RANDOM, FRACTIONS[i], &o, &m));
            /* exact counts: per segment with the flag, in total without */
            if (flags)
                for (size_t t = 0; t < a->count; t++) {
                    uint64_t c = 0, len = a->offsets[t + 1] - a->offsets[t];
                    ck_assert_ok(sresid_mask_count_range(m, a->offsets[t], len, &c));
                    ck_assert_uint_eq(c, count_of(FRACTIONS[i], len));
                }
            else
                ck_assert_uint_eq(sresid_mask_count(m), count_of(FRACTIONS[i], a->nscores));
            /* the rule is sresid_mask_random over the score segments */
            ck_assert_ok(sresid_mask_random(a->nscores, FRACTIONS[i], 42,
                                            flags ? a->offsets : NULL, flags ? a->count : 0, &ref));
            double jac = 0;
            ck_assert_ok(sresid_mask_jaccard(m, ref, &jac));
            ck_assert_double_eq(jac, 1.0);
            ck_assert_ok(sresid_amp_select(a, SRESID_RULE_RANDOM, FRACTIONS[i], &o, &same));
            ck_assert_ok(sresid_mask_jaccard(m, same, &jac));
            ck_assert_double_eq(jac, 1.0);
            sresid_mask_free(m);
            sresid_mask_free(same);
            sresid_mask_free(ref);
        }
    /* another seed, another mask (61 scores, 30 chosen: equal by chance
     * with probability 1 / C(61, 30)) */
    sresid_select_opts o1 = {.size = sizeof o1, .seed = 1}, o2 = {.size = sizeof o2, .seed = 2};
    sresid_mask *m1 = NULL, *m2 = NULL;
    ck_assert_ok(sresid_amp_select(a, SRESID_RULE_RANDOM, 0.5, &o1, &m1));
    ck_assert_ok(sresid_amp_select(a, SRESID_RULE_RANDOM, 0.5, &o2, &m2));
    double jac = 0;
    ck_assert_ok(sresid_mask_jaccard(m1, m2, &jac));
    ck_assert(jac < 1.0);
    sresid_mask_free(m1);
    sresid_mask_free(m2);
    free_fake(&f);
}
END_TEST

START_TEST(select_gradient_and_warmup)
{
    for (int32_t layout = 0; layout < 2; layout++) {
        fake f = make_fake(layout, 11);
        sresid_amp *a = f.amp;
        uint64_t n = a->nscores, s = 99;
        float *sal = malloc(n * sizeof *sal);
        for (uint64_t i = 0; i < n; i++) /* coarse values: many ties */
            sal[i] = (float)(tu_rand_u64(&s) % 7) * 0.25f;
        /* warm-up: some scores moved, by coarse steps with ties, some down */
        for (uint64_t i = 0; i < n; i++)
            if (tu_rand_u64(&s) % 3)
                a->scores[i] = a->s0[i] + (float)((int)(tu_rand_u64(&s) % 9) - 4) * 0.125f;
        float *change = malloc(n * sizeof *change);
        for (uint64_t i = 0; i < n; i++)
            change[i] = fabsf(a->scores[i] - a->s0[i]);
        for (size_t i = 0; i < NFRAC; i++)
            for (uint32_t flags = 0; flags < 2; flags++) {
                check_select(a, SRESID_RULE_GRADIENT, FRACTIONS[i], flags, sal, sal);
                check_select(a, SRESID_RULE_WARMUP, FRACTIONS[i], flags, change, NULL);
            }
        free(sal);
        free(change);
        free_fake(&f);
    }
}
END_TEST

START_TEST(select_bad_args)
{
    fake f = make_fake(SRESID_AMP_DIAG, 5);
    sresid_amp *a = f.amp;
    sresid_mask *sentinel = (sresid_mask *)&f, *m = sentinel;
    float sal[11] = {0};
    sresid_select_opts o = {.size = sizeof o, .saliency = sal};
    ck_assert_status(sresid_amp_select(NULL, SRESID_RULE_MAGNITUDE, 0.5, NULL, &m),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_MAGNITUDE, 0.5, NULL, NULL),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, 0, 0.5, NULL, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, 5, 0.5, NULL, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_MAGNITUDE, -0.01, NULL, &m),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_MAGNITUDE, 1.01, NULL, &m),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_RANDOM, NAN, NULL, &m),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_GRADIENT, 0.5, NULL, &m),
                     SRESID_ERR_INVALID_ARG);
    ck_assert(strstr(sresid_last_error(), "saliency") != NULL);
    o.flags = 0x2;
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_GRADIENT, 0.5, &o, &m),
                     SRESID_ERR_INVALID_ARG);
    o.flags = 0;
    o.size = 4;
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_GRADIENT, 0.5, &o, &m),
                     SRESID_ERR_INVALID_ARG);
    /* a larger struct with a non-zero tail */
    struct {
        sresid_select_opts o;
        uint64_t extra;
    } big = {.o = {.size = sizeof big, .saliency = sal}, .extra = 1};
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_GRADIENT, 0.5, &big.o, &m),
                     SRESID_ERR_INVALID_ARG);
    o.size = sizeof o;
    sal[4] = NAN;
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_GRADIENT, 0.5, &o, &m),
                     SRESID_ERR_NONFINITE);
    sal[4] = 0;
    a->scores[8] = INFINITY;
    ck_assert_status(sresid_amp_select(a, SRESID_RULE_WARMUP, 0.5, NULL, &m),
                     SRESID_ERR_NONFINITE);
    ck_assert_msg(strstr(sresid_last_error(), "layers.1.mlp.w") != NULL, "%s",
                  sresid_last_error());
    ck_assert_ptr_eq(m, sentinel);
    /* the other rules do not read the scores */
    ck_assert_ok(sresid_amp_select(a, SRESID_RULE_MAGNITUDE, 0.5, NULL, &m));
    ck_assert_ptr_ne(m, sentinel);
    sresid_mask_free(m);
    m = sentinel;
    /* with the large tail zero it is accepted */
    big.extra = 0;
    a->scores[8] = a->s0[8];
    ck_assert_ok(sresid_amp_select(a, SRESID_RULE_GRADIENT, 0.5, &big.o, &m));
    sresid_mask_free(m);
    free_fake(&f);
}
END_TEST

/* ---- drop and grow ---- */

/* The expected result of one drop-and-grow on bytes: mask_before -> want,
 * by the sort-based rule of mask.h. */
static void ref_drop_grow(const uint8_t *before, const float *keep, const float *grow, uint64_t n,
                          double share, const uint64_t *offs, size_t nseg, uint8_t *want,
                          uint8_t *changed)
{
    uint64_t one[2] = {0, n};
    if (!offs) {
        offs = one;
        nseg = 1;
    }
    memcpy(want, before, n);
    memset(changed, 0, n);
    size_t *act = malloc((n ? n : 1) * sizeof *act), *ina = malloc((n ? n : 1) * sizeof *ina);
    for (size_t s = 0; s < nseg; s++) {
        uint64_t na = 0, ni = 0;
        for (uint64_t i = offs[s]; i < offs[s + 1]; i++) {
            if (before[i])
                act[na++] = i;
            else
                ina[ni++] = i;
        }
        uint64_t d = count_of(share, na);
        if (d > ni)
            d = ni;
        g_abs = 0;
        g_key = keep;
        qsort(act, na, sizeof *act, cmp_asc_high);
        g_key = grow;
        qsort(ina, ni, sizeof *ina, cmp_desc_low);
        for (uint64_t j = 0; j < d; j++) {
            want[act[j]] = 0;
            want[ina[j]] = 1;
            changed[act[j]] = changed[ina[j]] = 1;
        }
    }
    free(act);
    free(ina);
}

START_TEST(drop_grow_rule)
{
    static const double shares[] = {0, 0.1, 0.3, 0.5, 1};
    for (int32_t layout = 0; layout < 2; layout++)
        for (uint32_t flags = 0; flags < 2; flags++)
            for (size_t si = 0; si < sizeof shares / sizeof shares[0]; si++) {
                fake f = make_fake(layout, 21 + si);
                sresid_amp *a = f.amp;
                uint64_t n = a->nscores, s = 1234 + si;
                /* start: 40 % by magnitude, then training moves the active scores */
                sresid_select_opts o = {.size = sizeof o, .flags = flags};
                sresid_mask *mask = NULL, *changed = NULL;
                ck_assert_ok(sresid_amp_select(a, SRESID_RULE_MAGNITUDE, 0.4, &o, &mask));
                uint8_t *before = mask_bytes(mask);
                float *sal = malloc(n * sizeof *sal), *keep = malloc(n * sizeof *keep);
                float *old = malloc(n * sizeof *old);
                for (uint64_t i = 0; i < n; i++) {
                    if (before[i])
                        a->scores[i] += (float)((int)(tu_rand_u64(&s) % 5) - 2) * 0.5f;
                    sal[i] = (float)(tu_rand_u64(&s) % 4);
                    keep[i] = fabsf(a->scores[i] - a->s0[i]);
                }
                memcpy(old, a->scores, n * sizeof *old);
                uint8_t *want = malloc(n), *wch = malloc(n);
                ref_drop_grow(before, keep, sal, n, shares[si], flags ? a->offsets : NULL,
                              flags ? a->count : 0, want, wch);
                ck_assert_ok(sresid_mask_create(n, 1, &changed)); /* overwritten */
                ck_assert_ok(sresid_amp_drop_grow(a, mask, shares[si], sal, flags, changed));
                assert_mask_eq(mask, want, n, "mask after drop_grow");
                assert_mask_eq(changed, wch, n, "changed");
                /* counts kept, per tensor with the flag */
                uint8_t *after = mask_bytes(mask);
                for (size_t t = 0; t < a->count; t++) {
                    uint64_t cb = 0, ca = 0;
                    for (uint64_t i = a->offsets[t]; i < a->offsets[t + 1]; i++) {
                        cb += before[i];
                        ca += after[i];
                    }
                    if (flags)
                        ck_assert_uint_eq(ca, cb);
                }
                uint64_t tb = 0, ta = 0;
                for (uint64_t i = 0; i < n; i++) {
                    tb += before[i];
                    ta += after[i];
                    /* dropped scores are back at s0, all others untouched */
                    if (before[i] && !after[i])
                        ck_assert_msg(a->scores[i] == a->s0[i], "dropped score %llu not reset",
                                      (unsigned long long)i);
                    else
                        ck_assert_msg(a->scores[i] == old[i], "score %llu changed",
                                      (unsigned long long)i);
                }
                ck_assert_uint_eq(ta, tb);
                /* the same without a changed mask */
                memcpy(a->scores, old, n * sizeof *old);
                sresid_mask *again = NULL;
                ck_assert_ok(sresid_mask_from_bytes(before, n, &again));
                ck_assert_ok(sresid_amp_drop_grow(a, again, shares[si], sal, flags, NULL));
                assert_mask_eq(again, want, n, "mask, changed NULL");
                for (uint64_t i = 0; i < n; i++)
                    ck_assert(a->scores[i] == (before[i] && !want[i] ? a->s0[i] : old[i]));
                sresid_mask_free(again);
                free(after);
                free(before);
                free(want);
                free(wch);
                free(sal);
                free(keep);
                free(old);
                sresid_mask_free(mask);
                sresid_mask_free(changed);
                free_fake(&f);
            }
}
END_TEST

START_TEST(drop_grow_failures_change_nothing)
{
    fake f = make_fake(SRESID_AMP_DIAG, 31);
    sresid_amp *a = f.amp;
    uint64_t n = a->nscores;
    sresid_mask *mask = NULL, *changed = NULL, *small = NULL;
    ck_assert_ok(sresid_amp_select(a, SRESID_RULE_MAGNITUDE, 0.5, NULL, &mask));
    ck_assert_ok(sresid_mask_create(n, 1, &changed));
    ck_assert_ok(sresid_mask_create(n - 1, 0, &small));
    for (uint64_t i = 0; i < n; i++)
        a->scores[i] = a->s0[i] + 0.1f * (float)i;
    float *sal = calloc(n, sizeof *sal), *old = malloc(n * sizeof *old);
    memcpy(old, a->scores, n * sizeof *old);
    uint8_t *mb = mask_bytes(mask);

    ck_assert_status(sresid_amp_drop_grow(NULL, mask, 0.5, sal, 0, changed),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, NULL, 0.5, sal, 0, changed), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, mask, 0.5, NULL, 0, changed),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, mask, 1.5, sal, 0, changed), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, mask, NAN, sal, 0, changed), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, mask, 0.5, sal, 4, changed), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, mask, 0.5, sal, 0, mask), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_drop_grow(a, small, 0.5, sal, 0, changed), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_amp_drop_grow(a, mask, 0.5, sal, 0, small), SRESID_ERR_SHAPE);
    sal[3] = NAN;
    ck_assert_status(sresid_amp_drop_grow(a, mask, 0.5, sal, 0, changed), SRESID_ERR_NONFINITE);
    sal[3] = 0;
    a->scores[2] = NAN;
    old[2] = NAN;
    ck_assert_status(sresid_amp_drop_grow(a, mask, 0.5, sal, SRESID_SELECT_PER_TENSOR, changed),
                     SRESID_ERR_NONFINITE);
    ck_assert_msg(strstr(sresid_last_error(), "layers.0.attn.q") != NULL, "%s",
                  sresid_last_error());
    /* nothing moved: mask, changed (all set), scores */
    assert_mask_eq(mask, mb, n, "mask after failures");
    ck_assert_uint_eq(sresid_mask_count(changed), n);
    for (uint64_t i = 0; i < n; i++)
        ck_assert(i == 2 ? isnan(a->scores[i]) : a->scores[i] == old[i]);
    free(sal);
    free(old);
    free(mb);
    sresid_mask_free(mask);
    sresid_mask_free(changed);
    sresid_mask_free(small);
    free_fake(&f);
}
END_TEST

/* ---- captured share ---- */

typedef struct closed {
    sresid_model *trained;
    double energy[NT + 1], captured[NT + 1];
    float *a[NT]; /* the true U^T R V (r x r, row-major) */
} closed;

/* trained = W0 + U A V^T + C with U^T C = 0 and known energies. A's entries
 * are well apart in magnitude so that the oracle's order is not a near tie. */
static closed make_trained(const fake *f, uint64_t seed)
{
    closed c = {0};
    const sresid_amp *amp = f->amp;
    ck_assert_ok(sresid_model_create(NULL, &c.trained));
    double etot = 0, ctot = 0;
    for (size_t t = 0; t < NT; t++) {
        int64_t m = F_ROWS[t], n = F_COLS[t], r = F_RANK[t];
        const double *u = f->u[t], *v = f->v[t];
        double *A = malloc((size_t)(r * r) * sizeof *A);
        c.a[t] = malloc((size_t)(r * r) * sizeof(float));
        uint64_t s = seed + t;
        /* a permutation of magnitudes 0.3 + 0.11 k + 0.037 t, distinct over
         * both tensors; random signs */
        for (int64_t k = 0; k < r * r; k++)
            A[k] = 0.3 + 0.11 * (double)k + 0.037 * (double)t;
        for (int64_t k = r * r - 1; k > 0; k--) {
            int64_t j = (int64_t)(tu_rand_u64(&s) % (uint64_t)(k + 1));
            double tmp = A[k];
            A[k] = A[j];
            A[j] = tmp;
        }
        for (int64_t k = 0; k < r * r; k++) {
            if (tu_rand_u64(&s) & 1)
                A[k] = -A[k];
            c.a[t][k] = (float)A[k];
        }
        /* G Gaussian, C = (I - U U^T) G */
        double *C = malloc((size_t)(m * n) * sizeof *C), *tr = malloc((size_t)(m * n) * sizeof *tr);
        for (int64_t i = 0; i < m * n; i++)
            C[i] = 0.7 * tu_rand_normal(&s);
        for (int64_t j = 0; j < n; j++)
            for (int64_t k = 0; k < r; k++) {
                double d = 0;
                for (int64_t i = 0; i < m; i++)
                    d += u[i * r + k] * C[i * n + j];
                for (int64_t i = 0; i < m; i++)
                    C[i * n + j] -= d * u[i * r + k];
            }
        double ce = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double x = C[i * n + j];
                for (int64_t p = 0; p < r; p++)
                    for (int64_t q = 0; q < r; q++)
                        x += u[i * r + p] * A[p * r + q] * v[j * r + q];
                tr[i * n + j] = f->w0[t][i * n + j] + x;
                ce += C[i * n + j] * C[i * n + j];
            }
        double asq = 0, dsq = 0;
        for (int64_t p = 0; p < r; p++)
            for (int64_t q = 0; q < r; q++) {
                asq += A[p * r + q] * A[p * r + q];
                if (p == q)
                    dsq += A[p * r + q] * A[p * r + q];
            }
        double kept = amp->layout == SRESID_AMP_CORE ? asq : dsq;
        c.energy[t] = asq + ce;
        c.captured[t] = kept / (asq + ce);
        etot += asq + ce;
        ctot += kept;
        add_f32(c.trained, F_NAMES[t], m, n, tr);
        free(A);
        free(C);
        free(tr);
    }
    c.energy[NT] = etot;
    c.captured[NT] = ctot / etot;
    return c;
}

static void free_closed(closed *c)
{
    sresid_model_free(c->trained);
    for (size_t t = 0; t < NT; t++)
        free(c->a[t]);
}

/* The true D of every score (the layout's entries of A), as one vector. */
static float *true_d(const fake *f, const closed *c)
{
    const sresid_amp *a = f->amp;
    float *d = malloc(a->nscores * sizeof *d);
    for (size_t t = 0; t < NT; t++) {
        int64_t r = F_RANK[t];
        for (int64_t j = 0; j < (a->layout == SRESID_AMP_CORE ? r * r : r); j++)
            d[a->offsets[t] + (uint64_t)j] =
                a->layout == SRESID_AMP_CORE ? c->a[t][j] : c->a[t][j * r + j];
    }
    return d;
}

#define ck_close(got, want, tol)                                                              \
    do {                                                                                      \
        double g_ = (got), w_ = (want);                                                       \
        ck_assert_msg(fabs(g_ - w_) <= (tol), "%s = %.10g, want %.10g", #got, g_, w_);        \
    } while (0)

START_TEST(share_closed_form)
{
    static const double fr[] = {1, 0.5, 0.25, 0.1, 0.05, 0};
    enum { NF = sizeof fr / sizeof fr[0] };
    for (int32_t layout = 0; layout < 2; layout++)
        for (uint32_t flags = 0; flags < 2; flags++) {
            fake f = make_fake(layout, 41);
            closed c = make_trained(&f, 77);
            const sresid_amp *a = f.amp;
            double e[NT + 1], cap[NT + 1], cm[(NT + 1) * NF], co[(NT + 1) * NF];
            ck_assert_ok(sresid_amp_share(a, c.trained, fr, NF, flags, e, cap, cm, co));
            for (size_t t = 0; t <= NT; t++) {
                ck_close(e[t], c.energy[t], 1e-5 * c.energy[t]);
                ck_close(cap[t], c.captured[t], 1e-5);
            }
            /* fractions: choose by |s0| or by the true |D|, sum the true D^2 */
            float *d = true_d(&f, &c);
            uint8_t *pick = malloc(a->nscores);
            for (size_t k = 0; k < NF; k++)
                for (int which = 0; which < 2; which++) {
                    ref_top(which ? d : a->s0, a->nscores, fr[k], flags ? a->offsets : NULL,
                            flags ? a->count : 0, pick);
                    double tot = 0;
                    for (size_t t = 0; t < NT; t++) {
                        double s = 0;
                        for (uint64_t i = a->offsets[t]; i < a->offsets[t + 1]; i++)
                            if (pick[i])
                                s += (double)d[i] * d[i];
                        tot += s;
                        double got = (which ? co : cm)[t * NF + k];
                        ck_close(got, s / c.energy[t], 1e-5);
                    }
                    ck_close((which ? co : cm)[NT * NF + k], tot / c.energy[NT], 1e-5);
                }
            /* all scores: both rules capture everything the span holds */
            for (size_t t = 0; t <= NT; t++) {
                ck_close(cm[t * NF], cap[t], 1e-12);
                ck_close(co[t * NF], cap[t], 1e-12);
                ck_assert(cm[t * NF + NF - 1] == 0 && co[t * NF + NF - 1] == 0);
            }
            free(pick);
            free(d);
            free_closed(&c);
            free_fake(&f);
        }
}
END_TEST

START_TEST(share_threads_and_outputs)
{
    fake f = make_fake(SRESID_AMP_CORE, 51);
    closed c = make_trained(&f, 52);
    double fr[3] = {0.5, 0.2, 0.9};
    double e1[NT + 1], c1[NT + 1], m1[9], o1[9], e2[NT + 1], c2[NT + 1], m2[9], o2[9];
    ck_assert_ok(sresid_set_threads(1));
    ck_assert_ok(sresid_amp_share(f.amp, c.trained, fr, 3, 0, e1, c1, m1, o1));
    ck_assert_ok(sresid_set_threads(2));
    ck_assert_ok(sresid_amp_share(f.amp, c.trained, fr, 3, 0, e2, c2, m2, o2));
    ck_assert_ok(sresid_set_threads(0));
    ck_assert_mem_eq(e1, e2, sizeof e1);
    ck_assert_mem_eq(c1, c2, sizeof c1);
    ck_assert_mem_eq(m1, m2, sizeof m1);
    ck_assert_mem_eq(o1, o2, sizeof o1);
    /* any output may be NULL; the others are the same */
    double c3[NT + 1];
    ck_assert_ok(sresid_amp_share(f.amp, c.trained, NULL, 0, 0, NULL, c3, NULL, NULL));
    ck_assert_mem_eq(c1, c3, sizeof c1);
    /* the oracle's total is at least magnitude's at every fraction (it picks
     * the largest D over all scores; a tensor's row may be lower) */
    for (size_t k = 0; k < 3; k++)
        ck_assert(o1[NT * 3 + k] >= m1[NT * 3 + k] - 1e-12);
    free_closed(&c);
    free_fake(&f);
}
END_TEST

START_TEST(share_zero_residual)
{
    fake f = make_fake(SRESID_AMP_DIAG, 61);
    double fr = 0.5, e[NT + 1], cap[NT + 1], cm[NT + 1], co[NT + 1];
    /* the base against itself: no energy, nothing to capture */
    ck_assert_ok(sresid_amp_share(f.amp, f.amp->base, &fr, 1, 0, e, cap, cm, co));
    for (size_t t = 0; t <= NT; t++) {
        ck_assert(e[t] == 0);
        ck_assert(isnan(cap[t]) && isnan(cm[t]) && isnan(co[t]));
    }
    free_fake(&f);
}
END_TEST

START_TEST(share_mismatch_and_bad_args)
{
    fake f = make_fake(SRESID_AMP_DIAG, 71);
    closed c = make_trained(&f, 72);
    const sresid_amp *a = f.amp;
    double fr[2] = {0.5, 0.1};
    double e[NT + 1], cap[NT + 1], cm[2 * (NT + 1)], co[2 * (NT + 1)];
    for (size_t i = 0; i < NT + 1; i++)
        e[i] = cap[i] = -7;
    for (size_t i = 0; i < 2 * (NT + 1); i++)
        cm[i] = co[i] = -7;

    ck_assert_status(sresid_amp_share(NULL, c.trained, fr, 2, 0, e, cap, cm, co),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_share(a, NULL, fr, 2, 0, e, cap, cm, co), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_share(a, c.trained, NULL, 2, 0, e, cap, cm, co),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_share(a, c.trained, fr, 2, 2, e, cap, cm, co),
                     SRESID_ERR_INVALID_ARG);
    fr[1] = NAN;
    ck_assert_status(sresid_amp_share(a, c.trained, fr, 2, 0, e, cap, cm, co),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_msg(strstr(sresid_last_error(), "fractions[1]") != NULL, "%s", sresid_last_error());
    fr[1] = 1.5;
    ck_assert_status(sresid_amp_share(a, c.trained, fr, 2, 0, e, cap, cm, co),
                     SRESID_ERR_INVALID_ARG);
    fr[1] = 0.1;
    ck_assert_status(sresid_amp_share(a, c.trained, fr, SIZE_MAX / 2, 0, e, cap, cm, co),
                     SRESID_ERR_INVALID_ARG);

    /* missing tensor, another shape, an integer tensor: MISMATCH naming it */
    sresid_model *t2 = NULL;
    ck_assert_ok(sresid_model_create(NULL, &t2));
    double z[54] = {0};
    add_f32(t2, "layers.0.attn.q", 12, 7, f.w0[0]);
    ck_assert_status(sresid_amp_share(a, t2, fr, 2, 0, e, cap, cm, co), SRESID_ERR_MISMATCH);
    ck_assert_msg(strstr(sresid_last_error(), "layers.1.mlp.w") != NULL, "%s", sresid_last_error());
    add_f32(t2, "layers.1.mlp.w", 9, 6, z);
    ck_assert_status(sresid_amp_share(a, t2, fr, 2, 0, e, cap, cm, co), SRESID_ERR_MISMATCH);
    ck_assert_msg(strstr(sresid_last_error(), "layers.1.mlp.w") != NULL &&
                      strstr(sresid_last_error(), "shape") != NULL,
                  "%s", sresid_last_error());
    sresid_model_free(t2);
    ck_assert_ok(sresid_model_create(NULL, &t2));
    add_f32(t2, "layers.0.attn.q", 12, 7, f.w0[0]);
    int32_t ints[54] = {0};
    int64_t shape[2] = {6, 9};
    ck_assert_ok(sresid_model_add_tensor(t2, "layers.1.mlp.w", SRESID_DTYPE_I32, 2, shape, ints,
                                         sizeof ints, 0));
    ck_assert_status(sresid_amp_share(a, t2, fr, 2, 0, e, cap, cm, co), SRESID_ERR_MISMATCH);
    ck_assert_msg(strstr(sresid_last_error(), "layers.1.mlp.w") != NULL, "%s", sresid_last_error());
    sresid_model_free(t2);

    /* a NaN in the trained weights */
    ck_assert_ok(sresid_model_create(NULL, &t2));
    double *w = malloc(54 * sizeof *w);
    memcpy(w, f.w0[1], 54 * sizeof *w);
    w[17] = NAN;
    add_f32(t2, "layers.0.attn.q", 12, 7, f.w0[0]);
    add_f32(t2, "layers.1.mlp.w", 6, 9, w);
    ck_assert_status(sresid_amp_share(a, t2, fr, 2, 0, e, cap, cm, co), SRESID_ERR_NONFINITE);
    ck_assert_msg(strstr(sresid_last_error(), "layers.1.mlp.w") != NULL, "%s", sresid_last_error());
    sresid_model_free(t2);
    free(w);

    /* nothing was written by any failure */
    for (size_t i = 0; i < NT + 1; i++)
        ck_assert(e[i] == -7 && cap[i] == -7);
    for (size_t i = 0; i < 2 * (NT + 1); i++)
        ck_assert(cm[i] == -7 && co[i] == -7);
    /* extra trained tensors are fine */
    double extra[4] = {1, 2, 3, 4};
    add_f32(c.trained, "extra", 2, 2, extra);
    ck_assert_ok(sresid_amp_share(a, c.trained, fr, 2, SRESID_SELECT_PER_TENSOR, e, cap, cm, co));
    free_closed(&c);
    free_fake(&f);
}
END_TEST

/* ---- through sresid_amp_create ---- */

/* A base whose matrices have a known SVD: W0 = Q diag(s0) P^T with
 * distinct s0, so the amp's basis is Q, P up to signs (squares do not see
 * them). */
START_TEST(share_created_amp)
{
    const int64_t m = 20, n = 14, r = 14;
    double *q = orthonormal(m, r, 5), *p = orthonormal(n, r, 6);
    double *w0 = calloc((size_t)(m * n), sizeof *w0), *tr = malloc((size_t)(m * n) * sizeof *tr);
    double s0[14], A[14 * 14];
    uint64_t s = 8;
    for (int64_t j = 0; j < r; j++)
        s0[j] = 10.0 - 0.6 * (double)j;
    for (int64_t k = 0; k < r * r; k++)
        A[k] = tu_rand_normal(&s);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double x = 0, y = 0;
            for (int64_t a = 0; a < r; a++) {
                x += q[i * r + a] * s0[a] * p[j * r + a];
                for (int64_t b = 0; b < r; b++)
                    y += q[i * r + a] * A[a * r + b] * p[j * r + b];
            }
            w0[i * n + j] = x;
            tr[i * n + j] = x + y; /* C = 0: r = n, V spans everything */
        }
    sresid_model *base = NULL, *trained = NULL;
    ck_assert_ok(sresid_model_create(NULL, &base));
    ck_assert_ok(sresid_model_create(NULL, &trained));
    add_f32(base, "blocks.0.mlp.fc", m, n, w0);
    add_f32(trained, "blocks.0.mlp.fc", m, n, tr);
    double asq = 0, dsq = 0;
    for (int64_t a = 0; a < r; a++)
        for (int64_t b = 0; b < r; b++) {
            asq += A[a * r + b] * A[a * r + b];
            if (a == b)
                dsq += A[a * r + b] * A[a * r + b];
        }
    for (int32_t layout = 0; layout < 2; layout++) {
        sresid_amp_opts o = {.size = sizeof o, .layout = layout, .kinds = ALL_KINDS};
        sresid_amp *amp = NULL;
        ck_assert_ok(sresid_amp_create(base, &o, &amp));
        double fr[2] = {1, 0.5}, e[2], cap[2], cm[4], co[4];
        ck_assert_ok(sresid_amp_share(amp, trained, fr, 2, 0, e, cap, cm, co));
        ck_close(e[0], asq, 1e-4 * asq);
        ck_close(cap[0], layout == SRESID_AMP_CORE ? 1.0 : dsq / asq, 1e-4);
        ck_close(cap[1], cap[0], 1e-15);
        /* DIAG, half the scores by magnitude: s0 descends, so j < 7 */
        if (layout == SRESID_AMP_DIAG) {
            double half = 0;
            for (int64_t j = 0; j < 7; j++)
                half += A[j * r + j] * A[j * r + j];
            ck_close(cm[1], half / asq, 1e-4);
        } else {
            /* CORE: 98 of 196 by |s0|: the 14 diagonal entries, then the
             * zeros off the diagonal by index (row 0, 1, ... up to 84 of them) */
            double want = 0;
            int64_t left = 98 - r;
            for (int64_t a = 0; a < r; a++)
                for (int64_t b = 0; b < r; b++)
                    if (a == b || (left > 0 && left--))
                        want += A[a * r + b] * A[a * r + b];
            ck_close(cm[1], want / asq, 1e-4);
            /* and the selection rule agrees */
            sresid_mask *mk = NULL;
            ck_assert_ok(sresid_amp_select(amp, SRESID_RULE_MAGNITUDE, 0.5, NULL, &mk));
            uint8_t *b = mask_bytes(mk);
            left = 98 - r;
            for (int64_t a = 0; a < r; a++)
                for (int64_t c = 0; c < r; c++) {
                    int expect = a == c || (left > 0 && left--);
                    ck_assert_msg(b[a * r + c] == expect, "CORE magnitude entry (%lld, %lld)",
                                  (long long)a, (long long)c);
                }
            free(b);
            sresid_mask_free(mk);
        }
        /* the oracle at 50 % keeps the larger half of the D^2 */
        ck_assert(co[1] >= cm[1] - 1e-12);
        sresid_amp_free(amp);
    }
    sresid_model_free(base);
    sresid_model_free(trained);
    free(q);
    free(p);
    free(w0);
    free(tr);
}
END_TEST

/* Drop-and-grow as a training loop uses it, on a created amp: W changes
 * only through active scores, and a dropped score leaves W as if never
 * trained. */
START_TEST(drop_grow_created_amp)
{
    const int64_t m = 16, n = 10;
    sresid_model *base = NULL;
    ck_assert_ok(sresid_model_create(NULL, &base));
    double *w = malloc((size_t)(m * n) * sizeof *w);
    uint64_t s = 3;
    for (int64_t i = 0; i < m * n; i++)
        w[i] = tu_rand_normal(&s);
    add_f32(base, "h.0.attn.c_proj", m, n, w);
    sresid_amp *amp = NULL;
    ck_assert_ok(sresid_amp_create(base, NULL, &amp));
    uint64_t ns = sresid_amp_score_count(amp);
    ck_assert_uint_eq(ns, 10);
    sresid_mask *mask = NULL, *changed = NULL;
    ck_assert_ok(sresid_amp_select(amp, SRESID_RULE_MAGNITUDE, 0.5, NULL, &mask));
    ck_assert_ok(sresid_mask_create(ns, 0, &changed));
    float *sc = sresid_amp_scores(amp);
    const float *s0 = sresid_amp_initial_scores(amp);
    uint8_t *before = mask_bytes(mask);
    for (uint64_t i = 0; i < ns; i++)
        if (before[i])
            sc[i] += 0.01f * (float)(i + 1); /* score 0 moves least: it is dropped */
    float sal[10] = {0, 0, 0, 0, 0, 0, 0, 0, 5, 0};
    ck_assert_ok(sresid_amp_drop_grow(amp, mask, 0.2, sal, 0, changed));
    uint8_t *after = mask_bytes(mask), *ch = mask_bytes(changed);
    static const uint8_t want_after[10] = {0, 1, 1, 1, 1, 0, 0, 0, 1, 0};
    static const uint8_t want_ch[10] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    ck_assert_mem_eq(after, want_after, 10);
    ck_assert_mem_eq(ch, want_ch, 10);
    ck_assert(sc[0] == s0[0]);
    /* W = W0 + U diag(s - s0) V^T: materialise and compare with a direct sum */
    float *out = malloc((size_t)(m * n) * sizeof *out);
    ck_assert_ok(sresid_amp_materialize(amp, 0, out, n, 0));
    const float *u = NULL, *v = NULL;
    ck_assert_ok(sresid_amp_basis(amp, 0, &u, &v));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double x = (float)w[i * n + j];
            for (int64_t k = 0; k < 10; k++)
                x += (double)u[i * 10 + k] * ((double)sc[k] - s0[k]) * v[j * 10 + k];
            ck_close(out[i * n + j], x, 1e-5);
        }
    free(out);
    free(before);
    free(after);
    free(ch);
    sresid_mask_free(mask);
    sresid_mask_free(changed);
    sresid_amp_free(amp);
    sresid_model_free(base);
    free(w);
}
END_TEST

Suite *suite_amp_select(void)
{
    Suite *s = suite_create("amp_select");
    TCase *tc = tcase_create("select");
    tcase_add_test(tc, select_magnitude);
    tcase_add_test(tc, select_counts_by_hand);
    tcase_add_test(tc, select_random);
    tcase_add_test(tc, select_gradient_and_warmup);
    tcase_add_test(tc, select_bad_args);
    suite_add_tcase(s, tc);
    tc = tcase_create("drop_grow");
    tcase_add_test(tc, drop_grow_rule);
    tcase_add_test(tc, drop_grow_failures_change_nothing);
    tcase_add_test(tc, drop_grow_created_amp);
    suite_add_tcase(s, tc);
    tc = tcase_create("share");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, share_closed_form);
    tcase_add_test(tc, share_threads_and_outputs);
    tcase_add_test(tc, share_zero_residual);
    tcase_add_test(tc, share_mismatch_and_bad_args);
    tcase_add_test(tc, share_created_amp);
    suite_add_tcase(s, tc);
    return s;
}
