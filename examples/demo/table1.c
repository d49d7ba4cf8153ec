/* The residual report over full fine-tune - base, reduced to the study's
 * figures: kurtosis and entropy by component from the report's groups,
 * participation ratio by kind, the adjacent-layer correlations, and the
 * low-frequency and k-means figures averaged over the attention and MLP
 * matrices (the embeddings and the output head are matrices too, but the
 * study's figures are about the blocks' weights). */
#include "table1.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "progress.h"

static void on_progress(void *user, size_t done, size_t total, const char *name)
{
    (void)name;
    demo_progress_set(user, done, total);
}

int demo_table1_run(const sresid_model *base, const sresid_model *trained, uint64_t seed,
                    int threads, demo_progress *progress, demo_table1 *t, char *err,
                    size_t errlen)
{
    double t0 = demo_now();
    memset(t, 0, sizeof *t);
    static const int32_t ks[] = {2, 4, 8, 16};
    sresid_residual *res = NULL;
    sresid_report *rep = NULL;
    sresid_status st = sresid_residual_create(base, trained, NULL, &res);
    if (st) {
        snprintf(err, errlen, "pairing the checkpoints: %s", sresid_last_error());
        return -1;
    }
    sresid_report_opts o = {.size = sizeof o,
                            .flags = SRESID_REPORT_FAIL_NONFINITE,
                            .seed = seed,
                            .ks = ks,
                            .nks = 4,
                            .threads = threads,
                            .progress = progress ? on_progress : NULL,
                            .progress_user = progress};
    st = sresid_report_residual(res, &o, &rep);
    if (st) {
        snprintf(err, errlen, "residual report: %s", sresid_last_error());
        sresid_residual_free(res);
        return -1;
    }

    sresid_group_report ga = {.size = sizeof ga}, gm = {.size = sizeof gm},
                        gall = {.size = sizeof gall};
    sresid_report_group(rep, SRESID_KIND_ATTENTION, &ga);
    sresid_report_group(rep, SRESID_KIND_MLP, &gm);
    sresid_report_group(rep, SRESID_GROUP_ALL, &gall);
    t->kurt_attn = ga.kurtosis;
    t->kurt_mlp = gm.kurtosis;
    t->kurt_all = gall.kurtosis;
    t->entropy_bits = gall.entropy_bits;
    t->entropy_random_bits = gall.entropy_random_bits;
    t->pr_attn = ga.mean_pr;
    t->pr_mlp = gm.mean_pr;
    t->values = gall.count;

    /* per matrix figures of the blocks */
    t->nks = 4;
    memcpy(t->ks, ks, sizeof ks);
    double prn[2] = {0, 0}, lf = 0, km[4] = {0}, kr[4] = {0};
    int nprn[2] = {0, 0}, nlf = 0, nkm[4] = {0};
    size_t nt = sresid_report_tensor_count(rep);
    for (size_t i = 0; i < nt; i++) {
        sresid_tensor_report tr = {.size = sizeof tr};
        if (sresid_report_tensor(rep, i, &tr) || !tr.is_matrix)
            continue;
        int k = tr.kind == SRESID_KIND_ATTENTION ? 0 : tr.kind == SRESID_KIND_MLP ? 1 : -1;
        if (k < 0)
            continue;
        int64_t md = tr.rows < tr.cols ? tr.rows : tr.cols;
        if (k == 0 && !t->min_dim_attn)
            t->min_dim_attn = md;
        if (k == 1 && !t->min_dim_mlp)
            t->min_dim_mlp = md;
        if (isfinite(tr.pr_normalized))
            prn[k] += tr.pr_normalized, nprn[k]++;
        if (isfinite(tr.lowfreq_ratio))
            lf += tr.lowfreq_ratio, nlf++;
        for (size_t j = 0; j < 4; j++) {
            sresid_kmeans_result kmr = {.size = sizeof kmr};
            if (sresid_report_tensor_kmeans(rep, i, j, &kmr) == SRESID_OK &&
                isfinite(kmr.explained) && isfinite(kmr.explained_random)) {
                km[j] += kmr.explained;
                kr[j] += kmr.explained_random;
                nkm[j]++;
            }
        }
    }
    t->prn_attn = nprn[0] ? prn[0] / nprn[0] : NAN;
    t->prn_mlp = nprn[1] ? prn[1] / nprn[1] : NAN;
    t->lowfreq = nlf ? lf / nlf : NAN;
    for (int j = 0; j < 4; j++) {
        t->km_explained[j] = nkm[j] ? km[j] / nkm[j] : NAN;
        t->km_random[j] = nkm[j] ? kr[j] / nkm[j] : NAN;
    }

    /* adjacent layers: every entry but the last (first vs last layer) */
    size_t nc = sresid_report_layer_correlation_count(rep);
    double sum = 0;
    t->corr_lo = INFINITY;
    t->corr_hi = -INFINITY;
    t->corr_first_last = NAN;
    for (size_t i = 0; i < nc; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        if (sresid_report_layer_correlation(rep, i, &c) || !isfinite(c.r))
            continue;
        if (i + 1 == nc) {
            t->corr_first_last = c.r;
            continue;
        }
        sum += c.r;
        t->corr_pairs++;
        t->corr_lo = fmin(t->corr_lo, c.r);
        t->corr_hi = fmax(t->corr_hi, c.r);
    }
    t->corr_mean = t->corr_pairs ? sum / t->corr_pairs : NAN;
    if (!t->corr_pairs)
        t->corr_lo = t->corr_hi = NAN;
    sresid_report_free(rep);
    sresid_residual_free(res);
    t->seconds = demo_now() - t0;
    return 0;
}
