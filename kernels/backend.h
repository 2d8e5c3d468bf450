// backend: the op-level interface the forward pass is written against, once, for every
// device (STYLE.md "Backend vtable"). Two implementations: kernels/cpu (SIMD + thread
// pool) and kernels/cuda (custom kernels + cuBLAS).
//
// A step processes a *mixed batch*: prefill chunks and single-token decodes of many
// sequences, laid out token-major in one activation matrix. hl_batch describes that
// layout once; the attention and rope/KV ops read it. K/V live in a paged pool of
// 16-token blocks per layer; sequences address it through block tables.
//
// Contracts shared by every op: the caller (engine/llama.c) has checked shapes; tensors
// are row-major with ne[0] the contiguous dimension; activations are F32 unless said
// otherwise and may be column views of a wider matrix (row_bytes > ne[0] * 4: the fused
// q/k/v and gate/up outputs), so every op honours the row_bytes of each tensor; ops are
// queued on the backend and complete in order; results are visible to the host after
// download() or sync(). Unsupported (op, type) pairs are rejected at
// load time through supports(), never mid-step.
//
//   hl_backend *be = hl_backend_cpu_create(4, &err);
//   hl_tensor w; be->ops->upload_weight(be, &w, HL_DTYPE_Q4_0, ne, gguf_bytes, &err);
//   be->ops->matmul(be, &y, &w, &x);   // y (n_tokens, rows) = x (n_tokens, cols) · wᵀ
#pragma once

#include "common/hl.h"

#define HL_KV_BLOCK 16 // tokens per KV block

// A view of device or host memory the backend owns. For weights, `data` may point at a
// backend-specific repacked layout (hence `type` + `layout`); for activations it is a plain
// (ne[1], ne[0]) F32 matrix with rows `row_bytes` apart.
typedef struct hl_tensor {
    int type;           // enum hl_dtype of the logical elements
    int layout;         // backend-private layout id (0 = GGUF blocks as in the file)
    int64_t ne[2];      // ne[0]: elements per row (contiguous), ne[1]: rows
    size_t row_bytes;   // distance between rows in `data`
    void *data;         // backend memory; owned by whoever allocated it
} hl_tensor;

// Where the K/V of every token of one layer lives: a pool of n_blocks blocks, each holding
// HL_KV_BLOCK tokens for every KV head. Element (block b, head h, token t, dim d) is at
// ((b * n_kv_heads + h) * HL_KV_BLOCK + t) * head_dim + d.
//
// int8 K/V (kv_type HL_DTYPE_I8): each (block, head, token) row of head_dim values is stored as
// int8 codes with one float scale, symmetric: value = code * scale. The writer (rope_kv)
// computes amax = max |x| over the row, scale = amax / 127, and code = rintf(x * (127 / amax))
// (nearest, ties to even; 0 when amax is 0), which lies in [-127, 127]. The scales of row
// (b, h, t) are at k_scale / v_scale[(b * n_kv_heads + h) * HL_KV_BLOCK + t].
typedef struct hl_kv_layer {
    void *k;            // (n_blocks, n_kv_heads, HL_KV_BLOCK, head_dim) of kv_type
    void *v;            // same shape
    float *k_scale;     // int8 only: (n_blocks, n_kv_heads, HL_KV_BLOCK) row scales; else NULL
    float *v_scale;     // same for V
} hl_kv_layer;

typedef struct hl_kv_geom {
    int n_blocks;
    int n_kv_heads;
    int head_dim;
    int kv_type;        // HL_DTYPE_F16 (default), HL_DTYPE_F32 or HL_DTYPE_I8 (see above)
} hl_kv_geom;

#define HL_TOPK_MAX 256 // most candidates the topk op returns per row

// The token layout of one step. Tokens of a sequence are contiguous and in position order.
// All arrays are host memory, borrowed for the duration of the op call (the CUDA backend
// copies what it needs before returning).
typedef struct hl_batch {
    int n_tokens;
    int n_seqs;
    const int32_t *pos;         // (n_tokens) absolute position of each token in its sequence
    const int32_t *slot;        // (n_tokens) KV slot of each token: block_id * HL_KV_BLOCK + offset;
                                // < 0 (backends with graph ops only): padding, K/V not written
    const int32_t *seq_start;   // (n_seqs + 1) first token of each sequence; seq_start[n_seqs] = n_tokens
    const int32_t *ctx_len;     // (n_seqs) tokens in the KV cache after this step (cached + new)
    const int32_t *block_table; // (n_seqs, max_blocks) block ids, row-major
    int max_blocks;
} hl_batch;

