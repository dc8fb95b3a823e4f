/* scheduler.h: the adaptive scheduler. Each step it decides whether to speculate and how big a
 * tree to verify, from a cost model (the verifier's time for a batch of n rows, the drafter's
 * time per batch) and an acceptance model (see below). The costs come from the cost cache (the
 * table an earlier run on the same files, machine and settings refined), or start as estimates
 * from the first real steps (a plain step times the verifier's single row; the drafter's single
 * row is estimated from its share of the weights; larger batches from a per-row slope) and are
 * refined by every verification and drafter batch that runs: no extra passes are spent on
 * calibration. A streamed verifier (a memory budget) costs at least its weights' reading time
 * per pass whatever the batch, so its trees grow until compute catches up with the I/O.
 * and an acceptance model (how often the verifier accepts a draft token, by the drafter's
 * confidence in it, as running counts).
 *   - each level of the draft is sized from the costs (ar_sched_shape_level), and drafting stops
 *     when another level would not pay, or when the best open path's estimated acceptance falls
 *     below a threshold that adapts to how past verifications went (LLMCad's self-adaptive
 *     fallback);
 *   - the drafted tree is cut to the n nodes that maximise expected tokens per second,
 *     (1 + sum of node values) / (draft time + verify time(n + 1));
 *   - when speculation is measured to be slower than plain decoding, the scheduler decodes
 *     plainly and probes speculation again after a back-off that doubles while it keeps losing;
 *     when the costs and the acceptance rate say no chain can pay (a drafter as slow as the
 *     verifier, or one that is rarely right), it backs off the same way without trying.
 * Given the same cost table (fixed with ar_sched_load_costs) and the same acceptance history,
 * its choices are deterministic. */
#ifndef ARBOR_SCHEDULER_H
#define ARBOR_SCHEDULER_H

#include "draft/drafter.h"
#include "tokentree/tokentree.h"

/* The acceptance model: how often the verifier accepts a draft token the drafter gave p, counted
 * in AR_ACCEPT_BINS equal bins of p. */
#define AR_ACCEPT_BINS 10
static inline int ar_accept_bin(float p) {
    int b = (int)(p * AR_ACCEPT_BINS);
    return b < 0 ? 0 : b >= AR_ACCEPT_BINS ? AR_ACCEPT_BINS - 1 : b;
}

/* Batch sizes of the cost table: every size up to 16, where trees are chosen and where kernels
 * change (the n <= 4 matmul kernels end at 4: a 5-row batch can cost far more than 4, which an
 * interpolation between powers of two would hide), then 32 .. 256 (streamed verifiers). */
#define AR_COST_SIZES 20
static inline int32_t ar_cost_size(int i) { return i < 16 ? i + 1 : 32 << (i - 16); }

typedef struct ar_cost_table {
    double verify[AR_COST_SIZES];  /* seconds for a verifier pass of ar_cost_size(i) rows */
    double draft[AR_COST_SIZES];   /* seconds for a drafter batch of ar_cost_size(i) rows */
    double compute[AR_COST_SIZES]; /* of verify: time not spent waiting for streamed weights */
    /* how much measurement each entry holds (a decaying count; 0: estimated from the others) */
    double verify_seen[AR_COST_SIZES], draft_seen[AR_COST_SIZES];
    bool streamed;                 /* verify >= a whole pass's reading time, whatever the rows */
    double floor;                  /* streamed: that reading time, as the passes that waited
                                      for it measured it; a pass then costs
                                      max(floor, compute[n]) */
    bool valid;
} ar_cost_table;

/* Per-row growth of a batch's cost, as a share of one row's, assumed until measured. */
#define AR_COST_PRIOR_SLOPE 0.25

typedef struct ar_sched {
    ar_cost_table costs;
    bool fixed_costs;           /* loaded from a file: no calibration, no online updates */
    bool no_plain_probes;       /* T(1) is not re-measured by plain steps (a streamed verifier:
                                   a plain pass costs as much as a tree's) */
    double acc[AR_ACCEPT_BINS]; /* accepted draft tokens whose parent was accepted, by bin */
    double prop[AR_ACCEPT_BINS];/* proposed draft tokens whose parent was accepted, by bin */
    double first_acc[AR_ACCEPT_BINS], first_prop[AR_ACCEPT_BINS]; /* the same for likeliest
                                 * children alone (a confident drafter's first choice is accepted
                                 * far more often than its p says, its other children less) */
    double top_acc, top_prop;   /* the same for each accepted node's likeliest child: a chain's */
    float accept_table[AR_ACCEPT_BINS]; /* all children */
    float first_table[AR_ACCEPT_BINS];  /* likeliest children */
    float rest_table[AR_ACCEPT_BINS];   /* the others */
    float threshold;            /* stop drafting below this path value */
    double win_tokens, win_seconds; /* recent speculative steps (decaying sums) */
    int32_t win_steps;          /* speculative steps measured since the last probe began */
    int32_t plain_left;         /* plain steps before the next speculation probe */
    int32_t backoff;
    int32_t since_plain;        /* speculative steps since the last plain one */
    const char *why_plain;      /* the reason of the last "no" of ar_sched_want_speculation */
    int64_t step;
} ar_sched;

