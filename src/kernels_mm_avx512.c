/* kernels_mm_avx512.c: AVX-512 batched kernels, one weight row against up to 64 activation
 * columns (panels and the exactness argument: quants.h). The quantized kernels need VNNI:
 * vpdpbusd multiplies a broadcast dword of four unsigned weight values with the same four
 * quants of 16 columns at once, so the integer sum of a block comes out per column with no
 * horizontal reduction, and each weight block is unpacked once for all columns.
 *
 * The float order of the 32-value formats is the reference's: block b's term goes to running
 * sum b % 8, then ar_reduce8. Keeping 8 running sums per panel would need too many registers,
 * so the blocks are visited lane by lane (b = j, j + 8, ...: each running sum still sees its
 * terms in order) and the finished sums are folded at once in ar_reduce8's tree. */
#include "quants.h"

#if defined(__x86_64__) || defined(__i386__)

#define AI static inline __attribute__((always_inline))
/* "#pragma GCC unroll": the small loops over rows, columns and vectors must unroll fully, so
 * that their arrays live in registers */

static inline float half_to_float(ar_half h) {
    return _cvtsh_ss(h);
}
/* Makes the compiler forget what it stored to buffers, so that the broadcasts of unpacked weight
 * dwords are loads (vpbroadcastd from memory: a load port) instead of shuffles out of registers
 * (two shuffle-port instructions each, which would be the bottleneck). */
#define FORGET_STORES() __asm__ __volatile__("" ::: "memory")

static inline int32_t load_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ================================ F32, F16, BF16 ================================ */

/* ar_reduce32 of the 32 running sums in a0 (sums 0-15) and a1 (16-31). */
static inline float reduce32(__m512 a0, __m512 a1) {
    const __m512 z = _mm512_add_ps(a0, a1);
    return ar_mm256_reduce8(_mm256_add_ps(_mm512_castps512_ps256(z), _mm512_extractf32x8_ps(z, 1)));
}

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

/* Interleaves the 8 dwords of RR rows (u[r]) so that dword q of row r lands at q * RR + r. */
AI void interleave_rows(int RR, const __m256i *u, int32_t *out) {
    if (RR == 1) {
        _mm256_store_si256((__m256i *)out, u[0]);
    } else if (RR == 2) {
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(u[0]), u[1], 1);
        const __m512i idx = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        _mm512_store_si512(out, _mm512_permutexvar_epi32(idx, z));
    } else {
        const __m512i z0 = _mm512_inserti64x4(_mm512_castsi256_si512(u[0]), u[1], 1);
        const __m512i z1 = _mm512_inserti64x4(_mm512_castsi256_si512(u[2]), u[3], 1);
        const __m512i lo =
            _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
        const __m512i hi =
            _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
        _mm512_store_si512(out, _mm512_permutex2var_epi32(z0, lo, z1));
        _mm512_store_si512(out + 16, _mm512_permutex2var_epi32(z0, hi, z1));
    }
}

/* Writes the folded sums of P register groups (lane c * RR + r: column c, row p * RR + r). */
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

#define Q32_D    (32 * W) /* offset of d[] in a block record */
#define Q32_CORR (36 * W) /* of corr[] */
#define Q32_S    (40 * W) /* of s[] */

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

/* One weight block as 32 unsigned values u in value order (value = u - offset, the offset being
 * the panel's corr multiplier), its scale and (for the _1 formats) its min. */
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
        /* u = q + 128 */
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs),
                                _mm256_set1_epi8((char)0x80));
    }
    }
}

/* Block b of RR rows, interleaved: dwords wt[q * RR + r], scales d[r], mins m[r]. */
typedef struct {
    int32_t wt[8 * 4] __attribute__((aligned(64)));
    float d[4] __attribute__((aligned(16)));
    float m[4] __attribute__((aligned(16)));
} q32_tile_w;

AI void q32_weights(int fmt, int RR, const uint8_t *const *rows, size_t off, q32_tile_w *t) {
    __m256i u[4];
#pragma GCC unroll 16
    for (int r = 0; r < RR; r++) u[r] = unpack32(fmt, rows[r] + off, &t->d[r], &t->m[r]);
    interleave_rows(RR, u, t->wt);
}

