/* model.c: loading a llama-family GGUF model (hyperparameters, tensor shapes checked against
 * them) and the KV cache. The forward pass is in forward.c. */
#include "model.h"

#include "src/kernels/kernels.h"
#include "src/kernels/matmul.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache.h"

/* One row per architecture: everything the loader and the forward pass need to know about it. */
static const ar_arch_traits arch_traits[AR_ARCH_COUNT] = {
    [AR_ARCH_LLAMA] = {.name = "llama", .rope = AR_ROPE_NORM, .ffn_act = AR_FFN_SILU,
                       .rope_freqs = true, .swa = AR_SWA_ALL, .rms_eps = 1e-5f},
    [AR_ARCH_QWEN2] = {.name = "qwen2", .rope = AR_ROPE_NEOX, .ffn_act = AR_FFN_SILU,
                       .qkv_bias = true, .rms_eps = 1e-6f},
    [AR_ARCH_QWEN3] = {.name = "qwen3", .rope = AR_ROPE_NEOX, .ffn_act = AR_FFN_SILU,
                       .qk_norm = true, .rms_eps = 1e-6f},
    [AR_ARCH_GEMMA2] = {.name = "gemma2", .rope = AR_ROPE_NEOX, .ffn_act = AR_FFN_GELU_TANH,
                        .post_norms = true, .embd_scale = true, .softcap = true,
                        .swa = AR_SWA_EVEN, .rms_eps = 1e-6f},
    [AR_ARCH_PHI3] = {.name = "phi3", .rope = AR_ROPE_NEOX, .ffn_act = AR_FFN_SILU,
                      .fused_qkv = true, .fused_gate_up = true, .longrope = true,
                      .swa = AR_SWA_ALL, .rms_eps = 1e-5f},
};

const ar_arch_traits *ar_arch_get(ar_arch a) {
    return (unsigned)a < AR_ARCH_COUNT ? &arch_traits[a] : &arch_traits[AR_ARCH_LLAMA];
}

const char *ar_arch_name(ar_arch a) { return ar_arch_get(a)->name; }

static bool arch_from_name(ar_str name, ar_arch *out) {
    for (int a = 0; a < AR_ARCH_COUNT; a++)
        if (name.len == strlen(arch_traits[a].name) &&
            !memcmp(name.ptr, arch_traits[a].name, name.len)) {
            *out = (ar_arch)a;
            return true;
        }
    return false;
}

ar_model_params ar_model_default_params(void) {
    return (ar_model_params){.vocab_only = false, .resident = false, .repack = true};
}

/* ---- the weight fields of a layer ---- */

/* Every field of ar_layer is in one of these lists (checked below): code that walks a layer's
 * weights (streaming, repacking) stays right when a field is added. */
static const size_t layer_matrices[] = {
    offsetof(ar_layer, wq),   offsetof(ar_layer, wk),     offsetof(ar_layer, wv),
    offsetof(ar_layer, wqkv), offsetof(ar_layer, wo),     offsetof(ar_layer, w_gate),
    offsetof(ar_layer, w_up), offsetof(ar_layer, w_down),
};
static const size_t layer_vectors[] = {
    offsetof(ar_layer, attn_norm), offsetof(ar_layer, bq),       offsetof(ar_layer, bk),
    offsetof(ar_layer, bv),        offsetof(ar_layer, q_norm),   offsetof(ar_layer, k_norm),
    offsetof(ar_layer, attn_post_norm), offsetof(ar_layer, ffn_norm),
    offsetof(ar_layer, ffn_post_norm),
};
/* the weights come first in ar_layer, then n_swa, its one other field */
_Static_assert(offsetof(ar_layer, n_swa) ==
                   sizeof layer_matrices / sizeof(size_t) * sizeof(ar_tensor) +
                       sizeof layer_vectors / sizeof(size_t) * sizeof(float *),
               "a weight field of ar_layer is missing from layer_matrices / layer_vectors");

static bool in_range(const void *p, const void *from, size_t len) {
    return p && (uintptr_t)p >= (uintptr_t)from && (uintptr_t)p - (uintptr_t)from < len;
}

static const void *moved(const void *p, const void *from, const void *to) {
    return (const uint8_t *)to + ((const uint8_t *)p - (const uint8_t *)from);
}

int ar_layer_rebase(ar_layer *L, const void *from, size_t len, const void *to) {
    int n = 0;
    for (size_t i = 0; i < AR_ARRAY_LEN(layer_matrices); i++) {
        ar_tensor *t = (ar_tensor *)((uint8_t *)L + layer_matrices[i]);
        /* the view reads the file's bytes: a packed copy of the model's is not the view's */
        if (in_range(t->data, from, len)) t->data = moved(t->data, from, to), t->packed = NULL, n++;
    }
    for (size_t i = 0; i < AR_ARRAY_LEN(layer_vectors); i++) {
        const float **v = (const float **)((uint8_t *)L + layer_vectors[i]);
        if (in_range(*v, from, len)) *v = moved(*v, from, to), n++;
    }
    return n;
}

bool ar_layer_points_into(const ar_layer *L, const void *from, size_t len) {
    for (size_t i = 0; i < AR_ARRAY_LEN(layer_matrices); i++)
        if (in_range(((const ar_tensor *)((const uint8_t *)L + layer_matrices[i]))->data, from,
                     len))
            return true;
    for (size_t i = 0; i < AR_ARRAY_LEN(layer_vectors); i++)
        if (in_range(*(const float *const *)((const uint8_t *)L + layer_vectors[i]), from, len))
            return true;
    return false;
}

/* ---- hyperparameters ---- */

/* A required or defaulted u32 `<arch>.<suffix>` within [lo, hi]. */
static ar_status hp_u32(const ar_model *m, const char *arch, const char *suffix, bool required,
                        uint32_t dflt, uint32_t lo, uint32_t hi, int32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v = dflt;
    ar_status s = ar_gguf_get_u32(m->gguf, key, &v);
    if (s == AR_ERR_INVALID_ARG) {
        if (required) return ar_fail(AR_ERR_FORMAT, "%s: missing hyperparameter %s", m->path, key);
        v = dflt;
    } else if (s != AR_OK) {
        return s;
    }
    if (v < lo || v > hi)
        return ar_fail(AR_ERR_FORMAT, "%s: hyperparameter %s = %u out of range [%u, %u]", m->path,
                       key, v, lo, hi);
    *out = (int32_t)v;
    return AR_OK;
}

static ar_status hp_f32(const ar_model *m, const char *arch, const char *suffix, float dflt,
                        float lo, float hi, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float v = dflt;
    ar_status s = ar_gguf_get_f32(m->gguf, key, &v);
    if (s == AR_ERR_INVALID_ARG) v = dflt;
    else if (s != AR_OK) return s;
    if (!(v >= lo && v <= hi))
        return ar_fail(AR_ERR_FORMAT, "%s: hyperparameter %s = %g out of range [%g, %g]", m->path,
                       key, v, lo, hi);
    *out = v;
    return AR_OK;
}

