// repack: GGUF blocks -> the int4 / int8 tensor-core layouts of cuda_common.cuh, on the
// device (the raw GGUF rows are uploaded first, then one kernel scatters the codes and one
// computes the group parameters). Also the test-only unpack and the row dequantizer used by
// embed and by the cuBLAS path. Scale arithmetic follows ggml's dequantize_row_* in fp32, then
// rounds once to fp16 (exact for Q4_0, Q4_1, Q8_0, Q5_0; one rounding for the K types).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "engine/quant.h"

extern "C" size_t hl_cuda_qweight_code_bytes(int bits, int64_t n, int64_t k) {
    return (size_t)hl_round_up(n, 64) * (size_t)hl_round_up(k, 64) * (size_t)bits / 8;
}

extern "C" size_t hl_cuda_qweight_param_bytes(int gs, int64_t n, int64_t k) {
    return (size_t)hl_round_up(n, 64) * (size_t)(hl_round_up(k, 64) / gs) * 4;
}

// ---- reading GGUF blocks ----

__device__ static inline float rd_f16(const uint8_t *p) {
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

__device__ static inline int nibble(uint8_t b, bool hi) { return hi ? b >> 4 : b & 15; }

// ggml's get_scale_min_k4: 6-bit scale and min j of a Q4_K/Q5_K super-block.
__device__ static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
        return;
    }
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}

// Code of column k of a GGUF row: int4 types give 0..15, int8 types the signed integer that
// multiplies the scale.
__device__ static int gguf_code(int type, const uint8_t *row, int64_t k) {
    const int e = (int)(k % 256);
    switch (type) {
    case HL_DTYPE_Q4_0: return nibble(row[(k / 32) * 18 + 2 + (k % 16)], (k % 32) >= 16);
    case HL_DTYPE_Q4_1: return nibble(row[(k / 32) * 20 + 4 + (k % 16)], (k % 32) >= 16);
    case HL_DTYPE_Q8_0: return (int8_t)row[(k / 32) * 34 + 2 + (k % 32)];
    case HL_DTYPE_Q5_0: {
        const uint8_t *b = row + (k / 32) * 22;
        const uint32_t qh = b[2] | (b[3] << 8) | (b[4] << 16) | ((uint32_t)b[5] << 24);
        const int j = (int)(k % 32);
        return (nibble(b[6 + j % 16], j >= 16) | (int)(((qh >> j) & 1) << 4)) - 16;
    }
    case HL_DTYPE_Q4_K: {
        const uint8_t *b = row + (k / 256) * 144;
        const int c = e / 64, l = e % 64;
        return nibble(b[16 + 32 * c + l % 32], l >= 32);
    }
    case HL_DTYPE_Q5_K: {
        const uint8_t *b = row + (k / 256) * 176;
        const int c = e / 64, l = e % 64;
        const int hbit = (b[16 + l % 32] >> (2 * c + (l >= 32))) & 1;
        return nibble(b[48 + 32 * c + l % 32], l >= 32) + 16 * hbit;
    }
    case HL_DTYPE_Q6_K: {
        const uint8_t *b = row + (k / 256) * 210;
        const int h = e / 128, q = (e % 128) / 32, l = e % 32;
        const int lo = nibble(b[64 * h + l + 32 * (q % 2)], q >= 2);
        const int hi = (b[128 + 32 * h + l] >> (2 * q)) & 3;
        return (lo | (hi << 4)) - 32;
    }
    default: return 0;
    }
}

// (scale, min) of group g (of gs columns) of a GGUF row, rounded once to fp16.
__device__ static half2 gguf_params(int type, const uint8_t *row, int64_t g) {
    float s = 0, m = 0;
    int sc, mn;
    switch (type) {
    case HL_DTYPE_Q4_0: s = rd_f16(row + g * 18); m = -8.0f * s; break;
    case HL_DTYPE_Q4_1: s = rd_f16(row + g * 20); m = rd_f16(row + g * 20 + 2); break;
    case HL_DTYPE_Q8_0: s = rd_f16(row + g * 34); break;
    case HL_DTYPE_Q5_0: s = rd_f16(row + g * 22); break;
    case HL_DTYPE_Q4_K:
    case HL_DTYPE_Q5_K: {
        const uint8_t *b = row + (g / 8) * (type == HL_DTYPE_Q4_K ? 144 : 176);
        scale_min_k4((int)(g % 8), b + 4, &sc, &mn);
        s = rd_f16(b) * (float)sc;
        m = -(rd_f16(b + 2) * (float)mn);
        break;
    }
    case HL_DTYPE_Q6_K: {
        const uint8_t *b = row + (g / 16) * 210;
        s = rd_f16(b + 208) * (float)(int8_t)b[192 + g % 16];
        break;
    }
    default: break;
    }
    return __halves2half2(__float2half_rn(s), __float2half_rn(m));
}

// ---- repack ----

// One thread per u32 of codes in the m-tiles of rows [row0, row0 + tiles*16).
__global__ void repack_codes(int type, const uint8_t *src, size_t row_bytes, int64_t row0,
                             int64_t n_tiles, hl_cuda_qweight w) {
    const int64_t KC = w.kp / 64;
    const int words = w.bits == 4 ? 128 : 256; // u32 per (m-tile, k-chunk)
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_tiles * KC * words) return;
    const int64_t mt = row0 / 16 + idx / (KC * words);
    const int64_t kc = (idx / words) % KC;
    const int in = (int)(idx % words);
    uint32_t word = 0;
    for (int e = 0; e < 32 / w.bits; e++) { // nibbles (int4) or bytes (int8) of the word
        int r, kk;
        if (w.bits == 4) hl_i4_word_elem(in, e, &r, &kk);
        else hl_i8_word_elem(in, e, &r, &kk);
        const int64_t row = mt * 16 + r, k = kc * 64 + kk;
        const int code = (row < w.n && k < w.k) ? gguf_code(type, src + (row - row0) * row_bytes, k) : 0;
        word |= (uint32_t)((w.bits == 4 ? code : code + 128) & ((1 << w.bits) - 1)) << (w.bits * e);
    }
    ((uint32_t *)w.codes)[(mt * KC + kc) * words + in] = word;
}

