/* avx2.c: the AVX2 (+ FMA, F16C) kernels and their table. Every kernel returns exactly the bits
 * of the scalar reference in quants.c (the order is fixed in kernels.h), for any input, aligned or
 * not: dot products, and rep kernels over rows in place (the structure of avx512.c's with 8
 * lanes). Without VNNI, quants are multiplied by vpmaddubsw (unsigned weight byte times signed
 * activation byte, adjacent pairs summed to 16 bits with saturation) and widened by vpmaddwd.
 * Saturation never happens: weight values are at most 63 except Q8_0's, which use |w| times
 * sign(a, w) (pairs within 2 * 128 * 127), and 16-bit partial sums are only added while their
 * bound (weight max * 127 * 2 * terms) stays below 32768. Called only when ar_cpu() reports AVX2,
 * FMA and F16C. */
#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)

#define AI AR_AI
/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */
#define FORGET_STORES() __asm__ __volatile__("" ::: "memory")
#define W               8 /* lanes: lane c * RR + r holds (column c, weight row r) */

/* ================================ dot products ================================ */

/* ---- F32, F16, BF16: 32 running sums as 4 vectors (lanes 0-7, 8-15, 16-23, 24-31) ---- */

static inline float reduce32(const __m256 acc[4]) {
    return ar_mm256_reduce8(
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])));
}

static inline __m256 load8_f16(const ar_half *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline __m256 load8_bf16(const uint16_t *p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

/* The tail (fewer than 32 values) goes through zero-padded copies: padded lanes add 0*0 = +0,
 * which leaves a running sum unchanged (a sum that starts at +0 never becomes -0). */
static void dot_f32(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const float *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k),
                                                         _mm256_loadu_ps(y + i + 8 * k)));
    if (i < n) {
        float xb[32] = {0}, yb[32] = {0};
        memcpy(xb, x + i, (size_t)(n - i) * sizeof(float));
        memcpy(yb, y + i, (size_t)(n - i) * sizeof(float));
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_add_ps(
                acc[k], _mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), _mm256_loadu_ps(yb + 8 * k)));
    }
    *s = reduce32(acc);
}

static void dot_f16(int64_t n, float *restrict s, const void *restrict w,
                         const void *restrict a) {
    const ar_half *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_add_ps(
                acc[k], _mm256_mul_ps(load8_f16(x + i + 8 * k), load8_f16(y + i + 8 * k)));
    if (i < n) {
        ar_half xb[32] = {0}, yb[32] = {0};
        memcpy(xb, x + i, (size_t)(n - i) * sizeof(ar_half));
        memcpy(yb, y + i, (size_t)(n - i) * sizeof(ar_half));
        for (int k = 0; k < 4; k++)
            acc[k] =
                _mm256_add_ps(acc[k], _mm256_mul_ps(load8_f16(xb + 8 * k), load8_f16(yb + 8 * k)));
    }
    *s = reduce32(acc);
}

static void dot_bf16(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    const uint16_t *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_add_ps(
                acc[k], _mm256_mul_ps(load8_bf16(x + i + 8 * k), load8_bf16(y + i + 8 * k)));
    if (i < n) {
        uint16_t xb[32] = {0}, yb[32] = {0};
        memcpy(xb, x + i, (size_t)(n - i) * sizeof(uint16_t));
        memcpy(yb, y + i, (size_t)(n - i) * sizeof(uint16_t));
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_add_ps(acc[k],
                                   _mm256_mul_ps(load8_bf16(xb + 8 * k), load8_bf16(yb + 8 * k)));
    }
    *s = reduce32(acc);
}

/* ---- 32-value block formats ---- */

