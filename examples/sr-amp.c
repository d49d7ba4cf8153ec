/* sr-amp: amplitude-only fine-tuning of a checkpoint's weight matrices, in
 * closed form. `share` measures how much of a fine-tune's residual the
 * amplitude scores can capture (all of them, or a fraction chosen by initial
 * magnitude or by the oracle); `fit` writes the checkpoint those scores give.
 * An example program of libsparseresid. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"
#include "cli_json.h"

static const char *prog = "sr-amp";
#define bad_usage(...) sr_cli_bad_usage(prog, __VA_ARGS__)
#define die(...) sr_cli_fatal(prog, __VA_ARGS__)
#define xmalloc(n) sr_cli_xmalloc(prog, n)
#define xfmt(...) sr_cli_xfmt(prog, __VA_ARGS__)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s share BASE TRAINED [options]\n"
            "       %s fit BASE TRAINED -o OUT.safetensors [options]\n"
            "\n"
            "Keeps each selected weight matrix of BASE as W0 = U diag(s0) V^T (a thin\n"
            "SVD) and lets only the amplitudes (\"scores\") change.\n"
            "share: the share of the residual energy |TRAINED - BASE|^2 of each matrix\n"
            "       that the scores can capture, in closed form (D = U^T R V): with all\n"
            "       scores, and with a fraction of them chosen by initial magnitude |s0|\n"
            "       (the study's rule) or by |D| (the oracle, the best possible).\n"
            "fit:   the best scores for TRAINED (all, or a fraction chosen by --rule),\n"
            "       exported as a full checkpoint OUT: every tensor of BASE, the\n"
            "       selected matrices rebuilt from their scores, the others copied.\n"
            "\n"
            "Selection of matrices (both commands):\n"
            "  --kinds LIST       tensor kinds, comma-separated from attention, mlp,\n"
            "                     embedding, norm, other; or all (default attention,mlp)\n"
            "  --pattern GLOB     only tensors whose name matches (case-insensitive;\n"
            "                     * any run, ? one character)\n"
            "  --kind-rules FILE  kind rules tried before the defaults: lines\n"
            "                     PATTERN KIND (docs/tools.md)\n"
            "  --layout L         matrix view of rank >= 3 tensors: out-first (PyTorch,\n"
            "                     rows = shape[0]; default) or out-last (TF/Keras/TF.js\n"
            "                     [kh,kw,in,out], cols = shape[-1])\n"
            "  --score-layout S   scores per matrix: diag (r singular values, default)\n"
            "                     or core (an r x r matrix)\n"
            "  --rank R           keep r = R singular directions (default 0: min(m, n))\n"
            "  --per-tensor       take fractions within each matrix, not over all scores\n"
            "  --allow-zero       go on when the selected matrices of TRAINED equal those\n"
            "                     of BASE (a zero residual; default: fail)\n"
            "share:\n"
            "  --fractions LIST   fractions of the scores, comma-separated, each in [0, 1]\n"
            "                     (default 1,0.5,0.25,0.1,0.05)\n"
            "  --json FILE|-      write the figures as JSON to FILE, or to stdout with -\n"
            "                     (then no table)\n"
            "fit:\n"
            "  -o, --output FILE  the checkpoint to write (.safetensors; replaced whole)\n"
            "  --fraction F       train only this fraction of the scores (default 1)\n"
            "  --rule R           which scores: magnitude (largest |s0|, default),\n"
            "                     random, or oracle (largest |D|: fit all, keep the\n"
            "                     largest changes, fit again)\n"
            "  --seed N           seed of --rule random (default 0)\n"
            "Other:\n"
            "  --threads N        threads (default: SRESID_NUM_THREADS, else all CPUs)\n"
            "  --no-progress      no progress bar (shown on stderr only on a terminal)\n"
            "  --verbose          BLIS kernels, threads and timing on stderr\n"
            "  --help             show this text\n"
            "Deprecated (until the next minor release, with a warning): --matrix-layout L\n"
            "for --layout L; --layout diag|core for --score-layout diag|core.\n"
            "\n"
            "BASE and TRAINED must hold the selected matrices with the same shapes;\n"
            "narrow the selection with --kinds or --pattern when they do not.\n"
            "A checkpoint is a .safetensors file, a *.safetensors.index.json or a\n"
            "directory of shards. Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog, prog);
}

/* ---- option values: whole-string parses, range errors are usage errors ---- */

