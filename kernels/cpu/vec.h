// vec: small vector primitives the CPU backend's attention and elementwise ops are built
// from, with a scalar version (vec.c) and an AVX2+F16C+FMA version (vec_avx2.c) picked per
// ISA level. Each function reduces in a fixed order for a given ISA and n, so results do not
// depend on threading or batch composition.
//
//   const hl_vec_ops *v = hl_vec_get(isa);
//   float s = v->dot_f16(k_row, q, head_dim);
//   v->axpy_f16(acc, p, v_row, head_dim);
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
} hl_vec_ops;

// The primitives for an ISA level (enum hl_cpu_isa); static storage, never NULL.
const hl_vec_ops *hl_vec_get(int isa);

// The AVX2 table (vec_avx2.c); only valid where the CPU has AVX2, FMA and F16C.
const hl_vec_ops *hl_vec_avx2_ops(void);
