/* test_tokentree.c: the token tree: prefix merging, the budget, paths and positions, the attention
 * mask against a brute-force ancestor walk, reuse after reset, best-first growth and pruning. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <xxhash.h>

#include "src/core/sampling.h"
#include "tokentree/tokentree.h"

/* Is a an ancestor of b, or b itself? (walking parent links, the slow obvious way) */
static bool ancestor_or_self(const ar_tree *t, int32_t a, int32_t b) {
    for (int32_t i = b; i >= 0; i = t->nodes[i].parent)
        if (i == a) return true;
    return false;
}

/* Every structural invariant the verifier and drafters rely on. */
static void check_invariants(const ar_tree *t) {
    cr_assert(t->n >= 1 && t->n <= t->cap);
    cr_assert_eq(t->nodes[0].parent, -1);
    cr_assert_eq(t->nodes[0].depth, 0);
    int32_t max_depth = 0;
    for (int32_t i = 0; i < t->n; i++) {
        const ar_tree_node *x = &t->nodes[i];
        cr_assert_eq(ar_tree_parents(t)[i], x->parent);
        if (i > 0) {
            cr_assert(x->parent >= 0 && x->parent < i, "node %d: parent %d", i, x->parent);
            const ar_tree_node *p = &t->nodes[x->parent];
            cr_assert_eq(x->depth, p->depth + 1);
            cr_assert_eq(x->hash, ar_tree_hash_step(p->hash, x->token));
            cr_assert_float_eq(x->p_path, p->p_path * x->p_draft, 0.0f);
            cr_assert_eq(ar_tree_find_child(t, x->parent, x->token), i);
        }
        cr_assert_eq(ar_tree_find_hash(t, x->hash), i);
        max_depth = AR_MAX(max_depth, x->depth);
        /* children: exactly the nodes naming i as parent, in ascending index order */
        int32_t prev = i, count = 0;
        for (int32_t c = x->first_child; c >= 0; c = t->nodes[c].next_sibling) {
            cr_assert_eq(t->nodes[c].parent, i);
            cr_assert(c > prev);
            prev = c;
            count++;
        }
        cr_assert_eq(x->last_child, x->first_child < 0 ? -1 : prev);
        int32_t expected = 0;
        for (int32_t j = i + 1; j < t->n; j++) expected += t->nodes[j].parent == i;
        cr_assert_eq(count, expected, "node %d: %d linked children, %d by parent", i, count,
                     expected);
    }
    cr_assert_eq(ar_tree_max_depth(t), max_depth);
}

/* A random tree: each new node hangs under a random earlier node with one of 4 tokens, so many
 * additions merge. */
static void grow_random(ar_tree *t, ar_rng *r, int32_t attempts) {
    for (int32_t k = 0; k < attempts && !ar_tree_full(t); k++) {
        int32_t parent = (int32_t)(ar_rng_next(r) % (uint64_t)t->n);
        int32_t token = (int32_t)(ar_rng_next(r) % 4);
        float p = (float)ar_rng_uniform(r);
        cr_assert(ar_tree_add(t, parent, token, p) >= 0);
    }
}

Test(tokentree, add_merges_identical_prefixes) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 16), AR_OK);
    ar_tree_reset(&t, 5);
    cr_expect_eq(ar_tree_n(&t), 1);
    cr_expect_eq(ar_tree_add(&t, 0, 7, 0.5f), 1);
    cr_expect_eq(ar_tree_add(&t, 0, 8, 0.3f), 2);
    cr_expect_eq(ar_tree_add(&t, 0, 7, 0.4f), 1); /* merged; the first p_draft stays */
    cr_expect_float_eq(t.nodes[1].p_draft, 0.5f, 0.0f);
    cr_expect_eq(ar_tree_add(&t, 1, 9, 0.5f), 3);
    cr_expect_eq(ar_tree_add(&t, 2, 9, 0.5f), 4); /* same token, other prefix: a new node */
    cr_expect_eq(ar_tree_add(&t, 1, 9, 1.0f), 3);
    cr_expect_eq(ar_tree_n(&t), 5);
    cr_expect_float_eq(t.nodes[3].p_path, 0.25f, 0.0f);
    cr_expect_float_eq(t.nodes[4].p_path, 0.15f, 1e-7f);
    cr_expect_eq(t.nodes[3].depth, 2);
    cr_expect_eq(ar_tree_find_child(&t, 0, 8), 2);
    cr_expect_eq(ar_tree_find_child(&t, 0, 9), -1);
    cr_expect_eq(ar_tree_find_child(&t, 3, 9), -1);
    cr_expect_eq(ar_tree_find_child(&t, 17, 9), -1);
    /* the hash chain: XXH64 of the token's 4 little-endian bytes, seeded by the parent's hash */
    uint8_t five[4] = {5, 0, 0, 0}, seven[4] = {7, 0, 0, 0}, nine[4] = {9, 0, 0, 0};
    uint64_t h0 = XXH64(five, 4, 0), h1 = XXH64(seven, 4, h0), h3 = XXH64(nine, 4, h1);
    cr_expect_eq(t.nodes[0].hash, h0);
    cr_expect_eq(t.nodes[1].hash, h1);
    cr_expect_eq(t.nodes[3].hash, h3);
    cr_expect_eq(ar_tree_find_hash(&t, h3), 3);
    cr_expect_eq(ar_tree_find_hash(&t, h3 ^ 1), -1);
    check_invariants(&t);
    ar_tree_free(&t);
}

