/* test_stream.c: a verifier larger than its memory budget (src/stream.h). Streamed weights are
 * the file's bytes, so the logits of a streamed model equal the mapped model's bit for bit, for
 * prompts, token trees and single rows, over many passes of the slot ring, with O_DIRECT and
 * buffered reads, with the head resident or streamed; greedy speculative decoding under a
 * budget gives the verifier's own tokens; the `arbor` process holds its peak resident memory
 * under the budget on a model several times larger; and a budget too small, or a file
 * shortened after it was opened, is a clear error. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arbor.h"
#include "src/core/model.h"
#include "src/core/stream.h"
#include "bench/synth.h"
#include "util/arch_models.h"
#include "util/gguf_build.h"
#include "util/refs.h"
#include "util/run_cli.h"

#define MODELS ARBOR_FIXTURES "/models/"

/* ---- the runtime: streamed logits == mapped logits ---- */

#define N_PROMPT 12
#define N_TREE   10
#define N_SINGLE 6

/* Every logit of: a prompt (all rows), a 10-node tree after it, then single rows, each step
 * committing its rows, so that the cache and the weights both take part. Returns floats written. */
static size_t run_passes(const ar_model *m, ar_stream *s, ar_pool *pool, float *out) {
    ar_kv *kv;
    ar_workspace *ws;
    cr_assert_eq(ar_kv_create(m, 64, 0, AR_TYPE_F32, &kv), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_workspace_create(m, 32, 64, &ws), AR_OK, "%s", ar_last_error());
    if (s) cr_assert_eq(ar_workspace_set_stream(ws, m, s), AR_OK);
    const int32_t V = m->hp.n_vocab;
    int32_t tokens[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) tokens[i] = (37 * i + 11) % V;
    size_t n = 0;
    ar_batch prompt = {.n = N_PROMPT, .tokens = tokens};
    cr_assert_eq(ar_model_eval(m, kv, ws, pool, &prompt, out + n), AR_OK, "%s", ar_last_error());
    n += (size_t)N_PROMPT * V;
    ar_kv_commit_all(kv, N_PROMPT);
    const int32_t parent[N_TREE] = {-1, 0, 0, 1, 1, 2, 3, 3, 5, 8};
    int32_t tree[N_TREE];
    for (int i = 0; i < N_TREE; i++) tree[i] = (101 * i + 7) % V;
    ar_batch tb = {.n = N_TREE, .tokens = tree, .parent = parent};
    cr_assert_eq(ar_model_eval(m, kv, ws, pool, &tb, out + n), AR_OK, "%s", ar_last_error());
    n += (size_t)N_TREE * V;
    const int32_t path[3] = {0, 1, 3};
    ar_kv_commit(kv, path, 3);
    for (int i = 0; i < N_SINGLE; i++) {
        int32_t t = (13 * i + 5) % V;
        ar_batch one = {.n = 1, .tokens = &t};
        cr_assert_eq(ar_model_eval(m, kv, ws, pool, &one, out + n), AR_OK, "%s", ar_last_error());
        n += (size_t)V;
        ar_kv_commit_all(kv, 1);
    }
    ar_workspace_free(ws);
    ar_kv_free(kv);
    return n;
}

