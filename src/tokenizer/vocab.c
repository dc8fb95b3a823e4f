/* vocab.c: the tokenizer read from GGUF metadata (tokenizer.ggml.*): loading with llama.cpp's
 * defaults and special-token rules, the split of text around special tokens, tokenization
 * (SPM in vocab_spm.c, BPE in vocab_bpe.c), pieces and streaming detokenization, and the
 * drafter/verifier vocabulary check.
 *
 * Reference behaviour: llama.cpp c392e5094 (src/llama-vocab.cpp). Where llama.cpp aborts or
 * throws on a malformed vocabulary we return an error instead (duplicate pieces, short score
 * arrays), and where its result depends on hash-map order (several texts claiming the same
 * special role) we take the lowest id. */
#include "vocab_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MAX_PIECE_BYTES (1 << 20) /* a piece that prints longer than this is refused */

/* ---------------------------------------------------------------------------------------- */
/* Small containers                                                                          */
/* ---------------------------------------------------------------------------------------- */

ar_status ar_ids_push(ar_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return AR_OK;
}

ar_status ar_strmap_build(ar_strmap *m, const ar_str *keys, int32_t n) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    m->tags = malloc(cap * sizeof *m->tags);
    m->mask = cap - 1;
    m->keys = keys;
    if (!m->slots || !m->tags) return ar_fail(AR_ERR_NOMEM, "vocab: out of memory for a hash map");
    memset(m->slots, 0xFF, cap * sizeof *m->slots);
    for (int32_t k = 0; k < n; k++) {
        uint64_t h = XXH3_64bits(keys[k].ptr, keys[k].len);
        uint32_t tag = (uint32_t)(h >> 32);
        uint64_t i = h & m->mask;
        for (;; i = (i + 1) & m->mask) {
            int32_t s = m->slots[i];
            if (s < 0) break;
            if (m->tags[i] == tag && keys[s].len == keys[k].len &&
                memcmp(keys[s].ptr, keys[k].ptr, keys[k].len) == 0)
                break;
        }
        if (m->slots[i] < 0) {
            m->slots[i] = k;
            m->tags[i] = tag;
        }
    }
    return AR_OK;
}

int32_t ar_strmap_get(const ar_strmap *m, const char *s, size_t len) {
    if (!m->slots) return -1;
    uint64_t h = XXH3_64bits(s, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & m->mask;; i = (i + 1) & m->mask) {
        int32_t k = m->slots[i];
        if (k < 0) return -1;
        if (m->tags[i] == tag && m->keys[k].len == len && memcmp(m->keys[k].ptr, s, len) == 0)
            return k;
    }
}

