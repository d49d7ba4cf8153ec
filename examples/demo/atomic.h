/* Output files written whole or not at all: a temporary file beside the
 * target, flushed and synced, then renamed over it. */
#ifndef DEMO_ATOMIC_H
#define DEMO_ATOMIC_H

#include <stdio.h>

typedef struct demo_afile {
    FILE *f;
    char tmp[4200];
    const char *path;
} demo_afile;

/* Returns 0 or -1 with err. */
int demo_afile_open(demo_afile *a, const char *path, char *err, size_t errlen);
/* Flush, sync and rename; on any write error remove the temporary file.
 * Returns 0 or -1 with err. */
int demo_afile_commit(demo_afile *a, char *err, size_t errlen);

/* Give up: close and remove the temporary file. */
void demo_afile_abort(demo_afile *a);

#endif /* DEMO_ATOMIC_H */
