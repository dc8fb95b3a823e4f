/* test_gguf.c: the GGUF reader and writer.
 * - every fixture model and tokenizer vocab loads, with the tensor counts, formats and
 *   hyperparameters of the fixture README and the tensor data offsets llama.cpp reported
 *   (dequant/index.tsv); F16/BF16 tensor bytes match ggml's own dequantization;
 * - typed getters (compatible types, "absent" vs "wrong type", 4294967295 token ids);
 * - writer round trips in v2 and v3 with every value type, and fixture files copied through the
 *   writer come out byte-identical; a failed write leaves nothing at the target path;
 * - hostile input: truncation at every byte, absurd counts and lengths, bad tensor placement,
 *   types, shapes, keys and alignment, random byte mutations: each must fail with one line
 *   naming the file (and the offset, for format errors) and never crash;
 * - the `arbor info` subcommand on a fixture model. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/core/gguf.h"
#include "util/gguf_build.h"
#include "util/refs.h"

#define MODELS ARBOR_FIXTURES "/models/"
#define VOCABS ARBOR_FIXTURES "/tokenizer/"

/* ---------------------------------------------------------------- small utilities */

static char *tmpdir; /* per test: created by setup, removed by teardown */
static void setup_tmp(void) {
    tmpdir = gb_tmpdir();
}
static void teardown_tmp(void) {
    gb_rmdir(tmpdir);
    free(tmpdir);
    tmpdir = NULL;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static ar_gguf *open_ok(const char *path) {
    ar_gguf *g = NULL;
    ar_status st = ar_gguf_open(path, &g);
    cr_assert_eq(st, AR_OK, "%s: %s", path, ar_last_error());
    cr_assert(g);
    return g;
}

static uint32_t u32_of(const ar_gguf *g, const char *key) {
    uint32_t v = 0;
    cr_assert_eq(ar_gguf_get_u32(g, key, &v), AR_OK, "%s: %s: %s", g->path, key, ar_last_error());
    return v;
}

static bool str_is(ar_str s, const char *want) {
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* Every tensor's data lies inside the file, at an aligned offset, after the header. */
static void check_placement(const ar_gguf *g) {
    cr_assert(g->alignment && (g->alignment & (g->alignment - 1)) == 0);
    cr_assert_eq(g->data_offset % g->alignment, 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        uint64_t at = (uint64_t)((const uint8_t *)t->data - g->map);
        cr_assert_eq(at, g->data_offset + t->offset, "%s", t->name);
        cr_assert_eq(t->offset % g->alignment, 0, "%s", t->name);
        cr_assert_leq(at + t->nbytes, g->size, "%s", t->name);
        const ar_type_traits *tr = ar_type_get(t->type);
        cr_assert(tr);
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        cr_assert_eq(t->nbytes, (uint64_t)(n / tr->blck_size) * tr->type_size, "%s", t->name);
        cr_assert_eq(ar_gguf_find_tensor(g, t->name), t);
    }
}

/* ---------------------------------------------------------------- fixture models */

typedef struct type_count {
    ar_type type;
    int n;
} type_count;

typedef struct model_case {
    const char *file;
    uint64_t bytes;
    const char *arch;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx, n_rot;
    type_count types[3];
} model_case;

#define STORIES_DIMS 64, 5, 8, 4
#define SYNTH_LLAMA  "llama", 256, 4, 8, 2, 768, 512, 256, 32
#define SYNTH_QWEN2  "qwen2", 128, 2, 4, 2, 384, 50257, 256, 32
#define F32          AR_TYPE_F32
/* From the fixture README's model table. */
// clang-format off
static const model_case model_cases[] = {
    {"stories260K-f32.gguf",    1185376, "llama", STORIES_DIMS, 172, 512, 512, 8, {{F32, 48}}},
    {"llama2xs-260K-f32.gguf",  1262176, "llama", STORIES_DIMS, 192, 512, 256, 8, {{F32, 48}}},
    {"llama2xs-260K-q8_0.gguf", 347808,  "llama", STORIES_DIMS, 192, 512, 256, 8,
     {{F32, 11}, {AR_TYPE_Q8_0, 37}}},
    {"llama2xs-260K-q4_0.gguf", 208544,  "llama", STORIES_DIMS, 192, 512, 256, 8,
     {{F32, 11}, {AR_TYPE_Q4_0, 36}, {AR_TYPE_Q8_0, 1}}},
    {"aidreams260K-f32.gguf",   1068640, "llama", 64, 4, 4, 4,  172, 512, 128, 16, {{F32, 39}}},
    {"synth-llama-f32.gguf",    13130304, SYNTH_LLAMA, {{F32, 39}}},
    {"synth-llama-f16.gguf",    6576736,  SYNTH_LLAMA, {{AR_TYPE_F16, 30}, {F32, 9}}},
    {"synth-llama-bf16.gguf",   6576736,  SYNTH_LLAMA, {{AR_TYPE_BF16, 30}, {F32, 9}}},
    {"synth-llama-q8_0.gguf",   3504736,  SYNTH_LLAMA, {{AR_TYPE_Q8_0, 30}, {F32, 9}}},
    {"synth-llama-q4_0.gguf",   1866336,  SYNTH_LLAMA, {{AR_TYPE_Q4_0, 30}, {F32, 9}}},
    {"synth-llama-q4_1.gguf",   2071136,  SYNTH_LLAMA, {{AR_TYPE_Q4_1, 30}, {F32, 9}}},
    {"synth-llama-q5_0.gguf",   2275936,  SYNTH_LLAMA, {{AR_TYPE_Q5_0, 30}, {F32, 9}}},
    {"synth-llama-q5_1.gguf",   2480736,  SYNTH_LLAMA, {{AR_TYPE_Q5_1, 30}, {F32, 9}}},
    {"synth-llama-q2_k.gguf",   1098336,  SYNTH_LLAMA, {{AR_TYPE_Q2_K, 30}, {F32, 9}}},
    {"synth-llama-q3_k.gguf",   1431136,  SYNTH_LLAMA, {{AR_TYPE_Q3_K, 30}, {F32, 9}}},
    {"synth-llama-q4_k.gguf",   1866336,  SYNTH_LLAMA, {{AR_TYPE_Q4_K, 30}, {F32, 9}}},
    {"synth-llama-q5_k.gguf",   2275936,  SYNTH_LLAMA, {{AR_TYPE_Q5_K, 30}, {F32, 9}}},
    {"synth-llama-q6_k.gguf",   2711136,  SYNTH_LLAMA, {{AR_TYPE_Q6_K, 30}, {F32, 9}}},
    {"synth-llama-q4_k_m.gguf", 2009952,  SYNTH_LLAMA,
     {{AR_TYPE_Q4_K, 25}, {AR_TYPE_Q6_K, 5}, {F32, 9}}},
    {"synth-qwen2-f32.gguf",    29077632, SYNTH_QWEN2, {{F32, 26}}},
    {"synth-qwen2-q8_0.gguf",   9026016,  SYNTH_QWEN2, {{AR_TYPE_Q8_0, 15}, {F32, 11}}},
};
// clang-format on

static uint32_t arch_u32(const ar_gguf *g, const char *arch, const char *suffix) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return u32_of(g, key);
}

Test(gguf_fixtures, every_model_matches_the_readme) {
    for (size_t m = 0; m < AR_ARRAY_LEN(model_cases); m++) {
        const model_case *mc = &model_cases[m];
        char path[512];
        snprintf(path, sizeof path, MODELS "%s", mc->file);
        ar_gguf *g = open_ok(path);
        cr_expect_eq(g->size, mc->bytes, "%s", mc->file);
        cr_expect_eq(g->version, 3, "%s", mc->file);
        ar_str arch;
        cr_assert_eq(ar_gguf_get_str(g, "general.architecture", &arch), AR_OK);
        cr_expect(str_is(arch, mc->arch), "%s: architecture %.*s", mc->file, (int)arch.len,
                  arch.ptr);
        cr_expect_eq(arch_u32(g, mc->arch, "embedding_length"), mc->n_embd, "%s", mc->file);
        cr_expect_eq(arch_u32(g, mc->arch, "block_count"), mc->n_layer, "%s", mc->file);
        cr_expect_eq(arch_u32(g, mc->arch, "attention.head_count"), mc->n_head, "%s", mc->file);
        cr_expect_eq(arch_u32(g, mc->arch, "attention.head_count_kv"), mc->n_head_kv, "%s",
                     mc->file);
        cr_expect_eq(arch_u32(g, mc->arch, "feed_forward_length"), mc->n_ff, "%s", mc->file);
        cr_expect_eq(arch_u32(g, mc->arch, "context_length"), mc->n_ctx, "%s", mc->file);
        cr_expect_eq(arch_u32(g, mc->arch, "rope.dimension_count"), mc->n_rot, "%s", mc->file);
        const ar_gguf_kv *tokens;
        cr_assert_eq(ar_gguf_get_arr(g, "tokenizer.ggml.tokens", AR_GGUF_STRING, &tokens), AR_OK);
        cr_expect_eq(tokens->arr_n, mc->n_vocab, "%s", mc->file);

        int want_total = 0;
        for (int k = 0; k < 3; k++) {
            if (!mc->types[k].n) continue;
            want_total += mc->types[k].n;
            int have = 0;
            for (uint64_t i = 0; i < g->n_tensors; i++)
                have += g->tensors[i].type == mc->types[k].type;
            cr_expect_eq(have, mc->types[k].n, "%s: %d tensors of %s, README says %d", mc->file,
                         have, ar_type_get(mc->types[k].type)->name, mc->types[k].n);
        }
        cr_expect_eq(g->n_tensors, (uint64_t)want_total, "%s", mc->file);
        check_placement(g);
        /* token_embd is [n_embd, n_vocab] in every one of these */
        const ar_gguf_tensor *emb = ar_gguf_find_tensor(g, "token_embd.weight");
        cr_assert(emb, "%s", mc->file);
        cr_expect_eq(emb->n_dims, 2);
        cr_expect_eq(emb->ne[0], mc->n_embd);
        cr_expect_eq(emb->ne[1], mc->n_vocab);
        bool tied = strcmp(mc->arch, "qwen2") == 0;
        cr_expect_eq(ar_gguf_find_tensor(g, "output.weight") == NULL, tied, "%s", mc->file);
        ar_gguf_close(g);
    }
}

Test(gguf_fixtures, q4_k_m_q6_k_tensors_are_the_readme_ones) {
    static const char *const q6k[] = {"output.weight", "blk.2.attn_v.weight",
                                      "blk.2.ffn_down.weight", "blk.3.attn_v.weight",
                                      "blk.3.ffn_down.weight"};
    ar_gguf *g = open_ok(MODELS "synth-llama-q4_k_m.gguf");
    for (size_t i = 0; i < AR_ARRAY_LEN(q6k); i++) {
        const ar_gguf_tensor *t = ar_gguf_find_tensor(g, q6k[i]);
        cr_assert(t, "%s", q6k[i]);
        cr_expect_eq(t->type, AR_TYPE_Q6_K, "%s", q6k[i]);
    }
    ar_gguf_close(g);
}

/* dequant/index.tsv: llama.cpp's absolute data offset and size of one tensor per format. */
Test(gguf_fixtures, tensor_offsets_match_llama_cpp) {
    FILE *f = fopen(ARBOR_FIXTURES "/dequant/index.tsv", "r");
    cr_assert(f);
    char line[1024];
    cr_assert(fgets(line, sizeof line, f)); /* header */
    int rows = 0, compared = 0;
    while (fgets(line, sizeof line, f)) {
        char file[256], model[256], tensor[256], type[32];
        long long ne0, ne1;
        unsigned long long offset, bytes;
        if (sscanf(line, "%255s %255s %255s %31s %lld %lld %llu %llu", file, model, tensor, type,
                   &ne0, &ne1, &offset, &bytes) != 8)
            continue;
        rows++;
        char path[600];
        snprintf(path, sizeof path, MODELS "%s", model);
        ar_gguf *g = open_ok(path);
        const ar_gguf_tensor *t = ar_gguf_find_tensor(g, tensor);
        cr_assert(t, "%s: %s", model, tensor);
        cr_expect_eq(strcasecmp(ar_type_get(t->type)->name, type), 0, "%s: %s is %s, not %s", model,
                     tensor, ar_type_get(t->type)->name, type);
        cr_expect_eq(t->ne[0], ne0);
        cr_expect_eq(t->ne[1], ne1);
        cr_expect_eq((uint64_t)((const uint8_t *)t->data - g->map), offset, "%s: %s", model,
                     tensor);
        cr_expect_eq(t->nbytes, bytes, "%s: %s", model, tensor);
        /* For F16/BF16 ggml's dequantization is a plain widening: the bytes at t->data must
         * give exactly the reference floats. */
        if (t->type == AR_TYPE_F16 || t->type == AR_TYPE_BF16) {
            char ref_path[600];
            snprintf(ref_path, sizeof ref_path, ARBOR_FIXTURES "/dequant/%s", file);
            size_t n;
            float *ref = (float *)read_whole(ref_path, &n);
            cr_assert_eq(n, (size_t)(ne0 * ne1) * 4);
            const uint8_t *p = t->data;
            for (size_t i = 0; i < n / 4; i++) {
                uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
                float v = t->type == AR_TYPE_F16 ? ar_fp16_to_fp32(h) : ar_bf16_to_fp32(h);
                cr_assert_eq(ar_f32_bits(v), ar_f32_bits(ref[i]), "%s[%zu]", file, i);
            }
            free(ref);
            compared++;
        }
        ar_gguf_close(g);
    }
    fclose(f);
    cr_expect_eq(rows, 16);
    cr_expect_eq(compared, 2);
}

typedef struct vocab_case {
    const char *file, *model, *pre;
    uint64_t n_tokens;
    uint32_t bos, eos;
    const char *token0; /* piece of a known id */
    uint32_t id0;
} vocab_case;

Test(gguf_fixtures, vocab_only_files_load) {
    static const vocab_case cases[] = {
        {"ggml-vocab-llama-spm.gguf", "llama", "default", 32000, 1, 2, "<s>", 1},
        {"ggml-vocab-phi-3.gguf", "llama", "default", 32064, 1, 32000, "</s>", 2},
        {"ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257, 50256, 50256, "<|endoftext|>", 50256},
        {"ggml-vocab-deepseek-coder.gguf", "gpt2", "deepseek-coder", 32256, 32013, 32014, NULL, 0},
        {"ggml-vocab-falcon.gguf", "gpt2", "falcon", 65024, 11, 11, NULL, 0},
        {"ggml-vocab-starcoder.gguf", "gpt2", "starcoder", 49152, 0, 0, "<|endoftext|>", 0},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        const vocab_case *vc = &cases[i];
        char path[512];
        snprintf(path, sizeof path, VOCABS "%s", vc->file);
        ar_gguf *g = open_ok(path);
        cr_expect_eq(g->n_tensors, 0);
        ar_str s;
        cr_assert_eq(ar_gguf_get_str(g, "tokenizer.ggml.model", &s), AR_OK);
        cr_expect(str_is(s, vc->model), "%s", vc->file);
        cr_assert_eq(ar_gguf_get_str(g, "tokenizer.ggml.pre", &s), AR_OK);
        cr_expect(str_is(s, vc->pre), "%s", vc->file);
        const ar_gguf_kv *tokens;
        cr_assert_eq(ar_gguf_get_arr(g, "tokenizer.ggml.tokens", AR_GGUF_STRING, &tokens), AR_OK);
        cr_expect_eq(tokens->arr_n, vc->n_tokens, "%s", vc->file);
        for (uint64_t t = 0; t < tokens->arr_n; t++) {
            const ar_str *p = &tokens->arr_strs[t];
            cr_assert((const uint8_t *)p->ptr >= g->map &&
                      (const uint8_t *)p->ptr + p->len <= g->map + g->size);
        }
        if (vc->token0) cr_expect(str_is(tokens->arr_strs[vc->id0], vc->token0), "%s", vc->file);
        cr_expect_eq(u32_of(g, "tokenizer.ggml.bos_token_id"), vc->bos, "%s", vc->file);
        cr_expect_eq(u32_of(g, "tokenizer.ggml.eos_token_id"), vc->eos, "%s", vc->file);
        if (strcmp(vc->model, "gpt2") == 0) {
            const ar_gguf_kv *merges;
            cr_expect_eq(ar_gguf_get_arr(g, "tokenizer.ggml.merges", AR_GGUF_STRING, &merges),
                         AR_OK, "%s", vc->file);
        }
        ar_gguf_close(g);
    }
}

/* ---------------------------------------------------------------- typed getters */

Test(gguf_getters, fixture_values_and_type_checks) {
    ar_gguf *g = open_ok(MODELS "stories260K-f32.gguf");
    uint32_t u32;
    uint64_t u64;
    float f;
    ar_str s;
    bool b;
    cr_expect_eq(u32_of(g, "llama.block_count"), 5);
    cr_assert_eq(ar_gguf_get_u64(g, "llama.block_count", &u64), AR_OK);
    cr_expect_eq(u64, 5);
    cr_assert_eq(ar_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), AR_OK);
    cr_expect_eq(f, 1e-5f);
    /* "none" token ids come back faithfully: interpreting them is the tokenizer's business */
    cr_expect_eq(u32_of(g, "tokenizer.ggml.padding_token_id"), 4294967295u);
    cr_expect_eq(u32_of(g, "tokenizer.ggml.seperator_token_id"), 4294967295u);

    /* absent: AR_ERR_INVALID_ARG and no message */
    ar_clear_error();
    cr_expect_eq(ar_gguf_get_u32(g, "llama.rope.freq_base", &u32), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_get_f32(g, "llama.rope.freq_base", &f), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_get_str(g, "tokenizer.ggml.pre", &s), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), AR_ERR_INVALID_ARG);
    cr_expect_str_empty(ar_last_error());
    cr_expect_null(ar_gguf_find(g, "no.such.key"));
    cr_expect_null(ar_gguf_find_tensor(g, "no.such.tensor"));

    /* wrong type: AR_ERR_FORMAT with file, offset and key in the message */
    cr_expect_eq(ar_gguf_get_u32(g, "general.architecture", &u32), AR_ERR_FORMAT);
    cr_expect(strstr(ar_last_error(), "stories260K-f32.gguf: offset "), "%s", ar_last_error());
    cr_expect(strstr(ar_last_error(), "general.architecture"), "%s", ar_last_error());
    cr_expect_eq(ar_gguf_get_str(g, "llama.block_count", &s), AR_ERR_FORMAT);
    cr_expect_eq(ar_gguf_get_f32(g, "llama.block_count", &f), AR_ERR_FORMAT);
    cr_expect_eq(ar_gguf_get_bool(g, "llama.block_count", &b), AR_ERR_FORMAT);
    cr_expect_eq(ar_gguf_get_u32(g, "tokenizer.ggml.tokens", &u32), AR_ERR_FORMAT);

    const ar_gguf_kv *arr;
    cr_assert_eq(ar_gguf_get_arr(g, "tokenizer.ggml.scores", AR_GGUF_FLOAT32, &arr), AR_OK);
    cr_expect_eq(arr->arr_n, 512);
    cr_expect_eq(ar_gguf_get_arr(g, "tokenizer.ggml.scores", AR_GGUF_INT32, &arr), AR_ERR_FORMAT);
    cr_expect(strstr(ar_last_error(), "array of float32"), "%s", ar_last_error());
    cr_expect_eq(ar_gguf_get_arr(g, "llama.block_count", AR_GGUF_VTYPE_COUNT, &arr), AR_ERR_FORMAT);
    cr_assert_eq(ar_gguf_get_arr(g, "tokenizer.ggml.token_type", AR_GGUF_VTYPE_COUNT, &arr), AR_OK);
    cr_expect_eq(arr->arr_type, AR_GGUF_INT32);
    /* token types of <unk>, <s>, </s>, <0x00>: unknown 2, control 3, control 3, byte 6 */
    cr_expect_eq(ar_gguf_arr_i64(arr, 0), 2);
    cr_expect_eq(ar_gguf_arr_i64(arr, 1), 3);
    cr_expect_eq(ar_gguf_arr_i64(arr, 3), 6);
    cr_expect_eq(ar_gguf_arr_f64(arr, 3), 6.0);
    cr_expect_eq(ar_gguf_arr_i64(arr, 512), 0); /* out of range */
    ar_gguf_close(g);

    g = open_ok(MODELS "synth-llama-q8_0.gguf");
    cr_assert_eq(ar_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), AR_OK);
    cr_expect(b);
    cr_assert_eq(ar_gguf_get_f32(g, "llama.rope.freq_base", &f), AR_OK);
    cr_expect_eq(f, 10000.0f);
    ar_gguf_close(g);
}

