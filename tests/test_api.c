/* test_api.c: the public C API, used through include/arbor.h alone: generation against the
 * llama.cpp references and byte for byte against `arbor generate`, models shared by concurrent
 * contexts, cancellation from another thread, every error path, prompt-prefix reuse, stop
 * conditions, seeded sampling, statistics and the log sink. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbor.h"
#include "tests/util/refs.h"

/* ---- helpers ---- */

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static const char *fixture_model(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    return fixture(rel);
}

static arbor_model *load(const char *name) {
    arbor_model *m = NULL;
    arbor_status s = arbor_model_load(fixture_model(name), arbor_model_default_params(), &m);
    cr_assert_eq(s, ARBOR_OK, "%s: %s", name, arbor_last_error());
    return m;
}

/* One thread per context: tests run beside each other on a small machine. */
static arbor_context_params base_params(void) {
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = 1;
    return cp;
}

static arbor_context *context(const arbor_model *m, arbor_context_params cp) {
    arbor_context *c = NULL;
    arbor_status s = arbor_context_create(m, cp, &c);
    cr_assert_eq(s, ARBOR_OK, "context: %s", arbor_last_error());
    return c;
}

/* What the streaming callback received. */
typedef struct output {
    char *text;
    size_t len, cap;
    arbor_token *ids; /* tokens passed (ARBOR_TOKEN_NONE excluded) */
    int n_ids, cap_ids;
    int n_calls, n_none_calls;
    int stop_after; /* > 0: return false on this call */
} output;

static bool collect(void *user, arbor_token token, const char *text, size_t len) {
    output *o = user;
    o->n_calls++;
    if (o->len + len + 1 > o->cap) {
        o->cap = (o->len + len + 1) * 2;
        o->text = realloc(o->text, o->cap);
    }
    memcpy(o->text + o->len, text, len);
    o->len += len;
    o->text[o->len] = 0;
    if (token == ARBOR_TOKEN_NONE) {
        o->n_none_calls++;
    } else {
        if (o->n_ids == o->cap_ids) {
            o->cap_ids = o->cap_ids ? o->cap_ids * 2 : 64;
            o->ids = realloc(o->ids, (size_t)o->cap_ids * sizeof *o->ids);
        }
        o->ids[o->n_ids++] = token;
    }
    return !(o->stop_after > 0 && o->n_calls >= o->stop_after);
}

static void output_free(output *o) {
    free(o->text);
    free(o->ids);
    memset(o, 0, sizeof *o);
}

static output generate(arbor_context *c, const char *prompt, const arbor_generate_params *gp) {
    output o = {0};
    arbor_status s = arbor_generate(c, prompt, gp, collect, &o);
    cr_assert_eq(s, ARBOR_OK, "generate: %s", arbor_last_error());
    if (!o.text) o.text = calloc(1, 1);
    return o;
}

static arbor_generate_params greedy(int32_t n) {
    arbor_generate_params gp = arbor_generate_default_params();
    gp.sampling.temp = 0.0f;
    gp.n_predict = n;
    return gp;
}

static arbor_stats stats_of(const arbor_context *c) {
    arbor_stats st;
    cr_assert_eq(arbor_get_stats(c, &st), ARBOR_OK);
    return st;
}

/* Asserts a failed call: the status, and a message naming `word`. */
#define EXPECT_FAIL(call, status, word)                                                            \
    do {                                                                                           \
        int32_t got_ = (int32_t)(call);                                                            \
        cr_expect_eq(got_, (int32_t)(status), "%s: got %d (%s), want %d", #call, got_,             \
                     arbor_last_error(), (int)(status));                                           \
        cr_expect(strstr(arbor_last_error(), word), "%s: message '%s' lacks '%s'", #call,          \
                  arbor_last_error(), word);                                                       \
    } while (0)

/* ---- against llama.cpp's reference outputs ---- */

static void check_reference(const char *stem) {
    ref_file ref;
    cr_assert(ref_load(stem, &ref));
    arbor_model *m = load(ref.model);
    arbor_context *c = context(m, base_params());
    for (int k = 0; k < ref.n_cases; k++) {
        const ref_case *rc = &ref.cases[k];
        arbor_token ids[256];
        int32_t n = arbor_tokenize(m, rc->prompt, rc->prompt_len, true, false, ids, 256);
        cr_assert_eq(n, rc->n_prompt, "%s case %d: %d prompt tokens, want %d", stem, k, n,
                     rc->n_prompt);
        cr_assert_arr_eq(ids, rc->prompt_ids, (size_t)n * sizeof *ids);
        arbor_generate_params gp = greedy(rc->n_gen);
        gp.ignore_eos = true; /* the references do not stop at EOS */
        gp.parse_special = false;
        arbor_context_reset(c);
        output o = generate(c, rc->prompt, &gp);
        cr_assert_eq(o.n_ids, rc->n_gen, "%s case %d", stem, k);
        cr_expect_arr_eq(o.ids, rc->greedy_ids, (size_t)o.n_ids * sizeof *o.ids, "%s case %d ids",
                         stem, k);
        cr_expect_eq(o.len, rc->greedy_text_len, "%s case %d: %zu bytes, want %zu", stem, k, o.len,
                     rc->greedy_text_len);
        cr_expect_arr_eq(o.text, rc->greedy_text, MIN(o.len, rc->greedy_text_len),
                         "%s case %d text", stem, k);
        output_free(&o);
    }
    arbor_context_free(c);
    arbor_model_free(m);
    ref_free(&ref);
}

Test(reference, spm_vocab_greedy_matches_llama_cpp, .timeout = 120) {
    check_reference("stories260K-f32");
}
Test(reference, gpt2_vocab_greedy_matches_llama_cpp, .timeout = 120) {
    check_reference("synth-qwen2-f32"); /* byte-level BPE, no BOS, split UTF-8 characters */
}

/* ---- the same settings through the CLI and through the API give the same bytes ---- */

typedef struct cli_case {
    const char *model, *draft, *tree, *prompt;
    int32_t n;
    float temp, repeat_penalty;
    uint64_t seed;
    const char *stop;
} cli_case;

