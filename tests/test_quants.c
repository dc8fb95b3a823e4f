/* test_quants.c: tensor formats and dot-product kernels.
 * - the type-traits table: ggml's names, block sizes, byte sizes and activation types;
 * - dequantization of one fixture tensor per format is bit-identical to ggml's (dequant/);
 * - the weight quantizers reproduce llama-quantize's bytes (every quantized fixture model vs its
 *   F32 original), and the activation quantizers known values (ties, Q8_1 sums, Q8_K scale);
 * - llama.cpp's CPU mat-vecs (kernels/): our activation rounding + dot products agree within
 *   2e-6 of max|y| (F32/F16/BF16: 1e-6), on the reference and on every fast path;
 * - fast paths (AVX2, AVX-512, AVX-512 VNNI, called directly, and the dispatched one) equal the
 *   scalar reference bit for bit on random blocks of odd lengths, hostile weight bytes and
 *   shifted buffers, and the reference agrees with a double-precision dot of the dequantized rows;
 * - quantize/dequantize round-trip error bounds per format;
 * - fp16/bf16 conversions: all 65536 halfs round trip, and match the F16C instructions. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/cpu.h"
#include "src/core/gguf.h"
#include "src/kernels/kernels.h"

#define FIX ARBOR_FIXTURES

static void init(void) {
    ar_runtime_init();
}
TestSuite(quants, .init = init);

/* ---------------------------------------------------------------- small utilities */

static uint64_t rng_state;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(void) {
    return (double)(rng_next() >> 11) * 0x1p-53;
}
static float rng_gauss(void) {
    double u = rng_uniform(), v = rng_uniform();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    cr_assert(p, "out of memory (%zu bytes)", n);
    return p;
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *d = xmalloc((size_t)n);
    cr_assert_eq(fread(d, 1, (size_t)n, f), (size_t)n, "short read of %s", path);
    fclose(f);
    *size = (size_t)n;
    return d;
}

static uint8_t *read_at(const char *path, long offset, size_t n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, offset, SEEK_SET), 0);
    uint8_t *d = xmalloc(n);
    cr_assert_eq(fread(d, 1, n, f), n, "short read of %s at %ld", path, offset);
    fclose(f);
    return d;
}

static bool same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

static const ar_type weight_types[] = {AR_TYPE_F32,  AR_TYPE_F16,  AR_TYPE_BF16, AR_TYPE_Q4_0,
                                       AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0,
                                       AR_TYPE_Q2_K, AR_TYPE_Q3_K, AR_TYPE_Q4_K, AR_TYPE_Q5_K,
                                       AR_TYPE_Q6_K};
static const ar_type all_types[] = {AR_TYPE_F32,  AR_TYPE_F16,  AR_TYPE_BF16, AR_TYPE_Q4_0,
                                    AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0,
                                    AR_TYPE_Q8_1, AR_TYPE_Q2_K, AR_TYPE_Q3_K, AR_TYPE_Q4_K,
                                    AR_TYPE_Q5_K, AR_TYPE_Q6_K, AR_TYPE_Q8_K};

/* The kernels of each instruction-set level this CPU can run, for `t` (NULL: none at that level).
 */
typedef struct {
    const char *name;
    ar_vec_dot_fn fn;
} kernel;

static int kernels_for(ar_type t, kernel out[3]) {
    const ar_cpu_features *f = ar_cpu();
    int n = 0;
    bool is_float = t == AR_TYPE_F32 || t == AR_TYPE_F16 || t == AR_TYPE_BF16;
    bool has_avx2 = f->avx2 && f->fma && f->f16c;
    bool has_avx512 = has_avx2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq;
    const ar_kernel_table *wide = is_float ? &ar_kernels_avx512 : &ar_kernels_avx512vnni;
    if (ar_kernels_avx2.rows[t].dot && has_avx2)
        out[n++] = (kernel){"avx2", ar_kernels_avx2.rows[t].dot};
    if (wide->rows[t].dot && has_avx512 && (is_float || f->avx512vnni))
        out[n++] = (kernel){wide->path, wide->rows[t].dot};
    out[n++] = (kernel){"dispatched", ar_type_get(t)->vec_dot_fast};
    return n;
}

/* ---------------------------------------------------------------- the table */

