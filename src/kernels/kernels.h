/* kernels.h: the kernels' header. The tensor formats' ggml-compatible block layouts, the order in
 * which every dot product adds its terms (so that every fast path reproduces the scalar reference
 * of quants.c bit for bit), the activation rounding, the activation panels and packed weight
 * groups the batched kernels read, the per-instruction-set kernel tables that kernels.c installs,
 * attention and the elementwise kernels. The SIMD helpers the instruction-set files share are in
 * simd.h; the matmul driver that runs the batched kernels over threads is matmul.c.
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
#ifndef ARBOR_KERNELS_H
#define ARBOR_KERNELS_H

#include "src/core/cpu.h"
#include "src/core/tensor.h"

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

/* ---- batched kernels: weight rows against many activation columns (matmul.c) ----
 * For batches of n >= 2 rows, matmul.c rounds every activation row exactly as for n = 1, then
 * repacks the rounded rows into *panels* laid out for SIMD, and a kernel computes a few weight
 * rows against the panels, unpacking each weight block once for all columns. Each output equals
 * vec_dot of that weight row and that column bit for bit: integer sums are exact, and every float
 * operation of the reference order (the contract above) is done per (row, column) pair, with the
 * same operands, in the same order.
 *
 * Two kernel shapes:
 *  - rep kernels (weights broadcast, columns in the lanes): one (column, weight row) pair in each
 *    32-bit lane of a register of `width` lanes: lane c * rep + r holds column c and row r, so a
 *    panel has width / rep columns, each repeated rep times (rep > 1 fills the register when the
 *    batch is small). They read weight rows in place.
 *  - 16-row kernels (columns broadcast, weight rows in the lanes): 16 weight rows in a register,
 *    each column's quant words broadcast from its width-1 records; every weight block is unpacked
 *    once for up to 16 columns, whose results are 16 consecutive outputs of y. They read either
 *    16 rows in place (transposing each block in registers) or one packed group (below), where
 *    one aligned load gives a register of 16 rows. Their panel holds `lanes` = 16 columns: per
 *    block, the records (width 1) of its ncols columns side by side, so a block's activations
 *    are one short sequential read.
 *
 * Panel layouts (columns past the batch are zero; W = width):
 *  - AR_PANEL_ROWS (F32, F16, BF16): one column per panel (width = rep = 1): its rounded row
 *    widened to F32, k floats.
 *  - AR_PANEL_Q32 (Q8_0 / Q8_1 activations): per 32-value block, a record of
 *      int8  q[8][W][4]  dword (g, lane) = the lane's column's quants 4g..4g+3
 *      float d[W]        the block scale (fp16 widened)
 *      int32 corr[W]     `corr` times the sum of the block's quants (the kernels take unsigned
 *                        weight values u = value + offset; corr = -offset gives the integer sum
 *                        of the block as the accumulators' starting value, corr = +offset is
 *                        subtracted at the end)
 *      float s[W]        Q8_1 only (with_s): the block's s (fp16 widened)
 *  - AR_PANEL_QK (Q8_K activations): per 256-value super-block, a record of
 *      int8  q[64][W][4] dword (g, lane) = the lane's column's quants 4g..4g+3
 *      float d[W]
 *      int16 bs[8][W][2] dword (k, lane) = the lane's column's bsums 2k and 2k+1
 * Records follow each other with no padding; a panel is `ar_panel_bytes` long. The offsets: */
typedef enum ar_panel_kind { AR_PANEL_ROWS, AR_PANEL_Q32, AR_PANEL_QK } ar_panel_kind;

#define AR_Q32_D(W)      (32 * (W)) /* byte offset of d[] in a Q32 record of width W */
#define AR_Q32_CORR(W)   (36 * (W)) /* of corr[] */
#define AR_Q32_S(W)      (40 * (W)) /* of s[] */
#define AR_Q32_RECORD(W, with_s) ((size_t)4 * (W) * ((with_s) ? 11 : 10))
#define AR_QK_D(W)       (256 * (W)) /* byte offset of d[] in a QK record */
#define AR_QK_BS(W)      (260 * (W)) /* of the bsum pairs */
#define AR_QK_RECORD(W)  ((size_t)4 * (W) * 73)

/* out[r * ngroups * lanes + g * lanes + c] = dot(weight row r, column c of panel g) for r < nrows
 * (rows w_stride bytes apart from w), g < ngroups (panel g at panel + g * pstride, 64-byte
 * aligned), c < lanes; rows of k values. */