/* ---------------------------------------------------------------- writer round trip */

typedef struct fill_ctx {
    int calls;
    uint64_t fail_at; /* tensor index whose fill fails, or UINT64_MAX */
} fill_ctx;

static uint8_t pattern_byte(uint64_t index, uint64_t i) {
    return (uint8_t)(index * 31 + i * 7 + (i >> 8));
}

static ar_status fill_pattern(void *user, uint64_t index, void *dst, uint64_t size) {
    fill_ctx *fc = user;
    fc->calls++;
    if (index == fc->fail_at) return ar_fail(AR_ERR_IO, "fill: tensor %" PRIu64 " failed", index);
    for (uint64_t i = 0; i < size; i++) ((uint8_t *)dst)[i] = pattern_byte(index, i);
    return AR_OK;
}

/* One key/value of each scalar type (the setters and copy_kv for the types without a setter). */
static void set_every_kv(ar_gguf_writer *w) {
    cr_assert_eq(ar_gguf_set_str(w, "general.architecture", "test"), AR_OK);
    cr_assert_eq(ar_gguf_set_u32(w, "t.u32", 4000000000u), AR_OK);
    cr_assert_eq(ar_gguf_set_i32(w, "t.i32", -123456), AR_OK);
    cr_assert_eq(ar_gguf_set_u64(w, "t.u64", 0xfedcba9876543210ull), AR_OK);
    cr_assert_eq(ar_gguf_set_f32(w, "t.f32", -1.5e-7f), AR_OK);
    cr_assert_eq(ar_gguf_set_bool(w, "t.bool", true), AR_OK);
    cr_assert_eq(ar_gguf_set_str(w, "t.empty", ""), AR_OK);
    ar_gguf_kv kv = {.key = "t.u8", .type = AR_GGUF_UINT8, .v.u = 250};
    cr_assert_eq(ar_gguf_copy_kv(w, &kv), AR_OK);
    kv = (ar_gguf_kv){.key = "t.i8", .type = AR_GGUF_INT8, .v.i = -128};
    cr_assert_eq(ar_gguf_copy_kv(w, &kv), AR_OK);
    kv = (ar_gguf_kv){.key = "t.u16", .type = AR_GGUF_UINT16, .v.u = 65535};
    cr_assert_eq(ar_gguf_copy_kv(w, &kv), AR_OK);
    kv = (ar_gguf_kv){.key = "t.i16", .type = AR_GGUF_INT16, .v.i = -32768};
    cr_assert_eq(ar_gguf_copy_kv(w, &kv), AR_OK);
    kv = (ar_gguf_kv){.key = "t.i64", .type = AR_GGUF_INT64, .v.i = INT64_MIN};
    cr_assert_eq(ar_gguf_copy_kv(w, &kv), AR_OK);
    kv = (ar_gguf_kv){.key = "t.f64", .type = AR_GGUF_FLOAT64, .v.f = 1.0 / 3.0};
    cr_assert_eq(ar_gguf_copy_kv(w, &kv), AR_OK);

    static const uint8_t u8s[] = {0, 1, 255};
    static const int8_t i8s[] = {-128, 0, 127};
    static const uint16_t u16s[] = {0, 65535};
    static const int16_t i16s[] = {-32768, 32767};
    static const uint32_t u32s[] = {0, 4294967295u, 7};
    static const int32_t i32s[] = {INT32_MIN, -1, INT32_MAX};
    static const float f32s[] = {0.5f, -0.0f, 3.25e30f};
    static const uint8_t bools[] = {1, 0, 1, 1};
    static const uint64_t u64s[] = {UINT64_MAX, 1};
    static const int64_t i64s[] = {INT64_MIN, INT64_MAX};
    static const double f64s[] = {1e-300, -2.5};
    cr_assert_eq(ar_gguf_set_arr(w, "a.u8", AR_GGUF_UINT8, u8s, 3), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.i8", AR_GGUF_INT8, i8s, 3), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.u16", AR_GGUF_UINT16, u16s, 2), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.i16", AR_GGUF_INT16, i16s, 2), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.u32", AR_GGUF_UINT32, u32s, 3), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.i32", AR_GGUF_INT32, i32s, 3), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.f32", AR_GGUF_FLOAT32, f32s, 3), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.bool", AR_GGUF_BOOL, bools, 4), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.u64", AR_GGUF_UINT64, u64s, 2), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.i64", AR_GGUF_INT64, i64s, 2), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.f64", AR_GGUF_FLOAT64, f64s, 2), AR_OK);
    cr_assert_eq(ar_gguf_set_arr(w, "a.empty", AR_GGUF_FLOAT32, NULL, 0), AR_OK);
    const ar_str strs[] = {{"hello", 5}, {"", 0}, {"nul\0inside", 10}, {"\xe2\x96\x81x", 4}};
    cr_assert_eq(ar_gguf_set_arr_str(w, "a.str", strs, 4), AR_OK);
    cr_assert_eq(ar_gguf_set_arr_str(w, "a.str_empty", NULL, 0), AR_OK);
    /* set twice: the last value wins, the key keeps its place */
    cr_assert_eq(ar_gguf_set_u32(w, "t.u32", 1), AR_OK);
    cr_assert_eq(ar_gguf_set_u32(w, "t.u32", 4000000000u), AR_OK);
}