void ar_strmap_free(ar_strmap *m) {
    free(m->slots);
    free(m->tags);
    m->slots = NULL;
    m->tags = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Loading                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static bool str_is(ar_str s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* A special id from `key`: kept when present and below n_tokens, else the default stays
 * (llama.cpp: "bad special token ... using default id"; 4294967295 is such a value). */
static void read_special_id(const ar_gguf *g, const char *key, int32_t n_tokens, int32_t *id) {
    const ar_gguf_kv *kv = ar_gguf_find(g, key);
    if (!kv) return;
    int64_t x;
    switch (kv->type) {
    case AR_GGUF_UINT8:
    case AR_GGUF_UINT16:
    case AR_GGUF_UINT32:
    case AR_GGUF_UINT64:
        x = kv->v.u > (uint64_t)INT32_MAX ? -1 : (int64_t)kv->v.u;
        break;
    case AR_GGUF_INT8:
    case AR_GGUF_INT16:
    case AR_GGUF_INT32:
    case AR_GGUF_INT64:
        x = kv->v.i;
        break;
    default:
        return;
    }
    if (x >= 0 && x < n_tokens) *id = (int32_t)x;
}

static ar_status read_bool(const ar_gguf *g, const char *key, bool *out) {
    ar_status st = ar_gguf_get_bool(g, key, out);
    if (st == AR_ERR_INVALID_ARG) return AR_OK; /* absent: keep the default */
    return st;
}

/* Finds the lowest id whose text is one of `texts` (NULL-terminated list). */
static int32_t find_text(const ar_vocab *v, const char *const *texts) {
    int32_t best = AR_TOKEN_NONE;
    for (const char *const *t = texts; *t; t++) {
        int32_t id = ar_strmap_get(&v->token_map, *t, strlen(*t));
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

static void force_control(ar_vocab *v, int32_t id) {
    if (!(v->attr[id] & AR_ATTR_CONTROL))
        v->attr[id] = (uint16_t)((v->attr[id] & AR_ATTR_EOG) | AR_ATTR_CONTROL);
}

/* A special role not given by its key is found by text; the token found becomes a control
 * token (llama.cpp's workaround for converters that do not record these ids). */
static void detect_role(ar_vocab *v, int32_t *id, const char *const *texts) {
    if (*id != AR_TOKEN_NONE) return;
    *id = find_text(v, texts);
    if (*id >= 0) force_control(v, *id);
}

static void detect_special_roles(ar_vocab *v) {
    static const char *const eot[] = {"<|eot_id|>",
                                      "<|im_end|>",
                                      "<|end|>",
                                      "<end_of_turn>",
                                      "<|endoftext|>",
                                      "<EOT>",
                                      "<\xef\xbd\x9c"
                                      "end\xe2\x96\x81of\xe2\x96\x81sentence"
                                      "\xef\xbd\x9c>",
                                      NULL};
    static const char *const eom[] = {"<|eom_id|>", NULL};
    static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>",
                                          "<\xef\xbd\x9c"
                                          "fim\xe2\x96\x81"
                                          "begin\xef\xbd\x9c>",
                                          "<PRE>", NULL};
    static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>",
                                          "<\xef\xbd\x9c"
                                          "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                                          "<SUF>", NULL};
    static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>",
                                          "<\xef\xbd\x9c"
                                          "fim\xe2\x96\x81"
                                          "end\xef\xbd\x9c>",
                                          "<MID>", NULL};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                          NULL};
    static const char *const fim_sep[] = {"<|file_sep|>", NULL};
    static const char *const eog[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                      "<|endoftext|>", "<|eom_id|>", "<EOT>",   NULL};
    detect_role(v, &v->eot, eot);
    detect_role(v, &v->eom, eom);
    detect_role(v, &v->fim_pre, fim_pre);
    detect_role(v, &v->fim_suf, fim_suf);
    detect_role(v, &v->fim_mid, fim_mid);
    detect_role(v, &v->fim_pad, fim_pad);
    detect_role(v, &v->fim_rep, fim_rep);
    detect_role(v, &v->fim_sep, fim_sep);

    /* end of generation: FIM pad/repo/file-separator, every token with an end-of-turn text,
     * EOS, EOT and EOM */
    const int32_t roles[] = {v->fim_pad, v->fim_rep, v->fim_sep, v->eos, v->eot, v->eom};
    for (size_t i = 0; i < AR_ARRAY_LEN(roles); i++)
        if (roles[i] >= 0) v->attr[roles[i]] |= AR_ATTR_EOG;
    for (const char *const *t = eog; *t; t++) {
        int32_t id = ar_strmap_get(&v->token_map, *t, strlen(*t));
        if (id < 0) continue;
        force_control(v, id);
        v->attr[id] |= AR_ATTR_EOG;
    }
}

typedef struct len_id {
    uint64_t len;
    int32_t id;
} len_id;

static int cmp_len_desc(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Control, user-defined and unknown tokens, longest text first (ties by id: llama.cpp's sort
 * is not stable, its order among equal lengths is unspecified). */
static ar_status build_special_list(ar_vocab *v) {
    int32_t n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++)
        n += (v->attr[id] & (AR_ATTR_CONTROL | AR_ATTR_USER_DEFINED | AR_ATTR_UNKNOWN)) != 0;
    len_id *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    v->special = malloc((size_t)(n ? n : 1) * sizeof *v->special);
    v->special_next = malloc((size_t)(n ? n : 1) * sizeof *v->special_next);
    v->special_head = malloc(65536 * sizeof *v->special_head);
    if (!order || !v->special || !v->special_next || !v->special_head) {
        free(order);
        return ar_fail(AR_ERR_NOMEM, "vocab: out of memory");
    }
    n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++)
        if (v->attr[id] & (AR_ATTR_CONTROL | AR_ATTR_USER_DEFINED | AR_ATTR_UNKNOWN))
            order[n++] = (len_id){v->text[id].len, id};
    qsort(order, (size_t)n, sizeof *order, cmp_len_desc);
    for (int32_t i = 0; i < n; i++) v->special[i] = order[i].id;
    v->n_special = n;
    free(order);
    /* index by the first two bytes, so one pass over a text finds the ones that occur */
    memset(v->special_head, 0xFF, 65536 * sizeof *v->special_head);
    for (int32_t i = n - 1; i >= 0; i--) {
        ar_str t = v->text[v->special[i]];
        if (t.len < 2) continue;
        unsigned key = (unsigned)(uint8_t)t.ptr[0] << 8 | (uint8_t)t.ptr[1];
        v->special_next[i] = v->special_head[key];
        v->special_head[key] = i;
    }
    return AR_OK;
}

/* llama.cpp sets per-token strip attributes by model name: Phi-3 special tokens eat the
 * whitespace that follows them, except <unk>, <s> and <|endoftext|>. */
static void apply_name_rules(ar_vocab *v, const ar_gguf *g) {
    ar_str name;
    if (ar_gguf_get_str(g, "general.name", &name) != AR_OK) {
        ar_clear_error();
        return;
    }
    char lower[256];
    size_t n = name.len < sizeof lower - 1 ? (size_t)name.len : sizeof lower - 1;
    for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)name.ptr[i]);
    lower[n] = 0;
    if (!strstr(lower, "phi-3") && !strstr(lower, "phi3")) return;
    for (int32_t i = 0; i < v->n_special; i++) v->attr[v->special[i]] |= AR_ATTR_RSTRIP;
    int32_t id = ar_strmap_get(&v->token_map, "</s>", 4);
    if (id >= 0) v->attr[id] |= AR_ATTR_RSTRIP;
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (size_t i = 0; i < AR_ARRAY_LEN(keep); i++) {
        id = ar_strmap_get(&v->token_map, keep[i], strlen(keep[i]));
        if (id >= 0) v->attr[id] &= (uint16_t)~AR_ATTR_RSTRIP;
    }
}

