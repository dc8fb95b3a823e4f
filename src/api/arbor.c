/* arbor.c: the public C API (include/arbor.h) over the runtime (src/) and the decoding engine
 * (sched/). On top of the engine it adds what an embedding application needs: a checked
 * argument with a one-line message for every failure, text in and out (tokenization, streaming
 * detokenization, stop strings), cancellation, statistics, and the process-wide log sink. */
#include "arbor.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sched/engine.h"
#include "src/tokenizer/chat.h"
#include "src/core/model.h"
#include "src/tokenizer/vocab.h"

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
_Static_assert(ARBOR_TOKEN_NONE == AR_TOKEN_NONE, "token sentinels must agree");
_Static_assert(ARBOR_MAX_STEP_TOKENS == AR_TREE_MAX + 1, "a step emits a tree path and a bonus");
_Static_assert(ARBOR_MAX_DEPTH_STATS == AR_ARRAY_LEN(((ar_engine_stats *)0)->drafted_at_depth),
               "depth statistics must agree");

#define FAIL(status, ...) ((arbor_status)ar_fail((ar_status)(status), __VA_ARGS__))
#define MAX_THREADS       1024

struct arbor_model {
    ar_model *m;
};

struct arbor_context {
    const arbor_model *model;
    ar_engine *engine;
    atomic_bool cancel;
    arbor_stats stats;
    char *piece; /* streaming detokenizer output */
    size_t piece_cap;
    arbor_trace_fn trace;
    void *trace_user;
    int32_t step_tokens;      /* arbor_step since the last arbor_prefill */
    double step_seconds;
};

/* ---- process-wide: the log sink ---- */

/* Recursive, so a sink may call arbor functions that log; held while the sink runs, so calls
 * to the sink never overlap. */
static pthread_mutex_t log_mu;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static arbor_log_fn log_fn;
static void *log_user;

static void log_init(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&log_mu, &a);
    pthread_mutexattr_destroy(&a);
}

void arbor_set_log(arbor_log_fn fn, void *user) {
    pthread_once(&log_once, log_init);
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_user = user;
    pthread_mutex_unlock(&log_mu);
}

__attribute__((format(printf, 2, 3))) static void api_log(arbor_log_level level, const char *fmt,
                                                          ...) {
    pthread_once(&log_once, log_init);
    pthread_mutex_lock(&log_mu);
    if (log_fn) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        log_fn(log_user, level, line);
    }
    pthread_mutex_unlock(&log_mu);
}

#define STR2(x) #x
#define STR(x)  STR2(x)
const char *arbor_version(void) {
    return STR(ARBOR_VERSION_MAJOR) "." STR(ARBOR_VERSION_MINOR) "." STR(ARBOR_VERSION_PATCH);
}
const char *arbor_last_error(void) {
    return ar_last_error();
}
const char *arbor_status_string(arbor_status s) {
    return ar_status_name((ar_status)s);
}

/* ---- models ---- */

arbor_model_params arbor_model_default_params(void) {
    return (arbor_model_params){.vocab_only = false, .resident = false, .repack = true};
}

arbor_status arbor_model_load(const char *path, arbor_model_params params, arbor_model **out) {
    if (!out) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_model_load: out is NULL");
    *out = NULL;
    if (!path) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_model_load: path is NULL");
    arbor_model *am = calloc(1, sizeof *am);
    if (!am) return FAIL(ARBOR_ERR_NOMEM, "arbor_model_load: out of memory");
    ar_model_params mp = ar_model_default_params();
    mp.vocab_only = params.vocab_only;
    mp.resident = params.resident;
    mp.repack = params.repack;
    ar_status s = ar_model_load(path, mp, &am->m);
    if (s != AR_OK) {
        free(am);
        return (arbor_status)s;
    }
    const ar_model *m = am->m;
    if (m->vocab_only)
        api_log(ARBOR_LOG_INFO, "%s: vocabulary of %d tokens", path, ar_vocab_n_tokens(m->vocab));
    else
        api_log(ARBOR_LOG_INFO, "%s: %s, %d layers, n_embd %d, vocabulary %d, %.1f MiB of weights",
                path, ar_arch_name(m->hp.arch), m->hp.n_layer, m->hp.n_embd, m->hp.n_vocab,
                (double)ar_model_weight_bytes(m) / (1024.0 * 1024.0));
    if (m->pack_note[0]) api_log(ARBOR_LOG_WARN, "%s: %s", path, m->pack_note);
    if (m->packed_bytes)
        api_log(ARBOR_LOG_INFO, "%s: %.1f MiB of packed weights (%s)", path,
                (double)m->packed_bytes / (1024.0 * 1024.0), m->packed_from);
    if (params.resident && !m->resident)
        api_log(ARBOR_LOG_WARN, "%s: pre-faulted but not locked in memory (RLIMIT_MEMLOCK)", path);
    *out = am;
    return ARBOR_OK;
}

