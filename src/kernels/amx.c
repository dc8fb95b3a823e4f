/* amx.c: the 16-row kernels over packed groups (kernels.h) of the 32-value formats with AMX
 * (AMX-TILE + AMX-INT8: Intel Sapphire Rapids and later), for calls of at least ar_amx_min_cols
 * columns (fewer go to the VNNI kernels). One tile product computes the exact integer sums of
 * one block for the 16 rows and up to 16 columns at once: the activations' quants, ncols rows
 * of 32 bytes, are read straight from the panel's records; the weights' values are the packed
 * group's words (Q8_0: as they lie) laid out as the tile's 8 rows of 16 rows x 4 values. What
 * is left to the vector units is the reference's float terms, per (row, column), in the
 * reference's order (the VNNI kernels' code, avx512.c), so the results are the same bits: about
 * a third of the vector instructions of the VNNI kernels, where vpdpbusd dominates. AMX has no
 * unsigned x signed form that fits every format, so the Q4_0/Q5_0 values are made signed
 * (u - offset) and multiplied signed by signed (tdpbssd), the _1 formats' unsigned values by the
 * signed quants (tdpbsud). (The K-quants were measured too: their VNNI kernels, where vpmulld by
 * the scales weighs as much as the products, were as fast, so they have no AMX form.) Called only when ar_cpu() reports AMX (cpu.c asks Linux
 * for the tile state first). */
#include "rows16.h"

/* Below ar_amx_min_cols columns the VNNI kernel is faster (tile set-up and stores cost more
 * than the products save): the call goes there. tune.c measures the crossover. */
int ar_amx_min_cols = 12;

#if (defined(__x86_64__) || defined(__i386__)) && defined(__AMX_TILE__) && defined(__AMX_INT8__)

/* The tile configuration of a call (palette 1): tiles 0-3 the sums C (ncols rows of 16 int32),
 * 4-5 the activations A (ncols rows of `kbytes` quants), 6-7 the weights B (kbytes / 4 rows of
 * the 16 rows' 4-value words). */
typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static _Thread_local int configured; /* this thread's tiles: 1 + ncols + 17 * kbytes, or 0 */

static void tiles_configure(int ncols, int kbytes) {
    if (configured == 1 + ncols + 17 * kbytes) return; /* kept between calls, never released */
    configured = 1 + ncols + 17 * kbytes;
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 4; t++) c.rows[t] = (uint8_t)ncols, c.colsb[t] = 64;
    for (int t = 4; t < 6; t++) c.rows[t] = (uint8_t)ncols, c.colsb[t] = (uint16_t)kbytes;
    for (int t = 6; t < 8; t++) c.rows[t] = (uint8_t)(kbytes / 4), c.colsb[t] = 64;
    /* not _tile_loadconfig: gcc 12 declares only 8 bytes of the configuration as read, so the
     * stores of the rest may be dropped */
    __asm__ volatile("ldtilecfg %0" ::"m"(c));
}

/* The running sums' fold (ar_reduce8) and store of the 32-value formats (as avx512.c). */
AI void fold_store(__m512 acc[8][16], int ncols, float *y, size_t ystride, int nrows, bool add) {
    for (int c = 0; c < ncols; c++) {
        const __m512 s = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[0][c], acc[4][c]), _mm512_add_ps(acc[2][c], acc[6][c])),
            _mm512_add_ps(_mm512_add_ps(acc[1][c], acc[5][c]), _mm512_add_ps(acc[3][c], acc[7][c])));
        store_rows16(true, s, y + (size_t)c * ystride, nrows, add);
    }
}

/* The weights of packed block b as a B tile's 8 rows (words of 4 values of the 16 rows): Q8_0's
 * signed quants lie so in the group; the others are unpacked into buf, the _0 formats made
 * signed. The block's scales (and mins) go to x. Returns where the tile's rows are. */
AI const uint8_t *weights_tile(ar_type t, const rows16_src *src, int64_t b, rows16_block *x,
                               uint8_t *buf) {
    if (t == AR_TYPE_Q8_0) {
        x->d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(src->hs + (size_t)b * 32)));
        return src->ws + (size_t)b * 512;
    }
    rows16_block_load_pf(t, true, false, src, b, x);
    const int offset = t == AR_TYPE_Q4_0 ? 8 : t == AR_TYPE_Q5_0 ? 16 : 0;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++)
        _mm512_store_si512(buf + 64 * q, offset ? _mm512_sub_epi8(x->w[q], _mm512_set1_epi8((char)offset))
                                                : x->w[q]);
    return buf;
}

/* The float terms of one block for ncols columns from the tile's sums c32 (column c: 16 int32,
 * one per row), into running sums acc[]. */
