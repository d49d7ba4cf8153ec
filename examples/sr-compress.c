/* sr-compress: keep the largest entries of a fine-tune's residual and save
 * them as a sparse delta (safetensors), with the error report. An example
 * program of libsparseresid. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"
#include "cli_json.h"

static const char *prog = "sr-compress";
#define bad_usage(...) sr_cli_bad_usage(prog, __VA_ARGS__)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s BASE TRAINED -o DELTA.safetensors [options]\n"
            "\n"
            "Keeps the largest entries of the residual TRAINED - BASE and saves them as a\n"
            "sparse delta (positions and values per tensor, docs/formats.md); sr-apply\n"
            "adds it back to BASE. Prints the error report: kept entries, bytes,\n"
            "compression ratio against the dense residual, relative error |R - R'|/|R|\n"
            "and the share of sum R^2 kept.\n"
            "\n"
            "Rule (one; default --keep 0.1):\n"
            "  --keep F             the fraction F of all entries with the largest |R|,\n"
            "                       over the whole model (k = floor(F*N + 0.5))\n"
            "  --per-tensor-keep F  the fraction F of each tensor's entries\n"
            "  --threshold T        every entry with |R| >= T\n"
            "  --energy E           the fewest largest entries holding the share E of sum R^2\n"
            "  --dare P             each entry with probability P, scaled by 1/P\n"
            "Options:\n"
            "  -o, --output FILE    the delta to write (required)\n"
            "  --dtype D            stored values: f32 (default), f16 or bf16\n"
            "  --rounded            f32 without the low parts that make base + value\n"
            "                       equal TRAINED exactly (4 bytes an entry less)\n"
            "  --seed N             seed of --dare (default 0)\n"
            "  --json FILE|-        write the error report as JSON to FILE, or to stdout\n"
            "  --skip-mismatched    leave out tensors found on one side only or with\n"
            "                       different shapes (default: fail)\n"
            "  --layout L           matrix view, out-first (default) or out-last, as in\n"
            "                       the other programs; the delta does not depend on it\n"
            "  --in-memory          keep the residual in memory between passes (4 bytes an\n"
            "                       entry): fewer reads of the checkpoints, same delta\n"
            "  --threads N          worker threads over the tensors (default:\n"
            "                       SRESID_NUM_THREADS, else all CPUs); same delta\n"
            "  --tensors            print one line per tensor\n"
            "  --no-clobber         fail if the output exists\n"
            "  --allow-zero         write the delta even when TRAINED equals BASE (the\n"
            "                       residual is zero everywhere; default: fail)\n"
            "  --no-progress        no progress bar (shown on stderr only on a terminal)\n"
            "  --verbose            BLIS kernels and timing on stderr\n"
            "  --help               show this text\n"
            "\n"
            "A checkpoint is a .safetensors file, a *.safetensors.index.json or a\n"
            "directory of shards. Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog);
}

typedef struct args {
    const char *pos[2];
    int npos;
    const char *out, *json;
    int32_t rule, dtype, layout, threads;
    double param;
    uint64_t seed;
    int skip_mismatched, in_memory, rounded, tensors, no_clobber, allow_zero, verbose;
} args;

static void parse_args(int argc, char **argv, args *a)
{
    static const char *const rules[] = {"--keep", "--per-tensor-keep", "--threshold",
                                        "--energy", "--dare"};
    static const int32_t codes[] = {SRESID_SPARSE_TOP, SRESID_SPARSE_TOP_PER_TENSOR,
                                    SRESID_SPARSE_THRESHOLD, SRESID_SPARSE_ENERGY,
                                    SRESID_SPARSE_DARE};
    int nrules = 0, options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *s = argv[i];
#define VALUE(name) sr_cli_value(prog, argc, argv, &i, name, &v)
        if (options_done || s[0] != '-' || s[1] == '\0') {
            sr_cli_add_checkpoint(prog, a->pos, &a->npos, s);
            continue;
        }
        if (strcmp(s, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage(stdout);
            sr_cli_help_done(prog);
        }
        if (sr_cli_output_opt(prog, argc, argv, &i, &a->out))
            continue;
        int rule = -1;
        for (int k = 0; k < 5 && rule < 0; k++)
            if (VALUE(rules[k]))
                rule = k;
        if (rule >= 0) {
            if (++nrules > 1)
                bad_usage("give one rule: --keep, --per-tensor-keep, --threshold, --energy or "
                          "--dare");
            a->rule = codes[rule];
            double hi = a->rule == SRESID_SPARSE_THRESHOLD ? HUGE_VAL : 1;
            int open_lo = a->rule != SRESID_SPARSE_TOP && a->rule != SRESID_SPARSE_TOP_PER_TENSOR;
            a->param = sr_cli_parse_real(prog, rules[rule], v, 0, hi, open_lo);
        } else if (VALUE("--dtype")) {
            if (strcmp(v, "f32") == 0)
                a->dtype = SRESID_DTYPE_F32;
            else if (strcmp(v, "f16") == 0)
                a->dtype = SRESID_DTYPE_F16;
            else if (strcmp(v, "bf16") == 0)
                a->dtype = SRESID_DTYPE_BF16;
            else
                bad_usage("--dtype wants f32, f16 or bf16, not '%s'", v);
        } else if (VALUE("--seed")) {
            a->seed = sr_cli_parse_seed(prog, v);
        } else if (VALUE("--threads")) {
            a->threads = sr_cli_parse_threads(prog, "--threads", v);
        } else if (VALUE("--json")) {
            a->json = sr_cli_parse_json(prog, "--json", v);
        } else if (VALUE("--layout")) {
            a->layout = sr_cli_parse_layout(prog, "--layout", v);
        } else if (strcmp(s, "--skip-mismatched") == 0) {
            a->skip_mismatched = 1;
        } else if (strcmp(s, "--in-memory") == 0) {
            a->in_memory = 1;
        } else if (strcmp(s, "--rounded") == 0) {
            a->rounded = 1;
        } else if (strcmp(s, "--tensors") == 0) {
            a->tensors = 1;
        } else if (strcmp(s, "--allow-zero") == 0) {
            a->allow_zero = 1;
        } else if (strcmp(s, "--no-clobber") == 0) {
            a->no_clobber = 1;
        } else if (strcmp(s, "--no-progress") == 0) {
            /* read by sr_cli_start */
        } else if (strcmp(s, "--verbose") == 0 || strcmp(s, "-v") == 0) {
            a->verbose = 1;
        } else {
            bad_usage("unknown option %s", s);
        }
