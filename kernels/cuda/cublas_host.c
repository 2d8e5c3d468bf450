// cublas_host: cuBLAS through dlopen (see cublas_host.h).
#include "kernels/cuda/cublas_host.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#define STR2(x) #x
#define STR(x) STR2(x)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static hl_cublas_api api;
static bool loaded;
static char failure[400];

static void *open_lib(char *tried, size_t cap) {
    const char *names[] = {
        "libcublas.so." STR(CUBLAS_VER_MAJOR),
#ifdef HL_CUDA_LIBDIR
        HL_CUDA_LIBDIR "/libcublas.so." STR(CUBLAS_VER_MAJOR),
#endif
        "libcublas.so",
    };
    size_t used = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            api.path = names[i];
            return h;
        }
        int n = snprintf(tried + used, cap - used, "%s%s", used ? ", " : "", names[i]);
        if (n > 0 && (size_t)n < cap - used) used += (size_t)n;
    }
    return NULL;
}

// Resolves name into *slot; false (and the name in failure) when the library lacks it.
static bool resolve(void *h, void **slot, const char *name) {
    *slot = dlsym(h, name);
    if (*slot) return true;
    snprintf(failure, sizeof failure, "%s has no symbol %s", api.path, name);
    return false;
}

static void load_once(void) {
    char tried[300] = "";
    void *h = open_lib(tried, sizeof tried);
    if (!h) {
        snprintf(failure, sizeof failure, "cannot load cuBLAS (tried %s): %s", tried, dlerror());
        return;
    }
    // The v2 names are what cublas_v2.h's macros map cublasCreate & co. to.
    loaded = resolve(h, (void **)&api.create, "cublasCreate_v2") &&
             resolve(h, (void **)&api.destroy, "cublasDestroy_v2") &&
             resolve(h, (void **)&api.set_stream, "cublasSetStream_v2") &&
             resolve(h, (void **)&api.set_workspace, "cublasSetWorkspace_v2") &&
             resolve(h, (void **)&api.gemm_ex, "cublasGemmEx");
}

const hl_cublas_api *hl_cublas_load(hl_error *err) {
    pthread_once(&once, load_once);
    if (loaded) return &api;
    hl_errorf(err, HL_ERR_DEVICE, "cuda: %s", failure);
    return NULL;
}

const hl_cublas_api *hl_cublas(void) {
    HL_ASSERT(loaded);
    return &api;
}
