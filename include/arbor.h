/* arbor.h: the public C API of arbor, a speculative-decoding LLM inference engine.
 *
 * Objects (opaque handles, one prefix each):
 *   arbor_model    read-only weights and tokenizer, memory-mapped from a GGUF file. Safe to share
 *                  between threads and contexts; every function taking a const arbor_model * may
 *                  run concurrently with any other on the same model.
 *   arbor_context  KV caches, sampler, drafter and scheduler state for one generation at a time.
 *                  Use from one thread at a time (arbor_cancel excepted).
 * Every call that can fail returns an arbor_status (or, for functions returning a count, a
 * negative one); arbor_last_error() gives this thread's message for the last failure. The
 * library never prints and never exits; diagnostics go to the log sink (arbor_set_log). The log
 * sink and the per-thread error message are its only process-wide state of its own; at the first
 * model load it also sets OpenBLAS's thread count to 1 for the process (sgemm runs inside
 * arbor's threads) and reads the CPU's features. It writes files only to the per-user cache
 * ($XDG_CACHE_HOME/arbor: the adaptive scheduler's cost tables). Parameters are structs
 * initialised by arbor_*_default_params(), then changed field by field. docs/api.md has the
 * ownership and threading rules of every function. */
#ifndef ARBOR_H
#define ARBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ARBOR_API __attribute__((visibility("default")))
#else
#define ARBOR_API
#endif

#define ARBOR_VERSION_MAJOR 0
#define ARBOR_VERSION_MINOR 1
#define ARBOR_VERSION_PATCH 0

typedef enum arbor_status {
    ARBOR_OK = 0,
    ARBOR_ERR_IO = -1,           /* a file cannot be opened, read, mapped or written */
    ARBOR_ERR_FORMAT = -2,       /* a file is malformed or truncated */
    ARBOR_ERR_UNSUPPORTED = -3,  /* well-formed but not supported (architecture, tensor type) */
    ARBOR_ERR_INVALID_ARG = -4,  /* an argument is NULL or out of range */
    ARBOR_ERR_NOMEM = -5,        /* out of memory, or a size bound exceeded */
    ARBOR_ERR_CONTEXT_FULL = -6, /* the prompt does not fit in the context */
    ARBOR_ERR_INCOMPATIBLE = -7, /* drafter and verifier vocabularies differ */
    ARBOR_ERR_CANCELLED = -8,    /* stopped by arbor_cancel */
    ARBOR_ERR_INTERNAL = -9,     /* a bug in arbor: please report */
} arbor_status;

typedef int32_t arbor_token;
/* "No token": arbor_token_bos/eos when the vocabulary has none, and the token of the final
 * streaming call that carries held-back bytes (see arbor_token_fn). */
#define ARBOR_TOKEN_NONE (-1)

typedef struct arbor_model arbor_model;
typedef struct arbor_context arbor_context;

/* This thread's message for its last failed call: one line saying what failed and why. Read it
 * right after a failure (a successful call may leave it or clear it); valid until this thread's
 * next call into the library. */
ARBOR_API const char *arbor_last_error(void);
/* A constant name for a status ("ok", "invalid argument", ...). */
ARBOR_API const char *arbor_status_string(arbor_status s);
/* "MAJOR.MINOR.PATCH" of the library that is running (the macros above are the header's). */
ARBOR_API const char *arbor_version(void);

typedef enum arbor_log_level { ARBOR_LOG_ERROR, ARBOR_LOG_WARN, ARBOR_LOG_INFO } arbor_log_level;
/* message: one line without a trailing newline, valid during the call only. */
typedef void (*arbor_log_fn)(void *user, arbor_log_level level, const char *message);
/* Sets the process-wide log sink (NULL: discard, the default). Calls to the sink are serialized
 * (never two at once), so it need not be thread-safe; it may call arbor functions. Meant to be
 * set once at start-up; changing it while other threads use the library is safe. */
