/* engine.h: the decoding loop. The engine holds the verifier (model, KV cache, workspace, thread
 * pool) and the sampler, and advances generation one step at a time. State between steps: the
 * committed tokens (their K/V in the cache) and one pending token, sampled but not yet
 * evaluated. A plain step evaluates the pending token and samples the next; a speculative step
 * (draft/, verify/) evaluates a tree rooted at the pending token and keeps the accepted path. */
#ifndef ARBOR_ENGINE_H
#define ARBOR_ENGINE_H

#include "draft/drafter.h"
#include "sched/scheduler.h"
#include "sched/spec.h"
#include "src/core/model.h"
#include "src/core/sampling.h"
#include "src/core/stream.h"
#include "verify/accept.h"

typedef struct ar_engine_params {
    int32_t n_ctx;   /* 0: the model's training context */
    int32_t n_threads;
    int32_t n_batch; /* prompt rows per forward pass */
    ar_type kv_type;
    bool pin;        /* pin threads to cores by the hwloc placement plan */
    bool pipeline;   /* draft the next tree while the verifier checks the current one */
    int32_t draft_threads; /* pipelining: the drafter's threads (0: 1) */
    uint64_t mem_budget;   /* bytes for both models, caches and buffers (0: no budget; see
                              ar_engine_apply_budget) */
    bool cost_cache;       /* adaptive: keep the scheduler's cost table in the per-user cache */
    /* the drafter that will be set (ar_engine_set_drafter), for checking the whole context's
     * memory before anything is allocated: its model (NULL: none or prompt lookup) and layers
     * run (<= 0: all) */
    const ar_model *draft_model;
    int32_t draft_layers;
} ar_engine_params;

typedef struct ar_engine_stats {
    int64_t n_verify, n_drafted, n_accepted, n_plain_steps;
    double draft_seconds, verify_seconds;
    int64_t drafted_at_depth[32], accepted_at_depth[32];
    int64_t n_pipelined;   /* steps whose tree was drafted ahead, during the previous verification */
} ar_engine_stats;

/* What one decoding step did (for --trace). */
typedef struct ar_step_trace {
    int64_t step;
    int32_t n_committed;  /* context length before the step */
    int32_t drafted;      /* draft nodes grown (root excluded) */
    int32_t verified;     /* tree nodes the verifier evaluated (1 = plain step) */
    int32_t depth;        /* depth of the verified tree */
    int32_t accepted;     /* draft tokens accepted */
    double draft_seconds, verify_seconds;
    float threshold;      /* the scheduler's drafting threshold after the step */
    float expected;       /* tokens the scheduler expected from the verified tree */
    const char *reason;
} ar_step_trace;
typedef void (*ar_trace_fn)(void *user, const ar_step_trace *t);

typedef struct ar_engine {
    const ar_model *model;
    ar_engine_params params;
    ar_kv *kv;
    ar_workspace *ws;
    ar_pool *pool;
    ar_stream *stream; /* the verifier's weights under a memory budget (NULL: the mapping) */
    ar_stream *draft_stream; /* a separate drafter's weights under a budget (all resident) */
    uint64_t drafter_weights; /* a separate drafter's weights as a budget counts them */
    int32_t n_vocab;
    int32_t *tokens;   /* [n_ctx + 1]: committed tokens, then the pending one */
    int32_t n_tokens;  /* committed + pending */
    bool has_pending;
    float *logits;     /* [tree_rows][n_vocab] */
    int32_t last_row;  /* the row of logits the last emitted token was chosen from (-1: none) */
    int32_t ws_rows;   /* rows the workspace evaluates in one call */
    int32_t tree_rows; /* the largest verification (<= ws_rows, AR_TREE_MAX) */
    ar_sampler_params sampling;
    ar_rng rng;
    ar_dist dist;
    ar_engine_stats stats;
    ar_spec *spec;     /* NULL: plain decoding */
    ar_trace_fn trace;
    void *trace_user;
    int64_t n_steps;
    bool pin_failed; /* pinning was asked for and not permitted (a warning, not an error) */
    char placement[160];
    char warning[320]; /* the last warning for the caller's log (ar_engine_take_warning) */
} ar_engine;

ar_status ar_engine_create(const ar_model *m, ar_engine_params p, ar_engine **out);
void ar_engine_free(ar_engine *e);
void ar_engine_set_sampling(ar_engine *e, const ar_sampler_params *sp);
/* Evaluates prompt[0 .. n-1) into the cache (reusing the longest prefix already there) and makes
 * prompt[n-1] the pending token. *n_reused: prompt tokens whose evaluation was skipped. */
ar_status ar_engine_prefill(ar_engine *e, const int32_t *prompt, int32_t n, int32_t *n_reused);
/* One decoding step: writes the tokens it generates (>= 1) to out (room for cap >= 1; a step
 * never produces more than cap) and sets *n_out. AR_ERR_CONTEXT_FULL when the cache cannot hold
 * the pending token. */
ar_status ar_engine_step(ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out);
/* Switches to speculative decoding with drafter `d` (the engine owns it from now on, also on
 * failure) and tree shape `spec`. */
ar_status ar_engine_set_drafter(ar_engine *e, ar_drafter *d, const ar_tree_spec *spec);
/* With params.mem_budget: once the drafter (if any) is set, what the engine, its drafter and
 * its caches hold is counted, and the rest of the budget goes to the verifier's weights: as
 * much of them stays resident as fits, the rest is streamed for every pass (stream.h). A
 * budget too small for that is refused with the numbers. A separate drafter model counts as
 * its whole file when it was loaded pre-faulted (resident); otherwise its layers and head are
 * read into memory of their own (a stream with everything resident) and its embedding rows are
 * read from the file as needed, which leaves the verifier the embedding's bytes. */
ar_status ar_engine_apply_budget(ar_engine *e);
/* Bytes the engine holds now, by kind (budget accounting and the budget's error message). */
typedef struct ar_engine_memory {
    uint64_t kv, buffers, drafter, drafter_weights, process, weights;
} ar_engine_memory;
void ar_engine_get_memory(const ar_engine *e, ar_engine_memory *out);
/* A plain step (the pending token alone), timed: *seconds in all, *compute of them not spent
 * waiting for streamed weights. */
ar_status ar_engine_plain_step_timed(ar_engine *e, int32_t *out, int32_t *n_out, double *seconds,
                                     double *compute);
/* Seconds the verifier's passes have waited for streamed weights (0 without a budget). */
double ar_engine_stream_wait(ar_engine *e);
/* Records a warning for the caller's log; ar_engine_take_warning returns it once (or NULL). */
void ar_engine_warn(ar_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ar_engine_take_warning(ar_engine *e);
/* The error for logits that hold NaN or +inf at `position` (greedy or sampled alike). */
ar_status ar_engine_bad_logits(ar_engine *e, int32_t position);
/* The generation is over: adaptive contexts write their cost table back to the cache. */
void ar_engine_end_generation(ar_engine *e);
/* Adaptive mode: use a fixed cost table from `path` (no calibration, no online updates), so a
 * seed reproduces sampled output. */
ar_status ar_engine_load_costs(ar_engine *e, const char *path);
/* Adaptive mode: calibrate now if needed and write the cost table to `path`. */
ar_status ar_engine_save_costs(ar_engine *e, const char *path);
/* Forgets all cached tokens. */
void ar_engine_reset(ar_engine *e);

#endif
