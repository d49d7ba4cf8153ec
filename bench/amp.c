/*
 * bench/amp.c — timings of the amplitude basis, driven by bench/amp.py.
 *
 *   amp-bench kernels N REPS
 *       one N x N F32 matrix in memory, DIAG and CORE bases (1 thread);
 *       per repetition, interleaved: sresid_amp_project (all scores),
 *       sresid_amp_materialize with every score changed and with 10 % of
 *       them changed, and bli_sgemm calls of the same shapes (the
 *       products these reduce to) as the yardstick.
 *   amp-bench svd FILE REPS
 *       for each tensor of a safetensors file, sresid_amp_create (DIAG,
 *       full rank, 1 thread) selecting that tensor alone.
 *
 * Prints one JSON object per line: {"op": ..., "n": ..., "median_s": ...,
 * "times": [...]}. Links the library and BLIS (for the yardstick only).
 *
 * SPDX-License-Identifier: MIT
 */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sparseresid/sparseresid.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *op, long n, double *t, int reps)
{
    double s[256];
    memcpy(s, t, (size_t)reps * sizeof *s);
    qsort(s, (size_t)reps, sizeof *s, cmp);
    double med = reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]);
    printf("{\"op\": \"%s\", \"n\": %ld, \"median_s\": %.6g, \"times\": [", op, n, med);
    for (int i = 0; i < reps; i++)
        printf("%s%.6g", i ? ", " : "", t[i]);
    printf("]}\n");
    fflush(stdout);
}

static void die(const char *what, sresid_status st)
{
    fprintf(stderr, "amp-bench: %s: %s (%s)\n", what, sresid_strerror(st), sresid_last_error());
    exit(1);
}

#define CHECK(what, call)                                                                     \
    do {                                                                                      \
        sresid_status st_ = (call);                                                           \
        if (st_)                                                                              \
            die(what, st_);                                                                   \
    } while (0)

