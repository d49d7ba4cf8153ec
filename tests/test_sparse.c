/* Check suite of the sparse module: selection rules and their counts,
 * index encoding, the delta file, apply. References are computed here by
 * sorting, by hand or from the IEEE definitions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sparse/sparse.h"
#include "testutil.h"

/* A pair of in-memory models with F32 tensors of the given sizes. */
typedef struct pairm {
    sresid_model *base, *trained;
    sresid_residual *res;
    size_t n;
    int64_t sizes[8];
    float *b[8], *t[8];
} pairm;

static void pair_make(pairm *p, size_t n, const int64_t *sizes)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    ck_assert_ok(sresid_model_create(NULL, &p->base));
    ck_assert_ok(sresid_model_create(NULL, &p->trained));
    for (size_t i = 0; i < n; i++) {
        p->sizes[i] = sizes[i];
        p->b[i] = calloc((size_t)sizes[i] + 1, sizeof(float));
        p->t[i] = calloc((size_t)sizes[i] + 1, sizeof(float));
    }
}

/* Add the tensors (borrowed) once b and t are filled; then pair. */
static void pair_finish(pairm *p)
{
    for (size_t i = 0; i < p->n; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%zu.w", i);
        ck_assert_ok(sresid_model_add_tensor(p->base, name, SRESID_DTYPE_F32, 1, &p->sizes[i],
                                             p->b[i], (size_t)p->sizes[i] * 4, SRESID_ADD_BORROW));
        ck_assert_ok(sresid_model_add_tensor(p->trained, name, SRESID_DTYPE_F32, 1, &p->sizes[i],
                                             p->t[i], (size_t)p->sizes[i] * 4,
                                             SRESID_ADD_BORROW));
    }
    ck_assert_ok(sresid_residual_create(p->base, p->trained, NULL, &p->res));
}

static void pair_free(pairm *p)
{
    sresid_residual_free(p->res);
    sresid_model_free(p->base);
    sresid_model_free(p->trained);
    for (size_t i = 0; i < p->n; i++) {
        free(p->b[i]);
        free(p->t[i]);
    }
}

static sresid_sparse *make_t(const pairm *p, int32_t rule, double param, sresid_dtype dt,
                             uint32_t flags, int32_t threads)
{
    sresid_sparse_opts o = {.size = sizeof o, .rule = rule, .param = param, .dtype = dt,
                            .flags = flags, .threads = threads};
    sresid_sparse *s = NULL;
    ck_assert_ok(sresid_sparse_create(p->res, &o, &s));
    return s;
}

static sresid_sparse *make(const pairm *p, int32_t rule, double param, sresid_dtype dt,
                           uint32_t flags)
{
    sresid_sparse_opts o = {.size = sizeof o, .rule = rule, .param = param, .dtype = dt,
                            .flags = flags};
    sresid_sparse *s = NULL;
    ck_assert_ok(sresid_sparse_create(p->res, &o, &s));
    return s;
}

static uint64_t kept_of(const sresid_sparse *s, size_t i)
{
    sresid_sparse_info in = {.size = sizeof in};
    ck_assert_ok(sresid_sparse_info_get(s, i, &in));
    return in.kept;
}

static int cmp_desc_abs(const void *a, const void *b)
{
    double x = fabs(*(const float *)a), y = fabs(*(const float *)b);
    return x < y ? 1 : x > y ? -1 : 0;
}

/* ---- index encoding ---- */

START_TEST(index_encoding_boundaries)
{
    struct {
        uint64_t gap;
        sresid_dtype want;
    } cases[] = {{255, SRESID_DTYPE_U8},
                 {256, SRESID_DTYPE_U16},
                 {65535, SRESID_DTYPE_U16},
                 {65536, SRESID_DTYPE_U32},
                 {4294967295ull, SRESID_DTYPE_U32},
                 {4294967296ull, SRESID_DTYPE_U64}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* the largest code is the gap; a first position of 1 is small */
        uint64_t pos[4] = {1, 2, 2 + cases[c].gap, 3 + cases[c].gap};
        sresid_dtype dt = sresid__sparse_index_dtype(pos, 4);
        ck_assert_int_eq(dt, cases[c].want);
        unsigned char buf[32];
        sresid__sparse_encode(pos, 4, dt, buf);
        /* little-endian codes by hand: 1, 1, gap, 1 */
        size_t w = sresid_dtype_size(dt);
        uint64_t code = 0;
        for (size_t b = 0; b < w; b++)
            code |= (uint64_t)buf[2 * w + b] << (8 * b);
        ck_assert_uint_eq(code, cases[c].gap);
        sresid__sp_cursor cur;
        sresid__sparse_cursor(&cur, buf, dt, 4);
        uint64_t got;
        int why;
        for (int j = 0; j < 4; j++) {
            ck_assert(sresid__sparse_next(&cur, &got, &why));
            ck_assert_uint_eq(got, pos[j]);
        }
        ck_assert(!sresid__sparse_next(&cur, &got, &why));
    }
    /* the first position alone decides too */
    uint64_t one = 70000;
    ck_assert_int_eq(sresid__sparse_index_dtype(&one, 1), SRESID_DTYPE_U32);
    ck_assert_int_eq(sresid__sparse_index_dtype(NULL, 0), SRESID_DTYPE_U8);
    /* a zero gap after the first is refused */
    unsigned char dup[3] = {5, 1, 0};
    sresid__sp_cursor cur;
    sresid__sparse_cursor(&cur, dup, SRESID_DTYPE_U8, 3);
    uint64_t got;
    int why;
    ck_assert(sresid__sparse_next(&cur, &got, &why) && got == 5);
    ck_assert(sresid__sparse_next(&cur, &got, &why) && got == 6);
    ck_assert(!sresid__sparse_next(&cur, &got, &why));
    ck_assert_int_eq(why, 1);
}
END_TEST

