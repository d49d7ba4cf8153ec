/*
 * bench/readref.c — reference readers for the streaming benchmark (no
 * library involved).
 *
 *   readref read FILE    read(2) the whole file through a 1 MiB buffer: the
 *                        page-cache copy bandwidth, what cat or dd reach
 *   readref mmap FILE    mmap the file, memcpy it in 64 MiB blocks into one
 *                        64 MiB buffer and madvise(MADV_DONTNEED) each block
 *                        after copying: the library's F32 path without the
 *                        library (page faults + copy + release)
 *   readref evict FILE   posix_fadvise(POSIX_FADV_DONTNEED) on the whole
 *                        file: drops its clean pages from the page cache, so
 *                        the next read is cold (no root needed)
 *
 * read and mmap print "secs=S gbps=G bytes=B xor=X" (X: an xor over the
 * data so the work is not optimised away). 1 GB = 1e9 bytes.
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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fputs("usage: readref read|mmap|evict FILE\n", stderr);
        return 2;
    }
    const char *mode = argv[1], *path = argv[2];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    struct stat sb;
    if (fstat(fd, &sb)) {
        perror(path);
        return 1;
    }
    size_t len = (size_t)sb.st_size;
    uint64_t x = 0;
    double t0 = now();
    if (strcmp(mode, "evict") == 0) {
        int e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        if (e) {
            fprintf(stderr, "%s: posix_fadvise: %s\n", path, strerror(e));
            return 1;
        }
        close(fd);
        return 0;
    } else if (strcmp(mode, "read") == 0) {
        size_t bsz = (size_t)1 << 20;
        unsigned char *buf = malloc(bsz);
        if (!buf)
            return 1;
        for (;;) {
            ssize_t r = read(fd, buf, bsz);
            if (r < 0) {
                perror(path);
                return 1;
            }
            if (r == 0)
                break;
            x ^= fold(buf, (size_t)r);
        }
        free(buf);
    } else if (strcmp(mode, "mmap") == 0) {
        size_t bsz = (size_t)64 << 20;
        unsigned char *buf = malloc(bsz);
        if (!buf)
            return 1;
        memset(buf, 0, bsz);
        t0 = now();
        unsigned char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            perror(path);
            return 1;
        }
        for (size_t off = 0; off < len; off += bsz) {
            size_t n = len - off < bsz ? len - off : bsz;
            memcpy(buf, map + off, n);
            (void)madvise(map + off, n, MADV_DONTNEED);
            x ^= fold(buf, n);
        }
        munmap(map, len);
        free(buf);
    } else {
        fputs("usage: readref read|mmap|evict FILE\n", stderr);
        return 2;
    }
    double t = now() - t0;
    close(fd);
    printf("secs=%.4f gbps=%.3f bytes=%zu xor=%llx\n", t, (double)len / t / 1e9, len,
           (unsigned long long)x);
    return 0;
}
