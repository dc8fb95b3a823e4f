/* test_bad_input.c: hostile and mistaken input at the level a user meets it: the `arbor` binary
 * (run without a shell, stderr captured, time and peak memory measured) and the public API.
 * Every bad input must give exit status 1 (runtime) or 2 (usage), exactly one line on stderr
 * ("arbor: ..." naming the problem), nothing on stdout, within seconds and without large
 * allocations. Covered: missing / directory / empty model files; truncation at every field
 * boundary of the header, key/values and tensor table; counts and lengths near 2^64; tensors
 * past the end of the file, overlapping, of unknown types; unknown architectures; tensor shapes
 * and hyperparameters that disagree (fixture copies made with the GGUF writer); a drafter with a
 * different vocabulary; prompts longer than the context; token counts; invalid flag values;
 * an oversized context (refused up front with the numbers); a context that fills up (stops
 * cleanly). The reader's own byte-level checks are in test_gguf.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arbor.h"
#include "src/core/gguf.h"
#include "util/arch_models.h"
#include "util/gguf_build.h"
#include "util/refs.h"
#include "util/run_cli.h"

#define MODELS        ARBOR_FIXTURES "/models/"
#define STORIES       MODELS "stories260K-f32.gguf"
#define LLAMA2XS      MODELS "llama2xs-260K-f32.gguf"
#define AIDREAMS      MODELS "aidreams260K-f32.gguf"
#define RUN_TIMEOUT_S 60
/* peak resident memory a failing run may use: the binary, its libraries and a small model */
#define FAIL_MAX_RSS_KB (384 * 1024)

/* ------------------------------------------------------------------ running the binary */

#define RUN(...) run_cli(RUN_TIMEOUT_S, (const char *const[]){__VA_ARGS__, NULL})

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *describe(const run_result *r) {
    static char d[sizeof ((run_result *)0)->err + 256];
    snprintf(d, sizeof d, "exit %d signal %d%s, %.2f s, %ld KB peak; stderr: [%s]", r->exit_code,
             r->signal, r->timed_out ? " (timed out)" : "", r->seconds, r->max_rss_kb, r->err);
    return d;
}

/* A clean failure: the status, one "arbor: " line containing `needle`, no output. */
static void expect_failure(const run_result *r, int code, const char *needle) {
    cr_assert(!r->timed_out && r->signal == 0, "crashed or hung: %s", describe(r));
    cr_expect_eq(r->exit_code, code, "%s", describe(r));
    cr_expect(strncmp(r->err, "arbor: ", 7) == 0, "%s", describe(r));
    cr_expect(r->n_err > 0 && strchr(r->err, '\n') == r->err + r->n_err - 1,
              "not exactly one line: %s", describe(r));
    cr_expect(!needle || strstr(r->err, needle), "expected '%s': %s", needle, describe(r));
    cr_expect_eq(r->n_out, 0, "stdout: [%s]", r->out);
    cr_expect_lt(r->max_rss_kb, FAIL_MAX_RSS_KB, "%s", describe(r));
}

static void expect_success(const run_result *r) {
    cr_assert(!r->timed_out && r->signal == 0, "crashed or hung: %s", describe(r));
    cr_assert_eq(r->exit_code, 0, "%s", describe(r));
}

/* ------------------------------------------------------------------ files */

static char *tmpdir;
static void setup_tmp(void) {
    tmpdir = gb_tmpdir();
}
static void teardown_tmp(void) {
    gb_rmdir(tmpdir);
    free(tmpdir);
    tmpdir = NULL;
}

/* Field boundaries of a GGUF file, found by walking it (the layout of ggml docs/gguf.md), and
 * where each tensor info's type and offset fields sit (for patching). */
typedef struct layout {
    size_t at[4096];
    int n;
    size_t tensor_type_at[512], tensor_offset_at[512];
    int n_tensors;
    size_t data_offset;
} layout;

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void mark(layout *l, size_t pos) {
    cr_assert_lt(l->n, (int)AR_ARRAY_LEN(l->at));
    l->at[l->n++] = pos;
}

static size_t scalar_bytes(uint32_t type) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    cr_assert_lt(type, 13u);
    return sizes[type];
}

