/* scheduler.c: cost model, acceptance model and the step decisions of the adaptive scheduler. */
#include "scheduler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define EMA 0.2          /* weight of a new observation in the running estimates */
#define BACKOFF_MIN 8
#define BACKOFF_MAX 256
#define THRESHOLD_MIN 0.002f
#define THRESHOLD_MAX 0.5f
#define PLAIN_PROBE_EVERY 32 /* speculative steps between plain steps that re-measure T(1) */
#define MAX_CHAIN 16         /* the longest chain the can-pay test considers */
#define FALLBACK_MIN_STEPS 4 /* speculative steps measured before the fallback judges them */

static void acceptance_tables(ar_sched *s);

float ar_sched_accept(const void *user, float p, bool first) {
    const ar_sched *s = user;
    return (first ? s->first_table : s->rest_table)[ar_accept_bin(p)];
}

void ar_sched_init(ar_sched *s) {
    memset(s, 0, sizeof *s);
    /* prior: acceptance equals the drafter's confidence, worth one observation per bin */
    for (int b = 0; b < AR_ACCEPT_BINS; b++) {
        s->prop[b] = 1.0;
        s->acc[b] = (b + 0.5) / AR_ACCEPT_BINS;
        s->accept_table[b] = (float)(s->acc[b] / s->prop[b]);
        s->first_table[b] = s->rest_table[b] = s->accept_table[b]; /* no first choice seen */
    }
    s->top_acc = 0.5, s->top_prop = 1.0; /* prior: one trial, half accepted */
    s->threshold = 0.05f;
    s->backoff = BACKOFF_MIN;
}

/* the largest table size <= n (n >= 1) */
static int size_index(int32_t n) {
    int i = 0;
    while (i + 1 < AR_COST_SIZES && ar_cost_size(i + 1) <= n) i++;
    return i;
}

/* the table's entry at a table size; linear interpolation between them; proportional past 64 */
static double interp(const double *t, int32_t n) {
    if (n <= 1) return t[0];
    int i = size_index(n);
    double lo = ar_cost_size(i);
    if (i + 1 >= AR_COST_SIZES) return t[i] * n / lo;
    double hi = ar_cost_size(i + 1);
    return t[i] + (t[i + 1] - t[i]) * ((double)n - lo) / (hi - lo);
}

double ar_sched_verify_cost(const ar_sched *s, int32_t n) { return interp(s->costs.verify, n); }
double ar_sched_draft_cost(const ar_sched *s, int32_t n) { return interp(s->costs.draft, n); }

/* ---- the cost model: measured entries, and estimates for the others ---- */

#define SEEN_MAX 16.0 /* an entry's measurement weight saturates: it keeps following the machine */

/* Estimates every entry not measured yet (seen == 0) from the measured ones: linear between
 * measured neighbours; past the largest measured size, the per-row slope between the two
 * largest measured sizes (entry 0 counts as measured), the prior's while only entry 0 is;
 * then makes the table non-decreasing (a batch never costs less than a smaller one: a size
 * measured slower than the next was disturbed). The extrapolation is that of what was measured,
 * not a guard against it: a slope that turns out optimistic is corrected by the first tree of
 * that size, while a pessimistic one would never be put to the test. Entry 0 is always set. */
#define MIN_SLOPE 0.01 /* of entry 0, per row: every row costs something */

/* A batch of a + b rows never costs more than a batch of a and one of b (it could be run as
 * those two): entries above that are cut to it. A disturbed measurement (another process took
 * the core, a page fault stream) would otherwise make its size look dear, and the slope past it
 * every larger size; a size that looks dear is not tried again, so the model would never learn
 * otherwise. Real steps in cost (a kernel change between 4 and 5 rows) are far below this bound. */
