/* Applying a sparse residual: base + scale * R_sparse, streamed tensor by
 * tensor into a safetensors file in the base's dtypes. Only the kept
 * positions change; every other byte is copied as stored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparse/sparse.h"

#define CHUNK ((size_t)1 << 20) /* bytes read and written per step */

static bool same_shape(const sresid__sp_tensor *d, const sresid__tensor *b)
{
    if (d->ndim != b->ndim)
        return false;
    for (int32_t i = 0; i < d->ndim; i++)
        if (d->shape[i] != b->shape[i])
            return false;
    return true;
}

/* Check the base against the delta; which[i] = delta tensor of base tensor
 * i, or SIZE_MAX. */
static sresid_status match(const sresid_sparse *sp, const sresid_model *base, bool force,
                           size_t *which, sresid__watch *w)
{
    for (size_t i = 0; i < base->count; i++)
        which[i] = SIZE_MAX;
    for (size_t k = 0; k < sp->count; k++) {
        const sresid__sp_tensor *d = &sp->t[k];
        size_t i;
        if (sresid_model_find(base, d->name, &i) != SRESID_OK)
            return sresid__fail(SRESID_ERR_MISMATCH,
                                "sresid_sparse_apply: the base has no tensor '%s'", d->name);
        const sresid__tensor *b = &base->tensors[i];
        if (b->dtype != d->base_dtype)
            return sresid__fail(SRESID_ERR_MISMATCH,
                                "sresid_sparse_apply: tensor '%s' is %s in the base but the "
                                "delta was made from %s",
                                d->name, sresid_dtype_name(b->dtype),
                                sresid_dtype_name(d->base_dtype));
        if (!same_shape(d, b))
            return sresid__fail(SRESID_ERR_MISMATCH,
                                "sresid_sparse_apply: tensor '%s' has another shape in the base "
                                "than in the delta",
                                d->name);
        if (!force) {
            char hex[33];
            sresid_status st = sresid__tensor_hash(base, i, hex);
            if (st)
                return st;
            if (strcmp(hex, d->hash) != 0)
                return sresid__fail(SRESID_ERR_MISMATCH,
                                    "sresid_sparse_apply: tensor '%s' of the base is not the one "
                                    "the delta was made from (XXH3-128 %s, delta wants %s)",
                                    d->name, hex, d->hash);
        }
        which[i] = k;
        sresid_status st = sresid__watch_step(w, d->name);
        if (st)
            return st;
    }
    return SRESID_OK;
}

/* Add w to element e (dtype dt) in place; false if the sum is not finite
 * while the base value was. */
static bool add_one(unsigned char *e, sresid_dtype dt, float v, const float *lo, float scale32,
                    double scale)
{
    if (dt == SRESID_DTYPE_F64) {
        uint64_t u = 0;
        for (int b = 0; b < 8; b++)
            u |= (uint64_t)e[b] << (8 * b);
        double x;
        memcpy(&x, &u, sizeof x);
        double y = x + scale * ((double)v + (lo ? (double)*lo : 0.0));
        memcpy(&u, &y, sizeof u);
        for (int b = 0; b < 8; b++)
            e[b] = (unsigned char)(u >> (8 * b));
        return isfinite(y) || !isfinite(x);
    }
    /* float32: the scaled value rounded once, the sum rounded once */
    float w = scale32 == 1.0f ? v : (float)(scale * (double)v);
    if (dt == SRESID_DTYPE_F32) {
        uint32_t u = 0;
        for (int b = 0; b < 4; b++)
            u |= (uint32_t)e[b] << (8 * b);
        float x;
        memcpy(&x, &u, sizeof x);
        float y = x + w;
        if (lo) /* exact: see low_part in sparse.c */
            y = (float)(scale == 1 ? ((double)x + (double)v) + (double)*lo
                                   : (double)x + scale * ((double)v + (double)*lo));
        memcpy(&u, &y, sizeof u);
        for (int b = 0; b < 4; b++)
            e[b] = (unsigned char)(u >> (8 * b));
        return isfinite(y) || !isfinite(x);
    }
    if (dt == SRESID_DTYPE_F8_E4M3 || dt == SRESID_DTYPE_F8_E5M2) {
        /* F8 values are exact in float32, and so is the difference of two:
         * base + R gives the trained value, which converts back exactly */
        bool e4 = dt == SRESID_DTYPE_F8_E4M3;
        float x = e4 ? sresid__e4m3_to_f32(e[0]) : sresid__e5m2_to_f32(e[0]);
        float y = x + w;
        if (lo)
            y = (float)(scale == 1 ? ((double)x + (double)v) + (double)*lo
                                   : (double)x + scale * ((double)v + (double)*lo));
        e[0] = e4 ? sresid__f32_to_e4m3(y) : sresid__f32_to_e5m2(y);
        float back = e4 ? sresid__e4m3_to_f32(e[0]) : sresid__e5m2_to_f32(e[0]);
        return isfinite(back) || !isfinite(x);
    }
    uint16_t h = (uint16_t)(e[0] | e[1] << 8);
    bool f16 = dt == SRESID_DTYPE_F16;
    float x = f16 ? sresid__f16_to_f32(h) : sresid__bf16_to_f32(h);
    float y = x + w;
    if (lo)
        y = (float)(scale == 1 ? ((double)x + (double)v) + (double)*lo
                               : (double)x + scale * ((double)v + (double)*lo));
    h = f16 ? sresid__f32_to_f16(y) : sresid__f32_to_bf16(y);
    e[0] = (unsigned char)h;
    e[1] = (unsigned char)(h >> 8);
    float back = f16 ? sresid__f16_to_f32(h) : sresid__bf16_to_f32(h);
    return isfinite(back) || !isfinite(x);
}

