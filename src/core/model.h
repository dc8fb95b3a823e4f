/* model.h: decoder-only transformers loaded from GGUF (architectures llama, qwen2, qwen3, gemma2,
 * phi3: the traits table in model.c says how they differ), their KV cache, and the batched
 * forward pass.
 *
 * A batch is a set of tokens with a parent relation: row i attends to the whole committed
 * context, to its ancestors in the batch and to itself. A plain prompt is the chain
 * parent[i] = i - 1; a token tree is any parent array with parent[i] < i. Row i sits at position
 * n_committed + depth(i). Every row is computed by the same per-row code (matmul columns are
 * independent, activations are rounded per row, attention visits visible entries in position
 * order; a sliding window depends on positions only), so a token's logits and KV entries are
 * bit-identical whether it is evaluated alone or inside a batch of any size: that is what makes
 * speculative output exactly the verifier's own. The one exception is asked for: prompt chunks
 * (ar_batch.prompt) of more than AR_BATCH_INVARIANT rows may use BLAS for float weights. */
#ifndef ARBOR_MODEL_H
#define ARBOR_MODEL_H

#include "gguf.h"
#include "tensor.h"
#include "threadpool.h"
#include "src/tokenizer/vocab.h"

/* Prompt chunks (ar_batch.prompt) above this size may use faster BLAS paths whose rounding
 * depends on the batch; every other batch uses only batch-invariant kernels. */
#define AR_BATCH_INVARIANT 64

typedef enum ar_arch {
    AR_ARCH_LLAMA = 0, /* also Llama 3.x (rope_freqs.weight) and Mistral (sliding window) */
    AR_ARCH_QWEN2 = 1,
    AR_ARCH_QWEN3 = 2,
    AR_ARCH_GEMMA2 = 3,
    AR_ARCH_PHI3 = 4,
    AR_ARCH_COUNT
} ar_arch;
typedef enum ar_rope_type { AR_ROPE_NORM = 0, AR_ROPE_NEOX = 1 } ar_rope_type;
typedef enum ar_ffn_act {
    AR_FFN_SILU = 0,     /* down(silu(gate) * up) */
    AR_FFN_GELU_TANH = 1 /* down(gelu_tanh(gate) * up) */
} ar_ffn_act;
/* Which layers attend through <arch>.attention.sliding_window. */
typedef enum ar_swa_layers {
    AR_SWA_NONE = 0, /* none: the key is refused (its meaning for the family is not implemented) */
    AR_SWA_ALL = 1,  /* every layer (Mistral, Phi-3) */
    AR_SWA_EVEN = 2  /* layers 0, 2, 4, ...; the odd ones are global (Gemma 2) */
} ar_swa_layers;
typedef enum ar_rope_scaling {
    AR_ROPE_SCALING_NONE = 0,
    AR_ROPE_SCALING_LINEAR = 1,  /* positions divided by rope.scaling.factor */
    AR_ROPE_SCALING_YARN = 2,    /* YaRN: interpolation ramped in by frequency, magnitude scale */
    AR_ROPE_SCALING_LONGROPE = 3 /* Phi-3: per-frequency factors (long or short by context) */
} ar_rope_scaling;

/* What one architecture is, as data: the forward pass and the loader read these fields instead of
 * testing the architecture (one row per architecture in model.c; docs/design.md has the table). */
typedef struct ar_arch_traits {
    const char *name;       /* general.architecture */
    ar_rope_type rope;      /* which dimensions rotate together */
    ar_ffn_act ffn_act;
    bool qkv_bias;          /* attn_{q,k,v}.bias required (other archs: used when present) */
    bool qk_norm;           /* attn_{q,k}_norm.weight: RMSNorm of each q and k head (Qwen3) */
    bool fused_qkv;         /* attn_qkv.weight: q, k, v stacked in one matrix (Phi-3) */
    bool fused_gate_up;     /* ffn_up.weight: gate then up stacked, 2 * n_ff outputs (Phi-3) */
    bool post_norms;        /* post_attention_norm and post_ffw_norm before each residual add */
    bool embd_scale;        /* embeddings multiplied by sqrt(n_embd) (Gemma 2) */
    bool softcap;           /* attn_logit_softcapping / final_logit_softcapping keys (Gemma 2) */
    bool rope_freqs;        /* rope_freqs.weight: per-frequency divisors (Llama 3.1+) */
    bool longrope;          /* rope_factors_long/short.weight (Phi-3 128k) */
    ar_swa_layers swa;      /* layers that use the sliding window */
    float rms_eps;          /* default of attention.layer_norm_rms_epsilon */
} ar_arch_traits;