static char *run_cli(const cli_case *k, size_t *len) {
    char cmd[4096];
    int w =
        snprintf(cmd, sizeof cmd, "'%s' generate -t 1 -m '%s' -p '%s' -n %d --temp %g --seed %llu",
                 ARBOR_CLI, fixture_model(k->model), k->prompt, k->n, (double)k->temp,
                 (unsigned long long)k->seed);
    if (k->repeat_penalty != 1.0f)
        w += snprintf(cmd + w, sizeof cmd - (size_t)w, " --repeat-penalty %g",
                      (double)k->repeat_penalty);
    if (k->draft) {
        bool file = strstr(k->draft, ".gguf") != NULL;
        w += snprintf(cmd + w, sizeof cmd - (size_t)w, " -md '%s'",
                      file ? fixture_model(k->draft) : k->draft);
    }
    if (k->tree) w += snprintf(cmd + w, sizeof cmd - (size_t)w, " --tree %s", k->tree);
    if (k->stop) w += snprintf(cmd + w, sizeof cmd - (size_t)w, " --stop '%s'", k->stop);
    snprintf(cmd + w, sizeof cmd - (size_t)w, " 2>/dev/null");
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    *len = fread(buf, 1, cap - 1, p);
    buf[*len] = 0;
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    return buf;
}

static output run_api(const cli_case *k) {
    arbor_model *m = load(k->model), *dm = NULL;
    arbor_context_params cp = base_params();
    cp.tree = k->tree;
    if (k->draft && !strcmp(k->draft, "lookup")) {
        cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    } else if (k->draft && !strncmp(k->draft, "self:", 5)) {
        cp.draft_kind = ARBOR_DRAFT_SELF;
        cp.draft_self_layers = atoi(k->draft + 5);
    } else if (k->draft) {
        dm = load(k->draft);
        cp.draft_kind = ARBOR_DRAFT_MODEL;
        cp.draft_model = dm;
    }
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = k->n;
    gp.sampling.temp = k->temp;
    gp.sampling.seed = k->seed;
    gp.sampling.repeat_penalty = k->repeat_penalty;
    const char *stops[1] = {k->stop};
    if (k->stop) {
        gp.stop = stops;
        gp.n_stop = 1;
    }
    output o = generate(c, k->prompt, &gp);
    arbor_context_free(c);
    arbor_model_free(dm);
    arbor_model_free(m);
    return o;
}

