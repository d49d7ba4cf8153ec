/* Sparsity: how few of the largest |x| hold most of the energy sum x^2.
 *
 * Linear time, no sort, and no copy of the input:
 *  1. one pass sorts the finite values by the top 15 bits of |x| (for
 *     non-negative floats the bit pattern orders like the value) into 2^15
 *     buckets, keeping the count and the sum of squares of each; a walk
 *     down from the largest bucket then finds, for each of the six figures,
 *     the one bucket where its answer lies, and what lies above it;
 *  2. a second pass copies the values of those (at most six) buckets out,
 *     and a randomised selection with running sums finishes inside them:
 *     a three-way partition around a pivot splits a range into larger (G),
 *     equal (E) and smaller (L) values; each open query either lies in G,
 *     is answered inside E (ties: all equal, so the count follows from the
 *     pivot), or moves to L with G and E added to its running sum. Queries
 *     that part ways continue on their own side. Expected time is linear,
 *     also with many ties (E is settled at once).
 * Squares are computed in double: exact for a float. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SEED 0x5350415253495459ull /* fixed: results do not depend on it */
#define NQUERY 6

/* Energy queries (the smallest k whose k largest squares reach target) and
 * count queries (the sum of the k largest squares). */
typedef struct query {
    bool energy;
    double target; /* energy: target * total */
    uint64_t k;    /* count: how many; energy: the answer */
    double sum;    /* count: the answer */
} query;

/* A range still to partition: its values are below all values already
 * taken (k0 of them, squares summing to acc) and above the rest. */
typedef struct task {
    size_t lo, hi;
    uint64_t k0;
    double acc;
    unsigned mask; /* queries open on this range */
} task;

static float median3(float a, float b, float c)
{
    if (a > b) {
        float t = a;
        a = b;
        b = t;
    }
    return c < a ? a : c > b ? b : c;
}

/* Three-way partition of v[lo, hi) into > p, == p, < p in two branch-free
 * sweeps (the outcome of each comparison is data, not a jump: random data
 * would mispredict half of the branches); returns the ends of the first two
 * parts and the sum of squares of the first. */
static void partition3(float *v, size_t lo, size_t hi, float p, size_t *g_end, size_t *e_end,
                       double *g_sum)
{
    size_t a = lo;
    double s = 0;
    for (size_t i = lo; i < hi; i++) { /* [lo, a) > p, [a, i) <= p */
        float x = v[i];
        v[i] = v[a];
        v[a] = x;
        double gt = x > p;
        s += gt * ((double)x * x);
        a += x > p;
    }
    size_t b = a;
    for (size_t i = a; i < hi; i++) { /* [a, b) == p, [b, i) < p */
        float x = v[i];
        v[i] = v[b];
        v[b] = x;
        b += x == p;
    }
    *g_end = a;
    *e_end = b;
    *g_sum = s;
}

/* Answer the queries of t that fall in the run of e values equal to p, or
 * settle them when the range is empty; returns the queries still open on
 * the larger (*to_g) and smaller (*to_l) sides. */
static void split_queries(query *q, const task *t, uint64_t g, double g_sum, uint64_t e, float p,
                          unsigned *to_g, unsigned *to_l)
{
    const double p2 = (double)p * p, before_e = t->acc + g_sum;
    *to_g = *to_l = 0;
    for (int j = 0; j < NQUERY; j++) {
        if (!(t->mask & (1u << j)))
            continue;
        query *qj = &q[j];
        if (qj->energy) {
            if (before_e >= qj->target) {
                *to_g |= 1u << j;
            } else if (p2 == 0) {
                /* only zeros left: rounding kept the sum just short */
                qj->k = t->k0 + g;
            } else if (before_e + (double)e * p2 >= qj->target) {
                /* smallest m in [1, e] with before_e + m p^2 >= target */
                double m = ceil((qj->target - before_e) / p2);
                uint64_t mi = m < 1 ? 1 : m > (double)e ? e : (uint64_t)m;
                while (mi > 1 && before_e + (double)(mi - 1) * p2 >= qj->target)
                    mi--;
                while (mi < e && before_e + (double)mi * p2 < qj->target)
                    mi++;
                qj->k = t->k0 + g + mi;
            } else {
                *to_l |= 1u << j;
            }
        } else {
            uint64_t need = qj->k - t->k0; /* >= 1 */
            if (need <= g)
                *to_g |= 1u << j;
            else if (need <= g + e)
                qj->sum = before_e + (double)(need - g) * p2;
            else
                *to_l |= 1u << j;
        }
    }
}

