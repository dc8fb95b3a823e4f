/* drafter.c: the model drafter (separate small model or the verifier's first layers) and the
 * prompt-lookup drafter. */
#include "drafter.h"

#include <math.h>
#include <stdlib.h>

#define LOOKUP_MAX_NGRAM 4
#define DYNAMIC_TOPK 8 /* children considered per expanded node */

struct ar_drafter {
    ar_drafter_kind kind;
    int32_t n_ctx;
    /* model drafter */
    const ar_model *m;
    ar_kv *kv;
    ar_workspace *ws;
    ar_pool *pool;
    int32_t max_batch;
    int32_t *tokens;    /* tokens committed in kv (kv->n_committed of them) */
    float *logits;      /* [max_batch][n_vocab] */
    uint8_t *want;      /* [n_ctx] logits mask for a batch */
    int32_t *tree_tokens;
    int32_t n_evaluated; /* tree nodes [0, n_evaluated) have K/V in the drafter's cache */
    ar_dist *dists;      /* [AR_TREE_MAX] q per node (sampled trees) */
    ar_dist probs;       /* scratch: plain softmax of one row */
    ar_tree_cand *cands;
    int32_t *frontier, *next_frontier;
    const float **row_logits; /* [AR_TREE_MAX] logits row of each evaluated node */
    double sync_seconds;      /* of the last draft */
    int32_t n_batches;        /* the last draft's batches (ar_drafter_last_batches) */
    int32_t batch_rows[AR_SPEC_MAX_LEVELS * 2];
    double batch_seconds[AR_SPEC_MAX_LEVELS * 2];
    int32_t n_out;            /* ids the drafter may propose: [0, n_out), within the verifier's
                                 vocabulary (ar_drafter_limit_vocab) */
    int32_t *feed;            /* [n_ctx] committed tokens as the drafter's embedding takes them */
};

const ar_model *ar_drafter_model(const ar_drafter *d) { return d->m; }
int32_t ar_drafter_layers(const ar_drafter *d) { return d->kv ? d->kv->n_layer : 0; }

uint64_t ar_drafter_kv_bytes(const ar_drafter *d) {
    return d->kv ? ar_kv_bytes(d->m, d->kv->cap, d->kv->n_layer, d->kv->type) : 0;
}

uint64_t ar_drafter_bytes(const ar_drafter *d) {
    if (d->kind != AR_DRAFTER_MODEL) return sizeof *d;
    const uint64_t V = (uint64_t)d->m->hp.n_vocab, C = (uint64_t)d->n_ctx;
    uint64_t b = ar_kv_bytes(d->m, d->kv->cap, d->kv->n_layer, d->kv->type);
    b += ar_workspace_bytes(d->m, d->max_batch, d->n_ctx, 1);
    b += (uint64_t)d->max_batch * V * sizeof(float); /* logits */
    b += C * (sizeof(int32_t) + 1) + ar_dist_bytes(d->m->hp.n_vocab);
    b += (uint64_t)AR_TREE_MAX * (DYNAMIC_TOPK * sizeof(ar_tree_cand) + 3 * sizeof(int32_t) +
                                  sizeof(float *) + sizeof(ar_dist));
    return b;
}

ar_status ar_drafter_set_stream(ar_drafter *d, struct ar_stream *s) {
    return d->ws ? ar_workspace_set_stream(d->ws, d->m, s) : AR_OK;
}

int32_t ar_drafter_last_batches(const ar_drafter *d, const int32_t **rows,
                                const double **seconds) {
    *rows = d->batch_rows;
    *seconds = d->batch_seconds;
    return d->n_batches;
}

static void record_batch(ar_drafter *d, int32_t rows, double seconds) {
    if (d->n_batches < (int32_t)AR_ARRAY_LEN(d->batch_rows)) {
        d->batch_rows[d->n_batches] = rows;
        d->batch_seconds[d->n_batches++] = seconds;
    }
}

double ar_drafter_last_sync_seconds(const ar_drafter *d) { return d->sync_seconds; }