static inline __m256i sum_pairs(__m256i p16) {
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* x: any int8; y: int8 in [-127, 127]. |x| as unsigned bytes (128 for -128) times y with x's sign:
 * pair sums stay within +-2*128*127, no 16-bit saturation. */
static inline __m256i dot_i8(__m256i x, __m256i y) {
    return sum_pairs(_mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)));
}
static inline __m256i load32(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

static __m256i block_q8_0(const uint8_t *w, const uint8_t *a) {
    return dot_i8(load32(((const ar_block_q8_0 *)w)->qs), load32(((const ar_block_q8_0 *)a)->qs));
}
static __m256i block_q4_0(const uint8_t *w, const uint8_t *a) {
    const __m256i q =
        _mm256_sub_epi8(ar_mm256_nibbles32(((const ar_block_q4_0 *)w)->qs), _mm256_set1_epi8(8));
    return dot_i8(q, load32(((const ar_block_q8_0 *)a)->qs));
}
static __m256i block_q4_1(const uint8_t *w, const uint8_t *a) {
    const __m256i q = ar_mm256_nibbles32(((const ar_block_q4_1 *)w)->qs);
    return sum_pairs(_mm256_maddubs_epi16(q, load32(((const ar_block_q8_1 *)a)->qs)));
}
static __m256i block_q5_0(const uint8_t *w, const uint8_t *a) {
    const ar_block_q5_0 *b = (const ar_block_q5_0 *)w;
    const __m256i q = _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    return dot_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), load32(((const ar_block_q8_0 *)a)->qs));
}
static __m256i block_q5_1(const uint8_t *w, const uint8_t *a) {
    const ar_block_q5_1 *b = (const ar_block_q5_1 *)w;
    const __m256i q = _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    return sum_pairs(_mm256_maddubs_epi16(q, load32(((const ar_block_q8_1 *)a)->qs)));
}

static void dot_q8_0(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q8_0), a, sizeof(ar_block_q8_0), false,
                         block_q8_0);
}
static void dot_q4_0(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q4_0), a, sizeof(ar_block_q8_0), false,
                         block_q4_0);
}
static void dot_q4_1(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q4_1), a, sizeof(ar_block_q8_1), true,
                         block_q4_1);
}
static void dot_q5_0(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q5_0), a, sizeof(ar_block_q8_0), false,
                         block_q5_0);
}
static void dot_q5_1(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q5_1), a, sizeof(ar_block_q8_1), true,
                         block_q5_1);
}

/* ---- K-quants: exact integer sums per super-block, then the reference's float term ---- */

/* 16-bit lanes 0-7 = s0, lanes 8-15 = s1: the scales of the two 16-value groups of 32 values. */
static inline __m256i scale_pair(int s0, int s1) {
    return _mm256_set_m128i(_mm_set1_epi16((short)s1), _mm_set1_epi16((short)s0));
}
/* Adds sum over 32 values of u*y (u unsigned <= 63), the two 16-value halves scaled by s. */
static inline __m256i add_scaled(__m256i acc, __m256i u, const int8_t *y, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, load32(y)), s));
}

