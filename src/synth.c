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
#include <stdlib.h>

#include "gguf.h"
#include "threadpool.h"

static const ar_synth_shape presets[] = {
    {"stories15m", 288, 768, 6, 6, 6, 256, false, false},
    {"stories42m", 512, 1376, 8, 8, 8, 1024, false, false},
    {"stories110m", 768, 2048, 12, 12, 12, 1024, false, false},
    {"tinyllama", 2048, 5632, 22, 32, 4, 2048, false, false},
    {"llama7b", 4096, 11008, 32, 32, 32, 4096, true, false},
    /* for tests: tiny, with rows that exercise both fallbacks (64 and 172 values) */
    {"tiny", 64, 172, 2, 4, 2, 256, false, true},
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
    return (ar_synth_params){.type = -1, .seed = 1, .eps = 1.0f, .eps_layer = -1, .n_threads = 1};
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

typedef enum { FILL_GAUSS, FILL_GAIN } fill_kind;

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
} plan_tensor;

typedef struct plan {
    plan_tensor *t;
    size_t n, cap;
    int32_t n_embd;
    bool tied; /* no output.weight: the embedding is also the head */
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
    } else if (!strcmp(t->name, "output.weight")) {
        std = 4.8 * inv_sqrt_in;
    } else if (ends_with(t->name, "attn_q.weight") || ends_with(t->name, "attn_k.weight")) {
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

static ar_status copy_tokenizer(ar_gguf_writer *w, const char *vocab_path, int64_t *n_vocab) {
    ar_gguf *g = NULL;
    ar_status s = ar_gguf_open(vocab_path, &g);
    if (s != AR_OK) return s;
    const ar_gguf_kv *toks = NULL;
    if (ar_gguf_get_arr(g, "tokenizer.ggml.tokens", AR_GGUF_STRING, &toks) != AR_OK) {
        s = ar_fail(AR_ERR_FORMAT,
                    "%s: no tokenizer (tokenizer.ggml.tokens missing or not strings)", vocab_path);
    } else if (toks->arr_n < 1 || toks->arr_n > (1u << 24)) {
        s = ar_fail(AR_ERR_FORMAT, "%s: %" PRIu64 " tokens: out of range", vocab_path, toks->arr_n);
    } else {
        *n_vocab = (int64_t)toks->arr_n;
        for (uint64_t i = 0; i < g->n_kv && s == AR_OK; i++)
            if (!strncmp(g->kv[i].key, "tokenizer.", 10)) s = ar_gguf_copy_kv(w, &g->kv[i]);
    }
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

static ar_status preset_plan(const ar_synth_params *p, ar_gguf_writer *w, plan *pl) {
    const ar_synth_shape *sh = &p->shape;
    ar_status s = check_shape(sh);
    if (s != AR_OK) return s;
    ar_type want = p->type < 0 ? AR_TYPE_F32 : (ar_type)p->type;
    if (sh->quantized_only && (want == AR_TYPE_F32 || want == AR_TYPE_F16 || want == AR_TYPE_BF16))
        return ar_fail(AR_ERR_INVALID_ARG,
                       "synth %s: written only in quantized formats (-q q4_0, q8_0, ...)",
                       sh->name);
    if (!p->vocab_path)
        return ar_fail(AR_ERR_INVALID_ARG, "synth: a tokenizer is needed (vocab_path)");
    char name[128];
    snprintf(name, sizeof name, "arbor-synth-%s", sh->name ? sh->name : "custom");
    const int32_t hd = sh->n_embd / sh->n_head;
#define KV(call)                                                                                   \
    if ((s = (call)) != AR_OK) return s
    KV(ar_gguf_set_str(w, "general.architecture", "llama"));
    KV(ar_gguf_set_str(w, "general.name", name));
    KV(ar_gguf_set_u32(w, "llama.context_length", (uint32_t)sh->n_ctx));
    KV(ar_gguf_set_u32(w, "llama.embedding_length", (uint32_t)sh->n_embd));
    KV(ar_gguf_set_u32(w, "llama.block_count", (uint32_t)sh->n_layer));
    KV(ar_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->n_ff));
    KV(ar_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd));
    KV(ar_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head));
    KV(ar_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv));
    KV(ar_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    KV(ar_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f));
    int64_t n_vocab = 0;
    KV(copy_tokenizer(w, p->vocab_path, &n_vocab));
    KV(ar_gguf_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab));
#undef KV
    const int64_t E = sh->n_embd, F = sh->n_ff, V = n_vocab;
    const int64_t KVD = (int64_t)sh->n_head_kv * hd;
    pl->n_embd = sh->n_embd;
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
    for (int32_t l = 0; l < sh->n_layer; l++) {
        char nm[96];
#define L(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
        T1(L("attn_norm.weight"), E);
        T2(L("attn_q.weight"), E, E);
        T2(L("attn_k.weight"), E, KVD);
        T2(L("attn_v.weight"), E, KVD);
        T2(L("attn_output.weight"), E, E);
        T1(L("ffn_norm.weight"), E);
        T2(L("ffn_gate.weight"), E, F);
        T2(L("ffn_up.weight"), E, F);
        T2(L("ffn_down.weight"), F, E);
#undef L
    }
    T1("output_norm.weight", E);
    T2("output.weight", E, V);
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
