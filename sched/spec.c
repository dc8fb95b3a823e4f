/* spec.c: speculation state and the speculative decoding step, phase by phase (spec.h). */
#include "spec.h"

#include <math.h>
#include <stdlib.h>

#include "engine.h"

/* ---- state ---- */

ar_status ar_spec_create(ar_engine *e, ar_drafter *d, const ar_tree_spec *spec, ar_spec **out) {
    *out = NULL;
    ar_spec *sp = calloc(1, sizeof *sp);
    if (!sp) {
        ar_drafter_free(d);
        return ar_fail(AR_ERR_NOMEM, "out of memory");
    }
    sp->drafter = d;
    sp->spec = spec->shape;
    sp->accept_sampled = ar_accept_sampled_from;
    sp->adaptive = spec->adaptive;
    const int32_t cap = AR_MIN(AR_TREE_MAX, e->tree_rows);
    if (sp->adaptive) {
        ar_sched_init(&sp->sched);
        sp->sched.no_plain_probes = e->stream != NULL;
        sp->spec.mode = AR_TREE_DYNAMIC;
        sp->spec.budget = cap - 1;
    }
    /* a tree never outgrows the context (nor, near its end, the room left: phase_draft); a
     * memory budget may cap verifications below that, and then a larger tree is refused */
    if (sp->spec.budget + 1 > cap && cap < AR_MIN(AR_TREE_MAX, e->kv->cap)) {
        const int32_t want = sp->spec.budget + 1;
        ar_spec_free(sp);
        return ar_fail(AR_ERR_INVALID_ARG,
                       "a tree of %d nodes is more than the %d rows a verification may take "
                       "under this memory budget",
                       want, cap);
    }
    ar_status s = ar_tree_init(&sp->tree, AR_MIN(sp->spec.budget + 1, cap));
    if (s == AR_OK) s = ar_accept_work_init(&sp->aw, e->n_vocab);
    if (s == AR_OK) s = ar_dist_init(&sp->p, e->n_vocab);
    sp->q = calloc((size_t)cap, sizeof *sp->q);
    sp->path = calloc((size_t)cap + 1, sizeof(int32_t));
    sp->target = calloc((size_t)cap, sizeof(int32_t));
    sp->tree_tokens = calloc((size_t)cap, sizeof(int32_t));
    sp->history = calloc((size_t)e->kv->cap + (size_t)cap + 1, sizeof(int32_t));
    sp->remap = calloc((size_t)cap, sizeof(int32_t));
    if (s == AR_OK &&
        (!sp->q || !sp->path || !sp->target || !sp->tree_tokens || !sp->history || !sp->remap))
        s = ar_fail(AR_ERR_NOMEM, "out of memory");
    if (s == AR_OK && e->params.pipeline && ar_drafter_kind_of(d) == AR_DRAFTER_MODEL)
        s = ar_pipeline_start(e, sp);
    if (s != AR_OK) {
        ar_spec_free(sp);
        return s;
    }
    *out = sp;
    return AR_OK;
}

void ar_spec_free(ar_spec *sp) {
    if (!sp) return;
    ar_pipeline_stop(sp);
    ar_drafter_free(sp->drafter);
    ar_tree_free(&sp->tree);
    ar_dist_free(&sp->p);
    free(sp->q);
    ar_accept_work_free(&sp->aw);
    free(sp->path);
    free(sp->target);
    free(sp->tree_tokens);
    free(sp->history);
    free(sp->remap);
    free(sp);
}

uint64_t ar_spec_bytes(const ar_engine *e) {
    const uint64_t cap = (uint64_t)AR_MIN(AR_TREE_MAX, e->tree_rows), V = (uint64_t)e->n_vocab;
    uint64_t b = ar_tree_bytes((int32_t)cap) * (e->params.pipeline ? 2 : 1);
    b += cap * (sizeof(void *) * 2 + 4 * sizeof(int32_t));
    b += ((uint64_t)e->kv->cap + cap) * sizeof(int32_t);         /* history */
    b += V * (sizeof(int32_t) + sizeof(float) + sizeof(double)); /* accept work */
    b += ar_dist_bytes(e->n_vocab);                              /* p */
    return b;
}

/* ---- one step ---- */