Test(tokentree, budget_and_bad_arguments) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 4), AR_OK);
    ar_tree_reset(&t, 1);
    cr_expect_eq(ar_tree_add(&t, 0, 10, 0.5f), 1);
    cr_expect_eq(ar_tree_add(&t, 0, 11, 0.5f), 2);
    cr_expect_eq(ar_tree_add(&t, 1, 12, 0.5f), 3);
    cr_expect(ar_tree_full(&t));
    cr_expect_eq(ar_tree_add(&t, 1, 13, 0.5f), AR_TREE_FULL);
    cr_expect_eq(ar_tree_add(&t, 0, 11, 0.9f), 2); /* merging needs no room */
    cr_expect_eq(ar_tree_n(&t), 4);
    cr_expect_eq(ar_tree_add(&t, 4, 1, 0.5f), AR_TREE_BAD_ARG);
    cr_expect(strstr(ar_last_error(), "parent 4") != NULL, "%s", ar_last_error());
    cr_expect_eq(ar_tree_add(&t, -1, 1, 0.5f), AR_TREE_BAD_ARG);
    cr_expect_eq(ar_tree_add(&t, 0, -3, 0.5f), AR_TREE_BAD_ARG);
    cr_expect_eq(ar_tree_add(&t, 0, 10, 1.5f), AR_TREE_BAD_ARG);
    cr_expect_eq(ar_tree_add(&t, 0, 10, NAN), AR_TREE_BAD_ARG);
    ar_tree_free(&t);
    cr_expect_eq(ar_tree_init(&t, 0), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_tree_init(&t, AR_TREE_MAX_CAP + 1), AR_ERR_INVALID_ARG);
    cr_assert_eq(ar_tree_init(&t, 1), AR_OK); /* a root-only budget */
    ar_tree_reset(&t, 3);
    cr_expect_eq(ar_tree_add(&t, 0, 4, 1.0f), AR_TREE_FULL);
    ar_tree_free(&t);
}

Test(tokentree, paths_positions_leaves) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 8), AR_OK);
    ar_tree_reset(&t, 100);
    int32_t a = ar_tree_add(&t, 0, 1, 0.6f); /* 1 */
    int32_t b = ar_tree_add(&t, 0, 2, 0.3f); /* 2 */
    int32_t c = ar_tree_add(&t, a, 3, 0.5f); /* 3 */
    int32_t d = ar_tree_add(&t, c, 4, 0.5f); /* 4 */
    int32_t e = ar_tree_add(&t, b, 5, 0.5f); /* 5 */
    cr_assert(a == 1 && b == 2 && c == 3 && d == 4 && e == 5);
    int32_t path[8], toks[8];
    cr_expect_eq(ar_tree_path(&t, d, path), 4);
    int32_t want_path[] = {0, 1, 3, 4}, want_toks[] = {100, 1, 3, 4};
    cr_expect_arr_eq(path, want_path, sizeof want_path);
    cr_expect_eq(ar_tree_path_tokens(&t, d, toks), 4);
    cr_expect_arr_eq(toks, want_toks, sizeof want_toks);
    cr_expect_eq(ar_tree_path(&t, 0, path), 1);
    cr_expect_eq(path[0], 0);
    int32_t pos[8];
    ar_tree_positions(&t, 40, pos);
    int32_t want_pos[] = {40, 41, 41, 42, 43, 42};
    cr_expect_arr_eq(pos, want_pos, sizeof want_pos);
    int32_t leaves[8];
    cr_expect_eq(ar_tree_leaves(&t, leaves), 2);
    cr_expect_eq(leaves[0], 4);
    cr_expect_eq(leaves[1], 5);
    cr_expect_eq(ar_tree_n_leaves(&t), 2);
    cr_expect_eq(ar_tree_max_depth(&t), 3);
    int32_t want_parents[] = {-1, 0, 0, 1, 3, 2};
    cr_expect_arr_eq(ar_tree_parents(&t), want_parents, sizeof want_parents);
    cr_expect(ar_tree_is_leaf(&t, 4) && !ar_tree_is_leaf(&t, 3));
    check_invariants(&t);
    ar_tree_free(&t);
}

