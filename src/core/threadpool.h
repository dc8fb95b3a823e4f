/* threadpool.h: a fixed pool of worker threads that run one parallel job at a time (the model's
 * matmuls and attention split by rows). Workers spin briefly before sleeping, because a decode
 * step dispatches hundreds of short jobs. Which cores the workers run on is decided above the
 * runtime (sched/): the pool only applies a CPU list it is given. */
#ifndef ARBOR_THREADPOOL_H
#define ARBOR_THREADPOOL_H

#include "util.h"

typedef struct ar_pool ar_pool;

/* The job: called once per thread with (ith, nth); it divides the work itself. */
typedef void (*ar_job_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (the caller's thread is thread 0). cpus: optional list of n_threads OS CPU
 * ids to pin thread i to (NULL: no pinning); a failed pin is reported through `pin_failed`. */
ar_status ar_pool_create(int n_threads, const int *cpus, ar_pool **out);
void ar_pool_free(ar_pool *p);
int ar_pool_threads(const ar_pool *p);
/* True when pinning was requested and some thread could not be pinned (e.g. in a container). */
bool ar_pool_pin_failed(const ar_pool *p);
/* Runs fn on every thread and returns when all are done. Not reentrant. */
void ar_pool_run(ar_pool *p, ar_job_fn fn, void *arg);

/* ar_pool_run, or a plain call when there is no pool. */
static inline void ar_pool_run_or_inline(ar_pool *p, ar_job_fn fn, void *arg) {
    if (p) ar_pool_run(p, fn, arg);
    else fn(arg, 0, 1);
}

/* Splits [0, n) into nth contiguous chunks (multiples of `align` except the last). */
static inline void ar_split(int64_t n, int64_t align, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t chunks = (n + align - 1) / align;
    int64_t per = chunks / nth, extra = chunks % nth;
    int64_t c0 = ith * per + (ith < extra ? ith : extra);
    int64_t c1 = c0 + per + (ith < extra ? 1 : 0);
    *lo = AR_MIN(n, c0 * align);
    *hi = AR_MIN(n, c1 * align);
}

#endif
