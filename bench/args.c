/* args.c: flag-value parsing and error printing shared by the subcommands and benchmarks. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

bool cli_parse_size(const char *flag, const char *v, uint64_t of, uint64_t *out) {
    if (!v) return cli_error(0, "%s needs a value", flag), false;
    char *end;
    errno = 0;
    const double x = strtod(v, &end);
    if (end == v || errno || !isfinite(x) || x < 0 || *v == '-')
        return cli_error(0, "invalid value '%s' for %s: not a size", v, flag), false;
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1},        {"B", 1},      {"K", 1024.0},     {"KiB", 1024.0},
                 {"KB", 1e3},    {"M", 1048576.0}, {"MiB", 1048576.0}, {"MB", 1e6},
                 {"G", 1073741824.0}, {"GiB", 1073741824.0}, {"GB", 1e9},
                 {"T", 1099511627776.0}, {"TiB", 1099511627776.0}, {"TB", 1e12}};
    double bytes = -1;
    if (!strcmp(end, "%")) {
        if (!of)
            return cli_error(0, "invalid value '%s' for %s: a percentage needs a model to be "
                                "relative to",
                             v, flag),
                   false;
        bytes = x / 100.0 * (double)of;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0] && bytes < 0; i++)
        if (!strcmp(end, units[i].unit)) bytes = x * units[i].mult;
    if (bytes < 0)
        return cli_error(0, "invalid value '%s' for %s: unknown unit '%s' (K, M, G, KiB, MiB, "
                            "GiB, KB, MB, GB%s)",
                         v, flag, end, of ? " or %" : ""),
               false;
    if (bytes >= 18446744073709551615.0)
        return cli_error(0, "invalid value '%s' for %s: too large", v, flag), false;
    *out = (uint64_t)bytes;
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