/* ---- rules: exact counts ---- */

START_TEST(counts_of_every_rule)
{
    const int64_t sizes[3] = {1000, 1, 3001};
    pairm p;
    pair_make(&p, 3, sizes);
    uint64_t seed = 5;
    for (size_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < sizes[i]; j++) {
            p.b[i][j] = (float)tu_rand_normal(&seed);
            p.t[i][j] = p.b[i][j] + (float)(0.01 * tu_rand_normal(&seed) * (i + 1));
        }
    pair_finish(&p);
    const uint64_t N = 4002;
    double fracs[] = {0.1, 0.25, 0.5, 0.0001, 1.0};
    for (size_t f = 0; f < 5; f++) {
        sresid_sparse *s = make(&p, SRESID_SPARSE_TOP, fracs[f], 0, 0);
        sresid_sparse_info all = {.size = sizeof all};
        ck_assert_ok(sresid_sparse_info_get(s, SRESID_ALL, &all));
        ck_assert_uint_eq(all.kept, (uint64_t)floor(fracs[f] * (double)N + 0.5));
        sresid_sparse_free(s);
        s = make(&p, SRESID_SPARSE_TOP_PER_TENSOR, fracs[f], 0, 0);
        for (size_t i = 0; i < 3; i++)
            ck_assert_uint_eq(kept_of(s, i), (uint64_t)floor(fracs[f] * sizes[i] + 0.5));
        sresid_sparse_free(s);
    }
    /* threshold: counted here from the residual */
    float thr = 0.015f;
    sresid_sparse *s = make(&p, SRESID_SPARSE_THRESHOLD, thr, 0, 0);
    for (size_t i = 0; i < 3; i++) {
        uint64_t c = 0;
        for (int64_t j = 0; j < sizes[i]; j++)
            c += fabsf(p.t[i][j] - p.b[i][j]) >= thr;
        ck_assert_uint_eq(kept_of(s, i), c);
    }
    sresid_sparse_free(s);
    /* energy: the fewest largest entries holding the share, by sorting */
    float *all = malloc(N * sizeof *all);
    size_t q = 0;
    double total = 0;
    for (size_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < sizes[i]; j++) {
            all[q] = p.t[i][j] - p.b[i][j];
            total += (double)all[q] * all[q];
            q++;
        }
    qsort(all, N, sizeof *all, cmp_desc_abs);
    double shares[] = {0.5, 0.9, 0.99};
    for (size_t e = 0; e < 3; e++) {
        double acc = 0;
        uint64_t k = 0;
        while (acc < shares[e] * total)
            acc += (double)all[k] * all[k], k++;
        s = make(&p, SRESID_SPARSE_ENERGY, shares[e], 0, 0);
        sresid_sparse_info in = {.size = sizeof in};
        ck_assert_ok(sresid_sparse_info_get(s, SRESID_ALL, &in));
        ck_assert_uint_eq(in.kept, k);
        ck_assert(in.kept_energy >= shares[e] - 1e-12);
        sresid_sparse_free(s);
    }
    free(all);
    /* DARE with p = 1 keeps everything unscaled; with p = 0.5 about half,
     * every value doubled */
    s = make(&p, SRESID_SPARSE_DARE, 1.0, 0, 0);
    ck_assert_uint_eq(kept_of(s, SRESID_ALL), N);
    sresid_sparse_free(s);
    s = make(&p, SRESID_SPARSE_DARE, 0.5, 0, 0);
    uint64_t k = kept_of(s, SRESID_ALL);
    ck_assert(k > N / 2 - 5 * 32 && k < N / 2 + 5 * 32); /* sd = sqrt(N)/2 ~ 32 */
    uint64_t *pos = malloc(N * 8);
    float *val = malloc(N * 4);
    ck_assert_ok(sresid_sparse_entries(s, 2, pos, val, N));
    for (uint64_t j = 0; j < kept_of(s, 2); j++)
        ck_assert_float_eq(val[j], (float)((double)(p.t[2][pos[j]] - p.b[2][pos[j]]) / 0.5));
    sresid_sparse_free(s);
    free(pos);
    free(val);
    pair_free(&p);
}
END_TEST

/* ---- global top-k against a sort, with many ties ---- */

typedef struct ent {
    float a;
    size_t tensor;
    int64_t pos;
} ent;

