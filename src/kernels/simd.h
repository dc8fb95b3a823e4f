/* simd.h: the SIMD helpers that the instruction-set files (avx2.c, avx512.c, act_*.c, attn_*.c)
 * share, written once with AVX2 + F16C (+ FMA) intrinsics and compiled into each of those files
 * with its own flags: prefetching, the reference's fixed folds, the unpacking of weight blocks
 * and their scales. Include only from a file built with at least -mavx2 -mfma -mf16c. */
#ifndef ARBOR_SIMD_H
#define ARBOR_SIMD_H

#include <immintrin.h>

#include "kernels.h"

#if !defined(__AVX2__) || !defined(__F16C__) || !defined(__FMA__)
#error "simd.h needs AVX2, FMA and F16C (compile with -mavx2 -mfma -mf16c)"
#endif

#define AR_AI static inline __attribute__((always_inline))


/* Software prefetch (into L2) of the weight rows after a kernel call's (the next call's,
 * contiguous in the matrix), a share per block step: the hardware prefetchers follow a call's
 * interleaved row streams poorly when the weights come from memory. Past the matrix end a
 * prefetch is harmless. */
typedef struct {
    const char *next;
    size_t line, lines, per;
} ar_prefetcher;

/* The `rows` rows of ws bytes after those starting at first, spread over `steps` steps (none
 * when !on). */
static inline ar_prefetcher ar_prefetch_rows(const uint8_t *first, size_t ws, int rows,
                                             int64_t steps, bool on) {
    const size_t lines = on ? ((size_t)rows * ws + 63) / 64 : 0;
    return (ar_prefetcher){(const char *)first + (size_t)rows * ws, 0, lines,
                           lines / (size_t)(steps > 0 ? steps : 1) + 1};
}
static inline void ar_prefetch_step(ar_prefetcher *pf) {
    for (const size_t e = pf->line + pf->per < pf->lines ? pf->line + pf->per : pf->lines;
         pf->line < e; pf->line++)
        _mm_prefetch(pf->next + 64 * pf->line, _MM_HINT_T1);
}
/* Whatever is left (a call with fewer steps than planned). */
static inline void ar_prefetch_rest(ar_prefetcher *pf) {
    for (; pf->line < pf->lines; pf->line++) _mm_prefetch(pf->next + 64 * pf->line, _MM_HINT_T1);
}

/* ar_reduce8 of the 8 lanes of v. */
static inline float ar_mm256_reduce8(__m256 v) {
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    u = _mm_add_ps(u, _mm_movehl_ps(u, u));
    u = _mm_add_ss(u, _mm_movehdup_ps(u));
    return _mm_cvtss_f32(u);
}

static inline int ar_mm256_hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* Lane k = the sum of the 8 lanes of p[k]. */
static inline __m256i ar_mm256_hsum8x8(const __m256i p[8]) {
    const __m256i q0 =
        _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i q1 =
        _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20),
                            _mm256_permute2x128_si256(q0, q1, 0x31));
}

/* The 12 packed scale bytes of Q4_K/Q5_K as 8 scales (bytes 0-7) and 8 mins (bytes 8-15). */
static inline __m128i ar_k4_scales_mins(const uint8_t *q) {
    uint32_t w[3];
    memcpy(w, q, 12);
    return _mm_setr_epi32((int)(w[0] & 0x3f3f3f3f),
                          (int)((w[2] & 0x0f0f0f0f) | ((w[0] >> 6) & 0x03030303) << 4),
                          (int)(w[1] & 0x3f3f3f3f),
                          (int)(((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 6) & 0x03030303) << 4));
}

/* The 16 six-bit scales of Q3_K, minus their offset of 32, as signed bytes. */
static inline __m128i ar_q3_K_scales(const uint8_t *q) {
    uint32_t w[3];
    memcpy(w, q, 12);
    const __m128i u =
        _mm_setr_epi32((int)((w[0] & 0x0f0f0f0f) | (w[2] & 0x03030303) << 4),
                       (int)((w[1] & 0x0f0f0f0f) | ((w[2] >> 2) & 0x03030303) << 4),
                       (int)(((w[0] >> 4) & 0x0f0f0f0f) | ((w[2] >> 4) & 0x03030303) << 4),
                       (int)(((w[1] >> 4) & 0x0f0f0f0f) | ((w[2] >> 6) & 0x03030303) << 4));
    return _mm_sub_epi8(u, _mm_set1_epi8(32));
}

