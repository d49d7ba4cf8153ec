/* sr-apply: add a sparse delta (from sr-compress) to its base checkpoint
 * and write the full model. An example program of libsparseresid. */
#include <stdio.h>
#include <string.h>

#include <sparseresid/sparseresid.h>

#include "cli.h"

static const char *prog = "sr-apply";
#define bad_usage(...) sr_cli_bad_usage(prog, __VA_ARGS__)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s BASE DELTA -o OUT.safetensors [options]\n"
            "\n"
            "Writes BASE + scale * DELTA as a full safetensors model in the base's dtypes\n"
            "(changed entries computed in float32 and rounded once, every other byte\n"
            "copied). Refuses a base whose tensors differ from the one the delta was made\n"
            "from (name, shape, dtype, content hash). The output appears whole or not at\n"
            "all.\n"
            "\n"
            "  -o, --output FILE  the model to write (required)\n"
            "  --scale S          scale of the delta (default 1)\n"
            "  --force            apply even if a base tensor's content hash differs\n"
            "  --no-clobber       fail if the output exists\n"
            "  --no-progress      no progress bar (shown on stderr only on a terminal)\n"
            "  --verbose          what was done, on stderr\n"
            "  --help             show this text\n"
            "\n"
            "Exit status: 0 ok, 1 error, 2 bad usage.\n",
            prog);
}

int main(int argc, char **argv)
{
    int verbose;
    prog = sr_cli_start(argc, argv, &verbose);

    const char *pos[2] = {NULL, NULL}, *out = NULL;
    int npos = 0, force = 0, no_clobber = 0, options_done = 0;
    double scale = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *s = argv[i];
        if (options_done || s[0] != '-' || s[1] == '\0') {
            if (npos == 2)
                bad_usage("too many arguments: %s (give BASE and DELTA)", s);
            pos[npos++] = s;
        } else if (strcmp(s, "--") == 0) {
            options_done = 1;
        } else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage(stdout);
            sr_cli_help_done(prog);
        } else if (sr_cli_output_opt(prog, argc, argv, &i, &out)) {
            continue;
        } else if (sr_cli_value(prog, argc, argv, &i, "--scale", &v)) {
            if (!sr_cli_real(v, &scale) || scale == 0)
                bad_usage("--scale wants a finite non-zero number, not '%s'", v);
        } else if (strcmp(s, "--force") == 0) {
            force = 1;
        } else if (strcmp(s, "--no-clobber") == 0) {
            no_clobber = 1;
        } else if (strcmp(s, "--no-progress") == 0) {
            /* read by sr_cli_start */
        } else if (strcmp(s, "--verbose") == 0 || strcmp(s, "-v") == 0) {
            verbose = 1;
        } else {
            bad_usage("unknown option %s", s);
        }
    }
    if (npos != 2)
        bad_usage("give BASE and DELTA");
    if (!out)
        bad_usage("give the output file with -o OUT.safetensors");

    sresid_model *base = sr_cli_open_model(prog, pos[0], SRESID_LAYOUT_OUT_FIRST);
    {
        sresid_model *const models[2] = {base, NULL};
        const char *const outs[1] = {out};
        sr_cli_guard_outputs(prog, models, pos, 2, outs, 1);
    }
    sresid_sparse *sp = NULL;
    sresid_status st = sresid_sparse_load(pos[1], &sp);
    if (st)
        sr_cli_die_open(prog, pos[1], st);
    sresid_apply_opts ao = {.size = sizeof ao,
                            .scale = scale,
                            .flags = (force ? SRESID_APPLY_FORCE : 0u) |
                                     (no_clobber ? SRESID_SAVE_NO_CLOBBER : 0u)};
    sr_cli_watch_stage("apply");
    if ((st = sresid_sparse_apply(sp, base, &ao, out))) {
        if (st == SRESID_ERR_CANCELLED)
            sr_cli_watch_check(); /* stopped by a signal: exit 130 or 143 */
        /* the message names the tensor; say which files were involved */
        sr_cli_watch_clear();
        const char *detail = sresid_last_error();
        fprintf(stderr, "%s: cannot apply %s to %s: %s\n", prog, pos[1], pos[0],
                detail && *detail ? detail : sresid_strerror(st));
        return 1;
    }
    if (verbose) {
        sresid_sparse_info tot = {.size = sizeof tot};
        sresid_sparse_info_get(sp, SRESID_ALL, &tot);
        fprintf(stderr, "%s: wrote %s: %zu tensors changed at %llu positions, scale %g\n", prog,
                out, sresid_sparse_count(sp), (unsigned long long)tot.kept, scale);
    }
    sresid_sparse_free(sp);
    sresid_model_free(base);
    return 0;
}
