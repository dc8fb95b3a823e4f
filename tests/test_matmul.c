/* test_matmul.c: ar_matmul against the scalar reference, element by element and bit for bit.
 * For every weight format, at every instruction-set level this CPU has (scalar, AVX2, AVX-512),
 * for batch sizes 1..64 (so partial and multiple panels), row lengths with partial block groups,
 * realistic (quantizer-made) and hostile (random-byte) weights, with 1 and 2 threads, y = W·x and
 * y += W·x: each output must equal the reference vec_dot of its weight row and its rounded
 * activation row. That is the batch invariance of matmul: a column never depends on the others.
 * Prompt batches above AR_BATCH_INVARIANT (64) may take sgemm instead: there each output must be the
 * exact one or agree with a double-precision dot of the dequantized row and the unrounded
 * activations. Also: the vectorised activation rounding and fp16 rows equal the scalar code's
 * bytes for any input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/cpu.h"
#include "src/kernels/matmul.h"
#include "src/core/model.h"
#include "src/kernels/kernels.h"

static void init(void) {
    ar_runtime_init();
}
static void fini(void) {
    ar_kernels_select(ar_cpu()->level); /* restore the dispatch */
}
TestSuite(matmul, .init = init, .fini = fini);

static uint64_t rng_state = 12345;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_float(void) { /* roughly normal */
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)((double)(rng_next() >> 11) * 0x1p-53) - 0.5f;
    return s;
}

/* Same bits, or both NaN (NaN payloads may differ between paths). */
static bool same(float a, float b) {
    return memcmp(&a, &b, 4) == 0 || (isnan(a) && isnan(b));
}

static const ar_type formats[] = {AR_TYPE_F32,  AR_TYPE_F16,  AR_TYPE_BF16, AR_TYPE_Q4_0,
                                  AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0,
                                  AR_TYPE_Q2_K, AR_TYPE_Q3_K, AR_TYPE_Q4_K, AR_TYPE_Q5_K,
                                  AR_TYPE_Q6_K};

/* Makes `rows` weight rows of k values: quantized from random floats, or random bytes. */
static uint8_t *make_weights(ar_type t, int64_t k, int rows, bool hostile) {
    const ar_type_traits *tt = ar_type_get(t);
    const size_t rb = ar_row_size(t, k);
    uint8_t *w = malloc(rb * (size_t)rows);
    cr_assert(w);
    if (hostile) {
        for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = (uint8_t)rng_next();
        return w;
    }
    float *f = malloc(sizeof(float) * (size_t)k);
    for (int r = 0; r < rows; r++) {
        for (int64_t i = 0; i < k; i++) f[i] = rng_float() * (r % 3 == 0 ? 1e-3f : 1.0f);
        tt->from_float(f, w + (size_t)r * rb, k);
    }
    free(f);
    return w;
}

/* packed: W also carries its packed form (ar_matmul_repack), where this level has a kernel that
 * reads one */
