/* test_topo.c: thread placement plans on hwloc synthetic topologies (this machine has one NUMA
 * node and no SMT, so the interesting cases can only be shown synthetically). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "sched/topo.h"

static ar_topo *load(const char *desc) {
    ar_topo *t = NULL;
    cr_assert_eq(ar_topo_load(desc, &t), AR_OK, "%s: %s", desc, ar_last_error());
    return t;
}

Test(topo, counts_of_a_two_socket_smt_machine) {
    ar_topo *t = load("pack:2 numa:2 core:4 pu:2");
    cr_assert_eq(t->n_packages, 2);
    cr_assert_eq(t->n_numa, 4);
    cr_assert_eq(t->n_cores, 16);
    cr_assert_eq(t->n_pus, 32);
    for (int c = 0; c < 16; c++) {
        cr_assert_eq(t->cores[c].n_pu, 2);
        cr_assert_eq(t->cores[c].numa, c / 4, "core %d numa %d", c, t->cores[c].numa);
        cr_assert_eq(t->cores[c].package, c / 8);
        cr_assert_eq(t->cores[c].os_pu, 2 * c, "first PU of core %d", c);
    }
    ar_topo_free(t);
}

Test(topo, verifier_one_thread_per_core_within_a_numa_node) {
    ar_topo *t = load("pack:2 numa:2 core:4 pu:2");
    ar_placement *p = calloc(1, sizeof *p);
    ar_topo_plan(t, 4, 2, p);
    cr_assert_eq(p->n_verifier, 4);
    cr_assert_eq(p->numa, 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(p->verifier_cpus[i], 2 * i, "no SMT siblings");
    /* the drafter gets free cores of the same package (the node is full) */
    cr_assert_eq(p->n_drafter, 2);
    for (int i = 0; i < 2; i++) {
        int pu = p->drafter_cpus[i];
        cr_assert(pu % 2 == 0 && pu >= 8 && pu < 16, "drafter PU %d: first PU, package 0", pu);
    }
    free(p);
    ar_topo_free(t);
}

Test(topo, many_threads_span_numa_nodes_then_smt) {
    ar_topo *t = load("pack:2 numa:2 core:4 pu:2");
    ar_placement *p = calloc(1, sizeof *p);
    ar_topo_plan(t, 0, 0, p); /* default: one per physical core */
    cr_assert_eq(p->n_verifier, 16);
    cr_assert_eq(p->numa, -1, "16 threads do not fit one node: memory interleaved");
    ar_topo_plan(t, 20, 0, p);
    cr_assert_eq(p->n_verifier, 20);
    cr_assert_eq(p->verifier_cpus[16], 1, "thread 17 goes on core 0's sibling");
    free(p);
    ar_topo_free(t);
}

Test(topo, drafter_shares_when_no_core_is_free) {
    ar_topo *t = load("core:2 pu:1");
    ar_placement *p = calloc(1, sizeof *p);
    ar_topo_plan(t, 2, 1, p);
    cr_assert_eq(p->n_verifier, 2);
    cr_assert_eq(p->n_drafter, 0);
    cr_assert(strstr(p->note, "shares"), "%s", p->note);
    free(p);
    ar_topo_free(t);
}

Test(topo, this_machine_and_bad_descriptions) {
    ar_topo *t = load(NULL);
    cr_assert_geq(t->n_cores, 1);
    cr_assert_geq(t->n_pus, t->n_cores);
    ar_topo_free(t);
    ar_topo *bad = NULL;
    cr_assert_eq(ar_topo_load("pack:banana", &bad), AR_ERR_INVALID_ARG);
    cr_assert_null(bad);
    cr_assert(strstr(ar_last_error(), "pack:banana"));
}
