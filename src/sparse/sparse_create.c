/* Sparse residuals: the kept entries of a residual, selected by one of five
 * rules, with the error report of the selection.
 *
 * Every rule streams the residual block by block (base and trained read as
 * float32, R = trained - base in float32, exactly as sresid_residual_read).
 * The global rules (TOP, ENERGY) run the top-k selection of select.c over
 * the whole stream, in pairing order then flat position: pass 0 and, when
 * the bucket does not settle the query, pass 1 count; a last pass collects.
 * With SRESID_SPARSE_IN_MEMORY (or for one tensor of TOP_PER_TENSOR) the
 * residual read by pass 0 is kept and the later passes read it back; the
 * selection sees the same values in the same order, so the result is the
 * same. The in-memory copy is optional: when it cannot be allocated the
 * passes stream instead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sparse/sparse.h"
#include "util/topk.h"

#define BLOCK 65536 /* elements read per step */
#define HUGE_PAGE ((size_t)2 << 20)

/* ---- index encoding ---- */

sresid_dtype sresid__sparse_index_dtype(const uint64_t *pos, uint64_t n)
{
    uint64_t big = 0, prev = 0;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t code = j ? pos[j] - prev : pos[j];
        if (code > big)
            big = code;
        prev = pos[j];
    }
    return big <= UINT8_MAX    ? SRESID_DTYPE_U8
           : big <= UINT16_MAX ? SRESID_DTYPE_U16
           : big <= UINT32_MAX ? SRESID_DTYPE_U32
                               : SRESID_DTYPE_U64;
}

void sresid__sparse_encode(const uint64_t *pos, uint64_t n, sresid_dtype dtype, void *dst)
{
    unsigned char *p = dst;
    size_t w = sresid_dtype_size(dtype);
    uint64_t prev = 0;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t code = j ? pos[j] - prev : pos[j];
        prev = pos[j];
        for (size_t b = 0; b < w; b++)
            *p++ = (unsigned char)(code >> (8 * b));
    }
}

void sresid__sparse_cursor(sresid__sp_cursor *c, const void *src, sresid_dtype dtype, uint64_t n)
{
    c->src = src;
    c->dtype = dtype;
    c->left = n;
    c->pos = 0;
    c->started = false;
}

bool sresid__sparse_next(sresid__sp_cursor *c, uint64_t *pos, int *why)
{
    *why = 0;
    if (!c->left)
        return false;
    size_t w = sresid_dtype_size(c->dtype);
    uint64_t code = 0;
    for (size_t b = 0; b < w; b++)
        code |= (uint64_t)c->src[b] << (8 * b);
    c->src += w;
    c->left--;
    if (c->started) {
        if (code == 0) {
            *why = 1;
            return false;
        }
        if (!sresid__add_u64(c->pos, code, &c->pos)) {
            *why = 2;
            return false;
        }
    } else {
        c->pos = code;
        c->started = true;
    }
    *pos = c->pos;
    return true;
}

