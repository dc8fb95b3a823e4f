/* matmul.c: batched matrix-vector products over quantized weights, split by output rows.
 *
 * Every activation row is rounded on its own to the weight's vec_dot_type, then
 *  - a format with no batched kernel: each output is one vec_dot_fast call;
 *  - else the rounded rows are packed into panels (kernels.h) and a batched kernel computes a few
 *    weight rows against all of them, unpacking every weight block once: the 16-row kernel over
 *    the matrix's packed groups when it has them, else over rows in place where the format has
 *    one, else a rep kernel.
 * Both give each output the bits of vec_dot (kernels.h), so a column's result depends only on W
 * and its own row: the batch invariance that speculative verification relies on. Threads split
 * the output rows in contiguous chunks (each thread streams its own slice of W) and never the
 * reduction. */
#include "matmul.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/model.h"
#include "kernels.h"

/* Batches above AR_BATCH_INVARIANT (prompts) need not be batch-invariant, and for the float
 * formats OpenBLAS's sgemm on F32 weights (the mapping itself, or panels of rows widened into a
 * per-thread buffer of BLAS_PANEL_BYTES, sized for L2) beats the exact kernels, whose float order
 * forbids fused multiply-adds. For the quantized formats the int8 kernels win. Measured on the
 * 2-core Sapphire Rapids VM (one thread, CPU time, best of 3, a 2048 x 2048 matrix; ms for
 * exact kernel / dequantize + sgemm):
 *          n = 128        n = 512
 *   f32    30.1 / 14.8    166.7 / 59.8
 *   f16    30.0 / 22.6    158.7 / 76.2
 *   q8_0   10.2 / 17.5     48.7 / 58.1
 *   q4_0    7.4 / 17.1     43.3 / 69.5
 *   q4_K    9.0 / 27.5     55.6 / 67.7
 *   q6_K   18.4 / 35.4     46.3 / 106.9
 * (ARBOR_MATMUL_BLAS=0 or 1 in the environment forces the choice, for measuring.) */
#define BLAS_PANEL_BYTES (512 * 1024)

struct ar_matmul_scratch {
    int32_t max_rows;
    int64_t max_in;
    uint8_t *xq;    /* [max_rows][row bytes] rounded activations */
    uint8_t *panel; /* packed panels of the rounded rows */
    bool blas_ok;   /* prompt rows: sgemm may take batches above AR_BATCH_INVARIANT */
    int n_blas;     /* per-thread dequantization buffers allocated */
    float **blas;
    int n_own;      /* per-thread copies of one panel's rounded rows and panel (threads >= 1) */
    uint8_t **own_xq, **own_panel;
};

/* Buffers are not cleared: their pages count towards the resident size only once a batch that
 * large has used them. */
static void *alloc_lazy(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, AR_ALIGN, bytes ? bytes : AR_ALIGN) == 0 ? p : NULL;
}

uint64_t ar_matmul_scratch_bytes(int32_t max_rows, int64_t max_in) {
    const uint64_t cols = ((uint64_t)max_rows + 15) / 16 * 16;
    return (uint64_t)max_rows * (uint64_t)max_in * sizeof(float) + AR_ALIGN +
           cols * ((uint64_t)max_in * sizeof(float) + AR_ALIGN);
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
    for (int i = 0; i < s->n_own; i++) free(s->own_xq[i]), free(s->own_panel[i]);
    free(s->own_xq);
    free(s->own_panel);
    for (int i = 0; i < s->n_blas; i++) free(s->blas[i]);
    free(s->blas);
    free(s);
}

/* Per-thread buffers for dequantized weight panels, made once per thread count. */
static bool blas_buffers(ar_matmul_scratch *s, int nth) {
    if (s->n_blas >= nth) return true;
    float **b = realloc(s->blas, sizeof *b * (size_t)nth);
    if (!b) return false;
    s->blas = b;
    for (; s->n_blas < nth; s->n_blas++)
        if (!(s->blas[s->n_blas] = alloc_lazy(BLAS_PANEL_BYTES))) return false;
    return true;
}

/* Per-thread room for one panel of up to 16 rounded rows (mm_job.own_panels), made once per
 * thread count; thread 0 uses the shared buffers. */
