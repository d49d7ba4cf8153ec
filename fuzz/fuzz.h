/* Shared by the fuzz harnesses and the seed generator (fuzz/README.md). */
#ifndef SRESID_FUZZ_H
#define SRESID_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparseresid/sparseresid.h"

/* The process's scratch directory, made on first use and removed at exit:
 * $FUZZ_TMPDIR, else /dev/shm (tmpfs: the library's fsync costs nothing
 * there), else $TMPDIR, else /tmp. Nothing is written anywhere else. */
const char *fz_dir(void);
/* fz_dir()/name, in one of eight rotating static buffers. */
const char *fz_path(const char *name);
/* Write len bytes to path, replacing it; aborts when that fails (the
 * harness cannot go on, and it is not the library's fault). */
void fz_write(const char *path, const void *data, size_t len);
/* Remove path if it exists. */
void fz_unlink(const char *path);

/* Aborts unless st is OK or a failure the library explains: a known status
 * and a message (bad input never crashes: clear status + message). With
 * FUZZ_VERBOSE set in the environment, prints the status and message. */
void fz_check(sresid_status st);
/* Aborts with a message when cond is false: an oracle of a harness failed. */
#define FZ_ASSERT(cond) ((cond) ? (void)0 : fz_fail(__FILE__, __LINE__, #cond))
void fz_fail(const char *file, int line, const char *what);
/* Aborts unless st is OK (a call that must succeed on this input). */
#define FZ_OK(expr) fz_ok((expr), __FILE__, __LINE__, #expr)
void fz_ok(sresid_status st, const char *file, int line, const char *what);

/* malloc that aborts on failure; n = 0 gives a 1-byte block. */
void *fz_alloc(size_t n);

/* Read every tensor and every metadata entry of m: info, lookup by name,
 * raw bytes, and float32 for the float dtypes, checked value by value
 * against a conversion of the raw bytes written here. */
void fz_read_model(const sresid_model *m);
/* a and b hold the same tensors (by name: dtype, shape, raw bytes, float32
 * values bit for bit) and the same metadata. */
void fz_same_models(const sresid_model *a, const sresid_model *b);

/* The harnesses' LLVMFuzzerCustomMutator (mutate.c, harnesses only): half
 * of the time a mutation of the JSON header of the safetensors file that
 * the input is, with its length prefix rewritten, else libFuzzer's own. */
size_t fz_mutate(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
/* The same for an input of parts joined by sep whose parts after the first
 * are safetensors files (fuzz_shards): the header of one of them. */
size_t fz_mutate_parts(uint8_t *data, size_t size, size_t max_size, unsigned int seed,
                       const char *sep);

/* The fixed base model of the sparse and amp harnesses and of their seeds:
 * attention and MLP matrices in F32, F16, BF16 (rank 3) and F64, a norm,
 * an F8 head and an integer step counter, values from a fixed integer
 * recipe (the same bytes in every build). Aborts on failure. */
sresid_model *fz_base_model(void);

#endif
