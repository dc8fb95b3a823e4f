/* test_chat.c: chat templates. Each family's rendering against its published form, written out
 * by hand from the family's Jinja template (one turn with a system message, and a multi-turn
 * conversation); recognition of the families' templates by their markers (template texts as the
 * models ship them in tokenizer_config.json); the API's errors; and `arbor generate --chat` on
 * a synthetic model per family, whose prompt token ids must be exactly the published form's
 * tokens: BOS where the vocabulary adds it, every marker one special token, the text between
 * as the tokenizer splits it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "arbor.h"
#include "src/tokenizer/chat.h"
#include "bench/synth.h"
#include "tests/util/gguf_build.h"
#include "tests/util/refs.h"

static const char *const SYS = "You are terse.", *const USER = "Hi there", *const ANSWER = " Hello! ",
                         *const USER2 = "Bye";

static char *render(ar_chat_family f, const ar_chat_msg *m, size_t n, bool add) {
    int64_t len = ar_chat_format(f, m, n, add, NULL, 0);
    cr_assert_geq(len, 0, "%s: %s", ar_chat_name(f), ar_last_error());
    char *buf = malloc((size_t)len + 1);
    cr_assert_eq(ar_chat_format(f, m, n, add, buf, len), len);
    buf[len] = 0;
    return buf;
}

static void expect_form(const char *family, const char *one_turn, const char *multi_turn) {
    ar_chat_family f = ar_chat_from_name(family);
    cr_assert_neq(f, AR_CHAT_UNKNOWN, "%s", family);
    const ar_chat_msg one[] = {{"system", SYS}, {"user", USER}};
    const ar_chat_msg multi[] = {{"user", USER}, {"assistant", ANSWER}, {"user", USER2}};
    char *a = render(f, one, 2, true);
    cr_expect_str_eq(a, one_turn, "%s, one turn", family);
    free(a);
    if (multi_turn) {
        char *b = render(f, multi, 3, true);
        cr_expect_str_eq(b, multi_turn, "%s, three messages", family);
        free(b);
    }
}

Test(chat, published_forms) {
    expect_form("llama3",
                "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_form("chatml",
                "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                "<|im_start|>assistant\n",
                "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n Hello! <|im_end|>\n"
                "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    expect_form("gemma", /* no system turn in Gemma's template: it opens the first user turn */
                "<start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\n",
                "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n");
    expect_form("phi3",
                "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n",
                "<|user|>\nHi there<|end|>\n<|assistant|>\n Hello! <|end|>\n<|user|>\nBye<|end|>\n"
                "<|assistant|>\n");
    expect_form("phi4",
                "<|im_start|>system<|im_sep|>You are terse.<|im_end|><|im_start|>user<|im_sep|>Hi "
                "there<|im_end|><|im_start|>assistant<|im_sep|>",
                NULL);
    /* Llama-2-chat: "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" per user turn,
     * "{{ ' ' + content.strip() + ' ' + eos_token }}" per answer; the first BOS is the
     * tokenizer's */
    expect_form("llama2-sys-strip", "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST]",
                "[INST] Hi there [/INST] Hello! </s><s>[INST] Bye [/INST]");
    /* Mistral v0.1: "[INST] ' + content + ' [/INST]", answers "content + eos_token"; no system
     * role, folded into the first turn */
    expect_form("llama2", "[INST] You are terse.\nHi there [/INST]",
                "[INST] Hi there [/INST] Hello! </s>[INST] Bye [/INST]");
    expect_form("mistral-v7", "[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi there[/INST]",
                "[INST] Hi there[/INST]  Hello! </s>[INST] Bye[/INST]");
    expect_form("mistral-v3", "[INST] You are terse.\n\nHi there[/INST]",
                "[INST] Hi there[/INST] Hello!</s>[INST] Bye[/INST]");
    expect_form("mistral-v3-tekken", "[INST]You are terse.\n\nHi there[/INST]",
                "[INST]Hi there[/INST] Hello! </s>[INST]Bye[/INST]");
    expect_form("mistral-v1", " [INST] You are terse.\n\nHi there [/INST]",
                " [INST] Hi there [/INST]  Hello! </s> [INST] Bye [/INST]");
}

