/* synth.c: deterministic random-weight GGUF models (see synth.h).
 *
 * Reproducibility rests on three things, all in this file or the type-traits table:
 *  - element i of tensor T is hash(seed, name(T), i) pushed through integer arithmetic: the sum of
 *    the four 16-bit lanes of a 64-bit hash (an Irwin-Hall approximation of a normal draw, exact
 *    in integers), converted to float and multiplied by one per-tensor float constant;
 *  - the constants come from + - * / and a fixed-count Newton square root in double precision:
 *    no libm, and this file is compiled with -ffp-contract=off so no build fuses a multiply-add;
 *  - quantization uses the formats' scalar reference from_float (quants.c, ISO C: no contraction).
 * Threads split rows, and a row's values do not depend on the split.
 *
 * Scales (std of the draws, for a tensor with n_in inputs): token_embd 1, attn_q/attn_k
 * 1.28/sqrt(n_in), attn_v/attn_output and the FFN 0.96/sqrt(n_in), output 4.8/sqrt(n_in), norm
 * gains 1 + 0.1 z. These are the fixture generator's choices for a 256-wide model (std 0.08, 0.06,
 * 0.3) scaled to any width: every matmul keeps its output near unit size and logits have a std
 * near 5, so greedy decoding neither collapses onto one token nor is uniform noise. Models whose
 * head is the embedding (--like a tied model) get a small embedding and final gains near 10
 * instead (see assign_scale). */
#include "synth.h"

#include <inttypes.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>

#include "src/core/gguf.h"
#include "src/core/threadpool.h"

static const ar_synth_shape presets[] = {
    {"stories15m", 288, 768, 6, 6, 6, 256, false, false, 0},
    {"stories42m", 512, 1376, 8, 8, 8, 1024, false, false, 0},
    {"stories110m", 768, 2048, 12, 12, 12, 1024, false, false, 0},
    {"tinyllama", 2048, 5632, 22, 32, 4, 2048, false, false, 0},
    {"llama7b", 4096, 11008, 32, 32, 32, 4096, true, false, 0},
    /* for tests: tiny, with rows that exercise both fallbacks (64 and 172 values) */
    {"tiny", 64, 172, 2, 4, 2, 256, false, true, 0},
};

const ar_synth_shape *ar_synth_preset(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < AR_ARRAY_LEN(presets); i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const ar_synth_shape *ar_synth_presets(int *n) {
    *n = (int)AR_ARRAY_LEN(presets);
    return presets;
}

ar_synth_params ar_synth_default_params(void) {
    return (ar_synth_params){.type = -1,
                             .seed = 1,
                             .eps = 1.0f,
                             .eps_layer = -1,
                             .n_threads = 1,
                             .add_space_prefix = -1};
}

/* ---- integer randomness ---- */

static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* Sum of four uniform 16-bit integers, centred: in [-131070, 131070], std IRWIN_HALL_SD. */
static inline int32_t draw(uint64_t key, uint64_t i) {
    uint64_t r = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
    int32_t s = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) +
                (int32_t)((r >> 32) & 0xffff) + (int32_t)(r >> 48);
    return s - 131070;
}

/* sqrt(x) for x >= 1 by a fixed number of Newton steps: the same bits on every machine. */
static double newton_sqrt(double x) {
    double r = x;
    for (int i = 0; i < 80; i++) r = 0.5 * (r + x / r);
    return r;
}

/* std of draw(): sqrt(4 * (65536^2 - 1) / 12) */
static double irwin_hall_sd(void) {
    return newton_sqrt(4294967295.0 / 3.0);
}

/* ---- the tensor plan ---- */

typedef enum { FILL_GAUSS, FILL_GAIN, FILL_VALUES } fill_kind;

typedef struct plan_tensor {
    char name[96];
    ar_type type;
    uint32_t n_dims;
    int64_t ne[4];
    int64_t n_in, rows;
    fill_kind kind;
    float scale; /* value = (float)draw * scale (GAIN: base + that) */
    float base;
    uint64_t key;
    float *values; /* FILL_VALUES: the tensor's values (rope factor tables), owned */
} plan_tensor;

typedef struct plan {
    plan_tensor *t;
    size_t n, cap;
    int32_t n_embd;
    bool tied; /* no output.weight: the embedding is also the head */
    bool embd_scale; /* the forward pass multiplies embeddings by sqrt(n_embd) (gemma2) */
    uint64_t seed;
    float eps;
    int32_t eps_layer;
} plan;

