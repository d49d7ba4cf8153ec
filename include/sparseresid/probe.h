/*
 * libsparseresid — probes: statistics of residuals (or of any float matrix)
 * and the report that runs them over a whole residual or model.
 *
 * Exact definitions: docs/probes.md. Matrices are row-major float32 with
 * rows, cols and a row stride ld >= cols (in elements); a vector is one row.
 * Statistics use the finite values only and accumulate in double. A
 * statistic that is undefined for its input (the kurtosis of a constant, the
 * correlation of a zero vector) comes back as NaN with SRESID_OK — the
 * report writes it as JSON null.
 *
 * Thread safety: the standalone probes only read their inputs and may run
 * concurrently; a state (moments, histogram) or report needs one thread at a
 * time for calls that change it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_PROBE_H
#define SPARSERESID_PROBE_H

#include "common.h"
#include "model.h"
#include "residual.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- moments: a mergeable state ---------------------------------------- */

/* Plain data: may be copied, stored or sent to another process and merged
 * there. Fill with sresid_moments_init, never by hand. */
typedef struct sresid_moments {
    size_t size;        /* sizeof(sresid_moments) */
    uint64_t count;     /* finite values added */
    uint64_t nonfinite; /* NaN and +-Inf values seen and skipped */
    double mean;
    double m2, m3, m4;  /* sums of (x - mean)^2, ^3, ^4 */
    double min, max;    /* of the finite values; +Inf / -Inf while count == 0 */
} sresid_moments;

/* Statistics read from a state. variance is the population variance m2/n;
 * skewness m3/n / (m2/n)^1.5; kurtosis the excess m4/n / (m2/n)^2 - 3 (as
 * scipy.stats.skew / kurtosis with their defaults). NaN when undefined: all
 * figures (min and max too) for count == 0; skewness and kurtosis when the
 * values are all equal (variance exactly 0 then). */
typedef struct sresid_moment_stats {
    size_t size;
    uint64_t count;
    uint64_t nonfinite;
    double mean;
    double variance;
    double skewness;
    double kurtosis;
    double min;
    double max;
} sresid_moment_stats;

/* Start an empty state. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_moments_init(sresid_moments *state);
/* Add the values of a rows x cols matrix (row stride ld). Errors:
 * INVALID_ARG (NULL, negative sizes, ld < cols, state not initialised). */
SRESID_API sresid_status sresid_moments_add(sresid_moments *state, const float *x, int64_t rows,
                                            int64_t cols, int64_t ld);
/* into := into + other, exactly the state of the concatenation (pairwise
 * update of the central sums). Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_moments_merge(sresid_moments *into, const sresid_moments *other);
/* Set out->size first. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_moments_stats(const sresid_moments *state,
                                              sresid_moment_stats *out);

/* ---- histogram and entropy --------------------------------------------- */

typedef struct sresid_histogram sresid_histogram;

/* A histogram of bins equal bins over [lo, hi] (lo < hi, both finite; the
 * last bin is closed), as numpy.histogram on float64 data: x falls in bin i
 * when edge[i] <= x < edge[i+1], edge[i] = lo + i * (hi - lo) / bins,
 * edge[bins] = hi. bins in [1, 1 << 24]. *out is the caller's.
 * Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_histogram_create(int32_t bins, double lo, double hi,
                                                 sresid_histogram **out);
SRESID_API void sresid_histogram_free(sresid_histogram *h);
/* Count the finite values of a matrix that fall in [lo, hi]; finite values
 * outside are counted apart (sresid_histogram_outside); NaN and +-Inf are
 * skipped and counted nowhere. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_histogram_add(sresid_histogram *h, const float *x, int64_t rows,
                                              int64_t cols, int64_t ld);
/* into += other; both must have the same bins, lo and hi.
 * Errors: INVALID_ARG, SHAPE (different binning). */
SRESID_API sresid_status sresid_histogram_merge(sresid_histogram *into,
                                                const sresid_histogram *other);
/* Copy the bin counts into counts[0..bins) (n >= bins; nothing past bins is
 * written). Errors: INVALID_ARG, SHAPE. */
SRESID_API sresid_status sresid_histogram_counts(const sresid_histogram *h, uint64_t *counts,
                                                 size_t n);
