/* cli.h: the `arbor` command-line tool's subcommands. Each lives in cmd_<name>.c and takes the
 * arguments after its name (argv[0] is the subcommand). They return the process exit status:
 * 0 success, 1 runtime failure, 2 usage error. Errors are one line on stderr, "arbor: ...". */
#ifndef ARBOR_CLI_H
#define ARBOR_CLI_H

#include <stdbool.h>
#include <stdint.h>

int cmd_generate(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_topo(int argc, char **argv);

/* Strict number parsing for flag values: the whole string must be a number in [lo, hi].
 * On failure prints "arbor: invalid value 'v' for flag: reason" and returns false. */
bool cli_parse_i64(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_u64(const char *flag, const char *v, uint64_t *out);
bool cli_parse_f32(const char *flag, const char *v, float lo, float hi, float *out);
/* A size in bytes: a number with an optional unit, K/M/G/T (or KiB/MiB/GiB/TiB: powers of
 * 1024) or KB/MB/GB/TB (powers of 1000), e.g. "450M", "1.5GiB", "450MB", "4096". With
 * `of` > 0 a percentage of it is accepted too ("25%"). */
bool cli_parse_size(const char *flag, const char *v, uint64_t of, uint64_t *out);
/* Prints "arbor: <message>" on stderr; returns `status` for `return cli_error(1, ...)`. */
int cli_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
