/* Masked optimisers: AdamW and SGD (momentum, Nesterov) over a float32
 * vector, stepping only the entries a mask allows.
 *
 * Arithmetic: the state is float32 and so is the per-entry arithmetic (as
 * PyTorch's float32 optimisers); the factors that depend only on the step
 * (bias corrections, lr * wd, step sizes) are computed in double once per
 * step and rounded to float once. Entries outside the mask are never
 * written, so they and their state stay bit-identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amp/amp.h"

struct sresid_optim {
    uint64_t n;
    sresid_optim_opts o; /* defaults filled in; size = sizeof */
    uint64_t steps;
    float *m; /* n floats: AdamW first moment, SGD momentum buffer */
    float *v; /* n floats, AdamW only (NULL for SGD) */
};

#define FORMAT_TAG "sparseresid.optim"
#define FORMAT_VERSION "1"
#define KNOWN_FLAGS (SRESID_OPTIM_NO_BIAS_CORRECTION | SRESID_OPTIM_NESTEROV)

/* ---- options ---- */

static bool bad_num(double x)
{
    return !(x >= 0) || isinf(x);
}

/* Validate opts (NULL: defaults) and fill in the defaults. */
static sresid_status resolve_opts(const sresid_optim_opts *opts, const char *fn,
                                  sresid_optim_opts *out)
{
    sresid_optim_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    o.size = sizeof o;
    if (o.kind == 0)
        o.kind = SRESID_OPTIM_ADAMW;
    if (o.kind != SRESID_OPTIM_ADAMW && o.kind != SRESID_OPTIM_SGD)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown optimiser kind %d", fn,
                            (int)o.kind);
    if (o.flags & ~KNOWN_FLAGS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)(o.flags & ~KNOWN_FLAGS));
    const struct {
        const char *name;
        double v;
    } nums[] = {{"lr", o.lr},       {"beta1", o.beta1},
                {"beta2", o.beta2}, {"eps", o.eps},
                {"weight_decay", o.weight_decay}, {"momentum", o.momentum}};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        if (bad_num(nums[i].v))
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s %g is not a finite value >= 0",
                                fn, nums[i].name, nums[i].v);
    if (o.lr == 0)
        o.lr = 1e-3;
    if (o.kind == SRESID_OPTIM_ADAMW) {
        if (o.momentum != 0 || (o.flags & SRESID_OPTIM_NESTEROV))
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "%s: momentum and NESTEROV are SGD options, not AdamW's", fn);
        if (o.beta1 == 0)
            o.beta1 = 0.9;
        if (o.beta2 == 0)
            o.beta2 = 0.999;
        if (o.eps == 0)
            o.eps = 1e-8;
        if (o.beta1 >= 1 || o.beta2 >= 1)
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: beta%d %g is not below 1", fn,
                                o.beta1 >= 1 ? 1 : 2, o.beta1 >= 1 ? o.beta1 : o.beta2);
    } else {
        if (o.beta1 != 0 || o.beta2 != 0 || o.eps != 0 ||
            (o.flags & SRESID_OPTIM_NO_BIAS_CORRECTION))
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "%s: beta1, beta2, eps and NO_BIAS_CORRECTION are AdamW options, "
                                "not SGD's",
                                fn);
        if ((o.flags & SRESID_OPTIM_NESTEROV) && o.momentum == 0)
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: NESTEROV needs a momentum > 0",
                                fn);
    }
    *out = o;
    return SRESID_OK;
}

/* An optimiser with zero state for resolved options o. */
static sresid_status alloc_optim(uint64_t n, const sresid_optim_opts *o, const char *fn,
                                 sresid_optim **out)
{
    if (n > SIZE_MAX / sizeof(float))
        return sresid__fail(SRESID_ERR_OVERFLOW, "%s: %llu entries do not fit in memory", fn,
                            (unsigned long long)n);
    const size_t cnt = n ? (size_t)n : 1;
    sresid_optim *p = calloc(1, sizeof *p);
    float *m = calloc(cnt, sizeof *m);
    float *v = o->kind == SRESID_OPTIM_ADAMW ? calloc(cnt, sizeof *v) : NULL;
    if (!p || !m || (o->kind == SRESID_OPTIM_ADAMW && !v)) {
        free(p);
        free(m);
        free(v);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for the state of %llu entries",
                            fn, (unsigned long long)n);
    }
    p->n = n;
    p->o = *o;
    p->m = m;
    p->v = v;
    *out = p;
    return SRESID_OK;
}

