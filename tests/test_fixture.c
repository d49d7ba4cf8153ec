/* The real base / fine-tune pair in tests/fixtures (facts in its README,
 * measured independently with numpy in float64). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define BASE "fixtures/faceapi.face_landmark_68_model.f32.safetensors"
#define TRAINED "fixtures/faceapi.face_expression_model.f32.safetensors"

START_TEST(fixture_pair_facts)
{
    sresid_model *a, *b;
    ck_assert_ok(sresid_model_open(tu_fixture(BASE), NULL, &a));
    ck_assert_ok(sresid_model_open(tu_fixture(TRAINED), NULL, &b));
    ck_assert_uint_eq(sresid_model_tensor_count(a), 49);
    ck_assert_uint_eq(sresid_model_tensor_count(b), 49);
    const char *lic;
    ck_assert_ok(sresid_model_metadata_get(a, "license", &lic));
    ck_assert_str_eq(lic, "MIT");

    sresid_residual *r;
    ck_assert_status(sresid_residual_create(a, b, NULL, &r), SRESID_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "fc/weights"));
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "fc/bias"));
    sresid_pair_opts o = {.size = sizeof o, .flags = SRESID_PAIR_SKIP_MISMATCHED};
    ck_assert_ok(sresid_residual_create(a, b, &o, &r));
    ck_assert_uint_eq(sresid_residual_count(r), 47);
    ck_assert_uint_eq(sresid_residual_unpaired_count(r), 2);
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        const char *name;
        int32_t reason;
        ck_assert_ok(sresid_residual_unpaired(r, i, &name, &reason));
        ck_assert_int_eq(reason, SRESID_UNPAIRED_SHAPE);
        seen |= strcmp(name, "fc/weights") == 0 ? 1 : strcmp(name, "fc/bias") == 0 ? 2 : 4;
    }
    ck_assert_int_eq(seen, 3);

    sresid_norms all = {.size = sizeof all};
    ck_assert_ok(sresid_residual_norms(r, SRESID_ALL, &all));
    ck_assert_double_eq_tol(all.relative, 0.525552, 1e-6);

    size_t bi = 0, found = 0;
    for (size_t i = 0; i < 47; i++) {
        size_t ti;
        sresid_tensor_info info = {.size = sizeof info};
        ck_assert_ok(sresid_residual_pair(r, i, &bi, &ti));
        ck_assert_ok(sresid_model_tensor_info(a, bi, &info));
        if (strcmp(info.name, "dense3/conv3/pointwise_filter") != 0)
            continue;
        found = 1;
        ck_assert_int_eq(info.ndim, 4);
        ck_assert_int_eq(info.shape[0], 1);
        ck_assert_int_eq(info.shape[3], 256);
        sresid_norms nm = {.size = sizeof nm};
        ck_assert_ok(sresid_residual_norms(r, i, &nm));
        ck_assert_double_eq_tol(nm.residual, 42.526396, 1e-6 * 42.526396);
        /* the same from the residual read into a buffer */
        float *buf = malloc(65536 * sizeof *buf);
        ck_assert_ok(sresid_residual_read(r, i, buf, 65536));
        double s = 0;
        for (size_t j = 0; j < 65536; j++)
            s += (double)buf[j] * buf[j];
        ck_assert_double_eq_tol(sqrt(s), 42.526396, 1e-6 * 42.526396);
        free(buf);
        /* TF.js layout [kh, kw, in, out]: the out-last view is the 256x256 matrix */
        ck_assert_int_eq(info.rows, 1);
        ck_assert_int_eq(info.cols, 65536);
        ck_assert_ok(sresid_model_set_layout(a, SRESID_LAYOUT_OUT_LAST));
        ck_assert_ok(sresid_model_tensor_info(a, bi, &info));
        ck_assert_int_eq(info.rows, 256);
        ck_assert_int_eq(info.cols, 256);
    }
    ck_assert_int_eq(found, 1);
    sresid_residual_free(r);
    sresid_model_free(a);
    sresid_model_free(b);
}
END_TEST

/* The fixture was written by the reference implementation: saving it again
 * must reproduce the file byte for byte. */
START_TEST(fixture_resaves_identically)
{
    sresid_model *a;
    ck_assert_ok(sresid_model_open(tu_fixture(BASE), NULL, &a));
    const char *p = tu_path("fixture-resaved.safetensors");
    ck_assert_ok(sresid_model_save(a, p, NULL));
    size_t l1, l2;
    unsigned char *f1 = tu_read_file(tu_fixture(BASE), &l1), *f2 = tu_read_file(p, &l2);
    ck_assert_ptr_nonnull(f1);
    ck_assert_ptr_nonnull(f2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_int_eq(memcmp(f1, f2, l1), 0);
    free(f1);
    free(f2);
    sresid_model_free(a);
}
END_TEST

Suite *suite_fixture(void)
{
    Suite *s = suite_create("fixture");
    TCase *tc = tcase_create("fixture");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fixture_pair_facts);
    tcase_add_test(tc, fixture_resaves_identically);
    suite_add_tcase(s, tc);
    return s;
}
