/* chat.c: recognising and rendering chat templates (see chat.h). The renderings are the
 * families' published templates (the Jinja in each model's tokenizer_config.json) for the
 * messages system / user / assistant, with llama.cpp's conventions where a template has no rule:
 * Gemma and the [INST] families without a system block fold the system message into the first
 * user turn. */
#include "chat.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[AR_CHAT_COUNT] = {
    [AR_CHAT_UNKNOWN] = "unknown",
    [AR_CHAT_CHATML] = "chatml",
    [AR_CHAT_LLAMA3] = "llama3",
    [AR_CHAT_GEMMA] = "gemma",
    [AR_CHAT_PHI3] = "phi3",
    [AR_CHAT_PHI4] = "phi4",
    [AR_CHAT_LLAMA2] = "llama2",
    [AR_CHAT_LLAMA2_SYS] = "llama2-sys",
    [AR_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [AR_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [AR_CHAT_MISTRAL_V1] = "mistral-v1",
    [AR_CHAT_MISTRAL_V3] = "mistral-v3",
    [AR_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [AR_CHAT_MISTRAL_V7] = "mistral-v7",
};

const char *ar_chat_name(ar_chat_family f) {
    return (unsigned)f < AR_CHAT_COUNT ? names[f] : names[AR_CHAT_UNKNOWN];
}

ar_chat_family ar_chat_from_name(const char *name) {
    for (int f = 1; name && f < AR_CHAT_COUNT; f++)
        if (!strcmp(names[f], name)) return (ar_chat_family)f;
    return AR_CHAT_UNKNOWN;
}

const char *ar_chat_names(void) {
    return "chatml, llama3, gemma, phi3, phi4, llama2, llama2-sys, llama2-sys-bos, "
           "llama2-sys-strip, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7";
}

/* ---- recognition ---- */

typedef struct text {
    const char *s;
    size_t n;
} text;

static bool has(text t, const char *marker) {
    return memmem(t.s, t.n, marker, strlen(marker)) != NULL;
}

/* The order of the tests is llama.cpp's: an earlier family's markers win. Families arbor does
 * not render (Zephyr, Falcon 3, ...) are recognised as such so that their templates are not
 * taken for a later family's: they are unknown here. */
ar_chat_family ar_chat_detect(const char *tmpl, size_t len) {
    const text t = {tmpl, len};
    if (!tmpl) return AR_CHAT_UNKNOWN;
    if (has(t, "<|im_start|>")) return has(t, "<|im_sep|>") ? AR_CHAT_PHI4 : AR_CHAT_CHATML;
    if ((len >= 7 && !memcmp(tmpl, "mistral", 7)) || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) return AR_CHAT_MISTRAL_V7;
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]")) return AR_CHAT_MISTRAL_V1;
            if (has(t, "\"[INST]\"")) return AR_CHAT_MISTRAL_V3_TEKKEN;
            return AR_CHAT_MISTRAL_V3;
        }
        if (has(t, "content.strip()")) return AR_CHAT_LLAMA2_SYS_STRIP;
        if (has(t, "bos_token + '[INST]")) return AR_CHAT_LLAMA2_SYS_BOS;
        if (has(t, "<<SYS>>")) return AR_CHAT_LLAMA2_SYS;
        return AR_CHAT_LLAMA2;
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return AR_CHAT_PHI3;
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) return AR_CHAT_UNKNOWN; /* falcon3 */
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return AR_CHAT_UNKNOWN; /* zephyr */
    if (has(t, "bos_token + message['role']")) return AR_CHAT_UNKNOWN;         /* monarch */
    if (has(t, "<start_of_turn>")) return AR_CHAT_GEMMA;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return AR_CHAT_LLAMA3;
    return AR_CHAT_UNKNOWN;
}

/* ---- rendering ---- */

static void put(ar_sink *s, const char *p) { ar_sink_put(s, p, strlen(p)); }

