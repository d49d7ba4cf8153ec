/* Monitors: the thread's default, and the per-call count of units. */
#include "util/monitor.h"
#include "util/util.h"

#define POLL_NS 100000000L /* a stop request is seen within this, plus the work in flight */

static _Thread_local sresid_monitor_fn default_fn;
static _Thread_local void *default_user;

void sresid_set_monitor(sresid_monitor_fn fn, void *user)
{
    default_fn = fn;
    default_user = fn ? user : NULL;
}

void sresid__watch_begin(sresid__watch *w, const char *fn, sresid_monitor_fn monitor,
                         void *monitor_user, uint64_t total)
{
    *w = (sresid__watch){.fn = fn, .total = total};
    if (monitor) {
        w->monitor = monitor;
        w->monitor_user = monitor_user;
    } else {
        w->monitor = default_fn;
        w->monitor_user = default_user;
    }
    clock_gettime(CLOCK_MONOTONIC, &w->last);
}

static sresid_status ask(sresid__watch *w, const char *name)
{
    if (!w->stopped && w->monitor) {
        clock_gettime(CLOCK_MONOTONIC, &w->last);
        w->stopped = w->monitor(w->monitor_user, w->done, w->total, name) != 0;
    }
    if (w->stopped)
        return sresid__fail(SRESID_ERR_CANCELLED,
                            "%s: stopped by the monitor after %llu of %llu units", w->fn,
                            (unsigned long long)w->done, (unsigned long long)w->total);
    return SRESID_OK;
}

sresid_status sresid__watch_step(sresid__watch *w, const char *name)
{
    if (!w)
        return SRESID_OK;
    if (!w->stopped && w->done < w->total)
        w->done++;
    if (w->progress && !w->stopped)
        w->progress(w->progress_user, (size_t)w->done, (size_t)w->total, name ? name : "");
    return ask(w, name ? name : "");
}

void sresid__watch_skip(sresid__watch *w, uint64_t n)
{
    if (w)
        w->done = n < w->total - w->done ? w->done + n : w->total;
}

sresid_status sresid__watch_poll(sresid__watch *w)
{
    if (!w || (!w->monitor && !w->stopped))
        return SRESID_OK;
    if (!w->stopped) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ns = (now.tv_sec - w->last.tv_sec) * 1000000000L + (now.tv_nsec - w->last.tv_nsec);
        if (ns < POLL_NS)
            return SRESID_OK;
    }
    return ask(w, NULL);
}
