/*
 * libsparseresid — amplitude-only fine-tuning: each selected weight matrix
 * of a base model is kept as W0 = U diag(s0) V^T with U and V frozen, and
 * only the amplitudes ("scores") are trained.
 *
 * Basis. For each selected tensor (its matrix view, m x n, r = min(m, n) or
 * the requested rank), a thin SVD by LAPACK sgesdd (sgesvd if sgesdd fails),
 * computed in float32. Signs are canonical: for each j the entry of largest
 * magnitude of u_j (the lowest index among equal ones) is positive, v_j
 * flipped with it, so the basis does not depend on LAPACK's sign choice.
 *
 * Scores. One contiguous float32 vector over all selected tensors, tensor t
 * at [offset_t, offset_t + count_t): layout DIAG has count_t = r (the
 * singular values, W = W0 + U diag(s - s0) V^T); layout CORE has r * r
 * (an r x r row-major matrix S started at diag(s0), W = W0 + U (S - S0) V^T).
 * With rank r below min(m, n), the part of W0 outside the rank-r basis is
 * kept unchanged. The caller writes scores in place (sresid_amp_scores) and
 * reads weights back with sresid_amp_materialize.
 *
 * The base model is borrowed: it must outlive the amp and not change.
 *
 * Thread safety: functions taking a const sresid_amp * may run concurrently
 * on the same amp (materialize and project of different tensors from
 * several threads is the intended use) as long as nobody writes the scores
 * meanwhile; functions taking a non-const amp need one thread per amp.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_AMP_H
#define SPARSERESID_AMP_H

#include "common.h"
#include "mask.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sresid_amp sresid_amp;

#define SRESID_AMP_DIAG 0 /* r scores per matrix: the singular values */
#define SRESID_AMP_CORE 1 /* r x r scores per matrix */

typedef struct sresid_amp_opts {
    size_t size;
    int32_t layout;      /* SRESID_AMP_DIAG (default) or SRESID_AMP_CORE */
    int32_t rank;        /* r; 0 = full, min(m, n); a larger r is capped at min(m, n) */
    uint32_t kinds;      /* bits (1u << SRESID_KIND_*); 0 = attention and mlp */
    int32_t threads;     /* SVDs run in parallel across tensors; 0 = sresid_get_threads() */
    const char *pattern; /* glob over tensor names (as sresid_model_set_kind_rules);
                            NULL = every name; read during the call only */
    int64_t min_dim;     /* skip matrices with min(m, n) below this; 0 = 2 */
    /* since 1.1: follows the bases (one unit a tensor) and can stop them
       (common.h); NULL: the thread's default (sresid_set_monitor) */
    sresid_monitor_fn monitor;
    void *monitor_user;
} sresid_amp_opts;

/* Select the float tensors of rank >= 2 whose kind is in opts->kinds, whose
 * name matches opts->pattern, and whose matrix view has min(m, n) >=
 * min_dim, in model order, and compute their bases. At least one tensor
 * must be selected (NOT_FOUND otherwise). *out is the caller's.
 * Errors: INVALID_ARG, NOT_FOUND, NONFINITE (a matrix holds NaN or Inf, or
 * its singular values overflow float32; the message names it), UNSUPPORTED (a dimension beyond LAPACK's 32-bit
 * integers), NOMEM, IO, and read errors of the model. */
SRESID_API sresid_status sresid_amp_create(const sresid_model *base, const sresid_amp_opts *opts,
                                           sresid_amp **out);

/* Accepts NULL. */
SRESID_API void sresid_amp_free(sresid_amp *amp);

/* Number of selected tensors; 0 for NULL. */
SRESID_API size_t sresid_amp_count(const sresid_amp *amp);

/* Length of the score vector; 0 for NULL. */
SRESID_API uint64_t sresid_amp_score_count(const sresid_amp *amp);

/* Layout (SRESID_AMP_*); -1 for NULL. */
SRESID_API int32_t sresid_amp_layout(const sresid_amp *amp);

typedef struct sresid_amp_tensor_info {
    size_t size;
    const char *name;   /* borrowed from the base model */
    size_t index;       /* tensor index in the base model */
    int64_t rows;       /* m, the matrix view */
    int64_t cols;       /* n */
    int64_t rank;       /* r */
    uint64_t offset;    /* first score of this tensor */
    uint64_t count;     /* its scores: r (DIAG) or r * r (CORE) */
} sresid_amp_tensor_info;

