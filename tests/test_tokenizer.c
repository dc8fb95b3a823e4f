/* test_tokenizer.c: the tokenizers (src/vocab*.c) against llama.cpp's own outputs.
 * - llama.cpp's test vectors (tokenizer/ggml-vocab-NAME.gguf.inp/.out, six vocabularies,
 *   46 strings each, no BOS, specials not parsed): identical ids;
 * - llama-tokenize references (tokenizer/tokrefs-*.txt, 4 vocabularies x 20 strings): ids with
 *   BOS and special-token parsing, and raw ids without either;
 * - the prompt ids of every reference case of the 21 fixture models, and their greedy text
 *   rebuilt piece by piece from the greedy ids (llama_token_to_piece, special = false);
 * - SPM round trips, the streaming detokenizer on split UTF-8 characters;
 * - drafter/verifier vocabulary compatibility on the fixture models;
 * - the LLaMA-3, Qwen2 and default pre-tokenizer splits on hand-made strings, and the collapsed
 *   regexes against PCRE2 running the original Unicode patterns;
 * - hostile input: invalid UTF-8, random bytes, malformed vocabularies;
 * - the `arbor tokenize` subcommand. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <criterion/criterion.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "src/tokenizer/vocab_internal.h"
#include "util/gguf_build.h"
#include "util/refs.h"

#define MAX_IDS 8192

/* ---------------------------------------------------------------- helpers */

typedef struct loaded {
    ar_gguf *g;
    ar_vocab *v;
} loaded;

static loaded load(const char *rel) {
    loaded l = {0};
    const char *path = fixture(rel);
    cr_assert_eq(ar_gguf_open(path, &l.g), AR_OK, "%s: %s", path, ar_last_error());
    cr_assert_eq(ar_vocab_load(l.g, &l.v), AR_OK, "%s: %s", path, ar_last_error());
    return l;
}

static void unload(loaded *l) {
    ar_vocab_free(l->v);
    ar_gguf_close(l->g);
}

static int64_t tokenize(const ar_vocab *v, const char *s, size_t n, bool add, bool parse,
                        int32_t *ids) {
    int64_t k = ar_tokenize(v, s, n, add, parse, ids, MAX_IDS);
    cr_assert(k >= 0 && k <= MAX_IDS, "tokenize: %lld (%s)", (long long)k, ar_last_error());
    return k;
}

/* "1 2 3" -> ids; returns the count. */
static int parse_ids(const char *s, int32_t *ids) {
    int n = 0;
    char *end;
    for (;;) {
        while (*s == ' ') s++;
        if (!*s || *s == '\n') break;
        long x = strtol(s, &end, 10);
        cr_assert(end != s, "bad id list at '%s'", s);
        ids[n++] = (int32_t)x;
        s = end;
    }
    return n;
}

static char *fmt_ids(const int32_t *ids, int64_t n) {
    static char buf[4][8192];
    static int next;
    char *b = buf[next++ % 4];
    size_t k = 0;
    b[0] = 0;
    for (int64_t i = 0; i < n && k + 16 < sizeof buf[0]; i++)
        k += (size_t)snprintf(b + k, sizeof buf[0] - k, "%s%d", i ? " " : "", (int)ids[i]);
    return b;
}

/* Concatenation of the pieces (special = false), as the references' greedy text was built. */
static size_t detokenize(const ar_vocab *v, const int32_t *ids, int64_t n, char *out, size_t cap) {
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t len = ar_token_to_piece(v, ids[i], false, out + k, (int32_t)(cap - k));
        cr_assert(len >= 0 && (size_t)len <= cap - k, "piece of %d: %d", (int)ids[i], (int)len);
        k += (size_t)len;
    }
    return k;
}

/* ---------------------------------------------------------------- llama.cpp test vectors */

static const char *const vocab_names[] = {"llama-spm",      "phi-3",  "gpt-2",
                                          "deepseek-coder", "falcon", "starcoder"};

Test(tokenizer, llama_cpp_test_vectors) {
    for (size_t k = 0; k < AR_ARRAY_LEN(vocab_names); k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", vocab_names[k]);
        loaded l = load(rel);
        size_t n_inp, n_out;
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf.inp", vocab_names[k]);
        char *inp = (char *)read_whole(fixture(rel), &n_inp);
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf.out", vocab_names[k]);
        char *out = (char *)read_whole(fixture(rel), &n_out);
        cr_assert(inp && out, "cannot read the .inp/.out of %s", vocab_names[k]);

        static const char sep[] = "\n__ggml_vocab_test__\n";
        const size_t sep_len = sizeof sep - 1;
        size_t pos = 0;
        char *line = out;
        int n_tests = 0, n_ok = 0;
        while (pos < n_inp) {
            const char *hit = memmem(inp + pos, n_inp - pos, sep, sep_len);
            size_t end = hit ? (size_t)(hit - inp) : n_inp;
            char *nl = strchr(line, '\n');
            cr_assert(nl, "%s: fewer .out lines than tests", vocab_names[k]);
            *nl = 0;
            int32_t want[MAX_IDS], got[MAX_IDS];
            int n_want = parse_ids(line, want);
            int64_t n_got = tokenize(l.v, inp + pos, end - pos, false, false, got);
            bool ok = n_got == n_want && memcmp(got, want, sizeof *got * (size_t)n_want) == 0;
            cr_expect(ok, "%s test %d '%.*s': got [%s], want [%s]", vocab_names[k], n_tests,
                      (int)(end - pos), inp + pos, fmt_ids(got, n_got), fmt_ids(want, n_want));
            n_ok += ok;
            n_tests++;
            line = nl + 1;
            pos = end + sep_len;
        }
        cr_assert_eq(n_tests, 46, "%s: %d tests", vocab_names[k], n_tests);
        cr_assert_eq(n_ok, 46, "%s: %d of 46 match", vocab_names[k], n_ok);
        free(inp);
        free(out);
        unload(&l);
    }
}

/* ---------------------------------------------------------------- llama-tokenize references */

