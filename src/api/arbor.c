/* arbor.c: the public C API (include/arbor.h) over the runtime and the scheduler's engine. */
#include "arbor.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "sched/engine.h"
#include "src/model.h"
#include "src/vocab.h"

_Static_assert(ARBOR_OK == (int)AR_OK && ARBOR_ERR_IO == (int)AR_ERR_IO &&
                   ARBOR_ERR_FORMAT == (int)AR_ERR_FORMAT &&
                   ARBOR_ERR_UNSUPPORTED == (int)AR_ERR_UNSUPPORTED &&
                   ARBOR_ERR_INVALID_ARG == (int)AR_ERR_INVALID_ARG &&
                   ARBOR_ERR_NOMEM == (int)AR_ERR_NOMEM &&
                   ARBOR_ERR_CONTEXT_FULL == (int)AR_ERR_CONTEXT_FULL &&
                   ARBOR_ERR_INCOMPATIBLE == (int)AR_ERR_INCOMPATIBLE &&
                   ARBOR_ERR_CANCELLED == (int)AR_ERR_CANCELLED &&
                   ARBOR_ERR_INTERNAL == (int)AR_ERR_INTERNAL,
               "arbor_status and ar_status must agree");

struct arbor_model {
    ar_model *m;
};

struct arbor_context {
    const arbor_model *model;
    arbor_context_params params;
    char *tree;
    ar_engine *engine;
    atomic_bool cancel;
    arbor_stats stats;
};

/* ---- process-wide: the log sink ---- */
static arbor_log_fn log_fn;
static void *log_user;
void arbor_set_log(arbor_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

const char *arbor_last_error(void) { return ar_last_error(); }
const char *arbor_status_string(arbor_status s) { return ar_status_name((ar_status)s); }
const char *arbor_version(void) { return "0.1.0"; }

/* ---- models ---- */
arbor_model_params arbor_model_default_params(void) {
    return (arbor_model_params){.vocab_only = false, .resident = false};
}

arbor_status arbor_model_load(const char *path, arbor_model_params params, arbor_model **out) {
    if (!out) return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "arbor_model_load: out is NULL");
    *out = NULL;
    if (!path) return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "arbor_model_load: path is NULL");
    arbor_model *am = calloc(1, sizeof *am);
    if (!am) return (arbor_status)ar_fail(AR_ERR_NOMEM, "out of memory");
    ar_model_params mp = ar_model_default_params();
    mp.vocab_only = params.vocab_only;
    mp.resident = params.resident;
    ar_status s = ar_model_load(path, mp, &am->m);
    if (s != AR_OK) {
        free(am);
        return (arbor_status)s;
    }
    *out = am;
    return ARBOR_OK;
}

void arbor_model_free(arbor_model *model) {
    if (!model) return;
    ar_model_free(model->m);
    free(model);
}

arbor_status arbor_model_get_info(const arbor_model *model, arbor_model_info *out) {
    if (!model || !out) return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "NULL argument");
    const ar_model *m = model->m;
    const ar_hparams *hp = &m->hp;
    *out = (arbor_model_info){
        .arch = m->vocab_only ? "" : ar_arch_name(hp->arch),
        .n_vocab = m->vocab_only ? ar_vocab_n_tokens(m->vocab) : hp->n_vocab,
        .n_embd = hp->n_embd,
        .n_layer = hp->n_layer,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .n_ff = hp->n_ff,
        .n_ctx_train = hp->n_ctx_train,
        .weight_bytes = ar_model_weight_bytes(m),
        .file_bytes = m->gguf->size,
    };
    return ARBOR_OK;
}

int32_t arbor_tokenize(const arbor_model *model, const char *text, size_t len, bool add_special,
                       bool parse_special, arbor_token *out, int32_t cap) {
    if (!model || (!text && len) || cap < 0 || (!out && cap > 0))
        return (int32_t)ar_fail(AR_ERR_INVALID_ARG, "arbor_tokenize: invalid argument");
    int64_t n = ar_tokenize(model->m->vocab, text ? text : "", len, add_special, parse_special,
                            out, cap);
    if (n > INT32_MAX) return (int32_t)ar_fail(AR_ERR_NOMEM, "text has too many tokens");
    return (int32_t)n;
}

int32_t arbor_token_to_piece(const arbor_model *model, arbor_token token, bool special, char *buf,
                             int32_t cap) {
    if (!model || cap < 0 || (!buf && cap > 0))
        return (int32_t)ar_fail(AR_ERR_INVALID_ARG, "arbor_token_to_piece: invalid argument");
    return ar_token_to_piece(model->m->vocab, token, special, buf, cap);
}

