/* util.c: the per-thread error message, half-precision conversion, aligned allocation, clock. */
#include "util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Thread_local char error_line[1024];

ar_status ar_fail(ar_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_line, sizeof error_line, fmt, ap);
    va_end(ap);
    /* one line: a message never carries a newline from file contents */
    for (char *c = error_line; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    return status;
}

const char *ar_last_error(void) { return error_line; }
void ar_clear_error(void) { error_line[0] = 0; }

const char *ar_status_name(ar_status s) {
    switch (s) {
    case AR_OK: return "ok";
    case AR_ERR_IO: return "i/o error";
    case AR_ERR_FORMAT: return "bad format";
    case AR_ERR_UNSUPPORTED: return "unsupported";
    case AR_ERR_INVALID_ARG: return "invalid argument";
    case AR_ERR_NOMEM: return "out of memory";
    case AR_ERR_CONTEXT_FULL: return "context full";
    case AR_ERR_INCOMPATIBLE: return "incompatible";
    case AR_ERR_CANCELLED: return "cancelled";
    case AR_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* IEEE 754 binary16 <-> binary32, exact for every value, round to nearest even. */
float ar_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return ar_bits_f32(sign | 0x7f800000 | (mant << 13)); /* inf / nan */
    if (exp == 0) {
        if (mant == 0) return ar_bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float f = (float)mant * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return ar_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t ar_fp32_to_fp16(float f) {
    uint32_t x = ar_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return (uint16_t)(sign | 0x7e00);   /* nan */
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  /* overflow to inf */
    if (ax < 0x38800000) {                                    /* subnormal or zero in half */
        if (ax < 0x33000000) return (uint16_t)sign;           /* below half the smallest step */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias and round the 13 dropped bits to nearest even */
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float ar_fp16_table[1 << 16];

void ar_cpu_init(void); /* cpu.c: feature detection and kernel dispatch */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void runtime_init_once(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) ar_fp16_table[i] = ar_fp16_to_fp32((uint16_t)i);
    ar_cpu_init();
}
void ar_runtime_init(void) { pthread_once(&init_once, runtime_init_once); }

void *ar_aligned_alloc(size_t size) {
    void *p = NULL;
    if (size == 0) size = AR_ALIGN;
    if (posix_memalign(&p, AR_ALIGN, size) != 0) return NULL;
    memset(p, 0, size);
    return p;
}
void ar_aligned_free(void *p) { free(p); }

double ar_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
