/* cmd_generate.c: `arbor generate`, a client of the public API (include/arbor.h). stdout carries
 * exactly the generated text, streamed; timing and diagnostics go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbor.h"
#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: arbor generate -m MODEL.gguf (-p PROMPT | -f FILE) [options]\n"
          "  -n N                 tokens to generate (default 128; -1: until EOS or full context)\n"
          "  -c N                 context size (default: the model's)\n"
          "  -t N                 threads (default: one per core)\n"
          "  -b N                 prompt batch size (default 512)\n"
          "  --temp T             temperature (default 0.8; 0 = greedy)\n"
          "  --top-k K            (default 40; 0 = off)\n"
          "  --top-p P            (default 0.95; 1 = off)\n"
          "  --min-p P            (default 0.05; 0 = off)\n"
          "  --repeat-penalty R   (default 1.0 = off)\n"
          "  --repeat-last-n N    (default 64; -1 = whole context)\n"
          "  --seed S             sampling seed (default 0)\n"
          "  --ignore-eos         keep generating past end-of-generation tokens\n"
          "  --echo               print the prompt before the generated text\n"
          "  --no-parse-special   prompt text never spells special tokens\n"
          "  --stop TEXT          stop after the token completing TEXT (repeatable)\n"
          "  --chat               the prompt is a user message, formatted with the model's chat\n"
          "                       template (tokenizer.chat_template, recognised by its markers)\n"
          "  -sys, --system TEXT  chat: a system message before it (implies --chat)\n"
          "  --chat-template NAME chat: this template family instead of the model's (implies\n"
          "                       --chat): chatml, llama3, gemma, phi3, phi4, llama2,\n"
          "                       llama2-sys, llama2-sys-bos, llama2-sys-strip, mistral-v1,\n"
          "                       mistral-v3, mistral-v3-tekken, mistral-v7\n"
          "  --verbose-prompt     print the prompt's token ids (and chat template) on stderr\n"
          "  -ctk f16             F16 KV cache (default f32)\n"
          "  -md DRAFT            speculative decoding with a drafter: DRAFT.gguf (a small model\n"
          "                       sharing the vocabulary), self:M (the model's own first M\n"
          "                       layers) or lookup (n-gram prompt lookup, no model)\n"
          "  --no-draft-share     a drafter that is a cut of the model (its first layers and\n"
          "                       head, byte for byte) runs as itself, not as self:M over the\n"
          "                       model's own weights (default: shared, one copy in memory)\n"
          "  --tree SPEC          tree shape: chain:K, static:AxBx..., dynamic:N or adaptive\n"
          "                       (default: adaptive, the scheduler chooses)\n"
          "  --sched-costs FILE   adaptive: use this cost table instead of calibrating\n"
          "  --save-costs FILE    adaptive: write the calibrated cost table to FILE\n"
          "  --trace              print every step's scheduling decision on stderr\n"
          "  --pipeline           draft the next tree while the verifier checks the current one\n"
          "  -td N                pipelining: drafter threads (default 1)\n"
          "  --no-pin             do not pin threads to cores (default: pinned by the hwloc plan)\n"
          "  --no-repack          read every matrix in place from the file (default: the\n"
          "                       packed layout where this CPU has kernels for it: faster,\n"
          "                       same output, same memory; cached in ~/.cache/arbor/packed)\n"
          "  --mem-budget SIZE    hold at most SIZE of memory for both models, the caches and\n"
          "                       buffers (e.g. 450M, 1.5G; K/M/G are powers of 1024, KB/MB/GB\n"
          "                       of 1000): the verifier's weights that do not fit are read\n"
          "                       from its file for every forward pass\n"
          "  --no-cost-cache      adaptive: do not read or write the cost table cache\n"
          "  --stats              print statistics on stderr\n",
          f);
}

static bool on_token(void *user, arbor_token token, const char *text, size_t len) {
    (void)user;
    (void)token;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

static void print_step(void *user, const arbor_step_trace *t) {
    (void)user;
    fprintf(stderr,
            "arbor: step %lld ctx %d drafted %d verified %d depth %d accepted %d draft %.2f ms "
            "verify %.2f ms threshold %.4f expected %.2f: %s\n",
            (long long)t->step, t->n_committed, t->drafted, t->verified, t->depth, t->accepted,
            t->draft_seconds * 1e3, t->verify_seconds * 1e3, t->threshold, t->expected,
            t->reason);
}

/* One of the comma-separated arbor_chat_template_names(). */
static bool is_chat_template_name(const char *v) {
    size_t n = strlen(v);
    for (const char *p = arbor_chat_template_names(); n && *p;) {
        const char *end = strchr(p, ',');
        size_t k = end ? (size_t)(end - p) : strlen(p);
        if (k == n && !memcmp(p, v, n)) return true;
        if (!end) break;
        p = end + 2; /* ", " */
    }
    return false;
}

