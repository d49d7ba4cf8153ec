/* The report over small in-memory base/trained models with Llama-style
 * names, checked against figures computed here independently: two-pass
 * long-double moments of concatenations, histograms by the bin-edge
 * definition, Pearson r directly. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "util/util.h"
#include "testutil.h"

#define D 16      /* model width */
#define LAYERS 3
#define MAXT 32

typedef struct tspec {
    char name[80];
    int64_t shape[2];
    int32_t ndim;
    int32_t kind;
    int32_t layer;
} tspec;

typedef struct fixture {
    tspec spec[MAXT];
    size_t n;
    float *base[MAXT], *trained[MAXT], *resid[MAXT]; /* resid: trained - base in float */
    sresid_model *mb, *mt;
    sresid_residual *res;
} fixture;

static size_t numel_of(const tspec *s)
{
    size_t n = 1;
    for (int32_t d = 0; d < s->ndim; d++)
        n *= (size_t)s->shape[d];
    return n;
}

static void add_spec(fixture *f, const char *name, int32_t ndim, int64_t r, int64_t c,
                     int32_t kind, int32_t layer)
{
    tspec *s = &f->spec[f->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    s->shape[0] = r;
    s->shape[1] = c;
    s->kind = kind;
    s->layer = layer;
}

static void fixture_build(fixture *f, uint64_t seed);

/* Heavy-tailed attention (sparse spikes), Gaussian MLP, small norms; the
 * q_proj residual of layer L+1 is 0.6 x layer L's plus noise. */
static void fixture_make(fixture *f, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    char nm[80];
    add_spec(f, "model.embed_tokens.weight", 2, 32, D, SRESID_KIND_EMBEDDING, -1);
    for (int l = 0; l < LAYERS; l++) {
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        add_spec(f, nm, 1, D, 0, SRESID_KIND_NORM, l);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
        add_spec(f, nm, 2, D, D, SRESID_KIND_ATTENTION, l);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.weight", l);
        add_spec(f, nm, 2, D / 2, D, SRESID_KIND_ATTENTION, l);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.up_proj.weight", l);
        add_spec(f, nm, 2, 2 * D, D, SRESID_KIND_MLP, l);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", l);
        add_spec(f, nm, 2, D, 2 * D, SRESID_KIND_MLP, l);
    }
    add_spec(f, "model.norm.weight", 1, D, 0, SRESID_KIND_NORM, -1);
    add_spec(f, "lm_head.weight", 2, 32, D, SRESID_KIND_OTHER, -1);
    fixture_build(f, seed);
}

/* The models and residual of f's specs; each q_proj residual is 0.6 x the
 * previous q_proj's (in spec order) plus noise. */
static void fixture_build(fixture *f, uint64_t seed)
{
    ck_assert_ok(sresid_model_create(NULL, &f->mb));
    ck_assert_ok(sresid_model_create(NULL, &f->mt));
    float *prev_q = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const tspec *s = &f->spec[i];
        size_t n = numel_of(s);
        float *b = malloc(n * sizeof *b), *t = malloc(n * sizeof *t), *r = malloc(n * sizeof *r);
        bool q = strstr(s->name, "q_proj") != NULL;
        for (size_t k = 0; k < n; k++) {
            double d;
            switch (s->kind) {
            case SRESID_KIND_ATTENTION:
                d = tu_rand_uniform(&seed) < 0.05 ? tu_rand_normal(&seed)
                                                  : 0.01 * tu_rand_normal(&seed);
                if (q && prev_q)
                    d += 0.6 * prev_q[k];
                break;
            case SRESID_KIND_MLP: d = 0.1 * tu_rand_normal(&seed); break;
            case SRESID_KIND_NORM: d = 0.01 * tu_rand_normal(&seed); break;
            case SRESID_KIND_EMBEDDING: d = 0.05 * tu_rand_normal(&seed); break;
            default: d = tu_rand_uniform(&seed) - 0.5; break;
            }
            b[k] = (float)tu_rand_normal(&seed);
            t[k] = (float)(b[k] + d);
            r[k] = t[k] - b[k];
        }
        if (q)
            prev_q = r;
        f->base[i] = b;
        f->trained[i] = t;
        f->resid[i] = r;
        ck_assert_ok(sresid_model_add_tensor(f->mb, s->name, SRESID_DTYPE_F32, s->ndim, s->shape,
                                             b, n * 4, SRESID_ADD_BORROW));
        ck_assert_ok(sresid_model_add_tensor(f->mt, s->name, SRESID_DTYPE_F32, s->ndim, s->shape,
                                             t, n * 4, SRESID_ADD_BORROW));
    }
    ck_assert_ok(sresid_residual_create(f->mb, f->mt, NULL, &f->res));
}

static void fixture_free(fixture *f)
{
    sresid_residual_free(f->res);
    sresid_model_free(f->mb);
    sresid_model_free(f->mt);
    for (size_t i = 0; i < f->n; i++) {
        free(f->base[i]);
        free(f->trained[i]);
        free(f->resid[i]);
    }
}

static size_t spec_index(const fixture *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->spec[i].name, name) == 0)
            return i;
    ck_abort_msg("no tensor %s", name);
    return 0;
}

/* ---- independent references ---- */

typedef struct refm {
    uint64_t count;
    long double mean, var, skew, kurt, min, max;
} refm;

/* Two passes in long double over the finite values of the selected tensors
 * (sel[i] true), as one concatenation. */
static refm ref_moments(const fixture *f, const bool *sel)
{
    refm m = {0, 0, 0, 0, 0, INFINITY, -INFINITY};
    long double sum = 0;
    for (size_t i = 0; i < f->n; i++)
        for (size_t k = 0; sel[i] && k < numel_of(&f->spec[i]); k++) {
            float x = f->resid[i][k];
            if (!isfinite(x))
                continue;
            sum += x;
            m.count++;
            m.min = x < m.min ? x : m.min;
            m.max = x > m.max ? x : m.max;
        }
    m.mean = sum / m.count;
    long double s2 = 0, s3 = 0, s4 = 0;
    for (size_t i = 0; i < f->n; i++)
        for (size_t k = 0; sel[i] && k < numel_of(&f->spec[i]); k++) {
            float x = f->resid[i][k];
            if (!isfinite(x))
                continue;
            long double d = x - m.mean;
            s2 += d * d;
            s3 += d * d * d;
            s4 += d * d * d * d;
        }
    m.var = s2 / m.count;
    m.skew = (s3 / m.count) / powl(m.var, 1.5L);
    m.kurt = (s4 / m.count) / (m.var * m.var) - 3;
    return m;
}

/* Entropy in bits of the histogram of bins equal bins over [lo, hi] by the
 * edge definition: edge[i] <= x < edge[i+1], the last bin closed. */
static double ref_entropy(const fixture *f, const bool *sel, int bins, double lo, double hi)
{
    uint64_t *c = calloc((size_t)bins, sizeof *c), total = 0;
    double w = (hi - lo) / bins;
    for (size_t i = 0; i < f->n; i++)
        for (size_t k = 0; sel[i] && k < numel_of(&f->spec[i]); k++) {
            double x = f->resid[i][k];
            if (!isfinite(x) || x < lo || x > hi)
                continue;
            int b = (int)((x - lo) / w);
            b = b < 0 ? 0 : b >= bins ? bins - 1 : b;
            while (b > 0 && x < lo + b * w)
                b--;
            while (b < bins - 1 && x >= lo + (b + 1) * w)
                b++;
            c[b]++;
            total++;
        }
    double h = 0;
    for (int b = 0; b < bins; b++)
        if (c[b]) {
            double p = (double)c[b] / (double)total;
            h -= p * log2(p);
        }
    free(c);
    return h;
}