/* sum over the 16 groups of s16[g] * bsums[g] (exact in 32 bits) */
static inline int ar_mm256_dot_bsums(__m256i s16, const int16_t *bsums) {
    return ar_mm256_hsum_epi32(_mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)bsums)));
}

/* 32 values of a Q4/Q5 block's nibbles in order (value j < 16: low nibble of byte j). */
static inline __m256i ar_mm256_nibbles32(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

/* Byte j = 0x10 where bit j of the little-endian 32-bit qh is set, else 0. */
static inline __m256i ar_mm256_bit4_from_bits32(const uint8_t *qh) {
    int32_t bits;
    memcpy(&bits, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits), _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2,
                                                  2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* exp(x): x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a polynomial of degree 7 (Cephes' expf
 * coefficients, about 1 ulp), times 2^n as two powers of two built in the exponent field (so
 * that overflow gives infinity and underflow subnormals or zero, through the multiplications).
 * NaN stays NaN. Needs FMA. */
#ifdef __FMA__
static inline __m256 ar_mm256_exp(__m256 x) {
    /* beyond +-104 the result is inf or 0 anyway; max/min return x when it is NaN */
    x = _mm256_min_ps(_mm256_set1_ps(104.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1); /* both within [-75, 75] */
    const __m256 s1 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
#endif
#ifdef __AVX512F__
/* The same with 16 lanes; vscalefps scales by 2^n in one rounding. */
static inline __m512 ar_mm512_exp(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(104.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#endif

/* Integer sums of one 32-value block (8 partial lanes) of weight block w and activation a. */
typedef __m256i (*ar_block32_dot_fn)(const uint8_t *w, const uint8_t *a);

/* 8 halfs from the low (hi = false) or high 16 bits of 8 int32 lanes, as floats. */
static inline __m256 ar_mm256_halves_to_ps(__m256i g, bool hi) {
    const __m256i h =
        hi ? _mm256_srli_epi32(g, 16) : _mm256_and_si256(g, _mm256_set1_epi32(0xFFFF));
    return _mm256_cvtph_ps(
        _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
}

/* The terms of up to 8 blocks: integer sums times scales (missing blocks: +0). The 4 bytes at the
 * start of each block (d, and m or s for the _1 formats) are gathered. */
static inline __attribute__((always_inline)) __m256 ar_group_terms(const uint8_t *w, size_t wsz,
                                                                   const uint8_t *a, size_t asz,
                                                                   int cnt, bool has_min,
                                                                   ar_block32_dot_fn blk) {
    __m256i p[8];
    for (int k = 0; k < 8; k++)
        p[k] = k < cnt ? blk(w + (size_t)k * wsz, a + (size_t)k * asz) : _mm256_setzero_si256();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i ow = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)wsz));
    const __m256i oa = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)asz));
    __m256i gw, ga;
    if (cnt == 8) {
        gw = _mm256_i32gather_epi32((const int *)w, ow, 1);
        ga = _mm256_i32gather_epi32((const int *)a, oa, 1);
    } else {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), lane);
        gw = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)w, ow, m, 1);
        ga = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)a, oa, m, 1);
    }
    const __m256 sumi = _mm256_cvtepi32_ps(ar_mm256_hsum8x8(p));
    const __m256 dd =
        _mm256_mul_ps(ar_mm256_halves_to_ps(gw, false), ar_mm256_halves_to_ps(ga, false));
    __m256 t = _mm256_mul_ps(dd, sumi);
    if (has_min)
        t = _mm256_add_ps(
            t, _mm256_mul_ps(ar_mm256_halves_to_ps(gw, true), ar_mm256_halves_to_ps(ga, true)));
    return t;
}

