/* quants.h: internal side of the tensor formats: ggml-compatible block layouts, the activation
 * quantizer, the order in which every dot product adds its terms (so fast paths can reproduce the
 * scalar reference bit for bit), and the fast-path entry points of kernels_*.c.
 *
 * Dot-product contract. vec_dot_fast returns exactly the bits of the scalar vec_dot (NaN payloads
 * aside) for any input and on any path, so the reference fixes the order of every float operation:
 *  - F32, F16, BF16: 32 running sums, value i going to sum i % 32 as acc += w*a (a product,
 *    then a sum: never fused), then ar_reduce32 below.
 *  - Q4_0, Q5_0, Q8_0 (x Q8_0) and Q4_1, Q5_1 (x Q8_1): per block an exact integer sum sumi,
 *    then the term (dw*da)*sumi, plus mw*sa for the _1 formats; block b's term goes to running
 *    sum b % 8, then ar_reduce8.
 *  - K-quants (x Q8_K): per super-block exact integer sums, then one term d*isum [- dmin*summs]
 *    with d = fp16(w.d)*a.d, added in block order to a single sum.
 * Integer sums are exact whatever their order, so SIMD code may compute them any way it likes.
 * Activations must be as ar_quantize_row writes them: quants in [-127, 127], Q8_K bsums equal to
 * the sums of their quants (the SIMD code relies on both); the weights may hold any bytes. */
#ifndef ARBOR_QUANTS_H
#define ARBOR_QUANTS_H

#include "tensor.h"

/* ---- block layouts (ggml-common.h); fp16 fields are IEEE half bits ---- */
typedef uint16_t ar_half;

typedef struct {
    ar_half d;
    uint8_t qs[AR_QK / 2]; /* value j in the low nibble of byte j, value j+16 in the high one */
} ar_block_q4_0;

typedef struct {
    ar_half d, m; /* value = q*d + m */
    uint8_t qs[AR_QK / 2];
} ar_block_q4_1;

typedef struct {
    ar_half d;
    uint8_t qh[4]; /* bit j (little-endian u32) = fifth bit of value j */
    uint8_t qs[AR_QK / 2];
} ar_block_q5_0;

typedef struct {
    ar_half d, m;
    uint8_t qh[4];
    uint8_t qs[AR_QK / 2];
} ar_block_q5_1;

typedef struct {
    ar_half d;
    int8_t qs[AR_QK];
} ar_block_q8_0;

typedef struct {
    ar_half d, s; /* s = d * sum(qs) */
    int8_t qs[AR_QK];
} ar_block_q8_1;

typedef struct {
    uint8_t scales[AR_QK_K / 16]; /* low nibble: scale, high nibble: min, per 16 values */
    uint8_t qs[AR_QK_K / 4];
    ar_half d, dmin;
} ar_block_q2_K;

typedef struct {
    uint8_t hmask[AR_QK_K / 8];
    uint8_t qs[AR_QK_K / 4];
    uint8_t scales[12]; /* 16 six-bit scales, offset by 32 */
    ar_half d;
} ar_block_q3_K;

typedef struct {
    ar_half d, dmin;
    uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins */
    uint8_t qs[AR_QK_K / 2];
} ar_block_q4_K;

typedef struct {
    ar_half d, dmin;
    uint8_t scales[12];
    uint8_t qh[AR_QK_K / 8];
    uint8_t qs[AR_QK_K / 2];
} ar_block_q5_K;

typedef struct {
    uint8_t ql[AR_QK_K / 2];
    uint8_t qh[AR_QK_K / 4];
    int8_t scales[AR_QK_K / 16];
    ar_half d;
} ar_block_q6_K;

typedef struct {
    float d;
    int8_t qs[AR_QK_K];
    int16_t bsums[AR_QK_K / 16]; /* sums of qs over groups of 16 */
} ar_block_q8_K;

