/* test_spec_distribution.c: sampled speculative decoding follows the verifier's distribution.
 * At a fixed context, the empirical joint distribution of the next two tokens over many seeded
 * runs is compared with the verifier's, computed exactly from its probabilities (sampling
 * transforms included), by a chi-square test at p = 1e-4; for a sampled tree, a deterministic
 * tree and prompt lookup, with a drafter that often disagrees. A deliberately broken acceptance
 * rule must fail the same test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sched/engine.h"
#include "sched/treespec.h"
#include "tests/util/refs.h"

#define RUNS 6000

/* "The little dog saw a" + the first five tokens of its greedy continuation + "The little dog
 * saw a" again (tok512 ids): the verifier is unsure what comes next, and prompt lookup has an
 * earlier match to propose from */
static const int32_t prompt[] = {1,   291, 376, 400, 428, 394, 261, 370, 268,
                                 414, 444, 426, 291, 376, 400, 428, 394, 261};
#define N_PROMPT (int32_t)(sizeof prompt / sizeof prompt[0])

static ar_model *load(const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", file);
    ar_model *m = NULL;
    cr_assert_eq(ar_model_load(fixture(rel), ar_model_default_params(), &m), AR_OK, "%s",
                 ar_last_error());
    return m;
}

static ar_sampler_params sampling(void) {
    ar_sampler_params sp = ar_sampler_default_params(); /* top-k 40, top-p 0.95 */
    sp.temp = 1.5f;
    sp.min_p = 0.01f;
    return sp;
}

/* exact joint law: joint[a * V + b] */
static double *exact_joint(ar_model *m) {
    int32_t V = m->hp.n_vocab;
    ar_kv *kv;
    ar_workspace *w;
    cr_assert_eq(ar_kv_create(m, 64, 0, AR_TYPE_F32, &kv), AR_OK);
    cr_assert_eq(ar_workspace_create(m, 32, 64, &w), AR_OK);
    float *logits = malloc(sizeof(float) * (size_t)V * N_PROMPT);
    ar_batch b = {.n = N_PROMPT, .tokens = prompt};
    cr_assert_eq(ar_model_eval(m, kv, w, NULL, &b, logits), AR_OK);
    ar_kv_commit_all(kv, N_PROMPT);
    ar_sampler_params sp = sampling();
    ar_dist d1, d2;
    ar_dist_init(&d1, V);
    ar_dist_init(&d2, V);
    cr_assert_eq(ar_sampler_dist(&sp, logits + (size_t)(N_PROMPT - 1) * V, V, NULL, 0, &d1), AR_OK);
    double *joint = calloc((size_t)V * V, sizeof(double));
    for (int32_t i = 0; i < d1.n; i++) {
        ar_kv_truncate(kv, N_PROMPT);
        ar_batch one = {.n = 1, .tokens = &d1.id[i]};
        cr_assert_eq(ar_model_eval(m, kv, w, NULL, &one, logits), AR_OK);
        cr_assert_eq(ar_sampler_dist(&sp, logits, V, NULL, 0, &d2), AR_OK);
        for (int32_t j = 0; j < d2.n; j++)
            joint[(size_t)d1.id[i] * V + d2.id[j]] += (double)d1.p[i] * d2.p[j];
    }
    ar_dist_free(&d1);
    ar_dist_free(&d2);
    free(logits);
    ar_workspace_free(w);
    ar_kv_free(kv);
    return joint;
}

/* chi-square statistic over cells with expected count >= 5, the rest pooled; *dof set */
static double chi_square(const double *joint, const int *counts, int32_t V, int runs, int *dof) {
    double stat = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    for (size_t c = 0; c < (size_t)V * V; c++) {
        double e = joint[c] * runs;
        if (e >= 5) {
            stat += (counts[c] - e) * (counts[c] - e) / e;
            cells++;
        } else {
            pool_e += e;
            pool_o += counts[c];
        }
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        cells++;
    }
    *dof = cells - 1;
    return stat;
}

/* the chi-square quantile at p = 1e-4 (Wilson-Hilferty; z = 3.719) */
static double critical(int dof) {
    double k = dof, z = 3.719, t = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * t * t * t;
}

/* Deliberately wrong (the engine's rule pointer is set to it): accept a drafted child whenever
 * the verifier gives it any probability, which biases the output towards the drafter. */
static ar_status broken_rule(const ar_tree *tree, ar_dist_source p_of, void *p_user,
                             const ar_dist *const *q, ar_rng *rng, ar_accept_work *w,
                             int32_t *path, ar_accept_result *res) {
    (void)q, (void)w;
    int32_t u = 0, k = 0;
    const ar_dist *pu;
    path[k++] = 0;
    ar_status s = p_of(p_user, u, &pu);
    for (int32_t c = tree->nodes[u].first_child; c >= 0 && s == AR_OK;) {
        if (ar_dist_prob(pu, tree->nodes[c].token) > 0.0f) {
            path[k++] = u = c;
            s = p_of(p_user, u, &pu);
            c = tree->nodes[u].first_child;
        } else {
            c = tree->nodes[c].next_sibling;
        }
    }
    if (s != AR_OK) return s;
    res->n_path = k;
    res->bonus = ar_dist_sample(pu, rng);
    return AR_OK;
}

