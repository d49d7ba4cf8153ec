/* sr-probe: the residual report of a fine-tune (or the weights of one
 * checkpoint) as the study's tables or as JSON. An example program of
 * libsparseresid. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"

static const char *prog = "sr-probe";
#define bad_usage(...) sr_cli_bad_usage(prog, __VA_ARGS__)
#define xmalloc(n) sr_cli_xmalloc(prog, n)
#define xfmt(...) sr_cli_xfmt(prog, __VA_ARGS__)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s BASE TRAINED [options]   report on the residual TRAINED - BASE\n"
            "       %s MODEL [options]          report on one checkpoint's weights\n"
            "\n"
            "Runs every probe (moments, histogram entropy vs a Gaussian baseline,\n"
            "participation ratio, low-frequency power, k-means explained variance,\n"
            "sparsity, adjacent-layer correlation) tensor by tensor and prints the\n"
            "study's tables: by component (attention, mlp, embedding, norm, other, all),\n"
            "by layer, and between layers. Memory stays near the largest tensor times\n"
            "the thread count, whatever the checkpoint size.\n"
            "\n"
            "  --json FILE|-      write the JSON report (docs/report.md) to FILE, or to\n"
            "                     stdout with - (then no tables)\n"
            "  --bins N           entropy histogram bins (default 100)\n"
            "  --k LIST           k-means K values, comma-separated (default 2,4,8,16)\n"
            "  --kmeans-restarts N  k-means runs per K, the lowest inertia kept, 1..1000\n"
            "                     (default: by size, 50 for small matrices down to 1\n"
            "                     from 4096 x 4096; docs/probes.md)\n"
            "  --band F           low-frequency band, a fraction in (0, 1] (default 0.125)\n"
            "  --null-draws D     permutation-null draws for PR and low-frequency power\n"
            "                     (default 0: none)\n"
            "  --seed S           seed of every random choice (default 0)\n"
            "  --threads N        threads (default: SRESID_NUM_THREADS, else all CPUs)\n"
            "  --kinds LIST       only these kinds, comma-separated from attention, mlp,\n"
            "                     embedding, norm, other; or all (default all)\n"
            "  --kind-rules FILE  kind rules tried before the defaults: lines PATTERN KIND\n"
            "                     (docs/tools.md)\n"
            "  --probes LIST      only these probes: moments,entropy,pr,lowfreq,kmeans,\n"
            "                     sparsity,correlation (default all)\n"
            "  --skip-mismatched  leave out tensors found on one side only or with\n"
            "                     different shapes (default: fail)\n"
            "  --fail-nonfinite   fail on NaN or Inf (default: count and exclude them,\n"
            "                     with a warning)\n"
            "  --allow-zero       report a residual that is zero everywhere (TRAINED\n"
            "                     equals BASE; default: fail)\n"
            "  --allow-empty      report when no tensor is selected (default: fail)\n"
            "  --layout L         matrix view of rank >= 3 tensors: out-first (PyTorch,\n"
            "                     rows = shape[0]; default) or out-last (TF/Keras/TF.js\n"
            "                     [kh,kw,in,out], cols = shape[-1])\n"
            "  --tensors          also print one line per tensor\n"
            "  --no-progress      no progress bar (shown on stderr only on a terminal)\n"
            "  --verbose          BLIS kernels, threads and timing on stderr\n"
            "  --help             show this text\n"
            "Deprecated (until the next minor release, with a warning): --only KINDS\n"
            "for --kinds KINDS.\n"
            "\n"
            "A checkpoint is a .safetensors file, a *.safetensors.index.json or a\n"
            "directory of shards. Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog, prog);
}

/* ---- option values: whole-string parses, range errors are usage errors ---- */

/* Comma-separated K values. */
static size_t parse_ks(const char *s, int32_t *ks, size_t cap)
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || n == cap)
            bad_usage("--k wants up to %zu integers in [1, 65536] separated by commas, not '%s'",
                      cap, s);
        memcpy(item, p, len);
        item[len] = '\0';
        ks[n++] = (int32_t)sr_cli_parse_int(prog, "--k", item, 1, 65536);
        if (!p[len])
            return n;
        p += len + 1;
    }
}

static const char *const probe_names[] = {"moments", "entropy", "pr", "lowfreq",
                                          "kmeans", "sparsity", "correlation"};

