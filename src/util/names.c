/* Tensor names: glob matching, kind rules, layer index, stack and role. */
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

// Default kind rules, tried in this order after any user rules; the first
// match wins and no match gives "other". Globs match the whole name,
// case-insensitively; '*' is any run (dots included), '?' one byte.
// Norms come first (so post_attention_layernorm and attention.output.LayerNorm
// are norms), then embeddings, then attention, then MLP. A rule may also map
// to other, to keep a name out of a later, broader rule.
//
//   pattern               kind       covers
//   *norm*                norm       LayerNorm, layer_norm, RMSNorm, model.norm,
//                                    final_layer_norm, input_layernorm, norm1...
//   ln_*                  norm       GPT-2 ln_f
//   *.ln_*                norm       GPT-2 h.N.ln_1/ln_2, Falcon ln_attn/ln_mlp
//   *.ln?.*               norm       ln1, ln2
//   bn?.*                 norm       batch norm bn1 (torchvision)
//   *.bn?.*               norm       layer1.0.bn1
//   *.bn.*                norm       ...downsample.bn.weight
//   *_bn/*                norm       Keras conv1_bn/gamma
//   *embed_out*           other      GPT-NeoX untied output head, like lm_head
//   *embed*               embedding  embed_tokens, embed_in, tok_embeddings,
//                                    word/position/token_type_embeddings,
//                                    embed_positions, patch_embed
//   wte.*                 embedding  GPT-2 token embedding
//   *.wte.*               embedding  transformer.wte
//   wpe.*                 embedding  GPT-2 position embedding
//   *.wpe.*               embedding  transformer.wpe
//   shared.weight         embedding  T5 shared embedding
//   *.shared.weight       embedding  T5 under a prefix, BART model.shared
//   *encoder.conv?.*      embedding  Whisper's convolutional stem conv1/conv2,
//                                    the audio counterpart of ViT's
//                                    patch_embeddings.projection
//   *attn*                attention  self_attn, attn.c_attn, encoder_attn
//   *attention*           attention  attention.wq, attention.query_key_value,
//                                    attention.dense, attention.self.query,
//                                    attention.attention.query (ViT),
//                                    attention.q_lin (DistilBERT),
//                                    self_attention (Falcon), SelfAttention,
//                                    EncDecAttention, relative_attention_bias
//   *.q_proj.*            attention  projections outside an *attn* module
//   *.k_proj.*            attention
//   *.v_proj.*            attention
//   *.o_proj.*            attention
//   *mlp*                 mlp        mlp.gate_proj/up_proj/down_proj, mlp.c_fc,
//                                    mlp.dense_h_to_4h, mlp.fc1, Phi-3
//                                    mlp.gate_up_proj, Qwen1 mlp.w1/w2/c_proj
//   *.ffn.*               mlp        DistilBERT ffn.lin1/lin2
//   *feed_forward*        mlp        Mistral feed_forward.w1/w2/w3
//   *block_sparse_moe*    mlp        Mixtral experts and router
//   *.experts.*           mlp        other mixture-of-experts layouts
//   *DenseReluDense*      mlp        T5 wi/wo (also wi_0/wi_1)
//   *intermediate*        mlp        BERT intermediate.dense
//   *.output.dense.*      mlp        BERT output.dense (the attention one
//                                    matched *attention* above)
//   *.gate_proj.*         mlp        projections outside an *mlp* module
//   *.up_proj.*           mlp
//   *.down_proj.*         mlp
//   *layers.*.fc1.*       mlp        OPT, BART, Whisper fc1/fc2 in a layer
//   *layers.*.fc2.*       mlp
//
// Everything else, e.g. lm_head.weight, bert.pooler.dense.weight, is other.
// (Line comments here because the patterns contain slashes and stars.)
static const struct {
    const char *pattern;
    int32_t kind;
} default_rules[] = {
    {"*norm*", SRESID_KIND_NORM},
    {"ln_*", SRESID_KIND_NORM},
    {"*.ln_*", SRESID_KIND_NORM},
    {"*.ln?.*", SRESID_KIND_NORM},
    {"bn?.*", SRESID_KIND_NORM},
    {"*.bn?.*", SRESID_KIND_NORM},
    {"*.bn.*", SRESID_KIND_NORM},
    {"*_bn/*", SRESID_KIND_NORM},

    {"*embed_out*", SRESID_KIND_OTHER},
    {"*embed*", SRESID_KIND_EMBEDDING},
    {"wte.*", SRESID_KIND_EMBEDDING},
    {"*.wte.*", SRESID_KIND_EMBEDDING},
    {"wpe.*", SRESID_KIND_EMBEDDING},
    {"*.wpe.*", SRESID_KIND_EMBEDDING},
    {"shared.weight", SRESID_KIND_EMBEDDING},
    {"*.shared.weight", SRESID_KIND_EMBEDDING},
    {"*encoder.conv?.*", SRESID_KIND_EMBEDDING},

    {"*attn*", SRESID_KIND_ATTENTION},
    {"*attention*", SRESID_KIND_ATTENTION},
    {"*.q_proj.*", SRESID_KIND_ATTENTION},
    {"*.k_proj.*", SRESID_KIND_ATTENTION},
    {"*.v_proj.*", SRESID_KIND_ATTENTION},
    {"*.o_proj.*", SRESID_KIND_ATTENTION},

    {"*mlp*", SRESID_KIND_MLP},
    {"*.ffn.*", SRESID_KIND_MLP},
    {"*feed_forward*", SRESID_KIND_MLP},
    {"*block_sparse_moe*", SRESID_KIND_MLP},
    {"*.experts.*", SRESID_KIND_MLP},
    {"*DenseReluDense*", SRESID_KIND_MLP},
    {"*intermediate*", SRESID_KIND_MLP},
    {"*.output.dense.*", SRESID_KIND_MLP},
    {"*.gate_proj.*", SRESID_KIND_MLP},
    {"*.up_proj.*", SRESID_KIND_MLP},
    {"*.down_proj.*", SRESID_KIND_MLP},
    {"*layers.*.fc1.*", SRESID_KIND_MLP},
    {"*layers.*.fc2.*", SRESID_KIND_MLP},
};