Test(tokentree, mask_is_ancestor_or_self) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 60), AR_OK);
    ar_rng r;
    ar_rng_seed(&r, 3);
    ar_tree_reset(&t, 0);
    grow_random(&t, &r, 1000);
    cr_assert_eq(ar_tree_n(&t), 60);
    check_invariants(&t);
    int32_t n = t.n;
    uint8_t *mask = malloc((size_t)n * (size_t)n);
    ar_tree_mask(&t, mask);
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < n; j++)
            cr_assert_eq(mask[i * n + j], ancestor_or_self(&t, j, i), "mask[%d][%d]", i, j);
    /* hand-checked on a chain plus a branch */
    ar_tree_reset(&t, 0);
    ar_tree_add(&t, 0, 1, 1.0f);
    ar_tree_add(&t, 1, 2, 1.0f);
    ar_tree_add(&t, 0, 3, 1.0f);
    uint8_t m4[16];
    ar_tree_mask(&t, m4);
    uint8_t want[16] = {1, 0, 0, 0, /**/ 1, 1, 0, 0, /**/ 1, 1, 1, 0, /**/ 1, 0, 0, 1};
    cr_expect_arr_eq(m4, want, 16);
    free(mask);
    ar_tree_free(&t);
}

Test(tokentree, reset_reuses_memory) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 200), AR_OK);
    ar_rng r;
    ar_rng_seed(&r, 11);
    ar_tree_reset(&t, 7);
    grow_random(&t, &r, 5000);
    uint64_t old_hash = t.nodes[t.n - 1].hash;
    ar_tree_node *nodes = t.nodes;
    int32_t *slots = t.slots;
    ar_tree_reset(&t, 8);
    cr_expect_eq(t.nodes, nodes);
    cr_expect_eq(t.slots, slots);
    cr_expect_eq(ar_tree_n(&t), 1);
    cr_expect_eq(ar_tree_max_depth(&t), 0);
    cr_expect_eq(t.nodes[0].token, 8);
    cr_expect_eq(t.nodes[0].first_child, -1);
    cr_expect_eq(ar_tree_find_hash(&t, old_hash), -1);
    for (int32_t tok = 0; tok < 4; tok++) cr_expect_eq(ar_tree_find_child(&t, 0, tok), -1);
    /* a second fill from the same seed builds the same tree as a fresh one */
    ar_rng_seed(&r, 12);
    grow_random(&t, &r, 5000);
    check_invariants(&t);
    ar_tree fresh;
    cr_assert_eq(ar_tree_init(&fresh, 200), AR_OK);
    ar_tree_reset(&fresh, 8);
    ar_rng_seed(&r, 12);
    grow_random(&fresh, &r, 5000);
    cr_assert_eq(fresh.n, t.n);
    for (int32_t i = 0; i < t.n; i++) {
        cr_expect_eq(fresh.nodes[i].token, t.nodes[i].token);
        cr_expect_eq(fresh.nodes[i].parent, t.nodes[i].parent);
        cr_expect_eq(fresh.nodes[i].hash, t.nodes[i].hash);
    }
    ar_tree_free(&fresh);
    ar_tree_free(&t);
}

Test(tokentree, large_tree_lookups) {
    /* the hash table at its fullest (load 1/2) still finds every node */
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 4096), AR_OK);
    ar_rng r;
    ar_rng_seed(&r, 5);
    ar_tree_reset(&t, 0);
    while (!ar_tree_full(&t)) {
        int32_t parent = (int32_t)(ar_rng_next(&r) % (uint64_t)t.n);
        int32_t token = (int32_t)(ar_rng_next(&r) % 150000);
        cr_assert(ar_tree_add(&t, parent, token, 0.9f) >= 0);
    }
    check_invariants(&t);
    ar_tree_free(&t);
}

/* ---- pruning and best-first growth ---- */