/* The dot product of nb 32-value blocks, in the reference order: block b's term into lane b % 8
 * (missing lanes of the last group add +0, which leaves a running sum unchanged). */
static inline __attribute__((always_inline)) float ar_dot_blocks32(int64_t nb, const void *w,
                                                                   size_t wsz, const void *a,
                                                                   size_t asz, bool has_min,
                                                                   ar_block32_dot_fn blk) {
    const uint8_t *wp = w, *ap = a;
    __m256 acc = _mm256_setzero_ps();
    int64_t ib = 0;
    for (; ib + 8 <= nb; ib += 8)
        acc = _mm256_add_ps(
            acc, ar_group_terms(wp + ib * wsz, wsz, ap + ib * asz, asz, 8, has_min, blk));
    if (ib < nb)
        acc = _mm256_add_ps(acc, ar_group_terms(wp + ib * wsz, wsz, ap + ib * asz, asz,
                                                (int)(nb - ib), has_min, blk));
    return ar_mm256_reduce8(acc);
}

/* ---- weight blocks, unpacked (the kernels of both widths) ---- */

AR_AI size_t ar_block_bytes(ar_type t) {
    switch (t) {
    case AR_TYPE_Q4_0: return sizeof(ar_block_q4_0);
    case AR_TYPE_Q4_1: return sizeof(ar_block_q4_1);
    case AR_TYPE_Q5_0: return sizeof(ar_block_q5_0);
    case AR_TYPE_Q5_1: return sizeof(ar_block_q5_1);
    case AR_TYPE_Q8_0: return sizeof(ar_block_q8_0);
    case AR_TYPE_Q2_K: return sizeof(ar_block_q2_K);
    case AR_TYPE_Q3_K: return sizeof(ar_block_q3_K);
    case AR_TYPE_Q4_K: return sizeof(ar_block_q4_K);
    case AR_TYPE_Q5_K: return sizeof(ar_block_q5_K);
    default: return sizeof(ar_block_q6_K);
    }
}
AR_AI bool ar_q32_has_min(ar_type t) {
    return t == AR_TYPE_Q4_1 || t == AR_TYPE_Q5_1;
}

/* Two int16 in one dword (lo in the low half). */
static inline int32_t ar_pair16(int lo, int hi) {
    return (int32_t)(((uint32_t)(uint16_t)(int16_t)hi << 16) | (uint16_t)(int16_t)lo);
}

/* One 32-value block as 32 bytes in value order: the unsigned values u = value + offset of the
 * Q4/Q5 formats (offset 8 or 16, 0 for the _1 formats), the signed quants of Q8_0 or, with
 * q8_offset, u = q + 128; its scale and (the _1 formats) its min. */
AR_AI __m256i ar_unpack32(ar_type t, const uint8_t *wb, bool q8_offset, float *d, float *m) {
    switch (t) {
    case AR_TYPE_Q4_0: {
        const ar_block_q4_0 *b = (const ar_block_q4_0 *)wb;
        *d = _cvtsh_ss(b->d);
        return ar_mm256_nibbles32(b->qs);
    }
    case AR_TYPE_Q4_1: {
        const ar_block_q4_1 *b = (const ar_block_q4_1 *)wb;
        *d = _cvtsh_ss(b->d);
        *m = _cvtsh_ss(b->m);
        return ar_mm256_nibbles32(b->qs);
    }
    case AR_TYPE_Q5_0: {
        const ar_block_q5_0 *b = (const ar_block_q5_0 *)wb;
        *d = _cvtsh_ss(b->d);
        return _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    }
    case AR_TYPE_Q5_1: {
        const ar_block_q5_1 *b = (const ar_block_q5_1 *)wb;
        *d = _cvtsh_ss(b->d);
        *m = _cvtsh_ss(b->m);
        return _mm256_or_si256(ar_mm256_nibbles32(b->qs), ar_mm256_bit4_from_bits32(b->qh));
    }
    default: {
        const ar_block_q8_0 *b = (const ar_block_q8_0 *)wb;
        *d = _cvtsh_ss(b->d);
        const __m256i q = _mm256_loadu_si256((const __m256i *)b->qs);
        return q8_offset ? _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)) : q;
    }
    }
}

