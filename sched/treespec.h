/* treespec.h: the tree modes a context is given, as the CLI, the API and the benchmarks spell
 * them: "chain:K", "static:AxBx..." (A children of the root, B of each of those, ...),
 * "dynamic:N" (the most probable paths under a budget of N draft nodes) and "adaptive" (the
 * scheduler sizes every tree from measured costs and acceptance, and decodes plainly when
 * speculation does not pay). The first three are shapes the drafter grows as they are
 * (draft/drafter.h); adaptive is the scheduler's, so it lives here. */
#ifndef ARBOR_TREESPEC_H
#define ARBOR_TREESPEC_H

#include "draft/drafter.h"

typedef struct ar_tree_spec {
    bool adaptive;       /* the scheduler chooses; shape is then dynamic with the largest budget */
    ar_tree_shape shape;
} ar_tree_spec;

/* Parses a mode. The tree (root included) must fit one verification (AR_TREE_MAX rows). */
ar_status ar_tree_spec_parse(const char *s, ar_tree_spec *out);
/* Writes the canonical spelling of spec into buf. */
void ar_tree_spec_format(const ar_tree_spec *spec, char *buf, size_t cap);

#endif
