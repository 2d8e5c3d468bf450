// cuda_info: device queries through the CUDA runtime (see cuda_info.h).
#include "kernels/cuda/cuda_info.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" bool hl_cuda_built(void) { return true; }

extern "C" int hl_cuda_device_count(hl_error *err) {
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        hl_errorf(err, HL_ERR_DEVICE, "cudaGetDeviceCount: %s", cudaGetErrorString(rc));
        cudaGetLastError(); // clear the error so later probes start clean
        return 0;
    }
    return n;
}

extern "C" int hl_cuda_device_get_info(int device, hl_cuda_device_info *info, hl_error *err) {
    cudaDeviceProp prop;
    cudaError_t rc = cudaGetDeviceProperties(&prop, device);
    if (rc != cudaSuccess)
        return hl_errorf(err, HL_ERR_DEVICE, "device %d: %s", device, cudaGetErrorString(rc));
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->major = prop.major;
    info->minor = prop.minor;
    info->n_sms = prop.multiProcessorCount;
    info->total_bytes = prop.totalGlobalMem;
    info->free_bytes = 0;
    if (cudaSetDevice(device) == cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) info->free_bytes = free_b;
    }
    return HL_OK;
}
