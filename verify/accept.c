/* accept.c: acceptance rules for a verified token tree: greedy, and speculative sampling with
 * sampled (with replacement, merged) or deterministic children. Both stochastic rules are one
 * recursion -- recursive rejection sampling -- differing only in the law of the next proposal.
 *
 * WHY IT IS EXACT.
 *
 * Lemma (one speculative step). Let r be the target distribution and Y a proposal with law s,
 * independent of a uniform U in [0, 1). Emit Y when U < r(Y)/s(Y); otherwise emit a draw from the
 * residual r' = (r - s)+ / Z, Z = sum_x (r(x) - s(x))+. Then the emitted token has law r:
 *   P(emit x by acceptance) = s(x) min(1, r(x)/s(x)) = min(r(x), s(x)),
 *   P(reject) = 1 - sum_x min(r(x), s(x)) = Z,
 *   P(emit x) = min(r(x), s(x)) + Z (r(x) - s(x))+ / Z = r(x).
 * (Z = 0 means r = s and rejection never happens.) The draw "from r'" may be replaced by any
 * procedure whose output has law r' given everything that happened so far.
 *
 * One node. Children y_1..y_m are tried in order with target r_0 = p (the verifier at the node).
 * Child y_j is proposed with law s_j, its conditional law given the earlier children; on
 * rejection the target becomes r_j = (r_{j-1} - s_j)+ / Z_j and the next child is tried; after
 * the last rejection the bonus is drawn from r_m. By induction on the children left, the rest of
 * the procedure emits exactly r_j after the j-th rejection (base: the bonus draw), so by the lemma
 * the node emits exactly p. Note that a rejected y_j has r_{j-1}(y_j) < s_j(y_j), so
 * r_j(y_j) = 0: a rejected token is never emitted later at the same node.
 *
 * Deterministic children (q == NULL): the proposals are fixed given the drafter, so s_j is the
 * point mass on y_j. Then y_j is accepted with probability r_{j-1}(y_j) and r_j is r_{j-1} with
 * y_j removed and renormalised: sampling p by elimination, which is the chain rule.
 *
 * Sampled children (q != NULL). The drafter drew tokens i.i.d. from q; the tree merged
 * duplicates, so the children are the distinct tokens in order of first draw. Given
 * y_1..y_j, the draws after the one that produced y_j are fresh i.i.d. q (that draw's position is
 * a stopping time), so the next new token has law q restricted to the other tokens:
 *   s_{j+1}(x) = q(x) / (1 - q(y_1) - ... - q(y_j))   for x not among y_1..y_j, else 0.
 * Whether a next new token exists (how many draws were made) must not depend on the undrawn
 * tokens; given that it exists its law is s_{j+1}, and if none exists the node emits r_j, which
 * is exact either way. This is the rule used here.
 * SpecInfer's multi-step speculative sampling subtracts the same q after every rejection
 * (r_j = (r_{j-1} - q)+ / Z). That is exact when every draw is its own candidate, duplicates
 * included: each duplicate is rejected surely (r(y) = 0 by then) but still subtracts q once more.
 * A merged tree has lost those draws, and SpecInfer's rule on distinct children is biased (the
 * tests show a 200k-sample chi-square far beyond the critical value); renormalising q over the
 * tokens not yet tried, as above, restores exactness (recursive rejection sampling without
 * replacement, as in Jeon et al. 2024, "Recursive Speculative Decoding").
 *
 * The tree. After accepting child y the walk continues at y with the verifier's distribution
 * given y's path, and y's children were drafted before (so independently of) this call's random
 * numbers; by induction on depth the emitted sequence has exactly the verifier's joint law.
 * Greedy is the point-mass case: the child equal to the argmax is accepted, every other child is
 * rejected, and the bonus is the argmax. */
#include "verify/accept.h"

#include <stdlib.h>

