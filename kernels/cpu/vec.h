// vec: small vector primitives the CPU backend's attention and elementwise ops are built
// from, with a scalar version (vec.c) and an AVX2+F16C+FMA version (vec_avx2.c) picked per
// ISA level. Each function reduces in a fixed order for a given ISA and n, so results do not
// depend on threading or batch composition.
//
//   const hl_vec_ops *v = hl_vec_get(isa);
//   float s = v->dot_f16(k_row, q, head_dim);
//   v->axpy_f16(acc, p, v_row, head_dim);
//   float scale = hl_vec_quantize_i8(codes, row, head_dim);   // int8 K/V row (backend.h)
#pragma once

#include "common/hl.h"

typedef struct hl_vec_ops {
    float (*dot_f16)(const uint16_t *a, const float *b, int n);    // sum a[i] * b[i]
    float (*dot_f32)(const float *a, const float *b, int n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);  // y += a * x
    void (*axpy_f32)(float *y, float a, const float *x, int n);
    void (*scale)(float *y, float a, int n);                        // y *= a
    float (*sum_sq)(const float *x, int n);                         // sum x[i]²
    void (*to_f16)(uint16_t *dst, const float *src, int n);         // hl_f32_to_f16, bit for bit
    float (*dot_i8)(const int8_t *a, const float *b, int n);        // sum a[i] * b[i]
    void (*axpy_i8)(float *y, float a, const int8_t *x, int n);     // y += a * x
} hl_vec_ops;

// The primitives for an ISA level (enum hl_cpu_isa); static storage, never NULL.
const hl_vec_ops *hl_vec_get(int isa);

// Quantizes src[0..n) to the int8 K/V row format of kernels/backend.h: amax = max |src|,
// dst[i] = rintf(src[i] * (127 / amax)) (0 for every i when amax is 0); returns the row's
// scale amax / 127 (0 for an all-zero row). The same bytes at every ISA level (the CUDA
// writer follows the same formula). Codes of non-finite inputs are clamped to [-127, 127]
// (NaN gives 0) instead of being undefined.
float hl_vec_quantize_i8(int8_t *dst, const float *src, int n);

// The AVX2 table (vec_avx2.c); only valid where the CPU has AVX2, FMA and F16C.
const hl_vec_ops *hl_vec_avx2_ops(void);