Test(quants, table_matches_ggml) {
    static const struct {
        ar_type t;
        const char *name;
        int64_t blck;
        size_t size;
        ar_type vdt;
    } want[] = {
        {AR_TYPE_F32, "f32", 1, 4, AR_TYPE_F32},
        {AR_TYPE_F16, "f16", 1, 2, AR_TYPE_F16},
        {AR_TYPE_BF16, "bf16", 1, 2, AR_TYPE_BF16},
        {AR_TYPE_Q4_0, "q4_0", 32, 18, AR_TYPE_Q8_0},
        {AR_TYPE_Q4_1, "q4_1", 32, 20, AR_TYPE_Q8_1},
        {AR_TYPE_Q5_0, "q5_0", 32, 22, AR_TYPE_Q8_0},
        {AR_TYPE_Q5_1, "q5_1", 32, 24, AR_TYPE_Q8_1},
        {AR_TYPE_Q8_0, "q8_0", 32, 34, AR_TYPE_Q8_0},
        {AR_TYPE_Q8_1, "q8_1", 32, 36, AR_TYPE_Q8_1},
        {AR_TYPE_Q2_K, "q2_K", 256, 84, AR_TYPE_Q8_K},
        {AR_TYPE_Q3_K, "q3_K", 256, 110, AR_TYPE_Q8_K},
        {AR_TYPE_Q4_K, "q4_K", 256, 144, AR_TYPE_Q8_K},
        {AR_TYPE_Q5_K, "q5_K", 256, 176, AR_TYPE_Q8_K},
        {AR_TYPE_Q6_K, "q6_K", 256, 210, AR_TYPE_Q8_K},
        {AR_TYPE_Q8_K, "q8_K", 256, 292, AR_TYPE_Q8_K},
    };
    int rows = 0;
    for (int t = -3; t < AR_TYPE_COUNT + 3; t++)
        if (ar_type_get((ar_type)t)) rows++;
    cr_assert_eq(rows, (int)AR_ARRAY_LEN(want), "table has %d rows", rows);
    for (size_t i = 0; i < AR_ARRAY_LEN(want); i++) {
        const ar_type_traits *tr = ar_type_get(want[i].t);
        cr_assert(tr, "no row for type %d", want[i].t);
        cr_assert_str_eq(tr->name, want[i].name);
        cr_assert_eq(tr->blck_size, want[i].blck, "%s", tr->name);
        cr_assert_eq(tr->type_size, want[i].size, "%s", tr->name);
        cr_assert_eq(tr->vec_dot_type, want[i].vdt, "%s", tr->name);
        cr_assert(tr->to_float && tr->from_float && tr->vec_dot && tr->vec_dot_fast &&
                      tr->fast_path,
                  "%s", tr->name);
        cr_assert_eq(ar_type_from_name(want[i].name), (int)want[i].t);
        char upper[16];
        snprintf(upper, sizeof upper, "%s", want[i].name);
        for (char *c = upper; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        cr_assert_eq(ar_type_from_name(upper), (int)want[i].t, "%s", upper);
        cr_assert_eq(ar_row_size(want[i].t, 0), 0);
        cr_assert_eq(ar_row_size(want[i].t, 4096), (size_t)(4096 / want[i].blck) * want[i].size);
        if (want[i].blck > 1) {
            cr_assert_eq(ar_row_size(want[i].t, want[i].blck + 1), 0);
            cr_assert_eq(ar_row_size(want[i].t, want[i].blck / 2), 0);
        }
        cr_assert_eq(ar_row_size(want[i].t, -want[i].blck), 0);
    }
    cr_assert_null(ar_type_get((ar_type)4)); /* removed Q4_2 */
    cr_assert_null(ar_type_get((ar_type)-1));
    cr_assert_null(ar_type_get((ar_type)AR_TYPE_COUNT));
    cr_assert_null(ar_type_get((ar_type)1000));
    cr_assert_eq(ar_type_from_name("q4_2"), -1);
    cr_assert_eq(ar_type_from_name(""), -1);
    cr_assert_eq(ar_type_from_name(NULL), -1);
    cr_assert_eq(ar_row_size((ar_type)5, 32), 0);
    cr_assert_eq(ar_row_size(AR_TYPE_F32, INT64_MAX), 0, "overflow must give 0");
    cr_assert_eq(ar_row_size(AR_TYPE_Q8_0, INT64_MAX / 32 * 32), (size_t)(INT64_MAX / 32) * 34);
}

/* Each level installs its kernels, and only those; the machine's own level is restored. */
Test(quants, dispatch_levels) {
    const ar_cpu_features *f = ar_cpu();
    static const struct {
        ar_simd_level level;
        const char *floats, *quants;
    } levels[] = {
        {AR_SIMD_SCALAR, "scalar", "scalar"},
        {AR_SIMD_AVX2, "avx2", "avx2"},
        {AR_SIMD_AVX512, "avx512", "avx2"},
        {AR_SIMD_AVX512VNNI, "avx512", "avx512vnni"},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(levels); i++) {
        if (levels[i].level > f->level) continue;
        ar_kernels_select(levels[i].level);
        for (size_t k = 0; k < AR_ARRAY_LEN(all_types); k++) {
            const ar_type_traits *tr = ar_type_get(all_types[k]);
            bool is_float = all_types[k] == AR_TYPE_F32 || all_types[k] == AR_TYPE_F16 ||
                            all_types[k] == AR_TYPE_BF16;
            bool act_only = all_types[k] == AR_TYPE_Q8_1 || all_types[k] == AR_TYPE_Q8_K;
            const char *want = act_only ? "scalar" : is_float ? levels[i].floats : levels[i].quants;
            cr_assert_str_eq(tr->fast_path, want, "%s at level %s", tr->name,
                             ar_simd_name(levels[i].level));
            if (!strcmp(want, "scalar"))
                cr_assert_eq(tr->vec_dot_fast, tr->vec_dot);
            else
                cr_assert_neq(tr->vec_dot_fast, tr->vec_dot);
        }
    }
    ar_kernels_select(f->level);
    cr_assert_str_eq(ar_type_get(AR_TYPE_F32)->fast_path, f->level >= AR_SIMD_AVX512 ? "avx512"
                                                          : f->level >= AR_SIMD_AVX2 ? "avx2"
                                                                                     : "scalar");
}

/* ---------------------------------------------------------------- dequantization vs ggml */

Test(quants, dequant_fixtures_bit_exact) {
    FILE *f = fopen(FIX "/dequant/index.tsv", "r");
    cr_assert(f, "cannot open dequant/index.tsv");
    char line[1024];
    cr_assert(fgets(line, sizeof line, f)); /* header */
    int n_tensors = 0;
    bool seen[AR_TYPE_COUNT] = {false};
    while (fgets(line, sizeof line, f)) {
        char file[256], model[256], tensor[256], type_name[32];
        long long ne0, ne1, offset, nbytes;
        cr_assert_eq(sscanf(line, "%255s %255s %255s %31s %lld %lld %lld %lld", file, model, tensor,
                            type_name, &ne0, &ne1, &offset, &nbytes),
                     8, "bad index line: %s", line);
        int t = ar_type_from_name(type_name);
        cr_assert_geq(t, 0, "unknown type %s", type_name);
        const ar_type_traits *tr = ar_type_get((ar_type)t);
        const size_t row = ar_row_size((ar_type)t, ne0);
        cr_assert_eq(row * (size_t)ne1, (size_t)nbytes, "%s: byte size", file);

        char path[512];
        snprintf(path, sizeof path, FIX "/models/%s", model);
        uint8_t *data = read_at(path, (long)offset, (size_t)nbytes);
        float *got = xmalloc((size_t)(ne0 * ne1) * sizeof(float));
        for (long long r = 0; r < ne1; r++) tr->to_float(data + r * row, got + r * ne0, ne0);
        snprintf(path, sizeof path, FIX "/dequant/%s", file);
        size_t size;
        float *want = (float *)read_file(path, &size);
        cr_assert_eq(size, (size_t)(ne0 * ne1) * sizeof(float), "%s: size", file);
        for (long long i = 0; i < ne0 * ne1; i++)
            cr_assert(same_bits(got[i], want[i]), "%s: value %lld (row %lld): got %.9g want %.9g",
                      file, i, i / ne0, got[i], want[i]);
        seen[t] = true;
        n_tensors++;
        free(data);
        free(got);
        free(want);
    }
    fclose(f);
    cr_assert_eq(n_tensors, 16);
    for (size_t k = 0; k < AR_ARRAY_LEN(weight_types); k++)
        if (weight_types[k] != AR_TYPE_F32)
            cr_assert(seen[weight_types[k]], "no fixture for %s",
                      ar_type_get(weight_types[k])->name);
}

/* ---------------------------------------------------------------- weight quantizers vs
 * llama-quantize */

static const void *tensor_data(const ar_gguf *g, const char *name, ar_type want_type, int64_t *ne0,
                               int64_t *ne1) {
    const ar_gguf_tensor *t = ar_gguf_find_tensor(g, name);
    cr_assert(t, "%s: no tensor %s", g->path, name);
    cr_assert_eq(t->type, want_type, "%s: %s has type %d", g->path, name, t->type);
    *ne0 = t->ne[0];
    *ne1 = t->ne[1];
    return t->data;
}

static ar_gguf *open_model(const char *file) {
    char path[512];
    snprintf(path, sizeof path, FIX "/models/%s", file);
    ar_gguf *g = NULL;
    ar_status st = ar_gguf_open(path, &g);
    cr_assert_eq(st, AR_OK, "%s: %s", path, ar_last_error());
    return g;
}

/* Quantizes the F32 original's tensor and compares with the quantized file's bytes. */
static void check_requantize(const ar_gguf *f32, const ar_gguf *q, const char *name, ar_type t) {
    int64_t ne0, ne1, qe0, qe1;
    const float *src = tensor_data(f32, name, AR_TYPE_F32, &ne0, &ne1);
    const uint8_t *want = tensor_data(q, name, t, &qe0, &qe1);
    cr_assert(ne0 == qe0 && ne1 == qe1);
    const ar_type_traits *tr = ar_type_get(t);
    const size_t row = ar_row_size(t, ne0);
    uint8_t *got = xmalloc(row);
    float *x = xmalloc((size_t)ne0 * sizeof(float));
    for (int64_t r = 0; r < ne1; r++) {
        memcpy(x, src + r * ne0, (size_t)ne0 * sizeof(float)); /* the mapping may be unaligned */
        tr->from_float(x, got, ne0);
        if (memcmp(got, want + r * row, row) != 0) {
            size_t b = 0;
            while (got[b] == want[r * row + b]) b++;
            cr_assert_fail("%s %s (%s): row %lld differs from llama-quantize at byte %zu (block "
                           "%zu): got 0x%02x want 0x%02x",
                           q->path, name, tr->name, (long long)r, b, b / tr->type_size, got[b],
                           want[r * row + b]);
        }
    }
    free(got);
    free(x);
}

Test(quants, weight_quantizers_match_llama_quantize, .timeout = 120) {
    static const struct {
        const char *file;
        ar_type t;
    } models[] = {
        {"synth-llama-q8_0.gguf", AR_TYPE_Q8_0}, {"synth-llama-q4_0.gguf", AR_TYPE_Q4_0},
        {"synth-llama-q4_1.gguf", AR_TYPE_Q4_1}, {"synth-llama-q5_0.gguf", AR_TYPE_Q5_0},
        {"synth-llama-q5_1.gguf", AR_TYPE_Q5_1}, {"synth-llama-q2_k.gguf", AR_TYPE_Q2_K},
        {"synth-llama-q3_k.gguf", AR_TYPE_Q3_K}, {"synth-llama-q4_k.gguf", AR_TYPE_Q4_K},
        {"synth-llama-q5_k.gguf", AR_TYPE_Q5_K}, {"synth-llama-q6_k.gguf", AR_TYPE_Q6_K},
        {"synth-llama-f16.gguf", AR_TYPE_F16},   {"synth-llama-bf16.gguf", AR_TYPE_BF16},
    };
    static const char *tensors[] = {"blk.0.attn_k.weight", "blk.1.ffn_down.weight",
                                    "output.weight"};
    ar_gguf *f32 = open_model("synth-llama-f32.gguf");
    for (size_t m = 0; m < AR_ARRAY_LEN(models); m++) {
        ar_gguf *q = open_model(models[m].file);
        for (size_t k = 0; k < AR_ARRAY_LEN(tensors); k++)
            check_requantize(f32, q, tensors[k], models[m].t);
        ar_gguf_close(q);
    }
    ar_gguf *q4km = open_model("synth-llama-q4_k_m.gguf");
    check_requantize(f32, q4km, "output.weight", AR_TYPE_Q6_K);
    check_requantize(f32, q4km, "blk.0.attn_q.weight", AR_TYPE_Q4_K);
    ar_gguf_close(q4km);
    ar_gguf_close(f32);

    /* the real model: Q4_0 weights, and output.weight fell back to Q8_0 */
    ar_gguf *l32 = open_model("llama2xs-260K-f32.gguf");
    ar_gguf *l4 = open_model("llama2xs-260K-q4_0.gguf");
    ar_gguf *l8 = open_model("llama2xs-260K-q8_0.gguf");
    check_requantize(l32, l4, "blk.0.attn_k.weight", AR_TYPE_Q4_0);
    check_requantize(l32, l4, "blk.4.ffn_down.weight", AR_TYPE_Q4_0);
    check_requantize(l32, l4, "output.weight", AR_TYPE_Q8_0);
    check_requantize(l32, l8, "token_embd.weight", AR_TYPE_Q8_0);
    ar_gguf_close(l32);
    ar_gguf_close(l4);
    ar_gguf_close(l8);
}

/* ---------------------------------------------------------------- activation rounding */

Test(quants, activation_rounding_known_values) {
    /* amax 127: d = 1 and the multiplier is exactly 1, so ties show the rounding rule */
    float x[AR_QK] = {127.f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.49f, -126.5f};
    for (int j = 8; j < AR_QK; j++) x[j] = (float)(j - 16);
    ar_block_q8_0 act, wgt;
    ar_quantize_row(AR_TYPE_Q8_0, x, &act, AR_QK);
    ar_type_get(AR_TYPE_Q8_0)->from_float(x, &wgt, AR_QK);
    cr_assert_eq(act.d, 0x3c00); /* fp16(1.0) */
    cr_assert_eq(wgt.d, 0x3c00);
    const int8_t act_want[8] = {127, 2, -2, 4, 0, 0, 1, -126};  /* ties to even (x86 backend) */
    const int8_t wgt_want[8] = {127, 3, -3, 4, 1, -1, 1, -127}; /* roundf (quantize_row_q8_0_ref) */
    for (int j = 0; j < 8; j++) {
        cr_assert_eq(act.qs[j], act_want[j], "activation q[%d] = %d", j, act.qs[j]);
        cr_assert_eq(wgt.qs[j], wgt_want[j], "weight q[%d] = %d", j, wgt.qs[j]);
    }
    for (int j = 8; j < AR_QK; j++) cr_assert_eq(act.qs[j], j - 16);

    /* Q8_1: same quants, s = fp16(d * sum) */
    ar_block_q8_1 a1;
    ar_quantize_row(AR_TYPE_Q8_1, x, &a1, AR_QK);
    cr_assert_eq(memcmp(a1.qs, act.qs, AR_QK), 0);
    int sum = 0;
    for (int j = 0; j < AR_QK; j++) sum += a1.qs[j];
    cr_assert_eq(sum, 127 + 2 - 2 + 4 + 0 + 0 + 1 - 126 + (-8 + 15) * 24 / 2);
    cr_assert_eq(a1.s, ar_fp32_to_fp16((float)sum));

    /* a scale that is not a power of two: d = fp16(amax/127), q = rte(x * (127/amax)) */
    float y[AR_QK];
    float amax = 0;
    for (int j = 0; j < AR_QK; j++) {
        y[j] = 0.1f * (float)(j - 7);
        amax = fmaxf(amax, fabsf(y[j]));
    }
    ar_quantize_row(AR_TYPE_Q8_0, y, &act, AR_QK);
    const float id = 127.f / amax;
    cr_assert_eq(act.d, ar_fp32_to_fp16(amax / 127.f));
    for (int j = 0; j < AR_QK; j++) cr_assert_eq(act.qs[j], (int)nearbyintf(y[j] * id));
    cr_assert_eq(act.qs[31], 127);
    cr_assert_eq(act.qs[0], -37); /* -0.7 * 52.9166 = -37.04 */

    /* all zero: d = 0 and zero quants */
    float z[AR_QK] = {0};
    ar_quantize_row(AR_TYPE_Q8_0, z, &act, AR_QK);
    cr_assert_eq(act.d, 0);
    for (int j = 0; j < AR_QK; j++) cr_assert_eq(act.qs[j], 0);

    /* Q8_K: max is the signed value of largest magnitude, d = 1/(-127/max) as float32 */
    float k[AR_QK_K];
    for (int j = 0; j < AR_QK_K; j++) k[j] = (float)(j % 64) - 31.5f; /* in [-31.5, 31.5] */
    k[5] = -63.5f;                                                    /* max = -63.5 */
    ar_block_q8_K b;
    ar_quantize_row(AR_TYPE_Q8_K, k, &b, AR_QK_K);
    const float iscale = -127.f / -63.5f; /* exactly 2 */
    cr_assert(same_bits(b.d, 1 / iscale), "d = %g", b.d);
    cr_assert_eq(b.qs[5], -127);
    for (int j = 0; j < AR_QK_K; j++)
        if (j != 5) cr_assert_eq(b.qs[j], 2 * (j % 64) - 63, "q[%d] = %d", j, b.qs[j]);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += b.qs[16 * g + l];
        cr_assert_eq(b.bsums[g], s, "bsums[%d]", g);
    }
    /* positive max: d negative as in ggml */
    k[5] = 63.5f;
    ar_quantize_row(AR_TYPE_Q8_K, k, &b, AR_QK_K);
    cr_assert(b.d < 0 && b.qs[5] == -127 && b.qs[0] == 63, "d %g q5 %d q0 %d", b.d, b.qs[5],
              b.qs[0]);

    /* F16/BF16 activations: round to nearest even; F32: a copy */
    float h[4] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-8f, -0.0f};
    uint16_t hq[4];
    ar_quantize_row(AR_TYPE_F16, h, hq, 4);
    cr_assert(hq[0] == 0x3c00 && hq[1] == 0x3c02 && hq[2] == 0x3c04 && hq[3] == 0x8000);
    ar_quantize_row(AR_TYPE_BF16, h, hq, 4);
    cr_assert(hq[0] == 0x3f80 && hq[2] == 0x3f80 && hq[3] == 0x8000, "%x %x", hq[0], hq[2]);
    float hc[4];
    ar_quantize_row(AR_TYPE_F32, h, hc, 4);
    cr_assert_eq(memcmp(hc, h, sizeof h), 0);

    /* non-finite input never leaves [-127, 127] (the kernels rely on that) */
    float bad[AR_QK_K];
    for (int j = 0; j < AR_QK_K; j++) bad[j] = j % 3 == 0 ? NAN : j % 3 == 1 ? INFINITY : 1.0f;
    ar_block_q8_K bk;
    ar_quantize_row(AR_TYPE_Q8_K, bad, &bk, AR_QK_K);
    ar_block_q8_0 b0[AR_QK_K / AR_QK];
    ar_quantize_row(AR_TYPE_Q8_0, bad, b0, AR_QK_K);
    for (int j = 0; j < AR_QK_K; j++) {
        cr_assert(bk.qs[j] >= -127 && b0[j / AR_QK].qs[j % AR_QK] >= -127);
    }
}