static void walk(const uint8_t *d, size_t size, layout *l) {
    memset(l, 0, sizeof *l);
    size_t p = 0;
    for (int i = 0; i < 4; i++) mark(l, p += i == 0 ? 4 : i == 1 ? 4 : 8);
    uint64_t n_tensors = le(d + 8, 8), n_kv = le(d + 16, 8);
    uint64_t alignment = 32;
    for (uint64_t k = 0; k < n_kv; k++) {
        uint64_t klen = le(d + p, 8);
        const char *key = (const char *)d + p + 8;
        bool is_align = klen == 17 && !memcmp(key, "general.alignment", 17);
        mark(l, p += 8);
        mark(l, p += klen);
        uint32_t type = (uint32_t)le(d + p, 4);
        mark(l, p += 4);
        if (type == 8) {
            mark(l, p += 8);
            p += le(d + p - 8, 8);
        } else if (type == 9) {
            uint32_t et = (uint32_t)le(d + p, 4);
            mark(l, p += 4);
            uint64_t n = le(d + p, 8);
            mark(l, p += 8);
            for (uint64_t i = 0; i < n; i++) {
                if (et == 8)
                    p += 8 + le(d + p, 8);
                else
                    p += scalar_bytes(et);
                if (i == 0) mark(l, p);
            }
        } else {
            if (is_align) alignment = le(d + p, (int)scalar_bytes(type));
            p += scalar_bytes(type);
        }
        mark(l, p);
        cr_assert_leq(p, size);
    }
    for (uint64_t t = 0; t < n_tensors; t++) {
        cr_assert_lt(l->n_tensors, (int)AR_ARRAY_LEN(l->tensor_type_at));
        mark(l, p += 8);
        mark(l, p += le(d + p - 8, 8));
        uint32_t n_dims = (uint32_t)le(d + p, 4);
        mark(l, p += 4);
        for (uint32_t i = 0; i < n_dims; i++) mark(l, p += 8);
        l->tensor_type_at[l->n_tensors] = p;
        mark(l, p += 4);
        l->tensor_offset_at[l->n_tensors++] = p;
        mark(l, p += 8);
    }
    l->data_offset = (p + alignment - 1) / alignment * alignment;
    mark(l, l->data_offset);
    mark(l, l->data_offset + 1);
    mark(l, size - 1);
}

/* A fixture copy through the GGUF writer with changes. */
typedef struct model_edit {
    const char *set_key; /* a u32 or string key to set (NULL: none) */
    uint32_t set_u32;
    const char *set_str;
    bool set_is_f32; /* set_key gets the float set_f32 */
    float set_f32;
    const char *add_tensor; /* an extra F32 tensor of shape ne (zeros) */
    const char *drop_tensor;
    const char *reshape_tensor; /* gets shape ne (data: the original's prefix, or zeros) */
    int64_t ne[2];
    uint32_t alignment;   /* general.alignment to write (0: the original's) */
    const char *name_pad; /* a general.name of this length shifts the data section */
    const char *nan_tensor; /* an F32 tensor whose values become NaN */
    uint64_t nan_index;   /* (set by edited_copy) its index in the copy */
} model_edit;

/* Tensors added without data: zeros, or NaN for the edit's nan_tensor. */
static ar_status fill_edit(void *user, uint64_t index, void *dst, uint64_t size) {
    const model_edit *e = user;
    memset(dst, 0, size);
    if (e->nan_tensor && index == e->nan_index)
        for (uint64_t i = 0; i + 4 <= size; i += 4) memcpy((uint8_t *)dst + i, &(float){NAN}, 4);
    return AR_OK;
}

static char *edited_copy(const char *src_path, const char *name, model_edit *e) {
    ar_gguf *src = NULL;
    cr_assert_eq(ar_gguf_open(src_path, &src), AR_OK, "%s", ar_last_error());
    ar_gguf_writer *w = ar_gguf_writer_new(src->version);
    uint64_t n_added = 0;
    for (uint64_t i = 0; i < src->n_kv; i++)
        if (!e->set_key || strcmp(src->kv[i].key, e->set_key))
            cr_assert_eq(ar_gguf_copy_kv(w, &src->kv[i]), AR_OK, "%s", ar_last_error());
    if (e->set_key && e->set_str)
        cr_assert_eq(ar_gguf_set_str(w, e->set_key, e->set_str), AR_OK);
    else if (e->set_key && e->set_is_f32)
        cr_assert_eq(ar_gguf_set_f32(w, e->set_key, e->set_f32), AR_OK);
    else if (e->set_key)
        cr_assert_eq(ar_gguf_set_u32(w, e->set_key, e->set_u32), AR_OK);
    if (e->alignment) cr_assert_eq(ar_gguf_set_u32(w, "general.alignment", e->alignment), AR_OK);
    if (e->name_pad) cr_assert_eq(ar_gguf_set_str(w, "general.name", e->name_pad), AR_OK);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const ar_gguf_tensor *t = &src->tensors[i];
        if (e->drop_tensor && !strcmp(t->name, e->drop_tensor)) continue;
        if (e->nan_tensor && !strcmp(t->name, e->nan_tensor)) {
            e->nan_index = n_added++;
            cr_assert_eq(ar_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL), AR_OK);
            continue;
        }
        if (e->reshape_tensor && !strcmp(t->name, e->reshape_tensor)) {
            uint64_t nbytes = ar_row_size(t->type, e->ne[0]) * (uint64_t)e->ne[1];
            cr_assert_eq(ar_gguf_add_tensor(w, t->name, t->type, 2, e->ne,
                                            nbytes <= t->nbytes ? t->data : NULL),
                         AR_OK, "%s", ar_last_error());
            n_added++;
            continue;
        }
        cr_assert_eq(ar_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), AR_OK);
        n_added++;
    }
    if (e->add_tensor)
        cr_assert_eq(ar_gguf_add_tensor(w, e->add_tensor, AR_TYPE_F32, 2, e->ne, NULL), AR_OK);
    char *path = malloc(strlen(tmpdir) + strlen(name) + 2);
    sprintf(path, "%s/%s", tmpdir, name);
    cr_assert_eq(ar_gguf_write(w, path, fill_edit, e), AR_OK, "%s", ar_last_error());
    ar_gguf_writer_free(w);
    ar_gguf_close(src);
    return path;
}

