/* Amplitude scores: which to train (selection rules), the dynamic rule's
 * drop-and-grow update, and the share of a fine-tune's residual that
 * amplitude-only scores can capture.
 *
 * Every choice of "the largest" goes through the mask module's top-k
 * (sresid_mask_top: linear time, ties to the lower index), so selection,
 * drop-and-grow and the share's fractions count and break ties alike. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amp/amp.h"
#include "util/blas.h"
#include "util/jobs.h"

#define SELECT_FLAGS SRESID_SELECT_PER_TENSOR

/* The mask functions' segments: one per tensor, or none (all scores). */
static void segments(const sresid_amp *amp, uint32_t flags, const uint64_t **offsets,
                     size_t *nseg)
{
    bool per = flags & SRESID_SELECT_PER_TENSOR;
    *offsets = per ? amp->offsets : NULL;
    *nseg = per ? amp->count : 0;
}

/* Tensor holding score i (offsets are sorted). */
static size_t tensor_of(const sresid_amp *amp, uint64_t i)
{
    size_t lo = 0, hi = amp->count; /* offsets[lo] <= i < offsets[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (amp->offsets[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* |s - s0| for every score, or NONFINITE naming the first score (and its
 * tensor) that is NaN or Inf or whose difference overflows. */
static sresid_status score_change(const sresid_amp *amp, const char *fn, float **out)
{
    uint64_t n = amp->nscores;
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (!d)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: cannot allocate %llu floats", fn,
                            (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        d[i] = fabsf(amp->scores[i] - amp->s0[i]);
        if (!isfinite(d[i])) {
            size_t t = tensor_of(amp, i);
            sresid_status st = sresid__fail(
                SRESID_ERR_NONFINITE,
                "%s: score %llu (entry %llu of tensor '%s') is %g, not finite%s", fn,
                (unsigned long long)i, (unsigned long long)(i - amp->offsets[t]),
                sresid__amp_name(amp, t), (double)amp->scores[i],
                isfinite(amp->scores[i]) ? " (s - s0 overflows)" : "");
            free(d);
            return st;
        }
    }
    *out = d;
    return SRESID_OK;
}

static sresid_status check_fraction(double f, const char *fn, const char *what)
{
    if (!(f >= 0 && f <= 1))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s %g is not in [0, 1]", fn, what, f);
    return SRESID_OK;
}

/* ---- selection rules ---- */

sresid_status sresid_amp_select(const sresid_amp *amp, int32_t rule, double fraction,
                                const sresid_select_opts *opts, sresid_mask **out)
{
    static const char fn[] = "sresid_amp_select";
    if (!amp || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, !amp ? "amp" : "out");
    sresid_select_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (o.flags & ~SELECT_FLAGS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)(o.flags & ~SELECT_FLAGS));
    if (rule < SRESID_RULE_MAGNITUDE || rule > SRESID_RULE_WARMUP)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown rule %d", fn, (int)rule);
    if ((st = check_fraction(fraction, fn, "fraction")))
        return st;
    if (rule == SRESID_RULE_GRADIENT && !o.saliency)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: the gradient rule needs opts->saliency (%llu floats)", fn,
                            (unsigned long long)amp->nscores);

    const uint64_t *offs;
    size_t nseg;
    segments(amp, o.flags, &offs, &nseg);
    uint64_t n = amp->nscores;
    sresid_mask *m = NULL;
    float *change = NULL;
    switch (rule) {
    case SRESID_RULE_MAGNITUDE:
        st = sresid_mask_top(amp->s0, n, fraction, offs, nseg, &m);
        break;
    case SRESID_RULE_RANDOM:
        st = sresid_mask_random(n, fraction, o.seed, offs, nseg, &m);
        break;
    case SRESID_RULE_GRADIENT:
        st = sresid_mask_top(o.saliency, n, fraction, offs, nseg, &m);
        if (st == SRESID_ERR_NONFINITE)
            return sresid__fail(st, "%s: saliency: %s", fn, sresid_last_error());
        break;
    default: /* WARMUP */
        if ((st = score_change(amp, fn, &change)))
            return st;
        st = sresid_mask_top(change, n, fraction, offs, nseg, &m);
        free(change);
        break;
    }
    if (st)
        return sresid__fail(st, "%s: %s", fn, sresid_last_error());
    *out = m;
    return SRESID_OK;
}