static void check_tokrefs(const char *file, const char *model) {
    loaded l = load(model);
    size_t n;
    char *txt = (char *)read_whole(fixture(file), &n);
    cr_assert(txt, "cannot read %s", file);
    int n_tests = 0, declared = -1;
    char *text = NULL;
    size_t text_len = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "n_tests ", 8)) declared = atoi(line + 8);
        if (!strncmp(line, "text ", 5) || !strcmp(line, "text")) {
            free(text);
            text = strdup(line[4] ? line + 5 : "");
            text_len = ref_unescape(text);
            n_tests++;
        }
        bool raw = !strncmp(line, "ids_raw", 7);
        if (raw || !strncmp(line, "ids", 3)) {
            cr_assert(text, "%s: ids before text", file);
            int32_t want[MAX_IDS], got[MAX_IDS];
            int n_want = parse_ids(line + (raw ? 7 : 3), want);
            int64_t n_got = tokenize(l.v, text, text_len, !raw, !raw, got);
            cr_expect(n_got == n_want && !memcmp(got, want, sizeof *got * (size_t)n_want),
                      "%s test %d (%s): got [%s], want [%s]", file, n_tests - 1,
                      raw ? "ids_raw" : "ids", fmt_ids(got, n_got), fmt_ids(want, n_want));
        }
    }
    cr_assert_eq(n_tests, 20, "%s: %d tests", file, n_tests);
    cr_assert_eq(declared, 20);
    free(text);
    free(txt);
    unload(&l);
}

Test(tokenizer, llama_tokenize_references) {
    check_tokrefs("tokenizer/tokrefs-stories260K-f32.txt", "models/stories260K-f32.gguf");
    check_tokrefs("tokenizer/tokrefs-aidreams260K-f32.txt", "models/aidreams260K-f32.gguf");
    check_tokrefs("tokenizer/tokrefs-ggml-vocab-llama-spm.txt",
                  "tokenizer/ggml-vocab-llama-spm.gguf");
    check_tokrefs("tokenizer/tokrefs-ggml-vocab-gpt-2.txt", "tokenizer/ggml-vocab-gpt-2.gguf");
}

/* ---------------------------------------------------------------- reference prompts */

static const char *const model_stems[] = {
    "stories260K-f32",  "llama2xs-260K-f32", "llama2xs-260K-q8_0", "llama2xs-260K-q4_0",
    "aidreams260K-f32", "synth-llama-f32",   "synth-llama-f16",    "synth-llama-bf16",
    "synth-llama-q8_0", "synth-llama-q4_0",  "synth-llama-q4_1",   "synth-llama-q5_0",
    "synth-llama-q5_1", "synth-llama-q2_k",  "synth-llama-q3_k",   "synth-llama-q4_k",
    "synth-llama-q5_k", "synth-llama-q6_k",  "synth-llama-q4_k_m", "synth-qwen2-f32",
    "synth-qwen2-q8_0"};

/* The references tokenized with add_special = true, parse_special = false (README section 2),
 * and built greedy_text from llama_token_to_piece(special = false). */
Test(tokenizer, reference_prompts_and_greedy_text) {
    int n_cases = 0;
    for (size_t m = 0; m < AR_ARRAY_LEN(model_stems); m++) {
        ref_file r;
        cr_assert(ref_load(model_stems[m], &r), "%s", model_stems[m]);
        char rel[512];
        snprintf(rel, sizeof rel, "models/%s", r.model);
        loaded l = load(rel);
        cr_assert_eq(ar_vocab_n_tokens(l.v), r.n_vocab, "%s", r.model);
        for (int c = 0; c < r.n_cases; c++) {
            const ref_case *rc = &r.cases[c];
            int32_t got[MAX_IDS];
            int64_t n = tokenize(l.v, rc->prompt, rc->prompt_len, true, false, got);
            cr_expect(n == rc->n_prompt && !memcmp(got, rc->prompt_ids, sizeof *got * (size_t)n),
                      "%s case %d: got [%s], want [%s]", r.model, c, fmt_ids(got, n),
                      fmt_ids(rc->prompt_ids, rc->n_prompt));
            static char text[1 << 16];
            size_t k = detokenize(l.v, rc->greedy_ids, rc->n_gen, text, sizeof text);
            cr_expect(k == rc->greedy_text_len && !memcmp(text, rc->greedy_text, k),
                      "%s case %d: greedy text differs", r.model, c);
            n_cases++;
        }
        unload(&l);
        ref_free(&r);
    }
    cr_assert_eq(n_cases, 63);
}

/* ---------------------------------------------------------------- pieces and round trips */

/* Every .inp string of the SPM vocabularies comes back from its tokens, after the dummy-prefix
 * space the tokenizer adds: SPM has a byte token for every byte, so nothing is lost. (llama.cpp
 * does no normalization for SPM either.) The one set of strings that cannot come back is text
 * containing U+2581 "▁" itself, which pieces print as a space; the .inp strings hold none, and
 * the hand-made case below shows it. */
Test(tokenizer, spm_round_trip) {
    for (int k = 0; k < 2; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", vocab_names[k]);
        loaded l = load(rel);
        size_t n_inp;
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf.inp", vocab_names[k]);
        char *inp = (char *)read_whole(fixture(rel), &n_inp);
        cr_assert(inp);
        static const char sep[] = "\n__ggml_vocab_test__\n";
        int n_tests = 0;
        for (size_t pos = 0; pos < n_inp; n_tests++) {
            const char *hit = memmem(inp + pos, n_inp - pos, sep, sizeof sep - 1);
            size_t end = hit ? (size_t)(hit - inp) : n_inp;
            int32_t ids[MAX_IDS];
            int64_t n = tokenize(l.v, inp + pos, end - pos, false, false, ids);
            static char text[1 << 16];
            size_t len = detokenize(l.v, ids, n, text, sizeof text);
            if (end == pos) {
                cr_expect_eq(len, 0, "empty string gives no tokens");
            } else {
                cr_expect(len == end - pos + 1 && text[0] == ' ' &&
                              !memcmp(text + 1, inp + pos, end - pos),
                          "%s test %d '%.*s' came back as '%.*s'", vocab_names[k], n_tests,
                          (int)(end - pos), inp + pos, (int)len, text);
            }
            pos = end + sizeof sep - 1;
        }
        cr_assert_eq(n_tests, 46);
        /* "a▁b" prints as " a b" */
        int32_t ids[16];
        int64_t n = tokenize(l.v,
                             "a\xe2\x96\x81"
                             "b",
                             5, false, false, ids);
        char text[64];
        size_t len = detokenize(l.v, ids, n, text, sizeof text);
        cr_expect(len == 4 && !memcmp(text, " a b", 4));
        free(inp);
        unload(&l);
    }
}

