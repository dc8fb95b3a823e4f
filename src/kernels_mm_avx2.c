/* kernels_mm_avx2.c: AVX2 batched kernels (panels and exactness: quants.h; the structure is that
 * of kernels_mm_avx512.c with 8 lanes). Without VNNI, quants are multiplied by vpmaddubsw
 * (unsigned weight byte times signed activation byte, adjacent pairs summed to 16 bits with
 * saturation) and widened by vpmaddwd. Saturation never happens: weight values are at most 63
 * except Q8_0's, which use |w| times sign(a, w) (pairs within 2 * 128 * 127), and 16-bit partial
 * sums are only added while their bound (weight max * 127 * 2 * terms) stays below 32768. */
#include "quants.h"

#if defined(__x86_64__) || defined(__i386__)

#define AI static inline __attribute__((always_inline))
/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */
#define FORGET_STORES() __asm__ __volatile__("" ::: "memory")
#define W               8 /* lanes: lane c * RR + r holds (column c, weight row r) */

static inline float half_to_float(ar_half h) {
    return _cvtsh_ss(h);
}

/* ================================ F32, F16, BF16 ================================ */

enum { W_F32, W_F16, W_BF16 };

AI __m256 load_w8(int fmt, const uint8_t *w, int64_t i) {
    if (fmt == W_F32) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (fmt == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float reduce32(const __m256 acc[4]) {
    return ar_mm256_reduce8(
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])));
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