static bool key_is(const char *arch, const char *key, const char *suffix) {
    size_t n = strlen(arch);
    return !strncmp(key, arch, n) && key[n] == '.' && !strcmp(key + n + 1, suffix);
}

/* Every `<arch>.` key must be one the loader reads, or one that does not change the math: a key
 * that changes it and is not implemented (a MoE expert count, ALiBi, a logit scale, ...) would
 * otherwise give wrong logits without a word. */
static ar_status check_arch_keys(const ar_model *m, const char *arch) {
    const ar_arch_traits *tr = ar_arch_get(m->hp.arch);
    static const char *const read[] = {
        "context_length", "embedding_length", "block_count", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv", "attention.key_length",
        "attention.value_length", "attention.layer_norm_rms_epsilon", "attention.scale",
        "rope.dimension_count", "rope.freq_base", "rope.scale_linear", "rope.scaling.type",
        "rope.scaling.factor", "rope.scaling.attn_factor", "rope.scaling.original_context_length",
        /* informational: vocab_size is the embedding's row count; the data layout names how
         * the converter permuted Q and K (already applied); finetuned is a training note */
        "vocab_size", "tensor_data_layout", "rope.scaling.finetuned"};
    size_t n = strlen(arch);
    for (uint64_t i = 0; i < m->gguf->n_kv; i++) {
        const char *key = m->gguf->kv[i].key;
        if (strncmp(key, arch, n) != 0 || key[n] != '.') continue;
        bool known = false;
        for (size_t k = 0; k < AR_ARRAY_LEN(read) && !known; k++) known = key_is(arch, key, read[k]);
        if (tr->swa != AR_SWA_NONE && key_is(arch, key, "attention.sliding_window")) known = true;
        if (tr->softcap && (key_is(arch, key, "attn_logit_softcapping") ||
                            key_is(arch, key, "final_logit_softcapping")))
            known = true;
        if (key_is(arch, key, "expert_count") || key_is(arch, key, "expert_used_count")) {
            uint32_t v = 1; /* a dense model may say 0 experts */
            known = ar_gguf_get_u32(m->gguf, key, &v) == AR_OK && v == 0;
            ar_clear_error();
        }
        if (!known)
            return ar_fail(AR_ERR_UNSUPPORTED,
                           "%s: metadata key %s is not supported for architecture %s (what it "
                           "changes in the model is not implemented)",
                           m->path, key, arch);
    }
    return AR_OK;
}

/* rope.scaling.* and the YaRN correction range (ggml_rope_yarn_corr_dims: the dimensions whose
 * wavelength spans between beta_fast = 32 and beta_slow = 1 rotations over the original context
 * ramp from extrapolation to interpolation). */
static ar_status load_rope_scaling(ar_model *m, const char *arch) {
    ar_hparams *hp = &m->hp;
    ar_status s;
    char key[128];
    float factor = 1.0f;
    ar_str stype = {0};
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    hp->rope_scaling = AR_ROPE_SCALING_LINEAR; /* llama.cpp's default when the key is absent */
    if ((s = ar_gguf_get_str(m->gguf, key, &stype)) == AR_OK) {
        static const struct {
            const char *name;
            ar_rope_scaling type;
        } types[] = {{"none", AR_ROPE_SCALING_NONE},
                     {"linear", AR_ROPE_SCALING_LINEAR},
                     {"yarn", AR_ROPE_SCALING_YARN},
                     {"longrope", AR_ROPE_SCALING_LONGROPE}};
        size_t k = 0;
        while (k < AR_ARRAY_LEN(types) &&
               !(stype.len == strlen(types[k].name) && !memcmp(stype.ptr, types[k].name, stype.len)))
            k++;
        if (k == AR_ARRAY_LEN(types))
            return ar_fail(AR_ERR_UNSUPPORTED,
                           "%s: rope scaling type '%.*s' (%s) is not supported: none, linear, "
                           "yarn, longrope are",
                           m->path, (int)AR_MIN(stype.len, 32), stype.ptr, key);
        hp->rope_scaling = types[k].type;
    } else if (s != AR_ERR_INVALID_ARG) {
        return s;
    }
    ar_clear_error();
    if (hp->rope_scaling == AR_ROPE_SCALING_LINEAR || hp->rope_scaling == AR_ROPE_SCALING_YARN) {
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        if (ar_gguf_find(m->gguf, key)) s = hp_f32(m, arch, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor);
        else s = hp_f32(m, arch, "rope.scale_linear", 1.0f, 1e-3f, 1e6f, &factor);
        if (s != AR_OK) return s;
    }
    hp->rope_freq_scale = 1.0f / factor;
    if ((s = hp_f32(m, arch, "rope.scaling.attn_factor", 1.0f, 1e-6f, 1e6f,
                    &hp->rope_attn_factor)) != AR_OK)
        return s;
    if ((s = hp_u32(m, arch, "rope.scaling.original_context_length", false,
                    (uint32_t)hp->n_ctx_train, 1, 1 << 24, &hp->n_ctx_orig)) != AR_OK)
        return s;
    if (hp->rope_scaling == AR_ROPE_SCALING_YARN) {
        const float beta_fast = 32.0f, beta_slow = 1.0f, pi = 3.14159265358979323846f;
        float dims[2];
        const float beta[2] = {beta_fast, beta_slow};
        for (int k = 0; k < 2; k++)
            dims[k] = (float)hp->n_rot * logf((float)hp->n_ctx_orig / (beta[k] * 2.0f * pi)) /
                      (2.0f * logf(hp->rope_base));
        hp->yarn_corr[0] = fmaxf(0.0f, floorf(dims[0]));
        hp->yarn_corr[1] = fminf((float)(hp->n_rot - 1), ceilf(dims[1]));
    }
    return AR_OK;
}

