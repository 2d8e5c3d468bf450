// threadpool: a persistent pool of worker threads for the CPU backend's ops (ggml-style).
//
// hl_threadpool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once for every ith in [0, nth) —
// the caller runs ith 0, the workers the rest — and returns when all calls have returned,
// so consecutive runs are separated by a barrier. Workers spin briefly after a run, then
// sleep on a condition variable; a run allocates nothing. Only one thread may call run at a
// time (the engine thread owns the pool).
//
//   hl_threadpool *pool = hl_threadpool_create(4, &err);
//   hl_threadpool_run(pool, my_rows_fn, &args);   // fn splits rows by ith/nth
//   hl_threadpool_free(pool);
#pragma once

#include "common/hl.h"

typedef struct hl_threadpool hl_threadpool;

// Work function: does share ith of nth of the job described by ctx.
typedef void (*hl_threadpool_fn)(void *ctx, int ith, int nth);

// A pool of n_threads threads including the caller (n_threads - 1 are started). n_threads <= 0
// means one per online core. NULL + HL_ERR_IO/HL_ERR_INVAL in err when threads cannot start.
hl_threadpool *hl_threadpool_create(int n_threads, hl_error *err);

// Stops and joins the workers; accepts NULL. Must not race with run.
void hl_threadpool_free(hl_threadpool *pool);

// nth as passed to work functions (>= 1).
int hl_threadpool_n_threads(const hl_threadpool *pool);

// Runs fn(ctx, ith, nth) for all ith and waits for all of them. fn must not call run.
void hl_threadpool_run(hl_threadpool *pool, hl_threadpool_fn fn, void *ctx);
