/* Write a Llama-shaped base / fine-tune pair of sharded BF16 safetensors
 * checkpoints with planted structure, fast enough for 7 B parameters.
 *
 *   gen-llama [--size 100m|1b|7b] [--layers L --dim D --ffn F --vocab V]
 *             [--shards N] [--seed S] OUTDIR
 *
 * OUTDIR/base/ and OUTDIR/trained/ each get model-0000i-of-0000N.safetensors
 * and model.safetensors.index.json (the Hugging Face layout). Tensors, per
 * layer: input_layernorm, self_attn.{q,k,v,o}_proj (D x D),
 * post_attention_layernorm, mlp.{gate,up}_proj (F x D), mlp.down_proj
 * (D x F); then model.embed_tokens and lm_head (V x D), model.norm.
 *
 * Values: base weights ~ N(0, 0.02^2) (norms 1 + N(0, 0.01^2)); trained =
 * base + R, with R planted so that every probe has something to find:
 *  - attention q/v: a rank-4 product U V^T (amplitude 2e-3);
 *  - every matrix: sparse heavy-tailed spikes (one entry in a thousand,
 *    a Student-t(3) of scale 0.01) and dense noise N(0, (2e-4)^2);
 *  - the noise grows with the layer (x (1 + layer / L)), so layers differ.
 * Both are rounded to BF16 (nearest even). Normal draws come from a table of
 * 2^16 quantiles indexed by xoshiro256** bits: exact enough after BF16
 * rounding, and about 1 ns a value. Deterministic for a seed.
 * Not part of the library; the scale benchmark (bench/run-scale.sh) and the
 * scale test (tests/scale-test.sh) build it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char name[96];
    int64_t rows, cols; /* cols 0: a vector of rows entries */
    int kind;           /* 0 norm, 1 attention q/v, 2 other matrix */
    int layer;
    int shard;
    uint64_t off;       /* within its shard's data */
} tensor;

static uint64_t s[4];

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(void)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static void seed_rng(uint64_t z)
{
    for (int i = 0; i < 4; i++) { /* splitmix64 */
        z += 0x9E3779B97F4A7C15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        s[i] = x ^ (x >> 31);
    }
}

static float qtab[65536]; /* standard normal quantiles at (i + 0.5) / 65536 */

/* Acklam's rational approximation of the normal quantile, refined by one
 * Newton step on erfc: far below BF16's resolution. */