ar_status ar_drafter_time_batch(ar_drafter *d, int32_t n, double *seconds) {
    *seconds = 0.0;
    if (d->kind != AR_DRAFTER_MODEL) return AR_OK;
    if (n > d->max_batch || d->kv->n_committed + n > d->kv->cap)
        return ar_fail(AR_ERR_INVALID_ARG, "drafter calibration: no room for %d rows", n);
    for (int32_t i = 0; i < n; i++) d->tree_tokens[i] = ar_vocab_bos(d->m->vocab) >= 0 ? ar_vocab_bos(d->m->vocab) : 0;
    ar_batch b = {.n = n, .tokens = d->tree_tokens, .skip_logits = false};
    memset(d->want, 1, (size_t)n); /* every row's logits, as a tree level needs them */
    b.logits = d->want;
    double t0 = ar_now();
    ar_status s = ar_model_eval(d->m, d->kv, d->ws, d->pool, &b, d->logits);
    *seconds = ar_now() - t0;
    return s;
}

ar_drafter_kind ar_drafter_kind_of(const ar_drafter *d) { return d->kind; }

ar_status ar_drafter_create_model(const ar_model *m, int32_t n_layers, int32_t n_ctx,
                                  ar_pool *pool, ar_drafter **out) {
    *out = NULL;
    ar_drafter *d = calloc(1, sizeof *d);
    if (!d) return ar_fail(AR_ERR_NOMEM, "drafter: out of memory");
    d->kind = AR_DRAFTER_MODEL;
    d->n_ctx = n_ctx;
    d->m = m;
    d->pool = pool;
    d->max_batch = AR_MIN(AR_BATCH_INVARIANT, n_ctx);
    ar_status s;
    if ((s = ar_kv_create(m, n_ctx, n_layers, AR_TYPE_F32, &d->kv)) != AR_OK) goto fail;
    if ((s = ar_workspace_create(m, d->max_batch, n_ctx, &d->ws)) != AR_OK) goto fail;
    if ((s = ar_dist_init(&d->probs, m->hp.n_vocab)) != AR_OK) goto fail;
    d->n_out = m->hp.n_vocab;
    d->tokens = calloc((size_t)n_ctx, sizeof(int32_t));
    d->feed = calloc((size_t)n_ctx, sizeof(int32_t));
    d->logits = malloc((size_t)d->max_batch * (size_t)m->hp.n_vocab * sizeof(float));
    d->want = calloc((size_t)n_ctx, 1);
    d->tree_tokens = calloc(AR_TREE_MAX, sizeof(int32_t));
    d->cands = calloc((size_t)AR_TREE_MAX * DYNAMIC_TOPK, sizeof *d->cands);
    d->frontier = calloc(AR_TREE_MAX, sizeof(int32_t));
    d->next_frontier = calloc(AR_TREE_MAX, sizeof(int32_t));
    d->row_logits = calloc(AR_TREE_MAX, sizeof(float *));
    if (!d->tokens || !d->feed || !d->logits || !d->want || !d->tree_tokens || !d->cands || !d->frontier ||
        !d->next_frontier || !d->row_logits) {
        s = ar_fail(AR_ERR_NOMEM, "drafter: out of memory");
        goto fail;
    }
    *out = d;
    return AR_OK;
fail:
    ar_drafter_free(d);
    return s;
}

ar_status ar_drafter_create_lookup(int32_t n_ctx, ar_drafter **out) {
    ar_drafter *d = calloc(1, sizeof *d);
    if (!d) return ar_fail(AR_ERR_NOMEM, "drafter: out of memory");
    d->kind = AR_DRAFTER_LOOKUP;
    d->n_ctx = n_ctx;
    *out = d;
    return AR_OK;
}

