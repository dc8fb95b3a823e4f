/* threadpool.c: fork-join pool. A job is published by bumping a generation counter; workers spin
 * on it for a short while, then sleep on a condition variable. Completion is an atomic counter
 * the caller spins on (jobs are microseconds to milliseconds long). */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ITERS 20000

struct ar_pool {
    int n;
    pthread_t *threads;
    bool pin_failed;
    ar_job_fn fn;
    void *arg;
    _Atomic uint64_t generation;
    _Atomic int remaining;
    _Atomic bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int sleepers;
};

typedef struct worker_arg {
    ar_pool *pool;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    ar_pool *p = wa.pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_acq_rel);
    }
}

static bool pin_thread(pthread_t t, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(t, sizeof set, &set) == 0;
}

ar_status ar_pool_create(int n_threads, const int *cpus, ar_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return ar_fail(AR_ERR_INVALID_ARG, "thread count %d out of range [1, 1024]", n_threads);
    ar_pool *p = calloc(1, sizeof *p);
    if (!p) return ar_fail(AR_ERR_NOMEM, "thread pool: out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return ar_fail(AR_ERR_NOMEM, "thread pool: out of memory");
    }
    if (cpus && !pin_thread(pthread_self(), cpus[0])) p->pin_failed = true;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i};
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i; /* the threads started so far are joined by ar_pool_free */
            ar_pool_free(p);
            return ar_fail(AR_ERR_NOMEM, "thread pool: cannot start thread %d", i);
        }
        if (cpus && !pin_thread(p->threads[i], cpus[i])) p->pin_failed = true;
    }
    *out = p;
    return AR_OK;
}

void ar_pool_free(ar_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int ar_pool_threads(const ar_pool *p) { return p->n; }
bool ar_pool_pin_failed(const ar_pool *p) { return p->pin_failed; }

void ar_pool_run(ar_pool *p, ar_job_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->remaining, p->n - 1);
    /* seq_cst: pairs with the worker's sleepers increment (neither side can miss the other) */
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    while (atomic_load_explicit(&p->remaining, memory_order_acquire) > 0) cpu_relax();
}