/* Dword q of row r to out[q * RR + r]. */
AI void interleave_rows(int RR, const __m256i *u, int32_t *out) {
    if (RR == 1) {
        _mm256_store_si256((__m256i *)out, u[0]);
    } else if (RR == 2) {
        const __m256i lo = _mm256_unpacklo_epi32(u[0], u[1]),
                      hi = _mm256_unpackhi_epi32(u[0], u[1]);
        _mm256_store_si256((__m256i *)out, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_store_si256((__m256i *)out + 1, _mm256_permute2x128_si256(lo, hi, 0x31));
    } else {
        const __m256i t0 = _mm256_unpacklo_epi32(u[0], u[1]),
                      t1 = _mm256_unpackhi_epi32(u[0], u[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(u[2], u[3]),
                      t3 = _mm256_unpackhi_epi32(u[2], u[3]);
        const __m256i v0 = _mm256_unpacklo_epi64(t0, t2), v1 = _mm256_unpackhi_epi64(t0, t2);
        const __m256i v2 = _mm256_unpacklo_epi64(t1, t3), v3 = _mm256_unpackhi_epi64(t1, t3);
        __m256i *o = (__m256i *)out;
        _mm256_store_si256(o, _mm256_permute2x128_si256(v0, v1, 0x20));
        _mm256_store_si256(o + 1, _mm256_permute2x128_si256(v2, v3, 0x20));
        _mm256_store_si256(o + 2, _mm256_permute2x128_si256(v0, v1, 0x31));
        _mm256_store_si256(o + 3, _mm256_permute2x128_si256(v2, v3, 0x31));
    }
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

AI void row_pointers(const void *w, size_t ws, int nrows, int count, const uint8_t **rows) {
    for (int r = 0; r < count; r++)
        rows[r] = (const uint8_t *)w + (size_t)AR_MIN(r, nrows - 1) * ws;
}

static inline __m256i widen(__m256i s16) {
    return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
}

/* ================================ 32-value block formats ================================ */

#define Q32_D    (32 * W)
#define Q32_CORR (36 * W)
#define Q32_S    (40 * W)

enum { F_Q4_0, F_Q4_1, F_Q5_0, F_Q5_1, F_Q8_0 };

AI bool q32_has_min(int fmt) {
    return fmt == F_Q4_1 || fmt == F_Q5_1;
}
AI size_t q32_wsize(int fmt) {
    switch (fmt) {
    case F_Q4_0:
        return sizeof(ar_block_q4_0);
    case F_Q4_1:
        return sizeof(ar_block_q4_1);
    case F_Q5_0:
        return sizeof(ar_block_q5_0);
    case F_Q5_1:
        return sizeof(ar_block_q5_1);
    default:
        return sizeof(ar_block_q8_0);
    }
}
AI size_t q32_record(int fmt) {
    return (size_t)4 * W * (q32_has_min(fmt) ? 11 : 10);
}
/* dwords whose maddubs pair sums may be added in 16 bits: 4 values of at most 15 (Q4), 31 (Q5) */
AI int q32_depth(int fmt) {
    return fmt == F_Q4_0 || fmt == F_Q4_1 ? 8 : fmt == F_Q8_0 ? 1 : 4;
}

/* Weight block values: unsigned u (value = u - offset), or for Q8_0 the signed quants. */
AI __m256i unpack32(int fmt, const uint8_t *wb, float *d, float *m) {
    switch (fmt) {
    case F_Q4_0: {
        const ar_block_q4_0 *b = (const ar_block_q4_0 *)wb;
        *d = half_to_float(b->d);
        return ar_mm256_nibbles32(b->qs);
    }
    case F_Q4_1: {
        const ar_block_q4_1 *b = (const ar_block_q4_1 *)wb;
        *d = half_to_float(b->d);
        *m = half_to_float(b->m);
        return ar_mm256_nibbles32(b->qs);
    }
    case F_Q5_0: {
        const ar_block_q5_0 *b = (const ar_block_q5_0 *)wb;
        *d = half_to_float(b->d);
        return _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    }
    case F_Q5_1: {
        const ar_block_q5_1 *b = (const ar_block_q5_1 *)wb;
        *d = half_to_float(b->d);
        *m = half_to_float(b->m);
        return _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    }
    default: {
        const ar_block_q8_0 *b = (const ar_block_q8_0 *)wb;
        *d = half_to_float(b->d);
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    }
}

/* 16-bit pair sums of one dword of weights (broadcast) against the panel's quants */
AI __m256i pair_sums(int fmt, __m256i w, __m256i a) {
    if (fmt == F_Q8_0) return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_maddubs_epi16(w, a);
}

typedef struct {
    int32_t wt[8 * 4] __attribute__((aligned(32)));
    float d[4] __attribute__((aligned(16)));
    float m[4] __attribute__((aligned(16)));
} q32_tile_w;

AI void q32_weights(int fmt, int RR, const uint8_t *const *rows, size_t off, q32_tile_w *t) {
    __m256i u[4];
#pragma GCC unroll 16
    for (int r = 0; r < RR; r++) u[r] = unpack32(fmt, rows[r] + off, &t->d[r], &t->m[r]);
    interleave_rows(RR, u, t->wt);
}

AI void q32_lane(int fmt, int RR, int P, int64_t nb, int64_t j, const uint8_t *const *rows,
                 const uint8_t *panel, __m256 *run, ar_prefetcher *pf) {
    const size_t wsz = q32_wsize(fmt), rec = q32_record(fmt);
    const int D = q32_depth(fmt);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) run[p] = _mm256_setzero_ps();
    for (int64_t b = j; b < nb; b += 8) {
        ar_prefetch_step(pf);
        q32_tile_w t[2];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) q32_weights(fmt, RR, rows + p * RR, (size_t)b * wsz, &t[p]);
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
        const __m256i corr = _mm256_load_si256((const __m256i *)(pb + Q32_CORR));
        const __m256 da = _mm256_load_ps((const float *)(pb + Q32_D));
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const __m256i sumi = _mm256_sub_epi32(s[p], corr);
            __m256 term = _mm256_mul_ps(_mm256_mul_ps(bcast_rows_ps(RR, t[p].d), da),
                                        _mm256_cvtepi32_ps(sumi));
            if (q32_has_min(fmt))
                term =
                    _mm256_add_ps(term, _mm256_mul_ps(bcast_rows_ps(RR, t[p].m),
                                                      _mm256_load_ps((const float *)(pb + Q32_S))));
            run[p] = _mm256_add_ps(run[p], term);
        }
    }
}

AI void q32_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows,
                 const uint8_t *panel, float *out, int out_stride, int nrows, size_t ws,
                 bool first) {
    const int64_t nb = k / AR_QK;
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, nb, first);
    __m256 a[2], b[2], c[2], r[2];
    q32_lane(fmt, RR, P, nb, 0, rows, panel, a, &pf);
    q32_lane(fmt, RR, P, nb, 4, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) a[p] = _mm256_add_ps(a[p], r[p]);
    q32_lane(fmt, RR, P, nb, 2, rows, panel, b, &pf);
    q32_lane(fmt, RR, P, nb, 6, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) a[p] = _mm256_add_ps(a[p], _mm256_add_ps(b[p], r[p]));
    q32_lane(fmt, RR, P, nb, 1, rows, panel, b, &pf);
    q32_lane(fmt, RR, P, nb, 5, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) b[p] = _mm256_add_ps(b[p], r[p]);
    q32_lane(fmt, RR, P, nb, 3, rows, panel, c, &pf);
    q32_lane(fmt, RR, P, nb, 7, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
        a[p] = _mm256_add_ps(a[p], _mm256_add_ps(b[p], _mm256_add_ps(c[p], r[p])));
    store_tile(RR, P, a, out, out_stride, nrows);
}

#define Q32_RUN(name, fmt, RR)                                                                     \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        const uint8_t *rows[8];                                                                    \
        const int C = W / (RR);                                                                    \
        const int P = nrows <= (RR) ? 1 : 2;                                                       \
        row_pointers(w, w_stride, nrows, 8, rows);                                                 \
        for (int g = 0; g < ngroups; g++) {                                                        \
            if (P == 1)                                                                            \
                q32_tile(fmt, RR, 1, k, rows, panel + (size_t)g * pstride, out + C * g,            \
                         C * ngroups, nrows, w_stride, g == 0);                                    \
            else                                                                                   \
                q32_tile(fmt, RR, 2, k, rows, panel + (size_t)g * pstride, out + C * g,            \
                         C * ngroups, nrows, w_stride, g == 0);                                    \
        }                                                                                          \
    }
