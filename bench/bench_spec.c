/* bench_spec.c: `arbor bench spec` (and `arbor bench`): plain decoding against speculation modes,
 * side by side in one process. Everything measured goes through the public API (include/arbor.h):
 * one context per mode, created and warmed up before timing starts and reset before each run,
 * greedy decoding of N tokens past EOS, statistics from arbor_get_stats. Runs alternate
 * (repetition, prompt, mode) so slow drift of the machine affects every mode alike; each mode's
 * figure is the median over repetitions of its tokens/s over the prompt set. Peak RSS is what a
 * mode would hold alone: the verifier's resident weights plus what its context and drafter add
 * (high-water marks measured around its creation and its runs).
 *
 * Without -m it benchmarks the default pair: a TinyLlama-shaped Q4_0 verifier whose layers from
 * 2 on have output projections scaled by 0.05 (greedy acceptance about 0.7), and its 2-layer
 * drafter, synthesized once into $XDG_CACHE_HOME/arbor (else ~/.cache/arbor) and reused; with
 * fewer prompts, tokens and repetitions, so that it finishes in minutes on two cores. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arbor.h"
#include "bench.h"
#include "sched/treespec.h"
#include "src/core/cache.h"
#include "bench/args.h"
#include "bench/synth.h"

#define MAX_MODES    32
#define MAX_DRAFTERS 8
#define MAX_RUNS     (1 + MAX_MODES * MAX_DRAFTERS)
#define MAX_REPS     64
#define MAX_PROMPTS  16

/* The default pair and what the default run measures (docs/benchmarks.md). */
#define DEFAULT_PRESET       "tinyllama"
#define DEFAULT_TYPE         AR_TYPE_Q4_0
#define DEFAULT_EPS          0.05f
#define DEFAULT_DRAFT_LAYERS 2
#define DEFAULT_SEED         1
#define DEFAULT_MODES        "plain;chain:4;dynamic:8;adaptive"
#define DEFAULT_N            32 /* the default run is sized for five minutes on two cores */
#define DEFAULT_REPS         2
#define DEFAULT_PROMPTS      2 /* the two short prompts: prefill is not what is measured */
#define SPEC_MODES           "plain;chain:4;static:4x2x1;dynamic:16;adaptive"

static const char *const default_prompts[] = {
    "Once upon a time",
    "The little dog saw a",
    ("Tom and his mom went to the park. They saw a big red ball under a tree, and Tom wanted to "
     "play with it."),
};

typedef struct run_entry {
    char mode[64];
    const char *drafter; /* the -md value; NULL for plain */
    int budget;          /* draft nodes per verification (plot); -1: adaptive */
    bool unavailable;
    char error[256];
    arbor_context *ctx;       /* lives for the whole benchmark (see open_entry) */
    arbor_model *draft_model; /* this entry's own instance of a drafter file */
    uint64_t rss_added;       /* resident bytes its context and drafter added */
    uint64_t rss_run_added;   /* the most a timed run added on top */
    /* per repetition */
    int n_reps;
    double rep_tps[MAX_REPS];
    int64_t rep_generated;
    double rep_seconds;
    /* over all runs */
    int64_t generated, n_verify, n_drafted, n_accepted, accepted_first;
    double gen_seconds, draft_seconds, verify_seconds;
    uint64_t peak_rss; /* the verifier's resident weights + rss_added + rss_run_added */
    /* results */
    double tokens_per_s, speedup, acceptance, accept_first, mean_accepted, draft_share,
        verify_share;
} run_entry;

typedef struct opts {
    const char *target;
    const char *drafters[MAX_DRAFTERS];
    int n_drafters;
    char *modes[MAX_MODES];
    int n_modes;
    const char *prompts[MAX_PROMPTS];
    int n_prompts;
    int32_t n_predict, threads, reps, n_ctx;
    float temp;
    uint64_t seed;
    const char *json, *csv, *plot, *vocab;
    bool default_pair;
    const char *budget_list; /* --mem-budget */
    bool cgroup, no_drop;
    uint64_t read_bps;
} opts;

static void usage(FILE *f) {
    fputs(
        "usage: arbor bench [spec] [-m TARGET.gguf -md DRAFT] [options]\n"
        "  -m FILE              the verifier (none: the default pair, synthesized and cached)\n"
        "  -md DRAFT            drafter: DRAFT.gguf, self:M or lookup (repeatable: each mode\n"
        "                       runs with each drafter)\n"
        "  --modes LIST         ';'-separated modes as `arbor generate --tree` spells them, plus\n"
        "                       plain (no drafter); default '" SPEC_MODES "'\n"
        "                       (default pair: '" DEFAULT_MODES "'); a mode may end in\n"
        "                       options: +pipeline, +pin (threads pinned by the hwloc plan),\n"
        "                       +nopin (the default), e.g. 'adaptive+pipeline+pin', 'plain+pin'\n"
        "  --mode M             add one mode (repeatable)\n"
        "  -n N                 tokens generated per run (default 64; default pair: 32)\n"
        "  -t N                 threads (default: one per online CPU)\n"
        "  --reps R             repetitions (default 3, default pair 2; the median is reported)\n"
        "  -p PROMPT            use this prompt (repeatable; default: a fixed set of 3, default\n"
        "                       pair: its first 2)\n"
        "  -c N                 context size (default: what the prompts and N need)\n"
        "  --temp T             sampling temperature (default 0: greedy)\n"
        "  --seed S             sampling seed (default 0)\n"
        "  --json FILE          write every figure as JSON\n"
        "  --csv FILE           one row per run\n"
        "  --plot FILE.png      speedup against tree budget and the batch cost curve (gnuplot)\n"
        "  --vocab FILE         tokenizer for synthesizing the default pair\n"
        "  --mem-budget LIST    ','-separated memory budgets (450M, 1.5G, or a percentage of\n"
        "                       the verifier's file: 25%,50%,75%,100%): every mode at every\n"
        "                       budget, each run a fresh process with the page cache dropped\n"
        "  --cgroup             with --mem-budget: each run inside a cgroup-v1 memory group\n"
        "                       limited to its budget (root)\n"
        "  --read-bps RATE      with --cgroup: throttle reads to RATE bytes/s (e.g. 800MB)\n"
        "  --no-drop-caches     with --mem-budget: keep the page cache between runs\n",
        f);
}