static void check_every_kv(const ar_gguf *g) {
    static const char *const order[] = {"general.architecture",
                                        "t.u32",
                                        "t.i32",
                                        "t.u64",
                                        "t.f32",
                                        "t.bool",
                                        "t.empty",
                                        "t.u8",
                                        "t.i8",
                                        "t.u16",
                                        "t.i16",
                                        "t.i64",
                                        "t.f64",
                                        "a.u8",
                                        "a.i8",
                                        "a.u16",
                                        "a.i16",
                                        "a.u32",
                                        "a.i32",
                                        "a.f32",
                                        "a.bool",
                                        "a.u64",
                                        "a.i64",
                                        "a.f64",
                                        "a.empty",
                                        "a.str",
                                        "a.str_empty"};
    cr_assert_geq(g->n_kv, AR_ARRAY_LEN(order));
    for (size_t i = 0; i < AR_ARRAY_LEN(order); i++) cr_expect_str_eq(g->kv[i].key, order[i]);

    const ar_gguf_kv *kv;
    cr_assert((kv = ar_gguf_find(g, "t.u32")) && kv->type == AR_GGUF_UINT32);
    cr_expect_eq(kv->v.u, 4000000000u);
    cr_assert((kv = ar_gguf_find(g, "t.i32")) && kv->type == AR_GGUF_INT32);
    cr_expect_eq(kv->v.i, -123456);
    cr_assert((kv = ar_gguf_find(g, "t.u64")) && kv->type == AR_GGUF_UINT64);
    cr_expect_eq(kv->v.u, 0xfedcba9876543210ull);
    cr_assert((kv = ar_gguf_find(g, "t.f32")) && kv->type == AR_GGUF_FLOAT32);
    cr_expect_eq((float)kv->v.f, -1.5e-7f);
    cr_assert((kv = ar_gguf_find(g, "t.bool")) && kv->type == AR_GGUF_BOOL);
    cr_expect_eq(kv->v.u, 1);
    cr_assert((kv = ar_gguf_find(g, "t.empty")) && kv->type == AR_GGUF_STRING);
    cr_expect_eq(kv->v.s.len, 0);
    cr_assert((kv = ar_gguf_find(g, "t.u8")) && kv->type == AR_GGUF_UINT8);
    cr_expect_eq(kv->v.u, 250);
    cr_assert((kv = ar_gguf_find(g, "t.i8")) && kv->type == AR_GGUF_INT8);
    cr_expect_eq(kv->v.i, -128);
    cr_assert((kv = ar_gguf_find(g, "t.u16")) && kv->type == AR_GGUF_UINT16);
    cr_expect_eq(kv->v.u, 65535);
    cr_assert((kv = ar_gguf_find(g, "t.i16")) && kv->type == AR_GGUF_INT16);
    cr_expect_eq(kv->v.i, -32768);
    cr_assert((kv = ar_gguf_find(g, "t.i64")) && kv->type == AR_GGUF_INT64);
    cr_expect_eq(kv->v.i, INT64_MIN);
    cr_assert((kv = ar_gguf_find(g, "t.f64")) && kv->type == AR_GGUF_FLOAT64);
    cr_expect_eq(kv->v.f, 1.0 / 3.0);

    /* getters across compatible types */
    uint32_t u32;
    uint64_t u64;
    float f;
    cr_expect_eq(ar_gguf_get_u32(g, "t.u8", &u32), AR_OK);
    cr_expect_eq(u32, 250);
    cr_expect_eq(ar_gguf_get_u32(g, "t.u16", &u32), AR_OK);
    cr_expect_eq(u32, 65535);
    cr_expect_eq(ar_gguf_get_u32(g, "t.u64", &u32), AR_ERR_FORMAT); /* does not fit */
    cr_expect(strstr(ar_last_error(), "does not fit"), "%s", ar_last_error());
    cr_expect_eq(ar_gguf_get_u64(g, "t.u64", &u64), AR_OK);
    cr_expect_eq(u64, 0xfedcba9876543210ull);
    cr_expect_eq(ar_gguf_get_u32(g, "t.i32", &u32), AR_ERR_FORMAT); /* negative */
    cr_expect_eq(ar_gguf_get_u64(g, "t.i8", &u64), AR_ERR_FORMAT);
    cr_expect_eq(ar_gguf_get_f32(g, "t.f64", &f), AR_OK);
    cr_expect_eq(f, (float)(1.0 / 3.0));

    cr_assert_eq(ar_gguf_get_arr(g, "a.u8", AR_GGUF_UINT8, &kv), AR_OK);
    cr_expect_eq(kv->arr_n, 3);
    cr_expect_eq(ar_gguf_arr_i64(kv, 2), 255);
    cr_assert_eq(ar_gguf_get_arr(g, "a.i8", AR_GGUF_INT8, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 0), -128);
    cr_expect_eq(ar_gguf_arr_i64(kv, 2), 127);
    cr_assert_eq(ar_gguf_get_arr(g, "a.u16", AR_GGUF_UINT16, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 1), 65535);
    cr_assert_eq(ar_gguf_get_arr(g, "a.i16", AR_GGUF_INT16, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 0), -32768);
    cr_assert_eq(ar_gguf_get_arr(g, "a.u32", AR_GGUF_UINT32, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 1), 4294967295ll);
    cr_assert_eq(ar_gguf_get_arr(g, "a.i32", AR_GGUF_INT32, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 0), INT32_MIN);
    cr_expect_eq(ar_gguf_arr_i64(kv, 1), -1);
    cr_assert_eq(ar_gguf_get_arr(g, "a.f32", AR_GGUF_FLOAT32, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_f64(kv, 0), 0.5);
    cr_expect(signbit(ar_gguf_arr_f64(kv, 1)));
    cr_expect_eq((float)ar_gguf_arr_f64(kv, 2), 3.25e30f);
    cr_assert_eq(ar_gguf_get_arr(g, "a.bool", AR_GGUF_BOOL, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 0) * 8 + ar_gguf_arr_i64(kv, 1) * 4 +
                     ar_gguf_arr_i64(kv, 2) * 2 + ar_gguf_arr_i64(kv, 3),
                 0xb);
    cr_assert_eq(ar_gguf_get_arr(g, "a.u64", AR_GGUF_UINT64, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 0), INT64_MAX); /* clamped */
    cr_expect_eq(ar_gguf_arr_f64(kv, 0), 18446744073709551615.0);
    cr_assert_eq(ar_gguf_get_arr(g, "a.i64", AR_GGUF_INT64, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 0), INT64_MIN);
    cr_expect_eq(ar_gguf_arr_i64(kv, 1), INT64_MAX);
    cr_assert_eq(ar_gguf_get_arr(g, "a.f64", AR_GGUF_FLOAT64, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_f64(kv, 0), 1e-300);
    cr_expect_eq(ar_gguf_arr_i64(kv, 1), -2);
    cr_assert_eq(ar_gguf_get_arr(g, "a.empty", AR_GGUF_FLOAT32, &kv), AR_OK);
    cr_expect_eq(kv->arr_n, 0);
    cr_assert_eq(ar_gguf_get_arr(g, "a.str", AR_GGUF_STRING, &kv), AR_OK);
    cr_assert_eq(kv->arr_n, 4);
    cr_expect(str_is(kv->arr_strs[0], "hello"));
    cr_expect_eq(kv->arr_strs[1].len, 0);
    cr_expect_eq(kv->arr_strs[2].len, 10);
    cr_expect_eq(memcmp(kv->arr_strs[2].ptr, "nul\0inside", 10), 0);
    cr_expect(str_is(kv->arr_strs[3], "\xe2\x96\x81x"));
    cr_assert_eq(ar_gguf_get_arr(g, "a.str_empty", AR_GGUF_STRING, &kv), AR_OK);
    cr_expect_eq(kv->arr_n, 0);
}

typedef struct test_tensor {
    const char *name;
    ar_type type;
    uint32_t n_dims;
    int64_t ne[4];
    bool filled; /* data from the fill callback rather than memory */
} test_tensor;

static const test_tensor test_tensors[] = {
    {"w.f32", AR_TYPE_F32, 2, {5, 3}, false},          /* 60 bytes: not a multiple of 32 */
    {"w.f16", AR_TYPE_F16, 1, {7}, true},              /* 14 bytes */
    {"w.q8_0", AR_TYPE_Q8_0, 2, {64, 2}, false},       /* 136 bytes */
    {"w.q4_k", AR_TYPE_Q4_K, 4, {256, 1, 2, 1}, true}, /* 288 bytes */
    {"w.bf16", AR_TYPE_BF16, 3, {2, 2, 2}, false},     /* 16 bytes */
    {"w.empty", AR_TYPE_F32, 2, {4, 0}, false},        /* no elements */
    {"w.q6_k", AR_TYPE_Q6_K, 1, {512}, true},          /* 420 bytes */
};

static uint64_t test_tensor_bytes(const test_tensor *t) {
    const ar_type_traits *tr = ar_type_get(t->type);
    int64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return (uint64_t)(n / tr->blck_size) * tr->type_size;
}

/* Writes the every-kv file with the test tensors; the in-memory tensors hold the same pattern
 * the fill callback produces, so both kinds are checked the same way. */
static void write_test_file(const char *path, uint32_t version, uint32_t alignment) {
    ar_gguf_writer *w = ar_gguf_writer_new(version);
    cr_assert(w);
    set_every_kv(w);
    if (alignment) cr_assert_eq(ar_gguf_set_u32(w, "general.alignment", alignment), AR_OK);
    uint8_t *bufs[AR_ARRAY_LEN(test_tensors)] = {0};
    for (size_t i = 0; i < AR_ARRAY_LEN(test_tensors); i++) {
        const test_tensor *t = &test_tensors[i];
        if (!t->filled) {
            uint64_t n = test_tensor_bytes(t);
            bufs[i] = malloc(n + 1);
            for (uint64_t k = 0; k < n; k++) bufs[i][k] = pattern_byte(i, k);
        }
        cr_assert_eq(ar_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, bufs[i]), AR_OK,
                     "%s", ar_last_error());
    }
    fill_ctx fc = {.fail_at = UINT64_MAX};
    cr_assert_eq(ar_gguf_write(w, path, fill_pattern, &fc), AR_OK, "%s", ar_last_error());
    cr_expect_eq(fc.calls, 3);
    for (size_t i = 0; i < AR_ARRAY_LEN(test_tensors); i++) free(bufs[i]);
    ar_gguf_writer_free(w);
}

static void check_test_file(const char *path, uint32_t version, uint32_t alignment) {
    ar_gguf *g = open_ok(path);
    cr_expect_eq(g->version, version);
    cr_expect_eq(g->alignment, alignment ? alignment : 32);
    check_every_kv(g);
    cr_assert_eq(g->n_tensors, AR_ARRAY_LEN(test_tensors));
    check_placement(g);
    for (size_t i = 0; i < AR_ARRAY_LEN(test_tensors); i++) {
        const test_tensor *want = &test_tensors[i];
        const ar_gguf_tensor *t = &g->tensors[i];
        cr_expect_str_eq(t->name, want->name);
        cr_expect_eq(t->type, want->type, "%s", want->name);
        cr_expect_eq(t->n_dims, want->n_dims, "%s", want->name);
        for (uint32_t d = 0; d < 4; d++)
            cr_expect_eq(t->ne[d], d < want->n_dims ? want->ne[d] : 1, "%s", want->name);
        cr_assert_eq(t->nbytes, test_tensor_bytes(want), "%s", want->name);
        for (uint64_t k = 0; k < t->nbytes; k++)
            cr_assert_eq(((const uint8_t *)t->data)[k], pattern_byte(i, k), "%s[%" PRIu64 "]",
                         want->name, k);
    }
    /* the data section runs to the end of the file, ending on the alignment as ggml does */
    cr_expect_eq(g->size % g->alignment, 0);
    ar_gguf_close(g);
}

Test(gguf_writer, round_trip_v3, .init = setup_tmp, .fini = teardown_tmp) {
    char *path = path_in(tmpdir, "rt3.gguf");
    write_test_file(path, 3, 0);
    check_test_file(path, 3, 0);
    free(path);
}

Test(gguf_writer, round_trip_v2, .init = setup_tmp, .fini = teardown_tmp) {
    char *path = path_in(tmpdir, "rt2.gguf");
    write_test_file(path, 2, 0);
    check_test_file(path, 2, 0);
    /* v2 and v3 differ only in the version field */
    char *path3 = path_in(tmpdir, "rt3.gguf");
    write_test_file(path3, 3, 0);
    size_t n2, n3;
    uint8_t *a = read_whole(path, &n2), *b = read_whole(path3, &n3);
    cr_assert_eq(n2, n3);
    cr_expect_eq(a[4], 2);
    cr_expect_eq(b[4], 3);
    a[4] = 3;
    cr_expect_eq(memcmp(a, b, n2), 0);
    free(a);
    free(b);
    free(path);
    free(path3);
}

Test(gguf_writer, custom_alignment, .init = setup_tmp, .fini = teardown_tmp) {
    char *path = path_in(tmpdir, "a64.gguf");
    write_test_file(path, 3, 64);
    check_test_file(path, 3, 64);
    free(path);
    path = path_in(tmpdir, "a8.gguf");
    write_test_file(path, 3, 8);
    check_test_file(path, 3, 8);
    free(path);
}

static ar_status fill_from_source(void *user, uint64_t index, void *dst, uint64_t size) {
    const ar_gguf *src = user;
    cr_assert_lt(index, src->n_tensors);
    cr_assert_eq(size, src->tensors[index].nbytes);
    memcpy(dst, src->tensors[index].data, size);
    return AR_OK;
}

/* Copies every key/value and tensor (odd tensors through the fill callback) and compares the
 * result with the original byte for byte: same layout as llama.cpp's writer. */
static void copy_and_compare(const char *src_path, const char *dst_path) {
    ar_gguf *src = open_ok(src_path);
    ar_gguf_writer *w = ar_gguf_writer_new(src->version);
    cr_assert(w);
    for (uint64_t i = 0; i < src->n_kv; i++)
        cr_assert_eq(ar_gguf_copy_kv(w, &src->kv[i]), AR_OK, "%s", ar_last_error());
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const ar_gguf_tensor *t = &src->tensors[i];
        cr_assert_eq(
            ar_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, i % 2 ? NULL : t->data),
            AR_OK, "%s", ar_last_error());
    }
    cr_assert_eq(ar_gguf_write(w, dst_path, fill_from_source, src), AR_OK, "%s", ar_last_error());
    ar_gguf_writer_free(w);

    ar_gguf *dst = open_ok(dst_path);
    cr_assert_eq(dst->n_kv, src->n_kv);
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const ar_gguf_kv *a = &src->kv[i], *b = &dst->kv[i];
        cr_assert_str_eq(a->key, b->key);
        cr_assert_eq(a->type, b->type, "%s", a->key);
    }
    cr_assert_eq(dst->n_tensors, src->n_tensors);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const ar_gguf_tensor *a = &src->tensors[i], *b = &dst->tensors[i];
        cr_assert_str_eq(a->name, b->name);
        cr_assert_eq(a->type, b->type);
        cr_assert_eq(memcmp(a->ne, b->ne, sizeof a->ne), 0);
        cr_assert_eq(a->nbytes, b->nbytes);
        cr_assert_eq(memcmp(a->data, b->data, a->nbytes), 0, "%s", a->name);
    }
    cr_assert_eq(dst->size, src->size, "%s: copy has %zu bytes, original %zu", src_path, dst->size,
                 src->size);
    cr_assert_eq(memcmp(dst->map, src->map, src->size), 0, "%s: copy differs", src_path);
    ar_gguf_close(dst);
    ar_gguf_close(src);
}

