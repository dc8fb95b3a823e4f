/* test_synth.c: the synthetic model generator (src/synth.h, `arbor synth`).
 * - determinism: the same arguments give the same bytes with 1 or 3 threads, and the xxHash64 of
 *   small models in several formats equals constants recorded from a Release build, so a Debug
 *   or sanitizer build running this test (CI does) checks that the bytes do not depend on the
 *   build either;
 * - shapes: the preset's hyperparameters and tensor formats, with the block fallbacks (a row of
 *   64 values in q4_K becomes q8_0, a row of 172 values becomes f32);
 * - drafters: --drafter-of keeps the first M layers, embedding, final norm and head byte for
 *   byte; with eps = 0 the verifier's extra layers are exact no-ops (its logits equal the
 *   drafter's bit for bit), with eps > 0 they are not;
 * - --like: the model's names, shapes, types and tokenizer with fresh weights;
 * - weights are not degenerate: greedy decoding of a 32000-token preset visits many tokens;
 * - the CLI: byte-identical output of two runs, and one-line errors for bad arguments;
 * - `arbor bench spec` on a synthesized pair (not timed: the harness's output): the table, a JSON
 *   file that parses and holds every figure, one CSV row per run, an incompatible drafter
 *   reported as unavailable. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "arbor.h"
#include "src/core/gguf.h"
#include "src/core/model.h"
#include "bench/synth.h"
#include "util/gguf_build.h"

#define MODELS    ARBOR_FIXTURES "/models/"
#define VOCAB_512 MODELS "stories260K-f32.gguf"
#define VOCAB_SPM ARBOR_FIXTURES "/tokenizer/ggml-vocab-llama-spm.gguf"

static char *tmpdir;
static void setup_tmp(void) {
    tmpdir = gb_tmpdir();
}
static void teardown_tmp(void) {
    gb_rmdir(tmpdir);
    free(tmpdir);
    tmpdir = NULL;
}

static char *path_in(const char *name) {
    size_t n = strlen(tmpdir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/%s", tmpdir, name);
    return p;
}

static uint8_t *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_gt(n, 0);
    rewind(f);
    uint8_t *d = malloc((size_t)n);
    cr_assert(d);
    cr_assert_eq(fread(d, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return d;
}

static uint64_t file_hash(const char *path) {
    size_t n;
    uint8_t *d = read_whole(path, &n);
    uint64_t h = XXH64(d, n, 0);
    free(d);
    return h;
}

static void assert_same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *da = read_whole(a, &na), *db = read_whole(b, &nb);
    cr_assert_eq(na, nb, "%s and %s differ in size (%zu, %zu)", a, b, na, nb);
    size_t i = 0;
    while (i < na && da[i] == db[i]) i++;
    cr_assert_eq(i, na, "%s and %s differ at byte %zu", a, b, i);
    free(da);
    free(db);
}

/* Same tensor names, types, shapes and bytes (metadata may differ). */
static void assert_same_tensors(const char *pa, const char *pb) {
    ar_gguf *a = NULL, *b = NULL;
    cr_assert_eq(ar_gguf_open(pa, &a), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_gguf_open(pb, &b), AR_OK, "%s", ar_last_error());
    cr_assert_eq(a->n_tensors, b->n_tensors);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const ar_gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(x->type, y->type, "%s", x->name);
        cr_assert_eq(x->nbytes, y->nbytes, "%s", x->name);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s: bytes differ", x->name);
    }
    ar_gguf_close(a);
    ar_gguf_close(b);
}

/* The hidden test preset "tiny" (64 wide, FFN 172, 2 layers) with the 512-token vocabulary. */
static ar_synth_params tiny_params(int type) {
    ar_synth_params p = ar_synth_default_params();
    p.shape = *ar_synth_preset("tiny");
    p.vocab_path = VOCAB_512;
    p.type = type;
    p.seed = 42;
    return p;
}

