/* cmd_synth.c: `arbor synth`, which writes deterministic random-weight GGUF models (src/synth.h):
 * a preset shape with a real tokenizer, a fresh model shaped like an existing one, or a drafter
 * cut from a verifier's first layers. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "cli.h"
#include "bench/synth.h"

#define DEFAULT_VOCAB "tokenizer/ggml-vocab-llama-spm.gguf"

static void usage(FILE *f) {
    fputs("usage: arbor synth PRESET [options] -o FILE\n"
          "       arbor synth --like MODEL.gguf [options] -o FILE\n"
          "       arbor synth --drafter-of VERIFIER.gguf --layers M -o FILE\n"
          "  PRESET               ",
          f);
    int n;
    const ar_synth_shape *ps = ar_synth_presets(&n);
    for (int i = 0, k = 0; i < n; i++)
        if (!ps[i].hidden) fprintf(f, "%s%s", k++ ? ", " : "", ps[i].name);
    fputs(
        "\n"
        "  -o FILE              output file (required)\n"
        "  -q TYPE              format of the 2-D weights: f32 (default), f16, bf16, q4_0, q4_1,\n"
        "                       q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K; rows that do not\n"
        "                       fit the format's block fall back to q8_0, else f32\n"
        "  --vocab FILE         copy the tokenizer from this GGUF (default: the fixtures'\n"
        "                       " DEFAULT_VOCAB ", found through $ARBOR_FIXTURES\n"
        "                       or ../shared/fixtures next to the repository)\n"
        "  --seed S             weight seed (default 1)\n"
        "  --eps E              scale attn_output and ffn_down of layers >= M by E (a verifier\n"
        "                       whose first M layers are a drafter: see --drafter-of)\n"
        "  --layers M           the M of --eps and --drafter-of (default 2)\n"
        "  --like MODEL.gguf    MODEL's metadata, tokenizer, tensor shapes and types, fresh "
        "weights\n"
        "  --drafter-of FILE    copy FILE's first M layers, embedding, final norm and head\n"
        "  --n-layer N          override the preset's layer count (also --n-embd, --n-ff,\n"
        "                       --n-head, --n-head-kv, --n-ctx)\n"
        "  --arch NAME          architecture: llama (default), llama3, mistral, qwen2, qwen3,\n"
        "                       gemma2, phi3 (src/synth.h says what each writes)\n"
        "  --head-dim N         head size (default n_embd / n_head)\n"
        "  --sliding-window N   mistral, gemma2, phi3: the window (default 4096, 4096, none)\n"
        "  --attn-softcap C     gemma2: attention soft-cap (default 50; also --final-softcap,\n"
        "                       default 30)\n"
        "  --rope-scaling T     yarn, or longrope (phi3); --rope-factor F (default 4) and\n"
        "                       --rope-orig-ctx N (default n_ctx / F; llama3: 8192) set them\n"
        "  --add-token TEXT     append a control token to the tokenizer (repeatable)\n"
        "  --chat-template TEXT write tokenizer.chat_template\n"
        "  --pad-vocab N        append N unused \"[PAD<id>]\" tokens (and embedding rows)\n"
        "  -t N                 threads (default: all; the output does not depend on it)\n"
        "The same arguments give the same bytes on every run and build.\n",
        f);
}

static bool is_file(const char *path) {
    return access(path, R_OK) == 0;
}

/* dir/../rel for the directory of the running executable, when it exists. */
static bool near_exe(const char *up, char *out, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = 0;
    int k = snprintf(out, cap, "%s/%s/" DEFAULT_VOCAB, exe, up);
    return k > 0 && (size_t)k < cap && is_file(out);
}

bool synth_default_vocab(char *out, size_t cap) {
    const char *env = getenv("ARBOR_FIXTURES");
    if (env && *env) {
        int k = snprintf(out, cap, "%s/" DEFAULT_VOCAB, env);
        if (k > 0 && (size_t)k < cap && is_file(out)) return true;
    }
#ifdef ARBOR_FIXTURES_DIR
    {
        int k = snprintf(out, cap, "%s/" DEFAULT_VOCAB, ARBOR_FIXTURES_DIR);
        if (k > 0 && (size_t)k < cap && is_file(out)) return true;
    }
#endif
    /* build directory inside the repository (build/arbor), or the repository root */
    if (near_exe("../../shared/fixtures", out, cap)) return true;
    if (near_exe("../shared/fixtures", out, cap)) return true;
    int k = snprintf(out, cap, "../shared/fixtures/" DEFAULT_VOCAB);
    return k > 0 && (size_t)k < cap && is_file(out);
}