/* Weight quantizers on hand-made blocks. */
Test(quants, weight_quantizer_known_blocks) {
    float x[AR_QK];
    for (int j = 0; j < AR_QK; j++) x[j] = (float)(j - 16); /* max |x| = 16 at j = 0, x = -16 */
    ar_block_q4_0 q4;
    ar_type_get(AR_TYPE_Q4_0)->from_float(x, &q4, AR_QK);
    cr_assert_eq(q4.d, 0x4000); /* d = -16 / -8 = 2 */
    /* q = trunc(x/2 + 8.5), clamped to 15 */
    for (int j = 0; j < 16; j++) {
        int lo = q4.qs[j] & 0xF, hi = q4.qs[j] >> 4;
        cr_assert_eq(lo, (int)((float)(j - 16) / 2 + 8.5f), "lo %d", j);
        cr_assert_eq(hi, j == 15 ? 15 : (int)((float)j / 2 + 8.5f), "hi %d", j);
    }
    ar_block_q4_1 q41;
    ar_type_get(AR_TYPE_Q4_1)->from_float(x, &q41, AR_QK);
    cr_assert_eq(q41.m, ar_fp32_to_fp16(-16.f));
    cr_assert_eq(q41.d, ar_fp32_to_fp16(31.f / 15));
    cr_assert_eq(q41.qs[0] & 0xF, 0);
    cr_assert_eq(q41.qs[15] >> 4, 15);

    /* Q5_0: fifth bits land in qh */
    ar_block_q5_0 q5;
    ar_type_get(AR_TYPE_Q5_0)->from_float(x, &q5, AR_QK);
    cr_assert_eq(q5.d, 0x3c00); /* -16 / -16 */
    float back[AR_QK];
    ar_type_get(AR_TYPE_Q5_0)->to_float(&q5, back, AR_QK);
    for (int j = 0; j < AR_QK; j++) cr_assert_eq(back[j], x[j], "q5_0 value %d", j);
    ar_block_q5_1 q51;
    ar_type_get(AR_TYPE_Q5_1)->from_float(x, &q51, AR_QK);
    ar_type_get(AR_TYPE_Q5_1)->to_float(&q51, back, AR_QK);
    for (int j = 0; j < AR_QK; j++) cr_assert(fabsf(back[j] - x[j]) <= 0.51f, "q5_1 %d", j);

    /* all-zero super-blocks quantize to zeros and dequantize to zeros */
    float zero[AR_QK_K] = {0};
    const ar_type kq[] = {AR_TYPE_Q2_K, AR_TYPE_Q3_K, AR_TYPE_Q4_K, AR_TYPE_Q5_K, AR_TYPE_Q6_K};
    for (size_t k = 0; k < AR_ARRAY_LEN(kq); k++) {
        const ar_type_traits *tr = ar_type_get(kq[k]);
        uint8_t blk[sizeof(ar_block_q8_K)];
        float out[AR_QK_K];
        tr->from_float(zero, blk, AR_QK_K);
        tr->to_float(blk, out, AR_QK_K);
        for (int j = 0; j < AR_QK_K; j++) cr_assert_eq(out[j], 0.f, "%s", tr->name);
    }
}

