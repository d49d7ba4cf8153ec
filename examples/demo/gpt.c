/* The demo's transformer: layout, initial weights, forward and backward.
 * Products go to BLIS with a per-call thread count (a runtime object), so
 * several models can train side by side on one thread each. */
#include "gpt.h"

#include <blis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define RMS_EPS 1e-5f
#define GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

const char *gpt_config_check(const gpt_config *c)
{
    if (c->vocab < 2 || c->vocab > 256)
        return "the vocabulary must hold 2 to 256 symbols";
    if (c->dim < 2 || c->dim > 4096)
        return "the width must be in [2, 4096]";
    if (c->layers < 1 || c->layers > 64)
        return "the layer count must be in [1, 64]";
    if (c->heads < 1 || c->heads > c->dim || c->dim % c->heads != 0)
        return "the head count must divide the width";
    if (c->context < 2 || c->context > 4096)
        return "the context must be in [2, 4096]";
    return NULL;
}

static void add_tensor(gpt *g, const char *name, int ndim, int64_t rows, int64_t cols,
                       int is_matrix, size_t *offset_out)
{
    gpt_tensor *t = &g->tensors[g->ntensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = rows;
    t->shape[1] = ndim == 2 ? cols : 0;
    t->numel = (size_t)rows * (size_t)(ndim == 2 ? cols : 1);
    t->offset = g->nparams;
    t->is_matrix = is_matrix;
    g->nparams += t->numel;
    *offset_out = t->offset;
}

int gpt_init(gpt *g, const gpt_config *c)
{
    memset(g, 0, sizeof *g);
    g->cfg = *c;
    int d = c->dim, L = c->layers;
    g->tensors = calloc((size_t)(8 * L + 4), sizeof *g->tensors);
    g->layer = calloc((size_t)L, sizeof *g->layer);
    if (!g->tensors || !g->layer) {
        gpt_free(g);
        return -1;
    }
    char name[64];
    add_tensor(g, "model.embed_tokens.weight", 2, c->vocab, d, 0, &g->tok);
    add_tensor(g, "model.embed_positions.weight", 2, c->context, d, 0, &g->pos);
    for (int l = 0; l < L; l++) {
        gpt_layer_at *a = &g->layer[l];
#define T(suffix, ndim, r, cc, mat, field)                                                     \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                              \
    add_tensor(g, name, ndim, r, cc, mat, &a->field)
        T("input_layernorm.weight", 1, d, 0, 0, ln1);
        T("self_attn.q_proj.weight", 2, d, d, 1, wq);
        T("self_attn.k_proj.weight", 2, d, d, 1, wk);
        T("self_attn.v_proj.weight", 2, d, d, 1, wv);
        T("self_attn.o_proj.weight", 2, d, d, 1, wo);
        T("post_attention_layernorm.weight", 1, d, 0, 0, ln2);
        T("mlp.up_proj.weight", 2, 4 * d, d, 1, up);
        T("mlp.down_proj.weight", 2, d, 4 * d, 1, down);
#undef T
    }
    add_tensor(g, "model.norm.weight", 1, d, 0, 0, &g->lnf);
    add_tensor(g, "lm_head.weight", 2, c->vocab, d, 0, &g->head);
    return 0;
}

void gpt_free(gpt *g)
{
    free(g->tensors);
    free(g->layer);
    g->tensors = NULL;
    g->layer = NULL;
}

float *gpt_alloc_params(const gpt *g)
{
    return calloc(g->nparams + GPT_SLACK, sizeof(float));
}

void gpt_init_params(const gpt *g, float *params, uint64_t seed)
{
    demo_rng r;
    demo_rng_seed(&r, seed);
    double out_scale = 1.0 / sqrt(2.0 * g->cfg.layers);
    for (size_t i = 0; i < g->ntensors; i++) {
        const gpt_tensor *t = &g->tensors[i];
        float *p = params + t->offset;
        if (t->ndim == 1) {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = 1.0f;
            continue;
        }
        double sd = 0.02;
        if (strstr(t->name, "o_proj") || strstr(t->name, "down_proj"))
            sd *= out_scale;
        for (size_t j = 0; j < t->numel; j++)
            p[j] = (float)(sd * demo_rng_normal(&r));
    }
}

/* ---- activations ---- */

struct gpt_work {
    int cap, threads;
    int batch;            /* of the last forward */
    const uint8_t *x, *y; /* borrowed during forward + backward */
    /* forward, per layer l at l * (cap * T * width) */
    float *X;        /* residual stream entering layer l; layer L's is the final input */
    float *H1, *Q, *K, *V, *A, *Xm, *H2, *U, *G, *Th; /* Th: GELU's tanh */
    float *r1, *r2;  /* 1/rms per position */
    float *P;        /* attention probabilities, batch x heads x T x T */
    float *Hf, *rf, *logits;
    /* backward scratch */
    float *dX, *dH, *dA, *dQ, *dK, *dV, *dU, *dS;
};

static float *buf(size_t n)
{
    return calloc(n + GPT_SLACK, sizeof(float));
}

gpt_work *gpt_work_create(const gpt *g, int batch, int threads)
{
    const gpt_config *c = &g->cfg;
    gpt_work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cap = batch;
    w->threads = threads > 0 ? threads : 1;
    size_t L = (size_t)c->layers, T = (size_t)c->context, d = (size_t)c->dim;
    size_t N = (size_t)batch * T, H = (size_t)c->heads;
    w->X = buf((L + 1) * N * d);
    w->H1 = buf(L * N * d);
    w->Q = buf(L * N * d);
    w->K = buf(L * N * d);
    w->V = buf(L * N * d);
    w->A = buf(L * N * d);
    w->Xm = buf(L * N * d);
    w->H2 = buf(L * N * d);
    w->U = buf(L * N * 4 * d);
    w->G = buf(L * N * 4 * d);
    w->Th = buf(L * N * 4 * d);
    w->r1 = buf(L * N);
    w->r2 = buf(L * N);
    w->P = buf(L * (size_t)batch * H * T * T);
    w->Hf = buf(N * d);
    w->rf = buf(N);
    w->logits = buf(N * (size_t)c->vocab);
    w->dX = buf(N * d);
    w->dH = buf(N * 4 * d);
    w->dA = buf(N * d);
    w->dQ = buf(N * d);
    w->dK = buf(N * d);
    w->dV = buf(N * d);
    w->dU = buf(N * 4 * d);
    w->dS = buf(T * T);
    float *all[] = {w->X,  w->H1, w->Q,  w->K,      w->V,  w->A,  w->Xm, w->H2,
                    w->U,  w->G,  w->Th, w->r1, w->r2,     w->P,  w->Hf, w->rf, w->logits,
                    w->dX, w->dH, w->dA, w->dQ,     w->dK, w->dV, w->dU, w->dS};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i]) {
            gpt_work_free(w);
            return NULL;
        }
    return w;
}

