/* full_speculative.c: the whole matrix of drafter/verifier pairs that share a tokenizer, every
 * tree mode, several budgets and long generations: greedy speculative output == greedy
 * verifier-only output. Label `full` (ctest -L full); tests/test_speculative.c is the CI subset. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "tests/util/spec_check.h"

static const char *const trees[] = {"chain:1", "chain:4", "chain:8", "static:2x2",
                                    "static:4x2x2x1", "static:8x1x1x1x1", "dynamic:4",
                                    "dynamic:16", "dynamic:32", "dynamic:63", "adaptive"};
#define N_TREES (int)(sizeof trees / sizeof trees[0])

static const char *const synth[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
                                    "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_m"};
#define N_SYNTH (int)(sizeof synth / sizeof synth[0])

Test(full_speculative, real_pairs, .timeout = 3600) {
    const char *verifiers[] = {"llama2xs-260K-f32.gguf", "llama2xs-260K-q8_0.gguf",
                               "llama2xs-260K-q4_0.gguf"};
    for (int v = 0; v < 3; v++) {
        /* 200: the longer prompt and the tokens fit llama2xs-260K's context of 256 */
        spec_check_pair(verifiers[v], "stories260K-f32.gguf", trees, N_TREES, 200);
        spec_check_pair("stories260K-f32.gguf", verifiers[v], trees, N_TREES, 200);
    }
}

Test(full_speculative, synth_llama_every_format_pair, .timeout = 7200) {
    const char *few[] = {"chain:4", "static:4x2x1", "dynamic:16", "adaptive"};
    for (int v = 0; v < N_SYNTH; v++)
        for (int d = 0; d < N_SYNTH; d++) {
            if (v == d) continue;
            char vf[64], df[64];
            snprintf(vf, sizeof vf, "synth-llama-%s.gguf", synth[v]);
            snprintf(df, sizeof df, "synth-llama-%s.gguf", synth[d]);
            spec_check_pair(vf, df, few, 4, 100);
        }
}

Test(full_speculative, qwen2_both_ways, .timeout = 3600) {
    spec_check_pair("synth-qwen2-q8_0.gguf", "synth-qwen2-f32.gguf", trees, N_TREES, 200);
    spec_check_pair("synth-qwen2-f32.gguf", "synth-qwen2-q8_0.gguf", trees, N_TREES, 200);
}

Test(full_speculative, self_and_lookup_everywhere, .timeout = 3600) {
    for (int v = 0; v < N_SYNTH; v++) {
        char vf[64];
        snprintf(vf, sizeof vf, "synth-llama-%s.gguf", synth[v]);
        for (int m = 1; m <= 3; m++) {
            char self[16];
            snprintf(self, sizeof self, "self:%d", m);
            spec_check_pair(vf, self, trees, N_TREES, 100);
        }
        spec_check_pair(vf, "lookup", trees, N_TREES, 100);
    }
}
