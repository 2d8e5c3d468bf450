// topk: the CPU backend's row kernel of the topk op (kernels/backend.h): the k best values of
// one logit row with their columns, best first (equal values: lower column first), and the
// row's log-sum-exp at a temperature, without sorting the row. One pass keeps a min-heap of the k best that
// skips whole blocks of 8 values below its worst entry (almost every block of a 128k-entry
// row once the heap has settled), then two vectorized passes give max and Σ exp((x - max) * it).
// backend_cpu.c runs it over rows on the thread pool; the scalar reference is hl_ref_topk.
//
//   float vals[40], lse; int32_t ids[40];
//   hl_cpu_topk_row(logits, n_vocab, 40, 1.0f, vals, ids, &lse);   // vals[0] = max, ids[0] = argmax
#pragma once

#include "common/hl.h"

// Row x[0..n) (1 <= k <= n): vals[0..k) / ids[0..k) get the k largest values and their
// columns as hl_ref_topk does (NaN never taken; missing slots -inf / -1), *lse the row's
// log-sum-exp at inv_temp (> 0), max * inv_temp + log Σ exp((x - max) * inv_temp) (-inf when
// every value is -inf, NaN when the row holds a NaN or +inf), equal to the double-precision
// reference within about 1e-7 relative and bit-equal to what engine/sampler.c computes on the
// whole row. Allocates nothing.
void hl_cpu_topk_row(const float *x, int n, int k, float inv_temp, float *vals, int32_t *ids, float *lse);

// One kept entry of a selection: a value and its column.
typedef struct hl_cpu_topk_entry {
    float v;
    int32_t id;
} hl_cpu_topk_entry;

// The selection of hl_cpu_topk_row on its own, for any k (1 <= k <= n): the k largest values of
// x[0..n) and their columns into best[0..k) (caller-owned), best first, equal values lower column
// first, NaN never taken. Returns how many it found: k, or fewer when x holds fewer than k
// non-NaN values (best then holds all of them, best first). One pass with best[] as a min-heap
// that skips blocks of 8 below its worst entry; allocates nothing. engine/sampler.c selects with
// it too, so both give the same entries in the same order.
int hl_cpu_topk_select(const float *x, int n, int k, hl_cpu_topk_entry *best);
