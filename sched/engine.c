/* engine.c: the decoding loop's state and its plain parts: creation (with the memory budget's
 * accounting), prompt prefill with prefix reuse, the plain decoding step, and the dispatch of
 * each step to it or to the speculative step (spec.c). */
#include "engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "topo.h"

/* Code, libraries, thread stacks and allocator overhead of a process running arbor, counted in
 * a budget besides what the engine allocates (measured: the `arbor` tool peaks at 11 MB
 * generating with a 1 MB model). */
#define PROCESS_BYTES (16ull << 20)

/* Under a budget, verification batches are capped so that their buffers (workspace rows and
 * logits) take at most this share of it. Every byte they take is a byte of the verifier read
 * from its file for every pass instead of held: at 450 MiB for the 1.1B-shaped pair a sixteenth
 * caps trees at 65 nodes and keeps a 12th layer resident (236 MiB streamed a pass against 260
 * at an eighth, which allowed 129), and trees past 64 nodes did not pay there (a 64-row pass
 * computes about as long as the disk takes to read the streamed layers). */
#define TREE_BUDGET_SHARE 16

/* The one memory check of a context: what it will allocate for p.n_ctx cells (the KV caches of
 * verifier and drafter, logits rows, workspaces with their per-cell attention scratch), against
 * physical memory, before any of it is allocated: an oversized context gets the numbers, not an
 * allocation that succeeds lazily and fails when the pages are touched. */
static ar_status check_memory(const ar_model *m, const ar_engine_params *p, int32_t ws_rows,
                              int32_t tree_rows) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return AR_OK; /* unknown: the allocations decide */
    const double phys = (double)pages * (double)page, gib = 1073741824.0;
    double kv = (double)ar_kv_bytes(m, p->n_ctx, 0, p->kv_type);
    double logits = (double)tree_rows * m->hp.n_vocab * sizeof(float);
    double ws = (double)ar_workspace_bytes(m, ws_rows, p->n_ctx, p->n_threads);
    if (p->draft_model) { /* a model drafter: its cache and batches of up to 64 rows */
        const ar_model *d = p->draft_model;
        const int32_t rows = AR_MIN(AR_BATCH_INVARIANT, p->n_ctx);
        kv += (double)ar_kv_bytes(d, p->n_ctx, p->draft_layers, AR_TYPE_F32);
        logits += (double)rows * d->hp.n_vocab * sizeof(float);
        ws += (double)ar_workspace_bytes(d, rows, p->n_ctx, 1);
    }
    if (kv + logits + ws <= phys) return AR_OK;
    return ar_fail(AR_ERR_NOMEM,
                   "a context of %d cells needs %.1f GiB (KV caches %.1f GiB, logits %.1f GiB, "
                   "buffers %.1f GiB), more than the %.1f GiB of physical memory",
                   p->n_ctx, (kv + logits + ws) / gib, kv / gib, logits / gib, ws / gib,
                   phys / gib);
}

/* Bytes of one verification row's buffers: its workspace share and its logits. */
static uint64_t row_bytes(const ar_model *m, int32_t n_ctx, int32_t n_threads) {
    return ar_workspace_bytes(m, 2, n_ctx, n_threads) - ar_workspace_bytes(m, 1, n_ctx, n_threads) +
           (uint64_t)m->hp.n_vocab * sizeof(float);
}