static uint16_t attr_from_type(int64_t t) {
    switch (t) {
    case AR_TOKEN_NORMAL:
        return AR_ATTR_NORMAL;
    case AR_TOKEN_UNKNOWN:
        return AR_ATTR_UNKNOWN;
    case AR_TOKEN_CONTROL:
        return AR_ATTR_CONTROL;
    case AR_TOKEN_USER_DEFINED:
        return AR_ATTR_USER_DEFINED;
    case AR_TOKEN_UNUSED:
        return AR_ATTR_UNUSED;
    case AR_TOKEN_BYTE:
        return AR_ATTR_BYTE;
    default:
        return 0; /* undefined: prints nothing, never special */
    }
}

static uint64_t compute_fingerprint(const ar_vocab *v) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) return 0;
    XXH64_reset(st, 0);
    int32_t head[4] = {(int32_t)v->kind, v->bos, v->eos, v->n_tokens};
    XXH64_update(st, head, sizeof head);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint64_t len = v->text[id].len;
        XXH64_update(st, &len, sizeof len);
        XXH64_update(st, v->text[id].ptr, (size_t)len);
    }
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}

static bool is_int_type(ar_gguf_vtype t) {
    return t <= AR_GGUF_INT32 || t == AR_GGUF_UINT64 || t == AR_GGUF_INT64;
}

static ar_status load_pieces(ar_vocab *v, const ar_gguf *g) {
    const ar_gguf_kv *toks;
    ar_status st = ar_gguf_get_arr(g, "tokenizer.ggml.tokens", AR_GGUF_STRING, &toks);
    if (st == AR_ERR_INVALID_ARG)
        return ar_fail(AR_ERR_FORMAT, "%s: no tokenizer.ggml.tokens (the vocabulary)", g->path);
    if (st != AR_OK) return st;
    if (toks->arr_n == 0 || toks->arr_n >= (uint64_t)INT32_MAX)
        return ar_fail(AR_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", g->path,
                       (unsigned long long)toks->arr_n);
    int32_t n = (int32_t)toks->arr_n;
    v->n_tokens = n;
    v->text = malloc((size_t)n * sizeof *v->text);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->attr = malloc((size_t)n * sizeof *v->attr);
    if (!v->text || !v->score || !v->attr) return ar_fail(AR_ERR_NOMEM, "vocab: out of memory");

    /* llama.cpp renames empty pieces "[EMPTY_<id>]" */
    size_t owned = 0;
    for (int32_t i = 0; i < n; i++)
        if (toks->arr_strs[i].len == 0) owned += 24;
    if (owned) {
        v->owned = malloc(owned);
        if (!v->owned) return ar_fail(AR_ERR_NOMEM, "vocab: out of memory");
    }
    owned = 0;
    for (int32_t i = 0; i < n; i++) {
        v->text[i] = toks->arr_strs[i];
        if (v->text[i].len == 0) {
            int k = snprintf(v->owned + owned, 24, "[EMPTY_%d]", (int)i);
            v->text[i] = (ar_str){v->owned + owned, (uint64_t)k};
            owned += 24;
        }
        v->attr[i] = AR_ATTR_NORMAL;
    }

    const ar_gguf_kv *scores = ar_gguf_find(g, "tokenizer.ggml.scores");
    if (scores) {
        if (scores->type != AR_GGUF_ARRAY ||
            (scores->arr_type != AR_GGUF_FLOAT32 && scores->arr_type != AR_GGUF_FLOAT64))
            return ar_fail(AR_ERR_FORMAT, "%s: tokenizer.ggml.scores is not a float array",
                           g->path);
        if (scores->arr_n != toks->arr_n)
            return ar_fail(AR_ERR_FORMAT,
                           "%s: tokenizer.ggml.scores has %llu entries for %d tokens", g->path,
                           (unsigned long long)scores->arr_n, (int)n);
        for (int32_t i = 0; i < n; i++) v->score[i] = (float)ar_gguf_arr_f64(scores, (uint64_t)i);
    }
    const ar_gguf_kv *types = ar_gguf_find(g, "tokenizer.ggml.token_type");
    if (types) {
        if (types->type != AR_GGUF_ARRAY || !is_int_type(types->arr_type))
            return ar_fail(AR_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an integer array",
                           g->path);
        if (types->arr_n != toks->arr_n)
            return ar_fail(AR_ERR_FORMAT,
                           "%s: tokenizer.ggml.token_type has %llu entries for %d tokens", g->path,
                           (unsigned long long)types->arr_n, (int)n);
        for (int32_t i = 0; i < n; i++)
            v->attr[i] = attr_from_type(ar_gguf_arr_i64(types, (uint64_t)i));
    }

    st = ar_strmap_build(&v->token_map, v->text, n);
    if (st != AR_OK) return st;
    for (int32_t i = 0; i < n; i++) {
        int32_t first = ar_strmap_get(&v->token_map, v->text[i].ptr, v->text[i].len);
        if (first != i)
            return ar_fail(AR_ERR_FORMAT, "%s: tokenizer.ggml.tokens: token %d repeats token %d",
                           g->path, (int)i, (int)first);
    }
    return AR_OK;
}

