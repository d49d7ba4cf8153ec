/* An amplitude state file (the input) loaded onto the fixed base model
 * (fuzz.c); every selected tensor materialised (in full and as a sum into
 * W0), the model exported and read, and the state saved and loaded again
 * with the same scores, basis and mask. */
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
    /* one thread: BLIS and the job engine stay on the fuzzer's thread */
    FZ_OK(sresid_set_threads(1));
    base = fz_base_model();
    return 0;
}

static void materialize_all(const sresid_amp *amp)
{
    for (size_t t = 0; t < sresid_amp_count(amp); t++) {
        sresid_amp_tensor_info ti = {.size = sizeof ti};
        FZ_OK(sresid_amp_tensor(amp, t, &ti));
        FZ_ASSERT(ti.offset + ti.count <= sresid_amp_score_count(amp));
        FZ_ASSERT(ti.offset == sresid_amp_offsets(amp)[t]);
        size_t n = (size_t)ti.rows * (size_t)ti.cols;
        float *w = fz_alloc(n * sizeof *w), *sum = fz_alloc(n * sizeof *sum);
        FZ_OK(sresid_amp_materialize(amp, t, w, ti.cols, 0));
        /* W0 read back, then the change added to it: the same weights */
        FZ_OK(sresid_model_read_f32(base, ti.index, sum, n));
        FZ_OK(sresid_amp_materialize(amp, t, sum, ti.cols, SRESID_MATERIALIZE_ADD));
        for (size_t i = 0; i < n; i++)
            FZ_ASSERT(isnan(w[i]) ? isnan(sum[i]) : w[i] == sum[i]);
        free(w);
        free(sum);
    }
}

static void same_state(const sresid_amp *a, const sresid_mask *ma, const sresid_amp *b,
                       const sresid_mask *mb)
{
    uint64_t ns = sresid_amp_score_count(a);
    FZ_ASSERT(sresid_amp_count(a) == sresid_amp_count(b) && sresid_amp_score_count(b) == ns);
    FZ_ASSERT(sresid_amp_layout(a) == sresid_amp_layout(b));
    FZ_ASSERT(!ns || memcmp(sresid_amp_scores((sresid_amp *)a), sresid_amp_scores((sresid_amp *)b),
                            ns * sizeof(float)) == 0);
    FZ_ASSERT(!ns || memcmp(sresid_amp_initial_scores(a), sresid_amp_initial_scores(b),
                            ns * sizeof(float)) == 0);
    for (size_t t = 0; t < sresid_amp_count(a); t++) {
        sresid_amp_tensor_info ta = {.size = sizeof ta}, tb = {.size = sizeof tb};
        const float *ua, *va, *ub, *vb;
        FZ_OK(sresid_amp_tensor(a, t, &ta));
        FZ_OK(sresid_amp_tensor(b, t, &tb));
        FZ_ASSERT(ta.index == tb.index && ta.rank == tb.rank && ta.count == tb.count);
        FZ_OK(sresid_amp_basis(a, t, &ua, &va));
        FZ_OK(sresid_amp_basis(b, t, &ub, &vb));
        FZ_ASSERT(memcmp(ua, ub, (size_t)(ta.rows * ta.rank) * sizeof(float)) == 0);
        FZ_ASSERT(memcmp(va, vb, (size_t)(ta.cols * ta.rank) * sizeof(float)) == 0);
    }
    FZ_ASSERT(!ma == !mb);
    if (ma) {
        double j;
        FZ_OK(sresid_mask_jaccard(ma, mb, &j));
        FZ_ASSERT(j == 1 && sresid_mask_count(ma) == sresid_mask_count(mb));
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return fz_mutate(data, size, max_size, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path("amp.safetensors"), *again = fz_path("again.safetensors");
    fz_write(in, data, size);
    sresid_amp *amp = NULL, *amp2 = NULL;
    sresid_mask *mask = NULL, *mask2 = NULL;
    sresid_status st = sresid_amp_load(base, in, &amp, &mask);
    fz_check(st);
    if (st)
        return 0;
    FZ_ASSERT(!mask || sresid_mask_size(mask) == sresid_amp_score_count(amp));
    FZ_ASSERT(sresid_amp_offsets(amp)[sresid_amp_count(amp)] == sresid_amp_score_count(amp));
    materialize_all(amp);

    sresid_model *exported = NULL;
    st = sresid_amp_export(amp, &exported);
    fz_check(st);
    if (!st) {
        FZ_ASSERT(sresid_model_tensor_count(exported) == sresid_model_tensor_count(base));
        fz_read_model(exported);
        sresid_model_free(exported);
    }

    FZ_OK(sresid_amp_save(amp, mask, again, NULL));
    FZ_OK(sresid_amp_load(base, again, &amp2, &mask2));
    same_state(amp, mask, amp2, mask2);
    sresid_mask_free(mask2);
    sresid_amp_free(amp2);
    sresid_mask_free(mask);
    sresid_amp_free(amp);
    fz_unlink(again);
    return 0;
}
