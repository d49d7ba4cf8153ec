/* Malformed safetensors files: every one must fail with its own status, leave
 * the out-parameter alone and say which file (and which tensor) is at fault.
 * Plus the valid edge cases a strict reader must still accept. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

Suite *suite_malformed(void);

/* A value no allocator returns: out-parameters must keep it on failure. */
static int sentinel_storage;
#define SENTINEL ((sresid_model *)(void *)&sentinel_storage)

/* One tensor entry of a header, from string literals. */
#define T(name, dtype, shape, begin, end)                                              \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" begin \
    "," end "]}"

/* How a case's file is made. */
enum {
    MK_ST,      /* 8-byte length of text, text, data_len zero bytes */
    MK_LEN,     /* declared length (whatever it is), text, data_len zero bytes */
    MK_RAW,     /* text bytes only */
    MK_SPARSE,  /* declared length, then a sparse file of 8 + declared + 8 bytes */
    MK_DIR,     /* a directory with no safetensors file in it */
    MK_NOTDIR,  /* a path below a regular file */
    MK_MISSING, /* a path that does not exist */
};

typedef struct bad_case {
    const char *label;
    int how;
    const char *text;  /* header text or raw bytes */
    size_t text_len;   /* 0: strlen(text) */
    uint64_t declared; /* MK_LEN, MK_SPARSE */
    size_t data_len;
    sresid_status want;
    const char *who;   /* tensor or key the message must name, or NULL */
    const char *who2;  /* ... or this one instead (two-tensor problems) */
} bad_case;

#define ST(label, text, data, want, who) \
    { label, MK_ST, text, 0, 0, data, want, who, NULL }
#define ST2(label, text, data, want, who, who2) \
    { label, MK_ST, text, 0, 0, data, want, who, who2 }

