/* Helpers shared by the example programs; not part of the library. */
#ifndef SR_CLI_H
#define SR_CLI_H

#include <sparseresid/sparseresid.h>

#include "cli_watch.h"

/* The start of main: look for --verbose or -v (stored in *verbose when not
 * NULL) and --no-progress before any "--", say which BLIS kernels run when
 * verbose (sr_cli_say_blis), start the progress line and the signal
 * handling (sr_cli_watch_start), and return the program name (sr_cli_prog). */
const char *sr_cli_start(int argc, char **argv, int *verbose);

/* verbose: say on stderr which BLIS kernel set runs and what BLIS_ARCH_TYPE
 * is (the library sets it at load when unset: docs/conventions.md). */
void sr_cli_say_blis(int verbose);

/* Print "prog: what: <detail>" as one line on stderr and exit(1). The detail
 * is sresid_last_error(), or sresid_strerror(st) when that is empty. */
_Noreturn void sr_cli_die(const char *prog, const char *what, sresid_status st);
/* After --help: exit 0 once the text reached stdout, else say why on stderr
 * and exit 1 (a full disk, a closed pipe). */
_Noreturn void sr_cli_help_done(const char *prog);

/* sr_cli_die for a checkpoint that failed to open: the line names path even
 * when the library's message does not. */
_Noreturn void sr_cli_die_open(const char *prog, const char *path, sresid_status st);

/* Option with a value, as "--name VALUE" or "--name=VALUE", at argv[*i].
 * Returns 1 and sets *value (advancing *i past a separate value), 0 when
 * argv[*i] is another argument, -1 when the value is missing. */
int sr_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Before any work, the outputs of a run (NULL and "-" entries skipped) are
 * checked: an empty path is a usage error (exit 2); an output whose
 * directory does not exist, that exists and is not a regular file, is one
 * of the files of the nin checkpoints
 * (models[i] opened from inputs[i]; a NULL model: inputs[i] is a plain
 * file), or is the same file as another output is refused with one line,
 * exit 1 (same file: same device and inode through symlinks, "./" and hard
 * links; for files that do not exist yet, the same resolved path). */
void sr_cli_guard_outputs(const char *prog, sresid_model *const *models,
                          const char *const *inputs, size_t nin, const char *const *outputs,
                          size_t nout);

/* Program name for messages: the last component of argv[0]. */
const char *sr_cli_prog(const char *argv0);

