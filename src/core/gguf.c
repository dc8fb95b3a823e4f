/* gguf.c: GGUF v2/v3 reader and writer (format: ggml docs/gguf.md).
 *
 * Reading: the file is mapped read-only and walked by a cursor that checks every length and
 * count against the bytes left before using it, so a hostile file can neither make us read
 * outside the mapping nor allocate more than a small multiple of its own size. Strings, arrays
 * and tensor data stay in the mapping (zero copy); only keys, tensor names and the tables of
 * string-array elements are copied. Every error names the file and the byte offset.
 *
 * Writing: key/values are encoded when they are set; ar_gguf_write streams the header and then
 * each tensor (from the caller's memory or a fill callback, one tensor at a time) into a
 * temporary file next to the target, and renames it into place only once all of it is on disk,
 * so a failed write never leaves a partial file at the target path.
 *
 * File layout (all little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv, the key/values
 * (string key, u32 type, value), the tensor infos (string name, u32 n_dims, u64 ne[n_dims],
 * u32 type, u64 offset), padding to general.alignment, then the tensor data, each tensor at an
 * aligned offset from the start of the data section. A string is a u64 length and the bytes. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME          65535 /* the spec's bound on key length; applied to tensor names too */
#define GGUF_MAX_DIMS          4
#define GGUF_HEADER_BYTES      24 /* magic, version, n_tensors, n_kv */
/* Smallest possible encodings: counts are bounded by (bytes left / these) before anything is
 * allocated. A key/value: key length, 1-byte key, type, 1-byte value. A tensor info: name
 * length, 1-byte name, n_dims, one dimension, type, offset. */
#define MIN_KV_BYTES          (8 + 1 + 4 + 1)
#define MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8)

static const char *const vtype_names[AR_GGUF_VTYPE_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};

const char *ar_gguf_vtype_name(ar_gguf_vtype t) {
    return (unsigned)t < AR_GGUF_VTYPE_COUNT ? vtype_names[t] : "unknown";
}