static void subadditive(double *t) {
    for (int i = 1; i < AR_COST_SIZES; i++)
        for (int j = 0; j < i; j++) {
            const int32_t r = ar_cost_size(i) - ar_cost_size(j);
            const int k = size_index(r);
            if (r < ar_cost_size(j) || ar_cost_size(k) != r) continue; /* each split once */
            t[i] = fmin(t[i], t[j] + t[k]);
        }
}
static void estimate(double *t, const double *seen) {
    int last = 0, prev = -1; /* the two largest anchors: entry 0, or measured entries */
    for (int i = 1; i < AR_COST_SIZES; i++) {
        if (seen[i] > 0) {
            for (int j = last + 1; j < i; j++) { /* between two anchors */
                const double f = (double)(ar_cost_size(j) - ar_cost_size(last)) /
                                 (ar_cost_size(i) - ar_cost_size(last));
                t[j] = t[last] + (t[i] - t[last]) * f;
            }
            prev = last;
            last = i;
        }
    }
    double slope = AR_COST_PRIOR_SLOPE * t[0];
    if (prev >= 0)
        slope = fmax(MIN_SLOPE * t[0], (t[last] - t[prev]) / (ar_cost_size(last) - ar_cost_size(prev)));
    for (int j = last + 1; j < AR_COST_SIZES; j++)
        t[j] = t[last] + slope * (ar_cost_size(j) - ar_cost_size(last));
    subadditive(t);
    /* disturbances only ever slow a batch down: a smaller size measured dearer than a larger
     * one is the wrong one, and is lowered (raising the larger ones instead let one slow first
     * drafter batch, timed cold, price every size above it for good) */
    for (int i = AR_COST_SIZES - 1; i > 0; i--) t[i - 1] = fmin(t[i - 1], t[i]);
}

/* A streamed verifier: the compute entries are estimated as above, and every pass costs the
 * larger of the reading time (one figure, learned from every pass that waited for its layers)
 * and its compute. Pass totals are not kept per size: one disturbed pass of a size rarely tried
 * would otherwise make that size look dear, and the scheduler would never try it again. */
static void estimate_all(ar_cost_table *c) {
    estimate(c->draft, c->draft_seen);
    if (!c->streamed) { /* in memory a pass is all compute */
        estimate(c->verify, c->verify_seen);
        memcpy(c->compute, c->verify, sizeof c->compute);
        return;
    }
    estimate(c->compute, c->verify_seen);
    for (int i = 0; i < AR_COST_SIZES; i++) c->verify[i] = fmax(c->floor, c->compute[i]);
}

void ar_sched_set_prior(ar_sched *s, double verify1, double compute1, double draft1,
                        bool streamed) {
    ar_cost_table *c = &s->costs;
    memset(c, 0, sizeof *c);
    c->verify[0] = verify1;
    c->compute[0] = fmin(compute1, verify1);
    c->draft[0] = draft1;
    c->verify_seen[0] = 1.0; /* measured by the caller's plain step */
    c->streamed = streamed;
    c->floor = streamed ? verify1 : 0.0;
    c->valid = true;
    estimate_all(c);
}

/* Moves entry i towards a measurement of n rows, scaled to the entry's size first. The first
 * measurement replaces the estimate; later ones move it down fast and up slowly: a machine
 * shared with others makes some passes slower than the work they do (never faster), and one
 * slow pass must not make a size look dear for long. */
#define EMA_DOWN 0.5
#define EMA_UP   0.1
static void blend(double *t, double *seen, int32_t n, double seconds) {
    const int i = size_index(n);
    const double at = interp(t, n);
    const double v = at > 0 ? t[i] * seconds / at : seconds;
    const double w = !(seen[i] > 0) ? 1.0 : v < t[i] ? EMA_DOWN : EMA_UP;
    t[i] = (1.0 - w) * t[i] + w * v;
    seen[i] = fmin(SEEN_MAX, seen[i] + 1.0);
}

