/* test_sampling.c: the PRNG against known vectors, each sampling transform on hand-made logits,
 * the whole chain against a plain sort-everything reference, and ar_dist_sample's frequencies. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "src/core/sampling.h"

/* ---- helpers ---- */

static ar_sampler_params plain_params(void) {
    /* everything off, temperature 1: the softmax of the logits */
    return (ar_sampler_params){.temp = 1.0f,
                               .top_k = 0,
                               .top_p = 1.0f,
                               .min_p = 0.0f,
                               .repeat_penalty = 1.0f,
                               .repeat_last_n = 64,
                               .seed = 0};
}

/* Runs the sampler and checks the result is exactly the ids `ids` with probabilities `p`. */
static void expect_dist(const ar_sampler_params *sp, const float *logits, int32_t n_vocab,
                        const int32_t *hist, int32_t n_hist, int32_t n, const int32_t *ids,
                        const double *p) {
    ar_dist d;
    cr_assert_eq(ar_dist_init(&d, n_vocab), AR_OK);
    cr_assert_eq(ar_sampler_dist(sp, logits, n_vocab, hist, n_hist, &d), AR_OK, "%s",
                 ar_last_error());
    cr_assert_eq(d.n, n, "kept %d tokens, expected %d", d.n, n);
    for (int32_t i = 0; i < n; i++) {
        cr_expect_eq(d.id[i], ids[i], "entry %d: id %d, expected %d", i, d.id[i], ids[i]);
        cr_expect(fabs(d.p[i] - p[i]) < 1e-6, "entry %d: p %.9f, expected %.9f", i, d.p[i], p[i]);
    }
    ar_dist_free(&d);
}

/* Pearson's statistic of observed counts against expected probabilities. */
static double chi_square(const long *observed, const double *prob, int n, long total) {
    double x2 = 0.0;
    for (int i = 0; i < n; i++) {
        double e = prob[i] * (double)total;
        x2 += (observed[i] - e) * (observed[i] - e) / e;
    }
    return x2;
}

/* ---- PRNG ---- */

Test(rng, xoshiro256starstar_reference_vector) {
    /* from state {1, 2, 3, 4}: the first outputs of the reference xoshiro256** (by hand: the
     * first is rotl(2 * 5, 7) * 9 = 1280 * 9 = 11520; the second rotl(0 * 5, 7) * 9 = 0) */
    ar_rng r = {{1, 2, 3, 4}};
    cr_expect_eq(ar_rng_next(&r), 11520ull);
    cr_expect_eq(ar_rng_next(&r), 0ull);
    cr_expect_eq(ar_rng_next(&r), 1509978240ull);
    cr_expect_eq(ar_rng_next(&r), 1215971899390074240ull);
}

Test(rng, splitmix64_seeding) {
    /* splitmix64 from 0 gives the published test vector 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4,
     * 0x06c45d188009454f, 0xf88bb8a8724c81ec: the four state words */
    ar_rng r;
    ar_rng_seed(&r, 0);
    cr_expect_eq(r.s[0], 0xe220a8397b1dcdafull);
    cr_expect_eq(r.s[1], 0x6e789e6aa1b965f4ull);
    cr_expect_eq(r.s[2], 0x06c45d188009454full);
    cr_expect_eq(r.s[3], 0xf88bb8a8724c81ecull);
    /* the first outputs, computed once with an independent (Python, big-integer) implementation */
    cr_expect_eq(ar_rng_next(&r), 0x99ec5f36cb75f2b4ull);
    cr_expect_eq(ar_rng_next(&r), 0xbf6e1f784956452aull);
    cr_expect_eq(ar_rng_next(&r), 0x1a5f849d4933e6e0ull);
    ar_rng_seed(&r, 42);
    cr_expect_eq(ar_rng_next(&r), 0x15780b2e0c2ec716ull);
    cr_expect_eq(ar_rng_next(&r), 0x6104d9866d113a7eull);
}

