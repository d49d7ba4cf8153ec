/* A sharded checkpoint. The input is split at each "%%shard%%" (at most
 * four splits): the part before the first is the index
 * model.safetensors.index.json, the next parts are model-00001.safetensors
 * to model-00004.safetensors (the last one takes the rest). An empty index
 * part writes no index: the directory is opened as a directory of shards.
 * A checkpoint that opens is read completely; opened through its index, it
 * must also open as a directory with the same tensors. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEP "%%shard%%"
#define MAX_SHARDS 4

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static char dir[4200], index_path[4300], shard_path[MAX_SHARDS][4300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "%s", fz_path("ck"));
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        abort();
    }
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    for (int k = 0; k < MAX_SHARDS; k++)
        snprintf(shard_path[k], sizeof shard_path[k], "%s/model-%05d.safetensors", dir, k + 1);
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return fz_mutate_parts(data, size, max_size, seed, SEP);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    const size_t seplen = sizeof SEP - 1;
    int nshards = 0;
    bool has_index = false;
    for (int part = 0; part <= MAX_SHARDS; part++) {
        const uint8_t *cut = part < MAX_SHARDS ? memmem(p, (size_t)(end - p), SEP, seplen) : NULL;
        const uint8_t *stop = cut ? cut : end;
        if (part == 0 && stop > p) {
            fz_write(index_path, p, (size_t)(stop - p));
            has_index = true;
        } else if (part > 0) {
            fz_write(shard_path[nshards++], p, (size_t)(stop - p));
        }
        if (!cut)
            break;
        p = cut + seplen;
    }

    sresid_model *m = NULL, *d = NULL;
    sresid_status st = sresid_model_open(has_index ? index_path : dir, NULL, &m);
    fz_check(st);
    if (!st) {
        fz_read_model(m);
        if (has_index) {
            FZ_OK(sresid_model_open(dir, NULL, &d));
            fz_same_models(m, d);
            sresid_model_free(d);
        }
        sresid_model_free(m);
    }
    if (has_index)
        fz_unlink(index_path);
    for (int k = 0; k < nshards; k++)
        fz_unlink(shard_path[k]);
    return 0;
}
