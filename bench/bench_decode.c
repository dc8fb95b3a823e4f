/* bench_decode.c: `arbor bench decode -m MODEL.gguf`: plain decoding tokens/s (through the public
 * API, as `arbor generate` runs it) and the batch cost curve: the time of one forward pass of an
 * n-row batch (a chain after a committed prefix, every row's logits computed, as a verification
 * needs them) for n = 1, 2, 4, ..., 64, reported as n / seconds. The curve says what a tree of n
 * nodes costs relative to one token: speculation pays when the accepted tokens per verification
 * exceed that ratio. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arbor.h"
#include "bench.h"
#include "bench/args.h"
#include "src/core/model.h"

const int32_t bench_batch_sizes[BENCH_BATCH_SIZES] = {1, 2, 4, 8, 16, 32, 64};

#define PREFIX      32  /* committed tokens before the timed batch */
#define MIN_SECONDS 1.0 /* time each batch size at least this long ... */
#define MAX_TIMED   20  /* ... in at most this many passes */

bool bench_batch_curve(const char *model_path, int threads, bool repack,
                       double tokens_per_s[BENCH_BATCH_SIZES], double seconds[BENCH_BATCH_SIZES],
                       bench_progress *progress) {
    const int32_t max_n = bench_batch_sizes[BENCH_BATCH_SIZES - 1];
    ar_model *m = NULL;
    ar_kv *kv = NULL;
    ar_workspace *ws = NULL;
    ar_pool *pool = NULL;
    float *logits = NULL;
    int32_t tokens[PREFIX + 64];
    bool ok = false;
    ar_model_params mp = ar_model_default_params();
    mp.repack = repack;
    if (ar_model_load(model_path, mp, &m) != AR_OK) goto done;
    const int32_t n_ctx = PREFIX + max_n + 1;
    if (ar_kv_create(m, n_ctx, 0, AR_TYPE_F32, &kv) != AR_OK) goto done;
    if (ar_workspace_create(m, max_n, n_ctx, &ws) != AR_OK) goto done;
    if (ar_pool_create(threads, NULL, &pool) != AR_OK) goto done;
    logits = malloc((size_t)max_n * (size_t)m->hp.n_vocab * sizeof(float));
    if (!logits) {
        ar_fail(AR_ERR_NOMEM, "out of memory for %d x %d logits", max_n, m->hp.n_vocab);
        goto done;
    }
    /* token ids do not change the cost: any valid ones will do */
    for (int32_t i = 0; i < PREFIX + max_n; i++)
        tokens[i] = (int32_t)((1 + 7919u * (uint32_t)i) % (uint32_t)m->hp.n_vocab);
    ar_batch prefix = {.n = PREFIX, .tokens = tokens, .skip_logits = true};
    if (ar_model_eval(m, kv, ws, pool, &prefix, NULL) != AR_OK) goto done;
    ar_kv_commit_all(kv, PREFIX);
    ar_batch warm = {.n = 1, .tokens = tokens + PREFIX};
    if (ar_model_eval(m, kv, ws, pool, &warm, logits) != AR_OK) goto done; /* faults weights in */
    for (int b = 0; b < BENCH_BATCH_SIZES; b++) {
        const int32_t n = bench_batch_sizes[b];
        ar_batch batch = {.n = n, .tokens = tokens + PREFIX}; /* causal chain, all logits */
        double t[MAX_TIMED], spent = 0;
        int k = 0;
        while (k < MAX_TIMED && (k == 0 || spent < MIN_SECONDS)) {
            if (progress)
                bench_progress_update(progress, "batch cost curve: n = %d, pass %d", n, k + 1);
            double t0 = ar_now();
            if (ar_model_eval(m, kv, ws, pool, &batch, logits) != AR_OK) goto done;
            t[k] = ar_now() - t0;
            spent += t[k++];
        }
        /* the rows were written past the committed prefix and are never committed */
        seconds[b] = bench_median(t, k);
        tokens_per_s[b] = n / seconds[b];
    }
    ok = true;
done:
    free(logits);
    ar_pool_free(pool);
    ar_workspace_free(ws);
    ar_kv_free(kv);
    ar_model_free(m);
    return ok;
}

/* Seconds of one prompt pass of n tokens from an empty context (a causal chain, only the last
 * row's logits, as prefill computes them): the median of 3 after a warm-up pass (which faults
 * in the workspace and the weights). */
