// quantize: whole-model quantization plans — which tensor type each weight gets for a
// target file type (q8_0, q4_0, q4_1, q4_k, q6_k, q4_k_m, f16, f32), following
// llama.cpp's choices so files are comparable — and the conversion of one tensor's
// float rows into that type. Used by `halyard quantize` and `halyard synth`.
//
// Rules (llama.cpp's llama_tensor_get_type, for the llama family):
//   - 1-D tensors (norms, biases) stay F32;
//   - q4_k_m: output.weight (or token_embd.weight when the embeddings are tied) is Q6_K;
//     attn_v and ffn_down are Q6_K in the layers where use_more_bits(il, n_layers); the rest Q4_K;
//   - other file types: output.weight is Q6_K for k-quant targets, Q8_0 for q4_0/q4_1;
//   - a K type whose row length is not a multiple of 256 falls back (Q4_K -> Q5_0, Q6_K -> Q8_0).
//
//   int ft = hl_quantize_ftype_from_name("q4_k_m");
//   int type = hl_quantize_tensor_type(ft, "blk.3.ffn_down.weight", 2, ne, 30, false);
#pragma once

#include "common/hl.h"

enum hl_ftype {
    HL_FTYPE_F32,
    HL_FTYPE_F16,
    HL_FTYPE_Q8_0,
    HL_FTYPE_Q4_0,
    HL_FTYPE_Q4_1,
    HL_FTYPE_Q4_K,
    HL_FTYPE_Q6_K,
    HL_FTYPE_Q4_K_M,
    HL_FTYPE_COUNT
};

// "q4_k_m" → HL_FTYPE_Q4_K_M (case-insensitive); -1 when unknown.
int hl_quantize_ftype_from_name(const char *name);
const char *hl_quantize_ftype_name(int ftype); // "q4_k_m"; "?" when out of range

// llama.cpp's general.file_type value for an ftype (written into GGUF metadata).
int hl_quantize_ftype_gguf_id(int ftype);

// The tensor type (enum hl_dtype) that tensor `name` of shape ne[0..n_dims) gets under ftype,
// in a model of n_layers layers; tied: the model has no output.weight.
int hl_quantize_tensor_type(int ftype, const char *name, int n_dims, const int64_t *ne,
                            int n_layers, bool tied);

// Produces rows [row0, row0 + n_rows) of a tensor as floats (row length ne0) into dst.
typedef int (*hl_quantize_rows_fn)(void *ctx, int64_t row0, int64_t n_rows, float *dst,
                                   hl_error *err);

// Fills dst (n_bytes, the full tensor in `type`) from rows produced by `rows`, converting
// in chunks so that no full-size float copy of a large tensor is ever held.
int hl_quantize_tensor(int type, int64_t ne0, int64_t n_rows, hl_quantize_rows_fn rows,
                       void *ctx, void *dst, size_t n_bytes, hl_error *err);
