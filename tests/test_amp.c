/* Check suite of the amp module: the basis against closed-form and
 * independently computed SVDs, materialize and project against dense
 * double-precision references, fit, export, save/load, bad input. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define ATTN "model.layers.0.self_attn.q_proj.weight"
#define MLP "model.layers.0.mlp.up_proj.weight"

/* ---- references in double ---- */

/* A random orthogonal n x n matrix (row-major): a product of n Householder
 * reflections with random normal vectors. */
static double *rand_orth(int64_t n, uint64_t *rs)
{
    double *q = calloc((size_t)(n * n), sizeof *q), *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        q[i * n + i] = 1;
    for (int64_t k = 0; k < n; k++) {
        double nv = 0;
        for (int64_t i = 0; i < n; i++) {
            v[i] = tu_rand_normal(rs);
            nv += v[i] * v[i];
        }
        nv = sqrt(nv);
        for (int64_t i = 0; i < n; i++)
            v[i] /= nv;
        for (int64_t i = 0; i < n; i++) { /* Q = Q (I - 2 v v^T) */
            double d = 0;
            for (int64_t j = 0; j < n; j++)
                d += q[i * n + j] * v[j];
            for (int64_t j = 0; j < n; j++)
                q[i * n + j] -= 2 * d * v[j];
        }
    }
    free(v);
    return q;
}

/* W = Q1[:, :k] diag(sig) Q2[:, :k]^T as float, k = min(m, n); the Q's are
 * returned for the caller to free. */
static float *known_matrix(int64_t m, int64_t n, const double *sig, uint64_t seed, double **q1,
                           double **q2)
{
    uint64_t rs = seed;
    int64_t k = m < n ? m : n;
    *q1 = rand_orth(m, &rs);
    *q2 = rand_orth(n, &rs);
    float *w = malloc((size_t)(m * n) * sizeof *w);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (*q1)[i * m + p] * sig[p] * (*q2)[j * n + p];
            w[i * n + j] = (float)s;
        }
    return w;
}

static float *rand_matrix(int64_t m, int64_t n, uint64_t seed)
{
    uint64_t rs = seed;
    float *w = malloc((size_t)(m * n) * sizeof *w);
    for (int64_t i = 0; i < m * n; i++)
        w[i] = (float)tu_rand_normal(&rs);
    return w;
}

/* Singular values of a (m x n, float) by one-sided Jacobi in double on the
 * columns of A (or of A^T when n > m), sorted descending. */
static void jacobi_svals(const float *a, int64_t m, int64_t n, double *sv)
{
    int64_t rows = m >= n ? m : n, cols = m >= n ? n : m;
    double *x = malloc((size_t)(rows * cols) * sizeof *x);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            if (m >= n)
                x[i * cols + j] = a[i * n + j];
            else
                x[j * cols + i] = a[i * n + j];
        }
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0;
        for (int64_t p = 0; p < cols; p++)
            for (int64_t q = p + 1; q < cols; q++) {
                double al = 0, be = 0, ga = 0;
                for (int64_t i = 0; i < rows; i++) {
                    al += x[i * cols + p] * x[i * cols + p];
                    be += x[i * cols + q] * x[i * cols + q];
                    ga += x[i * cols + p] * x[i * cols + q];
                }
                if (fabs(ga) <= 1e-15 * sqrt(al * be))
                    continue;
                off = fmax(off, fabs(ga) / sqrt(al * be));
                double zeta = (be - al) / (2 * ga);
                double t = (zeta >= 0 ? 1 : -1) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int64_t i = 0; i < rows; i++) {
                    double xp = x[i * cols + p], xq = x[i * cols + q];
                    x[i * cols + p] = c * xp - s * xq;
                    x[i * cols + q] = s * xp + c * xq;
                }
            }
        if (off < 1e-14)
            break;
    }
    for (int64_t p = 0; p < cols; p++) {
        double s = 0;
        for (int64_t i = 0; i < rows; i++)
            s += x[i * cols + p] * x[i * cols + p];
        sv[p] = sqrt(s);
    }
    for (int64_t p = 0; p < cols; p++) /* insertion sort, descending */
        for (int64_t q = p; q > 0 && sv[q] > sv[q - 1]; q--) {
            double t = sv[q];
            sv[q] = sv[q - 1];
            sv[q - 1] = t;
        }
    free(x);
}

/* Dense reference of W0 + U (S - S0) V^T in double, every score counted. */
static double *dense_weights(const sresid_amp *amp, size_t t, const float *w0)
{
    sresid_amp_tensor_info ti = {.size = sizeof ti};
    ck_assert_ok(sresid_amp_tensor(amp, t, &ti));
    const float *u, *v;
    ck_assert_ok(sresid_amp_basis(amp, t, &u, &v));
    const float *s = sresid_amp_scores((sresid_amp *)amp) + ti.offset;
    const float *s0 = sresid_amp_initial_scores(amp) + ti.offset;
    int64_t m = ti.rows, n = ti.cols, r = ti.rank;
    bool core = sresid_amp_layout(amp) == SRESID_AMP_CORE;
    double *out = malloc((size_t)(m * n) * sizeof *out);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = w0[i * n + j];
            for (int64_t a = 0; a < r; a++) {
                if (core) {
                    for (int64_t b = 0; b < r; b++)
                        acc += (double)u[i * r + a] * ((double)s[a * r + b] - s0[a * r + b]) *
                               v[j * r + b];
                } else {
                    acc += (double)u[i * r + a] * ((double)s[a] - s0[a]) * v[j * r + a];
                }
            }
            out[i * n + j] = acc;
        }
    return out;
}

/* ||x - ref|| / ||ref|| over m x n (x with stride ld) */
static double rel_err(const float *x, int64_t ld, const double *ref, int64_t m, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double d = x[i * ld + j] - ref[i * n + j];
            num += d * d;
            den += ref[i * n + j] * ref[i * n + j];
        }
    return sqrt(num / (den > 0 ? den : 1));
}

/* ---- models ---- */

static sresid_model *model_of(const char *const *names, const float *const *data,
                              const int64_t (*shapes)[2], size_t count)
{
    sresid_model *m = NULL;
    ck_assert_ok(sresid_model_create(NULL, &m));
    for (size_t i = 0; i < count; i++)
        ck_assert_ok(sresid_model_add_tensor(m, names[i], SRESID_DTYPE_F32, 2, shapes[i], data[i],
                                             (size_t)(shapes[i][0] * shapes[i][1] * 4), 0));
    return m;
}

static sresid_model *one_matrix(const float *w, int64_t m, int64_t n)
{
    const char *names[] = {ATTN};
    const float *data[] = {w};
    const int64_t shapes[][2] = {{m, n}};
    return model_of(names, data, shapes, 1);
}

static sresid_amp *make_amp(const sresid_model *m, int32_t layout, int32_t rank)
{
    sresid_amp_opts o = {.size = sizeof o, .layout = layout, .rank = rank, .threads = 1};
    sresid_amp *amp = NULL;
    ck_assert_ok(sresid_amp_create(m, &o, &amp));
    return amp;
}

static void perturb(sresid_amp *amp, double frac, double scale, uint64_t seed)
{
    uint64_t rs = seed;
    float *s = sresid_amp_scores(amp);
    for (uint64_t i = 0; i < sresid_amp_score_count(amp); i++)
        if (tu_rand_uniform(&rs) < frac)
            s[i] += (float)(scale * tu_rand_normal(&rs));
}

static const int64_t SHAPES[3][2] = {{24, 24}, {40, 16}, {16, 40}};

/* ---- basis ---- */

