/* The model handle: tensors, name lookup, metadata, kind rules, reading. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

bool sresid__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p++;
        if (c < 0x80)
            continue;
        size_t extra;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - p) < extra)
            return false;
        for (size_t i = 0; i < extra; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        p += extra;
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
    }
    return true;
}

/* Slot holding name, or the empty slot where it would go. */
static size_t *hash_slot(const sresid_model *m, const char *name)
{
    size_t mask = m->hash_cap - 1;
    for (size_t i = sresid__fnv1a(name) & mask;; i = (i + 1) & mask) {
        size_t *slot = &m->hash[i];
        if (*slot == 0 || strcmp(m->tensors[*slot - 1].name, name) == 0)
            return slot;
    }
}

static bool hash_grow(sresid_model *m)
{
    size_t cap = m->hash_cap ? m->hash_cap * 2 : 64;
    size_t *h = calloc(cap, sizeof *h);
    if (!h)
        return false;
    free(m->hash);
    m->hash = h;
    m->hash_cap = cap;
    for (size_t i = 0; i < m->count; i++)
        *hash_slot(m, m->tensors[i].name) = i + 1;
    return true;
}

sresid_status sresid__shape_numel(const int64_t *shape, int32_t ndim, sresid_dtype dtype,
                                  int64_t *numel, uint64_t *nbytes)
{
    if (ndim < 0 || ndim > SRESID__MAX_NDIM)
        return sresid__fail(SRESID_ERR_SHAPE, "rank %d is not in [0, %d]", (int)ndim,
                            SRESID__MAX_NDIM);
    uint64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return sresid__fail(SRESID_ERR_SHAPE, "dimension %d is negative (%lld)", (int)i,
                                (long long)shape[i]);
        if (!sresid__mul_u64(n, (uint64_t)shape[i], &n) || n > INT64_MAX)
            return sresid__fail(SRESID_ERR_SHAPE, "element count overflows 64 bits");
    }
    uint64_t b;
    if (!sresid__mul_u64(n, sresid_dtype_size(dtype), &b) || b > SIZE_MAX)
        return sresid__fail(SRESID_ERR_SHAPE, "byte size overflows the address space");
    *numel = (int64_t)n;
    *nbytes = b;
    return SRESID_OK;
}

/* Product of shape[lo..hi), saturating: a zero-size tensor may have huge
 * other dimensions whose partial product overflows. */
static int64_t dims_product(const int64_t *shape, int32_t lo, int32_t hi)
{
    int64_t p = 1;
    for (int32_t i = lo; i < hi; i++)
        if (__builtin_mul_overflow(p, shape[i], &p))
            return INT64_MAX;
    return p;
}

bool sresid__same_shape(const sresid__tensor *a, const sresid__tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

void sresid__matrix_view(const sresid__tensor *t, int32_t layout, int64_t *rows, int64_t *cols)
{
    if (t->ndim == 0) {
        *rows = *cols = 1;
    } else if (t->ndim == 1) {
        *rows = 1;
        *cols = t->shape[0];
    } else if (layout == SRESID_LAYOUT_OUT_LAST) {
        *rows = dims_product(t->shape, 0, t->ndim - 1);
        *cols = t->shape[t->ndim - 1];
    } else {
        *rows = t->shape[0];
        *cols = dims_product(t->shape, 1, t->ndim);
    }
}

static void classify(sresid_model *m, sresid__tensor *t)
{
    t->kind = sresid__classify(t->name, m->rule_patterns, m->rule_kinds, m->rule_count,
                               m->rules_replace);
}

sresid_status sresid__model_push(sresid_model *m, const char *name, sresid_dtype dtype,
                                 int32_t ndim, const int64_t *shape, int64_t numel,
                                 uint64_t nbytes, const unsigned char *data, void *owned,
                                 int32_t file)
{
    if (m->hash_cap < 2 * (m->count + 1) && !hash_grow(m))
        return sresid__fail(SRESID_ERR_NOMEM, "out of memory for tensor '%s'", name);
    size_t *slot = hash_slot(m, name);
    if (*slot)
        return sresid__fail(SRESID_ERR_DUPLICATE, "tensor '%s' appears twice", name);
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        sresid__tensor *t = realloc(m->tensors, cap * sizeof *t);
        if (!t)
            return sresid__fail(SRESID_ERR_NOMEM, "out of memory for tensor '%s'", name);
        m->tensors = t;
        m->cap = cap;
    }
    sresid__tensor *t = &m->tensors[m->count];
    memset(t, 0, sizeof *t);
    t->name = dupstr(name);
    t->shape = ndim ? malloc((size_t)ndim * sizeof *shape) : NULL;
    if (!t->name || (ndim && !t->shape) ||
        !sresid__layer_role(name, &t->layer, &t->role, &t->stack)) {
        free(t->name);
        free(t->shape);
        return sresid__fail(SRESID_ERR_NOMEM, "out of memory for tensor '%s'", name);
    }
    if (ndim)
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->ndim = ndim;
    t->dtype = dtype;
    t->numel = numel;
    t->nbytes = nbytes;
    t->data = nbytes ? data : NULL;
    t->owned = owned;
    t->file = file;
    classify(m, t);
    m->count++;
    *slot = m->count;
    return SRESID_OK;
}

