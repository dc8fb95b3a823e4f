/* bench_budget.c: `arbor bench spec --mem-budget LIST`: plain decoding and speculation modes at
 * each memory budget, the verifier streamed from its file for what does not fit.
 *
 * Every measured run is a process of its own (fork), so that a run holds only its own context
 * and what it maps: before it the page cache is dropped (root; the streamed bytes must come from
 * the disk, not from memory), and with --cgroup it runs inside a cgroup-v1 memory group limited
 * to the budget (optionally with its reads throttled, --read-bps, to reproduce a slower disk).
 * Runs alternate (repetition, budget, mode, prompt) so that drift of the disk or the machine
 * affects every mode alike; each (budget, mode) first runs once untimed, which also fills the
 * adaptive scheduler's cost cache the way a user's first run does (its tokens/s is reported as
 * "first"). Peak RSS is the run's own VmHWM. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arbor.h"
#include "bench.h"
#include "bench/args.h"
#include "src/core/util.h"

#define CGROUP_MEM "/sys/fs/cgroup/memory"
#define CGROUP_BLK "/sys/fs/cgroup/blkio"

/* What a child reports through its pipe. */
typedef struct child_result {
    bool ok;
    char error[300];
    arbor_stats st;
    arbor_memory_info mi;
    uint64_t peak_rss;
} child_result;

/* One (budget, mode) cell over all repetitions. */
typedef struct cell {
    double rep_tps[64];
    int n_reps;
    int64_t generated, n_verify, n_accepted;
    double seconds, tps, speedup, first_tps;
    uint64_t peak_rss, cgroup_peak, failcnt;
    arbor_memory_info mi;
    double read_bytes, read_seconds;
    bool failed;
    char error[300];
} cell;

static bool write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    const bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static uint64_t read_u64(const char *path) {
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1) v = 0;
        fclose(f);
    }
    return v;
}

/* ---- the child: one generation at one budget ---- */

static void child(const bench_budget_opts *o, int run, uint64_t budget, const char *prompt,
                  const char *mem_cg, const char *blk_cg, int fd) {
    child_result r = {0};
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if ((mem_cg && !write_file(mem_cg, pid)) || (blk_cg && !write_file(blk_cg, pid))) {
        snprintf(r.error, sizeof r.error, "cannot join the cgroup: %s", strerror(errno));
        goto out;
    }
    bench_rss_reset_peak(); /* what fork() shared with the parent is not this run's */
    arbor_model *tm = NULL, *dm = NULL;
    arbor_context *ctx = NULL;
    arbor_model_params mp = arbor_model_default_params();
    mp.repack = false; /* a budget reads the verifier's layers from the file as they are */
    if (arbor_model_load(o->target, mp, &tm) != ARBOR_OK) goto fail;
    arbor_context_params cp = arbor_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->threads;
    cp.mem_budget = budget;
    char tree[64];
    if (!bench_mode_apply(o->modes[run], tree, &cp)) goto fail;
    const char *d = o->drafters[run];
    if (!d) {
        cp.tree = NULL;
    } else if (!strcmp(d, "lookup")) {
        cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    } else if (!strncmp(d, "self:", 5)) {
        cp.draft_kind = ARBOR_DRAFT_SELF;
        cp.draft_self_layers = atoi(d + 5);
    } else {
        arbor_model_params dp = arbor_model_default_params();
        dp.resident = false; /* as arbor generate loads drafters under a budget */
        dp.repack = false;
        if (arbor_model_load(d, dp, &dm) != ARBOR_OK) goto fail;
        cp.draft_kind = ARBOR_DRAFT_MODEL;
        cp.draft_model = dm;
    }
    if (arbor_context_create(tm, cp, &ctx) != ARBOR_OK) goto fail;
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = o->n_predict;
    gp.ignore_eos = true;
    gp.sampling.temp = o->temp;
    gp.sampling.seed = o->seed;
    if (arbor_generate(ctx, prompt, &gp, NULL, NULL) != ARBOR_OK) goto fail;
    arbor_get_stats(ctx, &r.st);
    arbor_context_get_memory(ctx, &r.mi);
    r.peak_rss = bench_rss_peak();
    r.ok = true;
    goto done;
fail:
    snprintf(r.error, sizeof r.error, "%s", arbor_last_error());
done:
    arbor_context_free(ctx);
    arbor_model_free(dm);
    arbor_model_free(tm);
out:;
    const ssize_t w = write(fd, &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 1);
}

