/* Full-parameter training. A step's batch is split into two shards, each
 * run forward and backward on its own activations and gradient buffer
 * (on two threads, or one after the other), and the two gradients are
 * summed in a fixed order: the same numbers whatever the thread count. */
#include "train.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sparseresid/sparseresid.h>

#include "rng.h"

void demo_batch(const demo_span *span, int context, int batch, uint64_t seed, uint8_t *x,
                uint8_t *y)
{
    demo_rng r;
    demo_rng_seed(&r, seed);
    uint64_t starts = span->len - (size_t)context; /* len >= context + 1 */
    for (int b = 0; b < batch; b++) {
        size_t at = (size_t)demo_rng_below(&r, starts);
        memcpy(x + (size_t)b * (size_t)context, span->ids + at, (size_t)context);
        memcpy(y + (size_t)b * (size_t)context, span->ids + at + 1, (size_t)context);
    }
}

double demo_eval(const gpt *g, const float *params, gpt_work *w, int batch,
                 const demo_span *span, int max_windows)
{
    int T = g->cfg.context;
    size_t room = span->len - (size_t)T; /* window starts 0 .. room - 1 */
    size_t nw = room / (size_t)T + 1;    /* non-overlapping where there is room */
    if (nw > (size_t)max_windows)
        nw = (size_t)max_windows;
    uint8_t *x = malloc((size_t)batch * (size_t)T), *y = malloc((size_t)batch * (size_t)T);
    if (!x || !y) {
        free(x);
        free(y);
        return NAN;
    }
    double sum = 0;
    for (size_t i = 0; i < nw; i += (size_t)batch) {
        int nb = (int)(nw - i < (size_t)batch ? nw - i : (size_t)batch);
        for (int b = 0; b < nb; b++) {
            size_t at = nw > 1 ? (i + (size_t)b) * (room - 1) / (nw - 1) : 0;
            memcpy(x + (size_t)b * (size_t)T, span->ids + at, (size_t)T);
            memcpy(y + (size_t)b * (size_t)T, span->ids + at + 1, (size_t)T);
        }
        sum += gpt_forward(g, params, w, x, y, nb);
    }
    free(x);
    free(y);
    return sum / ((double)nw * (double)T);
}

double demo_lr(int s, int n, int warmup, double peak, double floor)
{
    if (s < warmup)
        return peak * (double)(s + 1) / (double)warmup;
    double t = n > warmup ? (double)(s - warmup) / (double)(n - warmup) : 1.0;
    return floor + 0.5 * (peak - floor) * (1.0 + cos(3.141592653589793 * t));
}

typedef struct shard {
    const gpt *g;
    const float *params;
    gpt_work *w;
    float *grad;
    const uint8_t *x, *y;
    int batch;
    float scale;
    double loss;
} shard;

static void run_shard(shard *s)
{
    memset(s->grad, 0, s->g->nparams * sizeof(float));
    s->loss = gpt_forward(s->g, s->params, s->w, s->x, s->y, s->batch);
    gpt_backward(s->g, s->params, s->w, s->grad, s->scale);
}

static void *shard_thread(void *arg)
{
    run_shard(arg);
    return NULL;
}

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), rc = -1)