Test(rng, uniform_is_53_top_bits_and_reproducible) {
    ar_rng a, b;
    ar_rng_seed(&a, 42);
    ar_rng_seed(&b, 42);
    /* 0x15780b2e0c2ec716 >> 11 scaled by 2^-53 */
    double u = ar_rng_uniform(&a);
    cr_expect_eq(u, (double)(0x15780b2e0c2ec716ull >> 11) * 0x1.0p-53);
    cr_expect(fabs(u - 0.08386297105988216) < 1e-15);
    ar_rng_next(&b);
    for (int i = 0; i < 1000; i++) {
        double x = ar_rng_uniform(&a);
        cr_assert(x >= 0.0 && x < 1.0);
        cr_assert_eq(x, (double)(ar_rng_next(&b) >> 11) * 0x1.0p-53);
    }
}

/* ---- the transforms ---- */

Test(sampler, greedy_point_mass_ties_to_lowest_id) {
    float logits[] = {1.0f, 3.0f, 3.0f, 2.0f};
    ar_sampler_params sp = plain_params();
    sp.temp = 0.0f;
    int32_t ids[] = {1};
    double p[] = {1.0};
    expect_dist(&sp, logits, 4, NULL, 0, 1, ids, p);
    /* the penalty comes first: 3 / 2 = 1.5 for token 1 moves the argmax to token 2 */
    sp.repeat_penalty = 2.0f;
    int32_t hist[] = {1};
    int32_t ids2[] = {2};
    expect_dist(&sp, logits, 4, hist, 1, 1, ids2, p);
    cr_expect_eq(ar_argmax(logits, 4), 1);
    float nan_first[] = {NAN, 1.0f, 1.0f};
    cr_expect_eq(ar_argmax(nan_first, 3), 1);
}

Test(sampler, softmax_and_temperature) {
    float logits[] = {0.0f, logf(2.0f)};
    ar_sampler_params sp = plain_params();
    int32_t ids[] = {1, 0};
    double p1[] = {2.0 / 3, 1.0 / 3};
    expect_dist(&sp, logits, 2, NULL, 0, 2, ids, p1);
    sp.temp = 0.5f; /* logits doubled: 4 : 1 */
    double p_half[] = {0.8, 0.2};
    expect_dist(&sp, logits, 2, NULL, 0, 2, ids, p_half);
    sp.temp = 2.0f; /* logits halved: sqrt(2) : 1 */
    double p_two[] = {sqrt(2.0) / (1 + sqrt(2.0)), 1 / (1 + sqrt(2.0))};
    expect_dist(&sp, logits, 2, NULL, 0, 2, ids, p_two);
}

Test(sampler, repeat_penalty_once_per_distinct_token) {
    float logits[] = {2.0f, -1.0f, 0.5f, 0.0f, -3.0f};
    int32_t hist[] = {0, 1, 1, 3};
    ar_sampler_params sp = plain_params();
    sp.repeat_penalty = 2.0f;
    sp.repeat_last_n = -1;
    /* positive logits divided, non-positive multiplied, token 1 penalised once although it
     * occurs twice: {1, -2, 0.5, 0, -3} */
    double e[] = {exp(1.0), exp(-2.0), exp(0.5), exp(0.0), exp(-3.0)};
    double s = e[0] + e[1] + e[2] + e[3] + e[4];
    int32_t ids[] = {0, 2, 3, 1, 4};
    double p[] = {e[0] / s, e[2] / s, e[3] / s, e[1] / s, e[4] / s};
    expect_dist(&sp, logits, 5, hist, 4, 5, ids, p);

    /* only the last two history tokens {1, 3}: {2, -2, 0.5, 0, -3} */
    sp.repeat_last_n = 2;
    double f[] = {exp(2.0), exp(-2.0), exp(0.5), exp(0.0), exp(-3.0)};
    double t = f[0] + f[1] + f[2] + f[3] + f[4];
    double p2[] = {f[0] / t, f[2] / t, f[3] / t, f[1] / t, f[4] / t};
    expect_dist(&sp, logits, 5, hist, 4, 5, ids, p2);

    /* a window of 0 turns it off */
    sp.repeat_last_n = 0;
    double g[] = {exp(2.0), exp(-1.0), exp(0.5), exp(0.0), exp(-3.0)};
    double u = g[0] + g[1] + g[2] + g[3] + g[4];
    int32_t ids3[] = {0, 2, 3, 1, 4};
    double p3[] = {g[0] / u, g[2] / u, g[3] / u, g[1] / u, g[4] / u};
    expect_dist(&sp, logits, 5, hist, 4, 5, ids3, p3);
}