static bool own_buffers(ar_matmul_scratch *s, int nth) {
    if (s->n_own >= nth - 1) return true;
    uint8_t **x = realloc(s->own_xq, sizeof *x * (size_t)nth);
    if (x) s->own_xq = x;
    uint8_t **p = realloc(s->own_panel, sizeof *p * (size_t)nth);
    if (p) s->own_panel = p;
    if (!x || !p) return false;
    const size_t rows = (size_t)AR_MIN(16, s->max_rows);
    for (; s->n_own < nth - 1; s->n_own++) {
        s->own_xq[s->n_own] = alloc_lazy(rows * (size_t)s->max_in * sizeof(float) + AR_ALIGN);
        s->own_panel[s->n_own] = alloc_lazy(16 * ((size_t)s->max_in * sizeof(float) + AR_ALIGN));
        if (!s->own_xq[s->n_own] || !s->own_panel[s->n_own]) {
            free(s->own_xq[s->n_own]), free(s->own_panel[s->n_own]);
            return false;
        }
    }
    return true;
}

static int blas_mode = -1; /* -1: measured choice; 0 never; 1 always (ARBOR_MATMUL_BLAS) */
static void blas_mode_init(void) {
    const char *e = getenv("ARBOR_MATMUL_BLAS");
    if (e && (e[0] == '0' || e[0] == '1')) blas_mode = e[0] - '0';
}

void ar_matmul_scratch_allow_blas(ar_matmul_scratch *s, bool allow) { s->blas_ok = allow; }

static bool blas_wins(const ar_matmul_scratch *s, ar_type t, int32_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, blas_mode_init);
    if (!s->blas_ok || n <= AR_BATCH_INVARIANT || blas_mode == 0) return false;
    if (blas_mode == 1) return true;
    return t == AR_TYPE_F32 || t == AR_TYPE_F16 || t == AR_TYPE_BF16;
}

#define MM_MAX_SET 3 /* matrices sharing one input in one dispatch (q, k, v; gate, up) */

typedef struct mm_job {
    /* Ws[0..count) into ys[0..count); count > 1 only on the batched kernel's path, with every
     * matrix of Ws[0]'s type and input length */
    int count;
    const ar_tensor *Ws[MM_MAX_SET];
    float *ys[MM_MAX_SET];
    int32_t n;
    bool add;
    /* one dot product per output */
    const uint8_t *xq;
    size_t xq_stride;
    ar_vec_dot_fn dot;
    /* batched kernel (packed: a 16-row kernel over the matrices' packed groups) */
    const ar_gemm_kernel *g;
    bool packed;
    const uint8_t *panel;
    size_t pstride;
    int ngroups;
    uint8_t *panel_out; /* where mm_prepare_worker packs */
    /* own_panels: a batch of one panel for a 16-row kernel; every thread rounds and packs its own
     * copy (the same bytes) at the start of its share, in parallel, instead of the caller alone
     * before the dispatch while the others wait; thread i >= 1 into own_xq/own_panel[i - 1] */
    bool own_panels;
    uint8_t *const *own_xq, *const *own_panel;
    /* activations, as given */
    const float *x;
    /* sgemm */
    float **blas;
    /* the batched kernel's next chunk of rows (mm_gemm_worker) */
    _Atomic int64_t next_chunk;
} mm_job;

static inline void put(float *y, float v, bool add) {
    *y = add ? *y + v : v;
}

/* Rows are handed out in chunks of 16 so that a thread's slice of W is contiguous. */
static void mm_dot_worker(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const ar_tensor *W = j->Ws[0];
    const int64_t n_in = W->ne[0], n_out = W->ne[1];
    int64_t lo, hi;
    ar_split(n_out, 16, ith, nth, &lo, &hi);
    const uint8_t *wbase = W->data;
    for (int64_t r = lo; r < hi; r++) {
        const uint8_t *wr = wbase + (size_t)r * W->nb1;
        for (int32_t c = 0; c < j->n; c++) {
            float s;
            j->dot(n_in, &s, wr, j->xq + (size_t)c * j->xq_stride);
            put(j->ys[0] + (size_t)c * n_out + r, s, j->add);
        }
    }
}

