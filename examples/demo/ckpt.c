/* Checkpoint files and the cache directory. */
#include "ckpt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int demo_model_view(const gpt *g, const float *params, sresid_model **out, char *err,
                    size_t errlen)
{
    sresid_model *m = NULL;
    sresid_status st = sresid_model_create(NULL, &m);
    for (size_t i = 0; st == SRESID_OK && i < g->ntensors; i++) {
        const gpt_tensor *t = &g->tensors[i];
        st = sresid_model_add_tensor(m, t->name, SRESID_DTYPE_F32, t->ndim, t->shape,
                                     params + t->offset, t->numel * sizeof(float),
                                     SRESID_ADD_BORROW);
    }
    if (st) {
        snprintf(err, errlen, "building the model: %s", sresid_last_error());
        sresid_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int demo_ckpt_save(const gpt *g, const float *params, const char *path, const char *key,
                   double train_loss, char *err, size_t errlen)
{
    sresid_model *m = NULL;
    if (demo_model_view(g, params, &m, err, errlen))
        return -1;
    char loss[64];
    snprintf(loss, sizeof loss, "%.17g", train_loss);
    sresid_status st = sresid_model_set_metadata(m, "sr_demo.key", key);
    if (!st)
        st = sresid_model_set_metadata(m, "sr_demo.train_loss", loss);
    if (!st)
        st = sresid_model_save(m, path, NULL);
    if (st)
        snprintf(err, errlen, "cannot save %s: %s", path, sresid_last_error());
    sresid_model_free(m);
    return st ? -1 : 0;
}

int demo_ckpt_load(const gpt *g, float *params, const char *path, const char *key,
                   double *train_loss, char *err, size_t errlen)
{
    if (access(path, F_OK) != 0)
        return 0;
    sresid_model *m = NULL;
    sresid_status st = sresid_model_open(path, NULL, &m);
    if (st) {
        snprintf(err, errlen, "cannot read cached checkpoint %s: %s (remove it or use --fresh)",
                 path, sresid_last_error());
        return -1;
    }
    const char *stored = NULL, *loss = NULL;
    int rc = 1;
    if (sresid_model_metadata_get(m, "sr_demo.key", &stored) != SRESID_OK ||
        strcmp(stored, key) != 0) {
        rc = 0; /* another run's file under a colliding name: train again */
        goto done;
    }
    for (size_t i = 0; i < g->ntensors && rc == 1; i++) {
        const gpt_tensor *t = &g->tensors[i];
        size_t at;
        sresid_tensor_info info = {.size = sizeof info};
        if ((st = sresid_model_find(m, t->name, &at)) ||
            (st = sresid_model_tensor_info(m, at, &info)) ||
            (info.numel != (int64_t)t->numel ? (st = SRESID_ERR_SHAPE) : 0) ||
            (st = sresid_model_read_f32(m, at, params + t->offset, t->numel))) {
            snprintf(err, errlen, "cached checkpoint %s: tensor %s: %s (remove it or use --fresh)",
                     path, t->name, sresid_last_error());
            rc = -1;
        }
    }
    if (rc == 1 && train_loss) {
        *train_loss = 0;
        if (sresid_model_metadata_get(m, "sr_demo.train_loss", &loss) == SRESID_OK)
            *train_loss = strtod(loss, NULL);
    }
done:
    sresid_model_free(m);
    return rc;
}

int demo_mkdirs(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        snprintf(err, errlen, "bad directory name '%s'", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
            return -1;
        }
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", path);
        return -1;
    }
    return 0;
}
