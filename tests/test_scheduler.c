/* test_scheduler.c: the adaptive scheduler's decisions are a deterministic function of its cost
 * table and acceptance history (costs injected here), and its fallback backs off and probes. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sched/scheduler.h"

/* verify costs: 10 ms for one row, +1 ms per extra row; drafting 1 ms per level */
static void inject_costs(ar_sched *s) {
    for (int i = 0; i < AR_COST_SIZES; i++) {
        s->costs.verify[i] = 0.010 + 0.001 * (ar_cost_size(i) - 1);
        s->costs.draft[i] = 0.001;
    }
    s->costs.valid = true;
    s->fixed_costs = true;
}

/* root with a chain of `depth` nodes of value v^d, plus `extra` leaves of value w under root */
static void make_tree(ar_tree *t, int depth, float v, int extra, float w) {
    ar_tree_reset(t, 1);
    t->nodes[0].value = 1.0f;
    int parent = 0;
    float val = 1.0f;
    for (int d = 0; d < depth; d++) {
        int c = ar_tree_add(t, parent, 100 + d, 0.9f);
        val *= v;
        t->nodes[c].value = val;
        parent = c;
    }
    for (int e = 0; e < extra; e++) {
        int c = ar_tree_add(t, 0, 200 + e, 0.05f);
        t->nodes[c].value = w;
    }
}

Test(scheduler, tree_size_maximises_expected_rate) {
    ar_sched s;
    ar_sched_init(&s);
    inject_costs(&s);
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    /* a confident chain: every node adds 0.9^d tokens for 1 ms: all 8 worth it */
    make_tree(&t, 8, 0.9f, 0, 0.0f);
    float expected;
    cr_assert_eq(ar_sched_choose_size(&s, &t, 0.002, &expected), 8);
    cr_assert_float_eq(expected, 1.0f + 0.9f * (1 - powf(0.9f, 8)) / 0.1f, 1e-4);
    /* hopeless leaves (value 0.001 for 1 ms each) are never worth verifying */
    make_tree(&t, 2, 0.9f, 20, 0.001f);
    cr_assert_eq(ar_sched_choose_size(&s, &t, 0.002, NULL), 2);
    /* nothing worth it: verify the root alone */
    make_tree(&t, 3, 0.005f, 0, 0.0f);
    cr_assert_eq(ar_sched_choose_size(&s, &t, 0.002, NULL), 0);
    /* a chain of 0.7^d beside ten leaves of 0.1: the rate (1 + sum) / (3 ms + 10 ms + 1 ms a
     * row) peaks at 5 nodes, the first five chain nodes (2.941 tokens / 18 ms = 163.4/s against
     * 163.1 for 4 and 161.0 for 6): a recorded value, not a call compared with itself */
    make_tree(&t, 6, 0.7f, 10, 0.1f);
    const int32_t k1 = ar_sched_choose_size(&s, &t, 0.003, NULL);
    cr_assert_eq(k1, 5);
    /* expensive verification makes the scheduler verify less */
    for (int i = 0; i < AR_COST_SIZES; i++) s.costs.verify[i] = 0.010 + 0.004 * (ar_cost_size(i) - 1);
    cr_assert_lt(ar_sched_choose_size(&s, &t, 0.003, NULL), k1);
    ar_tree_free(&t);
}

/* A cost that steps up between 4 and 5 rows (a kernel's range ends there) is in the table as
 * measured, not smoothed by interpolation, and the tree is cut below the step. */
Test(scheduler, cost_steps_between_sizes_are_seen) {
    ar_sched s;
    ar_sched_init(&s);
    inject_costs(&s); /* 10 ms + 1 ms per row */
    for (int i = 4; i < AR_COST_SIZES; i++) s.costs.verify[i] += 0.010; /* n >= 5: +10 ms */
    cr_assert_float_eq(ar_sched_verify_cost(&s, 4), 0.013, 1e-12);
    cr_assert_float_eq(ar_sched_verify_cost(&s, 5), 0.024, 1e-12);
    cr_assert_float_eq(ar_sched_verify_cost(&s, 24), 0.043, 1e-12); /* between 16 and 32 */
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    /* a chain of value 0.8^d: 3 draft nodes (4 rows) pay; the 4th adds 0.41 tokens for 11 ms */
    make_tree(&t, 6, 0.8f, 0, 0.0f);
    cr_assert_eq(ar_sched_choose_size(&s, &t, 0.002, NULL), 3);
    /* without the step the same chain is verified whole */
    inject_costs(&s);
    cr_assert_eq(ar_sched_choose_size(&s, &t, 0.002, NULL), 6);
    ar_tree_free(&t);
}