AI void q32_terms(ar_type t, const rows16_block *x, const int32_t *c32, const uint8_t *pb,
                  size_t rec, int ncols, __m512 *acc) {
    for (int c = 0; c < ncols; c++, pb += rec) {
        const __m512i s = _mm512_load_si512(c32 + 16 * c);
        __m512 term = _mm512_mul_ps(_mm512_mul_ps(x->d, bcast_f32(pb + AR_Q32_D(1))),
                                    _mm512_cvtepi32_ps(s));
        if (ar_q32_has_min(t))
            term = _mm512_add_ps(term, _mm512_mul_ps(x->m, bcast_f32(pb + AR_Q32_S(1))));
        acc[c] = _mm512_add_ps(acc[c], term);
    }
}

/* The float terms of one block for ncols columns from the tile's sums (as q32_terms), into
 * running sums kept in registers. */
AI void q32_terms_reg(ar_type t, const rows16_block *x, const int32_t *c32, const uint8_t *pb,
                      size_t rec, int ncols, __m512 acc[16]) {
#pragma GCC unroll 16
    for (int c = 0; c < 16; c++) {
        if (c >= ncols) break;
        const __m512i s = _mm512_load_si512(c32 + 16 * c);
        __m512 term = _mm512_mul_ps(_mm512_mul_ps(x->d, bcast_f32(pb + (size_t)c * rec + AR_Q32_D(1))),
                                    _mm512_cvtepi32_ps(s));
        if (ar_q32_has_min(t))
            term = _mm512_add_ps(term, _mm512_mul_ps(x->m, bcast_f32(pb + (size_t)c * rec + AR_Q32_S(1))));
        acc[c] = _mm512_add_ps(acc[c], term);
    }
}

/* Block bb's products into sum tile C (A and B tiles 4-7 by the tile's parity). */
#define ISSUE(C, A, B)                                                                             \
    do {                                                                                           \
        _tile_zero(C);                                                                             \
        _tile_loadd(A, panel + (size_t)bb * pstride, (long)rec);                                   \
        _tile_loadd(B, wt, 64);                                                                    \
        if (sgn) _tile_dpbssd(C, A, B);                                                            \
        else _tile_dpbsud(C, A, B);                                                                \
    } while (0)

/* 32-value formats. Blocks are visited running sum by running sum (j, j + 8, j + 16, ...: each
 * running sum still sees its terms in order), so that the ncols running sums being added stay
 * in registers. Software pipeline, the m-th block of a lane at step m: its weights are unpacked
 * (into wbuf) at step m - 1, its products issued at step m into sum tile m % 4, the tile stored
 * at step m + 2 and its terms added at step m + 3, so that no tile instruction waits for the
 * one before and no load for a store just made. */
AI void amx_q32(ar_type t, int64_t k, const void *w, int nrows, const uint8_t *panel,
                size_t pstride, int ncols, float *y, size_t ystride, bool add) {
    const int64_t nb = k / AR_QK;
    const size_t rec = AR_Q32_RECORD(1, ar_q32_has_min(t));
    const bool sgn = !ar_q32_has_min(t); /* signed weights (tdpbssd), else unsigned (tdpbsud) */
    rows16_src src;
    rows16_open(t, true, w, 0, nrows, nb, nb, &src);
    tiles_configure(ncols, 32);
    __m512 fin[8][16]; /* the finished running sums */
    int32_t sums[4][256] __attribute__((aligned(64)));
    uint8_t wbuf[4][512] __attribute__((aligned(64)));
    const uint8_t *wts[4];
    rows16_block x[4];
    /* the blocks are not visited in order: the first lane prefetches them all (into L2), two
     * rows of 8 ahead, the last one the next call's first blocks */
    rows16_prefetch_blocks(t, &src, 0, AR_MIN(nb, 16));
    for (int j = 0; j < 8; j++) {
        __m512 acc[16];
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++) acc[c] = _mm512_setzero_ps();
        const int64_t n = j < nb ? (nb - j + 7) / 8 : 0; /* blocks of this lane */
        if (n > 0) wts[0] = weights_tile(t, &src, j, &x[0], wbuf[0]);
        for (int64_t m = 0; m < n + 3; m++) {
            if (j == 0 && m < n) rows16_prefetch_blocks(t, &src, AR_MIN(nb, 8 * m + 16), AR_MIN(nb, 8 * m + 24));
            if (j == 7 && m < 2) { /* the next group follows this one */
                const ar_pack_layout L = ar_pack_layout_of(t);
                const uint8_t *next = src.ws + (size_t)nb * (size_t)L.rest_bytes * 16;
                for (size_t l = 0; l < (size_t)L.rest_bytes * 16 * 8; l += 64)
                    prefetch_line(next + ((size_t)nb * (size_t)L.n_halves * 32 + 63) / 64 * 64 +
                                  (size_t)m * (size_t)L.rest_bytes * 16 * 8 + l);
                prefetch_line(next + (size_t)m * 64);
            }
            if (m >= 3) { /* terms of block m - 3 */
                const int s3 = (int)((m - 3) % 4);
                q32_terms_reg(t, &x[s3], sums[s3], panel + (size_t)(j + 8 * (m - 3)) * pstride,
                              rec, ncols, acc);
            }
            if (m + 1 < n) { /* unpack block m + 1 */
                const int s1 = (int)((m + 1) % 4);
                wts[s1] = weights_tile(t, &src, j + 8 * (m + 1), &x[s1], wbuf[s1]);
            }
            if (m < n) { /* products of block m */
                const int64_t bb = j + 8 * m;
                const uint8_t *wt = wts[m % 4];
                switch (m % 4) {
                case 0: ISSUE(0, 4, 6); break;
                case 1: ISSUE(1, 5, 7); break;
                case 2: ISSUE(2, 4, 6); break;
                default: ISSUE(3, 5, 7); break;
                }
            }
            if (m >= 2 && m - 2 < n) { /* store the sums of block m - 2 */
                switch ((m - 2) % 4) {
                case 0: _tile_stored(0, sums[0], 64); break;
                case 1: _tile_stored(1, sums[1], 64); break;
                case 2: _tile_stored(2, sums[2], 64); break;
                default: _tile_stored(3, sums[3], 64); break;
                }
            }
        }
        for (int c = 0; c < ncols; c++) fin[j][c] = acc[c];
    }
    fold_store(fin, ncols, y, ystride, nrows, add);
}
#undef ISSUE