/* ---------------------------------------------------------------- llama.cpp mat-vecs */

typedef struct {
    char tensor[128];
    char type[16];
    int n_in, n_out;
    float *x, *y;
} matvec;

static float *parse_floats(const char *s, int n) {
    float *v = xmalloc((size_t)n * sizeof(float));
    char *end;
    for (int i = 0; i < n; i++) {
        v[i] = strtof(s, &end);
        cr_assert(end != s, "short vector (%d of %d)", i, n);
        s = end;
    }
    return v;
}

/* Reads kernels/<file>: the model name and up to 4 mat-vecs. */
static int read_matvecs(const char *file, char *model, size_t model_size, matvec mv[4]) {
    char path[512];
    snprintf(path, sizeof path, FIX "/kernels/%s", file);
    size_t size;
    char *text = (char *)read_file(path, &size);
    char *buf = xmalloc(size + 1);
    memcpy(buf, text, size);
    buf[size] = 0;
    free(text);
    int n = -1;
    bool ended = false;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        if (!strncmp(line, "model ", 6))
            snprintf(model, model_size, "%s", line + 6);
        else if (!strncmp(line, "matvec ", 7)) {
            cr_assert_lt(++n, 4);
            memset(&mv[n], 0, sizeof mv[n]);
            cr_assert_eq(sscanf(line + 7, "%127s %15s", mv[n].tensor, mv[n].type), 2);
        } else if (!strncmp(line, "n_in ", 5))
            mv[n].n_in = atoi(line + 5);
        else if (!strncmp(line, "n_out ", 6))
            mv[n].n_out = atoi(line + 6);
        else if (!strncmp(line, "x ", 2))
            mv[n].x = parse_floats(line + 2, mv[n].n_in);
        else if (!strncmp(line, "y ", 2))
            mv[n].y = parse_floats(line + 2, mv[n].n_out);
        else if (!strcmp(line, "end"))
            ended = true;
    }
    free(buf);
    cr_assert(ended && n >= 1, "%s: truncated", file);
    return n + 1;
}

