/* One amplitude-only fine-tuning run. Each step: materialise the selected
 * matrices into the model's weights (the library only spends work on the
 * scores that moved), forward and backward on a task batch, project each
 * dW onto the score gradient (only the entries the mask allows), and one
 * masked AdamW step on the score vector. */
#include "tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "train.h"

const char *demo_rule_name(int rule)
{
    static const char *const names[DEMO_RULE_COUNT] = {"all", "magnitude", "random",
                                                       "gradient", "warmup", "dynamic"};
    return rule >= 0 && rule < DEMO_RULE_COUNT ? names[rule] : "?";
}

typedef struct run {
    const demo_tune_ctx *c;
    float *params, *grad, *sgrad, *saliency;
    uint8_t *x, *y;
    gpt_work *w;
    sresid_amp *amp;
    size_t nt;           /* selected tensors */
    size_t *at;          /* their offsets in params */
    int64_t *ld;         /* their row strides (cols) */
    uint64_t n;          /* scores */
    sresid_mask *mask, *changed;
    sresid_optim *opt;
} run;

#define LIB(call, ...)                                                                         \
    do {                                                                                       \
        sresid_status st_ = (call);                                                            \
        if (st_) {                                                                             \
            snprintf(cell->err, sizeof cell->err, __VA_ARGS__);                                \
            size_t len_ = strlen(cell->err);                                                   \
            snprintf(cell->err + len_, sizeof cell->err - len_, ": %s", sresid_last_error());  \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

/* Weights from the current scores. */
static sresid_status materialize(run *r)
{
    for (size_t t = 0; t < r->nt; t++) {
        sresid_status st = sresid_amp_materialize(r->amp, t, r->params + r->at[t], r->ld[t], 0);
        if (st)
            return st;
    }
    return SRESID_OK;
}

/* Forward and backward on batch seed; dW of every tensor in r->grad. */
static void forward_backward(run *r, uint64_t seed)
{
    const gpt *g = r->c->g;
    int T = g->cfg.context, B = r->c->batch;
    demo_batch(r->c->train, T, B, seed, r->x, r->y);
    memset(r->grad, 0, g->nparams * sizeof(float));
    gpt_forward(g, r->params, r->w, r->x, r->y, B);
    gpt_backward(g, r->params, r->w, r->grad, 1.0f / (float)(B * T));
}

/* Score gradient of each selected tensor (only mask's entries; NULL: all). */
static sresid_status project(run *r, float *out, const sresid_mask *mask, uint32_t flags)
{
    for (size_t t = 0; t < r->nt; t++) {
        sresid_status st = sresid_amp_project(r->amp, t, r->grad + r->at[t], r->ld[t], out,
                                              mask, flags);
        if (st)
            return st;
    }
    return SRESID_OK;
}

int demo_tune_run(const demo_tune_ctx *c, demo_cell *cell, demo_progress *progress)
{
    const gpt *g = c->g;
    double t0 = demo_now();
    run r = {.c = c};
    uint8_t *flags = NULL;
    cell->failed = 0;
    cell->err[0] = '\0';
    size_t tokens = (size_t)c->batch * (size_t)g->cfg.context;
    r.params = gpt_alloc_params(g);
    r.grad = gpt_alloc_params(g);
    r.x = malloc(tokens);
    r.y = malloc(tokens);
    r.w = gpt_work_create(g, c->batch, 1);
    if (!r.params || !r.grad || !r.x || !r.y || !r.w) {
        snprintf(cell->err, sizeof cell->err, "out of memory");
        goto fail;
    }
    memcpy(r.params, c->base, g->nparams * sizeof(float));

    /* The basis: every attention and MLP matrix, one score per singular value. */
    sresid_amp_opts ao = {.size = sizeof ao,
                          .layout = SRESID_AMP_DIAG,
                          .kinds = (1u << SRESID_KIND_ATTENTION) | (1u << SRESID_KIND_MLP),
                          .threads = 1};
    LIB(sresid_amp_create(c->base_model, &ao, &r.amp), "amplitude basis");
    r.nt = sresid_amp_count(r.amp);
    r.n = sresid_amp_score_count(r.amp);
    r.at = calloc(r.nt, sizeof *r.at);
    r.ld = calloc(r.nt, sizeof *r.ld);
    r.sgrad = calloc(r.n + 1, sizeof(float));
    r.saliency = calloc(r.n + 1, sizeof(float));
    flags = malloc(r.n + 1);
    if (!r.at || !r.ld || !r.sgrad || !r.saliency || !flags) {
        snprintf(cell->err, sizeof cell->err, "out of memory");
        goto fail;
    }
    for (size_t t = 0; t < r.nt; t++) {
        sresid_amp_tensor_info info = {.size = sizeof info};
        LIB(sresid_amp_tensor(r.amp, t, &info), "amplitude tensor %zu", t);
        r.at[t] = g->tensors[info.index].offset; /* the view keeps the model's order */
        r.ld[t] = info.cols;
    }
    float *s = sresid_amp_scores(r.amp);
    const float *s0 = sresid_amp_initial_scores(r.amp);

    /* The starting mask (WARMUP trains densely first and selects later). */
    sresid_select_opts so = {.size = sizeof so, .seed = demo_mix(cell->seed, 0x5e1ec7)};
    switch (cell->rule) {
    case DEMO_RULE_ALL:
    case DEMO_RULE_WARMUP:
        LIB(sresid_mask_create(r.n, 1, &r.mask), "mask");
        break;
    case DEMO_RULE_MAGNITUDE:
    case DEMO_RULE_DYNAMIC:
        LIB(sresid_amp_select(r.amp, SRESID_RULE_MAGNITUDE, cell->fraction, &so, &r.mask),
            "magnitude selection");
        break;
    case DEMO_RULE_RANDOM:
        LIB(sresid_amp_select(r.amp, SRESID_RULE_RANDOM, cell->fraction, &so, &r.mask),
            "random selection");
        break;
    case DEMO_RULE_GRADIENT:
        /* Calibration: |dL/ds| summed over batches the training never sees
         * (their seeds are another stream); no update is made. */
        for (int b = 0; b < c->calib_batches; b++) {
            forward_backward(&r, demo_mix(cell->seed, 0xca1b0000u + (uint64_t)b));
            LIB(project(&r, r.saliency, NULL, SRESID_PROJECT_ABS), "calibration");
            demo_progress_add(progress, 1);
        }
        so.saliency = r.saliency;
        LIB(sresid_amp_select(r.amp, SRESID_RULE_GRADIENT, cell->fraction, &so, &r.mask),
            "gradient selection");
        break;
    default:
        snprintf(cell->err, sizeof cell->err, "unknown rule %d", cell->rule);
        goto fail;
    }
    if (cell->rule == DEMO_RULE_DYNAMIC)
        LIB(sresid_mask_create(r.n, 0, &r.changed), "mask");

    sresid_optim_opts oo = {.size = sizeof oo, .kind = SRESID_OPTIM_ADAMW, .lr = c->lr};
    LIB(sresid_optim_create(r.n, &oo, &r.opt), "optimiser");

    int dyn_last = (int)(c->dyn_stop * c->steps);
    for (int step = 0; step < c->steps; step++) {
        int dense = cell->rule == DEMO_RULE_WARMUP && step < c->warm_steps;
        LIB(materialize(&r), "materialising the weights at step %d", step + 1);
        forward_backward(&r, demo_mix(cell->seed, (uint64_t)step));
        /* DYNAMIC needs every score's gradient for its regrowth saliency. */
        const sresid_mask *pm = cell->rule == DEMO_RULE_DYNAMIC ? NULL : r.mask;
        LIB(project(&r, r.sgrad, pm, 0), "projecting the gradient at step %d", step + 1);
        if (cell->rule == DEMO_RULE_DYNAMIC)
            for (uint64_t i = 0; i < r.n; i++)
                r.saliency[i] += fabsf(r.sgrad[i]);
        LIB(sresid_optim_set_lr(r.opt, demo_lr(step, c->steps, c->warmup, c->lr, c->lr_min)),
            "learning rate");
        LIB(sresid_optim_step(r.opt, s, r.sgrad, r.n, r.mask), "score step %d", step + 1);

        if (dense && step + 1 == c->warm_steps) {
            /* Keep the fraction that moved most, with the values the warm-up
             * gave them (and their optimiser state); the rest go back to s0,
             * so exactly the selected scores differ from the base. */
            sresid_mask *keep = NULL;
            LIB(sresid_amp_select(r.amp, SRESID_RULE_WARMUP, cell->fraction, &so, &keep),
                "warm-up selection");
            sresid_mask_free(r.mask);
            r.mask = keep;
            LIB(sresid_mask_to_bytes(r.mask, flags, r.n), "mask");
            for (uint64_t i = 0; i < r.n; i++)
                if (!flags[i])
                    s[i] = s0[i];
        }
        if (cell->rule == DEMO_RULE_DYNAMIC && (step + 1) % c->dyn_every == 0 &&
            step + 1 <= dyn_last) {
            double share = c->dyn_share * 0.5 * (1 + cos(3.141592653589793 * (step + 1) / dyn_last));
            LIB(sresid_amp_drop_grow(r.amp, r.mask, share, r.saliency, 0, r.changed),
                "drop and grow at step %d", step + 1);
            LIB(sresid_optim_reset(r.opt, r.changed), "optimiser reset");
            memset(r.saliency, 0, r.n * sizeof(float));
        }
        demo_progress_add(progress, 1);
    }
    LIB(materialize(&r), "materialising the final weights");
    cell->val_loss = demo_eval(g, r.params, r.w, c->batch, c->val, c->eval_windows);
    cell->trainable = sresid_mask_count(r.mask);
    cell->scores = r.n;
    cell->seconds = demo_now() - t0;
    goto done;
fail:
    cell->failed = 1;
done:
    sresid_optim_free(r.opt);
    sresid_mask_free(r.mask);
    sresid_mask_free(r.changed);
    sresid_amp_free(r.amp);
    gpt_work_free(r.w);
    free(r.params);
    free(r.grad);
    free(r.sgrad);
    free(r.saliency);
    free(r.x);
    free(r.y);
    free(r.at);
    free(r.ld);
    free(flags);
    return cell->failed ? -1 : 0;
}
