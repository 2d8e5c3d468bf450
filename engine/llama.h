// llama: the forward pass of the llama family, written once against the backend's ops
// (kernels/backend.h) for a *batch*: any mix of prefill chunks and single-token decodes of
// several sequences, each with its own KV block table.
//
// Per step: embed → per layer [residual add + rmsnorm → q/k/v matmul (one fused weight) →
// rope + K/V write into the paged blocks → paged attention → o matmul → residual add + rmsnorm
// → gate/up matmul (one fused weight) → swiglu → down matmul] → the rows whose logits are
// wanted (residual and last down output) → residual add + final rmsnorm → output matmul.
// Each block's output is added to the residual stream by the norm that follows it: 9 backend
// ops per layer (12 where a Q4_K_M file's types keep q/k/v and gate/up separate).
// Activations live in buffers allocated once at create for max_tokens tokens per step; a
// step allocates nothing. An hl_llama belongs to one thread (the engine thread). Profiler
// ranges (NVTX on CUDA) mark each step and each layer.
//
//   hl_llama *l = hl_llama_create(model, kv, 512, 1, 1, &err);
//   hl_llama_seq s = {.tokens = ids, .n_tokens = n, .n_past = 0,
//                     .blocks = seq.blocks, .n_blocks = seq.n_blocks, .n_logits = 1};
//   hl_llama_forward(l, &s, 1, logits, &err);   // logits: (1, n_vocab)
#pragma once

#include "common/hl.h"
#include "engine/graphs.h"
#include "engine/kv_cache.h"
#include "engine/model.h"

typedef struct hl_llama hl_llama;

// One sequence's share of a step.
typedef struct hl_llama_seq {
    const int32_t *tokens; // (n_tokens) new tokens, at positions n_past .. n_past + n_tokens - 1
    int n_tokens;          // >= 1
    int n_past;            // tokens of this sequence already in the KV cache
    const int32_t *blocks; // block table covering positions [0, n_past + n_tokens)
    int n_blocks;
    int n_logits;          // logits wanted for the last n_logits new tokens (0 .. n_tokens)
} hl_llama_seq;

// A forward context for model (borrowed) over kv (borrowed; its geometry must match the
// model: n_kv_heads, head_dim), for steps of at most max_tokens tokens, max_seqs sequences
// and max_logits logit rows. NULL + HL_ERR_INVAL for bad limits or a mismatched cache,
// HL_ERR_NOMEM when the activation buffers cannot be allocated.
hl_llama *hl_llama_create(const hl_model *model, hl_kv_cache *kv, int max_tokens, int max_seqs,
                          int max_logits, hl_error *err);
void hl_llama_free(hl_llama *l); // accepts NULL

// Backend memory hl_llama_create allocates for activations at these limits (memory planning).
size_t hl_llama_activation_bytes(const hl_model_config *c, int max_tokens, int max_logits);

// Decode steps (every sequence one token, wanting its logits) are replayed from graphs when the
// backend has graph ops (engine/graphs.h): on by default. Such steps are padded to a bucket of
// sequences and of block-table width, which changes nothing in the results but the rounding
// of the matmuls. Off frees every graph.
void hl_llama_set_graphs(hl_llama *l, bool on);
// Fills *out with the graph counters; false (and zeros) when graphs are off or unavailable.
bool hl_llama_graph_stats(const hl_llama *l, hl_graphs_stats *out);

// Runs one step over seqs[0..n_seqs) and writes the wanted logits, sequence by sequence in
// order, into logits ((sum of n_logits) rows of n_vocab floats, host memory, caller-owned; may
// be NULL when no logits are wanted). Writes the new tokens' K/V into their blocks.
// HL_ERR_INVAL (nothing run) when the step exceeds the limits, a token id is out of the
// vocabulary, a block table is too short or names a block outside the pool, or the n_logits
// are out of range; the backend's error from download/sync otherwise.
int hl_llama_forward(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, float *logits, hl_error *err);

// Runs one step like hl_llama_forward, but downloads the k best candidates of each wanted logit
// row instead of the row (the backend's topk op, kernels/backend.h; 1 <= k <= HL_TOPK_MAX and
// <= n_vocab): with R = sum of n_logits, vals (R, k) the values best first (equal values: lower
// id first), ids (R, k) their token ids, lse (R) each row's log-sum-exp at inv_temp[r] (inv_temp:
// R positive floats, or NULL for 1; NaN when the row holds a NaN or +inf). Rows r with full[r]
// set (full: R flags, or NULL for none) also get their whole row at logits + r * n_vocab; the
// other rows of logits are not written (logits may be NULL when no flag is set). All host
// memory, caller-owned. HL_ERR_UNSUPPORTED (nothing run) when the backend has no topk op,
// HL_ERR_INVAL for k out of range; otherwise as hl_llama_forward. The step's logits stay on
// the backend for hl_llama_download_row until the next step.
int hl_llama_forward_topk(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, int k, const float *inv_temp,
                          float *vals, int32_t *ids, float *lse, const bool *full, float *logits, hl_error *err);

// Downloads logit row `row` (0 <= row < the R of the last hl_llama_forward or
// hl_llama_forward_topk) into out (n_vocab floats, host memory, caller-owned) and waits for it:
// a row whose candidates did not settle a draw. Valid until the next step of l. HL_ERR_INVAL
// for a row out of range; the backend's error from download/sync otherwise.
int hl_llama_download_row(hl_llama *l, int row, float *out, hl_error *err);

// Runs one step over seqs[0..n_seqs) like hl_llama_forward, but instead of logits writes the
// final-norm hidden states (after output_norm, before the output matmul) of every new token:
// hidden gets (sum of n_tokens) rows of dim floats, sequence by sequence and token by token in
// order (host memory, caller-owned). Every n_logits must be 0 (no logits are computed; the
// normal decode path is untouched). Writes the new tokens' K/V like hl_llama_forward.
// HL_ERR_INVAL (nothing run) as hl_llama_forward, or when an n_logits is not 0; the backend's
// error from download/sync otherwise.
int hl_llama_forward_hidden(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, float *hidden, hl_error *err);
