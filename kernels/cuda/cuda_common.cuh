// cuda_common: what every .cu of the CUDA backend shares — the checked-call helper, the
// repacked weight layouts (how a code's (row, k) maps to bytes), and small device helpers
// (cp.async, lop3, mma.sync m16n8k16, warp reductions). Device code only; C callers use
// cuda_kernels.h and backend_cuda.h.
//
// Layouts (see cuda_kernels.h for the ids). A weight of N rows and K columns is padded to
// Np = N rounded up to 64 and Kp = K rounded up to 64, and cut into m-tiles of 16 rows and
// k-chunks of 64 columns. One k-chunk of one m-tile is 32 lanes × 16 bytes (int4) or
// 2 × 32 lanes × 16 bytes (int8), ordered so that lane L's 16-byte load holds exactly the
// A-fragments of mma.sync m16n8k16 it needs for the chunk's four 16-wide k-tiles.
// After the codes come the group parameters: half2 (scale, min) per (m-tile, group, row of
// 16), so w = scale * q + min with q the unsigned nibble (int4) or the signed byte (int8).
//
//   size_t at = hl_i4_code_byte(mt, kc, KC, r, kk, &shift);   // where (16*mt + r, 64*kc + kk) is
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

// Hot-path launch errors are sticky and leave nothing to recover: panic with the text.
#define HL_CUDA_CHECK(call)                                                                 \
    do {                                                                                    \
        cudaError_t rc_ = (call);                                                           \
        if (rc_ != cudaSuccess)                                                             \
            hl_panic(__FILE__, __LINE__, "%s: %s", #call, cudaGetErrorString(rc_));         \
    } while (0)

#define HL_LAUNCH_CHECK() HL_CUDA_CHECK(cudaGetLastError())

static inline int64_t hl_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static inline int64_t hl_div_up(int64_t x, int64_t m) { return (x + m - 1) / m; }

// ---- layout geometry (host and device) ----

// Byte offset of the int4 code of element (row 16*mt + r, column 64*kc + kk) inside the code
// area, and the bit shift of its nibble in that byte. Inverse of the mma A-fragment order:
// lane (g = r % 8, t = (kk % 8) / 2), u32 word kk / 16 of the lane's uint4, nibble
// (r >= 8) + 2 * (kk % 16 >= 8) + 4 * (kk % 2).
__host__ __device__ static inline size_t hl_i4_code_byte(int64_t mt, int64_t kc, int64_t KC, int r,
                                                         int kk, int *shift) {
    const int c = kk % 16, j = kk / 16;
    const int lane = (r % 8) * 4 + (c % 8) / 2;
    const int nib = (r >= 8 ? 1 : 0) + (c >= 8 ? 2 : 0) + 4 * (c % 2);
    *shift = (nib % 2) * 4;
    return ((size_t)(mt * KC + kc) * 32 + (size_t)lane) * 16 + (size_t)j * 4 + (size_t)(nib / 2);
}

// Byte offset of the int8 code of (row 16*mt + r, column 64*kc + kk). Per 64-column chunk a
// lane owns two uint4: uint4 h covers k-tiles 2h and 2h+1, two u32 per k-tile (columns
// < 8 and >= 8 of the tile); byte (r >= 8) + 2 * (kk % 2) inside the u32.
__host__ __device__ static inline size_t hl_i8_code_byte(int64_t mt, int64_t kc, int64_t KC, int r,
                                                         int kk) {
    const int c = kk % 16, j = kk / 16;
    const int lane = (r % 8) * 4 + (c % 8) / 2;
    const int word = (j % 2) * 2 + (c >= 8 ? 1 : 0);
    const int byte = (r >= 8 ? 1 : 0) + 2 * (c % 2);
    return ((((size_t)(mt * KC + kc) * 2 + (size_t)(j / 2)) * 32 + (size_t)lane) * 16) +
           (size_t)word * 4 + (size_t)byte;
}

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
