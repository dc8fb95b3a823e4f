/* test_accept.c: acceptance rules. Greedy against hand-made trees; the stochastic rules by their
 * defining property -- the emitted tokens follow the verifier's distribution exactly -- with a
 * chi-square test on the joint law of the first two emitted tokens, which deliberately broken
 * variants must fail. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "src/core/sampling.h"
#include "tokentree/tokentree.h"
#include "verify/accept.h"

/* ---- greedy ---- */

/* root(token 0) -> {3, 5, 7}; 3 -> {1, 2}; 5 -> {4}; 1 -> {9} */
static void build_hand_tree(ar_tree *t) {
    ar_tree_reset(t, 0);
    cr_assert_eq(ar_tree_add(t, 0, 3, 0.5f), 1);
    cr_assert_eq(ar_tree_add(t, 0, 5, 0.3f), 2);
    cr_assert_eq(ar_tree_add(t, 0, 7, 0.1f), 3);
    cr_assert_eq(ar_tree_add(t, 1, 1, 0.5f), 4);
    cr_assert_eq(ar_tree_add(t, 1, 2, 0.5f), 5);
    cr_assert_eq(ar_tree_add(t, 2, 4, 0.5f), 6);
    cr_assert_eq(ar_tree_add(t, 4, 9, 0.5f), 7);
}

Test(greedy, follows_the_argmax_chain) {
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 16), AR_OK);
    build_hand_tree(&t);
    int32_t path[8];
    ar_accept_result res;

    /* root -> 3 -> 1 -> 9, then the verifier says 6 after 9 */
    int32_t target_a[] = {3, 1, 0, 0, 9, 0, 0, 6};
    cr_assert_eq(ar_accept_greedy(&t, target_a, path, &res), AR_OK);
    cr_expect_eq(res.n_path, 4);
    int32_t want_a[] = {0, 1, 4, 7};
    cr_expect_arr_eq(path, want_a, sizeof want_a);
    cr_expect_eq(res.bonus, 6);

    /* the verifier wants 8 at the root: nothing accepted, 8 is the bonus */
    int32_t target_b[] = {8, 1, 4, 0, 9, 0, 0, 6};
    cr_assert_eq(ar_accept_greedy(&t, target_b, path, &res), AR_OK);
    cr_expect_eq(res.n_path, 1);
    cr_expect_eq(path[0], 0);
    cr_expect_eq(res.bonus, 8);

    /* root -> 5 -> 4, a leaf: the bonus is the verifier's token after 4 */
    int32_t target_c[] = {5, 1, 4, 0, 9, 0, 11, 6};
    cr_assert_eq(ar_accept_greedy(&t, target_c, path, &res), AR_OK);
    cr_expect_eq(res.n_path, 3);
    int32_t want_c[] = {0, 2, 6};
    cr_expect_arr_eq(path, want_c, sizeof want_c);
    cr_expect_eq(res.bonus, 11);

    /* root -> 3, but the verifier wants 2 after 3? then 2 (a leaf) and its bonus */
    int32_t target_d[] = {3, 2, 0, 0, 0, 12, 0, 0};
    cr_assert_eq(ar_accept_greedy(&t, target_d, path, &res), AR_OK);
    cr_expect_eq(res.n_path, 3);
    cr_expect_eq(path[2], 5);
    cr_expect_eq(res.bonus, 12);
    ar_tree_free(&t);
}