/* Bytes of one scalar of type t; 0 for STRING, ARRAY and unknown types. */
static size_t scalar_size(ar_gguf_vtype t) {
    switch (t) {
    case AR_GGUF_UINT8:
    case AR_GGUF_INT8:
    case AR_GGUF_BOOL:
        return 1;
    case AR_GGUF_UINT16:
    case AR_GGUF_INT16:
        return 2;
    case AR_GGUF_UINT32:
    case AR_GGUF_INT32:
    case AR_GGUF_FLOAT32:
        return 4;
    case AR_GGUF_UINT64:
    case AR_GGUF_INT64:
    case AR_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static bool is_unsigned(ar_gguf_vtype t) {
    return t == AR_GGUF_UINT8 || t == AR_GGUF_UINT16 || t == AR_GGUF_UINT32 || t == AR_GGUF_UINT64;
}
static bool is_signed(ar_gguf_vtype t) {
    return t == AR_GGUF_INT8 || t == AR_GGUF_INT16 || t == AR_GGUF_INT32 || t == AR_GGUF_INT64;
}

static uint64_t load_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A scalar decoded into the kv value union (p holds scalar_size(t) bytes). */
static void decode_scalar(ar_gguf_vtype t, const uint8_t *p, ar_gguf_kv *kv) {
    uint64_t raw = load_le(p, scalar_size(t));
    switch (t) {
    case AR_GGUF_INT8:
        kv->v.i = (int8_t)raw;
        break;
    case AR_GGUF_INT16:
        kv->v.i = (int16_t)raw;
        break;
    case AR_GGUF_INT32:
        kv->v.i = (int32_t)raw;
        break;
    case AR_GGUF_INT64:
        kv->v.i = (int64_t)raw;
        break;
    case AR_GGUF_FLOAT32:
        kv->v.f = ar_bits_f32((uint32_t)raw);
        break;
    case AR_GGUF_FLOAT64: {
        double d;
        memcpy(&d, &raw, 8);
        kv->v.f = d;
        break;
    }
    default:
        kv->v.u = raw;
        break; /* unsigned types, BOOL */
    }
}

static bool is_pow2(uint64_t x) {
    return x != 0 && (x & (x - 1)) == 0;
}

/* x rounded up to a multiple of the power of two a; false on overflow. */
static bool align_up(uint64_t x, uint64_t a, uint64_t *out) {
    uint64_t s;
    if (!ar_add_ok(x, a - 1, &s)) return false;
    *out = s & ~(a - 1);
    return true;
}

/* Copies at most 48 bytes of s into buf for an error message, escaping what is not printable
 * ASCII, so a message stays one short line whatever the file contains. */
static const char *printable(const char *s, size_t n, char buf[static 256]) {
    size_t o = 0;
    for (size_t i = 0; i < n && i < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
    }
    if (n > 48) o += (size_t)snprintf(buf + o, 4, "...");
    buf[o] = 0;
    return buf;
}

/* ======================================= reader ======================================= */

/* The library's view of an open file: the public struct plus lookup tables. */
typedef struct gguf_file {
    ar_gguf pub;                  /* first: ar_gguf * and gguf_file * convert both ways */
    const ar_gguf_kv **kv_by_key; /* sorted by key, for binary search */
    const ar_gguf_tensor **tensor_by_name;
    uint64_t *kv_pos;     /* file offset where key/value i starts (for getter messages) */
    uint64_t *tensor_pos; /* file offset where tensor info i starts */
} gguf_file;

static gguf_file *file_of(const ar_gguf *g) {
    return (gguf_file *)g;
}

/* Parse position in a buffer, plus what is being parsed for messages ("key 'x'"). */
typedef struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    const char *name;     /* the file name for messages */
    const char *ctx_kind; /* "key" / "tensor" or NULL */
    const char *ctx;
    size_t ctx_len;
} cursor;

static size_t left(const cursor *c) {
    return c->size - c->pos;
}

/* "<file>: offset <at>: [key 'k': ]<what>" */
__attribute__((format(printf, 4, 5))) static ar_status fail_at(const cursor *c, ar_status st,
                                                               uint64_t at, const char *fmt, ...) {
    char what[512], ctx[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->ctx_kind)
        return ar_fail(st, "%s: offset %" PRIu64 ": %s '%s': %s", c->name, at, c->ctx_kind,
                       printable(c->ctx, c->ctx_len, ctx), what);
    return ar_fail(st, "%s: offset %" PRIu64 ": %s", c->name, at, what);
}

static ar_status need(const cursor *c, uint64_t n, const char *what) {
    if (n > left(c))
        return fail_at(c, AR_ERR_FORMAT, c->pos,
                       "file truncated: %s needs %" PRIu64 " bytes, %zu left", what, n, left(c));
    return AR_OK;
}

static ar_status read_u32(cursor *c, const char *what, uint32_t *out) {
    ar_status st = need(c, 4, what);
    if (st) return st;
    *out = (uint32_t)load_le(c->base + c->pos, 4);
    c->pos += 4;
    return AR_OK;
}

static ar_status read_u64(cursor *c, const char *what, uint64_t *out) {
    ar_status st = need(c, 8, what);
    if (st) return st;
    *out = load_le(c->base + c->pos, 8);
    c->pos += 8;
    return AR_OK;
}

static ar_status read_str(cursor *c, const char *what, ar_str *out) {
    size_t at = c->pos;
    uint64_t len;
    ar_status st = read_u64(c, what, &len);
    if (st) return st;
    if (len > left(c))
        return fail_at(c, AR_ERR_FORMAT, at, "%s length %" PRIu64 " exceeds the %zu bytes left",
                       what, len, left(c));
    out->ptr = (const char *)c->base + c->pos;
    out->len = len;
    c->pos += len;
    return AR_OK;
}

/* A key or tensor name: non-empty, at most GGUF_MAX_NAME bytes, no NUL; copied. */
static ar_status read_name(cursor *c, const char *what, char **out) {
    size_t at = c->pos;
    ar_str s;
    ar_status st = read_str(c, what, &s);
    if (st) return st;
    if (s.len == 0) return fail_at(c, AR_ERR_FORMAT, at, "empty %s", what);
    if (s.len > GGUF_MAX_NAME)
        return fail_at(c, AR_ERR_FORMAT, at, "%s is %" PRIu64 " bytes long (limit %d)", what, s.len,
                       GGUF_MAX_NAME);
    if (memchr(s.ptr, 0, s.len)) {
        char buf[256];
        return fail_at(c, AR_ERR_FORMAT, at, "%s '%s' contains a NUL byte", what,
                       printable(s.ptr, s.len, buf));
    }
    char *copy = malloc(s.len + 1);
    if (!copy) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", c->name);
    memcpy(copy, s.ptr, s.len);
    copy[s.len] = 0;
    *out = copy;
    return AR_OK;
}

/* Bool bytes must be 0 or 1 (the spec: anything else is invalid). */
static ar_status check_bools(const cursor *c, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return fail_at(c, AR_ERR_FORMAT, (uint64_t)(p + i - c->base),
                           "bool value %u (must be 0 or 1)", p[i]);
    return AR_OK;
}

static ar_status read_array(cursor *c, ar_gguf_kv *kv) {
    size_t at = c->pos;
    uint32_t elem;
    uint64_t n;
    ar_status st = read_u32(c, "array element type", &elem);
    if (st) return st;
    if (elem == AR_GGUF_ARRAY)
        return fail_at(c, AR_ERR_FORMAT, at, "nested arrays are not supported");
    if (elem >= AR_GGUF_VTYPE_COUNT)
        return fail_at(c, AR_ERR_FORMAT, at, "unknown array element type %" PRIu32, elem);
    size_t count_at = c->pos;
    if ((st = read_u64(c, "array length", &n))) return st;
    kv->arr_type = (ar_gguf_vtype)elem;
    kv->arr_data = c->base + c->pos;
    if (elem == AR_GGUF_STRING) {
        if (n > left(c) / 8) /* each element has at least its 8-byte length */
            return fail_at(c, AR_ERR_FORMAT, count_at,
                           "array of %" PRIu64 " strings cannot fit in the %zu bytes left", n,
                           left(c));
        if (n > 0) {
            kv->arr_strs = malloc(n * sizeof *kv->arr_strs);
            if (!kv->arr_strs) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", c->name);
        }
        for (uint64_t i = 0; i < n; i++)
            if ((st = read_str(c, "array string", &kv->arr_strs[i]))) return st;
        kv->arr_n = n;
        return AR_OK;
    }
    size_t es = scalar_size((ar_gguf_vtype)elem);
    if (n > left(c) / es)
        return fail_at(c, AR_ERR_FORMAT, count_at,
                       "array of %" PRIu64 " %s values cannot fit in the %zu bytes left", n,
                       vtype_names[elem], left(c));
    if (elem == AR_GGUF_BOOL && (st = check_bools(c, c->base + c->pos, n))) return st;
    kv->arr_n = n;
    c->pos += n * es;
    return AR_OK;
}

static ar_status read_kv(cursor *c, ar_gguf_kv *kv) {
    ar_status st = read_name(c, "key", &kv->key);
    if (st) return st;
    c->ctx_kind = "key";
    c->ctx = kv->key;
    c->ctx_len = strlen(kv->key);
    size_t at = c->pos;
    uint32_t type;
    if ((st = read_u32(c, "value type", &type))) return st;
    if (type >= AR_GGUF_VTYPE_COUNT)
        return fail_at(c, AR_ERR_FORMAT, at, "unknown value type %" PRIu32, type);
    kv->type = (ar_gguf_vtype)type;
    if (type == AR_GGUF_ARRAY) return read_array(c, kv);
    if (type == AR_GGUF_STRING) return read_str(c, "string value", &kv->v.s);
    size_t n = scalar_size(kv->type);
    if ((st = need(c, n, vtype_names[type]))) return st;
    const uint8_t *p = c->base + c->pos;
    if (type == AR_GGUF_BOOL && (st = check_bools(c, p, 1))) return st;
    decode_scalar(kv->type, p, kv);
    c->pos += n;
    return AR_OK;
}

/* Grows *arr (of *cap elements of `size` bytes) to hold at least n + 1 elements. */
static bool grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return true;
    size_t new_cap = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, new_cap * size);
    if (!p) return false;
    memset((char *)p + *cap * size, 0, (new_cap - *cap) * size);
    *arr = p;
    *cap = new_cap;
    return true;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const ar_gguf_kv *const *)a)->key, (*(const ar_gguf_kv *const *)b)->key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const ar_gguf_tensor *const *)a)->name,
                  (*(const ar_gguf_tensor *const *)b)->name);
}
static int cmp_tensor_offset(const void *a, const void *b) {
    const ar_gguf_tensor *x = *(const ar_gguf_tensor *const *)a;
    const ar_gguf_tensor *y = *(const ar_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return x < y ? -1 : x > y;
}

static ar_status read_kvs(cursor *c, gguf_file *f) {
    ar_gguf *g = &f->pub;
    /* The arrays grow as key/values are parsed rather than being sized from the header's
     * count; g->n_kv counts the entries that exist so far, for ar_gguf_close on failure. */
    uint64_t n_kv = g->n_kv;
    size_t cap = 0, pos_cap = 0;
    g->n_kv = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        if (!grow((void **)&g->kv, &cap, i, sizeof *g->kv) ||
            !grow((void **)&f->kv_pos, &pos_cap, i, sizeof *f->kv_pos))
            return ar_fail(AR_ERR_NOMEM, "%s: out of memory", c->name);
        g->n_kv = i + 1;
        f->kv_pos[i] = c->pos;
        ar_status st = read_kv(c, &g->kv[i]);
        c->ctx_kind = NULL;
        if (st) return st;
    }
    if (g->n_kv == 0) return AR_OK;
    f->kv_by_key = malloc(g->n_kv * sizeof *f->kv_by_key);
    if (!f->kv_by_key) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", c->name);
    for (uint64_t i = 0; i < g->n_kv; i++) f->kv_by_key[i] = &g->kv[i];
    qsort(f->kv_by_key, g->n_kv, sizeof *f->kv_by_key, cmp_kv_key);
    for (uint64_t i = 1; i < g->n_kv; i++) {
        if (strcmp(f->kv_by_key[i - 1]->key, f->kv_by_key[i]->key) != 0) continue;
        size_t a = (size_t)(f->kv_by_key[i - 1] - g->kv), b = (size_t)(f->kv_by_key[i] - g->kv);
        char buf[256];
        const char *k = f->kv_by_key[i]->key;
        return fail_at(c, AR_ERR_FORMAT, f->kv_pos[AR_MAX(a, b)],
                       "duplicate key '%s' (first at offset %" PRIu64 ")",
                       printable(k, strlen(k), buf), f->kv_pos[AR_MIN(a, b)]);
    }
    return AR_OK;
}

