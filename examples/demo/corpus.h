/* The demo's text: read, mapped to token ids (one per distinct byte), and
 * split into a pre-training part and a task part of another style, each
 * with a held-out validation slice. */
#ifndef DEMO_CORPUS_H
#define DEMO_CORPUS_H

#include <stddef.h>
#include <stdint.h>

typedef struct demo_span {
    uint8_t *ids; /* token ids, owned */
    size_t len;
} demo_span;

typedef struct demo_corpus {
    size_t bytes;            /* file size */
    uint64_t hash;           /* FNV-1a 64 of the file's bytes */
    int vocab;               /* distinct bytes */
    uint8_t byte_of[256];    /* id -> byte */
    int by_sections;         /* 1: split at the Jargon File's sections; 0: by share */
    size_t pre_bytes, task_bytes;
    demo_span pre_train, pre_val, task_train, task_val;
} demo_corpus;

/* Read path and split it (docs/demo.md, "Corpus"). Each of the four spans
 * must hold at least context + 1 tokens. Returns 0, or -1 with a one-line
 * message in err (empty or unreadable file, too short for the context,
 * out of memory). */
int demo_corpus_load(const char *path, int context, demo_corpus *c, char *err, size_t errlen);

/* The same from a buffer already in memory (copied). */
int demo_corpus_from_bytes(const uint8_t *text, size_t len, const char *what, int context,
                           demo_corpus *c, char *err, size_t errlen);

void demo_corpus_free(demo_corpus *c);

/* FNV-1a 64: the corpus fingerprint and the cache keys. */
uint64_t demo_hash(const void *data, size_t n);

#endif /* DEMO_CORPUS_H */