START_TEST(t_basis_known)
{
    for (int c = 0; c < 3; c++) {
        int64_t m = SHAPES[c][0], n = SHAPES[c][1], k = m < n ? m : n;
        double sig[40];
        for (int64_t p = 0; p < k; p++)
            sig[p] = 10.0 * pow(0.85, (double)p) + 0.1;
        double *q1, *q2;
        float *w = known_matrix(m, n, sig, 100 + (uint64_t)c, &q1, &q2);
        sresid_model *model = one_matrix(w, m, n);
        sresid_amp *amp = make_amp(model, SRESID_AMP_DIAG, 0);
        ck_assert_uint_eq(sresid_amp_count(amp), 1);
        ck_assert_uint_eq(sresid_amp_score_count(amp), (uint64_t)k);
        const float *s0 = sresid_amp_initial_scores(amp), *u, *v;
        ck_assert_ok(sresid_amp_basis(amp, 0, &u, &v));
        for (int64_t p = 0; p < k; p++) {
            ck_assert_msg(fabs(s0[p] - sig[p]) <= 1e-5 * sig[0], "s%lld %g vs %g", (long long)p,
                          s0[p], sig[p]);
            /* each u_j is +-q1_j (well separated singular values) */
            double du = 0, dv = 0;
            for (int64_t i = 0; i < m; i++)
                du += u[i * k + p] * q1[i * m + p];
            for (int64_t i = 0; i < n; i++)
                dv += v[i * k + p] * q2[i * n + p];
            ck_assert_msg(fabs(fabs(du) - 1) < 1e-4 && fabs(du - dv) < 1e-4, "col %lld %g %g",
                          (long long)p, du, dv);
        }
        /* orthonormal columns */
        for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b < k; b++) {
                double gu = 0, gv = 0;
                for (int64_t i = 0; i < m; i++)
                    gu += (double)u[i * k + a] * u[i * k + b];
                for (int64_t i = 0; i < n; i++)
                    gv += (double)v[i * k + a] * v[i * k + b];
                ck_assert(fabs(gu - (a == b)) < 1e-5 && fabs(gv - (a == b)) < 1e-5);
            }
        /* U diag(s0) V^T reproduces the input */
        double num = 0, den = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double x = 0;
                for (int64_t p = 0; p < k; p++)
                    x += (double)u[i * k + p] * s0[p] * v[j * k + p];
                num += (x - w[i * n + j]) * (x - w[i * n + j]);
                den += (double)w[i * n + j] * w[i * n + j];
            }
        ck_assert_msg(sqrt(num / den) < 1e-5, "reconstruction %g", sqrt(num / den));
        /* with S = S0, materialize is W0 itself */
        float *dst = malloc((size_t)(m * n) * sizeof *dst);
        ck_assert_ok(sresid_amp_materialize(amp, 0, dst, n, 0));
        ck_assert(memcmp(dst, w, (size_t)(m * n) * sizeof *w) == 0);
        free(dst);
        sresid_amp_free(amp);
        sresid_model_free(model);
        free(w);
        free(q1);
        free(q2);
    }
}
END_TEST

/* Finite entries whose singular values overflow float32 are refused at
 * create, naming the tensor (they could be neither materialized nor saved). */
START_TEST(t_basis_overflow)
{
    sresid_model *m;
    ck_assert_ok(sresid_model_create(NULL, &m));
    float w[12];
    for (int i = 0; i < 12; i++)
        w[i] = (i % 2 ? -3e38f : 3e38f) * (i % 3 ? 1.0f : 0.9f);
    const int64_t s[2] = {3, 4};
    ck_assert_ok(sresid_model_add_tensor(m, "layers.0.mlp.big", SRESID_DTYPE_F32, 2, s, w,
                                         sizeof w, 0));
    sresid_amp_opts o = {.size = sizeof o, .kinds = 1u << SRESID_KIND_MLP};
    sresid_amp *amp = NULL;
    ck_assert_status(sresid_amp_create(m, &o, &amp), SRESID_ERR_NONFINITE);
    ck_assert_ptr_null(amp);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "layers.0.mlp.big"));
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "overflow"));
    sresid_model_free(m);
}
END_TEST

START_TEST(t_basis_jacobi)
{
    for (int c = 0; c < 3; c++) {
        int64_t m = SHAPES[c][0], n = SHAPES[c][1], k = m < n ? m : n;
        float *w = rand_matrix(m, n, 7 + (uint64_t)c);
        sresid_model *model = one_matrix(w, m, n);
        sresid_amp *amp = make_amp(model, SRESID_AMP_DIAG, 0);
        double sv[40];
        jacobi_svals(w, m, n, sv);
        const float *s0 = sresid_amp_initial_scores(amp);
        for (int64_t p = 0; p < k; p++)
            ck_assert_msg(fabs(s0[p] - sv[p]) <= 1e-5 * sv[0], "s%lld %g vs %g", (long long)p,
                          s0[p], sv[p]);
        sresid_amp_free(amp);
        /* truncated rank: the r largest, and the CORE layout starts at diag(s0) */
        amp = make_amp(model, SRESID_AMP_CORE, 5);
        sresid_amp_tensor_info ti = {.size = sizeof ti};
        ck_assert_ok(sresid_amp_tensor(amp, 0, &ti));
        ck_assert_int_eq(ti.rank, 5);
        ck_assert_uint_eq(ti.count, 25);
        s0 = sresid_amp_initial_scores(amp);
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++)
                ck_assert(a == b ? fabs(s0[a * 5 + b] - sv[a]) <= 1e-5 * sv[0]
                                 : s0[a * 5 + b] == 0);
        sresid_amp_free(amp);
        sresid_model_free(model);
        free(w);
    }
}
END_TEST

START_TEST(t_signs)
{
    int64_t m = 20, n = 12, k = 12;
    float *w = rand_matrix(m, n, 11), *wn = malloc((size_t)(m * n) * sizeof *wn);
    for (int64_t i = 0; i < m * n; i++)
        wn[i] = -w[i];
    sresid_model *a = one_matrix(w, m, n), *b = one_matrix(wn, m, n);
    sresid_amp *pa = make_amp(a, SRESID_AMP_DIAG, 0), *pb = make_amp(b, SRESID_AMP_DIAG, 0);
    const float *ua, *va, *ub, *vb;
    ck_assert_ok(sresid_amp_basis(pa, 0, &ua, &va));
    ck_assert_ok(sresid_amp_basis(pb, 0, &ub, &vb));
    for (int64_t j = 0; j < k; j++) {
        /* the largest |u_ij| (first among equal) is positive */
        int64_t best = 0;
        for (int64_t i = 1; i < m; i++)
            if (fabsf(ua[i * k + j]) > fabsf(ua[best * k + j]))
                best = i;
        ck_assert(ua[best * k + j] > 0);
        /* -W = U diag(s) (-V)^T: same U, V flipped */
        for (int64_t i = 0; i < m; i++)
            ck_assert(fabsf(ua[i * k + j] - ub[i * k + j]) < 1e-4f);
        for (int64_t i = 0; i < n; i++)
            ck_assert(fabsf(va[i * k + j] + vb[i * k + j]) < 1e-4f);
    }
    sresid_amp_free(pa);
    sresid_amp_free(pb);
    sresid_model_free(a);
    sresid_model_free(b);
    free(w);
    free(wn);
}
END_TEST

/* ---- materialize and project ---- */

