// threadpool: a persistent pool of worker threads for the CPU backend's ops (ggml-style).
//
// hl_threadpool_run_n(pool, fn, ctx, n) calls fn(ctx, i, n) once for every share i in [0, n)
// and returns when all calls have returned, so consecutive runs are separated by a barrier.
// Shares are claimed one at a time from an atomic counter by the caller and whichever workers
// are awake: a descheduled worker (the machine may be shared) delays a run by at most the
// share it is inside, never by a share it has not started, and the caller never waits for a
// worker to merely wake up. Which thread runs a share is therefore not fixed — work functions
// must depend on the share index only. Workers spin briefly after a run, then sleep on a
// condition variable; a run allocates nothing. Only one thread may call run at a time (the
// engine thread owns the pool).
//
//   hl_threadpool *pool = hl_threadpool_create(4, &err);
//   hl_threadpool_run(pool, my_rows_fn, &args);   // fn splits rows by ith/nth
//   hl_threadpool_free(pool);
#pragma once

#include "common/hl.h"

typedef struct hl_threadpool hl_threadpool;

// Work function: does share ith of nth of the job described by ctx (any thread may run it).
typedef void (*hl_threadpool_fn)(void *ctx, int ith, int nth);

// A pool of n_threads threads including the caller (n_threads - 1 are started). n_threads <= 0
// means one per online core. NULL + HL_ERR_IO/HL_ERR_INVAL in err when threads cannot start.
hl_threadpool *hl_threadpool_create(int n_threads, hl_error *err);

// Stops and joins the workers; accepts NULL. Must not race with run.
void hl_threadpool_free(hl_threadpool *pool);

// nth as passed to work functions (>= 1).
int hl_threadpool_n_threads(const hl_threadpool *pool);

// Runs fn(ctx, ith, nth) for all ith in [0, nth), nth = the pool's thread count, and waits for
// all of them. fn must not call run.
void hl_threadpool_run(hl_threadpool *pool, hl_threadpool_fn fn, void *ctx);

// Like run with n_shares (1 .. 65535) shares: more shares than threads balance uneven or
// interrupted threads.
void hl_threadpool_run_n(hl_threadpool *pool, hl_threadpool_fn fn, void *ctx, int n_shares);