/* One K-quant super-block unpacked: 256 unsigned values u in value order, the scales, and the
 * 16-bit pairs that multiply the activations' bsum pairs (the mins, or the offsets times the
 * scales). */
typedef struct {
    uint8_t u[256] __attribute__((aligned(64)));
    int32_t sc[16];  /* per 32 values (Q4_K, Q5_K: 8, then zeros) or per 16 (Q2_K, Q3_K, Q6_K);
                      * as (sc, sc) int16 pairs when unpacked with sc_pairs */
    int32_t pair[8]; /* dword k: (x_{2k}, x_{2k+1}) as int16, x per 16-value group */
    float d, dmin;   /* dmin: Q2_K, Q4_K, Q5_K (else 0) */
} ar_qk_unpacked;

/* Q2_K/Q3_K qs: value 128c + 32k + l is bits 2k of byte 32c + l. */
AR_AI void ar_unpack_2bit(const uint8_t *qs, uint8_t *u) {
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

/* Unpacks super-block wb of type t; sc_pairs: each scale as the pair (sc, sc), for vpmaddwd. */
AR_AI void ar_unpack_qk(ar_type t, const uint8_t *wb, bool sc_pairs, ar_qk_unpacked *x) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
#define AR_SC(v) (sc_pairs ? ar_pair16((v), (v)) : (v))
    x->dmin = 0;
    switch (t) {
    case AR_TYPE_Q2_K: {
        const ar_block_q2_K *b = (const ar_block_q2_K *)wb;
        ar_unpack_2bit(b->qs, x->u);
        for (int g = 0; g < 16; g++) x->sc[g] = AR_SC(b->scales[g] & 0xF);
        for (int k = 0; k < 8; k++)
            x->pair[k] = ar_pair16(b->scales[2 * k] >> 4, b->scales[2 * k + 1] >> 4);
        x->d = _cvtsh_ss(b->d);
        x->dmin = _cvtsh_ss(b->dmin);
        break;
    }
    case AR_TYPE_Q3_K: {
        /* u = 2-bit field + 4 * high bit in [0, 7]; value u - 4 */
        const ar_block_q3_K *b = (const ar_block_q3_K *)wb;
        ar_unpack_2bit(b->qs, x->u);
        __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
#pragma GCC unroll 16
        for (int i = 0; i < 8; i++) { /* values 32i..32i+31: bit i of hmask[l] */
            __m256i *p = (__m256i *)(x->u + 32 * i);
            _mm256_store_si256(p, _mm256_or_si256(_mm256_load_si256(p),
                                                  _mm256_slli_epi16(_mm256_and_si256(hm, one), 2)));
            hm = _mm256_srli_epi16(hm, 1);
        }
        int sc[16];
        for (int g = 0; g < 16; g++) {
            sc[g] = ar_scale_q3_K(g, b->scales) - 32;
            x->sc[g] = AR_SC(sc[g]);
        }
        for (int k = 0; k < 8; k++) x->pair[k] = ar_pair16(-4 * sc[2 * k], -4 * sc[2 * k + 1]);
        x->d = _cvtsh_ss(b->d);
        break;
    }
    case AR_TYPE_Q4_K:
    case AR_TYPE_Q5_K: {
        const uint8_t *qs, *scales, *qh = NULL;
        ar_half hd, hmin;
        if (t == AR_TYPE_Q4_K) {
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
            x->sc[j] = AR_SC(sc);
            x->sc[8 + j] = 0;
            x->pair[j] = ar_pair16(m, m); /* the min of 32 values: both its 16-value groups */
        }
        x->d = _cvtsh_ss(hd);
        x->dmin = _cvtsh_ss(hmin);
        break;
    }
    default: {
        /* Q6_K: u = 4 low bits + 2 high bits in [0, 63]; value u - 32 */
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
        for (int g = 0; g < 16; g++) x->sc[g] = AR_SC(b->scales[g]);
        for (int k = 0; k < 8; k++)
            x->pair[k] = ar_pair16(-32 * b->scales[2 * k], -32 * b->scales[2 * k + 1]);
        x->d = _cvtsh_ss(b->d);
        break;
    }
    }
#undef AR_SC
}

