/* sampling.c: logits -> an explicit next-token distribution, in llama.cpp's default sampler order
 * (penalties, top-k, top-p, min-p, temperature, softmax), plus the seeded PRNG that draws from it.
 *
 * Candidates are ordered by logit descending, ties by lower id, so every step is deterministic.
 * Top-k selects with a bounded heap (O(n_vocab log k)); only when top-k is off is the whole
 * vocabulary sorted. The top-p running sum uses llama.cpp's float arithmetic (expf of logit minus
 * max, float sums in sorted order) so borderline cuts land where llama.cpp's do; the final
 * softmax sums in double. */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>

/* ---- PRNG: splitmix64 expands the seed, xoshiro256** generates ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void ar_rng_seed(ar_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t ar_rng_next(ar_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double ar_rng_uniform(ar_rng *r) {
    return (double)(ar_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- parameters and the distribution container ---- */

ar_sampler_params ar_sampler_default_params(void) {
    return (ar_sampler_params){
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0,
    };
}

/* A bound on the vocabulary so a hostile n_vocab cannot ask for gigabytes. */
#define AR_MAX_VOCAB (1 << 24)

ar_status ar_dist_init(ar_dist *d, int32_t n_vocab) {
    memset(d, 0, sizeof *d);
    if (n_vocab <= 0 || n_vocab > AR_MAX_VOCAB)
        return ar_fail(AR_ERR_INVALID_ARG, "ar_dist_init: vocabulary size %d out of range 1..%d",
                       n_vocab, AR_MAX_VOCAB);
    d->id = malloc((size_t)n_vocab * sizeof *d->id);
    d->p = malloc((size_t)n_vocab * sizeof *d->p);
    d->scratch = malloc((size_t)n_vocab * sizeof *d->scratch);
    if (!d->id || !d->p || !d->scratch) {
        ar_dist_free(d);
        return ar_fail(AR_ERR_NOMEM, "ar_dist_init: cannot allocate a distribution over %d tokens",
                       n_vocab);
    }
    d->cap = n_vocab;
    return AR_OK;
}

void ar_dist_free(ar_dist *d) {
    free(d->id);
    free(d->p);
    free(d->scratch);
    memset(d, 0, sizeof *d);
}

float ar_dist_prob(const ar_dist *d, int32_t id) {
    for (int32_t i = 0; i < d->n; i++)
        if (d->id[i] == id) return d->p[i];
    return 0.0f;
}

