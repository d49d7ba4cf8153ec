/* Sparsity: how few of the largest |x| hold most of the energy sum x^2.
 *
 * A two-level radix selection: linear time, no sort, no copy of the input.
 * For non-negative floats the bit pattern orders like the value, so
 *  1. one pass puts the finite non-zero |x| into 2^15 buckets by the top 15
 *     bits of their pattern, with the count and the sum of squares of each;
 *     a walk down from the largest bucket finds, for each of the six
 *     figures, the one bucket where its answer lies and what lies above;
 *  2. a second pass counts the values of those buckets (at most six) by
 *     their low 16 bits. Values with the same 31 bits are equal, so a walk
 *     down these counts settles each figure exactly, ties included: within
 *     a run of c equal values p the running sum grows by p^2 per value.
 * Zeros are counted apart: they add to the counts, never to the energy.
 * Squares are computed in double: exact for a float. Memory is fixed
 * (about 0.5 MiB plus 0.5 MiB per bucket of pass 2), whatever the input. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define NHI (1u << 15)   /* first-level buckets: bits 30..16 */
#define NLO (1u << 16)   /* second level: bits 15..0 */
#define ZERO_SLOTS 4     /* zeros apart, over 4 slots so that runs of them do not queue */
#define NQUERY 6

/* Energy queries (the smallest k whose k largest squares reach target) and
 * count queries (the sum of the k largest squares). */
typedef struct query {
    bool energy;
    double target; /* energy: target * total */
    uint64_t k;    /* count: how many; energy: the answer */
    double sum;    /* count: the answer */
    /* where it is settled: bucket, and the count and energy above it */
    uint32_t bucket;
    uint64_t above;
    double acc;
} query;

static inline uint32_t bits_of(float a)
{
    uint32_t b;
    memcpy(&b, &a, sizeof b);
    return b;
}

/* Pass 1 over a run of values: count and energy per bucket (zeros in the
 * slots past NHI), sum of |x| in four accumulators. Non-finite values are
 * skipped. */
static void bucket_run(const float *x, int64_t len, uint64_t *count, double *energy,
                       double l1[4])
{
    double s0 = l1[0], s1 = l1[1], s2 = l1[2], s3 = l1[3];
#define STEP(c, acc)                                                                    \
    do {                                                                                \
        float a_ = fabsf(x[c]);                                                         \
        if (a_ <= FLT_MAX) {                                                            \
            /* arithmetic, not a branch: zeros may come at random */                    \
            uint32_t u_ = bits_of(a_), z_ = NHI + (uint32_t)((c) & (ZERO_SLOTS - 1));   \
            uint32_t b_ = (u_ >> 16) + (u_ == 0) * z_;                                  \
            count[b_]++;                                                                \
            energy[b_] += (double)a_ * a_;                                              \
            acc += a_;                                                                  \
        }                                                                               \
    } while (0)
    int64_t c = 0;
    for (; c + 4 <= len; c += 4) {
        STEP(c, s0);
        STEP(c + 1, s1);
        STEP(c + 2, s2);
        STEP(c + 3, s3);
    }
    for (; c < len; c++)
        STEP(c, s0);
#undef STEP
    l1[0] = s0;
    l1[1] = s1;
    l1[2] = s2;
    l1[3] = s3;
}

/* Pass 2 over a run: values of the chosen buckets counted by their low bits.
 * slot maps a bucket to its table (-1: not chosen); index NHI stands for
 * zeros and NaN/infinity land in buckets that hold no finite value. */
static void subcount_run(const float *x, int64_t len, const int32_t *slot, uint64_t *sub)
{
    for (int64_t c = 0; c < len; c++) {
        uint32_t b = bits_of(fabsf(x[c]));
        int32_t k = slot[(b >> 16) + (b == 0) * NHI];
        if (k >= 0)
            sub[(size_t)k * NLO + (b & (NLO - 1))]++;
    }
}

/* Settle query q within its bucket from the counts of its values by low
 * bits, walking down from the largest. */
static void settle(query *q, const uint64_t *sub)
{
    uint64_t k0 = q->above;
    double acc = q->acc;
    for (uint32_t lo = NLO; lo-- > 0;) {
        uint64_t c = sub[lo];
        if (!c)
            continue;
        float p;
        uint32_t bits = q->bucket << 16 | lo;
        memcpy(&p, &bits, sizeof p);
        const double p2 = (double)p * p;
        if (q->energy) {
            if (acc + (double)c * p2 >= q->target) {
                /* smallest m in [1, c] with acc + m p^2 >= target */
                double m = ceil((q->target - acc) / p2);
                uint64_t mi = m < 1 ? 1 : m > (double)c ? c : (uint64_t)m;
                while (mi > 1 && acc + (double)(mi - 1) * p2 >= q->target)
                    mi--;
                while (mi < c && acc + (double)mi * p2 < q->target)
                    mi++;
                q->k = k0 + mi;
                return;
            }
        } else if (k0 + c >= q->k) {
            q->sum = acc + (double)(q->k - k0) * p2;
            return;
        }
        k0 += c;
        acc += (double)c * p2;
    }
    /* the level-1 sum reached the target, this one fell short by rounding:
     * the whole bucket is needed */
    if (q->energy)
        q->k = k0;
    else
        q->sum = acc;
}