/* general.alignment: any non-negative integer type, a nonzero power of two; default 32. */
static ar_status read_alignment(cursor *c, gguf_file *f) {
    ar_gguf *g = &f->pub;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const ar_gguf_kv *kv = ar_gguf_find(g, "general.alignment");
    if (!kv) return AR_OK;
    uint64_t at = f->kv_pos[kv - g->kv];
    if (!is_unsigned(kv->type) && !is_signed(kv->type))
        return fail_at(c, AR_ERR_FORMAT, at, "general.alignment has type %s, expected uint32",
                       vtype_names[kv->type]);
    if (is_signed(kv->type) && kv->v.i <= 0)
        return fail_at(c, AR_ERR_FORMAT, at, "general.alignment %" PRId64 " is not positive",
                       kv->v.i);
    uint64_t a = kv->v.u; /* same bits as a positive v.i */
    if (!is_pow2(a))
        return fail_at(c, AR_ERR_FORMAT, at, "general.alignment %" PRIu64 " is not a power of two",
                       a);
    g->alignment = a;
    return AR_OK;
}

static ar_status read_tensor_info(cursor *c, ar_gguf *g, ar_gguf_tensor *t) {
    ar_status st = read_name(c, "tensor name", &t->name);
    if (st) return st;
    c->ctx_kind = "tensor";
    c->ctx = t->name;
    c->ctx_len = strlen(t->name);
    size_t at = c->pos;
    if ((st = read_u32(c, "n_dims", &t->n_dims))) return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail_at(c, AR_ERR_FORMAT, at, "n_dims %" PRIu32 " (must be 1..%d)", t->n_dims,
                       GGUF_MAX_DIMS);
    uint64_t elements = 1; /* product of the nonzero dimensions: must stay <= INT64_MAX */
    bool empty = false;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = c->pos;
        uint64_t ne;
        if ((st = read_u64(c, "dimension", &ne))) return st;
        if (ne > INT64_MAX)
            return fail_at(c, AR_ERR_FORMAT, at, "dimension %" PRIu32 " is negative (%" PRId64 ")",
                           d, (int64_t)ne);
        t->ne[d] = (int64_t)ne;
        if (ne == 0)
            empty = true;
        else if (!ar_mul_ok(elements, ne, &elements) || elements > INT64_MAX)
            return fail_at(
                c, AR_ERR_FORMAT, at,
                "shape has more than 2^63-1 elements (dimension %" PRIu32 " = %" PRIu64 ")", d, ne);
    }
    at = c->pos;
    uint32_t type;
    if ((st = read_u32(c, "tensor type", &type))) return st;
    const ar_type_traits *tr = type < AR_TYPE_COUNT ? ar_type_get((ar_type)type) : NULL;
    if (!tr)
        return fail_at(c, AR_ERR_UNSUPPORTED, at,
                       "tensor type %" PRIu32 " is not a supported format", type);
    t->type = (ar_type)type;
    if (t->ne[0] % tr->blck_size != 0)
        return fail_at(c, AR_ERR_FORMAT, at,
                       "ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                       t->ne[0], tr->name, tr->blck_size);
    if (empty) elements = 0;
    if (!ar_mul_ok(elements / (uint64_t)tr->blck_size, tr->type_size, &t->nbytes))
        return fail_at(c, AR_ERR_FORMAT, at, "tensor byte size overflows");
    at = c->pos;
    if ((st = read_u64(c, "tensor data offset", &t->offset))) return st;
    if (t->offset % g->alignment != 0)
        return fail_at(c, AR_ERR_FORMAT, at,
                       "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                       t->offset, g->alignment);
    return AR_OK;
}

/* Places every tensor in the data section: inside the file, no two overlapping. */
static ar_status place_tensors(cursor *c, gguf_file *f) {
    ar_gguf *g = &f->pub;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        ar_gguf_tensor *t = &g->tensors[i];
        c->ctx_kind = "tensor";
        c->ctx = t->name;
        c->ctx_len = strlen(t->name);
        uint64_t start, end;
        if (!ar_add_ok(g->data_offset, t->offset, &start) || !ar_add_ok(start, t->nbytes, &end) ||
            end > g->size)
            return fail_at(c, AR_ERR_FORMAT, f->tensor_pos[i],
                           "data (offset %" PRIu64 " + %" PRIu64 " bytes from the data section at "
                           "%" PRIu64 ") extends past the end of the file (%zu bytes)",
                           t->offset, t->nbytes, g->data_offset, g->size);
        t->data = g->map + start;
    }
    c->ctx_kind = NULL;
    if (g->n_tensors == 0) return AR_OK;

    const ar_gguf_tensor **by = malloc(g->n_tensors * sizeof *by);
    if (!by) return ar_fail(AR_ERR_NOMEM, "%s: out of memory", c->name);
    for (uint64_t i = 0; i < g->n_tensors; i++) by[i] = &g->tensors[i];
    qsort(by, g->n_tensors, sizeof *by, cmp_tensor_offset);
    const ar_gguf_tensor *reach = NULL; /* the tensor whose data ends furthest so far */
    ar_status st = AR_OK;
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) {
        const ar_gguf_tensor *t = by[i];
        if (t->nbytes == 0) continue;
        if (reach && t->offset < reach->offset + reach->nbytes) {
            char a[256], b[256];
            st = fail_at(c, AR_ERR_FORMAT, f->tensor_pos[t - g->tensors],
                         "data of tensor '%s' [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' "
                         "[%" PRIu64 ", %" PRIu64 ")",
                         printable(t->name, strlen(t->name), a), t->offset, t->offset + t->nbytes,
                         printable(reach->name, strlen(reach->name), b), reach->offset,
                         reach->offset + reach->nbytes);
        }
        if (!reach || t->offset + t->nbytes > reach->offset + reach->nbytes) reach = t;
    }
    free(by);
    return st;
}

