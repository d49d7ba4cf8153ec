/* Output files that appear whole or not at all: written to a temporary file
 * beside the target, flushed to disk, then linked or renamed into place.
 *
 * The temporary is anonymous where the filesystem allows (O_TMPFILE): it
 * has no name until it is complete, and the kernel frees it if the process
 * is killed, so nothing is left behind. It gets its name by linkat through
 * /proc/self/fd: straight to the target under NO_CLOBBER (which fails if
 * the target exists), else to a fresh PATH.tmp-XXXXXX renamed over the
 * target at once. Elsewhere the temporary is PATH.tmp-XXXXXX from the
 * start; only a killed process leaves one of those (docs/conventions.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

bool sresid__file_id_of_fd(int fd, sresid__file_id *id)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return false;
    *id = (sresid__file_id){(uint64_t)sb.st_dev, (uint64_t)sb.st_ino};
    return true;
}

bool sresid__file_id_of_path(const char *path, sresid__file_id *id)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return false;
    *id = (sresid__file_id){(uint64_t)sb.st_dev, (uint64_t)sb.st_ino};
    return true;
}

/* The directory part of path ("." when it has none). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

/* The target as it is now: refuse what must not be replaced. */
static sresid_status check_target(const char *path, const sresid__file_id *keep, size_t nkeep)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return SRESID_OK; /* nothing there (or a dangling link): nothing to lose */
    if (!S_ISREG(sb.st_mode))
        return sresid__fail(SRESID_ERR_IO, "%s: is a %s, not a regular file: an output replaces "
                            "only regular files", path,
                            S_ISDIR(sb.st_mode) ? "directory" : S_ISFIFO(sb.st_mode) ? "FIFO"
                            : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "device"
                                                                         : "special file");
    for (size_t i = 0; i < nkeep; i++)
        if (keep[i].dev == (uint64_t)sb.st_dev && keep[i].ino == (uint64_t)sb.st_ino)
            return sresid__fail(SRESID_ERR_IO, "%s: is a file this call reads; refusing to "
                                "replace an input with the output", path);
    return SRESID_OK;
}

static sresid_status open_named(sresid__afile *f, const char *path)
{
    size_t plen = strlen(path);
    f->tmp = malloc(plen + 16);
    if (!f->tmp)
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    memcpy(f->tmp, path, plen);
    memcpy(f->tmp + plen, ".tmp-XXXXXX", 12);
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        sresid_status st = sresid__fail(SRESID_ERR_IO, "%s: cannot create a temporary file "
                                        "beside it: %s", path, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        return st;
    }
    return SRESID_OK;
}

sresid_status sresid__afile_open_guarded(sresid__afile *f, const char *path,
                                         const sresid__file_id *keep, size_t nkeep)
{
    *f = (sresid__afile){.path = path, .fd = -1};
    if (!*path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "the output path is empty");
    sresid_status st = check_target(path, keep, nkeep);
    if (st)
        return st;
    if (!(f->dir = dir_of(path)))
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", path);
    struct stat sb;
    if (stat(f->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = sresid__fail(SRESID_ERR_IO, "%s: the directory %s does not exist", path, f->dir);
        free(f->dir);
        f->dir = NULL;
        return st;
    }
#ifdef O_TMPFILE
    if (access("/proc/self/fd", X_OK) == 0)
        f->fd = open(f->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
    if (f->fd < 0 && (st = open_named(f, path))) {
        free(f->dir);
        f->dir = NULL;
        return st;
    }
    if (fchmod(f->fd, 0644) != 0) {
        st = sresid__fail(SRESID_ERR_IO, "%s: cannot set the mode of the temporary file: %s",
                          path, strerror(errno));
        close(f->fd);
        if (f->tmp)
            unlink(f->tmp);
        free(f->tmp);
        free(f->dir);
        f->tmp = f->dir = NULL;
        return st;
    }
    return SRESID_OK;
}

sresid_status sresid__afile_open(sresid__afile *f, const char *path)
{
    return sresid__afile_open_guarded(f, path, NULL, 0);
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

/* An anonymous temporary gets a name: dst, or (dst NULL) a fresh
 * PATH.tmp-XXXXXX kept in f->tmp. 0 or an errno. */
static int name_anonymous(sresid__afile *f, const char *dst)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    if (dst)
        return linkat(AT_FDCWD, proc, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
    size_t plen = strlen(f->path);
    if (!(f->tmp = malloc(plen + 16)))
        return ENOMEM;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)f;
    for (int attempt = 0; attempt < 100; attempt++) {
        x = sresid__mix64(x);
        snprintf(f->tmp, plen + 16, "%s.tmp-%06llx", f->path,
                 (unsigned long long)(x & 0xffffffu));
        if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp, AT_SYMLINK_FOLLOW) == 0)
            return 0;
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    free(f->tmp);
    f->tmp = NULL;
    return e;
}

sresid_status sresid__afile_close(sresid__afile *f, sresid_status st, uint32_t flags)
{
    bool anonymous = f->tmp == NULL;
    if (!st && !f->failed && fsync(f->fd) != 0)
        f->failed = errno;
    /* an earlier failure (st) keeps its own message */
    if (!st && f->failed) {
        st = sresid__fail(SRESID_ERR_IO, "%s: write failed: %s", f->path, strerror(f->failed));
    } else if (!st && (flags & SRESID__AFILE_NO_CLOBBER)) {
        /* link fails if path exists: no window for a race */
        int e = anonymous ? name_anonymous(f, f->path)
                          : (link(f->tmp, f->path) == 0 ? 0 : errno);
        if (e)
            st = sresid__fail(SRESID_ERR_IO, "%s: %s", f->path,
                              e == EEXIST ? "already exists" : strerror(e));
    } else if (!st) {
        int e = anonymous ? name_anonymous(f, NULL) : 0;
        if (e)
            st = sresid__fail(SRESID_ERR_IO, "%s: cannot name the temporary file: %s", f->path,
                              strerror(e));
        else if (rename(f->tmp, f->path) != 0)
            st = sresid__fail(SRESID_ERR_IO, "%s: cannot rename the temporary file: %s",
                              f->path, strerror(errno));
    }
    if (close(f->fd) != 0 && !st)
        st = sresid__fail(SRESID_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
    if (f->tmp && (st || (flags & SRESID__AFILE_NO_CLOBBER)))
        unlink(f->tmp);
    free(f->tmp);
    free(f->dir);
    f->tmp = f->dir = NULL;
    return st;
}