static char *write_synth(const ar_synth_params *p, const char *name) {
    char *path = path_in(name);
    ar_status s = ar_synth_write(p, path);
    cr_assert_eq(s, AR_OK, "synth %s: %s", name, ar_last_error());
    return path;
}

Test(synth, row_type_fallback) {
    cr_assert_eq(ar_synth_row_type(AR_TYPE_Q4_0, 64), AR_TYPE_Q4_0);
    cr_assert_eq(ar_synth_row_type(AR_TYPE_Q4_K, 256), AR_TYPE_Q4_K);
    cr_assert_eq(ar_synth_row_type(AR_TYPE_Q4_K, 288), AR_TYPE_Q8_0);
    cr_assert_eq(ar_synth_row_type(AR_TYPE_Q6_K, 172), AR_TYPE_F32);
    cr_assert_eq(ar_synth_row_type(AR_TYPE_Q8_0, 172), AR_TYPE_F32);
    cr_assert_eq(ar_synth_row_type(AR_TYPE_F16, 172), AR_TYPE_F16);
}

Test(synth, same_bytes_whatever_the_thread_count, .init = setup_tmp, .fini = teardown_tmp) {
    const int types[] = {AR_TYPE_F32, AR_TYPE_Q4_K};
    for (size_t i = 0; i < 2; i++) {
        ar_synth_params p = tiny_params(types[i]);
        p.n_threads = 1;
        char *a = write_synth(&p, "a.gguf");
        p.n_threads = 3;
        char *b = write_synth(&p, "b.gguf");
        assert_same_file(a, b);
        p.seed = 43; /* and the seed matters */
        char *c = write_synth(&p, "c.gguf");
        cr_assert_neq(file_hash(a), file_hash(c));
        free(a);
        free(b);
        free(c);
    }
}

/* Recorded from a Release build (gcc -O2) of this generator: a build whose arithmetic differed
 * (contraction into FMA, a different square root, another quantizer rounding) fails here. A
 * deliberate change of the generated bytes (weights, metadata, or the reference quantizers in
 * quants.c) updates these constants and bumps AR_SYNTH_VERSION, which keys cached models. */
Test(synth, bytes_match_the_release_build, .init = setup_tmp, .fini = teardown_tmp) {
    static const struct {
        int type;
        bool wide;
        uint64_t hash;
    } want[] = {
        {AR_TYPE_F32, false, 0xe39b2b9432c06c0cull},  {AR_TYPE_F16, false, 0xea190a069d009be9ull},
        {AR_TYPE_Q4_0, false, 0xc50b6bf3fe75a6b0ull}, {AR_TYPE_Q4_K, false, 0x8f3b5ca30a0b7c0cull},
        {AR_TYPE_Q2_K, true, 0x36468ed003ca281cull},  {AR_TYPE_Q3_K, true, 0xfab5e0779357b2d2ull},
        {AR_TYPE_Q4_K, true, 0xd65a4ec5bcc1372cull},  {AR_TYPE_Q5_K, true, 0xad18276de8856424ull},
        {AR_TYPE_Q6_K, true, 0x28ab2321e469d444ull},  {AR_TYPE_Q5_1, true, 0xfcad253dafa7e230ull},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ar_synth_params p = tiny_params(want[i].type);
        if (want[i].wide) { /* rows of 256 and 512 values: the K-quants' own quantizers run */
            p.shape.n_embd = 256;
            p.shape.n_ff = 512;
        }
        p.eps = 0.25f;
        p.eps_layer = 1;
        char *path = write_synth(&p, "h.gguf");
        uint64_t h = file_hash(path);
        cr_expect_eq(h, want[i].hash, "%s%s: xxh64 0x%016llxull, recorded 0x%016llxull",
                     ar_type_get((ar_type)want[i].type)->name, want[i].wide ? " (wide)" : "",
                     (unsigned long long)h, (unsigned long long)want[i].hash);
        free(path);
    }
}

