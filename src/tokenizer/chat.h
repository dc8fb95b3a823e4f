/* chat.h: chat templates. A model's tokenizer.chat_template (Jinja) is recognised by its markers,
 * as llama.cpp's llm_chat_detect_template does, and rendered by a small C function per family
 * that writes the template's published form; there is no Jinja interpreter. */
#ifndef ARBOR_CHAT_H
#define ARBOR_CHAT_H

#include "src/core/util.h"

typedef enum ar_chat_family {
    AR_CHAT_UNKNOWN = 0,
    AR_CHAT_CHATML,            /* <|im_start|>role\n...<|im_end|>\n (Qwen) */
    AR_CHAT_LLAMA3,            /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    AR_CHAT_GEMMA,             /* <start_of_turn>user|model\n...<end_of_turn>\n */
    AR_CHAT_PHI3,              /* <|role|>\n...<|end|>\n */
    AR_CHAT_PHI4,              /* <|im_start|>role<|im_sep|>...<|im_end|> */
    AR_CHAT_LLAMA2,            /* [INST] ... [/INST], no system block (Mistral v0.1) */
    AR_CHAT_LLAMA2_SYS,        /* with a <<SYS>> block */
    AR_CHAT_LLAMA2_SYS_BOS,    /* and <s> before every later [INST] */
    AR_CHAT_LLAMA2_SYS_STRIP,  /* Llama-2-chat's own: contents stripped, " A </s><s>[INST] " */
    AR_CHAT_MISTRAL_V1,        /* " [INST] ... [/INST]" */
    AR_CHAT_MISTRAL_V3,        /* "[INST] ...[/INST] A</s>" */
    AR_CHAT_MISTRAL_V3_TEKKEN, /* "[INST]...[/INST]A</s>" */
    AR_CHAT_MISTRAL_V7,        /* [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] */
    AR_CHAT_COUNT
} ar_chat_family;

typedef struct ar_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} ar_chat_msg;

/* The family's name ("chatml", "llama3", ...). */
const char *ar_chat_name(ar_chat_family f);
/* The family called `name`, or AR_CHAT_UNKNOWN. */
ar_chat_family ar_chat_from_name(const char *name);
/* All names, comma-separated (for messages). */
const char *ar_chat_names(void);
/* The family a Jinja template belongs to, by its markers; AR_CHAT_UNKNOWN when none fits. */
ar_chat_family ar_chat_detect(const char *tmpl, size_t len);

/* Renders n messages (and, with add_assistant, the opening of the assistant's turn). Writes at
 * most cap bytes and returns the full length, or a negative ar_status (a role other than
 * system/user/assistant, a NULL string). BOS is not written: the tokenizer adds it. */
int64_t ar_chat_format(ar_chat_family f, const ar_chat_msg *msgs, size_t n, bool add_assistant,
                       char *buf, int64_t cap);

#endif
