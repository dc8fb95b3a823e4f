/* bench_kernels.c: `arbor bench kernels`: the matmul (src/kernels/matmul.h, the kernels the forward pass
 * runs) per weight format and batch size n, as GFLOP/s (2 * rows * cols * n per call) and GB/s
 * (weight bytes per call), against the memory-bandwidth bound measured in the same run: a
 * streaming read, by the same threads, of a buffer larger than the last-level cache. The weight
 * matrices are that large too, so n = 1 (decoding) shows how close a kernel gets to the bound and
 * larger n show when it turns compute-bound.
 *
 * Weights are 64 distinct rows quantized from random values, repeated to fill the matrix: the
 * kernels' speed does not depend on the values, and filling stays fast for every format. The
 * bandwidth read uses the widest loads the CPU has (AVX-512, AVX2 or SSE2, chosen at run time),
 * so that it is limited by memory rather than by instructions. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arbor.h"
#include "bench.h"
#include "bench/args.h"
#include "src/core/cpu.h"
#include "src/kernels/matmul.h"
#include "src/core/threadpool.h"

#define K_COLS      4096 /* values per weight row: a multiple of every block size */
#define POOL_ROWS   64   /* distinct weight rows */
#define MIN_SECONDS 0.3  /* time each (format, n) at least this long ... */
#define MAX_TIMED   50   /* ... in at most this many calls; the fastest call is reported */

static const ar_type all_formats[] = {
    AR_TYPE_F32,  AR_TYPE_F16,  AR_TYPE_BF16, AR_TYPE_Q4_0, AR_TYPE_Q4_1,
    AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0, AR_TYPE_Q2_K, AR_TYPE_Q3_K,
    AR_TYPE_Q4_K, AR_TYPE_Q5_K, AR_TYPE_Q6_K,
};

/* ---- memory bandwidth ---- */

/* Sums of n 64-bit words (n a multiple of 32) with the widest loads the CPU has, four
 * independent accumulators each: the loop must be limited by memory, not by instructions. */
typedef uint64_t (*sum_fn)(const uint64_t *p, int64_t n);

#if defined(__x86_64__)
#include <immintrin.h>

/* prefetch: also a software prefetch into L2 4 KB ahead, as the packed kernels do: on some CPUs
 * (Zen 4) the hardware prefetchers alone leave a quarter of the bandwidth unused, and a bound
 * that the kernels beat is no bound. */
__attribute__((target("avx512f"))) static inline uint64_t sum512(const uint64_t *p, int64_t n,
                                                                  bool prefetch) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (int64_t i = 0; i < n; i += 32) {
        if (prefetch)
            for (int l = 0; l < 32; l += 8)
                _mm_prefetch((const char *)(p + i + 512 + l), _MM_HINT_T1);
        a = _mm512_add_epi64(a, _mm512_load_si512(p + i));
        b = _mm512_add_epi64(b, _mm512_load_si512(p + i + 8));
        c = _mm512_add_epi64(c, _mm512_load_si512(p + i + 16));
        d = _mm512_add_epi64(d, _mm512_load_si512(p + i + 24));
    }
    uint64_t out[8];
    _mm512_storeu_si512(out, _mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint64_t *p, int64_t n) {
    return sum512(p, n, false);
}
__attribute__((target("avx512f"))) static uint64_t sum_avx512_pf(const uint64_t *p, int64_t n) {
    return sum512(p, n, true);
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, int64_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (int64_t i = 0; i < n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out,
                        _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return out[0] + out[1] + out[2] + out[3];
}

static uint64_t sum_sse2(const uint64_t *p, int64_t n) {
    __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
    for (int64_t i = 0; i < n; i += 8) {
        a = _mm_add_epi64(a, _mm_load_si128((const __m128i *)(p + i)));
        b = _mm_add_epi64(b, _mm_load_si128((const __m128i *)(p + i + 2)));
        c = _mm_add_epi64(c, _mm_load_si128((const __m128i *)(p + i + 4)));
        d = _mm_add_epi64(d, _mm_load_si128((const __m128i *)(p + i + 6)));
    }
    uint64_t out[2];
    _mm_storeu_si128((__m128i *)out, _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d)));
    return out[0] + out[1];
}
#endif

static uint64_t sum_scalar(const uint64_t *p, int64_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int64_t i = 0; i < n; i += 4) a += p[i], b += p[i + 1], c += p[i + 2], d += p[i + 3];
    return a + b + c + d;
}

