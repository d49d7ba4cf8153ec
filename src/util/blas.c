/* BLIS calls. The thread count travels in a runtime object per call so that
 * a host program sharing BLIS (numpy, a trainer) keeps its own settings. */
#include <blis.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "util/util.h"

static _Thread_local int local_threads;

/* Threads for a product of m n k multiply-adds: small products run on one
 * thread, since waking and joining BLIS's workers costs more than they
 * save (and much more on a loaded machine, where workers spin waiting for
 * a core); then one more thread per 2^21 multiply-adds, up to the setting. */
static int threads_for(int64_t m, int64_t n, int64_t k)
{
    int want = local_threads ? local_threads : sresid_get_threads();
    double work = (double)m * (double)n * (double)k / 2097152.0;
    return work < want ? (work < 1 ? 1 : (int)work) : want;
}

int sresid__blas_local_threads(int n)
{
    int old = local_threads;
    local_threads = n > 0 ? n : 0;
    return old;
}

void sresid__sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                   float *c, int64_t ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads_for(m, n, k), &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1,
                 NULL, &rntm);
}

void sresid__sgemv(int64_t m, int64_t n, float alpha, const float *a, int64_t lda,
                   const float *x, float beta, float *y)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads_for(m, n, 1), &rntm);
    bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, m, n, &alpha, (float *)a, lda, 1,
                 (float *)x, 1, &beta, y, 1, NULL, &rntm);
}

/* Debian's BLIS 0.9 does not know CPUs newer than it (AMD Zen 5, for one)
 * and falls back to its generic kernels there, several times slower; it
 * reads BLIS_ARCH_TYPE once, when it initialises. So at load, before any
 * BLIS call, the library names the kernel set this CPU runs when the
 * variable is unset: skx (0) with AVX-512 F/DQ/BW/VL, zen3 (6) with AVX2
 * and FMA. A value the user set is left alone; SRESID_BLIS_ARCH_PICK=0
 * leaves BLIS's own detection. The variable also reaches the other BLIS
 * of the process (Debian's libblas.so.3 is a second copy, used by LAPACK
 * and numpy) if it has not initialised yet (docs/conventions.md, "BLIS
 * kernels"). */
__attribute__((constructor)) static void pick_blis_arch(void)
{
    if (getenv("BLIS_ARCH_TYPE"))
        return;
    const char *off = getenv("SRESID_BLIS_ARCH_PICK");
    if (off && strcmp(off, "0") == 0)
        return;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const char *pick = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        pick = "0";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        pick = "6";
    if (pick) /* BLIS parses a number, with strtol */
        setenv("BLIS_ARCH_TYPE", pick, 0);
#endif
}

const char *sresid_blas_arch(void)
{
    bli_init();
    const char *s = bli_arch_string(bli_arch_query_id());
    return s ? s : "unknown";
}
