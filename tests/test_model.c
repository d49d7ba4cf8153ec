/* In-memory models, save/open round trips, metadata, views, kind rules. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "testutil.h"

static const sresid_dtype all_dtypes[] = {
    SRESID_DTYPE_BOOL, SRESID_DTYPE_U8,  SRESID_DTYPE_I8,   SRESID_DTYPE_F8_E5M2,
    SRESID_DTYPE_F8_E4M3, SRESID_DTYPE_I16, SRESID_DTYPE_U16, SRESID_DTYPE_F16,
    SRESID_DTYPE_BF16, SRESID_DTYPE_I32, SRESID_DTYPE_U32, SRESID_DTYPE_F32,
    SRESID_DTYPE_F64,  SRESID_DTYPE_I64, SRESID_DTYPE_U64};
#define NDT (sizeof all_dtypes / sizeof all_dtypes[0])

static sresid_tensor_info info_of(const sresid_model *m, size_t i)
{
    sresid_tensor_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    ck_assert_ok(sresid_model_tensor_info(m, i, &ti));
    return ti;
}

static int dir_has_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d)))
        found |= strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    return found;
}

/* One tensor of every dtype, several ranks, random bytes: save, reopen, same
 * names, dtypes, shapes and bytes; a second save writes the same file. */
START_TEST(roundtrip_every_dtype)
{
    const int64_t shapes[][3] = {{3, 5, 2}, {7, 0, 0}, {0, 0, 0}, {4, 4, 0}, {2, 3, 0}};
    const int32_t ranks[] = {3, 1, 0, 2, 2};
    uint64_t seed = 7;
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    unsigned char buf[512];
    for (size_t d = 0; d < NDT; d++)
        for (size_t s = 0; s < 5; s++) {
            char name[64];
            snprintf(name, sizeof name, "t.%s.%zu", sresid_dtype_name(all_dtypes[d]), s);
            size_t n = sresid_dtype_size(all_dtypes[d]);
            for (int r = 0; r < ranks[s]; r++)
                n *= (size_t)shapes[s][r];
            for (size_t i = 0; i < n; i++)
                buf[i] = (unsigned char)tu_rand_u64(&seed);
            ck_assert_ok(sresid_model_add_tensor(m, name, all_dtypes[d], ranks[s], shapes[s], buf,
                                                 n, 0));
        }
    /* zero-element tensors */
    const int64_t z[2] = {3, 0};
    ck_assert_ok(sresid_model_add_tensor(m, "empty", SRESID_DTYPE_F32, 2, z, NULL, 0, 0));
    ck_assert_ok(sresid_model_set_metadata(m, "format", "pt"));
    ck_assert_ok(sresid_model_set_metadata(m, "note", "h\xc3\xa9llo \"quoted\""));
    const char *p1 = tu_path("rt1.safetensors"), *p2 = tu_path("rt2.safetensors");
    ck_assert_ok(sresid_model_save(m, p1, NULL));
    sresid_model *r;
    ck_assert_ok(sresid_model_open(p1, NULL, &r));
    ck_assert_uint_eq(sresid_model_tensor_count(r), sresid_model_tensor_count(m));
    for (size_t i = 0; i < sresid_model_tensor_count(m); i++) {
        sresid_tensor_info a = info_of(m, i);
        size_t j;
        ck_assert_ok(sresid_model_find(r, a.name, &j));
        sresid_tensor_info b = info_of(r, j);
        ck_assert_int_eq(a.dtype, b.dtype);
        ck_assert_int_eq(a.ndim, b.ndim);
        for (int k = 0; k < a.ndim; k++)
            ck_assert_int_eq(a.shape[k], b.shape[k]);
        ck_assert_uint_eq(a.nbytes, b.nbytes);
        if (a.nbytes) {
            unsigned char got[512];
            ck_assert_ok(sresid_model_read_raw(r, j, got, sizeof got));
            ck_assert_int_eq(memcmp(got, a.data, a.nbytes), 0);
            ck_assert_int_eq(memcmp(b.data, a.data, a.nbytes), 0);
        } else {
            ck_assert_ptr_null(b.data);
        }
    }
    const char *v;
    ck_assert_ok(sresid_model_metadata_get(r, "note", &v));
    ck_assert_str_eq(v, "h\xc3\xa9llo \"quoted\"");
    ck_assert_ok(sresid_model_save(r, p2, NULL));
    size_t l1, l2;
    unsigned char *f1 = tu_read_file(p1, &l1), *f2 = tu_read_file(p2, &l2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_int_eq(memcmp(f1, f2, l1), 0);
    free(f1);
    free(f2);
    sresid_model_free(r);
    sresid_model_free(m);
    ck_assert_int_eq(dir_has_tmp(tu_tmpdir()), 0);
}
END_TEST

/* The reference layout: header padded with spaces to 8 bytes, tensors by
 * dtype in descending safetensors enum order (F32 before I32), then name. */
START_TEST(save_reference_layout)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const int64_t s3[1] = {3};
    float f[3] = {1, 2, 3};
    double d[3] = {4, 5, 6};
    uint16_t h[3] = {0x3c00, 0, 0};
    ck_assert_ok(sresid_model_add_tensor(m, "b_f32", SRESID_DTYPE_F32, 1, s3, f, 12, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "z_f16", SRESID_DTYPE_F16, 1, s3, h, 6, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "c_f64", SRESID_DTYPE_F64, 1, s3, d, 24, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "a_f32", SRESID_DTYPE_F32, 1, s3, f, 12, 0));
    int32_t iv[3] = {7, 8, 9};
    ck_assert_ok(sresid_model_add_tensor(m, "a_i32", SRESID_DTYPE_I32, 1, s3, iv, 12, 0));
    const char *p = tu_path("layout.safetensors");
    ck_assert_ok(sresid_model_save(m, p, NULL));
    size_t len;
    unsigned char *buf = tu_read_file(p, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    ck_assert_uint_eq((8 + hlen) % 8, 0);
    ck_assert_uint_eq(len, 8 + hlen + 24 + 12 + 12 + 12 + 6);
    char *hdr = strndup((char *)buf + 8, hlen);
    const char *want = "{\"c_f64\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]},"
                       "\"a_f32\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]},"
                       "\"b_f32\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[36,48]},"
                       "\"a_i32\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[48,60]},"
                       "\"z_f16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[60,66]}}";
    ck_assert_int_eq(strncmp(hdr, want, strlen(want)), 0);
    for (size_t i = strlen(want); i < hlen; i++)
        ck_assert_int_eq(hdr[i], ' ');
    double got;
    memcpy(&got, buf + 8 + hlen + 8, sizeof got);
    ck_assert_double_eq(got, 5.0);
    free(hdr);
    free(buf);
    sresid_model_free(m);
}
END_TEST

START_TEST(borrowed_vs_copied)
{
    float data[4] = {1, 2, 3, 4};
    const int64_t shape[2] = {2, 2};
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    ck_assert_ok(sresid_model_add_tensor(m, "copied", SRESID_DTYPE_F32, 2, shape, data,
                                         sizeof data, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "borrowed", SRESID_DTYPE_F32, 2, shape, data,
                                         sizeof data, SRESID_ADD_BORROW));
    data[2] = 30;
    float out[4];
    ck_assert_ok(sresid_model_read_f32(m, 0, out, 4));
    ck_assert_float_eq(out[2], 3);
    ck_assert_ok(sresid_model_read_f32(m, 1, out, 4));
    ck_assert_float_eq(out[2], 30);
    sresid_tensor_info ti = info_of(m, 1);
    ck_assert_ptr_eq(ti.data, data);
    ck_assert_ptr_ne(info_of(m, 0).data, data);
    /* saved files hold the current borrowed bytes */
    const char *p = tu_path("borrowed.safetensors");
    ck_assert_ok(sresid_model_save(m, p, NULL));
    sresid_model *r;
    ck_assert_ok(sresid_model_open(p, NULL, &r));
    size_t j;
    ck_assert_ok(sresid_model_find(r, "borrowed", &j));
    ck_assert_ok(sresid_model_read_f32(r, j, out, 4));
    ck_assert_float_eq(out[2], 30);
    sresid_model_free(r);
    sresid_model_free(m);
}
END_TEST

START_TEST(add_tensor_rejects_bad_input)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    float x[6] = {0};
    const int64_t s[2] = {2, 3}, neg[2] = {2, -3}, huge[3] = {1ll << 40, 1ll << 40, 1ll << 40};
    int64_t many[65];
    for (int i = 0; i < 65; i++)
        many[i] = 1;
    ck_assert_status(sresid_model_add_tensor(NULL, "a", SRESID_DTYPE_F32, 2, s, x, 24, 0),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_add_tensor(m, NULL, SRESID_DTYPE_F32, 2, s, x, 24, 0),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_add_tensor(m, "a", 99, 2, s, x, 24, 0), SRESID_ERR_DTYPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", 0, 2, s, x, 24, 0), SRESID_ERR_DTYPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, s, x, 20, 0),
                     SRESID_ERR_SHAPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, neg, x, 24, 0),
                     SRESID_ERR_SHAPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 3, huge, x, 24, 0),
                     SRESID_ERR_SHAPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 65, many, x, 4, 0),
                     SRESID_ERR_SHAPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, -1, s, x, 4, 0),
                     SRESID_ERR_SHAPE);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, NULL, x, 24, 0),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, s, NULL, 24, 0),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_add_tensor(m, "__metadata__", SRESID_DTYPE_F32, 2, s, x, 24, 0),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_add_tensor(m, "bad\xff", SRESID_DTYPE_F32, 2, s, x, 24, 0),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, s, x, 24, 0x10),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_uint_eq(sresid_model_tensor_count(m), 0);
    ck_assert_ok(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, s, x, 24, 0));
    ck_assert_status(sresid_model_add_tensor(m, "a", SRESID_DTYPE_F32, 2, s, x, 24, 0),
                     SRESID_ERR_DUPLICATE);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "'a'"));
    ck_assert_uint_eq(sresid_model_tensor_count(m), 1);
    sresid_model_free(m);
}
END_TEST

