/* vocab_bpe.c: byte-level BPE ("gpt2" vocabularies): Unicode classes, the pre-tokenizer splits
 * that tokenizer.ggml.pre selects, and the merge loop.
 *
 * The splits reproduce llama.cpp (unicode.cpp, c392e5094), which is not a plain regex engine:
 *  - the GPT-2 and LLaMA-3 patterns run through hand-written splitters meant to equal the
 *    regex; we implement the same algorithms, so wherever they part from a true regex we part
 *    with them (the tests check them against PCRE2 on ordinary text);
 *  - every other pattern runs on a "collapsed" string, one byte per code point: ASCII as is,
 *    non-ASCII whitespace as 0x0B, other non-ASCII code points as one byte per category
 *    (N 0xD1, L 0xD2, P 0xD3, M 0xD4, S 0xD5, anything else 0xD0), with \p{..} in the pattern
 *    rewritten to "that byte or the ASCII members". We run PCRE2 (byte mode) on the same
 *    collapsed string with the same collapsed patterns, written out below;
 *  - patterns apply one after another, each splitting the pieces the previous one produced;
 *    text between matches stays a piece of its own.
 * Categories come from PCRE2's Unicode tables (PCRE2_UTF | PCRE2_UCP). Differences from
 * llama.cpp can only come from the Unicode version: PCRE2 10.42 knows Unicode 14, llama.cpp's
 * table is newer, so code points first assigned in Unicode 15 (mostly CJK extension letters)
 * count as unassigned here. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "vocab_internal.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CPT 0x110000u

/* ---------------------------------------------------------------------------------------- */
/* Unicode categories                                                                        */
/* ---------------------------------------------------------------------------------------- */

static uint8_t *cpt_table; /* MAX_CPT entries */
static pthread_once_t cpt_once = PTHREAD_ONCE_INIT;

/* The White_Space property (Unicode PropList.txt). */
static const uint32_t white_space[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,
                                       0xA0,   0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
                                       0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028,
                                       0x2029, 0x202F, 0x205F, 0x3000};

int ar_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Marks every code point with its general category by letting PCRE2 match runs of each class
 * over a string holding the code points in order (surrogates excluded: not encodable). */
static void build_cpt_table(void) {
    uint8_t *table = malloc(MAX_CPT);
    char *buf = malloc((size_t)MAX_CPT * 4);
    if (!table || !buf) goto fail;
    memset(table, AR_CPT_OTHER, MAX_CPT);
    size_t len = 0;
    for (uint32_t cp = 0; cp < MAX_CPT; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        /* planes 4-13 are unassigned and 15-16 private use: "other" without asking */
        if (cp >= 0x40000 && (cp < 0xE0000 || cp >= 0xF0000)) continue;
        len += (size_t)ar_utf8_encode(cp, buf + len);
    }
    static const uint8_t group_flag[] = {
        0, AR_CPT_LETTER, AR_CPT_NUMBER, AR_CPT_PUNCT, AR_CPT_SYMBOL, AR_CPT_MARK};
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR) "(\\p{L}+)|(\\p{N}+)|(\\p{P}+)|(\\p{S}+)|(\\p{M}+)",
                      PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &erroff, NULL);
    if (!re) goto fail;
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter gives the same */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) {
        pcre2_code_free(re);
        goto fail;
    }
    size_t at = 0;
    while (at < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)buf, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc <= 1) break; /* no match (or an error: the rest stays "other") */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int group = rc - 1; /* the only group that matched is the last one set */
        for (size_t b = ov[0]; b < ov[1];) {
            uint8_t c = (uint8_t)buf[b];
            uint32_t cp;
            int n;
            if (c < 0x80)
                cp = c, n = 1;
            else if (c < 0xE0)
                cp = c & 0x1Fu, n = 2;
            else if (c < 0xF0)
                cp = c & 0x0Fu, n = 3;
            else
                cp = c & 0x07u, n = 4;
            for (int k = 1; k < n; k++) cp = (cp << 6) | ((uint8_t)buf[b + k] & 0x3Fu);
            table[cp] = group_flag[group];
            b += (size_t)n;
        }
        at = ov[1] > at ? ov[1] : at + 1;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    for (size_t i = 0; i < AR_ARRAY_LEN(white_space); i++)
        table[white_space[i]] |= AR_CPT_WHITESPACE;
    free(buf);
    cpt_table = table;
    return;
