/* test_speculative.c: greedy speculative output is identical, token for token, to greedy
 * decoding with the verifier alone: a representative set of drafter/verifier pairs and tree
 * modes (the whole matrix is tests/full_speculative.c). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/model.h"
#include "tests/util/refs.h"
#include "tests/util/arch_models.h"
#include "tests/util/gguf_build.h"
#include "tests/util/spec_check.h"

static const char *const trees[] = {"chain:4",  "static:4x2x1",   "dynamic:16",
                                    "adaptive", "adaptive@cheap", "dynamic:60"};
#define N_TREES (int)(sizeof trees / sizeof trees[0])

Test(speculative, real_f32_pair, .timeout = 600) {
    spec_check_pair("llama2xs-260K-f32.gguf", "stories260K-f32.gguf", trees, N_TREES, 120);
}
Test(speculative, real_q4_0_verifier, .timeout = 600) {
    spec_check_pair("llama2xs-260K-q4_0.gguf", "stories260K-f32.gguf", trees, N_TREES, 120);
}
Test(speculative, synth_q8_0_drafts_q4_k_m, .timeout = 600) {
    spec_check_pair("synth-llama-q4_k_m.gguf", "synth-llama-q8_0.gguf", trees, 5, 100);
}
Test(speculative, qwen2_f32_drafts_q8_0, .timeout = 600) {
    spec_check_pair("synth-qwen2-q8_0.gguf", "synth-qwen2-f32.gguf", trees, 5, 100);
}
Test(speculative, unrelated_drafter, .timeout = 600) {
    spec_check_unrelated("synth-llama-q5_1.gguf", "stories260K-f32.gguf", trees, 2, 80);
}
Test(speculative, self_drafting, .timeout = 600) {
    spec_check_pair("synth-llama-q4_0.gguf", "self:2", trees, 5, 100);
    spec_check_pair("llama2xs-260K-q8_0.gguf", "self:1", trees, 5, 100);
}
Test(speculative, prompt_lookup, .timeout = 600) {
    spec_check_pair("stories260K-f32.gguf", "lookup", trees, N_TREES, 150);
}

/* Every architecture (synthetic models written at run time): a one-layer drafter cut from the
 * verifier, the verifier's own first layer, and prompt lookup. */
static void check_arch(const char *name) {
    static const char *const arch_trees[] = {"chain:3", "static:3x2x1", "dynamic:12",
                                             "adaptive@cheap"};
    char *dir = gb_tmpdir(), *verifier, *drafter;
    arch_model_pair(name, dir, &verifier, &drafter);
    spec_check_pair(verifier, drafter, arch_trees, 4, 40);
    spec_check_pair(verifier, "self:1", arch_trees, 4, 40);
    /* random weights rarely repeat themselves: lookup is checked for exactness only */
    spec_check_unrelated(verifier, "lookup", arch_trees, 2, 40);
    free(verifier);
    free(drafter);
    gb_rmdir(dir);
    free(dir);
}
Test(speculative, arch_llama3, .timeout = 600) { check_arch("llama3"); }
Test(speculative, arch_mistral, .timeout = 600) { check_arch("mistral"); }
Test(speculative, arch_qwen2_yarn, .timeout = 600) { check_arch("qwen2-yarn"); }
Test(speculative, arch_qwen3, .timeout = 600) { check_arch("qwen3"); }
Test(speculative, arch_gemma2, .timeout = 600) { check_arch("gemma2"); }
Test(speculative, arch_phi3, .timeout = 600) { check_arch("phi3"); }
Test(speculative, arch_phi3_longrope, .timeout = 600) { check_arch("phi3-longrope"); }

/* Drafter and verifier whose vocabularies differ only in trailing padding rows (unused
 * "[PAD<id>]" tokens, as Qwen2.5 0.5B and 7B differ): 300 rows apart, both ways round; the
 * larger model's random head makes padding ids likely picks, so the drafter must neither
 * propose an id the verifier lacks nor fail on one the verifier commits. 200 real extra tokens
 * are still refused, naming the first. */
static char *padded_model(const char *dir, const char *name, int32_t n_layer, int32_t pads,
                          int32_t extra) {
    static char texts[200][16];
    const char *ex[200];
    for (int i = 0; i < extra; i++) {
        snprintf(texts[i], sizeof texts[i], "<x%d>", i);
        ex[i] = texts[i];
    }
    ar_synth_params p = arch_model_params("qwen2", -1);
    p.arch = "llama";
    p.shape.n_layer = n_layer;
    p.eps = 0.3f;
    p.eps_layer = 1;
    p.n_pad_tokens = pads;
    p.extra_tokens = ex;
    p.n_extra_tokens = extra;
    char *path = malloc(strlen(dir) + strlen(name) + 8);
    sprintf(path, "%s/%s", dir, name);
    cr_assert_eq(ar_synth_write(&p, path), AR_OK, "%s", ar_last_error());
    return path;
}

