/*
 * libsparseresid — the residual report: every probe over a residual (or one
 * model), grouped by tensor, kind, layer and overall, as structs or as JSON
 * (schema: docs/report.md).
 *
 * Memory stays bounded by about twice the largest tensor per thread (two
 * tensors per thread while correlating layers) plus the probes' scratch,
 * whatever the checkpoint size: tensors are streamed, not loaded together.
 *
 * Thread safety: a finished report is read-only; its accessors may run
 * concurrently. The models and residual it was built from may be freed once
 * the report exists (it copies the names it needs).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_REPORT_H
#define SPARSERESID_REPORT_H

#include "common.h"
#include "model.h"
#include "probe.h"
#include "residual.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sresid_report sresid_report;

/* Called from the calling thread after each unit of work: done runs 1, 2,
 * ..., total, and total is fixed for the run. The units: each tensor once
 * for its probes, once more for the pooled histograms (entropy probe on),
 * then each pair of same-stack, same-role tensors correlated. name is the tensor just
 * finished (for a pair, the one in the later layer). */
typedef void (*sresid_progress_fn)(void *user, size_t done, size_t total, const char *name);

/* sresid_report_opts.flags */
#define SRESID_REPORT_FAIL_NONFINITE 0x1u /* fail with NONFINITE instead of counting and excluding */

/* Group index for sresid_report_group: a SRESID_KIND_* or this. */
#define SRESID_GROUP_ALL (-1)

typedef struct sresid_report_opts {
    size_t size;
    uint32_t probes;        /* SRESID_PROBE_* bits; 0 = all */
    uint32_t kinds;         /* bits (1u << SRESID_KIND_*) of the kinds to include; 0 = all */
    uint32_t flags;         /* SRESID_REPORT_* */
    int32_t bins;           /* entropy bins; 0 = 100 */
    double band;            /* low-frequency band; 0 = 1/8 */
    uint64_t seed;          /* every random choice derives from it (docs/probes.md, Seeds);
                               0, the default, is a seed like any other */
    const int32_t *ks;      /* k-means K list (borrowed); NULL = {2, 4, 8, 16} */
    size_t nks;             /* entries in ks; at most 64 */
    int32_t null_draws;     /* permutation-null draws for PR, low-frequency, k-means; 0 = none */
    int32_t threads;        /* 0 = sresid_get_threads() */
    sresid_progress_fn progress; /* may be NULL */
    void *progress_user;
    /* since 1.1: follows the run and can stop it (common.h); the units are
       those of progress. NULL: the thread's default (sresid_set_monitor) */
    sresid_monitor_fn monitor;
    void *monitor_user;
    /* since 1.1: k-means runs per K and matrix (the Gaussian baseline's
       too), the lowest inertia kept; 0 = by the matrix's size
       (SRESID_KMEANS_INIT_AUTO, probe.h: 50 up to 335544 values, 1 from
       4096 x 4096); at most SRESID_KMEANS_MAX_INIT */
    int32_t kmeans_restarts;
} sresid_report_opts;

/* Run the report over a residual's paired tensors (trained - base).
 * *out is the caller's. Errors: INVALID_ARG, NONFINITE (with the flag),
 * NOMEM, CANCELLED (the monitor asked to stop), and read errors of the
 * models. */
SRESID_API sresid_status sresid_report_residual(const sresid_residual *residual,
                                                const sresid_report_opts *opts,
                                                sresid_report **out);
/* The same over the float tensors of one model. */
SRESID_API sresid_status sresid_report_model(const sresid_model *model,
                                             const sresid_report_opts *opts, sresid_report **out);
/* Accepts NULL. */
SRESID_API void sresid_report_free(sresid_report *report);

/* One tensor's figures; NaN where undefined or not computed (probe off,
 * vector-only input for matrix probes, non-finite values for matrix probes). */
typedef struct sresid_tensor_report {
    size_t size;
    const char *name;        /* borrowed from the report */
    const char *role;
    int32_t kind;
    int32_t layer;
    int32_t ndim;
    int32_t is_matrix;       /* rank >= 2 and a view of at least 2 x 2: the matrix probes apply */
    int64_t rows;            /* matrix view */
    int64_t cols;
    uint64_t count;          /* finite values */
    uint64_t nonfinite;
    double mean;
    double variance;
    double skewness;
    double kurtosis;
    double entropy_bits;
    double entropy_random_bits;
    double pr;
    double pr_normalized;
    double lowfreq_ratio;
    double elements_for_energy[3]; /* 50, 90, 99 % */
    double hoyer;
    double energy_in_top[3];       /* 1, 10, 50 % */
    double pr_null_mean, pr_null_std, pr_null_z;
    double lowfreq_null_mean, lowfreq_null_std, lowfreq_null_z;
} sresid_tensor_report;