START_TEST(read_checks_and_conversions)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const int64_t s[1] = {5};
    double d[5] = {1.0 / 3.0, 1e-40, -1e300, INFINITY, NAN};
    int32_t iv[5] = {1, 2, 3, 4, 5};
    ck_assert_ok(sresid_model_add_tensor(m, "d", SRESID_DTYPE_F64, 1, s, d, sizeof d, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "i", SRESID_DTYPE_I32, 1, s, iv, sizeof iv, 0));
    float out[5];
    ck_assert_ok(sresid_model_read_f32(m, 0, out, 5));
    ck_assert_float_eq(out[0], (float)(1.0 / 3.0));
    ck_assert_float_eq(out[1], (float)1e-40);
    ck_assert(isinf(out[2]) && out[2] < 0);
    ck_assert(isinf(out[3]) && out[3] > 0);
    ck_assert(isnan(out[4]));
    ck_assert_status(sresid_model_read_f32(m, 0, out, 4), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_model_read_f32(m, 1, out, 5), SRESID_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "'i'"));
    ck_assert_status(sresid_model_read_f32(m, 2, out, 5), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_read_f32(m, 0, NULL, 5), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_read_f32(NULL, 0, out, 5), SRESID_ERR_INVALID_ARG);
    int32_t raw[5];
    ck_assert_status(sresid_model_read_raw(m, 1, raw, 19), SRESID_ERR_SHAPE);
    ck_assert_ok(sresid_model_read_raw(m, 1, raw, 20));
    ck_assert_int_eq(raw[4], 5);
    size_t idx = 77;
    ck_assert_status(sresid_model_find(m, "nope", &idx), SRESID_ERR_NOT_FOUND);
    ck_assert_uint_eq(idx, 77);
    ck_assert_ok(sresid_model_find(m, "i", &idx));
    ck_assert_uint_eq(idx, 1);
    sresid_model_free(m);
}
END_TEST