Test(gguf_writer, fixture_copies_are_identical, .init = setup_tmp, .fini = teardown_tmp) {
    static const char *const files[] = {
        MODELS "stories260K-f32.gguf",    MODELS "llama2xs-260K-q4_0.gguf",
        MODELS "synth-llama-q4_k_m.gguf", MODELS "synth-llama-bf16.gguf",
        MODELS "synth-qwen2-q8_0.gguf",   VOCABS "ggml-vocab-gpt-2.gguf",
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(files); i++) {
        char name[32];
        snprintf(name, sizeof name, "copy%zu.gguf", i);
        char *dst = path_in(tmpdir, name);
        copy_and_compare(files[i], dst);
        unlink(dst);
        free(dst);
    }
}

static size_t count_entries(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = 0;
    cr_assert_eq(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

Test(gguf_writer, failed_write_leaves_nothing, .init = setup_tmp, .fini = teardown_tmp) {
    char *path = path_in(tmpdir, "fail.gguf");
    ar_gguf_writer *w = ar_gguf_writer_new(3);
    cr_assert(w);
    cr_assert_eq(ar_gguf_set_str(w, "general.architecture", "x"), AR_OK);
    int64_t ne[1] = {64};
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        cr_assert_eq(ar_gguf_add_tensor(w, name, AR_TYPE_F32, 1, ne, NULL), AR_OK);
    }
    fill_ctx fc = {.fail_at = 2};
    cr_expect_eq(ar_gguf_write(w, path, fill_pattern, &fc), AR_ERR_IO);
    cr_expect_str_eq(ar_last_error(), "fill: tensor 2 failed");
    cr_expect_eq(access(path, F_OK), -1);
    cr_expect_eq(count_entries(tmpdir), 0, "temporary file left behind");

    /* an existing file at the path survives a failed rewrite */
    fc = (fill_ctx){.fail_at = UINT64_MAX};
    cr_assert_eq(ar_gguf_write(w, path, fill_pattern, &fc), AR_OK, "%s", ar_last_error());
    size_t n0, n1;
    uint8_t *before = read_whole(path, &n0);
    cr_assert_eq(ar_gguf_set_str(w, "general.architecture", "changed"), AR_OK);
    fc = (fill_ctx){.fail_at = 3};
    cr_expect_neq(ar_gguf_write(w, path, fill_pattern, &fc), AR_OK);
    uint8_t *after = read_whole(path, &n1);
    cr_expect_eq(n0, n1);
    cr_expect_eq(memcmp(before, after, n0), 0);
    cr_expect_eq(count_entries(tmpdir), 1);
    free(before);
    free(after);

    /* no fill callback for a tensor without data */
    cr_expect_eq(ar_gguf_write(w, path, NULL, NULL), AR_ERR_INVALID_ARG);
    /* a directory that does not exist */
    char *nodir = path_in(tmpdir, "no/such/dir.gguf");
    fc = (fill_ctx){.fail_at = UINT64_MAX};
    cr_expect_eq(ar_gguf_write(w, nodir, fill_pattern, &fc), AR_ERR_IO);
    cr_expect(strstr(ar_last_error(), nodir), "%s", ar_last_error());
    free(nodir);
    ar_gguf_writer_free(w);
    free(path);
}

Test(gguf_writer, rejects_bad_arguments) {
    cr_expect_null(ar_gguf_writer_new(1));
    cr_expect_null(ar_gguf_writer_new(4));
    ar_gguf_writer *w = ar_gguf_writer_new(3);
    cr_assert(w);
    int64_t ne[5] = {32, 2, 1, 1, 1};
    cr_expect_eq(ar_gguf_add_tensor(w, "x", (ar_type)16, 2, ne, NULL), AR_ERR_UNSUPPORTED);
    cr_expect_eq(ar_gguf_add_tensor(w, "x", (ar_type)200, 2, ne, NULL), AR_ERR_UNSUPPORTED);
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 0, ne, NULL), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 5, ne, NULL), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_add_tensor(w, "", AR_TYPE_F32, 1, ne, NULL), AR_ERR_INVALID_ARG);
    int64_t odd[2] = {33, 1};
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_Q4_0, 2, odd, NULL), AR_ERR_INVALID_ARG);
    cr_expect(strstr(ar_last_error(), "block size"), "%s", ar_last_error());
    int64_t neg[2] = {32, -1};
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 2, neg, NULL), AR_ERR_INVALID_ARG);
    int64_t huge[2] = {INT64_C(1) << 62, 4};
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 2, huge, NULL), AR_ERR_INVALID_ARG);
    int64_t big[1] = {INT64_C(1) << 62}; /* 2^62 elements of 4 bytes: size overflows */
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 1, big, NULL), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 2, ne, NULL), AR_OK);
    cr_expect_eq(ar_gguf_add_tensor(w, "x", AR_TYPE_F32, 2, ne, NULL), AR_ERR_INVALID_ARG);
    cr_expect(strstr(ar_last_error(), "duplicate"), "%s", ar_last_error());

    cr_expect_eq(ar_gguf_set_u32(w, "general.alignment", 48), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_u32(w, "general.alignment", 0), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_i32(w, "general.alignment", -32), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_u64(w, "general.alignment", 64), AR_ERR_INVALID_ARG); /* not u32 */
    cr_expect_eq(ar_gguf_set_str(w, "general.alignment", "32"), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_u32(w, "", 1), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_u32(w, NULL, 1), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_str(w, "k", NULL), AR_ERR_INVALID_ARG);
    uint32_t x = 1;
    cr_expect_eq(ar_gguf_set_arr(w, "k", AR_GGUF_STRING, &x, 1), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_arr(w, "k", AR_GGUF_ARRAY, &x, 1), AR_ERR_INVALID_ARG);
    cr_expect_eq(ar_gguf_set_arr(w, "k", AR_GGUF_UINT32, NULL, 1), AR_ERR_INVALID_ARG);
    uint8_t two = 2;
    cr_expect_eq(ar_gguf_set_arr(w, "k", AR_GGUF_BOOL, &two, 1), AR_ERR_INVALID_ARG);
    ar_gguf_kv kv = {.key = "k", .type = AR_GGUF_UINT8, .v.u = 256};
    cr_expect_eq(ar_gguf_copy_kv(w, &kv), AR_ERR_INVALID_ARG);
    kv = (ar_gguf_kv){.key = "k", .type = AR_GGUF_VTYPE_COUNT};
    cr_expect_eq(ar_gguf_copy_kv(w, &kv), AR_ERR_INVALID_ARG);
    /* none of the failures above added a key */
    cr_expect_eq(ar_gguf_set_u32(w, "general.alignment", 16), AR_OK);
    ar_gguf_writer_free(w);
}

