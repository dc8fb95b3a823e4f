/* test_pipeline.c: pipelined speculation (the drafter drafts the next tree on its own thread
 * while the verifier checks the current one) gives exactly the verifier's greedy output, and
 * trees drafted ahead are used when the guess comes true. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "sched/engine.h"
#include "sched/treespec.h"
#include "tests/util/refs.h"

static ar_model *load(const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", file);
    ar_model *m = NULL;
    cr_assert_eq(ar_model_load(fixture(rel), ar_model_default_params(), &m), AR_OK, "%s",
                 ar_last_error());
    return m;
}

/* n greedy tokens after `prompt` (prefilled into e, replacing what it held) */
static void generate(ar_engine *e, const int32_t *prompt, int32_t n_prompt, int n, int32_t *out) {
    int32_t reused;
    cr_assert_eq(ar_engine_prefill(e, prompt, n_prompt, &reused), AR_OK);
    int got = 0;
    while (got < n) {
        int32_t step[AR_TREE_MAX + 1], k;
        cr_assert_eq(ar_engine_step(e, step, n - got, &k), AR_OK, "%s", ar_last_error());
        for (int i = 0; i < k; i++) out[got++] = step[i];
    }
}

/* a greedy engine; drafter NULL: plain */
static ar_engine *engine(ar_model *target, ar_model *draft, const char *tree, bool pipeline) {
    ar_engine_params p = {.n_ctx = 256, .n_threads = 1, .n_batch = 64, .kv_type = AR_TYPE_F32,
                          .pipeline = pipeline, .draft_threads = 1};
    ar_engine *e = NULL;
    cr_assert_eq(ar_engine_create(target, p, &e), AR_OK, "%s", ar_last_error());
    if (draft) {
        ar_drafter *d = NULL;
        cr_assert_eq(ar_drafter_create_model(draft, 0, e->kv->cap, e->pool, &d), AR_OK);
        ar_tree_spec spec;
        cr_assert_eq(ar_tree_spec_parse(tree, &spec), AR_OK);
        cr_assert_eq(ar_engine_set_drafter(e, d, &spec), AR_OK, "%s", ar_last_error());
    }
    ar_sampler_params sp = ar_sampler_default_params();
    sp.temp = 0.0f;
    ar_engine_set_sampling(e, &sp);
    return e;
}

static const int32_t once_upon[5] = {1, 403, 407, 261, 378}; /* "Once upon a time" */

/* greedy tokens after "Once upon a time" with a fresh engine */
static int run(ar_model *target, ar_model *draft, const char *tree, bool pipeline, int n,
               int32_t *out, ar_engine_stats *stats) {
    ar_engine *e = engine(target, draft, tree, pipeline);
    generate(e, once_upon, 5, n, out);
    if (stats) *stats = e->stats;
    ar_engine_free(e);
    return n;
}

Test(pipeline, greedy_output_is_the_verifiers, .timeout = 300) {
    ar_model *t = load("llama2xs-260K-f32.gguf"), *d = load("stories260K-f32.gguf");
    int32_t plain[150], piped[150];
    run(t, NULL, NULL, false, 150, plain, NULL);
    const char *trees[] = {"chain:4", "dynamic:16", "adaptive"};
    for (int i = 0; i < 3; i++) {
        ar_engine_stats st;
        run(t, d, trees[i], true, 150, piped, &st);
        for (int j = 0; j < 150; j++)
            cr_assert_eq(piped[j], plain[j], "%s: token %d differs", trees[i], j);
        cr_log_info("%s: %lld of %lld verifications used a tree drafted ahead", trees[i],
                    (long long)st.n_pipelined, (long long)st.n_verify);
        if (i < 2) cr_assert_gt(st.n_pipelined, 0, "%s: no tree drafted ahead was ever used",
                                trees[i]);
    }
    ar_model_free(d);
    ar_model_free(t);
}

Test(pipeline, self_drafting_is_exact_too, .timeout = 300) {
    ar_model *t = load("synth-llama-q4_0.gguf");
    int32_t plain[100], piped[100];
    run(t, NULL, NULL, false, 100, plain, NULL);
    run(t, t, "chain:3", true, 100, piped, NULL); /* whole model as drafter: always right */
    for (int j = 0; j < 100; j++) cr_assert_eq(piped[j], plain[j], "token %d", j);
    ar_model_free(t);
}

/* A tree drafted ahead belongs to the context it was drafted from: a new prompt (or a plain
 * step) must not verify it. The whole model drafting for itself is always right, so a tree
 * drafted ahead is pending when the first generation ends. */
Test(pipeline, a_new_prompt_discards_the_tree_drafted_ahead, .timeout = 300) {
    ar_model *t = load("synth-llama-q4_0.gguf");
    const int32_t other[4] = {1, 403, 407, 261}; /* "Once upon a" */
    int32_t plain[40], piped[40];
    ar_engine *e = engine(t, NULL, NULL, false);
    generate(e, other, 4, 40, plain);
    ar_engine_free(e);
    e = engine(t, t, "chain:3", true);
    generate(e, once_upon, 5, 20, piped);
    cr_assert_gt(e->stats.n_pipelined, 0, "no tree drafted ahead was used");
    generate(e, other, 4, 40, piped);
    ar_engine_free(e);
    for (int j = 0; j < 40; j++) cr_assert_eq(piped[j], plain[j], "token %d", j);
    ar_model_free(t);
}
