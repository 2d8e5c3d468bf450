// ref: the plain scalar reference of every op in kernels/backend.h — the ground truth the
// SIMD CPU kernels and the CUDA kernels are tested against. Written for clarity, not speed:
// weights are dequantized with hl_quant_dequantize (engine/quant.h), sums are taken in
// double in index order, nothing is threaded.
//
// Every function takes the same arguments as the backend op of the same name, with host
// memory everywhere; weight and table tensors must be in layout 0 (GGUF blocks). Shapes are
// the caller's to check, as for the backend ops. The functions allocate scratch with
// hl_xmalloc (they are for tests and tools, not the decode loop).
//
//   hl_ref_matmul(&y_ref, &w, &x);           // y_ref (n, w.ne[1]) in double precision
//   hl_ref_attention(&o_ref, &q, &kv, &geom, &batch, n_heads, 1 / sqrtf(head_dim));
#pragma once

#include "kernels/backend.h"

// out (n, table.ne[0]) = rows ids[0..n) of table, dequantized.
void hl_ref_embed(hl_tensor *out, const hl_tensor *table, const int32_t *ids, int n);

// out (x.ne[1], w.ne[1]) = x · wᵀ with w dequantized to float and each dot summed in double.
void hl_ref_matmul(hl_tensor *out, const hl_tensor *w, const hl_tensor *x);

// out[i] = x[i] / sqrt(mean(x[i]²) + eps) * w.
void hl_ref_rmsnorm(hl_tensor *out, const hl_tensor *x, const hl_tensor *w, float eps);

// Rotates q in place; writes rope(k) and v of every token into the KV blocks at batch->slot
// (converted to geom->kv_type; int8: codes and row scales exactly as kernels/backend.h
// defines them, from the float rotated row). k's own buffer is left unrotated. Angles in double:
// pos * freq_scale / freq_factors[i] * theta^(-2i / n_rot) for pair i.
void hl_ref_rope_kv(hl_tensor *q, const hl_tensor *k, const hl_tensor *v, const hl_kv_layer *kv,
                    const hl_kv_geom *geom, const hl_batch *batch, const hl_rope *rope);

// Causal attention per sequence through its block table: token i of sequence s attends to
// positions 0..pos[i] of s (position p lives in block block_table[s][p / 16], offset p % 16).
// Softmax and sums in double; int8 K/V values are code * scale taken in double.
void hl_ref_attention(hl_tensor *out, const hl_tensor *q, const hl_kv_layer *kv,
                      const hl_kv_geom *geom, const hl_batch *batch, int n_heads, float scale);

// out = silu(gate) * up.
void hl_ref_swiglu(hl_tensor *out, const hl_tensor *gate, const hl_tensor *up);

// out = a + b (out may alias a).
void hl_ref_add(hl_tensor *out, const hl_tensor *a, const hl_tensor *b);

// out (n, x.ne[0]) = rows[0..n) of x.
void hl_ref_get_rows(hl_tensor *out, const hl_tensor *x, const int32_t *rows, int n);

// x += y row by row (y NULL: x unchanged), then out = rmsnorm(x) * w as hl_ref_rmsnorm.
void hl_ref_add_rmsnorm(hl_tensor *out, hl_tensor *x, const hl_tensor *y, const hl_tensor *w, float eps);

// The topk op (backend.h) by a full sort of each row: vals / ids rows get the k best values of
// x's row and their columns (descending; equal values, -0 and +0 included: lower column first),
// lse one log-sum-exp per row at inv_temp[r] (NULL: 1), max * it + log Σ exp((x - max) * it)
// summed in double (-inf for a row of -inf only; NaN when the row holds a NaN or +inf). NaN
// values are never candidates: where a row has fewer than k other values, the remaining slots
// get -inf and id -1 (the backends do the same).
void hl_ref_topk(hl_tensor *vals, hl_tensor *ids, hl_tensor *lse, const hl_tensor *x, const float *inv_temp,
                 int k);