/* Row pointers of a call, the missing ones repeating the last row (their results are dropped). */
AR_AI void ar_row_pointers(const void *w, size_t ws, int nrows, int count, const uint8_t **rows) {
    for (int r = 0; r < count; r++)
        rows[r] = (const uint8_t *)w + (size_t)AR_MIN(r, nrows - 1) * ws;
}

/* ---- the rep kernels' weight tiles (avx2.c, avx512.c): a block of RR rows (1, 2 or 4) with
 * dword q of row r at wt[q * RR + r], so that one broadcast gives the RR rows' dword q ---- */

/* Dword q of row r (u[r]: 8 dwords each) to out[q * RR + r]. */
AR_AI void ar_interleave_rows(int RR, const __m256i *u, int32_t *out) {
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

/* A 32-value block of RR rows: values interleaved, scales d[r], mins m[r]. */
typedef struct {
    int32_t wt[8 * 4] __attribute__((aligned(64)));
    float d[4] __attribute__((aligned(16)));
    float m[4] __attribute__((aligned(16)));
} ar_q32_tile;

AR_AI void ar_q32_tile_load(ar_type t, int RR, const uint8_t *const *rows, size_t off,
                            bool q8_offset, ar_q32_tile *x) {
    __m256i u[4];
#pragma GCC unroll 16
    for (int r = 0; r < RR; r++) u[r] = ar_unpack32(t, rows[r] + off, q8_offset, &x->d[r], &x->m[r]);
    ar_interleave_rows(RR, u, x->wt);
}

/* A K-quant super-block of RR rows: values interleaved, the scales at sc[j * RR + r], the bsum
 * multipliers at pair[k * RR + r], d[r], dmin[r]. */
typedef struct {
    int32_t wt[64 * 4] __attribute__((aligned(64)));
    int32_t sc[16 * 4] __attribute__((aligned(16)));
    int32_t pair[8 * 4] __attribute__((aligned(16)));
    float d[4] __attribute__((aligned(16)));
    float dmin[4] __attribute__((aligned(16)));
} ar_qk_tile;

AR_AI void ar_qk_tile_load(ar_type t, int RR, const uint8_t *const *rows, size_t off,
                           bool sc_pairs, ar_qk_tile *x) {
    ar_qk_unpacked un[4];
#pragma GCC unroll 16
    for (int r = 0; r < RR; r++) {
        ar_unpack_qk(t, rows[r] + off, sc_pairs, &un[r]);
        for (int j = 0; j < 16; j++) x->sc[j * RR + r] = un[r].sc[j];
        for (int q = 0; q < 8; q++) x->pair[q * RR + r] = un[r].pair[q];
        x->d[r] = un[r].d;
        x->dmin[r] = un[r].dmin;
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        __m256i u[4];
#pragma GCC unroll 16
        for (int r = 0; r < RR; r++) u[r] = _mm256_load_si256((const __m256i *)(un[r].u + 32 * i));
        ar_interleave_rows(RR, u, x->wt + 8 * RR * i);
    }
}

/* The rep kernels' entry points (ar_gemm_fn): rows in groups of RR, P groups a call (fewer
 * rows: one group), the columns' panels one after the other. `tile(t, RR, P, k, rows, panel,
 * out, out_stride, nrows, w_stride, first)` computes one panel. */
#define AR_REP_RUN(name, tile, t, RR, P, lanes)                                                    \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        const uint8_t *rows[8];                                                                    \
        const int C = (lanes) / (RR);                                                              \
        const bool one = nrows <= (RR);                                                            \
        ar_row_pointers(w, w_stride, nrows, 8, rows);                                              \
        for (int g = 0; g < ngroups; g++) {                                                        \
            if (one)                                                                               \
                tile(t, RR, 1, k, rows, panel + (size_t)g * pstride, out + C * g, C * ngroups,     \
                     nrows, w_stride, g == 0);                                                     \
            else                                                                                   \
                tile(t, RR, P, k, rows, panel + (size_t)g * pstride, out + C * g, C * ngroups,     \
                     nrows, w_stride, g == 0);                                                     \
        }                                                                                          \
    }