static sum_fn pick_sum(void) {
#if defined(__x86_64__)
    const ar_cpu_features *cf = ar_cpu();
    if (cf->avx512f) return sum_avx512;
    if (cf->avx2) return sum_avx2;
    return sum_sse2;
#else
    return sum_scalar;
#endif
}

typedef struct bw_job {
    const uint64_t *p;
    int64_t n;
    sum_fn sum;
    uint64_t sums[1024];
} bw_job;

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    int64_t lo, hi;
    ar_split(j->n, 64, ith, nth, &lo, &hi); /* 64 words: whole accumulator rounds */
    if (hi - lo >= 64) j->sums[ith] = j->sum(j->p + lo, (hi - lo) / 64 * 64);
}

/* GB/s of the best of a few streaming reads of `bytes` bytes, with and (AVX-512) without the
 * software prefetch, alternated. */
static double measure_bandwidth(ar_pool *pool, size_t bytes) {
    uint64_t *buf = ar_aligned_alloc(bytes);
    if (!buf) return NAN;
    for (size_t i = 0; i < bytes / 8; i += 512) buf[i] = i; /* fault every page in */
    bw_job job = {.p = buf, .n = (int64_t)(bytes / 8), .sum = pick_sum()};
    sum_fn variants[2] = {job.sum, job.sum};
#if defined(__x86_64__)
    if (job.sum == sum_avx512) variants[1] = sum_avx512_pf;
#endif
    (void)sum_scalar;
    double best = INFINITY;
    for (int r = 0; r < 12; r++) {
        job.sum = variants[r % 2];
        double t0 = ar_now();
        ar_pool_run(pool, bw_read, &job);
        double t = ar_now() - t0;
        if (r > 1 && t < best) best = t;
    }
    ar_aligned_free(buf);
    return bytes / best / 1e9;
}

/* ---- integer peak ----
 * The rate of 512-bit vpdpbusd (64 int8 multiply-adds each) that the threads reach together, on
 * 12 independent registers: the roof of the VNNI kernels, whose every weight block and column
 * costs a fixed count of them (a Q4_0 block of 16 rows, 8). Written in assembly so that the
 * compiler neither folds nor spills it; only where AVX-512 VNNI is the level in use. */
#define DP_ROUNDS 20000000 /* of 12 instructions: about 0.07 s a thread at 3.5 GHz */

typedef struct dp_job {
    double seconds[1024];
} dp_job;

__attribute__((target("avx512f,avx512vnni"))) static void dp_run(void *arg, int ith, int nth) {
    (void)nth;
    dp_job *j = arg;
    const double t0 = ar_now();
    for (long r = 0; r < DP_ROUNDS; r++)
        __asm__ volatile("vpdpbusd %%zmm16, %%zmm17, %%zmm18\n\tvpdpbusd %%zmm16, %%zmm17, %%zmm19\n\t"
                         "vpdpbusd %%zmm16, %%zmm17, %%zmm20\n\tvpdpbusd %%zmm16, %%zmm17, %%zmm21\n\t"
                         "vpdpbusd %%zmm16, %%zmm17, %%zmm22\n\tvpdpbusd %%zmm16, %%zmm17, %%zmm23\n\t"
                         "vpdpbusd %%zmm16, %%zmm17, %%zmm24\n\tvpdpbusd %%zmm16, %%zmm17, %%zmm25\n\t"
                         "vpdpbusd %%zmm16, %%zmm17, %%zmm26\n\tvpdpbusd %%zmm16, %%zmm17, %%zmm27\n\t"
                         "vpdpbusd %%zmm16, %%zmm17, %%zmm28\n\tvpdpbusd %%zmm16, %%zmm17, %%zmm29"
                         ::: "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
                             "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29");
    j->seconds[ith] = ar_now() - t0;
}

/* Integer GOP/s (2 per multiply-add) of the best of three rounds, or 0 below AVX-512 VNNI. */
static double measure_int8_peak(ar_pool *pool, int threads) {
    if (ar_cpu()->level < AR_SIMD_AVX512VNNI) return 0;
    dp_job job;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        ar_pool_run(pool, dp_run, &job);
        double ops = 0;
        for (int t = 0; t < threads && t < 1024; t++)
            ops += 12.0 * DP_ROUNDS * 64 * 2 / job.seconds[t];
        best = AR_MAX(best, ops / 1e9);
    }
    return best;
}