/* Values seen outside [lo, hi]; 0 for NULL. */
SRESID_API uint64_t sresid_histogram_outside(const sresid_histogram *h);
/* Shannon entropy in bits of the bin counts, -sum p log2 p over non-empty
 * bins; NaN for an empty histogram. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_histogram_entropy(const sresid_histogram *h, double *bits);

/* Entropy of a matrix and its random baseline. */
typedef struct sresid_entropy_result {
    size_t size;
    uint64_t count;     /* finite values binned */
    double bits;        /* histogram of bins bins over [min, max] of the values */
    double random_bits; /* same rule on count N(mean, variance) draws, fixed seed */
    double ratio;       /* bits / random_bits */
} sresid_entropy_result;

/* bins 0 means 100. A constant input has entropy 0 (one value, one bin) and
 * no defined baseline (NaN). Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_entropy(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                        int32_t bins, uint64_t seed, sresid_entropy_result *out);

/* The random baseline alone: entropy in bits of count standard normal draws
 * (the library's generator, docs/probes.md) binned into bins bins over
 * their own [min, max]. Binning over [min, max] is affine-invariant, so this
 * equals the baseline for N(mean, variance) draws of any mean and variance.
 * bins in [1, 1 << 24]. NaN for count < 2. Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_entropy_random(uint64_t count, int32_t bins, uint64_t seed,
                                               double *bits);

/* ---- matrix structure -------------------------------------------------- */

/* Participation ratio PR = (sum s_i^2)^2 / sum s_i^4 over the singular values,
 * computed as ||A||_F^4 / ||G||_F^2 with G the smaller Gram matrix (A A^T or
 * A^T A), from BLIS products in row blocks (memory O(block x min(m, n))), no
 * SVD. normalized = PR / min(rows, cols); either output may be NULL, not
 * both. NaN for a zero or empty matrix. Errors: INVALID_ARG, NONFINITE,
 * NOMEM. */
SRESID_API sresid_status sresid_participation_ratio(const float *a, int64_t rows, int64_t cols,
                                                    int64_t ld, double *pr, double *normalized);

/* Pearson r of two vectors of n values, over the positions where both are
 * finite; NaN when either is constant there. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_correlation(const float *x, const float *y, size_t n, double *r);

/* Low-frequency power ratio: after removing the mean, the share of the 2-D
 * DFT power in the band |k1| <= floor(band * rows / 2), |k2| <= floor(band *
 * cols / 2) (DC excluded), divided by the share that band holds for white
 * noise. band 0 means 1/8; band in (0, 1]. NaN when the matrix is constant or
 * the band holds no frequency but DC. Work grows with the band: about
 * 4 band m n (n + band m) flops for m >= n (a long vector with a wide band
 * is costly). Errors: INVALID_ARG, NONFINITE, NOMEM. */
SRESID_API sresid_status sresid_lowfreq_ratio(const float *a, int64_t rows, int64_t cols,
                                              int64_t ld, double band, double *ratio);

/* ---- clustering -------------------------------------------------------- */

typedef struct sresid_kmeans_opts {
    size_t size;
    uint64_t seed;     /* k-means++ seeding (0 is a valid seed) */
    int32_t max_iter;  /* Lloyd iterations; 0 means 100 */
    int32_t reserved;  /* 0 */
    /* since 1.1: runs from different seeds, the lowest inertia kept (the
       first run uses seed itself); 0 means 1, at most SRESID_KMEANS_MAX_INIT,
       or SRESID_KMEANS_INIT_AUTO: as many as the matrix's size allows */
    int32_t n_init;
    int32_t reserved2; /* 0 */
} sresid_kmeans_opts;

/* Since 1.1: the bound of sresid_kmeans_opts.n_init, and the value that
 * picks the count from the size: min(50, max(1, floor(2^24 / (rows x
 * cols)))) runs, so that a matrix of up to 335544 values gets 50 and one of
 * 4096 x 4096 or more gets 1 (docs/probes.md, Restarts). The report's
 * default. */
#define SRESID_KMEANS_MAX_INIT  1000
#define SRESID_KMEANS_INIT_AUTO -1

/* k-means on the rows of a (rows points in cols dimensions): greedy
 * k-means++ from the seed (2 + floor(ln k) candidates per step, drawn with
 * probability proportional to D(x)^2, the one leaving the smallest
 * potential kept), then Lloyd iterations until no assignment changes, the
 * centres move by at most the tolerance (since 1.1: squared shifts summed
 * <= 1e-4 x the mean column variance, as scikit-learn) or max_iter; ties
 * to the lower index. A cluster left empty takes the row farthest from its
 * centre. Unless no assignment changed, the rows are assigned once more to
 * the final centres. With opts->n_init > 1, that many runs (seeds in
 * docs/probes.md, Restarts) and the one of lowest inertia is returned.
 * labels (rows entries), centers (k x cols), inertia and iterations (of
 * the returned run) may each be NULL. inertia = sum of squared distances
 * to the assigned centres, in double. 1 <= k <= rows. Reads a only; may
 * run concurrently. Errors: INVALID_ARG, NONFINITE, NOMEM. */
