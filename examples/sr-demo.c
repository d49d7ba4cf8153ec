/* sr-demo: the study regenerated end to end. A small character-level
 * transformer is pre-trained in C on one part of a corpus, fully fine-tuned
 * on another part, the residual of that fine-tune is probed with the
 * library's report (table 1), and amplitude-only fine-tuning is swept over
 * trained fractions and selection rules (table 2). An example program of
 * libsparseresid: the reference for linking it into C training code. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"
#include "demo/ckpt.h"
#include "demo/corpus.h"
#include "demo/gpt.h"
#include "demo/progress.h"
#include "demo/results.h"
#include "demo/rng.h"
#include "demo/sweep.h"
#include "demo/table1.h"
#include "demo/train.h"
#include "demo/tune.h"

static const char *prog = "sr-demo";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options]\n"
            "\n"
            "Pre-trains a small GPT-style character model on the Lexicon of the bundled\n"
            "Jargon File, fine-tunes it on the book's prose chapters and appendices,\n"
            "probes the residual of that fine-tune (table 1) and sweeps amplitude-only\n"
            "fine-tuning over trained fractions and selection rules (table 2).\n"
            "Checkpoints are cached, so a second run skips the training.\n"
            "\n"
            "  --quick            a small, fast configuration (for tests; under a minute)\n"
            "  --seed S           seed of the whole run (default 1)\n"
            "  --seeds N          seeds per cell of table 2 (default 3; --quick 2)\n"
            "  --steps N          fine-tuning steps, full and amplitude-only (default %d)\n"
            "  --pretrain-steps N pre-training steps (default %d)\n"
            "  --layers N         transformer blocks (default %d)\n"
            "  --dim N            width d (default %d)\n"
            "  --heads N          attention heads, dividing d (default %d)\n"
            "  --context N        tokens per sequence (default %d)\n"
            "  --ft-lr X          peak learning rate of the full fine-tune (default 0.0005)\n"
            "  --amp-lr X         peak learning rate of the scores (default 0.05)\n"
            "  --corpus FILE      another text instead of the bundled one (split by share:\n"
            "                     first 70 %% pre-training, the rest the task)\n"
            "  --out DIR          output directory (default ./sr-demo-out): DIR/cache holds\n"
            "                     the checkpoints, DIR/sr-demo.json the figures,\n"
            "                     DIR/efficiency.svg the chart\n"
            "  --json FILE        write the JSON there instead\n"
            "  --fresh            retrain even when the cache has the checkpoints\n"
            "  --threads N        worker threads (default: SRESID_NUM_THREADS, else all CPUs)\n"
            "  --no-progress      no progress line (shown on stderr only on a terminal)\n"
            "  --verbose          BLIS kernels and timings on stderr\n"
            "  --help             show this text\n"
            "\n"
            "Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog, 60, 800, 4, 128, 4, 64);
}

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

#define xfmt(...) sr_cli_xfmt(prog, __VA_ARGS__)
#define bad_usage(...) sr_cli_bad_usage(prog, __VA_ARGS__)
#define parse_int(opt, s, lo, hi) sr_cli_parse_int(prog, opt, s, lo, hi)
#define parse_real(opt, s, lo, hi) sr_cli_parse_real(prog, opt, s, lo, hi, 0)

/* ---- settings ---- */

static void defaults(demo_settings *s, int quick)
{
    *s = (demo_settings){
        .model = {.dim = 128, .layers = 4, .heads = 4, .context = 64},
        .quick = quick,
        .seed = 1,
        .seeds = 3,
        .pretrain_steps = 800,
        .pretrain_batch = 16,
        .pretrain_warmup = 50,
        .pretrain_lr = 3e-3,
        .pretrain_lr_min = 3e-4,
        .weight_decay = 0.1,
        .clip = 1.0,
        .steps = 60,
        .batch = 8,
        .ft_warmup = 6,
        .ft_lr = 5e-4,
        .ft_lr_min = 1e-4,
        .amp_lr = 5e-2,
        .amp_lr_min = 5e-3,
        .calib_batches = 8,
        .warm_steps = 6,
        .dyn_every = 8,
        .dyn_share = 0.3,
        .dyn_stop = 0.75,
        .eval_windows = 160,
        .out_dir = "sr-demo-out",
    };
    if (quick) {
        s->model = (gpt_config){.dim = 64, .layers = 2, .heads = 2, .context = 32};
        s->seeds = 2;
        s->pretrain_steps = 400;
        s->pretrain_warmup = 20;
        s->steps = 60;
        s->ft_warmup = 6;
        s->calib_batches = 4;
        s->warm_steps = 6;
        s->dyn_every = 8;
        s->eval_windows = 128;
    }
}