static void check(ar_type t, int64_t k, int rows, int n, bool hostile, ar_pool *pool,
                  const char *level, bool packed) {
    const ar_type_traits *tt = ar_type_get(t);
    const ar_type vdt = tt->vec_dot_type;
    const size_t rb = ar_row_size(t, k), ab = ar_row_size(vdt, k);
    uint8_t *w = make_weights(t, k, rows, hostile);
    ar_tensor W = {.name = "w", .type = t, .ne = {k, rows, 1, 1}, .nb1 = rb, .data = w};
    void *copy = NULL;
    if (packed && ar_matmul_packed_bytes(&W)) {
        cr_assert_eq(posix_memalign(&copy, 64, ar_matmul_packed_bytes(&W)), 0);
        ar_matmul_repack(&W, copy);
        W.packed = copy;
    }
    float *x = malloc(sizeof(float) * (size_t)k * (size_t)n);
    for (int64_t i = 0; i < k * n; i++) x[i] = rng_float() * ((i / k) % 4 == 1 ? 100.f : 1.f);
    if (n > 2) memset(x + k, 0, sizeof(float) * (size_t)k); /* an all-zero column */
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)n);
    float *y0 = malloc(sizeof(float) * (size_t)rows * (size_t)n);
    uint8_t *xq = malloc(ab * (size_t)n);
    for (int c = 0; c < n; c++) ar_quantize_row(vdt, x + (size_t)c * k, xq + (size_t)c * ab, k);
    /* for batches that may take sgemm: |y - dot| <= tol with dot in double */
    double *dref = NULL, *tol = NULL;
    if (n > AR_BATCH_INVARIANT) {
        dref = malloc(sizeof(double) * (size_t)rows * (size_t)n);
        tol = malloc(sizeof(double) * (size_t)rows * (size_t)n);
        float *wf = malloc(sizeof(float) * (size_t)k);
        for (int r = 0; r < rows; r++) {
            tt->to_float(w + (size_t)r * rb, wf, k);
            for (int c = 0; c < n; c++) {
                double d = 0, m = 0;
                for (int64_t i = 0; i < k; i++) {
                    d += (double)wf[i] * x[(size_t)c * k + i];
                    m += fabs((double)wf[i] * x[(size_t)c * k + i]);
                }
                dref[(size_t)c * rows + r] = d;
                tol[(size_t)c * rows + r] = 1e-4 * m + 1e-30;
            }
        }
        free(wf);
    }
    ar_matmul_scratch *s;
    cr_assert_eq(ar_matmul_scratch_create(n, k, &s), AR_OK);
    /* above AR_BATCH_INVARIANT rows: once as prompt rows (sgemm allowed), once as a tree */
    for (int blas = 0; blas <= (dref != NULL); blas++)
    for (int add = 0; add <= 1; add++) {
        ar_matmul_scratch_allow_blas(s, blas);
        for (int i = 0; i < rows * n; i++) y0[i] = y[i] = add ? rng_float() : NAN;
        if (add)
            ar_matmul_add(s, pool, &W, x, n, y);
        else
            ar_matmul(s, pool, &W, x, n, y);
        for (int c = 0; c < n; c++)
            for (int r = 0; r < rows; r++) {
                float ref;
                tt->vec_dot(k, &ref, w + (size_t)r * rb, xq + (size_t)c * ab);
                if (add) ref = y0[(size_t)c * rows + r] + ref;
                const float got = y[(size_t)c * rows + r];
                if (blas && !same(got, ref)) {
                    const size_t i = (size_t)c * rows + r;
                    const double want = dref[i] + (add ? y0[i] : 0.0);
                    /* hostile: the sum or its terms (tol = 1e-4 sum of |terms|) beyond float range */
                    if (!(fabs(want) + tol[i] * 1e4 < 1e37)) continue;
                    cr_assert(fabs(got - want) <= tol[i] + (add ? 1e-6 * fabs(y0[i]) : 0.0),
                              "%s %s k=%lld n=%d (sgemm): y[%d][%d] = %g, double dot %g", level,
                              tt->name, (long long)k, n, c, r, got, want);
                    continue;
                }
                cr_assert(same(got, ref), "%s %s k=%lld n=%d%s%s%s: y[%d][%d] = %a, reference %a",
                          level, tt->name, (long long)k, n, hostile ? " hostile" : "",
                          add ? " (add)" : "", W.packed ? " (repacked)" : "", c, r, got, ref);
            }
    }
    ar_matmul_scratch_free(s);
    free(copy);
    free(dref);
    free(tol);
    free(xq);
    free(y0);
    free(y);
    free(x);
    free(w);
}

static void check_level(ar_simd_level level) {
    if (level > ar_cpu()->level) return;
    ar_kernels_select(level);
    ar_pool *pool;
    cr_assert_eq(ar_pool_create(2, NULL, &pool), AR_OK);
    static const int ns[] = {1, 2, 3, 4, 5, 8, 15, 16, 17, 31, 33, 48, 64, 65, 130};
    for (size_t f = 0; f < AR_ARRAY_LEN(formats); f++) {
        const ar_type t = formats[f];
        const int64_t bs = ar_type_get(t)->blck_size;
        /* lengths: one block, partial groups of 8 blocks, several groups */
        const int64_t ks[] = {bs == 1 ? 7 : bs, bs == 1 ? 33 : 3 * bs, bs == 1 ? 288 : 9 * bs,
                              bs == 1 ? 1000 : (bs == 32 ? 17 * bs : 2 * bs)};
        for (size_t ki = 0; ki < AR_ARRAY_LEN(ks); ki++)
            for (size_t ni = 0; ni < AR_ARRAY_LEN(ns); ni++) {
                const int rows = 5 + (int)(ni % 3) * 7;
                const char *lv = ar_simd_name(level);
                check(t, ks[ki], rows, ns[ni], false, ni % 2 ? pool : NULL, lv, false);
                if (ki == 2) check(t, ks[ki], rows, ns[ni], true, pool, lv, false);
                /* packed groups (16 rows: a whole group and a partial one) at every n, where
                 * this level has a packed kernel for the format */
                if (ar_packed_get(t)) {
                    check(t, ks[ki], rows + 16, ns[ni], false, ni % 2 ? pool : NULL, lv, true);
                    check(t, ks[ki], rows + 16, ns[ni], true, ni % 2 ? NULL : pool, lv, true);
                }
            }
    }
    ar_pool_free(pool);
}

