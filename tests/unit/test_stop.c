// Unit tests for engine/stop: stop strings over streamed pieces, checked against a brute-force
// oracle on every split of the text (and random splits of random texts), overlapping prefixes,
// multibyte UTF-8, several stops completing in an order unlike their list order, errors.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/stop.h"
#include "tokenizer/unicode.h"

// ---- oracle ----

// Where the first stop string to complete in text starts (the earliest end; equal ends: the
// longer stop), with *which set; -1 when none completes.
static long oracle_stop(const char *text, size_t n, const char *const *stops, int n_stops,
                        int *which) {
    for (size_t end = 1; end <= n; end++) {
        long best = -1;
        for (int i = 0; i < n_stops; i++) {
            size_t l = strlen(stops[i]);
            if (l > end || memcmp(text + end - l, stops[i], l) != 0) continue;
            if (best < 0 || (long)(end - l) < best) {
                best = (long)(end - l);
                *which = i;
            }
        }
        if (best >= 0) return best;
    }
    *which = -1;
    return -1;
}

// Longest suffix of text[0..n) that is a proper prefix of some stop string.
static size_t oracle_hold(const char *text, size_t n, const char *const *stops, int n_stops) {
    size_t best = 0;
    for (int i = 0; i < n_stops; i++) {
        size_t l = strlen(stops[i]);
        for (size_t h = 1; h < l && h <= n; h++) {
            if (memcmp(text + n - h, stops[i], h) == 0 && h > best) best = h;
        }
    }
    return best;
}