ar_type ar_synth_row_type(ar_type want, int64_t n_in) {
    const ar_type_traits *tt = ar_type_get(want);
    const ar_type_traits *at = tt ? ar_type_get(tt->vec_dot_type) : NULL;
    if (tt && at && n_in % tt->blck_size == 0 && n_in % at->blck_size == 0) return want;
    if (n_in % AR_QK == 0) return AR_TYPE_Q8_0;
    return AR_TYPE_F32;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The layer number of "blk.N....", or -1. */
static int64_t layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    int64_t v = 0;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > (1 << 20)) return -1;
    }
    return *p == '.' ? v : -1;
}

/* The std (or gain spread) of a tensor from its role, which its name says. */
static void assign_scale(const plan *pl, plan_tensor *t) {
    const double sd = irwin_hall_sd();
    const double inv_sqrt_in = 1.0 / newton_sqrt((double)(t->n_in > 0 ? t->n_in : 1));
    double std, base = 1.0;
    if (t->kind == FILL_VALUES) return;
    t->kind = FILL_GAUSS;
    if (t->n_dims == 1 && (ends_with(t->name, "norm.weight"))) {
        t->kind = FILL_GAIN;
        /* tied: the final gains set the logit spread (see token_embd) */
        if (pl->tied && !strcmp(t->name, "output_norm.weight")) base = 10.0;
        std = 0.1 * base;
    } else if (!strcmp(t->name, "token_embd.weight")) {
        /* A tied embedding is also the head. At the head's scale, a token's own embedding in
         * the residual stream would make repeating it the likeliest next token (greedy output
         * collapses onto one token); at a tenth of it, that term is noise and final norm gains
         * of 10 restore the logit spread. */
        std = pl->tied ? 0.48 * inv_sqrt_in : 1.0;
        if (pl->embd_scale) std *= inv_sqrt_in; /* undo the forward pass's sqrt(n_embd) */
    } else if (!strcmp(t->name, "output.weight")) {
        std = 4.8 * inv_sqrt_in;
    } else if (ends_with(t->name, "attn_q.weight") || ends_with(t->name, "attn_k.weight") ||
               ends_with(t->name, "attn_qkv.weight")) {
        std = 1.28 * inv_sqrt_in;
    } else if (ends_with(t->name, "attn_v.weight") || ends_with(t->name, "attn_output.weight") ||
               ends_with(t->name, "ffn_gate.weight") || ends_with(t->name, "ffn_up.weight") ||
               ends_with(t->name, "ffn_down.weight")) {
        std = 0.96 * inv_sqrt_in;
    } else if (ends_with(t->name, "attn_q.bias") || ends_with(t->name, "attn_k.bias")) {
        std = 0.5;
    } else if (ends_with(t->name, "attn_v.bias")) {
        std = 0.1;
    } else if (t->n_dims == 1) {
        t->kind = FILL_GAIN;
        std = 0.1;
    } else {
        std = inv_sqrt_in;
    }
    int64_t layer = layer_of(t->name);
    if (pl->eps_layer >= 0 && layer >= pl->eps_layer &&
        (ends_with(t->name, "attn_output.weight") || ends_with(t->name, "ffn_down.weight")))
        std *= (double)pl->eps;
    /* post-normed blocks (gemma2) undo a scaled projection: their post-norm gains carry eps */
    if (pl->eps_layer >= 0 && layer >= pl->eps_layer &&
        (ends_with(t->name, "post_attention_norm.weight") ||
         ends_with(t->name, "post_ffw_norm.weight"))) {
        std *= (double)pl->eps;
        base *= (double)pl->eps;
    }
    t->scale = (float)(std / sd);
    t->base = (float)base;
    t->key = mix64(pl->seed ^ mix64(fnv1a64(t->name)));
}

static ar_status plan_add(plan *pl, const char *name, ar_type type, uint32_t n_dims,
                          const int64_t *ne) {
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 64;
        plan_tensor *t = realloc(pl->t, cap * sizeof *t);
        if (!t) return ar_fail(AR_ERR_NOMEM, "synth: out of memory");
        pl->t = t;
        pl->cap = cap;
    }
    if (strlen(name) >= sizeof pl->t[0].name)
        return ar_fail(AR_ERR_INVALID_ARG, "synth: tensor name '%.40s...' too long", name);
    plan_tensor *t = &pl->t[pl->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->rows = 1;
    for (int d = 0; d < 4; d++) {
        t->ne[d] = d < (int)n_dims ? ne[d] : 1;
        if (d > 0) t->rows *= t->ne[d];
    }
    t->n_in = t->ne[0];
    return AR_OK;
}

/* ---- generation ---- */

typedef struct fill_ctx {
    const plan *pl;
    ar_pool *pool;
    float *scratch; /* [n_threads][SCRATCH] */
    int64_t scratch_per_thread;
    uint64_t done, total;
    ar_synth_progress_fn progress;
    void *progress_user;
    /* the current job */
    const plan_tensor *t;
    uint8_t *dst;
    size_t row_bytes;
} fill_ctx;