ar_status ar_engine_create(const ar_model *m, ar_engine_params p, ar_engine **out) {
    *out = NULL;
    if (m->vocab_only) return ar_fail(AR_ERR_INVALID_ARG, "%s: vocabulary-only model", m->path);
    if (p.n_ctx <= 0) p.n_ctx = m->hp.n_ctx_train;
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
    /* under a budget a reader thread needs a core now and then: workers pinned to every core get
     * preempted in the middle of a job while the kernel cannot move them (measured with 2
     * threads on 2 cores: drafting 60 ms pinned against 32 unpinned, a verifier pass 270 ms
     * against 210) */
    if (p.mem_budget) p.pin = false;
    ar_clear_error();
    /* the largest verification: AR_TREE_MAX rows, fewer under a budget (its buffers take at most
     * an eighth of it) */
    int32_t tree_rows = AR_TREE_MAX;
    if (p.mem_budget) { /* a power of two of draft nodes and the root */
        const uint64_t per_row = row_bytes(m, p.n_ctx, p.n_threads);
        int32_t drafted = AR_TREE_MAX;
        while (drafted > 16 &&
               (uint64_t)(drafted + 1) * per_row > p.mem_budget / TREE_BUDGET_SHARE)
            drafted /= 2;
        tree_rows = AR_MIN(drafted + 1, AR_TREE_MAX);
    }
    if (p.n_batch <= 0) p.n_batch = p.mem_budget ? tree_rows : 512;
    int32_t ws_rows = AR_MIN(AR_MAX(p.n_batch, tree_rows), p.n_ctx);
    tree_rows = AR_MIN(tree_rows, ws_rows);
    ar_engine *e = calloc(1, sizeof *e);
    ar_status s = AR_OK;
    if (!e) {
        s = ar_fail(AR_ERR_NOMEM, "engine: out of memory");
        goto fail;
    }
    e->model = m;
    e->params = p;
    e->ws_rows = ws_rows;
    e->tree_rows = tree_rows;
    e->n_vocab = m->hp.n_vocab;
    if ((s = check_memory(m, &p, ws_rows, tree_rows)) != AR_OK) goto fail;
    if ((s = ar_kv_create(m, p.n_ctx, 0, p.kv_type, &e->kv)) != AR_OK) goto fail;
    if ((s = ar_workspace_create(m, ws_rows, p.n_ctx, &e->ws)) != AR_OK) goto fail;
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
    e->logits = malloc((size_t)tree_rows * (size_t)e->n_vocab * sizeof(float));
    if (!e->tokens || !e->logits) {
        s = ar_fail(AR_ERR_NOMEM, "engine: out of memory for %d x %d logits", tree_rows,
                    e->n_vocab);
        goto fail;
    }
    e->sampling = ar_sampler_default_params();
    ar_rng_seed(&e->rng, e->sampling.seed);
    e->last_row = -1;
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

void ar_engine_free(ar_engine *e) {
    if (!e) return;
    ar_spec_free(e->spec); /* before the streams: a drafter's workspace reads from them */
    ar_kv_free(e->kv);
    ar_workspace_free(e->ws);
    ar_stream_free(e->stream);
    ar_stream_free(e->draft_stream);
    ar_pool_free(e->pool);
    ar_dist_free(&e->dist);
    free(e->tokens);
    free(e->logits);
    free(e);
}

/* ---- the memory budget ---- */

void ar_engine_get_memory(const ar_engine *e, ar_engine_memory *out) {
    const ar_model *m = e->model;
    const ar_engine_params *p = &e->params;
    memset(out, 0, sizeof *out);
    out->kv = ar_kv_bytes(m, e->kv->cap, 0, e->kv->type);
    out->buffers = ar_workspace_bytes(m, e->ws_rows, e->kv->cap, p->n_threads) +
                   (uint64_t)e->tree_rows * (uint64_t)e->n_vocab * sizeof(float) +
                   ((uint64_t)e->kv->cap + 1) * sizeof(int32_t) + ar_dist_bytes(e->n_vocab);
    if (e->spec) {
        out->buffers += ar_spec_bytes(e);
        out->drafter = ar_drafter_bytes(e->spec->drafter);
    }
    out->drafter_weights = e->drafter_weights;
    out->process = PROCESS_BYTES;
    out->weights = e->stream ? ar_stream_get_plan(e->stream)->resident_bytes +
                                   ar_stream_get_plan(e->stream)->slot_bytes +
                                   ar_stream_get_plan(e->stream)->row_cache_bytes
                             : ar_model_weight_bytes(m);
}

static double mib(uint64_t b) {
    return (double)b / (1024.0 * 1024.0);
}

/* A separate drafter model under a budget: pre-faulted, its whole file counts; else its layers
 * and head are read into memory of their own and its embedding rows from the file. */
static ar_status drafter_weights(ar_engine *e) {
    const ar_model *dm = e->spec ? ar_drafter_model(e->spec->drafter) : NULL;
    e->drafter_weights = 0;
    if (!dm || dm == e->model) return AR_OK; /* lookup, or self-drafting */
    if (dm->faulted_in || !dm->gguf->owns_map) {
        e->drafter_weights = dm->gguf->size;
        return AR_OK;
    }
    ar_stream_params sp = ar_stream_default_params();
    sp.budget = UINT64_MAX; /* everything resident: no reader */
    if (getenv("ARBOR_STREAM_BUFFERED")) sp.direct = false;
    ar_status s = ar_stream_create(dm, &sp, &e->draft_stream);
    if (s == AR_OK) s = ar_drafter_set_stream(e->spec->drafter, e->draft_stream);
    if (s != AR_OK) return s;
    e->drafter_weights = ar_stream_get_plan(e->draft_stream)->resident_bytes +
                         ar_stream_get_plan(e->draft_stream)->row_cache_bytes;
    return AR_OK;
}

ar_status ar_engine_apply_budget(ar_engine *e) {
    const uint64_t budget = e->params.mem_budget;
    if (!budget || e->stream) return AR_OK;
    /* streamed layers are the file's bytes: a packed copy would be a second copy of what the
     * budget leaves out, held outside it */
    const ar_model *dm = e->spec ? ar_drafter_model(e->spec->drafter) : NULL;
    if (e->model->packed || (dm && dm->packed))
        return ar_fail(AR_ERR_INVALID_ARG,
                       "%s: loaded with its matrices packed (repack): under a memory budget load "
                       "the verifier and its drafter with repack off",
                       e->model->packed ? e->model->path : dm->path);
    ar_status s = drafter_weights(e);
    if (s != AR_OK) return s;
    ar_engine_memory mem;
    ar_engine_get_memory(e, &mem);
    const uint64_t fixed = mem.kv + mem.buffers + mem.drafter + mem.drafter_weights + mem.process;
    ar_stream_params sp = ar_stream_default_params();
    sp.budget = budget > fixed ? budget - fixed : 0;
    if (dm == e->model) sp.min_resident = ar_drafter_layers(e->spec->drafter); /* self:M */
    if (getenv("ARBOR_STREAM_BUFFERED")) sp.direct = false; /* tests of the fallback */
    ar_stream_plan plan;
    s = ar_stream_plan_for(e->model, &sp, &plan);
    if (s != AR_OK) {
        char why[320];
        snprintf(why, sizeof why, "%s", ar_last_error());
        char left[64];
        if (budget > fixed) snprintf(left, sizeof left, "leave %.1f MiB", mib(budget - fixed));
        else snprintf(left, sizeof left, "already need %.1f MiB more", mib(fixed - budget));
        return ar_fail(AR_ERR_NOMEM,
                       "memory budget of %.1f MiB is too small: the drafter's weights %.1f MiB, "
                       "KV caches %.1f MiB, buffers %.1f MiB and %.1f MiB for the process %s "
                       "for the verifier's weights (%s)",
                       mib(budget), mib(mem.drafter_weights), mib(mem.kv),
                       mib(mem.buffers + mem.drafter), mib(mem.process), left, why);
    }
    if ((s = ar_stream_create(e->model, &sp, &e->stream)) != AR_OK) return s;
    if ((s = ar_workspace_set_stream(e->ws, e->model, e->stream)) != AR_OK) return s;
    if (dm == e->model) s = ar_drafter_set_stream(e->spec->drafter, e->stream);
    return s;
}

double ar_engine_stream_wait(ar_engine *e) {
    if (!e->stream) return 0.0;
    ar_stream_stats st;
    ar_stream_get_stats(e->stream, &st);
    return st.wait_seconds;
}

void ar_engine_warn(ar_engine *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->warning, sizeof e->warning, fmt, ap);
    va_end(ap);
}

