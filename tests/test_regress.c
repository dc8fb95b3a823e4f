/* test_regress.c: replays the inputs kept in tests/regress/<harness>/ (each one made a fuzz
 * harness crash, leak or break an invariant before its bug was fixed; tests/regress/README.md
 * lists them) through the very harness that found it: the harness sources (tests/fuzz/) are
 * included here with their entry points renamed, so the replay runs the fuzzed code, built by
 * the ordinary compiler and, in the sanitizer build, under AddressSanitizer and UBSan. A harness
 * signals failure by aborting, which fails the test. Also replays each harness's seed-like
 * inputs that need no fixture files, so the harnesses themselves stay compiled and working. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ENTRY fuzz_gguf_entry
#include "tests/fuzz/fuzz_gguf.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_model_entry
#include "tests/fuzz/fuzz_model.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_treespec_entry
#include "tests/fuzz/fuzz_treespec.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_cli_entry
#include "tests/fuzz/fuzz_cli.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_tokenize_entry
#include "tests/fuzz/fuzz_tokenize.c"
#undef FUZZ_ENTRY

#define REGRESS ARBOR_SOURCE_DIR "/tests/regress/"

/* Under AddressSanitizer, LeakSanitizer checks each replay for leaks (at exit it would be too
 * late: the test has already passed by then). */
#if defined(__SANITIZE_ADDRESS__)
#define REGRESS_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REGRESS_LSAN 1
#endif
#endif
#ifdef REGRESS_LSAN
#include <sanitizer/lsan_interface.h>
static bool leaked(void) {
    return __lsan_do_recoverable_leak_check() != 0;
}
#else
static bool leaked(void) {
    return false;
}
#endif

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    uint8_t *d = malloc(cap);
    size_t k;
    while (d && (k = fread(d + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) d = realloc(d, cap *= 2);
    }
    cr_assert(d);
    fclose(f);
    *n = len;
    return d;
}

/* Runs every file in tests/regress/<dir>/ through `entry`; returns how many. */
static int replay_dir(const char *dir, int (*entry)(const uint8_t *, size_t)) {
    char path[4096];
    snprintf(path, sizeof path, REGRESS "%s", dir);
    DIR *dp = opendir(path);
    if (!dp) return 0; /* no input kept for this harness */
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, REGRESS "%s/%s", dir, e->d_name);
        size_t size;
        uint8_t *data = read_all(path, &size);
        fprintf(stderr, "replaying %s/%s (%zu bytes)\n", dir, e->d_name, size);
        bool leaked_before = leaked();
        cr_expect_eq(entry(data, size), 0, "%s", path);
        free(data);
        cr_expect(leaked_before || !leaked(), "%s: memory leaked", path);
        n++;
    }
    closedir(dp);
    return n;
}

/* The subcommands print usage and errors: keep the test output readable. */
static void quiet(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
}

Test(regress, gguf) {
    replay_dir("gguf", fuzz_gguf_entry);
}
Test(regress, model) {
    replay_dir("model", fuzz_model_entry);
}
Test(regress, treespec) {
    replay_dir("treespec", fuzz_treespec_entry);
}
Test(regress, cli, .init = quiet) {
    replay_dir("cli", fuzz_cli_entry);
}
Test(regress, tokenize) {
    replay_dir("tokenize", fuzz_tokenize_entry);
}

/* Each harness accepts ordinary input (and the trivial one) without complaint. */
Test(regress, harnesses_run, .init = quiet) {
    static const char spec[] = "static:4x2x1";
    cr_expect_eq(fuzz_treespec_entry((const uint8_t *)spec, sizeof spec - 1), 0);
    static const char cli[] = "\0-m\0x.gguf\0-p\0hi\0-n\0"
                              "4";
    cr_expect_eq(fuzz_cli_entry((const uint8_t *)cli, sizeof cli - 1), 0);
    cr_expect_eq(fuzz_gguf_entry((const uint8_t *)"", 0), 0);
    cr_expect_eq(fuzz_model_entry((const uint8_t *)"GGUF", 4), 0);
    static const char text[] = "\0Hello world";
    cr_expect_eq(fuzz_tokenize_entry((const uint8_t *)text, sizeof text - 1), 0);
    size_t size;
    uint8_t *model = read_all(ARBOR_FIXTURES "/models/stories260K-f32.gguf", &size);
    cr_expect_eq(fuzz_gguf_entry(model, size), 0);
    cr_expect_eq(fuzz_model_entry(model, size), 0);
    free(model);
}