/* ---- mode lists ---- */

static bool add_mode(opts *o, const char *m, size_t len) {
    while (len && (*m == ' ' || *m == '\t')) m++, len--;
    while (len && (m[len - 1] == ' ' || m[len - 1] == '\t')) len--;
    if (!len) return true;
    if (len >= sizeof((run_entry *)0)->mode)
        return cli_error(0, "mode '%.*s' too long", (int)len, m), false;
    for (int i = 0; i < o->n_modes; i++)
        if (strlen(o->modes[i]) == len && !memcmp(o->modes[i], m, len)) return true;
    if (o->n_modes == MAX_MODES) return cli_error(0, "at most %d modes", MAX_MODES), false;
    char *copy = strndup(m, len);
    if (!copy) return false;
    o->modes[o->n_modes++] = copy;
    return true;
}

static bool add_mode_list(opts *o, const char *list) {
    for (const char *p = list;;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        if (!add_mode(o, p, len)) return false;
        if (!semi) return true;
        p = semi + 1;
    }
}

/* Draft nodes per verification of a tree (or plain), for the plot's x axis; -1 for adaptive, -2
 * when invalid. */
static int mode_budget(const char *tree) {
    if (!strcmp(tree, "plain")) return 0;
    ar_tree_spec spec;
    if (ar_tree_spec_parse(tree, &spec) != AR_OK) return -2;
    return spec.adaptive ? -1 : spec.shape.budget;
}

/* A mode is a tree (or plain) and options after '+': pipeline, pin, nopin (the default:
 * threads are not pinned, as in a library's default context). Sets cp's tree (pointing into
 * `tree`) and options; false with a message for an unknown option. */
bool bench_mode_apply(const char *mode, char tree[64], arbor_context_params *cp) {
    const size_t len = strcspn(mode, "+");
    snprintf(tree, 64, "%.*s", (int)len, mode);
    cp->tree = tree;
    for (const char *p = mode + len; *p == '+';) {
        const char *opt = p + 1;
        const size_t n = strcspn(opt, "+");
        if (n == 8 && !memcmp(opt, "pipeline", n))
            cp->pipeline = true;
        else if (n == 3 && !memcmp(opt, "pin", n))
            cp->pin_threads = true;
        else if (n == 5 && !memcmp(opt, "nopin", n))
            cp->pin_threads = false;
        else
            return cli_error(0, "mode '%s': unknown option '%.*s' (pipeline, pin, nopin)", mode,
                             (int)n, opt),
                   false;
        p = opt + n;
    }
    return true;
}

/* ---- the default pair ---- */

static bool cache_dir(char *out, size_t cap) {
    if (ar_cache_dir(out, cap) != AR_OK) return cli_error(0, "bench: %s", ar_last_error()), false;
    return true;
}

static void on_synth_progress(void *user, uint64_t done, uint64_t total) {
    bench_progress_update(user, "synthesizing: %.0f%% of %.2f GB", 100.0 * done / total,
                          total / 1e9);
}