static double ref_pearson(const float *x, const float *y, size_t n)
{
    long double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= n;
    my /= n;
    for (size_t i = 0; i < n; i++) {
        long double a = x[i] - mx, b = y[i] - my;
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    return (double)(sxy / sqrtl(sxx * syy));
}

/* The documented seed derivation (docs/probes.md, "Seeds"). */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

#define ck_rel(got, want, tol)                                                              \
    ck_assert_msg(fabsl((long double)(got) - (long double)(want)) <=                        \
                      (tol) * fabsl((long double)(want)) + 1e-300L,                        \
                  "%s = %.17g, want %.17Lg", #got, (double)(got), (long double)(want))

static sresid_report_opts opts_default(void)
{
    sresid_report_opts o = {.size = sizeof o};
    return o;
}

static sresid_tensor_report tensor_of(const sresid_report *r, const char *name, size_t *index)
{
    size_t n = sresid_report_tensor_count(r);
    for (size_t i = 0; i < n; i++) {
        sresid_tensor_report t = {.size = sizeof t};
        ck_assert_ok(sresid_report_tensor(r, i, &t));
        if (strcmp(t.name, name) == 0) {
            if (index)
                *index = i;
            return t;
        }
    }
    ck_abort_msg("tensor %s not in the report", name);
    sresid_tensor_report none = {0};
    return none;
}

static sresid_group_report group_of(const sresid_report *r, int32_t g)
{
    sresid_group_report out = {.size = sizeof out};
    ck_assert_ok(sresid_report_group(r, g, &out));
    return out;
}

/* ---- tests ---- */

START_TEST(per_tensor_figures)
{
    fixture f;
    fixture_make(&f, 1);
    sresid_report_opts o = opts_default();
    o.threads = 3;
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    ck_assert_uint_eq(sresid_report_tensor_count(r), f.n);
    for (size_t i = 0; i < f.n; i++) {
        const tspec *s = &f.spec[i];
        size_t ri;
        sresid_tensor_report t = tensor_of(r, s->name, &ri);
        bool sel[MAXT] = {false};
        sel[i] = true;
        refm m = ref_moments(&f, sel);
        ck_assert_int_eq(t.kind, s->kind);
        ck_assert_int_eq(t.layer, s->layer);
        ck_assert_int_eq(t.ndim, s->ndim);
        ck_assert_int_eq(t.is_matrix, s->ndim >= 2);
        ck_assert_uint_eq(t.count, numel_of(s));
        ck_assert_uint_eq(t.nonfinite, 0);
        ck_rel(t.mean, m.mean, 1e-9);
        ck_rel(t.variance, m.var, 1e-12);
        ck_rel(t.skewness, m.skew, 1e-9);
        ck_rel(t.kurtosis, m.kurt, 1e-10);
        ck_assert_double_eq_tol(
            t.entropy_bits, ref_entropy(&f, sel, 100, (double)m.min, (double)m.max), 1e-12);
        /* the baseline follows the documented seed: one per run */
        double rb;
        ck_assert_ok(sresid_entropy_random(t.count, 100, mix64(mix64(0) + 1), &rb));
        ck_assert_double_eq(t.entropy_random_bits, rb);
        /* the standalone probe gives the same figures with the same seed */
        sresid_entropy_result er = {.size = sizeof er};
        ck_assert_ok(sresid_entropy(f.resid[i], 1, (int64_t)numel_of(s), (int64_t)numel_of(s), 100,
                                    mix64(mix64(0) + 1), &er));
        ck_assert_double_eq_tol(er.bits, t.entropy_bits, 1e-12);
        ck_assert_double_eq_tol(er.random_bits, t.entropy_random_bits, 1e-12);
        ck_assert(isfinite(t.hoyer) && t.hoyer >= 0 && t.hoyer <= 1);
        ck_assert(t.elements_for_energy[0] <= t.elements_for_energy[1] &&
                  t.elements_for_energy[1] <= t.elements_for_energy[2]);
        if (s->ndim >= 2) {
            double pr, prn, lf;
            ck_assert_int_eq(t.rows, s->shape[0]);
            ck_assert_int_eq(t.cols, s->shape[1]);
            ck_assert_ok(sresid_participation_ratio(f.resid[i], s->shape[0], s->shape[1],
                                                    s->shape[1], &pr, &prn));
            ck_rel(t.pr, pr, 1e-12);
            ck_rel(t.pr_normalized, prn, 1e-12);
            int64_t small = s->shape[0] < s->shape[1] ? s->shape[0] : s->shape[1];
            ck_assert(t.pr >= 1 - 1e-9 && t.pr <= (double)small + 1e-9);
            ck_assert_ok(sresid_lowfreq_ratio(f.resid[i], s->shape[0], s->shape[1], s->shape[1],
                                              0.125, &lf));
            ck_rel(t.lowfreq_ratio, lf, 1e-12);
            for (size_t j = 0; j < 4; j++) {
                sresid_kmeans_result kr = {.size = sizeof kr};
                ck_assert_ok(sresid_report_tensor_kmeans(r, ri, j, &kr));
                ck_assert_int_eq(kr.k, 2 << j);
                if (kr.k > s->shape[0]) /* more clusters than rows: undefined */
                    ck_assert(isnan(kr.explained));
                else
                    ck_assert(isfinite(kr.explained) && kr.explained >= 0 && kr.explained <= 1);
            }
        } else {
            ck_assert(isnan(t.pr) && isnan(t.pr_normalized) && isnan(t.lowfreq_ratio));
            sresid_kmeans_result kr = {.size = sizeof kr};
            ck_assert_ok(sresid_report_tensor_kmeans(r, ri, 0, &kr));
            ck_assert(isnan(kr.explained));
        }
        ck_assert(isnan(t.pr_null_mean)); /* no draws asked */
    }
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

START_TEST(groups_pool_the_concatenation)
{
    fixture f;
    fixture_make(&f, 2);
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, NULL, &r));
    const int32_t groups[] = {SRESID_KIND_OTHER, SRESID_KIND_ATTENTION, SRESID_KIND_MLP,
                              SRESID_KIND_EMBEDDING, SRESID_KIND_NORM, SRESID_GROUP_ALL};
    const uint64_t tensors[] = {1, 6, 6, 1, 4, 18};
    for (size_t g = 0; g < 6; g++) {
        bool sel[MAXT] = {false};
        uint64_t count = 0, matrices = 0;
        double pr_sum = 0;
        for (size_t i = 0; i < f.n; i++) {
            sel[i] = groups[g] == SRESID_GROUP_ALL || f.spec[i].kind == groups[g];
            if (sel[i]) {
                count += numel_of(&f.spec[i]);
                if (f.spec[i].ndim >= 2) {
                    pr_sum += tensor_of(r, f.spec[i].name, NULL).pr;
                    matrices++;
                }
            }
        }
        refm m = ref_moments(&f, sel);
        sresid_group_report gr = group_of(r, groups[g]);
        ck_assert_int_eq(gr.group, groups[g]);
        ck_assert_uint_eq(gr.tensors, tensors[g]);
        ck_assert_uint_eq(gr.count, count);
        ck_assert_uint_eq(gr.nonfinite, 0);
        ck_rel(gr.mean, m.mean, 1e-9);
        ck_rel(gr.variance, m.var, 1e-12);
        ck_rel(gr.skewness, m.skew, 1e-9);
        ck_rel(gr.kurtosis, m.kurt, 1e-10);
        ck_assert_double_eq_tol(gr.entropy_bits,
                                ref_entropy(&f, sel, 100, (double)m.min, (double)m.max), 1e-12);
        double rb;
        ck_assert_ok(sresid_entropy_random(count, 100, mix64(mix64(0) + 1), &rb));
        ck_assert_double_eq(gr.entropy_random_bits, rb);
        ck_assert_uint_eq(gr.matrices, matrices);
        if (matrices)
            ck_rel(gr.mean_pr, pr_sum / matrices, 1e-12);
        else
            ck_assert(isnan(gr.mean_pr));
    }
    /* spikes make attention heavy-tailed, the Gaussian MLP is not */
    ck_assert(group_of(r, SRESID_KIND_ATTENTION).kurtosis > 5);
    ck_assert_double_lt(fabs(group_of(r, SRESID_KIND_MLP).kurtosis), 1);
    sresid_group_report bad = {.size = sizeof bad};
    ck_assert_status(sresid_report_group(r, 5, &bad), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_group(r, -2, &bad), SRESID_ERR_INVALID_ARG);
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

START_TEST(layers_and_correlation)
{
    fixture f;
    fixture_make(&f, 3);
    sresid_report_opts o = opts_default();
    o.bins = 37;
    o.threads = 2;
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    ck_assert_uint_eq(sresid_report_layer_count(r), LAYERS);
    for (size_t l = 0; l < LAYERS; l++) {
        bool sel[MAXT] = {false};
        for (size_t i = 0; i < f.n; i++)
            sel[i] = f.spec[i].layer == (int32_t)l;
        refm m = ref_moments(&f, sel);
        sresid_layer_report lr = {.size = sizeof lr};
        ck_assert_ok(sresid_report_layer(r, l, &lr));
        ck_assert_int_eq(lr.layer, (int32_t)l);
        ck_assert_uint_eq(lr.tensors, 5);
        ck_assert_uint_eq(lr.count, m.count);
        ck_rel(lr.kurtosis, m.kurt, 1e-10);
        ck_assert_double_eq_tol(lr.entropy_bits,
                                ref_entropy(&f, sel, 37, (double)m.min, (double)m.max), 1e-12);
        ck_assert(isfinite(lr.entropy_random_bits));
    }
    sresid_layer_report lr = {.size = sizeof lr};
    ck_assert_status(sresid_report_layer(r, LAYERS, &lr), SRESID_ERR_INVALID_ARG);

    /* per role: 5 roles x 2 adjacent layer pairs */
    static const char *roles[] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                  "mlp.up_proj", "mlp.down_proj"};
    ck_assert_uint_eq(sresid_report_pair_count(r), 5 * (LAYERS - 1));
    double sums[LAYERS] = {0}, first_last = 0;
    for (int rl = 0; rl < 5; rl++) {
        char na[80], nb[80], nl[80];
        for (int l = 0; l < LAYERS; l++) {
            snprintf(na, sizeof na, "model.layers.%d.%s.weight", l, roles[rl]);
            snprintf(nb, sizeof nb, "model.layers.%d.%s.weight", l + 1, roles[rl]);
            size_t a = spec_index(&f, na);
            if (l + 1 < LAYERS) {
                size_t b = spec_index(&f, nb);
                sums[l] += ref_pearson(f.resid[a], f.resid[b], numel_of(&f.spec[a]));
            }
        }
        snprintf(na, sizeof na, "model.layers.0.%s.weight", roles[rl]);
        snprintf(nl, sizeof nl, "model.layers.%d.%s.weight", LAYERS - 1, roles[rl]);
        size_t a = spec_index(&f, na), b = spec_index(&f, nl);
        first_last += ref_pearson(f.resid[a], f.resid[b], numel_of(&f.spec[a]));
    }
    size_t np = sresid_report_pair_count(r);
    bool seen_q01 = false;
    for (size_t i = 0; i < np; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        ck_assert_ok(sresid_report_pair(r, i, &c));
        ck_assert_ptr_nonnull(c.role);
        ck_assert_int_eq(c.layer_b, c.layer_a + 1);
        ck_assert_uint_eq(c.pairs, 1);
        char na[80], nb[80];
        const char *role = c.role;
        const char *brace = strstr(role, "{L}");
        ck_assert_ptr_nonnull(brace);
        snprintf(na, sizeof na, "%.*s%d%s", (int)(brace - role), role, c.layer_a, brace + 3);
        snprintf(nb, sizeof nb, "%.*s%d%s", (int)(brace - role), role, c.layer_b, brace + 3);
        size_t a = spec_index(&f, na), b = spec_index(&f, nb);
        ck_assert_double_eq_tol(c.r, ref_pearson(f.resid[a], f.resid[b], numel_of(&f.spec[a])),
                                1e-9);
        if (strcmp(role, "model.layers.{L}.self_attn.q_proj.weight") == 0 && c.layer_a == 0) {
            seen_q01 = true;
            ck_assert_double_gt(c.r, 0.2); /* built correlated */
        }
    }
    ck_assert(seen_q01);
    /* means per adjacent pair, then first vs last */
    ck_assert_uint_eq(sresid_report_layer_correlation_count(r), LAYERS);
    for (size_t i = 0; i < LAYERS; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        ck_assert_ok(sresid_report_layer_correlation(r, i, &c));
        ck_assert_ptr_null(c.role);
        ck_assert_uint_eq(c.pairs, 5);
        if (i + 1 < LAYERS) {
            ck_assert_int_eq(c.layer_a, (int32_t)i);
            ck_assert_int_eq(c.layer_b, (int32_t)i + 1);
            ck_assert_double_eq_tol(c.r, sums[i] / 5, 1e-9);
        } else {
            ck_assert_int_eq(c.layer_a, 0);
            ck_assert_int_eq(c.layer_b, LAYERS - 1);
            ck_assert_double_eq_tol(c.r, first_last / 5, 1e-9);
        }
    }
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

/* An encoder-decoder (Whisper and BART naming): the encoder's and the
 * decoder's layers are distinct layers (stack, index), and only tensors of
 * one stack are correlated. Layers come by stack name, so the decoder's
 * first. */
START_TEST(stacks_are_distinct_layers)
{
    static const char *const enc = "model.encoder.layers", *const dec = "model.decoder.layers";
    fixture f;
    memset(&f, 0, sizeof f);
    char nm[80];
    add_spec(&f, "model.encoder.conv1.weight", 2, D, 3 * 4, SRESID_KIND_EMBEDDING, -1);
    for (int l = 0; l < 3; l++) {
        snprintf(nm, sizeof nm, "%s.%d.self_attn.q_proj.weight", enc, l);
        add_spec(&f, nm, 2, D, D, SRESID_KIND_ATTENTION, l);
        snprintf(nm, sizeof nm, "%s.%d.fc1.weight", enc, l);
        add_spec(&f, nm, 2, 2 * D, D, SRESID_KIND_MLP, l);
    }
    for (int l = 0; l < 2; l++) {
        snprintf(nm, sizeof nm, "%s.%d.self_attn.q_proj.weight", dec, l);
        add_spec(&f, nm, 2, D, D, SRESID_KIND_ATTENTION, l);
        snprintf(nm, sizeof nm, "%s.%d.fc1.weight", dec, l);
        add_spec(&f, nm, 2, 2 * D, D, SRESID_KIND_MLP, l);
    }
    fixture_build(&f, 21);

    /* the model's stacks */
    size_t idx;
    const char *stack = NULL;
    ck_assert_ok(sresid_model_find(f.mb, "model.decoder.layers.1.fc1.weight", &idx));
    ck_assert_ok(sresid_model_tensor_stack(f.mb, idx, &stack));
    ck_assert_str_eq(stack, dec);
    ck_assert_ok(sresid_model_tensor_stack(f.mb, 0, &stack));
    ck_assert_str_eq(stack, ""); /* the conv stem has no layer */
    ck_assert_status(sresid_model_tensor_stack(f.mb, f.n, &stack), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_tensor_stack(NULL, 0, &stack), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_model_tensor_stack(f.mb, 0, NULL), SRESID_ERR_INVALID_ARG);

    sresid_report_opts o = opts_default();
    o.bins = 29;
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));

    /* five layers: decoder 0, 1, then encoder 0, 1, 2; two tensors each */
    static const struct {
        const char *stack;
        int32_t layer;
    } want_layers[] = {{"model.decoder.layers", 0}, {"model.decoder.layers", 1},
                       {"model.encoder.layers", 0}, {"model.encoder.layers", 1},
                       {"model.encoder.layers", 2}};
    ck_assert_uint_eq(sresid_report_layer_count(r), 5);
    for (size_t i = 0; i < 5; i++) {
        bool sel[MAXT] = {false};
        size_t len = strlen(want_layers[i].stack);
        for (size_t k = 0; k < f.n; k++)
            sel[k] = f.spec[k].layer == want_layers[i].layer &&
                     strncmp(f.spec[k].name, want_layers[i].stack, len) == 0;
        refm m = ref_moments(&f, sel);
        sresid_layer_report lr = {.size = sizeof lr};
        ck_assert_ok(sresid_report_layer(r, i, &lr));
        ck_assert_ok(sresid_report_layer_stack(r, i, &stack));
        ck_assert_str_eq(stack, want_layers[i].stack);
        ck_assert_int_eq(lr.layer, want_layers[i].layer);
        ck_assert_uint_eq(lr.tensors, 2);
        ck_assert_uint_eq(lr.count, m.count);
        ck_rel(lr.kurtosis, m.kurt, 1e-10);
        ck_assert_double_eq_tol(lr.entropy_bits,
                                ref_entropy(&f, sel, 29, (double)m.min, (double)m.max), 1e-12);
    }
    ck_assert_status(sresid_report_layer_stack(r, 5, &stack), SRESID_ERR_INVALID_ARG);

    /* tensors carry their stack */
    ck_assert_ok(sresid_report_tensor_stack(r, 0, &stack));
    ck_assert_str_eq(stack, "");
    tensor_of(r, "model.encoder.layers.2.fc1.weight", &idx);
    ck_assert_ok(sresid_report_tensor_stack(r, idx, &stack));
    ck_assert_str_eq(stack, enc);

    /* per role, adjacent layers of one stack only: decoder 0-1 (q, fc1),
     * encoder 0-1 and 1-2 (q, fc1) */
    static const struct {
        const char *stack, *a, *b;
    } want_pairs[] = {
        {"model.decoder.layers", "model.decoder.layers.0.self_attn.q_proj.weight",
         "model.decoder.layers.1.self_attn.q_proj.weight"},
        {"model.decoder.layers", "model.decoder.layers.0.fc1.weight",
         "model.decoder.layers.1.fc1.weight"},
        {"model.encoder.layers", "model.encoder.layers.0.self_attn.q_proj.weight",
         "model.encoder.layers.1.self_attn.q_proj.weight"},
        {"model.encoder.layers", "model.encoder.layers.0.fc1.weight",
         "model.encoder.layers.1.fc1.weight"},
        {"model.encoder.layers", "model.encoder.layers.1.self_attn.q_proj.weight",
         "model.encoder.layers.2.self_attn.q_proj.weight"},
        {"model.encoder.layers", "model.encoder.layers.1.fc1.weight",
         "model.encoder.layers.2.fc1.weight"},
    };
    double rp[6];
    ck_assert_uint_eq(sresid_report_pair_count(r), 6);
    for (size_t i = 0; i < 6; i++) {
        size_t a = spec_index(&f, want_pairs[i].a), b = spec_index(&f, want_pairs[i].b);
        rp[i] = ref_pearson(f.resid[a], f.resid[b], numel_of(&f.spec[a]));
        sresid_correlation_report c = {.size = sizeof c};
        ck_assert_ok(sresid_report_pair(r, i, &c));
        ck_assert_ok(sresid_report_pair_stack(r, i, &stack));
        ck_assert_str_eq(stack, want_pairs[i].stack);
        ck_assert_int_eq(c.layer_a, f.spec[a].layer);
        ck_assert_int_eq(c.layer_b, f.spec[b].layer);
        ck_assert_double_eq_tol(c.r, rp[i], 1e-9);
    }
    ck_assert_status(sresid_report_pair_stack(r, 6, &stack), SRESID_ERR_INVALID_ARG);

    /* per stack: its adjacent pairs, then first vs last (with two layers,
     * the adjacent pair again) */
    double enc_fl = 0;
    for (int k = 0; k < 2; k++) {
        static const char *const first[2] = {"model.encoder.layers.0.self_attn.q_proj.weight",
                                             "model.encoder.layers.0.fc1.weight"};
        static const char *const last[2] = {"model.encoder.layers.2.self_attn.q_proj.weight",
                                            "model.encoder.layers.2.fc1.weight"};
        size_t a = spec_index(&f, first[k]), b = spec_index(&f, last[k]);
        enc_fl += ref_pearson(f.resid[a], f.resid[b], numel_of(&f.spec[a]));
    }
    static const struct {
        const char *stack;
        int32_t a, b;
        bool first_last;
    } want_lc[] = {{"model.decoder.layers", 0, 1, false}, {"model.decoder.layers", 0, 1, true},
                   {"model.encoder.layers", 0, 1, false}, {"model.encoder.layers", 1, 2, false},
                   {"model.encoder.layers", 0, 2, true}};
    const double want_r[5] = {(rp[0] + rp[1]) / 2, (rp[0] + rp[1]) / 2, (rp[2] + rp[3]) / 2,
                              (rp[4] + rp[5]) / 2, enc_fl / 2};
    ck_assert_uint_eq(sresid_report_layer_correlation_count(r), 5);
    for (size_t i = 0; i < 5; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        ck_assert_ok(sresid_report_layer_correlation(r, i, &c));
        ck_assert_ok(sresid_report_layer_correlation_stack(r, i, &stack));
        ck_assert_str_eq(stack, want_lc[i].stack);
        ck_assert_ptr_null(c.role);
        ck_assert_int_eq(c.layer_a, want_lc[i].a);
        ck_assert_int_eq(c.layer_b, want_lc[i].b);
        ck_assert_uint_eq(c.pairs, 2);
        ck_assert_double_eq_tol(c.r, want_r[i], 1e-9);
    }
    ck_assert_status(sresid_report_layer_correlation_stack(r, 5, &stack),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_layer_correlation_stack(NULL, 0, &stack),
                     SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_tensor_stack(r, 0, NULL), SRESID_ERR_INVALID_ARG);

    /* the JSON: "stack" on tensors (null without a layer), layers and both
     * correlation arrays; first_last ends each stack's run */
    char *js = NULL;
    ck_assert_ok(sresid_report_json(r, 0, &js));
    json_error_t err;
    json_t *root = json_loads(js, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(root != NULL, "JSON does not parse: %s", err.text);
    json_t *tens = json_object_get(root, "tensors");
    ck_assert(json_is_null(json_object_get(json_array_get(tens, 0), "stack")));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(tens, 1), "stack")), enc);
    json_t *layers = json_object_get(root, "layers");
    ck_assert_uint_eq(json_array_size(layers), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *l = json_array_get(layers, i);
        ck_assert_str_eq(json_string_value(json_object_get(l, "stack")), want_layers[i].stack);
        ck_assert_int_eq(json_integer_value(json_object_get(l, "layer")), want_layers[i].layer);
    }
    json_t *lc = json_object_get(root, "layer_correlation");
    ck_assert_uint_eq(json_array_size(lc), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *e = json_array_get(lc, i);
        ck_assert_str_eq(json_string_value(json_object_get(e, "stack")), want_lc[i].stack);
        ck_assert(json_is_true(json_object_get(e, "first_last")) == want_lc[i].first_last);
    }
    json_t *pairs = json_object_get(root, "correlation_pairs");
    ck_assert_uint_eq(json_array_size(pairs), 6);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(pairs, 5), "stack")), enc);
    json_decref(root);
    sresid_free(js);
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

