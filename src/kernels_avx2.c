/* kernels_avx2.c: AVX2 (+FMA, F16C) dot products. Each returns exactly the bits of the scalar
 * reference in quants.c (the float order is fixed in quants.h); integer block sums use
 * maddubs/madd, whose 16-bit pair sums cannot saturate for the operand ranges used here.
 * Called only when ar_cpu() reports AVX2, FMA and F16C. Unaligned loads throughout: results never
 * depend on where the data sits. */
#include "quants.h"

#if defined(__x86_64__) || defined(__i386__)

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
void ar_vec_dot_f32_avx2(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_f16_avx2(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_bf16_avx2(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q8_0_avx2(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q8_0), a, sizeof(ar_block_q8_0), false,
                         block_q8_0);
}
void ar_vec_dot_q4_0_avx2(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q4_0), a, sizeof(ar_block_q8_0), false,
                         block_q4_0);
}
void ar_vec_dot_q4_1_avx2(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q4_1), a, sizeof(ar_block_q8_1), true,
                         block_q4_1);
}
void ar_vec_dot_q5_0_avx2(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    *s = ar_dot_blocks32(n / AR_QK, w, sizeof(ar_block_q5_0), a, sizeof(ar_block_q8_0), false,
                         block_q5_0);
}
void ar_vec_dot_q5_1_avx2(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q2_K_avx2(int64_t n, float *restrict s, const void *restrict w,
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
void ar_vec_dot_q3_K_avx2(int64_t n, float *restrict s, const void *restrict w,
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

void ar_vec_dot_q4_K_avx2(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    const ar_block_q4_K *x = w;
    const ar_block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        uint8_t sc[16];
        const int summs = scales_mins_k4(x[i].scales, y[i].bsums, sc);
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(x[i].qs + 32 * c);
            const int8_t *q8 = y[i].qs + 64 * c;
            acc = add_scaled(acc, _mm256_and_si256(q, m4), q8, _mm256_set1_epi16(sc[2 * c]));
            acc = add_scaled(acc, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), q8 + 32,
                             _mm256_set1_epi16(sc[2 * c + 1]));
        }
        const int isum = ar_mm256_hsum_epi32(acc);
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        const float dmin = ar_half_to_float(x[i].dmin) * y[i].d;
        sum += d * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

void ar_vec_dot_q5_K_avx2(int64_t n, float *restrict s, const void *restrict w,
                          const void *restrict a) {
    const ar_block_q5_K *x = w;
    const ar_block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1), two = _mm256_set1_epi8(2);
    float sum = 0;
    for (int64_t i = 0; i < n / AR_QK_K; i++) {
        uint8_t sc[16];
        const int summs = scales_mins_k4(x[i].scales, y[i].bsums, sc);
        __m256i acc = _mm256_setzero_si256();
        __m256i hm = load32(x[i].qh);
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(x[i].qs + 32 * c);
            const int8_t *q8 = y[i].qs + 64 * c;
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
                                               _mm256_slli_epi16(_mm256_and_si256(hm, one), 4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(hm, two), 3));
            acc = add_scaled(acc, lo, q8, _mm256_set1_epi16(sc[2 * c]));
            acc = add_scaled(acc, hi, q8 + 32, _mm256_set1_epi16(sc[2 * c + 1]));
            hm = _mm256_srli_epi16(hm, 2);
        }
        const int isum = ar_mm256_hsum_epi32(acc);
        const float d = ar_half_to_float(x[i].d) * y[i].d;
        const float dmin = ar_half_to_float(x[i].dmin) * y[i].d;
        sum += d * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

/* Q6_K: u = 4 low bits + 2 high bits in [0, 63], value u - 32; the -32 goes through bsums. */
void ar_vec_dot_q6_K_avx2(int64_t n, float *restrict s, const void *restrict w,
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

#endif