#define AMX_Q32(name, t)                                                                           \
    static void name(int64_t k, const void *restrict w, size_t w_stride, int nrows,                \
                     const uint8_t *restrict panel, size_t pstride, int ncols, float *restrict y,  \
                     size_t ystride, bool add) {                                                   \
        if (ncols < ar_amx_min_cols)                                                               \
            ar_kernels_avx512vnni.rows[t].packed->rows16(k, w, w_stride, nrows, panel, pstride,    \
                                                         ncols, y, ystride, add);                  \
        else                                                                                       \
            amx_q32(t, k, w, nrows, panel, pstride, ncols, y, ystride, add);                       \
    }
AMX_Q32(amx_q4_0, AR_TYPE_Q4_0)
AMX_Q32(amx_q4_1, AR_TYPE_Q4_1)
AMX_Q32(amx_q5_0, AR_TYPE_Q5_0)
AMX_Q32(amx_q5_1, AR_TYPE_Q5_1)
AMX_Q32(amx_q8_0, AR_TYPE_Q8_0)

/* ---- the table: packed kernels only (the rest comes from avx512.c's VNNI table) ---- */

/* The panels are the VNNI kernels' (with their corr, which the tile products do not need), so a
 * call can go to either. */
#define AMXKERNEL(fn, a, c, s)                                                                     \
    {                                                                                              \
        .path = "amx", .panel = AR_PANEL_Q32, .act = a, .width = 1, .rep = 1, .lanes = 16,         \
        .max_rows = 16, .max_groups = 1, .corr = c, .with_s = s, .rows16 = fn                      \
    }
static const ar_gemm_kernel a_q4_0 = AMXKERNEL(amx_q4_0, AR_TYPE_Q8_0, -8, false);
static const ar_gemm_kernel a_q4_1 = AMXKERNEL(amx_q4_1, AR_TYPE_Q8_1, 0, true);
static const ar_gemm_kernel a_q5_0 = AMXKERNEL(amx_q5_0, AR_TYPE_Q8_0, -16, false);
static const ar_gemm_kernel a_q5_1 = AMXKERNEL(amx_q5_1, AR_TYPE_Q8_1, 0, true);
static const ar_gemm_kernel a_q8_0 = AMXKERNEL(amx_q8_0, AR_TYPE_Q8_0, -128, false);

const ar_kernel_table ar_kernels_amx = {
    .level = AR_SIMD_AMX,
    .path = "amx",
    .rows = {
        [AR_TYPE_Q4_0] = {.packed = &a_q4_0},
        [AR_TYPE_Q4_1] = {.packed = &a_q4_1},
        [AR_TYPE_Q5_0] = {.packed = &a_q5_0},
        [AR_TYPE_Q5_1] = {.packed = &a_q5_1},
        [AR_TYPE_Q8_0] = {.packed = &a_q8_0},
    }};

#else
const ar_kernel_table ar_kernels_amx = {.level = AR_SIMD_AMX, .path = "amx"};
#endif
