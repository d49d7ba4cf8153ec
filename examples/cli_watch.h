/* The programs' progress line and their stop on SIGINT / SIGTERM; not part
 * of the library. Both go through the library's monitor (common.h): the
 * programs set it as the thread's default, so every long call draws the
 * line and stops within a fraction of a second of a signal, writing
 * nothing (the library's outputs are written whole or not at all). */
#ifndef SR_CLI_WATCH_H
#define SR_CLI_WATCH_H

/* Called by sr_cli_start: catch SIGINT and SIGTERM (a second one ends the
 * process at once, as without the handler) and follow every long library
 * call on this thread; show: draw the progress line, when stderr is a
 * terminal too. */
void sr_cli_watch_start(const char *prog, int show);

/* The word before the count on the progress line ("basis", "fit", ...);
 * NULL: none. The string must outlive the call it labels. */
void sr_cli_watch_stage(const char *stage);

/* Erase the progress line (before printing anything else on stderr). */
void sr_cli_watch_clear(void);

/* The signal caught so far (SIGINT, SIGTERM), or 0. */
int sr_cli_watch_signal(void);

/* When a signal was caught: erase the line, print "PROG: stopped by SIGINT;
 * nothing was written" (for outputs not yet written whole) and exit with
 * 128 + the signal number (130, 143). Otherwise return. */
void sr_cli_watch_check(void);

#endif /* SR_CLI_WATCH_H */
