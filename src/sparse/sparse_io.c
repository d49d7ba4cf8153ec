/* Sparse residual files: a safetensors file with "NAME.idx" and "NAME.val"
 * per tensor and the description in __metadata__ (docs/formats.md). Loading
 * checks everything a later apply relies on. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparse/sparse.h"

/* ---- saving ---- */

typedef struct part {
    char *name;
    sresid_dtype dtype;
    uint64_t count;
    const unsigned char *data;
    uint64_t nbytes;
} part;

/* The reference writer's order, as sresid_model_save: dtype descending,
 * then name. */
static int cmp_part(const void *a, const void *b)
{
    const part *x = a, *y = b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* The "tensors" metadata value: a JSON array in pairing order. */
static char *tensors_json(const sresid_sparse *s)
{
    json_t *arr = json_array();
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < s->count; i++) {
        const sresid__sp_tensor *t = &s->t[i];
        json_t *shape = json_array();
        ok = shape != NULL;
        for (int32_t d = 0; ok && d < t->ndim; d++)
            ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
        json_t *e = ok ? json_pack("{s:s, s:s, s:o, s:I, s:b, s:s, s:o, s:o, s:o}", "name",
                                   t->name, "dtype", sresid_dtype_name(t->base_dtype), "shape",
                                   shape, "kept", (json_int_t)t->kept, "lo", t->lo != NULL,
                                   "hash", t->hash, "energy",
                                   real_or_null(t->energy), "kept_energy",
                                   real_or_null(t->kept_energy), "error", real_or_null(t->error))
                       : NULL;
        if (!e)
            json_decref(shape);
        ok = e && json_array_append_new(arr, e) == 0;
    }
    char *text = ok ? json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(arr);
    return text;
}

