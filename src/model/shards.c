/* Sharded checkpoints: a *.safetensors.index.json (weight_map of tensor name
 * to shard file), or a directory of shards. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"

#define INDEX_LIMIT ((size_t)256 << 20)

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Shard names must stay inside the index's directory. */
static bool safe_shard_name(const char *s)
{
    if (!*s || s[0] == '/')
        return false;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += n + (q != NULL);
    }
    return true;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (s) {
        memcpy(s, dir, a);
        s[a] = '/';
        memcpy(s + a + 1, name, b + 1);
    }
    return s;
}

static sresid_status open_shards(sresid_model *m, const char *dir, char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = join(dir, names[i]);
        if (!p)
            return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", dir);
        sresid_status st = sresid__st_open_file(m, p);
        free(p);
        if (st)
            return st;
    }
    return SRESID_OK;
}

sresid_status sresid__open_index(sresid_model *m, const char *index_path)
{
    json_error_t jerr;
    /* O_NONBLOCK: a FIFO must be refused, not block the open */
    int fd = open(index_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return sresid__fail(SRESID_ERR_IO, "%s: cannot open: %s", index_path, strerror(errno));
    struct stat sb;
    const char *why = fstat(fd, &sb) != 0       ? strerror(errno)
                      : !S_ISREG(sb.st_mode)    ? "not a regular file"
                                                : NULL;
    if (why) {
        close(fd);
        return sresid__fail(SRESID_ERR_IO, "%s: %s", index_path, why);
    }
    if ((uint64_t)sb.st_size > INDEX_LIMIT) {
        close(fd);
        return sresid__fail(SRESID_ERR_HEADER, "%s: index file larger than %zu bytes", index_path,
                            INDEX_LIMIT);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: cannot read: %s", index_path, strerror(errno));
    }
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root)
        return sresid__fail(json_error_code(&jerr) == json_error_duplicate_key ? SRESID_ERR_DUPLICATE
                                                                             : SRESID_ERR_JSON,
                            "%s: invalid JSON at line %d: %s", index_path, jerr.line, jerr.text);
    sresid_status st = SRESID_OK;
    char **shards = NULL, *dir = NULL;
    size_t nshards = 0;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        st = sresid__fail(SRESID_ERR_JSON, "%s: no \"weight_map\" object", index_path);
        goto done;
    }
    size_t n = json_object_size(wm);
    shards = calloc(n ? n : 1, sizeof *shards);
    dir = strdup(index_path);
    if (!shards || !dir) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        const char *s = json_string_value(v);
        if (!s || !safe_shard_name(s)) {
            st = sresid__fail(SRESID_ERR_JSON,
                              "%s: weight_map entry '%s' is not a relative shard file name",
                              index_path, name);
            goto done;
        }
        shards[nshards++] = (char *)s;
    }
    qsort(shards, nshards, sizeof *shards, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < nshards; i++)
        if (u == 0 || strcmp(shards[u - 1], shards[i]) != 0)
            shards[u++] = shards[i];
    if ((st = open_shards(m, dir, shards, u)))
        goto done;
    /* The index and the shards must agree in both directions. */
    json_object_foreach(wm, name, v) {
        size_t idx;
        const char *want = json_string_value(v);
        if (sresid_model_find(m, name, &idx) != SRESID_OK) {
            st = sresid__fail(SRESID_ERR_NOT_FOUND, "%s: tensor '%s' is not in shard %s",
                              index_path, name, want);
            goto done;
        }
        const char *have = m->files[m->tensors[idx].file].path;
        if (!ends_with(have, want) || strlen(have) < strlen(want) + 1 ||
            have[strlen(have) - strlen(want) - 1] != '/') {
            st = sresid__fail(SRESID_ERR_NOT_FOUND, "%s: tensor '%s' is in %s, not in %s",
                              index_path, name, have, want);
            goto done;
        }
    }
    if (m->count != n) {
        for (size_t i = 0; i < m->count; i++)
            if (!json_object_get(wm, m->tensors[i].name)) {
                st = sresid__fail(SRESID_ERR_NOT_FOUND, "%s: tensor '%s' of %s is not in the index",
                                  index_path, m->tensors[i].name, m->files[m->tensors[i].file].path);
                goto done;
            }
    }
done:
    free(shards);
    free(dir);
    json_decref(root);
    return st;
}

sresid_status sresid__open_dir(sresid_model *m, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return sresid__fail(SRESID_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char **files = NULL, *index = NULL;
    size_t n = 0, cap = 0, nindex = 0;
    sresid_status st = SRESID_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        bool is_index = ends_with(name, ".safetensors.index.json");
        if (!is_index && !ends_with(name, ".safetensors"))
            continue;
        char *copy = strdup(name);
        if (!copy) {
            st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        if (is_index) {
            nindex++;
            free(index);
            index = copy;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **f = realloc(files, cap * sizeof *f);
            if (!f) {
                free(copy);
                st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            files = f;
        }
        files[n++] = copy;
    }
    closedir(d);
    if (!st) {
        if (nindex > 1) {
            st = sresid__fail(SRESID_ERR_INVALID_ARG,
                              "%s: %zu *.safetensors.index.json files; open one of them", dir,
                              nindex);
        } else if (nindex == 1) {
            char *p = join(dir, index);
            st = p ? sresid__open_index(m, p) : sresid__fail(SRESID_ERR_NOMEM, "out of memory");
            free(p);
        } else if (n == 0) {
            st = sresid__fail(SRESID_ERR_NOT_FOUND, "%s: no *.safetensors files", dir);
        } else {
            qsort(files, n, sizeof *files, cmp_str);
            st = open_shards(m, dir, files, n);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    free(index);
    return st;
}
