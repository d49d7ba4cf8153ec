/* Output files that appear whole or not at all: written to a temporary file
 * beside the target, flushed to disk, then renamed (or linked) into place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

sresid_status sresid__afile_open(sresid__afile *f, const char *path)
{
    size_t plen = strlen(path);
    f->path = path;
    f->failed = 0;
    f->tmp = malloc(plen + 16);
    if (!f->tmp)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    memcpy(f->tmp, path, plen);
    memcpy(f->tmp + plen, ".tmp-XXXXXX", 12);
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0 || fchmod(f->fd, 0644) != 0) {
        sresid_status st = sresid__fail(SRESID_ERR_IO, "%s: cannot create a temporary file: %s",
                                        path, strerror(errno));
        if (f->fd >= 0) {
            close(f->fd);
            unlink(f->tmp);
        }
        free(f->tmp);
        f->tmp = NULL;
        return st;
    }
    return SRESID_OK;
}

bool sresid__afile_write(sresid__afile *f, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len && !f->failed) {
        ssize_t w = write(f->fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            f->failed = w < 0 ? errno : EIO;
        else {
            p += w;
            len -= (size_t)w;
        }
    }
    return !f->failed;
}

sresid_status sresid__afile_close(sresid__afile *f, sresid_status st, uint32_t flags)
{
    if (!st && !f->failed && fsync(f->fd) != 0)
        f->failed = errno;
    if (close(f->fd) != 0 && !f->failed)
        f->failed = errno;
    /* an earlier failure (st) keeps its own message */
    if (!st && f->failed) {
        st = sresid__fail(SRESID_ERR_IO, "%s: write failed: %s", f->path, strerror(f->failed));
    } else if (!st && (flags & SRESID__AFILE_NO_CLOBBER)) {
        /* link() fails if path exists: no window for a race */
        if (link(f->tmp, f->path) != 0)
            st = sresid__fail(SRESID_ERR_IO, "%s: %s", f->path,
                              errno == EEXIST ? "already exists" : strerror(errno));
    } else if (!st && rename(f->tmp, f->path) != 0) {
        st = sresid__fail(SRESID_ERR_IO, "%s: cannot rename the temporary file: %s", f->path,
                          strerror(errno));
    }
    if (st || (flags & SRESID__AFILE_NO_CLOBBER))
        unlink(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
    return st;
}