fail:
    free(table);
    free(buf);
}

uint8_t ar_cpt_flags(uint32_t cp) {
    pthread_once(&cpt_once, build_cpt_table);
    if (cp >= MAX_CPT || !cpt_table) return AR_CPT_OTHER;
    return cpt_table[cp];
}

/* ---------------------------------------------------------------------------------------- */
/* UTF-8                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* llama.cpp's rules (unicode_cpt_from_utf8): the lead byte gives the length, continuation bytes
 * must be 10xxxxxx, nothing else is checked. Sequences decoding above U+10FFFF (leads F5-F7)
 * are refused too: llama.cpp decodes them and then throws when re-encoding. */
int ar_utf8_next(const char *text, size_t len, size_t i, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)text;
    uint8_t c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    if (!(c & 0x40)) return 0;
    if (!(c & 0x20))
        n = 2, *cp = c & 0x1Fu;
    else if (!(c & 0x10))
        n = 3, *cp = c & 0x0Fu;
    else if (!(c & 0x08))
        n = 4, *cp = c & 0x07u;
    else
        return 0;
    if (len - i < (size_t)n) return 0;
    for (int k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
        *cp = (*cp << 6) | (s[i + k] & 0x3Fu);
    }
    if (*cp >= MAX_CPT) return 0;
    return n;
}

ar_status ar_utf8_decode(const char *text, size_t len, ar_cpts *out) {
    memset(out, 0, sizeof *out);
    if (len >= UINT32_MAX)
        return ar_fail(AR_ERR_INVALID_ARG, "tokenize: text of %zu bytes is too long", len);
    out->cp = malloc((len + 1) * sizeof *out->cp);
    out->byte_off = malloc((len + 1) * sizeof *out->byte_off);
    if (!out->cp || !out->byte_off) {
        ar_cpts_free(out);
        return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory decoding %zu bytes", len);
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = ar_utf8_next(text, len, i, &cp);
        if (k == 0) cp = 0xFFFD, k = 1;
        out->cp[n] = cp;
        out->byte_off[n] = (uint32_t)i;
        n++;
        i += (size_t)k;
    }
    out->byte_off[n] = (uint32_t)len;
    out->n = n;
    return AR_OK;
}

void ar_cpts_free(ar_cpts *c) {
    free(c->cp);
    free(c->byte_off);
    c->cp = NULL;
    c->byte_off = NULL;
    c->n = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* GPT-2 byte-level alphabet                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves; the other 68
 * bytes (0x00-0x20, 0x7F-0xA0, 0xAD) map, in increasing order, to U+0100, U+0101, ... */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t ar_byte_to_cpt(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7Fu);
    return 0x100 + 67; /* 0xAD */
}

