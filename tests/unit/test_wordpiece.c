// Unit tests for tokenizer/wordpiece: all-MiniLM-L6-v2's vocabulary against Hugging Face
// `tokenizers` on 700+ varied strings in four lower-case / accent-strip configurations
// (tests/fixtures/tokenizer/bert_expect.jsonl, made by tests/fixtures/make_bert_expect.py), plus
// greedy-matching rules, special tokens, bad input and vocabulary errors on small vocabularies.
#include <check.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/wordpiece.h"

#define VOCAB "tests/fixtures/tokenizer/bert_vocab.txt"
#define EXPECT "tests/fixtures/tokenizer/bert_expect.jsonl"

static hl_wordpiece *load_vocab(bool lower, bool strip) {
    hl_error err = {0};
    hl_wordpiece *wp = hl_wordpiece_create_from_vocab_txt(VOCAB, lower, strip, &err);
    ck_assert_msg(wp != NULL, "%s", err.msg);
    return wp;
}

static bool ids_equal(const int32_t *ids, size_t n, const cJSON *want) {
    if ((int)n != cJSON_GetArraySize(want)) return false;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] != cJSON_GetArrayItem(want, (int)i)->valueint) return false;
    }
    return true;
}

static void check_line(hl_wordpiece *const wps[4], const char *const names[4], const cJSON *row,
                       int line) {
    const char *s = cJSON_GetObjectItem(row, "text")->valuestring;
    size_t len = strlen(s);
    char bytes[1024];
    const cJSON *hex = cJSON_GetObjectItem(row, "text_hex"); // texts with NUL, which cJSON cuts
    if (hex) {
        len = strlen(hex->valuestring) / 2;
        ck_assert_uint_lt(len, sizeof(bytes));
        for (size_t i = 0; i < len; i++) sscanf(hex->valuestring + 2 * i, "%2hhx", (unsigned char *)&bytes[i]);
        s = bytes;
    }
    for (int k = 0; k < 4; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        hl_error err = {0};
        ck_assert_int_eq(hl_wordpiece_encode(wps[k], s, len, false, &ids, &n, &err), HL_OK);
        const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "ids"), names[k]);
        ck_assert_msg(ids_equal(ids, n, want), "line %d (%s): mismatch for %.*s", line, names[k],
                      (int)len, s);
        free(ids);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_int_eq(hl_wordpiece_encode(wps[0], s, len, true, &ids, &n, NULL), HL_OK);
    ck_assert_msg(ids_equal(ids, n, cJSON_GetObjectItem(row, "special")), "line %d: [CLS]/[SEP]", line);
    free(ids);
}

START_TEST(test_matches_hf_tokenizers_corpus) {
    static const char *const names[4] = {"lower_strip", "lower", "cased", "strip"};
    hl_wordpiece *wps[4] = {load_vocab(true, true), load_vocab(true, false), load_vocab(false, false),
                            load_vocab(false, true)};
    FILE *f = fopen(EXPECT, "r");
    ck_assert_msg(f != NULL, "cannot open %s", EXPECT);
    char *line = NULL;
    size_t cap = 0;
    int n_lines = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *row = cJSON_Parse(line);
        ck_assert_msg(row != NULL, "line %d does not parse", n_lines + 1);
        check_line(wps, names, row, ++n_lines);
        cJSON_Delete(row);
    }
    free(line);
    fclose(f);
    ck_assert_int_ge(n_lines, 500);
    for (int k = 0; k < 4; k++) hl_wordpiece_free(wps[k]);
}
END_TEST

START_TEST(test_special_ids_and_injection) {
    hl_wordpiece *wp = load_vocab(true, true);
    ck_assert_int_eq(hl_wordpiece_n_tokens(wp), 30522);
    ck_assert_str_eq(hl_wordpiece_token(wp, hl_wordpiece_cls(wp)), "[CLS]");
    ck_assert_str_eq(hl_wordpiece_token(wp, hl_wordpiece_sep(wp)), "[SEP]");
    ck_assert_str_eq(hl_wordpiece_token(wp, hl_wordpiece_pad(wp)), "[PAD]");
    ck_assert_str_eq(hl_wordpiece_token(wp, hl_wordpiece_unk(wp)), "[UNK]");
    ck_assert_str_eq(hl_wordpiece_token(wp, hl_wordpiece_mask(wp)), "[MASK]");
    ck_assert_ptr_null(hl_wordpiece_token(wp, 30522));
    ck_assert_ptr_null(hl_wordpiece_token(wp, -1));
    // "[SEP]" typed by a user is text: "[", "sep", "]".
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(hl_wordpiece_encode(wp, "[SEP]", 5, false, &ids, &n, NULL), HL_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(hl_wordpiece_token(wp, ids[0]), "[");
    ck_assert_str_eq(hl_wordpiece_token(wp, ids[1]), "sep");
    ck_assert_str_eq(hl_wordpiece_token(wp, ids[2]), "]");
    free(ids);
    // Empty text: no ids (but a non-NULL array); with specials just [CLS] [SEP].
    ck_assert_int_eq(hl_wordpiece_encode(wp, "", 0, false, &ids, &n, NULL), HL_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(ids);
    free(ids);
    ck_assert_int_eq(hl_wordpiece_encode(wp, NULL, 0, true, &ids, &n, NULL), HL_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], hl_wordpiece_cls(wp));
    ck_assert_int_eq(ids[1], hl_wordpiece_sep(wp));
    free(ids);
    ck_assert_int_eq(hl_wordpiece_encode(wp, NULL, 3, false, &ids, &n, NULL), HL_ERR_INVAL);
    hl_wordpiece_free(wp);
}
END_TEST

static void encode_tokens(hl_wordpiece *wp, const char *text, char *out, size_t cap) {
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(hl_wordpiece_encode(wp, text, strlen(text), false, &ids, &n, NULL), HL_OK);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i) strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, hl_wordpiece_token(wp, ids[i]), cap - strlen(out) - 1);
    }
    free(ids);
}