static const bad_case bad_cases[] = {
    /* ---- the 8-byte length prefix ---- */
    { "hdr_empty_file", MK_RAW, "", 0, 0, 0, SRESID_ERR_HEADER, NULL, NULL },
    { "hdr_one_byte", MK_RAW, "\x02", 1, 0, 0, SRESID_ERR_HEADER, NULL, NULL },
    { "hdr_seven_bytes", MK_RAW, "\x02\0\0\0\0\0\0", 7, 0, 0, SRESID_ERR_HEADER, NULL, NULL },
    { "hdr_over_limit", MK_LEN, "{}", 0, 100000001ull, 0, SRESID_ERR_HEADER, NULL, NULL },
    /* Over the limit although the file really is that long: the limit itself must hold. */
    { "hdr_over_limit_sparse", MK_SPARSE, NULL, 0, 100000001ull, 0, SRESID_ERR_HEADER, NULL,
      NULL },
    { "hdr_len_2p63", MK_LEN, "{}", 0, 1ull << 63, 0, SRESID_ERR_HEADER, NULL, NULL },
    { "hdr_len_u64max", MK_LEN, "{}", 0, UINT64_MAX, 0, SRESID_ERR_HEADER, NULL, NULL },
    { "hdr_past_eof", MK_LEN, "{" T("w", "F32", "[1]", "0", "4") "}", 0, 100, 4,
      SRESID_ERR_HEADER, NULL, NULL },
    { "hdr_past_eof_by_one", MK_LEN, "{}", 0, 3, 0, SRESID_ERR_HEADER, NULL, NULL },

    /* ---- the header text is not a JSON object ---- */
    { "json_len_zero", MK_LEN, "", 0, 0, 0, SRESID_ERR_JSON, NULL, NULL },
    ST("json_not_json", "hello, world", 0, SRESID_ERR_JSON, NULL),
    ST("json_array", "[1,2,3]", 0, SRESID_ERR_JSON, NULL),
    ST("json_number", "42", 0, SRESID_ERR_JSON, NULL),
    ST("json_null", "null", 0, SRESID_ERR_JSON, NULL),
    ST("json_string", "\"F32\"", 0, SRESID_ERR_JSON, NULL),
    ST("json_cut_short", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]", 0, SRESID_ERR_JSON, NULL),
    ST("json_trailing_garbage", "{" T("w", "F32", "[1]", "0", "4") "} xyz", 4, SRESID_ERR_JSON,
       NULL),
    ST("json_two_objects", "{} {}", 0, SRESID_ERR_JSON, NULL),
    ST("json_utf8_c3_28", "{\"bad\xC3\x28" "name\":{\"dtype\":\"U8\",\"shape\":[1],"
       "\"data_offsets\":[0,1]}}", 1, SRESID_ERR_JSON, NULL),
    ST("json_utf8_overlong", "{\"bad\xC0\x80" "name\":{\"dtype\":\"U8\",\"shape\":[1],"
       "\"data_offsets\":[0,1]}}", 1, SRESID_ERR_JSON, NULL),
    ST("json_utf8_surrogate", "{\"bad\xED\xA0\x80" "name\":{\"dtype\":\"U8\",\"shape\":[1],"
       "\"data_offsets\":[0,1]}}", 1, SRESID_ERR_JSON, NULL),
    ST("json_utf8_in_metadata", "{\"__metadata__\":{\"k\":\"v\xC3\x28" "v\"}}", 0,
       SRESID_ERR_JSON, NULL),
    ST("json_escaped_surrogate", "{\"bad\\uD800" "name\":{\"dtype\":\"U8\",\"shape\":[1],"
       "\"data_offsets\":[0,1]}}", 1, SRESID_ERR_JSON, NULL),
    /* A name with NUL in it cannot be a C string. */
    ST("json_escaped_nul", "{\"bad\\u0000" "name\":{\"dtype\":\"U8\",\"shape\":[1],"
       "\"data_offsets\":[0,1]}}", 1, SRESID_ERR_JSON, NULL),
    { "json_nul_in_string", MK_ST,
      "{\"ab\0cd\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
      sizeof "{\"ab\0cd\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}" - 1, 0, 1,
      SRESID_ERR_JSON, NULL, NULL },
    /* NUL right after the object: a reader treating the header as a C string accepts it. */
    { "json_nul_after_object", MK_ST, "{" T("w", "F32", "[1]", "0", "4") "}\0   ",
      sizeof("{" T("w", "F32", "[1]", "0", "4") "}\0   ") - 1, 0, 4, SRESID_ERR_JSON, NULL,
      NULL },
    ST("json_entry_number", "{\"entry.num\":5}", 0, SRESID_ERR_JSON, "entry.num"),
    ST("json_entry_array", "{\"entry.arr\":[\"F32\",[1],[0,4]]}", 4, SRESID_ERR_JSON,
       "entry.arr"),
    ST("json_missing_dtype", "{\"no.dtype\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
       SRESID_ERR_JSON, "no.dtype"),
    ST("json_missing_shape", "{\"no.shape\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
       SRESID_ERR_JSON, "no.shape"),
    ST("json_missing_offsets", "{\"no.offsets\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
       SRESID_ERR_JSON, "no.offsets"),
    ST("json_dtype_number",
       "{\"num.dtype\":{\"dtype\":12,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
       SRESID_ERR_JSON, "num.dtype"),
    ST("json_shape_number", "{\"shape.num\":{\"dtype\":\"F32\",\"shape\":4,"
       "\"data_offsets\":[0,16]}}", 16, SRESID_ERR_JSON, "shape.num"),
    ST("json_shape_string", "{\"shape.str\":{\"dtype\":\"F32\",\"shape\":\"[4]\","
       "\"data_offsets\":[0,16]}}", 16, SRESID_ERR_JSON, "shape.str"),

    /* ---- dtype ---- */
    ST("dtype_unknown", "{" T("dt.f33", "F33", "[1]", "0", "4") "}", 4, SRESID_ERR_DTYPE,
       "dt.f33"),
    ST("dtype_lowercase", "{" T("dt.lower", "f32", "[1]", "0", "4") "}", 4, SRESID_ERR_DTYPE,
       "dt.lower"),
    ST("dtype_empty", "{" T("dt.empty", "", "[1]", "0", "4") "}", 4, SRESID_ERR_DTYPE,
       "dt.empty"),

    /* ---- shape elements ---- */
    ST("shape_negative", "{" T("sh.neg", "F32", "[-1]", "0", "4") "}", 4, SRESID_ERR_SHAPE,
       "sh.neg"),
    ST("shape_negative_inner", "{" T("sh.neg2", "F32", "[2,-3,4]", "0", "4") "}", 4,
       SRESID_ERR_SHAPE, "sh.neg2"),
    ST("shape_fraction", "{" T("sh.frac", "F32", "[2.5]", "0", "10") "}", 10,
       SRESID_ERR_SHAPE, "sh.frac"),
    ST("shape_string_elem", "{" T("sh.str", "F32", "[\"2\"]", "0", "8") "}", 8,
       SRESID_ERR_SHAPE, "sh.str"),
    ST("shape_null_elem", "{" T("sh.null", "F32", "[null]", "0", "4") "}", 4,
       SRESID_ERR_SHAPE, "sh.null"),
    ST("shape_overflow", "{" T("sh.big", "U8", "[4294967296,4294967296,4294967296]", "0", "4")
       "}", 4, SRESID_ERR_SHAPE, "sh.big"),

    /* ---- data_offsets ---- */
    ST("off_three", "{\"off.three\":{\"dtype\":\"F32\",\"shape\":[1],"
       "\"data_offsets\":[0,4,8]}}", 4, SRESID_ERR_OFFSETS, "off.three"),
    ST("off_one", "{\"off.one\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
       SRESID_ERR_OFFSETS, "off.one"),
    ST("off_negative", "{" T("off.neg", "F32", "[1]", "-4", "0") "}", 4, SRESID_ERR_OFFSETS,
       "off.neg"),
    ST("off_reversed", "{" T("off.rev", "F32", "[1]", "4", "0") "}", 4, SRESID_ERR_OFFSETS,
       "off.rev"),
    ST2("off_hole", "{" T("hole.a", "F32", "[1]", "0", "4") "," T("hole.b", "F32", "[1]", "8",
        "12") "}", 12, SRESID_ERR_OFFSETS, "hole.b", "hole.a"),
    ST2("off_overlap", "{" T("ovl.a", "F32", "[2]", "0", "8") "," T("ovl.b", "F32", "[2]", "4",
        "12") "}", 12, SRESID_ERR_OFFSETS, "ovl.b", "ovl.a"),
    ST2("off_alias", "{" T("alias.a", "F32", "[2]", "0", "8") "," T("alias.b", "F32", "[2]",
        "0", "8") "}", 8, SRESID_ERR_OFFSETS, "alias.b", "alias.a"),
    ST("off_trailing_bytes", "{" T("trail.a", "F32", "[2]", "0", "8") "}", 12,
       SRESID_ERR_OFFSETS, NULL),
    ST("off_not_at_zero", "{" T("late.a", "F32", "[2]", "4", "12") "}", 12, SRESID_ERR_OFFSETS,
       "late.a"),
    ST("off_size_mismatch", "{" T("size.a", "F32", "[3]", "0", "8") "}", 8, SRESID_ERR_OFFSETS,
       "size.a"),
    ST("off_size_dtype", "{" T("size.f64", "F64", "[2]", "0", "8") "}", 8, SRESID_ERR_OFFSETS,
       "size.f64"),
    ST("off_over_2p63", "{" T("huge.a", "F32", "[2]", "0", "9223372036854775816") "}", 8,
       SRESID_ERR_OVERFLOW, NULL),
    ST("off_u64_max", "{" T("huge.b", "F32", "[2]", "18446744073709551607",
       "18446744073709551615") "}", 8, SRESID_ERR_OVERFLOW, NULL),

    /* ---- the data section ends before the last offset ---- */
    ST("trunc_data", "{" T("tr.a", "F32", "[4]", "0", "16") "}", 8, SRESID_ERR_TRUNCATED,
       NULL),
    ST("trunc_no_data", "{" T("tr.a", "F32", "[1]", "0", "4") "," T("tr.b", "F32", "[2]", "4",
       "12") "}", 0, SRESID_ERR_TRUNCATED, NULL),

    /* ---- names ---- */
    ST("dup_names", "{" T("dup.a", "F32", "[1]", "0", "4") "," T("dup.a", "F32", "[1]", "4",
       "8") "}", 8, SRESID_ERR_DUPLICATE, "dup.a"),
    /* Same name once the escape is decoded; the message may quote either spelling. */
    ST2("dup_escaped", "{" T("dup.b", "F32", "[1]", "0", "4") "," T("dup.\\u0062", "F32",
        "[1]", "4", "8") "}", 8, SRESID_ERR_DUPLICATE, "dup.b", "dup.\\u0062"),

    /* ---- __metadata__ ---- */
    ST("meta_string", "{\"__metadata__\":\"x\"}", 0, SRESID_ERR_METADATA, NULL),
    ST("meta_array", "{\"__metadata__\":[\"a\",\"b\"]}", 0, SRESID_ERR_METADATA, NULL),
    ST("meta_value_number", "{\"__metadata__\":{\"ok\":\"1\",\"k.num\":1}}", 0,
       SRESID_ERR_METADATA, "k.num"),
    ST("meta_value_null", "{\"__metadata__\":{\"k.null\":null}}", 0, SRESID_ERR_METADATA,
       "k.null"),
    ST("meta_value_object", "{\"__metadata__\":{\"k.obj\":{\"a\":\"b\"}}," T("w", "F32", "[1]",
       "0", "4") "}", 4, SRESID_ERR_METADATA, "k.obj"),
    ST("meta_value_bool", "{\"__metadata__\":{\"k.bool\":true}}", 0, SRESID_ERR_METADATA,
       "k.bool"),

    /* ---- paths ---- */
    { "dir_without_safetensors", MK_DIR, NULL, 0, 0, 0, SRESID_ERR_NOT_FOUND, NULL, NULL },
    { "path_below_a_file", MK_NOTDIR, NULL, 0, 0, 0, SRESID_ERR_IO, NULL, NULL },
    { "path_missing", MK_MISSING, NULL, 0, 0, 0, SRESID_ERR_IO, NULL, NULL },
};

