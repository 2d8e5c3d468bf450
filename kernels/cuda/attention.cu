// attention: paged attention over fp16 or int8 K/V blocks (backend.h layout), fp32 softmax.
//
// K/V rows are read 16 bytes at a time: 8 fp16 values, or 16 int8 codes whose row (block,
// head, token) has one float scale (value = code * scale). int8 codes become floats without
// an I2F conversion: the byte, biased by 128, is the low mantissa byte of 2^23, and one FADD
// removes 2^23 + 128 (exact).
//
// Decode (one query token per sequence): one block per (KV head, sequence, chunk of
// HL_CUDA_ATTN_CHUNK tokens) serves every query head of the GQA group, so each K/V byte is
// read once. D/8 (fp16) or D/16 (int8) lanes share a token; scores go to shared memory, then
// softmax and P·V, the row scales applied to the score and to p. With more than one chunk,
// partials (o, max, sum) go to a workspace and attn_merge combines them by log-sum-exp. The
// grid's chunk count comes from max_blocks, not from the data, so a captured CUDA graph stays
// valid when lengths change; chunks past a sequence's end exit at once. The group size sets
// the accumulator count (GM = 4 or 8 query heads per block).
//
// Prefill (several new tokens of a sequence, causal over cached prefix + new tokens): the
// rows of a tile are (token, query head of the group) pairs, so the K/V of a tile of keys is
// staged once for the whole GQA group (as llama.cpp's fattn-mma packs the group's heads).
//  - head_dim 64 and 128: a FlashAttention-2 style tensor-core kernel (attn_fa_kernel), 64 rows
//    per block (16 per warp), 64-key K/V tiles staged in shared memory as fp16 (int8 dequantized
//    on the way in), S = Q·Kᵀ and O += P·V with mma.sync m16n8k16 (fp16 in, fp32 accumulate),
//    the online softmax in fp32 registers on the accumulator fragments.
//  - other head dims: the scalar kernel (attn_prefill_kernel), 16 rows per block, 32-key tiles,
//    fp32 FMA, each warp an online softmax for 4 rows.
// hl_cuda_attn_prefill_rows() is the dispatch rule; the host plans its tiles with it.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define ATT_MAX_G 8   // query heads per KV head handled by one block
#define PF_BK 32      // keys per staged tile of the scalar prefill kernel
#define ATT_UNROLL 4  // K/V loads in flight per lane in decode
#define FA_BM 64      // query rows per block of the tensor-core prefill kernel (4 warps x 16)
#define FA_BN 64      // keys per staged tile of the tensor-core prefill kernel
#define FA_PAD 8      // halfs of padding per staged row: ldmatrix rows 16 bytes apart in banks

static_assert(FA_BM == FA_BN, "the K tile holds the Q tile at the start of attn_fa_kernel");

// Row index of (block bid, head h, token off) in the pool: the element offset is row * D and
// the int8 scale is scale[row].
__device__ static inline size_t kv_row(int32_t bid, int n_kv, int h, int off) {
    return ((size_t)bid * (size_t)n_kv + (size_t)h) * 16 + (size_t)off;
}

// ---- K/V rows: 16-byte words to values ----

// Four int8 codes of a word as exact floats (see the header).
__device__ static inline void i8x4_to_f32(uint32_t w, float *f) {
    const uint32_t u = w ^ 0x80808080u; // code + 128 per byte
#pragma unroll
    for (int b = 0; b < 4; b++) f[b] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7540 + b)) - 8388736.0f;
}

// The values of one 16-byte load: 8 fp16, or 16 int8 codes (unscaled).
template <bool I8> __device__ static inline void unpack16(const uint4 &w, float *f) {
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
    if constexpr (I8) {
#pragma unroll
        for (int i = 0; i < 4; i++) i8x4_to_f32(u[i], f + 4 * i);
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const half2 h = u32_as_h2(u[i]);
            f[2 * i] = __low2float(h), f[2 * i + 1] = __high2float(h);
        }
    }
}

// ---- decode ----