/* A progress line on stderr for long writes (a terminal only: logs stay clean). */
typedef struct progress {
    bool tty;
    int last;
} progress;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    progress *p = user;
    if (!p->tty || total == 0) return;
    int pct = (int)(done * 100 / total);
    if (pct == p->last) return;
    p->last = pct;
    fprintf(stderr, "\rarbor: synth %3d%% (%.2f of %.2f GB)", pct, done / 1e9, total / 1e9);
    if (done == total) fputc('\n', stderr);
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *vocab = NULL, *like = NULL, *drafter_of = NULL;
    ar_synth_params sp = ar_synth_default_params();
    int64_t layers = 2;
    bool eps_set = false, layers_set = false;
    int32_t over_head_dim = 0;
    int64_t over[6] = {-1, -1, -1, -1, -1, -1}; /* n_layer n_embd n_ff n_head n_head_kv n_ctx */
    static const char *const over_flags[6] = {"--n-layer", "--n-embd",    "--n-ff",
                                              "--n-head",  "--n-head-kv", "--n-ctx"};
    const char *extra[64];
    int n_extra = 0;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    sp.n_threads = nc > 0 ? (int32_t)AR_MIN(nc, 64) : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!v) return cli_error(2, "%s needs a value", a);                                        \
        i++;                                                                                       \
    } while (0)
        int oi = -1;
        for (int k = 0; k < 6; k++)
            if (!strcmp(a, over_flags[k])) oi = k;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (oi >= 0) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 24, &over[oi])) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED_VALUE();
            out = v;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--type")) {
            NEED_VALUE();
            sp.type = ar_type_from_name(v);
            if (sp.type < 0) return cli_error(2, "invalid value '%s' for %s: unknown format", v, a);
        } else if (!strcmp(a, "--vocab")) {
            NEED_VALUE();
            vocab = v;
        } else if (!strcmp(a, "--like")) {
            NEED_VALUE();
            like = v;
        } else if (!strcmp(a, "--drafter-of")) {
            NEED_VALUE();
            drafter_of = v;
        } else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
            NEED_VALUE();
            if (!cli_parse_u64(a, v, &sp.seed)) return 2;
        } else if (!strcmp(a, "--eps")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 0.0f, 1000.0f, &sp.eps)) return 2;
            eps_set = true;
        } else if (!strcmp(a, "--layers")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 4096, &layers)) return 2;
            layers_set = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1024, &x)) return 2;
            sp.n_threads = (int32_t)x;
        } else if (!strcmp(a, "--arch")) {
            NEED_VALUE();
            sp.arch = v;
        } else if (!strcmp(a, "--head-dim")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 2, 65536, &x)) return 2;
            sp.shape.head_dim = (int32_t)x; /* kept across the preset copy below */
            over_head_dim = (int32_t)x;
        } else if (!strcmp(a, "--sliding-window")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 30, &x)) return 2;
            sp.sliding_window = (int32_t)x;
        } else if (!strcmp(a, "--attn-softcap") || !strcmp(a, "--final-softcap")) {
            NEED_VALUE();
            float f;
            if (!cli_parse_f32(a, v, 1e-3f, 1e6f, &f)) return 2;
            if (a[2] == 'a') sp.attn_softcap = f;
            else sp.final_softcap = f;
        } else if (!strcmp(a, "--rope-scaling")) {
            NEED_VALUE();
            sp.rope_scaling = v;
        } else if (!strcmp(a, "--rope-factor")) {
            NEED_VALUE();
            if (!cli_parse_f32(a, v, 1.0f, 1e6f, &sp.rope_factor)) return 2;
        } else if (!strcmp(a, "--rope-orig-ctx")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 24, &x)) return 2;
            sp.rope_orig_ctx = (int32_t)x;
        } else if (!strcmp(a, "--add-token")) {
            NEED_VALUE();
            if (n_extra == (int)(sizeof extra / sizeof extra[0]))
                return cli_error(2, "synth: at most %d --add-token", n_extra);
            if (!*v) return cli_error(2, "synth: --add-token needs a non-empty text");
            extra[n_extra++] = v;
        } else if (!strcmp(a, "--pad-vocab")) {
            NEED_VALUE();
            if (!cli_parse_i64(a, v, 1, 1 << 20, &x)) return 2;
            sp.n_pad_tokens = (int32_t)x;
        } else if (!strcmp(a, "--chat-template")) {
            NEED_VALUE();
            sp.chat_template = v;
        } else if (a[0] == '-') {
            return cli_error(2, "synth: unknown flag '%s' (see arbor synth --help)", a);
        } else if (!preset) {
            preset = a;
        } else {
            return cli_error(2, "synth: more than one preset ('%s', '%s')", preset, a);
        }