static float *rand_buf(size_t n, unsigned seed)
{
    float *x = malloc((n + 16) * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return x;
}

/* C (m x n) = alpha A op(B) + beta C, row-major, one thread */
static void ref_gemm(int tb, long m, long n, long k, const float *a, long lda, const float *b,
                     long ldb, float beta, float *c, long ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    float one = 1.0f;
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
                 (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, &rntm);
}

static int kernels(long n, int reps)
{
    size_t nn = (size_t)n * (size_t)n;
    float *w = rand_buf(nn, 1), *g = rand_buf(nn, 2), *dst = rand_buf(nn, 3);
    float *a = rand_buf(nn, 4), *b = rand_buf(nn, 5), *c = rand_buf(nn, 6);
    sresid_model *m = NULL;
    int64_t shape[2] = {n, n};
    CHECK("model", sresid_model_create(NULL, &m));
    CHECK("add", sresid_model_add_tensor(m, "layers.0.attn.w", SRESID_DTYPE_F32, 2, shape, w,
                                         nn * 4, SRESID_ADD_BORROW));
    for (int layout = 0; layout < 2; layout++) {
        const char *lname = layout ? "core" : "diag";
        sresid_amp_opts o = {.size = sizeof o, .layout = layout, .threads = 1};
        sresid_amp *amp = NULL;
        CHECK("create", sresid_amp_create(m, &o, &amp));
        uint64_t ns = sresid_amp_score_count(amp);
        float *s = sresid_amp_scores(amp), *out = malloc(ns * sizeof *out);
        const float *s0 = sresid_amp_initial_scores(amp);
        double *tp = calloc((size_t)reps, sizeof *tp), *tf = calloc((size_t)reps, sizeof *tf);
        double *t10 = calloc((size_t)reps, sizeof *t10), *rp = calloc((size_t)reps, sizeof *rp);
        double *rf = calloc((size_t)reps, sizeof *rf), *r10 = calloc((size_t)reps, sizeof *r10);
        for (int rep = -1; rep < reps; rep++) { /* rep -1 warms up */
            double t0 = now();
            CHECK("project", sresid_amp_project(amp, 0, g, n, out, NULL, 0));
            double t1 = now();
            /* the yardstick: G V (n x n x n), and U^T T for CORE */
            ref_gemm(0, n, n, n, g, n, a, n, 0.0f, c, n);
            if (layout)
                ref_gemm(0, n, n, n, b, n, c, n, 0.0f, dst, n);
            double t2 = now();
            for (uint64_t i = 0; i < ns; i++)
                s[i] = s0[i] + 0.01f;
            double t3 = now();
            CHECK("materialize", sresid_amp_materialize(amp, 0, dst, n, 0));
            double t4 = now();
            ref_gemm(1, n, n, n, a, n, b, n, 1.0f, c, n);
            if (layout)
                ref_gemm(0, n, n, n, a, n, b, n, 0.0f, dst, n);
            double t5 = now();
            /* 10 %: every tenth diagonal score (DIAG), or every tenth row
             * and column's entries (CORE: 10 % of rows and of columns) */
            memcpy(s, s0, ns * sizeof *s);
            if (layout) {
                for (long i = 0; i < n; i += 10)
                    for (long j = 0; j < n; j += 10)
                        s[i * n + j] += 0.01f;
            } else {
                for (long i = 0; i < n; i += 10)
                    s[i] += 0.01f;
            }
            double t6 = now();
            CHECK("materialize", sresid_amp_materialize(amp, 0, dst, n, 0));
            double t7 = now();
            long k = (n + 9) / 10;
            ref_gemm(1, n, n, k, a, k, b, k, 1.0f, c, n);
            double t8 = now();
            if (rep >= 0) {
                tp[rep] = t1 - t0;
                rp[rep] = t2 - t1;
                tf[rep] = t4 - t3;
                rf[rep] = t5 - t4;
                t10[rep] = t7 - t6;
                r10[rep] = t8 - t7;
            }
            memcpy(s, s0, ns * sizeof *s);
        }
        char name[64];
        snprintf(name, sizeof name, "%s_project", lname);
        report(name, n, tp, reps);
        snprintf(name, sizeof name, "%s_project_ref", lname);
        report(name, n, rp, reps);
        snprintf(name, sizeof name, "%s_materialize_full", lname);
        report(name, n, tf, reps);
        snprintf(name, sizeof name, "%s_materialize_full_ref", lname);
        report(name, n, rf, reps);
        snprintf(name, sizeof name, "%s_materialize_10", lname);
        report(name, n, t10, reps);
        snprintf(name, sizeof name, "%s_materialize_10_ref", lname);
        report(name, n, r10, reps);
        free(tp);
        free(tf);
        free(t10);
        free(rp);
        free(rf);
        free(r10);
        free(out);
        sresid_amp_free(amp);
    }
    sresid_model_free(m);
    free(w);
    free(g);
    free(dst);
    free(a);
    free(b);
    free(c);
    return 0;
}

static int svd(const char *path, int reps)
{
    sresid_model *m = NULL;
    sresid_model_opts mo = {.size = sizeof mo, .flags = SRESID_OPEN_KEEP_PAGES};
    CHECK("open", sresid_model_open(path, &mo, &m));
    for (size_t i = 0; i < sresid_model_tensor_count(m); i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        CHECK("info", sresid_model_tensor_info(m, i, &ti));
        double *t = calloc((size_t)reps, sizeof *t);
        for (int rep = 0; rep < reps; rep++) {
            sresid_amp_opts o = {.size = sizeof o, .threads = 1, .pattern = ti.name,
                                 .kinds = (1u << SRESID_KIND_COUNT) - 1};
            sresid_amp *amp = NULL;
            double t0 = now();
            CHECK("create", sresid_amp_create(m, &o, &amp));
            t[rep] = now() - t0;
            sresid_amp_free(amp);
        }
        report("svd", (long)ti.rows, t, reps);
        free(t);
    }
    sresid_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    sresid_set_threads(1);
    if (argc == 4 && strcmp(argv[1], "kernels") == 0)
        return kernels(atol(argv[2]), atoi(argv[3]) < 1 ? 1 : atoi(argv[3]) > 255 ? 255 : atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "svd") == 0)
        return svd(argv[2], atoi(argv[3]) < 1 ? 1 : atoi(argv[3]) > 255 ? 255 : atoi(argv[3]));
    fprintf(stderr, "usage: amp-bench kernels N REPS | amp-bench svd FILE REPS\n");
    return 2;
}
