/*
 * libsparseresid — residuals: a base and a trained checkpoint paired by name,
 * dense (lazy) or sparse (the largest entries, saved as a delta file).
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

/* ---- sparse residuals ---------------------------------------------------
 * A sparse residual keeps, for each paired tensor, the flat (row-major)
 * positions and the values of the kept residual entries, values stored as
 * F32, F16 or BF16 (rounded to nearest even). It saves as a safetensors file
 * (docs/formats.md: "NAME.idx" delta-encoded positions in the smallest of
 * U8/U16/U32/U64 that holds the largest gap, "NAME.val", for F32 values
 * "NAME.lo" low parts where base + value would miss trained, metadata with
 * the rule, counts, shapes and the XXH3-128 hash of every base tensor) and
 * applies to its base: trained' = base + scale * R_sparse.
 *
 * Thread safety: a sparse residual is read-only once built; its functions
 * may run concurrently. */

typedef struct sresid_sparse sresid_sparse;

/* Selection rules. */
#define SRESID_SPARSE_TOP            1 /* top fraction by |R| over all tensors (global) */
#define SRESID_SPARSE_TOP_PER_TENSOR 2 /* top fraction by |R| within each tensor */
#define SRESID_SPARSE_THRESHOLD      3 /* every entry with |R| >= param (param > 0) */
#define SRESID_SPARSE_ENERGY         4 /* the fewest largest entries with sum R^2 >= param * total */
#define SRESID_SPARSE_DARE           5 /* each entry kept with probability param, scaled by 1/param */

/* sresid_sparse_opts.flags */
#define SRESID_SPARSE_IN_MEMORY 0x1u /* TOP, ENERGY: keep the float32 residual (4 bytes an entry)
                                        after the first pass instead of reading it again; same
                                        result, falls back to streaming when it does not fit */
#define SRESID_SPARSE_ROUNDED   0x2u /* F32 values without their low parts: smaller, but base +
                                        value may miss trained by rounding (docs/sparse.md) */

typedef struct sresid_sparse_opts {
    size_t size;
    int32_t rule;        /* SRESID_SPARSE_*; default TOP */
    sresid_dtype dtype;  /* stored values: F32 (default), F16 or BF16 */
    double param;        /* fraction, threshold, energy share or keep probability; 0 = 0.1
                            (THRESHOLD: required, > 0) */
    uint64_t seed;       /* DARE */
    int32_t threads;     /* 0..4096 workers over the tensors; 0 = sresid_get_threads() */
    uint32_t flags;      /* SRESID_SPARSE_* */
    /* since 1.1: follows the run and can stop it (common.h). Units: a
       tensor in a pass over the residual; TOP and ENERGY plan for four
       passes (two counting passes, a tie pass, the collecting pass) and
       count those not needed as done when skipped. NULL: the thread's
       default (sresid_set_monitor) */
    sresid_monitor_fn monitor;
    void *monitor_user;
} sresid_sparse_opts;

/* Build a sparse residual. Memory is bounded by the kept entries plus one
 * tensor: global rules stream the residual (counting passes find the
 * threshold, a last pass collects the entries), so a checkpoint larger than
 * RAM works; only SRESID_SPARSE_IN_MEMORY keeps the whole residual.
 * Counts: a fraction f of N entries keeps k = floor(f * N + 0.5) (over all
 * tensors for TOP, per tensor for TOP_PER_TENSOR); among equal |R| the
 * earlier tensor (in pairing order), then the lower position, wins. Every
 * paired tensor is listed, also with nothing kept. *out is the caller's;
 * the residual and its models may be freed afterwards.
 * Errors: INVALID_ARG, DTYPE (value dtype), NONFINITE (the message names
 * the tensor), NOMEM, IO, CANCELLED. */
SRESID_API sresid_status sresid_sparse_create(const sresid_residual *residual,
                                              const sresid_sparse_opts *opts,
                                              sresid_sparse **out);

/* Accepts NULL. */
SRESID_API void sresid_sparse_free(sresid_sparse *sparse);

/* Number of tensors; 0 for NULL. */
SRESID_API size_t sresid_sparse_count(const sresid_sparse *sparse);