sresid_status sresid__model_new(const sresid_model_opts *opts, const char *fn,
                                sresid_model **out)
{
    sresid_model_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (o.layout != SRESID_LAYOUT_OUT_FIRST && o.layout != SRESID_LAYOUT_OUT_LAST)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: layout %d is not a SRESID_LAYOUT_*",
                            fn, (int)o.layout);
    if (o.flags & ~SRESID_OPEN_KEEP_PAGES)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)o.flags);
    sresid_model *m = calloc(1, sizeof *m);
    if (!m)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    m->layout = o.layout;
    m->flags = o.flags;
    *out = m;
    return SRESID_OK;
}

sresid_status sresid_model_create(const sresid_model_opts *opts, sresid_model **out)
{
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_create: out is NULL");
    return sresid__model_new(opts, "sresid_model_create", out);
}

void sresid_model_free(sresid_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].role);
        free(m->tensors[i].shape);
        free(m->tensors[i].owned);
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        if (m->files[i].map)
            munmap(m->files[i].map, m->files[i].map_len);
        if (m->files[i].fd >= 0)
            close(m->files[i].fd);
        free(m->files[i].path);
    }
    for (size_t i = 0; i < m->meta_count; i++) {
        free(m->meta_keys[i]);
        free(m->meta_values[i]);
    }
    for (size_t i = 0; i < m->rule_count; i++)
        free(m->rule_patterns[i]);
    free(m->rule_patterns);
    free(m->rule_kinds);
    free(m->meta_keys);
    free(m->meta_values);
    free(m->files);
    free(m->tensors);
    free(m->hash);
    free(m);
}

size_t sresid_model_tensor_count(const sresid_model *m)
{
    return m ? m->count : 0;
}

sresid_status sresid_model_find(const sresid_model *m, const char *name, size_t *index)
{
    if (!m || !name || !index)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_find: NULL argument");
    size_t slot = m->hash_cap ? *hash_slot(m, name) : 0;
    if (!slot)
        return sresid__fail(SRESID_ERR_NOT_FOUND, "no tensor named '%s'", name);
    *index = slot - 1;
    return SRESID_OK;
}

static sresid_status get_tensor(const sresid_model *m, size_t index, const char *fn,
                                const sresid__tensor **t)
{
    if (!m)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: model is NULL", fn);
    if (index >= m->count)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: index %zu out of range (%zu tensors)",
                            fn, index, m->count);
    *t = &m->tensors[index];
    return SRESID_OK;
}

sresid_status sresid_model_tensor_info(const sresid_model *m, size_t index,
                                       sresid_tensor_info *info)
{
    const sresid__tensor *t = NULL;
    sresid_status st = get_tensor(m, index, "sresid_model_tensor_info", &t);
    if (st)
        return st;
    if (!info || info->size < offsetof(sresid_tensor_info, layer) + sizeof info->layer)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_model_tensor_info: info is NULL or its size is too small");
    sresid_tensor_info v = {.size = info->size,
                            .name = t->name,
                            .role = t->role,
                            .shape = t->shape,
                            .data = t->data,
                            .nbytes = t->nbytes,
                            .numel = t->numel,
                            .dtype = t->dtype,
                            .ndim = t->ndim,
                            .kind = t->kind,
                            .layer = t->layer};
    sresid__matrix_view(t, m->layout, &v.rows, &v.cols);
    /* fill only what the caller's struct covers */
    memcpy(info, &v, info->size < sizeof v ? info->size : sizeof v);
    return SRESID_OK;
}

