// backend_cuda: the CUDA backend (hl_backend_cuda_create in kernels/backend.h) and what it
// offers beyond the op vtable: CUDA graphs, device-side synthetic weights, and helpers the
// tests and the kernel benchmark use. Plain C; only in CUDA builds (CUDA=1), so callers that
// must also build without CUDA guard their use with `#if HL_CUDA`.
//
// Activations: every op takes and returns F32 as backend.h says. The int4/int8 matmul
// converts x to fp16 (zero-padded to 64 columns and 8/16/32/64 tokens) in a small kernel
// first; cuBLAS paths use fp16 (bf16 for BF16 weights) too. Accumulation is always fp32.
//
// Graphs: run one step normally first (it sizes the scratch buffers), then
//   hl_backend_cuda_graph_begin(be, &err); forward(...); g = hl_backend_cuda_graph_end(be, &err);
//   ... next step, same shapes, new tokens/positions:
//   hl_backend_cuda_graph_restage(be, g, &err); forward(...);  // ops only stage metadata
//   hl_backend_cuda_graph_launch(be, g, &err);
#pragma once

#include "kernels/backend.h"

typedef struct hl_cuda_graph hl_cuda_graph;

// Starts capturing the ops queued on `be` into a graph. HL_ERR_BUSY when already capturing,
// HL_ERR_DEVICE with the CUDA text otherwise.
int hl_backend_cuda_graph_begin(hl_backend *be, hl_error *err);
// Ends the capture; the graph (owned by the caller, free with hl_cuda_graph_free) or NULL + err.
hl_cuda_graph *hl_backend_cuda_graph_end(hl_backend *be, hl_error *err);
// Until the next hl_backend_cuda_graph_launch, ops only write their host metadata (token ids,
// positions, slots, block tables) into g's staging, in the order of the capture; they launch
// nothing. The ops must be called with the same shapes as during the capture (checked).
int hl_backend_cuda_graph_restage(hl_backend *be, hl_cuda_graph *g, hl_error *err);
// Replays g on the backend's stream (asynchronously).
int hl_backend_cuda_graph_launch(hl_backend *be, hl_cuda_graph *g, hl_error *err);
void hl_cuda_graph_free(hl_cuda_graph *g); // accepts NULL

// Synthetic weight generated on the device (backend.h synth_weight): rows of parts[0..n_parts)
// in order, element i of part p being hl_synth_value(seed, parts[p].name, i, parts[p].std)
// (engine/synth.h; std 0 gives 1), quantized on the device to `type` with ggml's reference
// quantizer (F32, F16, Q4_0, Q8_0), then laid out as upload_weight would. The same bytes as the
// CPU path for these types. HL_ERR_UNSUPPORTED for other types; HL_ERR_INVAL when the parts'
// rows do not sum to ne[1]; HL_ERR_NOMEM / HL_ERR_DEVICE on failure.
int hl_backend_cuda_synth_weight(hl_backend *be, hl_tensor *out, int type, const int64_t ne[2], uint64_t seed,
                                 const hl_synth_part *parts, int n_parts, hl_error *err);

// Test helper: reads the codes and (scale, min) pairs back out of a repacked weight (layouts
// I4 / I8): codes (ne[1], ne[0]) int8, params (ne[1], ne[0] / group) as fp16 pairs (scale in
// the low 16 bits). Host buffers, caller-owned. Its group size in *group_size.
int hl_backend_cuda_unpack(hl_backend *be, const hl_tensor *w, int8_t *codes, uint32_t *params,
                           int *group_size, hl_error *err);

// Token count from which quantized matmuls use cuBLAS on dequantized tiles (default 128, or
// the HL_CUDA_CUBLAS_MIN_TOKENS environment variable).
void hl_backend_cuda_set_cublas_min_tokens(hl_backend *be, int n);

// ---- benchmark helpers ----
// Milliseconds of GPU time between two calls (events on the backend stream).
void hl_backend_cuda_timer_start(hl_backend *be);
float hl_backend_cuda_timer_stop(hl_backend *be);
// Device-to-device copy bandwidth in GB/s (read + write bytes / time) over n_bytes buffers.
double hl_backend_cuda_copy_gbps(hl_backend *be, size_t n_bytes, hl_error *err);
// cuBLAS fp16 baseline: out (t, n) f32 = x16 (t, k) fp16 · w16 (n, k)ᵀ, device pointers.
int hl_backend_cuda_gemm_f16(hl_backend *be, float *out, const void *w16, const void *x16, int64_t n,
                             int64_t k, int64_t t, hl_error *err);
// Number of SMs and the device name (static storage of the backend).
int hl_backend_cuda_n_sms(hl_backend *be);
const char *hl_backend_cuda_device_name(hl_backend *be);