/* Jinja's trim / Python's strip(): leading (when `lead`) and trailing whitespace removed. */
static text stripped(const char *p, bool lead) {
    size_t a = 0, b = strlen(p);
    while (lead && a < b && isspace((unsigned char)p[a])) a++;
    while (b > a && isspace((unsigned char)p[b - 1])) b--;
    return (text){p + a, b - a};
}
static text trimmed(const char *p) { return stripped(p, true); }
static void put_trimmed(ar_sink *s, const char *p) {
    text t = trimmed(p);
    ar_sink_put(s, t.s, t.n);
}

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

/* The families whose turns are "open role mid content close": one row each. */
typedef struct tagged_family {
    ar_chat_family family;
    const char *open, *mid, *close, *assistant; /* assistant: the opening of its turn */
    bool trim;                                  /* contents trimmed (Jinja's | trim) */
} tagged_family;

static const tagged_family tagged[] = {
    {AR_CHAT_CHATML, "<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n", false},
    {AR_CHAT_PHI4, "<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>",
     false},
    {AR_CHAT_LLAMA3, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n", true},
    {AR_CHAT_PHI3, "<|", "|>\n", "<|end|>\n", "<|assistant|>\n", false},
};

static const tagged_family *tagged_of(ar_chat_family f) {
    for (size_t i = 0; i < sizeof tagged / sizeof tagged[0]; i++)
        if (tagged[i].family == f) return &tagged[i];
    return NULL;
}

static void tagged_turns(ar_sink *s, const tagged_family *t, const ar_chat_msg *m, size_t n,
                         bool add) {
    for (size_t i = 0; i < n; i++) {
        put(s, t->open);
        put(s, m[i].role);
        put(s, t->mid);
        if (t->trim) put_trimmed(s, m[i].content);
        else put(s, m[i].content);
        put(s, t->close);
    }
    if (add) put(s, t->assistant);
}

/* Gemma's template knows user and model turns only: a system message opens the next user turn */
static void gemma(ar_sink *s, const ar_chat_msg *m, const role *r, size_t n, bool add) {
    const char *system = NULL;
    for (size_t i = 0; i < n; i++) {
        if (r[i] == ROLE_SYSTEM) {
            system = m[i].content;
            continue;
        }
        put(s, r[i] == ROLE_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (system && r[i] == ROLE_USER) {
            text t = trimmed(system);
            if (t.n) {
                ar_sink_put(s, t.s, t.n);
                put(s, "\n\n");
            }
            system = NULL;
        }
        put_trimmed(s, m[i].content);
        put(s, "<end_of_turn>\n");
    }
    if (add) put(s, "<start_of_turn>model\n");
}

/* [INST] families. Llama-2-chat's own template (SYS_STRIP): "[INST] <<SYS>>\nS\n<</SYS>>\n\nU
 * [/INST] A </s><s>[INST] U2 [/INST]", contents stripped; the other llama2 variants as llama.cpp
 * renders them. */
static void llama2(ar_sink *s, ar_chat_family f, const ar_chat_msg *m, const role *r, size_t n) {
    const bool sys_block = f != AR_CHAT_LLAMA2, published = f == AR_CHAT_LLAMA2_SYS_STRIP;
    const bool bos_inside = f == AR_CHAT_LLAMA2_SYS_BOS || published;
    bool inside = true; /* the first [INST] follows the tokenizer's BOS */
    bool after_sys = false; /* Llama-2-chat strips "<<SYS>>...U" as one string */
    put(s, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            inside = true;
            put(s, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (r[i] == ROLE_SYSTEM) {
            if (sys_block) {
                put(s, "<<SYS>>\n");
                put(s, m[i].content);
                put(s, "\n<</SYS>>\n\n");
                after_sys = true;
            } else {
                put(s, m[i].content);
                put(s, "\n");
            }
        } else if (r[i] == ROLE_USER) {
            if (published) {
                text t = stripped(m[i].content, !after_sys);
                ar_sink_put(s, t.s, t.n);
            } else {
                put(s, m[i].content);
            }
            after_sys = false;
            put(s, " [/INST]");
        } else {
            if (published) {
                put(s, " ");
                put_trimmed(s, m[i].content);
                put(s, " </s>");
            } else {
                put(s, m[i].content);
                put(s, "</s>");
            }
            inside = false;
        }
    }
}

static void mistral(ar_sink *s, ar_chat_family f, const ar_chat_msg *m, const role *r, size_t n) {
    if (f == AR_CHAT_MISTRAL_V7) {
        for (size_t i = 0; i < n; i++) {
            if (r[i] == ROLE_SYSTEM) put(s, "[SYSTEM_PROMPT] ");
            else if (r[i] == ROLE_USER) put(s, "[INST] ");
            else put(s, " ");
            put(s, m[i].content);
            put(s, r[i] == ROLE_SYSTEM ? "[/SYSTEM_PROMPT]" : r[i] == ROLE_USER ? "[/INST]" : "</s>");
        }
        return;
    }
    const char *lead = f == AR_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = f == AR_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            put(s, lead);
            put(s, "[INST]");
            put(s, trail);
            inside = true;
        }
        if (r[i] == ROLE_SYSTEM) {
            put(s, m[i].content);
            put(s, "\n\n");
        } else if (r[i] == ROLE_USER) {
            put(s, m[i].content);
            put(s, lead);
            put(s, "[/INST]");
        } else {
            put(s, trail);
            if (f == AR_CHAT_MISTRAL_V3) put_trimmed(s, m[i].content);
            else put(s, m[i].content);
            put(s, "</s>");
            inside = false;
        }
    }
}

int64_t ar_chat_format(ar_chat_family f, const ar_chat_msg *msgs, size_t n, bool add_assistant,
                       char *buf, int64_t cap) {
    if ((unsigned)f >= AR_CHAT_COUNT || f == AR_CHAT_UNKNOWN)
        return ar_fail(AR_ERR_INVALID_ARG, "chat: no template family given");
    if ((n && !msgs) || cap < 0 || (!buf && cap > 0))
        return ar_fail(AR_ERR_INVALID_ARG, "chat: bad argument");
    role stack_roles[64], *roles = n <= 64 ? stack_roles : malloc(n * sizeof *roles);
    if (!roles) return ar_fail(AR_ERR_NOMEM, "chat: out of memory for %zu messages", n);
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content) {
            if (roles != stack_roles) free(roles);
            return ar_fail(AR_ERR_INVALID_ARG, "chat: message %zu has a NULL role or content", i);
        }
        if (!strcmp(r, "system")) roles[i] = ROLE_SYSTEM;
        else if (!strcmp(r, "user")) roles[i] = ROLE_USER;
        else if (!strcmp(r, "assistant")) roles[i] = ROLE_ASSISTANT;
        else {
            if (roles != stack_roles) free(roles);
            return ar_fail(AR_ERR_INVALID_ARG,
                           "chat: message %zu has role '%.32s' (system, user or assistant)", i, r);
        }
    }
    ar_sink s = {buf, cap, 0};
    const tagged_family *t = tagged_of(f);
    switch (f) {
    case AR_CHAT_CHATML:
    case AR_CHAT_PHI4:
    case AR_CHAT_LLAMA3:
    case AR_CHAT_PHI3: tagged_turns(&s, t, msgs, n, add_assistant); break;
    case AR_CHAT_GEMMA: gemma(&s, msgs, roles, n, add_assistant); break;
    case AR_CHAT_LLAMA2:
    case AR_CHAT_LLAMA2_SYS:
    case AR_CHAT_LLAMA2_SYS_BOS:
    case AR_CHAT_LLAMA2_SYS_STRIP: llama2(&s, f, msgs, roles, n); break;
    default: mistral(&s, f, msgs, roles, n); break;
    }
    if (roles != stack_roles) free(roles);
    return s.n;
}