/* Running sum j (blocks j, j + 8, ...) of P groups of RR rows against one panel. */
AI void q32_lane(int fmt, int RR, int P, int64_t nb, int64_t j, const uint8_t *const *rows,
                 const uint8_t *panel, __m512 *run, ar_prefetcher *pf) {
    const size_t wsz = q32_wsize(fmt), rec = q32_record(fmt);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) run[p] = _mm512_setzero_ps();
    for (int64_t b = j; b < nb; b += 8) {
        ar_prefetch_step(pf);
        q32_tile_w t[4];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) q32_weights(fmt, RR, rows + p * RR, (size_t)b * wsz, &t[p]);
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
        const __m512i corr = _mm512_load_si512(pb + Q32_CORR);
        const __m512 da = _mm512_load_ps(pb + Q32_D);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const __m512i sumi = _mm512_sub_epi32(_mm512_add_epi32(s0[p], s1[p]), corr);
            __m512 term = _mm512_mul_ps(_mm512_mul_ps(bcast_rows_ps(RR, t[p].d), da),
                                        _mm512_cvtepi32_ps(sumi));
            if (q32_has_min(fmt))
                term = _mm512_add_ps(
                    term, _mm512_mul_ps(bcast_rows_ps(RR, t[p].m), _mm512_load_ps(pb + Q32_S)));
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
    __m512 a[4], b[4], c[4], r[4];
    q32_lane(fmt, RR, P, nb, 0, rows, panel, a, &pf);
    q32_lane(fmt, RR, P, nb, 4, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) a[p] = _mm512_add_ps(a[p], r[p]);
    q32_lane(fmt, RR, P, nb, 2, rows, panel, b, &pf);
    q32_lane(fmt, RR, P, nb, 6, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) a[p] = _mm512_add_ps(a[p], _mm512_add_ps(b[p], r[p]));
    q32_lane(fmt, RR, P, nb, 1, rows, panel, b, &pf);
    q32_lane(fmt, RR, P, nb, 5, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) b[p] = _mm512_add_ps(b[p], r[p]);
    q32_lane(fmt, RR, P, nb, 3, rows, panel, c, &pf);
    q32_lane(fmt, RR, P, nb, 7, rows, panel, r, &pf);
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
        a[p] = _mm512_add_ps(a[p], _mm512_add_ps(b[p], _mm512_add_ps(c[p], r[p])));
    store_tile(RR, P, a, out, out_stride, nrows);
}

/* Row pointers of a call, the missing ones repeating the last row (their results are dropped). */
AI void row_pointers(const void *w, size_t ws, int nrows, int count, const uint8_t **rows) {
    for (int r = 0; r < count; r++)
        rows[r] = (const uint8_t *)w + (size_t)AR_MIN(r, nrows - 1) * ws;
}

#define Q32_RUN(name, fmt, RR, P)                                                                  \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        const uint8_t *rows[8];                                                                    \
        const int C = W / (RR);                                                                    \
        if (nrows <= (RR)) {                                                                       \
            row_pointers(w, w_stride, nrows, RR, rows);                                            \
            for (int g = 0; g < ngroups; g++)                                                      \
                q32_tile(fmt, RR, 1, k, rows, panel + (size_t)g * pstride, out + C * g,            \
                         C * ngroups, nrows, w_stride, g == 0);                                    \
        } else {                                                                                   \
            row_pointers(w, w_stride, nrows, (RR) * (P), rows);                                    \
            for (int g = 0; g < ngroups; g++)                                                      \
                q32_tile(fmt, RR, P, k, rows, panel + (size_t)g * pstride, out + C * g,            \
                         C * ngroups, nrows, w_stride, g == 0);                                    \
        }                                                                                          \
    }