/* ---------------------------------------------------------------- hostile input */

/* A small valid file built by hand (independently of the writer), with the positions of the
 * fields the corruption tests patch. */
typedef struct small_file {
    gb_buf b;
    size_t key0_len;   /* length field of the first key */
    size_t name_len;   /* length field of general.name's value */
    size_t count_key;  /* the bytes of key "tiny.count" */
    size_t count_type; /* type field of tiny.count */
    size_t flag_value; /* the byte of bool tiny.flag */
    size_t u64s_type;  /* element type field of array tiny.u64s */
    size_t u64s_n;     /* count field of tiny.u64s */
    size_t words_n;    /* count field of string array tiny.words */
    size_t word0_len;  /* length field of its first string */
    size_t t_name[3];  /* bytes of each tensor's 1-byte name */
    size_t t_ndims[3], t_ne[3], t_type[3], t_offset[3];
    size_t infos_end;
} small_file;

typedef struct small_opts {
    const char *key0; /* first key, default "general.architecture" */
    int align_type;   /* -1: no general.alignment key */
    uint64_t align_value;
    uint32_t b_offset; /* data offset of tensor b (default 32) */
} small_opts;

/* Tensors: a F32 [4,2] at 0 (32 bytes), b Q8_0 [32,2] at 32 (68 bytes), c F16 [16] at 128 (32). */
static void build_small(small_file *s, const small_opts *o) {
    *s = (small_file){0};
    gb_buf *b = &s->b;
    bool align = o && o->align_type >= 0;
    gb_header(b, 3, 3, 6 + align);
    s->key0_len = b->len;
    gb_kv_str(b, o && o->key0 ? o->key0 : "general.architecture", "llama");
    gb_str(b, "general.name");
    gb_u32(b, 8);
    s->name_len = b->len;
    gb_str(b, "tiny");
    s->count_key = b->len + 8;
    gb_str(b, "tiny.count");
    s->count_type = b->len;
    gb_u32(b, 4);
    gb_u32(b, 7);
    gb_str(b, "tiny.flag");
    gb_u32(b, 7);
    s->flag_value = b->len;
    gb_u8(b, 1);
    gb_str(b, "tiny.u64s");
    gb_u32(b, 9);
    s->u64s_type = b->len;
    gb_u32(b, 10);
    s->u64s_n = b->len;
    gb_u64(b, 3);
    for (int i = 0; i < 3; i++) gb_u64(b, 1000 + (uint64_t)i);
    gb_str(b, "tiny.words");
    gb_u32(b, 9);
    gb_u32(b, 8);
    s->words_n = b->len;
    gb_u64(b, 2);
    s->word0_len = b->len;
    gb_str(b, "a");
    gb_str(b, "bc");
    if (align) {
        gb_str(b, "general.alignment");
        gb_u32(b, (uint32_t)o->align_type);
        if (o->align_type == 8)
            gb_str(b, "32");
        else
            gb_bytes(b, &o->align_value, o->align_type == 10 ? 8 : 4); /* little-endian host */
    }
    static const char *const names[3] = {"a", "b", "c"};
    static const uint32_t types[3] = {AR_TYPE_F32, AR_TYPE_Q8_0, AR_TYPE_F16};
    static const uint32_t ndims[3] = {2, 2, 1};
    static const int64_t nes[3][2] = {{4, 2}, {32, 2}, {16, 1}};
    uint64_t offsets[3] = {0, o && o->b_offset ? o->b_offset : 32, 128};
    for (int t = 0; t < 3; t++) {
        s->t_name[t] = b->len + 8;
        gb_str(b, names[t]);
        s->t_ndims[t] = b->len;
        gb_u32(b, ndims[t]);
        s->t_ne[t] = b->len;
        for (uint32_t d = 0; d < ndims[t]; d++) gb_u64(b, (uint64_t)nes[t][d]);
        s->t_type[t] = b->len;
        gb_u32(b, types[t]);
        s->t_offset[t] = b->len;
        gb_u64(b, offsets[t]);
    }
    s->infos_end = b->len;
    gb_pad(b, 32);
    for (int i = 0; i < 160; i++) gb_u8(b, (uint8_t)i);
}