START_TEST(kinds_filter_and_probe_mask)
{
    fixture f;
    fixture_make(&f, 4);
    sresid_report_opts o = opts_default();
    o.kinds = (1u << SRESID_KIND_ATTENTION) | (1u << SRESID_KIND_MLP);
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    ck_assert_uint_eq(sresid_report_tensor_count(r), 12);
    for (size_t i = 0; i < 12; i++) {
        sresid_tensor_report t = {.size = sizeof t};
        ck_assert_ok(sresid_report_tensor(r, i, &t));
        ck_assert(t.kind == SRESID_KIND_ATTENTION || t.kind == SRESID_KIND_MLP);
    }
    ck_assert_uint_eq(group_of(r, SRESID_KIND_NORM).tensors, 0);
    ck_assert(isnan(group_of(r, SRESID_KIND_NORM).kurtosis));
    ck_assert(isnan(group_of(r, SRESID_KIND_NORM).entropy_bits));
    ck_assert_uint_eq(group_of(r, SRESID_GROUP_ALL).tensors, 12);
    ck_assert_uint_eq(sresid_report_pair_count(r), 4 * (LAYERS - 1));
    sresid_correlation_report c = {.size = sizeof c};
    ck_assert_ok(sresid_report_layer_correlation(r, 0, &c));
    ck_assert_uint_eq(c.pairs, 4);
    /* pooled figures equal those of the unfiltered report's attention group */
    sresid_report *full = NULL;
    ck_assert_ok(sresid_report_residual(f.res, NULL, &full));
    ck_assert_double_eq(group_of(r, SRESID_KIND_ATTENTION).kurtosis,
                        group_of(full, SRESID_KIND_ATTENTION).kurtosis);
    ck_assert_double_eq(group_of(r, SRESID_KIND_ATTENTION).entropy_random_bits,
                        group_of(full, SRESID_KIND_ATTENTION).entropy_random_bits);
    sresid_report_free(r);

    /* moments only: everything else stays NaN, correlations absent */
    o = opts_default();
    o.probes = SRESID_PROBE_MOMENTS;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    sresid_tensor_report t = tensor_of(r, "model.layers.1.self_attn.q_proj.weight", NULL);
    sresid_tensor_report tf = tensor_of(full, "model.layers.1.self_attn.q_proj.weight", NULL);
    ck_assert_double_eq(t.kurtosis, tf.kurtosis);
    ck_assert(isnan(t.entropy_bits) && isnan(t.entropy_random_bits));
    ck_assert(isnan(t.pr) && isnan(t.pr_normalized) && isnan(t.lowfreq_ratio));
    ck_assert(isnan(t.hoyer) && isnan(t.elements_for_energy[0]) && isnan(t.energy_in_top[2]));
    sresid_kmeans_result kr = {.size = sizeof kr};
    ck_assert_ok(sresid_report_tensor_kmeans(r, 0, 0, &kr));
    ck_assert(isnan(kr.explained));
    ck_assert(isnan(group_of(r, SRESID_GROUP_ALL).entropy_bits));
    ck_assert(isnan(group_of(r, SRESID_GROUP_ALL).mean_pr));
    ck_assert_double_eq(group_of(r, SRESID_GROUP_ALL).kurtosis,
                        group_of(full, SRESID_GROUP_ALL).kurtosis);
    ck_assert_uint_eq(sresid_report_pair_count(r), 0);
    ck_assert_uint_eq(sresid_report_layer_correlation_count(r), 0);
    sresid_report_free(r);

    /* entropy and PR without moments: counts stay, moment figures go */
    o.probes = SRESID_PROBE_ENTROPY | SRESID_PROBE_PR;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    t = tensor_of(r, "model.layers.1.self_attn.q_proj.weight", NULL);
    ck_assert_uint_eq(t.count, (uint64_t)(D * D));
    ck_assert(isnan(t.kurtosis) && isnan(t.mean));
    ck_assert_double_eq(t.entropy_bits, tf.entropy_bits);
    ck_assert_double_eq(t.pr, tf.pr);
    ck_assert(isnan(t.lowfreq_ratio));
    ck_assert(isnan(group_of(r, SRESID_GROUP_ALL).kurtosis));
    ck_assert_double_eq(group_of(r, SRESID_GROUP_ALL).entropy_bits,
                        group_of(full, SRESID_GROUP_ALL).entropy_bits);
    sresid_report_free(r);
    sresid_report_free(full);
    fixture_free(&f);
}
END_TEST

