/* make_seeds.c: writes the seed corpora of the fuzz harnesses (tests/fuzz/fuzz_*.c), derived
 * from the fixtures: `make_seeds FIXTURES_DIR OUT_DIR` fills OUT_DIR/<harness>/.
 *   gguf, model  tiny models (a few KB) that keep a fixture's tokenizer metadata but have small
 *                random weights: llama with the tok512 SPM vocabulary in F32, F16 and Q4_0, and
 *                qwen2 with a cut-down GPT-2 byte-level BPE vocabulary (its first byte tokens
 *                and merges); for the reader also small files with every value type, v2 and v3,
 *                and an unusual alignment. Whole fixture models would be poor seeds: mutations
 *                would almost all land in tensor data the parsers never look at.
 *   tokenize     one byte naming the vocabulary (see fuzz_tokenize.c), then a test string from
 *                the tokenizer fixtures (.inp files and tokrefs-*.txt).
 *   treespec     tree shapes; cli: command lines (NUL-separated) for the three subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "src/core/gguf.h"

static const char *fixtures, *out_dir;
static int n_written;

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "make_seeds: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static void make_dir(const char *sub) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", out_dir, sub);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) die("cannot create %s", p);
}

static void write_seed(const char *sub, const char *name, const void *data, size_t n) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/%s", out_dir, sub, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) die("cannot write %s", p);
    n_written++;
}

static ar_gguf *open_fixture(const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", fixtures, rel);
    ar_gguf *g = NULL;
    if (ar_gguf_open(p, &g) != AR_OK) die("%s", ar_last_error());
    return g;
}

static void check(ar_status st) {
    if (st != AR_OK) die("%s", ar_last_error());
}

/* ---- tiny models ---- */

typedef struct tiny_model {
    const char *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
    ar_type weight_type; /* of the 2-D tensors */
} tiny_model;

typedef struct tensor_bufs {
    void *data[64];
    int n;
} tensor_bufs;

static uint32_t rng_state = 12345;
static float next_weight(void) { /* small deterministic values in [-0.5, 0.5) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f - 0.5f;
}

static void add_tensor(ar_gguf_writer *w, tensor_bufs *tb, const char *name, ar_type type,
                       int64_t n_in, int64_t n_out) {
    int64_t n = n_in * (n_out ? n_out : 1);
    float *x = malloc((size_t)n * sizeof *x);
    void *q = malloc(ar_row_size(type, n_in) * (size_t)(n_out ? n_out : 1));
    if (!x || !q) die("%s", "out of memory");
    for (int64_t i = 0; i < n; i++) x[i] = n_out ? next_weight() : 1.0f + 0.1f * next_weight();
    ar_type_get(type)->from_float(x, q, n);
    free(x);
    int64_t ne[2] = {n_in, n_out};
    check(ar_gguf_add_tensor(w, name, type, n_out ? 2 : 1, ne, q));
    tb->data[tb->n++] = q;
}

/* Copies src's key/values except the architecture's hyperparameters and the keys `skip`
 * names (by prefix), sets the tiny model's, adds random weights and writes OUT/sub/name. */
static void write_tiny(const ar_gguf *src, const char *const *skip, const tiny_model *t,
                       ar_gguf_writer *w, const char *name) {
    char arch_prefix[64];
    snprintf(arch_prefix, sizeof arch_prefix, "%s.", t->arch);
    ar_str src_arch = {0};
    ar_gguf_get_str(src, "general.architecture", &src_arch);
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const char *k = src->kv[i].key;
        bool keep =
            strncmp(k, "general.architecture", 20) != 0 &&
            strncmp(k, arch_prefix, strlen(arch_prefix)) != 0 &&
            !(src_arch.len && !strncmp(k, src_arch.ptr, src_arch.len) && k[src_arch.len] == '.');
        for (int s = 0; skip && skip[s]; s++) keep &= strncmp(k, skip[s], strlen(skip[s])) != 0;
        if (keep) check(ar_gguf_copy_kv(w, &src->kv[i]));
    }
    char key[128];
#define SET(suffix, v)                                                                             \
    snprintf(key, sizeof key, "%s.%s", t->arch, suffix);                                           \
    check(ar_gguf_set_u32(w, key, (uint32_t)(v)))
    check(ar_gguf_set_str(w, "general.architecture", t->arch));
    SET("embedding_length", t->n_embd);
    SET("block_count", t->n_layer);
    SET("attention.head_count", t->n_head);
    SET("attention.head_count_kv", t->n_head_kv);
    SET("feed_forward_length", t->n_ff);
    SET("context_length", 32);
    SET("rope.dimension_count", t->n_embd / t->n_head);
#undef SET
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", t->arch);
    check(ar_gguf_set_f32(w, key, 1e-5f));

    tensor_bufs tb = {0};
    int64_t E = t->n_embd, F = t->n_ff, hd = t->n_embd / t->n_head;
    int64_t QD = t->n_head * hd, KVD = t->n_head_kv * hd;
    bool qwen2 = !strcmp(t->arch, "qwen2");
    add_tensor(w, &tb, "token_embd.weight", t->weight_type, E, t->n_vocab);
    add_tensor(w, &tb, "output_norm.weight", AR_TYPE_F32, E, 0);
    for (int l = 0; l < t->n_layer; l++) {
        char n[64];
#define T(suffix, type, n_in, n_out)                                                               \
    snprintf(n, sizeof n, "blk.%d.%s", l, suffix);                                                 \
    add_tensor(w, &tb, n, type, n_in, n_out)
        T("attn_norm.weight", AR_TYPE_F32, E, 0);
        T("attn_q.weight", t->weight_type, E, QD);
        T("attn_k.weight", t->weight_type, E, KVD);
        T("attn_v.weight", t->weight_type, E, KVD);
        T("attn_output.weight", t->weight_type, QD, E);
        if (qwen2) {
            T("attn_q.bias", AR_TYPE_F32, QD, 0);
            T("attn_k.bias", AR_TYPE_F32, KVD, 0);
            T("attn_v.bias", AR_TYPE_F32, KVD, 0);
        }
        T("ffn_norm.weight", AR_TYPE_F32, E, 0);
        T("ffn_gate.weight", t->weight_type, E, F);
        T("ffn_up.weight", t->weight_type, E, F);
        T("ffn_down.weight", t->weight_type, F, E);
#undef T
    }
    for (const char *sub = "gguf"; sub; sub = strcmp(sub, "gguf") ? NULL : "model") {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s/%s", out_dir, sub, name);
        check(ar_gguf_write(w, p, NULL, NULL));
        n_written++;
    }
    for (int i = 0; i < tb.n; i++) free(tb.data[i]);
}