static inline unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Iterative matcher. Only the most recent '*' needs to be remembered: when a
 * later literal run fails, letting that star eat one more byte is enough,
 * because any split an earlier star could try is also reachable from the
 * later one. So the cost is O(len(pattern) * len(s)) at worst, with no
 * recursion and no exponential blow-up. */
bool sresid__glob_match(const char *pattern, const char *s)
{
    if (!pattern || !s)
        return false;
    const unsigned char *p = (const unsigned char *)pattern;
    const unsigned char *t = (const unsigned char *)s;
    const unsigned char *star_p = NULL; /* pattern just after the last '*' */
    const unsigned char *star_t = NULL; /* where that star's run ends now */

    while (*t) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return true; /* a trailing star takes the rest */
            star_p = p;
            star_t = t;
        } else if (*p && (*p == '?' || ascii_lower(*p) == ascii_lower(*t))) {
            p++;
            t++;
        } else if (star_p) {
            p = star_p;
            t = ++star_t;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int32_t sresid__classify(const char *name, char *const *patterns, const int32_t *kinds,
                         size_t n, bool replace)
{
    if (!name)
        return SRESID_KIND_OTHER;
    if (patterns && kinds) {
        for (size_t i = 0; i < n; i++)
            if (sresid__glob_match(patterns[i], name))
                return kinds[i];
    }
    if (!replace) {
        for (size_t i = 0; i < sizeof default_rules / sizeof default_rules[0]; i++)
            if (sresid__glob_match(default_rules[i].pattern, name))
                return default_rules[i].kind;
    }
    return SRESID_KIND_OTHER;
}

/* Value of s[0..len) if it is all ASCII digits and at most INT32_MAX, else -1. */
static int64_t parse_index(const char *s, size_t len)
{
    if (len == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > INT32_MAX) /* stop before int64 could overflow too */
            return -1;
    }
    return v;
}

/* role and stack in one allocation, "role\0stack\0": freeing the role frees
 * both. The stack is name[0..stack_len), the role
 * name[0..start) + "{L}" + name[end..] (or the name itself when start ==
 * SIZE_MAX). */
static char *role_and_stack(const char *name, size_t len, size_t start, size_t end,
                            size_t stack_len)
{
    size_t role_len = start == SIZE_MAX ? len : start + 3 + (len - end);
    char *r = malloc(role_len + 1 + stack_len + 1);
    if (!r)
        return NULL;
    if (start == SIZE_MAX) {
        memcpy(r, name, len);
    } else {
        memcpy(r, name, start);
        memcpy(r + start, "{L}", 3);
        memcpy(r + start + 3, name + end, len - end);
    }
    r[role_len] = '\0';
    memcpy(r + role_len + 1, name, stack_len);
    r[role_len + 1 + stack_len] = '\0';
    return r;
}

/* The layer is the first '.'- or '/'-separated component that is all digits
 * and fits in int32; a longer all-digit component is skipped, and the search
 * goes on. Everything before it, less the separator, is the stack, so that
 * the encoder's and the decoder's layer 3 are two layers. */
bool sresid__layer_role(const char *name, int32_t *layer, char **role, const char **stack)
{
    size_t len = strlen(name);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '.' && name[i] != '/')
            continue;
        int64_t v = parse_index(name + start, i - start);
        if (v >= 0) {
            char *r = role_and_stack(name, len, start, i, start ? start - 1 : 0);
            if (!r)
                return false;
            *layer = (int32_t)v;
            *role = r;
            *stack = r + strlen(r) + 1;
            return true;
        }
        start = i + 1;
    }
    char *r = role_and_stack(name, len, SIZE_MAX, 0, 0);
    if (!r)
        return false;
    *layer = -1;
    *role = r;
    *stack = r + len + 1;
    return true;
}
