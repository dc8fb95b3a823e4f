/* cli_util.c: flag-value parsing and error printing shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int cli_error(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("arbor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

bool cli_parse_i64(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!v) return cli_error(0, "%s needs a value", flag), false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno)
        return cli_error(0, "invalid value '%s' for %s: not an integer", v, flag), false;
    if (x < lo || x > hi)
        return cli_error(0, "invalid value '%s' for %s: must be in [%lld, %lld]", v, flag,
                         (long long)lo, (long long)hi),
               false;
    *out = x;
    return true;
}

bool cli_parse_u64(const char *flag, const char *v, uint64_t *out) {
    if (!v) return cli_error(0, "%s needs a value", flag), false;
    char *end;
    errno = 0;
    if (*v == '-') return cli_error(0, "invalid value '%s' for %s: negative", v, flag), false;
    unsigned long long x = strtoull(v, &end, 0);
    if (end == v || *end || errno)
        return cli_error(0, "invalid value '%s' for %s: not an unsigned integer", v, flag), false;
    *out = x;
    return true;
}

bool cli_parse_f32(const char *flag, const char *v, float lo, float hi, float *out) {
    if (!v) return cli_error(0, "%s needs a value", flag), false;
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (end == v || *end || errno || !isfinite(x))
        return cli_error(0, "invalid value '%s' for %s: not a number", v, flag), false;
    if (x < lo || x > hi)
        return cli_error(0, "invalid value '%s' for %s: must be in [%g, %g]", v, flag, lo, hi),
               false;
    *out = x;
    return true;
}
