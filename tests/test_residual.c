/* Residual pairing, lazy differences and norms on synthetic models. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "testutil.h"

#define N 10007 /* not a multiple of the block size */

/* IEEE binary16 by its definition, independent of the library's bit tricks. */
static float half_ref(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)((h & 0x8000) ? -v : v);
}

static float *randvec(uint64_t *seed, size_t n, double scale)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(scale * tu_rand_normal(seed));
    return v;
}

/* base: F32 a, BF16 b, F16 c, I32 ids; trained: F32 a, F32 b, F16 c, I32 ids */
START_TEST(read_and_norms_match_reference)
{
    uint64_t seed = 11;
    float *a0 = randvec(&seed, N, 1), *a1 = randvec(&seed, N, 1);
    float *b0f = randvec(&seed, N, 2), *b1 = randvec(&seed, N, 2);
    float *c0f = randvec(&seed, N, 0.5), *c1f = randvec(&seed, N, 0.5);
    uint16_t *b0 = malloc(N * 2), *c0 = malloc(N * 2), *c1 = malloc(N * 2);
    for (size_t i = 0; i < N; i++) {
        b0[i] = sresid__f32_to_bf16(b0f[i]);
        c0[i] = sresid__f32_to_f16(c0f[i]);
        c1[i] = sresid__f32_to_f16(c1f[i]);
    }
    int32_t ids[3] = {1, 2, 3};
    const int64_t s[2] = {N, 1}, s3[1] = {3};
    sresid_model *base, *tr;
    ck_assert_ok(sresid_model_create(NULL, &base));
    ck_assert_ok(sresid_model_create(NULL, &tr));
    ck_assert_ok(sresid_model_add_tensor(base, "a", SRESID_DTYPE_F32, 2, s, a0, N * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "b", SRESID_DTYPE_BF16, 2, s, b0, N * 2, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "ids", SRESID_DTYPE_I32, 1, s3, ids, 12, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "c", SRESID_DTYPE_F16, 2, s, c0, N * 2, 0));
    /* trained in another order, from a file */
    ck_assert_ok(sresid_model_add_tensor(tr, "c", SRESID_DTYPE_F16, 2, s, c1, N * 2, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "ids", SRESID_DTYPE_I32, 1, s3, ids, 12, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "b", SRESID_DTYPE_F32, 2, s, b1, N * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "a", SRESID_DTYPE_F32, 2, s, a1, N * 4, 0));
    const char *p = tu_path("resid_trained.safetensors");
    ck_assert_ok(sresid_model_save(tr, p, NULL));
    sresid_model_free(tr);
    ck_assert_ok(sresid_model_open(p, NULL, &tr));

    sresid_residual *r;
    ck_assert_ok(sresid_residual_create(base, tr, NULL, &r));
    ck_assert_uint_eq(sresid_residual_count(r), 3);
    ck_assert_uint_eq(sresid_residual_unpaired_count(r), 1);
    const char *name;
    int32_t reason;
    ck_assert_ok(sresid_residual_unpaired(r, 0, &name, &reason));
    ck_assert_str_eq(name, "ids");
    ck_assert_int_eq(reason, SRESID_UNPAIRED_NOT_FLOAT);

    const float *bases[3] = {a0, NULL, NULL}, *trains[3] = {a1, b1, NULL};
    float *buf = malloc(N * sizeof *buf);
    double tot[3] = {0, 0, 0};
    for (size_t i = 0; i < 3; i++) {
        size_t bi, ti;
        ck_assert_ok(sresid_residual_pair(r, i, &bi, &ti));
        sresid_tensor_info info = {.size = sizeof info};
        ck_assert_ok(sresid_model_tensor_info(base, bi, &info));
        ck_assert_ok(sresid_residual_read(r, i, buf, N));
        double sb = 0, st = 0, sr = 0;
        for (size_t j = 0; j < N; j++) {
            /* independent conversions: bf16 by shifting, f16 by the compiler */
            float vb, vt;
            if (info.name[0] == 'b') {
                uint32_t bits = (uint32_t)b0[j] << 16;
                memcpy(&vb, &bits, 4);
            } else if (info.name[0] == 'c') {
                vb = half_ref(c0[j]);
                vt = half_ref(c1[j]);
            } else {
                vb = bases[0][j];
            }
            if (info.name[0] != 'c')
                vt = trains[info.name[0] - 'a'][j];
            ck_assert_float_eq(buf[j], vt - vb);
            sb += (double)vb * vb;
            st += (double)vt * vt;
            sr += (double)(vt - vb) * (double)(vt - vb);
        }
        sresid_norms nm = {.size = sizeof nm};
        ck_assert_ok(sresid_residual_norms(r, i, &nm));
        ck_assert_double_eq_tol(nm.base, sqrt(sb), 1e-12 * sqrt(sb));
        ck_assert_double_eq_tol(nm.trained, sqrt(st), 1e-12 * sqrt(st));
        ck_assert_double_eq_tol(nm.residual, sqrt(sr), 1e-12 * sqrt(sr));
        ck_assert_double_eq_tol(nm.relative, sqrt(sr) / sqrt(sb), 1e-12);
        tot[0] += sb;
        tot[1] += st;
        tot[2] += sr;
    }
    sresid_norms all = {.size = sizeof all};
    ck_assert_ok(sresid_residual_norms(r, SRESID_ALL, &all));
    ck_assert_double_eq_tol(all.relative, sqrt(tot[2] / tot[0]), 1e-12);
    ck_assert_double_eq_tol(all.trained, sqrt(tot[1]), 1e-9);

    /* argument checks */
    ck_assert_status(sresid_residual_read(r, 0, buf, N - 1), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_residual_read(r, 3, buf, N), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_residual_read(NULL, 0, buf, N), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_residual_norms(r, 3, &all), SRESID_ERR_INVALID_ARG);
    all.size = 8;
    ck_assert_status(sresid_residual_norms(r, 0, &all), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_residual_unpaired(r, 1, &name, &reason), SRESID_ERR_INVALID_ARG);
    ck_assert_uint_eq(sresid_residual_count(NULL), 0);
    sresid_residual_free(r);
    sresid_residual_free(NULL);
    sresid_model_free(base);
    sresid_model_free(tr);
    free(buf);
    free(a0), free(a1), free(b0f), free(b1), free(c0f), free(c1f), free(b0), free(c0), free(c1);
}
END_TEST

