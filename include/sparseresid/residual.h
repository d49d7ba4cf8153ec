/*
 * libsparseresid — residuals: a base and a trained checkpoint paired by name.
 *
 * A residual R = trained - base is lazy: nothing is read when it is created;
 * each tensor's difference is computed when read, into a caller buffer, so
 * memory stays bounded by the largest tensor.
 *
 * Thread safety: functions taking a const sresid_residual * may run
 * concurrently; the models it borrows must not be changed while it lives.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_RESIDUAL_H
#define SPARSERESID_RESIDUAL_H

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sresid_residual sresid_residual;

/* sresid_pair_opts.flags */
#define SRESID_PAIR_SKIP_MISMATCHED 0x1u /* list one-sided and shape-mismatched tensors instead of failing */

typedef struct sresid_pair_opts {
    size_t size;
    uint32_t flags; /* SRESID_PAIR_* */
} sresid_pair_opts;

/* Why a tensor is not paired. */
#define SRESID_UNPAIRED_BASE_ONLY    1 /* in base only */
#define SRESID_UNPAIRED_TRAINED_ONLY 2 /* in trained only */
#define SRESID_UNPAIRED_SHAPE        3 /* same name, different shape */
#define SRESID_UNPAIRED_NOT_FLOAT    4 /* integer or boolean on either side (or on its only side): left out, never a mismatch */

/* Index meaning "all paired tensors together" for sresid_residual_norms. */
#define SRESID_ALL SIZE_MAX

/* Euclidean (Frobenius) norms, accumulated in double. relative is
 * residual / base, NaN when base is 0. */
typedef struct sresid_norms {
    size_t size;
    double base;
    double trained;
    double residual;
    double relative;
} sresid_norms;

/* Pair base and trained by tensor name, in base order. Both models are
 * borrowed and must outlive the residual. Tensors present on one side only,
 * or with different shapes, fail the pairing with MISMATCH (the message names
 * them) unless SRESID_PAIR_SKIP_MISMATCHED is set, in which case they are
 * listed by sresid_residual_unpaired. Integer and boolean tensors are always
 * listed and left out. *out is the caller's.
 * Errors: INVALID_ARG, MISMATCH, NOMEM. */
SRESID_API sresid_status sresid_residual_create(const sresid_model *base,
                                                const sresid_model *trained,
                                                const sresid_pair_opts *opts,
                                                sresid_residual **out);

/* Release a residual (not its models). Accepts NULL. */
SRESID_API void sresid_residual_free(sresid_residual *residual);

/* Number of paired tensors; 0 for NULL. */
SRESID_API size_t sresid_residual_count(const sresid_residual *residual);

/* Tensor indices of pair i in the base and trained models.
 * Errors: INVALID_ARG (NULL or i out of range). */
SRESID_API sresid_status sresid_residual_pair(const sresid_residual *residual, size_t i,
                                              size_t *base_index, size_t *trained_index);

/* Compute pair i's residual trained - base in float32 into dst (count >=
 * numel); each side is first read as float32. Errors: INVALID_ARG, SHAPE, IO. */
SRESID_API sresid_status sresid_residual_read(const sresid_residual *residual, size_t i,
                                              float *dst, size_t count);

/* Norms of pair i, or over all pairs with i == SRESID_ALL. Reads the data
 * (streams every tensor for SRESID_ALL). Set out->size first.
 * Errors: INVALID_ARG, IO. */
SRESID_API sresid_status sresid_residual_norms(const sresid_residual *residual, size_t i,
                                               sresid_norms *out);

/* Number of tensors left out of the pairing; 0 for NULL. */
SRESID_API size_t sresid_residual_unpaired_count(const sresid_residual *residual);

/* Name (borrowed) and SRESID_UNPAIRED_* reason of left-out tensor i, in the
 * order base-side tensors, then trained-only tensors.
 * Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_residual_unpaired(const sresid_residual *residual, size_t i,
                                                  const char **name, int32_t *reason);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_RESIDUAL_H */