// Feeds text cut at cuts[0..n_cuts) (increasing), then flushes; checks after every piece that
// the output so far is exactly what the oracle allows, and at the end the stop and the text.
static void run_split(const char *text, const char *const *stops, int n_stops,
                      const size_t *cuts, int n_cuts) {
    size_t n = strlen(text);
    int want_stop;
    long stop_at = oracle_stop(text, n, stops, n_stops, &want_stop);
    hl_error err = {0};
    hl_stop_matcher *m = hl_stop_matcher_create(stops, n_stops, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    char *got = malloc(n + 1);
    size_t n_got = 0, prev = 0;
    hl_stop_result r = {0};
    for (int c = 0; c <= n_cuts; c++) {
        size_t end = c < n_cuts ? cuts[c] : n;
        hl_stop_matcher_feed(m, text + prev, end - prev, &r);
        memcpy(got + n_got, r.text, r.n_bytes);
        n_got += r.n_bytes;
        ck_assert_msg(memcmp(got, text, n_got) == 0, "output is not a prefix of the text");
        int w;
        long s = oracle_stop(text, end, stops, n_stops, &w);
        if (s >= 0) { // completed within the text fed so far
            ck_assert_int_eq(r.stop, w);
            ck_assert_uint_eq(n_got, (size_t)s);
            break;
        }
        ck_assert_int_eq(r.stop, -1);
        ck_assert_uint_eq(n_got, end - oracle_hold(text, end, stops, n_stops));
        prev = end;
    }
    hl_stop_matcher_flush(m, &r);
    memcpy(got + n_got, r.text, r.n_bytes);
    n_got += r.n_bytes;
    ck_assert_int_eq(hl_stop_matcher_matched(m), want_stop);
    ck_assert_uint_eq(n_got, stop_at >= 0 ? (size_t)stop_at : n);
    ck_assert(memcmp(got, text, n_got) == 0);
    free(got);
    hl_stop_matcher_free(m);
}

// Every split into two and three pieces, and one byte at a time.
static void run_all_splits(const char *text, const char *const *stops, int n_stops) {
    size_t n = strlen(text), cuts[512] = {0};
    run_split(text, stops, n_stops, cuts, 0);
    for (size_t a = 0; a <= n; a++) {
        cuts[0] = a;
        run_split(text, stops, n_stops, cuts, 1);
        for (size_t b = a; b <= n; b++) {
            cuts[1] = b;
            run_split(text, stops, n_stops, cuts, 2);
        }
    }
    ck_assert(n < 512);
    for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
    run_split(text, stops, n_stops, cuts, (int)n);
}

// ---- tests ----

START_TEST(test_stop_split_everywhere) {
    const char *stops[] = {"STOP"};
    run_all_splits("Hello world STOP tail", stops, 1);
    run_all_splits("STOP at the start", stops, 1);
    run_all_splits("no stop here, just ST", stops, 1); // a held prefix flushed at the end
    run_all_splits("STO STOSTOP", stops, 1);
}
END_TEST

START_TEST(test_stop_overlapping_prefixes) {
    const char *abab[] = {"abab"};
    run_all_splits("ababab", abab, 1);
    run_all_splits("xabacababyy", abab, 1);
    const char *aab[] = {"aab"};
    run_all_splits("aaaaab", aab, 1); // KMP fallback over a run of the first byte
    const char *aaa[] = {"aaaa", "aab"};
    run_all_splits("aaab...", aaa, 2);
    // Output checks by hand for the classic case.
    hl_stop_matcher *m = hl_stop_matcher_create(abab, 1, NULL);
    hl_stop_result r;
    hl_stop_matcher_feed(m, "xaba", 4, &r);
    ck_assert_uint_eq(r.n_bytes, 1); // "aba" could start "abab": only "x" is safe
    ck_assert(r.text[0] == 'x');
    hl_stop_matcher_feed(m, "b", 1, &r);
    ck_assert_int_eq(r.stop, 0);
    ck_assert_uint_eq(r.n_bytes, 0);
    hl_stop_matcher_free(m);
}
END_TEST

START_TEST(test_stop_multibyte_utf8) {
    const char *stops[] = {"日本", "é!"};
    run_all_splits("voilà café! 日本語", stops, 2);
    run_all_splits("日曜日 日本", stops, 2);
    // Fed whole characters (as the detokenizer does), every released chunk is valid UTF-8.
    const char *text = "ñandú 日曜日と日本語 é?";
    hl_stop_matcher *m = hl_stop_matcher_create(stops, 2, NULL);
    size_t n = strlen(text), i = 0, total = 0;
    hl_stop_result r;
    while (i < n) {
        size_t len;
        ck_assert(hl_utf8_check((const uint8_t *)text + i, n - i, &len) == HL_UTF8_VALID);
        hl_stop_matcher_feed(m, text + i, len, &r);
        ck_assert(hl_utf8_valid((const uint8_t *)r.text, r.n_bytes));
        total += r.n_bytes;
        if (r.stop >= 0) break;
        i += len;
    }
    ck_assert_int_eq(r.stop, 0);
    ck_assert_uint_eq(total, strlen("ñandú 日曜日と"));
    hl_stop_matcher_free(m);
}
END_TEST

START_TEST(test_stop_earliest_completion_wins) {
    // "op" is listed second but completes first, inside "long stop string".
    const char *stops[] = {"long stop string", "op"};
    run_all_splits("a long stop string", stops, 2);
    hl_stop_matcher *m = hl_stop_matcher_create(stops, 2, NULL);
    hl_stop_result r;
    hl_stop_matcher_feed(m, "a long stop string", 18, &r);
    ck_assert_int_eq(r.stop, 1);
    ck_assert_uint_eq(r.n_bytes, strlen("a long st"));
    hl_stop_matcher_free(m);
    // Both end on the same byte: the longer (earlier-starting) one wins.
    const char *tie[] = {"bc", "abc"};
    run_all_splits("xxabcyy", tie, 2);
    m = hl_stop_matcher_create(tie, 2, NULL);
    hl_stop_matcher_feed(m, "xxabcyy", 7, &r);
    ck_assert_int_eq(r.stop, 1);
    ck_assert_uint_eq(r.n_bytes, 2);
    // After a stop nothing more comes out, and the same stop is reported.
    hl_stop_matcher_feed(m, "more", 4, &r);
    ck_assert_int_eq(r.stop, 1);
    ck_assert_uint_eq(r.n_bytes, 0);
    hl_stop_matcher_flush(m, &r);
    ck_assert_uint_eq(r.n_bytes, 0);
    hl_stop_matcher_free(m);
}
END_TEST

// Random texts over a small alphabet, random stop sets and random splits, against the oracle.
START_TEST(test_stop_random_against_oracle) {
    hl_rng rng = {2024};
    for (int iter = 0; iter < 3000; iter++) {
        char pool[6][8];
        const char *stops[6];
        int n_stops = 1 + (int)(hl_rng_next(&rng) % 4);
        for (int i = 0; i < n_stops; i++) {
            int l = 1 + (int)(hl_rng_next(&rng) % 5);
            for (int j = 0; j < l; j++) pool[i][j] = (char)('a' + hl_rng_next(&rng) % 3);
            pool[i][l] = 0;
            stops[i] = pool[i];
        }
        char text[64];
        int n = (int)(hl_rng_next(&rng) % 40);
        for (int j = 0; j < n; j++) text[j] = (char)('a' + hl_rng_next(&rng) % 3);
        text[n] = 0;
        size_t cuts[64];
        int n_cuts = 0;
        for (int j = 1; j < n; j++) {
            if (hl_rng_next(&rng) % 3 == 0) cuts[n_cuts++] = (size_t)j;
        }
        run_split(text, stops, n_stops, cuts, n_cuts);
    }
}
END_TEST

START_TEST(test_stop_passthrough_and_flush) {
    hl_stop_matcher *m = hl_stop_matcher_create(NULL, 0, NULL);
    hl_stop_result r;
    hl_stop_matcher_feed(m, "anything", 8, &r);
    ck_assert_uint_eq(r.n_bytes, 8);
    ck_assert_int_eq(r.stop, -1);
    hl_stop_matcher_feed(m, "", 0, &r);
    ck_assert_uint_eq(r.n_bytes, 0);
    hl_stop_matcher_free(m);
    // A long piece (bigger than the initial buffer) passes through in one go.
    const char *stops[] = {"abd"};
    m = hl_stop_matcher_create(stops, 1, NULL);
    char big[3000];
    memset(big, 'x', sizeof(big));
    big[2998] = 'a';
    big[2999] = 'b';
    hl_stop_matcher_feed(m, big, sizeof(big), &r);
    ck_assert_uint_eq(r.n_bytes, 2998);
    hl_stop_matcher_feed(m, "c ab", 4, &r); // "abc ab": "abc " out, "ab" held
    ck_assert_uint_eq(r.n_bytes, 4);
    ck_assert(memcmp(r.text, "abc ", 4) == 0);
    hl_stop_matcher_flush(m, &r);
    ck_assert_uint_eq(r.n_bytes, 2);
    ck_assert(memcmp(r.text, "ab", 2) == 0);
    hl_stop_matcher_free(m);
    hl_stop_matcher_free(NULL);
}
END_TEST

START_TEST(test_stop_errors) {
    hl_error err = {0};
    const char *many[HL_STOP_MAX_STRINGS + 1];
    for (int i = 0; i <= HL_STOP_MAX_STRINGS; i++) many[i] = "x";
    ck_assert_ptr_null(hl_stop_matcher_create(many, HL_STOP_MAX_STRINGS + 1, &err));
    ck_assert_int_eq(err.code, HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "at most 16"));
    hl_stop_matcher *ok = hl_stop_matcher_create(many, HL_STOP_MAX_STRINGS, &err);
    ck_assert_ptr_nonnull(ok);
    hl_stop_matcher_free(ok);
    const char *empty[] = {"a", ""};
    ck_assert_ptr_null(hl_stop_matcher_create(empty, 2, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "stop[1] is an empty string"));
    char longs[HL_STOP_MAX_BYTES + 2];
    memset(longs, 'y', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = 0;
    const char *too_long[] = {longs};
    ck_assert_ptr_null(hl_stop_matcher_create(too_long, 1, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "bytes long"));
    longs[HL_STOP_MAX_BYTES] = 0; // exactly the limit is fine
    ok = hl_stop_matcher_create(too_long, 1, &err);
    ck_assert_ptr_nonnull(ok);
    hl_stop_matcher_free(ok);
    const char *bad_utf8[] = {"ok", "\xff\xfe"};
    ck_assert_ptr_null(hl_stop_matcher_create(bad_utf8, 2, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "UTF-8"));
    const char *null_entry[] = {NULL};
    ck_assert_ptr_null(hl_stop_matcher_create(null_entry, 1, &err));
    ck_assert_ptr_null(hl_stop_matcher_create(many, -1, &err));
}
END_TEST

Suite *stop_suite(void) {
    Suite *s = suite_create("stop");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stop_split_everywhere);
    tcase_add_test(tc, test_stop_overlapping_prefixes);
    tcase_add_test(tc, test_stop_multibyte_utf8);
    tcase_add_test(tc, test_stop_earliest_completion_wins);
    tcase_add_test(tc, test_stop_random_against_oracle);
    tcase_add_test(tc, test_stop_passthrough_and_flush);
    tcase_add_test(tc, test_stop_errors);
    suite_add_tcase(s, tc);
    return s;
}