static void expect_model_rejected(const char *path, const char *needle) {
    expect_failure(RUN("generate", "-m", path, "-p", "Once", "-n", "4", "-t", "1"), 1, needle);
}

/* ------------------------------------------------------------------ model files */

TestSuite(bad_files, .init = setup_tmp, .fini = teardown_tmp);

/* Weights that make the logits NaN: one clear error, plain or speculative, greedy or sampled
 * (never a token picked from garbage). */
Test(bad_files, nan_logits_are_one_clear_error) {
    model_edit e = {.nan_tensor = "output_norm.weight"};
    char *p = edited_copy(STORIES, "nan.gguf", &e);
    static const char *const temps[] = {"0", "0.8"};
    for (int t = 0; t < 2; t++) {
        expect_failure(RUN("generate", "-m", p, "-p", "Once", "-n", "4", "-t", "1", "--temp",
                           temps[t]),
                       1, "NaN or +inf");
        expect_failure(RUN("generate", "-m", p, "-md", "self:2", "--tree", "static:2x1", "-p",
                           "Once", "-n", "4", "-t", "1", "--temp", temps[t]),
                       1, "NaN or +inf");
    }
    free(p);
}

Test(bad_files, missing_directory_empty) {
    expect_model_rejected("/nonexistent/arbor/model.gguf", "cannot open");
    expect_model_rejected(tmpdir, "is a directory");
    char *empty = gb_write_file(tmpdir, "empty.gguf", "", 0);
    expect_model_rejected(empty, "empty");
    expect_failure(RUN("tokenize", "-m", empty, "-p", "x"), 1, "empty");
    expect_model_rejected("/dev/null", "not a regular file");
    /* the drafter is checked as carefully as the verifier */
    expect_failure(RUN("generate", "-m", STORIES, "-md", empty, "-p", "x", "-t", "1"), 1, "empty");
    free(empty);
}

/* Truncation at every field boundary of the header, the key/values and the tensor table (and
 * inside the data): each through the API in-process, every third also through the binary. */
Test(bad_files, truncated_at_every_boundary) {
    size_t size;
    uint8_t *d = read_whole(STORIES, &size);
    static layout l;
    walk(d, size, &l);
    cr_assert_gt(l.n, 100);
    int fd = memfd_create("truncated.gguf", 0);
    cr_assert_geq(fd, 0);
    char proc_path[64];
    snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d", fd);
    for (int i = 0; i < l.n; i++) {
        size_t cut = l.at[i];
        if (cut >= size) continue;
        cr_assert_eq(ftruncate(fd, 0), 0);
        cr_assert_eq(pwrite(fd, d, cut, 0), (ssize_t)cut);
        cr_assert_eq(ftruncate(fd, (off_t)cut), 0);
        arbor_model *m = NULL;
        arbor_status st = arbor_model_load(proc_path, arbor_model_default_params(), &m);
        cr_expect_neq(st, ARBOR_OK, "truncated at %zu: loaded", cut);
        cr_expect_null(m);
        const char *e = arbor_last_error();
        cr_expect(cut == 0 || strstr(e, "truncated") || strstr(e, "past the end") ||
                      strstr(e, "exceeds") || strstr(e, "cannot fit"),
                  "truncated at %zu: %s", cut, e);
        if (i % 3 == 0) {
            char name[32];
            snprintf(name, sizeof name, "cut%zu.gguf", cut);
            char *p = gb_write_file(tmpdir, name, d, cut);
            expect_model_rejected(p, cut ? "offset" : "empty");
            unlink(p);
            free(p);
        }
    }
    close(fd);
    free(d);
}

/* Raw GGUF files with counts and lengths at or near 2^64: rejected at once, nothing sized from
 * them. */
