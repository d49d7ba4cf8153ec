/* safetensors files: validation on open (as strict as the reference
 * implementation), and saving in the reference layout. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

typedef struct entry {
    const char *name;
    sresid_dtype dtype;
    int32_t ndim;
    int64_t shape[SRESID__MAX_NDIM];
    int64_t numel;
    uint64_t begin, end;
} entry;

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static sresid_status parse_metadata(sresid_model *m, const char *path, json_t *meta)
{
    if (!json_is_object(meta))
        return sresid__fail(SRESID_ERR_METADATA, "%s: __metadata__ is not an object", path);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return sresid__fail(SRESID_ERR_METADATA,
                                "%s: __metadata__ value of '%s' is not a string", path, key);
    }
    json_object_foreach(meta, key, v) {
        const char *old;
        /* across shards the first value of a key wins */
        if (sresid_model_metadata_get(m, key, &old) == SRESID_OK)
            continue;
        sresid_status st = sresid_model_set_metadata(m, key, json_string_value(v));
        if (st)
            return sresid__fail(st, "%s: %s", path, sresid_last_error());
    }
    return SRESID_OK;
}

static sresid_status parse_entry(const char *path, const char *name, json_t *obj, entry *e)
{
    e->name = name;
    if (!json_is_object(obj))
        return sresid__fail(SRESID_ERR_JSON, "%s: tensor '%s': entry is not an object", path,
                            name);
    json_t *dt = json_object_get(obj, "dtype"), *shape = json_object_get(obj, "shape"),
           *offs = json_object_get(obj, "data_offsets");
    if (!dt || !shape || !offs)
        return sresid__fail(SRESID_ERR_JSON, "%s: tensor '%s': missing \"%s\"", path, name,
                            !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!json_is_string(dt))
        return sresid__fail(SRESID_ERR_JSON, "%s: tensor '%s': dtype is not a string", path, name);
    if (sresid_dtype_from_name(json_string_value(dt), &e->dtype) != SRESID_OK)
        return sresid__fail(SRESID_ERR_DTYPE, "%s: tensor '%s': unknown dtype \"%s\"", path, name,
                            json_string_value(dt));
    if (!json_is_array(shape))
        return sresid__fail(SRESID_ERR_JSON, "%s: tensor '%s': shape is not an array", path,
                            name);
    size_t nd = json_array_size(shape);
    if (nd > SRESID__MAX_NDIM)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': rank %zu exceeds %d", path, name,
                            nd, SRESID__MAX_NDIM);
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sresid__fail(SRESID_ERR_SHAPE,
                                "%s: tensor '%s': dimension %zu is not a non-negative integer",
                                path, name, i);
        e->shape[i] = json_integer_value(d);
    }
    e->ndim = (int32_t)nd;
    uint64_t nbytes;
    if (sresid__shape_numel(e->shape, e->ndim, e->dtype, &e->numel, &nbytes))
        return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': %s", path, name,
                            sresid_last_error());
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return sresid__fail(SRESID_ERR_OFFSETS,
                            "%s: tensor '%s': data_offsets is not an array of two integers", path,
                            name);
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b))
        return sresid__fail(SRESID_ERR_OFFSETS,
                            "%s: tensor '%s': data_offsets must be integers 0 <= begin <= end",
                            path, name);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    if (e->end - e->begin != nbytes)
        return sresid__fail(SRESID_ERR_OFFSETS,
                            "%s: tensor '%s': data_offsets span %llu bytes but %s%s needs %llu",
                            path, name, (unsigned long long)(e->end - e->begin),
                            sresid_dtype_name(e->dtype), " of its shape",
                            (unsigned long long)nbytes);
    return SRESID_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Tensors must tile the data section exactly: sorted by offset, each starts
 * where the previous ended, and the last ends at the end of the file. */
static sresid_status check_layout(const char *path, entry *e, size_t n, uint64_t data_len,
                                  uint64_t data_start)
{
    qsort(e, n, sizeof *e, cmp_entry);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].end > data_len)
            return sresid__fail(SRESID_ERR_TRUNCATED,
                                "%s: tensor '%s' ends at byte %llu of the file, past its end "
                                "(%llu bytes)",
                                path, e[i].name, (unsigned long long)(data_start + e[i].end),
                                (unsigned long long)(data_start + data_len));
        if (e[i].begin != pos)
            return sresid__fail(SRESID_ERR_OFFSETS,
                                "%s: tensor '%s' starts at data offset %llu, expected %llu (%s)",
                                path, e[i].name, (unsigned long long)e[i].begin,
                                (unsigned long long)pos,
                                e[i].begin > pos ? "a hole before it" : "it overlaps another");
        pos = e[i].end;
    }
    if (pos != data_len)
        return sresid__fail(SRESID_ERR_OFFSETS,
                            "%s: %llu trailing bytes after the last tensor (data ends at file "
                            "byte %llu)",
                            path, (unsigned long long)(data_len - pos),
                            (unsigned long long)(data_start + pos));
    return SRESID_OK;
}

