/* ref_forward.c: the float64 reference forward pass (see ref_forward.h). One function per piece of
 * the published math; the architecture decides which pieces run, as the HF model classes do. */
#include "ref_forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/gguf.h"

typedef struct rf_layer {
    const float *attn_norm, *wq, *wk, *wv, *wqkv, *bq, *bk, *bv, *q_norm, *k_norm, *wo;
    const float *post_attn_norm, *ffn_norm, *w_gate, *w_up, *w_down, *post_ffn_norm;
    int window; /* 0: global */
} rf_layer;

struct rf_model {
    ar_gguf *g;
    char arch[32];
    int E, L, H, KVH, F, HD, n_rot, V, n_ctx_train;
    double eps, base, attn_scale, attn_cap, final_cap;
    bool neox, embd_scale;
    /* rope: inv_freq[i] for i < n_rot / 2, and the cos/sin magnitude */
    double *inv_freq, mscale;
    /* longrope: the two factor sets, chosen per call by n_ctx */
    const float *long_f, *short_f;
    int orig_ctx;
    const float *embd, *out_norm, *out;
    rf_layer *layers;
};

/* ---- reading the file ---- */

static const float *tensor(const rf_model *m, const char *name, bool required) {
    const ar_gguf_tensor *t = ar_gguf_find_tensor(m->g, name);
    if (!t) {
        if (required) fprintf(stderr, "ref: missing tensor %s\n", name);
        return NULL;
    }
    if (t->type != AR_TYPE_F32) {
        fprintf(stderr, "ref: tensor %s is not F32\n", name);
        return NULL;
    }
    return t->data;
}

static const float *layer_tensor(const rf_model *m, int l, const char *suffix, bool required) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
    return tensor(m, name, required);
}

static double key_f(const rf_model *m, const char *suffix, double dflt) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    float v;
    return ar_gguf_get_f32(m->g, key, &v) == AR_OK ? (double)v : dflt;
}

static int key_u(const rf_model *m, const char *suffix, int dflt) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    uint32_t v;
    return ar_gguf_get_u32(m->g, key, &v) == AR_OK ? (int)v : dflt;
}

static bool key_s(const rf_model *m, const char *suffix, const char *want) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    ar_str s;
    return ar_gguf_get_str(m->g, key, &s) == AR_OK && s.len == strlen(want) &&
           !memcmp(s.ptr, want, s.len);
}

static bool is(const rf_model *m, const char *arch) { return !strcmp(m->arch, arch); }

/* modeling_rope_utils: inv_freq = 1 / base^(2i/d) (default), divided by the Llama 3 factors
 * stored as rope_freqs, or YaRN's blend of interpolated and extrapolated frequencies with its
 * attention factor 0.1 ln(factor) + 1. Longrope is per call (rope_inv_freq). */
static void setup_rope(rf_model *m) {
    const int half = m->n_rot / 2;
    m->inv_freq = calloc((size_t)half, sizeof(double));
    m->mscale = 1.0;
    for (int i = 0; i < half; i++) m->inv_freq[i] = 1.0 / pow(m->base, 2.0 * i / m->n_rot);
    const float *llama3 = tensor(m, "rope_freqs.weight", false);
    if (llama3)
        for (int i = 0; i < half; i++) m->inv_freq[i] /= (double)llama3[i];
    if (key_s(m, "rope.scaling.type", "yarn")) {
        const double factor = key_f(m, "rope.scaling.factor", 1.0);
        const int orig = key_u(m, "rope.scaling.original_context_length", m->n_ctx_train);
        const double dim = m->n_rot, pi = 3.14159265358979323846;
        /* find_correction_dim(num_rotations) = dim ln(orig / (num_rotations 2 pi)) / (2 ln base) */
        double low = floor(dim * log(orig / (32.0 * 2 * pi)) / (2 * log(m->base)));
        double high = ceil(dim * log(orig / (1.0 * 2 * pi)) / (2 * log(m->base)));
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < half; i++) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            const double extrap_factor = 1.0 - ramp;
            const double extrap = m->inv_freq[i], interp = m->inv_freq[i] / factor;
            m->inv_freq[i] = interp * (1 - extrap_factor) + extrap * extrap_factor;
        }
        m->mscale = 0.1 * log(factor) + 1.0;
    }
    m->long_f = tensor(m, "rope_factors_long.weight", false);
    m->short_f = tensor(m, "rope_factors_short.weight", false);
    m->orig_ctx = key_u(m, "rope.scaling.original_context_length", m->n_ctx_train);
}

