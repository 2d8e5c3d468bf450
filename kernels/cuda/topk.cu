// topk: the topk op (kernels/backend.h) on the device — the k best logits of each row, their
// columns and the row's log-sum-exp, so that sampling downloads (rows x k) candidates instead
// of whole rows (128k floats per row for Llama 3).
//
// Design: one block of 1024 threads per row (a step has at most a few hundred rows; a row is
// at most 512 KB, read from L2 after the first pass). Each float maps to a monotone uint32
// key (sign flip for negatives, -0 and +0 the same key so that they tie as floats do; 0 is
// reserved for NaN, which never counts). A radix select over the key bytes, most significant
// first, finds the bin that holds the k-th best value: each pass builds a 256-bin histogram in
// shared memory over the values whose key matches the prefix found so far, and one thread
// walks the bins from the top. The first pass also keeps an online (max, Σ exp(y - max)) of
// y = x * it per thread for the log-sum-exp at the row's temperature (it = inv_temp[row], 1
// without inv_temp) and flags NaN/+inf. That is max(y) + log Σ exp(y - max(y)) in float with
// expf: within a few 1e-7 relative of the CPU's value, not its bits. The select stops as soon as the values above
// the current bin plus the bin itself fit the candidate buffer (CAP entries; with logits that
// is usually after the second byte), or after the fourth byte, when the k-th key K is exact:
//   - fits: every value whose key prefix is >= the bin is gathered (unordered);
//   - exact: the values with key > K (fewer than k) are gathered, and the values equal to K
//     in column order (a block-wide prefix count over column tiles) until k are taken.
// The candidates (at most CAP, unique columns) are then sorted in shared memory by a bitonic
// sort on (key descending, column ascending), and the first k are written with their values
// read back from the row, so vals are bit-equal to the input. Rows with fewer than k non-NaN
// values get -inf / -1 in the missing slots, as hl_ref_topk. Nothing is allocated and nothing
// waits on the host, so the launch can be captured in a graph.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define TOPK_THREADS 1024
#define TOPK_WARPS (TOPK_THREADS / 32)
#define TOPK_CAP 512 // candidate buffer: >= 2 * HL_TOPK_MAX, a power of two

