/* test_scheduler.c: the adaptive scheduler's decisions are a deterministic function of its cost
 * table and acceptance history (costs injected here), and its fallback backs off and probes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sched/scheduler.h"

/* verify costs: 10 ms for one row, +1 ms per extra row; drafting 1 ms per level */
static void inject_costs(ar_sched *s) {
    for (int i = 0; i < AR_COST_SIZES; i++) {
        s->costs.verify[i] = 0.010 + 0.001 * ((1 << i) - 1);
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
    /* same inputs, same answer */
    make_tree(&t, 6, 0.7f, 10, 0.1f);
    int32_t k1 = ar_sched_choose_size(&s, &t, 0.003, NULL);
    int32_t k2 = ar_sched_choose_size(&s, &t, 0.003, NULL);
    cr_assert_eq(k1, k2);
    /* expensive verification makes the scheduler verify less */
    for (int i = 0; i < AR_COST_SIZES; i++) s.costs.verify[i] = 0.010 + 0.004 * ((1 << i) - 1);
    cr_assert_lt(ar_sched_choose_size(&s, &t, 0.003, NULL), k1);
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

Test(scheduler, fallback_backs_off_and_probes) {
    ar_sched s;
    ar_sched_init(&s);
    inject_costs(&s); /* plain decoding: 100 tokens/s */
    ar_tree t;
    cr_assert_eq(ar_tree_init(&t, 64), AR_OK);
    make_tree(&t, 2, 0.5f, 0, 0.0f);
    int32_t path[1] = {0};
    /* a speculative step of 1 token in 50 ms (20 tokens/s) loses to plain decoding */
    cr_assert(ar_sched_want_speculation(&s));
    ar_sched_update(&s, &t, path, 1, 0.050, 1);
    int first = s.plain_left;
    cr_assert_gt(first, 0);
    for (int i = 0; i < first; i++) cr_assert(!ar_sched_want_speculation(&s), "plain step %d", i);
    cr_assert(ar_sched_want_speculation(&s), "probe after the back-off");
    ar_sched_update(&s, &t, path, 1, 0.050, 1); /* loses again: longer back-off */
    cr_assert_gt(s.plain_left, first);
    int second = s.plain_left;
    for (int i = 0; i < second; i++) ar_sched_want_speculation(&s);
    cr_assert(ar_sched_want_speculation(&s));
    int32_t path3[3] = {0, 1, 2};
    ar_sched_update(&s, &t, path3, 3, 0.012, 3); /* 250 tokens/s: speculation wins */
    cr_assert_eq(s.plain_left, 0);
    cr_assert(ar_sched_want_speculation(&s));
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
    ar_sched_observe_verify(&b, 1, 5.0);
    cr_assert_float_eq(b.costs.verify[0], v, 1e-15);
    /* bad files: a clear error naming the file and line */
    FILE *f = fopen(path, "w");
    fputs("verify 3 0.1\n", f);
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
