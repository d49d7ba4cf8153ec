/* Tensor names: globs, default and user kind rules, layer index and role. */
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "testutil.h"

Suite *suite_names(void);

/* ---- glob ---- */

START_TEST(glob_basics)
{
    static const struct {
        const char *pattern, *s;
        bool want;
    } cases[] = {
        {"", "", true},
        {"", "a", false},
        {"a", "", false},
        {"*", "", true},
        {"*", "anything.at/all", true},
        {"**", "", true},
        {"***", "abc", true},
        {"?", "a", true},
        {"?", "", false},
        {"?", "ab", false},
        {"??", "ab", true},
        {"?*", "", false},
        {"*?", "x", true},
        {"a*b*c", "abc", true},
        {"a*b*c", "aXbYc", true},
        {"a*b*c", "abcc", true},
        {"a*b*c", "aXbY", false},
        {"a*b*c", "acb", false},
        {"a*b*c", "XabC", false},
        {"a**b", "ab", true},
        {"a*", "a", true},
        {"*a", "ba", true},
        {"*a", "ab", false},
        {"abc", "abc", true},
        {"abc", "abcd", false},   /* whole-string match */
        {"abc", "ab", false},
        {"*.weight", "x.weight", true},
        {"*.weight", "x.weights", false},
        {"*ab*ab*", "aab", false},
        {"*aab", "aaab", true},   /* backtracking past a partial match */
        {"*abab", "ababab", true},
        {"MODEL.*", "model.x", true},
        {"*layernorm*", "bert.embeddings.LayerNorm.weight", true},
        {"*LAYERNORM*", "x.layernorm", true},
        {"[a]", "[a]", true},     /* no character classes: literal brackets */
        {"[a]", "a", false},
        {"\xc3\xa9", "\xc3\xa9", true}, /* bytes beyond ASCII compare exactly */
        {"\xc3\xa9", "\xc3\x89", false},
        {"a?c", "a.c", true},
        {"a?c", "a/c", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(sresid__glob_match(cases[i].pattern, cases[i].s) == cases[i].want,
                      "glob \"%s\" vs \"%s\": want %d", cases[i].pattern, cases[i].s,
                      (int)cases[i].want);
    ck_assert(!sresid__glob_match(NULL, "a"));
    ck_assert(!sresid__glob_match("a", NULL));
}
END_TEST

START_TEST(glob_many_stars)
{
    /* A naive recursive matcher needs exponential time here; ours finishes
     * well inside the test timeout. */
    size_t n = 100000;
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, 'a', n);
    s[n] = '\0';
    char pat[64];
    for (int i = 0; i < 30; i++) {
        pat[2 * i] = '*';
        pat[2 * i + 1] = 'a';
    }
    pat[60] = '*';
    pat[61] = 'b';
    pat[62] = '\0';
    ck_assert(!sresid__glob_match(pat, s));
    pat[61] = '\0'; /* "*a*a...*a*" */
    ck_assert(sresid__glob_match(pat, s));
    s[n - 1] = 'b';
    pat[61] = 'b';
    ck_assert(sresid__glob_match(pat, s));
    ck_assert(sresid__glob_match("*aaaaaaaaaaaaaaaaaaaab", s));
    ck_assert(!sresid__glob_match("*aaaaaaaaaaaaaaaaaaaac", s));
    ck_assert(!sresid__glob_match("*?a*?a*?a*?a*?a*?a*?a*?a*?a*?a*?a*?ac", s));
    free(s);
}
END_TEST

/* ---- default rules, layers and roles ---- */

#define O SRESID_KIND_OTHER
#define A SRESID_KIND_ATTENTION
#define M SRESID_KIND_MLP
#define E SRESID_KIND_EMBEDDING
#define N SRESID_KIND_NORM

static const struct {
    const char *name;
    int32_t kind;
    int32_t layer;
    const char *stack;
    const char *role;
} schemes[] = {
    /* Llama / Mistral / Qwen (Hugging Face) */
    {"model.embed_tokens.weight", E, -1, "", "model.embed_tokens.weight"},
    {"model.layers.3.self_attn.q_proj.weight", A, 3, "model.layers",
     "model.layers.{L}.self_attn.q_proj.weight"},
    {"model.layers.3.self_attn.k_proj.weight", A, 3, "model.layers",
     "model.layers.{L}.self_attn.k_proj.weight"},
    {"model.layers.3.self_attn.v_proj.weight", A, 3, "model.layers",
     "model.layers.{L}.self_attn.v_proj.weight"},
    {"model.layers.3.self_attn.o_proj.weight", A, 3, "model.layers",
     "model.layers.{L}.self_attn.o_proj.weight"},
    {"model.layers.3.self_attn.q_proj.bias", A, 3, "model.layers",
     "model.layers.{L}.self_attn.q_proj.bias"},
    {"model.layers.3.mlp.gate_proj.weight", M, 3, "model.layers",
     "model.layers.{L}.mlp.gate_proj.weight"},
    {"model.layers.3.mlp.up_proj.weight", M, 3, "model.layers",
     "model.layers.{L}.mlp.up_proj.weight"},
    {"model.layers.12.mlp.up_proj.weight", M, 12, "model.layers",
     "model.layers.{L}.mlp.up_proj.weight"},
    {"model.layers.3.mlp.down_proj.weight", M, 3, "model.layers",
     "model.layers.{L}.mlp.down_proj.weight"},
    {"model.layers.3.input_layernorm.weight", N, 3, "model.layers",
     "model.layers.{L}.input_layernorm.weight"},
    {"model.layers.3.post_attention_layernorm.weight", N, 3, "model.layers",
     "model.layers.{L}.post_attention_layernorm.weight"},
    {"model.layers.3.self_attn.q_norm.weight", N, 3, "model.layers",
     "model.layers.{L}.self_attn.q_norm.weight"},
    {"model.norm.weight", N, -1, "", "model.norm.weight"},
    {"lm_head.weight", O, -1, "", "lm_head.weight"},
    /* Mixtral */
    {"model.layers.5.block_sparse_moe.experts.0.w1.weight", M, 5, "model.layers",
     "model.layers.{L}.block_sparse_moe.experts.0.w1.weight"},
    {"model.layers.5.block_sparse_moe.experts.7.w2.weight", M, 5, "model.layers",
     "model.layers.{L}.block_sparse_moe.experts.7.w2.weight"},
    {"model.layers.5.block_sparse_moe.gate.weight", M, 5, "model.layers",
     "model.layers.{L}.block_sparse_moe.gate.weight"},
    /* original Mistral / Llama (consolidated.safetensors) */
    {"tok_embeddings.weight", E, -1, "", "tok_embeddings.weight"},
    {"layers.0.attention.wq.weight", A, 0, "layers", "layers.{L}.attention.wq.weight"},
    {"layers.0.attention.wo.weight", A, 0, "layers", "layers.{L}.attention.wo.weight"},
    {"layers.0.feed_forward.w1.weight", M, 0, "layers", "layers.{L}.feed_forward.w1.weight"},
    {"layers.0.feed_forward.w3.weight", M, 0, "layers", "layers.{L}.feed_forward.w3.weight"},
    {"layers.0.attention_norm.weight", N, 0, "layers", "layers.{L}.attention_norm.weight"},
    {"layers.0.ffn_norm.weight", N, 0, "layers", "layers.{L}.ffn_norm.weight"},
    {"norm.weight", N, -1, "", "norm.weight"},
    {"output.weight", O, -1, "", "output.weight"},
    /* GPT-2 */
    {"wte.weight", E, -1, "", "wte.weight"},
    {"wpe.weight", E, -1, "", "wpe.weight"},
    {"transformer.wte.weight", E, -1, "", "transformer.wte.weight"},
    {"h.0.attn.c_attn.weight", A, 0, "h", "h.{L}.attn.c_attn.weight"},
    {"h.0.attn.c_proj.weight", A, 0, "h", "h.{L}.attn.c_proj.weight"},
    {"h.0.attn.bias", A, 0, "h", "h.{L}.attn.bias"},
    {"h.0.mlp.c_fc.weight", M, 0, "h", "h.{L}.mlp.c_fc.weight"},
    {"h.11.mlp.c_proj.weight", M, 11, "h", "h.{L}.mlp.c_proj.weight"},
    {"h.0.ln_1.weight", N, 0, "h", "h.{L}.ln_1.weight"},
    {"h.0.ln_2.bias", N, 0, "h", "h.{L}.ln_2.bias"},
    {"ln_f.bias", N, -1, "", "ln_f.bias"},
    {"transformer.ln_f.weight", N, -1, "", "transformer.ln_f.weight"},
    /* GPT-NeoX / Pythia */
    {"gpt_neox.embed_in.weight", E, -1, "", "gpt_neox.embed_in.weight"},
    {"gpt_neox.layers.0.attention.query_key_value.weight", A, 0, "gpt_neox.layers",
     "gpt_neox.layers.{L}.attention.query_key_value.weight"},
    {"gpt_neox.layers.0.attention.dense.weight", A, 0, "gpt_neox.layers",
     "gpt_neox.layers.{L}.attention.dense.weight"},
    {"gpt_neox.layers.0.mlp.dense_h_to_4h.weight", M, 0, "gpt_neox.layers",
     "gpt_neox.layers.{L}.mlp.dense_h_to_4h.weight"},
    {"gpt_neox.layers.0.mlp.dense_4h_to_h.weight", M, 0, "gpt_neox.layers",
     "gpt_neox.layers.{L}.mlp.dense_4h_to_h.weight"},
    {"gpt_neox.layers.0.input_layernorm.weight", N, 0, "gpt_neox.layers",
     "gpt_neox.layers.{L}.input_layernorm.weight"},
    {"gpt_neox.layers.0.post_attention_layernorm.bias", N, 0, "gpt_neox.layers",
     "gpt_neox.layers.{L}.post_attention_layernorm.bias"},
    {"gpt_neox.final_layer_norm.weight", N, -1, "", "gpt_neox.final_layer_norm.weight"},
    {"embed_out.weight", O, -1, "", "embed_out.weight"}, /* the output head, like lm_head */
    /* BERT */
    {"bert.embeddings.word_embeddings.weight", E, -1, "", "bert.embeddings.word_embeddings.weight"},
    {"bert.embeddings.position_embeddings.weight", E, -1, "",
     "bert.embeddings.position_embeddings.weight"},
    {"bert.embeddings.token_type_embeddings.weight", E, -1, "",
     "bert.embeddings.token_type_embeddings.weight"},
    {"bert.embeddings.LayerNorm.weight", N, -1, "", "bert.embeddings.LayerNorm.weight"},
    {"bert.encoder.layer.0.attention.self.query.weight", A, 0, "bert.encoder.layer",
     "bert.encoder.layer.{L}.attention.self.query.weight"},
    {"encoder.layer.0.attention.self.key.bias", A, 0, "encoder.layer",
     "encoder.layer.{L}.attention.self.key.bias"},
    {"encoder.layer.0.attention.output.dense.weight", A, 0, "encoder.layer",
     "encoder.layer.{L}.attention.output.dense.weight"},
    {"encoder.layer.0.attention.output.LayerNorm.weight", N, 0, "encoder.layer",
     "encoder.layer.{L}.attention.output.LayerNorm.weight"},
    {"encoder.layer.0.intermediate.dense.weight", M, 0, "encoder.layer",
     "encoder.layer.{L}.intermediate.dense.weight"},
    {"encoder.layer.0.output.dense.weight", M, 0, "encoder.layer",
     "encoder.layer.{L}.output.dense.weight"},
    {"bert.encoder.layer.7.output.dense.bias", M, 7, "bert.encoder.layer",
     "bert.encoder.layer.{L}.output.dense.bias"},
    {"encoder.layer.0.output.LayerNorm.weight", N, 0, "encoder.layer",
     "encoder.layer.{L}.output.LayerNorm.weight"},
    {"bert.pooler.dense.weight", O, -1, "", "bert.pooler.dense.weight"},
    /* T5 */
    {"shared.weight", E, -1, "", "shared.weight"},
    {"encoder.block.0.layer.0.SelfAttention.q.weight", A, 0, "encoder.block",
     "encoder.block.{L}.layer.0.SelfAttention.q.weight"},
    {"decoder.block.0.layer.1.EncDecAttention.k.weight", A, 0, "decoder.block",
     "decoder.block.{L}.layer.1.EncDecAttention.k.weight"},
    {"encoder.block.0.layer.1.DenseReluDense.wi.weight", M, 0, "encoder.block",
     "encoder.block.{L}.layer.1.DenseReluDense.wi.weight"},
    {"encoder.block.3.layer.1.DenseReluDense.wo.weight", M, 3, "encoder.block",
     "encoder.block.{L}.layer.1.DenseReluDense.wo.weight"},
    {"decoder.block.2.layer.2.DenseReluDense.wi_0.weight", M, 2, "decoder.block",
     "decoder.block.{L}.layer.2.DenseReluDense.wi_0.weight"},
    {"encoder.block.0.layer.0.layer_norm.weight", N, 0, "encoder.block",
     "encoder.block.{L}.layer.0.layer_norm.weight"},
    {"encoder.final_layer_norm.weight", N, -1, "", "encoder.final_layer_norm.weight"},
    {"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", A, 0, "encoder.block",
     "encoder.block.{L}.layer.0.SelfAttention.relative_attention_bias.weight"},
    /* OPT / BART / Whisper */
    {"model.decoder.embed_tokens.weight", E, -1, "", "model.decoder.embed_tokens.weight"},
    {"model.decoder.embed_positions.weight", E, -1, "", "model.decoder.embed_positions.weight"},
    {"model.decoder.layers.4.self_attn.out_proj.weight", A, 4, "model.decoder.layers",
     "model.decoder.layers.{L}.self_attn.out_proj.weight"},
    {"model.decoder.layers.4.fc1.weight", M, 4, "model.decoder.layers",
     "model.decoder.layers.{L}.fc1.weight"},
    {"model.decoder.layers.4.fc2.bias", M, 4, "model.decoder.layers",
     "model.decoder.layers.{L}.fc2.bias"},
    {"model.decoder.layers.4.self_attn_layer_norm.weight", N, 4, "model.decoder.layers",
     "model.decoder.layers.{L}.self_attn_layer_norm.weight"},
    {"model.decoder.layers.4.final_layer_norm.weight", N, 4, "model.decoder.layers",
     "model.decoder.layers.{L}.final_layer_norm.weight"},
    /* Falcon */
    {"transformer.word_embeddings.weight", E, -1, "", "transformer.word_embeddings.weight"},
    {"transformer.h.1.self_attention.query_key_value.weight", A, 1, "transformer.h",
     "transformer.h.{L}.self_attention.query_key_value.weight"},
    {"transformer.h.1.ln_attn.weight", N, 1, "transformer.h", "transformer.h.{L}.ln_attn.weight"},
    {"transformer.h.1.ln_mlp.bias", N, 1, "transformer.h", "transformer.h.{L}.ln_mlp.bias"},
    /* Mistral and Mixtral: the expert number is not the layer */
    {"model.layers.31.self_attn.k_proj.weight", A, 31, "model.layers",
     "model.layers.{L}.self_attn.k_proj.weight"},
    {"layers.3.feed_forward.experts.7.w2.weight", M, 3, "layers",
     "layers.{L}.feed_forward.experts.7.w2.weight"},
    {"layers.3.feed_forward.gate.weight", M, 3, "layers", "layers.{L}.feed_forward.gate.weight"},
    /* Qwen2 and Qwen2-MoE; Qwen (1) in GPT-2 style */
    {"model.layers.0.self_attn.k_proj.bias", A, 0, "model.layers",
     "model.layers.{L}.self_attn.k_proj.bias"},
    {"model.layers.2.mlp.experts.59.down_proj.weight", M, 2, "model.layers",
     "model.layers.{L}.mlp.experts.59.down_proj.weight"},
    {"model.layers.2.mlp.shared_expert_gate.weight", M, 2, "model.layers",
     "model.layers.{L}.mlp.shared_expert_gate.weight"},
    {"transformer.h.0.ln_1.weight", N, 0, "transformer.h", "transformer.h.{L}.ln_1.weight"},
    {"transformer.h.0.attn.c_attn.weight", A, 0, "transformer.h",
     "transformer.h.{L}.attn.c_attn.weight"},
    {"transformer.h.0.attn.c_proj.bias", A, 0, "transformer.h",
     "transformer.h.{L}.attn.c_proj.bias"},
    {"transformer.h.0.mlp.w1.weight", M, 0, "transformer.h", "transformer.h.{L}.mlp.w1.weight"},
    {"transformer.h.0.mlp.w2.weight", M, 0, "transformer.h", "transformer.h.{L}.mlp.w2.weight"},
    {"transformer.h.0.mlp.c_proj.weight", M, 0, "transformer.h",
     "transformer.h.{L}.mlp.c_proj.weight"},
    /* Gemma 2 and 3; Gemma 3's language model and vision tower are two stacks */
    {"model.layers.0.pre_feedforward_layernorm.weight", N, 0, "model.layers",
     "model.layers.{L}.pre_feedforward_layernorm.weight"},
    {"model.layers.0.post_feedforward_layernorm.weight", N, 0, "model.layers",
     "model.layers.{L}.post_feedforward_layernorm.weight"},
    {"model.layers.0.self_attn.k_norm.weight", N, 0, "model.layers",
     "model.layers.{L}.self_attn.k_norm.weight"},
    {"language_model.model.layers.7.self_attn.q_proj.weight", A, 7, "language_model.model.layers",
     "language_model.model.layers.{L}.self_attn.q_proj.weight"},
    {"language_model.model.layers.7.mlp.gate_proj.weight", M, 7, "language_model.model.layers",
     "language_model.model.layers.{L}.mlp.gate_proj.weight"},
    {"vision_tower.vision_model.encoder.layers.7.self_attn.q_proj.weight", A, 7,
     "vision_tower.vision_model.encoder.layers",
     "vision_tower.vision_model.encoder.layers.{L}.self_attn.q_proj.weight"},
    {"vision_tower.vision_model.encoder.layers.7.mlp.fc1.weight", M, 7,
     "vision_tower.vision_model.encoder.layers",
     "vision_tower.vision_model.encoder.layers.{L}.mlp.fc1.weight"},
    {"vision_tower.vision_model.embeddings.patch_embedding.weight", E, -1, "",
     "vision_tower.vision_model.embeddings.patch_embedding.weight"},
    {"vision_tower.vision_model.post_layernorm.weight", N, -1, "",
     "vision_tower.vision_model.post_layernorm.weight"},
    {"multi_modal_projector.mm_soft_emb_norm.weight", N, -1, "",
     "multi_modal_projector.mm_soft_emb_norm.weight"},
    {"multi_modal_projector.mm_input_projection_weight", O, -1, "",
     "multi_modal_projector.mm_input_projection_weight"},
    /* Phi-1.5/2 and Phi-3 */
    {"model.layers.0.self_attn.dense.weight", A, 0, "model.layers",
     "model.layers.{L}.self_attn.dense.weight"},
    {"model.layers.0.mlp.fc1.weight", M, 0, "model.layers", "model.layers.{L}.mlp.fc1.weight"},
    {"model.layers.0.mlp.fc2.bias", M, 0, "model.layers", "model.layers.{L}.mlp.fc2.bias"},
    {"model.final_layernorm.weight", N, -1, "", "model.final_layernorm.weight"},
    {"lm_head.bias", O, -1, "", "lm_head.bias"},
    {"model.layers.0.self_attn.qkv_proj.weight", A, 0, "model.layers",
     "model.layers.{L}.self_attn.qkv_proj.weight"},
    {"model.layers.0.mlp.gate_up_proj.weight", M, 0, "model.layers",
     "model.layers.{L}.mlp.gate_up_proj.weight"},
    /* DistilBERT */
    {"distilbert.embeddings.word_embeddings.weight", E, -1, "",
     "distilbert.embeddings.word_embeddings.weight"},
    {"distilbert.embeddings.LayerNorm.bias", N, -1, "", "distilbert.embeddings.LayerNorm.bias"},
    {"distilbert.transformer.layer.0.attention.q_lin.weight", A, 0, "distilbert.transformer.layer",
     "distilbert.transformer.layer.{L}.attention.q_lin.weight"},
    {"distilbert.transformer.layer.5.attention.out_lin.bias", A, 5, "distilbert.transformer.layer",
     "distilbert.transformer.layer.{L}.attention.out_lin.bias"},
    {"distilbert.transformer.layer.0.sa_layer_norm.weight", N, 0, "distilbert.transformer.layer",
     "distilbert.transformer.layer.{L}.sa_layer_norm.weight"},
    {"distilbert.transformer.layer.0.ffn.lin1.weight", M, 0, "distilbert.transformer.layer",
     "distilbert.transformer.layer.{L}.ffn.lin1.weight"},
    {"distilbert.transformer.layer.3.ffn.lin2.bias", M, 3, "distilbert.transformer.layer",
     "distilbert.transformer.layer.{L}.ffn.lin2.bias"},
    {"distilbert.transformer.layer.0.output_layer_norm.weight", N, 0,
     "distilbert.transformer.layer", "distilbert.transformer.layer.{L}.output_layer_norm.weight"},
    {"vocab_transform.weight", O, -1, "", "vocab_transform.weight"},
    {"vocab_layer_norm.weight", N, -1, "", "vocab_layer_norm.weight"},
    {"vocab_projector.bias", O, -1, "", "vocab_projector.bias"},
    /* T5: encoder and decoder blocks are two stacks */
    {"encoder.embed_tokens.weight", E, -1, "", "encoder.embed_tokens.weight"},
    {"decoder.block.0.layer.0.SelfAttention.o.weight", A, 0, "decoder.block",
     "decoder.block.{L}.layer.0.SelfAttention.o.weight"},
    {"decoder.block.5.layer.2.layer_norm.weight", N, 5, "decoder.block",
     "decoder.block.{L}.layer.2.layer_norm.weight"},
    {"decoder.final_layer_norm.weight", N, -1, "", "decoder.final_layer_norm.weight"},
    /* Whisper: the convolutional stem is the encoder's embedding */
    {"model.encoder.conv1.weight", E, -1, "", "model.encoder.conv1.weight"},
    {"model.encoder.conv2.bias", E, -1, "", "model.encoder.conv2.bias"},
    {"model.encoder.embed_positions.weight", E, -1, "", "model.encoder.embed_positions.weight"},
    {"model.encoder.layers.0.self_attn.k_proj.weight", A, 0, "model.encoder.layers",
     "model.encoder.layers.{L}.self_attn.k_proj.weight"},
    {"model.encoder.layers.0.self_attn_layer_norm.weight", N, 0, "model.encoder.layers",
     "model.encoder.layers.{L}.self_attn_layer_norm.weight"},
    {"model.encoder.layers.31.fc1.weight", M, 31, "model.encoder.layers",
     "model.encoder.layers.{L}.fc1.weight"},
    {"model.encoder.layers.0.final_layer_norm.bias", N, 0, "model.encoder.layers",
     "model.encoder.layers.{L}.final_layer_norm.bias"},
    {"model.encoder.layer_norm.weight", N, -1, "", "model.encoder.layer_norm.weight"},
    {"model.decoder.layers.0.encoder_attn.q_proj.weight", A, 0, "model.decoder.layers",
     "model.decoder.layers.{L}.encoder_attn.q_proj.weight"},
    {"model.decoder.layers.0.encoder_attn_layer_norm.weight", N, 0, "model.decoder.layers",
     "model.decoder.layers.{L}.encoder_attn_layer_norm.weight"},
    {"proj_out.weight", O, -1, "", "proj_out.weight"},
    /* BART */
    {"model.shared.weight", E, -1, "", "model.shared.weight"},
    {"model.encoder.layernorm_embedding.weight", N, -1, "",
     "model.encoder.layernorm_embedding.weight"},
    {"model.encoder.layers.2.self_attn.v_proj.weight", A, 2, "model.encoder.layers",
     "model.encoder.layers.{L}.self_attn.v_proj.weight"},
    {"model.encoder.layers.2.fc1.bias", M, 2, "model.encoder.layers",
     "model.encoder.layers.{L}.fc1.bias"},
    {"model.decoder.layers.2.encoder_attn.out_proj.weight", A, 2, "model.decoder.layers",
     "model.decoder.layers.{L}.encoder_attn.out_proj.weight"},
    {"final_logits_bias", O, -1, "", "final_logits_bias"},
    /* ViT */
    {"vit.embeddings.cls_token", E, -1, "", "vit.embeddings.cls_token"},
    {"vit.embeddings.patch_embeddings.projection.weight", E, -1, "",
     "vit.embeddings.patch_embeddings.projection.weight"},
    {"vit.encoder.layer.0.attention.attention.query.weight", A, 0, "vit.encoder.layer",
     "vit.encoder.layer.{L}.attention.attention.query.weight"},
    {"vit.encoder.layer.0.attention.output.dense.weight", A, 0, "vit.encoder.layer",
     "vit.encoder.layer.{L}.attention.output.dense.weight"},
    {"vit.encoder.layer.11.intermediate.dense.weight", M, 11, "vit.encoder.layer",
     "vit.encoder.layer.{L}.intermediate.dense.weight"},
    {"vit.encoder.layer.0.output.dense.bias", M, 0, "vit.encoder.layer",
     "vit.encoder.layer.{L}.output.dense.bias"},
    {"vit.encoder.layer.0.layernorm_before.weight", N, 0, "vit.encoder.layer",
     "vit.encoder.layer.{L}.layernorm_before.weight"},
    {"vit.encoder.layer.0.layernorm_after.bias", N, 0, "vit.encoder.layer",
     "vit.encoder.layer.{L}.layernorm_after.bias"},
    {"vit.layernorm.weight", N, -1, "", "vit.layernorm.weight"},
    {"classifier.weight", O, -1, "", "classifier.weight"},
    /* Falcon, more */
    {"transformer.h.1.self_attention.dense.weight", A, 1, "transformer.h",
     "transformer.h.{L}.self_attention.dense.weight"},
    {"transformer.h.1.mlp.dense_h_to_4h.weight", M, 1, "transformer.h",
     "transformer.h.{L}.mlp.dense_h_to_4h.weight"},
    {"transformer.h.1.mlp.dense_4h_to_h.weight", M, 1, "transformer.h",
     "transformer.h.{L}.mlp.dense_4h_to_h.weight"},
    {"transformer.h.1.input_layernorm.weight", N, 1, "transformer.h",
     "transformer.h.{L}.input_layernorm.weight"},
    /* an autoencoder of nn.Sequential parts: two stacks, both with a layer 2 */
    {"encoder.2.weight", O, 2, "encoder", "encoder.{L}.weight"},
    {"decoder.decoder.2.weight", O, 2, "decoder.decoder", "decoder.decoder.{L}.weight"},
    /* convolutional nets */
    {"layer1.0.bn1.weight", N, 0, "layer1", "layer1.{L}.bn1.weight"},
    {"bn1.running_mean", N, -1, "", "bn1.running_mean"},
    {"layer2.0.downsample.1.weight", O, 0, "layer2", "layer2.{L}.downsample.1.weight"},
    {"conv1_bn/gamma", N, -1, "", "conv1_bn/gamma"},
    {"features.3.batch_norm.weight", N, 3, "features", "features.{L}.batch_norm.weight"},
    {"dense0/conv1/filters", O, -1, "", "dense0/conv1/filters"},
    {"fc/weights", O, -1, "", "fc/weights"},
    {"fc1.weight", O, -1, "", "fc1.weight"}, /* a classifier, not inside a layer */
};

#undef O
#undef A
#undef M
#undef E
#undef N

START_TEST(default_rules_and_roles)
{
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        const char *name = schemes[i].name;
        int32_t kind = sresid__classify(name, NULL, NULL, 0, false);
        ck_assert_msg(kind == schemes[i].kind, "%s: kind %s, want %s", name,
                      sresid_kind_name(kind), sresid_kind_name(schemes[i].kind));
        int32_t layer = -2;
        char *role = NULL;
        const char *stack = NULL;
        ck_assert(sresid__layer_role(name, &layer, &role, &stack));
        ck_assert_msg(layer == schemes[i].layer, "%s: layer %d, want %d", name, (int)layer,
                      (int)schemes[i].layer);
        ck_assert_str_eq(role, schemes[i].role);
        ck_assert_msg(strcmp(stack, schemes[i].stack) == 0, "%s: stack \"%s\", want \"%s\"",
                      name, stack, schemes[i].stack);
        free(role);
    }
}
END_TEST

