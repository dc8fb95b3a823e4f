/* avx512.c: the AVX-512 kernels and their tables. The float formats need AVX-512 F/BW/VL/DQ; the
 * quantized ones also VNNI (vpdpbusd / vpdpwssd: 8-bit and 16-bit products summed into 32 bits
 * without saturation). Every kernel returns exactly the bits of the scalar reference in quants.c
 * (the order is fixed in kernels.h), for any input, aligned or not:
 *  - dot products (one weight row, one activation row);
 *  - rep kernels over rows in place: a broadcast dword of four unsigned weight values times the
 *    same four quants of 16 columns at once (the columns in the lanes), so the integer sum of a
 *    block comes out per column with no horizontal reduction;
 *  - 16-row kernels: 16 weight rows in the lanes and each column broadcast, over packed groups
 *    or rows in place (Q4_0, Q4_1, Q8_0: faster than the rep kernels at every batch size
 *    measured, 1..64; the rep kernels serve the other formats in place).
 * Called only when ar_cpu() reports those instruction sets. */
#include "rows16.h"

/* Software prefetch of the packed kernels: distance in blocks, and where to (rows16.h); tune.c
 * measures both. */
int ar_avx512_prefetch_blocks = 16;
int ar_avx512_prefetch_hint = 2;

#if defined(__x86_64__) || defined(__i386__)

#define AI AR_AI
/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */

/* ================================ dot products ================================ */

/* ---- F32, F16, BF16: 32 running sums as 2 vectors (lanes 0-15, 16-31) ---- */

static inline float reduce32(__m512 a0, __m512 a1) {
    const __m512 z = _mm512_add_ps(a0, a1); /* lane j: s[j] + s[j+16] */
    return ar_mm256_reduce8(_mm256_add_ps(_mm512_castps512_ps256(z), _mm512_extractf32x8_ps(z, 1)));
}

/* Masks of the two 16-lane halves for the last `rem` (< 32) values. */
static inline void tail_masks(int64_t rem, __mmask16 *m0, __mmask16 *m1) {
    *m0 = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
    *m1 = rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1) : 0;
}

/* Masked-off lanes load +0: they add 0*0 = +0, which leaves a running sum unchanged. */
static void dot_f32(int64_t n, float *restrict s, const void *restrict w,
                           const void *restrict a) {
    const float *x = w, *y = a;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
        a1 = _mm512_add_ps(a1,
                           _mm512_mul_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16)));
    }
    if (i < n) {
        __mmask16 m0, m1;
        tail_masks(n - i, &m0, &m1);
        a0 = _mm512_add_ps(
            a0, _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, x + i), _mm512_maskz_loadu_ps(m0, y + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, x + i + 16),
                                             _mm512_maskz_loadu_ps(m1, y + i + 16)));
    }
    *s = reduce32(a0, a1);
}

static inline __m512 f16x16(__m256i h) {
    return _mm512_cvtph_ps(h);
}
static inline __m512 bf16x16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline __m256i load16(const uint16_t *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
static inline __m256i load16_masked(__mmask16 m, const uint16_t *p) {
    return _mm256_maskz_loadu_epi16(m, p);
}

static void dot_f16(int64_t n, float *restrict s, const void *restrict w,
                           const void *restrict a) {
    const uint16_t *x = w, *y = a;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(f16x16(load16(x + i)), f16x16(load16(y + i))));
        a1 = _mm512_add_ps(a1,
                           _mm512_mul_ps(f16x16(load16(x + i + 16)), f16x16(load16(y + i + 16))));
    }
    if (i < n) {
        __mmask16 m0, m1;
        tail_masks(n - i, &m0, &m1);
        a0 = _mm512_add_ps(
            a0, _mm512_mul_ps(f16x16(load16_masked(m0, x + i)), f16x16(load16_masked(m0, y + i))));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(f16x16(load16_masked(m1, x + i + 16)),
                                             f16x16(load16_masked(m1, y + i + 16))));
    }
    *s = reduce32(a0, a1);
}

static void dot_bf16(int64_t n, float *restrict s, const void *restrict w,
                            const void *restrict a) {
    const uint16_t *x = w, *y = a;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(bf16x16(load16(x + i)), bf16x16(load16(y + i))));
        a1 = _mm512_add_ps(a1,
                           _mm512_mul_ps(bf16x16(load16(x + i + 16)), bf16x16(load16(y + i + 16))));
    }
    if (i < n) {
        __mmask16 m0, m1;
        tail_masks(n - i, &m0, &m1);
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(bf16x16(load16_masked(m0, x + i)),
                                             bf16x16(load16_masked(m0, y + i))));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(bf16x16(load16_masked(m1, x + i + 16)),
                                             bf16x16(load16_masked(m1, y + i + 16))));
    }
    *s = reduce32(a0, a1);
}

/* ---- 32-value block formats (VNNI) ---- */

static inline __m256i load32(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
/* sum of u*y in 8 lanes of 4 products, u unsigned bytes, y signed bytes */
static inline __m256i dpbusd(__m256i u, __m256i y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y);
}
/* sum of (u - off)*y for unsigned u */
static inline __m256i dpbusd_off(__m256i u, int off, __m256i y) {
    return _mm256_sub_epi32(dpbusd(u, y), dpbusd(_mm256_set1_epi8((char)off), y));
}

