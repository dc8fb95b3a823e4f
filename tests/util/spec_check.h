/* spec_check.h: runs greedy (or seeded sampled) generation through the public API, plain and
 * speculative, and compares the token streams. Shared by the CI and the `full` test sets. */
#ifndef ARBOR_TEST_SPEC_CHECK_H
#define ARBOR_TEST_SPEC_CHECK_H

#include "arbor.h"

typedef struct spec_run {
    arbor_token tokens[512];
    int n;
    arbor_stats stats;
} spec_run;

/* arbor_generate's token callback that appends each token to a spec_run (user). */
bool spec_collect(void *user, arbor_token token, const char *text, size_t len);

/* Generates n tokens after `prompt` with verifier `target` (a fixture model file name, or an
 * absolute path) and the drafter `draft` (NULL: plain; "lookup"; "self:M"; or a fixture model
 * file name or absolute path) in tree mode `tree`, or "adaptive@cheap": the adaptive scheduler
 * with a fixed cost table in which drafting is cheap and verifying a row costs a tenth of a pass
 * (so it must speculate). Asserts success. */
void spec_generate(const char *target, const char *draft, const char *tree, const char *prompt,
                   int n, float temp, uint64_t seed, spec_run *out);
/* Asserts speculative greedy output == plain greedy output for each tree mode, and that
 * speculation happened: verifications in every mode but "adaptive" (whose scheduler may rightly
 * decode plainly), and accepted draft tokens over the pair's runs. */
void spec_check_pair(const char *target, const char *draft, const char *const *trees, int n_trees,
                     int n_tokens);
/* The same for a drafter unrelated to its verifier: no acceptance is expected. */
void spec_check_unrelated(const char *target, const char *draft, const char *const *trees,
                          int n_trees, int n_tokens);

#endif