Test(cli, same_bytes_as_arbor_generate, .timeout = 300) {
    static const cli_case cases[] = {
        {"stories260K-f32.gguf", NULL, NULL, "Once upon a time", 48, 0.0f, 1.0f, 0, NULL},
        {"stories260K-f32.gguf", NULL, NULL, "The little dog", 48, 0.9f, 1.0f, 42, NULL},
        {"stories260K-f32.gguf", NULL, NULL, "Once upon a time", 64, 0.0f, 1.0f, 0, " park"},
        {"llama2xs-260K-f32.gguf", "stories260K-f32.gguf", "static:3x2", "Tom went", 48, 0.8f, 1.0f,
         7, NULL},
        {"llama2xs-260K-q8_0.gguf", "stories260K-f32.gguf", "dynamic:12", "A cat", 40, 0.0f, 1.0f,
         0, NULL},
        {"synth-llama-q4_0.gguf", "self:2", "chain:3", "Once upon a time", 40, 0.7f, 1.1f, 3, NULL},
        {"stories260K-f32.gguf", "lookup", "chain:4", "Once upon a time", 40, 0.0f, 1.0f, 0, NULL},
        {"synth-qwen2-q8_0.gguf", NULL, NULL, "Hello world", 40, 0.0f, 1.0f, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n_cli;
        char *cli = run_cli(&cases[i], &n_cli);
        output api = run_api(&cases[i]);
        cr_expect(n_cli > 0, "case %zu: the CLI printed nothing", i);
        cr_expect_eq(api.len, n_cli, "case %zu: API %zu bytes, CLI %zu", i, api.len, n_cli);
        cr_expect(api.len == n_cli && !memcmp(api.text, cli, n_cli),
                  "case %zu: texts differ:\nAPI: %s\nCLI: %s", i, api.text, cli);
        free(cli);
        output_free(&api);
    }
}

/* ---- threads ---- */

typedef struct job {
    const arbor_model *model, *draft;
    arbor_draft_kind kind;
    int32_t self_layers;
    const char *tree, *prompt;
    arbor_generate_params gp;
    output out;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    arbor_context_params cp = base_params();
    cp.draft_kind = j->kind;
    cp.draft_model = j->draft;
    cp.draft_self_layers = j->self_layers;
    cp.tree = j->tree;
    arbor_context *c = NULL;
    if (arbor_context_create(j->model, cp, &c) != ARBOR_OK) return NULL;
    /* twice on the same context: the second call reuses the prompt and must agree */
    for (int rep = 0; rep < 2; rep++) {
        output_free(&j->out);
        if (arbor_generate(c, j->prompt, &j->gp, collect, &j->out) != ARBOR_OK) {
            arbor_context_free(c);
            return NULL;
        }
    }
    arbor_context_free(c);
    return j;
}

Test(threads, contexts_on_one_model_agree_with_sequential_runs, .timeout = 300) {
    arbor_model *m = load("llama2xs-260K-q8_0.gguf");
    arbor_model *d = load("stories260K-f32.gguf");
    arbor_generate_params sampled = arbor_generate_default_params();
    sampled.n_predict = 48;
    sampled.sampling.seed = 1234;
    job proto[4] = {
        {m, NULL, ARBOR_DRAFT_NONE, 0, NULL, "Once upon a time", greedy(48), {0}},
        {m, d, ARBOR_DRAFT_MODEL, 0, "static:2x2", "The little dog saw a", sampled, {0}},
        {m, NULL, ARBOR_DRAFT_SELF, 2, "chain:3", "Tom and his mom", sampled, {0}},
        {m, d, ARBOR_DRAFT_MODEL, 0, "dynamic:16", "Lily had a ball", greedy(48), {0}},
    };
    job seq[4], par[4];
    memcpy(seq, proto, sizeof seq);
    memcpy(par, proto, sizeof par);
    for (int i = 0; i < 4; i++) cr_assert(run_job(&seq[i]), "job %d: %s", i, arbor_last_error());
    pthread_t th[4];
    for (int i = 0; i < 4; i++) cr_assert_eq(pthread_create(&th[i], NULL, run_job, &par[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert(r, "job %d failed in its thread", i);
        cr_expect(seq[i].out.len > 0);
        cr_expect(seq[i].out.len == par[i].out.len &&
                      !memcmp(seq[i].out.text, par[i].out.text, seq[i].out.len),
                  "job %d: concurrent output differs:\n%s\n%s", i, seq[i].out.text,
                  par[i].out.text);
        output_free(&seq[i].out);
        output_free(&par[i].out);
    }
    arbor_model_free(d);
    arbor_model_free(m);
}

typedef struct tok_job {
    const arbor_model *m;
    const char *text;
    arbor_token ids[512];
    int32_t n;
} tok_job;

static void *tokenize_job(void *arg) {
    tok_job *t = arg;
    for (int rep = 0; rep < 20; rep++)
        t->n = arbor_tokenize(t->m, t->text, strlen(t->text), true, true, t->ids, 512);
    return NULL;
}

Test(threads, concurrent_tokenization_of_one_model, .timeout = 120) {
    const char *text = "Tom and his mom went to the park. They saw a big red ball, 123 apples "
                       "and naïve café signs — 'don't' <|endoftext|> émigrés 😀 done.";
    const char *names[2] = {"synth-qwen2-q8_0.gguf", "stories260K-f32.gguf"};
    for (int k = 0; k < 2; k++) {
        arbor_model *m = load(names[k]);
        tok_job one = {.m = m, .text = text};
        tokenize_job(&one);
        cr_assert(one.n > 10);
        tok_job jobs[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            jobs[i] = (tok_job){.m = m, .text = text};
            pthread_create(&th[i], NULL, tokenize_job, &jobs[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            cr_expect_eq(jobs[i].n, one.n);
            cr_expect_arr_eq(jobs[i].ids, one.ids, (size_t)one.n * sizeof one.ids[0]);
        }
        arbor_model_free(m);
    }
}

static void *fail_in_thread(void *arg) {
    arbor_model *m = NULL;
    arbor_model_load("/nonexistent/thread.gguf", arbor_model_default_params(), &m);
    *(bool *)arg = strstr(arbor_last_error(), "thread.gguf") != NULL;
    return NULL;
}

Test(threads, error_messages_are_per_thread) {
    arbor_model *m = NULL;
    cr_assert_eq(arbor_model_load("/nonexistent/main.gguf", arbor_model_default_params(), &m),
                 ARBOR_ERR_IO);
    bool other_saw_its_own = false;
    pthread_t th;
    pthread_create(&th, NULL, fail_in_thread, &other_saw_its_own);
    pthread_join(th, NULL);
    cr_expect(other_saw_its_own);
    cr_expect(strstr(arbor_last_error(), "main.gguf"), "message: %s", arbor_last_error());
}

/* ---- cancellation ---- */

typedef struct cancel_sync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    arbor_context *ctx;
    int started_at;   /* tokens seen when the canceller is woken */
    bool wait_for_it; /* the callback waits until arbor_cancel has been called */
    int tokens;
    bool asked, cancelled;
} cancel_sync;

static bool count_and_signal(void *user, arbor_token t, const char *text, size_t len) {
    cancel_sync *s = user;
    pthread_mutex_lock(&s->mu);
    if (++s->tokens == s->started_at) {
        s->asked = true;
        pthread_cond_broadcast(&s->cv);
        while (s->wait_for_it && !s->cancelled) pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void *canceller(void *arg) {
    cancel_sync *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->asked) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    arbor_cancel(s->ctx);
    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A generation that would run to a 4096-token context is cancelled from another thread. */
static void check_cancel(arbor_context_params cp, bool wait_for_it) {
    arbor_model *m = load("stories260K-f32.gguf");
    cp.n_ctx = 4096;
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = greedy(-1);
    gp.ignore_eos = true;
    cancel_sync s = {.ctx = c, .started_at = 8, .wait_for_it = wait_for_it};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_t th;
    pthread_create(&th, NULL, canceller, &s);
    arbor_status st = arbor_generate(c, "Once upon a time", &gp, count_and_signal, &s);
    pthread_join(th, NULL);
    cr_assert_eq(st, ARBOR_ERR_CANCELLED, "status %d: %s", st, arbor_last_error());
    cr_expect(strstr(arbor_last_error(), "cancel"));
    arbor_stats stats = stats_of(c);
    cr_expect_geq(stats.n_generated, 8);
    if (wait_for_it) /* cancelled before the next step: at most one step's tokens more */
        cr_expect_leq(stats.n_generated, 8 + 65, "%d tokens", stats.n_generated);
    else
        cr_expect_lt(stats.n_generated, 4000, "%d tokens", stats.n_generated);

    /* the context stays usable, and a cancel before a generation does not stop it */
    arbor_cancel(c);
    arbor_generate_params short_gp = greedy(16);
    output again = generate(c, "Once upon a time", &short_gp);
    arbor_context *fresh = context(m, cp);
    output ref = generate(fresh, "Once upon a time", &short_gp);
    cr_expect_eq(again.n_ids, 16);
    cr_expect_str_eq(again.text, ref.text);
    output_free(&again);
    output_free(&ref);
    arbor_context_free(fresh);
    arbor_context_free(c);
    arbor_model_free(m);
}

Test(cancel, plain_decoding_stops_before_the_next_step, .timeout = 120) {
    check_cancel(base_params(), true);
}
Test(cancel, speculative_decoding_stops_before_the_next_step, .timeout = 120) {
    arbor_context_params cp = base_params();
    cp.draft_kind = ARBOR_DRAFT_SELF;
    cp.draft_self_layers = 2;
    cp.tree = "dynamic:16";
    check_cancel(cp, true);
}
Test(cancel, asynchronous_cancel_is_prompt, .timeout = 120) {
    check_cancel(base_params(), false);
}

/* ---- error paths: a status and a message each ---- */

Test(errors, models_and_tokenizer) {
    arbor_model *m = NULL;
    arbor_model_params mp = arbor_model_default_params();
    EXPECT_FAIL(arbor_model_load(NULL, mp, &m), ARBOR_ERR_INVALID_ARG, "path");
    EXPECT_FAIL(arbor_model_load(fixture("models/stories260K-f32.gguf"), mp, NULL),
                ARBOR_ERR_INVALID_ARG, "out");
    EXPECT_FAIL(arbor_model_load("/nonexistent/x.gguf", mp, &m), ARBOR_ERR_IO, "x.gguf");
    cr_expect_null(m);
    /* a file that is not GGUF */
    EXPECT_FAIL(arbor_model_load(fixture("reference/stories260K-f32.ref.txt"), mp, &m),
                ARBOR_ERR_FORMAT, "ref.txt");
    cr_expect_null(m);

    m = load("stories260K-f32.gguf");
    arbor_model_info info;
    EXPECT_FAIL(arbor_model_get_info(NULL, &info), ARBOR_ERR_INVALID_ARG, "NULL");
    EXPECT_FAIL(arbor_model_get_info(m, NULL), ARBOR_ERR_INVALID_ARG, "NULL");
    arbor_token ids[8];
    char buf[8];
    EXPECT_FAIL(arbor_tokenize(NULL, "a", 1, true, true, ids, 8), ARBOR_ERR_INVALID_ARG, "model");
    EXPECT_FAIL(arbor_tokenize(m, NULL, 3, true, true, ids, 8), ARBOR_ERR_INVALID_ARG, "text");
    EXPECT_FAIL(arbor_tokenize(m, "a", 1, true, true, NULL, 8), ARBOR_ERR_INVALID_ARG, "room");
    EXPECT_FAIL(arbor_tokenize(m, "a", 1, true, true, ids, -1), ARBOR_ERR_INVALID_ARG, "room");
    EXPECT_FAIL(arbor_token_to_piece(m, 512, false, buf, 8), ARBOR_ERR_INVALID_ARG, "512");
    EXPECT_FAIL(arbor_token_to_piece(m, -3, false, buf, 8), ARBOR_ERR_INVALID_ARG, "-3");
    EXPECT_FAIL(arbor_token_to_piece(NULL, 5, false, buf, 8), ARBOR_ERR_INVALID_ARG, "model");
    EXPECT_FAIL(arbor_token_to_piece(m, 5, false, NULL, 8), ARBOR_ERR_INVALID_ARG, "buf");
    arbor_token bad[2] = {5, 9999};
    EXPECT_FAIL(arbor_detokenize(m, bad, 2, false, buf, 8), ARBOR_ERR_INVALID_ARG, "9999");
    EXPECT_FAIL(arbor_detokenize(m, NULL, 2, false, buf, 8), ARBOR_ERR_INVALID_ARG, "tokens");
    EXPECT_FAIL(arbor_detokenize(m, bad, -1, false, buf, 8), ARBOR_ERR_INVALID_ARG, "-1");
    cr_expect_eq(arbor_token_bos(NULL), ARBOR_TOKEN_NONE);
    cr_expect_eq(arbor_token_eos(NULL), ARBOR_TOKEN_NONE);
    cr_expect(!arbor_token_is_eog(NULL, 2));
    arbor_model_free(NULL); /* no-ops */
    arbor_context_free(NULL);
    arbor_context_reset(NULL);
    arbor_cancel(NULL);
    arbor_model_free(m);
}

Test(errors, context_parameters, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_model *other_vocab = load("aidreams260K-f32.gguf");
    arbor_model *vocab_only = NULL;
    arbor_model_params vp = arbor_model_default_params();
    vp.vocab_only = true;
    cr_assert_eq(arbor_model_load(fixture("models/llama2xs-260K-f32.gguf"), vp, &vocab_only),
                 ARBOR_OK);
    arbor_context *c = NULL;
    arbor_context_params d = base_params(), p;
    EXPECT_FAIL(arbor_context_create(NULL, d, &c), ARBOR_ERR_INVALID_ARG, "model");
    EXPECT_FAIL(arbor_context_create(m, d, NULL), ARBOR_ERR_INVALID_ARG, "out");
    EXPECT_FAIL(arbor_context_create(vocab_only, d, &c), ARBOR_ERR_INVALID_ARG, "vocabulary");
    p = d, p.n_ctx = -1;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "n_ctx");
    p = d, p.n_ctx = 2000000000;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_NOMEM, "GiB");
    p = d, p.n_threads = -2;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "n_threads");
    p = d, p.n_threads = 5000;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "n_threads");
    p = d, p.n_batch = -1;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "n_batch");
    p = d, p.draft_kind = (arbor_draft_kind)7;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "draft_kind");
    p = d, p.draft_kind = ARBOR_DRAFT_MODEL;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "draft_model");
    p.draft_model = other_vocab; /* same size, other pieces */
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INCOMPATIBLE, "differ");
    p.draft_model = vocab_only;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "vocabulary-only");
    p = d, p.draft_kind = ARBOR_DRAFT_SELF, p.draft_self_layers = 0;
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "draft_self_layers");
    p.draft_self_layers = 5; /* stories260K has 5 layers */
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "draft_self_layers");
    static const char *const bad_trees[] = {"bogus",     "chain:0", "chain:x",       "static:9x9x9",
                                            "dynamic:0", "static:", "dynamic:16junk"};
    for (size_t i = 0; i < sizeof bad_trees / sizeof bad_trees[0]; i++) {
        p = d, p.draft_kind = ARBOR_DRAFT_LOOKUP, p.tree = bad_trees[i];
        EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "tree");
    }
    p = d, p.draft_kind = ARBOR_DRAFT_LOOKUP, p.tree = "chain:4", p.sched_costs = "/tmp/x";
    EXPECT_FAIL(arbor_context_create(m, p, &c), ARBOR_ERR_INVALID_ARG, "adaptive");
    cr_expect_null(c);
    arbor_model_free(vocab_only);
    arbor_model_free(other_vocab);
    arbor_model_free(m);
}

