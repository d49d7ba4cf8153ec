/* Progress line and stop requests for the example programs (cli_watch.h). */
#include "cli_watch.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <sparseresid/sparseresid.h>

static volatile sig_atomic_t caught;

static struct {
    const char *prog;
    const char *stage;
    int show;      /* draw the line */
    int drawn;     /* a line is on the terminal */
    int width;
    double last;   /* seconds of the last draw */
} w;

static void on_signal(int sig)
{
    caught = sig; /* SA_RESETHAND: a second signal takes its default action */
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void draw(uint64_t done, uint64_t total, const char *name)
{
    double t = now();
    if (done < total && t - w.last < 0.1) /* ten frames a second is plenty */
        return;
    w.last = t;
    char line[1024];
    int cells = 30;
    int full = total ? (int)((double)cells * (double)done / (double)total) : cells;
    int n = snprintf(line, sizeof line, "\r%s%s[%.*s%*s] %llu/%llu ", w.stage ? w.stage : "",
                     w.stage ? " " : "", full, "##############################", cells - full,
                     "", (unsigned long long)done, (unsigned long long)total);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    /* the name fills what is left of the terminal line, control bytes masked */
    size_t room = w.width > n + 1 ? (size_t)(w.width - n - 1) : 0;
    size_t len = strlen(name);
    if (len > room)
        name += len - room, len = room;
    for (size_t i = 0; i < len && (size_t)n + 1 < sizeof line; i++) {
        unsigned char c = (unsigned char)name[i];
        line[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    line[n] = '\0';
    fputs(line, stderr);
    fputs("\033[K", stderr);
    fflush(stderr);
    w.drawn = 1;
}

static int monitor(void *user, uint64_t done, uint64_t total, const char *name)
{
    (void)user;
    if (caught)
        return 1;
    if (w.show && name) {
        draw(done, total, name);
        if (done == total) /* a call's last unit: the line goes */
            sr_cli_watch_clear();
    }
    return 0;
}

void sr_cli_watch_start(const char *prog, int show)
{
    w.prog = prog;
    w.show = show && isatty(2);
    w.width = 80;
    struct winsize ws;
    if (w.show && ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        w.width = ws.ws_col;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    /* a signal ignored at start (nohup, a background job of a script)
     * stays ignored */
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    }
    sresid_set_monitor(monitor, NULL);
}

void sr_cli_watch_stage(const char *stage)
{
    w.stage = stage;
}

void sr_cli_watch_clear(void)
{
    if (w.drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        w.drawn = 0;
    }
}

int sr_cli_watch_signal(void)
{
    return caught;
}

void sr_cli_watch_check(void)
{
    int sig = caught;
    if (!sig)
        return;
    sr_cli_watch_clear();
    fprintf(stderr, "%s: stopped by %s; nothing was written\n", w.prog ? w.prog : "sr",
            sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal");
    exit(128 + sig);
}
