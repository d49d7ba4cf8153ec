/* Version, status texts, thread-local error messages, option checks. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

#define ERRBUF_SIZE 4096

static _Thread_local char errbuf[ERRBUF_SIZE];
static atomic_int thread_setting; /* 0 = default */

const char *sresid_version_string(void)
{
    return SRESID_VERSION_STRING;
}

uint32_t sresid_version_number(void)
{
    return SRESID_VERSION_NUMBER;
}

const char *sresid_strerror(sresid_status status)
{
    switch (status) {
    case SRESID_OK: return "success";
    case SRESID_ERR_INVALID_ARG: return "invalid argument";
    case SRESID_ERR_NOMEM: return "out of memory";
    case SRESID_ERR_IO: return "input/output error";
    case SRESID_ERR_TRUNCATED: return "file truncated";
    case SRESID_ERR_HEADER: return "invalid safetensors header length";
    case SRESID_ERR_JSON: return "invalid safetensors header JSON";
    case SRESID_ERR_DTYPE: return "unknown or unsupported dtype";
    case SRESID_ERR_SHAPE: return "invalid or mismatched shape";
    case SRESID_ERR_OFFSETS: return "invalid tensor data offsets";
    case SRESID_ERR_DUPLICATE: return "duplicate tensor name";
    case SRESID_ERR_METADATA: return "invalid __metadata__";
    case SRESID_ERR_NOT_FOUND: return "not found";
    case SRESID_ERR_MISMATCH: return "checkpoints do not pair";
    case SRESID_ERR_OVERFLOW: return "size overflow";
    case SRESID_ERR_NONFINITE: return "non-finite value";
    case SRESID_ERR_UNSUPPORTED: return "unsupported";
    case SRESID_ERR_FORMAT: return "not a safetensors file";
    case SRESID_ERR_CANCELLED: return "cancelled";
    default: return "unknown status code";
    }
}

const char *sresid_last_error(void)
{
    return errbuf;
}

sresid_status sresid__fail(sresid_status status, const char *fmt, ...)
{
    /* Format aside first: callers may pass sresid_last_error() as an
     * argument to prefix context to an inner message. */
    char tmp[ERRBUF_SIZE];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tmp) /* say so rather than cut silently */
        memcpy(tmp + sizeof tmp - 4, "...", 4);
    memcpy(errbuf, tmp, sizeof errbuf);
    return status;
}

sresid_status sresid__check_opts(const void *opts, size_t known_size, size_t min_size,
                                 const char *fn)
{
    if (!opts)
        return SRESID_OK;
    size_t size;
    memcpy(&size, opts, sizeof size);
    if (size < min_size)
        return sresid__fail(SRESID_ERR_INVALID_ARG,
                            "%s: size field %zu is smaller than the minimum %zu (set it to sizeof)",
                            fn, size, min_size);
    /* A newer caller may pass a larger struct; its unknown tail must be zero. */
    if (size > known_size) {
        if (size > (1u << 20))
            return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: absurd size field %zu", fn, size);
        const unsigned char *p = opts;
        for (size_t i = known_size; i < size; i++)
            if (p[i] != 0)
                return sresid__fail(SRESID_ERR_INVALID_ARG,
                                    "%s: byte %zu is beyond this library's struct (size %zu) "
                                    "and not zero",
                                    fn, i, known_size);
    }
    return SRESID_OK;
}

sresid_status sresid__read_opts(void *dst, size_t dst_size, const void *opts, const char *fn)
{
    memset(dst, 0, dst_size);
    sresid_status st = sresid__check_opts(opts, dst_size, sizeof(size_t), fn);
    if (st || !opts)
        return st;
    size_t size;
    memcpy(&size, opts, sizeof size);
    memcpy(dst, opts, size < dst_size ? size : dst_size);
    return SRESID_OK;
}

sresid_status sresid_set_threads(int32_t n)
{
    if (n < 0 || n > 4096)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_set_threads: %d is not in [0, 4096]",
                            (int)n);
    atomic_store(&thread_setting, n);
    return SRESID_OK;
}

int32_t sresid_get_threads(void)
{
    int n = atomic_load(&thread_setting);
    if (n > 0)
        return n;
    const char *env = getenv("SRESID_NUM_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= 4096)
            return (int32_t)v;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 && cpus <= 4096 ? (int32_t)cpus : 1;
}

sresid_status sresid__check_matrix(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                   const char *fn)
{
    if (rows < 0 || cols < 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: negative size %lld x %lld", fn,
                            (long long)rows, (long long)cols);
    if (ld < cols || ld < 1)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: row stride %lld is below cols %lld",
                            fn, (long long)ld, (long long)cols);
    int64_t span;
    if (rows > 0 && (__builtin_mul_overflow(rows - 1, ld, &span) ||
                     __builtin_add_overflow(span, cols, &span) ||
                     (uint64_t)span > SIZE_MAX / sizeof(float)))
        return sresid__fail(SRESID_ERR_OVERFLOW, "%s: %lld x %lld with stride %lld overflows",
                            fn, (long long)rows, (long long)cols, (long long)ld);
    if (!x && rows > 0 && cols > 0)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: data is NULL", fn);
    return SRESID_OK;
}

bool sresid__all_finite(const float *x, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t i = 0; i < rows; i++) {
        const float *r = x + i * ld;
        /* x - x is NaN exactly for NaN and Inf; summing keeps the loop branch-free */
        float acc = 0;
        for (int64_t j = 0; j < cols; j++)
            acc += r[j] - r[j];
        if (acc != 0 || acc != acc)
            return false;
    }
    return true;
}

void sresid_free(void *p)
{
    free(p);
}
