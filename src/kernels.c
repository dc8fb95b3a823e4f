/* kernels.c: run-time dispatch. ar_cpu_init (cpu.c) calls ar_kernels_select once with the best
 * instruction-set level the CPU (and the ARBOR_CPU cap) allows; each format's vec_dot_fast then
 * points at the fastest kernel of that level, and ar_gemm_get at its batched kernel. Every kernel
 * returns exactly the bits of the scalar reference, so the choice changes speed, never results.
 * Also here: the packing of activation panels for the batched kernels (layouts in quants.h). */
#include <cblas.h>
#include <math.h>

#include "cpu.h"
#include "quants.h"

static ar_gemm_set gemm_table[AR_TYPE_COUNT];

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

/* The kernel with the most weight rows per register whose panel still holds all n columns (a
 * small batch fills the register with rows instead of empty columns); else the widest panel. */
const ar_gemm_kernel *ar_gemm_get(ar_type t, int32_t n) {
    if ((int)t < 0 || (int)t >= AR_TYPE_COUNT) return NULL;
    const ar_gemm_set *set = &gemm_table[t];
    if (n <= 1 || (set->gemv && n <= set->gemv_max_n)) return set->gemv;
    for (int i = 2; i >= 0; i--)
        if (set->by_rep[i] && set->by_rep[i]->lanes >= n) return set->by_rep[i];
    for (int i = 0; i < 3; i++)
        if (set->by_rep[i]) return set->by_rep[i];
    return NULL;
}

typedef struct {
    ar_type type;
    ar_vec_dot_fn fn;
} kernel_row;

static void install(const kernel_row *rows, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++) ar_type_set_fast(rows[i].type, rows[i].fn, path);
}

void ar_kernels_select(ar_simd_level level) {
    /* matmul.c calls sgemm from inside the pool's threads, one OpenBLAS thread each: OpenBLAS
     * must not add threads of its own on the cores the pool uses */
    openblas_set_num_threads(1);
    static const ar_type all[] = {AR_TYPE_F32,  AR_TYPE_F16,  AR_TYPE_BF16, AR_TYPE_Q4_0,
                                  AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0,
                                  AR_TYPE_Q8_1, AR_TYPE_Q2_K, AR_TYPE_Q3_K, AR_TYPE_Q4_K,
                                  AR_TYPE_Q5_K, AR_TYPE_Q6_K, AR_TYPE_Q8_K};
    for (size_t i = 0; i < AR_ARRAY_LEN(all); i++) ar_type_set_fast(all[i], NULL, NULL);
    for (size_t i = 0; i < AR_TYPE_COUNT; i++)
        gemm_table[i] = (ar_gemm_set){{NULL, NULL, NULL}, NULL, 0};
    quantize_fast = ar_quantize_row;
    fp16_row_fast = fp16_row_scalar;
    attn_fast = ar_attn_scalar;
    rmsnorm_fast = rmsnorm_scalar;
    swiglu_fast = swiglu_scalar;
#if defined(__x86_64__) || defined(__i386__)
    /* batched kernels: the best level's, else the next lower one's */
    for (size_t i = 0; i < AR_ARRAY_LEN(all); i++) {
        ar_gemm_set g = {{NULL, NULL, NULL}, NULL, 0};
        if (level >= AR_SIMD_AVX512) g = ar_gemm_avx512(all[i], level >= AR_SIMD_AVX512VNNI);
        if (!g.by_rep[0] && level >= AR_SIMD_AVX2) g = ar_gemm_avx2(all[i]);
        gemm_table[all[i]] = g;
    }
    if (level >= AR_SIMD_AVX2) {
        quantize_fast = ar_quantize_row_avx2;
        fp16_row_fast = ar_fp32_to_fp16_row_avx2;
        attn_fast = ar_attn_avx2;
        rmsnorm_fast = ar_rmsnorm_row_avx2;
        swiglu_fast = ar_swiglu_row_avx2;
    }
    if (level >= AR_SIMD_AVX512) {
        quantize_fast = ar_quantize_row_avx512;
        fp16_row_fast = ar_fp32_to_fp16_row_avx512;
        attn_fast = ar_attn_avx512;
        rmsnorm_fast = ar_rmsnorm_row_avx512;
        swiglu_fast = ar_swiglu_row_avx512;
    }
    if (level >= AR_SIMD_AVX2) {
        static const kernel_row avx2[] = {
            {AR_TYPE_F32, ar_vec_dot_f32_avx2},   {AR_TYPE_F16, ar_vec_dot_f16_avx2},
            {AR_TYPE_BF16, ar_vec_dot_bf16_avx2}, {AR_TYPE_Q4_0, ar_vec_dot_q4_0_avx2},
            {AR_TYPE_Q4_1, ar_vec_dot_q4_1_avx2}, {AR_TYPE_Q5_0, ar_vec_dot_q5_0_avx2},
            {AR_TYPE_Q5_1, ar_vec_dot_q5_1_avx2}, {AR_TYPE_Q8_0, ar_vec_dot_q8_0_avx2},
            {AR_TYPE_Q2_K, ar_vec_dot_q2_K_avx2}, {AR_TYPE_Q3_K, ar_vec_dot_q3_K_avx2},
            {AR_TYPE_Q4_K, ar_vec_dot_q4_K_avx2}, {AR_TYPE_Q5_K, ar_vec_dot_q5_K_avx2},
            {AR_TYPE_Q6_K, ar_vec_dot_q6_K_avx2},
        };
        install(avx2, AR_ARRAY_LEN(avx2), "avx2");
    }
    if (level >= AR_SIMD_AVX512) {
        static const kernel_row avx512[] = {
            {AR_TYPE_F32, ar_vec_dot_f32_avx512},
            {AR_TYPE_F16, ar_vec_dot_f16_avx512},
            {AR_TYPE_BF16, ar_vec_dot_bf16_avx512},
        };
        install(avx512, AR_ARRAY_LEN(avx512), "avx512");
    }
    if (level >= AR_SIMD_AVX512VNNI) {
        static const kernel_row vnni[] = {
            {AR_TYPE_Q4_0, ar_vec_dot_q4_0_avx512vnni}, {AR_TYPE_Q4_1, ar_vec_dot_q4_1_avx512vnni},
            {AR_TYPE_Q5_0, ar_vec_dot_q5_0_avx512vnni}, {AR_TYPE_Q5_1, ar_vec_dot_q5_1_avx512vnni},
            {AR_TYPE_Q8_0, ar_vec_dot_q8_0_avx512vnni}, {AR_TYPE_Q2_K, ar_vec_dot_q2_K_avx512vnni},
            {AR_TYPE_Q3_K, ar_vec_dot_q3_K_avx512vnni}, {AR_TYPE_Q4_K, ar_vec_dot_q4_K_avx512vnni},
            {AR_TYPE_Q5_K, ar_vec_dot_q5_K_avx512vnni}, {AR_TYPE_Q6_K, ar_vec_dot_q6_K_avx512vnni},
        };
        install(vnni, AR_ARRAY_LEN(vnni), "avx512vnni");
    }
#else
    (void)level;
#endif
}