ar_status ar_accept_greedy(const ar_tree *t, const int32_t *target, int32_t *path,
                           ar_accept_result *res) {
    if (t->n < 1) return ar_fail(AR_ERR_INVALID_ARG, "accept: empty tree");
    int32_t u = 0, n = 0;
    path[n++] = 0;
    for (;;) {
        int32_t c = ar_tree_find_child(t, u, target[u]);
        if (c < 0) break;
        path[n++] = u = c;
    }
    res->n_path = n;
    res->bonus = target[u];
    return AR_OK;
}

ar_status ar_accept_work_init(ar_accept_work *w, int32_t n_vocab) {
    memset(w, 0, sizeof *w);
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return ar_fail(AR_ERR_INVALID_ARG, "accept: vocabulary size %d out of range", n_vocab);
    w->slot = calloc((size_t)n_vocab, sizeof *w->slot);
    w->q = calloc((size_t)n_vocab, sizeof *w->q);
    w->resid = malloc((size_t)n_vocab * sizeof *w->resid);
    if (!w->slot || !w->q || !w->resid) {
        ar_accept_work_free(w);
        return ar_fail(AR_ERR_NOMEM, "accept: cannot allocate work memory for %d tokens", n_vocab);
    }
    w->n_vocab = n_vocab;
    return AR_OK;
}

void ar_accept_work_free(ar_accept_work *w) {
    free(w->slot);
    free(w->q);
    free(w->resid);
    memset(w, 0, sizeof *w);
}

static ar_status check_dist(const ar_dist *d, int32_t n_vocab, const char *what, int32_t node) {
    if (!d || d->n < 1 || d->n > n_vocab)
        return ar_fail(AR_ERR_INVALID_ARG, "accept: node %d: %s distribution missing or empty",
                       node, what);
    double total = 0.0;
    for (int32_t k = 0; k < d->n; k++) {
        if (d->id[k] < 0 || d->id[k] >= n_vocab || !(d->p[k] >= 0.0f && d->p[k] <= 1.0f))
            return ar_fail(AR_ERR_INVALID_ARG,
                           "accept: node %d: %s distribution entry %d: id %d "
                           "(vocabulary %d), p %g",
                           node, what, k, d->id[k], n_vocab, (double)d->p[k]);
        total += d->p[k];
    }
    if (!(total > 0.0))
        return ar_fail(AR_ERR_INVALID_ARG, "accept: node %d: %s distribution has no mass", node,
                       what);
    return AR_OK;
}

/* Draws from the residual (unnormalised, total `mass`) in the order of p's entries. */
static int32_t sample_residual(const ar_dist *p, const double *r, double mass, ar_rng *rng) {
    double u = ar_rng_uniform(rng) * mass, cum = 0.0;
    int32_t last = -1;
    for (int32_t k = 0; k < p->n; k++) {
        if (r[k] <= 0.0) continue;
        cum += r[k];
        last = k;
        if (cum > u) return p->id[k];
    }
    return p->id[last >= 0 ? last : 0]; /* rounding left the total below u */
}

/* Tries the children of node u against the verifier's p (and the drafter's q, NULL for
 * deterministic children). Returns the accepted child's index, or -1 with *bonus drawn from the
 * residual. w->slot and w->q are scattered on entry and cleared on exit. */