float sresid__sparse_value(sresid_dtype dtype, const unsigned char *val, uint64_t j)
{
    if (dtype == SRESID_DTYPE_F32) {
        uint32_t u = 0;
        for (int b = 0; b < 4; b++)
            u |= (uint32_t)val[4 * j + b] << (8 * b);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    uint16_t h = (uint16_t)(val[2 * j] | val[2 * j + 1] << 8);
    return dtype == SRESID_DTYPE_F16 ? sresid__f16_to_f32(h) : sresid__bf16_to_f32(h);
}

/* ---- names ---- */

static const char *const rule_names[] = {NULL, "top", "top_per_tensor", "threshold", "energy",
                                         "dare"};

const char *sresid__sparse_rule_name(int32_t rule)
{
    return rule >= SRESID_SPARSE_TOP && rule <= SRESID_SPARSE_DARE ? rule_names[rule] : NULL;
}

int32_t sresid__sparse_rule_from_name(const char *name)
{
    for (int32_t r = SRESID_SPARSE_TOP; r <= SRESID_SPARSE_DARE; r++)
        if (strcmp(name, rule_names[r]) == 0)
            return r;
    return 0;
}

/* ---- building ---- */

typedef struct builder {
    const sresid_residual *res;
    const sresid_model *base, *trained;
    const sresid_sparse_opts *o;
    float *bb, *tb, *rb;   /* one block each */
    float *cache;          /* residual of tensors [lo, hi), or NULL */
    uint64_t *coff;        /* offsets into cache */
    size_t lo, hi;
    bool cached;           /* the cache holds its range */
    uint64_t *pos;         /* kept positions of the tensor being collected */
    unsigned char *val;    /* their stored values */
    unsigned char *low;    /* their F32 low parts */
    uint64_t cap;
} builder;

static const sresid__tensor *pair_tensor(const builder *bd, size_t i, bool trained)
{
    size_t bi, ti;
    sresid_residual_pair(bd->res, i, &bi, &ti);
    return trained ? &bd->trained->tensors[ti] : &bd->base->tensors[bi];
}

/* Try to keep the residual of tensors [lo, hi) in memory; silently stream
 * when it does not fit. */
static void cache_range(builder *bd, size_t lo, size_t hi)
{
    free(bd->cache);
    free(bd->coff);
    bd->cache = NULL;
    bd->coff = NULL;
    bd->cached = false;
    bd->lo = lo;
    bd->hi = hi;
    uint64_t total = 0;
    for (size_t i = lo; i < hi; i++)
        if (!sresid__add_u64(total, (uint64_t)pair_tensor(bd, i, false)->numel, &total))
            return;
    if (total == 0 || total > SIZE_MAX / sizeof(float))
        return;
    bd->coff = malloc((hi - lo + 1) * sizeof *bd->coff);
    /* huge pages where the system allows: first touching a large buffer in
     * 4 KiB pages costs more than the reads it saves */
    size_t bytes = ((size_t)total * sizeof(float) + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    bd->cache = aligned_alloc(HUGE_PAGE, bytes);
    if (bd->cache)
        madvise(bd->cache, bytes, MADV_HUGEPAGE);
    if (!bd->coff || !bd->cache) {
        free(bd->cache);
        free(bd->coff);
        bd->cache = NULL;
        bd->coff = NULL;
        return;
    }
    bd->coff[0] = 0;
    for (size_t i = lo; i < hi; i++)
        bd->coff[i - lo + 1] = bd->coff[i - lo] + (uint64_t)pair_tensor(bd, i, false)->numel;
}

/* The residual of elements [off, off + len) of pair i (len <= BLOCK) in *r.
 * need_bt: bd->bb and bd->tb must hold base and trained too. */
static sresid_status get_block(builder *bd, size_t i, uint64_t off, size_t len, bool need_bt,
                               const float **r)
{
    bool in_cache = bd->cache && i >= bd->lo && i < bd->hi;
    if (in_cache && bd->cached && !need_bt) {
        *r = bd->cache + bd->coff[i - bd->lo] + off;
        return SRESID_OK;
    }
    const sresid__tensor *b = pair_tensor(bd, i, false), *t = pair_tensor(bd, i, true);
    sresid_status st;
    if ((st = sresid__tensor_to_f32(bd->base, b, (size_t)off, len, bd->bb)) ||
        (st = sresid__tensor_to_f32(bd->trained, t, (size_t)off, len, bd->tb)))
        return st;
    for (size_t j = 0; j < len; j++) {
        float x = bd->tb[j] - bd->bb[j];
        if (!isfinite(x))
            return sresid__fail(SRESID_ERR_NONFINITE,
                                "sresid_sparse_create: residual of '%s' is not finite at "
                                "position %llu (base %g, trained %g)",
                                b->name, (unsigned long long)(off + j), (double)bd->bb[j],
                                (double)bd->tb[j]);
        bd->rb[j] = x;
    }
    if (in_cache && !bd->cached)
        memcpy(bd->cache + bd->coff[i - bd->lo] + off, bd->rb, len * sizeof(float));
    *r = bd->rb;
    return SRESID_OK;
}

/* One counting pass of the selection over pairs [lo, hi). */
static sresid_status feed(builder *bd, sresid__sel *sel, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        uint64_t n = (uint64_t)pair_tensor(bd, i, false)->numel;
        for (uint64_t off = 0; off < n; off += BLOCK) {
            size_t len = n - off < BLOCK ? (size_t)(n - off) : BLOCK;
            const float *r;
            sresid_status st = get_block(bd, i, off, len, false, &r);
            if (st)
                return st;
            sresid__sel_feed(sel, r, len);
        }
    }
    if (bd->cache && bd->lo == lo && bd->hi == hi)
        bd->cached = true;
    sresid__sel_next(sel);
    return SRESID_OK;
}

/* Run the selection's counting passes over pairs [lo, hi). */
static sresid_status settle(builder *bd, sresid__sel *sel, size_t lo, size_t hi)
{
    sresid_status st = feed(bd, sel, lo, hi);
    if (!st && sel->pass == 1)
        st = feed(bd, sel, lo, hi);
    return st;
}

/* Low part of an F32 value. r = trained - base rounded to float32 misses
 * the exact difference when the subtraction is not exact (base and trained
 * more than a factor 2 apart), and then base + r may not give trained back:
 * no float32 v may do, since base + v lies on the grid of the coarser of
 * their ulps. The rounding error lo = (t - b) - r is a float32 exactly
 * (TwoSum), and (b + r) + lo evaluated in double is exactly t (when lo is
 * needed, b and r are within 2^29 of each other, so b + r is exact in
 * double). Returns false when b + r already gives t bit for bit. */
static bool low_part(float b, float t, float r, float *lo)
{
    float s = b + r;
    if (s == t && signbit(s) == signbit(t)) {
        *lo = 0;
        return false;
    }
    float nb = -b, a1 = r - nb, c1 = r - a1;
    *lo = (t - a1) + (nb - c1);
    return true;
}

enum keep_kind { KEEP_SEL, KEEP_THRESHOLD, KEEP_DARE };

static bool grow(builder *bd, uint64_t need, size_t vsize)
{
    if (need <= bd->cap)
        return true;
    uint64_t cap = bd->cap ? bd->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > SIZE_MAX / 8)
        return false;
    uint64_t *p = realloc(bd->pos, (size_t)cap * sizeof *p);
    if (p)
        bd->pos = p;
    unsigned char *v = p ? realloc(bd->val, (size_t)cap * vsize) : NULL;
    if (v)
        bd->val = v;
    unsigned char *l = v ? realloc(bd->low, (size_t)cap * 4) : NULL;
    if (l)
        bd->low = l;
    if (!p || !v || !l)
        return false;
    bd->cap = cap;
    return true;
}