static void gen_values(const plan_tensor *t, int64_t first, int64_t count, float *out) {
    if (t->kind == FILL_VALUES) {
        memcpy(out, t->values + first, (size_t)count * sizeof(float));
        return;
    }
    const float scale = t->scale;
    if (scale == 0.0f) { /* eps = 0: exact zeros (not -0), so those layers add nothing */
        memset(out, 0, (size_t)count * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        float v = (float)draw(t->key, (uint64_t)(first + i)) * scale;
        out[i] = t->kind == FILL_GAIN ? t->base + v : v;
    }
}

static void fill_job(void *arg, int ith, int nth) {
    fill_ctx *c = arg;
    const plan_tensor *t = c->t;
    const ar_type_traits *tt = ar_type_get(t->type);
    int64_t lo, hi;
    ar_split(t->rows, 1, ith, nth, &lo, &hi);
    float *buf = c->scratch + (size_t)ith * (size_t)c->scratch_per_thread;
    int64_t chunk = AR_MAX(1, c->scratch_per_thread / t->n_in);
    for (int64_t r = lo; r < hi; r += chunk) {
        int64_t nr = AR_MIN(chunk, hi - r);
        gen_values(t, r * t->n_in, nr * t->n_in, buf);
        /* rows hold whole blocks, so one call over nr rows quantizes each row on its own */
        tt->from_float(buf, c->dst + (size_t)r * c->row_bytes, nr * t->n_in);
    }
}

static ar_status fill_tensor(void *user, uint64_t index, void *dst, uint64_t size) {
    fill_ctx *c = user;
    if (index >= c->pl->n) return ar_fail(AR_ERR_INTERNAL, "synth: tensor %" PRIu64, index);
    const plan_tensor *t = &c->pl->t[index];
    c->t = t;
    c->dst = dst;
    c->row_bytes = ar_row_size(t->type, t->n_in);
    if ((uint64_t)c->row_bytes * (uint64_t)t->rows != size)
        return ar_fail(AR_ERR_INTERNAL, "synth: %s: size mismatch", t->name);
    ar_pool_run_or_inline(c->pool, fill_job, c);
    c->done += size;
    if (c->progress) c->progress(c->progress_user, c->done, c->total);
    return AR_OK;
}

/* ---- metadata ---- */

/* The token list with p->extra_tokens appended (as control tokens with score 0), then
 * p->n_pad_tokens "[PAD<id>]" tokens of type unused (as converters pad a vocabulary to the
 * embedding's row count), the scores and types extended to match. */
static ar_status write_extended_tokens(ar_gguf_writer *w, const ar_gguf *g,
                                       const ar_gguf_kv *toks, const ar_synth_params *p) {
    const uint64_t n0 = toks->arr_n, n1 = n0 + (uint64_t)p->n_extra_tokens;
    const uint64_t n = n1 + (uint64_t)p->n_pad_tokens;
    ar_str *strs = malloc(n * sizeof *strs);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    char *pads = malloc((size_t)(n - n1) * 24 + 1);
    ar_status s = AR_OK;
    if (!strs || !scores || !types || !pads) s = ar_fail(AR_ERR_NOMEM, "synth: out of memory");
    const ar_gguf_kv *sc = ar_gguf_find(g, "tokenizer.ggml.scores");
    const ar_gguf_kv *ty = ar_gguf_find(g, "tokenizer.ggml.token_type");
    if (sc && (sc->type != AR_GGUF_ARRAY || sc->arr_n != n0)) sc = NULL;
    if (ty && (ty->type != AR_GGUF_ARRAY || ty->arr_n != n0)) ty = NULL;
    for (uint64_t i = 0; s == AR_OK && i < n; i++) {
        if (i < n0) {
            strs[i] = toks->arr_strs[i];
            scores[i] = sc ? (float)ar_gguf_arr_f64(sc, i) : 0.0f;
            types[i] = ty ? (int32_t)ar_gguf_arr_i64(ty, i) : 1;
        } else if (i < n1) {
            const char *t = p->extra_tokens[i - n0];
            strs[i] = (ar_str){t, strlen(t)};
            scores[i] = 0.0f;
            types[i] = 3; /* control */
        } else {
            char *t = pads + (i - n1) * 24;
            int k = snprintf(t, 24, "[PAD%" PRIu64 "]", i);
            strs[i] = (ar_str){t, (uint64_t)k};
            scores[i] = 0.0f;
            types[i] = 5; /* unused */
        }
    }
    if (s == AR_OK) s = ar_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, n);
    if (s == AR_OK && sc) s = ar_gguf_set_arr(w, "tokenizer.ggml.scores", AR_GGUF_FLOAT32, scores, n);
    if (s == AR_OK) s = ar_gguf_set_arr(w, "tokenizer.ggml.token_type", AR_GGUF_INT32, types, n);
    free(strs);
    free(scores);
    free(types);
    free(pads);
    return s;
}