static void dot_q2_K(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    const ar_block_q2_K *x = w;
    const ar_block_q8_K *y = a;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        const int summs = ar_mm256_dot_bsums(
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), m4)), y[i].bsums);
        int16_t sc[16];
        _mm256_storeu_si256((__m256i *)sc, _mm256_cvtepu8_epi16(_mm_and_si128(sc8, m4)));
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 2; c++) {
            __m256i q = load32(x[i].qs + 32 * c);
            for (int k = 0; k < 4; k++) {
                const int g = 8 * c + 2 * k;
                acc = add_scaled(acc, _mm256_and_si256(q, m3), y[i].qs + 128 * c + 32 * k,
                                 scale_pair(sc[g], sc[g + 1]));
                q = _mm256_srli_epi16(q, 2);
            }
        }
        const int isum = ar_mm256_hsum_epi32(acc);
        const float dall = y[i].d * ar_half_to_float(x[i].d);
        const float dmin = y[i].d * ar_half_to_float(x[i].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

/* Q3_K: u = low 2 bits + 4*high bit in [0, 7], value u - 4; the -4 goes through bsums. */
static void dot_q3_K(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    const ar_block_q3_K *x = w;
    const ar_block_q8_K *y = a;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        const __m256i s16 = _mm256_cvtepi8_epi16(ar_q3_K_scales(x[i].scales));
        const int offset = ar_mm256_dot_bsums(s16, y[i].bsums);
        int16_t sc[16];
        _mm256_storeu_si256((__m256i *)sc, s16);
        __m256i acc = _mm256_setzero_si256();
        __m256i hm = load32(x[i].hmask);
        for (int c = 0; c < 2; c++) {
            __m256i q = load32(x[i].qs + 32 * c);
            for (int k = 0; k < 4; k++) {
                const int g = 8 * c + 2 * k;
                const __m256i hbit = _mm256_slli_epi16(_mm256_and_si256(hm, one), 2);
                const __m256i u = _mm256_or_si256(_mm256_and_si256(q, m3), hbit);
                acc = add_scaled(acc, u, y[i].qs + 128 * c + 32 * k, scale_pair(sc[g], sc[g + 1]));
                q = _mm256_srli_epi16(q, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
        const int isum = ar_mm256_hsum_epi32(acc) - 4 * offset;
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        sum += d * (float)isum;
    }
    *s = sum;
}

/* Q4_K/Q5_K: 8 scales (stored to sc) and mins per super-block; the mins go through bsums. */
static inline int scales_mins_k4(const uint8_t *packed, const int16_t *bsums, uint8_t sc[16]) {
    const __m128i sm = ar_k4_scales_mins(packed);
    _mm_storeu_si128((__m128i *)sc, sm);
    /* each min twice, once per 16-value group */
    return ar_mm256_dot_bsums(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), bsums);
}

/* Q4_K and Q5_K (q5: with the fifth bits of qh): 8 scales and mins, the mins through bsums. */
AI void dot_k4(bool q5, int64_t n, float *restrict s, const void *restrict w,
               const void *restrict a) {
    const ar_block_q8_K *y = a;
    const size_t bsz = q5 ? sizeof(ar_block_q5_K) : sizeof(ar_block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1), two = _mm256_set1_epi8(2);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        /* both: d, dmin, scales[12]; then Q5_K's qh[32]; then qs[128] */
        const uint8_t *b = (const uint8_t *)w + (size_t)i * bsz, *qs = b + (q5 ? 48 : 16);
        ar_half hd, hmin;
        memcpy(&hd, b, 2), memcpy(&hmin, b + 2, 2);
        uint8_t sc[16];
        const int summs = scales_mins_k4(b + 4, y[i].bsums, sc);
        __m256i acc = _mm256_setzero_si256();
        __m256i hm = q5 ? load32(b + 16) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(qs + 32 * c);
            const int8_t *q8 = y[i].qs + 64 * c;
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (q5) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hm, one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(hm, two), 3));
                hm = _mm256_srli_epi16(hm, 2);
            }
            acc = add_scaled(acc, lo, q8, _mm256_set1_epi16(sc[2 * c]));
            acc = add_scaled(acc, hi, q8 + 32, _mm256_set1_epi16(sc[2 * c + 1]));
        }
        const int isum = ar_mm256_hsum_epi32(acc);
        const float d = ar_half_to_float(hd) * y[i].d;
        const float dmin = ar_half_to_float(hmin) * y[i].d;
        sum += d * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}
static void dot_q4_K(int64_t n, float *restrict s, const void *restrict w,
                     const void *restrict a) {
    dot_k4(false, n, s, w, a);
}
static void dot_q5_K(int64_t n, float *restrict s, const void *restrict w,
                     const void *restrict a) {
    dot_k4(true, n, s, w, a);
}