/* The chi-square statistic of the emitted pairs against the exact joint law; *accepted gets the
 * draft tokens accepted over all runs (a test whose speculation never happened would prove
 * nothing about the acceptance rule). */
static double run_mode(ar_model *t, ar_model *d, const char *tree, bool broken, const double *joint,
                       int *dof, int64_t *n_accepted) {
    int32_t V = t->hp.n_vocab;
    ar_engine_params p = {.n_ctx = 64, .n_threads = 1, .n_batch = 64, .kv_type = AR_TYPE_F32};
    ar_engine *e = NULL;
    cr_assert_eq(ar_engine_create(t, p, &e), AR_OK, "%s", ar_last_error());
    ar_drafter *dr = NULL;
    if (d) cr_assert_eq(ar_drafter_create_model(d, 0, e->kv->cap, e->pool, &dr), AR_OK);
    else cr_assert_eq(ar_drafter_create_lookup(e->kv->cap, &dr), AR_OK);
    ar_tree_spec spec;
    cr_assert_eq(ar_tree_spec_parse(tree, &spec), AR_OK);
    cr_assert_eq(ar_engine_set_drafter(e, dr, &spec), AR_OK);
    if (broken) e->spec->accept_sampled = broken_rule;
    int *counts = calloc((size_t)V * V, sizeof(int));
    int64_t accepted = 0;
    for (int r = 0; r < RUNS; r++) {
        ar_sampler_params sp = sampling();
        sp.seed = 1000 + (uint64_t)r;
        ar_engine_set_sampling(e, &sp);
        int32_t reused, out[2 * AR_TREE_MAX], got = 0;
        cr_assert_eq(ar_engine_prefill(e, prompt, N_PROMPT, &reused), AR_OK);
        while (got < 2) {
            int32_t k;
            cr_assert_eq(ar_engine_step(e, out + got, 2 - got, &k), AR_OK, "%s", ar_last_error());
            got += k;
        }
        counts[(size_t)out[0] * V + out[1]]++;
    }
    accepted = e->stats.n_accepted;
    double stat = chi_square(joint, counts, V, RUNS, dof);
    cr_log_info("%s%s: chi-square %.1f, dof %d, critical %.1f; %lld draft tokens accepted in %d "
                "runs",
                tree, broken ? " (broken)" : "", stat, *dof, critical(*dof), (long long)accepted,
                RUNS);
    free(counts);
    ar_engine_free(e);
    *n_accepted = accepted;
    return stat;
}

static ar_model *target, *drafter;
static double *joint;
static void setup(void) {
    target = load("llama2xs-260K-f32.gguf");
    drafter = load("stories260K-f32.gguf");
    joint = exact_joint(target);
}
static void teardown(void) {
    free(joint);
    ar_model_free(drafter);
    ar_model_free(target);
}

TestSuite(spec_distribution, .init = setup, .fini = teardown, .timeout = 600);

/* Both emitted tokens come from a verification in most runs: a draft token accepted in at least
 * one run of 20 (the pair agrees on 10-33% of greedy drafts; sampled, less). */
#define MIN_ACCEPTED (RUNS / 20)

Test(spec_distribution, sampled_tree) {
    int dof;
    int64_t acc;
    double stat = run_mode(target, drafter, "static:3x2", false, joint, &dof, &acc);
    cr_assert_lt(stat, critical(dof));
    cr_assert_geq(acc, MIN_ACCEPTED, "speculation happened: %lld accepted", (long long)acc);
}

Test(spec_distribution, deterministic_tree) {
    int dof;
    int64_t acc;
    double stat = run_mode(target, drafter, "dynamic:8", false, joint, &dof, &acc);
    cr_assert_lt(stat, critical(dof));
    cr_assert_geq(acc, MIN_ACCEPTED, "speculation happened: %lld accepted", (long long)acc);
}

Test(spec_distribution, prompt_lookup) {
    int dof;
    int64_t acc;
    double stat = run_mode(target, NULL, "chain:3", false, joint, &dof, &acc);
    cr_assert_lt(stat, critical(dof));
    cr_assert_geq(acc, MIN_ACCEPTED, "speculation happened: %lld accepted", (long long)acc);
}

Test(spec_distribution, broken_acceptance_is_caught) {
    int dof;
    int64_t acc;
    double stat = run_mode(target, drafter, "static:3x2", true, joint, &dof, &acc);
    cr_assert_gt(stat, critical(dof), "the test must detect a biased acceptance rule");
    stat = run_mode(target, drafter, "dynamic:8", true, joint, &dof, &acc);
    cr_assert_gt(stat, critical(dof), "the test must detect a biased acceptance rule");
}