ARBOR_API void arbor_set_log(arbor_log_fn fn, void *user);

/* ---- models ---- */
typedef struct arbor_model_params {
    bool vocab_only; /* load only the tokenizer (any architecture) */
    bool resident;   /* pre-fault the mapping and lock it in memory when permitted (drafters) */
    bool repack;     /* default true: the matrices are used in a packed layout wherever this
                      * CPU has kernels that read it (AVX-512 VNNI: Q4_0, Q4_1, Q5_0, Q5_1,
                      * Q8_0, Q4_K, Q5_K, Q6_K), instead of the file's: faster at every batch
                      * size, same results to the bit, and no more memory (the file's pages of
                      * those matrices are released). Large models write the packed form once to
                      * the per-user cache ($XDG_CACHE_HOME/arbor/packed, else
                      * ~/.cache/arbor/packed) and map it on later loads. false: in place. */
} arbor_model_params;
ARBOR_API arbor_model_params arbor_model_default_params(void);
/* Loads a GGUF file (architectures llama (Llama 1-3, Mistral), qwen2, qwen3, gemma2, phi3); a
 * tensor or metadata key that the architecture does not use is refused by name. On success *out owns the model: free it
 * with arbor_model_free after every context using it is freed. On failure *out is NULL. */
ARBOR_API arbor_status arbor_model_load(const char *path, arbor_model_params params,
                                        arbor_model **out);
ARBOR_API void arbor_model_free(arbor_model *model); /* NULL: no-op */

typedef struct arbor_model_info {
    const char *arch;  /* "llama", "qwen2", "qwen3", "gemma2", "phi3" ("" for a vocabulary-only
                          model); a constant string */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train;
    uint64_t weight_bytes;
    uint64_t file_bytes;
} arbor_model_info;
ARBOR_API arbor_status arbor_model_get_info(const arbor_model *model, arbor_model_info *out);

/* Tokenizes len bytes of text. add_special: add BOS/EOS as the vocabulary says; parse_special:
 * text that spells a special token ("<s>") is that token. Writes at most cap ids; returns the
 * number of tokens (more than cap means call again with more room) or a negative arbor_status. */
ARBOR_API int32_t arbor_tokenize(const arbor_model *model, const char *text, size_t len,
                                 bool add_special, bool parse_special, arbor_token *out,
                                 int32_t cap);
/* The bytes token prints as (special tokens print nothing unless `special`). Writes at most cap
 * bytes (no terminating NUL); returns the full length (may exceed cap) or a negative
 * arbor_status. A piece may be part of a UTF-8 character. */
ARBOR_API int32_t arbor_token_to_piece(const arbor_model *model, arbor_token token, bool special,
                                       char *buf, int32_t cap);
/* The text of n tokens: their pieces concatenated. Writes at most cap bytes (no terminating
 * NUL); returns the full length (may exceed cap) or a negative arbor_status. */
ARBOR_API int32_t arbor_detokenize(const arbor_model *model, const arbor_token *tokens, int32_t n,
                                   bool special, char *buf, int32_t cap);
ARBOR_API arbor_token arbor_token_bos(const arbor_model *model); /* ARBOR_TOKEN_NONE: none */
ARBOR_API arbor_token arbor_token_eos(const arbor_model *model); /* ARBOR_TOKEN_NONE: none */
/* End of generation: EOS, EOT and the other ids the vocabulary declares as ending a turn. */
ARBOR_API bool arbor_token_is_eog(const arbor_model *model, arbor_token token);

/* ---- chat templates ---- */
typedef struct arbor_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
} arbor_chat_message;