#define Q32_RUNS(sfx, fmt)                                                                         \
    Q32_RUN(run_##sfx##_r1, fmt, 1, 4)                                                             \
    Q32_RUN(run_##sfx##_r2, fmt, 2, 4)                                                             \
    Q32_RUN(run_##sfx##_r4, fmt, 4, 2)
Q32_RUNS(q4_0, F_Q4_0)
Q32_RUNS(q4_1, F_Q4_1)
Q32_RUNS(q5_0, F_Q5_0)
Q32_RUNS(q5_1, F_Q5_1)
Q32_RUNS(q8_0, F_Q8_0)

/* ---- one column (n = 1): the 16 lanes hold 16 weight rows, the column is broadcast ----
 * A block's quants of 16 rows are transposed in registers: four rows' 16 bytes per register,
 * then a 4 x 4 dword transpose within each 128-bit lane. Lane L ends up holding row
 * 4 * (L % 4) + L / 4 (GEMV_ROW). The 8 running sums of the reference (block b to sum b % 8) are
 * 8 registers, each lane a row; their fold is ar_reduce8's tree, lane-wise. The panel is one
 * column (width 1): per block its 8 quant dwords, d, corr (and s). */

#define GEMV_ROW(L) (4 * ((L) % 4) + (L) / 4)

/* 16 rows' 16 bytes at offset off: lane L of t[q] = dword q of row GEMV_ROW(L). */
AI void gemv_transpose16(const uint8_t *const *rows, size_t off, __m512i t[4]) {
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

/* Block b of 16 rows, transposed: quant dwords wq[q] (lane L: row GEMV_ROW(L)), and the rows'
 * scales (and mins) as floats. */
typedef struct {
    __m512i q[8];
    __m512 d, m;
} gemv_block;

AI void gemv_weights(int fmt, const uint8_t *const *rows, __m512i gidx, int64_t b, gemv_block *w) {
    const size_t off = (size_t)b * q32_wsize(fmt);
    if (fmt == F_Q8_0) {
        gemv_transpose16(rows, off + 2, w->q);
        gemv_transpose16(rows, off + 18, w->q + 4);
#pragma GCC unroll 16
        for (int q = 0; q < 8; q++)
            w->q[q] = _mm512_xor_si512(w->q[q], _mm512_set1_epi8((char)0x80));
    } else { /* Q4_0, Q4_1: dword q of the packed bytes holds values 4q.. (low nibbles) and
              * 16 + 4q.. (high nibbles) */
        __m512i t[4];
        gemv_transpose16(rows, off + (fmt == F_Q4_0 ? 2 : 4), t);
        const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++) {
            w->q[q] = _mm512_and_si512(t[q], m4);
            w->q[q + 4] = _mm512_and_si512(_mm512_srli_epi16(t[q], 4), m4);
        }
    }
    /* the first 4 bytes of each row's block: d, and m for the _1 formats */
    const __m512i dm = _mm512_i32gather_epi32(gidx, rows[0] + off, 1);
    w->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
    if (q32_has_min(fmt)) w->m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
}

/* The term of block b for 16 rows against one column's panel: (d_w * d_a) * sumi [+ m_w * s_a]. */
AI __m512 gemv_term(int fmt, const gemv_block *w, int64_t b, const uint8_t *panel) {
    const size_t rec = (size_t)4 * (q32_has_min(fmt) ? 11 : 10);
    const uint8_t *pb = panel + (size_t)b * rec;
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int q = 0; q < 8; q += 2) {
        s0 = _mm512_dpbusd_epi32(s0, w->q[q], _mm512_set1_epi32(load_i32(pb + 4 * q)));
        s1 = _mm512_dpbusd_epi32(s1, w->q[q + 1], _mm512_set1_epi32(load_i32(pb + 4 * q + 4)));
    }
    const __m512i sumi =
        _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(load_i32(pb + 36)));
    float da, sa = 0;
    memcpy(&da, pb + 32, 4);
    __m512 term = _mm512_mul_ps(_mm512_mul_ps(w->d, _mm512_set1_ps(da)), _mm512_cvtepi32_ps(sumi));
    if (q32_has_min(fmt)) {
        memcpy(&sa, pb + 40, 4);
        term = _mm512_add_ps(term, _mm512_mul_ps(w->m, _mm512_set1_ps(sa)));
    }
    return term;
}

/* ---- the same on repacked weights (opt-in copy made at load) ----
 * A group of 16 rows holds, for blocks b = 0..nb-1, the rows' scales (F16, row r at 32 b + 2 r),
 * padded to 64 bytes, then the quant dwords: dword q of row r of block b at
 * QB b + 64 q + 4 r (QB = 256 for Q4_0, 512 for Q8_0, whose bytes are stored with the sign bit
 * flipped, as gemv_weights uses them). Lane r is row r, computing what the in-place kernel
 * computes for that row in the same order, so the results are the same bits, without the
 * in-register transposes and the scale gathers of in-place rows. Rows past the last (a short
 * group) repeat it. */

AI size_t pk_qbytes(int fmt) { return fmt == F_Q8_0 ? 512 : 256; }
AI size_t pk_scale_bytes(int64_t nb) { return ((size_t)nb * 32 + 63) / 64 * 64; }
AI size_t pk_group_bytes(int fmt, int64_t k) {
    const int64_t nb = k / AR_QK;
    return pk_scale_bytes(nb) + (size_t)nb * pk_qbytes(fmt);
}

static void pk_repack(int fmt, const void *w, size_t ws, int nrows, int64_t k, void *out) {
    const int64_t nb = k / AR_QK;
    const size_t wsz = q32_wsize(fmt), qb = pk_qbytes(fmt), nq = qb / 64;
    uint8_t *sc = out, *qs = (uint8_t *)out + pk_scale_bytes(nb);
    memset(sc, 0, pk_scale_bytes(nb));
    for (int r = 0; r < 16; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)AR_MIN(r, nrows - 1) * ws;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * wsz;
            memcpy(sc + (size_t)b * 32 + 2 * r, blk, 2);
            for (size_t q = 0; q < nq; q++) {
                uint8_t *d = qs + (size_t)b * qb + 64 * q + 4 * (size_t)r;
                memcpy(d, blk + 2 + 4 * q, 4);
                if (fmt == F_Q8_0)
                    for (int i = 0; i < 4; i++) d[i] ^= 0x80;
            }
        }
    }
}