static void check_model(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", name[0] == '/' ? "" : MODELS, name);
    ar_model *m;
    cr_assert_eq(ar_model_load(path, ar_model_default_params(), &m), AR_OK, "%s", ar_last_error());
    ar_pool *pool;
    cr_assert_eq(ar_pool_create(2, NULL, &pool), AR_OK);
    const size_t floats = (size_t)(N_PROMPT + N_TREE + N_SINGLE) * (size_t)m->hp.n_vocab;
    float *want = malloc(floats * sizeof(float)), *got = malloc(floats * sizeof(float));
    cr_assert(want && got);
    cr_assert_eq(run_passes(m, NULL, pool, want), floats);

    ar_stream_params sp = ar_stream_default_params();
    sp.budget = UINT64_MAX;
    ar_stream_plan all;
    cr_assert_eq(ar_stream_plan_for(m, &sp, &all), AR_OK, "%s", ar_last_error());
    cr_assert_eq(all.n_slots, 0, "%s: an unbounded budget keeps everything resident", name);
    /* the smallest budget (most streamed), one between, everything; 2 and 3 slots; direct and
     * buffered reads */
    const uint64_t budgets[] = {all.min_budget, (all.min_budget + all.needed_all) / 2,
                                all.needed_all};
    bool streamed_head = false;
    for (size_t b = 0; b < AR_ARRAY_LEN(budgets); b++)
        for (int slots = 2; slots <= 3; slots++)
            for (int direct = 0; direct <= 1; direct++) {
                sp = ar_stream_default_params();
                sp.budget = budgets[b] + (slots == 3 ? all.largest_unit : 0);
                sp.n_slots = slots;
                sp.direct = direct;
                ar_stream *s;
                cr_assert_eq(ar_stream_create(m, &sp, &s), AR_OK, "%s: %s", name, ar_last_error());
                const ar_stream_plan *pl = ar_stream_get_plan(s);
                cr_assert_leq(pl->resident_bytes + pl->slot_bytes + pl->row_cache_bytes, sp.budget);
                /* the embedding row cache never makes a budget too small: it gives way first */
                const bool tied = m->output.data == m->tok_embd.data;
                if (b == 0 && slots == 2)
                    cr_assert_eq(pl->row_cache_rows, 0, "%s: no row cache at the smallest budget",
                                 name);
                if (b == 2)
                    cr_assert(pl->row_cache_rows == all.row_cache_rows &&
                                  (tied || pl->row_cache_rows > 0),
                              "%s: the whole row cache when everything fits", name);
                if (b == 0 && slots == 2 && all.min_budget < all.needed_all) /* it saves memory */
                    cr_assert_gt(pl->streamed_bytes, 0, "%s: the smallest budget streams", name);
                if (b == 0 && slots == 2 && all.largest_unit < all.needed_all / 4)
                    cr_assert_lt(pl->n_resident_layers, m->hp.n_layer / 2 + 1,
                                 "%s: the smallest budget streams most layers", name);
                streamed_head |= !pl->head_resident;
                memset(got, 0, floats * sizeof(float));
                run_passes(m, s, pool, got);
                for (size_t i = 0; i < floats; i++)
                    if (memcmp(&got[i], &want[i], sizeof(float)))
                        cr_assert_fail("%s, budget %llu (%d of %d layers resident%s), %d slots, "
                                       "%s reads: logit %zu is %a, mapped %a",
                                       name, (unsigned long long)sp.budget, pl->n_resident_layers,
                                       m->hp.n_layer, pl->head_resident ? ", head" : "", slots,
                                       direct ? "direct" : "buffered", i, got[i], want[i]);
                ar_stream_stats st;
                ar_stream_get_stats(s, &st);
                /* 1 prompt + 1 tree + N_SINGLE passes, each reading every streamed unit */
                cr_assert_geq(st.bytes_read, (uint64_t)(2 + N_SINGLE) * pl->streamed_bytes / 2,
                              "%s: the passes read their streamed units", name);
                ar_stream_free(s);
            }
    cr_log_info("%s: %d layers, streamed head seen: %s", name, m->hp.n_layer,
                streamed_head ? "yes" : "no");
    free(want);
    free(got);
    ar_pool_free(pool);
    ar_model_free(m);
}

/* Resident layers: a self-drafter's first layers, the others spread evenly over the rest (a
 * streamed layer's read overlaps a resident layer's compute), never more or fewer than planned. */
Test(stream, resident_layers_are_spread) {
    ar_stream_plan p = {.n_units = 23, .n_resident_layers = 12, .prefix_layers = 2};
    int n = 0;
    for (int32_t l = 0; l < 22; l++) n += ar_stream_plan_layer_resident(&p, l);
    cr_assert_eq(n, 12);
    cr_assert(ar_stream_plan_layer_resident(&p, 0) && ar_stream_plan_layer_resident(&p, 1));
    for (int32_t l = 2; l + 1 < 22; l++) /* 10 of 20: they alternate */
        cr_assert_neq(ar_stream_plan_layer_resident(&p, l),
                      ar_stream_plan_layer_resident(&p, l + 1), "layers %d and %d", l, l + 1);
    cr_assert(!ar_stream_plan_layer_resident(&p, 22), "out of range");
    for (int32_t k = 0; k <= 22; k++) {
        p = (ar_stream_plan){.n_units = 23, .n_resident_layers = k, .prefix_layers = 0};
        int got = 0, run = 0, longest = 0;
        for (int32_t l = 0; l < 22; l++) {
            const bool r = ar_stream_plan_layer_resident(&p, l);
            got += r;
            run = r ? run + 1 : 0;
            longest = run > longest ? run : longest;
        }
        cr_assert_eq(got, k);
        /* never more resident layers in a row than an even spread needs */
        if (k < 22) cr_assert_leq(longest, (k + (22 - k) - 1) / (22 - k), "k = %d", k);
    }
}