sresid_status sresid_optim_create(uint64_t n, const sresid_optim_opts *opts, sresid_optim **out)
{
    static const char fn[] = "sresid_optim_create";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    sresid_optim_opts o;
    sresid_status st = resolve_opts(opts, fn, &o);
    if (st)
        return st;
    return alloc_optim(n, &o, fn, out);
}

void sresid_optim_free(sresid_optim *optim)
{
    if (!optim)
        return;
    free(optim->m);
    free(optim->v);
    free(optim);
}

uint64_t sresid_optim_size(const sresid_optim *optim)
{
    return optim ? optim->n : 0;
}

uint64_t sresid_optim_steps(const sresid_optim *optim)
{
    return optim ? optim->steps : 0;
}

sresid_status sresid_optim_get_opts(const sresid_optim *optim, sresid_optim_opts *out)
{
    static const char fn[] = "sresid_optim_get_opts";
    if (!optim || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !optim ? "optim" : "out");
    if (out->size < sizeof(sresid_optim_opts))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: out->size %zu is below %zu (set it to sizeof)", fn, out->size,
                            sizeof(sresid_optim_opts));
    size_t size = out->size;
    memcpy(out, &optim->o, sizeof optim->o);
    out->size = size;
    return SRESID_OK;
}

sresid_status sresid_optim_set_lr(sresid_optim *optim, double lr)
{
    static const char fn[] = "sresid_optim_set_lr";
    if (!optim)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: optim is NULL", fn);
    if (bad_num(lr))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: lr %g is not a finite value >= 0", fn,
                            lr);
    optim->o.lr = lr;
    return SRESID_OK;
}

/* ---- stepping ---- */

/* Factors of one step, rounded to float once. */
typedef struct factors {
    float decay;    /* AdamW: 1 - lr * wd */
    float b1, c1;   /* AdamW: beta1, 1 - beta1 */
    float b2, c2;   /* AdamW: beta2, 1 - beta2 */
    float step;     /* AdamW: lr / (1 - beta1^t); SGD: lr */
    float inv_bc2;  /* AdamW: 1 / sqrt(1 - beta2^t) */
    float eps;
    float wd;       /* SGD: L2 factor */
    float mom;      /* SGD momentum */
} factors;

static factors step_factors(const sresid_optim *p, uint64_t t)
{
    const sresid_optim_opts *o = &p->o;
    factors f = {0};
    if (o->kind == SRESID_OPTIM_ADAMW) {
        double bc1 = 1, bc2 = 1;
        if (!(o->flags & SRESID_OPTIM_NO_BIAS_CORRECTION)) {
            bc1 = 1 - pow(o->beta1, (double)t);
            bc2 = 1 - pow(o->beta2, (double)t);
        }
        f.decay = (float)(1 - o->lr * o->weight_decay);
        f.b1 = (float)o->beta1;
        f.c1 = (float)(1 - o->beta1);
        f.b2 = (float)o->beta2;
        f.c2 = (float)(1 - o->beta2);
        f.step = (float)(o->lr / bc1);
        f.inv_bc2 = (float)(1 / sqrt(bc2));
        f.eps = (float)o->eps;
    } else {
        f.step = (float)o->lr;
        f.wd = (float)o->weight_decay;
        f.mom = (float)o->momentum;
    }
    return f;
}

/* The update over a run [a, b) of entries, all allowed. Factors are copied
 * to locals and the buffers do not overlap (params, grad and the state are
 * distinct arrays), so the compiler may vectorise. */
static void adamw_run(const factors *fp, float *restrict p, const float *restrict g,
                      float *restrict m, float *restrict v, uint64_t a, uint64_t b)
{
    const factors f = *fp;
    for (uint64_t i = a; i < b; i++) {
        float gi = g[i], pi = p[i] * f.decay;
        float mi = f.b1 * m[i] + f.c1 * gi;
        float vi = f.b2 * v[i] + f.c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        /* vi >= 0: the builtin needs no errno path */
        p[i] = pi - f.step * (mi / (__builtin_sqrtf(vi) * f.inv_bc2 + f.eps));
    }
}