Test(errors, generation_parameters, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_context_params cp = base_params();
    cp.n_ctx = 32;
    arbor_context *c = context(m, cp);
    arbor_generate_params d = greedy(8), p;
    EXPECT_FAIL(arbor_generate(NULL, "a", &d, NULL, NULL), ARBOR_ERR_INVALID_ARG, "ctx");
    EXPECT_FAIL(arbor_generate(c, NULL, &d, NULL, NULL), ARBOR_ERR_INVALID_ARG, "prompt");
    p = d, p.n_predict = -2;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "n_predict");
    p = d, p.sampling.temp = NAN;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "NaN");
    p = d, p.sampling.top_p = NAN;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "NaN");
    p = d, p.sampling.repeat_penalty = 0.0f;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "repeat_penalty");
    p = d, p.sampling.repeat_penalty = INFINITY;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "repeat_penalty");
    p = d, p.sampling.repeat_last_n = -2;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "repeat_last_n");
    p = d, p.n_stop = -1;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "stop");
    p = d, p.n_stop = 1;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "stop");
    const char *empty[2] = {"x", ""};
    p = d, p.stop = empty, p.n_stop = 2;
    EXPECT_FAIL(arbor_generate(c, "a", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "stop string 1");
    /* an empty prompt without BOS has no token */
    p = d, p.add_special = false;
    EXPECT_FAIL(arbor_generate(c, "", &p, NULL, NULL), ARBOR_ERR_INVALID_ARG, "prompt");
    /* 40 tokens do not fit 32 cells */
    const char *long_prompt = "Tom and his mom went to the park. They saw a big red ball under a "
                              "tree, and Tom wanted to play with it.";
    EXPECT_FAIL(arbor_generate(c, long_prompt, &d, NULL, NULL), ARBOR_ERR_CONTEXT_FULL, "32");
    arbor_token ids[2] = {1, 600};
    EXPECT_FAIL(arbor_generate_tokens(c, ids, 2, &d, NULL, NULL), ARBOR_ERR_INVALID_ARG, "600");
    EXPECT_FAIL(arbor_generate_tokens(c, ids, 0, &d, NULL, NULL), ARBOR_ERR_INVALID_ARG, "prompt");
    EXPECT_FAIL(arbor_generate_tokens(c, NULL, 2, &d, NULL, NULL), ARBOR_ERR_INVALID_ARG, "prompt");
    arbor_stats st;
    EXPECT_FAIL(arbor_get_stats(NULL, &st), ARBOR_ERR_INVALID_ARG, "NULL");
    EXPECT_FAIL(arbor_get_stats(c, NULL), ARBOR_ERR_INVALID_ARG, "NULL");
    EXPECT_FAIL(arbor_save_costs(c, NULL), ARBOR_ERR_INVALID_ARG, "NULL");
    EXPECT_FAIL(arbor_save_costs(c, "/tmp/arbor-test-costs.txt"), ARBOR_ERR_INVALID_ARG,
                "adaptive");

    /* after all that the context still works; params NULL means the defaults */
    output o = {0};
    cr_expect_eq(arbor_generate(c, "Once", NULL, collect, &o), ARBOR_OK, "%s", arbor_last_error());
    cr_expect_gt(o.n_ids, 0);
    output_free(&o);
    arbor_context_free(c);
    arbor_model_free(m);
}