rf_model *rf_load(const char *path) {
    rf_model *m = calloc(1, sizeof *m);
    if (ar_gguf_open(path, &m->g) != AR_OK) {
        fprintf(stderr, "ref: cannot open %s\n", path);
        free(m);
        return NULL;
    }
    ar_str a;
    if (ar_gguf_get_str(m->g, "general.architecture", &a) != AR_OK || a.len >= sizeof m->arch) {
        rf_free(m);
        return NULL;
    }
    memcpy(m->arch, a.ptr, a.len);
    m->E = key_u(m, "embedding_length", 0);
    m->L = key_u(m, "block_count", 0);
    m->H = key_u(m, "attention.head_count", 0);
    m->KVH = key_u(m, "attention.head_count_kv", m->H);
    m->F = key_u(m, "feed_forward_length", 0);
    m->HD = key_u(m, "attention.key_length", m->E / m->H);
    m->n_rot = key_u(m, "rope.dimension_count", m->HD);
    m->n_ctx_train = key_u(m, "context_length", 2048);
    m->eps = key_f(m, "attention.layer_norm_rms_epsilon", 1e-6);
    m->base = key_f(m, "rope.freq_base", 10000.0);
    m->neox = !is(m, "llama");
    m->embd_scale = is(m, "gemma2");
    /* Gemma 2: query_pre_attn_scalar is head_dim for 2B and 9B, n_embd / n_head for 27B */
    m->attn_scale = 1.0 / sqrt(is(m, "gemma2") && m->L == 46 ? (double)(m->E / m->H) : m->HD);
    m->attn_scale = key_f(m, "attention.scale", m->attn_scale);
    if (is(m, "gemma2")) {
        m->attn_cap = key_f(m, "attn_logit_softcapping", 50.0);
        m->final_cap = key_f(m, "final_logit_softcapping", 30.0);
    }
    const ar_gguf_tensor *emb = ar_gguf_find_tensor(m->g, "token_embd.weight");
    m->V = emb ? (int)emb->ne[1] : 0;
    m->embd = tensor(m, "token_embd.weight", true);
    m->out_norm = tensor(m, "output_norm.weight", true);
    m->out = tensor(m, "output.weight", false);
    if (!m->out) m->out = m->embd; /* tied */
    bool ok = m->embd && m->out_norm && m->E > 0 && m->L > 0 && m->H > 0 && m->F > 0;
    setup_rope(m);
    const int window = key_u(m, "attention.sliding_window", 0);
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    for (int l = 0; ok && l < m->L; l++) {
        rf_layer *y = &m->layers[l];
        y->attn_norm = layer_tensor(m, l, "attn_norm.weight", true);
        if (is(m, "phi3")) {
            y->wqkv = layer_tensor(m, l, "attn_qkv.weight", true);
        } else {
            y->wq = layer_tensor(m, l, "attn_q.weight", true);
            y->wk = layer_tensor(m, l, "attn_k.weight", true);
            y->wv = layer_tensor(m, l, "attn_v.weight", true);
            y->bq = layer_tensor(m, l, "attn_q.bias", false);
            y->bk = layer_tensor(m, l, "attn_k.bias", false);
            y->bv = layer_tensor(m, l, "attn_v.bias", false);
        }
        if (is(m, "qwen3")) {
            y->q_norm = layer_tensor(m, l, "attn_q_norm.weight", true);
            y->k_norm = layer_tensor(m, l, "attn_k_norm.weight", true);
        }
        y->wo = layer_tensor(m, l, "attn_output.weight", true);
        y->ffn_norm = layer_tensor(m, l, "ffn_norm.weight", true);
        if (!is(m, "phi3")) y->w_gate = layer_tensor(m, l, "ffn_gate.weight", true);
        y->w_up = layer_tensor(m, l, "ffn_up.weight", true);
        y->w_down = layer_tensor(m, l, "ffn_down.weight", true);
        if (is(m, "gemma2")) {
            y->post_attn_norm = layer_tensor(m, l, "post_attention_norm.weight", true);
            y->post_ffn_norm = layer_tensor(m, l, "post_ffw_norm.weight", true);
            y->window = l % 2 == 0 ? key_u(m, "attention.sliding_window", 4096) : 0;
        } else {
            y->window = window; /* Mistral and Phi-3: every layer */
        }
        ok = y->attn_norm && y->wo && y->ffn_norm && y->w_up && y->w_down &&
             (y->wqkv || (y->wq && y->wk && y->wv)) && (!is(m, "qwen3") || y->q_norm) &&
             (!is(m, "gemma2") || (y->post_attn_norm && y->post_ffn_norm)) &&
             (is(m, "phi3") || y->w_gate);
    }
    if (!ok) {
        fprintf(stderr, "ref: %s: incomplete model\n", path);
        rf_free(m);
        return NULL;
    }
    return m;
}