int ar_cpt_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t rank = cp - 0x100;
    if (rank < 33) return (int)rank;
    if (rank < 67) return (int)(0x7F + rank - 33);
    if (rank == 67) return 0xAD;
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Pre-tokenizers                                                                            */
/* ---------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    ar_pre_kind kind;
    bool ignore_merges, add_bos;
} pre_names[] = {
    {"default", AR_PRE_DEFAULT, false, false},
    {"gpt-2", AR_PRE_GPT2, false, false},
    {"phi-2", AR_PRE_GPT2, false, false},
    {"roberta-bpe", AR_PRE_GPT2, false, false},
    {"mpt", AR_PRE_GPT2, false, false},
    {"olmo", AR_PRE_GPT2, false, false},
    {"jais", AR_PRE_GPT2, false, false},
    {"llama3", AR_PRE_LLAMA3, true, true},
    {"llama-v3", AR_PRE_LLAMA3, true, true},
    {"llama-bpe", AR_PRE_LLAMA3, true, true},
    {"falcon3", AR_PRE_LLAMA3, true, true},
    {"dbrx", AR_PRE_LLAMA3, false, false},
    {"smaug-bpe", AR_PRE_LLAMA3, false, false},
    {"qwen2", AR_PRE_QWEN2, false, false},
    {"deepseek-r1-qwen", AR_PRE_QWEN2, false, false},
    {"megrez", AR_PRE_QWEN2, false, false},
    {"stablelm2", AR_PRE_QWEN2, false, false},
    {"deepseek-coder", AR_PRE_DEEPSEEK_CODER, false, false},
    {"falcon", AR_PRE_FALCON, false, false},
    {"starcoder", AR_PRE_STARCODER, false, false},
    {"refact", AR_PRE_STARCODER, false, false},
    {"command-r", AR_PRE_STARCODER, false, false},
    {"smollm", AR_PRE_STARCODER, false, false},
    {"codeshell", AR_PRE_STARCODER, false, false},
    {"exaone", AR_PRE_STARCODER, false, false},
    {"minerva-7b", AR_PRE_STARCODER, false, false},
};

bool ar_pre_kind_from_name(const char *name, size_t len, ar_pre_kind *kind, bool *ignore_merges,
                           bool *add_bos) {
    for (size_t i = 0; i < AR_ARRAY_LEN(pre_names); i++) {
        if (strlen(pre_names[i].name) == len && memcmp(pre_names[i].name, name, len) == 0) {
            *kind = pre_names[i].kind;
            *ignore_merges = pre_names[i].ignore_merges;
            *add_bos = pre_names[i].add_bos;
            return true;
        }
    }
    return false;
}

const char *ar_pre_supported_names(void) {
    return "default, gpt-2, phi-2, roberta-bpe, mpt, olmo, jais, llama3, llama-v3, llama-bpe, "
           "falcon3, dbrx, smaug-bpe, qwen2, deepseek-r1-qwen, megrez, stablelm2, deepseek-coder, "
           "falcon, starcoder, refact, command-r, smollm, codeshell, exaone, minerva-7b";
}

/* Collapsed patterns (see the file comment). WS is C-locale \s plus 0x0B, which collapsed
 * non-ASCII whitespace becomes; L and N are the collapsed \p{L} and \p{N}; P_ASCII lists the
 * ASCII members of \p{P}. */
#define WS "\\t\\n\\x0b\\f\\r "
#define L_ "\\xd2A-Za-z"
#define N_ "\\xd10-9"
#define P_ "\\xd3!-#%-*,-/:;?@\\[-\\]_{}"

enum {
    RX_PUNCT_DEFAULT, /* [\p{P}\$\+<=>\^~\|]+ */
    RX_PUNCT_FALCON,  /* [\p{P}\$\+<=>\^~\|`]+ */
    RX_NUMBERS,       /* \p{N}+ */
    RX_NUMBER,        /* \p{N} */
    RX_DIGIT3,        /* [0-9][0-9][0-9] */
    RX_CRLF,          /* [\r\n] */
    RX_WS_LETTERS,    /* \s?\p{L}+ */
    RX_WS_PUNCT,      /* \s?\p{P}+ */
    RX_QWEN2,         /* the LLaMA-3 pattern with single digits */
    RX_COUNT
};

static const char *const rx_source[RX_COUNT] = {
    [RX_PUNCT_DEFAULT] = "[" P_ "$+<=>^~|]+",
    [RX_PUNCT_FALCON] = "[" P_ "$+<=>^~|`]+",
    [RX_NUMBERS] = "[" N_ "]+",
    [RX_NUMBER] = "[" N_ "]",
    [RX_DIGIT3] = "[0-9][0-9][0-9]",
    [RX_CRLF] = "[\\r\\n]",
    [RX_WS_LETTERS] = "[" WS "]?[" L_ "]+",
    [RX_WS_PUNCT] = "[" WS "]?[" P_ "]+",
    [RX_QWEN2] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
                 "|[^\\r\\n" L_ N_ "]?[" L_ "]+"
                 "|[" N_ "]"
                 "| ?[^" WS L_ N_ "]+[\\r\\n]*"
                 "|[" WS "]*[\\r\\n]+"
                 "|[" WS "]+(?![^" WS "])"
                 "|[" WS "]+",
};

