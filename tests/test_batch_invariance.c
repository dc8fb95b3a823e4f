/* test_batch_invariance.c: the hard gate of exact speculation. A token's logits must be
 * bit-identical whether it is evaluated alone, inside a causal batch of up to 64 rows, or as a
 * node of a token tree among other branches, with 1 or 2 threads, for every tensor format and
 * every architecture (synthetic models of each, written at run time: sliding windows of 8 and
 * soft-capping make the visible cells and the scores depend on nothing but a row's position). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/kernels/kernels.h"
#include "src/kernels/matmul.h"
#include "src/core/model.h"
#include "src/core/sampling.h"
#include "tests/util/arch_models.h"
#include "tests/util/gguf_build.h"
#include "tests/util/refs.h"

#define SEQ 48

typedef struct fixture_model {
    ar_model *m;
    ar_pool *pool1, *pool2;
} fixture_model;

/* file: a fixture model's name, or an absolute path (the synthetic architectures) */
static void open_model(const char *file, fixture_model *f, bool repack) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", file);
    ar_model_params mp = ar_model_default_params();
    mp.repack = repack;
    cr_assert_eq(ar_model_load(file[0] == '/' ? file : fixture(rel), mp, &f->m), AR_OK, "%s",
                 ar_last_error());
    cr_assert_eq(ar_pool_create(1, NULL, &f->pool1), AR_OK);
    cr_assert_eq(ar_pool_create(2, NULL, &f->pool2), AR_OK);
}

static void close_model(fixture_model *f) {
    ar_pool_free(f->pool1);
    ar_pool_free(f->pool2);
    ar_model_free(f->m);
}

/* a deterministic token sequence of length SEQ (pseudo-random ids) */
static void make_sequence(const ar_model *m, int32_t *seq, uint64_t seed) {
    ar_rng r;
    ar_rng_seed(&r, seed);
    for (int i = 0; i < SEQ; i++) seq[i] = (int32_t)(ar_rng_next(&r) % (uint64_t)m->hp.n_vocab);
}

/* Logits of each position of seq evaluated one token at a time: [SEQ][V]. */
static float *eval_one_by_one(fixture_model *f, const int32_t *seq, int n, ar_pool *pool) {
    const ar_model *m = f->m;
    int32_t V = m->hp.n_vocab;
    ar_kv *kv;
    ar_workspace *w;
    cr_assert_eq(ar_kv_create(m, 256, 0, AR_TYPE_F32, &kv), AR_OK);
    cr_assert_eq(ar_workspace_create(m, 64, 256, &w), AR_OK);
    float *out = malloc(sizeof(float) * (size_t)V * (size_t)n);
    for (int i = 0; i < n; i++) {
        ar_batch b = {.n = 1, .tokens = &seq[i]};
        cr_assert_eq(ar_model_eval(m, kv, w, pool, &b, out + (size_t)i * V), AR_OK);
        ar_kv_commit_all(kv, 1);
    }
    ar_workspace_free(w);
    ar_kv_free(kv);
    return out;
}

/* repack: the model's matrices are packed where the CPU reads them so (ar_model_params.repack,
 * the default), and its logits must be the in-place model's, bit for bit; else every matrix is
 * read in place */