typedef struct flags {
    int verbose, no_progress;
} flags;

static void parse_args(int argc, char **argv, demo_settings *s, flags *fl)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            sr_cli_help_done(prog);
        }
        quick |= strcmp(argv[i], "--quick") == 0;
    }
    defaults(s, quick);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int rc;
#define VALUE(name)                                                                            \
    ((rc = sr_cli_opt_value(argc, argv, &i, name, &v)) < 0 ? (bad_usage("%s needs a value", name), 0) \
                                                           : rc)
        if (strcmp(a, "--quick") == 0)
            continue;
        if (strcmp(a, "--fresh") == 0)
            s->fresh = 1;
        else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0)
            fl->verbose = 1;
        else if (strcmp(a, "--no-progress") == 0)
            fl->no_progress = 1;
        else if (VALUE("--seed"))
            s->seed = sr_cli_parse_seed(prog, v);
        else if (VALUE("--seeds"))
            s->seeds = (int)parse_int("--seeds", v, 1, 100);
        else if (VALUE("--steps"))
            s->steps = (int)parse_int("--steps", v, 1, 1000000);
        else if (VALUE("--pretrain-steps"))
            s->pretrain_steps = (int)parse_int("--pretrain-steps", v, 1, 10000000);
        else if (VALUE("--layers"))
            s->model.layers = (int)parse_int("--layers", v, 1, 64);
        else if (VALUE("--dim"))
            s->model.dim = (int)parse_int("--dim", v, 2, 4096);
        else if (VALUE("--heads"))
            s->model.heads = (int)parse_int("--heads", v, 1, 4096);
        else if (VALUE("--context"))
            s->model.context = (int)parse_int("--context", v, 2, 4096);
        else if (VALUE("--ft-lr"))
            s->ft_lr = parse_real("--ft-lr", v, 1e-6, 10);
        else if (VALUE("--amp-lr"))
            s->amp_lr = parse_real("--amp-lr", v, 1e-6, 10);
        else if (VALUE("--threads"))
            s->threads = (int)parse_int("--threads", v, 1, 4096);
        else if (VALUE("--corpus"))
            s->corpus_path = v;
        else if (VALUE("--out"))
            s->out_dir = v;
        else if (VALUE("--json"))
            s->json_path = v;
        else
            bad_usage("unknown option %s", a);
#undef VALUE
    }
    s->ft_lr_min = s->ft_lr / 10;
    s->amp_lr_min = s->amp_lr / 10;
    if (s->model.dim % s->model.heads != 0)
        bad_usage("--heads %d does not divide --dim %d", s->model.heads, s->model.dim);
    if (!*s->out_dir)
        bad_usage("--out needs a directory name");
    if (s->json_path && !*s->json_path)
        bad_usage("--json needs a file name");
    if (s->corpus_path && !*s->corpus_path)
        bad_usage("--corpus needs a file name");
    /* the fixed parts of the budget must fit in it */
    if (s->warm_steps >= s->steps)
        s->warm_steps = s->steps > 1 ? s->steps / 10 + (s->steps / 10 == 0) : 0;
    if (s->ft_warmup > s->steps / 2)
        s->ft_warmup = s->steps / 2;
    if (s->pretrain_warmup > s->pretrain_steps / 2)
        s->pretrain_warmup = s->pretrain_steps / 2;
    if (s->dyn_every > s->steps / 4)
        s->dyn_every = s->steps / 4 > 0 ? s->steps / 4 : 1;
}

/* The bundled corpus: beside the build tree (bin/../examples/demo/data/)
 * or installed (bin/../share/sparseresid/, as `make install` puts it). */