START_TEST(t_adjoint)
{
    for (int layout = 0; layout < 2; layout++)
        for (int c = 0; c < 3; c++)
            for (int trunc = 0; trunc < 2; trunc++) {
                int64_t m = SHAPES[c][0], n = SHAPES[c][1];
                float *w = rand_matrix(m, n, 21 + (uint64_t)c);
                sresid_model *model = one_matrix(w, m, n);
                sresid_amp *amp = make_amp(model, layout, trunc ? 6 : 0);
                uint64_t ns = sresid_amp_score_count(amp);
                float *ds = malloc(ns * sizeof *ds), *p = malloc(ns * sizeof *p);
                float *g = rand_matrix(m, n, 31), *wt = malloc((size_t)(m * n) * sizeof *wt);
                uint64_t rs = 41;
                for (uint64_t i = 0; i < ns; i++) {
                    ds[i] = (float)tu_rand_normal(&rs);
                    sresid_amp_scores(amp)[i] += ds[i];
                    ds[i] = sresid_amp_scores(amp)[i] - sresid_amp_initial_scores(amp)[i];
                }
                ck_assert_ok(sresid_amp_project(amp, 0, g, n, p, NULL, 0));
                ck_assert_ok(sresid_amp_materialize(amp, 0, wt, n, 0));
                double lhs = 0, rhs = 0, scale = 0;
                for (uint64_t i = 0; i < ns; i++) {
                    lhs += (double)p[i] * ds[i];
                    scale += fabs((double)p[i] * ds[i]);
                }
                for (int64_t i = 0; i < m * n; i++)
                    rhs += (double)g[i] * ((double)wt[i] - w[i]);
                ck_assert_msg(fabs(lhs - rhs) <= 1e-4 * scale, "layout %d shape %d trunc %d: %g vs %g",
                              layout, c, trunc, lhs, rhs);
                free(ds);
                free(p);
                free(g);
                free(wt);
                free(w);
                sresid_amp_free(amp);
                sresid_model_free(model);
            }
}
END_TEST

/* L(s) = 0.5 |W(s) - W*|^2: its gradient is project(W(s) - W*); L is
 * quadratic in s, so central differences are exact but for rounding. */
START_TEST(t_gradient_fd)
{
    for (int layout = 0; layout < 2; layout++) {
        int64_t m = 18, n = 14;
        float *w = rand_matrix(m, n, 51), *target = rand_matrix(m, n, 52);
        sresid_model *model = one_matrix(w, m, n);
        sresid_amp *amp = make_amp(model, layout, 0);
        perturb(amp, 1.0, 0.3, 53);
        uint64_t ns = sresid_amp_score_count(amp);
        float *wt = malloc((size_t)(m * n) * sizeof *wt), *g = malloc(ns * sizeof *g);
        float *res = malloc((size_t)(m * n) * sizeof *res);
        ck_assert_ok(sresid_amp_materialize(amp, 0, wt, n, 0));
        for (int64_t i = 0; i < m * n; i++)
            res[i] = wt[i] - target[i];
        ck_assert_ok(sresid_amp_project(amp, 0, res, n, g, NULL, 0));
        float *s = sresid_amp_scores(amp);
        for (uint64_t q = 0; q < ns; q += 7) {
            double l[2];
            float keep = s[q], h = 0.25f;
            for (int side = 0; side < 2; side++) {
                s[q] = keep + (side ? -h : h);
                ck_assert_ok(sresid_amp_materialize(amp, 0, wt, n, 0));
                double acc = 0;
                for (int64_t i = 0; i < m * n; i++)
                    acc += 0.5 * ((double)wt[i] - target[i]) * ((double)wt[i] - target[i]);
                l[side] = acc;
            }
            s[q] = keep;
            double fd = (l[0] - l[1]) / (2.0 * h);
            ck_assert_msg(fabs(fd - g[q]) <= 1e-3 * (1 + fabs(fd)), "score %llu: %g vs %g",
                          (unsigned long long)q, fd, g[q]);
        }
        free(wt);
        free(g);
        free(res);
        free(w);
        free(target);
        sresid_amp_free(amp);
        sresid_model_free(model);
    }
}
END_TEST

START_TEST(t_sparse_dense)
{
    int64_t big = tu_quick() ? 48 : 96;
    for (int layout = 0; layout < 2; layout++)
        for (int c = 0; c < 3; c++) {
            int64_t m = c == 2 ? big / 2 : big, n = c == 1 ? big / 2 : big;
            float *w = rand_matrix(m, n, 61 + (uint64_t)c);
            sresid_model *model = one_matrix(w, m, n);
            sresid_amp *amp = make_amp(model, layout, 0);
            perturb(amp, 0.1, 0.5, 62);
            double *ref = dense_weights(amp, 0, w);
            float *dst = malloc((size_t)(m * n) * sizeof *dst);
            ck_assert_ok(sresid_amp_materialize(amp, 0, dst, n, 0));
            double e = rel_err(dst, n, ref, m, n);
            ck_assert_msg(e < 1e-5, "layout %d shape %d: %g", layout, c, e);
            /* a single changed score, and none */
            ck_assert_ok(sresid_amp_reset(amp));
            sresid_amp_scores(amp)[3] += 1.5f;
            free(ref);
            ref = dense_weights(amp, 0, w);
            ck_assert_ok(sresid_amp_materialize(amp, 0, dst, n, 0));
            ck_assert(rel_err(dst, n, ref, m, n) < 1e-5);
            sresid_amp_scores(amp)[3] -= 1.5f;
            ck_assert_ok(sresid_amp_reset(amp));
            ck_assert_ok(sresid_amp_materialize(amp, 0, dst, n, 0));
            ck_assert(memcmp(dst, w, (size_t)(m * n) * sizeof *w) == 0);
            free(ref);
            free(dst);
            free(w);
            sresid_amp_free(amp);
            sresid_model_free(model);
        }
}
END_TEST

START_TEST(t_add_and_stride)
{
    for (int layout = 0; layout < 2; layout++) {
        int64_t m = 20, n = 9, ld = 13;
        float *w = rand_matrix(m, n, 71), *x = rand_matrix(m, ld, 72);
        sresid_model *model = one_matrix(w, m, n);
        sresid_amp *amp = make_amp(model, layout, 0);
        /* no change: ADD leaves dst exactly as it was */
        float *dst = malloc((size_t)(m * ld) * sizeof *dst);
        memcpy(dst, x, (size_t)(m * ld) * sizeof *x);
        ck_assert_ok(sresid_amp_materialize(amp, 0, dst, ld, SRESID_MATERIALIZE_ADD));
        ck_assert(memcmp(dst, x, (size_t)(m * ld) * sizeof *x) == 0);
        perturb(amp, 0.5, 1.0, 73);
        double *ref = dense_weights(amp, 0, w);
        /* ADD: x + (W - W0); the padding columns untouched */
        ck_assert_ok(sresid_amp_materialize(amp, 0, dst, ld, SRESID_MATERIALIZE_ADD));
        double *want = malloc((size_t)(m * n) * sizeof *want);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                want[i * n + j] = x[i * ld + j] + ref[i * n + j] - w[i * n + j];
        ck_assert(rel_err(dst, ld, want, m, n) < 1e-5);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = n; j < ld; j++)
                ck_assert(dst[i * ld + j] == x[i * ld + j]);
        /* plain, strided */
        memcpy(dst, x, (size_t)(m * ld) * sizeof *x);
        ck_assert_ok(sresid_amp_materialize(amp, 0, dst, ld, 0));
        ck_assert(rel_err(dst, ld, ref, m, n) < 1e-5);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = n; j < ld; j++)
                ck_assert(dst[i * ld + j] == x[i * ld + j]);
        /* project with a stride equals project of the packed copy */
        uint64_t ns = sresid_amp_score_count(amp);
        float *p1 = malloc(ns * sizeof *p1), *p2 = malloc(ns * sizeof *p2);
        float *packed = malloc((size_t)(m * n) * sizeof *packed);
        for (int64_t i = 0; i < m; i++)
            memcpy(packed + i * n, x + i * ld, (size_t)n * sizeof *x);
        ck_assert_ok(sresid_amp_project(amp, 0, x, ld, p1, NULL, 0));
        ck_assert_ok(sresid_amp_project(amp, 0, packed, n, p2, NULL, 0));
        for (uint64_t i = 0; i < ns; i++)
            ck_assert(fabsf(p1[i] - p2[i]) <= 1e-5f * (1 + fabsf(p2[i])));
        free(p1);
        free(p2);
        free(packed);
        free(want);
        free(ref);
        free(dst);
        free(w);
        free(x);
        sresid_amp_free(amp);
        sresid_model_free(model);
    }
}
END_TEST

