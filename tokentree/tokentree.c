/* tokentree.c: the speculative token tree: insertion-ordered nodes (so the array is the verifier
 * batch), prefix merging through a path-hash table, and pruning to the best nodes by path
 * probability. */
#include "tokentree/tokentree.h"

#include <stdlib.h>
#include <xxhash.h>

/* Hash the token as 4 little-endian bytes, so path hashes agree across hosts. */
uint64_t ar_tree_hash_step(uint64_t parent_hash, int32_t token) {
    uint32_t u = (uint32_t)token;
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    return XXH64(b, sizeof b, parent_hash);
}

uint64_t ar_tree_hash_root(int32_t token) {
    return ar_tree_hash_step(0, token);
}

/* Scratch for pruning: rank order and the old->new index map. */
typedef struct prune_work {
    int32_t *order;
    int32_t *remap;
} prune_work;

static uint32_t slot_count(int32_t cap) {
    uint32_t n_slots = 2;
    while (n_slots < 2u * (uint32_t)cap) n_slots <<= 1; /* load factor <= 1/2 */
    return n_slots;
}

uint64_t ar_tree_bytes(int32_t cap) {
    return (uint64_t)cap * (sizeof(ar_tree_node) + 3 * sizeof(int32_t)) +
           (uint64_t)slot_count(cap) * sizeof(int32_t);
}

ar_status ar_tree_init(ar_tree *t, int32_t cap) {
    memset(t, 0, sizeof *t);
    if (cap < 1 || cap > AR_TREE_MAX_CAP)
        return ar_fail(AR_ERR_INVALID_ARG, "ar_tree_init: budget %d out of range 1..%d", cap,
                       AR_TREE_MAX_CAP);
    const uint32_t n_slots = slot_count(cap);
    t->nodes = malloc((size_t)cap * sizeof *t->nodes);
    t->parents = malloc((size_t)cap * sizeof *t->parents);
    t->slots = malloc((size_t)n_slots * sizeof *t->slots);
    prune_work *w = calloc(1, sizeof *w);
    t->work = w;
    if (w) {
        w->order = malloc((size_t)cap * sizeof *w->order);
        w->remap = malloc((size_t)cap * sizeof *w->remap);
    }
    if (!t->nodes || !t->parents || !t->slots || !w || !w->order || !w->remap) {
        ar_tree_free(t);
        return ar_fail(AR_ERR_NOMEM, "ar_tree_init: cannot allocate a tree of %d nodes", cap);
    }
    t->cap = cap;
    t->slot_mask = n_slots - 1;
    memset(t->slots, 0xff, (size_t)n_slots * sizeof *t->slots);
    return AR_OK;
}