/* Point-mass verifier distributions make the stochastic rule greedy, whatever the seed. */
Test(greedy, point_masses_make_the_stochastic_rules_greedy) {
    enum { V = 16 };
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 16), AR_OK);
    build_hand_tree(&t);
    ar_accept_work w;
    cr_assert_eq(ar_accept_work_init(&w, V), AR_OK);
    ar_dist d[8];
    const ar_dist *p[8];
    int32_t targets[][8] = {{3, 1, 0, 0, 9, 0, 0, 6},
                            {8, 1, 4, 0, 9, 0, 0, 6},
                            {5, 1, 4, 0, 9, 0, 11, 6},
                            {3, 2, 0, 0, 0, 12, 0, 0}};
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(ar_dist_init(&d[i], V), AR_OK);
        d[i].n = 1;
        d[i].p[0] = 1.0f;
        p[i] = &d[i];
    }
    ar_rng rng;
    ar_rng_seed(&rng, 1);
    for (size_t k = 0; k < AR_ARRAY_LEN(targets); k++) {
        for (int i = 0; i < 8; i++) d[i].id[0] = targets[k][i];
        int32_t gpath[8], spath[8];
        ar_accept_result g, s;
        cr_assert_eq(ar_accept_greedy(&t, targets[k], gpath, &g), AR_OK);
        for (int rep = 0; rep < 50; rep++) {
            cr_assert_eq(ar_accept_deterministic(&t, p, &rng, &w, spath, &s), AR_OK, "%s",
                         ar_last_error());
            cr_assert_eq(s.n_path, g.n_path);
            cr_assert_eq(s.bonus, g.bonus);
            cr_assert_arr_eq(spath, gpath, (size_t)g.n_path * sizeof *gpath);
        }
    }
    for (int i = 0; i < 8; i++) ar_dist_free(&d[i]);
    ar_accept_work_free(&w);
    ar_tree_free(&t);
}

/* ---- the statistical setting: 6 tokens, two levels ---- */

enum { V = 6 };

/* the verifier: p0 at the root, p1[x] after first token x; the drafter: q0, q1[x], far from p */
static const double P0[V] = {0.05, 0.10, 0.15, 0.20, 0.25, 0.25};
static const double Q0[V] = {0.40, 0.25, 0.15, 0.10, 0.06, 0.04};

static double p1_prob(int x, int b) {
    return P0[(b + x) % V];
}
static double q1_prob(int x, int b) {
    return Q0[(b + 2 * x + 1) % V];
}

typedef struct world {
    ar_dist p0, p1[V], p2, q0, q1[V];
} world;

static void dist_from_probs(ar_dist *d, const double *prob) {
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = logf((float)prob[i]);
    ar_sampler_params sp = {.temp = 1.0f,
                            .top_k = 0,
                            .top_p = 1.0f,
                            .min_p = 0.0f,
                            .repeat_penalty = 1.0f,
                            .repeat_last_n = 0,
                            .seed = 0};
    cr_assert_eq(ar_dist_init(d, V), AR_OK);
    cr_assert_eq(ar_sampler_dist(&sp, logits, V, NULL, 0, d), AR_OK);
    cr_assert_eq(d->n, V);
}

static void world_init(world *w) {
    double row[V];
    dist_from_probs(&w->p0, P0);
    dist_from_probs(&w->q0, Q0);
    for (int x = 0; x < V; x++) {
        for (int b = 0; b < V; b++) row[b] = p1_prob(x, b);
        dist_from_probs(&w->p1[x], row);
        for (int b = 0; b < V; b++) row[b] = q1_prob(x, b);
        dist_from_probs(&w->q1[x], row);
    }
    for (int b = 0; b < V; b++) row[b] = 1.0 / V;
    dist_from_probs(&w->p2, row);
}

static void world_free(world *w) {
    ar_dist_free(&w->p0);
    ar_dist_free(&w->q0);
    ar_dist_free(&w->p2);
    for (int x = 0; x < V; x++) {
        ar_dist_free(&w->p1[x]);
        ar_dist_free(&w->q1[x]);
    }
}

/* The distributions at every node: depth 0 root, depth 1 by its token, depth 2 uniform. */
static void attach(const ar_tree *t, const world *w, const ar_dist **p, const ar_dist **q) {
    for (int32_t i = 0; i < t->n; i++) {
        const ar_tree_node *x = ar_tree_at(t, i);
        if (x->depth == 0) {
            p[i] = &w->p0;
            q[i] = &w->q0;
        } else if (x->depth == 1) {
            p[i] = &w->p1[x->token];
            q[i] = &w->q1[x->token];
        } else {
            p[i] = &w->p2;
            q[i] = NULL;
        }
    }
}

/* A sampled tree: 3 draws from q0 under the root, 2 draws from q1[x] under each first-level x,
 * added in draw order (duplicates merge). */
