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
