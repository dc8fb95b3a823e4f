/* quants.c: the type-traits table and the scalar reference of every tensor format: dequantization
 * (bit-exact with ggml's to_float), the weight quantizers (ggml's quantize_row_*_ref rounding, so a
 * model quantized here has the bytes llama-quantize would write without an importance matrix),
 * the activation quantizers (llama.cpp's x86 CPU backend rounding) and the dot products, whose
 * float operations follow the order fixed in kernels.h so the fast paths can match them exactly.
 *
 * Float expressions are written operand for operand as the ggml facts they reproduce (which
 * product comes first, int-to-float conversions): the results must agree to the last bit. This
 * relies on no contraction of a*b+c into fused multiply-adds, the default for ISO C (-std=c11). */
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#define GROUP_MAX_EPS 1e-15f

static inline float h2f(ar_half h) {
    return ar_half_to_float(h);
}
static inline ar_half f2h(float f) {
    return ar_fp32_to_fp16(f);
}
static inline int imin(int a, int b) {
    return a < b ? a : b;
}
static inline int imax(int a, int b) {
    return a > b ? a : b;
}

/* C's float-to-integer conversion (truncation) for the values the quantizers produce; NaN and
 * out-of-range values (only from non-finite input) give a bounded value instead of undefined
 * behaviour. */
static inline int trunc_int(float v) {
    if (!(v > -2147483520.f && v < 2147483520.f))
        return v > 0 ? 2147483520 : (v < 0 ? -2147483520 : 0);
    return (int)v;
}
static inline int round_int(float v) {
    return trunc_int(roundf(v));
} /* ties away from zero */

/* ================================ F32, F16, BF16 ================================ */

static void to_float_f32(const void *restrict src, float *restrict dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void from_float_f32(const float *restrict src, void *restrict dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void to_float_f16(const void *restrict src, float *restrict dst, int64_t n) {
    const ar_half *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = h2f(h[i]);
}
static void from_float_f16(const float *restrict src, void *restrict dst, int64_t n) {
    ar_half *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = f2h(src[i]);
}
static void to_float_bf16(const void *restrict src, float *restrict dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ar_bf16_to_fp32(h[i]);
}
static void from_float_bf16(const float *restrict src, void *restrict dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = ar_fp32_to_bf16(src[i]);
}

static void vec_dot_f32(int64_t n, float *restrict s, const void *restrict w,
                        const void *restrict a) {
    const float *x = w, *y = a;
    float acc[32] = {0};
    for (int64_t i = 0; i < n; i++) {
        float p = x[i] * y[i];
        acc[i % 32] += p;
    }
    *s = ar_reduce32(acc);
}
static void vec_dot_f16(int64_t n, float *restrict s, const void *restrict w,
                        const void *restrict a) {
    const ar_half *x = w, *y = a;
    float acc[32] = {0};
    for (int64_t i = 0; i < n; i++) {
        float p = h2f(x[i]) * h2f(y[i]);
        acc[i % 32] += p;
    }
    *s = ar_reduce32(acc);
}
static void vec_dot_bf16(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const uint16_t *x = w, *y = a;
    float acc[32] = {0};
    for (int64_t i = 0; i < n; i++) {
        float p = ar_bf16_to_fp32(x[i]) * ar_bf16_to_fp32(y[i]);
        acc[i % 32] += p;
    }
    *s = ar_reduce32(acc);
}

/* ================================ 32-value block formats ================================ */

static void to_float_q4_0(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / AR_QK; i++, y += AR_QK) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < AR_QK / 2; j++) {
            const int x0 = (b[i].qs[j] & 0x0F) - 8;
            const int x1 = (b[i].qs[j] >> 4) - 8;
            y[j] = x0 * d;
            y[j + AR_QK / 2] = x1 * d;
        }
    }
}