Test(synth, preset_shapes_and_fallback_formats, .init = setup_tmp, .fini = teardown_tmp) {
    ar_synth_params p = tiny_params(AR_TYPE_Q4_K);
    char *path = write_synth(&p, "k.gguf");
    ar_model *m = NULL;
    cr_assert_eq(ar_model_load(path, ar_model_default_params(), &m), AR_OK, "%s", ar_last_error());
    cr_assert_eq(m->hp.n_embd, 64);
    cr_assert_eq(m->hp.n_ff, 172);
    cr_assert_eq(m->hp.n_layer, 2);
    cr_assert_eq(m->hp.n_head, 4);
    cr_assert_eq(m->hp.n_head_kv, 2);
    cr_assert_eq(m->hp.n_vocab, 512);
    cr_assert_eq(m->hp.n_ctx_train, 256);
    cr_assert_eq(m->tok_embd.type, AR_TYPE_Q8_0);        /* 64 is not a multiple of 256 */
    cr_assert_eq(m->layers[0].w_down.type, AR_TYPE_F32); /* 172 is not a multiple of 32 */
    cr_assert_eq(m->layers[1].wq.type, AR_TYPE_Q8_0);
    cr_assert_neq(m->output.data, m->tok_embd.data); /* untied */
    ar_model_free(m);
    free(path);

    p = tiny_params(AR_TYPE_Q4_0);
    path = write_synth(&p, "q.gguf");
    cr_assert_eq(ar_model_load(path, ar_model_default_params(), &m), AR_OK, "%s", ar_last_error());
    cr_assert_eq(m->tok_embd.type, AR_TYPE_Q4_0);
    cr_assert_eq(m->layers[1].w_up.type, AR_TYPE_Q4_0);
    cr_assert_eq(m->layers[1].w_down.type, AR_TYPE_F32);
    ar_model_free(m);
    free(path);

    /* llama7b is refused in float formats (never a whole F32 model) */
    p.shape = *ar_synth_preset("llama7b");
    p.type = AR_TYPE_F16;
    char *big = path_in("big.gguf");
    cr_assert_eq(ar_synth_write(&p, big), AR_ERR_INVALID_ARG);
    cr_assert(strstr(ar_last_error(), "quantized"), "%s", ar_last_error());
    free(big);
}

/* Logits of the last row after evaluating `n` tokens. */
static void last_logits(const char *path, const int32_t *tokens, int32_t n, float *out) {
    ar_model *m = NULL;
    cr_assert_eq(ar_model_load(path, ar_model_default_params(), &m), AR_OK, "%s", ar_last_error());
    ar_kv *kv = NULL;
    ar_workspace *ws = NULL;
    cr_assert_eq(ar_kv_create(m, 64, 0, AR_TYPE_F32, &kv), AR_OK);
    cr_assert_eq(ar_workspace_create(m, n, 64, &ws), AR_OK);
    float *all = malloc((size_t)n * (size_t)m->hp.n_vocab * sizeof(float));
    cr_assert(all);
    ar_batch b = {.n = n, .tokens = tokens};
    cr_assert_eq(ar_model_eval(m, kv, ws, NULL, &b, all), AR_OK, "%s", ar_last_error());
    memcpy(out, all + (size_t)(n - 1) * (size_t)m->hp.n_vocab,
           (size_t)m->hp.n_vocab * sizeof(float));
    free(all);
    ar_workspace_free(ws);
    ar_kv_free(kv);
    ar_model_free(m);
}