typedef struct arbor_chat_params {
    const char *template_name; /* NULL: the family of the model's tokenizer.chat_template,
                                  recognised by its markers; else a family name (see
                                  arbor_chat_template_names) */
    bool add_assistant;        /* end with the opening of the assistant's turn; default on */
} arbor_chat_params;
ARBOR_API arbor_chat_params arbor_chat_default_params(void);
/* Formats n_messages messages in the chat template's published form (docs/api.md lists the
 * families and how each renders). Writes at most cap bytes (no terminating NUL); returns the full
 * length (may exceed cap: call again with more room) or a negative arbor_status: UNSUPPORTED
 * when the model has no template or one of no supported family (pick one with template_name),
 * INVALID_ARG for an unknown family name or a role other than the three. The text does not start
 * with BOS: tokenize it with add_special and parse_special (arbor_generate's defaults), so the
 * vocabulary adds BOS as it says and the template's markers become their special tokens. */
ARBOR_API int32_t arbor_chat_format(const arbor_model *model, const arbor_chat_message *messages,
                                    int32_t n_messages, const arbor_chat_params *params,
                                    char *buf, int32_t cap);
/* The family arbor_chat_format would use with these params (NULL: the defaults), as a constant
 * string ("llama3", "chatml", ...); NULL on failure, with the reason in arbor_last_error(). */
ARBOR_API const char *arbor_chat_template(const arbor_model *model,
                                          const arbor_chat_params *params);
/* The supported family names, comma-separated (a constant string). */
ARBOR_API const char *arbor_chat_template_names(void);

/* ---- contexts ---- */
typedef enum arbor_draft_kind {
    ARBOR_DRAFT_NONE = 0,   /* plain decoding with the verifier alone */
    ARBOR_DRAFT_MODEL = 1,  /* a separate small model (draft_model) */
    ARBOR_DRAFT_SELF = 2,   /* the verifier's own first draft_self_layers layers and head */
    ARBOR_DRAFT_LOOKUP = 3, /* prompt lookup: n-gram matches in the context, no model */
} arbor_draft_kind;

/* What one decoding step did (see arbor_context_params.trace). */
typedef struct arbor_step_trace {
    int64_t step;
    int32_t n_committed;   /* context length before the step */
    int32_t drafted;       /* draft nodes grown (root excluded) */
    int32_t verified;      /* tree nodes the verifier evaluated (1: a plain step) */
    int32_t depth;         /* depth of the verified tree */
    int32_t accepted;      /* draft tokens accepted */
    double draft_seconds, verify_seconds;
    float threshold;       /* adaptive: the drafting threshold after the step */
    float expected;        /* adaptive: tokens expected from the verified tree */
    const char *reason;    /* why the step did what it did (static string) */
} arbor_step_trace;
typedef void (*arbor_trace_fn)(void *user, const arbor_step_trace *step);

