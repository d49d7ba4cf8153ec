/* The seed corpora of the fuzz harnesses, written with the library itself:
 *
 *   make_seeds FIXTURE OUTDIR
 *
 * writes OUTDIR/<harness>/ for safetensors, shards, sparse, amp, mask and
 * optim: small valid files of every kind the harness reads (FIXTURE, a real
 * safetensors checkpoint, gives the real names, metadata and values of a
 * few of its small tensors), each well under the harness's -max_len. */
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *outdir;

static const char *out_path(const char *harness, const char *name)
{
    static char buf[2][4200];
    static int next;
    char *b = buf[next++ % 2];
    snprintf(b, sizeof buf[0], "%s/%s", outdir, harness);
    if (mkdir(b, 0755) != 0 && errno != EEXIST) {
        perror(b);
        exit(1);
    }
    snprintf(b, sizeof buf[0], "%s/%s/%s", outdir, harness, name);
    return b;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        exit(1);
    }
    long n = ftell(f);
    unsigned char *p = fz_alloc((size_t)n);
    rewind(f);
    if (n < 0 || fread(p, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void add(sresid_model *m, const char *name, sresid_dtype dt, int32_t ndim,
                const int64_t *shape)
{
    size_t numel = 1, es = sresid_dtype_size(dt);
    for (int32_t d = 0; d < ndim; d++)
        numel *= (size_t)shape[d];
    unsigned char *data = fz_alloc(numel * es);
    for (size_t i = 0; i < numel * es; i++)
        data[i] = (unsigned char)(i * 37 + 11); /* any bytes: some are NaN or Inf */
    FZ_OK(sresid_model_add_tensor(m, name, dt, ndim, shape, data, numel * es, 0));
    free(data);
}

/* Up to max_bytes of the fixture's smallest tensors, with its metadata. */
static sresid_model *fixture_part(const sresid_model *fix, size_t first, size_t max_bytes)
{
    sresid_model *m = NULL;
    FZ_OK(sresid_model_create(NULL, &m));
    size_t total = 0;
    for (size_t i = first; i < sresid_model_tensor_count(fix); i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        FZ_OK(sresid_model_tensor_info(fix, i, &ti));
        if (ti.nbytes > 1200 || total + ti.nbytes > max_bytes)
            continue;
        unsigned char *raw = fz_alloc((size_t)ti.nbytes);
        FZ_OK(sresid_model_read_raw(fix, i, raw, (size_t)ti.nbytes));
        FZ_OK(sresid_model_add_tensor(m, ti.name, ti.dtype, ti.ndim, ti.shape, raw,
                                      (size_t)ti.nbytes, 0));
        free(raw);
        total += (size_t)ti.nbytes;
    }
    for (size_t i = 0; i < sresid_model_metadata_count(fix); i++) {
        const char *k, *v;
        FZ_OK(sresid_model_metadata_at(fix, i, &k, &v));
        FZ_OK(sresid_model_set_metadata(m, k, v));
    }
    return m;
}

static void safetensors_seeds(const sresid_model *fix)
{
    static const sresid_dtype all[] = {
        SRESID_DTYPE_BOOL, SRESID_DTYPE_U8,  SRESID_DTYPE_I8,  SRESID_DTYPE_F8_E5M2,
        SRESID_DTYPE_F8_E4M3, SRESID_DTYPE_I16, SRESID_DTYPE_U16, SRESID_DTYPE_F16,
        SRESID_DTYPE_BF16, SRESID_DTYPE_I32, SRESID_DTYPE_U32, SRESID_DTYPE_F32,
        SRESID_DTYPE_F64,  SRESID_DTYPE_I64, SRESID_DTYPE_U64};
    sresid_model *m = NULL;
    FZ_OK(sresid_model_create(NULL, &m));
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char name[64];
        const int64_t shape[3] = {2, (int64_t)(i % 3) + 1, 3};
        snprintf(name, sizeof name, "layers.%zu.%s.weight", i, sresid_dtype_name(all[i]));
        add(m, name, all[i], (int32_t)(i % 4), shape);
    }
    const int64_t zero[2] = {0, 5};
    add(m, "empty.bias", SRESID_DTYPE_F32, 2, zero);
    FZ_OK(sresid_model_set_metadata(m, "format", "pt"));
    FZ_OK(sresid_model_set_metadata(m, "note", "caf\xc3\xa9"));
    FZ_OK(sresid_model_save(m, out_path("safetensors", "all-dtypes.safetensors"), NULL));
    sresid_model_free(m);

    m = fixture_part(fix, 0, 10000);
    FZ_OK(sresid_model_save(m, out_path("safetensors", "fixture-part.safetensors"), NULL));
    sresid_model_free(m);

    FZ_OK(sresid_model_create(NULL, &m));
    FZ_OK(sresid_model_save(m, out_path("safetensors", "empty.safetensors"), NULL));
    FZ_OK(sresid_model_set_metadata(m, "only", "metadata"));
    FZ_OK(sresid_model_save(m, out_path("safetensors", "metadata-only.safetensors"), NULL));
    sresid_model_free(m);

    /* not the reference writer's layout: unsorted, unpadded, spaces */
    static const char hdr[] =
        "{ \"b\" : {\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},\n"
        "  \"a\" : {\"shape\":[2,1],\"dtype\":\"U8\",\"data_offsets\":[6,8]} }";
    unsigned char buf[8 + sizeof hdr - 1 + 8];
    for (int b = 0; b < 8; b++)
        buf[b] = (unsigned char)((sizeof hdr - 1) >> (8 * b));
    memcpy(buf + 8, hdr, sizeof hdr - 1);
    memcpy(buf + 8 + sizeof hdr - 1, "\x00\x3c\x00\xc0\xff\x7b\x01\x02", 8);
    fz_write(out_path("safetensors", "hand-written.safetensors"), buf, sizeof buf);
}

/* One shards input: the index text, then each shard file's bytes, joined
 * by the separator of fuzz_shards.c. */
static void shards_seed(const char *name, const char *index, sresid_model *const *shards,
                        int n)
{
    size_t cap = strlen(index) + 1, len = strlen(index);
    unsigned char *buf = fz_alloc(cap);
    memcpy(buf, index, len);
    for (int k = 0; k < n; k++) {
        const char *tmp = out_path("shards", "part.tmp");
        FZ_OK(sresid_model_save(shards[k], tmp, NULL));
        size_t sl;
        unsigned char *s = slurp(tmp, &sl);
        unlink(tmp);
        buf = realloc(buf, len + 9 + sl);
        if (!buf)
            abort();
        memcpy(buf + len, "%%shard%%", 9);
        memcpy(buf + len + 9, s, sl);
        len += 9 + sl;
        free(s);
    }
    fz_write(out_path("shards", name), buf, len);
    free(buf);
}

static void shards_seeds(const sresid_model *fix)
{
    sresid_model *s[3];
    for (int k = 0; k < 2; k++) {
        FZ_OK(sresid_model_create(NULL, &s[k]));
        const int64_t shape[2] = {2, 3};
        add(s[k], k ? "model.layers.1.mlp.up_proj.weight" : "model.layers.0.self_attn.q_proj.weight",
            k ? SRESID_DTYPE_BF16 : SRESID_DTYPE_F32, 2, shape);
        add(s[k], k ? "model.norm.weight" : "model.embed_tokens.weight", SRESID_DTYPE_F16, 1,
            shape);
    }
    FZ_OK(sresid_model_set_metadata(s[0], "format", "pt"));
    shards_seed("two-shards",
                "{\"metadata\":{\"total_size\":60},\"weight_map\":{"
                "\"model.embed_tokens.weight\":\"model-00001.safetensors\","
                "\"model.layers.0.self_attn.q_proj.weight\":\"model-00001.safetensors\","
                "\"model.layers.1.mlp.up_proj.weight\":\"model-00002.safetensors\","
                "\"model.norm.weight\":\"model-00002.safetensors\"}}",
                s, 2);
    shards_seed("no-index", "", s, 2);
    sresid_model_free(s[0]);
    sresid_model_free(s[1]);

    /* the fixture's small tensors over three shards, and their index */
    sresid_model *part = fixture_part(fix, 0, 6000);
    size_t n = sresid_model_tensor_count(part);
    char *index = fz_alloc(64 * 1024);
    size_t len = (size_t)sprintf(index, "{\"weight_map\":{");
    for (int k = 0; k < 3; k++)
        FZ_OK(sresid_model_create(NULL, &s[k]));
    for (size_t i = 0; i < n; i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        FZ_OK(sresid_model_tensor_info(part, i, &ti));
        int k = (int)(i * 3 / n);
        FZ_OK(sresid_model_add_tensor(s[k], ti.name, ti.dtype, ti.ndim, ti.shape, ti.data,
                                      (size_t)ti.nbytes, 0));
        len += (size_t)sprintf(index + len, "%s\"%s\":\"model-%05d.safetensors\"", i ? "," : "",
                               ti.name, k + 1);
    }
    sprintf(index + len, "}}");
    shards_seed("fixture-three-shards", index, s, 3);
    for (int k = 0; k < 3; k++)
        sresid_model_free(s[k]);
    free(index);
    sresid_model_free(part);
}

/* The base with most float elements changed in their low bits. */
static sresid_model *trained_model(const sresid_model *base)
{
    sresid_model *t = NULL;
    FZ_OK(sresid_model_create(NULL, &t));
    for (size_t i = 0; i < sresid_model_tensor_count(base); i++) {
        sresid_tensor_info ti = {.size = sizeof ti};
        FZ_OK(sresid_model_tensor_info(base, i, &ti));
        unsigned char *raw = fz_alloc((size_t)ti.nbytes);
        memcpy(raw, ti.data, (size_t)ti.nbytes);
        size_t es = sresid_dtype_size(ti.dtype);
        for (int64_t e = 0; sresid_dtype_is_float(ti.dtype) && e < ti.numel; e++) {
            if (e % 3 == 1)
                continue;
            /* mantissa bits only (and at most the lowest exponent bit): finite stays finite */
            raw[(size_t)e * es] ^= es == 1 ? 1 : (unsigned char)((e * 37) & 0x7f) | 1;
            if (es == 4 && e % 5 == 0)
                raw[(size_t)e * es + 2] ^= 0x40;
        }
        FZ_OK(sresid_model_add_tensor(t, ti.name, ti.dtype, ti.ndim, ti.shape, raw,
                                      (size_t)ti.nbytes, 0));
        free(raw);
    }
    return t;
}

static void sparse_seeds(const sresid_model *base)
{
    static const struct {
        const char *name;
        sresid_sparse_opts o;
    } cases[] = {
        {"top-f32.safetensors", {0, SRESID_SPARSE_TOP, SRESID_DTYPE_F32, 0.3, 0, 1, 0}},
        {"top-rounded.safetensors",
         {0, SRESID_SPARSE_TOP, SRESID_DTYPE_F32, 0.5, 0, 1, SRESID_SPARSE_ROUNDED}},
        {"top-all.safetensors", {0, SRESID_SPARSE_TOP, SRESID_DTYPE_F32, 1.0, 0, 1, 0}},
        {"per-tensor-f16.safetensors",
         {0, SRESID_SPARSE_TOP_PER_TENSOR, SRESID_DTYPE_F16, 0.5, 0, 1, 0}},
        {"threshold-bf16.safetensors",
         {0, SRESID_SPARSE_THRESHOLD, SRESID_DTYPE_BF16, 1e-4, 0, 1, 0}},
        {"energy.safetensors",
         {0, SRESID_SPARSE_ENERGY, SRESID_DTYPE_F32, 0.9, 0, 1, SRESID_SPARSE_IN_MEMORY}},
        {"dare.safetensors", {0, SRESID_SPARSE_DARE, SRESID_DTYPE_F32, 0.5, 7, 1, 0}},
    };
    sresid_model *trained = trained_model(base);
    sresid_pair_opts po = {.size = sizeof po};
    sresid_residual *r = NULL;
    FZ_OK(sresid_residual_create(base, trained, &po, &r));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sresid_sparse_opts o = cases[i].o;
        o.size = sizeof o;
        sresid_sparse *s = NULL;
        FZ_OK(sresid_sparse_create(r, &o, &s));
        FZ_OK(sresid_sparse_save(s, out_path("sparse", cases[i].name), NULL));
        sresid_sparse_free(s);
    }
    sresid_residual_free(r);
    sresid_model_free(trained);
}

