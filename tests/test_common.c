/* Version, status texts, thread-local errors, option structs, threads, BLIS. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "model/model.h"
#include "testutil.h"

START_TEST(version_matches_header)
{
    ck_assert_uint_eq(sresid_version_number(), SRESID_VERSION_NUMBER);
    ck_assert_str_eq(sresid_version_string(), SRESID_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", SRESID_VERSION_MAJOR, SRESID_VERSION_MINOR,
             SRESID_VERSION_PATCH);
    ck_assert_str_eq(buf, SRESID_VERSION_STRING);
    ck_assert_uint_eq(SRESID_VERSION_NUMBER,
                      SRESID_VERSION_MAJOR * 10000 + SRESID_VERSION_MINOR * 100 +
                          SRESID_VERSION_PATCH);
}
END_TEST

START_TEST(strerror_distinct_and_never_null)
{
    for (int a = 0; a <= SRESID_ERR_UNSUPPORTED; a++) {
        ck_assert_ptr_nonnull(sresid_strerror(a));
        ck_assert_str_ne(sresid_strerror(a), "unknown status code");
        for (int b = a + 1; b <= SRESID_ERR_UNSUPPORTED; b++)
            ck_assert_str_ne(sresid_strerror(a), sresid_strerror(b));
    }
    ck_assert_str_eq(sresid_strerror(-1), "unknown status code");
    ck_assert_str_eq(sresid_strerror(9999), "unknown status code");
}
END_TEST

/* The pinned numbers are ABI: a renumbering must fail here. */
START_TEST(status_codes_pinned)
{
    const int want[] = {SRESID_OK,          SRESID_ERR_INVALID_ARG, SRESID_ERR_NOMEM,
                        SRESID_ERR_IO,      SRESID_ERR_TRUNCATED,   SRESID_ERR_HEADER,
                        SRESID_ERR_JSON,    SRESID_ERR_DTYPE,       SRESID_ERR_SHAPE,
                        SRESID_ERR_OFFSETS, SRESID_ERR_DUPLICATE,   SRESID_ERR_METADATA,
                        SRESID_ERR_NOT_FOUND, SRESID_ERR_MISMATCH,  SRESID_ERR_OVERFLOW,
                        SRESID_ERR_NONFINITE, SRESID_ERR_UNSUPPORTED};
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++)
        ck_assert_int_eq(want[i], i);
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    const char *before = sresid_last_error();
    int clean = before[0] == '\0';
    sresid_model *m = NULL;
    sresid_model_open("/nonexistent/other-thread", NULL, &m);
    int mine = strstr(sresid_last_error(), "other-thread") != NULL;
    return (void *)(intptr_t)(clean && mine);
}

START_TEST(last_error_is_thread_local)
{
    sresid_model *m = NULL;
    ck_assert_status(sresid_model_open("/nonexistent/main-thread", NULL, &m), SRESID_ERR_IO);
    ck_assert_ptr_null(m);
    pthread_t th;
    void *res;
    ck_assert_int_eq(pthread_create(&th, NULL, other_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(th, &res), 0);
    ck_assert_msg(res == (void *)1, "other thread saw this thread's message or none of its own");
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "main-thread"));
}
END_TEST

START_TEST(threads_setting)
{
    ck_assert_ok(sresid_set_threads(3));
    ck_assert_int_eq(sresid_get_threads(), 3);
    ck_assert_status(sresid_set_threads(-1), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_set_threads(5000), SRESID_ERR_INVALID_ARG);
    ck_assert_int_eq(sresid_get_threads(), 3);
    setenv("SRESID_NUM_THREADS", "2", 1);
    ck_assert_ok(sresid_set_threads(0));
    ck_assert_int_eq(sresid_get_threads(), 2);
    setenv("SRESID_NUM_THREADS", "junk", 1);
    ck_assert_int_ge(sresid_get_threads(), 1);
    unsetenv("SRESID_NUM_THREADS");
}
END_TEST