/* Q6_K: u = 4 low bits + 2 high bits in [0, 63], value u - 32; the -32 goes through bsums. */
static void dot_q6_K(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    const ar_block_q6_K *x = w;
    const ar_block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        const int8_t *sc = x[i].scales;
        const int offset = ar_mm256_dot_bsums(
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)), y[i].bsums);
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 2; c++) {
            const __m256i ql0 = load32(x[i].ql + 64 * c), ql1 = load32(x[i].ql + 64 * c + 32);
            const __m256i qh = load32(x[i].qh + 32 * c);
            const __m256i low[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
            __m256i h = qh;
            for (int k = 0; k < 4; k++) {
                const int g = 8 * c + 2 * k;
                const __m256i u =
                    _mm256_or_si256(low[k], _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
                acc = add_scaled(acc, u, y[i].qs + 128 * c + 32 * k, scale_pair(sc[g], sc[g + 1]));
                h = _mm256_srli_epi16(h, 2);
            }
        }
        const int isum = ar_mm256_hsum_epi32(acc) - 32 * offset;
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        sum += d * (float)isum;
    }
    *s = sum;
}


/* ================================ rep kernels ================================ */

/* ================================ F32, F16, BF16 ================================ */

enum { W_F32, W_F16, W_BF16 };

AI __m256 load_w8(int fmt, const uint8_t *w, int64_t i) {
    if (fmt == W_F32) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (fmt == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* R rows against one column: 32 running sums per row, acc += w * a unfused. The tail (under 32
 * values) goes through zero-padded copies: padded lanes add 0 * 0 = +0. */
AI void float_tile(int fmt, int R, int64_t k, const uint8_t *w, size_t ws, const float *a,
                   float *out, int out_stride) {
    const size_t esz = fmt == W_F32 ? 4 : 2;
    __m256 acc[2][4];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int v = 0; v < 4; v++) acc[r][v] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
#pragma GCC unroll 16
        for (int v = 0; v < 4; v++) {
            const __m256 x = _mm256_loadu_ps(a + i + 8 * v);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++)
                acc[r][v] =
                    _mm256_add_ps(acc[r][v], _mm256_mul_ps(load_w8(fmt, w + r * ws, i + 8 * v), x));
        }
    }
    if (i < k) {
        float ab[32] = {0};
        uint8_t wb[2][128] __attribute__((aligned(32))) = {{0}};
        memcpy(ab, a + i, sizeof(float) * (size_t)(k - i));
        for (int r = 0; r < R; r++)
            memcpy(wb[r], w + r * ws + (size_t)i * esz, (size_t)(k - i) * esz);
#pragma GCC unroll 16
        for (int v = 0; v < 4; v++) {
            const __m256 x = _mm256_loadu_ps(ab + 8 * v);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++)
                acc[r][v] = _mm256_add_ps(acc[r][v], _mm256_mul_ps(load_w8(fmt, wb[r], 8 * v), x));
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) out[r * out_stride] = reduce32(acc[r]);
}

#define FLOAT_RUN(name, fmt)                                                                       \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        for (int c = 0; c < ngroups; c++) {                                                        \
            const float *a = (const float *)(panel + (size_t)c * pstride);                         \
            if (nrows >= 2)                                                                        \
                float_tile(fmt, 2, k, w, w_stride, a, out + c, ngroups);                           \
            else                                                                                   \
                float_tile(fmt, 1, k, w, w_stride, a, out + c, ngroups);                           \
        }                                                                                          \
    }
FLOAT_RUN(run_f32, W_F32)
FLOAT_RUN(run_f16, W_F16)
FLOAT_RUN(run_bf16, W_BF16)

/* ================================ quantized: common ================================ */

AI __m256i bcast_rows(int RR, const int32_t *p) {
    if (RR == 1) return _mm256_set1_epi32(p[0]);
    if (RR == 2) {
        long long v;
        memcpy(&v, p, 8);
        return _mm256_set1_epi64x(v);
    }
    return _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)p));
}
AI __m256 bcast_rows_ps(int RR, const float *p) {
    return _mm256_castsi256_ps(bcast_rows(RR, (const int32_t *)p));
}