static pcre2_code *rx_code[RX_COUNT];
static ar_status rx_status = AR_OK;
static char rx_error[160];
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void compile_patterns(void) {
    for (int i = 0; i < RX_COUNT; i++) {
        int err;
        PCRE2_SIZE off;
        rx_code[i] =
            pcre2_compile((PCRE2_SPTR)rx_source[i], PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
        if (!rx_code[i]) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(err, msg, sizeof msg);
            snprintf(rx_error, sizeof rx_error, "pattern %d, offset %zu: %s", i, (size_t)off,
                     (const char *)msg);
            rx_status = AR_ERR_INTERNAL;
            return;
        }
        pcre2_jit_compile(rx_code[i], PCRE2_JIT_COMPLETE);
    }
}

/* A split pass: pieces are code-point lengths; each pass turns the old list into a new one. */
typedef struct pieces {
    uint32_t *len;
    size_t n, cap;
} pieces;

static bool pieces_push(pieces *p, size_t len) {
    if (len == 0) return true;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        uint32_t *nl = realloc(p->len, cap * sizeof *nl);
        if (!nl) return false;
        p->len = nl;
        p->cap = cap;
    }
    p->len[p->n++] = (uint32_t)len;
    return true;
}

typedef struct split_ctx {
    const uint32_t *cp;
    const uint8_t *collapsed;
    size_t n;
} split_ctx;

/* Flags of the code point at pos when it lies inside the current chunk [ini, end), else 0. */
static inline uint8_t flags_at(const split_ctx *c, size_t ini, size_t end, size_t pos) {
    return (pos >= ini && pos < end) ? ar_cpt_flags(c->cp[pos]) : 0;
}
#define OUT_OF_CHUNK 0xFFFFFFFFu
static inline uint32_t cpt_at(const split_ctx *c, size_t ini, size_t end, size_t pos) {
    return (pos >= ini && pos < end) ? c->cp[pos] : OUT_OF_CHUNK;
}

#define F_LNW (AR_CPT_LETTER | AR_CPT_NUMBER | AR_CPT_WHITESPACE)

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ as llama.cpp's
 * hand-written GPT-2 splitter evaluates it, one chunk at a time. */
static bool split_gpt2(const split_ctx *c, size_t ini, size_t end, pieces *out) {
    size_t pos = ini;
    while (pos < end) {
        size_t start = pos;
        uint32_t cp = c->cp[pos];
        uint8_t f = flags_at(c, ini, end, pos);
        if (cp == '\'' && pos + 1 < end) {
            uint32_t n1 = c->cp[pos + 1];
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += 2;
                goto emit;
            }
            if (pos + 2 < end) {
                uint32_t n2 = c->cp[pos + 2];
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
                    (n1 == 'l' && n2 == 'l')) {
                    pos += 3;
                    goto emit;
                }
            }
        }
        uint8_t f2 = cp == ' ' ? flags_at(c, ini, end, pos + 1) : f;
        if (f2 & AR_CPT_LETTER) { /* ?\p{L}+ */
            pos += cp == ' ';
            while (flags_at(c, ini, end, pos) & AR_CPT_LETTER) pos++;
            goto emit;
        }
        if (f2 & AR_CPT_NUMBER) { /* ?\p{N}+ */
            pos += cp == ' ';
            while (flags_at(c, ini, end, pos) & AR_CPT_NUMBER) pos++;
            goto emit;
        }
        if (!(f2 & F_LNW) && f2) { /* ?[^\s\p{L}\p{N}]+ */
            pos += cp == ' ';
            for (;;) {
                uint8_t g = flags_at(c, ini, end, pos);
                if ((g & F_LNW) || !g) break;
                pos++;
            }
            goto emit;
        }
        size_t n_ws = 0;
        while (flags_at(c, ini, end, pos + n_ws) & AR_CPT_WHITESPACE) n_ws++;
        if (n_ws > 1 && pos + n_ws < end) { /* \s+(?!\S): leave one for the next token */
            pos += n_ws - 1;
            goto emit;
        }
        pos += n_ws ? n_ws : 1; /* \s+, or a lone code point nothing matched */
    emit:
        if (!pieces_push(out, pos - start)) return false;
    }
    return true;
}

static uint32_t ascii_lower(uint32_t cp) {
    return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ as llama.cpp's hand-written LLaMA-3 splitter evaluates it. (Its
 * case folding is Unicode lowercasing, which maps no non-ASCII code point onto s,t,r,e,v,m,l,d.) */
