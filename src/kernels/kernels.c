/* kernels.c: run-time dispatch. ar_cpu_init (cpu.c) calls ar_kernels_select once with the best
 * instruction-set level the CPU (and the ARBOR_CPU cap) allows; it installs, per format, the
 * entries of the instruction-set tables (avx2.c, avx512.c) of that level or below, the best one
 * for each: vec_dot_fast, the batched kernels ar_gemm_get and ar_packed_get return. Every kernel
 * returns exactly the bits of the scalar reference, so the choice changes speed, never results.
 * Also here: the portable attention and elementwise kernels, the packing of activation panels and
 * of packed weight groups (layouts in kernels.h). */
#include <cblas.h>
#include <math.h>

#include "src/core/cpu.h"
#include "kernels.h"

/* ---- attention, portable ---- */

static inline float kv_value(const ar_attn_args *a, const uint8_t *cache, int32_t cell, int d) {
    const uint8_t *p = cache + (size_t)cell * a->cell_bytes + a->head_offset;
    if (a->f16) {
        uint16_t h;
        memcpy(&h, p + 2 * (size_t)d, 2);
        return ar_fp16_lookup(h);
    }
    float f;
    memcpy(&f, p + 4 * (size_t)d, 4);
    return f;
}

void ar_attn_scalar(const ar_attn_args *a) {
    const int hd = a->hd;
    for (int h = 0; h < a->group; h++) {
        const float *q = a->q + (size_t)h * hd;
        float *sc = a->scores + (size_t)h * a->n;
        float max = -INFINITY;
        for (int32_t t = 0; t < a->n; t++) {
            float dot = 0.0f;
            for (int d = 0; d < hd; d++) dot += q[d] * kv_value(a, a->k, a->cells[t], d);
            sc[t] = dot * a->scale;
            if (a->softcap > 0.0f) ar_softcap_row(&sc[t], 1, a->softcap);
            if (sc[t] > max) max = sc[t];
        }
        double sum = 0.0;
        for (int32_t t = 0; t < a->n; t++) {
            sc[t] = expf(sc[t] - max);
            sum += (double)sc[t];
        }
        const float inv = (float)(1.0 / sum);
        float *o = a->out + (size_t)h * hd;
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int32_t t = 0; t < a->n; t++) {
            const float p = sc[t] * inv;
            for (int d = 0; d < hd; d++) o[d] += p * kv_value(a, a->v, a->cells[t], d);
        }
    }
}

/* ---- elementwise, portable ---- */

static void rmsnorm_scalar(float *restrict o, const float *restrict x, const float *restrict g,
                           int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    const float mean = (float)(ss / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) o[i] = (x[i] * scale) * g[i];
}
static void swiglu_scalar(float *restrict g, const float *restrict u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
/* gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), the tanh approximation
 * of GELU that Gemma uses (PyTorch's gelu(approximate="tanh")). Scalar only: one libm tanhf per
 * element gives the same bits in any batch. */
void ar_geglu_row(float *restrict g, const float *restrict u, int64_t n) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[i];
    }
}
void ar_softcap_row(float *x, int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}
static void (*rmsnorm_fast)(float *restrict, const float *restrict, const float *restrict, int,
                            float) = rmsnorm_scalar;
static void (*swiglu_fast)(float *restrict, const float *restrict, int64_t) = swiglu_scalar;
void ar_rmsnorm_row(float *restrict o, const float *restrict x, const float *restrict g, int n,
                    float eps) {
    rmsnorm_fast(o, x, g, n, eps);
}
void ar_swiglu_row(float *restrict g, const float *restrict u, int64_t n) {
    swiglu_fast(g, u, n);
}

static ar_attn_fn attn_fast = ar_attn_scalar;
ar_attn_fn ar_attn_get(void) {
    return attn_fast;
}

static void fp16_row_scalar(const float *restrict x, uint16_t *restrict dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ar_fp32_to_fp16(x[i]);
}
static void (*quantize_fast)(ar_type, const float *restrict, void *restrict,
                             int64_t) = ar_quantize_row;
static void (*fp16_row_fast)(const float *restrict, uint16_t *restrict, int64_t) = fp16_row_scalar;