Test(matmul, scalar_level, .timeout = 120) {
    check_level(AR_SIMD_SCALAR);
}
Test(matmul, avx2_level, .timeout = 120) {
    check_level(AR_SIMD_AVX2);
}
Test(matmul, avx512_level, .timeout = 120) {
    check_level(AR_SIMD_AVX512);
}
Test(matmul, avx512vnni_level, .timeout = 120) {
    check_level(AR_SIMD_AVX512VNNI);
}
Test(matmul, amx_level, .timeout = 120) {
    if (ar_cpu()->level < AR_SIMD_AMX) cr_skip_test("no AMX on this CPU");
    check_level(AR_SIMD_AMX);
}

/* The batched kernels exist where they should (a format without one silently falls back to one
 * dot product per output, which is correct but slow). */
Test(matmul, batched_kernels_present) {
    if (ar_cpu()->level < AR_SIMD_AVX2) return;
    static const int ns[] = {1, 2, 3, 4, 8, 16, 64};
    for (size_t f = 0; f < AR_ARRAY_LEN(formats); f++)
        for (size_t i = 0; i < AR_ARRAY_LEN(ns); i++) {
            const ar_gemm_kernel *g = ar_gemm_get(formats[f], ns[i], true);
            if (!g) {
                cr_assert(ns[i] == 1, "%s has no batched kernel for n = %d",
                          ar_type_get(formats[f])->name, ns[i]);
                continue;
            }
            /* matmul.c's buffers: one call's outputs, one chunk's columns */
            cr_assert(g->lanes >= 1 && g->max_rows >= 1 && g->max_groups >= 1);
            cr_assert(g->max_groups * g->lanes <= 64);
            cr_assert(g->max_rows * g->lanes * g->max_groups <= 256);
            cr_assert(g->width == g->lanes * g->rep || g->panel == AR_PANEL_ROWS || g->width == 1);
        }
    /* with VNNI, every format people download has a kernel over packed groups */
    static const ar_type packed[] = {AR_TYPE_Q4_0, AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1,
                                     AR_TYPE_Q8_0, AR_TYPE_Q4_K, AR_TYPE_Q5_K, AR_TYPE_Q6_K};
    for (size_t f = 0; f < AR_ARRAY_LEN(packed); f++) {
        const ar_gemm_kernel *p = ar_packed_get(packed[f]);
        if (ar_cpu()->level < AR_SIMD_AVX512VNNI) continue;
        cr_assert(p && p->rows16 && p->lanes == 16 && p->max_groups == 1,
                  "%s has no packed kernel", ar_type_get(packed[f])->name);
        cr_assert(ar_pack_group_bytes(packed[f], 4096) % 64 == 0);
    }
}

/* Rows meant to break a vectorised quantizer: ties (x * 127/amax landing on .5), zeros, one
 * large value, subnormals, a repeated max of both signs (Q8_K keeps the first), non-finite. */
static void fill_hostile_row(float *x, int64_t k, int kind) {
    for (int64_t i = 0; i < k; i++) {
        switch (kind) {
        case 0:
            x[i] = rng_float();
            break;
        case 1:
            x[i] = (float)((int64_t)(rng_next() % 255) - 127) * 0.5f;
            break; /* ties */
        case 2:
            x[i] = 0.0f;
            break;
        case 3:
            x[i] = i % 7 == 0 ? 1e30f : rng_float() * 1e-3f;
            break;
        case 4:
            x[i] = rng_float() * 1e-40f;
            break; /* subnormal */
        case 5:
            x[i] = (i % 2 ? -1.0f : 1.0f) * (float)(i % 3);
            break;
        case 6:
            x[i] = i == k / 2 ? NAN : rng_float();
            break;
        case 7:
            x[i] = i == 3 ? -INFINITY : rng_float();
            break;
        default:
            x[i] = -0.0f;
            break;
        }
    }
}

