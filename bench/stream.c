/*
 * bench/stream.c — open a checkpoint and stream every float tensor through
 * sresid_model_read_f32 into one caller buffer, timing it and recording the
 * resident memory.
 *
 *   stream FILE [--reps N] [--keep-pages] [--no-sum]
 *
 * One buffer sized to the largest float tensor (as float32) is allocated and
 * touched before any timing. Each rep opens the checkpoint (default options,
 * so mapped pages are released after each read; --keep-pages sets
 * SRESID_OPEN_KEEP_PAGES), reads every float tensor, sums it (so the work
 * cannot be optimised away; the checksum is printed) and frees the model.
 *
 * Per rep it prints one line of key=value fields:
 *   open_s    sresid_model_open
 *   read_s    the sresid_model_read_f32 calls only
 *   sum_s     the checksum pass over the buffer
 *   stream_s  read_s + sum_s (also printed as secs, the key the other
 *             bench tools use for their timed figure)
 *   gbps      file data bytes / read_s (1 GB = 1e9 bytes)
 *   hwm_mb    VmHWM of this rep (reset through /proc/self/clear_refs first)
 *   rss_mb    VmRSS right after the last read, before the model is freed
 *   file_mb   RssFile at the same moment (mapped file pages still resident)
 *   maxrss_mb getrusage ru_maxrss: the process peak over all reps
 * MB = 2^20 bytes. Links the shared library, as users do; no BLIS is used.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <sparseresid/sparseresid.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A field of /proc/self/status in kB, or -1. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_hwm(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* Sum with 32 independent float lanes (GCC/Clang vector extension), so the
 * pass runs at memory speed instead of one add latency per element. */
typedef float v4f __attribute__((vector_size(16)));

static double sum_floats(const float *x, size_t n)
{
    v4f acc[8] = {{0}};
    size_t i = 0;
    for (; n - i >= 32; i += 32)
        for (int k = 0; k < 8; k++) {
            v4f v;
            memcpy(&v, x + i + 4 * k, sizeof v);
            acc[k] += v;
        }
    double s = 0;
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 4; l++)
            s += acc[k][l];
    for (; i < n; i++)
        s += x[i];
    return s;
}

static void die(const char *what, sresid_status st)
{
    const char *msg = sresid_last_error();
    fprintf(stderr, "stream: %s: %s\n", what, msg && *msg ? msg : sresid_strerror(st));
    exit(1);
}

static void usage(void)
{
    fputs("usage: stream FILE [--reps N] [--keep-pages] [--no-sum]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long reps = 1;
    int keep = 0, do_sum = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            char *end;
            reps = strtol(argv[++i], &end, 10);
            if (*end || reps < 1)
                usage();
        } else if (strcmp(argv[i], "--keep-pages") == 0) {
            keep = 1;
        } else if (strcmp(argv[i], "--no-sum") == 0) {
            do_sum = 0;
        } else if (argv[i][0] == '-' || path) {
            usage();
        } else {
            path = argv[i];
        }
    }
    if (!path)
        usage();

    sresid_model_opts opts = {.size = sizeof opts, .flags = keep ? SRESID_OPEN_KEEP_PAGES : 0};
    sresid_model *m = NULL;
    sresid_status st = sresid_model_open(path, &opts, &m);
    if (st)
        die(path, st);

    /* Size the one buffer from a first open (untimed). */
    size_t n = sresid_model_tensor_count(m), max_numel = 0, nfloat = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        if ((st = sresid_model_tensor_info(m, i, &ti)))
            die("tensor_info", st);
        if (!sresid_dtype_is_float(ti.dtype))
            continue;
        nfloat++;
        bytes += ti.nbytes;
        if ((size_t)ti.numel > max_numel)
            max_numel = (size_t)ti.numel;
    }
    sresid_model_free(m);
    size_t buf_bytes = (max_numel * sizeof(float) + 63) & ~(size_t)63;
    float *buf = aligned_alloc(64, buf_bytes ? buf_bytes : 64);
    if (!buf) {
        fputs("stream: out of memory\n", stderr);
        return 1;
    }
    memset(buf, 0, buf_bytes); /* fault the buffer in before timing */
    printf("# %s: %zu float tensors, %llu data bytes, largest %zu elements "
           "(buffer %.1f MB), %s\n",
           path, nfloat, (unsigned long long)bytes, max_numel, (double)buf_bytes / 1048576.0,
           keep ? "keep-pages" : "pages released");

    int hwm_ok = 1;
    for (long r = 1; r <= reps; r++) {
        if (reset_hwm())
            hwm_ok = 0;
        double t0 = now();
        if ((st = sresid_model_open(path, &opts, &m)))
            die(path, st);
        double t1 = now(), t_read = 0, t_sum = 0, check = 0;
        for (size_t i = 0; i < n; i++) {
            sresid_tensor_info ti = {.size = sizeof ti};
            if ((st = sresid_model_tensor_info(m, i, &ti)))
                die("tensor_info", st);
            if (!sresid_dtype_is_float(ti.dtype))
                continue;
            double a = now();
            if ((st = sresid_model_read_f32(m, i, buf, max_numel)))
                die("read_f32", st);
            double b = now();
            if (do_sum)
                check += sum_floats(buf, (size_t)ti.numel);
            else
                check += buf[0];
            t_read += b - a;
            t_sum += now() - b;
        }
        double t2 = now();
        long rss = status_kb("VmRSS"), file = status_kb("RssFile");
        sresid_model_free(m);
        long hwm = status_kb("VmHWM");
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("rep=%ld open_s=%.6f read_s=%.4f sum_s=%.4f stream_s=%.4f secs=%.4f gbps=%.3f "
               "hwm_mb=%.1f rss_mb=%.1f file_mb=%.1f maxrss_mb=%.1f checksum=%.9g%s\n",
               r, t1 - t0, t_read, t_sum, t2 - t1, t2 - t1, (double)bytes / t_read / 1e9,
               (double)hwm / 1024.0, (double)rss / 1024.0, (double)file / 1024.0,
               (double)ru.ru_maxrss / 1024.0, check, hwm_ok ? "" : " hwm=process-peak");
        fflush(stdout);
    }
    free(buf);
    return 0;
}