Test(synth, drafter_is_a_byte_copy_and_eps_zero_is_a_noop, .init = setup_tmp,
     .fini = teardown_tmp) {
    ar_synth_params p = tiny_params(AR_TYPE_Q4_0);
    p.eps = 0.0f;
    p.eps_layer = 1;
    char *target = write_synth(&p, "t0.gguf");
    char *draft = path_in("d.gguf");
    cr_assert_eq(ar_synth_drafter(target, 1, draft), AR_OK, "%s", ar_last_error());

    ar_gguf *gt = NULL, *gd = NULL;
    cr_assert_eq(ar_gguf_open(target, &gt), AR_OK);
    cr_assert_eq(ar_gguf_open(draft, &gd), AR_OK);
    uint32_t layers = 0;
    cr_assert_eq(ar_gguf_get_u32(gd, "llama.block_count", &layers), AR_OK);
    cr_assert_eq(layers, 1);
    size_t expected = 0;
    for (uint64_t i = 0; i < gt->n_tensors; i++)
        if (strncmp(gt->tensors[i].name, "blk.1.", 6) != 0) expected++;
    cr_assert_eq(gd->n_tensors, expected);
    for (uint64_t i = 0; i < gd->n_tensors; i++) {
        const ar_gguf_tensor *d = &gd->tensors[i];
        const ar_gguf_tensor *t = ar_gguf_find_tensor(gt, d->name);
        cr_assert(t, "%s not in the verifier", d->name);
        cr_assert(strncmp(d->name, "blk.1.", 6) != 0);
        cr_assert_eq(d->type, t->type);
        cr_assert_eq(d->nbytes, t->nbytes);
        cr_assert_eq(memcmp(d->data, t->data, d->nbytes), 0, "%s: bytes differ", d->name);
    }
    /* the tokenizer came along */
    const ar_gguf_kv *tt = ar_gguf_find(gt, "tokenizer.ggml.tokens"),
                     *td = ar_gguf_find(gd, "tokenizer.ggml.tokens");
    cr_assert(tt && td);
    cr_assert_eq(tt->arr_n, td->arr_n);
    ar_gguf_close(gt);
    ar_gguf_close(gd);

    /* eps = 0: layer 1 adds exactly nothing, so the logits are the drafter's, bit for bit */
    const int32_t tokens[] = {1, 57, 300, 12, 481, 99, 7};
    const int32_t n = (int32_t)(sizeof tokens / sizeof tokens[0]);
    float *lt = malloc(512 * sizeof(float)), *ld = malloc(512 * sizeof(float));
    cr_assert(lt && ld);
    last_logits(target, tokens, n, lt);
    last_logits(draft, tokens, n, ld);
    cr_assert_eq(memcmp(lt, ld, 512 * sizeof(float)), 0, "eps = 0 changed the logits");

    /* eps > 0: the same drafter layers, but the verifier's logits move */
    p.eps = 0.5f;
    char *target2 = write_synth(&p, "t5.gguf");
    char *draft2 = path_in("d5.gguf");
    cr_assert_eq(ar_synth_drafter(target2, 1, draft2), AR_OK, "%s", ar_last_error());
    assert_same_tensors(draft, draft2); /* eps only touches layers >= 1 */
    last_logits(target2, tokens, n, lt);
    cr_assert_neq(memcmp(lt, ld, 512 * sizeof(float)), 0);

    /* a drafter must be smaller than its verifier */
    cr_assert_eq(ar_synth_drafter(target, 2, draft), AR_ERR_INVALID_ARG);
    free(lt);
    free(ld);
    free(target);
    free(draft);
    free(target2);
    free(draft2);
}

