// quant: the type table and the scalar reference (de)quantizers (see quant.h).
//
// Every routine mirrors ggml's reference code (ggml-quants.c) operation for operation:
// the same float expression order, the same clamps, the same int conversions and the
// same nearest_int trick, so the bytes come out identical to ggml's. Float arithmetic
// here must not be "simplified": reordering a sum or hoisting a product changes the
// rounding and breaks tests/unit/test_quant.c.
//
// Blocks are read and written byte by byte at ggml's offsets (never through structs).
#include "engine/quant.h"

#include <float.h>
#include <math.h>
#include <strings.h>

// ggml-base is built without FMA: every a*b+c here must round twice, whatever -std or
// -march the build uses (gnu11 lets GCC contract into FMAs and changes the bytes).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define GROUP_MAX_EPS 1e-15f // ggml: below this a group counts as all zero

typedef void (*dequant_fn)(const uint8_t *blk, float *y); // one block -> block_size floats
typedef void (*quant_fn)(const float *x, uint8_t *blk);   // block_size floats -> one block

typedef struct type_entry {
    hl_dtype_info info;
    dequant_fn dequant; // NULL: no dequantizer
    quant_fn quant;     // NULL: no quantizer
} type_entry;

// ---- shared helpers ----

// ggml's fp16 -> fp32 computes NaNs through a multiply, which sets the quiet bit.
static float f16_to_f32(uint16_t h) {
    float f = hl_f16_to_f32(h);
    if ((h & 0x7c00) != 0x7c00 || (h & 0x3ff) == 0) return f;
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 0x00400000;
    memcpy(&f, &u, 4);
    return f;
}

// ggml's software fp32 -> fp16: round to nearest even; a NaN becomes 0x7e00 (sign kept).
static uint16_t f32_to_f16(float f) {
    if (isnan(f)) return (uint16_t)((signbit(f) ? 0x8000 : 0) | 0x7e00);
    return hl_f32_to_f16(f);
}

static inline float rd_f16(const uint8_t *p) { return f16_to_f32(hl_rd_u16(p)); }
static inline void wr_f16(uint8_t *p, float f) { hl_wr_u16(p, f32_to_f16(f)); }

static inline void wr_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    hl_wr_u32(p, u);
}

// Round to nearest (ties to even) for |fval| <= 4194303 by adding 1.5 * 2^23 (ggml).
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int clampi(int v, int lo, int hi) { return imax(lo, imin(hi, v)); }

// ---- plain element types ----

static void deq_f32(const uint8_t *b, float *y) { *y = hl_rd_f32(b); }
static void deq_f16(const uint8_t *b, float *y) { *y = rd_f16(b); }
static void deq_bf16(const uint8_t *b, float *y) { *y = hl_bf16_to_f32(hl_rd_u16(b)); }
static void deq_i8(const uint8_t *b, float *y) { *y = (float)(int8_t)b[0]; }
static void deq_i16(const uint8_t *b, float *y) { *y = (float)(int16_t)hl_rd_u16(b); }
static void deq_i32(const uint8_t *b, float *y) { *y = (float)(int32_t)hl_rd_u32(b); }
static void deq_i64(const uint8_t *b, float *y) { *y = (float)(int64_t)hl_rd_u64(b); }

static void deq_f64(const uint8_t *b, float *y) {
    uint64_t u = hl_rd_u64(b);
    double d;
    memcpy(&d, &u, 8);
    *y = (float)d;
}

static void q_f32(const float *x, uint8_t *b) { wr_f32(b, *x); }
static void q_f16(const float *x, uint8_t *b) { hl_wr_u16(b, f32_to_f16(*x)); }
static void q_bf16(const float *x, uint8_t *b) { hl_wr_u16(b, hl_f32_to_bf16(*x)); }

// ---- 32-element blocks: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 ----