/* project against u_a^T G v_b computed in double from the basis */
START_TEST(t_project_mask)
{
    for (int layout = 0; layout < 2; layout++) {
        int64_t m = 15, n = 11;
        float *w = rand_matrix(m, n, 81), *g = rand_matrix(m, n, 82);
        sresid_model *model = one_matrix(w, m, n);
        sresid_amp *amp = make_amp(model, layout, 0);
        uint64_t ns = sresid_amp_score_count(amp);
        int64_t r = 11;
        const float *u, *v;
        ck_assert_ok(sresid_amp_basis(amp, 0, &u, &v));
        double *ref = malloc(ns * sizeof *ref);
        for (uint64_t q = 0; q < ns; q++) {
            int64_t a = layout ? (int64_t)q / r : (int64_t)q, b = layout ? (int64_t)q % r : a;
            double acc = 0;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    acc += (double)u[i * r + a] * g[i * n + j] * v[j * r + b];
            ref[q] = acc;
        }
        sresid_mask *mask = NULL;
        ck_assert_ok(sresid_mask_create(ns, 0, &mask));
        for (uint64_t q = 0; q < ns; q += 3)
            ck_assert_ok(sresid_mask_set(mask, q, 1));
        float *out = malloc(ns * sizeof *out);
        for (uint64_t q = 0; q < ns; q++)
            out[q] = -7.0f;
        ck_assert_ok(sresid_amp_project(amp, 0, g, n, out, mask, 0));
        for (uint64_t q = 0; q < ns; q++) {
            if (q % 3)
                ck_assert(out[q] == -7.0f);
            else
                ck_assert_msg(fabs(out[q] - ref[q]) <= 1e-5 * (1 + fabs(ref[q])), "%llu",
                              (unsigned long long)q);
        }
        ck_assert_ok(sresid_amp_project(amp, 0, g, n, out, mask, SRESID_PROJECT_ACCUMULATE));
        for (uint64_t q = 0; q < ns; q += 3)
            ck_assert(fabs(out[q] - 2 * ref[q]) <= 1e-5 * (1 + fabs(ref[q])));
        for (uint64_t q = 0; q < ns; q++)
            out[q] = 1.0f;
        ck_assert_ok(sresid_amp_project(amp, 0, g, n, out, NULL, SRESID_PROJECT_ABS));
        for (uint64_t q = 0; q < ns; q++)
            ck_assert(fabs(out[q] - (1 + fabs(ref[q]))) <= 1e-5 * (1 + fabs(ref[q])));
        /* wrong mask size */
        sresid_mask *small = NULL;
        ck_assert_ok(sresid_mask_create(ns - 1, 1, &small));
        ck_assert_status(sresid_amp_project(amp, 0, g, n, out, small, 0), SRESID_ERR_SHAPE);
        sresid_mask_free(small);
        sresid_mask_free(mask);
        free(out);
        free(ref);
        free(w);
        free(g);
        sresid_amp_free(amp);
        sresid_model_free(model);
    }
}
END_TEST

/* ---- fit and the plain gradient descent ---- */

/* W_trained = W0 + U (S* - S0) V^T built in double from the basis */
static float *trained_from(const sresid_amp *amp, const float *w0, const float *target)
{
    sresid_amp_tensor_info ti = {.size = sizeof ti};
    ck_assert_ok(sresid_amp_tensor(amp, 0, &ti));
    uint64_t ns = sresid_amp_score_count(amp);
    float *keep = malloc(ns * sizeof *keep), *s = sresid_amp_scores((sresid_amp *)amp);
    memcpy(keep, s, ns * sizeof *s);
    memcpy(s, target, ns * sizeof *s);
    double *d = dense_weights(amp, 0, w0);
    memcpy(s, keep, ns * sizeof *s);
    float *out = malloc((size_t)(ti.rows * ti.cols) * sizeof *out);
    for (int64_t i = 0; i < ti.rows * ti.cols; i++)
        out[i] = (float)d[i];
    free(d);
    free(keep);
    return out;
}

START_TEST(t_fit)
{
    for (int layout = 0; layout < 2; layout++) {
        int64_t m = 16, n = 12;
        float *w = rand_matrix(m, n, 91);
        sresid_model *model = one_matrix(w, m, n);
        sresid_amp *amp = make_amp(model, layout, 0);
        uint64_t ns = sresid_amp_score_count(amp);
        float *star = malloc(ns * sizeof *star);
        uint64_t rs = 92;
        for (uint64_t q = 0; q < ns; q++)
            star[q] = sresid_amp_initial_scores(amp)[q] + (float)tu_rand_normal(&rs);
        float *wt = trained_from(amp, w, star);
        sresid_model *trained = one_matrix(wt, m, n);
        ck_assert_ok(sresid_amp_fit(amp, trained, NULL));
        for (uint64_t q = 0; q < ns; q++)
            ck_assert_msg(fabsf(sresid_amp_scores(amp)[q] - star[q]) < 1e-4f, "%llu: %g vs %g",
                          (unsigned long long)q, sresid_amp_scores(amp)[q], star[q]);
        /* with a mask: s* on it, s0 elsewhere */
        sresid_mask *mask = NULL;
        ck_assert_ok(sresid_mask_create(ns, 0, &mask));
        for (uint64_t q = 1; q < ns; q += 2)
            ck_assert_ok(sresid_mask_set(mask, q, 1));
        ck_assert_ok(sresid_amp_fit(amp, trained, mask));
        for (uint64_t q = 0; q < ns; q++) {
            if (q % 2)
                ck_assert(fabsf(sresid_amp_scores(amp)[q] - star[q]) < 1e-4f);
            else
                ck_assert(sresid_amp_scores(amp)[q] == sresid_amp_initial_scores(amp)[q]);
        }
        sresid_mask_free(mask);
        /* another shape, or a missing tensor: MISMATCH, scores unchanged */
        float *before = malloc(ns * sizeof *before);
        memcpy(before, sresid_amp_scores(amp), ns * sizeof *before);
        sresid_model *other = one_matrix(wt, n, m);
        ck_assert_status(sresid_amp_fit(amp, other, NULL), SRESID_ERR_MISMATCH);
        ck_assert_ptr_nonnull(strstr(sresid_last_error(), ATTN));
        sresid_model_free(other);
        const char *names[] = {MLP};
        const float *data[] = {wt};
        const int64_t shapes[][2] = {{m, n}};
        other = model_of(names, data, shapes, 1);
        ck_assert_status(sresid_amp_fit(amp, other, NULL), SRESID_ERR_MISMATCH);
        ck_assert(memcmp(before, sresid_amp_scores(amp), ns * sizeof *before) == 0);
        sresid_model_free(other);
        free(before);
        free(star);
        free(wt);
        free(w);
        sresid_amp_free(amp);
        sresid_model_free(trained);
        sresid_model_free(model);
    }
}
END_TEST