/* The rep kernels' descriptors of an instruction-set file, which defines REP_PATH (its name), W
 * (its lanes) and REP_MAX_ROWS(rr) (rows per call), and run_<fmt>_r1/_r2/_r4 (AR_REP_RUN). */
#define AR_REP_KERNEL(fn, kind, a, rr, c, s)                                                       \
    {                                                                                              \
        .path = REP_PATH, .panel = kind, .act = a, .width = W, .rep = rr, .lanes = W / (rr),       \
        .max_rows = REP_MAX_ROWS(rr), .max_groups = 4, .corr = c, .with_s = s, .run = fn           \
    }
#define AR_REP_SET32(sfx, c, s)                                                                    \
    static const ar_gemm_kernel k_##sfx[3] = {                                                     \
        AR_REP_KERNEL(run_##sfx##_r1, AR_PANEL_Q32, (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0, 1, c, s),   \
        AR_REP_KERNEL(run_##sfx##_r2, AR_PANEL_Q32, (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0, 2, c, s),   \
        AR_REP_KERNEL(run_##sfx##_r4, AR_PANEL_Q32, (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0, 4, c, s)};
#define AR_REP_SETK(sfx)                                                                           \
    static const ar_gemm_kernel k_##sfx[3] = {                                                     \
        AR_REP_KERNEL(run_##sfx##_r1, AR_PANEL_QK, AR_TYPE_Q8_K, 1, 0, false),                     \
        AR_REP_KERNEL(run_##sfx##_r2, AR_PANEL_QK, AR_TYPE_Q8_K, 2, 0, false),                     \
        AR_REP_KERNEL(run_##sfx##_r4, AR_PANEL_QK, AR_TYPE_Q8_K, 4, 0, false)};
#define AR_REP3(sfx) .rep = {&k_##sfx[0], &k_##sfx[1], &k_##sfx[2]}
/* The float formats' kernel (AR_PANEL_ROWS, one column per panel). */
#define AR_FLOAT_KERNEL(T, fn, rows)                                                               \
    {                                                                                              \
        .path = REP_PATH, .panel = AR_PANEL_ROWS, .act = T, .width = 1, .rep = 1, .lanes = 1,      \
        .max_rows = rows, .max_groups = 64, .run = fn                                              \
    }


/* The fold of a 32-value format's 8 running sums in ar_reduce8's order, ((s0 + s4) + (s2 + s6))
 * + ((s1 + s5) + (s3 + s7)), the sums computed one at a time by LANE(j, out) (running sum j of
 * P register groups into out[]), so that at most four are live: into acc[]. V: the vector type,
 * ADD its addition. */
#define AR_FOLD8(V, ADD, P, LANE, acc)                                                             \
    do {                                                                                           \
        V r_[4], b_[4], c_[4];                                                                     \
        LANE(0, acc);                                                                              \
        LANE(4, r_);                                                                               \
        _Pragma("GCC unroll 16") for (int p_ = 0; p_ < (P); p_++) acc[p_] = ADD(acc[p_], r_[p_]);  \
        LANE(2, b_);                                                                               \
        LANE(6, r_);                                                                               \
        _Pragma("GCC unroll 16") for (int p_ = 0; p_ < (P); p_++) acc[p_] =                        \
            ADD(acc[p_], ADD(b_[p_], r_[p_]));                                                     \
        LANE(1, b_);                                                                               \
        LANE(5, r_);                                                                               \
        _Pragma("GCC unroll 16") for (int p_ = 0; p_ < (P); p_++) b_[p_] = ADD(b_[p_], r_[p_]);    \
        LANE(3, c_);                                                                               \
        LANE(7, r_);                                                                               \
        _Pragma("GCC unroll 16") for (int p_ = 0; p_ < (P); p_++) acc[p_] =                        \
            ADD(acc[p_], ADD(b_[p_], ADD(c_[p_], r_[p_])));                                        \
    } while (0)

#endif
