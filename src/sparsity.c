/* Sparsity: how few of the largest |x| hold most of the energy sum x^2.
 *
 * The finite |x| are copied into one float buffer (squares are computed in
 * double when summed: exact, and |x| orders the same as x^2 without the
 * overflow of a float square). All six figures come from one randomised
 * selection tree with running sums, no sort: a three-way partition around a
 * pivot splits the current range into larger (G), equal (E) and smaller (L)
 * values; each open query either lies in G, is answered inside E (ties: all
 * equal, so the count follows from the pivot), or moves to L with G and E
 * added to its running sum. Queries that part ways continue on their own
 * side, so the shared top of the tree is partitioned once. Expected time is
 * linear, also with many ties (E is settled at once, never partitioned
 * again). */
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

/* Dutch-flag partition of v[lo, hi) into > p, == p, < p; returns the ends
 * of the first two parts and the sum of squares of the first. */
static void partition3(float *v, size_t lo, size_t hi, float p, size_t *g_end, size_t *e_end,
                       double *g_sum)
{
    size_t a = lo, i = lo, b = hi; /* [lo,a) > p, [a,i) == p, [b,hi) < p */
    double s = 0;
    while (i < b) {
        float x = v[i];
        if (x > p) {
            s += (double)x * x;
            v[i] = v[a];
            v[a] = x;
            a++;
            i++;
        } else if (x < p) {
            b--;
            v[i] = v[b];
            v[b] = x;
        } else {
            i++;
        }
    }
    *g_end = a;
    *e_end = i;
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

/* Runs the selection; v[0..n) is permuted. Each partition leaves at most two
 * tasks, each holding at least one query, so NQUERY slots suffice. */
static void select_all(float *v, size_t n, query *q)
{
    sresid__rng g;
    sresid__rng_seed(&g, SEED);
    task stack[NQUERY + 1];
    int top = 0;
    stack[top++] = (task){0, n, 0, 0.0, (1u << NQUERY) - 1};
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
        float p = median3(v[t.lo + sresid__rng_below(&g, len)],
                          v[t.lo + sresid__rng_below(&g, len)],
                          v[t.lo + sresid__rng_below(&g, len)]);
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
    size_t total = (size_t)rows * (size_t)cols;
    float *v = total ? malloc(total * sizeof *v) : NULL;
    if (total && !v)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for %zu values", what, total);
    size_t n = 0;
    double e = 0, l1 = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        for (int64_t c = 0; c < cols; c++) {
            float a = fabsf(row[c]);
            if (a - a == 0) { /* finite */
                v[n++] = a;
                e += (double)a * a;
                l1 += a;
            }
        }
    }
    if (e > 0) {
        static const double targets[3] = {0.5, 0.9, 0.99};
        static const unsigned pcts[3] = {1, 10, 50};
        query q[NQUERY];
        for (int j = 0; j < 3; j++) {
            q[j] = (query){.energy = true, .target = targets[j] * e, .k = (uint64_t)n};
            q[3 + j] = (query){.energy = false, .k = top_count(n, pcts[j]), .sum = e};
        }
        select_all(v, n, q);
        for (int j = 0; j < 3; j++) {
            res.elements_for_energy[j] = (double)q[j].k / (double)n;
            double share = q[3 + j].sum / e;
            res.energy_in_top[j] = share < 1 ? share : 1;
        }
        if (n >= 2) {
            double rn = sqrt((double)n);
            res.hoyer = (rn - l1 / sqrt(e)) / (rn - 1);
        }
    }
    free(v);
    memcpy(out, &res, out->size < sizeof res ? out->size : sizeof res);
    return SRESID_OK;
}
