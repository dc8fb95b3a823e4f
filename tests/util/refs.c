/* refs.c: parsing the reference output files of the fixtures. */
#include "refs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ARBOR_FIXTURES
#define ARBOR_FIXTURES "../shared/fixtures"
#endif

const char *fixture(const char *rel) {
    static _Thread_local char buf[8][1024];
    static _Thread_local int next;
    char *b = buf[next++ % 8];
    const char *env = getenv("ARBOR_FIXTURES");
    snprintf(b, 1024, "%s/%s", env ? env : ARBOR_FIXTURES, rel);
    return b;
}

uint8_t *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        *len = (size_t)n;
    }
    return b;
}

size_t ref_unescape(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] == '\\' && s[i + 1] == '\\') {
            s[o++] = '\\';
            i += 2;
        } else if (s[i] == '\\' && s[i + 1] == 'x' && s[i + 2] && s[i + 3]) {
            char hex[3] = {s[i + 2], s[i + 3], 0};
            s[o++] = (char)strtol(hex, NULL, 16);
            i += 4;
        } else {
            s[o++] = s[i++];
        }
    }
    s[o] = 0;
    return o;
}

static int32_t *parse_ids(const char *p, int32_t *n) {
    int32_t cap = 16, k = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    char *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (k == cap) ids = realloc(ids, sizeof(int32_t) * (size_t)(cap *= 2));
        ids[k++] = (int32_t)v;
        p = end;
    }
    *n = k;
    return ids;
}

static char *dup_value(const char *line, size_t keylen) {
    const char *v = line + keylen;
    if (*v == ' ') v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == '\n' || v[n - 1] == '\r')) n--;
    char *s = malloc(n + 1);
    memcpy(s, v, n);
    s[n] = 0;
    return s;
}

bool ref_load(const char *stem, ref_file *r) {
    memset(r, 0, sizeof *r);
    char rel[512];
    snprintf(rel, sizeof rel, "reference/%s.ref.txt", stem);
    FILE *f = fopen(fixture(rel), "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", fixture(rel));
        return false;
    }
    static char line[1 << 16];
    ref_case *c = NULL;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
#define KEY(k) (!strncmp(line, k " ", strlen(k) + 1) || !strcmp(line, k "\n"))
        if (KEY("model")) {
            sscanf(line, "model %255s", r->model);
        } else if (KEY("n_vocab")) {
            r->n_vocab = atoi(line + 8);
        } else if (KEY("n_ctx")) {
            r->n_ctx = atoi(line + 6);
        } else if (KEY("case")) {
            if (r->n_cases == REF_MAX_CASES) break;
            c = &r->cases[r->n_cases++];
        } else if (c && KEY("prompt")) {
            c->prompt = dup_value(line, 6);
            c->prompt_len = ref_unescape(c->prompt);
        } else if (c && KEY("n_prompt")) {
            c->n_prompt = atoi(line + 9);
        } else if (c && KEY("prompt_ids")) {
            int32_t n;
            c->prompt_ids = parse_ids(line + 10, &n);
        } else if (c && KEY("top")) {
            c->rows = realloc(c->rows, sizeof(ref_row) * (size_t)(c->n_rows + 1));
            ref_row *row = &c->rows[c->n_rows++];
            char *p = line + 4, *end;
            row->pos = (int32_t)strtol(p, &end, 10);
            row->input = (int32_t)strtol(end, &end, 10);
            for (int k = 0; k < REF_TOPK; k++) {
                row->id[k] = (int32_t)strtol(end, &end, 10);
                if (*end == ':') end++;
                row->logit[k] = strtof(end, &end);
            }
        } else if (c && KEY("greedy_ids")) {
            c->greedy_ids = parse_ids(line + 10, &c->n_gen);
        } else if (c && KEY("greedy_text")) {
            c->greedy_text = dup_value(line, 11);
            c->greedy_text_len = ref_unescape(c->greedy_text);
        } else if (c && KEY("raw_last")) {
            sscanf(line, "raw_last %255s", c->raw_last);
        }
#undef KEY
    }
    fclose(f);
    return r->n_cases > 0;
}

void ref_free(ref_file *r) {
    for (int i = 0; i < r->n_cases; i++) {
        ref_case *c = &r->cases[i];
        free(c->prompt);
        free(c->prompt_ids);
        free(c->rows);
        free(c->greedy_ids);
        free(c->greedy_text);
    }
    memset(r, 0, sizeof *r);
}