static double parse_fraction(const char *opt, const char *s)
{
    double v = 0;
    if (!sr_cli_real(s, &v) || !(v >= 0 && v <= 1))
        bad_usage("%s wants numbers in [0, 1], not '%s'", opt, s);
    return v;
}

#define MAX_FRACTIONS 64

static size_t parse_fractions(const char *s, double *out)
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        char item[64];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || n == MAX_FRACTIONS)
            bad_usage("--fractions wants up to %d numbers in [0, 1] separated by commas, not "
                      "'%s'",
                      MAX_FRACTIONS, s);
        memcpy(item, p, len);
        item[len] = '\0';
        out[n++] = parse_fraction("--fractions", item);
        if (!p[len])
            return n;
        p += len + 1;
    }
}

/* ---- arguments ---- */

enum { CMD_SHARE, CMD_FIT };
enum { RULE_MAGNITUDE, RULE_RANDOM, RULE_ORACLE };
static const char *const rule_names[] = {"magnitude", "random", "oracle"};

typedef struct args {
    int cmd;
    const char *pos[2];
    int npos;
    int32_t score_layout, rank, layout, threads;
    uint32_t kinds;
    const char *pattern, *kind_rules;
    int per_tensor, allow_zero, verbose;
    /* share */
    double fractions[MAX_FRACTIONS];
    size_t nfractions;
    const char *json;
    /* fit */
    const char *output;
    double fraction;
    int rule, have_fraction, have_rule, have_seed;
    uint64_t seed;
} args;

/* 1 and *layout for "diag" or "core" (SRESID_AMP_*), else 0. */
static int score_layout(const char *s, int32_t *layout)
{
    if (strcmp(s, "diag") == 0)
        *layout = SRESID_AMP_DIAG;
    else if (strcmp(s, "core") == 0)
        *layout = SRESID_AMP_CORE;
    else
        return 0;
    return 1;
}