/* A comma-separated list of probe names into the SRESID_PROBE_* bits. */
static uint32_t parse_probes(const char *opt, const char *s)
{
    uint32_t bits = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        int found = 0;
        for (size_t i = 0; i < sizeof probe_names / sizeof probe_names[0] && !found; i++)
            if (strlen(probe_names[i]) == len && strncmp(p, probe_names[i], len) == 0) {
                bits |= 1u << i; /* the SRESID_PROBE_* bits, in this order */
                found = 1;
            }
        if (!found)
            bad_usage("%s: unknown name '%.*s' in '%s'", opt, (int)len, p, s);
        if (!p[len])
            return bits;
        p += len + 1;
    }
}

/* A figure with fixed decimals, "-" when undefined. */
static char *fig(double x, int decimals)
{
    return isfinite(x) ? xfmt("%.*f", decimals, x) : xfmt("-");
}

static char *pct(double x, int decimals)
{
    return isfinite(x) ? xfmt("%.*f %%", decimals, 100 * x) : xfmt("-");
}

static char *count_str(uint64_t n)
{
    return xfmt("%llu", (unsigned long long)n);
}

/* ---- the report's figures, through the public accessors ---- */

typedef struct view {
    const sresid_report *r;
    size_t nt;
    sresid_tensor_report *t;
    const int32_t *ks;
    size_t nks;
} view;

static void view_load(view *v, const sresid_report *r, const int32_t *ks, size_t nks)
{
    v->r = r;
    v->nt = sresid_report_tensor_count(r);
    v->t = xmalloc(v->nt * sizeof *v->t);
    for (size_t i = 0; i < v->nt; i++) {
        v->t[i].size = sizeof v->t[i];
        sresid_status st = sresid_report_tensor(r, i, &v->t[i]);
        if (st)
            sr_cli_die(prog, "report", st);
    }
    v->ks = ks;
    v->nks = nks;
}

static const int32_t group_order[] = {SRESID_KIND_ATTENTION, SRESID_KIND_MLP,
                                      SRESID_KIND_EMBEDDING, SRESID_KIND_NORM,
                                      SRESID_KIND_OTHER, SRESID_GROUP_ALL};

static const char *group_name(int32_t g)
{
    return g == SRESID_GROUP_ALL ? "all" : sresid_kind_name(g);
}

static int in_group(const sresid_tensor_report *t, int32_t g)
{
    return g == SRESID_GROUP_ALL || t->kind == g;
}

static sresid_group_report group_of(const view *v, int32_t g)
{
    sresid_group_report out = {.size = sizeof out};
    sresid_status st = sresid_report_group(v->r, g, &out);
    if (st)
        sr_cli_die(prog, "report", st);
    return out;
}

/* Mean of a per-matrix figure over a group, skipping undefined values. */
static double mean_over(const view *v, int32_t g, double (*get)(const view *, size_t, size_t),
                        size_t arg, uint64_t *used)
{
    double s = 0;
    uint64_t n = 0;
    for (size_t i = 0; i < v->nt; i++) {
        if (!v->t[i].is_matrix || !in_group(&v->t[i], g))
            continue;
        double x = get(v, i, arg);
        if (isfinite(x)) {
            s += x;
            n++;
        }
    }
    if (used)
        *used = n;
    return n ? s / (double)n : NAN;
}

static double get_prn(const view *v, size_t i, size_t arg)
{
    (void)arg;
    return v->t[i].pr_normalized;
}

static double get_lowfreq(const view *v, size_t i, size_t arg)
{
    (void)arg;
    return v->t[i].lowfreq_ratio;
}

static sresid_kmeans_result kmeans_of(const view *v, size_t i, size_t j)
{
    sresid_kmeans_result k = {.size = sizeof k};
    sresid_status st = sresid_report_tensor_kmeans(v->r, i, j, &k);
    if (st)
        sr_cli_die(prog, "report", st);
    return k;
}

/* Defined only where both figures are, so the two means cover the same matrices. */
static double get_km(const view *v, size_t i, size_t j)
{
    sresid_kmeans_result k = kmeans_of(v, i, j);
    return isfinite(k.explained_random) ? k.explained : NAN;
}