sresid_status sresid_model_tensor_stack(const sresid_model *m, size_t index, const char **stack)
{
    const sresid__tensor *t = NULL;
    sresid_status st = get_tensor(m, index, "sresid_model_tensor_stack", &t);
    if (st)
        return st;
    if (!stack)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_tensor_stack: stack is NULL");
    *stack = t->stack;
    return SRESID_OK;
}

/* Reads go through pread rather than the mapping: copying out of a mapping
 * of cached file data runs at a fraction of read(2) speed here (bench/README.md),
 * and pread leaves nothing resident but the caller's buffer. */
static bool use_pread(const sresid_model *m, const sresid__tensor *t)
{
    return t->file >= 0 && !(m->flags & SRESID_OPEN_KEEP_PAGES);
}

static sresid_status pread_all(const sresid_model *m, const sresid__tensor *t, uint64_t off,
                               void *dst, size_t len)
{
    const sresid__file *f = &m->files[t->file];
    uint64_t pos = (uint64_t)(t->data - (const unsigned char *)f->map) + off;
    unsigned char *p = dst;
    while (len) {
        ssize_t got = pread(f->fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len,
                            (off_t)pos);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return sresid__fail(SRESID_ERR_IO, "%s: tensor '%s': cannot read byte %llu: %s",
                                f->path, t->name, (unsigned long long)pos,
                                got == 0 ? "the file shrank since it was opened"
                                         : strerror(errno));
        p += got;
        pos += (uint64_t)got;
        len -= (size_t)got;
    }
    return SRESID_OK;
}

sresid_status sresid__tensor_bytes(const sresid_model *m, const sresid__tensor *t, uint64_t off,
                                   void *dst, size_t len)
{
    if (t->file >= 0)
        return pread_all(m, t, off, dst, len);
    if (len)
        memcpy(dst, t->data + off, len);
    return SRESID_OK;
}

sresid_status sresid__tensor_to_f32(const sresid_model *m, const sresid__tensor *t,
                                    size_t first, size_t n, float *dst)
{
    size_t es = sresid_dtype_size(t->dtype);
    if (n == 0) /* an empty tensor may have no data pointer at all */
        return SRESID_OK;
    if (!use_pread(m, t)) {
        sresid__to_f32(t->dtype, t->data + first * es, dst, n);
        return SRESID_OK;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (t->dtype == SRESID_DTYPE_F32)
        return pread_all(m, t, (uint64_t)first * 4, dst, n * 4);
#endif
    unsigned char buf[1 << 16];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof buf / es ? n - done : sizeof buf / es;
        sresid_status st = pread_all(m, t, (uint64_t)(first + done) * es, buf, k * es);
        if (st)
            return st;
        sresid__to_f32(t->dtype, buf, dst + done, k);
        done += k;
    }
    return SRESID_OK;
}

