/* Streaming top-k selection by |x|: exact, linear time, memory fixed.
 *
 * For non-negative floats the bit pattern orders like the value, and -0
 * becomes +0 once the sign bit is cleared. The 31 bits of |x| are split:
 *  pass 0 counts the entries of 2^16 buckets by bits 30..15 (and, for an
 *         energy query, sums their x^2); a walk down from the largest bucket
 *         finds the one bucket hi where the k-th value lies and what lies
 *         above it;
 *  pass 1 counts the entries of bucket hi by bits 14..0. Each of those 2^15
 *         slots is one exact float value, so a walk down them settles the
 *         k-th value p: threshold = p, and take_equal = how many entries
 *         equal to p are kept (the first ones in stream order).
 * k == 0 (or an energy query that needs nothing) is settled by pass 0
 * alone: threshold = +Inf, which nothing finite reaches.
 *
 * Energy queries: the smallest k whose k largest squares sum (in double) to
 * at least share * total. Pass 0 sums the squares of each bucket exactly
 * (integers of 128 bits), so that a stream split into parts gives the same
 * sums; the walk then adds the buckets in double. Share 0 needs nothing; share 1 needs every
 * non-zero entry (rounding may not spoil that one); zeros are never needed.
 * Within a run of c equal values p the running sum grows by p^2 a value. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/topk.h"
#include "util/util.h"

#define NHI (1u << 16) /* pass 0 buckets: bits 30..15 */
#define NLO (1u << 15) /* pass 1 slots: bits 14..0 */

static inline uint32_t abs_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b & 0x7FFFFFFFu;
}

static inline float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static sresid_status init(sresid__sel *s, uint64_t k, double share)
{
    memset(s, 0, sizeof *s);
    s->k = k;
    s->energy = share;
    s->count = calloc(NHI, sizeof *s->count);
    if (share >= 0) {
        s->esum = calloc(NHI, sizeof *s->esum);
        s->exact = calloc(NHI, sizeof *s->exact);
    }
    if (!s->count || (share >= 0 && (!s->esum || !s->exact))) {
        sresid__sel_free(s);
        return sresid__fail(SRESID_ERR_NOMEM, "top-k selection: no memory for %u buckets",
                            NHI);
    }
    s->threshold = INFINITY;
    return SRESID_OK;
}

sresid_status sresid__sel_init(sresid__sel *s, uint64_t k)
{
    return init(s, k, -1.0);
}

sresid_status sresid__sel_init_energy(sresid__sel *s, double share)
{
    /* callers validate; keep the walk sane whatever comes */
    if (!(share >= 0))
        share = 0;
    if (share > 1)
        share = 1;
    return init(s, 0, share);
}

void sresid__sel_free(sresid__sel *s)
{
    if (!s)
        return;
    free(s->count);
    free(s->esum);
    free(s->exact);
    s->count = NULL;
    s->esum = NULL;
    s->exact = NULL;
}

sresid_status sresid__sel_fork(const sresid__sel *s, sresid__sel *part)
{
    sresid_status st = init(part, s->k, s->esum ? s->energy : -1.0);
    if (st)
        return st;
    part->pass = s->pass;
    part->hi = s->hi;
    return SRESID_OK;
}

void sresid__sel_merge(sresid__sel *s, sresid__sel *part)
{
    uint32_t nb = s->pass == 0 ? NHI : NLO;
    for (uint32_t b = 0; b < nb; b++)
        s->count[b] += part->count[b];
    if (s->pass == 0) {
        if (s->exact && part->exact)
            for (uint32_t b = 0; b < NHI; b++)
                s->exact[b] += part->exact[b];
        s->total += part->total;
        s->zeros += part->zeros;
    }
    /* ready for the next pass of the same query */
    memset(part->count, 0, NHI * sizeof *part->count);
    part->total = part->zeros = 0;
    if (part->exact)
        memset(part->exact, 0, NHI * sizeof *part->exact);
}

void sresid__sel_follow(sresid__sel *part, const sresid__sel *s)
{
    part->pass = s->pass;
    part->hi = s->hi;
}

void sresid__sel_feed(sresid__sel *s, const float *x, size_t n)
{
    uint64_t *count = s->count;
    if (s->pass == 0) {
        uint64_t zeros = 0;
        if (s->exact) {
            /* x^2 = M^2 2^(2 E' - 300), with M the 24-bit significand and
             * E' = max(E, 1) fixed within a bucket: sums of M^2 are exact
             * in 128 bits, whatever the order or split of the stream */
            unsigned __int128 *exact = s->exact;
            for (size_t i = 0; i < n; i++) {
                uint32_t b = abs_bits(x[i]);
                uint64_t m = (b & 0x7FFFFFu) | (b >> 23 ? 0x800000u : 0);
                count[b >> 15]++;
                exact[b >> 15] += m * m;
                zeros += b == 0;
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                uint32_t b = abs_bits(x[i]);
                count[b >> 15]++;
                zeros += b == 0;
            }
        }
        s->total += n;
        s->zeros += zeros;
    } else if (s->pass == 1) {
        const uint32_t hi = s->hi;
        for (size_t i = 0; i < n; i++) {
            uint32_t b = abs_bits(x[i]);
            if (b >> 15 == hi)
                count[b & (NLO - 1)]++;
        }
    }
}