#define Q32_RUNS(sfx, fmt)                                                                         \
    Q32_RUN(run_##sfx##_r1, fmt, 1)                                                                \
    Q32_RUN(run_##sfx##_r2, fmt, 2)                                                                \
    Q32_RUN(run_##sfx##_r4, fmt, 4)
Q32_RUNS(q4_0, F_Q4_0)
Q32_RUNS(q4_1, F_Q4_1)
Q32_RUNS(q5_0, F_Q5_0)
Q32_RUNS(q5_1, F_Q5_1)
Q32_RUNS(q8_0, F_Q8_0)

/* ================================ K-quants ================================ */

#define QK_D      (256 * W)
#define QK_BS     (260 * W)
#define QK_RECORD ((size_t)4 * W * 73)

enum { F_Q2_K, F_Q3_K, F_Q4_K, F_Q5_K, F_Q6_K };

AI size_t qk_wsize(int fmt) {
    switch (fmt) {
    case F_Q2_K:
        return sizeof(ar_block_q2_K);
    case F_Q3_K:
        return sizeof(ar_block_q3_K);
    case F_Q4_K:
        return sizeof(ar_block_q4_K);
    case F_Q5_K:
        return sizeof(ar_block_q5_K);
    default:
        return sizeof(ar_block_q6_K);
    }
}
/* dwords per scale, and dwords whose pair sums fit 16 bits (values up to 3, 7, 15, 31, 63) */
AI int qk_span(int fmt) {
    return fmt == F_Q4_K || fmt == F_Q5_K ? 8 : 4;
}
AI int qk_depth(int fmt) {
    switch (fmt) {
    case F_Q2_K:
    case F_Q3_K:
        return 4;
    case F_Q4_K:
        return 8;
    case F_Q5_K:
        return 4;
    default:
        return 2;
    }
}

static inline int32_t pair16(int lo, int hi) {
    return (int32_t)(((uint32_t)(uint16_t)(int16_t)hi << 16) | (uint16_t)(int16_t)lo);
}

typedef struct {
    uint8_t u[256] __attribute__((aligned(32)));
    int32_t sc[16];
    int32_t pair[8];
    float d, dmin;
} qk_unpacked;

AI void unpack_2bit(const uint8_t *qs, uint8_t *u) {
    const __m256i m3 = _mm256_set1_epi8(3);
#pragma GCC unroll 16
    for (int c = 0; c < 2; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            _mm256_store_si256((__m256i *)(u + 128 * c + 32 * k), _mm256_and_si256(q, m3));
            q = _mm256_srli_epi16(q, 2);
        }
    }
}

/* As unpack_k of kernels_mm_avx512.c; the scales here are pairs (sc, sc) for vpmaddwd. */
AI void unpack_k(int fmt, const uint8_t *wb, qk_unpacked *x) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    x->dmin = 0;
    switch (fmt) {
    case F_Q2_K: {
        const ar_block_q2_K *b = (const ar_block_q2_K *)wb;
        unpack_2bit(b->qs, x->u);
        for (int g = 0; g < 16; g++) x->sc[g] = pair16(b->scales[g] & 0xF, b->scales[g] & 0xF);
        for (int k = 0; k < 8; k++)
            x->pair[k] = pair16(b->scales[2 * k] >> 4, b->scales[2 * k + 1] >> 4);
        x->d = half_to_float(b->d);
        x->dmin = half_to_float(b->dmin);
        break;
    }
    case F_Q3_K: {
        const ar_block_q3_K *b = (const ar_block_q3_K *)wb;
        unpack_2bit(b->qs, x->u);
        __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
#pragma GCC unroll 16
        for (int i = 0; i < 8; i++) {
            __m256i *p = (__m256i *)(x->u + 32 * i);
            _mm256_store_si256(p, _mm256_or_si256(_mm256_load_si256(p),
                                                  _mm256_slli_epi16(_mm256_and_si256(hm, one), 2)));
            hm = _mm256_srli_epi16(hm, 1);
        }
        int sc[16];
        for (int g = 0; g < 16; g++) {
            sc[g] = ar_scale_q3_K(g, b->scales) - 32;
            x->sc[g] = pair16(sc[g], sc[g]);
        }
        for (int k = 0; k < 8; k++) x->pair[k] = pair16(-4 * sc[2 * k], -4 * sc[2 * k + 1]);
        x->d = half_to_float(b->d);
        break;
    }
    case F_Q4_K:
    case F_Q5_K: {
        const uint8_t *qs, *scales, *qh = NULL;
        ar_half hd, hmin;
        if (fmt == F_Q4_K) {
            const ar_block_q4_K *b = (const ar_block_q4_K *)wb;
            qs = b->qs, scales = b->scales, hd = b->d, hmin = b->dmin;
        } else {
            const ar_block_q5_K *b = (const ar_block_q5_K *)wb;
            qs = b->qs, scales = b->scales, qh = b->qh, hd = b->d, hmin = b->dmin;
        }
        __m256i hm = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (qh) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hm, one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 1), one), 4));
                hm = _mm256_srli_epi16(hm, 2);
            }
            _mm256_store_si256((__m256i *)(x->u + 64 * c), lo);
            _mm256_store_si256((__m256i *)(x->u + 64 * c + 32), hi);
        }
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            ar_scale_min_k4(j, scales, &sc, &m);
            x->sc[j] = pair16(sc, sc);
            x->sc[8 + j] = 0;
            x->pair[j] = pair16(m, m);
        }
        x->d = half_to_float(hd);
        x->dmin = half_to_float(hmin);
        break;
    }
    default: {
        const ar_block_q6_K *b = (const ar_block_q6_K *)wb;
        const __m256i m3 = _mm256_set1_epi8(3);
#pragma GCC unroll 16
        for (int c = 0; c < 2; c++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * c));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * c + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * c));
            const __m256i low[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
#pragma GCC unroll 16
            for (int k = 0; k < 4; k++) {
                _mm256_store_si256(
                    (__m256i *)(x->u + 128 * c + 32 * k),
                    _mm256_or_si256(low[k], _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)));
                h = _mm256_srli_epi16(h, 2);
            }
        }
        for (int g = 0; g < 16; g++) x->sc[g] = pair16(b->scales[g], b->scales[g]);
        for (int k = 0; k < 8; k++)
            x->pair[k] = pair16(-32 * b->scales[2 * k], -32 * b->scales[2 * k + 1]);
        x->d = half_to_float(b->d);
        break;
    }
    }
}

