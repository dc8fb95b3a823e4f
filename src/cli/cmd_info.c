/* cmd_info.c: `arbor info MODEL.gguf`: what a GGUF file holds — format version, architecture,
 * hyperparameters, tokenizer summary, the other metadata (long arrays and strings abridged) and
 * a table of the tensors with their formats, shapes and sizes. */
#include "cli.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "src/core/cpu.h"
#include "src/core/gguf.h"
#include "src/kernels/kernels.h"
#include "src/core/tensor.h"

#define TOKEN_ID_NONE   4294967295u /* tokenizer.ggml.*_token_id: "no such token" */
#define MAX_SHOWN_BYTES 64          /* of a string value */
#define MAX_SHOWN_NUMS  8           /* elements of a numeric array */
#define MAX_SHOWN_STRS  5           /* elements of a string array */

static void usage(FILE *out) {
    fputs("usage: arbor info [--cpu] [MODEL.gguf]\n"
          "Prints a GGUF file's format version, architecture, hyperparameters, tokenizer,\n"
          "other metadata and tensor table. --cpu: the CPU features run-time dispatch sees\n"
          "and the kernel path each tensor format uses.\n",
          out);
}

/* A string from the file, quoted, with non-printable bytes escaped and long ones cut. */
static void print_str(const char *p, uint64_t n) {
    putchar('"');
    for (uint64_t i = 0; i < n && i < MAX_SHOWN_BYTES; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c); /* UTF-8 passes through */
    }
    putchar('"');
    if (n > MAX_SHOWN_BYTES) printf("... (%" PRIu64 " bytes)", n);
}

static void print_number(const ar_gguf_kv *kv, uint64_t i) {
    switch (kv->arr_type) {
    case AR_GGUF_FLOAT32:
    case AR_GGUF_FLOAT64:
        printf("%.9g", ar_gguf_arr_f64(kv, i));
        break;
    case AR_GGUF_BOOL:
        fputs(ar_gguf_arr_i64(kv, i) ? "true" : "false", stdout);
        break;
    case AR_GGUF_UINT64:
        printf("%.20g", ar_gguf_arr_f64(kv, i));
        break; /* may exceed int64 */
    default:
        printf("%" PRId64, ar_gguf_arr_i64(kv, i));
        break;
    }
}

static void print_array(const ar_gguf_kv *kv) {
    printf("%s[%" PRIu64 "]", ar_gguf_vtype_name(kv->arr_type), kv->arr_n);
    bool strs = kv->arr_type == AR_GGUF_STRING;
    uint64_t shown = AR_MIN(kv->arr_n, (uint64_t)(strs ? MAX_SHOWN_STRS : MAX_SHOWN_NUMS));
    for (uint64_t i = 0; i < shown; i++) {
        fputs(i ? ", " : " ", stdout);
        if (strs)
            print_str(kv->arr_strs[i].ptr, kv->arr_strs[i].len);
        else
            print_number(kv, i);
    }
    if (kv->arr_n > shown) fputs(", ...", stdout);
}

static void print_value(const ar_gguf_kv *kv) {
    switch (kv->type) {
    case AR_GGUF_UINT8:
    case AR_GGUF_UINT16:
    case AR_GGUF_UINT32:
    case AR_GGUF_UINT64:
        printf("%" PRIu64, kv->v.u);
        break;
    case AR_GGUF_INT8:
    case AR_GGUF_INT16:
    case AR_GGUF_INT32:
    case AR_GGUF_INT64:
        printf("%" PRId64, kv->v.i);
        break;
    case AR_GGUF_FLOAT32:
        printf("%.9g", kv->v.f);
        break;
    case AR_GGUF_FLOAT64:
        printf("%.17g", kv->v.f);
        break;
    case AR_GGUF_BOOL:
        fputs(kv->v.u ? "true" : "false", stdout);
        break;
    case AR_GGUF_STRING:
        print_str(kv->v.s.ptr, kv->v.s.len);
        break;
    case AR_GGUF_ARRAY:
        print_array(kv);
        break;
    default:
        fputs("?", stdout);
        break;
    }
}