static bool split_llama3(const split_ctx *c, size_t ini, size_t end, pieces *out) {
    size_t pos = ini;
    while (pos < end) {
        size_t start = pos;
        uint32_t cp = c->cp[pos];
        uint8_t f = flags_at(c, ini, end, pos);
        if (cp == '\'' && pos + 1 < end) {
            uint32_t n1 = ascii_lower(c->cp[pos + 1]);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += 2;
                goto emit;
            }
            if (pos + 2 < end) {
                uint32_t n2 = ascii_lower(c->cp[pos + 2]);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
                    (n1 == 'l' && n2 == 'l')) {
                    pos += 3;
                    goto emit;
                }
            }
        }
        if (!(cp == '\r' || cp == '\n' || (f & AR_CPT_NUMBER))) { /* [^\r\n\p{L}\p{N}]?\p{L}+ */
            if ((f & AR_CPT_LETTER) || (flags_at(c, ini, end, pos + 1) & AR_CPT_LETTER)) {
                pos++;
                while (flags_at(c, ini, end, pos) & AR_CPT_LETTER) pos++;
                goto emit;
            }
        }
        if (f & AR_CPT_NUMBER) { /* \p{N}{1,3} */
            size_t group = pos;
            while (flags_at(c, ini, end, pos) & AR_CPT_NUMBER) {
                pos++;
                if (pos - group >= 3) {
                    if (!pieces_push(out, pos - group)) return false;
                    group = pos;
                }
            }
            start = group;
            goto emit;
        }
        uint8_t f2 = cp == ' ' ? flags_at(c, ini, end, pos + 1) : f;
        if (!(f2 & F_LNW) && f) { /* ?[^\s\p{L}\p{N}]+[\r\n]* */
            pos += cp == ' ';
            for (;;) {
                uint8_t g = flags_at(c, ini, end, pos);
                if ((g & F_LNW) || !g) break;
                pos++;
            }
            for (;;) {
                uint32_t x = cpt_at(c, ini, end, pos);
                if (x != '\r' && x != '\n') break;
                pos++;
            }
            goto emit;
        }
        size_t n_ws = 0, last_crlf_end = 0;
        while (flags_at(c, ini, end, pos + n_ws) & AR_CPT_WHITESPACE) {
            uint32_t x = c->cp[pos + n_ws];
            if (x == '\r' || x == '\n') last_crlf_end = pos + n_ws + 1;
            n_ws++;
        }
        if (last_crlf_end > 0) { /* \s*[\r\n]+ */
            pos = last_crlf_end;
            goto emit;
        }
        if (n_ws > 1 && pos + n_ws < end) { /* \s+(?!\S) */
            pos += n_ws - 1;
            goto emit;
        }
        pos += n_ws ? n_ws : 1;
    emit:
        if (!pieces_push(out, pos - start)) return false;
    }
    return true;
}

/* Runs collapsed pattern `rx` over one chunk; matches and the gaps between them are pieces. */
static bool split_regex(const split_ctx *c, int rx, pcre2_match_data *md, size_t ini, size_t end,
                        pieces *out) {
    const PCRE2_SPTR subject = (PCRE2_SPTR)(c->collapsed + ini);
    size_t len = end - ini, at = 0, prev = 0;
    while (at < len) {
        int rc = pcre2_match(rx_code[rx], subject, len, at, 0, md, NULL);
        if (rc < 0) break; /* no further match (errors cannot happen on these simple patterns) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* an empty match would loop; none of the patterns allows one */
            at = ov[0] + 1;
            continue;
        }
        if (!pieces_push(out, ov[0] - prev) || !pieces_push(out, ov[1] - ov[0])) return false;
        prev = at = ov[1];
    }
    return pieces_push(out, len - prev);
}

/* deepseek-coder's [一-龥ࠀ-一가-퟿]+, which llama.cpp runs as std::wregex on code points
 * (with non-ASCII whitespace replaced by 0x0B, so U+3000 and the like never match). */
static bool in_cjk_class(uint32_t cp) {
    if (ar_cpt_flags(cp) & AR_CPT_WHITESPACE) return false;
    return (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x0800 && cp <= 0x4E00) ||
           (cp >= 0xAC00 && cp <= 0xD7FF);
}

