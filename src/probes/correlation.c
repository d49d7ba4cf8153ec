/* Pearson correlation over the positions where both values are finite.
 *
 * Two passes in double per block of up to BLOCK pairs while it sits in
 * cache (means, then the sums of dx dy, dx^2, dy^2), and blocks joined with
 * the exact pairwise update of the co-moments, so one read of the inputs
 * gives the two-pass result. */
#include <math.h>
#include <string.h>

#include "util/util.h"

#define BLOCK 4096

#if defined(__x86_64__) && defined(__GNUC__) && !defined(SRESID_NO_SIMD)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* 16-byte float loads widened to 32-byte double vectors (see moments.c). */
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
#define LOAD_D(v, p)                  \
    do {                              \
        v4f f_;                       \
        memcpy(&f_, (p), sizeof f_);  \
        (v) = __builtin_convertvector(f_, v4d); \
    } while (0)
#define HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))

typedef struct comoments {
    uint64_t n;
    double mx, my, cxy, cxx, cyy;
} comoments;

/* Block of n >= 1 pairs; false (nothing written) if a value is not finite:
 * the sums in double of up to BLOCK finite floats cannot overflow. */
CLONES static bool block_comoments(const float *x, const float *y, size_t n, comoments *c)
{
    v4d ax = {0}, ay = {0}, bx = {0}, by = {0}, u, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        LOAD_D(u, x + i);
        ax += u;
        LOAD_D(u, x + i + 4);
        bx += u;
        LOAD_D(w, y + i);
        ay += w;
        LOAD_D(w, y + i + 4);
        by += w;
    }
    double sx = HSUM(ax + bx), sy = HSUM(ay + by);
    for (; i < n; i++) {
        sx += x[i];
        sy += y[i];
    }
    if (!isfinite(sx) || !isfinite(sy))
        return false;
    const double dn = (double)n, mx = sx / dn, my = sy / dn;
    const v4d vmx = {mx, mx, mx, mx}, vmy = {my, my, my, my};
    v4d s1x = {0}, s1y = {0}, sxy = {0}, sxx = {0}, syy = {0};
    for (i = 0; i + 4 <= n; i += 4) {
        LOAD_D(u, x + i);
        LOAD_D(w, y + i);
        u -= vmx;
        w -= vmy;
        s1x += u;
        s1y += w;
        sxy += u * w;
        sxx += u * u;
        syy += w * w;
    }
    double t1x = HSUM(s1x), t1y = HSUM(s1y), txy = HSUM(sxy), txx = HSUM(sxx), tyy = HSUM(syy);
    for (; i < n; i++) {
        double dx = (double)x[i] - mx, dy = (double)y[i] - my;
        t1x += dx;
        t1y += dy;
        txy += dx * dy;
        txx += dx * dx;
        tyy += dy * dy;
    }
    /* shift onto the exact block means (sum dx = n delta_x) */
    const double ex = t1x / dn, ey = t1y / dn;
    c->n = n;
    c->mx = mx + ex;
    c->my = my + ey;
    c->cxy = txy - dn * ex * ey;
    c->cxx = fmax(txx - dn * ex * ex, 0);
    c->cyy = fmax(tyy - dn * ey * ey, 0);
    return true;
}

/* a := a + b, exactly the co-moments of the union (Chan et al.). */
static void comoments_merge(comoments *a, const comoments *b)
{
    if (b->n == 0)
        return;
    if (a->n == 0) {
        *a = *b;
        return;
    }
    const double na = (double)a->n, nb = (double)b->n, n = na + nb, f = na * nb / n;
    const double dx = b->mx - a->mx, dy = b->my - a->my;
    a->cxy += b->cxy + dx * dy * f;
    a->cxx += b->cxx + dx * dx * f;
    a->cyy += b->cyy + dy * dy * f;
    a->mx += dx * (nb / n);
    a->my += dy * (nb / n);
    a->n += b->n;
}

typedef struct gather {
    comoments acc;
    size_t len;
    float bx[BLOCK], by[BLOCK];
} gather;

static void gather_flush(gather *g)
{
    comoments c;
    if (g->len && block_comoments(g->bx, g->by, g->len, &c))
        comoments_merge(&g->acc, &c);
    g->len = 0;
}

sresid_status sresid_correlation(const float *x, const float *y, size_t n, double *r)
{
    if (!r)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_correlation: r is NULL");
    if (n > 0 && (!x || !y))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_correlation: %s is NULL",
                            x ? "y" : "x");
    if (n > SIZE_MAX / sizeof(float))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_correlation: n = %zu is too large",
                            n);
    gather g;
    g.acc = (comoments){0};
    g.len = 0;
    for (size_t off = 0; off < n; off += BLOCK) {
        size_t len = n - off < BLOCK ? n - off : BLOCK;
        comoments c;
        if (block_comoments(x + off, y + off, len, &c)) {
            comoments_merge(&g.acc, &c);
            continue;
        }
        /* slow path: keep the pairs where both are finite */
        for (size_t i = off; i < off + len; i++) {
            if (x[i] - x[i] != 0 || y[i] - y[i] != 0)
                continue;
            g.bx[g.len] = x[i];
            g.by[g.len] = y[i];
            if (++g.len == BLOCK)
                gather_flush(&g);
        }
    }
    gather_flush(&g);
    const comoments *a = &g.acc;
    double v = NAN;
    if (a->n >= 2 && a->cxx > 0 && a->cyy > 0) {
        v = a->cxy / (sqrt(a->cxx) * sqrt(a->cyy));
        v = v > 1 ? 1 : v < -1 ? -1 : v; /* rounding */
    }
    *r = v;
    return SRESID_OK;
}