typedef struct step {
    ar_engine *e;
    ar_spec *sp;
    int32_t base; /* committed tokens before the step */
    bool greedy;
    ar_step_trace tr;
    double t0, t1;         /* the step's start; verification's start */
    double sync;           /* of the drafting time: the drafter catching up with the context */
    double t_eval, t_wait; /* the verifier's pass, and of it the wait for streamed weights */
    ar_draft_request req;
    bool pipelined, from_ahead, posted;
    int32_t guess_path[AR_TREE_MAX + 1], n_guess;
    int32_t guess_root; /* the bonus token the pipelined drafter predicted */
    int32_t bad_row;    /* a node whose logits hold NaN or +inf, or -1 */
    ar_accept_result res;
} step;

static void emit_trace(ar_engine *e, const ar_step_trace *t) {
    if (e->trace) e->trace(e->trace_user, t);
}

/* schedule: the adaptive scheduler may decode this step plainly (*done then). Without a cost
 * table, the first step is a plain one whose timing starts the table. */
static ar_status phase_schedule(step *st, int32_t *out, int32_t *n_out, bool *done) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    *done = false;
    if (!sp->adaptive) return AR_OK;
    const bool start = !sp->sched.costs.valid && !ar_costs_load_cache(e);
    /* a tree drafted ahead is ready: use it (the scheduler is not asked) */
    if (!start && (sp->ahead_valid || ar_sched_want_speculation(&sp->sched))) return AR_OK;
    double seconds, compute;
    ar_status s = ar_engine_plain_step_timed(e, out, n_out, &seconds, &compute);
    if (s != AR_OK) return s;
    if (start)
        ar_costs_start(e, seconds, compute);
    else
        ar_sched_update_plain(&sp->sched, seconds, compute);
    st->tr.verified = 1;
    st->tr.verify_seconds = seconds;
    st->tr.threshold = sp->sched.threshold;
    st->tr.reason =
        start ? "plain: timing the verifier to start the cost table" : sp->sched.why_plain;
    emit_trace(e, &st->tr);
    *done = true;
    return AR_OK;
}

/* draft: grow a tree at the pending token, or take the one drafted during the last pass */
static ar_status phase_draft(step *st) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    ar_tree *tree = &sp->tree;
    st->req = (ar_draft_request){.tokens = e->tokens,
                                 .n_committed = st->base,
                                 .spec = sp->spec,
                                 .sample = !st->greedy && e->sampling.temp > 0.0f &&
                                           !sp->adaptive && sp->spec.mode != AR_TREE_DYNAMIC,
                                 .sampling = &e->sampling,
                                 .rng = &sp->draft_rng};
    if (sp->adaptive) {
        st->req.spec.mode = AR_TREE_DYNAMIC;
        st->req.accept = ar_sched_accept;
        st->req.accept_user = &sp->sched;
        st->req.stop_below = sp->sched.threshold;
        st->req.shape = ar_sched_shape_level;
        st->req.shape_user = &sp->sched;
    }
    /* a tree never outgrows the context: shrink the budget near the end */
    const int32_t room = e->kv->cap - st->base;
    st->pipelined = sp->pipeline && !st->req.sample;
    st->from_ahead = st->pipelined && sp->ahead_valid && sp->tree_ahead.n <= room;
    if (st->from_ahead) {
        ar_tree tmp = *tree; /* swap buffers: the tree drafted ahead becomes this step's */
        *tree = sp->tree_ahead;
        sp->tree_ahead = tmp;
        const ar_dist **tq = sp->q;
        sp->q = sp->q_ahead;
        sp->q_ahead = tq;
        e->stats.n_pipelined++;
    } else {
        const int32_t saved_cap = tree->cap;
        tree->cap = AR_MIN(saved_cap, room);
        ar_status s = ar_drafter_draft(sp->drafter, &st->req, tree, sp->q);
        tree->cap = saved_cap;
        if (s != AR_OK) return s;
        st->sync = ar_drafter_last_sync_seconds(sp->drafter);
        if (sp->adaptive && !st->pipelined) { /* the drafter's batches, timed as they ran */
            const int32_t *rows;
            const double *secs;
            const int32_t nb = ar_drafter_last_batches(sp->drafter, &rows, &secs);
            for (int32_t i = 0; i < nb; i++) ar_sched_observe_draft(&sp->sched, rows[i], secs[i]);
        }
    }
    sp->ahead_valid = false;
    st->tr.drafted = tree->n - 1;
    st->tr.reason = sp->adaptive ? "speculate" : "fixed tree";
    return AR_OK;
}

