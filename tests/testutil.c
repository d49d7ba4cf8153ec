#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[4096];
static pid_t tmpdir_owner;

static void remove_tmpdir(void)
{
    char cmd[4200];
    /* Check forks each test; only the process that made the directory removes it. */
    if (tmpdir[0] == '\0' || getpid() != tmpdir_owner)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *tu_tmpdir(void)
{
    if (tmpdir[0] == '\0') {
        /* SRESID_TEST_KEEP_DIR: write into that directory and keep the files,
         * so the tools test can run the programs over the generated corpus */
        const char *keep = getenv("SRESID_TEST_KEEP_DIR");
        if (keep && *keep) {
            snprintf(tmpdir, sizeof tmpdir, "%s", keep);
            return tmpdir;
        }
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/sresid-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
        tmpdir_owner = getpid();
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

const char *tu_path(const char *name)
{
    static char bufs[8][8192];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 8192, "%s/%s", tu_tmpdir(), name);
    return b;
}

const char *tu_fixture(const char *name)
{
    static char bufs[8][8192];
    static int next;
    char *b = bufs[next++ % 8];
    const char *dir = getenv("SRESID_TEST_DIR");
    snprintf(b, 8192, "%s/%s", dir && *dir ? dir : "tests", name);
    return b;
}

int tu_write_hex(const char *path, const char *hex)
{
    size_t n = strlen(hex) / 2;
    unsigned char *b = malloc(n ? n : 1);
    if (!b)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(b);
            return -1;
        }
        b[i] = (unsigned char)v;
    }
    int rc = tu_write_file(path, b, n);
    free(b);
    return rc;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    if (len && fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *len = (size_t)n;
    return buf;
}

int tu_write_st(const char *path, const char *header, const void *data, size_t data_len)
{
    size_t hlen = strlen(header);
    size_t total = 8 + hlen + data_len;
    unsigned char *buf = malloc(total);
    if (!buf)
        return -1;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (data_len)
        memcpy(buf + 8 + hlen, data, data_len);
    int rc = tu_write_file(path, buf, total);
    free(buf);
    return rc;
}

uint64_t tu_rand_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tu_rand_uniform(uint64_t *s)
{
    return (double)(tu_rand_u64(s) >> 11) * 0x1.0p-53;
}

double tu_rand_normal(uint64_t *s)
{
    double u1 = tu_rand_uniform(s), u2 = tu_rand_uniform(s);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int tu_quick(void)
{
    const char *q = getenv("SRESID_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}
