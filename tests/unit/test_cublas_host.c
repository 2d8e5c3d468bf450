// Unit tests for kernels/cuda/cublas_host: in a CUDA build, cuBLAS is loaded on demand (not
// linked), every function the backend calls resolves, and loading twice gives the same table.
// The process must not have libcublas mapped before the first load (that is the point of the
// module: /proc/self/maps is checked). Needs no GPU: only the library is loaded.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HL_CUDA
#include "kernels/cuda/cublas_host.h"

// True when a mapping of libcublas is listed in /proc/self/maps.
static bool cublas_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, "libcublas.so") != NULL;
    fclose(f);
    return found;
}

START_TEST(test_loads_on_demand) {
    // Other suites of this runner may already have started a CUDA backend (which loads it);
    // the runner forks per test by default, so this process starts clean unless CK_FORK=no.
    const bool before = cublas_mapped();
    hl_error err = {0};
    const hl_cublas_api *a = hl_cublas_load(&err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    ck_assert_ptr_nonnull(a->create);
    ck_assert_ptr_nonnull(a->destroy);
    ck_assert_ptr_nonnull(a->set_stream);
    ck_assert_ptr_nonnull(a->set_workspace);
    ck_assert_ptr_nonnull(a->gemm_ex);
    ck_assert_ptr_nonnull(a->path);
    ck_assert(cublas_mapped());
    ck_assert_ptr_eq(hl_cublas_load(&err), a);
    ck_assert_ptr_eq(hl_cublas(), a);
    if (getenv("CK_FORK") == NULL || strcmp(getenv("CK_FORK"), "no") != 0)
        ck_assert_msg(!before, "libcublas was mapped before hl_cublas_load: it is linked, not loaded");
}
END_TEST
#endif

Suite *cublas_host_suite(void) {
    Suite *s = suite_create("cublas_host");
    TCase *tc = tcase_create("load");
#ifdef HL_CUDA
    tcase_add_test(tc, test_loads_on_demand);
#endif
    suite_add_tcase(s, tc);
    return s;
}