static bool set_meta(json_t *meta, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool set_meta(json_t *meta, const char *key, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return json_object_set_new(meta, key, json_string(buf)) == 0;
}

static char *build_header(const sresid_sparse *s, const part *parts, size_t np, size_t *hlen)
{
    char param[32], energy[32], kept_energy[32], error[32];
    if (!sresid__fmt_f64(param, s->param) || !sresid__fmt_f64(energy, s->energy) ||
        !sresid__fmt_f64(kept_energy, s->kept_energy) || !sresid__fmt_f64(error, s->error))
        return NULL;
    json_t *root = json_object(), *meta = json_object();
    char *tensors = tensors_json(s);
    uint64_t kept = 0;
    for (size_t i = 0; i < s->count; i++)
        kept += s->t[i].kept;
    bool ok = root && meta && tensors && json_object_set(root, "__metadata__", meta) == 0 &&
              set_meta(meta, "format", "%s", SRESID__SPARSE_FORMAT) &&
              set_meta(meta, "format_version", "%s", SRESID__SPARSE_VERSION) &&
              set_meta(meta, "rule", "%s", sresid__sparse_rule_name(s->rule)) &&
              set_meta(meta, "param", "%s", param) &&
              set_meta(meta, "seed", "%llu", (unsigned long long)s->seed) &&
              set_meta(meta, "value_dtype", "%s", sresid_dtype_name(s->value_dtype)) &&
              set_meta(meta, "hash", "%s", "xxh3-128") &&
              set_meta(meta, "kept", "%llu", (unsigned long long)kept) &&
              set_meta(meta, "energy", "%s", energy) &&
              set_meta(meta, "kept_energy", "%s", kept_energy) &&
              set_meta(meta, "error", "%s", error) &&
              json_object_set_new(meta, "tensors", json_string(tensors)) == 0;
    free(tensors);
    json_decref(meta);
    uint64_t off = 0;
    for (size_t i = 0; ok && i < np; i++) {
        ok = json_object_set_new(root, parts[i].name,
                                 json_pack("{s:s, s:[I], s:[I, I]}", "dtype",
                                           sresid_dtype_name(parts[i].dtype), "shape",
                                           (json_int_t)parts[i].count, "data_offsets",
                                           (json_int_t)off,
                                           (json_int_t)(off + parts[i].nbytes))) == 0;
        off += parts[i].nbytes;
    }
    char *text = ok ? sresid__st_header_text(root, hlen) : NULL;
    json_decref(root);
    return text;
}

static char *suffixed(const char *name, const char *suffix)
{
    size_t a = strlen(name), b = strlen(suffix);
    char *s = malloc(a + b + 1);
    if (s) {
        memcpy(s, name, a);
        memcpy(s + a, suffix, b + 1);
    }
    return s;
}

sresid_status sresid_sparse_save(const sresid_sparse *sparse, const char *path,
                                 const sresid_save_opts *opts)
{
    if (!sparse || !path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_save: NULL argument");
    sresid_save_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, "sresid_sparse_save");
    if (st)
        return st;
    if (o.flags & ~SRESID_SAVE_NO_CLOBBER)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_save: unknown flags 0x%x",
                            (unsigned)o.flags);
    size_t np = 0;
    part *parts = calloc(3 * sparse->count + 1, sizeof *parts);
    bool ok = parts != NULL;
    size_t vsize = sresid_dtype_size(sparse->value_dtype);
    for (size_t i = 0; ok && i < sparse->count; i++) {
        const sresid__sp_tensor *t = &sparse->t[i];
        parts[np++] = (part){suffixed(t->name, ".idx"), t->index_dtype, t->kept, t->idx,
                             t->kept * sresid_dtype_size(t->index_dtype)};
        ok = parts[np - 1].name != NULL;
        parts[np++] = (part){suffixed(t->name, ".val"), sparse->value_dtype, t->kept, t->val,
                             t->kept * vsize};
        ok = ok && parts[np - 1].name;
        if (ok && t->lo) {
            parts[np++] = (part){suffixed(t->name, ".lo"), SRESID_DTYPE_F32, t->kept, t->lo,
                                 t->kept * 4};
            ok = parts[np - 1].name != NULL;
        }
    }
    size_t hlen = 0;
    char *header = NULL;
    if (ok) {
        qsort(parts, np, sizeof *parts, cmp_part);
        header = build_header(sparse, parts, np, &hlen);
    }
    if (!header) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for the header", path);
    } else {
        sresid__afile f;
        if (!(st = sresid__afile_open_guarded(&f, path, &sparse->source,
                                              sparse->has_source ? 1 : 0))) {
            unsigned char lenbuf[8];
            for (int b = 0; b < 8; b++)
                lenbuf[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
            sresid__afile_write(&f, lenbuf, 8);
            sresid__afile_write(&f, header, hlen);
            sresid__watch w; /* one unit a part (.idx, .val, .lo) written */
            sresid__watch_begin(&w, "sresid_sparse_save", o.monitor, o.monitor_user, np);
            for (size_t i = 0; i < np && !st && !f.failed; i++) {
                if (parts[i].nbytes)
                    sresid__afile_write(&f, parts[i].data, (size_t)parts[i].nbytes);
                st = sresid__watch_step(&w, parts[i].name);
            }
            st = sresid__afile_close(&f, st,
                                     (o.flags & SRESID_SAVE_NO_CLOBBER) ? SRESID__AFILE_NO_CLOBBER
                                                                       : 0);
        }
    }
    free(header);
    for (size_t i = 0; parts && i < np; i++)
        free(parts[i].name);
    free(parts);
    return st;
}

/* ---- loading ---- */

static bool is_hex32(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 32;
}