void ar_sched_observe_verify(ar_sched *s, int32_t n, double seconds, double compute) {
    if (s->fixed_costs || !s->costs.valid || n < 1) return;
    ar_cost_table *c = &s->costs;
    if (c->streamed) {
        /* a pass that mostly waited for its layers measured the reading time */
        if (compute < 0.8 * seconds)
            c->floor += (seconds < c->floor ? EMA_DOWN : EMA_UP) * (seconds - c->floor);
        blend(c->compute, c->verify_seen, n, fmin(compute, seconds));
    } else {
        blend(c->verify, c->verify_seen, n, seconds);
    }
    estimate_all(c);
}

void ar_sched_observe_draft(ar_sched *s, int32_t n, double seconds) {
    if (s->fixed_costs || !s->costs.valid || n < 1) return;
    blend(s->costs.draft, s->costs.draft_seen, n, seconds);
    estimate_all(&s->costs);
}

bool ar_sched_can_pay(const ar_sched *s) {
    if (!s->costs.valid) return true;
    /* a chain follows the likeliest child: its rate, not that of every child (seven unlikely
     * siblings rejected beside an accepted first choice would make a chain look hopeless) */
    const double a = s->top_prop > 0 ? s->top_acc / s->top_prop : 0.5;
    const double plain_rate = 1.0 / ar_sched_verify_cost(s, 1);
    double expected = 1.0, ad = 1.0;
    for (int32_t d = 1; d <= MAX_CHAIN; d++) {
        ad *= a;
        expected += ad;
        if (expected / (d * ar_sched_draft_cost(s, 1) + ar_sched_verify_cost(s, d + 1)) >
            plain_rate)
            return true;
    }
    return false;
}

bool ar_sched_want_speculation(ar_sched *s) {
    s->step++;
    if (s->plain_left > 0) {
        s->plain_left--;
        s->why_plain = "plain: speculation measured slower, backing off";
        return false;
    }
    if (!ar_sched_can_pay(s)) { /* probe again after a back-off, as for a measured loss */
        s->plain_left = s->backoff - 1;
        s->backoff = s->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : s->backoff * 2;
        s->why_plain = "plain: the costs and acceptance say no chain would pay";
        return false;
    }
    /* the fallback compares with T(1), which speculative steps do not measure: refresh it now
     * and then (a stale, too high T(1) would keep a losing drafter speculating) */
    if (!s->fixed_costs && !s->no_plain_probes && ++s->since_plain >= PLAIN_PROBE_EVERY) {
        s->since_plain = 0;
        s->why_plain = "plain: re-measuring plain decoding";
        return false;
    }
    return true;
}

static int by_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The cut of a tree whose draft node values are v[0..n), best first: the k maximising
 * (1 + v[0] + ... + v[k-1]) / (draft_seconds + verify_cost(k + 1)) (k = 0: the root alone).
 * Returns that rate; *sum gets the expected tokens. */
static double best_cut(const ar_sched *s, const float *v, int32_t n, double draft_seconds,
                       int32_t *best_k, double *best_sum) {
    double sum = 1.0, best_rate = 1.0 / (draft_seconds + ar_sched_verify_cost(s, 1));
    *best_k = 0;
    *best_sum = 1.0;
    for (int32_t k = 1; k <= n && k < AR_TREE_MAX; k++) {
        sum += v[k - 1];
        double rate = sum / (draft_seconds + ar_sched_verify_cost(s, k + 1));
        if (rate > best_rate) {
            best_rate = rate;
            *best_k = k;
            *best_sum = sum;
        }
    }
    return best_rate;
}

int32_t ar_sched_choose_size(const ar_sched *s, const ar_tree *tree, double draft_seconds,
                             float *expected_tokens) {
    float v[AR_TREE_MAX];
    int32_t n = AR_MIN(tree->n - 1, AR_TREE_MAX);
    for (int32_t i = 0; i < n; i++) v[i] = tree->nodes[i + 1].value;
    qsort(v, (size_t)n, sizeof v[0], by_float_desc);
    int32_t k;
    double sum;
    best_cut(s, v, n, draft_seconds, &k, &sum);
    if (expected_tokens) *expected_tokens = (float)sum;
    return k;
}