static void to_float_q4_1(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / AR_QK; i++, y += AR_QK) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < AR_QK / 2; j++) {
            const int x0 = b[i].qs[j] & 0x0F;
            const int x1 = b[i].qs[j] >> 4;
            y[j] = x0 * d + m;
            y[j + AR_QK / 2] = x1 * d + m;
        }
    }
}

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void to_float_q5_0(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / AR_QK; i++, y += AR_QK) {
        const float d = h2f(b[i].d);
        const uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < AR_QK / 2; j++) {
            const int x0 = (int)((b[i].qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - 16;
            const int x1 = (int)((b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
            y[j] = x0 * d;
            y[j + AR_QK / 2] = x1 * d;
        }
    }
}

static void to_float_q5_1(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / AR_QK; i++, y += AR_QK) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        const uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < AR_QK / 2; j++) {
            const int x0 = (int)((b[i].qs[j] & 0x0F) | (((qh >> j) & 1) << 4));
            const int x1 = (int)((b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
            y[j] = x0 * d + m;
            y[j + AR_QK / 2] = x1 * d + m;
        }
    }
}

static void to_float_q8_0(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / AR_QK; i++, y += AR_QK) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < AR_QK; j++) y[j] = b[i].qs[j] * d;
    }
}

static void to_float_q8_1(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q8_1 *b = src;
    for (int64_t i = 0; i < n / AR_QK; i++, y += AR_QK) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < AR_QK; j++) y[j] = b[i].qs[j] * d;
    }
}

/* Largest |x| of a block, and the signed value that has it (first one on ties). */
static float block_absmax(const float *x, int n, float *signed_max) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    *signed_max = max;
    return amax;
}

