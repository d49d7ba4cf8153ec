/* Saving and loading an amplitude state as safetensors (docs/amp.md):
 * per selected tensor "NAME.u" and "NAME.v" (F32), "scores" and
 * "initial_scores" (F32), optionally "mask" (U8, packed as
 * sresid_mask_save packs it), and metadata naming the base tensors with
 * their shapes, ranks and XXH3-128 content hashes, so that a state is
 * never applied to a base it was not made for. */
#include <jansson.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amp/amp.h"
#include "util/blas.h"

#define FORMAT_TAG "sparseresid.amp"
#define FORMAT_VERSION "1"

static const char *layout_name(int32_t layout)
{
    return layout == SRESID_AMP_CORE ? "core" : "diag";
}

/* The "tensors" metadata value: a JSON array, one object per tensor. */
static sresid_status tensors_json(const sresid_amp *amp, char **text, sresid__watch *w)
{
    json_t *arr = json_array();
    sresid_status st = arr ? SRESID_OK : SRESID_ERR_NOMEM;
    for (size_t i = 0; st == SRESID_OK && i < amp->count; i++) {
        const sresid__amp_tensor *a = &amp->t[i];
        char hex[33];
        if ((st = sresid__tensor_hash(amp->base, a->index, hex)))
            break;
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "name",
                              amp->base->tensors[a->index].name, "index", (json_int_t)a->index,
                              "rows", (json_int_t)a->rows, "cols", (json_int_t)a->cols, "rank",
                              (json_int_t)a->rank, "hash", hex);
        if (!o || json_array_append_new(arr, o) != 0)
            st = SRESID_ERR_NOMEM;
        else
            st = sresid__watch_step(w, amp->base->tensors[a->index].name);
    }
    if (st == SRESID_OK && !(*text = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        st = SRESID_ERR_NOMEM;
    json_decref(arr);
    if (st == SRESID_ERR_NOMEM)
        return sresid__fail(st, "sresid_amp_save: out of memory");
    return st;
}

sresid_status sresid_amp_save(const sresid_amp *amp, const sresid_mask *mask, const char *path,
                              const sresid_save_opts *opts)
{
    static const char fn[] = "sresid_amp_save";
    if (!amp || !path)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, amp ? "path" : "amp");
    sresid_save_opts o;
    sresid_status st = sresid__read_opts(&o, sizeof o, opts, fn);
    if (st)
        return st;
    if (mask && sresid_mask_size(mask) != amp->nscores)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: the mask has %llu entries, the scores %llu",
                            fn, (unsigned long long)sresid_mask_size(mask),
                            (unsigned long long)amp->nscores);
    /* a state that could not be loaded back is not written */
    for (uint64_t i = 0; i < amp->nscores; i++)
        if (!isfinite(amp->scores[i]))
            return sresid__fail(SRESID_ERR_NONFINITE, "%s: score %llu is NaN or Inf", fn,
                                (unsigned long long)i);

    sresid_model *m = NULL;
    char *text = NULL, *name = NULL;
    unsigned char *bits = NULL;
    /* units: each base tensor hashed, then each tensor of the file written */
    sresid__watch w;
    sresid__watch_begin(&w, fn, o.monitor, o.monitor_user,
                        3 * (uint64_t)amp->count + 2 + (mask != NULL));
    if ((st = tensors_json(amp, &text, &w)) || (st = sresid_model_create(NULL, &m)))
        goto out;
    char count[24];
    snprintf(count, sizeof count, "%llu", (unsigned long long)amp->nscores);
    if ((st = sresid_model_set_metadata(m, "format", FORMAT_TAG)) ||
        (st = sresid_model_set_metadata(m, "version", FORMAT_VERSION)) ||
        (st = sresid_model_set_metadata(m, "layout", layout_name(amp->layout))) ||
        (st = sresid_model_set_metadata(m, "score_count", count)) ||
        (st = sresid_model_set_metadata(m, "tensors", text)))
        goto out;
    for (size_t i = 0; i < amp->count; i++) {
        const sresid__amp_tensor *a = &amp->t[i];
        const char *base_name = amp->base->tensors[a->index].name;
        size_t len = strlen(base_name);
        free(name);
        if (!(name = malloc(len + 3))) {
            st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
            goto out;
        }
        memcpy(name, base_name, len);
        int64_t su[2] = {a->rows, a->rank}, sv[2] = {a->cols, a->rank};
        memcpy(name + len, ".u", 3);
        if ((st = sresid_model_add_tensor(m, name, SRESID_DTYPE_F32, 2, su, a->u,
                                          (size_t)a->rows * (size_t)a->rank * 4,
                                          SRESID_ADD_BORROW)))
            goto out;
        memcpy(name + len, ".v", 3);
        if ((st = sresid_model_add_tensor(m, name, SRESID_DTYPE_F32, 2, sv, a->v,
                                          (size_t)a->cols * (size_t)a->rank * 4,
                                          SRESID_ADD_BORROW)))
            goto out;
    }
    int64_t ns = (int64_t)amp->nscores;
    if ((st = sresid_model_add_tensor(m, "scores", SRESID_DTYPE_F32, 1, &ns, amp->scores,
                                      (size_t)ns * 4, SRESID_ADD_BORROW)) ||
        (st = sresid_model_add_tensor(m, "initial_scores", SRESID_DTYPE_F32, 1, &ns, amp->s0,
                                      (size_t)ns * 4, SRESID_ADD_BORROW)))
        goto out;
    if (mask) {
        /* entry i at bit i % 8 of byte i / 8, as sresid_mask_save writes it */
        int64_t nb = (ns + 7) / 8;
        const uint64_t *words = sresid__mask_words(mask);
        if (!(bits = malloc(nb ? (size_t)nb : 1))) {
            st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
            goto out;
        }
        for (int64_t b = 0; b < nb; b++)
            bits[b] = (unsigned char)(words[b / 8] >> (8 * (b % 8)));
        if ((st = sresid_model_add_tensor(m, "mask", SRESID_DTYPE_U8, 1, &nb, bits, (size_t)nb,
                                          SRESID_ADD_BORROW)))
            goto out;
    }
    st = sresid__model_save_guarded(m, path, opts, &amp->base, 1, &w);
