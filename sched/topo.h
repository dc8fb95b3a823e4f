/* topo.h: the machine's topology (hwloc) and where arbor's threads should run. Verifier threads
 * get one physical core each (the first hardware thread of the core: SMT siblings share the
 * core's execution units, which a bandwidth-bound matmul does not gain from), within one NUMA
 * node when they fit, so weights and threads share a memory controller; drafter threads get
 * cores the verifier does not use when there are any. Synthetic topologies (hwloc's string
 * syntax) let tests check plans for machines this one is not. */
#ifndef ARBOR_TOPO_H
#define ARBOR_TOPO_H

#include "src/core/util.h"

#define AR_TOPO_MAX_CPUS 1024

typedef struct ar_topo_core {
    int os_pu;    /* OS index of the core's first hardware thread */
    int n_pu;     /* hardware threads (SMT) */
    int package;
    int numa;     /* logical index of the core's NUMA node */
} ar_topo_core;

typedef struct ar_topo {
    int n_packages, n_numa, n_cores, n_pus;
    ar_topo_core *cores; /* [n_cores] in hwloc's logical order */
    uint64_t l2_bytes, l3_bytes; /* of the first core (0: unknown) */
    bool synthetic;
    void *hw;            /* hwloc_topology_t */
} ar_topo;

/* The topology of this machine (synthetic == NULL) or of an hwloc synthetic description such
 * as "pack:2 numa:2 core:4 pu:2". */
ar_status ar_topo_load(const char *synthetic, ar_topo **out);
void ar_topo_free(ar_topo *t);

typedef struct ar_placement {
    int n_verifier;
    int verifier_cpus[AR_TOPO_MAX_CPUS]; /* OS PU indices, one per verifier thread */
    int n_drafter;                       /* 0: the drafter shares the verifier's threads */
    int drafter_cpus[AR_TOPO_MAX_CPUS];
    int numa;                            /* NUMA node holding every verifier thread, or -1 */
    char note[160];                      /* why, in a line */
} ar_placement;

/* n_threads <= 0: one per physical core. drafter_threads: threads wanted for a drafter running
 * beside the verifier (0: none). */
void ar_topo_plan(const ar_topo *t, int n_threads, int drafter_threads, ar_placement *out);
/* Binds [addr, addr + len) to the plan's NUMA node (or interleaves it over all nodes when the
 * threads span several); a no-op on one-node machines. AR_OK or a warning-level failure. */
ar_status ar_topo_bind_memory(const ar_topo *t, const ar_placement *p, const void *addr,
                              size_t len);

#endif
