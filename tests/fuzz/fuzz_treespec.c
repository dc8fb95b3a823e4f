/* fuzz_treespec.c: libFuzzer harness for the tree-mode parser (ar_tree_spec_parse,
 * sched/treespec.c). The input is the spec text. A rejected spec needs a one-line error; an
 * accepted one must describe a tree that fits a batch-invariant verification, and its canonical
 * spelling (ar_tree_spec_format) must parse back to the same spec. */
#include <string.h>

#include "sched/treespec.h"
#include "tests/fuzz/fuzz.h"

static void fz_spec_check(const ar_tree_spec *spec) {
    const ar_tree_shape *s = &spec->shape;
    FZ_CHECK(s->budget >= 1 && s->budget <= AR_TREE_MAX - 1);
    FZ_CHECK(s->n_levels >= 0 && s->n_levels <= AR_SPEC_MAX_LEVELS);
    if (s->mode == AR_TREE_CHAIN || s->mode == AR_TREE_STATIC) {
        int64_t level = 1, total = 0;
        FZ_CHECK(s->n_levels >= 1);
        for (int i = 0; i < s->n_levels; i++) {
            FZ_CHECK(s->branch[i] >= 1);
            level *= s->branch[i];
            total += level;
            FZ_CHECK(total <= AR_TREE_MAX - 1);
        }
        FZ_CHECK(total == s->budget);
    }
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char text[4097];
    memcpy(text, data, size);
    text[size] = 0;
    ar_tree_spec spec;
    if (ar_tree_spec_parse(text, &spec) != AR_OK) {
        const char *e = ar_last_error();
        FZ_CHECK(e[0] != 0 && strchr(e, '\n') == NULL);
        return 0;
    }
    fz_spec_check(&spec);
    char canon[256];
    ar_tree_spec_format(&spec, canon, sizeof canon);
    ar_tree_spec again;
    FZ_CHECK(ar_tree_spec_parse(canon, &again) == AR_OK);
    FZ_CHECK(again.adaptive == spec.adaptive && again.shape.mode == spec.shape.mode &&
             again.shape.n_levels == spec.shape.n_levels &&
             again.shape.budget == spec.shape.budget);
    FZ_CHECK(memcmp(again.shape.branch, spec.shape.branch, sizeof spec.shape.branch) == 0);
    /* a short buffer truncates, never overflows */
    char small[8];
    ar_tree_spec_format(&spec, small, sizeof small);
    FZ_CHECK(memchr(small, 0, sizeof small) != NULL);
    return 0;
}