Test(bad_files, counts_and_lengths_near_2_64) {
    static const uint64_t huge[] = {UINT64_MAX, UINT64_MAX - 7, (uint64_t)1 << 63,
                                    (uint64_t)1 << 40};
    for (size_t h = 0; h < AR_ARRAY_LEN(huge); h++) {
        uint64_t v = huge[h];
        gb_buf files[7] = {0};
        gb_header(&files[0], 3, v, 0); /* n_tensors */
        gb_header(&files[1], 3, 0, v); /* n_kv */
        gb_header(&files[2], 3, 0, 1); /* key length */
        gb_u64(&files[2], v);
        gb_bytes(&files[2], "general.architecture", 20);
        gb_header(&files[3], 3, 0, 1); /* string value length */
        gb_str(&files[3], "general.architecture");
        gb_u32(&files[3], 8);
        gb_u64(&files[3], v);
        gb_bytes(&files[3], "llama", 5);
        gb_header(&files[4], 3, 0, 1); /* numeric array count */
        gb_kv_arr(&files[4], "tokenizer.ggml.scores", 6, v);
        gb_f32(&files[4], 0.0f);
        gb_header(&files[5], 3, 0, 1); /* string array count */
        gb_kv_arr(&files[5], "tokenizer.ggml.tokens", 8, v);
        gb_str(&files[5], "a");
        gb_header(&files[6], 3, 1, 0); /* tensor dimensions and offset */
        int64_t ne[2] = {(int64_t)(v >> 1), 4};
        gb_tensor_info(&files[6], "token_embd.weight", 2, ne, 0, v & ~(uint64_t)31);
        for (size_t i = 0; i < AR_ARRAY_LEN(files); i++) {
            gb_pad(&files[i], 32);
            gb_bytes(&files[i], "0123456789abcdef0123456789abcdef", 32);
            char name[32];
            snprintf(name, sizeof name, "huge%zu-%zu.gguf", h, i);
            char *p = gb_write_file(tmpdir, name, files[i].data, files[i].len);
            expect_model_rejected(p, "offset");
            expect_failure(RUN("info", p), 1, "offset");
            free(p);
            gb_free(&files[i]);
        }
    }
}

Test(bad_files, tensor_placement_and_types) {
    size_t size;
    uint8_t *d = read_whole(STORIES, &size);
    static layout l;
    walk(d, size, &l);
    cr_assert_eq(l.n_tensors, 48);
    uint8_t *c = malloc(size);
    struct {
        int tensor;
        bool type_field;
        uint64_t value;
        const char *needle;
    } patches[] = {
        {47, false, (size + 31) & ~(size_t)31, "past the end of the file"}, /* data past end */
        {0, false, UINT64_MAX & ~(uint64_t)31, "past the end"},             /* offset overflows */
        {1, false, 0, "overlaps"},              /* same data as tensor 0 */
        {5, true, 4, "not a supported format"}, /* a removed ggml type */
        {5, true, 39, "not a supported format"},
        {5, true, 0xffffffffu, "not a supported format"},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(patches); i++) {
        memcpy(c, d, size);
        int t = patches[i].tensor;
        size_t at = patches[i].type_field ? l.tensor_type_at[t] : l.tensor_offset_at[t];
        int width = patches[i].type_field ? 4 : 8;
        for (int b = 0; b < width; b++) c[at + b] = (uint8_t)(patches[i].value >> (8 * b));
        /* overlap: tensor 1 at tensor 0's offset */
        if (patches[i].value == 0 && !patches[i].type_field)
            memcpy(c + at, d + l.tensor_offset_at[0], 8);
        char name[32];
        snprintf(name, sizeof name, "patch%zu.gguf", i);
        char *p = gb_write_file(tmpdir, name, c, size);
        expect_model_rejected(p, patches[i].needle);
        free(p);
    }
    free(c);
    free(d);
}

/* general.alignment 1 is valid GGUF, but weights used in place need aligned floats. */
Test(bad_files, misaligned_tensor_data) {
    static const char *const pads[] = {"a", "ab", "abc", "abcd"};
    for (size_t i = 0; i < AR_ARRAY_LEN(pads); i++) {
        model_edit e = {.alignment = 1, .name_pad = pads[i]};
        char name[32];
        snprintf(name, sizeof name, "align1-%zu.gguf", i);
        char *p = edited_copy(STORIES, name, &e);
        ar_gguf *g = NULL;
        cr_assert_eq(ar_gguf_open(p, &g), AR_OK, "%s", ar_last_error());
        bool aligned = g->data_offset % 4 == 0; /* every tensor's size is a multiple of 4 */
        ar_gguf_close(g);
        if (aligned)
            expect_success(RUN("generate", "-m", p, "-p", "Once", "-n", "4", "-t", "1"));
        else
            expect_model_rejected(p, "not 4-byte aligned");
        free(p);
    }
}

Test(bad_files, unknown_architecture) {
    model_edit e = {.set_key = "general.architecture", .set_str = "mamba"};
    char *p = edited_copy(STORIES, "mamba.gguf", &e);
    expect_model_rejected(p, "architecture 'mamba' is not supported");
    free(p);
    e = (model_edit){.set_key = "general.architecture", .set_u32 = 7};
    p = edited_copy(STORIES, "arch-u32.gguf", &e);
    expect_model_rejected(p, "general.architecture");
    free(p);
}