/* Synthesizes the default pair into the cache unless it is there; fills the two paths. */
static bool default_pair(const opts *o, char *target, char *draft, size_t cap) {
    char dir[PATH_MAX], vocab_buf[PATH_MAX];
    if (!cache_dir(dir, sizeof dir)) return false;
    const char *vocab = o->vocab;
    if (!vocab) {
        if (!synth_default_vocab(vocab_buf, sizeof vocab_buf))
            return cli_error(0, "bench: no tokenizer for the default pair: give --vocab FILE.gguf "
                                "(e.g. ../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf) "
                                "or set ARBOR_FIXTURES"),
                   false;
        vocab = vocab_buf;
    }
    /* the tokenizer's file name and the generator version are part of the cache key */
    const char *base = strrchr(vocab, '/');
    base = base ? base + 1 : vocab;
    if (!strncmp(base, "ggml-vocab-", 11)) base += 11;
    int blen = (int)strcspn(base, ".");
    const ar_type_traits *tt = ar_type_get(DEFAULT_TYPE);
    int k1 = snprintf(target, cap, "%s/%s-%s-eps%g-seed%d-%.*s-v%d.gguf", dir, DEFAULT_PRESET,
                      tt->name, (double)DEFAULT_EPS, DEFAULT_SEED, blen, base, AR_SYNTH_VERSION);
    int k2 = snprintf(draft, cap, "%.*s-draft%d.gguf", k1 - 5, target, DEFAULT_DRAFT_LAYERS);
    if (k1 <= 0 || k2 <= 0 || (size_t)k1 >= cap || (size_t)k2 >= cap)
        return cli_error(0, "bench: cache path too long"), false;
    if (access(target, R_OK) != 0) {
        fprintf(stderr, "arbor: synthesizing the default verifier (once) into %s\n", target);
        ar_synth_params sp = ar_synth_default_params();
        sp.shape = *ar_synth_preset(DEFAULT_PRESET);
        sp.type = DEFAULT_TYPE;
        sp.vocab_path = vocab;
        sp.seed = DEFAULT_SEED;
        sp.eps = DEFAULT_EPS;
        sp.eps_layer = DEFAULT_DRAFT_LAYERS;
        sp.n_threads = o->threads;
        bench_progress pr;
        bench_progress_start(&pr);
        sp.progress = on_synth_progress;
        sp.progress_user = &pr;
        ar_status s = ar_synth_write(&sp, target);
        bench_progress_end(&pr);
        if (s != AR_OK) return cli_error(0, "%s", ar_last_error()), false;
    }
    if (access(draft, R_OK) != 0) {
        fprintf(stderr, "arbor: writing its %d-layer drafter into %s\n", DEFAULT_DRAFT_LAYERS,
                draft);
        if (ar_synth_drafter(target, DEFAULT_DRAFT_LAYERS, draft) != AR_OK)
            return cli_error(0, "%s", ar_last_error()), false;
    }
    return true;
}

/* ---- running ---- */

/* Creates the entry's context (and loads its drafter), then runs a short untimed generation: it
 * faults the weights in and lets the context do its one-time work (the adaptive scheduler times
 * the verifier's batch sizes at its first speculative step), which a served context does once,
 * not per prompt. Returns 0, 1 when the mode is unavailable (e->error says why), -1 on a failure
 * that ends the benchmark. */
static int open_entry(const arbor_model *target, const opts *o, run_entry *e) {
    arbor_context_params cp = arbor_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->threads;
    char tree[64];
    if (!bench_mode_apply(e->mode, tree, &cp)) return -1;
    if (!e->drafter) cp.tree = NULL;
    const uint64_t before = bench_rss_current();
    bench_rss_reset_peak();
    if (e->drafter) {
        if (!strcmp(e->drafter, "lookup")) {
            cp.draft_kind = ARBOR_DRAFT_LOOKUP;
        } else if (!strncmp(e->drafter, "self:", 5)) {
            cp.draft_kind = ARBOR_DRAFT_SELF;
            cp.draft_self_layers = atoi(e->drafter + 5);
        } else {
            arbor_model_params dp = arbor_model_default_params();
            dp.resident = true; /* as arbor generate loads drafters */
            if (arbor_model_load(e->drafter, dp, &e->draft_model) != ARBOR_OK) {
                snprintf(e->error, sizeof e->error, "%s", arbor_last_error());
                return 1;
            }
            cp.draft_kind = ARBOR_DRAFT_MODEL;
            cp.draft_model = e->draft_model;
        }
    }
    if (arbor_context_create(target, cp, &e->ctx) != ARBOR_OK) {
        snprintf(e->error, sizeof e->error, "%s", arbor_last_error());
        arbor_model_free(e->draft_model);
        e->draft_model = NULL;
        return 1;
    }
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = AR_MIN(8, o->n_predict);
    gp.ignore_eos = true;
    gp.sampling.temp = o->temp;
    gp.sampling.seed = o->seed;
    if (arbor_generate(e->ctx, o->prompts[0], &gp, NULL, NULL) != ARBOR_OK) {
        cli_error(0, "bench: %s (%s): %s", e->mode, e->drafter ? e->drafter : "no drafter",
                  arbor_last_error());
        return -1;
    }
    const uint64_t peak = bench_rss_peak();
    e->rss_added = peak > before ? peak - before : 0;
    return 0;
}

static void close_entry(run_entry *e) {
    arbor_context_free(e->ctx);
    arbor_model_free(e->draft_model);
    e->ctx = NULL;
    e->draft_model = NULL;
}

/* One timed generation: N tokens from `prompt`, the cache reset first so every run evaluates
 * its prompt alike. False on failure (message printed). */
static bool run_once(const opts *o, run_entry *e, const char *prompt, arbor_stats *st) {
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = o->n_predict;
    gp.ignore_eos = true;
    gp.sampling.temp = o->temp;
    gp.sampling.seed = o->seed;
    arbor_context_reset(e->ctx);
    const uint64_t before = bench_rss_current();
    bench_rss_reset_peak();
    if (arbor_generate(e->ctx, prompt, &gp, NULL, NULL) != ARBOR_OK) {
        cli_error(0, "bench: %s (%s): %s", e->mode, e->drafter ? e->drafter : "no drafter",
                  arbor_last_error());
        return false;
    }
    const uint64_t peak = bench_rss_peak();
    e->rss_run_added = AR_MAX(e->rss_run_added, peak > before ? peak - before : 0);
    arbor_get_stats(e->ctx, st);
    return true;
}