static void tiny_llama_models(void) {
    ar_gguf *src = open_fixture("models/stories260K-f32.gguf");
    const ar_gguf_kv *toks = ar_gguf_find(src, "tokenizer.ggml.tokens");
    if (!toks) die("%s", "stories260K-f32.gguf has no tokens");
    tiny_model t = {"llama", 4, 2, 1, 1, 8, (int)toks->arr_n, AR_TYPE_F32};
    ar_gguf_writer *w = ar_gguf_writer_new(3);
    check(ar_gguf_set_u32(w, "general.alignment", 32)); /* a value for the fuzzer to change */
    write_tiny(src, NULL, &t, w, "tiny-llama-f32.gguf");
    ar_gguf_writer_free(w);
    t.weight_type = AR_TYPE_F16;
    w = ar_gguf_writer_new(2);
    write_tiny(src, NULL, &t, w, "tiny-llama-f16-v2.gguf");
    ar_gguf_writer_free(w);
    t = (tiny_model){"llama", 32, 1, 2, 1, 32, (int)toks->arr_n, AR_TYPE_Q4_0};
    w = ar_gguf_writer_new(3);
    write_tiny(src, NULL, &t, w, "tiny-llama-q4_0.gguf");
    ar_gguf_writer_free(w);
    ar_gguf_close(src);
}

/* qwen2 with the GPT-2 vocabulary cut to its 256 byte tokens, the first n_merges merges and
 * <|endoftext|> (GPT-2 numbers its tokens bytes first, then one per merge in merge order). */