/* ceil(pct * n / 100) without rounding trouble, at least 1. */
static uint64_t top_count(uint64_t n, unsigned pct)
{
    uint64_t k = n / 100 * pct + ((n % 100) * pct + 99) / 100;
    return k < 1 ? 1 : k > n ? n : k;
}

/* The figures from a finished pass 1; -1 when memory ran out. */
static int figures(const float *x, int64_t rows, int64_t cols, int64_t ld, uint64_t n,
                   const uint64_t *count, const double *energy, double e,
                   sresid_sparsity_result *res)
{
    static const double targets[3] = {0.5, 0.9, 0.99};
    static const unsigned pcts[3] = {1, 10, 50};
    query q[NQUERY];
    for (int j = 0; j < 3; j++) {
        q[j] = (query){.energy = true, .target = targets[j] * e, .k = n};
        q[3 + j] = (query){.energy = false, .k = top_count(n, pcts[j]), .sum = e};
    }
    /* level 1: walk down the buckets */
    unsigned open = (1u << NQUERY) - 1;
    uint64_t above = 0;
    double acc = 0;
    for (uint32_t b = NHI; b-- > 0 && open;) {
        if (!count[b])
            continue;
        for (int j = 0; j < NQUERY; j++) {
            if (!(open & (1u << j)))
                continue;
            bool here = q[j].energy ? acc + energy[b] >= q[j].target : above + count[b] >= q[j].k;
            if (here) {
                q[j].bucket = b;
                q[j].above = above;
                q[j].acc = acc;
                open &= ~(1u << j);
            }
        }
        above += count[b];
        acc += energy[b];
    }
    /* below the buckets are the zeros: counts, no energy (an energy target
     * still open was kept out of reach by rounding: all non-zeros needed) */
    for (int j = 0; j < NQUERY; j++)
        if (open & (1u << j)) {
            q[j].bucket = UINT32_MAX;
            if (q[j].energy)
                q[j].k = above;
            else
                q[j].sum = acc;
        }

    /* level 2: one table per distinct bucket still to settle */
    int32_t *slot = malloc((NHI + 1) * sizeof *slot);
    int nused = 0;
    if (!slot)
        return -1;
    for (uint32_t b = 0; b <= NHI; b++)
        slot[b] = -1;
    for (int j = 0; j < NQUERY; j++)
        if (q[j].bucket != UINT32_MAX && slot[q[j].bucket] < 0)
            slot[q[j].bucket] = nused++;
    uint64_t *sub = nused ? calloc((size_t)nused * NLO, sizeof *sub) : NULL;
    if (nused && !sub) {
        free(slot);
        return -1;
    }
    if (nused) {
        if (ld == cols || rows == 1)
            subcount_run(x, rows * cols, slot, sub);
        else
            for (int64_t r = 0; r < rows; r++)
                subcount_run(x + r * ld, cols, slot, sub);
    }
    for (int j = 0; j < NQUERY; j++)
        if (q[j].bucket != UINT32_MAX)
            settle(&q[j], sub + (size_t)slot[q[j].bucket] * NLO);
    free(sub);
    free(slot);

    for (int j = 0; j < 3; j++) {
        res->elements_for_energy[j] = (double)q[j].k / (double)n;
        double share = q[3 + j].sum / e;
        res->energy_in_top[j] = share < 1 ? share : 1;
    }
    return 0;
}

sresid_status sresid_sparsity(const float *x, int64_t rows, int64_t cols, int64_t ld,
                              sresid_sparsity_result *out)
{
    static const char fn[] = "sresid_sparsity";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if (out->size < sizeof(sresid_sparsity_result))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: out->size %zu is below %zu (set it to sizeof)", fn, out->size,
                            sizeof(sresid_sparsity_result));
    sresid_status st = sresid__check_matrix(x, rows, cols, ld, fn);
    if (st)
        return st;
    sresid_sparsity_result res = {.size = out->size,
                                  .elements_for_energy = {NAN, NAN, NAN},
                                  .hoyer = NAN,
                                  .energy_in_top = {NAN, NAN, NAN}};
    uint64_t *count = calloc(NHI + ZERO_SLOTS, sizeof *count);
    double *energy = calloc(NHI + ZERO_SLOTS, sizeof *energy);
    if (!count || !energy) {
        free(count);
        free(energy);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", fn);
    }

    /* pass 1 */
    double l1s[4] = {0, 0, 0, 0};
    if (rows > 0 && cols > 0) {
        if (ld == cols || rows == 1)
            bucket_run(x, rows * cols, count, energy, l1s);
        else
            for (int64_t r = 0; r < rows; r++)
                bucket_run(x + r * ld, cols, count, energy, l1s);
    }
    uint64_t n = 0;
    double e = 0, l1 = (l1s[0] + l1s[1]) + (l1s[2] + l1s[3]);
    for (uint32_t b = 0; b < NHI; b++) {
        n += count[b];
        e += energy[b];
    }
    for (uint32_t z = NHI; z < NHI + ZERO_SLOTS; z++)
        n += count[z];

    if (e > 0) {
        if (figures(x, rows, cols, ld, n, count, energy, e, &res)) {
            free(count);
            free(energy);
            return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", fn);
        }
        if (n >= 2) {
            double rn = sqrt((double)n);
            res.hoyer = (rn - l1 / sqrt(e)) / (rn - 1);
        }
    }
    free(count);
    free(energy);
    memcpy(out, &res, out->size < sizeof res ? out->size : sizeof res);
    return SRESID_OK;
}