/* Collect the kept entries of pair i into out, with its error figures:
 * sums[0] = sum R^2, sums[1] = sum R^2 at kept positions, sums[2] =
 * sum (R - stored)^2. */
static sresid_status collect(builder *bd, size_t i, enum keep_kind how, sresid__sel_cursor *cur,
                             sresid__sp_tensor *out, double sums[3])
{
    const sresid_sparse_opts *o = bd->o;
    const sresid__tensor *bt = pair_tensor(bd, i, false);
    const uint64_t n = (uint64_t)bt->numel;
    const size_t vsize = sresid_dtype_size(o->dtype);
    /* F32 values of the magnitude rules reproduce trained exactly: that
     * needs base and trained, not only their difference */
    const bool need_bt = o->dtype == SRESID_DTYPE_F32 && how != KEEP_DARE &&
                         !(o->flags & SRESID_SPARSE_ROUNDED);
    bool any_lo = false;
    const float thr = (float)o->param;
    sresid__rng rng;
    if (how == KEEP_DARE)
        sresid__rng_seed(&rng, sresid__mix64(o->seed ^ sresid__mix64((uint64_t)i)));
    double e = 0, ke = 0, err = 0;
    uint64_t kept = 0;
    for (uint64_t off = 0; off < n; off += BLOCK) {
        size_t len = n - off < BLOCK ? (size_t)(n - off) : BLOCK;
        const float *r;
        sresid_status st = get_block(bd, i, off, len, need_bt, &r);
        if (st)
            return st;
        for (size_t j = 0; j < len; j++) {
            const float x = r[j];
            const double x2 = (double)x * x;
            bool keep;
            float v = x;
            e += x2;
            switch (how) {
            case KEEP_SEL: keep = sresid__sel_keep(cur, x); break;
            case KEEP_THRESHOLD: keep = fabsf(x) >= thr; break;
            default:
                keep = sresid__rng_uniform(&rng) < o->param;
                v = (float)((double)x / o->param);
                break;
            }
            if (!keep) {
                err += x2;
                continue;
            }
            if (!grow(bd, kept + 1, vsize))
                return sresid__fail(SRESID_ERR_NOMEM,
                                    "sresid_sparse_create: out of memory for the entries of '%s'",
                                    bt->name);
            unsigned char *dst = bd->val + kept * vsize;
            float stored = v;
            if (o->dtype == SRESID_DTYPE_F32) {
                uint32_t u;
                memcpy(&u, &v, sizeof u);
                for (int b = 0; b < 4; b++)
                    dst[b] = (unsigned char)(u >> (8 * b));
            } else {
                uint16_t h = o->dtype == SRESID_DTYPE_F16 ? sresid__f32_to_f16(v)
                                                          : sresid__f32_to_bf16(v);
                dst[0] = (unsigned char)h;
                dst[1] = (unsigned char)(h >> 8);
                stored = o->dtype == SRESID_DTYPE_F16 ? sresid__f16_to_f32(h)
                                                      : sresid__bf16_to_f32(h);
            }
            if (!isfinite(stored))
                return sresid__fail(SRESID_ERR_NONFINITE,
                                    "sresid_sparse_create: value %g of '%s' at position %llu "
                                    "overflows %s",
                                    (double)v, bt->name, (unsigned long long)(off + j),
                                    sresid_dtype_name(o->dtype));
            if (need_bt) {
                float lo;
                any_lo |= low_part(bd->bb[j], bd->tb[j], x, &lo);
                memcpy(bd->low + kept * 4, &lo, 4); /* host order, fixed below */
            }
            bd->pos[kept++] = off + j;
            ke += x2;
            double d = (double)x - (double)stored;
            err += d * d;
        }
    }
    out->kept = kept;
    out->index_dtype = sresid__sparse_index_dtype(bd->pos, kept);
    size_t isize = sresid_dtype_size(out->index_dtype);
    if (kept) {
        out->idx = malloc((size_t)kept * isize);
        out->val = malloc((size_t)kept * vsize);
        if (!out->idx || !out->val)
            return sresid__fail(SRESID_ERR_NOMEM,
                                "sresid_sparse_create: out of memory for the entries of '%s'",
                                bt->name);
        sresid__sparse_encode(bd->pos, kept, out->index_dtype, out->idx);
        memcpy(out->val, bd->val, (size_t)kept * vsize);
        if (any_lo) {
            if (!(out->lo = malloc((size_t)kept * 4)))
                return sresid__fail(SRESID_ERR_NOMEM,
                                    "sresid_sparse_create: out of memory for the entries of '%s'",
                                    bt->name);
            for (uint64_t q = 0; q < kept; q++) {
                uint32_t u;
                memcpy(&u, bd->low + q * 4, 4);
                for (int b = 0; b < 4; b++)
                    out->lo[4 * q + b] = (unsigned char)(u >> (8 * b));
            }
        }
    }
    out->energy = e;
    out->kept_energy = e > 0 ? ke / e : NAN;
    out->error = e > 0 ? sqrt(err) / sqrt(e) : NAN;
    sums[0] = e;
    sums[1] = ke;
    sums[2] = err;
    return SRESID_OK;
}