START_TEST(test_greedy_rules_small_vocab) {
    static const char *const toks[] = {"[PAD]", "[UNK]", "un", "##aff", "##able", "a", "##a",
                                       "unaff", "x", "!", "[CLS]", "[SEP]", "é", "e"};
    size_t lens[14];
    for (int i = 0; i < 14; i++) lens[i] = strlen(toks[i]);
    hl_error err = {0};
    hl_wordpiece *wp = hl_wordpiece_create(toks, lens, 14, false, false, &err);
    ck_assert_ptr_nonnull(wp);
    char out[4096];
    encode_tokens(wp, "unaffable", out, sizeof(out)); // longest first: "unaff" then "##able"
    ck_assert_str_eq(out, "unaff ##able");
    encode_tokens(wp, "unaffablex !x", out, sizeof(out)); // no "##x": the whole word is [UNK]
    ck_assert_str_eq(out, "[UNK] ! x");
    char word[256];
    memset(word, 'a', 100);
    word[100] = '\0';
    encode_tokens(wp, word, out, sizeof(out)); // 100 characters: still split
    ck_assert_uint_eq(strlen(out), strlen("a") + 99 * strlen(" ##a"));
    memset(word, 'a', 101);
    word[101] = '\0';
    encode_tokens(wp, word, out, sizeof(out)); // 101 characters: [UNK]
    ck_assert_str_eq(out, "[UNK]");
    encode_tokens(wp, "a\xff\xc3" "a\xed\xa0\x80" "a", out, sizeof(out)); // invalid UTF-8 is dropped
    ck_assert_str_eq(out, "a ##a ##a");
    encode_tokens(wp, "\xc3\xa9 e\xcc\x81", out, sizeof(out)); // cased: é stays, e + U+0301 is [UNK]
    ck_assert_str_eq(out, "é [UNK]");
    hl_wordpiece_free(wp);
    wp = hl_wordpiece_create(toks, lens, 14, false, true, &err); // accents stripped
    encode_tokens(wp, "\xc3\xa9 e\xcc\x81", out, sizeof(out));
    ck_assert_str_eq(out, "e e");
    hl_wordpiece_free(wp);
}
END_TEST

START_TEST(test_vocab_errors) {
    static const char *const no_unk[] = {"a", "b"};
    size_t lens[2] = {1, 1};
    hl_error err = {0};
    ck_assert_ptr_null(hl_wordpiece_create(no_unk, lens, 2, true, true, &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    ck_assert_ptr_null(hl_wordpiece_create(no_unk, lens, 0, true, true, &err));
    ck_assert_int_eq(err.code, HL_ERR_INVAL);
    // Duplicates: the later id wins. No [CLS]/[SEP]: add_special is an error.
    static const char *const dup[] = {"[UNK]", "a", "a"};
    size_t dlens[3] = {5, 1, 1};
    hl_wordpiece *wp = hl_wordpiece_create(dup, dlens, 3, true, true, &err);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(hl_wordpiece_encode(wp, "a", 1, false, &ids, &n, NULL), HL_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 2);
    free(ids);
    ck_assert_int_eq(hl_wordpiece_cls(wp), -1);
    ck_assert_int_eq(hl_wordpiece_encode(wp, "a", 1, true, &ids, &n, &err), HL_ERR_INVAL);
    hl_wordpiece_free(wp);
    ck_assert_ptr_null(hl_wordpiece_create_from_vocab_txt("/nonexistent/vocab.txt", true, true, &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    hl_wordpiece_free(NULL);
}
END_TEST

Suite *wordpiece_suite(void) {
    Suite *s = suite_create("wordpiece");
    TCase *tc = tcase_create("wordpiece");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_matches_hf_tokenizers_corpus);
    tcase_add_test(tc, test_special_ids_and_injection);
    tcase_add_test(tc, test_greedy_rules_small_vocab);
    tcase_add_test(tc, test_vocab_errors);
    suite_add_tcase(s, tc);
    return s;
}