typedef struct hl_rope {
    float theta;                // base frequency (rope.freq_base)
    int n_rot;                  // rotated dimensions (<= head_dim, even)
    bool neox;                  // rotate halves (NeoX/HF) instead of adjacent pairs (GGUF llama)
    const float *freq_factors;  // (n_rot / 2) divisors of each frequency (llama3 scaling), or NULL
    float freq_scale;           // linear scaling: positions multiplied by this (1 = none)
} hl_rope;

// One named part of a synthetic weight (synth_weight below): n_rows rows whose values are those
// of the tensor called `name` (borrowed for the call) with standard deviation `std`.
typedef struct hl_synth_part {
    const char *name;
    int64_t n_rows;
    float std;
} hl_synth_part;

enum hl_op {
    HL_OP_EMBED,
    HL_OP_MATMUL,
    HL_OP_RMSNORM,
    HL_OP_ROPE_KV,
    HL_OP_ATTENTION,
    HL_OP_SWIGLU,
    HL_OP_ADD,
    HL_OP_GET_ROWS,
    HL_OP_ADD_RMSNORM,
    HL_OP_TOPK,
    HL_OP_COUNT
};

typedef struct hl_backend hl_backend;
typedef struct hl_backend_graph hl_backend_graph; // a captured step (graph ops below)