static void amp_seed(const sresid_model *base, const char *name, int32_t layout, int32_t rank,
                     const char *pattern, int mask_rule)
{
    sresid_amp_opts o = {.size = sizeof o, .layout = layout, .rank = rank, .threads = 1,
                         .pattern = pattern};
    sresid_amp *amp = NULL;
    sresid_mask *mask = NULL;
    FZ_OK(sresid_amp_create(base, &o, &amp));
    float *s = sresid_amp_scores(amp);
    for (uint64_t i = 0; i < sresid_amp_score_count(amp); i += 2)
        s[i] += 0.0625f * (float)(i % 5) - 0.125f;
    if (mask_rule) {
        sresid_select_opts so = {.size = sizeof so, .seed = 3};
        FZ_OK(sresid_amp_select(amp, mask_rule, 0.5, &so, &mask));
    }
    FZ_OK(sresid_amp_save(amp, mask, out_path("amp", name), NULL));
    sresid_mask_free(mask);
    sresid_amp_free(amp);
}

static void mask_seeds(void)
{
    static const uint64_t sizes[] = {0, 1, 7, 8, 64, 100, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char name[64];
        sresid_mask *m = NULL;
        FZ_OK(sresid_mask_random(sizes[i], 0.4, i, NULL, 0, &m));
        snprintf(name, sizeof name, "n%llu.safetensors", (unsigned long long)sizes[i]);
        FZ_OK(sresid_mask_save(m, out_path("mask", name), NULL));
        sresid_mask_free(m);
    }
}

