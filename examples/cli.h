/* Helpers shared by the example programs; not part of the library. */
#ifndef SR_CLI_H
#define SR_CLI_H

#include <sparseresid/sparseresid.h>

/* Before any BLIS call: when BLIS_ARCH_TYPE is unset, set it to the best
 * kernel set this CPU runs ("0" skx for AVX-512 F/DQ/BW/VL, "6" zen3 for
 * AVX2+FMA; BLIS parses a number), else leave it. verbose: say so on stderr. */
void sr_cli_pick_blis_arch(int verbose);

/* Print "prog: what: <detail>" as one line on stderr and exit(1). The detail
 * is sresid_last_error(), or sresid_strerror(st) when that is empty. */
_Noreturn void sr_cli_die(const char *prog, const char *what, sresid_status st);

/* sr_cli_die for a checkpoint that failed to open: the line names path even
 * when the library's message does not. */
_Noreturn void sr_cli_die_open(const char *prog, const char *path, sresid_status st);

/* Option with a value, as "--name VALUE" or "--name=VALUE", at argv[*i].
 * Returns 1 and sets *value (advancing *i past a separate value), 0 when
 * argv[*i] is another argument, -1 when the value is missing. */
int sr_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Program name for messages: the last component of argv[0]. */
const char *sr_cli_prog(const char *argv0);

/* malloc that prints "prog: out of memory" and exits 1 on failure (size 0
 * allocates 1 byte), and printf into a fresh string with it. */
void *sr_cli_xmalloc(const char *prog, size_t n);
char *sr_cli_xfmt(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* SR_CLI_H */