void arbor_model_free(arbor_model *model) {
    if (!model) return;
    ar_model_free(model->m);
    free(model);
}

arbor_status arbor_model_get_info(const arbor_model *model, arbor_model_info *out) {
    if (!model || !out) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_model_get_info: NULL argument");
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
        .weight_bytes = m->vocab_only ? 0 : ar_model_weight_bytes(m),
        .file_bytes = m->gguf->size,
    };
    return ARBOR_OK;
}

/* ---- tokenizer ---- */

int32_t arbor_tokenize(const arbor_model *model, const char *text, size_t len, bool add_special,
                       bool parse_special, arbor_token *out, int32_t cap) {
    if (!model) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_tokenize: model is NULL");
    if (!text && len) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_tokenize: text is NULL");
    if (cap < 0 || (!out && cap > 0))
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_tokenize: no room for %d ids (out %s)", cap,
                    out ? "given" : "NULL");
    int64_t n =
        ar_tokenize(model->m->vocab, text ? text : "", len, add_special, parse_special, out, cap);
    if (n > INT32_MAX)
        return FAIL(ARBOR_ERR_NOMEM, "arbor_tokenize: %lld tokens exceed INT32_MAX", (long long)n);
    return (int32_t)n;
}

int32_t arbor_token_to_piece(const arbor_model *model, arbor_token token, bool special, char *buf,
                             int32_t cap) {
    if (!model) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_token_to_piece: model is NULL");
    if (cap < 0 || (!buf && cap > 0))
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_token_to_piece: no room for %d bytes (buf %s)",
                    cap, buf ? "given" : "NULL");
    return ar_token_to_piece(model->m->vocab, token, special, buf, cap);
}

int32_t arbor_detokenize(const arbor_model *model, const arbor_token *tokens, int32_t n,
                         bool special, char *buf, int32_t cap) {
    if (!model) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_detokenize: model is NULL");
    if (n < 0 || (!tokens && n > 0))
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_detokenize: %d tokens (tokens %s)", n,
                    tokens ? "given" : "NULL");
    if (cap < 0 || (!buf && cap > 0))
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_detokenize: no room for %d bytes (buf %s)", cap,
                    buf ? "given" : "NULL");
    const ar_vocab *v = model->m->vocab;
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t room = total < cap ? (int32_t)(cap - total) : 0;
        int32_t k = ar_token_to_piece(v, tokens[i], special, room ? buf + total : NULL, room);
        if (k < 0) return k;
        total += k;
        if (total > INT32_MAX)
            return FAIL(ARBOR_ERR_NOMEM, "arbor_detokenize: text exceeds INT32_MAX bytes");
    }
    return (int32_t)total;
}

arbor_token arbor_token_bos(const arbor_model *model) {
    return model ? ar_vocab_bos(model->m->vocab) : ARBOR_TOKEN_NONE;
}
arbor_token arbor_token_eos(const arbor_model *model) {
    return model ? ar_vocab_eos(model->m->vocab) : ARBOR_TOKEN_NONE;
}
bool arbor_token_is_eog(const arbor_model *model, arbor_token token) {
    return model && ar_vocab_is_eog(model->m->vocab, token);
}

/* ---- chat templates ---- */

arbor_chat_params arbor_chat_default_params(void) {
    return (arbor_chat_params){.template_name = NULL, .add_assistant = true};
}

const char *arbor_chat_template_names(void) { return ar_chat_names(); }

static ar_chat_family chat_family(const arbor_model *model, const arbor_chat_params *p) {
    if (p->template_name) {
        ar_chat_family f = ar_chat_from_name(p->template_name);
        if (f == AR_CHAT_UNKNOWN)
            ar_fail(AR_ERR_INVALID_ARG, "chat template '%.64s' is unknown (known: %s)",
                    p->template_name, ar_chat_names());
        return f;
    }
    const ar_model *m = model->m;
    ar_str t;
    if (ar_gguf_get_str(m->gguf, "tokenizer.chat_template", &t) != AR_OK) {
        ar_fail(AR_ERR_UNSUPPORTED,
                "%s: no tokenizer.chat_template: choose a template by name (%s)", m->path,
                ar_chat_names());
        return AR_CHAT_UNKNOWN;
    }
    ar_chat_family f = ar_chat_detect(t.ptr, (size_t)t.len);
    if (f == AR_CHAT_UNKNOWN)
        ar_fail(AR_ERR_UNSUPPORTED,
                "%s: tokenizer.chat_template is of no supported family (%s): choose one by name",
                m->path, ar_chat_names());
    return f;
}

const char *arbor_chat_template(const arbor_model *model, const arbor_chat_params *params) {
    if (!model) {
        ar_fail(AR_ERR_INVALID_ARG, "arbor_chat_template: model is NULL");
        return NULL;
    }
    arbor_chat_params p = params ? *params : arbor_chat_default_params();
    ar_chat_family f = chat_family(model, &p);
    return f == AR_CHAT_UNKNOWN ? NULL : ar_chat_name(f);
}

