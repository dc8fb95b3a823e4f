/* model.c: loading a llama-family GGUF model (hyperparameters, tensor shapes checked against
 * them) and the KV cache. The forward pass is in forward.c. */
#include "model.h"

#include "kernels/matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

const char *ar_arch_name(ar_arch a) { return a == AR_ARCH_QWEN2 ? "qwen2" : "llama"; }

ar_model_params ar_model_default_params(void) {
    return (ar_model_params){.vocab_only = false, .resident = false, .repack = false};
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

static ar_status load_hparams(ar_model *m, const char *arch) {
    ar_hparams *hp = &m->hp;
    ar_status s;
#define HP(call)                                                                                   \
    if ((s = (call)) != AR_OK) return s
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
    HP(hp_f32(m, arch, "attention.layer_norm_rms_epsilon", 1e-5f, 1e-12f, 1.0f, &hp->rms_eps));
    HP(hp_f32(m, arch, "rope.freq_base", 10000.0f, 1e-3f, 1e12f, &hp->rope_base));
    float factor = 1.0f;
    ar_str stype = {0};
    {
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        if (ar_gguf_get_str(m->gguf, key, &stype) == AR_OK) {
            bool linear = stype.len == 6 && !memcmp(stype.ptr, "linear", 6);
            bool none = stype.len == 4 && !memcmp(stype.ptr, "none", 4);
            if (!linear && !none)
                return ar_fail(AR_ERR_UNSUPPORTED, "%s: rope scaling type '%.*s' not supported",
                               m->path, (int)AR_MIN(stype.len, 32), stype.ptr);
            if (linear) HP(hp_f32(m, arch, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor));
        } else {
            HP(hp_f32(m, arch, "rope.scale_linear", 1.0f, 1e-3f, 1e6f, &factor));
        }
    }
    ar_clear_error();
    hp->rope_freq_scale = 1.0f / factor;
#undef HP
    if (hp->n_head % hp->n_head_kv != 0)
        return ar_fail(AR_ERR_FORMAT, "%s: head count %d is not a multiple of KV head count %d",
                       m->path, hp->n_head, hp->n_head_kv);
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return ar_fail(AR_ERR_FORMAT, "%s: rope dimension %d must be even and <= head size %d",
                       m->path, hp->n_rot, hp->head_dim);
    hp->rope_type = hp->arch == AR_ARCH_QWEN2 ? AR_ROPE_NEOX : AR_ROPE_NORM;
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
    out->name = t->name;
    out->type = t->type;
    for (int i = 0; i < 4; i++) out->ne[i] = t->ne[i];
    out->nb1 = ar_row_size(t->type, t->ne[0]);
    out->data = t->data;
    return AR_OK;
}

/* A 1-D F32 vector of n values: zero-copy when stored as F32, else dequantized into `owned`. */
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
    if (t.type == AR_TYPE_F32) {
        *out = t.data;
        return AR_OK;
    }
    const ar_type_traits *tt = ar_type_get(t.type);
    if (ob->used + (size_t)n > ob->cap)
        return ar_fail(AR_ERR_INTERNAL, "%s: vector buffer too small", m->path);
    tt->to_float(t.data, ob->data + ob->used, n);
    *out = ob->data + ob->used;
    ob->used += (size_t)n;
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
    int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    int64_t QD = (int64_t)hp->n_head * hp->head_dim, KVD = (int64_t)hp->n_head_kv * hp->head_dim;
    if ((s = get_tensor(m, "token_embd.weight", E, V, false, &m->tok_embd)) != AR_OK) return s;
    if ((s = get_tensor(m, "output.weight", E, V, true, &m->output)) != AR_OK) return s;
    if (!m->output.data) m->output = m->tok_embd; /* tied */

    /* room for every 1-D tensor in case none is stored as F32 */
    size_t n_vec = (size_t)E * (1 + 2 * (size_t)hp->n_layer) + (size_t)hp->n_layer * (QD + 2 * KVD);
    owned_buf ob = {.data = calloc(n_vec, sizeof(float)), .cap = n_vec};
    if (!ob.data) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    m->owned = ob.data;
    if ((s = get_vector(m, &ob, "output_norm.weight", E, false, &m->output_norm)) != AR_OK)
        return s;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    bool biases = hp->arch == AR_ARCH_QWEN2;
    for (int32_t l = 0; l < hp->n_layer; l++) {
        ar_layer *L = &m->layers[l];
        char name[96];
#define T(field, suffix, n_in, n_out)                                                              \
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);                                           \
    if ((s = get_tensor(m, name, n_in, n_out, false, &L->field)) != AR_OK) return s
#define VEC(field, suffix, n, opt)                                                                 \
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);                                           \
    if ((s = get_vector(m, &ob, name, n, opt, &L->field)) != AR_OK) return s
        VEC(attn_norm, "attn_norm.weight", E, false);
        T(wq, "attn_q.weight", E, QD);
        T(wk, "attn_k.weight", E, KVD);
        T(wv, "attn_v.weight", E, KVD);
        T(wo, "attn_output.weight", QD, E);
        VEC(bq, "attn_q.bias", QD, !biases);
        VEC(bk, "attn_k.bias", KVD, !biases);
        VEC(bv, "attn_v.bias", KVD, !biases);
        VEC(ffn_norm, "ffn_norm.weight", E, false);
        T(w_gate, "ffn_gate.weight", E, F);
        T(w_up, "ffn_up.weight", E, F);
        T(w_down, "ffn_down.weight", F, E);
