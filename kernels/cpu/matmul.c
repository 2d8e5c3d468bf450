// matmul: dispatch, activation quantization and the scalar kernels (see matmul.h).
#include "kernels/cpu/matmul.h"

#include <math.h>

#include "engine/quant.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/repack.h"

bool hl_matmul_supports(int type) {
    switch (type) {
    case HL_DTYPE_F32: case HL_DTYPE_F16: case HL_DTYPE_BF16:
    case HL_DTYPE_Q4_0: case HL_DTYPE_Q4_1: case HL_DTYPE_Q5_0: case HL_DTYPE_Q8_0:
    case HL_DTYPE_Q4_K: case HL_DTYPE_Q5_K: case HL_DTYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

int hl_matmul_act_kind(int type) {
    switch (type) {
    case HL_DTYPE_Q4_0: case HL_DTYPE_Q4_1: case HL_DTYPE_Q5_0: case HL_DTYPE_Q8_0:
        return HL_MATMUL_ACT_Q8;
    case HL_DTYPE_Q4_K: case HL_DTYPE_Q5_K: case HL_DTYPE_Q6_K:
        return HL_MATMUL_ACT_Q8K;
    default:
        return HL_MATMUL_ACT_F32;
    }
}

size_t hl_matmul_act_row_bytes(int type, int64_t k) {
    switch (hl_matmul_act_kind(type)) {
    case HL_MATMUL_ACT_Q8: return (size_t)(k / HL_QK) * sizeof(hl_q8_block);
    case HL_MATMUL_ACT_Q8K: return (size_t)(k / HL_QK_K) * sizeof(hl_q8k_block);
    default: return 0;
    }
}

// ---- activation quantization (the SIMD versions in matmul_x86.h give the same bytes) ----

// Round to nearest, ties to even, for |f| < 2^22 (ggml's nearest_int).
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static float abs_max(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        amax = amax > a ? amax : a;
    }
    return amax;
}

// Symmetric 8-bit: d = amax / 127, q = round(x / d) in [-127, 127]. Returns sum(q).
static int quantize_values(const float *x, int n, int8_t *qs, float *d) {
    const float amax = abs_max(x, n);
    *d = amax / 127.0f;
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < n; j++) {
        int q = nearest_int(x[j] * id);
        q = q > 127 ? 127 : (q < -127 ? -127 : q);
        qs[j] = (int8_t)q;
        sum += q;
    }
    return sum;
}

static void quantize_row_q8(const float *x, hl_q8_block *y, int64_t k) {
    for (int64_t b = 0; b < k / HL_QK; b++) {
        y[b].sum = quantize_values(x + b * HL_QK, HL_QK, y[b].qs, &y[b].d);
    }
}

static void quantize_row_q8k(const float *x, hl_q8k_block *y, int64_t k) {
    for (int64_t b = 0; b < k / HL_QK_K; b++) {
        quantize_values(x + b * HL_QK_K, HL_QK_K, y[b].qs, &y[b].d);
        for (int i = 0; i < 16; i++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[b].qs[16 * i + j];
            y[b].bsums[i] = (int16_t)sum;
        }
    }
}

void hl_matmul_quantize(int isa, const hl_matmul_args *a, int t0, int t1) {
    switch (isa) {
#if defined(__x86_64__)
    case HL_CPU_ISA_VNNI: hl_matmul_vnni_quantize(a, t0, t1); return;
    case HL_CPU_ISA_AVX512: hl_matmul_avx512_quantize(a, t0, t1); return;
    case HL_CPU_ISA_AVX2: hl_matmul_avx2_quantize(a, t0, t1); return;
#endif
    default: hl_matmul_scalar_quantize(a, t0, t1); return;
    }
}

void hl_matmul_scalar_quantize(const hl_matmul_args *a, int t0, int t1) {
    const int kind = hl_matmul_act_kind(a->type);
    for (int t = t0; t < t1; t++) {
        const float *x = a->x + (size_t)t * a->x_row_floats;
        void *dst = (uint8_t *)a->act + (size_t)t * a->act_row_bytes;
        if (kind == HL_MATMUL_ACT_Q8) quantize_row_q8(x, dst, a->k);
        if (kind == HL_MATMUL_ACT_Q8K) quantize_row_q8k(x, dst, a->k);
    }
}

// X16 weights exist only where the backend runs the VNNI kernels (x86).
#if defined(__x86_64__)
static void x16_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) { hl_matmul_x16_vnni_rows(a, r0, r1); }
#else
static void x16_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) {
    (void)a, (void)r0, (void)r1;
    HL_ASSERT(!"matmul: X16 weights on a CPU without VNNI kernels");
}
#endif

void hl_matmul_rows(int isa, const hl_matmul_args *a, int64_t r0, int64_t r1) {
    if (r0 >= r1 || a->n <= 0) return;
    if (a->layout == HL_CPU_LAYOUT_X16) {
        HL_ASSERT(isa == HL_CPU_ISA_VNNI && r0 % HL_REPACK_ROWS == 0);
        x16_rows(a, r0, r1);
        return;
    }
    HL_ASSERT(a->layout == 0);
    switch (isa) {
#if defined(__x86_64__)
    case HL_CPU_ISA_VNNI: hl_matmul_vnni_rows(a, r0, r1); return;
    case HL_CPU_ISA_AVX512: hl_matmul_avx512_rows(a, r0, r1); return;
    case HL_CPU_ISA_AVX2: hl_matmul_avx2_rows(a, r0, r1); return;
#endif
    default: hl_matmul_scalar_rows(a, r0, r1); return;
    }
}

// ---- scalar kernels ----

static inline float rd_f16(const uint8_t *p) { return hl_f16_to_f32(hl_rd_u16(p)); }

