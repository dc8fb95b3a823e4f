/* matmul.c: batched matrix-vector products over quantized weights, split by output rows.
 *
 * Every activation row is rounded on its own to the weight's vec_dot_type, then
 *  - a format with no batched kernel: each output is one vec_dot_fast call;
 *  - else the rounded rows are packed into panels (quants.h) and a batched kernel computes a few
 *    weight rows against all of them, unpacking every weight block once (for n = 1, kernels
 *    that hold 16 weight rows in one register, where the format has one).
 * Both give each output the bits of vec_dot (quants.h), so a column's result depends only on W
 * and its own row: the batch invariance that speculative verification relies on. Threads split
 * the output rows in contiguous chunks (each thread streams its own slice of W) and never the
 * reduction. */
#include "matmul.h"

#include <stdlib.h>

#include "quants.h"

struct ar_matmul_scratch {
    int32_t max_rows;
    int64_t max_in;
    uint8_t *xq;    /* [max_rows][row bytes] rounded activations */
    uint8_t *panel; /* packed panels of the rounded rows */
};

/* Buffers are not cleared: their pages count towards the resident size only once a batch that
 * large has used them. */
static void *alloc_lazy(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, AR_ALIGN, bytes ? bytes : AR_ALIGN) == 0 ? p : NULL;
}

ar_status ar_matmul_scratch_create(int32_t max_rows, int64_t max_in, ar_matmul_scratch **out) {
    *out = NULL;
    if (max_rows < 1 || max_in < 1)
        return ar_fail(AR_ERR_INVALID_ARG, "matmul scratch: %d rows of %lld values", max_rows,
                       (long long)max_in);
    ar_matmul_scratch *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(AR_ERR_NOMEM, "matmul scratch: out of memory");
    s->max_rows = max_rows;
    s->max_in = max_in;
    /* F32 is the widest activation format (4 bytes a value); a panel holds at most 4 bytes a
     * value and column (F16/BF16 widened), columns rounded up to a whole panel of 16 */
    const size_t cols = ((size_t)max_rows + 15) / 16 * 16;
    s->xq = alloc_lazy((size_t)max_rows * (size_t)max_in * sizeof(float) + AR_ALIGN);
    s->panel = alloc_lazy(cols * ((size_t)max_in * sizeof(float) + AR_ALIGN));
    if (!s->xq || !s->panel) {
        ar_matmul_scratch_free(s);
        return ar_fail(AR_ERR_NOMEM, "matmul scratch: out of memory");
    }
    *out = s;
    return AR_OK;
}

void ar_matmul_scratch_free(ar_matmul_scratch *s) {
    if (!s) return;
    free(s->xq);
    free(s->panel);
    free(s);
}

typedef struct mm_job {
    const ar_tensor *W;
    int32_t n;
    float *y;
    bool add;
    /* one dot product per output */
    const uint8_t *xq;
    size_t xq_stride;
    ar_vec_dot_fn dot;
    /* batched kernel */
    const ar_gemm_kernel *g;
    const uint8_t *panel;
    size_t pstride;
    int ngroups;
} mm_job;

static inline void put(float *y, float v, bool add) {
    *y = add ? *y + v : v;
}

/* Rows are handed out in chunks of 16 so that a thread's slice of W is contiguous. */
static void mm_dot_worker(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const int64_t n_in = j->W->ne[0], n_out = j->W->ne[1];
    int64_t lo, hi;
    ar_split(n_out, 16, ith, nth, &lo, &hi);
    const uint8_t *wbase = j->W->data;
    for (int64_t r = lo; r < hi; r++) {
        const uint8_t *wr = wbase + (size_t)r * j->W->nb1;
        for (int32_t c = 0; c < j->n; c++) {
            float s;
            j->dot(n_in, &s, wr, j->xq + (size_t)c * j->xq_stride);
            put(j->y + (size_t)c * n_out + r, s, j->add);
        }
    }
}