static int32_t piece_length(const ar_vocab *v, int32_t id);

static ar_status vocab_load(ar_vocab *v, const ar_gguf *g) {
    ar_str model;
    ar_status st = ar_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (st == AR_ERR_INVALID_ARG)
        return ar_fail(AR_ERR_FORMAT, "%s: no tokenizer.ggml.model", g->path);
    if (st != AR_OK) return st;
    if (str_is(model, "llama")) {
        v->kind = AR_VOCAB_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_space_prefix = true;
        v->add_bos = true;
    } else if (str_is(model, "gpt2")) {
        v->kind = AR_VOCAB_BPE;
        v->bos = 11, v->eos = 11, v->unk = AR_TOKEN_NONE; /* llama.cpp's BPE defaults */
        v->pre = AR_PRE_DEFAULT;
        ar_str pre;
        st = ar_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
        if (st == AR_OK) {
            if (!ar_pre_kind_from_name(pre.ptr, pre.len, &v->pre, &v->ignore_merges, &v->add_bos))
                return ar_fail(AR_ERR_UNSUPPORTED,
                               "%s: pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported; "
                               "supported: %s",
                               g->path, (int)(pre.len > 64 ? 64 : pre.len), pre.ptr,
                               ar_pre_supported_names());
        } else if (st != AR_ERR_INVALID_ARG) {
            return st;
        }
    } else {
        return ar_fail(AR_ERR_UNSUPPORTED,
                       "%s: tokenizer model '%.*s' (tokenizer.ggml.model) is not supported; "
                       "supported: llama, gpt2",
                       g->path, (int)(model.len > 64 ? 64 : model.len), model.ptr);
    }
    v->eot = v->eom = v->sep = v->pad = AR_TOKEN_NONE;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = AR_TOKEN_NONE;
    if ((st = read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix)) != AR_OK)
        return st;

    if ((st = load_pieces(v, g)) != AR_OK) return st;
    int32_t n = v->n_tokens;

    if (v->kind == AR_VOCAB_BPE) {
        const ar_gguf_kv *merges;
        st = ar_gguf_get_arr(g, "tokenizer.ggml.merges", AR_GGUF_STRING, &merges);
        if (st == AR_ERR_INVALID_ARG)
            return ar_fail(AR_ERR_FORMAT, "%s: gpt2 tokenizer without tokenizer.ggml.merges",
                           g->path);
        if (st != AR_OK) return st;
        if ((st = ar_bpe_load_merges(v, merges->arr_strs, merges->arr_n)) != AR_OK) return st;
    }

    static const struct {
        const char *key;
        size_t field;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(ar_vocab, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(ar_vocab, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(ar_vocab, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(ar_vocab, eom)},
        {"tokenizer.ggml.unknown_token_id", offsetof(ar_vocab, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(ar_vocab, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(ar_vocab, pad)},
        {"tokenizer.ggml.fim_pre_token_id", offsetof(ar_vocab, fim_pre)},
        {"tokenizer.ggml.fim_suf_token_id", offsetof(ar_vocab, fim_suf)},
        {"tokenizer.ggml.fim_mid_token_id", offsetof(ar_vocab, fim_mid)},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(ar_vocab, fim_pad)},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(ar_vocab, fim_rep)},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(ar_vocab, fim_sep)},
        /* deprecated names, read after the new ones as llama.cpp does */
        {"tokenizer.ggml.prefix_token_id", offsetof(ar_vocab, fim_pre)},
        {"tokenizer.ggml.suffix_token_id", offsetof(ar_vocab, fim_suf)},
        {"tokenizer.ggml.middle_token_id", offsetof(ar_vocab, fim_mid)},
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(ids); i++)
        read_special_id(g, ids[i].key, n, (int32_t *)((char *)v + ids[i].field));
    /* a default id the vocabulary is too small for is no id */
    int32_t *defaults[] = {&v->bos, &v->eos, &v->unk};
    for (size_t i = 0; i < AR_ARRAY_LEN(defaults); i++)
        if (*defaults[i] >= n) *defaults[i] = AR_TOKEN_NONE;
    if ((st = read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos)) != AR_OK) return st;
    if ((st = read_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos)) != AR_OK) return st;

    detect_special_roles(v);
    if ((st = build_special_list(v)) != AR_OK) return st;
    apply_name_rules(v, g);

    for (int b = 0; b < 256; b++) {
        char hex[7];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        char one = (char)b;
        int32_t id = ar_strmap_get(&v->token_map, hex, 6);
        v->byte_token[b] = id >= 0 ? id : ar_strmap_get(&v->token_map, &one, 1);
    }

    /* SPM pieces with "▁" only in a leading run let the merge work word by word */
    v->spm_split_words = v->kind == AR_VOCAB_SPM;
    for (int32_t id = 0; id < n && v->spm_split_words; id++) {
        ar_str t = v->text[id];
        uint64_t k = 0;
        while (t.len - k >= 3 && memcmp(t.ptr + k, "\xe2\x96\x81", 3) == 0) k += 3;
        if (memmem(t.ptr + k, (size_t)(t.len - k), "\xe2\x96\x81", 3)) v->spm_split_words = false;
    }

    v->max_piece = 0;
    for (int32_t id = 0; id < n; id++) {
        int32_t len = piece_length(v, id);
        if (len < 0)
            return ar_fail(AR_ERR_FORMAT, "%s: token %d prints as more than %d bytes", g->path,
                           (int)id, MAX_PIECE_BYTES);
        if (len > v->max_piece) v->max_piece = len;
    }
    v->fingerprint = compute_fingerprint(v);
    return AR_OK;
}