#define SHAPE_MAX_CANDS 128 /* candidates considered per level (the best ones) */
#define SHAPE_MAX_WIDTH 32  /* nodes a level may add */

/* The values of the tree's draft nodes, then extra[0..n_extra), sorted best first into v. */
static int32_t merge_values(const ar_tree *tree, const float *extra, int32_t n_extra, float *v) {
    int32_t n = 0;
    for (int32_t i = 1; i < tree->n && n < AR_TREE_MAX; i++) v[n++] = tree->nodes[i].value;
    for (int32_t i = 0; i < n_extra && n < 2 * AR_TREE_MAX; i++) v[n++] = extra[i];
    qsort(v, (size_t)n, sizeof v[0], by_float_desc);
    return n;
}

int32_t ar_sched_shape_level(const void *user, const ar_tree *tree, const ar_tree_cand *cands,
                             int32_t n_cands, double seconds, int32_t levels, bool *grow) {
    const ar_sched *s = user;
    *grow = false;
    /* candidate values (parent's value times the calibrated acceptance), best first, and how a
     * best child compares with its parent: the projection for the level after this one */
    float c[SHAPE_MAX_CANDS];
    int32_t nc = 0;
    double ratio_sum = 0.0;
    int32_t n_parents = 0;
    for (int32_t i = 0; i < n_cands; i++) {
        const float pv = tree->nodes[cands[i].parent].value;
        bool best_of_parent = true; /* the likeliest child (ties: the first listed) */
        for (int32_t j = 0; j < n_cands && best_of_parent; j++) {
            if (j == i || cands[j].parent != cands[i].parent) continue;
            if (cands[j].p > cands[i].p || (cands[j].p == cands[i].p && j < i))
                best_of_parent = false;
        }
        const float a = ar_sched_accept(s, cands[i].p, best_of_parent), v = pv * a;
        if (best_of_parent && pv > 0) {
            ratio_sum += a;
            n_parents++;
        }
        if (nc < SHAPE_MAX_CANDS) c[nc++] = v;
        else { /* keep the best: replace the smallest */
            int32_t lo = 0;
            for (int32_t j = 1; j < nc; j++)
                if (c[j] < c[lo]) lo = j;
            if (v > c[lo]) c[lo] = v;
        }
    }
    qsort(c, (size_t)nc, sizeof c[0], by_float_desc);
    const double ratio = n_parents ? ratio_sum / n_parents : 0.0;
    const int32_t room = AR_MIN(tree->cap, AR_TREE_MAX) - tree->n;
    int32_t m_max = AR_MIN(AR_MIN(nc, room), SHAPE_MAX_WIDTH);
    if (m_max <= 0) return 0;
    /* the rows a tree may still take are few (a budget caps a pass at 65): a candidate takes
     * one only if that leaves room for the deeper nodes worth more than it, projected along the
     * best path (c[0] times the ratio, level by level). Verification free up to the cap would
     * otherwise fill it with this level's long shots and leave the likely path shallow. */
    if (ratio > 0.0 && ratio < 1.0) {
        int32_t m = 0;
        while (m < m_max) {
            int32_t deeper = 0;
            for (double f = c[0] * ratio; f > c[m] && deeper < room; f *= ratio) deeper++;
            if (m + 1 + deeper > room) break;
            m++;
        }
        m_max = AR_MAX(1, m);
    }

    /* stop after this level: add the candidates that make the best cut */
    float v[3 * AR_TREE_MAX];
    int32_t n = merge_values(tree, c, m_max, v), k;
    double sum;
    const double stop_rate = best_cut(s, v, n, seconds, &k, &sum);
    int32_t m_stop = 0; /* candidates in the cut: those at least as valuable as its last value */
    for (int32_t j = 0; j < m_max && k > 0; j++) m_stop += c[j] >= v[k - 1];
    m_stop = AR_MIN(m_stop, k);

    /* or add m of them, evaluate them (one drafter batch: at least the mean batch so far) and
     * add a best child under each, valued by the ratio seen at this level */
    const double mean_level = levels > 0 ? seconds / levels : 0.0;
    double grow_rate = 0.0;
    int32_t m_grow = 0;
    for (int32_t m = 1; m <= m_max && ratio > 0; m++) {
        float extra[2 * SHAPE_MAX_WIDTH];
        for (int32_t j = 0; j < m; j++) extra[j] = c[j], extra[m + j] = (float)(c[j] * ratio);
        n = merge_values(tree, extra, 2 * m, v);
        double t = seconds + fmax(mean_level, ar_sched_draft_cost(s, m));
        double rate = best_cut(s, v, n, t, &k, &sum);
        if (rate > grow_rate) grow_rate = rate, m_grow = m;
    }
    if (grow_rate > stop_rate && m_grow > 0) {
        *grow = true;
        return m_grow;
    }
    return m_stop;
}