static void parse_args(int argc, char **argv, args *a)
{
    if (argc < 2)
        bad_usage("no command given (share or fit)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        sr_cli_help_done(prog);
    }
    if (strcmp(argv[1], "share") == 0)
        a->cmd = CMD_SHARE;
    else if (strcmp(argv[1], "fit") == 0)
        a->cmd = CMD_FIT;
    else
        bad_usage("unknown command '%s' (want share or fit)", argv[1]);
    int options_done = 0, share_only = 0;
    const char *fit_only = NULL;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *val = NULL;
        if (options_done || s[0] != '-' || s[1] == '\0') {
            sr_cli_add_checkpoint(prog, a->pos, &a->npos, s);
            continue;
        }
#define VALUE(name) sr_cli_value(prog, argc, argv, &i, name, &val)
        if (strcmp(s, "--") == 0) {
            options_done = 1;
        } else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage(stdout);
            sr_cli_help_done(prog);
        } else if (strcmp(s, "--allow-zero") == 0) {
            a->allow_zero = 1;
        } else if (strcmp(s, "--per-tensor") == 0) {
            a->per_tensor = 1;
        } else if (strcmp(s, "--no-progress") == 0) {
            /* read by sr_cli_start */
        } else if (strcmp(s, "--verbose") == 0 || strcmp(s, "-v") == 0) {
            a->verbose = 1;
        } else if (VALUE("--layout")) {
            /* until 1.2, the score layout's values still work here */
            if (score_layout(val, &a->score_layout))
                sr_cli_deprecated(prog, "--layout diag|core",
                                  "use --score-layout diag|core (--layout is the matrix view, "
                                  "out-first or out-last)");
            else if (!sr_cli_layout(val, &a->layout))
                bad_usage("--layout wants out-first or out-last, not '%s'", val);
        } else if (VALUE("--score-layout")) {
            if (!score_layout(val, &a->score_layout))
                bad_usage("--score-layout wants diag or core, not '%s'", val);
        } else if (VALUE("--rank")) {
            a->rank = (int32_t)sr_cli_parse_int(prog, "--rank", val, 0, INT32_MAX);
        } else if (VALUE("--kinds")) {
            a->kinds = sr_cli_parse_kinds(prog, "--kinds", val);
        } else if (VALUE("--kind-rules")) {
            a->kind_rules = val;
        } else if (VALUE("--pattern")) {
            if (!*val)
                bad_usage("--pattern needs a glob");
            a->pattern = val;
        } else if (VALUE("--matrix-layout")) {
            sr_cli_deprecated(prog, "--matrix-layout", "use --layout");
            a->layout = sr_cli_parse_layout(prog, "--matrix-layout", val);
        } else if (VALUE("--threads")) {
            a->threads = sr_cli_parse_threads(prog, "--threads", val);
        } else if (VALUE("--fractions")) {
            a->nfractions = parse_fractions(val, a->fractions);
            share_only = 1;
        } else if (VALUE("--json")) {
            a->json = sr_cli_parse_json(prog, "--json", val);
            share_only = 1;
        } else if (VALUE("--output") || VALUE("-o")) {
            if (!*val)
                bad_usage("--output needs a file name");
            a->output = val;
            fit_only = "--output";
        } else if (VALUE("--fraction")) {
            a->fraction = parse_fraction("--fraction", val);
            a->have_fraction = 1;
            fit_only = "--fraction";
        } else if (VALUE("--rule")) {
            int found = 0;
            for (int r = 0; r < 3 && !found; r++)
                if (strcmp(val, rule_names[r]) == 0) {
                    a->rule = r;
                    found = 1;
                }
            if (!found)
                bad_usage("unknown --rule '%s' (want magnitude, random or oracle)", val);
            a->have_rule = 1;
            fit_only = "--rule";
        } else if (VALUE("--seed")) {
            a->seed = sr_cli_parse_seed(prog, val);
            a->have_seed = 1;
            fit_only = "--seed";
        } else {
            bad_usage("unknown option %s", s);
        }
#undef VALUE
    }
    if (a->npos < 2)
        bad_usage("%s needs BASE and TRAINED checkpoints", a->cmd == CMD_SHARE ? "share" : "fit");
    if (a->cmd == CMD_SHARE && fit_only)
        bad_usage("%s is an option of fit, not of share", fit_only);
    if (a->cmd == CMD_FIT && share_only)
        bad_usage("--fractions and --json are options of share, not of fit");
    if (a->cmd == CMD_FIT && !a->output)
        bad_usage("fit needs an output file: -o OUT.safetensors");
    if (a->cmd == CMD_FIT && !a->have_fraction)
        a->fraction = 1;
    if (a->cmd == CMD_SHARE && a->nfractions == 0) {
        static const double def[] = {1, 0.5, 0.25, 0.1, 0.05};
        memcpy(a->fractions, def, sizeof def);
        a->nfractions = 5;
    }
}

/* ---- checkpoints and the amp ---- */

/* "attention,mlp" for the kinds bits (0: the library's default). */
static char *kinds_text(uint32_t kinds)
{
    if (!kinds)
        kinds = 1u << SRESID_KIND_ATTENTION | 1u << SRESID_KIND_MLP;
    char *s = xfmt("%s", "");
    for (int32_t k = 0; k < SRESID_KIND_COUNT; k++)
        if (kinds & 1u << k) {
            char *t = xfmt("%s%s%s", s, *s ? "," : "", sresid_kind_name(k));
            free(s);
            s = t;
        }
    return s;
}