#define N_BAD_CASES ((int)(sizeof bad_cases / sizeof bad_cases[0]))

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* 8-byte length, text, then data_len bytes of a fixed pattern. */
static int write_with_length(const char *path, uint64_t declared, const char *text,
                             size_t text_len, size_t data_len)
{
    size_t total = 8 + text_len + data_len;
    unsigned char *buf = malloc(total);
    if (!buf)
        return -1;
    put_u64le(buf, declared);
    if (text_len)
        memcpy(buf + 8, text, text_len);
    memset(buf + 8 + text_len, 0, data_len);
    int rc = tu_write_file(path, buf, total);
    free(buf);
    return rc;
}

static int write_sparse(const char *path, uint64_t declared)
{
    unsigned char len[8];
    put_u64le(len, declared);
    if (tu_write_file(path, len, sizeof len) != 0)
        return -1;
    /* The header region is a hole: no disk or RAM is spent on it. */
    return truncate(path, (off_t)(8 + declared + 8));
}

/* Makes the case's file; returns its path (static buffer) or NULL. */
static const char *make_case(const bad_case *c)
{
    static char path[8192];
    size_t len = c->text ? (c->text_len ? c->text_len : strlen(c->text)) : 0;
    int rc = 0;

    snprintf(path, sizeof path, "%s/%s.safetensors", tu_tmpdir(), c->label);
    switch (c->how) {
    case MK_ST:
        rc = write_with_length(path, len, c->text, len, c->data_len);
        break;
    case MK_LEN:
        rc = write_with_length(path, c->declared, c->text, len, c->data_len);
        break;
    case MK_RAW:
        rc = tu_write_file(path, c->text, len);
        break;
    case MK_SPARSE:
        rc = write_sparse(path, c->declared);
        break;
    case MK_DIR: {
        char other[8300];
        snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), c->label);
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return NULL;
        /* Something that is not a checkpoint, so the directory is not empty. */
        snprintf(other, sizeof other, "%s/README.txt", path);
        rc = tu_write_file(other, "not a checkpoint\n", 17);
        break;
    }
    case MK_NOTDIR: {
        char file[4200];
        snprintf(file, sizeof file, "%s/plain-file", tu_tmpdir());
        rc = tu_write_file(file, "x", 1);
        snprintf(path, sizeof path, "%s/model.safetensors", file);
        break;
    }
    case MK_MISSING:
        snprintf(path, sizeof path, "%s/no-such-dir/%s.safetensors", tu_tmpdir(), c->label);
        break;
    default:
        return NULL;
    }
    return rc == 0 ? path : NULL;
}

