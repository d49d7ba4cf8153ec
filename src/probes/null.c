/* Permutation null of a matrix probe: the probe on the matrix against its
 * distribution over random shuffles of the same entries, which keep the
 * values (their histogram) and destroy every arrangement (rank, smoothness,
 * clusters). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "util/util.h"

/* T = sum over rows of ||x - mean row||^2 (the k-means total scatter). */
static int total_scatter(const float *x, int64_t rows, int64_t cols, int64_t ld, double *t)
{
    double *mean = calloc((size_t)cols + 1, sizeof *mean);
    if (!mean)
        return 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            mean[j] += x[i * ld + j];
    for (int64_t j = 0; j < cols; j++)
        mean[j] /= (double)rows;
    double s = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double d = x[i * ld + j] - mean[j];
            s += d * d;
        }
    free(mean);
    *t = s;
    return 1;
}

/* The figure of one probe; errors come from the probe itself. */
static sresid_status run_probe(uint32_t probe, const float *a, int64_t rows, int64_t cols,
                               int64_t ld, double param, double *v)
{
    switch (probe) {
    case SRESID_PROBE_PR:
        return sresid_participation_ratio(a, rows, cols, ld, v, NULL);
    case SRESID_PROBE_LOWFREQ:
        return sresid_lowfreq_ratio(a, rows, cols, ld, param, v);
    default: { /* SRESID_PROBE_KMEANS: explained variance 1 - W_K / T, k-means
                * seed 0 on the matrix and on every shuffle (docs/probes.md) */
        double w, t;
        sresid_kmeans_opts o = {.size = sizeof o, .seed = 0};
        sresid_status st =
            sresid_kmeans_fit(a, rows, cols, ld, (int32_t)param, &o, NULL, NULL, &w, NULL);
        if (st != SRESID_OK)
            return st;
        if (!total_scatter(a, rows, cols, ld, &t))
            return sresid__fail(SRESID_ERR_NOMEM, "sresid_permutation_null: out of memory");
        *v = t > 0 ? 1 - w / t : NAN;
        return SRESID_OK;
    }
    }
}

sresid_status sresid_permutation_null(uint32_t probe, const float *a, int64_t rows, int64_t cols,
                                      int64_t ld, double param, int32_t draws, uint64_t seed,
                                      sresid_null_result *out)
{
    static const char *const fn = "sresid_permutation_null";
    sresid_status st = sresid__check_matrix(a, rows, cols, ld, fn);
    if (st != SRESID_OK)
        return st;
    if (!out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if (out->size < sizeof *out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: out->size %zu is too small (want %zu)",
                            fn, out->size, sizeof *out);
    if (draws < 1 || draws > 10000)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: draws %d is not in [1, 10000]", fn,
                            (int)draws);
    switch (probe) {
    case SRESID_PROBE_PR:
        break;
    case SRESID_PROBE_LOWFREQ:
        if (!(param >= 0 && param <= 1))
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: band %g is not in (0, 1] (or 0)",
                                fn, param);
        break;
    case SRESID_PROBE_KMEANS:
        if (!(param >= 1 && param <= (double)rows && param <= INT32_MAX && param == floor(param)))
            return sresid__fail(SRESID_ERR_INVALID_ARG,
                                "%s: K = %g is not an integer in [1, rows = %lld]", fn, param,
                                (long long)rows);
        break;
    default:
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: probe 0x%x is not SRESID_PROBE_PR, _LOWFREQ or _KMEANS", fn,
                            (unsigned)probe);
    }
    if (!sresid__all_finite(a, rows, cols, ld))
        return sresid__fail(SRESID_ERR_NONFINITE, "%s: the matrix has NaN or Inf values", fn);

    double observed;
    if ((st = run_probe(probe, a, rows, cols, ld, param, &observed)) != SRESID_OK)
        return st;

    size_t n = (size_t)rows * (size_t)cols;
    float *buf = malloc((n + SRESID__BLAS_SLACK) * sizeof *buf);
    if (!buf)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
    sresid__rng rng;
    sresid__rng_seed(&rng, seed);
    double mean = 0, m2 = 0; /* Welford */
    for (int32_t d = 0; d < draws; d++) {
        for (int64_t i = 0; i < rows; i++)
            memcpy(buf + i * cols, a + i * ld, (size_t)cols * sizeof *buf);
        for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
            size_t j = (size_t)sresid__rng_below(&rng, i);
            float t = buf[i - 1];
            buf[i - 1] = buf[j];
            buf[j] = t;
        }
        double v;
        st = run_probe(probe, buf, rows, cols, cols ? cols : 1, param, &v);
        if (st != SRESID_OK) {
            free(buf);
            return st;
        }
        double delta = v - mean;
        mean += delta / (d + 1);
        m2 += delta * (v - mean);
    }
    free(buf);

    double sd = draws >= 2 ? sqrt(m2 / (draws - 1)) : NAN;
    sresid_null_result r = {.size = out->size, .draws = draws, .observed = observed,
                            .mean = mean, .std = sd};
    r.z = draws >= 2 && sd > 0 ? (observed - mean) / sd : NAN;
    memcpy(out, &r, sizeof r);
    return SRESID_OK;
}
