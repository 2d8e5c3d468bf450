// vec: scalar primitives and the per-ISA table (see vec.h).
#include "kernels/cpu/vec.h"

#include <math.h>

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

static float dot_i8(const int8_t *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += (float)a[i] * b[i];
    return s;
}

static void axpy_i8(float *y, float a, const int8_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * (float)x[i];
}

static const hl_vec_ops scalar_ops = {.dot_f16 = dot_f16, .dot_f32 = dot_f32, .axpy_f16 = axpy_f16,
                                      .axpy_f32 = axpy_f32, .scale = scale, .sum_sq = sum_sq,
                                      .to_f16 = to_f16, .dot_i8 = dot_i8, .axpy_i8 = axpy_i8};

// rintf(x) as a code in [-127, 127]; NaN gives 0 (a float-to-int conversion out of range
// would be undefined).
static int8_t to_code(float x) {
    const float r = rintf(x);
    if (r >= -127.0f && r <= 127.0f) return (int8_t)r;
    return r > 0 ? 127 : r < 0 ? -127 : 0;
}

float hl_vec_quantize_i8(int8_t *dst, const float *src, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(src[i]));
    if (amax == 0.0f) {
        memset(dst, 0, (size_t)n);
        return 0.0f;
    }
    const float inv = 127.0f / amax;
    for (int i = 0; i < n; i++) dst[i] = to_code(src[i] * inv);
    return amax / 127.0f;
}

const hl_vec_ops *hl_vec_get(int isa) {
#if defined(__x86_64__)
    if (isa >= HL_CPU_ISA_AVX2) return hl_vec_avx2_ops();
#endif
    return &scalar_ops;
}
