/* test_cli_generate.c: `arbor generate --temp 0 --ignore-eos -n 64` prints exactly llama.cpp's
 * greedy text for every prompt of the real F32 models, plain and speculative (stdout carries
 * only the generated text). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/util/refs.h"

/* runs the CLI with the prompt in a file (prompts may hold any byte), returns stdout */
static char *run_cli(const char *model, const char *extra, const char *prompt, size_t plen,
                     size_t *out_len) {
    char pf[] = "/tmp/arbor-prompt-XXXXXX";
    int fd = mkstemp(pf);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    fwrite(prompt, 1, plen, f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s generate -m %s -f %s -n 64 --temp 0 --ignore-eos -t 1 %s 2>/dev/null",
             ARBOR_CLI, model, pf, extra);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + len, 1, cap - len - 1, p)) > 0) len += k;
    int rc = pclose(p);
    unlink(pf);
    cr_assert_eq(rc, 0, "%s exited with %d", cmd, rc);
    buf[len] = 0;
    *out_len = len;
    return buf;
}

static void check(const char *stem, const char *extra) {
    ref_file ref;
    cr_assert(ref_load(stem, &ref));
    char rel[300];
    snprintf(rel, sizeof rel, "models/%s", ref.model);
    char model[1024];
    snprintf(model, sizeof model, "%s", fixture(rel));
    char extra_abs[1200] = "";
    if (extra && strstr(extra, "DRAFT=")) {
        snprintf(rel, sizeof rel, "models/%s", strstr(extra, "DRAFT=") + 6);
        snprintf(extra_abs, sizeof extra_abs, "-md %s", fixture(rel));
    } else if (extra) {
        snprintf(extra_abs, sizeof extra_abs, "%s", extra);
    }
    for (int c = 0; c < ref.n_cases; c++) {
        size_t len;
        char *out = run_cli(model, extra_abs, ref.cases[c].prompt, ref.cases[c].prompt_len, &len);
        cr_expect(len == ref.cases[c].greedy_text_len &&
                      !memcmp(out, ref.cases[c].greedy_text, len),
                  "%s case %d %s:\n got: %s\nwant: %s", stem, c, extra_abs, out,
                  ref.cases[c].greedy_text);
        free(out);
    }
    ref_free(&ref);
}

Test(cli_generate, stories260K) { check("stories260K-f32", NULL); }
Test(cli_generate, llama2xs) { check("llama2xs-260K-f32", NULL); }
Test(cli_generate, aidreams) { check("aidreams260K-f32", NULL); }
Test(cli_generate, llama2xs_speculative) { check("llama2xs-260K-f32", "DRAFT=stories260K-f32.gguf"); }
Test(cli_generate, stories_self_and_lookup) {
    check("stories260K-f32", "-md self:2 --tree chain:3");
    check("stories260K-f32", "-md lookup");
}