void gpt_work_free(gpt_work *w)
{
    if (!w)
        return;
    float *all[] = {w->X,  w->H1, w->Q,  w->K,      w->V,  w->A,  w->Xm, w->H2,
                    w->U,  w->G,  w->Th, w->r1, w->r2,     w->P,  w->Hf, w->rf, w->logits,
                    w->dX, w->dH, w->dA, w->dQ,     w->dK, w->dV, w->dU, w->dS};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(w);
}

/* ---- kernels ---- */

/* C = alpha op(A) op(B) + beta C, row-major with row strides, on w's threads. */
static void mm(const gpt_work *w, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(w->threads, &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL,
                 &rntm);
}

/* Y[N, out] = X[N, in] W^T for a weight stored [out, in]. */
static void linear(const gpt_work *w, int64_t N, int64_t in, int64_t out, const float *X,
                   const float *W, float *Y)
{
    mm(w, 0, 1, N, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
}

/* The backward of linear: dX (+)= dY W (beta 1 adds), dW += dY^T X. */
static void linear_back(const gpt_work *w, int64_t N, int64_t in, int64_t out, const float *X,
                        const float *W, const float *dY, float *dX, float beta, float *dW)
{
    if (dX)
        mm(w, 0, 0, N, in, out, 1.0f, dY, out, W, in, beta, dX, in);
    mm(w, 1, 0, out, in, N, 1.0f, dY, out, X, in, 1.0f, dW, in);
}

static void rmsnorm(int64_t N, int64_t d, const float *X, const float *wt, float *Y, float *r)
{
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + n * d;
        float *y = Y + n * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += (double)x[j] * x[j];
        float rn = (float)(1.0 / sqrt(ss / (double)d + RMS_EPS));
        r[n] = rn;
        for (int64_t j = 0; j < d; j++)
            y[j] = x[j] * rn * wt[j];
    }
}

