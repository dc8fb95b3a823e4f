/* engine.c: prompt prefill with prefix reuse, and the plain decoding step. */
#include "engine.h"

#include <pthread.h>

#include "topo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The buffers a context of p.n_ctx cells needs (KV cache, logits rows, per-cell arrays of the
 * engine and of each thread's attention scratch), checked against physical memory before any is
 * allocated: an oversized context gets the numbers, not an allocation that succeeds lazily and
 * fails when the pages are touched. */
static ar_status check_memory(const ar_model *m, const ar_engine_params *p, int32_t max_batch) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return AR_OK; /* unknown: the allocations decide */
    double phys = (double)pages * (double)page, gib = 1073741824.0;
    double kv = 2.0 * m->hp.n_layer * (double)p->n_ctx * m->hp.n_head_kv * m->hp.head_dim *
                (p->kv_type == AR_TYPE_F16 ? 2 : 4);
    double logits = (double)max_batch * m->hp.n_vocab * sizeof(float);
    double cells = (double)p->n_ctx * (2 * sizeof(int32_t) + 2 * sizeof(float) * p->n_threads);
    if (kv + logits + cells <= phys) return AR_OK;
    return ar_fail(AR_ERR_NOMEM,
                   "a context of %d cells needs %.1f GiB (KV cache %.1f GiB, logits %.1f GiB, "
                   "per-cell buffers %.1f GiB), more than the %.1f GiB of physical memory",
                   p->n_ctx, (kv + logits + cells) / gib, kv / gib, logits / gib, cells / gib,
                   phys / gib);
}

ar_status ar_engine_create(const ar_model *m, ar_engine_params p, ar_engine **out) {
    *out = NULL;
    if (m->vocab_only) return ar_fail(AR_ERR_INVALID_ARG, "%s: vocabulary-only model", m->path);
    if (p.n_ctx <= 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.n_batch <= 0) p.n_batch = 512;
    ar_topo *topo = NULL;
    ar_placement *plan = NULL;
    if (ar_topo_load(NULL, &topo) == AR_OK && (plan = calloc(1, sizeof *plan)) != NULL) {
        ar_topo_plan(topo, p.n_threads, 0, plan);
        if (p.n_threads <= 0) p.n_threads = plan->n_verifier; /* one per physical core */
    }
    if (p.n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = nc > 0 ? (int32_t)nc : 1;
    }
    ar_clear_error();
    int32_t max_batch = AR_MAX(p.n_batch, AR_BATCH_INVARIANT);
    max_batch = AR_MIN(max_batch, p.n_ctx);
    ar_engine *e = calloc(1, sizeof *e);
    ar_status s = AR_OK;
    if (!e) {
        s = ar_fail(AR_ERR_NOMEM, "engine: out of memory");
        goto fail;
    }
    e->model = m;
    e->params = p;
    e->ws_rows = max_batch;
    e->n_vocab = m->hp.n_vocab;
    if ((s = check_memory(m, &p, max_batch)) != AR_OK) goto fail;
    if ((s = ar_kv_create(m, p.n_ctx, 0, p.kv_type, &e->kv)) != AR_OK) goto fail;
    if ((s = ar_workspace_create(m, max_batch, p.n_ctx, &e->ws)) != AR_OK) goto fail;
    if ((s = ar_pool_create(p.n_threads, p.pin && plan ? plan->verifier_cpus : NULL, &e->pool)) !=
        AR_OK)
        goto fail;
    if (p.pin && plan) {
        e->pin_failed = ar_pool_pin_failed(e->pool);
        snprintf(e->placement, sizeof e->placement, "%s", plan->note);
        if (ar_topo_bind_memory(topo, plan, m->gguf->map, m->gguf->size) != AR_OK)
            ar_clear_error(); /* NUMA binding is an optimisation: without it, still correct */
    }
    if ((s = ar_dist_init(&e->dist, e->n_vocab)) != AR_OK) goto fail;
    e->tokens = calloc((size_t)p.n_ctx + 1, sizeof(int32_t));
    e->logits = malloc((size_t)max_batch * (size_t)e->n_vocab * sizeof(float));
    if (!e->tokens || !e->logits) {
        s = ar_fail(AR_ERR_NOMEM, "engine: out of memory for %d x %d logits", max_batch,
                    e->n_vocab);
        goto fail;
    }
    e->sampling = ar_sampler_default_params();
    ar_rng_seed(&e->rng, e->sampling.seed);
    free(plan);
    ar_topo_free(topo);
    *out = e;
    return AR_OK;
fail:
    free(plan);
    ar_topo_free(topo);
    ar_engine_free(e);
    return s;
}

