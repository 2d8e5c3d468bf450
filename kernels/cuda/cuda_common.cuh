// cuda_common: what every .cu of the CUDA backend shares — the checked-call helper, the
// repacked weight layouts (how a code's (row, k) maps to bytes), and small device helpers
// (cp.async, lop3, mma.sync m16n8k16, warp reductions). Device code only; C callers use
// cuda_kernels.h and backend_cuda.h.
//
// Layouts (ids in cuda_kernels.h, code placement in layout.h): after the codes come the group
// parameters, half2 (scale, min) per (m-tile, group, row of 16), so w = scale * q + min with q
// the unsigned nibble (int4) or the signed byte (int8, stored + 128).
//
//   HL_CUDA_CHECK(cudaMemsetAsync(p, 0, n, stream));
#pragma once

// The Makefile links with the C compiler and no libstdc++, so the host side of every .cu must
// not need the C++ runtime: no thread-safe function statics (nvcc's launch stubs use one, which
// pulls in __cxa_guard_*) and no exception tables (__gxx_personality_v0). Nothing in the
// backend throws; these are the -fno-threadsafe-statics -fno-exceptions of a C++ build.
// (nvcc's front end does not know these pragmas and passes them on to gcc; 1675 is its warning.)
#pragma nv_diag_suppress 1675
#pragma GCC optimize("no-threadsafe-statics")
#pragma GCC optimize("no-exceptions")
#pragma nv_diag_default 1675

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/hl.h"
#include "kernels/cuda/layout.h"

// Records the first failed CUDA (or cuBLAS) call of the process with its place and text, and
// logs it. Ops have no error return, so the failure is reported by the next call that has one
// (sync, upload, download, graph launch: hl_cuda_failed) and reaches the engine's error path
// like any step error; the process keeps serving. Launch errors are usually sticky (the
// context is lost), so every later step fails with the same message. Thread-safe.
void hl_cuda_note_failure(const char *file, int line, const char *what, const char *why);

// HL_OK, or HL_ERR_DEVICE with the first recorded failure in err.
int hl_cuda_failed(hl_error *err);

#define HL_CUDA_CHECK(call)                                                                 \
    do {                                                                                    \
        cudaError_t rc_ = (call);                                                           \
        if (rc_ != cudaSuccess) hl_cuda_note_failure(__FILE__, __LINE__, #call, cudaGetErrorString(rc_)); \
    } while (0)

#define HL_LAUNCH_CHECK() HL_CUDA_CHECK(cudaGetLastError())

static inline int64_t hl_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static inline int64_t hl_div_up(int64_t x, int64_t m) { return (x + m - 1) / m; }

// ---- device helpers ----

__device__ static inline void cp_async16(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}

__device__ static inline void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }

template <int N> __device__ static inline void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// (a & b) | c in one instruction.
__device__ static inline uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

__device__ static inline uint32_t h2_as_u32(half2 h) { return *reinterpret_cast<uint32_t *>(&h); }
__device__ static inline half2 u32_as_h2(uint32_t u) { return *reinterpret_cast<half2 *>(&u); }

// d += a · b for one m16n8k16 tile: a = 4 regs of half2 (row-major 16x16), b = 2 regs
// (col-major 16x8), d = 4 floats (16x8).
__device__ static inline void mma_16816(float *d, const uint32_t *a, const uint32_t *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ static inline float warp_sum(float v) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static inline float warp_max(float v) {
    for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
