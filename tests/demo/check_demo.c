/* Tests of sr-demo's parts: the model's forward pass and hand-written
 * backward against an independent double-precision reference (central
 * differences), the corpus split, and the cache key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../examples/cli.h"
#include "../../examples/demo/corpus.h"
#include "../../examples/demo/gpt.h"
#include "../../examples/demo/rng.h"
#include "ref_gpt.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                        \
            printf(__VA_ARGS__);                                                               \
            printf("\n");                                                                      \
        }                                                                                      \
    } while (0)

static size_t find(const gpt *g, const char *name, int ndim, int64_t r, int64_t c)
{
    for (size_t i = 0; i < g->ntensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) {
            const gpt_tensor *t = &g->tensors[i];
            CHECK(t->ndim == ndim && t->shape[0] == r && (ndim == 1 || t->shape[1] == c),
                  "%s has the wrong shape", name);
            return t->offset;
        }
    CHECK(0, "no tensor %s", name);
    return 0;
}

static void gradient_check(int heads)
{
    gpt_config c = {.vocab = 13, .dim = 8, .layers = 2, .heads = heads, .context = 6};
    const int batch = 3, N = batch * c.context;
    gpt g;
    CHECK(gpt_init(&g, &c) == 0, "gpt_init");

    /* The reference finds every tensor by its Llama name and shape. */
    ref_layout lay = {.vocab = c.vocab, .dim = c.dim, .layers = c.layers, .heads = c.heads,
                      .context = c.context};
    int d = c.dim;
    lay.tok = find(&g, "model.embed_tokens.weight", 2, c.vocab, d);
    lay.pos = find(&g, "model.embed_positions.weight", 2, c.context, d);
    lay.lnf = find(&g, "model.norm.weight", 1, d, 0);
    lay.head = find(&g, "lm_head.weight", 2, c.vocab, d);
    static const char *parts[8] = {"input_layernorm",   "self_attn.q_proj",
                                   "self_attn.k_proj",  "self_attn.v_proj",
                                   "self_attn.o_proj",  "post_attention_layernorm",
                                   "mlp.up_proj",       "mlp.down_proj"};
    size_t expect_params = (size_t)(2 * c.vocab * d + c.context * d + d);
    for (int l = 0; l < c.layers; l++)
        for (int p = 0; p < 8; p++) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, parts[p]);
            int vec = p == 0 || p == 5;
            int64_t rows = p == 6 ? 4 * d : d, cols = p == 7 ? 4 * d : d;
            lay.layer[l][p] = find(&g, name, vec ? 1 : 2, rows, vec ? 0 : cols);
            expect_params += vec ? (size_t)d : (size_t)(rows * cols);
        }
    CHECK(g.nparams == expect_params, "parameter count %zu, want %zu", g.nparams, expect_params);
    CHECK(g.ntensors == (size_t)(8 * c.layers + 4), "tensor count %zu", g.ntensors);

    /* Weights well away from the usual tiny initial values, so every path
     * (attention softmax, GELU curvature, norm scales) carries gradient. */
    float *p = gpt_alloc_params(&g), *grad = gpt_alloc_params(&g);
    demo_rng r;
    demo_rng_seed(&r, 7 + (uint64_t)heads);
    for (size_t i = 0; i < g.ntensors; i++) {
        const gpt_tensor *t = &g.tensors[i];
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] = (float)(t->ndim == 1 ? 1.0 + 0.2 * demo_rng_normal(&r)
                                                    : 0.4 * demo_rng_normal(&r));
    }
    uint8_t x[64], y[64];
    for (int n = 0; n < N; n++) {
        x[n] = (uint8_t)demo_rng_below(&r, (uint64_t)c.vocab);
        y[n] = (uint8_t)demo_rng_below(&r, (uint64_t)c.vocab);
    }

    gpt_work *w = gpt_work_create(&g, batch, 1);
    CHECK(w != NULL, "gpt_work_create");
    double loss = gpt_forward(&g, p, w, x, y, batch);
    gpt_backward(&g, p, w, grad, 1.0f);

    double *pd = malloc(g.nparams * sizeof *pd);
    for (size_t i = 0; i < g.nparams; i++)
        pd[i] = p[i];
    double ref = ref_gpt_loss(&lay, pd, x, y, batch);
    CHECK(fabs(loss - ref) <= 1e-5 * fabs(ref), "heads %d: loss %.9g, reference %.9g", heads,
          loss, ref);

    /* Central differences on the double reference; the truncation and
     * rounding errors (~1e-10) are far below the float32 tolerance. */
    const double h = 1e-5;
    double worst = 0;
    for (size_t i = 0; i < g.ntensors; i++) {
        const gpt_tensor *t = &g.tensors[i];
        double num = 0, den = 0, maxref = 0;
        double *fd = malloc(t->numel * sizeof *fd);
        for (size_t j = 0; j < t->numel; j++) {
            size_t at = t->offset + j;
            double keep = pd[at];
            pd[at] = keep + h;
            double up = ref_gpt_loss(&lay, pd, x, y, batch);
            pd[at] = keep - h;
            double down = ref_gpt_loss(&lay, pd, x, y, batch);
            pd[at] = keep;
            fd[j] = (up - down) / (2 * h);
            double e = grad[at] - fd[j];
            num += e * e;
            den += fd[j] * fd[j];
            maxref = fabs(fd[j]) > maxref ? fabs(fd[j]) : maxref;
        }
        double rel = sqrt(num / den);
        worst = rel > worst ? rel : worst;
        CHECK(den > 0, "%s: zero reference gradient", t->name);
        CHECK(rel <= 1e-3, "heads %d: %s: relative error %.3g", heads, t->name, rel);
        /* entry by entry too, relative to the entry or to a small share of
         * the tensor's largest entry for entries near zero */
        size_t bad = 0;
        for (size_t j = 0; j < t->numel; j++)
            bad += fabs(grad[t->offset + j] - fd[j]) > 1e-3 * fmax(fabs(fd[j]), 0.05 * maxref);
        CHECK(bad == 0, "heads %d: %s: %zu entries off by more than 1e-3", heads, t->name, bad);
        free(fd);
    }
    printf("gradient check, %d heads: %zu tensors, %zu parameters, worst relative error %.2g\n",
           heads, g.ntensors, g.nparams, worst);

    /* Accumulation: a second backward adds the same gradient again. */
    float *grad2 = gpt_alloc_params(&g);
    gpt_forward(&g, p, w, x, y, batch);
    gpt_backward(&g, p, w, grad2, 0.5f);
    gpt_forward(&g, p, w, x, y, batch);
    gpt_backward(&g, p, w, grad2, 0.5f);
    double dn = 0, gn = 0;
    for (size_t i = 0; i < g.nparams; i++) {
        dn += (double)(grad2[i] - grad[i]) * (grad2[i] - grad[i]);
        gn += (double)grad[i] * grad[i];
    }
    CHECK(sqrt(dn / gn) < 1e-5, "two half-scaled backward passes differ from one: %.3g",
          sqrt(dn / gn));

    free(grad2);
    free(pd);
    gpt_work_free(w);
    free(p);
    free(grad);
    gpt_free(&g);
}

int main(void)
{
    sr_cli_pick_blis_arch(0);
    gradient_check(2);
    gradient_check(1);
    printf("check_demo: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
