// nocuda: the cuda_info functions for a build without CUDA (CUDA=0 or no nvcc), so
// callers probe for a GPU the same way in every build.
#include "kernels/cuda/cuda_info.h"

bool hl_cuda_built(void) { return false; }

int hl_cuda_device_count(hl_error *err) {
    hl_errorf(err, HL_ERR_UNSUPPORTED, "this build has no CUDA support (rebuild with nvcc and CUDA=1)");
    return 0;
}

int hl_cuda_device_get_info(int device, hl_cuda_device_info *info, hl_error *err) {
    (void)device;
    (void)info;
    return hl_errorf(err, HL_ERR_UNSUPPORTED, "this build has no CUDA support");
}

#include "kernels/backend.h"

hl_backend *hl_backend_cuda_create(int device, hl_error *err) {
    (void)device;
    hl_errorf(err, HL_ERR_UNSUPPORTED, "this build has no CUDA support (rebuild with nvcc and CUDA=1)");
    return NULL;
}
