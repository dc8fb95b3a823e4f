/* attn_avx2.c: AVX2 attention for one query row and the query heads sharing one KV head
 * (contract in kernels.h; the method of attn_avx512.c with 8 lanes). Head dimensions that
 * are not a multiple of 8 (or above 256) take the portable code. */
#include <math.h>

#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)

#define AI static inline __attribute__((always_inline))
/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */

static inline float hsum8(__m256 v) {
    return ar_mm256_reduce8(v);
}
static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

AI __m256 load_kv(bool f16, const uint8_t *p, int v) {
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + 8 * v)));
    return _mm256_loadu_ps((const float *)p + 8 * v);
}

/* hd = 8 * NV */
AI void attn_nv(const ar_attn_args *a, const int NV) {
    const int hd = a->hd, G = a->group;
    const int32_t n = a->n;
    float inv[64];
    for (int32_t t = 0; t < n; t++) {
        const uint8_t *kp = a->k + (size_t)a->cells[t] * a->cell_bytes + a->head_offset;
        __m256 kv[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                        _mm256_setzero_ps()};
        for (int g = 0; g < G; g++) {
            const float *q = a->q + (size_t)g * hd;
            __m256 acc = _mm256_setzero_ps();
            for (int v0 = 0; v0 < NV; v0 += 4) { /* K reloaded per head: 16 registers */
#pragma GCC unroll 16
                for (int v = 0; v < 4; v++)
                    if (v0 + v < NV) kv[v] = load_kv(a->f16, kp, v0 + v);
#pragma GCC unroll 16
                for (int v = 0; v < 4; v++)
                    if (v0 + v < NV)
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * (v0 + v)), kv[v], acc);
            }
            a->scores[(size_t)g * n + t] = hsum8(acc) * a->scale;
        }
    }
    if (a->softcap > 0.0f) ar_softcap_row(a->scores, (int64_t)G * n, a->softcap);
    for (int g = 0; g < G; g++) {
        float *s = a->scores + (size_t)g * n;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        int32_t t = 0;
        for (; t + 8 <= n; t += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + t));
        float m = hmax8(mx);
        for (int32_t u = t; u < n; u++) m = s[u] > m ? s[u] : m;
        const __m256 mv = _mm256_set1_ps(m);
        __m256 sum = _mm256_setzero_ps();
        for (t = 0; t + 8 <= n; t += 8) {
            const __m256 e = ar_mm256_exp(_mm256_sub_ps(_mm256_loadu_ps(s + t), mv));
            _mm256_storeu_ps(s + t, e);
            sum = _mm256_add_ps(sum, e);
        }
        if (t < n) {
            float buf[8] = {0};
            memcpy(buf, s + t, sizeof(float) * (size_t)(n - t));
            const __m256 e = ar_mm256_exp(_mm256_sub_ps(_mm256_loadu_ps(buf), mv));
            const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            const __m256 keep =
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - t), lane));
            _mm256_storeu_ps(buf, e);
            memcpy(s + t, buf, sizeof(float) * (size_t)(n - t));
            sum = _mm256_add_ps(sum, _mm256_and_ps(keep, e));
        }
        inv[g] = 1.0f / hsum8(sum);
    }
    /* 2 heads x 4 vectors (32 values) of accumulators at a time */
    for (int v0 = 0; v0 < NV; v0 += 4) {
        const int nv = AR_MIN(4, NV - v0);
        for (int h0 = 0; h0 < G; h0 += 2) {
            const int hc = AR_MIN(2, G - h0);
            __m256 acc[2][4];
#pragma GCC unroll 16
            for (int h = 0; h < 2; h++)
#pragma GCC unroll 16
                for (int v = 0; v < 4; v++) acc[h][v] = _mm256_setzero_ps();
            for (int32_t t = 0; t < n; t++) {
                const uint8_t *vp = a->v + (size_t)a->cells[t] * a->cell_bytes + a->head_offset;
                __m256 vv[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                                _mm256_setzero_ps()};
#pragma GCC unroll 16
                for (int v = 0; v < 4; v++)
                    if (v < nv) vv[v] = load_kv(a->f16, vp, v0 + v);
#pragma GCC unroll 16
                for (int h = 0; h < 2; h++) {
                    if (h >= hc) break;
                    const __m256 p =
                        _mm256_set1_ps(a->scores[(size_t)(h0 + h) * n + t] * inv[h0 + h]);
#pragma GCC unroll 16
                    for (int v = 0; v < 4; v++)
                        if (v < nv) acc[h][v] = _mm256_fmadd_ps(p, vv[v], acc[h][v]);
                }
            }
            for (int h = 0; h < hc; h++)
                for (int v = 0; v < nv; v++)
                    _mm256_storeu_ps(a->out + (size_t)(h0 + h) * hd + 8 * (v0 + v), acc[h][v]);
        }
    }
}

void ar_attn_avx2(const ar_attn_args *a) {
    if (a->hd % 8 || a->hd > 256 || a->group > 64) {
        ar_attn_scalar(a);
        return;
    }
    switch (a->hd / 8) {
    case 1:
        attn_nv(a, 1);
        break;
    case 2:
        attn_nv(a, 2);
        break;
    case 4:
        attn_nv(a, 4);
        break;
    case 8:
        attn_nv(a, 8);
        break;
    case 16:
        attn_nv(a, 16);
        break;
    default:
        attn_nv(a, a->hd / 8);
        break;
    }
}

#endif