static void add_result(run_entry *e, const arbor_stats *st) {
    e->rep_generated += st->n_generated;
    e->rep_seconds += st->generate_seconds;
    e->generated += st->n_generated;
    e->gen_seconds += st->generate_seconds;
    e->n_verify += st->n_verify;
    e->n_drafted += st->n_drafted;
    e->n_accepted += st->n_accepted;
    e->accepted_first += st->accepted_at_depth[0];
    e->draft_seconds += st->draft_seconds;
    e->verify_seconds += st->verify_seconds;
}

static double ratio(double a, double b) {
    return b > 0 ? a / b : NAN;
}

static void finish(run_entry *runs, int n_runs) {
    for (int i = 0; i < n_runs; i++) {
        run_entry *e = &runs[i];
        if (e->unavailable) continue;
        e->tokens_per_s = bench_median(e->rep_tps, e->n_reps);
        e->acceptance = e->drafter ? ratio((double)e->n_accepted, (double)e->n_drafted) : NAN;
        e->accept_first = e->drafter ? ratio((double)e->accepted_first, (double)e->n_verify) : NAN;
        e->mean_accepted = e->drafter ? ratio((double)e->n_accepted, (double)e->n_verify) : NAN;
        e->draft_share = ratio(e->draft_seconds, e->gen_seconds);
        e->verify_share = ratio(e->verify_seconds, e->gen_seconds);
        if (!e->drafter) e->draft_share = e->verify_share = NAN; /* plain: no such phases */
    }
    double base = runs[0].tokens_per_s; /* runs[0] is plain */
    for (int i = 0; i < n_runs; i++)
        runs[i].speedup = runs[i].unavailable ? NAN : ratio(runs[i].tokens_per_s, base);
}

/* ---- output ---- */

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The drafter as the table shows it: a file's base name (JSON and CSV keep the path). */
static const char *label(const run_entry *e) {
    return e->drafter ? base_name(e->drafter) : "-";
}

static void fmt_num(char *buf, size_t cap, const char *fmt, double v) {
    if (isfinite(v))
        snprintf(buf, cap, fmt, v);
    else
        snprintf(buf, cap, "-");
}

static void print_table(const run_entry *runs, int n_runs, const bench_machine *m, const opts *o) {
    int wm = 4, wd = 7;
    for (int i = 0; i < n_runs; i++) {
        wm = AR_MAX(wm, (int)strlen(runs[i].mode));
        wd = AR_MAX(wd, (int)strlen(label(&runs[i])));
    }
    wd = AR_MIN(wd, 40);
    printf("%s, %d threads (%s); %d prompts x %d tokens, %d repetitions, %s\n", m->cpu, m->threads,
           m->simd, o->n_prompts, o->n_predict, o->reps, o->temp > 0 ? "sampled" : "greedy");
    printf("%-*s  %-*s  %8s  %7s  %6s  %6s  %8s  %6s  %7s  %9s\n", wm, "mode", wd, "drafter",
           "tok/s", "speedup", "accept", "first", "mean acc", "draft", "verify", "peak RSS");
    for (int i = 0; i < n_runs; i++) {
        const run_entry *e = &runs[i];
        const char *d = label(e);
        size_t dl = strlen(d);
        char cut[64];
        if ((int)dl > wd) { /* keep the end of a long name */
            snprintf(cut, sizeof cut, "..%s", d + dl - (size_t)wd + 2);
            d = cut;
        }
        if (e->unavailable) {
            printf("%-*s  %-*s  unavailable: %s\n", wm, e->mode, wd, d, e->error);
            continue;
        }
        char tps[32], sp[32], acc[32], first[32], mean[32], ds[32], vs[32];
        fmt_num(tps, sizeof tps, "%.2f", e->tokens_per_s);
        fmt_num(sp, sizeof sp, "%.2fx", e->speedup);
        fmt_num(acc, sizeof acc, "%.3f", e->acceptance);
        fmt_num(first, sizeof first, "%.3f", e->accept_first);
        fmt_num(mean, sizeof mean, "%.2f", e->mean_accepted);
        fmt_num(ds, sizeof ds, "%.0f%%", 100 * e->draft_share);
        fmt_num(vs, sizeof vs, "%.0f%%", 100 * e->verify_share);
        printf("%-*s  %-*s  %8s  %7s  %6s  %6s  %8s  %6s  %7s  %6.0f MB\n", wm, e->mode, wd, d, tps,
               sp, acc, first, mean, ds, vs, e->peak_rss / 1e6);
    }
    printf("accept: accepted / drafted tokens; first: share of verifications accepting at least "
           "one token; mean acc: accepted tokens per verification; draft, verify: shares of "
           "generation time\n");
}

