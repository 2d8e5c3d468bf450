// attention: paged attention over fp16 K/V blocks (backend.h layout), fp32 softmax.
//
// Decode (one query token per sequence): one block per (KV head, sequence, chunk of
// HL_CUDA_ATTN_CHUNK tokens) serves every query head of the GQA group, so each K/V byte is
// read once. D/8 lanes share a token (16-byte loads); scores go to shared memory, then
// softmax and P·V. With more than one chunk, partials (o, max, sum) go to a workspace and
// attn_merge combines them by log-sum-exp. The grid's chunk count comes from max_blocks,
// not from the data, so a captured CUDA graph stays valid when lengths change; chunks past
// a sequence's end exit at once.
//
// Prefill (several new tokens of a sequence, causal over cached prefix + new tokens): one
// block per (KV head, tile of 16 rows), a row being (token, query head of the group); K/V
// tiles of 32 tokens are staged in shared memory and each warp runs an online softmax for
// 4 rows. Scalar fp32 FMA, not tensor cores: TODO(cuda): an mma.sync flash kernel for
// long prompts.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define ATT_MAX_G 8   // query heads per KV head handled by one block
#define PF_BK 32      // keys per staged prefill tile
#define ATT_UNROLL 4  // K/V loads in flight per lane in decode

__device__ static inline size_t kv_at(int32_t bid, int n_kv, int h, int off, int D) {
    return (((size_t)bid * (size_t)n_kv + (size_t)h) * 16 + (size_t)off) * (size_t)D;
}

// ---- decode ----

template <int D> __global__ void __launch_bounds__(128) attn_decode_kernel(hl_cuda_attn_args a) {
    constexpr int LPT = D / 8, TPW = 32 / LPT; // lanes per token, tokens per warp step
    __shared__ float qs[ATT_MAX_G][D];
    __shared__ float sc[ATT_MAX_G][HL_CUDA_ATTN_CHUNK];
    __shared__ float red[4][ATT_MAX_G][D];
    __shared__ float mx[ATT_MAX_G], sm[ATT_MAX_G];
    const int kvh = blockIdx.x, di = blockIdx.y, split = blockIdx.z;
    const int G = a.n_heads / a.n_kv_heads;
    const int seq = a.dec_seq[di], tok = a.dec_tok[di];
    const int ctx = a.pos[tok] + 1;
    const int start = split * HL_CUDA_ATTN_CHUNK;
    const int end = min(ctx, start + HL_CUDA_ATTN_CHUNK);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, sub = lane % LPT, tt = lane / LPT;
    float *part = a.ws + (((size_t)di * a.n_heads + (size_t)kvh * G) * a.n_splits + split) * (D + 2);
    if (start >= end) { // past this sequence's end: an empty partial
        if (a.n_splits == 1) return;
        for (int gh = threadIdx.x; gh < G; gh += blockDim.x) {
            part[(size_t)gh * a.n_splits * (D + 2) + D] = -INFINITY;
            part[(size_t)gh * a.n_splits * (D + 2) + D + 1] = 0.0f;
        }
        return;
    }
    const int32_t *table = a.block_table + (size_t)seq * a.max_blocks;
    const float *q = a.q + (int64_t)tok * a.ldq + (int64_t)kvh * G * D;
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) qs[i / D][i % D] = q[i] * a.scale;
    __syncthreads();

    // scores: hot, one 16-byte K load per lane and token; ATT_UNROLL loads in flight per lane
    const half *kc = (const half *)a.kc;
    for (int j0 = start + warp * TPW; j0 < end; j0 += 4 * TPW * ATT_UNROLL) {
        uint4 kv[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            kv[u] = make_uint4(0, 0, 0, 0);
            if (j < end) kv[u] = *(const uint4 *)(kc + kv_at(table[j / 16], a.n_kv_heads, kvh, j % 16, D) + sub * 8);
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            const half2 *k2 = (const half2 *)&kv[u];
            float kf[8];
            for (int e = 0; e < 4; e++) kf[2 * e] = __low2float(k2[e]), kf[2 * e + 1] = __high2float(k2[e]);
#pragma unroll
            for (int gh = 0; gh < ATT_MAX_G; gh++) {
                if (gh >= G) break;
                float dot = 0;
                for (int e = 0; e < 8; e++) dot += qs[gh][sub * 8 + e] * kf[e];
                for (int o = LPT / 2; o > 0; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
                if (sub == 0 && j < end) sc[gh][j - start] = dot;
            }
        }
    }
    __syncthreads();

    // softmax over the chunk: warp w handles heads w, w + 4
    const int n = end - start;
    for (int gh = warp; gh < G; gh += 4) {
        float m = -INFINITY;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[gh][j]);
        m = warp_max(m);
        float s = 0;
        for (int j = lane; j < n; j += 32) {
            const float p = __expf(sc[gh][j] - m);
            sc[gh][j] = p;
            s += p;
        }
        s = warp_sum(s);
        if (lane == 0) mx[gh] = m, sm[gh] = s;
    }
    __syncthreads();

    // P·V: lane owns dims sub*8 .. sub*8+7 of its tokens
    float acc[ATT_MAX_G][8];