static double get_km_random(const view *v, size_t i, size_t j)
{
    sresid_kmeans_result k = kmeans_of(v, i, j);
    return isfinite(k.explained) ? k.explained_random : NAN;
}

static void print_components(const view *v, uint32_t probes, int32_t bins)
{
    printf("\n1. Excess kurtosis and histogram entropy by component\n"
           "   (Gaussian kurtosis: 0; entropy: %d bins over the group's range;\n"
           "    random: as many Gaussian draws)\n",
           (int)bins);
    sr_cli_table t = {.ncols = 7, .right = "lrrrrrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&t, xfmt("component"), xfmt("tensors"), xfmt("values"), xfmt("kurtosis"),
              xfmt("entropy bits"), xfmt("random bits"), xfmt("ratio"));
    for (size_t k = 0; k < sizeof group_order / sizeof group_order[0]; k++) {
        sresid_group_report g = group_of(v, group_order[k]);
        if (g.tensors == 0 && group_order[k] != SRESID_GROUP_ALL)
            continue;
        sr_cli_table_row(&t, xfmt("%s", group_name(group_order[k])), count_str(g.tensors),
                  count_str(g.count), fig(g.kurtosis, 2), fig(g.entropy_bits, 2),
                  fig(g.entropy_random_bits, 2),
                  pct(g.entropy_bits / g.entropy_random_bits, 0));
    }
    sr_cli_table_print(&t);
    (void)probes;
}

static void print_pr(const view *v)
{
    printf("\n2. Mean participation ratio by component\n"
           "   (PR = (sum s^2)^2 / sum s^4 over singular values; matrices only)\n");
    sr_cli_table t = {.ncols = 4, .right = "lrrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&t, xfmt("component"), xfmt("matrices"), xfmt("mean PR"), xfmt("mean PR/min(m,n)"));
    for (size_t k = 0; k < sizeof group_order / sizeof group_order[0]; k++) {
        sresid_group_report g = group_of(v, group_order[k]);
        if (g.tensors == 0 && group_order[k] != SRESID_GROUP_ALL)
            continue;
        sr_cli_table_row(&t, xfmt("%s", group_name(group_order[k])), count_str(g.matrices),
                  fig(g.mean_pr, 1), fig(mean_over(v, group_order[k], get_prn, 0, NULL), 4));
    }
    sr_cli_table_print(&t);
}

/* The stack of layer_correlation entry i (what 1) or layer i (what 0). */
static const char *stack_of(const view *v, int what, size_t i)
{
    const char *stack = NULL;
    sresid_status st = what ? sresid_report_layer_correlation_stack(v->r, i, &stack)
                            : sresid_report_layer_stack(v->r, i, &stack);
    if (st)
        sr_cli_die(prog, "report", st);
    return stack;
}

/* Whether the layers come from more than one stack (an encoder and a
 * decoder): the tables then name the stack of each row. */
static int many_stacks(const view *v)
{
    size_t nl = sresid_report_layer_count(v->r);
    for (size_t i = 1; i < nl; i++)
        if (strcmp(stack_of(v, 0, i), stack_of(v, 0, 0)) != 0)
            return 1;
    return 0;
}

static void print_correlation(const view *v, uint32_t probes)
{
    printf("\n3. Adjacent-layer correlation (Pearson r of same-role residuals)\n");
    size_t nl = sresid_report_layer_count(v->r), nc = sresid_report_layer_correlation_count(v->r);
    if (nl == 0) {
        printf("  no layer indices in tensor names\n");
        return;
    }
    if (!(probes & SRESID_PROBE_CORRELATION)) {
        printf("  correlation probe off\n");
        return;
    }
    if (nc == 0) {
        printf("  only one layer%s\n", many_stacks(v) ? " per stack" : "");
        return;
    }
    int stacks = many_stacks(v);
    sr_cli_table t = {.ncols = 4 + (size_t)stacks, .right = stacks ? "lllrr" : "llrr",
                      .indent = "  ", .prog = prog};
    const char *head[5] = {"stack", "layers", "", "roles", "mean r"};
    for (int c = !stacks; c < 5; c++)
        sr_cli_table_put(&t, xfmt("%s", head[c]));
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < nc; i++) {
        sresid_correlation_report c = {.size = sizeof c};
        sresid_status st = sresid_report_layer_correlation(v->r, i, &c);
        if (st)
            sr_cli_die(prog, "report", st);
        /* each stack's run of entries ends with its first vs last */
        int last = i + 1 == nc || strcmp(stack_of(v, 1, i), stack_of(v, 1, i + 1)) != 0;
        if (!last && isfinite(c.r)) {
            lo = c.r < lo ? c.r : lo;
            hi = c.r > hi ? c.r : hi;
        }
        if (stacks)
            sr_cli_table_put(&t, xfmt("%s", stack_of(v, 1, i)));
        sr_cli_table_put(&t, xfmt("%d-%d", (int)c.layer_a, (int)c.layer_b));
        sr_cli_table_put(&t, xfmt("%s", last ? "first vs last" : ""));
        sr_cli_table_put(&t, count_str(c.pairs));
        sr_cli_table_put(&t, fig(c.r, 4));
    }
    sr_cli_table_print(&t);
    if (isfinite(lo))
        printf("  adjacent pairs: r from %.4f to %.4f\n", lo, hi);
}