/* ---- dynamic rule: drop and grow ---- */

sresid_status sresid_amp_drop_grow(sresid_amp *amp, sresid_mask *mask, double share,
                                   const float *saliency, uint32_t flags, sresid_mask *changed)
{
    static const char fn[] = "sresid_amp_drop_grow";
    if (!amp || !mask || !saliency)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !amp ? "amp" : !mask ? "mask" : "saliency");
    if (flags & ~SELECT_FLAGS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)(flags & ~SELECT_FLAGS));
    sresid_status st = check_fraction(share, fn, "share");
    if (st)
        return st;
    uint64_t n = amp->nscores;
    if (sresid_mask_size(mask) != n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: mask has %llu entries, the amp %llu scores", fn,
                            (unsigned long long)sresid_mask_size(mask), (unsigned long long)n);
    if (changed && sresid_mask_size(changed) != n)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: changed has %llu entries, the amp %llu scores",
                            fn, (unsigned long long)sresid_mask_size(changed),
                            (unsigned long long)n);
    if (changed == mask)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: changed must not be mask", fn);

    /* Everything that can fail comes before the mask changes: the keep
     * values, a mask of our own when the caller wants no changed mask. */
    float *keep = NULL;
    if ((st = score_change(amp, fn, &keep)))
        return st;
    sresid_mask *ch = changed;
    if (!ch && (st = sresid_mask_create(n, 0, &ch))) {
        free(keep);
        return sresid__fail(st, "%s: %s", fn, sresid_last_error());
    }
    const uint64_t *offs;
    size_t nseg;
    segments(amp, flags, &offs, &nseg);
    st = sresid_mask_drop_grow(mask, keep, saliency, n, share, offs, nseg, ch);
    free(keep);
    if (st) {
        if (ch != changed)
            sresid_mask_free(ch);
        return sresid__fail(st, "%s: %s", fn, sresid_last_error());
    }

    /* Dropped = changed and now inactive: back to s0, so W no longer moves
     * with them. Grown scores already equal s0 (inactive scores never move). */
    const uint64_t *cw = sresid__mask_words(ch), *mw = sresid__mask_words(mask);
    for (uint64_t w = 0; w < (n + 63) / 64; w++) {
        uint64_t bits = cw[w] & ~mw[w];
        while (bits) {
            uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(bits);
            amp->scores[i] = amp->s0[i];
            bits &= bits - 1;
        }
    }
    if (ch != changed)
        sresid_mask_free(ch);
    return SRESID_OK;
}

/* ---- captured share ---- */

/* One tensor's share job: its residual energy and D = U^T R V (or its
 * diagonal) written into its segment of the D vector. */
typedef struct share_run {
    const sresid_amp *amp;
    const sresid_model *trained;
    const size_t *tidx;   /* trained index of each amp tensor */
    double *energy;       /* count */
    double *dsq;          /* count: |D_t|^2 */
    float *d;             /* nscores */
} share_run;

static sresid_status alloc_floats(size_t n, const char *what, float **out)
{
    size_t total;
    if (__builtin_add_overflow(n, (size_t)SRESID__BLAS_SLACK, &total) ||
        total > SIZE_MAX / sizeof(float))
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_amp_share: %s is too large", what);
    float *p = malloc(total * sizeof(float));
    if (!p)
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_amp_share: cannot allocate %zu floats for %s",
                            total, what);
    *out = p;
    return SRESID_OK;
}

