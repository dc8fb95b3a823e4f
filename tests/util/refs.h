/* refs.h: reader for the llama.cpp reference outputs in fixtures/reference/<model>.ref.txt
 * (format: fixtures/README.md section 2) and small test helpers shared by the test files. */
#ifndef ARBOR_TEST_REFS_H
#define ARBOR_TEST_REFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REF_TOPK 10
#define REF_MAX_CASES 3

typedef struct ref_row {
    int32_t pos, input;
    int32_t id[REF_TOPK];
    float logit[REF_TOPK];
} ref_row;

typedef struct ref_case {
    char *prompt;        /* unescaped */
    size_t prompt_len;
    int32_t n_prompt;
    int32_t *prompt_ids;
    int32_t n_rows;      /* n_prompt + n_gen */
    ref_row *rows;
    int32_t n_gen;
    int32_t *greedy_ids;
    char *greedy_text;   /* unescaped */
    size_t greedy_text_len;
    char raw_last[256];  /* file name of the .last.f32 row */
} ref_case;

typedef struct ref_file {
    char model[256];
    int32_t n_vocab, n_ctx;
    int n_cases;
    ref_case cases[REF_MAX_CASES];
} ref_file;

/* Parses fixtures/reference/<stem>.ref.txt; returns false (with a message on stderr) on error. */
bool ref_load(const char *stem, ref_file *out);
void ref_free(ref_file *r);
/* Unescapes the fixtures' escaping (\\ and \xHH) in place; returns the new length. */
size_t ref_unescape(char *s);
/* Reads a whole file; NULL on error. */
uint8_t *read_whole(const char *path, size_t *len);
/* ARBOR_FIXTURES "/" rel, in a static buffer per call site (copy it if you keep it). */
const char *fixture(const char *rel);

#endif