/* software prefetch this many blocks ahead (into the next group past the last block): the
 * hardware streamer stops at 4 KB pages */
#define PK_AHEAD 16

/* Block b of a repacked group: gemv_weights's registers, loaded as they lie. */
AI void gemvp_weights(int fmt, const uint8_t *sc, const uint8_t *qs, int64_t b, gemv_block *w) {
    const uint8_t *ahead = qs + (size_t)(b + PK_AHEAD) * pk_qbytes(fmt);
#pragma GCC unroll 8
    for (size_t l = 0; l < pk_qbytes(fmt); l += 64)
        _mm_prefetch((const char *)ahead + l, _MM_HINT_T0);
    if ((b & 1) == 0) _mm_prefetch((const char *)sc + (size_t)(b + PK_AHEAD) * 32, _MM_HINT_T0);
    sc += (size_t)b * 32;
    qs += (size_t)b * pk_qbytes(fmt);
    w->d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)sc));
    if (fmt == F_Q8_0) {
#pragma GCC unroll 16
        for (int q = 0; q < 8; q++) w->q[q] = _mm512_load_si512(qs + 64 * q);
    } else {
        const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++) {
            const __m512i t = _mm512_load_si512(qs + 64 * q);
            w->q[q] = _mm512_and_si512(t, m4);
            w->q[q + 4] = _mm512_and_si512(_mm512_srli_epi16(t, 4), m4);
        }
    }
}

/* Where a call's 16 rows come from: in place (row pointers and the scales' gather offsets) or a
 * repacked group (its scales and quant dwords). */
typedef struct {
    const uint8_t *rows[16];
    __m512i gidx;
    const uint8_t *sc, *qs;
} gemv_src;

/* Block b of the 16 rows into running sum j of each of the C columns. */
AI void gemv_block_add(int fmt, bool packed, int C, const gemv_src *src, int64_t b,
                       const uint8_t *panel, size_t pstride, __m512 acc[4][8], int j) {
    gemv_block wb;
    if (packed) gemvp_weights(fmt, src->sc, src->qs, b, &wb);
    else gemv_weights(fmt, src->rows, src->gidx, b, &wb);
#pragma GCC unroll 16
    for (int c = 0; c < C; c++)
        acc[c][j] = _mm512_add_ps(acc[c][j], gemv_term(fmt, &wb, b, panel + (size_t)c * pstride));
}

