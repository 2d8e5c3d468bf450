// backend_cuda: the CUDA backend's vtable (kernels/backend.h, kernels/cuda/backend_cuda.h).
// One stream owned by the engine thread; every op is queued on it and returns at once.
// Host metadata (token ids, positions, slots, block tables) goes through per-kind pinned
// slots that skip the copy when the bytes did not change (32 layers share one batch), or,
// inside a CUDA graph, through the graph's own staging arena (see the graph section).
#include <cuda_profiler_api.h>
#include <nvtx3/nvToolsExt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/backend_cuda_impl.cuh"
extern "C" {
#include "kernels/cuda/cuda_info.h"
}

#define STAGE_BYTES (64u << 20)   // raw GGUF rows per upload_weight chunk
#define BLAS_WS_BYTES (32u << 20)
#define DEQ_BYTES (64u << 20)     // fp16 weight tile of the cuBLAS path
#define GRAPH_ARENA_BYTES (2u << 20) // metadata of one captured step (one copy per kind)

// NVTX range per op: `nsys profile --trace=cuda,nvtx` shows one range per op call (a scope
// object, so every early return pops it).
struct nvtx_range {
    explicit nvtx_range(const char *name) { nvtxRangePushA(name); }
    ~nvtx_range() { nvtxRangePop(); }
};

// ---- failures (cuda_common.cuh) ----

static pthread_mutex_t failure_mu = PTHREAD_MUTEX_INITIALIZER;
static char failure_msg[512]; // guarded by failure_mu; empty: none yet

void hl_cuda_note_failure(const char *file, int line, const char *what, const char *why) {
    pthread_mutex_lock(&failure_mu);
    const bool first = failure_msg[0] == '\0';
    if (first) snprintf(failure_msg, sizeof failure_msg, "%s: %s (%s:%d)", what, why, file, line);
    pthread_mutex_unlock(&failure_mu);
    if (first) hl_log(HL_LOG_ERROR, "cuda: %s: %s (%s:%d)", what, why, file, line);
}

int hl_cuda_failed(hl_error *err) {
    pthread_mutex_lock(&failure_mu);
    int rc = HL_OK;
    if (failure_msg[0]) rc = hl_errorf(err, HL_ERR_DEVICE, "cuda: %s", failure_msg);
    pthread_mutex_unlock(&failure_mu);
    return rc;
}

static void blas_failed(int line, cublasStatus_t st) {
    char why[32];
    snprintf(why, sizeof why, "status %d", (int)st);
    hl_cuda_note_failure(__FILE__, line, "cublasGemmEx", why);
}

static int cuda_fail(hl_error *err, const char *what, cudaError_t rc) {
    return hl_errorf(err, HL_ERR_DEVICE, "cuda: %s: %s", what, cudaGetErrorString(rc));
}

// ---- scratch ----

void *hl_cuda_scratch(cuda_ctx *c, void **buf, size_t *cap, size_t n_bytes) {
    if (n_bytes <= *cap) return *buf;
    if (c->mode != MODE_NORMAL)
        hl_panic(__FILE__, __LINE__, "cuda: scratch must grow to %zu bytes during a graph capture; "
                 "run the step once outside the capture first", n_bytes);
    HL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    HL_CUDA_CHECK(cudaFree(*buf));
    *buf = NULL;
    *cap = 0;
    if (cudaMalloc(buf, n_bytes) != cudaSuccess)
        hl_panic(__FILE__, __LINE__, "cuda: cannot allocate %zu bytes of scratch", n_bytes);
    *cap = n_bytes;
    c->epoch++; // graphs captured before hold the old address
    return *buf;
}

// ---- metadata ----

static int graph_add_block(hl_cuda_graph *g, size_t n, size_t at, int alias) {
    if (g->n_blocks == g->cap_blocks) {
        g->cap_blocks = g->cap_blocks ? 2 * g->cap_blocks : 64;
        g->blocks = (graph_block *)hl_xrealloc(g->blocks, (size_t)g->cap_blocks * sizeof(graph_block));
    }
    g->blocks[g->n_blocks] = graph_block{n, at, alias};
    return g->n_blocks++;
}

// Restage: rewrites the arena where the capture put this op's block (an alias must carry the
// bytes of the block it reuses: the layers of one step share their batch).
static const void *meta_restage(hl_cuda_graph *g, const void *src, size_t n) {
    if (g->next >= g->n_blocks || g->blocks[g->next].n != n)
        hl_panic(__FILE__, __LINE__, "cuda graph restage: op %d differs from the capture", g->next);
    const graph_block *b = &g->blocks[g->next++];
    if (b->alias < 0) memcpy(g->host + b->at, src, n);
    else if (memcmp(g->host + b->at, src, n) != 0)
        hl_panic(__FILE__, __LINE__, "cuda graph restage: metadata block %d differs from block %d as captured",
                 g->next - 1, b->alias);
    return g->dev + b->at;
}

