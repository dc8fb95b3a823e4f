/* cmd_bench.c: `arbor bench`, dispatching to the benchmarks in bench/. Without a subcommand it is
 * `arbor bench spec`, which without model arguments synthesizes and benchmarks the default
 * verifier/drafter pair. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "cli.h"

static void usage(FILE *f) {
    fputs(
        "usage: arbor bench [SUBCOMMAND] [options]   (arbor bench SUBCOMMAND --help)\n"
        "  (none)     the same as `spec`; with no -m, synthesizes (once, cached) a "
        "TinyLlama-shaped\n"
        "             Q4_0 verifier and its 2-layer drafter and benchmarks them\n"
        "  spec       plain decoding against speculation modes, side by side\n"
        "  decode     plain decoding tokens/s and the batch cost curve of a model\n"
        "  kernels    matmul GFLOP/s and GB/s per format and batch size, against memory bandwidth\n"
        "  tokenize   tokenizer throughput\n",
        f);
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2) {
        const char *sub = argv[1];
        if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(sub, "spec")) return bench_spec(argc - 1, argv + 1);
        if (!strcmp(sub, "decode")) return bench_decode(argc - 1, argv + 1);
        if (!strcmp(sub, "kernels")) return bench_kernels(argc - 1, argv + 1);
        if (!strcmp(sub, "tokenize")) return bench_tokenize(argc - 1, argv + 1);
        if (sub[0] != '-') {
            cli_error(2, "bench: unknown subcommand '%s'", sub);
            usage(stderr);
            return 2;
        }
    }
    return bench_spec(argc, argv);
}