/* Adds the input gradient into dX and the weight gradient into dw. */
static void rmsnorm_back(int64_t N, int64_t d, const float *X, const float *wt, const float *r,
                         const float *dY, float *dX, float *dw, float scale_dw)
{
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + n * d, *dy = dY + n * d;
        float *dx = dX + n * d;
        float rn = r[n];
        double dot = 0;
        for (int64_t j = 0; j < d; j++) {
            float xh = x[j] * rn;
            dw[j] += scale_dw * dy[j] * xh;
            dot += (double)(dy[j] * wt[j]) * xh;
        }
        float m = (float)(dot / (double)d);
        for (int64_t j = 0; j < d; j++)
            dx[j] += rn * (dy[j] * wt[j] - x[j] * rn * m);
    }
}

/* The element-wise GELU loops are vectorised where the compiler allows
 * (GCC's -O2 cost model and its trapping-math default leave them scalar);
 * the helpers they call must then be inlined into them. */
#if defined(__GNUC__) && !defined(__clang__)
#define VECTORIZE __attribute__((optimize("O3", "no-trapping-math")))
#define INLINE inline __attribute__((always_inline))
#else
#define VECTORIZE
#define INLINE inline
#endif

/* 2^t for t in [-126, 126]: t = n + f with |f| <= 1/2, 2^f by its Taylor
 * series in f ln 2 to degree 6 (relative error below 2e-7), 2^n in the
 * exponent bits. Plain arithmetic, so the GELU loops vectorise. */
static INLINE float exp2_approx(float t)
{
    float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 */
    float f = (t - n) * 0.6931471805599453f;
    float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720))))));
    union {
        int32_t i;
        float x;
    } u = {.i = ((int32_t)n + 127) << 23};
    return p * u.x;
}

/* tanh(z) = 1 - 2 / (1 + e^(2z)); |z| > 9 is +-1 to float precision. The
 * library's tanhf dominated a training step. Absolute error about 2e-7. */
static INLINE float fast_tanh(float z)
{
    z = z < 9.0f ? z : 9.0f;
    z = z > -9.0f ? z : -9.0f;
    return 1.0f - 2.0f / (1.0f + exp2_approx(2.8853900817779268f * z)); /* 2 log2(e) z */
}

/* GELU (tanh form); t receives the tanh for the backward pass. */
static INLINE float gelu(float u, float *t)
{
    *t = fast_tanh(GELU_C * (u + GELU_A * u * u * u));
    return 0.5f * u * (1.0f + *t);
}

static INLINE float gelu_grad(float u, float t)
{
    return 0.5f * (1.0f + t) + 0.5f * u * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * u * u);
}


VECTORIZE static void gelu_forward(size_t n, const float *restrict U, float *restrict G,
                                   float *restrict Th)
{
    for (size_t i = 0; i < n; i++)
        G[i] = gelu(U[i], &Th[i]);
}

VECTORIZE static void gelu_backward(size_t n, const float *restrict U,
                                    const float *restrict Th, float *restrict dU)
{
    for (size_t i = 0; i < n; i++)
        dU[i] *= gelu_grad(U[i], Th[i]);
}

/* ---- forward ---- */