out:
    sresid_model_free(m);
    free(text);
    free(name);
    free(bits);
    return st;
}

/* ---- load ---- */

typedef struct entry {
    const char *name;
    json_int_t index, rows, cols, rank;
    const char *hash;
} entry;

static bool get_int(json_t *o, const char *key, json_int_t *v)
{
    json_t *x = json_object_get(o, key);
    if (!json_is_integer(x))
        return false;
    *v = json_integer_value(x);
    return true;
}

static sresid_status parse_entries(const char *path, const char *text, json_t **root,
                                   size_t *count)
{
    json_error_t jerr;
    *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!*root || !json_is_array(*root) || json_array_size(*root) == 0)
        return sresid__fail(SRESID_ERR_METADATA,
                            "%s: metadata 'tensors' is not a non-empty JSON array", path);
    *count = json_array_size(*root);
    return SRESID_OK;
}

static sresid_status get_entry(const char *path, json_t *root, size_t i, entry *e)
{
    json_t *o = json_array_get(root, i);
    json_t *name = json_object_get(o, "name"), *hash = json_object_get(o, "hash");
    if (!json_is_object(o) || !json_is_string(name) || !json_is_string(hash) ||
        !get_int(o, "index", &e->index) || !get_int(o, "rows", &e->rows) ||
        !get_int(o, "cols", &e->cols) || !get_int(o, "rank", &e->rank))
        return sresid__fail(SRESID_ERR_METADATA,
                            "%s: metadata 'tensors' entry %zu lacks name, index, rows, cols, "
                            "rank or hash",
                            path, i);
    e->name = json_string_value(name);
    e->hash = json_string_value(hash);
    return SRESID_OK;
}

/* Read a saved F32 tensor of the given shape (ndim 1 or 2) into dst, all
 * values finite. */