typedef struct arbor_context_params {
    int32_t n_ctx;          /* KV cache cells; 0: the model's training context */
    int32_t n_threads;      /* 0: one per physical core; at most 1024 */
    int32_t n_batch;        /* prompt tokens per forward pass; 0: 512. Up to 64 keeps prompt
                               evaluation batch-invariant (see docs/api.md, prefix reuse) */
    bool kv_f16;            /* F16 KV cache (halves its memory) instead of F32 */
    arbor_draft_kind draft_kind;
    const arbor_model *draft_model; /* ARBOR_DRAFT_MODEL: borrowed, must outlive the context;
                                       its vocabulary must match the verifier's */
    int32_t draft_self_layers;      /* ARBOR_DRAFT_SELF: M >= 1, below the verifier's layers */
    bool draft_share;               /* ARBOR_DRAFT_MODEL: a drafter that is a cut of the verifier
                                       (its first layers, embedding and head, byte for byte, as
                                       `arbor synth --drafter-of` or an early-exit export makes)
                                       drafts with the verifier's own weights instead: the same
                                       logits, one copy in memory; the drafter model's pages are
                                       then unlocked and dropped (it stays usable). Default on. */
    const char *tree;       /* tree shape: "chain:K", "static:AxBxC", "dynamic:N", "adaptive";
                               NULL: the default ("adaptive": the scheduler chooses). Read
                               at creation; checked whenever it is not NULL, used only with a
                               drafter. */
    const char *sched_costs; /* adaptive: a cost table file (written by arbor_save_costs) used
                                instead of calibrating; it fixes the scheduler's choices, so a
                                seed reproduces sampled output. Read at context creation. */
    arbor_trace_fn trace;    /* called after every decoding step (NULL: none) */
    void *trace_user;
    bool pin_threads;        /* pin the context's threads to cores by the hwloc placement plan
                                (default off: a library does not move its caller's thread
                                unasked; `arbor generate` turns it on). A refusal (containers)
                                is a logged warning, not an error. */
    bool pipeline;           /* model drafters: draft the next tree on separate threads while
                                the verifier checks the current one (greedy and deterministic
                                trees; sampled trees are never pipelined) */
    int32_t draft_threads;   /* pipelining: the drafter's threads (0: 1) */
    uint64_t mem_budget;     /* bytes of memory the context may hold in all: the verifier's
                                weights, a separate drafter model's (its file), the KV caches
                                and every buffer (0: no budget, the verifier is read through
                                its mapping). The drafter stays resident; as much of the
                                verifier as fits stays resident (its head, a self-drafter's
                                layers and others spread over the model) and the rest is read from its file for every forward pass,
                                with the next layers read while the current ones compute.
                                Output is bit-identical either way. A budget too small for the
                                drafter, the caches and two layers' buffers is refused with the
                                numbers; one above what is needed keeps everything resident.
                                See docs/design.md, "A verifier larger than memory". */
    bool cost_cache;         /* adaptive: keep the scheduler's cost table (and its counts of
                                how often the drafter was right) between runs in the
                                per-user cache ($XDG_CACHE_HOME/arbor/costs, else
                                ~/.cache/arbor/costs), keyed by the model files, budget,
                                threads, CPU and arbor version (default on) */
} arbor_context_params;
ARBOR_API arbor_context_params arbor_context_default_params(void);
/* Creates a context on `model` (borrowed: it must outlive the context). Several contexts may
 * share one model (and one draft model), each used by its own thread. On failure *out is NULL. */
ARBOR_API arbor_status arbor_context_create(const arbor_model *model, arbor_context_params params,
                                            arbor_context **out);
ARBOR_API void arbor_context_free(arbor_context *ctx); /* NULL: no-op */
/* Forgets the cached tokens (the next generation evaluates its prompt from scratch). */
ARBOR_API void arbor_context_reset(arbor_context *ctx);
/* Adaptive mode: calibrates the scheduler's cost model if it has not been yet and writes it to
 * `path`, for arbor_context_params.sched_costs. */
ARBOR_API arbor_status arbor_save_costs(arbor_context *ctx, const char *path);

/* Where a context's memory goes (bytes), and for a budget what is streamed. */
typedef struct arbor_memory_info {
    uint64_t budget;           /* arbor_context_params.mem_budget (0: none) */
    uint64_t verifier_resident;/* the verifier's weights held in memory (its whole size without
                                  a budget: mapped, paged in by use) */
    uint64_t stream_buffers;   /* buffers that streamed layers are read into */
    uint64_t streamed_per_pass;/* bytes read from the verifier's file per forward pass */
    int32_t resident_layers;   /* of the verifier's n_layer */
    bool head_resident;
    uint64_t drafter_weights;  /* a separate drafter model's file */
    uint64_t kv;               /* KV caches (verifier and drafter) */
    uint64_t buffers;          /* workspaces, logits and the other buffers */
    uint64_t process;          /* allowance for code, stacks and allocator overhead */
    /* since the context was created */
    uint64_t bytes_streamed;   /* read from the verifier's file by streaming */
    double read_seconds;       /* the reader's time in reads */
    double wait_seconds;       /* forward passes waiting for streamed layers */
} arbor_memory_info;
ARBOR_API arbor_status arbor_context_get_memory(const arbor_context *ctx,
                                                arbor_memory_info *out);