void ar_sched_init(ar_sched *s);
/* The estimated probability that the verifier accepts a draft token the drafter gave p (user:
 * the ar_sched; the drafter's ar_draft_request.accept). A node's value is the product of these
 * along its path. */
float ar_sched_accept(const void *user, float p, bool first);
/* Interpolated seconds for a verifier / drafter batch of n rows. */
double ar_sched_verify_cost(const ar_sched *s, int32_t n);
double ar_sched_draft_cost(const ar_sched *s, int32_t n);
/* A starting table from one measured single-row verifier pass (`compute` of its `seconds` not
 * waiting for streamed weights; == seconds in memory) and an estimated single-row drafter batch:
 * larger batches follow AR_COST_PRIOR_SLOPE until measured. */
void ar_sched_set_prior(ar_sched *s, double verify1, double compute1, double draft1,
                        bool streamed);
/* Records a measured verifier pass / drafter batch of n rows (online update: the entry moves
 * towards it, and the entries not measured yet are estimated again from the measured ones;
 * ignored with fixed costs). */
void ar_sched_observe_verify(ar_sched *s, int32_t n, double seconds, double compute);
void ar_sched_observe_draft(ar_sched *s, int32_t n, double seconds);

/* Should this step speculate? No while the back-off of plain steps counts down; no (starting a
 * back-off) when the costs and the acceptance rate say no chain could pay; and no every 32nd
 * step (a plain step keeps the measured T(1) current; not with fixed costs). s->why_plain says
 * which. */
bool ar_sched_want_speculation(ar_sched *s);
/* Could a chain of d <= 16 draft tokens beat plain decoding, with the rate a at which the
 * likeliest child of an accepted node was accepted: (1 + a + ... + a^d) / (d * draft_cost(1) + verify_cost(d + 1)) > 1 / verify_cost(1)? */
bool ar_sched_can_pay(const ar_sched *s);
/* The number of draft nodes (root excluded) worth verifying: the k maximising
 * (1 + sum of the k best node values) / (draft_seconds + verify_cost(k + 1)). Node values must
 * be set (tree->nodes[i].value). */
int32_t ar_sched_choose_size(const ar_sched *s, const ar_tree *tree, double draft_seconds,
                             float *expected_tokens);
/* The drafter's shape callback (ar_draft_request.shape, user = the ar_sched): sizes a dynamic
 * tree's next level from the costs. With the candidates valued by the acceptance model, it
 * compares stopping after adding the ones in the best cut with adding m of them, paying one
 * drafter batch to evaluate them (the larger of the mean batch so far and draft_cost(m)) and
 * gaining a best child under each, valued by the best-child-to-parent ratio of this level; it
 * returns the better option's m and sets *grow when that is growing. Reads only. */
int32_t ar_sched_shape_level(const void *user, const ar_tree *tree, const ar_tree_cand *cands,
                             int32_t n_cands, double seconds, int32_t levels, bool *grow);
/* After a verification: the accepted path, the step's time (<= 0: not to be used for the
 * fallback decision) and the tokens it produced. */
void ar_sched_update(ar_sched *s, const ar_tree *tree, const int32_t *path, int32_t n_path,
                     double seconds, int32_t tokens);
/* After a plain step of `seconds` (`compute` of them not waiting for streamed weights). */
void ar_sched_update_plain(ar_sched *s, double seconds, double compute);

/* Cost table files: one line per entry, "verify N SECONDS" / "draft N SECONDS", for every N of
 * the table (1..16, 32, 64; 128 and 256 optional, extrapolated when absent); "# " comments. A
 * file fixes the table (no online updates). */
ar_status ar_sched_load_costs(ar_sched *s, const char *path);
ar_status ar_sched_save_costs(const ar_sched *s, const char *path);
/* The table as text with its measurement weights and compute shares (the cost cache's entries):
 * lines "verify N SECONDS SEEN COMPUTE", "draft N SECONDS SEEN", "streamed 0|1". Parsing
 * checks every value; on failure the table is left as it was. */
int ar_cost_table_format(const ar_cost_table *t, char *buf, size_t cap);
ar_status ar_cost_table_parse(const char *text, const char *name, ar_cost_table *out);

/* The acceptance model's counts as text (kept in the cost cache beside the costs), each bin's
 * weight capped at AR_ACCEPT_KEEP observations so that a run with another prompt or sampling
 * relearns it within a few steps: lines "accept BIN ACC PROP FIRST_ACC FIRST_PROP" for every bin
 * and "first ACC PROP" (all first choices). Parsing checks every count (0 <= acc <= prop) and
 * applies them only when all are good. */
#define AR_ACCEPT_KEEP 32.0
int ar_sched_acceptance_format(const ar_sched *s, char *buf, size_t cap);
ar_status ar_sched_acceptance_parse(ar_sched *s, const char *text, const char *name);

#endif