static sresid_status share_tensor(share_run *u, size_t t)
{
    const sresid_amp *amp = u->amp;
    const sresid__amp_tensor *at = &amp->t[t];
    const char *name = sresid__amp_name(amp, t);
    const int64_t m = at->rows, n = at->cols, r = at->rank;
    const size_t mn = (size_t)m * (size_t)n; /* the amp read it whole: it fits */
    float *w0 = NULL, *res = NULL, *tmp = NULL, *core = NULL;
    sresid_status st;
    if ((st = alloc_floats(mn, "the base matrix", &w0)) ||
        (st = alloc_floats(mn, "the residual", &res)) ||
        (st = alloc_floats((size_t)m * (size_t)r, "R V", &tmp)))
        goto out;
    if ((st = sresid_model_read_f32(amp->base, at->index, w0, mn))) {
        st = sresid__fail(st, "sresid_amp_share: base tensor '%s': %s", name, sresid_last_error());
        goto out;
    }
    if ((st = sresid_model_read_f32(u->trained, u->tidx[t], res, mn))) {
        st = sresid__fail(st, "sresid_amp_share: trained tensor '%s': %s", name,
                          sresid_last_error());
        goto out;
    }
    double e = 0;
    for (size_t i = 0; i < mn; i++) {
        res[i] -= w0[i];
        e += (double)res[i] * res[i];
    }
    if (!isfinite(e)) {
        st = sresid__fail(SRESID_ERR_NONFINITE,
                          "sresid_amp_share: the residual of tensor '%s' holds NaN or Inf", name);
        goto out;
    }
    free(w0);
    w0 = NULL;

    /* R V (m x r), then U^T (R V): the r x r core, or only its diagonal */
    sresid__sgemm(0, 0, m, r, n, 1.0f, res, n, at->v, r, 0.0f, tmp, r);
    float *dt = u->d + at->offset;
    double dsq = 0;
    if (amp->layout == SRESID_AMP_CORE) {
        if ((st = alloc_floats((size_t)r * (size_t)r, "the core", &core)))
            goto out;
        sresid__sgemm(1, 0, r, r, m, 1.0f, at->u, r, tmp, r, 0.0f, core, r);
        memcpy(dt, core, (size_t)r * (size_t)r * sizeof *dt);
    } else {
        for (int64_t j = 0; j < r; j++) {
            double s = 0;
            for (int64_t i = 0; i < m; i++)
                s += (double)at->u[i * r + j] * tmp[i * r + j];
            dt[j] = (float)s;
        }
    }
    for (uint64_t j = 0; j < at->count; j++)
        dsq += (double)dt[j] * dt[j];
    if (!isfinite(dsq)) {
        st = sresid__fail(SRESID_ERR_NONFINITE,
                          "sresid_amp_share: U^T R V of tensor '%s' overflows float32", name);
        goto out;
    }
    u->energy[t] = e;
    u->dsq[t] = dsq;
    st = SRESID_OK;
out:
    free(w0);
    free(res);
    free(tmp);
    free(core);
    return st;
}

static sresid_status share_job(void *ctx, size_t t, int worker)
{
    (void)worker;
    return share_tensor(ctx, t);
}

static const char *share_label(void *ctx, size_t t)
{
    return sresid__amp_name(((share_run *)ctx)->amp, t);
}

/* share_tensor over every tensor through the job engine, on up to
 * sresid_get_threads() threads, the largest products first; one unit of
 * the thread's monitor a tensor. */
static sresid_status share_all(share_run *u)
{
    const sresid_amp *amp = u->amp;
    uint64_t *cost = malloc((amp->count ? amp->count : 1) * sizeof *cost);
    if (!cost)
        return sresid__fail(SRESID_ERR_NOMEM, "sresid_amp_share: out of memory");
    for (size_t t = 0; t < amp->count; t++) /* R V dominates: m n r */
        cost[t] = (uint64_t)amp->t[t].rows * (uint64_t)amp->t[t].cols * (uint64_t)amp->t[t].rank;
    sresid__watch w;
    sresid__watch_begin(&w, "sresid_amp_share", NULL, NULL, amp->count);
    sresid__plan p = {.njobs = amp->count, .cost = cost, .run = share_job, .ctx = u,
                      .watch = &w, .label = share_label};
    sresid__plan_threads(&p, sresid_get_threads());
    sresid_status st = sresid__plan_run(&p);
    free(cost);
    return st;
}

/* For one fraction: the captured energy of each tensor and in total when the
 * scores are chosen by |x| (s0 or D) with the mask module's top-k. */