void ar_quantize_row_fast(ar_type vec_dot_type, const float *restrict x, void *restrict dst,
                          int64_t n) {
    quantize_fast(vec_dot_type, x, dst, n);
}
void ar_fp32_to_fp16_row(const float *restrict x, uint16_t *restrict dst, int64_t n) {
    fp16_row_fast(x, dst, n);
}

/* ---- the installed kernels ---- */

static ar_kernel_row installed[AR_TYPE_COUNT];

const ar_kernel_row *ar_kernels_of(ar_type t) {
    static const ar_kernel_row none;
    return (int)t >= 0 && (int)t < AR_TYPE_COUNT ? &installed[t] : &none;
}

/* The 16-row kernel, else the rep kernel with the most weight rows per register whose panel
 * still holds all n columns (a small batch fills the register with rows instead of empty
 * columns), else the widest panel. */
const ar_gemm_kernel *ar_gemm_get(ar_type t, int32_t n, bool rows16) {
    const ar_kernel_row *row = ar_kernels_of(t);
    if (rows16 && row->inplace) return row->inplace;
    if (n <= 1) return NULL;
    for (int i = 2; i >= 0; i--)
        if (row->rep[i] && row->rep[i]->lanes >= n) return row->rep[i];
    for (int i = 0; i < 3; i++)
        if (row->rep[i]) return row->rep[i];
    return NULL;
}

const ar_gemm_kernel *ar_packed_get(ar_type t) {
    return ar_kernels_of(t)->packed;
}

/* Every instruction-set table, lowest level first. */
static const ar_kernel_table *const tables[] = {&ar_kernels_avx2, &ar_kernels_avx512,
                                                &ar_kernels_avx512vnni, &ar_kernels_amx};

void ar_kernels_select(ar_simd_level level) {
    /* matmul.c calls sgemm from inside the pool's threads, one OpenBLAS thread each: OpenBLAS
     * must not add threads of its own on the cores the pool uses */
    openblas_set_num_threads(1);
    quantize_fast = ar_quantize_row;
    fp16_row_fast = fp16_row_scalar;
    attn_fast = ar_attn_scalar;
    rmsnorm_fast = rmsnorm_scalar;
    swiglu_fast = swiglu_scalar;
    for (int t = 0; t < AR_TYPE_COUNT; t++) {
        installed[t] = (ar_kernel_row){0};
        ar_type_set_fast((ar_type)t, NULL, NULL);
    }
#if defined(__x86_64__) || defined(__i386__)
    /* every entry from the best level that has one */
    for (size_t i = 0; i < AR_ARRAY_LEN(tables); i++) {
        const ar_kernel_table *tb = tables[i];
        if (tb->level > level) continue;
        for (int t = 0; t < AR_TYPE_COUNT; t++) {
            const ar_kernel_row *r = &tb->rows[t];
            ar_kernel_row *out = &installed[t];
            if (r->dot) ar_type_set_fast((ar_type)t, r->dot, tb->path);
            if (r->rep[0]) memcpy(out->rep, r->rep, sizeof out->rep);
            if (r->inplace) out->inplace = r->inplace;
            if (r->packed) out->packed = r->packed;
        }
    }
    if (level >= AR_SIMD_AVX2) {
        quantize_fast = ar_quantize_row_avx2;
        fp16_row_fast = ar_fp32_to_fp16_row_avx2;
        attn_fast = ar_attn_avx2;
        rmsnorm_fast = ar_rmsnorm_row_avx2;
        swiglu_fast = ar_swiglu_row_avx2;
    }
    if (level >= AR_SIMD_AVX512) {
        attn_fast = ar_attn_avx512;
        rmsnorm_fast = ar_rmsnorm_row_avx512;
        swiglu_fast = ar_swiglu_row_avx512;
    }
#else
    (void)level;
    (void)tables;
#endif
}

/* ---- activation panels ---- */