/* Write tensor t of the base, changed by delta tensor d (or NULL). buf
 * holds a chunk or all of the base's largest tensor, whichever is less. */
static sresid_status write_tensor(const sresid_sparse *sp, const sresid_model *base,
                                  const sresid__tensor *t, const sresid__sp_tensor *d,
                                  double scale, sresid__afile *f, unsigned char *buf,
                                  sresid__watch *w)
{
    const size_t es = sresid_dtype_size(t->dtype);
    const size_t step = CHUNK / es * es;
    const float scale32 = (float)scale;
    sresid__sp_cursor c;
    uint64_t next = 0, j = 0;
    bool have = false;
    int why;
    if (d && d->kept) {
        sresid__sparse_cursor(&c, d->idx, d->index_dtype, d->kept);
        have = sresid__sparse_next(&c, &next, &why);
    }
    for (uint64_t off = 0; off < t->nbytes; off += step) {
        size_t len = t->nbytes - off < step ? (size_t)(t->nbytes - off) : step;
        sresid_status st = sresid__tensor_bytes(base, t, off, buf, len);
        if (!st)
            st = sresid__watch_poll(w);
        if (st)
            return st;
        const uint64_t first = off / es, end = first + len / es;
        while (have && next < end) {
            float v = sresid__sparse_value(sp->value_dtype, d->val, j), lo = 0;
            if (d->lo)
                lo = sresid__sparse_value(SRESID_DTYPE_F32, d->lo, j);
            if (!add_one(buf + (next - first) * es, t->dtype, v, d->lo ? &lo : NULL, scale32,
                         scale))
                return sresid__fail(SRESID_ERR_NONFINITE,
                                    "sresid_sparse_apply: tensor '%s' overflows %s at position "
                                    "%llu",
                                    t->name, sresid_dtype_name(t->dtype),
                                    (unsigned long long)next);
            j++;
            have = sresid__sparse_next(&c, &next, &why);
        }
        if (!sresid__afile_write(f, buf, len))
            return SRESID_OK; /* the afile keeps the error */
    }
    return SRESID_OK;
}

sresid_status sresid_sparse_apply(const sresid_sparse *sparse, const sresid_model *base,
                                  const sresid_apply_opts *opts, const char *path)
{
    if (!sparse || !base || !path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_apply: NULL argument");
    sresid_apply_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, "sresid_sparse_apply");
    if (st)
        return st;
    if (o.flags & ~(SRESID_APPLY_FORCE | SRESID_SAVE_NO_CLOBBER))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_apply: unknown flags 0x%x",
                            (unsigned)o.flags);
    if (!isfinite(o.scale))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_apply: scale %g is not finite",
                            o.scale);
    double scale = o.scale == 0 ? 1.0 : o.scale;

    size_t n = base->count;
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    const sresid__tensor **order = NULL;
    /* one chunk, or the largest tensor when that is smaller */
    size_t buf_len = 1;
    for (size_t i = 0; i < n; i++)
        if (base->tensors[i].nbytes > buf_len)
            buf_len = base->tensors[i].nbytes < CHUNK ? (size_t)base->tensors[i].nbytes : CHUNK;
    unsigned char *buf = malloc(buf_len), *head = NULL;
    size_t head_len = 0, nkeep = 0;
    sresid__file_id *keep = NULL;
    if (!which || !buf) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    /* units: each delta tensor checked, then each base tensor written */
    sresid__watch w;
    sresid__watch_begin(&w, "sresid_sparse_apply", o.monitor, o.monitor_user, sparse->count + n);
    /* everything is checked before the output file is created */
    if ((st = match(sparse, base, (o.flags & SRESID_APPLY_FORCE) != 0, which, &w)))
        goto out;
    /* the base's own layout: same order, dtypes and sizes as sresid_model_save */
    if ((st = sresid__st_layout(base, path, &order, &head, &head_len)))
        goto out;
    /* never over the base's files or the delta's own (room for it first) */
    if ((st = sresid__model_file_ids(base, &keep, &nkeep)))
        goto out;
    sresid__file_id *grown = realloc(keep, (nkeep + 1) * sizeof *grown);
    if (!grown) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    keep = grown;
    if (sparse->has_source)
        keep[nkeep++] = sparse->source;
    sresid__afile f;
    if ((st = sresid__afile_open_guarded(&f, path, keep, nkeep)))
        goto out;
    sresid__afile_write(&f, head, head_len);
    for (size_t i = 0; i < n && !st && !f.failed; i++) {
        size_t k = which[order[i] - base->tensors];
        st = write_tensor(sparse, base, order[i], k == SIZE_MAX ? NULL : &sparse->t[k], scale, &f,
                          buf, &w);
        if (!st && !f.failed)
            st = sresid__watch_step(&w, order[i]->name);
    }
    st = sresid__afile_close(&f, st,
                             (o.flags & SRESID_SAVE_NO_CLOBBER) ? SRESID__AFILE_NO_CLOBBER : 0);
out:
    free(keep);
    free(head);
    free(buf);
    free(order);
    free(which);
    return st;
}