static sresid_status fraction_rows(const sresid_amp *amp, const float *x, const float *d,
                                   double f, uint32_t flags, double *sum /* count + 1 */)
{
    const uint64_t *offs;
    size_t nseg;
    segments(amp, flags, &offs, &nseg);
    sresid_mask *m = NULL;
    sresid_status st = sresid_mask_top(x, amp->nscores, f, offs, nseg, &m);
    if (st)
        return st;
    const uint64_t *w = sresid__mask_words(m);
    double total = 0;
    for (size_t t = 0; t < amp->count; t++) {
        double s = 0;
        for (uint64_t i = amp->offsets[t]; i < amp->offsets[t + 1]; i++)
            if (w[i / 64] >> (i % 64) & 1)
                s += (double)d[i] * d[i];
        sum[t] = s;
        total += s;
    }
    sum[amp->count] = total;
    sresid_mask_free(m);
    return SRESID_OK;
}

sresid_status sresid_amp_share(const sresid_amp *amp, const sresid_model *trained,
                               const double *fractions, size_t nfractions, uint32_t flags,
                               double *energy, double *captured, double *captured_magnitude,
                               double *captured_oracle)
{
    static const char fn[] = "sresid_amp_share";
    if (!amp || !trained)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !amp ? "amp" : "trained");
    if (nfractions && !fractions)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: fractions is NULL", fn);
    if (flags & ~SELECT_FLAGS)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn,
                            (unsigned)(flags & ~SELECT_FLAGS));
    const size_t rows = amp->count + 1;
    size_t cells;
    if (__builtin_mul_overflow(rows, nfractions, &cells) || cells > SIZE_MAX / sizeof(double))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %zu fractions is too many", fn,
                            nfractions);
    for (size_t k = 0; k < nfractions; k++) {
        char what[48];
        snprintf(what, sizeof what, "fractions[%zu]", k);
        sresid_status st = check_fraction(fractions[k], fn, what);
        if (st)
            return st;
    }

    sresid_status st = SRESID_ERR_NOMEM;
    share_run u = {.amp = amp, .trained = trained};
    size_t *tidx = malloc(amp->count * sizeof *tidx);
    double *e = malloc(rows * sizeof *e), *dsq = malloc(rows * sizeof *dsq);
    double *cm = malloc((cells ? cells : 1) * sizeof *cm);
    double *co = malloc((cells ? cells : 1) * sizeof *co);
    double *sum = malloc(rows * sizeof *sum);
    float *d = malloc((amp->nscores ? amp->nscores : 1) * sizeof *d);
    if (!tidx || !e || !dsq || !cm || !co || !sum || !d) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: cannot allocate the D vector (%llu floats)", fn,
                          (unsigned long long)amp->nscores);
        goto out;
    }
    if ((st = sresid__amp_pair(amp, trained, "sresid_amp_share", tidx)))
        goto out;
    u.tidx = tidx;
    u.energy = e;
    u.dsq = dsq;
    u.d = d;
    if ((st = share_all(&u)))
        goto out;

    /* totals in tensor order: the same sums whatever the thread count */
    double etot = 0, dtot = 0;
    for (size_t t = 0; t < amp->count; t++) {
        etot += e[t];
        dtot += dsq[t];
    }
    e[amp->count] = etot;
    dsq[amp->count] = dtot;
    for (size_t k = 0; k < nfractions; k++) {
        for (int which = 0; which < 2; which++) {
            if (!(which ? captured_oracle : captured_magnitude))
                continue;
            st = fraction_rows(amp, which ? d : amp->s0, d, fractions[k], flags, sum);
            if (st) {
                st = sresid__fail(st, "%s: %s", fn, sresid_last_error());
                goto out;
            }
            double *dst = which ? co : cm;
            for (size_t t = 0; t < rows; t++)
                dst[t * nfractions + k] = e[t] > 0 ? sum[t] / e[t] : NAN;
        }
    }

    /* all done: the outputs */
    if (energy)
        memcpy(energy, e, rows * sizeof *e);
    if (captured)
        for (size_t t = 0; t < rows; t++)
            captured[t] = e[t] > 0 ? dsq[t] / e[t] : NAN;
    if (captured_magnitude && cells)
        memcpy(captured_magnitude, cm, cells * sizeof *cm);
    if (captured_oracle && cells)
        memcpy(captured_oracle, co, cells * sizeof *co);
    st = SRESID_OK;
out:
    free(tidx);
    free(e);
    free(dsq);
    free(cm);
    free(co);
    free(sum);
    free(d);
    return st;
}