int32_t arbor_chat_format(const arbor_model *model, const arbor_chat_message *messages,
                          int32_t n_messages, const arbor_chat_params *params, char *buf,
                          int32_t cap) {
    if (!model) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_chat_format: model is NULL");
    if (n_messages < 0 || (!messages && n_messages > 0))
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_chat_format: %d messages (messages %s)",
                    n_messages, messages ? "given" : "NULL");
    if (cap < 0 || (!buf && cap > 0))
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_chat_format: no room for %d bytes (buf %s)",
                    cap, buf ? "given" : "NULL");
    arbor_chat_params p = params ? *params : arbor_chat_default_params();
    ar_chat_family f = chat_family(model, &p);
    if (f == AR_CHAT_UNKNOWN)
        return p.template_name ? ARBOR_ERR_INVALID_ARG : ARBOR_ERR_UNSUPPORTED;
    ar_chat_msg *msgs = malloc(sizeof *msgs * (size_t)(n_messages ? n_messages : 1));
    if (!msgs) return FAIL(ARBOR_ERR_NOMEM, "arbor_chat_format: out of memory");
    for (int32_t i = 0; i < n_messages; i++)
        msgs[i] = (ar_chat_msg){messages[i].role, messages[i].content};
    int64_t n = ar_chat_format(f, msgs, (size_t)n_messages, p.add_assistant, buf, cap);
    free(msgs);
    if (n > INT32_MAX)
        return FAIL(ARBOR_ERR_NOMEM, "arbor_chat_format: %lld bytes exceed INT32_MAX",
                    (long long)n);
    return (int32_t)n;
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
                                  .draft_share = true,
                                  .tree = NULL,
                                  .sched_costs = NULL,
                                  .trace = NULL,
                                  .trace_user = NULL,
                                  .mem_budget = 0,
                                  .cost_cache = true};
}

static arbor_status check_context_params(const arbor_model *model, const arbor_context_params *p,
                                         ar_tree_spec *spec) {
    const ar_model *m = model->m;
    if (m->vocab_only)
        return FAIL(ARBOR_ERR_INVALID_ARG, "%s: a vocabulary-only model cannot generate", m->path);
    if (p->n_ctx < 0)
        return FAIL(ARBOR_ERR_INVALID_ARG, "context: n_ctx %d must be >= 0 (0: the model's %d)",
                    p->n_ctx, m->hp.n_ctx_train);
    if (p->n_threads < 0 || p->n_threads > MAX_THREADS)
        return FAIL(ARBOR_ERR_INVALID_ARG, "context: n_threads %d must be in [0, %d]", p->n_threads,
                    MAX_THREADS);
    if (p->n_batch < 0)
        return FAIL(ARBOR_ERR_INVALID_ARG, "context: n_batch %d must be >= 0", p->n_batch);
    if (p->draft_threads < 0 || p->draft_threads > MAX_THREADS)
        return FAIL(ARBOR_ERR_INVALID_ARG, "context: draft_threads %d out of range [0, %d]",
                    p->draft_threads, MAX_THREADS);
    if (p->draft_kind < ARBOR_DRAFT_NONE || p->draft_kind > ARBOR_DRAFT_LOOKUP)
        return FAIL(ARBOR_ERR_INVALID_ARG, "context: unknown draft_kind %d", (int)p->draft_kind);
    if (p->draft_kind == ARBOR_DRAFT_MODEL) {
        if (!p->draft_model)
            return FAIL(ARBOR_ERR_INVALID_ARG, "context: draft_kind MODEL needs draft_model");
        const ar_model *dm = p->draft_model->m;
        if (dm->vocab_only)
            return FAIL(ARBOR_ERR_INVALID_ARG, "%s: a vocabulary-only model cannot draft",
                        dm->path);
        ar_status s = ar_vocab_compatible(m->vocab, dm->vocab);
        if (s != AR_OK) return (arbor_status)s;
    }
    if (p->draft_kind == ARBOR_DRAFT_SELF &&
        (p->draft_self_layers < 1 || p->draft_self_layers >= m->hp.n_layer))
        return FAIL(ARBOR_ERR_INVALID_ARG,
                    "context: draft_self_layers %d must be in [1, %d] (the verifier has %d)",
                    p->draft_self_layers, m->hp.n_layer - 1, m->hp.n_layer);
    if (p->tree || p->draft_kind != ARBOR_DRAFT_NONE) {
        ar_status s = ar_tree_spec_parse(p->tree ? p->tree : "adaptive", spec);
        if (s != AR_OK) return (arbor_status)s;
    }
    if (p->sched_costs && (p->draft_kind == ARBOR_DRAFT_NONE || !spec->adaptive))
        return FAIL(ARBOR_ERR_INVALID_ARG,
                    "context: sched_costs %s needs a drafter and the adaptive tree",
                    p->sched_costs);
    return ARBOR_OK; /* memory: the engine checks the whole context (sched/engine.c) */
}

