// matmul: W4A16 / W8A16 tensor-core matmul over the repacked layouts (Marlin-style).
// hot: most of every decode step is here.
//
// out (t, n) = x (t, k) · wᵀ. The weight is operand A of mma.sync m16n8k16 (16 output rows
// per warp), the activations operand B (8 tokens per n-tile, tokens padded to 8 * NT). A block
// of 4 warps owns 64 output rows and a range of 64-column k-chunks; per chunk it stages the
// 4 warps' codes (16-byte cp.async, one per lane and k-chunk for int4), their (scale, min)
// pairs and the chunk of x in a MM_STAGES-deep shared-memory ring. Codes become fp16 with
// lop3 / prmt and the 0x6400 exponent trick (exact for 0..255), then w = q * scale + min in
// one hfma2. Narrow shapes split K over gridDim.y; partial sums go to an fp32 workspace and
// a second kernel adds them in a fixed order (deterministic). Accumulation is fp32.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define MM_STAGES 4
#define MM_XS 72 // halves per staged activation row: 64 + 8 so B-fragment loads hit 32 banks

template <int NT, int BITS> struct mm_geom {
    static constexpr int w_bytes = 4 * 32 * 16 * (BITS / 4);  // 4 warps' codes for one chunk
    static constexpr int p_bytes = BITS == 4 ? 512 : 1024;     // (scale, min): 4 x 16 rows x groups
    static constexpr int x_bytes = NT * 8 * MM_XS * 2;
    static constexpr int stage = w_bytes + p_bytes + x_bytes;
    static constexpr int smem = MM_STAGES * stage;
};

typedef struct mm_params {
    const uint4 *codes;
    const uint4 *params; // half2 (scale, min) viewed as uint4
    const half *x16;     // (tp, kp)
    int64_t kp, KC, G, n, np, t, tp;
    int gs, chunks_per_split;
    float *out;
    int64_t ldo;
    float *ws;           // (splits, tp, np) when gridDim.y > 1
} mm_params;

template <int NT, int BITS>
__device__ static inline void mm_load_stage(uint8_t *st, const mm_params &p, int64_t mt0, int64_t tok0,
                                            int64_t kc) {
    typedef mm_geom<NT, BITS> G;
    const int tid = threadIdx.x;
    const int upm = 32 * (BITS / 4); // uint4 of codes per m-tile and chunk
    for (int i = tid; i < 4 * upm; i += 128)
        cp_async16(st + i * 16, p.codes + ((mt0 + i / upm) * p.KC + kc) * upm + i % upm);
    const int gpc = 64 / p.gs, upp = gpc * 4; // uint4 of params per m-tile and chunk
    for (int i = tid; i < 4 * upp; i += 128)
        cp_async16(st + G::w_bytes + i * 16, p.params + ((mt0 + i / upp) * p.G + kc * gpc) * 4 + i % upp);
    uint8_t *xs = st + G::w_bytes + G::p_bytes;
    for (int i = tid; i < NT * 64; i += 128)
        cp_async16(xs + (i / 8) * MM_XS * 2 + (i % 8) * 16, p.x16 + (tok0 + i / 8) * p.kp + kc * 64 + (i % 8) * 8);
}

// A fragments of k-tile j from one lane's int4 word: rows g (a0, a2) and g + 8 (a1, a3).
__device__ static inline void dequant_i4(uint32_t q, half2 s0, half2 m0, half2 s1, half2 m1, uint32_t *a) {
    const uint32_t EX = 0x64006400u;
    const half2 k1024 = __float2half2_rn(1024.0f), k16 = __float2half2_rn(0.0625f), k64 = __float2half2_rn(-64.0f);
    for (int i = 0; i < 2; i++) {
        const half2 lo = __hsub2(u32_as_h2(lop3_and_or(q, 0x000f000fu, EX)), k1024);
        const half2 hi = __hfma2(u32_as_h2(lop3_and_or(q, 0x00f000f0u, EX)), k16, k64);
        a[2 * i] = h2_as_u32(__hfma2(lo, s0, m0));
        a[2 * i + 1] = h2_as_u32(__hfma2(hi, s1, m1));
        q >>= 8;
    }
}