START_TEST(t_sgd)
{
    int64_t m = 16, n = 10;
    float *w = rand_matrix(m, n, 101);
    sresid_model *model = one_matrix(w, m, n);
    sresid_amp *amp = make_amp(model, SRESID_AMP_DIAG, 0);
    uint64_t ns = sresid_amp_score_count(amp);
    float *star = malloc(ns * sizeof *star), *g = malloc(ns * sizeof *g);
    uint64_t rs = 102;
    for (uint64_t q = 0; q < ns; q++)
        star[q] = (float)(1 + 3 * tu_rand_uniform(&rs));
    float *target = trained_from(amp, w, star);
    float *wt = malloc((size_t)(m * n) * sizeof *wt);
    float *s = sresid_amp_scores(amp);
    for (int step = 0; step < 60; step++) {
        ck_assert_ok(sresid_amp_materialize(amp, 0, wt, n, 0));
        for (int64_t i = 0; i < m * n; i++)
            wt[i] -= target[i];
        ck_assert_ok(sresid_amp_project(amp, 0, wt, n, g, NULL, 0));
        for (uint64_t q = 0; q < ns; q++)
            s[q] -= 0.5f * g[q];
    }
    for (uint64_t q = 0; q < ns; q++)
        ck_assert_msg(fabsf(s[q] - star[q]) < 1e-4f * (1 + star[q]), "%llu: %g vs %g",
                      (unsigned long long)q, s[q], star[q]);
    free(star);
    free(g);
    free(target);
    free(wt);
    free(w);
    sresid_amp_free(amp);
    sresid_model_free(model);
}
END_TEST

/* ---- selection, accessors, threads ---- */

START_TEST(t_selection)
{
    sresid_model *m = NULL;
    ck_assert_ok(sresid_model_create(NULL, &m));
    float *a = rand_matrix(12, 8, 111), *b = rand_matrix(6, 10, 112), *c = rand_matrix(4, 30, 113);
    int64_t sa[2] = {12, 8}, sb[2] = {6, 10}, s3[3] = {4, 5, 6}, s1[1] = {8}, se[2] = {12, 8};
    ck_assert_ok(sresid_model_add_tensor(m, "model.embed_tokens.weight", SRESID_DTYPE_F32, 2, se,
                                         a, 12 * 8 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, ATTN, SRESID_DTYPE_F32, 2, sa, a, 12 * 8 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "model.layers.0.input_layernorm.weight",
                                         SRESID_DTYPE_F32, 1, s1, a, 8 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, MLP, SRESID_DTYPE_F32, 2, sb, b, 6 * 10 * 4, 0));
    ck_assert_ok(sresid_model_add_tensor(m, "model.layers.1.mlp.conv.weight", SRESID_DTYPE_F32, 3,
                                         s3, c, 120 * 4, 0));
    int32_t ints[96] = {0};
    ck_assert_ok(sresid_model_add_tensor(m, "model.layers.1.self_attn.idx", SRESID_DTYPE_I32, 2,
                                         sa, ints, sizeof ints, 0));
    sresid_amp *amp = NULL;
    sresid_amp_opts o = {.size = sizeof o};
    ck_assert_ok(sresid_amp_create(m, &o, &amp));
    /* attention + mlp float matrices: ATTN (12x8), MLP (6x10), conv (4 x 30) */
    ck_assert_uint_eq(sresid_amp_count(amp), 3);
    ck_assert_int_eq(sresid_amp_layout(amp), SRESID_AMP_DIAG);
    const int64_t want[3][4] = {{1, 12, 8, 8}, {3, 6, 10, 6}, {4, 4, 30, 4}};
    const uint64_t *off = sresid_amp_offsets(amp);
    ck_assert_uint_eq(off[0], 0);
    for (size_t t = 0; t < 3; t++) {
        sresid_amp_tensor_info ti = {.size = sizeof ti};
        ck_assert_ok(sresid_amp_tensor(amp, t, &ti));
        ck_assert_uint_eq(ti.index, (size_t)want[t][0]);
        ck_assert_int_eq(ti.rows, want[t][1]);
        ck_assert_int_eq(ti.cols, want[t][2]);
        ck_assert_int_eq(ti.rank, want[t][3]);
        ck_assert_uint_eq(ti.offset, off[t]);
        ck_assert_uint_eq(off[t + 1], off[t] + (uint64_t)want[t][3]);
    }
    ck_assert_uint_eq(sresid_amp_score_count(amp), 18);
    sresid_amp_free(amp);
    amp = NULL;
    /* kinds, pattern, min_dim, rank cap, CORE counts */
    o.kinds = 1u << SRESID_KIND_EMBEDDING;
    ck_assert_ok(sresid_amp_create(m, &o, &amp));
    ck_assert_uint_eq(sresid_amp_count(amp), 1);
    sresid_amp_free(amp);
    amp = NULL;
    o.kinds = 0;
    o.pattern = "*MLP*";
    o.min_dim = 5;
    o.rank = 100;
    o.layout = SRESID_AMP_CORE;
    ck_assert_ok(sresid_amp_create(m, &o, &amp));
    ck_assert_uint_eq(sresid_amp_count(amp), 1); /* conv has min(m, n) = 4 */
    ck_assert_uint_eq(sresid_amp_score_count(amp), 36);
    sresid_amp_free(amp);
    amp = NULL;
    o.pattern = "nothing*";
    ck_assert_status(sresid_amp_create(m, &o, &amp), SRESID_ERR_NOT_FOUND);
    ck_assert_ptr_null(amp);
    sresid_model_free(m);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(t_threads)
{
    sresid_model *m = NULL;
    ck_assert_ok(sresid_model_create(NULL, &m));
    float *data[5];
    for (int i = 0; i < 5; i++) {
        char name[80];
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", i);
        int64_t sh[2] = {20 + 3 * i, 17 - i};
        data[i] = rand_matrix(sh[0], sh[1], 120 + (uint64_t)i);
        ck_assert_ok(sresid_model_add_tensor(m, name, SRESID_DTYPE_F32, 2, sh, data[i],
                                             (size_t)(sh[0] * sh[1] * 4), 0));
    }
    sresid_amp *a1 = NULL, *a2 = NULL;
    sresid_amp_opts o = {.size = sizeof o, .threads = 1};
    ck_assert_ok(sresid_amp_create(m, &o, &a1));
    o.threads = 2;
    ck_assert_ok(sresid_amp_create(m, &o, &a2));
    ck_assert_uint_eq(sresid_amp_count(a1), 5);
    ck_assert(memcmp(sresid_amp_initial_scores(a1), sresid_amp_initial_scores(a2),
                     sresid_amp_score_count(a1) * sizeof(float)) == 0);
    for (size_t t = 0; t < 5; t++) {
        sresid_amp_tensor_info ti = {.size = sizeof ti};
        ck_assert_ok(sresid_amp_tensor(a1, t, &ti));
        const float *u1, *v1, *u2, *v2;
        ck_assert_ok(sresid_amp_basis(a1, t, &u1, &v1));
        ck_assert_ok(sresid_amp_basis(a2, t, &u2, &v2));
        ck_assert(memcmp(u1, u2, (size_t)(ti.rows * ti.rank) * sizeof *u1) == 0);
        ck_assert(memcmp(v1, v2, (size_t)(ti.cols * ti.rank) * sizeof *v1) == 0);
    }
    sresid_amp_free(a1);
    sresid_amp_free(a2);
    sresid_model_free(m);
    for (int i = 0; i < 5; i++)
        free(data[i]);
}
END_TEST

/* Concurrent materialize and project calls on one const amp (they share its
 * scratch buffers) give exactly the results of the same calls made one
 * after the other. */
typedef struct conc_job {
    const sresid_amp *amp;
    size_t t;
    int64_t m, n;
    const float *g;
    float *w;     /* reps * m * n */
    float *proj;  /* reps * score_count */
    int reps;
    sresid_status st;
} conc_job;

static void *conc_run(void *arg)
{
    conc_job *j = arg;
    uint64_t ns = sresid_amp_score_count(j->amp);
    for (int r = 0; r < j->reps && !j->st; r++) {
        j->st = sresid_amp_materialize(j->amp, j->t, j->w + (size_t)r * j->m * j->n, j->n, 0);
        if (!j->st)
            j->st = sresid_amp_project(j->amp, j->t, j->g, j->n, j->proj + (size_t)r * ns, NULL,
                                       0);
    }
    return NULL;
}

START_TEST(t_concurrent_calls)
{
    const char *names[] = {ATTN, MLP};
    const int64_t shapes[][2] = {{48, 32}, {32, 56}};
    float *w0a = rand_matrix(48, 32, 301), *w0b = rand_matrix(32, 56, 302);
    const float *data[] = {w0a, w0b};
    sresid_model *m = model_of(names, data, shapes, 2);
    for (int32_t layout = SRESID_AMP_DIAG; layout <= SRESID_AMP_CORE; layout++) {
        sresid_amp *amp = make_amp(m, layout, 0);
        perturb(amp, 0.5, 0.3, 303);
        uint64_t ns = sresid_amp_score_count(amp);
        enum { REPS = 8 };
        conc_job jobs[2], seq[2];
        float *g[2];
        for (int k = 0; k < 2; k++) {
            int64_t mm = shapes[k][0], nn = shapes[k][1];
            g[k] = rand_matrix(mm, nn, 310 + (uint64_t)k);
            for (int pass = 0; pass < 2; pass++) {
                conc_job *j = pass ? &seq[k] : &jobs[k];
                *j = (conc_job){.amp = amp, .t = (size_t)k, .m = mm, .n = nn, .g = g[k],
                                .reps = REPS};
                j->w = calloc((size_t)REPS * (size_t)(mm * nn), sizeof(float));
                j->proj = calloc((size_t)REPS * ns, sizeof(float));
                ck_assert(j->w && j->proj);
            }
        }
        for (int k = 0; k < 2; k++)
            conc_run(&seq[k]);
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(pthread_create(&th[k], NULL, conc_run, &jobs[k]), 0);
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        for (int k = 0; k < 2; k++) {
            ck_assert_ok(jobs[k].st);
            ck_assert_ok(seq[k].st);
            size_t nw = (size_t)REPS * (size_t)(jobs[k].m * jobs[k].n);
            ck_assert(memcmp(jobs[k].w, seq[k].w, nw * sizeof(float)) == 0);
            ck_assert(memcmp(jobs[k].proj, seq[k].proj, (size_t)REPS * ns * sizeof(float)) == 0);
            /* and the weights are not W0: the scores did change */
            ck_assert(memcmp(jobs[k].w, data[k], (size_t)(jobs[k].m * jobs[k].n) * 4) != 0);
            free(jobs[k].w);
            free(jobs[k].proj);
            free(seq[k].w);
            free(seq[k].proj);
            free(g[k]);
        }
        sresid_amp_free(amp);
    }
    sresid_model_free(m);
    free(w0a);
    free(w0b);
}
END_TEST

/* ---- export ---- */

/* float -> bfloat16, round to nearest even, by comparing the two
 * neighbours in double */
static uint16_t ref_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, 4);
    memcpy(&fhi, &hi, 4);
    double dl = fabs((double)f - flo), dh = fabs((double)fhi - f);
    if (dl < dh || (dl == dh && ((lo >> 16) & 1) == 0))
        return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