static int cmp_ent(const void *x, const void *y)
{
    const ent *a = x, *b = y;
    if (a->a != b->a)
        return a->a < b->a ? 1 : -1;
    if (a->tensor != b->tensor)
        return a->tensor < b->tensor ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

START_TEST(global_top_equals_sort_with_ties)
{
    const int64_t sizes[4] = {777, 0, 2048, 1500};
    pairm p;
    pair_make(&p, 4, sizes);
    uint64_t seed = 77;
    size_t N = 0;
    for (size_t i = 0; i < 4; i++)
        for (int64_t j = 0; j < sizes[i]; j++, N++) {
            /* residuals from a few values: ties everywhere, signs both ways */
            p.b[i][j] = 0;
            p.t[i][j] = (float)((int)(tu_rand_uniform(&seed) * 9) - 4) * 0.25f;
        }
    pair_finish(&p);
    ent *ref = malloc(N * sizeof *ref);
    size_t q = 0;
    for (size_t i = 0; i < 4; i++)
        for (int64_t j = 0; j < sizes[i]; j++)
            ref[q++] = (ent){fabsf(p.t[i][j]), i, j};
    qsort(ref, N, sizeof *ref, cmp_ent);
    double fracs[] = {0.05, 0.3337, 0.9};
    for (size_t f = 0; f < 3; f++) {
        for (int run = 0; run < 4; run++) { /* streamed or in memory, 1 or 3 threads */
            int mem = run & 1;
            sresid_sparse *s = make_t(&p, SRESID_SPARSE_TOP, fracs[f], 0,
                                      mem ? SRESID_SPARSE_IN_MEMORY : 0, run < 2 ? 1 : 3);
            uint64_t k = (uint64_t)floor(fracs[f] * (double)N + 0.5);
            unsigned char *want = calloc(N, 1);
            size_t off[5] = {0};
            for (size_t i = 0; i < 4; i++)
                off[i + 1] = off[i] + (size_t)sizes[i];
            for (uint64_t j = 0; j < k; j++)
                want[off[ref[j].tensor] + (size_t)ref[j].pos] = 1;
            uint64_t *pos = malloc(N * 8);
            float *val = malloc(N * 4);
            for (size_t i = 0; i < 4; i++) {
                uint64_t c = kept_of(s, i), expect = 0;
                for (int64_t j = 0; j < sizes[i]; j++)
                    expect += want[off[i] + (size_t)j];
                ck_assert_uint_eq(c, expect);
                ck_assert_ok(sresid_sparse_entries(s, i, pos, val, N));
                for (uint64_t j = 0; j < c; j++) {
                    ck_assert(want[off[i] + pos[j]]);
                    ck_assert_float_eq(val[j], p.t[i][pos[j]]);
                }
            }
            free(pos);
            free(val);
            free(want);
            sresid_sparse_free(s);
        }
    }
    free(ref);
    pair_free(&p);
}
END_TEST

/* ---- streaming and in-memory give the same file ---- */

static int files_equal(const char *a, const char *b)
{
    size_t la, lb;
    unsigned char *x = tu_read_file(a, &la), *y = tu_read_file(b, &lb);
    int eq = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return eq;
}

START_TEST(streaming_equals_in_memory)
{
    const int64_t sizes[3] = {70000, 5, 140001}; /* several blocks */
    pairm p;
    pair_make(&p, 3, sizes);
    uint64_t seed = 9;
    for (size_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < sizes[i]; j++) {
            p.b[i][j] = (float)tu_rand_normal(&seed);
            p.t[i][j] = p.b[i][j] + (float)(0.02 * tu_rand_normal(&seed));
        }
    pair_finish(&p);
    int32_t rules[2] = {SRESID_SPARSE_TOP, SRESID_SPARSE_ENERGY};
    double params[2] = {0.1, 0.9};
    for (int r = 0; r < 2; r++) {
        sresid_sparse *a = make(&p, rules[r], params[r], 0, 0);
        sresid_sparse *b = make(&p, rules[r], params[r], 0, SRESID_SPARSE_IN_MEMORY);
        ck_assert_ok(sresid_sparse_save(a, tu_path("stream.safetensors"), NULL));
        ck_assert_ok(sresid_sparse_save(b, tu_path("memory.safetensors"), NULL));
        ck_assert(files_equal(tu_path("stream.safetensors"), tu_path("memory.safetensors")));
        sresid_sparse_free(a);
        sresid_sparse_free(b);
    }
    pair_free(&p);
}
END_TEST

/* ---- the thread count changes no byte of the file ---- */

START_TEST(threads_give_the_same_file)
{
    const int64_t sizes[5] = {70000, 5, 140001, 0, 3000};
    pairm p;
    pair_make(&p, 5, sizes);
    uint64_t seed = 11;
    for (size_t i = 0; i < 5; i++)
        for (int64_t j = 0; j < sizes[i]; j++) {
            /* BF16-like steps: many exact ties at any threshold */
            p.b[i][j] = (float)tu_rand_normal(&seed);
            p.t[i][j] = p.b[i][j] + (float)((int)(tu_rand_normal(&seed) * 8)) / 256.0f;
        }
    pair_finish(&p);
    int32_t rules[5] = {SRESID_SPARSE_TOP, SRESID_SPARSE_TOP_PER_TENSOR, SRESID_SPARSE_THRESHOLD,
                        SRESID_SPARSE_ENERGY, SRESID_SPARSE_DARE};
    double params[5] = {0.1, 0.05, 0.02, 0.9, 0.3};
    for (int r = 0; r < 5; r++) {
        sresid_sparse *a = make_t(&p, rules[r], params[r], SRESID_DTYPE_BF16, 0, 1);
        ck_assert_ok(sresid_sparse_save(a, tu_path("t1.safetensors"), NULL));
        for (int32_t threads = 2; threads <= 4; threads += 2) {
            sresid_sparse *b = make_t(&p, rules[r], params[r], SRESID_DTYPE_BF16,
                                      r == 0 ? SRESID_SPARSE_IN_MEMORY : 0, threads);
            ck_assert_ok(sresid_sparse_save(b, tu_path("tn.safetensors"), NULL));
            ck_assert(files_equal(tu_path("t1.safetensors"), tu_path("tn.safetensors")));
            sresid_sparse_info x = {.size = sizeof x}, y = {.size = sizeof y};
            ck_assert_ok(sresid_sparse_info_get(a, SRESID_ALL, &x));
            ck_assert_ok(sresid_sparse_info_get(b, SRESID_ALL, &y));
            ck_assert_uint_eq(x.kept, y.kept);
            ck_assert(x.error == y.error); /* bit for bit */
            sresid_sparse_free(b);
        }
        sresid_sparse_free(a);
    }
    /* a non-finite residual: the first tensor in pairing order is named */
    p.t[2][5] = NAN;
    p.t[4][7] = INFINITY;
    for (int32_t threads = 1; threads <= 4; threads++) {
        sresid_sparse_opts o = {.size = sizeof o, .rule = SRESID_SPARSE_TOP, .threads = threads};
        sresid_sparse *s = NULL;
        ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_NONFINITE);
        char want[256];
        snprintf(want, sizeof want, "sresid_sparse_create: residual of 'layers.2.w' is not "
                 "finite at position 5 (base %g, trained nan)", (double)p.b[2][5]);
        ck_assert_str_eq(sresid_last_error(), want);
    }
    pair_free(&p);
}
END_TEST

