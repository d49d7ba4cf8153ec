/* Users' files are never at risk: every library save refuses to write over
 * the files it reads (through symlinks, "./" and hard links) and over
 * anything but a regular file, leaving the input byte for byte as it was;
 * sresid_model_uses_file says which files a model reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static void make_pair(const char *pa, const char *pb)
{
    sresid_model *a, *b;
    ck_assert_ok(sresid_model_create(NULL, &a));
    ck_assert_ok(sresid_model_create(NULL, &b));
    float x[12], y[12];
    for (int i = 0; i < 12; i++) {
        x[i] = (float)i - 5.5f;
        y[i] = x[i] + (i % 3 ? 0.25f : -0.5f);
    }
    const int64_t s[2] = {3, 4};
    ck_assert_ok(sresid_model_add_tensor(a, "layers.0.mlp.w", SRESID_DTYPE_F32, 2, s, x,
                                         sizeof x, 0));
    ck_assert_ok(sresid_model_add_tensor(b, "layers.0.mlp.w", SRESID_DTYPE_F32, 2, s, y,
                                         sizeof y, 0));
    ck_assert_ok(sresid_model_save(a, pa, NULL));
    ck_assert_ok(sresid_model_save(b, pb, NULL));
    sresid_model_free(a);
    sresid_model_free(b);
}

static unsigned char *slurp(const char *p, size_t *n)
{
    unsigned char *d = tu_read_file(p, n);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* path still holds exactly want (n bytes). */
static void ck_same(const char *path, const unsigned char *want, size_t n)
{
    size_t m;
    unsigned char *got = slurp(path, &m);
    ck_assert_uint_eq(m, n);
    ck_assert_int_eq(memcmp(got, want, n), 0);
    free(got);
}

START_TEST(model_uses_file)
{
    char pa[512], pb[512]; /* tu_path's buffer rotates */
    snprintf(pa, sizeof pa, "%s", tu_path("safe-a.safetensors"));
    snprintf(pb, sizeof pb, "%s", tu_path("safe-b.safetensors"));
    make_pair(pa, pb);
    char lnk[512], hard[512], dot[512];
    snprintf(lnk, sizeof lnk, "%s", tu_path("safe-link.safetensors"));
    snprintf(hard, sizeof hard, "%s", tu_path("safe-hard.safetensors"));
    ck_assert_int_eq(symlink(pa, lnk), 0);
    ck_assert_int_eq(link(pa, hard), 0);
    snprintf(dot, sizeof dot, "%s/./safe-a.safetensors", tu_tmpdir());
    sresid_model *a;
    ck_assert_ok(sresid_model_open(pa, NULL, &a));
    int32_t uses = -1;
    const char *same[] = {pa, lnk, hard, dot};
    for (int i = 0; i < 4; i++) {
        ck_assert_ok(sresid_model_uses_file(a, same[i], &uses));
        ck_assert_int_eq(uses, 1);
    }
    ck_assert_ok(sresid_model_uses_file(a, pb, &uses));
    ck_assert_int_eq(uses, 0);
    ck_assert_ok(sresid_model_uses_file(a, tu_path("no-such-file"), &uses));
    ck_assert_int_eq(uses, 0);
    ck_assert_status(sresid_model_uses_file(NULL, pa, &uses), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_uses_file(a, NULL, &uses), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_uses_file(a, pa, NULL), SRESID_ERR_INVALID_ARG);
    /* a model made in memory reads no file */
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    ck_assert_ok(sresid_model_uses_file(m, pa, &uses));
    ck_assert_int_eq(uses, 0);
    sresid_model_free(m);
    sresid_model_free(a);
}
END_TEST

