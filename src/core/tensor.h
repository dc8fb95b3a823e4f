/* tensor.h: tensor formats (one row per format in a type-traits table, as ggml does) and the
 * read-only weight tensor view used by the model. Block layouts are bit-exact with GGUF/ggml.
 *
 * Every format has a scalar reference implementation kept for tests (quants.c). Fast paths
 * (src/kernels/) are chosen at run time by CPU feature and must agree with the reference. */
#ifndef ARBOR_TENSOR_H
#define ARBOR_TENSOR_H

#include "util.h"

/* Numbering is ggml's, so a GGUF tensor's type field maps directly. */
typedef enum ar_type {
    AR_TYPE_F32 = 0,
    AR_TYPE_F16 = 1,
    AR_TYPE_Q4_0 = 2,
    AR_TYPE_Q4_1 = 3,
    AR_TYPE_Q5_0 = 6,
    AR_TYPE_Q5_1 = 7,
    AR_TYPE_Q8_0 = 8,
    AR_TYPE_Q8_1 = 9,
    AR_TYPE_Q2_K = 10,
    AR_TYPE_Q3_K = 11,
    AR_TYPE_Q4_K = 12,
    AR_TYPE_Q5_K = 13,
    AR_TYPE_Q6_K = 14,
    AR_TYPE_Q8_K = 15,
    AR_TYPE_BF16 = 30,
    AR_TYPE_COUNT = 40 /* table size; unknown values below it have a NULL row */
} ar_type;

#define AR_QK 32   /* block size of the _0/_1 formats */
#define AR_QK_K 256 /* block size of the K-quants */

/* Dequantize n values (n a multiple of blck_size). */
typedef void (*ar_to_float_fn)(const void *restrict src, float *restrict dst, int64_t n);
/* Quantize n floats (n a multiple of blck_size) with the reference rounding. */
typedef void (*ar_from_float_fn)(const float *restrict src, void *restrict dst, int64_t n);
/* s = dot(w, a) over n values: w in this format, a in this format's vec_dot_type. */
typedef void (*ar_vec_dot_fn)(int64_t n, float *restrict s, const void *restrict w,
                              const void *restrict a);

typedef struct ar_type_traits {
    const char *name;      /* "q4_0", as GGUF tools spell it */
    int64_t blck_size;     /* values per block */
    size_t type_size;      /* bytes per block */
    ar_type vec_dot_type;  /* activations are rounded to this format before a dot product */
    ar_to_float_fn to_float;
    ar_from_float_fn from_float;
    ar_vec_dot_fn vec_dot;       /* scalar reference */
    ar_vec_dot_fn vec_dot_fast;  /* best path for this CPU (set by ar_runtime_init); never NULL */
    const char *fast_path;       /* name of the path vec_dot_fast uses: "scalar", "avx2", ... */
} ar_type_traits;

/* The row for `t`, or NULL when the format is unknown or not supported. */
const ar_type_traits *ar_type_get(ar_type t);
/* Format by name ("q4_0", "Q4_0", "f32"...), or -1. */
int ar_type_from_name(const char *name);
/* Bytes of a row of n values; 0 if n is not a multiple of the block size or t is unknown. */
size_t ar_row_size(ar_type t, int64_t n);

/* A 2-D (or 1-D, ne[1] == 1) weight tensor: a view into the model file's mapping.
 * Row r of `ne[1]` rows holds ne[0] values (GGUF order: ne[0] is the fastest dimension). */
typedef struct ar_tensor {
    const char *name;
    ar_type type;
    int64_t ne[4];
    size_t nb1; /* bytes per row */
    const void *data;
    const void *packed; /* optional packed form for the 16-row kernels (ar_matmul_repack), or
                         * NULL: the kernels then read `data` in place */
} ar_tensor;

#endif