Test(bad_files, shapes_disagree_with_hyperparameters) {
    struct {
        model_edit e;
        const char *needle;
    } cases[] = {
        {{.reshape_tensor = "blk.0.attn_q.weight", .ne = {64, 32}},
         "tensor blk.0.attn_q.weight has shape [64, 32, 1, 1], expected [64, 64]"},
        {{.reshape_tensor = "blk.4.ffn_down.weight", .ne = {172, 65}}, "blk.4.ffn_down.weight"},
        {{.reshape_tensor = "token_embd.weight", .ne = {64, 256}}, "256"}, /* vocab 512 */
        {{.reshape_tensor = "token_embd.weight", .ne = {64, 20000}}, "20000"},
        {{.set_key = "llama.embedding_length", .set_u32 = 128}, "expected [128, 512]"},
        {{.set_key = "llama.block_count", .set_u32 = 6}, "missing tensor blk.5"},
        {{.set_key = "llama.attention.head_count", .set_u32 = 7}, "head"},
        {{.set_key = "llama.attention.head_count_kv", .set_u32 = 3}, "KV head count 3"},
        {{.set_key = "llama.feed_forward_length", .set_u32 = 1u << 30}, "feed_forward_length"},
        {{.set_key = "llama.rope.dimension_count", .set_u32 = 9}, "rope dimension 9"},
        {{.set_key = "llama.context_length", .set_u32 = 0}, "context_length = 0"},
        {{.drop_tensor = "output_norm.weight"}, "missing tensor output_norm.weight"},
        {{.drop_tensor = "blk.2.attn_k.weight"}, "missing tensor blk.2.attn_k.weight"},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        char name[32];
        snprintf(name, sizeof name, "edit%zu.gguf", i);
        char *p = edited_copy(STORIES, name, &cases[i].e);
        expect_model_rejected(p, cases[i].needle);
        free(p);
    }
}

/* The keys and tensors the newer architectures bring: each wrong value, each key whose meaning
 * is not implemented, each tensor nothing would read is refused by name (synthetic models of
 * each architecture, tests/util/arch_models.c, edited through the GGUF writer). */
Test(bad_files, architecture_metadata_and_tensors) {
    struct {
        const char *model;
        model_edit e;
        const char *needle;
    } cases[] = {
        {"llama3", {.add_tensor = "blk.0.attn_output.bias", .ne = {64, 1}},
         "tensor blk.0.attn_output.bias is not used by architecture llama"},
        {"llama3", {.add_tensor = "blk.1.ffn_gate_inp.weight", .ne = {64, 8}},
         "tensor blk.1.ffn_gate_inp.weight is not used"},
        {"llama3", {.reshape_tensor = "rope_freqs.weight", .ne = {3, 1}},
         "tensor rope_freqs.weight has shape [3, 1, 1, 1], expected [8, 1]"},
        {"llama3", {.set_key = "llama.rope.scaling.type", .set_str = "dynamic"},
         "rope scaling type 'dynamic' (llama.rope.scaling.type) is not supported"},
        {"llama3", {.set_key = "llama.rope.scaling.type", .set_str = "llama3"},
         "rope scaling type 'llama3'"},
        {"llama3", {.set_key = "llama.expert_count", .set_u32 = 8},
         "metadata key llama.expert_count is not supported"},
        {"mistral", {.set_key = "llama.attention.sliding_window", .set_u32 = 1u << 31},
         "llama.attention.sliding_window"},
        {"qwen2", {.set_key = "qwen2.attention.sliding_window", .set_u32 = 8},
         "metadata key qwen2.attention.sliding_window is not supported for architecture qwen2"},
        {"qwen2", {.set_key = "qwen2.logit_scale", .set_is_f32 = true, .set_f32 = 0.5f},
         "metadata key qwen2.logit_scale"},
        {"qwen2-yarn", {.set_key = "qwen2.rope.scaling.factor", .set_is_f32 = true},
         "qwen2.rope.scaling.factor = 0"},
        {"qwen2-yarn", {.set_key = "qwen2.rope.scaling.original_context_length", .set_u32 = 0},
         "original_context_length = 0"},
        {"qwen3", {.drop_tensor = "blk.1.attn_k_norm.weight"},
         "missing tensor blk.1.attn_k_norm.weight"},
        {"qwen3", {.add_tensor = "blk.0.attn_output.bias", .ne = {64, 1}},
         "tensor blk.0.attn_output.bias is not used by architecture qwen3"},
        {"gemma2", {.set_key = "gemma2.attn_logit_softcapping", .set_is_f32 = true, .set_f32 = -1},
         "gemma2.attn_logit_softcapping = -1"},
        {"gemma2", {.set_key = "gemma2.final_logit_softcapping", .set_is_f32 = true},
         "gemma2.final_logit_softcapping = 0"},
        {"gemma2", {.set_key = "gemma2.attention.scale", .set_is_f32 = true},
         "gemma2.attention.scale = 0"},
        {"gemma2", {.drop_tensor = "blk.0.post_ffw_norm.weight"},
         "missing tensor blk.0.post_ffw_norm.weight"},
        {"phi3", {.reshape_tensor = "blk.0.attn_qkv.weight", .ne = {64, 64}},
         "tensor blk.0.attn_qkv.weight has shape [64, 64, 1, 1], expected [64, 128]"},
        {"phi3", {.add_tensor = "blk.0.ffn_gate.weight", .ne = {64, 172}},
         "tensor blk.0.ffn_gate.weight is not used by architecture phi3"},
        {"phi3-longrope", {.drop_tensor = "rope_factors_short.weight"}, "come as a pair"},
        {"phi3-longrope", {.set_key = "phi3.rope.scaling.type", .set_str = "longrope",
                           .drop_tensor = "rope_factors_long.weight"},
         "missing tensor rope_factors_long.weight"},
        {"phi3-longrope", {.set_key = "phi3.rope.scaling.attn_factor", .set_is_f32 = true},
         "phi3.rope.scaling.attn_factor = 0"},
    };
    const char *last = NULL;
    char *base = NULL;
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        if (!last || strcmp(last, cases[i].model)) {
            free(base);
            base = arch_model_write(cases[i].model, -1, tmpdir);
            last = cases[i].model;
            expect_success(RUN("generate", "-m", base, "-p", "Once", "-n", "2", "-t", "1"));
        }
        char name[32];
        snprintf(name, sizeof name, "arch-edit%zu.gguf", i);
        char *p = edited_copy(base, name, &cases[i].e);
        expect_model_rejected(p, cases[i].needle);
        free(p);
    }
    free(base);
}