// Device copy of host bytes for the op being queued. In a capture the copy is a graph node that
// reads g's pinned arena at every replay; in a restage only the arena is rewritten.
static const void *meta_graph(cuda_ctx *c, int kind, const void *src, size_t n) {
    hl_cuda_graph *g = c->graph;
    if (c->mode == MODE_RESTAGE) return meta_restage(g, src, n);
    const int prev = g->last[kind];
    if (prev >= 0 && g->blocks[prev].n == n && memcmp(g->host + g->blocks[prev].at, src, n) == 0) {
        graph_add_block(g, n, g->blocks[prev].at, prev);
        return g->dev + g->blocks[prev].at;
    }
    const size_t at = g->used, need = (n + 255) / 256 * 256;
    if (at + need > g->cap)
        hl_panic(__FILE__, __LINE__, "cuda graph: metadata arena full (%zu bytes); capture smaller steps", g->cap);
    memcpy(g->host + at, src, n);
    g->used = at + need;
    g->last[kind] = graph_add_block(g, n, at, -1);
    HL_CUDA_CHECK(cudaMemcpyAsync(g->dev + at, g->host + at, n, cudaMemcpyHostToDevice, c->stream));
    return g->dev + at;
}

static const void *meta(cuda_ctx *c, int kind, const void *src, size_t n) {
    if (n == 0) return NULL;
    if (c->mode != MODE_NORMAL) return meta_graph(c, kind, src, n);
    meta_slot *m = &c->meta[kind];
    if (m->valid && m->n_bytes == n && memcmp(m->host, src, n) == 0) return m->dev;
    HL_CUDA_CHECK(cudaEventSynchronize(m->done)); // the last copy out of m->host has finished
    if (n > m->cap) {
        HL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
        HL_CUDA_CHECK(cudaFreeHost(m->host));
        HL_CUDA_CHECK(cudaFree(m->dev));
        m->cap = n * 2;
        HL_CUDA_CHECK(cudaMallocHost(&m->host, m->cap));
        HL_CUDA_CHECK(cudaMalloc(&m->dev, m->cap));
    }
    memcpy(m->host, src, n);
    m->n_bytes = n;
    m->valid = true;
    HL_CUDA_CHECK(cudaMemcpyAsync(m->dev, m->host, n, cudaMemcpyHostToDevice, c->stream));
    HL_CUDA_CHECK(cudaEventRecord(m->done, c->stream));
    return m->dev;
}

// ---- memory ----