Test(sampler, top_k_keeps_best_ties_to_lower_id) {
    float logits[] = {1.0f, 5.0f, 5.0f, 5.0f, 2.0f, -1.0f};
    ar_sampler_params sp = plain_params();
    sp.top_k = 2;
    int32_t ids[] = {1, 2};
    double p[] = {0.5, 0.5};
    expect_dist(&sp, logits, 6, NULL, 0, 2, ids, p);
    sp.top_k = 5;
    double e5 = exp(5.0), e2 = exp(2.0), e1 = exp(1.0);
    double s = 3 * e5 + e2 + e1;
    int32_t ids5[] = {1, 2, 3, 4, 0};
    double p5[] = {e5 / s, e5 / s, e5 / s, e2 / s, e1 / s};
    expect_dist(&sp, logits, 6, NULL, 0, 5, ids5, p5);
}

Test(sampler, top_p_smallest_prefix_reaching_p) {
    float logits[] = {logf(0.1f), logf(0.4f), logf(0.2f), logf(0.3f)};
    ar_sampler_params sp = plain_params();
    sp.top_p = 0.65f; /* 0.4, then 0.7 >= 0.65 */
    int32_t ids[] = {1, 3, 2, 0};
    double p2[] = {0.4 / 0.7, 0.3 / 0.7};
    expect_dist(&sp, logits, 4, NULL, 0, 2, ids, p2);
    sp.top_p = 0.35f; /* the first alone reaches it */
    double p1[] = {1.0};
    expect_dist(&sp, logits, 4, NULL, 0, 1, ids, p1);
    sp.top_p = 0.0f; /* at least one token */
    expect_dist(&sp, logits, 4, NULL, 0, 1, ids, p1);
    sp.top_p = 0.95f;
    double p4[] = {0.4, 0.3, 0.2, 0.1};
    expect_dist(&sp, logits, 4, NULL, 0, 4, ids, p4);
}

Test(sampler, min_p_relative_to_the_best) {
    float logits[] = {logf(0.1f), logf(0.4f), logf(0.2f), logf(0.3f)};
    ar_sampler_params sp = plain_params();
    sp.min_p = 0.55f; /* keep p >= 0.22 */
    int32_t ids[] = {1, 3, 2, 0};
    double p2[] = {0.4 / 0.7, 0.3 / 0.7};
    expect_dist(&sp, logits, 4, NULL, 0, 2, ids, p2);
    sp.min_p = 0.45f; /* keep p >= 0.18 */
    double p3[] = {0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9};
    expect_dist(&sp, logits, 4, NULL, 0, 3, ids, p3);
    sp.min_p = 2.0f; /* above the best: the best alone */
    double p1[] = {1.0};
    expect_dist(&sp, logits, 4, NULL, 0, 1, ids, p1);
}

Test(sampler, cut_boundaries_are_inclusive) {
    /* four equal logits: p = 0.25 exactly, so the running sum hits 0.5 exactly after two */
    float flat[] = {0.0f, 0.0f, 0.0f, 0.0f};
    ar_sampler_params sp = plain_params();
    sp.top_p = 0.5f;
    int32_t ids[] = {0, 1};
    double p[] = {0.5, 0.5};
    expect_dist(&sp, flat, 4, NULL, 0, 2, ids, p);
    /* min-p 1: the threshold is the best logit itself, which every tied best token meets */
    float two_best[] = {1.0f, 1.0f, 0.0f};
    sp = plain_params();
    sp.min_p = 1.0f;
    expect_dist(&sp, two_best, 3, NULL, 0, 2, ids, p);
}