static __m256i block_q8_0(const uint8_t *w, const uint8_t *a) {
    const __m256i x = load32(((const ar_block_q8_0 *)w)->qs);
    const __m256i y = load32(((const ar_block_q8_0 *)a)->qs);
    /* |x| as unsigned bytes (128 for -128) times y with x's sign */
    return dpbusd(_mm256_abs_epi8(x), _mm256_sign_epi8(y, x));
}
static __m256i block_q4_0(const uint8_t *w, const uint8_t *a) {
    return dpbusd_off(ar_mm256_nibbles32(((const ar_block_q4_0 *)w)->qs), 8,
                      load32(((const ar_block_q8_0 *)a)->qs));
}
static __m256i block_q4_1(const uint8_t *w, const uint8_t *a) {
    return dpbusd(ar_mm256_nibbles32(((const ar_block_q4_1 *)w)->qs),
                  load32(((const ar_block_q8_1 *)a)->qs));
}
static __m256i block_q5_0(const uint8_t *w, const uint8_t *a) {
    const ar_block_q5_0 *b = (const ar_block_q5_0 *)w;
    const __m256i q = _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    return dpbusd_off(q, 16, load32(((const ar_block_q8_0 *)a)->qs));
}
static __m256i block_q5_1(const uint8_t *w, const uint8_t *a) {
    const ar_block_q5_1 *b = (const ar_block_q5_1 *)w;
    const __m256i q = _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    return dpbusd(q, load32(((const ar_block_q8_1 *)a)->qs));
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

/* ---- K-quants: 64 values per step; pair sums (maddubs, |.| <= 2*63*127) times 16-bit scales,
 * summed by vpdpwssd. Exact integer sums per super-block, then the reference's float term. ---- */

static inline __m512i load64(const void *p) {
    return _mm512_loadu_si512(p);
}
static inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
/* 32 sixteen-bit lanes: lanes 8k..8k+7 = scales16[first + k] (k < 4), i.e. one scale per 16
 * values of 64 values starting at group `first`. */
static inline __m512i scales_by16(__m256i scales16, int first) {
    const __m512i idx =
        _mm512_add_epi16(_mm512_set1_epi16((short)first),
                         _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22,
                                                            21, 20, 19, 18, 17, 16, 15, 14, 13, 12,
                                                            11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           3));
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(scales16));
}
static inline __m512i add_scaled(__m512i acc, __m512i u, const int8_t *y, __m512i scales) {
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u, load64(y)), scales);
}

static void dot_q2_K(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    const ar_block_q2_K *x = w;
    const ar_block_q8_K *y = a;
    const __m512i m3 = _mm512_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m128i m4 = _mm_set1_epi8(0x0F);
        const int summs = ar_mm256_dot_bsums(
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4)), y[i].bsums);
        const __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(s8, m4));
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 2; c++) {
            const __m256i q = load32(x[i].qs + 32 * c);
            __m512i u = join(q, _mm256_srli_epi16(q, 2)); /* fields 0,1 then, shifted by 4, 2,3 */
            acc = add_scaled(acc, _mm512_and_si512(u, m3), y[i].qs + 128 * c,
                             scales_by16(s16, 8 * c));
            u = _mm512_srli_epi16(u, 4);
            acc = add_scaled(acc, _mm512_and_si512(u, m3), y[i].qs + 128 * c + 64,
                             scales_by16(s16, 8 * c + 4));
        }
        const int isum = _mm512_reduce_add_epi32(acc);
        const float dall = y[i].d * ar_half_to_float(x[i].d);
        const float dmin = y[i].d * ar_half_to_float(x[i].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

static void dot_q3_K(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    const ar_block_q3_K *x = w;
    const ar_block_q8_K *y = a;
    const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        const __m256i s16 = _mm256_cvtepi8_epi16(ar_q3_K_scales(x[i].scales));
        const int offset = ar_mm256_dot_bsums(s16, y[i].bsums);
        const __m256i hm = load32(x[i].hmask);
        __m512i h = join(hm, _mm256_srli_epi16(hm, 1)); /* high bits j, j+1 at bit 0 */
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 2; c++) {
            const __m256i q = load32(x[i].qs + 32 * c);
            __m512i u = join(q, _mm256_srli_epi16(q, 2));
            for (int half = 0; half < 2; half++) {
                const __m512i hbit = _mm512_slli_epi16(_mm512_and_si512(h, one), 2);
                const __m512i v = _mm512_or_si512(_mm512_and_si512(u, m3), hbit);
                acc = add_scaled(acc, v, y[i].qs + 128 * c + 64 * half,
                                 scales_by16(s16, 8 * c + 4 * half));
                u = _mm512_srli_epi16(u, 4);
                h = _mm512_srli_epi16(h, 2);
            }
        }
        const int isum = _mm512_reduce_add_epi32(acc) - 4 * offset;
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        sum += d * (float)isum;
    }
    *s = sum;
}

/* Q4_K/Q5_K: 8 scales and mins; the mins go through bsums. Returns the scales as 16-bit lanes
 * 0-7 of *s16. */
static inline int scales_mins_k4(const uint8_t *packed, const int16_t *bsums, __m256i *s16) {
    const __m128i sm = ar_k4_scales_mins(packed);
    *s16 = _mm256_cvtepu8_epi16(sm);
    /* each min twice, once per 16-value group */
    return ar_mm256_dot_bsums(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), bsums);
}
/* 32 sixteen-bit lanes: lanes 0-15 = scales16[j], lanes 16-31 = scales16[j + 1]: one scale per
 * 32 values of 64 values starting at sub-block j. */
static inline __m512i scales_by32(__m256i scales16, int j) {
    const __m512i idx =
        _mm512_add_epi16(_mm512_set1_epi16((short)j),
                         _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22,
                                                            21, 20, 19, 18, 17, 16, 15, 14, 13, 12,
                                                            11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           4));
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(scales16));
}