#undef T
#undef VEC
    }
    return AR_OK;
}

uint64_t ar_model_weight_bytes(const ar_model *m) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) total += m->gguf->tensors[i].nbytes;
    return total;
}

/* Touches every page of the mapping so a resident model never faults during drafting, and
 * locks it in memory when the process may (RLIMIT_MEMLOCK); failure to lock is not an error. */
static void make_resident(ar_model *m) {
    const ar_gguf *g = m->gguf;
    if (!g->owns_map) return;
    madvise((void *)g->map, g->size, MADV_WILLNEED);
    long page = sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    for (size_t off = 0; off < g->size; off += (size_t)page) sink ^= g->map[off];
    (void)sink;
    m->resident = mlock(g->map, g->size) == 0;
}

/* The matrices the forward pass multiplies by, for repacking. */
static int model_matrices(ar_model *m, ar_tensor **out) {
    int n = 0;
    for (int32_t l = 0; l < m->hp.n_layer; l++) {
        ar_layer *L = &m->layers[l];
        ar_tensor *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            if (out) out[n++] = w[i];
            else n++;
    }
    if (out) out[n] = &m->output;
    return n + 1;
}

/* One allocation holds every matrix's repacked copy (64-byte aligned offsets). */
static ar_status repack(ar_model *m) {
    const int n = model_matrices(m, NULL);
    ar_tensor **mats = malloc(sizeof *mats * (size_t)n);
    if (!mats) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", m->path);
    model_matrices(m, mats);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (ar_matmul_packed_bytes(mats[i]) + 63) / 64 * 64;
    if (total > 0) {
        /* 2 MB aligned, and huge pages asked for where the kernel gives them on request: the
         * kernels stream the whole copy every token, and 4 KB pages cost a TLB miss each */
        const size_t huge = (size_t)2 << 20;
        total = (total + huge - 1) / huge * huge;
        if (posix_memalign(&m->packed, huge, total) != 0) {
            free(mats);
            return ar_fail(AR_ERR_NOMEM, "%s: no memory for the repacked weights (%zu MB)",
                           m->path, total >> 20);
        }
        m->packed_bytes = total;
#ifdef MADV_HUGEPAGE
        madvise(m->packed, total, MADV_HUGEPAGE); /* advice: failure is harmless */
#endif
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            const size_t bytes = ar_matmul_packed_bytes(mats[i]);
            if (!bytes) continue;
            ar_matmul_repack(mats[i], (uint8_t *)m->packed + off);
            mats[i]->packed = (uint8_t *)m->packed + off;
            off += (bytes + 63) / 64 * 64;
        }
    }
    free(mats);
    return AR_OK;
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
        if (arch.len == 5 && !memcmp(arch.ptr, "llama", 5)) m->hp.arch = AR_ARCH_LLAMA;
        else if (arch.len == 5 && !memcmp(arch.ptr, "qwen2", 5)) m->hp.arch = AR_ARCH_QWEN2;
        else {
            s = ar_fail(AR_ERR_UNSUPPORTED,
                        "%s: architecture '%s' is not supported (llama, qwen2 are)", path, name);
            goto fail;
        }
        if ((s = load_hparams(m, name)) != AR_OK) goto fail;
        if ((s = load_tensors(m)) != AR_OK) goto fail;
        if (ar_vocab_n_tokens(m->vocab) > m->hp.n_vocab + 128 ||
            ar_vocab_n_tokens(m->vocab) < 1) {
            s = ar_fail(AR_ERR_FORMAT, "%s: tokenizer has %d tokens but the model's vocabulary is %d",
                        path, ar_vocab_n_tokens(m->vocab), m->hp.n_vocab);
            goto fail;
        }
        if (params.resident) make_resident(m);
        if (params.repack && (s = repack(m)) != AR_OK) goto fail;
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
    ar_vocab_free(m->vocab);
    ar_gguf_close(m->gguf);
    free(m->layers);
    free(m->owned);
    free(m->packed);
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
    /* Refuse up front what cannot fit in physical memory: calloc of a huge cache may succeed
     * (pages are only committed when touched) and the process would die later instead. */
    uint64_t cell =
        (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim * (type == AR_TYPE_F16 ? 2 : 4);
    uint64_t bytes;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t phys = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
    if (!ar_mul_ok(cell, 2ull * (uint64_t)n_layer, &bytes) ||
        !ar_mul_ok(bytes, (uint64_t)n_ctx, &bytes) || bytes > phys || bytes > SIZE_MAX)
        return ar_fail(AR_ERR_NOMEM,
                       "KV cache of %d cells needs %.1f GiB (%d layers x 2 x %d cells x %llu "
                       "bytes), more than the %.1f GiB of physical memory: use a smaller context",
                       n_ctx, (double)cell * 2.0 * n_layer * n_ctx / 1073741824.0, n_layer, n_ctx,
                       (unsigned long long)cell, (double)phys / 1073741824.0);
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