/* 16 rows against C columns (C one-column panels, pstride apart): each block's weights are
 * made into registers once for all columns; column c's 8 running sums are acc[c][0..7]. The
 * rows are in place (ws bytes apart from w; lane L holds row GEMV_ROW(L)) or, packed, one
 * repacked group at w (lane r holds row r). Outputs go to out[row * C + c]. */
AI void gemv_rows(int fmt, bool packed, int C, int64_t k, const void *w, size_t ws, int nrows,
                  const uint8_t *panel, size_t pstride, float *out) {
    const int64_t nb = k / AR_QK;
    gemv_src src;
    ar_prefetcher pf = {0};
    if (packed) {
        src.sc = w;
        src.qs = src.sc + pk_scale_bytes(nb);
    } else {
        int32_t gofs[16];
        for (int r = 0; r < 16; r++)
            src.rows[r] = (const uint8_t *)w + (size_t)AR_MIN(r, nrows - 1) * ws;
        for (int l = 0; l < 16; l++) gofs[l] = (int32_t)(src.rows[GEMV_ROW(l)] - src.rows[0]);
        src.gidx = _mm512_loadu_si512(gofs);
        /* while computing this call's 16 rows, fetch the next call's (ar_prefetcher); the
         * packed kernel prefetches within its contiguous group instead */
        pf = ar_prefetch_rows(src.rows[0], ws, 16, (nb + 7) / 8, true);
    }
    __m512 acc[4][8];
#pragma GCC unroll 16
    for (int c = 0; c < C; c++)
#pragma GCC unroll 16
        for (int j = 0; j < 8; j++) acc[c][j] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        if (!packed) ar_prefetch_step(&pf);
#pragma GCC unroll 16
        for (int j = 0; j < 8; j++)
            gemv_block_add(fmt, packed, C, &src, b + j, panel, pstride, acc, j);
    }
    if (!packed) ar_prefetch_rest(&pf);
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++)
        if (b + j < nb) gemv_block_add(fmt, packed, C, &src, b + j, panel, pstride, acc, j);
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) {
        const __m512 *a = acc[c];
        const __m512 sum =
            _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
                          _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])));
        float t[16] __attribute__((aligned(64)));
        _mm512_store_ps(t, sum);
        for (int l = 0; l < 16; l++) {
            const int row = packed ? l : GEMV_ROW(l);
            if (row < nrows) out[row * C + c] = t[l];
        }
    }
}

/* C is a constant in each case, so each column count is its own unrolled loop */
#define GEMV_RUN(name, fmt, packed)                                                                \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        switch (ngroups) {                                                                         \
        case 1:                                                                                    \
            gemv_rows(fmt, packed, 1, k, w, w_stride, nrows, panel, pstride, out);                 \
            break;                                                                                 \
        case 2:                                                                                    \
            gemv_rows(fmt, packed, 2, k, w, w_stride, nrows, panel, pstride, out);                 \
            break;                                                                                 \
        case 3:                                                                                    \
            gemv_rows(fmt, packed, 3, k, w, w_stride, nrows, panel, pstride, out);                 \
            break;                                                                                 \
        default:                                                                                   \
            gemv_rows(fmt, packed, 4, k, w, w_stride, nrows, panel, pstride, out);                 \
            break;                                                                                 \
        }                                                                                          \
    }
GEMV_RUN(gemv_q4_0, F_Q4_0, false)
GEMV_RUN(gemv_q4_1, F_Q4_1, false)
GEMV_RUN(gemv_q8_0, F_Q8_0, false)
GEMV_RUN(gemvp_q4_0, F_Q4_0, true)
GEMV_RUN(gemvp_q8_0, F_Q8_0, true)

#define GEMV_PACKING(name, fmt)                                                                    \
    static size_t name##_group_bytes(int64_t k) { return pk_group_bytes(fmt, k); }                 \
    static void name##_repack(const void *w, size_t ws, int nrows, int64_t k, void *out) {         \
        pk_repack(fmt, w, ws, nrows, k, out);                                                      \
    }
GEMV_PACKING(gemvp_q4_0, F_Q4_0)
GEMV_PACKING(gemvp_q8_0, F_Q8_0)

/* ================================ K-quants ================================ */

