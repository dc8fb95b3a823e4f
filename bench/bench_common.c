/* bench_common.c: what the benchmarks share: machine and model descriptions, peak RSS, medians,
 * the progress line and the JSON writer. Descriptions read files and CPU features only; the
 * measured work goes through each benchmark's own interface. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "src/core/cpu.h"
#include "src/core/gguf.h"

/* ---- machine ---- */

int bench_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static uint64_t llc_bytes(void) {
    uint64_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 16; i++) {
        char path[128], buf[64];
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!(f = fopen(path, "r"))) continue;
        uint64_t size = 0;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            size = strtoull(buf, &end, 10);
            if (*end == 'K')
                size <<= 10;
            else if (*end == 'M')
                size <<= 20;
            else if (*end == 'G')
                size <<= 30;
        }
        fclose(f);
        if (level > best_level || (level == best_level && size > best)) {
            best_level = level;
            best = size;
        }
    }
    return best;
}

void bench_machine_get(bench_machine *m, int threads) {
    memset(m, 0, sizeof *m);
    ar_runtime_init();
    const ar_cpu_features *cf = ar_cpu();
    snprintf(m->cpu, sizeof m->cpu, "%s", cf->brand);
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) != 0) continue;
            char *colon = strchr(line, ':');
            if (!colon) break;
            colon++;
            while (*colon == ' ' || *colon == '\t') colon++;
            colon[strcspn(colon, "\n")] = 0;
            snprintf(m->cpu, sizeof m->cpu, "%s", colon);
            break;
        }
        fclose(f);
    }
    if (!m->cpu[0]) snprintf(m->cpu, sizeof m->cpu, "unknown");
    m->cores = bench_default_threads();
    m->threads = threads;
    m->simd = ar_simd_name(cf->level);
    m->llc_bytes = llc_bytes();
}

bool bench_describe_model(const char *path, bench_model_desc *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    ar_gguf *g = NULL;
    if (ar_gguf_open(path, &g) != AR_OK) return false;
    ar_str arch = {0};
    if (ar_gguf_get_str(g, "general.architecture", &arch) == AR_OK)
        snprintf(out->arch, sizeof out->arch, "%.*s", (int)AR_MIN(arch.len, 31), arch.ptr);
    char key[64];
    uint32_t n_layer = 0;
    snprintf(key, sizeof key, "%s.block_count", out->arch);
    if (ar_gguf_get_u32(g, key, &n_layer) == AR_OK) out->n_layer = (int32_t)n_layer;
    uint64_t by_type[AR_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims >= 2 && (unsigned)g->tensors[i].type < AR_TYPE_COUNT)
            by_type[g->tensors[i].type] += g->tensors[i].nbytes;
    int best = -1;
    for (int t = 0; t < AR_TYPE_COUNT; t++)
        if (by_type[t] && (best < 0 || by_type[t] > by_type[best])) best = t;
    const ar_type_traits *tt = best >= 0 ? ar_type_get((ar_type)best) : NULL;
    snprintf(out->format, sizeof out->format, "%s", tt ? tt->name : "none");
    out->bytes = g->size;
    ar_gguf_close(g);
    return true;
}

/* ---- measurement ---- */

void bench_rss_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f); /* resets the peak resident set size (VmHWM) to the current one */
    fclose(f);
}

uint64_t bench_rss_process_peak(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

/* A "Vm...: N kB" line of /proc/self/status, in bytes; false when absent. */
static bool proc_status_kb(const char *field, uint64_t *out) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return false;
    char line[256];
    size_t len = strlen(field);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (!strncmp(line, field, len) && line[len] == ':' &&
            sscanf(line + len + 1, " %llu kB", &kb) == 1) {
            *out = (uint64_t)kb * 1024;
            found = true;
        }
    }
    fclose(f);
    return found;
}

uint64_t bench_rss_peak(void) {
    uint64_t v;
    return proc_status_kb("VmHWM", &v) ? v : bench_rss_process_peak();
}

