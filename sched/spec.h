/* spec.h: speculative decoding inside the engine (internal to sched/). One speculative step is
 * a sequence of named phases (spec.c), each a function that can be read alone:
 *   schedule   the adaptive scheduler says whether to speculate at all (else a plain step);
 *   draft      grow a tree at the pending token, or take the one drafted ahead;
 *   shape      cut the tree to the nodes worth verifying (adaptive);
 *   guess      pipelining: post the likely outcome to the drafting thread;
 *   verify     one batched forward pass of the verifier over the whole tree;
 *   accept     the acceptance rule walks the tree (greedy, or distribution-preserving);
 *   commit     keep the accepted path in both caches and in the token history;
 *   account    statistics, the scheduler's models, the step trace.
 * Pipelining (pipeline.c) and calibration (calibrate.c) serve the step. */
#ifndef ARBOR_SPEC_H
#define ARBOR_SPEC_H

#include "draft/drafter.h"
#include "sched/scheduler.h"
#include "sched/treespec.h"
#include "src/core/sampling.h"
#include "verify/accept.h"

struct ar_engine;

/* The rule for sampled trees: ar_accept_sampled_from in production; tests may put a
 * deliberately wrong one here to show that the distribution test can fail. */
typedef ar_status (*ar_sampled_rule)(const ar_tree *t, ar_dist_source p_of, void *p_user,
                                     const ar_dist *const *q, ar_rng *rng, ar_accept_work *w,
                                     int32_t *path, ar_accept_result *res);

/* Speculation state: the drafter, the tree shape and the buffers of one verification. */
typedef struct ar_spec {
    ar_drafter *drafter; /* owned */
    ar_tree_shape spec;  /* adaptive: dynamic, its levels sized by the scheduler */
    ar_tree tree;
    const ar_dist **q; /* [tree cap] drafter distributions of sampled nodes */
    ar_dist p;         /* the verifier's distribution at the node the walk is at */
    ar_accept_work aw;
    ar_sampled_rule accept_sampled;
    int32_t *path, *target, *tree_tokens, *history, *remap;
    ar_rng draft_rng;
    bool adaptive; /* the scheduler chooses tree sizes and when to speculate */
    ar_sched sched;
    bool warm; /* a speculative step has run since the last prefill */
    /* pipelining: while the verifier checks a tree, the drafter (on its own thread and pool)
     * drafts the next tree from the most likely outcome; kept when the guess comes true */
    bool pipeline;
    ar_pool *draft_pool;
    struct ar_draft_worker *worker;
    ar_tree tree_ahead;
    const ar_dist **q_ahead;
    bool ahead_valid; /* tree_ahead is rooted at the current pending token */
    int64_t n_ahead_used, n_ahead_tried;
} ar_spec;

/* spec.c */
ar_status ar_spec_create(struct ar_engine *e, ar_drafter *d, const ar_tree_spec *spec,
                         ar_spec **out);
void ar_spec_free(ar_spec *sp);
/* Bytes the speculation state holds besides the drafter's own (budget accounting). */
uint64_t ar_spec_bytes(const struct ar_engine *e);
ar_status ar_spec_step(struct ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out);

/* pipeline.c: the drafting thread */
ar_status ar_pipeline_start(struct ar_engine *e, ar_spec *sp);
void ar_pipeline_stop(ar_spec *sp);
/* Posts "draft the tree that follows ctx[0..n) and its predicted bonus" to the thread. */
void ar_pipeline_post(ar_spec *sp, const int32_t *ctx, int32_t n, const ar_draft_request *req);
/* Waits for the posted job; *root gets the predicted bonus token. */
ar_status ar_pipeline_wait(ar_spec *sp, int32_t *root);

/* calibrate.c: the scheduler's cost table */
/* The table from the cost cache entry for this engine (model files, budget, threads, CPU,
 * arbor version), if there is a valid one (else a warning for a bad one, and false). */
bool ar_costs_load_cache(struct ar_engine *e);
/* The table started from a plain step's timing (seconds, of them compute). */
void ar_costs_start(struct ar_engine *e, double seconds, double compute);
/* Every size of the table timed now (a fixed table for arbor_save_costs). */
ar_status ar_costs_measure(struct ar_engine *e);
/* Writes the current (online-refined) table to the cost cache (adaptive contexts without a
 * fixed table; a no-op otherwise). The cache is a hint: callers may ignore failures. */
ar_status ar_costs_save_cache(struct ar_engine *e);

#endif