static ar_status copy_tokenizer(ar_gguf_writer *w, const ar_synth_params *p, int64_t *n_vocab) {
    const char *vocab_path = p->vocab_path;
    ar_gguf *g = NULL;
    ar_status s = ar_gguf_open(vocab_path, &g);
    if (s != AR_OK) return s;
    const ar_gguf_kv *toks = NULL;
    const bool extend = p->n_extra_tokens > 0 || p->n_pad_tokens > 0;
    if (ar_gguf_get_arr(g, "tokenizer.ggml.tokens", AR_GGUF_STRING, &toks) != AR_OK) {
        s = ar_fail(AR_ERR_FORMAT,
                    "%s: no tokenizer (tokenizer.ggml.tokens missing or not strings)", vocab_path);
    } else if (toks->arr_n < 1 || toks->arr_n > (1u << 24)) {
        s = ar_fail(AR_ERR_FORMAT, "%s: %" PRIu64 " tokens: out of range", vocab_path, toks->arr_n);
    } else {
        *n_vocab = (int64_t)toks->arr_n + p->n_extra_tokens + p->n_pad_tokens;
        for (uint64_t i = 0; i < g->n_kv && s == AR_OK; i++) {
            const char *key = g->kv[i].key;
            if (strncmp(key, "tokenizer.", 10) != 0) continue;
            if (extend && (!strcmp(key, "tokenizer.ggml.tokens") ||
                           !strcmp(key, "tokenizer.ggml.scores") ||
                           !strcmp(key, "tokenizer.ggml.token_type"))) {
                if (!strcmp(key, "tokenizer.ggml.tokens"))
                    s = write_extended_tokens(w, g, toks, p);
                continue;
            }
            s = ar_gguf_copy_kv(w, &g->kv[i]);
        }
    }
    if (s == AR_OK && p->chat_template)
        s = ar_gguf_set_str(w, "tokenizer.chat_template", p->chat_template);
    if (s == AR_OK && p->bos_token) {
        int64_t id = -1;
        for (uint64_t i = 0; toks && i < toks->arr_n && id < 0; i++)
            if (toks->arr_strs[i].len == strlen(p->bos_token) &&
                !memcmp(toks->arr_strs[i].ptr, p->bos_token, toks->arr_strs[i].len))
                id = (int64_t)i;
        for (int32_t i = 0; toks && i < p->n_extra_tokens && id < 0; i++)
            if (!strcmp(p->extra_tokens[i], p->bos_token)) id = (int64_t)toks->arr_n + i;
        if (id < 0)
            s = ar_fail(AR_ERR_INVALID_ARG, "synth: BOS token '%.40s' is not in the vocabulary",
                        p->bos_token);
        if (s == AR_OK) s = ar_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)id);
        if (s == AR_OK) s = ar_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    }
    if (s == AR_OK && p->add_space_prefix >= 0)
        s = ar_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", p->add_space_prefix != 0);
    ar_gguf_close(g);
    return s;
}

static ar_status check_shape(const ar_synth_shape *sh) {
    const char *nm = sh->name ? sh->name : "shape";
    if (sh->n_embd < 1 || sh->n_embd > 65536 || sh->n_ff < 1 || sh->n_ff > (1 << 20) ||
        sh->n_layer < 1 || sh->n_layer > 4096 || sh->n_head < 1 || sh->n_head_kv < 1 ||
        sh->n_ctx < 1 || sh->n_ctx > (1 << 24))
        return ar_fail(AR_ERR_INVALID_ARG, "synth %s: dimensions out of range", nm);
    if (sh->n_embd % sh->n_head != 0 || sh->n_head % sh->n_head_kv != 0 ||
        (sh->n_embd / sh->n_head) % 2 != 0)
        return ar_fail(AR_ERR_INVALID_ARG,
                       "synth %s: %d heads must divide width %d into an even head size, and %d KV "
                       "heads must divide the heads",
                       nm, sh->n_head, sh->n_embd, sh->n_head_kv);
    return AR_OK;
}

/* What each synth architecture writes (synth.h lists them). */
typedef struct synth_arch {
    const char *name, *arch; /* synth name, general.architecture */
    float rms_eps, rope_base;
    bool tied, biases, qk_norm, fused, post_norms, softcap, rope_freqs, swa;
    int32_t swa_default;
} synth_arch;

