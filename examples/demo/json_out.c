/* The run as one JSON document (Jansson): settings, corpus, model, stages,
 * both tables beside the study's figures, and the timings apart from the
 * figures, so two runs' figures compare equal with a plain dict compare. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include <sparseresid/sparseresid.h>

#include "atomic.h"
#include "results.h"

/* NaN and Inf have no JSON form: null. */
static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *settings(const demo_settings *s)
{
    return json_pack(
        "{s:b, s:I, s:i, s:{s:i, s:i, s:i, s:i, s:i},"
        " s:{s:i, s:i, s:i, s:o, s:o, s:o, s:o},"
        " s:{s:i, s:i, s:i, s:o, s:o},"
        " s:{s:s, s:s, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:b},"
        " s:i, s:i, s:s, s:s, s:s}",
        "quick", s->quick, "seed", (json_int_t)s->seed, "seeds", s->seeds,
        "model", "vocab", s->model.vocab, "dim", s->model.dim, "layers", s->model.layers,
        "heads", s->model.heads, "context", s->model.context,
        "pretrain", "steps", s->pretrain_steps, "batch", s->pretrain_batch, "warmup",
        s->pretrain_warmup, "lr", num(s->pretrain_lr), "lr_min", num(s->pretrain_lr_min),
        "weight_decay", num(s->weight_decay), "clip", num(s->clip),
        "finetune", "steps", s->steps, "batch", s->batch, "warmup", s->ft_warmup, "lr",
        num(s->ft_lr), "lr_min", num(s->ft_lr_min),
        "amplitude", "layout", "diag", "kinds", "attention,mlp", "lr", num(s->amp_lr), "lr_min",
        num(s->amp_lr_min), "calibration_batches", s->calib_batches, "warmup_steps",
        s->warm_steps, "dynamic_every", s->dyn_every, "dynamic_share", num(s->dyn_share),
        "dynamic_stop", num(s->dyn_stop), "selection_per_tensor", 0,
        "eval_windows", s->eval_windows, "threads", s->threads, "corpus", s->corpus_path,
        "out_dir", s->out_dir, "cache_dir", s->cache_dir);
}

static json_t *table1(const demo_table1 *t)
{
    json_t *km = json_array();
    for (int j = 0; j < t->nks; j++)
        json_array_append_new(km, json_pack("{s:i, s:o, s:o, s:o}", "k", (int)t->ks[j],
                                            "explained", num(t->km_explained[j]), "random",
                                            num(t->km_random[j]), "difference",
                                            num(t->km_explained[j] - t->km_random[j])));
    json_t *mine = json_pack(
        "{s:{s:o, s:o, s:o, s:i}, s:{s:o, s:o, s:o}, s:{s:o, s:o, s:o, s:o, s:I, s:I},"
        " s:{s:o, s:o, s:o, s:o, s:i}, s:o, s:o, s:I}",
        "kurtosis", "attention", num(t->kurt_attn), "mlp", num(t->kurt_mlp), "all",
        num(t->kurt_all), "gaussian", 0,
        "entropy_bits", "all", num(t->entropy_bits), "random", num(t->entropy_random_bits),
        "ratio", num(t->entropy_bits / t->entropy_random_bits),
        "participation_ratio", "attention", num(t->pr_attn), "mlp", num(t->pr_mlp),
        "attention_share", num(t->prn_attn), "mlp_share", num(t->prn_mlp), "attention_min_dim",
        (json_int_t)t->min_dim_attn, "mlp_min_dim", (json_int_t)t->min_dim_mlp,
        "layer_correlation", "adjacent_mean", num(t->corr_mean), "adjacent_min",
        num(t->corr_lo), "adjacent_max", num(t->corr_hi), "first_last", num(t->corr_first_last),
        "adjacent_pairs", t->corr_pairs,
        "lowfreq_ratio", num(t->lowfreq), "kmeans", km, "values", (json_int_t)t->values);
    json_t *study = json_pack(
        "{s:{s:f, s:f, s:f}, s:{s:f, s:f, s:f}, s:{s:f, s:f}, s:{s:f, s:f, s:f},"
        " s:f, s:{s:f, s:f}}",
        "kurtosis", "attention", 49.2, "mlp", 1.0, "all", 33.2,
        "entropy_bits", "all", 3.62, "random", 6.62, "ratio", 0.55,
        "participation_ratio", "attention", 35.8, "mlp", 124.6,
        "layer_correlation", "adjacent_min", 0.002, "adjacent_max", 0.009, "adjacent_mean", 0.007,
        "lowfreq_ratio", 0.96,
        "kmeans_difference", "min", 0.0, "max", 0.0002);
    return json_pack("{s:o, s:o}", "this_model", mine, "study", study);
}