START_TEST(layer_role_edges)
{
    static const struct {
        const char *name;
        int32_t layer;
        const char *stack;
        const char *role;
    } cases[] = {
        {"", -1, "", ""},
        {"weight", -1, "", "weight"},
        {"0", 0, "", "{L}"},
        {"123", 123, "", "{L}"},
        {"0.weight", 0, "", "{L}.weight"},
        {"x.12", 12, "x", "x.{L}"},
        {"layers/7/kernel", 7, "layers", "layers/{L}/kernel"},
        {"a/3.b", 3, "a", "a/{L}.b"},
        {"a.99999999999.b", -1, "", "a.99999999999.b"}, /* over INT32_MAX */
        {"a.2147483647.b", 2147483647, "a", "a.{L}.b"},
        {"a.2147483648.b", -1, "", "a.2147483648.b"},
        {"a.99999999999999999999999999.b", -1, "", "a.99999999999999999999999999.b"},
        {"a.99999999999.4.b", 4, "a.99999999999", "a.99999999999.{L}.b"}, /* too big: skipped */
        {"a.007.b", 7, "a", "a.{L}.b"},
        {"a.1b.2", 2, "a.1b", "a.1b.{L}"},
        {"a.-1.b", -1, "", "a.-1.b"},
        {"a.+1.b", -1, "", "a.+1.b"},
        {"a. 1.b", -1, "", "a. 1.b"},
        {"a..b", -1, "", "a..b"},
        {"a.", -1, "", "a."},
        {".5.", 5, "", ".{L}."},
        {"dense0/conv1/filters", -1, "", "dense0/conv1/filters"},
        {"m.layers.1.experts.2.w1", 1, "m.layers", "m.layers.{L}.experts.2.w1"},
        {"m.layers.\xd9\xa3.w", -1, "", "m.layers.\xd9\xa3.w"}, /* Arabic-Indic digit: not ASCII */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t layer = -2;
        char *role = NULL;
        const char *stack = NULL;
        ck_assert(sresid__layer_role(cases[i].name, &layer, &role, &stack));
        ck_assert_msg(layer == cases[i].layer, "\"%s\": layer %d, want %d", cases[i].name,
                      (int)layer, (int)cases[i].layer);
        ck_assert_ptr_nonnull(role);
        ck_assert_str_eq(role, cases[i].role);
        ck_assert_str_eq(stack, cases[i].stack);
        free(role);
    }
}
END_TEST