typedef struct hl_backend_ops {
    const char *name;
    void (*free)(hl_backend *be);

    // ---- memory ----
    void *(*alloc)(hl_backend *be, size_t n_bytes); // NULL on OOM; zero-filled
    void (*release)(hl_backend *be, void *ptr);     // accepts NULL
    int (*upload)(hl_backend *be, void *dst, const void *src, size_t n_bytes, hl_error *err);
    int (*download)(hl_backend *be, void *dst, const void *src, size_t n_bytes, hl_error *err);
    bool (*supports)(hl_backend *be, enum hl_op op, int type);

    // Makes `out` a weight of `type` with shape ne (ne[0] per row) from GGUF-layout bytes
    // `src` (host memory, borrowed for the call; rows of hl_quant_row_bytes(type, ne[0])).
    // The backend may repack into its own layout; release with release_weight.
    int (*upload_weight)(hl_backend *be, hl_tensor *out, int type, const int64_t ne[2],
                         const void *src, hl_error *err);
    void (*release_weight)(hl_backend *be, hl_tensor *w);

    // ---- ops (outputs first) ----
    // out (n, ne0) = rows ids[0..n) of table (any type the backend supports for EMBED).
    void (*embed)(hl_backend *be, hl_tensor *out, const hl_tensor *table, const int32_t *ids, int n);
    // out (n, w.ne[1]) = x (n, w.ne[0]) · wᵀ, for any n ≥ 1. hot: most of the time is here.
    void (*matmul)(hl_backend *be, hl_tensor *out, const hl_tensor *w, const hl_tensor *x);
    // out[i] = x[i] / rms(x[i]) * w, row by row (w: F32 of ne0).
    void (*rmsnorm)(hl_backend *be, hl_tensor *out, const hl_tensor *x, const hl_tensor *w, float eps);
    // Rotates q (n_tokens, n_heads * head_dim) in place, and writes rope(k) (k: n_tokens,
    // n_kv_heads * head_dim; its buffer is left unrotated) and v (same shape) into the layer's
    // blocks at batch->slot. Position p of sequence s lives at slot
    // block_table[s][p / HL_KV_BLOCK] * HL_KV_BLOCK + p % HL_KV_BLOCK (attention reads it there).
    void (*rope_kv)(hl_backend *be, hl_tensor *q, const hl_tensor *k, const hl_tensor *v,
                    const hl_kv_layer *kv, const hl_kv_geom *geom, const hl_batch *batch,
                    const hl_rope *rope);
    // out (n_tokens, n_heads * head_dim) = causal softmax(q · Kᵀ · scale) · V per sequence, over the
    // ctx_len cached tokens of each sequence (the new tokens' K/V are already written). GQA: query
    // head h uses KV head h / (n_heads / n_kv_heads).
    void (*attention)(hl_backend *be, hl_tensor *out, const hl_tensor *q, const hl_kv_layer *kv,
                      const hl_kv_geom *geom, const hl_batch *batch, int n_heads, float scale);
    // out = silu(gate) * up, elementwise.
    void (*swiglu)(hl_backend *be, hl_tensor *out, const hl_tensor *gate, const hl_tensor *up);
    // out = a + b, elementwise (out may alias a).
    void (*add)(hl_backend *be, hl_tensor *out, const hl_tensor *a, const hl_tensor *b);
    // out (n, ne0) = rows[0..n) of x: picks the tokens whose logits are needed.
    void (*get_rows)(hl_backend *be, hl_tensor *out, const hl_tensor *x, const int32_t *rows, int n);
    // The residual add fused with the next norm, row by row: x += y (skipped when y is NULL),
    // then out = x / rms(x) * w (w: F32 of ne0). out must not alias x or y.
    void (*add_rmsnorm)(hl_backend *be, hl_tensor *out, hl_tensor *x, const hl_tensor *y, const hl_tensor *w,
                        float eps);

    int (*sync)(hl_backend *be, hl_error *err); // waits for queued work

    // ---- optional: NULL where the backend has no such thing (the CPU backend) ----
    // Free and total bytes of the memory alloc() draws from (memory planning).
    int (*mem_info)(hl_backend *be, size_t *free_bytes, size_t *total_bytes, hl_error *err);
    // Like upload_weight, but generated where it lives: the weight's rows are parts[0..n_parts)
    // one after the other (their n_rows sum to ne[1], else HL_ERR_INVAL), and element i of part
    // p (counted from the part's first row, as if the part were a tensor of its own) is
    // hl_synth_value(seed, parts[p].name, i, parts[p].std) (engine/synth.h; std 0 gives 1),
    // quantized to `type`: the bytes the CPU path makes, part by part (a fused q/k/v weight has
    // three parts). HL_ERR_UNSUPPORTED for types it cannot generate (the caller then uploads).
    int (*synth_weight)(hl_backend *be, hl_tensor *out, int type, const int64_t ne[2], uint64_t seed,
                        const hl_synth_part *parts, int n_parts, hl_error *err);
    // Graphs: graph_begin, the ops of a step, graph_end capture the step (nothing runs);
    // graph_launch runs it. For the next step of the same shapes: graph_restage, the same op
    // calls (they only record their host metadata: ids, positions, slots, block tables),
    // graph_launch. Every op between begin/restage and end/launch must be one the backend can
    // capture (no download, sync or alloc). restage fails (HL_ERR_INVAL) when the graph went
    // stale (the backend's scratch memory moved): free it and run the step directly.
    int (*graph_begin)(hl_backend *be, hl_error *err);
    hl_backend_graph *(*graph_end)(hl_backend *be, hl_error *err); // owned by the caller
    int (*graph_restage)(hl_backend *be, hl_backend_graph *g, hl_error *err);
    int (*graph_launch)(hl_backend *be, hl_backend_graph *g, hl_error *err);
    void (*graph_free)(hl_backend *be, hl_backend_graph *g); // accepts NULL
    // Top-k candidates of logit rows, so that sampling does not download whole rows. For each
    // row r of x (n_rows = x.ne[1], ncols = x.ne[0], F32): vals row r (k F32) gets its k largest
    // values in descending order (equal values: lower column first), ids row r (k int32 stored
    // in an hl_tensor of type HL_DTYPE_I32) their columns, and lse (n_rows x 1 F32) the row's
    // log-sum-exp at its temperature, log Σ_j exp(x[r][j] * it) with it = inv_temp[r] (inv_temp:
    // n_rows positive finite floats, host memory borrowed for the call, or NULL: every it = 1),
    // computed as max * it + log Σ exp((x - max) * it) (-inf when every value is -inf; NaN when
    // the row holds a NaN or +inf, which the caller must reject; it = 1 gives the plain row
    // log-sum-exp that logprobs need, 1 / T the normalizer of a sampling draw at temperature T).
    // 1 <= k <= min(HL_TOPK_MAX, ncols). NaN values are never among the candidates: a row with
    // fewer than k non-NaN values fills the remaining slots with -inf and id -1. Capturable
    // in a graph like the other ops (a restage must pass inv_temp if the capture did).
    void (*topk)(hl_backend *be, hl_tensor *vals, hl_tensor *ids, hl_tensor *lse, const hl_tensor *x,
                 const float *inv_temp, int k);
    // Named profiler ranges (NVTX on CUDA) around a step or a layer; ranges nest.
    void (*range_push)(hl_backend *be, const char *name);
    void (*range_pop)(hl_backend *be);
    // Starts / stops the profiler's capture (cudaProfilerStart/Stop on CUDA), so that a profile
    // covers chosen engine steps only (`--profile-steps`, docs/PROFILING.md).
    void (*profiler_start)(hl_backend *be);
    void (*profiler_stop)(hl_backend *be);
    // True when rope_kv and attention handle heads of head_dim values with `group` query heads
    // per KV head (checked once, when a forward context is made, so that no step finds out).
    bool (*attention_fits)(hl_backend *be, int head_dim, int group);
} hl_backend_ops;

