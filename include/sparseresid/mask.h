/*
 * libsparseresid — masks: bitsets over a vector of n entries (the amplitude
 * scores, or any float vector), chosen by magnitude or at random, combined
 * with set operations, saved and loaded.
 *
 * Counts. A fraction f of n entries means k = floor(f * n + 0.5) entries
 * (computed in double; f in [0, 1]). With segments (per tensor), each
 * segment j of n_j entries gets its own k_j = floor(f * n_j + 0.5).
 *
 * Segments are given as nseg + 1 offsets: segment j is [offsets[j],
 * offsets[j+1]), offsets[0] == 0, non-decreasing, offsets[nseg] == n.
 * NULL offsets (or nseg == 0) means one segment covering everything.
 *
 * Thread safety: functions taking a const sresid_mask * may run concurrently
 * on the same mask; functions taking a non-const mask need one thread per
 * mask or the caller's lock.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_MASK_H
#define SPARSERESID_MASK_H

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sresid_mask sresid_mask;

/* Create a mask of n entries (n may be 0), all clear (value 0) or all set
 * (value 1). *out is the caller's. Errors: INVALID_ARG (NULL out, value not
 * 0/1), OVERFLOW (n beyond the address space), NOMEM. */
SRESID_API sresid_status sresid_mask_create(uint64_t n, int32_t value, sresid_mask **out);

/* An independent copy. *out is the caller's. Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_mask_copy(const sresid_mask *mask, sresid_mask **out);

/* Release a mask. Accepts NULL. */
SRESID_API void sresid_mask_free(sresid_mask *mask);

/* Number of entries n; 0 for NULL. */
SRESID_API uint64_t sresid_mask_size(const sresid_mask *mask);

/* Number of set entries; 0 for NULL. Linear in n / 64. */
SRESID_API uint64_t sresid_mask_count(const sresid_mask *mask);

/* Set entries within [first, first + len), for per-segment counts.
 * Errors: INVALID_ARG (NULL, range beyond n). */
SRESID_API sresid_status sresid_mask_count_range(const sresid_mask *mask, uint64_t first,
                                                 uint64_t len, uint64_t *out);

/* Entry i as 0 or 1. Errors: INVALID_ARG (NULL, i >= n). */
SRESID_API sresid_status sresid_mask_get(const sresid_mask *mask, uint64_t i, int32_t *value);

/* Set entry i to value (0 or 1). Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_mask_set(sresid_mask *mask, uint64_t i, int32_t value);

/* Set operations, in place on dst: dst = dst OP src. Both masks must have
 * the same n (SHAPE otherwise). */
#define SRESID_MASK_AND    1
#define SRESID_MASK_OR     2
#define SRESID_MASK_ANDNOT 3 /* dst and not src */
#define SRESID_MASK_XOR    4
/* Errors: INVALID_ARG (NULL, bad op), SHAPE. dst may be src. */
SRESID_API sresid_status sresid_mask_combine(sresid_mask *dst, const sresid_mask *src,
                                             int32_t op);

/* Complement in place. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_mask_not(sresid_mask *mask);

/* Jaccard index |a and b| / |a or b|; 1 when both are empty.
 * Errors: INVALID_ARG, SHAPE. */
SRESID_API sresid_status sresid_mask_jaccard(const sresid_mask *a, const sresid_mask *b,
                                             double *out);

/* Build from n bytes, one per entry (0 = clear, anything else = set; a numpy
 * bool array). *out is the caller's. Errors: INVALID_ARG, OVERFLOW, NOMEM. */
SRESID_API sresid_status sresid_mask_from_bytes(const uint8_t *flags, uint64_t n,
                                                sresid_mask **out);

/* Write the mask as n bytes of 0/1 into dst (count >= n).
 * Errors: INVALID_ARG, SHAPE (count < n). */
SRESID_API sresid_status sresid_mask_to_bytes(const sresid_mask *mask, uint8_t *dst,
                                              uint64_t count);

/* Zero the entries of x (n == mask size) whose bit is clear.
 * Errors: INVALID_ARG, SHAPE (n differs). */
SRESID_API sresid_status sresid_mask_apply(const sresid_mask *mask, float *x, uint64_t n);

/* The top fraction of x (n entries) by |x|, in each segment: k entries with
 * the largest |x|; among equal |x| the lower index wins. Linear time (radix
 * selection on the float bit patterns, no sort); -0 and +0 are equal.
 * *out is the caller's. Errors: INVALID_ARG (NULL, fraction outside [0, 1]
 * or NaN, bad offsets), NONFINITE (NaN or Inf in x, naming the index),
 * OVERFLOW, NOMEM. */
SRESID_API sresid_status sresid_mask_top(const float *x, uint64_t n, double fraction,
                                         const uint64_t *offsets, size_t nseg,
                                         sresid_mask **out);

/* Exactly k entries of each segment uniformly at random (selection
 * sampling, Knuth's algorithm S, on xoshiro256** seeded through splitmix64:
 * integer arithmetic only, so the mask is the same on every platform, build
 * and thread count). Segment j uses seed sresid-mix(seed, j) (docs/mask.md).
 * *out is the caller's. Errors: INVALID_ARG, OVERFLOW, NOMEM. */
SRESID_API sresid_status sresid_mask_random(uint64_t n, double fraction, uint64_t seed,
                                            const uint64_t *offsets, size_t nseg,
                                            sresid_mask **out);

/* Drop and grow, keeping each segment's count fixed: in each segment with a
 * active entries, d = floor(share * a + 0.5) active entries with the
 * smallest keep[i] are cleared (among equal keep the higher index goes
 * first), and as many entries that were inactive before the call, with the
 * largest grow[i], are set (among equal grow the lower index wins); d is
 * capped by the number of inactive entries. keep and grow hold n floats
 * (usually |s - s0| and accumulated |gradient|). changed, when not NULL, is
 * a mask of the same n (not mask itself) overwritten with the entries
 * dropped or grown.
 * Errors: INVALID_ARG (share outside [0, 1], bad offsets), SHAPE,
 * NONFINITE, NOMEM; on failure mask and changed are unchanged. */
SRESID_API sresid_status sresid_mask_drop_grow(sresid_mask *mask, const float *keep,
                                               const float *grow, uint64_t n, double share,
                                               const uint64_t *offsets, size_t nseg,
                                               sresid_mask *changed);

/* Save as a safetensors file: one U8 tensor "mask" of ceil(n / 8) bytes,
 * entry i at bit (i % 8) of byte i / 8, and metadata {"format":
 * "sparseresid.mask", "version": "1", "n": decimal n}. Written whole or not
 * at all. Errors: INVALID_ARG, IO, NOMEM. */
SRESID_API sresid_status sresid_mask_save(const sresid_mask *mask, const char *path,
                                          const sresid_save_opts *opts);

/* Load a mask saved by sresid_mask_save, validating the format tag, n, the
 * byte count and that the padding bits past n are clear. *out is the
 * caller's. Errors: INVALID_ARG, IO, METADATA, SHAPE, and the errors of
 * sresid_model_open. */
SRESID_API sresid_status sresid_mask_load(const char *path, sresid_mask **out);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_MASK_H */
