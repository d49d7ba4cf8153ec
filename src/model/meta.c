/* Metadata of the library's own file formats: mask, optimiser, amp-state
 * and sparse-residual files are safetensors files whose __metadata__ holds
 * a format tag, a version and numbers. One reader for all of them, so that
 * every format rejects the same malformed values the same way, and numbers
 * are written and read in the C locale whatever the host program's (a
 * program running under de_DE must not write "0,1" nor fail on "0.1"). */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

sresid_status sresid__meta_get(const sresid_model *m, const char *path, const char *key,
                               const char **out)
{
    if (sresid_model_metadata_get(m, key, out) != SRESID_OK)
        return sresid__fail(SRESID_ERR_METADATA, "%s: no metadata \"%s\"", path, key);
    return SRESID_OK;
}

sresid_status sresid__meta_open(const char *path, const void *out, const char *fn,
                                sresid_model **model)
{
    if (!path || !out)
        return sresid__fail(SRESID_ERR_INVALID_ARG, "%s: %s is NULL", fn, !path ? "path" : "out");
    sresid_status st = sresid_model_open(path, NULL, model);
    if (st)
        return sresid__fail(st, "%s: %s", fn, sresid_last_error());
    return SRESID_OK;
}

sresid_status sresid__meta_format(const sresid_model *m, const char *path, const char *format,
                                  const char *version_key, const char *version, const char *what)
{
    const char *v;
    if (sresid_model_metadata_get(m, "format", &v) != SRESID_OK || strcmp(v, format) != 0)
        return sresid__fail(SRESID_ERR_METADATA, "%s: not a %s (its __metadata__ has no "
                            "\"format\": \"%s\")", path, what, format);
    if (sresid_model_metadata_get(m, version_key, &v) != SRESID_OK)
        return sresid__fail(SRESID_ERR_METADATA, "%s: no metadata \"%s\" (want \"%s\")", path,
                            version_key, version);
    if (strcmp(v, version) != 0)
        return sresid__fail(SRESID_ERR_METADATA, "%s: %s %s \"%s\" is not supported (this "
                            "library reads %s)", path, what, version_key, v, version);
    return SRESID_OK;
}

bool sresid__parse_u64(const char *s, uint64_t *out)
{
    if (!*s || (s[0] == '0' && s[1]))
        return false;
    uint64_t v = 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9' || !sresid__mul_u64(v, 10, &v) ||
            !sresid__add_u64(v, (uint64_t)(*s - '0'), &v))
            return false;
    *out = v;
    return true;
}

sresid_status sresid__meta_u64(const sresid_model *m, const char *path, const char *key,
                               uint64_t max, uint64_t *out)
{
    const char *s;
    sresid_status st = sresid__meta_get(m, path, key, &s);
    if (st)
        return st;
    uint64_t v;
    if (!sresid__parse_u64(s, &v) || v > max)
        return sresid__fail(SRESID_ERR_METADATA,
                            "%s: metadata \"%s\" is \"%s\", not a decimal count up to %llu", path,
                            key, s, (unsigned long long)max);
    *out = v;
    return SRESID_OK;
}

/* The C locale for numbers on the calling thread, for one conversion. */
typedef struct c_numeric {
    locale_t c, old;
} c_numeric;

static bool c_numeric_enter(c_numeric *cn)
{
    cn->c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!cn->c)
        return false;
    cn->old = uselocale(cn->c);
    return true;
}

static void c_numeric_leave(c_numeric *cn)
{
    uselocale(cn->old);
    freelocale(cn->c);
}

sresid_status sresid__meta_f64(const sresid_model *m, const char *path, const char *key,
                               bool allow_nan, double *out)
{
    const char *s;
    sresid_status st = sresid__meta_get(m, path, key, &s);
    if (st)
        return st;
    c_numeric cn;
    if (!c_numeric_enter(&cn))
        return sresid__fail(SRESID_ERR_NOMEM, "%s: no memory for the C locale", path);
    char *end;
    double v = strtod(s, &end);
    c_numeric_leave(&cn);
    if (!*s || *end || isinf(v) || (isnan(v) && !allow_nan))
        return sresid__fail(SRESID_ERR_METADATA, "%s: metadata \"%s\" is \"%s\", not a %snumber",
                            path, key, s, allow_nan ? "" : "finite ");
    *out = v;
    return SRESID_OK;
}

bool sresid__fmt_f64(char buf[32], double x)
{
    c_numeric cn;
    if (!c_numeric_enter(&cn))
        return false;
    snprintf(buf, 32, "%.17g", x);
    c_numeric_leave(&cn);
    return true;
}