static void sgd_run(const factors *fp, bool momentum, bool nesterov, float *restrict p,
                    const float *restrict g, float *restrict m, uint64_t a, uint64_t b)
{
    const factors f = *fp;
    if (!momentum) {
        for (uint64_t i = a; i < b; i++)
            p[i] = p[i] - f.step * (g[i] + f.wd * p[i]);
    } else if (!nesterov) {
        for (uint64_t i = a; i < b; i++) {
            float gi = g[i] + f.wd * p[i], bi = f.mom * m[i] + gi;
            m[i] = bi;
            p[i] = p[i] - f.step * bi;
        }
    } else {
        for (uint64_t i = a; i < b; i++) {
            float gi = g[i] + f.wd * p[i], bi = f.mom * m[i] + gi;
            m[i] = bi;
            p[i] = p[i] - f.step * (gi + f.mom * bi);
        }
    }
}

/* Apply the update to every entry words allows (NULL: all): runs of set
 * bits go to the loops above. */
static void run(const sresid_optim *opt, const factors *f, float *p, const float *g,
                const uint64_t *words)
{
    const uint64_t n = opt->n;
    float *m = opt->m, *v = opt->v;
    const bool adam = opt->o.kind == SRESID_OPTIM_ADAMW;
    const bool mom = !adam && opt->o.momentum != 0;
    const bool nest = !adam && (opt->o.flags & SRESID_OPTIM_NESTEROV);
#define RUN(a, b)                                      \
    do {                                               \
        if (adam)                                      \
            adamw_run(f, p, g, m, v, (a), (b));        \
        else                                           \
            sgd_run(f, mom, nest, p, g, m, (a), (b));  \
    } while (0)
    if (!words) {
        RUN(0, n);
        return;
    }
    const uint64_t nw = n / 64 + (n % 64 != 0);
    for (uint64_t w = 0; w < nw; w++) {
        uint64_t bits = words[w];
        while (bits) {
            /* the next run of set bits within this word */
            unsigned lo = (unsigned)__builtin_ctzll(bits);
            uint64_t rest = ~bits >> lo;
            unsigned len = rest ? (unsigned)__builtin_ctzll(rest) : 64 - lo;
            RUN(w * 64 + lo, w * 64 + lo + len);
            bits = len + lo >= 64 ? 0 : bits & (~0ull << (lo + len));
        }
    }
#undef RUN
}

static sresid_status check_mask(const sresid_optim *optim, const sresid_mask *mask,
                                const char *fn)
{
    if (mask && sresid_mask_size(mask) != optim->n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: the mask has %llu entries, the optimiser %llu",
                            fn, (unsigned long long)sresid_mask_size(mask),
                            (unsigned long long)optim->n);
    return SRESID_OK;
}

sresid_status sresid_optim_step(sresid_optim *optim, float *params, const float *grad,
                                uint64_t n, const sresid_mask *mask)
{
    static const char fn[] = "sresid_optim_step";
    if (!optim || ((!params || !grad) && n))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !optim ? "optim" : !params ? "params" : "grad");
    if (n != optim->n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: %llu entries given, the optimiser has %llu",
                            fn, (unsigned long long)n, (unsigned long long)optim->n);
    sresid_status st = check_mask(optim, mask, fn);
    if (st)
        return st;
    const uint64_t *words = mask ? sresid__mask_words(mask) : NULL;
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(grad[i]) && (!words || ((words[i >> 6] >> (i & 63)) & 1)))
            return sresid__fail(SRESID_ERR_NONFINITE, "%s: grad[%llu] is %g", fn,
                                (unsigned long long)i, (double)grad[i]);
    optim->steps++;
    factors f = step_factors(optim, optim->steps);
    run(optim, &f, params, grad, words);
    return SRESID_OK;
}

sresid_status sresid_optim_reset(sresid_optim *optim, const sresid_mask *mask)
{
    static const char fn[] = "sresid_optim_reset";
    if (!optim)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: optim is NULL", fn);
    sresid_status st = check_mask(optim, mask, fn);
    if (st)
        return st;
    if (!mask) {
        memset(optim->m, 0, (size_t)optim->n * sizeof(float));
        if (optim->v)
            memset(optim->v, 0, (size_t)optim->n * sizeof(float));
        optim->steps = 0;
        return SRESID_OK;
    }
    const uint64_t *words = sresid__mask_words(mask);
    for (uint64_t i = 0; i < optim->n; i++)
        if ((words[i >> 6] >> (i & 63)) & 1) {
            optim->m[i] = 0;
            if (optim->v)
                optim->v[i] = 0;
        }
    return SRESID_OK;
}