/* Runs the selection for the queries in mask on v[0..n) (permuted), below
 * k0 values already taken whose squares sum to acc. Each partition leaves
 * at most two tasks, each holding at least one query, so NQUERY slots
 * suffice. */
static void select_in(float *v, size_t n, query *q, unsigned mask, uint64_t k0, double acc,
                      sresid__rng *g)
{
    task stack[NQUERY + 1];
    int top = 0;
    stack[top++] = (task){0, n, k0, acc, mask};
    while (top > 0) {
        task t = stack[--top];
        if (t.lo == t.hi) {
            /* rounding left a query past the end: everything is taken */
            for (int j = 0; j < NQUERY; j++)
                if (t.mask & (1u << j)) {
                    if (q[j].energy)
                        q[j].k = t.k0;
                    else
                        q[j].sum = t.acc;
                }
            continue;
        }
        size_t len = t.hi - t.lo;
        float p = median3(v[t.lo + sresid__rng_below(g, len)],
                          v[t.lo + sresid__rng_below(g, len)],
                          v[t.lo + sresid__rng_below(g, len)]);
        size_t g_end, e_end;
        double g_sum;
        partition3(v, t.lo, t.hi, p, &g_end, &e_end, &g_sum);
        uint64_t ng = g_end - t.lo, ne = e_end - g_end;
        unsigned to_g, to_l;
        split_queries(q, &t, ng, g_sum, ne, p, &to_g, &to_l);
        if (to_g)
            stack[top++] = (task){t.lo, g_end, t.k0, t.acc, to_g};
        if (to_l)
            stack[top++] = (task){e_end, t.hi, t.k0 + ng + ne,
                                  t.acc + g_sum + (double)ne * ((double)p * p), to_l};
    }
}

/* ceil(pct * n / 100) without rounding trouble, at least 1. */
static uint64_t top_count(uint64_t n, unsigned pct)
{
    uint64_t k = n / 100 * pct + ((n % 100) * pct + 99) / 100;
    return k < 1 ? 1 : k > n ? n : k;
}

#define NBUCKET (1u << 15)
#define ZERO_SLOTS 4 /* zeros counted apart, over 4 slots so runs of them do not queue */

/* Bucket of a finite |x| > 0: the top 15 bits of its pattern (sign clear). */
static inline uint32_t bucket_of(float a)
{
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    return bits >> 16;
}

/* Pass 1 over a run of values: count and energy per bucket (zeros in the
 * slots past NBUCKET), sum of |x| in four accumulators. Non-finite values
 * are skipped. */