/* The prompt's token ids as arbor_generate will evaluate them, on one stderr line. */
static int print_prompt_tokens(const arbor_model *model, const char *prompt,
                               const arbor_generate_params *gp) {
    size_t len = strlen(prompt);
    int32_t n = arbor_tokenize(model, prompt, len, gp->add_special, gp->parse_special, NULL, 0);
    arbor_token *ids = n >= 0 ? malloc(sizeof *ids * (size_t)(n ? n : 1)) : NULL;
    if (n < 0 || !ids) {
        cli_error(1, "%s", n < 0 ? arbor_last_error() : "out of memory");
        return 1;
    }
    arbor_tokenize(model, prompt, len, gp->add_special, gp->parse_special, ids, n);
    fprintf(stderr, "arbor: prompt tokens (%d):", n);
    for (int32_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
    free(ids);
    return 0;
}

#define MAX_PROMPT_BYTES ((size_t)256 << 20)

/* The whole file as a string, at most MAX_PROMPT_BYTES (a prompt file may be /dev/zero); NULL
 * with *why set on failure. */
static char *read_file(const char *path, const char **why) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = strerror(errno);
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t k;
    *why = "out of memory";
    while (buf && (k = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += k;
        if (cap - len - 1 == 0) {
            char *nb = cap < MAX_PROMPT_BYTES ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                if (cap >= MAX_PROMPT_BYTES) *why = "larger than 256 MiB";
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf && ferror(f)) {
        *why = "read error";
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *draft = NULL;
    arbor_context_params cp = arbor_context_default_params();
    arbor_model_params mp = arbor_model_default_params();
    arbor_generate_params gp = arbor_generate_default_params();
    cp.pin_threads = true; /* the tool owns its process: place threads by the hwloc plan */
    bool echo = false, stats = false, trace = false, chat = false, verbose_prompt = false;
    const char *system = NULL;
    arbor_chat_params chat_params = arbor_chat_default_params();
    const char *save_costs = NULL;
    const char *stops[16];
    int n_stops = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        uint64_t u;
        float f;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!v) return cli_error(2, "%s needs a value", a);                                        \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VALUE();
            model_path = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VALUE();
            prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VALUE();
            prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, -1, INT32_MAX, &x)) return 2;
            gp.n_predict = (int32_t)x;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 0, 1 << 24, &x)) return 2;
            cp.n_ctx = (int32_t)x;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1024, &x)) return 2;
            cp.n_threads = (int32_t)x;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 16, &x)) return 2;
            cp.n_batch = (int32_t)x;
        } else if (!strcmp(a, "--temp")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 0.0f, 1e6f, &f)) return 2;
            gp.sampling.temp = f;
        } else if (!strcmp(a, "--top-k")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 0, INT32_MAX, &x)) return 2;
            gp.sampling.top_k = (int32_t)x;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 0.0f, 1.0f, &f)) return 2;
            gp.sampling.top_p = f;
        } else if (!strcmp(a, "--min-p")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 0.0f, 1.0f, &f)) return 2;
            gp.sampling.min_p = f;
        } else if (!strcmp(a, "--repeat-penalty")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 1e-3f, 1e3f, &f)) return 2;
            gp.sampling.repeat_penalty = f;
        } else if (!strcmp(a, "--repeat-last-n")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, -1, INT32_MAX, &x)) return 2;
            gp.sampling.repeat_last_n = (int32_t)x;
        } else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
            NEED_VALUE();
            if (!cli_parse_u64(a, v, &u)) return 2;
            gp.sampling.seed = u;
        } else if (!strcmp(a, "--ignore-eos")) {
            gp.ignore_eos = true;
        } else if (!strcmp(a, "--echo")) {
            echo = true;
        } else if (!strcmp(a, "--no-parse-special")) {
            gp.parse_special = false;
        } else if (!strcmp(a, "--stop")) {
            NEED_VALUE();
            if (n_stops == (int)(sizeof stops / sizeof stops[0]))
                return cli_error(2, "at most %d --stop strings", n_stops);
            if (!*v) return cli_error(2, "--stop needs a non-empty string");
            stops[n_stops++] = v;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "-sys") || !strcmp(a, "--system")) {
            NEED_VALUE();
            system = v;
            chat = true;
        } else if (!strcmp(a, "--chat-template")) {
            NEED_VALUE();
            if (!is_chat_template_name(v))
                return cli_error(2, "invalid value '%s' for %s: one of %s", v, a,
                                 arbor_chat_template_names());
            chat_params.template_name = v;
            chat = true;
        } else if (!strcmp(a, "--verbose-prompt")) {
            verbose_prompt = true;
        } else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type")) {
            NEED_VALUE();
            if (!strcmp(v, "f16")) cp.kv_f16 = true;
            else if (!strcmp(v, "f32")) cp.kv_f16 = false;
            else return cli_error(2, "invalid value '%s' for %s: f32 or f16", v, a);
        } else if (!strcmp(a, "-md") || !strcmp(a, "--model-draft")) {
            NEED_VALUE();
            draft = v;
        } else if (!strcmp(a, "--tree")) {
            NEED_VALUE();
            cp.tree = v;
        } else if (!strcmp(a, "--sched-costs")) {
            NEED_VALUE();
            cp.sched_costs = v;
        } else if (!strcmp(a, "--save-costs")) {
            NEED_VALUE();
            save_costs = v;
        } else if (!strcmp(a, "--trace")) {
            trace = true;
        } else if (!strcmp(a, "--no-draft-share")) {
            cp.draft_share = false;
        } else if (!strcmp(a, "--pipeline")) {
            cp.pipeline = true;
        } else if (!strcmp(a, "--repack")) {
            mp.repack = true;
        } else if (!strcmp(a, "--no-repack")) {
            mp.repack = false;
        } else if (!strcmp(a, "--no-pin")) {
            cp.pin_threads = false;
        } else if (!strcmp(a, "-td") || !strcmp(a, "--threads-draft")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1024, &x)) return 2;
            cp.draft_threads = (int32_t)x;
        } else if (!strcmp(a, "--mem-budget")) {
            NEED_VALUE();
            if (!cli_parse_size(a, v, 0, &cp.mem_budget)) return 2;
            if (!cp.mem_budget) return cli_error(2, "generate: --mem-budget must be above 0");
        } else if (!strcmp(a, "--no-cost-cache")) {
            cp.cost_cache = false;
        } else if (!strcmp(a, "--stats")) {
            stats = true;
        } else {
            return cli_error(2, "generate: unknown flag '%s' (see arbor generate --help)", a);
        }