/* ---- random data ---- */

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rand_value(uint64_t *s) { /* roughly N(0, 1) */
    uint64_t r = next_rand(s);
    int32_t sum = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) +
                  (int32_t)((r >> 32) & 0xffff) + (int32_t)(r >> 48);
    return (float)(sum - 131070) * (1.0f / 37837.2f);
}

/* A weight of `rows` rows in format t: POOL_ROWS quantized rows repeated. */
static void fill_weights(ar_type t, uint8_t *dst, int64_t rows, size_t row_bytes) {
    const ar_type_traits *tt = ar_type_get(t);
    float x[K_COLS];
    uint64_t s = 0x2545F4914F6CDD1Dull ^ (uint64_t)t;
    for (int64_t r = 0; r < AR_MIN(rows, POOL_ROWS); r++) {
        for (int i = 0; i < K_COLS; i++) x[i] = rand_value(&s) * 0.05f;
        tt->from_float(x, dst + (size_t)r * row_bytes, K_COLS);
    }
    for (int64_t r = POOL_ROWS; r < rows; r++)
        memcpy(dst + (size_t)r * row_bytes, dst + (size_t)(r % POOL_ROWS) * row_bytes, row_bytes);
}

/* ---- the command ---- */

static void usage(FILE *f) {
    fputs("usage: arbor bench kernels [options]\n"
          "  -t N             threads (default: one per online CPU)\n"
          "  --formats LIST   comma-separated formats (default: f32,f16,bf16,q4_0,q4_1,q5_0,q5_1,\n"
          "                   q8_0,q2_K,q3_K,q4_K,q5_K,q6_K)\n"
          "  --n LIST         comma-separated batch sizes (default: 1,2,4,8,16,32,64)\n"
          "  --mb MB          bytes of each weight matrix and of the bandwidth buffer (default:\n"
          "                   twice the last-level cache, at least 64 MB)\n"
          "  --no-repack      read the weights in place (default: packed, as models are, for\n"
          "                   the formats this CPU has packed kernels for)\n"
          "  --json FILE      write the figures as JSON\n",
          f);
}

/* Splits a comma-separated list; returns the count or -1 (message printed). */
static int parse_list(const char *flag, const char *v, int *out, int cap, bool formats) {
    int n = 0;
    for (const char *p = v; *p;) {
        size_t len = strcspn(p, ",");
        char item[32];
        if (len == 0 || len >= sizeof item)
            return cli_error(0, "invalid value '%s' for %s", v, flag), -1;
        memcpy(item, p, len);
        item[len] = 0;
        if (n == cap) return cli_error(0, "%s: at most %d items", flag, cap), -1;
        if (formats) {
            int t = ar_type_from_name(item);
            bool known = false;
            for (size_t i = 0; i < AR_ARRAY_LEN(all_formats); i++)
                known |= (int)all_formats[i] == t;
            if (!known)
                return cli_error(0, "invalid value '%s' for %s: not a weight format", item, flag),
                       -1;
            out[n++] = t;
        } else {
            int64_t x;
            if (!cli_parse_i64(flag, item, 1, 64, &x)) return -1;
            out[n++] = (int)x;
        }
        p += len;
        if (*p == ',') p++;
    }
    if (n == 0) return cli_error(0, "%s: empty list", flag), -1;
    return n;
}

typedef struct kernel_result {
    ar_type type;
    int n;
    double seconds, gflops, gbs;
} kernel_result;

int bench_kernels(int argc, char **argv) {
    int threads = 0, formats[AR_ARRAY_LEN(all_formats)], ns[16];
    int n_formats = 0, n_ns = 0;
    int64_t mb = 0;
    const char *json = NULL;
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
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1024, &x)) return 2;
            threads = (int)x;
        } else if (!strcmp(a, "--formats")) {
            NEED_VALUE();
            if ((n_formats = parse_list(a, v, formats, (int)AR_ARRAY_LEN(formats), true)) < 0)
                return 2;
        } else if (!strcmp(a, "--n")) {
            NEED_VALUE();
            if ((n_ns = parse_list(a, v, ns, (int)AR_ARRAY_LEN(ns), false)) < 0) return 2;
        } else if (!strcmp(a, "--mb")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 16, &mb)) return 2;
        } else if (!strcmp(a, "--json")) {
            NEED_VALUE();
            json = v;
        } else if (!strcmp(a, "--no-repack")) {
            repack = false;
        } else {
            return cli_error(2, "bench kernels: unknown flag '%s' (see --help)", a);
        }
