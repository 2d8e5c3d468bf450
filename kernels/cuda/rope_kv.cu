// rope_kv: RoPE on q (in place) fused with the K/V write into the paged pool (backend.h).
// One block per token. Angles are computed in double, as the reference does, once per
// token and pair, then shared by every head: at positions of several thousand an fp32
// angle would be off by ~1e-3 rad. A negative slot (padding) rotates q and writes no K/V.
//
// int8 pools (kernels/backend.h): one warp per (head, K or V) row keeps the row in registers
// (dims lane + 32 i), takes amax with a shuffle reduction, and writes the codes
// rintf(x * (127 / amax)) (__float2int_rn: nearest, ties to even) and the scale amax / 127,
// both with IEEE division, as the CPU reference computes them.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define ROPE_MAX_PAIRS 512
#define ROPE_I8_PER_LANE 8 // int8 rows: head_dim <= 32 * this

// Rotated value of dimension d of head vector x (n_rot dims rotate, the rest pass through).
__device__ static inline float rope_dim(const float *x, int d, const hl_cuda_rope_args &a, const float *cs,
                                        const float *sn) {
    if (d >= a.n_rot) return x[d];
    const int half = a.n_rot / 2;
    if (a.neox) {
        const int i = d % half;
        return d < half ? x[d] * cs[i] - x[d + half] * sn[i] : x[d - half] * sn[i] + x[d] * cs[i];
    }
    const int i = d / 2;
    return d % 2 == 0 ? x[d] * cs[i] - x[d + 1] * sn[i] : x[d - 1] * sn[i] + x[d] * cs[i];
}

__device__ static inline void kv_put(void *base, int kv_type, size_t at, float v) {
    if (kv_type == HL_CUDA_KV_F16) ((half *)base)[at] = __float2half_rn(v);
    else ((float *)base)[at] = v;
}

// Quantizes the token's K (rotated) and V rows into the int8 pool: warp w takes rows w, w + 4, ...
// of the 2 * n_kv_heads rows (row 2h: K of head h, 2h + 1: V). Loops are warp-uniform, so the
// full-mask shuffles in warp_max see every lane.
__device__ static void kv_put_i8(const hl_cuda_rope_args &a, const float *k, const float *v, size_t blk, size_t t,
                                 const float *cs, const float *sn) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, hd = a.head_dim;
    for (int row = warp; row < 2 * a.n_kv_heads; row += blockDim.x / 32) {
        const int h = row / 2, is_v = row % 2;
        float x[ROPE_I8_PER_LANE], amax = 0.0f;
#pragma unroll
        for (int i = 0; i < ROPE_I8_PER_LANE; i++) {
            const int d = lane + 32 * i;
            x[i] = 0.0f;
            if (d < hd) x[i] = is_v ? v[h * hd + d] : rope_dim(k + h * hd, d, a, cs, sn);
            amax = fmaxf(amax, fabsf(x[i]));
        }
        amax = warp_max(amax);
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        const size_t r = (blk * (size_t)a.n_kv_heads + (size_t)h) * 16 + t; // row index in the pool
        int8_t *dst = (int8_t *)(is_v ? a.vc : a.kc) + r * (size_t)hd;
#pragma unroll
        for (int i = 0; i < ROPE_I8_PER_LANE; i++) {
            const int d = lane + 32 * i;
            if (d < hd) dst[d] = (int8_t)max(-127, min(127, __float2int_rn(x[i] * inv)));
        }
        if (lane == 0) (is_v ? a.v_scale : a.k_scale)[r] = amax / 127.0f;
    }
}

__global__ void rope_kv_kernel(hl_cuda_rope_args a) {
    __shared__ float cs[ROPE_MAX_PAIRS], sn[ROPE_MAX_PAIRS];
    const int tok = blockIdx.x, half = a.n_rot / 2, hd = a.head_dim;
    const double pos = (double)a.pos[tok];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double angle = pos * (double)a.freq_scale * pow((double)a.theta, -2.0 * i / a.n_rot);
        if (a.freq_factors) angle /= (double)a.freq_factors[i];
        double s, c;
        sincos(angle, &s, &c);
        cs[i] = (float)c;
        sn[i] = (float)s;
    }
    __syncthreads();
    float *q = a.q + (int64_t)tok * a.ldq;
    for (int idx = threadIdx.x; idx < a.n_heads * half; idx += blockDim.x) {
        float *x = q + (idx / half) * hd;
        const int i = idx % half;
        const int i0 = a.neox ? i : 2 * i, i1 = a.neox ? i + half : 2 * i + 1;
        const float x0 = x[i0], x1 = x[i1];
        x[i0] = x0 * cs[i] - x1 * sn[i];
        x[i1] = x0 * sn[i] + x1 * cs[i];
    }
    const int slot = a.slot[tok];
    if (slot < 0) return; // padding row of a graph bucket: nothing to write
    const size_t blk = (size_t)(slot / 16), t = (size_t)(slot % 16);
    const float *k = a.k + (int64_t)tok * a.ldk, *v = a.v + (int64_t)tok * a.ldv;
    if (a.kv_type == HL_CUDA_KV_I8) {
        kv_put_i8(a, k, v, blk, t, cs, sn);
        return;
    }
    for (int idx = threadIdx.x; idx < a.n_kv_heads * hd; idx += blockDim.x) {
        const int h = idx / hd, d = idx % hd;
        const size_t at = ((blk * (size_t)a.n_kv_heads + (size_t)h) * 16 + t) * (size_t)hd + (size_t)d;
        kv_put(a.kc, a.kv_type, at, rope_dim(k + h * hd, d, a, cs, sn));
        kv_put(a.vc, a.kv_type, at, v[h * hd + d]);
    }
}

extern "C" void hl_cuda_rope_kv(hl_cuda_stream s, const hl_cuda_rope_args *a) {
    HL_ASSERT(a->n_rot / 2 <= ROPE_MAX_PAIRS && a->n_rot % 2 == 0);
    HL_ASSERT(a->kv_type != HL_CUDA_KV_I8 || (a->head_dim <= 32 * ROPE_I8_PER_LANE && a->k_scale && a->v_scale));
    if (a->n_tokens <= 0) return;
    rope_kv_kernel<<<(unsigned)a->n_tokens, 128, 0, s>>>(*a);
    HL_LAUNCH_CHECK();
}
