/* util.h: what every part of the runtime shares: status codes, the per-thread error message,
 * overflow-checked arithmetic, half-precision conversions and aligned allocation. */
#ifndef ARBOR_UTIL_H
#define ARBOR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Status codes. The public header (include/arbor.h) has the same values (checked there by
 * _Static_assert in src/api/), so the runtime never includes the API above it. */
typedef enum ar_status {
    AR_OK = 0,
    AR_ERR_IO = -1,           /* cannot open / read / write / map a file */
    AR_ERR_FORMAT = -2,       /* malformed or truncated file contents */
    AR_ERR_UNSUPPORTED = -3,  /* well-formed but not supported (architecture, tensor type) */
    AR_ERR_INVALID_ARG = -4,  /* a caller's argument is out of range */
    AR_ERR_NOMEM = -5,        /* allocation failed or a size bound was exceeded */
    AR_ERR_CONTEXT_FULL = -6, /* the KV cache has no room for the batch */
    AR_ERR_INCOMPATIBLE = -7, /* drafter and verifier do not share a vocabulary */
    AR_ERR_CANCELLED = -8,    /* stopped by the caller */
    AR_ERR_INTERNAL = -9,     /* a bug: an invariant did not hold */
} ar_status;

/* Sets this thread's error message (printf-style, one line) and returns `status`, so a failing
 * function can `return ar_fail(AR_ERR_FORMAT, "%s: offset %zu: ...", ...)`. */
ar_status ar_fail(ar_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's last error message ("" when none). */
const char *ar_last_error(void);
void ar_clear_error(void);
const char *ar_status_name(ar_status s);

/* ---- overflow-checked arithmetic: return false on overflow ---- */
/* Output that writes what fits into buf[0, cap) and counts everything: the functions that
 * return "the full length (may exceed cap)" build their text through one. */
typedef struct ar_sink {
    char *buf;
    int64_t cap, n;
} ar_sink;
static inline void ar_sink_put(ar_sink *s, const char *p, size_t k) {
    if (s->n < s->cap) {
        size_t room = (size_t)(s->cap - s->n);
        memcpy(s->buf + s->n, p, k < room ? k : room);
    }
    s->n += (int64_t)k;
}

static inline bool ar_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool ar_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- IEEE half and bfloat16 (round to nearest even, as ggml) ---- */
static inline uint32_t ar_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float ar_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
float ar_fp16_to_fp32(uint16_t h);
uint16_t ar_fp32_to_fp16(float f);
static inline float ar_bf16_to_fp32(uint16_t h) { return ar_bits_f32((uint32_t)h << 16); }
static inline uint16_t ar_fp32_to_bf16(float f) {
    uint32_t u = ar_f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}
/* Table lookup for the hot paths (filled once by ar_runtime_init). */
extern float ar_fp16_table[1 << 16];
static inline float ar_fp16_lookup(uint16_t h) { return ar_fp16_table[h]; }

/* One-time process setup of tables and CPU feature detection; idempotent and thread-safe. */
void ar_runtime_init(void);

/* ---- memory ---- */
#define AR_ALIGN 64
void *ar_aligned_alloc(size_t size); /* zeroed, AR_ALIGN-aligned; NULL on failure */
void ar_aligned_free(void *p);

/* Monotonic wall clock in seconds. */
double ar_now(void);

#define AR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AR_MAX(a, b) ((a) > (b) ? (a) : (b))
#define AR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
