/* arch_models.h: the small synthetic models of every architecture the tests run (written at run
 * time by the repo's own GGUF writer, src/synth.c, into a temporary directory: no binary is
 * committed). Each has a feature that matters at short lengths: a window of 8, small soft-caps,
 * rope factors over a short original context. */
#ifndef ARBOR_TEST_ARCH_MODELS_H
#define ARBOR_TEST_ARCH_MODELS_H

#include <stdint.h>

#include "bench/synth.h"

/* The test models, in a fixed order: "llama3", "mistral", "qwen2", "qwen2-yarn", "qwen3",
 * "gemma2", "phi3", "phi3-longrope". */
extern const char *const arch_model_names[];
extern const int arch_model_count;

/* Synth parameters of model `name` (tiny shape, the 512-token vocabulary) in format `type`
 * (-1: F32). Aborts the test on an unknown name. */
ar_synth_params arch_model_params(const char *name, int type);
/* Writes model `name` into dir as <name>[-<suffix>].gguf and returns its path (free it). */
char *arch_model_write(const char *name, int type, const char *dir);
/* A verifier whose layers >= 1 are scaled by eps (src/synth.h) and its one-layer drafter. */
void arch_model_pair(const char *name, const char *dir, char **verifier, char **drafter);

#endif
