/* arch_models.c: the synthetic test models of every architecture (see arch_models.h). */
#include "arch_models.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refs.h"

const char *const arch_model_names[] = {"llama3", "mistral", "qwen2", "qwen2-yarn", "qwen3",
                                        "gemma2", "phi3",    "phi3-longrope"};
const int arch_model_count = (int)(sizeof arch_model_names / sizeof arch_model_names[0]);

ar_synth_params arch_model_params(const char *name, int type) {
    ar_synth_params p = ar_synth_default_params();
    p.shape = *ar_synth_preset("tiny"); /* 64 wide, FFN 172, 2 layers, 4 heads / 2 KV heads */
    p.vocab_path = fixture("models/stories260K-f32.gguf");
    p.type = type;
    p.seed = 16;
    if (!strcmp(name, "llama3")) {
        p.arch = "llama3";
        p.rope_orig_ctx = 16; /* most frequencies are divided at these lengths */
    } else if (!strcmp(name, "mistral")) {
        p.arch = "mistral";
        p.sliding_window = 8;
    } else if (!strcmp(name, "qwen2")) {
        p.arch = "qwen2";
    } else if (!strcmp(name, "qwen2-yarn")) {
        p.arch = "qwen2";
        p.rope_scaling = "yarn";
        p.rope_factor = 4.0f;
        p.rope_orig_ctx = 64;
    } else if (!strcmp(name, "qwen3")) {
        p.arch = "qwen3";
        p.shape.head_dim = 32; /* twice n_embd / n_head, as Qwen3 0.6B has it */
    } else if (!strcmp(name, "gemma2")) {
        p.arch = "gemma2";
        p.shape.head_dim = 32;
        p.sliding_window = 8;
        p.attn_softcap = 1.5f;
        p.final_softcap = 4.0f;
    } else if (!strcmp(name, "phi3")) {
        p.arch = "phi3";
        p.sliding_window = 8;
    } else if (!strcmp(name, "phi3-longrope")) {
        p.arch = "phi3";
        p.shape.n_ctx = 1024;
        p.rope_scaling = "longrope";
        p.rope_orig_ctx = 256; /* contexts above 256 take the long factors */
    } else {
        cr_assert_fail("unknown test model %s", name);
    }
    return p;
}

char *arch_model_write(const char *name, int type, const char *dir) {
    ar_synth_params p = arch_model_params(name, type);
    char *path = malloc(strlen(dir) + strlen(name) + 32);
    sprintf(path, "%s/%s%s%s.gguf", dir, name, type >= 0 ? "-" : "",
            type >= 0 ? ar_type_get((ar_type)type)->name : "");
    cr_assert_eq(ar_synth_write(&p, path), AR_OK, "synth %s: %s", name, ar_last_error());
    return path;
}

void arch_model_pair(const char *name, const char *dir, char **verifier, char **drafter) {
    ar_synth_params p = arch_model_params(name, -1);
    p.eps = 0.3f; /* the drafter agrees often, not always */
    p.eps_layer = 1;
    *verifier = malloc(strlen(dir) + strlen(name) + 32);
    *drafter = malloc(strlen(dir) + strlen(name) + 32);
    sprintf(*verifier, "%s/%s-verifier.gguf", dir, name);
    sprintf(*drafter, "%s/%s-drafter.gguf", dir, name);
    cr_assert_eq(ar_synth_write(&p, *verifier), AR_OK, "synth %s: %s", name, ar_last_error());
    cr_assert_eq(ar_synth_drafter(*verifier, 1, *drafter), AR_OK, "drafter %s: %s", name,
                 ar_last_error());
}
