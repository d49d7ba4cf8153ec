/* The harnesses' mutator. libFuzzer's own mutations rarely keep a
 * safetensors file's 8-byte header length right when they grow or shrink
 * the header, so most of them stop at the length check. Half of the
 * mutations here therefore change only the JSON header of a file and
 * rewrite its length (the data after it moves along), so that longer
 * numbers, names and metadata values reach the parsers behind it; the
 * other half are libFuzzer's, on the raw bytes, for the length check
 * itself. Linked into the harnesses only. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* Mutate the header of the safetensors file at data[off, off + len) and
 * rewrite its length; 0 when that is not a file with a non-empty header
 * inside the region. */
static size_t mutate_header(uint8_t *data, size_t size, size_t max, size_t off, size_t len)
{
    if (len < 9)
        return 0;
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = hlen << 8 | data[off + (size_t)b];
    if (hlen == 0 || hlen > len - 8)
        return 0;
    size_t start = off + 8, end = start + (size_t)hlen, rest = size - end;
    uint8_t *tail = malloc(rest ? rest : 1);
    if (!tail)
        return 0;
    memcpy(tail, data + end, rest);
    size_t n = LLVMFuzzerMutate(data + start, (size_t)hlen, max - start - rest);
    memcpy(data + start + n, tail, rest);
    free(tail);
    for (int b = 0; b < 8; b++)
        data[off + (size_t)b] = (uint8_t)((uint64_t)n >> (8 * b));
    return start + n + rest;
}

size_t fz_mutate(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    size_t n = seed % 2 ? mutate_header(data, size, max_size, 0, size) : 0;
    return n ? n : LLVMFuzzerMutate(data, size, max_size);
}

size_t fz_mutate_parts(uint8_t *data, size_t size, size_t max_size, unsigned int seed,
                       const char *sep)
{
    /* the shard after the k-th separator, k from the seed */
    size_t seplen = strlen(sep), k = seed / 2 % 4 + 1, off = 0;
    for (size_t i = 0; i < k; i++) {
        uint8_t *cut = memmem(data + off, size - off, sep, seplen);
        if (!cut)
            return LLVMFuzzerMutate(data, size, max_size);
        off = (size_t)(cut - data) + seplen;
    }
    uint8_t *next = memmem(data + off, size - off, sep, seplen);
    size_t len = next ? (size_t)(next - data) - off : size - off;
    size_t n = seed % 2 ? mutate_header(data, size, max_size, off, len) : 0;
    return n ? n : LLVMFuzzerMutate(data, size, max_size);
}