static void *cu_alloc(hl_backend *be, size_t n_bytes) {
    cuda_ctx *c = cuda_ctx_of(be);
    void *p = NULL;
    if (cudaMalloc(&p, n_bytes ? n_bytes : 256) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    if (cudaMemsetAsync(p, 0, n_bytes, c->stream) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_release(hl_backend *be, void *ptr) {
    if (!ptr) return;
    HL_CUDA_CHECK(cudaStreamSynchronize(cuda_ctx_of(be)->stream)); // queued ops may still read it
    HL_CUDA_CHECK(cudaFree(ptr));
}

static int cu_copy(hl_backend *be, void *dst, const void *src, size_t n, cudaMemcpyKind kind, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (n == 0) return HL_OK;
    if (!dst || !src) return hl_errorf(err, HL_ERR_INVAL, "cuda copy: NULL buffer");
    cudaError_t rc = cudaMemcpyAsync(dst, src, n, kind, c->stream);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(c->stream);
    if (rc != cudaSuccess) return cuda_fail(err, "memcpy", rc);
    return hl_cuda_failed(err); // an op queued before may have failed to launch
}

static int cu_upload(hl_backend *be, void *dst, const void *src, size_t n, hl_error *err) {
    return cu_copy(be, dst, src, n, cudaMemcpyHostToDevice, err);
}

static int cu_download(hl_backend *be, void *dst, const void *src, size_t n, hl_error *err) {
    return cu_copy(be, dst, src, n, cudaMemcpyDeviceToHost, err);
}

static int cu_sync(hl_backend *be, hl_error *err) {
    cudaError_t rc = cudaStreamSynchronize(cuda_ctx_of(be)->stream);
    if (rc != cudaSuccess) return cuda_fail(err, "stream synchronize", rc);
    return hl_cuda_failed(err);
}

static bool weight_type_ok(int type) {
    switch (type) {
    case HL_DTYPE_F32: case HL_DTYPE_F16: case HL_DTYPE_BF16: case HL_DTYPE_Q4_0: case HL_DTYPE_Q4_1:
    case HL_DTYPE_Q4_K: case HL_DTYPE_Q8_0: case HL_DTYPE_Q5_0: case HL_DTYPE_Q5_K: case HL_DTYPE_Q6_K:
        return true;
    default: return false;
    }
}

static bool cu_supports(hl_backend *be, enum hl_op op, int type) {
    (void)be;
    switch (op) {
    case HL_OP_EMBED: case HL_OP_MATMUL: return weight_type_ok(type);
    case HL_OP_ROPE_KV: case HL_OP_ATTENTION: return type == HL_DTYPE_F16 || type == HL_DTYPE_I8;
    case HL_OP_TOPK: return type == HL_DTYPE_F32;
    case HL_OP_RMSNORM: case HL_OP_SWIGLU: case HL_OP_ADD: case HL_OP_GET_ROWS: case HL_OP_ADD_RMSNORM:
        return type == HL_DTYPE_F32;
    default: return false;
    }
}

// ---- weights ----

static int layout_of(int type, int64_t ne1) {
    switch (type) {
    case HL_DTYPE_Q4_0: case HL_DTYPE_Q4_1: case HL_DTYPE_Q4_K: return HL_CUDA_LAYOUT_I4;
    case HL_DTYPE_Q8_0: case HL_DTYPE_Q5_0: case HL_DTYPE_Q5_K: case HL_DTYPE_Q6_K: return HL_CUDA_LAYOUT_I8;
    case HL_DTYPE_BF16: return HL_CUDA_LAYOUT_BF16;
    case HL_DTYPE_F32: return ne1 == 1 ? HL_CUDA_LAYOUT_GGUF : HL_CUDA_LAYOUT_F16; // vectors stay F32
    default: return HL_CUDA_LAYOUT_F16;
    }
}

hl_cuda_qweight hl_cuda_weight_desc(const hl_tensor *w) {
    hl_cuda_qweight q;
    memset(&q, 0, sizeof q);
    q.n = w->ne[1];
    q.k = w->ne[0];
    q.np = hl_round_up(q.n, 64);
    q.kp = hl_round_up(q.k, 64);
    q.codes = w->data;
    q.gs = w->type == HL_DTYPE_Q6_K ? 16 : 32;
    switch (w->layout) {
    case HL_CUDA_LAYOUT_I4: q.bits = 4; break;
    case HL_CUDA_LAYOUT_I8: q.bits = 8; break;
    case HL_CUDA_LAYOUT_BF16: q.bits = -16; return q;
    default: q.bits = 16; return q;
    }
    q.params = (const uint8_t *)w->data + hl_cuda_qweight_code_bytes(q.bits, q.n, q.k);
    return q;
}

int hl_cuda_weight_alloc(cuda_ctx *c, hl_tensor *out, int type, const int64_t ne[2], hl_error *err) {
    (void)c;
    if (!weight_type_ok(type)) return hl_errorf(err, HL_ERR_UNSUPPORTED, "cuda: weight type %s is not supported",
                                                hl_quant_name(type));
    if (ne[0] <= 0 || ne[1] <= 0) return hl_errorf(err, HL_ERR_INVAL, "cuda: empty weight shape");
    const int layout = layout_of(type, ne[1]);
    size_t bytes;
    if (layout == HL_CUDA_LAYOUT_I4 || layout == HL_CUDA_LAYOUT_I8) {
        const int bits = layout == HL_CUDA_LAYOUT_I4 ? 4 : 8;
        bytes = hl_cuda_qweight_code_bytes(bits, ne[1], ne[0]) +
                hl_cuda_qweight_param_bytes(type == HL_DTYPE_Q6_K ? 16 : 32, ne[1], ne[0]);
    } else {
        bytes = (size_t)ne[0] * (size_t)ne[1] * (layout == HL_CUDA_LAYOUT_GGUF ? 4 : 2);
    }
    void *p = NULL;
    cudaError_t rc = cudaMalloc(&p, bytes);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return hl_errorf(err, HL_ERR_NOMEM, "cuda: cannot allocate %zu bytes for a %s weight: %s", bytes,
                         hl_quant_name(type), cudaGetErrorString(rc));
    }
    memset(out, 0, sizeof *out);
    out->type = type;
    out->layout = layout;
    out->ne[0] = ne[0];
    out->ne[1] = ne[1];
    out->row_bytes = layout == HL_CUDA_LAYOUT_GGUF ? (size_t)ne[0] * 4 : (size_t)ne[0] * 2;
    out->data = p;
    return HL_OK;
}

void hl_cuda_weight_fill(cuda_ctx *c, hl_tensor *w, const void *src_dev, size_t row_bytes, int64_t row0,
                         int64_t n_rows) {
    uint8_t *base = (uint8_t *)w->data;
    switch (w->layout) {
    case HL_CUDA_LAYOUT_I4: case HL_CUDA_LAYOUT_I8: {
        const hl_cuda_qweight q = hl_cuda_weight_desc(w);
        hl_cuda_repack(c->stream, w->type, src_dev, row_bytes, row0, n_rows, &q);
        return;
    }
    case HL_CUDA_LAYOUT_GGUF: // F32 vector
        HL_CUDA_CHECK(cudaMemcpyAsync(base + (size_t)row0 * w->row_bytes, src_dev, (size_t)n_rows * row_bytes,
                                      cudaMemcpyDeviceToDevice, c->stream));
        return;
    default:
        if (w->type == HL_DTYPE_F32) { // F32 matrix -> fp16
            hl_cuda_act_to_half(c->stream, base + (size_t)row0 * w->row_bytes, w->ne[0], n_rows,
                                (const float *)src_dev, w->ne[0], n_rows, w->ne[0], 0);
            return;
        }
        HL_CUDA_CHECK(cudaMemcpyAsync(base + (size_t)row0 * w->row_bytes, src_dev, (size_t)n_rows * row_bytes,
                                      cudaMemcpyDeviceToDevice, c->stream));
    }
}

static int cu_upload_weight(hl_backend *be, hl_tensor *out, int type, const int64_t ne[2], const void *src,
                            hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("upload_weight");
    size_t rb;
    int rc = hl_cuda_weight_alloc(c, out, type, ne, err);
    if (rc != HL_OK) return rc;
    rc = hl_quant_row_bytes(type, ne[0], &rb, err);
    if (rc != HL_OK) goto fail;
    {
        int64_t chunk = (int64_t)(STAGE_BYTES / rb) / 64 * 64;
        if (chunk < 64) chunk = 64;
        hl_cuda_scratch(c, &c->stage, &c->stage_bytes, (size_t)chunk * rb);
        for (int64_t row0 = 0; row0 < ne[1]; row0 += chunk) {
            const int64_t n = ne[1] - row0 < chunk ? ne[1] - row0 : chunk;
            // pageable source: returns once the bytes are staged, so the next chunk may follow
            cudaError_t crc = cudaMemcpyAsync(c->stage, (const uint8_t *)src + (size_t)row0 * rb, (size_t)n * rb,
                                              cudaMemcpyHostToDevice, c->stream);
            if (crc != cudaSuccess) {
                rc = cuda_fail(err, "upload weight", crc);
                goto fail;
            }
            hl_cuda_weight_fill(c, out, c->stage, rb, row0, n);
            crc = cudaStreamSynchronize(c->stream); // the stage buffer is reused by the next chunk
            if (crc != cudaSuccess) {
                rc = cuda_fail(err, "repack weight", crc);
                goto fail;
            }
        }
    }
    rc = hl_cuda_failed(err); // a repack kernel that did not launch
    if (rc == HL_OK) return HL_OK;
fail:
    cudaFree(out->data);
    memset(out, 0, sizeof *out);
    return rc;
}

static void cu_release_weight(hl_backend *be, hl_tensor *w) {
    if (!w) return;
    cu_release(be, w->data);
    memset(w, 0, sizeof *w);
}

// ---- ops ----

static inline int64_t ld_of(const hl_tensor *t) { return (int64_t)(t->row_bytes / sizeof(float)); }

static void cu_embed(hl_backend *be, hl_tensor *out, const hl_tensor *table, const int32_t *ids, int n) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("embed");
    const int32_t *d_ids = (const int32_t *)meta(c, META_IDS, ids, (size_t)n * sizeof(int32_t));
    if (c->mode == MODE_RESTAGE) return;
    if (table->layout == HL_CUDA_LAYOUT_GGUF) { // F32 vector table (one row)
        hl_cuda_get_rows(c->stream, (float *)out->data, ld_of(out), (const float *)table->data, ld_of(table),
                         d_ids, n, table->ne[0]);
        return;
    }
    const hl_cuda_qweight q = hl_cuda_weight_desc(table);
    hl_cuda_dequant_rows(c->stream, &q, d_ids, 0, n, out->data, ld_of(out), 0);
}

// hot: large-token quantized matmuls and all F16 ones: cuBLAS with fp32 accumulation on fp16
// tiles of the dequantized weight. BF16 weights (rare) take an fp32 GEMM on fp32 tiles instead:
// rounding the activations to bf16 would cost ~1e-3 relative error.
static void matmul_cublas(cuda_ctx *c, hl_tensor *out, const hl_tensor *w, const hl_tensor *x) {
    const hl_cuda_qweight q = hl_cuda_weight_desc(w);
    const int64_t t = x->ne[1], k = w->ne[0], n = w->ne[1];
    const bool f32 = q.bits == -16;
    const int esize = f32 ? 4 : 2;
    const cudaDataType ab = f32 ? CUDA_R_32F : CUDA_R_16F;
    const void *xin = x->data;
    int64_t ldx = ld_of(x);
    if (!f32) {
        void *x16 = hl_cuda_scratch(c, &c->x16, &c->x16_bytes, (size_t)(t * k) * 2);
        hl_cuda_act_to_half(c->stream, x16, k, t, (const float *)x->data, ld_of(x), t, k, 0);
        xin = x16;
        ldx = k;
    }
    const float one = 1.0f, zero = 0.0f;
    if (q.bits == 16) {
        cublasStatus_t st = hl_cublas()->gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)t, (int)k, &one, w->data,
                                         ab, (int)k, xin, ab, (int)ldx, &zero, out->data, CUDA_R_32F, (int)ld_of(out),
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) blas_failed(__LINE__, st);
        return;
    }
    int64_t tile = (int64_t)(DEQ_BYTES / ((size_t)k * (size_t)esize)) / 64 * 64;
    if (tile < 64) tile = 64;
    void *deq = hl_cuda_scratch(c, &c->deq, &c->deq_bytes, (size_t)(tile * k) * (size_t)esize);
    for (int64_t r0 = 0; r0 < n; r0 += tile) {
        const int64_t nr = n - r0 < tile ? n - r0 : tile;
        hl_cuda_dequant_rows(c->stream, &q, NULL, r0, (int)nr, deq, k, !f32);
        cublasStatus_t st = hl_cublas()->gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, (int)t, (int)k, &one, deq, ab,
                                         (int)k, xin, ab, (int)ldx, &zero, (float *)out->data + r0, CUDA_R_32F,
                                         (int)ld_of(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) blas_failed(__LINE__, st);
    }
}