/* Facts about selected tensor t. Set info->size first.
 * Errors: INVALID_ARG (NULL, t out of range, size too small). */
SRESID_API sresid_status sresid_amp_tensor(const sresid_amp *amp, size_t t,
                                           sresid_amp_tensor_info *info);

/* The score vector, writable in place (score_count floats), borrowed from
 * the amp. NULL for NULL. */
SRESID_API float *sresid_amp_scores(sresid_amp *amp);

/* The initial scores s0 (DIAG: singular values; CORE: diag(s0) per tensor),
 * read-only, borrowed. NULL for NULL. */
SRESID_API const float *sresid_amp_initial_scores(const sresid_amp *amp);

/* Segment offsets of the score vector, count + 1 entries (offsets[t] is
 * tensor t's first score, offsets[count] == score_count): the per-tensor
 * segments for the mask functions. Borrowed; NULL for NULL. */
SRESID_API const uint64_t *sresid_amp_offsets(const sresid_amp *amp);

/* Borrowed read-only basis of tensor t: U (m x r, row-major) and V (n x r,
 * row-major); either out pointer may be NULL. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_amp_basis(const sresid_amp *amp, size_t t, const float **u,
                                          const float **v);

/* Reset every score to s0. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_amp_reset(sresid_amp *amp);

/* sresid_amp_materialize flags */
#define SRESID_MATERIALIZE_ADD 0x1u /* dst += U (S - S0) V^T; W0 is not read */

/* Write tensor t's weights W = W0 + U (S - S0) V^T into dst (m x n, row
 * stride ld >= n floats), W0 read from the base model as float32. Only the
 * scores that differ from s0 enter the product, so the cost falls with the
 * number of changed scores (with none, dst = W0). dst must not alias the
 * amp's buffers. Errors: INVALID_ARG, NONFINITE (a score of tensor t is NaN
 * or Inf; dst untouched), IO (reading W0). */
SRESID_API sresid_status sresid_amp_materialize(const sresid_amp *amp, size_t t, float *dst,
                                                int64_t ld, uint32_t flags);

/* sresid_amp_project flags */
#define SRESID_PROJECT_ACCUMULATE 0x1u /* add into out instead of overwriting */
#define SRESID_PROJECT_ABS        0x2u /* add |value| into out (saliency); implies ACCUMULATE */

/* The gradient with respect to tensor t's scores from the gradient dW
 * (m x n, row stride ld): diag(U^T dW V) for DIAG, U^T dW V for CORE. out
 * is the whole score-gradient vector (score_count floats); only tensor t's
 * segment is written. With mask (size score_count) only the entries it
 * allows are computed and written, the others left as they are.
 * Errors: INVALID_ARG, SHAPE (mask size), NONFINITE (dW holds NaN or Inf;
 * out untouched). */
SRESID_API sresid_status sresid_amp_project(const sresid_amp *amp, size_t t, const float *grad,
                                            int64_t ld, float *out, const sresid_mask *mask,
                                            uint32_t flags);

/* Selection rules for sresid_amp_select. */
#define SRESID_RULE_MAGNITUDE 1 /* largest |s0| (the study's rule) */
#define SRESID_RULE_RANDOM    2 /* uniform, from seed (sresid_mask_random) */
#define SRESID_RULE_GRADIENT  3 /* largest saliency, e.g. |dL/ds| accumulated with
                                   SRESID_PROJECT_ABS over calibration batches */
#define SRESID_RULE_WARMUP    4 /* largest |s - s0| after a dense warm-up (current scores) */

/* sresid_select_opts.flags */
#define SRESID_SELECT_PER_TENSOR 0x1u /* the fraction within each tensor, not over all scores */

typedef struct sresid_select_opts {
    size_t size;
    uint32_t flags;         /* SRESID_SELECT_* */
    uint64_t seed;          /* RANDOM */
    const float *saliency;  /* GRADIENT: score_count floats, borrowed during the call */
} sresid_select_opts;

/* A mask over the scores holding the given fraction, by rule, over all
 * scores or per tensor (counts and ties as in mask.h). *out is the
 * caller's. Errors: INVALID_ARG (bad rule, fraction, missing saliency),
 * NONFINITE, NOMEM. */
SRESID_API sresid_status sresid_amp_select(const sresid_amp *amp, int32_t rule, double fraction,
                                           const sresid_select_opts *opts, sresid_mask **out);