START_TEST(t_export)
{
    int64_t m = 10, n = 8;
    float *w = rand_matrix(m, n, 131);
    /* the same values stored as F32, F16, BF16, F64 */
    uint16_t h16[80], b16[80];
    double d64[80];
    for (int i = 0; i < 80; i++) {
        _Float16 h = (_Float16)w[i];
        memcpy(&h16[i], &h, 2);
        b16[i] = ref_bf16(w[i]);
        d64[i] = w[i];
    }
    int64_t sh[2] = {m, n}, s1[1] = {5};
    float norm[5] = {1, 2, 3, 4, 5};
    sresid_model *base = NULL;
    ck_assert_ok(sresid_model_create(NULL, &base));
    ck_assert_ok(sresid_model_set_metadata(base, "format", "pt"));
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.attn.a", SRESID_DTYPE_F32, 2, sh, w,
                                         sizeof(float) * 80, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.norm", SRESID_DTYPE_F32, 1, s1, norm,
                                         sizeof norm, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.attn.b", SRESID_DTYPE_F16, 2, sh, h16,
                                         sizeof h16, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.attn.c", SRESID_DTYPE_BF16, 2, sh, b16,
                                         sizeof b16, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.attn.d", SRESID_DTYPE_F64, 2, sh, d64,
                                         sizeof d64, 0));
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.other", SRESID_DTYPE_F32, 2, sh, w,
                                         sizeof(float) * 80, 0));
    sresid_amp *amp = make_amp(base, SRESID_AMP_DIAG, 0);
    ck_assert_uint_eq(sresid_amp_count(amp), 4);
    perturb(amp, 0.5, 0.7, 132);
    sresid_model *ex = NULL;
    ck_assert_ok(sresid_amp_export(amp, &ex));
    ck_assert_uint_eq(sresid_model_tensor_count(ex), 6);
    const char *val;
    ck_assert_ok(sresid_model_metadata_get(ex, "format", &val));
    ck_assert_str_eq(val, "pt");
    float wt[80];
    for (size_t i = 0, t = 0; i < 6; i++) {
        sresid_tensor_info bi = {.size = sizeof bi}, ei = {.size = sizeof ei};
        ck_assert_ok(sresid_model_tensor_info(base, i, &bi));
        ck_assert_ok(sresid_model_tensor_info(ex, i, &ei));
        ck_assert_str_eq(bi.name, ei.name);
        ck_assert_int_eq(bi.dtype, ei.dtype);
        ck_assert_uint_eq(bi.nbytes, ei.nbytes);
        if (i == 1 || i == 5) { /* not selected: byte for byte */
            ck_assert(memcmp(bi.data, ei.data, bi.nbytes) == 0);
            continue;
        }
        ck_assert_ok(sresid_amp_materialize(amp, t++, wt, n, 0));
        const unsigned char *e = ei.data;
        for (int k = 0; k < 80; k++) {
            if (ei.dtype == SRESID_DTYPE_F32) {
                ck_assert(memcmp(e + 4 * k, &wt[k], 4) == 0);
            } else if (ei.dtype == SRESID_DTYPE_F16) {
                _Float16 h = (_Float16)wt[k];
                ck_assert(memcmp(e + 2 * k, &h, 2) == 0);
            } else if (ei.dtype == SRESID_DTYPE_BF16) {
                uint16_t b = ref_bf16(wt[k]);
                ck_assert(memcmp(e + 2 * k, &b, 2) == 0);
            } else {
                double d = wt[k];
                ck_assert(memcmp(e + 8 * k, &d, 8) == 0);
            }
        }
    }
    sresid_model_free(ex);
    sresid_amp_free(amp);
    /* an F8 tensor selected: no rounding back */
    uint8_t f8[80] = {0x38};
    ck_assert_ok(sresid_model_add_tensor(base, "layers.0.attn.e", SRESID_DTYPE_F8_E4M3, 2, sh, f8,
                                         sizeof f8, 0));
    sresid_amp_opts o = {.size = sizeof o, .pattern = "*.e", .min_dim = 1};
    ck_assert_ok(sresid_amp_create(base, &o, &amp));
    ex = NULL;
    ck_assert_status(sresid_amp_export(amp, &ex), SRESID_ERR_UNSUPPORTED);
    ck_assert_ptr_null(ex);
    sresid_amp_free(amp);
    sresid_model_free(base);
    free(w);
}
END_TEST

