// backend_extra: what the CUDA backend offers beyond the op vtable (backend_cuda.h):
// synthetic weights generated on the device, the repack read-back for tests, and the
// timing / bandwidth / cuBLAS-baseline helpers of the kernel benchmark.
#include <stdlib.h>

#include "kernels/cuda/backend_cuda_impl.cuh"

static int cuda_fail(hl_error *err, const char *what, cudaError_t rc) {
    return hl_errorf(err, HL_ERR_DEVICE, "cuda: %s: %s", what, cudaGetErrorString(rc));
}

static uint64_t fnv1a(const char *name) { // engine/synth.c's name hash
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return h;
}

// Values of rows [row0, row0 + n) of a weight made of parts (each part's own name and element
// numbering) into vals, row by row.
static void synth_fill_rows(cuda_ctx *c, float *vals, int64_t ne0, int64_t row0, int64_t n, uint64_t seed,
                            const hl_synth_part *parts, int n_parts) {
    int64_t first = 0; // first row of part p
    for (int p = 0; p < n_parts; first += parts[p].n_rows, p++) {
        const int64_t lo = row0 > first ? row0 : first;
        const int64_t end = first + parts[p].n_rows, hi = row0 + n < end ? row0 + n : end;
        if (lo >= hi) continue;
        hl_cuda_synth_fill(c->stream, vals + (lo - row0) * ne0, (hi - lo) * ne0, seed, fnv1a(parts[p].name),
                           (uint64_t)((lo - first) * ne0), parts[p].std);
    }
}

static int check_parts(int type, const int64_t ne[2], const hl_synth_part *parts, int n_parts, hl_error *err) {
    if (type != HL_DTYPE_F32 && type != HL_DTYPE_F16 && type != HL_DTYPE_Q4_0 && type != HL_DTYPE_Q8_0)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "cuda synth: type %s is not generated on the device",
                         hl_quant_name(type));
    if (ne[0] % 32 != 0 && type != HL_DTYPE_F32 && type != HL_DTYPE_F16)
        return hl_errorf(err, HL_ERR_INVAL, "cuda synth: row length %lld is not a multiple of 32", (long long)ne[0]);
    int64_t rows = 0;
    for (int p = 0; p < n_parts; p++) {
        if (!parts[p].name || parts[p].n_rows <= 0)
            return hl_errorf(err, HL_ERR_INVAL, "cuda synth: part %d has no name or no rows", p);
        rows += parts[p].n_rows;
    }
    if (n_parts < 1 || rows != ne[1])
        return hl_errorf(err, HL_ERR_INVAL, "cuda synth: %d parts of %lld rows for a weight of %lld", n_parts,
                         (long long)rows, (long long)ne[1]);
    return HL_OK;
}

extern "C" int hl_backend_cuda_synth_weight(hl_backend *be, hl_tensor *out, int type, const int64_t ne[2],
                                            uint64_t seed, const hl_synth_part *parts, int n_parts,
                                            hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    int rc = check_parts(type, ne, parts, n_parts, err);
    if (rc == HL_OK) rc = hl_cuda_weight_alloc(c, out, type, ne, err);
    if (rc != HL_OK) return rc;
    size_t rb;
    hl_quant_row_bytes(type, ne[0], &rb, NULL);
    // one chunk of rows (a multiple of 64, as the repack wants, whatever the part boundaries): f32
    // values in the first half of the stage buffer, GGUF bytes after them
    int64_t chunk = (int64_t)((32u << 20) / ((size_t)ne[0] * 4)) / 64 * 64;
    if (chunk < 64) chunk = 64;
    const size_t f32_bytes = (size_t)chunk * (size_t)ne[0] * 4;
    uint8_t *stage = (uint8_t *)hl_cuda_scratch(c, &c->stage, &c->stage_bytes, f32_bytes + (size_t)chunk * rb);
    for (int64_t row0 = 0; row0 < ne[1]; row0 += chunk) {
        const int64_t n = ne[1] - row0 < chunk ? ne[1] - row0 : chunk, count = n * ne[0];
        float *vals = (float *)stage;
        uint8_t *bytes = stage + f32_bytes;
        synth_fill_rows(c, vals, ne[0], row0, n, seed, parts, n_parts);
        switch (type) {
        case HL_DTYPE_F32: bytes = (uint8_t *)vals; break;
        case HL_DTYPE_F16: hl_cuda_f32_to_f16(c->stream, vals, bytes, count); break;
        default: hl_cuda_quant_blocks(c->stream, type == HL_DTYPE_Q4_0 ? 4 : 8, vals, bytes, count / 32); break;
        }
        hl_cuda_weight_fill(c, out, bytes, rb, row0, n);
    }
    cudaError_t crc = cudaStreamSynchronize(c->stream);
    if (crc != cudaSuccess) {
        cudaFree(out->data);
        memset(out, 0, sizeof *out);
        return cuda_fail(err, "synthetic weight", crc);
    }
    return HL_OK;
}