SRESID_API sresid_status sresid_kmeans_fit(const float *a, int64_t rows, int64_t cols, int64_t ld,
                                           int32_t k, const sresid_kmeans_opts *opts,
                                           int32_t *labels, float *centers, double *inertia,
                                           int32_t *iterations);

typedef struct sresid_kmeans_result {
    size_t size;
    int32_t k;
    int32_t iterations;
    double explained;        /* 1 - W_K / T on the matrix (NaN when T = 0) */
    double explained_random; /* same on a Gaussian matrix of the shape and variance */
    double difference;       /* explained - explained_random */
} sresid_kmeans_result;

/* Explained variance for each k in ks[0..nk), each from the best of
 * opts->n_init runs on a and on the baseline; out has nk entries (set each
 * out[i].size, all equal; entries are read out[0].size bytes apart, so an
 * array of a later, larger struct works too). T = sum of squared distances
 * of the rows to their mean row. The Gaussian matrix (mean 0, the variance
 * of all entries of a) is drawn from seed ^ 0x5DEECE66D; each k runs with
 * the same seed on both. A k above rows gives NaN figures for that entry;
 * k < 1 is INVALID_ARG. Errors: INVALID_ARG, NONFINITE, NOMEM. */
SRESID_API sresid_status sresid_kmeans_explained(const float *a, int64_t rows, int64_t cols,
                                                 int64_t ld, const int32_t *ks, size_t nk,
                                                 const sresid_kmeans_opts *opts,
                                                 sresid_kmeans_result *out);

/* ---- sparsity ---------------------------------------------------------- */

typedef struct sresid_sparsity_result {
    size_t size;
    /* share of elements (largest |x| first) needed to hold 50, 90, 99 % of sum x^2 */
    double elements_for_energy[3];
    /* Hoyer sparsity (sqrt(n) - ||x||_1 / ||x||_2) / (sqrt(n) - 1) */
    double hoyer;
    /* share of sum x^2 held by the top 1, 10, 50 % of elements (ceil(p n) of them) */
    double energy_in_top[3];
} sresid_sparsity_result;

/* Linear-time selection, no full sort; NaN figures for a zero input.
 * Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_sparsity(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                         sresid_sparsity_result *out);

/* ---- permutation null -------------------------------------------------- */

/* Probe identifiers, also the bits of sresid_report_opts.probes. */
#define SRESID_PROBE_MOMENTS     0x01u
#define SRESID_PROBE_ENTROPY     0x02u
#define SRESID_PROBE_PR          0x04u
#define SRESID_PROBE_LOWFREQ     0x08u
#define SRESID_PROBE_KMEANS      0x10u
#define SRESID_PROBE_SPARSITY    0x20u
#define SRESID_PROBE_CORRELATION 0x40u
#define SRESID_PROBE_ALL         0x7Fu

typedef struct sresid_null_result {
    size_t size;
    int32_t draws;
    int32_t reserved;
    double observed; /* the probe on the matrix as given */
    double mean;     /* over draws shuffles of its entries */
    double std;      /* sample standard deviation (n - 1) */
    double z;        /* (observed - mean) / std; NaN when std = 0 */
} sresid_null_result;

/* Compare one probe (SRESID_PROBE_PR, param ignored; _LOWFREQ with param =
 * band as sresid_lowfreq_ratio; or _KMEANS with param = K, an integer in
 * [1, rows], figure = explained variance, k-means seed 0) on a
 * matrix with its value on draws in [1, 10000] random permutations of the
 * matrix's entries (Fisher-Yates, one generator seeded once from seed).
 * std and z are NaN for one draw. Set out->size first.
 * Errors: INVALID_ARG, NONFINITE, NOMEM. */
SRESID_API sresid_status sresid_permutation_null(uint32_t probe, const float *a, int64_t rows,
                                                 int64_t cols, int64_t ld, double param,
                                                 int32_t draws, uint64_t seed,
                                                 sresid_null_result *out);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_PROBE_H */
