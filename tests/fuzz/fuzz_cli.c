/* fuzz_cli.c: libFuzzer harness for the command-line flag parsing of `arbor generate`,
 * `arbor tokenize` and `arbor info` (src/cli/). Input: one byte choosing the subcommand, then
 * its arguments separated by NUL bytes. Files are never touched: every value of a path flag
 * (-m, -md, -f) and every positional argument of `info` is replaced by a path that does not
 * exist (or /dev/null for prompt files), so each run ends right after parsing, when the model
 * fails to open. The subcommand must return a status rather than exit or crash: 1 or 2, or 0
 * for --help (and for `info` flags that need no file). Run with -close_fd_mask=3: the
 * subcommands print usage and errors. */
#include <string.h>

#include "src/cli/cli.h"
#include "tests/fuzz/fuzz.h"

#define FZ_CLI_MAX_ARGS 64
#define FZ_CLI_NO_MODEL "/nonexistent/arbor-fuzz/model.gguf"

static bool fz_cli_is(const char *a, const char *x, const char *y) {
    return !strcmp(a, x) || (y && !strcmp(a, y));
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1 || size > 8192) return 0;
    static const char *const names[] = {"generate", "tokenize", "info"};
    int cmd = data[0] % 3;
    /* NUL-separated arguments, in a NUL-terminated copy */
    char *buf = malloc(size);
    FZ_CHECK(buf != NULL);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *argv[FZ_CLI_MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)names[cmd];
    for (size_t at = 0; at < size - 1 && argc <= FZ_CLI_MAX_ARGS;) {
        argv[argc++] = buf + at;
        at += strlen(buf + at) + 1;
    }
    argv[argc] = NULL;
    static char no_model[] = FZ_CLI_NO_MODEL, dev_null[] = "/dev/null";
    bool help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        help |= fz_cli_is(a, "-h", "--help");
        if (cmd == 2) { /* info: every positional argument is a path */
            if (a[0] != '-' || a[1] == 0) argv[i] = no_model;
            continue;
        }
        if (i + 1 >= argc) continue;
        if (fz_cli_is(a, "-m", "--model") || fz_cli_is(a, "-md", "--model-draft"))
            argv[i + 1] = no_model;
        else if (fz_cli_is(a, "-f", "--file"))
            argv[i + 1] = dev_null;
    }
    int (*fn[])(int, char **) = {cmd_generate, cmd_tokenize, cmd_info};
    int rc = fn[cmd](argc, argv);
    /* without a model only --help succeeds (info has flags that need no file, like --cpu) */
    FZ_CHECK(rc == 1 || rc == 2 || (rc == 0 && (help || cmd == 2)));
    free(buf);
    return 0;
}