static sresid_amp *make_amp(const args *a, const sresid_model *base)
{
    sresid_amp_opts o = {.size = sizeof o,
                         .layout = a->score_layout,
                         .rank = a->rank,
                         .kinds = a->kinds,
                         .threads = a->threads,
                         .pattern = a->pattern};
    sresid_amp *amp = NULL;
    sr_cli_watch_stage("basis");
    sresid_status st = sresid_amp_create(base, &o, &amp);
    if (st == SRESID_ERR_NOT_FOUND) {
        char *k = kinds_text(a->kinds);
        int all = a->kinds == (1u << SRESID_KIND_COUNT) - 1u;
        fprintf(stderr, "%s: %s: no weight matrix of kinds %s%s%s%s: %s\n", prog, a->pos[0], k,
                a->pattern ? " matching '" : "", a->pattern ? a->pattern : "",
                a->pattern ? "'" : "",
                all ? "choose another --pattern"
                    : "choose others with --kinds (e.g. --kinds all) or --pattern");
        free(k);
        exit(1);
    }
    if (st)
        sr_cli_die(prog, a->pos[0], st);
    return amp;
}

/* A trained checkpoint that does not pair: say which file and how to narrow. */
static _Noreturn void die_pairing(const args *a, const char *what, sresid_status st)
{
    if (st == SRESID_ERR_MISMATCH)
        die("%s: %s: %s (narrow the selection with --kinds or --pattern)", what, a->pos[1],
            sresid_last_error());
    sr_cli_die(prog, what, st);
}

/* ---- share ---- */

static char *pct(double x)
{
    return isfinite(x) ? xfmt("%.2f %%", 100 * x) : xfmt("-");
}

static json_t *fraction_list(const args *a, const double *cm, const double *co, size_t row)
{
    json_t *arr = json_array();
    for (size_t k = 0; k < a->nfractions; k++) {
        json_t *f = json_object();
        sr_cli_jset(f, "fraction", json_real(a->fractions[k]));
        sr_cli_jset(f, "captured_magnitude", sr_cli_jnum(cm[row * a->nfractions + k]));
        sr_cli_jset(f, "captured_oracle", sr_cli_jnum(co[row * a->nfractions + k]));
        sr_cli_jpush(arr, f);
    }
    return arr;
}