static void check_model(const char *file, bool repack) {
    fixture_model f;
    open_model(file, &f, repack);
    const ar_model *m = f.m;
    int32_t V = m->hp.n_vocab;
    int32_t seq[SEQ];
    make_sequence(m, seq, 7);
    float *single = eval_one_by_one(&f, seq, SEQ, f.pool1);
    float *single2 = eval_one_by_one(&f, seq, SEQ, f.pool2);
    cr_assert(!memcmp(single, single2, sizeof(float) * (size_t)V * SEQ),
                  "%s: 1 vs 2 threads differ", file);
    free(single2);
    if (repack) {
        cr_assert_gt(m->packed_bytes, 0, "%s: nothing packed", file);
        fixture_model in_place;
        open_model(file, &in_place, false);
        float *ref = eval_one_by_one(&in_place, seq, SEQ, in_place.pool2);
        cr_assert(!memcmp(single, ref, sizeof(float) * (size_t)V * SEQ),
                  "%s: packed and in-place weights differ", file);
        free(ref);
        close_model(&in_place);
    }

    ar_kv *kv;
    ar_workspace *w;
    cr_assert_eq(ar_kv_create(m, 256, 0, AR_TYPE_F32, &kv), AR_OK);
    cr_assert_eq(ar_workspace_create(m, 64, 256, &w), AR_OK);
    float *logits = malloc(sizeof(float) * (size_t)V * 64);

    /* causal batches of every size 2..SEQ after a committed prefix of 0 or 5 tokens */
    for (int prefix = 0; prefix <= 5; prefix += 5) {
        for (int n = 2; n + prefix <= SEQ; n += (n < 8 ? 1 : 7)) {
            ar_kv_truncate(kv, 0);
            if (prefix) {
                ar_batch p = {.n = prefix, .tokens = seq, .skip_logits = true};
                cr_assert_eq(ar_model_eval(m, kv, w, f.pool2, &p, NULL), AR_OK);
                ar_kv_commit_all(kv, prefix);
            }
            ar_batch b = {.n = n, .tokens = seq + prefix};
            cr_assert_eq(ar_model_eval(m, kv, w, f.pool2, &b, logits), AR_OK);
            for (int i = 0; i < n; i++)
                cr_assert(!memcmp(logits + (size_t)i * V, single + (size_t)(prefix + i) * V,
                                  sizeof(float) * (size_t)V),
                          "%s: position %d differs inside a batch of %d after %d", file,
                          prefix + i, n, prefix);
        }
    }

    /* a 64-node tree over a committed prefix of 8: the sequence's continuation is one path
     * (nodes 0, 2, 4, ...), decoys hang off every node of it; each path node must reproduce the
     * one-by-one logits, and each decoy must equal evaluating its own root-to-node path. */
    const int base = 8;
    int32_t tok[64], parent[64];
    ar_rng r;
    ar_rng_seed(&r, 99);
    int n = 0, last_path = -1;
    for (int d = 0; n < 64; d++) {
        tok[n] = seq[base + d];
        parent[n] = last_path;
        last_path = n++;
        if (n < 64) { /* a decoy sibling of the next path node */
            tok[n] = (int32_t)(ar_rng_next(&r) % (uint64_t)V);
            parent[n] = last_path;
            n++;
        }
    }
    ar_kv_truncate(kv, 0);
    ar_batch p = {.n = base, .tokens = seq, .skip_logits = true};
    cr_assert_eq(ar_model_eval(m, kv, w, f.pool2, &p, NULL), AR_OK);
    ar_kv_commit_all(kv, base);
    ar_batch tb = {.n = 64, .tokens = tok, .parent = parent};
    cr_assert_eq(ar_model_eval(m, kv, w, f.pool2, &tb, logits), AR_OK);
    int d = 0;
    for (int i = 0; i < 64; i++) {
        bool on_path = parent[i] == -1 || (i % 2 == 0);
        if (on_path) {
            cr_assert(!memcmp(logits + (size_t)i * V, single + (size_t)(base + d) * V,
                              sizeof(float) * (size_t)V),
                      "%s: tree node %d (depth %d) differs from one-by-one", file, i, d);
            d++;
        }
    }
    /* decoys: evaluate the path root..decoy alone as a chain */
    float *chain = malloc(sizeof(float) * (size_t)V * 64);
    for (int i = 1; i < 64; i += 2) {
        int32_t path[64];
        int k = 0;
        for (int x = i; x >= 0; x = parent[x]) path[k++] = tok[x];
        for (int a = 0; a < k / 2; a++) {
            int32_t t = path[a];
            path[a] = path[k - 1 - a];
            path[k - 1 - a] = t;
        }
        ar_kv_truncate(kv, base);
        ar_batch cb = {.n = k, .tokens = path};
        cr_assert_eq(ar_model_eval(m, kv, w, f.pool1, &cb, chain), AR_OK);
        cr_assert(!memcmp(logits + (size_t)i * V, chain + (size_t)(k - 1) * V,
                          sizeof(float) * (size_t)V),
                  "%s: tree node %d differs from its path evaluated alone", file, i);
    }
    free(chain);
    free(logits);
    free(single);
    ar_workspace_free(w);
    ar_kv_free(kv);
    close_model(&f);
}

#define INV_TEST(name, file)                                                                     \
    Test(batch_invariance, name, .timeout = 300) { check_model(file, false); }