/* Many tensors: the name index must keep working as it grows. */
START_TEST(find_many)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const int64_t s[1] = {1};
    float x = 0;
    for (int i = 0; i < 3000; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d.w", i);
        x = (float)i;
        ck_assert_ok(sresid_model_add_tensor(m, name, SRESID_DTYPE_F32, 1, s, &x, 4, 0));
    }
    for (int i = 0; i < 3000; i += 7) {
        char name[32];
        size_t j;
        float v;
        snprintf(name, sizeof name, "layers.%d.w", i);
        ck_assert_ok(sresid_model_find(m, name, &j));
        ck_assert_ok(sresid_model_read_f32(m, j, &v, 1));
        ck_assert_float_eq(v, (float)i);
        ck_assert_int_eq(info_of(m, j).layer, i);
    }
    sresid_model_free(m);
}
END_TEST

START_TEST(metadata_ops)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    ck_assert_ok(sresid_model_set_metadata(m, "a", "1"));
    ck_assert_ok(sresid_model_set_metadata(m, "b", "2"));
    ck_assert_ok(sresid_model_set_metadata(m, "c", "3"));
    ck_assert_ok(sresid_model_set_metadata(m, "a", "one"));
    ck_assert_ok(sresid_model_set_metadata(m, "b", NULL));
    ck_assert_ok(sresid_model_set_metadata(m, "zz", NULL));
    ck_assert_uint_eq(sresid_model_metadata_count(m), 2);
    const char *k, *v;
    ck_assert_ok(sresid_model_metadata_at(m, 0, &k, &v));
    ck_assert_str_eq(k, "a");
    ck_assert_str_eq(v, "one");
    ck_assert_ok(sresid_model_metadata_at(m, 1, &k, &v));
    ck_assert_str_eq(k, "c");
    ck_assert_status(sresid_model_metadata_at(m, 2, &k, &v), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_metadata_get(m, "b", &v), SRESID_ERR_NOT_FOUND);
    ck_assert_status(sresid_model_set_metadata(m, "x", "\xc0\x80"), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_set_metadata(NULL, "x", "y"), SRESID_ERR_INVALID_ARG);
    const char *p = tu_path("meta.safetensors");
    ck_assert_ok(sresid_model_save(m, p, NULL));
    sresid_model *r;
    ck_assert_ok(sresid_model_open(p, NULL, &r));
    ck_assert_uint_eq(sresid_model_tensor_count(r), 0);
    ck_assert_uint_eq(sresid_model_metadata_count(r), 2);
    ck_assert_ok(sresid_model_metadata_get(r, "c", &v));
    ck_assert_str_eq(v, "3");
    sresid_model_free(r);
    sresid_model_free(m);
}
END_TEST

