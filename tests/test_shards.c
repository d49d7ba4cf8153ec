/* Sharded checkpoints: index files and directories. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

/* Writes dir/NAME holding tensors first..first+n-1 named w.K with value K. */
static void write_shard(const char *dir, const char *name, int first, int n)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    for (int k = first; k < first + n; k++) {
        char tname[32];
        float v[2] = {(float)k, (float)-k};
        const int64_t s[1] = {2};
        snprintf(tname, sizeof tname, "w.%d", k);
        ck_assert_ok(sresid_model_add_tensor(m, tname, SRESID_DTYPE_F32, 1, s, v, 8, 0));
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_ok(sresid_model_save(m, path, NULL));
    sresid_model_free(m);
}

static const char *make_dir(const char *name)
{
    const char *d = tu_path(name);
    ck_assert_int_eq(mkdir(d, 0755), 0);
    return d;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static void check_all_tensors(const sresid_model *m, int n)
{
    ck_assert_uint_eq(sresid_model_tensor_count(m), (size_t)n);
    for (int k = 0; k < n; k++) {
        char tname[32];
        size_t i;
        float v[2];
        snprintf(tname, sizeof tname, "w.%d", k);
        ck_assert_ok(sresid_model_find(m, tname, &i));
        ck_assert_ok(sresid_model_read_f32(m, i, v, 2));
        ck_assert_float_eq(v[0], (float)k);
        ck_assert_float_eq(v[1], (float)-k);
    }
}

static const char *index_json =
    "{\"metadata\":{\"total_size\":56},\"weight_map\":{"
    "\"w.0\":\"model-00001-of-00003.safetensors\",\"w.1\":\"model-00001-of-00003.safetensors\","
    "\"w.2\":\"model-00002-of-00003.safetensors\",\"w.3\":\"model-00002-of-00003.safetensors\","
    "\"w.4\":\"model-00002-of-00003.safetensors\",\"w.5\":\"model-00003-of-00003.safetensors\","
    "\"w.6\":\"model-00003-of-00003.safetensors\"}}";

static const char *sharded_dir(const char *name)
{
    const char *d = make_dir(name);
    write_shard(d, "model-00001-of-00003.safetensors", 0, 2);
    write_shard(d, "model-00002-of-00003.safetensors", 2, 3);
    write_shard(d, "model-00003-of-00003.safetensors", 5, 2);
    return d;
}

START_TEST(index_and_directory)
{
    const char *d = sharded_dir("sh_ok");
    write_text(d, "model.safetensors.index.json", index_json);
    char idx[4200];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", d);
    sresid_model *m;
    ck_assert_ok(sresid_model_open(idx, NULL, &m));
    check_all_tensors(m, 7);
    sresid_model_free(m);
    ck_assert_ok(sresid_model_open(d, NULL, &m));
    check_all_tensors(m, 7);
    sresid_model_free(m);
}
END_TEST

START_TEST(directory_without_index)
{
    const char *d = sharded_dir("sh_noindex");
    sresid_model *m;
    ck_assert_ok(sresid_model_open(d, NULL, &m));
    check_all_tensors(m, 7);
    /* shards in name order, tensors in file order */
    sresid_tensor_info ti = {.size = sizeof ti};
    ck_assert_ok(sresid_model_tensor_info(m, 0, &ti));
    ck_assert_str_eq(ti.name, "w.0");
    ck_assert_ok(sresid_model_tensor_info(m, 6, &ti));
    ck_assert_str_eq(ti.name, "w.6");
    sresid_model_free(m);
}
END_TEST

static void expect_fail(const char *path, sresid_status want, const char *needle)
{
    sresid_model *m = (sresid_model *)(uintptr_t)0x1;
    ck_assert_status(sresid_model_open(path, NULL, &m), want);
    ck_assert_ptr_eq(m, (sresid_model *)(uintptr_t)0x1);
    ck_assert_msg(strstr(sresid_last_error(), needle) != NULL, "'%s' not in '%s'", needle,
                  sresid_last_error());
}

START_TEST(index_disagrees_with_shards)
{
    const char *d = sharded_dir("sh_bad");
    char idx[4200];
    snprintf(idx, sizeof idx, "%s/a.safetensors.index.json", d);
    /* a tensor listed in the wrong shard */
    char *text = strdup(index_json);
    char *p = strstr(text, "\"w.4\":\"model-00002");
    p[17] = '3';
    write_text(d, "a.safetensors.index.json", text);
    free(text);
    expect_fail(idx, SRESID_ERR_NOT_FOUND, "w.4");
    /* a tensor the index does not list */
    write_text(d, "a.safetensors.index.json",
               "{\"weight_map\":{\"w.0\":\"model-00001-of-00003.safetensors\"}}");
    expect_fail(idx, SRESID_ERR_NOT_FOUND, "w.1");
    /* a listed tensor that no shard holds */
    write_text(d, "a.safetensors.index.json",
               "{\"weight_map\":{\"w.0\":\"model-00001-of-00003.safetensors\","
               "\"w.1\":\"model-00001-of-00003.safetensors\","
               "\"w.99\":\"model-00001-of-00003.safetensors\"}}");
    expect_fail(idx, SRESID_ERR_NOT_FOUND, "w.99");
    write_text(d, "a.safetensors.index.json", "{\"weight_map\":{\"w.0\":\"../escape.safetensors\"}}");
    expect_fail(idx, SRESID_ERR_JSON, "w.0");
    write_text(d, "a.safetensors.index.json", "{\"weight_map\":{\"w.0\":\"missing.safetensors\"}}");
    expect_fail(idx, SRESID_ERR_IO, "missing.safetensors");
    write_text(d, "a.safetensors.index.json", "{\"weight_map\":[]}");
    expect_fail(idx, SRESID_ERR_JSON, "weight_map");
    write_text(d, "a.safetensors.index.json", "{\"weight_map\":{\"w.0\":\"x\",\"w.0\":\"y\"}}");
    expect_fail(idx, SRESID_ERR_DUPLICATE, idx);
    write_text(d, "a.safetensors.index.json", "not json");
    expect_fail(idx, SRESID_ERR_JSON, idx);
    /* two index files in one directory: ambiguous */
    write_text(d, "b.safetensors.index.json", index_json);
    expect_fail(d, SRESID_ERR_INVALID_ARG, "index");
}
END_TEST

START_TEST(duplicate_across_shards)
{
    const char *d = make_dir("sh_dup");
    write_shard(d, "a.safetensors", 0, 2);
    write_shard(d, "b.safetensors", 1, 2);
    expect_fail(d, SRESID_ERR_DUPLICATE, "w.1");
    const char *e = make_dir("sh_empty");
    expect_fail(e, SRESID_ERR_NOT_FOUND, e);
}
END_TEST

Suite *suite_shards(void)
{
    Suite *s = suite_create("shards");
    TCase *tc = tcase_create("shards");
    tcase_add_test(tc, index_and_directory);
    tcase_add_test(tc, directory_without_index);
    tcase_add_test(tc, index_disagrees_with_shards);
    tcase_add_test(tc, duplicate_across_shards);
    suite_add_tcase(s, tc);
    return s;
}