sresid_status sresid_model_read_f32(const sresid_model *m, size_t index, float *dst,
                                    size_t count)
{
    const sresid__tensor *t = NULL;
    sresid_status st = get_tensor(m, index, "sresid_model_read_f32", &t);
    if (st)
        return st;
    if (!dst && t->numel > 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_read_f32: dst is NULL");
    if (!sresid_dtype_is_float(t->dtype))
        return sresid__fail(SRESID_ERR_DTYPE, "tensor '%s' has dtype %s, not a float type",
                            t->name, sresid_dtype_name(t->dtype));
    if (count < (uint64_t)t->numel)
        return sresid__fail(SRESID_ERR_SHAPE,
                            "tensor '%s' has %lld elements but the buffer holds %zu", t->name,
                            (long long)t->numel, count);
    return sresid__tensor_to_f32(m, t, 0, (size_t)t->numel, dst);
}

sresid_status sresid_model_read_raw(const sresid_model *m, size_t index, void *dst,
                                    size_t nbytes)
{
    const sresid__tensor *t = NULL;
    sresid_status st = get_tensor(m, index, "sresid_model_read_raw", &t);
    if (st)
        return st;
    if (!dst && t->nbytes > 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_read_raw: dst is NULL");
    if (nbytes < t->nbytes)
        return sresid__fail(SRESID_ERR_SHAPE, "tensor '%s' has %llu bytes but the buffer holds %zu",
                            t->name, (unsigned long long)t->nbytes, nbytes);
    if (use_pread(m, t))
        return pread_all(m, t, 0, dst, (size_t)t->nbytes);
    if (t->nbytes)
        memcpy(dst, t->data, (size_t)t->nbytes);
    return SRESID_OK;
}

sresid_status sresid_model_add_tensor(sresid_model *m, const char *name, sresid_dtype dtype,
                                      int32_t ndim, const int64_t *shape, const void *data,
                                      size_t nbytes, uint32_t flags)
{
    if (!m || !name)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_add_tensor: %s is NULL",
                            m ? "name" : "model");
    if (flags & ~SRESID_ADD_BORROW)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_add_tensor: unknown flags 0x%x",
                            (unsigned)flags);
    /* An empty name is legal in a file but cannot be what a caller meant. */
    if (!*name || !sresid__utf8_valid(name, strlen(name)) || strcmp(name, "__metadata__") == 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_model_add_tensor: name is empty, not valid UTF-8 or reserved");
    if (sresid_dtype_size(dtype) == 0)
        return sresid__fail(SRESID_ERR_DTYPE, "tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim > 0 && !shape)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "tensor '%s': shape is NULL", name);
    int64_t numel;
    uint64_t want;
    sresid_status st = sresid__shape_numel(shape, ndim, dtype, &numel, &want);
    if (st)
        return sresid__fail(st, "tensor '%s': %s", name, sresid_last_error());
    if (nbytes != want)
        return sresid__fail(SRESID_ERR_SHAPE, "tensor '%s': %zu bytes given, shape and dtype need %llu",
                            name, nbytes, (unsigned long long)want);
    if (!data && nbytes)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "tensor '%s': data is NULL", name);
    void *owned = NULL;
    if (nbytes && !(flags & SRESID_ADD_BORROW)) {
        owned = malloc(nbytes);
        if (!owned)
            return sresid__fail(SRESID_ERR_NOMEM, "tensor '%s': cannot allocate %zu bytes", name,
                                nbytes);
        memcpy(owned, data, nbytes);
        data = owned;
    }
    st = sresid__model_push(m, name, dtype, ndim, shape, numel, want, data, owned, -1);
    if (st)
        free(owned);
    return st;
}

size_t sresid_model_metadata_count(const sresid_model *m)
{
    return m ? m->meta_count : 0;
}

sresid_status sresid_model_metadata_at(const sresid_model *m, size_t index, const char **key,
                                       const char **value)
{
    if (!m || !key || !value)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_metadata_at: NULL argument");
    if (index >= m->meta_count)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_model_metadata_at: index %zu out of range (%zu entries)",
                            index, m->meta_count);
    *key = m->meta_keys[index];
    *value = m->meta_values[index];
    return SRESID_OK;
}

static size_t meta_index(const sresid_model *m, const char *key)
{
    for (size_t i = 0; i < m->meta_count; i++)
        if (strcmp(m->meta_keys[i], key) == 0)
            return i;
    return SIZE_MAX;
}

sresid_status sresid_model_metadata_get(const sresid_model *m, const char *key,
                                        const char **value)
{
    if (!m || !key || !value)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_metadata_get: NULL argument");
    size_t i = meta_index(m, key);
    if (i == SIZE_MAX)
        return sresid__fail(SRESID_ERR_NOT_FOUND, "no metadata key '%s'", key);
    *value = m->meta_values[i];
    return SRESID_OK;
}