_Static_assert(sizeof(ar_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(ar_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(ar_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(ar_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(ar_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(ar_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(ar_block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(ar_block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(ar_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(ar_block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(ar_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(ar_block_q8_K) == 292, "q8_K layout");

/* Exact half -> float, inline and table-free (usable before ar_runtime_init). */
static inline float ar_half_to_float(ar_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t em = h & 0x7fff;
    if (em >= 0x7c00) return ar_bits_f32(sign | 0x7f800000 | ((em & 0x3ff) << 13));
    if (em >= 0x0400) return ar_bits_f32(sign | ((em << 13) + (112u << 23)));
    float f = (float)em * 0x1p-24f; /* subnormal or zero: exact */
    return sign ? -f : f;
}

/* The fixed final additions of the reference dot products (see the contract above). */
static inline float ar_reduce8(const float s[8]) {
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}
static inline float ar_reduce32(const float s[32]) {
    float r[8];
    for (int j = 0; j < 8; j++) r[j] = (s[j] + s[j + 16]) + (s[j + 8] + s[j + 24]);
    return ar_reduce8(r);
}

/* Round to nearest, ties to even, for |v| < 2^22 (ggml's nearest_int; no undefined behaviour for
 * other inputs, just a meaningless value). */
static inline int ar_nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- activation rounding ----
 * Rounds an activation row to `vec_dot_type` exactly as llama.cpp's x86 CPU backend does before a
 * dot product: F32 copy, F16/BF16 round to nearest even, Q8_0/Q8_1 with d = amax/127 and
 * q = round-half-even(x*(127/amax)) (Q8_1 adds s = fp16(d*sum q)), Q8_K as its from_float.
 * Q8_0 is also a weight format and its table from_float is the weight quantizer (ggml's
 * quantize_row_q8_0_ref: q = roundf(x*(1/d))), which differs in rare ties: activations must
 * come through here. n must be a multiple of the type's block size. */
void ar_quantize_row(ar_type vec_dot_type, const float *restrict x, void *restrict dst, int64_t n);
void ar_quantize_row_q8_0_act(const float *restrict x, void *restrict dst, int64_t n);

/* Six-bit scale and min j (0..7) of Q4_K/Q5_K. */
static inline void ar_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}
/* Six-bit scale j (0..15) of Q3_K, without its offset of 32. */
static inline int ar_scale_q3_K(int j, const uint8_t *sc) {
    int low = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
    return low | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
}

/* ---- SIMD helpers shared by kernels_avx2.c and kernels_avx512.c (built with AVX2 + F16C) ---- */
#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>

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

#endif

/* Points a format's vec_dot_fast at `fn` (kernels.c, during ar_runtime_init only). */
void ar_type_set_fast(ar_type t, ar_vec_dot_fn fn, const char *path);

/* ---- fast paths: call only when ar_cpu() reports the instruction sets ---- */
#define AR_FAST_DECL(sfx)                                                                          \
    void ar_vec_dot_f32_##sfx(int64_t, float *restrict, const void *restrict,                      \
                              const void *restrict);                                               \
    void ar_vec_dot_f16_##sfx(int64_t, float *restrict, const void *restrict,                      \
                              const void *restrict);                                               \
    void ar_vec_dot_bf16_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);
#define AR_FAST_DECL_Q(sfx)                                                                        \
    void ar_vec_dot_q4_0_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q4_1_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q5_0_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q5_1_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q8_0_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q2_K_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q3_K_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q4_K_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q5_K_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);                                              \
    void ar_vec_dot_q6_K_##sfx(int64_t, float *restrict, const void *restrict,                     \
                               const void *restrict);

/* kernels_avx2.c: AVX2 + FMA + F16C */
AR_FAST_DECL(avx2)
AR_FAST_DECL_Q(avx2)
/* kernels_avx512.c: the float kernels need AVX-512 F/BW/VL/DQ; the quantized ones also VNNI */
AR_FAST_DECL(avx512)
AR_FAST_DECL_Q(avx512vnni)

/* ---- batched kernels: weight rows against many activation columns (matmul.c) ----
 * For batches of n >= 2 rows, matmul.c rounds every activation row exactly as for n = 1, then
 * repacks the rounded rows into *panels* laid out for SIMD, and a kernel computes a few weight
 * rows against the panels, unpacking each weight block once for all columns. Each output equals
 * vec_dot of that weight row and that column bit for bit: integer sums are exact, and every float
 * operation of the reference order (the contract above) is done per (row, column) pair, with the
 * same operands, in the same order.
 *
 * The quantized kernels put one (column, weight row) pair in each 32-bit lane of a SIMD register
 * of `width` lanes: lane c * rep + r holds column c and row r, so a panel has width / rep
 * columns, each repeated rep times. rep > 1 fills the register when the batch is small.
 *
 * Panel layouts (columns past the batch are zero):
 *  - AR_PANEL_ROWS (F32, F16, BF16): one column per panel (width = rep = 1): its rounded row
 *    widened to F32, k floats.
 *  - AR_PANEL_Q32 (Q8_0 / Q8_1 activations): per 32-value block, W = width lanes:
 *      int8  q[8][W][4]  dword (g, lane) = the lane's column's quants 4g..4g+3
 *      float d[W]        the block scale (fp16 widened)
 *      int32 corr[W]     `corr` times the sum of the block's quants (the kernels take unsigned
 *                        weight values u = value + offset and subtract offset * sum(a))
 *      float s[W]        Q8_1 only (with_s): the block's s (fp16 widened)
 *  - AR_PANEL_QK (Q8_K activations): per 256-value super-block:
 *      int8  q[64][W][4] dword (g, lane) = the lane's column's quants 4g..4g+3
 *      float d[W]
 *      int16 bs[8][W][2] dword (k, lane) = the lane's column's bsums 2k and 2k+1
 * Block records follow each other with no padding; a panel is `ar_panel_bytes` long. */
typedef enum ar_panel_kind { AR_PANEL_ROWS, AR_PANEL_Q32, AR_PANEL_QK } ar_panel_kind;

/* out[r * ngroups * lanes + g * lanes + c] = dot(weight row r, column c of panel g) for r < nrows
 * (rows w_stride bytes apart from w), g < ngroups (panel g at panel + g * pstride, 64-byte
 * aligned), c < lanes; rows of k values. */
typedef void (*ar_gemm_fn)(int64_t k, const void *restrict w, size_t w_stride, int nrows,
                           const uint8_t *restrict panel, size_t pstride, int ngroups,
                           float *restrict out);

typedef struct ar_gemm_kernel {
    const char *path;     /* instruction-set level, as fast_path */
    ar_panel_kind panel;
    ar_type act;          /* the rounded rows' format (the weight format's vec_dot_type) */
    int width;            /* 32-bit lanes of the kernel's registers */
    int rep;              /* weight rows per register: lanes = width / rep columns per panel */
    int lanes;            /* columns per panel */
    int max_rows;         /* weight rows one call can take */
    int max_groups;       /* panels one call can take */
    int corr;             /* AR_PANEL_Q32: multiplier of the quant sums in corr[] */
    bool with_s;          /* AR_PANEL_Q32: the panel carries Q8_1's s */
    ar_gemm_fn run;
    /* Optional (n <= 4 kernels): the same products, to the bit, over a repacked copy of the
     * weights made at load (an opt-in: ar_model_params.repack). The copy is a sequence of groups
     * of 16 rows, packed_group_bytes(k) each (a multiple of 64), made by repack_group from 1..16
     * rows; run_packed takes one group as w (w_stride unused, nrows <= 16). */
    ar_gemm_fn run_packed;
    size_t (*packed_group_bytes)(int64_t k);
    void (*repack_group)(const void *w, size_t w_stride, int nrows, int64_t k, void *out);
} ar_gemm_kernel;

/* The batched kernel for weights of type t and a batch of n columns on this CPU (set by
 * ar_kernels_select), or NULL when there is none (matmul.c then calls vec_dot_fast per output). */
const ar_gemm_kernel *ar_gemm_get(ar_type t, int32_t n);
/* Bytes of one panel of rows of k values (a multiple of 64). */
size_t ar_panel_bytes(const ar_gemm_kernel *g, int64_t k);
/* Packs ncols (1..lanes) rounded activation rows (vec_dot_type layout, `row_bytes` apart) into
 * one panel; the remaining columns are zero. */
void ar_panel_pack(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                   int64_t k, uint8_t *restrict panel);

/* The kernels of one instruction-set level for type t, by rep (index 0: rep 1, 1: rep 2, 2: rep 4;
 * NULL where there is none), and for a single column (gemv: a panel of one column, width 1, the
 * kernel's lanes holding weight rows). */
typedef struct ar_gemm_set {
    const ar_gemm_kernel *by_rep[3];
    const ar_gemm_kernel *gemv; /* one-column panels, 16 weight rows in a register */
    int gemv_max_n; /* gemv also takes batches of 2..gemv_max_n columns (measured crossover) */
} ar_gemm_set;

/* ---- attention (forward.c): one query row, the query heads that share one KV head ----
 * scores[h][t] = q_h · k_t * scale over the row's visible cells t (in position order), a softmax
 * per head, out_h = sum over t of p[h][t] * v_t in cell order. The order of every operation
 * depends only on the head dimension and the number of visible cells, never on other rows, so a
 * row's result is the same in any batch; it may differ between instruction-set levels. */
typedef struct ar_attn_args {
    const float *q;            /* [group][hd] */
    float *out;                /* [group][hd] */
    const uint8_t *k, *v;      /* the layer's caches */
    size_t cell_bytes;         /* bytes of one cell (all KV heads) */
    size_t head_offset;        /* byte offset of this KV head in a cell */
    const int32_t *cells;      /* [n] */
    int32_t n;
    int hd, group;
    bool f16;                  /* cache of F16 values, else F32 */
    float scale;
    float softcap;             /* > 0: each score s becomes softcap * tanh(s / softcap) before the
                                  softmax (ar_softcap_row, the same scalar code in every kernel) */
    float *scores;             /* scratch [group][n] */
} ar_attn_args;
typedef void (*ar_attn_fn)(const ar_attn_args *a);
/* The attention kernel for this CPU (set by ar_kernels_select). */
ar_attn_fn ar_attn_get(void);
void ar_attn_scalar(const ar_attn_args *a);
void ar_attn_avx2(const ar_attn_args *a);
void ar_attn_avx512(const ar_attn_args *a);

/* ---- elementwise (forward.c), dispatched; each output depends only on its own row (RMSNorm) or
 * element (SwiGLU), vector tails computing the same formula as the body ----
 * rmsnorm: o = (x * (1 / sqrt(mean(x^2) + eps))) * g, the squares summed in double;
 * swiglu: g = silu(g) * u = (g / (1 + exp(-g))) * u. */
void ar_rmsnorm_row(float *restrict o, const float *restrict x, const float *restrict g, int n,
                    float eps);
void ar_swiglu_row(float *restrict g, const float *restrict u, int64_t n);
/* geglu: g = gelu_tanh(g) * u, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
 * softcap: x = cap * tanh(x / cap) (Gemma 2's attention scores and logits). Scalar, per element. */
void ar_geglu_row(float *restrict g, const float *restrict u, int64_t n);
void ar_softcap_row(float *x, int64_t n, float cap);
void ar_rmsnorm_row_avx2(float *restrict o, const float *restrict x, const float *restrict g,
                         int n, float eps);
void ar_rmsnorm_row_avx512(float *restrict o, const float *restrict x, const float *restrict g,
                           int n, float eps);
void ar_swiglu_row_avx2(float *restrict g, const float *restrict u, int64_t n);
void ar_swiglu_row_avx512(float *restrict g, const float *restrict u, int64_t n);

/* ar_quantize_row and a row of ar_fp32_to_fp16, vectorised where the CPU allows: the same bytes
 * for any input (kernels_act_*.c; dispatched by ar_kernels_select). */
void ar_quantize_row_fast(ar_type vec_dot_type, const float *restrict x, void *restrict dst,
                          int64_t n);
void ar_fp32_to_fp16_row(const float *restrict x, uint16_t *restrict dst, int64_t n);
void ar_quantize_row_avx2(ar_type vdt, const float *restrict x, void *restrict dst, int64_t n);
void ar_quantize_row_avx512(ar_type vdt, const float *restrict x, void *restrict dst, int64_t n);
void ar_fp32_to_fp16_row_avx2(const float *restrict x, uint16_t *restrict dst, int64_t n);
void ar_fp32_to_fp16_row_avx512(const float *restrict x, uint16_t *restrict dst, int64_t n);

/* kernels_mm_avx2.c (AVX2 + FMA + F16C) and kernels_mm_avx512.c (AVX-512 F/BW/VL/DQ; the
 * quantized kernels also VNNI, asked for with vnni): the kernels of type t. */
ar_gemm_set ar_gemm_avx2(ar_type t);
ar_gemm_set ar_gemm_avx512(ar_type t, bool vnni);

#endif
