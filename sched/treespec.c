/* treespec.c: parsing and printing tree modes ("chain:4", "static:4x2x1", "dynamic:16",
 * "adaptive"; treespec.h), shared by the CLI, the API and the benchmark harness. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "treespec.h"

static bool parse_count(const char *s, char **end, int64_t lo, int64_t hi, int32_t *out) {
    if (*s < '0' || *s > '9') return false;
    errno = 0;
    long long v = strtoll(s, end, 10);
    if (errno || v < lo || v > hi) return false;
    *out = (int32_t)v;
    return true;
}

static ar_status parse_shape(const char *s, ar_tree_shape *out);

ar_status ar_tree_spec_parse(const char *s, ar_tree_spec *spec) {
    memset(spec, 0, sizeof *spec);
    if (s && !strcmp(s, "adaptive")) {
        spec->adaptive = true;
        spec->shape.mode = AR_TREE_DYNAMIC;
        spec->shape.budget = AR_TREE_MAX - 1;
        return AR_OK;
    }
    return parse_shape(s, &spec->shape);
}

static ar_status parse_shape(const char *s, ar_tree_shape *out) {
    memset(out, 0, sizeof *out);
    const int32_t max_nodes = AR_TREE_MAX - 1; /* root excluded */
    if (!s) return ar_fail(AR_ERR_INVALID_ARG, "tree spec: missing");
    char *end = NULL;
    if (!strncmp(s, "chain:", 6)) {
        if (!parse_count(s + 6, &end, 1, AR_MIN(max_nodes, AR_SPEC_MAX_LEVELS), &out->n_levels) ||
            *end)
            return ar_fail(AR_ERR_INVALID_ARG, "tree spec '%s': chain:K needs K in [1, %d]", s,
                           AR_MIN(max_nodes, AR_SPEC_MAX_LEVELS));
        out->mode = AR_TREE_CHAIN;
        out->budget = out->n_levels;
        for (int i = 0; i < out->n_levels; i++) out->branch[i] = 1;
        return AR_OK;
    }
    if (!strncmp(s, "dynamic:", 8)) {
        if (!parse_count(s + 8, &end, 1, max_nodes, &out->budget) || *end)
            return ar_fail(AR_ERR_INVALID_ARG, "tree spec '%s': dynamic:N needs N in [1, %d]", s,
                           max_nodes);
        out->mode = AR_TREE_DYNAMIC;
        return AR_OK;
    }
    if (!strncmp(s, "static:", 7)) {
        const char *p = s + 7;
        int64_t level_nodes = 1, total = 0;
        for (;;) {
            int32_t b;
            if (out->n_levels == AR_SPEC_MAX_LEVELS)
                return ar_fail(AR_ERR_INVALID_ARG, "tree spec '%s': more than %d levels", s,
                               AR_SPEC_MAX_LEVELS);
            if (!parse_count(p, &end, 1, max_nodes, &b))
                return ar_fail(AR_ERR_INVALID_ARG,
                               "tree spec '%s': static:AxBx... needs counts in [1, %d] at '%s'", s,
                               max_nodes, p);
            level_nodes *= b;
            total += level_nodes;
            if (total > max_nodes)
                return ar_fail(AR_ERR_INVALID_ARG,
                               "tree spec '%s': %lld or more nodes, more than the %d a "
                               "verification batch holds",
                               s, (long long)total, max_nodes);
            out->branch[out->n_levels++] = b;
            if (*end == 0) break;
            if (*end != 'x')
                return ar_fail(AR_ERR_INVALID_ARG, "tree spec '%s': unexpected '%c'", s, *end);
            p = end + 1;
        }
        out->mode = AR_TREE_STATIC;
        out->budget = (int32_t)total;
        return AR_OK;
    }
    return ar_fail(AR_ERR_INVALID_ARG,
                   "tree spec '%s': expected chain:K, static:AxBx..., dynamic:N or adaptive", s);
}

void ar_tree_spec_format(const ar_tree_spec *spec, char *buf, size_t cap) {
    const ar_tree_shape *sh = &spec->shape;
    if (spec->adaptive) {
        snprintf(buf, cap, "adaptive");
        return;
    }
    switch (sh->mode) {
    case AR_TREE_CHAIN: snprintf(buf, cap, "chain:%d", sh->n_levels); return;
    case AR_TREE_DYNAMIC: snprintf(buf, cap, "dynamic:%d", sh->budget); return;
    case AR_TREE_STATIC: {
        size_t o = (size_t)snprintf(buf, cap, "static:");
        for (int i = 0; i < sh->n_levels && o < cap; i++)
            o += (size_t)snprintf(buf + o, cap - o, i ? "x%d" : "%d", sh->branch[i]);
        return;
    }
    }
}
