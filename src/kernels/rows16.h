/* rows16.h: the pieces of the 16-row kernels (kernels.h) that the AVX-512 files share: where a
 * call's rows come from (a packed group or rows in place), a block's values and scales as
 * registers of the 16 rows, the K-quants' scale unpacking, the stores of results. Included by
 * avx512.c (the VNNI kernels) and amx.c (the AMX ones); needs AVX-512 F/BW/VL/DQ. */
#ifndef ARBOR_ROWS16_H
#define ARBOR_ROWS16_H

#include "simd.h"

#ifndef __AVX512BW__
#error "rows16.h needs AVX-512 (compile with -mavx512f -mavx512bw -mavx512vl -mavx512dq)"
#endif

#ifndef AI
#define AI AR_AI
#endif

static inline int32_t ar_load_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ================================ 16-row kernels ================================
 * 16 weight rows in the lanes of a register, one column broadcast from its own panel (width 1):
 * vpdpbusd takes the column's quant dword as an embedded broadcast and the unsigned values of
 * the 16 rows (4 each) as the other operand, so every weight block is unpacked once for all the
 * columns of a call, and each column's results are 16 consecutive outputs. The rows come from a
 * packed group (kernels.h: one aligned load gives a word of the 16 rows; lane r is row r) or in
 * place (each block's bytes transposed in registers; lane L is row IN_PLACE_ROW(L)).
 *
 * 32-value formats: block b's term goes to running sum b % 8 of its (row, column), kept in
 * acc[b % 8][column] (memory, for any number of columns), then the fold of ar_reduce8. K-quants:
 * one running sum per (row, column), super-blocks in order. */

/* Software prefetch distance, in blocks, of the packed kernels (avx512.c; kernels.c may tune it). */
extern int ar_avx512_prefetch_blocks;

#define IN_PLACE_ROW(L) (4 * ((L) % 4) + (L) / 4)

AI __m512i bcast_i32(const uint8_t *p) {
    return _mm512_set1_epi32(ar_load_i32(p));
}
AI __m512 bcast_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return _mm512_set1_ps(f);
}
/* s += 4-value dot products of the 16 rows' unsigned values w with the column's quant word at p */
AI __m512i dp_word(__m512i s, __m512i w, const uint8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(s) : "v"(w), "m"(*(const int32_t *)p));
    return s;
}

/* Stores 16 results of one column: lane L holds row L (packed) or IN_PLACE_ROW(L); rows past
 * nrows are not written; add: y += v. */
AI void store_rows16(bool packed, __m512 v, float *y, int nrows, bool add) {
    if (!packed)
        v = _mm512_permutexvar_ps(
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), v);
    const __mmask16 m = (__mmask16)((1u << nrows) - 1);
    if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), v);
    _mm512_mask_storeu_ps(y, m, v);
}

/* Where a call's 16 rows come from. Packed: the group's fp16 fields (hs) and words (ws). In place:
 * the row pointers, the scales' gather offsets (32-bit: matmul.c uses in-place 16-row kernels only
 * when 15 rows span less than 2 GB) and the next call's prefetcher. */
typedef struct {
    const uint8_t *hs, *ws;
    int64_t nb; /* blocks of a row */
    const uint8_t *rows[16];
    __m512i gidx;
    ar_prefetcher pf;
} rows16_src;

AI void rows16_open(ar_type t, bool packed, const void *w, size_t w_stride, int nrows, int64_t nb,
                    int64_t steps, rows16_src *src) {
    src->nb = nb;
    if (packed) {
        const ar_pack_layout L = ar_pack_layout_of(t);
        src->hs = w;
        src->ws = src->hs + ((size_t)nb * (size_t)L.n_halves * 32 + 63) / 64 * 64;
        return;
    }
    int32_t gofs[16];
    ar_row_pointers(w, w_stride, nrows, 16, src->rows);
    for (int l = 0; l < 16; l++) gofs[l] = (int32_t)(src->rows[IN_PLACE_ROW(l)] - src->rows[0]);
    src->gidx = _mm512_loadu_si512(gofs);
    /* while computing this call's 16 rows, fetch the next call's */
    src->pf = ar_prefetch_rows(src->rows[0], w_stride, 16, steps, true);
}

