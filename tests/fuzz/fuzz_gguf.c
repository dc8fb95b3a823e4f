/* fuzz_gguf.c: libFuzzer harness for the GGUF reader (src/gguf.c). The input is a whole file,
 * parsed in memory with ar_gguf_open_memory. A rejected file must come with a one-line error; an
 * accepted one is walked completely: every key through every typed getter, every array element,
 * every string byte and every tensor's first and last data byte, all of which must lie inside
 * the buffer (AddressSanitizer sees the buffer's exact bounds, since libFuzzer allocates it). */
#include <string.h>

#include "src/core/gguf.h"
#include "tests/fuzz/fuzz.h"

static void fz_gguf_check_error(void) {
    const char *e = ar_last_error();
    FZ_CHECK(e[0] != 0);
    FZ_CHECK(strchr(e, '\n') == NULL);
}

static bool fz_gguf_inside(const ar_gguf *g, const void *p, uint64_t n) {
    const uint8_t *b = p;
    return b >= g->map && b <= g->map + g->size && n <= (uint64_t)(g->map + g->size - b);
}

static unsigned fz_gguf_touch(const ar_gguf *g, const void *p, uint64_t n) {
    FZ_CHECK(fz_gguf_inside(g, p, n));
    if (n == 0) return 0;
    const volatile uint8_t *b = p;
    return b[0] ^ b[n - 1];
}

static unsigned fz_gguf_walk_kv(const ar_gguf *g, const ar_gguf_kv *kv) {
    unsigned sink = 0;
    uint32_t u32;
    uint64_t u64;
    float f;
    bool b;
    ar_str s;
    const ar_gguf_kv *arr;
    FZ_CHECK(ar_gguf_find(g, kv->key) == kv); /* keys are unique */
    FZ_CHECK(ar_gguf_vtype_name(kv->type) != NULL);
    /* every getter either succeeds or says why (absent keys are not an error here) */
    if (ar_gguf_get_u32(g, kv->key, &u32) == AR_ERR_FORMAT) fz_gguf_check_error();
    if (ar_gguf_get_u64(g, kv->key, &u64) == AR_ERR_FORMAT) fz_gguf_check_error();
    if (ar_gguf_get_f32(g, kv->key, &f) == AR_ERR_FORMAT) fz_gguf_check_error();
    if (ar_gguf_get_bool(g, kv->key, &b) == AR_ERR_FORMAT) fz_gguf_check_error();
    if (ar_gguf_get_str(g, kv->key, &s) == AR_OK) sink += fz_gguf_touch(g, s.ptr, s.len);
    if (ar_gguf_get_arr(g, kv->key, AR_GGUF_VTYPE_COUNT, &arr) == AR_OK) {
        FZ_CHECK(arr == kv && kv->type == AR_GGUF_ARRAY);
        if (kv->arr_type == AR_GGUF_STRING) {
            FZ_CHECK(kv->arr_n == 0 || kv->arr_strs != NULL);
            for (uint64_t i = 0; i < kv->arr_n; i++)
                sink += fz_gguf_touch(g, kv->arr_strs[i].ptr, kv->arr_strs[i].len);
        } else {
            for (uint64_t i = 0; i < kv->arr_n; i++) {
                int64_t x = ar_gguf_arr_i64(kv, i);
                double d = ar_gguf_arr_f64(kv, i);
                sink += (unsigned)x + (d == d);
            }
        }
    }
    return sink;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    ar_gguf *g = NULL;
    ar_status st = ar_gguf_open_memory(data, size, "fuzz.gguf", &g);
    if (st != AR_OK) {
        FZ_CHECK(g == NULL);
        fz_gguf_check_error();
        return 0;
    }
    FZ_CHECK(g != NULL && g->map == data && g->size == size);
    FZ_CHECK(g->version == 2 || g->version == 3);
    FZ_CHECK(g->alignment > 0 && (g->alignment & (g->alignment - 1)) == 0);
    FZ_CHECK(g->data_offset <= size || g->n_tensors == 0);
    volatile unsigned sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) sink += fz_gguf_walk_kv(g, &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        FZ_CHECK(ar_gguf_find_tensor(g, t->name) == t);
        FZ_CHECK(t->n_dims >= 1 && t->n_dims <= 4);
        const ar_type_traits *tr = ar_type_get(t->type);
        FZ_CHECK(tr != NULL);
        uint64_t elements = 1;
        for (int d = 0; d < 4; d++) {
            FZ_CHECK(t->ne[d] >= 0);
            FZ_CHECK(ar_mul_ok(elements, (uint64_t)t->ne[d], &elements));
        }
        FZ_CHECK(elements % (uint64_t)tr->blck_size == 0);
        FZ_CHECK(t->nbytes == elements / (uint64_t)tr->blck_size * tr->type_size);
        sink += fz_gguf_touch(g, t->data, t->nbytes);
    }
    (void)sink;
    ar_gguf_close(g);
    return 0;
}
