// Unit tests for common/sha256: the FIPS 180-2 / 180-4 example vectors, padding edge
// lengths (digests from Python's hashlib, an independent implementation), incremental
// updates split at odd points against one-shot, hex parsing and whole-file hashing.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/sha256.h"

static void check_hex(const void *data, size_t n, const char *want) {
    uint8_t d[HL_SHA256_BYTES];
    char hex[HL_SHA256_HEX_BYTES];
    hl_sha256_buf(data, n, d);
    hl_sha256_hex(d, hex);
    ck_assert_msg(strcmp(hex, want) == 0, "len %zu: got %s want %s", n, hex, want);
}

START_TEST(test_fips_vectors) {
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(m448, strlen(m448),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
        "lmnopqrsmnopqrstnopqrstu";
    check_hex(m896, strlen(m896),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

// One million 'a' (FIPS 180-2 appendix B.3), fed both in one call and one byte at a time.
START_TEST(test_million_a) {
    const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    size_t n = 1000000;
    char *a = malloc(n);
    ck_assert_ptr_nonnull(a);
    memset(a, 'a', n);
    check_hex(a, n, want);
    hl_sha256 h;
    hl_sha256_init(&h);
    for (size_t i = 0; i < n; i++) hl_sha256_update(&h, "a", 1);
    uint8_t d[HL_SHA256_BYTES];
    char hex[HL_SHA256_HEX_BYTES];
    hl_sha256_final(&h, d);
    hl_sha256_hex(d, hex);
    ck_assert_str_eq(hex, want);
    free(a);
}
END_TEST

// Lengths around the padding boundaries: 55 fits the length in the same block, 56..63 need
// a second block, 64 and 128 are whole blocks.
START_TEST(test_padding_boundaries) {
    static const struct {
        size_t n;
        const char *hex;
    } cases[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {127, "c57e9278af78fa3cab38667bef4ce29d783787a2f731d4e12200270f0c32320a"},
        {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
    };
    char a[128];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_hex(a, cases[i].n, cases[i].hex);
}
END_TEST

// Random data split at pseudo-random odd points gives the one-shot digest, for every
// total length 0..300 and for a larger buffer.
START_TEST(test_incremental_matches_oneshot) {
    size_t n_max = 5000;
    uint8_t *buf = malloc(n_max);
    ck_assert_ptr_nonnull(buf);
    hl_rng rng = {42};
    for (size_t i = 0; i < n_max; i++) buf[i] = (uint8_t)hl_rng_next(&rng);
    static const size_t steps[] = {1, 3, 7, 13, 63, 65, 127, 200};
    for (size_t n = 0; n <= n_max; n = n < 300 ? n + 1 : n + 1567) {
        uint8_t want[HL_SHA256_BYTES], got[HL_SHA256_BYTES];
        hl_sha256_buf(buf, n, want);
        hl_sha256 h;
        hl_sha256_init(&h);
        size_t off = 0;
        for (size_t k = 0; off < n; k++) {
            size_t take = steps[(k + n) % 8];
            if (take > n - off) take = n - off;
            hl_sha256_update(&h, buf + off, take);
            hl_sha256_update(&h, NULL, 0);
            off += take;
        }
        hl_sha256_final(&h, got);
        ck_assert_msg(memcmp(want, got, sizeof want) == 0, "length %zu", n);
    }
    free(buf);
}
END_TEST

START_TEST(test_parse_hex) {
    const char *hex = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
    uint8_t d[HL_SHA256_BYTES], want[HL_SHA256_BYTES];
    hl_error err = {0};
    ck_assert_int_eq(hl_sha256_parse_hex(hex, d, &err), HL_OK);
    hl_sha256_buf("abc", 3, want);
    ck_assert_mem_eq(d, want, sizeof want);
    char round[HL_SHA256_HEX_BYTES];
    hl_sha256_hex(d, round);
    ck_assert_int_eq(strcasecmp(round, hex), 0);
    ck_assert_int_eq(hl_sha256_parse_hex("abc", d, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "64 hex digits"));
    char bad[65];
    memcpy(bad, hex, 65);
    bad[63] = 'g';
    ck_assert_int_eq(hl_sha256_parse_hex(bad, d, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "position 63"));
    ck_assert_int_eq(hl_sha256_parse_hex(NULL, d, &err), HL_ERR_INVAL);
}
END_TEST

// A file larger than the 1 MiB read buffer hashes like the same bytes in memory.
START_TEST(test_file) {
    size_t n = (3u << 20) + 12345;
    uint8_t *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    hl_rng rng = {7};
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)hl_rng_next(&rng);
    char path[] = "/tmp/hl_sha256_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "wb");
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    uint8_t want[HL_SHA256_BYTES], got[HL_SHA256_BYTES];
    hl_sha256_buf(buf, n, want);
    hl_error err = {0};
    ck_assert_int_eq(hl_sha256_file(path, got, &err), HL_OK);
    ck_assert_mem_eq(got, want, sizeof want);
    unlink(path);
    ck_assert_int_eq(hl_sha256_file(path, got, &err), HL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    free(buf);
}
END_TEST

Suite *sha256_suite(void) {
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fips_vectors);
    tcase_add_test(tc, test_million_a);
    tcase_add_test(tc, test_padding_boundaries);
    tcase_add_test(tc, test_incremental_matches_oneshot);
    tcase_add_test(tc, test_parse_hex);
    tcase_add_test(tc, test_file);
    suite_add_tcase(s, tc);
    return s;
}