/* ---- generation ---- */
typedef struct arbor_sampling_params {
    float temp;             /* <= 0: greedy; default 0.8 */
    int32_t top_k;          /* <= 0: off; default 40 */
    float top_p;            /* >= 1: off; default 0.95 */
    float min_p;            /* <= 0: off; default 0.05 */
    float repeat_penalty;   /* > 0; 1: off (default) */
    int32_t repeat_last_n;  /* default 64; -1: the whole context */
    uint64_t seed;          /* the same seed and settings reproduce a run (not with the
                               "adaptive" tree, whose choices depend on measured timings) */
} arbor_sampling_params;
ARBOR_API arbor_sampling_params arbor_sampling_default_params(void);

/* Called for every generated token, in order, with the bytes it adds to the text: complete
 * UTF-8 characters only (bytes of a character split across tokens are held back), so `text`
 * may be empty; it is valid during the call only. Return false to stop generating (the call
 * then returns ARBOR_OK). An end-of-generation token that ends the generation is not passed.
 * When generation ends normally with bytes still held back (an incomplete character at the
 * very end), one last call passes them with token ARBOR_TOKEN_NONE; its result is ignored. So
 * the concatenated texts are exactly arbor_detokenize of the generated tokens. */
typedef bool (*arbor_token_fn)(void *user, arbor_token token, const char *text, size_t len);

typedef struct arbor_generate_params {
    arbor_sampling_params sampling;
    int32_t n_predict;         /* tokens to generate, >= 0; -1: until end of generation or a
                                  full context; default 128 */
    bool ignore_eos;           /* keep generating after an end-of-generation token */
    bool add_special;          /* add BOS/EOS to the prompt as the vocabulary says; default on
                                  (arbor_generate only) */
    bool parse_special;        /* prompt text may spell special tokens; default on
                                  (arbor_generate only) */
    const char *const *stop;   /* n_stop non-empty stop strings (borrowed for the call):
                                  generation ends after the token that completes the first
                                  occurrence of any of them in the generated text (that
                                  token's text is still streamed) */
    int32_t n_stop;
} arbor_generate_params;
ARBOR_API arbor_generate_params arbor_generate_default_params(void);

/* Generates a continuation of `prompt` (NUL-terminated text), streaming tokens through `fn`
 * (may be NULL); params NULL: the defaults. The context keeps the evaluated tokens (prompt and
 * generated) and reuses the longest prefix the next prompt shares with them (stats
 * n_prompt_reused). Returns ARBOR_OK also when the context fills up (stats stopped_by_context,
 * and a warning to the log sink); ARBOR_ERR_CONTEXT_FULL when the prompt itself does not fit. */
ARBOR_API arbor_status arbor_generate(arbor_context *ctx, const char *prompt,
                                      const arbor_generate_params *params, arbor_token_fn fn,
                                      void *user);
/* The same from n_prompt >= 1 prompt token ids (add_special and parse_special do not apply). */
ARBOR_API arbor_status arbor_generate_tokens(arbor_context *ctx, const arbor_token *prompt,
                                             int32_t n_prompt, const arbor_generate_params *params,
                                             arbor_token_fn fn, void *user);
/* Makes the generation running on ctx return ARBOR_ERR_CANCELLED before its next decoding step
 * (a prompt being evaluated is finished first). A generation that starts after the call is not
 * affected. Safe from any thread, and from a signal handler (one lock-free atomic store). */
ARBOR_API void arbor_cancel(arbor_context *ctx);

