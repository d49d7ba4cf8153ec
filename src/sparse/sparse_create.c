/* Sparse residuals: the kept entries of a residual, selected by one of five
 * rules, with the error report of the selection.
 *
 * Every rule streams the residual block by block (base and trained read as
 * float32, R = trained - base in float32, exactly as sresid_residual_read).
 * The global rules (TOP, ENERGY) run the top-k selection of util/topk.c
 * over the whole stream, in pairing order then flat position: pass 0 and,
 * when the bucket does not settle the query, pass 1 count (each worker
 * counts its tensors into its own part; the parts are merged); when the
 * entries equal to the threshold are only partly kept, a tie pass counts
 * them per tensor, so that the first ones in stream order are kept; a last
 * pass collects, tensor by tensor on any worker.
 * With SRESID_SPARSE_IN_MEMORY (or for one tensor of TOP_PER_TENSOR) the
 * residual read by pass 0 is kept and the later passes read it back; the
 * selection sees the same values, so the result is the same. The in-memory
 * copy is optional: when it cannot be allocated the passes stream
 * instead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sparse/sparse.h"
#include "util/jobs.h"
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

/* ---- building ----
 * Jobs are tensors (pairs), run through the job engine: the counting
 * passes of the global rules (each worker feeds its own part of the
 * selection, merged after the pass), the tie pass, and the collection
 * (describe, then collect). Each job writes only its own tensor's entries
 * and figures, so the result is the same for any thread count. */

typedef struct worker {
    float *bb, *tb, *rb;   /* one block each */
    float *tcache;         /* TOP_PER_TENSOR: the residual of the job's tensor, or NULL */
    size_t tcache_cap;     /* floats */
    bool tcached;          /* tcache holds the job's tensor */
    sresid__sel part;      /* this worker's share of a global counting pass */
    bool have_part;
    uint64_t *pos;         /* kept positions of the tensor being collected */
    unsigned char *val;    /* their stored values */
    unsigned char *low;    /* their F32 low parts */
    uint64_t cap;
} worker;

enum phase { PHASE_COUNT, PHASE_TIES, PHASE_COLLECT };

typedef struct builder {
    const sresid_residual *res;
    const sresid_model *base, *trained;
    const sresid_sparse_opts *o;
    sresid_sparse *sp;
    worker *w;
    int nw;
    enum phase phase;
    int passes_left;          /* passes still planned, for the monitor's units */
    sresid__watch watch;
    float *cache;          /* IN_MEMORY: residual of every tensor, or NULL */
    uint64_t *coff;        /* offsets into cache */
    bool cached;           /* the cache is filled */
    float threshold;       /* settled global selection (PHASE_TIES, PHASE_COLLECT) */
    uint64_t *equal;       /* PHASE_TIES: entries at the threshold, per tensor */
    uint64_t *equal_left;  /* PHASE_COLLECT: how many of them each tensor keeps */
    double (*sums)[3];     /* per tensor: see collect */
} builder;

static const sresid__tensor *pair_tensor(const builder *bd, size_t i, bool trained)
{
    size_t bi, ti;
    sresid_residual_pair(bd->res, i, &bi, &ti);
    return trained ? &bd->trained->tensors[ti] : &bd->base->tensors[bi];
}

/* Try to keep the residual of every tensor in memory; silently stream
 * when it does not fit. */
static void cache_all(builder *bd, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (!sresid__add_u64(total, (uint64_t)pair_tensor(bd, i, false)->numel, &total))
            return;
    if (total == 0 || total > SIZE_MAX / sizeof(float))
        return;
    bd->coff = malloc((n + 1) * sizeof *bd->coff);
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
    for (size_t i = 0; i < n; i++)
        bd->coff[i + 1] = bd->coff[i] + (uint64_t)pair_tensor(bd, i, false)->numel;
}