Test(tokenizer, pieces_and_special_tokens) {
    loaded spm = load("tokenizer/ggml-vocab-llama-spm.gguf");
    char buf[64];
    cr_assert_eq(ar_token_to_piece(spm.v, 15043, false, buf, sizeof buf), 6); /* "▁Hello" */
    cr_assert(!memcmp(buf, " Hello", 6));
    cr_assert_eq(ar_token_to_piece(spm.v, 13, false, buf, sizeof buf), 1); /* <0x0A> */
    cr_assert_eq(buf[0], '\n');
    cr_assert_eq(ar_token_to_piece(spm.v, 1, false, buf, sizeof buf), 0); /* <s>: control */
    cr_assert_eq(ar_token_to_piece(spm.v, 1, true, buf, sizeof buf), 3);
    cr_assert(!memcmp(buf, "<s>", 3));
    cr_assert_eq(ar_token_to_piece(spm.v, 15043, false, buf, 2), 6); /* length beyond cap */
    cr_assert_lt(ar_token_to_piece(spm.v, 32000, false, buf, sizeof buf), 0);
    cr_assert_lt(ar_token_to_piece(spm.v, -1, false, buf, sizeof buf), 0);
    cr_assert_eq(ar_vocab_kind_of(spm.v), AR_VOCAB_SPM);
    cr_assert_eq(ar_vocab_bos(spm.v), 1);
    cr_assert_eq(ar_vocab_eos(spm.v), 2);
    cr_assert(ar_vocab_add_bos(spm.v) && !ar_vocab_add_eos(spm.v));
    cr_assert(ar_vocab_is_eog(spm.v, 2) && !ar_vocab_is_eog(spm.v, 1) &&
              !ar_vocab_is_eog(spm.v, -1));
    cr_assert_eq(ar_vocab_token_type(spm.v, 0), AR_TOKEN_UNKNOWN);
    cr_assert_eq(ar_vocab_token_type(spm.v, 1), AR_TOKEN_CONTROL);
    cr_assert_eq(ar_vocab_token_type(spm.v, 3), AR_TOKEN_BYTE);
    ar_str raw = ar_vocab_piece_raw(spm.v, 15043);
    cr_assert(raw.len == 8 && !memcmp(raw.ptr, "\xe2\x96\x81Hello", 8));
    /* ar_tokenize reports the full count even when the buffer is short */
    int32_t ids[2] = {-7, -7};
    cr_assert_eq(ar_tokenize(spm.v, "Hello world", 11, true, true, ids, 1), 3);
    cr_assert(ids[0] == 1 && ids[1] == -7);
    cr_assert_eq(ar_tokenize(spm.v, "Hello world", 11, true, true, NULL, 0), 3);
    cr_assert_lt(ar_tokenize(spm.v, NULL, 3, true, true, ids, 2), 0);
    unload(&spm);

    loaded bpe = load("tokenizer/ggml-vocab-gpt-2.gguf");
    cr_assert_eq(ar_vocab_kind_of(bpe.v), AR_VOCAB_BPE);
    cr_assert_eq(ar_token_to_piece(bpe.v, 995, false, buf, sizeof buf), 6); /* "Ġworld" */
    cr_assert(!memcmp(buf, " world", 6));
    cr_assert_eq(ar_token_to_piece(bpe.v, 198, false, buf, sizeof buf), 1); /* "Ċ" */
    cr_assert_eq(buf[0], '\n');
    cr_assert_eq(ar_token_to_piece(bpe.v, 50256, false, buf, sizeof buf), 0);
    cr_assert(ar_vocab_is_eog(bpe.v, 50256) && !ar_vocab_add_bos(bpe.v));
    /* a special token in BPE text: parsed only with parse_special */
    int32_t a[64], b[64], c[64];
    int64_t na = tokenize(bpe.v, "Hello<|endoftext|>world", 23, true, true, a);
    int64_t nb = tokenize(bpe.v, "Hello", 5, false, false, b);
    int64_t nc = tokenize(bpe.v, "world", 5, false, false, c);
    cr_assert(na == nb + nc + 1 && !memcmp(a, b, sizeof *a * (size_t)nb) && a[nb] == 50256 &&
                  !memcmp(a + nb + 1, c, sizeof *a * (size_t)nc),
              "[%s]", fmt_ids(a, na));
    na = tokenize(bpe.v, "Hello<|endoftext|>world", 23, true, false, a);
    for (int64_t i = 0; i < na; i++) cr_assert_neq(a[i], 50256);
    unload(&bpe);

    /* end of generation: phi-3 declares EOS <|endoftext|> and has <|end|>; deepseek-coder's EOS
     * is also its end-of-turn token, while its <|EOT|> is not one llama.cpp knows */
    loaded phi = load("tokenizer/ggml-vocab-phi-3.gguf");
    cr_assert(ar_vocab_is_eog(phi.v, 32000) && ar_vocab_is_eog(phi.v, 32007));
    cr_assert(!ar_vocab_is_eog(phi.v, 32001) && !ar_vocab_is_eog(phi.v, 2));
    /* Phi-3 special tokens swallow the whitespace after them (llama.cpp's rule for models
     * named phi3), and the text after a special token gets the SPM prefix space */
    na = tokenize(phi.v, "<|user|>\n  Hello", 16, true, true, a);
    nb = tokenize(phi.v, "Hello", 5, false, false, b);
    cr_assert(na == nb + 2 && a[0] == 1 && a[1] == 32010 &&
                  !memcmp(a + 2, b, sizeof *a * (size_t)nb),
              "[%s]", fmt_ids(a, na));
    unload(&phi);
    loaded ds = load("tokenizer/ggml-vocab-deepseek-coder.gguf");
    cr_assert(ar_vocab_is_eog(ds.v, 32014) && !ar_vocab_is_eog(ds.v, 32021));
    /* its FIM tokens are found by text and become control tokens, while the other added tokens
     * stay user-defined and are split out even without parse_special */
    cr_assert_eq(ar_vocab_token_type(ds.v, 32016), AR_TOKEN_CONTROL);
    cr_assert_eq(ar_vocab_token_type(ds.v, 32019), AR_TOKEN_USER_DEFINED);
    int32_t got[16];
    int64_t n = tokenize(ds.v, "<|User|>", 8, false, false, got);
    cr_assert(n == 1 && got[0] == 32019, "[%s]", fmt_ids(got, n));
    unload(&ds);
}

