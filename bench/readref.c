/*
 * bench/readref.c — reference readers for the streaming benchmark (no
 * library involved).
 *
 *   readref read FILE [PASSES]
 *                        read(2) the whole file through a 1 MiB buffer: the
 *                        page-cache copy bandwidth, what cat or dd reach
 *   readref mmap FILE [PASSES]
 *                        mmap the file, memcpy it in 64 MiB blocks into one
 *                        64 MiB buffer and madvise(MADV_DONTNEED) each block
 *                        after copying: the library's F32 path without the
 *                        library (page faults + copy + release)
 *   readref evict FILE   posix_fadvise(POSIX_FADV_DONTNEED) on the whole
 *                        file: drops its clean pages from the page cache, so
 *                        the next read is cold (no root needed)
 *
 * read and mmap make PASSES passes (default 1) and print one line per pass,
 * "rep=R secs=S gbps=G hwm_mb=H bytes=B xor=X" (H: VmHWM of the pass, reset
 * through /proc/self/clear_refs; X: an xor over the data so the work is not
 * optimised away). 1 GB = 1e9 bytes, MB = 2^20 bytes.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Touch one word per cache line of a block just copied (cheap, keeps the
 * copy observable). */
static uint64_t fold(const unsigned char *p, size_t n)
{
    uint64_t x = 0;
    for (size_t i = 0; i + 8 <= n; i += 4096) {
        uint64_t v;
        memcpy(&v, p + i, sizeof v);
        x ^= v;
    }
    return x;
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

static void reset_hwm(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "5", 1) != 1) {
            /* old kernel: VmHWM stays the process peak */
        }
        close(fd);
    }
}

/* One read(2) pass through a 1 MiB buffer; returns the xor fold. */
static int pass_read(int fd, unsigned char *buf, size_t bsz, uint64_t *x)
{
    off_t off = 0;
    for (;;) {
        ssize_t r = pread(fd, buf, bsz, off);
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        *x ^= fold(buf, (size_t)r);
        off += r;
    }
}

/* One mmap pass: copy 64 MiB blocks into buf, release each block. */
static int pass_mmap(int fd, size_t len, unsigned char *buf, size_t bsz, uint64_t *x)
{
    unsigned char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return -1;
    for (size_t off = 0; off < len; off += bsz) {
        size_t n = len - off < bsz ? len - off : bsz;
        memcpy(buf, map + off, n);
        (void)madvise(map + off, n, MADV_DONTNEED);
        *x ^= fold(buf, n);
    }
    munmap(map, len);
    return 0;
}

static int usage(void)
{
    fputs("usage: readref read|mmap FILE [PASSES]\n       readref evict FILE\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        return usage();
    const char *mode = argv[1], *path = argv[2];
    long passes = argc == 4 ? strtol(argv[3], NULL, 10) : 1;
    int is_read = strcmp(mode, "read") == 0, is_mmap = strcmp(mode, "mmap") == 0;
    if (passes < 1 || (!is_read && !is_mmap && strcmp(mode, "evict") != 0))
        return usage();
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) {
        perror(path);
        return 1;
    }
    if (!is_read && !is_mmap) {
        int e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        if (e) {
            fprintf(stderr, "%s: posix_fadvise: %s\n", path, strerror(e));
            return 1;
        }
        close(fd);
        return 0;
    }
    size_t len = (size_t)sb.st_size;
    size_t bsz = is_read ? (size_t)1 << 20 : (size_t)64 << 20;
    unsigned char *buf = malloc(bsz);
    if (!buf)
        return 1;
    memset(buf, 0, bsz); /* fault the buffer in before timing */
    for (long r = 1; r <= passes; r++) {
        uint64_t x = 0;
        reset_hwm();
        double t0 = now();
        int rc = is_read ? pass_read(fd, buf, bsz, &x) : pass_mmap(fd, len, buf, bsz, &x);
        double t = now() - t0;
        if (rc) {
            perror(path);
            return 1;
        }
        printf("rep=%ld secs=%.4f gbps=%.3f hwm_mb=%.1f bytes=%zu xor=%llx\n", r, t,
               (double)len / t / 1e9, (double)status_kb("VmHWM") / 1024.0, len,
               (unsigned long long)x);
        fflush(stdout);
    }
    free(buf);
    close(fd);
    return 0;
}