/* Where the packed kernels prefetch to (avx512.c; tune.c may change it): 0 nowhere, 1 L1 (T0),
 * 2 L2 (T1, the default: at one column, 0.90 of a plain read's bandwidth with T1 16 blocks
 * ahead, 0.78 with T0, 0.75 without, on the Sapphire Rapids VM; T0 stalls on full fill
 * buffers). */
extern int ar_avx512_prefetch_hint;

AI void prefetch_line(const void *p) {
    if (ar_avx512_prefetch_hint == 2) _mm_prefetch((const char *)p, _MM_HINT_T1);
    else if (ar_avx512_prefetch_hint == 1) _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/* Prefetch of packed block b + distance: its words and (every other block) its fp16 fields;
 * past the group's last block, the next group's (the next call's rows, contiguous in memory). */
AI void rows16_prefetch(ar_type t, const rows16_src *src, int64_t b) {
    const ar_pack_layout L = ar_pack_layout_of(t);
    /* the distance is in 32-value blocks: a K-quant super-block is 8 */
    const int64_t ahead = t >= AR_TYPE_Q2_K ? AR_MAX(1, ar_avx512_prefetch_blocks / 8)
                                            : ar_avx512_prefetch_blocks;
    int64_t a = b + ahead;
    const size_t wbytes = (size_t)L.rest_bytes * 16, hbytes = (size_t)L.n_halves * 32;
    const uint8_t *ws = src->ws, *hs = src->hs;
    if (a >= src->nb) { /* the next group: its fp16 fields right after these words */
        hs = ws + (size_t)src->nb * wbytes;
        ws = hs + ((size_t)src->nb * hbytes + 63) / 64 * 64;
        a -= src->nb;
    }
    const uint8_t *p = ws + (size_t)a * wbytes;
#pragma GCC unroll 16
    for (size_t l = 0; l < wbytes; l += 64) prefetch_line(p + l);
    if (L.n_halves == 2 || (b & 1) == 0) prefetch_line(hs + (size_t)a * hbytes);
}

/* 16 rows' 16 bytes at offset off (in place): lane L of t[q] = dword q of row IN_PLACE_ROW(L). */
AI void transpose16(const uint8_t *const *rows, size_t off, __m512i t[4]) {
    __m512i z[4];
#pragma GCC unroll 16
    for (int p = 0; p < 4; p++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[4 * p] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * p + 1] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * p + 2] + off)), 2);
        z[p] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * p + 3] + off)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    t[0] = _mm512_unpacklo_epi64(t0, t2);
    t[1] = _mm512_unpackhi_epi64(t0, t2);
    t[2] = _mm512_unpacklo_epi64(t1, t3);
    t[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Byte i of each dword = 0x10 where bit (first + i) of the dword h is set (Q5 fifth bits). */
AI __m512i bit4_of(__m512i h, int first) {
    const int byte = first / 8, shift = first % 8;
    const __m512i spread = _mm512_shuffle_epi8(
        h, _mm512_set4_epi32(0x0c0c0c0c + 0x01010101 * byte, 0x08080808 + 0x01010101 * byte,
                             0x04040404 + 0x01010101 * byte, 0x01010101 * byte));
    const __mmask64 set =
        _mm512_test_epi8_mask(spread, _mm512_set1_epi32((int)(0x08040201u << shift)));
    return _mm512_maskz_mov_epi8(set, _mm512_set1_epi8(0x10));
}

/* Block b of the 16 rows (32-value formats): words w[q] of 4 unsigned values each (value
 * 4q..4q+3 of every row; Q8_0 as q + 128), the scales d and (the _1 formats) the mins m. */
typedef struct {
    __m512i w[8];
    __m512 d, m;
} rows16_block;

/* prefetch: the packed blocks' prefetch, distance ahead in block order (kernels that visit the
 * blocks in another order prefetch themselves) */
AI void rows16_block_load_pf(ar_type t, bool packed, bool prefetch, const rows16_src *src,
                             int64_t b, rows16_block *x) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    __m512i q[8];
    if (packed) {
        const ar_pack_layout L = ar_pack_layout_of(t);
        if (prefetch) rows16_prefetch(t, src, b);
        const uint8_t *h = src->hs + (size_t)b * (size_t)L.n_halves * 32;
        const uint8_t *wp = src->ws + (size_t)b * (size_t)L.rest_bytes * 16;
        x->d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)h));
        if (ar_q32_has_min(t)) x->m = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(h + 32)));