int32_t ar_argmax(const float *x, int32_t n) {
    if (n <= 0) return -1;
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

int32_t ar_argmax_finite(const float *x, int32_t n) {
    if (n <= 0) return -1;
    int32_t best = 0;
    bool bad = false;
    for (int32_t i = 0; i < n; i++) {
        bad |= isnan(x[i]) || x[i] == INFINITY;
        if (x[i] > x[best]) best = i;
    }
    return bad ? -1 : best;
}

int32_t ar_dist_sample(const ar_dist *d, ar_rng *rng) {
    if (d->n <= 0) return -1;
    double u = ar_rng_uniform(rng);
    double cum = 0.0;
    for (int32_t i = 0; i < d->n; i++) {
        cum += d->p[i];
        if (cum > u) return d->id[i];
    }
    return d->id[d->n - 1]; /* rounding left the total below u */
}

/* ---- candidate order: logit descending, ties by lower id ---- */

static inline bool ranks_before(float la, int32_t a, float lb, int32_t b) {
    return la > lb || (la == lb && a < b);
}

/* Top-k by a heap of the k best seen so far whose root is the worst of them. The heap holds ids;
 * logits are read through `l`. */
static void heap_sift_down(int32_t *h, int32_t n, int32_t i, const float *l) {
    for (;;) {
        int32_t worst = i, c1 = 2 * i + 1, c2 = 2 * i + 2;
        if (c1 < n && ranks_before(l[h[worst]], h[worst], l[h[c1]], h[c1])) worst = c1;
        if (c2 < n && ranks_before(l[h[worst]], h[worst], l[h[c2]], h[c2])) worst = c2;
        if (worst == i) return;
        int32_t t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

/* Writes the k best ids of l[0..n) into ids[0..k), best first. */
static void select_top_k(const float *l, int32_t n, int32_t k, int32_t *ids) {
    for (int32_t i = 0; i < k; i++) ids[i] = i;
    for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(ids, k, i, l);
    for (int32_t i = k; i < n; i++) {
        if (ranks_before(l[i], i, l[ids[0]], ids[0])) {
            ids[0] = i;
            heap_sift_down(ids, k, 0, l);
        }
    }
    /* pop the worst to the back repeatedly: the array ends up best first */
    for (int32_t end = k - 1; end > 0; end--) {
        int32_t t = ids[0];
        ids[0] = ids[end];
        ids[end] = t;
        heap_sift_down(ids, end, 0, l);
    }
}

/* Sorts the parallel arrays (key[i], id[i]) by key descending, ties by lower id: quicksort on
 * median-of-three pivots, insertion sort for short ranges, heapsort when recursion runs deep. */
static inline void swap_pair(float *key, int32_t *id, int32_t a, int32_t b) {
    float tk = key[a];
    key[a] = key[b];
    key[b] = tk;
    int32_t ti = id[a];
    id[a] = id[b];
    id[b] = ti;
}

static void pair_sift_down(float *key, int32_t *id, int32_t n, int32_t i) {
    for (;;) {
        int32_t worst = i, c1 = 2 * i + 1, c2 = 2 * i + 2;
        if (c1 < n && ranks_before(key[worst], id[worst], key[c1], id[c1])) worst = c1;
        if (c2 < n && ranks_before(key[worst], id[worst], key[c2], id[c2])) worst = c2;
        if (worst == i) return;
        swap_pair(key, id, i, worst);
        i = worst;
    }
}

static void pair_heapsort(float *key, int32_t *id, int32_t n) {
    for (int32_t i = n / 2 - 1; i >= 0; i--) pair_sift_down(key, id, n, i);
    for (int32_t end = n - 1; end > 0; end--) {
        swap_pair(key, id, 0, end);
        pair_sift_down(key, id, end, 0);
    }
}

static void pair_sort(float *key, int32_t *id, int32_t n, int depth_left) {
    while (n > 16) {
        if (depth_left-- == 0) {
            pair_heapsort(key, id, n);
            return;
        }
        int32_t mid = n / 2, last = n - 1;
        if (ranks_before(key[mid], id[mid], key[0], id[0])) swap_pair(key, id, 0, mid);
        if (ranks_before(key[last], id[last], key[0], id[0])) swap_pair(key, id, 0, last);
        if (ranks_before(key[last], id[last], key[mid], id[mid])) swap_pair(key, id, mid, last);
        /* now key[0] <= pivot <= key[last] in rank order; partition around the median */
        float pk = key[mid];
        int32_t pi = id[mid];
        int32_t i = 0, j = last;
        for (;;) {
            while (ranks_before(key[i], id[i], pk, pi)) i++;
            while (ranks_before(pk, pi, key[j], id[j])) j--;
            if (i >= j) break;
            swap_pair(key, id, i, j);
            i++;
            j--;
        }
        /* [0, j] ranks at or before the pivot, [j+1, n) at or after: recurse on the smaller */
        int32_t left = j + 1, right = n - left;
        if (left < right) {
            pair_sort(key, id, left, depth_left);
            key += left;
            id += left;
            n = right;
        } else {
            pair_sort(key + left, id + left, right, depth_left);
            n = left;
        }
    }
    for (int32_t i = 1; i < n; i++) {
        float k = key[i];
        int32_t v = id[i];
        int32_t j = i;
        for (; j > 0 && ranks_before(k, v, key[j - 1], id[j - 1]); j--) {
            key[j] = key[j - 1];
            id[j] = id[j - 1];
        }
        key[j] = k;
        id[j] = v;
    }
}

/* ---- the transforms ---- */

/* Repetition penalty, applied once per distinct token of the window (llama.cpp: a positive logit
 * is divided by the penalty, a non-positive one multiplied). `mark` has n_vocab entries and is
 * only touched at the window's ids. */
static void apply_repeat_penalty(float *l, const int32_t *window, int32_t n_window, float penalty,
                                 int32_t *mark) {
    for (int32_t i = 0; i < n_window; i++) mark[window[i]] = 0;
    for (int32_t i = 0; i < n_window; i++) {
        int32_t t = window[i];
        if (mark[t]) continue;
        mark[t] = 1;
        l[t] = l[t] <= 0.0f ? l[t] * penalty : l[t] / penalty;
    }
}

/* Top-p over sorted logits: the shortest prefix whose softmax mass reaches p (at least one). */
static int32_t top_p_cut(const float *l, int32_t n, float p) {
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) sum += expf(l[i] - l[0]);
    float cum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        cum += expf(l[i] - l[0]) / sum;
        if (cum >= p) return i + 1;
    }
    return n;
}

/* Min-p over sorted logits: keep p_i >= min_p * p_max, i.e. logit >= max + log(min_p). */
static int32_t min_p_cut(const float *l, int32_t n, float min_p) {
    float threshold = l[0] + logf(min_p);
    int32_t i = 1;
    while (i < n && l[i] >= threshold) i++;
    return i;
}

/* Softmax of l/temp in place (l sorted descending); returns the count with nonzero probability.
 * The sum is kept in double: over a whole vocabulary a float sum drifts by ~1e-5. */
static int32_t softmax_temp(float *l, int32_t n, float temp) {
    for (int32_t i = 0; i < n; i++) l[i] /= temp;
    float max = l[0];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        l[i] = expf(l[i] - max);
        sum += l[i];
    }
    for (int32_t i = 0; i < n; i++) l[i] = (float)(l[i] / sum);
    while (n > 1 && l[n - 1] == 0.0f) n--;
    return n;
}