static ar_status read_tensor_infos(cursor *c, gguf_file *f) {
    ar_gguf *g = &f->pub;
    if (g->n_tensors > left(c) / MIN_TENSOR_INFO_BYTES)
        return fail_at(c, AR_ERR_FORMAT, 8,
                       "n_tensors %" PRIu64 " cannot fit in the %zu bytes left after the "
                       "key/values (a tensor info takes at least %d)",
                       g->n_tensors, left(c), MIN_TENSOR_INFO_BYTES);
    if (g->n_tensors > 0) {
        g->tensors = calloc(g->n_tensors, sizeof *g->tensors);
        f->tensor_pos = calloc(g->n_tensors, sizeof *f->tensor_pos);
        f->tensor_by_name = calloc(g->n_tensors, sizeof *f->tensor_by_name);
        if (!g->tensors || !f->tensor_pos || !f->tensor_by_name)
            return ar_fail(AR_ERR_NOMEM, "%s: out of memory", c->name);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        f->tensor_pos[i] = c->pos;
        ar_status st = read_tensor_info(c, g, &g->tensors[i]);
        c->ctx_kind = NULL;
        if (st) return st;
        f->tensor_by_name[i] = &g->tensors[i];
    }
    if (g->n_tensors == 0) return AR_OK;
    qsort(f->tensor_by_name, g->n_tensors, sizeof *f->tensor_by_name, cmp_tensor_name);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        if (strcmp(f->tensor_by_name[i - 1]->name, f->tensor_by_name[i]->name) != 0) continue;
        size_t a = (size_t)(f->tensor_by_name[i - 1] - g->tensors);
        size_t b = (size_t)(f->tensor_by_name[i] - g->tensors);
        char buf[256];
        const char *n = f->tensor_by_name[i]->name;
        return fail_at(c, AR_ERR_FORMAT, f->tensor_pos[AR_MAX(a, b)],
                       "duplicate tensor name '%s' (first at offset %" PRIu64 ")",
                       printable(n, strlen(n), buf), f->tensor_pos[AR_MIN(a, b)]);
    }
    return AR_OK;
}

static ar_status read_header(cursor *c, ar_gguf *g) {
    if (c->size < 4 || memcmp(c->base, "GGUF", 4) != 0) {
        char buf[256];
        return fail_at(c, AR_ERR_FORMAT, 0, "bad magic '%s' (not a GGUF file)",
                       printable((const char *)c->base, AR_MIN(c->size, 4), buf));
    }
    c->pos = 4;
    ar_status st = read_u32(c, "version", &g->version);
    if (st) return st;
    if (g->version != 2 && g->version != 3) {
        uint32_t swapped = __builtin_bswap32(g->version);
        if (swapped >= 1 && swapped <= 3)
            return fail_at(c, AR_ERR_UNSUPPORTED, 4,
                           "big-endian GGUF (version %" PRIu32 " byte-swapped) is not supported",
                           swapped);
        return fail_at(c, AR_ERR_UNSUPPORTED, 4,
                       "GGUF version %" PRIu32 " is not supported (only versions 2 and 3)",
                       g->version);
    }
    if ((st = read_u64(c, "n_tensors", &g->n_tensors))) return st;
    if ((st = read_u64(c, "n_kv", &g->n_kv))) return st;
    /* Bound both counts by the bytes left before anything is sized from them. */
    if (g->n_kv > left(c) / MIN_KV_BYTES)
        return fail_at(c, AR_ERR_FORMAT, 16,
                       "n_kv %" PRIu64 " cannot fit in the %zu bytes left (a key/value takes at "
                       "least %d)",
                       g->n_kv, left(c), MIN_KV_BYTES);
    if (g->n_tensors > left(c) / MIN_TENSOR_INFO_BYTES)
        return fail_at(c, AR_ERR_FORMAT, 8,
                       "n_tensors %" PRIu64 " cannot fit in the %zu bytes left (a tensor info "
                       "takes at least %d)",
                       g->n_tensors, left(c), MIN_TENSOR_INFO_BYTES);
    return AR_OK;
}

static ar_status parse(const uint8_t *map, size_t size, const char *name, gguf_file *f) {
    ar_gguf *g = &f->pub;
    g->map = map;
    g->size = size;
    cursor c = {.base = map, .size = size, .name = name};
    ar_status st = read_header(&c, g);
    if (!st) st = read_kvs(&c, f);
    if (!st) st = read_alignment(&c, f);
    if (!st) st = read_tensor_infos(&c, f);
    if (st) return st;
    if (!align_up(c.pos, g->alignment, &g->data_offset))
        return fail_at(&c, AR_ERR_FORMAT, c.pos, "data section offset overflows");
    return place_tensors(&c, f);
}

