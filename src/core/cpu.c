/* cpu.c: run-time CPU feature detection (CPUID + XGETBV for OS-enabled register state). */
#include "cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static ar_cpu_features features;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
static void detect(ar_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1;
    bool avx = (c >> 28) & 1;
    f->fma = (c >> 12) & 1;
    f->f16c = (c >> 29) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm_ok = (xcr0 & 0x6) == 0x6;
    bool zmm_ok = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f->avx2 = avx && ymm_ok && ((b >> 5) & 1);
        f->avx512f = zmm_ok && ((b >> 16) & 1);
        f->avx512dq = zmm_ok && ((b >> 17) & 1);
        f->avx512bw = zmm_ok && ((b >> 30) & 1);
        f->avx512vl = zmm_ok && ((b >> 31) & 1);
        f->avx512vnni = zmm_ok && ((c >> 11) & 1);
        /* AMX: TILE (bit 24) and INT8 (bit 25) of EDX, XTILECFG and XTILEDATA in XCR0 */
        f->amx = ((d >> 24) & 1) && ((d >> 25) & 1) && (xcr0 & 0x60000) == 0x60000;
    }
#if defined(__linux__) && defined(SYS_arch_prctl)
    /* Linux hands out the 8 KB of tile state per process on request (ARCH_REQ_XCOMP_PERM for
     * XFEATURE_XTILEDATA); without it the first tile instruction faults */
    if (f->amx) f->amx = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    f->amx = false;
#endif
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        const unsigned fam = (a >> 8) & 0xf, mod = (a >> 4) & 0xf;
        f->family = fam == 0xf ? fam + ((a >> 20) & 0xff) : fam;
        f->model = fam == 0x6 || fam == 0xf ? mod | ((a >> 12) & 0xf0) : mod;
        f->stepping = a & 0xf;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f->avx512bf16 = zmm_ok && ((a >> 5) & 1);
    f->fma = f->fma && ymm_ok;
    unsigned brand[12];
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2],
                        &brand[4 * i + 3]);
        memcpy(f->brand, brand, 48);
        f->brand[48] = 0;
    }
}
#else
static void detect(ar_cpu_features *f) { (void)f; }
#endif

const char *ar_simd_name(ar_simd_level l) {
    switch (l) {
    case AR_SIMD_SCALAR: return "scalar";
    case AR_SIMD_AVX2: return "avx2";
    case AR_SIMD_AVX512: return "avx512";
    case AR_SIMD_AVX512VNNI: return "avx512vnni";
    case AR_SIMD_AMX: return "amx";
    }
    return "?";
}

void ar_cpu_init(void);
void ar_cpu_init(void) {
    ar_cpu_features *f = &features;
    detect(f);
    /* trim leading spaces of the brand string */
    char *s = f->brand;
    while (*s == ' ') s++;
    memmove(f->brand, s, strlen(s) + 1);
    ar_simd_level l = AR_SIMD_SCALAR;
    if (f->avx2 && f->fma && f->f16c) l = AR_SIMD_AVX2;
    if (l == AR_SIMD_AVX2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq)
        l = AR_SIMD_AVX512;
    if (l == AR_SIMD_AVX512 && f->avx512vnni) l = AR_SIMD_AVX512VNNI;
    if (l == AR_SIMD_AVX512VNNI && f->amx) l = AR_SIMD_AMX;
    const char *cap = getenv("ARBOR_CPU");
    if (cap) {
        ar_simd_level c = l;
        if (!strcmp(cap, "scalar")) c = AR_SIMD_SCALAR;
        else if (!strcmp(cap, "avx2")) c = AR_SIMD_AVX2;
        else if (!strcmp(cap, "avx512")) c = AR_SIMD_AVX512;
        else if (!strcmp(cap, "avx512vnni")) c = AR_SIMD_AVX512VNNI;
        if (c < l) l = c;
    }
    f->level = l;
    ar_kernels_select(l);
}

const ar_cpu_features *ar_cpu(void) { return &features; }