#undef NEED_VALUE
    }
    if (!model_path) return cli_error(2, "generate: -m MODEL.gguf is required");
    if (!prompt && !prompt_file) return cli_error(2, "generate: -p PROMPT or -f FILE is required");
    if (prompt && prompt_file) return cli_error(2, "generate: give -p or -f, not both");
    gp.stop = stops;
    gp.n_stop = n_stops;

    if (cp.tree && !draft) return cli_error(2, "generate: --tree needs a drafter (-md)");
    if ((cp.sched_costs || save_costs) && !draft)
        return cli_error(2, "generate: cost tables need a drafter (-md)");
    /* read last: the usage errors above return with nothing to free */
    char *file_text = NULL;
    if (prompt_file) {
        const char *why = NULL;
        file_text = read_file(prompt_file, &why);
        if (!file_text) return cli_error(1, "cannot read prompt file %s: %s", prompt_file, why);
        prompt = file_text;
    }
    if (trace) cp.trace = print_step;

    int rc = 1;
    arbor_model *model = NULL, *draft_model = NULL;
    arbor_context *ctx = NULL;
    char *chat_text = NULL;
    /* under a budget the verifier's matrices are read from the file as they are (a packed copy
     * would be a second copy of what the budget leaves out) */
    if (cp.mem_budget) mp.repack = false;
    if (arbor_model_load(model_path, mp, &model) != ARBOR_OK) {
        cli_error(1, "%s", arbor_last_error());
        goto done;
    }
    if (chat) { /* the prompt becomes the formatted conversation */
        arbor_chat_message msgs[2];
        int n_msgs = 0;
        if (system) msgs[n_msgs++] = (arbor_chat_message){"system", system};
        msgs[n_msgs++] = (arbor_chat_message){"user", prompt};
        int32_t len = arbor_chat_format(model, msgs, n_msgs, &chat_params, NULL, 0);
        chat_text = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (len < 0 || !chat_text ||
            arbor_chat_format(model, msgs, n_msgs, &chat_params, chat_text, len) != len) {
            cli_error(1, "%s", len < 0 ? arbor_last_error() : "out of memory");
            goto done;
        }
        chat_text[len] = 0;
        prompt = chat_text;
        if (verbose_prompt)
            fprintf(stderr, "arbor: chat template %s\n", arbor_chat_template(model, &chat_params));
    }
    if (verbose_prompt && print_prompt_tokens(model, prompt, &gp) != 0) goto done;
    if (draft && !strcmp(draft, "lookup")) {
        cp.draft_kind = ARBOR_DRAFT_LOOKUP;
    } else if (draft && !strncmp(draft, "self:", 5)) {
        int64_t m;
        if (!cli_parse_i64("-md self:M", draft + 5, 1, 1 << 20, &m)) {
            rc = 2;
            goto done;
        }
        cp.draft_kind = ARBOR_DRAFT_SELF;
        cp.draft_self_layers = (int32_t)m;
    } else if (draft) {
        arbor_model_params dp = arbor_model_default_params();
        /* the drafter runs every step: keep it in memory (under a budget the context reads its
         * layers and head into memory of its own, and leaves its embedding on disk) */
        dp.resident = !cp.mem_budget;
        dp.repack = !cp.mem_budget && mp.repack;
        if (arbor_model_load(draft, dp, &draft_model) != ARBOR_OK) {
            cli_error(1, "%s", arbor_last_error());
            goto done;
        }
        cp.draft_kind = ARBOR_DRAFT_MODEL;
        cp.draft_model = draft_model;
    }
    if (arbor_context_create(model, cp, &ctx) != ARBOR_OK) {
        cli_error(1, "%s", arbor_last_error());
        goto done;
    }
    if (save_costs && arbor_save_costs(ctx, save_costs) != ARBOR_OK) {
        cli_error(1, "%s", arbor_last_error());
        goto done;
    }
    if (echo) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    arbor_status s = arbor_generate(ctx, prompt, &gp, on_token, NULL);
    fflush(stdout);
    arbor_stats st;
    arbor_get_stats(ctx, &st);
    if (s != ARBOR_OK) {
        cli_error(1, "%s", arbor_last_error());
        goto done;
    }
    if (st.stopped_by_context) fprintf(stderr, "arbor: context full: generation stopped\n");
    fprintf(stderr, "\narbor: prompt %d tokens (%d reused) in %.1f ms; generated %d tokens in %.1f ms (%.2f tokens/s)\n",
            st.n_prompt, st.n_prompt_reused, st.prompt_seconds * 1e3, st.n_generated,
            st.generate_seconds * 1e3, st.tokens_per_second);
    arbor_memory_info mi;
    if (stats && cp.mem_budget && arbor_context_get_memory(ctx, &mi) == ARBOR_OK)
        fprintf(stderr,
                "arbor: memory budget %.1f MiB: verifier %d layers%s resident (%.1f MiB), %.1f MiB "
                "streamed per pass into %.1f MiB of buffers; drafter %.1f MiB, KV %.1f MiB, "
                "buffers %.1f MiB; read %.1f MiB in %.2f s (%.2f GB/s), passes waited %.2f s\n",
                (double)mi.budget / 1048576.0, mi.resident_layers,
                mi.head_resident ? " + head" : "", (double)mi.verifier_resident / 1048576.0,
                (double)mi.streamed_per_pass / 1048576.0, (double)mi.stream_buffers / 1048576.0,
                (double)mi.drafter_weights / 1048576.0, (double)mi.kv / 1048576.0,
                (double)mi.buffers / 1048576.0, (double)mi.bytes_streamed / 1048576.0,
                mi.read_seconds,
                mi.read_seconds > 0 ? (double)mi.bytes_streamed / mi.read_seconds / 1e9 : 0.0,
                mi.wait_seconds);
    if (stats && st.n_verify > 0) {
        fprintf(stderr, "arbor: verifications %lld, drafted %lld, accepted %lld (%.2f per verification), draft %.1f ms, verify %.1f ms\n",
                (long long)st.n_verify, (long long)st.n_drafted, (long long)st.n_accepted,
                st.mean_accepted, st.draft_seconds * 1e3, st.verify_seconds * 1e3);
        for (int d = 0; d < ARBOR_MAX_DEPTH_STATS && st.drafted_at_depth[d]; d++)
            fprintf(stderr, "arbor:   depth %2d: drafted %lld accepted %lld (%.1f%%)\n", d + 1,
                    (long long)st.drafted_at_depth[d], (long long)st.accepted_at_depth[d],
                    100.0 * (double)st.accepted_at_depth[d] / (double)st.drafted_at_depth[d]);
    }
    rc = 0;
done:
    arbor_context_free(ctx);
    arbor_model_free(draft_model);
    arbor_model_free(model);
    free(file_text);
    free(chat_text);
    return rc;
}