Test(stream, logits_equal_mapped, .timeout = 300) {
    static const char *const models[] = {
        "stories260K-f32.gguf",    /* F32, untied head, streams at the minimum */
        "llama2xs-260K-q4_0.gguf", /* Q4_0 layers, Q8_0 head */
        "synth-llama-q8_0.gguf",   "synth-llama-q4_k_m.gguf", "synth-llama-f16.gguf",
        "synth-qwen2-q8_0.gguf", /* biases, NEOX rope, the head is the embedding */
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(models); i++) check_model(models[i]);
    /* every architecture's own weights (fused matrices, q/k and post norms, rope factors) */
    char *dir = gb_tmpdir();
    for (int i = 0; i < arch_model_count; i++) {
        char *path = arch_model_write(arch_model_names[i], AR_TYPE_Q8_0, dir);
        check_model(path);
        free(path);
    }
    gb_rmdir(dir);
    free(dir);
}

/* ---- the API: budgets, refusals, speculation ---- */

typedef struct collected {
    arbor_token t[256];
    int n;
} collected;

static bool collect(void *user, arbor_token token, const char *text, size_t len) {
    (void)text, (void)len;
    collected *c = user;
    if (token >= 0 && c->n < 256) c->t[c->n++] = token;
    return true;
}

static arbor_context_params context_params(uint64_t budget) {
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = 2;
    cp.n_ctx = 192;
    cp.mem_budget = budget;
    cp.cost_cache = false;
    return cp;
}

/* The smallest budget a context with these parameters accepts (to 16 KiB). */
static uint64_t smallest_budget(const arbor_model *m, arbor_context_params cp) {
    uint64_t lo = 1, hi = 1ull << 32;
    while (hi - lo > 16384) {
        const uint64_t mid = lo + (hi - lo) / 2;
        cp.mem_budget = mid;
        arbor_context *c = NULL;
        if (arbor_context_create(m, cp, &c) == ARBOR_OK)
            hi = mid;
        else
            lo = mid;
        arbor_context_free(c);
    }
    return hi;
}

static void generate(const arbor_model *m, arbor_context_params cp, int n, collected *out,
                     arbor_memory_info *mi, arbor_stats *st) {
    arbor_context *c = NULL;
    cr_assert_eq(arbor_context_create(m, cp, &c), ARBOR_OK, "%s", arbor_last_error());
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = n;
    gp.ignore_eos = true;
    gp.sampling.temp = 0.0f;
    memset(out, 0, sizeof *out);
    cr_assert_eq(arbor_generate(c, "Once upon a time", &gp, collect, out), ARBOR_OK, "%s",
                 arbor_last_error());
    if (mi) arbor_context_get_memory(c, mi);
    if (st) arbor_get_stats(c, st);
    arbor_context_free(c);
}

static arbor_model *load(const char *name, bool resident) {
    char path[512];
    snprintf(path, sizeof path, MODELS "%s", name);
    arbor_model_params mp = arbor_model_default_params();
    mp.resident = resident;
    mp.repack = false; /* a budget streams the file's bytes (a packed copy is refused) */
    arbor_model *m = NULL;
    cr_assert_eq(arbor_model_load(path, mp, &m), ARBOR_OK, "%s", arbor_last_error());
    return m;
}

/* Greedy output under the smallest budget (most of the verifier streamed), plain and with every
 * kind of drafter, is the verifier's own output without a budget. */
