// backend_cuda_impl: the CUDA backend's private context, shared by backend_cuda.cu (vtable,
// memory, metadata staging, graphs) and backend_extra.cu (synthetic weights, test and
// benchmark helpers). Not for other modules.
#pragma once

#include <cublas_v2.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
extern "C" {
#include "engine/quant.h"
#include "kernels/backend.h"
#include "kernels/cuda/backend_cuda.h"
}
#include "kernels/cuda/cublas_host.h"

// Host metadata an op copies to the device (token ids, positions, block tables, ...).
enum meta_kind { META_IDS, META_ROWS, META_POS, META_SLOT, META_FF, META_TABLE, META_DEC, META_PF, META_TEMP,
                 META_COUNT };

typedef struct meta_slot {
    void *host;        // owned, pinned: last uploaded bytes (also the shadow for the skip test)
    void *dev;         // owned
    size_t cap, n_bytes;
    cudaEvent_t done;  // recorded after the last copy out of host
    bool valid;
} meta_slot;

enum cuda_mode { MODE_NORMAL, MODE_CAPTURE, MODE_RESTAGE };

// One metadata block an op staged during the capture, in op order. Layers of a step pass the
// same batch, so a block equal to the previous block of its kind is not copied again: it
// aliases that block (the arena then holds one copy of each kind per step).
typedef struct graph_block {
    size_t n, at;          // bytes, offset in the arena
    int alias;             // index of the block it reuses, or -1
} graph_block;

struct hl_cuda_graph {
    cudaGraphExec_t exec;  // owned
    uint8_t *host;         // owned, pinned staging of the captured metadata copies
    uint8_t *dev;          // owned
    size_t cap, used;      // arena bytes; used = bytes staged by the capture
    graph_block *blocks;   // owned: every staged block, in order
    int n_blocks, cap_blocks, next;
    int last[META_COUNT];  // index of the last non-alias block of each kind (capture), or -1
    unsigned epoch;        // the context's scratch epoch at capture
    cudaEvent_t done;      // recorded after the last launch
};

typedef struct cuda_ctx {
    int device, n_sms;
    char name[256];
    cudaStream_t stream;            // owned: every op is queued here
    cublasHandle_t blas;            // owned
    void *blas_ws;                  // owned: cuBLAS workspace (no allocation during capture)
    void *x16; size_t x16_bytes;    // owned: fp16 activations for matmul
    float *ws; size_t ws_bytes;     // owned: split-K / attention partials
    void *deq; size_t deq_bytes;    // owned: dequantized weight tile for the cuBLAS path
    void *tmp; size_t tmp_bytes;    // owned: get_rows when out aliases x
    void *stage; size_t stage_bytes;// owned: raw GGUF rows during upload_weight
    meta_slot meta[META_COUNT];
    int mode;                       // enum cuda_mode
    hl_cuda_graph *graph;           // borrowed: the graph being captured or restaged
    int cublas_min_tokens;
    unsigned epoch;                 // bumped whenever a scratch buffer moves (graphs go stale)
    cudaEvent_t t0, t1;             // owned: benchmark timer
} cuda_ctx;

// The backend's context, with its device made current on the calling thread: the CUDA current
// device is per thread, and the engine thread is not the one that created the backend, so
// cuda:N (N > 0) would otherwise allocate and launch on device 0. Every vtable entry and helper
// reaches the context through here; cudaGetDevice is a thread-local read in the runtime.
static inline cuda_ctx *cuda_ctx_of(hl_backend *be) {
    cuda_ctx *c = (cuda_ctx *)be->ctx;
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != c->device) HL_CUDA_CHECK(cudaSetDevice(c->device));
    return c;
}

// Grows a scratch buffer to at least n_bytes (not while capturing: captured kernels would keep
// the old pointer). Panics when it cannot: ops have no error path.
void *hl_cuda_scratch(cuda_ctx *c, void **buf, size_t *cap, size_t n_bytes);

// The repacked-weight descriptor of a CUDA weight tensor.
hl_cuda_qweight hl_cuda_weight_desc(const hl_tensor *w);

// Allocates a weight of `type` and shape ne in the backend's layout, data uninitialised.
int hl_cuda_weight_alloc(cuda_ctx *c, hl_tensor *out, int type, const int64_t ne[2], hl_error *err);
// Fills a weight allocated by hl_cuda_weight_alloc from GGUF rows already on the device
// (src_rows rows starting at row0, row0 a multiple of 64).
void hl_cuda_weight_fill(cuda_ctx *c, hl_tensor *w, const void *src_dev, size_t row_bytes, int64_t row0,
                         int64_t n_rows);