/* ---- keep everything in F32: apply gives trained back bit for bit ---- */

START_TEST(keep_all_f32_is_bit_exact)
{
    const int64_t sizes[2] = {20000, 3};
    pairm p;
    pair_make(&p, 2, sizes);
    uint64_t seed = 1234;
    for (int64_t j = 0; j < sizes[0]; j++) {
        /* magnitudes over many binades, both signs: most subtractions inexact */
        p.b[0][j] = (float)(tu_rand_normal(&seed) * ldexp(1, (int)(tu_rand_uniform(&seed) * 40) - 20));
        p.t[0][j] = (float)(tu_rand_normal(&seed) * ldexp(1, (int)(tu_rand_uniform(&seed) * 40) - 20));
    }
    /* subnormal and equal values */
    float special_b[3] = {1e-40f, 1.0f, -3.5f}, special_t[3] = {-2e-41f, 1.0f, 3.5e-30f};
    memcpy(p.b[1], special_b, sizeof special_b);
    memcpy(p.t[1], special_t, sizeof special_t);
    pair_finish(&p);
    sresid_sparse *s = make(&p, SRESID_SPARSE_TOP, 1.0, SRESID_DTYPE_F32, 0);
    sresid_sparse_info in = {.size = sizeof in};
    ck_assert_ok(sresid_sparse_info_get(s, SRESID_ALL, &in));
    ck_assert_double_eq(in.error, 0);
    ck_assert_double_eq(in.kept_energy, 1);
    /* through the file */
    const char *d = tu_path("exact.delta.safetensors"), *o = tu_path("exact.out.safetensors");
    ck_assert_ok(sresid_sparse_save(s, d, NULL));
    sresid_sparse_free(s);
    ck_assert_ok(sresid_sparse_load(d, &s));
    ck_assert_ok(sresid_sparse_apply(s, p.base, NULL, o));
    sresid_model *m;
    ck_assert_ok(sresid_model_open(o, NULL, &m));
    size_t inexact = 0;
    for (size_t i = 0; i < 2; i++) {
        float *got = malloc((size_t)sizes[i] * 4);
        ck_assert_ok(sresid_model_read_f32(m, i == 0 ? 0 : 1, got, (size_t)sizes[i]));
        size_t idx;
        char name[32];
        snprintf(name, sizeof name, "layers.%zu.w", i);
        ck_assert_ok(sresid_model_find(m, name, &idx));
        ck_assert_ok(sresid_model_read_f32(m, idx, got, (size_t)sizes[i]));
        for (int64_t j = 0; j < sizes[i]; j++) {
            ck_assert_mem_eq(&got[j], &p.t[i][j], 4);
            inexact += p.b[i][j] + (p.t[i][j] - p.b[i][j]) != p.t[i][j];
        }
        free(got);
    }
    /* the data did need the low parts */
    ck_assert_uint_gt(inexact, 1000);
    sresid_model_free(m);
    /* without low parts the sum misses trained for those entries */
    sresid_sparse_free(s);
    s = make(&p, SRESID_SPARSE_TOP, 1.0, SRESID_DTYPE_F32, SRESID_SPARSE_ROUNDED);
    ck_assert_ok(sresid_sparse_apply(s, p.base, NULL, o));
    ck_assert_ok(sresid_model_open(o, NULL, &m));
    float *got = malloc((size_t)sizes[0] * 4);
    size_t idx;
    ck_assert_ok(sresid_model_find(m, "layers.0.w", &idx));
    ck_assert_ok(sresid_model_read_f32(m, idx, got, (size_t)sizes[0]));
    size_t differ = 0;
    for (int64_t j = 0; j < sizes[0]; j++)
        differ += got[j] != p.t[0][j];
    ck_assert_uint_gt(differ, 0);
    free(got);
    sresid_model_free(m);
    sresid_sparse_free(s);
    pair_free(&p);
}
END_TEST

/* ---- F16 / BF16 values: error is the rounding error ---- */