AI void store_tile(int RR, int P, const __m256 *v, float *out, int out_stride, int nrows) {
    const int C = W / RR;
    float t[W] __attribute__((aligned(32)));
    for (int p = 0; p < P; p++) {
        _mm256_store_ps(t, v[p]);
        for (int r = 0; r < RR && p * RR + r < nrows; r++)
            for (int c = 0; c < C; c++) out[(size_t)(p * RR + r) * out_stride + c] = t[c * RR + r];
    }
}

static inline __m256i widen(__m256i s16) {
    return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
}

/* ================================ 32-value block formats ================================ */



/* dwords whose maddubs pair sums may be added in 16 bits: 4 values of at most 15 (Q4), 31 (Q5) */
AI int q32_depth(int fmt) {
    return fmt == AR_TYPE_Q4_0 || fmt == AR_TYPE_Q4_1 ? 8 : fmt == AR_TYPE_Q8_0 ? 1 : 4;
}

/* 16-bit pair sums of one dword of weights (broadcast) against the panel's quants */
AI __m256i pair_sums(int fmt, __m256i w, __m256i a) {
    if (fmt == AR_TYPE_Q8_0) return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_maddubs_epi16(w, a);
}


AI void q32_lane(int fmt, int RR, int P, int64_t nb, int64_t j, const uint8_t *const *rows,
                 const uint8_t *panel, __m256 *run, ar_prefetcher *pf) {
    const size_t wsz = ar_block_bytes(fmt), rec = AR_Q32_RECORD(W, ar_q32_has_min(fmt));
    const int D = q32_depth(fmt);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) run[p] = _mm256_setzero_ps();
    for (int64_t b = j; b < nb; b += 8) {
        ar_prefetch_step(pf);
        ar_q32_tile t[2];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) ar_q32_tile_load(fmt, RR, rows + p * RR, (size_t)b * wsz, false, &t[p]);
        FORGET_STORES();
        const uint8_t *pb = panel + (size_t)b * rec;
        __m256i s[2], s16[2];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) s[p] = _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int q0 = 0; q0 < 8; q0 += D) {
#pragma GCC unroll 16
            for (int p = 0; p < P; p++) s16[p] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int q = q0; q < q0 + D; q++) {
                const __m256i a = _mm256_load_si256((const __m256i *)(pb + 32 * q));
#pragma GCC unroll 16
                for (int p = 0; p < P; p++)
                    s16[p] = _mm256_add_epi16(s16[p],
                                              pair_sums(fmt, bcast_rows(RR, t[p].wt + q * RR), a));
            }
#pragma GCC unroll 16
            for (int p = 0; p < P; p++) s[p] = _mm256_add_epi32(s[p], widen(s16[p]));
        }
        const __m256i corr = _mm256_load_si256((const __m256i *)(pb + AR_Q32_CORR(W)));
        const __m256 da = _mm256_load_ps((const float *)(pb + AR_Q32_D(W)));
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const __m256i sumi = _mm256_sub_epi32(s[p], corr);
            __m256 term = _mm256_mul_ps(_mm256_mul_ps(bcast_rows_ps(RR, t[p].d), da),
                                        _mm256_cvtepi32_ps(sumi));
            if (ar_q32_has_min(fmt))
                term =
                    _mm256_add_ps(term, _mm256_mul_ps(bcast_rows_ps(RR, t[p].m),
                                                      _mm256_load_ps((const float *)(pb + AR_Q32_S(W)))));
            run[p] = _mm256_add_ps(run[p], term);
        }
    }
}

AI void q32_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows,
                 const uint8_t *panel, float *out, int out_stride, int nrows, size_t ws,
                 bool first) {
    const int64_t nb = k / AR_QK;
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, nb, first);
    __m256 a[4];
#define LANE(j, o) q32_lane(fmt, RR, P, nb, j, rows, panel, o, &pf)
    AR_FOLD8(__m256, _mm256_add_ps, P, LANE, a);
#undef LANE
    store_tile(RR, P, a, out, out_stride, nrows);
}

