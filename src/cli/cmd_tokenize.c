/* cmd_tokenize.c: `arbor tokenize -m MODEL.gguf -p TEXT`: how a model's tokenizer splits text.
 * Prints one line per token (id and piece, as llama-tokenize does), or with --ids the id list
 * `[1, 2, 3]` in llama-tokenize's --ids format. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/gguf.h"
#include "src/tokenizer/vocab.h"

#define MAX_TEXT_BYTES ((size_t)1 << 30)

static void usage(FILE *out) {
    fputs("usage: arbor tokenize -m MODEL.gguf (-p TEXT | -f FILE) [--ids] [--no-bos]\n"
          "                      [--no-parse-special]\n"
          "Tokenizes TEXT (or the contents of FILE) with the model's tokenizer.\n"
          "  --ids               print only the ids, as [1, 2, 3]\n"
          "  --no-bos            do not add the BOS/EOS tokens the vocabulary asks for\n"
          "  --no-parse-special  text like <s> is plain text, not the special token\n",
          out);
}

/* Reads a whole file (at most MAX_TEXT_BYTES); NULL with *err set on failure. */
static char *read_text_file(const char *path, size_t *len, const char **err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = "cannot open";
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_TEXT_BYTES) {
                *err = "larger than 1 GiB";
                free(buf);
                buf = NULL;
                break;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                *err = "read error";
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    if (!buf && !*err) *err = "out of memory";
    fclose(f);
    *len = n;
    return buf;
}

/* A piece between quotes: printable bytes and UTF-8 as is, others escaped. */
static void print_piece(const char *p, int32_t n) {
    putchar('\'');
    for (int32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\\' || c == '\'')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool ids_only = false, add_special = true, parse_special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "-p") || !strcmp(a, "-f")) {
            if (i + 1 >= argc) return cli_error(2, "%s needs a value", a);
            const char **dst = a[1] == 'm' ? &model : a[1] == 'p' ? &prompt : &file;
            *dst = argv[++i];
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--no-bos")) {
            add_special = false;
        } else if (!strcmp(a, "--no-parse-special")) {
            parse_special = false;
        } else {
            return cli_error(2, "tokenize: unknown argument '%s' (see arbor tokenize --help)", a);
        }
    }
    if (!model) {
        return cli_error(2, "tokenize: -m MODEL.gguf is required (see arbor tokenize --help)");
    }
    if (!!prompt == !!file) {
        return cli_error(2, "tokenize: give the text with exactly one of -p TEXT and -f FILE");
    }

    size_t len = 0;
    char *owned = NULL;
    if (file) {
        const char *err = NULL;
        owned = read_text_file(file, &len, &err);
        if (!owned) return cli_error(1, "%s: %s", file, err);
        prompt = owned;
    } else {
        len = strlen(prompt);
    }

    int status = 1;
    ar_gguf *g = NULL;
    ar_vocab *v = NULL;
    int32_t *ids = NULL;
    if (ar_gguf_open(model, &g) != AR_OK) {
        cli_error(1, "%s", ar_last_error());
        goto done;
    }
    if (ar_vocab_load(g, &v) != AR_OK) {
        cli_error(1, "%s", ar_last_error());
        goto done;
    }
    int64_t n = ar_tokenize(v, prompt, len, add_special, parse_special, NULL, 0);
    if (n < 0) {
        cli_error(1, "%s", ar_last_error());
        goto done;
    }
    ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) {
        cli_error(1, "out of memory for %lld tokens", (long long)n);
        goto done;
    }
    ar_tokenize(v, prompt, len, add_special, parse_special, ids, n);

    if (ids_only) {
        putchar('[');
        for (int64_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)ids[i]);
        puts("]");
    } else {
        char small[256];
        for (int64_t i = 0; i < n; i++) {
            int32_t k = ar_token_to_piece(v, ids[i], true, small, sizeof small);
            char *p = small;
            if (k > (int32_t)sizeof small) { /* a long piece: ask again with room */
                p = malloc((size_t)k);
                if (!p) {
                    cli_error(1, "out of memory");
                    goto done;
                }
                ar_token_to_piece(v, ids[i], true, p, k);
            }
            printf("%6d -> ", (int)ids[i]);
            print_piece(p, k < 0 ? 0 : k);
            putchar('\n');
            if (p != small) free(p);
        }
    }
    status = fflush(stdout) == 0 ? 0 : cli_error(1, "cannot write the output");
done:
    free(ids);
    ar_vocab_free(v);
    ar_gguf_close(g);
    free(owned);
    return status;
}