/* ------------------------------------------------------------------ generation arguments */

Test(bad_args, drafter_with_another_vocabulary) {
    expect_failure(RUN("generate", "-m", STORIES, "-md", AIDREAMS, "-p", "Once", "-t", "1"), 1,
                   "vocabularies differ");
    expect_failure(RUN("generate", "-m", AIDREAMS, "-md", STORIES, "-p", "Once", "-t", "1"), 1,
                   "vocabularies differ");
}

Test(bad_args, prompt_longer_than_the_context) {
    expect_failure(RUN("generate", "-m", STORIES, "-c", "8", "-t", "1", "-p",
                       "Once upon a time there was a little girl who liked to play"),
                   1, "does not fit the context of 8");
    expect_failure(RUN("generate", "-m", STORIES, "-md", LLAMA2XS, "-c", "4", "-t", "1", "-p",
                       "Once upon a time there was"),
                   1, "does not fit the context of 4");
    /* a prompt of no tokens (this vocabulary adds no BOS) */
    expect_failure(RUN("generate", "-m", MODELS "synth-qwen2-q8_0.gguf", "-p", "", "-t", "1"), 1,
                   "at least one token");
}

Test(bad_args, token_counts) {
    run_result *r = RUN("generate", "-m", STORIES, "-p", "Once", "-n", "0", "-t", "1");
    expect_success(r);
    cr_expect_eq(r->n_out, 0, "-n 0 printed [%s]", r->out);
    cr_expect(strstr(r->err, "generated 0 tokens"), "%s", r->err);
    static const char *const bad[] = {"-2", "-100", "-2147483649", "2147483648",         "1e3",
                                      "",   "5x",   "0x10",        "9223372036854775808"};
    for (size_t i = 0; i < AR_ARRAY_LEN(bad); i++)
        expect_failure(RUN("generate", "-m", STORIES, "-p", "Once", "-n", bad[i]), 2,
                       "invalid value");
    /* -n -1: until end of generation or a full context */
    r = RUN("generate", "-m", STORIES, "-p", "Once", "-n", "-1", "-c", "24", "--ignore-eos",
            "--temp", "0", "-t", "1");
    expect_success(r);
    cr_expect(strstr(r->err, "context full"), "%s", r->err);
}

Test(bad_args, context_fills_up) {
    run_result *r = RUN("generate", "-m", STORIES, "-p", "Once upon a time", "-c", "16", "-n",
                        "100", "--temp", "0", "--ignore-eos", "-t", "1");
    expect_success(r);
    cr_expect(r->n_out > 0);
    cr_expect(strstr(r->err, "arbor: context full: generation stopped"), "%s", r->err);
    int n_prompt = -1, n_gen = -1;
    const char *stats = strstr(r->err, "arbor: prompt ");
    cr_assert(stats, "%s", r->err);
    cr_assert_eq(sscanf(stats, "arbor: prompt %d tokens (%*d reused) in %*f ms; generated %d",
                        &n_prompt, &n_gen),
                 2, "%s", stats);
    cr_expect_eq(n_prompt + n_gen, 17, "prompt %d + generated %d: the last token needs no cell",
                 n_prompt, n_gen);
    /* the same with speculation: a tree never outgrows the context */
    r = RUN("generate", "-m", STORIES, "-md", LLAMA2XS, "--tree", "static:4x2x1", "-p",
            "Once upon a time", "-c", "16", "-n", "100", "--temp", "0", "--ignore-eos", "-t", "1");
    expect_success(r);
    cr_expect(strstr(r->err, "context full"), "%s", r->err);
    stats = strstr(r->err, "arbor: prompt ");
    cr_assert(stats, "%s", r->err);
    cr_assert_eq(sscanf(stats, "arbor: prompt %d tokens (%*d reused) in %*f ms; generated %d",
                        &n_prompt, &n_gen),
                 2, "%s", stats);
    cr_expect_eq(n_prompt + n_gen, 17, "speculative: prompt %d + generated %d", n_prompt, n_gen);
}