/* shape: keep the nodes worth verifying (adaptive) */
static void phase_shape(step *st) {
    ar_spec *sp = st->sp;
    ar_tree *tree = &sp->tree;
    if (!sp->adaptive) return;
    const double t_draft = ar_now() - st->t0 - st->sync;
    const int32_t k = ar_sched_choose_size(&sp->sched, tree, t_draft, &st->tr.expected);
    if (k + 1 >= tree->n) return;
    /* prune by the calibrated path value (monotone along paths, like p_path) */
    for (int32_t i = 0; i < tree->n; i++) tree->nodes[i].p_path = tree->nodes[i].value;
    const int32_t n_old = tree->n;
    ar_tree_prune_to(tree, k + 1, sp->remap);
    ar_drafter_remap(sp->drafter, sp->remap, n_old);
    st->tr.reason = k == 0 ? "speculate: no draft node worth verifying" : "speculate: pruned";
}

/* guess: pipelining posts the likely outcome (the drafter's most likely path all accepted) so
 * that the drafter thread drafts the next tree from there while the verifier works */
static void phase_guess(step *st) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    const ar_tree *tree = &sp->tree;
    st->posted = false;
    if (!st->pipelined || st->base + tree->max_depth + 2 >= e->kv->cap) return;
    st->n_guess = 0;
    for (int32_t u = 0;;) {
        st->guess_path[st->n_guess++] = u;
        const int32_t best = ar_tree_likeliest_child(tree, u);
        if (best < 0) break;
        u = best;
    }
    int32_t *ctx = sp->history; /* scratch: the guessed context */
    memcpy(ctx, e->tokens, (size_t)st->base * sizeof(int32_t));
    for (int32_t j = 0; j < st->n_guess; j++)
        ctx[st->base + j] = tree->nodes[st->guess_path[j]].token;
    ar_pipeline_post(sp, ctx, st->base + st->n_guess, &st->req);
    st->posted = true;
}

/* verify: the whole tree in one batched forward pass of the verifier */
static ar_status phase_verify(step *st) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    const ar_tree *tree = &sp->tree;
    for (int32_t i = 0; i < tree->n; i++) sp->tree_tokens[i] = tree->nodes[i].token;
    ar_batch b = {.n = tree->n, .tokens = sp->tree_tokens, .parent = ar_tree_parents(tree)};
    const double w0 = ar_engine_stream_wait(e), t0 = ar_now();
    ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
    st->t_eval = ar_now() - t0;
    st->t_wait = ar_engine_stream_wait(e) - w0;
    const ar_status ds = st->posted ? ar_pipeline_wait(sp, &st->guess_root) : AR_OK;
    return s != AR_OK ? s : ds;
}

/* The verifier's distribution at tree node i, on demand for the acceptance walk: its sampling
 * transforms over the logits, with the committed context plus the path root..i as the
 * repetition-penalty history. */
static ar_status node_dist(void *user, int32_t i, const ar_dist **out) {
    step *st = user;
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    const ar_sampler_params *spp = &e->sampling;
    int32_t n_hist = 0;
    if (spp->repeat_penalty != 1.0f) {
        memcpy(sp->history, e->tokens, (size_t)st->base * sizeof(int32_t));
        n_hist = st->base + ar_tree_path_tokens(&sp->tree, i, sp->history + st->base);
    }
    const int32_t last_n = spp->repeat_last_n < 0 ? n_hist : AR_MIN(spp->repeat_last_n, n_hist);
    const float *logits = e->logits + (size_t)i * e->n_vocab;
    *out = &sp->p;
    ar_status s =
        ar_sampler_dist(spp, logits, e->n_vocab, sp->history + n_hist - last_n, last_n, &sp->p);
    if (s != AR_OK && ar_argmax_finite(logits, e->n_vocab) < 0) st->bad_row = i;
    return s;
}

/* accept: the rule walks the tree */
static ar_status phase_accept(step *st) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    const ar_tree *tree = &sp->tree;
    if (st->greedy) {
        for (int32_t i = 0; i < tree->n; i++) {
            sp->target[i] = ar_argmax_finite(e->logits + (size_t)i * e->n_vocab, e->n_vocab);
            if (sp->target[i] < 0) return ar_engine_bad_logits(e, st->base + tree->nodes[i].depth);
        }
        return ar_accept_greedy(tree, sp->target, sp->path, &st->res);
    }
    ar_status s =
        sp->accept_sampled(tree, node_dist, st, sp->q, &e->rng, &sp->aw, sp->path, &st->res);
    if (s == AR_ERR_INVALID_ARG && st->bad_row >= 0) /* the sampler refused the logits */
        s = ar_engine_bad_logits(e, st->base + tree->nodes[st->bad_row].depth);
    return s;
}