static bool write_json(const char *path, const run_entry *runs, int n_runs, const bench_machine *m,
                       const bench_model_desc *models, int n_models, const opts *o,
                       const double *batch_tps) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_error(0, "bench: cannot write %s: %s", path, strerror(errno)), false;
    bench_json j = {.f = f};
    bj_object(&j, NULL);
    bj_str(&j, "benchmark", "spec");
    bj_str(&j, "arbor_version", arbor_version());
    bj_machine(&j, m);
    bj_array(&j, "models");
    for (int i = 0; i < n_models; i++) bj_model(&j, &models[i]);
    bj_end_array(&j);
    bj_object(&j, "config");
    bj_generation(&j, o->n_predict, o->reps, o->n_ctx, o->threads, o->temp);
    bj_int(&j, "seed", (int64_t)o->seed);
    bj_array(&j, "prompts");
    for (int i = 0; i < o->n_prompts; i++) bj_str(&j, NULL, o->prompts[i]);
    bj_end_array(&j);
    bj_end_object(&j);
    bj_array(&j, "runs");
    for (int i = 0; i < n_runs; i++) {
        const run_entry *e = &runs[i];
        bj_object(&j, NULL);
        bj_str(&j, "mode", e->mode);
        bj_str(&j, "drafter", e->drafter);
        bj_bool(&j, "available", !e->unavailable);
        if (e->unavailable) bj_str(&j, "error", e->error);
        bj_num(&j, "tokens_per_s", e->unavailable ? NAN : e->tokens_per_s);
        bj_num(&j, "speedup", e->speedup);
        bj_num(&j, "acceptance", e->unavailable ? NAN : e->acceptance);
        bj_num(&j, "accept_first", e->unavailable ? NAN : e->accept_first);
        bj_num(&j, "mean_accepted", e->unavailable ? NAN : e->mean_accepted);
        bj_num(&j, "draft_share", e->unavailable ? NAN : e->draft_share);
        bj_num(&j, "verify_share", e->unavailable ? NAN : e->verify_share);
        if (e->unavailable)
            bj_null(&j, "peak_rss_bytes");
        else
            bj_int(&j, "peak_rss_bytes", (int64_t)e->peak_rss);
        if (e->budget >= 0)
            bj_int(&j, "tree_budget", e->budget);
        else
            bj_null(&j, "tree_budget");
        bj_int(&j, "generated", e->generated);
        bj_num(&j, "generate_seconds", e->gen_seconds);
        bj_int(&j, "verifications", e->n_verify);
        bj_int(&j, "drafted", e->n_drafted);
        bj_int(&j, "accepted", e->n_accepted);
        bj_array(&j, "tokens_per_s_reps");
        for (int r = 0; r < e->n_reps; r++) bj_num(&j, NULL, e->rep_tps[r]);
        bj_end_array(&j);
        bj_end_object(&j);
    }
    bj_end_array(&j);
    if (batch_tps) {
        bj_array(&j, "batch");
        for (int b = 0; b < BENCH_BATCH_SIZES; b++) {
            bj_object(&j, NULL);
            bj_int(&j, "n", bench_batch_sizes[b]);
            bj_num(&j, "tokens_per_s", batch_tps[b]);
            bj_end_object(&j);
        }
        bj_end_array(&j);
    }
    bj_end_object(&j);
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) return cli_error(0, "bench: error writing %s", path), false;
    return true;
}

static void csv_field(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, const char *fmt, double v) {
    fputc(',', f);
    if (isfinite(v)) fprintf(f, fmt, v);
}

static bool write_csv(const char *path, const run_entry *runs, int n_runs) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_error(0, "bench: cannot write %s: %s", path, strerror(errno)), false;
    fputs("mode,drafter,tokens_per_s,speedup,acceptance,mean_accepted,peak_rss_bytes,"
          "accept_first,draft_share,verify_share,tree_budget,generated,available\n",
          f);
    for (int i = 0; i < n_runs; i++) {
        const run_entry *e = &runs[i];
        bool ok = !e->unavailable;
        csv_field(f, e->mode);
        fputc(',', f);
        csv_field(f, e->drafter ? e->drafter : "");
        csv_num(f, "%.6g", ok ? e->tokens_per_s : NAN);
        csv_num(f, "%.6g", e->speedup);
        csv_num(f, "%.6g", ok ? e->acceptance : NAN);
        csv_num(f, "%.6g", ok ? e->mean_accepted : NAN);
        csv_num(f, "%.0f", ok ? (double)e->peak_rss : NAN);
        csv_num(f, "%.6g", ok ? e->accept_first : NAN);
        csv_num(f, "%.6g", ok ? e->draft_share : NAN);
        csv_num(f, "%.6g", ok ? e->verify_share : NAN);
        csv_num(f, "%.0f", e->budget >= 0 ? (double)e->budget : NAN);
        csv_num(f, "%.0f", (double)e->generated);
        fprintf(f, ",%s\n", ok ? "true" : "false");
    }
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) return cli_error(0, "bench: error writing %s", path), false;
    return true;
}

static bool have_gnuplot(void) {
    const char *path = getenv("PATH");
    if (!path) return false;
    char buf[PATH_MAX];
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, ":");
        if (snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)len, p) < (int)sizeof buf &&
            access(buf, X_OK) == 0)
            return true;
        p += len;
        if (*p == ':') p++;
    }
    return false;
}

/* A gnuplot single-quoted string. */
static void gp_string(FILE *gp, const char *s) {
    fputc('\'', gp);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', gp);
        if (*s != '\n') fputc(*s, gp);
    }
    fputc('\'', gp);
}

/* Left: speedup against draft nodes per verification, one colour per drafter (adaptive, which has
 * no fixed budget, as a dashed level). Right: the verifier's batch cost curve (tokens/s of one
 * n-row forward pass). */