void ar_sched_update(ar_sched *s, const ar_tree *tree, const int32_t *path, int32_t n_path,
                     double seconds, int32_t tokens) {
    /* acceptance model: every child of an accepted node was a fair trial */
    for (int32_t j = 0; j < n_path; j++) {
        int32_t u = path[j];
        for (int32_t c = tree->nodes[u].first_child; c >= 0; c = tree->nodes[c].next_sibling) {
            int b = ar_accept_bin(tree->nodes[c].p_draft);
            s->prop[b] += 1.0;
            if (j + 1 < n_path && path[j + 1] == c) s->acc[b] += 1.0;
        }
        const int32_t top = ar_tree_likeliest_child(tree, u);
        if (top >= 0) {
            const int b = ar_accept_bin(tree->nodes[top].p_draft);
            const bool taken = j + 1 < n_path && path[j + 1] == top;
            s->top_prop += 1.0;
            s->top_acc += taken;
            s->first_prop[b] += 1.0;
            s->first_acc[b] += taken;
        }
    }
    acceptance_tables(s);
    /* threshold: the drafter went as deep as it was right: draft deeper next time; it was
     * wrong early: hand over to the verifier sooner */
    int32_t accepted = n_path - 1, depth = tree->max_depth;
    if (depth > 0) {
        if (accepted >= depth) s->threshold *= 0.7f;
        else if (2 * accepted < depth) s->threshold *= 1.3f;
        s->threshold = fminf(THRESHOLD_MAX, fmaxf(THRESHOLD_MIN, s->threshold));
    }
    /* fallback: compare this step's rate with plain decoding's (seconds <= 0: not measured) */
    if (seconds <= 0) return;
    /* tokens over seconds of the recent steps, judged after a few: a single step's count is
     * too noisy (at 0.65 acceptance a third of the steps accept nothing) */
    s->win_tokens = (1.0 - EMA) * s->win_tokens + tokens;
    s->win_seconds = (1.0 - EMA) * s->win_seconds + seconds;
    if (++s->win_steps < FALLBACK_MIN_STEPS) return;
    double plain_rate = 1.0 / ar_sched_verify_cost(s, 1);
    if (s->win_tokens / s->win_seconds < plain_rate) {
        s->plain_left = s->backoff;
        s->backoff = s->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : s->backoff * 2;
        s->win_tokens = s->win_seconds = 0.0; /* the next probe starts fresh */
        s->win_steps = 0;
    } else {
        s->backoff = BACKOFF_MIN;
    }
}

void ar_sched_update_plain(ar_sched *s, double seconds, double compute) {
    ar_sched_observe_verify(s, 1, seconds, compute);
}