void rf_free(rf_model *m) {
    if (!m) return;
    ar_gguf_close(m->g);
    free(m->inv_freq);
    free(m->layers);
    free(m);
}

int32_t rf_n_vocab(const rf_model *m) { return m->V; }

/* ---- the math ---- */

/* y[r] = sum_c W[r][c] x[c] (+ b[r]) for r < n_out */
static void linear(double *y, const float *W, const float *b, const double *x, int n_in,
                   int n_out) {
    for (int r = 0; r < n_out; r++) {
        double s = b ? b[r] : 0.0;
        const float *w = W + (size_t)r * n_in;
        for (int c = 0; c < n_in; c++) s += (double)w[c] * x[c];
        y[r] = s;
    }
}

/* RMSNorm: x / sqrt(mean(x^2) + eps) * w */
static void rms_norm(double *y, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static double silu(double x) { return x / (1.0 + exp(-x)); }
static double gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}
static double softcap(double x, double c) { return c > 0 ? c * tanh(x / c) : x; }

/* One head rotated by position pos: GGUF llama pairs (2i, 2i+1); NEOX / HF rotate_half pairs
 * (i, i + n_rot/2): x' = x cos + rotate_half(x) sin, times the magnitude scale. */
static void rotate(double *v, int n_rot, bool neox, const double *inv_freq, double mscale,
                   int pos) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const double t = pos * inv_freq[i], c = cos(t) * mscale, s = sin(t) * mscale;
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x1 * c + x0 * s;
    }
}