static const char *matvec_files[] = {
    "aidreams260K-f32", "llama2xs-260K-f32",  "llama2xs-260K-q4_0", "llama2xs-260K-q8_0",
    "stories260K-f32",  "synth-llama-bf16",   "synth-llama-f16",    "synth-llama-f32",
    "synth-llama-q2_k", "synth-llama-q3_k",   "synth-llama-q4_0",   "synth-llama-q4_1",
    "synth-llama-q4_k", "synth-llama-q4_k_m", "synth-llama-q5_0",   "synth-llama-q5_1",
    "synth-llama-q5_k", "synth-llama-q6_k",   "synth-llama-q8_0",   "synth-qwen2-f32",
    "synth-qwen2-q8_0",
};

/* y = W x with our activation rounding, on the reference and on every kernel of this CPU. The
 * kernels must equal the reference bit for bit; the reference must be within `tol` of max|y| of
 * llama.cpp's (its kernels add in another order; the activation rounding is reproduced). */
Test(quants, matvec_matches_llama_cpp, .timeout = 120) {
    bool seen[AR_TYPE_COUNT] = {false};
    double worst[AR_TYPE_COUNT] = {0};
    for (size_t f = 0; f < AR_ARRAY_LEN(matvec_files); f++) {
        char file[128], model[256];
        snprintf(file, sizeof file, "%s.matvec.txt", matvec_files[f]);
        matvec mv[4];
        const int n_mv = read_matvecs(file, model, sizeof model, mv);
        ar_gguf *g = open_model(model);
        for (int m = 0; m < n_mv; m++) {
            const int t = ar_type_from_name(mv[m].type);
            cr_assert_geq(t, 0, "%s: type %s", file, mv[m].type);
            int64_t ne0, ne1;
            const uint8_t *w = tensor_data(g, mv[m].tensor, (ar_type)t, &ne0, &ne1);
            cr_assert(ne0 == mv[m].n_in && ne1 == mv[m].n_out, "%s: %s shape", file, mv[m].tensor);
            const ar_type_traits *tr = ar_type_get((ar_type)t);
            const size_t row = ar_row_size((ar_type)t, ne0);
            void *xq = xmalloc(ar_row_size(tr->vec_dot_type, ne0));
            ar_quantize_row(tr->vec_dot_type, mv[m].x, xq, ne0);
            kernel ks[3];
            const int nk = kernels_for((ar_type)t, ks);
            double max_y = 0, max_err = 0;
            for (int r = 0; r < ne1; r++) max_y = fmax(max_y, fabs(mv[m].y[r]));
            for (int r = 0; r < ne1; r++) {
                float ref;
                tr->vec_dot(ne0, &ref, w + r * row, xq);
                for (int k = 0; k < nk; k++) {
                    float fast;
                    ks[k].fn(ne0, &fast, w + r * row, xq);
                    cr_assert(same_bits(fast, ref), "%s %s row %d: %s %.9g != reference %.9g", file,
                              mv[m].tensor, r, ks[k].name, fast, ref);
                }
                max_err = fmax(max_err, fabs((double)ref - mv[m].y[r]));
            }
            const bool is_float = t == AR_TYPE_F32 || t == AR_TYPE_F16 || t == AR_TYPE_BF16;
            const double tol = is_float ? 1e-6 : 2e-6;
            cr_assert_leq(max_err, tol * max_y, "%s %s (%s): max |dy| %.3g = %.3g of max|y| %.3g",
                          file, mv[m].tensor, mv[m].type, max_err, max_err / max_y, max_y);
            worst[t] = fmax(worst[t], max_err / max_y);
            seen[t] = true;
            free(xq);
            free(mv[m].x);
            free(mv[m].y);
        }
        ar_gguf_close(g);
    }
    for (size_t k = 0; k < AR_ARRAY_LEN(weight_types); k++) {
        cr_assert(seen[weight_types[k]], "no mat-vec fixture for %s",
                  ar_type_get(weight_types[k])->name);
        cr_log_info("matvec %-5s: max |dy| / max|y| = %.3g", ar_type_get(weight_types[k])->name,
                    worst[weight_types[k]]);
    }
}

