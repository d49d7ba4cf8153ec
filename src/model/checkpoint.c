/* Opening and saving checkpoints: which format reader or writer serves a
 * path. The formats (safetensors.c, shards.c) fill a model through
 * model.c's functions; only this file knows them all, so that model.c
 * needs none of them. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"

sresid_status sresid_model_open(const char *path, const sresid_model_opts *opts,
                                sresid_model **out)
{
    if (!path || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_open: %s is NULL",
                            path ? "out" : "path");
    sresid_model *m;
    sresid_status st = sresid__model_new(opts, "sresid_model_open", &m);
    if (st)
        return st;
    struct stat sb;
    size_t len = strlen(path);
    if (stat(path, &sb) != 0)
        st = sresid__fail(SRESID_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = sresid__open_dir(m, path);
    else if (len >= 5 && strcmp(path + len - 5, ".json") == 0)
        st = sresid__open_index(m, path);
    else
        st = sresid__st_open_file(m, path);
    if (st) {
        sresid_model_free(m);
        return st;
    }
    *out = m;
    return SRESID_OK;
}

sresid_status sresid_model_save(const sresid_model *m, const char *path,
                                const sresid_save_opts *opts)
{
    if (!m || !path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_save: %s is NULL",
                            m ? "path" : "model");
    sresid_save_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, "sresid_model_save");
    if (st)
        return st;
    if (o.flags & ~SRESID_SAVE_NO_CLOBBER)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_save: unknown flags 0x%x",
                            (unsigned)o.flags);
    return sresid__st_save(m, path, o.flags);
}
