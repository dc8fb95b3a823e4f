/* tune.c: the kernel parameters that depend on the microarchitecture, chosen by measurement and
 * kept per CPU model in the per-user cache (tune/<key>.txt, the key hashing the CPU's brand,
 * family, model and stepping, the instruction-set level and this file's TUNE_VERSION):
 *  - amx_min_cols: from how many columns the AMX kernels beat the VNNI ones (a tile's set-up and
 *    stores against its products), timed on a packed Q4_0 matrix that stays in the caches;
 *  - prefetch: where to (L2, L1 or not at all) and how far ahead the packed kernels prefetch,
 *    timed at one column (decoding, bound by memory) over the first packed matrices of a model
 *    large enough not to fit the caches.
 * The measurement runs once per CPU model, at the load of such a model, and takes a few tenths of
 * a second; every later load reads the entry. An entry that does not parse or is out of range is
 * ignored with a warning and measured again. ARBOR_TUNE=0 keeps the built-in values (for
 * reproducible benchmarks of the defaults). The choice changes speed only: every candidate
 * computes the same bits. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "src/core/cache.h"
#include "kernels.h"

#define TUNE_VERSION 2

extern int ar_avx512_prefetch_blocks, ar_avx512_prefetch_hint, ar_amx_min_cols;

/* (hint, distance): rows16.h's hints, 0 none, 1 L1, 2 L2; the first is the built-in one */
static const int prefetch_candidates[][2] = {{2, 16}, {2, 8}, {2, 32}, {1, 16}, {0, 0}};
static const char *const hint_names[] = {"none", "l1", "l2"};
static const int amx_candidates[] = {4, 8, 12, 16};

ar_status ar_kernels_tune_path(char *out, size_t cap) {
    const ar_cpu_features *f = ar_cpu();
    char id[160];
    snprintf(id, sizeof id, "%s|%u|%u|%u|%d|%d", f->brand, f->family, f->model, f->stepping,
             (int)f->level, TUNE_VERSION);
    char name[64];
    snprintf(name, sizeof name, "tune/%016llx.txt", (unsigned long long)XXH64(id, strlen(id), 0));
    return ar_cache_path(name, out, cap);
}

/* "prefetch H D\namx_min_cols A\n" (H none, l1 or l2), each a candidate value; false when it is
 * not so. */
bool ar_tune_parse(const char *text, int *hint, int *distance, int *amx) {
    char h[8] = "";
    int d = -1, a = -1, used = 0;
    if (sscanf(text, "prefetch %7s %d\namx_min_cols %d\n%n", h, &d, &a, &used) != 3 ||
        text[used] != 0)
        return false;
    int hi = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(h, hint_names[i])) hi = i;
    bool ok_p = false, ok_a = false;
    for (size_t i = 0; i < AR_ARRAY_LEN(prefetch_candidates); i++)
        ok_p |= hi == prefetch_candidates[i][0] && d == prefetch_candidates[i][1];
    for (size_t i = 0; i < AR_ARRAY_LEN(amx_candidates); i++) ok_a |= a == amx_candidates[i];
    if (!ok_p || !ok_a) return false;
    *hint = hi, *distance = d, *amx = a;
    return true;
}

/* Seconds of the fastest of `reps` calls of kernel g over rows rows of packed groups at w. */
static double time_rows16(const ar_gemm_kernel *g, ar_type t, int64_t k, const uint8_t *w,
                          int64_t rows, const uint8_t *panel, int ncols, float *y, int reps) {
    const size_t gbytes = ar_pack_group_bytes(t, k);
    const size_t rec = g->panel == AR_PANEL_QK ? AR_QK_RECORD(1) : AR_Q32_RECORD(1, g->with_s);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = ar_now();
        for (int64_t r0 = 0; r0 < rows; r0 += AR_PACK_ROWS)
            g->rows16(k, w + (size_t)(r0 / 16) * gbytes, 0, (int)AR_MIN(16, rows - r0), panel,
                      (size_t)ncols * rec, ncols, y + r0, (size_t)rows, false);
        best = AR_MIN(best, ar_now() - t0);
    }
    return best;
}

