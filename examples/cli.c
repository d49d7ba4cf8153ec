/* Helpers shared by the example programs; not part of the library. */
#include "cli.h"
#include "cli_watch.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *sr_cli_start(int argc, char **argv, int *verbose)
{
    int v = 0, quiet = 0;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        v |= strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0;
        quiet |= strcmp(argv[i], "--no-progress") == 0;
    }
    sr_cli_say_blis(v);
    if (verbose)
        *verbose = v;
    const char *prog = sr_cli_prog(argc > 0 ? argv[0] : NULL);
    sr_cli_watch_start(prog, !quiet);
    return prog;
}

void sr_cli_say_blis(int verbose)
{
    if (!verbose)
        return;
    /* the library chose at load when the variable was unset (blas.c) */
    const char *set = getenv("BLIS_ARCH_TYPE");
    fprintf(stderr, "blis: %s kernels (BLIS_ARCH_TYPE=%s)\n", sresid_blas_arch(),
            set ? set : "unset, BLIS's own choice");
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
    sr_cli_watch_clear();
    if (st == SRESID_ERR_CANCELLED)
        sr_cli_watch_check(); /* stopped by a signal: exit 130 or 143 */
    const char *detail = sresid_last_error();
    if (!detail || !*detail)
        detail = sresid_strerror(st);
    size_t wl = strlen(what);
    put_clean(prog);
    fputs(": ", stderr);
    if (strncmp(detail, what, wl) != 0 || detail[wl] != ':') { /* else the detail names it */
        put_clean(what);
        fputs(": ", stderr);
    }
    put_clean(detail);
    fputc('\n', stderr);
    exit(1);
}

_Noreturn void sr_cli_help_done(const char *prog)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        put_clean(prog);
        fprintf(stderr, ": cannot write the help text: %s\n", e ? strerror(e) : "write error");
        exit(1);
    }
    exit(0);
}

/* The file path names once it exists: realpath of the file, or of its
 * directory followed by its last component. NULL when neither resolves. */
static char *resolved(const char *path)
{
    char *r = realpath(path, NULL);
    if (r)
        return r;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    char *rd = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    if (!rd)
        return NULL;
    const char *base = slash ? slash + 1 : path;
    char *out = malloc(strlen(rd) + strlen(base) + 2);
    if (out)
        sprintf(out, "%s/%s", rd, base);
    free(rd);
    return out;
}

static int same_file(const char *p, const char *q)
{
    struct stat a, b;
    if (stat(p, &a) == 0 && stat(q, &b) == 0)
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    char *rp = resolved(p), *rq = resolved(q);
    int same = rp && rq && strcmp(rp, rq) == 0;
    free(rp);
    free(rq);
    return same;
}