static void print_layers(const view *v)
{
    printf("\n4. Per-layer entropy and kurtosis\n");
    size_t nl = sresid_report_layer_count(v->r);
    if (nl == 0) {
        printf("  no layer indices in tensor names\n");
        return;
    }
    int stacks = many_stacks(v);
    sr_cli_table t = {.ncols = 7 + (size_t)stacks, .right = stacks ? "lrrrrrrr" : "rrrrrrr",
                      .indent = "  ", .prog = prog};
    const char *head[8] = {"stack", "layer", "tensors", "values", "kurtosis", "entropy bits",
                           "random bits", "ratio"};
    for (int c = !stacks; c < 8; c++)
        sr_cli_table_put(&t, xfmt("%s", head[c]));
    for (size_t i = 0; i < nl; i++) {
        sresid_layer_report l = {.size = sizeof l};
        sresid_status st = sresid_report_layer(v->r, i, &l);
        if (st)
            sr_cli_die(prog, "report", st);
        if (stacks)
            sr_cli_table_put(&t, xfmt("%s", stack_of(v, 0, i)));
        sr_cli_table_put(&t, xfmt("%d", (int)l.layer));
        sr_cli_table_put(&t, count_str(l.tensors));
        sr_cli_table_put(&t, count_str(l.count));
        sr_cli_table_put(&t, fig(l.kurtosis, 2));
        sr_cli_table_put(&t, fig(l.entropy_bits, 2));
        sr_cli_table_put(&t, fig(l.entropy_random_bits, 2));
        sr_cli_table_put(&t, pct(l.entropy_bits / l.entropy_random_bits, 0));
    }
    sr_cli_table_print(&t);
}