#define QK_D      (256 * W) /* offset of d[] in a super-block record */
#define QK_BS     (260 * W) /* of the bsum pairs */
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

/* One weight super-block unpacked: 256 unsigned values u in value order, the scales, and the
 * 16-bit pairs that multiply the columns' bsum pairs (mins, or offsets times scales). */
typedef struct {
    uint8_t u[256] __attribute__((aligned(64)));
    int32_t sc[16];  /* per 32 values (Q4_K, Q5_K: 8) or per 16 values (Q2_K, Q3_K, Q6_K) */
    int32_t pair[8]; /* dword k: (x_{2k}, x_{2k+1}) as int16, x per 16-value group */
    float d, dmin;   /* dmin: Q2_K, Q4_K, Q5_K */
} qk_unpacked;

static inline int32_t pair16(int lo, int hi) {
    return (int32_t)(((uint32_t)(uint16_t)(int16_t)hi << 16) | (uint16_t)(int16_t)lo);
}

/* Q2_K/Q3_K qs: value 128c + 32k + l is bits 2k of byte 32c + l. */
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

AI void unpack_k(int fmt, const uint8_t *wb, qk_unpacked *x) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    switch (fmt) {
    case F_Q2_K: {
        const ar_block_q2_K *b = (const ar_block_q2_K *)wb;
        unpack_2bit(b->qs, x->u);
        for (int g = 0; g < 16; g++) x->sc[g] = b->scales[g] & 0xF;
        for (int k = 0; k < 8; k++)
            x->pair[k] = pair16(b->scales[2 * k] >> 4, b->scales[2 * k + 1] >> 4);
        x->d = half_to_float(b->d);
        x->dmin = half_to_float(b->dmin);
        break;
    }
    case F_Q3_K: {
        /* u = 2-bit field + 4 * high bit in [0, 7]; value u - 4 */
        const ar_block_q3_K *b = (const ar_block_q3_K *)wb;
        unpack_2bit(b->qs, x->u);
        __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
#pragma GCC unroll 16
        for (int i = 0; i < 8; i++) { /* values 32i..32i+31: bit i of hmask[l] */
            __m256i *p = (__m256i *)(x->u + 32 * i);
            _mm256_store_si256(p, _mm256_or_si256(_mm256_load_si256(p),
                                                  _mm256_slli_epi16(_mm256_and_si256(hm, one), 2)));
            hm = _mm256_srli_epi16(hm, 1);
        }
        for (int g = 0; g < 16; g++) x->sc[g] = ar_scale_q3_K(g, b->scales) - 32;
        for (int k = 0; k < 8; k++) x->pair[k] = pair16(-4 * x->sc[2 * k], -4 * x->sc[2 * k + 1]);
        x->d = half_to_float(b->d);
        x->dmin = 0;
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
            x->sc[j] = sc;
            x->pair[j] = pair16(m, m); /* the min of 32 values: both its 16-value groups */
            x->sc[8 + j] = 0;
        }
        x->d = half_to_float(hd);
        x->dmin = half_to_float(hmin);
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
        for (int g = 0; g < 16; g++) x->sc[g] = b->scales[g];
        for (int k = 0; k < 8; k++)
            x->pair[k] = pair16(-32 * b->scales[2 * k], -32 * b->scales[2 * k + 1]);
        x->d = half_to_float(b->d);
        x->dmin = 0;
        break;
    }
    }
}

/* Super-block of RR rows, interleaved for the lanes: dword q of row r at wt[q * RR + r], the
 * scales at sc[j * RR + r], the bsum multipliers at pair[k * RR + r]. */