const char *ar_engine_take_warning(ar_engine *e) {
    static _Thread_local char taken[sizeof e->warning];
    if (!e->warning[0]) return NULL;
    memcpy(taken, e->warning, sizeof taken);
    e->warning[0] = 0;
    return taken;
}

void ar_engine_end_generation(ar_engine *e) {
    if (ar_costs_save_cache(e) != AR_OK) {
        ar_engine_warn(e, "cost cache not written: %s", ar_last_error());
        ar_clear_error();
    }
}

/* ---- sampling and prefill ---- */

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
    e->last_row = -1;
}

ar_status ar_engine_prefill(ar_engine *e, const int32_t *prompt, int32_t n, int32_t *n_reused) {
    *n_reused = 0;
    if (n < 1) return ar_fail(AR_ERR_INVALID_ARG, "empty prompt: at least one token is needed");
    if (n > e->kv->cap)
        return ar_fail(AR_ERR_CONTEXT_FULL, "prompt of %d tokens does not fit the context of %d", n,
                       e->kv->cap);
    for (int32_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= e->n_vocab)
            return ar_fail(AR_ERR_INVALID_ARG, "prompt token %d at index %d out of range [0, %d)",
                           prompt[i], i, e->n_vocab);
    /* reuse the committed tokens the new prompt starts with */
    int32_t keep = 0;
    while (keep < e->kv->n_committed && keep < n - 1 && e->tokens[keep] == prompt[keep]) keep++;
    ar_kv_truncate(e->kv, keep);
    *n_reused = keep;
    int32_t max_rows = AR_MIN(e->params.n_batch, AR_MIN(e->kv->cap, e->ws_rows));
    for (int32_t i = keep; i < n - 1;) {
        int32_t rows = AR_MIN(max_rows, n - 1 - i);
        /* prompt rows need no logits, only their K/V */
        ar_batch b = {.n = rows, .tokens = prompt + i, .skip_logits = true, .prompt = true};
        ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, NULL);
        if (s != AR_OK) return s;
        ar_kv_commit_all(e->kv, rows);
        i += rows;
    }
    memcpy(e->tokens, prompt, (size_t)n * sizeof(int32_t));
    e->n_tokens = n;
    e->has_pending = true;
    e->last_row = -1;
    if (e->spec) {
        e->spec->warm = false;        /* the drafter's catch-up is not a step's cost */
        e->spec->ahead_valid = false; /* drafted ahead for the context the prompt replaces */
    }
    return AR_OK;
}