static const char *test_name = "hostile.gguf";

/* The bytes must be rejected: from a file (mmap) and from an exact-size heap copy (so a
 * sanitizer sees any read past the end). want: the status, or AR_OK for "any error". */
static void expect_rejected(const uint8_t *data, size_t n, ar_status want, const char *needle) {
    char *path = gb_write_file(tmpdir, test_name, data, n);
    for (int from_memory = 0; from_memory < 2; from_memory++) {
        ar_gguf *g = NULL;
        ar_clear_error();
        ar_status st;
        if (from_memory) {
            uint8_t *copy = malloc(n ? n : 1);
            cr_assert(copy);
            if (n) memcpy(copy, data, n);
            st = ar_gguf_open_memory(copy, n, test_name, &g);
            free(copy);
        } else {
            st = ar_gguf_open(path, &g);
        }
        const char *msg = ar_last_error();
        cr_assert_neq(st, AR_OK, "%zu bytes accepted (%s)", n, from_memory ? "memory" : "file");
        cr_assert_null(g);
        if (want != AR_OK) cr_assert_eq(st, want, "status %d: %s", st, msg);
        cr_assert(strstr(msg, test_name), "message without the file name: %s", msg);
        cr_assert(strstr(msg, ": offset "), "message without an offset: %s", msg);
        cr_assert_null(strchr(msg, '\n'));
        if (needle) cr_assert(strstr(msg, needle), "expected '%s' in: %s", needle, msg);
    }
    unlink(path);
    free(path);
}

static void expect_bad_u64(small_file *s, size_t at, uint64_t v, ar_status want,
                           const char *needle) {
    gb_buf c = {0};
    gb_bytes(&c, s->b.data, s->b.len);
    gb_set_u64(&c, at, v);
    expect_rejected(c.data, c.len, want, needle);
    gb_free(&c);
}

static void expect_bad_u32(small_file *s, size_t at, uint32_t v, ar_status want,
                           const char *needle) {
    gb_buf c = {0};
    gb_bytes(&c, s->b.data, s->b.len);
    gb_set_u32(&c, at, v);
    expect_rejected(c.data, c.len, want, needle);
    gb_free(&c);
}

