// threadpool: persistent workers that claim shares of a run from one atomic word; generation
// counter + spin-then-condvar wake-up (see threadpool.h).
#include "kernels/cpu/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

// Spin iterations before sleeping (workers) or yielding (the caller). Short: the machine may
// be shared, and a sleeping worker costs only a futex wake-up (a few microseconds).
#define SPIN_ITERS 4096

typedef struct worker {
    hl_threadpool *pool; // borrowed, outlives the worker
    pthread_t thread;
} worker;

struct hl_threadpool {
    int n_threads;
    int n_started;             // workers actually running (for free after a partial create)
    worker *workers;           // owned, (n_threads - 1)
    // The current run. `claim` packs (run id << 32) | (n_shares << 16) | next share; a share is
    // taken by a compare-and-swap of the word, so a thread that read fn/ctx of a finished
    // run fails its swap and never calls them.
    _Atomic(hl_threadpool_fn) fn;
    _Atomic(void *) ctx;
    _Atomic uint64_t claim;
    atomic_int n_done;         // shares of the current run that have returned
    atomic_int gen;            // bumped once per run (and once to stop): wakes workers
    atomic_bool stop;
    pthread_mutex_t mu;        // guards the sleep below
    pthread_cond_t work_cv;    // workers sleep here waiting for gen to change
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int wait_for_gen(hl_threadpool *pool, int seen) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        int g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->mu);
    int g;
    while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen)
        pthread_cond_wait(&pool->work_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
    return g;
}

// Claims and runs shares of the current run until none is left.
static void help(hl_threadpool *pool) {
    for (;;) {
        uint64_t w = atomic_load_explicit(&pool->claim, memory_order_acquire);
        const int next = (int)(w & 0xFFFF), n = (int)((w >> 16) & 0xFFFF);
        if (next >= n) return;
        hl_threadpool_fn fn = atomic_load_explicit(&pool->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&pool->ctx, memory_order_relaxed);
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(ctx, next, n);
        atomic_fetch_add_explicit(&pool->n_done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    hl_threadpool *pool = w->pool;
    // Generation 0 is the one at creation: a worker that starts late must still see run 1.
    int seen = 0;
    for (;;) {
        seen = wait_for_gen(pool, seen);
        if (atomic_load(&pool->stop)) return NULL;
        help(pool);
    }
}

static void wait_for_shares(hl_threadpool *pool, int n) {
    for (int i = 0; atomic_load_explicit(&pool->n_done, memory_order_acquire) != n; i++) {
        if (i < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
}

hl_threadpool *hl_threadpool_create(int n_threads, hl_error *err) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 1024) {
        hl_errorf(err, HL_ERR_INVAL, "thread pool: %d threads is too many", n_threads);
        return NULL;
    }
    hl_threadpool *pool = hl_xcalloc(1, sizeof(*pool));
    pool->n_threads = n_threads;
    atomic_init(&pool->fn, NULL);
    atomic_init(&pool->ctx, NULL);
    atomic_init(&pool->claim, 0);
    atomic_init(&pool->n_done, 0);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->stop, false);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->work_cv, NULL);
    pool->workers = hl_xcalloc((size_t)n_threads, sizeof(worker));
    for (int i = 1; i < n_threads; i++) {
        worker *w = &pool->workers[i - 1];
        w->pool = pool;
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            hl_errorf(err, HL_ERR_IO, "thread pool: pthread_create: %s", strerror(rc));
            hl_threadpool_free(pool);
            return NULL;
        }
        pool->n_started++;
    }
    return pool;
}

void hl_threadpool_free(hl_threadpool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, true);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->gen, 1);
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n_started; i++) pthread_join(pool->workers[i].thread, NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->work_cv);
    free(pool->workers);
    free(pool);
}

int hl_threadpool_n_threads(const hl_threadpool *pool) { return pool->n_threads; }

void hl_threadpool_run_n(hl_threadpool *pool, hl_threadpool_fn fn, void *ctx, int n_shares) {
    HL_ASSERT(n_shares >= 1 && n_shares <= 0xFFFF);
    if (pool->n_threads == 1 || n_shares == 1) {
        for (int i = 0; i < n_shares; i++) fn(ctx, i, n_shares);
        return;
    }
    // No share of the previous run is unclaimed or running, so nobody reads fn/ctx/n_done now.
    const uint64_t run_id = (atomic_load_explicit(&pool->claim, memory_order_relaxed) >> 32) + 1;
    atomic_store_explicit(&pool->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->claim, (run_id << 32) | ((uint64_t)n_shares << 16), memory_order_release);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);
    help(pool);
    wait_for_shares(pool, n_shares);
}

void hl_threadpool_run(hl_threadpool *pool, hl_threadpool_fn fn, void *ctx) {
    hl_threadpool_run_n(pool, fn, ctx, pool->n_threads);
}