static ar_status attach_drafter(arbor_context *c, const arbor_context_params *p,
                                const ar_tree_spec *spec) {
    ar_engine *e = c->engine;
    ar_drafter *d = NULL;
    ar_status s;
    if (p->draft_kind == ARBOR_DRAFT_LOOKUP)
        s = ar_drafter_create_lookup(e->kv->cap, &d);
    else if (p->draft_kind == ARBOR_DRAFT_SELF)
        s = ar_drafter_create_model(c->model->m, p->draft_self_layers, e->kv->cap, e->pool, &d);
    else
        s = ar_drafter_create_model(p->draft_model->m, 0, e->kv->cap, e->pool, &d);
    if (s != AR_OK) return s;
    ar_drafter_limit_vocab(d, c->model->m->hp.n_vocab);
    s = ar_engine_set_drafter(e, d, spec); /* owns d from here, also on failure */
    if (s == AR_OK && p->sched_costs) s = ar_engine_load_costs(e, p->sched_costs);
    return s;
}

/* The engine's step trace, passed on in the public struct. */
static void trace_step(void *user, const ar_step_trace *t) {
    const arbor_context *c = user;
    arbor_step_trace at = {.step = t->step,
                           .n_committed = t->n_committed,
                           .drafted = t->drafted,
                           .verified = t->verified,
                           .depth = t->depth,
                           .accepted = t->accepted,
                           .draft_seconds = t->draft_seconds,
                           .verify_seconds = t->verify_seconds,
                           .threshold = t->threshold,
                           .expected = t->expected,
                           .reason = t->reason ? t->reason : ""};
    c->trace(c->trace_user, &at);
}

static const char *draft_kind_name(const arbor_context_params *p) {
    switch (p->draft_kind) {
    case ARBOR_DRAFT_MODEL:
        return p->draft_model->m->path;
    case ARBOR_DRAFT_SELF:
        return "self";
    case ARBOR_DRAFT_LOOKUP:
        return "lookup";
    default:
        return "none";
    }
}

arbor_status arbor_context_create(const arbor_model *model, arbor_context_params params,
                                  arbor_context **out) {
    if (!out) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_context_create: out is NULL");
    *out = NULL;
    if (!model) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_context_create: model is NULL");
    ar_tree_spec spec;
    arbor_status st = check_context_params(model, &params, &spec);
    if (st != ARBOR_OK) return st;
    if (params.draft_kind == ARBOR_DRAFT_MODEL && params.draft_share &&
        ar_model_is_cut_of(params.draft_model->m, model->m)) {
        /* the drafter's weights are the verifier's first layers byte for byte: drafting with
         * those computes the same logits, and the drafter's copy need not be in memory */
        ar_model *dm = params.draft_model->m;
        api_log(ARBOR_LOG_INFO,
                "%s: the verifier's first %d layers byte for byte: drafting with the verifier's "
                "own (self:%d), its copy released",
                dm->path, dm->hp.n_layer, dm->hp.n_layer);
        params.draft_kind = ARBOR_DRAFT_SELF;
        params.draft_self_layers = dm->hp.n_layer;
        ar_model_release_memory(dm);
    }

    arbor_context *c = calloc(1, sizeof *c);
    if (!c) return FAIL(ARBOR_ERR_NOMEM, "arbor_context_create: out of memory");
    c->model = model;
    atomic_init(&c->cancel, false);
    ar_engine_params ep = {.n_ctx = params.n_ctx,
                           .n_threads = params.n_threads,
                           .n_batch = params.n_batch,
                           .kv_type = params.kv_f16 ? AR_TYPE_F16 : AR_TYPE_F32,
                           .pin = params.pin_threads,
                           .pipeline = params.pipeline,
                           .draft_threads = params.draft_threads,
                           .mem_budget = params.mem_budget,
                           .cost_cache = params.cost_cache,
                           .draft_model = params.draft_kind == ARBOR_DRAFT_MODEL
                                              ? params.draft_model->m
                                              : params.draft_kind == ARBOR_DRAFT_SELF ? model->m
                                                                                       : NULL,
                           .draft_layers = params.draft_kind == ARBOR_DRAFT_SELF
                                               ? params.draft_self_layers
                                               : 0};
    ar_status s = ar_engine_create(model->m, ep, &c->engine);
    if (s == AR_OK && params.pin_threads) {
        if (c->engine->pin_failed)
            api_log(ARBOR_LOG_WARN, "threads could not be pinned to cores (not permitted here): "
                                    "running unpinned");
        else
            api_log(ARBOR_LOG_INFO, "placement: %s", c->engine->placement);
    }
    if (s == AR_OK && params.draft_kind != ARBOR_DRAFT_NONE) s = attach_drafter(c, &params, &spec);
    if (s == AR_OK && params.mem_budget) s = ar_engine_apply_budget(c->engine);
    if (s != AR_OK) {
        arbor_context_free(c);
        return (arbor_status)s;
    }
    if (params.trace) {
        c->trace = params.trace;
        c->trace_user = params.trace_user;
        c->engine->trace = trace_step;
        c->engine->trace_user = c;
    }
    const ar_engine *e = c->engine;
    api_log(ARBOR_LOG_INFO, "context: %d tokens (%s KV cache, %.1f MiB), %d threads, drafter %s",
            e->kv->cap, params.kv_f16 ? "f16" : "f32",
            (double)ar_kv_bytes(model->m, e->kv->cap, 0, e->kv->type) / (1024.0 * 1024.0),
            e->params.n_threads, draft_kind_name(&params));
    if (e->kv->cap > model->m->hp.n_ctx_train)
        api_log(ARBOR_LOG_WARN, "context of %d tokens exceeds the %d the model was trained with",
                e->kv->cap, model->m->hp.n_ctx_train);
    if (e->stream) {
        const ar_stream_plan *pl = ar_stream_get_plan(e->stream);
        api_log(ARBOR_LOG_INFO,
                "memory budget %.1f MiB: %d of %d layers%s resident (%.1f MiB), %.1f MiB read per "
                "pass into %d buffers of %.1f MiB",
                (double)params.mem_budget / 1048576.0, pl->n_resident_layers,
                model->m->hp.n_layer, pl->head_resident ? " and the head" : "",
                (double)pl->resident_bytes / 1048576.0, (double)pl->streamed_bytes / 1048576.0,
                pl->n_slots, pl->n_slots ? (double)pl->slot_bytes / pl->n_slots / 1048576.0 : 0.0);
    }
    *out = c;
    return ARBOR_OK;
}