/* ---- the parent ---- */

typedef struct groups {
    char mem[256], blk[256];
    bool have_mem, have_blk;
} groups;

static void groups_remove(groups *g) {
    if (g->have_mem) rmdir(g->mem);
    if (g->have_blk) rmdir(g->blk);
    g->have_mem = g->have_blk = false;
}

/* A fresh memory group limited to `limit` (and a blkio group throttling reads to bps). */
static bool groups_make(groups *g, const bench_budget_opts *o, uint64_t limit, int serial) {
    memset(g, 0, sizeof *g);
    if (!o->cgroup) return true;
    snprintf(g->mem, sizeof g->mem, CGROUP_MEM "/arbor-bench-%ld-%d", (long)getpid(), serial);
    if (mkdir(g->mem, 0755) != 0)
        return cli_error(0, "bench: --cgroup: cannot create %s: %s (it needs root and the "
                            "cgroup-v1 memory controller)",
                         g->mem, strerror(errno)),
               false;
    g->have_mem = true;
    char path[300], v[64];
    snprintf(path, sizeof path, "%s/memory.limit_in_bytes", g->mem);
    snprintf(v, sizeof v, "%llu", (unsigned long long)limit);
    if (!write_file(path, v))
        return cli_error(0, "bench: cannot set %s: %s", path, strerror(errno)), false;
    if (!o->read_bps) return true;
    snprintf(g->blk, sizeof g->blk, CGROUP_BLK "/arbor-bench-%ld-%d", (long)getpid(), serial);
    if (mkdir(g->blk, 0755) != 0)
        return cli_error(0, "bench: --read-bps: cannot create %s: %s", g->blk, strerror(errno)),
               false;
    g->have_blk = true;
    /* every whole disk gets the read limit */
    snprintf(path, sizeof path, "%s/blkio.throttle.read_bps_device", g->blk);
    bool any = false;
    DIR *dir = opendir("/sys/block"); /* whole disks only (partitions live below them) */
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        char dev[512];
        snprintf(dev, sizeof dev, "/sys/block/%s/dev", e->d_name);
        FILE *f = fopen(dev, "r");
        if (!f) continue;
        unsigned maj, min;
        if (fscanf(f, "%u:%u", &maj, &min) == 2) {
            snprintf(v, sizeof v, "%u:%u %llu", maj, min, (unsigned long long)o->read_bps);
            any |= write_file(path, v);
        }
        fclose(f);
    }
    if (dir) closedir(dir);
    if (!any) return cli_error(0, "bench: --read-bps: no disk to throttle found"), false;
    return true;
}

static bool drop_caches(const bench_budget_opts *o) {
    static bool warned;
    if (!o->drop_caches) return true;
    sync();
    if (write_file("/proc/sys/vm/drop_caches", "1")) return true;
    if (!warned)
        fprintf(stderr, "arbor: bench: cannot drop the page cache (%s): runs may read weights from "
                        "memory; run as root or pass --no-drop-caches to accept it\n",
                strerror(errno));
    warned = true;
    return false;
}