/* Settled with nothing kept. */
static void settle_none(sresid__sel *s)
{
    s->k = 0;
    s->threshold = INFINITY;
    s->take_equal = 0;
    s->equal = 0;
    s->above = 0;
    s->above_energy = 0;
    s->pass = 2;
}

/* End of pass 0 for a count query of s->k (already capped, >= 1): find the
 * bucket of the k-th value. */
static void locate_count(sresid__sel *s)
{
    uint64_t above = 0;
    double acc = 0;
    for (uint32_t b = NHI; b-- > 0;) {
        uint64_t c = s->count[b];
        if (!c)
            continue;
        if (above + c >= s->k) {
            s->hi = b;
            break;
        }
        above += c;
        if (s->esum)
            acc += s->esum[b];
    }
    s->above = above;
    s->above_energy = acc;
}

static void end_pass0(sresid__sel *s)
{
    if (s->esum) {
        for (uint32_t b = 0; b < NHI; b++) {
            int e = (int)(b >> 8); /* the exponent field: bits 30..23 of |x| */
            s->esum[b] = ldexp((double)s->exact[b], 2 * (e ? e : 1) - 300);
        }
        /* largest first, so that the walk below adds in the same order */
        double e = 0;
        for (uint32_t b = NHI; b-- > 0;)
            e += s->esum[b];
        s->total_energy = e;
    }
    if (s->energy < 0) {
        if (s->k > s->total)
            s->k = s->total;
        if (s->k == 0) {
            settle_none(s);
            return;
        }
        locate_count(s);
        s->pass = 1;
        return;
    }

    /* energy query */
    const uint64_t nonzero = s->total - s->zeros;
    s->target = s->energy * s->total_energy;
    if (!(s->target > 0) || nonzero == 0) {
        settle_none(s);
        return;
    }
    if (s->energy >= 1) {
        /* every non-zero entry: a count query, the zeros coming last */
        s->k = nonzero;
        s->energy = -1;
        locate_count(s);
        s->pass = 1;
        return;
    }
    uint64_t above = 0;
    double acc = 0;
    for (uint32_t b = NHI; b-- > 0;) {
        if (!s->count[b])
            continue;
        if (acc + s->esum[b] >= s->target) {
            s->hi = b;
            s->above = above;
            s->above_energy = acc;
            s->pass = 1;
            return;
        }
        above += s->count[b];
        acc += s->esum[b];
    }
    /* rounding kept the target out of reach: every non-zero entry */
    s->k = nonzero;
    s->energy = -1;
    locate_count(s);
    s->pass = 1;
}

/* End of pass 1: walk the exact values of bucket hi, largest first. */
static void end_pass1(sresid__sel *s)
{
    const uint64_t *count = s->count;
    uint64_t k0 = s->above;
    double acc = s->above_energy;
    uint32_t last = UINT32_MAX; /* smallest non-zero value seen (energy fallback) */
    uint64_t last_count = 0, last_k0 = 0;
    double last_acc = 0;
    for (uint32_t lo = NLO; lo-- > 0;) {
        uint64_t c = count[lo];
        if (!c)
            continue;
        const uint32_t bits = s->hi << 15 | lo;
        const float p = from_bits(bits);
        if (s->energy < 0) {
            if (k0 + c >= s->k) {
                s->threshold = p;
                s->equal = c;
                s->take_equal = s->k - k0;
                s->above = k0;
                s->above_energy = acc;
                s->pass = 2;
                return;
            }
        } else {
            if (bits == 0)
                break; /* zeros are never needed */
            const double p2 = (double)p * p;
            if (acc + (double)c * p2 >= s->target) {
                /* smallest m in [1, c] with acc + m p^2 >= target */
                double m = ceil((s->target - acc) / p2);
                uint64_t mi = m < 1 ? 1 : m > (double)c ? c : (uint64_t)m;
                while (mi > 1 && acc + (double)(mi - 1) * p2 >= s->target)
                    mi--;
                while (mi < c && acc + (double)mi * p2 < s->target)
                    mi++;
                s->k = k0 + mi;
                s->threshold = p;
                s->equal = c;
                s->take_equal = mi;
                s->above = k0;
                s->above_energy = acc;
                s->pass = 2;
                return;
            }
            last = bits;
            last_count = c;
            last_k0 = k0;
            last_acc = acc;
        }
        k0 += c;
        if (s->esum)
            acc += (double)c * ((double)p * p);
    }
    if (last != UINT32_MAX) {
        /* the bucket sum reached the target, its values fell short by
         * rounding: every non-zero value of the bucket is needed */
        s->k = last_k0 + last_count;
        s->threshold = from_bits(last);
        s->equal = last_count;
        s->take_equal = last_count;
        s->above = last_k0;
        s->above_energy = last_acc;
        s->pass = 2;
        return;
    }
    /* not reached for a consistent stream; keep the cursor harmless */
    settle_none(s);
}

void sresid__sel_next(sresid__sel *s)
{
    if (s->pass == 0) {
        end_pass0(s);
        if (s->pass == 1)
            memset(s->count, 0, NLO * sizeof *s->count);
    } else if (s->pass == 1) {
        end_pass1(s);
    }
}

uint64_t sresid__fraction_count(double fraction, uint64_t n)
{
    double k = floor(fraction * (double)n + 0.5);
    if (!(k > 0))
        return 0;
    /* (double)n may round above n for n beyond 2^53 */
    if (k >= 18446744073709551616.0 || (uint64_t)k > n)
        return n;
    return (uint64_t)k;
}