/* Sliding window, soft-capping and the attention scale: the keys the traits allow. */
static ar_status load_attention(ar_model *m, const char *arch) {
    ar_hparams *hp = &m->hp;
    const ar_arch_traits *tr = ar_arch_get(hp->arch);
    ar_status s;
    char key[128];
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (hp->arch == AR_ARCH_GEMMA2 && hp->n_layer == 46) /* Gemma 2 27B: query_pre_attn_scalar
                                                            = n_embd / n_head, as llama.cpp */
        hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    snprintf(key, sizeof key, "%s.attention.scale", arch);
    if (ar_gguf_find(m->gguf, key) &&
        (s = hp_f32(m, arch, "attention.scale", 0.0f, 1e-6f, 1e6f, &hp->attn_scale)) != AR_OK)
        return s;
    if (tr->softcap) {
        if ((s = hp_f32(m, arch, "attn_logit_softcapping", 50.0f, 1e-3f, 1e6f,
                        &hp->attn_softcap)) != AR_OK ||
            (s = hp_f32(m, arch, "final_logit_softcapping", 30.0f, 1e-3f, 1e6f,
                        &hp->final_softcap)) != AR_OK)
            return s;
    }
    /* defaults where the key is absent, as llama.cpp has them: Gemma 2 4096; Phi-3 files written
     * before the key existed by their layer count and training context */
    uint32_t dflt = 0;
    if (hp->arch == AR_ARCH_GEMMA2) dflt = 4096;
    if (hp->arch == AR_ARCH_PHI3) {
        if ((hp->n_layer == 32 || hp->n_layer == 40) && hp->n_ctx_train == 4096) dflt = 2047;
        else if (hp->n_layer == 32 && hp->n_head_kv == 32 && hp->n_ctx_train == 131072)
            dflt = 262144;
        else if (hp->n_layer == 40 && hp->n_ctx_train == 131072) dflt = 131072;
    }
    if (tr->swa != AR_SWA_NONE &&
        (s = hp_u32(m, arch, "attention.sliding_window", false, dflt, 0, 1u << 30, &hp->n_swa)) !=
            AR_OK)
        return s;
    return AR_OK;
}

static ar_status load_hparams(ar_model *m, const char *arch) {
    ar_hparams *hp = &m->hp;
    const ar_arch_traits *tr = ar_arch_get(hp->arch);
    ar_status s;
#define HP(call)                                                                                   \
    if ((s = (call)) != AR_OK) return s
    HP(check_arch_keys(m, arch));
    HP(hp_u32(m, arch, "embedding_length", true, 0, 1, 65536, &hp->n_embd));
    HP(hp_u32(m, arch, "block_count", true, 0, 1, 4096, &hp->n_layer));
    HP(hp_u32(m, arch, "attention.head_count", true, 0, 1, 4096, &hp->n_head));
    HP(hp_u32(m, arch, "attention.head_count_kv", false, (uint32_t)hp->n_head, 1, 4096,
              &hp->n_head_kv));
    HP(hp_u32(m, arch, "feed_forward_length", true, 0, 1, 1 << 20, &hp->n_ff));
    HP(hp_u32(m, arch, "context_length", false, 2048, 1, 1 << 24, &hp->n_ctx_train));
    uint32_t dflt_hd = (uint32_t)(hp->n_embd / hp->n_head);
    HP(hp_u32(m, arch, "attention.key_length", false, dflt_hd, 1, 65536, &hp->head_dim));
    int32_t vlen = 0;
    HP(hp_u32(m, arch, "attention.value_length", false, (uint32_t)hp->head_dim, 1, 65536, &vlen));
    if (vlen != hp->head_dim)
        return ar_fail(AR_ERR_UNSUPPORTED, "%s: key length %d != value length %d", m->path,
                       hp->head_dim, vlen);
    HP(hp_u32(m, arch, "rope.dimension_count", false, (uint32_t)hp->head_dim, 0, 65536,
              &hp->n_rot));
    HP(hp_f32(m, arch, "attention.layer_norm_rms_epsilon", tr->rms_eps, 1e-12f, 1.0f,
              &hp->rms_eps));
    HP(hp_f32(m, arch, "rope.freq_base", 10000.0f, 1e-3f, 1e12f, &hp->rope_base));
    if (hp->n_head % hp->n_head_kv != 0)
        return ar_fail(AR_ERR_FORMAT, "%s: head count %d is not a multiple of KV head count %d",
                       m->path, hp->n_head, hp->n_head_kv);
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return ar_fail(AR_ERR_FORMAT, "%s: rope dimension %d must be even and <= head size %d",
                       m->path, hp->n_rot, hp->head_dim);
    HP(load_rope_scaling(m, arch));
    HP(load_attention(m, arch));
#undef HP
    ar_clear_error();
    hp->rope_type = tr->rope;
    return AR_OK;
}

/* ---- tensors ---- */

/* Finds `name` and checks it is 2-D [n_in, n_out] (or 1-D [n_in] when n_out == 0). */
static ar_status get_tensor(ar_model *m, const char *name, int64_t n_in, int64_t n_out,
                            bool optional, ar_tensor *out) {
    memset(out, 0, sizeof *out);
    const ar_gguf_tensor *t = ar_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (optional) return AR_OK;
        return ar_fail(AR_ERR_FORMAT, "%s: missing tensor %s", m->path, name);
    }
    int64_t want1 = n_out ? n_out : 1;
    bool ok = t->ne[0] == n_in && t->ne[1] == want1 && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok)
        return ar_fail(AR_ERR_FORMAT,
                       "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       m->path, name, (long long)t->ne[0], (long long)t->ne[1],
                       (long long)t->ne[2], (long long)t->ne[3], (long long)n_in,
                       (long long)want1);
    const ar_type_traits *tt = ar_type_get(t->type);
    if (!tt) return ar_fail(AR_ERR_UNSUPPORTED, "%s: tensor %s: unsupported type", m->path, name);
    /* the weights are used in place: C needs a float (and a block's fp16 scale) aligned */
    if ((uintptr_t)t->data % 4 != 0)
        return ar_fail(AR_ERR_UNSUPPORTED,
                       "%s: tensor %s: data at file offset %llu is not 4-byte aligned "
                       "(general.alignment %llu)",
                       m->path, name,
                       (unsigned long long)((const uint8_t *)t->data - m->gguf->map),
                       (unsigned long long)m->gguf->alignment);
    if (n_out) { /* a matmul weight: the activation format's blocks must tile a row too */
        const ar_type_traits *at = ar_type_get(tt->vec_dot_type);
        if (!at || n_in % at->blck_size != 0)
            return ar_fail(AR_ERR_UNSUPPORTED,
                           "%s: tensor %s: row of %lld values is not a multiple of the %s "
                           "activation block",
                           m->path, name, (long long)n_in, at ? at->name : "?");
    }
    if (m->claimed) m->claimed[t - m->gguf->tensors] = 1;
    out->name = t->name;
    out->type = t->type;
    for (int i = 0; i < 4; i++) out->ne[i] = t->ne[i];
    out->nb1 = ar_row_size(t->type, t->ne[0]);
    out->data = t->data;
    return AR_OK;
}

/* A 1-D F32 vector of n values, copied (dequantized) into `owned`: the forward pass never reads
 * the file's pages around it, which with packed matrices are otherwise cold (and with the page
 * cache's 2 MB folios, one read would map the whole folio). */
typedef struct owned_buf {
    float *data;
    size_t used, cap;
} owned_buf;

