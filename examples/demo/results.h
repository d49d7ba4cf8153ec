/* Everything a run of sr-demo decides and measures: its settings, the
 * stages, the two tables. Filled by the pipeline, read by the printers. */
#ifndef DEMO_RESULTS_H
#define DEMO_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "gpt.h"
#include "tune.h"

#define DEMO_NFRACTIONS 5 /* 100, 50, 25, 10, 5 % */
extern const double demo_fractions[DEMO_NFRACTIONS];

typedef struct demo_settings {
    gpt_config model;       /* vocab from the corpus */
    int quick;
    uint64_t seed;
    int seeds;
    int pretrain_steps, pretrain_batch, pretrain_warmup;
    double pretrain_lr, pretrain_lr_min, weight_decay, clip;
    int steps, batch, ft_warmup;          /* the fine-tuning budget (full and amplitude-only) */
    double ft_lr, ft_lr_min;              /* full fine-tune */
    double amp_lr, amp_lr_min;            /* scores */
    int calib_batches, warm_steps, dyn_every;
    double dyn_share, dyn_stop;
    int eval_windows;
    int threads;
    int fresh;
    const char *corpus_path, *out_dir, *json_path, *svg_path, *cache_dir;
} demo_settings;

/* Table 1, from the library's residual report of full fine-tune - base. */
typedef struct demo_table1 {
    double kurt_attn, kurt_mlp, kurt_all;
    double entropy_bits, entropy_random_bits;      /* group "all" */
    double pr_attn, pr_mlp;                        /* mean PR */
    double prn_attn, prn_mlp;                      /* mean PR / min(m, n) */
    int64_t min_dim_attn, min_dim_mlp;             /* min(m, n) of the first matrix of each kind */
    double corr_mean, corr_lo, corr_hi, corr_first_last; /* adjacent layers: mean, range */
    int corr_pairs;
    double lowfreq;                                /* mean over attention and MLP matrices */
    int nks;
    int32_t ks[8];
    double km_explained[8], km_random[8];          /* mean over attention and MLP matrices */
    uint64_t values;
    double seconds;
} demo_table1;

/* One row of table 2: a rule at a fraction, over the seeds. */
typedef struct demo_row {
    int rule;
    double fraction;
    uint64_t trainable;     /* scores allowed to train */
    double pct_params;      /* of all model parameters */
    double loss_mean, loss_std;
    double impr_mean, impr_std;  /* base task loss - loss */
    double eff_mean, eff_std;    /* improvement / the same seed's improvement at 100 % */
} demo_row;

typedef struct demo_stage {
    int reused;            /* loaded from the cache */
    double seconds;        /* training time (this run; 0 when reused) */
    double train_loss;     /* mean of the last tenth of the steps */
    char path[4096];
} demo_stage;

typedef struct demo_results {
    demo_settings set;
    /* corpus */
    size_t corpus_bytes, pre_bytes, task_bytes;
    size_t pre_train_tokens, pre_val_tokens, task_train_tokens, task_val_tokens;
    uint64_t corpus_hash;
    int by_sections;
    /* model */
    size_t nparams;
    uint64_t scores;        /* amplitude scores (attention + MLP singular values) */
    size_t amp_tensors;
    /* stages */
    demo_stage pretrain, finetune;
    double base_pre_loss, base_task_loss;   /* validation losses of the base */
    double ft_pre_loss, ft_task_loss;       /* ... and of the full fine-tune */
    demo_table1 t1;
    demo_cell *cells;
    size_t ncells;
    double sweep_seconds;
    demo_row *rows;          /* the 100 % row, then rule x fraction */
    size_t nrows;
    double share_mean, share_std; /* amplitude-only 100 % improvement / full fine-tune's */
    double seconds;          /* whole run */
    const char *blis_arch;
} demo_results;

/* Table 2's rows from the cells (mean and sample standard deviation over
 * seeds). Returns 0, or -1 when out of memory. */
int demo_summarize(demo_results *r);

/* JSON of every setting and figure, written to a temporary file beside
 * path and renamed. Returns 0 or -1 with err. */
int demo_write_json(const demo_results *r, const char *path, char *err, size_t errlen);

/* SVG line chart of efficiency against the fraction trained, one line per
 * rule, written like the JSON. Returns 0 or -1 with err. */
int demo_write_svg(const demo_results *r, const char *path, char *err, size_t errlen);

#endif /* DEMO_RESULTS_H */
