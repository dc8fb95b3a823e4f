/* kernels_act_avx512.c: AVX-512 activation rounding (Q8_0, Q8_1, Q8_K rows) and fp32 -> fp16
 * rows. Each writes exactly the bytes of the scalar code in quants.c / util.c: the same float
 * operations (|x| maxima are order-free, x * scale is one product, rounding is to nearest even as
 * ar_nearest_int and the F16C instructions do). Rows holding a NaN or an infinity go to the
 * scalar code, whose handling of them is not worth reproducing lane by lane. */
#include <math.h>

#include "quants.h"

#if defined(__x86_64__) || defined(__i386__)

static inline bool all_finite(const float *x, int64_t n) {
    __mmask16 bad = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) bad |= _mm512_fpclass_ps_mask(_mm512_loadu_ps(x + i), 0x99);
    if (i < n)
        bad |= _mm512_fpclass_ps_mask(
            _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i), 0x99);
    return bad == 0;
}

static inline __m512 abs16(__m512 v) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

/* round(v * id) to nearest even, clamped to [-127, 127] */
static inline __m512i round_clamp(__m512 v, __m512 id) {
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
    return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
}

/* One 32-value block as llama.cpp's x86 quantize_row_q8_0/q8_1: d = amax / 127, quants
 * round(x * (127 / amax)); returns d and the quants' sum. */
/* false when 127 / amax overflows (a subnormal amax): the scalar code's products are then
 * infinities and NaNs, left to it */
static inline bool q8_block(const float *x, int8_t *qs, int *sum, float *dout) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(abs16(v0), abs16(v1)));
    const float d = amax / 127.f, idf = amax != 0.0f ? 127.f / amax : 0.0f;
    if (idf - idf != 0.0f) return false;
    const __m512 id = _mm512_set1_ps(idf);
    const __m512i q0 = round_clamp(v0, id), q1 = round_clamp(v1, id);
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(q1));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
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

/* Q8_K: d = 1 / iscale, iscale = -127 / max, max the first value of largest magnitude. */
static bool quantize_q8_K(const float *restrict x, void *restrict dst, int64_t n) {
    ar_block_q8_K *y = dst;
    for (int64_t b = 0; b < n / AR_QK_K; b++, x += AR_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < AR_QK_K; i += 16) m = _mm512_max_ps(m, abs16(_mm512_loadu_ps(x + i)));
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = 0;
        for (int i = 0; i < AR_QK_K; i += 16) {
            const __mmask16 hit =
                _mm512_cmp_ps_mask(abs16(_mm512_loadu_ps(x + i)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (hit) {
                max = x[i + __builtin_ctz(hit)];
                break;
            }
        }
        const float iscale = -127.f / max;
        if (iscale - iscale != 0.0f) return false; /* a subnormal max: see q8_block */
        const __m512 is = _mm512_set1_ps(iscale);
        for (int g = 0; g < 16; g++) {
            const __m512i q = round_clamp(_mm512_loadu_ps(x + 16 * g), is);
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
            y[b].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[b].d = 1 / iscale;
    }
    return true;
}

void ar_quantize_row_avx512(ar_type vdt, const float *restrict x, void *restrict dst, int64_t n) {
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

/* ar_fp32_to_fp16: F16C rounding (to nearest even, subnormals and overflow included), with NaNs
 * made the scalar code's quiet NaN (sign | 0x7e00). */
void ar_fp32_to_fp16_row_avx512(const float *restrict x, uint16_t *restrict dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        const __mmask16 nan = _mm512_fpclass_ps_mask(v, 0x81);
        if (nan) {
            const __m256i sign = _mm256_and_si256(h, _mm256_set1_epi16((short)0x8000));
            h = _mm256_mask_blend_epi16(nan, h, _mm256_or_si256(sign, _mm256_set1_epi16(0x7e00)));
        }
        _mm256_storeu_si256((__m256i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = ar_fp32_to_fp16(x[i]);
}

/* ---- RMSNorm, SwiGLU ---- */

void ar_rmsnorm_row_avx512(float *restrict o, const float *restrict x, const float *restrict g,
                           int n, float eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i), sq = _mm512_mul_ps(v, v);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(sq, 1)));
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i), sq = _mm512_mul_ps(v, v);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(sq, 1)));
    }
    const float mean = (float)(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / n);
    const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(mean + eps));
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), scale),
                                              _mm512_loadu_ps(g + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(o + i, m,
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale),
                                            _mm512_maskz_loadu_ps(m, g + i)));
    }
}

static inline __m512 swiglu16(__m512 g, __m512 u) {
    const __m512 e = ar_mm512_exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void ar_swiglu_row_avx512(float *restrict g, const float *restrict u, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(g + i, swiglu16(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(
            g + i, m, swiglu16(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, u + i)));
    }
}

#endif