static ar_status get_vector(ar_model *m, owned_buf *ob, const char *name, int64_t n,
                            bool optional, const float **out) {
    ar_tensor t;
    ar_status s = get_tensor(m, name, n, 0, optional, &t);
    *out = NULL;
    if (s != AR_OK || !t.data) return s;
    const ar_type_traits *tt = ar_type_get(t.type);
    if (ob->used + (size_t)n > ob->cap)
        return ar_fail(AR_ERR_INTERNAL, "%s: vector buffer too small", m->path);
    tt->to_float(t.data, ob->data + ob->used, n);
    *out = ob->data + ob->used;
    ob->used += (size_t)n;
    return AR_OK;
}

/* The tensors of one layer the architecture's traits call for. */
static ar_status load_layer(ar_model *m, owned_buf *ob, int32_t l) {
    const ar_hparams *hp = &m->hp;
    const ar_arch_traits *tr = ar_arch_get(hp->arch);
    ar_layer *L = &m->layers[l];
    const int64_t E = hp->n_embd, F = hp->n_ff, HD = hp->head_dim;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KVD = (int64_t)hp->n_head_kv * hp->head_dim;
    ar_status s;
    char name[96];
#define T(field, suffix, n_in, n_out)                                                              \
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);                                           \
    if ((s = get_tensor(m, name, n_in, n_out, false, &L->field)) != AR_OK) return s
#define VEC(field, suffix, n, opt)                                                                 \
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);                                           \
    if ((s = get_vector(m, ob, name, n, opt, &L->field)) != AR_OK) return s
    VEC(attn_norm, "attn_norm.weight", E, false);
    if (tr->fused_qkv) {
        T(wqkv, "attn_qkv.weight", E, QD + 2 * KVD);
    } else {
        T(wq, "attn_q.weight", E, QD);
        T(wk, "attn_k.weight", E, KVD);
        T(wv, "attn_v.weight", E, KVD);
        VEC(bq, "attn_q.bias", QD, !tr->qkv_bias);
        VEC(bk, "attn_k.bias", KVD, !tr->qkv_bias);
        VEC(bv, "attn_v.bias", KVD, !tr->qkv_bias);
    }
    if (tr->qk_norm) {
        VEC(q_norm, "attn_q_norm.weight", HD, false);
        VEC(k_norm, "attn_k_norm.weight", HD, false);
    }
    T(wo, "attn_output.weight", QD, E);
    if (tr->post_norms) {
        VEC(attn_post_norm, "post_attention_norm.weight", E, false);
        VEC(ffn_post_norm, "post_ffw_norm.weight", E, false);
    }
    VEC(ffn_norm, "ffn_norm.weight", E, false);
    if (tr->fused_gate_up) {
        T(w_up, "ffn_up.weight", E, 2 * F);
    } else {
        T(w_gate, "ffn_gate.weight", E, F);
        T(w_up, "ffn_up.weight", E, F);
    }
    T(w_down, "ffn_down.weight", F, E);
#undef T
#undef VEC
    bool sliding = tr->swa == AR_SWA_ALL || (tr->swa == AR_SWA_EVEN && l % 2 == 0);
    L->n_swa = sliding ? hp->n_swa : 0;
    return AR_OK;
}

/* rope_freqs (Llama 3.1+) and the longrope pair (Phi-3) where the traits allow them. */
static ar_status load_rope_factors(ar_model *m, owned_buf *ob) {
    const ar_hparams *hp = &m->hp;
    const ar_arch_traits *tr = ar_arch_get(hp->arch);
    const int64_t n = hp->n_rot / 2;
    ar_status s;
    if (tr->rope_freqs &&
        (s = get_vector(m, ob, "rope_freqs.weight", n, true, &m->rope_freqs)) != AR_OK)
        return s;
    if (tr->longrope) {
        bool want = hp->rope_scaling == AR_ROPE_SCALING_LONGROPE;
        if ((s = get_vector(m, ob, "rope_factors_long.weight", n, !want, &m->rope_long)) != AR_OK ||
            (s = get_vector(m, ob, "rope_factors_short.weight", n, !want,
                            &m->rope_short)) != AR_OK)
            return s;
        if ((m->rope_long == NULL) != (m->rope_short == NULL))
            return ar_fail(AR_ERR_FORMAT, "%s: rope_factors_long.weight and "
                                          "rope_factors_short.weight come as a pair", m->path);
    }
    const float *f[3] = {m->rope_freqs, m->rope_long, m->rope_short};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; f[k] && i < n; i++)
            if (!(f[k][i] >= 1e-6f && f[k][i] <= 1e6f))
                return ar_fail(AR_ERR_FORMAT, "%s: rope frequency factor %lld is %g, not in "
                                              "[1e-6, 1e6]", m->path, (long long)i, f[k][i]);
    return AR_OK;
}

/* Every tensor of the file must have been claimed above: one the forward pass would not use is
 * part of a computation arbor does not implement. */
static ar_status check_all_tensors_used(const ar_model *m) {
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        if (!m->claimed[i])
            return ar_fail(AR_ERR_UNSUPPORTED,
                           "%s: tensor %s is not used by architecture %s (refusing to ignore it)",
                           m->path, m->gguf->tensors[i].name, ar_arch_name(m->hp.arch));
    return AR_OK;
}

static ar_status load_tensors(ar_model *m) {
    const ar_hparams *hp = &m->hp;
    ar_status s;
    const ar_gguf_tensor *emb = ar_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return ar_fail(AR_ERR_FORMAT, "%s: missing tensor token_embd.weight", m->path);
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return ar_fail(AR_ERR_FORMAT, "%s: token_embd.weight: vocabulary size %lld out of range",
                       m->path, (long long)emb->ne[1]);
    m->hp.n_vocab = (int32_t)emb->ne[1];
    int64_t E = hp->n_embd, V = hp->n_vocab;
    int64_t QD = (int64_t)hp->n_head * hp->head_dim, KVD = (int64_t)hp->n_head_kv * hp->head_dim;
    m->claimed = calloc(m->gguf->n_tensors ? m->gguf->n_tensors : 1, 1);
    if (!m->claimed) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    if ((s = get_tensor(m, "token_embd.weight", E, V, false, &m->tok_embd)) != AR_OK) return s;
    if ((s = get_tensor(m, "output.weight", E, V, true, &m->output)) != AR_OK) return s;
    if (!m->output.data) m->output = m->tok_embd; /* tied */

    /* room for every 1-D tensor in case none is stored as F32 */
    size_t per_layer = 4 * (size_t)E + (size_t)QD + 2 * (size_t)KVD + 2 * (size_t)hp->head_dim;
    size_t n_vec = (size_t)E + (size_t)hp->n_layer * per_layer + 3 * (size_t)(hp->n_rot / 2 + 1);
    owned_buf ob = {.data = calloc(n_vec, sizeof(float)), .cap = n_vec};
    if (!ob.data) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    m->owned = ob.data;
    if ((s = get_vector(m, &ob, "output_norm.weight", E, false, &m->output_norm)) != AR_OK)
        return s;
    if ((s = load_rope_factors(m, &ob)) != AR_OK) return s;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    for (int32_t l = 0; l < hp->n_layer; l++)
        if ((s = load_layer(m, &ob, l)) != AR_OK) return s;
    return check_all_tensors_used(m);
}

