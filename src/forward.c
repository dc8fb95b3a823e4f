/* forward.c: the batched forward pass of a llama-family model over a token tree (a causal prompt
 * is the chain case). Each step is per-row code whose result does not depend on the other rows
 * of the batch, so evaluation is batch-invariant (see model.h). */
#include <math.h>
#include <stdlib.h>

#include "kernels/matmul.h"
#include "model.h"
#include "kernels/kernels.h"

struct ar_workspace {
    int32_t max_batch, n_ctx;
    float *x;       /* [B][n_embd] residual stream */
    float *xn;      /* [B][max(n_embd, q_dim)] normed input / attention output */
    float *q;       /* [B][q_dim] */
    float *k, *v;   /* [B][kv_dim] this batch's keys and values before they enter the cache */
    float *hg, *hu; /* [B][n_ff] */
    int32_t *depth; /* [B] */
    int32_t *rows_out;
    float *rope_cs; /* [B][n_rot] cos, sin pairs */
    ar_matmul_scratch *mm;
    int n_thr;      /* per-thread attention buffers allocated for this many threads */
    float *scores;  /* [n_thr][group][n_ctx] attention scores */
    int32_t *cells; /* [n_thr][n_ctx] */
};

ar_status ar_workspace_create(const ar_model *m, int32_t max_batch, int32_t n_ctx,
                              ar_workspace **out) {
    *out = NULL;
    if (max_batch < 1 || n_ctx < 1)
        return ar_fail(AR_ERR_INVALID_ARG, "workspace: batch %d and context %d must be >= 1",
                       max_batch, n_ctx);
    const ar_hparams *hp = &m->hp;
    size_t B = (size_t)max_batch;
    size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t wide = AR_MAX((size_t)hp->n_embd, qd);
    ar_workspace *w = calloc(1, sizeof *w);
    if (!w) return ar_fail(AR_ERR_NOMEM, "workspace: out of memory");
    w->max_batch = max_batch;
    w->n_ctx = n_ctx;
    w->x = ar_aligned_alloc(B * (size_t)hp->n_embd * sizeof(float));
    w->xn = ar_aligned_alloc(B * wide * sizeof(float));
    w->q = ar_aligned_alloc(B * qd * sizeof(float));
    w->k = ar_aligned_alloc(B * kvd * sizeof(float));
    w->v = ar_aligned_alloc(B * kvd * sizeof(float));
    w->hg = ar_aligned_alloc(B * (size_t)hp->n_ff * sizeof(float));
    w->hu = ar_aligned_alloc(B * (size_t)hp->n_ff * sizeof(float));
    w->depth = calloc((size_t)n_ctx, sizeof(int32_t));
    w->rows_out = calloc(B, sizeof(int32_t));
    w->rope_cs = ar_aligned_alloc(B * (size_t)(hp->n_rot + 2) * sizeof(float));
    size_t max_in = AR_MAX(wide, (size_t)hp->n_ff);
    ar_status s = ar_matmul_scratch_create(max_batch, (int64_t)max_in, &w->mm);
    if (s != AR_OK || !w->x || !w->xn || !w->q || !w->k || !w->v || !w->hg || !w->hu ||
        !w->depth || !w->rows_out || !w->rope_cs) {
        ar_workspace_free(w);
        return ar_fail(AR_ERR_NOMEM, "workspace for batch %d: out of memory", max_batch);
    }
    *out = w;
    return AR_OK;
}