static double json_num(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* One entry of the "tensors" array. */
static sresid_status parse_tensor(const char *path, size_t i, json_t *e, sresid__sp_tensor *t,
                                  bool *has_lo)
{
    const char *name = NULL, *dtype = NULL, *hash = NULL;
    json_t *shape = NULL, *energy = NULL, *kept_energy = NULL, *error = NULL;
    json_int_t kept = -1;
    int lo = 0;
    json_error_t jerr;
    if (json_unpack_ex(e, &jerr, JSON_STRICT, "{s:s, s:s, s:o, s:I, s:b, s:s, s:o, s:o, s:o}",
                       "name", &name, "dtype", &dtype, "shape", &shape, "kept", &kept, "lo", &lo,
                       "hash", &hash, "energy", &energy, "kept_energy", &kept_energy, "error",
                       &error) != 0)
        return sresid__fail(SRESID_ERR_METADATA, "%s: metadata \"tensors\" entry %zu: %s", path,
                            i, jerr.text);
    if (sresid_dtype_from_name(dtype, &t->base_dtype) != SRESID_OK ||
        !sresid_dtype_is_float(t->base_dtype))
        return sresid__fail(SRESID_ERR_DTYPE, "%s: tensor '%s': base dtype \"%s\" is not a float "
                            "dtype", path, name, dtype);
    if (!json_is_array(shape) || json_array_size(shape) > SRESID__MAX_NDIM)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': shape is not an array of at most "
                            "%d dimensions", path, name, SRESID__MAX_NDIM);
    t->ndim = (int32_t)json_array_size(shape);
    t->shape = t->ndim ? malloc((size_t)t->ndim * sizeof *t->shape) : NULL;
    t->name = strdup(name);
    if (!t->name || (t->ndim && !t->shape))
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    for (int32_t d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': dimension %d is not a "
                                "non-negative integer", path, name, (int)d);
        t->shape[d] = json_integer_value(v);
    }
    uint64_t nbytes;
    if (sresid__shape_numel(t->shape, t->ndim, t->base_dtype, &t->numel, &nbytes))
        return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': %s", path, name,
                            sresid_last_error());
    if (kept < 0 || (uint64_t)kept > (uint64_t)t->numel)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': kept %lld is not in [0, %lld]",
                            path, name, (long long)kept, (long long)t->numel);
    t->kept = (uint64_t)kept;
    *has_lo = lo != 0;
    if (!is_hex32(hash))
        return sresid__fail(SRESID_ERR_METADATA, "%s: tensor '%s': hash \"%s\" is not 32 "
                            "lowercase hex digits", path, name, hash);
    memcpy(t->hash, hash, 33);
    t->energy = json_num(energy);
    t->kept_energy = json_num(kept_energy);
    t->error = json_num(error);
    return SRESID_OK;
}