START_TEST(mismatches_fail_or_are_listed)
{
    sresid_model *base, *tr;
    ck_assert_ok(sresid_model_create(NULL, &base));
    ck_assert_ok(sresid_model_create(NULL, &tr));
    float x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {0};
    const int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s6[1] = {6};
    ck_assert_ok(sresid_model_add_tensor(base, "same", SRESID_DTYPE_F32, 2, s23, x, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "same", SRESID_DTYPE_F32, 2, s23, y, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "transposed", SRESID_DTYPE_F32, 2, s23, x, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "transposed", SRESID_DTYPE_F32, 2, s32, x, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "flat", SRESID_DTYPE_F32, 2, s23, x, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "flat", SRESID_DTYPE_F32, 1, s6, x, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "gone", SRESID_DTYPE_F32, 1, s6, x, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "new", SRESID_DTYPE_F32, 1, s6, x, 24, 0));
    /* one-sided integer tensors are left out, never a mismatch */
    int64_t step = 3;
    const int64_t s1[1] = {1};
    ck_assert_ok(sresid_model_add_tensor(base, "step", SRESID_DTYPE_I64, 1, s1, &step, 8, 0));
    ck_assert_ok(sresid_model_add_tensor(tr, "mask", SRESID_DTYPE_BOOL, 1, s6, x, 6, 0));
    sresid_residual *r = (sresid_residual *)(uintptr_t)0x1;
    ck_assert_status(sresid_residual_create(base, tr, NULL, &r), SRESID_ERR_MISMATCH);
    ck_assert_ptr_eq(r, (sresid_residual *)(uintptr_t)0x1);
    const char *msg = sresid_last_error();
    ck_assert_ptr_nonnull(strstr(msg, "'transposed' (shapes differ)"));
    ck_assert_ptr_nonnull(strstr(msg, "'flat' (shapes differ)"));
    ck_assert_ptr_nonnull(strstr(msg, "'gone' (only in base)"));
    ck_assert_ptr_nonnull(strstr(msg, "'new' (only in trained)"));
    ck_assert_ptr_nonnull(strstr(msg, "4 tensors"));

    sresid_pair_opts o = {.size = sizeof o, .flags = SRESID_PAIR_SKIP_MISMATCHED};
    ck_assert_ok(sresid_residual_create(base, tr, &o, &r));
    ck_assert_uint_eq(sresid_residual_count(r), 1);
    const char *want[6] = {"transposed", "flat", "gone", "step", "new", "mask"};
    const int32_t why[6] = {SRESID_UNPAIRED_SHAPE,      SRESID_UNPAIRED_SHAPE,
                            SRESID_UNPAIRED_BASE_ONLY,  SRESID_UNPAIRED_NOT_FLOAT,
                            SRESID_UNPAIRED_TRAINED_ONLY, SRESID_UNPAIRED_NOT_FLOAT};
    ck_assert_uint_eq(sresid_residual_unpaired_count(r), 6);
    for (size_t i = 0; i < 6; i++) {
        const char *name;
        int32_t reason;
        ck_assert_ok(sresid_residual_unpaired(r, i, &name, &reason));
        ck_assert_str_eq(name, want[i]);
        ck_assert_int_eq(reason, why[i]);
    }
    float out[6];
    ck_assert_ok(sresid_residual_read(r, 0, out, 6));
    ck_assert_float_eq(out[5], -6.0f);
    sresid_norms nm = {.size = sizeof nm};
    ck_assert_ok(sresid_residual_norms(r, 0, &nm));
    ck_assert_double_eq_tol(nm.relative, 1.0, 1e-15);
    ck_assert_double_eq(nm.trained, 0.0);
    sresid_residual_free(r);

    /* a zero base: relative norm undefined (NaN), not an error */
    ck_assert_ok(sresid_residual_create(tr, base, &o, &r));
    ck_assert_ok(sresid_residual_norms(r, 0, &nm));
    ck_assert(isnan(nm.relative));
    sresid_residual_free(r);

    o.flags = 0x100;
    ck_assert_status(sresid_residual_create(base, tr, &o, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_residual_create(NULL, tr, NULL, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_residual_create(base, tr, NULL, NULL), SRESID_ERR_INVALID_ARG);
    sresid_model_free(base);
    sresid_model_free(tr);
}
END_TEST

Suite *suite_residual(void)
{
    Suite *s = suite_create("residual");
    TCase *tc = tcase_create("residual");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, read_and_norms_match_reference);
    tcase_add_test(tc, mismatches_fail_or_are_listed);
    suite_add_tcase(s, tc);
    return s;
}