Test(errors, status_strings) {
    for (int s = ARBOR_OK; s >= ARBOR_ERR_INTERNAL; s--) {
        const char *name = arbor_status_string((arbor_status)s);
        cr_expect(name && *name);
        for (int t = s + 1; t <= ARBOR_OK; t++)
            cr_expect_str_neq(name, arbor_status_string((arbor_status)t));
    }
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", ARBOR_VERSION_MAJOR, ARBOR_VERSION_MINOR,
             ARBOR_VERSION_PATCH);
    cr_expect_str_eq(arbor_version(), v);
}

/* ---- prompt-prefix reuse ---- */

static arbor_context_params reuse_params(void) {
    arbor_context_params cp = base_params();
    cp.n_batch = 64; /* the batch-invariant prompt path (docs/api.md) */
    return cp;
}

Test(prefix, reuse_skips_the_shared_prefix_and_changes_nothing, .timeout = 120) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_context *c = context(m, reuse_params());
    /* a long prompt: several prompt batches */
    const char *p1 = "Tom and his mom went to the park. They saw a big red ball under a tree, and "
                     "Tom wanted to play with it. His mom said no, because the ball was not "
                     "theirs. Tom was sad, but then a girl came and asked if he wanted to play. "
                     "They played all day and had lots of fun together.";
    arbor_token ids1[256];
    int32_t n1 = arbor_tokenize(m, p1, strlen(p1), true, true, ids1, 256);
    cr_assert(n1 > 64, "%d tokens", n1);
    arbor_generate_params gp = greedy(16);
    gp.ignore_eos = true;
    output first = generate(c, p1, &gp);
    arbor_stats st = stats_of(c);
    cr_expect_eq(st.n_prompt, n1);
    cr_expect_eq(st.n_prompt_reused, 0);

    /* the same prompt again: all but the last token come from the cache */
    output same = generate(c, p1, &gp);
    st = stats_of(c);
    cr_expect_eq(st.n_prompt_reused, n1 - 1);
    cr_expect_str_eq(same.text, first.text);

    /* prompt + the generated tokens + more: the whole evaluated history is reused (the last
     * generated token was sampled but never evaluated) */
    arbor_token ids2[512];
    memcpy(ids2, ids1, (size_t)n1 * sizeof *ids2);
    memcpy(ids2 + n1, first.ids, (size_t)first.n_ids * sizeof *ids2);
    int32_t n2 = n1 + first.n_ids;
    const char *more = " Then";
    int32_t k = arbor_tokenize(m, more, strlen(more), false, false, ids2 + n2, 16);
    cr_assert(k > 0);
    n2 += k;
    output cont = {0};
    cr_assert_eq(arbor_generate_tokens(c, ids2, n2, &gp, collect, &cont), ARBOR_OK);
    st = stats_of(c);
    cr_expect_eq(st.n_prompt, n2);
    cr_expect_eq(st.n_prompt_reused, n1 + first.n_ids - 1, "reused %d", st.n_prompt_reused);
    arbor_context *fresh = context(m, reuse_params());
    output cont_ref = {0};
    cr_assert_eq(arbor_generate_tokens(fresh, ids2, n2, &gp, collect, &cont_ref), ARBOR_OK);
    cr_expect_eq(stats_of(fresh).n_prompt_reused, 0);
    cr_expect_str_eq(cont.text, cont_ref.text);

    /* a prompt that leaves the history at token 20: exactly 20 reused */
    ids2[20] = ids2[20] == 100 ? 101 : 100;
    output branch = {0};
    cr_assert_eq(arbor_generate_tokens(c, ids2, n1, &gp, collect, &branch), ARBOR_OK);
    cr_expect_eq(stats_of(c).n_prompt_reused, 20);
    output branch_ref = {0};
    arbor_context_reset(fresh);
    cr_assert_eq(arbor_generate_tokens(fresh, ids2, n1, &gp, collect, &branch_ref), ARBOR_OK);
    cr_expect_eq(stats_of(fresh).n_prompt_reused, 0, "reset forgets the cache");
    cr_expect_str_eq(branch.text, branch_ref.text);

    /* after reset nothing is reused */
    arbor_context_reset(c);
    output after_reset = generate(c, p1, &gp);
    cr_expect_eq(stats_of(c).n_prompt_reused, 0);
    cr_expect_str_eq(after_reset.text, first.text);

    output *all[] = {&first, &same, &cont, &cont_ref, &branch, &branch_ref, &after_reset};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) output_free(all[i]);
    arbor_context_free(fresh);
    arbor_context_free(c);
    arbor_model_free(m);
}