// Same from two int8 words (x: columns < 8 of the tile, y: columns >= 8), codes biased by 128.
__device__ static inline void dequant_i8(uint32_t x, uint32_t y, half2 s0, half2 m0, half2 s1, half2 m1,
                                         uint32_t *a) {
    const uint32_t EX = 0x64646464u;
    const half2 k1152 = __float2half2_rn(1152.0f);
    const uint32_t w[2] = {x, y};
    for (int i = 0; i < 2; i++) {
        const half2 lo = __hsub2(u32_as_h2(__byte_perm(w[i], EX, 0x4240)), k1152);
        const half2 hi = __hsub2(u32_as_h2(__byte_perm(w[i], EX, 0x4341)), k1152);
        a[2 * i] = h2_as_u32(__hfma2(lo, s0, m0));
        a[2 * i + 1] = h2_as_u32(__hfma2(hi, s1, m1));
    }
}

template <int NT, int BITS>
__device__ static inline void mm_compute_stage(const uint8_t *st, const mm_params &p, float (*acc)[4]) {
    typedef mm_geom<NT, BITS> G;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    uint32_t wq[BITS]; // 4 (int4) or 8 (int8) words: the chunk's four k-tiles
    const uint4 *wsm = (const uint4 *)st + warp * 32 * (BITS / 4);
    for (int h = 0; h < BITS / 4; h++) {
        const uint4 v = wsm[h * 32 + lane];
        wq[4 * h] = v.x, wq[4 * h + 1] = v.y, wq[4 * h + 2] = v.z, wq[4 * h + 3] = v.w;
    }
    const half2 *ps = (const half2 *)(st + G::w_bytes) + warp * (64 / p.gs) * 16;
    const half *xs = (const half *)(st + G::w_bytes + G::p_bytes);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int gl = j * 16 / p.gs;
        const half2 p0 = ps[gl * 16 + g], p1 = ps[gl * 16 + g + 8];
        const half2 s0 = __low2half2(p0), m0 = __high2half2(p0), s1 = __low2half2(p1), m1 = __high2half2(p1);
        uint32_t a[4];
        if (BITS == 4) dequant_i4(wq[j], s0, m0, s1, m1, a);
        else dequant_i8(wq[2 * j], wq[2 * j + 1], s0, m0, s1, m1, a);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const uint32_t *xr = (const uint32_t *)(xs + (nt * 8 + g) * MM_XS + j * 16 + 2 * t);
            const uint32_t b[2] = {xr[0], xr[4]};
            mma_16816(acc[nt], a, b);
        }
    }
}

template <int NT, int BITS> __global__ void __launch_bounds__(128) mm_kernel(mm_params p) {
    typedef mm_geom<NT, BITS> G;
    extern __shared__ uint4 smem_u4[];
    uint8_t *smem = (uint8_t *)smem_u4;
    const int64_t mt0 = (int64_t)blockIdx.x * 4, tok0 = (int64_t)blockIdx.z * NT * 8;
    const int64_t kc0 = (int64_t)blockIdx.y * p.chunks_per_split;
    const int64_t kc1 = kc0 + p.chunks_per_split < p.KC ? kc0 + p.chunks_per_split : p.KC;
    const int n_chunks = (int)(kc1 - kc0);
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;

    for (int s = 0; s < MM_STAGES - 1; s++) {
        if (s < n_chunks) mm_load_stage<NT, BITS>(smem + s * G::stage, p, mt0, tok0, kc0 + s);
        cp_async_commit();
    }
    for (int it = 0; it < n_chunks; it++) {
        cp_async_wait<MM_STAGES - 2>();
        __syncthreads(); // chunk `it` landed for every thread; stage (it - 1) is free again
        const int next = it + MM_STAGES - 1;
        if (next < n_chunks) mm_load_stage<NT, BITS>(smem + (next % MM_STAGES) * G::stage, p, mt0, tok0, kc0 + next);
        cp_async_commit();
        mm_compute_stage<NT, BITS>(smem + (it % MM_STAGES) * G::stage, p, acc);
    }
    cp_async_wait<0>();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int64_t row0 = (mt0 + warp) * 16 + g;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        for (int e = 0; e < 4; e++) {
            const int64_t row = row0 + (e >= 2 ? 8 : 0), tok = tok0 + nt * 8 + 2 * t + (e % 2);
            if (gridDim.y > 1) p.ws[((int64_t)blockIdx.y * p.tp + tok) * p.np + row] = acc[nt][e];
            else if (row < p.n && tok < p.t) p.out[tok * p.ldo + row] = acc[nt][e];
        }
    }
}

