/* attn_avx512.c: AVX-512 attention for one query row and the query heads sharing one KV
 * head (contract in kernels.h). Each visible cell's K and V are loaded (and widened from F16) once
 * for all heads of the group. Scores are FMA dot products over the head dimension reduced by a
 * fixed tree; the softmax uses a polynomial exp (Cephes' expf coefficients, about 1 ulp); values
 * are accumulated cell by cell in position order. Nothing depends on the other rows. */
#include <math.h>

#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)

#define AI static inline __attribute__((always_inline))
/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */
#define MAX_GROUP 64

/* Vector v (16 values) of a head of hd values, the last one masked to the head. */
AI __m512 load_kv(bool f16, const uint8_t *p, int v, bool last, __mmask16 m) {
    if (f16) {
        const uint16_t *h = (const uint16_t *)p + 16 * v;
        return _mm512_cvtph_ps(last ? _mm256_maskz_loadu_epi16(m, h)
                                    : _mm256_loadu_si256((const __m256i *)h));
    }
    const float *f = (const float *)p + 16 * v;
    return last ? _mm512_maskz_loadu_ps(m, f) : _mm512_loadu_ps(f);
}
AI __m512 load_q(const float *q, int v, bool last, __mmask16 m) {
    return last ? _mm512_maskz_loadu_ps(m, q + 16 * v) : _mm512_loadu_ps(q + 16 * v);
}

AI void attn_nv(const ar_attn_args *a, const int NV) {
    const int hd = a->hd, G = a->group;
    const int32_t n = a->n;
    const __mmask16 tail = (__mmask16)((1u << (hd - 16 * (NV - 1))) - 1);
    float inv[MAX_GROUP];

    /* scores, and each head's maximum */
    __m512 kv[8];
    const size_t head_bytes = (size_t)hd * (a->f16 ? 2 : 4);
    for (int32_t t = 0; t < n; t++) {
        const uint8_t *kp = a->k + (size_t)a->cells[t] * a->cell_bytes + a->head_offset;
        if (t + 8 < n) { /* cells are scattered rows of the cache: fetch ahead */
            const uint8_t *ahead = a->k + (size_t)a->cells[t + 8] * a->cell_bytes + a->head_offset;
            for (size_t off = 0; off < head_bytes; off += 64)
                _mm_prefetch((const char *)ahead + off, _MM_HINT_T0);
        }
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) kv[v] = load_kv(a->f16, kp, v, v == NV - 1, tail);
        for (int g = 0; g < G; g++) {
            const float *q = a->q + (size_t)g * hd;
            __m512 acc = _mm512_mul_ps(load_q(q, 0, NV == 1, tail), kv[0]);
#pragma GCC unroll 16
            for (int v = 1; v < NV; v++)
                acc = _mm512_fmadd_ps(load_q(q, v, v == NV - 1, tail), kv[v], acc);
            a->scores[(size_t)g * n + t] = _mm512_reduce_add_ps(acc) * a->scale;
        }
    }
    if (a->softcap > 0.0f) ar_softcap_row(a->scores, (int64_t)G * n, a->softcap);

    /* softmax: e = exp(s - max) in place, inv = 1 / sum(e) (16 partial sums, a fixed tree) */
    for (int g = 0; g < G; g++) {
        float *s = a->scores + (size_t)g * n;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        int32_t t = 0;
        for (; t + 16 <= n; t += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + t));
        const __mmask16 rest = (__mmask16)((1u << (n - t)) - 1);
        if (t < n) mx = _mm512_mask_max_ps(mx, rest, mx, _mm512_maskz_loadu_ps(rest, s + t));
        const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (t = 0; t + 16 <= n; t += 16) {
            const __m512 e = ar_mm512_exp(_mm512_sub_ps(_mm512_loadu_ps(s + t), m));
            _mm512_storeu_ps(s + t, e);
            sum = _mm512_add_ps(sum, e);
        }
        if (t < n) {
            const __m512 e = ar_mm512_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(rest, s + t), m));
            _mm512_mask_storeu_ps(s + t, rest, e);
            sum = _mm512_mask_add_ps(sum, rest, sum, e);
        }
        inv[g] = 1.0f / _mm512_reduce_add_ps(sum);
    }

    /* out_h = sum over cells of (e * inv) * v, cell by cell; as many heads at once as 16
     * accumulators allow, each cell's V loaded once per such chunk */
    const int HC = NV >= 16 ? 1 : 16 / NV;
    for (int h0 = 0; h0 < G; h0 += HC) {
        const int hc = AR_MIN(HC, G - h0);
        __m512 acc[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int32_t t = 0; t < n; t++) {
            const uint8_t *vp = a->v + (size_t)a->cells[t] * a->cell_bytes + a->head_offset;
            if (t + 8 < n) {
                const uint8_t *ahead =
                    a->v + (size_t)a->cells[t + 8] * a->cell_bytes + a->head_offset;
                for (size_t off = 0; off < head_bytes; off += 64)
                    _mm_prefetch((const char *)ahead + off, _MM_HINT_T0);
            }
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) kv[v] = load_kv(a->f16, vp, v, v == NV - 1, tail);
#pragma GCC unroll 16
            for (int h = 0; h < HC; h++) {
                if (h >= hc) break;
                const __m512 p = _mm512_set1_ps(a->scores[(size_t)(h0 + h) * n + t] * inv[h0 + h]);
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    acc[h * NV + v] = _mm512_fmadd_ps(p, kv[v], acc[h * NV + v]);
            }
        }
        for (int h = 0; h < hc; h++) {
            float *o = a->out + (size_t)(h0 + h) * hd;
            for (int v = 0; v < NV; v++) {
                if (v == NV - 1)
                    _mm512_mask_storeu_ps(o + 16 * v, tail, acc[h * NV + v]);
                else
                    _mm512_storeu_ps(o + 16 * v, acc[h * NV + v]);
            }
        }
    }
}

void ar_attn_avx512(const ar_attn_args *a) {
    /* heads of up to 128 values and groups of up to MAX_GROUP heads; others are rare enough
     * for the portable loop */
    if (a->group > MAX_GROUP || a->hd < 1 || a->hd > 128) {
        for (int g = 0; g < a->group; g++) {
            ar_attn_args one = *a;
            one.q = a->q + (size_t)g * a->hd;
            one.out = a->out + (size_t)g * a->hd;
            one.group = 1;
            if (a->hd > 128) {
                ar_attn_avx2(&one);
                continue;
            }
            ar_attn_avx512(&one);
        }
        return;
    }
    switch ((a->hd + 15) / 16) {
    case 1:
        attn_nv(a, 1);
        break;
    case 2:
        attn_nv(a, 2);
        break;
    case 3:
        attn_nv(a, 3);
        break;
    case 4:
        attn_nv(a, 4);
        break;
    case 5:
        attn_nv(a, 5);
        break;
    case 6:
        attn_nv(a, 6);
        break;
    case 7:
        attn_nv(a, 7);
        break;
    default:
        attn_nv(a, 8);
        break;
    }
}

#endif