void arbor_context_free(arbor_context *ctx) {
    if (!ctx) return;
    ar_engine_free(ctx->engine);
    free(ctx->piece);
    free(ctx);
}

void arbor_context_reset(arbor_context *ctx) {
    if (ctx) ar_engine_reset(ctx->engine);
}

arbor_status arbor_context_get_memory(const arbor_context *ctx, arbor_memory_info *out) {
    if (!ctx || !out) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_context_get_memory: NULL argument");
    ar_engine *e = ctx->engine;
    ar_engine_memory mem;
    ar_engine_get_memory(e, &mem);
    *out = (arbor_memory_info){.budget = e->params.mem_budget,
                               .verifier_resident = mem.weights,
                               .resident_layers = ctx->model->m->hp.n_layer,
                               .head_resident = true,
                               .drafter_weights = mem.drafter_weights,
                               .kv = mem.kv + (e->spec ? ar_drafter_kv_bytes(e->spec->drafter) : 0),
                               .buffers = mem.buffers + mem.drafter -
                                          (e->spec ? ar_drafter_kv_bytes(e->spec->drafter) : 0),
                               .process = mem.process};
    if (e->stream) {
        const ar_stream_plan *pl = ar_stream_get_plan(e->stream);
        ar_stream_stats st;
        ar_stream_get_stats(e->stream, &st);
        out->verifier_resident = pl->resident_bytes;
        out->stream_buffers = pl->slot_bytes;
        out->streamed_per_pass = pl->streamed_bytes;
        out->resident_layers = pl->n_resident_layers;
        out->head_resident = pl->head_resident;
        out->bytes_streamed = st.bytes_read;
        out->read_seconds = st.read_seconds;
        out->wait_seconds = st.wait_seconds;
    }
    return ARBOR_OK;
}

arbor_status arbor_save_costs(arbor_context *ctx, const char *path) {
    if (!ctx || !path) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_save_costs: NULL argument");
    return (arbor_status)ar_engine_save_costs(ctx->engine, path);
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

/* Every field, so a bad value is an error here rather than a silent fallback later. */
static arbor_status check_generate_params(const arbor_generate_params *p) {
    const arbor_sampling_params *sp = &p->sampling;
    if (p->n_predict < -1)
        return FAIL(ARBOR_ERR_INVALID_ARG, "n_predict %d: must be >= 0, or -1 for no limit",
                    p->n_predict);
    if (isnan(sp->temp) || isnan(sp->top_p) || isnan(sp->min_p))
        return FAIL(ARBOR_ERR_INVALID_ARG, "sampling: temp %g, top_p %g, min_p %g: NaN",
                    (double)sp->temp, (double)sp->top_p, (double)sp->min_p);
    if (!(sp->repeat_penalty > 0.0f) || isinf(sp->repeat_penalty))
        return FAIL(ARBOR_ERR_INVALID_ARG,
                    "sampling: repeat_penalty %g must be positive and finite (1: off)",
                    (double)sp->repeat_penalty);
    if (sp->repeat_last_n < -1)
        return FAIL(ARBOR_ERR_INVALID_ARG,
                    "sampling: repeat_last_n %d must be >= 0, or -1 for the whole context",
                    sp->repeat_last_n);
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop))
        return FAIL(ARBOR_ERR_INVALID_ARG, "%d stop strings at %s", p->n_stop,
                    p->stop ? "an address" : "NULL");
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return FAIL(ARBOR_ERR_INVALID_ARG, "stop string %d is %s", i,
                        p->stop[i] ? "empty" : "NULL");
    return ARBOR_OK;
}