Test(prefix, reuse_with_a_drafter_keeps_the_output, .timeout = 120) {
    arbor_model *m = load("llama2xs-260K-q8_0.gguf");
    arbor_model *d = load("stories260K-f32.gguf");
    arbor_context_params cp = reuse_params();
    cp.draft_kind = ARBOR_DRAFT_MODEL;
    cp.draft_model = d;
    cp.tree = "dynamic:16";
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = greedy(24);
    output a = generate(c, "Once upon a time, there was a little girl", &gp);
    output b = generate(c, "Once upon a time, there was a little boy", &gp);
    cr_expect_gt(stats_of(c).n_prompt_reused, 5);
    arbor_context *fresh = context(m, cp);
    output b_ref = generate(fresh, "Once upon a time, there was a little boy", &gp);
    cr_expect_str_eq(b.text, b_ref.text);
    output_free(&a);
    output_free(&b);
    output_free(&b_ref);
    arbor_context_free(fresh);
    arbor_context_free(c);
    arbor_model_free(d);
    arbor_model_free(m);
}

/* ---- stopping, sampling, statistics ---- */

Test(generate, callback_stop, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf");
    const char *draft[2] = {NULL, "self"};
    for (int k = 0; k < 2; k++) {
        arbor_context_params cp = base_params();
        if (draft[k]) {
            cp.draft_kind = ARBOR_DRAFT_SELF;
            cp.draft_self_layers = 3;
            cp.tree = "chain:6";
        }
        arbor_context *c = context(m, cp);
        arbor_generate_params gp = greedy(64);
        output o = {.stop_after = 5};
        cr_assert_eq(arbor_generate(c, "Once upon a time", &gp, collect, &o), ARBOR_OK);
        cr_expect_eq(o.n_calls, 5);
        cr_expect_eq(stats_of(c).n_generated, 5);
        output_free(&o);
        arbor_context_free(c);
    }
    arbor_model_free(m);
}

Test(generate, stop_strings, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_context *c = context(m, base_params());
    arbor_generate_params gp = greedy(64);
    output full = generate(c, "Once upon a time", &gp);
    /* ", there was a little girl named Lily. She loved to play outside in the park. ..." */
    cr_assert(full.len > 60);
    const char *stops[3] = {"never in this text", "Lily. She lov", "in the park"};
    gp.stop = stops;
    gp.n_stop = 3;
    output o = generate(c, "Once upon a time", &gp);
    const char *hit = strstr(full.text, "Lily. She lov");
    cr_assert(hit);
    size_t end = (size_t)(hit - full.text) + strlen("Lily. She lov");
    /* the output is the full text up to the end of the token completing the earliest stop */
    cr_expect_geq(o.len, end);
    cr_expect(!memcmp(o.text, full.text, o.len), "not a prefix: %s", o.text);
    cr_expect_lt(o.n_ids, full.n_ids);
    char without_last[256];
    int32_t n = arbor_detokenize(m, o.ids, o.n_ids - 1, false, without_last, 255);
    cr_assert(n >= 0 && n < 255);
    cr_expect_lt((size_t)n, end, "generation went on past the stop string");
    output_free(&o);
    output_free(&full);
    arbor_context_free(c);
    arbor_model_free(m);
}

Test(generate, streamed_text_is_the_detokenized_tokens, .timeout = 60) {
    arbor_model *m = load("synth-qwen2-q8_0.gguf"); /* many tokens split UTF-8 characters */
    arbor_context *c = context(m, base_params());
    arbor_generate_params gp = greedy(64);
    gp.ignore_eos = true;
    output o = generate(c, "Hello world", &gp);
    cr_expect_eq(o.n_ids, 64);
    int32_t n = arbor_detokenize(m, o.ids, o.n_ids, false, NULL, 0);
    cr_assert_geq(n, 0);
    char *text = malloc((size_t)n + 1);
    cr_assert_eq(arbor_detokenize(m, o.ids, o.n_ids, false, text, n), n);
    cr_expect_eq((size_t)n, o.len);
    cr_expect(!memcmp(text, o.text, o.len));
    cr_expect_leq(o.n_none_calls, 1, "at most one final call carries held-back bytes");
    free(text);
    output_free(&o);
    arbor_context_free(c);
    arbor_model_free(m);
}