#pragma unroll
    for (int gh = 0; gh < ATT_MAX_G; gh++)
        for (int e = 0; e < 8; e++) acc[gh][e] = 0.0f;
    const half *vc = (const half *)a.vc;
    for (int j0 = start + warp * TPW; j0 < end; j0 += 4 * TPW * ATT_UNROLL) {
        uint4 vv[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            vv[u] = make_uint4(0, 0, 0, 0);
            if (j < end) vv[u] = *(const uint4 *)(vc + kv_at(table[j / 16], a.n_kv_heads, kvh, j % 16, D) + sub * 8);
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            if (j >= end) continue;
            const half2 *v2 = (const half2 *)&vv[u];
#pragma unroll
            for (int gh = 0; gh < ATT_MAX_G; gh++) {
                if (gh >= G) break;
                const float p = sc[gh][j - start];
                for (int e = 0; e < 4; e++) {
                    acc[gh][2 * e] += p * __low2float(v2[e]);
                    acc[gh][2 * e + 1] += p * __high2float(v2[e]);
                }
            }
        }
    }
#pragma unroll
    for (int gh = 0; gh < ATT_MAX_G; gh++) {
        if (gh >= G) break;
        for (int e = 0; e < 8; e++) {
            float v = acc[gh][e];
            for (int o = 16; o >= LPT; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (tt == 0) red[warp][gh][sub * 8 + e] = v;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
        const int gh = i / D, d = i % D;
        const float o = red[0][gh][d] + red[1][gh][d] + red[2][gh][d] + red[3][gh][d];
        if (a.n_splits == 1) {
            a.out[(int64_t)tok * a.ldo + ((int64_t)kvh * G + gh) * D + d] = o / sm[gh];
            continue;
        }
        float *pp = part + (size_t)gh * a.n_splits * (D + 2);
        pp[d] = o;
        if (d == 0) pp[D] = mx[gh], pp[D + 1] = sm[gh];
    }
}

// One block per (decode sequence, query head), one thread per dimension.
__global__ void attn_merge_kernel(hl_cuda_attn_args a) {
    const int di = blockIdx.x, h = blockIdx.y, D = a.head_dim;
    const float *part = a.ws + ((size_t)di * a.n_heads + h) * a.n_splits * (D + 2);
    float m = -INFINITY;
    for (int s = 0; s < a.n_splits; s++) m = fmaxf(m, part[s * (D + 2) + D]);
    float l = 0;
    for (int s = 0; s < a.n_splits; s++) l += part[s * (D + 2) + D + 1] * __expf(part[s * (D + 2) + D] - m);
    const int tok = a.dec_tok[di];
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0;
        for (int s = 0; s < a.n_splits; s++) {
            const float ms = part[s * (D + 2) + D];
            if (ms > -INFINITY) o += part[s * (D + 2) + d] * __expf(ms - m);
        }
        a.out[(int64_t)tok * a.ldo + (int64_t)h * D + d] = o / l;
    }
}

// ---- prefill ----