static void cu_matmul(hl_backend *be, hl_tensor *out, const hl_tensor *w, const hl_tensor *x) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("matmul");
    if (c->mode == MODE_RESTAGE) return;
    const hl_cuda_qweight q = hl_cuda_weight_desc(w);
    const int64_t t = x->ne[1];
    if (q.bits == 16 || q.bits == -16 || t >= c->cublas_min_tokens) {
        matmul_cublas(c, out, w, x);
        return;
    }
    const int64_t tp = hl_round_up(t, hl_cuda_matmul_tile_tokens(t));
    void *x16 = hl_cuda_scratch(c, &c->x16, &c->x16_bytes, (size_t)(tp * q.kp) * 2);
    hl_cuda_act_to_half(c->stream, x16, q.kp, tp, (const float *)x->data, ld_of(x), t, q.k, 0);
    const int splits = hl_cuda_matmul_splits(&q, t, c->n_sms);
    float *ws = NULL;
    if (splits > 1) ws = (float *)hl_cuda_scratch(c, (void **)&c->ws, &c->ws_bytes, (size_t)(splits * tp * q.np) * 4);
    hl_cuda_matmul_q(c->stream, &q, x16, t, (float *)out->data, ld_of(out), ws, splits);
}

static void cu_rmsnorm(hl_backend *be, hl_tensor *out, const hl_tensor *x, const hl_tensor *w, float eps) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("rmsnorm");
    if (c->mode == MODE_RESTAGE) return;
    hl_cuda_rmsnorm(c->stream, (float *)out->data, ld_of(out), (const float *)x->data, ld_of(x),
                    (const float *)w->data, x->ne[1], x->ne[0], eps);
}