static bool write_plot(const char *png, const run_entry *runs, int n_runs, const opts *o,
                       const double *batch_tps) {
    FILE *gp = popen("gnuplot", "w");
    if (!gp) return cli_error(0, "bench: cannot run gnuplot: %s", strerror(errno)), false;
    fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1400,560 } "
          "else { set terminal png size 1400,560 }\nset termoption noenhanced\nset output ",
          gp);
    gp_string(gp, png);
    fputs("\nset multiplot layout 1,2\nset grid\nset key top right\n"
          "set offsets 0.5, 0.5, 0.1, 0.1\nset title 'speedup over plain decoding'\n"
          "set xlabel 'draft nodes per verification'\nset ylabel 'speedup'\n",
          gp);
    for (int d = 0; d < o->n_drafters; d++) {
        fprintf(gp, "$d%d << EOD\n0 1 %s\n", d, d ? "\"\"" : "plain");
        for (int i = 0; i < n_runs; i++)
            if (runs[i].drafter == o->drafters[d] && !runs[i].unavailable && runs[i].budget > 0)
                fprintf(gp, "%d %.6g %s\n", runs[i].budget, runs[i].speedup, runs[i].mode);
        fputs("EOD\n", gp);
    }
    fputs("plot ", gp);
    if (o->n_drafters == 0) fputs("1 title 'plain'", gp);
    for (int d = 0; d < o->n_drafters; d++) {
        fprintf(gp, "%s$d%d using 1:2 with points pt 7 ps 1.5 lc %d title ", d ? ", " : "", d,
                d + 1);
        gp_string(gp, base_name(o->drafters[d]));
        fprintf(gp, ", $d%d using 1:2:3 with labels offset 0,1 notitle", d);
        for (int i = 0; i < n_runs; i++)
            if (runs[i].drafter == o->drafters[d] && !runs[i].unavailable && runs[i].budget == -1) {
                char title[300];
                snprintf(title, sizeof title, "adaptive, %s", base_name(o->drafters[d]));
                fprintf(gp, ", %.6g with lines dt 2 lc %d title ", runs[i].speedup, d + 1);
                gp_string(gp, title);
            }
    }
    fputs("\nset title 'verifier batch cost: one forward pass of n rows'\n"
          "set xlabel 'rows n'\nset ylabel 'tokens/s (n / seconds)'\nset logscale x 2\n"
          "set offsets 0, 0, 0, 0\n$batch << EOD\n",
          gp);
    for (int b = 0; b < BENCH_BATCH_SIZES; b++)
        fprintf(gp, "%d %.6g\n", bench_batch_sizes[b], batch_tps[b]);
    fputs("EOD\nplot $batch using 1:2 with linespoints pt 7 title 'tokens/s'\nunset multiplot\n",
          gp);
    int st = pclose(gp);
    if (st != 0)
        return cli_error(0, "bench: gnuplot failed (exit status %d) writing %s",
                         WIFEXITED(st) ? WEXITSTATUS(st) : -1, png),
               false;
    fprintf(stderr, "arbor: wrote %s\n", png);
    return true;
}

/* ---- the command ---- */

/* --mem-budget LIST: every run a process of its own (bench_budget.c). */
static int budget_sweep(const opts *o, arbor_model *target, const run_entry *runs, int n_runs,
                        const bench_machine *m) {
    arbor_model_info info;
    arbor_model_get_info(target, &info);
    uint64_t budgets[32];
    int n_budgets = 0;
    char list[1024];
    snprintf(list, sizeof list, "%s", o->budget_list);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n_budgets == (int)AR_ARRAY_LEN(budgets))
            return cli_error(2, "bench: at most %d budgets", (int)AR_ARRAY_LEN(budgets));
        if (!cli_parse_size("--mem-budget", tok, info.file_bytes, &budgets[n_budgets]))
            return 2;
        if (!budgets[n_budgets]) return cli_error(2, "bench: a budget must be above 0");
        n_budgets++;
    }
    if (!n_budgets) return cli_error(2, "bench: --mem-budget needs at least one budget");
    if (o->read_bps && !o->cgroup) return cli_error(2, "bench: --read-bps needs --cgroup");
    const char *modes[MAX_RUNS], *drafters[MAX_RUNS];
    for (int i = 0; i < n_runs; i++) modes[i] = runs[i].mode, drafters[i] = runs[i].drafter;
    bench_budget_opts bo = {.target = o->target,
                            .modes = modes,
                            .drafters = drafters,
                            .n_runs = n_runs,
                            .budgets = budgets,
                            .n_budgets = n_budgets,
                            .prompts = o->prompts,
                            .n_prompts = o->n_prompts,
                            .n_predict = o->n_predict,
                            .threads = o->threads,
                            .reps = o->reps,
                            .n_ctx = o->n_ctx,
                            .temp = o->temp,
                            .seed = o->seed,
                            .cgroup = o->cgroup,
                            .read_bps = o->read_bps,
                            .drop_caches = !o->no_drop,
                            .json = o->json,
                            .csv = o->csv,
                            .plot = o->plot};
    return bench_budget_sweep(&bo, m);
}