template <int D> __global__ void __launch_bounds__(128) attn_prefill_kernel(hl_cuda_attn_args a) {
    constexpr int DPL = D / 32, KS = D + 2; // dims per lane; padded K row (odd word stride)
    __shared__ half ks[PF_BK][KS];
    __shared__ half vs[PF_BK][D];
    __shared__ float qs[16][D];
    const int kvh = blockIdx.x;
    const int32_t *item = a.pf_item + 4 * blockIdx.y;
    const int seq = item[0], first = item[1], n_tok = item[2], row0 = item[3];
    const int G = a.n_heads / a.n_kv_heads;
    const int n_rows = min(16, n_tok * G - row0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int32_t *table = a.block_table + (size_t)seq * a.max_blocks;
    for (int i = threadIdx.x; i < 16 * D; i += blockDim.x) {
        const int r = i / D, d = i % D;
        if (r >= n_rows) continue;
        const int tok = first + (row0 + r) / G, hg = (row0 + r) % G;
        qs[r][d] = a.q[(int64_t)tok * a.ldq + ((int64_t)kvh * G + hg) * D + d] * a.scale;
    }
    const int n_keys = a.pos[first + (row0 + n_rows - 1) / G] + 1;
    float m[4], l[4], o[4][DPL];
    int rpos[4];
#pragma unroll
    for (int rr = 0; rr < 4; rr++) {
        const int r = warp * 4 + rr;
        m[rr] = -INFINITY, l[rr] = 0;
        rpos[rr] = r < n_rows ? a.pos[first + (row0 + r) / G] : -1;
        for (int e = 0; e < DPL; e++) o[rr][e] = 0;
    }
    const half *kc = (const half *)a.kc, *vc = (const half *)a.vc;
    for (int j0 = 0; j0 < n_keys; j0 += PF_BK) {
        __syncthreads(); // previous tile consumed (and qs written, first time)
        for (int i = threadIdx.x; i < PF_BK * D / 2; i += blockDim.x) {
            const int jj = i / (D / 2), d = (i % (D / 2)) * 2, j = j0 + jj;
            half2 kv2 = __float2half2_rn(0.0f), vv2 = kv2;
            if (j < n_keys) {
                const size_t at = kv_at(table[j / 16], a.n_kv_heads, kvh, j % 16, D) + d;
                kv2 = *(const half2 *)(kc + at);
                vv2 = *(const half2 *)(vc + at);
            }
            ks[jj][d] = __low2half(kv2), ks[jj][d + 1] = __high2half(kv2);
            *(half2 *)&vs[jj][d] = vv2;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 4; rr++) {
            const int r = warp * 4 + rr;
            if (rpos[rr] < 0) continue; // warp-uniform: r depends on warp and rr only
            float s = 0;
            for (int d = 0; d < D; d++) s += qs[r][d] * __half2float(ks[lane][d]);
            if (j0 + lane > rpos[rr]) s = -INFINITY;
            const float m_new = fmaxf(m[rr], warp_max(s));
            const float corr = __expf(m[rr] - m_new), p = __expf(s - m_new);
            l[rr] = l[rr] * corr + warp_sum(p);
            m[rr] = m_new;
            for (int e = 0; e < DPL; e++) o[rr][e] *= corr;
            for (int jj = 0; jj < PF_BK; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
                for (int e = 0; e < DPL; e++) o[rr][e] += pj * __half2float(vs[jj][lane * DPL + e]);
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < 4; rr++) {
        const int r = warp * 4 + rr;
        if (rpos[rr] < 0) continue;
        const int tok = first + (row0 + r) / G, hg = (row0 + r) % G;
        float *out = a.out + (int64_t)tok * a.ldo + ((int64_t)kvh * G + hg) * D;
        for (int e = 0; e < DPL; e++) out[lane * DPL + e] = o[rr][e] / l[rr];
    }
}

template <int D> static void attn_launch(hl_cuda_stream s, const hl_cuda_attn_args *a) {
    if (a->n_dec > 0) {
        const dim3 grid((unsigned)a->n_kv_heads, (unsigned)a->n_dec, (unsigned)a->n_splits);
        attn_decode_kernel<D><<<grid, 128, 0, s>>>(*a);
        HL_LAUNCH_CHECK();
        if (a->n_splits > 1) {
            attn_merge_kernel<<<dim3((unsigned)a->n_dec, (unsigned)a->n_heads), D, 0, s>>>(*a);
            HL_LAUNCH_CHECK();
        }
    }
    if (a->n_pf > 0) {
        attn_prefill_kernel<D><<<dim3((unsigned)a->n_kv_heads, (unsigned)a->n_pf), 128, 0, s>>>(*a);
        HL_LAUNCH_CHECK();
    }
}

extern "C" void hl_cuda_attention(hl_cuda_stream s, const hl_cuda_attn_args *a) {
    HL_ASSERT(a->n_heads % a->n_kv_heads == 0 && a->n_heads / a->n_kv_heads <= ATT_MAX_G);
    switch (a->head_dim) {
    case 32: attn_launch<32>(s, a); break;
    case 64: attn_launch<64>(s, a); break;
    case 128: attn_launch<128>(s, a); break;
    default: hl_panic(__FILE__, __LINE__, "cuda attention: head_dim %d is not supported", a->head_dim);
    }
}