ar_status ar_sched_load_costs(ar_sched *s, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return ar_fail(AR_ERR_IO, "%s: cannot open cost table", path);
    ar_cost_table t = {0};
    bool seen_v[AR_COST_SIZES] = {0}, seen_d[AR_COST_SIZES] = {0};
    char line[256];
    int lineno = 0;
    ar_status st = AR_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n') continue;
        char kind[16];
        int n;
        double sec;
        if (sscanf(line, "%15s %d %lf", kind, &n, &sec) != 3 || n < 1 ||
            n > ar_cost_size(AR_COST_SIZES - 1) || ar_cost_size(size_index(n)) != n ||
            !(sec > 0 && sec < 1e6)) {
            st = ar_fail(AR_ERR_FORMAT,
                         "%s:%d: expected 'verify|draft N SECONDS' with N one of 1..16, 32, 64, "
                         "128, 256",
                         path, lineno);
            break;
        }
        int i = size_index(n);
        if (!strcmp(kind, "verify")) t.verify[i] = sec, seen_v[i] = true;
        else if (!strcmp(kind, "draft")) t.draft[i] = sec, seen_d[i] = true;
        else {
            st = ar_fail(AR_ERR_FORMAT, "%s:%d: unknown entry '%s'", path, lineno, kind);
            break;
        }
    }
    fclose(f);
    if (st != AR_OK) return st;
    for (int i = 0; i < AR_COST_SIZES; i++) {
        if (ar_cost_size(i) > 64) { /* optional: files written before trees of 256 rows */
            if (!seen_v[i]) t.verify[i] = t.verify[i - 1] * 2;
            if (!seen_d[i]) t.draft[i] = t.draft[i - 1] * 2;
            continue;
        }
        if (!seen_v[i] || !seen_d[i])
            return ar_fail(AR_ERR_FORMAT, "%s: missing verify or draft entry for n = %d", path,
                           ar_cost_size(i));
    }
    for (int i = 0; i < AR_COST_SIZES; i++) {
        t.compute[i] = t.verify[i];
        t.verify_seen[i] = t.draft_seen[i] = 1.0;
    }
    t.valid = true;
    s->costs = t;
    s->fixed_costs = true;
    return AR_OK;
}

ar_status ar_sched_save_costs(const ar_sched *s, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return ar_fail(AR_ERR_IO, "%s: cannot write cost table", path);
    fprintf(f, "# arbor scheduler cost table: seconds per batch of N rows\n");
    for (int i = 0; i < AR_COST_SIZES; i++)
        fprintf(f, "verify %d %.9g\n", ar_cost_size(i), s->costs.verify[i]);
    for (int i = 0; i < AR_COST_SIZES; i++)
        fprintf(f, "draft %d %.9g\n", ar_cost_size(i), s->costs.draft[i]);
    if (fclose(f) != 0) return ar_fail(AR_ERR_IO, "%s: write failed", path);
    return AR_OK;
}

/* The next line of text at *p into line (cap bytes): 1, or 0 at the end, or -1 when it is too
 * long (the error set, naming name and its line number). */
static int take_line(const char **p, char *line, size_t cap, const char *name, int *lineno) {
    if (!**p) return 0;
    const char *eol = strchr(*p, '\n');
    const size_t len = eol ? (size_t)(eol - *p) : strlen(*p);
    ++*lineno;
    if (len >= cap) {
        ar_fail(AR_ERR_FORMAT, "%s:%d: line too long", name, *lineno);
        return -1;
    }
    memcpy(line, *p, len);
    line[len] = 0;
    *p += len + (eol ? 1 : 0);
    return 1;
}