// One thread per (row, group) of the m-tiles of rows [row0, row0 + tiles*16).
__global__ void repack_params(int type, const uint8_t *src, size_t row_bytes, int64_t row0,
                              int64_t n_tiles, hl_cuda_qweight w) {
    const int64_t G = w.kp / w.gs;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_tiles * 16 * G) return;
    const int64_t mt = row0 / 16 + idx / (16 * G);
    const int64_t gi = (idx / 16) % G;
    const int r = (int)(idx % 16);
    const int64_t row = mt * 16 + r;
    half2 p = __halves2half2(__float2half(0.0f), __float2half(0.0f));
    if (row < w.n && gi * w.gs < w.k) p = gguf_params(type, src + (row - row0) * row_bytes, gi);
    ((half2 *)w.params)[(mt * G + gi) * 16 + r] = p;
}

extern "C" void hl_cuda_repack(hl_cuda_stream s, int type, const void *src, size_t row_bytes,
                               int64_t row0, int64_t n_rows, const hl_cuda_qweight *w) {
    HL_ASSERT(row0 % 64 == 0);
    const int64_t end = row0 + hl_round_up(n_rows, 64) < w->np ? row0 + hl_round_up(n_rows, 64) : w->np;
    const int64_t tiles = (end - row0) / 16;
    const int64_t n_words = tiles * (w->kp / 64) * (w->bits == 4 ? 128 : 256);
    const int64_t n_params = tiles * 16 * (w->kp / w->gs);
    repack_codes<<<(unsigned)hl_div_up(n_words, 256), 256, 0, s>>>(type, (const uint8_t *)src, row_bytes,
                                                                   row0, tiles, *w);
    HL_LAUNCH_CHECK();
    repack_params<<<(unsigned)hl_div_up(n_params, 256), 256, 0, s>>>(type, (const uint8_t *)src,
                                                                     row_bytes, row0, tiles, *w);
    HL_LAUNCH_CHECK();
}

// ---- reading the packed layout ----

__device__ static inline int packed_code(const hl_cuda_qweight &w, int64_t row, int64_t k) {
    const int64_t KC = w.kp / 64;
    if (w.bits == 4) {
        int shift;
        const size_t at = hl_i4_code_byte(row / 16, k / 64, KC, (int)(row % 16), (int)(k % 64), &shift);
        return (((const uint8_t *)w.codes)[at] >> shift) & 15;
    }
    const size_t at = hl_i8_code_byte(row / 16, k / 64, KC, (int)(row % 16), (int)(k % 64));
    return (int)((const uint8_t *)w.codes)[at] - 128;
}

__device__ static inline half2 packed_params(const hl_cuda_qweight &w, int64_t row, int64_t g) {
    return ((const half2 *)w.params)[((row / 16) * (w.kp / w.gs) + g) * 16 + row % 16];
}

__global__ void unpack_kernel(hl_cuda_qweight w, int8_t *codes, uint32_t *params) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= w.n * w.k) return;
    const int64_t row = idx / w.k, k = idx % w.k;
    codes[idx] = (int8_t)packed_code(w, row, k);
    if (k % w.gs == 0) {
        half2 p = packed_params(w, row, k / w.gs);
        params[row * (w.k / w.gs) + k / w.gs] = h2_as_u32(p);
    }
}

extern "C" void hl_cuda_unpack(hl_cuda_stream s, const hl_cuda_qweight *w, int8_t *codes, uint32_t *params) {
    unpack_kernel<<<(unsigned)hl_div_up(w->n * w->k, 256), 256, 0, s>>>(*w, codes, params);
    HL_LAUNCH_CHECK();
}

// hot for embed (one row per token) and for the cuBLAS path (tiles of rows).
__global__ void dequant_rows_kernel(hl_cuda_qweight w, const int32_t *ids, int64_t row0, int n, void *out,
                                    int64_t ld_out, int out_f16) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * w.k) return;
    const int64_t i = idx / w.k, k = idx % w.k;
    const int64_t row = ids ? ids[i] : row0 + i;
    float v;
    if (w.bits == 16) {
        v = __half2float(((const half *)w.codes)[row * w.k + k]);
    } else if (w.bits == -16) {
        v = __bfloat162float(((const __nv_bfloat16 *)w.codes)[row * w.k + k]);
    } else {
        const half2 p = packed_params(w, row, k / w.gs);
        v = __low2float(p) * (float)packed_code(w, row, k) + __high2float(p);
    }
    if (out_f16) ((half *)out)[i * ld_out + k] = __float2half_rn(v);
    else ((float *)out)[i * ld_out + k] = v;
}

extern "C" void hl_cuda_dequant_rows(hl_cuda_stream s, const hl_cuda_qweight *w, const int32_t *ids,
                                     int64_t row0, int n, void *out, int64_t ld_out, int out_f16) {
    if (n <= 0) return;
    dequant_rows_kernel<<<(unsigned)hl_div_up((int64_t)n * w->k, 256), 256, 0, s>>>(*w, ids, row0, n, out,
                                                                                  ld_out, out_f16);
    HL_LAUNCH_CHECK();
}
