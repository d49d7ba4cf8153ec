/* A score-mask file (the input) loaded, read bit by bit against its bytes
 * and its count, and saved and loaded again unchanged. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_dir();
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return fz_mutate(data, size, max_size, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path("mask.safetensors"), *again = fz_path("again.safetensors");
    fz_write(in, data, size);
    sresid_mask *m = NULL, *m2 = NULL;
    sresid_status st = sresid_mask_load(in, &m);
    fz_check(st);
    if (st)
        return 0;
    uint64_t n = sresid_mask_size(m), set = 0;
    uint8_t *bytes = fz_alloc((size_t)n);
    FZ_OK(sresid_mask_to_bytes(m, bytes, n));
    for (uint64_t i = 0; i < n; i++) {
        int32_t v;
        FZ_OK(sresid_mask_get(m, i, &v));
        FZ_ASSERT(v == bytes[i] && (v == 0 || v == 1));
        set += (uint64_t)v;
    }
    FZ_ASSERT(set == sresid_mask_count(m));
    uint64_t half;
    FZ_OK(sresid_mask_count_range(m, 0, n / 2, &half));
    FZ_ASSERT(half <= set);

    FZ_OK(sresid_mask_save(m, again, NULL));
    FZ_OK(sresid_mask_load(again, &m2));
    FZ_ASSERT(sresid_mask_size(m2) == n && sresid_mask_count(m2) == set);
    uint8_t *bytes2 = fz_alloc((size_t)n);
    FZ_OK(sresid_mask_to_bytes(m2, bytes2, n));
    FZ_ASSERT(n == 0 || memcmp(bytes, bytes2, (size_t)n) == 0);
    free(bytes2);
    free(bytes);
    sresid_mask_free(m2);
    sresid_mask_free(m);
    fz_unlink(again);
    return 0;
}