static void share_json(const args *a, const sresid_amp *amp, const double *energy,
                       const double *captured, const double *cm, const double *co)
{
    size_t nt = sresid_amp_count(amp);
    json_t *root = sr_cli_json_doc("sparseresid-amp-share", 1), *tensors = json_array();
    for (size_t t = 0; t < nt; t++) {
        sresid_amp_tensor_info info = {.size = sizeof info};
        sresid_status st = sresid_amp_tensor(amp, t, &info);
        if (st)
            sr_cli_die(prog, "amp", st);
        json_t *o = json_object();
        sr_cli_jset(o, "name", sr_cli_jstr(info.name));
        sr_cli_jset(o, "rows", json_integer(info.rows));
        sr_cli_jset(o, "cols", json_integer(info.cols));
        sr_cli_jset(o, "rank", json_integer(info.rank));
        sr_cli_jset(o, "scores", json_integer((json_int_t)info.count));
        sr_cli_jset(o, "energy", sr_cli_jnum(energy[t]));
        sr_cli_jset(o, "captured", sr_cli_jnum(captured[t]));
        sr_cli_jset(o, "fractions", fraction_list(a, cm, co, t));
        sr_cli_jpush(tensors, o);
    }
    sr_cli_jset(root, "tensors", tensors);
    json_t *total = json_object();
    sr_cli_jset(total, "tensors", json_integer((json_int_t)nt));
    sr_cli_jset(total, "scores", json_integer((json_int_t)sresid_amp_score_count(amp)));
    sr_cli_jset(total, "energy", sr_cli_jnum(energy[nt]));
    sr_cli_jset(total, "captured", sr_cli_jnum(captured[nt]));
    sr_cli_jset(total, "fractions", fraction_list(a, cm, co, nt));
    sr_cli_jset(root, "total", total);
    json_t *opt = json_object();
    sr_cli_jset(opt, "base", sr_cli_jstr(a->pos[0]));
    sr_cli_jset(opt, "trained", sr_cli_jstr(a->pos[1]));
    const char *sl = a->score_layout == SRESID_AMP_CORE ? "core" : "diag";
    sr_cli_jset(opt, "score_layout", json_string(sl));
    sr_cli_jset(opt, "layout", json_string(sl)); /* deprecated: score_layout, until 1.2 */
    sr_cli_jset(opt, "rank", json_integer(a->rank));
    json_t *kinds = json_array();
    uint32_t kb = a->kinds ? a->kinds : (1u << SRESID_KIND_ATTENTION | 1u << SRESID_KIND_MLP);
    for (int32_t k = 0; k < SRESID_KIND_COUNT; k++)
        if (kb & 1u << k)
            sr_cli_jpush(kinds, json_string(sresid_kind_name(k)));
    sr_cli_jset(opt, "kinds", kinds);
    sr_cli_jset(opt, "pattern", a->pattern ? sr_cli_jstr(a->pattern) : json_null());
    sr_cli_jset(opt, "per_tensor", json_boolean(a->per_tensor));
    json_t *fr = json_array();
    for (size_t k = 0; k < a->nfractions; k++)
        sr_cli_jpush(fr, json_real(a->fractions[k]));
    sr_cli_jset(opt, "fractions", fr);
    sr_cli_jset(opt, "matrix_layout",
         json_string(a->layout == SRESID_LAYOUT_OUT_LAST ? "out-last" : "out-first"));
    sr_cli_jset(root, "options", opt);

    sr_cli_json_write(prog, a->json, root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
}

static void share_table(const args *a, const sresid_amp *amp, const double *captured,
                        const double *cm, const double *co)
{
    size_t nt = sresid_amp_count(amp), nf = a->nfractions;
    printf("residual: %s - %s\n", a->pos[1], a->pos[0]);
    printf("matrices: %zu, scores: %llu, score layout: %s, view: %s, fractions %s; captured "
           "share of the residual energy,\nby initial magnitude |s0| / by the oracle |D|\n",
           nt, (unsigned long long)sresid_amp_score_count(amp),
           a->score_layout == SRESID_AMP_CORE ? "core" : "diag",
           a->layout == SRESID_LAYOUT_OUT_LAST ? "out-last" : "out-first",
           a->per_tensor ? "within each matrix" : "over all scores");
    size_t ncols = 5 + nf;
    char *right = xmalloc(ncols + 1);
    memset(right, 'r', ncols);
    right[0] = 'l';
    right[ncols] = '\0';
    sr_cli_table tab = {.ncols = ncols, .right = right, .indent = "  ", .prog = prog};
    sr_cli_table_put(&tab, xfmt("name"));
    sr_cli_table_put(&tab, xfmt("rows"));
    sr_cli_table_put(&tab, xfmt("cols"));
    sr_cli_table_put(&tab, xfmt("rank"));
    sr_cli_table_put(&tab, xfmt("captured"));
    for (size_t k = 0; k < nf; k++)
        sr_cli_table_put(&tab, xfmt("%g %% mag / oracle", 100 * a->fractions[k]));
    for (size_t t = 0; t <= nt; t++) {
        sresid_amp_tensor_info info = {.size = sizeof info};
        if (t < nt) {
            sresid_status st = sresid_amp_tensor(amp, t, &info);
            if (st)
                sr_cli_die(prog, "amp", st);
            sr_cli_table_put(&tab, xfmt("%s", info.name));
            sr_cli_table_put(&tab, xfmt("%lld", (long long)info.rows));
            sr_cli_table_put(&tab, xfmt("%lld", (long long)info.cols));
            sr_cli_table_put(&tab, xfmt("%lld", (long long)info.rank));
        } else {
            sr_cli_table_put(&tab, xfmt("total"));
            for (int c = 0; c < 3; c++)
                sr_cli_table_put(&tab, xfmt("%s", ""));
        }
        sr_cli_table_put(&tab, pct(captured[t]));
        for (size_t k = 0; k < nf; k++) {
            char *m = pct(cm[t * nf + k]), *o = pct(co[t * nf + k]);
            sr_cli_table_put(&tab, xfmt("%s / %s", m, o));
            free(m);
            free(o);
        }
    }
    sr_cli_table_print(&tab);
    free(right);
}

static void zero_residual(const args *a, size_t matrices)
{
    sr_cli_degenerate(prog, a->allow_zero, "--allow-zero",
                      "%s equals %s in the %zu selected matrices: the residual is zero, "
                      "there is nothing to capture",
                      a->pos[1], a->pos[0], matrices);
}

static void run_share(const args *a, sresid_model *base, sresid_model *trained)
{
    sresid_amp *amp = make_amp(a, base);
    size_t rows = sresid_amp_count(amp) + 1, nf = a->nfractions;
    double *energy = xmalloc(rows * sizeof *energy), *captured = xmalloc(rows * sizeof *captured);
    double *cm = xmalloc(rows * nf * sizeof *cm), *co = xmalloc(rows * nf * sizeof *co);
    sr_cli_watch_stage("share");
    sresid_status st = sresid_amp_share(amp, trained, a->fractions, nf,
                                        a->per_tensor ? SRESID_SELECT_PER_TENSOR : 0u, energy,
                                        captured, cm, co);
    if (st)
        die_pairing(a, "share", st);
    if (energy[rows - 1] == 0) /* the captured shares are 0 / 0 */
        zero_residual(a, rows - 1);
    if (a->json)
        share_json(a, amp, energy, captured, cm, co);
    if (!a->json || strcmp(a->json, "-") != 0)
        share_table(a, amp, captured, cm, co);
    free(energy);
    free(captured);
    free(cm);
    free(co);
    sresid_amp_free(amp);
}

/* ---- fit ---- */

/* Sum of squared differences of two float tensors read as float32. */
static double sq_diff(const sresid_model *x, size_t ix, const sresid_model *y, size_t iy,
                      size_t n, float *bx, float *by, const char *name)
{
    sresid_status st = sresid_model_read_f32(x, ix, bx, n);
    if (!st)
        st = sresid_model_read_f32(y, iy, by, n);
    if (st)
        die("cannot read tensor '%s': %s", name, sresid_last_error());
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)bx[i] - by[i];
        s += d * d;
    }
    return s;
}

