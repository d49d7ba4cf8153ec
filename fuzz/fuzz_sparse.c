/* A sparse residual file (the input) loaded, read entry by entry, applied
 * to the fixed base model (fuzz.c) and saved again. Oracles: entries
 * ascend inside their tensor and are finite; the applied model has the
 * base's tensors and metadata with every byte outside the kept positions
 * unchanged; the saved copy loads back with the same entries. A delta whose
 * hashes do not match the base is applied with SRESID_APPLY_FORCE, so that
 * mutated files reach the apply code too. */
#include "fuzz.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static sresid_model *base;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    base = fz_base_model();
    return 0;
}

typedef struct entries {
    uint64_t kept;
    uint64_t *pos;
    float *val;
} entries;

/* Every tensor's entries, checked; an array of sresid_sparse_count. */
static entries *read_entries(const sresid_sparse *s)
{
    size_t n = sresid_sparse_count(s);
    entries *e = fz_alloc(n * sizeof *e);
    uint64_t kept = 0, numel = 0;
    for (size_t i = 0; i < n; i++) {
        sresid_sparse_info info = {.size = sizeof info};
        FZ_OK(sresid_sparse_info_get(s, i, &info));
        FZ_ASSERT(info.kept <= (uint64_t)info.numel);
        e[i].kept = info.kept;
        e[i].pos = fz_alloc((size_t)info.kept * sizeof *e[i].pos);
        e[i].val = fz_alloc((size_t)info.kept * sizeof *e[i].val);
        FZ_OK(sresid_sparse_entries(s, i, e[i].pos, e[i].val, info.kept));
        for (uint64_t j = 0; j < info.kept; j++) {
            FZ_ASSERT(e[i].pos[j] < (uint64_t)info.numel);
            FZ_ASSERT(j == 0 || e[i].pos[j] > e[i].pos[j - 1]);
            FZ_ASSERT(isfinite(e[i].val[j]));
        }
        kept += info.kept;
        numel += (uint64_t)info.numel;
    }
    sresid_sparse_info all = {.size = sizeof all};
    FZ_OK(sresid_sparse_info_get(s, SRESID_ALL, &all));
    FZ_ASSERT(all.kept == kept && (uint64_t)all.numel == numel && all.name == NULL);
    return e;
}

static void free_entries(entries *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].pos);
        free(e[i].val);
    }
    free(e);
}

/* The applied model: the base's tensors, changed only at kept positions. */
static void check_applied(const sresid_sparse *s, const entries *e, const char *path)
{
    sresid_model *out = NULL;
    FZ_OK(sresid_model_open(path, NULL, &out));
    fz_read_model(out);
    FZ_ASSERT(sresid_model_tensor_count(out) == sresid_model_tensor_count(base));
    for (size_t i = 0; i < sresid_model_tensor_count(base); i++) {
        sresid_tensor_info b = {.size = sizeof b}, o = {.size = sizeof o};
        size_t j;
        FZ_OK(sresid_model_tensor_info(base, i, &b));
        FZ_OK(sresid_model_find(out, b.name, &j));
        FZ_OK(sresid_model_tensor_info(out, j, &o));
        FZ_ASSERT(o.dtype == b.dtype && o.nbytes == b.nbytes);
        unsigned char *raw = fz_alloc((size_t)o.nbytes);
        FZ_OK(sresid_model_read_raw(out, j, raw, (size_t)o.nbytes));
        const entries *te = NULL;
        for (size_t k = 0; k < sresid_sparse_count(s); k++) {
            sresid_sparse_info info = {.size = sizeof info};
            FZ_OK(sresid_sparse_info_get(s, k, &info));
            if (strcmp(info.name, b.name) == 0)
                te = &e[k];
        }
        size_t es = sresid_dtype_size(b.dtype);
        const unsigned char *braw = b.data;
        uint64_t next = 0;
        for (int64_t x = 0; x < b.numel; x++) {
            if (te && next < te->kept && te->pos[next] == (uint64_t)x) {
                next++;
                continue;
            }
            FZ_ASSERT(memcmp(raw + (size_t)x * es, braw + (size_t)x * es, es) == 0);
        }
        free(raw);
    }
    const char *v;
    FZ_OK(sresid_model_metadata_get(out, "format", &v));
    FZ_ASSERT(strcmp(v, "pt") == 0);
    sresid_model_free(out);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return fz_mutate(data, size, max_size, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path("delta.safetensors"), *applied = fz_path("applied.safetensors"),
               *again = fz_path("again.safetensors");
    fz_write(in, data, size);
    sresid_sparse *s = NULL, *s2 = NULL;
    sresid_status st = sresid_sparse_load(in, &s);
    fz_check(st);
    if (st)
        return 0;
    size_t n = sresid_sparse_count(s);
    entries *e = read_entries(s);

    sresid_apply_opts ao = {.size = sizeof ao};
    st = sresid_sparse_apply(s, base, &ao, applied);
    if (st == SRESID_ERR_MISMATCH) {
        ao.flags = SRESID_APPLY_FORCE;
        st = sresid_sparse_apply(s, base, &ao, applied);
    }
    fz_check(st);
    if (!st)
        check_applied(s, e, applied);

    FZ_OK(sresid_sparse_save(s, again, NULL));
    FZ_OK(sresid_sparse_load(again, &s2));
    FZ_ASSERT(sresid_sparse_count(s2) == n);
    entries *e2 = read_entries(s2);
    for (size_t i = 0; i < n; i++) {
        FZ_ASSERT(e2[i].kept == e[i].kept);
        FZ_ASSERT(!e[i].kept || memcmp(e2[i].pos, e[i].pos, e[i].kept * sizeof *e[i].pos) == 0);
        FZ_ASSERT(!e[i].kept || memcmp(e2[i].val, e[i].val, e[i].kept * sizeof *e[i].val) == 0);
    }
    free_entries(e2, n);
    free_entries(e, n);
    sresid_sparse_free(s2);
    sresid_sparse_free(s);
    fz_unlink(applied);
    fz_unlink(again);
    return 0;
}