arbor_status arbor_generate(arbor_context *ctx, const char *prompt,
                            const arbor_generate_params *params, arbor_token_fn fn, void *user) {
    if (!ctx) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_generate: ctx is NULL");
    if (!prompt) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_generate: prompt is NULL");
    arbor_generate_params dflt = arbor_generate_default_params();
    if (!params) params = &dflt;
    const ar_vocab *v = ctx->model->m->vocab;
    size_t len = strlen(prompt);
    int64_t n = ar_tokenize(v, prompt, len, params->add_special, params->parse_special, NULL, 0);
    if (n < 0) return (arbor_status)n;
    if (n > ctx->engine->kv->cap)
        return FAIL(ARBOR_ERR_CONTEXT_FULL, "prompt of %lld tokens does not fit the context of %d",
                    (long long)n, ctx->engine->kv->cap);
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) return FAIL(ARBOR_ERR_NOMEM, "arbor_generate: out of memory");
    ar_tokenize(v, prompt, len, params->add_special, params->parse_special, ids, n);
    arbor_status s = arbor_generate_tokens(ctx, ids, (int32_t)n, params, fn, user);
    free(ids);
    return s;
}

/* Evaluates a prompt into the context and starts the statistics of what follows. */
static ar_status prefill(arbor_context *ctx, const int32_t *prompt, int32_t n_prompt) {
    ar_engine *e = ctx->engine;
    memset(&ctx->stats, 0, sizeof ctx->stats);
    memset(&e->stats, 0, sizeof e->stats);
    const double t0 = ar_now();
    int32_t reused = 0;
    ar_status s = ar_engine_prefill(e, prompt, n_prompt, &reused);
    if (s != AR_OK) return s;
    ctx->stats.n_prompt = n_prompt;
    ctx->stats.n_prompt_reused = reused;
    ctx->stats.prompt_seconds = ar_now() - t0;
    return AR_OK;
}

/* The streaming side of one generation: detokenization and stop strings. */
typedef struct stream {
    arbor_context *ctx;
    const arbor_generate_params *p;
    arbor_token_fn fn;
    void *user;
    ar_detok dt;
    char *tail; /* the end of the text so far, for stop strings */
    size_t tail_len, tail_cap, max_stop;
} stream;

/* True when a stop string ends within the last `added` bytes of the tail. */
static bool hits_stop(const stream *st, size_t added) {
    for (int32_t i = 0; i < st->p->n_stop; i++) {
        const char *stop = st->p->stop[i];
        size_t sl = strlen(stop);
        if (sl > st->tail_len) continue;
        size_t first_end = AR_MAX(st->tail_len - added + 1, sl);
        for (size_t end = first_end; end <= st->tail_len; end++)
            if (!memcmp(st->tail + end - sl, stop, sl)) return true;
    }
    return false;
}

/* Appends the k bytes a token added to the tail and sets *hit when they complete a stop string.
 * Only the last max_stop - 1 earlier bytes can begin a match that ends in the new ones. */
static ar_status tail_push(stream *st, const char *text, size_t k, bool *hit) {
    if (!st->max_stop || !k) return AR_OK;
    size_t keep = AR_MIN(st->tail_len, st->max_stop - 1);
    memmove(st->tail, st->tail + st->tail_len - keep, keep);
    if (keep + k > st->tail_cap) {
        char *nt = realloc(st->tail, keep + k);
        if (!nt) return ar_fail(AR_ERR_NOMEM, "generate: out of memory for stop strings");
        st->tail = nt;
        st->tail_cap = keep + k;
    }
    memcpy(st->tail + keep, text, k);
    st->tail_len = keep + k;
    if (hits_stop(st, k)) *hit = true;
    return AR_OK;
}

