/* sampling.h: turning logits into the next token. The sampling transforms (repetition penalty,
 * top-k, top-p, min-p, temperature) produce an explicit probability distribution, so speculative
 * acceptance can use the very distribution plain sampling draws from. A seeded PRNG makes runs
 * reproducible. */
#ifndef ARBOR_SAMPLING_H
#define ARBOR_SAMPLING_H

#include "util.h"

typedef struct ar_sampler_params {
    float temp;            /* <= 0: greedy (argmax, ties to the lowest id) */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* how many recent tokens the penalty looks at; -1: all */
    uint64_t seed;
} ar_sampler_params;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1 (off) over
 * the last 64 tokens, seed 0. */
ar_sampler_params ar_sampler_default_params(void);

/* PRNG: xoshiro256** seeded through splitmix64; the same seed gives the same stream anywhere. */
typedef struct ar_rng {
    uint64_t s[4];
} ar_rng;
void ar_rng_seed(ar_rng *r, uint64_t seed);
uint64_t ar_rng_next(ar_rng *r);
double ar_rng_uniform(ar_rng *r); /* [0, 1), 53 random bits */

/* A sparse distribution: n ids with probabilities p (summing to 1), sorted by p descending,
 * ties by lower id. Capacity is the vocabulary size. */
typedef struct ar_dist {
    int32_t n;
    int32_t cap;
    int32_t *id;
    float *p;
    float *scratch; /* internal: n_vocab floats */
} ar_dist;
ar_status ar_dist_init(ar_dist *d, int32_t n_vocab);
/* Bytes a distribution over n_vocab tokens holds. */
static inline uint64_t ar_dist_bytes(int32_t n_vocab) {
    return (uint64_t)n_vocab * (sizeof(int32_t) + 2 * sizeof(float));
}
void ar_dist_free(ar_dist *d);
/* Probability of `id` in d (0 when absent). O(n). */
float ar_dist_prob(const ar_dist *d, int32_t id);

/* Index of the largest value, ties to the lowest index. */
int32_t ar_argmax(const float *x, int32_t n);
/* The same, or -1 when any value is NaN or +inf (logits a model should never produce). */
int32_t ar_argmax_finite(const float *x, int32_t n);

/* The distribution the verifier samples from given `logits` and the recent `history` (for the
 * repetition penalty): the transforms of `p` in llama.cpp's default order (penalties, top-k,
 * top-p, min-p, temperature, softmax). temp <= 0 gives a point mass on the argmax. */
ar_status ar_sampler_dist(const ar_sampler_params *p, const float *logits, int32_t n_vocab,
                          const int32_t *history, int32_t n_history, ar_dist *out);
/* Draws one id from d (inverse CDF over d's order with one uniform draw). */
int32_t ar_dist_sample(const ar_dist *d, ar_rng *rng);

#endif