#pragma GCC unroll 16
        for (int i = 0; i < L.rest_bytes / 4; i++) q[i] = _mm512_load_si512(wp + 64 * i);
    } else {
        const size_t off = (size_t)b * ar_block_bytes(t);
        const int qs = t == AR_TYPE_Q4_1 ? 4 : 2;
        transpose16(src->rows, off + qs, q);
        if (t == AR_TYPE_Q8_0) transpose16(src->rows, off + 18, q + 4);
        /* the first 4 bytes of each row's block: d, and m for the _1 formats */
        const __m512i dm = _mm512_i32gather_epi32(src->gidx, src->rows[0] + off, 1);
        x->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        if (ar_q32_has_min(t))
            x->m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
    }
    switch (t) {
    case AR_TYPE_Q8_0:
#pragma GCC unroll 16
        for (int i = 0; i < 8; i++) x->w[i] = _mm512_xor_si512(q[i], flip);
        break;
    case AR_TYPE_Q5_0:
    case AR_TYPE_Q5_1: /* word 0: qh (bit j: fifth bit of value j); words 1-4: the nibbles */
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++) {
            x->w[i] = _mm512_or_si512(_mm512_and_si512(q[1 + i], m4), bit4_of(q[0], 4 * i));
            x->w[i + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q[1 + i], 4), m4),
                                          bit4_of(q[0], 16 + 4 * i));
        }
        break;
    default: /* Q4_0, Q4_1: word q holds values 4q.. (low nibbles) and 16 + 4q.. (high) */
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++) {
            x->w[i] = _mm512_and_si512(q[i], m4);
            x->w[i + 4] = _mm512_and_si512(_mm512_srli_epi16(q[i], 4), m4);
        }
        break;
    }
}

AI void rows16_block_load(ar_type t, bool packed, const rows16_src *src, int64_t b,
                          rows16_block *x) {
    rows16_block_load_pf(t, packed, true, src, b, x);
}

/* Prefetch of the whole packed group's blocks [b0, b1) (fp16 fields and words), for kernels that
 * do not visit the blocks in order. */
AI void rows16_prefetch_blocks(ar_type t, const rows16_src *src, int64_t b0, int64_t b1) {
    const ar_pack_layout L = ar_pack_layout_of(t);
    const size_t wbytes = (size_t)L.rest_bytes * 16, hbytes = (size_t)L.n_halves * 32;
    for (const uint8_t *p = src->ws + (size_t)b0 * wbytes, *e = src->ws + (size_t)b1 * wbytes; p < e;
         p += 64)
        prefetch_line(p);
    for (const uint8_t *p = src->hs + (size_t)b0 * hbytes, *e = src->hs + (size_t)b1 * hbytes; p < e;
         p += 64)
        prefetch_line(p);
}

/* Byte j % 4 of each dword of v as an int32 (zero-extended; sign-extended with sx). */
AI __m512i byte_of(__m512i v, int j, bool sx) {
    const int b = j % 4;
    if (sx) {
        const __m512i idx = _mm512_set4_epi32((12 + b) << 24 | 0x808080, (8 + b) << 24 | 0x808080,
                                              (4 + b) << 24 | 0x808080, b << 24 | 0x808080);
        return _mm512_srai_epi32(_mm512_shuffle_epi8(v, idx), 24);
    }
    const __m512i idx = _mm512_set4_epi32(0x80808000 | (12 + b), 0x80808000 | (8 + b),
                                          0x80808000 | (4 + b), 0x80808000 | b);
    return _mm512_shuffle_epi8(v, idx);
}
/* Bytes j % 4 and (j + 1) % 4 of each dword of v as int16 (lo, hi) (sign-extended with sx; else
 * byte j % 4 twice, zero-extended: a min that multiplies both bsums of its 32 values). */