/* Read and check tensor i's "NAME.idx" and "NAME.val". */
static sresid_status load_entries(const sresid_model *m, const char *path, sresid_sparse *s,
                                  size_t i, bool has_lo, bool *used)
{
    sresid__sp_tensor *t = &s->t[i];
    const char *suffix[3] = {".idx", ".val", ".lo"};
    size_t index[3];
    for (int q = 0; q < 2 + has_lo; q++) {
        char *n = suffixed(t->name, suffix[q]);
        if (!n)
            return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
        sresid_status st = sresid_model_find(m, n, &index[q]);
        free(n);
        if (st)
            return sresid__fail(SRESID_ERR_NOT_FOUND, "%s: tensor '%s': no '%s%s' in the file",
                                path, t->name, t->name, suffix[q]);
        used[index[q]] = true;
        sresid_tensor_info ti = {.size = sizeof ti};
        sresid_model_tensor_info(m, index[q], &ti);
        sresid_dtype want = q == 0 ? ti.dtype : q == 1 ? s->value_dtype : SRESID_DTYPE_F32;
        if (q == 0 && ti.dtype != SRESID_DTYPE_U8 && ti.dtype != SRESID_DTYPE_U16 &&
            ti.dtype != SRESID_DTYPE_U32 && ti.dtype != SRESID_DTYPE_U64)
            return sresid__fail(SRESID_ERR_DTYPE, "%s: tensor '%s': indices are %s, not U8, U16, "
                                "U32 or U64", path, t->name, sresid_dtype_name(ti.dtype));
        if (ti.dtype != want)
            return sresid__fail(SRESID_ERR_DTYPE, "%s: tensor '%s': '%s%s' is %s, not %s", path,
                                t->name, t->name, suffix[q], sresid_dtype_name(ti.dtype),
                                sresid_dtype_name(want));
        if (ti.ndim != 1 || (uint64_t)ti.shape[0] != t->kept)
            return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': '%s%s' must have shape [%llu] "
                                "(the kept count)", path, t->name, t->name, suffix[q],
                                (unsigned long long)t->kept);
        if (q == 0)
            t->index_dtype = ti.dtype;
        unsigned char **dst = q == 0 ? &t->idx : q == 1 ? &t->val : &t->lo;
        if (ti.nbytes) {
            *dst = malloc((size_t)ti.nbytes);
            if (!*dst)
                return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for '%s'", path,
                                    t->name);
            if ((st = sresid_model_read_raw(m, index[q], *dst, (size_t)ti.nbytes)))
                return st;
        }
    }
    sresid__sp_cursor c;
    sresid__sparse_cursor(&c, t->idx, t->index_dtype, t->kept);
    uint64_t pos;
    int why;
    for (uint64_t j = 0; j < t->kept; j++) {
        if (!sresid__sparse_next(&c, &pos, &why))
            return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': entry %llu: %s", path,
                                t->name, (unsigned long long)j,
                                why == 1 ? "gap 0: positions repeat or are not increasing"
                                         : "position overflows 64 bits");
        if (pos >= (uint64_t)t->numel)
            return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor '%s': entry %llu: position %llu "
                                "out of range (%lld elements)", path, t->name,
                                (unsigned long long)j, (unsigned long long)pos,
                                (long long)t->numel);
        float v = sresid__sparse_value(s->value_dtype, t->val, j);
        if (!isfinite(v) || (t->lo && !isfinite(sresid__sparse_value(SRESID_DTYPE_F32, t->lo, j))))
            return sresid__fail(SRESID_ERR_NONFINITE, "%s: tensor '%s': entry %llu (position "
                                "%llu) is not finite", path, t->name, (unsigned long long)j,
                                (unsigned long long)pos);
    }
    return SRESID_OK;
}

