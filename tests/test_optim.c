/* Check suite of the optim module. References: hand-computed first steps,
 * a double-precision transcription of the PyTorch update rules, closed-form
 * optima of quadratics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static sresid_optim *make(uint64_t n, sresid_optim_opts o)
{
    sresid_optim *p = NULL;
    o.size = sizeof o;
    ck_assert_ok(sresid_optim_create(n, &o, &p));
    return p;
}

START_TEST(optim_first_step_by_hand)
{
    /* AdamW, p 1, g 0.5, lr 0.1, wd 0.01: p = 0.999, m = 0.05, v = 0.00025,
     * mhat = 0.5, vhat = 0.25, p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) */
    sresid_optim *a = make(1, (sresid_optim_opts){.lr = 0.1, .weight_decay = 0.01});
    float p = 1, g = 0.5f;
    ck_assert_ok(sresid_optim_step(a, &p, &g, 1, NULL));
    ck_assert_uint_eq(sresid_optim_steps(a), 1);
    ck_assert_msg(fabs(p - (0.999 - 0.1 * 0.5 / (0.5 + 1e-8))) < 2e-7, "p = %.9g", p);
    const float *m, *v;
    ck_assert_ok(sresid_optim_state(a, &m, &v));
    ck_assert(fabs(m[0] - 0.05) < 1e-8 && fabs(v[0] - 0.00025) < 1e-10);
    sresid_optim_free(a);
    /* without bias correction: p = 0.999 - 0.1 * 0.05 / (sqrt(0.00025) + 1e-8) */
    a = make(1, (sresid_optim_opts){.lr = 0.1, .weight_decay = 0.01,
                                    .flags = SRESID_OPTIM_NO_BIAS_CORRECTION});
    p = 1;
    ck_assert_ok(sresid_optim_step(a, &p, &g, 1, NULL));
    ck_assert_msg(fabs(p - (0.999 - 0.1 * 0.05 / (sqrt(0.00025) + 1e-8))) < 2e-7, "p = %.9g", p);
    sresid_optim_free(a);

    /* SGD, p 1, g 0.5, lr 0.1, wd 0.1, momentum 0.9: g' = 0.6, buf = 0.6,
     * p = 0.94; step 2: g' = 0.594, buf = 1.134, p = 0.8266 */
    sresid_optim *s = make(1, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.1,
                                                  .weight_decay = 0.1, .momentum = 0.9});
    p = 1;
    ck_assert_ok(sresid_optim_step(s, &p, &g, 1, NULL));
    ck_assert(fabs(p - 0.94) < 1e-7);
    ck_assert_ok(sresid_optim_step(s, &p, &g, 1, NULL));
    ck_assert(fabs(p - 0.8266) < 1e-7);
    ck_assert_ok(sresid_optim_state(s, &m, &v));
    ck_assert(fabs(m[0] - 1.134) < 1e-6);
    ck_assert_ptr_null(v);
    sresid_optim_free(s);
    /* Nesterov: g' = 0.6, buf = 0.6, step with 0.6 + 0.9 * 0.6 = 1.14: p = 0.886 */
    s = make(1, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.1, .weight_decay = 0.1,
                                    .momentum = 0.9, .flags = SRESID_OPTIM_NESTEROV});
    p = 1;
    ck_assert_ok(sresid_optim_step(s, &p, &g, 1, NULL));
    ck_assert(fabs(p - 0.886) < 1e-7);
    sresid_optim_free(s);
    /* plain SGD: p = 1 - 0.1 * 0.5 */
    s = make(1, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.1});
    p = 1;
    ck_assert_ok(sresid_optim_step(s, &p, &g, 1, NULL));
    ck_assert(p == 0.95f);
    sresid_optim_free(s);
}
END_TEST

/* Double-precision reference of one step (PyTorch's rules). */
typedef struct ref_state {
    double *p, *m, *v;
    uint64_t t;
} ref_state;

