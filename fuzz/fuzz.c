/* Helpers of the fuzz harnesses: the scratch directory, oracles that read a
 * model completely, and the fixed base model. */
#include "fuzz.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[4096];
static pid_t scratch_owner;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void remove_scratch(void)
{
    /* a forked child (libFuzzer -fork) must not remove its parent's directory */
    if (scratch[0] && getpid() == scratch_owner)
        nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return p && *p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && access(p, W_OK) == 0;
}

const char *fz_dir(void)
{
    if (!scratch[0]) {
        const char *base = getenv("FUZZ_TMPDIR");
        if (!is_dir(base))
            base = is_dir("/dev/shm") ? "/dev/shm" : getenv("TMPDIR");
        if (!is_dir(base))
            base = "/tmp";
        snprintf(scratch, sizeof scratch, "%s/sresid-fuzz-XXXXXX", base);
        if (!mkdtemp(scratch)) {
            perror(scratch);
            abort();
        }
        scratch_owner = getpid();
        atexit(remove_scratch);
    }
    return scratch;
}

const char *fz_path(const char *name)
{
    static char bufs[8][4200];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", fz_dir(), name);
    return b;
}

void fz_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fz_unlink(const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT) {
        perror(path);
        abort();
    }
}

void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: oracle failed: %s\nlast library error: %s\n", file, line, what,
            sresid_last_error());
    abort();
}

void fz_check(sresid_status st)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "status %d (%s): %s\n", (int)st, sresid_strerror(st),
                st ? sresid_last_error() : "");
    if (st == SRESID_OK)
        return;
    if (st < SRESID_ERR_INVALID_ARG || st > SRESID_ERR_FORMAT)
        fz_fail(__FILE__, __LINE__, "the status is one of common.h's codes");
    if (!sresid_last_error()[0])
        fz_fail(__FILE__, __LINE__, "a failure comes with a message");
}

void fz_ok(sresid_status st, const char *file, int line, const char *what)
{
    if (st != SRESID_OK) {
        fprintf(stderr, "%s:%d: %s failed with %d (%s): %s\n", file, line, what, (int)st,
                sresid_strerror(st), sresid_last_error());
        abort();
    }
}

void *fz_alloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

/* ---- the reference conversions of the float oracles ---- */

static float ref_f16(unsigned h)
{
    unsigned e = (h >> 10) & 31, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24)
              : e == 31 ? (m ? NAN : INFINITY)
                        : ldexpf((float)(m | 0x400), (int)e - 25);
    return (h & 0x8000) ? -v : v;
}

static float ref_e4m3(unsigned b)
{
    unsigned e = (b >> 3) & 15, m = b & 7;
    float v = e == 15 && m == 7 ? NAN
              : e == 0          ? ldexpf((float)m, -9)
                                : ldexpf((float)(m | 8), (int)e - 10);
    return (b & 0x80) ? -v : v;
}

static float ref_value(sresid_dtype dt, const unsigned char *p)
{
    uint64_t u = 0;
    size_t es = sresid_dtype_size(dt);
    for (size_t b = 0; b < es; b++)
        u |= (uint64_t)p[b] << (8 * b);
    switch (dt) {
    case SRESID_DTYPE_F32: {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, sizeof f);
        return f;
    }
    case SRESID_DTYPE_F64: {
        double d;
        memcpy(&d, &u, sizeof d);
        return (float)d;
    }
    case SRESID_DTYPE_BF16: {
        uint32_t w = (uint32_t)u << 16;
        float f;
        memcpy(&f, &w, sizeof f);
        return f;
    }
    case SRESID_DTYPE_F16: return ref_f16((unsigned)u);
    case SRESID_DTYPE_F8_E5M2: return ref_f16((unsigned)u << 8);
    case SRESID_DTYPE_F8_E4M3: return ref_e4m3((unsigned)u);
    default: abort();
    }
}

static bool same_float(float a, float b)
{
    return isnan(a) ? isnan(b) : a == b && signbit(a) == signbit(b);
}

/* Tensor i's raw bytes and, for a float dtype, its float32 values (else
 * NULL); both malloc'd. */
static void read_tensor(const sresid_model *m, size_t i, sresid_tensor_info *ti,
                        unsigned char **raw, float **f32)
{
    ti->size = sizeof *ti;
    FZ_OK(sresid_model_tensor_info(m, i, ti));
    size_t found;
    FZ_OK(sresid_model_find(m, ti->name, &found));
    FZ_ASSERT(found == i);
    FZ_ASSERT(ti->nbytes == (uint64_t)ti->numel * sresid_dtype_size(ti->dtype));
    *raw = fz_alloc((size_t)ti->nbytes);
    FZ_OK(sresid_model_read_raw(m, i, *raw, (size_t)ti->nbytes));
    *f32 = NULL;
    if (!sresid_dtype_is_float(ti->dtype))
        return;
    *f32 = fz_alloc((size_t)ti->numel * sizeof(float));
    FZ_OK(sresid_model_read_f32(m, i, *f32, (size_t)ti->numel));
    size_t es = sresid_dtype_size(ti->dtype);
    for (int64_t k = 0; k < ti->numel; k++)
        FZ_ASSERT(same_float((*f32)[k], ref_value(ti->dtype, *raw + (size_t)k * es)));
}