START_TEST(save_never_partial)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const int64_t s[1] = {2};
    float x[2] = {1, 2};
    ck_assert_ok(sresid_model_add_tensor(m, "x", SRESID_DTYPE_F32, 1, s, x, 8, 0));
    const char *p = tu_path("noclobber.safetensors");
    ck_assert_int_eq(tu_write_file(p, "keep", 4), 0);
    sresid_save_opts o = {.size = sizeof o, .flags = SRESID_SAVE_NO_CLOBBER};
    ck_assert_status(sresid_model_save(m, p, &o), SRESID_ERR_IO);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "exists"));
    size_t len;
    unsigned char *b = tu_read_file(p, &len);
    ck_assert_uint_eq(len, 4);
    free(b);
    ck_assert_int_eq(dir_has_tmp(tu_tmpdir()), 0);
    ck_assert_ok(sresid_model_save(m, p, NULL)); /* default replaces */
    ck_assert_status(sresid_model_save(m, "/nonexistent-dir/x.safetensors", NULL), SRESID_ERR_IO);
    ck_assert_status(sresid_model_save(m, NULL, NULL), SRESID_ERR_INVALID_ARG);
    o.flags = 0x40;
    ck_assert_status(sresid_model_save(m, p, &o), SRESID_ERR_INVALID_ARG);
    sresid_model_free(m);
}
END_TEST

