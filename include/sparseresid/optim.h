/*
 * libsparseresid — masked optimisers for a float32 parameter vector: SGD
 * with momentum and AdamW, stepping only the entries a mask allows.
 *
 * An optimiser owns its state (momentum; Adam's first and second moments)
 * for n entries and a step counter; the parameters and gradients are the
 * caller's. Entries the mask leaves out are not touched at all: their
 * parameter and their state stay bit-identical across any number of steps.
 * Exact update rules (float32 state, double scalars): docs/optim.md.
 *
 * Thread safety: functions taking a const sresid_optim * may run
 * concurrently; stepping needs one thread per optimiser or the caller's lock.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_OPTIM_H
#define SPARSERESID_OPTIM_H

#include "common.h"
#include "mask.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sresid_optim sresid_optim;

#define SRESID_OPTIM_ADAMW 1
#define SRESID_OPTIM_SGD   2

/* sresid_optim_opts.flags */
#define SRESID_OPTIM_NO_BIAS_CORRECTION 0x1u /* AdamW without 1 - beta^t */
#define SRESID_OPTIM_NESTEROV           0x2u /* SGD: Nesterov momentum */

/* Zero fields mean the defaults shown. Negative values, NaN, Inf, betas >= 1
 * are rejected. SGD momentum 0 (its default) is plain SGD. */
typedef struct sresid_optim_opts {
    size_t size;
    int32_t kind;        /* SRESID_OPTIM_*; default ADAMW */
    uint32_t flags;      /* SRESID_OPTIM_* */
    double lr;           /* learning rate; default 1e-3 */
    double beta1;        /* AdamW; default 0.9 */
    double beta2;        /* AdamW; default 0.999 */
    double eps;          /* AdamW; default 1e-8 */
    double weight_decay; /* decoupled (AdamW) or L2 added to the gradient (SGD); default 0 */
    double momentum;     /* SGD; default 0 */
} sresid_optim_opts;

/* An optimiser for vectors of n entries, state all zero, step counter 0.
 * *out is the caller's. Errors: INVALID_ARG, OVERFLOW, NOMEM. */
SRESID_API sresid_status sresid_optim_create(uint64_t n, const sresid_optim_opts *opts,
                                             sresid_optim **out);

/* Accepts NULL. */
SRESID_API void sresid_optim_free(sresid_optim *optim);

/* Entries n; 0 for NULL. */
SRESID_API uint64_t sresid_optim_size(const sresid_optim *optim);

/* Steps taken so far (the t of bias correction); 0 for NULL. */
SRESID_API uint64_t sresid_optim_steps(const sresid_optim *optim);

/* The options in effect (defaults filled in). Set out->size first.
 * Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_optim_get_opts(const sresid_optim *optim,
                                               sresid_optim_opts *out);

/* Change the learning rate (schedules). Errors: INVALID_ARG (lr < 0, NaN). */
SRESID_API sresid_status sresid_optim_set_lr(sresid_optim *optim, double lr);

/* One step: increments the step counter, then updates params[i] and its
 * state for every i the mask allows (mask NULL: all n). params and grad hold
 * n entries. A non-finite gradient among the allowed entries fails the step
 * with NONFINITE before anything is changed (the counter included).
 * Errors: INVALID_ARG, SHAPE (n or mask size differs), NONFINITE. */
SRESID_API sresid_status sresid_optim_step(sresid_optim *optim, float *params,
                                           const float *grad, uint64_t n,
                                           const sresid_mask *mask);

/* Zero the state of the entries in mask (NULL: all entries, and the step
 * counter too); for entries that start training mid-run (drop and grow).
 * Errors: INVALID_ARG, SHAPE. */
SRESID_API sresid_status sresid_optim_reset(sresid_optim *optim, const sresid_mask *mask);

/* Borrowed read-only views of the state, n floats each, valid until the
 * optimiser is freed: AdamW first and second moments (m, v), SGD momentum
 * buffer in m and NULL in v. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_optim_state(const sresid_optim *optim, const float **m,
                                            const float **v);

/* Save options, step counter and state as safetensors (F32 tensors "m" and,
 * for AdamW, "v"; options in metadata, doubles printed with 17 significant
 * digits). Written whole or not at all. Errors: INVALID_ARG, IO, NOMEM. */
SRESID_API sresid_status sresid_optim_save(const sresid_optim *optim, const char *path,
                                           const sresid_save_opts *opts);

/* Load an optimiser saved by sresid_optim_save; state bit-identical.
 * *out is the caller's. Errors: INVALID_ARG, METADATA, SHAPE, NONFINITE,
 * and the errors of sresid_model_open. */
SRESID_API sresid_status sresid_optim_load(const char *path, sresid_optim **out);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_OPTIM_H */
