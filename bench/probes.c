/*
 * bench/probes.c — the memory-bandwidth yardstick of the probe benchmark.
 *
 * Built by bench/run-probes.sh as a small shared object that bench/probes.py
 * loads with ctypes, so that the yardstick reads the very same numpy array,
 * in the same process, as the library call it is compared with:
 *
 *   double probes_sum_f32(const float *x, size_t n)
 *       one streaming read of n floats (sum with 64 independent lanes, so the
 *       loop is bound by memory, not by the latency of the additions)
 *   void probes_copy_f32(float *dst, const float *src, size_t n)
 *       memcpy (reads n and writes n floats), for reference
 *
 * Compiled with -O3 -march=native; it does not link the library.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <string.h>

typedef float v16f __attribute__((vector_size(64)));

double probes_sum_f32(const float *x, size_t n);
void probes_copy_f32(float *dst, const float *src, size_t n);

double probes_sum_f32(const float *x, size_t n)
{
    v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        v16f b0, b1, b2, b3;
        memcpy(&b0, x + i, sizeof b0);
        memcpy(&b1, x + i + 16, sizeof b1);
        memcpy(&b2, x + i + 32, sizeof b2);
        memcpy(&b3, x + i + 48, sizeof b3);
        a0 += b0;
        a1 += b1;
        a2 += b2;
        a3 += b3;
    }
    v16f s = (a0 + a1) + (a2 + a3);
    double total = 0;
    for (int j = 0; j < 16; j++)
        total += s[j];
    for (; i < n; i++)
        total += x[i];
    return total;
}

void probes_copy_f32(float *dst, const float *src, size_t n)
{
    memcpy(dst, src, n * sizeof *src);
}