static sresid_status read_f32(const sresid_model *f, const char *path, const char *name,
                              int32_t ndim, int64_t d0, int64_t d1, float *dst)
{
    size_t idx;
    if (sresid_model_find(f, name, &idx) != SRESID_OK)
        return sresid__fail(SRESID_ERR_METADATA, "%s: tensor '%s' is missing", path, name);
    const sresid__tensor *T = &f->tensors[idx];
    if (T->dtype != SRESID_DTYPE_F32 || T->ndim != ndim || T->shape[0] != d0 ||
        (ndim == 2 && T->shape[1] != d1))
        return sresid__fail(SRESID_ERR_SHAPE,
                            ndim == 2 ? "%s: tensor '%s' must be F32 [%lld, %lld]"
                                      : "%s: tensor '%s' must be F32 [%lld]",
                            path, name, (long long)d0, (long long)d1);
    size_t n = (size_t)T->numel;
    sresid_status st = sresid__tensor_to_f32(f, T, 0, n, dst);
    if (st)
        return st;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return sresid__fail(SRESID_ERR_NONFINITE, "%s: tensor '%s' holds NaN or Inf at %zu",
                                path, name, i);
    return SRESID_OK;
}

static sresid_status read_mask(const sresid_model *f, const char *path, uint64_t n,
                               sresid_mask **out)
{
    size_t idx;
    if (sresid_model_find(f, "mask", &idx) != SRESID_OK)
        return SRESID_OK; /* none saved */
    const sresid__tensor *T = &f->tensors[idx];
    uint64_t nb = (n + 7) / 8;
    if (T->dtype != SRESID_DTYPE_U8 || T->ndim != 1 || (uint64_t)T->shape[0] != nb)
        return sresid__fail(SRESID_ERR_SHAPE, "%s: tensor 'mask' must be U8 [%llu]", path,
                            (unsigned long long)nb);
    unsigned char *bytes = malloc(nb ? (size_t)nb : 1);
    sresid_mask *mk = NULL;
    sresid_status st = bytes ? sresid_mask_create(n, 0, &mk) : SRESID_ERR_NOMEM;
    if (st) {
        free(bytes);
        return sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory for the mask", path);
    }
    if ((st = sresid__tensor_bytes(f, T, 0, bytes, (size_t)nb)))
        goto out;
    if (n % 8 && (bytes[nb - 1] >> (n % 8))) {
        st = sresid__fail(SRESID_ERR_SHAPE, "%s: the mask has bits set past its %llu entries",
                          path, (unsigned long long)n);
        goto out;
    }
    uint64_t *w = sresid__mask_words_mut(mk);
    for (uint64_t b = 0; b < nb; b++)
        w[b / 8] |= (uint64_t)bytes[b] << (8 * (b % 8));
    *out = mk;
    mk = NULL;
out:
    free(bytes);
    sresid_mask_free(mk);
    return st;
}

