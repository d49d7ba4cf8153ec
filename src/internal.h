/* Private declarations shared by the library's source files. Never installed. */
#ifndef SPARSERESID_INTERNAL_H
#define SPARSERESID_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparseresid/sparseresid.h"

#define SRESID__MAX_NDIM 64
#define SRESID__HEADER_LIMIT 100000000ull /* as the reference implementation */

/* ---- errors (common.c) ---- */
/* Record a formatted message for sresid_last_error and return status. */
sresid_status sresid__fail(sresid_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check an options struct: NULL is fine; size below min_size or a non-zero
 * tail past known_size is rejected. Returns OK or INVALID_ARG with a message. */
sresid_status sresid__check_opts(const void *opts, size_t known_size, size_t min_size,
                                 const char *what);

/* Check an options struct as sresid__check_opts does (minimum: the size
 * field) and copy the fields its size covers into dst (dst_size bytes,
 * zeroed first: zero is each field's default). NULL opts gives all zeros. */
sresid_status sresid__read_opts(void *dst, size_t dst_size, const void *opts, const char *what);

/* Check a rows x cols float matrix argument with row stride ld (elements):
 * non-negative sizes, ld >= cols (ld >= 1), no overflow of the element span,
 * x non-NULL unless empty. what names the caller in the message. */
sresid_status sresid__check_matrix(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                   const char *what);
/* True when every element of the matrix is finite. */
bool sresid__all_finite(const float *x, int64_t rows, int64_t cols, int64_t ld);

/* ---- hashing ---- */
/* splitmix64's output function applied to z + golden ratio: a bijection that
 * spreads every input bit (seeds, hash finishing). */
static inline uint64_t sresid__mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* FNV-1a of a string (tensor-name lookup, per-tensor seeds). */
static inline uint64_t sresid__fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* ---- random numbers (rng.c) ---- */
typedef struct sresid__rng {
    uint64_t s[4];
    double spare;
    int spare_valid;
} sresid__rng;
void sresid__rng_seed(sresid__rng *r, uint64_t seed);
/* One xoshiro256** step; inline so that hot loops keep the state in registers. */
static inline uint64_t sresid__rng_next(sresid__rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, out = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return out;
}
double sresid__rng_uniform(sresid__rng *r);              /* [0, 1), 53 bits */
uint64_t sresid__rng_below(sresid__rng *r, uint64_t n);  /* uniform in [0, n), n >= 1 */
double sresid__rng_normal(sresid__rng *r);               /* N(0, 1), Box-Muller */
void sresid__rng_normal_f32(sresid__rng *r, float *dst, size_t n, double mean, double sd);

/* ---- overflow-checked arithmetic ---- */
static inline bool sresid__mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool sresid__add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* ---- dtypes (dtype.c) ---- */
float sresid__f16_to_f32(uint16_t h);
float sresid__bf16_to_f32(uint16_t h);
float sresid__e5m2_to_f32(uint8_t v);
float sresid__e4m3_to_f32(uint8_t v);
uint16_t sresid__f32_to_f16(float f);  /* round to nearest even */
uint16_t sresid__f32_to_bf16(float f); /* round to nearest even, NaN kept quiet */
/* Convert n elements of a float dtype at src (little-endian, any alignment)
 * to float32. dtype must satisfy sresid_dtype_is_float. */
void sresid__to_f32(sresid_dtype dtype, const unsigned char *src, float *dst, size_t n);

/* ---- names (names.c) ---- */
/* Case-insensitive glob over the whole string: '*' any run, '?' one byte. */
bool sresid__glob_match(const char *pattern, const char *s);
/* Kind from user rules (tried first) then the defaults unless replace. */
int32_t sresid__classify(const char *name, char *const *patterns, const int32_t *kinds,
                         size_t n, bool replace);
/* Layer index: the first '.' or '/' separated component made only of digits
 * (value <= INT32_MAX), or -1. *role gets a malloc'd copy of the name with that
 * component replaced by "{L}" (or an exact copy). Returns false on NOMEM. */
bool sresid__layer_role(const char *name, int32_t *layer, char **role);

/* ---- model (model.c) ---- */
typedef struct sresid__file {
    char *path;
    void *map;        /* NULL when the file is empty */
    size_t map_len;
    int fd;           /* kept open: reads go through pread (see model.c) */
} sresid__file;

typedef struct sresid__tensor {
    char *name;
    char *role;
    int64_t *shape;            /* ndim entries, NULL if ndim == 0 */
    int32_t ndim;
    sresid_dtype dtype;
    int64_t numel;
    uint64_t nbytes;
    const unsigned char *data; /* mapped, owned or borrowed */
    void *owned;               /* freed with the model */
    int32_t file;              /* index into files, or -1 for memory */
    int32_t kind;
    int32_t layer;
} sresid__tensor;

struct sresid_model {
    sresid__tensor *tensors;
    size_t count, cap;
    size_t *hash;              /* open addressing, index+1, 0 = empty */
    size_t hash_cap;           /* power of two, > 2 * count */
    sresid__file *files;
    size_t nfiles;
    char **meta_keys;
    char **meta_values;
    size_t meta_count, meta_cap;
    char **rule_patterns;
    int32_t *rule_kinds;
    size_t rule_count;
    bool rules_replace;
    int32_t layout;
    uint32_t flags;
};

/* Add a tensor already validated; takes ownership of nothing: copies name,
 * shape; data pointer stored as given with owned (may be NULL). */
sresid_status sresid__model_push(sresid_model *m, const char *name, sresid_dtype dtype,
                                 int32_t ndim, const int64_t *shape, int64_t numel,
                                 uint64_t nbytes, const unsigned char *data, void *owned,
                                 int32_t file);
/* Validate a shape: ndim in [0, 64], dims >= 0, numel and bytes within 64 bits
 * and SIZE_MAX. */
sresid_status sresid__shape_numel(const int64_t *shape, int32_t ndim, sresid_dtype dtype,
                                  int64_t *numel, uint64_t *nbytes);
/* Same rank and dimensions. */
bool sresid__same_shape(const sresid__tensor *a, const sresid__tensor *b);
/* Matrix view of tensor t under layout. */
void sresid__matrix_view(const sresid__tensor *t, int32_t layout, int64_t *rows, int64_t *cols);
/* Convert elements [first, first+n) of tensor t to float32. File-backed
 * tensors are read with pread unless the model keeps pages (then copied from
 * the mapping). IO when the file shrank or cannot be read. */
sresid_status sresid__tensor_to_f32(const sresid_model *m, const sresid__tensor *t,
                                    size_t first, size_t n, float *dst);
/* Copy bytes [off, off+len) of tensor t: pread for file-backed tensors
 * (whatever the model's flags: never faults on a file that shrank), memcpy
 * otherwise. IO on a short read. */
sresid_status sresid__tensor_bytes(const sresid_model *m, const sresid__tensor *t, uint64_t off,
                                   void *dst, size_t len);
bool sresid__utf8_valid(const char *s, size_t len);

/* ---- residual (residual.c) ---- */
/* The base model a residual pairs (borrowed). */
const sresid_model *sresid__residual_base(const sresid_residual *r);
/* The trained model it pairs (borrowed). */
const sresid_model *sresid__residual_trained(const sresid_residual *r);

/* ---- report (report.c, read by report_json.c) ---- */
int32_t sresid__report_source(const sresid_report *r);
int32_t sresid__report_layout(const sresid_report *r);
const sresid_report_opts *sresid__report_opts(const sresid_report *r);
const int64_t *sresid__report_shape(const sresid_report *r, size_t i);
bool sresid__report_stats(const sresid_report *r, int what, size_t i, sresid_moment_stats *out);
size_t sresid__report_skipped(const sresid_report *r, size_t i, const char **name,
                              const char **why);

/* ---- output files (atomic_file.c) ---- */
typedef struct sresid__afile {
    const char *path; /* the target, borrowed */
    char *tmp;        /* the temporary file beside it */
    int fd;
    int failed;       /* errno of the first failed write, or 0 */
} sresid__afile;
#define SRESID__AFILE_NO_CLOBBER 0x1u /* fail with IO if the target exists */
/* Create the temporary file (mode 0644). IO, NOMEM. */
sresid_status sresid__afile_open(sresid__afile *f, const char *path);
/* Append bytes; false once any write has failed (the error is kept). */
bool sresid__afile_write(sresid__afile *f, const void *buf, size_t len);
/* Finish: with st == OK and every write done, fsync and move the file into
 * place (rename, or link under NO_CLOBBER); otherwise, or on any failure,
 * remove it. Returns st, or the IO error of this step. */
sresid_status sresid__afile_close(sresid__afile *f, sresid_status st, uint32_t flags);

/* ---- safetensors (safetensors.c) ---- */
/* Map one file and append its tensors and metadata to m. */
sresid_status sresid__st_open_file(sresid_model *m, const char *path);
sresid_status sresid__st_save(const sresid_model *m, const char *path, uint32_t flags);
/* A safetensors header from its JSON object: compact, in insertion order,
 * padded with spaces to a multiple of 8 bytes (*hlen, the text's length);
 * malloc'd, NULL on NOMEM. */
struct json_t;
char *sresid__st_header_text(const struct json_t *root, size_t *hlen);
/* The layout sresid__st_save writes: *order (malloc'd, count entries) the
 * tensors in file order, *head (malloc'd, *head_len bytes) the length prefix
 * and the padded header, which the tensors' bytes follow in that order.
 * path is for messages. NOMEM. */
sresid_status sresid__st_layout(const sresid_model *m, const char *path,
                                const sresid__tensor ***order, unsigned char **head,
                                size_t *head_len);

/* ---- shards (shards.c) ---- */
sresid_status sresid__open_index(sresid_model *m, const char *index_path);
sresid_status sresid__open_dir(sresid_model *m, const char *dir);

/* ---- content hashes (hash.c) ---- */
/* XXH3-128 of tensor index's raw bytes as stored (pread in chunks for
 * file-backed tensors), written as 32 lowercase hex digits and a NUL.
 * IO on a short read. */
sresid_status sresid__tensor_hash(const sresid_model *m, size_t index, char hex[33]);

/* ---- metadata of the library's own formats (meta.c) ----
 * Numbers are written and read in the C locale, whatever the host's. */
/* The value of key; METADATA when it is missing. */
sresid_status sresid__meta_get(const sresid_model *m, const char *path, const char *key,
                               const char **out);
/* key must be present and equal want (METADATA otherwise). */
sresid_status sresid__meta_expect(const sresid_model *m, const char *path, const char *key,
                                  const char *want);
/* A decimal count without sign, spaces or leading zeros (other than "0")
 * that fits 64 bits. */
bool sresid__parse_u64(const char *s, uint64_t *out);
/* key as such a count, at most max (METADATA otherwise). */
sresid_status sresid__meta_u64(const sresid_model *m, const char *path, const char *key,
                               uint64_t max, uint64_t *out);
/* key as a whole-string number, finite (or NaN too with allow_nan). */
sresid_status sresid__meta_f64(const sresid_model *m, const char *path, const char *key,
                               bool allow_nan, double *out);
/* x as "%.17g" (round-trips a double); false on NOMEM. */
bool sresid__fmt_f64(char buf[32], double x);

/* ---- masks (mask.c) ---- */
/* Bits of a mask, entry i at bit i % 64 of word i / 64; bits past n clear. */
const uint64_t *sresid__mask_words(const sresid_mask *m);
uint64_t *sresid__mask_words_mut(sresid_mask *m);
/* Check nseg + 1 segment offsets against n (NULL offsets: one segment).
 * what names the caller. */
sresid_status sresid__check_segments(const uint64_t *offsets, size_t nseg, uint64_t n,
                                     const char *what);
/* k = floor(fraction * n + 0.5), fraction already validated. */
uint64_t sresid__fraction_count(double fraction, uint64_t n);

/* ---- top-k selection by |x| (select.c) ----
 * Exact selection of the k largest |x| of a stream of floats (all finite),
 * by radix on the bit pattern of |x| (which orders like the value): pass 0
 * counts (and sums x^2 of) 2^16 buckets of the high bits, pass 1 counts the
 * low bits inside the one bucket where the k-th value lies; then the
 * threshold is exact. Order: |x| descending, equal |x| by stream position
 * ascending (-0 == +0). Feed the same values in the same order in every
 * pass, in chunks of any size. With want_energy, k is instead the smallest
 * count whose largest values hold sum x^2 >= energy (sums in double). */
typedef struct sresid__sel {
    uint64_t k;          /* wanted count (capped after pass 0; settled for energy queries) */
    double energy;       /* energy query: the share in [0, 1]; < 0 for a count query */
    double target;       /* energy query, after pass 0: share * total_energy */
    int pass;            /* 0, 1, then 2 = settled */
    uint32_t hi;         /* after pass 0: the high bucket of the k-th value */
    uint64_t above;      /* entries strictly above bucket hi (and, settled, above threshold) */
    double above_energy; /* their sum of x^2 */
    uint64_t total;      /* entries seen in pass 0 */
    uint64_t zeros;      /* of which +0 or -0 */
    double total_energy; /* sum of x^2 of all entries (bucket sums added largest first) */
    uint64_t *count;     /* 2^16 counts of the current pass */
    double *esum;        /* 2^16 energy sums of pass 0 (energy queries only) */
    float threshold;     /* settled: |x| of the k-th value (INFINITY when k == 0: nothing kept) */
    uint64_t take_equal; /* settled: keep the first take_equal entries with |x| == threshold */
} sresid__sel;
/* Count query for k (capped at the entries seen). NOMEM. */
sresid_status sresid__sel_init(sresid__sel *s, uint64_t k);
/* Energy query: the fewest entries with sum x^2 >= share * total (share in [0, 1]). NOMEM. */
sresid_status sresid__sel_init_energy(sresid__sel *s, double share);
/* Count a chunk in the current pass. */
void sresid__sel_feed(sresid__sel *s, const float *x, size_t n);
/* End the current pass. After it, s->pass == 2 means settled (pass 1 may
 * be skipped when the bucket settles the query alone). */
void sresid__sel_next(sresid__sel *s);
void sresid__sel_free(sresid__sel *s);
/* After settling: a cursor for the collection pass, fed in stream order. */
typedef struct sresid__sel_cursor {
    float threshold;
    uint64_t equal_left;
} sresid__sel_cursor;
static inline bool sresid__sel_keep(sresid__sel_cursor *c, float x)
{
    float a = x < 0 ? -x : x;
    if (a > c->threshold)
        return true;
    if (a == c->threshold && c->equal_left) {
        c->equal_left--;
        return true;
    }
    return false;
}

/* ---- amplitude basis (amp.c, amp_io.c, amp_select.c) ---- */
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
                              const char *what, size_t *tidx);
/* Thin SVD (svd.c) of the row-major m x n matrix w, truncated to r <=
 * min(m, n): u (m x r) and v (n x r) row-major, s the r largest singular
 * values, descending. w is overwritten; reload(ctx, w) refills it for a
 * second attempt (sgesvd after sgesdd fails). name is for messages.
 * UNSUPPORTED (sizes beyond LAPACK's 32-bit integers, no convergence),
 * NOMEM, or reload's status. */
sresid_status sresid__svd(float *w, int64_t m, int64_t n, int64_t r, float *u, float *s, float *v,
                          const char *name, sresid_status (*reload)(void *ctx, float *w),
                          void *ctx);
/* An amp of count tensors with zeroed entries (amp.c); NULL on NOMEM. */
sresid_amp *sresid__amp_new(const sresid_model *base, int32_t layout, size_t count);
/* With each t[i].rank set: offsets, counts, nscores, and the scores and s0
 * buffers allocated (contents undefined). OVERFLOW, NOMEM. */
sresid_status sresid__amp_lay_out(sresid_amp *amp, const char *what);

#endif /* SPARSERESID_INTERNAL_H */