/* The tables from the counts. */
static void acceptance_tables(ar_sched *s) {
    for (int b = 0; b < AR_ACCEPT_BINS; b++) {
        s->accept_table[b] = (float)(s->acc[b] / s->prop[b]);
        /* first choices: their bin's counts with one observation at the rate of all first
         * choices as the prior (a few steps teach every bin how right the drafter's first
         * choice is; the bin then refines it) */
        s->first_table[b] = (float)((s->first_acc[b] + s->top_acc / s->top_prop) /
                                    (s->first_prop[b] + 1.0));
        /* the others: all children less the first choices (the prior stays in acc, prop) */
        s->rest_table[b] =
            (float)((s->acc[b] - s->first_acc[b]) / (s->prop[b] - s->first_prop[b]));
    }
}

/* Scale of counts of weight n kept at most AR_ACCEPT_KEEP. */
static double keep_scale(double n) { return n > AR_ACCEPT_KEEP ? AR_ACCEPT_KEEP / n : 1.0; }

int ar_sched_acceptance_format(const ar_sched *s, char *buf, size_t cap) {
    size_t k = 0;
    for (int b = 0; b <= AR_ACCEPT_BINS; b++) {
        int w;
        if (b < AR_ACCEPT_BINS) {
            /* the first choices and the others capped apart: the others keep at least the
             * prior's one observation, so their rate stays defined */
            const double fa = s->first_acc[b], fp = s->first_prop[b];
            const double ra = s->acc[b] - fa, rp = s->prop[b] - fp;
            const double ff = keep_scale(fp), fr = keep_scale(rp);
            w = snprintf(buf + k, k < cap ? cap - k : 0, "accept %d %.6g %.6g %.6g %.6g\n", b,
                         ra * fr + fa * ff, rp * fr + fp * ff, fa * ff, fp * ff);
        } else {
            const double f = keep_scale(s->top_prop);
            w = snprintf(buf + k, k < cap ? cap - k : 0, "first %.6g %.6g\n", s->top_acc * f,
                         s->top_prop * f);
        }
        if (w > 0) k += (size_t)w;
    }
    return (int)k;
}

ar_status ar_sched_acceptance_parse(ar_sched *s, const char *text, const char *name) {
    double acc[AR_ACCEPT_BINS], prop[AR_ACCEPT_BINS], facc[AR_ACCEPT_BINS], fprop[AR_ACCEPT_BINS];
    double tacc = -1, tprop = -1;
    bool seen[AR_ACCEPT_BINS] = {0};
    int lineno = 0, got_line;
    char line[160];
    for (const char *p = text; (got_line = take_line(&p, line, sizeof line, name, &lineno));) {
        if (got_line < 0) return AR_ERR_FORMAT;
        if (!line[0]) continue;
        int b, used = 0;
        double a, n, fa, fn;
        if (sscanf(line, "accept %d %lf %lf %lf %lf%n", &b, &a, &n, &fa, &fn, &used) == 5 &&
            !line[used] && b >= 0 && b < AR_ACCEPT_BINS && !seen[b] && fn >= 0 &&
            fn <= AR_ACCEPT_KEEP * 1.001 && n - fn >= 0.999 &&
            n - fn <= AR_ACCEPT_KEEP * 1.001 && fa >= 0 && fa <= fn && a - fa >= 0 &&
            a - fa <= n - fn) {
            acc[b] = a, prop[b] = n, facc[b] = fa, fprop[b] = fn;
            seen[b] = true;
            continue;
        }
        if (sscanf(line, "first %lf %lf%n", &a, &n, &used) == 2 && !line[used] && tprop < 0 &&
            n > 0 && n <= AR_ACCEPT_KEEP * 1.001 && a >= 0 && a <= n) {
            tacc = a, tprop = n;
            continue;
        }
        return ar_fail(AR_ERR_FORMAT, "%s:%d: not an acceptance entry: '%s'", name, lineno, line);
    }
    for (int b = 0; b < AR_ACCEPT_BINS; b++)
        if (!seen[b]) return ar_fail(AR_ERR_FORMAT, "%s: no acceptance entry for bin %d", name, b);
    if (tprop < 0) return ar_fail(AR_ERR_FORMAT, "%s: no 'first' acceptance entry", name);
    for (int b = 0; b < AR_ACCEPT_BINS; b++)
        s->acc[b] = acc[b], s->prop[b] = prop[b], s->first_acc[b] = facc[b],
        s->first_prop[b] = fprop[b];
    s->top_acc = tacc, s->top_prop = tprop;
    acceptance_tables(s);
    return AR_OK;
}