static void ref_step(const sresid_optim_opts *o, ref_state *r, const float *g, size_t n,
                     const uint8_t *allow)
{
    r->t++;
    for (size_t i = 0; i < n; i++) {
        if (allow && !allow[i])
            continue;
        double gi = g[i];
        if (o->kind == SRESID_OPTIM_SGD) {
            gi += o->weight_decay * r->p[i];
            if (o->momentum) {
                r->m[i] = o->momentum * r->m[i] + gi;
                gi = (o->flags & SRESID_OPTIM_NESTEROV) ? gi + o->momentum * r->m[i] : r->m[i];
            }
            r->p[i] -= o->lr * gi;
        } else {
            r->p[i] -= o->lr * o->weight_decay * r->p[i];
            r->m[i] = o->beta1 * r->m[i] + (1 - o->beta1) * gi;
            r->v[i] = o->beta2 * r->v[i] + (1 - o->beta2) * gi * gi;
            double mh = r->m[i], vh = r->v[i];
            if (!(o->flags & SRESID_OPTIM_NO_BIAS_CORRECTION)) {
                mh /= 1 - pow(o->beta1, (double)r->t);
                vh /= 1 - pow(o->beta2, (double)r->t);
            }
            r->p[i] -= o->lr * mh / (sqrt(vh) + o->eps);
        }
    }
}

START_TEST(optim_ten_steps_match_reference)
{
    const sresid_optim_opts cases[] = {
        {.kind = SRESID_OPTIM_ADAMW, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
        {.kind = SRESID_OPTIM_ADAMW, .lr = 0.003, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
         .weight_decay = 0.1},
        {.kind = SRESID_OPTIM_ADAMW, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
         .weight_decay = 0.01, .flags = SRESID_OPTIM_NO_BIAS_CORRECTION},
        {.kind = SRESID_OPTIM_SGD, .lr = 0.05},
        {.kind = SRESID_OPTIM_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01},
        {.kind = SRESID_OPTIM_SGD, .lr = 0.05, .momentum = 0.5, .weight_decay = 0.2,
         .flags = SRESID_OPTIM_NESTEROV},
    };
    enum { N = 300 };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint64_t rs = 3 + c;
        sresid_optim *opt = make(N, cases[c]);
        float p[N], g[N];
        double rp[N], rm[N] = {0}, rv[N] = {0};
        uint8_t allow[N];
        for (int i = 0; i < N; i++) {
            p[i] = (float)tu_rand_normal(&rs);
            rp[i] = p[i];
            allow[i] = i % 3 != 0;
        }
        sresid_mask *mask = NULL;
        ck_assert_ok(sresid_mask_from_bytes(allow, N, &mask));
        ref_state r = {rp, rm, rv, 0};
        for (int step = 0; step < 10; step++) {
            for (int i = 0; i < N; i++)
                g[i] = (float)tu_rand_normal(&rs);
            ck_assert_ok(sresid_optim_step(opt, p, g, N, step % 4 == 3 ? NULL : mask));
            ref_step(&cases[c], &r, g, N, step % 4 == 3 ? NULL : allow);
        }
        const float *m, *v;
        ck_assert_ok(sresid_optim_state(opt, &m, &v));
        for (int i = 0; i < N; i++) {
            ck_assert_msg(fabs(p[i] - rp[i]) <= 1e-5 * fabs(rp[i]) + 1e-6,
                          "case %zu entry %d: p %.9g, want %.9g", c, i, p[i], rp[i]);
            ck_assert_msg(fabs(m[i] - rm[i]) <= 1e-5 * fabs(rm[i]) + 1e-7,
                          "case %zu entry %d: m %.9g, want %.9g", c, i, m[i], rm[i]);
            if (v)
                ck_assert_msg(fabs(v[i] - rv[i]) <= 1e-5 * fabs(rv[i]) + 1e-9,
                              "case %zu entry %d: v %.9g, want %.9g", c, i, v[i], rv[i]);
        }
        sresid_mask_free(mask);
        sresid_optim_free(opt);
    }
}
END_TEST