// Monotone key of a float: a < b (as floats) iff key(a) < key(b); -0 == +0; NaN -> 0.
__device__ static inline uint32_t topk_key(float f) {
    if (f != f) return 0;
    uint32_t b = f == 0.0f ? 0u : __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

// (m, s) ⊕ (m2, s2) of the online sum Σ exp(x - m); m = -inf means an empty sum.
__device__ static inline void lse_merge(float *m, float *s, float m2, float s2) {
    if (m2 == -INFINITY) return;
    if (*m == -INFINITY) {
        *m = m2;
        *s = s2;
        return;
    }
    const float mx = fmaxf(*m, m2);
    *s = *s * expf(*m - mx) + s2 * expf(m2 - mx);
    *m = mx;
}

typedef struct topk_smem {
    unsigned hist[256];
    uint32_t key[TOPK_CAP];
    int col[TOPK_CAP];
    float red_m[TOPK_WARPS], red_s[TOPK_WARPS];
    int warp_n[TOPK_WARPS];
    int bad[TOPK_WARPS];
    unsigned n_cand;
    // select state, written by thread 0
    uint32_t prefix;  // key prefix of the bin holding the k-th value (depth bytes)
    int depth;        // bytes resolved
    int above;        // values whose key prefix is above `prefix`
    int in_bin;       // values in the bin
    int done;
    int take_all;     // fewer than k non-NaN values: every one is a candidate
} topk_smem;

// Pass over the row at depth d (bytes resolved so far): histogram of the next byte of the
// keys that match the current prefix. The first pass also accumulates the lse terms of y = x *
// it. Whole warps step together (the tile loop is uniform), so lanes with the same bin add once
// (__match_any_sync): logits crowd into a few bins, and plain shared atomics would serialize.
__device__ static void topk_histogram(topk_smem *sm, const float *xr, int n, int d, float it, float *m, float *s,
                                      int *bad) {
    const int shift = 24 - 8 * d, lane = threadIdx.x % 32;
    const uint32_t prefix = sm->prefix;
    for (int j0 = 0; j0 < n; j0 += TOPK_THREADS) {
        const int j = j0 + (int)threadIdx.x;
        const float f = j < n ? xr[j] : NAN;
        const uint32_t key = topk_key(f);
        if (d == 0 && j < n) {
            const float y = f * it;
            if (f != f || f == INFINITY) *bad = 1;
            else if (y > *m) {
                *s = *s * expf(*m - y) + 1.0f; // *m = -inf: 0 * 0 + 1
                *m = y;
            } else if (y != -INFINITY) *s += expf(y - *m);
        }
        const bool counts = key != 0 && (d == 0 || (key >> (shift + 8)) == prefix);
        const unsigned bin = counts ? (key >> shift) & 0xffu : 256u;
        const unsigned peers = __match_any_sync(0xffffffffu, bin);
        if (counts && __ffs(peers) - 1 == lane) atomicAdd(&sm->hist[bin], (unsigned)__popc(peers));
    }
}

// Thread 0: the bin of the next byte that holds the need-th best value of the prefix.
__device__ static void topk_pick_bin(topk_smem *sm, int k) {
    const int need = k - sm->above;
    int acc = 0, b = 255;
    for (; b >= 0; b--) {
        if (acc + (int)sm->hist[b] >= need) break;
        acc += (int)sm->hist[b];
    }
    if (b < 0) { // only on the first byte: fewer than k values at all
        sm->take_all = 1;
        sm->done = 1;
        return;
    }
    sm->above += acc;
    sm->in_bin = (int)sm->hist[b];
    sm->prefix = (sm->prefix << 8) | (uint32_t)b;
    sm->depth++;
    sm->done = sm->depth == 4 || sm->above + sm->in_bin <= TOPK_CAP;
}

// Block-wide (max, sum) and NaN flag of the first pass into sm (thread 0 reads the result).
__device__ static void topk_reduce_lse(topk_smem *sm, float m, float s, int bad, float *lse_out) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int o = 16; o > 0; o /= 2) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(&m, &s, m2, s2);
    }
    bad = __any_sync(0xffffffffu, bad);
    if (lane == 0) {
        sm->red_m[warp] = m;
        sm->red_s[warp] = s;
        sm->bad[warp] = bad;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    float mt = -INFINITY, st = 0.0f;
    int any_bad = 0;
    for (int w = 0; w < TOPK_WARPS; w++) {
        lse_merge(&mt, &st, sm->red_m[w], sm->red_s[w]);
        any_bad |= sm->bad[w];
    }
    *lse_out = any_bad ? NAN : (mt == -INFINITY ? -INFINITY : mt + logf(st));
}

// Gathers, unordered, every value whose key prefix at the final depth is above (or, with
// with_bin, at least) the selected bin.
__device__ static void topk_gather_above(topk_smem *sm, const float *xr, int n, bool with_bin) {
    const int shift = 32 - 8 * sm->depth;
    const uint32_t prefix = sm->prefix;
    const bool all = sm->take_all;
    for (int j = threadIdx.x; j < n; j += TOPK_THREADS) {
        const uint32_t key = topk_key(xr[j]);
        if (key == 0) continue;
        const uint32_t p = shift == 32 ? 0 : key >> shift;
        if (!(all || p > prefix || (with_bin && p == prefix))) continue;
        const unsigned at = atomicAdd(&sm->n_cand, 1u);
        sm->key[at] = key;
        sm->col[at] = j;
    }
}

// Appends the first `need` columns whose key equals K, in column order: per tile of
// TOPK_THREADS columns a ballot + warp counts give each match its rank.
__device__ static void topk_gather_ties(topk_smem *sm, const float *xr, int n, uint32_t K, int need, int base_at) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int taken = 0;
    for (int j0 = 0; j0 < n && taken < need; j0 += TOPK_THREADS) {
        const int j = j0 + threadIdx.x;
        const bool hit = j < n && topk_key(xr[j]) == K;
        const unsigned ball = __ballot_sync(0xffffffffu, hit);
        if (lane == 0) sm->warp_n[warp] = __popc(ball);
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < TOPK_WARPS; w++) {
            before += w < warp ? sm->warp_n[w] : 0;
            total += sm->warp_n[w];
        }
        const int rank = taken + before + __popc(ball & ((1u << lane) - 1u));
        if (hit && rank < need) {
            sm->key[base_at + rank] = K;
            sm->col[base_at + rank] = j;
        }
        taken += total; // the same in every thread
        __syncthreads(); // warp_n is rewritten by the next tile
    }
}