int demo_train_full(const gpt *g, float *params, const demo_span *span,
                    const demo_train_opts *o, demo_progress *progress, double *mean_loss_last,
                    char *err, size_t errlen)
{
    const int T = g->cfg.context, nsh = o->batch >= 2 && o->batch % 2 == 0 ? 2 : 1;
    const int per = o->batch / nsh;
    const size_t n = g->nparams;
    int rc = 0;
    shard sh[2] = {{0}};
    uint8_t *x = malloc((size_t)o->batch * (size_t)T), *y = malloc((size_t)o->batch * (size_t)T);
    uint8_t *decay = calloc(n, 1);
    sresid_mask *m_decay = NULL, *m_plain = NULL;
    sresid_optim *opt_decay = NULL, *opt_plain = NULL;
    for (int i = 0; i < nsh; i++) {
        sh[i] = (shard){.g = g, .params = params, .w = gpt_work_create(g, per, 1),
                        .grad = gpt_alloc_params(g), .batch = per,
                        .scale = 1.0f / (float)(o->batch * T)};
        if (!sh[i].w || !sh[i].grad)
            rc = -1;
    }
    if (rc || !x || !y || !decay) {
        FAIL("out of memory");
        goto done;
    }
    /* Weight decay on matrices only (norm gains stay free): two optimisers
     * over the same vector, each stepping the entries its mask allows. */
    for (size_t t = 0; t < g->ntensors; t++)
        if (g->tensors[t].ndim == 2)
            memset(decay + g->tensors[t].offset, 1, g->tensors[t].numel);
    sresid_optim_opts od = {.size = sizeof od, .kind = SRESID_OPTIM_ADAMW, .lr = o->lr,
                            .beta1 = 0.9, .beta2 = 0.95, .weight_decay = o->weight_decay};
    sresid_optim_opts op = od;
    op.weight_decay = 0;
    sresid_status st;
    if ((st = sresid_mask_from_bytes(decay, n, &m_decay)) ||
        (st = sresid_mask_copy(m_decay, &m_plain)) || (st = sresid_mask_not(m_plain)) ||
        (st = sresid_optim_create(n, &od, &opt_decay)) ||
        (st = sresid_optim_create(n, &op, &opt_plain))) {
        FAIL("optimiser: %s", sresid_last_error());
        goto done;
    }
    double tail = 0;
    int tail_n = 0;
    for (int s = 0; s < o->steps; s++) {
        demo_batch(span, T, o->batch, demo_mix(o->seed, (uint64_t)s), x, y);
        for (int i = 0; i < nsh; i++) {
            sh[i].x = x + (size_t)(i * per * T);
            sh[i].y = y + (size_t)(i * per * T);
        }
        pthread_t th;
        int threaded = nsh == 2 && o->threads >= 2 && pthread_create(&th, NULL, shard_thread,
                                                                     &sh[1]) == 0;
        run_shard(&sh[0]);
        if (threaded)
            pthread_join(th, NULL);
        else if (nsh == 2)
            run_shard(&sh[1]);
        float *grad = sh[0].grad;
        double loss = sh[0].loss, norm2 = 0;
        if (nsh == 2) {
            loss += sh[1].loss;
            for (size_t i = 0; i < n; i++)
                grad[i] += sh[1].grad[i];
        }
        for (size_t i = 0; i < n; i++)
            norm2 += (double)grad[i] * grad[i];
        if (o->clip > 0 && sqrt(norm2) > o->clip) {
            float f = (float)(o->clip / sqrt(norm2));
            for (size_t i = 0; i < n; i++)
                grad[i] *= f;
        }
        double lr = demo_lr(s, o->steps, o->warmup, o->lr, o->lr_min);
        if ((st = sresid_optim_set_lr(opt_decay, lr)) || (st = sresid_optim_set_lr(opt_plain, lr)) ||
            (st = sresid_optim_step(opt_decay, params, grad, n, m_decay)) ||
            (st = sresid_optim_step(opt_plain, params, grad, n, m_plain))) {
            FAIL("training step %d: %s", s + 1, sresid_last_error());
            goto done;
        }
        if (s >= o->steps - (o->steps + 9) / 10) {
            tail += loss / ((double)o->batch * T);
            tail_n++;
        }
        demo_progress_add(progress, 1);
    }
    if (mean_loss_last)
        *mean_loss_last = tail_n ? tail / tail_n : NAN;
done:
    for (int i = 0; i < nsh; i++) {
        gpt_work_free(sh[i].w);
        free(sh[i].grad);
    }
    sresid_optim_free(opt_decay);
    sresid_optim_free(opt_plain);
    sresid_mask_free(m_decay);
    sresid_mask_free(m_plain);
    free(decay);
    free(x);
    free(y);
    return rc;
}