sresid_status sresid_optim_state(const sresid_optim *optim, const float **m, const float **v)
{
    if (!optim)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_optim_state: optim is NULL");
    if (m)
        *m = optim->m;
    if (v)
        *v = optim->v;
    return SRESID_OK;
}

/* ---- files ---- */

static const char *kind_name(int32_t kind)
{
    return kind == SRESID_OPTIM_SGD ? "sgd" : "adamw";
}

sresid_status sresid_optim_save(const sresid_optim *optim, const char *path,
                                const sresid_save_opts *opts)
{
    static const char fn[] = "sresid_optim_save";
    if (!optim || !path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !optim ? "optim" : "path");
    sresid_status st = sresid__check_opts(opts, sizeof(sresid_save_opts), sizeof(size_t), fn);
    if (st)
        return st;
    const sresid_optim_opts *o = &optim->o;
    const bool adam = o->kind == SRESID_OPTIM_ADAMW;
    char num[9][32];
    const char *keys[9];
    size_t nk = 0;
    keys[nk] = "n";
    snprintf(num[nk++], sizeof num[0], "%llu", (unsigned long long)optim->n);
    keys[nk] = "steps";
    snprintf(num[nk++], sizeof num[0], "%llu", (unsigned long long)optim->steps);
    keys[nk] = "flags";
    snprintf(num[nk++], sizeof num[0], "%u", (unsigned)o->flags);
    /* the options of this kind only, as the loader reads them back */
    const struct {
        const char *key;
        double v;
        bool adamw, sgd;
    } reals[] = {{"lr", o->lr, true, true},        {"weight_decay", o->weight_decay, true, true},
                 {"beta1", o->beta1, true, false}, {"beta2", o->beta2, true, false},
                 {"eps", o->eps, true, false},     {"momentum", o->momentum, false, true}};
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        if (adam ? !reals[i].adamw : !reals[i].sgd)
            continue;
        keys[nk] = reals[i].key;
        if (!sresid__fmt_f64(num[nk++], reals[i].v))
            return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for the C locale", fn);
    }

    sresid_model *model = NULL;
    const int64_t shape[1] = {(int64_t)optim->n};
    const size_t bytes = (size_t)optim->n * sizeof(float);
    if ((st = sresid_model_create(NULL, &model)) ||
        (st = sresid_model_add_tensor(model, "m", SRESID_DTYPE_F32, 1, shape, optim->m, bytes,
                                      SRESID_ADD_BORROW)) ||
        (adam && (st = sresid_model_add_tensor(model, "v", SRESID_DTYPE_F32, 1, shape, optim->v,
                                               bytes, SRESID_ADD_BORROW))) ||
        (st = sresid_model_set_metadata(model, "format", FORMAT_TAG)) ||
        (st = sresid_model_set_metadata(model, "version", FORMAT_VERSION)) ||
        (st = sresid_model_set_metadata(model, "kind", kind_name(o->kind))))
        goto done;
    for (size_t i = 0; i < nk; i++)
        if ((st = sresid_model_set_metadata(model, keys[i], num[i])))
            goto done;
    st = sresid_model_save(model, path, opts);
done:
    if (st)
        st = sresid__fail(st, "%s: %s", fn, sresid_last_error());
    sresid_model_free(model);
    return st;
}

/* The index of state tensor name, which must be F32 of shape [n]. */
static sresid_status find_state(const sresid_model *model, const char *path, const char *name,
                                uint64_t n, size_t *index)
{
    if (sresid_model_find(model, name, index))
        return sresid__fail(SRESID_ERR_NOT_FOUND, "%s: no tensor \"%s\"", path, name);
    sresid_tensor_info info = {.size = sizeof info};
    sresid_status st = sresid_model_tensor_info(model, *index, &info);
    if (st)
        return st;
    if (info.dtype != SRESID_DTYPE_F32) {
        const char *dn = sresid_dtype_name(info.dtype);
        return sresid__fail(SRESID_ERR_DTYPE, "%s: tensor \"%s\" is %s, want F32", path, name,
                            dn ? dn : "?");
    }
    if (info.ndim != 1 || (uint64_t)info.shape[0] != n)
        return sresid__fail(SRESID_ERR_SHAPE,
                            "%s: tensor \"%s\" has %lld entries in %d dimensions, want [%llu]",
                            path, name, (long long)info.numel, (int)info.ndim,
                            (unsigned long long)n);
    return SRESID_OK;
}

