/* calibrate.c: where the adaptive scheduler's cost table comes from.
 *   cache    an entry of the per-user cost cache written by an earlier context with the same
 *            verifier and drafter files, budget, threads, CPU and arbor version: the table as
 *            that run left it, refined online from there, with the acceptance model's counts
 *            (capped, scheduler.h) so that a short run does not spend its first steps learning
 *            how often the drafter is right (a stale or corrupt entry is ignored with a
 *            warning);
 *   start    else the first step is a plain one (a real token, not an extra pass), and its
 *            timing starts the table with two single-row drafter batches (a few percent of a
 *            verifier pass for a drafter worth having); larger batches follow a per-row slope,
 *            each entry replaced by measurements as trees of that size are verified and drafted;
 *   measure  timing every size of the table now (arbor_save_costs on a context that has no
 *            table yet: a fixed table for reproducible runs).
 * Every speculative step refines the table (scheduler.c); the context writes it back to the
 * cache after each generation. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "engine.h"
#include "spec.h"
#include "src/core/cache.h"
#include "src/core/cpu.h"

#define CACHE_MAX_BYTES 8192
/* the line after the costs that starts the acceptance model's counts (scheduler.h) */
#define ACCEPT_HEADER "acceptance\n"

/* ---- start: from the first plain step ---- */

void ar_costs_start(ar_engine *e, double seconds, double compute) {
    ar_spec *sp = e->spec;
    const ar_model *dm = ar_drafter_model(sp->drafter);
    double draft1 = 1e-6; /* prompt lookup: no model */
    if (dm) {
        /* a single-row drafter batch, timed (two, the faster: the first may fault pages in);
         * else estimated from the drafter's share of the weights a pass reads */
        double best = 1e30;
        for (int rep = 0; rep < 2; rep++) {
            double t;
            if (ar_drafter_time_batch(sp->drafter, 1, &t) != AR_OK) {
                ar_clear_error();
                break;
            }
            best = fmin(best, t);
        }
        const uint64_t vb = ar_model_pass_bytes(e->model, 0);
        const uint64_t db = ar_model_pass_bytes(dm, ar_drafter_layers(sp->drafter));
        draft1 = best < 1e30 ? best : vb ? compute * (double)db / (double)vb : compute;
    }
    ar_sched_set_prior(&sp->sched, seconds, compute, draft1, e->stream != NULL);
}

/* ---- the cache ---- */

/* The key: everything the costs depend on. */
static bool cache_key(const ar_engine *e, char *key, size_t cap) {
    uint64_t vid = 0, did = 0;
    if (ar_file_identity(e->model->path, &vid) != AR_OK) return false;
    const ar_model *dm = ar_drafter_model(e->spec->drafter);
    char drafter[48];
    if (!dm)
        snprintf(drafter, sizeof drafter, "lookup");
    else if (dm == e->model)
        snprintf(drafter, sizeof drafter, "self:%d", ar_drafter_layers(e->spec->drafter));
    else if (ar_file_identity(dm->path, &did) == AR_OK)
        snprintf(drafter, sizeof drafter, "%016" PRIx64, did);
    else
        return false;
    const ar_cpu_features *cpu = ar_cpu();
    const int k = snprintf(key, cap,
                           "v1 arbor %s verifier %016" PRIx64 " drafter %s threads %d pin %d "
                           "kv %s budget %" PRIu64 " cpu %s/%s",
                           ARBOR_VERSION_STRING, vid, drafter, e->params.n_threads,
                           e->params.pin ? 1 : 0, ar_type_get(e->params.kv_type)->name,
                           e->params.mem_budget, ar_simd_name(cpu->level), cpu->brand);
    return k > 0 && (size_t)k < cap;
}

static bool cache_file(const char *key, char *path, size_t cap) {
    char name[64];
    snprintf(name, sizeof name, "costs/%016" PRIx64 ".txt", (uint64_t)XXH64(key, strlen(key), 0));
    if (ar_cache_path(name, path, cap) != AR_OK) {
        ar_clear_error();
        return false;
    }
    return true;
}

bool ar_costs_load_cache(ar_engine *e) {
    ar_spec *sp = e->spec;
    char key[512], path[4096];
    if (!e->params.cost_cache || !cache_key(e, key, sizeof key) ||
        !cache_file(key, path, sizeof path))
        return false;
    char *text = NULL;
    size_t n = 0;
    if (ar_read_small_file(path, CACHE_MAX_BYTES, &text, &n) != AR_OK) {
        ar_clear_error(); /* no entry yet */
        return false;
    }
    ar_cost_table t = {0};
    const size_t klen = strlen(key);
    bool ok = n > 4 + klen && !strncmp(text, "key ", 4) && !strncmp(text + 4, key, klen) &&
              text[4 + klen] == '\n';
    /* the costs, then (optional) the acceptance model after its header line */
    char *acc = ok ? strstr(text + 4 + klen, ACCEPT_HEADER) : NULL;
    if (acc) *acc = 0, acc += strlen(ACCEPT_HEADER);
    if (!ok) {
        ar_engine_warn(e, "cost cache %s: written for other settings; ignored", path);
    } else if (ar_cost_table_parse(text + 5 + klen, path, &t) != AR_OK ||
               t.streamed != (e->stream != NULL) ||
               (acc && ar_sched_acceptance_parse(&sp->sched, acc, path) != AR_OK)) {
        /* the acceptance counts are applied only when they all parse, and only after the
         * costs did: a refused entry leaves the scheduler as it was */
        if (t.streamed != (e->stream != NULL) && !ar_last_error()[0])
            ar_fail(AR_ERR_FORMAT, "%s: written for a %s verifier", path,
                    t.streamed ? "streamed" : "resident");
        ar_engine_warn(e, "cost cache: %s; ignored", ar_last_error());
        ar_clear_error();
        ok = false;
    }
    free(text);
    if (!ok) return false;
    sp->sched.costs = t;
    return true;
}

