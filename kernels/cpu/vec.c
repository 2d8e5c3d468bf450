// vec: scalar primitives and the per-ISA table (see vec.h).
#include "kernels/cpu/vec.h"

#include "kernels/cpu/cpu_features.h"

static float dot_f16(const uint16_t *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += hl_f16_to_f32(a[i]) * b[i];
    return s;
}

static float dot_f32(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * hl_f16_to_f32(x[i]);
}

static void axpy_f32(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale(float *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

static float sum_sq(const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

static void to_f16(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = hl_f32_to_f16(src[i]);
}

static const hl_vec_ops scalar_ops = {dot_f16, dot_f32, axpy_f16, axpy_f32, scale, sum_sq, to_f16};

const hl_vec_ops *hl_vec_get(int isa) {
#if defined(__x86_64__)
    if (isa >= HL_CPU_ISA_AVX2) return hl_vec_avx2_ops();
#endif
    return &scalar_ops;
}