#undef VALUE
    }
    if (a->npos != 2)
        bad_usage("give two checkpoints, BASE and TRAINED");
    if (!a->out)
        bad_usage("give the output file with -o DELTA.safetensors");
}

/* The error report of one tensor (or the total) as JSON. */
static json_t *info_json(const sresid_sparse_info *in)
{
    json_t *o = json_object();
    if (in->name) {
        json_t *shape = json_array();
        for (int32_t d = 0; d < in->ndim; d++)
            sr_cli_jpush(shape, json_integer(in->shape[d]));
        sr_cli_jset(o, "name", sr_cli_jstr(in->name));
        sr_cli_jset(o, "shape", shape);
        sr_cli_jset(o, "base_dtype", sr_cli_jstr(sresid_dtype_name(in->base_dtype)));
        sr_cli_jset(o, "index_dtype", sr_cli_jstr(sresid_dtype_name(in->index_dtype)));
    }
    sr_cli_jset(o, "numel", json_integer(in->numel));
    sr_cli_jset(o, "kept", json_integer((json_int_t)in->kept));
    sr_cli_jset(o, "bytes", json_integer((json_int_t)in->bytes));
    sr_cli_jset(o, "dense_bytes", json_integer((json_int_t)in->dense_bytes));
    sr_cli_jset(o, "ratio", sr_cli_jnum(in->ratio));
    sr_cli_jset(o, "energy", sr_cli_jnum(in->energy));
    sr_cli_jset(o, "kept_energy", sr_cli_jnum(in->kept_energy));
    sr_cli_jset(o, "error", sr_cli_jnum(in->error));
    return o;
}

static const char *rule_name(int32_t r)
{
    switch (r) {
    case SRESID_SPARSE_TOP: return "top";
    case SRESID_SPARSE_TOP_PER_TENSOR: return "top_per_tensor";
    case SRESID_SPARSE_THRESHOLD: return "threshold";
    case SRESID_SPARSE_ENERGY: return "energy";
    default: return "dare";
    }
}