START_TEST(matrix_views)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const int64_t s4[4] = {3, 4, 5, 6}, s2[2] = {7, 8}, s1[1] = {9}, s0z[3] = {0, 1ll << 40, 1ll << 40};
    float *buf = calloc(360, sizeof *buf);
    ck_assert_ok(sresid_model_add_tensor(m, "r4", SRESID_DTYPE_F32, 4, s4, buf, 360 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "r2", SRESID_DTYPE_F32, 2, s2, buf, 56 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "r1", SRESID_DTYPE_F32, 1, s1, buf, 9 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "r0", SRESID_DTYPE_F32, 0, NULL, buf, 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "z", SRESID_DTYPE_F32, 3, s0z, NULL, 0, 0));
    const int64_t want_first[5][2] = {{3, 120}, {7, 8}, {1, 9}, {1, 1}, {0, INT64_MAX}};
    const int64_t want_last[5][2] = {{60, 6}, {7, 8}, {1, 9}, {1, 1}, {0, 1ll << 40}};
    for (int layout = 0; layout < 2; layout++) {
        ck_assert_ok(sresid_model_set_layout(m, layout));
        for (size_t i = 0; i < 5; i++) {
            sresid_tensor_info ti = info_of(m, i);
            const int64_t *w = layout ? want_last[i] : want_first[i];
            ck_assert_int_eq(ti.rows, w[0]);
            ck_assert_int_eq(ti.cols, w[1]);
        }
    }
    ck_assert_int_eq(info_of(m, 3).numel, 1);
    ck_assert_int_eq(info_of(m, 4).numel, 0);
    ck_assert_status(sresid_model_set_layout(m, 2), SRESID_ERR_INVALID_ARG);
    /* an older, shorter info struct: fields past its size stay untouched */
    sresid_tensor_info ti;
    memset(&ti, 0xAB, sizeof ti);
    ti.size = offsetof(sresid_tensor_info, layer) + sizeof ti.layer;
    ck_assert_ok(sresid_model_tensor_info(m, 0, &ti));
    ck_assert_int_eq(ti.ndim, 4);
    ti.size = offsetof(sresid_tensor_info, rows);
    ck_assert_status(sresid_model_tensor_info(m, 0, &ti), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_tensor_info(m, 0, NULL), SRESID_ERR_INVALID_ARG);
    free(buf);
    sresid_model_free(m);
}
END_TEST

START_TEST(kind_rules_override)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const int64_t s[1] = {1};
    float x = 0;
    const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight",
                           "dense0/conv0/filters"};
    for (int i = 0; i < 3; i++)
        ck_assert_ok(sresid_model_add_tensor(m, names[i], SRESID_DTYPE_F32, 1, s, &x, 4, 0));
    ck_assert_int_eq(info_of(m, 0).kind, SRESID_KIND_ATTENTION);
    ck_assert_int_eq(info_of(m, 1).kind, SRESID_KIND_MLP);
    ck_assert_int_eq(info_of(m, 2).kind, SRESID_KIND_OTHER);
    const char *pats[] = {"DENSE*/conv*"};
    const int32_t kinds[] = {SRESID_KIND_MLP};
    ck_assert_ok(sresid_model_set_kind_rules(m, pats, kinds, 1, 0));
    ck_assert_int_eq(info_of(m, 2).kind, SRESID_KIND_MLP);
    ck_assert_int_eq(info_of(m, 0).kind, SRESID_KIND_ATTENTION); /* defaults still apply */
    ck_assert_ok(sresid_model_set_kind_rules(m, pats, kinds, 1, SRESID_RULES_REPLACE));
    ck_assert_int_eq(info_of(m, 0).kind, SRESID_KIND_OTHER);
    ck_assert_ok(sresid_model_set_kind_rules(m, NULL, NULL, 0, 0));
    ck_assert_int_eq(info_of(m, 0).kind, SRESID_KIND_ATTENTION);
    ck_assert_int_eq(info_of(m, 2).kind, SRESID_KIND_OTHER);
    const int32_t badk[] = {9};
    ck_assert_status(sresid_model_set_kind_rules(m, pats, badk, 1, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_set_kind_rules(m, NULL, kinds, 1, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_set_kind_rules(m, pats, kinds, 1, 8), SRESID_ERR_INVALID_ARG);
    ck_assert_str_eq(info_of(m, 1).role, "model.layers.{L}.mlp.up_proj.weight");
    sresid_model_free(m);
}
END_TEST

/* Reading releases mapped pages by default; both modes give the same data. */
START_TEST(keep_pages_flag_same_data)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const size_t n = 1u << 20;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint64_t seed = 3;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)tu_rand_normal(&seed);
    const int64_t s[1] = {(int64_t)n};
    ck_assert_ok(sresid_model_add_tensor(m, "x", SRESID_DTYPE_F32, 1, s, x, n * 4, SRESID_ADD_BORROW));
    const char *p = tu_path("pages.safetensors");
    ck_assert_ok(sresid_model_save(m, p, NULL));
    for (uint32_t flags = 0; flags <= SRESID_OPEN_KEEP_PAGES; flags++) {
        sresid_model_opts o = {.size = sizeof o, .flags = flags};
        sresid_model *r;
        ck_assert_ok(sresid_model_open(p, &o, &r));
        for (int rep = 0; rep < 2; rep++) {
            memset(y, 0, n * sizeof *y);
            ck_assert_ok(sresid_model_read_f32(r, 0, y, n));
            ck_assert_int_eq(memcmp(x, y, n * sizeof *y), 0);
        }
        sresid_model_free(r);
    }
    free(x);
    free(y);
    sresid_model_free(m);
}
END_TEST