static void build_sampled_tree(ar_tree *t, const world *w, ar_rng *draft_rng) {
    ar_tree_reset(t, 0);
    for (int k = 0; k < 3; k++) {
        int32_t x = ar_dist_sample(&w->q0, draft_rng);
        cr_assert(ar_tree_add(t, 0, x, ar_dist_prob(&w->q0, x)) >= 0);
    }
    int32_t n1 = t->n;
    for (int32_t i = 1; i < n1; i++) {
        const ar_dist *q = &w->q1[t->nodes[i].token];
        for (int k = 0; k < 2; k++) {
            int32_t y = ar_dist_sample(q, draft_rng);
            cr_assert(ar_tree_add(t, i, y, ar_dist_prob(q, y)) >= 0);
        }
    }
}

/* A deterministic tree: the drafter's top 3 under the root, its top 2 under each of those. */
static void build_topk_tree(ar_tree *t, const world *w) {
    ar_tree_reset(t, 0);
    for (int k = 0; k < 3; k++) ar_tree_add(t, 0, w->q0.id[k], w->q0.p[k]);
    for (int32_t i = 1; i <= 3; i++) {
        const ar_dist *q = &w->q1[t->nodes[i].token];
        for (int k = 0; k < 2; k++) ar_tree_add(t, i, q->id[k], q->p[k]);
    }
}

/* ---- deliberately broken variants, written plainly over dense 6-token arrays ---- */

typedef enum bug {
    BUG_BONUS_FROM_P,  /* correct acceptance, but the bonus drawn from p, not the residual */
    BUG_SPECINFER_MSS, /* SpecInfer's residual update (subtract q unchanged) on merged children */
} bug;

static int32_t draw_dense(const double *w, ar_rng *rng) {
    double total = 0.0, cum = 0.0;
    for (int i = 0; i < V; i++) total += w[i];
    double u = ar_rng_uniform(rng) * total;
    for (int i = 0; i < V; i++) {
        cum += w[i];
        if (cum > u && w[i] > 0.0) return i;
    }
    return V - 1;
}

static void broken_accept(const ar_tree *t, const ar_dist *const *p, const ar_dist *const *q,
                          bug bug, ar_rng *rng, int32_t *path, ar_accept_result *res) {
    int32_t u = 0, n = 0;
    path[n++] = 0;
    for (;;) {
        double r[V] = {0}, pd[V] = {0}, qd[V] = {0}, q_left = 1.0;
        for (int k = 0; k < p[u]->n; k++) pd[p[u]->id[k]] = r[p[u]->id[k]] = p[u]->p[k];
        if (q && q[u])
            for (int k = 0; k < q[u]->n; k++) qd[q[u]->id[k]] = q[u]->p[k];
        int32_t accepted = -1;
        for (int32_t c = t->nodes[u].first_child; c >= 0; c = t->nodes[c].next_sibling) {
            int32_t y = t->nodes[c].token;
            double norm = 0.0, s[V];
            for (int i = 0; i < V; i++) norm += r[i];
            for (int i = 0; i < V; i++)
                s[i] = !(q && q[u]) ? (i == y) : bug == BUG_SPECINFER_MSS ? qd[i] : qd[i] / q_left;
            if (ar_rng_uniform(rng) * s[y] < r[y] / norm) {
                accepted = c;
                break;
            }
            for (int i = 0; i < V; i++) r[i] = fmax(0.0, r[i] / norm - s[i]);
            q_left -= qd[y];
            if (bug != BUG_SPECINFER_MSS) qd[y] = 0.0;
        }
        if (accepted < 0) {
            res->n_path = n;
            res->bonus = draw_dense(bug == BUG_BONUS_FROM_P ? pd : r, rng);
            return;
        }
        path[n++] = u = accepted;
    }
}

/* ---- the experiment ---- */

typedef enum rule { RULE_SAMPLED, RULE_DETERMINISTIC, RULE_BROKEN_BONUS, RULE_BROKEN_MSS } rule;

/* Pearson's statistic of the first two emitted tokens against p0(a) p1(b | a), over `trials`
 * runs of tree building and acceptance from fixed seeds. Also reports the mean number of draft
 * tokens accepted. */