typedef void (*ar_gemm_fn)(int64_t k, const void *restrict w, size_t w_stride, int nrows,
                           const uint8_t *restrict panel, size_t pstride, int ngroups,
                           float *restrict out);
/* The 16-row kernels: y[c * ystride + r] (+)= dot(weight row r, column c) for r < nrows (<= 16),
 * c < ncols (<= 16): column c's record of block b at panel + b * pstride + c * (record bytes),
 * pstride = ncols * (record bytes). The rows are w_stride bytes apart from w (in place) or one
 * packed group at w (w_stride unused). */
typedef void (*ar_rows16_fn)(int64_t k, const void *restrict w, size_t w_stride, int nrows,
                             const uint8_t *restrict panel, size_t pstride, int ncols,
                             float *restrict y, size_t ystride, bool add);

typedef struct ar_gemm_kernel {
    const char *path;     /* instruction-set level, as fast_path */
    ar_panel_kind panel;
    ar_type act;          /* the rounded rows' format (the weight format's vec_dot_type) */
    int width;            /* 32-bit lanes of the panel's records */
    int rep;              /* weight rows per register: lanes = width / rep columns per panel */
    int lanes;            /* columns per panel */
    int max_rows;         /* weight rows one call can take */
    int max_groups;       /* panels one call can take */
    int corr;             /* AR_PANEL_Q32: multiplier of the quant sums in corr[] */
    bool with_s;          /* AR_PANEL_Q32: the panel carries Q8_1's s */
    ar_gemm_fn run;       /* rep kernels */
    ar_rows16_fn rows16;  /* 16-row kernels (width 1, lanes 16, max_rows 16, max_groups 1) */
} ar_gemm_kernel;

/* Bytes of one panel of rows of k values (a multiple of 64). */
size_t ar_panel_bytes(const ar_gemm_kernel *g, int64_t k);
/* Packs ncols (1..lanes) rounded activation rows (vec_dot_type layout, `row_bytes` apart) into
 * one panel; the remaining columns are zero. */
void ar_panel_pack(const ar_gemm_kernel *g, const uint8_t *rows, size_t row_bytes, int ncols,
                   int64_t k, uint8_t *restrict panel);

/* ---- packed weights ----
 * A matrix's packed form is a pure rearrangement of its bytes for the 16-row kernels: groups of
 * 16 rows (a last, partial group repeats its last row), each group
 *   - the fp16 fields of every block (d; m or dmin), in block order, each field as 16 halfs
 *     (row r's at 2 r): nb * n_halves * 32 bytes, padded to 64;
 *   - then every block's other bytes (`rest_bytes` from `rest_off`, a multiple of 4) as 4-byte
 *     words, word q of row r at 64 q + 4 r of the block's record (rest_bytes * 16 bytes).
 * One aligned 64-byte load gives word q of the 16 rows. The layout depends only on the format,
 * never on the instruction set, so one packed copy serves every kernel that reads it. */
typedef struct ar_pack_layout {
    int n_halves;       /* fp16 fields per block (0: the format has no packed form) */
    int half_off[2];    /* their byte offsets in the block */
    int rest_off;       /* the other bytes: [rest_off, rest_off + rest_bytes) */
    int rest_bytes;
} ar_pack_layout;

#define AR_PACK_ROWS 16 /* rows per packed group */
/* The packed layout of format t ({0} when t has none); inline, so that kernels fold it. */
static inline ar_pack_layout ar_pack_layout_of(ar_type t) {
    switch (t) {
    case AR_TYPE_Q4_0: return (ar_pack_layout){1, {0, 0}, 2, 16};
    case AR_TYPE_Q4_1: return (ar_pack_layout){2, {0, 2}, 4, 16};
    case AR_TYPE_Q5_0: return (ar_pack_layout){1, {0, 0}, 2, 20};   /* qh, qs */
    case AR_TYPE_Q5_1: return (ar_pack_layout){2, {0, 2}, 4, 20};
    case AR_TYPE_Q8_0: return (ar_pack_layout){1, {0, 0}, 2, 32};
    case AR_TYPE_Q2_K: return (ar_pack_layout){2, {80, 82}, 0, 80};  /* scales, qs */
    case AR_TYPE_Q3_K: return (ar_pack_layout){1, {108, 0}, 0, 108}; /* hmask, qs, scales */
    case AR_TYPE_Q4_K: return (ar_pack_layout){2, {0, 2}, 4, 140};   /* scales, qs */
    case AR_TYPE_Q5_K: return (ar_pack_layout){2, {0, 2}, 4, 172};   /* scales, qh, qs */
    case AR_TYPE_Q6_K: return (ar_pack_layout){1, {208, 0}, 0, 208}; /* ql, qh, scales */
    default: return (ar_pack_layout){0, {0, 0}, 0, 0};
    }
}
/* Bytes of one packed group of rows of k values (0 when t has no packed form). */
size_t ar_pack_group_bytes(ar_type t, int64_t k);
/* Packs nrows (1..16) rows of k values, w_stride bytes apart, into one group at out. */
void ar_pack_group(ar_type t, const void *w, size_t w_stride, int nrows, int64_t k, void *out);