/* Print "prog: <message>" as one line on stderr and exit(1). */
_Noreturn void sr_cli_fatal(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A run with nothing to measure (a residual zero everywhere, a selection
 * of no tensor): unless allowed, "prog: <message>; pass FLAG to go on" on
 * stderr and exit(1); allowed, "prog: warning: <message>" and return. */
void sr_cli_degenerate(const char *prog, int allowed, const char *flag, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A figure for a table: "%.*f" of x, or "-" when x is NaN or infinite
 * (malloc'd; exits on no memory). */
char *sr_cli_fig(const char *prog, double x, int decimals);

/* Print "prog: <message>" and "(try prog --help)" on stderr and exit(2). */
_Noreturn void sr_cli_bad_usage(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* sr_cli_opt_value for an option that must have a value: a missing one is
 * the usage error "NAME needs a value". Returns 1 (found) or 0. */
int sr_cli_value(const char *prog, int argc, char **argv, int *i, const char *name,
                 const char **value);

/* The output file as "-o FILE", "--output FILE" or "--output=FILE" at
 * argv[*i]: 1 and *out (advancing *i past a separate name), 0 when argv[*i]
 * is another argument; a missing name is a usage error. */
int sr_cli_output_opt(const char *prog, int argc, char **argv, int *i, const char **out);

/* Keep s as the next of at most two checkpoint arguments, pos[*npos]; a
 * third is the usage error "too many checkpoints: S". */
void sr_cli_add_checkpoint(const char *prog, const char *pos[2], int *npos, const char *s);

/* Option values, whole strings only; anything else is sr_cli_bad_usage.
 * An integer in [lo, hi] ("OPT wants an integer in [lo, hi], not 'S'"): */
long long sr_cli_parse_int(const char *prog, const char *opt, const char *s, long long lo,
                           long long hi);
/* A --seed in [0, 2^64), decimal, hex or octal: */
uint64_t sr_cli_parse_seed(const char *prog, const char *s);
/* A number in [lo, hi], or in (lo, hi] when open_lo: */
double sr_cli_parse_real(const char *prog, const char *opt, const char *s, double lo, double hi,
                         int open_lo);

/* 1 and *v when s is a whole finite number in range of a double, else 0. */
int sr_cli_real(const char *s, double *v);

/* The kind (SRESID_KIND_*) whose name is the len bytes at s, or -1. */
int32_t sr_cli_kind_of(const char *s, size_t len);

/* 1 and *layout for "out-first" or "out-last" (SRESID_LAYOUT_*), else 0. */
int sr_cli_layout(const char *s, int32_t *layout);

/* --kind-rules FILE (docs/tools.md, "Kind rules"): lines "PATTERN KIND"
 * (a glob as sresid_model_set_kind_rules takes, a kind name), blank lines
 * and "#" comments, and the line "no-defaults" for SRESID_RULES_REPLACE;
 * set on each of the n models (NULL entries skipped). path NULL: nothing.
 * A file that cannot be read: one line, exit 1; a bad line: the usage error
 * "FILE:LINE: ...", exit 2. */
void sr_cli_kind_rules(const char *prog, const char *path, sresid_model *const *models,
                       size_t n);

/* sresid_model_open with the given matrix layout; sr_cli_die_open on failure. */
sresid_model *sr_cli_open_model(const char *prog, const char *path, int32_t layout);

/* ---- The options common to the programs (docs/tools.md, "Options common
 * to the programs"): one parser each, so that a name has one meaning and
 * one value syntax everywhere. A bad value is sr_cli_bad_usage. ---- */

/* --layout: "out-first" or "out-last" (SRESID_LAYOUT_*). */
int32_t sr_cli_parse_layout(const char *prog, const char *opt, const char *s);
/* --kinds: kind names separated by commas, or "all"; bits 1 << SRESID_KIND_*. */
uint32_t sr_cli_parse_kinds(const char *prog, const char *opt, const char *s);
/* --threads: an integer in [1, 4096]. */
int32_t sr_cli_parse_threads(const char *prog, const char *opt, const char *s);
/* --json: a file name, or "-" for stdout; not empty. Returns s. */
const char *sr_cli_parse_json(const char *prog, const char *opt, const char *s);

/* A deprecated spelling was used: "prog: OLD is deprecated ...: ADVICE" on
 * stderr, once per run for each old (compared as a string). */
void sr_cli_deprecated(const char *prog, const char *old, const char *advice);

/* Warn on stderr, once per run, when more rank-4 float tensors of m (opened
 * from path) are shaped like the other matrix layout than like layout:
 * PyTorch kernels are (out, in, kh, kw), TF/Keras ones (kh, kw, in, out),
 * with kh, kw <= 7. The line names the first such tensor and the option. */
void sr_cli_check_layout(const char *prog, const sresid_model *m, const char *path,
                         int32_t layout);

/* Write text and a newline to path whole or not at all (a temporary file
 * beside it, synced, then renamed over it): 0, or -1 with errno set. When
 * path is "-", to stdout, whose errors sr_cli_finish reports. */
int sr_cli_write_text(const char *path, const char *text);

/* Seconds on the monotonic clock, for timings. */
double sr_cli_now(void);

/* The end of main: flush stdout; 0, or 1 after "prog: error writing the output". */
int sr_cli_finish(const char *prog);

/* malloc that prints "prog: out of memory" and exits 1 on failure (size 0
 * allocates 1 byte), and printf into a fresh string with it. */
void *sr_cli_xmalloc(const char *prog, size_t n);
char *sr_cli_xfmt(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Text tables: cells collected row by row, then printed with aligned columns
 * (widths in UTF-8 code points; control bytes shown as '?'). */
typedef struct sr_cli_table {
    size_t ncols;
    const char *right; /* per column: 'r' right-aligned, else left */
    const char *indent; /* printed before each row; NULL for none */
    const char *prog;  /* for the out-of-memory message */
    char **cells;
    size_t n, cap;
} sr_cli_table;

/* Write s to stdout with control bytes shown as '?' (a name may hold one). */
void sr_cli_put_clean(const char *s);

/* Append a cell; takes ownership of s (malloc'd). */
void sr_cli_table_put(sr_cli_table *t, char *s);
/* Append a whole row of t->ncols cells (char *, owned as above). */
void sr_cli_table_row(sr_cli_table *t, ...);
/* Print to stdout and free the cells; the table can be filled again. */
void sr_cli_table_print(sr_cli_table *t);

#endif /* SR_CLI_H */