/* ---------------------------------------------------------------- fast paths vs the reference */

/* A random weight row of n values: quantized Gaussian data, or (hostile) random bytes with finite
 * random scales. */
static void random_weights(ar_type t, int64_t n, bool raw, uint8_t *dst) {
    const ar_type_traits *tr = ar_type_get(t);
    const size_t size = ar_row_size(t, n);
    float *x = xmalloc((size_t)n * sizeof(float));
    const float scale = (float)exp(4.0 * rng_uniform() - 2.0);
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_gauss() + (i % 7 == 0 ? 0.3f * scale : 0);
    tr->from_float(x, dst, n);
    free(x);
    /* (the activation-only formats have no fast path: their quants stay well-formed) */
    if (!raw || tr->blck_size == 1 || t == AR_TYPE_Q8_1 || t == AR_TYPE_Q8_K) return;
    for (size_t b = 0; b < size; b++) dst[b] = (uint8_t)rng_next();
    /* scale fields: random finite halfs of moderate size */
    const size_t nb = size / tr->type_size;
    for (size_t b = 0; b < nb; b++) {
        uint8_t *blk = dst + b * tr->type_size;
        size_t off[2] = {0, 0};
        int n_off = 0;
        switch (t) {
        case AR_TYPE_Q4_0:
        case AR_TYPE_Q5_0:
        case AR_TYPE_Q8_0:
            off[0] = 0, n_off = 1;
            break;
        case AR_TYPE_Q4_1:
        case AR_TYPE_Q5_1:
        case AR_TYPE_Q4_K:
        case AR_TYPE_Q5_K:
            off[0] = 0, off[1] = 2, n_off = 2;
            break;
        case AR_TYPE_Q2_K:
            off[0] = 80, off[1] = 82, n_off = 2;
            break;
        case AR_TYPE_Q3_K:
            off[0] = 108, n_off = 1;
            break;
        case AR_TYPE_Q6_K:
            off[0] = 208, n_off = 1;
            break;
        default:
            cr_assert_fail("no scale layout for %s", tr->name);
        }
        for (int k = 0; k < n_off; k++) {
            uint16_t h = ar_fp32_to_fp16((float)(rng_gauss() * 0.01));
            memcpy(blk + off[k], &h, 2);
        }
    }
}

/* Double-precision dot of the dequantized rows, and the sum of |products| (its error scale).
 * With Q8_1 activations the weights' minimum m meets the block's stored s = fp16(d * sum q)
 * instead of the sum of the dequantized activations: m * (s - d * sum q) per block is part of the
 * defined result. */
static double exact_dot(ar_type wt, const void *w, ar_type at, const void *a, int64_t n,
                        double *abs_sum) {
    float *x = xmalloc((size_t)n * sizeof(float)), *y = xmalloc((size_t)n * sizeof(float));
    ar_type_get(wt)->to_float(w, x, n);
    ar_type_get(at)->to_float(a, y, n);
    double s = 0, as = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)x[i] * y[i];
        as += fabs((double)x[i] * y[i]);
    }
    if (at == AR_TYPE_Q8_1 && wt != AR_TYPE_Q8_1) {
        const size_t wsz = ar_type_get(wt)->type_size;
        const ar_block_q8_1 *ab = a;
        for (int64_t b = 0; b < n / AR_QK; b++) {
            uint16_t m;
            memcpy(&m, (const uint8_t *)w + b * wsz + 2, 2);
            double sum_y = 0;
            for (int j = 0; j < AR_QK; j++) sum_y += y[b * AR_QK + j];
            const double term = (double)ar_fp16_to_fp32(m) * (ar_fp16_to_fp32(ab[b].s) - sum_y);
            s += term;
            as += fabs(term);
        }
    }
    free(x);
    free(y);
    *abs_sum = as;
    return s;
}