size_t ar_panel_bytes(const ar_gemm_kernel *g, int64_t k) {
    /* a 16-row kernel's panel holds `lanes` columns' records of width 1 */
    const size_t L = (size_t)(g->rows16 ? g->lanes : g->width);
    size_t bytes = 0;
    switch (g->panel) {
    case AR_PANEL_ROWS:
        bytes = (size_t)k * sizeof(float);
        break;
    case AR_PANEL_Q32:
        bytes = (size_t)(k / AR_QK) * AR_Q32_RECORD(L, g->with_s);
        break;
    case AR_PANEL_QK:
        bytes = (size_t)(k / AR_QK_K) * AR_QK_RECORD(L);
        break;
    }
    return (bytes + 63) & ~(size_t)63;
}

static void pack_rows(ar_type vdt, const uint8_t *rows, size_t row_bytes, int ncols, int64_t k,
                      float *restrict out) {
    for (int c = 0; c < ncols; c++) {
        const uint8_t *r = rows + (size_t)c * row_bytes;
        float *o = out + (size_t)c * (size_t)k;
        if (vdt == AR_TYPE_F32)
            memcpy(o, r, (size_t)k * sizeof(float));
        else
            ar_type_get(vdt)->to_float(r, o, k); /* F16/BF16 widen exactly */
    }
}

/* One Q8_0 (Q8_1 with_s) block of activations as the panels store it: its scale, its sum's
 * scale (0 without), its quants and their sum. */
typedef struct {
    float d, s;
    const int8_t *qs;
    int sum;
} q8_block;
static q8_block q8_block_read(const uint8_t *blk, bool with_s) {
    ar_half hd, hs = 0;
    memcpy(&hd, blk, 2);
    if (with_s) memcpy(&hs, blk + 2, 2);
    q8_block x = {ar_half_to_float(hd), ar_half_to_float(hs),
                  (const int8_t *)(blk + (with_s ? 4 : 2)), 0};
    for (int j = 0; j < AR_QK; j++) x.sum += x.qs[j];
    return x;
}

/* Lane c * rep + r of a record holds column c (for every r). A 16-row kernel's panel has one
 * width-1 record per column and block, the ncols columns' records of a block side by side. */
static void pack_q32(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                     int64_t k, uint8_t *restrict panel) {
    if (g->rows16) { /* records of width 1: q[32], d, corr [, s], the columns side by side */
        const size_t rec = AR_Q32_RECORD(1, g->with_s), nb = (size_t)(k / AR_QK);
        const size_t bsz = g->with_s ? sizeof(ar_block_q8_1) : sizeof(ar_block_q8_0);
        for (int c = 0; c < ncols; c++)
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = rows + (size_t)c * row_bytes + b * bsz;
                uint8_t *p = panel + (b * (size_t)ncols + (size_t)c) * rec;
                const q8_block x = q8_block_read(blk, g->with_s);
                const int32_t corr = g->corr * x.sum;
                memcpy(p, x.qs, AR_QK);
                memcpy(p + AR_Q32_D(1), &x.d, 4);
                memcpy(p + AR_Q32_CORR(1), &corr, 4);
                if (g->with_s) memcpy(p + AR_Q32_S(1), &x.s, 4);
            }
        return;
    }
    const int W = g->width, rep = g->rep;
    const size_t bsz = g->with_s ? sizeof(ar_block_q8_1) : sizeof(ar_block_q8_0);
    const size_t rec = AR_Q32_RECORD(W, g->with_s);
    for (int64_t b = 0; b < k / AR_QK; b++) {
        uint8_t *p = panel + (size_t)b * rec;
        memset(p, 0, rec);
        float *d = (float *)(p + AR_Q32_D(W)), *s = (float *)(p + AR_Q32_S(W));
        int32_t *corr = (int32_t *)(p + AR_Q32_CORR(W));
        for (int c = 0; c < ncols; c++) {
            const q8_block x = q8_block_read(rows + (size_t)c * row_bytes + (size_t)b * bsz,
                                             g->with_s);
            for (int r = 0; r < rep; r++) {
                const int lane = c * rep + r;
                for (int q = 0; q < 8; q++)
                    memcpy(p + 4 * ((size_t)q * W + lane), x.qs + 4 * q, 4);
                d[lane] = x.d;
                corr[lane] = g->corr * x.sum;
                if (g->with_s) s[lane] = x.s;
            }
        }
    }
}