const ar_arch_traits *ar_arch_get(ar_arch a);

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
    float rope_freq_scale;  /* 1 / rope.scaling.factor (linear and YaRN) */
    ar_rope_type rope_type;
    ar_rope_scaling rope_scaling;
    float rope_attn_factor; /* multiplies cos and sin (rope.scaling.attn_factor; YaRN adds its own) */
    int32_t n_ctx_orig;     /* rope.scaling.original_context_length (YaRN, longrope) */
    float yarn_corr[2];     /* YaRN: the dimension range where interpolation ramps in */
    float attn_scale;       /* q·k multiplier: 1/sqrt(head_dim), or the file's */
    float attn_softcap;     /* scores -> c * tanh(scores / c) before the softmax; 0: none */
    float final_softcap;    /* the same on the logits */
    int32_t n_swa;          /* sliding window of the layers the traits name; 0: none */
} ar_hparams;

typedef struct ar_layer {
    const float *attn_norm;              /* [n_embd] */
    ar_tensor wq;                        /* n_embd -> n_head * head_dim */
    ar_tensor wk, wv;                    /* n_embd -> n_head_kv * head_dim */
    ar_tensor wqkv;                      /* fused_qkv: n_embd -> q_dim + 2 * kv_dim (wq.. empty) */
    ar_tensor wo;                        /* n_head * head_dim -> n_embd */
    const float *bq, *bk, *bv;           /* biases (qwen2; optional for llama), or NULL */
    const float *q_norm, *k_norm;        /* qk_norm: [head_dim], or NULL */
    const float *attn_post_norm;         /* post_norms: [n_embd], or NULL */
    const float *ffn_norm;               /* [n_embd] */
    ar_tensor w_gate, w_up;              /* n_embd -> n_ff (fused_gate_up: w_up -> 2 * n_ff) */
    ar_tensor w_down;                    /* n_ff -> n_embd */
    const float *ffn_post_norm;          /* post_norms: [n_embd], or NULL */
    int32_t n_swa;                       /* this layer's sliding window; 0: global attention */
} ar_layer;

/* Every weight pointer of a layer (the matrices' data and the vectors) that lies in
 * [from, from + len) is moved to the same offset from `to`: a layer view over a copy of those
 * bytes (weight streaming); a moved matrix reads its rows in place (no packed copy). Returns how
 * many pointers moved. */
int ar_layer_rebase(ar_layer *L, const void *from, size_t len, const void *to);
/* Whether any weight pointer of the layer lies in [from, from + len). */
bool ar_layer_points_into(const ar_layer *L, const void *from, size_t len);

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
    const float *rope_freqs;  /* [n_rot / 2] divisors of the rotation frequencies, or NULL */
    const float *rope_long, *rope_short; /* longrope: [n_rot / 2] each */
    uint8_t *claimed;         /* while loading: which of the file's tensors the model uses */
    void *owned;              /* dequantized copies of small 1-D tensors stored in other formats */
    bool resident;            /* pre-faulted and mlocked */
    bool faulted_in;          /* pre-faulted (params.resident), locked or not */
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
/* Bytes of the matrices a forward pass through the first n_layers layers (<= 0: all) and the
 * head reads: what its memory-bound cost is proportional to. */
uint64_t ar_model_pass_bytes(const ar_model *m, int32_t n_layers);
/* Whether d is a cut of v: v's first d->hp.n_layer layers (fewer than v has), with v's
 * embedding, head and every other tensor outside the layers, the same hyperparameters, and
 * every tensor's type, shape and bytes equal (compared in full). Such a drafter computes what
 * v's first layers and head compute, bit for bit: a caller can run those instead. */
bool ar_model_is_cut_of(const ar_model *d, const ar_model *v);
/* Unlocks and drops the model's pages from this process (a model no longer read here, or only
 * rarely): it stays usable, reading its file again where touched. */
void ar_model_release_memory(ar_model *m);

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
    bool prompt;           /* a prompt chunk: above AR_BATCH_INVARIANT rows the float formats
                              may use BLAS (not bit-identical to row-by-row evaluation) */
} ar_batch;

typedef struct ar_workspace ar_workspace;
/* Scratch for batches of up to max_batch rows (larger causal batches run in chunks). */
ar_status ar_workspace_create(const ar_model *m, int32_t max_batch, int32_t n_ctx,
                              ar_workspace **out);
void ar_workspace_free(ar_workspace *w);
/* Bytes a workspace holds at most (all of its buffers touched) for n_threads threads. */
uint64_t ar_workspace_bytes(const ar_model *m, int32_t max_batch, int32_t n_ctx, int n_threads);
/* Takes the weights from a stream (stream.h) instead of the mapping, from the next evaluation on
 * (NULL: the mapping again). The stream must outlive its use. */
struct ar_stream;
ar_status ar_workspace_set_stream(ar_workspace *w, const ar_model *m, struct ar_stream *s);

/* Evaluates rows [first, n) of the batch: writes their K/V at cells n_committed + i (not
 * committed: call ar_kv_commit), and the logits of the wanted rows, in row order, to `logits`
 * ([n_wanted][n_vocab]). n - first must not exceed the workspace's max_batch. */
ar_status ar_model_eval(const ar_model *m, ar_kv *kv, ar_workspace *w, ar_pool *pool,
                        const ar_batch *b, float *logits);

#endif