static ar_status verify_node(const ar_tree *t, int32_t u, const ar_dist *p, const ar_dist *q,
                             ar_rng *rng, ar_accept_work *w, int32_t *accepted, int32_t *bonus) {
    double *r = w->resid;
    double mass = 0.0;
    for (int32_t k = 0; k < p->n; k++) {
        w->slot[p->id[k]] = k + 1;
        r[k] = p->p[k];
        mass += r[k];
    }
    double q_left = 0.0; /* drafter mass of the tokens not yet tried */
    if (q)
        for (int32_t k = 0; k < q->n; k++) {
            w->q[q->id[k]] = q->p[k];
            q_left += q->p[k];
        }

    ar_status st = AR_OK;
    *accepted = -1;
    for (int32_t c = t->nodes[u].first_child; c >= 0; c = t->nodes[c].next_sibling) {
        int32_t y = t->nodes[c].token;
        bool in_vocab = y >= 0 && y < w->n_vocab;
        int32_t ky = in_vocab ? w->slot[y] - 1 : -1;
        double r_y = ky >= 0 ? r[ky] / mass : 0.0;
        double s_y = 1.0; /* the proposal's probability of y: a point mass when deterministic */
        if (q) {
            float q_y = in_vocab ? w->q[y] : 0.0f;
            if (!(q_y > 0.0f)) {
                st = ar_fail(AR_ERR_INVALID_ARG,
                             "accept: node %d: sampled child %d (token %d) "
                             "has drafter probability 0",
                             u, c, y);
                break;
            }
            q_left = AR_MAX(q_left, (double)q_y); /* rounding must not shrink it below q(y) */
            s_y = q_y / q_left;
        }
        if (ar_rng_uniform(rng) * s_y < r_y) {
            *accepted = c;
            break;
        }
        /* rejected: r <- (r - s)+, kept unnormalised with total `mass`. The new total is 0 only
         * when r == s, where rejection has probability 0; if rounding rejects anyway the target
         * stays as it was. */
        if (!q) {
            if (ky >= 0) {
                double saved = r[ky], new_mass = 0.0;
                r[ky] = 0.0;
                for (int32_t k = 0; k < p->n; k++) new_mass += r[k];
                if (new_mass > 0.0)
                    mass = new_mass;
                else
                    r[ky] = saved;
            }
        } else {
            /* s(x) = q(x) / q_left over the untried tokens; y leaves q afterwards */
            double scale = mass / q_left, new_mass = 0.0;
            for (int32_t k = 0; k < p->n; k++)
                new_mass += AR_MAX(0.0, r[k] - w->q[p->id[k]] * scale);
            if (new_mass > 0.0) {
                for (int32_t k = 0; k < p->n; k++)
                    r[k] = AR_MAX(0.0, r[k] - w->q[p->id[k]] * scale);
                mass = new_mass;
            }
            q_left -= w->q[y];
            w->q[y] = 0.0f;
        }
    }
    if (st == AR_OK && *accepted < 0) *bonus = sample_residual(p, r, mass, rng);

    for (int32_t k = 0; k < p->n; k++) w->slot[p->id[k]] = 0;
    if (q)
        for (int32_t k = 0; k < q->n; k++) w->q[q->id[k]] = 0.0f;
    return st;
}

ar_status ar_accept_sampled_from(const ar_tree *t, ar_dist_source p_of, void *p_user,
                                 const ar_dist *const *q, ar_rng *rng, ar_accept_work *w,
                                 int32_t *path, ar_accept_result *res) {
    if (t->n < 1) return ar_fail(AR_ERR_INVALID_ARG, "accept: empty tree");
    int32_t u = 0, n = 0;
    path[n++] = 0;
    for (;;) {
        const ar_dist *qu = q ? q[u] : NULL;
        const ar_dist *pu = NULL;
        ar_status st = p_of(p_user, u, &pu);
        if (st == AR_OK) st = check_dist(pu, w->n_vocab, "verifier", u);
        if (st == AR_OK && qu) st = check_dist(qu, w->n_vocab, "drafter", u);
        if (st != AR_OK) return st;
        int32_t c, bonus = -1;
        st = verify_node(t, u, pu, qu, rng, w, &c, &bonus);
        if (st != AR_OK) return st;
        if (c < 0) {
            res->n_path = n;
            res->bonus = bonus;
            return AR_OK;
        }
        path[n++] = u = c;
    }
}

static ar_status from_array(void *user, int32_t node, const ar_dist **out) {
    *out = ((const ar_dist *const *)user)[node];
    return AR_OK;
}

ar_status ar_accept_sampled(const ar_tree *t, const ar_dist *const *p, const ar_dist *const *q,
                            ar_rng *rng, ar_accept_work *w, int32_t *path, ar_accept_result *res) {
    return ar_accept_sampled_from(t, from_array, (void *)p, q, rng, w, path, res);
}

ar_status ar_accept_deterministic(const ar_tree *t, const ar_dist *const *p, ar_rng *rng,
                                  ar_accept_work *w, int32_t *path, ar_accept_result *res) {
    return ar_accept_sampled(t, p, NULL, rng, w, path, res);
}