Test(quants, fast_paths_equal_reference, .timeout = 120) {
    rng_state = 12345;
    static const int64_t blocks[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 33};
    static const int64_t float_lengths[] = {1,  2,  7,   15,  16,  17,  31,   32,   33,  63,
                                            64, 65, 100, 255, 256, 257, 1000, 1024, 4097};
    int n_checked = 0;
    for (size_t k = 0; k < AR_ARRAY_LEN(all_types); k++) {
        const ar_type t = all_types[k];
        const ar_type_traits *tr = ar_type_get(t);
        const ar_type at = tr->vec_dot_type;
        const bool is_float = tr->blck_size == 1;
        kernel ks[3];
        const int nk = kernels_for(t, ks);
        const size_t n_lengths = is_float ? AR_ARRAY_LEN(float_lengths) : AR_ARRAY_LEN(blocks);
        for (size_t li = 0; li < n_lengths; li++) {
            const int64_t n = is_float ? float_lengths[li] : blocks[li] * tr->blck_size;
            for (int variant = 0; variant < 3; variant++) {
                const bool raw = variant == 2;
                /* room for copies shifted by up to 20 bytes */
                const size_t wsize = ar_row_size(t, n), asize = ar_row_size(at, n);
                uint8_t *wbuf = xmalloc(wsize + 64), *abuf = xmalloc(asize + 64);
                uint8_t *w = wbuf, *a = abuf;
                random_weights(t, n, raw, w);
                float *x = xmalloc((size_t)n * sizeof(float));
                for (int64_t i = 0; i < n; i++) x[i] = rng_gauss() * (variant == 1 ? 100.f : 1.f);
                ar_quantize_row(at, x, a, n);
                free(x);

                float ref;
                tr->vec_dot(n, &ref, w, a);
                for (int j = 0; j < nk; j++) {
                    float fast;
                    ks[j].fn(n, &fast, w, a);
                    cr_assert(same_bits(fast, ref),
                              "%s n=%lld variant %d: %s %.9g != reference %.9g", tr->name,
                              (long long)n, variant, ks[j].name, fast, ref);
                    /* the same row elsewhere in memory gives the same bits */
                    /* float fields need 4-byte alignment, the fp16 ones 2 */
                    const size_t ws = (t == AR_TYPE_F32 || t == AR_TYPE_Q8_K ? 4 : 2) + 8 * j;
                    const size_t as = (at == AR_TYPE_F32 || at == AR_TYPE_Q8_K ? 4 : 2) + 8 * j;
                    memmove(wbuf + ws, wbuf, wsize);
                    memmove(abuf + as, abuf, asize);
                    float moved;
                    ks[j].fn(n, &moved, wbuf + ws, abuf + as);
                    cr_assert(same_bits(moved, ref), "%s n=%lld: %s depends on the address",
                              tr->name, (long long)n, ks[j].name);
                    memmove(wbuf, wbuf + ws, wsize);
                    memmove(abuf, abuf + as, asize);
                    n_checked++;
                }
                /* the reference itself: close to exact math on the dequantized rows */
                double abs_sum;
                const double exact = exact_dot(t, w, at, a, n, &abs_sum);
                cr_assert_leq(fabs(ref - exact), 1e-5 * abs_sum + 1e-30,
                              "%s n=%lld: reference %.9g vs exact %.9g (sum |p| %.3g)", tr->name,
                              (long long)n, ref, exact, abs_sum);
                free(wbuf);
                free(abuf);
            }
        }
    }
    cr_assert_gt(n_checked, 0);
    const ar_cpu_features *f = ar_cpu();
    if (f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq &&
        f->avx512vnni)
        cr_assert_geq(n_checked, 13 * 3 * 12 * 3, "AVX2 and AVX-512 kernels were not all run");
    else
        cr_log_warn("this CPU lacks AVX-512 VNNI: only %d kernel checks ran", n_checked);
}

/* One long row through the reference and every kernel (many groups, long integer sums). */
Test(quants, fast_paths_long_rows) {
    rng_state = 777;
    const int64_t n = 16384;
    for (size_t k = 0; k < AR_ARRAY_LEN(weight_types); k++) {
        const ar_type t = weight_types[k];
        const ar_type_traits *tr = ar_type_get(t);
        uint8_t *w = xmalloc(ar_row_size(t, n)), *a = xmalloc(ar_row_size(tr->vec_dot_type, n));
        float *x = xmalloc((size_t)n * sizeof(float));
        random_weights(t, n, false, w);
        for (int64_t i = 0; i < n; i++) x[i] = rng_gauss();
        ar_quantize_row(tr->vec_dot_type, x, a, n);
        float ref;
        tr->vec_dot(n, &ref, w, a);
        kernel ks[3];
        const int nk = kernels_for(t, ks);
        for (int j = 0; j < nk; j++) {
            float fast;
            ks[j].fn(n, &fast, w, a);
            cr_assert(same_bits(fast, ref), "%s: %s %.9g != %.9g", tr->name, ks[j].name, fast, ref);
        }
        free(w);
        free(a);
        free(x);
    }
}

/* ---------------------------------------------------------------- round trips */

/* from_float then to_float on Gaussian data: RMS error relative to the data's RMS, and the
 * error of each value against its block's scale. Bounds are about 1.2x what these formats give
 * on this data (which is fixed by the seed). */
Test(quants, round_trip_error_bounds) {
    rng_state = 99;
    static const struct {
        ar_type t;
        double max_rel_rmse;
    } bounds[] = {
        {AR_TYPE_F32, 0},       {AR_TYPE_F16, 2.5e-4},  {AR_TYPE_BF16, 2e-3},
        {AR_TYPE_Q8_0, 0.0065}, {AR_TYPE_Q8_1, 0.0065}, {AR_TYPE_Q8_K, 0.0083},
        {AR_TYPE_Q6_K, 0.021},  {AR_TYPE_Q5_0, 0.051},  {AR_TYPE_Q5_1, 0.045},
        {AR_TYPE_Q5_K, 0.043},  {AR_TYPE_Q4_0, 0.104},  {AR_TYPE_Q4_1, 0.095},
        {AR_TYPE_Q4_K, 0.086},  {AR_TYPE_Q3_K, 0.18},   {AR_TYPE_Q2_K, 0.35},
    };
    const int64_t n = 8192;
    float *x = xmalloc(n * sizeof(float)), *back = xmalloc(n * sizeof(float));
    uint8_t *q = xmalloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) x[i] = rng_gauss();
    double rms = 0;
    for (int64_t i = 0; i < n; i++) rms += (double)x[i] * x[i];
    rms = sqrt(rms / n);
    for (size_t k = 0; k < AR_ARRAY_LEN(bounds); k++) {
        const ar_type_traits *tr = ar_type_get(bounds[k].t);
        tr->from_float(x, q, n);
        tr->to_float(q, back, n);
        double se = 0;
        for (int64_t i = 0; i < n; i++) se += ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
        const double rel = sqrt(se / n) / rms;
        cr_assert_leq(rel, bounds[k].max_rel_rmse, "%s: relative RMS error %.4g", tr->name, rel);
        if (bounds[k].max_rel_rmse > 0)
            cr_assert_gt(rel, bounds[k].max_rel_rmse / 4, "%s: error %.4g suspiciously small",
                         tr->name, rel);
        cr_log_info("round trip %-5s: relative RMS error %.4g", tr->name, rel);
    }
    /* 32-value formats: every value within half a step (plus the fp16 rounding of the scale) */
    const ar_type blk32[] = {AR_TYPE_Q4_0, AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0};
    for (size_t k = 0; k < AR_ARRAY_LEN(blk32); k++) {
        const ar_type_traits *tr = ar_type_get(blk32[k]);
        tr->from_float(x, q, n);
        tr->to_float(q, back, n);
        for (int64_t b = 0; b < n / AR_QK; b++) {
            const uint8_t *blk = q + b * tr->type_size;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            const float d = fabsf(ar_fp16_to_fp32(dh));
            float amax = 0;
            for (int j = 0; j < AR_QK; j++) amax = fmaxf(amax, fabsf(x[b * AR_QK + j]));
            for (int j = 0; j < AR_QK; j++) {
                const float err = fabsf(back[b * AR_QK + j] - x[b * AR_QK + j]);
                /* the +-0.5 step, the fp16 rounding of d (and m) times up to 2x the range,
                 * and Q4_0/Q5_0's clamp of the top level (a full step on the far side) */
                const bool clamped = blk32[k] == AR_TYPE_Q4_0 || blk32[k] == AR_TYPE_Q5_0;
                const float bound = (clamped ? 1.0f : 0.5f) * d * 1.001f + 2 * amax * 0x1p-10f;
                cr_assert_leq(err, bound, "%s block %lld value %d: error %g, d %g", tr->name,
                              (long long)b, j, err, d);
            }
        }
    }
    free(x);
    free(back);
    free(q);
}

