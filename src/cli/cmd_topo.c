/* cmd_topo.c: `arbor topo`: the machine's topology as hwloc sees it and the thread placement
 * plan arbor would use (an inspection tool: it uses sched/ directly). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sched/topo.h"
#include "src/core/cpu.h"

int cmd_topo(int argc, char **argv) {
    const char *synthetic = NULL;
    int64_t threads = 0, drafter = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: arbor topo [--synthetic DESC] [-t THREADS] [--drafter-threads N]\n"
                 "  DESC: an hwloc synthetic topology, e.g. 'pack:2 numa:2 core:4 pu:2'");
            return 0;
        } else if (!strcmp(a, "--synthetic")) {
            if (!v) return cli_error(2, "--synthetic needs a value");
            synthetic = v;
            i++;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_parse_i64(a, v, 1, AR_TOPO_MAX_CPUS, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--drafter-threads")) {
            if (!cli_parse_i64(a, v, 0, AR_TOPO_MAX_CPUS, &drafter)) return 2;
            i++;
        } else {
            return cli_error(2, "topo: unknown flag '%s'", a);
        }
    }
    ar_topo *t = NULL;
    if (ar_topo_load(synthetic, &t) != AR_OK) return cli_error(1, "%s", ar_last_error());
    printf("topology: %s\n", synthetic ? synthetic : "this machine");
    printf("packages %d, NUMA nodes %d, cores %d, hardware threads %d\n", t->n_packages,
           t->n_numa, t->n_cores, t->n_pus);
    if (t->l2_bytes || t->l3_bytes)
        printf("caches: L2 %llu KiB, L3 %llu KiB\n", (unsigned long long)(t->l2_bytes >> 10),
               (unsigned long long)(t->l3_bytes >> 10));
    if (!synthetic) {
        ar_runtime_init();
        printf("cpu: %s, SIMD path %s\n", ar_cpu()->brand, ar_simd_name(ar_cpu()->level));
    }
    printf("cores (logical index: first PU, PUs, package, NUMA node):\n");
    for (int c = 0; c < t->n_cores; c++)
        printf("  core %d: pu %d, %d pu, package %d, numa %d\n", c, t->cores[c].os_pu,
               t->cores[c].n_pu, t->cores[c].package, t->cores[c].numa);
    ar_placement *p = calloc(1, sizeof *p);
    if (!p) {
        ar_topo_free(t);
        return cli_error(1, "out of memory");
    }
    ar_topo_plan(t, (int)threads, (int)drafter, p);
    printf("plan: %s\n  verifier threads on PUs:", p->note);
    for (int i = 0; i < p->n_verifier; i++) printf(" %d", p->verifier_cpus[i]);
    printf("\n  drafter threads on PUs:");
    if (!p->n_drafter) printf(" (shares the verifier's)");
    for (int i = 0; i < p->n_drafter; i++) printf(" %d", p->drafter_cpus[i]);
    printf("\n  memory: %s\n", t->n_numa <= 1 ? "one NUMA node, no binding needed"
                               : p->numa >= 0 ? "bound to the verifier's NUMA node"
                                              : "interleaved over all NUMA nodes");
    free(p);
    ar_topo_free(t);
    return 0;
}