void sr_cli_guard_outputs(const char *prog, sresid_model *const *models,
                          const char *const *inputs, size_t nin, const char *const *outputs,
                          size_t nout)
{
    for (size_t i = 0; i < nout; i++) {
        const char *o = outputs[i];
        if (!o || strcmp(o, "-") == 0)
            continue;
        if (!*o)
            sr_cli_bad_usage(prog, "an output path is empty");
        struct stat sb;
        if (stat(o, &sb) == 0 && !S_ISREG(sb.st_mode))
            sr_cli_fatal(prog, "%s: is a %s, not a regular file: refusing to replace it", o,
                         S_ISDIR(sb.st_mode) ? "directory" : "special file");
        /* now, not after the work: a mistyped directory costs nothing */
        const char *slash = strrchr(o, '/');
        if (slash && slash != o) {
            char *dir = sr_cli_xfmt(prog, "%.*s", (int)(slash - o), o);
            if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
                sr_cli_fatal(prog, "%s: the directory %s does not exist", o, dir);
            free(dir);
        }
        for (size_t k = 0; k < nin; k++) {
            int32_t uses = 0;
            if ((models && models[k] && sresid_model_uses_file(models[k], o, &uses) == SRESID_OK &&
                 uses) ||
                (inputs[k] && same_file(o, inputs[k]))) {
                if (inputs[k] && strcmp(o, inputs[k]) == 0)
                    sr_cli_fatal(prog, "%s: is an input of this run: refusing to write an output "
                                 "over it", o);
                sr_cli_fatal(prog, "%s: is a file of the input %s: refusing to write an output "
                             "over it", o, inputs[k]);
            }
        }
        for (size_t j = 0; j < i; j++)
            if (outputs[j] && strcmp(outputs[j], "-") != 0 && same_file(o, outputs[j]))
                sr_cli_fatal(prog, "%s and %s are the same file: give each output its own path",
                             outputs[j], o);
    }
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

/* "prog: message" and a newline on stderr. */
static void vsay(const char *prog, const char *fmt, va_list ap)
{
    sr_cli_watch_clear();
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

_Noreturn void sr_cli_fatal(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(prog, fmt, ap);
    va_end(ap);
    exit(1);
}

void sr_cli_degenerate(const char *prog, int allowed, const char *flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sr_cli_watch_clear();
    fprintf(stderr, "%s: %s", prog, allowed ? "warning: " : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (allowed) {
        fputc('\n', stderr);
        return;
    }
    fprintf(stderr, "; pass %s to go on anyway\n", flag);
    exit(1);
}

char *sr_cli_fig(const char *prog, double x, int decimals)
{
    return isfinite(x) ? sr_cli_xfmt(prog, "%.*f", decimals, x) : sr_cli_xfmt(prog, "-");
}

_Noreturn void sr_cli_bad_usage(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(prog, fmt, ap);
    va_end(ap);
    fprintf(stderr, "(try %s --help)\n", prog);
    exit(2);
}

int sr_cli_value(const char *prog, int argc, char **argv, int *i, const char *name,
                 const char **value)
{
    int r = sr_cli_opt_value(argc, argv, i, name, value);
    if (r < 0)
        sr_cli_bad_usage(prog, "%s needs a value", name);
    return r;
}

int sr_cli_output_opt(const char *prog, int argc, char **argv, int *i, const char **out)
{
    if (strcmp(argv[*i], "-o") == 0) {
        if (*i + 1 >= argc)
            sr_cli_bad_usage(prog, "-o wants a file name");
        *out = argv[++*i];
        return 1;
    }
    int r = sr_cli_opt_value(argc, argv, i, "--output", out);
    if (r < 0)
        sr_cli_bad_usage(prog, "--output wants a file name");
    return r;
}

void sr_cli_add_checkpoint(const char *prog, const char *pos[2], int *npos, const char *s)
{
    if (*npos == 2)
        sr_cli_bad_usage(prog, "too many checkpoints: %s", s);
    pos[(*npos)++] = s;
}

long long sr_cli_parse_int(const char *prog, const char *opt, const char *s, long long lo,
                           long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        sr_cli_bad_usage(prog, "%s wants an integer in [%lld, %lld], not '%s'", opt, lo, hi, s);
    return v;
}

uint64_t sr_cli_parse_seed(const char *prog, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    /* strtoull takes "-3" as 2^64 - 3 */
    if (!*s || *end || errno || strchr(s, '-'))
        sr_cli_bad_usage(prog, "--seed wants an integer in [0, 2^64), not '%s'", s);
    return v;
}

int sr_cli_real(const char *s, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(x))
        return 0;
    *v = x;
    return 1;
}

double sr_cli_parse_real(const char *prog, const char *opt, const char *s, double lo, double hi,
                         int open_lo)
{
    double v = 0;
    if (!sr_cli_real(s, &v) || v > hi || v < lo || (open_lo && v == lo))
        sr_cli_bad_usage(prog, "%s wants a number in %s%g, %g], not '%s'", opt,
                         open_lo ? "(" : "[", lo, hi, s);
    return v;
}

int32_t sr_cli_kind_of(const char *s, size_t len)
{
    for (int32_t k = 0; k < SRESID_KIND_COUNT; k++) {
        const char *name = sresid_kind_name(k);
        if (name && strlen(name) == len && strncmp(s, name, len) == 0)
            return k;
    }
    return -1;
}

int sr_cli_layout(const char *s, int32_t *layout)
{
    if (strcmp(s, "out-first") == 0)
        *layout = SRESID_LAYOUT_OUT_FIRST;
    else if (strcmp(s, "out-last") == 0)
        *layout = SRESID_LAYOUT_OUT_LAST;
    else
        return 0;
    return 1;
}

/* The next run of bytes that are not blanks at *p, as [start, start + len);
 * *p moves past it and the blanks after it. */
static size_t next_field(char **p, char **start)
{
    char *s = *p;
    *start = s;
    size_t len = strcspn(s, " \t");
    s += len;
    s += strspn(s, " \t");
    *p = s;
    return len;
}

void sr_cli_kind_rules(const char *prog, const char *path, sresid_model *const *models,
                       size_t n)
{
    if (!path)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        sr_cli_fatal(prog, "%s: cannot read the kind rules: %s", path, strerror(errno));
    char **pats = NULL, *line = NULL;
    int32_t *kinds = NULL;
    size_t count = 0, cap = 0, line_cap = 0;
    uint32_t flags = 0;
    ssize_t got;
    for (long no = 1; errno = 0, (got = getline(&line, &line_cap, f)) >= 0; no++) {
        size_t len = (size_t)got;
        if (strlen(line) != len)
            sr_cli_bad_usage(prog, "%s:%ld: the line holds a NUL byte", path, no);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *p = line + strspn(line, " \t"), *pat, *kind;
        if (!*p || *p == '#')
            continue;
        size_t plen = next_field(&p, &pat), klen = next_field(&p, &kind);
        if (*p && *p != '#')
            sr_cli_bad_usage(prog, "%s:%ld: want PATTERN KIND, not '%s' (? matches a space)",
                             path, no, line);
        if (klen == 0 || *kind == '#') {
            if (plen == strlen("no-defaults") && strncmp(pat, "no-defaults", plen) == 0) {
                flags = SRESID_RULES_REPLACE;
                continue;
            }
            sr_cli_bad_usage(prog, "%s:%ld: want PATTERN KIND, not '%s'", path, no, line);
        }
        int32_t k = sr_cli_kind_of(kind, klen);
        if (k < 0)
            sr_cli_bad_usage(prog, "%s:%ld: unknown kind '%.*s' (want attention, mlp, "
                             "embedding, norm or other)", path, no, (int)klen, kind);
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            char **np = realloc(pats, cap * sizeof *np);
            int32_t *nk = np ? realloc(kinds, cap * sizeof *nk) : NULL;
            if (np)
                pats = np;
            if (!np || !nk)
                sr_cli_fatal(prog, "out of memory");
            kinds = nk;
        }
        pats[count] = sr_cli_xmalloc(prog, plen + 1);
        memcpy(pats[count], pat, plen);
        pats[count][plen] = '\0';
        kinds[count++] = k;
    }
    if (errno || ferror(f))
        sr_cli_fatal(prog, "%s: cannot read the kind rules: %s", path,
                     errno ? strerror(errno) : "read error");
    fclose(f);
    free(line);
    for (size_t i = 0; i < n; i++) {
        if (!models[i])
            continue;
        sresid_status st = sresid_model_set_kind_rules(models[i], (const char *const *)pats,
                                                       kinds, count, flags);
        if (st != SRESID_OK)
            sr_cli_die(prog, path, st);
    }
    for (size_t i = 0; i < count; i++)
        free(pats[i]);
    free(pats);
    free(kinds);
}

sresid_model *sr_cli_open_model(const char *prog, const char *path, int32_t layout)
{
    sresid_model_opts o = {.size = sizeof o, .layout = layout};
    sresid_model *m = NULL;
    sresid_status st = sresid_model_open(path, &o, &m);
    if (st != SRESID_OK)
        sr_cli_die_open(prog, path, st);
    sr_cli_watch_check();
    return m;
}

/* ---- the options common to the programs ---- */

int32_t sr_cli_parse_layout(const char *prog, const char *opt, const char *s)
{
    int32_t layout = SRESID_LAYOUT_OUT_FIRST;
    if (!sr_cli_layout(s, &layout))
        sr_cli_bad_usage(prog, "%s wants out-first or out-last, not '%s'", opt, s);
    return layout;
}

uint32_t sr_cli_parse_kinds(const char *prog, const char *opt, const char *s)
{
    if (strcmp(s, "all") == 0)
        return (1u << SRESID_KIND_COUNT) - 1u;
    uint32_t bits = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        int32_t k = sr_cli_kind_of(p, len);
        if (k < 0)
            sr_cli_bad_usage(prog, "%s: unknown kind '%.*s' in '%s' (want attention, mlp, "
                             "embedding, norm, other, or all)", opt, (int)len, p, s);
        bits |= 1u << k;
        p += len;
        if (!*p)
            return bits;
    }
}