int ar_cost_table_format(const ar_cost_table *t, char *buf, size_t cap) {
    size_t k = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + k, k < cap ? cap - k : 0, __VA_ARGS__);                           \
        if (w_ > 0) k += (size_t)w_;                                                               \
    } while (0)
    OUT("streamed %d\n", t->streamed ? 1 : 0);
    if (t->streamed) OUT("floor %.9g\n", t->floor);
    for (int i = 0; i < AR_COST_SIZES; i++)
        OUT("verify %d %.9g %.4g %.9g\n", ar_cost_size(i), t->verify[i], t->verify_seen[i],
            t->compute[i]);
    for (int i = 0; i < AR_COST_SIZES; i++)
        OUT("draft %d %.9g %.4g\n", ar_cost_size(i), t->draft[i], t->draft_seen[i]);
#undef OUT
    return (int)k;
}

ar_status ar_cost_table_parse(const char *text, const char *name, ar_cost_table *out) {
    ar_cost_table t = {0};
    bool seen_v[AR_COST_SIZES] = {0}, seen_d[AR_COST_SIZES] = {0}, streamed = false;
    int lineno = 0, got_line;
    char line[160];
    for (const char *p = text; (got_line = take_line(&p, line, sizeof line, name, &lineno));) {
        if (got_line < 0) return AR_ERR_FORMAT;
        if (!line[0] || line[0] == '#') continue;
        char kind[16];
        int n, flag;
        double sec, seen, comp;
        if (sscanf(line, "streamed %d", &flag) == 1 && (flag == 0 || flag == 1)) {
            t.streamed = flag;
            streamed = true;
            continue;
        }
        if (sscanf(line, "floor %lf", &sec) == 1) {
            if (!(sec > 0 && sec < 1e6))
                return ar_fail(AR_ERR_FORMAT, "%s:%d: floor %g out of range", name, lineno, sec);
            t.floor = sec;
            continue;
        }
        const int got = sscanf(line, "%15s %d %lf %lf %lf", kind, &n, &sec, &seen, &comp);
        const bool size_ok = n >= 1 && n <= ar_cost_size(AR_COST_SIZES - 1) &&
                             ar_cost_size(size_index(n)) == n;
        if (got >= 4 && size_ok && sec > 0 && sec < 1e6 && seen >= 0 && seen <= SEEN_MAX) {
            const int i = size_index(n);
            if (!strcmp(kind, "verify") && got == 5 && comp > 0 && comp <= sec) {
                t.verify[i] = sec, t.verify_seen[i] = seen, t.compute[i] = comp;
                seen_v[i] = true;
                continue;
            }
            if (!strcmp(kind, "draft") && got == 4) {
                t.draft[i] = sec, t.draft_seen[i] = seen;
                seen_d[i] = true;
                continue;
            }
        }
        return ar_fail(AR_ERR_FORMAT, "%s:%d: not a cost table entry: '%s'", name, lineno, line);
    }
    for (int i = 0; i < AR_COST_SIZES; i++)
        if (!seen_v[i] || !seen_d[i])
            return ar_fail(AR_ERR_FORMAT, "%s: no verify or draft entry for n = %d", name,
                           ar_cost_size(i));
    if (!streamed) return ar_fail(AR_ERR_FORMAT, "%s: no 'streamed' line", name);
    if (t.streamed && !(t.floor > 0)) return ar_fail(AR_ERR_FORMAT, "%s: no 'floor' line", name);
    t.valid = true;
    *out = t;
    return AR_OK;
}
