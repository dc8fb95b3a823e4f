/* main.c: the `arbor` command-line tool: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "arbor.h"
#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"generate", cmd_generate, "generate text (plain or speculative decoding)"},
    {"info", cmd_info, "describe a GGUF model file"},
    {"tokenize", cmd_tokenize, "show how a model's tokenizer splits text"},
    {"topo", cmd_topo, "show the machine's topology and the thread placement plan"},
    {"synth", cmd_synth, "write a deterministic random-weight model (presets, drafters)"},
    {"bench", cmd_bench, "benchmarks: speculation modes, decoding, kernels, tokenizer"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: arbor COMMAND [ARGS]   (arbor COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("arbor %s\n", arbor_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "arbor: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