static void spec_free(ar_spec *sp);

void ar_engine_free(ar_engine *e) {
    if (!e) return;
    spec_free(e->spec);
    ar_kv_free(e->kv);
    ar_workspace_free(e->ws);
    ar_pool_free(e->pool);
    ar_dist_free(&e->dist);
    free(e->tokens);
    free(e->logits);
    free(e);
}

/* The drafter's sampling stream is derived from the same seed, so a generation reproduces
 * whatever the context generated before (sampled trees draw from it). */
static void seed_draft_rng(ar_engine *e) {
    if (e->spec) ar_rng_seed(&e->spec->draft_rng, e->sampling.seed ^ 0x9e3779b97f4a7c15ull);
}

void ar_engine_set_sampling(ar_engine *e, const ar_sampler_params *sp) {
    e->sampling = *sp;
    ar_rng_seed(&e->rng, sp->seed);
    seed_draft_rng(e);
}

void ar_engine_reset(ar_engine *e) {
    ar_kv_truncate(e->kv, 0);
    if (e->spec) ar_drafter_reset(e->spec->drafter);
    e->n_tokens = 0;
    e->has_pending = false;
}

ar_status ar_engine_prefill(ar_engine *e, const int32_t *prompt, int32_t n, int32_t *n_reused) {
    *n_reused = 0;
    if (n < 1) return ar_fail(AR_ERR_INVALID_ARG, "empty prompt: at least one token is needed");
    if (n > e->kv->cap)
        return ar_fail(AR_ERR_CONTEXT_FULL, "prompt of %d tokens does not fit the context of %d",
                       n, e->kv->cap);
    for (int32_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= e->n_vocab)
            return ar_fail(AR_ERR_INVALID_ARG, "prompt token %d at index %d out of range [0, %d)",
                           prompt[i], i, e->n_vocab);
    /* reuse the committed tokens the new prompt starts with */
    int32_t keep = 0;
    while (keep < e->kv->n_committed && keep < n - 1 && e->tokens[keep] == prompt[keep]) keep++;
    ar_kv_truncate(e->kv, keep);
    *n_reused = keep;
    int32_t max_rows = AR_MIN(e->params.n_batch, e->kv->cap);
    for (int32_t i = keep; i < n - 1;) {
        int32_t rows = AR_MIN(max_rows, n - 1 - i);
        /* prompt rows need no logits, only their K/V */
        ar_batch b = {.n = rows, .tokens = prompt + i, .skip_logits = true};
        ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, NULL);
        if (s != AR_OK) return s;
        ar_kv_commit_all(e->kv, rows);
        i += rows;
    }
    memcpy(e->tokens, prompt, (size_t)n * sizeof(int32_t));
    e->n_tokens = n;
    e->has_pending = true;
    if (e->spec) {
        e->spec->warm = false;        /* the drafter's catch-up is not a step's cost */
        e->spec->ahead_valid = false; /* drafted ahead for the context the prompt replaces */
    }
    return AR_OK;
}