sresid_status sresid_amp_load(const sresid_model *base, const char *path, sresid_amp **out,
                              sresid_mask **mask_out)
{
    static const char fn[] = "sresid_amp_load";
    if (!base || !path || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                            !base ? "base" : !path ? "path" : "out");
    sresid_model *f = NULL;
    sresid_status st = sresid_model_open(path, NULL, &f);
    if (st)
        return st;
    json_t *root = NULL;
    sresid_amp *amp = NULL;
    sresid_mask *mk = NULL;
    char *name = NULL;
    const char *layout, *tensors;
    uint64_t score_count;
    if ((st = sresid__meta_format(f, path, FORMAT_TAG, "version", FORMAT_VERSION,
                                  "amplitude state")) ||
        (st = sresid__meta_get(f, path, "layout", &layout)) ||
        (st = sresid__meta_get(f, path, "tensors", &tensors)) ||
        (st = sresid__meta_u64(f, path, "score_count", UINT64_MAX, &score_count)))
        goto out;
    if (strcmp(layout, "diag") != 0 && strcmp(layout, "core") != 0) {
        st = sresid__fail(SRESID_ERR_METADATA,
                          "%s: metadata \"layout\" is \"%s\", want diag or core", path, layout);
        goto out;
    }
    int32_t lay = strcmp(layout, "core") == 0 ? SRESID_AMP_CORE : SRESID_AMP_DIAG;
    size_t count = 0;
    if ((st = parse_entries(path, tensors, &root, &count)))
        goto out;
    if (!(amp = sresid__amp_new(base, lay, count))) {
        st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
        goto out;
    }
    sresid__watch w; /* one unit a base tensor checked (hashed) */
    sresid__watch_begin(&w, fn, NULL, NULL, count);
    for (size_t i = 0; i < count; i++) {
        entry e;
        if ((st = get_entry(path, root, i, &e)))
            goto out;
        if (e.index < 0 || (uint64_t)e.index >= base->count ||
            strcmp(base->tensors[e.index].name, e.name) != 0) {
            st = sresid__fail(SRESID_ERR_MISMATCH, "%s: tensor '%s' is not at index %lld of the "
                              "base", path, e.name, (long long)e.index);
            goto out;
        }
        if (i > 0 && (size_t)e.index <= amp->t[i - 1].index) {
            st = sresid__fail(SRESID_ERR_METADATA, "%s: tensors are not in base order at '%s'",
                              path, e.name);
            goto out;
        }
        const sresid__tensor *T = &base->tensors[e.index];
        int64_t m, n;
        sresid__matrix_view(T, base->layout, &m, &n);
        if (!sresid_dtype_is_float(T->dtype) || T->ndim < 2 || m != e.rows || n != e.cols) {
            st = sresid__fail(SRESID_ERR_MISMATCH, "%s: tensor '%s' of the base is not a float "
                              "%lld x %lld matrix", path, e.name, (long long)e.rows,
                              (long long)e.cols);
            goto out;
        }
        if (e.rank < 1 || e.rank > (m < n ? m : n) || m > INT32_MAX || n > INT32_MAX) {
            st = sresid__fail(SRESID_ERR_METADATA, "%s: tensor '%s': rank %lld is invalid", path,
                              e.name, (long long)e.rank);
            goto out;
        }
        char hex[33];
        if ((st = sresid__tensor_hash(base, (size_t)e.index, hex)))
            goto out;
        if (strcmp(hex, e.hash) != 0) {
            st = sresid__fail(SRESID_ERR_MISMATCH, "%s: tensor '%s' of the base differs from the "
                              "one this state was made for (content hash)", path, e.name);
            goto out;
        }
        if ((st = sresid__watch_step(&w, e.name)))
            goto out;
        sresid__amp_tensor *a = &amp->t[i];
        a->index = (size_t)e.index;
        a->rows = m;
        a->cols = n;
        a->rank = e.rank;
    }
    if ((st = sresid__amp_lay_out(amp, fn)))
        goto out;
    if (score_count != amp->nscores) {
        st = sresid__fail(SRESID_ERR_METADATA, "%s: score_count %llu, but the tensors make %llu",
                          path, (unsigned long long)score_count,
                          (unsigned long long)amp->nscores);
        goto out;
    }
    /* every tensor of the file must be accounted for */
    size_t expected = 2 * count + 2;
    size_t midx;
    if (sresid_model_find(f, "mask", &midx) == SRESID_OK)
        expected++;
    if (f->count != expected) {
        st = sresid__fail(SRESID_ERR_METADATA, "%s: %zu tensors, expected %zu", path, f->count,
                          expected);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        sresid__amp_tensor *a = &amp->t[i];
        const char *bn = base->tensors[a->index].name;
        size_t len = strlen(bn);
        free(name);
        name = malloc(len + 3);
        a->u = malloc(((size_t)a->rows * (size_t)a->rank + SRESID__BLAS_SLACK) * sizeof(float));
        a->v = malloc(((size_t)a->cols * (size_t)a->rank + SRESID__BLAS_SLACK) * sizeof(float));
        if (!name || !a->u || !a->v) {
            st = sresid__fail(SRESID_ERR_NOMEM, "%s: out of memory", fn);
            goto out;
        }
        memcpy(name, bn, len);
        memcpy(name + len, ".u", 3);
        if ((st = read_f32(f, path, name, 2, a->rows, a->rank, a->u)))
            goto out;
        memcpy(name + len, ".v", 3);
        if ((st = read_f32(f, path, name, 2, a->cols, a->rank, a->v)))
            goto out;
    }
    int64_t ns = (int64_t)amp->nscores;
    if ((st = read_f32(f, path, "scores", 1, ns, 0, amp->scores)) ||
        (st = read_f32(f, path, "initial_scores", 1, ns, 0, amp->s0)) ||
        (st = read_mask(f, path, amp->nscores, &mk)))
        goto out;
    *out = amp;
    amp = NULL;
    if (mask_out) {
        *mask_out = mk;
        mk = NULL;
    }
out:
    free(name);
    json_decref(root);
    sresid_amp_free(amp);
    sresid_mask_free(mk);
    sresid_model_free(f);
    return st;
}
