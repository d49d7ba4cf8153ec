/* A plain double-precision forward pass of the demo's model, written
 * independently of examples/demo/gpt.c (naive loops, no BLIS): the reference
 * for the loss and, by central differences, for the gradient. */
#include "ref_gpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* y[n][o] = sum_i x[n][i] W[o][i] */
static void ref_linear(int N, int in, int out, const double *x, const double *W, double *y)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < in; i++)
                s += x[n * in + i] * W[o * in + i];
            y[n * out + o] = s;
        }
}

static void ref_rmsnorm(int N, int d, const double *x, const double *w, double *y)
{
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int j = 0; j < d; j++)
            ss += x[n * d + j] * x[n * d + j];
        double r = 1.0 / sqrt(ss / d + 1e-5);
        for (int j = 0; j < d; j++)
            y[n * d + j] = x[n * d + j] * r * w[j];
    }
}

double ref_gpt_loss(const ref_layout *lay, const double *p, const uint8_t *x, const uint8_t *y,
                    int batch)
{
    int T = lay->context, d = lay->dim, H = lay->heads, hd = d / H, V = lay->vocab;
    int N = batch * T;
    double *X = calloc((size_t)N * d, sizeof *X), *h = calloc((size_t)N * d, sizeof *h);
    double *q = calloc((size_t)N * d, sizeof *q), *k = calloc((size_t)N * d, sizeof *k);
    double *v = calloc((size_t)N * d, sizeof *v), *att = calloc((size_t)N * d, sizeof *att);
    double *o = calloc((size_t)N * d, sizeof *o), *u = calloc((size_t)N * 4 * d, sizeof *u);
    double *z = calloc((size_t)N * (V > d ? V : d), sizeof *z);
    double *s = calloc((size_t)T, sizeof *s);

    for (int n = 0; n < N; n++)
        for (int j = 0; j < d; j++)
            X[n * d + j] = p[lay->tok + x[n] * d + j] + p[lay->pos + (n % T) * d + j];
    for (int l = 0; l < lay->layers; l++) {
        const size_t *a = lay->layer[l]; /* ln1 q k v o ln2 up down */
        ref_rmsnorm(N, d, X, p + a[0], h);
        ref_linear(N, d, d, h, p + a[1], q);
        ref_linear(N, d, d, h, p + a[2], k);
        ref_linear(N, d, d, h, p + a[3], v);
        for (int b = 0; b < batch; b++)
            for (int hh = 0; hh < H; hh++)
                for (int i = 0; i < T; i++) {
                    double mx = -INFINITY, sum = 0;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int e = 0; e < hd; e++)
                            dot += q[(b * T + i) * d + hh * hd + e] *
                                   k[(b * T + j) * d + hh * hd + e];
                        s[j] = dot / sqrt((double)hd);
                        mx = s[j] > mx ? s[j] : mx;
                    }
                    for (int j = 0; j <= i; j++)
                        sum += (s[j] = exp(s[j] - mx));
                    for (int e = 0; e < hd; e++) {
                        double acc = 0;
                        for (int j = 0; j <= i; j++)
                            acc += s[j] / sum * v[(b * T + j) * d + hh * hd + e];
                        att[(b * T + i) * d + hh * hd + e] = acc;
                    }
                }
        ref_linear(N, d, d, att, p + a[4], o);
        for (int i = 0; i < N * d; i++)
            X[i] += o[i];
        ref_rmsnorm(N, d, X, p + a[5], h);
        ref_linear(N, d, 4 * d, h, p + a[6], u);
        for (int i = 0; i < N * 4 * d; i++) {
            double t = u[i];
            u[i] = 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t)));
        }
        ref_linear(N, 4 * d, d, u, p + a[7], o);
        for (int i = 0; i < N * d; i++)
            X[i] += o[i];
    }
    ref_rmsnorm(N, d, X, p + lay->lnf, h);
    ref_linear(N, d, V, h, p + lay->head, z);
    double loss = 0;
    for (int n = 0; n < N; n++) {
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < V; c++)
            mx = z[n * V + c] > mx ? z[n * V + c] : mx;
        for (int c = 0; c < V; c++)
            sum += exp(z[n * V + c] - mx);
        loss += log(sum) + mx - z[n * V + y[n]];
    }
    free(X), free(h), free(q), free(k), free(v), free(att), free(o), free(u), free(z), free(s);
    return loss;
}
