/* fuzz_tokenize.c: libFuzzer harness for the tokenizers (src/vocab*.c) on the fixture
 * vocabularies: SentencePiece-style (ggml-vocab-llama-spm) and byte-level BPE (ggml-vocab-gpt-2).
 * Input: one byte choosing the vocabulary and the flags, then the text. Checked: the count call
 * and the filling call agree, a short buffer is never overrun, every id is in the vocabulary,
 * every id prints, and for byte-level BPE without special tokens, detokenizing gives back the
 * text exactly when it is valid UTF-8 (the property llama.cpp's test-tokenizer-1-bpe checks). */
#include <string.h>

#include "src/tokenizer/vocab.h"
#include "tests/fuzz/fuzz.h"

#ifndef ARBOR_FIXTURES
#error "ARBOR_FIXTURES (the fixtures directory) must be defined"
#endif

static const char *const fz_tok_files[] = {
    ARBOR_FIXTURES "/tokenizer/ggml-vocab-llama-spm.gguf",
    ARBOR_FIXTURES "/tokenizer/ggml-vocab-gpt-2.gguf",
};
#define FZ_TOK_N (sizeof fz_tok_files / sizeof fz_tok_files[0])

static ar_gguf *fz_tok_gguf[FZ_TOK_N];
static ar_vocab *fz_tok_vocab[FZ_TOK_N];

static const ar_vocab *fz_tok_get(size_t i) {
    if (!fz_tok_vocab[i]) {
        if (ar_gguf_open(fz_tok_files[i], &fz_tok_gguf[i]) != AR_OK ||
            ar_vocab_load(fz_tok_gguf[i], &fz_tok_vocab[i]) != AR_OK) {
            fprintf(stderr, "fuzz_tokenize: %s\n", ar_last_error());
            abort();
        }
    }
    return fz_tok_vocab[i];
}

/* Whether s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static bool fz_tok_valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return false;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    size_t which = data[0] % FZ_TOK_N;
    bool add_special = data[0] & 0x10, parse_special = data[0] & 0x20;
    const ar_vocab *v = fz_tok_get(which);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t n_vocab = ar_vocab_n_tokens(v);

    int64_t n = ar_tokenize(v, text, len, add_special, parse_special, NULL, 0);
    if (n < 0) {
        const char *e = ar_last_error();
        FZ_CHECK(e[0] != 0 && strchr(e, '\n') == NULL);
        return 0;
    }
    FZ_CHECK(n <= 2 * (int64_t)len + 3); /* bounded by the text, not unbounded */
    int32_t *ids = malloc((size_t)(n + 1) * sizeof *ids);
    FZ_CHECK(ids != NULL);
    ids[n] = -12345; /* canary */
    FZ_CHECK(ar_tokenize(v, text, len, add_special, parse_special, ids, n) == n);
    FZ_CHECK(ids[n] == -12345);
    for (int64_t i = 0; i < n; i++) FZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab);
    if (n > 1) { /* a buffer too short gets a prefix and the full count, nothing more */
        int32_t *part = malloc((size_t)n * sizeof *part);
        FZ_CHECK(part != NULL);
        int64_t half = n / 2;
        part[half] = -12345;
        FZ_CHECK(ar_tokenize(v, text, len, add_special, parse_special, part, half) == n);
        FZ_CHECK(part[half] == -12345);
        FZ_CHECK(memcmp(part, ids, (size_t)half * sizeof *ids) == 0);
        free(part);
    }

    /* every id prints, through the streaming detokenizer too */
    size_t cap = 64 + 16 * len + 1024, out_len = 0;
    char *out = malloc(cap), piece[8];
    FZ_CHECK(out != NULL);
    ar_detok dt = {0};
    bool special = parse_special;
    for (int64_t i = 0; i < n; i++) {
        int32_t k = ar_token_to_piece(v, ids[i], special, piece, (int32_t)sizeof piece);
        FZ_CHECK(k >= 0);
        int32_t w = ar_detok_push(&dt, v, ids[i], out + out_len, 1024);
        FZ_CHECK(w >= 0 && w <= 1024);
        out_len += (size_t)w;
        FZ_CHECK(out_len + 1024 <= cap);
    }
    int32_t w = ar_detok_flush(&dt, out + out_len, 64);
    FZ_CHECK(w >= 0);
    out_len += (size_t)w;
    if (ar_vocab_kind_of(v) == AR_VOCAB_BPE && !parse_special && !add_special &&
        fz_tok_valid_utf8((const uint8_t *)text, len)) {
        if (out_len != len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "round trip: %zu bytes in, %zu bytes out: '%.*s'\n", len, out_len,
                    (int)out_len, out);
            FZ_CHECK(!"byte-level BPE detokenizes to the text it tokenized");
        }
    }
    free(out);
    free(ids);
    return 0;
}