static ar_status open_buffer(const uint8_t *map, size_t size, const char *name, bool owns,
                             ar_gguf **out) {
    gguf_file *f = calloc(1, sizeof *f);
    char *path = strdup(name);
    if (!f || !path) {
        free(f);
        free(path);
        return ar_fail(AR_ERR_NOMEM, "%s: out of memory", name);
    }
    f->pub.path = path;
    ar_status st = parse(map, size, name, f);
    if (st) {
        ar_gguf_close(&f->pub); /* owns_map still false: the caller unmaps */
        return st;
    }
    f->pub.owns_map = owns;
    *out = &f->pub;
    return AR_OK;
}

ar_status ar_gguf_open_memory(const void *data, size_t size, const char *name, ar_gguf **out) {
    if (!out) return ar_fail(AR_ERR_INVALID_ARG, "ar_gguf_open_memory: out is NULL");
    *out = NULL;
    if (!name) name = "(memory)";
    if (!data && size) return ar_fail(AR_ERR_INVALID_ARG, "%s: data is NULL", name);
    if (size == 0) return ar_fail(AR_ERR_FORMAT, "%s: offset 0: empty (not a GGUF file)", name);
    return open_buffer(data, size, name, false, out);
}

ar_status ar_gguf_open(const char *path, ar_gguf **out) {
    if (!out) return ar_fail(AR_ERR_INVALID_ARG, "ar_gguf_open: out is NULL");
    *out = NULL;
    if (!path) return ar_fail(AR_ERR_INVALID_ARG, "ar_gguf_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ar_fail(AR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ar_fail(AR_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return ar_fail(AR_ERR_IO, "%s: is a directory, not a GGUF file", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ar_fail(AR_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return ar_fail(AR_ERR_FORMAT, "%s: offset 0: empty file (not a GGUF file)", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return ar_fail(AR_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) return ar_fail(AR_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    ar_status st = open_buffer(map, size, path, true, out);
    if (st) munmap(map, size);
    return st;
}

void ar_gguf_close(ar_gguf *g) {
    if (!g) return;
    gguf_file *f = file_of(g);
    for (uint64_t i = 0; i < g->n_kv && g->kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].arr_strs);
    }
    for (uint64_t i = 0; i < g->n_tensors && g->tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(f->kv_by_key);
    free(f->tensor_by_name);
    free(f->kv_pos);
    free(f->tensor_pos);
    if (g->owns_map) munmap((void *)g->map, g->size);
    free(g->path);
    free(f);
}

/* ---- lookups and typed getters ---- */

static int cmp_key_kv(const void *key, const void *elem) {
    return strcmp(key, (*(const ar_gguf_kv *const *)elem)->key);
}
static int cmp_name_tensor(const void *name, const void *elem) {
    return strcmp(name, (*(const ar_gguf_tensor *const *)elem)->name);
}

const ar_gguf_kv *ar_gguf_find(const ar_gguf *g, const char *key) {
    if (!g || !key || g->n_kv == 0) return NULL;
    const gguf_file *f = file_of(g);
    const ar_gguf_kv *const *p =
        bsearch(key, f->kv_by_key, g->n_kv, sizeof *f->kv_by_key, cmp_key_kv);
    return p ? *p : NULL;
}

const ar_gguf_tensor *ar_gguf_find_tensor(const ar_gguf *g, const char *name) {
    if (!g || !name || g->n_tensors == 0) return NULL;
    const gguf_file *f = file_of(g);
    const ar_gguf_tensor *const *p =
        bsearch(name, f->tensor_by_name, g->n_tensors, sizeof *f->tensor_by_name, cmp_name_tensor);
    return p ? *p : NULL;
}

/* "<file>: offset N: key 'k': <what>" for a value that does not fit what the caller asked. */
__attribute__((format(printf, 3, 4))) static ar_status
kv_mismatch(const ar_gguf *g, const ar_gguf_kv *kv, const char *fmt, ...) {
    char what[256], buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ar_fail(AR_ERR_FORMAT, "%s: offset %" PRIu64 ": key '%s': %s", g->path,
                   file_of(g)->kv_pos[kv - g->kv], printable(kv->key, strlen(kv->key), buf), what);
}

static const char *kv_type_desc(const ar_gguf_kv *kv, char buf[static 32]) {
    if (kv->type != AR_GGUF_ARRAY) return ar_gguf_vtype_name(kv->type);
    snprintf(buf, 32, "array of %s", ar_gguf_vtype_name(kv->arr_type));
    return buf;
}

static ar_status get_uint(const ar_gguf *g, const char *key, uint64_t max, const char *want,
                          uint64_t *out) {
    const ar_gguf_kv *kv = ar_gguf_find(g, key);
    if (!kv) return AR_ERR_INVALID_ARG;
    uint64_t v;
    char buf[32];
    if (is_unsigned(kv->type))
        v = kv->v.u;
    else if (is_signed(kv->type)) {
        if (kv->v.i < 0)
            return kv_mismatch(g, kv, "value %" PRId64 " is negative, expected %s", kv->v.i, want);
        v = (uint64_t)kv->v.i;
    } else
        return kv_mismatch(g, kv, "value is %s, expected %s", kv_type_desc(kv, buf), want);
    if (v > max) return kv_mismatch(g, kv, "value %" PRIu64 " does not fit in %s", v, want);
    *out = v;
    return AR_OK;
}

ar_status ar_gguf_get_u32(const ar_gguf *g, const char *key, uint32_t *out) {
    uint64_t v;
    ar_status st = get_uint(g, key, UINT32_MAX, "uint32", &v);
    if (!st) *out = (uint32_t)v;
    return st;
}

ar_status ar_gguf_get_u64(const ar_gguf *g, const char *key, uint64_t *out) {
    return get_uint(g, key, UINT64_MAX, "uint64", out);
}

ar_status ar_gguf_get_f32(const ar_gguf *g, const char *key, float *out) {
    const ar_gguf_kv *kv = ar_gguf_find(g, key);
    if (!kv) return AR_ERR_INVALID_ARG;
    char buf[32];
    if (kv->type != AR_GGUF_FLOAT32 && kv->type != AR_GGUF_FLOAT64)
        return kv_mismatch(g, kv, "value is %s, expected a float", kv_type_desc(kv, buf));
    if (isfinite(kv->v.f) && fabs(kv->v.f) > FLT_MAX)
        return kv_mismatch(g, kv, "value %g does not fit in float32", kv->v.f);
    *out = (float)kv->v.f;
    return AR_OK;
}