/* ---------------------------------------------------------------- streaming detokenizer */

Test(tokenizer, streaming_detokenizer) {
    loaded l = load("tokenizer/ggml-vocab-llama-spm.gguf");
    /* "🦙" (F0 9F A6 99) is no piece: four byte tokens */
    int32_t ids[16];
    int64_t n = tokenize(l.v, "x\xf0\x9f\xa6\x99", 5, false, false, ids);
    cr_assert_eq(n, 5, "[%s]", fmt_ids(ids, n));
    ar_detok d = {0};
    char buf[256];
    cr_assert_eq(ar_detok_push(&d, l.v, ids[0], buf, sizeof buf), 2); /* " x" */
    cr_assert(!memcmp(buf, " x", 2));
    for (int i = 1; i < 4; i++) cr_assert_eq(ar_detok_push(&d, l.v, ids[i], buf, sizeof buf), 0);
    cr_assert_eq(ar_detok_push(&d, l.v, ids[4], buf, sizeof buf), 4);
    cr_assert(!memcmp(buf, "\xf0\x9f\xa6\x99", 4));
    cr_assert_eq(ar_detok_flush(&d, buf, sizeof buf), 0);

    /* a character still incomplete at the end comes out on flush, as is */
    cr_assert_eq(ar_detok_push(&d, l.v, ids[1], buf, sizeof buf), 0);
    cr_assert_eq(ar_detok_push(&d, l.v, ids[2], buf, sizeof buf), 0);
    cr_assert_eq(ar_detok_flush(&d, buf, sizeof buf), 2);
    cr_assert(!memcmp(buf, "\xf0\x9f", 2));

    /* a lead byte followed by something that cannot continue it is not held back forever */
    int32_t e2 = 3 + 0xE2, a = 3 + 'a';
    cr_assert_eq(ar_detok_push(&d, l.v, e2, buf, sizeof buf), 0);
    cr_assert_eq(ar_detok_push(&d, l.v, a, buf, sizeof buf), 2);
    cr_assert(!memcmp(buf,
                      "\xe2"
                      "a",
                      2));
    /* control tokens print nothing; a too small buffer is refused without losing state */
    cr_assert_eq(ar_detok_push(&d, l.v, 2, buf, sizeof buf), 0);
    cr_assert_eq(ar_detok_push(&d, l.v, e2, buf, sizeof buf), 0);
    cr_assert_lt(ar_detok_push(&d, l.v, 15043, buf, 3), 0);
    cr_assert_eq(ar_detok_push(&d, l.v, 15043, buf, sizeof buf), 7);
    cr_assert(!memcmp(buf, "\xe2 Hello", 7));
    unload(&l);

    /* GPT-2 byte-level: "é" split into its two bytes Ã (C3) and © (A9) */
    loaded g = load("tokenizer/ggml-vocab-gpt-2.gguf");
    ar_str p1 = {"\xc3\x83", 2}, p2 = {"\xc2\xa9", 2};
    int32_t t1 = ar_strmap_get(&g.v->token_map, p1.ptr, p1.len);
    int32_t t2 = ar_strmap_get(&g.v->token_map, p2.ptr, p2.len);
    cr_assert(t1 >= 0 && t2 >= 0);
    cr_assert_eq(ar_detok_push(&d, g.v, t1, buf, sizeof buf), 0);
    cr_assert_eq(ar_detok_push(&d, g.v, t2, buf, sizeof buf), 2);
    cr_assert(!memcmp(buf, "\xc3\xa9", 2));
    unload(&g);
}

/* ---------------------------------------------------------------- compatibility */

Test(tokenizer, drafter_verifier_compatibility) {
    static const char *const tok512[] = {
        "stories260K-f32",  "llama2xs-260K-f32", "llama2xs-260K-q8_0", "llama2xs-260K-q4_0",
        "synth-llama-f32",  "synth-llama-f16",   "synth-llama-bf16",   "synth-llama-q8_0",
        "synth-llama-q4_0", "synth-llama-q4_1",  "synth-llama-q5_0",   "synth-llama-q5_1",
        "synth-llama-q2_k", "synth-llama-q3_k",  "synth-llama-q4_k",   "synth-llama-q5_k",
        "synth-llama-q6_k", "synth-llama-q4_k_m"};
    const size_t n = AR_ARRAY_LEN(tok512);
    loaded l[AR_ARRAY_LEN(tok512)];
    char rel[256];
    for (size_t i = 0; i < n; i++) {
        snprintf(rel, sizeof rel, "models/%s.gguf", tok512[i]);
        l[i] = load(rel);
    }
    loaded aid = load("models/aidreams260K-f32.gguf");
    loaded qf = load("models/synth-qwen2-f32.gguf");
    loaded qq = load("models/synth-qwen2-q8_0.gguf");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++)
            cr_assert_eq(ar_vocab_compatible(l[i].v, l[j].v), AR_OK, "%s vs %s: %s", tok512[i],
                         tok512[j], ar_last_error());
        cr_assert_eq(ar_vocab_fingerprint(l[i].v), ar_vocab_fingerprint(l[0].v));
        cr_assert_eq(ar_vocab_compatible(l[i].v, aid.v), AR_ERR_INCOMPATIBLE);
        cr_assert_eq(ar_vocab_compatible(aid.v, l[i].v), AR_ERR_INCOMPATIBLE);
        cr_assert_eq(ar_vocab_compatible(l[i].v, qf.v), AR_ERR_INCOMPATIBLE);
    }
    cr_assert_neq(ar_vocab_fingerprint(aid.v), ar_vocab_fingerprint(l[0].v));
    /* the message names the first differing id and both pieces */
    cr_assert_eq(ar_vocab_compatible(l[0].v, aid.v), AR_ERR_INCOMPATIBLE);
    int32_t first = -1;
    for (int32_t id = 0; id < 512 && first < 0; id++) {
        ar_str a = ar_vocab_piece_raw(l[0].v, id), b = ar_vocab_piece_raw(aid.v, id);
        if (a.len != b.len || memcmp(a.ptr, b.ptr, a.len)) first = id;
    }
    char want[64];
    snprintf(want, sizeof want, "at token %d:", (int)first);
    cr_assert(strstr(ar_last_error(), want), "%s", ar_last_error());
    cr_assert_eq(ar_vocab_compatible(l[0].v, qf.v), AR_ERR_INCOMPATIBLE);
    cr_assert(strstr(ar_last_error(), "SPM") && strstr(ar_last_error(), "BPE"), "%s",
              ar_last_error());
    cr_assert_eq(ar_vocab_compatible(qf.v, qq.v), AR_OK, "%s", ar_last_error());
    for (size_t i = 0; i < n; i++) unload(&l[i]);
    unload(&aid);
    unload(&qf);
    unload(&qq);
}