void ar_drafter_free(ar_drafter *d) {
    if (!d) return;
    ar_kv_free(d->kv);
    ar_workspace_free(d->ws);
    if (d->dists)
        for (int i = 0; i < AR_TREE_MAX; i++)
            if (d->dists[i].cap) ar_dist_free(&d->dists[i]);
    free(d->dists);
    ar_dist_free(&d->probs);
    free(d->tokens);
    free(d->feed);
    free(d->logits);
    free(d->want);
    free(d->tree_tokens);
    free(d->cands);
    free(d->frontier);
    free(d->next_frontier);
    free(d->row_logits);
    free(d);
}

void ar_drafter_set_pool(ar_drafter *d, ar_pool *pool) { d->pool = pool; }

void ar_drafter_limit_vocab(ar_drafter *d, int32_t n_vocab) {
    if (d->kind == AR_DRAFTER_MODEL && n_vocab > 0 && n_vocab < d->n_out) d->n_out = n_vocab;
}

void ar_drafter_reset(ar_drafter *d) {
    if (d->kv) ar_kv_truncate(d->kv, 0);
}

/* ---- model drafter ---- */

/* The committed tokens [from, from + n) as the drafter can embed them: an id beyond its
 * vocabulary (a padding row only the verifier has) becomes 0. The drafts get worse there, never
 * the output: the verifier decides every token. */
static const int32_t *drafter_ids(ar_drafter *d, const int32_t *tokens, int32_t from, int32_t n) {
    const int32_t V = d->m->hp.n_vocab;
    for (int32_t i = 0; i < n; i++) {
        const int32_t t = tokens[from + i];
        d->feed[from + i] = t >= 0 && t < V ? t : 0;
    }
    return d->feed + from;
}

/* Brings the drafter's cache to the committed context and evaluates the root; returns the
 * root's logits row. */
static ar_status sync_and_eval_root(ar_drafter *d, const ar_draft_request *req,
                                    const float **root_logits) {
    ar_kv *kv = d->kv;
    double t0 = ar_now();
    int32_t n = req->n_committed, keep = 0;
    while (keep < kv->n_committed && keep < n && d->tokens[keep] == req->tokens[keep]) keep++;
    ar_kv_truncate(kv, keep);
    ar_status s;
    /* committed tokens the drafter has not seen, in chunks; the last chunk carries the root */
    while (n - kv->n_committed + 1 > d->max_batch) {
        int32_t rows = d->max_batch;
        ar_batch b = {.n = rows,
                      .tokens = drafter_ids(d, req->tokens, kv->n_committed, rows),
                      .skip_logits = true,
                      .prompt = true};
        if ((s = ar_model_eval(d->m, kv, d->ws, d->pool, &b, NULL)) != AR_OK) return s;
        memcpy(d->tokens + kv->n_committed, req->tokens + kv->n_committed,
               (size_t)rows * sizeof(int32_t));
        ar_kv_commit_all(kv, rows);
    }
    int32_t rows = n - kv->n_committed + 1;
    double t1 = ar_now();
    memset(d->want, 0, (size_t)rows);
    d->want[rows - 1] = 1;
    ar_batch b = {.n = rows,
                  .tokens = drafter_ids(d, req->tokens, kv->n_committed, rows),
                  .logits = d->want};
    if ((s = ar_model_eval(d->m, kv, d->ws, d->pool, &b, d->logits)) != AR_OK) return s;
    const double t2 = ar_now();
    if (rows == 1) record_batch(d, 1, t2 - t1); /* the root alone: a clean single-row batch */
    /* catching up: the earlier chunks, and the final batch's share beyond the root's row */
    d->sync_seconds = (t1 - t0) + (t2 - t1) * (double)(rows - 1) / (double)rows;
    memcpy(d->tokens + kv->n_committed, req->tokens + kv->n_committed,
           (size_t)(rows - 1) * sizeof(int32_t));
    ar_kv_commit_all(kv, rows - 1); /* the root stays uncommitted: tree node 0 */
    *root_logits = d->logits;
    return AR_OK;
}

