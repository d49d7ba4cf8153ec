/* Monitors (common.h): every long call reports its units in order and
 * stops when asked, with nothing half done: *out untouched, no file
 * written, the objects it would update unchanged. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define NT 6 /* matrices in the pair */

typedef struct mon {
    int stop_at;          /* ask to stop at this unit (0: never) */
    uint64_t units, beats, last, total;
    bool bad;             /* a count out of order, or total changed */
} mon;

static int monitor(void *user, uint64_t done, uint64_t total, const char *name)
{
    mon *m = user;
    if (m->units == 0 && m->beats == 0)
        m->total = total;
    m->bad |= total != m->total || done > total;
    if (name) {
        m->bad |= done <= m->last;
        m->last = done;
        m->units++;
    } else {
        m->bad |= done != m->last;
        m->beats++;
    }
    return m->stop_at && m->units >= (uint64_t)m->stop_at;
}

/* A finished, unstopped run: units in order up to total. */
static void ck_full(const mon *m, uint64_t total)
{
    ck_assert(!m->bad);
    ck_assert_uint_eq(m->total, total);
    ck_assert_uint_eq(m->last, total);
}

/* A stopped run: the monitor was not asked again after it said stop. */
static void ck_stopped(const mon *m, sresid_status st)
{
    ck_assert_int_eq(st, SRESID_ERR_CANCELLED);
    ck_assert(!m->bad);
    ck_assert_uint_eq(m->units, (uint64_t)m->stop_at);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "stopped by the monitor"));
}

/* No entry of the scratch directory starts with prefix: nothing written,
 * no temporary left behind. */
static void ck_nothing(const char *prefix)
{
    DIR *d = opendir(tu_tmpdir());
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));)
        ck_assert_msg(strncmp(e->d_name, prefix, strlen(prefix)) != 0, "left behind: %s",
                      e->d_name);
    closedir(d);
}

static char base_path[512], trained_path[512];

/* Two checkpoints of NT 8 x 6 F32 matrices, attention and MLP of three
 * layers, saved once. */
static void make_pair(void)
{
    if (base_path[0])
        return;
    snprintf(base_path, sizeof base_path, "%s", tu_path("cancel-base.safetensors"));
    snprintf(trained_path, sizeof trained_path, "%s", tu_path("cancel-trained.safetensors"));
    sresid_model *a, *b;
    ck_assert_ok(sresid_model_create(NULL, &a));
    ck_assert_ok(sresid_model_create(NULL, &b));
    uint64_t rng = 11;
    for (int t = 0; t < NT; t++) {
        float x[48], y[48];
        for (int i = 0; i < 48; i++) {
            x[i] = (float)tu_rand_normal(&rng);
            y[i] = x[i] + 0.1f * (float)tu_rand_normal(&rng);
        }
        char name[64];
        snprintf(name, sizeof name, "layers.%d.%s.weight", t / 2, t % 2 ? "mlp.up" : "self_attn.q");
        const int64_t s[2] = {8, 6};
        ck_assert_ok(sresid_model_add_tensor(a, name, SRESID_DTYPE_F32, 2, s, x, sizeof x, 0));
        ck_assert_ok(sresid_model_add_tensor(b, name, SRESID_DTYPE_F32, 2, s, y, sizeof y, 0));
    }
    ck_assert_ok(sresid_model_save(a, base_path, NULL));
    ck_assert_ok(sresid_model_save(b, trained_path, NULL));
    sresid_model_free(a);
    sresid_model_free(b);
}

typedef struct pair {
    sresid_model *base, *trained;
    sresid_residual *res;
} pair;

static pair open_pair(void)
{
    make_pair();
    pair p;
    ck_assert_ok(sresid_model_open(base_path, NULL, &p.base));
    ck_assert_ok(sresid_model_open(trained_path, NULL, &p.trained));
    ck_assert_ok(sresid_residual_create(p.base, p.trained, NULL, &p.res));
    return p;
}

static void close_pair(pair *p)
{
    sresid_residual_free(p->res);
    sresid_model_free(p->base);
    sresid_model_free(p->trained);
}