/* ---------------------------------------------------------------- pre-tokenizer splits */

typedef struct split_list {
    char s[256][128];
    int n;
} split_list;

static ar_status collect(void *user, const uint32_t *cp, size_t n_cp, const char *bytes,
                         size_t n_bytes) {
    (void)cp;
    (void)n_cp;
    split_list *l = user;
    cr_assert(l->n < 256 && n_bytes < 128);
    memcpy(l->s[l->n], bytes, n_bytes);
    l->s[l->n][n_bytes] = 0;
    l->n++;
    return AR_OK;
}

/* want: the expected pieces separated by '|' */
static void expect_split(ar_pre_kind kind, const char *text, const char *want) {
    static split_list got;
    got.n = 0;
    cr_assert_eq(ar_pretokenize(kind, text, strlen(text), collect, &got), AR_OK, "%s",
                 ar_last_error());
    char joined[1024] = "";
    for (int i = 0; i < got.n; i++) {
        if (i) strcat(joined, "|");
        strcat(joined, got.s[i]);
    }
    cr_expect_str_eq(joined, want, "pre %d on '%s'", (int)kind, text);
}

Test(tokenizer, pretokenize_llama3) {
    const ar_pre_kind k = AR_PRE_LLAMA3;
    expect_split(k, "Hello world", "Hello| world");
    expect_split(k, "12345678", "123|456|78");                    /* \p{N}{1,3} */
    expect_split(k, "I'M here, you'Re", "I|'M| here|,| you|'Re"); /* contractions, any case */
    expect_split(k, "don't", "don|'t");
    expect_split(k, "a  b", "a| | b"); /* \s+(?!\S) leaves one space */
    expect_split(k, "x  ", "x|  ");    /* at the end all of it */
    expect_split(k, "line1\n\nline2", "line|1|\n\n|line|2");
    expect_split(k, "  \n  x", "  \n| | x");           /* \s*[\r\n]+ first */
    expect_split(k, "$100.50!!\n", "$|100|.|50|!!\n"); /* punctuation takes trailing newlines */
    expect_split(k, "hello\t\tworld", "hello|\t|\tworld");
    expect_split(k, " 1", " |1");
    expect_split(k,
                 "\xc3\x84\xc3\x96\xc3\x9c \xc3\xbc"
                 "ber",
                 "\xc3\x84\xc3\x96\xc3\x9c| \xc3\xbc"
                 "ber");
    expect_split(k, "\xf0\x9f\xa6\x99x", "\xf0\x9f\xa6\x99x"); /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    expect_split(k, "x\xe3\x80\x80y", "x|\xe3\x80\x80y");      /* U+3000 is whitespace */
    expect_split(k, "\xd9\xa3\xd9\xa4", "\xd9\xa3\xd9\xa4");   /* Arabic-Indic digits */
}

Test(tokenizer, pretokenize_qwen2) {
    const ar_pre_kind k = AR_PRE_QWEN2;
    expect_split(k, "12345", "1|2|3|4|5"); /* single digits */
    expect_split(k, "I'M here", "I|'M| here");
    expect_split(k, "a  b", "a| | b");
    expect_split(k, "x  ", "x|  ");
    expect_split(k, "  \n  x", "  \n| | x");
    expect_split(k, "$100", "$|1|0|0");
    expect_split(k, "hello\r\n\r\nworld", "hello|\r\n\r\n|world");
    expect_split(k, "\xf0\x9f\xa6\x99x", "\xf0\x9f\xa6\x99x");
    expect_split(k, "x\xe3\x80\x80y", "x|\xe3\x80\x80y");
    expect_split(k, "\xd9\xa3\xd9\xa4", "\xd9\xa3|\xd9\xa4");
    expect_split(k, "it's 2024!", "it|'s| |2|0|2|4|!");
}

/* The default set (BPE vocab without tokenizer.ggml.pre): punctuation runs, then GPT-2, then
 * number runs, then three-digit groups, each splitting the pieces of the one before. */
Test(tokenizer, pretokenize_default) {
    expect_split(AR_PRE_DEFAULT, "Hello, world!!! 12345", "Hello|,| world|!!!| |123|45");
    expect_split(AR_PRE_DEFAULT, "a+b=c", "a|+|b|=|c");
    expect_split(AR_PRE_GPT2, "Hello, world!!! 12345", "Hello|,| world|!!!| 12345");
}

/* The collapsed-string patterns must split like the original Unicode regex run by PCRE2 (UTF,
 * UCP) on the fixture strings, which hold nothing where the two could differ (U+0085, code
 * points newer than Unicode 14). */