arbor_token arbor_token_bos(const arbor_model *model) { return ar_vocab_bos(model->m->vocab); }
arbor_token arbor_token_eos(const arbor_model *model) { return ar_vocab_eos(model->m->vocab); }
bool arbor_token_is_eog(const arbor_model *model, arbor_token token) {
    return ar_vocab_is_eog(model->m->vocab, token);
}

/* ---- contexts ---- */
arbor_context_params arbor_context_default_params(void) {
    return (arbor_context_params){.n_ctx = 0,
                                  .n_threads = 0,
                                  .n_batch = 0,
                                  .kv_f16 = false,
                                  .draft_kind = ARBOR_DRAFT_NONE,
                                  .draft_model = NULL,
                                  .draft_self_layers = 0,
                                  .tree = NULL};
}

arbor_status arbor_context_create(const arbor_model *model, arbor_context_params params,
                                  arbor_context **out) {
    if (!out) return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "arbor_context_create: out is NULL");
    *out = NULL;
    if (!model) return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "arbor_context_create: no model");
    if (params.n_ctx < 0 || params.n_threads < 0 || params.n_batch < 0)
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG,
                                     "context: n_ctx, n_threads and n_batch must be >= 0");
    if (params.draft_kind < ARBOR_DRAFT_NONE || params.draft_kind > ARBOR_DRAFT_LOOKUP)
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "context: unknown draft kind %d",
                                     (int)params.draft_kind);
    if (params.draft_kind == ARBOR_DRAFT_MODEL && !params.draft_model)
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "context: draft model missing");
    if (params.draft_kind == ARBOR_DRAFT_SELF &&
        (params.draft_self_layers < 1 || params.draft_self_layers >= model->m->hp.n_layer))
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG,
                                     "context: self-drafting layers %d must be in [1, %d]",
                                     params.draft_self_layers, model->m->hp.n_layer - 1);
    ar_tree_spec spec;
    if (params.draft_kind != ARBOR_DRAFT_NONE) {
        ar_status s = ar_tree_spec_parse(params.tree ? params.tree : "dynamic:16", &spec);
        if (s != AR_OK) return (arbor_status)s;
    }
    if (params.draft_kind == ARBOR_DRAFT_MODEL) {
        const ar_model *dm = params.draft_model->m;
        if (dm->vocab_only)
            return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "%s: the draft model is "
                                                             "vocabulary-only", dm->path);
        ar_status s = ar_vocab_compatible(model->m->vocab, dm->vocab);
        if (s != AR_OK) return (arbor_status)s;
    }
    arbor_context *c = calloc(1, sizeof *c);
    if (!c) return (arbor_status)ar_fail(AR_ERR_NOMEM, "out of memory");
    c->model = model;
    c->params = params;
    if (params.tree) {
        c->tree = strdup(params.tree);
        c->params.tree = c->tree;
    }
    ar_engine_params ep = {.n_ctx = params.n_ctx,
                           .n_threads = params.n_threads,
                           .n_batch = params.n_batch,
                           .kv_type = params.kv_f16 ? AR_TYPE_F16 : AR_TYPE_F32};
    ar_status s = ar_engine_create(model->m, ep, &c->engine);
    if (s == AR_OK && params.draft_kind != ARBOR_DRAFT_NONE) {
        ar_engine *e = c->engine;
        ar_drafter *d = NULL;
        if (params.draft_kind == ARBOR_DRAFT_LOOKUP)
            s = ar_drafter_create_lookup(e->kv->cap, &d);
        else if (params.draft_kind == ARBOR_DRAFT_SELF)
            s = ar_drafter_create_model(model->m, params.draft_self_layers, e->kv->cap, e->pool, &d);
        else
            s = ar_drafter_create_model(params.draft_model->m, 0, e->kv->cap, e->pool, &d);
        if (s == AR_OK) s = ar_engine_set_drafter(e, d, &spec);
    }
    if (s != AR_OK) {
        arbor_context_free(c);
        return (arbor_status)s;
    }
    *out = c;
    return ARBOR_OK;
}

void arbor_context_free(arbor_context *ctx) {
    if (!ctx) return;
    ar_engine_free(ctx->engine);
    free(ctx->tree);
    free(ctx);
}

