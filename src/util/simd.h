/* Private: how the hot statistics kernels (moments.c, histogram.c) pick
 * their vector code. On x86-64 with GCC or clang there are AVX-512 versions
 * written with intrinsics (GCC 12 lowers the portable vector code poorly for
 * 512-bit float-to-double conversions and has no FMA in ISO C mode), chosen
 * at run time; the portable versions, written with the GCC/clang vector
 * extensions, are compiled for AVX2 and the baseline and picked at load time
 * (function multiversioning, glibc ifunc). Valgrind's CPU has no AVX-512,
 * so it runs the portable ones. -DSRESID_NO_SIMD builds the portable code
 * for the baseline only. */
#ifndef SPARSERESID_SIMD_H
#define SPARSERESID_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(SRESID_NO_SIMD)
#define HAVE_AVX512 1
#define CLONES __attribute__((target_clones("avx2", "default")))
#include <immintrin.h>
#else
#define HAVE_AVX512 0
#define CLONES
#endif

#endif