START_TEST(optim_frozen_entries_untouched)
{
    enum { N = 1000 };
    const int kinds[2] = {SRESID_OPTIM_ADAMW, SRESID_OPTIM_SGD};
    for (int k = 0; k < 2; k++) {
        sresid_optim_opts o = {.kind = kinds[k], .lr = 0.01, .weight_decay = 0.1};
        if (kinds[k] == SRESID_OPTIM_SGD)
            o.momentum = 0.9;
        sresid_optim *opt = make(N, o);
        uint64_t rs = 77;
        float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g), *p0 = malloc(N * sizeof *p0);
        uint8_t allow[N];
        for (int i = 0; i < N; i++) {
            p[i] = (float)tu_rand_normal(&rs);
            allow[i] = tu_rand_u64(&rs) % 4 == 0 || (i >= 128 && i < 256); /* a full word too */
        }
        /* some state first, with every entry allowed */
        for (int i = 0; i < N; i++)
            g[i] = (float)tu_rand_normal(&rs);
        ck_assert_ok(sresid_optim_step(opt, p, g, N, NULL));
        memcpy(p0, p, N * sizeof *p);
        const float *m, *v;
        ck_assert_ok(sresid_optim_state(opt, &m, &v));
        float *m0 = malloc(N * sizeof *m0), *v0 = malloc(N * sizeof *v0);
        memcpy(m0, m, N * sizeof *m0);
        if (v)
            memcpy(v0, v, N * sizeof *v0);
        sresid_mask *mask = NULL;
        ck_assert_ok(sresid_mask_from_bytes(allow, N, &mask));
        for (int step = 0; step < 100; step++) {
            for (int i = 0; i < N; i++)
                g[i] = allow[i] ? (float)tu_rand_normal(&rs) : (step % 2 ? NAN : 1e30f);
            ck_assert_ok(sresid_optim_step(opt, p, g, N, mask));
        }
        ck_assert_uint_eq(sresid_optim_steps(opt), 101);
        int moved = 0;
        for (int i = 0; i < N; i++) {
            if (allow[i]) {
                moved += p[i] != p0[i];
                continue;
            }
            ck_assert_msg(memcmp(&p[i], &p0[i], sizeof(float)) == 0, "entry %d moved", i);
            ck_assert(memcmp(&m[i], &m0[i], sizeof(float)) == 0);
            if (v)
                ck_assert(memcmp(&v[i], &v0[i], sizeof(float)) == 0);
        }
        ck_assert_int_gt(moved, 200);
        free(m0);
        free(v0);
        free(p);
        free(p0);
        free(g);
        sresid_mask_free(mask);
        sresid_optim_free(opt);
    }
}
END_TEST

/* Minimise 0.5 sum a_i (p_i - c_i)^2 (optimum c) from p = 0. */
static double quadratic_run(sresid_optim *opt, int steps, double lr_late)
{
    enum { N = 64 };
    float p[N] = {0}, g[N], a[N], c[N];
    uint64_t rs = 99;
    for (int i = 0; i < N; i++) {
        a[i] = (float)(0.5 + tu_rand_uniform(&rs));
        c[i] = (float)(4 * tu_rand_uniform(&rs) - 2);
    }
    for (int s = 0; s < steps; s++) {
        if (s == steps / 2 && lr_late > 0)
            ck_assert_ok(sresid_optim_set_lr(opt, lr_late));
        for (int i = 0; i < N; i++)
            g[i] = a[i] * (p[i] - c[i]);
        ck_assert_ok(sresid_optim_step(opt, p, g, N, NULL));
    }
    double err = 0;
    for (int i = 0; i < N; i++)
        err = fmax(err, fabs(p[i] - c[i]));
    return err;
}