static output sampled_run(arbor_context *c, uint64_t seed) {
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = 40;
    gp.ignore_eos = true;
    gp.sampling.temp = 1.0f;
    gp.sampling.seed = seed;
    return generate(c, "Once upon a time", &gp);
}

Test(generate, sampling_is_reproducible_with_a_seed, .timeout = 120) {
    arbor_model *m = load("stories260K-f32.gguf");
    for (int spec = 0; spec < 2; spec++) {
        arbor_context_params cp = base_params();
        if (spec) {
            cp.draft_kind = ARBOR_DRAFT_SELF;
            cp.draft_self_layers = 2;
            cp.tree = "static:2x2x1";
        }
        arbor_context *c1 = context(m, cp), *c2 = context(m, cp);
        output a = sampled_run(c1, 99);
        output b = sampled_run(c2, 99);
        output again = sampled_run(c1, 99); /* the same context after a run */
        output other = sampled_run(c2, 100);
        cr_expect_str_eq(a.text, b.text, "spec %d", spec);
        cr_expect_str_eq(a.text, again.text, "spec %d: a reused context", spec);
        cr_expect_str_neq(a.text, other.text, "spec %d: seeds 99 and 100 agree", spec);
        output_free(&a);
        output_free(&b);
        output_free(&again);
        output_free(&other);
        arbor_context_free(c1);
        arbor_context_free(c2);
    }
    arbor_model_free(m);
}

Test(generate, statistics, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_context_params cp = base_params();
    cp.draft_kind = ARBOR_DRAFT_SELF;
    cp.draft_self_layers = 3;
    cp.tree = "chain:4";
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = greedy(40);
    gp.ignore_eos = true;
    output o = generate(c, "Once upon a time", &gp);
    arbor_stats st = stats_of(c);
    cr_expect_eq(st.n_prompt, 5);
    cr_expect_eq(st.n_generated, 40);
    cr_expect_eq(o.n_ids, 40);
    cr_expect_gt(st.n_verify, 0);
    cr_expect_leq(st.n_verify, 40);
    cr_expect_geq(st.n_drafted, st.n_accepted);
    int64_t drafted = 0, accepted = 0;
    for (int i = 0; i < ARBOR_MAX_DEPTH_STATS; i++) {
        drafted += st.drafted_at_depth[i];
        accepted += st.accepted_at_depth[i];
        cr_expect_leq(st.accepted_at_depth[i], st.drafted_at_depth[i]);
    }
    cr_expect_eq(drafted, st.n_drafted);
    cr_expect_eq(accepted, st.n_accepted);
    cr_expect_eq(st.drafted_at_depth[4], 0, "chain:4 drafts 4 deep");
    /* every step emits its accepted tokens plus one */
    cr_expect_eq(st.n_verify + st.n_accepted + st.n_plain_steps, 40);
    cr_expect_float_eq(st.mean_accepted, (double)st.n_accepted / (double)st.n_verify, 1e-9);
    cr_expect(st.generate_seconds > 0 && st.tokens_per_second > 0);
    cr_expect(!st.stopped_by_context);
    output_free(&o);
    arbor_context_free(c);
    arbor_model_free(m);
}

Test(generate, tokenizer_round_trip_and_capacity) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_model_info info;
    cr_assert_eq(arbor_model_get_info(m, &info), ARBOR_OK);
    cr_expect_str_eq(info.arch, "llama");
    cr_expect_eq(info.n_vocab, 512);
    cr_expect_eq(info.n_layer, 5);
    cr_expect_eq(info.n_ctx_train, 512);
    cr_expect_eq(arbor_token_bos(m), 1);
    cr_expect_eq(arbor_token_eos(m), 2);
    cr_expect(arbor_token_is_eog(m, 2));
    const char *text = "Once upon a time";
    arbor_token ids[2];
    int32_t n = arbor_tokenize(m, text, strlen(text), true, false, ids, 2);
    cr_expect_eq(n, 5, "the full count when the room is short");
    cr_expect_eq(ids[0], 1);
    arbor_token all[8];
    cr_assert_eq(arbor_tokenize(m, text, strlen(text), true, false, all, 8), 5);
    char buf[64];
    int32_t len = arbor_detokenize(m, all + 1, 4, false, buf, sizeof buf);
    cr_assert_eq(len, (int32_t)strlen(" Once upon a time"));
    cr_expect(!memcmp(buf, " Once upon a time", (size_t)len));
    cr_expect_eq(arbor_detokenize(m, all + 1, 4, false, buf, 3), len, "full length past cap");
    cr_expect_eq(arbor_token_to_piece(m, all[1], false, buf, 1), 5, "' Once' is 5 bytes");
    arbor_model_free(m);
}

/* ---- the log sink, and a library that prints nothing ---- */

typedef struct log_record {
    int warnings, infos;
    char last_warning[512];
} log_record;

static void record_log(void *user, arbor_log_level level, const char *message) {
    log_record *r = user;
    if (level == ARBOR_LOG_WARN) {
        r->warnings++;
        snprintf(r->last_warning, sizeof r->last_warning, "%s", message);
    } else if (level == ARBOR_LOG_INFO) {
        r->infos++;
    }
}