/* Logits a model should never produce: one clear error, whatever uses them. */
static ar_status check_logits(const ar_drafter *d, const float *logits) {
    if (ar_argmax_finite(logits, d->m->hp.n_vocab) >= 0) return AR_OK;
    return ar_fail(AR_ERR_FORMAT,
                   "%s: the drafter's logits hold NaN or +inf: its weights overflow (a corrupt or "
                   "out-of-range model file)",
                   d->m->path);
}

ar_status ar_drafter_predict_next(ar_drafter *d, const int32_t *tokens, int32_t n, int32_t *next) {
    *next = -1;
    if (d->kind != AR_DRAFTER_MODEL || n < 1) return AR_OK;
    ar_draft_request req = {.tokens = tokens, .n_committed = n - 1};
    const float *logits;
    ar_status s = sync_and_eval_root(d, &req, &logits);
    if (s != AR_OK) return s;
    d->n_evaluated = 0; /* the evaluated row is not a tree node anyone will commit */
    if (ar_argmax_finite(logits, d->m->hp.n_vocab) < 0) return check_logits(d, logits);
    *next = ar_argmax(logits, d->n_out);
    return AR_OK;
}

/* The drafter's plain distribution (softmax, temperature 1) of one logits row, for scoring. */
static ar_status plain_probs(ar_drafter *d, const float *logits) {
    ar_status s = check_logits(d, logits);
    if (s != AR_OK) return s;
    ar_sampler_params sp = ar_sampler_default_params();
    sp.temp = 1.0f;
    sp.top_k = DYNAMIC_TOPK;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.repeat_penalty = 1.0f;
    return ar_sampler_dist(&sp, logits, d->n_out, NULL, 0, &d->probs);
}

/* The distribution of node i, made on first use (a sampled tree's internal nodes only). */
static ar_status node_dist(ar_drafter *d, int32_t i, ar_dist **out) {
    *out = NULL;
    if (!d->dists && !(d->dists = calloc(AR_TREE_MAX, sizeof *d->dists)))
        return ar_fail(AR_ERR_NOMEM, "drafter: out of memory");
    ar_status s = d->dists[i].cap ? AR_OK : ar_dist_init(&d->dists[i], d->m->hp.n_vocab);
    *out = &d->dists[i];
    return s;
}

/* Adds up to `count` children under `node`: samples from q (sampled trees) or the top ones. */
static ar_status add_children(ar_drafter *d, const ar_draft_request *req, ar_tree *tree,
                              int32_t node, int32_t count, const ar_dist **q) {
    const float *lg = d->row_logits[node];
    ar_status s;
    if (req->sample) {
        ar_dist *qd = NULL;
        if ((s = check_logits(d, lg)) != AR_OK || (s = node_dist(d, node, &qd)) != AR_OK) return s;
        if ((s = ar_sampler_dist(req->sampling, lg, d->n_out, NULL, 0, qd)) != AR_OK)
            return s;
        q[node] = qd;
        for (int32_t k = 0; k < count && !ar_tree_full(tree); k++) {
            int32_t tok = ar_dist_sample(qd, req->rng);
            if (ar_tree_add(tree, node, tok, ar_dist_prob(qd, tok)) == AR_TREE_BAD_ARG)
                return AR_ERR_INTERNAL;
        }
        return AR_OK;
    }
    if ((s = plain_probs(d, lg)) != AR_OK) return s;
    for (int32_t k = 0; k < count && k < d->probs.n && !ar_tree_full(tree); k++)
        if (ar_tree_add(tree, node, d->probs.id[k], d->probs.p[k]) == AR_TREE_BAD_ARG)
            return AR_ERR_INTERNAL;
    return AR_OK;
}