/* Leave a last-error message that cannot contain any case's path, so the
 * checks below see the message of the call under test. */
static void prime_last_error(void)
{
    sresid_model *m = SENTINEL;
    ck_assert_status(sresid_model_open(NULL, NULL, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_eq(m, SENTINEL);
}

START_TEST(test_bad_file)
{
    const bad_case *c = &bad_cases[_i];
    const char *path = make_case(c);
    ck_assert_msg(path != NULL, "%s: could not create the test file", c->label);

    prime_last_error();
    sresid_model *m = SENTINEL;
    sresid_status st = sresid_model_open(path, NULL, &m);
    const char *msg = sresid_last_error();
    ck_assert_msg(st == c->want, "%s: got status %d (%s), want %d (%s); last error: %s",
                  c->label, (int)st, sresid_strerror(st), (int)c->want,
                  sresid_strerror(c->want), msg);
    ck_assert_msg(m == SENTINEL, "%s: out-parameter changed on failure", c->label);
    ck_assert_msg(msg != NULL && msg[0] != '\0', "%s: empty last error", c->label);
    const char *at = strstr(msg, path);
    ck_assert_msg(at != NULL, "%s: last error does not name the file: %s", c->label, msg);
    /* Twice means a message wrapped in itself: one clear line names it once. */
    ck_assert_msg(strstr(at + 1, path) == NULL, "%s: last error names the file twice: %s",
                  c->label, msg);
    if (c->who) {
        int named = strstr(msg, c->who) != NULL || (c->who2 && strstr(msg, c->who2) != NULL);
        ck_assert_msg(named, "%s: last error does not name '%s'%s%s: %s", c->label, c->who,
                      c->who2 ? " or " : "", c->who2 ? c->who2 : "", msg);
    }
}
END_TEST

/* ---- valid edge cases ---- */

static sresid_model *open_ok(const char *path)
{
    sresid_model *m = NULL;
    ck_assert_ok(sresid_model_open(path, NULL, &m));
    ck_assert_ptr_nonnull(m);
    return m;
}

static void info_of(const sresid_model *m, const char *name, sresid_tensor_info *info)
{
    size_t idx = SIZE_MAX;
    ck_assert_ok(sresid_model_find(m, name, &idx));
    memset(info, 0, sizeof *info);
    info->size = sizeof *info;
    ck_assert_ok(sresid_model_tensor_info(m, idx, info));
    ck_assert_str_eq(info->name, name);
}

static float read_one(const sresid_model *m, const char *name, size_t at, size_t count)
{
    size_t idx = SIZE_MAX;
    float buf[16];
    ck_assert_uint_le(count, 16);
    ck_assert_ok(sresid_model_find(m, name, &idx));
    ck_assert_ok(sresid_model_read_f32(m, idx, buf, count));
    return buf[at];
}

/* Whitespace around the object, as JSON allows and the reference writer pads. */
START_TEST(test_valid_whitespace)
{
    const char *hdr = "\n \t{" T("w", "F32", "[2]", "0", "8") "}\r\n    ";
    const float data[2] = { 1.5f, -2.0f };
    const char *path = tu_path("valid_ws.safetensors");
    ck_assert_int_eq(tu_write_st(path, hdr, data, sizeof data), 0);
    sresid_model *m = open_ok(path);
    ck_assert_uint_eq(sresid_model_tensor_count(m), 1);
    ck_assert_float_eq(read_one(m, "w", 0, 2), 1.5f);
    ck_assert_float_eq(read_one(m, "w", 1, 2), -2.0f);
    sresid_model_free(m);
}
END_TEST

/* Header padded with spaces to a multiple of 8, exactly as the reference writer does. */
START_TEST(test_valid_reference_padding)
{
    char hdr[128];
    const char *obj = "{" T("p", "F32", "[1]", "0", "4") "}";
    size_t n = strlen(obj);
    memcpy(hdr, obj, n);
    while (n % 8)
        hdr[n++] = ' ';
    hdr[n] = '\0';
    const float v = 7.0f;
    const char *path = tu_path("valid_pad.safetensors");
    ck_assert_int_eq(tu_write_st(path, hdr, &v, sizeof v), 0);
    sresid_model *m = open_ok(path);
    ck_assert_float_eq(read_one(m, "p", 0, 1), 7.0f);
    sresid_model_free(m);
}
END_TEST

START_TEST(test_valid_rank0)
{
    const float v = 3.25f;
    const char *path = tu_path("valid_rank0.safetensors");
    ck_assert_int_eq(tu_write_st(path, "{" T("s", "F32", "[]", "0", "4") "}", &v, sizeof v), 0);
    sresid_model *m = open_ok(path);
    sresid_tensor_info info;
    info_of(m, "s", &info);
    ck_assert_int_eq(info.ndim, 0);
    ck_assert_ptr_null(info.shape);
    ck_assert_int_eq(info.numel, 1);
    ck_assert_uint_eq(info.nbytes, 4);
    ck_assert_int_eq(info.rows, 1);
    ck_assert_int_eq(info.cols, 1);
    ck_assert_float_eq(read_one(m, "s", 0, 1), 3.25f);
    sresid_model_free(m);
}
END_TEST

/* Empty tensors take no bytes: [k,k] ranges neither alias nor leave holes. */
START_TEST(test_valid_zero_elements)
{
    const char *hdr = "{" T("a", "F32", "[2]", "0", "8") "," T("z0", "F32", "[0]", "8", "8") ","
                      T("z1", "F32", "[3,0]", "8", "8") "," T("b", "F32", "[1]", "8", "12") ","
                      T("z2", "F32", "[0]", "12", "12") "}";
    const float data[3] = { 1.0f, 2.0f, -4.0f };
    const char *path = tu_path("valid_zero.safetensors");
    ck_assert_int_eq(tu_write_st(path, hdr, data, sizeof data), 0);
    sresid_model *m = open_ok(path);
    ck_assert_uint_eq(sresid_model_tensor_count(m), 5);

    sresid_tensor_info info;
    info_of(m, "z0", &info);
    ck_assert_int_eq(info.ndim, 1);
    ck_assert_int_eq(info.numel, 0);
    ck_assert_uint_eq(info.nbytes, 0);
    ck_assert_ptr_null(info.data);
    info_of(m, "z1", &info);
    ck_assert_int_eq(info.ndim, 2);
    ck_assert_int_eq(info.shape[0], 3);
    ck_assert_int_eq(info.shape[1], 0);
    ck_assert_int_eq(info.numel, 0);
    ck_assert_uint_eq(info.nbytes, 0);

    float dummy = 123.0f;
    size_t idx;
    ck_assert_ok(sresid_model_find(m, "z1", &idx));
    ck_assert_ok(sresid_model_read_f32(m, idx, &dummy, 0));
    ck_assert_float_eq(dummy, 123.0f);
    ck_assert_float_eq(read_one(m, "a", 1, 2), 2.0f);
    ck_assert_float_eq(read_one(m, "b", 0, 1), -4.0f);
    sresid_model_free(m);
}
END_TEST

/* Data that starts at an odd address must still read right (no aligned loads). */
START_TEST(test_valid_unaligned)
{
    const char *obj = "{" T("f32", "F32", "[3]", "0", "12") "," T("f64", "F64", "[1]", "12", "20")
                      "," T("f16", "F16", "[2]", "20", "24") "," T("bf", "BF16", "[1]", "24", "26")
                      "}";
    /* Pad so the data starts 3 bytes past an 8-byte boundary. */
    char hdr[256];
    size_t n = strlen(obj);
    ck_assert_uint_lt(n + 8, sizeof hdr);
    memcpy(hdr, obj, n);
    while ((8 + n) % 8 != 3)
        hdr[n++] = ' ';
    hdr[n] = '\0';

    unsigned char data[26];
    const float f[3] = { 1.5f, -2.25f, 3.0e-3f };
    const double d = 0.1;
    memcpy(data, f, sizeof f);
    memcpy(data + 12, &d, sizeof d);
    /* F16 1.0 = 0x3C00, -2.0 = 0xC000; BF16 1.0 = 0x3F80 (little-endian). */
    const unsigned char half[6] = { 0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F };
    memcpy(data + 20, half, sizeof half);

    const char *path = tu_path("valid_unaligned.safetensors");
    ck_assert_int_eq(tu_write_st(path, hdr, data, sizeof data), 0);
    sresid_model *m = open_ok(path);
    ck_assert_float_eq(read_one(m, "f32", 0, 3), 1.5f);
    ck_assert_float_eq(read_one(m, "f32", 1, 3), -2.25f);
    ck_assert_float_eq(read_one(m, "f32", 2, 3), 3.0e-3f);
    ck_assert_float_eq(read_one(m, "f64", 0, 1), (float)0.1);
    ck_assert_float_eq(read_one(m, "f16", 0, 2), 1.0f);
    ck_assert_float_eq(read_one(m, "f16", 1, 2), -2.0f);
    ck_assert_float_eq(read_one(m, "bf", 0, 1), 1.0f);
    sresid_model_free(m);
}
END_TEST

START_TEST(test_valid_empty_header)
{
    const char *path = tu_path("valid_empty.safetensors");
    ck_assert_int_eq(tu_write_st(path, "{}", NULL, 0), 0);
    sresid_model *m = open_ok(path);
    ck_assert_uint_eq(sresid_model_tensor_count(m), 0);
    ck_assert_uint_eq(sresid_model_metadata_count(m), 0);
    sresid_model_free(m);

    path = tu_path("valid_empty_padded.safetensors");
    ck_assert_int_eq(tu_write_st(path, "{}      ", NULL, 0), 0);
    m = open_ok(path);
    ck_assert_uint_eq(sresid_model_tensor_count(m), 0);
    sresid_model_free(m);
}
END_TEST

START_TEST(test_valid_metadata_only)
{
    const char *path = tu_path("valid_meta.safetensors");
    ck_assert_int_eq(
        tu_write_st(path, "{\"__metadata__\":{\"format\":\"pt\",\"empty\":\"\"}}", NULL, 0), 0);
    sresid_model *m = open_ok(path);
    ck_assert_uint_eq(sresid_model_tensor_count(m), 0);
    ck_assert_uint_eq(sresid_model_metadata_count(m), 2);
    const char *v = NULL;
    ck_assert_ok(sresid_model_metadata_get(m, "format", &v));
    ck_assert_str_eq(v, "pt");
    ck_assert_ok(sresid_model_metadata_get(m, "empty", &v));
    ck_assert_str_eq(v, "");
    sresid_model_free(m);
}
END_TEST

/* A failed open must not poison the next one. */
START_TEST(test_valid_after_failure)
{
    const char *bad = tu_path("after_bad.safetensors");
    const char *good = tu_path("after_good.safetensors");
    const float v = 2.5f;
    ck_assert_int_eq(tu_write_st(bad, "{" T("x", "F32", "[2]", "0", "4") "}", &v, sizeof v), 0);
    ck_assert_int_eq(tu_write_st(good, "{" T("x", "F32", "[1]", "0", "4") "}", &v, sizeof v), 0);
    sresid_model *m = SENTINEL;
    ck_assert_status(sresid_model_open(bad, NULL, &m), SRESID_ERR_OFFSETS);
    ck_assert_ptr_eq(m, SENTINEL);
    m = open_ok(good);
    ck_assert_float_eq(read_one(m, "x", 0, 1), 2.5f);
    sresid_model_free(m);
}
END_TEST

/* ---- arguments ---- */

START_TEST(test_null_args)
{
    const float v = 1.0f;
    const char *path = tu_path("args.safetensors");
    ck_assert_int_eq(tu_write_st(path, "{" T("x", "F32", "[1]", "0", "4") "}", &v, sizeof v), 0);

    sresid_model *m = SENTINEL;
    ck_assert_status(sresid_model_open(NULL, NULL, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_eq(m, SENTINEL);
    ck_assert_str_ne(sresid_last_error(), "");

    ck_assert_status(sresid_model_open(path, NULL, NULL), SRESID_ERR_INVALID_ARG);
    ck_assert_str_ne(sresid_last_error(), "");
    ck_assert_status(sresid_model_open(NULL, NULL, NULL), SRESID_ERR_INVALID_ARG);

    sresid_model_free(NULL);
}
END_TEST

/* Options are checked before the file is touched. */
START_TEST(test_bad_opts)
{
    const float v = 1.0f;
    const char *path = tu_path("opts.safetensors");
    ck_assert_int_eq(tu_write_st(path, "{" T("x", "F32", "[1]", "0", "4") "}", &v, sizeof v), 0);

    sresid_model *m = SENTINEL;
    sresid_model_opts o = { .size = sizeof o, .layout = 99 };
    ck_assert_status(sresid_model_open(path, &o, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_eq(m, SENTINEL);

    /* A newer caller's larger struct: a zero tail is fine, a non-zero one is not. */
    struct {
        sresid_model_opts o;
        uint64_t future;
    } big;
    memset(&big, 0, sizeof big);
    big.o.size = sizeof big;
    m = NULL;
    ck_assert_ok(sresid_model_open(path, &big.o, &m));
    sresid_model_free(m);
    big.future = 1;
    m = SENTINEL;
    ck_assert_status(sresid_model_open(path, &big.o, &m), SRESID_ERR_INVALID_ARG);
    ck_assert_ptr_eq(m, SENTINEL);
}
END_TEST

/* Files of other formats are named as what they look like (FORMAT), not
 * refused for an absurd header length. The first bytes of each format as
 * its specification or writer puts them. */
START_TEST(test_other_formats_named)
{
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
        const char *says;
    } cases[] = {
        {"gguf", "GGUF\x03\0\0\0\x10\0\0\0\0\0\0\0", 16, "GGUF"},
        {"torch.bin", "PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                      "\x10\0\0\0archive/data.pkl", 46, "PyTorch checkpoint"},
        {"legacy.pt", "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15,
         "pickle"},
        {"w.npz", "PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                  "\x05\0\0\0w.npy", 35, ".npz"},
        {"w.npy", "\x93NUMPY\x01\0v\0{'descr': '<f4', ", 27, ".npy"},
        {"k.h5", "\x89HDF\r\n\x1a\n\0\0\0\0\0\x08\x08\0", 16, "HDF5"},
        {"m.onnx", "\x08\x07\x12\x07pytorch\x1a\x052.1.0", 18, "ONNX"},
        {"config.safetensors", "{\n  \"metadata\": {\"total_size\": 4},\n  \"weight_map\": {}\n}\n", 56,
         "JSON"},
        {"notes.txt", "These are not the weights you are looking for.\n", 47, "text file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = tu_path(cases[i].name);
        ck_assert_int_eq(tu_write_file(p, cases[i].bytes, cases[i].len), 0);
        sresid_model *m = SENTINEL;
        ck_assert_status(sresid_model_open(p, NULL, &m), SRESID_ERR_FORMAT);
        ck_assert_ptr_eq(m, SENTINEL);
        const char *msg = sresid_last_error();
        ck_assert_msg(strstr(msg, cases[i].says) && strstr(msg, "not a safetensors file") &&
                          strstr(msg, "Other formats"),
                      "%s: %s", cases[i].name, msg);
    }
    /* binary noise is not named: the header-length error stands */
    const unsigned char noise[16] = {0xff, 0xfe, 0x01, 0x99, 0xff, 0xff, 0xff, 0xff,
                                     0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
    const char *p = tu_path("noise.bin");
    ck_assert_int_eq(tu_write_file(p, noise, sizeof noise), 0);
    sresid_model *m = NULL;
    ck_assert_status(sresid_model_open(p, NULL, &m), SRESID_ERR_HEADER);
    ck_assert_str_eq(sresid_strerror(SRESID_ERR_FORMAT), "not a safetensors file");
}
END_TEST

Suite *suite_malformed(void)
{
    Suite *s = suite_create("malformed");

    TCase *bad = tcase_create("bad_files");
    tcase_add_loop_test(bad, test_bad_file, 0, N_BAD_CASES);
    tcase_add_test(bad, test_other_formats_named);
    suite_add_tcase(s, bad);

    TCase *good = tcase_create("valid_edges");
    tcase_add_test(good, test_valid_whitespace);
    tcase_add_test(good, test_valid_reference_padding);
    tcase_add_test(good, test_valid_rank0);
    tcase_add_test(good, test_valid_zero_elements);
    tcase_add_test(good, test_valid_unaligned);
    tcase_add_test(good, test_valid_empty_header);
    tcase_add_test(good, test_valid_metadata_only);
    tcase_add_test(good, test_valid_after_failure);
    suite_add_tcase(s, good);

    TCase *args = tcase_create("arguments");
    tcase_add_test(args, test_null_args);
    tcase_add_test(args, test_bad_opts);
    suite_add_tcase(s, args);
    return s;
}