/* One disturbed measurement (a batch of 8 drafter rows timed at 8x its worth) does not make
 * that size, and by the slope past it every larger one, look dear: a batch of a + b rows is
 * never priced above a batch of a plus one of b. */
Test(scheduler, a_disturbed_measurement_does_not_price_out_larger_batches) {
    ar_sched s;
    ar_sched_init(&s);
    ar_sched_set_prior(&s, 0.300, 0.060, 0.006, true);
    for (int32_t n = 2; n <= 7; n++) ar_sched_observe_draft(&s, n, 0.006 + 0.0004 * (n - 1));
    ar_sched_observe_draft(&s, 8, 0.064);
    const double d1 = ar_sched_draft_cost(&s, 1), d7 = ar_sched_draft_cost(&s, 7);
    cr_assert_float_eq(d7, 0.006 + 0.0024, 1e-9);
    cr_assert_leq(ar_sched_draft_cost(&s, 8), d1 + d7 + 1e-12);
    cr_assert_leq(ar_sched_draft_cost(&s, 16), 2 * ar_sched_draft_cost(&s, 8) + 1e-12);
    cr_assert_leq(ar_sched_draft_cost(&s, 32), 4 * ar_sched_draft_cost(&s, 8) + 1e-12);
    /* a real step stays: 5 rows at 5 ms over 4 rows is below the 4 + 1 bound (13 ms) */
    ar_sched_init(&s);
    ar_sched_set_prior(&s, 0.300, 0.060, 0.006, true);
    ar_sched_observe_draft(&s, 4, 0.007);
    ar_sched_observe_draft(&s, 5, 0.012);
    cr_assert_float_eq(ar_sched_draft_cost(&s, 5), 0.012, 1e-12);
}

/* A first drafter batch timed cold (41 ms, against 9 ms for every later one) is the one
 * corrected: later, larger batches measured cheaper lower it, instead of being raised to it. */
Test(scheduler, a_slow_first_measurement_does_not_raise_the_others) {
    ar_sched s;
    ar_sched_init(&s);
    ar_sched_set_prior(&s, 0.135, 0.044, 0.041, true);
    for (int i = 0; i < 4; i++) ar_sched_observe_draft(&s, 6, 0.009);
    cr_assert_float_eq(ar_sched_draft_cost(&s, 6), 0.009, 1e-9);
    cr_assert_leq(ar_sched_draft_cost(&s, 1), 0.009 + 1e-12);
    cr_assert_leq(ar_sched_draft_cost(&s, 8), 0.012, "extrapolated from what was measured");
    cr_assert(ar_sched_can_pay(&s), "a 9 ms drafter against a 135 ms pass pays");
}

/* Level shaping: grow while a drafter batch is cheap against what the next level adds, stop
 * when it is dear, add nothing when no candidate pays for its verifier row. */
