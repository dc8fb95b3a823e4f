/* args.h: strict flag-value parsing and one-line errors for the `arbor` tool's subcommands and
 * the benchmarks (the benchmarks are the lower of the two layers: the tool runs them, so the
 * helpers they share live here). */
#ifndef ARBOR_ARGS_H
#define ARBOR_ARGS_H

#include <stdbool.h>
#include <stdint.h>

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