static int parse_args(int argc, char **argv, opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        uint64_t u;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!v) return cli_error(2, "%s needs a value", a);                                        \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VALUE();
            o->target = v;
        } else if (!strcmp(a, "-md") || !strcmp(a, "--model-draft")) {
            NEED_VALUE();
            if (o->n_drafters == MAX_DRAFTERS)
                return cli_error(2, "bench: at most %d drafters", MAX_DRAFTERS);
            if (!strncmp(v, "self:", 5) && !cli_parse_i64("-md self:M", v + 5, 1, 4096, &x))
                return 2;
            o->drafters[o->n_drafters++] = v;
        } else if (!strcmp(a, "--modes")) {
            NEED_VALUE();
            if (!add_mode_list(o, v)) return 2;
        } else if (!strcmp(a, "--mode")) {
            NEED_VALUE();
            if (!add_mode(o, v, strlen(v))) return 2;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 20, &x)) return 2;
            o->n_predict = (int32_t)x;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1024, &x)) return 2;
            o->threads = (int32_t)x;
        } else if (!strcmp(a, "--reps")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, MAX_REPS, &x)) return 2;
            o->reps = (int32_t)x;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VALUE();
            if (o->n_prompts == MAX_PROMPTS)
                return cli_error(2, "bench: at most %d prompts", MAX_PROMPTS);
            if (!*v) return cli_error(2, "bench: empty prompt");
            o->prompts[o->n_prompts++] = v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 24, &x)) return 2;
            o->n_ctx = (int32_t)x;
        } else if (!strcmp(a, "--temp")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 0.0f, 100.0f, &o->temp)) return 2;
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            if (!cli_parse_u64(a, v, &u)) return 2;
            o->seed = u;
        } else if (!strcmp(a, "--json")) {
            NEED_VALUE();
            o->json = v;
        } else if (!strcmp(a, "--csv")) {
            NEED_VALUE();
            o->csv = v;
        } else if (!strcmp(a, "--plot")) {
            NEED_VALUE();
            o->plot = v;
        } else if (!strcmp(a, "--vocab")) {
            NEED_VALUE();
            o->vocab = v;
        } else if (!strcmp(a, "--mem-budget")) {
            NEED_VALUE();
            o->budget_list = v;
        } else if (!strcmp(a, "--cgroup")) {
            o->cgroup = true;
        } else if (!strcmp(a, "--no-drop-caches")) {
            o->no_drop = true;
        } else if (!strcmp(a, "--read-bps")) {
            NEED_VALUE();
            if (!cli_parse_size(a, v, 0, &o->read_bps) || !o->read_bps)
                return cli_error(2, "bench: --read-bps needs a positive rate");
        } else {
            return cli_error(2, "bench: unknown flag '%s' (see arbor bench --help)", a);
        }
#undef NEED_VALUE
    }
    return 0;
}