static sresid_status parse_header(sresid_model *m, const char *path, const unsigned char *map,
                                  uint64_t file_len, uint64_t hlen, int32_t file_index)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)map + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        enum json_error_code code = json_error_code(&jerr);
        sresid_status st = code == json_error_duplicate_key    ? SRESID_ERR_DUPLICATE
                           : code == json_error_numeric_overflow ? SRESID_ERR_OVERFLOW
                                                                 : SRESID_ERR_JSON;
        return sresid__fail(st, "%s: header JSON invalid near file byte %llu: %s", path,
                            (unsigned long long)(8 + (jerr.position > 0 ? jerr.position : 0)),
                            jerr.text);
    }
    sresid_status st = SRESID_OK;
    entry *ents = NULL;
    size_t n = 0;
    if (!json_is_object(root)) {
        st = sresid__fail(SRESID_ERR_JSON, "%s: header is not a JSON object", path);
        goto done;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    size_t ntensors = json_object_size(root) - (meta != NULL);
    ents = calloc(ntensors ? ntensors : 1, sizeof *ents);
    if (!ents) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for %zu tensors", path, ntensors);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (val == meta)
            continue;
        if ((st = parse_entry(path, key, val, &ents[n])))
            goto done;
        n++;
    }
    if (meta && (st = parse_metadata(m, path, meta)))
        goto done;
    uint64_t data_start = 8 + hlen;
    if ((st = check_layout(path, ents, n, file_len - data_start, data_start)))
        goto done;
    for (size_t i = 0; i < n && !st; i++) {
        st = sresid__model_push(m, ents[i].name, ents[i].dtype, ents[i].ndim, ents[i].shape,
                                ents[i].numel, ents[i].end - ents[i].begin,
                                map + data_start + ents[i].begin, NULL, file_index);
        if (st)
            st = sresid__fail(st, "%s: %s", path, sresid_last_error());
    }
done:
    free(ents);
    json_decref(root);
    return st;
}