START_TEST(nonfinite_counted_or_fatal)
{
    fixture f;
    fixture_make(&f, 5);
    size_t q = spec_index(&f, "model.layers.0.self_attn.q_proj.weight");
    size_t nrm = spec_index(&f, "model.norm.weight");
    f.trained[q][3] = NAN;
    f.trained[q][7] = INFINITY;
    f.trained[nrm][0] = -INFINITY;
    f.resid[q][3] = f.trained[q][3] - f.base[q][3];
    f.resid[q][7] = f.trained[q][7] - f.base[q][7];
    f.resid[nrm][0] = f.trained[nrm][0] - f.base[nrm][0];
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, NULL, &r));
    sresid_tensor_report t = tensor_of(r, f.spec[q].name, NULL);
    ck_assert_uint_eq(t.nonfinite, 2);
    ck_assert_uint_eq(t.count, (uint64_t)(D * D - 2));
    bool sel[MAXT] = {false};
    sel[q] = true;
    refm m = ref_moments(&f, sel);
    ck_rel(t.kurtosis, m.kurt, 1e-10);
    ck_assert_double_eq_tol(t.entropy_bits, ref_entropy(&f, sel, 100, (double)m.min, (double)m.max),
                            1e-12);
    ck_assert(isfinite(t.hoyer)); /* sparsity over the finite values */
    ck_assert(isnan(t.pr) && isnan(t.lowfreq_ratio)); /* matrix probes need every value */
    sresid_tensor_report tn = tensor_of(r, "model.norm.weight", NULL);
    ck_assert_uint_eq(tn.nonfinite, 1);
    ck_assert(isfinite(tn.kurtosis));
    sresid_group_report all = group_of(r, SRESID_GROUP_ALL);
    ck_assert_uint_eq(all.nonfinite, 3);
    for (size_t i = 0; i < f.n; i++)
        sel[i] = true;
    refm ma = ref_moments(&f, sel);
    ck_assert_uint_eq(all.count, ma.count);
    ck_rel(all.kurtosis, ma.kurt, 1e-10);
    ck_assert(isfinite(all.entropy_bits));
    /* the layer-0 q_proj pairs still correlate over the finite positions */
    ck_assert_uint_eq(sresid_report_pair_count(r), 10);
    /* the first tensor in report order that holds a non-finite value */
    char first[128] = "";
    for (size_t i = 0; i < sresid_report_tensor_count(r) && !first[0]; i++) {
        sresid_tensor_report ti = {.size = sizeof ti};
        ck_assert_ok(sresid_report_tensor(r, i, &ti));
        if (ti.nonfinite)
            snprintf(first, sizeof first, "%s", ti.name);
    }
    ck_assert(strcmp(first, f.spec[q].name) == 0 || strcmp(first, "model.norm.weight") == 0);
    sresid_report_free(r);

    sresid_report_opts o = opts_default();
    o.flags = SRESID_REPORT_FAIL_NONFINITE;
    r = NULL;
    ck_assert_status(sresid_report_residual(f.res, &o, &r), SRESID_ERR_NONFINITE);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(sresid_last_error(), "non-finite"));
    /* the failure reported is the first tensor's in report order, in the
     * same words, whatever the thread count, run after run */
    char want[512];
    snprintf(want, sizeof want, "tensor '%s': %s non-finite values (NaN or Inf)", first,
             strcmp(first, "model.norm.weight") == 0 ? "1" : "2");
    ck_assert_str_eq(sresid_last_error(), want);
    for (int rep = 0; rep < 5; rep++)
        for (int threads = 1; threads <= 4; threads *= 2) {
            o.threads = threads;
            ck_assert_status(sresid_report_residual(f.res, &o, &r), SRESID_ERR_NONFINITE);
            ck_assert_str_eq(sresid_last_error(), want);
            ck_assert_ptr_null(r);
        }
    fixture_free(&f);
}
END_TEST