ar_status ar_gguf_get_bool(const ar_gguf *g, const char *key, bool *out) {
    const ar_gguf_kv *kv = ar_gguf_find(g, key);
    if (!kv) return AR_ERR_INVALID_ARG;
    char buf[32];
    if (kv->type != AR_GGUF_BOOL)
        return kv_mismatch(g, kv, "value is %s, expected bool", kv_type_desc(kv, buf));
    *out = kv->v.u != 0;
    return AR_OK;
}

ar_status ar_gguf_get_str(const ar_gguf *g, const char *key, ar_str *out) {
    const ar_gguf_kv *kv = ar_gguf_find(g, key);
    if (!kv) return AR_ERR_INVALID_ARG;
    char buf[32];
    if (kv->type != AR_GGUF_STRING)
        return kv_mismatch(g, kv, "value is %s, expected string", kv_type_desc(kv, buf));
    *out = kv->v.s;
    return AR_OK;
}

ar_status ar_gguf_get_arr(const ar_gguf *g, const char *key, ar_gguf_vtype elem,
                          const ar_gguf_kv **out) {
    const ar_gguf_kv *kv = ar_gguf_find(g, key);
    if (!kv) return AR_ERR_INVALID_ARG;
    char buf[32];
    if (kv->type != AR_GGUF_ARRAY || (elem != AR_GGUF_VTYPE_COUNT && kv->arr_type != elem)) {
        if (elem == AR_GGUF_VTYPE_COUNT)
            return kv_mismatch(g, kv, "value is %s, expected an array", kv_type_desc(kv, buf));
        return kv_mismatch(g, kv, "value is %s, expected array of %s", kv_type_desc(kv, buf),
                           ar_gguf_vtype_name(elem));
    }
    *out = kv;
    return AR_OK;
}

/* Element i of a numeric array, decoded into a kv value union. */
static bool arr_elem(const ar_gguf_kv *kv, uint64_t i, ar_gguf_kv *v) {
    if (!kv || kv->type != AR_GGUF_ARRAY || i >= kv->arr_n) return false;
    size_t es = scalar_size(kv->arr_type);
    if (es == 0) return false;
    v->type = kv->arr_type;
    decode_scalar(kv->arr_type, (const uint8_t *)kv->arr_data + i * es, v);
    return true;
}

int64_t ar_gguf_arr_i64(const ar_gguf_kv *kv, uint64_t i) {
    ar_gguf_kv v;
    if (!arr_elem(kv, i, &v)) return 0;
    if (is_signed(v.type)) return v.v.i;
    if (v.type == AR_GGUF_FLOAT32 || v.type == AR_GGUF_FLOAT64) {
        if (isnan(v.v.f)) return 0;
        if (v.v.f >= 0x1p63) return INT64_MAX;
        if (v.v.f < -0x1p63) return INT64_MIN;
        return (int64_t)v.v.f;
    }
    return v.v.u > INT64_MAX ? INT64_MAX : (int64_t)v.v.u;
}

double ar_gguf_arr_f64(const ar_gguf_kv *kv, uint64_t i) {
    ar_gguf_kv v;
    if (!arr_elem(kv, i, &v)) return 0;
    if (is_signed(v.type)) return (double)v.v.i;
    if (v.type == AR_GGUF_FLOAT32 || v.type == AR_GGUF_FLOAT64) return v.v.f;
    return (double)v.v.u;
}

/* ======================================= writer ======================================= */

/* A growable byte buffer; an allocation failure is remembered and reported once. */
typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void wb_le(wbuf *b, uint64_t v, size_t n) {
    uint8_t bytes[8];
    for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)(v >> (8 * i));
    wb_put(b, bytes, n);
}

static void wb_str(wbuf *b, const char *s, uint64_t n) {
    wb_le(b, n, 8);
    wb_put(b, s, n);
}

typedef struct wkv {
    char *key;
    ar_gguf_vtype type;
    wbuf val; /* the encoded value (the bytes after the type field) */
} wkv;

typedef struct wtensor {
    char *name;
    ar_type type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* in the data section, assigned by ar_gguf_write */
    const void *data;
} wtensor;

struct ar_gguf_writer {
    uint32_t version;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t alignment;
};

ar_gguf_writer *ar_gguf_writer_new(uint32_t version) {
    if (version != 2 && version != 3) {
        ar_fail(AR_ERR_INVALID_ARG, "gguf writer: version %" PRIu32 " (only 2 and 3 are written)",
                version);
        return NULL;
    }
    ar_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        ar_fail(AR_ERR_NOMEM, "gguf writer: out of memory");
        return NULL;
    }
    w->version = version;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void ar_gguf_writer_free(ar_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kv);
    free(w->tensors);
    free(w);
}

static ar_status check_name(const char *what, const char *name) {
    if (!name || !*name) return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: empty %s", what);
    if (strlen(name) > GGUF_MAX_NAME)
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: %s longer than %d bytes", what,
                       GGUF_MAX_NAME);
    return AR_OK;
}

/* Takes ownership of val (freed on failure too). */
static ar_status put_kv(ar_gguf_writer *w, const char *key, ar_gguf_vtype type, wbuf *val) {
    ar_status st =
        !w ? ar_fail(AR_ERR_INVALID_ARG, "gguf writer: NULL writer") : check_name("key", key);
    if (!st && val->oom) st = ar_fail(AR_ERR_NOMEM, "gguf writer: out of memory for '%s'", key);
    uint64_t align = 0;
    if (!st && strcmp(key, "general.alignment") == 0) {
        /* uint32, as the spec says: llama.cpp refuses any other type */
        if (type == AR_GGUF_UINT32) align = load_le(val->p, 4);
        if (!is_pow2(align))
            st = ar_fail(AR_ERR_INVALID_ARG,
                         "gguf writer: general.alignment must be a uint32 power of two");
    }
    if (st) {
        free(val->p);
        return st;
    }
    size_t i = 0;
    while (i < w->n_kv && strcmp(w->kv[i].key, key) != 0) i++;
    if (i == w->n_kv) {
        char *copy = strdup(key);
        if (!copy || !grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) {
            free(copy);
            free(val->p);
            return ar_fail(AR_ERR_NOMEM, "gguf writer: out of memory for '%s'", key);
        }
        w->kv[w->n_kv++].key = copy;
    } else {
        free(w->kv[i].val.p);
    }
    w->kv[i].type = type;
    w->kv[i].val = *val;
    if (align) w->alignment = align;
    return AR_OK;
}

static ar_status put_scalar(ar_gguf_writer *w, const char *key, ar_gguf_vtype type, uint64_t bits) {
    wbuf val = {0};
    wb_le(&val, bits, scalar_size(type));
    return put_kv(w, key, type, &val);
}