#undef NEED_VALUE
    }
    if (threads <= 0) threads = bench_default_threads();
    if (n_formats == 0)
        for (size_t i = 0; i < AR_ARRAY_LEN(all_formats); i++)
            formats[n_formats++] = all_formats[i];
    if (n_ns == 0)
        for (int b = 0; b < BENCH_BATCH_SIZES; b++) ns[n_ns++] = bench_batch_sizes[b];
    int max_n = 1;
    for (int i = 0; i < n_ns; i++) max_n = AR_MAX(max_n, ns[i]);

    bench_machine machine;
    bench_machine_get(&machine, threads);
    size_t bytes = mb > 0 ? (size_t)mb << 20
                          : (size_t)AR_MIN(AR_MAX(2 * machine.llc_bytes, (uint64_t)64 << 20),
                                           (uint64_t)1 << 30);

    int rc = 1;
    ar_pool *pool = NULL;
    ar_matmul_scratch *scratch = NULL;
    uint8_t *w = NULL;
    float *x = NULL, *y = NULL;
    kernel_result *res = calloc((size_t)n_formats * (size_t)n_ns, sizeof *res);
    int n_res = 0;
    if (!res || ar_pool_create(threads, NULL, &pool) != AR_OK ||
        ar_matmul_scratch_create(max_n, K_COLS, &scratch) != AR_OK) {
        cli_error(1, "%s", ar_last_error()[0] ? ar_last_error() : "out of memory");
        goto done;
    }
    bench_progress pr;
    bench_progress_start(&pr);
    bench_progress_update(&pr, "measuring memory bandwidth");
    double bw = measure_bandwidth(pool, bytes);
    bench_progress_update(&pr, "measuring the integer peak");
    const double int_peak = measure_int8_peak(pool, threads);
    /* the largest matrix: the format with the fewest bytes per row gets the most rows */
    int64_t max_rows = 0;
    for (int f = 0; f < n_formats; f++)
        max_rows = AR_MAX(max_rows, (int64_t)(bytes / ar_row_size(formats[f], K_COLS)));
    w = ar_aligned_alloc(bytes);
    x = ar_aligned_alloc((size_t)max_n * K_COLS * sizeof(float));
    y = ar_aligned_alloc((size_t)max_n * (size_t)max_rows * sizeof(float));
    if (!w || !x || !y || !isfinite(bw)) {
        bench_progress_end(&pr);
        cli_error(1, "out of memory for %zu-byte buffers", bytes);
        goto done;
    }
    uint64_t seed = 88172645463325252ull;
    for (size_t i = 0; i < (size_t)max_n * K_COLS; i++) x[i] = rand_value(&seed);

    printf("%s, %d threads (%s); weight matrices of %.0f MB, rows of %d values\n", machine.cpu,
           threads, machine.simd, bytes / 1e6, K_COLS);
    printf("memory bandwidth bound (streaming read of %.0f MB): %.2f GB/s\n", bytes / 1e6, bw);
    if (int_peak > 0)
        printf("integer peak (512-bit vpdpbusd, all threads): %.1f GOP/s\n", int_peak);
    printf("%-6s  %-10s  %-8s  %3s  %10s  %9s  %8s  %7s  %7s\n", "format", "path", "layout", "n",
           "ms/call", "GFLOP/s", "GB/s", "of bw", "of int");
    fflush(stdout);
    for (int f = 0; f < n_formats; f++) {
        const ar_type t = (ar_type)formats[f];
        const ar_type_traits *tt = ar_type_get(t);
        const size_t row_bytes = ar_row_size(t, K_COLS);
        const int64_t rows = (int64_t)(bytes / row_bytes);
        bench_progress_update(&pr, "%s: filling %.0f MB", tt->name, bytes / 1e6);
        fill_weights(t, w, rows, row_bytes);
        ar_tensor W = {
            .name = tt->name, .type = t, .ne = {K_COLS, rows, 1, 1}, .nb1 = row_bytes, .data = w};
        const size_t packed_bytes = repack ? ar_matmul_packed_bytes(&W) : 0;
        void *packed = packed_bytes ? ar_aligned_alloc(packed_bytes) : NULL;
        if (packed) {
            bench_progress_update(&pr, "%s: packing", tt->name);
            ar_matmul_repack(&W, packed);
            W.packed = packed;
        }
        ar_matmul(scratch, pool, &W, x, 1, y); /* warm-up */
        for (int b = 0; b < n_ns; b++) {
            const int n = ns[b];
            double best = INFINITY, spent = 0;
            for (int k = 0; k < MAX_TIMED && (k == 0 || spent < MIN_SECONDS); k++) {
                bench_progress_update(&pr, "%s: n = %d", tt->name, n);
                double t0 = ar_now();
                ar_matmul(scratch, pool, &W, x, n, y);
                double el = ar_now() - t0;
                spent += el;
                best = AR_MIN(best, el);
            }
            kernel_result *r = &res[n_res++];
            *r = (kernel_result){.type = t, .n = n, .seconds = best};
            r->gflops = 2.0 * K_COLS * (double)rows * n / best / 1e9;
            r->gbs = (double)rows * (double)row_bytes / best / 1e9;
            bench_progress_end(&pr);
            /* the integer formats' products run on vpdpbusd; the float ones' do not */
            const bool integer =
                int_peak > 0 && t != AR_TYPE_F32 && t != AR_TYPE_F16 && t != AR_TYPE_BF16;
            char of_int[16] = "-";
            if (integer) snprintf(of_int, sizeof of_int, "%.0f%%", 100 * r->gflops / int_peak);
            printf("%-6s  %-10s  %-8s  %3d  %10.3f  %9.2f  %8.2f  %6.0f%%  %7s\n", tt->name,
                   tt->fast_path, packed ? "packed" : "in place", n, best * 1e3, r->gflops, r->gbs,
                   100 * r->gbs / bw, of_int);
            fflush(stdout);
        }
        ar_aligned_free(packed);
    }
    bench_progress_end(&pr);
    printf("GFLOP/s: 2 x rows x %d x n per call; GB/s: weight bytes per call; of bw: GB/s against "
           "the streaming-read bound; of int: GFLOP/s against the integer peak\n",
           K_COLS);
    printf("peak RSS: %.0f MB\n", bench_rss_process_peak() / 1e6);
    rc = 0;
    if (json) {
        FILE *fj = fopen(json, "w");
        if (!fj) {
            rc = cli_error(1, "cannot write %s: %s", json, strerror(errno));
            goto done;
        }
        bench_json j = {.f = fj};
        bj_object(&j, NULL);
        bj_str(&j, "benchmark", "kernels");
        bj_str(&j, "arbor_version", arbor_version());
        bj_machine(&j, &machine);
        bj_num(&j, "bandwidth_gb_per_s", bw);
        if (int_peak > 0) bj_num(&j, "int8_peak_gop_per_s", int_peak);
        bj_int(&j, "matrix_bytes", (int64_t)bytes);
        bj_int(&j, "cols", K_COLS);
        bj_array(&j, "kernels");
        for (int i = 0; i < n_res; i++) {
            const ar_type_traits *tt = ar_type_get(res[i].type);
            bj_object(&j, NULL);
            bj_str(&j, "format", tt->name);
            bj_str(&j, "path", tt->fast_path);
            bj_int(&j, "n", res[i].n);
            bj_int(&j, "rows", (int64_t)(bytes / ar_row_size(res[i].type, K_COLS)));
            bj_num(&j, "seconds", res[i].seconds);
            bj_num(&j, "gflop_per_s", res[i].gflops);
            bj_num(&j, "gb_per_s", res[i].gbs);
            bj_num(&j, "bandwidth_fraction", res[i].gbs / bw);
            bj_end_object(&j);
        }
        bj_end_array(&j);
        bj_int(&j, "peak_rss_bytes", (int64_t)bench_rss_process_peak());
        bj_end_object(&j);
        bool bad = ferror(fj) != 0;
        if (fclose(fj) != 0 || bad) rc = cli_error(1, "error writing %s", json);
    }
done:
    ar_aligned_free(w);
    ar_aligned_free(x);
    ar_aligned_free(y);
    ar_matmul_scratch_free(scratch);
    ar_pool_free(pool);
    free(res);
    return rc;
}
