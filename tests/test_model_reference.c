/* test_model_reference.c: arbor's forward pass against llama.cpp's reference outputs for every
 * fixture model: prompt rows from one batched prompt evaluation, then teacher-forced single-token
 * rows along the reference's greedy continuation. Tolerances as fixtures/README.md derives them.
 * Greedy decisions must match up to the first step whose reference top-1/top-2 gap is below the
 * tolerance (every step for F32 models). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/core/model.h"
#include "src/core/sampling.h"
#include "tests/util/refs.h"

typedef struct model_case {
    const char *stem;
    float tol;
} model_case;

static void check_model(const char *stem, float tol, int n_threads) {
    ref_file ref;
    cr_assert(ref_load(stem, &ref), "reference for %s", stem);
    char rel[512];
    snprintf(rel, sizeof rel, "models/%s", ref.model);
    ar_model *m = NULL;
    ar_status s = ar_model_load(fixture(rel), ar_model_default_params(), &m);
    cr_assert_eq(s, AR_OK, "%s: %s", stem, ar_last_error());
    cr_assert_eq(m->hp.n_vocab, ref.n_vocab);
    ar_pool *pool = NULL;
    cr_assert_eq(ar_pool_create(n_threads, NULL, &pool), AR_OK);
    int32_t V = m->hp.n_vocab;
    for (int ci = 0; ci < ref.n_cases; ci++) {
        ref_case *c = &ref.cases[ci];
        ar_kv *kv = NULL;
        ar_workspace *w = NULL;
        cr_assert_eq(ar_kv_create(m, ref.n_ctx, 0, AR_TYPE_F32, &kv), AR_OK);
        cr_assert_eq(ar_workspace_create(m, c->n_prompt, ref.n_ctx, &w), AR_OK);
        float *logits = malloc(sizeof(float) * (size_t)V * (size_t)c->n_prompt);
        /* the prompt as one batch, logits at every row */
        ar_batch b = {.n = c->n_prompt, .tokens = c->prompt_ids};
        s = ar_model_eval(m, kv, w, pool, &b, logits);
        cr_assert_eq(s, AR_OK, "%s", ar_last_error());
        ar_kv_commit_all(kv, c->n_prompt);

        /* the raw last prompt row */
        size_t raw_len = 0;
        snprintf(rel, sizeof rel, "reference/%s", c->raw_last);
        float *raw = (float *)read_whole(fixture(rel), &raw_len);
        cr_assert(raw && raw_len == sizeof(float) * (size_t)V);
        float *last = logits + (size_t)(c->n_prompt - 1) * V;
        float max_raw = 0;
        for (int32_t t = 0; t < V; t++) max_raw = fmaxf(max_raw, fabsf(last[t] - raw[t]));
        cr_expect_leq(max_raw, tol, "%s case %d: raw last row differs by %g", stem, ci, max_raw);
        free(raw);

        bool decisions_agree = true; /* until the first step with a gap below tol */
        float max_diff = 0;
        for (int32_t row = 0; row < c->n_rows; row++) {
            const ref_row *rr = &c->rows[row];
            const float *lg;
            if (row < c->n_prompt) {
                lg = logits + (size_t)row * V;
            } else { /* teacher forcing: feed the reference's greedy token alone */
                int32_t tok = rr->input;
                ar_batch one = {.n = 1, .tokens = &tok};
                s = ar_model_eval(m, kv, w, pool, &one, logits);
                cr_assert_eq(s, AR_OK, "%s", ar_last_error());
                ar_kv_commit_all(kv, 1);
                lg = logits;
            }
            for (int k = 0; k < REF_TOPK; k++) {
                float d = fabsf(lg[rr->id[k]] - rr->logit[k]);
                max_diff = fmaxf(max_diff, d);
                cr_expect_leq(d, tol, "%s case %d row %d id %d: %g vs %g", stem, ci, row,
                              rr->id[k], lg[rr->id[k]], rr->logit[k]);
            }
            if (row >= c->n_prompt - 1) {
                float gap = rr->logit[0] - rr->logit[1];
                if (gap < tol) decisions_agree = false;
                if (decisions_agree)
                    cr_expect_eq(ar_argmax(lg, V), rr->id[0], "%s case %d row %d: greedy choice",
                                 stem, ci, row);
            }
        }
        cr_log_info("%s case %d: max |dlogit| %g over top-10 of %d rows, raw last row %g", stem,
                    ci, max_diff, c->n_rows, max_raw);
        free(logits);
        ar_workspace_free(w);
        ar_kv_free(kv);
    }
    ar_pool_free(pool);
    ar_model_free(m);
    ref_free(&ref);
}

#define MODEL_TEST(name, stem, tol, threads)                                                      \
    Test(reference, name, .timeout = 300) { check_model(stem, tol, threads); }

MODEL_TEST(stories260K_f32, "stories260K-f32", 1e-4f, 1)
MODEL_TEST(llama2xs_f32, "llama2xs-260K-f32", 1e-4f, 2)
MODEL_TEST(aidreams_f32, "aidreams260K-f32", 1e-4f, 1)
MODEL_TEST(llama2xs_q8_0, "llama2xs-260K-q8_0", 3.0f, 2)
MODEL_TEST(llama2xs_q4_0, "llama2xs-260K-q4_0", 3.0f, 1)
MODEL_TEST(synth_llama_f32, "synth-llama-f32", 1e-4f, 2)
MODEL_TEST(synth_llama_f16, "synth-llama-f16", 0.03f, 2)
MODEL_TEST(synth_llama_bf16, "synth-llama-bf16", 0.3f, 2)
MODEL_TEST(synth_llama_q8_0, "synth-llama-q8_0", 1.5f, 2)
MODEL_TEST(synth_llama_q4_0, "synth-llama-q4_0", 1.5f, 2)
MODEL_TEST(synth_llama_q4_1, "synth-llama-q4_1", 1.5f, 2)
MODEL_TEST(synth_llama_q5_0, "synth-llama-q5_0", 1.5f, 2)
MODEL_TEST(synth_llama_q5_1, "synth-llama-q5_1", 1.5f, 2)
MODEL_TEST(synth_llama_q2_k, "synth-llama-q2_k", 1.5f, 2)
MODEL_TEST(synth_llama_q3_k, "synth-llama-q3_k", 1.5f, 2)
MODEL_TEST(synth_llama_q4_k, "synth-llama-q4_k", 1.5f, 2)
MODEL_TEST(synth_llama_q5_k, "synth-llama-q5_k", 1.5f, 2)
MODEL_TEST(synth_llama_q6_k, "synth-llama-q6_k", 1.5f, 2)
MODEL_TEST(synth_llama_q4_k_m, "synth-llama-q4_k_m", 1.5f, 2)
MODEL_TEST(synth_qwen2_f32, "synth-qwen2-f32", 1e-4f, 2)
MODEL_TEST(synth_qwen2_q8_0, "synth-qwen2-q8_0", 3.0f, 2)
