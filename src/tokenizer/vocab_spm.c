/* vocab_spm.c: SentencePiece-style BPE with scores ("llama" vocabularies), as llama.cpp's
 * llm_tokenizer_spm does it: start from one symbol per UTF-8 character (the lead byte alone
 * decides the length, nothing is validated), repeatedly merge the adjacent pair whose
 * concatenation is the vocabulary piece with the highest score (ties: leftmost), and write each
 * final symbol as its token, or as byte tokens <0xNN> when it is no piece. */
#include "vocab_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_symbol {
    int32_t prev, next;
    uint32_t off, n; /* n == 0 once merged into its left neighbour */
} spm_symbol;

typedef struct spm_bigram {
    int32_t left, right;
    float score;
    uint32_t size;
} spm_bigram;

typedef struct spm_heap {
    spm_bigram *v;
    size_t n, cap;
} spm_heap;

/* Highest score first, then leftmost. */
static inline bool bigram_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(spm_heap *h, spm_bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        spm_bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = b;
    return true;
}

static spm_bigram heap_pop(spm_heap *h) {
    spm_bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n) break;
        if (child + 1 < h->n && bigram_before(&h->v[child + 1], &h->v[child])) child++;
        if (!bigram_before(&h->v[child], &last)) break;
        h->v[i] = h->v[child];
        i = child;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

/* Queues the merge of two adjacent symbols when their concatenation is a piece. */
static bool try_bigram(const ar_vocab *v, const char *text, const spm_symbol *sym, spm_heap *h,
                       int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    uint32_t size = sym[left].n + sym[right].n;
    int32_t id = ar_strmap_get(&v->token_map, text + sym[left].off, size);
    if (id < 0) return true;
    return heap_push(h, (spm_bigram){left, right, v->score[id], size});
}

static ar_status emit_symbol(const ar_vocab *v, const char *text, uint32_t n, ar_ids *out) {
    int32_t id = ar_strmap_get(&v->token_map, text, n);
    if (id >= 0) return ar_ids_push(out, id);
    for (uint32_t i = 0; i < n; i++) {
        int32_t b = v->byte_token[(uint8_t)text[i]];
        /* llama.cpp throws when a byte has no token; we fall back to <unk>, or drop the byte */
        if (b < 0) b = v->unk;
        if (b >= 0 && ar_ids_push(out, b) != AR_OK) return AR_ERR_NOMEM;
    }
    return AR_OK;
}

typedef struct spm_session {
    const ar_vocab *v;
    spm_symbol *sym;
    size_t sym_cap;
    spm_heap heap;
    ar_ids *out;
} spm_session;

static const uint8_t utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

static inline uint32_t symbol_length(const char *text, size_t off, size_t len) {
    uint32_t n = utf8_len[(uint8_t)text[off] >> 4];
    return n > len - off ? (uint32_t)(len - off) : n;
}

/* The merge loop over one segment of text. */
static bool merge_segment(spm_session *s, const char *text, size_t len) {
    const ar_vocab *v = s->v;
    if (len > s->sym_cap) {
        spm_symbol *sym = realloc(s->sym, len * sizeof *sym);
        if (!sym) return false;
        s->sym = sym;
        s->sym_cap = len;
    }
    spm_symbol *sym = s->sym;
    int32_t n_sym = 0;
    for (size_t off = 0; off < len;) {
        uint32_t n = symbol_length(text, off, len);
        spm_symbol *y = &sym[n_sym];
        y->off = (uint32_t)off;
        y->n = n;
        y->prev = n_sym - 1;
        off += n;
        y->next = off == len ? -1 : n_sym + 1;
        n_sym++;
    }
    s->heap.n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!try_bigram(v, text, sym, &s->heap, i - 1, i)) return false;
    while (s->heap.n > 0) {
        spm_bigram b = heap_pop(&s->heap);
        spm_symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* outdated */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        if (!try_bigram(v, text, sym, &s->heap, l->prev, b.left) ||
            !try_bigram(v, text, sym, &s->heap, b.left, l->next))
            return false;
    }
    for (int32_t i = 0; i != -1; i = sym[i].next)
        if (emit_symbol(v, text + sym[i].off, sym[i].n, s->out) != AR_OK) return false;
    return true;
}

static bool is_space_symbol(const char *text, size_t off, uint32_t n) {
    return n == 3 && memcmp(text + off, "\xe2\x96\x81", 3) == 0;
}

ar_status ar_spm_tokenize(const ar_vocab *v, const char *text, size_t len, ar_ids *out) {
    if (len == 0) return AR_OK;
    if (len >= INT32_MAX) return ar_fail(AR_ERR_INVALID_ARG, "tokenize: text too long");
    spm_session s = {.v = v, .out = out};
    bool ok = true;
    if (!v->spm_split_words) {
        ok = merge_segment(&s, text, len);
    } else {
        /* No piece holds a "▁" after anything but "▁"s, so no merge ever joins a symbol with a
         * "▁" symbol that follows a non-"▁" one: cutting there gives the same result as one
         * run over the whole text, with small queues that stay in cache. */
        size_t seg = 0;
        bool prev_space = false;
        for (size_t off = 0; off < len && ok;) {
            uint32_t n = symbol_length(text, off, len);
            bool space = is_space_symbol(text, off, n);
            if (space && !prev_space && off > seg) {
                ok = merge_segment(&s, text + seg, off - seg);
                seg = off;
            }
            prev_space = space;
            off += n;
        }
        if (ok) ok = merge_segment(&s, text + seg, len - seg);
    }
    free(s.sym);
    free(s.heap.v);
    return ok ? AR_OK : ar_fail(AR_ERR_NOMEM, "tokenize: out of memory for %zu bytes", len);
}