static const synth_arch synth_archs[] = {
    {"llama", "llama", 1e-5f, 10000.0f, false, false, false, false, false, false, false, false, 0},
    {"llama3", "llama", 1e-5f, 500000.0f, false, false, false, false, false, false, true, false, 0},
    {"mistral", "llama", 1e-5f, 1e6f, false, false, false, false, false, false, false, true, 4096},
    {"qwen2", "qwen2", 1e-6f, 1e6f, true, true, false, false, false, false, false, false, 0},
    {"qwen3", "qwen3", 1e-6f, 1e6f, true, false, true, false, false, false, false, false, 0},
    {"gemma2", "gemma2", 1e-6f, 10000.0f, true, false, false, false, true, true, false, true, 4096},
    {"phi3", "phi3", 1e-5f, 10000.0f, false, false, false, true, false, false, false, true, 0},
};

const char *ar_synth_arch_names(void) {
    return "llama, llama3, mistral, qwen2, qwen3, gemma2, phi3";
}

/* A 1-D F32 tensor with given values (the plan owns them). */
static ar_status plan_values(plan *pl, const char *name, float *values, int64_t n) {
    if (!values) return ar_fail(AR_ERR_NOMEM, "synth: out of memory");
    ar_status s = plan_add(pl, name, AR_TYPE_F32, 1, &n);
    if (s != AR_OK) {
        free(values);
        return s;
    }
    pl->t[pl->n - 1].kind = FILL_VALUES;
    pl->t[pl->n - 1].values = values;
    return AR_OK;
}

/* Llama 3.1's frequency divisors (the converter's formula): 1 for wavelengths below
 * orig / high_freq_factor, `factor` above orig / low_freq_factor, a smooth blend between. Uses
 * libm's pow in double precision, the one place synth does (a tiny table). */
static float *llama3_rope_freqs(int32_t n_rot, float base, float factor, double orig) {
    float *f = malloc(sizeof(float) * (size_t)(n_rot / 2));
    const double lo = 1.0, hi = 4.0, pi = 3.14159265358979323846;
    for (int i = 0; f && i < n_rot / 2; i++) {
        const double freq = 1.0 / pow((double)base, (double)(2 * i) / n_rot);
        const double wavelen = 2 * pi / freq;
        double r;
        if (wavelen < orig / hi) r = 1.0;
        else if (wavelen > orig / lo) r = factor;
        else {
            const double smooth = (orig / wavelen - lo) / (hi - lo);
            r = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        f[i] = (float)r;
    }
    return f;
}

/* Phi-3 style long and short factors: 1 + spread * (i / (n - 1))^2, in integer-exact steps. */
static float *longrope_factors(int32_t n_rot, double spread) {
    const int n = n_rot / 2;
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; f && i < n; i++) {
        const double x = n > 1 ? (double)i / (n - 1) : 0.0;
        f[i] = (float)(1.0 + spread * x * x);
    }
    return f;
}