static void check_pair(const char *target, const char *draft, int n, bool adaptive_pays) {
    arbor_model *tm = load(target, false), *dm = NULL;
    arbor_context_params cp = context_params(0);
    collected plain, got;
    generate(tm, cp, n, &plain, NULL, NULL);
    if (!strcmp(draft, "lookup")) {
        cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    } else if (!strncmp(draft, "self:", 5)) {
        cp.draft_kind = ARBOR_DRAFT_SELF;
        cp.draft_self_layers = atoi(draft + 5);
    } else {
        dm = load(draft, true);
        cp.draft_kind = ARBOR_DRAFT_MODEL;
        cp.draft_model = dm;
    }
    static const char *const trees[] = {"adaptive", "dynamic:16", "chain:4", "static:3x2x1"};
    for (size_t i = 0; i < AR_ARRAY_LEN(trees); i++) {
        cp.tree = trees[i];
        cp.mem_budget = 0;
        const uint64_t budget = smallest_budget(tm, cp);
        cp.mem_budget = budget + 65536;
        arbor_memory_info mi;
        arbor_stats st;
        generate(tm, cp, n, &got, &mi, &st);
        cr_assert_gt(mi.streamed_per_pass, 0, "%s <- %s %s: streams", target, draft, trees[i]);
        cr_assert_gt(mi.bytes_streamed, 0);
        /* fixed trees always speculate; the adaptive scheduler only where it pays (under a
         * budget a resident drafter against a streamed verifier usually does) */
        if (strcmp(trees[i], "adaptive") || adaptive_pays)
            cr_assert_gt(st.n_verify, 0, "%s <- %s %s: speculation happened", target, draft,
                         trees[i]);
        cr_assert_eq(got.n, plain.n);
        for (int k = 0; k < plain.n; k++)
            cr_assert_eq(got.t[k], plain.t[k],
                         "%s <- %s %s, budget %llu: token %d is %d, the verifier alone says %d",
                         target, draft, trees[i], (unsigned long long)cp.mem_budget, k, got.t[k],
                         plain.t[k]);
        cr_log_info("%s <- %s %s: budget %.2f MiB, %d layers resident, %.2f MiB per pass; %lld "
                    "verifications, %lld accepted",
                    target, draft, trees[i], (double)cp.mem_budget / 1048576.0, mi.resident_layers,
                    (double)mi.streamed_per_pass / 1048576.0, (long long)st.n_verify,
                    (long long)st.n_accepted);
    }
    arbor_model_free(dm);
    arbor_model_free(tm);
}

Test(stream, greedy_speculative_equals_plain, .timeout = 300) {
    check_pair("llama2xs-260K-q4_0.gguf", "stories260K-f32.gguf", 48, false);
    /* a drafter larger than its verifier: adaptive rightly stays plain */
    check_pair("synth-llama-q4_k_m.gguf", "synth-llama-q8_0.gguf", 48, false);
    check_pair("llama2xs-260K-q8_0.gguf", "self:1", 48, true);
    check_pair("stories260K-f32.gguf", "lookup", 64, false);
}

Test(stream, budget_too_small_is_refused_with_the_numbers) {
    arbor_model *m = load("synth-llama-q8_0.gguf", false);
    arbor_context_params cp = context_params(0);
    const uint64_t least = smallest_budget(m, cp);
    arbor_context *c = NULL;
    cp.mem_budget = least - 16384;
    cr_assert_eq(arbor_context_create(m, cp, &c), ARBOR_ERR_NOMEM);
    cr_assert_null(c);
    const char *e = arbor_last_error();
    cr_assert(strstr(e, "too small") && strstr(e, "MiB") && strstr(e, "KV caches") &&
                  strstr(e, "streaming needs"),
              "%s", e);
    cr_assert(!strchr(e, '\n'), "one line: %s", e);
    cp.mem_budget = 4096;
    cr_assert_eq(arbor_context_create(m, cp, &c), ARBOR_ERR_NOMEM);
    /* a verifier loaded packed (the default layout) is not streamed: one clear error */
    arbor_model *packed = NULL;
    cr_assert_eq(
        arbor_model_load(MODELS "synth-llama-q8_0.gguf", arbor_model_default_params(), &packed),
        ARBOR_OK);
    cp.mem_budget = least;
    arbor_status ps = arbor_context_create(packed, cp, &c);
    cr_assert(ps == ARBOR_OK || strstr(arbor_last_error(), "repack off"), "%s", arbor_last_error());
    arbor_context_free(c);
    c = NULL;
    arbor_model_free(packed);
    /* a budget above what is needed keeps everything resident */
    cp.mem_budget = 1ull << 32;
    cr_assert_eq(arbor_context_create(m, cp, &c), ARBOR_OK, "%s", arbor_last_error());
    arbor_memory_info mi;
    cr_assert_eq(arbor_context_get_memory(c, &mi), ARBOR_OK);
    cr_assert_eq(mi.streamed_per_pass, 0);
    cr_assert_eq(mi.stream_buffers, 0);
    cr_assert_eq(mi.resident_layers, 4);
    arbor_context_free(c);
    arbor_model_free(m);
}