/* Evaluates tree nodes [n_evaluated, tree->n) in one batch with the tree mask. */
static ar_status eval_level(ar_drafter *d, ar_tree *tree) {
    int32_t first = d->n_evaluated, n = tree->n;
    for (int32_t i = first; i < n; i++) d->tree_tokens[i] = tree->nodes[i].token;
    ar_batch b = {.n = n, .tokens = d->tree_tokens, .parent = ar_tree_parents(tree),
                  .first = first};
    if (d->kv->n_committed + n > d->kv->cap) return AR_ERR_CONTEXT_FULL;
    const double t0 = ar_now();
    ar_status s = ar_model_eval(d->m, d->kv, d->ws, d->pool, &b, d->logits);
    if (s != AR_OK) return s;
    record_batch(d, n - first, ar_now() - t0);
    for (int32_t i = first; i < n; i++)
        d->row_logits[i] = d->logits + (size_t)(i - first) * d->m->hp.n_vocab;
    d->n_evaluated = n;
    return AR_OK;
}

/* A node's value: the estimated probability that the verifier accepts its whole path. */
static float node_value(const ar_draft_request *req, float parent_value, float p_draft,
                        bool first) {
    return parent_value * (req->accept ? req->accept(req->accept_user, p_draft, first) : p_draft);
}


static ar_status draft_model(ar_drafter *d, const ar_draft_request *req, ar_tree *tree,
                             const ar_dist **q) {
    const double t_start = ar_now();
    d->n_batches = 0;
    int32_t levels = 1; /* batches evaluated: the root's first */
    const float *root_logits;
    ar_status s = sync_and_eval_root(d, req, &root_logits);
    if (s != AR_OK) return s;
    /* logits rows are only read for the current frontier, before the next level's batch
     * overwrites them */
    d->row_logits[0] = root_logits;
    d->n_evaluated = 1;
    const ar_tree_shape *spec = &req->spec;
    int32_t room = d->kv->cap - d->kv->n_committed; /* cells for the tree, root included */
    int32_t n_frontier = 1;
    d->frontier[0] = 0;
    for (int32_t level = 0; n_frontier > 0 && !ar_tree_full(tree) && tree->n < room; level++) {
        if (spec->mode == AR_TREE_DYNAMIC) {
            /* candidates: the top children of every frontier node, scored by path probability */
            int32_t nc = 0;
            for (int32_t f = 0; f < n_frontier; f++) {
                int32_t node = d->frontier[f];
                if ((s = plain_probs(d, d->row_logits[node])) != AR_OK) return s;
                for (int32_t k = 0; k < d->probs.n && k < DYNAMIC_TOPK; k++)
                    d->cands[nc++] = (ar_tree_cand){node, d->probs.id[k], d->probs.p[k], 0};
            }
            /* a fixed dynamic:N tree adds at most 10 nodes a level; the scheduler's shaping
             * (which prices every level) up to a drafter batch's 32 */
            int32_t width = AR_MAX(2, AR_MIN(req->shape ? 32 : 10, spec->budget / 3));
            bool grow = true;
            if (req->shape) { /* the scheduler sizes the level from its costs */
                /* catching up with tokens decoded plainly is not this tree's cost */
                double seconds = ar_now() - t_start - d->sync_seconds;
                int32_t shaped =
                    req->shape(req->shape_user, tree, d->cands, nc, seconds, levels, &grow);
                width = AR_MIN(width, shaped);
                if (width <= 0) break;
            }
            int32_t first_new = tree->n;
            int32_t added = ar_tree_add_best(tree, d->cands, nc, width);
            if (added < 0) return AR_ERR_INTERNAL;
            n_frontier = 0;
            for (int32_t i = first_new; i < tree->n; i++) d->frontier[n_frontier++] = i;
            float best = 0.0f;
            for (int32_t i = first_new; i < tree->n; i++) {
                ar_tree_node *nd = &tree->nodes[i];
                nd->value = node_value(req, tree->nodes[nd->parent].value, nd->p_draft,
                                       ar_tree_likeliest_child(tree, nd->parent) == i);
                best = fmaxf(best, nd->value);
            }
            /* stop expanding once the best new path is unlikely to be accepted, or when another
             * level would not pay for its batch */
            if (best < (req->stop_below > 0.0f ? req->stop_below : 0.02f) || !grow) break;
        } else {
            if (level >= spec->n_levels) break;
            int32_t first_new = tree->n;
            for (int32_t f = 0; f < n_frontier; f++)
                if ((s = add_children(d, req, tree, d->frontier[f], spec->branch[level], q)) !=
                    AR_OK)
                    return s;
            n_frontier = 0;
            for (int32_t i = first_new; i < tree->n; i++) d->frontier[n_frontier++] = i;
            if (level + 1 >= spec->n_levels) break;
        }
        if (n_frontier == 0 || ar_tree_full(tree) || tree->n >= room) break;
        /* the new level needs logits to grow further: one batch for all of it */
        if ((s = eval_level(d, tree)) != AR_OK) return s == AR_ERR_CONTEXT_FULL ? AR_OK : s;
        levels++;
    }
    return AR_OK;
}

