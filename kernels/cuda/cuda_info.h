// cuda_info: which CUDA devices this process can see, for `halyard info --devices`,
// memory planning and for tests that must skip themselves without a GPU.
//
// Built from cuda_info.cu when the Makefile finds nvcc (CUDA=1); otherwise nocuda.c
// provides the same functions and reports that the build has no CUDA.
//
//   int n = hl_cuda_device_count(NULL);   // 0 when no GPU or no CUDA build
#pragma once

#include "common/hl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hl_cuda_device_info {
    char name[256];
    int major, minor;       // compute capability
    int n_sms;
    size_t total_bytes;     // device memory
    size_t free_bytes;
} hl_cuda_device_info;

// True when this binary was built with CUDA support (whether or not a GPU is present).
bool hl_cuda_built(void);

// Number of visible devices; 0 when none or when the build has no CUDA (err then says why,
// which is not a failure for callers that only probe).
int hl_cuda_device_count(hl_error *err);

// Fills *info for device `device`. HL_ERR_DEVICE / HL_ERR_UNSUPPORTED with a message on failure.
int hl_cuda_device_get_info(int device, hl_cuda_device_info *info, hl_error *err);

#ifdef __cplusplus
}
#endif