#define Q32_RUNS(sfx, fmt)                                                                         \
    AR_REP_RUN(run_##sfx##_r1, q32_tile, fmt, 1, 2, W)                                             \
    AR_REP_RUN(run_##sfx##_r2, q32_tile, fmt, 2, 2, W)                                             \
    AR_REP_RUN(run_##sfx##_r4, q32_tile, fmt, 4, 2, W)
Q32_RUNS(q4_0, AR_TYPE_Q4_0)
Q32_RUNS(q4_1, AR_TYPE_Q4_1)
Q32_RUNS(q5_0, AR_TYPE_Q5_0)
Q32_RUNS(q5_1, AR_TYPE_Q5_1)
Q32_RUNS(q8_0, AR_TYPE_Q8_0)

/* ================================ K-quants ================================ */



/* dwords per scale, and dwords whose pair sums fit 16 bits (values up to 3, 7, 15, 31, 63) */
AI int qk_span(int fmt) {
    return fmt == AR_TYPE_Q4_K || fmt == AR_TYPE_Q5_K ? 8 : 4;
}
AI int qk_depth(int fmt) {
    switch (fmt) {
    case AR_TYPE_Q2_K:
    case AR_TYPE_Q3_K:
        return 4;
    case AR_TYPE_Q4_K:
        return 8;
    case AR_TYPE_Q5_K:
        return 4;
    default:
        return 2;
    }
}


AI void qk_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows, const uint8_t *panel,
                float *out, int out_stride, int nrows, size_t ws, bool first) {
    const size_t wsz = ar_block_bytes(fmt);
    const bool has_min = fmt == AR_TYPE_Q2_K || fmt == AR_TYPE_Q4_K || fmt == AR_TYPE_Q5_K;
    const int span = qk_span(fmt), D = qk_depth(fmt);
    __m256 sum[2];
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) sum[p] = _mm256_setzero_ps();
    ar_qk_tile t[2];
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, k / AR_QK_K, first);
    for (int64_t i = 0; i < k / AR_QK_K; i++) {
        ar_prefetch_step(&pf);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) ar_qk_tile_load(fmt, RR, rows + p * RR, (size_t)i * wsz, true, &t[p]);
        FORGET_STORES();
        const uint8_t *pb = panel + (size_t)i * AR_QK_RECORD(W);
        __m256i isum[2], pairs[2];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) isum[p] = pairs[p] = _mm256_setzero_si256();
        for (int sb = 0; sb < 64 / span; sb++) {
#pragma GCC unroll 16
            for (int q0 = span * sb; q0 < span * (sb + 1); q0 += D) {
                __m256i s16[2];
#pragma GCC unroll 16
                for (int p = 0; p < P; p++) s16[p] = _mm256_setzero_si256();
#pragma GCC unroll 16
                for (int q = q0; q < q0 + D; q++) {
                    const __m256i a = _mm256_load_si256((const __m256i *)(pb + 32 * q));
#pragma GCC unroll 16
                    for (int p = 0; p < P; p++)
                        s16[p] = _mm256_add_epi16(
                            s16[p], _mm256_maddubs_epi16(bcast_rows(RR, t[p].wt + q * RR), a));
                }
                /* the group's scale times the pair sums, widened: exact in 32 bits */
#pragma GCC unroll 16
                for (int p = 0; p < P; p++)
                    isum[p] = _mm256_add_epi32(
                        isum[p], _mm256_madd_epi16(s16[p], bcast_rows(RR, t[p].sc + sb * RR)));
            }
        }
#pragma GCC unroll 16
        for (int q = 0; q < 8; q++) {
            const __m256i bs = _mm256_load_si256((const __m256i *)(pb + AR_QK_BS(W) + 32 * q));
#pragma GCC unroll 16
            for (int p = 0; p < P; p++)
                pairs[p] = _mm256_add_epi32(
                    pairs[p], _mm256_madd_epi16(bcast_rows(RR, t[p].pair + q * RR), bs));
        }
        const __m256 da = _mm256_load_ps((const float *)(pb + AR_QK_D(W)));
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const __m256 d = _mm256_mul_ps(bcast_rows_ps(RR, t[p].d), da);
            __m256 term;
            if (has_min) {
                const __m256 dmin = _mm256_mul_ps(bcast_rows_ps(RR, t[p].dmin), da);
                term = _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[p])),
                                     _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(pairs[p])));
            } else {
                term = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_add_epi32(isum[p], pairs[p])));
            }
            sum[p] = _mm256_add_ps(sum[p], term);
        }
    }
    store_tile(RR, P, sum, out, out_stride, nrows);
}

