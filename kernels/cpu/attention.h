// attention: the CPU backend's SIMD paged attention (AVX-512), one (token, KV head) at a time
// with every query head of that KV head's GQA group together: each K and V row is loaded and
// converted once per group instead of once per query head.
//
// Per KV block of 16 positions: the group's scores (dot products reduced in a fixed order),
// one online-softmax update per head (running max rescales the accumulator only when it
// grows), a vectorized exp, then P·V. int8 K/V rows are converted from their codes, the row
// scale applied once per row (to the dot product for K, to the probability for V). The arithmetic of an output row depends only on its own
// token's query and the sequence's cached K/V — never on the batch or the thread split.
//
//   hl_attn_args a = {out, q, kv, geom, batch, n_heads, scale};
//   if (hl_attention_avx512_fits(geom->head_dim, n_heads / geom->n_kv_heads))
//       hl_attention_avx512_group(&a, i, seq_of_i, kvh);
#pragma once

#include "kernels/backend.h"

// One attention op's arguments (kernels/backend.h's attention), borrowed for the call.
typedef struct hl_attn_args {
    hl_tensor *out;             // (n_tokens, n_heads * head_dim)
    const hl_tensor *q;         // (n_tokens, n_heads * head_dim)
    const hl_kv_layer *kv;
    const hl_kv_geom *geom;     // kv_type F16, F32 or I8
    const hl_batch *batch;
    int n_heads;
    float scale;
} hl_attn_args;

// True when the AVX-512 kernel handles this geometry: head_dim a multiple of 16 and at most
// 256, at most 16 query heads per KV head.
bool hl_attention_avx512_fits(int head_dim, int group);

// Writes out[i] for the query heads kvh * group .. (kvh + 1) * group - 1 of token i, which
// belongs to sequence s; causal over positions 0 .. pos[i]. Requires AVX-512F and a geometry
// that fits.
void hl_attention_avx512_group(const hl_attn_args *a, int i, int s, int kvh);