static void cu_rope_kv(hl_backend *be, hl_tensor *q, const hl_tensor *k, const hl_tensor *v, const hl_kv_layer *kv,
                       const hl_kv_geom *geom, const hl_batch *batch, const hl_rope *rope) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("rope_kv");
    hl_cuda_rope_args a;
    memset(&a, 0, sizeof a);
    a.pos = (const int32_t *)meta(c, META_POS, batch->pos, (size_t)batch->n_tokens * 4);
    a.slot = (const int32_t *)meta(c, META_SLOT, batch->slot, (size_t)batch->n_tokens * 4);
    if (rope->freq_factors)
        a.freq_factors = (const float *)meta(c, META_FF, rope->freq_factors, (size_t)(rope->n_rot / 2) * 4);
    if (c->mode == MODE_RESTAGE) return;
    a.q = (float *)q->data, a.ldq = ld_of(q);
    a.k = (const float *)k->data, a.ldk = ld_of(k);
    a.v = (const float *)v->data, a.ldv = ld_of(v);
    a.kc = kv->k, a.vc = kv->v;
    a.k_scale = kv->k_scale, a.v_scale = kv->v_scale;
    a.n_tokens = batch->n_tokens;
    a.head_dim = geom->head_dim;
    a.n_heads = (int)(q->ne[0] / geom->head_dim);
    a.n_kv_heads = geom->n_kv_heads;
    a.n_rot = rope->n_rot;
    a.neox = rope->neox;
    a.kv_type = geom->kv_type == HL_DTYPE_I8    ? HL_CUDA_KV_I8
                : geom->kv_type == HL_DTYPE_F16 ? HL_CUDA_KV_F16
                                                : HL_CUDA_KV_F32;
    a.theta = rope->theta;
    a.freq_scale = rope->freq_scale;
    hl_cuda_rope_kv(c->stream, &a);
}

// Decode list (sequences with one new token) and prefill tiles of `rows` rows (the others),
// host side.
static void attn_plan(const hl_batch *b, int G, int rows, int32_t *dec, int *n_dec, int32_t *pf, int *n_pf) {
    *n_dec = 0;
    *n_pf = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const int first = b->seq_start[s], n_tok = b->seq_start[s + 1] - first;
        if (n_tok == 1) {
            dec[*n_dec] = s;
            dec[b->n_seqs + *n_dec] = first;
            (*n_dec)++;
            continue;
        }
        for (int row0 = 0; row0 < n_tok * G; row0 += rows) {
            int32_t *it = pf + 4 * (*n_pf)++;
            it[0] = s, it[1] = first, it[2] = n_tok, it[3] = row0;
        }
    }
}