void arbor_context_reset(arbor_context *ctx) {
    if (ctx) ar_engine_reset(ctx->engine);
}

void arbor_cancel(arbor_context *ctx) {
    if (ctx) atomic_store(&ctx->cancel, true);
}

/* ---- generation ---- */
arbor_sampling_params arbor_sampling_default_params(void) {
    ar_sampler_params d = ar_sampler_default_params();
    return (arbor_sampling_params){.temp = d.temp,
                                   .top_k = d.top_k,
                                   .top_p = d.top_p,
                                   .min_p = d.min_p,
                                   .repeat_penalty = d.repeat_penalty,
                                   .repeat_last_n = d.repeat_last_n,
                                   .seed = d.seed};
}

arbor_generate_params arbor_generate_default_params(void) {
    return (arbor_generate_params){.sampling = arbor_sampling_default_params(),
                                   .n_predict = 128,
                                   .ignore_eos = false,
                                   .add_special = true,
                                   .parse_special = true,
                                   .stop = NULL,
                                   .n_stop = 0};
}

arbor_status arbor_generate(arbor_context *ctx, const char *prompt,
                            const arbor_generate_params *params, arbor_token_fn fn, void *user) {
    if (!ctx || !prompt)
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "arbor_generate: NULL argument");
    arbor_generate_params dflt = arbor_generate_default_params();
    if (!params) params = &dflt;
    const ar_vocab *v = ctx->model->m->vocab;
    size_t len = strlen(prompt);
    int64_t n = ar_tokenize(v, prompt, len, params->add_special, params->parse_special, NULL, 0);
    if (n < 0) return (arbor_status)n;
    if (n > ctx->engine->kv->cap)
        return (arbor_status)ar_fail(AR_ERR_CONTEXT_FULL,
                                     "prompt of %lld tokens does not fit the context of %d",
                                     (long long)n, ctx->engine->kv->cap);
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) return (arbor_status)ar_fail(AR_ERR_NOMEM, "out of memory");
    ar_tokenize(v, prompt, len, params->add_special, params->parse_special, ids, n);
    arbor_status s = arbor_generate_tokens(ctx, ids, (int32_t)n, params, fn, user);
    free(ids);
    return s;
}

/* True when the text generated so far ends a stop string that the last `added` bytes touch. */
static bool hits_stop(const arbor_generate_params *p, const char *text, size_t len, size_t added) {
    for (int32_t i = 0; i < p->n_stop; i++) {
        const char *st = p->stop[i];
        size_t sl = st ? strlen(st) : 0;
        if (!sl || sl > len) continue;
        /* any occurrence ending within the new bytes */
        size_t first_end = len - added + 1 > sl ? len - added + 1 : sl;
        for (size_t end = first_end; end <= len; end++)
            if (!memcmp(text + end - sl, st, sl)) return true;
    }
    return false;
}