/* The printable bytes token t completes, in ctx->piece (grown to fit); < 0 on error. */
static int32_t detok_push(stream *st, int32_t t) {
    arbor_context *c = st->ctx;
    const ar_vocab *v = c->model->m->vocab;
    if (t >= ar_vocab_n_tokens(v)) return 0; /* an output row beyond the vocabulary: no text */
    int32_t len = ar_token_to_piece(v, t, false, NULL, 0);
    if (len < 0) return len;
    size_t need = (size_t)len + sizeof st->dt.pending;
    if (need > c->piece_cap) {
        char *np = realloc(c->piece, need);
        if (!np) return ar_fail(AR_ERR_NOMEM, "generate: out of memory for a %d-byte piece", len);
        c->piece = np;
        c->piece_cap = need;
    }
    return ar_detok_push(&st->dt, v, t, c->piece, (int32_t)c->piece_cap);
}

/* Streams one generated token; *why is set when generation must end after it. */
static ar_status emit(stream *st, int32_t t, arbor_stop_reason *why) {
    int32_t k = detok_push(st, t);
    if (k < 0) return (ar_status)k;
    if (st->fn && !st->fn(st->user, t, st->ctx->piece, (size_t)k)) *why = ARBOR_STOP_CALLBACK;
    bool hit = false;
    ar_status s = tail_push(st, st->ctx->piece, (size_t)k, &hit);
    if (hit && *why == ARBOR_STOP_NONE) *why = ARBOR_STOP_STRING;
    return s;
}

/* After a normal end: the bytes of an incomplete character at the very end, as they are. */
static void flush(stream *st) {
    char held[sizeof st->dt.pending];
    int32_t k = ar_detok_flush(&st->dt, held, (int32_t)sizeof held);
    if (k > 0 && st->fn) st->fn(st->user, ARBOR_TOKEN_NONE, held, (size_t)k);
}

static void collect_stats(arbor_context *ctx, int32_t produced, double seconds) {
    arbor_stats *st = &ctx->stats;
    const ar_engine_stats *es = &ctx->engine->stats;
    st->n_generated = produced;
    st->generate_seconds = seconds;
    st->tokens_per_second = seconds > 0 ? produced / seconds : 0.0;
    st->n_verify = es->n_verify;
    st->n_drafted = es->n_drafted;
    st->n_accepted = es->n_accepted;
    st->mean_accepted = es->n_verify ? (double)es->n_accepted / (double)es->n_verify : 0.0;
    st->draft_seconds = es->draft_seconds;
    st->verify_seconds = es->verify_seconds;
    st->n_plain_steps = es->n_plain_steps;
    st->n_pipelined = es->n_pipelined;
    for (int i = 0; i < ARBOR_MAX_DEPTH_STATS; i++) {
        st->drafted_at_depth[i] = es->drafted_at_depth[i];
        st->accepted_at_depth[i] = es->accepted_at_depth[i];
    }
}

static void set_sampling(ar_engine *e, const arbor_sampling_params *sp) {
    ar_sampler_params asp = {.temp = sp->temp,
                             .top_k = sp->top_k,
                             .top_p = sp->top_p,
                             .min_p = sp->min_p,
                             .repeat_penalty = sp->repeat_penalty,
                             .repeat_last_n = sp->repeat_last_n,
                             .seed = sp->seed};
    ar_engine_set_sampling(e, &asp); /* reseeds the drafter's stream too */
}

/* The decoding loop: steps the engine and streams tokens until a limit, a stop or an error. */
static ar_status decode(stream *st, int32_t *produced, arbor_stop_reason *why) {
    arbor_context *ctx = st->ctx;
    const arbor_generate_params *p = st->p;
    const ar_vocab *v = ctx->model->m->vocab;
    int32_t out[AR_TREE_MAX + 1];
    *why = p->n_predict == 0 ? ARBOR_STOP_LENGTH : ARBOR_STOP_NONE;
    while (*why == ARBOR_STOP_NONE) {
        if (atomic_load(&ctx->cancel)) {
            *why = ARBOR_STOP_CANCELLED;
            return ar_fail(AR_ERR_CANCELLED, "generation cancelled after %d tokens", *produced);
        }
        int32_t cap = (int32_t)AR_ARRAY_LEN(out);
        if (p->n_predict > 0) cap = AR_MIN(cap, p->n_predict - *produced);
        int32_t got = 0;
        ar_status s = ar_engine_step(ctx->engine, out, cap, &got);
        if (s == AR_ERR_CONTEXT_FULL) {
            ctx->stats.stopped_by_context = true;
            *why = ARBOR_STOP_CONTEXT;
            api_log(ARBOR_LOG_WARN, "context full (%d tokens): generation stopped after %d tokens",
                    ctx->engine->kv->cap, *produced);
            return AR_OK;
        }
        if (s != AR_OK) {
            *why = ARBOR_STOP_ERROR;
            return s;
        }
        for (int32_t i = 0; i < got && *why == ARBOR_STOP_NONE; i++) {
            int32_t t = out[i];
            ++*produced;
            if (!p->ignore_eos && ar_vocab_is_eog(v, t)) {
                *why = ARBOR_STOP_EOG; /* not streamed: it prints nothing and ends the turn */
                break;
            }
            if ((s = emit(st, t, why)) != AR_OK) {
                *why = ARBOR_STOP_ERROR;
                return s;
            }
            if (*why == ARBOR_STOP_NONE && p->n_predict > 0 && *produced >= p->n_predict)
                *why = ARBOR_STOP_LENGTH;
        }
    }
    return AR_OK;
}

