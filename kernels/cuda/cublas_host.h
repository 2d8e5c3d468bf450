// cublas_host: cuBLAS, loaded with dlopen when the first CUDA backend starts instead of being
// linked. Linking libcublas maps and relocates about 215 MB at every process start — CPU-only
// runs of a CUDA build included (measured: a program that only links it peaks at 217 MB RSS) —
// so the CUDA backend reaches the five cuBLAS functions it uses through this table.
//
//   hl_error err;
//   const hl_cublas_api *b = hl_cublas_load(&err);   // once per process; thread-safe
//   if (!b) return err.code;
//   b->create(&handle); b->gemm_ex(handle, ...);
#pragma once

#include <cublas_api.h>

#include "common/hl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hl_cublas_api {
    cublasStatus_t (*create)(cublasHandle_t *handle);
    cublasStatus_t (*destroy)(cublasHandle_t handle);
    cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream);
    cublasStatus_t (*set_workspace)(cublasHandle_t handle, void *workspace, size_t n_bytes);
    cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                              int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                              const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                              cudaDataType Ctype, int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo);
    const char *path; // the library that was loaded
} hl_cublas_api;

// Loads libcublas (the major version halyard was built against: libcublas.so.N by the loader's
// search path, then the CUDA toolkit's lib64 it was built with, then libcublas.so) and resolves
// the functions, once per process. The table is never freed. NULL + HL_ERR_DEVICE naming what
// was tried when no library or symbol is found; a later call retries nothing and fails the same.
const hl_cublas_api *hl_cublas_load(hl_error *err);

// The loaded table; only after hl_cublas_load succeeded (HL_ASSERT otherwise).
const hl_cublas_api *hl_cublas(void);

#ifdef __cplusplus
}
#endif