int32_t sr_cli_parse_threads(const char *prog, const char *opt, const char *s)
{
    return (int32_t)sr_cli_parse_int(prog, opt, s, 1, 4096);
}

const char *sr_cli_parse_json(const char *prog, const char *opt, const char *s)
{
    if (!*s)
        sr_cli_bad_usage(prog, "%s needs a file name or -", opt);
    return s;
}

void sr_cli_deprecated(const char *prog, const char *old, const char *advice)
{
    static const char *said[16];
    static size_t nsaid;
    for (size_t i = 0; i < nsaid; i++)
        if (strcmp(said[i], old) == 0)
            return;
    if (nsaid < sizeof said / sizeof said[0])
        said[nsaid++] = old;
    fprintf(stderr, "%s: %s is deprecated and goes in the next minor release: %s\n", prog, old,
            advice);
}

/* The layout a rank-4 kernel's shape suggests, or -1: kernels are at most
 * 7 wide, channels usually more. */
static int32_t kernel_layout(const int64_t *s)
{
    if (s[0] <= 7 && s[1] <= 7 && (s[2] > 7 || s[3] > 7))
        return SRESID_LAYOUT_OUT_LAST;
    if (s[2] <= 7 && s[3] <= 7 && (s[0] > 7 || s[1] > 7))
        return SRESID_LAYOUT_OUT_FIRST;
    return -1;
}