/* Samples from the logits of the last committed token. */
static int32_t sample(ar_engine *e, const float *logits) {
    const ar_sampler_params *sp = &e->sampling;
    if (sp->temp <= 0.0f && sp->repeat_penalty == 1.0f) return ar_argmax(logits, e->n_vocab);
    int32_t hist = e->n_tokens;
    int32_t last_n = sp->repeat_last_n < 0 ? hist : AR_MIN(sp->repeat_last_n, hist);
    ar_status s = ar_sampler_dist(sp, logits, e->n_vocab, e->tokens + hist - last_n, last_n,
                                  &e->dist);
    if (s != AR_OK) return ar_argmax(logits, e->n_vocab);
    return ar_dist_sample(&e->dist, &e->rng);
}

static ar_status spec_step(ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out);
static ar_status plain_step(ar_engine *e, int32_t *out, int32_t *n_out);

ar_status ar_engine_step(ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out) {
    *n_out = 0;
    if (!e->has_pending) return ar_fail(AR_ERR_INVALID_ARG, "engine: no prompt");
    if (cap < 1) return ar_fail(AR_ERR_INVALID_ARG, "engine: no room for output");
    if (e->kv->n_committed + 1 > e->kv->cap)
        return ar_fail(AR_ERR_CONTEXT_FULL, "context full (%d tokens)", e->kv->cap);
    e->n_steps++;
    if (e->spec) return spec_step(e, out, cap, n_out);
    if (!e->trace) return plain_step(e, out, n_out);
    ar_step_trace tr = {.step = e->n_steps, .n_committed = e->kv->n_committed, .verified = 1,
                        .reason = "plain"};
    double t0 = ar_now();
    ar_status s = plain_step(e, out, n_out);
    tr.verify_seconds = ar_now() - t0;
    e->trace(e->trace_user, &tr);
    return s;
}

/* Evaluates the pending token alone and samples the next one. */
static ar_status plain_step(ar_engine *e, int32_t *out, int32_t *n_out) {
    int32_t pending = e->tokens[e->n_tokens - 1];
    ar_batch b = {.n = 1, .tokens = &pending, .parent = NULL, .logits = NULL};
    ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
    if (s != AR_OK) return s;
    ar_kv_commit_all(e->kv, 1);
    int32_t t = sample(e, e->logits);
    e->tokens[e->n_tokens++] = t;
    e->stats.n_plain_steps++;
    if (e->spec) e->spec->ahead_valid = false; /* drafted from a context this step changed */
    out[0] = t;
    *n_out = 1;
    return AR_OK;
}

/* ---- speculative decoding ---- */

/* Pipelining: a thread that, given the context up to the leaf of the verified tree's most likely
 * path, predicts the bonus token with the drafter and drafts the next tree rooted at it. */
typedef struct draft_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;           /* 0 idle, 1 job posted, 2 job done, -1 stop */
    ar_spec *sp;
    int32_t *ctx;        /* [cap]: the guessed context, then the predicted root */
    int32_t n_ctx;       /* guessed context length (root excluded) */
    int32_t root;        /* the predicted bonus token */
    ar_draft_request req;
    ar_status status;
} draft_worker;

static void *draft_worker_main(void *arg) {
    draft_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->state == 0 || w->state == 2) pthread_cond_wait(&w->cv, &w->mu);
        int state = w->state;
        pthread_mutex_unlock(&w->mu);
        if (state < 0) return NULL;
        ar_spec *sp = w->sp;
        ar_status s = ar_drafter_predict_next(sp->drafter, w->ctx, w->n_ctx, &w->root);
        if (s == AR_OK && w->root >= 0) {
            w->ctx[w->n_ctx] = w->root;
            w->req.tokens = w->ctx;
            w->req.n_committed = w->n_ctx;
            s = ar_drafter_draft(sp->drafter, &w->req, &sp->tree_ahead, sp->q_ahead);
        }
        pthread_mutex_lock(&w->mu);
        w->status = s;
        w->state = 2;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