void ar_workspace_free(ar_workspace *w) {
    if (!w) return;
    ar_aligned_free(w->x);
    ar_aligned_free(w->xn);
    ar_aligned_free(w->q);
    ar_aligned_free(w->k);
    ar_aligned_free(w->v);
    ar_aligned_free(w->hg);
    ar_aligned_free(w->hu);
    ar_aligned_free(w->rope_cs);
    ar_aligned_free(w->scores);
    ar_aligned_free(w->cells);
    ar_matmul_scratch_free(w->mm);
    free(w->depth);
    free(w->rows_out);
    free(w);
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

/* cos/sin of the rotation angles for position pos: angle_i = pos * scale * base^(-2i/n_rot),
 * computed by the running product ggml uses so results match llama.cpp's closely */
static void rope_table(float *cs, int n_rot, int32_t pos, float base, float freq_scale) {
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float t = freq_scale * theta;
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
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

/* g = silu(g) * u over n values (vectorised: kernels/kernels.h) */
static void swiglu(float *g, const float *u, size_t n) { ar_swiglu_row(g, u, (int64_t)n); }

/* ---- attention over the visible cells of each row ---- */

typedef struct attn_job {
    const ar_hparams *hp;
    const ar_kv *kv;
    int layer;
    int32_t first, n;    /* rows [first, n) are computed; workspace row = row - first */
    int32_t base;        /* committed cells */
    const int32_t *parent;
    const float *q;      /* [n][q_dim] */
    float *out;          /* [n][q_dim] */
    ar_workspace *w;
} attn_job;

/* The cells row i sees, in position order: the committed context, its ancestors, itself. */
static int32_t visible_cells(const attn_job *j, int32_t i, int32_t *cells) {
    int32_t t = 0;
    for (int32_t c = 0; c < j->base; c++) cells[t++] = c;
    if (!j->parent) { /* chain: every earlier row of the batch */
        for (int32_t r = 0; r <= i; r++) cells[t++] = j->base + r;
        return t;
    }
    int32_t d = j->w->depth[i];
    for (int32_t r = i; r >= 0; r = j->parent[r]) cells[t + d--] = j->base + r;
    return t + j->w->depth[i] + 1;
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
                      .scale = 1.0f / sqrtf((float)hd),
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

/* ---- the whole batch ---- */

static void eval_rows(const ar_model *m, ar_kv *kv, ar_workspace *w, ar_pool *pool,
                      const ar_batch *b, float *logits) {
    const ar_hparams *hp = &m->hp;
    const int32_t first = b->first, n = b->n - b->first; /* n rows computed */
    const int E = hp->n_embd, hd = hp->head_dim;
    const int qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    const int32_t base = kv->n_committed;
    const ar_type_traits *emb = ar_type_get(m->tok_embd.type);

    for (int32_t i = 0; i < n; i++) {
        int32_t row = first + i;
        emb->to_float((const uint8_t *)m->tok_embd.data + (size_t)b->tokens[row] * m->tok_embd.nb1,
                      w->x + (size_t)i * E, E);
        rope_table(w->rope_cs + (size_t)i * (hp->n_rot + 2), hp->n_rot, base + w->depth[row],
                   hp->rope_base, hp->rope_freq_scale);
    }

    attn_job aj = {.hp = hp, .kv = kv, .base = base, .parent = b->parent, .w = w,
                   .first = first, .n = b->n, .q = w->q, .out = w->xn};
    for (int l = 0; l < kv->n_layer; l++) {
        const ar_layer *L = &m->layers[l];
        for (int32_t i = 0; i < n; i++)
            rmsnorm(w->xn + (size_t)i * E, w->x + (size_t)i * E, L->attn_norm, E, hp->rms_eps);
        const ar_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {w->q, w->k, w->v};
        ar_matmul_set(w->mm, pool, qkv, 3, w->xn, n, qkv_out);
        for (int32_t i = 0; i < n; i++) {
            float *q = w->q + (size_t)i * qd, *k = w->k + (size_t)i * kvd;
            float *v = w->v + (size_t)i * kvd;
            if (L->bq) for (int d = 0; d < qd; d++) q[d] += L->bq[d];
            if (L->bk) for (int d = 0; d < kvd; d++) k[d] += L->bk[d];
            if (L->bv) for (int d = 0; d < kvd; d++) v[d] += L->bv[d];
            const float *cs = w->rope_cs + (size_t)i * (hp->n_rot + 2);
            rope_apply(q, hp->n_head, hd, hp->n_rot, cs, hp->rope_type);
            rope_apply(k, hp->n_head_kv, hd, hp->n_rot, cs, hp->rope_type);
            store_kv(kv, l, base + first + i, k, v);
        }
        aj.layer = l; /* attention: one (row, head) pair per item */
        ar_pool_run_or_inline(pool, attn_worker, &aj);
        ar_matmul_add(w->mm, pool, &L->wo, w->xn, n, w->x); /* x += wo · attn */
        for (int32_t i = 0; i < n; i++)
            rmsnorm(w->xn + (size_t)i * E, w->x + (size_t)i * E, L->ffn_norm, E, hp->rms_eps);
        const ar_tensor *gate_up[2] = {&L->w_gate, &L->w_up};
        float *gate_up_out[2] = {w->hg, w->hu};
        ar_matmul_set(w->mm, pool, gate_up, 2, w->xn, n, gate_up_out);
        swiglu(w->hg, w->hu, (size_t)n * hp->n_ff);
        ar_matmul_add(w->mm, pool, &L->w_down, w->hg, n, w->x); /* x += down · (silu(g) * u) */
    }

    if (b->skip_logits) return;
    int32_t n_out = 0; /* final norm of the wanted rows, packed */
    for (int32_t i = 0; i < n; i++) {
        if (b->logits && !b->logits[first + i]) continue;
        rmsnorm(w->xn + (size_t)n_out * E, w->x + (size_t)i * E, m->output_norm, E, hp->rms_eps);
        n_out++;
    }
    if (n_out) ar_matmul(w->mm, pool, &m->output, w->xn, n_out, logits);
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
    eval_rows(m, kv, w, pool, b, logits);
    return AR_OK;
}
