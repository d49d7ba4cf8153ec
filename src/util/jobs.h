/* The job engine: one way to run a plan of independent jobs (usually one
 * per tensor) on worker threads. Never installed.
 *
 * Rules every caller can rely on (docs/conventions.md, "Parallel work"):
 *  - jobs have stable ids 0 .. njobs-1 and a cost estimate; they start in
 *    order of cost, largest first, ties by id;
 *  - each job runs exactly once, on one worker, with a BLIS thread budget
 *    of its own; a job writes only its own outputs (or the state of its
 *    worker), so results never depend on the thread count;
 *  - the failure reported is the one of the lowest failing job id, with its
 *    own message, whatever the thread count and timing: after a failure of
 *    job f, jobs with ids above f are not started (and running ones may
 *    stop early), jobs below f still run;
 *  - the monitor (util/monitor.h) is called on the calling thread only; a
 *    stop request is honoured between jobs and, through
 *    sresid__job_stopping(), inside long jobs; a stopped run returns
 *    CANCELLED, whatever the jobs returned;
 *  - a plan can run a subset of its jobs (sresid__plan_partition picks one
 *    part of a cost-balanced split), so that a run can be spread over
 *    processes and merged by job id. */
#ifndef SPARSERESID_UTIL_JOBS_H
#define SPARSERESID_UTIL_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparseresid/sparseresid.h"
#include "util/monitor.h"

/* Runs job `job` on worker `worker` (0 .. workers-1). Returns OK or a
 * status with its message in sresid_last_error() of the worker's thread. */
typedef sresid_status (*sresid__job_fn)(void *ctx, size_t job, int worker);

typedef struct sresid__plan {
    size_t njobs;
    const uint64_t *cost;       /* njobs estimates in any unit; NULL: all equal */
    const unsigned char *only;  /* NULL, or njobs flags: run only the jobs flagged */
    int workers;                /* threads running jobs (>= 1; capped at the jobs to run) */
    int blas_threads;           /* BLIS threads inside each job (>= 1) */
    sresid__job_fn run;
    void *ctx;
    /* following the run, on the calling thread: after each job whose
     * label(ctx, job) is not NULL, sresid__watch_step(watch, label); between
     * jobs (at least every 100 ms while jobs run) sresid__watch_poll(watch).
     * A stop request ends the run with CANCELLED. NULL watch: none. */
    sresid__watch *watch;
    const char *(*label)(void *ctx, size_t job);
} sresid__plan;

/* Workers and BLIS budget for njobs jobs under a thread budget (>= 1): as
 * many workers as jobs allow, BLIS gets the share of each (>= 1). */
void sresid__plan_threads(sresid__plan *p, int32_t threads);

/* Run the plan. OK when every job ran; else the status and message of the
 * lowest failing job id, or CANCELLED after a stop request. Threads that cannot be created
 * leave their jobs to the others (the calling thread runs them alone when
 * none can be). */
sresid_status sresid__plan_run(const sresid__plan *p);

/* Inside a job: true when the job's result will not be used (a stop request,
 * or a failure of a lower job id). A long job may poll it and return any
 * status early. Outside a job: false. */
bool sresid__job_stopping(void);

/* What a job returns when it stops early on sresid__job_stopping(): a
 * status the engine never reports (the run's result is CANCELLED or a
 * lower job's failure). */
sresid_status sresid__job_stopped(void);

/* Cost-balanced split of njobs jobs into nparts parts (longest processing
 * time first: jobs by cost descending, ties by id, each to the part with
 * the least cost so far, ties to the lowest part). mine[j] = 1 for the jobs
 * of part `part`, 0 otherwise. Deterministic: every process computes the
 * same split. INVALID_ARG for nparts < 1 or part out of range, NOMEM. */
sresid_status sresid__plan_partition(const uint64_t *cost, size_t njobs, int nparts, int part,
                                     unsigned char *mine);

#endif /* SPARSERESID_UTIL_JOBS_H */
