/*
 * libsparseresid — checkpoints: safetensors I/O, tensors, kinds and layers.
 *
 * A model is an ordered set of named tensors (dtype, shape, raw bytes) plus a
 * string-to-string metadata map. Models are opened from safetensors (one
 * file, a sharded *.safetensors.index.json, or a directory of shards) by
 * memory-mapping, or built in memory from caller buffers, and saved back.
 *
 * Thread safety: functions taking a const sresid_model * may run concurrently
 * on the same model; functions taking a non-const model need one thread per
 * model or the caller's lock.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_MODEL_H
#define SPARSERESID_MODEL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sresid_model sresid_model;

/* Element types, named as in safetensors. 0 is never a valid dtype. */
typedef int32_t sresid_dtype;
#define SRESID_DTYPE_BOOL      1
#define SRESID_DTYPE_U8        2
#define SRESID_DTYPE_I8        3
#define SRESID_DTYPE_F8_E5M2   4
#define SRESID_DTYPE_F8_E4M3   5
#define SRESID_DTYPE_I16       6
#define SRESID_DTYPE_U16       7
#define SRESID_DTYPE_F16       8
#define SRESID_DTYPE_BF16      9
#define SRESID_DTYPE_I32      10
#define SRESID_DTYPE_U32      11
#define SRESID_DTYPE_F32      12
#define SRESID_DTYPE_F64      13
#define SRESID_DTYPE_I64      14
#define SRESID_DTYPE_U64      15

/* Tensor kinds, from name rules (see sresid_model_set_kind_rules). */
#define SRESID_KIND_OTHER      0
#define SRESID_KIND_ATTENTION  1
#define SRESID_KIND_MLP        2
#define SRESID_KIND_EMBEDDING  3
#define SRESID_KIND_NORM       4
#define SRESID_KIND_COUNT      5

/* Matrix view of tensors of rank >= 3 (see sresid_tensor_info). */
#define SRESID_LAYOUT_OUT_FIRST 0  /* PyTorch/ONNX [out, in, k...]: rows = shape[0] */
#define SRESID_LAYOUT_OUT_LAST  1  /* TF/Keras [k..., in, out]: cols = shape[ndim-1] */

/* sresid_model_opts.flags */
/* Reads normally use pread: nothing stays resident but the caller's buffer,
 * and a file that shrinks after opening gives SRESID_ERR_IO. With this flag
 * reads copy from the mapping instead and its pages stay resident (faster
 * for repeated reads of a small model; the file must then not change while
 * the model is open, as for sresid_tensor_info.data). */
#define SRESID_OPEN_KEEP_PAGES 0x1u

/* Options for sresid_model_open and sresid_model_create. Set size to
 * sizeof(sresid_model_opts); zero fields mean defaults; NULL means all
 * defaults. */
typedef struct sresid_model_opts {
    size_t size;
    int32_t layout;   /* SRESID_LAYOUT_*; default OUT_FIRST */
    uint32_t flags;   /* SRESID_OPEN_* */
} sresid_model_opts;

/* Facts about one tensor. Set size to sizeof(sresid_tensor_info) before the
 * call (at least the size of this 1.0 struct); a newer library fills only
 * the fields that size covers. Pointers are
 * borrowed from the model and valid until it is freed or changed.
 *
 * Matrix view: rank 0 is 1x1, rank 1 is 1xN, rank 2 is shape[0] x shape[1].
 * Rank >= 3 with OUT_FIRST: rows = shape[0], cols = product of the rest;
 * with OUT_LAST: rows = product of all but the last, cols = shape[ndim-1].
 * Both are the row-major bytes as stored, read without any transpose. */
typedef struct sresid_tensor_info {
    size_t size;
    const char *name;     /* UTF-8, unique in the model */
    const char *role;     /* name with the layer number replaced by "{L}" */
    const int64_t *shape; /* ndim entries (NULL when ndim == 0) */
    const void *data;     /* raw little-endian bytes, maybe unaligned (for opened files: the
                             read-only mapping); NULL if nbytes == 0 */
    uint64_t nbytes;
    int64_t numel;        /* product of shape; 1 for rank 0 */
    int64_t rows;         /* matrix view */
    int64_t cols;
    sresid_dtype dtype;
    int32_t ndim;
    int32_t kind;         /* SRESID_KIND_* */
    int32_t layer;        /* layer index, or -1; the layer is (stack, layer), see
                             sresid_model_tensor_stack */
} sresid_tensor_info;

