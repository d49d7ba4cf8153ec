/* Checkpoints of the demo's model as safetensors through the library, and
 * the cache that reuses them: a file is used only when its stored key (every
 * setting that shaped it) equals the key asked for. */
#ifndef DEMO_CKPT_H
#define DEMO_CKPT_H

#include <stddef.h>

#include <sparseresid/sparseresid.h>

#include "gpt.h"

/* An in-memory model whose tensors borrow params (which must outlive it),
 * under the Llama names and shapes of g. Returns 0 or -1 with err. */
int demo_model_view(const gpt *g, const float *params, sresid_model **out, char *err,
                    size_t errlen);

/* Save params with metadata "sr_demo.key" = key and "sr_demo.train_loss".
 * Written whole or not at all. Returns 0 or -1 with err. */
int demo_ckpt_save(const gpt *g, const float *params, const char *path, const char *key,
                   double train_loss, char *err, size_t errlen);

/* Load path into params when it exists and its key matches: 1 loaded, 0 no
 * usable file (missing or other key), -1 a damaged file (with err). */
int demo_ckpt_load(const gpt *g, float *params, const char *path, const char *key,
                   double *train_loss, char *err, size_t errlen);

/* mkdir -p. Returns 0 or -1 with err. */
int demo_mkdirs(const char *path, char *err, size_t errlen);

#endif /* DEMO_CKPT_H */