/* Q4_K and Q5_K (q5: with the fifth bits of qh). */
AI void dot_k4(bool q5, int64_t n, float *restrict s, const void *restrict w,
               const void *restrict a) {
    const ar_block_q8_K *y = a;
    const size_t bsz = q5 ? sizeof(ar_block_q5_K) : sizeof(ar_block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        /* both: d, dmin, scales[12]; then Q5_K's qh[32]; then qs[128] */
        const uint8_t *b = (const uint8_t *)w + (size_t)i * bsz, *qs = b + (q5 ? 48 : 16);
        ar_half hd, hmin;
        memcpy(&hd, b, 2), memcpy(&hmin, b + 2, 2);
        __m256i s16;
        const int summs = scales_mins_k4(b + 4, y[i].bsums, &s16);
        __m512i h = _mm512_setzero_si512();
        if (q5) {
            const __m256i qh = load32(b + 16);
            h = join(qh, _mm256_srli_epi16(qh, 1)); /* bits 2c, 2c+1 at bit 0 */
        }
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(qs + 32 * c);
            __m512i u = _mm512_and_si512(join(q, _mm256_srli_epi16(q, 4)), m4);
            if (q5) {
                u = _mm512_or_si512(u, _mm512_slli_epi16(_mm512_and_si512(h, one), 4));
                h = _mm512_srli_epi16(h, 2);
            }
            acc = add_scaled(acc, u, y[i].qs + 64 * c, scales_by32(s16, 2 * c));
        }
        const int isum = _mm512_reduce_add_epi32(acc);
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

static void dot_q6_K(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    const ar_block_q6_K *x = w;
    const ar_block_q8_K *y = a;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const int offset = ar_mm256_dot_bsums(s16, y[i].bsums);
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 2; c++) {
            const __m512i ql = load64(x[i].ql + 64 * c); /* low bits of quarters 0,1 | 2,3 */
            const __m256i qh = load32(x[i].qh + 32 * c);
            __m512i h = join(qh, _mm256_srli_epi16(qh, 2)); /* quarters 0 | 1 at bits 0-1 */
            const __m512i u01 = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                                _mm512_slli_epi16(_mm512_and_si512(h, m3), 4));
            h = _mm512_srli_epi16(h, 4); /* quarters 2 | 3 */
            const __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                _mm512_slli_epi16(_mm512_and_si512(h, m3), 4));
            acc = add_scaled(acc, u01, y[i].qs + 128 * c, scales_by16(s16, 8 * c));
            acc = add_scaled(acc, u23, y[i].qs + 128 * c + 64, scales_by16(s16, 8 * c + 4));
        }
        const int isum = _mm512_reduce_add_epi32(acc) - 32 * offset;
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        sum += d * (float)isum;
    }
    *s = sum;
}


/* ================================ rep kernels ================================ */

/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */

/* Makes the compiler forget what it stored to buffers, so that the broadcasts of unpacked weight
 * dwords are loads (vpbroadcastd from memory: a load port) instead of shuffles out of registers
 * (two shuffle-port instructions each, which would be the bottleneck). */
#define FORGET_STORES() __asm__ __volatile__("" ::: "memory")

/* ================================ F32, F16, BF16 ================================ */

enum { W_F32, W_F16, W_BF16 };

AI __m512 widen16(int fmt, __m256i h) {
    if (fmt == W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AI __m512 load_w16(int fmt, const uint8_t *w, int64_t i, __mmask16 m, bool masked) {
    if (fmt == W_F32)
        return masked ? _mm512_maskz_loadu_ps(m, (const float *)w + i)
                      : _mm512_loadu_ps((const float *)w + i);
    const uint16_t *h = (const uint16_t *)w + i;
    return widen16(fmt, masked ? _mm256_maskz_loadu_epi16(m, h)
                               : _mm256_loadu_si256((const __m256i *)h));
}

/* R rows against C columns (F32 rows of the panel, pstride bytes apart): value i of a column
 * goes to running sum i % 32, acc += w * a unfused, as the reference; masked-off tail lanes add
 * 0 * 0 = +0, which leaves a running sum unchanged. */
AI void float_tile(int fmt, int R, int C, int64_t k, const uint8_t *w, size_t ws,
                   const uint8_t *panel, size_t pstride, float *out, int out_stride) {
    __m512 acc[4][2][2];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm512_setzero_ps();
    const float *a[2];
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) a[c] = (const float *)(panel + (size_t)c * pstride);
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        __m512 x[2][2];
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
            x[c][0] = _mm512_loadu_ps(a[c] + i);
            x[c][1] = _mm512_loadu_ps(a[c] + i + 16);
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
            const __m512 w0 = load_w16(fmt, w + r * ws, i, 0, false);
            const __m512 w1 = load_w16(fmt, w + r * ws, i + 16, 0, false);
#pragma GCC unroll 16
            for (int c = 0; c < C; c++) {
                acc[r][c][0] = _mm512_add_ps(acc[r][c][0], _mm512_mul_ps(w0, x[c][0]));
                acc[r][c][1] = _mm512_add_ps(acc[r][c][1], _mm512_mul_ps(w1, x[c][1]));
            }
        }
    }
    if (i < k) {
        const int64_t rem = k - i;
        const __mmask16 m0 = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
        const __mmask16 m1 = rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1) : 0;
        __m512 x[2][2];
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
            x[c][0] = _mm512_maskz_loadu_ps(m0, a[c] + i);
            x[c][1] = _mm512_maskz_loadu_ps(m1, a[c] + i + 16);
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
            const __m512 w0 = load_w16(fmt, w + r * ws, i, m0, true);
            const __m512 w1 = load_w16(fmt, w + r * ws, i + 16, m1, true);
#pragma GCC unroll 16
            for (int c = 0; c < C; c++) {
                acc[r][c][0] = _mm512_add_ps(acc[r][c][0], _mm512_mul_ps(w0, x[c][0]));
                acc[r][c][1] = _mm512_add_ps(acc[r][c][1], _mm512_mul_ps(w1, x[c][1]));
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) out[r * out_stride + c] = reduce32(acc[r][c][0], acc[r][c][1]);
}

AI void float_run(int fmt, int R, int64_t k, const uint8_t *w, size_t ws, const uint8_t *panel,
                  size_t pstride, int ncols, float *out) {
    int c = 0;
    for (; c + 2 <= ncols; c += 2)
        float_tile(fmt, R, 2, k, w, ws, panel + (size_t)c * pstride, pstride, out + c, ncols);
    if (c < ncols)
        float_tile(fmt, R, 1, k, w, ws, panel + (size_t)c * pstride, pstride, out + c, ncols);
}