/* packed matrices exist only where the CPU has the kernels that read them (AVX-512 VNNI) */
#define INV_TEST_PACKED(name, file, type)                                                        \
    Test(batch_invariance, name, .timeout = 300) {                                               \
        ar_runtime_init();                                                                       \
        if (!ar_packed_get(type)) cr_skip_test("no packed %s kernel on this CPU", #type);       \
        check_model(file, true);                                                                 \
    }

INV_TEST_PACKED(llama2xs_q8_0_packed, "llama2xs-260K-q8_0.gguf", AR_TYPE_Q8_0)
INV_TEST_PACKED(llama2xs_q4_0_packed, "llama2xs-260K-q4_0.gguf", AR_TYPE_Q4_0)
INV_TEST_PACKED(synth_llama_q8_0_packed, "synth-llama-q8_0.gguf", AR_TYPE_Q8_0)
INV_TEST_PACKED(synth_llama_q4_0_packed, "synth-llama-q4_0.gguf", AR_TYPE_Q4_0)
INV_TEST_PACKED(synth_llama_q4_1_packed, "synth-llama-q4_1.gguf", AR_TYPE_Q4_1)
INV_TEST_PACKED(synth_llama_q5_0_packed, "synth-llama-q5_0.gguf", AR_TYPE_Q5_0)
INV_TEST_PACKED(synth_llama_q5_1_packed, "synth-llama-q5_1.gguf", AR_TYPE_Q5_1)
INV_TEST_PACKED(synth_llama_q4_k_packed, "synth-llama-q4_k.gguf", AR_TYPE_Q4_K)
INV_TEST_PACKED(synth_llama_q5_k_packed, "synth-llama-q5_k.gguf", AR_TYPE_Q5_K)
INV_TEST_PACKED(synth_llama_q6_k_packed, "synth-llama-q6_k.gguf", AR_TYPE_Q6_K)
INV_TEST_PACKED(synth_llama_q4_k_m_packed, "synth-llama-q4_k_m.gguf", AR_TYPE_Q4_K)
INV_TEST_PACKED(synth_qwen2_q8_0_packed, "synth-qwen2-q8_0.gguf", AR_TYPE_Q8_0)

INV_TEST(stories260K_f32, "stories260K-f32.gguf")
INV_TEST(llama2xs_q8_0, "llama2xs-260K-q8_0.gguf")
INV_TEST(llama2xs_q4_0, "llama2xs-260K-q4_0.gguf")
INV_TEST(synth_llama_f32, "synth-llama-f32.gguf")
INV_TEST(synth_llama_f16, "synth-llama-f16.gguf")
INV_TEST(synth_llama_bf16, "synth-llama-bf16.gguf")
INV_TEST(synth_llama_q8_0, "synth-llama-q8_0.gguf")
INV_TEST(synth_llama_q4_0, "synth-llama-q4_0.gguf")
INV_TEST(synth_llama_q4_1, "synth-llama-q4_1.gguf")
INV_TEST(synth_llama_q5_0, "synth-llama-q5_0.gguf")
INV_TEST(synth_llama_q5_1, "synth-llama-q5_1.gguf")
INV_TEST(synth_llama_q2_k, "synth-llama-q2_k.gguf")
INV_TEST(synth_llama_q3_k, "synth-llama-q3_k.gguf")
INV_TEST(synth_llama_q4_k, "synth-llama-q4_k.gguf")
INV_TEST(synth_llama_q5_k, "synth-llama-q5_k.gguf")
INV_TEST(synth_llama_q6_k, "synth-llama-q6_k.gguf")
INV_TEST(synth_llama_q4_k_m, "synth-llama-q4_k_m.gguf")
INV_TEST(synth_qwen2_f32, "synth-qwen2-f32.gguf")
INV_TEST(synth_qwen2_q8_0, "synth-qwen2-q8_0.gguf")

/* Every architecture, F32 and Q8_0 (rows that do not fit Q8_0 blocks stay F32). */
static void check_arch(const char *name, int type, bool repack) {
    char *dir = gb_tmpdir();
    char *path = arch_model_write(name, type, dir);
    check_model(path, repack);
    free(path);
    gb_rmdir(dir);
    free(dir);
}
#define ARCH_TEST(fn, name)                                                                      \
    Test(batch_invariance, fn, .timeout = 300) {                                                 \
        check_arch(name, -1, false);                                                             \
        check_arch(name, AR_TYPE_Q8_0, false);                                                   \
    }
ARCH_TEST(arch_llama3, "llama3")
ARCH_TEST(arch_mistral_window, "mistral")
ARCH_TEST(arch_qwen2_yarn, "qwen2-yarn")
ARCH_TEST(arch_qwen3, "qwen3")
ARCH_TEST(arch_gemma2, "gemma2")
ARCH_TEST(arch_phi3, "phi3")
ARCH_TEST(arch_phi3_longrope, "phi3-longrope")