static double norm_quantile(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    double x;
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else if (p > 1 - 0.02425) {
        double q = sqrt(-2 * log(1 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    double e = 0.5 * erfc(-x / sqrt(2)) - p;
    return x - e * sqrt(2 * M_PI) * exp(x * x / 2);
}

static inline float gauss(void) { return qtab[next() >> 48]; }

static inline uint16_t bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1); /* nearest even; no NaN or Inf here */
    return (uint16_t)(u >> 16);
}

static void die(const char *what)
{
    fprintf(stderr, "gen-llama: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    int64_t L = 4, D = 1024, F = 2816, V = 8000;
    int shards = 2;
    uint64_t seed = 1;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--size") && v) {
            if (!strcmp(v, "100m"))
                L = 12, D = 768, F = 2048, V = 16000, shards = 2;
            else if (!strcmp(v, "1b"))
                L = 16, D = 2048, F = 5632, V = 32000, shards = 3;
            else if (!strcmp(v, "7b"))
                L = 32, D = 4096, F = 11008, V = 32000, shards = 6;
            else
                return fprintf(stderr, "gen-llama: --size 100m, 1b or 7b\n"), 2;
            i++;
        } else if (!strcmp(a, "--layers") && v) {
            L = atoll(argv[++i]);
        } else if (!strcmp(a, "--dim") && v) {
            D = atoll(argv[++i]);
        } else if (!strcmp(a, "--ffn") && v) {
            F = atoll(argv[++i]);
        } else if (!strcmp(a, "--vocab") && v) {
            V = atoll(argv[++i]);
        } else if (!strcmp(a, "--shards") && v) {
            shards = atoi(argv[++i]);
        } else if (!strcmp(a, "--seed") && v) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (a[0] != '-' && !out) {
            out = a;
        } else {
            fprintf(stderr, "usage: gen-llama [--size 100m|1b|7b] [--layers L --dim D --ffn F "
                            "--vocab V] [--shards N] [--seed S] OUTDIR\n");
            return 2;
        }
    }
    if (!out || L < 1 || D < 8 || F < 8 || V < 8 || shards < 1 || shards > 99)
        return fprintf(stderr, "gen-llama: bad arguments (try without any)\n"), 2;
    for (int i = 0; i < 65536; i++)
        qtab[i] = (float)norm_quantile((i + 0.5) / 65536.0);

    size_t nt = (size_t)(9 * L + 3);
    tensor *t = calloc(nt, sizeof *t);
    if (!t)
        die("calloc");
    size_t k = 0;
    static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    snprintf(t[k].name, sizeof t[k].name, "model.embed_tokens.weight");
    t[k].rows = V, t[k].cols = D, t[k].kind = 2, t[k++].layer = -1;
    for (int64_t l = 0; l < L; l++) {
        snprintf(t[k].name, 96, "model.layers.%lld.input_layernorm.weight", (long long)l);
        t[k].rows = D, t[k].kind = 0, t[k++].layer = (int)l;
        for (int p = 0; p < 4; p++) {
            snprintf(t[k].name, 96, "model.layers.%lld.self_attn.%s.weight", (long long)l, proj[p]);
            t[k].rows = D, t[k].cols = D, t[k].kind = (p == 0 || p == 2) ? 1 : 2;
            t[k++].layer = (int)l;
        }
        snprintf(t[k].name, 96, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        t[k].rows = D, t[k].kind = 0, t[k++].layer = (int)l;
        snprintf(t[k].name, 96, "model.layers.%lld.mlp.gate_proj.weight", (long long)l);
        t[k].rows = F, t[k].cols = D, t[k].kind = 2, t[k++].layer = (int)l;
        snprintf(t[k].name, 96, "model.layers.%lld.mlp.up_proj.weight", (long long)l);
        t[k].rows = F, t[k].cols = D, t[k].kind = 2, t[k++].layer = (int)l;
        snprintf(t[k].name, 96, "model.layers.%lld.mlp.down_proj.weight", (long long)l);
        t[k].rows = D, t[k].cols = F, t[k].kind = 2, t[k++].layer = (int)l;
    }
    snprintf(t[k].name, 96, "model.norm.weight");
    t[k].rows = D, t[k].kind = 0, t[k++].layer = -1;
    snprintf(t[k].name, 96, "lm_head.weight");
    t[k].rows = V, t[k].cols = D, t[k].kind = 2, t[k++].layer = -1;

    /* shards of about equal bytes, in tensor order */
    uint64_t total = 0, params = 0;
    for (size_t i = 0; i < nt; i++) {
        uint64_t n = (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1);
        params += n;
        total += 2 * n;
    }
    uint64_t acc = 0, soff[100] = {0};
    for (size_t i = 0; i < nt; i++) {
        uint64_t bytes = 2 * (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1);
        int sh = (int)(acc * (uint64_t)shards / total);
        t[i].shard = sh;
        t[i].off = soff[sh];
        soff[sh] += bytes;
        acc += bytes;
    }

    char path[4096];
    const char *side[2] = {"base", "trained"};
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        die(out);
    for (int w = 0; w < 2; w++) {
        snprintf(path, sizeof path, "%s/%s", out, side[w]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            die(path);
        /* the index */
        snprintf(path, sizeof path, "%s/%s/model.safetensors.index.json", out, side[w]);
        FILE *f = fopen(path, "w");
        if (!f)
            die(path);
        fprintf(f, "{\"metadata\": {\"total_size\": %llu}, \"weight_map\": {",
                (unsigned long long)total);
        for (size_t i = 0; i < nt; i++)
            fprintf(f, "%s\"%s\": \"model-%05d-of-%05d.safetensors\"", i ? ", " : "",
                    t[i].name, t[i].shard + 1, shards);
        fprintf(f, "}}\n");
        if (fclose(f) != 0)
            die(path);
    }

    FILE *fp[2] = {NULL, NULL};
    int open_shard = -1;
    size_t rowcap = (size_t)(D > F ? (D > V ? D : V) : (F > V ? F : V));
    uint16_t *row[2] = {malloc(2 * rowcap), malloc(2 * rowcap)};
    float *u = malloc(4 * sizeof(float) * (size_t)(V > F ? V : F)),
          *vv = malloc(4 * sizeof(float) * (size_t)(D > F ? D : F));
    if (!row[0] || !row[1] || !u || !vv)
        die("malloc");
    for (size_t i = 0; i < nt; i++) {
        if (t[i].shard != open_shard) {
            for (int w = 0; w < 2; w++) {
                if (fp[w] && fclose(fp[w]) != 0)
                    die("close");
                open_shard = t[i].shard;
                snprintf(path, sizeof path, "%s/%s/model-%05d-of-%05d.safetensors", out,
                         side[w], open_shard + 1, shards);
                fp[w] = fopen(path, "wb");
                if (!fp[w])
                    die(path);
                /* the header: this shard's tensors */
                char *h = NULL;
                size_t hl = 0;
                FILE *hs = open_memstream(&h, &hl);
                fprintf(hs, "{\"__metadata__\":{\"format\":\"pt\"}");
                for (size_t j = 0; j < nt; j++) {
                    if (t[j].shard != open_shard)
                        continue;
                    uint64_t n = (uint64_t)t[j].rows * (uint64_t)(t[j].cols ? t[j].cols : 1);
                    if (t[j].cols)
                        fprintf(hs, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],", t[j].name,
                                (long long)t[j].rows, (long long)t[j].cols);
                    else
                        fprintf(hs, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],", t[j].name,
                                (long long)t[j].rows);
                    fprintf(hs, "\"data_offsets\":[%llu,%llu]}", (unsigned long long)t[j].off,
                            (unsigned long long)(t[j].off + 2 * n));
                }
                fprintf(hs, "}");
                fclose(hs);
                size_t pad = (8 - hl % 8) % 8; /* spaces, as the reference writer */
                uint64_t len = hl + pad;
                unsigned char lb[8];
                for (int b = 0; b < 8; b++)
                    lb[b] = (unsigned char)(len >> (8 * b));
                if (fwrite(lb, 1, 8, fp[w]) != 8 || fwrite(h, 1, hl, fp[w]) != hl ||
                    fwrite("       ", 1, pad, fp[w]) != pad)
                    die(path);
                free(h);
            }
        }
        seed_rng(seed * 0x100000001B3ull + i);
        const tensor *T = &t[i];
        int64_t rows = T->rows, cols = T->cols ? T->cols : 1;
        double grow = T->layer >= 0 ? 1.0 + (double)T->layer / (double)L : 1.0;
        float noise = (float)(2e-4 * grow);
        if (T->kind == 1) { /* the rank-4 factors of the planted product */
            for (int64_t r = 0; r < 4 * rows; r++)
                u[r] = gauss();
            for (int64_t c = 0; c < 4 * cols; c++)
                vv[c] = gauss() * 1e-3f; /* entries of U V^T: sd 2e-3 */
        }
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) {
                float b = T->kind == 0 ? 1.0f + 0.01f * gauss() : 0.02f * gauss();
                float d = noise * gauss();
                if (T->kind == 1)
                    for (int q = 0; q < 4; q++)
                        d += u[4 * r + q] * vv[4 * c + q];
                if ((next() >> 54) == 0) { /* 1 in 1024: a Student-t(3) spike */
                    float z = gauss(), c1 = gauss(), c2 = gauss(), c3 = gauss();
                    d += 0.01f * z / sqrtf((c1 * c1 + c2 * c2 + c3 * c3) / 3.0f + 1e-6f);
                }
                row[0][c] = bf16(b);
                row[1][c] = bf16(b + d);
            }
            for (int w = 0; w < 2; w++)
                if (fwrite(row[w], 2, (size_t)cols, fp[w]) != (size_t)cols)
                    die("write");
        }
    }
    for (int w = 0; w < 2; w++)
        if (fp[w] && fclose(fp[w]) != 0)
            die("close");
    printf("gen-llama: %s: %zu tensors, %llu parameters, %d shards, %.2f GB a checkpoint\n", out,
           nt, (unsigned long long)params, shards, (double)total / 1e9);
    return 0;
}
