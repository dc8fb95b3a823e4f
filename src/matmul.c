/* matmul.c: batched matrix-vector products over quantized weights, split by output rows. */
#include "matmul.h"

#include <stdlib.h>

#include "quants.h"

struct ar_matmul_scratch {
    int32_t max_rows;
    int64_t max_in;
    uint8_t *xq; /* [max_rows][row bytes] rounded activations */
};

ar_status ar_matmul_scratch_create(int32_t max_rows, int64_t max_in, ar_matmul_scratch **out) {
    ar_matmul_scratch *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(AR_ERR_NOMEM, "matmul scratch: out of memory");
    s->max_rows = max_rows;
    s->max_in = max_in;
    /* F32 is the widest activation format (4 bytes a value) */
    s->xq = ar_aligned_alloc((size_t)max_rows * (size_t)max_in * sizeof(float) + AR_ALIGN);
    if (!s->xq) {
        free(s);
        return ar_fail(AR_ERR_NOMEM, "matmul scratch: out of memory");
    }
    *out = s;
    return AR_OK;
}

void ar_matmul_scratch_free(ar_matmul_scratch *s) {
    if (!s) return;
    ar_aligned_free(s->xq);
    free(s);
}

typedef struct mm_job {
    const ar_tensor *W;
    const uint8_t *xq;
    size_t xq_stride;
    int32_t n;
    float *y;
    bool add;
    ar_vec_dot_fn dot;
} mm_job;

/* Rows are handed out in chunks of 16 so that a thread's slice of W is contiguous. */
static void mm_worker(void *arg, int ith, int nth) {
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
            float *yc = j->y + (size_t)c * n_out + r;
            *yc = j->add ? *yc + s : s;
        }
    }
}

static void matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x,
                   int32_t n, float *y, bool add) {
    const ar_type_traits *wt = ar_type_get(W->type);
    const int64_t n_in = W->ne[0];
    mm_job j = {.W = W, .n = n, .y = y, .add = add, .dot = wt->vec_dot_fast};
    if (wt->vec_dot_type == AR_TYPE_F32) {
        j.xq = (const uint8_t *)x;
        j.xq_stride = (size_t)n_in * sizeof(float);
    } else {
        j.xq_stride = ar_row_size(wt->vec_dot_type, n_in);
        /* activation rounding (not the weight quantizer: ggml rounds Q8_0 ties differently) */
        for (int32_t c = 0; c < n; c++)
            ar_quantize_row(wt->vec_dot_type, x + (size_t)c * n_in, s->xq + (size_t)c * j.xq_stride,
                            n_in);
        j.xq = s->xq;
    }
    ar_pool_run_or_inline(pool, mm_worker, &j);
}

void ar_matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x, int32_t n,
               float *y) {
    matmul(s, pool, W, x, n, y, false);
}

void ar_matmul_add(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x,
                   int32_t n, float *y) {
    matmul(s, pool, W, x, n, y, true);
}