static bool split_cjk(const split_ctx *c, size_t ini, size_t end, pieces *out) {
    size_t pos = ini, prev = ini;
    while (pos < end) {
        if (!in_cjk_class(c->cp[pos])) {
            pos++;
            continue;
        }
        size_t run = pos;
        while (pos < end && in_cjk_class(c->cp[pos])) pos++;
        if (!pieces_push(out, run - prev) || !pieces_push(out, pos - run)) return false;
        prev = pos;
    }
    return pieces_push(out, end - prev);
}

enum { PASS_GPT2 = RX_COUNT, PASS_LLAMA3, PASS_CJK, PASS_END = -1 };

static const int passes[AR_PRE_COUNT][6] = {
    [AR_PRE_DEFAULT] = {RX_PUNCT_DEFAULT, PASS_GPT2, RX_NUMBERS, RX_DIGIT3, PASS_END},
    [AR_PRE_GPT2] = {PASS_GPT2, PASS_END},
    [AR_PRE_LLAMA3] = {PASS_LLAMA3, PASS_END},
    [AR_PRE_QWEN2] = {RX_QWEN2, PASS_END},
    [AR_PRE_DEEPSEEK_CODER] = {RX_CRLF, RX_WS_LETTERS, RX_WS_PUNCT, PASS_CJK, RX_NUMBER, PASS_END},
    [AR_PRE_FALCON] = {RX_PUNCT_FALCON, PASS_GPT2, RX_DIGIT3, PASS_END},
    [AR_PRE_STARCODER] = {RX_NUMBER, PASS_GPT2, PASS_END},
};

static uint8_t collapse(uint32_t cp) {
    if (cp < 0x80) return (uint8_t)cp;
    uint8_t f = ar_cpt_flags(cp);
    if (f & AR_CPT_WHITESPACE) return 0x0B;
    if (f & AR_CPT_NUMBER) return 0xD1;
    if (f & AR_CPT_LETTER) return 0xD2;
    if (f & AR_CPT_PUNCT) return 0xD3;
    if (f & AR_CPT_MARK) return 0xD4;
    if (f & AR_CPT_SYMBOL) return 0xD5;
    return 0xD0;
}

ar_status ar_pretokenize(ar_pre_kind kind, const char *text, size_t len, ar_piece_fn fn,
                         void *user) {
    if ((unsigned)kind >= AR_PRE_COUNT)
        return ar_fail(AR_ERR_INVALID_ARG, "pretokenize: bad pre-tokenizer kind %d", (int)kind);
    pthread_once(&rx_once, compile_patterns);
    if (rx_status != AR_OK)
        return ar_fail(rx_status, "pretokenize: PCRE2 refused a pattern: %s", rx_error);
    pthread_once(&cpt_once, build_cpt_table);
    if (!cpt_table)
        return ar_fail(AR_ERR_NOMEM, "pretokenize: cannot build the Unicode category table");

    ar_cpts cps;
    ar_status st = ar_utf8_decode(text, len, &cps);
    if (st != AR_OK) return st;
    if (cps.n == 0) {
        ar_cpts_free(&cps);
        return AR_OK;
    }
    uint8_t *collapsed = malloc(cps.n);
    pieces cur = {0}, next = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!collapsed || !md || !pieces_push(&cur, cps.n)) {
        st = ar_fail(AR_ERR_NOMEM, "tokenize: out of memory splitting %zu bytes", len);
        goto done;
    }
    for (size_t i = 0; i < cps.n; i++) collapsed[i] = collapse(cps.cp[i]);
    split_ctx ctx = {cps.cp, collapsed, cps.n};

    for (const int *pass = passes[kind]; *pass != PASS_END; pass++) {
        next.n = 0;
        size_t at = 0;
        bool ok = true;
        for (size_t i = 0; i < cur.n && ok; i++) {
            size_t end = at + cur.len[i];
            switch (*pass) {
            case PASS_GPT2:
                ok = split_gpt2(&ctx, at, end, &next);
                break;
            case PASS_LLAMA3:
                ok = split_llama3(&ctx, at, end, &next);
                break;
            case PASS_CJK:
                ok = split_cjk(&ctx, at, end, &next);
                break;
            default:
                ok = split_regex(&ctx, *pass, md, at, end, &next);
                break;
            }
            at = end;
        }
        if (!ok) {
            st = ar_fail(AR_ERR_NOMEM, "tokenize: out of memory splitting %zu bytes", len);
            goto done;
        }
        pieces t = cur;
        cur = next;
        next = t;
    }

    size_t at = 0;
    for (size_t i = 0; i < cur.n && st == AR_OK; i++) {
        size_t end = at + cur.len[i];
        size_t b0 = cps.byte_off[at], b1 = cps.byte_off[end];
        st = fn(user, cps.cp + at, end - at, text + b0, b1 - b0);
        at = end;
    }