#define ROWS_SWITCH(call)                                                                          \
    switch (nrows) {                                                                               \
    case 1:                                                                                        \
        call(1);                                                                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        call(2);                                                                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        call(3);                                                                                   \
        break;                                                                                     \
    default:                                                                                       \
        call(4);                                                                                   \
        break;                                                                                     \
    }

#define FLOAT_CALL(R) float_run(fmt_, R, k, w, w_stride, panel, pstride, ngroups, out)
#define FLOAT_RUN(name, fmt)                                                                       \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        const int fmt_ = fmt;                                                                      \
        ROWS_SWITCH(FLOAT_CALL)                                                                    \
    }
FLOAT_RUN(run_f32, W_F32)
FLOAT_RUN(run_f16, W_F16)
FLOAT_RUN(run_bf16, W_BF16)

/* ================================ quantized: common ================================ */

#define W 16 /* lanes: lane c * RR + r holds (column c, weight row r) */

/* Broadcasts RR consecutive dwords (one per weight row) to all 16 / RR column groups. */
AI __m512i bcast_rows(int RR, const int32_t *p) {
    if (RR == 1) return _mm512_set1_epi32(p[0]);
    if (RR == 2) {
        int64_t v;
        memcpy(&v, p, 8);
        return _mm512_set1_epi64(v);
    }
    return _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)p));
}
AI __m512 bcast_rows_ps(int RR, const float *p) {
    return _mm512_castsi512_ps(bcast_rows(RR, (const int32_t *)p));
}

AI void store_tile(int RR, int P, const __m512 *v, float *out, int out_stride, int nrows) {
    const int C = W / RR;
    float t[W] __attribute__((aligned(64)));
    for (int p = 0; p < P; p++) {
        _mm512_store_ps(t, v[p]);
        for (int r = 0; r < RR && p * RR + r < nrows; r++)
            for (int c = 0; c < C; c++) out[(size_t)(p * RR + r) * out_stride + c] = t[c * RR + r];
    }
}

/* ================================ 32-value block formats ================================ */



/* Block b of RR rows, interleaved: dwords wt[q * RR + r], scales d[r], mins m[r]. */

/* Running sum j (blocks j, j + 8, ...) of P groups of RR rows against one panel. */
AI void q32_lane(int fmt, int RR, int P, int64_t nb, int64_t j, const uint8_t *const *rows,
                 const uint8_t *panel, __m512 *run, ar_prefetcher *pf) {
    const size_t wsz = ar_block_bytes(fmt), rec = AR_Q32_RECORD(W, ar_q32_has_min(fmt));
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) run[p] = _mm512_setzero_ps();
    for (int64_t b = j; b < nb; b += 8) {
        ar_prefetch_step(pf);
        ar_q32_tile t[4];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) ar_q32_tile_load(fmt, RR, rows + p * RR, (size_t)b * wsz, true, &t[p]);
        FORGET_STORES();
        const uint8_t *pb = panel + (size_t)b * rec;
        __m512i s0[4], s1[4];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) s0[p] = s1[p] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int q = 0; q < 8; q += 2) {
            const __m512i a0 = _mm512_load_si512(pb + 64 * q);
            const __m512i a1 = _mm512_load_si512(pb + 64 * q + 64);
#pragma GCC unroll 16
            for (int p = 0; p < P; p++) {
                s0[p] = _mm512_dpbusd_epi32(s0[p], bcast_rows(RR, t[p].wt + q * RR), a0);
                s1[p] = _mm512_dpbusd_epi32(s1[p], bcast_rows(RR, t[p].wt + (q + 1) * RR), a1);
            }
        }
        const __m512i corr = _mm512_load_si512(pb + AR_Q32_CORR(W));
        const __m512 da = _mm512_load_ps(pb + AR_Q32_D(W));
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const __m512i sumi = _mm512_sub_epi32(_mm512_add_epi32(s0[p], s1[p]), corr);
            __m512 term = _mm512_mul_ps(_mm512_mul_ps(bcast_rows_ps(RR, t[p].d), da),
                                        _mm512_cvtepi32_ps(sumi));
            if (ar_q32_has_min(fmt))
                term = _mm512_add_ps(
                    term, _mm512_mul_ps(bcast_rows_ps(RR, t[p].m), _mm512_load_ps(pb + AR_Q32_S(W))));
            run[p] = _mm512_add_ps(run[p], term);
        }
    }
}

/* P groups of RR rows against one panel: the 8 running sums, folded as ar_reduce8:
 * ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)). */
AI void q32_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows,
                 const uint8_t *panel, float *out, int out_stride, int nrows, size_t ws,
                 bool first) {
    const int64_t nb = k / AR_QK;
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, nb, first);
    __m512 a[4];
#define LANE(j, o) q32_lane(fmt, RR, P, nb, j, rows, panel, o, &pf)
    AR_FOLD8(__m512, _mm512_add_ps, P, LANE, a);
#undef LANE
    store_tile(RR, P, a, out, out_stride, nrows);
}