void ar_tree_free(ar_tree *t) {
    prune_work *w = t->work;
    if (w) {
        free(w->order);
        free(w->remap);
        free(w);
    }
    free(t->nodes);
    free(t->parents);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- the path-hash table ---- */

static uint32_t slot_of(const ar_tree *t, uint64_t hash) {
    return (uint32_t)(hash ^ (hash >> 32)) & t->slot_mask;
}

static void table_insert(ar_tree *t, int32_t node) {
    uint32_t s = slot_of(t, t->nodes[node].hash);
    while (t->slots[s] >= 0) s = (s + 1) & t->slot_mask;
    t->slots[s] = node;
}

static void table_clear(ar_tree *t) {
    memset(t->slots, 0xff, ((size_t)t->slot_mask + 1) * sizeof *t->slots);
}

int32_t ar_tree_find_hash(const ar_tree *t, uint64_t hash) {
    if (t->n == 0) return -1;
    for (uint32_t s = slot_of(t, hash); t->slots[s] >= 0; s = (s + 1) & t->slot_mask)
        if (t->nodes[t->slots[s]].hash == hash) return t->slots[s];
    return -1;
}

int32_t ar_tree_find_child(const ar_tree *t, int32_t parent, int32_t token) {
    if (parent < 0 || parent >= t->n) return -1;
    uint64_t hash = ar_tree_hash_step(t->nodes[parent].hash, token);
    for (uint32_t s = slot_of(t, hash); t->slots[s] >= 0; s = (s + 1) & t->slot_mask) {
        const ar_tree_node *c = &t->nodes[t->slots[s]];
        /* a 64-bit hash match is checked, never trusted */
        if (c->hash == hash && c->parent == parent && c->token == token) return t->slots[s];
    }
    return -1;
}

/* ---- building ---- */

static void link_child(ar_tree *t, int32_t parent, int32_t child) {
    ar_tree_node *p = &t->nodes[parent];
    if (p->last_child < 0)
        p->first_child = child;
    else
        t->nodes[p->last_child].next_sibling = child;
    p->last_child = child;
}

void ar_tree_reset(ar_tree *t, int32_t root_token) {
    if (t->n > 0) table_clear(t);
    t->nodes[0] = (ar_tree_node){
        .token = root_token,
        .parent = -1,
        .depth = 0,
        .first_child = -1,
        .last_child = -1,
        .next_sibling = -1,
        .p_draft = 1.0f,
        .p_path = 1.0f,
        .hash = ar_tree_hash_root(root_token),
    };
    t->parents[0] = -1;
    t->n = 1;
    t->max_depth = 0;
    table_insert(t, 0);
}

int32_t ar_tree_add(ar_tree *t, int32_t parent, int32_t token, float p_draft) {
    if (parent < 0 || parent >= t->n || token < 0 || !(p_draft >= 0.0f && p_draft <= 1.0f)) {
        ar_fail(AR_ERR_INVALID_ARG, "ar_tree_add: parent %d (of %d nodes), token %d, p %g", parent,
                t->n, token, (double)p_draft);
        return AR_TREE_BAD_ARG;
    }
    int32_t existing = ar_tree_find_child(t, parent, token);
    if (existing >= 0) return existing;
    if (t->n >= t->cap) return AR_TREE_FULL;

    int32_t i = t->n++;
    const ar_tree_node *p = &t->nodes[parent];
    t->nodes[i] = (ar_tree_node){
        .token = token,
        .parent = parent,
        .depth = p->depth + 1,
        .first_child = -1,
        .last_child = -1,
        .next_sibling = -1,
        .p_draft = p_draft,
        .p_path = p->p_path * p_draft,
        .hash = ar_tree_hash_step(p->hash, token),
    };
    t->parents[i] = parent;
    t->max_depth = AR_MAX(t->max_depth, t->nodes[i].depth);
    link_child(t, parent, i);
    table_insert(t, i);
    return i;
}

/* ---- reading ---- */

int32_t ar_tree_path(const ar_tree *t, int32_t node, int32_t *out) {
    int32_t len = t->nodes[node].depth + 1;
    for (int32_t k = len - 1, i = node; k >= 0; k--, i = t->nodes[i].parent) out[k] = i;
    return len;
}

int32_t ar_tree_path_tokens(const ar_tree *t, int32_t node, int32_t *out) {
    int32_t len = t->nodes[node].depth + 1;
    for (int32_t k = len - 1, i = node; k >= 0; k--, i = t->nodes[i].parent)
        out[k] = t->nodes[i].token;
    return len;
}

void ar_tree_positions(const ar_tree *t, int32_t base, int32_t *pos) {
    for (int32_t i = 0; i < t->n; i++) pos[i] = base + t->nodes[i].depth;
}

int32_t ar_tree_leaves(const ar_tree *t, int32_t *out) {
    int32_t k = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (t->nodes[i].first_child < 0) out[k++] = i;
    return k;
}

int32_t ar_tree_n_leaves(const ar_tree *t) {
    int32_t k = 0;
    for (int32_t i = 0; i < t->n; i++) k += t->nodes[i].first_child < 0;
    return k;
}

void ar_tree_mask(const ar_tree *t, uint8_t *mask) {
    size_t n = (size_t)t->n;
    for (size_t i = 0; i < n; i++) {
        uint8_t *row = mask + i * n;
        int32_t p = t->nodes[i].parent;
        /* parent < i: its row is complete; a node sees what its parent sees, plus itself */
        if (p >= 0)
            memcpy(row, mask + (size_t)p * n, n);
        else
            memset(row, 0, n);
        row[i] = 1;
    }
}

/* ---- budgeted growth ---- */

/* Heapsort with a context argument (qsort has none): in place, no allocation, O(n log n). */
typedef bool (*ranks_before_fn)(const void *a, const void *b, const void *ctx);

static void swap_bytes(unsigned char *a, unsigned char *b, size_t size) {
    for (size_t i = 0; i < size; i++) {
        unsigned char t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

static void sift_down(unsigned char *base, size_t n, size_t size, size_t i, ranks_before_fn before,
                      const void *ctx) {
    for (;;) {
        size_t last = i, c1 = 2 * i + 1, c2 = 2 * i + 2;
        if (c1 < n && before(base + last * size, base + c1 * size, ctx)) last = c1;
        if (c2 < n && before(base + last * size, base + c2 * size, ctx)) last = c2;
        if (last == i) return;
        swap_bytes(base + i * size, base + last * size, size);
        i = last;
    }
}

/* Sorts so that every element ranks before the ones after it. */
static void heapsort_ctx(void *base, size_t n, size_t size, ranks_before_fn before,
                         const void *ctx) {
    unsigned char *b = base;
    for (size_t i = n / 2; i-- > 0;) sift_down(b, n, size, i, before, ctx);
    for (size_t end = n; end-- > 1;) {
        swap_bytes(b, b + end * size, size);
        sift_down(b, end, size, 0, before, ctx);
    }
}

static bool cand_before(const void *a, const void *b, const void *ctx) {
    const ar_tree_cand *x = a, *y = b;
    (void)ctx;
    if (x->score != y->score) return x->score > y->score;
    if (x->parent != y->parent) return x->parent < y->parent;
    return x->token < y->token;
}

int32_t ar_tree_add_best(ar_tree *t, ar_tree_cand *cands, int32_t n_cands, int32_t n_max) {
    for (int32_t i = 0; i < n_cands; i++) {
        ar_tree_cand *c = &cands[i];
        if (c->parent < 0 || c->parent >= t->n || c->token < 0 || !(c->p >= 0.0f && c->p <= 1.0f)) {
            ar_fail(AR_ERR_INVALID_ARG,
                    "ar_tree_add_best: candidate %d: parent %d (of %d nodes), token %d, p %g", i,
                    c->parent, t->n, c->token, (double)c->p);
            return AR_TREE_BAD_ARG;
        }
        c->score = t->nodes[c->parent].p_path * c->p;
    }
    heapsort_ctx(cands, (size_t)AR_MAX(n_cands, 0), sizeof *cands, cand_before, NULL);
    int32_t added = 0;
    for (int32_t i = 0; i < n_cands && added < n_max && t->n < t->cap; i++) {
        int32_t before = t->n;
        ar_tree_add(t, cands[i].parent, cands[i].token, cands[i].p); /* validated above */
        added += t->n > before;
    }
    return added;
}

/* Rank for pruning: path probability descending, ties by lower index. */
static bool node_before(const void *a, const void *b, const void *ctx) {
    const ar_tree *t = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float pi = t->nodes[i].p_path, pj = t->nodes[j].p_path;
    if (pi != pj) return pi > pj;
    return i < j;
}

void ar_tree_prune_to(ar_tree *t, int32_t n_keep, int32_t *old_to_new) {
    prune_work *w = t->work;
    int32_t n = t->n;
    if (n_keep >= n) {
        if (old_to_new)
            for (int32_t i = 0; i < n; i++) old_to_new[i] = i;
        return;
    }
    if (n_keep < 1) n_keep = 1;

    for (int32_t i = 0; i < n; i++) w->order[i] = i;
    heapsort_ctx(w->order, (size_t)n, sizeof *w->order, node_before, t);
    for (int32_t i = 0; i < n; i++) w->remap[i] = -1;
    for (int32_t k = 0; k < n_keep; k++) w->remap[w->order[k]] = 0;

    /* Compact in old order (k <= i, so in place). The selection is closed under ancestors (see the
     * header); requiring a kept parent as well makes closure hold by construction. */
    int32_t k = 0;
    t->max_depth = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t p = t->nodes[i].parent;
        if (w->remap[i] < 0 || (p >= 0 && w->remap[p] < 0)) {
            w->remap[i] = -1;
            continue;
        }
        ar_tree_node node = t->nodes[i];
        node.parent = p >= 0 ? w->remap[p] : -1;
        node.first_child = node.last_child = node.next_sibling = -1;
        w->remap[i] = k;
        t->nodes[k] = node;
        t->parents[k] = node.parent;
        t->max_depth = AR_MAX(t->max_depth, node.depth);
        k++;
    }
    t->n = k;
    table_clear(t);
    for (int32_t i = 0; i < k; i++) {
        if (t->nodes[i].parent >= 0) link_child(t, t->nodes[i].parent, i);
        table_insert(t, i);
    }
    if (old_to_new) memcpy(old_to_new, w->remap, (size_t)n * sizeof *old_to_new);
}