Test(scheduler, levels_are_shaped_by_costs) {
    ar_sched s;
    ar_sched_init(&s); /* acceptance prior: bin b accepts (b + 0.5) / 10 */
    inject_costs(&s);  /* verifier 10 ms + 1 ms per row, drafter 1 ms per batch */
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    ar_tree_reset(&t, 1);
    t.nodes[0].value = 1.0f;
    ar_tree_cand sure[2] = {{0, 5, 0.95f, 0}, {0, 6, 0.03f, 0}}; /* values 0.95, 0.05 */
    bool grow;
    /* 1 + 0.95 + 0.95^2 tokens for 2 + 12 ms beats 1.95 for 1 + 11 ms: add 1 and grow */
    cr_assert_eq(ar_sched_shape_level(&s, &t, sure, 2, 0.001, 1, &grow), 1);
    cr_assert(grow);
    /* drafter batches of 50 ms: do not grow; with 50 ms already spent, even the 0.05 child
     * pays for its 1 ms row (2.0 tokens in 62 ms against 1.95 in 61) */
    for (int i = 0; i < AR_COST_SIZES; i++) s.costs.draft[i] = 0.050;
    cr_assert_eq(ar_sched_shape_level(&s, &t, sure, 2, 0.050, 1, &grow), 2);
    cr_assert(!grow);
    /* a 0.05 candidate does not pay for its row (1.05 tokens in 12 ms vs 1 in 11): nothing */
    inject_costs(&s);
    ar_tree_cand unsure[1] = {{0, 7, 0.03f, 0}};
    cr_assert_eq(ar_sched_shape_level(&s, &t, unsure, 1, 0.001, 1, &grow), 0);
    cr_assert(!grow);
    /* with 3 ms spent over 2 batches the sure candidate still pays for another level: add it
     * and grow (a recorded value; the next batch costs the 1.5 ms mean so far) */
    const int32_t m1 = ar_sched_shape_level(&s, &t, sure, 2, 0.003, 2, &grow);
    cr_assert_eq(m1, 1);
    cr_assert(grow);
    ar_tree_free(&t);
}

/* A drafter whose first choice has p 0.35 and is right, with a sibling of p 0.33 that is
 * wrong: its likeliest children are calibrated apart from the others. */
Test(scheduler, likeliest_children_are_calibrated_apart) {
    ar_sched s;
    ar_sched_init(&s);
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    int32_t path[9] = {0};
    for (int step = 0; step < 20; step++) {
        ar_tree_reset(&t, 1);
        int parent = 0;
        for (int d = 0; d < 8; d++) {
            const int c = ar_tree_add(&t, parent, 100 + d, 0.35f);
            cr_assert_geq(ar_tree_add(&t, parent, 300 + d, 0.33f), 0);
            path[d + 1] = c;
            parent = c;
        }
        ar_sched_update(&s, &t, path, 9, 0.0, 9);
    }
    cr_assert_gt(ar_sched_accept(&s, 0.35f, true), 0.95f, "first choices: 160 of 160 accepted");
    cr_assert_lt(ar_sched_accept(&s, 0.33f, false), 0.05f, "their siblings: 0 of 160");
    /* one table of all children would put both near one half */
    cr_assert(fabsf(s.accept_table[3] - 0.5f) < 0.05f, "%f", s.accept_table[3]);
    /* kept as text (the cost cache) and read back: the same rates, the weights capped */
    char text[2048];
    const int len = ar_sched_acceptance_format(&s, text, sizeof text);
    cr_assert(len > 0 && (size_t)len < sizeof text);
    ar_sched r;
    ar_sched_init(&r);
    cr_assert_eq(ar_sched_acceptance_parse(&r, text, "test"), AR_OK, "%s", ar_last_error());
    cr_assert_gt(ar_sched_accept(&r, 0.35f, true), 0.95f);
    cr_assert_lt(ar_sched_accept(&r, 0.33f, false), 0.05f);
    cr_assert_leq(r.first_prop[3], AR_ACCEPT_KEEP);
    cr_assert_leq(r.prop[3] - r.first_prop[3], AR_ACCEPT_KEEP);
    /* a bin with more accepted than proposed is refused, and nothing is applied */
    char *b3 = strstr(text, "accept 3 ");
    cr_assert(b3);
    memcpy(b3, "accept 3 99", 11);
    ar_sched u;
    ar_sched_init(&u);
    const float before = u.first_table[3];
    cr_assert_eq(ar_sched_acceptance_parse(&u, text, "test"), AR_ERR_FORMAT);
    cr_assert_eq(u.first_table[3], before);
    ar_clear_error();
    ar_tree_free(&t);
}

Test(scheduler, acceptance_model_and_threshold_adapt) {
    ar_sched s;
    ar_sched_init(&s);
    inject_costs(&s);
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    make_tree(&t, 4, 0.9f, 0, 0.0f); /* p_draft 0.9 along the chain: bin 9 */
    int32_t path[5] = {0, 1, 2, 3, 4};
    float before = s.accept_table[9], thr = s.threshold;
    ar_sched_update(&s, &t, path, 5, 0.0, 5); /* all accepted, time not measured */
    cr_assert_gt(s.accept_table[9], before);
    cr_assert_lt(s.threshold, thr, "drafter right to the end: draft deeper");
    thr = s.threshold;
    ar_sched_update(&s, &t, path, 1, 0.0, 1); /* nothing accepted */
    cr_assert_gt(s.threshold, thr, "drafter wrong at once: hand over sooner");
    cr_assert_eq(s.plain_left, 0, "unmeasured steps never trigger the fallback");
    ar_tree_free(&t);
}