static void cu_attention(hl_backend *be, hl_tensor *out, const hl_tensor *q, const hl_kv_layer *kv,
                         const hl_kv_geom *geom, const hl_batch *batch, int n_heads, float scale) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("attention");
    const int G = n_heads / geom->n_kv_heads, pf_rows = hl_cuda_attn_prefill_rows(geom->head_dim);
    int n_dec, n_pf;
    int32_t *dec = (int32_t *)hl_xmalloc((size_t)(2 * batch->n_seqs + 1) * 4);
    int32_t *pf = (int32_t *)hl_xmalloc((size_t)(4 * (batch->n_tokens * G / pf_rows + batch->n_seqs) + 4) * 4);
    attn_plan(batch, G, pf_rows, dec, &n_dec, pf, &n_pf);
    // dec_tok follows dec_seq at n_seqs; compact so one copy carries both
    memmove(dec + n_dec, dec + batch->n_seqs, (size_t)n_dec * 4);
    hl_cuda_attn_args a;
    memset(&a, 0, sizeof a);
    a.pos = (const int32_t *)meta(c, META_POS, batch->pos, (size_t)batch->n_tokens * 4);
    a.block_table = (const int32_t *)meta(c, META_TABLE, batch->block_table,
                                          (size_t)batch->n_seqs * (size_t)batch->max_blocks * 4);
    const int32_t *d_dec = (const int32_t *)meta(c, META_DEC, dec, (size_t)n_dec * 8);
    a.pf_item = (const int32_t *)meta(c, META_PF, pf, (size_t)n_pf * 16);
    free(dec);
    free(pf);
    if (c->mode == MODE_RESTAGE) return;
    a.out = (float *)out->data, a.ldo = ld_of(out);
    a.q = (const float *)q->data, a.ldq = ld_of(q);
    a.kc = kv->k, a.vc = kv->v;
    a.k_scale = kv->k_scale, a.v_scale = kv->v_scale;
    a.kv_i8 = geom->kv_type == HL_DTYPE_I8;
    a.max_blocks = batch->max_blocks;
    a.n_heads = n_heads;
    a.n_kv_heads = geom->n_kv_heads;
    a.head_dim = geom->head_dim;
    a.scale = scale;
    a.dec_seq = d_dec;
    a.dec_tok = d_dec ? d_dec + n_dec : NULL;
    a.n_dec = n_dec;
    a.n_splits = (int)hl_div_up((int64_t)batch->max_blocks * HL_KV_BLOCK, HL_CUDA_ATTN_CHUNK);
    if (a.n_splits < 1) a.n_splits = 1;
    if (n_dec > 0 && a.n_splits > 1)
        a.ws = (float *)hl_cuda_scratch(c, (void **)&c->ws, &c->ws_bytes,
                                        (size_t)n_dec * (size_t)n_heads * (size_t)a.n_splits * (size_t)(a.head_dim + 2) * 4);
    a.n_pf = n_pf;
    a.pf_rows = pf_rows;
    hl_cuda_attention(c->stream, &a);
}

static void cu_add_rmsnorm(hl_backend *be, hl_tensor *out, hl_tensor *x, const hl_tensor *y, const hl_tensor *w,
                           float eps) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("add_rmsnorm");
    if (c->mode == MODE_RESTAGE) return;
    hl_cuda_add_rmsnorm(c->stream, (float *)out->data, ld_of(out), (float *)x->data, ld_of(x),
                        y ? (const float *)y->data : NULL, y ? ld_of(y) : 0, (const float *)w->data, x->ne[1],
                        x->ne[0], eps);
}

static void cu_swiglu(hl_backend *be, hl_tensor *out, const hl_tensor *gate, const hl_tensor *up) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("swiglu");
    if (c->mode == MODE_RESTAGE) return;
    hl_cuda_swiglu(c->stream, (float *)out->data, ld_of(out), (const float *)gate->data, ld_of(gate),
                   (const float *)up->data, ld_of(up), gate->ne[1], gate->ne[0]);
}

static void cu_add(hl_backend *be, hl_tensor *out, const hl_tensor *a, const hl_tensor *b) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("add");
    if (c->mode == MODE_RESTAGE) return;
    hl_cuda_add(c->stream, (float *)out->data, ld_of(out), (const float *)a->data, ld_of(a),
                (const float *)b->data, ld_of(b), a->ne[1], a->ne[0]);
}

static void cu_get_rows(hl_backend *be, hl_tensor *out, const hl_tensor *x, const int32_t *rows, int n) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("get_rows");
    const int32_t *d_rows = (const int32_t *)meta(c, META_ROWS, rows, (size_t)n * 4);
    if (c->mode == MODE_RESTAGE || n <= 0) return;
    if (out->data != x->data) {
        hl_cuda_get_rows(c->stream, (float *)out->data, ld_of(out), (const float *)x->data, ld_of(x), d_rows, n,
                         x->ne[0]);
        return;
    }
    // in place (backend.h allows it, with memmove semantics): gather into scratch, copy back
    const size_t row = (size_t)x->ne[0] * 4;
    float *tmp = (float *)hl_cuda_scratch(c, &c->tmp, &c->tmp_bytes, (size_t)n * row);
    hl_cuda_get_rows(c->stream, tmp, x->ne[0], (const float *)x->data, ld_of(x), d_rows, n, x->ne[0]);
    HL_CUDA_CHECK(cudaMemcpy2DAsync(out->data, out->row_bytes, tmp, row, row, (size_t)n, cudaMemcpyDeviceToDevice,
                                    c->stream));
}

// ---- topk ----

// The only host metadata is inv_temp (one float per row), staged like the other ops' metadata;
// inside a capture the launch is a node.
static void cu_topk(hl_backend *be, hl_tensor *vals, hl_tensor *ids, hl_tensor *lse, const hl_tensor *x,
                    const float *inv_temp, int k) {
    cuda_ctx *c = cuda_ctx_of(be);
    nvtx_range r("topk");
    HL_ASSERT(k >= 1 && k <= HL_TOPK_MAX && k <= x->ne[0]);
    const float *d_it = inv_temp ? (const float *)meta(c, META_TEMP, inv_temp, (size_t)x->ne[1] * 4) : NULL;
    if (c->mode == MODE_RESTAGE) return;
    hl_cuda_topk(c->stream, (float *)vals->data, ld_of(vals), (int32_t *)ids->data,
                 (int64_t)(ids->row_bytes / sizeof(int32_t)), (float *)lse->data, ld_of(lse),
                 (const float *)x->data, ld_of(x), d_it, x->ne[1], x->ne[0], k);
}

// ---- graphs ----