#define Q32_RUNS(sfx, fmt)                                                                         \
    AR_REP_RUN(run_##sfx##_r1, q32_tile, fmt, 1, 4, W)                                             \
    AR_REP_RUN(run_##sfx##_r2, q32_tile, fmt, 2, 4, W)                                             \
    AR_REP_RUN(run_##sfx##_r4, q32_tile, fmt, 4, 2, W)
Q32_RUNS(q4_0, AR_TYPE_Q4_0)
Q32_RUNS(q4_1, AR_TYPE_Q4_1)
Q32_RUNS(q5_0, AR_TYPE_Q5_0)
Q32_RUNS(q5_1, AR_TYPE_Q5_1)
Q32_RUNS(q8_0, AR_TYPE_Q8_0)

/* ================================ K-quants ================================ */



/* Super-block of RR rows, interleaved for the lanes: dword q of row r at wt[q * RR + r], the
 * scales at sc[j * RR + r], the bsum multipliers at pair[k * RR + r]. */

/* P groups of RR rows against one panel; super-block terms go to one running sum, in order. */
AI void qk_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows, const uint8_t *panel,
                float *out, int out_stride, int nrows, size_t ws, bool first) {
    const size_t wsz = ar_block_bytes(fmt);
    const bool per32 = fmt == AR_TYPE_Q4_K || fmt == AR_TYPE_Q5_K;
    const bool has_min = fmt == AR_TYPE_Q2_K || fmt == AR_TYPE_Q4_K || fmt == AR_TYPE_Q5_K;
    const int span = per32 ? 8 : 4; /* dwords per scale */
    __m512 sum[4];
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) sum[p] = _mm512_setzero_ps();
    ar_qk_tile t[4];
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, k / AR_QK_K, first);
    for (int64_t i = 0; i < k / AR_QK_K; i++) {
        ar_prefetch_step(&pf);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) ar_qk_tile_load(fmt, RR, rows + p * RR, (size_t)i * wsz, false, &t[p]);
        FORGET_STORES();
        const uint8_t *pb = panel + (size_t)i * AR_QK_RECORD(W);
        __m512i isum[4], pairs[4];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) isum[p] = pairs[p] = _mm512_setzero_si512();
        for (int sb = 0; sb < 64 / span; sb++) {
            __m512i s0[4], s1[4];
#pragma GCC unroll 16
            for (int p = 0; p < P; p++) s0[p] = s1[p] = _mm512_setzero_si512();
#pragma GCC unroll 16
            for (int q = span * sb; q < span * (sb + 1); q += 2) {
                const __m512i a0 = _mm512_load_si512(pb + 64 * q);
                const __m512i a1 = _mm512_load_si512(pb + 64 * q + 64);
#pragma GCC unroll 16
                for (int p = 0; p < P; p++) {
                    s0[p] = _mm512_dpbusd_epi32(s0[p], bcast_rows(RR, t[p].wt + q * RR), a0);
                    s1[p] = _mm512_dpbusd_epi32(s1[p], bcast_rows(RR, t[p].wt + (q + 1) * RR), a1);
                }
            }
#pragma GCC unroll 16
            for (int p = 0; p < P; p++)
                isum[p] = _mm512_add_epi32(isum[p],
                                           _mm512_mullo_epi32(_mm512_add_epi32(s0[p], s1[p]),
                                                              bcast_rows(RR, t[p].sc + sb * RR)));
        }
#pragma GCC unroll 16
        for (int q = 0; q < 8; q++) {
            const __m512i bs = _mm512_load_si512(pb + AR_QK_BS(W) + 64 * q);
#pragma GCC unroll 16
            for (int p = 0; p < P; p++)
                pairs[p] = _mm512_dpwssd_epi32(pairs[p], bcast_rows(RR, t[p].pair + q * RR), bs);
        }
        const __m512 da = _mm512_load_ps(pb + AR_QK_D(W));
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const __m512 d = _mm512_mul_ps(bcast_rows_ps(RR, t[p].d), da);
            __m512 term;
            if (has_min) {
                /* d * isum - dmin * summs, d = w.d * a.d (Q2_K: a.d * w.d, the same product) */
                const __m512 dmin = _mm512_mul_ps(bcast_rows_ps(RR, t[p].dmin), da);
                term = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[p])),
                                     _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(pairs[p])));
            } else {
                /* the offsets (-4 or -32 times the scaled bsums) belong to the integer sum */
                term = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(isum[p], pairs[p])));
            }
            sum[p] = _mm512_add_ps(sum[p], term);
        }
    }
    store_tile(RR, P, sum, out, out_stride, nrows);
}

