// matmul: the CPU backend's hot path, out (n, rows) = x (n, k) · wᵀ for every weight type.
//
// Quantized weights are dotted with activations quantized on the fly, row by row, to 8-bit
// blocks (hl_q8_block for the 32-element types, hl_q8k_block for the K types); the block
// dots are exact integer sums, scaled and accumulated in float. F32/F16/BF16 weights use a
// float FMA path on the F32 activations. Kernels exist per ISA (matmul.c: scalar,
// matmul_avx2.c, matmul_avx512.c, matmul_vnni.c — the last three share matmul_x86.h), plus
// the VNNI kernels for weights repacked to X16 (matmul_x16_vnni.c).
//
// Invariant the batching engine relies on: for one ISA, out[t][r] depends only on weight
// row r and activation row t — never on n, on the other rows, or on how rows are split
// across threads (every element is reduced in the same fixed order whatever the tile).
//
//   hl_matmul_quantize(&a, 0, n);                         // fills a.act from a.x
//   hl_matmul_rows(isa, &a, 0, rows);                     // any split of [0, rows) works
#pragma once

#include "common/hl.h"

// A 32-value activation block: value j = d * qs[j]; sum = sum(qs) (exact).
typedef struct hl_q8_block {
    float d;
    int32_t sum;
    int8_t qs[32];
} hl_q8_block;

// A 256-value activation block: value j = d * qs[j]; bsums[i] = sum of qs[16i .. 16i+16).
typedef struct hl_q8k_block {
    float d;
    int16_t bsums[16];
    int8_t qs[256];
} hl_q8k_block;

enum hl_matmul_act {
    HL_MATMUL_ACT_F32 = 0, // weights dotted with the float activations directly
    HL_MATMUL_ACT_Q8 = 1,  // rows of hl_q8_block
    HL_MATMUL_ACT_Q8K = 2, // rows of hl_q8k_block
};

// Everything one matmul needs. Pointers are borrowed for the call.
typedef struct hl_matmul_args {
    int type;              // weight type (enum hl_dtype)
    int layout;            // 0 (GGUF blocks) or HL_CPU_LAYOUT_X16 (repack.h; VNNI kernels only)
    int64_t k;             // elements per weight row (a multiple of the type's block size)
    const uint8_t *w;      // (rows, k) weights, rows w_row_bytes apart (layout 0), or groups
                           //   of 16 rows of 16 * w_row_bytes bytes each (X16)
    size_t w_row_bytes;
    const float *x;        // (n, k) activations, rows x_row_floats apart
    size_t x_row_floats;
    void *act;             // (n) quantized activation rows, act_row_bytes apart (unused for
    size_t act_row_bytes;  //   float weight types)
    float *out;            // (n, rows) result, rows out_row_floats apart
    size_t out_row_floats;
    int n;                 // tokens
} hl_matmul_args;

// True when matmul handles weights of `type` (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q8_0 Q4_K Q5_K Q6_K).
bool hl_matmul_supports(int type);

// The activation format `type` is dotted with (enum hl_matmul_act).
int hl_matmul_act_kind(int type);

// Bytes of one quantized activation row of k elements for weights of `type` (0 for the
// float types). k must be a multiple of the type's block size.
size_t hl_matmul_act_row_bytes(int type, int64_t k);

// Quantizes activation rows [t0, t1) of a->x into a->act (no-op for float weight types) with
// the code of `isa`; every ISA gives the same bytes. Rows are independent, so threads may
// split the tokens.
void hl_matmul_quantize(int isa, const hl_matmul_args *a, int t0, int t1);

// Computes out[t][r] for all tokens t and weight rows r in [r0, r1) with the kernels of
// `isa` (enum hl_cpu_isa; must not exceed what the CPU supports). Requires a->act filled
// by hl_matmul_quantize for the quantized types. X16 weights need isa VNNI, and r0 and r1
// multiples of 16 (r1 may also be the last row): a group of 16 rows is computed at once.
void hl_matmul_rows(int isa, const hl_matmul_args *a, int64_t r0, int64_t r1);

// Per-ISA entry points (platform files, same contract as hl_matmul_rows).
void hl_matmul_scalar_rows(const hl_matmul_args *a, int64_t r0, int64_t r1);
void hl_matmul_avx2_rows(const hl_matmul_args *a, int64_t r0, int64_t r1);
void hl_matmul_avx512_rows(const hl_matmul_args *a, int64_t r0, int64_t r1);
void hl_matmul_vnni_rows(const hl_matmul_args *a, int64_t r0, int64_t r1);
void hl_matmul_scalar_quantize(const hl_matmul_args *a, int t0, int t1);
void hl_matmul_avx2_quantize(const hl_matmul_args *a, int t0, int t1);
void hl_matmul_avx512_quantize(const hl_matmul_args *a, int t0, int t1);
void hl_matmul_vnni_quantize(const hl_matmul_args *a, int t0, int t1);
void hl_matmul_x16_vnni_rows(const hl_matmul_args *a, int64_t r0, int64_t r1); // X16 weights