static void print_kv(const ar_gguf_kv *kv, int width) {
    printf("  %-*s = ", width, kv->key);
    print_value(kv);
    putchar('\n');
}

static void print_mib(uint64_t bytes) {
    printf("%.2f MiB", (double)bytes / (1024.0 * 1024.0));
}

/* Keys the tokenizer summary shows; they are not repeated under "metadata". */
static const char *const tokenizer_summary_keys[] = {"tokenizer.ggml.model", "tokenizer.ggml.pre",
                                                     "tokenizer.ggml.bos_token_id",
                                                     "tokenizer.ggml.eos_token_id"};

static bool in_summary(const char *key) {
    if (strcmp(key, "general.architecture") == 0) return true;
    for (size_t i = 0; i < AR_ARRAY_LEN(tokenizer_summary_keys); i++)
        if (strcmp(key, tokenizer_summary_keys[i]) == 0) return true;
    return false;
}

/* "<arch>." prefix of hyperparameter keys; false when the architecture is unknown. */
static bool is_hparam(const char *key, const ar_str *arch) {
    return arch->len > 0 && strlen(key) > arch->len && memcmp(key, arch->ptr, arch->len) == 0 &&
           key[arch->len] == '.';
}

static void print_token_id(const ar_gguf *g, const char *label, const char *key) {
    uint32_t id;
    ar_status st = ar_gguf_get_u32(g, key, &id);
    printf("  %-8s ", label);
    if (st == AR_OK && id != TOKEN_ID_NONE)
        printf("%" PRIu32 "\n", id);
    else if (st == AR_OK || st == AR_ERR_INVALID_ARG)
        puts("none");
    else
        printf("invalid (%s)\n", ar_last_error());
}

static void print_tokenizer(const ar_gguf *g) {
    ar_str s;
    puts("\ntokenizer:");
    printf("  %-8s ", "model");
    if (ar_gguf_get_str(g, "tokenizer.ggml.model", &s) == AR_OK)
        print_str(s.ptr, s.len);
    else
        fputs("none", stdout);
    const ar_gguf_kv *tokens;
    printf("\n  %-8s ", "tokens");
    if (ar_gguf_get_arr(g, "tokenizer.ggml.tokens", AR_GGUF_VTYPE_COUNT, &tokens) == AR_OK)
        printf("%" PRIu64 "\n", tokens->arr_n);
    else
        puts("none");
    print_token_id(g, "bos id", "tokenizer.ggml.bos_token_id");
    print_token_id(g, "eos id", "tokenizer.ggml.eos_token_id");
    printf("  %-8s ", "pre");
    if (ar_gguf_get_str(g, "tokenizer.ggml.pre", &s) == AR_OK)
        print_str(s.ptr, s.len);
    else
        fputs("none", stdout);
    putchar('\n');
}

static void print_metadata(const ar_gguf *g, const ar_str *arch) {
    int width = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        width = AR_MAX(width, (int)AR_MIN(strlen(g->kv[i].key), (size_t)44));
    printf("\nhyperparameters (%.*s.*):\n", (int)AR_MIN(arch->len, (uint64_t)64),
           arch->len ? arch->ptr : "");
    int shown = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (is_hparam(g->kv[i].key, arch)) print_kv(&g->kv[i], width), shown++;
    if (!shown) puts("  (none)");
    print_tokenizer(g);
    puts("\nmetadata:");
    shown = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!is_hparam(g->kv[i].key, arch) && !in_summary(g->kv[i].key))
            print_kv(&g->kv[i], width), shown++;
    if (!shown) puts("  (none)");
}