static ar_status preset_plan(const ar_synth_params *p, ar_gguf_writer *w, plan *pl) {
    const ar_synth_shape *sh = &p->shape;
    ar_status s = check_shape(sh);
    if (s != AR_OK) return s;
    const char *aname = p->arch ? p->arch : "llama";
    const synth_arch *sa = NULL;
    for (size_t i = 0; i < AR_ARRAY_LEN(synth_archs); i++)
        if (!strcmp(synth_archs[i].name, aname)) sa = &synth_archs[i];
    if (!sa)
        return ar_fail(AR_ERR_INVALID_ARG, "synth: unknown architecture '%s' (%s)", aname,
                       ar_synth_arch_names());
    const bool yarn = p->rope_scaling && !strcmp(p->rope_scaling, "yarn");
    const bool longrope = p->rope_scaling && !strcmp(p->rope_scaling, "longrope");
    if (p->rope_scaling && !yarn && !(longrope && !strcmp(sa->arch, "phi3")))
        return ar_fail(AR_ERR_INVALID_ARG,
                       "synth: rope scaling '%s': yarn (any architecture) or longrope (phi3)",
                       p->rope_scaling);
    ar_type want = p->type < 0 ? AR_TYPE_F32 : (ar_type)p->type;
    if (sh->quantized_only && (want == AR_TYPE_F32 || want == AR_TYPE_F16 || want == AR_TYPE_BF16))
        return ar_fail(AR_ERR_INVALID_ARG,
                       "synth %s: written only in quantized formats (-q q4_0, q8_0, ...)",
                       sh->name);
    if (!p->vocab_path)
        return ar_fail(AR_ERR_INVALID_ARG, "synth: a tokenizer is needed (vocab_path)");
    const int32_t hd = sh->head_dim > 0 ? sh->head_dim : sh->n_embd / sh->n_head;
    if (hd % 2 != 0 || hd > 65536)
        return ar_fail(AR_ERR_INVALID_ARG, "synth: head size %d must be even", hd);
    char name[128], key[128];
    if (!strcmp(sa->name, "llama"))
        snprintf(name, sizeof name, "arbor-synth-%s", sh->name ? sh->name : "custom");
    else /* the architecture in the name: vocabulary rules keyed by name (Phi-3) see it */
        snprintf(name, sizeof name, "arbor-synth-%s-%s", sa->name, sh->name ? sh->name : "custom");
    const char *A = sa->arch;
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", A, suffix), key)
#define KV(call)                                                                                   \
    if ((s = (call)) != AR_OK) return s
    KV(ar_gguf_set_str(w, "general.architecture", A));
    KV(ar_gguf_set_str(w, "general.name", name));
    KV(ar_gguf_set_u32(w, K("context_length"), (uint32_t)sh->n_ctx));
    KV(ar_gguf_set_u32(w, K("embedding_length"), (uint32_t)sh->n_embd));
    KV(ar_gguf_set_u32(w, K("block_count"), (uint32_t)sh->n_layer));
    KV(ar_gguf_set_u32(w, K("feed_forward_length"), (uint32_t)sh->n_ff));
    KV(ar_gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)hd));
    KV(ar_gguf_set_u32(w, K("attention.head_count"), (uint32_t)sh->n_head));
    KV(ar_gguf_set_u32(w, K("attention.head_count_kv"), (uint32_t)sh->n_head_kv));
    KV(ar_gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"), sa->rms_eps));
    KV(ar_gguf_set_f32(w, K("rope.freq_base"), sa->rope_base));
    int64_t n_vocab = 0;
    KV(copy_tokenizer(w, p, &n_vocab));
    KV(ar_gguf_set_u32(w, K("vocab_size"), (uint32_t)n_vocab));
    if (hd != sh->n_embd / sh->n_head) {
        KV(ar_gguf_set_u32(w, K("attention.key_length"), (uint32_t)hd));
        KV(ar_gguf_set_u32(w, K("attention.value_length"), (uint32_t)hd));
    }
    if (sa->swa || !strcmp(A, "phi3")) {
        int32_t win = p->sliding_window > 0 ? p->sliding_window : sa->swa_default;
        KV(ar_gguf_set_u32(w, K("attention.sliding_window"), (uint32_t)win));
    }
    if (sa->softcap) {
        KV(ar_gguf_set_f32(w, K("attn_logit_softcapping"),
                           p->attn_softcap > 0 ? p->attn_softcap : 50.0f));
        KV(ar_gguf_set_f32(w, K("final_logit_softcapping"),
                           p->final_softcap > 0 ? p->final_softcap : 30.0f));
    }
    const float factor = p->rope_factor > 0 ? p->rope_factor : 4.0f;
    int32_t orig = p->rope_orig_ctx > 0 ? p->rope_orig_ctx
                   : sa->rope_freqs     ? 8192
                                        : AR_MAX(1, (int32_t)((float)sh->n_ctx / factor));
    if (yarn) {
        KV(ar_gguf_set_str(w, K("rope.scaling.type"), "yarn"));
        KV(ar_gguf_set_f32(w, K("rope.scaling.factor"), factor));
        KV(ar_gguf_set_u32(w, K("rope.scaling.original_context_length"), (uint32_t)orig));
    }
    if (longrope) { /* as the converter writes Phi-3 128k: sqrt(1 + ln(scale) / ln(orig)) */
        const double scale = (double)sh->n_ctx / orig;
        const float attn = scale > 1.0 ? (float)sqrt(1.0 + log(scale) / log((double)orig)) : 1.0f;
        KV(ar_gguf_set_u32(w, K("rope.scaling.original_context_length"), (uint32_t)orig));
        KV(ar_gguf_set_f32(w, K("rope.scaling.attn_factor"), attn));
    }
#undef KV
#undef K
    const int64_t E = sh->n_embd, F = sh->n_ff, V = n_vocab;
    const int64_t QD = (int64_t)sh->n_head * hd, KVD = (int64_t)sh->n_head_kv * hd;
    pl->n_embd = sh->n_embd;
    pl->tied = sa->tied;
    pl->embd_scale = !strcmp(A, "gemma2");
#define T2(nm, nin, nout)                                                                          \
    do {                                                                                           \
        int64_t ne_[2] = {(nin), (nout)};                                                          \
        if ((s = plan_add(pl, nm, ar_synth_row_type(want, ne_[0]), 2, ne_)) != AR_OK) return s;    \
    } while (0)
#define T1(nm, n)                                                                                  \
    do {                                                                                           \
        int64_t ne_[1] = {(n)};                                                                    \
        if ((s = plan_add(pl, nm, AR_TYPE_F32, 1, ne_)) != AR_OK) return s;                        \
    } while (0)
    T2("token_embd.weight", E, V);
    if (sa->rope_freqs &&
        (s = plan_values(pl, "rope_freqs.weight", llama3_rope_freqs(hd, sa->rope_base, 32.0f, orig),
                         hd / 2)) != AR_OK)
        return s;
    if (longrope) {
        if ((s = plan_values(pl, "rope_factors_long.weight", longrope_factors(hd, 8.0), hd / 2)) !=
                AR_OK ||
            (s = plan_values(pl, "rope_factors_short.weight", longrope_factors(hd, 0.25),
                             hd / 2)) != AR_OK)
            return s;
    }
    for (int32_t l = 0; l < sh->n_layer; l++) {
        char nm[96];
#define L(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
        T1(L("attn_norm.weight"), E);
        if (sa->fused) {
            T2(L("attn_qkv.weight"), E, QD + 2 * KVD);
        } else {
            T2(L("attn_q.weight"), E, QD);
            T2(L("attn_k.weight"), E, KVD);
            T2(L("attn_v.weight"), E, KVD);
        }
        if (sa->biases) {
            T1(L("attn_q.bias"), QD);
            T1(L("attn_k.bias"), KVD);
            T1(L("attn_v.bias"), KVD);
        }
        if (sa->qk_norm) {
            T1(L("attn_q_norm.weight"), hd);
            T1(L("attn_k_norm.weight"), hd);
        }
        T2(L("attn_output.weight"), QD, E);
        if (sa->post_norms) T1(L("post_attention_norm.weight"), E);
        T1(L("ffn_norm.weight"), E);
        if (sa->fused) {
            T2(L("ffn_up.weight"), E, 2 * F);
        } else {
            T2(L("ffn_gate.weight"), E, F);
            T2(L("ffn_up.weight"), E, F);
        }
        T2(L("ffn_down.weight"), F, E);
        if (sa->post_norms) T1(L("post_ffw_norm.weight"), E);
#undef L
    }
    T1("output_norm.weight", E);
    if (!sa->tied) T2("output.weight", E, V);
#undef T1
#undef T2
    return AR_OK;
}