static bool prompt_pass(const char *model_path, int threads, bool repack, int32_t n,
                        double *seconds) {
    ar_model *m = NULL;
    ar_kv *kv = NULL;
    ar_workspace *ws = NULL;
    ar_pool *pool = NULL;
    float *logits = NULL;
    int32_t *tokens = malloc(sizeof *tokens * (size_t)n);
    bool ok = false;
    ar_model_params mp = ar_model_default_params();
    mp.repack = repack;
    if (!tokens || ar_model_load(model_path, mp, &m) != AR_OK) goto done;
    if (ar_kv_create(m, n + 1, 0, AR_TYPE_F32, &kv) != AR_OK) goto done;
    if (ar_workspace_create(m, n, n + 1, &ws) != AR_OK) goto done;
    if (ar_pool_create(threads, NULL, &pool) != AR_OK) goto done;
    if (!(logits = malloc((size_t)m->hp.n_vocab * sizeof(float)))) goto done;
    for (int32_t i = 0; i < n; i++)
        tokens[i] = (int32_t)((1 + 7919u * (uint32_t)i) % (uint32_t)m->hp.n_vocab);
    uint8_t *want = calloc((size_t)n, 1);
    if (!want) goto done;
    want[n - 1] = 1;
    ar_batch b = {.n = n, .tokens = tokens, .logits = want};
    double t[4];
    for (int k = 0; k < 4; k++) { /* k = 0: warm-up */
        ar_kv_truncate(kv, 0);
        const double t0 = ar_now();
        if (ar_model_eval(m, kv, ws, pool, &b, logits) != AR_OK) {
            free(want);
            goto done;
        }
        t[k] = ar_now() - t0;
    }
    free(want);
    *seconds = bench_median(t + 1, 3);
    ok = true;
done:
    free(logits);
    free(tokens);
    ar_pool_free(pool);
    ar_workspace_free(ws);
    ar_kv_free(kv);
    ar_model_free(m);
    return ok;
}

static void usage(FILE *f) {
    fputs("usage: arbor bench decode -m MODEL.gguf [options]\n"
          "  -n N          tokens generated per run (default 64)\n"
          "  -t N          threads (default: one per online CPU)\n"
          "  --reps R      decoding runs (default 3; the median is reported)\n"
          "  -p PROMPT     prompt (default \"Once upon a time\")\n"
          "  --pp N        also time a prompt pass of N tokens (median of 3 after a warm-up)\n"
          "  --json FILE   write the figures as JSON\n"
          "  --no-repack   read every matrix in place (default: the packed layout)\n",
          f);
}

int bench_decode(int argc, char **argv) {
    const char *path = NULL, *json = NULL, *prompt = "Once upon a time";
    int32_t n_predict = 64, threads = 0, reps = 3, pp = 0;
    bool repack = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!v) return cli_error(2, "%s needs a value", a);                                        \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VALUE();
            path = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 20, &x)) return 2;
            n_predict = (int32_t)x;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1024, &x)) return 2;
            threads = (int32_t)x;
        } else if (!strcmp(a, "--reps")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 100, &x)) return 2;
            reps = (int32_t)x;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VALUE();
            prompt = v;
        } else if (!strcmp(a, "--json")) {
            NEED_VALUE();
            json = v;
        } else if (!strcmp(a, "--pp")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 16, &x)) return 2;
            pp = (int32_t)x;
        } else if (!strcmp(a, "--repack")) {
            repack = true;
        } else if (!strcmp(a, "--no-repack")) {
            repack = false;
        } else {
            return cli_error(2, "bench decode: unknown flag '%s' (see --help)", a);
        }
