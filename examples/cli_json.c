/* JSON helpers shared by the example programs; not part of the library. */
#include "cli_json.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set by a failed builder; the document is then incomplete and not printed. */
static int failed;

void sr_cli_jset(json_t *obj, const char *key, json_t *v)
{
    if (!v || json_object_set_new(obj, key, v) != 0)
        failed = 1;
}

void sr_cli_jpush(json_t *arr, json_t *v)
{
    if (!v || json_array_append_new(arr, v) != 0)
        failed = 1;
}

json_t *sr_cli_jnum(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *sr_cli_jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_string(s);
    if (v)
        return v;
    /* Jansson refuses invalid UTF-8 as a whole: mask every byte >= 0x80 */
    char *copy = malloc(strlen(s) + 1);
    if (!copy)
        return NULL;
    strcpy(copy, s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

char *sr_cli_json_dump(const char *prog, json_t *root, size_t flags)
{
    char *text = root && !failed ? json_dumps(root, flags) : NULL;
    json_decref(root);
    if (!text) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    return text;
}

json_t *sr_cli_json_doc(const char *format, int version)
{
    json_t *doc = json_object();
    sr_cli_jset(doc, "format", json_string(format));
    sr_cli_jset(doc, "format_version", json_integer(version));
    return doc;
}

void sr_cli_json_write(const char *prog, const char *path, json_t *root, size_t flags)
{
    char *text = sr_cli_json_dump(prog, root, flags);
    if (sr_cli_write_text(path, text) != 0)
        sr_cli_fatal(prog, "cannot write %s: %s", path, strerror(errno));
    free(text);
}