START_TEST(options_struct_checks)
{
    struct {
        sresid_model_opts o;
        unsigned char tail[16];
    } big;
    memset(&big, 0, sizeof big);
    big.o.size = sizeof big;
    sresid_model *m = NULL;
    /* larger struct from a newer header: fine while the tail is zero */
    ck_assert_ok(sresid_model_create(&big.o, &m));
    sresid_model_free(m);
    m = NULL;
    big.tail[3] = 1;
    ck_assert_status(sresid_model_create(&big.o, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
    sresid_model_opts small = {0};
    ck_assert_status(sresid_model_create(&small, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "size"));
    /* an older struct that stops before layout: defaults for the rest */
    small.size = sizeof(size_t);
    ck_assert_ok(sresid_model_create(&small, &m));
    sresid_model_free(m);
    sresid_model_opts bad = {.size = sizeof bad, .layout = 7};
    ck_assert_status(sresid_model_create(&bad, &m), SRESID_ERR_INVALID_ARG);
    bad.layout = 0;
    bad.flags = 0x80;
    ck_assert_status(sresid_model_create(&bad, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_create(NULL, NULL), SRESID_ERR_INVALID_ARG);
}
END_TEST

static void naive_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda,
                       const float *b, int ldb, double *c)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < k; l++) {
                double x = ta ? a[l * lda + i] : a[i * lda + l];
                double y = tb ? b[j * ldb + l] : b[l * ldb + j];
                s += x * y;
            }
            c[i * n + j] = s;
        }
}

/* The BLIS wrapper against a plain triple loop, every transpose, two thread
 * counts (the product is big enough to use both), strided operands and
 * beta accumulation. */
START_TEST(sgemm_matches_reference)
{
    /* large enough (m n k > 2 x 2^21) that two threads really run */
    const int m = 173, n = 131, k = 211, pad = 3;
    uint64_t seed = 42;
    float *a = malloc(sizeof(float) * (m + pad) * (k + pad));
    float *b = malloc(sizeof(float) * (k + pad) * (n + pad));
    float *c = malloc(sizeof(float) * m * (n + pad));
    double *ref = malloc(sizeof(double) * m * n);
    for (int i = 0; i < (m + pad) * (k + pad); i++)
        a[i] = (float)tu_rand_normal(&seed);
    for (int i = 0; i < (k + pad) * (n + pad); i++)
        b[i] = (float)tu_rand_normal(&seed);
    for (int threads = 1; threads <= 2; threads++) {
        ck_assert_ok(sresid_set_threads(threads));
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                naive_gemm(ta, tb, m, n, k, a, lda, b, ldb, ref);
                for (int i = 0; i < m * ldc; i++)
                    c[i] = 1.0f;
                sresid__sgemm(ta, tb, m, n, k, 2.0f, a, lda, b, ldb, 0.5f, c, ldc);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double want = 2.0 * ref[i * n + j] + 0.5;
                        ck_assert_msg(fabs(c[i * ldc + j] - want) <= 1e-4 * (1 + fabs(want)),
                                      "ta=%d tb=%d (%d,%d): %g vs %g", ta, tb, i, j,
                                      c[i * ldc + j], want);
                    }
                for (int j = n; j < ldc; j++) /* padding untouched */
                    ck_assert_float_eq(c[j], 1.0f);
            }
    }
    sresid_set_threads(0);
    free(a);
    free(b);
    free(c);
    free(ref);
}
END_TEST

START_TEST(blas_arch_named)
{
    const char *arch = sresid_blas_arch();
    ck_assert_ptr_nonnull(arch);
    ck_assert_int_gt((int)strlen(arch), 0);
    ck_assert_str_ne(arch, "unknown");
}
END_TEST

/* The metadata readers shared by the library's own file formats: strict
 * counts (no sign, space, leading zero or overflow) and whole-string
 * numbers, written back so that they round-trip. */