START_TEST(half_values_round_to_nearest_even)
{
    const int64_t sizes[1] = {4};
    pairm p;
    pair_make(&p, 1, sizes);
    /* residuals: 1 + 2^-11 (an F16 tie: rounds to even 1), 1 + 3*2^-11 (tie
     * to 1 + 2^-9... even is 1 + 2*2^-10), 3 (exact), 2^-30 (F16 underflow to 0) */
    float r[4] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 3.0f, 0x1p-30f};
    float f16[4] = {1.0f, 1.0f + 0x1p-9f, 3.0f, 0.0f};
    for (int j = 0; j < 4; j++)
        p.t[0][j] = r[j];
    pair_finish(&p);
    sresid_sparse *s = make(&p, SRESID_SPARSE_TOP, 1.0, SRESID_DTYPE_F16, 0);
    uint64_t pos[4];
    float val[4];
    ck_assert_ok(sresid_sparse_entries(s, 0, pos, val, 4));
    double e = 0, d = 0;
    for (int j = 0; j < 4; j++) {
        ck_assert_float_eq(val[j], f16[j]);
        e += (double)r[j] * r[j];
        d += ((double)r[j] - f16[j]) * ((double)r[j] - f16[j]);
    }
    sresid_sparse_info in = {.size = sizeof in};
    ck_assert_ok(sresid_sparse_info_get(s, 0, &in));
    ck_assert_double_eq_tol(in.error, sqrt(d) / sqrt(e), 1e-15);
    ck_assert_uint_eq(in.bytes, 4 * (1 + 2));
    ck_assert_uint_eq(in.dense_bytes, 16);
    sresid_sparse_free(s);
    /* BF16: 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even is 1 */
    p.t[0][0] = 1.0f + 0x1p-8f;
    p.t[0][1] = 1.0f + 3 * 0x1p-8f; /* tie: even is 1 + 2^-6 */
    s = make(&p, SRESID_SPARSE_TOP, 1.0, SRESID_DTYPE_BF16, 0);
    ck_assert_ok(sresid_sparse_entries(s, 0, pos, val, 4));
    ck_assert_float_eq(val[0], 1.0f);
    ck_assert_float_eq(val[1], 1.0f + 0x1p-6f);
    ck_assert_float_eq(val[2], 3.0f);
    ck_assert_float_eq(val[3], 0x1p-30f); /* BF16 has the float32 range */
    sresid_sparse_free(s);
    /* a value beyond the F16 range is refused, naming the tensor */
    p.t[0][2] = 70000.0f;
    sresid_sparse_opts o = {.size = sizeof o, .param = 1.0, .dtype = SRESID_DTYPE_F16};
    s = NULL;
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_NONFINITE);
    ck_assert_ptr_null(s);
    ck_assert(strstr(sresid_last_error(), "layers.0.w") != NULL);
    pair_free(&p);
}
END_TEST

/* ---- empty tensors, nothing kept, round trip ---- */

START_TEST(empty_and_zero_kept_round_trip)
{
    const int64_t sizes[3] = {0, 50, 0};
    pairm p;
    pair_make(&p, 3, sizes);
    for (int j = 0; j < 50; j++)
        p.t[1][j] = (float)(j - 25) * 0.5f;
    pair_finish(&p);
    /* 0.009 * 50 + 0.5 < 1: nothing kept */
    sresid_sparse *s = make(&p, SRESID_SPARSE_TOP, 0.009, 0, 0);
    ck_assert_uint_eq(kept_of(s, SRESID_ALL), 0);
    ck_assert_uint_eq(sresid_sparse_count(s), 3);
    sresid_sparse_info in = {.size = sizeof in};
    ck_assert_ok(sresid_sparse_info_get(s, 1, &in));
    ck_assert_double_eq(in.error, 1.0);
    ck_assert(isinf(in.ratio));
    ck_assert_ok(sresid_sparse_info_get(s, 0, &in));
    ck_assert(isnan(in.error)); /* no energy: undefined */
    const char *a = tu_path("zero.safetensors"), *b = tu_path("zero2.safetensors");
    ck_assert_ok(sresid_sparse_save(s, a, NULL));
    sresid_sparse_free(s);
    ck_assert_ok(sresid_sparse_load(a, &s));
    ck_assert_ok(sresid_sparse_save(s, b, NULL));
    ck_assert(files_equal(a, b));
    /* applying nothing reproduces the base's bytes as sresid_model_save writes them */
    ck_assert_ok(sresid_sparse_apply(s, p.base, NULL, tu_path("zero.out.safetensors")));
    ck_assert_ok(sresid_model_save(p.base, tu_path("zero.base.safetensors"), NULL));
    ck_assert(files_equal(tu_path("zero.out.safetensors"), tu_path("zero.base.safetensors")));
    sresid_sparse_free(s);
    /* a threshold above everything, and a round trip of a non-empty delta */
    s = make(&p, SRESID_SPARSE_THRESHOLD, 100.0, 0, 0);
    ck_assert_uint_eq(kept_of(s, SRESID_ALL), 0);
    sresid_sparse_free(s);
    s = make(&p, SRESID_SPARSE_THRESHOLD, 5.0, SRESID_DTYPE_BF16, 0);
    ck_assert_uint_eq(kept_of(s, 1), 16 + 15); /* |j - 25| / 2 >= 5: j <= 15 or j >= 35 */
    ck_assert_ok(sresid_sparse_save(s, a, NULL));
    sresid_sparse *l;
    ck_assert_ok(sresid_sparse_load(a, &l));
    ck_assert_ok(sresid_sparse_save(l, b, NULL));
    ck_assert(files_equal(a, b));
    sresid_sparse_info x = {.size = sizeof x}, y = {.size = sizeof y};
    ck_assert_ok(sresid_sparse_info_get(s, SRESID_ALL, &x));
    ck_assert_ok(sresid_sparse_info_get(l, SRESID_ALL, &y));
    ck_assert_double_eq(x.error, y.error);
    ck_assert_double_eq(x.kept_energy, y.kept_energy);
    sresid_sparse_free(l);
    sresid_sparse_free(s);
    pair_free(&p);
}
END_TEST

/* ---- tampered deltas ---- */

/* Rewrite delta src into dst with tensor `name` replaced by (dtype, n,
 * data) and metadata key `key` set to `value` (NULL: untouched). */