AI __m512i pair_of(__m512i v, int j, bool sx) {
    const int b = j % 4;
    if (sx) { /* bytes b, b + 1 to the high halves of the two int16, then shifted down */
        const __m512i idx = _mm512_set4_epi32((13 + b) << 24 | 0x80 << 16 | (12 + b) << 8 | 0x80,
                                              (9 + b) << 24 | 0x80 << 16 | (8 + b) << 8 | 0x80,
                                              (5 + b) << 24 | 0x80 << 16 | (4 + b) << 8 | 0x80,
                                              (1 + b) << 24 | 0x80 << 16 | b << 8 | 0x80);
        return _mm512_srai_epi16(_mm512_shuffle_epi8(v, idx), 8);
    }
    const __m512i idx = _mm512_set4_epi32(0x80008000 | (12 + b) << 16 | (12 + b),
                                          0x80008000 | (8 + b) << 16 | (8 + b),
                                          0x80008000 | (4 + b) << 16 | (4 + b),
                                          0x80008000 | b << 16 | b);
    return _mm512_shuffle_epi8(v, idx);
}

/* Q4_K/Q5_K: the 16 rows' 6-bit scales and mins of a packed super-block (words 0-2, as
 * ar_k4_scales_mins): sc[0] = scales 0-3, sc[1] = scales 4-7, mn[] the mins, one byte each. */
AI void k4_scales_mins(const uint8_t *wp, __m512i sc[2], __m512i mn[2]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi8(0x3F), m2 = _mm512_set1_epi8(3);
    const __m512i w0 = _mm512_load_si512(wp), w1 = _mm512_load_si512(wp + 64),
                  w2 = _mm512_load_si512(wp + 128);
    sc[0] = _mm512_and_si512(w0, m6);
    sc[1] = _mm512_or_si512(_mm512_and_si512(w2, m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 6), m2), 4));
    mn[0] = _mm512_and_si512(w1, m6);
    mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 6), m2), 4));
}

/* Q4_K/Q5_K: the unsigned values of sub-blocks 2 ch (lo) and 2 ch + 1 (hi) of a packed
 * super-block, as words of the 16 rows (qs from word 3, Q5_K's qh words 3-10 and qs from 11). */
AI void k4_values(bool q5, const uint8_t *wp, int ch, __m512i lo[8], __m512i hi[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    const int qs0 = q5 ? 11 : 3;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) {
        const __m512i v = _mm512_load_si512(wp + 64 * (qs0 + 8 * ch + q));
        lo[q] = _mm512_and_si512(v, m4);
        hi[q] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if (q5) { /* qh word q: bit 2ch of byte l is value 64ch + 4q + l's, 2ch+1 32 further */
            const __m512i hb = _mm512_load_si512(wp + 64 * (3 + q));
            lo[q] = _mm512_or_si512(
                lo[q], _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 2 * ch), one), 4));
            hi[q] = _mm512_or_si512(
                hi[q],
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 2 * ch + 1), one), 4));
        }
    }
}

/* Q6_K: the unsigned values u (value u - 32) of sub-block s (values 32 s ..) of a packed
 * super-block: low 4 bits from the ql words 0-31, high 2 from the qh words 32-47. */
AI void q6_values(const uint8_t *wp, int s, __m512i u[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const int half = s / 4, kk = s % 4;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) {
        const __m512i ql = _mm512_load_si512(wp + 64 * (16 * half + 8 * (kk & 1) + q));
        const __m512i qh = _mm512_load_si512(wp + 64 * (32 + 8 * half + q));
        const __m512i lo =
            kk < 2 ? _mm512_and_si512(ql, m4) : _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4);
        u[q] = _mm512_or_si512(
            lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2 * kk), m3), 4));
    }
}

#endif