typedef struct {
    int32_t wt[64 * 4] __attribute__((aligned(32)));
    int32_t sc[16 * 4] __attribute__((aligned(16)));
    int32_t pair[8 * 4] __attribute__((aligned(16)));
    float d[4] __attribute__((aligned(16)));
    float dmin[4] __attribute__((aligned(16)));
} qk_tile_w;

AI void qk_weights(int fmt, int RR, const uint8_t *const *rows, size_t off, qk_tile_w *t) {
    qk_unpacked x[4];
#pragma GCC unroll 16
    for (int r = 0; r < RR; r++) {
        unpack_k(fmt, rows[r] + off, &x[r]);
        for (int j = 0; j < 16; j++) t->sc[j * RR + r] = x[r].sc[j];
        for (int q = 0; q < 8; q++) t->pair[q * RR + r] = x[r].pair[q];
        t->d[r] = x[r].d;
        t->dmin[r] = x[r].dmin;
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        __m256i u[4];
#pragma GCC unroll 16
        for (int r = 0; r < RR; r++) u[r] = _mm256_load_si256((const __m256i *)(x[r].u + 32 * i));
        interleave_rows(RR, u, t->wt + 8 * RR * i);
    }
}

AI void qk_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows, const uint8_t *panel,
                float *out, int out_stride, int nrows, size_t ws, bool first) {
    const size_t wsz = qk_wsize(fmt);
    const bool has_min = fmt == F_Q2_K || fmt == F_Q4_K || fmt == F_Q5_K;
    const int span = qk_span(fmt), D = qk_depth(fmt);
    __m256 sum[2];
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) sum[p] = _mm256_setzero_ps();
    qk_tile_w t[2];
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, k / AR_QK_K, first);
    for (int64_t i = 0; i < k / AR_QK_K; i++) {
        ar_prefetch_step(&pf);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) qk_weights(fmt, RR, rows + p * RR, (size_t)i * wsz, &t[p]);
        FORGET_STORES();
        const uint8_t *pb = panel + (size_t)i * QK_RECORD;
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
            const __m256i bs = _mm256_load_si256((const __m256i *)(pb + QK_BS + 32 * q));
