/* One safetensors file: the input is the file. A file that opens is read
 * completely twice (pread, and the mapping with SRESID_OPEN_KEEP_PAGES and
 * the out-last layout) with the same values, then saved and opened again
 * with the same tensors and metadata, and paired with that copy: a residual
 * of zeros. */
#include "fuzz.h"

#include <math.h>
#include <stdlib.h>

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

/* A model paired with its copy: every residual value is 0 (NaN where a
 * value is NaN or infinite), and so are the norms. */
static void zero_residual(const sresid_model *a, const sresid_model *b)
{
    sresid_residual *r = NULL;
    FZ_OK(sresid_residual_create(a, b, NULL, &r));
    for (size_t i = 0; i < sresid_residual_count(r); i++) {
        size_t ia, ib;
        sresid_tensor_info ti = {.size = sizeof ti};
        FZ_OK(sresid_residual_pair(r, i, &ia, &ib));
        FZ_OK(sresid_model_tensor_info(a, ia, &ti));
        float *d = fz_alloc((size_t)ti.numel * sizeof *d);
        FZ_OK(sresid_residual_read(r, i, d, (size_t)ti.numel));
        for (int64_t k = 0; k < ti.numel; k++)
            FZ_ASSERT(d[k] == 0 || isnan(d[k]));
        free(d);
    }
    sresid_norms n = {.size = sizeof n};
    FZ_OK(sresid_residual_norms(r, SRESID_ALL, &n));
    FZ_ASSERT(n.residual == 0 || isnan(n.residual));
    sresid_residual_free(r);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return fz_mutate(data, size, max_size, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path("in.safetensors"), *out = fz_path("out.safetensors");
    fz_write(in, data, size);
    sresid_model *m = NULL, *kept = NULL, *back = NULL;
    sresid_status st = sresid_model_open(in, NULL, &m);
    fz_check(st);
    if (st)
        return 0;
    fz_read_model(m);

    sresid_model_opts o = {.size = sizeof o, .layout = SRESID_LAYOUT_OUT_LAST,
                           .flags = SRESID_OPEN_KEEP_PAGES};
    FZ_OK(sresid_model_open(in, &o, &kept));
    fz_same_models(m, kept);
    for (size_t i = 0; i < sresid_model_tensor_count(m); i++) {
        sresid_tensor_info a = {.size = sizeof a}, b = {.size = sizeof b};
        FZ_OK(sresid_model_tensor_info(m, i, &a));
        FZ_OK(sresid_model_tensor_info(kept, i, &b));
        /* both matrix views cover the tensor (zero-size ones may saturate) */
        FZ_ASSERT(a.numel == 0 || (a.rows * a.cols == a.numel && b.rows * b.cols == b.numel));
        FZ_ASSERT(a.ndim < 2 || b.cols == a.shape[a.ndim - 1]);
    }
    sresid_model_free(kept);

    /* the writer's output reads back as the same model */
    sresid_save_opts so = {.size = sizeof so};
    st = sresid_model_save(m, out, &so);
    fz_check(st);
    if (!st) {
        FZ_OK(sresid_model_open(out, NULL, &back));
        fz_same_models(m, back);
        zero_residual(m, back);
        sresid_model_free(back);
    }
    sresid_model_free(m);
    fz_unlink(out);
    return 0;
}