/* commit: the accepted path into both caches and the token history; the emitted tokens */
static void phase_commit(step *st, int32_t *out, int32_t cap, int32_t *n_out) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    const ar_tree *tree = &sp->tree;
    ar_accept_result *res = &st->res;
    /* never emit more than asked: a shorter accepted path is still exact, with the next path
     * token (accepted, hence distributed as the verifier's choice) as the bonus */
    if (res->n_path > cap) {
        res->n_path = cap;
        res->bonus = tree->nodes[sp->path[cap]].token;
    }
    /* a pipelined drafter has moved on to the guessed context: its next draft catches up from
     * the longest prefix it shares with the truth */
    ar_kv_commit(e->kv, sp->path, res->n_path);
    if (st->posted) {
        bool right = res->n_path == st->n_guess && res->bonus == st->guess_root;
        for (int32_t j = 0; right && j < st->n_guess; j++) right = sp->path[j] == st->guess_path[j];
        sp->ahead_valid = right && sp->tree_ahead.n >= 1;
        sp->n_ahead_tried++;
        sp->n_ahead_used += sp->ahead_valid;
    } else if (!sp->pipeline || !st->from_ahead) {
        ar_drafter_accept(sp->drafter, tree, sp->path, res->n_path);
    }
    for (int32_t j = 0; j < res->n_path; j++)
        e->tokens[st->base + j] = tree->nodes[sp->path[j]].token;
    e->tokens[st->base + res->n_path] = res->bonus;
    e->n_tokens = st->base + res->n_path + 1;
    e->last_row = sp->path[res->n_path - 1]; /* the bonus came from the last accepted node */
    int32_t k = 0;
    for (int32_t j = 1; j < res->n_path; j++) out[k++] = tree->nodes[sp->path[j]].token;
    out[k++] = res->bonus;
    *n_out = k;
}

/* account: statistics, the scheduler's models, the trace */
static void phase_account(step *st, int32_t n_path_full) {
    ar_engine *e = st->e;
    ar_spec *sp = st->sp;
    const ar_tree *tree = &sp->tree;
    for (int32_t i = 1; i < tree->n; i++) {
        const int32_t dep = tree->nodes[i].depth - 1;
        if (dep < 32) e->stats.drafted_at_depth[dep]++;
    }
    for (int32_t j = 1; j < st->res.n_path; j++) {
        const int32_t dep = tree->nodes[sp->path[j]].depth - 1;
        if (dep < 32) e->stats.accepted_at_depth[dep]++;
    }
    e->stats.n_drafted += tree->n - 1;
    e->stats.n_accepted += st->res.n_path - 1;
    e->stats.n_verify++;
    const double t2 = ar_now();
    e->stats.draft_seconds += st->t1 - st->t0;
    e->stats.verify_seconds += t2 - st->t1;
    if (sp->adaptive) {
        /* the model learns from the whole verification (before truncation to cap) */
        ar_sched_update(&sp->sched, tree, sp->path, n_path_full,
                        sp->warm ? (t2 - st->t0 - st->sync) : 0.0, n_path_full);
        ar_sched_observe_verify(&sp->sched, tree->n, st->t_eval, st->t_eval - st->t_wait);
    }
    sp->warm = true;
    st->tr.verified = tree->n;
    st->tr.depth = tree->max_depth;
    st->tr.accepted = st->res.n_path - 1;
    st->tr.draft_seconds = st->t1 - st->t0;
    st->tr.verify_seconds = t2 - st->t1;
    st->tr.threshold = sp->adaptive ? sp->sched.threshold : 0.0f;
    emit_trace(e, &st->tr);
}

ar_status ar_spec_step(ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out) {
    step st = {.e = e, .sp = e->spec, .base = e->kv->n_committed, .bad_row = -1};
    st.greedy = e->sampling.temp <= 0.0f && e->sampling.repeat_penalty == 1.0f;
    st.tr = (ar_step_trace){.step = e->n_steps, .n_committed = st.base};
    bool done;
    ar_status s = phase_schedule(&st, out, n_out, &done);
    if (s != AR_OK || done) return s;
    st.t0 = ar_now();
    if ((s = phase_draft(&st)) != AR_OK) return s;
    phase_shape(&st);
    st.t1 = ar_now();
    phase_guess(&st);
    if ((s = phase_verify(&st)) != AR_OK) return s;
    if ((s = phase_accept(&st)) != AR_OK) return s;
    const int32_t n_path_full = st.res.n_path;
    phase_commit(&st, out, cap, n_out);
    phase_account(&st, n_path_full);
    return AR_OK;
}