// Q4_0: d f16 | qs[16] (element j in the low nibble of qs[j], j+16 in the high one)
static void deq_q4_0(const uint8_t *b, float *y) {
    const float d = rd_f16(b);
    for (int j = 0; j < 16; j++) {
        const int x0 = (b[2 + j] & 0x0F) - 8;
        const int x1 = (b[2 + j] >> 4) - 8;
        y[j] = x0 * d;
        y[j + 16] = x1 * d;
    }
}

// The signed value of largest magnitude in x[0..n) (the first one on ties).
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void q_q4_0(const float *x, uint8_t *b) {
    const float d = signed_absmax(x, 32) / -8;
    const float id = d ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    for (int j = 0; j < 16; j++) {
        const float x0 = x[j] * id;
        const float x1 = x[j + 16] * id;
        const int xi0 = imin(15, (int8_t)(x0 + 8.5f));
        const int xi1 = imin(15, (int8_t)(x1 + 8.5f));
        b[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
    }
}

// Q4_1: d f16 | m f16 | qs[16]
static void deq_q4_1(const uint8_t *b, float *y) {
    const float d = rd_f16(b), m = rd_f16(b + 2);
    for (int j = 0; j < 16; j++) {
        const int x0 = b[4 + j] & 0x0F;
        const int x1 = b[4 + j] >> 4;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

static void min_max(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

static void q_q4_1(const float *x, uint8_t *b) {
    float min, max;
    min_max(x, 32, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    wr_f16(b + 2, min);
    for (int j = 0; j < 16; j++) {
        const float x0 = (x[j] - min) * id;
        const float x1 = (x[j + 16] - min) * id;
        const int xi0 = imin(15, (int8_t)(x0 + 0.5f));
        const int xi1 = imin(15, (int8_t)(x1 + 0.5f));
        b[4 + j] = (uint8_t)(xi0 | (xi1 << 4));
    }
}

// The 5-bit values of a Q5 block: low nibbles in qs[16], fifth bits in the 32-bit qh.
static void unpack_q5(const uint8_t *qh_bytes, const uint8_t *qs, int *v) {
    const uint32_t qh = hl_rd_u32(qh_bytes);
    for (int j = 0; j < 16; j++) {
        v[j] = (qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
        v[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
    }
}

static void pack_q5(const int *v, uint8_t *qh_bytes, uint8_t *qs) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((v[j] & 0x0F) | ((v[j + 16] & 0x0F) << 4));
        qh |= (((uint32_t)v[j] & 0x10u) >> 4) << j;
        qh |= (((uint32_t)v[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    hl_wr_u32(qh_bytes, qh);
}

// Q5_0: d f16 | qh[4] | qs[16]
static void deq_q5_0(const uint8_t *b, float *y) {
    const float d = rd_f16(b);
    int v[32];
    unpack_q5(b + 2, b + 6, v);
    for (int j = 0; j < 32; j++) y[j] = (v[j] - 16) * d;
}

static void q_q5_0(const float *x, uint8_t *b) {
    const float d = signed_absmax(x, 32) / -16;
    const float id = d ? 1.0f / d : 0.0f;
    int v[32];
    wr_f16(b, d);
    for (int j = 0; j < 32; j++) {
        const float x0 = x[j] * id;
        v[j] = (uint8_t)imin(31, (int8_t)(x0 + 16.5f));
    }
    pack_q5(v, b + 2, b + 6);
}

// Q5_1: d f16 | m f16 | qh[4] | qs[16]
static void deq_q5_1(const uint8_t *b, float *y) {
    const float d = rd_f16(b), m = rd_f16(b + 2);
    int v[32];
    unpack_q5(b + 4, b + 8, v);
    for (int j = 0; j < 32; j++) y[j] = v[j] * d + m;
}

static void q_q5_1(const float *x, uint8_t *b) {
    float min, max;
    min_max(x, 32, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    int v[32];
    wr_f16(b, d);
    wr_f16(b + 2, min);
    for (int j = 0; j < 32; j++) {
        const float x0 = (x[j] - min) * id;
        v[j] = (uint8_t)(x0 + 0.5f);
    }
    pack_q5(v, b + 4, b + 8);
}

// Q8_0: d f16 | qs[32] int8
static void deq_q8_0(const uint8_t *b, float *y) {
    const float d = rd_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (int8_t)b[2 + j] * d;
}

// amax as ggml's MAX macro computes it (a NaN input propagates).
static float abs_max(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    return amax;
}

// Writes round(x * id) into qs[0..32) and returns their sum.
static int q8_values(const float *x, float id, uint8_t *qs) {
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        const int8_t q = (int8_t)roundf(x[j] * id);
        qs[j] = (uint8_t)q;
        sum += q;
    }
    return sum;
}

static void q_q8_0(const float *x, uint8_t *b) {
    const float d = abs_max(x, 32) / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    q8_values(x, id, b + 2);
}

// Q8_1: d f16 | s f16 (= d * sum of qs) | qs[32] int8
static void deq_q8_1(const uint8_t *b, float *y) {
    const float d = rd_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (int8_t)b[4 + j] * d;
}

static void q_q8_1(const float *x, uint8_t *b) {
    const float d = abs_max(x, 32) / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    const int sum = q8_values(x, id, b + 4);
    wr_f16(b + 2, sum * d);
}

// ---- K-quant helpers (ggml's make_*_quants) ----

// Weighted error of levels L with scale and min: sum of w * |err| (use_mad) or w * err^2.
static float fit_error(int n, const float *x, const float *weights, const uint8_t *L, float scale,
                       float min, bool use_mad) {
    float error = 0;
    for (int i = 0; i < n; ++i) {
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        error += weights[i] * diff;
    }
    return error;
}

// Asymmetric quantization of x[0..n) to L in [0, nmax] with weights: tries nstep+1
// scales around nmax/(max-min) and keeps the best weighted fit. Returns the scale and
// stores -min in *the_min (ggml's make_qkx2_quants).
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    for (int i = 0; i < n; ++i) L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
    float best_error = fit_error(n, x, weights, L, scale, min, use_mad);
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float cur_error = fit_error(n, x, weights, Laux, this_scale, this_min, use_mad);
        if (cur_error < best_error) {
            memcpy(L, Laux, (size_t)n);
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

// Sums for make_qx_quants with weights x^2: returns sum w*x*l and stores sum w*l*l.
static float qx_sums(int n, int nmax, const float *x, float iscale, float *suml2) {
    float sumlx = 0;
    *suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        *suml2 += w * l * l;
    }
    return sumlx;
}

static void qx_levels(int n, int nmax, const float *x, float iscale, int8_t *L) {
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
}

// Symmetric quantization to L in [0, 2*nmax) (value l - nmax) with weights x^2, trying
// 19 scales around nmax/max (ggml's make_qx_quants with rmse_type 1 and no qw).
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float suml2;
    float sumlx = qx_sums(n, nmax, x, iscale, &suml2);
    qx_levels(n, nmax, x, iscale, L);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = qx_sums(n, nmax, x, iscale, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_levels(n, nmax, x, iscale, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// One pass of make_q3_quants' coordinate descent; returns how many levels changed.
static int q3_refine(int n, int nmax, const float *x, int8_t *L, float *sumlx, float *suml2) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
        float w = x[i] * x[i];
        float slx = *sumlx - w * x[i] * L[i];
        if (slx <= 0) continue;
        float sl2 = *suml2 - w * L[i] * L[i];
        int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l == L[i]) continue;
        slx += w * x[i] * new_l;
        sl2 += w * new_l * new_l;
        if (sl2 > 0 && slx * slx * *suml2 > *sumlx * *sumlx * sl2) {
            L[i] = (int8_t)new_l;
            *sumlx = slx;
            *suml2 = sl2;
            ++n_changed;
        }
    }
    return n_changed;
}

// Symmetric quantization for Q3_K (ggml's make_q3_quants with do_rmse).
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        if (!q3_refine(n, nmax, x, L, &sumlx, &suml2)) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Packs 2-bit values L[0..256) as Q2_K/Q3_K do: byte j/4+l of each 128-value half holds
// values l, l+32, l+64, l+96 in bit pairs 0, 2, 4, 6.
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < HL_QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
        }
    }
}

// ---- Q2_K: scales[16] | qs[64] | d f16 | dmin f16 ----

// Output group g (16 values) uses scale byte g and bit pair (g/2)%4 of qs bytes
// 32*(g/8) + 16*(g%2) + 0..15 (ggml's loop order, flattened).
static void deq_q2_K(const uint8_t *b, float *y) {
    const float d = rd_f16(b + 80), min = rd_f16(b + 82);
    for (int g = 0; g < 16; g++) {
        const uint8_t sc = b[g];
        const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        const uint8_t *q = b + 16 + 32 * (g / 8) + 16 * (g % 2);
        const int shift = 2 * ((g / 2) % 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
    }
}

// Quantizes the 4-bit scales (low nibble) or mins (high nibble) of Q2_K against max.
static float q2_pack_scales(const float *v, float max, int shift, uint8_t *sc) {
    const float q4scale = 15.f;
    if (!(max > 0)) return 0.f;
    float iscale = q4scale / max;
    for (int j = 0; j < 16; ++j) sc[j] |= (uint8_t)((unsigned)nearest_int(iscale * v[j]) << shift);
    return max / q4scale;
}

static void q_q2_K(const float *x, uint8_t *b) {
    uint8_t L[HL_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                     -0.5f, 0.1f, 15, true);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t *sc = b;
    memset(sc, 0, 16);
    wr_f16(b + 80, q2_pack_scales(scales, max_scale, 0, sc));
    wr_f16(b + 82, q2_pack_scales(mins, max_min, 4, sc));
    const float dd = rd_f16(b + 80), dmin = rd_f16(b + 82);
    for (int j = 0; j < 16; ++j) {
        const float d = dd * (sc[j] & 0xF);
        if (!d) continue;
        const float dm = dmin * (sc[j] >> 4);
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (uint8_t)clampi(nearest_int((x[16 * j + ii] + dm) / d), 0, 3);
    }
    pack_2bit(L, b + 16);
}

// ---- Q3_K: hmask[32] | qs[64] | scales[12] | d f16 ----

// The signed 6-bit scale j of a Q3_K block (stored biased by 32).
static int q3_scale(const uint8_t *scales, int j) {
    const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    const int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (int8_t)(lo | (hi << 4)) - 32;
}

// Output group g (16 values): scale g, bit pair (g/2)%4 of qs bytes 32*(g/8) + 16*(g%2)
// + 0..15, and bit g/2 of hmask bytes 16*(g%2) + 0..15 (set: no -4 offset).
static void deq_q3_K(const uint8_t *b, float *y) {
    const float d_all = rd_f16(b + 108);
    for (int g = 0; g < 16; g++) {
        const float dl = d_all * q3_scale(b + 96, g);
        const uint8_t *q = b + 32 + 32 * (g / 8) + 16 * (g % 2), *hm = b + 16 * (g % 2);
        const int shift = 2 * ((g / 2) % 4);
        const uint8_t m = (uint8_t)(1 << (g / 2));
        for (int l = 0; l < 16; ++l)
            *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
    }
}

static void q3_pack_scales(const float *scales, float max_scale, uint8_t *b) {
    uint8_t *sc = b + 96;
    memset(sc, 0, 12);
    if (!max_scale) {
        wr_f16(b + 108, 0.f);
        return;
    }
    float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
        int8_t l = (int8_t)nearest_int(iscale * scales[j]);
        l = (int8_t)(imax(-32, imin(31, l)) + 32);
        if (j < 8)
            sc[j] = l & 0xF;
        else
            sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
    wr_f16(b + 108, 1 / iscale);
}

static void q_q3_K(const float *x, uint8_t *b) {
    int8_t L[HL_QK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        float scale = fabsf(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    q3_pack_scales(scales, max_scale, b);
    const float dd = rd_f16(b + 108);
    for (int j = 0; j < 16; ++j) {
        float d = dd * q3_scale(b + 96, j);
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    // The high bit of value j goes to bit j/32 of hmask[j%32]; the low two bits to qs.
    uint8_t *hmask = b, low[HL_QK_K];
    memset(hmask, 0, 32);
    for (int j = 0; j < HL_QK_K; ++j) {
        int l = L[j];
        if (l > 3) {
            hmask[j % 32] |= (uint8_t)(1 << (j / 32));
            l -= 4;
        }
        low[j] = (uint8_t)l;
    }
    pack_2bit(low, b + 32);
}

// ---- Q4_K / Q5_K: d f16 | dmin f16 | scales[12] | (Q5_K: qh[32]) | qs[128] ----

// The 6-bit scale and min of sub-block j from the 12 packed bytes (ggml's get_scale_min_k4).
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static void deq_q4_K(const uint8_t *b, float *y) {
    const float d = rd_f16(b), min = rd_f16(b + 2);
    const uint8_t *q = b + 16;
    uint8_t sc, m;
    for (int is = 0; is < 8; is += 2) {
        scale_min_k4(is + 0, b + 4, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, b + 4, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
    }
}

static void deq_q5_K(const uint8_t *b, float *y) {
    const float d = rd_f16(b), min = rd_f16(b + 2);
    const uint8_t *qh = b + 16, *ql = b + 48;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2) {
        scale_min_k4(is + 0, b + 4, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, b + 4, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

// Shared by Q4_K and Q5_K (levels 0..nmax): fits each 32-value sub-block with
// make_qkx2_quants, packs the 6-bit scales and mins into hdr (d, dmin, scales[12]) and
// requantizes x against the stored scales into L.
static void quant_k_header(const float *x, int nmax, float rmin, int nstep, uint8_t *hdr,
                           uint8_t *L) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *sc = hdr + 4;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = (uint8_t)imin(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        uint8_t lm = (uint8_t)imin(63, (uint8_t)nearest_int(inv_min * mins[j]));
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
            continue;
        }
        sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
        sc[j] |= (uint8_t)((lm >> 4) << 6);
    }
    wr_f16(hdr, max_scale / 63.f);
    wr_f16(hdr + 2, max_min / 63.f);
    const float dd = rd_f16(hdr), dmin = rd_f16(hdr + 2);
    uint8_t s, m;
    for (int j = 0; j < 8; ++j) {
        scale_min_k4(j, sc, &s, &m);
        const float d = dd * s;
        if (!d) continue;
        const float dm = dmin * m;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = (uint8_t)clampi(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

static void q_q4_K(const float *x, uint8_t *b) {
    uint8_t L[HL_QK_K];
    quant_k_header(x, 15, -1.f, 20, b, L);
    uint8_t *q = b + 16;
    for (int j = 0; j < HL_QK_K; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
    }
}

static void q_q5_K(const float *x, uint8_t *b) {
    uint8_t L[HL_QK_K];
    quant_k_header(x, 31, -0.5f, 15, b, L);
    uint8_t *qh = b + 16, *ql = b + 48;
    memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < HL_QK_K; n += 64) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
        ql += 32;
    }
}

// ---- Q6_K: ql[128] | qh[64] | scales[16] int8 | d f16 ----

static void deq_q6_K(const uint8_t *b, float *y) {
    const float d = rd_f16(b + 208);
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < HL_QK_K; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

static void q6_pack(const int8_t *L, uint8_t *b) {
    uint8_t *ql = b, *qh = b + 128;
    for (int j = 0; j < HL_QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
            ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                              ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

static void q_q6_K(const float *x, uint8_t *b) {
    int8_t L[HL_QK_K];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(b, 0, 210);
        return;
    }
    float iscale = -128.f / max_scale;
    wr_f16(b + 208, 1 / iscale);
    int8_t *sc = (int8_t *)(b + 192);
    for (int ib = 0; ib < 16; ++ib) sc[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
    const float dd = rd_f16(b + 208);
    for (int j = 0; j < 16; ++j) {
        float d = dd * sc[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    q6_pack(L, b);
}

// ---- Q8_K: d f32 | qs[256] int8 | bsums[16] int16 (sums of 16 qs each) ----

static void deq_q8_K(const uint8_t *b, float *y) {
    const float d = hl_rd_f32(b);
    for (int j = 0; j < HL_QK_K; ++j) y[j] = d * (int8_t)b[4 + j];
}

static void q_q8_K(const float *x, uint8_t *b) {
    // ggml leaves bsums untouched for an all-zero block; halyard zeroes them.
    memset(b, 0, 292);
    const float max = signed_absmax(x, HL_QK_K);
    if (!max) return;
    const float iscale = -127.f / max;
    for (int j = 0; j < HL_QK_K; ++j)
        b[4 + j] = (uint8_t)(int8_t)imin(127, nearest_int(iscale * x[j]));
    for (int j = 0; j < 16; ++j) {
        int sum = 0;
        for (int ii = 0; ii < 16; ++ii) sum += (int8_t)b[4 + j * 16 + ii];
        hl_wr_u16(b + 260 + 2 * j, (uint16_t)(int16_t)sum);
    }
    wr_f32(b, 1 / iscale);
}

// ---- the table ----

static const type_entry types[HL_DTYPE_COUNT] = {
    [HL_DTYPE_F32] = {{"f32", 1, 4, true, true}, deq_f32, q_f32},
    [HL_DTYPE_F16] = {{"f16", 1, 2, true, true}, deq_f16, q_f16},
    [HL_DTYPE_Q4_0] = {{"q4_0", HL_QK, 18, true, true}, deq_q4_0, q_q4_0},
    [HL_DTYPE_Q4_1] = {{"q4_1", HL_QK, 20, true, true}, deq_q4_1, q_q4_1},
    [HL_DTYPE_Q5_0] = {{"q5_0", HL_QK, 22, true, true}, deq_q5_0, q_q5_0},
    [HL_DTYPE_Q5_1] = {{"q5_1", HL_QK, 24, true, true}, deq_q5_1, q_q5_1},
    [HL_DTYPE_Q8_0] = {{"q8_0", HL_QK, 34, true, true}, deq_q8_0, q_q8_0},
    [HL_DTYPE_Q8_1] = {{"q8_1", HL_QK, 36, true, true}, deq_q8_1, q_q8_1},
    [HL_DTYPE_Q2_K] = {{"q2_K", HL_QK_K, 84, true, true}, deq_q2_K, q_q2_K},
    [HL_DTYPE_Q3_K] = {{"q3_K", HL_QK_K, 110, true, true}, deq_q3_K, q_q3_K},
    [HL_DTYPE_Q4_K] = {{"q4_K", HL_QK_K, 144, true, true}, deq_q4_K, q_q4_K},
    [HL_DTYPE_Q5_K] = {{"q5_K", HL_QK_K, 176, true, true}, deq_q5_K, q_q5_K},
    [HL_DTYPE_Q6_K] = {{"q6_K", HL_QK_K, 210, true, true}, deq_q6_K, q_q6_K},
    [HL_DTYPE_Q8_K] = {{"q8_K", HL_QK_K, 292, true, true}, deq_q8_K, q_q8_K},
    [HL_DTYPE_I8] = {{"i8", 1, 1, true, false}, deq_i8, NULL},
    [HL_DTYPE_I16] = {{"i16", 1, 2, true, false}, deq_i16, NULL},
    [HL_DTYPE_I32] = {{"i32", 1, 4, true, false}, deq_i32, NULL},
    [HL_DTYPE_I64] = {{"i64", 1, 8, true, false}, deq_i64, NULL},
    [HL_DTYPE_F64] = {{"f64", 1, 8, true, false}, deq_f64, NULL},
    [HL_DTYPE_BF16] = {{"bf16", 1, 2, true, true}, deq_bf16, q_bf16},
};

static const type_entry *entry(int type) {
    if (type < 0 || type >= HL_DTYPE_COUNT || !types[type].info.name) return NULL;
    return &types[type];
}

const hl_dtype_info *hl_quant_info(int type) {
    const type_entry *t = entry(type);
    return t ? &t->info : NULL;
}

const char *hl_quant_name(int type) {
    const type_entry *t = entry(type);
    return t ? t->info.name : "unknown";
}

int hl_quant_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < HL_DTYPE_COUNT; i++) {
        if (types[i].info.name && strcasecmp(types[i].info.name, name) == 0) return i;
    }
    return -1;
}

// Looks up type and checks n against its block size; `what` names the operation.
static int checked(int type, int64_t n, const char *what, const type_entry **out, hl_error *err) {
    const type_entry *t = entry(type);
    if (!t) return hl_errorf(err, HL_ERR_INVAL, "%s: unknown tensor type id %d", what, type);
    if (n < 0 || n % t->info.block_size != 0)
        return hl_errorf(err, HL_ERR_INVAL,
                         "%s: %s needs a non-negative multiple of %d elements, got %lld", what,
                         t->info.name, t->info.block_size, (long long)n);
    *out = t;
    return HL_OK;
}

int hl_quant_row_bytes(int type, int64_t n, size_t *out, hl_error *err) {
    const type_entry *t = NULL;
    int rc = checked(type, n, "row size", &t, err);
    if (rc != HL_OK) return rc;
    size_t n_blocks = (size_t)(n / t->info.block_size);
    if (!hl_mul_ok(n_blocks, t->info.block_bytes, out))
        return hl_errorf(err, HL_ERR_FORMAT, "row size: %lld %s elements overflow size_t",
                         (long long)n, t->info.name);
    return HL_OK;
}

int hl_quant_dequantize(int type, const void *src, float *dst, int64_t n, hl_error *err) {
    const type_entry *t = NULL;
    int rc = checked(type, n, "dequantize", &t, err);
    if (rc != HL_OK) return rc;
    if (!t->dequant)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "dequantize: no dequantizer for %s",
                         t->info.name);
    if (n > 0 && (!src || !dst)) return hl_errorf(err, HL_ERR_INVAL, "dequantize: NULL buffer");
    const uint8_t *b = src;
    const int64_t n_blocks = n / t->info.block_size;
    for (int64_t i = 0; i < n_blocks; i++)
        t->dequant(b + (size_t)i * t->info.block_bytes, dst + i * t->info.block_size);
    return HL_OK;
}

int hl_quant_quantize(int type, const float *src, void *dst, int64_t n, hl_error *err) {
    const type_entry *t = NULL;
    int rc = checked(type, n, "quantize", &t, err);
    if (rc != HL_OK) return rc;
    if (!t->quant)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "quantize: no quantizer for %s", t->info.name);
    if (n > 0 && (!src || !dst)) return hl_errorf(err, HL_ERR_INVAL, "quantize: NULL buffer");
    uint8_t *b = dst;
    const int64_t n_blocks = n / t->info.block_size;
    for (int64_t i = 0; i < n_blocks; i++)
        t->quant(src + i * t->info.block_size, b + (size_t)i * t->info.block_bytes);
    return HL_OK;
}