ar_status ar_vocab_load(const ar_gguf *g, ar_vocab **out) {
    if (!g || !out) return ar_fail(AR_ERR_INVALID_ARG, "ar_vocab_load: NULL argument");
    *out = NULL;
    ar_vocab *v = calloc(1, sizeof *v);
    if (!v) return ar_fail(AR_ERR_NOMEM, "vocab: out of memory");
    ar_status st = vocab_load(v, g);
    if (st != AR_OK) {
        ar_vocab_free(v);
        return st;
    }
    *out = v;
    return AR_OK;
}

void ar_vocab_free(ar_vocab *v) {
    if (!v) return;
    free(v->text);
    free(v->score);
    free(v->attr);
    free(v->owned);
    free(v->special);
    free(v->special_next);
    free(v->special_head);
    free(v->merge_side);
    ar_strmap_free(&v->token_map);
    ar_strmap_free(&v->merge_map);
    free(v->ranks.keys);
    free(v->ranks.vals);
    free(v);
}

/* ---------------------------------------------------------------------------------------- */
/* Accessors                                                                                 */
/* ---------------------------------------------------------------------------------------- */

int32_t ar_vocab_n_tokens(const ar_vocab *v) {
    return v->n_tokens;
}
ar_vocab_kind ar_vocab_kind_of(const ar_vocab *v) {
    return v->kind;
}
int32_t ar_vocab_bos(const ar_vocab *v) {
    return v->bos;
}
int32_t ar_vocab_eos(const ar_vocab *v) {
    return v->eos;
}
bool ar_vocab_add_bos(const ar_vocab *v) {
    return v->add_bos;
}
bool ar_vocab_add_eos(const ar_vocab *v) {
    return v->add_eos;
}

bool ar_vocab_is_eog(const ar_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_tokens && (v->attr[id] & AR_ATTR_EOG);
}

ar_token_attr ar_vocab_token_type(const ar_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n_tokens) return (ar_token_attr)0;
    uint16_t a = v->attr[id];
    if (a & AR_ATTR_NORMAL) return AR_TOKEN_NORMAL;
    if (a & AR_ATTR_UNKNOWN) return AR_TOKEN_UNKNOWN;
    if (a & AR_ATTR_CONTROL) return AR_TOKEN_CONTROL;
    if (a & AR_ATTR_USER_DEFINED) return AR_TOKEN_USER_DEFINED;
    if (a & AR_ATTR_UNUSED) return AR_TOKEN_UNUSED;
    if (a & AR_ATTR_BYTE) return AR_TOKEN_BYTE;
    return (ar_token_attr)0;
}

ar_str ar_vocab_piece_raw(const ar_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n_tokens) return (ar_str){NULL, 0};
    return v->text[id];
}

/* ---------------------------------------------------------------------------------------- */
/* Special tokens in text                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct fragment {
    int32_t token; /* -1: raw text */
    size_t off, len;
} fragment;

typedef struct fragments {
    fragment *v;
    size_t n, cap;
} fragments;

static bool frag_push(fragments *f, int32_t token, size_t off, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        fragment *v = realloc(f->v, cap * sizeof *v);
        if (!v) return false;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (fragment){token, off, len};
    return true;
}