sresid_status sresid__st_open_file(sresid_model *m, const char *path)
{
    /* O_NONBLOCK: a FIFO or device must fail below, not block the open */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return sresid__fail(SRESID_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sresid__fail(SRESID_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sresid__fail(SRESID_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t len = (uint64_t)sb.st_size;
    if (len < 8) {
        close(fd);
        return sresid__fail(SRESID_ERR_HEADER,
                            "%s: file is %llu bytes, too short for the 8-byte header length",
                            path, (unsigned long long)len);
    }
    if (len > SIZE_MAX) {
        close(fd);
        return sresid__fail(SRESID_ERR_OVERFLOW, "%s: file too large to map", path);
    }
    void *map = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        close(fd);
        return sresid__fail(SRESID_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    }

    const unsigned char *p = map;
    uint64_t hlen = load_le64(p);
    sresid_status st = SRESID_OK;
    /* not the start of a safetensors file: say what it looks like */
    if (hlen > SRESID__HEADER_LIMIT || hlen > len - 8 || (hlen > 0 && p[8] != '{'))
        st = sresid__sniff_other_format(p, (size_t)len, path);
    if (st)
        ;
    else if (hlen > SRESID__HEADER_LIMIT)
        st = sresid__fail(SRESID_ERR_HEADER, "%s: header length %llu exceeds the limit %llu",
                          path, (unsigned long long)hlen, SRESID__HEADER_LIMIT);
    else if (hlen > len - 8)
        st = sresid__fail(SRESID_ERR_HEADER,
                          "%s: header length %llu runs past the end of the file (%llu bytes)",
                          path, (unsigned long long)hlen, (unsigned long long)len);
    if (st) {
        munmap(map, (size_t)len);
        close(fd);
        return st;
    }
    sresid__file *files = realloc(m->files, (m->nfiles + 1) * sizeof *files);
    char *pathcopy = strdup(path);
    if (files)
        m->files = files;
    if (!files || !pathcopy) {
        free(pathcopy);
        munmap(map, (size_t)len);
        close(fd);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    }
    /* Registered before parsing so that sresid_model_free unmaps it on error. */
    int32_t index = (int32_t)m->nfiles++;
    m->files[index] =
        (sresid__file){.path = pathcopy, .map = map, .map_len = (size_t)len, .fd = fd};
    return parse_header(m, path, p, len, hlen, index);
}

/* ---- saving ---- */

/* The reference writer's order: dtype descending in the safetensors enum
 * order (which our SRESID_DTYPE_* numbering follows), then name. */
static int cmp_save_order(const void *a, const void *b)
{
    const sresid__tensor *x = *(const sresid__tensor *const *)a,
                         *y = *(const sresid__tensor *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

char *sresid__st_header_text(const struct json_t *root, size_t *hlen)
{
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return NULL;
    /* pad with spaces so the data section starts 8-byte aligned */
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    char *buf = realloc(text, padded + 1);
    if (!buf) {
        free(text);
        return NULL;
    }
    memset(buf + n, ' ', padded - n);
    buf[padded] = '\0';
    *hlen = padded;
    return buf;
}

static char *build_header(const sresid_model *m, const sresid__tensor **order, size_t *hlen)
{
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && m->meta_count) {
        json_t *meta = json_object();
        ok = meta && json_object_set_new(root, "__metadata__", meta) == 0;
        for (size_t i = 0; ok && i < m->meta_count; i++)
            ok = json_object_set_new(meta, m->meta_keys[i], json_string(m->meta_values[i])) == 0;
    }
    uint64_t off = 0;
    for (size_t i = 0; ok && i < m->count; i++) {
        const sresid__tensor *t = order[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        ok = e && shape && offs;
        for (int32_t d = 0; ok && d < t->ndim; d++)
            ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
        ok = ok && json_array_append_new(offs, json_integer((json_int_t)off)) == 0 &&
             json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes))) == 0 &&
             json_object_set_new(e, "dtype", json_string(sresid_dtype_name(t->dtype))) == 0 &&
             json_object_set(e, "shape", shape) == 0 &&
             json_object_set(e, "data_offsets", offs) == 0 &&
             json_object_set(root, t->name, e) == 0;
        json_decref(shape);
        json_decref(offs);
        json_decref(e);
        off += t->nbytes;
    }
    char *text = ok ? sresid__st_header_text(root, hlen) : NULL;
    json_decref(root);
    return text;
}

sresid_status sresid__st_layout(const sresid_model *m, const char *path,
                                const sresid__tensor ***order, unsigned char **head,
                                size_t *head_len)
{
    const sresid__tensor **ord = malloc((m->count ? m->count : 1) * sizeof *ord);
    if (!ord)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < m->count; i++)
        ord[i] = &m->tensors[i];
    qsort(ord, m->count, sizeof *ord, cmp_save_order);
    size_t hlen = 0;
    char *header = build_header(m, ord, &hlen);
    unsigned char *buf = header ? malloc(8 + hlen) : NULL;
    if (!buf) {
        free(header);
        free(ord);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: cannot build the header", path);
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    free(header);
    *order = ord;
    *head = buf;
    *head_len = 8 + hlen;
    return SRESID_OK;
}

sresid_status sresid__st_save(const sresid_model *m, const char *path, uint32_t flags,
                             const sresid__file_id *keep, size_t nkeep, sresid__watch *w)
{
    const sresid__tensor **order = NULL;
    unsigned char *head = NULL;
    size_t head_len = 0;
    sresid_status st = sresid__st_layout(m, path, &order, &head, &head_len);
    if (st)
        return st;

    sresid__afile f;
    if ((st = sresid__afile_open_guarded(&f, path, keep, nkeep)))
        goto out;
    sresid__afile_write(&f, head, head_len);
    /* Opened tensors are copied with pread through a bounce buffer: nothing
     * of the source stays resident and a source file that shrank is an IO
     * error, not a fault. 1 MiB, or less when no opened tensor needs it. */
    size_t bounce_len = 1;
    for (size_t i = 0; i < m->count; i++)
        if (m->tensors[i].file >= 0 && m->tensors[i].nbytes > bounce_len)
            bounce_len = m->tensors[i].nbytes < ((size_t)1 << 20) ? (size_t)m->tensors[i].nbytes
                                                                  : (size_t)1 << 20;
    unsigned char *bounce = malloc(bounce_len);
    if (!bounce)
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; !st && !f.failed && i < m->count; i++) {
        const sresid__tensor *t = order[i];
        if (t->file < 0) {
            sresid__afile_write(&f, t->data, (size_t)t->nbytes);
        } else {
            for (uint64_t off = 0; !st && off < t->nbytes; off += bounce_len) {
                size_t k = t->nbytes - off < bounce_len ? (size_t)(t->nbytes - off) : bounce_len;
                st = sresid__tensor_bytes(m, t, off, bounce, k);
                if (!st && !sresid__afile_write(&f, bounce, k))
                    break;
                if (!st)
                    st = sresid__watch_poll(w);
            }
        }
        if (!st && !f.failed)
            st = sresid__watch_step(w, t->name);
    }
    free(bounce);
    st = sresid__afile_close(&f, st, (flags & SRESID_SAVE_NO_CLOBBER) ? SRESID__AFILE_NO_CLOBBER : 0);
out:
    free(head);
    free(order);
    return st;
}