typedef struct {
    int32_t wt[64 * 4] __attribute__((aligned(64)));
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

/* P groups of RR rows against one panel; super-block terms go to one running sum, in order. */
AI void qk_tile(int fmt, int RR, int P, int64_t k, const uint8_t *const *rows, const uint8_t *panel,
                float *out, int out_stride, int nrows, size_t ws, bool first) {
    const size_t wsz = qk_wsize(fmt);
    const bool per32 = fmt == F_Q4_K || fmt == F_Q5_K;
    const bool has_min = fmt == F_Q2_K || fmt == F_Q4_K || fmt == F_Q5_K;
    const int span = per32 ? 8 : 4; /* dwords per scale */
    __m512 sum[4];
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) sum[p] = _mm512_setzero_ps();
    qk_tile_w t[4];
    ar_prefetcher pf = ar_prefetch_rows(rows[0], ws, RR * P, k / AR_QK_K, first);
    for (int64_t i = 0; i < k / AR_QK_K; i++) {
        ar_prefetch_step(&pf);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) qk_weights(fmt, RR, rows + p * RR, (size_t)i * wsz, &t[p]);
        FORGET_STORES();
        const uint8_t *pb = panel + (size_t)i * QK_RECORD;
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
            const __m512i bs = _mm512_load_si512(pb + QK_BS + 64 * q);
#pragma GCC unroll 16
            for (int p = 0; p < P; p++)
                pairs[p] = _mm512_dpwssd_epi32(pairs[p], bcast_rows(RR, t[p].pair + q * RR), bs);
        }
        const __m512 da = _mm512_load_ps(pb + QK_D);
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

#define QK_RUN(name, fmt, RR, P)                                                                   \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ngroups,                   \
                     float *restrict out) {                                                        \
        const uint8_t *rows[8];                                                                    \
        const int C = W / (RR);                                                                    \
        if (nrows <= (RR)) {                                                                       \
            row_pointers(w, w_stride, nrows, RR, rows);                                            \
            for (int g = 0; g < ngroups; g++)                                                      \
                qk_tile(fmt, RR, 1, k, rows, panel + (size_t)g * pstride, out + C * g,             \
                        C * ngroups, nrows, w_stride, g == 0);                                     \
        } else {                                                                                   \
            row_pointers(w, w_stride, nrows, (RR) * (P), rows);                                    \
            for (int g = 0; g < ngroups; g++)                                                      \
                qk_tile(fmt, RR, P, k, rows, panel + (size_t)g * pstride, out + C * g,             \
                        C * ngroups, nrows, w_stride, g == 0);                                     \
        }                                                                                          \
    }