/* ---------------------------------------------------------------- fp16 / bf16 */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_fp32_to_fp16(float f) {
    return (uint16_t)_cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_fp16_to_fp32(uint16_t h) {
    return _cvtsh_ss(h);
}
#endif

static bool is_nan_half(uint16_t h) {
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

Test(quants, fp16_exhaustive) {
    for (uint32_t i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i;
        const float f = ar_fp16_to_fp32(h);
        cr_assert(same_bits(ar_half_to_float(h), f), "inline conversion of 0x%04x", h);
        cr_assert(same_bits(ar_fp16_lookup(h), f), "table entry 0x%04x", h);
        if (is_nan_half(h)) {
            cr_assert(isnan(f), "0x%04x", h);
            cr_assert(is_nan_half(ar_fp32_to_fp16(f)), "NaN 0x%04x stays NaN", h);
        } else {
            cr_assert_eq(ar_fp32_to_fp16(f), h, "round trip of 0x%04x (%g)", h, f);
        }
        /* halfway to the next half up (in magnitude): ties to even */
        if ((h & 0x7fff) < 0x7bff) {
            const float next = ar_fp16_to_fp32((uint16_t)(h + 1));
            const float mid = (f + next) / 2; /* exact in float */
            const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
            cr_assert_eq(ar_fp32_to_fp16(mid), even, "tie between 0x%04x and 0x%04x", h, h + 1);
        }
    }
    cr_assert_eq(ar_fp32_to_fp16(65520.f), 0x7c00); /* rounds to infinity */
    cr_assert_eq(ar_fp32_to_fp16(65519.f), 0x7bff);
    cr_assert_eq(ar_fp32_to_fp16(-1e10f), 0xfc00);
    cr_assert_eq(ar_fp32_to_fp16(0x1p-25f), 0x0000); /* tie to even (zero) */
    cr_assert_eq(ar_fp32_to_fp16(0x1.000002p-25f), 0x0001);
#if defined(__x86_64__) || defined(__i386__)
    if (ar_cpu()->f16c) {
        for (uint32_t i = 0; i < 65536; i++)
            cr_assert(same_bits(hw_fp16_to_fp32((uint16_t)i), ar_fp16_to_fp32((uint16_t)i)) ||
                          is_nan_half((uint16_t)i),
                      "0x%04x vs F16C", i);
        /* float -> half: a stride through all 2^32 patterns, plus every float near a half */
        for (uint64_t u = 0; u < (1ull << 32); u += 65521) {
            const float f = ar_bits_f32((uint32_t)u);
            if (isnan(f)) continue;
            cr_assert_eq(ar_fp32_to_fp16(f), hw_fp32_to_fp16(f), "0x%08x", (unsigned)u);
        }
        for (uint32_t i = 0; i < 0x7c00; i++) {
            const uint32_t base = ar_f32_bits(ar_fp16_to_fp32((uint16_t)i));
            for (int d = -3; d <= 3; d++) {
                const uint32_t u = base + (uint32_t)(d * 4096);
                for (int s = 0; s < 2; s++) {
                    const float f = ar_bits_f32(u ^ (s ? 0x80000000u : 0));
                    if (isnan(f)) continue;
                    cr_assert_eq(ar_fp32_to_fp16(f), hw_fp32_to_fp16(f), "0x%08x", ar_f32_bits(f));
                }
            }
        }
    }
#endif
}

Test(quants, bf16_exhaustive) {
    for (uint32_t i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i;
        const float f = ar_bf16_to_fp32(h);
        if (isnan(f)) {
            cr_assert(isnan(ar_bf16_to_fp32(ar_fp32_to_bf16(f))), "NaN 0x%04x stays NaN", h);
            continue;
        }
        cr_assert_eq(ar_fp32_to_bf16(f), h, "round trip of 0x%04x", h);
        /* ties to even with the next bf16 up in magnitude */
        if ((h & 0x7fff) < 0x7f7f) {
            const uint32_t mid = ((uint32_t)h << 16) + 0x8000;
            const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
            cr_assert_eq(ar_fp32_to_bf16(ar_bits_f32(mid)), even, "tie above 0x%04x", h);
            cr_assert_eq(ar_fp32_to_bf16(ar_bits_f32(mid + 1)), (uint16_t)(h + 1));
            cr_assert_eq(ar_fp32_to_bf16(ar_bits_f32(mid - 1)), h);
        }
    }
    cr_assert_eq(ar_fp32_to_bf16(ar_bits_f32(0x7f7fffff)), 0x7f80); /* FLT_MAX rounds to inf */
    cr_assert_eq(ar_fp32_to_bf16(ar_bits_f32(0x7fc00001)) & 0x7fc0, 0x7fc0); /* quiet NaN */
    cr_assert_eq(ar_fp32_to_bf16(ar_bits_f32(0x7f800001)) & 0x7fc0,
                 0x7fc0); /* signalling: quieted */
}
