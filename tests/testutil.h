/* Helpers shared by the Check suites. */
#ifndef SRESID_TESTUTIL_H
#define SRESID_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "sparseresid/sparseresid.h"

Suite *suite_common(void);
Suite *suite_dtype(void);
Suite *suite_names(void);
Suite *suite_model(void);
Suite *suite_malformed(void);
Suite *suite_shards(void);
Suite *suite_residual(void);
Suite *suite_fixture(void);
Suite *suite_stats(void);
Suite *suite_matrix(void);
Suite *suite_report(void);
Suite *suite_mask(void);
Suite *suite_optim(void);
Suite *suite_amp(void);
Suite *suite_sparse(void);
Suite *suite_amp_select(void);
Suite *suite_jobs(void);
Suite *suite_safety(void);
Suite *suite_cancel(void);

/* Per-process scratch directory (created on first use, removed at exit),
 * or $SRESID_TEST_KEEP_DIR (must exist; kept). */
const char *tu_tmpdir(void);
/* tu_tmpdir()/name in a static rotating buffer. */
const char *tu_path(const char *name);
/* Path of a file under the tests directory (SRESID_TEST_DIR, default "tests"). */
const char *tu_fixture(const char *name);
/* Write bytes to a file; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* Write the bytes a hex string spells (no separators); returns 0 on success. */
int tu_write_hex(const char *path, const char *hex);
/* Read a whole file (malloc'd); returns NULL on failure. */
unsigned char *tu_read_file(const char *path, size_t *len);
/* Write a safetensors file from a JSON header text and a data section. */
int tu_write_st(const char *path, const char *header, const void *data, size_t data_len);
/* splitmix64-based generator for test data. */
uint64_t tu_rand_u64(uint64_t *state);
double tu_rand_uniform(uint64_t *state); /* [0, 1) */
double tu_rand_normal(uint64_t *state);
/* 1 when SRESID_TEST_QUICK is set (valgrind run): large cases shrink. */
int tu_quick(void);

#define ck_assert_status(expr, want)                                                   \
    do {                                                                               \
        sresid_status st_ = (expr);                                                    \
        ck_assert_msg(st_ == (want), "%s: got status %d (%s), want %d; last error: %s", \
                      #expr, (int)st_, sresid_strerror(st_), (int)(want),             \
                      sresid_last_error());                                            \
    } while (0)

#define ck_assert_ok(expr) ck_assert_status(expr, SRESID_OK)

#endif
