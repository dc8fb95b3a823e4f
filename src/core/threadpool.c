/* threadpool.c: fork-join pool. A job is published by bumping a generation counter; workers
 * spin on it for a short while (a decode step dispatches hundreds of jobs microseconds apart),
 * then sleep on a futex. The caller runs its own share, then waits for the others the same way:
 * a short spin, then a futex sleep that the last worker to finish ends. Spinning is bounded in
 * time, not iterations (`pause` lasts 10 to 140 cycles depending on the CPU), so on an
 * oversubscribed machine a descheduled thread costs its partner at most the spin, not a whole
 * scheduler time slice of busy waiting. */
#include "threadpool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a waiting thread spins before it sleeps. Measured on a 2-core Xeon (Sapphire Rapids
 * VM): a futex wake-up costs 5-30 us; jobs of a decode step come 1-20 us apart. */
#define WORKER_SPIN_NS 200000 /* between jobs */
#define CALLER_SPIN_NS 100000 /* for the other threads' shares */

struct ar_pool {
    int n;
    pthread_t *threads;
    bool pin_failed;
    ar_job_fn fn;
    void *arg;
    _Atomic uint32_t generation; /* futex word of the workers */
    _Atomic int remaining;       /* worker shares not finished */
    _Atomic uint32_t done;       /* futex word of the caller: bumped when remaining hits 0 */
    _Atomic int sleepers;        /* workers in (or entering) futex_wait on generation */
    _Atomic bool caller_sleeps;
    _Atomic bool stop;
};

typedef struct worker_arg {
    ar_pool *pool;
    int ith;
    bool restore; /* started away from the creator's core: widen to `allowed` first */
    cpu_set_t allowed;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}
static void futex_wake(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Spins until *word != seen or `ns` have passed; true if it changed. */
static bool spin_while_equal(_Atomic uint32_t *word, uint32_t seen, uint64_t ns,
                             const _Atomic bool *stop) {
    uint64_t t0 = 0;
    for (uint32_t i = 0;; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != seen || atomic_load(stop))
            return true;
        cpu_relax();
        if ((i & 63) == 63) {
            const uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > ns)
                return false;
        }
    }
}

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    if (wa.restore) pthread_setaffinity_np(pthread_self(), sizeof wa.allowed, &wa.allowed);
    ar_pool *p = wa.pool;
    uint32_t seen = 0;
    for (;;) {
        while (!spin_while_equal(&p->generation, seen, WORKER_SPIN_NS, &p->stop)) {
            /* announce the sleep, then re-check: the caller bumps generation before it reads
             * sleepers (both seq_cst), so one of the two sees the other */
            atomic_fetch_add(&p->sleepers, 1);
            if (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                futex_wait(&p->generation, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        p->fn(p->arg, wa.ith, p->n);
        if (atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_acq_rel) == 1) {
            atomic_fetch_add(&p->done, 1);
            if (atomic_load(&p->caller_sleeps)) futex_wake(&p->done);
        }
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
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return ar_fail(AR_ERR_NOMEM, "thread pool: out of memory");
    }
    if (cpus && !pin_thread(pthread_self(), cpus[0])) p->pin_failed = true;
    /* Unpinned, a new thread starts on its creator's core and stays there until the kernel's
     * load balancing moves it, which can take milliseconds: meanwhile the caller and the worker
     * take turns on one core (measured: a 260K-parameter model's first 1-token passes took 9 ms
     * instead of 0.08). So each worker starts on another allowed core, then widens its mask back
     * to all the process may use: a starting place, not a binding. */
    cpu_set_t allowed, start;
    CPU_ZERO(&allowed);
    pthread_attr_t attr;
    const int here = sched_getcpu();
    bool spread = !cpus && here >= 0 && sched_getaffinity(0, sizeof allowed, &allowed) == 0 &&
                  CPU_COUNT(&allowed) > 1 && CPU_ISSET(here, &allowed) &&
                  pthread_attr_init(&attr) == 0;
    if (spread) {
        start = allowed;
        CPU_CLR(here, &start);
        if (pthread_attr_setaffinity_np(&attr, sizeof start, &start) != 0) {
            pthread_attr_destroy(&attr);
            spread = false;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){.pool = p, .ith = i, .restore = spread, .allowed = allowed};
        if (!wa || pthread_create(&p->threads[i], spread ? &attr : NULL, worker_main, wa) != 0) {
            free(wa);
            if (spread) pthread_attr_destroy(&attr);
            p->n = i; /* the threads started so far are joined by ar_pool_free */
            ar_pool_free(p);
            return ar_fail(AR_ERR_NOMEM, "thread pool: cannot start thread %d", i);
        }
        if (cpus && !pin_thread(p->threads[i], cpus[i])) p->pin_failed = true;
    }
    if (spread) pthread_attr_destroy(&attr);
    *out = p;
    return AR_OK;
}

void ar_pool_free(ar_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->generation, 1);
    futex_wake(&p->generation);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p);
}

int ar_pool_threads(const ar_pool *p) {
    return p->n;
}
bool ar_pool_pin_failed(const ar_pool *p) {
    return p->pin_failed;
}

void ar_pool_run(ar_pool *p, ar_job_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->remaining, p->n - 1);
    const uint32_t done = atomic_load(&p->done);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: see worker_main */
    if (atomic_load(&p->sleepers) > 0) futex_wake(&p->generation);
    fn(arg, 0, p->n);
    static const _Atomic bool never = false;
    while (!spin_while_equal(&p->done, done, CALLER_SPIN_NS, &never)) {
        atomic_store(&p->caller_sleeps, true);
        if (atomic_load(&p->done) == done) futex_wait(&p->done, done);
        atomic_store(&p->caller_sleeps, false);
    }
}