/* The measured share: 1 - |TRAINED - OUT|^2 / |TRAINED - BASE|^2 over the
 * selected matrices. */
static double measured_share(const sresid_amp *amp, const sresid_model *base,
                             const sresid_model *trained, const sresid_model *out)
{
    double before = 0, after = 0;
    for (size_t t = 0; t < sresid_amp_count(amp); t++) {
        sresid_amp_tensor_info info = {.size = sizeof info};
        sresid_status st = sresid_amp_tensor(amp, t, &info);
        size_t it = 0, io = 0;
        if (!st)
            st = sresid_model_find(trained, info.name, &it);
        if (!st)
            st = sresid_model_find(out, info.name, &io);
        if (st)
            sr_cli_die(prog, "share", st);
        size_t n = (size_t)info.rows * (size_t)info.cols;
        float *bx = xmalloc(n * sizeof *bx), *by = xmalloc(n * sizeof *by);
        before += sq_diff(trained, it, base, info.index, n, bx, by, info.name);
        after += sq_diff(trained, it, out, io, n, bx, by, info.name);
        free(bx);
        free(by);
    }
    return before > 0 ? 1 - after / before : NAN;
}

static void run_fit(const args *a, sresid_model *base, sresid_model *trained)
{
    sresid_amp *amp = make_amp(a, base);
    uint32_t flags = a->per_tensor ? SRESID_SELECT_PER_TENSOR : 0u;
    sresid_mask *mask = NULL;
    sresid_status st;
    if (a->fraction < 1 || a->have_rule) {
        if (a->rule == RULE_ORACLE) {
            /* the largest |D| are the largest changes of a fit of all scores */
            sr_cli_watch_stage("fit");
            if ((st = sresid_amp_fit(amp, trained, NULL)))
                die_pairing(a, "fit", st);
            sresid_select_opts so = {.size = sizeof so, .flags = flags};
            if ((st = sresid_amp_select(amp, SRESID_RULE_WARMUP, a->fraction, &so, &mask)))
                sr_cli_die(prog, "select", st);
        } else {
            sresid_select_opts so = {.size = sizeof so, .flags = flags, .seed = a->seed};
            int32_t rule = a->rule == RULE_RANDOM ? SRESID_RULE_RANDOM : SRESID_RULE_MAGNITUDE;
            if ((st = sresid_amp_select(amp, rule, a->fraction, &so, &mask)))
                sr_cli_die(prog, "select", st);
        }
    }
    sr_cli_watch_stage("fit");
    if ((st = sresid_amp_fit(amp, trained, mask)))
        die_pairing(a, "fit", st);
    sresid_model *out = NULL;
    sr_cli_watch_stage("export");
    if ((st = sresid_amp_export(amp, &out)))
        sr_cli_die(prog, "export", st);
    double share = measured_share(amp, base, trained, out);
    if (isnan(share))
        zero_residual(a, sresid_amp_count(amp));
    sresid_save_opts so = {.size = sizeof so};
    sr_cli_watch_stage("save");
    if ((st = sresid_model_save(out, a->output, &so))) {
        const char *msg = sresid_last_error();
        if (msg && strstr(msg, a->output))
            sr_cli_die(prog, "cannot save", st);
        sr_cli_die(prog, a->output, st);
    }
    uint64_t total = sresid_amp_score_count(amp);
    uint64_t trained_scores = mask ? sresid_mask_count(mask) : total;
    char *pct_captured = isfinite(share) ? xfmt("%.2f %%", 100 * share) : xfmt("-");
    printf("%s: %zu matrices (%s), %llu of %llu scores trained (%s%s), captured %s of "
           "the residual energy of %s\n",
           a->output, sresid_amp_count(amp),
           a->score_layout == SRESID_AMP_CORE ? "core" : "diag",
           (unsigned long long)trained_scores, (unsigned long long)total,
           mask ? rule_names[a->rule] : "all", mask && a->per_tensor ? ", per tensor" : "",
           pct_captured, a->pos[1]);
    free(pct_captured);
    sresid_model_free(out);
    sresid_mask_free(mask);
    sresid_amp_free(amp);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    /* First: it picks the BLIS kernels, which must come before any BLIS call. */
    prog = sr_cli_start(argc, argv, NULL);

    args a = {.score_layout = SRESID_AMP_DIAG, .layout = SRESID_LAYOUT_OUT_FIRST};
    parse_args(argc, argv, &a);
    if (a.threads && sresid_set_threads(a.threads) != SRESID_OK)
        sr_cli_die(prog, "--threads", SRESID_ERR_INVALID_ARG);
    if (a.verbose)
        fprintf(stderr, "%s: libsparseresid %s, BLIS kernels %s, %d threads\n", prog,
                sresid_version_string(), sresid_blas_arch(), (int)sresid_get_threads());

    double t0 = sr_cli_now();
    sresid_model *base = sr_cli_open_model(prog, a.pos[0], a.layout);
    sresid_model *trained = sr_cli_open_model(prog, a.pos[1], a.layout);
    {
        sresid_model *const models[2] = {base, trained};
        const char *const outs[2] = {a.output, a.json};
        sr_cli_guard_outputs(prog, models, a.pos, 2, outs, 2);
        sr_cli_kind_rules(prog, a.kind_rules, models, 2);
    }
    sr_cli_check_layout(prog, base, a.pos[0], a.layout);
    if (a.cmd == CMD_SHARE)
        run_share(&a, base, trained);
    else
        run_fit(&a, base, trained);
    if (a.verbose)
        fprintf(stderr, "%s: total %.3f s\n", prog, sr_cli_now() - t0);
    sresid_model_free(trained);
    sresid_model_free(base);
    return sr_cli_finish(prog);
}