/* Name, shape, dtype and base hash of pair i. */
static sresid_status describe(builder *bd, size_t i, sresid__sp_tensor *t)
{
    size_t bi, ti;
    sresid_residual_pair(bd->res, i, &bi, &ti);
    const sresid__tensor *b = &bd->base->tensors[bi];
    t->name = strdup(b->name);
    t->ndim = b->ndim;
    t->shape = b->ndim ? malloc((size_t)b->ndim * sizeof *t->shape) : NULL;
    if (!t->name || (b->ndim && !t->shape))
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_sparse_create: out of memory");
    if (b->ndim)
        memcpy(t->shape, b->shape, (size_t)b->ndim * sizeof *t->shape);
    t->base_dtype = b->dtype;
    t->numel = b->numel;
    return sresid__tensor_hash(bd->base, bi, t->hash);
}

static sresid_status check_opts(const sresid_sparse_opts *opts, sresid_sparse_opts *o)
{
    sresid_status st = sresid__check_opts(opts, sizeof *opts, sizeof(size_t),
                                          "sresid_sparse_create");
    if (st)
        return st;
    memset(o, 0, sizeof *o);
    if (opts)
        memcpy(o, opts, opts->size < sizeof *o ? opts->size : sizeof *o);
    o->size = sizeof *o;
    if (!o->rule)
        o->rule = SRESID_SPARSE_TOP;
    if (!sresid__sparse_rule_name(o->rule))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_create: unknown rule %d",
                            (int)o->rule);
    if (!o->dtype)
        o->dtype = SRESID_DTYPE_F32;
    if (o->dtype != SRESID_DTYPE_F32 && o->dtype != SRESID_DTYPE_F16 &&
        o->dtype != SRESID_DTYPE_BF16)
        return sresid__fail(SRESID_ERR_DTYPE,
                            "sresid_sparse_create: values are stored as F32, F16 or BF16, not "
                            "dtype %d",
                            (int)o->dtype);
    if (o->rule == SRESID_SPARSE_THRESHOLD) {
        if (!(o->param > 0) || !isfinite(o->param))
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "sresid_sparse_create: the threshold must be finite and > 0, "
                                "not %g",
                                o->param);
    } else {
        if (o->param == 0)
            o->param = 0.1;
        if (!(o->param > 0 && o->param <= 1))
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "sresid_sparse_create: %s wants a parameter in (0, 1], not %g",
                                sresid__sparse_rule_name(o->rule), o->param);
    }
    if (o->threads < 0 || o->threads > 4096)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_sparse_create: threads %d is not in [0, 4096]",
                            (int)o->threads);
    if (o->flags & ~(SRESID_SPARSE_IN_MEMORY | SRESID_SPARSE_ROUNDED))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_create: unknown flags 0x%x",
                            (unsigned)o->flags);
    return SRESID_OK;
}