/* The AMX crossover: the fewest columns from which AMX is faster at every size measured. */
static int measure_amx_min_cols(void) {
    const ar_gemm_kernel *amx = ar_kernels_amx.rows[AR_TYPE_Q4_0].packed;
    const ar_gemm_kernel *vnni = ar_kernels_avx512vnni.rows[AR_TYPE_Q4_0].packed;
    if (ar_cpu()->level < AR_SIMD_AMX || !amx || !vnni) return ar_amx_min_cols;
    const int64_t k = 2048, rows = 512; /* 0.6 MB of weights: in the caches, compute-bound */
    const size_t gbytes = ar_pack_group_bytes(AR_TYPE_Q4_0, k);
    uint8_t *w = ar_aligned_alloc(gbytes * (size_t)(rows / 16));
    uint8_t *panel = ar_aligned_alloc(ar_panel_bytes(vnni, k));
    float *y = ar_aligned_alloc(sizeof(float) * (size_t)rows * 16);
    float *x = ar_aligned_alloc(sizeof(float) * (size_t)k * 16);
    uint8_t *xq = ar_aligned_alloc(ar_row_size(AR_TYPE_Q8_0, k) * 16);
    int best = ar_amx_min_cols;
    if (w && panel && y && x && xq) {
        uint64_t s = 88172645463325252ull;
        for (size_t i = 0; i < gbytes * (size_t)(rows / 16); i++)
            w[i] = (uint8_t)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 56);
        for (int64_t i = 0; i < k * 16; i++) x[i] = (float)((i * 37) % 101) - 50.0f;
        const size_t rb = ar_row_size(AR_TYPE_Q8_0, k);
        for (int c = 0; c < 16; c++) ar_quantize_row(AR_TYPE_Q8_0, x + (size_t)c * k, xq + c * rb, k);
        best = 17; /* never, unless AMX wins */
        for (int i = (int)AR_ARRAY_LEN(amx_candidates) - 1; i >= 0; i--) {
            const int n = amx_candidates[i];
            ar_panel_pack(vnni, xq, rb, n, k, panel);
            /* the AMX entry forwards calls below ar_amx_min_cols: measure it as AMX */
            const int saved = ar_amx_min_cols;
            ar_amx_min_cols = 1;
            time_rows16(amx, AR_TYPE_Q4_0, k, w, rows, panel, n, y, 2); /* warm */
            const double ta = time_rows16(amx, AR_TYPE_Q4_0, k, w, rows, panel, n, y, 5);
            ar_amx_min_cols = saved;
            const double tv = time_rows16(vnni, AR_TYPE_Q4_0, k, w, rows, panel, n, y, 5);
            if (ta >= tv * 0.95) break; /* AMX must win clearly */
            best = n;
        }
    }
    ar_aligned_free(w);
    ar_aligned_free(panel);
    ar_aligned_free(y);
    ar_aligned_free(x);
    ar_aligned_free(xq);
    return best > 16 ? 16 : best; /* 16: AMX only for full panels */
}

/* The prefetch distance: one column over the model's first 128 MB of packed matrices (memory-
 * bound), each candidate in turn, three rounds; the fastest median wins. */
