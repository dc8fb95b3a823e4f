/* arbor.h: the public C API of arbor, a speculative-decoding LLM inference engine.
 *
 * Objects (opaque handles, one prefix each):
 *   arbor_model    read-only weights and tokenizer, memory-mapped from a GGUF file. Safe to share
 *                  between threads and contexts.
 *   arbor_context  KV caches, sampler, drafter and scheduler state for one generation at a time.
 *                  Use from one thread at a time (arbor_cancel excepted).
 * Every call that can fail returns an arbor_status; arbor_last_error() gives this thread's
 * message for the last failure. The library never prints to stdout and never exits; diagnostics
 * go to the log callback (arbor_set_log), the only process-wide state besides the error
 * message. Parameters are structs initialised by arbor_*_default_params(). */
#ifndef ARBOR_H
#define ARBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARBOR_API __attribute__((visibility("default")))

#define ARBOR_VERSION_MAJOR 0
#define ARBOR_VERSION_MINOR 1
#define ARBOR_VERSION_PATCH 0

typedef enum arbor_status {
    ARBOR_OK = 0,
    ARBOR_ERR_IO = -1,           /* a file cannot be opened, read, mapped or written */
    ARBOR_ERR_FORMAT = -2,       /* a file is malformed or truncated */
    ARBOR_ERR_UNSUPPORTED = -3,  /* well-formed but not supported (architecture, tensor type) */
    ARBOR_ERR_INVALID_ARG = -4,  /* an argument is out of range */
    ARBOR_ERR_NOMEM = -5,        /* out of memory, or a size bound exceeded */
    ARBOR_ERR_CONTEXT_FULL = -6, /* the prompt does not fit in the context */
    ARBOR_ERR_INCOMPATIBLE = -7, /* drafter and verifier vocabularies differ */
    ARBOR_ERR_CANCELLED = -8,    /* stopped by arbor_cancel */
    ARBOR_ERR_INTERNAL = -9,     /* a bug in arbor: please report */
} arbor_status;

typedef int32_t arbor_token;
typedef struct arbor_model arbor_model;
typedef struct arbor_context arbor_context;

/* This thread's message for the last failed call ("" if none). Valid until the next call. */
ARBOR_API const char *arbor_last_error(void);
ARBOR_API const char *arbor_status_string(arbor_status s);
ARBOR_API const char *arbor_version(void);

typedef enum arbor_log_level { ARBOR_LOG_ERROR, ARBOR_LOG_WARN, ARBOR_LOG_INFO } arbor_log_level;
typedef void (*arbor_log_fn)(void *user, arbor_log_level level, const char *message);
/* Sets the process-wide log sink (NULL: discard). Call before other threads use the library. */
ARBOR_API void arbor_set_log(arbor_log_fn fn, void *user);

/* ---- models ---- */
typedef struct arbor_model_params {
    bool vocab_only; /* load only the tokenizer (any architecture) */
    bool resident;   /* pre-fault the mapping and lock it in memory when permitted (drafters) */
} arbor_model_params;
ARBOR_API arbor_model_params arbor_model_default_params(void);
ARBOR_API arbor_status arbor_model_load(const char *path, arbor_model_params params,
                                        arbor_model **out);
ARBOR_API void arbor_model_free(arbor_model *model);

typedef struct arbor_model_info {
    const char *arch;  /* "llama", "qwen2" */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train;
    uint64_t weight_bytes;
    uint64_t file_bytes;
} arbor_model_info;
ARBOR_API arbor_status arbor_model_get_info(const arbor_model *model, arbor_model_info *out);

/* Tokenizes text. add_special: add BOS/EOS as the vocabulary says; parse_special: text that
 * spells a special token ("<s>") is that token. Writes at most cap ids; returns the number of
 * tokens (more than cap means call again with more room) or a negative arbor_status. */
ARBOR_API int32_t arbor_tokenize(const arbor_model *model, const char *text, size_t len,
                                 bool add_special, bool parse_special, arbor_token *out,
                                 int32_t cap);
/* The bytes token prints as (special tokens print nothing unless `special`). Returns the full
 * length (may exceed cap) or a negative arbor_status. A piece may be part of a UTF-8 character. */
ARBOR_API int32_t arbor_token_to_piece(const arbor_model *model, arbor_token token, bool special,
                                       char *buf, int32_t cap);
ARBOR_API arbor_token arbor_token_bos(const arbor_model *model); /* -1 when none */
ARBOR_API arbor_token arbor_token_eos(const arbor_model *model);
ARBOR_API bool arbor_token_is_eog(const arbor_model *model, arbor_token token);

/* ---- contexts ---- */
typedef enum arbor_draft_kind {
    ARBOR_DRAFT_NONE = 0,   /* plain decoding with the verifier alone */
    ARBOR_DRAFT_MODEL = 1,  /* a separate small model (draft_model) */
    ARBOR_DRAFT_SELF = 2,   /* the verifier's own first draft_self_layers layers and head */
    ARBOR_DRAFT_LOOKUP = 3, /* prompt lookup: n-gram matches in the context, no model */
} arbor_draft_kind;

