/* Content hashes of tensors: XXH3-128 (libxxhash) of the stored bytes, so
 * that a delta or an amplitude state can refuse a base it was not made for.
 * Read in bounded chunks: a tensor is never loaded whole for hashing. */
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "model/model.h"

#define CHUNK ((size_t)4 << 20)

sresid_status sresid__tensor_hash(const sresid_model *m, size_t index, char hex[33])
{
    const sresid__tensor *t = &m->tensors[index];
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return sresid__fail(SRESID_ERR_NOMEM, "hash: out of memory");
    XXH3_128bits_reset(st);
    sresid_status rc = SRESID_OK;
    if (t->file < 0 || (m->flags & SRESID_OPEN_KEEP_PAGES)) {
        /* in memory or mapped and resident: hash in place */
        if (t->nbytes && t->data)
            XXH3_128bits_update(st, t->data, (size_t)t->nbytes);
    } else {
        size_t cap = t->nbytes < CHUNK ? (size_t)t->nbytes : CHUNK;
        unsigned char *buf = cap ? malloc(cap) : NULL;
        if (cap && !buf) {
            XXH3_freeState(st);
            return sresid__fail(SRESID_ERR_NOMEM, "hash: out of memory for '%s'", t->name);
        }
        for (uint64_t off = 0; off < t->nbytes && rc == SRESID_OK; off += cap) {
            size_t len = t->nbytes - off < cap ? (size_t)(t->nbytes - off) : cap;
            rc = sresid__tensor_bytes(m, t, off, buf, len);
            if (rc == SRESID_OK)
                XXH3_128bits_update(st, buf, len);
        }
        free(buf);
    }
    if (rc == SRESID_OK) {
        XXH128_hash_t h = XXH3_128bits_digest(st);
        snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h.high64,
                 (unsigned long long)h.low64);
    }
    XXH3_freeState(st);
    return rc;
}
