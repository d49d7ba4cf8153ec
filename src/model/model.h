/* Private declarations of the model module: the tensor container
 * (struct sresid_model), the checkpoint formats, content hashes and the
 * metadata of the library's own formats. Never installed. */
#ifndef SPARSERESID_MODEL_MODEL_H
#define SPARSERESID_MODEL_MODEL_H

#include "util/util.h"
#include "util/monitor.h"

#define SRESID__MAX_NDIM 64
#define SRESID__HEADER_LIMIT 100000000ull /* as the reference implementation */

/* ---- model (model.c) ---- */
typedef struct sresid__file {
    char *path;
    void *map;        /* NULL when the file is empty */
    size_t map_len;
    int fd;           /* kept open: reads go through pread (see model.c) */
} sresid__file;

typedef struct sresid__tensor {
    char *name;
    char *role;                /* also holds the stack (util.h, sresid__layer_role) */
    const char *stack;         /* inside role's allocation */
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

/* An empty model with its options checked (fn names the caller). */
sresid_status sresid__model_new(const sresid_model_opts *opts, const char *fn,
                                sresid_model **out);
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

/* ---- safetensors (safetensors.c) ---- */
/* Map one file and append its tensors and metadata to m. */
sresid_status sresid__st_open_file(sresid_model *m, const char *path);
/* Save m (sresid_model_save's layout), never over one of the nkeep files of
 * keep; one step of w (may be NULL) a tensor written. */
sresid_status sresid__st_save(const sresid_model *m, const char *path, uint32_t flags,
                             const sresid__file_id *keep, size_t nkeep, sresid__watch *w);
/* The identities of m's backing files (the files it keeps open), appended
 * to *ids (realloc'd; *n entries). NOMEM. */
sresid_status sresid__model_file_ids(const sresid_model *m, sresid__file_id **ids, size_t *n);
/* sresid_model_save that also refuses to write over a file of the ninputs
 * models of inputs (NULL entries skipped): saves made from other models.
 * w: the caller's count of units (one step a tensor written), or NULL for
 * one of its own from the options' monitor. */
sresid_status sresid__model_save_guarded(const sresid_model *m, const char *path,
                                         const sresid_save_opts *opts,
                                         const sresid_model *const *inputs, size_t ninputs,
                                         sresid__watch *w);
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

/* A file that does not start like safetensors: FORMAT with a message
 * naming the format it looks like (GGUF, PyTorch, pickle, NumPy, HDF5,
 * ONNX, JSON, text) and how to convert it; OK when it looks like none
 * (sniff.c). */
sresid_status sresid__sniff_other_format(const unsigned char *p, size_t n, const char *path);

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
/* Open path, one of the library's own files, for fn: INVALID_ARG when path
 * or out (the caller's out-parameter) is NULL, else the open's status with
 * fn before its message. */
sresid_status sresid__meta_open(const char *path, const void *out, const char *fn,
                                sresid_model **model);
/* The format tag ("format") and version (version_key) of one of the
 * library's own files, what ("score mask", ...) naming it in messages:
 * METADATA when the tag is missing or another, or the version is missing
 * or not the one this library reads. */
sresid_status sresid__meta_format(const sresid_model *m, const char *path, const char *format,
                                  const char *version_key, const char *version, const char *what);
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

#endif /* SPARSERESID_MODEL_MODEL_H */
