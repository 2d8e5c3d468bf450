// Unit tests for common/stats: percentiles against numpy, mean/sd, goodput, edge cases.
//
// Every expected value below was computed with numpy 2.x in the project's .venv:
//   a = np.arange(1, 101.0); np.percentile(a, [0, 50, 90, 95, 99, 100])
//     -> 1, 50.5, 90.1, 95.05, 99.01, 100
//   a.mean() -> 50.5; a.std(ddof=1) -> 29.011491975882016
//   b = np.array([3.5, 1.0, 7.25, 2.0, 10.0, 4.0, 9.5])
//   np.percentile(b, [50, 90, 95, 99, 33.3]) -> 4.0, 9.7, 9.85, 9.969999999999999, 3.497
//   b.mean() -> 5.321428571428571; b.std(ddof=1) -> 3.6018348498667017
//   np.percentile([5.0, 2.0], [50, 90, 99]) -> 3.5, 4.7, 4.97
#include <check.h>
#include <math.h>

#include "common/stats.h"

#define TOL 1e-9

START_TEST(test_percentile_1_to_100_matches_numpy) {
    double a[100];
    for (int i = 0; i < 100; i++) a[99 - i] = (double)(i + 1); // descending: summarize must sort
    hl_stats_summary s;
    hl_stats_summarize(a, 100, &s);
    ck_assert_uint_eq(s.n, 100);
    ck_assert_double_eq_tol(s.p50, 50.5, TOL);
    ck_assert_double_eq_tol(s.p90, 90.1, TOL);
    ck_assert_double_eq_tol(s.p95, 95.05, TOL);
    ck_assert_double_eq_tol(s.p99, 99.01, TOL);
    ck_assert_double_eq_tol(s.mean, 50.5, TOL);
    ck_assert_double_eq_tol(s.sd, 29.011491975882016, TOL);
    ck_assert_double_eq(s.min, 1.0);
    ck_assert_double_eq(s.max, 100.0);
    ck_assert_double_eq(a[0], 100.0); // input untouched
    double sorted[100];
    ck_assert_uint_eq(hl_stats_sorted_copy(a, 100, sorted), 100);
    ck_assert_double_eq_tol(hl_stats_percentile_sorted(sorted, 100, 0), 1.0, TOL);
    ck_assert_double_eq_tol(hl_stats_percentile_sorted(sorted, 100, 100), 100.0, TOL);
    ck_assert_double_eq_tol(hl_stats_percentile_sorted(sorted, 100, 150), 100.0, TOL); // clamped
    ck_assert_double_eq_tol(hl_stats_percentile_sorted(sorted, 100, -5), 1.0, TOL);
}
END_TEST

START_TEST(test_percentile_unsorted_fractions_match_numpy) {
    const double b[] = {3.5, 1.0, 7.25, 2.0, 10.0, 4.0, 9.5};
    hl_stats_summary s;
    hl_stats_summarize(b, 7, &s);
    ck_assert_double_eq_tol(s.p50, 4.0, TOL);
    ck_assert_double_eq_tol(s.p90, 9.7, TOL);
    ck_assert_double_eq_tol(s.p95, 9.85, TOL);
    ck_assert_double_eq_tol(s.p99, 9.969999999999999, TOL);
    ck_assert_double_eq_tol(s.mean, 5.321428571428571, TOL);
    ck_assert_double_eq_tol(s.sd, 3.6018348498667017, TOL);
    double sorted[7];
    hl_stats_sorted_copy(b, 7, sorted);
    ck_assert_double_eq_tol(hl_stats_percentile_sorted(sorted, 7, 33.3), 3.497, TOL);

    const double c[] = {5.0, 2.0};
    hl_stats_summarize(c, 2, &s);
    ck_assert_double_eq_tol(s.p50, 3.5, TOL);
    ck_assert_double_eq_tol(s.p90, 4.7, TOL);
    ck_assert_double_eq_tol(s.p99, 4.97, TOL);
}
END_TEST

START_TEST(test_empty_and_single) {
    hl_stats_summary s;
    hl_stats_summarize(NULL, 0, &s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(isnan(s.mean) && isnan(s.sd) && isnan(s.p50) && isnan(s.p99) && isnan(s.min));
    ck_assert(isnan(hl_stats_percentile_sorted(NULL, 0, 50)));

    const double one[] = {42.5};
    hl_stats_summarize(one, 1, &s);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_double_eq(s.p50, 42.5);
    ck_assert_double_eq(s.p99, 42.5);
    ck_assert_double_eq(s.mean, 42.5);
    ck_assert_double_eq(s.sd, 0.0);
}
END_TEST

// NaN means "not measured": skipped by every statistic, and all-NaN is like empty.
START_TEST(test_nan_values_are_skipped) {
    const double x[] = {NAN, 4.0, NAN, 2.0, 6.0};
    hl_stats_summary s;
    hl_stats_summarize(x, 5, &s);
    ck_assert_uint_eq(s.n, 3);
    ck_assert_double_eq_tol(s.mean, 4.0, TOL);
    ck_assert_double_eq_tol(s.p50, 4.0, TOL);
    ck_assert_double_eq_tol(s.sd, 2.0, TOL);
    const double all_nan[] = {NAN, NAN};
    hl_stats_summarize(all_nan, 2, &s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(isnan(s.p50));
}
END_TEST

START_TEST(test_goodput_counts_both_slos) {
    //                      ok     ttft>  tpot>  both>  nan-tpot  nan-ttft  edge
    const double ttft[] = {100.0, 250.0, 150.0, 300.0, 50.0, NAN, 200.0};
    const double tpot[] = {20.0, 10.0, 60.0, 70.0, NAN, 5.0, 50.0};
    // Requests 0, 4 and 6 (bounds are inclusive).
    ck_assert_uint_eq(hl_stats_goodput(ttft, tpot, 7, 200.0, 50.0), 3);
    ck_assert_uint_eq(hl_stats_goodput(ttft, tpot, 7, 200.0, 0), 4);    // + 2 (only TTFT bound)
    ck_assert_uint_eq(hl_stats_goodput(ttft, tpot, 7, 0, 50.0), 5);     // 0, 1, 4, 5, 6
    ck_assert_uint_eq(hl_stats_goodput(ttft, tpot, 7, 0, 0), 7);        // no SLO: everything counts
    ck_assert_uint_eq(hl_stats_goodput(ttft, tpot, 0, 200.0, 50.0), 0);
    ck_assert_uint_eq(hl_stats_goodput(ttft, tpot, 7, 1.0, 1.0), 0);
}
END_TEST

Suite *stats_suite(void) {
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_percentile_1_to_100_matches_numpy);
    tcase_add_test(tc, test_percentile_unsorted_fractions_match_numpy);
    tcase_add_test(tc, test_empty_and_single);
    tcase_add_test(tc, test_nan_values_are_skipped);
    tcase_add_test(tc, test_goodput_counts_both_slos);
    suite_add_tcase(s, tc);
    return s;
}