static void bucket_run(const float *row, int64_t len, uint64_t *count, double *energy,
                       double l1[4])
{
    double s0 = l1[0], s1 = l1[1], s2 = l1[2], s3 = l1[3];
#define STEP(c, acc)                                                               \
    do {                                                                           \
        float a_ = fabsf(row[c]);                                                  \
        if (a_ <= FLT_MAX) {                                                       \
            uint32_t b_ = a_ == 0 ? NBUCKET + (uint32_t)((c) & (ZERO_SLOTS - 1))   \
                                  : bucket_of(a_);                                 \
            count[b_]++;                                                           \
            energy[b_] += (double)a_ * a_;                                         \
            acc += a_;                                                             \
        }                                                                          \
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

sresid_status sresid_sparsity(const float *x, int64_t rows, int64_t cols, int64_t ld,
                              sresid_sparsity_result *out)
{
    static const char what[] = "sresid_sparsity";
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", what);
    if (out->size < sizeof(sresid_sparsity_result))
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: out->size %zu is below %zu (set it to sizeof)", what, out->size,
                            sizeof(sresid_sparsity_result));
    sresid_status st = sresid__check_matrix(x, rows, cols, ld, what);
    if (st)
        return st;
    sresid_sparsity_result res = {.size = out->size,
                                  .elements_for_energy = {NAN, NAN, NAN},
                                  .hoyer = NAN,
                                  .energy_in_top = {NAN, NAN, NAN}};
    uint64_t *count = calloc(NBUCKET + ZERO_SLOTS, sizeof *count);
    double *energy = calloc(NBUCKET + ZERO_SLOTS, sizeof *energy);
    if (!count || !energy) {
        free(count);
        free(energy);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", what);
    }

    /* pass 1: buckets and totals */
    double l1s[4] = {0, 0, 0, 0};
    if (ld == cols || rows == 1)
        bucket_run(x, rows * cols, count, energy, l1s);
    else
        for (int64_t r = 0; r < rows; r++)
            bucket_run(x + r * ld, cols, count, energy, l1s);
    uint64_t n = 0;
    double e = 0, l1 = (l1s[0] + l1s[1]) + (l1s[2] + l1s[3]);
    for (uint32_t b = 0; b < NBUCKET; b++) {
        n += count[b];
        e += energy[b];
    }
    for (uint32_t z = NBUCKET; z < NBUCKET + ZERO_SLOTS; z++)
        n += count[z];

    if (e > 0) {
        static const double targets[3] = {0.5, 0.9, 0.99};
        static const unsigned pcts[3] = {1, 10, 50};
        query q[NQUERY];
        for (int j = 0; j < 3; j++) {
            q[j] = (query){.energy = true, .target = targets[j] * e, .k = n};
            q[3 + j] = (query){.energy = false, .k = top_count(n, pcts[j]), .sum = e};
        }
        /* walk down the buckets: each query's bucket and what lies above it */
        uint32_t qb[NQUERY];
        uint64_t qk0[NQUERY];
        double qacc[NQUERY];
        unsigned open = (1u << NQUERY) - 1;
        uint64_t above = 0;
        double acc = 0;
        for (uint32_t b = NBUCKET; b-- > 0 && open;) {
            if (!count[b])
                continue;
            for (int j = 0; j < NQUERY; j++) {
                bool here = q[j].energy ? acc + energy[b] >= q[j].target
                                        : above + count[b] >= q[j].k;
                if ((open & (1u << j)) && here) {
                    qb[j] = b;
                    qk0[j] = above;
                    qacc[j] = acc;
                    open &= ~(1u << j);
                }
            }
            above += count[b];
            acc += energy[b];
        }
        /* below the buckets are the zeros: they add to counts, not to
         * energy (an energy target still open was kept out of reach by
         * rounding: all the non-zero values are needed) */
        for (int j = 0; j < NQUERY; j++)
            if (open & (1u << j)) {
                qb[j] = UINT32_MAX;
                if (q[j].energy)
                    q[j].k = above;
                else
                    q[j].sum = acc;
            }

        /* pass 2: copy out the values of the queries' buckets */
        int32_t *slot = malloc(NBUCKET * sizeof *slot);
        uint32_t used[NQUERY];
        size_t off[NQUERY + 1], fill[NQUERY] = {0};
        int nused = 0;
        if (!slot) {
            free(count);
            free(energy);
            return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory", what);
        }
        for (uint32_t b = 0; b < NBUCKET; b++)
            slot[b] = -1;
        off[0] = 0;
        for (int j = 0; j < NQUERY; j++)
            if (qb[j] != UINT32_MAX && slot[qb[j]] < 0) {
                slot[qb[j]] = nused;
                used[nused] = qb[j];
                off[nused + 1] = off[nused] + count[qb[j]];
                nused++;
            }
        float *v = off[nused] ? malloc(off[nused] * sizeof *v) : NULL;
        if (off[nused] && !v) {
            free(slot);
            free(count);
            free(energy);
            return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for %zu values", what,
                                off[nused]);
        }
        for (int64_t r = 0; r < rows; r++) {
            const float *row = x + r * ld;
            for (int64_t c = 0; c < cols; c++) {
                float a = fabsf(row[c]);
                if (a > 0 && a <= FLT_MAX) {
                    int32_t k = slot[bucket_of(a)];
                    if (k >= 0)
                        v[off[k] + fill[k]++] = a;
                }
            }
        }

        /* finish inside each bucket, the queries that share it together */
        sresid__rng g;
        sresid__rng_seed(&g, SEED);
        for (int k = 0; k < nused; k++) {
            unsigned mask = 0;
            int first = -1;
            for (int j = 0; j < NQUERY; j++)
                if (qb[j] == used[k]) {
                    mask |= 1u << j;
                    if (first < 0)
                        first = j;
                }
            select_in(v + off[k], off[k + 1] - off[k], q, mask, qk0[first], qacc[first], &g);
        }
        for (int j = 0; j < 3; j++) {
            res.elements_for_energy[j] = (double)q[j].k / (double)n;
            double share = q[3 + j].sum / e;
            res.energy_in_top[j] = share < 1 ? share : 1;
        }
        if (n >= 2) {
            double rn = sqrt((double)n);
            res.hoyer = (rn - l1 / sqrt(e)) / (rn - 1);
        }
        free(v);
        free(slot);
    }
    free(count);
    free(energy);
    memcpy(out, &res, out->size < sizeof res ? out->size : sizeof res);
    return SRESID_OK;
}