done:
    pcre2_match_data_free(md);
    free(collapsed);
    free(cur.len);
    free(next.len);
    ar_cpts_free(&cps);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Merge ranks                                                                               */
/* ---------------------------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int32_t pairmap_get(const ar_pairmap *m, int32_t a, int32_t b) {
    if (!m->keys) return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint64_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == 0) return -1;
    }
}

ar_status ar_bpe_load_merges(ar_vocab *v, const ar_str *merges, uint64_t n) {
    if (n > (uint64_t)INT32_MAX / 2)
        return ar_fail(AR_ERR_FORMAT, "tokenizer.ggml.merges: %llu merges is too many",
                       (unsigned long long)n);
    /* Each merge "left right" splits at the first space after the first byte (a merge without
     * one becomes the pair ("", ""), as in llama.cpp). Sides are interned: side i of merge m is
     * string 2m+i, and the map resolves equal strings to the first index. */
    v->merge_side = calloc(2 * n + 1, sizeof *v->merge_side);
    if (!v->merge_side) return ar_fail(AR_ERR_NOMEM, "tokenizer.ggml.merges: out of memory");
    for (uint64_t m = 0; m < n; m++) {
        const char *s = merges[m].ptr;
        uint64_t len = merges[m].len;
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (sp) {
            v->merge_side[2 * m] = (ar_str){s, (uint64_t)(sp - s)};
            v->merge_side[2 * m + 1] = (ar_str){sp + 1, len - (uint64_t)(sp - s) - 1};
        } else {
            v->merge_side[2 * m] = (ar_str){"", 0};
            v->merge_side[2 * m + 1] = (ar_str){"", 0};
        }
    }
    ar_status st = ar_strmap_build(&v->merge_map, v->merge_side, (int32_t)(2 * n));
    if (st != AR_OK) return st;

    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    v->ranks.keys = calloc(cap, sizeof *v->ranks.keys);
    v->ranks.vals = malloc(cap * sizeof *v->ranks.vals);
    v->ranks.mask = cap - 1;
    if (!v->ranks.keys || !v->ranks.vals)
        return ar_fail(AR_ERR_NOMEM, "tokenizer.ggml.merges: out of memory");
    for (uint64_t m = 0; m < n; m++) {
        const ar_str *l = &v->merge_side[2 * m], *r = &v->merge_side[2 * m + 1];
        int32_t a = ar_strmap_get(&v->merge_map, l->ptr, l->len);
        int32_t b = ar_strmap_get(&v->merge_map, r->ptr, r->len);
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        uint64_t i = mix64(key) & v->ranks.mask;
        while (v->ranks.keys[i] != 0 && v->ranks.keys[i] != key) i = (i + 1) & v->ranks.mask;
        if (v->ranks.keys[i] == 0) { /* the first (lowest) rank of a repeated merge wins */
            v->ranks.keys[i] = key;
            v->ranks.vals[i] = (int32_t)m;
        }
    }
    return AR_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* The merge loop                                                                            */
/* ---------------------------------------------------------------------------------------- */

typedef struct bpe_symbol {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the encoded word; n == 0 once merged away */
    int32_t side;    /* interned merge-side id of the text, -1 if it is no merge side */
} bpe_symbol;

typedef struct bpe_bigram {
    int32_t left, right, rank;
    uint32_t size;
} bpe_bigram;

typedef struct bpe_session {
    const ar_vocab *v;
    ar_ids *out;
    char *word;
    size_t word_cap;
    bpe_symbol *sym;
    size_t sym_cap;
    bpe_bigram *heap;
    size_t heap_n, heap_cap;
} bpe_session;

/* Lowest rank first, then leftmost. */
static inline bool bigram_before(const bpe_bigram *a, const bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool heap_push(bpe_session *s, bpe_bigram b) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        bpe_bigram *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return false;
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = b;
    return true;
}

