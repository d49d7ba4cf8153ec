/* Residuals: base and trained checkpoints paired by name, differences and
 * norms computed lazily in blocks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "residual/residual.h"

#define BLOCK 16384 /* elements converted per step; two blocks live on the stack */

typedef struct unpaired {
    const char *name; /* borrowed from a model */
    int32_t reason;
} unpaired;

struct sresid_residual {
    const sresid_model *base, *trained;
    size_t *bi, *ti; /* paired indices */
    size_t count;
    unpaired *left;
    size_t nleft;
};

static const char *reason_text(int32_t r)
{
    switch (r) {
    case SRESID_UNPAIRED_BASE_ONLY: return "only in base";
    case SRESID_UNPAIRED_TRAINED_ONLY: return "only in trained";
    case SRESID_UNPAIRED_SHAPE: return "shapes differ";
    default: return "not a float tensor";
    }
}

static sresid_status mismatch_error(const sresid_residual *r)
{
    char msg[2048];
    size_t len = 0, shown = 0, bad = 0;
    for (size_t i = 0; i < r->nleft; i++) {
        if (r->left[i].reason == SRESID_UNPAIRED_NOT_FLOAT)
            continue;
        bad++;
        if (shown < 8 && len < sizeof msg - 200) {
            int n = snprintf(msg + len, sizeof msg - len, "%s'%s' (%s)", shown ? ", " : "",
                             r->left[i].name, reason_text(r->left[i].reason));
            if (n > 0 && (size_t)n < sizeof msg - len) {
                len += (size_t)n;
                shown++;
            }
        }
    }
    return sresid__fail(SRESID_ERR_MISMATCH, "checkpoints do not pair: %zu tensor%s: %s%s", bad,
                        bad == 1 ? "" : "s", msg, shown < bad ? ", ..." : "");
}

sresid_status sresid_residual_create(const sresid_model *base, const sresid_model *trained,
                                     const sresid_pair_opts *opts, sresid_residual **out)
{
    if (!base || !trained || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_create: NULL argument");
    sresid_pair_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, "sresid_residual_create");
    if (st)
        return st;
    if (o.flags & ~SRESID_PAIR_SKIP_MISMATCHED)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_create: unknown flags 0x%x",
                            (unsigned)o.flags);
    sresid_residual *r = calloc(1, sizeof *r);
    size_t nb = base->count, nt = trained->count;
    if (r) {
        r->bi = malloc((nb ? nb : 1) * sizeof *r->bi);
        r->ti = malloc((nb ? nb : 1) * sizeof *r->ti);
        r->left = malloc((nb + nt ? nb + nt : 1) * sizeof *r->left);
    }
    if (!r || !r->bi || !r->ti || !r->left) {
        sresid_residual_free(r);
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_residual_create: out of memory");
    }
    r->base = base;
    r->trained = trained;
    bool mismatch = false;
    for (size_t i = 0; i < nb; i++) {
        const sresid__tensor *b = &base->tensors[i];
        size_t j;
        int32_t reason = 0;
        bool found = sresid_model_find(trained, b->name, &j) == SRESID_OK;
        /* integer tensors are left out whatever the other side holds */
        if (!sresid_dtype_is_float(b->dtype) ||
            (found && !sresid_dtype_is_float(trained->tensors[j].dtype)))
            reason = SRESID_UNPAIRED_NOT_FLOAT;
        else if (!found)
            reason = SRESID_UNPAIRED_BASE_ONLY;
        else if (!sresid__same_shape(b, &trained->tensors[j]))
            reason = SRESID_UNPAIRED_SHAPE;
        if (reason) {
            r->left[r->nleft++] = (unpaired){b->name, reason};
            mismatch |= reason != SRESID_UNPAIRED_NOT_FLOAT;
        } else {
            r->bi[r->count] = i;
            r->ti[r->count++] = j;
        }
    }
    for (size_t j = 0; j < nt; j++) {
        const sresid__tensor *t = &trained->tensors[j];
        size_t i;
        if (sresid_model_find(base, t->name, &i) == SRESID_OK)
            continue;
        bool is_float = sresid_dtype_is_float(t->dtype);
        r->left[r->nleft++] = (unpaired){t->name, is_float ? SRESID_UNPAIRED_TRAINED_ONLY
                                                           : SRESID_UNPAIRED_NOT_FLOAT};
        mismatch |= is_float;
    }
    if (mismatch && !(o.flags & SRESID_PAIR_SKIP_MISMATCHED)) {
        st = mismatch_error(r);
        sresid_residual_free(r);
        return st;
    }
    *out = r;
    return SRESID_OK;
}

void sresid_residual_free(sresid_residual *r)
{
    if (!r)
        return;
    free(r->bi);
    free(r->ti);
    free(r->left);
    free(r);
}

const sresid_model *sresid__residual_base(const sresid_residual *r)
{
    return r->base;
}

const sresid_model *sresid__residual_trained(const sresid_residual *r)
{
    return r->trained;
}

size_t sresid_residual_count(const sresid_residual *r)
{
    return r ? r->count : 0;
}