arbor_status arbor_generate_tokens(arbor_context *ctx, const arbor_token *prompt,
                                   int32_t n_prompt, const arbor_generate_params *params,
                                   arbor_token_fn fn, void *user) {
    if (!ctx || (!prompt && n_prompt > 0))
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "arbor_generate_tokens: NULL argument");
    arbor_generate_params dflt = arbor_generate_default_params();
    if (!params) params = &dflt;
    if (params->n_predict < -1)
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG,
                                     "n_predict %d: must be >= 0, or -1 for no limit",
                                     params->n_predict);
    if (params->n_stop < 0 || (params->n_stop > 0 && !params->stop))
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "invalid stop strings");
    const arbor_sampling_params *sp = &params->sampling;
    if (!(sp->temp == sp->temp) || !(sp->top_p == sp->top_p) || !(sp->min_p == sp->min_p) ||
        !(sp->repeat_penalty > 0.0f))
        return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "invalid sampling parameters");
    ar_engine *e = ctx->engine;
    const ar_vocab *v = ctx->model->m->vocab;
    atomic_store(&ctx->cancel, false);
    memset(&ctx->stats, 0, sizeof ctx->stats);
    memset(&e->stats, 0, sizeof e->stats);
    ar_sampler_params asp = {.temp = sp->temp,
                             .top_k = sp->top_k,
                             .top_p = sp->top_p,
                             .min_p = sp->min_p,
                             .repeat_penalty = sp->repeat_penalty,
                             .repeat_last_n = sp->repeat_last_n,
                             .seed = sp->seed};
    ar_engine_set_sampling(e, &asp);

    double t0 = ar_now();
    int32_t reused = 0;
    ar_status s = ar_engine_prefill(e, prompt, n_prompt, &reused);
    if (s != AR_OK) return (arbor_status)s;
    double t1 = ar_now();
    ctx->stats.n_prompt = n_prompt;
    ctx->stats.n_prompt_reused = reused;
    ctx->stats.prompt_seconds = t1 - t0;

    /* text generated so far, for stop strings (only the tail matters) */
    size_t max_stop = 0;
    for (int32_t i = 0; i < params->n_stop; i++)
        if (params->stop[i]) max_stop = AR_MAX(max_stop, strlen(params->stop[i]));
    size_t tail_cap = max_stop * 2 + 512, tail_len = 0;
    char *tail = max_stop ? malloc(tail_cap) : NULL;
    if (max_stop && !tail) return (arbor_status)ar_fail(AR_ERR_NOMEM, "out of memory");

    ar_detok dt = {0};
    char piece[512];
    int32_t produced = 0;
    int32_t step_out[AR_BATCH_INVARIANT + 1];
    bool done = params->n_predict == 0;
    while (!done) {
        if (atomic_load(&ctx->cancel)) {
            s = ar_fail(AR_ERR_CANCELLED, "generation cancelled");
            break;
        }
        int32_t cap = (int32_t)AR_ARRAY_LEN(step_out);
        if (params->n_predict > 0) cap = AR_MIN(cap, params->n_predict - produced);
        int32_t got = 0;
        s = ar_engine_step(e, step_out, cap, &got);
        if (s == AR_ERR_CONTEXT_FULL) {
            ctx->stats.stopped_by_context = true;
            if (log_fn) log_fn(log_user, ARBOR_LOG_WARN, "context full: generation stopped");
            s = AR_OK;
            break;
        }
        if (s != AR_OK) break;
        for (int32_t i = 0; i < got && !done; i++) {
            int32_t t = step_out[i];
            produced++;
            if (ar_vocab_is_eog(v, t) && !params->ignore_eos) {
                done = true;
                break;
            }
            int32_t k = ar_detok_push(&dt, v, t, piece, (int32_t)sizeof piece);
            if (k < 0) k = 0;
            if (fn && !fn(user, t, piece, (size_t)k)) done = true;
            if (tail && k > 0) {
                if (tail_len + (size_t)k > tail_cap) { /* keep the last max_stop bytes */
                    size_t keep = AR_MIN(tail_len, max_stop);
                    memmove(tail, tail + tail_len - keep, keep);
                    tail_len = keep;
                }
                size_t add = AR_MIN((size_t)k, tail_cap - tail_len);
                memcpy(tail + tail_len, piece + (size_t)k - add, add);
                tail_len += add;
                if (hits_stop(params, tail, tail_len, add)) done = true;
            }
            if (params->n_predict > 0 && produced >= params->n_predict) done = true;
        }
    }
    if (s == AR_OK && fn) { /* an incomplete UTF-8 character at the very end, as is */
        int32_t k = ar_detok_flush(&dt, piece, (int32_t)sizeof piece);
        if (k > 0) fn(user, -1, piece, (size_t)k);
    }
    free(tail);
    double t2 = ar_now();
    arbor_stats *st = &ctx->stats;
    st->n_generated = produced;
    st->generate_seconds = t2 - t1;
    st->tokens_per_second = st->generate_seconds > 0 ? produced / st->generate_seconds : 0.0;
    const ar_engine_stats *es = &e->stats;
    st->n_verify = es->n_verify;
    st->n_drafted = es->n_drafted;
    st->n_accepted = es->n_accepted;
    st->mean_accepted = es->n_verify ? (double)es->n_accepted / (double)es->n_verify : 0.0;
    st->draft_seconds = es->draft_seconds;
    st->verify_seconds = es->verify_seconds;
    st->n_plain_steps = es->n_plain_steps;
    for (int i = 0; i < ARBOR_MAX_DEPTH_STATS; i++) {
        st->drafted_at_depth[i] = es->drafted_at_depth[i];
        st->accepted_at_depth[i] = es->accepted_at_depth[i];
    }
    return (arbor_status)s;
}

arbor_status arbor_get_stats(const arbor_context *ctx, arbor_stats *out) {
    if (!ctx || !out) return (arbor_status)ar_fail(AR_ERR_INVALID_ARG, "NULL argument");
    *out = ctx->stats;
    return ARBOR_OK;
}
