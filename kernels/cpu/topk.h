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

// exp(x) for x <= 0, and exactly 0 below -87 (so -inf, a masked token, weighs 0). Cephes'
// expf polynomial, relative error below 1e-7. Written without branches or selects because
// GCC vectorizes it at -O2 only then (no if-conversion); libm's expf costs ~4x more per token.
// The one exp of hl_cpu_topk_row's log-sum-exp and of engine/sampler.c's weights, so that the
// sampler's draws from candidates are the bits of its full-row path.
static inline float hl_cpu_topk_exp_nonpos(float x) {
    union { float f; int32_t i; } u = {.f = x};
    int32_t ax = u.i & 0x7fffffff;                                     // bits of |x|
    int32_t over = -(int32_t)((uint32_t)(0x42ae0000 - ax) >> 31);       // -1 when |x| > 87
    u.i = (ax & ~over) | (0x42ae0000 & over);                           // |x| clamped to 87
    float xc = -u.f;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; // round(x / ln 2)
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;              // x - n ln 2, in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } y = {.i = ((int32_t)n + 127) << 23}; // 2^n, n in [-126, 0]
    y.f *= p;
    y.i &= ~over;
    return y.f;
}