#define QK_RUNS(sfx, fmt)                                                                          \
    AR_REP_RUN(run_##sfx##_r1, qk_tile, fmt, 1, 4, W)                                              \
    AR_REP_RUN(run_##sfx##_r2, qk_tile, fmt, 2, 4, W)                                              \
    AR_REP_RUN(run_##sfx##_r4, qk_tile, fmt, 4, 2, W)
QK_RUNS(q2_K, AR_TYPE_Q2_K)
QK_RUNS(q3_K, AR_TYPE_Q3_K)
QK_RUNS(q4_K, AR_TYPE_Q4_K)
QK_RUNS(q5_K, AR_TYPE_Q5_K)
QK_RUNS(q6_K, AR_TYPE_Q6_K)


/* ================================ 16-row kernels ================================
 * (the pieces shared with amx.c are in rows16.h) */

/* The term of block b for the 16 rows and the column whose record is at pb:
 * (d_w * d_a) * sumi [+ m_w * s_a]; the record's corr (-offset * sum of the quants) starts the
 * integer sum. */
AI __m512 rows16_term(ar_type t, const rows16_block *x, const uint8_t *pb) {
    const bool has_min = ar_q32_has_min(t);
    /* two chains of integer sums (exact in any order): half the dependent vpdpbusd latency */
    __m512i s0 = bcast_i32(pb + AR_Q32_CORR(1)), s1 = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int q = 0; q < 8; q += 2) {
        s0 = dp_word(s0, x->w[q], pb + 4 * q);
        s1 = dp_word(s1, x->w[q + 1], pb + 4 * q + 4);
    }
    const __m512i s = _mm512_add_epi32(s0, s1);
    __m512 term = _mm512_mul_ps(_mm512_mul_ps(x->d, bcast_f32(pb + AR_Q32_D(1))),
                                _mm512_cvtepi32_ps(s));
    if (has_min) term = _mm512_add_ps(term, _mm512_mul_ps(x->m, bcast_f32(pb + AR_Q32_S(1))));
    return term;
}

/* 16 rows (32-value formats) against ncols columns. C1: the one-column case, whose 8 running
 * sums stay in registers. */
AI void rows16_q32(ar_type t, bool packed, bool C1, int64_t k, const void *w, size_t w_stride,
                   int nrows, const uint8_t *panel, size_t pstride, int ncols, float *y,
                   size_t ystride, bool add) {
    const int64_t nb = k / AR_QK;
    const size_t rec = AR_Q32_RECORD(1, ar_q32_has_min(t));
    rows16_src src;
    rows16_open(t, packed, w, w_stride, nrows, nb, nb, &src);
    if (C1) {
        __m512 acc[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_ps();
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8)
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                if (!packed) ar_prefetch_step(&src.pf);
                rows16_block x;
                rows16_block_load(t, packed, &src, b + j, &x);
                acc[j] = _mm512_add_ps(acc[j], rows16_term(t, &x, panel + (size_t)(b + j) * pstride));
            }
        for (int j = 0; b + j < nb; j++) {
            rows16_block x;
            rows16_block_load(t, packed, &src, b + j, &x);
            acc[j] = _mm512_add_ps(acc[j], rows16_term(t, &x, panel + (size_t)(b + j) * pstride));
        }
        if (!packed) ar_prefetch_rest(&src.pf);
        const __m512 s = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
            _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])));
        store_rows16(packed, s, y, nrows, add);
        return;
    }
    /* running sum j starts at block j as 0 + its term (the reference's first addition), so the
     * sums are not zeroed in memory first (a memset of up to 8 KB a call) */
    __m512 acc[8][16];
    for (int j = (int)AR_MIN(nb, 8); j < 8; j++)
        for (int c = 0; c < ncols; c++) acc[j][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (!packed) ar_prefetch_step(&src.pf);
        rows16_block x;
        rows16_block_load(t, packed, &src, b, &x);
        __m512 *a = acc[b % 8];
        const uint8_t *pb = panel + (size_t)b * pstride;
        if (b < 8) {
            for (int c = 0; c < ncols; c++, pb += rec)
                a[c] = _mm512_add_ps(_mm512_setzero_ps(), rows16_term(t, &x, pb));
            continue;
        }
        int c = 0;
        /* four columns at a time: four independent chains in view of the scheduler */
        for (; c + 4 <= ncols; c += 4, pb += 4 * rec) {
            const __m512 t0 = rows16_term(t, &x, pb), t1 = rows16_term(t, &x, pb + rec);
            const __m512 t2 = rows16_term(t, &x, pb + 2 * rec), t3 = rows16_term(t, &x, pb + 3 * rec);
            a[c] = _mm512_add_ps(a[c], t0);
            a[c + 1] = _mm512_add_ps(a[c + 1], t1);
            a[c + 2] = _mm512_add_ps(a[c + 2], t2);
            a[c + 3] = _mm512_add_ps(a[c + 3], t3);
        }
        for (; c < ncols; c++, pb += rec) a[c] = _mm512_add_ps(a[c], rows16_term(t, &x, pb));
    }
    if (!packed) ar_prefetch_rest(&src.pf);
    for (int c = 0; c < ncols; c++) {
        const __m512 s = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[0][c], acc[4][c]), _mm512_add_ps(acc[2][c], acc[6][c])),
            _mm512_add_ps(_mm512_add_ps(acc[1][c], acc[5][c]), _mm512_add_ps(acc[3][c], acc[7][c])));
        store_rows16(packed, s, y + (size_t)c * ystride, nrows, add);
    }
}

/* ---- K-quants over packed groups ----
 * Per super-block and 16 rows: the scales as int32 lanes per sub-block, the mins (Q4_K, Q5_K)
 * or the scales (Q6_K) as int16 pairs for the bsums, then per column the exact integer sums and
 * the reference's float term. */

/* The integer dot of 8 value words with the column's quant dwords at a (8 words apart by 4). */
AI __m512i dot8(const __m512i *u, const uint8_t *a) {
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) s = dp_word(s, u[q], a + 4 * q);
    return s;
}
AI __m512i dot4(const __m512i *u, const uint8_t *a) {
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) s = dp_word(s, u[q], a + 4 * q);
    return s;
}

/* The float term of a K-quant super-block for the 16 rows and one column: d * isum [- dmin *
 * summs], d = fp16(w.d) * a.d (the reference's order), into the column's running sum. */
AI __m512 k_term(bool has_min, __m512 d, __m512 dmin, const uint8_t *pb, __m512i isum,
                 __m512i summs) {
    const __m512 da = bcast_f32(pb + AR_QK_D(1));
    const __m512 t1 = _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum));
    if (!has_min) return t1;
    return _mm512_sub_ps(t1, _mm512_mul_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(summs)));
}