arbor_status arbor_generate_tokens(arbor_context *ctx, const arbor_token *prompt, int32_t n_prompt,
                                   const arbor_generate_params *params, arbor_token_fn fn,
                                   void *user) {
    if (!ctx) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_generate_tokens: ctx is NULL");
    if (n_prompt < 1 || !prompt)
        return FAIL(ARBOR_ERR_INVALID_ARG,
                    "arbor_generate_tokens: a prompt of at least one token is needed (%d, %s)",
                    n_prompt, prompt ? "given" : "NULL");
    arbor_generate_params dflt = arbor_generate_default_params();
    if (!params) params = &dflt;
    arbor_status st = check_generate_params(params);
    if (st != ARBOR_OK) return st;
    ar_engine *e = ctx->engine;
    atomic_store(&ctx->cancel, false);
    set_sampling(e, &params->sampling);
    ar_status s = prefill(ctx, prompt, n_prompt);
    if (s != AR_OK) return (arbor_status)s;
    const double t1 = ar_now();

    stream sm = {.ctx = ctx, .p = params, .fn = fn, .user = user};
    for (int32_t i = 0; i < params->n_stop; i++)
        sm.max_stop = AR_MAX(sm.max_stop, strlen(params->stop[i]));
    if (sm.max_stop) {
        sm.tail_cap = sm.max_stop + 256;
        if (!(sm.tail = malloc(sm.tail_cap)))
            return FAIL(ARBOR_ERR_NOMEM, "generate: out of memory for stop strings");
    }
    int32_t produced = 0;
    arbor_stop_reason why;
    s = decode(&sm, &produced, &why);
    if (s == AR_OK) flush(&sm);
    free(sm.tail);
    collect_stats(ctx, produced, ar_now() - t1);
    ctx->stats.stop_reason = why;
    ar_engine_end_generation(e);
    for (const char *w; (w = ar_engine_take_warning(e));) api_log(ARBOR_LOG_WARN, "%s", w);
    return (arbor_status)s;
}

arbor_status arbor_set_sampling(arbor_context *ctx, const arbor_sampling_params *params) {
    if (!ctx || !params) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_set_sampling: NULL argument");
    arbor_generate_params gp = arbor_generate_default_params();
    gp.sampling = *params;
    arbor_status st = check_generate_params(&gp);
    if (st != ARBOR_OK) return st;
    set_sampling(ctx->engine, params);
    return ARBOR_OK;
}

arbor_status arbor_prefill(arbor_context *ctx, const arbor_token *prompt, int32_t n_prompt) {
    if (!ctx) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_prefill: ctx is NULL");
    if (n_prompt < 1 || !prompt)
        return FAIL(ARBOR_ERR_INVALID_ARG,
                    "arbor_prefill: a prompt of at least one token is needed (%d, %s)", n_prompt,
                    prompt ? "given" : "NULL");
    atomic_store(&ctx->cancel, false);
    ctx->step_tokens = 0;
    ctx->step_seconds = 0.0;
    return (arbor_status)prefill(ctx, prompt, n_prompt);
}

int32_t arbor_step(arbor_context *ctx, arbor_token *out, int32_t cap) {
    if (!ctx) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_step: ctx is NULL");
    if (!out || cap < 1)
        return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_step: no room for tokens (cap %d)", cap);
    if (atomic_load(&ctx->cancel))
        return FAIL(ARBOR_ERR_CANCELLED, "arbor_step: cancelled");
    const double t0 = ar_now();
    int32_t got = 0;
    ar_status s = ar_engine_step(ctx->engine, out, AR_MIN(cap, ARBOR_MAX_STEP_TOKENS), &got);
    ctx->step_seconds += ar_now() - t0;
    if (s != AR_OK) return (int32_t)s;
    ctx->step_tokens += got;
    const arbor_stop_reason why = ctx->stats.stop_reason;
    collect_stats(ctx, ctx->step_tokens, ctx->step_seconds);
    ctx->stats.stop_reason = why;
    return got;
}

const float *arbor_step_logits(const arbor_context *ctx) {
    if (!ctx || ctx->engine->last_row < 0) return NULL;
    return ctx->engine->logits + (size_t)ctx->engine->last_row * (size_t)ctx->engine->n_vocab;
}

arbor_status arbor_get_stats(const arbor_context *ctx, arbor_stats *out) {
    if (!ctx || !out) return FAIL(ARBOR_ERR_INVALID_ARG, "arbor_get_stats: NULL argument");
    *out = ctx->stats;
    return ARBOR_OK;
}