// One 32-value weight block as integers: value j = dw * u[j] + c_const, where the constant
// part is folded into the dot as c * (sum of the activation block), c = `*c`.
static void unpack_legacy(int type, const uint8_t *b, int *u, float *dw, float *c) {
    *dw = rd_f16(b);
    uint32_t qh = 0;
    switch (type) {
    case HL_DTYPE_Q4_0:
        for (int j = 0; j < 16; j++) { u[j] = b[2 + j] & 0xF; u[j + 16] = b[2 + j] >> 4; }
        *c = -8.0f * *dw;
        return;
    case HL_DTYPE_Q4_1:
        for (int j = 0; j < 16; j++) { u[j] = b[4 + j] & 0xF; u[j + 16] = b[4 + j] >> 4; }
        *c = rd_f16(b + 2);
        return;
    case HL_DTYPE_Q5_0:
        qh = hl_rd_u32(b + 2);
        for (int j = 0; j < 16; j++) {
            u[j] = (b[6 + j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            u[j + 16] = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        }
        *c = -16.0f * *dw;
        return;
    default: // Q8_0
        for (int j = 0; j < 32; j++) u[j] = (int8_t)b[2 + j];
        *c = 0.0f;
        return;
    }
}

static float dot_legacy(int type, const uint8_t *w, const hl_q8_block *y, int64_t nb) {
    const size_t bb = hl_quant_info(type)->block_bytes;
    float sum = 0.0f;
    int u[32];
    for (int64_t b = 0; b < nb; b++) {
        float dw, c;
        unpack_legacy(type, w + b * bb, u, &dw, &c);
        int isum = 0;
        for (int j = 0; j < 32; j++) isum += u[j] * y[b].qs[j];
        sum += dw * y[b].d * (float)isum + c * (y[b].d * (float)y[b].sum);
    }
    return sum;
}

// A K super-block as integers, per 16 values i: value = D * sc[i] * u - M * mn[i].
typedef struct kblock {
    int u[256];
    int sc[16], mn[16];
    float D, M;
} kblock;

static void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void unpack_q45k(int type, const uint8_t *b, kblock *kb) {
    kb->D = rd_f16(b);
    kb->M = rd_f16(b + 2);
    for (int s = 0; s < 8; s++) {
        int d, m;
        scale_min_k4(s, b + 4, &d, &m);
        kb->sc[2 * s] = kb->sc[2 * s + 1] = d;
        kb->mn[2 * s] = kb->mn[2 * s + 1] = m;
    }
    const uint8_t *qh = b + 16, *qs = type == HL_DTYPE_Q5_K ? b + 48 : b + 16;
    for (int j = 0; j < 4; j++) {
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * j + l] & 0xF, hi = qs[32 * j + l] >> 4;
            if (type == HL_DTYPE_Q5_K) {
                lo |= ((qh[l] >> (2 * j)) & 1) << 4;
                hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
            }
            kb->u[64 * j + l] = lo;
            kb->u[64 * j + 32 + l] = hi;
        }
    }
}

static void unpack_q6k(const uint8_t *b, kblock *kb) {
    kb->D = kb->M = rd_f16(b + 208);
    for (int i = 0; i < 16; i++) {
        kb->sc[i] = (int8_t)b[192 + i];
        kb->mn[i] = 32 * kb->sc[i];
    }
    for (int n = 0; n < 2; n++) {
        const uint8_t *ql = b + 64 * n, *qh = b + 128 + 32 * n;
        int *u = kb->u + 128 * n;
        for (int l = 0; l < 32; l++) {
            u[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            u[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            u[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            u[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
}

static float dot_k(int type, const uint8_t *w, const hl_q8k_block *y, int64_t nb) {
    const size_t bb = hl_quant_info(type)->block_bytes;
    float sum = 0.0f;
    kblock kb;
    for (int64_t b = 0; b < nb; b++) {
        if (type == HL_DTYPE_Q6_K) unpack_q6k(w + b * bb, &kb);
        else unpack_q45k(type, w + b * bb, &kb);
        int isum = 0, msum = 0;
        for (int i = 0; i < 16; i++) {
            int s16 = 0;
            for (int j = 0; j < 16; j++) s16 += kb.u[16 * i + j] * y[b].qs[16 * i + j];
            isum += kb.sc[i] * s16;
            msum += kb.mn[i] * y[b].bsums[i];
        }
        sum += kb.D * y[b].d * (float)isum - kb.M * y[b].d * (float)msum;
    }
    return sum;
}

static float load_float(int type, const uint8_t *w, int64_t j) {
    if (type == HL_DTYPE_F32) return hl_rd_f32(w + 4 * j);
    if (type == HL_DTYPE_F16) return rd_f16(w + 2 * j);
    return hl_bf16_to_f32(hl_rd_u16(w + 2 * j));
}

static float dot_float(int type, const uint8_t *w, const float *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t j = 0; j < k; j++) sum += load_float(type, w, j) * x[j];
    return sum;
}

void hl_matmul_scalar_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) {
    const int kind = hl_matmul_act_kind(a->type);
    for (int t = 0; t < a->n; t++) {
        const void *act = (const uint8_t *)a->act + (size_t)t * a->act_row_bytes;
        const float *x = a->x + (size_t)t * a->x_row_floats;
        float *out = a->out + (size_t)t * a->out_row_floats;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
            if (kind == HL_MATMUL_ACT_Q8) out[r] = dot_legacy(a->type, w, act, a->k / HL_QK);
            else if (kind == HL_MATMUL_ACT_Q8K) out[r] = dot_k(a->type, w, act, a->k / HL_QK_K);
            else out[r] = dot_float(a->type, w, x, a->k);
        }
    }
}