static void measure_prefetch(const ar_tensor *const *mats, int n) {
    ar_avx512_prefetch_hint = prefetch_candidates[0][0]; /* the built-in values */
    ar_avx512_prefetch_blocks = prefetch_candidates[0][1];
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        if ((bytes += (size_t)mats[i]->ne[1] * mats[i]->nb1) > ((size_t)128 << 20)) n = i + 1;
    const ar_gemm_kernel *g = NULL;
    for (int i = 0; i < n && !g; i++) g = ar_packed_get(mats[i]->type);
    if (!g) return;
    float *y = NULL;
    uint8_t *panel = NULL, *xq = NULL;
    float *x = NULL;
    int64_t max_k = 0, max_rows = 0;
    for (int i = 0; i < n; i++) max_k = AR_MAX(max_k, mats[i]->ne[0]), max_rows = AR_MAX(max_rows, mats[i]->ne[1]);
    y = ar_aligned_alloc(sizeof(float) * (size_t)max_rows);
    x = ar_aligned_alloc(sizeof(float) * (size_t)max_k);
    xq = ar_aligned_alloc(sizeof(float) * (size_t)max_k);
    panel = ar_aligned_alloc(sizeof(float) * (size_t)max_k * 2 + 64);
    size_t best = 0;
    if (y && x && xq && panel) {
        for (int64_t i = 0; i < max_k; i++) x[i] = (float)((i * 37) % 101) - 50.0f;
        double t[AR_ARRAY_LEN(prefetch_candidates)][3];
        for (int round = 0; round < 3; round++)
            for (size_t c = 0; c < AR_ARRAY_LEN(prefetch_candidates); c++) {
                ar_avx512_prefetch_hint = prefetch_candidates[c][0];
                ar_avx512_prefetch_blocks = prefetch_candidates[c][1];
                double sum = 0;
                for (int i = 0; i < n; i++) {
                    const ar_tensor *W = mats[i];
                    const ar_gemm_kernel *p = ar_packed_get(W->type);
                    if (!p || !W->packed) continue;
                    const ar_type vdt = ar_type_get(W->type)->vec_dot_type;
                    ar_quantize_row(vdt, x, xq, W->ne[0]);
                    ar_panel_pack(p, xq, 0, 1, W->ne[0], panel);
                    sum += time_rows16(p, W->type, W->ne[0], W->packed, W->ne[1], panel, 1, y, 1);
                }
                t[c][round] = sum;
            }
        /* another value than the built-in one only when it is 5% faster (a noisy machine must
         * not make the choice) */
        double med[AR_ARRAY_LEN(prefetch_candidates)];
        for (size_t c = 0; c < AR_ARRAY_LEN(prefetch_candidates); c++) {
            const double *v = t[c]; /* median of 3 */
            med[c] = AR_MAX(AR_MIN(v[0], v[1]), AR_MIN(AR_MAX(v[0], v[1]), v[2]));
        }
        double best_t = med[0] * 0.95;
        for (size_t c = 1; c < AR_ARRAY_LEN(prefetch_candidates); c++)
            if (med[c] < best_t) best_t = med[c], best = c;
    }
    ar_aligned_free(y);
    ar_aligned_free(x);
    ar_aligned_free(xq);
    ar_aligned_free(panel);
    ar_avx512_prefetch_hint = prefetch_candidates[best][0];
    ar_avx512_prefetch_blocks = prefetch_candidates[best][1];
}

static void tune(const ar_tensor *const *mats, int n, bool measure, char *note,
                 size_t note_cap) {
    static bool done;
    if (done) return;
    const char *env = getenv("ARBOR_TUNE");
    if ((env && env[0] == '0') || ar_cpu()->level < AR_SIMD_AVX512VNNI) return;
    char path[4096];
    if (ar_kernels_tune_path(path, sizeof path) != AR_OK) {
        ar_clear_error();
        return;
    }
    char *text = NULL;
    size_t len = 0;
    int h, d, a;
    if (ar_read_small_file(path, 256, &text, &len) == AR_OK) {
        const bool ok = ar_tune_parse(text, &h, &d, &a);
        free(text);
        if (ok) {
            ar_avx512_prefetch_hint = h, ar_avx512_prefetch_blocks = d, ar_amx_min_cols = a;
            done = true;
            return;
        }
        snprintf(note, note_cap, "ignored the kernel tuning entry %s: not a valid one (measured "
                                 "again)", path);
    }
    ar_clear_error();
    if (!measure) return; /* a model too small to measure on: the defaults, until a large one */
    ar_amx_min_cols = measure_amx_min_cols();
    measure_prefetch(mats, n);
    char out[128];
    const int k = snprintf(out, sizeof out, "prefetch %s %d\namx_min_cols %d\n",
                           hint_names[ar_avx512_prefetch_hint], ar_avx512_prefetch_blocks,
                           ar_amx_min_cols);
    if (ar_write_file_atomic(path, out, (size_t)k) != AR_OK) ar_clear_error();
    done = true;
}

void ar_kernels_tune(const ar_tensor *const *mats, int n, bool measure, char *note,
                     size_t note_cap) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* one measurement at a time */
    pthread_mutex_lock(&lock);
    tune(mats, n, measure, note, note_cap);
    pthread_mutex_unlock(&lock);
}
