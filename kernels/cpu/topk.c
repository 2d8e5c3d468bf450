// topk: the k best entries and the log-sum-exp of one row (see topk.h).
#include "kernels/cpu/topk.h"

#include <math.h>

#include "kernels/backend.h"

typedef hl_cpu_topk_entry entry;

// True when a ranks below b: lower value, or equal value and higher column.
static inline bool ranks_below(entry a, entry b) { return a.v < b.v || (a.v == b.v && a.id > b.id); }

// Min-heap by rank: the root is the worst kept entry.
static void sift_down(entry *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, m = i;
        if (l < n && ranks_below(h[l], h[m])) m = l;
        if (l + 1 < n && ranks_below(h[l + 1], h[m])) m = l + 1;
        if (m == i) return;
        entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

// Columns arrive in increasing order, so an equal value never beats the kept one; NaN fails
// the comparison and is never taken.
static inline void offer(entry *h, int k, float v, int32_t id) {
    if (!(v > h[0].v)) return;
    h[0] = (entry){v, id};
    sift_down(h, k, 0);
}

// Heap sort of h[0..k): best first.
static void heap_sort(entry *h, int k) {
    for (int end = k - 1; end > 0; end--) {
        entry t = h[0];
        h[0] = h[end];
        h[end] = t;
        sift_down(h, end, 0);
    }
}

int hl_cpu_topk_select(const float *x, int n, int k, hl_cpu_topk_entry *h) {
    HL_ASSERT(k >= 1 && k <= n);
    int filled = 0, i = 0;
    for (; i < n && filled < k; i++) {
        if (x[i] == x[i]) h[filled++] = (entry){x[i], i};
    }
    for (int j = filled / 2 - 1; j >= 0; j--) sift_down(h, filled, j);
    if (filled < k) {
        heap_sort(h, filled);
        return filled;
    }
    for (; i + 8 <= n; i += 8) { // hot: almost every block stops at the test
        float m = x[i];
        for (int j = 1; j < 8; j++) m = x[i + j] > m ? x[i + j] : m;
        if (m <= h[0].v) continue;
        for (int j = 0; j < 8; j++) offer(h, k, x[i + j], i + j);
    }
    for (; i < n; i++) offer(h, k, x[i], i);
    heap_sort(h, k);
    return k;
}

// 1 for NaN or +inf (integer test on the bits, so the loop vectorizes).
static inline uint32_t is_bad(float f) {
    union { float f; uint32_t u; } b = {.f = f};
    return (b.u - 0x7f800000u < 0x00800000u) | (b.u > 0xff800000u);
}

// max * it + log Σ exp((x - max) * it), each block of 8 summed in float, the blocks in double:
// the arithmetic of engine/sampler.c, so that its draws and logprobs from candidates are the
// bits of its full-row path.
static float log_sum_exp(const float *x, int n, float it) {
    float lane[8];
    uint32_t bad = 0;
    for (int j = 0; j < 8; j++) lane[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) {
            bad += is_bad(x[i + j]);
            lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
        }
    }
    for (; i < n; i++) {
        bad += is_bad(x[i]);
        lane[0] = x[i] > lane[0] ? x[i] : lane[0];
    }
    if (bad) return NAN;
    float max = lane[0];
    for (int j = 1; j < 8; j++) max = lane[j] > max ? lane[j] : max;
    if (max == -INFINITY) return -INFINITY;
    double sum = 0;
    for (i = 0; i + 8 <= n; i += 8) {
        float acc = 0;
        for (int j = 0; j < 8; j++) acc += hl_cpu_topk_exp_nonpos((x[i + j] - max) * it);
        sum += acc;
    }
    for (; i < n; i++) sum += hl_cpu_topk_exp_nonpos((x[i] - max) * it);
    return (float)((double)max * (double)it + log(sum));
}

void hl_cpu_topk_row(const float *x, int n, int k, float inv_temp, float *vals, int32_t *ids, float *lse) {
    HL_ASSERT(k >= 1 && k <= n && k <= HL_TOPK_MAX);
    entry h[HL_TOPK_MAX];
    const int m = hl_cpu_topk_select(x, n, k, h);
    for (int i = 0; i < k; i++) {
        vals[i] = i < m ? h[i].v : -INFINITY;
        ids[i] = i < m ? h[i].id : -1;
    }
    *lse = log_sum_exp(x, n, inv_temp);
}