sresid_status sresid_model_set_metadata(sresid_model *m, const char *key, const char *value)
{
    if (!m || !key)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_set_metadata: NULL argument");
    if (!sresid__utf8_valid(key, strlen(key)) || (value && !sresid__utf8_valid(value, strlen(value))))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "metadata '%s': not valid UTF-8", key);
    size_t i = meta_index(m, key);
    if (!value) {
        if (i != SIZE_MAX) {
            free(m->meta_keys[i]);
            free(m->meta_values[i]);
            memmove(m->meta_keys + i, m->meta_keys + i + 1, (m->meta_count - i - 1) * sizeof(char *));
            memmove(m->meta_values + i, m->meta_values + i + 1,
                    (m->meta_count - i - 1) * sizeof(char *));
            m->meta_count--;
        }
        return SRESID_OK;
    }
    char *v = dupstr(value);
    if (!v)
        return sresid__fail(SRESID_ERR_NOMEM, "metadata '%s': out of memory", key);
    if (i != SIZE_MAX) {
        free(m->meta_values[i]);
        m->meta_values[i] = v;
        return SRESID_OK;
    }
    if (m->meta_count == m->meta_cap) {
        size_t cap = m->meta_cap ? 2 * m->meta_cap : 8;
        char **k = realloc(m->meta_keys, cap * sizeof *k);
        if (k)
            m->meta_keys = k;
        char **vv = k ? realloc(m->meta_values, cap * sizeof *vv) : NULL;
        if (!vv) {
            free(v);
            return sresid__fail(SRESID_ERR_NOMEM, "metadata '%s': out of memory", key);
        }
        m->meta_values = vv;
        m->meta_cap = cap;
    }
    char *k = dupstr(key);
    if (!k) {
        free(v);
        return sresid__fail(SRESID_ERR_NOMEM, "metadata '%s': out of memory", key);
    }
    m->meta_keys[m->meta_count] = k;
    m->meta_values[m->meta_count] = v;
    m->meta_count++;
    return SRESID_OK;
}

sresid_status sresid_model_set_kind_rules(sresid_model *m, const char *const *patterns,
                                          const int32_t *kinds, size_t n, uint32_t flags)
{
    if (!m || (n && (!patterns || !kinds)))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_set_kind_rules: NULL argument");
    if (flags & ~SRESID_RULES_REPLACE)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_model_set_kind_rules: unknown flags 0x%x", (unsigned)flags);
    if (n > (1u << 20))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_set_kind_rules: %zu rules", n);
    for (size_t i = 0; i < n; i++) {
        if (!patterns[i])
            return sresid__fail(SRESID_ERR_INVALID_ARG, "kind rule %zu: pattern is NULL", i);
        if (kinds[i] < 0 || kinds[i] >= SRESID_KIND_COUNT)
            return sresid__fail(SRESID_ERR_INVALID_ARG, "kind rule %zu ('%s'): kind %d unknown",
                                i, patterns[i], (int)kinds[i]);
    }
    char **p = n ? calloc(n, sizeof *p) : NULL;
    int32_t *k = n ? malloc(n * sizeof *k) : NULL;
    bool ok = !n || (p && k);
    for (size_t i = 0; ok && i < n; i++)
        ok = (p[i] = dupstr(patterns[i])) != NULL;
    if (!ok) {
        for (size_t i = 0; p && i < n; i++)
            free(p[i]);
        free(p);
        free(k);
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_model_set_kind_rules: out of memory");
    }
    if (n)
        memcpy(k, kinds, n * sizeof *k);
    for (size_t i = 0; i < m->rule_count; i++)
        free(m->rule_patterns[i]);
    free(m->rule_patterns);
    free(m->rule_kinds);
    m->rule_patterns = p;
    m->rule_kinds = k;
    m->rule_count = n;
    m->rules_replace = (flags & SRESID_RULES_REPLACE) != 0;
    for (size_t i = 0; i < m->count; i++)
        classify(m, &m->tensors[i]);
    return SRESID_OK;
}

sresid_status sresid_model_set_layout(sresid_model *m, int32_t layout)
{
    if (!m)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_set_layout: model is NULL");
    if (layout != SRESID_LAYOUT_OUT_FIRST && layout != SRESID_LAYOUT_OUT_LAST)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_set_layout: layout %d unknown",
                            (int)layout);
    m->layout = layout;
    return SRESID_OK;
}