static sresid_status parse(const sresid_model *m, const char *path, sresid_sparse *s)
{
    const char *v;
    sresid_status st;
    if ((st = sresid__meta_format(m, path, SRESID__SPARSE_FORMAT, "format_version",
                                  SRESID__SPARSE_VERSION, "sparse residual")))
        return st;
    if ((st = sresid__meta_get(m, path, "rule", &v)))
        return st;
    if (!(s->rule = sresid__sparse_rule_from_name(v)))
        return sresid__fail(SRESID_ERR_METADATA, "%s: unknown rule \"%s\"", path, v);
    if ((st = sresid__meta_f64(m, path, "param", false, &s->param)))
        return st;
    if (!isfinite(s->param) || !(s->param > 0) ||
        (s->rule != SRESID_SPARSE_THRESHOLD && s->param > 1))
        return sresid__fail(SRESID_ERR_METADATA, "%s: param %g is out of range for rule %s", path,
                            s->param, sresid__sparse_rule_name(s->rule));
    if ((st = sresid__meta_u64(m, path, "seed", UINT64_MAX, &s->seed)))
        return st;
    if ((st = sresid__meta_get(m, path, "value_dtype", &v)))
        return st;
    if (sresid_dtype_from_name(v, &s->value_dtype) != SRESID_OK ||
        (s->value_dtype != SRESID_DTYPE_F32 && s->value_dtype != SRESID_DTYPE_F16 &&
         s->value_dtype != SRESID_DTYPE_BF16))
        return sresid__fail(SRESID_ERR_DTYPE, "%s: value_dtype \"%s\" is not F32, F16 or BF16",
                            path, v);
    if ((st = sresid__meta_get(m, path, "hash", &v)))
        return st;
    if (strcmp(v, "xxh3-128") != 0)
        return sresid__fail(SRESID_ERR_METADATA, "%s: unknown hash \"%s\" (want xxh3-128)", path,
                            v);
    /* NaN where a figure is undefined (a residual with sum R^2 == 0) */
    uint64_t kept_total;
    if ((st = sresid__meta_f64(m, path, "energy", true, &s->energy)) ||
        (st = sresid__meta_f64(m, path, "kept_energy", true, &s->kept_energy)) ||
        (st = sresid__meta_f64(m, path, "error", true, &s->error)) ||
        (st = sresid__meta_u64(m, path, "kept", UINT64_MAX, &kept_total)))
        return st;

    if ((st = sresid__meta_get(m, path, "tensors", &v)))
        return st;
    json_error_t jerr;
    json_t *arr = json_loads(v, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return sresid__fail(SRESID_ERR_METADATA, "%s: metadata \"tensors\" is not a JSON array%s%s",
                            path, arr ? "" : ": ", arr ? "" : jerr.text);
    }
    size_t n = json_array_size(arr), nt = sresid_model_tensor_count(m);
    s->t = calloc(n ? n : 1, sizeof *s->t);
    bool *used = calloc(nt ? nt : 1, sizeof *used);
    s->count = s->t ? n : 0;
    st = s->t && used ? SRESID_OK : sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    uint64_t kept = 0;
    for (size_t i = 0; i < n && !st; i++) {
        bool has_lo = false;
        st = parse_tensor(path, i, json_array_get(arr, i), &s->t[i], &has_lo);
        if (!st && has_lo && (s->value_dtype != SRESID_DTYPE_F32 || s->rule == SRESID_SPARSE_DARE))
            st = sresid__fail(SRESID_ERR_METADATA, "%s: tensor '%s': low parts need F32 values "
                              "of a magnitude rule", path, s->t[i].name);
        for (size_t j = 0; j < i && !st; j++)
            if (strcmp(s->t[j].name, s->t[i].name) == 0)
                st = sresid__fail(SRESID_ERR_METADATA, "%s: tensor '%s' is listed twice", path,
                                  s->t[i].name);
        if (!st)
            st = load_entries(m, path, s, i, has_lo, used);
        kept += s->t[i].kept;
    }
    json_decref(arr);
    for (size_t j = 0; j < nt && !st; j++)
        if (!used[j]) {
            sresid_tensor_info ti = {.size = sizeof ti};
            sresid_model_tensor_info(m, j, &ti);
            st = sresid__fail(SRESID_ERR_METADATA, "%s: tensor '%s' is not described by the "
                              "metadata", path, ti.name);
        }
    if (!st && kept != kept_total)
        st = sresid__fail(SRESID_ERR_SHAPE, "%s: metadata \"kept\" is %llu but the tensors "
                          "keep %llu", path, (unsigned long long)kept_total,
                          (unsigned long long)kept);
    free(used);
    return st;
}

sresid_status sresid_sparse_load(const char *path, sresid_sparse **out)
{
    if (!path || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_load: NULL argument");
    sresid_model *m = NULL;
    sresid_status st = sresid_model_open(path, NULL, &m);
    if (st)
        return st;
    sresid_sparse *s = calloc(1, sizeof *s);
    st = s ? parse(m, path, s) : sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    if (!st) { /* the file it came from: applying or saving never replaces it */
        sresid__file_id *ids = NULL;
        size_t n = 0;
        st = sresid__model_file_ids(m, &ids, &n);
        if (!st && n)
            s->source = ids[0];
        s->has_source = n > 0;
        free(ids);
    }
    sresid_model_free(m);
    if (st) {
        sresid__sparse_destroy(s);
        return st;
    }
    *out = s;
    return SRESID_OK;
}
