/* Private utilities every module may use: errors and option checks,
 * hashing, random numbers, overflow checks, dtype conversions, name rules
 * and output files. Never installed. */
#ifndef SPARSERESID_UTIL_UTIL_H
#define SPARSERESID_UTIL_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparseresid/sparseresid.h"

/* ---- errors (common.c) ---- */
/* Record a formatted message for sresid_last_error and return status. */
sresid_status sresid__fail(sresid_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check an options struct: NULL is fine; size below min_size or a non-zero
 * tail past known_size is rejected. Returns OK or INVALID_ARG with a message. */
sresid_status sresid__check_opts(const void *opts, size_t known_size, size_t min_size,
                                 const char *fn);

/* Check an options struct as sresid__check_opts does (minimum: the size
 * field) and copy the fields its size covers into dst (dst_size bytes,
 * zeroed first: zero is each field's default). NULL opts gives all zeros. */
sresid_status sresid__read_opts(void *dst, size_t dst_size, const void *opts, const char *fn);

/* Check a rows x cols float matrix argument with row stride ld (elements):
 * non-negative sizes, ld >= cols (ld >= 1), no overflow of the element span,
 * x non-NULL unless empty. fn names the caller in the message. */
sresid_status sresid__check_matrix(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                   const char *fn);
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
/* Round to nearest even; beyond the range: E5M2 infinity, E4M3 NaN. */
uint8_t sresid__f32_to_e4m3(float f);
uint8_t sresid__f32_to_e5m2(float f);
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
 * component replaced by "{L}" (or an exact copy). *stack points into the same
 * allocation (freed with the role): the name before that component, without
 * its separator ("" when there is no layer or the name starts with it).
 * Returns false on NOMEM. */
bool sresid__layer_role(const char *name, int32_t *layer, char **role, const char **stack);

/* ---- output files (atomic_file.c) ----
 * Every file the library writes goes through here: it appears whole or not
 * at all, never replaces anything but a regular file, and never replaces a
 * file the same call reads (docs/conventions.md, "Output files"). */
/* A file's identity: device and inode (symlinks resolved, hard links equal). */
typedef struct sresid__file_id {
    uint64_t dev, ino;
} sresid__file_id;
/* The identity of an open file, or of the file path names (following
 * symlinks); false when it cannot be had (no such file). */
bool sresid__file_id_of_fd(int fd, sresid__file_id *id);
bool sresid__file_id_of_path(const char *path, sresid__file_id *id);

typedef struct sresid__afile {
    const char *path; /* the target, borrowed */
    char *tmp;        /* the named temporary file beside it, or NULL (anonymous) */
    char *dir;        /* the target's directory (anonymous temporaries) */
    int fd;
    int failed;       /* errno of the first failed write, or 0 */
} sresid__afile;
#define SRESID__AFILE_NO_CLOBBER 0x1u /* fail with IO if the target exists */
/* Check the target and create the temporary file (mode 0644): INVALID_ARG
 * for an empty path; IO when the target exists and is not a regular file,
 * is one of the nkeep files of keep (the call's inputs), or its directory
 * does not exist or cannot be written; NOMEM. The temporary is anonymous
 * (O_TMPFILE: the kernel discards it if the process dies) where the
 * filesystem allows, else named PATH.tmp-XXXXXX. */
sresid_status sresid__afile_open_guarded(sresid__afile *f, const char *path,
                                         const sresid__file_id *keep, size_t nkeep);
/* sresid__afile_open_guarded with no inputs to keep. */
sresid_status sresid__afile_open(sresid__afile *f, const char *path);
/* Append bytes; false once any write has failed (the error is kept). */
bool sresid__afile_write(sresid__afile *f, const void *buf, size_t len);
/* Finish: with st == OK and every write done, fsync and move the file into
 * place (rename, or link under NO_CLOBBER); otherwise, or on any failure,
 * remove it. Returns st, or the IO error of this step. */
sresid_status sresid__afile_close(sresid__afile *f, sresid_status st, uint32_t flags);

#endif /* SPARSERESID_UTIL_UTIL_H */