uint64_t ar_model_pass_bytes(const ar_model *m, int32_t n_layers) {
    if (n_layers <= 0 || n_layers > m->hp.n_layer) n_layers = m->hp.n_layer;
    uint64_t total = (uint64_t)m->output.nb1 * (uint64_t)m->output.ne[1];
    for (int32_t l = 0; l < n_layers; l++)
        for (size_t i = 0; i < AR_ARRAY_LEN(layer_matrices); i++) {
            const ar_tensor *t = (const ar_tensor *)((const uint8_t *)&m->layers[l] +
                                                     layer_matrices[i]);
            total += (uint64_t)t->nb1 * (uint64_t)t->ne[1];
        }
    return total;
}

uint64_t ar_model_weight_bytes(const ar_model *m) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) total += m->gguf->tensors[i].nbytes;
    return total;
}

/* The matrices the forward pass multiplies by, for packing. */
static int model_matrices(ar_model *m, ar_tensor **out) {
    int n = 0;
    for (int32_t l = 0; l < m->hp.n_layer; l++)
        for (size_t i = 0; i < AR_ARRAY_LEN(layer_matrices); i++) {
            ar_tensor *t = (ar_tensor *)((uint8_t *)&m->layers[l] + layer_matrices[i]);
            if (!t->data) continue; /* absent in this architecture (fused or not) */
            if (out) out[n] = t;
            n++;
        }
    if (out) out[n] = &m->output;
    return n + 1;
}

/* ---- packed weights (the default) ----
 * Every matrix whose format has a 16-row kernel over packed groups on this CPU is used in that
 * layout (kernels.h: a rearrangement of its bytes, the same size), not in the file's: the file's
 * pages of those matrices are released once packed, so the process holds one copy. Models with
 * more than PACK_CACHE_MIN bytes to pack write the packed form once to the per-user cache
 * (packed/<key>.bin, the key hashing the file's identity and what is packed) and map it on later
 * loads, which then cost nothing; smaller ones (and any model whose cache entry cannot be
 * written) are packed into anonymous memory at every load. A cache entry that does not match
 * what this load expects is ignored with a warning (m->pack_note) and rewritten. */

#define PACK_CACHE_MIN ((size_t)64 << 20)
#define PACK_MAGIC     "ARBORPK1"
#define PACK_VERSION   1u
#define PACK_ALIGN     4096 /* of every matrix in the cache file (direct I/O can read them) */
#define PACK_HUGE      ((size_t)2 << 20)

typedef struct pack_header {
    char magic[8];
    uint32_t version, n;
    uint64_t key, file_bytes;
} pack_header; /* then n (offset, bytes) pairs of uint64, all within the first PACK_ALIGN x k */

typedef struct pack_plan {
    int n;
    ar_tensor **mats;
    size_t *off, *bytes; /* each matrix's place in the packed image */
    size_t header, total;
    uint64_t key;
} pack_plan;

static void pack_note(ar_model *m, const char *fmt, const char *a, const char *b) {
    snprintf(m->pack_note, sizeof m->pack_note, fmt, a, b);
}

/* Releases the file's pages of [p, p + n) (only whole pages inside it): the packed form is read
 * instead. Harmless if they are read again: a private read-only mapping refills from the file. */
