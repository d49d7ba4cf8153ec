/* Reference forward pass of the demo's model in double precision. */
#ifndef DEMO_REF_GPT_H
#define DEMO_REF_GPT_H

#include <stddef.h>
#include <stdint.h>

/* Offsets of the tensors in the parameter vector, found by name (so a
 * layout bug in gpt.c shows up as a wrong name, not a silent agreement). */
typedef struct ref_layout {
    int vocab, dim, layers, heads, context;
    size_t tok, pos, lnf, head;
    size_t layer[16][8]; /* ln1 q k v o ln2 up down */
} ref_layout;

/* Summed cross-entropy over batch * context positions. */
double ref_gpt_loss(const ref_layout *lay, const double *params, const uint8_t *x,
                    const uint8_t *y, int batch);

#endif
