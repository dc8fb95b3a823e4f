/* forward.c: the batched forward pass over a token tree (a causal prompt is the chain case), for
 * every architecture of the traits table (model.c): a layer is an attention block and a
 * feed-forward block, each a few steps named after their math, and the traits choose among the
 * variants (fused projections, per-head q/k norms, post-norms, GELU, soft-capping, windows).
 * Each step is per-row code whose result does not depend on the other rows of the batch, so
 * evaluation is batch-invariant (see model.h). */
#include <math.h>
#include <stdlib.h>

#include "src/kernels/matmul.h"
#include "model.h"
#include "src/kernels/kernels.h"
#include "stream.h"

struct ar_workspace {
    int32_t max_batch, n_ctx;
    float *x;       /* [B][n_embd] residual stream */
    float *xn;      /* [B][max(n_embd, q_dim)] normed input / attention output */
    float *q;       /* [B][q_dim] */
    float *k, *v;   /* [B][kv_dim] this batch's keys and values before they enter the cache */
    float *hg, *hu; /* [B][n_ff] */
    float *y;       /* [B][n_embd] a block's output before its post-norm (post_norms) */
    float *fused;   /* [B][max(q_dim + 2 kv_dim, 2 n_ff)] fused projections, or NULL */
    int32_t *depth; /* [B] */
    int32_t *rows_out;
    float *rope_cs; /* [B][n_rot] cos, sin pairs */
    ar_matmul_scratch *mm;
    int n_thr;      /* per-thread attention buffers allocated for this many threads */
    float *scores;  /* [n_thr][group][n_ctx] attention scores */
    int32_t *cells; /* [n_thr][n_ctx] */
    ar_stream *stream; /* weights under a memory budget (NULL: the mapping) */
    uint8_t *embd_row; /* a raw embedding row read from the file */
};

/* The workspace's per-row buffers, one list for creating, freeing and counting them: buffer i
 * of w, and the floats a row of it takes for model m (0: not needed by this architecture). */
#define WS_ROW_BUFFERS 10
static float **row_buffer(ar_workspace *w, int i) {
    float **const f[WS_ROW_BUFFERS] = {&w->x, &w->xn, &w->q, &w->k, &w->v, &w->hg, &w->hu,
                                       &w->y, &w->rope_cs, &w->fused};
    return f[i];
}
static void row_floats(const ar_model *m, uint64_t *floats) {
    const ar_hparams *hp = &m->hp;
    const ar_arch_traits *tr = ar_arch_get(hp->arch);
    const uint64_t E = (uint64_t)hp->n_embd, F = (uint64_t)hp->n_ff;
    const uint64_t qd = (uint64_t)hp->n_head * hp->head_dim, kvd = (uint64_t)hp->n_head_kv * hp->head_dim;
    const uint64_t fused = tr->fused_qkv || tr->fused_gate_up ? AR_MAX(qd + 2 * kvd, 2 * F) : 0;
    const uint64_t n[WS_ROW_BUFFERS] = {E, AR_MAX(E, qd), qd, kvd, kvd, F, F, E,
                                        (uint64_t)hp->n_rot + 2, fused};
    memcpy(floats, n, sizeof n);
}

/* The widest activation row a matmul rounds (its scratch's row). */
static int64_t max_matmul_in(const ar_hparams *hp) {
    return (int64_t)AR_MAX(AR_MAX((size_t)hp->n_embd, (size_t)hp->n_head * hp->head_dim),
                           (size_t)hp->n_ff);
}

