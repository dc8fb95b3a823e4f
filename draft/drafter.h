/* drafter.h: drafters grow a token tree rooted at the pending token (the last accepted token,
 * not yet evaluated by the verifier).
 *   model   a separate small model, or the verifier's own first M layers ("self:M"), evaluated
 *           one tree level per batch with the tree mask; children are its top-k tokens (greedy or
 *           deterministic trees) or samples from its distribution (sampled trees);
 *   lookup  no model: continuations of earlier n-gram matches in the context (prompt lookup).
 * Tree shapes: chain:K, static:AxBxC (A children of the root, B of each of those, ...), and
 * dynamic:N (expand the most probable paths, EAGLE-2 / Sequoia style, under a budget of N
 * draft nodes). */
#ifndef ARBOR_DRAFTER_H
#define ARBOR_DRAFTER_H

#include "src/core/model.h"
#include "src/core/sampling.h"
#include "tokentree/tokentree.h"

#define AR_SPEC_MAX_LEVELS 32

/* The shapes a drafter grows (the scheduler's "adaptive" mode is a dynamic shape whose every
 * level it sizes: sched/treespec.h). */
typedef enum ar_tree_mode {
    AR_TREE_CHAIN = 0,
    AR_TREE_STATIC = 1,
    AR_TREE_DYNAMIC = 2,
} ar_tree_mode;

typedef struct ar_tree_shape {
    ar_tree_mode mode;
    int32_t n_levels;                      /* chain / static: depth */
    int32_t branch[AR_SPEC_MAX_LEVELS];    /* static: children per node at each level */
    int32_t budget;                        /* draft nodes (root excluded) */
} ar_tree_shape;

typedef enum ar_drafter_kind { AR_DRAFTER_MODEL = 1, AR_DRAFTER_LOOKUP = 2 } ar_drafter_kind;

typedef struct ar_drafter ar_drafter;

/* A model drafter over `m` running its first n_layers layers (<= 0: all; self-drafting passes
 * the verifier and M). Its KV cache holds n_ctx cells. */
ar_status ar_drafter_create_model(const ar_model *m, int32_t n_layers, int32_t n_ctx,
                                  ar_pool *pool, ar_drafter **out);
ar_status ar_drafter_create_lookup(int32_t n_ctx, ar_drafter **out);
void ar_drafter_free(ar_drafter *d);
ar_drafter_kind ar_drafter_kind_of(const ar_drafter *d);

typedef struct ar_draft_request {
    const int32_t *tokens;  /* the committed context, then the root (pending) token */
    int32_t n_committed;    /* tokens[n_committed] is the root */
    ar_tree_shape spec;
    bool sample;            /* children drawn from q (sampled trees) instead of top-k */
    const ar_sampler_params *sampling; /* transforms giving the drafter's q when sampling */
    ar_rng *rng;
    /* dynamic trees: the estimated probability that the verifier accepts a node the drafter gave
     * p_draft, accept(accept_user, p_draft, first) (first: the node is its parent's likeliest
     * child; NULL: p_draft itself; the scheduler's acceptance model otherwise). A node's value
     * is the product along its path; growth stops when no new node's value reaches stop_below
     * (0: the default of 0.02). */
    float (*accept)(const void *accept_user, float p_draft, bool first);
    const void *accept_user;
    float stop_below;
    /* dynamic trees, optional: sizes each level from costs (the adaptive scheduler). Before a
     * level is added it gets the candidates (children of the frontier, with the drafter's
     * probabilities), the drafting time so far and the number of batches evaluated; it returns
     * how many to add, best first (0: stop), and sets *grow to whether the added nodes are worth
     * a batch of the drafter to grow one more level. Called from the drafting thread (a
     * pipelining worker's too): it must only read. */
    int32_t (*shape)(const void *user, const ar_tree *tree, const ar_tree_cand *cands,
                     int32_t n_cands, double seconds, int32_t levels, bool *grow);
    const void *shape_user;
} ar_draft_request;


/* Grows `tree` (reset to the root by the drafter). For sampled trees, q[i] receives the
 * drafter's distribution at node i when node i's children were sampled from it, else NULL
 * (q has room for tree->cap entries; the distributions stay valid until the next draft). */
ar_status ar_drafter_draft(ar_drafter *d, const ar_draft_request *req, ar_tree *tree,
                           const ar_dist **q);
/* The verifier accepted path[0..n_path) (node indices, root first): the drafter keeps what it
 * computed for those nodes. */
void ar_drafter_accept(ar_drafter *d, const ar_tree *tree, const int32_t *path, int32_t n_path);
/* The tree was pruned (tokentree's ar_tree_prune_to): old_to_new maps each of n_old old node
 * indices to its new index or -1. The drafter moves what it computed for surviving nodes. */
void ar_drafter_remap(ar_drafter *d, const int32_t *old_to_new, int32_t n_old);
/* Seconds the last ar_drafter_draft spent catching up with the committed context (evaluating
 * tokens it had not seen), as opposed to drafting. */
double ar_drafter_last_sync_seconds(const ar_drafter *d);
/* Times one drafter batch of n rows past its committed context (cost calibration); 0 for
 * drafters without a model. */
ar_status ar_drafter_time_batch(ar_drafter *d, int32_t n, double *seconds);
/* Runs the drafter's forward passes on `pool` from now on (pipelining gives the drafter threads
 * of its own). */
void ar_drafter_set_pool(ar_drafter *d, ar_pool *pool);
/* Model drafters propose ids below n_vocab only (the verifier's vocabulary, when the drafter's
 * is larger by padding rows); committed ids beyond the drafter's own vocabulary are embedded as
 * id 0. */
void ar_drafter_limit_vocab(ar_drafter *d, int32_t n_vocab);
/* The drafter's most likely next token after tokens[0..n) (n >= 1): brings its cache up to
 * tokens[0..n-1) and evaluates tokens[n-1]. -1 for drafters without a model. */
ar_status ar_drafter_predict_next(ar_drafter *d, const int32_t *tokens, int32_t n, int32_t *next);
/* Forget cached state (a new prompt that shares nothing). */
void ar_drafter_reset(ar_drafter *d);

/* The model a drafter runs (NULL for prompt lookup; the verifier itself for self-drafting) and
 * how many of its layers. */
const ar_model *ar_drafter_model(const ar_drafter *d);
int32_t ar_drafter_layers(const ar_drafter *d);
/* Bytes the drafter holds besides its model's weights (KV cache, workspace, logits, ...), and
 * of them its KV cache. */
uint64_t ar_drafter_bytes(const ar_drafter *d);
uint64_t ar_drafter_kv_bytes(const ar_drafter *d);
/* Self-drafting under a memory budget: read the verifier's weights from its stream (the layers
 * the drafter runs and the head are resident there). */
struct ar_stream;
ar_status ar_drafter_set_stream(ar_drafter *d, struct ar_stream *s);
/* The batches the last ar_drafter_draft evaluated for its tree (the root alone, then one per
 * level; catching up with the context excluded): their rows and seconds. Returns the count. */
int32_t ar_drafter_last_batches(const ar_drafter *d, const int32_t **rows,
                                const double **seconds);

#endif