Test(tokentree, prune_keeps_best_ancestor_closed_in_order) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 120), AR_OK);
    ar_rng r;
    ar_rng_seed(&r, 21);
    const int32_t keeps[] = {1, 2, 7, 30, 64, 119, 120, 500};
    for (size_t kk = 0; kk < AR_ARRAY_LEN(keeps); kk++) {
        ar_tree_reset(&t, 1);
        grow_random(&t, &r, 10000);
        /* some exact ties in path probability: a few p_draft = 1 children */
        for (int32_t i = 1; i < t.n; i += 9) {
            t.nodes[i].p_draft = 1.0f;
            t.nodes[i].p_path = t.nodes[t.nodes[i].parent].p_path;
            for (int32_t j = i + 1; j < t.n; j++)
                t.nodes[j].p_path = t.nodes[t.nodes[j].parent].p_path * t.nodes[j].p_draft;
        }
        int32_t n_old = t.n, n_keep = keeps[kk];
        ar_tree_node old[120];
        memcpy(old, t.nodes, (size_t)n_old * sizeof *old);
        /* the expected survivors: rank = how many nodes beat it (p_path desc, index asc) */
        bool expect_kept[120];
        for (int32_t i = 0; i < n_old; i++) {
            int32_t better = 0;
            for (int32_t j = 0; j < n_old; j++)
                better +=
                    old[j].p_path > old[i].p_path || (old[j].p_path == old[i].p_path && j < i);
            expect_kept[i] = better < n_keep;
        }
        int32_t map[120];
        ar_tree_prune_to(&t, n_keep, map);
        check_invariants(&t);
        cr_assert_eq(t.n, AR_MIN(n_keep, n_old));
        int32_t next = 0;
        for (int32_t i = 0; i < n_old; i++) {
            cr_assert_eq(map[i] >= 0, expect_kept[i], "keep %d: old node %d", n_keep, i);
            if (map[i] < 0) continue;
            cr_assert_eq(map[i], next++, "survivors keep their order");
            const ar_tree_node *x = &t.nodes[map[i]];
            cr_assert_eq(x->token, old[i].token);
            cr_assert_eq(x->hash, old[i].hash);
            cr_assert_eq(x->depth, old[i].depth);
            cr_assert_float_eq(x->p_path, old[i].p_path, 0.0f);
            if (i > 0) {
                cr_assert(map[old[i].parent] >= 0, "ancestor closure");
                cr_assert_eq(x->parent, map[old[i].parent]);
            }
        }
    }
    ar_tree_free(&t);
}

Test(tokentree, add_best_takes_highest_path_probability) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 6), AR_OK);
    ar_tree_reset(&t, 0);
    cr_assert_eq(ar_tree_add(&t, 0, 10, 0.6f), 1);
    cr_assert_eq(ar_tree_add(&t, 0, 11, 0.3f), 2);
    ar_tree_cand c[] = {
        {.parent = 2, .token = 20, .p = 0.9f},  /* 0.27 */
        {.parent = 1, .token = 21, .p = 0.5f},  /* 0.30 */
        {.parent = 0, .token = 12, .p = 0.05f}, /* 0.05 */
        {.parent = 0, .token = 10, .p = 0.6f},  /* 0.60, merges into node 1 */
        {.parent = 1, .token = 22, .p = 0.4f},  /* 0.24 */
    };
    /* best first: 10 (0.60) merges into node 1 and does not count, then 21 (0.30), 20 (0.27) */
    cr_expect_eq(ar_tree_add_best(&t, c, 5, 2), 2);
    cr_expect_float_eq(c[0].score, 0.6f, 1e-7f);
    cr_expect_eq(c[0].token, 10);
    cr_expect_eq(c[1].token, 21);
    cr_expect_eq(c[4].token, 12);
    cr_expect_eq(ar_tree_n(&t), 5);
    cr_expect_eq(t.nodes[3].token, 21);
    cr_expect_eq(t.nodes[3].parent, 1);
    cr_expect_eq(t.nodes[4].token, 20);
    cr_expect_eq(t.nodes[4].parent, 2);
    /* the budget (6 nodes) stops it after 22 */
    cr_expect_eq(ar_tree_add_best(&t, c, 5, 10), 1);
    cr_expect(ar_tree_full(&t));
    cr_expect_eq(t.nodes[5].token, 22);
    cr_expect_eq(ar_tree_find_child(&t, 0, 12), -1);
    ar_tree_cand bad = {.parent = 9, .token = 1, .p = 0.5f};
    cr_expect_eq(ar_tree_add_best(&t, &bad, 1, 1), AR_TREE_BAD_ARG);
    check_invariants(&t);
    ar_tree_free(&t);
}