static void cross_check(ar_pre_kind kind, const char *pattern) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    cr_assert(re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t n_inp;
    char *inp = (char *)read_whole(fixture("tokenizer/ggml-vocab-gpt-2.gguf.inp"), &n_inp);
    cr_assert(inp);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n_tests = 0;
    for (size_t pos = 0; pos < n_inp; n_tests++) {
        const char *hit = memmem(inp + pos, n_inp - pos, sep, sizeof sep - 1);
        size_t end = hit ? (size_t)(hit - inp) : n_inp;
        const char *s = inp + pos;
        size_t len = end - pos;
        static split_list want, got;
        want.n = got.n = 0;
        size_t at = 0, prev = 0;
        while (at < len && pcre2_match(re, (PCRE2_SPTR)s, len, at, 0, md, NULL) > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[0] > prev) collect(&want, NULL, 0, s + prev, ov[0] - prev);
            collect(&want, NULL, 0, s + ov[0], ov[1] - ov[0]);
            prev = at = ov[1];
        }
        if (prev < len) collect(&want, NULL, 0, s + prev, len - prev);
        cr_assert_eq(ar_pretokenize(kind, s, len, collect, &got), AR_OK);
        cr_expect_eq(got.n, want.n, "pre %d test %d '%.*s': %d pieces, regex %d", (int)kind,
                     n_tests, (int)len, s, got.n, want.n);
        for (int i = 0; i < got.n && i < want.n; i++)
            cr_expect_str_eq(got.s[i], want.s[i], "pre %d test %d piece %d", (int)kind, n_tests, i);
        pos = end + sizeof sep - 1;
    }
    cr_assert_eq(n_tests, 46);
    free(inp);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}