static sresid_status build(builder *bd, sresid_sparse *sp)
{
    const sresid_sparse_opts *o = bd->o;
    const size_t n = sp->count;
    const int32_t rule = o->rule;
    sresid__sel sel;
    bool have_sel = false;
    sresid_status st = SRESID_OK;
    double tot[3] = {0, 0, 0};

    if (rule == SRESID_SPARSE_TOP || rule == SRESID_SPARSE_ENERGY) {
        if (o->flags & SRESID_SPARSE_IN_MEMORY)
            cache_range(bd, 0, n);
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += (uint64_t)pair_tensor(bd, i, false)->numel;
        st = rule == SRESID_SPARSE_TOP ? sresid__sel_init(&sel, sresid__fraction_count(o->param, total))
                                       : sresid__sel_init_energy(&sel, o->param);
        if (st)
            return st;
        have_sel = true;
        st = settle(bd, &sel, 0, n);
    }
    sresid__sel_cursor cur = {0};
    if (!st && have_sel)
        cur = (sresid__sel_cursor){sel.threshold, sel.take_equal};
    for (size_t i = 0; i < n && !st; i++) {
        sresid__sp_tensor *t = &sp->t[i];
        if ((st = describe(bd, i, t)))
            break;
        enum keep_kind how = rule == SRESID_SPARSE_THRESHOLD ? KEEP_THRESHOLD
                             : rule == SRESID_SPARSE_DARE    ? KEEP_DARE
                                                             : KEEP_SEL;
        if (rule == SRESID_SPARSE_TOP_PER_TENSOR) {
            /* one tensor kept in memory (when it fits) for its passes */
            cache_range(bd, i, i + 1);
            if ((st = sresid__sel_init(&sel, sresid__fraction_count(o->param, (uint64_t)t->numel))))
                break;
            st = settle(bd, &sel, i, i + 1);
            cur = (sresid__sel_cursor){sel.threshold, sel.take_equal};
            sresid__sel_free(&sel);
            if (st)
                break;
        }
        double sums[3];
        if ((st = collect(bd, i, how, &cur, t, sums)))
            break;
        for (int q = 0; q < 3; q++)
            tot[q] += sums[q];
    }
    if (have_sel)
        sresid__sel_free(&sel);
    sp->energy = tot[0];
    sp->kept_energy = tot[0] > 0 ? tot[1] / tot[0] : NAN;
    sp->error = tot[0] > 0 ? sqrt(tot[2]) / sqrt(tot[0]) : NAN;
    return st;
}

sresid_status sresid_sparse_create(const sresid_residual *residual, const sresid_sparse_opts *opts,
                                   sresid_sparse **out)
{
    if (!residual || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_create: NULL argument");
    sresid_sparse_opts o;
    sresid_status st = check_opts(opts, &o);
    if (st)
        return st;
    sresid_sparse *sp = calloc(1, sizeof *sp);
    builder bd = {.res = residual, .base = sresid__residual_base(residual),
                  .trained = sresid__residual_trained(residual), .o = &o};
    size_t n = sresid_residual_count(residual);
    if (sp) {
        sp->rule = o.rule;
        sp->value_dtype = o.dtype;
        sp->param = o.param;
        sp->seed = o.seed;
        sp->count = n;
        sp->t = calloc(n ? n : 1, sizeof *sp->t);
    }
    bd.bb = malloc(BLOCK * sizeof(float));
    bd.tb = malloc(BLOCK * sizeof(float));
    bd.rb = malloc(BLOCK * sizeof(float));
    if (!sp || !sp->t || !bd.bb || !bd.tb || !bd.rb)
        st = sresid__fail(SRESID_ERR_NOMEM, "sresid_sparse_create: out of memory");
    else
        st = build(&bd, sp);
    free(bd.bb);
    free(bd.tb);
    free(bd.rb);
    free(bd.cache);
    free(bd.coff);
    free(bd.pos);
    free(bd.val);
    free(bd.low);
    if (st) {
        sresid__sparse_destroy(sp);
        return st;
    }
    *out = sp;
    return SRESID_OK;
}

/* ---- access ---- */

void sresid__sparse_destroy(sresid_sparse *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->t && i < s->count; i++) {
        free(s->t[i].name);
        free(s->t[i].shape);
        free(s->t[i].idx);
        free(s->t[i].val);
        free(s->t[i].lo);
    }
    free(s->t);
    free(s);
}