uint64_t bench_rss_current(void) {
    uint64_t v;
    return proc_status_kb("VmRSS", &v) ? v : bench_rss_process_peak();
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(const double *v, int n) {
    if (n <= 0) return NAN;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* ---- progress ---- */

#define PROGRESS_AFTER 3.0 /* seconds before the first line */

void bench_progress_start(bench_progress *p) {
    *p = (bench_progress){.t0 = ar_now(), .tty = isatty(2) != 0};
}

void bench_progress_update(bench_progress *p, const char *fmt, ...) {
    double now = ar_now();
    if (now - p->t0 < PROGRESS_AFTER) return;
    if (p->shown && now - p->last < (p->tty ? 0.25 : 10.0)) return;
    p->last = now;
    p->shown = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->tty)
        fprintf(stderr, "\r\033[K[%5.0f s] %s", now - p->t0, msg);
    else
        fprintf(stderr, "[%5.0f s] %s\n", now - p->t0, msg);
    fflush(stderr);
}

void bench_progress_end(bench_progress *p) {
    if (p->shown && p->tty) fputs("\r\033[K", stderr);
    p->shown = false;
}

/* ---- JSON ---- */

static void bj_indent(bench_json *j) {
    for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
}

static void bj_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f); /* UTF-8 passes through (invalid bytes are the caller's problem) */
    }
    fputc('"', f);
}

/* The comma, newline and indentation before a value, and its key. */
static void bj_key(bench_json *j, const char *key) {
    if (j->depth > 0) {
        if (j->need_comma[j->depth]) fputc(',', j->f);
        fputc('\n', j->f);
        bj_indent(j);
    }
    j->need_comma[j->depth] = true;
    if (key) {
        bj_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void bj_open(bench_json *j, const char *key, char c) {
    bj_key(j, key);
    fputc(c, j->f);
    if (j->depth < 31) j->depth++;
    j->need_comma[j->depth] = false;
}

static void bj_close(bench_json *j, char c) {
    bool any = j->need_comma[j->depth];
    if (j->depth > 0) j->depth--;
    if (any) {
        fputc('\n', j->f);
        bj_indent(j);
    }
    fputc(c, j->f);
    if (j->depth == 0) fputc('\n', j->f);
}

void bj_object(bench_json *j, const char *key) {
    bj_open(j, key, '{');
}
void bj_array(bench_json *j, const char *key) {
    bj_open(j, key, '[');
}
void bj_end_object(bench_json *j) {
    bj_close(j, '}');
}
void bj_end_array(bench_json *j) {
    bj_close(j, ']');
}

void bj_str(bench_json *j, const char *key, const char *v) {
    bj_key(j, key);
    if (v)
        bj_string(j->f, v);
    else
        fputs("null", j->f);
}

void bj_num(bench_json *j, const char *key, double v) {
    bj_key(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.6g", v);
    else
        fputs("null", j->f);
}

void bj_int(bench_json *j, const char *key, int64_t v) {
    bj_key(j, key);
    fprintf(j->f, "%lld", (long long)v);
}

void bj_bool(bench_json *j, const char *key, bool v) {
    bj_key(j, key);
    fputs(v ? "true" : "false", j->f);
}

void bj_null(bench_json *j, const char *key) {
    bj_key(j, key);
    fputs("null", j->f);
}

void bj_generation(bench_json *j, int32_t n_predict, int32_t reps, int32_t n_ctx, int32_t threads,
                   float temp) {
    bj_int(j, "n_predict", n_predict);
    bj_int(j, "reps", reps);
    bj_int(j, "n_ctx", n_ctx);
    bj_int(j, "threads", threads);
    bj_num(j, "temp", temp);
}

void bj_machine(bench_json *j, const bench_machine *m) {
    bj_object(j, "machine");
    bj_str(j, "cpu", m->cpu);
    bj_int(j, "cores", m->cores);
    bj_int(j, "threads", m->threads);
    bj_str(j, "simd", m->simd);
    bj_int(j, "llc_bytes", (int64_t)m->llc_bytes);
    bj_end_object(j);
}

void bj_model(bench_json *j, const bench_model_desc *d) {
    bj_object(j, NULL);
    bj_str(j, "path", d->path);
    bj_str(j, "arch", d->arch);
    bj_str(j, "format", d->format);
    bj_int(j, "layers", d->n_layer);
    bj_int(j, "bytes", (int64_t)d->bytes);
    bj_end_object(j);
}