int bench_spec(int argc, char **argv) {
    opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        for (int i = 0; i < o.n_modes; i++) free(o.modes[i]);
        return rc < 0 ? 0 : rc;
    }
    if (o.threads <= 0) o.threads = bench_default_threads();
    const bool quick = !o.target; /* the default pair: sized for five minutes on two cores */
    if (quick && !o.n_predict) o.n_predict = DEFAULT_N;
    if (quick && !o.reps) o.reps = DEFAULT_REPS;
    if (!o.n_predict) o.n_predict = 64;
    if (!o.reps) o.reps = 3;
    if (o.n_prompts == 0)
        for (size_t i = 0; i < AR_ARRAY_LEN(default_prompts); i++)
            if (!quick || (int)i < DEFAULT_PROMPTS) o.prompts[o.n_prompts++] = default_prompts[i];
    rc = 2;
    char target_buf[PATH_MAX], draft_buf[PATH_MAX];
    arbor_model *target = NULL;
    run_entry *runs = NULL;
    int n_runs = 0;
    if (!o.target) {
        if (o.n_drafters) {
            cli_error(2, "bench: -md needs -m (without both, the default pair is used)");
            goto done;
        }
        o.default_pair = true;
        if (!default_pair(&o, target_buf, draft_buf, sizeof target_buf)) {
            rc = 1;
            goto done;
        }
        o.target = target_buf;
        o.drafters[o.n_drafters++] = draft_buf;
    }
    if (o.n_modes == 0 && !add_mode_list(&o, o.default_pair ? DEFAULT_MODES
                                             : o.n_drafters ? SPEC_MODES
                                                            : "plain"))
        goto done;
    /* plain always runs first: every speedup is relative to it */
    runs = calloc(MAX_RUNS, sizeof *runs);
    if (!runs) {
        cli_error(1, "out of memory");
        goto done;
    }
    snprintf(runs[n_runs++].mode, sizeof runs[0].mode, "plain");
    for (int m = 0; m < o.n_modes; m++) {
        if (!strcmp(o.modes[m], "plain")) continue;
        char tree[64];
        arbor_context_params check = arbor_context_default_params();
        if (!bench_mode_apply(o.modes[m], tree, &check)) goto done;
        int budget = mode_budget(tree);
        if (budget == -2) {
            cli_error(2, "bench: %s", ar_last_error());
            goto done;
        }
        if (budget == 0) { /* plain with options: no drafter */
            snprintf(runs[n_runs++].mode, sizeof runs[0].mode, "%s", o.modes[m]);
            continue;
        }
        if (o.n_drafters == 0) {
            cli_error(2, "bench: mode '%s' needs a drafter (-md DRAFT|self:M|lookup)", o.modes[m]);
            goto done;
        }
        for (int d = 0; d < o.n_drafters; d++) {
            run_entry *e = &runs[n_runs++];
            snprintf(e->mode, sizeof e->mode, "%s", o.modes[m]);
            e->drafter = o.drafters[d];
            e->budget = budget;
        }
    }
    rc = 1;

    bench_machine machine;
    bench_machine_get(&machine, o.threads);
    bench_model_desc models[1 + MAX_DRAFTERS];
    int n_models = 0;
    if (!bench_describe_model(o.target, &models[n_models++])) {
        cli_error(1, "%s", arbor_last_error());
        goto done;
    }
    for (int d = 0; d < o.n_drafters; d++)
        if (strcmp(o.drafters[d], "lookup") && strncmp(o.drafters[d], "self:", 5) &&
            !bench_describe_model(o.drafters[d], &models[n_models++])) {
            cli_error(1, "%s", arbor_last_error());
            goto done;
        }

    if (arbor_model_load(o.target, arbor_model_default_params(), &target) != ARBOR_OK) {
        cli_error(1, "%s", arbor_last_error());
        goto done;
    }
    int32_t max_prompt = 0;
    for (int p = 0; p < o.n_prompts; p++) {
        int32_t n = arbor_tokenize(target, o.prompts[p], strlen(o.prompts[p]), true, true, NULL, 0);
        if (n < 0) {
            cli_error(1, "%s", arbor_last_error());
            goto done;
        }
        max_prompt = AR_MAX(max_prompt, n);
    }
    if (o.n_ctx == 0) o.n_ctx = max_prompt + o.n_predict + 72; /* + a whole tree past the end */
    if (o.budget_list) {
        rc = budget_sweep(&o, target, runs, n_runs, &machine);
        goto done;
    }

    /* The verifier's resident weights: what every mode needs. A plain context is created and
     * warmed up once and freed, so its pages are in; its own buffers go back to the system. */
    uint64_t rss_model;
    {
        run_entry probe = {.mode = "plain"};
        if (open_entry(target, &o, &probe) != 0) {
            if (probe.error[0]) cli_error(1, "bench: plain decoding: %s", probe.error);
            close_entry(&probe);
            goto done;
        }
        close_entry(&probe);
        rss_model = bench_rss_current();
    }
    bench_progress pr;
    bench_progress_start(&pr);
    for (int i = 0; i < n_runs; i++) {
        run_entry *e = &runs[i];
        bench_progress_update(&pr, "preparing %s%s%s", e->mode, e->drafter ? " with " : "",
                              e->drafter ? e->drafter : "");
        int k = open_entry(target, &o, e);
        if (k < 0 || (k > 0 && i == 0)) {
            bench_progress_end(&pr);
            if (k > 0) cli_error(1, "bench: plain decoding: %s", e->error);
            goto done;
        }
        e->unavailable = k > 0;
    }
    const int total = o.reps * o.n_prompts * n_runs;
    int done_runs = 0;
    for (int r = 0; r < o.reps; r++) {
        for (int i = 0; i < n_runs; i++) runs[i].rep_generated = 0, runs[i].rep_seconds = 0;
        for (int p = 0; p < o.n_prompts; p++) {
            for (int i = 0; i < n_runs; i++) {
                run_entry *e = &runs[i];
                done_runs++;
                if (e->unavailable) continue;
                double el = ar_now() - pr.t0;
                bench_progress_update(
                    &pr, "run %d/%d: %s%s%s, repetition %d, prompt %d (%.0f s left)", done_runs,
                    total, e->mode, e->drafter ? " with " : "", e->drafter ? e->drafter : "", r + 1,
                    p + 1, el / (done_runs - 1 > 0 ? done_runs - 1 : 1) * (total - done_runs + 1));
                arbor_stats st;
                if (!run_once(&o, e, o.prompts[p], &st)) {
                    bench_progress_end(&pr);
                    goto done;
                }
                add_result(e, &st);
            }
        }
        for (int i = 0; i < n_runs; i++)
            if (!runs[i].unavailable)
                runs[i].rep_tps[runs[i].n_reps++] =
                    ratio((double)runs[i].rep_generated, runs[i].rep_seconds);
    }
    bench_progress_end(&pr);
    for (int i = 0; i < n_runs; i++) {
        runs[i].peak_rss = rss_model + runs[i].rss_added + runs[i].rss_run_added;
        close_entry(&runs[i]); /* before the batch cost curve maps the verifier again */
    }
    finish(runs, n_runs);

    double batch_tps[BENCH_BATCH_SIZES], batch_s[BENCH_BATCH_SIZES];
    bool have_batch = false, plot_failed = false;
    if (o.plot) {
        if (!have_gnuplot()) {
            cli_error(0, "bench: --plot needs gnuplot, which is not installed (apt-get install "
                         "gnuplot-nox); no plot written");
            plot_failed = true;
        } else {
            bench_progress_start(&pr);
            have_batch = bench_batch_curve(o.target, o.threads, true, batch_tps, batch_s, &pr);
            bench_progress_end(&pr);
            if (!have_batch) {
                cli_error(0, "bench: batch cost curve: %s", arbor_last_error());
                plot_failed = true;
            }
        }
    }
    print_table(runs, n_runs, &machine, &o);
    rc = plot_failed ? 1 : 0;
    if (o.json && !write_json(o.json, runs, n_runs, &machine, models, n_models, &o,
                              have_batch ? batch_tps : NULL))
        rc = 1;
    if (o.csv && !write_csv(o.csv, runs, n_runs)) rc = 1;
    if (have_batch && !write_plot(o.plot, runs, n_runs, &o, batch_tps)) rc = 1;
done:
    for (int i = 0; runs && i < n_runs; i++) close_entry(&runs[i]);
    arbor_model_free(target);
    free(runs);
    for (int i = 0; i < o.n_modes; i++) free(o.modes[i]);
    return rc;
}
