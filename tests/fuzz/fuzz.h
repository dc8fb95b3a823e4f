/* fuzz.h: what the libFuzzer harnesses (tests/fuzz/fuzz_*.c) share. Each harness defines its
 * entry point under the name FUZZ_ENTRY (LLVMFuzzerTestOneInput unless the includer says
 * otherwise), so tests/test_regress.c can include every harness into one gcc-built Criterion test
 * and replay the crash inputs kept in tests/regress/<harness>/ through exactly the fuzzed code.
 * A harness reports a broken invariant (not just a crash) with FZ_CHECK, which aborts: libFuzzer
 * and the replay test both count that as a failure. */
#ifndef ARBOR_FUZZ_H
#define ARBOR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
