/* ref_forward.h: an independent float64 forward pass of the published architectures, the oracle
 * of tests/test_arch.c. Written from the Hugging Face transformers modeling code (modeling_llama,
 * _qwen2, _qwen3, _gemma2, _phi3, _mistral and modeling_rope_utils: default, llama3, yarn and
 * longrope frequencies), not from src/forward.c: direct powers instead of ggml's running product,
 * rotate_half for NEOX models, masks as HF builds them, every sum in double. It reads the GGUF
 * conventions the converters establish: weights [n_in, n_out] with y = W x, llama Q/K permuted so
 * that adjacent pairs rotate, Gemma's norm weights stored as 1 + w. F32 tensors only. */
#ifndef ARBOR_TEST_REF_FORWARD_H
#define ARBOR_TEST_REF_FORWARD_H

#include <stdint.h>

typedef struct rf_model rf_model;

/* NULL (with a message on stderr) when the file cannot be read or is not all F32. */
rf_model *rf_load(const char *path);
void rf_free(rf_model *m);
int32_t rf_n_vocab(const rf_model *m);
/* Logits [n][n_vocab] of a causal sequence at positions 0 .. n-1. n_ctx is the context size the
 * engine runs with (Phi-3 longrope picks its long factors when it exceeds the original context;
 * HF decides by the current sequence length instead, which a KV cache cannot follow). */
void rf_forward(const rf_model *m, const int32_t *tokens, int n, int n_ctx, double *logits);

#endif
