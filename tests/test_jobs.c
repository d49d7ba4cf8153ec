/* The job engine (src/util/jobs.c): order, failures, progress, interrupts,
 * partitions. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "util/jobs.h"
#include "util/util.h"

#define MAXJ 64

typedef struct jctx {
    size_t njobs;
    atomic_int ran[MAXJ];          /* times each job ran */
    size_t order[MAXJ];            /* start order (one worker) */
    atomic_size_t started;
    const unsigned char *fail;     /* jobs that fail */
    const long *sleep_us;          /* per-job delay before returning */
    atomic_int max_worker;
    bool poll_stop;                /* jobs loop until sresid__job_stopping() */
    const unsigned char *poll;     /* or only these jobs do */
    atomic_int saw_stop;
} jctx;

static void nap(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static sresid_status job(void *ctx, size_t j, int worker)
{
    jctx *c = ctx;
    size_t k = atomic_fetch_add(&c->started, 1);
    if (k < MAXJ)
        c->order[k] = j;
    atomic_fetch_add(&c->ran[j], 1);
    int m = atomic_load(&c->max_worker);
    while (worker > m && !atomic_compare_exchange_weak(&c->max_worker, &m, worker))
        ;
    if (c->poll_stop || (c->poll && c->poll[j])) {
        for (int i = 0; i < 5000 && !sresid__job_stopping(); i++)
            nap(1000);
        if (sresid__job_stopping())
            atomic_fetch_add(&c->saw_stop, 1);
    } else if (c->sleep_us && c->sleep_us[j]) {
        nap(c->sleep_us[j]);
    }
    if (c->fail && c->fail[j])
        return sresid__fail(SRESID_ERR_NONFINITE, "job %zu failed", j);
    return SRESID_OK;
}

static const char *label(void *ctx, size_t j)
{
    static const char *names[] = {"even", "odd"};
    (void)ctx;
    return names[j % 2];
}

START_TEST(largest_first_each_once)
{
    jctx c = {.njobs = 10};
    uint64_t cost[10] = {5, 9, 1, 9, 0, 7, 7, 3, 2, 8};
    sresid__plan p = {.njobs = 10, .cost = cost, .workers = 1, .blas_threads = 1, .run = job,
                      .ctx = &c};
    ck_assert_ok(sresid__plan_run(&p));
    /* by cost descending, ties by id: worked out by hand */
    const size_t want[10] = {1, 3, 9, 5, 6, 0, 7, 8, 2, 4};
    for (int i = 0; i < 10; i++) {
        ck_assert_uint_eq(c.order[i], want[i]);
        ck_assert_int_eq(atomic_load(&c.ran[i]), 1);
    }
    /* many workers: still each job exactly once */
    jctx d = {.njobs = 10};
    p.ctx = &d;
    p.workers = 4;
    ck_assert_ok(sresid__plan_run(&p));
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(atomic_load(&d.ran[i]), 1);
    ck_assert_int_lt(atomic_load(&d.max_worker), 4);
}
END_TEST

/* Job 7 fails at once and job 2 fails late; job 2 runs last in cost order.
 * The failure reported is job 2's for any worker count, every time. */
START_TEST(lowest_failing_id_wins)
{
    unsigned char fail[12] = {0};
    fail[2] = fail[7] = 1;
    long sleep_us[12] = {0};
    sleep_us[2] = 20000;
    uint64_t cost[12];
    for (int j = 0; j < 12; j++)
        cost[j] = j == 2 ? 0 : 100 + (uint64_t)j; /* job 2 is the cheapest: last to start */
    for (int rep = 0; rep < 5; rep++)
        for (int w = 1; w <= 4; w++) {
            jctx c = {.njobs = 12, .fail = fail, .sleep_us = sleep_us};
            sresid__plan p = {.njobs = 12, .cost = cost, .workers = w, .blas_threads = 1,
                              .run = job, .ctx = &c};
            ck_assert_status(sresid__plan_run(&p), SRESID_ERR_NONFINITE);
            ck_assert_str_eq(sresid_last_error(), "job 2 failed");
            /* every job below the failure ran; none ran twice */
            for (int j = 0; j < 12; j++) {
                ck_assert_int_le(atomic_load(&c.ran[j]), 1);
                if (j <= 2)
                    ck_assert_int_eq(atomic_load(&c.ran[j]), 1);
            }
        }
}
END_TEST

typedef struct plog {
    uint64_t calls, last, total;
    bool monotone, same_thread, named;
    pthread_t caller;
    int stop_after;       /* ask to stop at this many units (0: never) */
    int polls, stop_poll; /* ask to stop at heartbeat number stop_poll (0: never) */
    uint64_t old_calls;   /* calls of the report's older progress callback */
} plog;

static plog plog_new(uint64_t total, int stop_after, int stop_poll)
{
    return (plog){.total = total, .monotone = true, .same_thread = true, .named = true,
                  .caller = pthread_self(), .stop_after = stop_after, .stop_poll = stop_poll};
}

static int on_monitor(void *user, uint64_t done, uint64_t total, const char *name)
{
    plog *l = user;
    l->same_thread &= pthread_equal(pthread_self(), l->caller) != 0;
    if (name) { /* a unit finished */
        l->monotone &= done == l->last + 1 && total == l->total;
        l->named &= strcmp(name, "even") == 0 || strcmp(name, "odd") == 0;
        l->last = done;
        l->calls++;
    } else { /* a heartbeat: done unchanged */
        l->monotone &= done == l->last && total == l->total;
        l->polls++;
    }
    return (l->stop_after && l->calls >= (uint64_t)l->stop_after) ||
           (l->stop_poll && l->polls >= l->stop_poll);
}

static void on_progress(void *user, size_t done, size_t total, const char *name)
{
    plog *l = user;
    ck_assert_uint_eq(done, l->last + 1); /* the count the monitor is given next */
    ck_assert_uint_eq(total, l->total);
    ck_assert_ptr_nonnull(name);
    l->old_calls++;
}

START_TEST(progress_on_calling_thread)
{
    for (int w = 1; w <= 3; w++) {
        jctx c = {.njobs = 10};
        plog l = plog_new(110, 0, 0);
        l.last = 100;
        sresid__watch watch;
        sresid__watch_begin(&watch, "test", on_monitor, &l, 110);
        watch.done = 100;
        sresid__plan p = {.njobs = 10, .workers = w, .blas_threads = 1, .run = job, .ctx = &c,
                          .watch = &watch, .label = label};
        ck_assert_ok(sresid__plan_run(&p));
        ck_assert_uint_eq(l.calls, 10);
        ck_assert_uint_eq(l.last, 110);
        ck_assert(l.monotone && l.same_thread && l.named);
    }
    /* no monitor in the call: the thread's default follows it, and the
     * report's older callback sees the same counts */
    jctx c = {.njobs = 10};
    plog l = plog_new(10, 0, 0);
    sresid_set_monitor(on_monitor, &l);
    sresid__watch watch;
    sresid__watch_begin(&watch, "test", NULL, NULL, 10);
    sresid_set_monitor(NULL, NULL);
    watch.progress = on_progress;
    watch.progress_user = &l;
    sresid__plan p = {.njobs = 10, .workers = 2, .blas_threads = 1, .run = job, .ctx = &c,
                      .watch = &watch, .label = label};
    ck_assert_ok(sresid__plan_run(&p));
    ck_assert_uint_eq(l.calls, 10);
    ck_assert_uint_eq(l.old_calls, 10);
    ck_assert(l.monotone && l.named);
    sresid__watch_begin(&watch, "test", NULL, NULL, 10); /* the default was removed */
    ck_assert_ptr_null(watch.monitor);
}
END_TEST

START_TEST(monitor_stops_between_and_inside_jobs)
{
    for (int w = 1; w <= 2; w++) {
        /* between jobs: at the 3rd unit the monitor asks to stop; nothing
         * new starts, and it is not asked again */
        long sleep_us[40];
        for (int j = 0; j < 40; j++)
            sleep_us[j] = 2000;
        jctx c = {.njobs = 40, .sleep_us = sleep_us};
        plog l = plog_new(40, 3, 0);
        sresid__watch watch;
        sresid__watch_begin(&watch, "test", on_monitor, &l, 40);
        sresid__plan p = {.njobs = 40, .workers = w, .blas_threads = 1, .run = job, .ctx = &c,
                          .watch = &watch, .label = label};
        ck_assert_status(sresid__plan_run(&p), SRESID_ERR_CANCELLED);
        ck_assert_str_eq(sresid_last_error(), "test: stopped by the monitor after 3 of 40 units");
        ck_assert_uint_lt(atomic_load(&c.started), 40);
        ck_assert_uint_eq(l.calls, 3);

        /* inside a job: the second heartbeat (about 200 ms in) stops the
         * run; the jobs see sresid__job_stopping() and return long before
         * their 5 s */
        jctx d = {.njobs = 2, .poll_stop = true};
        plog m = plog_new(2, 0, 2);
        sresid__watch_begin(&watch, "test", on_monitor, &m, 2);
        sresid__plan q = {.njobs = 2, .workers = w, .blas_threads = 1, .run = job, .ctx = &d,
                          .watch = &watch, .label = label};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ck_assert_status(sresid__plan_run(&q), SRESID_ERR_CANCELLED);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert_double_lt((double)(t1.tv_sec - t0.tv_sec), 2.0);
        ck_assert_int_eq(m.polls, 2);
        ck_assert(m.monotone && m.same_thread);
        ck_assert_uint_ge(atomic_load(&d.started), 1);
        ck_assert_int_eq(atomic_load(&d.saw_stop), (int)atomic_load(&d.started));
    }
    ck_assert(!sresid__job_stopping()); /* outside a job */
}
END_TEST

/* A higher job id running beside a failing lower one stops early, and its
 * own status is not what the run returns. */
START_TEST(higher_jobs_stop_after_a_lower_failure)
{
    unsigned char fail[2] = {1, 0}, poll[2] = {0, 1};
    long sleep_us[2] = {30000, 0};
    uint64_t cost[2] = {1, 2}; /* job 1 starts first and waits */
    jctx c = {.njobs = 2, .fail = fail, .poll = poll, .sleep_us = sleep_us};
    sresid__plan p = {.njobs = 2, .cost = cost, .workers = 2, .blas_threads = 1, .run = job,
                      .ctx = &c};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_status(sresid__plan_run(&p), SRESID_ERR_NONFINITE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_str_eq(sresid_last_error(), "job 0 failed");
    ck_assert_int_eq(atomic_load(&c.saw_stop), 1);
    ck_assert_double_lt((double)(t1.tv_sec - t0.tv_sec), 4.0); /* not the 5 s wait */

    /* a stop wins over a failure: job 0 fails after 150 ms, then the
     * heartbeat before job 1 stops the run */
    unsigned char fail2[3] = {1, 0, 0};
    long sleep2[3] = {150000, 0, 0};
    jctx d = {.njobs = 3, .fail = fail2, .sleep_us = sleep2};
    plog l = plog_new(3, 0, 1);
    sresid__watch watch;
    sresid__watch_begin(&watch, "test", on_monitor, &l, 3);
    sresid__plan q = {.njobs = 3, .workers = 1, .blas_threads = 1, .run = job, .ctx = &d,
                      .watch = &watch, .label = label};
    ck_assert_status(sresid__plan_run(&q), SRESID_ERR_CANCELLED);
    ck_assert_str_eq(sresid_last_error(), "test: stopped by the monitor after 0 of 3 units");
    ck_assert_int_eq(atomic_load(&d.ran[0]), 1);
    ck_assert_int_eq(atomic_load(&d.ran[1]), 0);
}
END_TEST

START_TEST(only_and_partition)
{
    uint64_t cost[9] = {10, 1, 7, 7, 3, 9, 2, 5, 4};
    unsigned char part[3][9];
    uint64_t load[3] = {0};
    for (int q = 0; q < 3; q++)
        ck_assert_ok(sresid__plan_partition(cost, 9, 3, q, part[q]));
    for (int j = 0; j < 9; j++) {
        ck_assert_int_eq(part[0][j] + part[1][j] + part[2][j], 1); /* each job in one part */
        for (int q = 0; q < 3; q++)
            load[q] += part[q][j] ? cost[j] : 0;
    }
    /* by hand: 10 -> part 0, 9 -> 1, 7 -> 2, 7 -> 2 (14), 5 -> 1 (14), 4 -> 0 (14),
     * 3 -> 0 (17, the lowest of three equal loads), 2 -> 1 (16), 1 -> 2 (15) */
    ck_assert_uint_eq(load[0], 17);
    ck_assert_uint_eq(load[1], 16);
    ck_assert_uint_eq(load[2], 15);
    /* a run over one part runs exactly its jobs */
    jctx c = {.njobs = 9};
    sresid__plan p = {.njobs = 9, .cost = cost, .only = part[1], .workers = 2, .blas_threads = 1,
                      .run = job, .ctx = &c};
    ck_assert_ok(sresid__plan_run(&p));
    for (int j = 0; j < 9; j++)
        ck_assert_int_eq(atomic_load(&c.ran[j]), part[1][j]);
    unsigned char x[1];
    ck_assert_status(sresid__plan_partition(cost, 9, 0, 0, x), SRESID_ERR_INVALID_ARG);
    ck_assert_status(sresid__plan_partition(cost, 9, 2, 2, x), SRESID_ERR_INVALID_ARG);
}
END_TEST

START_TEST(thread_budget)
{
    sresid__plan p = {.njobs = 3};
    sresid__plan_threads(&p, 8);
    ck_assert_int_eq(p.workers, 3);
    ck_assert_int_eq(p.blas_threads, 2);
    p.njobs = 100;
    sresid__plan_threads(&p, 4);
    ck_assert_int_eq(p.workers, 4);
    ck_assert_int_eq(p.blas_threads, 1);
    unsigned char only[100] = {0};
    only[5] = 1;
    p.only = only;
    sresid__plan_threads(&p, 4);
    ck_assert_int_eq(p.workers, 1);
    ck_assert_int_eq(p.blas_threads, 4);
    p.run = NULL;
    ck_assert_status(sresid__plan_run(&p), SRESID_ERR_INVALID_ARG);
    /* an empty plan succeeds */
    jctx c = {0};
    sresid__plan e = {.njobs = 0, .workers = 1, .blas_threads = 1, .run = job, .ctx = &c};
    ck_assert_ok(sresid__plan_run(&e));
}
END_TEST

Suite *suite_jobs(void)
{
    Suite *s = suite_create("jobs");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, largest_first_each_once);
    tcase_add_test(tc, lowest_failing_id_wins);
    tcase_add_test(tc, progress_on_calling_thread);
    tcase_add_test(tc, monitor_stops_between_and_inside_jobs);
    tcase_add_test(tc, higher_jobs_stop_after_a_lower_failure);
    tcase_add_test(tc, only_and_partition);
    tcase_add_test(tc, thread_budget);
    suite_add_tcase(s, tc);
    return s;
}