static bool c_isspace(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Splits the text around special tokens: for each special token in turn (longest first), every
 * raw fragment is cut at each occurrence, left to right. Control and unknown tokens count only
 * with parse_special; user-defined tokens always do. LSTRIP/RSTRIP tokens swallow the
 * whitespace next to them. */
static ar_status partition(const ar_vocab *v, const char *text, size_t len, bool parse_special,
                           fragments *out) {
    fragments cur = {0}, next = {0};
    bool *present = NULL;
    if (len > 0 && !frag_push(&cur, -1, 0, len)) goto nomem;
    if (len == 0 || v->n_special == 0) goto done;
    /* which special tokens occur at all: one pass over the text */
    present = calloc((size_t)v->n_special, sizeof *present);
    if (!present) goto nomem;
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned key = (unsigned)(uint8_t)text[i] << 8 | (uint8_t)text[i + 1];
        for (int32_t j = v->special_head[key]; j >= 0; j = v->special_next[j]) {
            ar_str t = v->text[v->special[j]];
            if (!present[j] && t.len <= len - i && memcmp(text + i, t.ptr, (size_t)t.len) == 0)
                present[j] = true;
        }
    }
    for (int32_t j = 0; j < v->n_special; j++) {
        ar_str t = v->text[v->special[j]];
        if (t.len == 1) present[j] = memchr(text, t.ptr[0], len) != NULL;
    }

    for (int32_t s = 0; s < v->n_special && cur.n > 0; s++) {
        int32_t id = v->special[s];
        uint16_t attr = v->attr[id];
        if (!present[s]) continue;
        if (!parse_special && (attr & (AR_ATTR_CONTROL | AR_ATTR_UNKNOWN))) continue;
        const char *tok = v->text[id].ptr;
        size_t tlen = (size_t)v->text[id].len;
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            fragment f = cur.v[i];
            if (f.token >= 0) {
                if (!frag_push(&next, f.token, 0, 0)) goto nomem;
                continue;
            }
            size_t off = f.off, rem = f.len;
            for (;;) {
                const char *hit = memmem(text + off, rem, tok, tlen);
                if (!hit) {
                    if (rem > 0 && !frag_push(&next, -1, off, rem)) goto nomem;
                    break;
                }
                size_t at = (size_t)(hit - text);
                size_t left = at - off;
                if (attr & AR_ATTR_LSTRIP)
                    while (left > 0 && c_isspace(text[off + left - 1])) left--;
                if (left > 0 && !frag_push(&next, -1, off, left)) goto nomem;
                if (!frag_push(&next, id, 0, 0)) goto nomem;
                size_t roff = at + tlen, rlen = off + rem - roff;
                if (attr & AR_ATTR_RSTRIP)
                    while (rlen > 0 && c_isspace(text[roff])) roff++, rlen--;
                off = roff;
                rem = rlen;
                if (rem == 0) break;
            }
        }
        fragments t = cur;
        cur = next;
        next = t;
    }
done:
    free(present);
    free(next.v);
    *out = cur;
    return AR_OK;
nomem:
    free(present);
    free(cur.v);
    free(next.v);
    return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory");
}