Test(synth, like_keeps_names_shapes_types_and_tokenizer, .init = setup_tmp, .fini = teardown_tmp) {
    const char *src = MODELS "synth-llama-q4_k_m.gguf";
    ar_synth_params p = ar_synth_default_params();
    p.like_path = src;
    p.seed = 5;
    char *path = write_synth(&p, "like.gguf");
    ar_gguf *a = NULL, *b = NULL;
    cr_assert_eq(ar_gguf_open(src, &a), AR_OK);
    cr_assert_eq(ar_gguf_open(path, &b), AR_OK);
    cr_assert_eq(a->n_tensors, b->n_tensors);
    size_t same_bytes = 0;
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const ar_gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(x->type, y->type, "%s", x->name);
        for (int d = 0; d < 4; d++) cr_assert_eq(x->ne[d], y->ne[d], "%s", x->name);
        if (!memcmp(x->data, y->data, x->nbytes)) same_bytes++;
    }
    cr_assert_eq(same_bytes, 0, "%zu tensors kept the original weights", same_bytes);
    const char *keys[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "llama.block_count",
                          "llama.embedding_length"};
    for (size_t k = 0; k < 4; k++) {
        const ar_gguf_kv *x = ar_gguf_find(a, keys[k]), *y = ar_gguf_find(b, keys[k]);
        cr_assert(x && y, "%s", keys[k]);
        cr_assert_eq(x->type, y->type);
        cr_assert_eq(x->arr_n, y->arr_n);
    }
    ar_gguf_close(a);
    ar_gguf_close(b);
    ar_model *m = NULL;
    cr_assert_eq(ar_model_load(path, ar_model_default_params(), &m), AR_OK, "%s", ar_last_error());
    ar_model_free(m);
    free(path);
}

static int32_t generated[64];
static int n_generated;
static bool collect(void *user, arbor_token t, const char *text, size_t len) {
    (void)user, (void)text, (void)len;
    if (t >= 0 && n_generated < 64) generated[n_generated++] = t;
    return true;
}

/* Greedy decoding of a stories15m-shaped model (2 layers, the 32000-token llama vocabulary): the
 * logits are not degenerate, so the output wanders over many tokens instead of repeating one. */
Test(synth, greedy_output_is_not_degenerate, .init = setup_tmp, .fini = teardown_tmp) {
    ar_synth_params p = ar_synth_default_params();
    p.shape = *ar_synth_preset("stories15m");
    p.shape.n_layer = 2;
    p.vocab_path = VOCAB_SPM;
    p.type = AR_TYPE_Q8_0;
    p.n_threads = 2;
    char *path = write_synth(&p, "s.gguf");
    arbor_model *m = NULL;
    arbor_context *c = NULL;
    cr_assert_eq(arbor_model_load(path, arbor_model_default_params(), &m), ARBOR_OK);
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = 1;
    cr_assert_eq(arbor_context_create(m, cp, &c), ARBOR_OK, "%s", arbor_last_error());
    arbor_generate_params gp = arbor_generate_default_params();
    gp.sampling.temp = 0.0f;
    gp.ignore_eos = true;
    gp.n_predict = 48;
    const char *prompts[] = {"Once upon a time", "The little dog saw a"};
    for (int k = 0; k < 2; k++) {
        n_generated = 0;
        arbor_context_reset(c);
        cr_assert_eq(arbor_generate(c, prompts[k], &gp, collect, NULL), ARBOR_OK, "%s",
                     arbor_last_error());
        cr_assert_eq(n_generated, 48);
        int distinct = 0, run = 1, longest = 1;
        for (int i = 0; i < n_generated; i++) {
            bool seen = false;
            for (int j = 0; j < i; j++) seen |= generated[j] == generated[i];
            distinct += !seen;
            if (i > 0) run = generated[i] == generated[i - 1] ? run + 1 : 1;
            longest = run > longest ? run : longest;
        }
        cr_expect_geq(distinct, 32, "prompt %d: only %d distinct tokens in 48", k, distinct);
        cr_expect_leq(longest, 2, "prompt %d: a token repeated %d times in a row", k, longest);
    }
    arbor_context_free(c);
    arbor_model_free(m);
    free(path);
}