/* ---- user rules ---- */

START_TEST(user_rules_first)
{
    char *pats[] = {"*Q_PROJ*", "lm_head.*", "*q_proj*", "*norm*"};
    const int32_t kinds[] = {SRESID_KIND_MLP, SRESID_KIND_EMBEDDING, SRESID_KIND_NORM,
                             SRESID_KIND_OTHER};
    const size_t n = sizeof kinds / sizeof kinds[0];
    /* user rules win over the defaults, the first matching one wins,
     * patterns are case-insensitive */
    ck_assert_int_eq(sresid__classify("model.layers.0.self_attn.q_proj.weight", pats, kinds, n,
                                      false),
                     SRESID_KIND_MLP);
    ck_assert_int_eq(sresid__classify("lm_head.weight", pats, kinds, n, false),
                     SRESID_KIND_EMBEDDING);
    /* a user rule may map to OTHER and so hide a default */
    ck_assert_int_eq(sresid__classify("model.norm.weight", pats, kinds, n, false),
                     SRESID_KIND_OTHER);
    /* names no user rule matches fall through to the defaults */
    ck_assert_int_eq(sresid__classify("model.layers.0.self_attn.k_proj.weight", pats, kinds, n,
                                      false),
                     SRESID_KIND_ATTENTION);
    ck_assert_int_eq(sresid__classify("model.embed_tokens.weight", pats, kinds, n, false),
                     SRESID_KIND_EMBEDDING);
    ck_assert_int_eq(sresid__classify("bert.pooler.dense.weight", pats, kinds, n, false),
                     SRESID_KIND_OTHER);
}
END_TEST