Test(sampler, truncation_happens_before_temperature) {
    /* top-p on the temperature-1 probabilities keeps {0.5, 0.3}; applied after temperature 0.1 it
     * would keep only the first (0.994) */
    float logits[] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    ar_sampler_params sp = plain_params();
    sp.top_p = 0.75f;
    sp.temp = 0.1f;
    double a = pow(0.5, 10), b = pow(0.3, 10);
    int32_t ids[] = {0, 1};
    double p[] = {a / (a + b), b / (a + b)};
    expect_dist(&sp, logits, 3, NULL, 0, 2, ids, p);
    /* min-p likewise: 0.5 keeps p >= 0.25 at temperature 1 */
    sp.top_p = 1.0f;
    sp.min_p = 0.5f;
    expect_dist(&sp, logits, 3, NULL, 0, 2, ids, p);
}

Test(sampler, underflowing_tokens_are_dropped) {
    float logits[] = {0.0f, -200.0f, -INFINITY};
    ar_sampler_params sp = plain_params();
    int32_t ids[] = {0};
    double p[] = {1.0};
    expect_dist(&sp, logits, 3, NULL, 0, 1, ids, p);
}

Test(sampler, bad_input_is_an_error) {
    ar_dist d;
    cr_assert_eq(ar_dist_init(&d, 4), AR_OK);
    ar_sampler_params sp = ar_sampler_default_params();
    float nan_logits[] = {0.0f, NAN, 1.0f, 2.0f};
    cr_expect_eq(ar_sampler_dist(&sp, nan_logits, 4, NULL, 0, &d), AR_ERR_INVALID_ARG);
    cr_expect(strstr(ar_last_error(), "logit 1") != NULL, "%s", ar_last_error());
    float inf_logits[] = {0.0f, INFINITY, 1.0f, 2.0f};
    cr_expect_eq(ar_sampler_dist(&sp, inf_logits, 4, NULL, 0, &d), AR_ERR_INVALID_ARG);
    float dead[] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    cr_expect_eq(ar_sampler_dist(&sp, dead, 4, NULL, 0, &d), AR_ERR_INVALID_ARG);
    float ok[] = {0.0f, 1.0f, 2.0f, 3.0f};
    cr_expect_eq(ar_sampler_dist(&sp, ok, 5, NULL, 0, &d), AR_ERR_INVALID_ARG); /* over capacity */
    sp.repeat_penalty = 1.1f;
    int32_t bad_hist[] = {0, 7};
    cr_expect_eq(ar_sampler_dist(&sp, ok, 4, bad_hist, 2, &d), AR_ERR_INVALID_ARG);
    sp.repeat_penalty = 0.0f;
    cr_expect_eq(ar_sampler_dist(&sp, ok, 4, NULL, 0, &d), AR_ERR_INVALID_ARG);
    sp.repeat_penalty = 1.0f;
    sp.temp = NAN;
    cr_expect_eq(ar_sampler_dist(&sp, ok, 4, NULL, 0, &d), AR_ERR_INVALID_ARG);
    ar_dist_free(&d);
    cr_expect_eq(ar_dist_init(&d, 0), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_dist_init(&d, -5), AR_ERR_INVALID_ARG);
}

/* ---- the chain against a reference that sorts everything with qsort ---- */