/* Why the last generation ended. */
typedef enum arbor_stop_reason {
    ARBOR_STOP_NONE = 0,  /* no generation has ended (none ran, or steps driven by the caller) */
    ARBOR_STOP_LENGTH,    /* n_predict tokens were generated */
    ARBOR_STOP_EOG,       /* an end-of-generation token (not with ignore_eos) */
    ARBOR_STOP_STRING,    /* a stop string was completed */
    ARBOR_STOP_CALLBACK,  /* the token callback returned false */
    ARBOR_STOP_CONTEXT,   /* the context is full */
    ARBOR_STOP_CANCELLED, /* arbor_cancel */
    ARBOR_STOP_ERROR,     /* a failure (the call's status says which) */
} arbor_stop_reason;

#define ARBOR_MAX_DEPTH_STATS 32
typedef struct arbor_stats {
    int32_t n_prompt;          /* prompt tokens */
    int32_t n_prompt_reused;   /* of which taken from the KV cache (not evaluated again) */
    int32_t n_generated;       /* tokens generated, including an end-of-generation token */
    double prompt_seconds;
    double generate_seconds;
    double tokens_per_second;  /* n_generated / generate_seconds */
    /* speculation (zero for plain decoding) */
    int64_t n_verify;          /* verifier forward passes of draft trees */
    int64_t n_drafted;         /* tree nodes proposed (excluding roots) */
    int64_t n_accepted;        /* drafted tokens accepted */
    double mean_accepted;      /* accepted drafted tokens per verification */
    double draft_seconds, verify_seconds;
    int64_t drafted_at_depth[ARBOR_MAX_DEPTH_STATS];  /* depth 1 at index 0 */
    int64_t accepted_at_depth[ARBOR_MAX_DEPTH_STATS];
    int64_t n_plain_steps;     /* steps decoded without speculation */
    int64_t n_pipelined;       /* verifications of a tree drafted during the previous one */
    bool stopped_by_context;   /* generation ended because the context was full */
    arbor_stop_reason stop_reason;
} arbor_stats;
/* Statistics of the last arbor_generate(_tokens) on ctx (also after a failure or cancellation:
 * the figures up to that point), or of the steps since the last arbor_prefill. */
ARBOR_API arbor_status arbor_get_stats(const arbor_context *ctx, arbor_stats *out);

/* ---- step by step: the caller's own decoding loop ----
 * arbor_generate is this loop with detokenization, stop conditions and statistics around it. A
 * caller that needs another loop (its own stopping rule, constrained choices, a server
 * multiplexing requests) drives the same engine: set the sampling, prefill a prompt, then step.
 * Every step is one plain or speculative decoding step, so it emits one token or several; the
 * output is the same as arbor_generate's for the same settings. */
#define ARBOR_MAX_STEP_TOKENS 257 /* the most tokens one step emits (a tree's path and a bonus) */
/* The sampling of the following steps (also reseeds their random streams). */
ARBOR_API arbor_status arbor_set_sampling(arbor_context *ctx, const arbor_sampling_params *params);
/* Evaluates prompt[0 .. n_prompt - 1) (reusing the longest prefix the context already holds) and
 * makes prompt[n_prompt - 1] the token the next step starts from. Resets the statistics. */
ARBOR_API arbor_status arbor_prefill(arbor_context *ctx, const arbor_token *prompt,
                                     int32_t n_prompt);
/* One decoding step after arbor_prefill (or an earlier step): writes the tokens it generated to
 * out (room for cap >= 1; a step never writes more than cap, and at most ARBOR_MAX_STEP_TOKENS)
 * and returns their count, or a negative arbor_status: ARBOR_ERR_CONTEXT_FULL when the context
 * has no room for another token, ARBOR_ERR_CANCELLED after arbor_cancel. End-of-generation
 * tokens are returned like any other: stopping is the caller's choice. */
ARBOR_API int32_t arbor_step(arbor_context *ctx, arbor_token *out, int32_t cap);
/* The verifier's raw logits (n_vocab values, before the sampling transforms) from which the
 * last token the last step returned was chosen; NULL before any step. Valid until the next
 * call on ctx. */
ARBOR_API const float *arbor_step_logits(const arbor_context *ctx);

#ifdef __cplusplus
}
#endif
#endif