double gpt_forward(const gpt *g, const float *params, gpt_work *w, const uint8_t *x,
                   const uint8_t *y, int batch)
{
    const gpt_config *c = &g->cfg;
    const int64_t T = c->context, d = c->dim, H = c->heads, hd = d / H, V = c->vocab;
    const int64_t N = (int64_t)batch * T, cap = (int64_t)w->cap * T;
    const float sc = 1.0f / sqrtf((float)hd);
    w->batch = batch;
    w->x = x;
    w->y = y;

    const float *tok = params + g->tok, *pos = params + g->pos;
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < d; j++)
            w->X[n * d + j] = tok[(int64_t)x[n] * d + j] + pos[(n % T) * d + j];

    for (int l = 0; l < c->layers; l++) {
        const gpt_layer_at *a = &g->layer[l];
        size_t o = (size_t)l * (size_t)(cap * d), o4 = 4 * o;
        float *X = w->X + o, *Xn = w->X + o + cap * d;
        float *H1 = w->H1 + o, *Q = w->Q + o, *K = w->K + o, *Vv = w->V + o, *A = w->A + o;
        float *Xm = w->Xm + o, *H2 = w->H2 + o, *U = w->U + o4, *G = w->G + o4, *Th = w->Th + o4;
        float *P = w->P + (size_t)l * (size_t)(w->cap * H * T * T);

        rmsnorm(N, d, X, params + a->ln1, H1, w->r1 + (size_t)l * (size_t)cap);
        linear(w, N, d, d, H1, params + a->wq, Q);
        linear(w, N, d, d, H1, params + a->wk, K);
        linear(w, N, d, d, H1, params + a->wv, Vv);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t h = 0; h < H; h++) {
                float *S = P + (b * H + h) * T * T;
                size_t at = (size_t)(b * T * d + h * hd);
                mm(w, 0, 1, T, T, hd, sc, Q + at, d, K + at, d, 0.0f, S, T);
                for (int64_t i = 0; i < T; i++) {
                    float *s = S + i * T, mx = s[0];
                    for (int64_t j = 1; j <= i; j++)
                        mx = s[j] > mx ? s[j] : mx;
                    double sum = 0;
                    for (int64_t j = 0; j <= i; j++) {
                        s[j] = expf(s[j] - mx);
                        sum += s[j];
                    }
                    float inv = (float)(1.0 / sum);
                    for (int64_t j = 0; j <= i; j++)
                        s[j] *= inv;
                    for (int64_t j = i + 1; j < T; j++)
                        s[j] = 0.0f;
                }
                mm(w, 0, 0, T, hd, T, 1.0f, S, T, Vv + at, d, 0.0f, A + at, d);
            }
        linear(w, N, d, d, A, params + a->wo, Xm);
        for (int64_t i = 0; i < N * d; i++)
            Xm[i] += X[i];
        rmsnorm(N, d, Xm, params + a->ln2, H2, w->r2 + (size_t)l * (size_t)cap);
        linear(w, N, d, 4 * d, H2, params + a->up, U);
        gelu_forward((size_t)(N * 4 * d), U, G, Th);
        linear(w, N, 4 * d, d, G, params + a->down, Xn);
        for (int64_t i = 0; i < N * d; i++)
            Xn[i] += Xm[i];
    }

    const float *XL = w->X + (size_t)c->layers * (size_t)(cap * d);
    rmsnorm(N, d, XL, params + g->lnf, w->Hf, w->rf);
    linear(w, N, d, V, w->Hf, params + g->head, w->logits);
    double loss = 0;
    for (int64_t n = 0; n < N; n++) {
        float *z = w->logits + n * V, mx = z[0];
        for (int64_t v = 1; v < V; v++)
            mx = z[v] > mx ? z[v] : mx;
        double sum = 0, zy = z[y[n]];
        for (int64_t v = 0; v < V; v++) {
            z[v] = expf(z[v] - mx);
            sum += z[v];
        }
        loss += log(sum) + (double)mx - zy;
        float inv = (float)(1.0 / sum);
        for (int64_t v = 0; v < V; v++)
            z[v] *= inv; /* kept as probabilities for the backward */
    }
    return loss;
}

/* ---- backward ---- */

