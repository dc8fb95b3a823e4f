/* accept.h: which draft tokens of a token tree the verifier accepts, and the token it adds.
 *
 * Pure math over a tree (tokentree.h) and the verifier's next-token distribution at every node
 * (sampling.h, already transformed by the sampling parameters); the model forward that produces
 * those distributions lives elsewhere. Every rule here emits tokens with exactly the verifier's
 * distribution (greedy: exactly its argmax chain); the proofs are in accept.c.
 *
 * Result: the accepted path root..last (root included) and a bonus token from the verifier at the
 * last accepted node. The tokens to emit are those of path[1..n_path-1], then the bonus. */
#ifndef ARBOR_ACCEPT_H
#define ARBOR_ACCEPT_H

#include "src/core/sampling.h"
#include "tokentree/tokentree.h"

typedef struct ar_accept_result {
    int32_t n_path; /* accepted nodes root..last, root included: n_path - 1 draft tokens */
    int32_t bonus;  /* the verifier's token after the last accepted node */
} ar_accept_result;

/* Greedy: from the root, move to the child whose token is the verifier's choice target[u] at the
 * current node u; stop when no child has it; the bonus is target[last]. For temp <= 0 the
 * verifier's distributions are point masses and target[u] = p[u].id[0]. `path` holds
 * ar_tree_max_depth(t) + 1 entries. */
ar_status ar_accept_greedy(const ar_tree *t, const int32_t *target, int32_t *path,
                           ar_accept_result *res);

/* Working memory for the stochastic rules: dense arrays over the vocabulary, kept zeroed between
 * calls so each node costs O(support of its distributions), not O(n_vocab). */
typedef struct ar_accept_work {
    int32_t n_vocab;
    int32_t *slot; /* 1 + index of an id in the current verifier distribution; 0 when absent */
    float *q;      /* the drafter's probabilities at the current node, by id; 0 when absent */
    double *resid; /* the residual target, aligned with the current verifier distribution */
} ar_accept_work;

ar_status ar_accept_work_init(ar_accept_work *w, int32_t n_vocab);
void ar_accept_work_free(ar_accept_work *w);

/* Speculative sampling over a tree whose children were drawn from the drafter.
 *
 * p[i] is the verifier's distribution after node i's path (every node the walk can reach must
 * have one). q[i] says how node i's children were proposed:
 *   q[i] != NULL: they were sampled, with replacement, from q[i]; duplicates merged by the tree,
 *                 children in the order of their first draw (the order ar_tree_add gives when
 *                 called in draw order). How many draws were made may depend on anything except
 *                 the tokens not yet drawn (a fixed count, the budget running out).
 *                 Choosing which sampled children to keep by their tokens or scores (pruning,
 *                 ar_tree_add_best) breaks this: verify such nodes as deterministic.
 *   q[i] == NULL: they are deterministic proposals (the drafter's top-k, prompt lookup, a pruned
 *                 tree): any tokens, chosen without looking at this call's random numbers.
 * q itself may be NULL: every node deterministic. Children are tried in order; the bonus after
 * rejecting all children of the last node comes from the residual distribution. All randomness
 * is drawn from rng. `path` holds ar_tree_max_depth(t) + 1 entries. Fails (AR_ERR_INVALID_ARG)
 * when a distribution holds an id outside the vocabulary or a sampled child has drafter
 * probability 0. */
ar_status ar_accept_sampled(const ar_tree *t, const ar_dist *const *p, const ar_dist *const *q,
                            ar_rng *rng, ar_accept_work *w, int32_t *path, ar_accept_result *res);

/* The same with the verifier's distributions computed on demand: p_of(p_user, i, &d) gives node
 * i's, valid until the next call of p_of (the walk needs one node's at a time, and visits at
 * most depth + 1 nodes, so a caller need not compute every node's). */
typedef ar_status (*ar_dist_source)(void *user, int32_t node, const ar_dist **out);
ar_status ar_accept_sampled_from(const ar_tree *t, ar_dist_source p_of, void *p_user,
                                 const ar_dist *const *q, ar_rng *rng, ar_accept_work *w,
                                 int32_t *path, ar_accept_result *res);

/* The same with every node's children deterministic proposals (q == NULL). */
ar_status ar_accept_deterministic(const ar_tree *t, const ar_dist *const *p, ar_rng *rng,
                                  ar_accept_work *w, int32_t *path, ar_accept_result *res);

#endif