uint64_t ar_workspace_bytes(const ar_model *m, int32_t max_batch, int32_t n_ctx, int n_threads) {
    const ar_hparams *hp = &m->hp;
    uint64_t per_row[WS_ROW_BUFFERS], floats = 0;
    row_floats(m, per_row);
    for (int i = 0; i < WS_ROW_BUFFERS; i++) floats += (uint64_t)max_batch * per_row[i];
    const uint64_t group = (uint64_t)(hp->n_head / hp->n_head_kv);
    floats += (uint64_t)n_threads * (uint64_t)n_ctx * (group + 1); /* attention, per thread */
    const uint64_t ints = (uint64_t)n_ctx + (uint64_t)max_batch;  /* depth, rows_out */
    return floats * sizeof(float) + ints * sizeof(int32_t) +
           ar_matmul_scratch_bytes(max_batch, max_matmul_in(hp)) + m->tok_embd.nb1 + 64;
}

ar_status ar_workspace_create(const ar_model *m, int32_t max_batch, int32_t n_ctx,
                              ar_workspace **out) {
    *out = NULL;
    if (max_batch < 1 || n_ctx < 1)
        return ar_fail(AR_ERR_INVALID_ARG, "workspace: batch %d and context %d must be >= 1",
                       max_batch, n_ctx);
    ar_workspace *w = calloc(1, sizeof *w);
    if (!w) return ar_fail(AR_ERR_NOMEM, "workspace: out of memory");
    w->max_batch = max_batch;
    w->n_ctx = n_ctx;
    uint64_t per_row[WS_ROW_BUFFERS];
    row_floats(m, per_row);
    bool ok = true;
    for (int i = 0; i < WS_ROW_BUFFERS; i++)
        if (per_row[i] && !(*row_buffer(w, i) = ar_aligned_alloc((size_t)max_batch * per_row[i] *
                                                                  sizeof(float))))
            ok = false;
    w->depth = calloc((size_t)n_ctx, sizeof(int32_t));
    w->rows_out = calloc((size_t)max_batch, sizeof(int32_t));
    ar_status s = ar_matmul_scratch_create(max_batch, max_matmul_in(&m->hp), &w->mm);
    if (s != AR_OK || !ok || !w->depth || !w->rows_out) {
        ar_workspace_free(w);
        return ar_fail(AR_ERR_NOMEM, "workspace for batch %d: out of memory", max_batch);
    }
    *out = w;
    return AR_OK;
}

void ar_workspace_free(ar_workspace *w) {
    if (!w) return;
    for (int i = 0; i < WS_ROW_BUFFERS; i++) ar_aligned_free(*row_buffer(w, i));
    ar_aligned_free(w->scores);
    ar_aligned_free(w->cells);
    ar_aligned_free(w->embd_row);
    ar_matmul_scratch_free(w->mm);
    free(w->depth);
    free(w->rows_out);
    free(w);
}

ar_status ar_workspace_set_stream(ar_workspace *w, const ar_model *m, ar_stream *s) {
    ar_aligned_free(w->embd_row);
    w->embd_row = NULL;
    w->stream = s;
    if (s && !(w->embd_row = ar_aligned_alloc(ar_stream_embed_scratch_bytes(m)))) {
        w->stream = NULL;
        return ar_fail(AR_ERR_NOMEM, "workspace: out of memory");
    }
    return AR_OK;
}

/* Per-thread attention buffers: the visible cells of a row, and the scores of the `group` query
 * heads that share a KV head. */
static ar_status ensure_thread_buffers(ar_workspace *w, int n_thr, int group) {
    if (w->n_thr >= n_thr) return AR_OK;
    ar_aligned_free(w->scores);
    ar_aligned_free(w->cells);
    w->scores = ar_aligned_alloc((size_t)n_thr * (size_t)w->n_ctx * (size_t)group * sizeof(float));
    w->cells = ar_aligned_alloc((size_t)n_thr * (size_t)w->n_ctx * sizeof(int32_t));
    w->n_thr = (w->scores && w->cells) ? n_thr : 0;
    return w->n_thr ? AR_OK : ar_fail(AR_ERR_NOMEM, "attention buffers: out of memory");
}

/* ---- the math, one row at a time ---- */

/* o = x / sqrt(mean(x^2) + eps) * g; the sum of squares in double, as ggml does (vectorised:
 * kernels/kernels.h) */