static double joint_chi_square(rule rule, bool sampled_tree, long trials, double *mean_accepted) {
    world w;
    world_init(&w);
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 16), AR_OK);
    ar_accept_work work;
    cr_assert_eq(ar_accept_work_init(&work, V), AR_OK);
    ar_rng draft_rng, verify_rng;
    ar_rng_seed(&draft_rng, 2024);
    ar_rng_seed(&verify_rng, 4202);
    const ar_dist *p[16], *q[16];
    int32_t path[16];
    long count[V][V] = {{0}}, accepted = 0;
    if (!sampled_tree) {
        build_topk_tree(&t, &w);
        attach(&t, &w, p, q);
    }
    for (long k = 0; k < trials; k++) {
        if (sampled_tree) {
            build_sampled_tree(&t, &w, &draft_rng);
            attach(&t, &w, p, q);
        }
        ar_accept_result res;
        switch (rule) {
        case RULE_SAMPLED:
            cr_assert_eq(ar_accept_sampled(&t, p, q, &verify_rng, &work, path, &res), AR_OK, "%s",
                         ar_last_error());
            break;
        case RULE_DETERMINISTIC:
            cr_assert_eq(ar_accept_deterministic(&t, p, &verify_rng, &work, path, &res), AR_OK);
            break;
        case RULE_BROKEN_BONUS:
            broken_accept(&t, p, sampled_tree ? q : NULL, BUG_BONUS_FROM_P, &verify_rng, path,
                          &res);
            break;
        case RULE_BROKEN_MSS:
            broken_accept(&t, p, q, BUG_SPECINFER_MSS, &verify_rng, path, &res);
            break;
        }
        accepted += res.n_path - 1;
        int32_t first, second;
        if (res.n_path >= 3) {
            first = t.nodes[path[1]].token;
            second = t.nodes[path[2]].token;
        } else if (res.n_path == 2) {
            first = t.nodes[path[1]].token;
            second = res.bonus;
        } else {
            first = res.bonus; /* then a plain verifier step after it */
            second = ar_dist_sample(&w.p1[first], &verify_rng);
        }
        cr_assert(first >= 0 && first < V && second >= 0 && second < V);
        count[first][second]++;
    }
    double x2 = 0.0;
    for (int a = 0; a < V; a++) {
        for (int b = 0; b < V; b++) {
            double e = ar_dist_prob(&w.p0, a) * ar_dist_prob(&w.p1[a], b) * (double)trials;
            x2 += (count[a][b] - e) * (count[a][b] - e) / e;
        }
    }
    *mean_accepted = (double)accepted / (double)trials;
    ar_accept_work_free(&work);
    ar_tree_free(&t);
    world_free(&w);
    return x2;
}

/* 36 cells, 35 degrees of freedom: the critical value at p = 1e-4 is 74.93 (the smallest
 * expected cell count is 0.05 * 0.05 * 200000 = 500). */
#define TRIALS          200000
#define CRITICAL_35_DOF 74.93

Test(exactness, sampled_tree_emits_the_verifier_distribution) {
    double mean;
    double x2 = joint_chi_square(RULE_SAMPLED, true, TRIALS, &mean);
    cr_log_info("sampled tree, recursive rule: chi-square %.2f, %.3f draft tokens accepted", x2,
                mean);
    cr_expect(x2 < CRITICAL_35_DOF, "chi-square %.2f >= %.2f", x2, CRITICAL_35_DOF);
    cr_expect(mean > 0.3, "the rule should accept drafts (mean %.3f)", mean);
}

Test(exactness, deterministic_tree_emits_the_verifier_distribution) {
    double mean;
    double x2 = joint_chi_square(RULE_DETERMINISTIC, false, TRIALS, &mean);
    cr_log_info("top-k tree, elimination rule: chi-square %.2f, %.3f accepted", x2, mean);
    cr_expect(x2 < CRITICAL_35_DOF, "chi-square %.2f >= %.2f", x2, CRITICAL_35_DOF);
    /* the deterministic rule is also exact on a sampled tree (its proposals are just fixed) */
    x2 = joint_chi_square(RULE_DETERMINISTIC, true, TRIALS, &mean);
    cr_log_info("sampled tree, elimination rule: chi-square %.2f, %.3f accepted", x2, mean);
    cr_expect(x2 < CRITICAL_35_DOF, "chi-square %.2f >= %.2f", x2, CRITICAL_35_DOF);
}

