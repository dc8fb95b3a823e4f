/* spec_check.c: plain vs speculative generation through the public API. */
#include "spec_check.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refs.h"

bool spec_collect(void *user, arbor_token token, const char *text, size_t len) {
    (void)text;
    (void)len;
    spec_run *r = user;
    if (token >= 0 && r->n < (int)(sizeof r->tokens / sizeof r->tokens[0])) r->tokens[r->n++] = token;
    return true;
}

/* The cost table of "adaptive@cheap", written once per process. */
static const char *cheap_costs(void) {
    static char path[256];
    if (path[0]) return path;
    snprintf(path, sizeof path, "/tmp/arbor-cheap-costs-%ld.txt", (long)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f);
    static const int sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 32, 64, 128, 256};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        fprintf(f, "verify %d %.6f\ndraft %d %.6f\n", sizes[i], 0.010 + 0.001 * (sizes[i] - 1),
                sizes[i], 0.0002);
    cr_assert_eq(fclose(f), 0);
    return path;
}

void spec_generate(const char *target, const char *draft, const char *tree, const char *prompt,
                   int n, float temp, uint64_t seed, spec_run *out) {
    char rel[256];
    memset(out, 0, sizeof *out);
    snprintf(rel, sizeof rel, "models/%s", target);
    arbor_model *tm = NULL, *dm = NULL;
    cr_assert_eq(arbor_model_load(target[0] == '/' ? target : fixture(rel),
                                  arbor_model_default_params(), &tm), ARBOR_OK,
                 "%s", arbor_last_error());
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = 2;
    cp.tree = tree;
    if (tree && !strcmp(tree, "adaptive@cheap")) {
        cp.tree = "adaptive";
        cp.sched_costs = cheap_costs();
    }
    if (draft && !strcmp(draft, "lookup")) {
        cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    } else if (draft && !strncmp(draft, "self:", 5)) {
        cp.draft_kind = ARBOR_DRAFT_SELF;
        cp.draft_self_layers = atoi(draft + 5);
    } else if (draft) {
        snprintf(rel, sizeof rel, "models/%s", draft);
        cr_assert_eq(arbor_model_load(draft[0] == '/' ? draft : fixture(rel),
                                      arbor_model_default_params(), &dm), ARBOR_OK,
                     "%s", arbor_last_error());
        cp.draft_kind = ARBOR_DRAFT_MODEL;
        cp.draft_model = dm;
        cp.draft_share = false; /* a cut drafter runs as itself: the separate model's path */
    }
    arbor_context *ctx = NULL;
    cr_assert_eq(arbor_context_create(tm, cp, &ctx), ARBOR_OK, "%s", arbor_last_error());
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = n;
    gp.ignore_eos = true;
    gp.sampling.temp = temp;
    gp.sampling.seed = seed;
    cr_assert_eq(arbor_generate(ctx, prompt, &gp, spec_collect, out), ARBOR_OK, "%s",
                 arbor_last_error());
    arbor_get_stats(ctx, &out->stats);
    arbor_context_free(ctx);
    arbor_model_free(dm);
    arbor_model_free(tm);
}

static void check_pair(const char *target, const char *draft, const char *const *trees,
                       int n_trees, int n_tokens, bool related) {
    int64_t accepted = 0;
    static const char *prompts[] = {
        "Once upon a time",
        "Tom and his mom went to the park. They saw a big red ball under a tree, and Tom "
        "wanted to play with it.",
    };
    for (size_t pi = 0; pi < sizeof prompts / sizeof prompts[0]; pi++) {
        spec_run plain, spec;
        spec_generate(target, NULL, NULL, prompts[pi], n_tokens, 0.0f, 0, &plain);
        cr_assert_eq(plain.n, n_tokens);
        for (int t = 0; t < n_trees; t++) {
            spec_generate(target, draft, trees[t], prompts[pi], n_tokens, 0.0f, 0, &spec);
            cr_assert_eq(spec.n, plain.n, "%s <- %s %s: %d tokens vs %d", target, draft, trees[t],
                         spec.n, plain.n);
            for (int i = 0; i < plain.n; i++)
                cr_assert_eq(spec.tokens[i], plain.tokens[i],
                             "%s <- %s %s prompt %zu: token %d differs (%d vs plain %d)", target,
                             draft, trees[t], pi, i, spec.tokens[i], plain.tokens[i]);
            cr_log_info("%s <- %s %s: %lld verifications, accepted %lld of %lld drafted (%.2f per "
                        "verification)",
                        target, draft, trees[t], (long long)spec.stats.n_verify,
                        (long long)spec.stats.n_accepted, (long long)spec.stats.n_drafted,
                        spec.stats.mean_accepted);
            if (strcmp(trees[t], "adaptive"))
                cr_assert_gt(spec.stats.n_verify, 0, "%s <- %s %s: no verification: speculation "
                             "did not happen", target, draft, trees[t]);
            accepted += spec.stats.n_accepted;
        }
    }
    if (related)
        cr_assert_gt(accepted, 0, "%s <- %s: no draft token accepted in any mode", target, draft);
}

void spec_check_pair(const char *target, const char *draft, const char *const *trees, int n_trees,
                     int n_tokens) {
    check_pair(target, draft, trees, n_trees, n_tokens, true);
}

void spec_check_unrelated(const char *target, const char *draft, const char *const *trees,
                          int n_trees, int n_tokens) {
    check_pair(target, draft, trees, n_trees, n_tokens, false);
}