/* ---- save and load ---- */

/* Copy a safetensors file, leaving out tensor skip, putting a NaN into
 * tensor nan_in, and setting metadata key to value (all optional). */
static void rewrite(const char *src, const char *dst, const char *skip, const char *nan_in,
                    const char *key, const char *value)
{
    sresid_model *in = NULL, *out = NULL;
    ck_assert_ok(sresid_model_open(src, NULL, &in));
    ck_assert_ok(sresid_model_create(NULL, &out));
    for (size_t i = 0; i < sresid_model_metadata_count(in); i++) {
        const char *k, *v;
        ck_assert_ok(sresid_model_metadata_at(in, i, &k, &v));
        ck_assert_ok(sresid_model_set_metadata(out, k, v));
    }
    if (key)
        ck_assert_ok(sresid_model_set_metadata(out, key, value));
    for (size_t i = 0; i < sresid_model_tensor_count(in); i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        ck_assert_ok(sresid_model_tensor_info(in, i, &ti));
        if (skip && strcmp(ti.name, skip) == 0)
            continue;
        unsigned char *buf = malloc(ti.nbytes + 4);
        memcpy(buf, ti.data, ti.nbytes);
        if (nan_in && strcmp(ti.name, nan_in) == 0) {
            float nan = NAN;
            memcpy(buf, &nan, 4);
        }
        ck_assert_ok(sresid_model_add_tensor(out, ti.name, ti.dtype, ti.ndim, ti.shape, buf,
                                             ti.nbytes, 0));
        free(buf);
    }
    ck_assert_ok(sresid_model_save(out, dst, NULL));
    sresid_model_free(in);
    sresid_model_free(out);
}

START_TEST(t_save_load)
{
    const char *names[] = {ATTN, MLP};
    float *a = rand_matrix(14, 9, 141), *b = rand_matrix(7, 12, 142);
    const float *data[] = {a, b};
    const int64_t shapes[][2] = {{14, 9}, {7, 12}};
    sresid_model *base = model_of(names, data, shapes, 2);
    for (int layout = 0; layout < 2; layout++) {
        sresid_amp *amp = make_amp(base, layout, layout ? 4 : 0);
        perturb(amp, 0.3, 0.5, 143);
        uint64_t ns = sresid_amp_score_count(amp);
        sresid_mask *mask = NULL;
        ck_assert_ok(sresid_mask_create(ns, 0, &mask));
        for (uint64_t q = 0; q < ns; q += 3)
            ck_assert_ok(sresid_mask_set(mask, q, 1));
        const char *path = tu_path("amp.safetensors");
        ck_assert_ok(sresid_amp_save(amp, mask, path, NULL));
        sresid_amp *back = NULL;
        sresid_mask *mb = NULL;
        ck_assert_ok(sresid_amp_load(base, path, &back, &mb));
        ck_assert_int_eq(sresid_amp_layout(back), layout);
        ck_assert_uint_eq(sresid_amp_score_count(back), ns);
        ck_assert_ptr_nonnull(mb);
        for (uint64_t q = 0; q < ns; q++) {
            int32_t x, y;
            ck_assert_ok(sresid_mask_get(mask, q, &x));
            ck_assert_ok(sresid_mask_get(mb, q, &y));
            ck_assert_int_eq(x, y);
        }
        for (size_t t = 0; t < 2; t++) {
            float w1[126], w2[126];
            ck_assert_ok(sresid_amp_materialize(amp, t, w1, shapes[t][1], 0));
            ck_assert_ok(sresid_amp_materialize(back, t, w2, shapes[t][1], 0));
            ck_assert(memcmp(w1, w2, (size_t)(shapes[t][0] * shapes[t][1]) * 4) == 0);
        }
        sresid_amp_free(back);
        sresid_mask_free(mb);
        /* without a mask: *mask_out is NULL */
        ck_assert_ok(sresid_amp_save(amp, NULL, path, NULL));
        mb = (sresid_mask *)1;
        back = NULL;
        ck_assert_ok(sresid_amp_load(base, path, &back, &mb));
        ck_assert_ptr_null(mb);
        sresid_amp_free(back);
        sresid_mask_free(mask);
        sresid_amp_free(amp);
    }
    /* a base with one byte changed */
    const char *path = tu_path("amp.safetensors");
    float *a2 = malloc(14 * 9 * sizeof *a2);
    memcpy(a2, a, 14 * 9 * sizeof *a2);
    ((unsigned char *)a2)[17] ^= 1;
    const float *data2[] = {a2, b};
    sresid_model *changed = model_of(names, data2, shapes, 2);
    sresid_amp *back = NULL;
    ck_assert_status(sresid_amp_load(changed, path, &back, NULL), SRESID_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), ATTN));
    ck_assert_ptr_null(back);
    sresid_model_free(changed);
    free(a2);
    /* malformed files */
    const char *bad = tu_path("bad.safetensors");
    size_t len;
    unsigned char *bytes = tu_read_file(path, &len);
    ck_assert_int_eq(tu_write_file(bad, bytes, len - 9), 0);
    ck_assert_int_ne(sresid_amp_load(base, bad, &back, NULL), SRESID_OK);
    free(bytes);
    rewrite(path, bad, NULL, NULL, "format", "sparseresid.mask");
    ck_assert_status(sresid_amp_load(base, bad, &back, NULL), SRESID_ERR_METADATA);
    rewrite(path, bad, MLP ".v", NULL, NULL, NULL);
    ck_assert_status(sresid_amp_load(base, bad, &back, NULL), SRESID_ERR_METADATA);
    rewrite(path, bad, NULL, "scores", NULL, NULL);
    ck_assert_status(sresid_amp_load(base, bad, &back, NULL), SRESID_ERR_NONFINITE);
    rewrite(path, bad, NULL, NULL, "tensors", "[{\"name\": 3}]");
    ck_assert_status(sresid_amp_load(base, bad, &back, NULL), SRESID_ERR_METADATA);
    rewrite(path, bad, NULL, NULL, "layout", "diagonal");
    ck_assert_status(sresid_amp_load(base, bad, &back, NULL), SRESID_ERR_METADATA);
    rewrite(path, bad, NULL, NULL, "score_count", "5");
    ck_assert_status(sresid_amp_load(base, bad, &back, NULL), SRESID_ERR_METADATA);
    ck_assert_ptr_null(back);
    /* another base: a tensor missing */
    sresid_model *half = model_of(names, data, shapes, 1);
    ck_assert_status(sresid_amp_load(half, path, &back, NULL), SRESID_ERR_MISMATCH);
    sresid_model_free(half);
    sresid_model_free(base);
    free(a);
    free(b);
}
END_TEST