struct hl_backend {
    const hl_backend_ops *ops;
    void *ctx; // owned: thread pool (cpu) or stream + handles (cuda)
};

// Frees a backend created by any constructor; accepts NULL.
void hl_backend_free(hl_backend *be);

// n_threads <= 0 means one per core. NULL + err on failure.
hl_backend *hl_backend_cpu_create(int n_threads, hl_error *err);

// NULL + HL_ERR_UNSUPPORTED when the build has no CUDA, HL_ERR_DEVICE when no usable device.
hl_backend *hl_backend_cuda_create(int device, hl_error *err);

// The backend a device name selects: "cpu" (n_threads as hl_backend_cpu_create), "cuda" or
// "cuda:N". NULL + err: HL_ERR_INVAL for another name, else the constructor's error.
static inline hl_backend *hl_backend_create_named(const char *device, int n_threads, hl_error *err) {
    if (!device || strcmp(device, "cpu") == 0) return hl_backend_cpu_create(n_threads, err);
    if (strcmp(device, "cuda") == 0) return hl_backend_cuda_create(0, err);
    if (strncmp(device, "cuda:", 5) == 0 && device[5]) {
        int dev = 0;
        const char *p = device + 5;
        for (; *p >= '0' && *p <= '9' && dev < 1000; p++) dev = dev * 10 + (*p - '0');
        if (*p == '\0') return hl_backend_cuda_create(dev, err);
    }
    hl_errorf(err, HL_ERR_INVAL, "unknown device '%s' (cpu, cuda, cuda:N)", device);
    return NULL;
}

// ---- optional ops, callable on every backend ----

// Free / total bytes of the backend's memory; HL_ERR_UNSUPPORTED where it cannot say (CPU).
static inline int hl_backend_mem_info(hl_backend *be, size_t *free_bytes, size_t *total_bytes, hl_error *err) {
    if (!be->ops->mem_info) return hl_errorf(err, HL_ERR_UNSUPPORTED, "backend %s has no memory info", be->ops->name);
    return be->ops->mem_info(be, free_bytes, total_bytes, err);
}

// True when the backend can capture and replay steps (graph ops).
static inline bool hl_backend_has_graphs(const hl_backend *be) {
    return be->ops->graph_begin && be->ops->graph_end && be->ops->graph_restage && be->ops->graph_launch &&
           be->ops->graph_free;
}

// Profiler ranges; no-ops where the backend has none.
static inline void hl_backend_range_push(hl_backend *be, const char *name) {
    if (be->ops->range_push) be->ops->range_push(be, name);
}

static inline void hl_backend_range_pop(hl_backend *be) {
    if (be->ops->range_pop) be->ops->range_pop(be);
}

// True when the backend's attention handles this head geometry (every backend must say).
static inline bool hl_backend_attention_fits(hl_backend *be, int head_dim, int group) {
    return be->ops->attention_fits && be->ops->attention_fits(be, head_dim, group);
}

// Profiler capture; no-ops where the backend has none.
static inline void hl_backend_profiler_start(hl_backend *be) {
    if (be->ops->profiler_start) be->ops->profiler_start(be);
}

static inline void hl_backend_profiler_stop(hl_backend *be) {
    if (be->ops->profiler_stop) be->ops->profiler_stop(be);
}