/* Runs one child; false when the benchmark cannot go on. */
static bool run_child(const bench_budget_opts *o, int run, uint64_t budget, const char *prompt,
                      int serial, child_result *r, uint64_t *cg_peak, uint64_t *failcnt) {
    groups g;
    memset(r, 0, sizeof *r);
    *cg_peak = *failcnt = 0;
    if (!groups_make(&g, o, budget, serial)) {
        groups_remove(&g);
        return false;
    }
    char mem_procs[300], blk_procs[300];
    snprintf(mem_procs, sizeof mem_procs, "%s/cgroup.procs", g.mem);
    snprintf(blk_procs, sizeof blk_procs, "%s/cgroup.procs", g.blk);
    drop_caches(o);
    int fds[2];
    if (pipe(fds) != 0) return cli_error(0, "bench: pipe: %s", strerror(errno)), false;
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) return cli_error(0, "bench: fork: %s", strerror(errno)), false;
    if (pid == 0) {
        close(fds[0]);
        child(o, run, budget, prompt, g.have_mem ? mem_procs : NULL,
              g.have_blk ? blk_procs : NULL, fds[1]);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof *r) {
        const ssize_t k = read(fds[0], (char *)r + got, sizeof *r - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (g.have_mem) {
        char path[300];
        snprintf(path, sizeof path, "%s/memory.max_usage_in_bytes", g.mem);
        *cg_peak = read_u64(path);
        snprintf(path, sizeof path, "%s/memory.failcnt", g.mem);
        *failcnt = read_u64(path);
    }
    groups_remove(&g);
    if (got != sizeof *r) {
        snprintf(r->error, sizeof r->error, "the run ended without a result (%s %d)",
                 WIFSIGNALED(status) ? "signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        r->ok = false;
    }
    return true;
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static const char *base_name(const char *path) {
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path ? path : "-";
}

static void print_table(const bench_budget_opts *o, const bench_machine *m, cell *cells) {
    printf("%s, %d threads (%s); %d prompts x %d tokens, %d repetitions, %s; every run a fresh "
           "process%s%s\n",
           m->cpu, m->threads, m->simd, o->n_prompts, o->n_predict, o->reps,
           o->temp > 0 ? "sampled" : "greedy", o->drop_caches ? ", page cache dropped" : "",
           o->cgroup ? ", in a memory cgroup of the budget" : "");
    if (o->read_bps) printf("reads throttled to %.2f GB/s\n", o->read_bps / 1e9);
    printf("%9s  %-22s %-16s %8s %7s %6s %6s %9s %9s %8s %9s %9s\n", "budget", "mode", "drafter",
           "tok/s", "speedup", "first", "acc/v", "resident", "per pass", "read", "peak RSS",
           "cg peak");
    for (int b = 0; b < o->n_budgets; b++)
        for (int i = 0; i < o->n_runs; i++) {
            const cell *c = &cells[b * o->n_runs + i];
            if (c->failed) {
                printf("%7.0fMi  %-22s %-16.16s unavailable: %s\n", mib(o->budgets[b]),
                       o->modes[i], base_name(o->drafters[i]), c->error);
                continue;
            }
            char cg[32] = "-";
            if (o->cgroup) snprintf(cg, sizeof cg, "%.0f MiB%s", mib(c->cgroup_peak),
                                    c->failcnt ? "!" : "");
            printf("%7.0fMi  %-22s %-16.16s %8.2f %6.2fx %6.2f %6.2f %6.0fMiB %6.0fMiB %5.2fGB/s "
                   "%6.0fMiB %9s\n",
                   mib(o->budgets[b]), o->modes[i], base_name(o->drafters[i]), c->tps, c->speedup,
                   c->first_tps,
                   c->n_verify ? (double)c->n_accepted / (double)c->n_verify : 0.0,
                   mib(c->mi.verifier_resident), mib(c->mi.streamed_per_pass),
                   c->read_seconds > 0 ? c->read_bytes / c->read_seconds / 1e9 : 0.0,
                   mib(c->peak_rss), cg);
        }
    printf("speedup: against plain at the same budget; first: tokens/s of the first (untimed) run; "
           "acc/v: accepted draft tokens per verification; resident: the verifier's weights in "
           "memory; per pass: read from its file every forward pass; read: the reader's rate; peak "
           "RSS: the run's VmHWM; cg peak: the cgroup's peak usage (! when it hit the limit)\n");
}

static bool write_json(const bench_budget_opts *o, const bench_machine *m, const cell *cells) {
    FILE *f = fopen(o->json, "w");
    if (!f) return cli_error(0, "bench: cannot write %s: %s", o->json, strerror(errno)), false;
    bench_json j = {.f = f};
    bj_object(&j, NULL);
    bj_str(&j, "benchmark", "spec-budget");
    bj_str(&j, "arbor_version", arbor_version());
    bj_machine(&j, m);
    bj_str(&j, "target", o->target);
    bj_object(&j, "config");
    bj_generation(&j, o->n_predict, o->reps, o->n_ctx, o->threads, o->temp);
    bj_bool(&j, "cgroup", o->cgroup);
    bj_bool(&j, "drop_caches", o->drop_caches);
    bj_int(&j, "read_bps", (int64_t)o->read_bps);
    bj_end_object(&j);
    bj_array(&j, "runs");
    for (int b = 0; b < o->n_budgets; b++)
        for (int i = 0; i < o->n_runs; i++) {
            const cell *c = &cells[b * o->n_runs + i];
            bj_object(&j, NULL);
            bj_int(&j, "budget_bytes", (int64_t)o->budgets[b]);
            bj_str(&j, "mode", o->modes[i]);
            bj_str(&j, "drafter", o->drafters[i]);
            bj_bool(&j, "available", !c->failed);
            if (c->failed) bj_str(&j, "error", c->error);
            bj_num(&j, "tokens_per_s", c->failed ? NAN : c->tps);
            bj_num(&j, "speedup", c->failed ? NAN : c->speedup);
            bj_num(&j, "first_run_tokens_per_s", c->failed ? NAN : c->first_tps);
            bj_num(&j, "mean_accepted",
                   c->n_verify ? (double)c->n_accepted / (double)c->n_verify : NAN);
            bj_int(&j, "verifications", c->n_verify);
            bj_int(&j, "verifier_resident_bytes", (int64_t)c->mi.verifier_resident);
            bj_int(&j, "resident_layers", c->mi.resident_layers);
            bj_int(&j, "streamed_per_pass_bytes", (int64_t)c->mi.streamed_per_pass);
            bj_int(&j, "stream_buffer_bytes", (int64_t)c->mi.stream_buffers);
            bj_num(&j, "read_bytes_per_s",
                   c->read_seconds > 0 ? c->read_bytes / c->read_seconds : NAN);
            bj_int(&j, "peak_rss_bytes", (int64_t)c->peak_rss);
            if (o->cgroup) {
                bj_int(&j, "cgroup_peak_bytes", (int64_t)c->cgroup_peak);
                bj_int(&j, "cgroup_failcnt", (int64_t)c->failcnt);
            }
            bj_array(&j, "tokens_per_s_reps");
            for (int r = 0; r < c->n_reps; r++) bj_num(&j, NULL, c->rep_tps[r]);
            bj_end_array(&j);
            bj_end_object(&j);
        }
    bj_end_array(&j);
    bj_end_object(&j);
    const bool ok = !ferror(f);
    return fclose(f) == 0 && ok ? true : (cli_error(0, "bench: error writing %s", o->json), false);
}

static bool write_csv(const bench_budget_opts *o, const cell *cells) {
    FILE *f = fopen(o->csv, "w");
    if (!f) return cli_error(0, "bench: cannot write %s: %s", o->csv, strerror(errno)), false;
    fputs("budget_bytes,mode,drafter,tokens_per_s,speedup,first_run_tokens_per_s,mean_accepted,"
          "verifier_resident_bytes,streamed_per_pass_bytes,read_bytes_per_s,peak_rss_bytes,"
          "cgroup_peak_bytes,available\n",
          f);
    for (int b = 0; b < o->n_budgets; b++)
        for (int i = 0; i < o->n_runs; i++) {
            const cell *c = &cells[b * o->n_runs + i];
            fprintf(f, "%llu,\"%s\",\"%s\",", (unsigned long long)o->budgets[b], o->modes[i],
                    o->drafters[i] ? o->drafters[i] : "");
            if (c->failed) {
                fputs(",,,,,,,,,false\n", f);
                continue;
            }
            fprintf(f, "%.6g,%.6g,%.6g,%.6g,%llu,%llu,%.6g,%llu,%llu,true\n", c->tps, c->speedup,
                    c->first_tps,
                    c->n_verify ? (double)c->n_accepted / (double)c->n_verify : 0.0,
                    (unsigned long long)c->mi.verifier_resident,
                    (unsigned long long)c->mi.streamed_per_pass,
                    c->read_seconds > 0 ? c->read_bytes / c->read_seconds : 0.0,
                    (unsigned long long)c->peak_rss, (unsigned long long)c->cgroup_peak);
        }
    const bool ok = !ferror(f);
    return fclose(f) == 0 && ok ? true : (cli_error(0, "bench: error writing %s", o->csv), false);
}

/* tokens/s against the budget, one line per mode */
static bool write_plot(const bench_budget_opts *o, const cell *cells) {
    FILE *gp = popen("gnuplot", "w");
    if (!gp) return cli_error(0, "bench: cannot run gnuplot: %s", strerror(errno)), false;
    fprintf(gp, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size "
                "1000,600 } else { set terminal png size 1000,600 }\nset termoption noenhanced\n"
                "set output '%s'\nset grid\nset key top left\nset title 'tokens/s against the "
                "memory budget'\nset xlabel 'budget (MiB)'\nset ylabel 'tokens/s'\n",
            o->plot);
    for (int i = 0; i < o->n_runs; i++) {
        fprintf(gp, "$m%d << EOD\n", i);
        for (int b = 0; b < o->n_budgets; b++) {
            const cell *c = &cells[b * o->n_runs + i];
            if (!c->failed) fprintf(gp, "%.1f %.6g\n", mib(o->budgets[b]), c->tps);
        }
        fputs("EOD\n", gp);
    }
    fputs("plot ", gp);
    for (int i = 0; i < o->n_runs; i++)
        fprintf(gp, "%s$m%d using 1:2 with linespoints pt 7 title '%s'", i ? ", " : "", i,
                o->modes[i]);
    fputs("\n", gp);
    const int st = pclose(gp);
    if (st != 0) return cli_error(0, "bench: gnuplot failed writing %s", o->plot), false;
    fprintf(stderr, "arbor: wrote %s\n", o->plot);
    return true;
}

int bench_budget_sweep(const bench_budget_opts *o, const bench_machine *m) {
    const int n_cells = o->n_budgets * o->n_runs;
    cell *cells = calloc((size_t)n_cells, sizeof *cells);
    if (!cells) return cli_error(1, "out of memory");
    int rc = 1, serial = 0;
    const int total = n_cells * (1 + o->reps * o->n_prompts);
    bench_progress pr;
    bench_progress_start(&pr);
    for (int r = -1; r < o->reps; r++) { /* r = -1: the first, untimed run of each cell */
        for (int b = 0; b < o->n_budgets; b++)
            for (int i = 0; i < o->n_runs; i++) {
                cell *c = &cells[b * o->n_runs + i];
                int64_t gen = 0;
                double secs = 0;
                for (int p = 0; p < (r < 0 ? 1 : o->n_prompts); p++) {
                    serial++;
                    if (c->failed) continue;
                    const double el = ar_now() - pr.t0;
                    bench_progress_update(&pr, "run %d/%d: %.0f MiB, %s%s%s (%.0f s left)", serial,
                                          total, mib(o->budgets[b]), o->modes[i],
                                          o->drafters[i] ? " with " : "",
                                          base_name(o->drafters[i]),
                                          el / (serial > 1 ? serial - 1 : 1) * (total - serial + 1));
                    child_result res;
                    uint64_t cg_peak, failcnt;
                    if (!run_child(o, i, o->budgets[b], o->prompts[p], serial, &res, &cg_peak,
                                   &failcnt)) {
                        bench_progress_end(&pr);
                        goto done;
                    }
                    if (!res.ok) {
                        c->failed = true;
                        snprintf(c->error, sizeof c->error, "%s", res.error);
                        continue;
                    }
                    c->peak_rss = AR_MAX(c->peak_rss, res.peak_rss);
                    c->cgroup_peak = AR_MAX(c->cgroup_peak, cg_peak);
                    c->failcnt += failcnt;
                    c->mi = res.mi;
                    if (r < 0) {
                        c->first_tps = res.st.tokens_per_second;
                        continue;
                    }
                    gen += res.st.n_generated;
                    secs += res.st.generate_seconds;
                    c->generated += res.st.n_generated;
                    c->seconds += res.st.generate_seconds;
                    c->n_verify += res.st.n_verify;
                    c->n_accepted += res.st.n_accepted;
                    c->read_bytes += (double)res.mi.bytes_streamed;
                    c->read_seconds += res.mi.read_seconds;
                }
                if (r >= 0 && !c->failed && secs > 0) c->rep_tps[c->n_reps++] = gen / secs;
            }
    }
    bench_progress_end(&pr);
    for (int b = 0; b < o->n_budgets; b++)
        for (int i = 0; i < o->n_runs; i++) {
            cell *c = &cells[b * o->n_runs + i];
            c->tps = c->failed ? NAN : bench_median(c->rep_tps, c->n_reps);
            const cell *plain = &cells[b * o->n_runs];
            c->speedup = plain->failed || c->failed ? NAN : c->tps / plain->tps;
        }
    print_table(o, m, cells);
    rc = 0;
    if (o->json && !write_json(o, m, cells)) rc = 1;
    if (o->csv && !write_csv(o, cells)) rc = 1;
    if (o->plot && !write_plot(o, cells)) rc = 1;
done:
    free(cells);
    return rc;
}