/* ---- activation panels ---- */

size_t ar_panel_bytes(const ar_gemm_kernel *g, int64_t k) {
    const size_t L = (size_t)g->width;
    size_t bytes = 0;
    switch (g->panel) {
    case AR_PANEL_ROWS:
        bytes = (size_t)k * sizeof(float);
        break;
    case AR_PANEL_Q32:
        bytes = (size_t)(k / AR_QK) * L * 4 * (8 + 2 + (g->with_s ? 1 : 0));
        break;
    case AR_PANEL_QK:
        bytes = (size_t)(k / AR_QK_K) * L * 4 * (64 + 1 + 8);
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

/* Lane c * rep + r of a record holds column c (for every r). */
static void pack_q32(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                     int64_t k, uint8_t *restrict panel) {
    const int W = g->width, rep = g->rep;
    const size_t bsz = g->with_s ? sizeof(ar_block_q8_1) : sizeof(ar_block_q8_0);
    const size_t rec = (size_t)W * 4 * (8 + 2 + (g->with_s ? 1 : 0));
    for (int64_t b = 0; b < k / AR_QK; b++) {
        uint8_t *p = panel + (size_t)b * rec;
        memset(p, 0, rec);
        float *d = (float *)(p + 32 * W), *s = (float *)(p + 40 * W);
        int32_t *corr = (int32_t *)(p + 36 * W);
        for (int c = 0; c < ncols; c++) {
            const uint8_t *blk = rows + (size_t)c * row_bytes + (size_t)b * bsz;
            ar_half hd, hs = 0;
            memcpy(&hd, blk, 2);
            if (g->with_s) memcpy(&hs, blk + 2, 2);
            const int8_t *qs = (const int8_t *)(blk + (g->with_s ? 4 : 2));
            int sum = 0;
            for (int j = 0; j < AR_QK; j++) sum += qs[j];
            for (int r = 0; r < rep; r++) {
                const int lane = c * rep + r;
                for (int q = 0; q < 8; q++) memcpy(p + 4 * ((size_t)q * W + lane), qs + 4 * q, 4);
                d[lane] = ar_half_to_float(hd);
                corr[lane] = g->corr * sum;
                if (g->with_s) s[lane] = ar_half_to_float(hs);
            }
        }
    }
}

static void pack_qk(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                    int64_t k, uint8_t *restrict panel) {
    const int W = g->width, rep = g->rep;
    const size_t rec = (size_t)W * 4 * (64 + 1 + 8);
    for (int64_t b = 0; b < k / AR_QK_K; b++) {
        uint8_t *p = panel + (size_t)b * rec;
        memset(p, 0, rec);
        float *d = (float *)(p + 256 * W);
        int16_t *bs = (int16_t *)(p + 260 * W);
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
