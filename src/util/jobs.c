/* The job engine (jobs.h): a queue of job ids in cost order, worker
 * threads taking the next one, and the calling thread reporting progress
 * to the monitor and asking it whether to stop. The lowest failing id wins because a
 * job is skipped only when a lower id has already failed. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/blas.h"
#include "util/jobs.h"
#include "util/util.h"

#define POLL_NS 50000000L /* the calling thread wakes this often; the monitor rate-limits itself */
#define MSG_SIZE 4096

typedef struct engine {
    const sresid__plan *p;
    size_t *order;           /* the jobs to run, largest cost first */
    size_t n;
    size_t next;             /* next position in order (under mu) */
    atomic_size_t fail_id;   /* lowest failed job id, SIZE_MAX: none */
    atomic_bool stop;        /* the monitor asked to stop */
    sresid_status fail_st;
    char fail_msg[MSG_SIZE];
    size_t *done;            /* finished jobs not yet reported (under mu) */
    size_t ndone, nreported;
    int alive;
    bool inline_run;         /* jobs run on the calling thread */
    struct timespec last_poll;
    char stop_msg[MSG_SIZE];
    pthread_mutex_t mu;
    pthread_cond_t cv;
} engine;

typedef struct worker_arg {
    engine *e;
    int index;
} worker_arg;

/* The job the current thread runs, for sresid__job_stopping. */
static _Thread_local engine *cur_engine;
static _Thread_local size_t cur_job;

static int cmp_order(const void *pa, const void *pb, void *ctx)
{
    const uint64_t *cost = ctx;
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    if (cost && cost[a] != cost[b])
        return cost[a] < cost[b] ? 1 : -1;
    return (a > b) - (a < b);
}

static void since(struct timespec *t)
{
    clock_gettime(CLOCK_MONOTONIC, t);
}

static long elapsed_ns(const struct timespec *t)
{
    struct timespec now;
    since(&now);
    return (now.tv_sec - t->tv_sec) * 1000000000L + (now.tv_nsec - t->tv_nsec);
}

/* On the calling thread: ask the monitor; a stop is remembered once. */
static void poll_monitor(engine *e)
{
    since(&e->last_poll);
    if (atomic_load(&e->stop) || !sresid__watch_poll(e->p->watch))
        return;
    snprintf(e->stop_msg, sizeof e->stop_msg, "%s", sresid_last_error());
    atomic_store(&e->stop, true);
}

/* On the calling thread: one progress report per finished job. */
static void report(engine *e, size_t job)
{
    const sresid__plan *p = e->p;
    const char *label = p->label ? p->label(p->ctx, job) : "";
    if (!label || atomic_load(&e->stop)) /* not a unit of progress, or stopped */
        return;
    since(&e->last_poll);
    if (!sresid__watch_step(p->watch, label))
        return;
    snprintf(e->stop_msg, sizeof e->stop_msg, "%s", sresid_last_error());
    atomic_store(&e->stop, true);
}

/* Take the next job to run (under mu): SIZE_MAX when none is left. */
static size_t take(engine *e)
{
    while (e->next < e->n) {
        size_t j = e->order[e->next++];
        if (!atomic_load(&e->stop) && j < atomic_load(&e->fail_id))
            return j;
    }
    return SIZE_MAX;
}

/* Run job j on this thread and record its outcome (mu not held). */
static bool run_one(engine *e, size_t j, int worker)
{
    engine *outer = cur_engine; /* a job may run a plan of its own */
    size_t outer_job = cur_job;
    cur_engine = e;
    cur_job = j;
    sresid_status st = e->p->run(e->p->ctx, j, worker);
    cur_engine = outer;
    cur_job = outer_job;
    pthread_mutex_lock(&e->mu);
    if (st) {
        if (j < atomic_load(&e->fail_id)) {
            atomic_store(&e->fail_id, j);
            e->fail_st = st;
            snprintf(e->fail_msg, sizeof e->fail_msg, "%s", sresid_last_error());
        }
    } else {
        e->done[e->ndone++] = j;
    }
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return st == SRESID_OK;
}

static void *worker_main(void *arg)
{
    worker_arg *w = arg;
    engine *e = w->e;
    int saved = sresid__blas_local_threads(e->p->blas_threads);
    pthread_mutex_lock(&e->mu);
    for (size_t j; (j = take(e)) != SIZE_MAX;) {
        pthread_mutex_unlock(&e->mu);
        run_one(e, j, w->index);
        pthread_mutex_lock(&e->mu);
    }
    e->alive--;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    sresid__blas_local_threads(saved);
    return NULL;
}

/* Everything on the calling thread, in the same order and with the same
 * skipping rule as the workers. */
static void run_inline(engine *e)
{
    int saved = sresid__blas_local_threads(e->p->blas_threads);
    e->inline_run = true;
    for (;;) {
        poll_monitor(e);
        size_t j = take(e);
        if (j == SIZE_MAX)
            break;
        if (run_one(e, j, 0)) {
            e->nreported = e->ndone;
            report(e, j);
        }
    }
    sresid__blas_local_threads(saved);
}