ar_status ar_costs_save_cache(ar_engine *e) {
    ar_spec *sp = e->spec;
    if (!sp || !sp->adaptive || sp->sched.fixed_costs || !sp->sched.costs.valid ||
        !e->params.cost_cache)
        return AR_OK;
    char key[512], path[4096], text[CACHE_MAX_BYTES];
    if (!cache_key(e, key, sizeof key) || !cache_file(key, path, sizeof path)) return AR_OK;
    int k = snprintf(text, sizeof text, "key %s\n", key);
    if (k <= 0 || (size_t)k >= sizeof text) return AR_OK;
    k += ar_cost_table_format(&sp->sched.costs, text + k, sizeof text - (size_t)k);
    if ((size_t)k >= sizeof text) return AR_OK;
    k += snprintf(text + k, sizeof text - (size_t)k, "%s", ACCEPT_HEADER);
    if ((size_t)k >= sizeof text) return AR_OK;
    k += ar_sched_acceptance_format(&sp->sched, text + k, sizeof text - (size_t)k);
    if ((size_t)k >= sizeof text) return AR_OK;
    return ar_write_file_atomic(path, text, (size_t)k);
}

/* ---- measure: every size now ---- */

#define CALIBRATE_CHEAP_SECONDS 0.010 /* a 16-row batch under this: time 32 and 64 rows too */

ar_status ar_costs_measure(ar_engine *e) {
    ar_spec *sp = e->spec;
    ar_cost_table *t = &sp->sched.costs;
    memset(t, 0, sizeof *t);
    t->streamed = e->stream != NULL;
    const int32_t room = e->kv->cap - e->kv->n_committed;
    const int32_t bos = ar_vocab_bos(e->model->vocab) >= 0 ? ar_vocab_bos(e->model->vocab) : 0;
    const int32_t rows = AR_MIN(e->tree_rows, AR_TREE_MAX);
    for (int32_t i = 0; i < rows; i++) sp->tree_tokens[i] = bos;
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
        const int32_t n = ar_cost_size(i);
        /* 32 rows and more are timed only when cheap (they take a second on a 1B model, where
         * trees stay far smaller); otherwise, and where the cache or workspace has no room,
         * they are extrapolated linearly from the last size */
        const bool costly = n > 16 && t->verify[i - 1] > CALIBRATE_CHEAP_SECONDS;
        if (i > 0 && (n > room || n > rows || costly)) {
            const double grow = (double)n / ar_cost_size(i - 1);
            t->verify[i] = t->verify[i - 1] * grow;
            t->compute[i] = t->compute[i - 1] * grow;
            t->draft[i] = t->draft[i - 1] * grow;
            t->verify_seen[i] = t->draft_seen[i] = 1.0;
            continue;
        }
        ar_batch b = {.n = n, .tokens = sp->tree_tokens, .skip_logits = false};
        /* best of: small batches are the noisiest, and the sizes a tree is cut to */
        const int reps = n <= 4 ? 3 : n <= 8 ? 2 : 1;
        double best = 1e30, best_compute = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            const double w0 = ar_engine_stream_wait(e), t0 = ar_now();
            ar_status s = ar_model_eval(e->model, e->kv, e->ws, e->pool, &b, e->logits);
            if (s != AR_OK) return s;
            const double dt = ar_now() - t0;
            if (dt < best) best = dt, best_compute = dt - (ar_engine_stream_wait(e) - w0);
        }
        t->verify[i] = best;
        t->compute[i] = best_compute;
        double ds = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double one = 0.0;
            if (ar_drafter_time_batch(sp->drafter, n, &one) != AR_OK) {
                ar_clear_error();
                ds = i ? t->draft[i - 1] * n / ar_cost_size(i - 1) : 0.0;
                break;
            }
            ds = fmin(ds, one);
        }
        t->draft[i] = ds;
        t->verify_seen[i] = t->draft_seen[i] = 1.0;
    }
    /* a batch never costs less than a smaller one: a size that measured slower than the next
     * was disturbed (seen: unpinned, 1-row passes at 8.7 ms against 0.08 for 2 rows, the pool's
     * worker sharing the caller's core for a while after its creation) */
    for (int i = AR_COST_SIZES - 2; i >= 0; i--) {
        t->verify[i] = fmin(t->verify[i], t->verify[i + 1]);
        t->draft[i] = fmin(t->draft[i], t->draft[i + 1]);
        t->compute[i] = fmin(t->compute[i], t->verify[i]);
    }
    t->valid = true;
    return AR_OK;
}