/* Try to keep tensor i's residual in the worker's own cache (TOP_PER_TENSOR). */
static void cache_one(const builder *bd, worker *w, size_t i)
{
    size_t n = (size_t)pair_tensor(bd, i, false)->numel;
    w->tcached = false;
    if (n > w->tcache_cap) {
        free(w->tcache);
        w->tcache = n <= SIZE_MAX / sizeof(float) ? malloc(n * sizeof(float)) : NULL;
        w->tcache_cap = w->tcache ? n : 0;
    }
}

/* The residual of elements [off, off + len) of pair i (len <= BLOCK) in *r.
 * need_bt: w->bb and w->tb must hold base and trained too. */
static sresid_status get_block(const builder *bd, worker *w, size_t i, uint64_t off, size_t len,
                               bool need_bt, const float **r)
{
    float *cache = NULL;
    bool filled = false;
    if (bd->cache) {
        cache = bd->cache + bd->coff[i];
        filled = bd->cached;
    } else if (w->tcache && w->tcache_cap >= (size_t)pair_tensor(bd, i, false)->numel &&
               bd->o->rule == SRESID_SPARSE_TOP_PER_TENSOR) {
        cache = w->tcache;
        filled = w->tcached;
    }
    if (cache && filled && !need_bt) {
        *r = cache + off;
        return SRESID_OK;
    }
    const sresid__tensor *b = pair_tensor(bd, i, false), *t = pair_tensor(bd, i, true);
    sresid_status st;
    if ((st = sresid__tensor_to_f32(bd->base, b, (size_t)off, len, w->bb)) ||
        (st = sresid__tensor_to_f32(bd->trained, t, (size_t)off, len, w->tb)))
        return st;
    for (size_t j = 0; j < len; j++) {
        float x = w->tb[j] - w->bb[j];
        if (!isfinite(x))
            return sresid__fail(SRESID_ERR_NONFINITE,
                                "sresid_sparse_create: residual of '%s' is not finite at "
                                "position %llu (base %g, trained %g)",
                                b->name, (unsigned long long)(off + j), (double)w->bb[j],
                                (double)w->tb[j]);
        w->rb[j] = x;
    }
    if (cache && !filled)
        memcpy(cache + off, w->rb, len * sizeof(float));
    *r = w->rb;
    return SRESID_OK;
}

/* Every block of pair i's residual, in order, through each(ctx, r, len). */
static sresid_status walk(const builder *bd, worker *w, size_t i,
                          void (*each)(void *ctx, const float *r, size_t len), void *ctx)
{
    uint64_t n = (uint64_t)pair_tensor(bd, i, false)->numel;
    for (uint64_t off = 0; off < n; off += BLOCK) {
        size_t len = n - off < BLOCK ? (size_t)(n - off) : BLOCK;
        const float *r;
        if (sresid__job_stopping())
            return sresid__job_stopped();
        sresid_status st = get_block(bd, w, i, off, len, false, &r);
        if (st)
            return st;
        each(ctx, r, len);
    }
    return SRESID_OK;
}

static void feed_block(void *sel, const float *r, size_t len)
{
    sresid__sel_feed(sel, r, len);
}

/* One counting pass of a selection over pair i. */
static sresid_status feed(const builder *bd, worker *w, sresid__sel *sel, size_t i)
{
    return walk(bd, w, i, feed_block, sel);
}

typedef struct equal_count {
    float threshold;
    uint64_t n;
} equal_count;

static void count_block(void *ctx, const float *r, size_t len)
{
    equal_count *c = ctx;
    for (size_t j = 0; j < len; j++)
        c->n += fabsf(r[j]) == c->threshold;
}