static void expect_bad_byte(small_file *s, size_t at, uint8_t v, ar_status want,
                            const char *needle) {
    gb_buf c = {0};
    gb_bytes(&c, s->b.data, s->b.len);
    c.data[at] = v;
    expect_rejected(c.data, c.len, want, needle);
    gb_free(&c);
}

TestSuite(gguf_hostile, .init = setup_tmp, .fini = teardown_tmp);

Test(gguf_hostile, the_small_file_is_valid) {
    small_file s;
    build_small(&s, NULL);
    char *path = gb_write_file(tmpdir, "small.gguf", s.b.data, s.b.len);
    ar_gguf *g = open_ok(path);
    cr_expect_eq(g->n_kv, 6);
    cr_expect_eq(g->n_tensors, 3);
    cr_expect_eq(g->data_offset, (s.infos_end + 31) / 32 * 32);
    cr_expect_eq(u32_of(g, "tiny.count"), 7);
    const ar_gguf_kv *kv;
    cr_assert_eq(ar_gguf_get_arr(g, "tiny.u64s", AR_GGUF_UINT64, &kv), AR_OK);
    cr_expect_eq(ar_gguf_arr_i64(kv, 2), 1002);
    check_placement(g);
    cr_expect_eq(g->tensors[1].nbytes, 68);
    cr_expect_eq(((const uint8_t *)g->tensors[2].data)[0], 128);
    ar_gguf_close(g);
    free(path);
    gb_free(&s.b);
    /* general.alignment as a uint64 works too */
    build_small(&s, &(small_opts){.align_type = 10, .align_value = 16});
    uint8_t *copy = malloc(s.b.len);
    memcpy(copy, s.b.data, s.b.len);
    cr_assert_eq(ar_gguf_open_memory(copy, s.b.len, "a16", &g), AR_OK, "%s", ar_last_error());
    cr_expect_eq(g->alignment, 16);
    ar_gguf_close(g);
    free(copy);
    gb_free(&s.b);
}

Test(gguf_hostile, truncated_at_every_offset) {
    small_file s;
    build_small(&s, NULL);
    /* every prefix: header, key/values, tensor infos, padding and data */
    for (size_t n = 0; n < s.b.len; n++) expect_rejected(s.b.data, n, AR_OK, NULL);
    gb_free(&s.b);
}

Test(gguf_hostile, bad_magic_and_version) {
    small_file s;
    build_small(&s, NULL);
    expect_bad_byte(&s, 3, 'G', AR_ERR_FORMAT, "magic");
    expect_bad_byte(&s, 0, 0, AR_ERR_FORMAT, "magic");
    expect_rejected((const uint8_t *)"GGU", 3, AR_ERR_FORMAT, "magic");
    expect_bad_u32(&s, 4, 1, AR_ERR_UNSUPPORTED, "version 1");
    expect_bad_u32(&s, 4, 99, AR_ERR_UNSUPPORTED, "version 99");
    expect_bad_u32(&s, 4, 0, AR_ERR_UNSUPPORTED, "version 0");
    expect_bad_u32(&s, 4, 0x03000000, AR_ERR_UNSUPPORTED, "big-endian");
    gb_free(&s.b);
}

Test(gguf_hostile, absurd_counts_and_lengths) {
    static const uint64_t huge[] = {UINT64_MAX,
                                    UINT64_C(1) << 63,
                                    (UINT64_C(1) << 63) + 1,
                                    UINT64_C(1) << 62,
                                    UINT64_C(1) << 61,
                                    UINT64_C(1) << 32,
                                    1000000};
    small_file s;
    build_small(&s, NULL);
    for (size_t i = 0; i < AR_ARRAY_LEN(huge); i++) {
        expect_bad_u64(&s, 16, huge[i], AR_ERR_FORMAT, NULL);          /* n_kv */
        expect_bad_u64(&s, 8, huge[i], AR_ERR_FORMAT, NULL);           /* n_tensors */
        expect_bad_u64(&s, s.key0_len, huge[i], AR_ERR_FORMAT, NULL);  /* key length */
        expect_bad_u64(&s, s.name_len, huge[i], AR_ERR_FORMAT, NULL);  /* string length */
        expect_bad_u64(&s, s.u64s_n, huge[i], AR_ERR_FORMAT, NULL);    /* 2^61 x 8 wraps to 0 */
        expect_bad_u64(&s, s.words_n, huge[i], AR_ERR_FORMAT, NULL);   /* string array count */
        expect_bad_u64(&s, s.word0_len, huge[i], AR_ERR_FORMAT, NULL); /* element length */
    }
    /* array byte sizes that wrap around 2^64 to exactly the bytes present: a count * size
     * computed without an overflow check would accept these */
    static const struct {
        uint32_t type;
        uint64_t n;
        size_t elem;
    } wraps[] = {{10, (UINT64_C(1) << 61) + 1, 8},
                 {6, (UINT64_C(1) << 62) + 1, 4},
                 {2, (UINT64_C(1) << 63) + 1, 2},
                 {12, (UINT64_C(1) << 61) + 1, 8}};
    for (size_t i = 0; i < AR_ARRAY_LEN(wraps); i++) {
        gb_buf w = {0};
        gb_header(&w, 3, 0, 1);
        gb_kv_arr(&w, "k", wraps[i].type, wraps[i].n);
        gb_bytes(&w, "\1\2\3\4\5\6\7\10", wraps[i].elem);
        expect_rejected(w.data, w.len, AR_ERR_FORMAT, "cannot fit");
        gb_free(&w);
    }
    /* one more key/value or tensor than the file holds */
    expect_bad_u64(&s, 16, 7, AR_ERR_FORMAT, NULL);
    expect_bad_u64(&s, 8, 4, AR_ERR_FORMAT, NULL);
    gb_free(&s.b);
}

Test(gguf_hostile, bad_key_values) {
    small_file s;
    build_small(&s, NULL);
    expect_bad_u32(&s, s.count_type, 13, AR_ERR_FORMAT, "unknown value type 13");
    expect_bad_u32(&s, s.count_type, UINT32_MAX, AR_ERR_FORMAT, "unknown value type");
    expect_bad_u32(&s, s.u64s_type, 9, AR_ERR_FORMAT, "nested");
    expect_bad_u32(&s, s.u64s_type, 13, AR_ERR_FORMAT, "element type");
    expect_bad_byte(&s, s.flag_value, 2, AR_ERR_FORMAT, "bool");
    /* "tiny.count" -> "tiny.words": a duplicate key */
    gb_buf c = {0};
    gb_bytes(&c, s.b.data, s.b.len);
    memcpy(c.data + s.count_key, "tiny.words", 10);
    expect_rejected(c.data, c.len, AR_ERR_FORMAT, "duplicate key 'tiny.words'");
    memcpy(c.data + s.count_key, "tiny\0count", 10);
    expect_rejected(c.data, c.len, AR_ERR_FORMAT, "NUL");
    gb_free(&c);
    gb_free(&s.b);
    build_small(&s, &(small_opts){.key0 = "", .align_type = -1});
    expect_rejected(s.b.data, s.b.len, AR_ERR_FORMAT, "empty key");
    gb_free(&s.b);
}

Test(gguf_hostile, bad_alignment) {
    static const struct {
        int type;
        uint64_t value;
        const char *needle;
    } cases[] = {
        {4, 3, "power of two"},          {4, 0, "power of two"},
        {4, 48, "power of two"},         {10, UINT64_MAX, "power of two"},
        {5, 0xffffffe0, "not positive"},                                  /* int32 -32 */
        {8, 0, "type string"},           {6, 0x42000000, "type float32"}, /* 32.0f */
        {4, 64, "alignment 64"}, /* valid, but tensor b's offset 32 is not a multiple */
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        small_file s;
        build_small(&s, &(small_opts){.align_type = cases[i].type, .align_value = cases[i].value});
        expect_rejected(s.b.data, s.b.len, AR_ERR_FORMAT, cases[i].needle);
        gb_free(&s.b);
    }
}