/* Runs a shell command; returns its exit status and its stderr+stdout in out. */
static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(synth, cli_same_bytes_and_errors, .init = setup_tmp, .fini = teardown_tmp) {
    char cmd[4096], out[4096];
    char *a = path_in("cli-a.gguf"), *b = path_in("cli-b.gguf"), *d = path_in("cli-d.gguf");
    snprintf(cmd, sizeof cmd,
             ARBOR_CLI " synth tiny -q q5_1 --seed 9 --vocab " VOCAB_512
                       " --eps 0.1 --layers 1 -t 1 -o %s 2>&1",
             a);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             ARBOR_CLI " synth tiny -q q5_1 --seed 9 --vocab " VOCAB_512
                       " --eps 0.1 --layers 1 -t 2 -o %s 2>&1",
             b);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    assert_same_file(a, b);
    /* the CLI and the library agree */
    ar_synth_params p = tiny_params(AR_TYPE_Q5_1);
    p.seed = 9;
    p.eps = 0.1f;
    p.eps_layer = 1;
    char *c = write_synth(&p, "lib.gguf");
    assert_same_file(a, c);
    snprintf(cmd, sizeof cmd, ARBOR_CLI " synth --drafter-of %s --layers 1 -o %s 2>&1", a, d);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);

    struct {
        const char *args;
        int status;
        const char *says;
    } bad[] = {
        {"synth nosuchpreset -o /dev/null", 2, "unknown preset"},
        {"synth tiny --vocab " VOCAB_512, 2, "-o FILE"},
        {"synth tiny -q q9_9 -o /dev/null", 2, "unknown format"},
        {"synth tiny --vocab " VOCAB_512 " -q q8_K -o /dev/null", 1, "not a weight format"},
        {"synth --drafter-of " MODELS "synth-llama-f32.gguf --layers 4 -o /dev/null", 1,
         "must be in [1, 4)"},
        {"synth tiny --vocab /nonexistent.gguf -o /dev/null", 1, "/nonexistent.gguf"},
        {"synth llama7b --vocab " VOCAB_512 " -o /dev/null", 1, "quantized formats"},
        {"synth tiny --like " MODELS "synth-llama-f32.gguf -o /dev/null", 2, "exactly one"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, ARBOR_CLI " %s 2>&1", bad[i].args);
        int st = run(cmd, out, sizeof out);
        cr_expect_eq(st, bad[i].status, "%s: exit %d: %s", bad[i].args, st, out);
        cr_expect(strstr(out, bad[i].says), "%s: '%s' does not say '%s'", bad[i].args, out,
                  bad[i].says);
        cr_expect(strncmp(out, "arbor: ", 7) == 0 && strchr(out, '\n') == out + strlen(out) - 1,
                  "%s: not one error line: '%s'", bad[i].args, out);
    }
    free(a);
    free(b);
    free(c);
    free(d);
}

/* ---- a minimal JSON syntax check (RFC 8259 grammar, no semantic checks) ---- */
static const char *js_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}
static const char *js_value(const char *p, int depth);
static const char *js_string(const char *p) {
    if (*p++ != '"') return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20) return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i]) return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}
