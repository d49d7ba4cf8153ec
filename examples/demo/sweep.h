/* The sweep's cells run on a pool of worker threads, one BLIS thread
 * each; every cell's result depends only on its own settings and seed,
 * never on which worker ran it or when. */
#ifndef DEMO_SWEEP_H
#define DEMO_SWEEP_H

#include <stddef.h>

#include "tune.h"

/* Run cells[0 .. n) on `threads` workers. Returns 0 when every cell ran,
 * else -1 (the failed cells have failed set and err filled). */
int demo_sweep(const demo_tune_ctx *ctx, demo_cell *cells, size_t n, int threads,
               demo_progress *progress);

#endif /* DEMO_SWEEP_H */
