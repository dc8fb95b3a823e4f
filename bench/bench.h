/* bench.h: the `arbor bench` subcommands and what they share: a description of the machine and
 * of model files, peak-RSS measurement, medians, a progress line, and a small JSON writer.
 *
 *   arbor bench [spec options]   the default pair (synthesized and cached) or -m/-md: bench_spec.c
 *   arbor bench spec ...         plain decoding against speculation modes, through include/arbor.h
 *   arbor bench decode ...       plain decoding and the batch cost curve (runtime: ar_model_eval)
 *   arbor bench kernels ...      matmul GFLOP/s and GB/s per format and batch size (ar_matmul)
 *   arbor bench tokenize ...     tokenizer throughput (bench_tokenize.c) */
#ifndef ARBOR_BENCH_H
#define ARBOR_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Subcommands: argv[0] is the subcommand's name; they return the process exit status. */
int bench_spec(int argc, char **argv); /* also `arbor bench` without a subcommand */
int bench_decode(int argc, char **argv);
int bench_kernels(int argc, char **argv);
int bench_tokenize(int argc, char **argv); /* bench_tokenize.c */

/* The fixtures' llama-spm tokenizer, the default of `arbor synth` (cmd_synth.c). */
bool synth_default_vocab(char *out, size_t cap);

/* ---- the machine and the models (bench_common.c) ---- */
typedef struct bench_machine {
    char cpu[128];      /* model name */
    int cores;          /* online logical CPUs */
    int threads;        /* threads the benchmark used */
    const char *simd;   /* kernel path chosen at run time: "avx2", "avx512vnni", ... */
    uint64_t llc_bytes; /* last-level cache (0: unknown) */
} bench_machine;
void bench_machine_get(bench_machine *m, int threads);
/* Online CPUs (the API's default thread count). */
int bench_default_threads(void);

typedef struct bench_model_desc {
    char path[1024];
    char arch[32];
    char format[16]; /* the format holding most of the 2-D weights' bytes */
    int32_t n_layer;
    uint64_t bytes; /* file size */
} bench_model_desc;
/* Reads the file's header (no weights are loaded). False, with the error line set, on failure. */
bool bench_describe_model(const char *path, bench_model_desc *out);

/* ---- measurement ---- */
/* Starts a new peak-RSS window (Linux: /proc/self/clear_refs); later bench_rss_peak() reports the
 * peak since then, or the process's peak (getrusage) where windows are not supported. */
void bench_rss_reset_peak(void);
uint64_t bench_rss_peak(void);
/* The process's resident set size now (VmRSS), or its peak where that is unknown. */
uint64_t bench_rss_current(void);
/* The process's peak RSS (getrusage ru_maxrss) in bytes. */
uint64_t bench_rss_process_peak(void);
double bench_median(const double *v, int n);

/* A progress line on stderr once a run has taken more than a few seconds: rewritten in place on
 * a terminal, a line every 10 s otherwise. */
typedef struct bench_progress {
    double t0, last;
    bool tty, shown;
} bench_progress;
void bench_progress_start(bench_progress *p);
void bench_progress_update(bench_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bench_progress_end(bench_progress *p);

/* ---- JSON output ---- */
typedef struct bench_json {
    FILE *f;
    int depth;
    bool need_comma[32];
} bench_json;
/* key is NULL for array elements and the top-level value. */
void bj_object(bench_json *j, const char *key);
void bj_array(bench_json *j, const char *key);
void bj_end_object(bench_json *j);
void bj_end_array(bench_json *j);
void bj_str(bench_json *j, const char *key, const char *v); /* NULL: null */
void bj_num(bench_json *j, const char *key, double v);      /* not finite: null */
void bj_int(bench_json *j, const char *key, int64_t v);
void bj_bool(bench_json *j, const char *key, bool v);
void bj_null(bench_json *j, const char *key);
void bj_machine(bench_json *j, const bench_machine *m);
/* The generation settings every benchmark's "config" object starts with. */
void bj_generation(bench_json *j, int32_t n_predict, int32_t reps, int32_t n_ctx, int32_t threads,
                   float temp);
void bj_model(bench_json *j, const bench_model_desc *d);

/* ---- memory budgets (bench_budget.c), for `bench spec --mem-budget` ---- */
typedef struct bench_budget_opts {
    const char *target;
    const char *const *modes;    /* [n_runs] as `--modes` spells them; modes[0] is plain */
    const char *const *drafters; /* [n_runs] the -md value of each, NULL for plain */
    int n_runs;
    const uint64_t *budgets;
    int n_budgets;
    const char *const *prompts;
    int n_prompts;
    int32_t n_predict, threads, reps, n_ctx;
    float temp;
    uint64_t seed;
    bool cgroup;      /* each run in a cgroup-v1 memory group limited to the budget */
    uint64_t read_bps; /* with cgroup: reads throttled to this many bytes per second (0: not) */
    bool drop_caches; /* drop the page cache before each run */
    const char *json, *csv, *plot;
} bench_budget_opts;
int bench_budget_sweep(const bench_budget_opts *o, const bench_machine *m);
/* A `--modes` entry onto context parameters (bench_spec.c): sets cp->tree (pointing into tree)
 * and the options after '+'; false with a message for an unknown option. */
struct arbor_context_params;
bool bench_mode_apply(const char *mode, char tree[64], struct arbor_context_params *cp);

/* ---- the batch cost curve (bench_decode.c), shared with `bench spec --plot` ---- */
#define BENCH_BATCH_SIZES 7
extern const int32_t bench_batch_sizes[BENCH_BATCH_SIZES]; /* 1, 2, 4, ..., 64 */
/* Tokens/s of one forward pass of an n-row chain after a committed prefix, for each batch size
 * (ar_model_eval). False with the error line set on failure. */
bool bench_batch_curve(const char *model_path, int threads, bool repack,
                       double tokens_per_s[BENCH_BATCH_SIZES], double seconds[BENCH_BATCH_SIZES],
                       bench_progress *progress);

#endif