/* ---- prompt lookup ---- */

/* Continuations of the most recent earlier occurrences of the context's last n-gram (longest n
 * with a match), added as paths under the root. */
static ar_status draft_lookup(ar_drafter *d, const ar_draft_request *req, ar_tree *tree) {
    const int32_t *t = req->tokens;
    int32_t len = req->n_committed + 1; /* the root is the last token */
    const ar_tree_shape *spec = &req->spec;
    int32_t n_paths = spec->mode == AR_TREE_CHAIN ? 1 : AR_MAX(1, spec->branch[0]);
    if (spec->mode == AR_TREE_DYNAMIC) n_paths = 4;
    int32_t depth =
        spec->mode == AR_TREE_DYNAMIC ? AR_MAX(1, spec->budget / n_paths) : spec->n_levels;
    int32_t found = 0;
    for (int32_t n = AR_MIN(LOOKUP_MAX_NGRAM, len - 1); n >= 1 && found == 0; n--) {
        const int32_t *suffix = t + len - n;
        for (int32_t j = len - n - 1; j >= 0 && found < n_paths && !ar_tree_full(tree); j--) {
            if (memcmp(t + j, suffix, (size_t)n * sizeof(int32_t)) != 0) continue;
            int32_t node = 0, added_any = 0;
            for (int32_t k = 0; k < depth && j + n + k < len && !ar_tree_full(tree); k++) {
                int32_t child = ar_tree_add(tree, node, t[j + n + k], 1.0f);
                if (child < 0) break;
                node = child;
                added_any = 1;
            }
            found += added_any;
        }
    }
    (void)d;
    return AR_OK;
}

ar_status ar_drafter_draft(ar_drafter *d, const ar_draft_request *req, ar_tree *tree,
                           const ar_dist **q) {
    ar_tree_reset(tree, req->tokens[req->n_committed]);
    tree->nodes[0].value = 1.0f;
    for (int32_t i = 0; i < tree->cap; i++) q[i] = NULL;
    if (d->kind == AR_DRAFTER_LOOKUP) return draft_lookup(d, req, tree);
    return draft_model(d, req, tree, q);
}

void ar_drafter_remap(ar_drafter *d, const int32_t *old_to_new, int32_t n_old) {
    if (d->kind != AR_DRAFTER_MODEL) return;
    int32_t rows[AR_TREE_MAX], k = 0;
    for (int32_t i = 0; i < n_old && i < d->n_evaluated; i++)
        if (old_to_new[i] >= 0) rows[k++] = i; /* survivors keep their order: new index == k */
    ar_kv_compact(d->kv, rows, k);
    d->n_evaluated = k;
}

void ar_drafter_accept(ar_drafter *d, const ar_tree *tree, const int32_t *path, int32_t n_path) {
    if (d->kind != AR_DRAFTER_MODEL) return;
    int32_t k = 0;
    while (k < n_path && path[k] < d->n_evaluated) k++;
    int32_t base = d->kv->n_committed;
    ar_kv_commit(d->kv, path, k);
    for (int32_t j = 0; j < k; j++) d->tokens[base + j] = tree->nodes[path[j]].token;
    d->n_evaluated = 0;
}