START_TEST(optim_minimises_quadratic)
{
    sresid_optim *s = make(64, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.1,
                                                   .momentum = 0.9});
    double e = quadratic_run(s, 400, 0);
    ck_assert_msg(e < 1e-4, "SGD momentum error %g", e);
    sresid_optim_free(s);
    s = make(64, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.1, .momentum = 0.9,
                                     .flags = SRESID_OPTIM_NESTEROV});
    e = quadratic_run(s, 400, 0);
    ck_assert_msg(e < 1e-4, "SGD Nesterov error %g", e);
    sresid_optim_free(s);
    sresid_optim *a = make(64, (sresid_optim_opts){.lr = 0.05});
    e = quadratic_run(a, 3000, 0.001);
    ck_assert_msg(e < 1e-2, "AdamW error %g", e);
    sresid_optim_free(a);
    /* decoupled weight decay moves the optimum of AdamW toward 0: p* with
     * a (p - c) / sqrt(.) ... not closed form; SGD with L2 has p* = a c / (a + wd) */
    enum { N = 64 };
    sresid_optim *w = make(N, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.1,
                                                  .momentum = 0.5, .weight_decay = 0.5});
    float p[N] = {0}, g[N], av[N], c[N];
    uint64_t rs = 5;
    for (int i = 0; i < N; i++) {
        av[i] = (float)(0.5 + tu_rand_uniform(&rs));
        c[i] = (float)(4 * tu_rand_uniform(&rs) - 2);
    }
    for (int st = 0; st < 500; st++) {
        for (int i = 0; i < N; i++)
            g[i] = av[i] * (p[i] - c[i]);
        ck_assert_ok(sresid_optim_step(w, p, g, N, NULL));
    }
    for (int i = 0; i < N; i++)
        ck_assert_msg(fabs(p[i] - av[i] * c[i] / (av[i] + 0.5)) < 1e-4, "entry %d: %g", i, p[i]);
    sresid_optim_free(w);
}
END_TEST

START_TEST(optim_reset)
{
    enum { N = 100 };
    sresid_optim_opts o = {.lr = 0.01, .weight_decay = 0.01};
    sresid_optim *a = make(N, o), *fresh = make(N, o);
    float p[N], q[N], g[N];
    uint64_t rs = 8;
    for (int i = 0; i < N; i++)
        p[i] = (float)tu_rand_normal(&rs);
    for (int s = 0; s < 5; s++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)tu_rand_normal(&rs);
        ck_assert_ok(sresid_optim_step(a, p, g, N, NULL));
    }
    /* reset of a mask: those entries' state only */
    uint8_t sel[N];
    for (int i = 0; i < N; i++)
        sel[i] = i % 5 == 0;
    sresid_mask *mask = NULL;
    ck_assert_ok(sresid_mask_from_bytes(sel, N, &mask));
    const float *m, *v;
    ck_assert_ok(sresid_optim_state(a, &m, &v));
    float m1 = m[1];
    ck_assert_ok(sresid_optim_reset(a, mask));
    ck_assert_uint_eq(sresid_optim_steps(a), 5);
    for (int i = 0; i < N; i++)
        if (sel[i])
            ck_assert(m[i] == 0 && v[i] == 0);
    ck_assert(m[1] == m1 && m1 != 0);
    /* full reset: as fresh, the same trajectory from the same start */
    ck_assert_ok(sresid_optim_reset(a, NULL));
    ck_assert_uint_eq(sresid_optim_steps(a), 0);
    memcpy(q, p, sizeof q);
    for (int s = 0; s < 5; s++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)tu_rand_normal(&rs);
        ck_assert_ok(sresid_optim_step(a, p, g, N, NULL));
        ck_assert_ok(sresid_optim_step(fresh, q, g, N, NULL));
    }
    ck_assert(memcmp(p, q, sizeof p) == 0);
    sresid_mask *wrong = NULL;
    ck_assert_ok(sresid_mask_create(N + 1, 1, &wrong));
    ck_assert_status(sresid_optim_reset(a, wrong), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_optim_reset(NULL, NULL), SRESID_ERR_INVALID_ARG);
    sresid_mask_free(wrong);
    sresid_mask_free(mask);
    sresid_optim_free(a);
    sresid_optim_free(fresh);
}
END_TEST