static void tiny_qwen2_model(void) {
    ar_gguf *src = open_fixture("tokenizer/ggml-vocab-gpt-2.gguf");
    const ar_gguf_kv *toks = ar_gguf_find(src, "tokenizer.ggml.tokens");
    const ar_gguf_kv *types = ar_gguf_find(src, "tokenizer.ggml.token_type");
    const ar_gguf_kv *merges = ar_gguf_find(src, "tokenizer.ggml.merges");
    if (!toks || !types || !merges) die("%s", "ggml-vocab-gpt-2.gguf lacks tokenizer arrays");
    enum { n_merges = 200, n_tok = 256 + n_merges + 1 };
    ar_str strs[n_tok];
    int32_t tt[n_tok];
    for (int i = 0; i < n_tok - 1; i++) {
        strs[i] = toks->arr_strs[i];
        tt[i] = (int32_t)ar_gguf_arr_i64(types, (uint64_t)i);
    }
    strs[n_tok - 1] = (ar_str){"<|endoftext|>", 13};
    tt[n_tok - 1] = 3; /* control */
    ar_gguf_writer *w = ar_gguf_writer_new(3);
    check(ar_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    check(ar_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2"));
    check(ar_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, n_tok));
    check(ar_gguf_set_arr(w, "tokenizer.ggml.token_type", AR_GGUF_INT32, tt, n_tok));
    check(ar_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges->arr_strs, n_merges));
    check(ar_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", n_tok - 1));
    check(ar_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", n_tok - 1));
    check(ar_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false));
    static const char *const skip[] = {"tokenizer.", "general.", NULL};
    tiny_model t = {"qwen2", 8, 1, 2, 1, 8, n_tok, AR_TYPE_F32};
    write_tiny(src, skip, &t, w, "tiny-qwen2-bpe.gguf");
    ar_gguf_writer_free(w);
    ar_gguf_close(src);
}

/* Small files with every value type and a few tensor formats, for the reader alone. */
static void reader_files(void) {
    for (uint32_t version = 2; version <= 3; version++) {
        for (int aligned = 0; aligned < 2; aligned++) {
            ar_gguf_writer *w = ar_gguf_writer_new(version);
            if (aligned) check(ar_gguf_set_u32(w, "general.alignment", 64));
            check(ar_gguf_set_str(w, "general.architecture", "llama"));
            check(ar_gguf_set_u32(w, "u32", 7));
            check(ar_gguf_set_i32(w, "i32", -7));
            check(ar_gguf_set_u64(w, "u64", 1ull << 40));
            check(ar_gguf_set_f32(w, "f32", 0.5f));
            check(ar_gguf_set_bool(w, "bool", true));
            check(ar_gguf_set_str(w, "str", "caf\xc3\xa9"));
            static const uint8_t u8s[] = {0, 1, 255};
            static const int16_t i16s[] = {-1, 2, 300};
            static const double f64s[] = {1.5, -2.25};
            static const uint8_t bools[] = {0, 1};
            check(ar_gguf_set_arr(w, "arr.u8", AR_GGUF_UINT8, u8s, 3));
            check(ar_gguf_set_arr(w, "arr.i16", AR_GGUF_INT16, i16s, 3));
            check(ar_gguf_set_arr(w, "arr.f64", AR_GGUF_FLOAT64, f64s, 2));
            check(ar_gguf_set_arr(w, "arr.bool", AR_GGUF_BOOL, bools, 2));
            ar_str strs[] = {{"a", 1}, {"", 0}, {"\xe2\x96\x81x", 4}};
            check(ar_gguf_set_arr_str(w, "arr.str", strs, 3));
            tensor_bufs tb = {0};
            add_tensor(w, &tb, "t.f32", AR_TYPE_F32, 4, 2);
            add_tensor(w, &tb, "t.f16", AR_TYPE_F16, 8, 0);
            add_tensor(w, &tb, "t.q8_0", AR_TYPE_Q8_0, 32, 1);
            add_tensor(w, &tb, "t.q4_k", AR_TYPE_Q4_K, 256, 1);
            add_tensor(w, &tb, "t.bf16", AR_TYPE_BF16, 2, 2);
            char p[4096];
            snprintf(p, sizeof p, "%s/gguf/values-v%u%s.gguf", out_dir, version,
                     aligned ? "-align64" : "");
            check(ar_gguf_write(w, p, NULL, NULL));
            n_written++;
            ar_gguf_writer_free(w);
            for (int i = 0; i < tb.n; i++) free(tb.data[i]);
        }
    }
}

/* ---- text seeds ---- */

static const char *const tok_vocabs[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};

static void tokenizer_texts(void) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int k = 0;
    for (size_t v = 0; v < sizeof tok_vocabs / sizeof *tok_vocabs; v++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer/%s.inp", fixtures, tok_vocabs[v]);
        FILE *f = fopen(p, "rb");
        if (!f) die("cannot read %s", p);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* every test string, for this vocabulary (byte 0 = the vocabulary's index) */
        for (size_t at = 0; at < n;) {
            char *end = strstr(buf + at, sep);
            size_t len = end ? (size_t)(end - (buf + at)) : n - at;
            char seed[4096];
            if (len + 1 <= sizeof seed) {
                seed[0] = (char)v;
                memcpy(seed + 1, buf + at, len);
                char name[32];
                snprintf(name, sizeof name, "inp-%03d", k++);
                write_seed("tokenize", name, seed, len + 1);
            }
            if (!end) break;
            at = (size_t)(end - buf) + sizeof sep - 1;
        }
    }
    /* special-token spellings, for both vocabularies */
    static const char *const specials[] = {"<s> hi </s>", "<|endoftext|>x<|endoftext|>",
                                           "\xe2\x96\x81\xe2\x96\x81 <unk>",
                                           "\xff\xfe\x80 bad utf-8"};
    for (size_t v = 0; v < 2; v++)
        for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
            char seed[256], name[32];
            seed[0] = (char)v;
            size_t len = strlen(specials[i]);
            memcpy(seed + 1, specials[i], len);
            snprintf(name, sizeof name, "special-%zu-%zu", v, i);
            write_seed("tokenize", name, seed, len + 1);
        }
}