#pragma GCC unroll 16
            for (int p = 0; p < P; p++)
                pairs[p] = _mm256_add_epi32(
                    pairs[p], _mm256_madd_epi16(bcast_rows(RR, t[p].pair + q * RR), bs));
        }
        const __m256 da = _mm256_load_ps((const float *)(pb + QK_D));
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

#define QK_RUN(name, fmt, RR)                                                                      \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        const uint8_t *rows[8];                                                                    \
        const int C = W / (RR);                                                                    \
        const int P = nrows <= (RR) ? 1 : 2;                                                       \
        row_pointers(w, w_stride, nrows, 8, rows);                                                 \
        for (int g = 0; g < ngroups; g++) {                                                        \
            if (P == 1)                                                                            \
                qk_tile(fmt, RR, 1, k, rows, panel + (size_t)g * pstride, out + C * g,             \
                        C * ngroups, nrows, w_stride, g == 0);                                     \
            else                                                                                   \
                qk_tile(fmt, RR, 2, k, rows, panel + (size_t)g * pstride, out + C * g,             \
                        C * ngroups, nrows, w_stride, g == 0);                                     \
        }                                                                                          \
    }
#define QK_RUNS(sfx, fmt)                                                                          \
    QK_RUN(run_##sfx##_r1, fmt, 1)                                                                 \
    QK_RUN(run_##sfx##_r2, fmt, 2)                                                                 \
    QK_RUN(run_##sfx##_r4, fmt, 4)
QK_RUNS(q2_K, F_Q2_K)
QK_RUNS(q3_K, F_Q3_K)
QK_RUNS(q4_K, F_Q4_K)
QK_RUNS(q5_K, F_Q5_K)
QK_RUNS(q6_K, F_Q6_K)

/* ================================ the table ================================ */

#define FKERNEL(T, fn)                                                                             \
    {                                                                                              \
        .path = "avx2", .panel = AR_PANEL_ROWS, .act = T, .width = 1, .rep = 1, .lanes = 1,        \
        .max_rows = 2, .max_groups = 64, .run = fn                                                 \
    }
static const ar_gemm_kernel k_f32 = FKERNEL(AR_TYPE_F32, run_f32);
static const ar_gemm_kernel k_f16 = FKERNEL(AR_TYPE_F16, run_f16);
static const ar_gemm_kernel k_bf16 = FKERNEL(AR_TYPE_BF16, run_bf16);

#define QKERNEL(fn, kind, a, rr, c, s)                                                             \
    {                                                                                              \
        .path = "avx2", .panel = kind, .act = a, .width = W, .rep = rr, .lanes = W / (rr),         \
        .max_rows = 2 * (rr), .max_groups = 4, .corr = c, .with_s = s, .run = fn                   \
    }
#define Q32_SET(sfx, c, s)                                                                         \
    static const ar_gemm_kernel k_##sfx[3] = {                                                     \
        QKERNEL(run_##sfx##_r1, AR_PANEL_Q32, (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0, 1, c, s),         \
        QKERNEL(run_##sfx##_r2, AR_PANEL_Q32, (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0, 2, c, s),         \
        QKERNEL(run_##sfx##_r4, AR_PANEL_Q32, (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0, 4, c, s)};
#define QK_SET(sfx)                                                                                \
    static const ar_gemm_kernel k_##sfx[3] = {                                                     \
        QKERNEL(run_##sfx##_r1, AR_PANEL_QK, AR_TYPE_Q8_K, 1, 0, false),                           \
        QKERNEL(run_##sfx##_r2, AR_PANEL_QK, AR_TYPE_Q8_K, 2, 0, false),                           \
        QKERNEL(run_##sfx##_r4, AR_PANEL_QK, AR_TYPE_Q8_K, 4, 0, false)};
Q32_SET(q4_0, 8, false)
Q32_SET(q4_1, 0, true)
Q32_SET(q5_0, 16, false)
Q32_SET(q5_1, 0, true)
Q32_SET(q8_0, 0, false) /* the sign trick: signed weights, no offset */
QK_SET(q2_K)
QK_SET(q3_K)
QK_SET(q4_K)
QK_SET(q5_K)
QK_SET(q6_K)

static ar_gemm_set set_of(const ar_gemm_kernel *k) {
    return (ar_gemm_set){{&k[0], &k[1], &k[2]}, NULL, 0};
}

ar_gemm_set ar_gemm_avx2(ar_type t) {
    switch (t) {
    case AR_TYPE_F32:
        return (ar_gemm_set){{&k_f32, NULL, NULL}, NULL, 0};
    case AR_TYPE_F16:
        return (ar_gemm_set){{&k_f16, NULL, NULL}, NULL, 0};
    case AR_TYPE_BF16:
        return (ar_gemm_set){{&k_bf16, NULL, NULL}, NULL, 0};
    case AR_TYPE_Q4_0:
        return set_of(k_q4_0);
    case AR_TYPE_Q4_1:
        return set_of(k_q4_1);
    case AR_TYPE_Q5_0:
        return set_of(k_q5_0);
    case AR_TYPE_Q5_1:
        return set_of(k_q5_1);
    case AR_TYPE_Q8_0:
        return set_of(k_q8_0);
    case AR_TYPE_Q2_K:
        return set_of(k_q2_K);
    case AR_TYPE_Q3_K:
        return set_of(k_q3_K);
    case AR_TYPE_Q4_K:
        return set_of(k_q4_K);
    case AR_TYPE_Q5_K:
        return set_of(k_q5_K);
    case AR_TYPE_Q6_K:
        return set_of(k_q6_K);
    default:
        return (ar_gemm_set){{NULL, NULL, NULL}, NULL, 0};
    }
}

#else
ar_gemm_set ar_gemm_avx2(ar_type t) {
    (void)t;
    return (ar_gemm_set){{NULL, NULL, NULL}, NULL, 0};
}
#endif
