/* engine.h: the decoding loop. The engine holds the verifier (model, KV cache, workspace, thread
 * pool) and the sampler, and advances generation one step at a time. State between steps: the
 * committed tokens (their K/V in the cache) and one pending token, sampled but not yet
 * evaluated. A plain step evaluates the pending token and samples the next; a speculative step
 * (draft/, verify/) evaluates a tree rooted at the pending token and keeps the accepted path. */
#ifndef ARBOR_ENGINE_H
#define ARBOR_ENGINE_H

#include "draft/drafter.h"
#include "src/model.h"
#include "sched/scheduler.h"
#include "src/sampling.h"
#include "verify/accept.h"

typedef struct ar_engine_params {
    int32_t n_ctx;   /* 0: the model's training context */
    int32_t n_threads;
    int32_t n_batch; /* prompt rows per forward pass */
    ar_type kv_type;
    bool pin;        /* pin threads to cores by the hwloc placement plan */
    bool pipeline;   /* draft the next tree while the verifier checks the current one */
    int32_t draft_threads; /* pipelining: the drafter's threads (0: 1) */
} ar_engine_params;

typedef struct ar_engine_stats {
    int64_t n_verify, n_drafted, n_accepted, n_plain_steps;
    double draft_seconds, verify_seconds;
    int64_t drafted_at_depth[32], accepted_at_depth[32];
    int64_t n_pipelined;   /* steps whose tree was drafted ahead, during the previous verification */
} ar_engine_stats;

/* Speculation state: the drafter, the tree shape and the buffers of one verification. */
typedef struct ar_spec {
    ar_drafter *drafter; /* owned */
    ar_tree_spec spec;
    ar_tree tree;
    const ar_dist **q;   /* [tree cap] drafter distributions of sampled nodes */
    ar_dist *p;          /* [tree cap] verifier distributions (sampled acceptance) */
    const ar_dist **pp;  /* pointers to p */
    ar_accept_work aw;
    int32_t *path, *target, *tree_tokens, *history, *remap;
    ar_rng draft_rng;
    bool adaptive;       /* the scheduler chooses tree sizes and when to speculate */
    ar_sched sched;
    bool warm;           /* a speculative step has run since the last prefill */
    /* pipelining: while the verifier checks a tree, the drafter (on its own thread and pool)
     * drafts the next tree from the most likely outcome; kept when the guess comes true */
    bool pipeline;
    ar_pool *draft_pool;
    void *worker;        /* the drafting thread's state (engine.c) */
    ar_tree tree_ahead;
    const ar_dist **q_ahead;
    bool ahead_valid;    /* tree_ahead is rooted at the current pending token */
    int64_t n_ahead_used, n_ahead_tried;
    bool broken_acceptance; /* tests only: accept a drafted child whenever the verifier gives it
                               any probability (biased towards the drafter), to show that the
                               distribution test can fail */
} ar_spec;

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
    int32_t n_vocab;
    int32_t *tokens;   /* [n_ctx + 1]: committed tokens, then the pending one */
    int32_t n_tokens;  /* committed + pending */
    bool has_pending;
    float *logits;     /* [ws_rows][n_vocab] */
    int32_t ws_rows;   /* rows the workspace evaluates in one call */
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
/* Adaptive mode: use a fixed cost table from `path` (no calibration, no online updates), so a
 * seed reproduces sampled output. */
ar_status ar_engine_load_costs(ar_engine *e, const char *path);
/* Adaptive mode: calibrate now if needed and write the cost table to `path`. */
ar_status ar_engine_save_costs(ar_engine *e, const char *path);
/* Forgets all cached tokens. */
void ar_engine_reset(ar_engine *e);

#endif
