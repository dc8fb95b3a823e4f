/* model.h: llama-family transformer (architectures `llama` and `qwen2`) loaded from GGUF, its KV
 * cache, and the batched forward pass.
 *
 * A batch is a set of tokens with a parent relation: row i attends to the whole committed
 * context, to its ancestors in the batch and to itself. A plain prompt is the chain
 * parent[i] = i - 1; a token tree is any parent array with parent[i] < i. Row i sits at position
 * n_committed + depth(i). Every row is computed by the same per-row code (matmul columns are
 * independent, activations are rounded per row, attention visits visible entries in position
 * order), so a token's logits and KV entries are bit-identical whether it is evaluated alone or
 * inside a batch of up to AR_BATCH_INVARIANT rows: that is what makes speculative output exactly
 * the verifier's own. */
#ifndef ARBOR_MODEL_H
#define ARBOR_MODEL_H

#include "gguf.h"
#include "tensor.h"
#include "threadpool.h"
#include "vocab.h"

/* Batches up to this size use only batch-invariant kernels (larger prompt batches may use
 * faster BLAS paths whose rounding depends on the batch). */
#define AR_BATCH_INVARIANT 64

typedef enum ar_arch { AR_ARCH_LLAMA = 0, AR_ARCH_QWEN2 = 1 } ar_arch;
typedef enum ar_rope_type { AR_ROPE_NORM = 0, AR_ROPE_NEOX = 1 } ar_rope_type;

typedef struct ar_hparams {
    ar_arch arch;
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;    /* n_embd / n_head unless the file says otherwise */
    int32_t n_ff;
    int32_t n_ctx_train; /* <arch>.context_length */
    int32_t n_rot;       /* rotated dims per head (<arch>.rope.dimension_count) */
    float rms_eps;
    float rope_base;
    float rope_freq_scale; /* 1 / linear scaling factor */
    ar_rope_type rope_type;
} ar_hparams;

typedef struct ar_layer {
    const float *attn_norm;              /* [n_embd] */
    ar_tensor wq;                        /* n_embd -> n_head * head_dim */
    ar_tensor wk, wv;                    /* n_embd -> n_head_kv * head_dim */
    ar_tensor wo;                        /* n_head * head_dim -> n_embd */
    const float *bq, *bk, *bv;           /* qwen2 biases, NULL for llama */
    const float *ffn_norm;               /* [n_embd] */
    ar_tensor w_gate, w_up;              /* n_embd -> n_ff */
    ar_tensor w_down;                    /* n_ff -> n_embd */
} ar_layer;

typedef struct ar_model {
    char *path;
    ar_gguf *gguf;
    ar_vocab *vocab;
    ar_hparams hp;
    bool vocab_only;
    ar_tensor tok_embd;       /* n_vocab rows of n_embd */
    const float *output_norm; /* [n_embd] */
    ar_tensor output;         /* n_embd -> n_vocab (tok_embd when tied) */
    ar_layer *layers;         /* [n_layer] */
    void *owned;              /* dequantized copies of small 1-D tensors stored in other formats */
    bool resident;            /* pre-faulted (and mlocked when permitted) */
    void *packed;             /* the packed matrices (params.repack), or NULL */
    size_t packed_bytes;
    bool packed_mapped;       /* packed is a mapping of a cache entry (else malloc'd) */
    bool packed_locked;       /* that mapping is locked in memory as it is read */
    const char *packed_from;  /* "cache", "cache (written)" or "memory" */
    char pack_note[512];      /* a warning about the packed-weights cache, or "" */
} ar_model;

typedef struct ar_model_params {
    bool vocab_only; /* load only the tokenizer (any architecture) */
    bool resident;   /* pre-fault the mapping and try mlock (drafters) */
    bool repack;     /* the matrices in the packed layout wherever this CPU has kernels that
                      * read it (the default; false: every matrix read in place from the file):
                      * the same memory, faster, bit-identical results (model.c) */
} ar_model_params;

ar_model_params ar_model_default_params(void);
ar_status ar_model_load(const char *path, ar_model_params params, ar_model **out);
void ar_model_free(ar_model *m);
const char *ar_arch_name(ar_arch a);
/* Bytes of tensor data (the mapped weights). */
uint64_t ar_model_weight_bytes(const ar_model *m);

/* ---- KV cache ---- */
typedef struct ar_kv {
    int32_t n_layer;     /* layers cached; a forward pass runs this many layers (self-drafting
                            uses fewer than the model has) */
    int32_t kv_dim;      /* n_head_kv * head_dim */
    int32_t cap;         /* cells */
    ar_type type;        /* AR_TYPE_F32 or AR_TYPE_F16 */
    size_t cell_bytes;   /* bytes of one cell's K (or V) for one layer */
    uint8_t **k, **v;    /* [n_layer] -> [cap][kv_dim] */
    int32_t n_committed; /* cells [0, n_committed) hold positions 0 .. n_committed - 1 */
} ar_kv;

/* n_layer <= 0 means all of the model's layers. */
ar_status ar_kv_create(const ar_model *m, int32_t n_ctx, int32_t n_layer, ar_type type,
                       ar_kv **out);
void ar_kv_free(ar_kv *kv);
/* Bytes a cache of these dimensions needs (for refusing an oversized -c up front). */
uint64_t ar_kv_bytes(const ar_model *m, int32_t n_ctx, int32_t n_layer, ar_type type);
/* Drops everything from cell `n` on (n <= n_committed). */
void ar_kv_truncate(ar_kv *kv, int32_t n);
/* After evaluating a batch of rows (written at cells n_committed + i): keeps rows
 * rows[0..k-1] (a root-to-node path, so row j sits at depth j) by moving their entries to cells
 * n_committed .. n_committed + k - 1, and commits them. */
void ar_kv_commit(ar_kv *kv, const int32_t *rows, int32_t k);
/* Moves the entries of batch rows rows[0..k-1] (increasing, rows[j] >= j) to rows 0..k-1
 * without committing them (a pruned tree keeps its surviving nodes' entries). */
void ar_kv_compact(ar_kv *kv, const int32_t *rows, int32_t k);
/* Commits the first n rows of a causal batch as they are. */
static inline void ar_kv_commit_all(ar_kv *kv, int32_t n) { kv->n_committed += n; }

/* ---- forward pass ---- */
typedef struct ar_batch {
    int32_t n;
    const int32_t *tokens; /* [n] */
    const int32_t *parent; /* [n] parent row (< i) or -1; NULL: the causal chain */
    int32_t first;         /* rows [0, first) were evaluated by an earlier call (their K/V are
                              in cells n_committed + i): only rows [first, n) are computed. This
                              is how a drafter grows a tree one level per call. */
    const uint8_t *logits; /* [n] rows whose logits are wanted; NULL: all computed rows */
    bool skip_logits;      /* no logits at all (prompt rows before the last) */
} ar_batch;

typedef struct ar_workspace ar_workspace;
/* Scratch for batches of up to max_batch rows (larger causal batches run in chunks). */
ar_status ar_workspace_create(const ar_model *m, int32_t max_batch, int32_t n_ctx,
                              ar_workspace **out);
void ar_workspace_free(ar_workspace *w);

/* Evaluates rows [first, n) of the batch: writes their K/V at cells n_committed + i (not
 * committed: call ar_kv_commit), and the logits of the wanted rows, in row order, to `logits`
 * ([n_wanted][n_vocab]). n - first must not exceed the workspace's max_batch. */
ar_status ar_model_eval(const ar_model *m, ar_kv *kv, ar_workspace *w, ar_pool *pool,
                        const ar_batch *b, float *logits);

#endif