static const float *ref_logits;
static int ref_cmp(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (ref_logits[i] != ref_logits[j]) return ref_logits[i] > ref_logits[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* The transforms written the obvious way: sort all, cut, cut, softmax (in double). */
static int32_t reference_dist(const ar_sampler_params *sp, const float *logits, int32_t n_vocab,
                              int32_t *ids, double *p) {
    for (int32_t i = 0; i < n_vocab; i++) ids[i] = i;
    ref_logits = logits;
    qsort(ids, (size_t)n_vocab, sizeof *ids, ref_cmp);
    int32_t n = n_vocab;
    if (sp->top_k > 0 && sp->top_k < n) n = sp->top_k;
    if (sp->top_p < 1.0f) {
        /* llama.cpp's float running sum: with 40 tied top tokens the sum after 38 of them is
         * 0.94999963f, short of 0.95, so llama.cpp keeps 39; in exact arithmetic it would be 38 */
        float s = 0.0f, cum = 0.0f;
        for (int32_t i = 0; i < n; i++) s += expf(logits[ids[i]] - logits[ids[0]]);
        for (int32_t i = 0; i < n; i++) {
            cum += expf(logits[ids[i]] - logits[ids[0]]) / s;
            if (cum >= sp->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (sp->min_p > 0.0f) {
        int32_t m = 1;
        while (m < n && logits[ids[m]] >= logits[ids[0]] + logf(sp->min_p)) m++;
        n = m;
    }
    double s = 0.0;
    for (int32_t i = 0; i < n; i++) s += exp(((double)logits[ids[i]] - logits[ids[0]]) / sp->temp);
    for (int32_t i = 0; i < n; i++)
        p[i] = exp(((double)logits[ids[i]] - logits[ids[0]]) / sp->temp) / s;
    return n;
}

static void compare_with_reference(const ar_sampler_params *sp, const float *logits,
                                   int32_t n_vocab) {
    ar_dist d;
    cr_assert_eq(ar_dist_init(&d, n_vocab), AR_OK);
    int32_t *ids = malloc((size_t)n_vocab * sizeof *ids);
    double *p = malloc((size_t)n_vocab * sizeof *p);
    cr_assert_eq(ar_sampler_dist(sp, logits, n_vocab, NULL, 0, &d), AR_OK, "%s", ar_last_error());
    int32_t n = reference_dist(sp, logits, n_vocab, ids, p);
    cr_assert_eq(d.n, n, "top_k %d top_p %g min_p %g: kept %d, reference %d", sp->top_k,
                 (double)sp->top_p, (double)sp->min_p, d.n, n);
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cr_assert_eq(d.id[i], ids[i], "entry %d: id %d, reference %d", i, d.id[i], ids[i]);
        cr_assert(fabs(d.p[i] - p[i]) < 1e-5 * p[i] + 1e-9, "entry %d: p %g, reference %g", i,
                  d.p[i], p[i]);
        if (i > 0) cr_assert(d.p[i] <= d.p[i - 1]);
        sum += d.p[i];
    }
    cr_expect(fabs(sum - 1.0) < 1e-5);
    free(ids);
    free(p);
    ar_dist_free(&d);
}

Test(sampler, chain_matches_sort_everything_reference) {
    /* a vocabulary of 50k logits quantised to steps of 1/8 so that ties are everywhere: the heap
     * selection and the quicksort must both order ties by id */
    enum { N = 50000 };
    float *logits = malloc(N * sizeof *logits);
    ar_rng r;
    ar_rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        logits[i] = floorf((float)(ar_rng_uniform(&r) * 24.0 - 16.0) * 8) / 8;
    ar_sampler_params sp = ar_sampler_default_params(); /* k 40, p 0.95, min-p 0.05, temp 0.8 */
    compare_with_reference(&sp, logits, N);
    sp.top_k = 0; /* sort everything, then top-p and min-p */
    sp.top_p = 0.5f;
    compare_with_reference(&sp, logits, N);
    sp.top_p = 1.0f; /* min-p filters before the sort */
    compare_with_reference(&sp, logits, N);
    sp.min_p = 0.0f; /* the whole vocabulary, sorted */
    sp.temp = 1.5f;
    compare_with_reference(&sp, logits, N);
    sp.top_k = 1000;
    sp.top_p = 0.9f;
    compare_with_reference(&sp, logits, N);
    /* descending and ascending runs (quicksort's classic worst cases) */
    for (int i = 0; i < N; i++) logits[i] = (float)(i % 5000) * 0.001f;
    sp = plain_params();
    sp.top_p = 0.3f;
    compare_with_reference(&sp, logits, N);
    for (int i = 0; i < N; i++) logits[i] = -(float)i * 0.0001f;
    compare_with_reference(&sp, logits, N);
    free(logits);
}

/* ---- drawing ---- */

Test(sample, follows_the_distribution) {
    /* 8 tokens with uneven probabilities, 100000 draws from a fixed seed. Pearson's statistic has
     * 7 degrees of freedom; 29.88 is its critical value at p = 1e-4. */
    float logits[] = {0.3f, -1.0f, 1.2f, 0.0f, -0.4f, 2.0f, 0.7f, -2.0f};
    ar_sampler_params sp = plain_params();
    ar_dist d;
    cr_assert_eq(ar_dist_init(&d, 8), AR_OK);
    cr_assert_eq(ar_sampler_dist(&sp, logits, 8, NULL, 0, &d), AR_OK);
    ar_rng r;
    ar_rng_seed(&r, 12345);
    long count[8] = {0};
    const long draws = 100000;
    for (long i = 0; i < draws; i++) {
        int32_t id = ar_dist_sample(&d, &r);
        cr_assert(id >= 0 && id < 8);
        count[id]++;
    }
    double prob[8];
    for (int i = 0; i < 8; i++) prob[i] = ar_dist_prob(&d, i);
    double x2 = chi_square(count, prob, 8, draws);
    cr_expect(x2 < 29.88, "chi-square %.2f over 7 dof exceeds 29.88 (p = 1e-4)", x2);
    /* and the same seed draws the same tokens */
    ar_rng a, b;
    ar_rng_seed(&a, 99);
    ar_rng_seed(&b, 99);
    for (int i = 0; i < 100; i++) cr_assert_eq(ar_dist_sample(&d, &a), ar_dist_sample(&d, &b));
    ar_dist_free(&d);
}

Test(sample, inverse_cdf_walk_in_dist_order) {
    /* p sums to 0.75: a draw u >= 0.75 falls past the end and returns the last id, so the last
     * id has frequency 0.5 and the first 0.5; with one uniform per draw, reproducible exactly */
    ar_dist d;
    cr_assert_eq(ar_dist_init(&d, 4), AR_OK);
    d.n = 2;
    d.id[0] = 3;
    d.p[0] = 0.5f;
    d.id[1] = 1;
    d.p[1] = 0.25f;
    ar_rng r, shadow;
    ar_rng_seed(&r, 5);
    ar_rng_seed(&shadow, 5);
    for (int i = 0; i < 1000; i++) {
        double u = ar_rng_uniform(&shadow);
        cr_assert_eq(ar_dist_sample(&d, &r), u < 0.5 ? 3 : 1);
    }
    cr_expect_float_eq(ar_dist_prob(&d, 1), 0.25f, 0.0f);
    cr_expect_float_eq(ar_dist_prob(&d, 2), 0.0f, 0.0f);
    /* a draw exactly on a boundary belongs to the next id (the first cumsum > u). State with
     * s[1] = 0xcd << 56 makes the next output 2^63: s1 * 5 = 2^56 (205 * 5 = 1025 = 1 mod 256),
     * rotl by 7 gives 2^63, times 9 stays 2^63 mod 2^64; so the uniform is exactly 0.5. */
    ar_rng half = {{0, 0xcd00000000000000ull, 0, 0}};
    d.p[1] = 0.5f;
    cr_expect_eq(ar_dist_sample(&d, &half), 1);
    d.n = 0;
    cr_expect_eq(ar_dist_sample(&d, &r), -1);
    ar_dist_free(&d);
}