/* ---- bad input ---- */

START_TEST(t_bad_args)
{
    float *w = rand_matrix(8, 6, 151);
    sresid_model *model = one_matrix(w, 8, 6);
    sresid_amp *amp = NULL;
    sresid_amp_opts o = {.size = sizeof o};
    ck_assert_status(sresid_amp_create(NULL, &o, &amp), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_create(model, &o, NULL), SRESID_ERR_INVALID_ARG);
    o.size = 4;
    ck_assert_status(sresid_amp_create(model, &o, &amp), SRESID_ERR_INVALID_ARG);
    struct {
        sresid_amp_opts o;
        uint64_t extra;
    } big = {.o = {.size = sizeof big}, .extra = 1};
    ck_assert_status(sresid_amp_create(model, &big.o, &amp), SRESID_ERR_INVALID_ARG);
    big.extra = 0;
    ck_assert_ok(sresid_amp_create(model, &big.o, &amp));
    sresid_amp_free(amp);
    amp = NULL;
    const sresid_amp_opts bads[] = {
        {.size = sizeof o, .layout = 2}, {.size = sizeof o, .rank = -1},
        {.size = sizeof o, .threads = -1}, {.size = sizeof o, .min_dim = -3},
        {.size = sizeof o, .kinds = 1u << 9}};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++)
        ck_assert_status(sresid_amp_create(model, &bads[i], &amp), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(amp);
    ck_assert_ok(sresid_amp_create(model, NULL, &amp));

    /* NULL handles */
    ck_assert_uint_eq(sresid_amp_count(NULL), 0);
    ck_assert_uint_eq(sresid_amp_score_count(NULL), 0);
    ck_assert_int_eq(sresid_amp_layout(NULL), -1);
    ck_assert_ptr_null(sresid_amp_scores(NULL));
    ck_assert_ptr_null(sresid_amp_initial_scores(NULL));
    ck_assert_ptr_null(sresid_amp_offsets(NULL));
    sresid_amp_free(NULL);
    ck_assert_status(sresid_amp_reset(NULL), SRESID_ERR_INVALID_ARG);

    sresid_amp_tensor_info ti = {.size = sizeof ti};
    ck_assert_status(sresid_amp_tensor(amp, 1, &ti), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_tensor(amp, 0, NULL), SRESID_ERR_INVALID_ARG);
    ti.size = 8;
    ck_assert_status(sresid_amp_tensor(amp, 0, &ti), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_basis(amp, 1, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_basis(NULL, 0, NULL, NULL), SRESID_ERR_INVALID_ARG);

    float dst[64], out[8];
    ck_assert_status(sresid_amp_materialize(amp, 1, dst, 6, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_materialize(amp, 0, NULL, 6, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_materialize(amp, 0, dst, 5, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_materialize(amp, 0, dst, 6, 0x4), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_materialize(NULL, 0, dst, 6, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_project(amp, 0, w, 5, out, NULL, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_project(amp, 0, NULL, 6, out, NULL, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_project(amp, 0, w, 6, NULL, NULL, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_project(amp, 2, w, 6, out, NULL, 0), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_project(amp, 0, w, 6, out, NULL, 0x8), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_fit(amp, NULL, NULL), SRESID_ERR_INVALID_ARG);
    sresid_model *ex = NULL;
    ck_assert_status(sresid_amp_export(NULL, &ex), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_export(amp, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_save(amp, NULL, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_save(NULL, NULL, tu_path("x"), NULL), SRESID_ERR_INVALID_ARG);
    sresid_save_opts so = {.size = 2};
    ck_assert_status(sresid_amp_save(amp, NULL, tu_path("x"), &so), SRESID_ERR_INVALID_ARG);
    sresid_amp *back = NULL;
    ck_assert_status(sresid_amp_load(NULL, tu_path("x"), &back, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_load(model, NULL, &back, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_load(model, tu_path("x"), NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_amp_load(model, tu_path("does-not-exist"), &back, NULL),
                     SRESID_ERR_IO);
    ck_assert_ptr_null(back);
    sresid_amp_free(amp);
    sresid_model_free(model);
    free(w);
}
END_TEST

START_TEST(t_nonfinite)
{
    float *w = rand_matrix(8, 6, 161);
    sresid_model *model = one_matrix(w, 8, 6);
    sresid_amp *amp = make_amp(model, SRESID_AMP_DIAG, 0);
    float dst[48], keep[48], out[6], g[48];
    /* NaN score: dst untouched */
    for (int i = 0; i < 48; i++)
        dst[i] = keep[i] = (float)i;
    sresid_amp_scores(amp)[2] = NAN;
    ck_assert_status(sresid_amp_materialize(amp, 0, dst, 6, 0), SRESID_ERR_NONFINITE);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), ATTN));
    ck_assert(memcmp(dst, keep, sizeof dst) == 0);
    ck_assert_status(sresid_amp_save(amp, NULL, tu_path("nan.safetensors"), NULL),
                     SRESID_ERR_NONFINITE);
    sresid_amp_scores(amp)[2] = INFINITY;
    ck_assert_status(sresid_amp_materialize(amp, 0, dst, 6, SRESID_MATERIALIZE_ADD),
                     SRESID_ERR_NONFINITE);
    ck_assert(memcmp(dst, keep, sizeof dst) == 0);
    sresid_model *ex = NULL;
    ck_assert_status(sresid_amp_export(amp, &ex), SRESID_ERR_NONFINITE);
    ck_assert_ptr_null(ex);
    ck_assert_ok(sresid_amp_reset(amp));
    /* NaN gradient: out untouched */
    memcpy(g, w, sizeof g);
    g[40] = NAN;
    for (int i = 0; i < 6; i++)
        out[i] = 3.0f;
    ck_assert_status(sresid_amp_project(amp, 0, g, 6, out, NULL, 0), SRESID_ERR_NONFINITE);
    for (int i = 0; i < 6; i++)
        ck_assert(out[i] == 3.0f);
    sresid_amp_free(amp);
    sresid_model_free(model);
    /* NaN or Inf in W0 */
    for (int k = 0; k < 2; k++) {
        w[13] = k ? INFINITY : NAN;
        model = one_matrix(w, 8, 6);
        amp = NULL;
        ck_assert_status(sresid_amp_create(model, NULL, &amp), SRESID_ERR_NONFINITE);
        ck_assert_ptr_nonnull(strstr(sresid_last_error(), ATTN));
        ck_assert_ptr_null(amp);
        sresid_model_free(model);
    }
    free(w);
}
END_TEST

Suite *suite_amp(void)
{
    Suite *s = suite_create("amp");
    TCase *tc = tcase_create("amp");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t_basis_known);
    tcase_add_test(tc, t_basis_overflow);
    tcase_add_test(tc, t_basis_jacobi);
    tcase_add_test(tc, t_signs);
    tcase_add_test(tc, t_adjoint);
    tcase_add_test(tc, t_gradient_fd);
    tcase_add_test(tc, t_sparse_dense);
    tcase_add_test(tc, t_add_and_stride);
    tcase_add_test(tc, t_project_mask);
    tcase_add_test(tc, t_fit);
    tcase_add_test(tc, t_sgd);
    tcase_add_test(tc, t_selection);
    tcase_add_test(tc, t_threads);
    tcase_add_test(tc, t_concurrent_calls);
    tcase_add_test(tc, t_export);
    tcase_add_test(tc, t_save_load);
    tcase_add_test(tc, t_bad_args);
    tcase_add_test(tc, t_nonfinite);
    suite_add_tcase(s, tc);
    return s;
}