static json_t *table2(const demo_results *r)
{
    json_t *rows = json_array(), *cells = json_array();
    for (size_t i = 0; i < r->nrows; i++) {
        const demo_row *w = &r->rows[i];
        json_array_append_new(
            rows, json_pack("{s:s, s:f, s:I, s:o, s:{s:o, s:o}, s:{s:o, s:o}, s:{s:o, s:o}}",
                            "rule", demo_rule_name(w->rule), "fraction", w->fraction,
                            "trainable", (json_int_t)w->trainable, "percent_of_params",
                            num(w->pct_params), "val_loss", "mean", num(w->loss_mean), "std",
                            num(w->loss_std), "improvement", "mean", num(w->impr_mean), "std",
                            num(w->impr_std), "efficiency", "mean", num(w->eff_mean), "std",
                            num(w->eff_std)));
    }
    for (size_t i = 0; i < r->ncells; i++) {
        const demo_cell *c = &r->cells[i];
        json_array_append_new(cells,
                              json_pack("{s:s, s:f, s:i, s:I, s:I, s:o, s:o}", "rule",
                                        demo_rule_name(c->rule), "fraction", c->fraction,
                                        "seed_index", c->seed_index, "seed", (json_int_t)c->seed,
                                        "trainable", (json_int_t)c->trainable, "val_loss",
                                        num(c->val_loss), "improvement",
                                        num(r->base_task_loss - c->val_loss)));
    }
    json_t *study = json_pack("{s:[f, f, f, f, f], s:[f, f, f, f, f], s:f, s:f}", "fractions",
                              1.0, 0.5, 0.25, 0.1, 0.05, "efficiency_magnitude", 1.0, 0.52, 0.23,
                              -0.30, -0.52, "share_of_full_finetune", 0.92,
                              "percent_of_params_all_scores", 2.3);
    return json_pack("{s:I, s:o, s:o, s:{s:o, s:o}, s:o, s:o, s:o}", "scores",
                     (json_int_t)r->scores, "base_task_loss", num(r->base_task_loss),
                     "full_finetune_task_loss", num(r->ft_task_loss), "share_of_full_finetune",
                     "mean", num(r->share_mean), "std", num(r->share_std), "rows", rows, "cells",
                     cells, "study", study);
}

static json_t *stage(const demo_stage *st, double pre, double task)
{
    return json_pack("{s:b, s:s, s:o, s:o, s:o}", "reused", st->reused, "checkpoint", st->path,
                     "train_loss", num(st->train_loss), "val_loss_pretrain_text", num(pre),
                     "val_loss_task", num(task));
}

int demo_write_json(const demo_results *r, const char *path, char *err, size_t errlen)
{
    json_t *cell_secs = json_array();
    for (size_t i = 0; i < r->ncells; i++)
        json_array_append_new(cell_secs, num(r->cells[i].seconds));
    json_t *doc = json_pack(
        "{s:s, s:i, s:s, s:s, s:o,"
        " s:{s:s, s:I, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:s},"
        " s:{s:o, s:o}, s:o, s:o,"
        " s:{s:o, s:o, s:o, s:o, s:o, s:o}}",
        "format", "sr-demo", "format_version", 1, "library", sresid_version_string(),
        "blis_arch", r->blis_arch ? r->blis_arch : "unknown", "settings", settings(&r->set),
        "corpus", "path", r->set.corpus_path, "bytes", (json_int_t)r->corpus_bytes, "fnv1a64",
        "", "split_by_sections", r->by_sections, "pretrain_bytes", (json_int_t)r->pre_bytes,
        "task_bytes", (json_int_t)r->task_bytes, "pretrain_train_tokens",
        (json_int_t)r->pre_train_tokens, "pretrain_val_tokens", (json_int_t)r->pre_val_tokens,
        "task_train_tokens", (json_int_t)r->task_train_tokens, "task_val_tokens",
        (json_int_t)r->task_val_tokens,
        "model", "parameters", (json_int_t)r->nparams, "amplitude_scores", (json_int_t)r->scores,
        "amplitude_matrices", (json_int_t)r->amp_tensors, "head", "separate lm_head",
        "stages", "pretrain", stage(&r->pretrain, r->base_pre_loss, r->base_task_loss),
        "finetune", stage(&r->finetune, r->ft_pre_loss, r->ft_task_loss),
        "table1", table1(&r->t1), "table2", table2(r),
        "timing", "pretrain_seconds", num(r->pretrain.seconds), "finetune_seconds",
        num(r->finetune.seconds), "report_seconds", num(r->t1.seconds), "sweep_seconds",
        num(r->sweep_seconds), "total_seconds", num(r->seconds), "cell_seconds", cell_secs);
    if (!doc) {
        snprintf(err, errlen, "cannot build the JSON document (out of memory?)");
        return -1;
    }
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)r->corpus_hash);
    json_object_set_new(json_object_get(doc, "corpus"), "fnv1a64", json_string(hash));
    demo_afile a;
    int rc = demo_afile_open(&a, path, err, errlen);
    if (rc == 0) {
        if (json_dumpf(doc, a.f, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
            demo_afile_abort(&a);
            snprintf(err, errlen, "cannot write %s", path);
            rc = -1;
        } else {
            fputc('\n', a.f);
            rc = demo_afile_commit(&a, err, errlen);
        }
    }
    json_decref(doc);
    return rc;
}
