/* gguf_build.h: test helper for GGUF input the writer will not produce: a byte buffer to
 * assemble GGUF files field by field (so tests can write malformed ones), in-place patching,
 * and temporary directories/files to hold them. Out-of-memory or I/O failures abort: this is
 * test code. */
#ifndef ARBOR_TEST_GGUF_BUILD_H
#define ARBOR_TEST_GGUF_BUILD_H

#include <stddef.h>
#include <stdint.h>

typedef struct gb_buf {
    uint8_t *data;
    size_t len, cap;
} gb_buf;

void gb_free(gb_buf *b);
void gb_bytes(gb_buf *b, const void *p, size_t n);
void gb_u8(gb_buf *b, uint8_t v);
void gb_u16(gb_buf *b, uint16_t v);
void gb_u32(gb_buf *b, uint32_t v);
void gb_u64(gb_buf *b, uint64_t v);
void gb_f32(gb_buf *b, float v);
void gb_f64(gb_buf *b, double v);
/* A GGUF string: u64 length, then the bytes (no terminator). */
void gb_str(gb_buf *b, const char *s);
void gb_strn(gb_buf *b, const void *s, uint64_t n);
/* Zero bytes up to the next multiple of align. */
void gb_pad(gb_buf *b, size_t align);
/* Little-endian overwrite of bytes already in the buffer. */
void gb_set_u32(gb_buf *b, size_t at, uint32_t v);
void gb_set_u64(gb_buf *b, size_t at, uint64_t v);

/* "GGUF", version, n_tensors, n_kv. */
void gb_header(gb_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
/* Key/values: key string, u32 type (gguf.h numbering), value. */
void gb_kv_u32(gb_buf *b, const char *key, uint32_t v);
void gb_kv_f32(gb_buf *b, const char *key, float v);
void gb_kv_str(gb_buf *b, const char *key, const char *v);
/* Array header only (key, type 9, element type, count); append the elements after it. */
void gb_kv_arr(gb_buf *b, const char *key, uint32_t elem_type, uint64_t n);
/* Tensor info: name, n_dims, ne[0..n_dims), type, offset (from the data section). */
void gb_tensor_info(gb_buf *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                    uint64_t offset);

/* A fresh directory under $TMPDIR (or /tmp); free() the result. */
char *gb_tmpdir(void);
/* Writes data to dir/name and returns the path (free() it). */
char *gb_write_file(const char *dir, const char *name, const void *data, size_t n);
/* Removes the files (and empty subdirectories) directly inside dir, then dir. */
void gb_rmdir(const char *dir);

#endif