#undef NEED_VALUE
    }
    if (!path) return cli_error(2, "bench decode: -m MODEL.gguf is required");
    if (threads <= 0) threads = bench_default_threads();
    bench_machine machine;
    bench_machine_get(&machine, threads);
    bench_model_desc desc;
    if (!bench_describe_model(path, &desc)) return cli_error(1, "%s", arbor_last_error());

    /* plain decoding through the API */
    arbor_model *model = NULL;
    arbor_context *ctx = NULL;
    arbor_model_params mp = arbor_model_default_params();
    mp.repack = repack;
    if (arbor_model_load(path, mp, &model) != ARBOR_OK)
        return cli_error(1, "%s", arbor_last_error());
    int32_t n_prompt = arbor_tokenize(model, prompt, strlen(prompt), true, true, NULL, 0);
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = threads;
    cp.n_ctx = AR_MAX(n_prompt, 1) + n_predict + 8;
    if (n_prompt < 0 || arbor_context_create(model, cp, &ctx) != ARBOR_OK) {
        arbor_model_free(model);
        return cli_error(1, "%s", arbor_last_error());
    }
    arbor_generate_params gp = arbor_generate_default_params();
    gp.sampling.temp = 0.0f;
    gp.ignore_eos = true;
    double tps[100];
    bench_progress pr;
    bench_progress_start(&pr);
    arbor_status s = ARBOR_OK;
    for (int r = -1; r < reps && s == ARBOR_OK; r++) { /* r = -1: warm-up */
        gp.n_predict = r < 0 ? 4 : n_predict;
        if (r >= 0) bench_progress_update(&pr, "decoding: run %d of %d", r + 1, reps);
        arbor_context_reset(ctx);
        s = arbor_generate(ctx, prompt, &gp, NULL, NULL);
        arbor_stats st;
        arbor_get_stats(ctx, &st);
        if (r >= 0) tps[r] = st.tokens_per_second;
    }
    arbor_context_free(ctx);
    arbor_model_free(model);
    if (s != ARBOR_OK) {
        bench_progress_end(&pr);
        return cli_error(1, "%s", arbor_last_error());
    }
    double decode_tps = bench_median(tps, reps);

    double batch_tps[BENCH_BATCH_SIZES], batch_s[BENCH_BATCH_SIZES];
    bool ok = bench_batch_curve(path, threads, repack, batch_tps, batch_s, &pr);
    double pp_s = 0;
    if (ok && pp > 0) {
        bench_progress_update(&pr, "prompt pass of %d tokens", pp);
        ok = prompt_pass(path, threads, repack, pp, &pp_s);
    }
    bench_progress_end(&pr);
    if (!ok) return cli_error(1, "%s", arbor_last_error());
    uint64_t rss = bench_rss_process_peak();

    printf("%s (%s, %s, %d layers, %.2f GB), %s, %d threads (%s)\n", desc.path, desc.arch,
           desc.format, desc.n_layer, desc.bytes / 1e9, machine.cpu, threads, machine.simd);
    printf("plain decoding: %.2f tokens/s (median of %d runs of %d tokens)\n", decode_tps, reps,
           n_predict);
    printf("batch cost curve: one forward pass of n rows after %d committed tokens\n", PREFIX);
    printf("%4s  %10s  %10s  %12s\n", "n", "ms/pass", "tokens/s", "cost vs n=1");
    for (int b = 0; b < BENCH_BATCH_SIZES; b++)
        printf("%4d  %10.2f  %10.2f  %11.2fx\n", bench_batch_sizes[b], batch_s[b] * 1e3,
               batch_tps[b], batch_s[b] / batch_s[0]);
    if (pp > 0)
        printf("prompt processing: %d tokens in %.1f ms (%.2f tokens/s, median of 3)\n", pp,
               pp_s * 1e3, pp / pp_s);
    printf("peak RSS: %.0f MB\n", rss / 1e6);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) return cli_error(1, "cannot write %s: %s", json, strerror(errno));
        bench_json j = {.f = f};
        bj_object(&j, NULL);
        bj_str(&j, "benchmark", "decode");
        bj_str(&j, "arbor_version", arbor_version());
        bj_machine(&j, &machine);
        bj_array(&j, "models");
        bj_model(&j, &desc);
        bj_end_array(&j);
        bj_int(&j, "n_predict", n_predict);
        bj_bool(&j, "repack", repack);
        bj_num(&j, "decode_tokens_per_s", decode_tps);
        bj_array(&j, "decode_tokens_per_s_reps");
        for (int r = 0; r < reps; r++) bj_num(&j, NULL, tps[r]);
        bj_end_array(&j);
        bj_int(&j, "batch_prefix", PREFIX);
        bj_array(&j, "batch");
        for (int b = 0; b < BENCH_BATCH_SIZES; b++) {
            bj_object(&j, NULL);
            bj_int(&j, "n", bench_batch_sizes[b]);
            bj_num(&j, "tokens_per_s", batch_tps[b]);
            bj_num(&j, "seconds", batch_s[b]);
            bj_end_object(&j);
        }
        bj_end_array(&j);
        if (pp > 0) {
            bj_int(&j, "prompt_tokens", pp);
            bj_num(&j, "prompt_seconds", pp_s);
        }
        bj_int(&j, "peak_rss_bytes", (int64_t)rss);
        bj_end_object(&j);
        bool bad = ferror(f) != 0;
        if (fclose(f) != 0 || bad) return cli_error(1, "error writing %s", json);
    }
    return 0;
}