/* Tiles of 16 weight rows (ar_split's alignment): for each chunk of max_groups panels, every
 * kernel call of the tile (max_rows rows at a time) reuses the same panels while they are in
 * cache, and the tile's outputs go to y a whole 64-byte line per column at a time. */
#define ROW_TILE 16

/* Output rows [lo, hi) of W (lo a multiple of 16) into y ([n][W->ne[1]]). */
static void gemm_rows(const mm_job *j, const ar_tensor *W, float *y, int64_t lo, int64_t hi) {
    const ar_gemm_kernel *g = j->g;
    const int64_t n_in = W->ne[0], n_out = W->ne[1];
    const uint8_t *wbase = W->data;
    const size_t nb1 = W->nb1;
    const ar_gemm_fn run = g->run;
#define W_ROWS(r) (wbase + (size_t)(r) * nb1)
    float out[256];            /* max_rows * max_groups * lanes <= 256 (test_matmul checks) */
    float tile[ROW_TILE * 64]; /* [column][tile row]; max_groups * lanes <= 64 */
    for (int64_t t0 = lo; t0 < hi; t0 += ROW_TILE) {
        const int tr = (int)AR_MIN(ROW_TILE, hi - t0);
        for (int g0 = 0; g0 < j->ngroups; g0 += g->max_groups) {
            const int cnt = AR_MIN(g->max_groups, j->ngroups - g0);
            const int32_t c0 = g0 * g->lanes, nc = AR_MIN(j->n, c0 + cnt * g->lanes) - c0;
            if (j->n == 1 && !j->add) { /* one column: the kernel writes y itself */
                for (int r0 = 0; r0 < tr; r0 += g->max_rows)
                    run(n_in, W_ROWS(t0 + r0), nb1, AR_MIN(g->max_rows, tr - r0), j->panel,
                        j->pstride, 1, y + t0 + r0);
                continue;
            }
            for (int r0 = 0; r0 < tr; r0 += g->max_rows) {
                const int nr = AR_MIN(g->max_rows, tr - r0);
                run(n_in, W_ROWS(t0 + r0), nb1, nr, j->panel + (size_t)g0 * j->pstride,
                    j->pstride, cnt, out);
                for (int r = 0; r < nr; r++)
                    for (int32_t c = 0; c < nc; c++)
                        tile[c * ROW_TILE + r0 + r] = out[r * cnt * g->lanes + c];
            }
            for (int32_t c = 0; c < nc; c++) {
                float *yc = y + (size_t)(c0 + c) * n_out + t0;
                const float *tc = tile + c * ROW_TILE;
                if (j->add)
                    for (int r = 0; r < tr; r++) yc[r] += tc[r];
                else
                    memcpy(yc, tc, sizeof(float) * (size_t)tr);
            }
        }
    }
}

#undef W_ROWS

/* Weight bytes of the rows that rows16_rows keeps in L2 while every panel passes over them
 * (L2 is 1 MB a core on Zen 4, 2 MB on Sapphire Rapids: room for the panels as well). */
#define ROWS16_L2_BYTES (256 * 1024)

/* Output rows [lo, hi) of W (lo a multiple of 16) by a 16-row kernel: one call per 16 rows and
 * panel (16 columns), writing y itself. The rows go in blocks of about ROWS16_L2_BYTES, panels
 * inside a block: a block's weights come from memory once and from L2 for the other panels, and
 * a panel is read from the caches once a block (with 32 panels of a 512-token prompt, panels
 * inside every 16 rows read every panel again for every 16 rows; panels outside the whole chunk
 * read a chunk of more than L2 from memory again for every panel). */