START_TEST(optim_save_load_round_trip)
{
    enum { N = 257 };
    const sresid_optim_opts cases[] = {
        {.lr = 0.0123456789012345, .beta1 = 0.85, .beta2 = 0.995, .eps = 1e-7,
         .weight_decay = 0.03, .flags = SRESID_OPTIM_NO_BIAS_CORRECTION},
        {.kind = SRESID_OPTIM_SGD, .lr = 0.1 / 3, .momentum = 0.9, .weight_decay = 1e-4,
         .flags = SRESID_OPTIM_NESTEROV},
    };
    for (int c = 0; c < 2; c++) {
        sresid_optim *a = make(N, cases[c]), *b = NULL;
        float p[N], q[N], g[N];
        uint64_t rs = 12;
        for (int i = 0; i < N; i++)
            p[i] = (float)tu_rand_normal(&rs);
        for (int s = 0; s < 5; s++) {
            for (int i = 0; i < N; i++)
                g[i] = (float)tu_rand_normal(&rs);
            ck_assert_ok(sresid_optim_step(a, p, g, N, NULL));
        }
        const char *path = tu_path("optim.safetensors");
        ck_assert_ok(sresid_optim_save(a, path, NULL));
        ck_assert_ok(sresid_optim_load(path, &b));
        ck_assert_uint_eq(sresid_optim_size(b), N);
        ck_assert_uint_eq(sresid_optim_steps(b), 5);
        sresid_optim_opts oa = {.size = sizeof oa}, ob = {.size = sizeof ob};
        ck_assert_ok(sresid_optim_get_opts(a, &oa));
        ck_assert_ok(sresid_optim_get_opts(b, &ob));
        ck_assert(memcmp(&oa, &ob, sizeof oa) == 0);
        ck_assert(oa.lr == cases[c].lr); /* 17 digits: exact */
        const float *ma, *va, *mb, *vb;
        ck_assert_ok(sresid_optim_state(a, &ma, &va));
        ck_assert_ok(sresid_optim_state(b, &mb, &vb));
        ck_assert(memcmp(ma, mb, sizeof(float) * N) == 0);
        ck_assert((va == NULL) == (vb == NULL));
        if (va)
            ck_assert(memcmp(va, vb, sizeof(float) * N) == 0);
        memcpy(q, p, sizeof q);
        for (int s = 0; s < 5; s++) {
            for (int i = 0; i < N; i++)
                g[i] = (float)tu_rand_normal(&rs);
            ck_assert_ok(sresid_optim_step(a, p, g, N, NULL));
            ck_assert_ok(sresid_optim_step(b, q, g, N, NULL));
        }
        ck_assert(memcmp(p, q, sizeof p) == 0);
        sresid_optim_free(a);
        sresid_optim_free(b);
    }
    /* a learning rate set to 0 survives */
    sresid_optim *z = make(3, (sresid_optim_opts){0}), *zl = NULL;
    ck_assert_ok(sresid_optim_set_lr(z, 0));
    ck_assert_ok(sresid_optim_save(z, tu_path("z.safetensors"), NULL));
    ck_assert_ok(sresid_optim_load(tu_path("z.safetensors"), &zl));
    sresid_optim_opts oz = {.size = sizeof oz};
    ck_assert_ok(sresid_optim_get_opts(zl, &oz));
    ck_assert(oz.lr == 0 && oz.beta1 == 0.9 && oz.beta2 == 0.999 && oz.eps == 1e-8);
    sresid_optim_free(zl);
    sresid_save_opts so = {.size = sizeof so, .flags = SRESID_SAVE_NO_CLOBBER};
    ck_assert_status(sresid_optim_save(z, tu_path("z.safetensors"), &so), SRESID_ERR_IO);
    ck_assert_status(sresid_optim_save(NULL, tu_path("y.safetensors"), NULL),
                     SRESID_ERR_INVALID_ARG);
    sresid_optim_free(z);
}
END_TEST

/* A would-be optimiser file: metadata as key, value pairs (NULL-terminated),
 * tensors m and v of n floats each (NULL: left out). */
static const char *write_optim_file(const char *file, const char *const *meta, const float *m,
                                    const float *v, int64_t n, sresid_dtype dtype)
{
    sresid_model *md = NULL;
    ck_assert_ok(sresid_model_create(NULL, &md));
    int64_t shape[1] = {n};
    size_t es = sresid_dtype_size(dtype);
    if (m)
        ck_assert_ok(sresid_model_add_tensor(md, "m", dtype, 1, shape, m, (size_t)n * es, 0));
    if (v)
        ck_assert_ok(sresid_model_add_tensor(md, "v", dtype, 1, shape, v, (size_t)n * es, 0));
    for (; *meta; meta += 2)
        ck_assert_ok(sresid_model_set_metadata(md, meta[0], meta[1]));
    const char *path = tu_path(file);
    ck_assert_ok(sresid_model_save(md, path, NULL));
    sresid_model_free(md);
    return path;
}