static void rmsnorm(float *o, const float *x, const float *g, int n, float eps) {
    ar_rmsnorm_row(o, x, g, n, eps);
}

/* cos/sin of the rotation angles for position pos, as ggml computes them (so results match
 * llama.cpp's closely): theta_i = pos * base^(-2i/n_rot) by a running product, divided by the
 * frequency factor f_i when the model has them (Llama 3 rope_freqs, Phi-3 longrope), times the
 * linear scale; YaRN mixes the scaled and unscaled angle by a ramp over i and scales the
 * magnitude by 1 + 0.1 ln(factor); cos and sin carry the attention factor. */
static void rope_table(float *cs, const ar_hparams *hp, int32_t pos, const float *factors) {
    const int n_rot = hp->n_rot;
    const float theta_scale = powf(hp->rope_base, -2.0f / (float)n_rot);
    const float freq_scale = hp->rope_freq_scale;
    const bool yarn = hp->rope_scaling == AR_ROPE_SCALING_YARN;
    float mscale = hp->rope_attn_factor;
    if (yarn) mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        const float extrap = factors ? theta / factors[i] : theta;
        float t = freq_scale * extrap;
        if (yarn) {
            const float lo = hp->yarn_corr[0], hi = hp->yarn_corr[1];
            const float y = ((float)i - lo) / fmaxf(0.001f, hi - lo);
            const float mix = 1.0f - fminf(1.0f, fmaxf(0.0f, y));
            t = t * (1.0f - mix) + extrap * mix;
        }
        cs[2 * i] = cosf(t) * mscale;
        cs[2 * i + 1] = sinf(t) * mscale;
        theta *= theta_scale;
    }
}

/* The frequency factors in force: rope_freqs, or Phi-3's long factors when the context exceeds
 * the original one (as llama.cpp chooses them), else its short ones; NULL for none. */
static const float *rope_factors(const ar_model *m, const ar_kv *kv) {
    if (m->rope_freqs) return m->rope_freqs;
    if (m->rope_long) return kv->cap > m->hp.n_ctx_orig ? m->rope_long : m->rope_short;
    return NULL;
}

/* rotates the first n_rot dims of each of n_heads heads of size hd */
static void rope_apply(float *x, int n_heads, int hd, int n_rot, const float *cs,
                       ar_rope_type type) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int a = type == AR_ROPE_NEOX ? i : 2 * i;
            int b = type == AR_ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b], c = cs[2 * i], s = cs[2 * i + 1];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

/* g = act(g) * u over n values: silu (vectorised: kernels/kernels.h) or gelu_tanh */
static void gated_act(ar_ffn_act act, float *g, const float *u, size_t n) {
    if (act == AR_FFN_GELU_TANH) ar_geglu_row(g, u, (int64_t)n);
    else ar_swiglu_row(g, u, (int64_t)n);
}

/* ---- attention over the visible cells of each row ---- */

typedef struct attn_job {
    const ar_hparams *hp;
    const ar_kv *kv;
    int layer;
    int32_t first, n;    /* rows [first, n) are computed; workspace row = row - first */
    int32_t base;        /* committed cells */
    int32_t n_swa;       /* this layer's sliding window (0: none) */
    const int32_t *parent;
    const float *q;      /* [n][q_dim] */
    float *out;          /* [n][q_dim] */
    ar_workspace *w;
} attn_job;

/* The cells row i sees, in position order: the committed context, its ancestors, itself; with
 * a sliding window only those at positions p with pos - n_swa < p <= pos. Cell c < base holds
 * position c, batch row r position base + depth(r): what a row sees depends on its position and
 * ancestry only, never on the other rows of the batch. */
