// Unit tests for hl_engine_parse_profile_steps (`--profile-steps`): the accepted forms set the
// engine's capture range, everything else is refused with a message and changes nothing.
#include <check.h>
#include <string.h>

#include "engine/engine.h"

START_TEST(test_ranges) {
    hl_engine_params p = hl_engine_default_params();
    hl_error err = {0};
    ck_assert_int_eq(hl_engine_parse_profile_steps("5-9", &p, &err), HL_OK);
    ck_assert_int_eq(p.profile_first, 5);
    ck_assert_int_eq(p.profile_last, 9);
    ck_assert_int_eq(hl_engine_parse_profile_steps("12", &p, &err), HL_OK);
    ck_assert_int_eq(p.profile_first, 12);
    ck_assert_int_eq(p.profile_last, 12);
    ck_assert_int_eq(hl_engine_parse_profile_steps("1-999999999", &p, &err), HL_OK);
    ck_assert_int_eq(p.profile_last, 999999999);
}
END_TEST

START_TEST(test_refused) {
    const char *bad[] = {"", "0", "0-3", "5-4", "-3", "3-", "a", "3-x", "1-2-3", " 3", "3 ", "1234567890",
                         "1-1234567890", "+3", "3..5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hl_engine_params p = hl_engine_default_params();
        p.profile_first = 7;
        p.profile_last = 8;
        hl_error err = {0};
        ck_assert_msg(hl_engine_parse_profile_steps(bad[i], &p, &err) == HL_ERR_INVAL, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(err.msg, "profile steps") != NULL, "message: %s", err.msg);
        ck_assert_int_eq(p.profile_first, 7);
        ck_assert_int_eq(p.profile_last, 8);
    }
    hl_engine_params p = hl_engine_default_params();
    hl_error err = {0};
    ck_assert_int_eq(hl_engine_parse_profile_steps(NULL, &p, &err), HL_ERR_INVAL);
}
END_TEST

Suite *profile_steps_suite(void) {
    Suite *s = suite_create("profile_steps");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_ranges);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(s, tc);
    return s;
}
