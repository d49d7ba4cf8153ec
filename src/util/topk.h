/* Exact streaming top-k selection by |x| (topk.c). Never installed. */
#ifndef SPARSERESID_UTIL_TOPK_H
#define SPARSERESID_UTIL_TOPK_H

#include <stdbool.h>
#include <stdint.h>

#include "sparseresid/sparseresid.h"

/* ---- top-k selection by |x| (topk.c) ----
 * Exact selection of the k largest |x| of a stream of floats (all finite),
 * by radix on the bit pattern of |x| (which orders like the value): pass 0
 * counts (and sums x^2 of) 2^16 buckets of the high bits, pass 1 counts the
 * low bits inside the one bucket where the k-th value lies; then the
 * threshold is exact. Order: |x| descending, equal |x| by stream position
 * ascending (-0 == +0). Feed the same values in the same order in every
 * pass, in chunks of any size, or split the stream into parts
 * (sresid__sel_fork/merge) fed anywhere. With want_energy, k is instead the
 * smallest count whose largest values hold sum x^2 >= energy (sums exact
 * per bucket, then in double). */
typedef struct sresid__sel {
    uint64_t k;          /* wanted count (capped after pass 0; settled for energy queries) */
    double energy;       /* energy query: the share in [0, 1]; < 0 for a count query */
    double target;       /* energy query, after pass 0: share * total_energy */
    int pass;            /* 0, 1, then 2 = settled */
    uint32_t hi;         /* after pass 0: the high bucket of the k-th value */
    uint64_t above;      /* entries strictly above bucket hi (and, settled, above threshold) */
    double above_energy; /* their sum of x^2 */
    uint64_t total;      /* entries seen in pass 0 */
    uint64_t zeros;      /* of which +0 or -0 */
    double total_energy; /* sum of x^2 of all entries (bucket sums added largest first) */
    uint64_t *count;     /* 2^16 counts of the current pass */
    double *esum;        /* 2^16 energy sums of pass 0, set at its end (energy queries only) */
    unsigned __int128 *exact; /* 2^16 exact sums of squared significands during pass 0 */
    float threshold;     /* settled: |x| of the k-th value (INFINITY when k == 0: nothing kept) */
    uint64_t take_equal; /* settled: keep the first take_equal entries with |x| == threshold */
    uint64_t equal;      /* settled: entries with |x| == threshold in the whole stream */
} sresid__sel;
/* Count query for k (capped at the entries seen). NOMEM. */
sresid_status sresid__sel_init(sresid__sel *s, uint64_t k);
/* Energy query: the fewest entries with sum x^2 >= share * total (share in [0, 1]). NOMEM. */
sresid_status sresid__sel_init_energy(sresid__sel *s, double share);
/* Count a chunk in the current pass. */
void sresid__sel_feed(sresid__sel *s, const float *x, size_t n);
/* End the current pass. After it, s->pass == 2 means settled (pass 1 may
 * be skipped when the bucket settles the query alone). */
void sresid__sel_next(sresid__sel *s);
void sresid__sel_free(sresid__sel *s);
/* Splitting a pass: a part of the same query and pass, with empty counts,
 * for another thread or process to feed its share of the stream. NOMEM. */
sresid_status sresid__sel_fork(const sresid__sel *s, sresid__sel *part);
/* Add a part's counts (and pass 0's exact energy sums) to s, then empty
 * the part. The sums are integers: any order of parts gives the same s. */
void sresid__sel_merge(sresid__sel *s, sresid__sel *part);
/* After sresid__sel_next on s: the part follows s into its next pass. */
void sresid__sel_follow(sresid__sel *part, const sresid__sel *s);
/* After settling: a cursor for the collection pass, fed in stream order. */
typedef struct sresid__sel_cursor {
    float threshold;
    uint64_t equal_left;
} sresid__sel_cursor;
static inline bool sresid__sel_keep(sresid__sel_cursor *c, float x)
{
    float a = x < 0 ? -x : x;
    if (a > c->threshold)
        return true;
    if (a == c->threshold && c->equal_left) {
        c->equal_left--;
        return true;
    }
    return false;
}

/* k = floor(fraction * n + 0.5) for a fraction in [0, 1] already validated;
 * n itself when rounding would go past it (n beyond 2^53). */
uint64_t sresid__fraction_count(double fraction, uint64_t n);

#endif /* SPARSERESID_UTIL_TOPK_H */
