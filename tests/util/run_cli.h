/* run_cli.h: runs the `arbor` binary (ARBOR_CLI) the way a user would, without a shell: stdin
 * from /dev/null, stdout and stderr captured, a time limit, and the child's wall time and peak
 * resident memory (VmHWM, from wait4's rusage). */
#ifndef ARBOR_TEST_RUN_CLI_H
#define ARBOR_TEST_RUN_CLI_H

#include <stdbool.h>
#include <stddef.h>

typedef struct run_result {
    int exit_code; /* -1 when killed by a signal */
    int signal;
    bool timed_out;
    long max_rss_kb;
    double seconds;
    char out[1 << 16], err[1 << 14];
    size_t n_out, n_err;
} run_result;

/* Runs ARBOR_CLI with args (NULL-terminated, argv[0] excluded); the result is valid until the
 * next call (one run at a time; its large buffers stay off the stack). Asserts the run could be
 * started and reaped. */
run_result *run_cli(int timeout_s, const char *const *args);

#endif
