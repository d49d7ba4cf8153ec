/* A one-line progress display on stderr, drawn only when stderr is a
 * terminal; safe to advance from several threads. */
#ifndef DEMO_PROGRESS_H
#define DEMO_PROGRESS_H

#include <pthread.h>
#include <stdint.h>

typedef struct demo_progress {
    pthread_mutex_t lock;
    int on;            /* stderr is a terminal and the display is wanted */
    int drawn;
    char stage[64];
    uint64_t done, total;
    double started, last;
} demo_progress;

void demo_progress_init(demo_progress *p, int on);
/* Start a stage of total units (steps). */
void demo_progress_stage(demo_progress *p, const char *stage, uint64_t total);
/* Advance by n units; redraws at most ten times a second. p may be NULL. */
void demo_progress_add(demo_progress *p, uint64_t n);
/* Set the position directly (for callbacks that count themselves). */
void demo_progress_set(demo_progress *p, uint64_t done, uint64_t total);
/* Erase the line (before printing anything else). */
void demo_progress_clear(demo_progress *p);
void demo_progress_destroy(demo_progress *p);

/* Seconds on the monotonic clock. */
double demo_now(void);

#endif /* DEMO_PROGRESS_H */