/* `steps` speculative steps of `tokens` tokens in `seconds` each */
static void spec_steps(ar_sched *s, ar_tree *t, int steps, int32_t tokens, double seconds) {
    int32_t path[3] = {0, 1, 2};
    for (int i = 0; i < steps; i++) {
        cr_assert(ar_sched_want_speculation(s), "speculative step %d", i);
        /* the first draft accepted (the drafter is right, its steps are slow): what is judged
         * is the measured rate, not the acceptance model's can-pay test */
        ar_sched_update(s, t, path, tokens > 1 ? tokens : 2, seconds, tokens);
    }
}

Test(scheduler, fallback_backs_off_and_probes) {
    ar_sched s;
    ar_sched_init(&s);
    inject_costs(&s); /* plain decoding: 100 tokens/s */
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    make_tree(&t, 2, 0.5f, 0, 0.0f);
    /* one losing step is not judged alone (noise); a few are */
    spec_steps(&s, &t, 1, 1, 0.050); /* 20 tokens/s */
    cr_assert_eq(s.plain_left, 0, "a single step does not trigger the fallback");
    spec_steps(&s, &t, 3, 1, 0.050);
    int first = s.plain_left;
    cr_assert_gt(first, 0, "steps at 20 tokens/s lose to plain decoding at 100");
    for (int i = 0; i < first; i++) cr_assert(!ar_sched_want_speculation(&s), "plain step %d", i);
    spec_steps(&s, &t, 4, 1, 0.050); /* the probe loses again: longer back-off */
    cr_assert_gt(s.plain_left, first);
    int second = s.plain_left;
    for (int i = 0; i < second; i++) ar_sched_want_speculation(&s);
    /* one unlucky step among winning ones does not stop speculation */
    spec_steps(&s, &t, 1, 1, 0.012);
    spec_steps(&s, &t, 6, 3, 0.012); /* 250 tokens/s: speculation wins */
    cr_assert_eq(s.plain_left, 0);
    cr_assert_eq(s.backoff, 8, "a win resets the back-off");
    ar_tree_free(&t);
}

Test(scheduler, cost_table_files) {
    char dir[] = "/tmp/arbor-sched-XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/costs.txt", dir);
    ar_sched a, b;
    ar_sched_init(&a);
    ar_sched_init(&b);
    inject_costs(&a);
    cr_assert_eq(ar_sched_save_costs(&a, path), AR_OK);
    cr_assert_eq(ar_sched_load_costs(&b, path), AR_OK, "%s", ar_last_error());
    cr_assert(b.fixed_costs);
    for (int i = 0; i < AR_COST_SIZES; i++) {
        cr_assert_float_eq(b.costs.verify[i], a.costs.verify[i], 1e-12);
        cr_assert_float_eq(b.costs.draft[i], a.costs.draft[i], 1e-12);
    }
    /* fixed costs ignore online observations */
    double v = b.costs.verify[0];
    ar_sched_observe_verify(&b, 1, 5.0, 5.0);
    cr_assert_float_eq(b.costs.verify[0], v, 1e-15);
    /* bad files: a clear error naming the file and line */
    FILE *f = fopen(path, "w");
    fputs("verify 17 0.1\n", f); /* not a size of the table */
    fclose(f);
    cr_assert_eq(ar_sched_load_costs(&b, path), AR_ERR_FORMAT);
    cr_assert(strstr(ar_last_error(), "costs.txt:1"), "%s", ar_last_error());
    f = fopen(path, "w");
    fputs("verify 1 0.1\n", f);
    fclose(f);
    cr_assert_eq(ar_sched_load_costs(&b, path), AR_ERR_FORMAT);
    cr_assert(strstr(ar_last_error(), "missing"), "%s", ar_last_error());
    cr_assert_eq(ar_sched_load_costs(&b, "/nonexistent/costs"), AR_ERR_IO);
    unlink(path);
    rmdir(dir);
}
