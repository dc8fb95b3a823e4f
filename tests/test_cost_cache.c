/* test_cost_cache.c: the adaptive scheduler's cost table kept between runs. A context without a
 * cache entry starts with a plain step that times the verifier (no calibration passes) and
 * writes its refined table after the generation; the next context with the same files and
 * settings starts from that table (its first step speculates); an entry for other settings, a
 * corrupt entry or one of an older file is never used: it is ignored with a warning and
 * rewritten. Output is the verifier's in every case. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arbor.h"
#include "util/gguf_build.h"
#include "util/refs.h"

static char *cache_root; /* $XDG_CACHE_HOME for this test */

static void setup(void) {
    cache_root = gb_tmpdir();
    setenv("XDG_CACHE_HOME", cache_root, 1);
}
static void teardown(void) {
    char costs[1024], arbor[512];
    snprintf(arbor, sizeof arbor, "%s/arbor", cache_root);
    snprintf(costs, sizeof costs, "%s/costs", arbor);
    gb_rmdir(costs);
    gb_rmdir(arbor);
    gb_rmdir(cache_root);
    free(cache_root);
}

/* The one entry in the costs directory (NULL when there is none). */
static char *entry(void) {
    static char path[1024];
    char dir[512];
    snprintf(dir, sizeof dir, "%s/arbor/costs", cache_root);
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *found = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        cr_assert_null(found, "one entry per key: %s and %s", found, e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        found = path;
    }
    closedir(d);
    return found;
}

typedef struct run {
    const char *first_reason;
    char reason[128];
    int steps;
    arbor_token tokens[64];
    int n;
} run;

static void on_step(void *user, const arbor_step_trace *t) {
    run *r = user;
    if (r->steps++ == 0) snprintf(r->reason, sizeof r->reason, "%s", t->reason);
}

static bool collect(void *user, arbor_token token, const char *text, size_t len) {
    (void)text, (void)len;
    run *r = user;
    if (token >= 0 && r->n < 64) r->tokens[r->n++] = token;
    return true;
}

static char warnings[4096];
static void on_log(void *user, arbor_log_level level, const char *message) {
    (void)user;
    if (level == ARBOR_LOG_WARN) {
        strncat(warnings, message, sizeof warnings - strlen(warnings) - 2);
        strcat(warnings, "\n");
    }
}

static void generate(const char *target, const char *draft, run *r) {
    arbor_model *tm = NULL, *dm = NULL;
    cr_assert_eq(arbor_model_load(target, arbor_model_default_params(), &tm), ARBOR_OK);
    cr_assert_eq(arbor_model_load(draft, arbor_model_default_params(), &dm), ARBOR_OK);
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = 1;
    cp.draft_kind = ARBOR_DRAFT_MODEL;
    cp.draft_model = dm;
    cp.trace = on_step;
    cp.trace_user = r;
    arbor_context *c = NULL;
    cr_assert_eq(arbor_context_create(tm, cp, &c), ARBOR_OK, "%s", arbor_last_error());
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = 40;
    gp.ignore_eos = true;
    gp.sampling.temp = 0.0f;
    memset(r, 0, sizeof *r);
    cr_assert_eq(arbor_generate(c, "Once upon a time", &gp, collect, r), ARBOR_OK, "%s",
                 arbor_last_error());
    arbor_context_free(c);
    arbor_model_free(dm);
    arbor_model_free(tm);
}

#define STARTS "plain: timing the verifier to start the cost table"

Test(cost_cache, kept_between_runs_and_never_trusted_blindly, .init = setup, .fini = teardown,
     .timeout = 120) {
    arbor_set_log(on_log, NULL);
    /* a private copy of the verifier, so that it can be "rewritten" below */
    size_t size;
    uint8_t *bytes = read_whole(fixture("models/llama2xs-260K-q4_0.gguf"), &size);
    cr_assert(bytes);
    char *target = gb_write_file(cache_root, "verifier.gguf", bytes, size);
    const char *draft = fixture("models/stories260K-f32.gguf");

    run first, second;
    cr_assert_null(entry(), "a fresh cache is empty");
    generate(target, draft, &first);
    cr_assert_str_eq(first.reason, STARTS, "no entry: the first step starts the table");
    char *path = entry();
    cr_assert(path, "the generation wrote its table");
    size_t n;
    char *text = (char *)read_whole(path, &n);
    cr_assert(text && !strncmp(text, "key v1 arbor ", 13) && strstr(text, "\nverify 1 ") &&
                  strstr(text, "\ndraft 256 "),
              "%s", text ? text : "(unreadable)");
    cr_assert(strstr(text, "\nacceptance\naccept 0 ") && strstr(text, "\naccept 9 ") &&
                  strstr(text, "\nfirst "),
              "the acceptance model is kept too: %s", text);
    free(text);

    generate(target, draft, &second);
    cr_assert_str_neq(second.reason, STARTS, "the entry is used: the first step is not timing");
    cr_assert_eq(second.n, first.n);
    cr_assert_eq(memcmp(second.tokens, first.tokens, sizeof first.tokens), 0);

    /* corrupt: ignored with a warning, and rewritten whole by the run */
    FILE *f = fopen(path, "w");
    fputs("key v1 arbor garbage\nverify 1 -3\n", f);
    fclose(f);
    warnings[0] = 0;
    generate(target, draft, &second);
    cr_assert(strstr(warnings, "cost cache"), "warned: [%s]", warnings);
    cr_assert_str_eq(second.reason, STARTS, "a bad entry is not trusted");
    cr_assert_eq(memcmp(second.tokens, first.tokens, sizeof first.tokens), 0);
    text = (char *)read_whole(path, &n);
    cr_assert(text && strstr(text, "\ndraft 256 "), "rewritten: %s", text ? text : "");
    free(text);

    /* a value out of range inside an entry with the right key: ignored as well */
    text = (char *)read_whole(path, &n);
    char *v = strstr(text, "\nverify 2 ");
    cr_assert(v);
    v[9] = '-';
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    warnings[0] = 0;
    generate(target, draft, &second);
    cr_assert(strstr(warnings, "cost cache"), "warned: [%s]", warnings);
    cr_assert_str_eq(second.reason, STARTS);

    /* an acceptance count out of range (more accepted than proposed): ignored as well */
    generate(target, draft, &second); /* a good entry again */
    text = (char *)read_whole(path, &n);
    char *fl = strstr(text, "\nfirst ");
    cr_assert(fl);
    f = fopen(path, "w");
    fwrite(text, 1, (size_t)(fl - text), f);
    fputs("\nfirst 9 2\n", f);
    fclose(f);
    free(text);
    warnings[0] = 0;
    generate(target, draft, &second);
    cr_assert(strstr(warnings, "cost cache") && strstr(warnings, "acceptance"), "warned: [%s]",
              warnings);
    cr_assert_str_eq(second.reason, STARTS);

    /* the verifier file rewritten (its identity changes): the old entry is not its */
    free(gb_write_file(cache_root, "verifier.gguf", bytes, size));
    generate(target, draft, &second);
    cr_assert_str_eq(second.reason, STARTS, "a rewritten model file gets a table of its own");
    cr_assert_eq(memcmp(second.tokens, first.tokens, sizeof first.tokens), 0);
    arbor_set_log(NULL, NULL);
    unlink(target);
    free(target);
    free(bytes);
}