static void rows16_rows(const mm_job *j, const uint8_t *panel, const ar_tensor *W, float *y,
                        int64_t lo, int64_t hi) {
    const ar_gemm_kernel *g = j->g;
    const int64_t n_in = W->ne[0], n_out = W->ne[1];
    const size_t gbytes = j->packed ? ar_pack_group_bytes(W->type, n_in) : 0;
    const size_t rec = g->panel == AR_PANEL_QK ? AR_QK_RECORD(1) : AR_Q32_RECORD(1, g->with_s);
    const size_t group_bytes = (size_t)AR_PACK_ROWS * W->nb1; /* packed or not, about the same */
    const int64_t block = AR_PACK_ROWS * AR_MAX(1, (int64_t)(ROWS16_L2_BYTES / group_bytes));
    for (int64_t b0 = lo; b0 < hi; b0 += block) {
        const int64_t b1 = AR_MIN(hi, b0 + block);
        for (int p = 0; p < j->ngroups; p++) { /* panel p: columns 16 p .. (its records' stride) */
            const int32_t c0 = p * g->lanes, nc = AR_MIN(g->lanes, j->n - c0);
            for (int64_t r0 = b0; r0 < b1; r0 += AR_PACK_ROWS) {
                const int nr = (int)AR_MIN(AR_PACK_ROWS, b1 - r0);
                const uint8_t *w = j->packed
                                       ? (const uint8_t *)W->packed + (size_t)(r0 / 16) * gbytes
                                       : (const uint8_t *)W->data + (size_t)r0 * W->nb1;
                g->rows16(n_in, w, W->nb1, nr, panel + (size_t)p * j->pstride, (size_t)nc * rec,
                          nc, y + (size_t)c0 * n_out + r0, (size_t)n_out, j->add);
            }
        }
    }
}

/* The rows of Ws[0..count) taken as one sequence, each matrix's rows rounded up to 16 so that
 * every matrix's part starts on a tile: threads split that sequence (one dispatch for all). */
static int64_t round16(int64_t r) { return (r + 15) / 16 * 16; }

/* Threads take chunks of that sequence in turn from a shared counter, guided: a chunk is
 * 1 / (2 * threads) of the rows left, at least CHUNK_MIN, so that the first ones are long runs of
 * rows (each one stream of weights, which the prefetchers follow best: measured 0.82 of a plain
 * read's bandwidth with chunks of 64 rows, 0.87-0.88 with 256 or more) and the last ones short,
 * so that a thread that started late (the caller rounds the activations first) or runs slower
 * takes fewer and the threads reach the pool's wait together. */
#define CHUNK_MIN 32

static void prepare_panel(const mm_job *j, uint8_t *xq, uint8_t *panel);

