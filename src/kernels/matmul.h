/* matmul.h: y = W·x for a batch of n activation rows. Each activation row is rounded once to the
 * weight format's activation type (as llama.cpp's CPU backend does), then every output element is
 * one dot product by the format's dispatched kernel. Column j of the result depends only on W and
 * row j of x, never on n or on how rows are split over threads: the batch-invariance that
 * speculative verification relies on. */
#ifndef ARBOR_MATMUL_H
#define ARBOR_MATMUL_H

#include "src/core/tensor.h"
#include "src/core/threadpool.h"

typedef struct ar_matmul_scratch ar_matmul_scratch;

/* Room for max_rows activation rows of up to max_in values. */
ar_status ar_matmul_scratch_create(int32_t max_rows, int64_t max_in, ar_matmul_scratch **out);
/* Bytes such a scratch holds at most (BLAS panels aside: prompts of float weights only). */
uint64_t ar_matmul_scratch_bytes(int32_t max_rows, int64_t max_in);
void ar_matmul_scratch_free(ar_matmul_scratch *s);

/* Prompt rows need not be batch-invariant: with `allow`, batches above AR_BATCH_INVARIANT rows
 * of float weights may go to OpenBLAS's sgemm (faster, rounding that depends on the batch).
 * Off by default, and off for every token tree whatever its size. */
void ar_matmul_scratch_allow_blas(ar_matmul_scratch *s, bool allow);

/* y[j][r] = W[r] · x[j] for j < n, r < W->ne[1]; x is [n][W->ne[0]], y is [n][W->ne[1]]. */
void ar_matmul(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x, int32_t n,
               float *y);
/* y[j][r] += W[r] · x[j] */
void ar_matmul_add(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *W, const float *x,
                   int32_t n, float *y);

/* y[i] = x · W[i]^T for i < count (up to 3 matrices reading the same input: q, k, v; gate, up):
 * the input is rounded once and, where the matrices share a format with a batched kernel, one
 * dispatch of the thread pool covers them all (fewer waits between matmuls); the results are
 * those of ar_matmul, bit for bit. */
void ar_matmul_set(ar_matmul_scratch *s, ar_pool *pool, const ar_tensor *const *W, int count,
                   const float *x, int32_t n, float *const *y);

/* Bytes of W's packed form (kernels.h: groups of 16 rows, a rearrangement of its bytes) when this
 * CPU has a 16-row kernel over packed groups of W's format (else 0), and the packing itself into
 * `out` (64-byte aligned, that many bytes). Once W->packed points at it, every batch size reads
 * the packed form, with bit-identical results. */
size_t ar_matmul_packed_bytes(const ar_tensor *W);
void ar_matmul_repack(const ar_tensor *W, void *out);

#endif