static void release_pages(const ar_model *m, const void *p, size_t n) {
    if (!m->gguf->owns_map) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Whether the verifier's gguf has tensor `name` with t's type, shape and bytes. */
/* Whether the verifier's gguf has a tensor of t's name, type and shape. */
static const ar_gguf_tensor *same_shape(const ar_gguf *v, const ar_gguf_tensor *t) {
    const ar_gguf_tensor *u = ar_gguf_find_tensor(v, t->name);
    if (!u || u->type != t->type || u->n_dims != t->n_dims || u->nbytes != t->nbytes) return NULL;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (u->ne[d] != t->ne[d]) return NULL;
    return u;
}

/* Whether n bytes at offset oa of file fa equal those at ob of fb: read in chunks with pread, so
 * that comparing two models does not fault their mappings into the resident set (a budget's
 * peak would count them), and dropped from the page cache after. */
#define CUT_CHUNK (1u << 20)
static bool same_file_bytes(int fa, uint64_t oa, int fb, uint64_t ob, uint64_t n, uint8_t *buf) {
    bool same = true;
    for (uint64_t done = 0; same && done < n;) {
        const size_t want = (size_t)AR_MIN((uint64_t)CUT_CHUNK, n - done);
        same = pread(fa, buf, want, (off_t)(oa + done)) == (ssize_t)want &&
               pread(fb, buf + CUT_CHUNK, want, (off_t)(ob + done)) == (ssize_t)want &&
               memcmp(buf, buf + CUT_CHUNK, want) == 0;
        done += want;
    }
    posix_fadvise(fa, (off_t)oa, (off_t)n, POSIX_FADV_DONTNEED);
    posix_fadvise(fb, (off_t)ob, (off_t)n, POSIX_FADV_DONTNEED);
    return same;
}

/* Every tensor of d equal in bytes to v's of its name (shapes already checked). */
static bool same_tensor_bytes(const ar_gguf *d, const ar_gguf *v) {
    if (!d->owns_map || !v->owns_map) { /* in memory: nothing to fault in */
        for (uint64_t i = 0; i < d->n_tensors; i++) {
            const ar_gguf_tensor *t = &d->tensors[i], *u = ar_gguf_find_tensor(v, t->name);
            if (u->data != t->data && memcmp(u->data, t->data, t->nbytes) != 0) return false;
        }
        return true;
    }
    const int fd = open(d->path, O_RDONLY | O_CLOEXEC), fv = open(v->path, O_RDONLY | O_CLOEXEC);
    uint8_t *buf = malloc(2 * (size_t)CUT_CHUNK);
    bool same = fd >= 0 && fv >= 0 && buf;
    for (uint64_t i = 0; same && i < d->n_tensors; i++) {
        const ar_gguf_tensor *t = &d->tensors[i], *u = ar_gguf_find_tensor(v, t->name);
        same = same_file_bytes(fd, (uint64_t)((const uint8_t *)t->data - d->map), fv,
                               (uint64_t)((const uint8_t *)u->data - v->map), t->nbytes, buf);
    }
    free(buf);
    if (fd >= 0) close(fd);
    if (fv >= 0) close(fv);
    return same;
}

bool ar_model_is_cut_of(const ar_model *d, const ar_model *v) {
    if (!d || !v || d == v || d->vocab_only || v->vocab_only) return false;
    const int32_t L = d->hp.n_layer;
    if (L < 1 || L >= v->hp.n_layer) return false;
    ar_hparams a = d->hp; /* every field 4 bytes wide: no padding to compare */
    a.n_layer = v->hp.n_layer;
    if (memcmp(&a, &v->hp, sizeof a) != 0) return false;
    /* the same tensor set: the verifier's outside the layers and in its first L layers */
    uint64_t expected = 0;
    for (uint64_t i = 0; i < v->gguf->n_tensors; i++) {
        const char *name = v->gguf->tensors[i].name;
        if (strncmp(name, "blk.", 4) != 0) {
            expected++;
            continue;
        }
        char *end = NULL;
        const long l = strtol(name + 4, &end, 10);
        if (end && *end == '.' && l >= 0 && l < L) expected++;
    }
    if (expected != d->gguf->n_tensors) return false;
    /* names, types and shapes first (cheap), then the bytes */
    for (uint64_t i = 0; i < d->gguf->n_tensors; i++)
        if (!same_shape(v->gguf, &d->gguf->tensors[i])) return false;
    return same_tensor_bytes(d->gguf, v->gguf);
}

void ar_model_release_memory(ar_model *m) {
    if (!m || !m->gguf->owns_map) return;
    munlock(m->gguf->map, m->gguf->size);
    release_pages(m, m->gguf->map, m->gguf->size);
    if (m->packed && m->packed_mapped) {
        munlock(m->packed, m->packed_bytes);
        madvise(m->packed, m->packed_bytes, MADV_DONTNEED);
        m->packed_locked = false;
    }
    m->resident = false;
    m->faulted_in = false;
}

/* What is packed where; n = 0 when nothing is. */
static ar_status pack_plan_make(ar_model *m, pack_plan *pl) {
    *pl = (pack_plan){0};
    const int n = model_matrices(m, NULL);
    ar_tensor **all = malloc(sizeof *all * (size_t)n);
    pl->mats = malloc(sizeof *pl->mats * (size_t)n);
    pl->off = malloc(sizeof *pl->off * (size_t)n);
    pl->bytes = malloc(sizeof *pl->bytes * (size_t)n);
    if (!all || !pl->mats || !pl->off || !pl->bytes) {
        free(all);
        return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    }
    model_matrices(m, all);
    for (int i = 0; i < n; i++) {
        const size_t bytes = ar_matmul_packed_bytes(all[i]);
        bool seen = false; /* a tied output is the embedding: packed once */
        for (int j = 0; j < pl->n; j++) seen |= pl->mats[j] == all[i];
        if (bytes && !seen) pl->mats[pl->n] = all[i], pl->bytes[pl->n++] = bytes;
    }
    free(all);
    pl->header = (sizeof(pack_header) + 16 * (size_t)pl->n + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
    uint64_t h = 0;
    ar_status s = ar_file_identity(m->path, &h);
    if (s != AR_OK) ar_clear_error(), h = 0; /* no identity: no cache (pl->key = 0) */
    size_t off = pl->header;
    for (int i = 0; i < pl->n; i++) {
        const ar_tensor *t = pl->mats[i];
        pl->off[i] = off;
        off += (pl->bytes[i] + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
        const uint64_t f[5] = {h, (uint64_t)t->type, (uint64_t)t->ne[0], (uint64_t)t->ne[1],
                               (uint64_t)((const uint8_t *)t->data - m->gguf->map)};
        h = h ? XXH64(f, sizeof f, PACK_VERSION) : 0;
    }
    pl->total = off;
    pl->key = h;
    return AR_OK;
}

static void pack_plan_free(pack_plan *pl) {
    free(pl->mats);
    free(pl->off);
    free(pl->bytes);
}

/* Packs matrix i into out (the plan's bytes), then releases its file pages. */
static void pack_one(ar_model *m, const pack_plan *pl, int i, void *out) {
    ar_matmul_repack(pl->mats[i], out);
    release_pages(m, pl->mats[i]->data, (size_t)pl->mats[i]->ne[1] * pl->mats[i]->nb1);
}

static void pack_attach(ar_model *m, const pack_plan *pl, uint8_t *base) {
    for (int i = 0; i < pl->n; i++) pl->mats[i]->packed = base + pl->off[i];
}

/* 2 MB aligned anonymous memory (huge pages asked for: the kernels stream it whole). */
static ar_status pack_in_memory(ar_model *m, const pack_plan *pl) {
    const size_t total = (pl->total + PACK_HUGE - 1) / PACK_HUGE * PACK_HUGE;
    void *mem = NULL;
    if (posix_memalign(&mem, PACK_HUGE, total) != 0)
        return ar_fail(AR_ERR_NOMEM, "%s: no memory for the packed weights (%zu MB)", m->path,
                       total >> 20);
#ifdef MADV_HUGEPAGE
    madvise(mem, total, MADV_HUGEPAGE); /* advice: failure is harmless */
#endif
    for (int i = 0; i < pl->n; i++) pack_one(m, pl, i, (uint8_t *)mem + pl->off[i]);
    m->packed = mem;
    m->packed_bytes = total;
    m->packed_mapped = false;
    pack_attach(m, pl, mem);
    return AR_OK;
}

/* Maps the cache entry when it is this plan's; false (with m->pack_note) when it is not. */
static bool pack_map_cached(ar_model *m, const pack_plan *pl, const char *path) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false; /* no entry yet */
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && (size_t)st.st_size == pl->total;
    uint8_t *head = ok ? malloc(pl->header) : NULL;
    ok = head && pread(fd, head, pl->header, 0) == (ssize_t)pl->header;
    if (ok) {
        pack_header h;
        memcpy(&h, head, sizeof h);
        ok = !memcmp(h.magic, PACK_MAGIC, 8) && h.version == PACK_VERSION &&
             h.n == (uint32_t)pl->n && h.key == pl->key && h.file_bytes == pl->total;
        for (int i = 0; ok && i < pl->n; i++) {
            uint64_t e[2];
            memcpy(e, head + sizeof h + 16 * (size_t)i, 16);
            ok = e[0] == pl->off[i] && e[1] == pl->bytes[i];
        }
    }
    free(head);
    void *map = MAP_FAILED;
    if (ok) { /* at a 2 MB aligned address: the page cache's large folios map as huge pages */
        uint8_t *r = mmap(NULL, pl->total + PACK_HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        if (r != MAP_FAILED) {
            uint8_t *a = (uint8_t *)(((uintptr_t)r + PACK_HUGE - 1) & ~(uintptr_t)(PACK_HUGE - 1));
            map = mmap(a, pl->total, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
            if (a > r) munmap(r, (size_t)(a - r));
            munmap(a + pl->total, (size_t)(r + pl->total + PACK_HUGE - (a + pl->total)));
            if (map == MAP_FAILED) munmap(a, pl->total);
        }
    }
    close(fd);
    if (map == MAP_FAILED) {
        pack_note(m, "ignored the packed-weights cache entry %s%s: it does not match this model "
                     "(rewritten)", path, "");
        return false;
    }
    m->packed = map;
    m->packed_bytes = pl->total;
    m->packed_mapped = true;
    pack_attach(m, pl, map);
    /* keep the mapped weights resident as they are first read, as anonymous memory would be
     * (no swap): otherwise memory pressure or proactive reclaim (DAMON, in some VMs) evicts
     * them between tokens' uses and decoding reads them from disk again. Only when they fit in
     * half of the RAM; a refused lock (RLIMIT_MEMLOCK) changes nothing else. */
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && pl->total <= (size_t)pages * (size_t)page / 2)
        m->packed_locked = mlock2(map, pl->total, MLOCK_ONFAULT) == 0;
    for (int i = 0; i < pl->n; i++)
        release_pages(m, pl->mats[i]->data, (size_t)pl->mats[i]->ne[1] * pl->mats[i]->nb1);
    return true;
}

/* Writes the cache entry at path (through a temporary file renamed into place). */
static ar_status pack_write_cache(ar_model *m, const pack_plan *pl, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ar_fail(AR_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t cap = pl->header;
    for (int i = 0; i < pl->n; i++) cap = AR_MAX(cap, pl->bytes[i]);
    uint8_t *buf = ar_aligned_alloc(cap);
    bool ok = buf != NULL;
    if (ok) {
        pack_header h = {.version = PACK_VERSION, .n = (uint32_t)pl->n, .key = pl->key,
                         .file_bytes = pl->total};
        memcpy(h.magic, PACK_MAGIC, 8);
        memcpy(buf, &h, sizeof h);
        for (int i = 0; i < pl->n; i++) {
            const uint64_t e[2] = {pl->off[i], pl->bytes[i]};
            memcpy(buf + sizeof h + 16 * (size_t)i, e, 16);
        }
        ok = pwrite(fd, buf, pl->header, 0) == (ssize_t)pl->header;
    }
    for (int i = 0; ok && i < pl->n; i++) {
        pack_one(m, pl, i, buf);
        for (size_t done = 0; ok && done < pl->bytes[i];) {
            const ssize_t w = pwrite(fd, buf + done, pl->bytes[i] - done, (off_t)(pl->off[i] + done));
            ok = w > 0 || (w < 0 && errno == EINTR);
            if (w > 0) done += (size_t)w;
        }
    }
    ok = ok && ftruncate(fd, (off_t)pl->total) == 0;
    const int err = errno;
    ar_aligned_free(buf);
    if (close(fd) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ar_fail(AR_ERR_IO, "%s: cannot write: %s", path, strerror(ok ? errno : err));
    }
    return AR_OK;
}

static ar_status pack_weights(ar_model *m) {
    pack_plan pl;
    ar_status s = pack_plan_make(m, &pl);
    if (s != AR_OK || pl.n == 0) {
        pack_plan_free(&pl);
        return s;
    }
    char path[4096], name[64];
    snprintf(name, sizeof name, "packed/%016llx.bin", (unsigned long long)pl.key);
    /* ARBOR_PACK_CACHE_MIN (bytes) overrides the threshold: tests use the cache with tiny models */
    const char *min_env = getenv("ARBOR_PACK_CACHE_MIN");
    const size_t min = min_env ? (size_t)strtoull(min_env, NULL, 10) : PACK_CACHE_MIN;
    const bool cache = pl.key && pl.total >= min && m->gguf->owns_map &&
                       ar_cache_path(name, path, sizeof path) == AR_OK;
    if (cache && pack_map_cached(m, &pl, path)) {
        m->packed_from = "cache";
    } else if (cache && pack_write_cache(m, &pl, path) == AR_OK && pack_map_cached(m, &pl, path)) {
        m->packed_from = "cache (written)";
    } else {
        if (cache) pack_note(m, "packed weights kept in memory: %s%s", ar_last_error(), "");
        ar_clear_error();
        s = pack_in_memory(m, &pl);
        m->packed_from = "memory";
    }
    if (s == AR_OK) {
        char note[sizeof m->pack_note] = "";
        ar_kernels_tune((const ar_tensor *const *)pl.mats, pl.n, pl.total >= PACK_CACHE_MIN, note,
                        sizeof note);
        if (note[0] && !m->pack_note[0]) memcpy(m->pack_note, note, sizeof note);
    }
    /* what the file's mapping is still read for (embedding rows, norms) must not bring in the
     * 2 MB huge pages around it (the page cache's large folios map whole where they can) */
#ifdef MADV_NOHUGEPAGE
    if (s == AR_OK && m->gguf->owns_map)
        madvise((void *)m->gguf->map, m->gguf->size, MADV_NOHUGEPAGE);
#endif
    pack_plan_free(&pl);
    return s;
}

/* Touches every page the model reads so a resident model never faults during drafting, and
 * locks them in memory when the process may (RLIMIT_MEMLOCK); failure to lock is not an error.
 * The file's pages of packed matrices are not read: the packed form is touched instead. */
static void make_resident(ar_model *m) {
    const ar_gguf *g = m->gguf;
    if (!g->owns_map) return;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    bool locked = true;
    ar_tensor *mats[1024];
    const int n = model_matrices(m, NULL) <= 1024 ? model_matrices(m, mats) : 0;
    for (size_t off = 0; off < g->size; off += page) {
        bool skip = false;
        for (int i = 0; i < n && !skip; i++) {
            const uint8_t *d = mats[i]->data;
            skip = mats[i]->packed && g->map + off >= d &&
                   g->map + off + page <= d + (size_t)mats[i]->ne[1] * mats[i]->nb1;
        }
        if (skip) continue;
        sink ^= g->map[off];
        locked &= mlock(g->map + off, page) == 0;
    }
    if (m->packed) {
        for (size_t off = 0; off < m->packed_bytes; off += page) sink ^= ((uint8_t *)m->packed)[off];
        locked &= mlock(m->packed, m->packed_bytes) == 0;
    }
    (void)sink;
    m->resident = locked;
    m->faulted_in = true;
}

ar_status ar_model_load(const char *path, ar_model_params params, ar_model **out) {
    *out = NULL;
    ar_runtime_init();
    ar_model *m = calloc(1, sizeof *m);
    if (!m) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", path);
    m->path = strdup(path);
    m->vocab_only = params.vocab_only;
    ar_status s = m->path ? ar_gguf_open(path, &m->gguf) : AR_ERR_NOMEM;
    if (s != AR_OK) goto fail;
    if ((s = ar_vocab_load(m->gguf, &m->vocab)) != AR_OK) goto fail;
    if (!params.vocab_only) {
        ar_str arch = {0};
        if (ar_gguf_get_str(m->gguf, "general.architecture", &arch) != AR_OK) {
            s = ar_fail(AR_ERR_FORMAT, "%s: missing general.architecture", path);
            goto fail;
        }
        char name[32] = {0};
        memcpy(name, arch.ptr, AR_MIN(arch.len, sizeof name - 1));
        if (!arch_from_name(arch, &m->hp.arch)) {
            s = ar_fail(AR_ERR_UNSUPPORTED,
                        "%s: architecture '%s' is not supported (llama, qwen2, qwen3, gemma2, "
                        "phi3 are)",
                        path, name);
            goto fail;
        }
        if ((s = load_hparams(m, name)) != AR_OK) goto fail;
        s = load_tensors(m);
        free(m->claimed);
        m->claimed = NULL;
        if (s != AR_OK) goto fail;
        if (ar_vocab_n_tokens(m->vocab) > m->hp.n_vocab + 128 ||
            ar_vocab_n_tokens(m->vocab) < 1) {
            s = ar_fail(AR_ERR_FORMAT, "%s: tokenizer has %d tokens but the model's vocabulary is %d",
                        path, ar_vocab_n_tokens(m->vocab), m->hp.n_vocab);
            goto fail;
        }
        if (params.repack && (s = pack_weights(m)) != AR_OK) goto fail;
        if (params.resident) make_resident(m);
    }
    *out = m;
    return AR_OK;
fail:
    ar_model_free(m);
    return s;
}

void ar_model_free(ar_model *m) {
    if (!m) return;
    if (m->resident) munlock(m->gguf->map, m->gguf->size);
    if ((m->resident || m->packed_locked) && m->packed) munlock(m->packed, m->packed_bytes);
    ar_vocab_free(m->vocab);
    ar_gguf_close(m->gguf);
    free(m->layers);
    free(m->owned);
    if (m->packed_mapped) munmap(m->packed, m->packed_bytes);
    else free(m->packed);
    free(m->path);
    free(m);
}

/* ---- KV cache ---- */

uint64_t ar_kv_bytes(const ar_model *m, int32_t n_ctx, int32_t n_layer, ar_type type) {
    if (n_layer <= 0 || n_layer > m->hp.n_layer) n_layer = m->hp.n_layer;
    uint64_t elt = type == AR_TYPE_F16 ? 2 : 4;
    return 2ull * (uint64_t)n_layer * (uint64_t)n_ctx * (uint64_t)m->hp.n_head_kv *
           (uint64_t)m->hp.head_dim * elt;
}

ar_status ar_kv_create(const ar_model *m, int32_t n_ctx, int32_t n_layer, ar_type type,
                       ar_kv **out) {
    *out = NULL;
    if (n_ctx < 1) return ar_fail(AR_ERR_INVALID_ARG, "context size %d must be >= 1", n_ctx);
    if (type != AR_TYPE_F32 && type != AR_TYPE_F16)
        return ar_fail(AR_ERR_INVALID_ARG, "KV cache type must be f32 or f16");
    if (n_layer <= 0 || n_layer > m->hp.n_layer) n_layer = m->hp.n_layer;
    /* sizes that overflow are refused here; whether the cache fits in memory is the engine's
     * one check of the whole context (sched/engine.c) */
    uint64_t cell =
        (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim * (type == AR_TYPE_F16 ? 2 : 4);
    uint64_t bytes;
    if (!ar_mul_ok(cell, 2ull * (uint64_t)n_layer, &bytes) ||
        !ar_mul_ok(bytes, (uint64_t)n_ctx, &bytes) || bytes > SIZE_MAX)
        return ar_fail(AR_ERR_NOMEM, "KV cache of %d cells: %d layers x 2 x %d cells x %llu bytes "
                                     "overflows",
                       n_ctx, n_layer, n_ctx, (unsigned long long)cell);
    ar_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return ar_fail(AR_ERR_NOMEM, "KV cache: out of memory");
    kv->n_layer = n_layer;
    kv->kv_dim = m->hp.n_head_kv * m->hp.head_dim;
    kv->cap = n_ctx;
    kv->type = type;
    kv->cell_bytes = (size_t)kv->kv_dim * (type == AR_TYPE_F16 ? 2 : 4);
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    if (!kv->k || !kv->v) goto nomem;
    for (int32_t l = 0; l < n_layer; l++) {
        kv->k[l] = ar_aligned_alloc(kv->cell_bytes * (size_t)n_ctx);
        kv->v[l] = ar_aligned_alloc(kv->cell_bytes * (size_t)n_ctx);
        if (!kv->k[l] || !kv->v[l]) goto nomem;
    }
    *out = kv;
    return AR_OK;
nomem:
    ar_kv_free(kv);
    return ar_fail(AR_ERR_NOMEM, "KV cache of %llu bytes (%d cells) could not be allocated",
                   (unsigned long long)ar_kv_bytes(m, n_ctx, n_layer, type), n_ctx);
}

void ar_kv_free(ar_kv *kv) {
    if (!kv) return;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        if (kv->k) ar_aligned_free(kv->k[l]);
        if (kv->v) ar_aligned_free(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    free(kv);
}

void ar_kv_truncate(ar_kv *kv, int32_t n) {
    if (n >= 0 && n < kv->n_committed) kv->n_committed = n;
}

void ar_kv_commit(ar_kv *kv, const int32_t *rows, int32_t k) {
    ar_kv_compact(kv, rows, k);
    kv->n_committed += k;
}

void ar_kv_compact(ar_kv *kv, const int32_t *rows, int32_t k) {
    int32_t base = kv->n_committed;
    for (int32_t j = 0; j < k; j++) {
        int32_t from = base + rows[j], to = base + j;
        if (from == to) continue;
        /* rows increase (a root-to-node path, or the survivors of a pruned tree), so
         * rows[j] >= j: moving in increasing j never overwrites a row still to be moved */
        for (int32_t l = 0; l < kv->n_layer; l++) {
            memcpy(kv->k[l] + (size_t)to * kv->cell_bytes, kv->k[l] + (size_t)from * kv->cell_bytes,
                   kv->cell_bytes);
            memcpy(kv->v[l] + (size_t)to * kv->cell_bytes, kv->v[l] + (size_t)from * kv->cell_bytes,
                   kv->cell_bytes);
        }
    }
}
