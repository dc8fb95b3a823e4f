/* fuzz_model.c: libFuzzer harness for model loading through the public API: the input is a
 * GGUF file (written to an anonymous memory file, loaded by path exactly as `arbor generate`
 * does) that goes through the GGUF reader, the tokenizer loader, the hyperparameter and tensor
 * shape checks. A model that loads then runs: its tokenizer on a short text, and a context of 8
 * cells with three prompt tokens and a few generated ones, greedy and sampled, plainly and with
 * speculation (prompt lookup, self-drafting). Mutated weights make NaN and infinite logits.
 * Failures must be one error line; success must produce tokens inside the vocabulary. The seeds are
 * tiny models derived from the fixtures (tests/fuzz/make_seeds.c). */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arbor.h"
#include "tests/fuzz/fuzz.h"

static void fz_model_check_error(void) {
    const char *e = arbor_last_error();
    FZ_CHECK(e[0] != 0);
    FZ_CHECK(strchr(e, '\n') == NULL);
}

typedef struct fz_model_run {
    int32_t n_vocab;
    int32_t n_tokens;
} fz_model_run;

static bool fz_model_on_token(void *user, arbor_token token, const char *text, size_t len) {
    fz_model_run *r = user;
    FZ_CHECK(token == -1 || (token >= 0 && token < r->n_vocab));
    FZ_CHECK(text != NULL || len == 0);
    r->n_tokens++;
    return true;
}

/* A short generation: greedy or sampled (with every sampling transform on), plain or with a
 * drafter (prompt lookup, or the model's own first layer). */
static void fz_model_generate(const arbor_model *model, int32_t n_vocab, arbor_draft_kind kind,
                              bool sampled) {
    arbor_context_params cp = arbor_context_default_params();
    cp.n_ctx = 8;
    cp.n_threads = 1;
    cp.n_batch = 4;
    cp.draft_kind = kind;
    cp.draft_self_layers = 1;
    if (kind != ARBOR_DRAFT_NONE) cp.tree = sampled ? "static:2x1" : "chain:2";
    arbor_context *ctx = NULL;
    if (arbor_context_create(model, cp, &ctx) != ARBOR_OK) {
        fz_model_check_error();
        return;
    }
    arbor_generate_params gp = arbor_generate_default_params();
    gp.sampling.temp = sampled ? 0.9f : 0.0f;
    gp.sampling.top_k = 20;
    gp.sampling.top_p = 0.9f;
    gp.sampling.min_p = 0.02f;
    gp.sampling.repeat_penalty = sampled ? 1.2f : 1.0f;
    gp.sampling.seed = 42;
    gp.n_predict = 4;
    gp.ignore_eos = true;
    arbor_token prompt[3];
    for (int i = 0; i < 3; i++) prompt[i] = (arbor_token)(i % n_vocab);
    fz_model_run run = {.n_vocab = n_vocab};
    if (arbor_generate_tokens(ctx, prompt, 3, &gp, fz_model_on_token, &run) != ARBOR_OK)
        fz_model_check_error();
    arbor_context_free(ctx);
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.gguf", 0);
    FZ_CHECK(fd >= 0);
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, data + done, size - done);
        FZ_CHECK(k > 0);
        done += (size_t)k;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    arbor_model *model = NULL;
    arbor_status st = arbor_model_load(path, arbor_model_default_params(), &model);
    close(fd); /* the mapping keeps the contents alive */
    if (st != ARBOR_OK) {
        FZ_CHECK(model == NULL);
        fz_model_check_error();
        return 0;
    }
    arbor_model_info info;
    FZ_CHECK(arbor_model_get_info(model, &info) == ARBOR_OK);
    FZ_CHECK(info.n_vocab >= 1 && info.n_layer >= 1 && info.n_embd >= 1);
    FZ_CHECK(info.file_bytes == size && info.weight_bytes <= size);

    /* the tokenizer on a fixed text, and every token printed */
    static const char text[] = "Once upon a time, <s> \xe2\x96\x81"
                               "caf\xc3\xa9 \xf0\x9f\x99\x82!\n";
    arbor_token ids[64];
    int32_t n = arbor_tokenize(model, text, sizeof text - 1, true, true, ids, 64);
    if (n < 0) fz_model_check_error();
    for (int32_t i = 0; i < n && i < 64; i++) FZ_CHECK(ids[i] >= 0 && ids[i] < info.n_vocab + 128);
    char piece[16];
    for (int32_t t = 0; t < info.n_vocab && t < 4096; t++) {
        int32_t k = arbor_token_to_piece(model, t, t & 1, piece, (int32_t)sizeof piece);
        FZ_CHECK(k >= -9);
    }

    fz_model_generate(model, info.n_vocab, ARBOR_DRAFT_NONE, false);
    fz_model_generate(model, info.n_vocab, ARBOR_DRAFT_NONE, true);
    fz_model_generate(model, info.n_vocab, ARBOR_DRAFT_LOOKUP, true);
    if (info.n_layer >= 2) fz_model_generate(model, info.n_vocab, ARBOR_DRAFT_SELF, false);
    arbor_model_free(model);
    return 0;
}