static void run_threads(engine *e, int nw, pthread_t *tid, worker_arg *args)
{
    int started = 0;
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < nw; i++) {
        args[i] = (worker_arg){e, i};
        if (pthread_create(&tid[i], NULL, worker_main, &args[i]) != 0)
            break;
        started++;
        e->alive++;
    }
    if (started == 0) {
        pthread_mutex_unlock(&e->mu);
        run_inline(e);
        return;
    }
    for (;;) {
        bool reported = false;
        while (e->nreported < e->ndone) {
            size_t j = e->done[e->nreported++];
            pthread_mutex_unlock(&e->mu);
            report(e, j);
            pthread_mutex_lock(&e->mu);
            reported = true;
        }
        if (reported || elapsed_ns(&e->last_poll) >= POLL_NS) {
            pthread_mutex_unlock(&e->mu);
            poll_monitor(e);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (e->alive == 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += POLL_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cv, &e->mu, &until);
    }
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
}

void sresid__plan_threads(sresid__plan *p, int32_t threads)
{
    size_t n = 0;
    for (size_t j = 0; j < p->njobs; j++)
        n += !p->only || p->only[j];
    if (threads < 1)
        threads = 1;
    p->workers = (size_t)threads < n ? threads : n ? (int)n : 1;
    p->blas_threads = threads / p->workers > 1 ? threads / p->workers : 1;
}

sresid_status sresid__plan_run(const sresid__plan *p)
{
    if (!p || !p->run || (p->njobs && p->workers < 1))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "job engine: incomplete plan");
    engine e = {.p = p};
    atomic_init(&e.fail_id, SIZE_MAX);
    atomic_init(&e.stop, false);
    size_t cap = p->njobs ? p->njobs : 1;
    e.order = malloc(cap * sizeof *e.order);
    e.done = malloc(cap * sizeof *e.done);
    int nw = p->workers;
    pthread_t *tid = nw > 1 ? malloc((size_t)nw * sizeof *tid) : NULL;
    worker_arg *args = nw > 1 ? malloc((size_t)nw * sizeof *args) : NULL;
    if (!e.order || !e.done || (nw > 1 && (!tid || !args))) {
        free(e.order);
        free(e.done);
        free(tid);
        free(args);
        return sresid__fail(SRESID_ERR_NOMEM, "job engine: no memory for %zu jobs", p->njobs);
    }
    for (size_t j = 0; j < p->njobs; j++)
        if (!p->only || p->only[j])
            e.order[e.n++] = j;
    qsort_r(e.order, e.n, sizeof *e.order, cmp_order, (void *)p->cost);
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.cv, NULL);
    since(&e.last_poll);
    if (nw > 1 && e.n > 1)
        run_threads(&e, (size_t)nw < e.n ? nw : (int)e.n, tid, args);
    else
        run_inline(&e);
    pthread_mutex_destroy(&e.mu);
    pthread_cond_destroy(&e.cv);
    free(e.order);
    free(e.done);
    free(tid);
    free(args);
    /* a stop wins: jobs abandoned for it are not failures */
    if (atomic_load(&e.stop))
        return sresid__fail(SRESID_ERR_CANCELLED, "%s", e.stop_msg);
    if (atomic_load(&e.fail_id) != SIZE_MAX)
        return sresid__fail(e.fail_st, "%s", e.fail_msg);
    return SRESID_OK;
}

bool sresid__job_stopping(void)
{
    engine *e = cur_engine;
    if (!e)
        return false;
    /* inline, the job runs on the calling thread: it may ask the monitor */
    if (e->inline_run && elapsed_ns(&e->last_poll) >= POLL_NS)
        poll_monitor(e);
    return atomic_load(&e->stop) || cur_job > atomic_load(&e->fail_id);
}

sresid_status sresid__job_stopped(void)
{
    return sresid__fail(SRESID_ERR_UNSUPPORTED, "job engine: job stopped early");
}

sresid_status sresid__plan_partition(const uint64_t *cost, size_t njobs, int nparts, int part,
                                     unsigned char *mine)
{
    if (nparts < 1 || part < 0 || part >= nparts || (njobs && !mine))
        return sresid__fail(SRESID_ERR_INVALID_ARG, "job engine: part %d of %d parts", part,
                            nparts);
    size_t *order = malloc((njobs ? njobs : 1) * sizeof *order);
    uint64_t *load = calloc((size_t)nparts, sizeof *load);
    if (!order || !load) {
        free(order);
        free(load);
        return sresid__fail(SRESID_ERR_NOMEM, "job engine: no memory to split %zu jobs", njobs);
    }
    for (size_t j = 0; j < njobs; j++)
        order[j] = j;
    qsort_r(order, njobs, sizeof *order, cmp_order, (void *)cost);
    for (size_t i = 0; i < njobs; i++) {
        int best = 0;
        for (int q = 1; q < nparts; q++)
            if (load[q] < load[best])
                best = q;
        size_t j = order[i];
        uint64_t c = cost ? cost[j] : 1;
        load[best] = load[best] + c < load[best] ? UINT64_MAX : load[best] + c;
        mine[j] = best == part;
    }
    free(order);
    free(load);
    return SRESID_OK;
}
