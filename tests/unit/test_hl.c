// Unit tests for common/hl: errors, half-precision conversion, checked arithmetic.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/hl.h"

START_TEST(test_errorf_fills_and_returns_code) {
    hl_error err = {0};
    int rc = hl_errorf(&err, HL_ERR_FORMAT, "bad %s at %d", "thing", 7);
    ck_assert_int_eq(rc, HL_ERR_FORMAT);
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    ck_assert_str_eq(err.msg, "bad thing at 7");
    ck_assert_int_eq(hl_errorf(NULL, HL_ERR_IO, "ignored"), HL_ERR_IO);
    hl_error_wrap(&err, "loading %s", "m.gguf");
    ck_assert_str_eq(err.msg, "loading m.gguf: bad thing at 7");
}
END_TEST

// Every one of the 65536 half values converts to float and back unchanged (NaNs stay NaN).
START_TEST(test_f16_round_trip_all_values) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = hl_f16_to_f32((uint16_t)h);
        uint16_t back = hl_f32_to_f16(f);
        if (isnan(f)) {
            ck_assert(isnan(hl_f16_to_f32(back)));
            continue;
        }
        ck_assert_msg(back == h, "0x%04x -> %g -> 0x%04x", h, (double)f, back);
    }
}
END_TEST

START_TEST(test_f16_rounding_and_limits) {
    ck_assert_float_eq(hl_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(hl_f16_to_f32(0x0001), 5.9604644775390625e-08f); // smallest subnormal
    ck_assert_uint_eq(hl_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(hl_f32_to_f16(70000.0f), 0x7c00);                 // overflow -> inf
    ck_assert_uint_eq(hl_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);       // tie -> even
    ck_assert_uint_eq(hl_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);       // tie -> even (up)
    ck_assert_uint_eq(hl_f32_to_f16(-0.0f), 0x8000);
    // Random floats: the conversion is the nearest half (checked against neighbours).
    hl_rng rng = {12345};
    for (int i = 0; i < 100000; i++) {
        float f = (hl_rng_uniform(&rng) - 0.5f) * 1000.0f;
        uint16_t h = hl_f32_to_f16(f);
        float err0 = fabsf(hl_f16_to_f32(h) - f);
        ck_assert(err0 <= fabsf(hl_f16_to_f32((uint16_t)(h + 1)) - f));
        ck_assert(err0 <= fabsf(hl_f16_to_f32((uint16_t)(h - 1)) - f));
    }
}
END_TEST

START_TEST(test_bf16) {
    ck_assert_float_eq(hl_bf16_to_f32(hl_f32_to_bf16(1.5f)), 1.5f);
    ck_assert_uint_eq(hl_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);        // tie -> even
    ck_assert(isnan(hl_bf16_to_f32(hl_f32_to_bf16(NAN))));
}
END_TEST

START_TEST(test_checked_arithmetic) {
    size_t out;
    ck_assert(hl_mul_ok(1u << 20, 1u << 20, &out));
    ck_assert(!hl_mul_ok(SIZE_MAX / 2, 3, &out));
    ck_assert(!hl_add_ok(SIZE_MAX, 1, &out));
}
END_TEST

START_TEST(test_read_file_limits) {
    char path[] = "/tmp/hl_test_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("hello", f);
    fclose(f);
    hl_error err = {0};
    size_t n = 0;
    char *s = hl_read_file(path, 100, &n, &err);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "hello");
    ck_assert_uint_eq(n, 5);
    free(s);
    ck_assert_ptr_null(hl_read_file(path, 4, &n, &err));
    ck_assert_int_eq(err.code, HL_ERR_INVAL);
    unlink(path);
    ck_assert_ptr_null(hl_read_file(path, 100, &n, &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
}
END_TEST

Suite *hl_suite(void) {
    Suite *s = suite_create("hl");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_errorf_fills_and_returns_code);
    tcase_add_test(tc, test_f16_round_trip_all_values);
    tcase_add_test(tc, test_f16_rounding_and_limits);
    tcase_add_test(tc, test_bf16);
    tcase_add_test(tc, test_checked_arithmetic);
    tcase_add_test(tc, test_read_file_limits);
    suite_add_tcase(s, tc);
    return s;
}