Test(speculative, padded_vocabularies, .timeout = 600) {
    static const char *const t[] = {"chain:3", "dynamic:12"};
    char *dir = gb_tmpdir();
    char *big = padded_model(dir, "big.gguf", 2, 300, 0);
    char *small = padded_model(dir, "small.gguf", 1, 0, 0);
    char *big_v = padded_model(dir, "big-v.gguf", 2, 0, 0);
    char *big_d = padded_model(dir, "big-d.gguf", 1, 300, 0);
    spec_run plain;
    spec_generate(big, NULL, NULL, "Once upon a time", 40, 0.0f, 0, &plain);
    int padding_ids = 0;
    for (int i = 0; i < plain.n; i++) padding_ids += plain.tokens[i] >= 512;
    cr_assert_gt(padding_ids, 0, "the verifier never commits a padding id: nothing is tested");
    spec_check_pair(big, small, t, 2, 40);   /* verifier 812 ids, drafter 512 */
    spec_check_pair(big_v, big_d, t, 2, 40); /* verifier 512 ids, drafter 812 */
    char *real = padded_model(dir, "real.gguf", 1, 0, 200);
    arbor_model *tm = NULL, *dm = NULL;
    cr_assert_eq(arbor_model_load(big_v, arbor_model_default_params(), &tm), ARBOR_OK);
    cr_assert_eq(arbor_model_load(real, arbor_model_default_params(), &dm), ARBOR_OK);
    arbor_context_params cp = arbor_context_default_params();
    cp.draft_kind = ARBOR_DRAFT_MODEL;
    cp.draft_model = dm;
    arbor_context *ctx = NULL;
    cr_assert_eq(arbor_context_create(tm, cp, &ctx), ARBOR_ERR_INCOMPATIBLE);
    cr_assert(strstr(arbor_last_error(), "vocabularies differ at token 512: the draft has '<x0>'"),
              "%s", arbor_last_error());
    arbor_model_free(dm);
    arbor_model_free(tm);
    free(big);
    free(small);
    free(big_v);
    free(big_d);
    free(real);
    gb_rmdir(dir);
    free(dir);
}

/* A drafter cut from the verifier (its first layer, embedding and head, byte for byte) is
 * recognised and drafts with the verifier's own weights: the same tokens and the same trees as
 * the separate model (one copy in memory: no drafter weights in the budget). A drafter of the
 * same shape cut from other weights, the verifier itself or a real pair are not cuts. */
Test(speculative, cut_drafter_shares_the_verifiers_layers, .timeout = 600) {
    char *dir = gb_tmpdir(), *verifier, *drafter;
    arch_model_pair("llama3", dir, &verifier, &drafter);
    ar_synth_params p = arch_model_params("llama3", -1);
    p.eps = 0.3f;
    p.eps_layer = 1;
    p.seed += 1;
    char other[4096], other_d[4096];
    snprintf(other, sizeof other, "%s/other.gguf", dir);
    snprintf(other_d, sizeof other_d, "%s/other-d.gguf", dir);
    cr_assert_eq(ar_synth_write(&p, other), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_synth_drafter(other, 1, other_d), AR_OK, "%s", ar_last_error());
    ar_model *v = NULL, *d = NULL, *od = NULL, *real_v = NULL, *real_d = NULL;
    const ar_model_params mp = ar_model_default_params();
    cr_assert_eq(ar_model_load(verifier, mp, &v), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_model_load(drafter, mp, &d), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_model_load(other_d, mp, &od), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_model_load(fixture("models/llama2xs-260K-f32.gguf"), mp, &real_v), AR_OK);
    cr_assert_eq(ar_model_load(fixture("models/stories260K-f32.gguf"), mp, &real_d), AR_OK);
    cr_assert(ar_model_is_cut_of(d, v));
    cr_assert(!ar_model_is_cut_of(v, d), "more layers than the verifier");
    cr_assert(!ar_model_is_cut_of(v, v), "not fewer layers");
    cr_assert(!ar_model_is_cut_of(od, v), "same names and shapes, other bytes");
    cr_assert(!ar_model_is_cut_of(real_d, real_v), "a real pair");
    ar_model_free(v);
    ar_model_free(d);
    ar_model_free(od);
    ar_model_free(real_v);
    ar_model_free(real_d);

    arbor_model *tm = NULL, *dm = NULL;
    cr_assert_eq(arbor_model_load(verifier, arbor_model_default_params(), &tm), ARBOR_OK);
    cr_assert_eq(arbor_model_load(drafter, arbor_model_default_params(), &dm), ARBOR_OK);
    spec_run run[2];
    arbor_stats st[2];
    arbor_memory_info mi[2];
    for (int share = 0; share < 2; share++) {
        arbor_context_params cp = arbor_context_default_params();
        cp.n_threads = 2;
        cp.tree = "dynamic:12";
        cp.draft_kind = ARBOR_DRAFT_MODEL;
        cp.draft_model = dm;
        cp.draft_share = share;
        cp.mem_budget = 256u << 20; /* everything resident, and the memory accounted */
        arbor_context *ctx = NULL;
        cr_assert_eq(arbor_context_create(tm, cp, &ctx), ARBOR_OK, "%s", arbor_last_error());
        arbor_generate_params gp = arbor_generate_default_params();
        gp.n_predict = 48;
        gp.ignore_eos = true;
        memset(&run[share], 0, sizeof run[share]);
        cr_assert_eq(arbor_generate(ctx, "Once upon a time", &gp, spec_collect, &run[share]), ARBOR_OK,
                     "%s", arbor_last_error());
        arbor_get_stats(ctx, &st[share]);
        cr_assert_eq(arbor_context_get_memory(ctx, &mi[share]), ARBOR_OK);
        arbor_context_free(ctx);
    }
    cr_assert_eq(run[0].n, 48);
    cr_assert_eq(run[1].n, 48);
    cr_assert_arr_eq(run[0].tokens, run[1].tokens, 48 * sizeof(arbor_token));
    cr_assert_gt(st[0].n_accepted, 0, "the drafter never agreed: nothing is compared");
    cr_assert_eq(st[0].n_drafted, st[1].n_drafted, "the same trees");
    cr_assert_eq(st[0].n_accepted, st[1].n_accepted);
    cr_assert_gt(mi[0].drafter_weights, 0);
    cr_assert_eq(mi[1].drafter_weights, 0, "shared: no second copy");
    arbor_model_free(dm);
    arbor_model_free(tm);
    free(verifier);
    free(drafter);
    gb_rmdir(dir);
    free(dir);
}