void rf_forward(const rf_model *m, const int32_t *tokens, int n, int n_ctx, double *logits) {
    const int E = m->E, HD = m->HD, H = m->H, KVH = m->KVH, F = m->F;
    const int QD = H * HD, KVD = KVH * HD, half = m->n_rot / 2;
    double *inv_freq = malloc(sizeof(double) * (size_t)(half ? half : 1));
    double mscale = m->mscale;
    memcpy(inv_freq, m->inv_freq, sizeof(double) * (size_t)half);
    if (m->long_f) { /* Phi-3 longrope (HF _compute_longrope_parameters) */
        const float *ext = n_ctx > m->orig_ctx ? m->long_f : m->short_f;
        for (int i = 0; i < half; i++) inv_freq[i] = 1.0 / (ext[i] * pow(m->base, 2.0 * i / m->n_rot));
        const double factor = (double)m->n_ctx_train / m->orig_ctx;
        mscale = factor <= 1.0 ? 1.0 : sqrt(1 + log(factor) / log((double)m->orig_ctx));
    }
    double *x = calloc((size_t)n * E, sizeof(double));
    double *h = malloc(sizeof(double) * (size_t)E), *t = malloc(sizeof(double) * (size_t)E);
    double *q = malloc(sizeof(double) * (size_t)n * QD), *k = malloc(sizeof(double) * (size_t)n * KVD);
    double *v = malloc(sizeof(double) * (size_t)n * KVD), *att = malloc(sizeof(double) * (size_t)QD);
    double *qkv = malloc(sizeof(double) * (size_t)(QD + 2 * KVD));
    double *g = malloc(sizeof(double) * (size_t)2 * F), *u = malloc(sizeof(double) * (size_t)F);
    double *sc = malloc(sizeof(double) * (size_t)n), *o = malloc(sizeof(double) * (size_t)E);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < E; d++)
            x[(size_t)i * E + d] = m->embd[(size_t)tokens[i] * E + d] * (m->embd_scale ? sqrt(E) : 1.0);

    for (int l = 0; l < m->L; l++) {
        const rf_layer *y = &m->layers[l];
        /* q, k, v of every position */
        for (int i = 0; i < n; i++) {
            double *qi = q + (size_t)i * QD, *ki = k + (size_t)i * KVD, *vi = v + (size_t)i * KVD;
            rms_norm(h, x + (size_t)i * E, y->attn_norm, E, m->eps);
            if (y->wqkv) {
                linear(qkv, y->wqkv, NULL, h, E, QD + 2 * KVD);
                memcpy(qi, qkv, sizeof(double) * (size_t)QD);
                memcpy(ki, qkv + QD, sizeof(double) * (size_t)KVD);
                memcpy(vi, qkv + QD + KVD, sizeof(double) * (size_t)KVD);
            } else {
                linear(qi, y->wq, y->bq, h, E, QD);
                linear(ki, y->wk, y->bk, h, E, KVD);
                linear(vi, y->wv, y->bv, h, E, KVD);
            }
            for (int hh = 0; hh < H; hh++) {
                if (y->q_norm) rms_norm(qi + hh * HD, qi + hh * HD, y->q_norm, HD, m->eps);
                rotate(qi + hh * HD, m->n_rot, m->neox, inv_freq, mscale, i);
            }
            for (int hh = 0; hh < KVH; hh++) {
                if (y->k_norm) rms_norm(ki + hh * HD, ki + hh * HD, y->k_norm, HD, m->eps);
                rotate(ki + hh * HD, m->n_rot, m->neox, inv_freq, mscale, i);
            }
        }
        /* attention, residual, feed-forward, residual: one position at a time */
        double *xnew = malloc(sizeof(double) * (size_t)n * E);
        for (int i = 0; i < n; i++) {
            for (int hh = 0; hh < H; hh++) {
                const int kvh = hh / (H / KVH); /* repeat_kv */
                const double *qh = q + (size_t)i * QD + hh * HD;
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    if (y->window > 0 && i - j >= y->window) { sc[j] = -INFINITY; continue; }
                    const double *kj = k + (size_t)j * KVD + kvh * HD;
                    double dot = 0;
                    for (int d = 0; d < HD; d++) dot += qh[d] * kj[d];
                    sc[j] = softcap(dot * m->attn_scale, m->attn_cap);
                    if (sc[j] > mx) mx = sc[j];
                }
                double sum = 0;
                for (int j = 0; j <= i; j++) sum += sc[j] = sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
                for (int d = 0; d < HD; d++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += sc[j] / sum * v[(size_t)j * KVD + kvh * HD + d];
                    att[hh * HD + d] = acc;
                }
            }
            const double *xi = x + (size_t)i * E;
            double *xo = xnew + (size_t)i * E;
            linear(o, y->wo, NULL, att, QD, E);
            if (y->post_attn_norm) rms_norm(o, o, y->post_attn_norm, E, m->eps);
            for (int d = 0; d < E; d++) xo[d] = xi[d] + o[d];
            rms_norm(h, xo, y->ffn_norm, E, m->eps);
            if (y->w_gate) {
                linear(g, y->w_gate, NULL, h, E, F);
                linear(u, y->w_up, NULL, h, E, F);
            } else { /* Phi-3: gate_up_proj, chunked: gate first */
                linear(g, y->w_up, NULL, h, E, 2 * F);
                memcpy(u, g + F, sizeof(double) * (size_t)F);
            }
            for (int f = 0; f < F; f++) g[f] = (is(m, "gemma2") ? gelu_tanh(g[f]) : silu(g[f])) * u[f];
            linear(t, y->w_down, NULL, g, F, E);
            if (y->post_ffn_norm) rms_norm(t, t, y->post_ffn_norm, E, m->eps);
            for (int d = 0; d < E; d++) xo[d] += t[d];
        }
        memcpy(x, xnew, sizeof(double) * (size_t)n * E);
        free(xnew);
    }
    for (int i = 0; i < n; i++) {
        rms_norm(h, x + (size_t)i * E, m->out_norm, E, m->eps);
        double *lg = logits + (size_t)i * m->V;
        linear(lg, m->out, NULL, h, E, m->V);
        for (int r = 0; r < m->V; r++) lg[r] = softcap(lg[r], m->final_cap);
    }
    free(inv_freq);
    free(x);
    free(h);
    free(t);
    free(q);
    free(k);
    free(v);
    free(att);
    free(qkv);
    free(g);
    free(u);
    free(sc);
    free(o);
}
