/* Corpus loading and the split. The bundled Jargon File is split at its
 * sections: the Lexicon (dictionary entries, ":headword: n." followed by
 * definitions full of {cross-references}) is the pre-training part; the
 * front matter (chapters on hacker culture) and the appendices (folklore
 * essays), running prose, are the task part. Any other text is split by
 * share: the first 70 % pre-training, the rest the task. Inside each part,
 * every tenth block goes to validation, so the held-out text has the same
 * style as the part's training text. */
#include "corpus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAL_EVERY 10   /* block i goes to validation when i % VAL_EVERY == VAL_EVERY - 1 */
#define BLOCK 2048     /* bytes per block in a part of at least 20 blocks */

uint64_t demo_hash(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static const uint8_t *find(const uint8_t *hay, size_t n, const char *needle, size_t from)
{
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= n; i++)
        if (hay[i] == (uint8_t)needle[0] && memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* Blocks of one part (its ids, concatenated from up to two pieces) into
 * train and validation spans. */
static int split_part(const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                      demo_span *train, demo_span *val)
{
    size_t n = na + nb;
    size_t block = n >= (size_t)(2 * VAL_EVERY) * BLOCK ? BLOCK : n / (2 * VAL_EVERY);
    if (block == 0)
        block = 1;
    train->ids = malloc(n + 1);
    val->ids = malloc(n + 1);
    if (!train->ids || !val->ids)
        return -1;
    train->len = val->len = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t t = i < na ? a[i] : b[i - na];
        demo_span *to = (i / block) % VAL_EVERY == VAL_EVERY - 1 ? val : train;
        to->ids[to->len++] = t;
    }
    return 0;
}

int demo_corpus_from_bytes(const uint8_t *text, size_t len, const char *what, int context,
                           demo_corpus *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (len == 0) {
        snprintf(err, errlen, "corpus %s is empty", what);
        return -1;
    }
    c->bytes = len;
    c->hash = demo_hash(text, len);
    int id_of[256];
    int seen[256] = {0};
    for (size_t i = 0; i < len; i++)
        seen[text[i]] = 1;
    for (int b = 0; b < 256; b++)
        if (seen[b]) {
            id_of[b] = c->vocab;
            c->byte_of[c->vocab++] = (uint8_t)b;
        }
    if (c->vocab < 2) {
        snprintf(err, errlen, "corpus %s holds a single distinct byte: nothing to learn", what);
        return -1;
    }
    uint8_t *ids = malloc(len);
    if (!ids) {
        snprintf(err, errlen, "out of memory reading corpus %s", what);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        ids[i] = (uint8_t)id_of[text[i]];

    /* The Jargon File's Lexicon starts at a line "Glossary" and ends at the
     * first appendix heading after it. */
    const uint8_t *g = find(text, len, "\nGlossary\n", 0);
    const uint8_t *app = g ? find(text, len, "\nAppendix", (size_t)(g - text) + 1) : NULL;
    int rc;
    if (g && app) {
        size_t lo = (size_t)(g - text) + 1, hi = (size_t)(app - text) + 1;
        c->by_sections = 1;
        c->pre_bytes = hi - lo;
        c->task_bytes = len - c->pre_bytes;
        rc = split_part(ids + lo, hi - lo, NULL, 0, &c->pre_train, &c->pre_val);
        if (rc == 0)
            rc = split_part(ids, lo, ids + hi, len - hi, &c->task_train, &c->task_val);
    } else {
        size_t cut = (size_t)((double)len * 0.7);
        c->pre_bytes = cut;
        c->task_bytes = len - cut;
        rc = split_part(ids, cut, NULL, 0, &c->pre_train, &c->pre_val);
        if (rc == 0)
            rc = split_part(ids + cut, len - cut, NULL, 0, &c->task_train, &c->task_val);
    }
    free(ids);
    if (rc) {
        demo_corpus_free(c);
        snprintf(err, errlen, "out of memory reading corpus %s", what);
        return -1;
    }
    const struct {
        const demo_span *s;
        const char *name;
    } parts[] = {{&c->pre_train, "pre-training text"},
                 {&c->pre_val, "pre-training validation slice"},
                 {&c->task_train, "task text"},
                 {&c->task_val, "task validation slice"}};
    for (size_t i = 0; i < 4; i++)
        if (parts[i].s->len < (size_t)context + 1) {
            snprintf(err, errlen,
                     "corpus %s is too short for a context of %d: its %s has %zu bytes, "
                     "need at least %d (a text of about %zu bytes or more would do)",
                     what, context, parts[i].name, parts[i].s->len, context + 1,
                     (size_t)(context + 1) * 2 * VAL_EVERY * 4);
            demo_corpus_free(c);
            return -1;
        }
    return 0;
}

int demo_corpus_load(const char *path, int context, demo_corpus *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read corpus %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *text = malloc(cap);
    for (;;) {
        if (!text) {
            fclose(f);
            snprintf(err, errlen, "out of memory reading corpus %s", path);
            return -1;
        }
        n += fread(text + n, 1, cap - n, f);
        if (n < cap)
            break;
        uint8_t *more = cap > SIZE_MAX / 2 ? NULL : realloc(text, cap * 2);
        if (!more)
            free(text);
        text = more;
        cap *= 2;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(text);
        snprintf(err, errlen, "cannot read corpus %s: %s", path, strerror(e));
        return -1;
    }
    int rc = demo_corpus_from_bytes(text, n, path, context, c, err, errlen);
    free(text);
    return rc;
}

void demo_corpus_free(demo_corpus *c)
{
    free(c->pre_train.ids);
    free(c->pre_val.ids);
    free(c->task_train.ids);
    free(c->task_val.ids);
    memset(c, 0, sizeof *c);
}