template <int D, int GM, bool I8> __global__ void __launch_bounds__(128) attn_decode_kernel(hl_cuda_attn_args a) {
    constexpr int VPL = I8 ? 16 : 8;             // values per 16-byte load
    constexpr int LPT = D / VPL, TPW = 32 / LPT; // lanes per token, tokens per warp step
    constexpr int EB = I8 ? 1 : 2;               // bytes per element
    __shared__ float qs[GM][D];
    __shared__ float sc[GM][HL_CUDA_ATTN_CHUNK];
    __shared__ float red[4][GM][D];
    __shared__ float mx[GM], sm[GM];
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
    const uint8_t *kc = (const uint8_t *)a.kc;
    for (int j0 = start + warp * TPW; j0 < end; j0 += 4 * TPW * ATT_UNROLL) {
        uint4 kv[ATT_UNROLL];
        float ks[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            kv[u] = make_uint4(0, 0, 0, 0);
            ks[u] = 1.0f;
            if (j >= end) continue;
            const size_t row = kv_row(table[j / 16], a.n_kv_heads, kvh, j % 16);
            kv[u] = *(const uint4 *)(kc + row * D * EB + sub * 16);
            if (I8) ks[u] = a.k_scale[row];
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            float kf[VPL];
            unpack16<I8>(kv[u], kf);
#pragma unroll
            for (int gh = 0; gh < GM; gh++) {
                if (gh >= G) break;
                float dot = 0;
                for (int e = 0; e < VPL; e++) dot += qs[gh][sub * VPL + e] * kf[e];
                for (int o = LPT / 2; o > 0; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
                if (sub == 0 && j < end) sc[gh][j - start] = dot * ks[u];
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

    // P·V: lane owns dims sub*VPL .. sub*VPL+VPL-1 of its tokens
    float acc[GM][VPL];
#pragma unroll
    for (int gh = 0; gh < GM; gh++)
        for (int e = 0; e < VPL; e++) acc[gh][e] = 0.0f;
    const uint8_t *vc = (const uint8_t *)a.vc;
    for (int j0 = start + warp * TPW; j0 < end; j0 += 4 * TPW * ATT_UNROLL) {
        uint4 vv[ATT_UNROLL];
        float vs[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            vv[u] = make_uint4(0, 0, 0, 0);
            vs[u] = 1.0f;
            if (j >= end) continue;
            const size_t row = kv_row(table[j / 16], a.n_kv_heads, kvh, j % 16);
            vv[u] = *(const uint4 *)(vc + row * D * EB + sub * 16);
            if (I8) vs[u] = a.v_scale[row];
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int j = j0 + u * 4 * TPW + tt;
            if (j >= end) continue;
            float vf[VPL];
            unpack16<I8>(vv[u], vf);
#pragma unroll
            for (int gh = 0; gh < GM; gh++) {
                if (gh >= G) break;
                const float p = sc[gh][j - start] * vs[u];
                for (int e = 0; e < VPL; e++) acc[gh][e] += p * vf[e];
            }
        }
    }
#pragma unroll
    for (int gh = 0; gh < GM; gh++) {
        if (gh >= G) break;
        for (int e = 0; e < VPL; e++) {
            float v = acc[gh][e];
            for (int o = 16; o >= LPT; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (tt == 0) red[warp][gh][sub * VPL + e] = v;
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

// ---- prefill, scalar ----

// Two consecutive values (d even) of K or V row `row` as fp16.
template <int D, bool I8>
__device__ static inline half2 kv_pair(const void *base, const float *scale, size_t row, int d) {
    if constexpr (I8) {
        const uint16_t u = *(const uint16_t *)((const int8_t *)base + row * D + d);
        const float s = scale[row];
        return __floats2half2_rn((float)(int8_t)(u & 0xff) * s, (float)(int8_t)(u >> 8) * s);
    } else {
        return *(const half2 *)((const half *)base + row * D + d);
    }
}

template <int D, bool I8> __global__ void __launch_bounds__(128) attn_prefill_kernel(hl_cuda_attn_args a) {
    constexpr int DPL = D / 32, KS = D + 2; // dims per lane; padded K row (odd word stride)
    __shared__ half ks[PF_BK][KS];
    __shared__ half vs[PF_BK][D];
    __shared__ float qs[16][D];
    const int kvh = blockIdx.y;
    const int32_t *item = a.pf_item + 4 * blockIdx.x;
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
    for (int j0 = 0; j0 < n_keys; j0 += PF_BK) {
        __syncthreads(); // previous tile consumed (and qs written, first time)
        for (int i = threadIdx.x; i < PF_BK * D / 2; i += blockDim.x) {
            const int jj = i / (D / 2), d = (i % (D / 2)) * 2, j = j0 + jj;
            half2 kv2 = __float2half2_rn(0.0f), vv2 = kv2;
            if (j < n_keys) {
                const size_t row = kv_row(table[j / 16], a.n_kv_heads, kvh, j % 16);
                kv2 = kv_pair<D, I8>(a.kc, a.k_scale, row, d);
                vv2 = kv_pair<D, I8>(a.vc, a.v_scale, row, d);
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

// ---- prefill, tensor cores ----
//
// Fragments of mma.sync m16n8k16 (PTX ISA), lane = 4 g + t:
//   A (16x16, row-major)  a0 = A[g][2t..2t+1]  a1 = A[g+8][2t..]  a2 = A[g][2t+8..]  a3 = A[g+8][2t+8..]
//   B (16x8, B[k][n])     b0 = B[2t..2t+1][g]  b1 = B[2t+8..2t+9][g]
//   C (16x8, fp32)        c0, c1 = C[g][2t..2t+1]  c2, c3 = C[g+8][2t..2t+1]
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; every lane receives, per
// matrix, row g elements 2t, 2t+1 (with .trans: elements [2t][g] and [2t+1][g]).
//   Q (A):  matrix i = rows 8 (i % 2), cols 8 (i / 2) of the 16x16 tile -> a0..a3.
//   K (B of S = Q·Kᵀ, B[k][n] = K[key n][dim k]; K is stored [key][dim]): matrix i = keys
//           n0..n0+7, dims k0 + 8 i -> b0, b1 of k-step k0 and b0, b1 of k-step k0 + 16.
//   V (B of O = P·V, B[k][n] = V[key k][dim n], stored [key][dim]): .trans, matrix i = keys
//           k0 + 8 (i % 2), dims n0 + 8 (i / 2) -> b0, b1 of dim tile n0 and of n0 + 8.
//   P (A of O = P·V): the C fragments of S for keys k0..k0+7 and k0+8..k0+15, rounded to fp16
//           (c0,c1 -> a0 / a2, c2,c3 -> a1 / a3): no shuffle, no shared memory.

__device__ static inline void ldsm_x4(uint32_t *r, const void *p) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

__device__ static inline void ldsm_x4_trans(uint32_t *r, const void *p) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

__device__ static inline uint32_t pack_h2(float lo, float hi) { return h2_as_u32(__floats2half2_rn(lo, hi)); }

// 16 int8 codes times their row scale, as 16 fp16 values at dst (16-byte aligned).
__device__ static inline void dequant16_to_half(const uint4 &w, float scale, half *dst) {
    float f[16];
    unpack16<true>(w, f);
    uint4 lo, hi;
    lo.x = pack_h2(f[0] * scale, f[1] * scale), lo.y = pack_h2(f[2] * scale, f[3] * scale);
    lo.z = pack_h2(f[4] * scale, f[5] * scale), lo.w = pack_h2(f[6] * scale, f[7] * scale);
    hi.x = pack_h2(f[8] * scale, f[9] * scale), hi.y = pack_h2(f[10] * scale, f[11] * scale);
    hi.z = pack_h2(f[12] * scale, f[13] * scale), hi.w = pack_h2(f[14] * scale, f[15] * scale);
    *(uint4 *)dst = lo;
    *(uint4 *)(dst + 8) = hi;
}

// Stages keys j0 .. j0 + FA_BN - 1 of KV head kvh into ks / vs as fp16, zeros past n_keys
// (masked scores give p = 0, and 0 * V must not meet a NaN left in shared memory).
template <int D, bool I8>
__device__ static void fa_stage(half (*ks)[D + FA_PAD], half (*vs)[D + FA_PAD], const hl_cuda_attn_args &a,
                                const int32_t *table, int kvh, int j0, int n_keys) {
    constexpr int VPL = I8 ? 16 : 8, CPR = D / VPL, EB = I8 ? 1 : 2; // 16-byte chunks per row
    for (int i = threadIdx.x; i < FA_BN * CPR; i += blockDim.x) {
        const int jj = i / CPR, c = i % CPR, j = j0 + jj;
        half *kd = &ks[jj][c * VPL], *vd = &vs[jj][c * VPL];
        if (j >= n_keys) {
            for (int e = 0; e < VPL; e += 8) *(uint4 *)(kd + e) = make_uint4(0, 0, 0, 0);
            for (int e = 0; e < VPL; e += 8) *(uint4 *)(vd + e) = make_uint4(0, 0, 0, 0);
            continue;
        }
        const size_t row = kv_row(table[j / 16], a.n_kv_heads, kvh, j % 16), at = row * D * EB + (size_t)c * 16;
        const uint4 kw = *(const uint4 *)((const uint8_t *)a.kc + at);
        const uint4 vw = *(const uint4 *)((const uint8_t *)a.vc + at);
        if constexpr (I8) {
            dequant16_to_half(kw, a.k_scale[row], kd);
            dequant16_to_half(vw, a.v_scale[row], vd);
        } else {
            *(uint4 *)kd = kw;
            *(uint4 *)vd = vw;
        }
    }
}

// Online softmax of one S tile (log2 units) for the lane's two rows (g, g + 8): masks keys past
// each row's position, updates the running max m and the lane's partial sums l, rescales o,
// and leaves p = 2^(s - m) in s. A row with every key masked so far keeps m = -inf and uses 0
// as its reference, so no inf - inf appears.
template <int D>
__device__ static inline void fa_softmax(float (*s)[4], float (*o)[4], float *m, float *l, const int *rpos, int key0) {
    const int t = threadIdx.x % 4;
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (key0 + nt * 8 + 2 * t + (e & 1) > rpos[e / 2]) s[nt][e] = -INFINITY;
            mx[e / 2] = fmaxf(mx[e / 2], s[nt][e]);
        }
    }
    float ref[2], corr[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        ref[i] = mx[i] == -INFINITY ? 0.0f : mx[i];
        corr[i] = exp2f(m[i] - ref[i]);
        m[i] = mx[i];
        l[i] *= corr[i];
    }
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[nt][e] = exp2f(s[nt][e] - ref[e / 2]);
            l[e / 2] += s[nt][e];
        }
    }
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] *= corr[e / 2];
    }
}

// One block per (KV head, tile of FA_BM rows); warp w owns rows 16 w .. 16 w + 15. Items are
// taken last first: within a sequence the last tiles see the most keys.
template <int D, bool I8> __global__ void __launch_bounds__(128) attn_fa_kernel(hl_cuda_attn_args a) {
    __shared__ __align__(16) half ks[FA_BN][D + FA_PAD]; // K tile; holds Q (FA_BM rows) at the start
    __shared__ __align__(16) half vs[FA_BN][D + FA_PAD];
    const int kvh = blockIdx.y;
    const int32_t *item = a.pf_item + 4 * (a.n_pf - 1 - (int)blockIdx.x);
    const int seq = item[0], first = item[1], n_tok = item[2], row0 = item[3];
    const int G = a.n_heads / a.n_kv_heads;
    const int n_rows = min(FA_BM, n_tok * G - row0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int32_t *table = a.block_table + (size_t)seq * a.max_blocks;

    // Q rows, scaled (log2 units: softmax uses exp2), as fp16; padding rows are zero
    const float qscale = a.scale * 1.4426950408889634f;
    for (int i = threadIdx.x; i < FA_BM * D; i += blockDim.x) {
        const int r = i / D, d = i % D;
        float x = 0.0f;
        if (r < n_rows) {
            const int tok = first + (row0 + r) / G, hg = (row0 + r) % G;
            x = a.q[(int64_t)tok * a.ldq + ((int64_t)kvh * G + hg) * D + d] * qscale;
        }
        ks[r][d] = __float2half_rn(x);
    }
    __syncthreads();
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        ldsm_x4(qf[kk], &ks[warp * 16 + lane % 8 + 8 * (lane / 8 % 2)][kk * 16 + 8 * (lane / 16)]);

    // positions of the lane's rows (-1: padding, every key masked); the warp's and block's last key
    int rpos[2], wmax = -1;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = warp * 16 + g + 8 * i;
        rpos[i] = r < n_rows ? a.pos[first + (row0 + r) / G] : -1;
        wmax = max(wmax, rpos[i]);
    }
    for (int o = 16; o > 0; o /= 2) wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
    const int n_keys = a.pos[first + (row0 + n_rows - 1) / G] + 1;

    float o[D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++)
        for (int e = 0; e < 4; e++) o[nt][e] = 0.0f;
    for (int j0 = 0; j0 < n_keys; j0 += FA_BN) {
        __syncthreads(); // the previous tile (or Q) has been read by every warp
        fa_stage<D, I8>(ks, vs, a, table, kvh, j0, n_keys);
        __syncthreads();
        if (j0 > wmax) continue; // warp-uniform: every row of this warp ends before the tile
        // hot: S = Q·Kᵀ for 64 keys
        float s[FA_BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk += 2) {
                uint32_t b[4];
                ldsm_x4(b, &ks[nt * 8 + lane % 8][kk * 16 + 8 * (lane / 8)]);
                mma_16816(s[nt], qf[kk], b);
                mma_16816(s[nt], qf[kk + 1], b + 2);
            }
        }
        fa_softmax<D>(s, o, m, l, rpos, j0);
        // O += P·V, 16 keys per k-step
#pragma unroll
        for (int kk = 0; kk < FA_BN / 16; kk++) {
            const uint32_t pa[4] = {pack_h2(s[2 * kk][0], s[2 * kk][1]), pack_h2(s[2 * kk][2], s[2 * kk][3]),
                                    pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int np = 0; np < D / 16; np++) {
                uint32_t b[4];
                ldsm_x4_trans(b, &vs[kk * 16 + lane % 8 + 8 * (lane / 8 % 2)][np * 16 + 8 * (lane / 16)]);
                mma_16816(o[2 * np], pa, b);
                mma_16816(o[2 * np + 1], pa, b + 2);
            }
        }
    }

    // the row sums are split over the 4 lanes of a quad
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = warp * 16 + g + 8 * i;
        if (r >= n_rows) continue;
        const int tok = first + (row0 + r) / G, hg = (row0 + r) % G;
        float *out = a.out + (int64_t)tok * a.ldo + ((int64_t)kvh * G + hg) * D;
        const float inv = 1.0f / l[i];
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++) {
            out[nt * 8 + 2 * t] = o[nt][2 * i] * inv;
            out[nt * 8 + 2 * t + 1] = o[nt][2 * i + 1] * inv;
        }
    }
}

// ---- launch ----

extern "C" int hl_cuda_attn_prefill_rows(int head_dim) { return head_dim == 64 || head_dim == 128 ? FA_BM : 16; }

template <int D, int GM, bool I8> static void attn_decode_launch(hl_cuda_stream s, const hl_cuda_attn_args *a) {
    const dim3 grid((unsigned)a->n_kv_heads, (unsigned)a->n_dec, (unsigned)a->n_splits);
    attn_decode_kernel<D, GM, I8><<<grid, 128, 0, s>>>(*a);
    HL_LAUNCH_CHECK();
}

template <int D, bool I8> static void attn_launch(hl_cuda_stream s, const hl_cuda_attn_args *a) {
    if (a->n_dec > 0) {
        if (a->n_heads / a->n_kv_heads <= 4) attn_decode_launch<D, 4, I8>(s, a);
        else attn_decode_launch<D, ATT_MAX_G, I8>(s, a);
        if (a->n_splits > 1) {
            attn_merge_kernel<<<dim3((unsigned)a->n_dec, (unsigned)a->n_heads), D, 0, s>>>(*a);
            HL_LAUNCH_CHECK();
        }
    }
    if (a->n_pf <= 0) return;
    // items on x: grid.y stops at 65,535, which a long prefill step (tokens x heads per KV
    // head / rows per item) can pass
    const dim3 grid((unsigned)a->n_pf, (unsigned)a->n_kv_heads);
    if constexpr (D == 64 || D == 128) attn_fa_kernel<D, I8><<<grid, 128, 0, s>>>(*a);
    else attn_prefill_kernel<D, I8><<<grid, 128, 0, s>>>(*a);
    HL_LAUNCH_CHECK();
}

template <int D> static void attn_launch_kv(hl_cuda_stream s, const hl_cuda_attn_args *a) {
    if (a->kv_i8) attn_launch<D, true>(s, a);
    else attn_launch<D, false>(s, a);
}

extern "C" bool hl_cuda_attn_fits(int head_dim, int group) {
    return (head_dim == 32 || head_dim == 64 || head_dim == 128) && group >= 1 && group <= ATT_MAX_G;
}

extern "C" void hl_cuda_attention(hl_cuda_stream s, const hl_cuda_attn_args *a) {
    HL_ASSERT(a->n_heads % a->n_kv_heads == 0 && a->n_heads / a->n_kv_heads <= ATT_MAX_G);
    HL_ASSERT(a->n_pf == 0 || a->pf_rows == hl_cuda_attn_prefill_rows(a->head_dim));
    HL_ASSERT(!a->kv_i8 || (a->k_scale && a->v_scale));
    switch (a->head_dim) {
    case 32: attn_launch_kv<32>(s, a); break;
    case 64: attn_launch_kv<64>(s, a); break;
    case 128: attn_launch_kv<128>(s, a); break;
    default: hl_panic(__FILE__, __LINE__, "cuda attention: head_dim %d is not supported", a->head_dim);
    }
}