START_TEST(optim_load_rejects_malformed)
{
    const float m[2] = {0.5f, -1}, v[2] = {0.25f, 0}, vneg[2] = {0.25f, -1},
                mnan[2] = {NAN, 0};
    sresid_optim *o = NULL;
#define ADAM(...)                                                                          \
    (const char *const[])                                                                  \
    {                                                                                      \
        "format", "sparseresid.optim", "version", "1", "kind", "adamw", "n", "2", "steps",  \
            "3", "flags", "0", "lr", "0.001", "weight_decay", "0", "beta1", "0.9", "beta2", \
            "0.999", "eps", "1e-08", __VA_ARGS__                                           \
    }
    const char *p = write_optim_file("o0.safetensors", ADAM(NULL), m, v, 2, SRESID_DTYPE_F32);
    ck_assert_ok(sresid_optim_load(p, &o));
    ck_assert_uint_eq(sresid_optim_steps(o), 3);
    const float *mm, *vv;
    ck_assert_ok(sresid_optim_state(o, &mm, &vv));
    ck_assert(mm[0] == 0.5f && mm[1] == -1 && vv[0] == 0.25f);
    sresid_optim_free(o);
    o = NULL;
    /* later keys override the earlier ones (set_metadata replaces) */
    const struct {
        const char *const *meta;
        const float *m, *v;
        sresid_dtype dtype;
        sresid_status want;
        const char *says;
    } bad[] = {
        {ADAM("format", "sparseresid.mask", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA,
         "format"},
        {ADAM("version", "2", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "version"},
        {ADAM("kind", "adam", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "kind"},
        {ADAM("n", "3", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_SHAPE, "\"m\""},
        {ADAM("n", "2x", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "\"n\""},
        {ADAM("steps", "-1", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "steps"},
        {ADAM("flags", "8", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "flags"},
        {ADAM("flags", "2", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "NESTEROV"},
        {ADAM("lr", "fast", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "lr"},
        {ADAM("lr", "nan", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "lr"},
        {ADAM("lr", "-1", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "lr"},
        {ADAM("beta1", "1", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "beta1"},
        {ADAM("eps", "0", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "zero"},
        {ADAM("beta2", "", NULL), m, v, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "beta2"},
        {ADAM(NULL), m, NULL, SRESID_DTYPE_F32, SRESID_ERR_NOT_FOUND, "\"v\""},
        {ADAM(NULL), NULL, v, SRESID_DTYPE_F32, SRESID_ERR_NOT_FOUND, "\"m\""},
        {ADAM(NULL), m, vneg, SRESID_DTYPE_F32, SRESID_ERR_INVALID_ARG, "negative"},
        {ADAM(NULL), mnan, v, SRESID_DTYPE_F32, SRESID_ERR_NONFINITE, "m[0]"},
        {ADAM(NULL), m, v, SRESID_DTYPE_I32, SRESID_ERR_DTYPE, "I32"},
        {ADAM("kind", "sgd", NULL), m, NULL, SRESID_DTYPE_F32, SRESID_ERR_METADATA, "momentum"},
    };
#undef ADAM
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[40];
        snprintf(name, sizeof name, "ob%zu.safetensors", i);
        p = write_optim_file(name, bad[i].meta, bad[i].m, bad[i].v, 2, bad[i].dtype);
        ck_assert_status(sresid_optim_load(p, &o), bad[i].want);
        ck_assert_ptr_null(o);
        ck_assert_msg(strstr(sresid_last_error(), bad[i].says), "case %zu: message %s", i,
                      sresid_last_error());
    }
    ck_assert_status(sresid_optim_load(tu_path("none.safetensors"), &o), SRESID_ERR_IO);
    ck_assert_status(sresid_optim_load(NULL, &o), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(o);
}
END_TEST

/* Files of a few hundred bytes whose "n" claims 2^61 entries: the tensors
 * are checked against n before anything is allocated. The load used to
 * calloc 2^63 bytes first: NOMEM, or an abort under AddressSanitizer. The
 * first file is fuzz_optim's minimised finding (there with n = 1222222222,
 * 4.9 GB, which an overcommitting system grants; raised here so that the
 * allocation fails everywhere): no tensor "m" at all. */
START_TEST(optim_load_checks_n_before_allocating)
{
    static const char found[] =
        "da000000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227370617273"
        "6572657369642e6f7074696d222c2276657273696f6e223a2231222c226b696e64223a2273676422"
        "2c226e223a2232333035383433303039323133363933393532222c227374657073223a2231222c22"
        "666c616773223a2230222c226c72223a2230222c227765696768745f6465636179223a2230222c22"
        "6d6f6d656e74756d223a2235227d2c22223a7b226474797065223a22463332222c22736861706522"
        "3a5b5d2c22646174615f6f666673657473223a5b302c345d7d7d00000000";
    static const char header[] =
        "{\"__metadata__\":{\"format\":\"sparseresid.optim\",\"version\":\"1\",\"kind\":\"sgd\","
        "\"n\":\"2305843009213693952\",\"steps\":\"0\",\"flags\":\"0\",\"lr\":\"0.5\","
        "\"weight_decay\":\"0\",\"momentum\":\"0\"},"
        "\"m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    const float m = 0.5f;
    sresid_optim *o = NULL;
    const char *p = tu_path("huge_n_found.safetensors");
    ck_assert_int_eq(tu_write_hex(p, found), 0);
    ck_assert_status(sresid_optim_load(p, &o), SRESID_ERR_NOT_FOUND);
    ck_assert_ptr_null(o);
    ck_assert_msg(strstr(sresid_last_error(), "no tensor \"m\""), "%s", sresid_last_error());
    /* "m" there, of one entry */
    p = tu_path("huge_n.safetensors");
    ck_assert_int_eq(tu_write_st(p, header, &m, sizeof m), 0);
    ck_assert_status(sresid_optim_load(p, &o), SRESID_ERR_SHAPE);
    ck_assert_ptr_null(o);
    ck_assert_msg(strstr(sresid_last_error(), "tensor \"m\" has 1 entries in 1 dimensions, want "
                                              "[2305843009213693952]"),
                  "%s", sresid_last_error());
}
END_TEST

START_TEST(optim_argument_errors)
{
    sresid_optim *o = NULL;
    const sresid_optim_opts bad[] = {
        {.lr = -1},
        {.lr = NAN},
        {.lr = INFINITY},
        {.beta1 = 1},
        {.beta2 = 1.5},
        {.eps = -1e-8},
        {.weight_decay = NAN},
        {.kind = 3},
        {.kind = -1},
        {.flags = 0x4},
        {.momentum = 0.9},                                  /* AdamW has none */
        {.flags = SRESID_OPTIM_NESTEROV},                   /* AdamW */
        {.kind = SRESID_OPTIM_SGD, .flags = SRESID_OPTIM_NESTEROV}, /* no momentum */
        {.kind = SRESID_OPTIM_SGD, .beta1 = 0.9},
        {.kind = SRESID_OPTIM_SGD, .flags = SRESID_OPTIM_NO_BIAS_CORRECTION},
        {.kind = SRESID_OPTIM_SGD, .momentum = -0.5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sresid_optim_opts b = bad[i];
        b.size = sizeof b;
        ck_assert_msg(sresid_optim_create(4, &b, &o) == SRESID_ERR_INVALID_ARG, "case %zu", i);
        ck_assert_ptr_null(o);
    }
    struct {
        sresid_optim_opts o;
        uint64_t tail;
    } big = {{.size = sizeof big}, 1};
    ck_assert_status(sresid_optim_create(4, &big.o, &o), SRESID_ERR_INVALID_ARG);
    big.tail = 0;
    ck_assert_ok(sresid_optim_create(4, &big.o, &o));
    sresid_optim_free(o);
    o = NULL;
    ck_assert_status(sresid_optim_create(4, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_create(UINT64_MAX / 2, NULL, &o), SRESID_ERR_OVERFLOW);
    ck_assert_ptr_null(o);

    /* defaults */
    ck_assert_ok(sresid_optim_create(4, NULL, &o));
    sresid_optim_opts got = {.size = sizeof got};
    ck_assert_ok(sresid_optim_get_opts(o, &got));
    ck_assert(got.kind == SRESID_OPTIM_ADAMW && got.lr == 1e-3 && got.beta1 == 0.9 &&
              got.beta2 == 0.999 && got.eps == 1e-8 && got.weight_decay == 0 &&
              got.momentum == 0 && got.flags == 0 && got.size == sizeof got);
    sresid_optim_opts small = {.size = 8};
    ck_assert_status(sresid_optim_get_opts(o, &small), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_get_opts(NULL, &got), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_set_lr(o, -1), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_set_lr(o, NAN), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_set_lr(NULL, 1), SRESID_ERR_INVALID_ARG);
    ck_assert_ok(sresid_optim_get_opts(o, &got));
    ck_assert(got.lr == 1e-3);
    ck_assert_ok(sresid_optim_set_lr(o, 0.5));
    ck_assert_ok(sresid_optim_get_opts(o, &got));
    ck_assert(got.lr == 0.5);

    /* step: sizes, masks, non-finite gradients change nothing */
    float p[5] = {1, 2, 3, 4, 5}, g[5] = {1, 1, 1, 1, 1};
    ck_assert_status(sresid_optim_step(o, p, g, 5, NULL), SRESID_ERR_SHAPE);
    ck_assert_status(sresid_optim_step(o, NULL, g, 4, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_step(o, p, NULL, 4, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_optim_step(NULL, p, g, 4, NULL), SRESID_ERR_INVALID_ARG);
    sresid_mask *m5 = NULL, *m4 = NULL;
    ck_assert_ok(sresid_mask_create(5, 1, &m5));
    ck_assert_status(sresid_optim_step(o, p, g, 4, m5), SRESID_ERR_SHAPE);
    g[3] = INFINITY;
    ck_assert_status(sresid_optim_step(o, p, g, 4, NULL), SRESID_ERR_NONFINITE);
    ck_assert_msg(strstr(sresid_last_error(), "grad[3]"), "%s", sresid_last_error());
    ck_assert_uint_eq(sresid_optim_steps(o), 0);
    ck_assert(p[0] == 1 && p[1] == 2 && p[2] == 3 && p[3] == 4);
    const float *mm, *vv;
    ck_assert_ok(sresid_optim_state(o, &mm, &vv));
    ck_assert(mm[0] == 0 && vv[0] == 0);
    /* the non-finite entry frozen: fine */
    ck_assert_ok(sresid_mask_create(4, 1, &m4));
    ck_assert_ok(sresid_mask_set(m4, 3, 0));
    ck_assert_ok(sresid_optim_step(o, p, g, 4, m4));
    ck_assert(p[3] == 4 && p[0] != 1);
    ck_assert_status(sresid_optim_state(NULL, &mm, &vv), SRESID_ERR_INVALID_ARG);
    ck_assert_uint_eq(sresid_optim_size(NULL), 0);
    ck_assert_uint_eq(sresid_optim_steps(NULL), 0);
    sresid_optim_free(NULL);
    sresid_mask_free(m4);
    sresid_mask_free(m5);
    sresid_optim_free(o);
    /* n = 0 works */
    ck_assert_ok(sresid_optim_create(0, NULL, &o));
    ck_assert_ok(sresid_optim_step(o, NULL, NULL, 0, NULL));
    ck_assert_uint_eq(sresid_optim_steps(o), 1);
    sresid_optim_free(o);
}
END_TEST

Suite *suite_optim(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, optim_first_step_by_hand);
    tcase_add_test(tc, optim_ten_steps_match_reference);
    tcase_add_test(tc, optim_frozen_entries_untouched);
    tcase_add_test(tc, optim_minimises_quadratic);
    tcase_add_test(tc, optim_reset);
    tcase_add_test(tc, optim_save_load_round_trip);
    tcase_add_test(tc, optim_load_rejects_malformed);
    tcase_add_test(tc, optim_load_checks_n_before_allocating);
    tcase_add_test(tc, optim_argument_errors);
    suite_add_tcase(s, tc);
    return s;
}