#undef NEED_VALUE
    }
    if (!out) return cli_error(2, "synth: -o FILE is required");
    int sources = (preset != NULL) + (like != NULL) + (drafter_of != NULL);
    if (sources != 1)
        return cli_error(2,
                         "synth: give exactly one of PRESET, --like MODEL or --drafter-of MODEL");

    double t0 = ar_now();
    ar_status s;
    if (drafter_of) {
        if (!layers_set) return cli_error(2, "synth: --drafter-of needs --layers M");
        if (eps_set || vocab || sp.type >= 0)
            return cli_error(2, "synth: --drafter-of copies the verifier: no --eps, --vocab or -q");
        s = ar_synth_drafter(drafter_of, (int32_t)layers, out);
    } else {
        char found[PATH_MAX];
        if (preset) {
            const ar_synth_shape *sh = ar_synth_preset(preset);
            if (!sh)
                return cli_error(2, "synth: unknown preset '%s' (see arbor synth --help)", preset);
            sp.shape = *sh;
            int32_t *fields[6] = {&sp.shape.n_layer, &sp.shape.n_embd,    &sp.shape.n_ff,
                                  &sp.shape.n_head,  &sp.shape.n_head_kv, &sp.shape.n_ctx};
            for (int k = 0; k < 6; k++)
                if (over[k] > 0) *fields[k] = (int32_t)over[k];
            if (over_head_dim) sp.shape.head_dim = over_head_dim;
            sp.extra_tokens = extra;
            sp.n_extra_tokens = n_extra;
            if (!vocab) {
                if (!synth_default_vocab(found, sizeof found))
                    return cli_error(2,
                                     "synth: no tokenizer: give --vocab FILE.gguf (the default, "
                                     "the fixtures' %s, was not found; set ARBOR_FIXTURES)",
                                     DEFAULT_VOCAB);
                vocab = found;
            }
            sp.vocab_path = vocab;
        } else {
            for (int k = 0; k < 6; k++)
                if (over[k] > 0) return cli_error(2, "synth: %s needs a preset", over_flags[k]);
            if (vocab) return cli_error(2, "synth: --like copies MODEL's tokenizer: no --vocab");
            if (sp.arch || over_head_dim || sp.sliding_window || sp.rope_scaling || n_extra ||
                sp.n_pad_tokens ||
                sp.chat_template || sp.attn_softcap > 0 || sp.final_softcap > 0)
                return cli_error(2, "synth: --like copies MODEL's architecture: no --arch, "
                                    "--head-dim, --sliding-window, --rope-*, --*-softcap, "
                                    "--add-token, --pad-vocab or --chat-template");
            sp.like_path = like;
        }
        if (eps_set)
            sp.eps_layer = (int32_t)layers;
        else if (layers_set)
            return cli_error(2, "synth: --layers needs --eps or --drafter-of");
        progress pr = {.tty = isatty(2), .last = -1};
        sp.progress = on_progress;
        sp.progress_user = &pr;
        s = ar_synth_write(&sp, out);
    }
    if (s != AR_OK) return cli_error(1, "%s", ar_last_error());
    fprintf(stderr, "arbor: wrote %s in %.1f s\n", out, ar_now() - t0);
    return 0;
}
