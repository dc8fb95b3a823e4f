/* test_speculative.c: greedy speculative output is identical, token for token, to greedy
 * decoding with the verifier alone: a representative set of drafter/verifier pairs and tree
 * modes (the whole matrix is tests/full_speculative.c). */
#include <criterion/criterion.h>

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
