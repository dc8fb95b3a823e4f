/* test_pack_cache.c: the packed-weights cache of model.c. A model's packed form is written to the
 * per-user cache on its first load and mapped on later ones; an entry that does not match (a
 * stale key, a corrupted header, a truncated file) is ignored with a warning and rewritten; the
 * logits are those of the in-place model, bit for bit, whichever way the matrices were packed.
 * The cache directory is a fresh temporary one (XDG_CACHE_HOME), and ARBOR_PACK_CACHE_MIN=0
 * sends the fixtures' small models through the cache. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/core/cpu.h"
#include "src/kernels/kernels.h"
#include "src/core/model.h"
#include "tests/util/refs.h"

static char cache_dir[256];

static void setup(void) {
    snprintf(cache_dir, sizeof cache_dir, "/tmp/arbor-pack-cache-%ld", (long)getpid());
    mkdir(cache_dir, 0755);
    setenv("XDG_CACHE_HOME", cache_dir, 1);
    setenv("ARBOR_PACK_CACHE_MIN", "0", 1);
    ar_runtime_init();
}
static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache_dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(pack_cache, .init = setup, .fini = teardown);

/* The single cache entry's path (asserts there is exactly one). */
static void entry_path(char *out, size_t cap) {
    cr_assert(cap >= 600);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/arbor/packed", cache_dir);
    DIR *d = opendir(dir);
    cr_assert(d, "no packed cache directory %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') snprintf(out, cap, "%s/%s", dir, e->d_name), n++;
    closedir(d);
    cr_assert_eq(n, 1, "%d cache entries", n);
}

/* Last-row logits of a fixed 6-token prompt. */
static float *logits_of(const ar_model *m) {
    ar_kv *kv;
    ar_workspace *w;
    cr_assert_eq(ar_kv_create(m, 32, 0, AR_TYPE_F32, &kv), AR_OK);
    cr_assert_eq(ar_workspace_create(m, 8, 32, &w), AR_OK);
    const int32_t tok[6] = {1, 5, 9, 77, 3, 200};
    float *all = malloc(sizeof(float) * (size_t)m->hp.n_vocab * 6);
    ar_batch b = {.n = 6, .tokens = tok};
    cr_assert_eq(ar_model_eval(m, kv, w, NULL, &b, all), AR_OK);
    ar_workspace_free(w);
    ar_kv_free(kv);
    return all;
}

static ar_model *load(const char *file, bool repack) {
    ar_model_params mp = ar_model_default_params();
    mp.repack = repack;
    ar_model *m;
    cr_assert_eq(ar_model_load(fixture(file), mp, &m), AR_OK, "%s", ar_last_error());
    return m;
}

static void same_logits(const ar_model *m, const float *ref, const char *what) {
    float *got = logits_of(m);
    cr_assert(!memcmp(got, ref, sizeof(float) * (size_t)m->hp.n_vocab * 6),
              "%s: logits differ from the in-place model", what);
    free(got);
}

Test(pack_cache, written_once_then_mapped_and_rewritten_when_wrong, .timeout = 120) {
    const char *file = "models/synth-llama-q4_k_m.gguf";
    if (!ar_packed_get(AR_TYPE_Q4_K)) cr_skip_test("no packed kernels on this CPU");
    ar_model *ref_m = load(file, false);
    cr_assert_eq(ref_m->packed_bytes, 0);
    float *ref = logits_of(ref_m);
    ar_model_free(ref_m);

    ar_model *m = load(file, true);
    cr_assert_str_eq(m->packed_from, "cache (written)");
    cr_assert_str_eq(m->pack_note, "");
    same_logits(m, ref, "first load");
    ar_model_free(m);
    char path[600];
    entry_path(path, sizeof path);

    m = load(file, true);
    cr_assert_str_eq(m->packed_from, "cache", "the second load must map the entry");
    cr_assert_str_eq(m->pack_note, "");
    cr_assert(m->packed_mapped);
    same_logits(m, ref, "mapped entry");
    ar_model_free(m);

    /* a wrong key in the header, then a truncated file: each ignored with a warning, rewritten */
    for (int bad = 0; bad < 2; bad++) {
        FILE *f = fopen(path, "r+b");
        cr_assert(f);
        if (bad == 0) {
            cr_assert_eq(fseek(f, 16, SEEK_SET), 0);
            const uint64_t junk = 0x0123456789abcdefull;
            cr_assert_eq(fwrite(&junk, 8, 1, f), 1);
        } else {
            cr_assert_eq(ftruncate(fileno(f), 8192), 0);
        }
        fclose(f);
        m = load(file, true);
        cr_assert_str_eq(m->packed_from, "cache (written)", "bad entry %d was used", bad);
        cr_assert(strstr(m->pack_note, "ignored"), "no warning for bad entry %d: '%s'", bad,
                  m->pack_note);
        same_logits(m, ref, bad ? "after a truncated entry" : "after a corrupted header");
        ar_model_free(m);
        m = load(file, true);
        cr_assert_str_eq(m->packed_from, "cache");
        ar_model_free(m);
    }
    free(ref);
}

/* Without a usable cache directory the model is packed in memory, still bit-identical. */
Test(pack_cache, unwritable_cache_falls_back_to_memory) {
    const char *file = "models/synth-llama-q8_0.gguf";
    if (!ar_packed_get(AR_TYPE_Q8_0)) cr_skip_test("no packed kernels on this CPU");
    ar_model *ref_m = load(file, false);
    float *ref = logits_of(ref_m);
    ar_model_free(ref_m);
    char blocker[300];
    snprintf(blocker, sizeof blocker, "%s/arbor", cache_dir);
    FILE *f = fopen(blocker, "w"); /* a file where the cache directory should be */
    cr_assert(f);
    fclose(f);
    ar_model *m = load(file, true);
    cr_assert_str_eq(m->packed_from, "memory");
    cr_assert(m->packed_bytes > 0 && !m->packed_mapped);
    same_logits(m, ref, "packed in memory");
    ar_model_free(m);
    free(ref);
}

/* The kernel tuning entry (src/kernels/tune.c): only well-formed candidate values are taken. */
Test(pack_cache, tuning_entries_are_validated) {
    int h = -1, p = -1, a = -1;
    cr_assert(ar_tune_parse("prefetch l2 16\namx_min_cols 12\n", &h, &p, &a));
    cr_assert(h == 2 && p == 16 && a == 12);
    cr_assert(ar_tune_parse("prefetch none 0\namx_min_cols 4\n", &h, &p, &a));
    cr_assert(h == 0 && p == 0 && a == 4);
    static const char *bad[] = {"", "prefetch l2 16\n", "prefetch l2 17\namx_min_cols 12\n",
                                "prefetch l3 16\namx_min_cols 12\n",
                                "prefetch l2 16\namx_min_cols 99\n",
                                "prefetch l2 16\namx_min_cols 12\nextra\n",
                                "amx_min_cols 12\nprefetch l2 16\n", "\xff\xfe garbage"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(!ar_tune_parse(bad[i], &h, &p, &a), "accepted bad entry %zu", i);
}

/* A corrupt entry is ignored with a warning (and not applied). */
Test(pack_cache, corrupt_tuning_entry_is_ignored) {
    if (ar_cpu()->level < AR_SIMD_AVX512VNNI) cr_skip_test("nothing is tuned on this CPU");
    unsetenv("ARBOR_TUNE");
    char path[4096];
    cr_assert_eq(ar_kernels_tune_path(path, sizeof path), AR_OK);
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    fputs("prefetch l2 1000000\namx_min_cols 12\n", f);
    fclose(f);
    char note[512] = "";
    ar_kernels_tune(NULL, 0, false, note, sizeof note);
    cr_assert(strstr(note, "ignored"), "no warning: '%s'", note);
}