extern "C" int hl_backend_cuda_graph_begin(hl_backend *be, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (c->mode != MODE_NORMAL) return hl_errorf(err, HL_ERR_BUSY, "cuda graph: already capturing or restaging");
    hl_cuda_graph *g = (hl_cuda_graph *)hl_xcalloc(1, sizeof *g);
    g->cap = GRAPH_ARENA_BYTES;
    for (int i = 0; i < META_COUNT; i++) g->last[i] = -1;
    cudaError_t rc = cudaMallocHost(&g->host, g->cap);
    if (rc == cudaSuccess) rc = cudaMalloc(&g->dev, g->cap);
    if (rc == cudaSuccess) rc = cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming);
    if (rc == cudaSuccess) rc = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed);
    if (rc != cudaSuccess) {
        hl_cuda_graph_free(g);
        return cuda_fail(err, "begin capture", rc);
    }
    c->graph = g;
    c->mode = MODE_CAPTURE;
    return HL_OK;
}

extern "C" hl_cuda_graph *hl_backend_cuda_graph_end(hl_backend *be, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (c->mode != MODE_CAPTURE) {
        hl_errorf(err, HL_ERR_INVAL, "cuda graph: not capturing");
        return NULL;
    }
    hl_cuda_graph *g = c->graph;
    c->graph = NULL;
    c->mode = MODE_NORMAL;
    cudaGraph_t graph = NULL;
    cudaError_t rc = cudaStreamEndCapture(c->stream, &graph);
    if (rc == cudaSuccess) rc = cudaGraphInstantiate(&g->exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (rc != cudaSuccess) {
        cuda_fail(err, "end capture", rc);
        cudaGetLastError(); // a failed capture must not fail the next call too
        hl_cuda_graph_free(g);
        return NULL;
    }
    g->epoch = c->epoch;
    return g;
}

extern "C" int hl_backend_cuda_graph_restage(hl_backend *be, hl_cuda_graph *g, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (c->mode != MODE_NORMAL) return hl_errorf(err, HL_ERR_BUSY, "cuda graph: already capturing or restaging");
    if (g->epoch != c->epoch)
        return hl_errorf(err, HL_ERR_INVAL, "cuda graph: stale (scratch memory moved since the capture)");
    cudaError_t rc = cudaEventSynchronize(g->done); // the last replay has read the arena
    if (rc != cudaSuccess) return cuda_fail(err, "graph restage", rc);
    g->next = 0;
    c->graph = g;
    c->mode = MODE_RESTAGE;
    return HL_OK;
}

extern "C" int hl_backend_cuda_graph_launch(hl_backend *be, hl_cuda_graph *g, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (c->mode == MODE_CAPTURE) return hl_errorf(err, HL_ERR_BUSY, "cuda graph: launch while capturing");
    if (c->mode == MODE_RESTAGE && g->next != g->n_blocks) {
        c->mode = MODE_NORMAL;
        c->graph = NULL;
        return hl_errorf(err, HL_ERR_INVAL, "cuda graph: restaged %d metadata blocks, the capture had %d", g->next,
                         g->n_blocks);
    }
    if (c->mode == MODE_NORMAL && g->epoch != c->epoch)
        return hl_errorf(err, HL_ERR_INVAL, "cuda graph: stale (scratch memory moved since the capture)");
    c->mode = MODE_NORMAL;
    c->graph = NULL;
    cudaError_t rc = cudaGraphLaunch(g->exec, c->stream);
    if (rc == cudaSuccess) rc = cudaEventRecord(g->done, c->stream);
    return rc == cudaSuccess ? HL_OK : cuda_fail(err, "graph launch", rc);
}

extern "C" void hl_cuda_graph_free(hl_cuda_graph *g) {
    if (!g) return;
    if (g->done) cudaEventSynchronize(g->done);
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->done) cudaEventDestroy(g->done);
    cudaFreeHost(g->host);
    cudaFree(g->dev);
    free(g->blocks);
    free(g);
}

// ---- lifecycle ----