Test(matmul, fast_activation_rounding_is_exact) {
    static const ar_type vdts[] = {AR_TYPE_Q8_0, AR_TYPE_Q8_1, AR_TYPE_Q8_K};
    const int64_t k = 1024;
    float *x = malloc(sizeof(float) * k);
    uint8_t *a = malloc(2 * k), *b = malloc(2 * k);
    for (int level = AR_SIMD_SCALAR; level <= (int)ar_cpu()->level; level++) {
        ar_kernels_select((ar_simd_level)level);
        for (size_t v = 0; v < AR_ARRAY_LEN(vdts); v++)
            for (int kind = 0; kind < 9; kind++)
                for (int rep = 0; rep < 4; rep++) {
                    fill_hostile_row(x, k, kind);
                    const size_t bytes = ar_row_size(vdts[v], k);
                    memset(a, 0xAA, bytes);
                    memset(b, 0x55, bytes);
                    ar_quantize_row(vdts[v], x, a, k);
                    ar_quantize_row_fast(vdts[v], x, b, k);
                    cr_assert(!memcmp(a, b, bytes), "%s: %s row kind %d differs",
                              ar_simd_name((ar_simd_level)level), ar_type_get(vdts[v])->name, kind);
                }
    }
    free(x);
    free(a);
    free(b);
}

Test(matmul, fast_fp16_rows_are_exact) {
    const int64_t k = 4099; /* a tail */
    float *x = malloc(sizeof(float) * k);
    uint16_t *h = malloc(2 * k);
    for (int level = AR_SIMD_SCALAR; level <= (int)ar_cpu()->level; level++) {
        ar_kernels_select((ar_simd_level)level);
        for (int kind = 0; kind < 12; kind++) {
            for (int64_t i = 0; i < k; i++) {
                uint32_t bits = (uint32_t)rng_next();
                if (kind == 9) bits = (bits & 0x807fffffu) | 0x7f800000u; /* inf and NaN payloads */
                if (kind == 10) bits = (bits & 0x83ffffffu) | 0x38000000u; /* around half range */
                float f;
                memcpy(&f, &bits, 4);
                if (kind < 9) fill_hostile_row(&f, 1, kind), f = kind == 0 ? f * 70000.f : f;
                if (kind == 11) f = (float)(int)(rng_next() % 4096) + 0.5f; /* ties */
                x[i] = f;
            }
            ar_fp32_to_fp16_row(x, h, k);
            for (int64_t i = 0; i < k; i++)
                cr_assert_eq(h[i], ar_fp32_to_fp16(x[i]), "%s: fp16(%a) = %04x, scalar %04x",
                             ar_simd_name((ar_simd_level)level), x[i], h[i], ar_fp32_to_fp16(x[i]));
        }
    }
    free(x);
    free(h);
}

/* SwiGLU is evaluated over a whole batch's [n][n_ff] array at once: an element's value must not
 * depend on where it sits (vector body or tail), or batch invariance breaks. And the vectorised
 * RMSNorm and SwiGLU agree with their formulas. */