static bpe_bigram heap_pop(bpe_session *s) {
    bpe_bigram top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && bigram_before(&s->heap[child + 1], &s->heap[child])) child++;
        if (!bigram_before(&s->heap[child], &last)) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

static bool try_bigram(bpe_session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const bpe_symbol *l = &s->sym[left], *r = &s->sym[right];
    if (l->side < 0 || r->side < 0) return true;
    int32_t rank = pairmap_get(&s->v->ranks, l->side, r->side);
    if (rank < 0) return true;
    return heap_push(s, (bpe_bigram){left, right, rank, l->n + r->n});
}

static ar_status emit_symbol(bpe_session *s, const char *text, size_t n) {
    int32_t id = ar_strmap_get(&s->v->token_map, text, n);
    if (id >= 0) return ar_ids_push(s->out, id);
    /* not a token: its bytes one by one, skipping bytes that are no token either */
    for (size_t i = 0; i < n; i++) {
        int32_t b = ar_strmap_get(&s->v->token_map, text + i, 1);
        if (b >= 0 && ar_ids_push(s->out, b) != AR_OK) return AR_ERR_NOMEM;
    }
    return AR_OK;
}

static ar_status bpe_word(void *user, const uint32_t *cp, size_t n_cp, const char *bytes,
                          size_t n_bytes) {
    (void)bytes;
    (void)n_bytes;
    bpe_session *s = user;
    /* byte-level encoding of the UTF-8 of the code points: at most 4 x 2 bytes each */
    size_t need = n_cp * 8;
    if (need > s->word_cap) {
        char *w = realloc(s->word, need);
        if (!w) return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
        s->word = w;
        s->word_cap = need;
    }
    size_t wlen = 0;
    for (size_t i = 0; i < n_cp; i++) {
        char u[4];
        int k = ar_utf8_encode(cp[i], u);
        for (int j = 0; j < k; j++)
            wlen += (size_t)ar_utf8_encode(ar_byte_to_cpt((uint8_t)u[j]), s->word + wlen);
    }
    const char *w = s->word;
    if (s->v->ignore_merges) {
        int32_t id = ar_strmap_get(&s->v->token_map, w, wlen);
        if (id >= 0) return ar_ids_push(s->out, id);
    }
    if (wlen > s->sym_cap) {
        bpe_symbol *sy = realloc(s->sym, wlen * sizeof *sy);
        if (!sy) return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
        s->sym = sy;
        s->sym_cap = wlen;
    }
    /* one symbol per encoded character (1 or 2 bytes: all code points are below U+0800) */
    int32_t n_sym = 0;
    for (size_t off = 0; off < wlen;) {
        uint32_t n = ((uint8_t)w[off] >= 0xC0) ? 2 : 1;
        if (off + n > wlen) n = (uint32_t)(wlen - off);
        bpe_symbol *y = &s->sym[n_sym];
        y->prev = n_sym - 1;
        y->off = (uint32_t)off;
        y->n = n;
        off += n;
        y->next = off == wlen ? -1 : n_sym + 1;
        y->side = ar_strmap_get(&s->v->merge_map, w + y->off, n);
        n_sym++;
    }
    s->heap_n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!try_bigram(s, i - 1, i)) return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
    while (s->heap_n > 0) {
        bpe_bigram b = heap_pop(s);
        bpe_symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* outdated */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = b.left;
        l->side = ar_strmap_get(&s->v->merge_map, w + l->off, l->n);
        if (!try_bigram(s, l->prev, b.left) || !try_bigram(s, b.left, l->next))
            return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
    }
    for (int32_t i = 0; i < n_sym; i++) {
        if (s->sym[i].n == 0) continue;
        if (emit_symbol(s, w + s->sym[i].off, s->sym[i].n) != AR_OK)
            return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
    }
    return AR_OK;
}

ar_status ar_bpe_tokenize(const ar_vocab *v, const char *text, size_t len, ar_ids *out) {
    bpe_session s = {.v = v, .out = out};
    ar_status st = ar_pretokenize(v->pre, text, len, bpe_word, &s);
    free(s.word);
    free(s.sym);
    free(s.heap);
    return st;
}