static void cu_free(hl_backend *be) {
    if (!be) return;
    cuda_ctx *c = cuda_ctx_of(be);
    if (c) {
        if (c->stream) cudaStreamSynchronize(c->stream);
        for (int i = 0; i < META_COUNT; i++) {
            cudaFreeHost(c->meta[i].host);
            cudaFree(c->meta[i].dev);
            if (c->meta[i].done) cudaEventDestroy(c->meta[i].done);
        }
        cudaFree(c->x16);
        cudaFree(c->ws);
        cudaFree(c->deq);
        cudaFree(c->tmp);
        cudaFree(c->stage);
        cudaFree(c->blas_ws);
        if (c->blas) hl_cublas()->destroy(c->blas);
        if (c->t0) cudaEventDestroy(c->t0);
        if (c->t1) cudaEventDestroy(c->t1);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

// ---- optional ops (backend.h) ----

static int cu_mem_info(hl_backend *be, size_t *free_bytes, size_t *total_bytes, hl_error *err) {
    cudaError_t rc = cudaSetDevice(cuda_ctx_of(be)->device);
    if (rc == cudaSuccess) rc = cudaMemGetInfo(free_bytes, total_bytes);
    return rc == cudaSuccess ? HL_OK : cuda_fail(err, "memory info", rc);
}

static hl_backend_graph *cu_graph_end(hl_backend *be, hl_error *err) {
    return (hl_backend_graph *)hl_backend_cuda_graph_end(be, err);
}

static int cu_graph_restage(hl_backend *be, hl_backend_graph *g, hl_error *err) {
    return hl_backend_cuda_graph_restage(be, (hl_cuda_graph *)g, err);
}

static int cu_graph_launch(hl_backend *be, hl_backend_graph *g, hl_error *err) {
    int rc = hl_backend_cuda_graph_launch(be, (hl_cuda_graph *)g, err);
    return rc == HL_OK ? hl_cuda_failed(err) : rc;
}

static void cu_graph_free(hl_backend *be, hl_backend_graph *g) {
    (void)be;
    hl_cuda_graph_free((hl_cuda_graph *)g);
}

static void cu_range_push(hl_backend *be, const char *name) {
    (void)be;
    nvtxRangePushA(name);
}

static void cu_range_pop(hl_backend *be) {
    (void)be;
    nvtxRangePop();
}

static bool cu_attention_fits(hl_backend *be, int head_dim, int group) {
    (void)be;
    return hl_cuda_attn_fits(head_dim, group);
}

// A failure only means no profiler is attached to take the capture: nothing to report.
static void cu_profiler_start(hl_backend *be) {
    (void)be;
    (void)cudaProfilerStart();
}

static void cu_profiler_stop(hl_backend *be) {
    (void)be;
    (void)cudaProfilerStop();
}

// Positional (C++17 has no designated initializers): the order of hl_backend_ops.
static const hl_backend_ops cuda_ops = {
    "cuda", cu_free, cu_alloc, cu_release, cu_upload, cu_download, cu_supports, cu_upload_weight,
    cu_release_weight, cu_embed, cu_matmul, cu_rmsnorm, cu_rope_kv, cu_attention, cu_swiglu, cu_add,
    cu_get_rows, cu_add_rmsnorm, cu_sync,
    cu_mem_info, hl_backend_cuda_synth_weight, hl_backend_cuda_graph_begin, cu_graph_end, cu_graph_restage,
    cu_graph_launch, cu_graph_free, cu_topk, cu_range_push, cu_range_pop,
    cu_profiler_start, cu_profiler_stop, cu_attention_fits,
};

static int ctx_init(cuda_ctx *c, int device, hl_error *err) {
    cudaDeviceProp prop;
    cudaError_t rc = cudaGetDeviceProperties(&prop, device);
    if (rc != cudaSuccess) return cuda_fail(err, "device properties", rc);
    if (prop.major < 8)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "cuda: %s has compute capability %d.%d; halyard needs 8.0+",
                         prop.name, prop.major, prop.minor);
    c->device = device;
    c->n_sms = prop.multiProcessorCount;
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    if ((rc = cudaSetDevice(device)) != cudaSuccess) return cuda_fail(err, "set device", rc);
    if ((rc = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return cuda_fail(err, "create stream", rc);
    const hl_cublas_api *blas = hl_cublas_load(err);
    if (!blas) return HL_ERR_DEVICE;
    if (blas->create(&c->blas) != CUBLAS_STATUS_SUCCESS)
        return hl_errorf(err, HL_ERR_DEVICE, "cuda: cublasCreate failed");
    if ((rc = cudaMalloc(&c->blas_ws, BLAS_WS_BYTES)) != cudaSuccess) return cuda_fail(err, "cuBLAS workspace", rc);
    if (blas->set_stream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS ||
        blas->set_workspace(c->blas, c->blas_ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS)
        return hl_errorf(err, HL_ERR_DEVICE, "cuda: cuBLAS stream/workspace setup failed");
    for (int i = 0; i < META_COUNT; i++) {
        if ((rc = cudaEventCreateWithFlags(&c->meta[i].done, cudaEventDisableTiming)) != cudaSuccess)
            return cuda_fail(err, "create event", rc);
    }
    if ((rc = cudaEventCreate(&c->t0)) != cudaSuccess || (rc = cudaEventCreate(&c->t1)) != cudaSuccess)
        return cuda_fail(err, "create event", rc);
    if (hl_cuda_matmul_init() != HL_OK) return hl_errorf(err, HL_ERR_DEVICE, "cuda: matmul shared memory setup failed");
    const char *env = getenv("HL_CUDA_CUBLAS_MIN_TOKENS");
    c->cublas_min_tokens = env && atoi(env) > 0 ? atoi(env) : 128;
    return HL_OK;
}

extern "C" hl_backend *hl_backend_cuda_create(int device, hl_error *err) {
    hl_error probe = {0};
    const int n = hl_cuda_device_count(&probe);
    if (n <= 0) {
        hl_errorf(err, HL_ERR_DEVICE, "cuda: no usable device (%s)", probe.msg[0] ? probe.msg : "none found");
        return NULL;
    }
    if (device < 0 || device >= n) {
        hl_errorf(err, HL_ERR_INVAL, "cuda: device %d does not exist (%d visible)", device, n);
        return NULL;
    }
    hl_backend *be = (hl_backend *)hl_xcalloc(1, sizeof *be);
    cuda_ctx *c = (cuda_ctx *)hl_xcalloc(1, sizeof *c);
    be->ops = &cuda_ops;
    be->ctx = c;
    if (ctx_init(c, device, err) != HL_OK) {
        cu_free(be);
        return NULL;
    }
    return be;
}
