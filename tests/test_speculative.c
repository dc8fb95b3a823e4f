/* test_speculative.c: greedy speculative output is identical, token for token, to greedy
 * decoding with the verifier alone: a representative set of drafter/verifier pairs and tree
 * modes (the whole matrix is tests/full_speculative.c). */
#include <criterion/criterion.h>

#include <stdlib.h>

#include "tests/util/arch_models.h"
#include "tests/util/gguf_build.h"
#include "tests/util/spec_check.h"

static const char *const trees[] = {"chain:4", "static:4x2x1", "dynamic:16", "adaptive", "dynamic:60"};
#define N_TREES (int)(sizeof trees / sizeof trees[0])

Test(speculative, real_f32_pair, .timeout = 600) {
    spec_check_pair("llama2xs-260K-f32.gguf", "stories260K-f32.gguf", trees, N_TREES, 120);
}
Test(speculative, real_q4_0_verifier, .timeout = 600) {
    spec_check_pair("llama2xs-260K-q4_0.gguf", "stories260K-f32.gguf", trees, N_TREES, 120);
}
Test(speculative, synth_q8_0_drafts_q4_k_m, .timeout = 600) {
    spec_check_pair("synth-llama-q4_k_m.gguf", "synth-llama-q8_0.gguf", trees, 4, 100);
}
Test(speculative, qwen2_f32_drafts_q8_0, .timeout = 600) {
    spec_check_pair("synth-qwen2-q8_0.gguf", "synth-qwen2-f32.gguf", trees, 4, 100);
}
Test(speculative, unrelated_drafter, .timeout = 600) {
    spec_check_pair("synth-llama-q5_1.gguf", "stories260K-f32.gguf", trees, 2, 80);
}
Test(speculative, self_drafting, .timeout = 600) {
    spec_check_pair("synth-llama-q4_0.gguf", "self:2", trees, 4, 100);
    spec_check_pair("llama2xs-260K-q8_0.gguf", "self:1", trees, 4, 100);
}
Test(speculative, prompt_lookup, .timeout = 600) {
    spec_check_pair("stories260K-f32.gguf", "lookup", trees, N_TREES, 150);
}

/* Every architecture (synthetic models written at run time): a one-layer drafter cut from the
 * verifier, the verifier's own first layer, and prompt lookup. */
static void check_arch(const char *name) {
    static const char *const arch_trees[] = {"chain:3", "static:3x2x1", "dynamic:12"};
    char *dir = gb_tmpdir(), *verifier, *drafter;
    arch_model_pair(name, dir, &verifier, &drafter);
    spec_check_pair(verifier, drafter, arch_trees, 3, 40);
    spec_check_pair(verifier, "self:1", arch_trees, 3, 40);
    spec_check_pair(verifier, "lookup", arch_trees, 2, 40);
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
