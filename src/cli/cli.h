/* cli.h: the `arbor` command-line tool's subcommands. Each lives in cmd_<name>.c and takes the
 * arguments after its name (argv[0] is the subcommand). They return the process exit status:
 * 0 success, 1 runtime failure, 2 usage error. Errors are one line on stderr, "arbor: ...". */
#ifndef ARBOR_CLI_H
#define ARBOR_CLI_H

#include "bench/args.h"

int cmd_generate(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_topo(int argc, char **argv);

#endif
