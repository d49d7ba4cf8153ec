/* Batches, validation loss and full-parameter training (AdamW through the
 * library's masked optimiser), data-parallel over a fixed number of
 * shards so the result does not depend on the thread count. */
#ifndef DEMO_TRAIN_H
#define DEMO_TRAIN_H

#include <stdint.h>

#include "corpus.h"
#include "gpt.h"
#include "progress.h"

/* batch sequences of context + 1 tokens from random places of span,
 * drawn from seed: inputs x and next-token targets y, batch * T each. */
void demo_batch(const demo_span *span, int context, int batch, uint64_t seed, uint8_t *x,
                uint8_t *y);

/* Mean cross-entropy (nats per token) over up to max_windows evenly spaced
 * windows of span, in batches of w's capacity. */
double demo_eval(const gpt *g, const float *params, gpt_work *w, int batch,
                 const demo_span *span, int max_windows);

/* Learning rate at step s of n: linear warm-up over warmup steps, then a
 * cosine from peak down to floor. */
double demo_lr(int s, int n, int warmup, double peak, double floor);

typedef struct demo_train_opts {
    int steps;
    int batch;          /* sequences per step (split across two shards when even) */
    int warmup;
    double lr, lr_min;  /* schedule (demo_lr) */
    double weight_decay;/* on the projection and embedding matrices; norms have none */
    double clip;        /* global gradient-norm clip; 0 = none */
    int threads;        /* 1 or 2 (one shard per thread) */
    uint64_t seed;      /* batches */
} demo_train_opts;

/* Train every parameter in place on span. Returns 0, or -1 with a message
 * (from the library) in err. mean_loss_last gets the mean training loss of
 * the last tenth of the steps. */
int demo_train_full(const gpt *g, float *params, const demo_span *span,
                    const demo_train_opts *o, demo_progress *progress, double *mean_loss_last,
                    char *err, size_t errlen);

#endif /* DEMO_TRAIN_H */
