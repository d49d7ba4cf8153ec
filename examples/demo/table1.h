/* Table 1: the study's residual figures, read from the library's report. */
#ifndef DEMO_TABLE1_H
#define DEMO_TABLE1_H

#include <stddef.h>

#include <sparseresid/sparseresid.h>

#include "progress.h"
#include "results.h"

/* Run the residual report of trained - base (seed, threads) and fill t.
 * Returns 0 or -1 with err. */
int demo_table1_run(const sresid_model *base, const sresid_model *trained, uint64_t seed,
                    int threads, demo_progress *progress, demo_table1 *t, char *err,
                    size_t errlen);

#endif /* DEMO_TABLE1_H */
