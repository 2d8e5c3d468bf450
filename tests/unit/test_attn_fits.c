// Unit tests for the attention_fits capability (kernels/backend.h): the CPU backend takes every
// even head size up to its scratch, and the CUDA kernels' geometry table (hl_cuda_attn_fits, a
// host function: no GPU needed) takes exactly the instantiated head sizes 32/64/128 with up to
// 8 query heads per KV head, so a model outside it is refused when its forward context is made.
#include <check.h>

#include "kernels/backend.h"
#ifdef HL_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

START_TEST(test_cpu_fits) {
    hl_error err = {0};
    hl_backend *be = hl_backend_cpu_create(1, &err);
    ck_assert_msg(be != NULL, "%s", err.msg);
    ck_assert(hl_backend_attention_fits(be, 64, 3));   // SmolLM2
    ck_assert(hl_backend_attention_fits(be, 128, 4));  // Llama 3 8B
    ck_assert(hl_backend_attention_fits(be, 96, 1));
    ck_assert(!hl_backend_attention_fits(be, 63, 1));  // rope needs pairs
    ck_assert(!hl_backend_attention_fits(be, 0, 1));
    ck_assert(!hl_backend_attention_fits(be, 4096, 1));
    ck_assert(!hl_backend_attention_fits(be, 64, 0));
    hl_backend_free(be);
}
END_TEST

#ifdef HL_CUDA
START_TEST(test_cuda_table) {
    const int dims[] = {16, 32, 48, 64, 80, 96, 128, 192, 256};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        for (int g = 0; g <= 10; g++) {
            const bool want = (dims[i] == 32 || dims[i] == 64 || dims[i] == 128) && g >= 1 && g <= 8;
            ck_assert_msg(hl_cuda_attn_fits(dims[i], g) == want, "head_dim %d group %d", dims[i], g);
        }
    }
}
END_TEST
#endif

Suite *attn_fits_suite(void) {
    Suite *s = suite_create("attn_fits");
    TCase *tc = tcase_create("fits");
    tcase_add_test(tc, test_cpu_fits);
#ifdef HL_CUDA
    tcase_add_test(tc, test_cuda_table);
#endif
    suite_add_tcase(s, tc);
    return s;
}