/* The bsum pairs of the column's record pb times the 16 rows' int16 pairs p[j]. */
AI __m512i bsum_dot(const __m512i p[8], const uint8_t *pb) {
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) s = _mm512_dpwssd_epi32(s, p[j], bcast_i32(pb + AR_QK_BS(1) + 4 * j));
    return s;
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 values, a 6-bit scale and min each. */
AI void rows16_k4(ar_type t, int64_t k, const void *w, int nrows, const uint8_t *panel,
                  size_t pstride, int ncols, float *y, size_t ystride, bool add) {
    const bool q5 = t == AR_TYPE_Q5_K;
    const int64_t nsb = k / AR_QK_K;
    const size_t wbytes = (size_t)ar_pack_layout_of(t).rest_bytes * 16;
    rows16_src src;
    rows16_open(t, true, w, 0, nrows, nsb, nsb, &src);
    __m512 sum[16];
    for (int c = 0; c < ncols; c++) sum[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *h = src.hs + (size_t)i * 64, *wp = src.ws + (size_t)i * wbytes;
        rows16_prefetch(t, &src, i);
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)h));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(h + 32)));
        __m512i sc[2], mn[2];
        k4_scales_mins(wp, sc, mn);
        __m512i isum[16];
        for (int c = 0; c < ncols; c++) isum[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int ch = 0; ch < 4; ch++) { /* values 64 ch .. 64 ch + 63: sub-blocks 2ch, 2ch + 1 */
            __m512i lo[8], hi[8];
            k4_values(q5, wp, ch, lo, hi);
            const __m512i s_lo = byte_of(sc[ch / 2], 2 * ch, false);
            const __m512i s_hi = byte_of(sc[ch / 2], 2 * ch + 1, false);
            const uint8_t *pb = panel + (size_t)i * pstride + 64 * ch;
            for (int c = 0; c < ncols; c++, pb += AR_QK_RECORD(1)) {
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dot8(lo, pb), s_lo));
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dot8(hi, pb + 32), s_hi));
            }
        }
        __m512i mp[8]; /* (m_j, m_j): the min of 32 values times both its bsums */
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) mp[j] = pair_of(mn[j / 4], j, false);
        const uint8_t *pb = panel + (size_t)i * pstride;
        for (int c = 0; c < ncols; c++, pb += AR_QK_RECORD(1))
            sum[c] = _mm512_add_ps(sum[c], k_term(true, d, dmin, pb, isum[c], bsum_dot(mp, pb)));
    }
    for (int c = 0; c < ncols; c++) store_rows16(true, sum[c], y + (size_t)c * ystride, nrows, add);
}

/* Q6_K: 16 groups of 16 values with signed 8-bit scales; values u - 32, u in [0, 63]. */
AI void rows16_q6_K(int64_t k, const void *w, int nrows, const uint8_t *panel, size_t pstride,
                    int ncols, float *y, size_t ystride, bool add) {
    const int64_t nsb = k / AR_QK_K;
    const size_t wbytes = 52 * 64;
    rows16_src src;
    rows16_open(AR_TYPE_Q6_K, true, w, 0, nrows, nsb, nsb, &src);
    __m512 sum[16];
    for (int c = 0; c < ncols; c++) sum[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *h = src.hs + (size_t)i * 32, *wp = src.ws + (size_t)i * wbytes;
        rows16_prefetch(AR_TYPE_Q6_K, &src, i);
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)h));
        __m512i scw[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) scw[q] = _mm512_load_si512(wp + 64 * (48 + q));
        __m512i isum[16];
        for (int c = 0; c < ncols; c++) isum[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) { /* sub-block s: groups 2 s and 2 s + 1 */
            __m512i u[8];
            q6_values(wp, s, u);
            const __m512i s0 = byte_of(scw[s / 2], 2 * s, true);
            const __m512i s1 = byte_of(scw[s / 2], 2 * s + 1, true);
            const uint8_t *pb = panel + (size_t)i * pstride + 32 * s;
            for (int c = 0; c < ncols; c++, pb += AR_QK_RECORD(1)) {
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dot4(u, pb), s0));
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dot4(u + 4, pb + 16), s1));
            }
        }
        __m512i sp[8]; /* (sc_2j, sc_2j+1): the offset 32 times the scaled bsums */
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) sp[j] = pair_of(scw[j / 2], 2 * j, true);
        const uint8_t *pb = panel + (size_t)i * pstride;
        for (int c = 0; c < ncols; c++, pb += AR_QK_RECORD(1)) {
            const __m512i is = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(bsum_dot(sp, pb), 5));
            sum[c] = _mm512_add_ps(sum[c], k_term(false, d, d, pb, is, is));
        }
    }
    for (int c = 0; c < ncols; c++) store_rows16(true, sum[c], y + (size_t)c * ystride, nrows, add);
}

/* The entry points: one column apart (its running sums in registers), and any number. */
#define ROWS16_Q32(name, t, packed)                                                                \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ncols, float *restrict y,  \
                     size_t ystride, bool add) {                                                   \
        if (ncols == 1)                                                                            \
            rows16_q32(t, packed, true, k, w, w_stride, nrows, panel, pstride, 1, y, ystride, add); \
        else                                                                                       \
            rows16_q32(t, packed, false, k, w, w_stride, nrows, panel, pstride, ncols, y, ystride,  \
                       add);                                                                       \
    }
ROWS16_Q32(inplace_q4_0, AR_TYPE_Q4_0, false)
ROWS16_Q32(inplace_q4_1, AR_TYPE_Q4_1, false)
ROWS16_Q32(inplace_q8_0, AR_TYPE_Q8_0, false)
ROWS16_Q32(packed_q4_0, AR_TYPE_Q4_0, true)
ROWS16_Q32(packed_q4_1, AR_TYPE_Q4_1, true)
ROWS16_Q32(packed_q5_0, AR_TYPE_Q5_0, true)
ROWS16_Q32(packed_q5_1, AR_TYPE_Q5_1, true)
ROWS16_Q32(packed_q8_0, AR_TYPE_Q8_0, true)

static void packed_q4_K(int64_t k, const void *restrict w, size_t w_stride, int nrows,
                        const uint8_t *restrict panel, size_t pstride, int ncols,
                        float *restrict y, size_t ystride, bool add) {
    (void)w_stride;
    rows16_k4(AR_TYPE_Q4_K, k, w, nrows, panel, pstride, ncols, y, ystride, add);
}
static void packed_q5_K(int64_t k, const void *restrict w, size_t w_stride, int nrows,
                        const uint8_t *restrict panel, size_t pstride, int ncols,
                        float *restrict y, size_t ystride, bool add) {
    (void)w_stride;
    rows16_k4(AR_TYPE_Q5_K, k, w, nrows, panel, pstride, ncols, y, ystride, add);
}
static void packed_q6_K(int64_t k, const void *restrict w, size_t w_stride, int nrows,
                        const uint8_t *restrict panel, size_t pstride, int ncols,
                        float *restrict y, size_t ystride, bool add) {
    (void)w_stride;
    rows16_q6_K(k, w, nrows, panel, pstride, ncols, y, ystride, add);
}