/* Read state tensor index (found by find_state) into dst and check its values. */
static sresid_status read_state(const sresid_model *model, const char *path, const char *name,
                                size_t index, uint64_t n, bool nonneg, float *dst)
{
    sresid_status st;
    if (n && (st = sresid_model_read_raw(model, index, dst, (size_t)n * sizeof(float))))
        return st;
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(dst[i]))
            return sresid__fail(SRESID_ERR_NONFINITE, "%s: %s[%llu] is %g", path, name,
                                (unsigned long long)i, (double)dst[i]);
        if (nonneg && dst[i] < 0)
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s[%llu] is negative (%g)", path,
                                name, (unsigned long long)i, (double)dst[i]);
    }
    return SRESID_OK;
}

sresid_status sresid_optim_load(const char *path, sresid_optim **out)
{
    static const char fn[] = "sresid_optim_load";
    sresid_model *model = NULL;
    sresid_status st = sresid__meta_open(path, out, fn, &model);
    if (st)
        return st;
    sresid_optim *p = NULL;
    const char *s;
    sresid_optim_opts o = {.size = sizeof o};
    uint64_t n, steps, flags;
    if ((st = sresid__meta_format(model, path, FORMAT_TAG, "version", FORMAT_VERSION,
                                  "optimiser state")))
        goto done;
    if ((st = sresid__meta_get(model, path, "kind", &s)))
        goto done;
    if (!strcmp(s, "adamw"))
        o.kind = SRESID_OPTIM_ADAMW;
    else if (!strcmp(s, "sgd"))
        o.kind = SRESID_OPTIM_SGD;
    else {
        st = sresid__fail(SRESID_ERR_METADATA, "%s: metadata \"kind\" is \"%s\", want adamw or sgd",
                          path, s);
        goto done;
    }
    const bool adam = o.kind == SRESID_OPTIM_ADAMW;
    if ((st = sresid__meta_u64(model, path, "n", UINT64_MAX, &n)) ||
        (st = sresid__meta_u64(model, path, "steps", UINT64_MAX, &steps)) ||
        (st = sresid__meta_u64(model, path, "flags", UINT32_MAX, &flags)) ||
        (st = sresid__meta_f64(model, path, "lr", false, &o.lr)) ||
        (st = sresid__meta_f64(model, path, "weight_decay", false, &o.weight_decay)))
        goto done;
    o.flags = (uint32_t)flags;
    if (adam) {
        if ((st = sresid__meta_f64(model, path, "beta1", false, &o.beta1)) ||
            (st = sresid__meta_f64(model, path, "beta2", false, &o.beta2)) ||
            (st = sresid__meta_f64(model, path, "eps", false, &o.eps)))
            goto done;
    } else if ((st = sresid__meta_f64(model, path, "momentum", false, &o.momentum)))
        goto done;
    /* the saved options are resolved ones: zero only where zero is the value */
    if (adam && (o.beta1 == 0 || o.beta2 == 0 || o.eps == 0)) {
        st = sresid__fail(SRESID_ERR_METADATA, "%s: an AdamW option in the metadata is zero", path);
        goto done;
    }
    const double lr = o.lr;
    sresid_optim_opts r;
    if ((st = resolve_opts(&o, path, &r))) {
        st = sresid__fail(SRESID_ERR_METADATA, "%s", sresid_last_error());
        goto done;
    }
    r.lr = lr; /* a learning rate of 0 (set_lr) is kept */
    /* n is checked against the tensors before the state is allocated: a
     * small file must not make the library allocate what it claims */
    size_t im, iv = 0;
    if ((st = find_state(model, path, "m", n, &im)) ||
        (adam && (st = find_state(model, path, "v", n, &iv))))
        goto done;
    if ((st = alloc_optim(n, &r, fn, &p)))
        goto done;
    if ((st = read_state(model, path, "m", im, n, false, p->m)) ||
        (adam && (st = read_state(model, path, "v", iv, n, true, p->v))))
        goto done;
    p->steps = steps;
done:
    sresid_model_free(model);
    if (st) {
        sresid_optim_free(p);
        return sresid__fail(st, "%s: %s", fn, sresid_last_error());
    }
    *out = p;
    return SRESID_OK;
}