static void rewrite(const char *src, const char *dst, const char *name, sresid_dtype dtype,
                    int64_t n, const void *data, const char *key, const char *value)
{
    sresid_model *m, *out;
    ck_assert_ok(sresid_model_open(src, NULL, &m));
    ck_assert_ok(sresid_model_create(NULL, &out));
    for (size_t i = 0; i < sresid_model_metadata_count(m); i++) {
        const char *k, *v;
        ck_assert_ok(sresid_model_metadata_at(m, i, &k, &v));
        ck_assert_ok(sresid_model_set_metadata(out, k, key && strcmp(k, key) == 0 ? value : v));
    }
    for (size_t i = 0; i < sresid_model_tensor_count(m); i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        ck_assert_ok(sresid_model_tensor_info(m, i, &ti));
        if (name && strcmp(ti.name, name) == 0) {
            if (dtype)
                ck_assert_ok(sresid_model_add_tensor(out, ti.name, dtype, 1, &n, data,
                                                     (size_t)n * sresid_dtype_size(dtype), 0));
            continue;
        }
        ck_assert_ok(sresid_model_add_tensor(out, ti.name, ti.dtype, ti.ndim, ti.shape, ti.data,
                                             ti.nbytes, 0));
    }
    ck_assert_ok(sresid_model_save(out, dst, NULL));
    sresid_model_free(out);
    sresid_model_free(m);
}

static void expect_load(const char *path, sresid_status want, const char *needle)
{
    sresid_sparse *s = NULL;
    ck_assert_status(sresid_sparse_load(path, &s), want);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(sresid_last_error(), needle) != NULL, "'%s' lacks '%s'",
                  sresid_last_error(), needle);
}

START_TEST(tampered_deltas_are_refused)
{
    const int64_t sizes[2] = {300, 10};
    pairm p;
    pair_make(&p, 2, sizes);
    for (int j = 0; j < 300; j++)
        p.t[0][j] = (float)j;
    for (int j = 0; j < 10; j++)
        p.t[1][j] = -(float)j;
    pair_finish(&p);
    /* tensor 1 keeps positions 5..9 (|R| 5..9) */
    sresid_sparse *s = make(&p, SRESID_SPARSE_THRESHOLD, 4.5, 0, 0);
    ck_assert_uint_eq(kept_of(s, 1), 5);
    const char *good = tu_path("good.delta.safetensors"), *bad = tu_path("bad.delta.safetensors");
    ck_assert_ok(sresid_sparse_save(s, good, NULL));
    sresid_sparse_free(s);

    uint8_t idx_out[5] = {5, 1, 1, 1, 1};  /* 5,6,7,8,9 */
    idx_out[0] = 6;                         /* 6..10: 10 is out of range */
    rewrite(good, bad, "layers.1.w.idx", SRESID_DTYPE_U8, 5, idx_out, NULL, NULL);
    expect_load(bad, SRESID_ERR_SHAPE, "layers.1.w");
    uint8_t idx_dup[5] = {5, 1, 0, 1, 1};
    rewrite(good, bad, "layers.1.w.idx", SRESID_DTYPE_U8, 5, idx_dup, NULL, NULL);
    expect_load(bad, SRESID_ERR_SHAPE, "layers.1.w");
    uint8_t idx_short[4] = {5, 1, 1, 1};
    rewrite(good, bad, "layers.1.w.idx", SRESID_DTYPE_U8, 4, idx_short, NULL, NULL);
    expect_load(bad, SRESID_ERR_SHAPE, "layers.1.w");
    float nan_vals[5] = {-5, -6, NAN, -8, -9};
    rewrite(good, bad, "layers.1.w.val", SRESID_DTYPE_F32, 5, nan_vals, NULL, NULL);
    expect_load(bad, SRESID_ERR_NONFINITE, "layers.1.w");
    uint16_t half_vals[5] = {0};
    rewrite(good, bad, "layers.1.w.val", SRESID_DTYPE_F16, 5, half_vals, NULL, NULL);
    expect_load(bad, SRESID_ERR_DTYPE, "layers.1.w");
    rewrite(good, bad, "layers.1.w.val", 0, 0, NULL, NULL, NULL); /* removed */
    expect_load(bad, SRESID_ERR_NOT_FOUND, "layers.1.w.val");
    rewrite(good, bad, NULL, 0, 0, NULL, "format", "something.else");
    expect_load(bad, SRESID_ERR_METADATA, "sparseresid.delta");
    rewrite(good, bad, NULL, 0, 0, NULL, "format_version", "2");
    expect_load(bad, SRESID_ERR_METADATA, "format_version");
    rewrite(good, bad, NULL, 0, 0, NULL, "kept", "7");
    expect_load(bad, SRESID_ERR_SHAPE, "kept");
    rewrite(good, bad, NULL, 0, 0, NULL, "tensors", "[{\"name\": 3}]");
    expect_load(bad, SRESID_ERR_METADATA, "tensors");
    /* truncated */
    size_t len;
    unsigned char *bytes = tu_read_file(good, &len);
    ck_assert_int_eq(tu_write_file(bad, bytes, len - 3), 0);
    expect_load(bad, SRESID_ERR_TRUNCATED, "bad.delta.safetensors");
    free(bytes);

    /* a base that is not the delta's: hash, shape, dtype, missing */
    ck_assert_ok(sresid_sparse_load(good, &s));
    const char *out = tu_path("never.safetensors");
    p.b[1][3] = 0.5f; /* borrowed: the base changed */
    ck_assert_status(sresid_sparse_apply(s, p.base, NULL, out), SRESID_ERR_MISMATCH);
    ck_assert(strstr(sresid_last_error(), "layers.1.w") != NULL);
    ck_assert_int_ne(access(out, F_OK), 0);
    sresid_apply_opts ao = {.size = sizeof ao, .flags = SRESID_APPLY_FORCE};
    ck_assert_ok(sresid_sparse_apply(s, p.base, &ao, out));
    ck_assert_int_eq(access(out, F_OK), 0);
    unlink(out);
    p.b[1][3] = 0;
    sresid_model *other;
    ck_assert_ok(sresid_model_create(NULL, &other));
    const int64_t s2[2] = {30, 10};
    float zeros[300] = {0};
    ck_assert_ok(sresid_model_add_tensor(other, "layers.0.w", SRESID_DTYPE_F32, 2, s2, zeros,
                                         1200, 0));
    ck_assert_status(sresid_sparse_apply(s, other, &ao, out), SRESID_ERR_MISMATCH);
    ck_assert(strstr(sresid_last_error(), "layers.0.w") != NULL);
    sresid_model_free(other);
    ck_assert_ok(sresid_model_create(NULL, &other));
    ck_assert_ok(sresid_model_add_tensor(other, "layers.0.w", SRESID_DTYPE_F32, 1, &sizes[0],
                                         zeros, 1200, 0));
    ck_assert_status(sresid_sparse_apply(s, other, &ao, out), SRESID_ERR_MISMATCH);
    ck_assert(strstr(sresid_last_error(), "layers.1.w") != NULL); /* missing */
    sresid_model_free(other);
    ck_assert_int_ne(access(out, F_OK), 0);
    /* no temporary left behind */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'never.safetensors.tmp'", tu_tmpdir());
    ck_assert_int_ne(system(cmd), 0);
    sresid_sparse_free(s);
    pair_free(&p);
}
END_TEST

