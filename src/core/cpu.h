/* cpu.h: CPU features read at run time (CPUID/XGETBV), so one build runs on any x86-64 and uses
 * the best kernels present. ARBOR_CPU=scalar|avx2|avx512|avx512vnni in the environment caps the
 * level (for tests and benchmarks of the slower paths). */
#ifndef ARBOR_CPU_H
#define ARBOR_CPU_H

#include <stdbool.h>

typedef enum ar_simd_level {
    AR_SIMD_SCALAR = 0,
    AR_SIMD_AVX2 = 1,      /* AVX2 + FMA + F16C */
    AR_SIMD_AVX512 = 2,    /* AVX-512 F/BW/VL/DQ */
    AR_SIMD_AVX512VNNI = 3, /* + VNNI */
    AR_SIMD_AMX = 4         /* + AMX-TILE and AMX-INT8, with the OS's permission for tile data */
} ar_simd_level;

typedef struct ar_cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
    bool amx; /* AMX-TILE + AMX-INT8 enabled in XCR0, and tile data granted to this process */
    unsigned family, model, stepping;
    ar_simd_level level; /* the best usable level, after the ARBOR_CPU cap */
    char brand[64];
} ar_cpu_features;

const ar_cpu_features *ar_cpu(void);
const char *ar_simd_name(ar_simd_level l);
/* Called by ar_cpu_init once features are known: points each format's vec_dot_fast (and the
 * other dispatched kernels) at the best implementation for `level`. Defined in kernels.c. */
void ar_kernels_select(ar_simd_level level);

#endif
