/* Private declarations of the amplitude module: the basis (struct
 * sresid_amp), masks, optimisers and selection rules. Never installed. */
#ifndef SPARSERESID_AMP_AMP_H
#define SPARSERESID_AMP_AMP_H

#include "model/model.h"
#include "util/blas.h"

/* ---- masks (mask.c) ---- */
/* Bits of a mask, entry i at bit i % 64 of word i / 64; bits past n clear. */
const uint64_t *sresid__mask_words(const sresid_mask *m);
uint64_t *sresid__mask_words_mut(sresid_mask *m);
/* Check nseg + 1 segment offsets against n (NULL offsets: one segment).
 * fn names the caller. */
sresid_status sresid__check_segments(const uint64_t *offsets, size_t nseg, uint64_t n,
                                     const char *fn);

/* ---- amplitude basis (basis.c, state_io.c, selection.c) ---- */
typedef struct sresid__amp_tensor {
    size_t index;      /* in the base model */
    int64_t rows, cols, rank;
    uint64_t offset;   /* first score */
    uint64_t count;    /* rank (DIAG) or rank * rank (CORE) */
    float *u;          /* rows x rank, row-major, + SRESID__BLAS_SLACK floats */
    float *v;          /* cols x rank, row-major, + slack */
} sresid__amp_tensor;

struct sresid_amp {
    const sresid_model *base; /* borrowed */
    int32_t layout;
    size_t count;
    sresid__amp_tensor *t;
    uint64_t nscores;
    uint64_t *offsets;        /* count + 1 */
    float *scores;            /* nscores (+ slack) */
    float *s0;                /* nscores (+ slack) */
    struct sresid__amp_pool *pool; /* scratch kept between calls (amp.c), locked inside */
};

/* Pair each amp tensor with the trained tensor of its name (index into
 * tidx, count entries): a float tensor of the same shape, else MISMATCH. */
sresid_status sresid__amp_pair(const sresid_amp *amp, const sresid_model *trained,
                              const char *fn, size_t *tidx);
/* An amp of count tensors with zeroed entries (basis.c); NULL on NOMEM. */
sresid_amp *sresid__amp_new(const sresid_model *base, int32_t layout, size_t count);

/* Name of selected tensor t (borrowed from the base). */
static inline const char *sresid__amp_name(const sresid_amp *amp, size_t t)
{
    return amp->base->tensors[amp->t[t].index].name;
}
/* With each t[i].rank set: offsets, counts, nscores, and the scores and s0
 * buffers allocated (contents undefined). OVERFLOW, NOMEM. */
sresid_status sresid__amp_lay_out(sresid_amp *amp, const char *fn);

#endif /* SPARSERESID_AMP_AMP_H */