Test(log, context_full_is_a_warning, .timeout = 60) {
    log_record rec = {0};
    arbor_set_log(record_log, &rec);
    arbor_model *m = load("stories260K-f32.gguf");
    cr_expect_gt(rec.infos, 0, "model load is logged");
    arbor_context_params cp = base_params();
    cp.n_ctx = 24;
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = greedy(-1);
    gp.ignore_eos = true;
    output o = generate(c, "Once upon a time", &gp);
    arbor_stats st = stats_of(c);
    cr_expect(st.stopped_by_context);
    cr_expect_eq(st.n_prompt + st.n_generated, 24 + 1, "the last token is sampled, not stored");
    cr_expect_eq(rec.warnings, 1);
    cr_expect(strstr(rec.last_warning, "context full"), "%s", rec.last_warning);

    /* a prompt that fills the context exactly still yields one token */
    arbor_token ids[24];
    for (int i = 0; i < 24; i++) ids[i] = i ? 300 + i : 1;
    output full = {0};
    cr_assert_eq(arbor_generate_tokens(c, ids, 24, &gp, collect, &full), ARBOR_OK);
    cr_expect_eq(stats_of(c).n_generated, 1);
    cr_expect_eq(rec.warnings, 2);

    arbor_set_log(NULL, NULL);
    output quiet = generate(c, "Once upon a time", &gp);
    cr_expect_eq(rec.warnings, 2, "no sink, no calls");
    output_free(&o);
    output_free(&full);
    output_free(&quiet);
    arbor_context_free(c);
    arbor_model_free(m);
}

static void redirect_all(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
}

Test(log, the_library_prints_nothing, .init = redirect_all, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf"), *bad = NULL;
    arbor_model_load("/nonexistent.gguf", arbor_model_default_params(), &bad);
    arbor_context_params cp = base_params();
    cp.n_ctx = 16;
    cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    cp.tree = "chain:3";
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = greedy(-1);
    gp.ignore_eos = true;
    output o = generate(c, "Once upon a time", &gp); /* runs into the full context */
    arbor_generate(c, "Once upon a time, there was a little girl named Lily who", &gp, NULL, NULL);
    output_free(&o);
    arbor_context_free(c);
    arbor_model_free(m);
    fflush(stdout);
    fflush(stderr);
    cr_expect_stdout_eq_str("");
    cr_expect_stderr_eq_str("");
}

/* ---- the step-level API ---- */

/* A caller's own loop (prefill, then steps) gives arbor_generate's tokens, plain and
 * speculative; the logits it may read are those the last token was chosen from. */
Test(steps, own_loop_equals_generate, .timeout = 120) {
    arbor_model *m = load("stories260K-f32.gguf");
    for (int spec = 0; spec < 2; spec++) {
        arbor_context_params cp = base_params();
        if (spec) {
            cp.draft_kind = ARBOR_DRAFT_SELF;
            cp.draft_self_layers = 3;
            cp.tree = "dynamic:12";
        }
        arbor_context *c = context(m, cp);
        arbor_generate_params gp = greedy(48);
        gp.ignore_eos = true;
        output want = generate(c, "Once upon a time", &gp);
        cr_assert_eq(want.n_ids, 48);
        arbor_context_reset(c);
        cr_assert_eq(arbor_step_logits(c), NULL, "no logits before a step");
        arbor_token prompt[64];
        const int32_t n_prompt = arbor_tokenize(m, "Once upon a time", 16, true, true, prompt, 64);
        cr_assert_gt(n_prompt, 0);
        cr_assert_eq(arbor_set_sampling(c, &gp.sampling), ARBOR_OK);
        cr_assert_eq(arbor_prefill(c, prompt, n_prompt), ARBOR_OK, "%s", arbor_last_error());
        arbor_token got[64];
        int n = 0, steps = 0;
        while (n < 48) {
            arbor_token out[ARBOR_MAX_STEP_TOKENS];
            const int32_t k = arbor_step(c, out, MIN(48 - n, ARBOR_MAX_STEP_TOKENS));
            cr_assert_gt(k, 0, "%s", arbor_last_error());
            memcpy(got + n, out, (size_t)k * sizeof *out);
            n += k;
            steps++;
            /* greedy: the last token is the argmax of the logits it came from */
            const float *lg = arbor_step_logits(c);
            cr_assert(lg);
            int best = 0;
            for (int i = 1; i < 512; i++)
                if (lg[i] > lg[best]) best = i;
            cr_expect_eq(best, out[k - 1], "step %d: argmax %d, token %d", steps, best,
                         out[k - 1]);
        }
        cr_assert_eq(n, 48);
        for (int i = 0; i < 48; i++)
            cr_expect_eq(got[i], want.ids[i], "spec %d, token %d: %d, generate gave %d", spec, i,
                         got[i], want.ids[i]);
        if (spec) cr_expect_lt(steps, 48, "speculative steps emit several tokens");
        arbor_stats st = stats_of(c);
        cr_expect_eq(st.n_generated, 48);
        cr_expect_eq(st.stop_reason, ARBOR_STOP_NONE);
        output_free(&want);
        arbor_context_free(c);
    }
    EXPECT_FAIL(arbor_step(NULL, NULL, 1), ARBOR_ERR_INVALID_ARG, "ctx");
    arbor_model_free(m);
}

Test(steps, stop_reasons, .timeout = 60) {
    arbor_model *m = load("stories260K-f32.gguf");
    arbor_context_params cp = base_params();
    cp.n_ctx = 24;
    arbor_context *c = context(m, cp);
    arbor_generate_params gp = greedy(6);
    output o = generate(c, "Once upon a time", &gp);
    cr_expect_eq(stats_of(c).stop_reason, ARBOR_STOP_LENGTH);
    output_free(&o);
    gp.n_predict = 100;
    gp.ignore_eos = true;
    o = generate(c, "Once upon a time", &gp);
    cr_expect_eq(stats_of(c).stop_reason, ARBOR_STOP_CONTEXT);
    cr_expect(stats_of(c).stopped_by_context);
    output_free(&o);
    gp.n_predict = 10;
    o = (output){.stop_after = 3};
    cr_assert_eq(arbor_generate(c, "Once upon a time", &gp, collect, &o), ARBOR_OK);
    cr_expect_eq(stats_of(c).stop_reason, ARBOR_STOP_CALLBACK);
    output_free(&o);
    const char *stop[1] = {","};
    gp.stop = stop;
    gp.n_stop = 1;
    o = generate(c, "Once upon a time", &gp); /* ", there was ..." */
    cr_expect_eq(stats_of(c).stop_reason, ARBOR_STOP_STRING, "%s", o.text);
    output_free(&o);
    arbor_context_free(c);
    arbor_model_free(m);
}
