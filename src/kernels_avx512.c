/* kernels_avx512.c: AVX-512 dot products. The float ones (F32, F16, BF16) need AVX-512 F/BW/VL/DQ;
 * the quantized ones also VNNI (vpdpbusd / vpdpwssd: 8-bit and 16-bit products summed into 32 bits
 * without saturation). Each returns exactly the bits of the scalar reference in quants.c (the float
 * order is fixed in quants.h). Called only when ar_cpu() reports those instruction sets; unaligned
 * and masked loads throughout, so results never depend on where the data sits. */
#include "quants.h"

#if defined(__x86_64__) || defined(__i386__)

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
void ar_vec_dot_f32_avx512(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_f16_avx512(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_bf16_avx512(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q8_0_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q8_0), a, sizeof(ar_block_q8_0), false,
                         block_q8_0);
}
void ar_vec_dot_q4_0_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q4_0), a, sizeof(ar_block_q8_0), false,
                         block_q4_0);
}
void ar_vec_dot_q4_1_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q4_1), a, sizeof(ar_block_q8_1), true,
                         block_q4_1);
}
void ar_vec_dot_q5_0_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q5_0), a, sizeof(ar_block_q8_0), false,
                         block_q5_0);
}
void ar_vec_dot_q5_1_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q2_K_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q3_K_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q4_K_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    const ar_block_q4_K *x = w;
    const ar_block_q8_K *y = a;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        __m256i s16;
        const int summs = scales_mins_k4(x[i].scales, y[i].bsums, &s16);
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(x[i].qs + 32 * c);
            const __m512i u = _mm512_and_si512(join(q, _mm256_srli_epi16(q, 4)), m4);
            acc = add_scaled(acc, u, y[i].qs + 64 * c, scales_by32(s16, 2 * c));
        }
        const int isum = _mm512_reduce_add_epi32(acc);
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        const float dmin = ar_half_to_float(x[i].dmin) * y[i].d;
        sum += d * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

void ar_vec_dot_q5_K_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
                                const void *restrict a) {
    const ar_block_q5_K *x = w;
    const ar_block_q8_K *y = a;
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        __m256i s16;
        const int summs = scales_mins_k4(x[i].scales, y[i].bsums, &s16);
        const __m256i qh = load32(x[i].qh);
        __m512i h = join(qh, _mm256_srli_epi16(qh, 1)); /* bits 2c, 2c+1 at bit 0 */
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(x[i].qs + 32 * c);
            const __m512i u =
                _mm512_or_si512(_mm512_and_si512(join(q, _mm256_srli_epi16(q, 4)), m4),
                                _mm512_slli_epi16(_mm512_and_si512(h, one), 4));
            acc = add_scaled(acc, u, y[i].qs + 64 * c, scales_by32(s16, 2 * c));
            h = _mm512_srli_epi16(h, 2);
        }
        const int isum = _mm512_reduce_add_epi32(acc);
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        const float dmin = ar_half_to_float(x[i].dmin) * y[i].d;
        sum += d * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

void ar_vec_dot_q6_K_avx512vnni(int64_t n, float *restrict s, const void *restrict w,
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

#endif