/* Name of a dtype ("F32", "BF16", ...) or NULL if unknown. */
SRESID_API const char *sresid_dtype_name(sresid_dtype dtype);
/* Bytes per element, or 0 if unknown. */
SRESID_API size_t sresid_dtype_size(sresid_dtype dtype);
/* Parse a safetensors dtype name. Errors: INVALID_ARG (NULL), DTYPE. */
SRESID_API sresid_status sresid_dtype_from_name(const char *name, sresid_dtype *out);
/* 1 if tensors of this dtype can be read as float32 (F64, F32, F16, BF16,
 * F8_E5M2, F8_E4M3), else 0. */
SRESID_API int32_t sresid_dtype_is_float(sresid_dtype dtype);
/* Name of a kind ("attention", "mlp", "embedding", "norm", "other") or NULL. */
SRESID_API const char *sresid_kind_name(int32_t kind);

/* Open a checkpoint read-only: a .safetensors file, a *.safetensors.index.json
 * (shards resolved beside it), or a directory (its index.json if it has
 * exactly one; INVALID_ARG if it has several; with none, every *.safetensors
 * file in name order). A path ending in ".json" is read as an index. Every header is
 * validated completely before the call returns; tensor data is mapped, not
 * read. Tensors are ordered by file, then by data offset.
 * On success *out is the caller's; release it with sresid_model_free.
 * Errors: INVALID_ARG, IO, TRUNCATED, HEADER, JSON, DTYPE, SHAPE, OFFSETS,
 * DUPLICATE, METADATA, NOT_FOUND, OVERFLOW, NOMEM. */
SRESID_API sresid_status sresid_model_open(const char *path, const sresid_model_opts *opts,
                                           sresid_model **out);

/* Create an empty in-memory model. *out is the caller's. */
SRESID_API sresid_status sresid_model_create(const sresid_model_opts *opts, sresid_model **out);

/* Release a model and everything it owns. Accepts NULL. Borrowed buffers
 * (SRESID_ADD_BORROW) are not touched. */
SRESID_API void sresid_model_free(sresid_model *model);

/* Number of tensors; 0 for NULL. */
SRESID_API size_t sresid_model_tensor_count(const sresid_model *model);

/* Index of the tensor with this name. Errors: INVALID_ARG, NOT_FOUND. */
SRESID_API sresid_status sresid_model_find(const sresid_model *model, const char *name,
                                           size_t *index);

/* Facts about tensor index (see sresid_tensor_info).
 * Errors: INVALID_ARG (NULL, size too small, index out of range). */
SRESID_API sresid_status sresid_model_tensor_info(const sresid_model *model, size_t index,
                                                  sresid_tensor_info *info);

/* Since 1.1. The stack of tensor index: its name before the layer number,
 * without the separator ("model.decoder.layers" for
 * "model.decoder.layers.3.fc1.weight"), so that a layer is (stack, layer)
 * and the encoder's layer 0 is not the decoder's. "" when the name has no
 * layer number (layer -1) or starts with it. *stack is borrowed from the
 * model, valid until it is freed. Thread-safe on a const model.
 * Errors: INVALID_ARG (NULL, index out of range). */
SRESID_API sresid_status sresid_model_tensor_stack(const sresid_model *model, size_t index,
                                                   const char **stack);

/* Read a floating-point tensor as float32 into dst, which holds count >=
 * numel floats. Conversions are exact where float32 can hold the value
 * (F16, BF16, F8: always; subnormals, signed zeros, Inf and NaN payloads kept);
 * F64 rounds to nearest even. Errors: INVALID_ARG, DTYPE (not a float tensor),
 * SHAPE (count < numel), IO (the file shrank or cannot be read). */
SRESID_API sresid_status sresid_model_read_f32(const sresid_model *model, size_t index,
                                               float *dst, size_t count);

/* Copy a tensor's raw bytes (any dtype) into dst, which holds nbytes >= the
 * tensor's byte size. Errors: INVALID_ARG, SHAPE (nbytes too small), IO. */
SRESID_API sresid_status sresid_model_read_raw(const sresid_model *model, size_t index,
                                               void *dst, size_t nbytes);