/* A pointer no call may write. */
static int sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)

START_TEST(report_units_and_stop)
{
    pair p = open_pair();
    /* units: NT tensors, NT pooled histograms, (3 - 1) adjacent layer pairs
     * of 2 roles + the first-vs-last pair of each role */
    const uint64_t total = NT + NT + 2 * 2 + 2;
    mon m = {0};
    sresid_report_opts o = {.size = sizeof o, .monitor = monitor, .monitor_user = &m};
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(p.res, &o, &r));
    ck_full(&m, total);
    sresid_report_free(r);

    for (int at = 1; at <= 3; at++) {
        mon s = {.stop_at = at};
        o.monitor_user = &s;
        r = SENTINEL;
        ck_stopped(&s, sresid_report_residual(p.res, &o, &r));
        ck_assert_ptr_eq(r, SENTINEL);
    }
    /* the thread's default follows a call whose options give none */
    mon d = {.stop_at = 2};
    sresid_set_monitor(monitor, &d);
    r = SENTINEL;
    ck_stopped(&d, sresid_report_model(p.base, NULL, &r));
    ck_assert_ptr_eq(r, SENTINEL);
    sresid_set_monitor(NULL, NULL);
    ck_assert_ok(sresid_report_model(p.base, NULL, &r));
    sresid_report_free(r);
    close_pair(&p);
}
END_TEST

START_TEST(amp_units_and_stop)
{
    pair p = open_pair();
    mon m = {0};
    sresid_amp_opts ao = {.size = sizeof ao, .monitor = monitor, .monitor_user = &m};
    sresid_amp *amp = NULL;
    ck_assert_ok(sresid_amp_create(p.base, &ao, &amp));
    ck_full(&m, NT); /* one basis a tensor */
    ck_assert_uint_eq(sresid_amp_count(amp), NT);

    mon s = {.stop_at = 2};
    ao.monitor_user = &s;
    sresid_amp *none = SENTINEL;
    ck_stopped(&s, sresid_amp_create(p.base, &ao, &none));
    ck_assert_ptr_eq(none, SENTINEL);

    /* fit: the scores do not change when stopped; they do when not */
    uint64_t n = sresid_amp_score_count(amp);
    float *before = malloc(n * sizeof *before);
    memcpy(before, sresid_amp_scores(amp), n * sizeof *before);
    mon f = {.stop_at = NT - 1};
    sresid_set_monitor(monitor, &f);
    ck_stopped(&f, sresid_amp_fit(amp, p.trained, NULL));
    ck_assert_int_eq(memcmp(before, sresid_amp_scores(amp), n * sizeof *before), 0);
    mon g = {0};
    sresid_set_monitor(monitor, &g);
    ck_assert_ok(sresid_amp_fit(amp, p.trained, NULL));
    ck_full(&g, NT);
    ck_assert_int_ne(memcmp(before, sresid_amp_scores(amp), n * sizeof *before), 0);

    /* share */
    double energy[NT + 1];
    mon h = {0};
    sresid_set_monitor(monitor, &h);
    ck_assert_ok(sresid_amp_share(amp, p.trained, NULL, 0, 0, energy, NULL, NULL, NULL));
    ck_full(&h, NT);
    mon hs = {.stop_at = 1};
    sresid_set_monitor(monitor, &hs);
    double untouched[NT + 1];
    for (int i = 0; i <= NT; i++)
        untouched[i] = -1;
    ck_stopped(&hs, sresid_amp_share(amp, p.trained, NULL, 0, 0, untouched, NULL, NULL, NULL));
    for (int i = 0; i <= NT; i++)
        ck_assert_double_eq(untouched[i], -1);

    /* export: one unit a base tensor */
    mon e = {0};
    sresid_set_monitor(monitor, &e);
    sresid_model *ex = NULL;
    ck_assert_ok(sresid_amp_export(amp, &ex));
    ck_full(&e, NT);
    sresid_model_free(ex);
    mon es = {.stop_at = 3};
    sresid_set_monitor(monitor, &es);
    ex = SENTINEL;
    ck_stopped(&es, sresid_amp_export(amp, &ex));
    ck_assert_ptr_eq(ex, SENTINEL);
    sresid_set_monitor(NULL, NULL);

    /* save: hashes, then the file's tensors (u and v of each, scores,
     * initial scores); nothing is written when stopped, at any unit */
    mon sv = {0};
    sresid_save_opts so = {.size = sizeof so, .monitor = monitor, .monitor_user = &sv};
    char state[512];
    snprintf(state, sizeof state, "%s", tu_path("cancel-state.safetensors"));
    ck_assert_ok(sresid_amp_save(amp, NULL, state, &so));
    ck_full(&sv, 3 * NT + 2);
    ck_assert_int_eq(unlink(state), 0);
    for (int at = 1; at <= 3 * NT + 2; at += NT) {
        mon ss = {.stop_at = at};
        so.monitor_user = &ss;
        ck_stopped(&ss, sresid_amp_save(amp, NULL, state, &so));
        ck_nothing("cancel-state");
    }
    so.monitor = NULL;
    ck_assert_ok(sresid_amp_save(amp, NULL, state, &so));

    /* load: one unit a base tensor checked */
    mon l = {0};
    sresid_set_monitor(monitor, &l);
    sresid_amp *back = NULL;
    ck_assert_ok(sresid_amp_load(p.base, state, &back, NULL));
    ck_full(&l, NT);
    sresid_amp_free(back);
    mon ls = {.stop_at = 2};
    sresid_set_monitor(monitor, &ls);
    back = SENTINEL;
    ck_stopped(&ls, sresid_amp_load(p.base, state, &back, NULL));
    ck_assert_ptr_eq(back, SENTINEL);
    sresid_set_monitor(NULL, NULL);

    free(before);
    sresid_amp_free(amp);
    close_pair(&p);
}
END_TEST

