/* tokentree.h: the token tree a drafter proposes and the verifier checks in one batch.
 *
 * Node 0 is the root: the last accepted token, not yet evaluated by the verifier. Every other node
 * is a draft token continuing its parent's path. Nodes are stored in insertion order and a parent
 * always precedes its children (parent[i] < i), so the node array is the verifier batch as is:
 * batch row i is node i, it attends to the rows of its ancestors, and sits at position
 * base + depth[i].
 *
 * Identical prefixes are merged: adding a token under a parent that already has a child with that
 * token returns the existing child. A hash table keyed by the path hash finds it in O(1).
 *
 * A tree has a fixed budget (capacity, root included) set at init; reset reuses the memory. */
#ifndef ARBOR_TOKENTREE_H
#define ARBOR_TOKENTREE_H

#include "src/core/util.h"

typedef struct ar_tree_node {
    int32_t token;
    int32_t parent;       /* -1 for the root */
    int32_t depth;        /* root 0 */
    int32_t first_child;  /* -1 when a leaf */
    int32_t last_child;   /* -1 when a leaf */
    int32_t next_sibling; /* -1 for the last child; children are in insertion order */
    float p_draft;        /* the drafter's probability of this token given the parent's path */
    float p_path;         /* product of p_draft from the root down to this node; root 1 */
    uint64_t hash;        /* path hash: root XXH64(token, 0); child XXH64(token, parent hash) */
    float value;          /* free for drafters (a score, a logit, ...) */
    uint32_t flags;       /* free for drafters */
} ar_tree_node;

typedef struct ar_tree {
    int32_t n;   /* nodes in use, root included (0 before the first reset) */
    int32_t cap; /* budget: the most nodes the tree can hold, root included */
    int32_t max_depth;
    ar_tree_node *nodes;
    int32_t *parents; /* parents[i] == nodes[i].parent, contiguous for the verifier */
    int32_t *slots;   /* open-addressing table of node indices by path hash; -1 empty */
    uint32_t slot_mask;
    void *work; /* internal: scratch for pruning */
} ar_tree;

/* The most nodes (root included) a drafted tree may have: what one verification evaluates. */
#define AR_TREE_MAX 256

/* Largest budget a tree accepts. */
#define AR_TREE_MAX_CAP (1 << 20)

/* Return values of ar_tree_add besides a node index. */
#define AR_TREE_FULL    (-1) /* the budget is spent */
#define AR_TREE_BAD_ARG (-2) /* parent out of range, negative token, p_draft not in [0, 1] */

ar_status ar_tree_init(ar_tree *t, int32_t cap);
/* Bytes a tree of this budget holds. */
uint64_t ar_tree_bytes(int32_t cap);
void ar_tree_free(ar_tree *t);
/* Empties the tree down to a root holding `root_token`, without reallocating. */
void ar_tree_reset(ar_tree *t, int32_t root_token);

/* The child of `parent` with `token`: an existing one (its p_draft is kept: same parent and token
 * means the same drafter probability) or a new node. Returns its index, AR_TREE_FULL or
 * AR_TREE_BAD_ARG (with ar_fail's message). */
int32_t ar_tree_add(ar_tree *t, int32_t parent, int32_t token, float p_draft);
/* Index of the child of `parent` with `token`, or -1. */
int32_t ar_tree_find_child(const ar_tree *t, int32_t parent, int32_t token);
/* Index of the node whose path hash is `hash`, or -1. */
int32_t ar_tree_find_hash(const ar_tree *t, uint64_t hash);
/* The path hash of `token` appended to a path with hash `parent_hash` (the chaining rule). */
uint64_t ar_tree_hash_step(uint64_t parent_hash, int32_t token);
/* The path hash of a root holding `token`. */
uint64_t ar_tree_hash_root(int32_t token);

static inline int32_t ar_tree_n(const ar_tree *t) {
    return t->n;
}
static inline int32_t ar_tree_max_depth(const ar_tree *t) {
    return t->max_depth;
}
static inline const ar_tree_node *ar_tree_at(const ar_tree *t, int32_t i) {
    return &t->nodes[i];
}
static inline bool ar_tree_is_leaf(const ar_tree *t, int32_t i) {
    return t->nodes[i].first_child < 0;
}
/* The child of node i the drafter gave the highest p_draft (ties: the first added), or -1 for a
 * leaf: its first choice. */
static inline int32_t ar_tree_likeliest_child(const ar_tree *t, int32_t i) {
    int32_t best = -1;
    for (int32_t c = t->nodes[i].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (best < 0 || t->nodes[c].p_draft > t->nodes[best].p_draft) best = c;
    return best;
}
static inline bool ar_tree_full(const ar_tree *t) {
    return t->n >= t->cap;
}
/* parent index of every node, nodes[0] first (-1): the verifier's tree-attention input. */
static inline const int32_t *ar_tree_parents(const ar_tree *t) {
    return t->parents;
}

/* Writes the node indices root..node into out (depth+1 entries); returns that count. */
int32_t ar_tree_path(const ar_tree *t, int32_t node, int32_t *out);
/* Writes the tokens root..node into out (depth+1 entries); returns that count. */
int32_t ar_tree_path_tokens(const ar_tree *t, int32_t node, int32_t *out);
/* pos[i] = base + depth[i] for every node. */
void ar_tree_positions(const ar_tree *t, int32_t base, int32_t *pos);
/* Writes the indices of the leaves (ascending) into out; returns their count. */
int32_t ar_tree_leaves(const ar_tree *t, int32_t *out);
int32_t ar_tree_n_leaves(const ar_tree *t);
/* Dense n x n ancestor-or-self matrix: mask[i*n + j] = 1 when node j is node i or an ancestor of
 * it (row i = what batch row i may attend to), else 0. */
void ar_tree_mask(const ar_tree *t, uint8_t *mask);

/* ---- budgeted growth (EAGLE-2 / Sequoia style: the best nodes by path probability) ---- */

/* A candidate expansion: `token` under node `parent` with drafter probability `p`. */
typedef struct ar_tree_cand {
    int32_t parent;
    int32_t token;
    float p;
    float score; /* set by ar_tree_add_best: p_path[parent] * p */
} ar_tree_cand;

/* Adds candidates in order of path probability p_path[parent] * p (ties: lower parent, then lower
 * token) until `n_max` new nodes were added, the candidates run out or the budget is spent.
 * Sorts `cands` in place, best first. Candidates merging into an existing node do not count.
 * Returns the number of nodes added, or AR_TREE_BAD_ARG (nothing added) when a candidate is
 * invalid. */
int32_t ar_tree_add_best(ar_tree *t, ar_tree_cand *cands, int32_t n_cands, int32_t n_max);

/* Keeps the n_keep nodes with the highest path probability (ties by lower index) and drops the
 * rest, renumbering the survivors compactly in their old order. Since p_draft <= 1, a node's path
 * probability never exceeds its parent's, and the parent has the lower index, so the kept set is
 * closed under ancestors and the order stays topological. The root is always kept. If old_to_new
 * is not NULL it receives, for each old index, the new index or -1 when dropped. */
void ar_tree_prune_to(ar_tree *t, int32_t n_keep, int32_t *old_to_new);

#endif