static void pack_qk(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                    int64_t k, uint8_t *restrict panel) {
    if (g->rows16) { /* records of width 1: q[256], d, bsums, the columns side by side */
        const size_t rec = AR_QK_RECORD(1), nb = (size_t)(k / AR_QK_K);
        for (int c = 0; c < ncols; c++)
            for (size_t b = 0; b < nb; b++) {
                const ar_block_q8_K *blk = (const ar_block_q8_K *)(rows + (size_t)c * row_bytes) + b;
                uint8_t *p = panel + (b * (size_t)ncols + (size_t)c) * rec;
                memcpy(p, blk->qs, AR_QK_K);
                memcpy(p + AR_QK_D(1), &blk->d, 4);
                memcpy(p + AR_QK_BS(1), blk->bsums, sizeof blk->bsums);
            }
        return;
    }
    const int W = g->width, rep = g->rep;
    const size_t rec = AR_QK_RECORD(W);
    for (int64_t b = 0; b < k / AR_QK_K; b++) {
        uint8_t *p = panel + (size_t)b * rec;
        memset(p, 0, rec);
        float *d = (float *)(p + AR_QK_D(W));
        int16_t *bs = (int16_t *)(p + AR_QK_BS(W));
        for (int c = 0; c < ncols; c++) {
            const ar_block_q8_K *blk = (const ar_block_q8_K *)(rows + (size_t)c * row_bytes) + b;
            for (int r = 0; r < rep; r++) {
                const int lane = c * rep + r;
                for (int q = 0; q < 64; q++)
                    memcpy(p + 4 * ((size_t)q * W + lane), blk->qs + 4 * q, 4);
                d[lane] = blk->d;
                for (int j = 0; j < 8; j++) {
                    bs[2 * ((size_t)j * W + lane)] = blk->bsums[2 * j];
                    bs[2 * ((size_t)j * W + lane) + 1] = blk->bsums[2 * j + 1];
                }
            }
        }
    }
}

void ar_panel_pack(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                   int64_t k, uint8_t *restrict panel) {
    switch (g->panel) {
    case AR_PANEL_ROWS:
        pack_rows(g->act, rows, row_bytes, ncols, k, (float *)panel);
        break;
    case AR_PANEL_Q32:
        pack_q32(g, rows, row_bytes, ncols, k, panel);
        break;
    case AR_PANEL_QK:
        pack_qk(g, rows, row_bytes, ncols, k, panel);
        break;
    }
}

/* ---- packed weights (layout: kernels.h) ---- */

size_t ar_pack_group_bytes(ar_type t, int64_t k) {
    const ar_pack_layout L = ar_pack_layout_of(t);
    const ar_type_traits *tt = ar_type_get(t);
    if (!L.n_halves || !tt || k % tt->blck_size) return 0;
    const size_t nb = (size_t)(k / tt->blck_size);
    return (nb * (size_t)L.n_halves * 32 + 63) / 64 * 64 + nb * (size_t)L.rest_bytes * 16;
}

void ar_pack_group(ar_type t, const void *w, size_t w_stride, int nrows, int64_t k, void *out) {
    const ar_pack_layout L = ar_pack_layout_of(t);
    const ar_type_traits *tt = ar_type_get(t);
    const size_t nb = (size_t)(k / tt->blck_size), bsz = tt->type_size;
    const size_t hbytes = (nb * (size_t)L.n_halves * 32 + 63) / 64 * 64;
    uint8_t *hs = out, *ws = (uint8_t *)out + hbytes;
    memset(hs, 0, hbytes);
    for (int r = 0; r < AR_PACK_ROWS; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)AR_MIN(r, nrows - 1) * w_stride;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + b * bsz;
            for (int h = 0; h < L.n_halves; h++)
                memcpy(hs + (b * (size_t)L.n_halves + (size_t)h) * 32 + 2 * (size_t)r,
                       blk + L.half_off[h], 2);
            uint8_t *rec = ws + b * (size_t)L.rest_bytes * 16;
            for (int q = 0; q < L.rest_bytes / 4; q++)
                memcpy(rec + 64 * (size_t)q + 4 * (size_t)r, blk + L.rest_off + 4 * q, 4);
        }
    }
}