static void print_lowfreq(const view *v, double band)
{
    printf("\n5. Low-frequency power vs random (band f = %g, DC excluded; white noise: 1.00)\n",
           band);
    sr_cli_table t = {.ncols = 3, .right = "lrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&t, xfmt("component"), xfmt("matrices"), xfmt("mean ratio"));
    for (size_t k = 0; k < sizeof group_order / sizeof group_order[0]; k++) {
        int32_t g = group_order[k];
        if (group_of(v, g).tensors == 0 && g != SRESID_GROUP_ALL)
            continue;
        uint64_t used = 0;
        double m = mean_over(v, g, get_lowfreq, 0, &used);
        sr_cli_table_row(&t, xfmt("%s", group_name(g)), count_str(used), fig(m, 2));
    }
    sr_cli_table_print(&t);
}

static void print_kmeans(const view *v)
{
    printf("\n6. K-means explained variance (rows as points; mean over matrices;\n"
           "   random: a Gaussian matrix of the same shape and variance)\n");
    sr_cli_table t = {.ncols = 5, .right = "rrrrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&t, xfmt("K"), xfmt("matrices"), xfmt("explained"), xfmt("random"),
              xfmt("difference"));
    for (size_t j = 0; j < v->nks; j++) {
        uint64_t used = 0;
        double e = mean_over(v, SRESID_GROUP_ALL, get_km, j, &used);
        double er = mean_over(v, SRESID_GROUP_ALL, get_km_random, j, NULL);
        sr_cli_table_row(&t, xfmt("%d", (int)v->ks[j]), count_str(used), pct(e, 2), pct(er, 2),
                  isfinite(e - er) ? xfmt("%+.2f pt", 100 * (e - er)) : xfmt("-"));
    }
    sr_cli_table_print(&t);
}

static void print_tensors(const view *v)
{
    printf("\nPer tensor\n");
    sr_cli_table t = {.ncols = 10, .right = "llrlrrrrrr", .indent = "  ", .prog = prog};
    sr_cli_table_row(&t, xfmt("name"), xfmt("kind"), xfmt("layer"), xfmt("matrix"), xfmt("kurtosis"),
              xfmt("entropy %%"), xfmt("PR"), xfmt("PR/min"), xfmt("low-freq"), xfmt("hoyer"));
    for (size_t i = 0; i < v->nt; i++) {
        const sresid_tensor_report *x = &v->t[i];
        sr_cli_table_row(&t, xfmt("%s", x->name), xfmt("%s", sresid_kind_name(x->kind)),
                  x->layer < 0 ? xfmt("-") : xfmt("%d", (int)x->layer),
                  x->is_matrix ? xfmt("%lldx%lld", (long long)x->rows, (long long)x->cols)
                               : xfmt("vector"),
                  fig(x->kurtosis, 2), pct(x->entropy_bits / x->entropy_random_bits, 0),
                  fig(x->pr, 1), fig(x->pr_normalized, 3), fig(x->lowfreq_ratio, 2),
                  fig(x->hoyer, 3));
    }
    sr_cli_table_print(&t);
}

/* ---- main ---- */

typedef struct args {
    const char *pos[2];
    int npos;
    const char *json, *kind_rules;
    int32_t bins;
    int32_t ks[64];
    size_t nks;
    double band;
    int32_t draws;
    int32_t restarts;
    uint64_t seed;
    int32_t threads;
    uint32_t kinds, probes;
    int skip_mismatched, allow_nonfinite, fail_nonfinite, allow_zero, allow_empty, tensors,
        no_progress, verbose;
    int32_t layout;
} args;

static void parse_args(int argc, char **argv, args *a)
{
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *val = NULL;
        if (options_done || s[0] != '-' || s[1] == '\0') {
            sr_cli_add_checkpoint(prog, a->pos, &a->npos, s);
            continue;
        }
#define FLAG(name, field)                                                                      \
    if (strcmp(s, name) == 0) {                                                                \
        a->field = 1;                                                                          \
        continue;                                                                              \
    }
#define VALUE(name) sr_cli_value(prog, argc, argv, &i, name, &val)
        if (strcmp(s, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage(stdout);
            sr_cli_help_done(prog);
        }
        FLAG("--skip-mismatched", skip_mismatched)
        FLAG("--allow-nonfinite", allow_nonfinite) /* the default since 1.1 */
        FLAG("--fail-nonfinite", fail_nonfinite)
        FLAG("--allow-zero", allow_zero)
        FLAG("--allow-empty", allow_empty)
        FLAG("--tensors", tensors)
        FLAG("--no-progress", no_progress)
        FLAG("--verbose", verbose)
        FLAG("-v", verbose)
        if (VALUE("--json"))
            a->json = sr_cli_parse_json(prog, "--json", val);
        else if (VALUE("--bins"))
            a->bins = (int32_t)sr_cli_parse_int(prog, "--bins", val, 1, 1 << 24);
        else if (VALUE("--k"))
            a->nks = parse_ks(val, a->ks, 64);
        else if (VALUE("--band"))
            a->band = sr_cli_parse_real(prog, "--band", val, 0, 1, 1);
        else if (VALUE("--kmeans-restarts"))
            a->restarts = (int32_t)sr_cli_parse_int(prog, "--kmeans-restarts", val, 1,
                                                    SRESID_KMEANS_MAX_INIT);
        else if (VALUE("--null-draws"))
            a->draws = (int32_t)sr_cli_parse_int(prog, "--null-draws", val, 0, 10000);
        else if (VALUE("--seed"))
            a->seed = sr_cli_parse_seed(prog, val);
        else if (VALUE("--threads"))
            a->threads = sr_cli_parse_threads(prog, "--threads", val);
        else if (VALUE("--kinds"))
            a->kinds = sr_cli_parse_kinds(prog, "--kinds", val);
        else if (VALUE("--only")) {
            sr_cli_deprecated(prog, "--only", "use --kinds");
            a->kinds = sr_cli_parse_kinds(prog, "--only", val);
        } else if (VALUE("--kind-rules"))
            a->kind_rules = val;
        else if (VALUE("--probes"))
            a->probes = parse_probes("--probes", val);
        else if (VALUE("--layout"))
            a->layout = sr_cli_parse_layout(prog, "--layout", val);
        else
            bad_usage("unknown option %s", s);
#undef FLAG
#undef VALUE
    }
    if (a->npos == 0)
        bad_usage("no checkpoint given");
}

static void print_header(const args *a, const view *v, const sresid_report *r,
                         const sresid_residual *res, int32_t threads)
{
    if (res)
        printf("residual: %s - %s\n", a->pos[1], a->pos[0]);
    else
        printf("model: %s\n", a->pos[0]);
    sresid_group_report all = group_of(v, SRESID_GROUP_ALL);
    printf("tensors: %zu, values: %llu, layout: %s, threads: %d, seed: %llu\n", v->nt,
           (unsigned long long)all.count,
           a->layout == SRESID_LAYOUT_OUT_LAST ? "out-last" : "out-first", (int)threads,
           (unsigned long long)a->seed);
    size_t nu = res ? sresid_residual_unpaired_count(res) : 0;
    for (size_t i = 0; i < nu; i++) {
        const char *name = NULL;
        int32_t reason = 0;
        if (sresid_residual_unpaired(res, i, &name, &reason) != SRESID_OK)
            continue;
        printf("left out: ");
        sr_cli_put_clean(name);
        printf(" (%s)\n", reason == SRESID_UNPAIRED_BASE_ONLY      ? "only in base"
                          : reason == SRESID_UNPAIRED_TRAINED_ONLY ? "only in trained"
                          : reason == SRESID_UNPAIRED_SHAPE        ? "shapes differ"
                                                                   : "not a float tensor");
    }
    if (all.nonfinite) {
        size_t with = 0;
        for (size_t i = 0; i < v->nt; i++)
            with += v->t[i].nonfinite > 0;
        printf("non-finite values: %llu in %zu tensors, excluded (matrix probes skip those "
               "tensors)\n",
               (unsigned long long)all.nonfinite, with);
    }
    (void)r;
}

/* Nothing to measure, or values left out: said before any output. */
static void check_degenerate(const args *a, sresid_report *r, sresid_residual *res)
{
    size_t nt = sresid_report_tensor_count(r);
    if (nt == 0)
        sr_cli_degenerate(prog, a->allow_empty, "--allow-empty",
                          "no tensor is selected (see --kinds and --skip-mismatched): there is "
                          "nothing to report");
    sresid_group_report g = {.size = sizeof g};
    if (sresid_report_group(r, SRESID_GROUP_ALL, &g) != SRESID_OK)
        sr_cli_die(prog, "report", SRESID_ERR_INVALID_ARG);
    int zero = 0;
    if (res && nt > 0) {
        if (isfinite(g.mean) && isfinite(g.variance)) { /* the moments probe ran */
            zero = g.count > 0 && g.nonfinite == 0 && g.mean == 0 && g.variance == 0;
        } else {
            sresid_norms nr = {.size = sizeof nr};
            if (sresid_residual_norms(res, SRESID_ALL, &nr) == SRESID_OK)
                zero = nr.residual == 0;
        }
    }
    if (zero)
        sr_cli_degenerate(prog, a->allow_zero, "--allow-zero",
                          "%s equals %s in every reported value: the residual is zero, its "
                          "statistics are undefined",
                          a->pos[1], a->pos[0]);
    if (g.nonfinite) {
        size_t with = 0;
        for (size_t i = 0; i < nt; i++) {
            sresid_tensor_report t = {.size = sizeof t};
            if (sresid_report_tensor(r, i, &t) == SRESID_OK)
                with += t.nonfinite > 0;
        }
        sr_cli_watch_clear();
        fprintf(stderr, "%s: warning: %llu NaN or Inf values in %zu tensors are counted and "
                "excluded (those tensors get no matrix figures); --fail-nonfinite refuses them\n",
                prog, (unsigned long long)g.nonfinite, with);
    }
}

int main(int argc, char **argv)
{
    /* First: it picks the BLIS kernels, which must come before any BLIS call. */
    prog = sr_cli_start(argc, argv, NULL);

    args a = {.layout = SRESID_LAYOUT_OUT_FIRST};
    parse_args(argc, argv, &a);
    int32_t threads = a.threads ? a.threads : sresid_get_threads();
    if (a.verbose)
        fprintf(stderr, "%s: libsparseresid %s, BLIS kernels %s, %d threads\n", prog,
                sresid_version_string(), sresid_blas_arch(), (int)threads);

    double t0 = sr_cli_now();
    sresid_model *base = sr_cli_open_model(prog, a.pos[0], a.layout);
    sresid_model *trained = a.npos == 2 ? sr_cli_open_model(prog, a.pos[1], a.layout) : NULL;
    {
        sresid_model *const models[2] = {base, trained};
        const char *const outs[1] = {a.json};
        sr_cli_guard_outputs(prog, models, a.pos, (size_t)a.npos, outs, 1);
        sr_cli_kind_rules(prog, a.kind_rules, models, 2);
    }
    sresid_residual *res = NULL;
    if (trained) {
        sresid_pair_opts po = {.size = sizeof po,
                               .flags = a.skip_mismatched ? SRESID_PAIR_SKIP_MISMATCHED : 0u};
        sresid_status st = sresid_residual_create(base, trained, &po, &res);
        if (st) {
            char *what = xfmt("cannot pair %s with %s (see --skip-mismatched)", a.pos[0], a.pos[1]);
            sr_cli_die(prog, what, st);
        }
    }
    sr_cli_check_layout(prog, base, a.pos[0], a.layout);
    if (trained)
        sr_cli_check_layout(prog, trained, a.pos[1], a.layout);

    sresid_report_opts o = {.size = sizeof o,
                            .probes = a.probes,
                            .kinds = a.kinds,
                            .flags = a.fail_nonfinite ? SRESID_REPORT_FAIL_NONFINITE : 0u,
                            .bins = a.bins,
                            .band = a.band,
                            .seed = a.seed,
                            .ks = a.nks ? a.ks : NULL,
                            .nks = a.nks,
                            .null_draws = a.draws,
                            .threads = threads,
                            .kmeans_restarts = a.restarts}; /* progress: cli_watch.h */
    sresid_report *r = NULL;
    sr_cli_watch_stage("report");
    sresid_status st =
        res ? sresid_report_residual(res, &o, &r) : sresid_report_model(base, &o, &r);
    if (st) {
        if (st == SRESID_ERR_NONFINITE && a.fail_nonfinite)
            sr_cli_fatal(prog, "%s (without --fail-nonfinite they are counted and excluded)",
                         sresid_last_error());
        sr_cli_die(prog, "report", st);
    }
    check_degenerate(&a, r, res);
    double t1 = sr_cli_now();
    if (a.verbose)
        fprintf(stderr, "%s: report in %.3f s\n", prog, t1 - t0);

    if (a.json && strcmp(a.json, "-") == 0) {
        char *text = NULL;
        st = sresid_report_json(r, SRESID_JSON_INDENT, &text);
        if (st)
            sr_cli_die(prog, "JSON", st);
        sr_cli_write_text("-", text);
        sresid_free(text);
    } else {
        if (a.json) {
            st = sresid_report_save_json(r, SRESID_JSON_INDENT, a.json);
            if (st)
                sr_cli_die(prog, "cannot write the JSON report", st);
        }
        static const int32_t default_ks[] = {2, 4, 8, 16};
        view v;
        view_load(&v, r, a.nks ? a.ks : default_ks, a.nks ? a.nks : 4);
        uint32_t probes = a.probes ? a.probes : SRESID_PROBE_ALL;
        print_header(&a, &v, r, res, threads);
        print_components(&v, probes, a.bins ? a.bins : 100);
        print_pr(&v);
        print_correlation(&v, probes);
        print_layers(&v);
        print_lowfreq(&v, a.band > 0 ? a.band : 0.125);
        print_kmeans(&v);
        if (a.tensors)
            print_tensors(&v);
        free(v.t);
    }
    if (a.verbose)
        fprintf(stderr, "%s: total %.3f s\n", prog, sr_cli_now() - t0);

    sresid_report_free(r);
    sresid_residual_free(res);
    sresid_model_free(trained);
    sresid_model_free(base);
    return sr_cli_finish(prog);
}