START_TEST(saves_never_replace_inputs)
{
    char pa[512], pb[512], pd[512]; /* tu_path's buffer rotates */
    snprintf(pa, sizeof pa, "%s", tu_path("in-a.safetensors"));
    snprintf(pb, sizeof pb, "%s", tu_path("in-b.safetensors"));
    snprintf(pd, sizeof pd, "%s", tu_path("in-d.safetensors"));
    make_pair(pa, pb);
    size_t na, nb;
    unsigned char *ca = slurp(pa, &na), *cb = slurp(pb, &nb);
    char alias[512];
    snprintf(alias, sizeof alias, "%s", tu_path("in-a-alias.safetensors"));
    ck_assert_int_eq(symlink(pa, alias), 0);
    sresid_model *a, *b;
    ck_assert_ok(sresid_model_open(pa, NULL, &a));
    ck_assert_ok(sresid_model_open(pb, NULL, &b));

    /* a model over its own file, directly or through a link */
    ck_assert_status(sresid_model_save(a, pa, NULL), SRESID_ERR_IO);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "refusing to replace an input"));
    ck_assert_status(sresid_model_save(a, alias, NULL), SRESID_ERR_IO);

    /* the report's JSON over a checkpoint it read */
    sresid_residual *r;
    ck_assert_ok(sresid_residual_create(a, b, NULL, &r));
    sresid_report *rep;
    sresid_report_opts ro = {.size = sizeof ro, .probes = SRESID_PROBE_MOMENTS};
    ck_assert_ok(sresid_report_residual(r, &ro, &rep));
    ck_assert_status(sresid_report_save_json(rep, 0, pb), SRESID_ERR_IO);
    ck_assert_ok(sresid_report_save_json(rep, 0, tu_path("report.json")));

    /* a delta: over the base, over the file it was loaded from */
    sresid_sparse *sp, *ld;
    ck_assert_ok(sresid_sparse_create(r, NULL, &sp));
    ck_assert_ok(sresid_sparse_save(sp, pd, NULL));
    size_t nd;
    unsigned char *cd = slurp(pd, &nd);
    ck_assert_ok(sresid_sparse_load(pd, &ld));
    ck_assert_status(sresid_sparse_save(ld, pd, NULL), SRESID_ERR_IO);
    ck_assert_status(sresid_sparse_apply(ld, a, NULL, pa), SRESID_ERR_IO);
    ck_assert_status(sresid_sparse_apply(ld, a, NULL, pd), SRESID_ERR_IO);
    ck_assert_ok(sresid_sparse_apply(ld, a, NULL, tu_path("applied.safetensors")));

    /* an amp state over its base */
    sresid_amp_opts ao = {.size = sizeof ao, .kinds = 1u << SRESID_KIND_MLP};
    sresid_amp *amp;
    ck_assert_ok(sresid_amp_create(a, &ao, &amp));
    ck_assert_status(sresid_amp_save(amp, NULL, alias, NULL), SRESID_ERR_IO);
    ck_assert_ok(sresid_amp_save(amp, NULL, tu_path("amp.safetensors"), NULL));

    /* nothing but regular files is replaced; an empty path is no path */
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_path("safety-directory"));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_status(sresid_model_save(b, dir, NULL), SRESID_ERR_IO);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "not a regular file"));
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s", tu_path("safety-fifo"));
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);
    ck_assert_status(sresid_sparse_save(sp, fifo, NULL), SRESID_ERR_IO);
    struct stat sb;
    ck_assert(stat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    ck_assert_status(sresid_model_save(b, "", NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_save(b, tu_path("no-dir/x.safetensors"), NULL), SRESID_ERR_IO);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "does not exist"));

    ck_same(pa, ca, na);
    ck_same(pb, cb, nb);
    ck_same(pd, cd, nd);
    free(ca);
    free(cb);
    free(cd);
    sresid_amp_free(amp);
    sresid_sparse_free(ld);
    sresid_sparse_free(sp);
    sresid_report_free(rep);
    sresid_residual_free(r);
    sresid_model_free(a);
    sresid_model_free(b);
}
END_TEST

Suite *suite_safety(void)
{
    Suite *s = suite_create("safety");
    TCase *tc = tcase_create("outputs");
    tcase_add_test(tc, model_uses_file);
    tcase_add_test(tc, saves_never_replace_inputs);
    suite_add_tcase(s, tc);
    return s;
}