static char *bundled_corpus(void)
{
    static const char *const where[] = {"../examples/demo/data/jargon.txt",
                                        "../share/sparseresid/jargon.txt"};
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
                char *p = xfmt("%s/%s", exe, where[i]);
                if (access(p, R_OK) == 0)
                    return p;
                free(p);
            }
        }
    }
    return xfmt("examples/demo/data/jargon.txt");
}

/* ---- stages ---- */

static char *base_key(const demo_settings *s, const demo_corpus *c)
{
    const gpt_config *m = &s->model;
    return xfmt("sr-demo base 1; corpus %016llx %zu; vocab %d; dim %d; layers %d; heads %d; "
                "context %d; steps %d; batch %d; warmup %d; lr %.17g %.17g; decay %.17g; "
                "clip %.17g; seed %llu",
                (unsigned long long)c->hash, c->bytes, m->vocab, m->dim, m->layers, m->heads,
                m->context, s->pretrain_steps, s->pretrain_batch, s->pretrain_warmup,
                s->pretrain_lr, s->pretrain_lr_min, s->weight_decay, s->clip,
                (unsigned long long)s->seed);
}

static char *ft_key(const demo_settings *s, const char *base)
{
    return xfmt("%s; finetune 1; steps %d; batch %d; warmup %d; lr %.17g %.17g; clip %.17g",
                base, s->steps, s->batch, s->ft_warmup, s->ft_lr, s->ft_lr_min, s->clip);
}

static char *cache_path(const demo_settings *s, const char *what, const char *key)
{
    return xfmt("%s/%s-%016llx.safetensors", s->cache_dir, what,
                (unsigned long long)demo_hash(key, strlen(key)));
}

/* Seeds of the run's random streams. */
static uint64_t seed_init(const demo_settings *s) { return demo_mix(s->seed, 1); }
static uint64_t seed_pretrain(const demo_settings *s) { return demo_mix(s->seed, 2); }
static uint64_t seed_cell(const demo_settings *s, int i) { return demo_mix(s->seed, 100 + (uint64_t)i); }

/* Load a checkpoint from the cache or train it, then save it. */
static void stage(const char *name, const gpt *g, float *params, const char *path,
                  const char *key, const demo_span *span, const demo_train_opts *o,
                  const demo_settings *s, demo_progress *p, demo_stage *out)
{
    char err[1024];
    snprintf(out->path, sizeof out->path, "%s", path);
    if (!s->fresh) {
        float *tmp = gpt_alloc_params(g);
        if (!tmp)
            die("out of memory");
        int rc = demo_ckpt_load(g, tmp, path, key, &out->train_loss, err, sizeof err);
        if (rc < 0)
            die("%s", err);
        if (rc == 1) {
            memcpy(params, tmp, g->nparams * sizeof(float));
            free(tmp);
            out->reused = 1;
            return;
        }
        free(tmp);
    }
    demo_progress_stage(p, name, (uint64_t)o->steps);
    double t0 = demo_now();
    if (demo_train_full(g, params, span, o, p, &out->train_loss, err, sizeof err))
        die("%s: %s", name, err);
    out->seconds = demo_now() - t0;
    demo_progress_clear(p);
    if (demo_ckpt_save(g, params, path, key, out->train_loss, err, sizeof err))
        die("%s", err);
}

/* ---- printing ---- */

static char *fig(double x, int decimals)
{
    return isfinite(x) ? xfmt("%.*f", decimals, x) : xfmt("-");
}

static char *pm(double mean, double std, int decimals, const char *unit)
{
    if (!isfinite(mean))
        return xfmt("-");
    return xfmt("%.*f ± %.*f%s", decimals, mean, decimals, std, unit);
}