/* The dynamic rule's update, called every T steps by the training loop:
 * sresid_mask_drop_grow with keep = |s - s0| and grow = saliency (the
 * |gradient| accumulated since the last update), over all scores or per
 * tensor (SRESID_SELECT_PER_TENSOR in flags). Dropped scores are set back
 * to s0, so an inactive score never changes W. changed (may be NULL) gets
 * the dropped and grown entries: reset their optimiser state with
 * sresid_optim_reset. Errors: INVALID_ARG, SHAPE, NONFINITE, NOMEM. */
SRESID_API sresid_status sresid_amp_drop_grow(sresid_amp *amp, sresid_mask *mask, double share,
                                              const float *saliency, uint32_t flags,
                                              sresid_mask *changed);

/* The best scores for a trained model in closed form: with R = W_trained -
 * W0 for each selected tensor (paired by name; same shape), S - S0 = U^T R V
 * (CORE) or its diagonal (DIAG), restricted to mask (NULL: all); the other
 * scores are set to s0. Errors: INVALID_ARG, MISMATCH (a tensor missing or
 * of another shape in trained), SHAPE, NONFINITE, NOMEM, IO. */
SRESID_API sresid_status sresid_amp_fit(sresid_amp *amp, const sresid_model *trained,
                                        const sresid_mask *mask);

/* Share of the residual energy that amplitude-only scores can capture, per
 * tensor and in total. For each selected tensor, with D = U^T R V (its
 * diagonal for DIAG): energy = |R|^2, captured = |D|^2 / |R|^2 (the best
 * amplitude-only fit is exact for the scores' span). For each fraction f:
 * the share captured when only a fraction f of the scores may change,
 * chosen by |s0| (magnitude) or by |D| (oracle), over all scores, or per
 * tensor with SRESID_SELECT_PER_TENSOR in flags; per-tensor rows and the
 * total come from the same selection. Row count (the last) is the total.
 * Outputs (any may be NULL): energy and captured hold count + 1 doubles;
 * captured_magnitude and captured_oracle (count + 1) * nfractions,
 * row-major by tensor. A tensor with |R| = 0 gets captured NaN.
 * Errors: INVALID_ARG, MISMATCH, NONFINITE, NOMEM, IO. */
SRESID_API sresid_status sresid_amp_share(const sresid_amp *amp, const sresid_model *trained,
                                          const double *fractions, size_t nfractions,
                                          uint32_t flags, double *energy, double *captured,
                                          double *captured_magnitude, double *captured_oracle);

/* A new in-memory model: every tensor of the base, in base order, with its
 * metadata; selected tensors materialised and stored in their base dtype
 * (F32 exact; F16, BF16 rounded to nearest even; F64 widened), the others
 * copied byte for byte. *out is the caller's; save it with
 * sresid_model_save. Errors: INVALID_ARG, NONFINITE, NOMEM, IO, and
 * UNSUPPORTED (an F8 tensor selected: no rounding back is defined). */
SRESID_API sresid_status sresid_amp_export(const sresid_amp *amp, sresid_model **out);

/* Save the state as safetensors: per tensor "NAME.u", "NAME.v" (F32), the
 * scores "scores" and "initial_scores", the mask "mask" (when not NULL) as
 * in sresid_mask_save, and metadata with the layout, names, shapes and the
 * XXH3-128 hash of each base tensor (docs/formats.md). Written whole or not
 * at all; never over a file of the base model (IO). Errors: INVALID_ARG, SHAPE (mask size), NONFINITE (a score is NaN
 * or Inf: the file could not be loaded back), IO, NOMEM. */
SRESID_API sresid_status sresid_amp_save(const sresid_amp *amp, const sresid_mask *mask,
                                         const char *path, const sresid_save_opts *opts);

/* Load a state saved by sresid_amp_save onto base, which must hold the
 * same tensors (names, shapes, content hash): the loaded amp materialises
 * bit-identical weights. *out is the caller's; *mask_out (may be NULL) gets
 * the saved mask, or NULL when none was saved.
 * Errors: INVALID_ARG, MISMATCH (base differs; the message names the
 * tensor), METADATA, SHAPE, NONFINITE, NOMEM, and the errors of
 * sresid_model_open. */
SRESID_API sresid_status sresid_amp_load(const sresid_model *base, const char *path,
                                         sresid_amp **out, sresid_mask **mask_out);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_AMP_H */