/* ================================ the tables ================================ */

/* the float kernels need no VNNI */
#define REP_PATH "avx512"
static const ar_gemm_kernel k_f32 = AR_FLOAT_KERNEL(AR_TYPE_F32, run_f32, 4);
static const ar_gemm_kernel k_f16 = AR_FLOAT_KERNEL(AR_TYPE_F16, run_f16, 4);
static const ar_gemm_kernel k_bf16 = AR_FLOAT_KERNEL(AR_TYPE_BF16, run_bf16, 4);
#undef REP_PATH
#define REP_PATH "avx512vnni"
#define REP_MAX_ROWS(rr) ((rr) == 4 ? 8 : 4 * (rr))
AR_REP_SET32(q4_0, 8, false)
AR_REP_SET32(q4_1, 0, true)
AR_REP_SET32(q5_0, 16, false)
AR_REP_SET32(q5_1, 0, true)
AR_REP_SET32(q8_0, 128, false)
AR_REP_SETK(q2_K)
AR_REP_SETK(q3_K)
AR_REP_SETK(q4_K)
AR_REP_SETK(q5_K)
AR_REP_SETK(q6_K)

/* 16-row kernels: panels of 16 columns' width-1 records, whose corr is -offset * sum(q) (the
 * integer sums' start) */
#define R16KERNEL(fn, kind, a, c, s)                                                               \
    {                                                                                              \
        .path = "avx512vnni", .panel = kind, .act = a, .width = 1, .rep = 1, .lanes = 16,          \
        .max_rows = 16, .max_groups = 1, .corr = c, .with_s = s, .rows16 = fn                      \
    }
static const ar_gemm_kernel g_q4_0 = R16KERNEL(inplace_q4_0, AR_PANEL_Q32, AR_TYPE_Q8_0, -8, false);
static const ar_gemm_kernel g_q4_1 = R16KERNEL(inplace_q4_1, AR_PANEL_Q32, AR_TYPE_Q8_1, 0, true);
static const ar_gemm_kernel g_q8_0 = R16KERNEL(inplace_q8_0, AR_PANEL_Q32, AR_TYPE_Q8_0, -128, false);
static const ar_gemm_kernel p_q4_0 = R16KERNEL(packed_q4_0, AR_PANEL_Q32, AR_TYPE_Q8_0, -8, false);
static const ar_gemm_kernel p_q4_1 = R16KERNEL(packed_q4_1, AR_PANEL_Q32, AR_TYPE_Q8_1, 0, true);
static const ar_gemm_kernel p_q5_0 = R16KERNEL(packed_q5_0, AR_PANEL_Q32, AR_TYPE_Q8_0, -16, false);
static const ar_gemm_kernel p_q5_1 = R16KERNEL(packed_q5_1, AR_PANEL_Q32, AR_TYPE_Q8_1, 0, true);
static const ar_gemm_kernel p_q8_0 = R16KERNEL(packed_q8_0, AR_PANEL_Q32, AR_TYPE_Q8_0, -128, false);
static const ar_gemm_kernel p_q4_K = R16KERNEL(packed_q4_K, AR_PANEL_QK, AR_TYPE_Q8_K, 0, false);
static const ar_gemm_kernel p_q5_K = R16KERNEL(packed_q5_K, AR_PANEL_QK, AR_TYPE_Q8_K, 0, false);
static const ar_gemm_kernel p_q6_K = R16KERNEL(packed_q6_K, AR_PANEL_QK, AR_TYPE_Q8_K, 0, false);


const ar_kernel_table ar_kernels_avx512 = {
    .level = AR_SIMD_AVX512,
    .path = "avx512",
    .rows = {
        [AR_TYPE_F32] = {.dot = dot_f32, .rep = {&k_f32}},
        [AR_TYPE_F16] = {.dot = dot_f16, .rep = {&k_f16}},
        [AR_TYPE_BF16] = {.dot = dot_bf16, .rep = {&k_bf16}},
    }};

const ar_kernel_table ar_kernels_avx512vnni = {
    .level = AR_SIMD_AVX512VNNI,
    .path = "avx512vnni",
    .rows = {
        [AR_TYPE_Q4_0] = {.dot = dot_q4_0, AR_REP3(q4_0), .inplace = &g_q4_0,
                          .packed = &p_q4_0},
        [AR_TYPE_Q4_1] = {.dot = dot_q4_1, AR_REP3(q4_1), .inplace = &g_q4_1,
                          .packed = &p_q4_1},
        [AR_TYPE_Q5_0] = {.dot = dot_q5_0, AR_REP3(q5_0), .packed = &p_q5_0},
        [AR_TYPE_Q5_1] = {.dot = dot_q5_1, AR_REP3(q5_1), .packed = &p_q5_1},
        [AR_TYPE_Q8_0] = {.dot = dot_q8_0, AR_REP3(q8_0), .inplace = &g_q8_0,
                          .packed = &p_q8_0},
        [AR_TYPE_Q2_K] = {.dot = dot_q2_K, AR_REP3(q2_K)},
        [AR_TYPE_Q3_K] = {.dot = dot_q3_K, AR_REP3(q3_K)},
        [AR_TYPE_Q4_K] = {.dot = dot_q4_K, AR_REP3(q4_K), .packed = &p_q4_K},
        [AR_TYPE_Q5_K] = {.dot = dot_q5_K, AR_REP3(q5_K), .packed = &p_q5_K},
        [AR_TYPE_Q6_K] = {.dot = dot_q6_K, AR_REP3(q6_K), .packed = &p_q6_K},
    }};

#else
const ar_kernel_table ar_kernels_avx512 = {.level = AR_SIMD_AVX512, .path = "avx512"};
const ar_kernel_table ar_kernels_avx512vnni = {.level = AR_SIMD_AVX512VNNI, .path = "avx512vnni"};
#endif