/* ---- U64 indices in a hand-made file ---- */

START_TEST(u64_indices_from_a_crafted_file)
{
    /* a tensor of 2^33 elements keeping positions 1 and 2^32 + 1: a gap of
     * 2^32 needs U64; the file is written here, its base never exists */
    const char *tensors =
        "[{\\\"name\\\":\\\"big\\\",\\\"dtype\\\":\\\"F32\\\",\\\"shape\\\":[8589934592],"
        "\\\"kept\\\":2,\\\"lo\\\":false,\\\"hash\\\":\\\"0123456789abcdef0123456789abcdef\\\","
        "\\\"energy\\\":null,\\\"kept_energy\\\":null,\\\"error\\\":null}]";
    char header[1024];
    snprintf(header, sizeof header,
             "{\"__metadata__\":{\"format\":\"sparseresid.delta\",\"format_version\":\"1\","
             "\"rule\":\"top\",\"param\":\"0.5\",\"seed\":\"0\",\"value_dtype\":\"F32\","
             "\"hash\":\"xxh3-128\",\"kept\":\"2\",\"energy\":\"nan\",\"kept_energy\":\"nan\","
             "\"error\":\"nan\",\"tensors\":\"%s\"},"
             "\"big.idx\":{\"dtype\":\"U64\",\"shape\":[2],\"data_offsets\":[0,16]},"
             "\"big.val\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
             tensors);
    unsigned char data[24] = {0};
    data[0] = 1;    /* first position 1 */
    data[8 + 4] = 1; /* gap 2^32 */
    float v[2] = {0.5f, -2.0f};
    memcpy(data + 16, v, 8);
    const char *path = tu_path("u64.delta.safetensors");
    ck_assert_int_eq(tu_write_st(path, header, data, sizeof data), 0);
    sresid_sparse *s = NULL;
    ck_assert_ok(sresid_sparse_load(path, &s));
    sresid_sparse_info in = {.size = sizeof in};
    ck_assert_ok(sresid_sparse_info_get(s, 0, &in));
    ck_assert_int_eq(in.index_dtype, SRESID_DTYPE_U64);
    ck_assert_int_eq(in.numel, 8589934592ll);
    ck_assert_uint_eq(in.bytes, 2 * (8 + 4));
    uint64_t pos[2];
    float val[2];
    ck_assert_ok(sresid_sparse_entries(s, 0, pos, val, 2));
    ck_assert_uint_eq(pos[0], 1);
    ck_assert_uint_eq(pos[1], 4294967297ull);
    ck_assert_float_eq(val[1], -2.0f);
    /* saved again: the same bytes but for the header the library writes */
    ck_assert_ok(sresid_sparse_save(s, tu_path("u64.again.safetensors"), NULL));
    sresid_sparse_free(s);
    ck_assert_ok(sresid_sparse_load(tu_path("u64.again.safetensors"), &s));
    ck_assert_ok(sresid_sparse_entries(s, 0, pos, val, 2));
    ck_assert_uint_eq(pos[1], 4294967297ull);
    sresid_sparse_free(s);
    /* the same with a gap one past the tensor end: out of range */
    data[8 + 4] = 2;
    ck_assert_int_eq(tu_write_st(path, header, data, sizeof data), 0);
    expect_load(path, SRESID_ERR_SHAPE, "big");
}
END_TEST

/* ---- arguments ---- */