void sr_cli_check_layout(const char *prog, const sresid_model *m, const char *path,
                         int32_t layout)
{
    static int warned;
    if (warned)
        return;
    size_t n = sresid_model_tensor_count(m), rank4 = 0, same = 0, other = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        sresid_tensor_info info = {.size = sizeof info};
        if (sresid_model_tensor_info(m, i, &info) != SRESID_OK || info.ndim != 4 ||
            info.numel == 0 || !sresid_dtype_is_float(info.dtype))
            continue;
        rank4++;
        int32_t looks = kernel_layout(info.shape);
        if (looks == layout)
            same++;
        else if (looks >= 0 && other++ == 0)
            first = i;
    }
    if (other <= same)
        return;
    warned = 1;
    int tf = layout == SRESID_LAYOUT_OUT_FIRST;
    sresid_tensor_info info = {.size = sizeof info};
    sresid_model_tensor_info(m, first, &info);
    put_clean(prog);
    fputs(": ", stderr);
    put_clean(path);
    fputs(": tensor '", stderr);
    put_clean(info.name);
    fprintf(stderr, "' of shape [%lld,%lld,%lld,%lld] looks like the %s layout %s, as %zu of "
            "its %zu rank-4 tensors do", (long long)info.shape[0], (long long)info.shape[1],
            (long long)info.shape[2], (long long)info.shape[3], tf ? "TF/Keras" : "PyTorch",
            tf ? "(kh, kw, in, out)" : "(out, in, kh, kw)", other, rank4);
    fprintf(stderr, ": pass --layout %s\n", tf ? "out-last" : "out-first");
}

/* 1 when all n bytes went out, else 0 with errno set. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return 0;
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

/* Like the library's own output files: mode 0644, synced before the rename,
 * so a crash leaves the old file or the new one, never a part. */
int sr_cli_write_text(const char *path, const char *text)
{
    sr_cli_watch_check(); /* stopped before: not a byte of it */
    if (strcmp(path, "-") == 0) {
        fputs(text, stdout);
        fputc('\n', stdout);
        return 0;
    }
    char *tmp = malloc(strlen(path) + sizeof ".tmp-XXXXXX");
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    sprintf(tmp, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        errno = e;
        return -1;
    }
    int ok = write_all(fd, text, strlen(text)) && write_all(fd, "\n", 1);
    int e = errno;
    if (ok && (fchmod(fd, 0644) != 0 || fsync(fd) != 0)) {
        ok = 0;
        e = errno;
    }
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    errno = e;
    return ok ? 0 : -1;
}

double sr_cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sr_cli_finish(const char *prog)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: error writing the output\n", prog);
        return 1;
    }
    return 0;
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