int main(int argc, char **argv)
{
    prog = sr_cli_start(argc, argv, NULL);

    args a = {.rule = SRESID_SPARSE_TOP, .param = 0.1, .dtype = SRESID_DTYPE_F32};
    parse_args(argc, argv, &a);
    if (a.rule != SRESID_SPARSE_THRESHOLD && a.param == 0)
        bad_usage("a fraction of 0 keeps nothing; give a positive value");

    sresid_model *base = sr_cli_open_model(prog, a.pos[0], a.layout);
    sresid_model *trained = sr_cli_open_model(prog, a.pos[1], a.layout);
    {
        sresid_model *const models[2] = {base, trained};
        const char *const outs[2] = {a.out, a.json};
        sr_cli_guard_outputs(prog, models, a.pos, 2, outs, 2);
    }
    sresid_residual *res = NULL;
    sresid_pair_opts po = {.size = sizeof po,
                           .flags = a.skip_mismatched ? SRESID_PAIR_SKIP_MISMATCHED : 0u};
    sresid_status st = sresid_residual_create(base, trained, &po, &res);
    if (st) {
        char *what = sr_cli_xfmt(prog, "cannot pair %s with %s (see --skip-mismatched)",
                                 a.pos[0], a.pos[1]);
        sr_cli_die(prog, what, st);
    }
    sresid_sparse_opts so = {.size = sizeof so,
                             .rule = a.rule,
                             .dtype = a.dtype,
                             .param = a.param,
                             .seed = a.seed,
                             .threads = a.threads,
                             .flags = (a.in_memory ? SRESID_SPARSE_IN_MEMORY : 0u) |
                                      (a.rounded ? SRESID_SPARSE_ROUNDED : 0u)};
    sresid_sparse *sp = NULL;
    sr_cli_watch_stage("delta");
    if ((st = sresid_sparse_create(res, &so, &sp)))
        sr_cli_die(prog, "compress", st);
    sresid_sparse_info tot = {.size = sizeof tot};
    sresid_sparse_info_get(sp, SRESID_ALL, &tot);
    if (tot.energy == 0)
        sr_cli_degenerate(prog, a.allow_zero, "--allow-zero",
                          "%s equals %s in all %lld paired values: the residual is zero, "
                          "there is nothing to compress",
                          a.pos[1], a.pos[0], (long long)tot.numel);
    sresid_save_opts sv = {.size = sizeof sv,
                           .flags = a.no_clobber ? SRESID_SAVE_NO_CLOBBER : 0u};
    sr_cli_watch_stage("save");
    if ((st = sresid_sparse_save(sp, a.out, &sv)))
        sr_cli_die(prog, a.out, st);

    size_t n = sresid_sparse_count(sp);
    if (a.json) {
        json_t *doc = sr_cli_json_doc("sparseresid-delta-report", 1), *list = json_array();
        sr_cli_jset(doc, "base", sr_cli_jstr(a.pos[0]));
        sr_cli_jset(doc, "trained", sr_cli_jstr(a.pos[1]));
        sr_cli_jset(doc, "output", sr_cli_jstr(a.out));
        sr_cli_jset(doc, "rule", json_string(rule_name(a.rule)));
        sr_cli_jset(doc, "param", json_real(a.param));
        sr_cli_jset(doc, "value_dtype", json_string(sresid_dtype_name(a.dtype)));
        sr_cli_jset(doc, "seed", json_integer((json_int_t)a.seed));
        for (size_t i = 0; i < n; i++) {
            sresid_sparse_info in = {.size = sizeof in};
            sresid_sparse_info_get(sp, i, &in);
            sr_cli_jpush(list, info_json(&in));
        }
        sr_cli_jset(doc, "tensors", list);
        sr_cli_jset(doc, "total", info_json(&tot));
        json_t *un = json_array();
        for (size_t i = 0; i < sresid_residual_unpaired_count(res); i++) {
            const char *name;
            int32_t why;
            sresid_residual_unpaired(res, i, &name, &why);
            sr_cli_jpush(un, sr_cli_jstr(name));
        }
        sr_cli_jset(doc, "unpaired", un);
        sr_cli_json_write(prog, a.json, doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    }
    if (!a.json || strcmp(a.json, "-") != 0) {
        if (a.tensors) {
            sr_cli_table t = {.ncols = 7, .right = "lrrrrrr", .indent = "  ", .prog = prog};
            sr_cli_table_row(&t, sr_cli_xfmt(prog, "tensor"), sr_cli_xfmt(prog, "numel"),
                             sr_cli_xfmt(prog, "kept"), sr_cli_xfmt(prog, "index"),
                             sr_cli_xfmt(prog, "ratio"), sr_cli_xfmt(prog, "error"),
                             sr_cli_xfmt(prog, "energy kept"));
            for (size_t i = 0; i < n; i++) {
                sresid_sparse_info in = {.size = sizeof in};
                sresid_sparse_info_get(sp, i, &in);
                sr_cli_table_row(&t, sr_cli_xfmt(prog, "%s", in.name),
                                 sr_cli_xfmt(prog, "%lld", (long long)in.numel),
                                 sr_cli_xfmt(prog, "%llu", (unsigned long long)in.kept),
                                 sr_cli_xfmt(prog, "%s", sresid_dtype_name(in.index_dtype)),
                                 sr_cli_fig(prog, in.ratio, 2), sr_cli_fig(prog, in.error, 6),
                                 sr_cli_fig(prog, in.kept_energy, 6));
            }
            sr_cli_table_print(&t);
        }
        /* a delta that keeps most entries can outgrow the dense residual */
        int larger = tot.ratio < 1;
        char *size = isfinite(tot.ratio)
                         ? sr_cli_xfmt(prog, "%.2fx %s than the dense residual",
                                       larger ? 1 / tot.ratio : tot.ratio,
                                       larger ? "larger" : "smaller")
                         : sr_cli_xfmt(prog, "nothing stored");
        char *err = sr_cli_fig(prog, tot.error, 6), *kept = sr_cli_fig(prog, tot.kept_energy, 6);
        printf("%s: %zu tensors, kept %llu of %lld entries (%.4f%%), %llu bytes, %s, "
               "relative error %s, energy kept %s\n",
               a.out, n, (unsigned long long)tot.kept, (long long)tot.numel,
               tot.numel ? 100.0 * (double)tot.kept / (double)tot.numel : 0.0,
               (unsigned long long)tot.bytes, size, err, kept);
        free(size);
        free(err);
        free(kept);
    }
    sresid_sparse_free(sp);
    sresid_residual_free(res);
    sresid_model_free(trained);
    sresid_model_free(base);
    return sr_cli_finish(prog);
}
