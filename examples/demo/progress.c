/* The progress line: "\r<stage> [#####     ] 45 %  12.3 s", cleared with
 * an erase-line escape before anything else is printed. */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

double demo_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void demo_progress_init(demo_progress *p, int on)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->on = on;
}

static void draw(demo_progress *p)
{
    const int cells = 24;
    int full = p->total ? (int)((double)cells * (double)p->done / (double)p->total) : cells;
    if (full > cells)
        full = cells;
    fprintf(stderr, "\r%-26s [%.*s%*s] %3d %%  %.1f s\033[K", p->stage, full,
            "########################", cells - full, "",
            p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 100,
            demo_now() - p->started);
    fflush(stderr);
    p->drawn = 1;
}

void demo_progress_stage(demo_progress *p, const char *stage, uint64_t total)
{
    pthread_mutex_lock(&p->lock);
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->done = 0;
    p->total = total;
    p->started = p->last = demo_now();
    if (p->on)
        draw(p);
    pthread_mutex_unlock(&p->lock);
}

void demo_progress_add(demo_progress *p, uint64_t n)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->done += n;
    double t = demo_now();
    if (p->on && (t - p->last >= 0.1 || p->done >= p->total)) {
        p->last = t;
        draw(p);
    }
    pthread_mutex_unlock(&p->lock);
}

void demo_progress_set(demo_progress *p, uint64_t done, uint64_t total)
{
    pthread_mutex_lock(&p->lock);
    p->done = done;
    p->total = total;
    double t = demo_now();
    if (p->on && (t - p->last >= 0.1 || done >= total)) {
        p->last = t;
        draw(p);
    }
    pthread_mutex_unlock(&p->lock);
}

void demo_progress_clear(demo_progress *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
    pthread_mutex_unlock(&p->lock);
}

void demo_progress_destroy(demo_progress *p)
{
    pthread_mutex_destroy(&p->lock);
}