/* Facts and error report of one tensor, or of all together with
 * i == SRESID_ALL (name NULL, shape NULL, base and index dtypes 0). The
 * energy figures are saved in the file and read back by sresid_sparse_load;
 * they are NaN where undefined (a residual with sum R^2 == 0). */
typedef struct sresid_sparse_info {
    size_t size;
    const char *name;         /* borrowed */
    const int64_t *shape;     /* ndim entries, borrowed */
    int32_t ndim;
    sresid_dtype base_dtype;  /* dtype of the base tensor */
    sresid_dtype index_dtype; /* U8, U16, U32 or U64 */
    sresid_dtype value_dtype; /* F32, F16 or BF16 */
    int64_t numel;
    uint64_t kept;
    uint64_t bytes;           /* stored bytes of indices and values */
    uint64_t dense_bytes;     /* numel * size of the base dtype */
    double ratio;             /* dense_bytes / bytes (Inf when nothing is kept) */
    double energy;            /* sum R^2 of the dense residual */
    double kept_energy;       /* share of it at the kept positions */
    double error;             /* |R - R_sparse| / |R| with the stored (rounded) values */
} sresid_sparse_info;

/* Errors: INVALID_ARG (NULL, i out of range, size too small). */
SRESID_API sresid_status sresid_sparse_info_get(const sresid_sparse *sparse, size_t i,
                                                sresid_sparse_info *info);

/* Decoded entries of tensor i: flat positions (ascending) and values as
 * float32 (scaled for DARE, as stored), count >= kept each.
 * Errors: INVALID_ARG, SHAPE (count < kept). */
SRESID_API sresid_status sresid_sparse_entries(const sresid_sparse *sparse, size_t i,
                                               uint64_t *positions, float *values,
                                               uint64_t count);

/* Save as safetensors, written whole or not at all; never over the file it
 * was loaded from (IO). The monitor's unit is a stored part (positions,
 * values or low parts of a tensor). Errors: INVALID_ARG, IO, NOMEM,
 * CANCELLED. */
SRESID_API sresid_status sresid_sparse_save(const sresid_sparse *sparse, const char *path,
                                            const sresid_save_opts *opts);

/* Load and validate a sparse residual file completely: format tag and
 * version, metadata, dtypes, counts, positions in range, strictly
 * increasing (no duplicates), finite values. *out is the caller's.
 * Errors: INVALID_ARG, METADATA (not a delta, bad metadata, a tensor the
 * metadata does not list), NOT_FOUND (a listed tensor missing), DTYPE,
 * SHAPE (count mismatch, position out of range, not increasing), NONFINITE,
 * NOMEM, and the errors of sresid_model_open. */
SRESID_API sresid_status sresid_sparse_load(const char *path, sresid_sparse **out);

/* sresid_apply_opts.flags */
#define SRESID_APPLY_FORCE 0x2u /* apply even if a base tensor's hash differs (shapes must agree);
                                   0x1 is SRESID_SAVE_NO_CLOBBER */

typedef struct sresid_apply_opts {
    size_t size;
    double scale;    /* 0 = 1; finite */
    uint32_t flags;  /* SRESID_APPLY_* and SRESID_SAVE_NO_CLOBBER */
    /* since 1.1: follows the run (units: each delta tensor checked, then
       each base tensor written) and can stop it (common.h): no file then.
       NULL: the thread's default (sresid_set_monitor) */
    sresid_monitor_fn monitor;
    void *monitor_user;
} sresid_apply_opts;

/* Write base + scale * R_sparse to path as a full safetensors model: every
 * base tensor in its own dtype (changed tensors accumulated in float32 and
 * rounded once; the others copied byte for byte), base metadata kept.
 * Refuses a base that lacks a tensor, has another shape or dtype, or
 * (without FORCE) another content hash, naming the tensor. Streams tensor
 * by tensor; the file is written to a temporary beside path and renamed,
 * so path never holds a partial file, and never over a file of the base or
 * the file the delta was loaded from (IO).
 * Errors: INVALID_ARG, MISMATCH, NONFINITE (also a value beyond an F8
 * format's range), IO, NOMEM, CANCELLED. */
SRESID_API sresid_status sresid_sparse_apply(const sresid_sparse *sparse,
                                             const sresid_model *base,
                                             const sresid_apply_opts *opts, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_RESIDUAL_H */