/* Template texts of the families: Llama 3's verbatim from its tokenizer_config.json; the others
 * transcribed from the models' tokenizer_config.json (the structure and markers as published,
 * the Jinja spelled as there with "\\n" escapes). */
static const char LLAMA3_TMPL[] = /* Llama 3 Instruct, verbatim */
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|"
    "start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endi"
    "f %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
static const char CHATML_TMPL[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";
static const char GEMMA_TMPL[] =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') "
    "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
    "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% "
    "endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";
static const char PHI3_TMPL[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' "
    "%}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";
static const char LLAMA2_TMPL[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
    "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% "
    "endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
    "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
    "eos_token }}{% endif %}{% endfor %}";
static const char MISTRAL01_TMPL[] =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
    "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
    "message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";
static const char ZEPHYR_TMPL[] =
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + "
    "'<|endoftext|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% "
    "endif %}";

Test(chat, families_recognised_by_their_markers) {
    static const struct {
        const char *tmpl, *family;
    } cases[] = {
        {LLAMA3_TMPL, "llama3"},   {CHATML_TMPL, "chatml"},     {GEMMA_TMPL, "gemma"},
        {PHI3_TMPL, "phi3"},       {LLAMA2_TMPL, "llama2-sys-strip"},
        {MISTRAL01_TMPL, "llama2"}, {ZEPHYR_TMPL, "unknown"},   {"{{ messages }}", "unknown"},
        {"{{ '[SYSTEM_PROMPT]' }}{{ '[INST]' }}", "mistral-v7"},
        {"{{ '<|im_start|>' }}{{ '<|im_sep|>' }}", "phi4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_str_eq(ar_chat_name(ar_chat_detect(cases[i].tmpl, strlen(cases[i].tmpl))),
                         cases[i].family, "case %zu", i);
}

/* ---- synthetic models with each family's tokens and template ---- */

static char *tmpdir;
static void setup_tmp(void) { tmpdir = gb_tmpdir(); }
static void teardown_tmp(void) {
    gb_rmdir(tmpdir);
    free(tmpdir);
}

typedef struct family_model {
    const char *family, *tmpl, *vocab;
    const char *tokens[6]; /* added control tokens (the markers the vocabulary lacks) */
    const char *bos;       /* token made BOS, or NULL */
    int add_space_prefix;  /* -1: the vocabulary's */
    const char *markers[6]; /* special tokens of the published form */
    const char *form;       /* the published form of (system SYS, user USER) */
} family_model;

static const family_model families[] = {
    {"llama3", LLAMA3_TMPL, "tokenizer/ggml-vocab-gpt-2.gguf",
     {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
     "<|begin_of_text|>", -1, {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
     "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"chatml", CHATML_TMPL, "tokenizer/ggml-vocab-gpt-2.gguf", {"<|im_start|>", "<|im_end|>"},
     NULL, -1, {"<|im_start|>", "<|im_end|>"},
     "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
     "<|im_start|>assistant\n"},
    {"gemma", GEMMA_TMPL, "tokenizer/ggml-vocab-llama-spm.gguf",
     {"<start_of_turn>", "<end_of_turn>"}, NULL, 0, {"<start_of_turn>", "<end_of_turn>"},
     "<start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"},
    {"phi3", PHI3_TMPL, "tokenizer/ggml-vocab-phi-3.gguf", {NULL}, NULL, -1,
     {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>"},
     "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n"},
    {"llama2-sys-strip", LLAMA2_TMPL, "tokenizer/ggml-vocab-llama-spm.gguf", {NULL}, NULL, -1,
     {NULL}, "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST]"},
    {"llama2", MISTRAL01_TMPL, "tokenizer/ggml-vocab-llama-spm.gguf", {NULL}, NULL, -1, {NULL},
     "[INST] You are terse.\nHi there [/INST]"},
};

static char *write_family_model(const family_model *fm) {
    ar_synth_params p = ar_synth_default_params();
    p.shape = *ar_synth_preset("tiny");
    p.shape.n_layer = 1;
    p.shape.n_embd = 32;
    p.shape.n_head = 2;
    p.shape.n_head_kv = 2;
    p.shape.n_ff = 64;
    p.arch = !strcmp(fm->family, "phi3") ? "phi3" : "llama";
    p.vocab_path = fixture(fm->vocab);
    int n = 0;
    while (n < 6 && fm->tokens[n]) n++;
    p.extra_tokens = fm->tokens;
    p.n_extra_tokens = n;
    p.chat_template = fm->tmpl;
    p.bos_token = fm->bos;
    p.add_space_prefix = fm->add_space_prefix;
    char *path = malloc(strlen(tmpdir) + 64);
    sprintf(path, "%s/%s.gguf", tmpdir, fm->family);
    cr_assert_eq(ar_synth_write(&p, path), AR_OK, "%s", ar_last_error());
    return path;
}

/* `arbor generate --chat` with --verbose-prompt: the ids on its "prompt tokens" line */
static int cli_prompt_ids(const char *model, const char *extra, int32_t *ids, int cap) {
    char cmd[4096], line[1 << 16];
    snprintf(cmd, sizeof cmd,
             "%s generate -m '%s' -sys '%s' -p '%s' -n 0 -t 1 --verbose-prompt %s 2>&1 >/dev/null",
             ARBOR_CLI, model, SYS, USER, extra);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "arbor: prompt tokens (");
        if (!p) continue;
        p = strchr(p, ':') + 1;
        p = strchr(p, ':') + 1;
        n = 0;
        char *end;
        for (long v = strtol(p, &end, 10); end != p && n < cap; v = strtol(p, &end, 10)) {
            ids[n++] = (int32_t)v;
            p = end;
        }
    }
    cr_assert_eq(pclose(f), 0, "%s failed", cmd);
    return n;
}

static size_t count(const char *hay, const char *needle) {
    size_t k = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) k++;
    return k;
}

Test(chat, cli_token_sequences_are_the_published_forms, .init = setup_tmp, .fini = teardown_tmp) {
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const family_model *fm = &families[i];
        char *path = write_family_model(fm);
        arbor_model *m = NULL;
        cr_assert_eq(arbor_model_load(path, arbor_model_default_params(), &m), ARBOR_OK, "%s",
                     arbor_last_error());
        cr_expect_str_eq(arbor_chat_template(m, NULL), fm->family);
        /* the published form, tokenized as a prompt: BOS as the vocabulary says, specials parsed */
        int32_t want[1024], got[1024];
        int nw = arbor_tokenize(m, fm->form, strlen(fm->form), true, true, want, 1024);
        cr_assert_gt(nw, 0);
        int ng = cli_prompt_ids(path, "", got, 1024);
        cr_assert_eq(ng, nw, "%s: %d prompt tokens, the published form has %d", fm->family, ng, nw);
        for (int k = 0; k < nw; k++)
            cr_expect_eq(got[k], want[k], "%s: token %d is %d, the published form's %d",
                         fm->family, k, got[k], want[k]);
        /* and it is the published form's structure: BOS first where added, each marker one
         * special token as often as the form spells it */
        arbor_token bos = arbor_token_bos(m);
        bool adds_bos = arbor_tokenize(m, "", 0, true, false, got, 4) == 1;
        cr_expect_eq(adds_bos && want[0] == bos, adds_bos, "%s: BOS", fm->family);
        for (int k = 0; k < 6 && fm->markers[k]; k++) {
            int32_t id[4];
            cr_assert_eq(arbor_tokenize(m, fm->markers[k], strlen(fm->markers[k]), false, true,
                                        id, 4),
                         1, "%s: marker %s is not one token", fm->family, fm->markers[k]);
            size_t seen = 0;
            for (int t = 0; t < nw; t++) seen += want[t] == id[0];
            cr_expect_eq(seen, count(fm->form, fm->markers[k]), "%s: %s", fm->family,
                         fm->markers[k]);
        }
        /* the same family chosen by name gives the same tokens */
        char extra[64];
        snprintf(extra, sizeof extra, "--chat-template %s", fm->family);
        cr_expect_eq(cli_prompt_ids(path, extra, got, 1024), nw);
        cr_expect(!memcmp(got, want, sizeof(int32_t) * (size_t)nw), "%s by name", fm->family);
        arbor_model_free(m);
        free(path);
    }
}

Test(chat, api_errors, .init = setup_tmp, .fini = teardown_tmp) {
    arbor_model *m = NULL;
    cr_assert_eq(arbor_model_load(fixture("models/stories260K-f32.gguf"),
                                  arbor_model_default_params(), &m),
                 ARBOR_OK);
    const arbor_chat_message msgs[] = {{"user", "Hi"}};
    char buf[256];
    /* no template in the file */
    cr_expect_eq(arbor_chat_format(m, msgs, 1, NULL, buf, sizeof buf), ARBOR_ERR_UNSUPPORTED);
    cr_expect(strstr(arbor_last_error(), "no tokenizer.chat_template"), "%s", arbor_last_error());
    cr_expect_null(arbor_chat_template(m, NULL));
    /* a family by name works without one */
    arbor_chat_params p = arbor_chat_default_params();
    p.template_name = "chatml";
    cr_expect_eq(arbor_chat_format(m, msgs, 1, &p, buf, sizeof buf),
                 (int32_t)strlen("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    p.add_assistant = false;
    cr_expect_eq(arbor_chat_format(m, msgs, 1, &p, buf, 4),
                 (int32_t)strlen("<|im_start|>user\nHi<|im_end|>\n"));
    p.template_name = "vicuna";
    cr_expect_eq(arbor_chat_format(m, msgs, 1, &p, buf, sizeof buf), ARBOR_ERR_INVALID_ARG);
    cr_expect(strstr(arbor_last_error(), "'vicuna' is unknown"), "%s", arbor_last_error());
    p.template_name = "llama3";
    const arbor_chat_message tool[] = {{"tool", "{}"}};
    cr_expect_eq(arbor_chat_format(m, tool, 1, &p, buf, sizeof buf), ARBOR_ERR_INVALID_ARG);
    cr_expect(strstr(arbor_last_error(), "role 'tool'"), "%s", arbor_last_error());
    cr_expect_eq(arbor_chat_format(m, NULL, 1, &p, buf, sizeof buf), ARBOR_ERR_INVALID_ARG);
    cr_expect_eq(arbor_chat_format(NULL, msgs, 1, &p, buf, sizeof buf), ARBOR_ERR_INVALID_ARG);
    arbor_model_free(m);

    /* a template of no supported family */
    ar_synth_params sp = ar_synth_default_params();
    sp.shape = *ar_synth_preset("tiny");
    sp.vocab_path = fixture("models/stories260K-f32.gguf");
    sp.chat_template = ZEPHYR_TMPL;
    char *path = malloc(strlen(tmpdir) + 32);
    sprintf(path, "%s/zephyr.gguf", tmpdir);
    cr_assert_eq(ar_synth_write(&sp, path), AR_OK, "%s", ar_last_error());
    cr_assert_eq(arbor_model_load(path, arbor_model_default_params(), &m), ARBOR_OK);
    cr_expect_eq(arbor_chat_format(m, msgs, 1, NULL, buf, sizeof buf), ARBOR_ERR_UNSUPPORTED);
    cr_expect(strstr(arbor_last_error(), "of no supported family"), "%s", arbor_last_error());
    arbor_model_free(m);
    /* and the CLI says so in one line, exit 1; an unknown name is a usage error, exit 2 */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s generate -m '%s' --chat -p Hi -n 1 2>&1", ARBOR_CLI, path);
    FILE *f = popen(cmd, "r");
    char out[1024] = "";
    size_t k = fread(out, 1, sizeof out - 1, f);
    out[k] = 0;
    cr_expect_eq(WEXITSTATUS(pclose(f)), 1, "%s", out);
    cr_expect(strstr(out, "arbor: ") == out && strstr(out, "no supported family") &&
                  strchr(out, '\n') == out + k - 1,
              "%s", out);
    snprintf(cmd, sizeof cmd, "%s generate -m '%s' --chat-template jinja -p Hi 2>/dev/null",
             ARBOR_CLI, path);
    cr_expect_eq(WEXITSTATUS(system(cmd)), 2);
    free(path);
}