START_TEST(user_rules_replace)
{
    char *pats[] = {"lm_head*", "*.mlp.*"};
    const int32_t kinds[] = {SRESID_KIND_EMBEDDING, SRESID_KIND_ATTENTION};
    ck_assert_int_eq(sresid__classify("lm_head.weight", pats, kinds, 2, true),
                     SRESID_KIND_EMBEDDING);
    ck_assert_int_eq(sresid__classify("model.layers.1.mlp.up_proj.weight", pats, kinds, 2, true),
                     SRESID_KIND_ATTENTION);
    /* no defaults in replace mode */
    ck_assert_int_eq(sresid__classify("model.norm.weight", pats, kinds, 2, true),
                     SRESID_KIND_OTHER);
    ck_assert_int_eq(sresid__classify("model.layers.1.self_attn.q_proj.weight", pats, kinds, 2,
                                      true),
                     SRESID_KIND_OTHER);
    /* replace with no rules: everything is other */
    ck_assert_int_eq(sresid__classify("model.norm.weight", NULL, NULL, 0, true),
                     SRESID_KIND_OTHER);
    ck_assert_int_eq(sresid__classify("model.embed_tokens.weight", pats, kinds, 0, true),
                     SRESID_KIND_OTHER);
    /* no rules, no replace: the defaults */
    ck_assert_int_eq(sresid__classify("model.norm.weight", pats, kinds, 0, false),
                     SRESID_KIND_NORM);
}
END_TEST

Suite *suite_names(void)
{
    Suite *s = suite_create("names");

    TCase *tc = tcase_create("glob");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, glob_basics);
    tcase_add_test(tc, glob_many_stars);
    suite_add_tcase(s, tc);

    tc = tcase_create("rules");
    tcase_add_test(tc, default_rules_and_roles);
    tcase_add_test(tc, layer_role_edges);
    tcase_add_test(tc, user_rules_first);
    tcase_add_test(tc, user_rules_replace);
    suite_add_tcase(s, tc);

    return s;
}