static void worker_post(draft_worker *w) {
    pthread_mutex_lock(&w->mu);
    w->state = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static ar_status worker_wait(draft_worker *w) {
    pthread_mutex_lock(&w->mu);
    while (w->state == 1) pthread_cond_wait(&w->cv, &w->mu);
    w->state = 0;
    ar_status s = w->status;
    pthread_mutex_unlock(&w->mu);
    return s;
}

static void worker_stop(draft_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->state = -1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->ctx);
    free(w);
}

static ar_status start_pipeline(ar_engine *e, ar_spec *sp) {
    int32_t nt = e->params.draft_threads > 0 ? e->params.draft_threads : 1;
    ar_status s = ar_pool_create(nt, NULL, &sp->draft_pool);
    if (s != AR_OK) return s;
    if ((s = ar_tree_init(&sp->tree_ahead, sp->tree.cap)) != AR_OK) return s;
    sp->q_ahead = calloc(AR_BATCH_INVARIANT, sizeof *sp->q_ahead);
    draft_worker *w = calloc(1, sizeof *w);
    if (!sp->q_ahead || !w) {
        free(w);
        return ar_fail(AR_ERR_NOMEM, "pipelining: out of memory");
    }
    w->sp = sp;
    w->ctx = calloc((size_t)e->kv->cap + 2, sizeof(int32_t));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (!w->ctx || pthread_create(&w->thread, NULL, draft_worker_main, w) != 0) {
        free(w->ctx);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return ar_fail(AR_ERR_NOMEM, "pipelining: cannot start the drafting thread");
    }
    sp->worker = w;
    ar_drafter_set_pool(sp->drafter, sp->draft_pool);
    sp->pipeline = true;
    return AR_OK;
}

static void spec_free(ar_spec *sp) {
    if (!sp) return;
    worker_stop(sp->worker);
    ar_pool_free(sp->draft_pool);
    ar_tree_free(&sp->tree_ahead);
    free(sp->q_ahead);
    ar_drafter_free(sp->drafter);
    ar_tree_free(&sp->tree);
    if (sp->p)
        for (int i = 0; i < AR_BATCH_INVARIANT; i++) ar_dist_free(&sp->p[i]);
    free(sp->p);
    free(sp->pp);
    free(sp->q);
    ar_accept_work_free(&sp->aw);
    free(sp->path);
    free(sp->target);
    free(sp->tree_tokens);
    free(sp->history);
    free(sp->remap);
    free(sp);
}

ar_status ar_engine_set_drafter(ar_engine *e, ar_drafter *d, const ar_tree_spec *spec) {
    ar_spec *sp = calloc(1, sizeof *sp);
    if (!sp) {
        ar_drafter_free(d);
        return ar_fail(AR_ERR_NOMEM, "out of memory");
    }
    sp->drafter = d;
    sp->spec = *spec;
    sp->adaptive = spec->mode == AR_TREE_ADAPTIVE;
    if (sp->adaptive) {
        ar_sched_init(&sp->sched);
        sp->spec.mode = AR_TREE_DYNAMIC;
        sp->spec.budget = AR_BATCH_INVARIANT - 1;
    }
    const int32_t cap = AR_BATCH_INVARIANT;
    ar_status s = ar_tree_init(&sp->tree, AR_MIN(cap, sp->spec.budget + 1));
    if (s == AR_OK) s = ar_accept_work_init(&sp->aw, e->n_vocab);
    sp->q = calloc(cap, sizeof *sp->q);
    sp->pp = calloc(cap, sizeof *sp->pp);
    sp->p = calloc(cap, sizeof *sp->p);
    sp->path = calloc(cap + 1, sizeof(int32_t));
    sp->target = calloc(cap, sizeof(int32_t));
    sp->tree_tokens = calloc(cap, sizeof(int32_t));
    sp->history = calloc((size_t)e->kv->cap + cap + 1, sizeof(int32_t));
    sp->remap = calloc(cap, sizeof(int32_t));
    if (s == AR_OK && (!sp->q || !sp->pp || !sp->p || !sp->path || !sp->target ||
                       !sp->tree_tokens || !sp->history || !sp->remap))
        s = ar_fail(AR_ERR_NOMEM, "out of memory");
    if (s != AR_OK) {
        spec_free(sp);
        return s;
    }
    if (e->params.pipeline && ar_drafter_kind_of(d) == AR_DRAFTER_MODEL &&
        (s = start_pipeline(e, sp)) != AR_OK) {
        spec_free(sp);
        return s;
    }
    spec_free(e->spec);
    e->spec = sp;
    seed_draft_rng(e);
    return AR_OK;
}