Test(exactness, broken_variants_fail_the_same_test) {
    double mean;
    double x2 = joint_chi_square(RULE_BROKEN_BONUS, true, TRIALS, &mean);
    cr_log_info("bonus from p, sampled tree: chi-square %.2f", x2);
    cr_expect(x2 > CRITICAL_35_DOF, "bonus from p passed: chi-square %.2f", x2);
    x2 = joint_chi_square(RULE_BROKEN_BONUS, false, TRIALS, &mean);
    cr_log_info("bonus from p, top-k tree: chi-square %.2f", x2);
    cr_expect(x2 > CRITICAL_35_DOF, "bonus from p passed: chi-square %.2f", x2);
    x2 = joint_chi_square(RULE_BROKEN_MSS, true, TRIALS, &mean);
    cr_log_info("SpecInfer's update on merged children: chi-square %.2f", x2);
    cr_expect(x2 > CRITICAL_35_DOF, "unrenormalised q passed: chi-square %.2f", x2);
}

/* ---- bad input ---- */

Test(accept, bad_input_is_an_error_and_leaves_work_clean) {
    world w;
    world_init(&w);
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 16), AR_OK);
    ar_accept_work work;
    cr_assert_eq(ar_accept_work_init(&work, V), AR_OK);
    const ar_dist *p[16], *q[16];
    int32_t path[16];
    ar_accept_result res;
    ar_rng rng;

    /* a sampled child the drafter gives probability 0 cannot have been sampled */
    ar_dist q_hole;
    double hole[V] = {0.5, 0.5, 0, 0, 0, 0};
    cr_assert_eq(ar_dist_init(&q_hole, V), AR_OK);
    q_hole.n = 2;
    q_hole.id[0] = 0;
    q_hole.p[0] = (float)hole[0];
    q_hole.id[1] = 1;
    q_hole.p[1] = (float)hole[1];
    ar_tree_reset(&t, 0);
    ar_tree_add(&t, 0, 1, 0.5f);
    ar_tree_add(&t, 0, 4, 0.5f);
    attach(&t, &w, p, q);
    q[0] = &q_hole;
    ar_rng_seed(&rng, 1);
    /* child 1 (token 1) is tried first; force its rejection by a verifier without token 1 */
    ar_dist p_no1;
    cr_assert_eq(ar_dist_init(&p_no1, V), AR_OK);
    p_no1.n = 1;
    p_no1.id[0] = 5;
    p_no1.p[0] = 1.0f;
    p[0] = &p_no1;
    cr_expect_eq(ar_accept_sampled(&t, p, q, &rng, &work, path, &res), AR_ERR_INVALID_ARG);
    cr_expect(strstr(ar_last_error(), "drafter probability 0") != NULL, "%s", ar_last_error());

    /* an id outside the vocabulary */
    ar_dist p_bad;
    cr_assert_eq(ar_dist_init(&p_bad, V), AR_OK);
    p_bad.n = 1;
    p_bad.id[0] = V;
    p_bad.p[0] = 1.0f;
    p[0] = &p_bad;
    cr_expect_eq(ar_accept_sampled(&t, p, q, &rng, &work, path, &res), AR_ERR_INVALID_ARG);

    /* the work memory is clean again: same results as a fresh one from the same seed */
    for (int i = 0; i < V; i++) {
        cr_expect_eq(work.slot[i], 0);
        cr_expect_float_eq(work.q[i], 0.0f, 0.0f);
    }
    ar_rng a, b;
    ar_rng_seed(&a, 77);
    ar_rng_seed(&b, 77);
    ar_accept_work fresh;
    cr_assert_eq(ar_accept_work_init(&fresh, V), AR_OK);
    ar_rng draft;
    ar_rng_seed(&draft, 3);
    for (int k = 0; k < 200; k++) {
        build_sampled_tree(&t, &w, &draft);
        attach(&t, &w, p, q);
        int32_t path2[16];
        ar_accept_result res2;
        cr_assert_eq(ar_accept_sampled(&t, p, q, &a, &work, path, &res), AR_OK);
        cr_assert_eq(ar_accept_sampled(&t, p, q, &b, &fresh, path2, &res2), AR_OK);
        cr_assert_eq(res.n_path, res2.n_path);
        cr_assert_eq(res.bonus, res2.bonus);
    }
    ar_accept_work_free(&fresh);
    ar_dist_free(&p_bad);
    ar_dist_free(&p_no1);
    ar_dist_free(&q_hole);
    ar_accept_work_free(&work);
    ar_tree_free(&t);
    world_free(&w);
}
