/* A minimal work queue: workers take the next cell index under a lock. */
#include "sweep.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct pool {
    const demo_tune_ctx *ctx;
    demo_cell *cells;
    size_t n, next;
    pthread_mutex_t lock;
    demo_progress *progress;
} pool;

static void *worker(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next < p->n ? p->next++ : p->n;
        pthread_mutex_unlock(&p->lock);
        if (i == p->n)
            return NULL;
        demo_tune_run(p->ctx, &p->cells[i], p->progress);
    }
}

int demo_sweep(const demo_tune_ctx *ctx, demo_cell *cells, size_t n, int threads,
               demo_progress *progress)
{
    pool p = {.ctx = ctx, .cells = cells, .n = n, .progress = progress};
    pthread_mutex_init(&p.lock, NULL);
    if (threads < 1)
        threads = 1;
    if ((size_t)threads > n)
        threads = n ? (int)n : 1;
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int started = 0;
    /* the calling thread is worker 0 */
    for (int i = 1; th && i < threads; i++)
        if (pthread_create(&th[started], NULL, worker, &p) == 0)
            started++;
    worker(&p);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    pthread_mutex_destroy(&p.lock);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (cells[i].failed)
            rc = -1;
    return rc;
}
