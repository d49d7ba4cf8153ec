/* Opening and saving checkpoints: which format reader or writer serves a
 * path. The formats (safetensors.c, shards.c) fill a model through
 * model.c's functions; only this file knows them all, so that model.c
 * needs none of them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"

sresid_status sresid_model_open(const char *path, const sresid_model_opts *opts,
                                sresid_model **out)
{
    if (!path || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_open: %s is NULL",
                            path ? "out" : "path");
    if (!*path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_open: path is empty");
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

sresid_status sresid__model_file_ids(const sresid_model *m, sresid__file_id **ids, size_t *n)
{
    if (!m->nfiles)
        return SRESID_OK;
    sresid__file_id *p = realloc(*ids, (*n + m->nfiles) * sizeof *p);
    if (!p)
        return sresid__fail(SRESID_ERR_NOMEM, "out of memory");
    *ids = p;
    for (size_t i = 0; i < m->nfiles; i++)
        if (sresid__file_id_of_fd(m->files[i].fd, &p[*n]))
            (*n)++;
    return SRESID_OK;
}

sresid_status sresid__model_save_guarded(const sresid_model *m, const char *path,
                                         const sresid_save_opts *opts,
                                         const sresid_model *const *inputs, size_t ninputs,
                                         sresid__watch *w)
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
    /* the model's own files and those of the inputs are never replaced */
    sresid__file_id *ids = NULL;
    size_t n = 0;
    st = sresid__model_file_ids(m, &ids, &n);
    for (size_t i = 0; !st && i < ninputs; i++)
        if (inputs[i])
            st = sresid__model_file_ids(inputs[i], &ids, &n);
    sresid__watch own;
    if (!w) {
        sresid__watch_begin(&own, "sresid_model_save", o.monitor, o.monitor_user, m->count);
        w = &own;
    }
    if (!st)
        st = sresid__st_save(m, path, o.flags, ids, n, w);
    free(ids);
    return st;
}

sresid_status sresid_model_save(const sresid_model *m, const char *path,
                                const sresid_save_opts *opts)
{
    return sresid__model_save_guarded(m, path, opts, NULL, 0, NULL);
}

sresid_status sresid_model_uses_file(const sresid_model *m, const char *path, int32_t *uses)
{
    if (!m || !path || !uses)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "sresid_model_uses_file: %s is NULL",
                            !m ? "model" : !path ? "path" : "uses");
    sresid__file_id id, *ids = NULL;
    size_t n = 0;
    *uses = 0;
    if (!sresid__file_id_of_path(path, &id))
        return SRESID_OK; /* no such file: not one of the model's */
    sresid_status st = sresid__model_file_ids(m, &ids, &n);
    for (size_t i = 0; i < n && !*uses; i++)
        *uses = ids[i].dev == id.dev && ids[i].ino == id.ino;
    free(ids);
    return st;
}