START_TEST(metadata_readers)
{
    sresid_model *m = NULL;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const char *kv[][2] = {{"zero", "0"},
                           {"max", "18446744073709551615"},
                           {"over", "18446744073709551616"},
                           {"lead", "007"},
                           {"sign", "+5"},
                           {"neg", "-5"},
                           {"space", " 5"},
                           {"empty", ""},
                           {"tenth", "0.1"},
                           {"nan", "nan"},
                           {"inf", "inf"},
                           {"tail", "1.5x"},
                           {"tag", "sparseresid.test"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        ck_assert_ok(sresid_model_set_metadata(m, kv[i][0], kv[i][1]));
    uint64_t u = 1;
    ck_assert_ok(sresid__meta_u64(m, "f", "zero", UINT64_MAX, &u));
    ck_assert_uint_eq(u, 0);
    ck_assert_ok(sresid__meta_u64(m, "f", "max", UINT64_MAX, &u));
    ck_assert(u == UINT64_MAX);
    ck_assert_status(sresid__meta_u64(m, "f", "max", UINT32_MAX, &u), SRESID_ERR_METADATA);
    const char *bad[] = {"over", "lead", "sign", "neg", "space", "empty", "tenth", "missing"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        u = 42;
        ck_assert_status(sresid__meta_u64(m, "f", bad[i], UINT64_MAX, &u), SRESID_ERR_METADATA);
        ck_assert_uint_eq(u, 42);
    }
    ck_assert(strstr(sresid_last_error(), "f: no metadata \"missing\"") != NULL);
    double d = 0;
    ck_assert_ok(sresid__meta_f64(m, "f", "tenth", false, &d));
    ck_assert(d == 0.1);
    ck_assert_status(sresid__meta_f64(m, "f", "nan", false, &d), SRESID_ERR_METADATA);
    ck_assert_ok(sresid__meta_f64(m, "f", "nan", true, &d));
    ck_assert(isnan(d));
    ck_assert_status(sresid__meta_f64(m, "f", "inf", true, &d), SRESID_ERR_METADATA);
    ck_assert_status(sresid__meta_f64(m, "f", "tail", true, &d), SRESID_ERR_METADATA);
    /* format tag and version of the library's own files */
    ck_assert_ok(sresid_model_set_metadata(m, "format", "sparseresid.test"));
    ck_assert_status(sresid__meta_format(m, "f", "sparseresid.test", "version", "1", "test file"),
                     SRESID_ERR_METADATA);
    ck_assert_str_eq(sresid_last_error(), "f: no metadata \"version\" (want \"1\")");
    ck_assert_ok(sresid_model_set_metadata(m, "version", "2"));
    ck_assert_status(sresid__meta_format(m, "f", "sparseresid.test", "version", "1", "test file"),
                     SRESID_ERR_METADATA);
    ck_assert_str_eq(sresid_last_error(),
                     "f: test file version \"2\" is not supported (this library reads 1)");
    ck_assert_ok(sresid__meta_format(m, "f", "sparseresid.test", "version", "2", "test file"));
    ck_assert_status(sresid__meta_format(m, "f", "sparseresid.mask", "version", "2", "score mask"),
                     SRESID_ERR_METADATA);
    ck_assert_str_eq(sresid_last_error(), "f: not a score mask (its __metadata__ has no "
                                          "\"format\": \"sparseresid.mask\")");
    /* %.17g round-trips a double through the reader */
    const double xs[] = {0.1, 1.0 / 3.0, 5e-324, 1.7976931348623157e308, -2.5e-8};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        char buf[32];
        ck_assert(sresid__fmt_f64(buf, xs[i]));
        ck_assert_ok(sresid_model_set_metadata(m, "x", buf));
        ck_assert_ok(sresid__meta_f64(m, "f", "x", false, &d));
        ck_assert(d == xs[i]);
    }
    sresid_model_free(m);
}
END_TEST

Suite *suite_common(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("common");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, strerror_distinct_and_never_null);
    tcase_add_test(tc, status_codes_pinned);
    tcase_add_test(tc, last_error_is_thread_local);
    tcase_add_test(tc, threads_setting);
    tcase_add_test(tc, options_struct_checks);
    tcase_add_test(tc, sgemm_matches_reference);
    tcase_add_test(tc, blas_arch_named);
    tcase_add_test(tc, metadata_readers);
    suite_add_tcase(s, tc);
    return s;
}
