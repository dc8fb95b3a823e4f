/* vocab.h: tokenizers read from GGUF metadata (tokenizer.ggml.*): SentencePiece-style BPE with
 * scores ("llama") and byte-level BPE with merges ("gpt2", with the pre-tokenizer regexes that
 * tokenizer.ggml.pre names). Tokenization reproduces llama.cpp's exactly. */
#ifndef ARBOR_VOCAB_H
#define ARBOR_VOCAB_H

#include "src/core/gguf.h"

typedef enum ar_vocab_kind { AR_VOCAB_SPM = 1, AR_VOCAB_BPE = 2 } ar_vocab_kind;

/* token types, as tokenizer.ggml.token_type stores them */
typedef enum ar_token_attr {
    AR_TOKEN_NORMAL = 1,
    AR_TOKEN_UNKNOWN = 2,
    AR_TOKEN_CONTROL = 3,
    AR_TOKEN_USER_DEFINED = 4,
    AR_TOKEN_UNUSED = 5,
    AR_TOKEN_BYTE = 6,
} ar_token_attr;

#define AR_TOKEN_NONE (-1)

typedef struct ar_vocab ar_vocab;

/* Builds the tokenizer from an open GGUF file (which must outlive the vocab). */
ar_status ar_vocab_load(const ar_gguf *g, ar_vocab **out);
void ar_vocab_free(ar_vocab *v);

int32_t ar_vocab_n_tokens(const ar_vocab *v);
ar_vocab_kind ar_vocab_kind_of(const ar_vocab *v);
/* As llama.cpp: an absent or out-of-range id (4294967295) takes the kind's default (SPM BOS 1,
 * EOS 2; BPE 11), and AR_TOKEN_NONE when that default does not fit the vocabulary. */
int32_t ar_vocab_bos(const ar_vocab *v);
int32_t ar_vocab_eos(const ar_vocab *v);
bool ar_vocab_add_bos(const ar_vocab *v);
bool ar_vocab_add_eos(const ar_vocab *v);
/* End of generation: EOS, EOT and other end-of-generation ids the vocab declares. */
bool ar_vocab_is_eog(const ar_vocab *v, int32_t id);
ar_token_attr ar_vocab_token_type(const ar_vocab *v, int32_t id);
/* The raw piece text as stored in the vocab (e.g. "▁Hello", "<0x0A>", "Ġworld"). */
ar_str ar_vocab_piece_raw(const ar_vocab *v, int32_t id);

/* Tokenizes `len` bytes of text. add_special: add BOS/EOS as the vocab says. parse_special:
 * text matching a control/user-defined token is that token. Writes at most `cap` ids to `out`
 * and returns the total number of tokens (which may exceed cap: call again with more room), or a
 * negative ar_status on error. */
int64_t ar_tokenize(const ar_vocab *v, const char *text, size_t len, bool add_special,
                    bool parse_special, int32_t *out, int64_t cap);

/* The bytes token `id` stands for when printed (SPM "▁" -> space, <0xNN> -> that byte, GPT-2
 * byte-level characters -> bytes; control tokens -> nothing unless `special`). Writes at most
 * `cap` bytes and returns the full length, or a negative ar_status for an invalid id. */
int32_t ar_token_to_piece(const ar_vocab *v, int32_t id, bool special, char *buf, int32_t cap);

/* Streaming detokenizer: bytes of a multi-byte UTF-8 character split across tokens are held back
 * until the character is complete. */
typedef struct ar_detok {
    char pending[8];
    int n_pending;
} ar_detok;
/* Appends the printable bytes of token `id` (completed characters only) to buf; returns the number
 * of bytes written (at most cap; cap >= 64 + the longest piece is always enough) or < 0. */
int32_t ar_detok_push(ar_detok *d, const ar_vocab *v, int32_t id, char *buf, int32_t cap);
/* Emits what is still held back (an incomplete character at the end, as is). */
int32_t ar_detok_flush(ar_detok *d, char *buf, int32_t cap);

/* Drafter/verifier compatibility: same tokenizer kind, same BOS and EOS, identical pieces for
 * every id below the smaller vocabulary, and beyond it at most 128 tokens that are not padding
 * (unused "[PAD<id>]" rows). AR_OK or AR_ERR_INCOMPATIBLE with a message naming the first
 * difference. */
ar_status ar_vocab_compatible(const ar_vocab *target, const ar_vocab *draft);
/* xxHash64 over kind, special ids and all pieces: equal fingerprints make the check O(1). */
uint64_t ar_vocab_fingerprint(const ar_vocab *v);

#endif
