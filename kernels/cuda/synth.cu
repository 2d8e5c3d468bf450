// synth: engine/synth.c's weight values on the device, and ggml's reference Q4_0 / Q8_0
// quantizers, bit for bit: every product and sum is rounded on its own (__fmul_rn,
// __fadd_rn), as the CPU build (no FMA contraction at -std=c11) does.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

__device__ static inline uint64_t hash64(uint64_t x) { // hl_hash64 (common/hl.h)
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

__global__ void synth_fill_kernel(float *dst, int64_t n, uint64_t key, uint64_t i0, float std) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (std == 0.0f) {
        dst[i] = 1.0f;
        return;
    }
    const uint64_t r = hash64(key + i0 + (uint64_t)i);
    const float u = __fmul_rn((float)(r >> 40), 1.0f / 16777216.0f);
    const float v = __fadd_rn(__fmul_rn(2.0f, u), -1.0f);
    dst[i] = __fmul_rn(__fmul_rn(v, std), 1.7320508f);
}

extern "C" void hl_cuda_synth_fill(hl_cuda_stream s, float *dst, int64_t n, uint64_t seed, uint64_t name_hash,
                                   uint64_t i0, float std) {
    if (n <= 0) return;
    // hl_synth_value: hl_hash64(hl_hash64(seed ^ name_hash) + i); the inner hash is the same for
    // every element, so the host computes it once.
    uint64_t x = seed ^ name_hash;
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x = x ^ (x >> 31);
    synth_fill_kernel<<<(unsigned)hl_div_up(n, 256), 256, 0, s>>>(dst, n, x, i0, std);
    HL_LAUNCH_CHECK();
}

// One thread per 32-element block of src (rows of k floats), GGUF bytes into dst.
__global__ void quant_blocks_kernel(int bits, const float *src, uint8_t *dst, int64_t n_blocks) {
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks) return;
    const float *x = src + b * 32;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    }
    if (bits == 4) {
        uint8_t *o = dst + b * 18;
        const float d = __fdiv_rn(max, -8.0f);
        const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
        const unsigned short h = __half_as_ushort(__float2half_rn(d));
        o[0] = (uint8_t)h, o[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 16; j++) {
            const int x0 = min(15, (int)(int8_t)__fadd_rn(__fmul_rn(x[j], id), 8.5f));
            const int x1 = min(15, (int)(int8_t)__fadd_rn(__fmul_rn(x[j + 16], id), 8.5f));
            o[2 + j] = (uint8_t)(x0 | (x1 << 4));
        }
        return;
    }
    uint8_t *o = dst + b * 34;
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    const unsigned short h = __half_as_ushort(__float2half_rn(d));
    o[0] = (uint8_t)h, o[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < 32; j++) o[2 + j] = (uint8_t)(int8_t)roundf(__fmul_rn(x[j], id));
}

extern "C" void hl_cuda_quant_blocks(hl_cuda_stream s, int bits, const float *src, void *dst, int64_t n_blocks) {
    if (n_blocks <= 0) return;
    quant_blocks_kernel<<<(unsigned)hl_div_up(n_blocks, 128), 128, 0, s>>>(bits, src, (uint8_t *)dst, n_blocks);
    HL_LAUNCH_CHECK();
}

__global__ void f32_to_f16_kernel(const float *src, half *dst, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2half_rn(src[i]);
}

extern "C" void hl_cuda_f32_to_f16(hl_cuda_stream s, const float *src, void *dst, int64_t n) {
    if (n <= 0) return;
    f32_to_f16_kernel<<<(unsigned)hl_div_up(n, 256), 256, 0, s>>>(src, (half *)dst, n);
    HL_LAUNCH_CHECK();
}