static int32_t visible_cells(const attn_job *j, int32_t i, int32_t *cells) {
    const int32_t depth = j->w->depth[i], pos = j->base + depth;
    const int32_t lo = j->n_swa > 0 ? AR_MAX(pos - j->n_swa + 1, 0) : 0; /* first position */
    int32_t t = 0;
    for (int32_t c = lo; c < j->base; c++) cells[t++] = c;
    const int32_t d_lo = AR_MAX(lo - j->base, 0); /* shallowest visible depth in the batch */
    if (!j->parent) { /* chain: row r sits at depth r */
        for (int32_t r = d_lo; r <= i; r++) cells[t++] = j->base + r;
        return t;
    }
    for (int32_t r = i, d = depth; r >= 0 && d >= d_lo; r = j->parent[r], d--)
        cells[t + d - d_lo] = j->base + r;
    return t + depth - d_lo + 1;
}

/* One item = one row and one KV head: the query heads sharing that KV head are computed
 * together (kernels/kernels.h: ar_attn_args), so each visible cell's K and V are read once for them. */
static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const ar_hparams *hp = j->hp;
    const ar_kv *kv = j->kv;
    const int hd = hp->head_dim, n_kv = hp->n_head_kv, group = hp->n_head / hp->n_head_kv;
    int64_t lo, hi;
    ar_split((int64_t)(j->n - j->first) * n_kv, 1, ith, nth, &lo, &hi);
    int32_t *cells = j->w->cells + (size_t)ith * j->w->n_ctx;
    ar_attn_args a = {.k = kv->k[j->layer],
                      .v = kv->v[j->layer],
                      .cell_bytes = kv->cell_bytes,
                      .cells = cells,
                      .hd = hd,
                      .group = group,
                      .f16 = kv->type == AR_TYPE_F16,
                      .scale = hp->attn_scale,
                      .softcap = hp->attn_softcap,
                      .scores = j->w->scores + (size_t)ith * j->w->n_ctx * group};
    const ar_attn_fn attend = ar_attn_get();
    int32_t row = -1;
    for (int64_t item = lo; item < hi; item++) {
        const int32_t i = (int32_t)(item / n_kv); /* workspace row */
        const int kvh = (int)(item % n_kv);
        if (i != row) {
            row = i;
            a.n = visible_cells(j, j->first + i, cells);
        }
        const size_t head0 = (size_t)i * hp->n_head * hd + (size_t)kvh * group * hd;
        a.q = j->q + head0;
        a.out = j->out + head0;
        a.head_offset = (size_t)kvh * hd * (a.f16 ? 2 : 4);
        attend(&a);
    }
}

static void store_kv(ar_kv *kv, int layer, int32_t cell, const float *k, const float *v) {
    uint8_t *kd = kv->k[layer] + (size_t)cell * kv->cell_bytes;
    uint8_t *vd = kv->v[layer] + (size_t)cell * kv->cell_bytes;
    if (kv->type == AR_TYPE_F32) {
        memcpy(kd, k, kv->cell_bytes);
        memcpy(vd, v, kv->cell_bytes);
        return;
    }
    ar_fp32_to_fp16_row(k, (uint16_t *)kd, kv->kv_dim); /* cells are 2-byte aligned */
    ar_fp32_to_fp16_row(v, (uint16_t *)vd, kv->kv_dim);
}

/* ---- one layer ---- */

typedef struct rows {
    int32_t first, n; /* batch rows [first, first + n) are computed */
    int32_t base;     /* committed cells */
} rows;

/* xn = rmsnorm(x, g) for every computed row */
static void norm_rows(const ar_hparams *hp, float *xn, const float *x, const float *g, int32_t n) {
    const int E = hp->n_embd;
    for (int32_t i = 0; i < n; i++)
        rmsnorm(xn + (size_t)i * E, x + (size_t)i * E, g, E, hp->rms_eps);
}

/* x += rmsnorm(y, g) (post_norms), through xn */
static void add_post_normed(const ar_hparams *hp, float *x, float *xn, const float *y,
                            const float *g, int32_t n) {
    const int E = hp->n_embd;
    norm_rows(hp, xn, y, g, n);
    for (size_t i = 0; i < (size_t)n * E; i++) x[i] += xn[i];
}