typedef struct progress_log {
    size_t calls, last_done, total;
    bool monotone, same_total, named, same_thread;
    pthread_t caller;
} progress_log;

static void on_progress(void *user, size_t done, size_t total, const char *name)
{
    progress_log *p = user;
    if (p->calls == 0)
        p->total = total;
    p->monotone &= done == p->last_done + 1;
    p->same_total &= total == p->total;
    p->named &= name != NULL && *name != '\0';
    p->same_thread &= pthread_equal(pthread_self(), p->caller) != 0;
    p->last_done = done;
    p->calls++;
}

START_TEST(progress_and_threads)
{
    fixture f;
    fixture_make(&f, 6);
    sresid_report *r1 = NULL, *r4 = NULL;
    for (int threads = 1; threads <= 4; threads += 3) {
        progress_log p = {0, 0, 0, true, true, true, true, pthread_self()};
        sresid_report_opts o = opts_default();
        o.threads = threads;
        o.progress = on_progress;
        o.progress_user = &p;
        ck_assert_ok(sresid_report_residual(f.res, &o, threads == 1 ? &r1 : &r4));
        /* probes + pooled histograms per tensor, then 10 adjacent and 5
         * first-vs-last correlation pairs */
        ck_assert_uint_eq(p.calls, 2 * f.n + 15);
        ck_assert_uint_eq(p.total, p.calls);
        ck_assert_uint_eq(p.last_done, p.calls);
        ck_assert(p.monotone && p.same_total && p.named && p.same_thread);
    }
    /* the thread count does not change a figure */
    for (size_t i = 0; i < f.n; i++) {
        sresid_tensor_report a = {.size = sizeof a}, b = {.size = sizeof b};
        ck_assert_ok(sresid_report_tensor(r1, i, &a));
        ck_assert_ok(sresid_report_tensor(r4, i, &b));
        ck_assert_str_eq(a.name, b.name);
        ck_assert_double_eq(a.kurtosis, b.kurtosis);
        ck_assert_double_eq(a.entropy_bits, b.entropy_bits);
        ck_assert_double_eq(a.entropy_random_bits, b.entropy_random_bits);
        ck_assert(a.pr == b.pr || (isnan(a.pr) && isnan(b.pr)));
    }
    for (int g = -1; g < SRESID_KIND_COUNT; g++) {
        sresid_group_report a = group_of(r1, g), b = group_of(r4, g);
        ck_assert(a.kurtosis == b.kurtosis || (isnan(a.kurtosis) && isnan(b.kurtosis)));
        ck_assert(a.entropy_bits == b.entropy_bits ||
                  (isnan(a.entropy_bits) && isnan(b.entropy_bits)));
    }
    sresid_report_free(r1);
    sresid_report_free(r4);
    fixture_free(&f);
}
END_TEST

