/* bench_tokenize.c: `arbor bench tokenize -m MODEL.gguf [-f FILE]`: tokenizer throughput. Without
 * -f it tokenizes ~1 MB of English-like text built deterministically from a word list (the same
 * bytes on every run), so numbers from different machines and commits compare. Reports the best
 * of several runs for tokenization and for detokenization (piece by piece). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/args.h"
#include "src/core/gguf.h"
#include "src/tokenizer/vocab.h"

int bench_tokenize(int argc, char **argv);

#define SYNTH_BYTES (1u << 20)
#define RUNS        5

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Sentences of common words with capitals, commas, numbers, quotes, an apostrophe now and then
 * and paragraph breaks: the mix of pre-tokenizer paths real prose takes. */
static char *synthesize_text(size_t *len) {
    static const char *const words[] = {
        "the",     "a",      "little",   "dog",    "saw",      "big",    "red",   "ball",
        "and",     "she",    "he",       "was",    "very",     "happy",  "to",    "play",
        "with",    "it",     "one",      "day",    "went",     "park",   "tree",  "under",
        "friend",  "said",   "they",     "sun",    "shining",  "time",   "upon",  "once",
        "mom",     "found",  "flower",   "garden", "because",  "wanted", "could", "not",
        "of",      "in",     "on",       "for",    "small",    "bird",   "house", "water",
        "quickly", "looked", "around",   "smiled", "together", "forest", "river", "morning",
        "don't",   "it's",   "couldn't", "we're",  "naïve",    "café",   "über",  "year"};
    const size_t n_words = sizeof words / sizeof words[0];
    char *buf = malloc(SYNTH_BYTES + 256);
    if (!buf) return NULL;
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    size_t n = 0;
    int in_sentence = 0;
    while (n < SYNTH_BYTES) {
        uint64_t r = xorshift(&seed);
        const char *w = words[r % n_words];
        if (in_sentence == 0) {
            if (r % 11 == 0) buf[n++] = '"';
            n += (size_t)snprintf(buf + n, 64, "%c%s",
                                  w[0] >= 'a' && w[0] <= 'z' ? w[0] - 32 : w[0], w + 1);
        } else if ((r >> 20) % 23 == 0) {
            n += (size_t)snprintf(buf + n, 64, " %u", (unsigned)((r >> 32) % 100000));
        } else {
            n += (size_t)snprintf(buf + n, 64, " %s", w);
        }
        in_sentence++;
        if ((r >> 8) % 13 == 0 && in_sentence > 2) buf[n++] = ',';
        if (in_sentence > 4 && (r >> 16) % 7 == 0) {
            buf[n++] = "..!?."[(r >> 40) % 5];
            if (r % 11 == 0) buf[n++] = '"';
            buf[n++] = (r >> 44) % 9 == 0 ? '\n' : ' ';
            in_sentence = 0;
        }
    }
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

int bench_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: arbor bench tokenize -m MODEL.gguf [-f FILE]");
            return 0;
        } else {
            return cli_error(2,
                             "bench tokenize: unknown argument '%s' "
                             "(usage: arbor bench tokenize -m MODEL.gguf [-f FILE])",
                             argv[i]);
        }
    }
    if (!model) return cli_error(2, "bench tokenize: -m MODEL.gguf is required");

    size_t len;
    char *text = file ? read_file(file, &len) : synthesize_text(&len);
    if (!text) return cli_error(1, file ? "%s: cannot read" : "out of memory", file);

    int status = 1;
    ar_gguf *g = NULL;
    ar_vocab *v = NULL;
    int32_t *ids = NULL;
    char *piece = NULL;
    if (ar_gguf_open(model, &g) != AR_OK || ar_vocab_load(g, &v) != AR_OK) {
        cli_error(1, "%s", ar_last_error());
        goto done;
    }
    /* the first call also builds the Unicode tables: not part of the measurement */
    int64_t n = ar_tokenize(v, text, len, true, false, NULL, 0);
    if (n < 0 || !(ids = malloc((size_t)(n ? n : 1) * sizeof *ids))) {
        cli_error(1, "%s", n < 0 ? ar_last_error() : "out of memory");
        goto done;
    }
    double best_tok = 1e30, best_detok = 1e30;
    size_t out_bytes = 0;
    for (int run = 0; run < RUNS; run++) {
        double t0 = ar_now();
        ar_tokenize(v, text, len, true, false, ids, n);
        double t1 = ar_now();
        if (t1 - t0 < best_tok) best_tok = t1 - t0;
    }
    int32_t cap = 1 << 16;
    piece = malloc((size_t)cap);
    if (!piece) goto done;
    for (int run = 0; run < RUNS; run++) {
        ar_detok d = {0};
        out_bytes = 0;
        double t0 = ar_now();
        for (int64_t i = 0; i < n; i++) {
            int32_t k = ar_detok_push(&d, v, ids[i], piece, cap);
            if (k > 0) out_bytes += (size_t)k;
        }
        out_bytes += (size_t)ar_detok_flush(&d, piece, cap);
        double t1 = ar_now();
        if (t1 - t0 < best_detok) best_detok = t1 - t0;
    }
    double mb = (double)len / 1e6;
    printf(
        "tokenize:   %.2f MB (%s), %lld tokens, best of %d: %.3f s = %.2f MB/s, %.2f M tokens/s\n",
        mb, file ? file : "synthetic English", (long long)n, RUNS, best_tok, mb / best_tok,
        (double)n / 1e6 / best_tok);
    printf("detokenize: %lld tokens -> %.2f MB, best of %d: %.3f s = %.2f M tokens/s\n",
           (long long)n, (double)out_bytes / 1e6, RUNS, best_detok, (double)n / 1e6 / best_detok);
    status = 0;
done:
    free(piece);
    free(ids);
    ar_vocab_free(v);
    ar_gguf_close(g);
    free(text);
    return status;
}