static void optim_seed(const char *name, uint64_t n, sresid_optim_opts o, int steps)
{
    sresid_optim *p = NULL;
    o.size = sizeof o;
    FZ_OK(sresid_optim_create(n, &o, &p));
    float *params = fz_alloc((size_t)n * sizeof *params), *grad = fz_alloc((size_t)n * sizeof *grad);
    for (int s = 0; s < steps; s++) {
        for (uint64_t i = 0; i < n; i++) {
            params[i] = (float)i / 8;
            grad[i] = (float)((int)(i * 7 + (uint64_t)s) % 11 - 5) / 4;
        }
        FZ_OK(sresid_optim_step(p, params, grad, n, NULL));
    }
    FZ_OK(sresid_optim_save(p, out_path("optim", name), NULL));
    free(grad);
    free(params);
    sresid_optim_free(p);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIXTURE OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[2];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        perror(outdir);
        return 1;
    }
    sresid_model *fix = NULL;
    FZ_OK(sresid_model_open(argv[1], NULL, &fix));
    safetensors_seeds(fix);
    shards_seeds(fix);
    sresid_model_free(fix);

    sresid_model *base = fz_base_model();
    sparse_seeds(base);
    amp_seed(base, "diag.safetensors", SRESID_AMP_DIAG, 0, NULL, 0);
    amp_seed(base, "diag-magnitude-mask.safetensors", SRESID_AMP_DIAG, 0, NULL,
             SRESID_RULE_MAGNITUDE);
    amp_seed(base, "core-rank2-random-mask.safetensors", SRESID_AMP_CORE, 2, NULL,
             SRESID_RULE_RANDOM);
    amp_seed(base, "mlp-rank1.safetensors", SRESID_AMP_DIAG, 1, "*mlp*", 0);
    sresid_model_free(base);

    mask_seeds();
    optim_seed("adamw.safetensors", 12, (sresid_optim_opts){.weight_decay = 0.01}, 3);
    optim_seed("adamw-no-bias-correction-empty.safetensors", 0,
               (sresid_optim_opts){.flags = SRESID_OPTIM_NO_BIAS_CORRECTION}, 1);
    optim_seed("sgd-nesterov.safetensors", 7,
               (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .momentum = 0.9,
                                   .flags = SRESID_OPTIM_NESTEROV, .weight_decay = 0.01},
               2);
    optim_seed("sgd.safetensors", 1, (sresid_optim_opts){.kind = SRESID_OPTIM_SGD, .lr = 0.5}, 1);
    return 0;
}
