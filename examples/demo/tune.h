/* Amplitude-only fine-tuning of the demo's model: the selected matrices of
 * the base become W0 = U diag(s0) V^T with U and V frozen, and only the
 * chosen scores s train (everything else frozen), under one of the
 * selection rules. One call runs one cell of the sweep. */
#ifndef DEMO_TUNE_H
#define DEMO_TUNE_H

#include <stdint.h>

#include <sparseresid/sparseresid.h>

#include "corpus.h"
#include "gpt.h"
#include "progress.h"

enum {
    DEMO_RULE_ALL,       /* every score (100 %: the same for all rules) */
    DEMO_RULE_MAGNITUDE, /* largest |s0| */
    DEMO_RULE_RANDOM,
    DEMO_RULE_GRADIENT,  /* largest |dL/ds| summed over calibration batches */
    DEMO_RULE_WARMUP,    /* dense warm-up, then largest |s - s0| */
    DEMO_RULE_DYNAMIC,   /* magnitude, then drop and grow every few steps */
    DEMO_RULE_COUNT
};

const char *demo_rule_name(int rule);

typedef struct demo_tune_ctx {
    const gpt *g;
    const float *base;              /* base parameters */
    const sresid_model *base_model; /* a view of base (demo_model_view) */
    const demo_span *train, *val;
    int steps, batch, eval_windows;
    double lr, lr_min;              /* AdamW on the scores, cosine schedule */
    int warmup;                     /* schedule warm-up steps */
    int calib_batches;              /* GRADIENT: calibration batches (no updates) */
    int warm_steps;                 /* WARMUP: dense steps, part of the budget */
    int dyn_every;                  /* DYNAMIC: steps between updates */
    double dyn_share;               /* DYNAMIC: first update's share, decaying to 0 */
    double dyn_stop;                /* DYNAMIC: no updates after this share of the steps */
} demo_tune_ctx;

typedef struct demo_cell {
    int rule;
    double fraction;     /* of the scores */
    int seed_index;
    uint64_t seed;       /* batches, random masks */
    /* results */
    uint64_t trainable;  /* scores allowed to train (at the end, for DYNAMIC) */
    uint64_t scores;     /* all scores */
    double val_loss;     /* task validation loss after training */
    double seconds;
    int failed;
    char err[256];
} demo_cell;

/* Run one cell; 0, or -1 with cell->err set (and cell->failed). */
int demo_tune_run(const demo_tune_ctx *ctx, demo_cell *cell, demo_progress *progress);

#endif /* DEMO_TUNE_H */
