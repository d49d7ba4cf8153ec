/*
 * libsparseresid — common definitions: version, status codes, errors, threads.
 *
 * Every fallible function returns an sresid_status (SRESID_OK = 0). On failure
 * out-parameters are left untouched and sresid_last_error() holds a message
 * with the detail (file, tensor name, byte offset) for the calling thread.
 * The library never aborts, prints or exits.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_COMMON_H
#define SPARSERESID_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SRESID_API __attribute__((visibility("default")))
#else
#define SRESID_API
#endif

#define SRESID_VERSION_MAJOR 1
#define SRESID_VERSION_MINOR 1
#define SRESID_VERSION_PATCH 0
#define SRESID_VERSION_NUMBER \
    (SRESID_VERSION_MAJOR * 10000 + SRESID_VERSION_MINOR * 100 + SRESID_VERSION_PATCH)
#define SRESID_VERSION_STRING "1.1.0"

/* Status codes. The numbers are part of the ABI: pinned, appended only. */
typedef int32_t sresid_status;

#define SRESID_OK                 0
#define SRESID_ERR_INVALID_ARG    1  /* NULL pointer, bad enum value, bad options struct */
#define SRESID_ERR_NOMEM          2  /* allocation failed */
#define SRESID_ERR_IO             3  /* open, read, write, mmap or rename failed */
#define SRESID_ERR_TRUNCATED      4  /* file shorter than its header says */
#define SRESID_ERR_HEADER         5  /* safetensors header length invalid or over the limit */
#define SRESID_ERR_JSON           6  /* header is not a UTF-8 JSON object of the expected form */
#define SRESID_ERR_DTYPE          7  /* unknown or unsupported dtype */
#define SRESID_ERR_SHAPE          8  /* invalid shape, or shapes that must agree do not */
#define SRESID_ERR_OFFSETS        9  /* data_offsets with holes, overlaps, aliasing, trailing bytes or wrong size */
#define SRESID_ERR_DUPLICATE     10  /* a tensor name appears twice */
#define SRESID_ERR_METADATA      11  /* __metadata__ is not a string-to-string map */
#define SRESID_ERR_NOT_FOUND     12  /* no tensor, key or file of that name */
#define SRESID_ERR_MISMATCH      13  /* two checkpoints do not pair */
#define SRESID_ERR_OVERFLOW      14  /* a size overflows 64 bits or the address space */
#define SRESID_ERR_NONFINITE     15  /* NaN or Inf where finite values are required */
#define SRESID_ERR_UNSUPPORTED   16  /* valid request this build cannot serve */
#define SRESID_ERR_FORMAT        17  /* since 1.1: another file format (GGUF, PyTorch, ...) */
#define SRESID_ERR_CANCELLED     18  /* since 1.1: a monitor asked the call to stop */

/* Version of the library actually loaded (may differ from the header's). */
SRESID_API const char *sresid_version_string(void);
/* major * 10000 + minor * 100 + patch. */
SRESID_API uint32_t sresid_version_number(void);

/* Short English text for a status code; never NULL (unknown codes get a
 * generic text). Thread-safe; the string is static. */
SRESID_API const char *sresid_strerror(sresid_status status);

/* Detail of the last failure on the calling thread; never NULL ("" when no
 * call on this thread has failed yet). The string is thread-local and valid
 * until the next libsparseresid call on the same thread. */
SRESID_API const char *sresid_last_error(void);

/* Thread count for the library's parallel work (BLIS products and work split
 * across tensors). 0 restores the default: the SRESID_NUM_THREADS environment
 * variable if set to a positive integer, else the number of online CPUs.
 * The setting is process-wide and reaches BLIS per call; BLIS's own global
 * state is never changed. Thread-safe.
 * Errors: SRESID_ERR_INVALID_ARG for n < 0 or n > 4096. */
SRESID_API sresid_status sresid_set_threads(int32_t n);

/* Effective thread count (>= 1). Thread-safe. */
SRESID_API int32_t sresid_get_threads(void);

/* Since 1.1. A monitor follows a long call and can stop it. It is called on
 * the calling thread only, never concurrently for one call:
 *  - after each unit of work (a tensor, mostly; each function's doc says
 *    which), with done = 1, 2, ..., total and name the unit just finished
 *    (borrowed for the call); total is fixed for the call;
 *  - between units, at least every 100 ms while work runs, with name NULL
 *    and done unchanged, so that a stop request (a signal flag, a button)
 *    is seen without waiting for a unit to finish.
 * Return 0 to go on, anything else to stop: the call then returns
 * SRESID_ERR_CANCELLED as soon as the work in flight is abandoned (at most
 * one tensor per worker), with nothing half done: *out untouched, no file
 * written (temporaries discarded), objects it would update unchanged. The
 * monitor is not called again for that call once it has asked to stop.
 * A monitor must not call back into the library with the objects of the
 * call it follows. */
typedef int (*sresid_monitor_fn)(void *user, uint64_t done, uint64_t total, const char *name);

/* Since 1.1. The calling thread's default monitor: followed by every long
 * call this thread makes whose options give no monitor of their own
 * (sresid_amp_fit, sresid_amp_share, sresid_amp_export and sresid_amp_load
 * have no options, so this is their monitor). NULL fn removes it. The
 * setting is thread-local; user is the caller's and is passed back as is.
 * Never fails. */
SRESID_API void sresid_set_monitor(sresid_monitor_fn fn, void *user);

/* Name of the BLIS kernel set in use ("skx", "zen3", "generic", ...); never
 * NULL. Initialises BLIS if needed. Thread-safe; the string is static. */
SRESID_API const char *sresid_blas_arch(void);

/* Release memory the library returned to the caller (the text of
 * sresid_report_json, for one). Accepts NULL. Thread-safe. */
SRESID_API void sresid_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* SPARSERESID_COMMON_H */