static const char *js_number(const char *p) {
    const char *q = p;
    if (*q == '-') q++;
    if (*q == '0')
        q++;
    else if (*q >= '1' && *q <= '9')
        while (*q >= '0' && *q <= '9') q++;
    else
        return NULL;
    if (*q == '.') {
        q++;
        if (*q < '0' || *q > '9') return NULL;
        while (*q >= '0' && *q <= '9') q++;
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-') q++;
        if (*q < '0' || *q > '9') return NULL;
        while (*q >= '0' && *q <= '9') q++;
    }
    return q;
}
static const char *js_value(const char *p, int depth) {
    if (depth > 64) return NULL;
    p = js_ws(p);
    if (*p == '{' || *p == '[') {
        const char close = *p == '{' ? '}' : ']';
        const bool obj = *p == '{';
        p = js_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (obj) {
                if (!(p = js_string(js_ws(p)))) return NULL;
                p = js_ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = js_value(p, depth + 1))) return NULL;
            p = js_ws(p);
            if (*p == close) return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    if (*p == '"') return js_string(p);
    if (!strncmp(p, "true", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    if (!strncmp(p, "null", 4)) return p + 4;
    return js_number(p);
}
static bool json_valid(const char *text) {
    const char *end = js_value(text, 0);
    return end && *js_ws(end) == 0;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

Test(synth, bench_spec_on_a_synthesized_pair, .init = setup_tmp, .fini = teardown_tmp) {
    cr_assert(json_valid("{\"a\": [1, -2.5e3, null, true, \"x\\u00e9\"], \"b\": {}}"));
    cr_assert(!json_valid("{\"a\": nan}") && !json_valid("[1,]") && !json_valid("{\"a\" 1}"));

    ar_synth_params p = tiny_params(AR_TYPE_Q8_0);
    p.eps = 0.3f;
    p.eps_layer = 1;
    char *target = write_synth(&p, "t.gguf");
    char *draft = path_in("d.gguf");
    cr_assert_eq(ar_synth_drafter(target, 1, draft), AR_OK, "%s", ar_last_error());
    ar_synth_params q = ar_synth_default_params(); /* same vocabulary size, other pieces */
    q.like_path = MODELS "aidreams260K-f32.gguf";
    char *alien = write_synth(&q, "alien.gguf");
    char *json = path_in("b.json"), *csv = path_in("b.csv");
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             ARBOR_CLI " bench spec -m %s -md %s -md %s --modes 'plain;chain:2;dynamic:4' -n 8 "
                       "--reps 2 -t 1 -p 'Once upon a time' --json %s --csv %s 2>/dev/null",
             target, draft, alien, json, csv);
    int st = run(cmd, out, sizeof out);
    cr_assert_eq(st, 0, "exit %d: %s", st, out);
    cr_expect(strstr(out, "tok/s") && strstr(out, "speedup") && strstr(out, "peak RSS"), "%s", out);
    cr_expect_eq(count_of(out, "unavailable"), 2, "%s", out); /* the alien drafter, two modes */

    size_t n;
    uint8_t *raw = read_whole(json, &n);
    char *text = malloc(n + 1);
    cr_assert(text);
    memcpy(text, raw, n);
    text[n] = 0;
    cr_assert(json_valid(text), "invalid JSON:\n%s", text);
    const char *keys[] = {"\"machine\"", "\"cpu\"",  "\"cores\"",  "\"threads\"", "\"simd\"",
                          "\"models\"",  "\"arch\"", "\"format\"", "\"bytes\"",   "\"runs\""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        cr_expect(strstr(text, keys[k]), "no %s in %s", keys[k], text);
    const char *per_run[] = {"\"mode\"",           "\"drafter\"",     "\"tokens_per_s\"",
                             "\"speedup\"",        "\"acceptance\"",  "\"mean_accepted\"",
                             "\"peak_rss_bytes\"", "\"draft_share\"", "\"verify_share\"",
                             "\"accept_first\""};
    for (size_t k = 0; k < sizeof per_run / sizeof per_run[0]; k++)
        cr_expect_eq(count_of(text, per_run[k]), 5, "%s: %d times", per_run[k],
                     count_of(text, per_run[k]));
    cr_expect_eq(count_of(text, "\"available\": false"), 2);
    cr_expect_eq(count_of(text, "\"format\": \"q8_0\""), 2); /* verifier and drafter */
    free(raw);
    free(text);

    raw = read_whole(csv, &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += raw[i] == '\n';
    cr_expect_eq(lines, 6, "header + 5 runs");
    cr_expect(!memcmp(
        raw, "mode,drafter,tokens_per_s,speedup,acceptance,mean_accepted,peak_rss_bytes",
        strlen("mode,drafter,tokens_per_s,speedup,acceptance,mean_accepted,peak_rss_bytes")));
    free(raw);
    free(target);
    free(draft);
    free(alien);
    free(json);
    free(csv);
}