static sresid_status check_pair(const sresid_residual *r, size_t i, const char *fn)
{
    if (!r)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: residual is NULL", fn);
    if (i >= r->count)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: pair %zu out of range (%zu pairs)", fn,
                            i, r->count);
    return SRESID_OK;
}

sresid_status sresid_residual_pair(const sresid_residual *r, size_t i, size_t *base_index,
                                   size_t *trained_index)
{
    sresid_status st = check_pair(r, i, "sresid_residual_pair");
    if (st)
        return st;
    if (!base_index || !trained_index)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_pair: NULL argument");
    *base_index = r->bi[i];
    *trained_index = r->ti[i];
    return SRESID_OK;
}

sresid_status sresid_residual_read(const sresid_residual *r, size_t i, float *dst, size_t count)
{
    sresid_status st = check_pair(r, i, "sresid_residual_read");
    if (st)
        return st;
    const sresid__tensor *b = &r->base->tensors[r->bi[i]], *t = &r->trained->tensors[r->ti[i]];
    if (!dst && b->numel)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_read: dst is NULL");
    if (count < (uint64_t)b->numel)
        return sresid__fail(SRESID_ERR_SHAPE,
                            "residual '%s' has %lld elements but the buffer holds %zu", b->name,
                            (long long)b->numel, count);
    float tmp[BLOCK];
    size_t n = (size_t)b->numel;
    for (size_t off = 0; off < n; off += BLOCK) {
        size_t k = n - off < BLOCK ? n - off : BLOCK;
        if ((st = sresid__tensor_to_f32(r->trained, t, off, k, dst + off)) ||
            (st = sresid__tensor_to_f32(r->base, b, off, k, tmp)))
            return st;
        for (size_t j = 0; j < k; j++)
            dst[off + j] -= tmp[j];
    }
    return SRESID_OK;
}

/* Sums of squares of base, trained and residual for one pair. */
static sresid_status pair_sums(const sresid_residual *r, size_t i, double s[3])
{
    const sresid__tensor *b = &r->base->tensors[r->bi[i]], *t = &r->trained->tensors[r->ti[i]];
    float xb[BLOCK], xt[BLOCK];
    double acc[3][4] = {{0}};
    size_t n = (size_t)b->numel;
    for (size_t off = 0; off < n; off += BLOCK) {
        size_t k = n - off < BLOCK ? n - off : BLOCK, j = 0;
        sresid_status st;
        if ((st = sresid__tensor_to_f32(r->base, b, off, k, xb)) ||
            (st = sresid__tensor_to_f32(r->trained, t, off, k, xt)))
            return st;
        /* four interleaved sums: more accurate and they vectorise */
        for (; j + 4 <= k; j += 4)
            for (int l = 0; l < 4; l++) {
                double vb = xb[j + l], vt = xt[j + l], vr = (double)(xt[j + l] - xb[j + l]);
                acc[0][l] += vb * vb;
                acc[1][l] += vt * vt;
                acc[2][l] += vr * vr;
            }
        for (; j < k; j++) {
            double vb = xb[j], vt = xt[j], vr = (double)(xt[j] - xb[j]);
            acc[0][0] += vb * vb;
            acc[1][0] += vt * vt;
            acc[2][0] += vr * vr;
        }
    }
    for (int q = 0; q < 3; q++)
        s[q] = (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
    return SRESID_OK;
}

sresid_status sresid_residual_norms(const sresid_residual *r, size_t i, sresid_norms *out)
{
    if (!r || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_norms: NULL argument");
    if (out->size < offsetof(sresid_norms, relative) + sizeof out->relative)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_residual_norms: out->size %zu is too small", out->size);
    if (i != SRESID_ALL && i >= r->count)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_norms: pair %zu out of range",
                            i);
    double s[3] = {0, 0, 0};
    size_t lo = i == SRESID_ALL ? 0 : i, hi = i == SRESID_ALL ? r->count : i + 1;
    for (size_t p = lo; p < hi; p++) {
        double q[3];
        sresid_status st = pair_sums(r, p, q);
        if (st)
            return st;
        for (int k = 0; k < 3; k++)
            s[k] += q[k];
    }
    size_t size = out->size;
    sresid_norms v = {.size = size, .base = sqrt(s[0]), .trained = sqrt(s[1]),
                      .residual = sqrt(s[2])};
    v.relative = v.base > 0 ? v.residual / v.base : NAN;
    memcpy(out, &v, size < sizeof v ? size : sizeof v);
    return SRESID_OK;
}

size_t sresid_residual_unpaired_count(const sresid_residual *r)
{
    return r ? r->nleft : 0;
}

sresid_status sresid_residual_unpaired(const sresid_residual *r, size_t i, const char **name,
                                       int32_t *reason)
{
    if (!r || !name || !reason)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_residual_unpaired: NULL argument");
    if (i >= r->nleft)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_residual_unpaired: index %zu out of range (%zu)", i, r->nleft);
    *name = r->left[i].name;
    *reason = r->left[i].reason;
    return SRESID_OK;
}