void fz_read_model(const sresid_model *m)
{
    size_t n = sresid_model_tensor_count(m);
    for (size_t i = 0; i < n; i++) {
        sresid_tensor_info ti;
        unsigned char *raw;
        float *f32;
        read_tensor(m, i, &ti, &raw, &f32);
        free(raw);
        free(f32);
    }
    for (size_t i = 0; i < sresid_model_metadata_count(m); i++) {
        const char *k, *v, *w;
        FZ_OK(sresid_model_metadata_at(m, i, &k, &v));
        FZ_OK(sresid_model_metadata_get(m, k, &w));
        FZ_ASSERT(strcmp(v, w) == 0);
    }
}

void fz_same_models(const sresid_model *a, const sresid_model *b)
{
    FZ_ASSERT(sresid_model_tensor_count(a) == sresid_model_tensor_count(b));
    for (size_t i = 0; i < sresid_model_tensor_count(a); i++) {
        sresid_tensor_info ta, tb;
        unsigned char *ra, *rb;
        float *fa, *fb;
        size_t j;
        read_tensor(a, i, &ta, &ra, &fa);
        FZ_OK(sresid_model_find(b, ta.name, &j));
        read_tensor(b, j, &tb, &rb, &fb);
        FZ_ASSERT(ta.dtype == tb.dtype && ta.ndim == tb.ndim && ta.nbytes == tb.nbytes);
        for (int32_t d = 0; d < ta.ndim; d++)
            FZ_ASSERT(ta.shape[d] == tb.shape[d]);
        FZ_ASSERT(ta.nbytes == 0 || memcmp(ra, rb, (size_t)ta.nbytes) == 0);
        FZ_ASSERT(!fa || memcmp(fa, fb, (size_t)ta.numel * sizeof(float)) == 0);
        free(ra);
        free(rb);
        free(fa);
        free(fb);
    }
    FZ_ASSERT(sresid_model_metadata_count(a) == sresid_model_metadata_count(b));
    for (size_t i = 0; i < sresid_model_metadata_count(a); i++) {
        const char *k, *v, *w;
        FZ_OK(sresid_model_metadata_at(a, i, &k, &v));
        FZ_OK(sresid_model_metadata_get(b, k, &w));
        FZ_ASSERT(strcmp(v, w) == 0);
    }
}

/* ---- the fixed base model ---- */

static uint64_t next_u64(uint64_t *s)
{
    /* splitmix64: integer arithmetic only, the same bytes everywhere */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Raw little-endian bytes of one finite element of dtype dt. */
static void base_element(sresid_dtype dt, uint64_t r, unsigned char *e)
{
    uint64_t bits;
    int32_t k = (int32_t)(r >> 48) - 32768; /* value k / 32768, exact in float */
    switch (dt) {
    case SRESID_DTYPE_F32: {
        float f = (float)k / 32768.0f;
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        bits = u;
        break;
    }
    case SRESID_DTYPE_F64: {
        double d = (double)k / 32768.0;
        memcpy(&bits, &d, sizeof bits);
        break;
    }
    /* sign, an exponent near 1, a random mantissa */
    case SRESID_DTYPE_F16: bits = (r & 0x8000) | ((10 + (r >> 16) % 8) << 10) | (r >> 24 & 0x3ff); break;
    case SRESID_DTYPE_BF16: bits = (r & 0x8000) | ((120 + (r >> 16) % 8) << 7) | (r >> 24 & 0x7f); break;
    case SRESID_DTYPE_F8_E4M3: bits = (r & 0x80) | ((4 + (r >> 16) % 6) << 3) | (r >> 24 & 7); break;
    default: bits = r % 100000; break; /* integers */
    }
    for (size_t b = 0; b < sresid_dtype_size(dt); b++)
        e[b] = (unsigned char)(bits >> (8 * b));
}

sresid_model *fz_base_model(void)
{
    static const struct {
        const char *name;
        sresid_dtype dtype;
        int32_t ndim;
        int64_t shape[3];
    } spec[] = {
        {"layers.0.attn.q.weight", SRESID_DTYPE_F32, 2, {6, 4}},
        {"layers.0.mlp.fc.weight", SRESID_DTYPE_F16, 2, {4, 5}},
        {"layers.0.norm.weight", SRESID_DTYPE_F32, 1, {4}},
        {"layers.1.attn.o.weight", SRESID_DTYPE_BF16, 3, {3, 2, 2}},
        {"layers.1.mlp.fc.weight", SRESID_DTYPE_F64, 2, {5, 3}},
        {"head.weight", SRESID_DTYPE_F8_E4M3, 2, {4, 4}},
        {"step", SRESID_DTYPE_I64, 0, {0}},
    };
    uint64_t seed = 20240611;
    sresid_model *m = NULL;
    FZ_OK(sresid_model_create(NULL, &m));
    for (size_t t = 0; t < sizeof spec / sizeof *spec; t++) {
        size_t numel = 1, es = sresid_dtype_size(spec[t].dtype);
        for (int32_t d = 0; d < spec[t].ndim; d++)
            numel *= (size_t)spec[t].shape[d];
        unsigned char *data = fz_alloc(numel * es);
        for (size_t i = 0; i < numel; i++)
            base_element(spec[t].dtype, next_u64(&seed), data + i * es);
        FZ_OK(sresid_model_add_tensor(m, spec[t].name, spec[t].dtype, spec[t].ndim, spec[t].shape,
                                      data, numel * es, 0));
        free(data);
    }
    FZ_OK(sresid_model_set_metadata(m, "format", "pt"));
    return m;
}