/* q, k, v = W · xn: three matrices, or one fused [q | k | v] split by row */
static void project_qkv(const ar_model *m, const ar_layer *L, ar_workspace *w, ar_pool *pool,
                        int32_t n) {
    const ar_hparams *hp = &m->hp;
    if (!L->wqkv.data) {
        const ar_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {w->q, w->k, w->v};
        ar_matmul_set(w->mm, pool, qkv, 3, w->xn, n, qkv_out);
        return;
    }
    const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    ar_matmul(w->mm, pool, &L->wqkv, w->xn, n, w->fused);
    for (int32_t i = 0; i < n; i++) {
        const float *r = w->fused + (size_t)i * (qd + 2 * kvd);
        memcpy(w->q + (size_t)i * qd, r, qd * sizeof(float));
        memcpy(w->k + (size_t)i * kvd, r + qd, kvd * sizeof(float));
        memcpy(w->v + (size_t)i * kvd, r + qd + kvd, kvd * sizeof(float));
    }
}

/* Per row: biases, per-head RMSNorm of q and k (qk_norm), rotation; K and V into the cache. */
static void prepare_qkv(const ar_model *m, const ar_layer *L, int l, ar_kv *kv, ar_workspace *w,
                        const rows *r) {
    const ar_hparams *hp = &m->hp;
    const int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    for (int32_t i = 0; i < r->n; i++) {
        float *q = w->q + (size_t)i * qd, *k = w->k + (size_t)i * kvd;
        float *v = w->v + (size_t)i * kvd;
        if (L->bq) for (int d = 0; d < qd; d++) q[d] += L->bq[d];
        if (L->bk) for (int d = 0; d < kvd; d++) k[d] += L->bk[d];
        if (L->bv) for (int d = 0; d < kvd; d++) v[d] += L->bv[d];
        if (L->q_norm) { /* in place through xn, which is free until attention writes it */
            float *t = w->xn + (size_t)i * AR_MAX(hp->n_embd, qd);
            for (int h = 0; h < hp->n_head; h++) rmsnorm(t + h * hd, q + h * hd, L->q_norm, hd, hp->rms_eps);
            memcpy(q, t, (size_t)qd * sizeof(float));
            for (int h = 0; h < hp->n_head_kv; h++) rmsnorm(t + h * hd, k + h * hd, L->k_norm, hd, hp->rms_eps);
            memcpy(k, t, (size_t)kvd * sizeof(float));
        }
        const float *cs = w->rope_cs + (size_t)i * (hp->n_rot + 2);
        rope_apply(q, hp->n_head, hd, hp->n_rot, cs, hp->rope_type);
        rope_apply(k, hp->n_head_kv, hd, hp->n_rot, cs, hp->rope_type);
        store_kv(kv, l, r->base + r->first + i, k, v);
    }
}

/* x += wo · attention(norm(x)), or x += post_norm(wo · attention(norm(x))) */
static void attention_block(const ar_model *m, const ar_layer *L, int l, ar_kv *kv,
                            ar_workspace *w, ar_pool *pool, attn_job *aj, const rows *r) {
    const ar_hparams *hp = &m->hp;
    norm_rows(hp, w->xn, w->x, L->attn_norm, r->n);
    project_qkv(m, L, w, pool, r->n);
    prepare_qkv(m, L, l, kv, w, r);
    aj->layer = l; /* attention: one (row, head) pair per item, into xn */
    aj->n_swa = L->n_swa;
    ar_pool_run_or_inline(pool, attn_worker, aj);
    if (!L->attn_post_norm) {
        ar_matmul_add(w->mm, pool, &L->wo, w->xn, r->n, w->x);
        return;
    }
    ar_matmul(w->mm, pool, &L->wo, w->xn, r->n, w->y);
    add_post_normed(hp, w->x, w->xn, w->y, L->attn_post_norm, r->n);
}