typedef struct arbor_context_params {
    int32_t n_ctx;          /* KV cache cells; 0: the model's training context */
    int32_t n_threads;      /* 0: one per physical core */
    int32_t n_batch;        /* prompt tokens per forward pass; 0: 512 */
    bool kv_f16;            /* F16 KV cache (halves its memory) instead of F32 */
    arbor_draft_kind draft_kind;
    const arbor_model *draft_model; /* ARBOR_DRAFT_MODEL: borrowed, must outlive the context */
    int32_t draft_self_layers;      /* ARBOR_DRAFT_SELF: M >= 1, below the verifier's layers */
    const char *tree;       /* tree shape: "chain:K", "static:AxBxC", "dynamic:N", "adaptive";
                               NULL: the default ("dynamic:16"). Copied. */
} arbor_context_params;
ARBOR_API arbor_context_params arbor_context_default_params(void);
ARBOR_API arbor_status arbor_context_create(const arbor_model *model, arbor_context_params params,
                                            arbor_context **out);
ARBOR_API void arbor_context_free(arbor_context *ctx);
/* Forgets the cached prompt (the next generation evaluates its prompt from scratch). */
ARBOR_API void arbor_context_reset(arbor_context *ctx);

/* ---- generation ---- */
typedef struct arbor_sampling_params {
    float temp;             /* <= 0: greedy; default 0.8 */
    int32_t top_k;          /* <= 0: off; default 40 */
    float top_p;            /* >= 1: off; default 0.95 */
    float min_p;            /* <= 0: off; default 0.05 */
    float repeat_penalty;   /* 1: off (default) */
    int32_t repeat_last_n;  /* default 64; -1: the whole context */
    uint64_t seed;          /* the same seed and settings reproduce a run */
} arbor_sampling_params;
ARBOR_API arbor_sampling_params arbor_sampling_default_params(void);

/* Called for every generated token with the bytes it adds to the text (complete UTF-8
 * characters only; may be empty). Return false to stop generating. */
typedef bool (*arbor_token_fn)(void *user, arbor_token token, const char *text, size_t len);

typedef struct arbor_generate_params {
    arbor_sampling_params sampling;
    int32_t n_predict;         /* tokens to generate; -1: until end of generation or a full
                                  context; default 128 */
    bool ignore_eos;           /* keep generating after an end-of-generation token */
    bool add_special;          /* add BOS/EOS to the prompt as the vocabulary says; default on */
    bool parse_special;        /* prompt text may spell special tokens; default on */
    const char *const *stop;   /* stop strings (generation ends after the token completing one) */
    int32_t n_stop;
} arbor_generate_params;
ARBOR_API arbor_generate_params arbor_generate_default_params(void);

/* Generates a continuation of `prompt` (text), streaming tokens through `fn` (may be NULL). The
 * longest prefix shared with the previous call's tokens is reused from the KV cache. */
ARBOR_API arbor_status arbor_generate(arbor_context *ctx, const char *prompt,
                                      const arbor_generate_params *params, arbor_token_fn fn,
                                      void *user);
/* The same from prompt token ids. */
ARBOR_API arbor_status arbor_generate_tokens(arbor_context *ctx, const arbor_token *prompt,
                                             int32_t n_prompt, const arbor_generate_params *params,
                                             arbor_token_fn fn, void *user);
/* Makes a running arbor_generate on ctx return ARBOR_ERR_CANCELLED soon. Safe from any thread. */
ARBOR_API void arbor_cancel(arbor_context *ctx);

#define ARBOR_MAX_DEPTH_STATS 32
typedef struct arbor_stats {
    int32_t n_prompt;          /* prompt tokens */
    int32_t n_prompt_reused;   /* of which taken from the KV cache */
    int32_t n_generated;
    double prompt_seconds;
    double generate_seconds;
    double tokens_per_second;  /* n_generated / generate_seconds */
    /* speculation (zero for plain decoding) */
    int64_t n_verify;          /* verifier forward passes during generation */
    int64_t n_drafted;         /* tree nodes proposed (excluding roots) */
    int64_t n_accepted;        /* drafted tokens accepted */
    double mean_accepted;      /* accepted drafted tokens per verification */
    double draft_seconds, verify_seconds;
    int64_t drafted_at_depth[ARBOR_MAX_DEPTH_STATS];  /* depth 1 at index 0 */
    int64_t accepted_at_depth[ARBOR_MAX_DEPTH_STATS];
    int64_t n_plain_steps;     /* steps decoded without speculation (scheduler fallback) */
    bool stopped_by_context;   /* generation ended because the context was full */
} arbor_stats;
/* Statistics of the last arbor_generate on ctx. */
ARBOR_API arbor_status arbor_get_stats(const arbor_context *ctx, arbor_stats *out);

#ifdef __cplusplus
}
#endif
#endif