/* Groups of up to max_rows weight rows against all panels (max_groups at a time): the rows' blocks
 * stay in L1 while the panels stream from L2, and every panel load serves several rows. */
static void mm_gemm_worker(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const ar_gemm_kernel *g = j->g;
    const int64_t n_in = j->W->ne[0], n_out = j->W->ne[1];
    int64_t lo, hi;
    ar_split(n_out, 16, ith, nth, &lo, &hi);
    const uint8_t *wbase = j->W->data;
    const size_t nb1 = j->W->nb1;
    float out[256]; /* max_rows * max_groups * lanes <= 256 (checked in ar_kernels_select) */
    for (int64_t r0 = lo; r0 < hi; r0 += g->max_rows) {
        const int nr = (int)AR_MIN(g->max_rows, hi - r0);
        for (int g0 = 0; g0 < j->ngroups; g0 += g->max_groups) {
            const int cnt = AR_MIN(g->max_groups, j->ngroups - g0);
            g->run(n_in, wbase + (size_t)r0 * nb1, nb1, nr, j->panel + (size_t)g0 * j->pstride,
                   j->pstride, cnt, out);
            const int32_t c0 = g0 * g->lanes, c1 = AR_MIN(j->n, c0 + cnt * g->lanes);
            const int width = cnt * g->lanes;
            for (int r = 0; r < nr; r++)
                for (int32_t c = c0; c < c1; c++)
                    put(j->y + (size_t)c * n_out + r0 + r, out[r * width + c - c0], j->add);
        }
    }
}

static void matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x,
                   int32_t n, float *y, bool add) {
    const ar_type_traits *wt = ar_type_get(W->type);
    const int64_t n_in = W->ne[0];
    const ar_type vdt = wt->vec_dot_type;
    mm_job j = {.W = W, .n = n, .y = y, .add = add, .dot = wt->vec_dot_fast};
    if (vdt == AR_TYPE_F32) {
        j.xq = (const uint8_t *)x;
        j.xq_stride = (size_t)n_in * sizeof(float);
    } else {
        j.xq_stride = ar_row_size(vdt, n_in);
        /* activation rounding (not the weight quantizer: ggml rounds Q8_0 ties differently) */
        for (int32_t c = 0; c < n; c++)
            ar_quantize_row_fast(vdt, x + (size_t)c * n_in, s->xq + (size_t)c * j.xq_stride, n_in);
        j.xq = s->xq;
    }
    const ar_gemm_kernel *g = ar_gemm_get(W->type, n);
    /* the n = 1 kernels address a call's rows with 32-bit offsets */
    if (g && n == 1 && (size_t)g->max_rows * W->nb1 > (size_t)INT32_MAX) g = NULL;
    if (!g) {
        ar_pool_run_or_inline(pool, mm_dot_worker, &j);
        return;
    }
    j.g = g;
    j.ngroups = (n + g->lanes - 1) / g->lanes;
    if (g->panel == AR_PANEL_ROWS && vdt == AR_TYPE_F32) {
        j.panel = (const uint8_t *)x; /* F32 rows are their own panels */
        j.pstride = j.xq_stride;
    } else {
        j.pstride = ar_panel_bytes(g, n_in);
        for (int p = 0; p < j.ngroups; p++) {
            const int cols = AR_MIN(g->lanes, n - p * g->lanes);
            ar_panel_pack(g, j.xq + (size_t)p * g->lanes * j.xq_stride, j.xq_stride, cols, n_in,
                          s->panel + (size_t)p * j.pstride);
        }
        j.panel = s->panel;
    }
    ar_pool_run_or_inline(pool, mm_gemm_worker, &j);
}

void ar_matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x, int32_t n,
               float *y) {
    matmul(s, pool, W, x, n, y, false);
}

void ar_matmul_add(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x,
                   int32_t n, float *y) {
    matmul(s, pool, W, x, n, y, true);
}
