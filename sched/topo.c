/* topo.c: topology discovery with hwloc and the thread placement plan. */
#include "topo.h"

#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>

ar_status ar_topo_load(const char *synthetic, ar_topo **out) {
    *out = NULL;
    ar_topo *t = calloc(1, sizeof *t);
    if (!t) return ar_fail(AR_ERR_NOMEM, "topology: out of memory");
    hwloc_topology_t hw;
    if (hwloc_topology_init(&hw) != 0) {
        free(t);
        return ar_fail(AR_ERR_INTERNAL, "hwloc: cannot initialise a topology");
    }
    if (synthetic && hwloc_topology_set_synthetic(hw, synthetic) != 0) {
        hwloc_topology_destroy(hw);
        free(t);
        return ar_fail(AR_ERR_INVALID_ARG, "hwloc: invalid synthetic topology '%s'", synthetic);
    }
    if (hwloc_topology_load(hw) != 0) {
        hwloc_topology_destroy(hw);
        free(t);
        return ar_fail(AR_ERR_INTERNAL, "hwloc: cannot load the topology");
    }
    t->hw = hw;
    t->synthetic = synthetic != NULL;
    t->n_packages = AR_MAX(1, hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PACKAGE));
    t->n_numa = AR_MAX(1, hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_NUMANODE));
    t->n_pus = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PU);
    int n_cores = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_CORE);
    hwloc_obj_type_t unit = HWLOC_OBJ_CORE;
    if (n_cores <= 0) { /* no core level (some VMs): every PU is a core */
        n_cores = t->n_pus;
        unit = HWLOC_OBJ_PU;
    }
    n_cores = AR_MIN(n_cores, AR_TOPO_MAX_CPUS);
    t->cores = calloc((size_t)AR_MAX(n_cores, 1), sizeof *t->cores);
    if (!t->cores) {
        ar_topo_free(t);
        return ar_fail(AR_ERR_NOMEM, "topology: out of memory");
    }
    t->n_cores = n_cores;
    for (int i = 0; i < n_cores; i++) {
        hwloc_obj_t c = hwloc_get_obj_by_type(hw, unit, (unsigned)i);
        ar_topo_core *tc = &t->cores[i];
        hwloc_obj_t pu = unit == HWLOC_OBJ_PU ? c : hwloc_get_obj_inside_cpuset_by_type(hw, c->cpuset, HWLOC_OBJ_PU, 0);
        tc->os_pu = pu ? (int)pu->os_index : i;
        tc->n_pu = unit == HWLOC_OBJ_PU ? 1 : hwloc_get_nbobjs_inside_cpuset_by_type(hw, c->cpuset, HWLOC_OBJ_PU);
        hwloc_obj_t pk = hwloc_get_ancestor_obj_by_type(hw, HWLOC_OBJ_PACKAGE, c);
        tc->package = pk ? (int)pk->logical_index : 0;
        tc->numa = 0;
        hwloc_obj_t numa = NULL;
        while ((numa = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, numa)) != NULL)
            if (hwloc_bitmap_isincluded(c->cpuset, numa->cpuset)) {
                tc->numa = (int)numa->logical_index;
                break;
            }
    }
    if (n_cores > 0) {
        hwloc_obj_t c = hwloc_get_obj_by_type(hw, unit, 0);
        for (hwloc_obj_t a = c->parent; a; a = a->parent) {
            if (a->type == HWLOC_OBJ_L2CACHE && !t->l2_bytes) t->l2_bytes = a->attr->cache.size;
            if (a->type == HWLOC_OBJ_L3CACHE && !t->l3_bytes) t->l3_bytes = a->attr->cache.size;
        }
    }
    *out = t;
    return AR_OK;
}

void ar_topo_free(ar_topo *t) {
    if (!t) return;
    if (t->hw) hwloc_topology_destroy((hwloc_topology_t)t->hw);
    free(t->cores);
    free(t);
}

