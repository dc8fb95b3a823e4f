/* vocab_internal.h: what the tokenizer files share (vocab.c: loading, special tokens, pieces,
 * compatibility; vocab_spm.c: SentencePiece-style merges; vocab_bpe.c: Unicode classes,
 * pre-tokenizer splits and byte-level BPE merges). Not part of the public API; tests use the
 * pre-tokenizer directly. */
#ifndef ARBOR_VOCAB_INTERNAL_H
#define ARBOR_VOCAB_INTERNAL_H

#include "vocab.h"

/* Token attributes as bit flags (the same bits llama.cpp uses, so its rules read the same). */
enum {
    AR_ATTR_UNKNOWN = 1 << 0,
    AR_ATTR_UNUSED = 1 << 1,
    AR_ATTR_NORMAL = 1 << 2,
    AR_ATTR_CONTROL = 1 << 3,
    AR_ATTR_USER_DEFINED = 1 << 4,
    AR_ATTR_BYTE = 1 << 5,
    AR_ATTR_LSTRIP = 1 << 6, /* eat whitespace left of this special token */
    AR_ATTR_RSTRIP = 1 << 7, /* eat whitespace right of it */
    AR_ATTR_EOG = 1 << 8,    /* ends generation */
};

/* Pre-tokenizers (the regex sets tokenizer.ggml.pre selects). */
typedef enum ar_pre_kind {
    AR_PRE_DEFAULT = 0,
    AR_PRE_GPT2,
    AR_PRE_LLAMA3,
    AR_PRE_QWEN2,
    AR_PRE_DEEPSEEK_CODER,
    AR_PRE_FALCON,
    AR_PRE_STARCODER,
    AR_PRE_COUNT
} ar_pre_kind;

/* Maps a tokenizer.ggml.pre value to its pre-tokenizer and the flags llama.cpp sets with it
 * (ignore_merges, add_bos default). False for names not supported. */
bool ar_pre_kind_from_name(const char *name, size_t len, ar_pre_kind *kind, bool *ignore_merges,
                           bool *add_bos);
/* The supported names, comma-separated (for error messages). */
const char *ar_pre_supported_names(void);

/* ---- string -> int32 hash map (open addressing); the key strings live in keys[value] ---- */
typedef struct ar_strmap {
    int32_t *slots; /* value, or -1 for an empty slot */
    uint32_t *tags; /* high hash bits of the slot's key, to skip most string compares */
    uint64_t mask;
    const ar_str *keys;
} ar_strmap;

/* Builds a map over keys[0..n); for duplicate strings the first index wins. */
ar_status ar_strmap_build(ar_strmap *m, const ar_str *keys, int32_t n);
int32_t ar_strmap_get(const ar_strmap *m, const char *s, size_t len); /* -1 when absent */
void ar_strmap_free(ar_strmap *m);

/* ---- (int32, int32) -> int32 hash map for BPE merge ranks ---- */
typedef struct ar_pairmap {
    uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
    int32_t *vals;
    uint64_t mask;
} ar_pairmap;

/* ---- Unicode ---- */
enum {
    AR_CPT_LETTER = 1 << 0,     /* \p{L} */
    AR_CPT_NUMBER = 1 << 1,     /* \p{N} */
    AR_CPT_PUNCT = 1 << 2,      /* \p{P} */
    AR_CPT_SYMBOL = 1 << 3,     /* \p{S} */
    AR_CPT_MARK = 1 << 4,       /* \p{M} */
    AR_CPT_OTHER = 1 << 5,      /* \p{Z}, \p{C} and unassigned */
    AR_CPT_WHITESPACE = 1 << 6, /* the Unicode White_Space property */
};
/* Category flags of a code point (never 0; values above U+10FFFF are AR_CPT_OTHER). The table
 * is built on first use from PCRE2's Unicode properties. */
uint8_t ar_cpt_flags(uint32_t cp);

/* UTF-8 decoding the way llama.cpp does it: a byte that does not start a complete sequence
 * becomes U+FFFD and decoding resumes at the next byte. Overlong forms and surrogates are
 * accepted as decoded. byte_off (n + 1 entries) gives each code point's first byte. */
typedef struct ar_cpts {
    uint32_t *cp;
    uint32_t *byte_off;
    size_t n;
} ar_cpts;
ar_status ar_utf8_decode(const char *text, size_t len, ar_cpts *out);
/* One code point at text[i] (i < len) by the same rules: its length, or 0 when the bytes there
 * do not form a sequence (the caller then takes U+FFFD for one byte). */
int ar_utf8_next(const char *text, size_t len, size_t i, uint32_t *cp);
void ar_cpts_free(ar_cpts *c);
/* Encodes cp (<= 0x10FFFF) as UTF-8 into out[4]; returns the length. */
int ar_utf8_encode(uint32_t cp, char *out);

/* Called once per pre-token, in order: its code points and the original bytes they came from. */
typedef ar_status (*ar_piece_fn)(void *user, const uint32_t *cp, size_t n_cp, const char *bytes,
                                 size_t n_bytes);
/* Splits text into pre-tokens exactly as llama.cpp's unicode_regex_split does for `kind`. */
ar_status ar_pretokenize(ar_pre_kind kind, const char *text, size_t len, ar_piece_fn fn,
                         void *user);

/* GPT-2 byte-level alphabet: the code point that stands for byte b, and back (-1: none). */
uint32_t ar_byte_to_cpt(uint8_t b);
int ar_cpt_to_byte(uint32_t cp);

/* ---- the vocabulary ---- */
struct ar_vocab {
    ar_vocab_kind kind;
    ar_pre_kind pre;
    int32_t n_tokens;
    ar_str *text;   /* piece text of each id (into the GGUF mapping, or into `owned`) */
    float *score;   /* SPM merge priority */
    uint16_t *attr; /* AR_ATTR_* */
    char *owned;    /* text of pieces llama.cpp renames ("[EMPTY_<id>]") */
    ar_strmap token_map;

    int32_t bos, eos, eot, eom, unk, sep, pad;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    bool spm_split_words; /* no piece has a "▁" after a non-"▁": words merge independently */

    int32_t *special; /* control/user-defined/unknown ids, longest text first */
    int32_t n_special;
    int32_t *special_head; /* 65536 lists by the first two bytes of the text: index in special */
    int32_t *special_next;
    int32_t byte_token[256]; /* SPM byte fallback (<0xNN>), -1 when missing */

    /* BPE merges: each side of each merge interned as a string id, (left, right) -> rank */
    ar_str *merge_side;
    ar_strmap merge_map;
    ar_pairmap ranks;

    int32_t max_piece; /* longest ar_token_to_piece result */
    uint64_t fingerprint;
};

/* A growable id list. */
typedef struct ar_ids {
    int32_t *v;
    size_t n, cap;
} ar_ids;
ar_status ar_ids_push(ar_ids *ids, int32_t id);

/* SPM: tokenizes one text fragment (spaces already escaped to U+2581) and appends the ids. */
ar_status ar_spm_tokenize(const ar_vocab *v, const char *text, size_t len, ar_ids *out);
/* BPE: pre-tokenizes and merges one text fragment, appending the ids. */
ar_status ar_bpe_tokenize(const ar_vocab *v, const char *text, size_t len, ar_ids *out);
/* BPE: builds the merge tables from tokenizer.ggml.merges (strings "left right"). */
ar_status ar_bpe_load_merges(ar_vocab *v, const ar_str *merges, uint64_t n);

#endif