static void print_tensors(const ar_gguf *g) {
    if (g->n_tensors == 0) {
        puts("\ntensors: none (a vocabulary-only file)\ntotal tensor bytes: 0");
        return;
    }
    int width = 4;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        width = AR_MAX(width, (int)AR_MIN(strlen(g->tensors[i].name), (size_t)64));
    printf("\ntensors:\n  %5s  %-*s  %-5s  %-24s  %12s  %12s\n", "#", width, "name", "type",
           "shape", "bytes", "offset");
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        char shape[128];
        int n = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, d ? ", " : "",
                          t->ne[d]);
        snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("  %5" PRIu64 "  %-*s  %-5s  %-24s  %12" PRIu64 "  %12" PRIu64 "\n", i, width,
               t->name, ar_type_get(t->type)->name, shape, t->nbytes,
               (uint64_t)((const uint8_t *)t->data - g->map));
        total += t->nbytes;
    }
    printf("\ntotal tensor bytes: %" PRIu64 " (", total);
    print_mib(total);
    printf(") in %" PRIu64 " tensors\n", g->n_tensors);
}

static void print_info(const ar_gguf *g) {
    const char *base = strrchr(g->path, '/');
    ar_str arch = {0};
    printf("file           %s\n", base ? base + 1 : g->path);
    printf("path           %s\n", g->path);
    printf("gguf version   %" PRIu32 "\n", g->version);
    printf("size           %zu bytes (", g->size);
    print_mib(g->size);
    printf(")\narchitecture   ");
    if (ar_gguf_get_str(g, "general.architecture", &arch) == AR_OK)
        print_str(arch.ptr, arch.len);
    else
        fputs("none", stdout);
    printf("\nalignment      %" PRIu64 "\n", g->alignment);
    printf("data offset    %" PRIu64 "\n", g->data_offset);
    printf("key/values     %" PRIu64 "\n", g->n_kv);
    printf("tensors        %" PRIu64 "\n", g->n_tensors);
    print_metadata(g, &arch);
    print_tensors(g);
}

/* `--cpu`: the features run-time dispatch sees and the dot-product path each format uses. */
static void print_cpu(void) {
    ar_runtime_init();
    const ar_cpu_features *f = ar_cpu();
    printf("cpu: %s\n", f->brand[0] ? f->brand : "(unknown)");
    printf("family %u model %u stepping %u\n", f->family, f->model, f->stepping);
    printf("features: avx2 %d fma %d f16c %d avx512f %d avx512bw %d avx512vl %d avx512dq %d "
           "avx512vnni %d avx512bf16 %d amx %d\n",
           f->avx2, f->fma, f->f16c, f->avx512f, f->avx512bw, f->avx512vl, f->avx512dq,
           f->avx512vnni, f->avx512bf16, f->amx);
    printf("SIMD level: %s%s\n", ar_simd_name(f->level),
           getenv("ARBOR_CPU") ? " (capped by ARBOR_CPU)" : "");
    printf("%-6s %-12s %-16s %s\n", "format", "activations", "dot-product path",
           "packed matrices");
    for (int t = 0; t < AR_TYPE_COUNT; t++) {
        const ar_type_traits *tt = ar_type_get((ar_type)t);
        if (!tt) continue;
        const ar_type_traits *at = ar_type_get(tt->vec_dot_type);
        const ar_gemm_kernel *p = ar_packed_get((ar_type)t);
        printf("%-6s %-12s %-16s %s\n", tt->name, at ? at->name : "?", tt->fast_path,
               p ? p->path : "-");
    }
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool cpu = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--cpu") == 0) {
            cpu = true;
            continue;
        }
        if (a[0] == '-' && a[1] != 0)
            return cli_error(2, "info: unknown option '%s' (see arbor info --help)", a);
        if (path) return cli_error(2, "info: more than one model given ('%s', '%s')", path, a);
        path = a;
    }
    if (cpu) print_cpu();
    if (!path && cpu) return fflush(stdout) == 0 ? 0 : 1;
    if (!path) return cli_error(2, "info: no model given (usage: arbor info MODEL.gguf)");
    ar_gguf *g = NULL;
    if (ar_gguf_open(path, &g) != AR_OK) return cli_error(1, "%s", ar_last_error());
    print_info(g);
    ar_gguf_close(g);
    if (fflush(stdout) != 0 || ferror(stdout)) return cli_error(1, "info: cannot write output");
    return 0;
}