static void mm_gemm_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    const uint8_t *panel = j->panel;
    if (j->own_panels) {
        uint8_t *xq = ith ? j->own_xq[ith - 1] : (uint8_t *)j->xq;
        uint8_t *own = ith ? j->own_panel[ith - 1] : j->panel_out;
        prepare_panel(j, xq, own);
        panel = own;
    }
    int64_t total = 0;
    for (int i = 0; i < j->count; i++) total += round16(j->Ws[i]->ne[1]);
    for (;;) {
        int64_t lo = atomic_load_explicit(&j->next_chunk, memory_order_relaxed), len;
        do {
            if (lo >= total) return;
            len = AR_MAX(CHUNK_MIN, (total - lo) / (2 * nth) / 16 * 16);
        } while (!atomic_compare_exchange_weak_explicit(&j->next_chunk, &lo, lo + len,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
        const int64_t hi = AR_MIN(total, lo + len);
        int64_t off = 0;
        for (int i = 0; i < j->count; i++) {
            const int64_t rows = j->Ws[i]->ne[1], span = round16(rows);
            const int64_t a = AR_MAX(lo, off) - off, b = AR_MIN(AR_MIN(hi, off + span) - off, rows);
            if (a < b && j->g->rows16) rows16_rows(j, panel, j->Ws[i], j->ys[i], a, b);
            else if (a < b) gemm_rows(j, j->Ws[i], j->ys[i], a, b);
            off += span;
        }
    }
}

/* The rounded rows and the panel of a one-panel batch (own_panels) into xq and panel. */
static void prepare_panel(const mm_job *j, uint8_t *xq, uint8_t *panel) {
    const ar_type vdt = ar_type_get(j->Ws[0]->type)->vec_dot_type;
    const int64_t n_in = j->Ws[0]->ne[0];
    for (int32_t c = 0; c < j->n; c++)
        ar_quantize_row_fast(vdt, j->x + (size_t)c * n_in, xq + (size_t)c * j->xq_stride, n_in);
    ar_panel_pack(j->g, xq, j->xq_stride, j->n, n_in, panel);
}

/* Rounds the activation rows to vec_dot_type (this is not the weight quantizer: ggml rounds
 * Q8_0 ties differently) and packs them into panels for the batched kernel; threads take whole
 * panels (or, without a batched kernel, rows). */
static void mm_prepare_worker(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const ar_gemm_kernel *g = j->g;
    const ar_type vdt = ar_type_get(j->Ws[0]->type)->vec_dot_type;
    const int64_t n_in = j->Ws[0]->ne[0];
    int64_t lo, hi;
    ar_split(j->ngroups, 1, ith, nth, &lo, &hi);
    uint8_t *xq = (uint8_t *)j->xq;
    for (int64_t p = lo; p < hi; p++) {
        const int32_t c0 = g ? (int32_t)p * g->lanes : (int32_t)p;
        const int32_t c1 = g ? AR_MIN(j->n, c0 + g->lanes) : c0 + 1;
        if (vdt != AR_TYPE_F32)
            for (int32_t c = c0; c < c1; c++)
                ar_quantize_row_fast(vdt, j->x + (size_t)c * n_in, xq + (size_t)c * j->xq_stride,
                                     n_in);
        if (g)
            ar_panel_pack(g, xq + (size_t)c0 * j->xq_stride, j->xq_stride, c1 - c0, n_in,
                          j->panel_out + (size_t)p * j->pstride);
    }
}

/* y[:, rows] (+)= x · W[rows]^T by sgemm, W's rows taken as they are (F32) or dequantized a
 * panel at a time. */
static void mm_blas_worker(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const ar_tensor *W = j->Ws[0];
    const int64_t n_in = W->ne[0], n_out = W->ne[1];
    int64_t lo, hi;
    ar_split(n_out, 16, ith, nth, &lo, &hi);
    const ar_type_traits *wt = ar_type_get(W->type);
    const int64_t chunk = AR_MAX(1, BLAS_PANEL_BYTES / (int64_t)(n_in * sizeof(float)));
    for (int64_t r0 = lo; r0 < hi; r0 += chunk) {
        const int64_t nr = AR_MIN(chunk, hi - r0);
        const uint8_t *wr = (const uint8_t *)W->data + (size_t)r0 * W->nb1;
        const float *wf = (const float *)wr;
        if (W->type != AR_TYPE_F32) {
            for (int64_t r = 0; r < nr; r++)
                wt->to_float(wr + (size_t)r * W->nb1, j->blas[ith] + r * n_in, n_in);
            wf = j->blas[ith];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, (int)nr, (int)n_in, 1.0f, j->x,
                    (int)n_in, wf,
                    W->type == AR_TYPE_F32 ? (int)(W->nb1 / sizeof(float)) : (int)n_in,
                    j->add ? 1.0f : 0.0f, j->ys[0] + r0, (int)n_out);
    }
}

/* W's batched kernel for n columns (*packed: over its packed groups), or NULL (then one vec_dot
 * per output) */
static const ar_gemm_kernel *kernel_for(const ar_tensor *W, int32_t n, bool *packed) {
    const ar_gemm_kernel *g = W->packed ? ar_packed_get(W->type) : NULL;
    *packed = g != NULL;
    if (g) return g;
    /* the in-place 16-row kernels gather a call's scales with 32-bit offsets: rows of over
     * 143 MB take the rep kernels */
    return ar_gemm_get(W->type, n, (size_t)15 * W->nb1 <= (size_t)INT32_MAX);
}

/* y_i (+)= x · W_i^T for i < count: count > 1 only when every W_i has the same type and input
 * length and a batched kernel (ar_matmul_set checks). */
static void matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *const *Ws,
                   float *const *ys, int count, const float *x, int32_t n, bool add) {
    const ar_tensor *W = Ws[0];
    const ar_type_traits *wt = ar_type_get(W->type);
    const int64_t n_in = W->ne[0];
    const ar_type vdt = wt->vec_dot_type;
    mm_job j = {.count = count, .n = n, .add = add, .dot = wt->vec_dot_fast};
    for (int i = 0; i < count; i++) j.Ws[i] = Ws[i], j.ys[i] = ys[i];
    if (blas_wins(s, W->type, n) && (size_t)n_in * sizeof(float) <= BLAS_PANEL_BYTES &&
        blas_buffers(s, pool ? ar_pool_threads(pool) : 1)) {
        j.x = x; /* OpenBLAS runs one thread inside each of ours: see ar_kernels_select */
        j.blas = s->blas;
        ar_pool_run_or_inline(pool, mm_blas_worker, &j);
        return;
    }
    if (vdt == AR_TYPE_F32) {
        j.xq = (const uint8_t *)x;
        j.xq_stride = (size_t)n_in * sizeof(float);
    } else {
        j.xq_stride = ar_row_size(vdt, n_in);
        j.xq = s->xq;
    }
    const ar_gemm_kernel *g = kernel_for(W, n, &j.packed);
    j.g = g;
    j.ngroups = g ? (n + g->lanes - 1) / g->lanes : n;
    j.pstride = g ? ar_panel_bytes(g, n_in) : 0;
    j.x = x;
    j.panel_out = s->panel;
    if (g && g->panel == AR_PANEL_ROWS && vdt == AR_TYPE_F32) {
        j.panel = (const uint8_t *)x; /* F32 rows are their own panels */
        j.pstride = j.xq_stride;
    } else {
        /* round (and pack) the activations: per row, so any split over threads gives the same
         * bytes; one panel's worth, every thread for itself inside the job; a few rows more, by
         * the caller; more, by a dispatch of its own */
        j.panel = s->panel;
        const int nth = pool ? ar_pool_threads(pool) : 1;
        if (g && g->rows16 && j.ngroups == 1 && vdt != AR_TYPE_F32 && nth > 1 &&
            own_buffers(s, nth)) {
            j.own_panels = true;
            j.own_xq = s->own_xq;
            j.own_panel = s->own_panel;
        } else if (pool && n >= 8) {
            ar_pool_run(pool, mm_prepare_worker, &j);
        } else {
            mm_prepare_worker(&j, 0, 1);
        }
    }
    ar_pool_run_or_inline(pool, g ? mm_gemm_worker : mm_dot_worker, &j);
}