ar_status ar_gguf_set_u32(ar_gguf_writer *w, const char *key, uint32_t v) {
    return put_scalar(w, key, AR_GGUF_UINT32, v);
}
ar_status ar_gguf_set_i32(ar_gguf_writer *w, const char *key, int32_t v) {
    return put_scalar(w, key, AR_GGUF_INT32, (uint32_t)v);
}
ar_status ar_gguf_set_u64(ar_gguf_writer *w, const char *key, uint64_t v) {
    return put_scalar(w, key, AR_GGUF_UINT64, v);
}
ar_status ar_gguf_set_f32(ar_gguf_writer *w, const char *key, float v) {
    return put_scalar(w, key, AR_GGUF_FLOAT32, ar_f32_bits(v));
}
ar_status ar_gguf_set_bool(ar_gguf_writer *w, const char *key, bool v) {
    return put_scalar(w, key, AR_GGUF_BOOL, v ? 1 : 0);
}

ar_status ar_gguf_set_str(ar_gguf_writer *w, const char *key, const char *v) {
    if (!v)
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: NULL string for key '%s'", key ? key : "");
    wbuf val = {0};
    wb_str(&val, v, strlen(v));
    return put_kv(w, key, AR_GGUF_STRING, &val);
}

ar_status ar_gguf_set_arr(ar_gguf_writer *w, const char *key, ar_gguf_vtype elem, const void *data,
                          uint64_t n) {
    size_t es = scalar_size(elem);
    if (es == 0)
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: key '%s': %s is not a numeric type",
                       key ? key : "", ar_gguf_vtype_name(elem));
    if (n > 0 && !data)
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: key '%s': NULL array data",
                       key ? key : "");
    if (n > SIZE_MAX / es)
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: key '%s': array too large",
                       key ? key : "");
    if (elem == AR_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return ar_fail(AR_ERR_INVALID_ARG,
                               "gguf writer: key '%s': bool element %" PRIu64 " is not 0 or 1",
                               key ? key : "", i);
    wbuf val = {0};
    wb_le(&val, elem, 4);
    wb_le(&val, n, 8);
    wb_put(&val, data, (size_t)n * es);
    return put_kv(w, key, AR_GGUF_ARRAY, &val);
}

ar_status ar_gguf_set_arr_str(ar_gguf_writer *w, const char *key, const ar_str *strs, uint64_t n) {
    if (n > 0 && !strs)
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string array",
                       key ? key : "");
    wbuf val = {0};
    wb_le(&val, AR_GGUF_STRING, 4);
    wb_le(&val, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        if (strs[i].len > 0 && !strs[i].ptr) {
            free(val.p);
            return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: key '%s': string %" PRIu64 " is NULL",
                           key ? key : "", i);
        }
        wb_str(&val, strs[i].ptr, strs[i].len);
    }
    return put_kv(w, key, AR_GGUF_ARRAY, &val);
}

ar_status ar_gguf_copy_kv(ar_gguf_writer *w, const ar_gguf_kv *kv) {
    if (!kv) return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: NULL key/value");
    const char *key = kv->key;
    const uint64_t u = kv->v.u;
    const int64_t i = kv->v.i;
    switch (kv->type) {
    case AR_GGUF_UINT8:
    case AR_GGUF_UINT16:
    case AR_GGUF_UINT32: {
        uint64_t max = kv->type == AR_GGUF_UINT8    ? UINT8_MAX
                       : kv->type == AR_GGUF_UINT16 ? UINT16_MAX
                                                    : UINT32_MAX;
        if (u > max) break;
        return put_scalar(w, key, kv->type, u);
    }
    case AR_GGUF_INT8:
    case AR_GGUF_INT16:
    case AR_GGUF_INT32: {
        int64_t lim = kv->type == AR_GGUF_INT8    ? INT8_MAX
                      : kv->type == AR_GGUF_INT16 ? INT16_MAX
                                                  : INT32_MAX;
        if (i > lim || i < -lim - 1) break;
        return put_scalar(w, key, kv->type, (uint64_t)i);
    }
    case AR_GGUF_UINT64:
        return put_scalar(w, key, kv->type, u);
    case AR_GGUF_INT64:
        return put_scalar(w, key, kv->type, (uint64_t)i);
    case AR_GGUF_BOOL:
        if (u > 1) break;
        return put_scalar(w, key, kv->type, u);
    case AR_GGUF_FLOAT32:
        return put_scalar(w, key, kv->type, ar_f32_bits((float)kv->v.f));
    case AR_GGUF_FLOAT64: {
        uint64_t bits;
        memcpy(&bits, &kv->v.f, 8);
        return put_scalar(w, key, kv->type, bits);
    }
    case AR_GGUF_STRING: {
        if (kv->v.s.len > 0 && !kv->v.s.ptr) break;
        wbuf val = {0};
        wb_str(&val, kv->v.s.ptr, kv->v.s.len);
        return put_kv(w, key, AR_GGUF_STRING, &val);
    }
    case AR_GGUF_ARRAY:
        if (kv->arr_type == AR_GGUF_STRING)
            return ar_gguf_set_arr_str(w, key, kv->arr_strs, kv->arr_n);
        return ar_gguf_set_arr(w, key, kv->arr_type, kv->arr_data, kv->arr_n);
    default:
        break;
    }
    return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: key '%s': invalid %s value", key ? key : "",
                   ar_gguf_vtype_name(kv->type));
}

