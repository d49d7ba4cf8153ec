/* An optimiser-state file (the input) loaded, its options and state read,
 * saved and loaded again bit-identical, then stepped once under a mask:
 * the entries the mask leaves out keep their parameters and state. */
#include "fuzz.h"

#include <math.h>
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

static bool same_opts(const sresid_optim_opts *a, const sresid_optim_opts *b)
{
    return a->kind == b->kind && a->flags == b->flags && a->lr == b->lr &&
           a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps &&
           a->weight_decay == b->weight_decay && a->momentum == b->momentum;
}

/* Entries outside the mask (odd i) are not touched by a step. */
static void masked_step(sresid_optim *p)
{
    uint64_t n = sresid_optim_size(p), steps = sresid_optim_steps(p);
    const float *m, *v;
    FZ_OK(sresid_optim_state(p, &m, &v));
    float *params = fz_alloc((size_t)n * sizeof *params), *grad = fz_alloc((size_t)n * sizeof *grad);
    float *m0 = fz_alloc((size_t)n * sizeof *m0), *v0 = fz_alloc((size_t)n * sizeof *v0);
    uint8_t *even = fz_alloc((size_t)n);
    for (uint64_t i = 0; i < n; i++) {
        params[i] = (float)i * 0.25f - 1.0f;
        grad[i] = (i % 3 ? 0.5f : -2.0f);
        even[i] = i % 2 == 0;
        m0[i] = m[i];
        v0[i] = v ? v[i] : 0;
    }
    sresid_mask *mask = NULL;
    FZ_OK(sresid_mask_from_bytes(even, n, &mask));
    FZ_OK(sresid_optim_step(p, params, grad, n, mask));
    FZ_ASSERT(sresid_optim_steps(p) == steps + 1);
    for (uint64_t i = 1; i < n; i += 2) {
        FZ_ASSERT(params[i] == (float)i * 0.25f - 1.0f);
        FZ_ASSERT(memcmp(&m[i], &m0[i], sizeof *m) == 0);
        FZ_ASSERT(!v || memcmp(&v[i], &v0[i], sizeof *v) == 0);
    }
    sresid_mask_free(mask);
    free(even);
    free(v0);
    free(m0);
    free(grad);
    free(params);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return fz_mutate(data, size, max_size, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path("optim.safetensors"), *again = fz_path("again.safetensors");
    fz_write(in, data, size);
    sresid_optim *p = NULL, *p2 = NULL;
    sresid_status st = sresid_optim_load(in, &p);
    fz_check(st);
    if (st)
        return 0;
    uint64_t n = sresid_optim_size(p);
    sresid_optim_opts o = {.size = sizeof o}, o2 = {.size = sizeof o2};
    FZ_OK(sresid_optim_get_opts(p, &o));
    const float *m, *v, *m2, *v2;
    FZ_OK(sresid_optim_state(p, &m, &v));
    FZ_ASSERT(m && (v != NULL) == (o.kind == SRESID_OPTIM_ADAMW));
    for (uint64_t i = 0; i < n; i++)
        FZ_ASSERT(isfinite(m[i]) && (!v || (isfinite(v[i]) && v[i] >= 0)));

    FZ_OK(sresid_optim_save(p, again, NULL));
    FZ_OK(sresid_optim_load(again, &p2));
    FZ_OK(sresid_optim_get_opts(p2, &o2));
    FZ_ASSERT(same_opts(&o, &o2));
    FZ_ASSERT(sresid_optim_size(p2) == n && sresid_optim_steps(p2) == sresid_optim_steps(p));
    FZ_OK(sresid_optim_state(p2, &m2, &v2));
    FZ_ASSERT(n == 0 || memcmp(m, m2, (size_t)n * sizeof *m) == 0);
    FZ_ASSERT(!v || n == 0 || memcmp(v, v2, (size_t)n * sizeof *v) == 0);

    masked_step(p2);
    sresid_optim_free(p2);
    sresid_optim_free(p);
    fz_unlink(again);
    return 0;
}
