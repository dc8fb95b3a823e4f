/* test_arch.c: every architecture's forward pass against the independent float64 reference
 * (tests/util/ref_forward.c, written from the HF modeling code), on synthetic F32 models written
 * at run time (tests/util/arch_models.c): all rows of a 40-token prompt evaluated as one batch,
 * then the same positions one token at a time, within 1e-4 of the reference relative to the
 * row's largest logit. Each model's distinguishing feature is checked to matter (switching it
 * off moves the logits far beyond the tolerance), so a pass cannot come from ignoring it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/model.h"
#include "tests/util/arch_models.h"
#include "tests/util/gguf_build.h"
#include "tests/util/ref_forward.h"

#define SEQ 40

static char *tmpdir;
static void setup_tmp(void) { tmpdir = gb_tmpdir(); }
static void teardown_tmp(void) {
    gb_rmdir(tmpdir);
    free(tmpdir);
}
TestSuite(arch, .init = setup_tmp, .fini = teardown_tmp);

static void make_tokens(int32_t *t, int n, int32_t V) {
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        t[i] = (int32_t)(x % (uint64_t)V);
    }
}

/* arbor's logits [n][V] for the sequence: as one batch, or one token per call */
static float *engine_logits(const char *path, const int32_t *tok, int n, int n_ctx, bool batched) {
    ar_model *m = NULL;
    cr_assert_eq(ar_model_load(path, ar_model_default_params(), &m), AR_OK, "%s", ar_last_error());
    ar_kv *kv;
    ar_workspace *w;
    cr_assert_eq(ar_kv_create(m, n_ctx, 0, AR_TYPE_F32, &kv), AR_OK);
    cr_assert_eq(ar_workspace_create(m, n, n_ctx, &w), AR_OK);
    const int32_t V = m->hp.n_vocab;
    float *lg = malloc(sizeof(float) * (size_t)V * (size_t)n);
    if (batched) {
        ar_batch b = {.n = n, .tokens = tok};
        cr_assert_eq(ar_model_eval(m, kv, w, NULL, &b, lg), AR_OK, "%s", ar_last_error());
    } else {
        for (int i = 0; i < n; i++) {
            ar_batch b = {.n = 1, .tokens = tok + i};
            cr_assert_eq(ar_model_eval(m, kv, w, NULL, &b, lg + (size_t)i * V), AR_OK, "%s",
                         ar_last_error());
            ar_kv_commit_all(kv, 1);
        }
    }
    ar_workspace_free(w);
    ar_kv_free(kv);
    ar_model_free(m);
    return lg;
}

/* max over rows of max |a - r| / max |r| */
static double max_rel(const float *a, const double *r, int n, int32_t V) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = 0, mx = 0;
        for (int32_t t = 0; t < V; t++) {
            d = fmax(d, fabs((double)a[(size_t)i * V + t] - r[(size_t)i * V + t]));
            mx = fmax(mx, fabs(r[(size_t)i * V + t]));
        }
        worst = fmax(worst, d / mx);
    }
    return worst;
}

static double max_rel_f(const float *a, const float *b, int n, int32_t V) {
    double *bd = malloc(sizeof(double) * (size_t)n * V);
    for (size_t i = 0; i < (size_t)n * V; i++) bd[i] = b[i];
    double r = max_rel(a, bd, n, V);
    free(bd);
    return r;
}