void sresid_sparse_free(sresid_sparse *sparse)
{
    sresid__sparse_destroy(sparse);
}

size_t sresid_sparse_count(const sresid_sparse *sparse)
{
    return sparse ? sparse->count : 0;
}

static uint64_t stored_bytes(const sresid_sparse *s, const sresid__sp_tensor *t)
{
    return t->kept * (sresid_dtype_size(t->index_dtype) + sresid_dtype_size(s->value_dtype) +
                      (t->lo ? 4 : 0));
}

sresid_status sresid_sparse_info_get(const sresid_sparse *sparse, size_t i,
                                     sresid_sparse_info *info)
{
    if (!sparse || !info)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_info_get: NULL argument");
    if (info->size < offsetof(sresid_sparse_info, error) + sizeof info->error)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_sparse_info_get: info->size %zu is too small", info->size);
    if (i != SRESID_ALL && i >= sparse->count)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_sparse_info_get: tensor %zu out of range (%zu tensors)", i,
                            sparse->count);
    sresid_sparse_info v = {.size = info->size, .value_dtype = sparse->value_dtype};
    if (i == SRESID_ALL) {
        for (size_t j = 0; j < sparse->count; j++) {
            const sresid__sp_tensor *t = &sparse->t[j];
            v.numel += t->numel;
            v.kept += t->kept;
            v.bytes += stored_bytes(sparse, t);
            v.dense_bytes += (uint64_t)t->numel * sresid_dtype_size(t->base_dtype);
        }
        v.energy = sparse->energy;
        v.kept_energy = sparse->kept_energy;
        v.error = sparse->error;
    } else {
        const sresid__sp_tensor *t = &sparse->t[i];
        v.name = t->name;
        v.shape = t->shape;
        v.ndim = t->ndim;
        v.base_dtype = t->base_dtype;
        v.index_dtype = t->index_dtype;
        v.numel = t->numel;
        v.kept = t->kept;
        v.bytes = stored_bytes(sparse, t);
        v.dense_bytes = (uint64_t)t->numel * sresid_dtype_size(t->base_dtype);
        v.energy = t->energy;
        v.kept_energy = t->kept_energy;
        v.error = t->error;
    }
    v.ratio = v.bytes ? (double)v.dense_bytes / (double)v.bytes : INFINITY;
    memcpy(info, &v, info->size < sizeof v ? info->size : sizeof v);
    return SRESID_OK;
}

sresid_status sresid_sparse_entries(const sresid_sparse *sparse, size_t i, uint64_t *positions,
                                    float *values, uint64_t count)
{
    if (!sparse)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_entries: sparse is NULL");
    if (i >= sparse->count)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "sresid_sparse_entries: tensor %zu out of range (%zu tensors)", i,
                            sparse->count);
    const sresid__sp_tensor *t = &sparse->t[i];
    if (count < t->kept)
        return sresid__fail(SRESID_ERR_SHAPE,
                            "sresid_sparse_entries: '%s' has %llu entries but the buffers hold "
                            "%llu",
                            t->name, (unsigned long long)t->kept, (unsigned long long)count);
    if (t->kept && (!positions || !values))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_sparse_entries: NULL buffer");
    sresid__sp_cursor c;
    sresid__sparse_cursor(&c, t->idx, t->index_dtype, t->kept);
    int why;
    for (uint64_t j = 0; j < t->kept; j++) {
        sresid__sparse_next(&c, &positions[j], &why); /* validated when built or loaded */
        values[j] = sresid__sparse_value(sparse->value_dtype, t->val, j);
    }
    return SRESID_OK;
}