void ar_topo_plan(const ar_topo *t, int n_threads, int drafter_threads, ar_placement *p) {
    memset(p, 0, sizeof *p);
    p->numa = -1;
    if (n_threads <= 0) n_threads = t->n_cores;
    n_threads = AR_MIN(n_threads, AR_TOPO_MAX_CPUS);
    bool *used = calloc((size_t)AR_MAX(t->n_cores, 1), sizeof *used);
    if (!used) return;
    /* a NUMA node with enough cores for every verifier thread, the first such */
    int node = -1;
    for (int nd = 0; nd < t->n_numa && node < 0; nd++) {
        int k = 0;
        for (int c = 0; c < t->n_cores; c++) k += t->cores[c].numa == nd;
        if (k >= n_threads) node = nd;
    }
    for (int c = 0; c < t->n_cores && p->n_verifier < n_threads; c++)
        if (node < 0 || t->cores[c].numa == node) {
            p->verifier_cpus[p->n_verifier++] = t->cores[c].os_pu;
            used[c] = true;
        }
    p->numa = node;
    /* more threads than cores: the remaining threads go on SMT siblings, then wrap around */
    for (int i = 0; p->n_verifier < n_threads; i++) {
        const ar_topo_core *tc = &t->cores[i % t->n_cores];
        int sib = 1 + (i / t->n_cores);
        p->verifier_cpus[p->n_verifier++] = tc->os_pu + (sib < tc->n_pu ? sib : 0);
    }
    /* drafter: free cores, nearest first (same NUMA node, then same package) */
    for (int pass = 0; pass < 3 && p->n_drafter < drafter_threads; pass++)
        for (int c = 0; c < t->n_cores && p->n_drafter < drafter_threads; c++) {
            if (used[c]) continue;
            bool near = pass == 0 ? (node < 0 || t->cores[c].numa == node)
                      : pass == 1 ? t->cores[c].package == t->cores[0].package
                                  : true;
            if (!near) continue;
            p->drafter_cpus[p->n_drafter++] = t->cores[c].os_pu;
            used[c] = true;
        }
    free(used);
    if (drafter_threads > 0 && p->n_drafter == 0)
        snprintf(p->note, sizeof p->note,
                 "%d verifier thread(s) on %d core(s)%s; no free core: the drafter shares them",
                 p->n_verifier, t->n_cores, node >= 0 ? " of one NUMA node" : "");
    else
        snprintf(p->note, sizeof p->note, "%d verifier thread(s) one per core%s, %d drafter",
                 p->n_verifier,
                 node >= 0 ? " in one NUMA node" : " spread over NUMA nodes (memory interleaved)",
                 p->n_drafter);
}

ar_status ar_topo_bind_memory(const ar_topo *t, const ar_placement *p, const void *addr,
                              size_t len) {
    if (t->n_numa <= 1 || t->synthetic || !len) return AR_OK;
    hwloc_topology_t hw = (hwloc_topology_t)t->hw;
    hwloc_nodeset_t set = hwloc_bitmap_alloc();
    if (!set) return ar_fail(AR_ERR_NOMEM, "hwloc: out of memory");
    int rc;
    if (p->numa >= 0) {
        hwloc_obj_t nd = hwloc_get_obj_by_type(hw, HWLOC_OBJ_NUMANODE, (unsigned)p->numa);
        hwloc_bitmap_copy(set, nd->nodeset);
        rc = hwloc_set_area_membind(hw, addr, len, set, HWLOC_MEMBIND_BIND,
                                    HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE);
    } else {
        hwloc_bitmap_copy(set, hwloc_topology_get_topology_nodeset(hw));
        rc = hwloc_set_area_membind(hw, addr, len, set, HWLOC_MEMBIND_INTERLEAVE,
                                    HWLOC_MEMBIND_BYNODESET);
    }
    hwloc_bitmap_free(set);
    return rc == 0 ? AR_OK : ar_fail(AR_ERR_UNSUPPORTED, "memory binding not permitted here");
}