/* A file shortened after it was opened: the next pass that reads past the new end fails with
 * one line saying so; nothing crashes, nothing is generated from garbage. */
Test(stream, file_shortened_after_opening) {
    char *dir = gb_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    size_t size;
    uint8_t *bytes = read_whole(MODELS "synth-llama-q8_0.gguf", &size);
    free(gb_write_file(dir, "model.gguf", bytes, size));
    free(bytes);
    arbor_model *m = NULL;
    arbor_model_params mp = arbor_model_default_params();
    mp.repack = false;
    cr_assert_eq(arbor_model_load(path, mp, &m), ARBOR_OK);
    arbor_context_params cp = context_params(0);
    cp.mem_budget = smallest_budget(m, cp);
    arbor_context *c = NULL;
    cr_assert_eq(arbor_context_create(m, cp, &c), ARBOR_OK, "%s", arbor_last_error());
    cr_assert_eq(truncate(path, (off_t)(size * 6 / 10)), 0);
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = 8;
    collected out = {0};
    arbor_status s = arbor_generate(c, "Once upon a time", &gp, collect, &out);
    cr_assert_eq(s, ARBOR_ERR_IO, "status %d: %s", s, arbor_last_error());
    cr_assert(strstr(arbor_last_error(), "shortened after it was opened"), "%s",
              arbor_last_error());
    cr_assert_eq(out.n, 0, "no token from a pass that could not read its weights");
    /* and it stays failed */
    cr_assert_eq(arbor_generate(c, "Once upon a time", &gp, collect, &out), ARBOR_ERR_IO);
    arbor_context_free(c);
    arbor_model_free(m);
    unlink(path);
    gb_rmdir(dir);
    free(dir);
}

/* ---- the process: peak RSS under the budget on a model several times larger ---- */

Test(stream, peak_rss_under_the_budget, .timeout = 600) {
#ifdef ARBOR_SANITIZED
    cr_skip_test("the sanitizers' shadow memory is not the engine's: RSS is measured on the "
                 "release build");
#endif
    char *dir = gb_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/big.gguf", dir);
    /* 24 layers of 1024 x 2816, Q8_0, the fixtures' 512-token vocabulary: 289 MB, 12 MB a
     * layer */
    ar_synth_params sp = ar_synth_default_params();
    sp.shape = (ar_synth_shape){"test-big", 1024, 2816, 24, 16, 4, 256, false, true, 0};
    sp.type = AR_TYPE_Q8_0;
    sp.vocab_path = MODELS "stories260K-f32.gguf";
    sp.n_threads = 2;
    cr_assert_eq(ar_synth_write(&sp, path), AR_OK, "%s", ar_last_error());
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    const char *budget = "48M"; /* 50.3 MB: the file is 5.7 times larger */
    const double budget_kb = 48.0 * 1024;
    run_result *r = run_cli(300, (const char *const[]){"generate", "-m", path, "-p", "Once upon a",
                                                       "-n", "12", "--temp", "0", "--ignore-eos",
                                                       "-c", "64", "--stats", NULL});
    cr_assert_eq(r->exit_code, 0, "%s", r->err);
    static char want[sizeof((run_result *)0)->out];
    snprintf(want, sizeof want, "%s", r->out);
    const long mapped_kb = r->max_rss_kb;
    r = run_cli(300, (const char *const[]){"generate", "-m", path, "-p", "Once upon a", "-n", "12",
                                           "--temp", "0", "--ignore-eos", "-c", "64", "--stats",
                                           "--mem-budget", budget, NULL});
    cr_assert_eq(r->exit_code, 0, "%s", r->err);
    cr_assert_str_eq(r->out, want, "streamed output differs from the mapped model's");
    cr_assert(strstr(r->err, "streamed per pass"), "%s", r->err);
    cr_log_info("file %.1f MB; peak RSS %ld KB mapped, %ld KB under a %s budget (%.0f KB)",
                (double)st.st_size / 1e6, mapped_kb, r->max_rss_kb, budget, budget_kb);
    cr_assert_lt((double)r->max_rss_kb, budget_kb, "peak RSS %ld KB over the %s budget: %s",
                 r->max_rss_kb, budget, r->err);
    cr_assert_gt((double)st.st_size / 1024.0, 5 * budget_kb);
    unlink(path);
    gb_rmdir(dir);
    free(dir);
}