/* The verifier's distribution at tree node i: its sampling transforms over the logits, with the
 * committed context plus the path root..i as the repetition-penalty history. */
static ar_status node_dist(ar_engine *e, int32_t i, const float *logits, ar_dist *out) {
    ar_spec *sp = e->spec;
    const ar_sampler_params *spp = &e->sampling;
    int32_t n_hist = 0;
    if (spp->repeat_penalty != 1.0f) {
        int32_t base = e->kv->n_committed;
        memcpy(sp->history, e->tokens, (size_t)base * sizeof(int32_t));
        int32_t k = ar_tree_path_tokens(&sp->tree, i, sp->history + base);
        n_hist = base + k;
    }
    int32_t last_n = spp->repeat_last_n < 0 ? n_hist : AR_MIN(spp->repeat_last_n, n_hist);
    return ar_sampler_dist(spp, logits, e->n_vocab, sp->history + n_hist - last_n, last_n, out);
}

static void emit_trace(ar_engine *e, const ar_step_trace *t) {
    if (e->trace) e->trace(e->trace_user, t);
}

#define CALIBRATE_CHEAP_SECONDS 0.010 /* a 16-row batch under this: time 32 and 64 rows too */

/* Times verifier and drafter batches of every size of the cost table (1..16, 32, 64 rows) in the
 * cells past the committed context (nothing is committed). */
static ar_status calibrate(ar_engine *e) {
    ar_spec *sp = e->spec;
    ar_cost_table *t = &sp->sched.costs;
    int32_t room = e->kv->cap - e->kv->n_committed;
    int32_t bos = ar_vocab_bos(e->model->vocab) >= 0 ? ar_vocab_bos(e->model->vocab) : 0;
    for (int32_t i = 0; i < AR_BATCH_INVARIANT; i++) sp->tree_tokens[i] = bos;
    /* untimed passes first: page faults, cold caches, and (unpinned) a pool thread that starts on
     * its creator's core until the kernel moves it would all count as cost */
    for (int rep = 0; rep < 2; rep++) {
        ar_batch b = {.n = 1, .tokens = sp->tree_tokens};
        ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
        if (s != AR_OK) return s;
        double ignored;
        if (ar_drafter_time_batch(sp->drafter, 1, &ignored) != AR_OK) break;
    }
    for (int i = 0; i < AR_COST_SIZES; i++) {
        int32_t n = ar_cost_size(i);
        /* 32 and 64 rows are timed only when cheap (they take a second on a 1B model, where
         * trees stay far smaller); otherwise, and where the cache or workspace has no room,
         * they are extrapolated linearly from the last size */
        bool costly = n > 16 && t->verify[i - 1] > CALIBRATE_CHEAP_SECONDS;
        if (i > 0 && (n > room || n > e->ws_rows || costly)) {
            double grow = (double)n / ar_cost_size(i - 1);
            t->verify[i] = t->verify[i - 1] * grow;
            t->draft[i] = t->draft[i - 1] * grow;
            continue;
        }
        ar_batch b = {.n = n, .tokens = sp->tree_tokens, .skip_logits = false};
        /* best of: small batches are the noisiest, and the sizes a tree is cut to */
        const int reps = n <= 4 ? 3 : n <= 8 ? 2 : 1;
        double best = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = ar_now();
            ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
            if (s != AR_OK) return s;
            best = fmin(best, ar_now() - t0);
        }
        t->verify[i] = best;
        double ds = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double one = 0.0;
            if (ar_drafter_time_batch(sp->drafter, n, &one) != AR_OK) {
                ds = i ? t->draft[i - 1] * n / ar_cost_size(i - 1) : 0.0;
                break;
            }
            ds = fmin(ds, one);
        }
        t->draft[i] = ds;
    }
    /* a batch never costs less than a smaller one: a size that measured slower than the next
     * was disturbed (seen: unpinned, 1-row passes at 8.7 ms against 0.08 for 2 rows, the pool's
     * worker sharing the caller's core for a while after its creation) */
    for (int i = AR_COST_SIZES - 2; i >= 0; i--) {
        t->verify[i] = fmin(t->verify[i], t->verify[i + 1]);
        t->draft[i] = fmin(t->draft[i], t->draft[i + 1]);
    }
    t->valid = true;
    return AR_OK;
}