START_TEST(bad_arguments)
{
    const int64_t sizes[1] = {4};
    pairm p;
    pair_make(&p, 1, sizes);
    pair_finish(&p);
    sresid_sparse *s = NULL;
    ck_assert_status(sresid_sparse_create(NULL, NULL, &s), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparse_create(p.res, NULL, NULL), SRESID_ERR_INVALID_ARG);
    sresid_sparse_opts o = {.size = sizeof o, .rule = 9};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_INVALID_ARG);
    o = (sresid_sparse_opts){.size = sizeof o, .param = 1.5};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_INVALID_ARG);
    o = (sresid_sparse_opts){.size = sizeof o, .param = NAN};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_INVALID_ARG);
    o = (sresid_sparse_opts){.size = sizeof o, .rule = SRESID_SPARSE_THRESHOLD};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_INVALID_ARG);
    o = (sresid_sparse_opts){.size = sizeof o, .dtype = SRESID_DTYPE_F64};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_DTYPE);
    o = (sresid_sparse_opts){.size = sizeof o, .flags = 0x80};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_INVALID_ARG);
    o = (sresid_sparse_opts){.size = 2};
    ck_assert_status(sresid_sparse_create(p.res, &o, &s), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(s);
    /* NaN in the residual names the tensor */
    p.t[0][2] = NAN;
    ck_assert_status(sresid_sparse_create(p.res, NULL, &s), SRESID_ERR_NONFINITE);
    ck_assert(strstr(sresid_last_error(), "layers.0.w") != NULL);
    p.t[0][2] = 0;
    ck_assert_ok(sresid_sparse_create(p.res, NULL, &s));
    sresid_sparse_info in = {.size = 8};
    ck_assert_status(sresid_sparse_info_get(s, 0, &in), SRESID_ERR_INVALID_ARG);
    in.size = sizeof in;
    ck_assert_status(sresid_sparse_info_get(s, 1, &in), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparse_entries(s, 3, NULL, NULL, 0), SRESID_ERR_INVALID_ARG);
    sresid_apply_opts ao = {.size = sizeof ao, .scale = INFINITY};
    ck_assert_status(sresid_sparse_apply(s, p.base, &ao, tu_path("x.safetensors")),
                     SRESID_ERR_INVALID_ARG);
    ao = (sresid_apply_opts){.size = sizeof ao, .flags = 0x10};
    ck_assert_status(sresid_sparse_apply(s, p.base, &ao, tu_path("x.safetensors")),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparse_save(s, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_sparse_load(NULL, &s), SRESID_ERR_INVALID_ARG);
    ck_assert_uint_eq(sresid_sparse_count(NULL), 0);
    sresid_sparse_free(NULL);
    sresid_sparse_free(s);
    pair_free(&p);
}
END_TEST

/* ---- apply: scale, dtypes ---- */

START_TEST(apply_scale_and_half_base)
{
    /* an F16 base: the sum in float32, rounded once to F16 */
    const int64_t n = 6;
    uint16_t b16[6], t16[6];
    float bf[6] = {1.0f, -2.0f, 0.5f, 100.0f, 0.0f, 3.0f};
    float tf[6] = {1.5f, -2.0f, 0.25f, 96.0f, 0.125f, 3.0f};
    for (int j = 0; j < 6; j++) {
        b16[j] = sresid__f32_to_f16(bf[j]);
        t16[j] = sresid__f32_to_f16(tf[j]);
    }
    sresid_model *b, *t;
    ck_assert_ok(sresid_model_create(NULL, &b));
    ck_assert_ok(sresid_model_create(NULL, &t));
    ck_assert_ok(sresid_model_add_tensor(b, "w", SRESID_DTYPE_F16, 1, &n, b16, 12, 0));
    ck_assert_ok(sresid_model_add_tensor(t, "w", SRESID_DTYPE_F16, 1, &n, t16, 12, 0));
    ck_assert_ok(sresid_model_set_metadata(b, "format", "pt"));
    sresid_residual *r;
    ck_assert_ok(sresid_residual_create(b, t, NULL, &r));
    sresid_sparse_opts o = {.size = sizeof o, .param = 1.0};
    sresid_sparse *s;
    ck_assert_ok(sresid_sparse_create(r, &o, &s));
    sresid_apply_opts ao = {.size = sizeof ao, .scale = 0.5};
    const char *out = tu_path("half.out.safetensors");
    ck_assert_ok(sresid_sparse_apply(s, b, &ao, out));
    sresid_model *m;
    ck_assert_ok(sresid_model_open(out, NULL, &m));
    sresid_tensor_info ti = {.size = sizeof ti};
    ck_assert_ok(sresid_model_tensor_info(m, 0, &ti));
    ck_assert_int_eq(ti.dtype, SRESID_DTYPE_F16);
    float got[6];
    ck_assert_ok(sresid_model_read_f32(m, 0, got, 6));
    /* by hand: b + (t - b) / 2, all exact in F16 */
    float want[6] = {1.25f, -2.0f, 0.375f, 98.0f, 0.0625f, 3.0f};
    for (int j = 0; j < 6; j++)
        ck_assert_float_eq(got[j], want[j]);
    const char *v;
    ck_assert_ok(sresid_model_metadata_get(m, "format", &v));
    ck_assert_str_eq(v, "pt");
    sresid_model_free(m);
    sresid_sparse_free(s);
    sresid_residual_free(r);
    sresid_model_free(t);
    sresid_model_free(b);
}
END_TEST

Suite *suite_sparse(void)
{
    Suite *s = suite_create("sparse");
    TCase *tc = tcase_create("sparse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, index_encoding_boundaries);
    tcase_add_test(tc, counts_of_every_rule);
    tcase_add_test(tc, global_top_equals_sort_with_ties);
    tcase_add_test(tc, streaming_equals_in_memory);
    tcase_add_test(tc, threads_give_the_same_file);
    tcase_add_test(tc, keep_all_f32_is_bit_exact);
    tcase_add_test(tc, half_values_round_to_nearest_even);
    tcase_add_test(tc, empty_and_zero_kept_round_trip);
    tcase_add_test(tc, tampered_deltas_are_refused);
    tcase_add_test(tc, u64_indices_from_a_crafted_file);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, apply_scale_and_half_base);
    suite_add_tcase(s, tc);
    return s;
}