static void tree_specs(void) {
    static const char *const specs[] = {"chain:4",        "chain:32",   "static:4x2x1",
                                        "static:1x1x1x1", "static:8x7", "dynamic:16",
                                        "dynamic:63",     "adaptive",   "static:2x2x2x2x2"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        char name[32];
        snprintf(name, sizeof name, "spec-%zu", i);
        write_seed("treespec", name, specs[i], strlen(specs[i]));
    }
}

static void cli_lines(void) {
    /* subcommand (0 generate, 1 tokenize, 2 info), then the arguments */
    static const struct {
        char cmd;
        const char *args[24];
    } lines[] = {
        {0, {"-m", "m.gguf", "-p", "Once upon a time", "-n", "16", "--temp", "0", "-c", "128"}},
        {0,
         {"-m", "m.gguf", "-md", "d.gguf", "--tree", "static:4x2x1", "-p", "x", "--top-k", "40",
          "--top-p", "0.9"}},
        {0,
         {"-m", "m.gguf", "-f", "p.txt", "-t", "2", "-b", "64", "--seed", "0x10", "--min-p",
          "0.05"}},
        {0,
         {"-m", "m.gguf", "-p", "x", "--repeat-penalty", "1.1", "--repeat-last-n", "-1", "--stop",
          ".", "-ctk", "f16"}},
        {0,
         {"-m", "m.gguf", "-p", "x", "-md", "self:2", "--stats", "--echo", "--ignore-eos",
          "--no-parse-special"}},
        {0, {"-m", "m.gguf", "-p", "x", "-md", "lookup", "--tree", "dynamic:16", "-n", "-1"}},
        {0, {"--help"}},
        {1, {"-m", "m.gguf", "-p", "Hello world", "--ids", "--no-bos", "--no-parse-special"}},
        {1, {"-m", "m.gguf", "-f", "p.txt"}},
        {2, {"m.gguf"}},
        {2, {"--help"}},
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        char seed[1024], name[32];
        size_t n = 0;
        seed[n++] = lines[i].cmd;
        for (int a = 0; lines[i].args[a]; a++) {
            size_t len = strlen(lines[i].args[a]);
            if (a) seed[n++] = 0;
            memcpy(seed + n, lines[i].args[a], len);
            n += len;
        }
        snprintf(name, sizeof name, "cli-%zu", i);
        write_seed("cli", name, seed, n);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: make_seeds FIXTURES_DIR OUT_DIR\n");
        return 2;
    }
    fixtures = argv[1];
    out_dir = argv[2];
    ar_runtime_init();
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) die("cannot create %s", out_dir);
    static const char *const subs[] = {"gguf", "model", "tokenize", "treespec", "cli"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) make_dir(subs[i]);
    tiny_llama_models();
    tiny_qwen2_model();
    reader_files();
    tokenizer_texts();
    tree_specs();
    cli_lines();
    printf("make_seeds: %d seed files in %s\n", n_written, out_dir);
    return 0;
}
