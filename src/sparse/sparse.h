/* Private declarations of the sparse residual module (sparse.c, sparse_io.c,
 * sparse_apply.c). Never installed. */
#ifndef SPARSERESID_SPARSE_H
#define SPARSERESID_SPARSE_H

#include "residual/residual.h"

#define SRESID__SPARSE_FORMAT "sparseresid.delta"
#define SRESID__SPARSE_VERSION "1"

/* One tensor of a sparse residual: positions delta-encoded (first the
 * position, then the gaps) in index_dtype, values in the value dtype, both
 * little-endian, exactly the bytes of the file. */
typedef struct sresid__sp_tensor {
    char *name;
    int64_t *shape;          /* ndim entries, NULL when ndim == 0 */
    int32_t ndim;
    sresid_dtype base_dtype;
    sresid_dtype index_dtype;
    int64_t numel;
    uint64_t kept;
    unsigned char *idx;      /* kept * index size bytes (NULL when kept == 0) */
    unsigned char *val;      /* kept * value size bytes */
    unsigned char *lo;       /* F32 low parts (kept * 4 bytes), or NULL: see sparse.c */
    char hash[33];           /* XXH3-128 of the base tensor's bytes, hex */
    double energy;           /* sum R^2 (NaN when unknown) */
    double kept_energy;      /* share of energy at the kept positions */
    double error;            /* |R - R_sparse| / |R| */
} sresid__sp_tensor;

struct sresid_sparse {
    int32_t rule;
    sresid_dtype value_dtype;
    double param;
    uint64_t seed;
    size_t count;
    sresid__sp_tensor *t;
    /* totals of the error report */
    double energy, kept_energy, error;
    sresid__file_id source;   /* the file it was loaded from */
    bool has_source;
};

/* Rule names as in the file ("top", "top_per_tensor", ...), NULL if unknown. */
const char *sresid__sparse_rule_name(int32_t rule);
int32_t sresid__sparse_rule_from_name(const char *name);

/* Smallest of U8/U16/U32/U64 holding every code of the delta encoding of n
 * strictly increasing positions (U8 when n == 0). */
sresid_dtype sresid__sparse_index_dtype(const uint64_t *pos, uint64_t n);
/* Encode n strictly increasing positions into dst (n codes of dtype). */
void sresid__sparse_encode(const uint64_t *pos, uint64_t n, sresid_dtype dtype, void *dst);
/* Decoder: codes of dtype at src (little-endian, any alignment). */
typedef struct sresid__sp_cursor {
    const unsigned char *src;
    sresid_dtype dtype;
    uint64_t left;
    uint64_t pos;   /* last position */
    bool started;
} sresid__sp_cursor;
void sresid__sparse_cursor(sresid__sp_cursor *c, const void *src, sresid_dtype dtype, uint64_t n);
/* Next position. false when the codes run out, a gap after the first is
 * zero (*why = 1) or the sum overflows 64 bits (*why = 2). */
bool sresid__sparse_next(sresid__sp_cursor *c, uint64_t *pos, int *why);

/* Value j of a tensor as float32. */
float sresid__sparse_value(sresid_dtype dtype, const unsigned char *val, uint64_t j);

/* Release the tensors of s and s (accepts NULL). */
void sresid__sparse_destroy(sresid_sparse *s);

#endif /* SPARSERESID_SPARSE_H */
