/* Following a long call: the caller's monitor (sresid_monitor_fn) and the
 * report's older progress callback, counted in units of work. Never
 * installed. Every function here runs on the calling thread only. */
#ifndef SPARSERESID_UTIL_MONITOR_H
#define SPARSERESID_UTIL_MONITOR_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "sparseresid/sparseresid.h"

typedef struct sresid__watch {
    const char *fn;                /* the public function, for the message */
    sresid_monitor_fn monitor;     /* NULL: none */
    void *monitor_user;
    sresid_progress_fn progress;   /* the report's callback (size_t counts); NULL: none */
    void *progress_user;
    uint64_t done, total;
    bool stopped;                  /* the monitor asked to stop */
    struct timespec last;          /* when the monitor was last called */
} sresid__watch;

/* Start following a call of total units: monitor (from the call's options)
 * or, when NULL, the thread's default (sresid_set_monitor). */
void sresid__watch_begin(sresid__watch *w, const char *fn, sresid_monitor_fn monitor,
                         void *monitor_user, uint64_t total);

/* A unit finished: report it. CANCELLED (message set) when the monitor
 * asks to stop, now or before. w may be NULL (nothing followed). */
sresid_status sresid__watch_step(sresid__watch *w, const char *name);

/* Count n units as done without a report (work that turned out not to be
 * needed), so that done still ends at total. w may be NULL. */
void sresid__watch_skip(sresid__watch *w, uint64_t n);

/* Between units: call the monitor (name NULL) when 100 ms have passed since
 * its last call. CANCELLED as above. w may be NULL. */
sresid_status sresid__watch_poll(sresid__watch *w);

#endif /* SPARSERESID_UTIL_MONITOR_H */