Test(bad_args, invalid_flag_values) {
    static const char *const cases[][3] = {
        {"-c", "abc", "not an integer"},
        {"-c", "-5", "must be in"},
        {"-c", "100000000", "must be in"},
        {"-t", "0", "must be in"},
        {"-t", "1000000", "must be in"},
        {"-b", "0", "must be in"},
        {"--temp", "nan", "not a number"},
        {"--temp", "inf", "not a number"},
        {"--temp", "-1", "must be in"},
        {"--temp", "1e39", "not a number"},
        {"--top-p", "2", "must be in"},
        {"--min-p", "-0.5", "must be in"},
        {"--top-k", "-1", "must be in"},
        {"--repeat-penalty", "0", "must be in"},
        {"--repeat-last-n", "-2", "must be in"},
        {"--seed", "-1", "negative"},
        {"--seed", "18446744073709551616", "not an unsigned integer"},
        {"-ctk", "q4_0", "f32 or f16"},
        {"--stop", "", "non-empty"},
        {"--bogus", "1", "unknown flag"},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++)
        expect_failure(RUN("generate", "-m", STORIES, "-p", "x", cases[i][0], cases[i][1]), 2,
                       cases[i][2]);
    /* a flag without its value, at the end */
    expect_failure(RUN("generate", "-m", STORIES, "-p", "x", "-n"), 2, "needs a value");
    expect_failure(RUN("generate", "-p", "x"), 2, "-m MODEL.gguf is required");
    expect_failure(RUN("generate", "-m", STORIES), 2, "-p PROMPT or -f FILE");
    expect_failure(RUN("generate", "-m", STORIES, "-p", "x", "-f", "/dev/null"), 2, "not both");
    expect_failure(RUN("generate", "-m", STORIES, "-p", "x", "--tree", "chain:4"), 2,
                   "needs a drafter");
    expect_failure(RUN("generate", "-m", STORIES, "-f", "/nonexistent/prompt.txt"), 1,
                   "cannot read prompt file");
    expect_failure(RUN("tokenize", "-m", STORIES, "--bogus"), 2, "unknown argument");
    /* values checked once the models are known */
    static const char *const trees[][2] = {
        {"bogus", "expected chain:K"},     {"chain:0", "K in [1"},
        {"chain:999999999999", "K in [1"}, {"static:300x2", "counts in [1"},
        {"static:16x16", "more than the"}, {"static:4x", "counts in [1"},
        {"static:2x2y", "unexpected 'y'"}, {"dynamic:-3", "N in [1"},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(trees); i++)
        expect_failure(RUN("generate", "-m", STORIES, "-md", "lookup", "--tree", trees[i][0], "-p",
                           "x", "-t", "1"),
                       1, trees[i][1]);
    static const char *const selfs[] = {"self:0", "self:5", "self:-1", "self:x", "self:"};
    for (size_t i = 0; i < AR_ARRAY_LEN(selfs); i++) {
        run_result *r = RUN("generate", "-m", STORIES, "-md", selfs[i], "-p", "x", "-t", "1");
        cr_expect(r->exit_code == 1 || r->exit_code == 2, "%s: %s", selfs[i], describe(r));
        expect_failure(r, r->exit_code, "self");
    }
}

/* A prompt file that never ends is refused at a bound, not read into all of memory. */
Test(bad_args, endless_prompt_file) {
    run_result *r = RUN("generate", "-m", STORIES, "-f", "/dev/zero", "-t", "1");
    cr_assert(!r->timed_out && r->signal == 0, "%s", describe(r));
    cr_expect_eq(r->exit_code, 1, "%s", describe(r));
    cr_expect(strstr(r->err, "larger than"), "%s", describe(r));
    cr_expect_lt(r->max_rss_kb, 1024 * 1024, "%s", describe(r));
}

/* A context that cannot fit in physical memory is refused before anything is allocated, with
 * the numbers. */
Test(bad_args, oversized_context) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double phys = (double)pages * (double)page;
    /* synth-llama: 4 layers x 2 x 2 KV heads x 32 dims x 4 bytes = 2 KiB per cell */
    double need = 2048.0 * (1 << 24);
    if (need <= phys) cr_skip_test("%.0f GiB of memory holds a 2^24-cell context", phys / 1e9);
    run_result *r = RUN("generate", "-m", MODELS "synth-llama-q4_0.gguf", "-c", "16777216", "-p",
                        "x", "-t", "1");
    expect_failure(r, 1, "GiB");
    cr_expect(strstr(r->err, "16777216"), "%s", r->err);
    cr_expect_lt(r->seconds, 20.0, "%s", describe(r));
}

/* ------------------------------------------------------------------ the API */