typedef struct sresid_group_report {
    size_t size;
    int32_t group;           /* SRESID_KIND_* or SRESID_GROUP_ALL */
    int32_t reserved;
    uint64_t tensors;
    uint64_t count;          /* finite values pooled */
    uint64_t nonfinite;
    double mean;             /* pooled moments of the concatenation */
    double variance;
    double skewness;
    double kurtosis;
    double entropy_bits;     /* histogram over the group's own [min, max] */
    double entropy_random_bits;
    double mean_pr;          /* mean PR over the group's matrices */
    uint64_t matrices;       /* tensors contributing to mean_pr */
} sresid_group_report;

/* A layer is (stack, index): see sresid_model_tensor_stack and
 * sresid_report_layer_stack. */
typedef struct sresid_layer_report {
    size_t size;
    int32_t layer;           /* the index within its stack */
    int32_t reserved;
    uint64_t tensors;
    uint64_t count;
    double kurtosis;
    double entropy_bits;
    double entropy_random_bits;
} sresid_layer_report;

/* Correlation between the residuals of same-role tensors in two layers of
 * one stack: per role (role != NULL, pairs = 1), or the mean over roles for
 * a layer pair (role == NULL, pairs = roles averaged: those with a
 * same-shape tensor in both layers and a defined r; r is NaN when pairs is
 * 0). Tensors of different stacks are never paired. */
typedef struct sresid_correlation_report {
    size_t size;
    const char *role;
    int32_t layer_a;
    int32_t layer_b;
    double r;
    uint64_t pairs;
} sresid_correlation_report;

SRESID_API size_t sresid_report_tensor_count(const sresid_report *report);
/* Errors: INVALID_ARG (NULL, index, size). */
SRESID_API sresid_status sresid_report_tensor(const sresid_report *report, size_t i,
                                              sresid_tensor_report *out);
/* k-means figures of tensor i for K list entry j (0 <= j < nks).
 * Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_report_tensor_kmeans(const sresid_report *report, size_t i,
                                                     size_t j, sresid_kmeans_result *out);
/* group: SRESID_KIND_* or SRESID_GROUP_ALL. Errors: INVALID_ARG. */
SRESID_API sresid_status sresid_report_group(const sresid_report *report, int32_t group,
                                             sresid_group_report *out);
SRESID_API size_t sresid_report_layer_count(const sresid_report *report);
/* Layers are ordered by stack (byte order of its name), then index; one
 * stack (Llama, GPT-2, BERT): by index. */
SRESID_API sresid_status sresid_report_layer(const sresid_report *report, size_t i,
                                             sresid_layer_report *out);
/* Per-role pairs of adjacent layers of a stack, ordered by layer (stack,
 * then index), then tensor order. */
SRESID_API size_t sresid_report_pair_count(const sresid_report *report);
SRESID_API sresid_status sresid_report_pair(const sresid_report *report, size_t i,
                                            sresid_correlation_report *out);
/* Per stack of at least two layers (in layer order): the means per pair of
 * its adjacent layers, then its first vs last layer as its final entry, so
 * as many entries as the stack has layers; none with the correlation probe
 * off. With one stack: as many entries as layers when there are at least
 * two, the last being first vs last. */
SRESID_API size_t sresid_report_layer_correlation_count(const sresid_report *report);
SRESID_API sresid_status sresid_report_layer_correlation(const sresid_report *report, size_t i,
                                                         sresid_correlation_report *out);

/* Since 1.1: the stack (sresid_model_tensor_stack) of tensor i, of layer i,
 * of per-role pair i, of layer_correlation entry i. *stack is borrowed from
 * the report; "" for a tensor without a layer. Thread-safe.
 * Errors: INVALID_ARG (NULL, index out of range). */
SRESID_API sresid_status sresid_report_tensor_stack(const sresid_report *report, size_t i,
                                                    const char **stack);
SRESID_API sresid_status sresid_report_layer_stack(const sresid_report *report, size_t i,
                                                   const char **stack);
SRESID_API sresid_status sresid_report_pair_stack(const sresid_report *report, size_t i,
                                                  const char **stack);
SRESID_API sresid_status sresid_report_layer_correlation_stack(const sresid_report *report,
                                                               size_t i, const char **stack);

/* sresid_report_json flags */
#define SRESID_JSON_INDENT 0x1u /* two-space indentation instead of compact */

/* The report as JSON (docs/report.md) in a new string; release it with
 * sresid_free. Errors: INVALID_ARG, NOMEM. */
SRESID_API sresid_status sresid_report_json(const sresid_report *report, uint32_t flags,
                                            char **json);
/* Write the JSON to path through a temporary file and rename: never a
 * partial file, never over a file the report read (IO).
 * Errors: INVALID_ARG, IO, NOMEM. */
SRESID_API sresid_status sresid_report_save_json(const sresid_report *report, uint32_t flags,
                                                 const char *path);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_REPORT_H */
