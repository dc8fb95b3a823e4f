/* gguf.h: GGUF v2/v3 reader (memory-mapped, zero-copy, every field bounds-checked) and v2/v3
 * writer. Format: ggml docs/gguf.md. A model file is untrusted input: every offset, count,
 * length and shape is checked, and a bad file gives one error line naming the file, the byte
 * offset and what was wrong. */
#ifndef ARBOR_GGUF_H
#define ARBOR_GGUF_H

#include "tensor.h"
#include "util.h"

typedef enum ar_gguf_vtype {
    AR_GGUF_UINT8 = 0,
    AR_GGUF_INT8 = 1,
    AR_GGUF_UINT16 = 2,
    AR_GGUF_INT16 = 3,
    AR_GGUF_UINT32 = 4,
    AR_GGUF_INT32 = 5,
    AR_GGUF_FLOAT32 = 6,
    AR_GGUF_BOOL = 7,
    AR_GGUF_STRING = 8,
    AR_GGUF_ARRAY = 9,
    AR_GGUF_UINT64 = 10,
    AR_GGUF_INT64 = 11,
    AR_GGUF_FLOAT64 = 12,
    AR_GGUF_VTYPE_COUNT
} ar_gguf_vtype;

/* A string inside the mapping: not NUL-terminated. */
typedef struct ar_str {
    const char *ptr;
    uint64_t len;
} ar_str;

typedef struct ar_gguf_kv {
    char *key;          /* NUL-terminated copy (keys are short; embedded NULs are rejected) */
    ar_gguf_vtype type;
    union {
        uint64_t u;     /* UINT8..UINT64, BOOL (0/1) */
        int64_t i;      /* INT8..INT64 */
        double f;       /* FLOAT32, FLOAT64 */
        ar_str s;       /* STRING */
    } v;
    /* ARRAY: element type, count, and the elements. Numeric arrays point into the mapping
     * (little-endian, packed: read with memcpy, they may be unaligned); string arrays get a
     * table of ar_str built at load. Nested arrays are rejected. */
    ar_gguf_vtype arr_type;
    uint64_t arr_n;
    const void *arr_data;
    ar_str *arr_strs;
} ar_gguf_kv;

typedef struct ar_gguf_tensor {
    char *name;         /* NUL-terminated copy */
    uint32_t n_dims;    /* 1..4 */
    int64_t ne[4];      /* unused dimensions are 1 */
    ar_type type;
    uint64_t offset;    /* from the start of the data section, as stored */
    uint64_t nbytes;
    const void *data;   /* into the mapping */
} ar_gguf_tensor;

typedef struct ar_gguf {
    char *path;
    const uint8_t *map; /* the whole file, read-only */
    size_t size;
    bool owns_map;      /* false for ar_gguf_open_memory */
    uint32_t version;
    uint64_t n_kv;
    ar_gguf_kv *kv;
    uint64_t n_tensors;
    ar_gguf_tensor *tensors;
    uint64_t alignment;   /* general.alignment, default 32 */
    uint64_t data_offset; /* start of the tensor data section */
} ar_gguf;

/* Maps `path` read-only and parses it. On failure returns a status and sets the error line. */
ar_status ar_gguf_open(const char *path, ar_gguf **out);
/* Parses a buffer the caller keeps alive (fuzzing, tests); `name` is used in messages. */
ar_status ar_gguf_open_memory(const void *data, size_t size, const char *name, ar_gguf **out);
void ar_gguf_close(ar_gguf *g);

const ar_gguf_kv *ar_gguf_find(const ar_gguf *g, const char *key);
const ar_gguf_tensor *ar_gguf_find_tensor(const ar_gguf *g, const char *name);

/* Typed getters. Return AR_OK and set *out when the key is present with a compatible type
 * (any integer type that fits for the integer getters; FLOAT32/FLOAT64 for floats),
 * AR_ERR_INVALID_ARG (no message set) when absent, AR_ERR_FORMAT (message set) when the type or
 * value does not fit. */
ar_status ar_gguf_get_u32(const ar_gguf *g, const char *key, uint32_t *out);
ar_status ar_gguf_get_u64(const ar_gguf *g, const char *key, uint64_t *out);
ar_status ar_gguf_get_f32(const ar_gguf *g, const char *key, float *out);
ar_status ar_gguf_get_bool(const ar_gguf *g, const char *key, bool *out);
ar_status ar_gguf_get_str(const ar_gguf *g, const char *key, ar_str *out);
/* An array of the given element type (any array when elem == AR_GGUF_VTYPE_COUNT). */
ar_status ar_gguf_get_arr(const ar_gguf *g, const char *key, ar_gguf_vtype elem,
                          const ar_gguf_kv **out);
/* Element i of a numeric array as int64 / double (no bounds check beyond i < arr_n). */
int64_t ar_gguf_arr_i64(const ar_gguf_kv *kv, uint64_t i);
double ar_gguf_arr_f64(const ar_gguf_kv *kv, uint64_t i);
const char *ar_gguf_vtype_name(ar_gguf_vtype t);

/* ---- writer ---- */
typedef struct ar_gguf_writer ar_gguf_writer;

/* Fills `size` bytes of tensor `index`'s data at `dst` (for tensors added without data: lets
 * large models be written tensor by tensor without holding them in memory). */
typedef ar_status (*ar_gguf_fill_fn)(void *user, uint64_t index, void *dst, uint64_t size);

ar_gguf_writer *ar_gguf_writer_new(uint32_t version /* 2 or 3 */);
void ar_gguf_writer_free(ar_gguf_writer *w);
/* Key/value setters copy their arguments; a key set twice keeps the last value. */
ar_status ar_gguf_set_u32(ar_gguf_writer *w, const char *key, uint32_t v);
ar_status ar_gguf_set_i32(ar_gguf_writer *w, const char *key, int32_t v);
ar_status ar_gguf_set_u64(ar_gguf_writer *w, const char *key, uint64_t v);
ar_status ar_gguf_set_f32(ar_gguf_writer *w, const char *key, float v);
ar_status ar_gguf_set_bool(ar_gguf_writer *w, const char *key, bool v);
ar_status ar_gguf_set_str(ar_gguf_writer *w, const char *key, const char *v);
/* Numeric array: n elements of `elem` type packed little-endian at data. */
ar_status ar_gguf_set_arr(ar_gguf_writer *w, const char *key, ar_gguf_vtype elem, const void *data,
                          uint64_t n);
ar_status ar_gguf_set_arr_str(ar_gguf_writer *w, const char *key, const ar_str *strs, uint64_t n);
/* Copies key/value `kv` from a file being read (any type, arrays included). */
ar_status ar_gguf_copy_kv(ar_gguf_writer *w, const ar_gguf_kv *kv);
/* Adds a tensor. `data` (nbytes = row size * rows) is referenced, not copied, and must live
 * until ar_gguf_write; when NULL, ar_gguf_write calls `fill` for it. */
ar_status ar_gguf_add_tensor(ar_gguf_writer *w, const char *name, ar_type type, uint32_t n_dims,
                             const int64_t *ne, const void *data);
ar_status ar_gguf_write(ar_gguf_writer *w, const char *path, ar_gguf_fill_fn fill, void *user);

#endif