Test(matmul, elementwise_position_free_and_accurate) {
    const int64_t n = 1000;
    float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
    float *whole = malloc(sizeof(float) * n), *o = malloc(sizeof(float) * n);
    for (int level = AR_SIMD_SCALAR; level <= (int)ar_cpu()->level; level++) {
        ar_kernels_select((ar_simd_level)level);
        for (int64_t i = 0; i < n; i++) {
            g[i] = rng_float() * (i % 5 == 0 ? 40.f : 4.f);
            u[i] = rng_float();
        }
        g[7] = -200.f, g[8] = 200.f, g[9] = -0.0f;
        memcpy(whole, g, sizeof(float) * n);
        ar_swiglu_row(whole, u, n);
        for (int64_t i = 0; i < n; i++) {
            float one = g[i];
            ar_swiglu_row(&one, &u[i], 1);
            cr_assert(same(one, whole[i]), "%s: swiglu of element %lld alone %a, in a row %a",
                      ar_simd_name((ar_simd_level)level), (long long)i, one, whole[i]);
            const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
            cr_assert(fabs(one - want) <= 1e-6 * fabs(want) + 1e-30, "%s: swiglu(%g) = %g, want %g",
                      ar_simd_name((ar_simd_level)level), g[i], one, want);
        }
        for (int len = 1; len <= 70; len += 3) {
            ar_rmsnorm_row(o, g, u, len, 1e-5f);
            double ss = 0;
            for (int i = 0; i < len; i++) ss += (double)g[i] * g[i];
            const double scale = 1.0 / sqrt(ss / len + 1e-5);
            for (int i = 0; i < len; i++)
                cr_assert(fabs(o[i] - g[i] * scale * u[i]) <=
                              1e-5 * fabs(g[i] * scale * u[i]) + 1e-30,
                          "%s: rmsnorm[%d] of %d", ar_simd_name((ar_simd_level)level), i, len);
        }
    }
    free(g);
    free(u);
    free(whole);
    free(o);
}

/* The attention kernels against a double-precision softmax attention, for F32 and F16 caches,
 * head sizes with and without a vector tail, GQA groups, cells in any order. */
Test(matmul, attention_kernels_accurate) {
    static const int hds[] = {8, 16, 24, 64, 128};
    const int n_kv = 2, max_group = 4, cells_n = 77, cap = 100;
    for (int level = AR_SIMD_SCALAR; level <= (int)ar_cpu()->level; level++) {
        ar_kernels_select((ar_simd_level)level);
        for (size_t hi = 0; hi < AR_ARRAY_LEN(hds); hi++)
            for (int f16 = 0; f16 <= 1; f16++)
                for (int group = 1; group <= max_group; group *= 2) {
                    const int hd = hds[hi];
                    const size_t esz = f16 ? 2 : 4, cell_bytes = (size_t)n_kv * hd * esz;
                    uint8_t *k = malloc(cell_bytes * cap), *v = malloc(cell_bytes * cap);
                    float *kf = malloc(sizeof(float) * n_kv * hd * cap);
                    float *vf = malloc(sizeof(float) * n_kv * hd * cap);
                    for (int i = 0; i < n_kv * hd * cap; i++) {
                        kf[i] = rng_float(), vf[i] = rng_float();
                        if (f16) {
                            const uint16_t hk = ar_fp32_to_fp16(kf[i]), hv = ar_fp32_to_fp16(vf[i]);
                            memcpy(k + 2 * (size_t)i, &hk, 2), memcpy(v + 2 * (size_t)i, &hv, 2);
                            kf[i] = ar_fp16_to_fp32(hk), vf[i] = ar_fp16_to_fp32(hv);
                        } else {
                            memcpy(k + 4 * (size_t)i, &kf[i], 4),
                                memcpy(v + 4 * (size_t)i, &vf[i], 4);
                        }
                    }
                    int32_t cells[77];
                    for (int t = 0; t < cells_n; t++) cells[t] = (t * 37 + 11) % cap;
                    float q[4 * 128], out[4 * 128], scores[4 * 77];
                    for (int i = 0; i < group * hd; i++) q[i] = rng_float() * 3;
                    const int kvh = 1;
                    ar_attn_args a = {.q = q,
                                      .out = out,
                                      .k = k,
                                      .v = v,
                                      .cell_bytes = cell_bytes,
                                      .head_offset = (size_t)kvh * hd * esz,
                                      .cells = cells,
                                      .n = cells_n,
                                      .hd = hd,
                                      .group = group,
                                      .f16 = f16,
                                      .scale = 1.0f / sqrtf((float)hd),
                                      .scores = scores};
                    ar_attn_get()(&a);
                    for (int h = 0; h < group; h++) {
                        double s[77], mx = -1e300, sum = 0;
                        for (int t = 0; t < cells_n; t++) {
                            double d = 0;
                            for (int i = 0; i < hd; i++)
                                d += (double)q[h * hd + i] *
                                     kf[(size_t)cells[t] * n_kv * hd + kvh * hd + i];
                            s[t] = d / sqrt((double)hd);
                            mx = s[t] > mx ? s[t] : mx;
                        }
                        for (int t = 0; t < cells_n; t++) sum += (s[t] = exp(s[t] - mx));
                        for (int i = 0; i < hd; i++) {
                            double o = 0, m = 0;
                            for (int t = 0; t < cells_n; t++) {
                                const double x = vf[(size_t)cells[t] * n_kv * hd + kvh * hd + i];
                                o += s[t] / sum * x;
                                m += s[t] / sum * fabs(x);
                            }
                            cr_assert(fabs(out[h * hd + i] - o) <= 1e-5 * m + 1e-7,
                                      "%s hd %d %s group %d: out[%d][%d] = %g, want %g",
                                      ar_simd_name((ar_simd_level)level), hd, f16 ? "f16" : "f32",
                                      group, h, i, out[h * hd + i], o);
                        }
                    }
                    free(k), free(v), free(kf), free(vf);
                }
    }
}