ar_status ar_engine_load_costs(ar_engine *e, const char *path) {
    if (!e->spec || !e->spec->adaptive)
        return ar_fail(AR_ERR_INVALID_ARG, "a cost table needs the adaptive tree mode");
    return ar_sched_load_costs(&e->spec->sched, path);
}

ar_status ar_engine_save_costs(ar_engine *e, const char *path) {
    if (!e->spec || !e->spec->adaptive)
        return ar_fail(AR_ERR_INVALID_ARG, "a cost table needs the adaptive tree mode");
    if (!e->spec->sched.costs.valid) {
        ar_status s = calibrate(e);
        if (s != AR_OK) return s;
    }
    return ar_sched_save_costs(&e->spec->sched, path);
}

static ar_status plain_step(ar_engine *e, int32_t *out, int32_t *n_out);

static ar_status spec_step(ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out) {
    ar_spec *sp = e->spec;
    ar_tree *tree = &sp->tree;
    const int32_t base = e->kv->n_committed;
    const bool greedy = e->sampling.temp <= 0.0f && e->sampling.repeat_penalty == 1.0f;
    ar_step_trace tr = {.step = e->n_steps, .n_committed = base};
    ar_status s;

    if (sp->adaptive) {
        if (!sp->sched.costs.valid && (s = calibrate(e)) != AR_OK) return s;
        /* a tree drafted ahead is ready: use it (the scheduler is not asked) */
        if (!sp->ahead_valid && !ar_sched_want_speculation(&sp->sched)) {
            double t0 = ar_now();
            if ((s = plain_step(e, out, n_out)) != AR_OK) return s;
            double dt = ar_now() - t0;
            ar_sched_update_plain(&sp->sched, dt);
            tr.verified = 1;
            tr.verify_seconds = dt;
            tr.threshold = sp->sched.threshold;
            tr.reason = sp->sched.why_plain;
            emit_trace(e, &tr);
            return AR_OK;
        }
    }

    /* draft (or take the tree drafted during the last verification) */
    double t0 = ar_now();
    ar_draft_request req = {.tokens = e->tokens,
                            .n_committed = base,
                            .spec = sp->spec,
                            .sample = !greedy && e->sampling.temp > 0.0f && !sp->adaptive &&
                                      sp->spec.mode != AR_TREE_DYNAMIC,
                            .sampling = &e->sampling,
                            .rng = &sp->draft_rng};
    if (sp->adaptive) {
        req.spec.mode = AR_TREE_DYNAMIC;
        req.accept_table = sp->sched.accept_table;
        req.stop_below = sp->sched.threshold;
        req.shape = ar_sched_shape_level;
        req.shape_user = &sp->sched;
    }
    /* a tree never outgrows the context: shrink the budget near the end */
    int32_t room = e->kv->cap - base;
    const bool pipelined = sp->pipeline && !req.sample;
    const bool from_ahead = pipelined && sp->ahead_valid && sp->tree_ahead.n <= room;
    double sync = 0.0;
    if (from_ahead) {
        ar_tree tmp = *tree; /* swap buffers: the tree drafted ahead becomes this step's */
        *tree = sp->tree_ahead;
        sp->tree_ahead = tmp;
        const ar_dist **tq = sp->q;
        sp->q = sp->q_ahead;
        sp->q_ahead = tq;
        e->stats.n_pipelined++;
    } else {
        int32_t saved_cap = tree->cap;
        tree->cap = AR_MIN(saved_cap, room);
        s = ar_drafter_draft(sp->drafter, &req, tree, sp->q);
        tree->cap = saved_cap;
        if (s != AR_OK) return s;
        sync = ar_drafter_last_sync_seconds(sp->drafter);
    }
    sp->ahead_valid = false;
    tr.drafted = tree->n - 1;
    tr.reason = sp->adaptive ? "speculate" : "fixed tree";
    if (sp->adaptive) { /* keep the nodes worth verifying */
        double t_draft = ar_now() - t0 - sync;
        int32_t k = ar_sched_choose_size(&sp->sched, tree, t_draft, &tr.expected);
        if (k + 1 < tree->n) {
            /* prune by the calibrated path value (monotone along paths, like p_path) */
            for (int32_t i = 0; i < tree->n; i++) tree->nodes[i].p_path = tree->nodes[i].value;
            int32_t n_old = tree->n;
            ar_tree_prune_to(tree, k + 1, sp->remap);
            ar_drafter_remap(sp->drafter, sp->remap, n_old);
            tr.reason = k == 0 ? "speculate: no draft node worth verifying" : "speculate: pruned";
        }
    }
    double t1 = ar_now();
    int32_t n = tree->n;
    for (int32_t i = 1; i < n; i++) {
        int32_t dep = tree->nodes[i].depth - 1;
        if (dep < 32) e->stats.drafted_at_depth[dep]++;
    }
    e->stats.n_drafted += n - 1;

    /* pipelining: guess the outcome (the drafter's most likely path all accepted) and let the
     * drafter thread draft the next tree from there while the verifier works */
    draft_worker *dw = pipelined ? sp->worker : NULL;
    int32_t guess_path[AR_BATCH_INVARIANT + 1], n_guess = 0;
    if (dw && base + tree->max_depth + 2 < e->kv->cap) {
        for (int32_t u = 0;;) {
            guess_path[n_guess++] = u;
            int32_t best = -1;
            for (int32_t c = tree->nodes[u].first_child; c >= 0; c = tree->nodes[c].next_sibling)
                if (best < 0 || tree->nodes[c].p_draft > tree->nodes[best].p_draft) best = c;
            if (best < 0) break;
            u = best;
        }
        memcpy(dw->ctx, e->tokens, (size_t)base * sizeof(int32_t));
        for (int32_t j = 0; j < n_guess; j++) dw->ctx[base + j] = tree->nodes[guess_path[j]].token;
        dw->n_ctx = base + n_guess;
        dw->req = req;
        worker_post(dw);
    } else {
        dw = NULL;
    }

    /* verify the whole tree in one batch */
    for (int32_t i = 0; i < n; i++) sp->tree_tokens[i] = tree->nodes[i].token;
    ar_batch b = {.n = n, .tokens = sp->tree_tokens, .parent = ar_tree_parents(tree)};
    s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
    ar_status ds = dw ? worker_wait(dw) : AR_OK;
    if (s != AR_OK) return s;
    if (ds != AR_OK) return ds;
    double t_eval = ar_now() - t1;

    /* accept */
    ar_accept_result res;
    if (greedy) {
        for (int32_t i = 0; i < n; i++)
            sp->target[i] = ar_argmax(e->logits + (size_t)i * e->n_vocab, e->n_vocab);
        s = ar_accept_greedy(tree, sp->target, sp->path, &res);
    } else {
        if (!sp->p[0].id) {
            for (int32_t i = 0; i < AR_BATCH_INVARIANT && s == AR_OK; i++)
                s = ar_dist_init(&sp->p[i], e->n_vocab);
            if (s != AR_OK) return s;
        }
        for (int32_t i = 0; i < n; i++) {
            if ((s = node_dist(e, i, e->logits + (size_t)i * e->n_vocab, &sp->p[i])) != AR_OK)
                return s;
            sp->pp[i] = &sp->p[i];
        }
        if (sp->broken_acceptance) { /* deliberately wrong: see ar_spec */
            int32_t u = 0, k = 0;
            sp->path[k++] = 0;
            for (int32_t c = tree->nodes[u].first_child; c >= 0;) {
                if (ar_dist_prob(sp->pp[u], tree->nodes[c].token) > 0.0f) {
                    sp->path[k++] = u = c;
                    c = tree->nodes[u].first_child;
                } else {
                    c = tree->nodes[c].next_sibling;
                }
            }
            res.n_path = k;
            res.bonus = ar_dist_sample(sp->pp[u], &e->rng);
        } else {
            s = ar_accept_sampled(tree, sp->pp, sp->q, &e->rng, &sp->aw, sp->path, &res);
        }
    }
    if (s != AR_OK) return s;
    if (sp->adaptive) /* before truncation: the model learns from the whole verification */
        ar_sched_update(&sp->sched, tree, sp->path, res.n_path,
                        sp->warm ? (ar_now() - t0 - sync) : 0.0, res.n_path);
    sp->warm = true;
    /* never emit more than asked: a shorter accepted path is still exact, with the next path
     * token (accepted, hence distributed as the verifier's choice) as the bonus */
    if (res.n_path > cap) {
        res.n_path = cap;
        res.bonus = tree->nodes[sp->path[cap]].token;
    }
    for (int32_t j = 1; j < res.n_path; j++) {
        int32_t dep = tree->nodes[sp->path[j]].depth - 1;
        if (dep < 32) e->stats.accepted_at_depth[dep]++;
    }
    e->stats.n_accepted += res.n_path - 1;
    e->stats.n_verify++;

    /* keep the accepted path in both caches (a pipelined drafter has moved on to the guessed
     * context: its next draft catches up from the longest prefix it shares with the truth) */
    ar_kv_commit(e->kv, sp->path, res.n_path);
    if (dw) {
        bool right = res.n_path == n_guess && res.bonus == dw->root;
        for (int32_t j = 0; right && j < n_guess; j++) right = sp->path[j] == guess_path[j];
        sp->ahead_valid = right && sp->tree_ahead.n >= 1;
        sp->n_ahead_tried++;
        sp->n_ahead_used += sp->ahead_valid;
    } else if (!sp->pipeline || !from_ahead) {
        ar_drafter_accept(sp->drafter, tree, sp->path, res.n_path);
    }
    for (int32_t j = 0; j < res.n_path; j++)
        e->tokens[base + j] = tree->nodes[sp->path[j]].token;
    e->tokens[base + res.n_path] = res.bonus;
    e->n_tokens = base + res.n_path + 1;
    int32_t k = 0;
    for (int32_t j = 1; j < res.n_path; j++) out[k++] = tree->nodes[sp->path[j]].token;
    out[k++] = res.bonus;
    *n_out = k;
    double t2 = ar_now();
    e->stats.draft_seconds += t1 - t0;
    e->stats.verify_seconds += t2 - t1;
    if (sp->adaptive) ar_sched_observe_verify(&sp->sched, n, t_eval);
    tr.verified = n;
    tr.depth = tree->max_depth;
    tr.accepted = res.n_path - 1;
    tr.draft_seconds = t1 - t0;
    tr.verify_seconds = t2 - t1;
    tr.threshold = sp->adaptive ? sp->sched.threshold : 0.0f;
    emit_trace(e, &tr);
    return AR_OK;
}
