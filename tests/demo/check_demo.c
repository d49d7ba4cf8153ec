/* Tests of sr-demo's parts: the model's forward pass and hand-written
 * backward against an independent double-precision reference (central
 * differences), the corpus split, and the cache key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../examples/cli.h"
#include "../../examples/demo/ckpt.h"
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

/* The score gradient the demo trains with: the model's dW projected by the
 * library (sresid_amp_project) against central differences of the
 * reference loss over the scores, the weights materialised by the library
 * for each perturbed score (sresid_amp_materialize). */
static void score_gradient_check(void)
{
    gpt_config c = {.vocab = 11, .dim = 8, .layers = 2, .heads = 2, .context = 5};
    const int batch = 2, N = batch * c.context;
    gpt g;
    CHECK(gpt_init(&g, &c) == 0, "gpt_init");
    ref_layout lay = {.vocab = c.vocab, .dim = c.dim, .layers = c.layers, .heads = c.heads,
                      .context = c.context, .tok = g.tok, .pos = g.pos, .lnf = g.lnf,
                      .head = g.head};
    for (int l = 0; l < c.layers; l++) {
        const gpt_layer_at *a = &g.layer[l];
        size_t at[8] = {a->ln1, a->wq, a->wk, a->wv, a->wo, a->ln2, a->up, a->down};
        memcpy(lay.layer[l], at, sizeof at);
    }
    float *base = gpt_alloc_params(&g), *p = gpt_alloc_params(&g), *grad = gpt_alloc_params(&g);
    demo_rng r;
    demo_rng_seed(&r, 99);
    for (size_t i = 0; i < g.ntensors; i++) {
        const gpt_tensor *t = &g.tensors[i];
        for (size_t j = 0; j < t->numel; j++)
            base[t->offset + j] = (float)(t->ndim == 1 ? 1.0 + 0.2 * demo_rng_normal(&r)
                                                       : 0.4 * demo_rng_normal(&r));
    }
    uint8_t x[32], y[32];
    for (int n = 0; n < N; n++) {
        x[n] = (uint8_t)demo_rng_below(&r, (uint64_t)c.vocab);
        y[n] = (uint8_t)demo_rng_below(&r, (uint64_t)c.vocab);
    }
    char err[256];
    sresid_model *view = NULL;
    sresid_amp *amp = NULL;
    CHECK(demo_model_view(&g, base, &view, err, sizeof err) == 0, "model view: %s", err);
    sresid_amp_opts ao = {.size = sizeof ao, .layout = SRESID_AMP_DIAG, .threads = 1,
                          .kinds = (1u << SRESID_KIND_ATTENTION) | (1u << SRESID_KIND_MLP)};
    sresid_status st = sresid_amp_create(view, &ao, &amp);
    CHECK(st == SRESID_OK, "sresid_amp_create: %s", sresid_last_error());
    if (st) {
        sresid_model_free(view);
        free(base), free(p), free(grad);
        gpt_free(&g);
        return;
    }
    /* every projection of the blocks, one score per singular value */
    size_t nt = sresid_amp_count(amp);
    uint64_t n = sresid_amp_score_count(amp);
    CHECK(nt == (size_t)(6 * c.layers), "%zu matrices selected, want %d", nt, 6 * c.layers);
    CHECK(n == (uint64_t)(6 * c.layers * c.dim), "%llu scores", (unsigned long long)n);
    size_t at[16];
    int64_t ld[16];
    for (size_t t = 0; t < nt && t < 16; t++) {
        sresid_amp_tensor_info info = {.size = sizeof info};
        sresid_amp_tensor(amp, t, &info);
        at[t] = g.tensors[info.index].offset;
        ld[t] = info.cols;
        CHECK(g.tensors[info.index].is_matrix, "%s selected", info.name);
    }
    /* a point away from s0, so the check is not only at the base */
    float *s = sresid_amp_scores(amp);
    for (uint64_t i = 0; i < n; i++)
        s[i] += (float)(0.05 * demo_rng_normal(&r));
    memcpy(p, base, g.nparams * sizeof(float));
    for (size_t t = 0; t < nt; t++)
        sresid_amp_materialize(amp, t, p + at[t], ld[t], 0);
    gpt_work *w = gpt_work_create(&g, batch, 1);
    gpt_forward(&g, p, w, x, y, batch);
    gpt_backward(&g, p, w, grad, 1.0f);
    float *sg = calloc(n, sizeof *sg);
    for (size_t t = 0; t < nt; t++)
        sresid_amp_project(amp, t, grad + at[t], ld[t], sg, NULL, 0);

    double *pd = malloc(g.nparams * sizeof *pd), num = 0, den = 0;
    const float h = 3e-3f;
    for (uint64_t i = 0; i < n; i++) {
        double side[2];
        float keep = s[i];
        for (int k = 0; k < 2; k++) {
            s[i] = keep + (k ? -h : h);
            for (size_t t = 0; t < nt; t++)
                sresid_amp_materialize(amp, t, p + at[t], ld[t], 0);
            for (size_t j = 0; j < g.nparams; j++)
                pd[j] = p[j];
            side[k] = ref_gpt_loss(&lay, pd, x, y, batch);
        }
        double fd = (side[0] - side[1]) / ((double)(keep + h) - (double)(keep - h));
        s[i] = keep;
        num += (sg[i] - fd) * (sg[i] - fd);
        den += fd * fd;
    }
    double rel = sqrt(num / den);
    CHECK(den > 0 && rel < 1e-3, "score gradient: relative error %.3g", rel);
    printf("score gradient check: %llu scores over %zu matrices, relative error %.2g\n",
           (unsigned long long)n, nt, rel);
    free(pd);
    free(sg);
    gpt_work_free(w);
    sresid_amp_free(amp);
    sresid_model_free(view);
    free(base), free(p), free(grad);
    gpt_free(&g);
}