/* The tie pass: how many entries of pair i lie exactly at the threshold. */
static sresid_status count_equal(const builder *bd, worker *w, size_t i)
{
    equal_count c = {bd->threshold, 0};
    sresid_status st = walk(bd, w, i, count_block, &c);
    bd->equal[i] = c.n;
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

static bool grow(worker *w, uint64_t need, size_t vsize)
{
    if (need <= w->cap)
        return true;
    uint64_t cap = w->cap ? w->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > SIZE_MAX / 8)
        return false;
    uint64_t *p = realloc(w->pos, (size_t)cap * sizeof *p);
    if (p)
        w->pos = p;
    unsigned char *v = p ? realloc(w->val, (size_t)cap * vsize) : NULL;
    if (v)
        w->val = v;
    unsigned char *l = v ? realloc(w->low, (size_t)cap * 4) : NULL;
    if (l)
        w->low = l;
    if (!p || !v || !l)
        return false;
    w->cap = cap;
    return true;
}

/* Collect the kept entries of pair i into out, with its error figures:
 * sums[0] = sum R^2, sums[1] = sum R^2 at kept positions, sums[2] =
 * sum (R - stored)^2. */
static sresid_status collect(const builder *bd, worker *w, size_t i, enum keep_kind how,
                             sresid__sel_cursor *cur, sresid__sp_tensor *out, double sums[3])
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
        if (sresid__job_stopping())
            return sresid__job_stopped();
        sresid_status st = get_block(bd, w, i, off, len, need_bt, &r);
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
            if (!grow(w, kept + 1, vsize))
                return sresid__fail(SRESID_ERR_NOMEM,
                                    "sresid_sparse_create: out of memory for the entries of '%s'",
                                    bt->name);
            unsigned char *dst = w->val + kept * vsize;
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
                any_lo |= low_part(w->bb[j], w->tb[j], x, &lo);
                memcpy(w->low + kept * 4, &lo, 4); /* host order, fixed below */
            }
            w->pos[kept++] = off + j;
            ke += x2;
            double d = (double)x - (double)stored;
            err += d * d;
        }
    }
    out->kept = kept;
    out->index_dtype = sresid__sparse_index_dtype(w->pos, kept);
    size_t isize = sresid_dtype_size(out->index_dtype);
    if (kept) {
        out->idx = malloc((size_t)kept * isize);
        out->val = malloc((size_t)kept * vsize);
        if (!out->idx || !out->val)
            return sresid__fail(SRESID_ERR_NOMEM,
                                "sresid_sparse_create: out of memory for the entries of '%s'",
                                bt->name);
        sresid__sparse_encode(w->pos, kept, out->index_dtype, out->idx);
        memcpy(out->val, w->val, (size_t)kept * vsize);
        if (any_lo) {
            if (!(out->lo = malloc((size_t)kept * 4)))
                return sresid__fail(SRESID_ERR_NOMEM,
                                    "sresid_sparse_create: out of memory for the entries of '%s'",
                                    bt->name);
            for (uint64_t q = 0; q < kept; q++) {
                uint32_t u;
                memcpy(&u, w->low + q * 4, 4);
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
static sresid_status describe(const builder *bd, size_t i, sresid__sp_tensor *t)
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
    sresid_status st = sresid__read_opts(o, sizeof *o, opts, "sresid_sparse_create");
    if (st)
        return st;
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

static enum keep_kind keep_kind_of(int32_t rule)
{
    return rule == SRESID_SPARSE_THRESHOLD ? KEEP_THRESHOLD
           : rule == SRESID_SPARSE_DARE    ? KEEP_DARE
                                           : KEEP_SEL;
}

/* TOP_PER_TENSOR: tensor i's own selection, settled in its worker (with the
 * tensor kept in memory when it fits), then its cursor. */
static sresid_status settle_one(const builder *bd, worker *w, size_t i, sresid__sel_cursor *cur)
{
    uint64_t n = (uint64_t)pair_tensor(bd, i, false)->numel;
    sresid__sel sel;
    sresid_status st = sresid__sel_init(&sel, sresid__fraction_count(bd->o->param, n));
    if (st)
        return st;
    cache_one(bd, w, i);
    st = feed(bd, w, &sel, i);
    w->tcached = w->tcache != NULL;
    sresid__sel_next(&sel);
    if (!st && sel.pass == 1) {
        st = feed(bd, w, &sel, i);
        sresid__sel_next(&sel);
    }
    *cur = (sresid__sel_cursor){sel.threshold, sel.take_equal};
    sresid__sel_free(&sel);
    return st;
}

static sresid_status job(void *ctx, size_t i, int wi)
{
    builder *bd = ctx;
    worker *w = &bd->w[wi];
    if (bd->phase == PHASE_COUNT)
        return feed(bd, w, &w->part, i);
    if (bd->phase == PHASE_TIES)
        return count_equal(bd, w, i);
    sresid__sp_tensor *t = &bd->sp->t[i];
    sresid_status st = describe(bd, i, t);
    sresid__sel_cursor cur = {bd->threshold, bd->equal_left ? bd->equal_left[i] : 0};
    if (!st && bd->o->rule == SRESID_SPARSE_TOP_PER_TENSOR)
        st = settle_one(bd, w, i, &cur);
    if (!st)
        st = collect(bd, w, i, keep_kind_of(bd->o->rule), &cur, t, bd->sums[i]);
    return st;
}

static const char *job_label(void *ctx, size_t i)
{
    builder *bd = ctx;
    return pair_tensor(bd, i, false)->name;
}

static sresid_status run_phase(builder *bd, enum phase phase, const uint64_t *cost)
{
    bd->phase = phase;
    bd->passes_left--;
    sresid__plan p = {.njobs = bd->sp->count, .cost = cost, .workers = bd->nw,
                      .blas_threads = 1, .run = job, .ctx = bd, .watch = &bd->watch,
                      .label = job_label};
    return sresid__plan_run(&p);
}

/* TOP and ENERGY: the counting passes, each worker feeding its own part of
 * the selection; then, when entries equal to the threshold are only partly
 * kept, the tie pass gives each tensor its share of them in stream order. */
static sresid_status settle_global(builder *bd, const uint64_t *cost)
{
    const sresid_sparse_opts *o = bd->o;
    const size_t n = bd->sp->count;
    if (o->flags & SRESID_SPARSE_IN_MEMORY)
        cache_all(bd, n);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (uint64_t)pair_tensor(bd, i, false)->numel;
    sresid__sel sel;
    sresid_status st = o->rule == SRESID_SPARSE_TOP
                           ? sresid__sel_init(&sel, sresid__fraction_count(o->param, total))
                           : sresid__sel_init_energy(&sel, o->param);
    if (st)
        return st;
    for (int k = 0; k < bd->nw && !st; k++)
        if (!(st = sresid__sel_fork(&sel, &bd->w[k].part)))
            bd->w[k].have_part = true;
    while (!st && sel.pass < 2) {
        if ((st = run_phase(bd, PHASE_COUNT, cost)))
            break;
        bd->cached = bd->cache != NULL;
        for (int k = 0; k < bd->nw; k++)
            sresid__sel_merge(&sel, &bd->w[k].part);
        sresid__sel_next(&sel);
        for (int k = 0; k < bd->nw; k++)
            sresid__sel_follow(&bd->w[k].part, &sel);
    }
    bd->threshold = sel.threshold;
    uint64_t take = sel.take_equal;
    bool ties = !st && sel.take_equal < sel.equal;
    sresid__sel_free(&sel);
    if (st)
        return st;
    bd->equal_left = calloc(n ? n : 1, sizeof *bd->equal_left);
    bd->equal = ties ? calloc(n ? n : 1, sizeof *bd->equal) : NULL;
    if (!bd->equal_left || (ties && !bd->equal))
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_sparse_create: out of memory");
    if (ties && (st = run_phase(bd, PHASE_TIES, cost)))
        return st;
    for (size_t i = 0; i < n; i++) { /* the first `take` in stream order */
        uint64_t e = ties ? bd->equal[i] : UINT64_MAX;
        bd->equal_left[i] = ties ? (e < take ? e : take) : UINT64_MAX;
        take -= ties ? bd->equal_left[i] : 0;
    }
    return SRESID_OK;
}

static sresid_status build(builder *bd)
{
    sresid_sparse *sp = bd->sp;
    const size_t n = sp->count;
    const int32_t rule = bd->o->rule;
    uint64_t *cost = malloc((n ? n : 1) * sizeof *cost);
    bd->sums = malloc((n ? n : 1) * sizeof *bd->sums);
    if (!cost || !bd->sums) {
        free(cost);
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_sparse_create: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        cost[i] = (uint64_t)pair_tensor(bd, i, false)->numel;
    /* units: a tensor in a pass; global rules plan for two counting passes
     * and the tie pass, and skip the units of those not needed */
    bool global = rule == SRESID_SPARSE_TOP || rule == SRESID_SPARSE_ENERGY;
    bd->passes_left = global ? 4 : 1;
    sresid__watch_begin(&bd->watch, "sresid_sparse_create", bd->o->monitor,
                        bd->o->monitor_user, (uint64_t)bd->passes_left * n);
    sresid_status st = SRESID_OK;
    if (global)
        st = settle_global(bd, cost);
    if (!st) {
        sresid__watch_skip(&bd->watch, (uint64_t)(bd->passes_left - 1) * n);
        bd->passes_left = 1;
        st = run_phase(bd, PHASE_COLLECT, cost);
    }
    free(cost);
    if (st)
        return st;
    double tot[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) /* in tensor order: the same sums for any thread count */
        for (int q = 0; q < 3; q++)
            tot[q] += bd->sums[i][q];
    sp->energy = tot[0];
    sp->kept_energy = tot[0] > 0 ? tot[1] / tot[0] : NAN;
    sp->error = tot[0] > 0 ? sqrt(tot[2]) / sqrt(tot[0]) : NAN;
    return SRESID_OK;
}

static void builder_free(builder *bd)
{
    for (int k = 0; bd->w && k < bd->nw; k++) {
        worker *w = &bd->w[k];
        free(w->bb);
        free(w->tb);
        free(w->rb);
        free(w->tcache);
        if (w->have_part)
            sresid__sel_free(&w->part);
        free(w->pos);
        free(w->val);
        free(w->low);
    }
    free(bd->w);
    free(bd->cache);
    free(bd->coff);
    free(bd->equal);
    free(bd->equal_left);
    free(bd->sums);
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
    size_t n = sresid_residual_count(residual);
    sresid_sparse *sp = calloc(1, sizeof *sp);
    builder bd = {.res = residual, .base = sresid__residual_base(residual),
                  .trained = sresid__residual_trained(residual), .o = &o, .sp = sp};
    if (sp) {
        sp->rule = o.rule;
        sp->value_dtype = o.dtype;
        sp->param = o.param;
        sp->seed = o.seed;
        sp->count = n;
        sp->t = calloc(n ? n : 1, sizeof *sp->t);
    }
    /* no BLAS here: every thread is a worker */
    int32_t threads = o.threads ? o.threads : sresid_get_threads();
    bd.nw = (size_t)threads < n ? threads : n ? (int)n : 1;
    bd.w = calloc((size_t)bd.nw, sizeof *bd.w);
    bool ok = sp && sp->t && bd.w;
    for (int k = 0; ok && k < bd.nw; k++) {
        worker *w = &bd.w[k];
        w->bb = malloc(BLOCK * sizeof(float));
        w->tb = malloc(BLOCK * sizeof(float));
        w->rb = malloc(BLOCK * sizeof(float));
        ok = w->bb && w->tb && w->rb;
    }
    st = ok ? build(&bd) : sresid__fail(SRESID_ERR_NOMEM, "sresid_sparse_create: out of memory");
    builder_free(&bd);
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