/* ---- the kernel tables ----
 * Each instruction-set file (avx2.c, avx512.c) has one table indexed by tensor type: a new format
 * is one row there. A NULL entry means "none at this level": kernels.c installs, for every
 * format and entry, the one of the best level the CPU allows that has it. */
typedef struct ar_kernel_row {
    ar_vec_dot_fn dot;               /* one dot product (the format's vec_dot_fast) */
    const ar_gemm_kernel *rep[3];    /* batched, rows in place, by rep 1, 2, 4 */
    const ar_gemm_kernel *inplace;   /* 16-row kernel over rows in place (every n: where a format
                                      * has one it beats the rep kernels at 1..64 columns) */
    const ar_gemm_kernel *packed;    /* 16-row kernel over packed groups, every n */
} ar_kernel_row;

typedef struct ar_kernel_table {
    ar_simd_level level;   /* the level that may use it (cpu.h) */
    const char *path;      /* its name, as fast_path reports it */
    ar_kernel_row rows[AR_TYPE_COUNT];
} ar_kernel_table;

/* avx2.c (AVX2 + FMA + F16C); avx512.c: AVX-512 F/BW/VL/DQ (the float formats) and AVX-512 VNNI
 * (the quantized ones); amx.c: AMX (the packed kernels) */
extern const ar_kernel_table ar_kernels_avx2, ar_kernels_avx512, ar_kernels_avx512vnni,
    ar_kernels_amx;

/* Points a format's vec_dot_fast at `fn` (kernels.c, during ar_kernels_select only). */
void ar_type_set_fast(ar_type t, ar_vec_dot_fn fn, const char *path);

/* The installed row of format t (all NULL where there is nothing, or t is unknown). */
const ar_kernel_row *ar_kernels_of(ar_type t);
/* The batched kernel over in-place rows for weights of type t and a batch of n columns on this
 * CPU: the 16-row kernel where the format has one (unless !rows16), else for n >= 2 the rep
 * kernel with the most weight rows per register whose panel holds all n columns; NULL when there
 * is none (then matmul.c calls vec_dot_fast per output). */
const ar_gemm_kernel *ar_gemm_get(ar_type t, int32_t n, bool rows16);
/* The 16-row kernel over packed groups of type t on this CPU, or NULL. */
const ar_gemm_kernel *ar_packed_get(ar_type t);

/* Sets the kernels' microarchitecture-dependent parameters (tune.c) from this CPU model's entry in
 * the per-user cache or, when there is none and `measure` (mats are a model's packed matrices,
 * more than the caches hold), by timing them, then writes the entry. A warning, if any, goes to
 * note. Once per process. */
void ar_kernels_tune(const ar_tensor *const *mats, int n, bool measure, char *note,
                     size_t note_cap);
/* This CPU model's tuning entry in the cache, and the check of an entry's text (true: valid, the
 * values set). */
ar_status ar_kernels_tune_path(char *out, size_t cap);
bool ar_tune_parse(const char *text, int *prefetch_hint, int *prefetch_blocks, int *amx_min_cols);

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
 * for any input (act_avx2.c; dispatched by ar_kernels_select). */
void ar_quantize_row_fast(ar_type vec_dot_type, const float *restrict x, void *restrict dst,
                          int64_t n);
void ar_fp32_to_fp16_row(const float *restrict x, uint16_t *restrict dst, int64_t n);
void ar_quantize_row_avx2(ar_type vdt, const float *restrict x, void *restrict dst, int64_t n);
void ar_fp32_to_fp16_row_avx2(const float *restrict x, uint16_t *restrict dst, int64_t n);

#endif