ar_status ar_gguf_add_tensor(ar_gguf_writer *w, const char *name, ar_type type, uint32_t n_dims,
                             const int64_t *ne, const void *data) {
    if (!w) return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: NULL writer");
    ar_status st = check_name("tensor name", name);
    if (st) return st;
    const ar_type_traits *tr = (unsigned)type < AR_TYPE_COUNT ? ar_type_get(type) : NULL;
    if (!tr)
        return ar_fail(AR_ERR_UNSUPPORTED, "gguf writer: tensor '%s': type %d is not supported",
                       name, (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return ar_fail(AR_ERR_INVALID_ARG,
                       "gguf writer: tensor '%s': n_dims %" PRIu32 " (must be 1..%d)", name, n_dims,
                       GGUF_MAX_DIMS);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || !ar_mul_ok(elements, (uint64_t)ne[d], &elements) || elements > INT64_MAX)
            return ar_fail(AR_ERR_INVALID_ARG,
                           "gguf writer: tensor '%s': bad dimension %" PRIu32 " = %" PRId64, name,
                           d, ne[d]);
    }
    if (ne[0] % tr->blck_size != 0)
        return ar_fail(AR_ERR_INVALID_ARG,
                       "gguf writer: tensor '%s': ne[0] = %" PRId64
                       " is not a multiple of the %s block size %" PRId64,
                       name, ne[0], tr->name, tr->blck_size);
    uint64_t nbytes;
    if (!ar_mul_ok(elements / (uint64_t)tr->blck_size, tr->type_size, &nbytes))
        return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: tensor '%s': byte size overflows", name);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: duplicate tensor name '%s'", name);
    char *copy = strdup(name);
    if (!copy || !grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors)) {
        free(copy);
        return ar_fail(AR_ERR_NOMEM, "gguf writer: out of memory");
    }
    wtensor *t = &w->tensors[w->n_tensors++];
    *t = (wtensor){.name = copy, .type = type, .n_dims = n_dims, .nbytes = nbytes, .data = data};
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    return AR_OK;
}

/* The header, key/values and tensor infos; assigns each tensor's data offset. */
static ar_status encode_header(ar_gguf_writer *w, const char *path, wbuf *h) {
    wb_put(h, "GGUF", 4);
    wb_le(h, w->version, 4);
    wb_le(h, w->n_tensors, 8);
    wb_le(h, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(h, w->kv[i].key, strlen(w->kv[i].key));
        wb_le(h, w->kv[i].type, 4);
        wb_put(h, w->kv[i].val.p, w->kv[i].val.len);
    }
    uint64_t end = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        if (!align_up(end, w->alignment, &t->offset) || !ar_add_ok(t->offset, t->nbytes, &end))
            return ar_fail(AR_ERR_INVALID_ARG, "%s: tensor data larger than 2^64 bytes", path);
        wb_str(h, t->name, strlen(t->name));
        wb_le(h, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_le(h, (uint64_t)t->ne[d], 8);
        wb_le(h, (uint32_t)t->type, 4);
        wb_le(h, t->offset, 8);
    }
    if (h->oom) return ar_fail(AR_ERR_NOMEM, "%s: out of memory for the GGUF header", path);
    return AR_OK;
}

static ar_status write_all(int fd, const char *path, const void *p, uint64_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n > (1u << 30) ? (1u << 30) : (size_t)n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return ar_fail(AR_ERR_IO, "%s: write failed: %s", path, strerror(k < 0 ? errno : EIO));
        b += k;
        n -= (uint64_t)k;
    }
    return AR_OK;
}

static ar_status write_zeros(int fd, const char *path, uint64_t n) {
    static const uint8_t zeros[4096];
    ar_status st = AR_OK;
    while (n > 0 && !st) {
        uint64_t k = AR_MIN(n, (uint64_t)sizeof zeros);
        st = write_all(fd, path, zeros, k);
        n -= k;
    }
    return st;
}

/* Header, padding, then each tensor at its aligned offset (data from the caller or `fill`,
 * one tensor buffered at a time), each padded to the alignment as ggml does. */
static ar_status write_body(ar_gguf_writer *w, int fd, const char *path, const wbuf *h,
                            ar_gguf_fill_fn fill, void *user) {
    ar_status st = write_all(fd, path, h->p, h->len);
    if (st || w->n_tensors == 0) return st;
    uint64_t data_offset;
    if (!align_up(h->len, w->alignment, &data_offset))
        return ar_fail(AR_ERR_INVALID_ARG, "%s: alignment too large", path);
    if ((st = write_zeros(fd, path, data_offset - h->len))) return st;
    uint64_t cap = 0; /* the fill buffer: as large as the largest filled tensor */
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!w->tensors[i].data) cap = AR_MAX(cap, w->tensors[i].nbytes);
    if (cap > SIZE_MAX) return ar_fail(AR_ERR_NOMEM, "%s: tensor too large to buffer", path);
    void *buf = NULL;
    if (cap > 0 && !(buf = malloc((size_t)cap)))
        return ar_fail(AR_ERR_NOMEM, "%s: out of memory for a %" PRIu64 "-byte tensor", path, cap);
    uint64_t at = 0; /* position in the data section */
    for (size_t i = 0; i < w->n_tensors && !st; i++) {
        const wtensor *t = &w->tensors[i];
        const void *src = t->data;
        if (!src && t->nbytes > 0) {
            if ((st = fill(user, i, buf, t->nbytes))) break;
            src = buf;
        }
        st = write_zeros(fd, path, t->offset - at);
        if (!st) st = write_all(fd, path, src, t->nbytes);
        at = t->offset + t->nbytes;
    }
    free(buf);
    if (st) return st;
    uint64_t end;
    if (!align_up(at, w->alignment, &end)) end = at;
    return write_zeros(fd, path, end - at);
}

ar_status ar_gguf_write(ar_gguf_writer *w, const char *path, ar_gguf_fill_fn fill, void *user) {
    if (!w || !path || !*path) return ar_fail(AR_ERR_INVALID_ARG, "gguf writer: no writer or path");
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!w->tensors[i].data && w->tensors[i].nbytes > 0 && !fill)
            return ar_fail(AR_ERR_INVALID_ARG,
                           "%s: tensor '%s' has no data and no fill callback was given", path,
                           w->tensors[i].name);
    wbuf h = {0};
    ar_status st = encode_header(w, path, &h);
    if (st) {
        free(h.p);
        return st;
    }
    /* A unique temporary name next to the target, so the final rename stays in one file system. */
    static atomic_uint counter;
    size_t tlen = strlen(path) + 64;
    char *tmp = malloc(tlen);
    int fd = -1;
    if (!tmp) st = ar_fail(AR_ERR_NOMEM, "%s: out of memory", path);
    for (int tries = 0; !st && fd < 0; tries++) {
        snprintf(tmp, tlen, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || tries >= 100))
            st = ar_fail(AR_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    }
    if (!st) {
        st = write_body(w, fd, path, &h, fill, user);
        if (!st && fsync(fd) != 0)
            st = ar_fail(AR_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
        if (close(fd) != 0 && !st)
            st = ar_fail(AR_ERR_IO, "%s: close failed: %s", path, strerror(errno));
        if (!st && rename(tmp, path) != 0)
            st = ar_fail(AR_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                         strerror(errno));
        if (st) unlink(tmp);
    }
    free(tmp);
    free(h.p);
    return st;
}
