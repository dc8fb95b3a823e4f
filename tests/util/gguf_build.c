/* gguf_build.c: GGUF byte assembly and temporary files for tests (see gguf_build.h). */
#include "gguf_build.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    abort();
}

void gb_free(gb_buf *b) {
    free(b->data);
    *b = (gb_buf){0};
}

void gb_bytes(gb_buf *b, const void *p, size_t n) {
    if (n == 0) return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) die("gb_bytes");
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(gb_buf *b, uint64_t v, size_t n) {
    uint8_t bytes[8];
    for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)(v >> (8 * i));
    gb_bytes(b, bytes, n);
}

void gb_u8(gb_buf *b, uint8_t v) {
    put_le(b, v, 1);
}
void gb_u16(gb_buf *b, uint16_t v) {
    put_le(b, v, 2);
}
void gb_u32(gb_buf *b, uint32_t v) {
    put_le(b, v, 4);
}
void gb_u64(gb_buf *b, uint64_t v) {
    put_le(b, v, 8);
}
void gb_f32(gb_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_le(b, u, 4);
}
void gb_f64(gb_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_le(b, u, 8);
}

void gb_strn(gb_buf *b, const void *s, uint64_t n) {
    gb_u64(b, n);
    gb_bytes(b, s, (size_t)n);
}
void gb_str(gb_buf *b, const char *s) {
    gb_strn(b, s, strlen(s));
}

void gb_pad(gb_buf *b, size_t align) {
    static const uint8_t zero[1];
    while (b->len % align) gb_bytes(b, zero, 1);
}

static void set_le(gb_buf *b, size_t at, uint64_t v, size_t n) {
    if (at > b->len || b->len - at < n) {
        fprintf(stderr, "gb_set: offset %zu outside the %zu-byte buffer\n", at, b->len);
        abort();
    }
    for (size_t i = 0; i < n; i++) b->data[at + i] = (uint8_t)(v >> (8 * i));
}
void gb_set_u32(gb_buf *b, size_t at, uint32_t v) {
    set_le(b, at, v, 4);
}
void gb_set_u64(gb_buf *b, size_t at, uint64_t v) {
    set_le(b, at, v, 8);
}

void gb_header(gb_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

void gb_kv_u32(gb_buf *b, const char *key, uint32_t v) {
    gb_str(b, key);
    gb_u32(b, 4);
    gb_u32(b, v);
}
void gb_kv_f32(gb_buf *b, const char *key, float v) {
    gb_str(b, key);
    gb_u32(b, 6);
    gb_f32(b, v);
}
void gb_kv_str(gb_buf *b, const char *key, const char *v) {
    gb_str(b, key);
    gb_u32(b, 8);
    gb_str(b, v);
}
void gb_kv_arr(gb_buf *b, const char *key, uint32_t elem_type, uint64_t n) {
    gb_str(b, key);
    gb_u32(b, 9);
    gb_u32(b, elem_type);
    gb_u64(b, n);
}

void gb_tensor_info(gb_buf *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                    uint64_t offset) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gb_u64(b, (uint64_t)ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

char *gb_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + 32;
    char *dir = malloc(n);
    if (!dir) die("gb_tmpdir");
    snprintf(dir, n, "%s/arbor-test-XXXXXX", base);
    if (!mkdtemp(dir)) die("mkdtemp");
    return dir;
}

char *gb_write_file(const char *dir, const char *name, const void *data, size_t n) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    if (!path) die("gb_write_file");
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    if ((n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) die(path);
    return path;
}

void gb_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) rmdir(path); /* an empty subdirectory a test made */
    }
    closedir(d);
    rmdir(dir);
}
