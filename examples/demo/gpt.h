/* A small GPT-style character-level language model: token and position
 * embeddings, pre-norm blocks (RMSNorm, multi-head causal self-attention
 * with q/k/v/o projections, a GELU MLP of width 4d), a final RMSNorm and a
 * separate output head. Forward and hand-written backward in float32 with
 * BLIS products.
 *
 * All parameters live in one float vector (the caller's), tensor after
 * tensor, each matrix stored [out, in] row-major as PyTorch does, under
 * Llama's tensor names, so the library's matrix view and kind rules apply
 * to a saved checkpoint unchanged. */
#ifndef DEMO_GPT_H
#define DEMO_GPT_H

#include <stddef.h>
#include <stdint.h>

/* Extra floats after every buffer handed to BLIS (BLIS 0.9 may read past
 * the end of a packed operand). */
#define GPT_SLACK 16

typedef struct gpt_config {
    int vocab;   /* token ids are 0 .. vocab - 1 (at most 256: bytes) */
    int dim;     /* d, a multiple of heads */
    int layers;
    int heads;
    int context; /* T, tokens per sequence */
} gpt_config;

/* Where tensor i sits in the parameter vector. */
typedef struct gpt_tensor {
    char name[64];
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* [out, in] for matrices */
    size_t offset;     /* first float */
    size_t numel;
    int is_matrix;     /* a projection (q/k/v/o, up, down) */
} gpt_tensor;

typedef struct gpt_layer_at {
    size_t ln1, wq, wk, wv, wo, ln2, up, down;
} gpt_layer_at;

typedef struct gpt {
    gpt_config cfg;
    size_t nparams;
    size_t ntensors;
    gpt_tensor *tensors;
    size_t tok, pos, lnf, head; /* offsets of the non-layer tensors */
    gpt_layer_at *layer;
} gpt;

/* Check a configuration; NULL when valid, else a message naming the problem. */
const char *gpt_config_check(const gpt_config *c);

/* Lay out the tensors of a valid configuration. Returns 0, or -1 when out
 * of memory. */
int gpt_init(gpt *g, const gpt_config *c);
void gpt_free(gpt *g);

/* A parameter (or gradient) vector of nparams floats plus BLIS slack, zeroed. */
float *gpt_alloc_params(const gpt *g);

/* The usual initial weights: projections and embeddings N(0, 0.02^2), the
 * output projections of each block (o_proj, down_proj) scaled by
 * 1/sqrt(2 layers), norm weights 1. */
void gpt_init_params(const gpt *g, float *params, uint64_t seed);

/* Activations for batches of up to `batch` sequences, and the BLIS thread
 * count of the products run with it. */
typedef struct gpt_work gpt_work;
gpt_work *gpt_work_create(const gpt *g, int batch, int threads);
void gpt_work_free(gpt_work *w);

/* Forward pass over `batch` sequences of context tokens x (batch * T ids),
 * with targets y (same size): the summed cross-entropy in nats over all
 * batch * T positions (divide by that count for the mean). Keeps what the
 * backward pass needs in w. */
double gpt_forward(const gpt *g, const float *params, gpt_work *w, const uint8_t *x,
                   const uint8_t *y, int batch);

/* Backward pass of the last forward: adds scale * d(summed loss)/d(param)
 * into grad (nparams floats), e.g. scale = 1 / (tokens in the whole batch). */
void gpt_backward(const gpt *g, const float *params, gpt_work *w, float *grad, float scale);

#endif /* DEMO_GPT_H */