/* x += down · (act(gate · xn) * (up · xn)), xn = norm(x); gate and up fused or not; with
 * post_norms the sum is normed before it is added */
static void ffn_block(const ar_model *m, const ar_layer *L, ar_workspace *w, ar_pool *pool,
                      const rows *r) {
    const ar_hparams *hp = &m->hp;
    const ar_ffn_act act = ar_arch_get(hp->arch)->ffn_act;
    const size_t F = (size_t)hp->n_ff;
    norm_rows(hp, w->xn, w->x, L->ffn_norm, r->n);
    if (!L->w_gate.data) { /* fused: row i of the product is [gate | up] */
        ar_matmul(w->mm, pool, &L->w_up, w->xn, r->n, w->fused);
        for (int32_t i = 0; i < r->n; i++) {
            float *gu = w->fused + (size_t)i * 2 * F;
            gated_act(act, gu, gu + F, F);
            memcpy(w->hg + (size_t)i * F, gu, F * sizeof(float));
        }
    } else {
        const ar_tensor *gate_up[2] = {&L->w_gate, &L->w_up};
        float *gate_up_out[2] = {w->hg, w->hu};
        ar_matmul_set(w->mm, pool, gate_up, 2, w->xn, r->n, gate_up_out);
        gated_act(act, w->hg, w->hu, (size_t)r->n * F);
    }
    if (!L->ffn_post_norm) {
        ar_matmul_add(w->mm, pool, &L->w_down, w->hg, r->n, w->x);
        return;
    }
    ar_matmul(w->mm, pool, &L->w_down, w->hg, r->n, w->y);
    add_post_normed(hp, w->x, w->xn, w->y, L->ffn_post_norm, r->n);
}

/* ---- the whole batch ---- */

/* The weights of layer l / of the head for this pass: the mapping's, or the stream's (a resident
 * copy, or a slot the reader filled; _end gives the slot back). */
static ar_status layer_begin(const ar_model *m, ar_workspace *w, int l, const ar_layer **L) {
    if (!w->stream) {
        *L = &m->layers[l];
        return AR_OK;
    }
    return ar_stream_layer_begin(w->stream, l, L);
}
static void layer_end(ar_workspace *w, int l) {
    if (w->stream) ar_stream_layer_end(w->stream, l);
}

/* x = embedding of each row's token (times sqrt(n_embd) where the traits say so); the rotation
 * table of each row's position. Under a budget the rows come from the stream (read from the
 * file, not through the mapping). */
static ar_status embed_rows(const ar_model *m, const ar_kv *kv, ar_workspace *w,
                            const ar_batch *b, const rows *r) {
    const ar_hparams *hp = &m->hp;
    const int E = hp->n_embd;
    const ar_type_traits *emb = ar_type_get(m->tok_embd.type);
    const float *factors = rope_factors(m, kv);
    const bool scale = ar_arch_get(hp->arch)->embd_scale;
    const float s = sqrtf((float)E);
    if (w->stream && r->n > 1) ar_stream_embed_prefetch(w->stream, b->tokens + r->first, r->n);
    for (int32_t i = 0; i < r->n; i++) {
        int32_t row = r->first + i;
        float *x = w->x + (size_t)i * E;
        if (w->stream) {
            ar_status st = ar_stream_embed(w->stream, b->tokens[row], w->embd_row, x);
            if (st != AR_OK) return st;
        } else {
            emb->to_float((const uint8_t *)m->tok_embd.data +
                              (size_t)b->tokens[row] * m->tok_embd.nb1,
                          x, E);
        }
        if (scale) for (int d = 0; d < E; d++) x[d] *= s;
        rope_table(w->rope_cs + (size_t)i * (hp->n_rot + 2), hp, r->base + w->depth[row],
                   factors);
    }
    return AR_OK;
}