/* ---------------------------------------------------------------------------------------- */
/* Tokenization                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* SPM input: an optional leading space, then every space escaped as U+2581 ("▁"). */
static ar_status spm_fragment(const ar_vocab *v, const char *text, size_t len, bool prefix,
                              ar_ids *out) {
    size_t n_spaces = prefix;
    for (size_t i = 0; i < len; i++) n_spaces += text[i] == ' ';
    size_t total = len + prefix + 2 * n_spaces;
    char *buf = malloc(total ? total : 1);
    if (!buf) return ar_fail(AR_ERR_NOMEM, "tokenize: out of memory for %zu bytes", len);
    size_t k = 0;
    for (size_t i = 0; i < len + prefix; i++) {
        char c = (prefix && i == 0) ? ' ' : text[i - prefix];
        if (c == ' ') {
            memcpy(buf + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            buf[k++] = c;
        }
    }
    ar_status st = ar_spm_tokenize(v, buf, k, out);
    free(buf);
    return st;
}

int64_t ar_tokenize(const ar_vocab *v, const char *text, size_t len, bool add_special,
                    bool parse_special, int32_t *out, int64_t cap) {
    if (!v || (!text && len) || cap < 0 || (!out && cap > 0))
        return ar_fail(AR_ERR_INVALID_ARG, "ar_tokenize: bad argument");
    fragments frags = {0};
    ar_ids ids = {0};
    ar_status st = partition(v, text, len, parse_special, &frags);
    if (st != AR_OK) return st;

    if (add_special && v->add_bos && v->bos >= 0) st = ar_ids_push(&ids, v->bos);
    bool prev_special =
        true; /* SPM: the first fragment and any after a special token get a space */
    for (size_t i = 0; i < frags.n && st == AR_OK; i++) {
        const fragment *f = &frags.v[i];
        if (f->token >= 0) {
            st = ar_ids_push(&ids, f->token);
            prev_special = true;
        } else if (v->kind == AR_VOCAB_SPM) {
            st = spm_fragment(v, text + f->off, f->len, v->add_space_prefix && prev_special, &ids);
            prev_special = false;
        } else {
            st = ar_bpe_tokenize(v, text + f->off, f->len, &ids);
        }
    }
    if (st == AR_OK && add_special && v->add_eos && v->eos >= 0) st = ar_ids_push(&ids, v->eos);
    free(frags.v);
    if (st != AR_OK) {
        free(ids.v);
        return st;
    }
    int64_t n = (int64_t)ids.n;
    if (n > 0 && cap > 0) memcpy(out, ids.v, (size_t)(n < cap ? n : cap) * sizeof *out);
    free(ids.v);
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Pieces                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* SPM byte token "<0xNN>": llama.cpp reads the two characters after "<0x" with strtol. */
static char spm_byte(ar_str t) {
    char hex[3] = {0};
    if (t.len > 3) memcpy(hex, t.ptr + 3, t.len - 3 >= 2 ? 2 : (size_t)(t.len - 3));
    return (char)strtol(hex, NULL, 16);
}

/* GPT-2 byte-level text back to bytes; a code point outside the alphabet prints as llama.cpp
 * does: "[UNK_BYTE_0x" + its UTF-8 in hex + the whole piece + "]". Stops counting past
 * MAX_PIECE_BYTES. */
static void bpe_decode(ar_str t, ar_sink *s) {
    for (size_t i = 0; i < t.len && s->n <= MAX_PIECE_BYTES;) {
        uint32_t cp;
        int k = ar_utf8_next(t.ptr, (size_t)t.len, i, &cp);
        if (k == 0) cp = 0xFFFD, k = 1;
        i += (size_t)k;
        int b = ar_cpt_to_byte(cp);
        if (b >= 0) {
            char c = (char)b;
            ar_sink_put(s, &c, 1);
            continue;
        }
        char u[4], hex[9] = {0};
        int nu = ar_utf8_encode(cp, u);
        for (int j = 0; j < nu; j++) snprintf(hex + 2 * j, 3, "%02x", (uint8_t)u[j]);
        ar_sink_put(s, "[UNK_BYTE_0x", 12);
        ar_sink_put(s, hex, (size_t)(2 * nu));
        ar_sink_put(s, t.ptr, (size_t)t.len);
        ar_sink_put(s, "]", 1);
    }
}

static int64_t piece(const ar_vocab *v, int32_t id, bool special, char *buf, int64_t cap) {
    ar_sink s = {buf, cap, 0};
    uint16_t attr = v->attr[id];
    ar_str t = v->text[id];
    if (!special && (attr & (AR_ATTR_UNKNOWN | AR_ATTR_CONTROL))) return 0;
    if (attr & (AR_ATTR_UNKNOWN | AR_ATTR_CONTROL | AR_ATTR_USER_DEFINED)) {
        ar_sink_put(&s, t.ptr, (size_t)t.len);
    } else if (attr & AR_ATTR_NORMAL) {
        if (v->kind == AR_VOCAB_SPM) {
            for (uint64_t i = 0; i < t.len;) {
                if (t.len - i >= 3 && memcmp(t.ptr + i, "\xe2\x96\x81", 3) == 0) {
                    ar_sink_put(&s, " ", 1);
                    i += 3;
                } else {
                    ar_sink_put(&s, t.ptr + i, 1);
                    i++;
                }
            }
        } else {
            bpe_decode(t, &s);
        }
    } else if ((attr & AR_ATTR_BYTE) && v->kind == AR_VOCAB_SPM && t.len >= 3) {
        char c = spm_byte(t);
        ar_sink_put(&s, &c, 1);
    }
    return s.n;
}

/* Printed length with special = true (the longest form), or -1 when over the limit. */
static int32_t piece_length(const ar_vocab *v, int32_t id) {
    int64_t n = piece(v, id, true, NULL, 0);
    return (n < 0 || n > MAX_PIECE_BYTES) ? -1 : (int32_t)n;
}

int32_t ar_token_to_piece(const ar_vocab *v, int32_t id, bool special, char *buf, int32_t cap) {
    if (!v || id < 0 || id >= v->n_tokens)
        return ar_fail(AR_ERR_INVALID_ARG, "token id %d is out of range [0, %d)", (int)id,
                       v ? (int)v->n_tokens : 0);
    if (cap < 0 || (!buf && cap > 0))
        return ar_fail(AR_ERR_INVALID_ARG, "ar_token_to_piece: bad buffer");
    return (int32_t)piece(v, id, special, buf, cap);
}

/* ---------------------------------------------------------------------------------------- */
/* Streaming detokenizer                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Length of a UTF-8 sequence its lead byte announces (1 for bytes that cannot lead one). */
static int lead_length(uint8_t c) {
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 1;
}

/* How many bytes at the end of buf start a character that is not complete yet. */
static int incomplete_tail(const char *buf, int32_t n) {
    for (int k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = (uint8_t)buf[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: keep looking for the lead */
        return lead_length(c) > k ? k : 0;
    }
    return 0;
}

int32_t ar_detok_push(ar_detok *d, const ar_vocab *v, int32_t id, char *buf, int32_t cap) {
    if (!d || !buf || cap < 0 || d->n_pending < 0 || d->n_pending > 3)
        return ar_fail(AR_ERR_INVALID_ARG, "ar_detok_push: bad argument");
    int32_t len = ar_token_to_piece(v, id, false, NULL, 0);
    if (len < 0) return len;
    if ((int64_t)d->n_pending + len > cap)
        return ar_fail(AR_ERR_INVALID_ARG, "ar_detok_push: %d bytes do not fit a buffer of %d",
                       (int)(d->n_pending + len), (int)cap);
    memcpy(buf, d->pending, (size_t)d->n_pending);
    ar_token_to_piece(v, id, false, buf + d->n_pending, cap - d->n_pending);
    int32_t total = d->n_pending + len;
    int hold = incomplete_tail(buf, total);
    memcpy(d->pending, buf + total - hold, (size_t)hold);
    d->n_pending = hold;
    return total - hold;
}

int32_t ar_detok_flush(ar_detok *d, char *buf, int32_t cap) {
    if (!d || d->n_pending < 0 || d->n_pending > 3 || (!buf && d->n_pending > 0))
        return ar_fail(AR_ERR_INVALID_ARG, "ar_detok_flush: bad argument");
    if (d->n_pending > cap)
        return ar_fail(AR_ERR_INVALID_ARG, "ar_detok_flush: buffer of %d bytes is too small",
                       (int)cap);
    int32_t n = d->n_pending;
    memcpy(buf, d->pending, (size_t)n);
    d->n_pending = 0;
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Drafter / verifier compatibility                                                          */
/* ---------------------------------------------------------------------------------------- */

uint64_t ar_vocab_fingerprint(const ar_vocab *v) {
    return v->fingerprint;
}

/* A piece for a message: at most 40 bytes, non-printable bytes as \xHH. */
static void quote_piece(ar_str t, char *out, size_t cap) {
    size_t k = 0;
    for (uint64_t i = 0; i < t.len && k + 5 < cap; i++) {
        uint8_t c = (uint8_t)t.ptr[i];
        if (i >= 40) {
            k += (size_t)snprintf(out + k, cap - k, "...");
            break;
        }
        if (c < 0x20 || c == 0x7F || c == '\'' || c == '\\')
            k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c);
        else
            out[k++] = (char)c;
    }
    out[k] = 0;
}

/* A row a converter added to pad the vocabulary to the embedding's size: type unused, or the
 * "[PAD<id>]" text convert_hf_to_gguf.py gives such rows. */
static bool is_padding(const ar_vocab *v, int32_t id) {
    if (v->attr[id] & AR_ATTR_UNUSED) return true;
    ar_str t = v->text[id];
    return t.len > 5 && !memcmp(t.ptr, "[PAD", 4) && t.ptr[t.len - 1] == ']';
}

static const char *kind_name(ar_vocab_kind k) {
    return k == AR_VOCAB_SPM ? "SPM (llama)" : "BPE (gpt2)";
}

ar_status ar_vocab_compatible(const ar_vocab *target, const ar_vocab *draft) {
    if (!target || !draft) return ar_fail(AR_ERR_INVALID_ARG, "ar_vocab_compatible: NULL vocab");
    if (target->kind != draft->kind)
        return ar_fail(AR_ERR_INCOMPATIBLE,
                       "vocabularies differ: target tokenizer is %s, draft is %s",
                       kind_name(target->kind), kind_name(draft->kind));
    if (target->bos != draft->bos)
        return ar_fail(AR_ERR_INCOMPATIBLE,
                       "vocabularies differ: BOS id %d in the target, %d in the draft",
                       (int)target->bos, (int)draft->bos);
    if (target->eos != draft->eos)
        return ar_fail(AR_ERR_INCOMPATIBLE,
                       "vocabularies differ: EOS id %d in the target, %d in the draft",
                       (int)target->eos, (int)draft->eos);
    int32_t nt = target->n_tokens, nd = draft->n_tokens;
    /* the larger list's tail beyond the smaller one: padding (unused "[PAD<id>]" rows that
     * converters add up to the embedding's size, Qwen2.5 0.5B vs 7B) in any number, or up to
     * 128 tokens of any kind; beyond that the first real token there is the difference */
    const ar_vocab *big = nt > nd ? target : draft;
    int32_t lo = nt < nd ? nt : nd, real = 0, first_real = -1;
    for (int32_t id = lo; id < big->n_tokens; id++)
        if (!is_padding(big, id) && real++ == 0) first_real = id;
    if (real > 128) {
        char q[200];
        quote_piece(big->text[first_real], q, sizeof q);
        return ar_fail(AR_ERR_INCOMPATIBLE,
                       "vocabularies differ at token %d: the %s has '%s', the %s has %d tokens "
                       "(%d tokens in the target, %d in the draft; only padding may differ by "
                       "more than 128)",
                       (int)first_real, big == target ? "target" : "draft", q,
                       big == target ? "draft" : "target", (int)lo, (int)nt, (int)nd);
    }
    if (target->fingerprint == draft->fingerprint) return AR_OK;
    int32_t n = nt < nd ? nt : nd;
    for (int32_t id = 0; id < n; id++) {
        ar_str a = target->text[id], b = draft->text[id];
        if (a.len == b.len && memcmp(a.ptr, b.ptr, (size_t)a.len) == 0) continue;
        char qa[200], qb[200];
        quote_piece(a, qa, sizeof qa);
        quote_piece(b, qb, sizeof qb);
        return ar_fail(AR_ERR_INCOMPATIBLE,
                       "vocabularies differ at token %d: target piece '%s', draft piece '%s'",
                       (int)id, qa, qb);
    }
    return AR_OK;
}