Test(bad_api, oversized_context_is_refused_with_numbers) {
    arbor_model *m = NULL;
    cr_assert_eq(arbor_model_load(STORIES, arbor_model_default_params(), &m), ARBOR_OK);
    arbor_context_params cp = arbor_context_default_params();
    cp.n_threads = 1;
    static const int32_t sizes[] = {INT32_MAX, 1 << 30, 100000000};
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < AR_ARRAY_LEN(sizes); i++) {
        /* 5 layers x 2 x 4 KV heads x 8 dims x 4 bytes = 1280 bytes per cell */
        if (1280.0 * sizes[i] <= phys) continue; /* a machine that holds it */
        cp.n_ctx = sizes[i];
        arbor_context *ctx = NULL;
        double t0 = now_s();
        cr_expect_eq(arbor_context_create(m, cp, &ctx), ARBOR_ERR_NOMEM, "n_ctx %d", sizes[i]);
        cr_expect_null(ctx);
        const char *e = arbor_last_error();
        char cells[32];
        snprintf(cells, sizeof cells, "%d ", sizes[i]);
        cr_expect(strstr(e, cells) && strstr(e, "GiB"), "%s", e);
        cr_expect_lt(now_s() - t0, 5.0);
    }
    arbor_model_free(m);
}

Test(bad_api, invalid_arguments) {
    arbor_model *m = NULL;
    cr_expect_eq(arbor_model_load(NULL, arbor_model_default_params(), &m), ARBOR_ERR_INVALID_ARG);
    cr_expect_eq(arbor_model_load(STORIES, arbor_model_default_params(), NULL),
                 ARBOR_ERR_INVALID_ARG);
    cr_assert_eq(arbor_model_load(STORIES, arbor_model_default_params(), &m), ARBOR_OK);
    arbor_token ids[8];
    cr_expect_lt(arbor_tokenize(m, "x", 1, true, true, ids, -1), 0);
    cr_expect_lt(arbor_tokenize(m, NULL, 5, true, true, ids, 8), 0);
    char piece[16];
    cr_expect_lt(arbor_token_to_piece(m, -1, false, piece, 16), 0);
    cr_expect_lt(arbor_token_to_piece(m, 512, false, piece, 16), 0);
    cr_expect_lt(arbor_token_to_piece(m, INT32_MAX, false, piece, 16), 0);
    cr_expect_lt(arbor_token_to_piece(m, 1, false, piece, -3), 0);

    arbor_context_params cp = arbor_context_default_params();
    arbor_context *ctx = NULL;
    cp.n_ctx = -1;
    cr_expect_eq(arbor_context_create(m, cp, &ctx), ARBOR_ERR_INVALID_ARG);
    cp = arbor_context_default_params();
    cp.draft_kind = (arbor_draft_kind)7;
    cr_expect_eq(arbor_context_create(m, cp, &ctx), ARBOR_ERR_INVALID_ARG);
    cp = arbor_context_default_params();
    cp.draft_kind = ARBOR_DRAFT_SELF;
    cp.draft_self_layers = 5; /* stories260K has 5 layers: at most 4 */
    cr_expect_eq(arbor_context_create(m, cp, &ctx), ARBOR_ERR_INVALID_ARG);
    cp = arbor_context_default_params();
    cp.draft_kind = ARBOR_DRAFT_MODEL; /* without the model */
    cr_expect_eq(arbor_context_create(m, cp, &ctx), ARBOR_ERR_INVALID_ARG);
    cp = arbor_context_default_params();
    cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    cp.tree = "static:0";
    cr_expect_eq(arbor_context_create(m, cp, &ctx), ARBOR_ERR_INVALID_ARG);
    cr_expect_null(ctx);

    cp = arbor_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 1;
    cr_assert_eq(arbor_context_create(m, cp, &ctx), ARBOR_OK, "%s", arbor_last_error());
    arbor_generate_params gp = arbor_generate_default_params();
    gp.n_predict = 2;
    arbor_token prompt[3] = {1, 400, 511};
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 3, &gp, NULL, NULL), ARBOR_OK, "%s",
                 arbor_last_error());
    prompt[1] = 512;
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 3, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    prompt[1] = -7;
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 3, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    prompt[1] = 3;
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 0, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, -4, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    cr_expect_eq(arbor_generate_tokens(ctx, NULL, 3, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    arbor_token long_prompt[40];
    for (int i = 0; i < 40; i++) long_prompt[i] = 3 + i;
    cr_expect_eq(arbor_generate_tokens(ctx, long_prompt, 40, &gp, NULL, NULL),
                 ARBOR_ERR_CONTEXT_FULL);
    gp.n_predict = -2;
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 3, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    gp = arbor_generate_default_params();
    gp.sampling.temp = 0.0f / 0.0f;
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 3, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    gp = arbor_generate_default_params();
    gp.n_stop = 2; /* without the strings */
    cr_expect_eq(arbor_generate_tokens(ctx, prompt, 3, &gp, NULL, NULL), ARBOR_ERR_INVALID_ARG);
    /* after all that, the context still works */
    gp = arbor_generate_default_params();
    gp.n_predict = 4;
    cr_expect_eq(arbor_generate(ctx, "Once upon a time", &gp, NULL, NULL), ARBOR_OK, "%s",
                 arbor_last_error());
    arbor_context_free(ctx);
    arbor_model_free(m);
}