Test(gguf_hostile, bad_tensor_infos) {
    small_file s;
    build_small(&s, NULL);
    /* formats: unknown, unsupported (IQ2_XXS), removed (Q4_2), past the table */
    static const uint32_t bad_types[] = {200, 16, 4, 5, 39, 40, UINT32_MAX};
    for (size_t i = 0; i < AR_ARRAY_LEN(bad_types); i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "tensor 'c': tensor type %" PRIu32, bad_types[i]);
        expect_bad_u32(&s, s.t_type[2], bad_types[i], AR_ERR_UNSUPPORTED, needle);
    }
    expect_bad_u32(&s, s.t_ndims[2], 5, AR_ERR_FORMAT, "n_dims 5");
    expect_bad_u32(&s, s.t_ndims[2], 0, AR_ERR_FORMAT, "n_dims 0");
    expect_bad_u32(&s, s.t_ndims[2], UINT32_MAX, AR_ERR_FORMAT, "n_dims");
    /* shapes */
    expect_bad_u64(&s, s.t_ne[0], UINT64_MAX, AR_ERR_FORMAT, "negative"); /* -1 */
    expect_bad_u64(&s, s.t_ne[0] + 8, UINT64_C(1) << 63, AR_ERR_FORMAT, "negative");
    gb_buf c = {0};
    gb_bytes(&c, s.b.data, s.b.len);
    gb_set_u64(&c, s.t_ne[0], UINT64_C(1) << 32); /* 2^32 x 2^31 elements */
    gb_set_u64(&c, s.t_ne[0] + 8, UINT64_C(1) << 31);
    expect_rejected(c.data, c.len, AR_ERR_FORMAT, "2^63");
    gb_set_u64(&c, s.t_ne[0], UINT64_C(1) << 62); /* 2^62 F32 values: 2^64 bytes */
    gb_set_u64(&c, s.t_ne[0] + 8, 1);
    expect_rejected(c.data, c.len, AR_ERR_FORMAT, "overflows");
    gb_set_u64(&c, s.t_ne[0], 4);
    gb_set_u64(&c, s.t_ne[0] + 8, UINT64_C(1) << 40); /* fine shape, data far past the end */
    expect_rejected(c.data, c.len, AR_ERR_FORMAT, "past the end");
    gb_free(&c);
    expect_bad_u64(&s, s.t_ne[1], 33, AR_ERR_FORMAT, "block size"); /* Q8_0 row of 33 */
    expect_bad_u64(&s, s.t_ne[1], 48, AR_ERR_FORMAT, "block size");
    /* placement */
    expect_bad_u64(&s, s.t_offset[2], 4096, AR_ERR_FORMAT, "past the end");
    expect_bad_u64(&s, s.t_offset[2], UINT64_MAX - 31, AR_ERR_FORMAT, "past the end");
    expect_bad_u64(&s, s.t_offset[2], 160, AR_ERR_FORMAT, "past the end"); /* 32 bytes at 160 */
    expect_bad_u64(&s, s.t_offset[2], 130, AR_ERR_FORMAT, "alignment");
    expect_bad_u64(&s, s.t_offset[2], 1, AR_ERR_FORMAT, "alignment");
    expect_bad_u64(&s, s.t_offset[1], 0, AR_ERR_FORMAT, "overlaps");
    expect_bad_u64(&s, s.t_offset[2], 96, AR_ERR_FORMAT, "overlaps"); /* b is [32, 100) */
    expect_bad_u64(&s, s.t_offset[2], 32, AR_ERR_FORMAT, "overlaps");
    /* names */
    expect_bad_byte(&s, s.t_name[2], 'a', AR_ERR_FORMAT, "duplicate tensor name 'a'");
    expect_bad_byte(&s, s.t_name[2], 0, AR_ERR_FORMAT, "NUL");
    expect_bad_u64(&s, s.t_name[2] - 8, 0, AR_ERR_FORMAT, NULL); /* empty name */
    gb_free(&s.b);
}

Test(gguf_hostile, zero_sized_tensors_are_allowed) {
    /* a dimension of 0 is a valid (empty) tensor; it overlaps nothing */
    small_file s;
    build_small(&s, NULL);
    gb_set_u64(&s.b, s.t_ne[0] + 8, 0);
    gb_set_u64(&s.b, s.t_offset[0], 32); /* same offset as b */
    ar_gguf *g = NULL;
    cr_assert_eq(ar_gguf_open_memory(s.b.data, s.b.len, "zero", &g), AR_OK, "%s", ar_last_error());
    cr_expect_eq(g->tensors[0].nbytes, 0);
    cr_expect_eq(g->tensors[0].ne[1], 0);
    ar_gguf_close(g);
    gb_free(&s.b);
}

Test(gguf_hostile, missing_directory_empty) {
    ar_gguf *g = NULL;
    char *missing = path_in(tmpdir, "missing.gguf");
    cr_expect_eq(ar_gguf_open(missing, &g), AR_ERR_IO);
    cr_expect(strstr(ar_last_error(), missing), "%s", ar_last_error());
    cr_expect(strstr(ar_last_error(), strerror(ENOENT)), "%s", ar_last_error());
    cr_expect_null(g);
    free(missing);

    char *dir = path_in(tmpdir, "dir.gguf");
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_expect_eq(ar_gguf_open(dir, &g), AR_ERR_IO);
    cr_expect(strstr(ar_last_error(), dir), "%s", ar_last_error());
    cr_expect(strstr(ar_last_error(), "directory"), "%s", ar_last_error());
    rmdir(dir);
    free(dir);

    expect_rejected(NULL, 0, AR_ERR_FORMAT, "empty");
    cr_expect_eq(ar_gguf_open("/dev/null", &g), AR_ERR_IO); /* not a regular file */
    cr_expect(strstr(ar_last_error(), "/dev/null"), "%s", ar_last_error());
}

/* Random byte changes in the header region of the small file: whatever the result, no crash,
 * and an error always names the file; an accepted file has all its tensors inside it. */
Test(gguf_hostile, random_mutations) {
    small_file s;
    build_small(&s, NULL);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int rejected = 0;
    for (int iter = 0; iter < 4000; iter++) {
        uint8_t *copy = malloc(s.b.len);
        memcpy(copy, s.b.data, s.b.len);
        int changes = 1 + iter % 3;
        for (int k = 0; k < changes; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % s.infos_end;
            uint8_t v = (uint8_t)(rng >> 20);
            copy[at] = (iter & 8) ? v : (uint8_t)(copy[at] ^ (1u << (v & 7)));
        }
        ar_gguf *g = NULL;
        ar_status st = ar_gguf_open_memory(copy, s.b.len, "mutant.gguf", &g);
        if (st == AR_OK) {
            for (uint64_t i = 0; i < g->n_tensors; i++) {
                const uint8_t *d = g->tensors[i].data;
                cr_assert(d >= copy && d + g->tensors[i].nbytes <= copy + s.b.len);
            }
            ar_gguf_close(g);
        } else {
            rejected++;
            cr_assert(strstr(ar_last_error(), "mutant.gguf: offset "), "%s", ar_last_error());
        }
        free(copy);
    }
    cr_expect_gt(rejected, 1000);
    gb_free(&s.b);
}

/* ---------------------------------------------------------------- arbor info */

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "%s did not exit normally", cmd);
    return WEXITSTATUS(status);
}

Test(gguf_cli, info_prints_the_tensor_table) {
    static char out[1 << 20];
    int rc = run(ARBOR_CLI " info " MODELS "llama2xs-260K-q4_0.gguf 2>&1", out, sizeof out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "llama2xs-260K-q4_0.gguf"));
    cr_expect(strstr(out, "gguf version   3"), "%s", out);
    cr_expect(strstr(out, "llama.block_count"), "%s", out);
    cr_expect(strstr(out, "bos id   1"), "%s", out);
    cr_expect(strstr(out, "string[512] \"<unk>\", \"<s>\""), "%s", out);
    /* every tensor is a row: name, type, shape, bytes */
    ar_gguf *g = open_ok(MODELS "llama2xs-260K-q4_0.gguf");
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        char cell[160];
        snprintf(cell, sizeof cell, "  %s  ", t->name);
        const char *row = strstr(out, cell);
        cr_assert(row, "no row for %s", t->name);
        const char *eol = strchr(row, '\n');
        cr_assert(eol);
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)(eol - row), row);
        char bytes[32];
        snprintf(bytes, sizeof bytes, " %" PRIu64 " ", t->nbytes);
        cr_expect(strstr(line, ar_type_get(t->type)->name), "%s", line);
        cr_expect(strstr(line, bytes), "%s", line);
        total += t->nbytes;
    }
    char total_line[64];
    snprintf(total_line, sizeof total_line, "total tensor bytes: %" PRIu64, total);
    cr_expect(strstr(out, total_line), "%s", out);
    cr_expect(strstr(out, "token_embd.weight") && strstr(out, "[64, 512]"), "%s", out);
    ar_gguf_close(g);

    rc = run(ARBOR_CLI " info " VOCABS "ggml-vocab-gpt-2.gguf 2>&1", out, sizeof out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "pre      \"gpt-2\""), "%s", out);
    cr_expect(strstr(out, "total tensor bytes: 0"), "%s", out);
}

Test(gguf_cli, info_errors) {
    static char out[1 << 16];
    int rc = run(ARBOR_CLI " info /nonexistent/model.gguf 2>&1", out, sizeof out);
    cr_expect_eq(rc, 1, "%s", out);
    static const char prefix[] = "arbor: /nonexistent/model.gguf: cannot open: ";
    cr_expect(strncmp(out, prefix, strlen(prefix)) == 0, "%s", out);
    cr_expect_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
    rc = run(ARBOR_CLI " info 2>&1", out, sizeof out);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strncmp(out, "arbor: ", strlen("arbor: ")) == 0, "%s", out);
    rc = run(ARBOR_CLI " info --bogus " MODELS "stories260K-f32.gguf 2>&1", out, sizeof out);
    cr_expect_eq(rc, 2, "%s", out);
    rc = run(ARBOR_CLI " info --help 2>&1", out, sizeof out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "usage: arbor info"), "%s", out);
}
