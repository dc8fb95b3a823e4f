/* act_avx2.c: AVX2 activation rounding (Q8_0, Q8_1, Q8_K rows), fp32 -> fp16 rows (used on
 * AVX-512 CPUs too), RMSNorm and SwiGLU rows. The rounding writes exactly the bytes of the scalar
 * code in quants.c / util.c: the same float operations (|x| maxima are order-free, x * scale is
 * one product, rounding is to nearest even as ar_nearest_int and the F16C instructions do). Rows
 * holding a NaN or an infinity go to the scalar code, whose handling of them is not worth
 * reproducing lane by lane. */
#include <math.h>

#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)

static inline bool all_finite(const float *x, int64_t n) {
    __m256 bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        bad =
            _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ));
    }
    for (; i < n; i++)
        if (x[i] - x[i] != 0.0f) return false;
    return _mm256_movemask_ps(bad) == 0;
}

static inline __m256 abs8(__m256 v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}
static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
static inline int hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* round(v * id) to nearest even, clamped to [-127, 127] */
static inline __m256i round_clamp(__m256 v, __m256 id) {
    const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v, id));
    return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
}

/* 32 int32 (in [-127, 127]) to 32 bytes, in order */
static inline void store32(int8_t *dst, const __m256i q[4]) {
    const __m256i a = _mm256_packs_epi32(q[0], q[1]), b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i c = _mm256_packs_epi16(a, b); /* lanes: 0-3 8-11 16-19 24-27 | 4-7 ... */
    _mm256_storeu_si256((__m256i *)dst,
                        _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* false when 127 / amax overflows (a subnormal amax): the scalar code's products are then
 * infinities and NaNs, left to it */
static inline bool q8_block(const float *x, int8_t *qs, int *sum, float *dout) {
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(m, abs8(v[i]));
    }
    const float amax = hmax8(m);
    const float d = amax / 127.f, idf = amax != 0.0f ? 127.f / amax : 0.0f;
    if (idf - idf != 0.0f) return false;
    const __m256 id = _mm256_set1_ps(idf);
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = round_clamp(v[i], id);
    store32(qs, q);
    *sum = hsum8(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    *dout = d;
    return true;
}

static inline ar_half to_half(float f) {
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static bool quantize_q8_0(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_0 *y = dst;
    for (int64_t b = 0; b < n / AR_QK; b++) {
        int sum;
        float d;
        if (!q8_block(x + b * AR_QK, y[b].qs, &sum, &d)) return false;
        y[b].d = to_half(d);
    }
    return true;
}

static bool quantize_q8_1(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_1 *y = dst;
    for (int64_t b = 0; b < n / AR_QK; b++) {
        int sum;
        float d;
        if (!q8_block(x + b * AR_QK, y[b].qs, &sum, &d)) return false;
        y[b].d = to_half(d);
        y[b].s = to_half(d * (float)sum);
    }
    return true;
}

static bool quantize_q8_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_K *y = dst;
    for (int64_t b = 0; b < n / AR_QK_K; b++, x += AR_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < AR_QK_K; i += 8) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + i)));
        const float amax = hmax8(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = 0;
        for (int i = 0; i < AR_QK_K; i += 8) {
            const int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(abs8(_mm256_loadu_ps(x + i)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hit) {
                max = x[i + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.f / max;
        if (iscale - iscale != 0.0f) return false; /* a subnormal max: see q8_block */
        const __m256 is = _mm256_set1_ps(iscale);
        for (int g = 0; g < 8; g++) {
            __m256i q[4];
            for (int i = 0; i < 4; i++) q[i] = round_clamp(_mm256_loadu_ps(x + 32 * g + 8 * i), is);
            store32(y[b].qs + 32 * g, q);
            y[b].bsums[2 * g] = (int16_t)hsum8(_mm256_add_epi32(q[0], q[1]));
            y[b].bsums[2 * g + 1] = (int16_t)hsum8(_mm256_add_epi32(q[2], q[3]));
        }
        y[b].d = 1 / iscale;
    }
    return true;
}

void ar_quantize_row_avx2(ar_type vdt, const float *restrict x, void *restrict dst, int64_t n) {
    if (!all_finite(x, n)) {
        ar_quantize_row(vdt, x, dst, n);
        return;
    }
    bool done = false;
    switch (vdt) {
    case AR_TYPE_Q8_0:
        done = quantize_q8_0(x, dst, n);
        break;
    case AR_TYPE_Q8_1:
        done = quantize_q8_1(x, dst, n);
        break;
    case AR_TYPE_Q8_K:
        done = quantize_q8_K(x, dst, n);
        break;
    default:
        break;
    }
    if (!done) ar_quantize_row(vdt, x, dst, n);
}

/* ar_fp32_to_fp16 via F16C, NaNs made the scalar code's quiet NaN (sign | 0x7e00). */
void ar_fp32_to_fp16_row_avx2(const float *restrict x, uint16_t *restrict dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        const int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        if (nan) {
            const __m128i m = _mm_packs_epi32(
                _mm256_castsi256_si128(_mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))),
                _mm256_extracti128_si256(_mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)),
                                         1));
            const __m128i q = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16((short)0x8000)),
                                           _mm_set1_epi16(0x7e00));
            h = _mm_blendv_epi8(h, q, m);
        }
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = ar_fp32_to_fp16(x[i]);
}

/* ---- RMSNorm, SwiGLU (tails through zero-padded copies: the same arithmetic) ---- */

void ar_rmsnorm_row_avx2(float *restrict o, const float *restrict x, const float *restrict g, int n,
                         float eps) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    float xb[8] = {0}, gb[8] = {0};
    if (i < n) {
        memcpy(xb, x + i, sizeof(float) * (size_t)(n - i));
        memcpy(gb, g + i, sizeof(float) * (size_t)(n - i));
        const __m256 v = _mm256_loadu_ps(xb), sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    const __m256d s = _mm256_add_pd(s0, s1);
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    const double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    const float mean = (float)(ss / n);
    const __m256 scale = _mm256_set1_ps(1.0f / sqrtf(mean + eps));
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), scale),
                                              _mm256_loadu_ps(g + j)));
    if (j < n) {
        float ob[8];
        _mm256_storeu_ps(
            ob, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xb), scale), _mm256_loadu_ps(gb)));
        memcpy(o + j, ob, sizeof(float) * (size_t)(n - j));
    }
}

static inline __m256 swiglu8(__m256 g, __m256 u) {
    const __m256 e = ar_mm256_exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

void ar_swiglu_row_avx2(float *restrict g, const float *restrict u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        float gb[8] = {0}, ub[8] = {0};
        memcpy(gb, g + i, sizeof(float) * (size_t)(n - i));
        memcpy(ub, u + i, sizeof(float) * (size_t)(n - i));
        _mm256_storeu_ps(gb, swiglu8(_mm256_loadu_ps(gb), _mm256_loadu_ps(ub)));
        memcpy(g + i, gb, sizeof(float) * (size_t)(n - i));
    }
}

#endif