START_TEST(model_report_and_nulls)
{
    fixture f;
    fixture_make(&f, 7);
    /* an integer tensor is left out and listed */
    int32_t ids[4] = {1, 2, 3, 4};
    const int64_t s4[1] = {4};
    ck_assert_ok(sresid_model_add_tensor(f.mt, "position_ids", SRESID_DTYPE_I32, 1, s4, ids,
                                         sizeof ids, 0));
    sresid_report_opts o = opts_default();
    o.null_draws = 4;
    o.seed = 99;
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_model(f.mt, &o, &r));
    ck_assert_uint_eq(sresid_report_tensor_count(r), f.n);
    size_t q = spec_index(&f, "model.layers.2.mlp.up_proj.weight");
    sresid_tensor_report t = tensor_of(r, f.spec[q].name, NULL);
    long double s = 0, s2 = 0, s4v = 0;
    size_t n = numel_of(&f.spec[q]);
    for (size_t k = 0; k < n; k++)
        s += f.trained[q][k];
    long double mean = s / n;
    for (size_t k = 0; k < n; k++) {
        long double d = f.trained[q][k] - mean;
        s2 += d * d;
        s4v += d * d * d * d;
    }
    ck_rel(t.kurtosis, (s4v / n) / ((s2 / n) * (s2 / n)) - 3, 1e-10);
    ck_assert(isfinite(t.pr_null_mean) && isfinite(t.pr_null_std));
    ck_assert(isfinite(t.lowfreq_null_mean));
    sresid_tensor_report v = tensor_of(r, "model.norm.weight", NULL);
    ck_assert(isnan(v.pr_null_mean) && isnan(v.lowfreq_null_z));
    /* the seed reaches the baseline; same-count tensors share it */
    double rb;
    ck_assert_ok(sresid_entropy_random(t.count, 100, mix64(mix64(99) + 1), &rb));
    ck_assert_double_eq(t.entropy_random_bits, rb);
    sresid_tensor_report twin = tensor_of(r, "model.layers.0.mlp.up_proj.weight", NULL);
    ck_assert_double_eq(twin.entropy_random_bits, rb);
    /* the k-means seed follows the tensor's name */
    sresid_kmeans_result kr = {.size = sizeof kr}, kw = {.size = sizeof kw};
    size_t ri;
    tensor_of(r, f.spec[q].name, &ri);
    ck_assert_ok(sresid_report_tensor_kmeans(r, ri, 1, &kr));
    /* ... and its runs follow the size by default (SRESID_KMEANS_INIT_AUTO) */
    sresid_kmeans_opts ko = {.size = sizeof ko,
                             .seed = mix64(mix64(99 ^ fnv1a(f.spec[q].name)) + 2),
                             .n_init = SRESID_KMEANS_INIT_AUTO};
    const int32_t k4 = 4;
    ck_assert_ok(sresid_kmeans_explained(f.trained[q], f.spec[q].shape[0], f.spec[q].shape[1],
                                         f.spec[q].shape[1], &k4, 1, &ko, &kw));
    ck_assert_double_eq(kr.explained, kw.explained);
    ck_assert_double_eq(kr.explained_random, kw.explained_random);
    /* a small matrix gets 50 runs, and one run lands elsewhere here */
    sresid_kmeans_result k1 = {.size = sizeof k1};
    ko.n_init = 50;
    ck_assert_ok(sresid_kmeans_explained(f.trained[q], f.spec[q].shape[0], f.spec[q].shape[1],
                                         f.spec[q].shape[1], &k4, 1, &ko, &kw));
    ck_assert_double_eq(kr.explained, kw.explained);
    ko.n_init = 1;
    ck_assert_ok(sresid_kmeans_explained(f.trained[q], f.spec[q].shape[0], f.spec[q].shape[1],
                                         f.spec[q].shape[1], &k4, 1, &ko, &k1));
    ck_assert(k1.explained < kr.explained);
    /* an explicit count reaches the probe */
    sresid_report *r3 = NULL;
    o.kmeans_restarts = 3;
    o.probes = SRESID_PROBE_KMEANS;
    ck_assert_ok(sresid_report_model(f.mt, &o, &r3));
    ck_assert_ok(sresid_report_tensor_kmeans(r3, ri, 1, &kr));
    ko.n_init = 3;
    ck_assert_ok(sresid_kmeans_explained(f.trained[q], f.spec[q].shape[0], f.spec[q].shape[1],
                                         f.spec[q].shape[1], &k4, 1, &ko, &kw));
    ck_assert_double_eq(kr.explained, kw.explained);
    ck_assert_double_eq(kr.explained_random, kw.explained_random);
    char *js3 = NULL;
    ck_assert_ok(sresid_report_json(r3, 0, &js3));
    json_t *root3 = json_loads(js3, 0, NULL);
    ck_assert_ptr_nonnull(root3);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(root3, "options"),
                                                        "kmeans_restarts")), 3);
    json_decref(root3);
    sresid_free(js3);
    sresid_report_free(r3);

    char *js = NULL;
    ck_assert_ok(sresid_report_json(r, 0, &js));
    json_error_t err;
    json_t *root = json_loads(js, 0, &err);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(root, "source")), "model");
    json_t *sk = json_object_get(root, "skipped");
    ck_assert_uint_eq(json_array_size(sk), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(sk, 0), "name")),
                     "position_ids");
    json_t *opt = json_object_get(root, "options");
    ck_assert_int_eq(json_integer_value(json_object_get(opt, "seed")), 99);
    ck_assert_int_eq(json_integer_value(json_object_get(opt, "null_draws")), 4);
    json_t *tens = json_object_get(root, "tensors");
    size_t i;
    json_t *e;
    json_array_foreach(tens, i, e) {
        json_t *nl = json_object_get(e, "null");
        if (json_is_true(json_object_get(e, "is_matrix")))
            ck_assert(json_is_number(json_object_get(json_object_get(nl, "pr"), "mean")));
        else
            ck_assert(json_is_null(nl));
    }
    json_decref(root);
    sresid_free(js);
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

static void require_keys(json_t *obj, const char *const *keys, const char *where)
{
    ck_assert_msg(json_is_object(obj), "%s is not an object", where);
    for (size_t k = 0; keys[k]; k++)
        ck_assert_msg(json_object_get(obj, keys[k]) != NULL, "%s lacks \"%s\"", where, keys[k]);
}