static void check_against_reference(const char *name, int n_ctx) {
    char *path = arch_model_write(name, -1, tmpdir);
    rf_model *ref = rf_load(path);
    cr_assert(ref, "reference cannot read %s", path);
    const int32_t V = rf_n_vocab(ref);
    int32_t tok[SEQ];
    make_tokens(tok, SEQ, V);
    double *want = malloc(sizeof(double) * (size_t)V * SEQ);
    rf_forward(ref, tok, SEQ, n_ctx, want);
    float *batched = engine_logits(path, tok, SEQ, n_ctx, true);
    float *single = engine_logits(path, tok, SEQ, n_ctx, false);
    double eb = max_rel(batched, want, SEQ, V), es = max_rel(single, want, SEQ, V);
    cr_log_info("%s (context %d): max relative logit error vs float64 reference: batch %.3g, one "
                "by one %.3g",
                name, n_ctx, eb, es);
    printf("arch %s n_ctx %d: max relative error batch %.3g single %.3g\n", name, n_ctx, eb, es);
    cr_expect_leq(eb, 1e-4, "%s: batch rows %.3g from the reference", name, eb);
    cr_expect_leq(es, 1e-4, "%s: single rows %.3g from the reference", name, es);
    free(want);
    free(batched);
    free(single);
    rf_free(ref);
    free(path);
}

Test(arch, llama3_rope_freqs) { check_against_reference("llama3", 256); }
Test(arch, mistral_sliding_window) { check_against_reference("mistral", 256); }
Test(arch, qwen2) { check_against_reference("qwen2", 256); }
Test(arch, qwen2_yarn) { check_against_reference("qwen2-yarn", 256); }
Test(arch, qwen3_qk_norm) { check_against_reference("qwen3", 256); }
Test(arch, gemma2) { check_against_reference("gemma2", 256); }
Test(arch, phi3_fused) { check_against_reference("phi3", 256); }
Test(arch, phi3_longrope_short_and_long) {
    check_against_reference("phi3-longrope", 128); /* short factors */
    check_against_reference("phi3-longrope", 512); /* long factors */
}

/* The feature each model exists for changes its logits: the same weights without it (another
 * synth parameter, same seed) differ by far more than the tolerance. */
static void expect_feature_matters(const char *name, void (*off)(ar_synth_params *), int n_ctx) {
    ar_synth_params p = arch_model_params(name, -1);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/on.gguf", tmpdir);
    snprintf(b, sizeof b, "%s/off.gguf", tmpdir);
    cr_assert_eq(ar_synth_write(&p, a), AR_OK, "%s", ar_last_error());
    off(&p);
    cr_assert_eq(ar_synth_write(&p, b), AR_OK, "%s", ar_last_error());
    int32_t tok[SEQ];
    make_tokens(tok, SEQ, 512);
    float *la = engine_logits(a, tok, SEQ, n_ctx, true), *lb = engine_logits(b, tok, SEQ, n_ctx, true);
    double d = max_rel_f(la, lb, SEQ, 512);
    cr_log_info("%s: switching the feature off moves the logits by %.3g (relative)", name, d);
    cr_expect_gt(d, 1e-2, "%s: the feature changes the logits by only %.3g", name, d);
    free(la);
    free(lb);
}

static void no_llama3_factors(ar_synth_params *p) { p->rope_orig_ctx = 1 << 20; }
static void wide_window(ar_synth_params *p) { p->sliding_window = 1 << 20; }
static void no_yarn(ar_synth_params *p) { p->rope_scaling = NULL; }
static void no_attn_cap(ar_synth_params *p) { p->attn_softcap = 1e6f; }
static void no_final_cap(ar_synth_params *p) { p->final_softcap = 1e6f; }
static void gemma_window_off(ar_synth_params *p) { p->sliding_window = 1 << 20; }
static void no_longrope(ar_synth_params *p) { p->rope_scaling = NULL; }

Test(arch, each_feature_matters) {
    expect_feature_matters("llama3", no_llama3_factors, 256);
    expect_feature_matters("mistral", wide_window, 256);
    expect_feature_matters("qwen2-yarn", no_yarn, 256);
    expect_feature_matters("gemma2", no_attn_cap, 256);
    expect_feature_matters("gemma2", no_final_cap, 256);
    expect_feature_matters("gemma2", gemma_window_off, 256);
    expect_feature_matters("phi3", wide_window, 256);
    expect_feature_matters("phi3-longrope", no_longrope, 512);
}