Test(tokenizer, pretokenize_matches_unicode_regex) {
    cross_check(AR_PRE_QWEN2, "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
                              "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                              "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
    cross_check(AR_PRE_LLAMA3, "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
                               "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                               "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
}

/* ---------------------------------------------------------------- hostile input */

/* Text the way llama.cpp's BPE sees it: each byte that starts no complete sequence becomes
 * U+FFFD; everything else is re-encoded as decoded. */
static size_t sanitize(const char *s, size_t n, char *out) {
    ar_cpts c;
    cr_assert_eq(ar_utf8_decode(s, n, &c), AR_OK);
    size_t k = 0;
    for (size_t i = 0; i < c.n; i++) k += (size_t)ar_utf8_encode(c.cp[i], out + k);
    ar_cpts_free(&c);
    return k;
}

Test(tokenizer, hostile_utf8) {
    static const char *const bad[] = {
        "\xff",         "\x80\x80",         "abc\xc3",
        "\xe2\x96",     "\xf0\x9f\xa6",     "\xc0\x80",
        "\xed\xa0\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
        "a\xfe b\xff",  "<s\xff>",          "\xe2\x96\x81\xe2\x96",
    };
    loaded spm = load("tokenizer/ggml-vocab-llama-spm.gguf");
    int32_t ids[MAX_IDS];
    /* an invalid byte alone becomes its byte token */
    cr_assert_eq(tokenize(spm.v, "\xff", 1, false, false, ids), 2);
    cr_assert(ids[0] == 29871 && ids[1] == 3 + 0xFF, "[%s]", fmt_ids(ids, 2));
    unload(&spm);

    uint64_t seed = 12345;
    for (size_t k = 0; k < AR_ARRAY_LEN(vocab_names); k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", vocab_names[k]);
        loaded l = load(rel);
        /* byte-level vocabularies without a token for every byte drop such bytes (falcon and
         * starcoder lack some control characters), as llama.cpp does */
        bool every_byte = true;
        for (int b = 0; b < 256 && l.v->kind == AR_VOCAB_BPE; b++) {
            char u[4];
            int k = ar_utf8_encode(ar_byte_to_cpt((uint8_t)b), u);
            every_byte &= ar_strmap_get(&l.v->token_map, u, (size_t)k) >= 0;
        }
        for (int t = 0; t < 200 + (int)AR_ARRAY_LEN(bad); t++) {
            char s[128];
            size_t n;
            if (t < (int)AR_ARRAY_LEN(bad)) {
                n = strlen(bad[t]);
                memcpy(s, bad[t], n);
            } else { /* random bytes, biased towards UTF-8 lead/continuation bytes and spaces */
                n = 1 + (size_t)(t % 60);
                for (size_t i = 0; i < n; i++) {
                    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                    s[i] = (char)(seed % 5 == 0   ? ' '
                                  : seed % 3 == 0 ? 0x80 + (seed >> 8) % 64
                                                  : (seed >> 16) & 0xFF);
                }
            }
            for (int parse = 0; parse < 2; parse++) {
                int64_t m = tokenize(l.v, s, n, parse, parse, ids);
                for (int64_t i = 0; i < m; i++) cr_assert(ids[i] >= 0 && ids[i] < l.v->n_tokens);
            }
            int64_t m = tokenize(l.v, s, n, false, false, ids);
            static char text[1 << 14], want[1 << 10];
            size_t len = detokenize(l.v, ids, m, text, sizeof text);
            /* the bytes come back. SPM: after the prefix space, with each space as "▁" grouped
             * into symbols the way the tokenizer does (a lead byte claims the next bytes, valid
             * or not); a symbol that is exactly "▁" prints as a space, any other prints its
             * bytes (so a space swallowed by an invalid lead byte comes back as E2 96 81, as in
             * llama.cpp). BPE: with U+FFFD for invalid bytes, for the vocabularies that have a
             * token for every byte. */
            if (l.v->kind == AR_VOCAB_SPM) {
                static char esc[1 << 10];
                size_t e = 0, w = 0;
                for (size_t i = 0; i <= n; i++) {
                    char c = i == 0 ? ' ' : s[i - 1];
                    if (c == ' ')
                        memcpy(esc + e, "\xe2\x96\x81", 3), e += 3;
                    else
                        esc[e++] = c;
                }
                static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                                     1, 1, 1, 1, 2, 2, 3, 4};
                for (size_t i = 0; i < e;) {
                    size_t k = lead_len[(uint8_t)esc[i] >> 4];
                    if (k > e - i) k = e - i;
                    if (k == 3 && !memcmp(esc + i, "\xe2\x96\x81", 3))
                        want[w++] = ' ';
                    else
                        memcpy(want + w, esc + i, k), w += k;
                    i += k;
                }
                cr_expect(len == w && !memcmp(text, want, w), "%s: random text %d", vocab_names[k],
                          t);
            } else if (every_byte) {
                size_t w = sanitize(s, n, want);
                cr_expect(len == w && !memcmp(text, want, w), "%s: random text %d", vocab_names[k],
                          t);
            }
        }
        cr_assert(every_byte || strcmp(vocab_names[k], "gpt-2") != 0);
        unload(&l);
    }
}

/* Minimal GGUF vocabularies built byte by byte. */
static ar_status load_built(gb_buf *b, ar_gguf **g, ar_vocab **v) {
    *v = NULL;
    ar_status st = ar_gguf_open_memory(b->data, b->len, "built.gguf", g);
    cr_assert_eq(st, AR_OK, "%s", ar_last_error());
    return ar_vocab_load(*g, v);
}

static void build_vocab(gb_buf *b, const char *model, const char *pre, const char *const *tokens,
                        int n_tokens, int n_scores) {
    memset(b, 0, sizeof *b);
    gb_header(b, 3, 0, 2 + (pre != NULL) + (n_scores >= 0) + (strcmp(model, "gpt2") == 0));
    gb_kv_str(b, "tokenizer.ggml.model", model);
    if (pre) gb_kv_str(b, "tokenizer.ggml.pre", pre);
    gb_kv_arr(b, "tokenizer.ggml.tokens", AR_GGUF_STRING, (uint64_t)n_tokens);
    for (int i = 0; i < n_tokens; i++) gb_str(b, tokens[i]);
    if (n_scores >= 0) {
        gb_kv_arr(b, "tokenizer.ggml.scores", AR_GGUF_FLOAT32, (uint64_t)n_scores);
        for (int i = 0; i < n_scores; i++) gb_f32(b, -(float)i);
    }
    if (!strcmp(model, "gpt2")) {
        gb_kv_arr(b, "tokenizer.ggml.merges", AR_GGUF_STRING, 1);
        gb_str(b, "a b");
    }
}

Test(tokenizer, malformed_vocabularies) {
    static const char *const toks[] = {"a", "b", "ab", "\xc4\xa0"};
    gb_buf b;
    ar_gguf *g;
    ar_vocab *v;

    build_vocab(&b, "gpt2", "tekken", toks, 4, -1);
    cr_assert_eq(load_built(&b, &g, &v), AR_ERR_UNSUPPORTED);
    cr_assert(strstr(ar_last_error(), "'tekken'"), "%s", ar_last_error());
    ar_gguf_close(g);
    gb_free(&b);

    build_vocab(&b, "bert", NULL, toks, 4, -1);
    cr_assert_eq(load_built(&b, &g, &v), AR_ERR_UNSUPPORTED);
    cr_assert(strstr(ar_last_error(), "'bert'"), "%s", ar_last_error());
    ar_gguf_close(g);
    gb_free(&b);

    static const char *const dup[] = {"a", "b", "a"};
    build_vocab(&b, "llama", NULL, dup, 3, 3);
    cr_assert_eq(load_built(&b, &g, &v), AR_ERR_FORMAT);
    cr_assert(strstr(ar_last_error(), "token 2 repeats token 0"), "%s", ar_last_error());
    ar_gguf_close(g);
    gb_free(&b);

    build_vocab(&b, "llama", NULL, toks, 4, 3);
    cr_assert_eq(load_built(&b, &g, &v), AR_ERR_FORMAT);
    cr_assert(strstr(ar_last_error(), "scores"), "%s", ar_last_error());
    ar_gguf_close(g);
    gb_free(&b);

    /* a small BPE vocabulary works: absent pre = "default"; "ab" merges; "c" has no token */
    build_vocab(&b, "gpt2", NULL, toks, 4, -1);
    cr_assert_eq(load_built(&b, &g, &v), AR_OK, "%s", ar_last_error());
    int32_t ids[8];
    cr_assert_eq(ar_tokenize(v, "ab c", 4, false, false, ids, 8), 2);
    cr_assert(ids[0] == 2 && ids[1] == 3, "[%s]", fmt_ids(ids, 2));
    ar_vocab_free(v);
    ar_gguf_close(g);
    gb_free(&b);

    /* a tiny SPM vocabulary without byte tokens: llama.cpp's default ids (UNK 0, BOS 1, EOS 2)
     * apply, and the bytes of "▁", which is no piece, fall back to <unk> (llama.cpp throws) */
    build_vocab(&b, "llama", NULL, toks, 4, 4);
    cr_assert_eq(load_built(&b, &g, &v), AR_OK, "%s", ar_last_error());
    cr_assert_eq(ar_vocab_bos(v), 1);
    cr_assert_eq(ar_vocab_eos(v), 2);
    int64_t n = ar_tokenize(v, "ab", 2, true, false, ids, 8);
    cr_assert(n == 5 && ids[0] == 1 && ids[1] == 0 && ids[2] == 0 && ids[3] == 0 && ids[4] == 2,
              "[%s]", fmt_ids(ids, n));
    ar_vocab_free(v);
    ar_gguf_close(g);
    gb_free(&b);
}

/* ---------------------------------------------------------------- arbor tokenize */

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(tokenizer, cli_tokenize) {
    char cmd[2048], out[4096];
    const char *spm = fixture("tokenizer/ggml-vocab-llama-spm.gguf");
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' -p '<s> and </s> are special' --ids 2>&1",
             ARBOR_CLI, spm);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "[1, 1, 29871, 322, 29871, 2, 29871, 526, 4266]\n");
    snprintf(cmd, sizeof cmd,
             "'%s' tokenize -m '%s' -p '<s> and' --ids --no-bos --no-parse-special 2>&1", ARBOR_CLI,
             spm);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    int32_t ids[64];
    int64_t n;
    {
        loaded l = load("tokenizer/ggml-vocab-llama-spm.gguf");
        n = tokenize(l.v, "<s> and", 7, false, false, ids);
        unload(&l);
    }
    char want[512] = "[";
    for (int64_t i = 0; i < n; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? ", " : "",
                 (int)ids[i]);
    strcat(want, "]\n");
    cr_assert_str_eq(out, want);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' -p 'Hello world' 2>&1", ARBOR_CLI, spm);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "     1 -> '<s>'\n 15043 -> ' Hello'\n  3186 -> ' world'\n");
    char *dir = gb_tmpdir();
    char *file = gb_write_file(dir, "text.txt", "Hello world", 11);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' -f '%s' --ids 2>&1", ARBOR_CLI, spm, file);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "[1, 15043, 3186]\n");
    free(file);
    gb_rmdir(dir);
    free(dir);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -p x 2>&1", ARBOR_CLI);
    cr_assert_eq(run(cmd, out, sizeof out), 2, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m /nonexistent.gguf -p x 2>&1", ARBOR_CLI);
    cr_assert_eq(run(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(!strncmp(out, "arbor: ", 7) && strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
}

/* ---------------------------------------------------------------- Llama 3 and Gemma specifics */

/* A vocabulary of the given tokens (types: 1 normal, 3 control), with optional scores (-id),
 * merges, tokenizer.ggml.pre and add_space_prefix (-1: absent). */
static void build_vocab_ex(gb_buf *b, const char *model, const char *pre, const char *const *tokens,
                           const int *types, int n, const char *const *merges, int n_merges,
                           int add_space_prefix) {
    memset(b, 0, sizeof *b);
    bool spm = !strcmp(model, "llama");
    gb_header(b, 3, 0, 3 + (pre != NULL) + spm + (n_merges > 0) + (add_space_prefix >= 0));
    gb_kv_str(b, "tokenizer.ggml.model", model);
    if (pre) gb_kv_str(b, "tokenizer.ggml.pre", pre);
    gb_kv_arr(b, "tokenizer.ggml.tokens", AR_GGUF_STRING, (uint64_t)n);
    for (int i = 0; i < n; i++) gb_str(b, tokens[i]);
    gb_kv_arr(b, "tokenizer.ggml.token_type", AR_GGUF_INT32, (uint64_t)n);
    for (int i = 0; i < n; i++) gb_u32(b, (uint32_t)types[i]);
    if (spm) {
        gb_kv_arr(b, "tokenizer.ggml.scores", AR_GGUF_FLOAT32, (uint64_t)n);
        for (int i = 0; i < n; i++) gb_f32(b, -(float)i);
    }
    if (n_merges > 0) {
        gb_kv_arr(b, "tokenizer.ggml.merges", AR_GGUF_STRING, (uint64_t)n_merges);
        for (int i = 0; i < n_merges; i++) gb_str(b, merges[i]);
    }
    if (add_space_prefix >= 0) {
        gb_str(b, "tokenizer.ggml.add_space_prefix");
        gb_u32(b, 7); /* bool */
        gb_u8(b, (uint8_t)add_space_prefix);
    }
    gb_str(b, "general.architecture");
    gb_u32(b, 8);
    gb_str(b, "llama");
}

static void expect_ids(const ar_vocab *v, const char *text, bool parse, const char *want) {
    int32_t ids[32];
    int64_t n = ar_tokenize(v, text, strlen(text), false, parse, ids, 32);
    cr_assert_geq(n, 0, "%s", ar_last_error());
    cr_expect_str_eq(fmt_ids(ids, n), want, "'%s'", text);
}

/* Llama 3's pre-tokenizer name sets ignore_merges (llama.cpp, like HF's "ignore_merges": true
 * in Llama 3's tokenizer.json): a pre-token that is a whole vocabulary entry is that token even
 * when the merges would not build it. The GPT-2 names merge as usual. */
Test(tokenizer, llama3_ignore_merges) {
    static const char *const toks[] = {"a", "b", "c", "ab", "abc"};
    static const int types[] = {1, 1, 1, 1, 1};
    static const char *const merges[] = {"a b"};
    const char *pres[] = {"llama-bpe", "gpt-2"};
    const char *want[] = {"4", "3 2"};
    for (int k = 0; k < 2; k++) {
        gb_buf b;
        ar_gguf *g;
        ar_vocab *v;
        build_vocab_ex(&b, "gpt2", pres[k], toks, types, 5, merges, 1, -1);
        cr_assert_eq(load_built(&b, &g, &v), AR_OK, "%s", ar_last_error());
        expect_ids(v, "abc", false, want[k]);
        ar_vocab_free(v);
        ar_gguf_close(g);
        gb_free(&b);
    }
}

/* Gemma's SPM vocabulary says add_space_prefix = false: no dummy "▁" before the text or after a
 * special token; spaces the text has are still "▁" (SentencePiece with add_dummy_prefix off). */
Test(tokenizer, spm_without_space_prefix) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "H", "i", "Hi",
                                       "\xe2\x96\x81Hi", "<start_of_turn>", "\xe2\x96\x81H"};
    static const int types[] = {2, 3, 3, 1, 1, 1, 1, 1, 3, 1};
    const int flags[] = {1, 0};
    const char *want_plain[] = {"7", "6"}, *want_special[] = {"8 7", "8 6"};
    for (int k = 0; k < 2; k++) {
        gb_buf b;
        ar_gguf *g;
        ar_vocab *v;
        build_vocab_ex(&b, "llama", NULL, toks, types, 10, NULL, 0, flags[k]);
        cr_assert_eq(load_built(&b, &g, &v), AR_OK, "%s", ar_last_error());
        expect_ids(v, "Hi", false, want_plain[k]);
        expect_ids(v, "<start_of_turn>Hi", true, want_special[k]);
        expect_ids(v, " Hi", false, k ? "7" : "3 7");
        expect_ids(v, "Hi Hi", false, k ? "6 7" : "7 7");
        ar_vocab_free(v);
        ar_gguf_close(g);
        gb_free(&b);
    }
}