static void print_table1(const demo_results *r)
{
    const demo_table1 *t = &r->t1;
    printf("\nTable 1. The residual of the full fine-tune (fine-tuned - base), %llu values\n",
           (unsigned long long)t->values);
    sr_cli_table tb = {.ncols = 3, .right = "lrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&tb, xfmt("figure"), xfmt("this model"), xfmt("study"));
    sr_cli_table_row(&tb, xfmt("excess kurtosis, attention (Gaussian: 0)"), fig(t->kurt_attn, 2),
                     xfmt("49.2"));
    sr_cli_table_row(&tb, xfmt("excess kurtosis, MLP"), fig(t->kurt_mlp, 2), xfmt("1.0"));
    sr_cli_table_row(&tb, xfmt("excess kurtosis, all tensors"), fig(t->kurt_all, 2),
                     xfmt("33.2"));
    sr_cli_table_row(&tb, xfmt("histogram entropy, bits (100 bins)"), fig(t->entropy_bits, 2),
                     xfmt("3.62"));
    sr_cli_table_row(&tb, xfmt("  same count of Gaussian draws"), fig(t->entropy_random_bits, 2),
                     xfmt("6.62"));
    sr_cli_table_row(&tb, xfmt("  ratio"),
                     isfinite(t->entropy_bits / t->entropy_random_bits)
                         ? xfmt("%.0f %%", 100 * t->entropy_bits / t->entropy_random_bits)
                         : xfmt("-"),
                     xfmt("55 %%"));
    sr_cli_table_row(&tb, xfmt("mean participation ratio, attention"),
                     xfmt("%.1f of %lld", t->pr_attn, (long long)t->min_dim_attn), xfmt("35.8"));
    sr_cli_table_row(&tb, xfmt("mean participation ratio, MLP"),
                     xfmt("%.1f of %lld", t->pr_mlp, (long long)t->min_dim_mlp), xfmt("124.6"));
    sr_cli_table_row(&tb, xfmt("  as a share of min(m, n): attention / MLP"),
                     xfmt("%.2f / %.2f", t->prn_attn, t->prn_mlp), xfmt("-"));
    sr_cli_table_row(&tb, xfmt("adjacent-layer correlation, mean r"), fig(t->corr_mean, 4),
                     xfmt("≈ 0.007"));
    sr_cli_table_row(&tb, xfmt("  range over adjacent pairs"),
                     t->corr_pairs ? xfmt("%.4f .. %.4f", t->corr_lo, t->corr_hi) : xfmt("-"),
                     xfmt("0.002 .. 0.009"));
    sr_cli_table_row(&tb, xfmt("  first vs last layer"), fig(t->corr_first_last, 4), xfmt("-"));
    sr_cli_table_row(&tb, xfmt("low-frequency power vs white noise"),
                     isfinite(t->lowfreq) ? xfmt("%.2f×", t->lowfreq) : xfmt("-"),
                     xfmt("0.96×"));
    for (int j = 0; j < t->nks; j++)
        sr_cli_table_row(&tb,
                         j == 0 ? xfmt("k-means explained variance over random, K = %d",
                                       (int)t->ks[j])
                                : xfmt("  K = %d", (int)t->ks[j]),
                         isfinite(t->km_explained[j] - t->km_random[j])
                             ? xfmt("%+.2f pt (%.2f vs %.2f %%)",
                                    100 * (t->km_explained[j] - t->km_random[j]),
                                    100 * t->km_explained[j], 100 * t->km_random[j])
                             : xfmt("-"),
                         xfmt(j == 0 ? "0.00 .. 0.02 %%" : ""));
    sr_cli_table_print(&tb);
    printf("  (kurtosis and entropy over every tensor of a component; PR, low-frequency power\n"
           "   and k-means: means over the attention and MLP matrices)\n");
}

static const char *study_eff(double f)
{
    return f == 1.0 ? "100 %" : f == 0.5 ? "52 %" : f == 0.25 ? "23 %" : f == 0.1 ? "-30 %"
                                                                                   : "-52 %";
}

static void print_table2(const demo_results *r)
{
    const demo_settings *s = &r->set;
    printf("\nTable 2. Amplitude-only fine-tuning from the base, %d steps each, %d seed%s "
           "(mean ± std)\n",
           s->steps, s->seeds, s->seeds == 1 ? "" : "s");
    printf("  base task validation loss %.4f nats; full fine-tune %.4f (improvement %.4f)\n",
           r->base_task_loss, r->ft_task_loss, r->base_task_loss - r->ft_task_loss);
    sr_cli_table tb = {.ncols = 8, .right = "lrrrrrrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&tb, xfmt("rule"), xfmt("scores"), xfmt("trainable"), xfmt("%% of params"),
                     xfmt("val loss"), xfmt("improvement"), xfmt("efficiency"),
                     xfmt("study (magnitude)"));
    for (size_t i = 0; i < r->nrows; i++) {
        const demo_row *row = &r->rows[i];
        sr_cli_table_row(&tb,
                         xfmt("%s", row->rule == DEMO_RULE_ALL ? "any (all scores)"
                                                               : demo_rule_name(row->rule)),
                         xfmt("%g %%", 100 * row->fraction),
                         xfmt("%llu", (unsigned long long)row->trainable),
                         xfmt("%.3f %%", row->pct_params), pm(row->loss_mean, row->loss_std, 4, ""),
                         pm(row->impr_mean, row->impr_std, 4, ""),
                         row->rule == DEMO_RULE_ALL ? xfmt("100 %%")
                                                    : pm(100 * row->eff_mean, 100 * row->eff_std,
                                                         0, " %"),
                         xfmt("%s", row->rule == DEMO_RULE_ALL ||
                                            row->rule == DEMO_RULE_MAGNITUDE
                                        ? study_eff(row->fraction)
                                        : ""));
    }
    sr_cli_table_print(&tb);
    printf("  amplitude-only, all scores (%.2f %% of the parameters): %.0f ± %.0f %% of the full\n"
           "  fine-tune's improvement (study: 92 %% with 2.3 %% of the parameters)\n",
           r->rows[0].pct_params, 100 * r->share_mean, 100 * r->share_std);
    /* the best rule at the smallest fractions */
    for (size_t k = DEMO_NFRACTIONS - 2; k < DEMO_NFRACTIONS; k++) {
        double f = demo_fractions[k], best = -INFINITY;
        int who = -1;
        for (size_t i = 0; i < r->nrows; i++)
            if (r->rows[i].fraction == f && r->rows[i].eff_mean > best) {
                best = r->rows[i].eff_mean;
                who = r->rows[i].rule;
            }
        if (who >= 0)
            printf("  best rule at %g %%: %s (%.0f %%)\n", 100 * f, demo_rule_name(who),
                   100 * best);
    }
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    int verbose = 0;
    for (int i = 1; i < argc; i++)
        verbose |= strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0;
    sr_cli_say_blis(verbose);
    prog = sr_cli_prog(argc > 0 ? argv[0] : NULL);
    double t_start = demo_now();

    static demo_results R;
    demo_settings *s = &R.set;
    flags fl = {0};
    parse_args(argc, argv, s, &fl);
    if (!s->threads)
        s->threads = sresid_get_threads();
    char err[1024];

    /* corpus */
    char *bundled = NULL;
    const char *cpath = s->corpus_path;
    if (!cpath)
        cpath = bundled = bundled_corpus();
    demo_corpus corpus;
    if (demo_corpus_load(cpath, s->model.context, &corpus, err, sizeof err))
        die("%s", err);
    s->corpus_path = cpath;
    s->model.vocab = corpus.vocab;
    const char *bad = gpt_config_check(&s->model);
    if (bad)
        die("%s", bad);
    R.corpus_bytes = corpus.bytes;
    R.corpus_hash = corpus.hash;
    R.by_sections = corpus.by_sections;
    R.pre_bytes = corpus.pre_bytes;
    R.task_bytes = corpus.task_bytes;
    R.pre_train_tokens = corpus.pre_train.len;
    R.pre_val_tokens = corpus.pre_val.len;
    R.task_train_tokens = corpus.task_train.len;
    R.task_val_tokens = corpus.task_val.len;
    R.blis_arch = sresid_blas_arch();

    gpt g;
    if (gpt_init(&g, &s->model))
        die("out of memory");
    R.nparams = g.nparams;
    for (size_t i = 0; i < g.ntensors; i++)
        R.amp_tensors += (size_t)g.tensors[i].is_matrix;

    /* output and cache directories */
    char *cache_dir = xfmt("%s/cache", s->out_dir);
    s->cache_dir = cache_dir;
    if (demo_mkdirs(cache_dir, err, sizeof err))
        die("%s", err);
    char *json_path = s->json_path ? NULL : xfmt("%s/sr-demo.json", s->out_dir);
    if (!s->json_path)
        s->json_path = json_path;
    char *svg_path = xfmt("%s/efficiency.svg", s->out_dir);
    s->svg_path = svg_path;

    printf("sr-demo: libsparseresid %s, BLIS kernels %s, %d threads\n", sresid_version_string(),
           R.blis_arch, s->threads);
    printf("corpus: %s, %zu bytes, %d symbols; pre-training part %zu bytes (%s), task part "
           "%zu bytes; every 10th block held out for validation\n",
           cpath, corpus.bytes, corpus.vocab, corpus.pre_bytes,
           corpus.by_sections ? "the Lexicon" : "first 70 %", corpus.task_bytes);
    printf("model: d %d, %d layers, %d heads, context %d, %zu parameters; seed %llu\n",
           s->model.dim, s->model.layers, s->model.heads, s->model.context, g.nparams,
           (unsigned long long)s->seed);
    fflush(stdout);

    demo_progress prog_line;
    demo_progress_init(&prog_line, !fl.no_progress && isatty(2));

    /* 1. pre-training */
    float *base = gpt_alloc_params(&g), *ft = gpt_alloc_params(&g);
    if (!base || !ft)
        die("out of memory");
    gpt_init_params(&g, base, seed_init(s));
    char *bkey = base_key(s, &corpus), *fkey = ft_key(s, bkey);
    char *bpath = cache_path(s, "base", bkey), *fpath = cache_path(s, "finetune", fkey);
    demo_train_opts po = {.steps = s->pretrain_steps,
                          .batch = s->pretrain_batch,
                          .warmup = s->pretrain_warmup,
                          .lr = s->pretrain_lr,
                          .lr_min = s->pretrain_lr_min,
                          .weight_decay = s->weight_decay,
                          .clip = s->clip,
                          .threads = s->threads,
                          .seed = seed_pretrain(s)};
    stage("pre-training", &g, base, bpath, bkey, &corpus.pre_train, &po, s, &prog_line,
          &R.pretrain);
    gpt_work *ew = gpt_work_create(&g, s->batch, 1);
    if (!ew)
        die("out of memory");
    R.base_pre_loss = demo_eval(&g, base, ew, s->batch, &corpus.pre_val, s->eval_windows);
    R.base_task_loss = demo_eval(&g, base, ew, s->batch, &corpus.task_val, s->eval_windows);
    char *how = R.pretrain.reused ? xfmt(", reused from the cache")
                                  : xfmt(" in %.1f s", R.pretrain.seconds);
    printf("pre-training: %d steps of %d x %d tokens%s; validation loss %.4f (pre-training "
           "text), %.4f (task)\n",
           s->pretrain_steps, s->pretrain_batch, s->model.context, how, R.base_pre_loss,
           R.base_task_loss);
    free(how);

    /* 2. full fine-tune: no weight decay, so the residual is the task's alone */
    memcpy(ft, base, g.nparams * sizeof(float));
    demo_train_opts fo = {.steps = s->steps,
                          .batch = s->batch,
                          .warmup = s->ft_warmup,
                          .lr = s->ft_lr,
                          .lr_min = s->ft_lr_min,
                          .clip = s->clip,
                          .threads = s->threads,
                          .seed = seed_cell(s, 0)};
    stage("full fine-tune", &g, ft, fpath, fkey, &corpus.task_train, &fo, s, &prog_line,
          &R.finetune);
    R.ft_pre_loss = demo_eval(&g, ft, ew, s->batch, &corpus.pre_val, s->eval_windows);
    R.ft_task_loss = demo_eval(&g, ft, ew, s->batch, &corpus.task_val, s->eval_windows);
    how = R.finetune.reused ? xfmt(", reused from the cache")
                            : xfmt(" in %.1f s", R.finetune.seconds);
    printf("full fine-tune: %d steps of %d x %d tokens%s; validation loss %.4f (task), %.4f "
           "(pre-training text)\n",
           s->steps, s->batch, s->model.context, how, R.ft_task_loss, R.ft_pre_loss);
    free(how);
    fflush(stdout);

    /* 3. table 1 */
    sresid_model *mbase = NULL, *mft = NULL;
    if (demo_model_view(&g, base, &mbase, err, sizeof err) ||
        demo_model_view(&g, ft, &mft, err, sizeof err))
        die("%s", err);
    demo_progress_stage(&prog_line, "residual report", 1);
    if (demo_table1_run(mbase, mft, s->seed, s->threads, &prog_line, &R.t1, err, sizeof err))
        die("%s", err);
    demo_progress_clear(&prog_line);

    /* 4. table 2: the library's own products run on one thread per cell */
    demo_tune_ctx ctx = {.g = &g,
                         .base = base,
                         .base_model = mbase,
                         .train = &corpus.task_train,
                         .val = &corpus.task_val,
                         .steps = s->steps,
                         .batch = s->batch,
                         .eval_windows = s->eval_windows,
                         .lr = s->amp_lr,
                         .lr_min = s->amp_lr_min,
                         .warmup = s->ft_warmup,
                         .calib_batches = s->calib_batches,
                         .warm_steps = s->warm_steps,
                         .dyn_every = s->dyn_every,
                         .dyn_share = s->dyn_share,
                         .dyn_stop = s->dyn_stop};
    size_t per_seed = 1 + (DEMO_RULE_COUNT - 1) * (DEMO_NFRACTIONS - 1);
    R.ncells = per_seed * (size_t)s->seeds;
    R.cells = calloc(R.ncells, sizeof *R.cells);
    if (!R.cells)
        die("out of memory");
    uint64_t units = 0;
    size_t at = 0;
    for (int i = 0; i < s->seeds; i++)
        for (int rule = DEMO_RULE_ALL; rule < DEMO_RULE_COUNT; rule++)
            for (int k = rule == DEMO_RULE_ALL ? 0 : 1;
                 k < (rule == DEMO_RULE_ALL ? 1 : DEMO_NFRACTIONS); k++) {
                demo_cell *c = &R.cells[at++];
                c->rule = rule;
                c->fraction = demo_fractions[k];
                c->seed_index = i;
                c->seed = seed_cell(s, i);
                units += (uint64_t)s->steps +
                         (rule == DEMO_RULE_GRADIENT ? (uint64_t)s->calib_batches : 0);
            }
    int32_t lib_threads = sresid_get_threads();
    sresid_set_threads(1);
    demo_progress_stage(&prog_line, "amplitude-only sweep", units);
    double t_sweep = demo_now();
    int sweep_rc = demo_sweep(&ctx, R.cells, R.ncells, s->threads, &prog_line);
    R.sweep_seconds = demo_now() - t_sweep;
    demo_progress_clear(&prog_line);
    sresid_set_threads(lib_threads);
    if (sweep_rc)
        for (size_t i = 0; i < R.ncells; i++)
            if (R.cells[i].failed)
                die("amplitude-only run (%s, %g %%, seed %d): %s",
                    demo_rule_name(R.cells[i].rule), 100 * R.cells[i].fraction,
                    R.cells[i].seed_index, R.cells[i].err);
    R.scores = R.cells[0].scores;
    if (demo_summarize(&R))
        die("out of memory");

    print_table1(&R);
    print_table2(&R);
    R.seconds = demo_now() - t_start;
    if (demo_write_json(&R, s->json_path, err, sizeof err) ||
        demo_write_svg(&R, s->svg_path, err, sizeof err))
        die("%s", err);
    printf("\nwrote %s and %s; sweep %.1f s, total %.1f s\n", s->json_path, s->svg_path,
           R.sweep_seconds, R.seconds);

    demo_progress_destroy(&prog_line);
    sresid_model_free(mbase);
    sresid_model_free(mft);
    gpt_work_free(ew);
    free(R.cells);
    free(R.rows);
    free(base);
    free(ft);
    free(bkey);
    free(fkey);
    free(bpath);
    free(fpath);
    free(cache_dir);
    free(json_path);
    free(svg_path);
    free(bundled);
    demo_corpus_free(&corpus);
    gpt_free(&g);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: error writing the output\n", prog);
        return 1;
    }
    return 0;
}