/* Distinct logits can round to equal probabilities; restore "ties by lower id" within such runs. */
static void order_equal_probs_by_id(const float *p, int32_t *id, int32_t n) {
    for (int32_t i = 1; i < n; i++) {
        int32_t v = id[i];
        int32_t j = i;
        for (; j > 0 && p[j - 1] == p[i] && id[j - 1] > v; j--) id[j] = id[j - 1];
        id[j] = v;
    }
}

static ar_status check_params(const ar_sampler_params *sp) {
    if (isnan(sp->temp) || isnan(sp->top_p) || isnan(sp->min_p))
        return ar_fail(AR_ERR_INVALID_ARG, "sampler: temp, top_p and min_p must not be NaN");
    if (!(sp->repeat_penalty > 0.0f) || isinf(sp->repeat_penalty))
        return ar_fail(AR_ERR_INVALID_ARG, "sampler: repeat penalty %g must be positive and finite",
                       (double)sp->repeat_penalty);
    if (sp->repeat_last_n < -1)
        return ar_fail(AR_ERR_INVALID_ARG, "sampler: repeat_last_n %d must be -1 (all) or >= 0",
                       sp->repeat_last_n);
    return AR_OK;
}

ar_status ar_sampler_dist(const ar_sampler_params *sp, const float *logits, int32_t n_vocab,
                          const int32_t *history, int32_t n_history, ar_dist *out) {
    ar_status st = check_params(sp);
    if (st != AR_OK) return st;
    if (n_vocab <= 0 || n_vocab > out->cap)
        return ar_fail(AR_ERR_INVALID_ARG,
                       "sampler: vocabulary size %d does not fit the "
                       "distribution's capacity %d",
                       n_vocab, out->cap);
    if (n_history < 0 || (n_history > 0 && !history))
        return ar_fail(AR_ERR_INVALID_ARG, "sampler: bad history (%d tokens)", n_history);

    bool any_finite = false;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return ar_fail(AR_ERR_INVALID_ARG, "sampler: logit %d is %g", i, (double)logits[i]);
        any_finite |= logits[i] != -INFINITY;
    }
    if (!any_finite) return ar_fail(AR_ERR_INVALID_ARG, "sampler: every logit is -inf");

    /* penalties work on a copy in scratch */
    const float *l = logits;
    int32_t n_window = sp->repeat_last_n < 0 ? n_history : AR_MIN(sp->repeat_last_n, n_history);
    if (sp->repeat_penalty != 1.0f && n_window > 0) {
        const int32_t *window = history + (n_history - n_window);
        for (int32_t i = 0; i < n_window; i++)
            if (window[i] < 0 || window[i] >= n_vocab)
                return ar_fail(AR_ERR_INVALID_ARG, "sampler: history token %d out of range 0..%d",
                               window[i], n_vocab - 1);
        memcpy(out->scratch, logits, (size_t)n_vocab * sizeof *logits);
        apply_repeat_penalty(out->scratch, window, n_window, sp->repeat_penalty, out->id);
        l = out->scratch;
    }

    if (sp->temp <= 0.0f) {
        out->n = 1;
        out->id[0] = ar_argmax(l, n_vocab);
        out->p[0] = 1.0f;
        return AR_OK;
    }

    /* candidates, sorted: ids in out->id, their logits in out->p */
    int32_t n;
    if (sp->top_k > 0 && sp->top_k < n_vocab) {
        n = sp->top_k;
        select_top_k(l, n_vocab, n, out->id);
        for (int32_t i = 0; i < n; i++) out->p[i] = l[out->id[i]];
    } else {
        /* with top-p off, min-p (which only needs the max) can shrink the set before sorting */
        float threshold = -INFINITY;
        if (sp->top_p >= 1.0f && sp->min_p > 0.0f) {
            float max = l[ar_argmax(l, n_vocab)];
            threshold = AR_MIN(max, max + logf(sp->min_p));
        }
        n = 0;
        for (int32_t i = 0; i < n_vocab; i++) {
            if (l[i] >= threshold) {
                out->id[n] = i;
                out->p[n] = l[i];
                n++;
            }
        }
        int depth = 2;
        for (int32_t m = n; m > 1; m >>= 1) depth += 2;
        pair_sort(out->p, out->id, n, depth);
    }

    if (sp->top_p < 1.0f) n = top_p_cut(out->p, n, sp->top_p);
    if (sp->min_p > 0.0f) n = min_p_cut(out->p, n, sp->min_p);
    n = softmax_temp(out->p, n, sp->temp);
    order_equal_probs_by_id(out->p, out->id, n);
    out->n = n;
    return AR_OK;
}
