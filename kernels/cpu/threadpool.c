// threadpool: persistent workers, generation counter + spin-then-condvar wake-up and
// completion (see threadpool.h).
#include "kernels/cpu/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

// Spin iterations before sleeping. Short: the machine may be shared, and a sleeping worker
// costs only a futex wake-up (a few microseconds) on the next run.
#define SPIN_ITERS 4096

typedef struct worker {
    hl_threadpool *pool; // borrowed, outlives the worker
    pthread_t thread;
    int ith;
} worker;

struct hl_threadpool {
    int n_threads;
    int n_started;           // workers actually running (for free after a partial create)
    worker *workers;         // owned, (n_threads - 1)
    hl_threadpool_fn fn;     // written by the caller before gen is bumped
    void *ctx;
    atomic_int gen;          // bumped once per run (and once to stop)
    atomic_int n_done;       // workers finished with the current run
    atomic_bool stop;
    pthread_mutex_t mu;      // guards the sleeps below
    pthread_cond_t work_cv;  // workers sleep here waiting for gen to change
    pthread_cond_t done_cv;  // the caller sleeps here waiting for n_done
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

static void *worker_main(void *arg) {
    worker *w = arg;
    hl_threadpool *pool = w->pool;
    // Generation 0 is the one at creation: a worker that starts late must still see run 1.
    int seen = 0;
    for (;;) {
        seen = wait_for_gen(pool, seen);
        if (atomic_load(&pool->stop)) return NULL;
        pool->fn(pool->ctx, w->ith, pool->n_threads);
        int done = atomic_fetch_add_explicit(&pool->n_done, 1, memory_order_acq_rel) + 1;
        if (done == pool->n_threads - 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

static void wait_for_workers(hl_threadpool *pool) {
    const int want = pool->n_threads - 1;
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&pool->n_done, memory_order_acquire) == want) return;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->mu);
    while (atomic_load_explicit(&pool->n_done, memory_order_acquire) != want)
        pthread_cond_wait(&pool->done_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
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
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->n_done, 0);
    atomic_init(&pool->stop, false);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->work_cv, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    pool->workers = hl_xcalloc((size_t)n_threads, sizeof(worker));
    for (int i = 1; i < n_threads; i++) {
        worker *w = &pool->workers[i - 1];
        w->pool = pool;
        w->ith = i;
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
    pthread_cond_destroy(&pool->done_cv);
    free(pool->workers);
    free(pool);
}

int hl_threadpool_n_threads(const hl_threadpool *pool) { return pool->n_threads; }

void hl_threadpool_run(hl_threadpool *pool, hl_threadpool_fn fn, void *ctx) {
    if (pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);
    fn(ctx, 0, pool->n_threads);
    wait_for_workers(pool);
}