extern "C" int hl_backend_cuda_unpack(hl_backend *be, const hl_tensor *w, int8_t *codes, uint32_t *params,
                                      int *group_size, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (w->layout != HL_CUDA_LAYOUT_I4 && w->layout != HL_CUDA_LAYOUT_I8)
        return hl_errorf(err, HL_ERR_INVAL, "cuda unpack: weight is not in a repacked layout");
    const hl_cuda_qweight q = hl_cuda_weight_desc(w);
    const size_t n_codes = (size_t)(q.n * q.k), n_params = (size_t)(q.n * (q.k / q.gs));
    void *d_codes = NULL, *d_params = NULL;
    cudaError_t rc = cudaMalloc(&d_codes, n_codes);
    if (rc == cudaSuccess) rc = cudaMalloc(&d_params, n_params * 4);
    if (rc == cudaSuccess) {
        hl_cuda_unpack(c->stream, &q, (int8_t *)d_codes, (uint32_t *)d_params);
        rc = cudaMemcpyAsync(codes, d_codes, n_codes, cudaMemcpyDeviceToHost, c->stream);
    }
    if (rc == cudaSuccess) rc = cudaMemcpyAsync(params, d_params, n_params * 4, cudaMemcpyDeviceToHost, c->stream);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(c->stream);
    cudaFree(d_codes);
    cudaFree(d_params);
    *group_size = q.gs;
    return rc == cudaSuccess ? HL_OK : cuda_fail(err, "unpack", rc);
}

extern "C" void hl_backend_cuda_set_cublas_min_tokens(hl_backend *be, int n) {
    cuda_ctx_of(be)->cublas_min_tokens = n > 0 ? n : 1;
}

extern "C" void hl_backend_cuda_timer_start(hl_backend *be) {
    cuda_ctx *c = cuda_ctx_of(be);
    HL_CUDA_CHECK(cudaEventRecord(c->t0, c->stream));
}

extern "C" float hl_backend_cuda_timer_stop(hl_backend *be) {
    cuda_ctx *c = cuda_ctx_of(be);
    float ms = 0;
    HL_CUDA_CHECK(cudaEventRecord(c->t1, c->stream));
    HL_CUDA_CHECK(cudaEventSynchronize(c->t1));
    HL_CUDA_CHECK(cudaEventElapsedTime(&ms, c->t0, c->t1));
    return ms;
}

extern "C" double hl_backend_cuda_copy_gbps(hl_backend *be, size_t n_bytes, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    void *a = NULL, *b = NULL;
    cudaError_t rc = cudaMalloc(&a, n_bytes);
    if (rc == cudaSuccess) rc = cudaMalloc(&b, n_bytes);
    if (rc != cudaSuccess) {
        cudaFree(a);
        cuda_fail(err, "copy bandwidth buffers", rc);
        return 0;
    }
    cudaMemsetAsync(a, 1, n_bytes, c->stream);
    cudaMemcpyAsync(b, a, n_bytes, cudaMemcpyDeviceToDevice, c->stream); // warm-up
    const int iters = 10;
    hl_backend_cuda_timer_start(be);
    for (int i = 0; i < iters; i++) cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, n_bytes, cudaMemcpyDeviceToDevice, c->stream);
    const float ms = hl_backend_cuda_timer_stop(be);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)n_bytes * iters / (ms * 1e-3) / 1e9;
}

extern "C" int hl_backend_cuda_gemm_f16(hl_backend *be, float *out, const void *w16, const void *x16, int64_t n,
                                        int64_t k, int64_t t, hl_error *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = hl_cublas()->gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)t, (int)k, &one, w16, CUDA_R_16F,
                                     (int)k, x16, CUDA_R_16F, (int)k, &zero, out, CUDA_R_32F, (int)n,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? HL_OK : hl_errorf(err, HL_ERR_DEVICE, "cublasGemmEx: status %d", (int)st);
}

extern "C" int hl_backend_cuda_n_sms(hl_backend *be) { return cuda_ctx_of(be)->n_sms; }

extern "C" const char *hl_backend_cuda_device_name(hl_backend *be) { return cuda_ctx_of(be)->name; }