/* ar_matmul_set (one dispatch for matrices sharing an input) gives each matrix exactly what
 * ar_matmul gives it: row counts that are not multiples of 16, 1 and 2 threads, repacked or not,
 * and a set of mixed formats (which falls back to one call each). */
Test(matmul, sets_equal_single_matmuls) {
    ar_pool *pool;
    cr_assert_eq(ar_pool_create(2, NULL, &pool), AR_OK);
    const int64_t k = 256;
    const int rows[3] = {37, 16, 5};
    const ar_type sets[][3] = {{AR_TYPE_Q4_0, AR_TYPE_Q4_0, AR_TYPE_Q4_0},
                               {AR_TYPE_Q8_0, AR_TYPE_Q8_0, AR_TYPE_Q8_0},
                               {AR_TYPE_Q4_K, AR_TYPE_Q4_K, AR_TYPE_Q4_K},
                               {AR_TYPE_F32, AR_TYPE_F32, AR_TYPE_F32},
                               {AR_TYPE_Q4_0, AR_TYPE_Q6_K, AR_TYPE_Q8_0}};
    static const int ns[] = {1, 3, 8, 64};
    for (size_t si = 0; si < AR_ARRAY_LEN(sets); si++)
        for (int packed = 0; packed <= 1; packed++)
            for (size_t ni = 0; ni < AR_ARRAY_LEN(ns); ni++) {
                const int n = ns[ni];
                uint8_t *w[3];
                void *copy[3] = {NULL, NULL, NULL};
                ar_tensor W[3];
                const ar_tensor *Wp[3];
                float *y[3], *ref[3];
                for (int i = 0; i < 3; i++) {
                    w[i] = make_weights(sets[si][i], k, rows[i], false);
                    W[i] = (ar_tensor){.name = "w", .type = sets[si][i], .ne = {k, rows[i], 1, 1},
                                       .nb1 = ar_row_size(sets[si][i], k), .data = w[i]};
                    if (packed && ar_matmul_packed_bytes(&W[i])) {
                        cr_assert_eq(posix_memalign(&copy[i], 64, ar_matmul_packed_bytes(&W[i])), 0);
                        ar_matmul_repack(&W[i], copy[i]);
                        W[i].packed = copy[i];
                    }
                    Wp[i] = &W[i];
                    y[i] = malloc(sizeof(float) * (size_t)rows[i] * (size_t)n);
                    ref[i] = malloc(sizeof(float) * (size_t)rows[i] * (size_t)n);
                }
                float *x = malloc(sizeof(float) * (size_t)k * (size_t)n);
                for (int64_t i = 0; i < k * n; i++) x[i] = rng_float();
                ar_matmul_scratch *s;
                cr_assert_eq(ar_matmul_scratch_create(n, k, &s), AR_OK);
                for (int i = 0; i < 3; i++) ar_matmul(s, NULL, &W[i], x, n, ref[i]);
                ar_matmul_set(s, pool, Wp, 3, x, n, y);
                for (int i = 0; i < 3; i++)
                    cr_assert(!memcmp(y[i], ref[i], sizeof(float) * (size_t)rows[i] * (size_t)n),
                              "set %zu matrix %d n=%d%s differs from ar_matmul", si, i, n,
                              packed ? " (repacked)" : "");
                ar_matmul_scratch_free(s);
                free(x);
                for (int i = 0; i < 3; i++) free(w[i]), free(copy[i]), free(y[i]), free(ref[i]);
            }
    ar_pool_free(pool);
}
