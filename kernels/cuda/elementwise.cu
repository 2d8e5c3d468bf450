// elementwise: activation conversion for the matmul, rmsnorm (+ residual add), silu·mul, add and
// row gather.
// All F32 in and out (backend.h), rows `ld` floats apart; memory-bound, one pass each.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

// dst (tp, kp) = src (t, k), zero outside; half or bf16.
__global__ void act_to_half_kernel(void *dst, int64_t kp, int64_t tp, const float *src, int64_t ldx,
                                   int64_t t, int64_t k, int to_bf16) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= tp * kp) return;
    const int64_t i = idx / kp, j = idx % kp;
    const float v = (i < t && j < k) ? src[i * ldx + j] : 0.0f;
    if (to_bf16) ((__nv_bfloat16 *)dst)[idx] = __float2bfloat16_rn(v);
    else ((half *)dst)[idx] = __float2half_rn(fminf(fmaxf(v, -65504.0f), 65504.0f)); // saturate, not inf
}

extern "C" void hl_cuda_act_to_half(hl_cuda_stream s, void *dst, int64_t kp, int64_t tp, const float *src,
                                    int64_t ldx, int64_t t, int64_t k, int to_bf16) {
    act_to_half_kernel<<<(unsigned)hl_div_up(tp * kp, 256), 256, 0, s>>>(dst, kp, tp, src, ldx, t, k, to_bf16);
    HL_LAUNCH_CHECK();
}

// out = rmsnorm(x) * w, with the residual add first: x += y (y may be NULL: x is then only
// read); one block of 256 threads per row. Each thread re-reads only the elements it wrote,
// so no barrier is needed between the add and the sum of squares.
__global__ void add_rmsnorm_kernel(float *out, int64_t ldo, float *x, int64_t ldx, const float *y, int64_t ldy,
                                   const float *w, int64_t n, float eps) {
    __shared__ float partial[8];
    float *xr = x + blockIdx.x * ldx;
    const float *yr = y ? y + blockIdx.x * ldy : NULL;
    float ss = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float v = yr ? xr[j] + yr[j] : xr[j];
        if (yr) xr[j] = v;
        ss += v * v;
    }
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
    __syncthreads();
    float total = 0;
    for (int i = 0; i < (int)blockDim.x / 32; i++) total += partial[i];
    const float inv = rsqrtf(total / (float)n + eps);
    float *o = out + blockIdx.x * ldo;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) o[j] = xr[j] * inv * w[j];
}

extern "C" void hl_cuda_rmsnorm(hl_cuda_stream s, float *out, int64_t ldo, const float *x, int64_t ldx,
                                const float *w, int64_t rows, int64_t n, float eps) {
    if (rows <= 0) return;
    add_rmsnorm_kernel<<<(unsigned)rows, 256, 0, s>>>(out, ldo, (float *)x, ldx, NULL, 0, w, n, eps);
    HL_LAUNCH_CHECK();
}

extern "C" void hl_cuda_add_rmsnorm(hl_cuda_stream s, float *out, int64_t ldo, float *x, int64_t ldx,
                                    const float *y, int64_t ldy, const float *w, int64_t rows, int64_t n,
                                    float eps) {
    if (rows <= 0) return;
    add_rmsnorm_kernel<<<(unsigned)rows, 256, 0, s>>>(out, ldo, x, ldx, y, ldy, w, n, eps);
    HL_LAUNCH_CHECK();
}

__global__ void swiglu_kernel(float *out, int64_t ldo, const float *g, int64_t ldg, const float *u,
                              int64_t ldu, int64_t rows, int64_t n) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * n) return;
    const int64_t i = idx / n, j = idx % n;
    const float x = g[i * ldg + j];
    out[i * ldo + j] = x / (1.0f + __expf(-x)) * u[i * ldu + j];
}

extern "C" void hl_cuda_swiglu(hl_cuda_stream s, float *out, int64_t ldo, const float *g, int64_t ldg,
                               const float *u, int64_t ldu, int64_t rows, int64_t n) {
    if (rows * n <= 0) return;
    swiglu_kernel<<<(unsigned)hl_div_up(rows * n, 256), 256, 0, s>>>(out, ldo, g, ldg, u, ldu, rows, n);
    HL_LAUNCH_CHECK();
}

__global__ void add_kernel(float *out, int64_t ldo, const float *a, int64_t lda, const float *b,
                           int64_t ldb, int64_t rows, int64_t n) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * n) return;
    const int64_t i = idx / n, j = idx % n;
    out[i * ldo + j] = a[i * lda + j] + b[i * ldb + j];
}

extern "C" void hl_cuda_add(hl_cuda_stream s, float *out, int64_t ldo, const float *a, int64_t lda,
                            const float *b, int64_t ldb, int64_t rows, int64_t n) {
    if (rows * n <= 0) return;
    add_kernel<<<(unsigned)hl_div_up(rows * n, 256), 256, 0, s>>>(out, ldo, a, lda, b, ldb, rows, n);
    HL_LAUNCH_CHECK();
}

// out may alias x only when rows[i] == i for every row written before it is read; the
// interface (backend.h) uses memmove semantics on the CPU, so the backend gives out its own
// buffer when they alias (see backend_cuda.cu).
__global__ void get_rows_kernel(float *out, int64_t ldo, const float *x, int64_t ldx, const int32_t *rows,
                                int n, int64_t ncols) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * ncols) return;
    const int64_t i = idx / ncols, j = idx % ncols;
    out[i * ldo + j] = x[(int64_t)rows[i] * ldx + j];
}

extern "C" void hl_cuda_get_rows(hl_cuda_stream s, float *out, int64_t ldo, const float *x, int64_t ldx,
                                 const int32_t *rows, int n, int64_t ncols) {
    if (n <= 0) return;
    get_rows_kernel<<<(unsigned)hl_div_up((int64_t)n * ncols, 256), 256, 0, s>>>(out, ldo, x, ldx, rows, n,
                                                                               ncols);
    HL_LAUNCH_CHECK();
}