START_TEST(json_document)
{
    fixture f;
    fixture_make(&f, 8);
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, NULL, &r));
    char *js = NULL;
    ck_assert_ok(sresid_report_json(r, SRESID_JSON_INDENT, &js));
    ck_assert_ptr_nonnull(strstr(js, "\n  \"tensors\""));
    json_error_t err;
    json_t *root = json_loads(js, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(root != NULL, "JSON does not parse: %s", err.text);
    static const char *const top[] = {"format", "format_version", "library", "source", "options",
                                      "tensors", "skipped", "groups", "layers",
                                      "layer_correlation", "correlation_pairs", NULL};
    require_keys(root, top, "the document");
    ck_assert_str_eq(json_string_value(json_object_get(root, "source")), "residual");
    static const char *const opt[] = {"probes", "kinds", "bins", "band", "seed", "ks",
                                      "null_draws", "kmeans_restarts", "threads",
                                      "nonfinite", "layout", NULL};
    json_t *o = json_object_get(root, "options");
    require_keys(o, opt, "options");
    ck_assert_uint_eq(json_array_size(json_object_get(o, "probes")), 7);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "kinds")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "bins")), 100);
    ck_assert_double_eq(json_real_value(json_object_get(o, "band")), 0.125);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "ks")), 4);
    ck_assert_str_eq(json_string_value(json_object_get(o, "nonfinite")), "exclude");
    ck_assert_str_eq(json_string_value(json_object_get(o, "layout")), "out-first");
    ck_assert(json_integer_value(json_object_get(o, "threads")) >= 1);

    static const char *const tkeys[] = {
        "name", "role", "kind", "stack", "layer", "shape", "rows", "cols", "is_matrix", "count",
        "nonfinite", "mean", "variance", "skewness", "kurtosis", "min", "max", "entropy_bits",
        "entropy_random_bits", "entropy_ratio", "pr", "pr_normalized", "lowfreq_ratio", "kmeans",
        "sparsity", "null", NULL};
    json_t *tens = json_object_get(root, "tensors");
    ck_assert_uint_eq(json_array_size(tens), f.n);
    size_t i;
    json_t *t;
    json_array_foreach(tens, i, t) {
        require_keys(t, tkeys, "a tensor");
        const tspec *s = &f.spec[spec_index(&f, json_string_value(json_object_get(t, "name")))];
        ck_assert_str_eq(json_string_value(json_object_get(t, "kind")), sresid_kind_name(s->kind));
        if (s->layer < 0) {
            ck_assert(json_is_null(json_object_get(t, "layer")));
            ck_assert(json_is_null(json_object_get(t, "stack")));
        } else {
            ck_assert_int_eq(json_integer_value(json_object_get(t, "layer")), s->layer);
            ck_assert_str_eq(json_string_value(json_object_get(t, "stack")), "model.layers");
        }
        json_t *shape = json_object_get(t, "shape");
        ck_assert_uint_eq(json_array_size(shape), (size_t)s->ndim);
        ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), s->shape[0]);
        ck_assert(json_is_integer(json_object_get(t, "count")));
        ck_assert(json_is_real(json_object_get(t, "kurtosis")));
        json_t *sp = json_object_get(t, "sparsity");
        static const char *const spk[] = {"elements_for_energy", "hoyer", "energy_in_top", NULL};
        require_keys(sp, spk, "sparsity");
        ck_assert(json_is_real(json_object_get(json_object_get(sp, "elements_for_energy"), "0.9")));
        ck_assert(json_is_real(json_object_get(json_object_get(sp, "energy_in_top"), "0.01")));
        ck_assert(json_is_null(json_object_get(t, "null")));
        if (s->ndim >= 2) {
            json_t *km = json_object_get(t, "kmeans");
            ck_assert_uint_eq(json_array_size(km), 4);
            static const char *const kk[] = {"k", "explained", "explained_random", NULL};
            require_keys(json_array_get(km, 0), kk, "a k-means entry");
            ck_assert(json_is_real(json_object_get(t, "pr")));
        } else {
            /* matrix-only figures are null for vectors */
            ck_assert(json_is_null(json_object_get(t, "pr")));
            ck_assert(json_is_null(json_object_get(t, "pr_normalized")));
            ck_assert(json_is_null(json_object_get(t, "lowfreq_ratio")));
            ck_assert(json_is_null(json_object_get(t, "kmeans")));
        }
    }
    static const char *const gnames[] = {"attention", "mlp", "embedding", "norm", "other", "all",
                                         NULL};
    static const char *const gkeys[] = {"count", "tensors", "nonfinite", "mean", "variance",
                                        "skewness", "kurtosis", "entropy_bits",
                                        "entropy_random_bits", "entropy_ratio", "mean_pr",
                                        "matrices", NULL};
    json_t *groups = json_object_get(root, "groups");
    ck_assert_uint_eq(json_object_size(groups), 6);
    for (size_t g = 0; gnames[g]; g++)
        require_keys(json_object_get(groups, gnames[g]), gkeys, gnames[g]);
    json_t *all = json_object_get(groups, "all");
    ck_assert_int_eq(json_integer_value(json_object_get(all, "tensors")), (json_int_t)f.n);
    ck_assert_double_eq(json_real_value(json_object_get(all, "kurtosis")),
                        group_of(r, SRESID_GROUP_ALL).kurtosis); /* 17 digits round-trip */

    json_t *layers = json_object_get(root, "layers");
    ck_assert_uint_eq(json_array_size(layers), LAYERS);
    static const char *const lkeys[] = {"stack", "layer", "kurtosis", "entropy_bits", NULL};
    json_array_foreach(layers, i, t) {
        require_keys(t, lkeys, "a layer");
        ck_assert_str_eq(json_string_value(json_object_get(t, "stack")), "model.layers");
        ck_assert_int_eq(json_integer_value(json_object_get(t, "layer")), (json_int_t)i);
    }
    json_t *lc = json_object_get(root, "layer_correlation");
    ck_assert_uint_eq(json_array_size(lc), LAYERS);
    static const char *const ckeys[] = {"stack", "layer_a", "layer_b", "r", "pairs",
                                        "first_last", NULL};
    json_array_foreach(lc, i, t) {
        require_keys(t, ckeys, "a layer correlation");
        ck_assert_str_eq(json_string_value(json_object_get(t, "stack")), "model.layers");
        ck_assert(json_is_true(json_object_get(t, "first_last")) == (i + 1 == LAYERS));
    }
    ck_assert_uint_eq(json_array_size(json_object_get(root, "correlation_pairs")),
                      5 * (LAYERS - 1));
    json_decref(root);
    sresid_free(js);

    /* compact by default; unknown flags refused */
    ck_assert_ok(sresid_report_json(r, 0, &js));
    ck_assert_ptr_null(strchr(js, '\n'));
    sresid_free(js);
    js = NULL;
    ck_assert_status(sresid_report_json(r, 0x2, &js), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_json(NULL, 0, &js), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_json(r, 0, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(js);
    sresid_free(NULL);
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

static size_t count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

START_TEST(save_json_is_atomic)
{
    fixture f;
    fixture_make(&f, 9);
    sresid_report_opts o = opts_default();
    o.probes = SRESID_PROBE_MOMENTS | SRESID_PROBE_ENTROPY;
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    const char *p = tu_path("report.json");
    ck_assert_int_eq(tu_write_file(p, "old", 3), 0);
    ck_assert_ok(sresid_report_save_json(r, SRESID_JSON_INDENT, p));
    size_t len = 0;
    unsigned char *text = tu_read_file(p, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_gt(len, 100);
    ck_assert_int_eq(text[len - 1], '\n');
    json_error_t err;
    json_t *root = json_loadb((const char *)text, len, 0, &err);
    ck_assert_ptr_nonnull(root);
    ck_assert_uint_eq(json_array_size(json_object_get(root, "tensors")), f.n);
    json_decref(root);
    free(text);
    ck_assert_uint_eq(count_tmp_files(tu_tmpdir()), 0);

    /* a missing directory: IO, nothing created */
    const char *bad = tu_path("no-such-dir/report.json");
    ck_assert_status(sresid_report_save_json(r, 0, bad), SRESID_ERR_IO);
    struct stat sb;
    ck_assert_int_ne(stat(bad, &sb), 0);
    /* a directory in the way: IO, no temporary left behind */
    const char *dir = tu_path("a-directory");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_status(sresid_report_save_json(r, 0, dir), SRESID_ERR_IO);
    ck_assert_uint_eq(count_tmp_files(tu_tmpdir()), 0);
    ck_assert_status(sresid_report_save_json(r, 0, ""), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_save_json(r, 0, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_save_json(NULL, 0, p), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_save_json(r, 0x10, p), SRESID_ERR_INVALID_ARG);
    sresid_report_free(r);
    fixture_free(&f);
}
END_TEST

START_TEST(options_validated)
{
    fixture f;
    fixture_make(&f, 10);
    sresid_report *r = NULL;
    int32_t ks_zero[2] = {2, 0}, ks_big[1] = {65537}, ks_ok[2] = {3, 5};
    int32_t ks_many[65];
    for (int i = 0; i < 65; i++)
        ks_many[i] = 2;
    struct {
        const char *what;
        sresid_report_opts o;
    } bad[] = {
        {"bins < 0", {.size = sizeof(sresid_report_opts), .bins = -1}},
        {"bins > 2^24", {.size = sizeof(sresid_report_opts), .bins = (1 << 24) + 1}},
        {"band > 1", {.size = sizeof(sresid_report_opts), .band = 1.5}},
        {"band < 0", {.size = sizeof(sresid_report_opts), .band = -0.1}},
        {"band NaN", {.size = sizeof(sresid_report_opts), .band = NAN}},
        {"K = 0", {.size = sizeof(sresid_report_opts), .ks = ks_zero, .nks = 2}},
        {"K > 65536", {.size = sizeof(sresid_report_opts), .ks = ks_big, .nks = 1}},
        {"65 K values", {.size = sizeof(sresid_report_opts), .ks = ks_many, .nks = 65}},
        {"ks NULL, nks 2", {.size = sizeof(sresid_report_opts), .nks = 2}},
        {"ks, nks 0", {.size = sizeof(sresid_report_opts), .ks = ks_ok}},
        {"draws > 10000", {.size = sizeof(sresid_report_opts), .null_draws = 10001}},
        {"draws < 0", {.size = sizeof(sresid_report_opts), .null_draws = -1}},
        {"restarts < 0", {.size = sizeof(sresid_report_opts), .kmeans_restarts = -1}},
        {"restarts > 1000", {.size = sizeof(sresid_report_opts), .kmeans_restarts = 1001}},
        {"threads > 4096", {.size = sizeof(sresid_report_opts), .threads = 4097}},
        {"threads < 0", {.size = sizeof(sresid_report_opts), .threads = -1}},
        {"probe bit", {.size = sizeof(sresid_report_opts), .probes = 0x80}},
        {"kind bit", {.size = sizeof(sresid_report_opts), .kinds = 1u << SRESID_KIND_COUNT}},
        {"flag", {.size = sizeof(sresid_report_opts), .flags = 0x2}},
        {"size", {.size = 4}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sresid_status st = sresid_report_residual(f.res, &bad[i].o, &r);
        ck_assert_msg(st == SRESID_ERR_INVALID_ARG, "%s: status %d", bad[i].what, (int)st);
        ck_assert_ptr_null(r);
        st = sresid_report_model(f.mb, &bad[i].o, &r);
        ck_assert_msg(st == SRESID_ERR_INVALID_ARG, "%s (model): status %d", bad[i].what, (int)st);
    }
    /* a larger struct from a newer header: zero tail fine, non-zero refused */
    unsigned char big[sizeof(sresid_report_opts) + 16] = {0};
    sresid_report_opts *ob = (sresid_report_opts *)(void *)big;
    ob->size = sizeof big;
    ob->probes = SRESID_PROBE_MOMENTS;
    ck_assert_ok(sresid_report_residual(f.res, ob, &r));
    sresid_report_free(r);
    r = NULL;
    big[sizeof big - 1] = 1;
    ck_assert_status(sresid_report_residual(f.res, ob, &r), SRESID_ERR_INVALID_ARG);
    /* NULL arguments */
    ck_assert_status(sresid_report_residual(NULL, NULL, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_residual(f.res, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_model(NULL, NULL, &r), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_null(r);

    /* the K list and the extremes that are allowed */
    sresid_report_opts o = {.size = sizeof o, .ks = ks_ok, .nks = 2, .bins = 1, .band = 1,
                            .probes = SRESID_PROBE_KMEANS | SRESID_PROBE_ENTROPY};
    ck_assert_ok(sresid_report_residual(f.res, &o, &r));
    sresid_kmeans_result kr = {.size = sizeof kr};
    ck_assert_ok(sresid_report_tensor_kmeans(r, 1, 1, &kr));
    ck_assert_int_eq(kr.k, 5);
    ck_assert_status(sresid_report_tensor_kmeans(r, 1, 2, &kr), SRESID_ERR_INVALID_ARG);
    /* one bin holds everything: 0 bits */
    ck_assert_double_eq(group_of(r, SRESID_GROUP_ALL).entropy_bits, 0);

    /* accessors check their arguments */
    sresid_tensor_report t = {.size = sizeof t};
    ck_assert_status(sresid_report_tensor(r, f.n, &t), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_tensor(NULL, 0, &t), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_tensor(r, 0, NULL), SRESID_ERR_INVALID_ARG);
    t.size = sizeof t - 8;
    ck_assert_status(sresid_report_tensor(r, 0, &t), SRESID_ERR_INVALID_ARG);
    sresid_correlation_report c = {.size = sizeof c};
    ck_assert_status(sresid_report_pair(r, 1000, &c), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid_report_layer_correlation(r, 1000, &c), SRESID_ERR_INVALID_ARG);
    ck_assert_uint_eq(sresid_report_tensor_count(NULL), 0);
    ck_assert_uint_eq(sresid_report_layer_count(NULL), 0);
    ck_assert_uint_eq(sresid_report_pair_count(NULL), 0);
    ck_assert_uint_eq(sresid_report_layer_correlation_count(NULL), 0);
    sresid_report_free(r);
    sresid_report_free(NULL);
    fixture_free(&f);
}
END_TEST

/* Edge cases: an empty residual, a zero residual (a model against itself),
 * constant tensors and a tensor with no finite value. */
START_TEST(degenerate_inputs)
{
    fixture f;
    fixture_make(&f, 11);
    sresid_residual *self = NULL;
    ck_assert_ok(sresid_residual_create(f.mb, f.mb, NULL, &self));
    sresid_report *r = NULL;
    ck_assert_ok(sresid_report_residual(self, NULL, &r));
    sresid_tensor_report t = tensor_of(r, "model.layers.0.self_attn.q_proj.weight", NULL);
    ck_assert_uint_eq(t.count, (uint64_t)(D * D));
    ck_assert_double_eq(t.mean, 0);
    ck_assert(isnan(t.kurtosis));          /* undefined for a constant */
    ck_assert_double_eq(t.entropy_bits, 0); /* one value, one bin */
    ck_assert(isnan(t.entropy_random_bits));
    ck_assert(isnan(t.pr));                 /* zero matrix */
    sresid_correlation_report c = {.size = sizeof c};
    ck_assert_ok(sresid_report_layer_correlation(r, 0, &c));
    ck_assert(isnan(c.r));
    ck_assert_uint_eq(c.pairs, 0);
    char *js = NULL;
    ck_assert_ok(sresid_report_json(r, 0, &js));
    json_t *root = json_loads(js, 0, NULL);
    ck_assert_ptr_nonnull(root);
    ck_assert(json_is_null(json_object_get(json_object_get(json_object_get(root, "groups"), "all"),
                                           "kurtosis")));
    json_decref(root);
    sresid_free(js);
    sresid_report_free(r);
    sresid_residual_free(self);

    /* nothing paired at all */
    sresid_model *empty = NULL;
    ck_assert_ok(sresid_model_create(NULL, &empty));
    sresid_pair_opts po = {.size = sizeof po, .flags = SRESID_PAIR_SKIP_MISMATCHED};
    ck_assert_ok(sresid_residual_create(empty, f.mt, &po, &self));
    ck_assert_ok(sresid_report_residual(self, NULL, &r));
    ck_assert_uint_eq(sresid_report_tensor_count(r), 0);
    ck_assert_uint_eq(sresid_report_layer_count(r), 0);
    ck_assert_uint_eq(group_of(r, SRESID_GROUP_ALL).tensors, 0);
    ck_assert(isnan(group_of(r, SRESID_GROUP_ALL).entropy_bits));
    ck_assert_ok(sresid_report_json(r, 0, &js));
    root = json_loads(js, 0, NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(root, "skipped")), f.n);
    json_t *first = json_array_get(json_object_get(root, "skipped"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "reason")), "only in trained");
    json_decref(root);
    sresid_free(js);
    sresid_report_free(r);
    sresid_residual_free(self);

    /* a tensor of NaNs and an empty tensor */
    float nans[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    const int64_t s23[2] = {2, 3}, s0[2] = {0, 4};
    ck_assert_ok(sresid_model_add_tensor(empty, "model.layers.0.self_attn.o_proj.weight",
                                         SRESID_DTYPE_F32, 2, s23, nans, sizeof nans, 0));
    ck_assert_ok(sresid_model_add_tensor(empty, "model.layers.0.mlp.gate_proj.weight",
                                         SRESID_DTYPE_F32, 2, s0, NULL, 0, 0));
    ck_assert_ok(sresid_report_model(empty, NULL, &r));
    t = tensor_of(r, "model.layers.0.self_attn.o_proj.weight", NULL);
    ck_assert_uint_eq(t.count, 0);
    ck_assert_uint_eq(t.nonfinite, 6);
    ck_assert(isnan(t.mean) && isnan(t.entropy_bits) && isnan(t.pr) && isnan(t.hoyer));
    t = tensor_of(r, "model.layers.0.mlp.gate_proj.weight", NULL);
    ck_assert_uint_eq(t.count, 0);
    ck_assert_uint_eq(t.nonfinite, 0);
    ck_assert_uint_eq(group_of(r, SRESID_GROUP_ALL).nonfinite, 6);
    ck_assert_uint_eq(sresid_report_layer_count(r), 1);
    ck_assert_uint_eq(sresid_report_layer_correlation_count(r), 0);
    sresid_report_free(r);

    /* a 1 x N view (a 1x1 convolution read out-first) has no matrix probes */
    float row[8] = {1, -2, 3, -4, 5, -6, 7, 9};
    const int64_t s18[4] = {1, 1, 2, 4};
    ck_assert_ok(sresid_model_add_tensor(empty, "conv.pointwise", SRESID_DTYPE_F32, 4, s18, row,
                                         sizeof row, 0));
    ck_assert_ok(sresid_report_model(empty, NULL, &r));
    t = tensor_of(r, "conv.pointwise", NULL);
    ck_assert_int_eq(t.rows, 1);
    ck_assert_int_eq(t.is_matrix, 0);
    ck_assert(isnan(t.pr) && isnan(t.lowfreq_ratio));
    ck_assert_uint_eq(t.count, 8);
    sresid_report_free(r);
    /* read out-last it is a 2 x 4 matrix */
    ck_assert_ok(sresid_model_set_layout(empty, SRESID_LAYOUT_OUT_LAST));
    ck_assert_ok(sresid_report_model(empty, NULL, &r));
    t = tensor_of(r, "conv.pointwise", NULL);
    ck_assert_int_eq(t.is_matrix, 1);
    ck_assert(t.pr >= 1 && t.pr <= 2);
    sresid_report_free(r);
    sresid_model_free(empty);
    fixture_free(&f);
}
END_TEST

Suite *suite_report(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, per_tensor_figures);
    tcase_add_test(tc, groups_pool_the_concatenation);
    tcase_add_test(tc, layers_and_correlation);
    tcase_add_test(tc, stacks_are_distinct_layers);
    tcase_add_test(tc, kinds_filter_and_probe_mask);
    tcase_add_test(tc, nonfinite_counted_or_fatal);
    tcase_add_test(tc, progress_and_threads);
    tcase_add_test(tc, model_report_and_nulls);
    tcase_add_test(tc, json_document);
    tcase_add_test(tc, save_json_is_atomic);
    tcase_add_test(tc, options_validated);
    tcase_add_test(tc, degenerate_inputs);
    suite_add_tcase(s, tc);
    return s;
}