static ar_status like_plan(const ar_synth_params *p, ar_gguf_writer *w, plan *pl) {
    ar_gguf *g = NULL;
    ar_status s = ar_gguf_open(p->like_path, &g);
    if (s != AR_OK) return s;
    for (uint64_t i = 0; i < g->n_kv && s == AR_OK; i++)
        if (strncmp(g->kv[i].key, "arbor.synth.", 12) != 0) s = ar_gguf_copy_kv(w, &g->kv[i]);
    pl->tied = !ar_gguf_find_tensor(g, "output.weight");
    for (uint64_t i = 0; i < g->n_tensors && s == AR_OK; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        ar_type type = t->type;
        if (!ar_type_get(type)) {
            s = ar_fail(AR_ERR_UNSUPPORTED, "%s: tensor %s: unsupported type %d", p->like_path,
                        t->name, (int)type);
            break;
        }
        if (p->type >= 0 && t->n_dims >= 2) type = ar_synth_row_type((ar_type)p->type, t->ne[0]);
        s = plan_add(pl, t->name, type, t->n_dims, t->ne);
    }
    ar_gguf_close(g);
    if (s == AR_OK && pl->n == 0)
        s = ar_fail(AR_ERR_INVALID_ARG, "%s: no tensors to imitate", p->like_path);
    return s;
}