/* The next token from the logits of the last committed token. Logits holding NaN or +inf (a
 * corrupt or hostile model file whose weights overflow) are an error, greedy or sampled. */
static ar_status sample(ar_engine *e, const float *logits, int32_t *out) {
    const ar_sampler_params *sp = &e->sampling;
    if (sp->temp <= 0.0f && sp->repeat_penalty == 1.0f) {
        *out = ar_argmax_finite(logits, e->n_vocab);
        if (*out >= 0) return AR_OK;
    } else {
        int32_t hist = e->n_tokens;
        int32_t last_n = sp->repeat_last_n < 0 ? hist : AR_MIN(sp->repeat_last_n, hist);
        ar_status s =
            ar_sampler_dist(sp, logits, e->n_vocab, e->tokens + hist - last_n, last_n, &e->dist);
        if (s == AR_OK) {
            *out = ar_dist_sample(&e->dist, &e->rng);
            return AR_OK;
        }
        if (s != AR_ERR_INVALID_ARG || ar_argmax_finite(logits, e->n_vocab) >= 0) return s;
    }
    return ar_engine_bad_logits(e, e->kv->n_committed - 1);
}

ar_status ar_engine_bad_logits(ar_engine *e, int32_t position) {
    return ar_fail(AR_ERR_FORMAT,
                   "%s: the verifier's logits at position %d hold NaN or +inf: its weights "
                   "overflow (a corrupt or out-of-range model file)",
                   e->model->path, position);
}

/* ---- steps ---- */

/* Evaluates the pending token alone and samples the next one. */
static ar_status plain_step(ar_engine *e, int32_t *out, int32_t *n_out) {
    int32_t pending = e->tokens[e->n_tokens - 1];
    ar_batch b = {.n = 1, .tokens = &pending, .parent = NULL, .logits = NULL};
    ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
    if (s != AR_OK) return s;
    ar_kv_commit_all(e->kv, 1);
    int32_t t = -1;
    if ((s = sample(e, e->logits, &t)) != AR_OK) return s;
    e->tokens[e->n_tokens++] = t;
    e->last_row = 0;
    e->stats.n_plain_steps++;
    if (e->spec) e->spec->ahead_valid = false; /* drafted from a context this step changed */
    out[0] = t;
    *n_out = 1;
    return AR_OK;
}

ar_status ar_engine_plain_step_timed(ar_engine *e, int32_t *out, int32_t *n_out, double *seconds,
                                     double *compute) {
    const double w0 = ar_engine_stream_wait(e), t0 = ar_now();
    ar_status s = plain_step(e, out, n_out);
    *seconds = ar_now() - t0;
    *compute = *seconds - (ar_engine_stream_wait(e) - w0);
    return s;
}

ar_status ar_engine_step(ar_engine *e, int32_t *out, int32_t cap, int32_t *n_out) {
    *n_out = 0;
    if (!e->has_pending) return ar_fail(AR_ERR_INVALID_ARG, "engine: no prompt");
    if (cap < 1) return ar_fail(AR_ERR_INVALID_ARG, "engine: no room for output");
    if (e->kv->n_committed + 1 > e->kv->cap)
        return ar_fail(AR_ERR_CONTEXT_FULL, "context full (%d tokens)", e->kv->cap);
    e->n_steps++;
    if (e->spec) return ar_spec_step(e, out, cap, n_out);
    if (!e->trace) return plain_step(e, out, n_out);
    ar_step_trace tr = {
        .step = e->n_steps, .n_committed = e->kv->n_committed, .verified = 1, .reason = "plain"};
    double t0 = ar_now();
    ar_status s = plain_step(e, out, n_out);
    tr.verify_seconds = ar_now() - t0;
    e->trace(e->trace_user, &tr);
    return s;
}

/* ---- speculation ---- */

ar_status ar_engine_set_drafter(ar_engine *e, ar_drafter *d, const ar_tree_spec *spec) {
    ar_spec *sp;
    ar_status s = ar_spec_create(e, d, spec, &sp); /* owns d, also on failure */
    if (s != AR_OK) return s;
    if (e->stream && ar_drafter_model(d) == e->model &&
        (s = ar_drafter_set_stream(d, e->stream)) != AR_OK) {
        ar_spec_free(sp);
        return s;
    }
    ar_spec_free(e->spec);
    e->spec = sp;
    seed_draft_rng(e);
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
        ar_status s = ar_costs_measure(e);
        if (s != AR_OK) return s;
    }
    return ar_sched_save_costs(&e->spec->sched, path);
}