#define QK_RUNS(sfx, fmt)                                                                          \
    AR_REP_RUN(run_##sfx##_r1, qk_tile, fmt, 1, 2, W)                                              \
    AR_REP_RUN(run_##sfx##_r2, qk_tile, fmt, 2, 2, W)                                              \
    AR_REP_RUN(run_##sfx##_r4, qk_tile, fmt, 4, 2, W)
QK_RUNS(q2_K, AR_TYPE_Q2_K)
QK_RUNS(q3_K, AR_TYPE_Q3_K)
QK_RUNS(q4_K, AR_TYPE_Q4_K)
QK_RUNS(q5_K, AR_TYPE_Q5_K)
QK_RUNS(q6_K, AR_TYPE_Q6_K)

/* ================================ the table ================================ */

#define REP_PATH "avx2"
static const ar_gemm_kernel k_f32 = AR_FLOAT_KERNEL(AR_TYPE_F32, run_f32, 2);
static const ar_gemm_kernel k_f16 = AR_FLOAT_KERNEL(AR_TYPE_F16, run_f16, 2);
static const ar_gemm_kernel k_bf16 = AR_FLOAT_KERNEL(AR_TYPE_BF16, run_bf16, 2);
#define REP_MAX_ROWS(rr) (2 * (rr))
AR_REP_SET32(q4_0, 8, false)
AR_REP_SET32(q4_1, 0, true)
AR_REP_SET32(q5_0, 16, false)
AR_REP_SET32(q5_1, 0, true)
AR_REP_SET32(q8_0, 0, false) /* the sign trick: signed weights, no offset */
AR_REP_SETK(q2_K)
AR_REP_SETK(q3_K)
AR_REP_SETK(q4_K)
AR_REP_SETK(q5_K)
AR_REP_SETK(q6_K)

const ar_kernel_table ar_kernels_avx2 = {
    .level = AR_SIMD_AVX2,
    .path = "avx2",
    .rows = {
        [AR_TYPE_F32] = {.dot = dot_f32, .rep = {&k_f32}},
        [AR_TYPE_F16] = {.dot = dot_f16, .rep = {&k_f16}},
        [AR_TYPE_BF16] = {.dot = dot_bf16, .rep = {&k_bf16}},
        [AR_TYPE_Q4_0] = {.dot = dot_q4_0, AR_REP3(q4_0)},
        [AR_TYPE_Q4_1] = {.dot = dot_q4_1, AR_REP3(q4_1)},
        [AR_TYPE_Q5_0] = {.dot = dot_q5_0, AR_REP3(q5_0)},
        [AR_TYPE_Q5_1] = {.dot = dot_q5_1, AR_REP3(q5_1)},
        [AR_TYPE_Q8_0] = {.dot = dot_q8_0, AR_REP3(q8_0)},
        [AR_TYPE_Q2_K] = {.dot = dot_q2_K, AR_REP3(q2_K)},
        [AR_TYPE_Q3_K] = {.dot = dot_q3_K, AR_REP3(q3_K)},
        [AR_TYPE_Q4_K] = {.dot = dot_q4_K, AR_REP3(q4_K)},
        [AR_TYPE_Q5_K] = {.dot = dot_q5_K, AR_REP3(q5_K)},
        [AR_TYPE_Q6_K] = {.dot = dot_q6_K, AR_REP3(q6_K)},
    }};

#else
const ar_kernel_table ar_kernels_avx2 = {.level = AR_SIMD_AVX2, .path = "avx2"};
#endif