/* A 0-element tensor of a model that keeps its pages has no data pointer:
 * reading it is a no-op, with no pointer arithmetic on NULL (UBSan). */
START_TEST(empty_tensor_keep_pages)
{
    const char *p = tu_path("empty.safetensors");
    ck_assert_int_eq(tu_write_hex(p, "38000000000000007b2265223a7b226474797065223a22463332222c2273"
                                     "68617065223a5b305d2c22646174615f6f666673657473223a5b302c30"
                                     "5d7d7d2020"), 0);
    for (uint32_t flags = 0; flags <= SRESID_OPEN_KEEP_PAGES; flags++) {
        sresid_model_opts o = {.size = sizeof o, .flags = flags};
        sresid_model *m;
        ck_assert_ok(sresid_model_open(p, &o, &m));
        float y[1] = {7};
        ck_assert_ok(sresid_model_read_f32(m, 0, y, 1));
        ck_assert_float_eq(y[0], 7); /* nothing written */
        ck_assert_ok(sresid_model_read_f32(m, 0, NULL, 0));
        sresid_model_free(m);
    }
}
END_TEST

/* A file cut short after opening: reads report IO instead of faulting. */
START_TEST(file_shrinks_after_open)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    const size_t n = 100000;
    uint16_t *h = calloc(n, sizeof *h);
    float *out = calloc(n, sizeof *out);
    const int64_t s[1] = {(int64_t)n};
    ck_assert_ok(sresid_model_add_tensor(m, "w", SRESID_DTYPE_F32, 1, s, out, n * 4, SRESID_ADD_BORROW));
    ck_assert_ok(sresid_model_add_tensor(m, "h", SRESID_DTYPE_BF16, 1, s, h, n * 2, 0));
    const char *p = tu_path("shrinks.safetensors");
    ck_assert_ok(sresid_model_save(m, p, NULL));
    sresid_model_free(m);
    ck_assert_ok(sresid_model_open(p, NULL, &m));
    ck_assert_ok(sresid_model_read_f32(m, 1, out, n));
    ck_assert_int_eq(truncate(p, 4096), 0);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_status(sresid_model_read_f32(m, i, out, n), SRESID_ERR_IO);
        ck_assert_ptr_nonnull(strstr(sresid_last_error(), "shrank"));
    }
    ck_assert_status(sresid_model_read_raw(m, 0, out, n * 4), SRESID_ERR_IO);
    /* saving it copies with pread too: IO, and no output file */
    const char *q = tu_path("shrinks-copy.safetensors");
    ck_assert_status(sresid_model_save(m, q, NULL), SRESID_ERR_IO);
    ck_assert_int_ne(access(q, F_OK), 0);
    sresid_model_free(m);
    free(h);
    free(out);
}
END_TEST

/* A FIFO is refused at once, never waited on. */
START_TEST(fifo_refused)
{
    const char *p = tu_path("fifo.safetensors"), *q = tu_path("fifo.safetensors.index.json");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    ck_assert_int_eq(mkfifo(q, 0600), 0);
    sresid_model *m = NULL;
    ck_assert_status(sresid_model_open(p, NULL, &m), SRESID_ERR_IO);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "not a regular file"));
    ck_assert_status(sresid_model_open(q, NULL, &m), SRESID_ERR_IO);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "not a regular file"));
    ck_assert_ptr_null(m);
}
END_TEST

Suite *suite_model(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, roundtrip_every_dtype);
    tcase_add_test(tc, save_reference_layout);
    tcase_add_test(tc, borrowed_vs_copied);
    tcase_add_test(tc, add_tensor_rejects_bad_input);
    tcase_add_test(tc, read_checks_and_conversions);
    tcase_add_test(tc, find_many);
    tcase_add_test(tc, metadata_ops);
    tcase_add_test(tc, save_never_partial);
    tcase_add_test(tc, matrix_views);
    tcase_add_test(tc, kind_rules_override);
    tcase_add_test(tc, keep_pages_flag_same_data);
    tcase_add_test(tc, empty_tensor_keep_pages);
    tcase_add_test(tc, file_shrinks_after_open);
    tcase_add_test(tc, fifo_refused);
    suite_add_tcase(s, tc);
    return s;
}