// True when candidate a ranks below b: lower key, or the same key and a higher column.
__device__ static inline bool topk_below(uint32_t ka, int ca, uint32_t kb, int cb) {
    return ka < kb || (ka == kb && ca > cb);
}

// Bitonic sort of key/col[0..n_pad) in shared memory, best first.
__device__ static void topk_sort(topk_smem *sm, int n_pad) {
    for (int size = 2; size <= n_pad; size *= 2) {
        for (int stride = size / 2; stride > 0; stride /= 2) {
            for (int i = threadIdx.x; i < n_pad; i += TOPK_THREADS) {
                const int j = i ^ stride;
                if (j <= i) continue;
                const bool best_first = (i & size) == 0;
                const bool i_below = topk_below(sm->key[i], sm->col[i], sm->key[j], sm->col[j]);
                if (best_first != i_below) continue;
                const uint32_t tk = sm->key[i];
                const int tc = sm->col[i];
                sm->key[i] = sm->key[j];
                sm->col[i] = sm->col[j];
                sm->key[j] = tk;
                sm->col[j] = tc;
            }
            __syncthreads();
        }
    }
}

__global__ void __launch_bounds__(TOPK_THREADS) topk_kernel(float *vals, int64_t ldv, int32_t *ids, int64_t ldi,
                                                            float *lse, int64_t ldl, const float *x, int64_t ldx,
                                                            const float *inv_temp, int n, int k) {
    __shared__ topk_smem sm;
    const float *xr = x + (int64_t)blockIdx.x * ldx;
    const float it = inv_temp ? inv_temp[blockIdx.x] : 1.0f;
    if (threadIdx.x == 0) {
        sm.prefix = 0;
        sm.depth = sm.above = sm.in_bin = sm.done = sm.take_all = 0;
        sm.n_cand = 0;
    }
    float m = -INFINITY, s = 0.0f;
    int bad = 0;
    for (int d = 0; d < 4; d++) {
        if (threadIdx.x < 256) sm.hist[threadIdx.x] = 0;
        __syncthreads();
        topk_histogram(&sm, xr, n, d, it, &m, &s, &bad);
        if (d == 0) topk_reduce_lse(&sm, m, s, bad, lse + (int64_t)blockIdx.x * ldl);
        __syncthreads();
        if (threadIdx.x == 0) topk_pick_bin(&sm, k);
        __syncthreads();
        if (sm.done) break;
    }
    const bool fits = sm.take_all || sm.above + sm.in_bin <= TOPK_CAP;
    topk_gather_above(&sm, xr, n, fits);
    __syncthreads();
    if (!fits) topk_gather_ties(&sm, xr, n, sm.prefix, k - sm.above, sm.above);
    const int n_cand = fits ? (int)sm.n_cand : k;
    int n_pad = 1;
    while (n_pad < n_cand) n_pad *= 2;
    for (int i = n_cand + (int)threadIdx.x; i < n_pad; i += TOPK_THREADS) {
        sm.key[i] = 0;
        sm.col[i] = 0x7fffffff;
    }
    __syncthreads();
    topk_sort(&sm, n_pad);
    for (int i = threadIdx.x; i < k; i += TOPK_THREADS) {
        const bool real = i < n_cand && sm.key[i] != 0;
        vals[(int64_t)blockIdx.x * ldv + i] = real ? xr[sm.col[i]] : -INFINITY;
        ids[(int64_t)blockIdx.x * ldi + i] = real ? sm.col[i] : -1;
    }
}

extern "C" void hl_cuda_topk(hl_cuda_stream s, float *vals, int64_t ldv, int32_t *ids, int64_t ldi, float *lse,
                             int64_t ldl, const float *x, int64_t ldx, const float *inv_temp, int64_t rows,
                             int64_t ncols, int k) {
    if (rows <= 0) return;
    topk_kernel<<<(unsigned)rows, TOPK_THREADS, 0, s>>>(vals, ldv, ids, ldi, lse, ldl, x, ldx, inv_temp, (int)ncols,
                                                        k);
    HL_LAUNCH_CHECK();
}
