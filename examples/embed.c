/* embed.c: a complete program using arbor as a library through its public header alone.
 *
 *   embed VERIFIER.gguf [DRAFTER] [PROMPT]
 *
 * DRAFTER is a small GGUF model sharing the verifier's vocabulary, "self:M" (the verifier's own
 * first M layers) or "lookup" (n-gram prompt lookup). Streams 64 greedy tokens of continuation
 * to stdout; statistics and the library's log go to stderr. Ctrl-C cancels the generation.
 *
 * Build against an installed arbor:  cc embed.c $(pkg-config --cflags --libs arbor) -o embed */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbor.h"

static arbor_context *volatile running; /* for the signal handler */

static void on_sigint(int sig) {
    (void)sig;
    arbor_cancel(running); /* one lock-free atomic store: safe in a signal handler */
}

static void on_log(void *user, arbor_log_level level, const char *message) {
    (void)user;
    static const char *const names[] = {"error", "warning", "info"};
    if (level != ARBOR_LOG_INFO) fprintf(stderr, "embed: %s: %s\n", names[level], message);
}

/* Streams each piece of text as soon as it is complete. */
static bool on_token(void *user, arbor_token token, const char *text, size_t len) {
    (void)user;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static bool is_drafter(const char *arg) {
    size_t n = strlen(arg);
    return !strcmp(arg, "lookup") || !strncmp(arg, "self:", 5) ||
           (n > 5 && !strcmp(arg + n - 5, ".gguf"));
}

/* Fills the context parameters for the drafter named on the command line. */
static arbor_status choose_drafter(const char *arg, arbor_context_params *cp,
                                   arbor_model **draft_model) {
    if (!strcmp(arg, "lookup")) {
        cp->draft_kind = ARBOR_DRAFT_LOOKUP;
        return ARBOR_OK;
    }
    if (!strncmp(arg, "self:", 5)) {
        cp->draft_kind = ARBOR_DRAFT_SELF;
        cp->draft_self_layers = atoi(arg + 5); /* the library checks the range */
        return ARBOR_OK;
    }
    arbor_model_params mp = arbor_model_default_params();
    mp.resident = true; /* the drafter runs at every step: keep it in memory */
    arbor_status s = arbor_model_load(arg, mp, draft_model);
    if (s != ARBOR_OK) return s;
    cp->draft_kind = ARBOR_DRAFT_MODEL;
    cp->draft_model = *draft_model;
    return ARBOR_OK;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s VERIFIER.gguf [DRAFTER.gguf | self:M | lookup] [PROMPT]\n",
                argv[0]);
        return 2;
    }
    const char *verifier = argv[1], *drafter = NULL, *prompt = "Once upon a time";
    if (argc == 4) {
        drafter = argv[2];
        prompt = argv[3];
    } else if (argc == 3) {
        if (is_drafter(argv[2]))
            drafter = argv[2];
        else
            prompt = argv[2];
    }
    arbor_set_log(on_log, NULL);

    int rc = 1;
    arbor_model *model = NULL, *draft_model = NULL;
    arbor_context *ctx = NULL;
    arbor_context_params cp = arbor_context_default_params();
    if (arbor_model_load(verifier, arbor_model_default_params(), &model) != ARBOR_OK) goto fail;
    if (drafter && choose_drafter(drafter, &cp, &draft_model) != ARBOR_OK) goto fail;
    if (arbor_context_create(model, cp, &ctx) != ARBOR_OK) goto fail;

    arbor_generate_params gp = arbor_generate_default_params();
    gp.sampling.temp = 0.0f; /* greedy: the verifier's own most likely continuation */
    gp.n_predict = 64;
    running = ctx;
    signal(SIGINT, on_sigint);
    arbor_status s = arbor_generate(ctx, prompt, &gp, on_token, NULL);
    signal(SIGINT, SIG_DFL);
    running = NULL;
    putchar('\n');
    if (s == ARBOR_ERR_CANCELLED) {
        fprintf(stderr, "embed: cancelled\n");
        rc = 130;
    } else if (s != ARBOR_OK) {
        goto fail;
    } else {
        rc = 0;
    }
    arbor_stats st;
    if (arbor_get_stats(ctx, &st) == ARBOR_OK) {
        fprintf(stderr,
                "embed: arbor %s: prompt %d tokens, generated %d in %.1f ms (%.1f tokens/s)",
                arbor_version(), st.n_prompt, st.n_generated, st.generate_seconds * 1e3,
                st.tokens_per_second);
        fprintf(stderr, ", %lld speculative verifications", (long long)st.n_verify);
        if (st.n_verify)
            fprintf(stderr, ", %.2f drafted tokens accepted per verification", st.mean_accepted);
        fputc('\n', stderr);
    }
    goto done;
fail:
    fprintf(stderr, "embed: %s\n", arbor_last_error());
done:
    arbor_context_free(ctx);
    arbor_model_free(draft_model);
    arbor_model_free(model);
    return rc;
}
