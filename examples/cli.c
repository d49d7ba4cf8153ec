/* Helpers shared by the example programs; not part of the library. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sr_cli_pick_blis_arch(int verbose)
{
    const char *set = getenv("BLIS_ARCH_TYPE");
    if (set) {
        if (verbose)
            fprintf(stderr, "blis: BLIS_ARCH_TYPE=%s from the environment, left alone\n", set);
        return;
    }
    const char *pick = NULL, *why = NULL;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
        pick = "0";
        why = "skx kernels, CPU has AVX-512 F/DQ/BW/VL";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        pick = "6";
        why = "zen3 kernels, CPU has AVX2 and FMA";
    }
#endif
    /* BLIS reads the variable with strtol when it initialises, so a number it is. */
    if (pick && setenv("BLIS_ARCH_TYPE", pick, 0) != 0)
        pick = NULL;
    if (verbose) {
        if (pick)
            fprintf(stderr, "blis: BLIS_ARCH_TYPE=%s (%s)\n", pick, why);
        else
            fprintf(stderr, "blis: BLIS_ARCH_TYPE left unset, BLIS picks its kernels\n");
    }
}

/* Control bytes (a tensor name may hold a newline) would break the one line. */
static void put_clean(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        fputc(c < 0x20 || c == 0x7f ? '?' : c, stderr);
    }
}

_Noreturn void sr_cli_die(const char *prog, const char *what, sresid_status st)
{
    const char *detail = sresid_last_error();
    if (!detail || !*detail)
        detail = sresid_strerror(st);
    put_clean(prog);
    fputs(": ", stderr);
    put_clean(what);
    fputs(": ", stderr);
    put_clean(detail);
    fputc('\n', stderr);
    exit(1);
}

_Noreturn void sr_cli_die_open(const char *prog, const char *path, sresid_status st)
{
    const char *detail = sresid_last_error();
    if (detail && *detail && strstr(detail, path))
        sr_cli_die(prog, "cannot open checkpoint", st);
    sr_cli_die(prog, path, st);
}

int sr_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

const char *sr_cli_prog(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    return slash ? slash + 1 : (argv0 && *argv0 ? argv0 : "sr");
}

void *sr_cli_xmalloc(const char *prog, size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    return p;
}

char *sr_cli_xfmt(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = sr_cli_xmalloc(prog, n > 0 ? (size_t)n + 1 : 1);
    va_start(ap, fmt);
    vsnprintf(s, n > 0 ? (size_t)n + 1 : 1, fmt, ap);
    va_end(ap);
    return s;
}

void sr_cli_table_put(sr_cli_table *t, char *s)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char **c = realloc(t->cells, cap * sizeof *c);
        if (!c) {
            fprintf(stderr, "%s: out of memory\n", t->prog ? t->prog : "sr");
            exit(1);
        }
        t->cells = c;
        t->cap = cap;
    }
    t->cells[t->n++] = s;
}

void sr_cli_table_row(sr_cli_table *t, ...)
{
    va_list ap;
    va_start(ap, t);
    for (size_t c = 0; c < t->ncols; c++)
        sr_cli_table_put(t, va_arg(ap, char *));
    va_end(ap);
}

/* Columns are counted in code points, so UTF-8 names line up. */
static size_t width_of(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

void sr_cli_put_clean(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        putchar(c < 0x20 || c == 0x7f ? '?' : c);
    }
}

void sr_cli_table_print(sr_cli_table *t)
{
    size_t *w = sr_cli_xmalloc(t->prog ? t->prog : "sr", t->ncols * sizeof *w);
    for (size_t c = 0; c < t->ncols; c++)
        w[c] = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t cw = width_of(t->cells[i]);
        if (cw > w[i % t->ncols])
            w[i % t->ncols] = cw;
    }
    for (size_t i = 0; i < t->n; i++) {
        size_t c = i % t->ncols, pad = w[c] - width_of(t->cells[i]);
        int last = c + 1 == t->ncols;
        if (c == 0 && t->indent)
            fputs(t->indent, stdout);
        if (t->right[c] == 'r')
            printf("%*s", (int)pad, "");
        sr_cli_put_clean(t->cells[i]);
        if (t->right[c] != 'r' && !last)
            printf("%*s", (int)pad, "");
        fputs(last ? "\n" : "  ", stdout);
    }
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
    t->cells = NULL;
    t->n = t->cap = 0;
}