void ar_matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x, int32_t n,
               float *y) {
    matmul(s, pool, &W, &y, 1, x, n, false);
}

void ar_matmul_add(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x,
                   int32_t n, float *y) {
    matmul(s, pool, &W, &y, 1, x, n, true);
}

void ar_matmul_set(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *const *W, int count,
                   const float *x, int32_t n, float *const *y) {
    bool together = count <= MM_MAX_SET && !blas_wins(s, W[0]->type, n), packed;
    const ar_gemm_kernel *g0 = together ? kernel_for(W[0], n, &packed) : NULL;
    for (int i = 0; together && i < count; i++)
        together = g0 && W[i]->type == W[0]->type && W[i]->ne[0] == W[0]->ne[0] &&
                   kernel_for(W[i], n, &packed) == g0;
    if (together) {
        matmul(s, pool, W, y, count, x, n, false);
        return;
    }
    for (int i = 0; i < count; i++) matmul(s, pool, &W[i], &y[i], 1, x, n, false);
}

size_t ar_matmul_packed_bytes(const ar_tensor *W) {
    if (!ar_packed_get(W->type) || W->ne[1] < 1) return 0;
    return (size_t)((W->ne[1] + AR_PACK_ROWS - 1) / AR_PACK_ROWS) *
           ar_pack_group_bytes(W->type, W->ne[0]);
}

void ar_matmul_repack(const ar_tensor *W, void *out) {
    const size_t gbytes = ar_pack_group_bytes(W->type, W->ne[0]);
    for (int64_t r = 0; r < W->ne[1]; r += AR_PACK_ROWS)
        ar_pack_group(W->type, (const uint8_t *)W->data + (size_t)r * W->nb1, W->nb1,
                      (int)AR_MIN(AR_PACK_ROWS, W->ne[1] - r), W->ne[0],
                      (uint8_t *)out + (size_t)(r / AR_PACK_ROWS) * gbytes);
}