static ar_status eval_rows(const ar_model *m, ar_kv *kv, ar_workspace *w, ar_pool *pool,
                           const ar_batch *b, float *logits) {
    const ar_hparams *hp = &m->hp;
    const rows r = {.first = b->first, .n = b->n - b->first, .base = kv->n_committed};
    const int E = hp->n_embd;
    ar_status s = embed_rows(m, kv, w, b, &r);
    if (s != AR_OK) return s;
    ar_matmul_scratch_allow_blas(w->mm, b->prompt);
    attn_job aj = {.hp = hp, .kv = kv, .base = r.base, .parent = b->parent, .w = w,
                   .first = r.first, .n = b->n, .q = w->q, .out = w->xn};
    for (int l = 0; l < kv->n_layer; l++) {
        const ar_layer *L;
        if ((s = layer_begin(m, w, l, &L)) != AR_OK) return s;
        attention_block(m, L, l, kv, w, pool, &aj, &r);
        ffn_block(m, L, w, pool, &r);
        layer_end(w, l);
    }

    /* the head: taken even when no logits are wanted, since a pass takes every unit */
    const float *out_norm = m->output_norm;
    const ar_tensor *out_w = &m->output;
    if (w->stream && (s = ar_stream_head_begin(w->stream, &out_norm, &out_w)) != AR_OK) return s;
    int32_t n_out = 0; /* final norm of the wanted rows, packed */
    for (int32_t i = 0; i < r.n && !b->skip_logits; i++) {
        if (b->logits && !b->logits[r.first + i]) continue;
        rmsnorm(w->xn + (size_t)n_out * E, w->x + (size_t)i * E, out_norm, E, hp->rms_eps);
        n_out++;
    }
    if (n_out) {
        ar_matmul(w->mm, pool, out_w, w->xn, n_out, logits);
        if (hp->final_softcap > 0.0f)
            ar_softcap_row(logits, (int64_t)n_out * hp->n_vocab, hp->final_softcap);
    }
    if (w->stream) ar_stream_head_end(w->stream);
    return AR_OK;
}

ar_status ar_model_eval(const ar_model *m, ar_kv *kv, ar_workspace *w, ar_pool *pool,
                        const ar_batch *b, float *logits) {
    const ar_hparams *hp = &m->hp;
    if (m->vocab_only) return ar_fail(AR_ERR_INVALID_ARG, "%s: vocabulary-only model", m->path);
    if (b->n < 1 || b->first < 0 || b->first >= b->n)
        return ar_fail(AR_ERR_INVALID_ARG, "batch: rows [%d, %d) to compute is empty", b->first,
                       b->n);
    if (b->n - b->first > w->max_batch)
        return ar_fail(AR_ERR_INVALID_ARG, "batch of %d rows exceeds the workspace's %d",
                       b->n - b->first, w->max_batch);
    if ((int64_t)kv->n_committed + b->n > kv->cap || kv->cap > w->n_ctx)
        return ar_fail(AR_ERR_CONTEXT_FULL, "context full: %d committed + %d new > %d cells",
                       kv->n_committed, b->n, kv->cap);
    for (int32_t i = 0; i < b->n; i++) {
        int32_t t = b->tokens[i];
        if (t < 0 || t >= hp->n_vocab)
            return ar_fail(AR_ERR_INVALID_ARG, "token id %d at batch row %d out of range [0, %d)",
                           t, i, hp->n_vocab);
        int32_t p = b->parent ? b->parent[i] : i - 1;
        if (p < -1 || p >= i)
            return ar_fail(AR_ERR_INVALID_ARG, "batch row %d: parent %d must be in [-1, %d)", i,
                           p, i);
        w->depth[i] = p < 0 ? 0 : w->depth[p] + 1;
    }
    ar_status s =
        ensure_thread_buffers(w, pool ? ar_pool_threads(pool) : 1, hp->n_head / hp->n_head_kv);
    if (s != AR_OK) return s;
    return eval_rows(m, kv, w, pool, b, logits);
}