/* sresid_model_add_tensor flags */
#define SRESID_ADD_BORROW 0x1u /* keep a pointer to data instead of copying it */

/* Append a tensor. data holds nbytes = numel * dtype size little-endian bytes
 * (may be NULL when nbytes is 0). It is copied, or with SRESID_ADD_BORROW
 * borrowed: the caller keeps it alive and unchanged until the model is freed.
 * name is copied; it must be non-empty valid UTF-8 and not "__metadata__".
 * Negative dimensions, ndim > 64, a numel or byte size overflowing 64 bits or
 * the address space (all SHAPE) are rejected.
 * Errors: INVALID_ARG, DTYPE, SHAPE, DUPLICATE, NOMEM. */
SRESID_API sresid_status sresid_model_add_tensor(sresid_model *model, const char *name,
                                                 sresid_dtype dtype, int32_t ndim,
                                                 const int64_t *shape, const void *data,
                                                 size_t nbytes, uint32_t flags);

/* Metadata (the safetensors __metadata__ map), in insertion/file order.
 * Strings are borrowed from the model. */
SRESID_API size_t sresid_model_metadata_count(const sresid_model *model);
/* Errors: INVALID_ARG (NULL or index out of range). */
SRESID_API sresid_status sresid_model_metadata_at(const sresid_model *model, size_t index,
                                                  const char **key, const char **value);
/* Errors: INVALID_ARG, NOT_FOUND. */
SRESID_API sresid_status sresid_model_metadata_get(const sresid_model *model, const char *key,
                                                   const char **value);
/* Set key to value (both copied, valid UTF-8); value NULL removes the key.
 * Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_model_set_metadata(sresid_model *model, const char *key,
                                                   const char *value);

/* sresid_save_opts.flags */
#define SRESID_SAVE_NO_CLOBBER 0x1u /* fail with IO if path exists */

typedef struct sresid_save_opts {
    size_t size;
    uint32_t flags; /* SRESID_SAVE_* */
    /* since 1.1: follows the writing (one unit a tensor written, see each
       save function) and can stop it (common.h): nothing is written then.
       NULL: the thread's default (sresid_set_monitor) */
    sresid_monitor_fn monitor;
    void *monitor_user;
} sresid_save_opts;

/* Save as one safetensors file in the reference layout: header padded with
 * spaces to a multiple of 8 bytes, tensors ordered as the reference writer
 * does (dtype in descending SRESID_DTYPE_* order, which is safetensors' own
 * enum order, then name), data contiguous. Written to a temporary file beside path
 * and renamed, so path never holds a partial file. Refused (IO, nothing
 * written) when path is one of the model's own files (same file through
 * symlinks or hard links) or exists and is not a regular file. The
 * monitor's unit is a tensor written.
 * Errors: INVALID_ARG (also an empty path), IO, NOMEM, CANCELLED. */
SRESID_API sresid_status sresid_model_save(const sresid_model *model, const char *path,
                                           const sresid_save_opts *opts);

/* sresid_model_set_kind_rules flags */
#define SRESID_RULES_REPLACE 0x1u /* use only the given rules, not the defaults after them */

/* Relabel every tensor's kind. Rule i is a pattern (glob over the whole name,
 * case-insensitive; '*' matches any run, '?' one byte) and a SRESID_KIND_*.
 * The first matching rule wins; the given rules are tried before the default
 * ones (see docs/model.md) unless SRESID_RULES_REPLACE; no match gives OTHER.
 * Patterns are copied. n == 0 with flags == 0 restores the defaults.
 * Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_model_set_kind_rules(sresid_model *model,
                                                     const char *const *patterns,
                                                     const int32_t *kinds, size_t n,
                                                     uint32_t flags);

/* Change the matrix view of rank >= 3 tensors. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_model_set_layout(sresid_model *model, int32_t layout);

/* Since 1.1. *uses = 1 when path names one of the files the model reads
 * (the same file: same device and inode, through symlinks, "./" and hard
 * links), else 0 (also when path does not exist). For programs that must
 * not write an output over an input. Thread-safe on a const model.
 * Errors: INVALID_ARG (NULL argument). */
SRESID_API sresid_status sresid_model_uses_file(const sresid_model *model, const char *path,
                                                int32_t *uses);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_MODEL_H */