void gpt_backward(const gpt *g, const float *params, gpt_work *w, float *grad, float scale)
{
    const gpt_config *c = &g->cfg;
    const int64_t T = c->context, d = c->dim, H = c->heads, hd = d / H, V = c->vocab;
    const int64_t N = (int64_t)w->batch * T, cap = (int64_t)w->cap * T;
    const float sc = 1.0f / sqrtf((float)hd);

    /* d loss / d logits = scale (p - onehot), in place over the probabilities */
    float *dz = w->logits;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t v = 0; v < V; v++)
            dz[n * V + v] *= scale;
        dz[n * V + w->y[n]] -= scale;
    }
    float *dX = w->dX, *dH = w->dH;
    linear_back(w, N, d, V, w->Hf, params + g->head, dz, dH, 0.0f, grad + g->head);
    memset(dX, 0, (size_t)(N * d) * sizeof(float));
    const float *XL = w->X + (size_t)c->layers * (size_t)(cap * d);
    rmsnorm_back(N, d, XL, params + g->lnf, w->rf, dH, dX, grad + g->lnf, 1.0f);

    for (int l = c->layers - 1; l >= 0; l--) {
        const gpt_layer_at *a = &g->layer[l];
        size_t o = (size_t)l * (size_t)(cap * d), o4 = 4 * o;
        const float *X = w->X + o, *H1 = w->H1 + o, *Q = w->Q + o, *K = w->K + o;
        const float *Vv = w->V + o, *A = w->A + o, *Xm = w->Xm + o, *H2 = w->H2 + o;
        const float *U = w->U + o4, *G = w->G + o4, *Th = w->Th + o4;
        const float *P = w->P + (size_t)l * (size_t)(w->cap * H * T * T);

        /* MLP: X_{l+1} = Xm + gelu(H2 Wup^T) Wdown^T; dX holds d/dX_{l+1}, and
         * becomes d/dXm by the residual path plus the MLP branch. */
        float *dU = w->dU;
        linear_back(w, N, 4 * d, d, G, params + a->down, dX, dU, 0.0f, grad + a->down);
        gelu_backward((size_t)(N * 4 * d), U, Th, dU);
        linear_back(w, N, d, 4 * d, H2, params + a->up, dU, dH, 0.0f, grad + a->up);
        rmsnorm_back(N, d, Xm, params + a->ln2, w->r2 + (size_t)l * (size_t)cap, dH, dX,
                     grad + a->ln2, 1.0f);

        /* attention: Xm = X_l + attn(H1) Wo^T */
        float *dA = w->dA, *dQ = w->dQ, *dK = w->dK, *dV = w->dV, *dS = w->dS;
        linear_back(w, N, d, d, A, params + a->wo, dX, dA, 0.0f, grad + a->wo);
        for (int64_t b = 0; b < w->batch; b++)
            for (int64_t h = 0; h < H; h++) {
                const float *Pb = P + (b * H + h) * T * T;
                size_t at = (size_t)(b * T * d + h * hd);
                mm(w, 0, 1, T, T, hd, 1.0f, dA + at, d, Vv + at, d, 0.0f, dS, T); /* dP */
                mm(w, 1, 0, T, hd, T, 1.0f, Pb, T, dA + at, d, 0.0f, dV + at, d);
                for (int64_t i = 0; i < T; i++) {
                    const float *p = Pb + i * T;
                    float *s = dS + i * T;
                    double dot = 0;
                    for (int64_t j = 0; j <= i; j++)
                        dot += (double)p[j] * s[j];
                    for (int64_t j = 0; j <= i; j++)
                        s[j] = p[j] * (s[j] - (float)dot);
                    for (int64_t j = i + 1; j < T; j++)
                        s[j] = 0.0f;
                }
                mm(w, 0, 0, T, hd, T, sc, dS, T, K + at, d, 0.0f, dQ + at, d);
                mm(w, 1, 0, T, hd, T, sc, dS, T, Q + at, d, 0.0f, dK + at, d);
            }
        linear_back(w, N, d, d, H1, params + a->wq, dQ, dH, 0.0f, grad + a->wq);
        linear_back(w, N, d, d, H1, params + a->wk, dK, dH, 1.0f, grad + a->wk);
        linear_back(w, N, d, d, H1, params + a->wv, dV, dH, 1.0f, grad + a->wv);
        rmsnorm_back(N, d, X, params + a->ln1, w->r1 + (size_t)l * (size_t)cap, dH, dX,
                     grad + a->ln1, 1.0f);
    }

    float *dtok = grad + g->tok, *dpos = grad + g->pos;
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < d; j++) {
            dtok[(int64_t)w->x[n] * d + j] += dX[n * d + j];
            dpos[(n % T) * d + j] += dX[n * d + j];
        }
}