/* Weight quantizers: ggml's quantize_row_q4_0_ref .. q8_0_ref. */
static void from_float_q4_0(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        float max;
        block_absmax(x, AR_QK, &max);
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < AR_QK / 2; j++) {
            const uint8_t q0 = (uint8_t)imin(15, (int8_t)trunc_int(x[j] * id + 8.5f));
            const uint8_t q1 = (uint8_t)imin(15, (int8_t)trunc_int(x[j + AR_QK / 2] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void block_minmax(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

static void from_float_q4_1(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        float min, max;
        block_minmax(x, AR_QK, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(min);
        for (int j = 0; j < AR_QK / 2; j++) {
            const float v0 = (x[j] - min) * id;
            const float v1 = (x[j + AR_QK / 2] - min) * id;
            const uint8_t q0 = (uint8_t)imin(15, (int8_t)trunc_int(v0 + 0.5f));
            const uint8_t q1 = (uint8_t)imin(15, (int8_t)trunc_int(v1 + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void store_u32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static void from_float_q5_0(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        float max;
        block_absmax(x, AR_QK, &max);
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        uint32_t qh = 0;
        for (int j = 0; j < AR_QK / 2; j++) {
            const uint8_t q0 = (uint8_t)imin(31, (int8_t)trunc_int(x[j] * id + 16.5f));
            const uint8_t q1 = (uint8_t)imin(31, (int8_t)trunc_int(x[j + AR_QK / 2] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4 & 1) << j;
            qh |= (uint32_t)(q1 >> 4 & 1) << (j + AR_QK / 2);
        }
        store_u32(y[i].qh, qh);
    }
}

static void from_float_q5_1(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        float min, max;
        block_minmax(x, AR_QK, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(min);
        uint32_t qh = 0;
        for (int j = 0; j < AR_QK / 2; j++) {
            const float v0 = (x[j] - min) * id;
            const float v1 = (x[j + AR_QK / 2] - min) * id;
            const uint8_t q0 = (uint8_t)trunc_int(v0 + 0.5f);
            const uint8_t q1 = (uint8_t)trunc_int(v1 + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4 & 1) << j;
            qh |= (uint32_t)(q1 >> 4 & 1) << (j + AR_QK / 2);
        }
        store_u32(y[i].qh, qh);
    }
}

static float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    return amax;
}

static void from_float_q8_0(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        const float d = block_amax(x, AR_QK) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < AR_QK; j++)
            y[i].qs[j] = (int8_t)imax(-128, imin(127, round_int(x[j] * id)));
    }
}

/* Activation rounding of llama.cpp's x86 backend (quantize_row_q8_0/q8_1 with AVX): the
 * multiplier is 127/amax (not 1/d) and ties round to even. Clamped to [-127, 127], which only
 * non-finite input can reach. */
static inline int8_t act_round(float v) {
    return (int8_t)imax(-127, imin(127, ar_nearest_int(v)));
}

void ar_quantize_row_q8_0_act(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        const float amax = block_amax(x, AR_QK);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < AR_QK; j++) y[i].qs[j] = act_round(x[j] * id);
    }
}

static void from_float_q8_1(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / AR_QK; i++, x += AR_QK) {
        const float amax = block_amax(x, AR_QK);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = f2h(d);
        int sum = 0;
        for (int j = 0; j < AR_QK; j++) {
            y[i].qs[j] = act_round(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = f2h(d * sum);
    }
}

/* Dot products of the 32-value formats: exact integer block sums, terms into 8 running sums. */
static void vec_dot_q4_0(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q4_0 *x = w;
    const ar_block_q8_0 *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / AR_QK; b++) {
        int sumi = 0;
        for (int j = 0; j < AR_QK / 2; j++) {
            sumi += ((x[b].qs[j] & 0x0F) - 8) * y[b].qs[j];
            sumi += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + AR_QK / 2];
        }
        const float t = (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
        acc[b % 8] += t;
    }
    *s = ar_reduce8(acc);
}

static void vec_dot_q4_1(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q4_1 *x = w;
    const ar_block_q8_1 *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / AR_QK; b++) {
        int sumi = 0;
        for (int j = 0; j < AR_QK / 2; j++) {
            sumi += (x[b].qs[j] & 0x0F) * y[b].qs[j];
            sumi += (x[b].qs[j] >> 4) * y[b].qs[j + AR_QK / 2];
        }
        const float t1 = (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
        const float t2 = h2f(x[b].m) * h2f(y[b].s);
        const float t = t1 + t2;
        acc[b % 8] += t;
    }
    *s = ar_reduce8(acc);
}

static void vec_dot_q5_0(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q5_0 *x = w;
    const ar_block_q8_0 *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / AR_QK; b++) {
        const uint32_t qh = load_u32(x[b].qh);
        int sumi = 0;
        for (int j = 0; j < AR_QK / 2; j++) {
            const int x0 = (int)((x[b].qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - 16;
            const int x1 = (int)((x[b].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += x0 * y[b].qs[j] + x1 * y[b].qs[j + AR_QK / 2];
        }
        const float t = (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
        acc[b % 8] += t;
    }
    *s = ar_reduce8(acc);
}

static void vec_dot_q5_1(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q5_1 *x = w;
    const ar_block_q8_1 *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / AR_QK; b++) {
        const uint32_t qh = load_u32(x[b].qh);
        int sumi = 0;
        for (int j = 0; j < AR_QK / 2; j++) {
            const int x0 = (int)((x[b].qs[j] & 0x0F) | ((qh >> j) & 1) << 4);
            const int x1 = (int)((x[b].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
            sumi += x0 * y[b].qs[j] + x1 * y[b].qs[j + AR_QK / 2];
        }
        const float t1 = (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
        const float t2 = h2f(x[b].m) * h2f(y[b].s);
        const float t = t1 + t2;
        acc[b % 8] += t;
    }
    *s = ar_reduce8(acc);
}

static void vec_dot_q8_0(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q8_0 *x = w;
    const ar_block_q8_0 *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / AR_QK; b++) {
        int sumi = 0;
        for (int j = 0; j < AR_QK; j++) sumi += x[b].qs[j] * y[b].qs[j];
        const float t = (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
        acc[b % 8] += t;
    }
    *s = ar_reduce8(acc);
}

/* Q8_1 is an activation format; its dot with itself completes the row (ggml has none). */
static void vec_dot_q8_1(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q8_1 *x = w;
    const ar_block_q8_1 *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / AR_QK; b++) {
        int sumi = 0;
        for (int j = 0; j < AR_QK; j++) sumi += x[b].qs[j] * y[b].qs[j];
        const float t = (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
        acc[b % 8] += t;
    }
    *s = ar_reduce8(acc);
}

/* ================================ K-quants: helpers ================================ */

/* 2-bit field of value v (0..255) in the qs layout shared by Q2_K and Q3_K: value
 * 128*c + 32*k + l sits at bits 2k of byte 32*c + l. */
static inline int q2_field(const uint8_t *qs, int v) {
    return (qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3;
}

/* Quant v (0..255) of each K format, as the integer its dequantization multiplies. */
static inline int q2_K_value(const ar_block_q2_K *b, int v) {
    return q2_field(b->qs, v);
}
static inline int q3_K_value(const ar_block_q3_K *b, int v) {
    const int hbit = (b->hmask[v % 32] >> (v / 32)) & 1;
    return q2_field(b->qs, v) - (hbit ? 0 : 4);
}
static inline int q4_K_value(const ar_block_q4_K *b, int v) {
    const uint8_t q = b->qs[32 * (v / 64) + v % 32];
    return (v % 64) < 32 ? q & 0xF : q >> 4;
}
static inline int q5_K_value(const ar_block_q5_K *b, int v) {
    const uint8_t q = b->qs[32 * (v / 64) + v % 32];
    const int hbit = (b->qh[v % 32] >> (v / 32)) & 1;
    return ((v % 64) < 32 ? q & 0xF : q >> 4) + (hbit << 4);
}
static inline int q6_K_value(const ar_block_q6_K *b, int v) {
    const int c = v / 128, r = v % 128, k = r / 32, l = r % 32; /* chunk, quarter, lane */
    const uint8_t lo = b->ql[64 * c + l + 32 * (k & 1)];
    const int low = k < 2 ? lo & 0xF : lo >> 4;
    const int high = (b->qh[32 * c + l] >> (2 * k)) & 3;
    return (low | high << 4) - 32;
}

/* ================================ K-quants: dequantization ================================ */

static void to_float_q2_K(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q2_K *b = src;
    for (int64_t i = 0; i < n / AR_QK_K; i++, y += AR_QK_K) {
        const float d = h2f(b[i].d), min = h2f(b[i].dmin);
        for (int g = 0; g < 16; g++) {
            const uint8_t sc = b[i].scales[g];
            const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
            for (int v = 16 * g; v < 16 * g + 16; v++) y[v] = dl * q2_K_value(&b[i], v) - ml;
        }
    }
}

static void to_float_q3_K(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q3_K *b = src;
    for (int64_t i = 0; i < n / AR_QK_K; i++, y += AR_QK_K) {
        const float d = h2f(b[i].d);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (ar_scale_q3_K(g, b[i].scales) - 32);
            for (int v = 16 * g; v < 16 * g + 16; v++) y[v] = dl * q3_K_value(&b[i], v);
        }
    }
}

static void to_float_q4_K(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q4_K *b = src;
    for (int64_t i = 0; i < n / AR_QK_K; i++, y += AR_QK_K) {
        const float d = h2f(b[i].d), min = h2f(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            ar_scale_min_k4(j, b[i].scales, &sc, &m);
            const float dl = d * sc, ml = min * m;
            for (int v = 32 * j; v < 32 * j + 32; v++) y[v] = dl * q4_K_value(&b[i], v) - ml;
        }
    }
}

static void to_float_q5_K(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q5_K *b = src;
    for (int64_t i = 0; i < n / AR_QK_K; i++, y += AR_QK_K) {
        const float d = h2f(b[i].d), min = h2f(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            ar_scale_min_k4(j, b[i].scales, &sc, &m);
            const float dl = d * sc, ml = min * m;
            for (int v = 32 * j; v < 32 * j + 32; v++) y[v] = dl * q5_K_value(&b[i], v) - ml;
        }
    }
}

static void to_float_q6_K(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q6_K *b = src;
    for (int64_t i = 0; i < n / AR_QK_K; i++, y += AR_QK_K) {
        const float d = h2f(b[i].d);
        for (int v = 0; v < AR_QK_K; v++) y[v] = d * b[i].scales[v / 16] * q6_K_value(&b[i], v);
    }
}

static void to_float_q8_K(const void *restrict src, float *restrict y, int64_t n) {
    const ar_block_q8_K *b = src;
    for (int64_t i = 0; i < n / AR_QK_K; i++, y += AR_QK_K)
        for (int v = 0; v < AR_QK_K; v++) y[v] = b[i].d * b[i].qs[v];
}

/* ================================ K-quants: weight quantizers ================================
 * ggml's quantize_row_q{2..6}_K_ref: per sub-block scale (and min) searches, the scales
 * quantized against a super-block scale, then every value re-rounded with the stored scales. */

/* Signed levels in [-nmax, nmax-1] minimizing sum x^2 (x - scale*l)^2 over 19 candidate scales
 * (make_qx_quants, rmse_type 1, no importance weights); L gets l + nmax. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *restrict x, int8_t *restrict L) {
    float max;
    const float amax = block_absmax(x, n, &max);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, ar_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, ar_nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, ar_nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block levels (make_q3_quants with rmse): start from the plain rounding, then up to
 * five passes move single levels while that improves the weighted fit. L gets l + nmax. */
static float make_q3_quants(int n, int nmax, const float *restrict x, int8_t *restrict L) {
    float max;
    const float amax = block_absmax(x, n, &max);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, ar_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = ar_nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Levels in [0, nmax] and an offset for x ~ scale*l - min (make_qkx2_quants): a weighted
 * least-squares fit tried for nstep+1 candidate scales; returns the scale, *the_min the offset. */
static float make_qkx2_quants(int n, int nmax, const float *restrict x,
                              const float *restrict weights, uint8_t *restrict L,
                              float *restrict the_min, uint8_t *restrict Laux, float rmin,
                              float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; i++) {
        const int l = ar_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, ar_nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += weights[i] * diff;
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Packs 256 two-bit levels in the Q2_K/Q3_K qs layout. */
static void pack_q2_levels(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < AR_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

static void from_float_q2_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q2_K *y = dst;
    uint8_t L[AR_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / AR_QK_K; i++, x += AR_QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (uint8_t)ar_nearest_int(iscale * scales[j]);
            y[i].d = f2h(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, 16);
            y[i].d = f2h(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)ar_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f2h(max_min / q4scale);
        } else {
            y[i].dmin = f2h(0.f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = h2f(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = h2f(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                const int l = ar_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
            }
        }
        pack_q2_levels(L, y[i].qs);
    }
}

static void from_float_q3_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q3_K *y = dst;
    int8_t L[AR_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / AR_QK_K; i++, x += AR_QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int8_t l = (int8_t)ar_nearest_int(iscale * scales[j]);
                l = (int8_t)(imax(-32, imin(31, l)) + 32);
                if (j < 8)
                    y[i].scales[j] = l & 0xF;
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = f2h(1 / iscale);
        } else {
            y[i].d = f2h(0.f);
        }
        for (int j = 0; j < 16; j++) {
            const int8_t sc = (int8_t)(ar_scale_q3_K(j, y[i].scales) - 32);
            const float d = h2f(y[i].d) * sc;
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = ar_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
            }
        }
        /* high bit of value j goes to bit j/32 of hmask[j % 32] */
        memset(y[i].hmask, 0, 32);
        uint8_t U[AR_QK_K];
        for (int j = 0; j < AR_QK_K; j++) {
            int l = L[j];
            if (l > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                l -= 4;
            }
            U[j] = (uint8_t)l;
        }
        pack_q2_levels(U, y[i].qs);
    }
}

/* Q4_K/Q5_K share everything but the level range and the search parameters. */
static void quantize_k4_scales(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                               uint8_t *packed, ar_half *dd, ar_half *dmin) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)ar_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)ar_nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *dd = f2h(max_scale / 63.f);
    *dmin = f2h(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        ar_scale_min_k4(j, packed, &sc, &m);
        const float d = h2f(*dd) * sc;
        if (!d) continue;
        const float dm = h2f(*dmin) * m;
        for (int ii = 0; ii < 32; ii++) {
            const int l = ar_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

static void from_float_q4_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q4_K *y = dst;
    uint8_t L[AR_QK_K];
    for (int64_t i = 0; i < n / AR_QK_K; i++, x += AR_QK_K) {
        memset(y[i].scales, 0, 12);
        quantize_k4_scales(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        for (int j = 0; j < AR_QK_K; j += 64)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

static void from_float_q5_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q5_K *y = dst;
    uint8_t L[AR_QK_K];
    for (int64_t i = 0; i < n / AR_QK_K; i++, x += AR_QK_K) {
        memset(y[i].scales, 0, 12);
        quantize_k4_scales(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        memset(y[i].qh, 0, 32);
        for (int c = 0; c < 4; c++) { /* 64 values: low nibbles, then high nibbles */
            for (int j = 0; j < 32; j++) {
                int l1 = L[64 * c + j], l2 = L[64 * c + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    y[i].qh[j] |= (uint8_t)(1u << (2 * c));
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[i].qh[j] |= (uint8_t)(2u << (2 * c));
                }
                y[i].qs[32 * c + j] = (uint8_t)(l1 | l2 << 4);
            }
        }
    }
}

static void from_float_q6_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q6_K *y = dst;
    int8_t L[AR_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / AR_QK_K; i++, x += AR_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            const float abs_scale = fabsf(scales[ib]);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = f2h(1 / iscale);
        for (int ib = 0; ib < 16; ib++)
            y[i].scales[ib] = (int8_t)imin(127, ar_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            const float d = h2f(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = ar_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        for (int c = 0; c < 2; c++) {
            const int8_t *Lc = L + 128 * c;
            uint8_t *ql = y[i].ql + 64 * c, *qh = y[i].qh + 32 * c;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lc[l] & 0xF) | (Lc[l + 64] & 0xF) << 4);
                ql[l + 32] = (uint8_t)((Lc[l + 32] & 0xF) | (Lc[l + 96] & 0xF) << 4);
                qh[l] = (uint8_t)((Lc[l] >> 4) | (Lc[l + 32] >> 4) << 2 | (Lc[l + 64] >> 4) << 4 |
                                  (Lc[l + 96] >> 4) << 6);
            }
        }
    }
}

/* Q8_K (activations of the K-quants; ggml's quantize_row_q8_K_ref, also its x86 path):
 * d = 1/(-127/max) with max the signed value of largest magnitude. */
static void from_float_q8_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / AR_QK_K; i++, x += AR_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < AR_QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < AR_QK_K; j++)
            y[i].qs[j] = (int8_t)imax(-127, imin(127, ar_nearest_int(iscale * x[j])));
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ================================ K-quants: dot products ================================ */

/* Sum of q8 * q over the 16 values of group g of a block of type T (value function T##_value). */
#define GROUP_DOT(T)                                                                               \
    static inline int group_dot_##T(const ar_block_##T *b, const int8_t *q8, int g) {              \
        int s = 0;                                                                                 \
        for (int v = 16 * g; v < 16 * g + 16; v++) s += q8[v] * T##_value(b, v);                   \
        return s;                                                                                  \
    }
GROUP_DOT(q2_K)
GROUP_DOT(q3_K)
GROUP_DOT(q4_K)
GROUP_DOT(q5_K)
GROUP_DOT(q6_K)
#undef GROUP_DOT

static void vec_dot_q2_K(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q2_K *x = w;
    const ar_block_q8_K *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        int isum = 0, summs = 0;
        for (int g = 0; g < 16; g++) {
            isum += (x[i].scales[g] & 0xF) * group_dot_q2_K(&x[i], y[i].qs, g);
            summs += y[i].bsums[g] * (x[i].scales[g] >> 4);
        }
        const float dall = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

static void vec_dot_q3_K(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q3_K *x = w;
    const ar_block_q8_K *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        int isum = 0;
        for (int g = 0; g < 16; g++)
            isum += (ar_scale_q3_K(g, x[i].scales) - 32) * group_dot_q3_K(&x[i], y[i].qs, g);
        const float d = h2f(x[i].d) * y[i].d;
        sum += d * (float)isum;
    }
    *s = sum;
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 values with a scale and a min each. */
#define VEC_DOT_K4(T)                                                                              \
    static void vec_dot_##T(int64_t n, float *restrict s, const void *restrict w,                  \
                            const void *restrict a) {                                              \
        const ar_block_##T *x = w;                                                                 \
        const ar_block_q8_K *y = a;                                                                \
        float sum = 0;                                                                             \
        for (int64_t i = 0; i < n / AR_QK_K; i++) {                                                \
            int isum = 0, summs = 0;                                                               \
            for (int j = 0; j < 8; j++) {                                                          \
                uint8_t sc, m;                                                                     \
                ar_scale_min_k4(j, x[i].scales, &sc, &m);                                          \
                isum += sc * (group_dot_##T(&x[i], y[i].qs, 2 * j) +                               \
                              group_dot_##T(&x[i], y[i].qs, 2 * j + 1));                           \
                summs += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);                          \
            }                                                                                      \
            const float d = h2f(x[i].d) * y[i].d, dmin = h2f(x[i].dmin) * y[i].d;                  \
            sum += d * (float)isum - dmin * (float)summs;                                          \
        }                                                                                          \
        *s = sum;                                                                                  \
    }
VEC_DOT_K4(q4_K)
VEC_DOT_K4(q5_K)
#undef VEC_DOT_K4

static void vec_dot_q6_K(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q6_K *x = w;
    const ar_block_q8_K *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += x[i].scales[g] * group_dot_q6_K(&x[i], y[i].qs, g);
        const float d = h2f(x[i].d) * y[i].d;
        sum += d * (float)isum;
    }
    *s = sum;
}

/* Q8_K is an activation format; its dot with itself completes the row (ggml has none). */
static void vec_dot_q8_K(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_block_q8_K *x = w;
    const ar_block_q8_K *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        int isum = 0;
        for (int v = 0; v < AR_QK_K; v++) isum += x[i].qs[v] * y[i].qs[v];
        sum += (x[i].d * y[i].d) * (float)isum;
    }
    *s = sum;
}

/* ================================ the table ================================ */

#define ROW(T, NAME, BLCK, SIZE, VDT, SFX)                                                         \
    [T] = {.name = NAME,                                                                           \
           .blck_size = BLCK,                                                                      \
           .type_size = SIZE,                                                                      \
           .vec_dot_type = VDT,                                                                    \
           .to_float = to_float_##SFX,                                                             \
           .from_float = from_float_##SFX,                                                         \
           .vec_dot = vec_dot_##SFX,                                                               \
           .vec_dot_fast = vec_dot_##SFX,                                                          \
           .fast_path = "scalar"}

static ar_type_traits type_table[AR_TYPE_COUNT] = {
    ROW(AR_TYPE_F32, "f32", 1, sizeof(float), AR_TYPE_F32, f32),
    ROW(AR_TYPE_F16, "f16", 1, sizeof(ar_half), AR_TYPE_F16, f16),
    ROW(AR_TYPE_BF16, "bf16", 1, sizeof(uint16_t), AR_TYPE_BF16, bf16),
    ROW(AR_TYPE_Q4_0, "q4_0", AR_QK, sizeof(ar_block_q4_0), AR_TYPE_Q8_0, q4_0),
    ROW(AR_TYPE_Q4_1, "q4_1", AR_QK, sizeof(ar_block_q4_1), AR_TYPE_Q8_1, q4_1),
    ROW(AR_TYPE_Q5_0, "q5_0", AR_QK, sizeof(ar_block_q5_0), AR_TYPE_Q8_0, q5_0),
    ROW(AR_TYPE_Q5_1, "q5_1", AR_QK, sizeof(ar_block_q5_1), AR_TYPE_Q8_1, q5_1),
    ROW(AR_TYPE_Q8_0, "q8_0", AR_QK, sizeof(ar_block_q8_0), AR_TYPE_Q8_0, q8_0),
    ROW(AR_TYPE_Q8_1, "q8_1", AR_QK, sizeof(ar_block_q8_1), AR_TYPE_Q8_1, q8_1),
    ROW(AR_TYPE_Q2_K, "q2_K", AR_QK_K, sizeof(ar_block_q2_K), AR_TYPE_Q8_K, q2_K),
    ROW(AR_TYPE_Q3_K, "q3_K", AR_QK_K, sizeof(ar_block_q3_K), AR_TYPE_Q8_K, q3_K),
    ROW(AR_TYPE_Q4_K, "q4_K", AR_QK_K, sizeof(ar_block_q4_K), AR_TYPE_Q8_K, q4_K),
    ROW(AR_TYPE_Q5_K, "q5_K", AR_QK_K, sizeof(ar_block_q5_K), AR_TYPE_Q8_K, q5_K),
    ROW(AR_TYPE_Q6_K, "q6_K", AR_QK_K, sizeof(ar_block_q6_K), AR_TYPE_Q8_K, q6_K),
    ROW(AR_TYPE_Q8_K, "q8_K", AR_QK_K, sizeof(ar_block_q8_K), AR_TYPE_Q8_K, q8_K),
};

const ar_type_traits *ar_type_get(ar_type t) {
    if ((int)t < 0 || (int)t >= AR_TYPE_COUNT || !type_table[t].name) return NULL;
    return &type_table[t];
}

int ar_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < AR_TYPE_COUNT; t++)
        if (type_table[t].name && !strcasecmp(type_table[t].name, name)) return t;
    return -1;
}

size_t ar_row_size(ar_type t, int64_t n) {
    const ar_type_traits *tr = ar_type_get(t);
    if (!tr || n < 0 || n % tr->blck_size != 0) return 0;
    uint64_t bytes;
    if (!ar_mul_ok((uint64_t)(n / tr->blck_size), tr->type_size, &bytes) || bytes > SIZE_MAX)
        return 0;
    return (size_t)bytes;
}

void ar_type_set_fast(ar_type t, ar_vec_dot_fn fn, const char *path) {
    if ((int)t < 0 || (int)t >= AR_TYPE_COUNT || !type_table[t].name) return;
    type_table[t].vec_dot_fast = fn ? fn : type_table[t].vec_dot;
    type_table[t].fast_path = fn ? path : "scalar";
}

void ar_quantize_row(ar_type vec_dot_type, const float *restrict x, void *restrict dst, int64_t n) {
    switch (vec_dot_type) {
    case AR_TYPE_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        return;
    case AR_TYPE_Q8_0:
        ar_quantize_row_q8_0_act(x, dst, n);
        return;
    default: {
        const ar_type_traits *tr = ar_type_get(vec_dot_type);
        if (tr) tr->from_float(x, dst, n);
        return;
    }
    }
}