// out[tok][row] = sum over splits of ws, in split order.
__global__ void mm_reduce_kernel(const float *ws, int splits, int64_t tp, int64_t np, int64_t n, int64_t t,
                                 float *out, int64_t ldo) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= t * n) return;
    const int64_t tok = idx / n, row = idx % n;
    float sum = 0;
    for (int s = 0; s < splits; s++) sum += ws[((int64_t)s * tp + tok) * np + row];
    out[tok * ldo + row] = sum;
}

static int mm_nt(int64_t t) { return t <= 8 ? 1 : t <= 16 ? 2 : t <= 32 ? 4 : 8; }

extern "C" int64_t hl_cuda_matmul_tile_tokens(int64_t t) { return 8 * mm_nt(t); }

template <int NT, int BITS> static int mm_set_smem(void) {
    return cudaFuncSetAttribute(mm_kernel<NT, BITS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                mm_geom<NT, BITS>::smem) == cudaSuccess ? HL_OK : HL_ERR_DEVICE;
}

extern "C" int hl_cuda_matmul_init(void) {
    int rc = mm_set_smem<1, 4>() | mm_set_smem<2, 4>() | mm_set_smem<4, 4>() | mm_set_smem<8, 4>();
    rc |= mm_set_smem<1, 8>() | mm_set_smem<2, 8>() | mm_set_smem<4, 8>() | mm_set_smem<8, 8>();
    return rc ? HL_ERR_DEVICE : HL_OK;
}

extern "C" int hl_cuda_matmul_splits(const hl_cuda_qweight *w, int64_t t, int n_sms) {
    const int64_t KC = w->kp / 64, tiles = hl_div_up(t, hl_cuda_matmul_tile_tokens(t));
    const int64_t blocks = w->np / 64 * tiles;
    int64_t splits = hl_div_up(4 * (int64_t)n_sms, blocks);
    const int64_t max_splits = KC / 4 > 1 ? KC / 4 : 1; // at least 4 chunks per split
    if (splits > max_splits) splits = max_splits;
    if (splits < 1) splits = 1;
    return (int)hl_div_up(KC, hl_div_up(KC, splits)); // no empty split
}

template <int NT, int BITS> static void mm_launch(hl_cuda_stream s, const mm_params &p, int splits) {
    const dim3 grid((unsigned)(p.np / 64), (unsigned)splits, (unsigned)(p.tp / (NT * 8)));
    mm_kernel<NT, BITS><<<grid, 128, mm_geom<NT, BITS>::smem, s>>>(p);
    HL_LAUNCH_CHECK();
}

template <int BITS> static void mm_dispatch(hl_cuda_stream s, const mm_params &p, int splits) {
    switch (mm_nt(p.t)) {
    case 1: mm_launch<1, BITS>(s, p, splits); break;
    case 2: mm_launch<2, BITS>(s, p, splits); break;
    case 4: mm_launch<4, BITS>(s, p, splits); break;
    default: mm_launch<8, BITS>(s, p, splits); break;
    }
}

extern "C" void hl_cuda_matmul_q(hl_cuda_stream s, const hl_cuda_qweight *w, const void *x16, int64_t t,
                                 float *out, int64_t ld_out, float *ws, int splits) {
    HL_ASSERT(w->bits == 4 || w->bits == 8);
    HL_ASSERT(splits >= 1 && (splits == 1 || ws));
    mm_params p;
    p.codes = (const uint4 *)w->codes;
    p.params = (const uint4 *)w->params;
    p.x16 = (const half *)x16;
    p.kp = w->kp;
    p.KC = w->kp / 64;
    p.G = w->kp / w->gs;
    p.n = w->n;
    p.np = w->np;
    p.t = t;
    p.tp = hl_round_up(t, hl_cuda_matmul_tile_tokens(t));
    p.gs = w->gs;
    p.chunks_per_split = (int)hl_div_up(p.KC, splits);
    p.out = out;
    p.ldo = ld_out;
    p.ws = ws;
    if (w->bits == 4) mm_dispatch<4>(s, p, splits);
    else mm_dispatch<8>(s, p, splits);
    if (splits == 1) return;
    mm_reduce_kernel<<<(unsigned)hl_div_up(t * w->n, 256), 256, 0, s>>>(ws, splits, p.tp, w->np, w->n, t, out,
                                                                        ld_out);
    HL_LAUNCH_CHECK();
}