ar_status ar_synth_write(const ar_synth_params *p, const char *path) {
    if (!p || !path) return ar_fail(AR_ERR_INVALID_ARG, "synth: NULL argument");
    if (p->type >= 0) {
        const ar_type_traits *tt = ar_type_get((ar_type)p->type);
        if (!tt || p->type == AR_TYPE_Q8_1 || p->type == AR_TYPE_Q8_K)
            return ar_fail(AR_ERR_INVALID_ARG, "synth: %s is not a weight format",
                           tt ? tt->name : "unknown type");
    }
    if (!(p->eps >= 0.0f && p->eps <= 1e3f))
        return ar_fail(AR_ERR_INVALID_ARG, "synth: eps %g must be in [0, 1000]", p->eps);
    ar_runtime_init();
    ar_gguf_writer *w = ar_gguf_writer_new(3);
    if (!w) return AR_ERR_NOMEM;
    plan pl = {.seed = p->seed, .eps = p->eps, .eps_layer = p->eps_layer};
    fill_ctx fc = {.pl = &pl, .progress = p->progress, .progress_user = p->progress_user};
    ar_status s = p->like_path ? like_plan(p, w, &pl) : preset_plan(p, w, &pl);
#define KV(call)                                                                                   \
    if (s == AR_OK) s = (call)
    KV(ar_gguf_set_u32(w, "arbor.synth.version", AR_SYNTH_VERSION));
    KV(ar_gguf_set_u64(w, "arbor.synth.seed", p->seed));
    if (p->eps_layer >= 0) {
        KV(ar_gguf_set_f32(w, "arbor.synth.eps", p->eps));
        KV(ar_gguf_set_u32(w, "arbor.synth.eps_layer", (uint32_t)p->eps_layer));
    }
#undef KV
    int64_t max_in = 0;
    for (size_t i = 0; i < pl.n && s == AR_OK; i++) {
        plan_tensor *t = &pl.t[i];
        assign_scale(&pl, t);
        max_in = AR_MAX(max_in, t->n_in);
        s = ar_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL);
        if (s == AR_OK) fc.total += (uint64_t)ar_row_size(t->type, t->n_in) * (uint64_t)t->rows;
    }
    int n_threads = p->n_threads > 0 ? p->n_threads : 1;
    if (s == AR_OK && n_threads > 1) s = ar_pool_create(n_threads, NULL, &fc.pool);
    if (s == AR_OK) {
        fc.scratch_per_thread = AR_MAX(max_in, (int64_t)1 << 16);
        fc.scratch = malloc((size_t)n_threads * (size_t)fc.scratch_per_thread * sizeof(float));
        if (!fc.scratch) s = ar_fail(AR_ERR_NOMEM, "synth: out of memory");
    }
    if (s == AR_OK) s = ar_gguf_write(w, path, fill_tensor, &fc);
    free(fc.scratch);
    ar_pool_free(fc.pool);
    for (size_t i = 0; i < pl.n; i++) free(pl.t[i].values);
    free(pl.t);
    ar_gguf_writer_free(w);
    return s;
}

/* ---- drafters ---- */

ar_status ar_synth_drafter(const char *verifier_path, int32_t n_layers, const char *path) {
    if (!verifier_path || !path) return ar_fail(AR_ERR_INVALID_ARG, "synth: NULL argument");
    ar_gguf *g = NULL;
    ar_status s = ar_gguf_open(verifier_path, &g);
    if (s != AR_OK) return s;
    ar_str arch = {0};
    char key[160];
    uint32_t n_layer = 0;
    if (ar_gguf_get_str(g, "general.architecture", &arch) != AR_OK || arch.len == 0 ||
        arch.len > 64) {
        s = ar_fail(AR_ERR_FORMAT, "%s: missing general.architecture", verifier_path);
    } else {
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        if (ar_gguf_get_u32(g, key, &n_layer) != AR_OK)
            s = ar_fail(AR_ERR_FORMAT, "%s: missing %s", verifier_path, key);
        else if (n_layers < 1 || (uint32_t)n_layers >= n_layer)
            s = ar_fail(AR_ERR_INVALID_ARG, "%s: drafter layers %d must be in [1, %u)",
                        verifier_path, n_layers, n_layer);
    }
    ar_gguf_writer *w = s == AR_OK ? ar_gguf_writer_new(g->version >= 3 ? 3 : 2) : NULL;
    if (s == AR_OK && !w) s = AR_ERR_NOMEM;
    for (uint64_t i = 0; s == AR_OK && i < g->n_kv; i++) {
        if (!strcmp(g->kv[i].key, key))
            s = ar_gguf_set_u32(w, key, (uint32_t)n_layers);
        else
            s = ar_gguf_copy_kv(w, &g->kv[i]);
    }
    if (s == AR_OK) s = ar_gguf_set_u32(w, "arbor.synth.drafter_layers", (uint32_t)n_layers);
    /* tensors keep the verifier's order; their bytes are referenced in its mapping */
    for (uint64_t i = 0; s == AR_OK && i < g->n_tensors; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        int64_t layer = layer_of(t->name);
        if (layer >= n_layers) continue;
        if (!strncmp(t->name, "blk.", 4) && layer < 0) {
            s = ar_fail(AR_ERR_FORMAT, "%s: tensor %s: unreadable layer number", verifier_path,
                        t->name);
            break;
        }
        s = ar_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    if (s == AR_OK) s = ar_gguf_write(w, path, NULL, NULL);
    ar_gguf_writer_free(w);
    ar_gguf_close(g);
    return s;
}
