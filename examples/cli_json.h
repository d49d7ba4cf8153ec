/* JSON helpers shared by the example programs (Jansson); not part of the
 * library. */
#ifndef SR_CLI_JSON_H
#define SR_CLI_JSON_H

#include <jansson.h>

/* Builders that need no check at each call: a failure (out of memory, a NULL
 * object or value) is remembered and reported by sr_cli_json_dump. */

/* json_object_set_new / json_array_append_new: take v, even on failure. */
void sr_cli_jset(json_t *obj, const char *key, json_t *v);
void sr_cli_jpush(json_t *arr, json_t *v);

/* A real, or null for NaN and Inf (JSON has neither). */
json_t *sr_cli_jnum(double x);

/* A string, or null for NULL; when s is not valid UTF-8 (a path from the
 * command line may not be), its bytes >= 0x80 become '?'. */
json_t *sr_cli_jstr(const char *s);

/* The text of root (json_dumps with flags), then root is released; prints
 * "prog: out of memory" and exits 1 when that or any builder above failed. */
char *sr_cli_json_dump(const char *prog, json_t *root, size_t flags);

/* A new document: an object whose first keys are "format" (a stable name of
 * the document's kind, "sparseresid-...") and "format_version" (an integer
 * raised when a key changes meaning or goes away). */
json_t *sr_cli_json_doc(const char *format, int version);

/* Dump root (as sr_cli_json_dump) to path whole, or to stdout for "-", with
 * a newline; on failure print "prog: cannot write PATH: REASON" and exit 1. */
void sr_cli_json_write(const char *prog, const char *path, json_t *root, size_t flags);

#endif /* SR_CLI_JSON_H */
