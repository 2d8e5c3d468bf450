// quant: the tensor types halyard understands and the scalar reference
// (de)quantizers for them — the ground truth every fast kernel is checked against.
//
// Type ids are ggml's, so GGUF files map directly. Block layouts follow ggml exactly
// (byte for byte); the reference quantizers follow ggml's `quantize_row_*_ref`, and
// the tests check them against the `gguf` Python package on random data
// (tests/integration/test_quant_ref.py) and against bytes made by ggml itself
// (tests/fixtures/quant, checked in tests/unit/test_quant.c).
//
// Dequantizers: every type in the table (integers and f64 convert to the nearest float).
// Quantizers: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 q2_K q3_K q4_K q5_K q6_K q8_K.
// One difference from ggml: q8_K of an all-zero block gets zero bsums (ggml leaves them
// unwritten). Everything is pure and thread-safe; no allocation.
//
//   size_t rb; hl_quant_row_bytes(HL_DTYPE_Q4_K, 4096, &rb, &err);
//   hl_quant_dequantize(HL_DTYPE_Q4_K, blocks, out, 4096, &err);
#pragma once

#include "common/hl.h"

enum hl_dtype {
    HL_DTYPE_F32 = 0,
    HL_DTYPE_F16 = 1,
    HL_DTYPE_Q4_0 = 2,
    HL_DTYPE_Q4_1 = 3,
    HL_DTYPE_Q5_0 = 6,
    HL_DTYPE_Q5_1 = 7,
    HL_DTYPE_Q8_0 = 8,
    HL_DTYPE_Q8_1 = 9,
    HL_DTYPE_Q2_K = 10,
    HL_DTYPE_Q3_K = 11,
    HL_DTYPE_Q4_K = 12,
    HL_DTYPE_Q5_K = 13,
    HL_DTYPE_Q6_K = 14,
    HL_DTYPE_Q8_K = 15,
    HL_DTYPE_I8 = 24,
    HL_DTYPE_I16 = 25,
    HL_DTYPE_I32 = 26,
    HL_DTYPE_I64 = 27,
    HL_DTYPE_F64 = 28,
    HL_DTYPE_BF16 = 30,
    HL_DTYPE_COUNT = 40 // upper bound on ids, for tables
};

#define HL_QK 32    // elements per block of the legacy types (Q4_0 … Q8_0)
#define HL_QK_K 256 // elements per super-block of the K types

typedef struct hl_dtype_info {
    const char *name;     // "q4_K" (ggml's spelling)
    int block_size;       // elements per block
    size_t block_bytes;   // bytes per block
    bool can_dequantize;  // a reference dequantizer exists
    bool can_quantize;    // a reference quantizer exists
} hl_dtype_info;

// Info for a type id, or NULL when halyard does not know the id at all. The pointer is
// to a static table: never freed, valid for the whole program.
const hl_dtype_info *hl_quant_info(int type);

// ggml's name for a type id ("q4_K"), or "unknown"; never NULL, static storage.
const char *hl_quant_name(int type);

// Type id for a name ("q4_0", "Q4_K", "bf16"; case-insensitive), or -1.
int hl_quant_from_name(const char *name);

// Bytes for n elements of `type` into *out (n = 0 gives 0). HL_ERR_INVAL when the type
// is unknown or n is negative or not a multiple of its block size; HL_ERR_FORMAT when the
// size overflows size_t.
int hl_quant_row_bytes(int type, int64_t n, size_t *out, hl_error *err);

// dst[0..n) = the values of n elements stored at src (hl_quant_row_bytes(type, n) bytes,
// borrowed; any bytes are valid input). HL_ERR_INVAL for an unknown type, a bad n or a
// NULL buffer; HL_ERR_UNSUPPORTED for types with no dequantizer. Bit-identical to ggml's
// dequantize_row_* / to_float.
int hl_quant_dequantize(int type, const void *src, float *dst, int64_t n, hl_error *err);

// dst (hl_quant_row_bytes(type, n) bytes, caller-owned) = src[0..n) quantized with
// ggml's reference method (quantize_row_*_ref, no importance matrix), byte for byte.
// Errors as for hl_quant_dequantize; HL_ERR_UNSUPPORTED for types with no quantizer.
int hl_quant_quantize(int type, const float *src, void *dst, int64_t n, hl_error *err);
