/* kernels.c: run-time dispatch. ar_cpu_init (cpu.c) calls ar_kernels_select once with the best
 * instruction-set level the CPU (and the ARBOR_CPU cap) allows; each format's vec_dot_fast then
 * points at the fastest kernel of that level. Every kernel returns exactly the bits of the scalar
 * reference, so the choice changes speed, never results. */
#include "cpu.h"
#include "quants.h"

typedef struct {
    ar_type type;
    ar_vec_dot_fn fn;
} kernel_row;

static void install(const kernel_row *rows, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++) ar_type_set_fast(rows[i].type, rows[i].fn, path);
}

void ar_kernels_select(ar_simd_level level) {
    static const ar_type all[] = {AR_TYPE_F32,  AR_TYPE_F16,  AR_TYPE_BF16, AR_TYPE_Q4_0,
                                  AR_TYPE_Q4_1, AR_TYPE_Q5_0, AR_TYPE_Q5_1, AR_TYPE_Q8_0,
                                  AR_TYPE_Q8_1, AR_TYPE_Q2_K, AR_TYPE_Q3_K, AR_TYPE_Q4_K,
                                  AR_TYPE_Q5_K, AR_TYPE_Q6_K, AR_TYPE_Q8_K};
    for (size_t i = 0; i < AR_ARRAY_LEN(all); i++) ar_type_set_fast(all[i], NULL, NULL);
#if defined(__x86_64__) || defined(__i386__)
    if (level >= AR_SIMD_AVX2) {
        static const kernel_row avx2[] = {
            {AR_TYPE_F32, ar_vec_dot_f32_avx2},   {AR_TYPE_F16, ar_vec_dot_f16_avx2},
            {AR_TYPE_BF16, ar_vec_dot_bf16_avx2}, {AR_TYPE_Q4_0, ar_vec_dot_q4_0_avx2},
            {AR_TYPE_Q4_1, ar_vec_dot_q4_1_avx2}, {AR_TYPE_Q5_0, ar_vec_dot_q5_0_avx2},
            {AR_TYPE_Q5_1, ar_vec_dot_q5_1_avx2}, {AR_TYPE_Q8_0, ar_vec_dot_q8_0_avx2},
            {AR_TYPE_Q2_K, ar_vec_dot_q2_K_avx2}, {AR_TYPE_Q3_K, ar_vec_dot_q3_K_avx2},
            {AR_TYPE_Q4_K, ar_vec_dot_q4_K_avx2}, {AR_TYPE_Q5_K, ar_vec_dot_q5_K_avx2},
            {AR_TYPE_Q6_K, ar_vec_dot_q6_K_avx2},
        };
        install(avx2, AR_ARRAY_LEN(avx2), "avx2");
    }
    if (level >= AR_SIMD_AVX512) {
        static const kernel_row avx512[] = {
            {AR_TYPE_F32, ar_vec_dot_f32_avx512},
            {AR_TYPE_F16, ar_vec_dot_f16_avx512},
            {AR_TYPE_BF16, ar_vec_dot_bf16_avx512},
        };
        install(avx512, AR_ARRAY_LEN(avx512), "avx512");
    }
    if (level >= AR_SIMD_AVX512VNNI) {
        static const kernel_row vnni[] = {
            {AR_TYPE_Q4_0, ar_vec_dot_q4_0_avx512vnni}, {AR_TYPE_Q4_1, ar_vec_dot_q4_1_avx512vnni},
            {AR_TYPE_Q5_0, ar_vec_dot_q5_0_avx512vnni}, {AR_TYPE_Q5_1, ar_vec_dot_q5_1_avx512vnni},
            {AR_TYPE_Q8_0, ar_vec_dot_q8_0_avx512vnni}, {AR_TYPE_Q2_K, ar_vec_dot_q2_K_avx512vnni},
            {AR_TYPE_Q3_K, ar_vec_dot_q3_K_avx512vnni}, {AR_TYPE_Q4_K, ar_vec_dot_q4_K_avx512vnni},
            {AR_TYPE_Q5_K, ar_vec_dot_q5_K_avx512vnni}, {AR_TYPE_Q6_K, ar_vec_dot_q6_K_avx512vnni},
        };
        install(vnni, AR_ARRAY_LEN(vnni), "avx512vnni");
    }
#else
    (void)level;
#endif
}