START_TEST(sparse_units_and_stop)
{
    pair p = open_pair();
    for (int rule = SRESID_SPARSE_TOP; rule <= SRESID_SPARSE_THRESHOLD; rule++) {
        mon m = {0};
        sresid_sparse_opts o = {.size = sizeof o, .rule = rule, .param = 0.05,
                                .monitor = monitor, .monitor_user = &m};
        sresid_sparse *sp = NULL;
        ck_assert_ok(sresid_sparse_create(p.res, &o, &sp));
        /* global: four planned passes over the NT tensors (skipped ones
         * counted at once); per tensor and threshold: one */
        ck_full(&m, rule == SRESID_SPARSE_TOP ? 4 * NT : NT);
        ck_assert_uint_ge(m.units, NT);
        sresid_sparse_free(sp);

        mon s = {.stop_at = 2};
        o.monitor_user = &s;
        sp = SENTINEL;
        ck_stopped(&s, sresid_sparse_create(p.res, &o, &sp));
        ck_assert_ptr_eq(sp, SENTINEL);
    }
    sresid_sparse_opts o = {.size = sizeof o, .param = 0.1};
    sresid_sparse *sp = NULL;
    ck_assert_ok(sresid_sparse_create(p.res, &o, &sp));

    /* save: one unit a stored part (positions and values of each tensor) */
    char delta[512], out[512];
    snprintf(delta, sizeof delta, "%s", tu_path("cancel-delta.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("cancel-out.safetensors"));
    mon sv = {0};
    sresid_save_opts so = {.size = sizeof so, .monitor = monitor, .monitor_user = &sv};
    ck_assert_ok(sresid_sparse_save(sp, delta, &so));
    ck_full(&sv, 2 * NT);
    ck_assert_int_eq(unlink(delta), 0);
    mon ss = {.stop_at = 2 * NT};
    so.monitor_user = &ss;
    ck_stopped(&ss, sresid_sparse_save(sp, delta, &so));
    ck_nothing("cancel-delta");

    /* apply: each delta tensor checked, then each base tensor written */
    mon a = {0};
    sresid_apply_opts ap = {.size = sizeof ap, .monitor = monitor, .monitor_user = &a};
    ck_assert_ok(sresid_sparse_apply(sp, p.base, &ap, out));
    ck_full(&a, 2 * NT);
    ck_assert_int_eq(unlink(out), 0);
    for (int at = 1; at <= 2 * NT; at += NT - 1) {
        mon as = {.stop_at = at};
        ap.monitor_user = &as;
        ck_stopped(&as, sresid_sparse_apply(sp, p.base, &ap, out));
        ck_nothing("cancel-out");
    }
    sresid_sparse_free(sp);
    close_pair(&p);
}
END_TEST

START_TEST(model_save_units_and_stop)
{
    pair p = open_pair();
    char out[512];
    snprintf(out, sizeof out, "%s", tu_path("cancel-copy.safetensors"));
    mon m = {0};
    sresid_save_opts so = {.size = sizeof so, .monitor = monitor, .monitor_user = &m};
    ck_assert_ok(sresid_model_save(p.base, out, &so));
    ck_full(&m, NT);
    /* stopping at the last unit still writes nothing, and an existing file
     * at the path is left as it was */
    size_t n0;
    unsigned char *was = tu_read_file(out, &n0);
    ck_assert_ptr_nonnull(was);
    sresid_model *small;
    ck_assert_ok(sresid_model_create(NULL, &small));
    float one = 1;
    const int64_t s1[1] = {1};
    ck_assert_ok(sresid_model_add_tensor(small, "x", SRESID_DTYPE_F32, 1, s1, &one, 4, 0));
    ck_assert_ok(sresid_model_add_tensor(small, "y", SRESID_DTYPE_F32, 1, s1, &one, 4, 0));
    mon s = {.stop_at = 2};
    so.monitor_user = &s;
    ck_stopped(&s, sresid_model_save(small, out, &so));
    size_t n1;
    unsigned char *now = tu_read_file(out, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_int_eq(memcmp(was, now, n0), 0);
    free(was);
    free(now);
    ck_assert_int_eq(unlink(out), 0);
    ck_nothing("cancel-copy");
    sresid_model_free(small);
    close_pair(&p);
}
END_TEST

static void *create_elsewhere(void *arg)
{
    pair *p = arg;
    sresid_amp *amp = NULL;
    sresid_status st = sresid_amp_create(p->base, NULL, &amp);
    sresid_amp_free(amp);
    return (void *)(intptr_t)st;
}

START_TEST(default_monitor_is_per_thread)
{
    ck_assert_str_eq(sresid_strerror(SRESID_ERR_CANCELLED), "cancelled");
    /* a monitor that stops at once, set on this thread only */
    pair p = open_pair();
    mon m = {.stop_at = 1};
    sresid_set_monitor(monitor, &m);
    sresid_model *ex = SENTINEL;
    sresid_amp *amp = NULL;
    sresid_amp_opts ao = {.size = sizeof ao, .monitor = NULL};
    ck_stopped(&m, sresid_amp_create(p.base, &ao, &amp));
    ck_assert_ptr_null(amp);
    /* another thread does not see this thread's default */
    pthread_t t;
    void *ret;
    ck_assert_int_eq(pthread_create(&t, NULL, create_elsewhere, &p), 0);
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_int_eq((int)(intptr_t)ret, SRESID_OK);
    sresid_set_monitor(NULL, NULL);
    ck_assert_ok(sresid_amp_create(p.base, &ao, &amp));
    ck_assert_ok(sresid_amp_export(amp, &ex));
    ck_assert_ptr_ne(ex, SENTINEL);
    sresid_model_free(ex);
    sresid_amp_free(amp);
    close_pair(&p);
}
END_TEST

Suite *suite_cancel(void)
{
    Suite *s = suite_create("cancel");
    TCase *tc = tcase_create("cancel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, report_units_and_stop);
    tcase_add_test(tc, amp_units_and_stop);
    tcase_add_test(tc, sparse_units_and_stop);
    tcase_add_test(tc, model_save_units_and_stop);
    tcase_add_test(tc, default_monitor_is_per_thread);
    suite_add_tcase(s, tc);
    return s;
}