#define QK_RUNS(sfx, fmt)                                                                          \
    QK_RUN(run_##sfx##_r1, fmt, 1, 4)                                                              \
    QK_RUN(run_##sfx##_r2, fmt, 2, 4)                                                              \
    QK_RUN(run_##sfx##_r4, fmt, 4, 2)
QK_RUNS(q2_K, F_Q2_K)
QK_RUNS(q3_K, F_Q3_K)
QK_RUNS(q4_K, F_Q4_K)
QK_RUNS(q5_K, F_Q5_K)
QK_RUNS(q6_K, F_Q6_K)

/* ================================ the table ================================ */

static const ar_gemm_kernel k_f32 = {.path = "avx512",
                                     .panel = AR_PANEL_ROWS,
                                     .act = AR_TYPE_F32,
                                     .width = 1,
                                     .rep = 1,
                                     .lanes = 1,
                                     .max_rows = 4,
                                     .max_groups = 64,
                                     .run = run_f32};
static const ar_gemm_kernel k_f16 = {.path = "avx512",
                                     .panel = AR_PANEL_ROWS,
                                     .act = AR_TYPE_F16,
                                     .width = 1,
                                     .rep = 1,
                                     .lanes = 1,
                                     .max_rows = 4,
                                     .max_groups = 64,
                                     .run = run_f16};
static const ar_gemm_kernel k_bf16 = {.path = "avx512",
                                      .panel = AR_PANEL_ROWS,
                                      .act = AR_TYPE_BF16,
                                      .width = 1,
                                      .rep = 1,
                                      .lanes = 1,
                                      .max_rows = 4,
                                      .max_groups = 64,
                                      .run = run_bf16};

#define QKERNEL(fn, kind, a, rr, c, s)                                                             \
    {                                                                                              \
        .path = "avx512vnni", .panel = kind, .act = a, .width = W, .rep = rr, .lanes = W / (rr),   \
        .max_rows = (rr) == 4 ? 8 : 4 * (rr), .max_groups = 4, .corr = c, .with_s = s, .run = fn   \
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
Q32_SET(q8_0, 128, false)
QK_SET(q2_K)
QK_SET(q3_K)
QK_SET(q4_K)
QK_SET(q5_K)
QK_SET(q6_K)

/* n = 1..4 kernels: one-column panels (width 1), 16 rows a call (gathering the rows' scales with
 * 32-bit offsets: matmul.c uses them only when 15 rows span less than 2 GB) */
#define GEMV_KERNEL_FIELDS(fn, c, s)                                                               \
    .path = "avx512vnni", .panel = AR_PANEL_Q32, .act = (s) ? AR_TYPE_Q8_1 : AR_TYPE_Q8_0,         \
    .width = 1, .rep = 1, .lanes = 1, .max_rows = 16, .max_groups = 4, .corr = c, .with_s = s,     \
    .run = fn
#define PACKED(fn) .run_packed = fn, .packed_group_bytes = fn##_group_bytes, .repack_group = fn##_repack
static const ar_gemm_kernel g_q4_0 = {GEMV_KERNEL_FIELDS(gemv_q4_0, 8, false), PACKED(gemvp_q4_0)};
static const ar_gemm_kernel g_q4_1 = {GEMV_KERNEL_FIELDS(gemv_q4_1, 0, true)};
static const ar_gemm_kernel g_q8_0 = {GEMV_KERNEL_FIELDS(gemv_q8_0, 128, false), PACKED(gemvp_q8_0)};

/* The n = 1 kernels also take 2..4 columns (each block transposed once for all of them). Cost
 * relative to n = 1 on a 220 MB matrix, 2 threads, median of 4 interleaved runs of
 * `arbor bench kernels --formats q4_0,q8_0,q4_1 --n 1,2,3,4,6,8` (gemv / the rep kernels):
 *           n = 2        3            4            6            8
 *   q4_0    1.19/2.13    1.37/2.27    1.57/2.22    2.47/2.54    2.82/2.58
 *   q4_1    1.19/2.34    1.35/2.34    1.49/2.29    2.26/2.89    2.56/2.91
 *   q8_0    1.11/1.30    1.19/1.28    1.29/1.24    1.99/1.28    2.28/1.36
 * so gemv up to 4 columns, the rep kernels beyond. */
#define GEMV_MAX_N 4
static ar_gemm_set set_of(const ar_gemm_kernel *k, const ar_gemm_kernel *gemv) {
    return (ar_gemm_set){{&k[0], &k[1], &k[2]}, gemv, gemv ? GEMV_MAX_N : 0};
}

ar_gemm_set ar_gemm_avx512(ar_type t, bool vnni) {
    switch (t) {
    case AR_TYPE_F32:
        return (ar_gemm_set){{&k_f32, NULL, NULL}, NULL, 0};
    case AR_TYPE_F16:
        return (ar_gemm_set){{&k_f16, NULL, NULL}, NULL, 0};
    case AR_TYPE_BF16:
        return (ar_gemm_set){{&k_bf16, NULL, NULL}, NULL, 0};
    default:
        break;
    }
    if (!vnni) return (ar_gemm_set){{NULL, NULL, NULL}, NULL, 0};
    switch (t) {
    case AR_TYPE_Q4_0:
        return set_of(k_q4_0, &g_q4_0);
    case AR_TYPE_Q4_1:
        return set_of(k_q4_1, &g_q4_1);
    case AR_TYPE_Q5_0:
        return set_of(k_q5_0, NULL);
    case AR_TYPE_Q5_1:
        return set_of(k_q5_1, NULL);
    case AR_TYPE_Q8_0:
        return set_of(k_q8_0, &g_q8_0);
    case AR_TYPE_Q2_K:
        return set_of(k_q2_K, NULL);
    case AR_TYPE_Q3_K:
        return set_of(k_q3_K, NULL);
    case AR_TYPE_Q4_K:
        return set_of(k_q4_K, NULL);
    case AR_TYPE_Q5_K:
        return set_of(k_q5_K, NULL);
    case AR_TYPE_Q6_K:
        return set_of(k_q6_K, NULL);
    default:
        return (ar_gemm_set){{NULL, NULL, NULL}, NULL, 0};
    }
}

#else
ar_gemm_set ar_gemm_avx512(ar_type t, bool vnni) {
    (void)t, (void)vnni;
    return (ar_gemm_set){{NULL, NULL, NULL}, NULL, 0};
}
#endif