/* The split: sections of the Jargon File, or 70/30 by share; every tenth
 * block of each part held out; the ids map bytes in order. */
static void corpus_split(void)
{
    char err[512];
    demo_corpus c;
    /* a small text with the section markers: 400 bytes of front matter,
     * 1000 of lexicon, 200 of appendix */
    size_t nf = 400, nl = 1000, na = 200;
    uint8_t *t = malloc(nf + nl + na);
    memset(t, 'f', nf);
    memcpy(t + nf - 10, "\nGlossary\n", 10);
    memset(t + nf, 'l', nl);
    memcpy(t + nf + nl, "\nAppendix", 9);
    memset(t + nf + nl + 9, 'a', na - 9);
    CHECK(demo_corpus_from_bytes(t, nf + nl + na, "t", 4, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.by_sections == 1, "sections not found");
    /* the Lexicon runs from the line "Glossary" up to the newline before
     * "Appendix" inclusive */
    CHECK(c.pre_bytes == 9 + nl + 1, "pre-training part %zu bytes", c.pre_bytes);
    CHECK(c.task_bytes == nf + nl + na - c.pre_bytes, "task part %zu bytes", c.task_bytes);
    CHECK(c.pre_train.len + c.pre_val.len == c.pre_bytes, "pre-training split loses bytes");
    CHECK(c.task_train.len + c.task_val.len == c.task_bytes, "task split loses bytes");
    /* blocks of n / 20 bytes, every tenth held out: about 10 % */
    CHECK(c.pre_val.len * 100 >= c.pre_bytes * 9 && c.pre_val.len * 100 <= c.pre_bytes * 11,
          "validation share %zu of %zu", c.pre_val.len, c.pre_bytes);
    /* distinct bytes in byte order: \n A G a d e f i l n o p r s x y */
    CHECK(c.vocab == 16, "vocabulary %d", c.vocab);
    CHECK(c.byte_of[0] == '\n' && c.byte_of[c.vocab - 1] == 'y', "byte order");
    int only_l = 1;
    for (size_t i = 0; i < c.pre_train.len; i++)
        only_l &= c.byte_of[c.pre_train.ids[i]] == 'l' || c.byte_of[c.pre_train.ids[i]] == 'G' ||
                  strchr("\nlossary", c.byte_of[c.pre_train.ids[i]]) != NULL;
    CHECK(only_l, "the pre-training part holds front matter or appendix text");
    demo_corpus_free(&c);

    /* no markers: 70 / 30 */
    memset(t, 'z', nf + nl + na);
    t[7] = 'q';
    CHECK(demo_corpus_from_bytes(t, 1600, "t", 4, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.by_sections == 0 && c.pre_bytes == 1120 && c.task_bytes == 480, "share split %zu %zu",
          c.pre_bytes, c.task_bytes);
    demo_corpus_free(&c);

    /* errors */
    CHECK(demo_corpus_from_bytes(t, 0, "e.txt", 4, &c, err, sizeof err) == -1 &&
              strstr(err, "e.txt is empty"),
          "empty: %s", err);
    CHECK(demo_corpus_from_bytes(t, 1600, "s.txt", 64, &c, err, sizeof err) == -1 &&
              strstr(err, "too short for a context of 64"),
          "too short: %s", err);
    CHECK(demo_corpus_from_bytes(t + 20, 100, "u.txt", 2, &c, err, sizeof err) == -1 &&
              strstr(err, "single distinct byte"),
          "one symbol: %s", err);
    CHECK(demo_corpus_load("/nonexistent/x.txt", 4, &c, err, sizeof err) == -1 &&
              strstr(err, "cannot read corpus /nonexistent/x.txt"),
          "missing: %s", err);
    free(t);
}

int main(void)
{
    gradient_check(2);
    gradient_check(1);
    score_gradient_check();
    corpus_split();
    printf("check_demo: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
