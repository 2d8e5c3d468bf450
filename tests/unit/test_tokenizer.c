// Unit tests for tokenizer/: the Llama 3 reference vectors, agreement with Hugging Face on
// the SmolLM2 and Llama 3 corpora (tests/fixtures/tokenizer/, made by
// tests/fixtures/make_tokenizer_expect.py), byte round trips, streaming, special tokens,
// SentencePiece on a hand-made vocabulary, and error paths.
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/hl.h"
#include "engine/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

// ---- fixtures ----

// Finds rel (e.g. "shared/fixtures/llama3-tokenizer") under $HALYARD_ROOT/.., the cwd's
// parent, the cwd and /work; NULL when absent. Returns a static buffer.
static const char *find_path(const char *rel) {
    static char buf[1024];
    const char *root = getenv("HALYARD_ROOT");
    const char *bases[] = {root ? root : ".", "..", ".", "/work"};
    const char *prefixes[] = {"../", "", "", ""};
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%s/%s%s", bases[i], prefixes[i], rel);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

static char *llama3_dir;
static hl_tokenizer *llama3;

static hl_tokenizer *load_llama3(void) {
    const char *dir = find_path("shared/fixtures/llama3-tokenizer");
    if (!dir) return NULL;
    llama3_dir = hl_xstrdup(dir);
    char v[1100], m[1100], s[1100];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    snprintf(s, sizeof s, "%s/special_tokens.json", dir);
    hl_error err = {0};
    hl_tokenizer *tok = hl_tokenizer_create_from_hf_files(v, m, s, "llama-bpe", &err);
    ck_assert_msg(tok, "llama3 fixture: %s", err.msg);
    return tok;
}

static void llama3_setup(void) {
    if (!llama3) llama3 = load_llama3();
    if (!llama3) fprintf(stderr, "SKIP: ../shared/fixtures/llama3-tokenizer not found\n");
}

static void llama3_teardown(void) {
    hl_tokenizer_free(llama3);
    llama3 = NULL;
    free(llama3_dir);
    llama3_dir = NULL;
}

static hl_tokens encode(const hl_tokenizer *tok, const char *text, size_t len, unsigned flags) {
    hl_tokens ids = {0};
    hl_error err = {0};
    ck_assert_msg(hl_tokenizer_encode(tok, text, len, flags, &ids, &err) == HL_OK, "%s", err.msg);
    return ids;
}

static char *decode(const hl_tokenizer *tok, const hl_tokens *ids, unsigned flags, size_t *len) {
    char *out = NULL;
    hl_error err = {0};
    ck_assert_msg(hl_tokenizer_decode(tok, ids->ids, ids->n, flags, &out, len, &err) == HL_OK,
                  "%s", err.msg);
    return out;
}

// Compares ids with a JSON array; prints both on mismatch.
static bool ids_equal(const hl_tokens *ids, const cJSON *want, const char *text) {
    bool same = (size_t)cJSON_GetArraySize(want) == ids->n;
    for (size_t i = 0; same && i < ids->n; i++)
        same = cJSON_GetArrayItem(want, (int)i)->valueint == ids->ids[i];
    if (same) return true;
    char *w = cJSON_PrintUnformatted(want);
    fprintf(stderr, "mismatch for %.200s\n  want %s\n  got  [", text, w);
    for (size_t i = 0; i < ids->n; i++) fprintf(stderr, "%s%d", i ? "," : "", ids->ids[i]);
    fprintf(stderr, "]\n");
    free(w);
    return false;
}

static uint32_t hex4(const char *p) {
    char h[5] = {p[0], p[1], p[2], p[3], 0};
    return (uint32_t)strtoul(h, NULL, 16);
}

// The value of "text" in a JSONL line, decoded with NUL bytes kept (cJSON stops at them).
// Caller frees.
static char *json_text(const char *line, size_t *len) {
    const char *p = strstr(line, "\"text\":");
    ck_assert(p);
    for (p += 7; *p == ' '; p++) {}
    ck_assert(*p == '"');
    char *out = hl_xmalloc(strlen(p) + 1);
    size_t n = 0;
    static const char esc_in[] = "ntrbf/\\\"", esc_out[] = "\n\t\r\b\f/\\\"";
    for (p++; *p && *p != '"';) {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        const char *e = strchr(esc_in, p[1]);
        if (p[1] != 'u') {
            ck_assert(e);
            out[n++] = esc_out[e - esc_in];
            p += 2;
            continue;
        }
        uint32_t cp = hex4(p + 2);
        p += 6;
        if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
            p += 6;
        }
        n += (size_t)hl_utf8_encode(cp, out + n);
    }
    *len = n;
    return out;
}

// True when every byte of text has a byte-level token (else encoding drops it).
static bool all_bytes_known(const hl_tokenizer *tok, const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        char u[4];
        int ul = hl_utf8_encode(hl_unicode_byte_to_cp((uint8_t)text[i]), u);
        if (hl_tokenizer_token_id(tok, u, (size_t)ul) < 0) return false;
    }
    return true;
}

// Runs every line of a {"text", key: [...]} JSONL file through the tokenizer; returns the
// number of lines and counts mismatches in *n_bad.
static int check_jsonl(const hl_tokenizer *tok, const char *path, const char *key, unsigned flags,
                       int *n_bad) {
    size_t n;
    hl_error err = {0};
    char *buf = hl_read_file(path, 64u << 20, &n, &err);
    ck_assert_msg(buf, "%s", err.msg);
    int lines = 0;
    *n_bad = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ck_assert_msg(j, "bad JSON line in %s", path);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(j, key);
        ck_assert(cJSON_IsString(text) && cJSON_IsArray(want));
        size_t tl;
        char *t = json_text(line, &tl);
        hl_tokens ids = encode(tok, t, tl, flags);
        if (!ids_equal(&ids, want, text->valuestring)) (*n_bad)++;
        if (!(flags & HL_TOKENIZER_PARSE_SPECIAL) && all_bytes_known(tok, t, tl)) {
            // ordinary text decodes back exactly
            size_t dl;
            char *back = decode(tok, &ids, 0, &dl);
            ck_assert_msg(dl == tl && memcmp(back, t, tl) == 0, "round trip: %.80s", t);
            free(back);
        }
        free(t);
        hl_tokens_free(&ids);
        cJSON_Delete(j);
        lines++;
    }
    free(buf);
    return lines;
}

// ---- Llama 3 ----

START_TEST(test_llama3_reference_vectors) {
    if (!llama3) return;
    char path[1100];
    snprintf(path, sizeof path, "%s/vectors.jsonl", llama3_dir);
    int n_bad;
    int n = check_jsonl(llama3, path, "ids", 0, &n_bad);
    ck_assert_int_eq(n, 281);
    ck_assert_msg(n_bad == 0, "%d of %d vectors differ", n_bad, n);
}
END_TEST

START_TEST(test_llama3_hf_corpus) {
    const char *path = find_path("main/tests/fixtures/tokenizer/llama3_expect.jsonl");
    if (!path) path = find_path("tests/fixtures/tokenizer/llama3_expect.jsonl");
    if (!llama3) return;
    ck_assert_msg(path, "tests/fixtures/tokenizer/llama3_expect.jsonl is missing");
    char p[1100];
    snprintf(p, sizeof p, "%s", path);
    int n_bad;
    int n = check_jsonl(llama3, p, "ids", 0, &n_bad);
    ck_assert_int_ge(n, 500);
    ck_assert_msg(n_bad == 0, "%d of %d strings differ from HF tokenizers", n_bad, n);
    n = check_jsonl(llama3, p, "ids_special", HL_TOKENIZER_PARSE_SPECIAL, &n_bad);
    ck_assert_msg(n_bad == 0, "%d of %d strings differ with special parsing", n_bad, n);
}
END_TEST

static void assert_ids(const hl_tokens *ids, const int32_t *want, size_t n) {
    ck_assert_uint_eq(ids->n, n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(ids->ids[i], want[i]);
}

START_TEST(test_llama3_special_tokens) {
    if (!llama3) return;
    const char *t = "a<|eot_id|>b";
    hl_tokens plain = encode(llama3, t, strlen(t), 0);
    hl_tokens parsed = encode(llama3, t, strlen(t), HL_TOKENIZER_PARSE_SPECIAL);
    static const int32_t want_plain[] = {64, 27, 91, 68, 354, 851, 91, 29, 65};
    static const int32_t want_parsed[] = {64, 128009, 65};
    assert_ids(&plain, want_plain, 9);
    assert_ids(&parsed, want_parsed, 3);
    // ADD_SPECIAL: Llama 3 adds BOS, no EOS.
    hl_tokens with_bos = encode(llama3, "Hello world!", 12, HL_TOKENIZER_ADD_SPECIAL);
    static const int32_t want_bos[] = {128000, 9906, 1917, 0};
    assert_ids(&with_bos, want_bos, 4);
    // Leftmost-longest: the header tokens, then ordinary text between them.
    const char *h = "<|start_header_id|>user<|end_header_id|>\n\n";
    hl_tokens hdr = encode(llama3, h, strlen(h), HL_TOKENIZER_PARSE_SPECIAL);
    static const int32_t want_hdr[] = {128006, 882, 128007, 271};
    assert_ids(&hdr, want_hdr, 4);
    // find_special sees nothing without PARSE_SPECIAL, the token with it.
    size_t pos, nb;
    ck_assert_int_eq(hl_tokenizer_find_special(llama3, h, strlen(h), 0, &pos, &nb), -1);
    ck_assert_int_eq(hl_tokenizer_find_special(llama3, h + 1, strlen(h) - 1,
                                               HL_TOKENIZER_PARSE_SPECIAL, &pos, &nb), 128007);
    ck_assert_uint_eq(pos, 22);
    ck_assert_uint_eq(nb, strlen("<|end_header_id|>"));
    // Decoding: special text shown, or skipped.
    size_t n;
    char *s = decode(llama3, &parsed, 0, &n);
    ck_assert_str_eq(s, t);
    free(s);
    s = decode(llama3, &parsed, HL_TOKENIZER_SKIP_SPECIAL, &n);
    ck_assert_str_eq(s, "ab");
    free(s);
    hl_tokens_free(&plain);
    hl_tokens_free(&parsed);
    hl_tokens_free(&with_bos);
    hl_tokens_free(&hdr);
}
END_TEST

START_TEST(test_llama3_eog_and_lookup) {
    if (!llama3) return;
    ck_assert(hl_tokenizer_is_eog(llama3, 128001)); // <|end_of_text|>
    ck_assert(hl_tokenizer_is_eog(llama3, 128009)); // <|eot_id|>
    ck_assert(!hl_tokenizer_is_eog(llama3, 128000));
    ck_assert(!hl_tokenizer_is_eog(llama3, 9906));
    ck_assert(!hl_tokenizer_is_eog(llama3, -1));
    ck_assert(!hl_tokenizer_is_eog(llama3, 1 << 30));
    ck_assert_int_eq(hl_tokenizer_n_tokens(llama3), 128256);
    ck_assert_int_eq(hl_tokenizer_token_id(llama3, "\xc4\xa0world", 7), 1917); // "Ġworld"
    ck_assert_int_eq(hl_tokenizer_token_id(llama3, "no-such-token-xyz", 17), -1);
    size_t len;
    const char *b = hl_tokenizer_token_bytes(llama3, 1917, &len);
    ck_assert(len == 6 && memcmp(b, " world", 6) == 0);
    ck_assert_ptr_null(hl_tokenizer_token_text(llama3, 128256, &len));
    ck_assert_int_eq(hl_tokenizer_token_type(llama3, 128009), HL_TOKEN_CONTROL);
    hl_tokenizer_ids ids = hl_tokenizer_special_ids(llama3);
    ck_assert_int_eq(ids.bos, 128000);
    ck_assert_int_eq(ids.eos, 128001);
    ck_assert_int_eq(ids.eot, 128009);
    ck_assert_str_eq(hl_tokenizer_pre_name(llama3), "llama-bpe");
}
END_TEST

// Random bytes, biased towards UTF-8 fragments, spaces, digits and letters.
static size_t random_bytes(hl_rng *r, char *buf, size_t max) {
    static const char *frags[] = {" ", "  ", "\n", "a", "Z", "7", "'s", "\xc3\xa9", "\xe4\xbd\xa0",
                                  "\xf0\x9f\xa6\x99", "\xe2\x82", "\xf0\x9f", "\x80", "\xff", "<|"};
    size_t n = hl_rng_next(r) % max, i = 0;
    while (i < n) {
        if (hl_rng_next(r) % 3 == 0) {
            buf[i++] = (char)(hl_rng_next(r) & 0xff);
            continue;
        }
        const char *f = frags[hl_rng_next(r) % (sizeof frags / sizeof frags[0])];
        size_t fl = strlen(f);
        if (i + fl > n) break;
        memcpy(buf + i, f, fl);
        i += fl;
    }
    return i;
}

START_TEST(test_llama3_round_trip_random_bytes) {
    if (!llama3) return;
    hl_rng r = {2024};
    char buf[256];
    for (int it = 0; it < 3000; it++) {
        size_t n = random_bytes(&r, buf, sizeof buf);
        hl_tokens ids = encode(llama3, buf, n, 0);
        size_t dl;
        char *back = decode(llama3, &ids, 0, &dl);
        ck_assert_msg(dl == n && memcmp(back, buf, n) == 0, "round trip failed at iteration %d", it);
        free(back);
        hl_tokens_free(&ids);
    }
}
END_TEST

// Streaming: every piece is valid UTF-8, what has been emitted is always a prefix of the
// one-shot lossy decode, and the whole stream equals it. For every split point k, a stream
// ended after k ids gives the one-shot decode of those k ids.
static void check_stream(const hl_tokenizer *tok, const hl_tokens *ids, unsigned flags) {
    size_t want_len;
    char *want = decode(tok, ids, flags | HL_TOKENIZER_VALID_UTF8, &want_len);
    hl_tokenizer_stream *s = hl_tokenizer_stream_create(tok, flags);
    char *got = hl_xmalloc(want_len + 1);
    size_t got_len = 0;
    const char *piece;
    size_t pl;
    for (size_t i = 0; i <= ids->n; i++) {
        if (i < ids->n) {
            ck_assert_int_eq(hl_tokenizer_stream_push(s, ids->ids[i], &piece, &pl, NULL), HL_OK);
        } else {
            hl_tokenizer_stream_finish(s, &piece, &pl);
        }
        ck_assert(hl_utf8_valid((const uint8_t *)piece, pl));
        ck_assert_msg(got_len + pl <= want_len && memcmp(want + got_len, piece, pl) == 0,
                      "stream emitted text that is not in the one-shot decode");
        memcpy(got + got_len, piece, pl);
        got_len += pl;
    }
    ck_assert_uint_eq(got_len, want_len);
    for (size_t k = 0; k <= ids->n && ids->n <= 64; k++) {
        hl_tokens head = {.ids = ids->ids, .n = k};
        size_t head_len;
        char *head_want = decode(tok, &head, flags | HL_TOKENIZER_VALID_UTF8, &head_len);
        got_len = 0;
        got = hl_xrealloc(got, head_len + 1);
        for (size_t i = 0; i <= k; i++) {
            if (i < k) {
                hl_tokenizer_stream_push(s, ids->ids[i], &piece, &pl, NULL);
            } else {
                hl_tokenizer_stream_finish(s, &piece, &pl);
            }
            ck_assert_msg(got_len + pl <= head_len, "split %zu: stream longer than decode", k);
            memcpy(got + got_len, piece, pl);
            got_len += pl;
        }
        ck_assert_msg(got_len == head_len && memcmp(got, head_want, head_len) == 0,
                      "split %zu: stream differs from one-shot decode", k);
        free(head_want);
    }
    free(got);
    hl_tokenizer_stream_free(s);
    free(want);
}

START_TEST(test_llama3_stream_equals_decode) {
    if (!llama3) return;
    hl_rng r = {77};
    char buf[200];
    for (int it = 0; it < 300; it++) {
        size_t n = random_bytes(&r, buf, sizeof buf);
        hl_tokens ids = encode(llama3, buf, n, 0);
        check_stream(llama3, &ids, 0);
        hl_tokens_free(&ids);
    }
    // Emoji split over three byte tokens (🦙 = [9468, 99, 247]) comes out whole, once.
    hl_tokens ids = encode(llama3, "\xf0\x9f\xa6\x99!", 5, 0);
    hl_tokenizer_stream *s = hl_tokenizer_stream_create(llama3, 0);
    const char *piece;
    size_t pl;
    ck_assert_int_eq(hl_tokenizer_stream_push(s, 9468, &piece, &pl, NULL), HL_OK);
    ck_assert_uint_eq(pl, 0);
    ck_assert_int_eq(hl_tokenizer_stream_push(s, 99, &piece, &pl, NULL), HL_OK);
    ck_assert_uint_eq(pl, 0);
    ck_assert_int_eq(hl_tokenizer_stream_push(s, 247, &piece, &pl, NULL), HL_OK);
    ck_assert(pl == 4 && memcmp(piece, "\xf0\x9f\xa6\x99", 4) == 0);
    // A dangling lead byte is repaired at finish.
    ck_assert_int_eq(hl_tokenizer_stream_push(s, 9468, &piece, &pl, NULL), HL_OK);
    hl_tokenizer_stream_finish(s, &piece, &pl);
    ck_assert(pl == 3 && memcmp(piece, "\xef\xbf\xbd", 3) == 0);
    hl_error err = {0};
    ck_assert_int_eq(hl_tokenizer_stream_push(s, -5, &piece, &pl, &err), HL_ERR_INVAL);
    hl_tokenizer_stream_free(s);
    hl_tokens_free(&ids);
}
END_TEST

// ---- UTF-8 repair matches Python's bytes.decode("utf-8", "replace") ----

START_TEST(test_utf8_lossy_rules) {
    static const struct { const char *in; size_t n; const char *want; } cases[] = {
        {"\xe2\x82" "A", 3, "\xef\xbf\xbd" "A"},
        {"\xf0\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"a\xe2\x82", 3, "a\xef\xbf\xbd"},
        {"\xf0\x9f\xa6\x99", 4, "\xf0\x9f\xa6\x99"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        size_t len = 0, cap = 0;
        hl_utf8_lossy_append((const uint8_t *)cases[i].in, cases[i].n, false, &out, &len, &cap);
        ck_assert_uint_eq(len, strlen(cases[i].want));
        ck_assert(len == 0 || memcmp(out, cases[i].want, len) == 0);
        free(out);
    }
    // keep_tail holds back an incomplete character only at the very end.
    char *out = NULL;
    size_t len = 0, cap = 0;
    ck_assert_uint_eq(hl_utf8_lossy_append((const uint8_t *)"ab\xe4\xbd", 4, true, &out, &len, &cap), 2);
    ck_assert_uint_eq(len, 2);
    free(out);
    for (int b = 0; b < 256; b++) ck_assert_int_eq(hl_unicode_cp_to_byte(hl_unicode_byte_to_cp((uint8_t)b)), b);
    ck_assert_uint_eq(hl_unicode_byte_to_cp(' '), 0x120);
    ck_assert_uint_eq(hl_unicode_byte_to_cp('\n'), 0x10A);
    ck_assert_int_eq(hl_unicode_cp_to_byte(0x144), -1);
}
END_TEST

// ---- small hand-made vocabularies ----

// A byte-level BPE over the 256 byte tokens plus a few merges, to pin the merge order.
static hl_tokenizer *tiny_bpe(const char *const *extra, int n_extra, const char *const *merges,
                              int n_merges, const int32_t *extra_types) {
    int n = 256 + n_extra;
    char **tokens = hl_xcalloc((size_t)n, sizeof *tokens);
    int32_t *types = hl_xcalloc((size_t)n, sizeof *types);
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = hl_utf8_encode(hl_unicode_byte_to_cp((uint8_t)b), u);
        tokens[b] = hl_xstrndup(u, (size_t)l);
        types[b] = HL_TOKEN_NORMAL;
    }
    for (int i = 0; i < n_extra; i++) {
        tokens[256 + i] = hl_xstrdup(extra[i]);
        types[256 + i] = extra_types ? extra_types[i] : HL_TOKEN_NORMAL;
    }
    hl_tokenizer_spec sp = hl_tokenizer_default_spec();
    sp.model = HL_TOKENIZER_BPE;
    sp.pre = "gpt2";
    sp.n_tokens = n;
    sp.tokens = (const char *const *)tokens;
    sp.token_types = types;
    sp.n_merges = n_merges;
    sp.merges = merges;
    hl_error err = {0};
    hl_tokenizer *tok = hl_tokenizer_create(&sp, &err);
    ck_assert_msg(tok, "%s", err.msg);
    for (int i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
    free(types);
    return tok;
}

START_TEST(test_bpe_merge_order) {
    // "ab" outranks "bc": "abc" -> ab c. With "bc" first: a bc. "aaa" -> aa a (leftmost tie).
    const char *extra[] = {"ab", "bc", "aa", "<|user|>"};
    const int32_t types[] = {HL_TOKEN_NORMAL, HL_TOKEN_NORMAL, HL_TOKEN_NORMAL, HL_TOKEN_USER_DEFINED};
    const char *m1[] = {"a b", "b c", "a a"};
    const char *m2[] = {"b c", "a b", "a a"};
    hl_tokenizer *t1 = tiny_bpe(extra, 4, m1, 3, types);
    hl_tokenizer *t2 = tiny_bpe(extra, 4, m2, 3, types);
    hl_tokens a = encode(t1, "abc", 3, 0), b = encode(t2, "abc", 3, 0), c = encode(t1, "aaa", 3, 0);
    // Token b (< 256) spells byte b; the extra tokens are 256.. in order.
    const int32_t want_a[] = {256, 'c'}, want_b[] = {'a', 257}, want_c[] = {258, 'a'};
    assert_ids(&a, want_a, 2);
    assert_ids(&b, want_b, 2);
    assert_ids(&c, want_c, 2);
    // A user-defined token is matched whole even without PARSE_SPECIAL.
    hl_tokens u = encode(t1, "x<|user|>y", 10, 0);
    const int32_t want_u[] = {'x', 259, 'y'};
    assert_ids(&u, want_u, 3);
    hl_tokens_free(&a);
    hl_tokens_free(&b);
    hl_tokens_free(&c);
    hl_tokens_free(&u);
    hl_tokenizer_free(t1);
    hl_tokenizer_free(t2);
}
END_TEST

// SentencePiece: byte tokens 3..258, then words with scores.
static hl_tokenizer *tiny_spm(bool byte_fallback, float ab_score, float bc_score) {
    // Every step of "▁hello" and "▁world" is a token, the earlier the better it scores.
    const char *words[] = {"\xe2\x96\x81", "h", "e", "l", "o", "w", "r", "d", "a", "b", "c",
                           "\xe2\x96\x81h", "\xe2\x96\x81he", "\xe2\x96\x81hel",
                           "\xe2\x96\x81hell", "\xe2\x96\x81hello", "\xe2\x96\x81w", "or",
                           "ld", "\xe2\x96\x81wor", "\xe2\x96\x81world", "el", "ab", "bc"};
    int n_words = (int)(sizeof words / sizeof words[0]);
    int n_bytes = byte_fallback ? 256 : 0;
    int n = 3 + n_bytes + n_words;
    char **tokens = hl_xcalloc((size_t)n, sizeof *tokens);
    int32_t *types = hl_xcalloc((size_t)n, sizeof *types);
    float *scores = hl_xcalloc((size_t)n, sizeof *scores);
    const char *specials[] = {"<unk>", "<s>", "</s>"};
    const int32_t stypes[] = {HL_TOKEN_UNKNOWN, HL_TOKEN_CONTROL, HL_TOKEN_CONTROL};
    for (int i = 0; i < 3; i++) {
        tokens[i] = hl_xstrdup(specials[i]);
        types[i] = stypes[i];
    }
    for (int b = 0; b < n_bytes; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tokens[3 + b] = hl_xstrdup(name);
        types[3 + b] = HL_TOKEN_BYTE;
    }
    for (int i = 0; i < n_words; i++) {
        int id = 3 + n_bytes + i;
        tokens[id] = hl_xstrdup(words[i]);
        types[id] = HL_TOKEN_NORMAL;
        scores[id] = -(float)i; // earlier words merge first
    }
    scores[n - 2] = ab_score;
    scores[n - 1] = bc_score;
    hl_tokenizer_spec sp = hl_tokenizer_default_spec();
    sp.model = HL_TOKENIZER_SPM;
    sp.n_tokens = n;
    sp.tokens = (const char *const *)tokens;
    sp.token_types = types;
    sp.scores = scores;
    sp.unk_id = 0;
    sp.bos_id = 1;
    sp.eos_id = 2;
    sp.add_bos = true;
    hl_error err = {0};
    hl_tokenizer *tok = hl_tokenizer_create(&sp, &err);
    ck_assert_msg(tok, "%s", err.msg);
    for (int i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
    free(types);
    free(scores);
    return tok;
}

static void assert_pieces(const hl_tokenizer *tok, const hl_tokens *ids, const char *const *want,
                          size_t n) {
    ck_assert_uint_eq(ids->n, n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *t = hl_tokenizer_token_text(tok, ids->ids[i], &len);
        ck_assert_msg(len == strlen(want[i]) && memcmp(t, want[i], len) == 0, "piece %zu: %.*s != %s",
                      i, (int)len, t, want[i]);
    }
}

START_TEST(test_spm_small_vocab) {
    hl_tokenizer *tok = tiny_spm(true, -100, -200);
    hl_tokens ids = encode(tok, "hello world", 11, HL_TOKENIZER_ADD_SPECIAL);
    const char *want[] = {"<s>", "\xe2\x96\x81hello", "\xe2\x96\x81world"};
    assert_pieces(tok, &ids, want, 3);
    size_t n;
    char *s = decode(tok, &ids, HL_TOKENIZER_SKIP_SPECIAL | HL_TOKENIZER_STRIP_SPACE, &n);
    ck_assert_str_eq(s, "hello world");
    free(s);
    s = decode(tok, &ids, 0, &n);
    ck_assert_str_eq(s, "<s> hello world");
    free(s);
    hl_tokens_free(&ids);
    // Byte fallback: 'é' is not a token, its bytes are.
    ids = encode(tok, "h\xc3\xa9", 3, 0);
    const char *want_b[] = {"\xe2\x96\x81h", "<0xC3>", "<0xA9>"};
    assert_pieces(tok, &ids, want_b, 3);
    s = decode(tok, &ids, HL_TOKENIZER_STRIP_SPACE, &n);
    ck_assert_str_eq(s, "h\xc3\xa9");
    free(s);
    hl_tokens_free(&ids);
    // Score order: "ab" scores higher than "bc": abc -> ▁ ab c (no ▁a token).
    ids = encode(tok, "abc", 3, 0);
    const char *want_ab[] = {"\xe2\x96\x81", "ab", "c"};
    assert_pieces(tok, &ids, want_ab, 3);
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
    tok = tiny_spm(true, -200, -100);
    ids = encode(tok, "abc", 3, 0);
    const char *want_bc[] = {"\xe2\x96\x81", "a", "bc"};
    assert_pieces(tok, &ids, want_bc, 3);
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
    // Equal scores: the leftmost pair wins.
    tok = tiny_spm(true, -150, -150);
    ids = encode(tok, "abc", 3, 0);
    assert_pieces(tok, &ids, want_ab, 3);
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
    // With byte fallback every byte string comes back, the prefix space stripped and '▁'
    // (how SentencePiece spells a space) aside.
    tok = tiny_spm(true, -1, -2);
    hl_rng r = {5};
    char buf[128];
    for (int it = 0; it < 2000; it++) {
        size_t len = random_bytes(&r, buf, sizeof buf);
        if (memmem(buf, len, "\xe2\x96\x81", 3)) continue;
        ids = encode(tok, buf, len, 0);
        s = decode(tok, &ids, HL_TOKENIZER_STRIP_SPACE, &n);
        ck_assert_msg(n == len && memcmp(s, buf, len) == 0, "SPM round trip, iteration %d", it);
        free(s);
        if (it < 200) check_stream(tok, &ids, HL_TOKENIZER_STRIP_SPACE);
        hl_tokens_free(&ids);
    }
    hl_tokenizer_free(tok);
    // No byte tokens: an unknown character becomes one <unk>.
    tok = tiny_spm(false, -1, -2);
    ids = encode(tok, "h\xc3\xa9", 3, 0);
    const char *want_u[] = {"\xe2\x96\x81h", "<unk>"};
    assert_pieces(tok, &ids, want_u, 2);
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
}
END_TEST

// ---- error paths ----

START_TEST(test_errors) {
    hl_error err = {0};
    const char *toks[] = {"a", "b"};
    hl_tokenizer_spec sp = hl_tokenizer_default_spec();
    sp.model = HL_TOKENIZER_BPE;
    sp.n_tokens = 2;
    sp.tokens = toks;
    sp.pre = "no-such-pre";
    ck_assert_ptr_null(hl_tokenizer_create(&sp, &err));
    ck_assert_int_eq(err.code, HL_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "llama-bpe") && strstr(err.msg, "smollm"), "%s", err.msg);
    sp.pre = "gpt2";
    sp.eos_id = 2;
    ck_assert_ptr_null(hl_tokenizer_create(&sp, &err));
    ck_assert_int_eq(err.code, HL_ERR_INVAL);
    sp.eos_id = -1;
    const char *bad_merge[] = {"ab"};
    sp.merges = bad_merge;
    sp.n_merges = 1;
    ck_assert_ptr_null(hl_tokenizer_create(&sp, &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    sp.n_merges = 0;
    const int32_t bad_types[] = {1, 99};
    sp.token_types = bad_types;
    ck_assert_ptr_null(hl_tokenizer_create(&sp, &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    sp.token_types = NULL;
    sp.n_tokens = 0;
    ck_assert_ptr_null(hl_tokenizer_create(&sp, &err));
    // A byte-level vocabulary without a token for 'z' drops it (Hugging Face does the same).
    sp.n_tokens = 2;
    hl_tokenizer *tok = hl_tokenizer_create(&sp, &err);
    ck_assert_msg(tok, "%s", err.msg);
    hl_tokens ids = {0};
    ck_assert_int_eq(hl_tokenizer_encode(tok, "zaz", 3, 0, &ids, &err), HL_OK);
    ck_assert_uint_eq(ids.n, 1);
    ck_assert_int_eq(ids.ids[0], 0);
    ck_assert_int_eq(hl_tokenizer_encode(tok, NULL, 3, 0, &ids, &err), HL_ERR_INVAL);
    const int32_t bad_ids[] = {0, 7};
    char *out = NULL;
    size_t n;
    ck_assert_int_eq(hl_tokenizer_decode(tok, bad_ids, 2, 0, &out, &n, &err), HL_ERR_INVAL);
    ck_assert_ptr_null(out);
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
    // WordPiece needs [UNK].
    sp.model = HL_TOKENIZER_WORDPIECE;
    ck_assert_ptr_null(hl_tokenizer_create(&sp, &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    // Missing and malformed Hugging Face files.
    ck_assert_ptr_null(hl_tokenizer_create_from_hf_files("/nonexistent/vocab.json", "/nonexistent/m",
                                                         NULL, "gpt2", &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    char path[] = "/tmp/hl_tok_vocabXXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    ck_assert(write(fd, "{\"a\": 0, \"b\": 2}", 16) == 16);
    close(fd);
    ck_assert_ptr_null(hl_tokenizer_create_from_hf_files(path, path, NULL, "gpt2", &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "id 1"), "%s", err.msg);
    unlink(path);
}
END_TEST

// WordPiece through the facade: [CLS]/[SEP] as BOS/EOS, "##" continuations, lower-casing.
START_TEST(test_wordpiece_dispatch) {
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", "!"};
    const int32_t types[] = {3, 2, 3, 3, 1, 1, 1, 1};
    hl_tokenizer_spec sp = hl_tokenizer_default_spec();
    sp.model = HL_TOKENIZER_WORDPIECE;
    sp.n_tokens = 8;
    sp.tokens = toks;
    sp.token_types = types;
    sp.bos_id = 2;
    sp.eos_id = 3;
    sp.unk_id = 1;
    sp.add_bos = sp.add_eos = true;
    sp.lowercase = true;
    hl_error err = {0};
    hl_tokenizer *tok = hl_tokenizer_create(&sp, &err);
    ck_assert_msg(tok, "%s", err.msg);
    hl_tokens ids = encode(tok, "Hello worlds! [SEP] x", 21, HL_TOKENIZER_ADD_SPECIAL);
    // "[SEP]" typed by a user is text: "[", "sep", "]" (unknown here), like "x".
    const int32_t want[] = {2, 4, 5, 6, 7, 1, 1, 1, 1, 3};
    assert_ids(&ids, want, 10);
    size_t n;
    char *s = decode(tok, &ids, HL_TOKENIZER_SKIP_SPECIAL | HL_TOKENIZER_STRIP_SPACE, &n);
    ck_assert_str_eq(s, "hello worlds !");
    free(s);
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
}
END_TEST

// ---- GGUF metadata ----

static hl_gguf_writer *tiny_gguf(const char *model, int n) {
    hl_gguf_writer *w = hl_gguf_writer_create();
    hl_gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    hl_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt2");
    char texts[256][4];
    const char *ptrs[256];
    size_t lens[256];
    int32_t types[256];
    for (int b = 0; b < n; b++) {
        lens[b] = (size_t)hl_utf8_encode(hl_unicode_byte_to_cp((uint8_t)b), texts[b]);
        ptrs[b] = texts[b];
        types[b] = HL_TOKEN_NORMAL;
    }
    hl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, lens, (uint64_t)n);
    hl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", HL_GGUF_INT32, types, (uint64_t)n);
    hl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 0);
    hl_gguf_writer_set_str(w, "tokenizer.chat_template", "{{ messages }}");
    return w;
}

static hl_tokenizer *tok_from_writer(hl_gguf_writer *w, hl_error *err) {
    char path[] = "/tmp/hl_tok_ggufXXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_int_eq(hl_gguf_writer_write(w, path, err), HL_OK);
    hl_gguf *g = hl_gguf_open(path, err);
    ck_assert_msg(g, "%s", err->msg);
    hl_tokenizer *tok = hl_tokenizer_create_from_gguf(g, err);
    hl_gguf_free(g);
    unlink(path);
    hl_gguf_writer_free(w);
    return tok;
}

START_TEST(test_gguf_metadata) {
    hl_error err = {0};
    hl_tokenizer *tok = tok_from_writer(tiny_gguf("gpt2", 256), &err);
    ck_assert_msg(tok, "%s", err.msg);
    ck_assert_str_eq(hl_tokenizer_chat_template(tok), "{{ messages }}");
    ck_assert_int_eq(hl_tokenizer_special_ids(tok).eos, 0);
    ck_assert(hl_tokenizer_is_eog(tok, 0));
    hl_tokens ids = encode(tok, "hi there", 8, 0);
    ck_assert_uint_eq(ids.n, 8); // no merges: one token per byte
    hl_tokens_free(&ids);
    hl_tokenizer_free(tok);
    tok = tok_from_writer(tiny_gguf("rwkv", 256), &err);
    ck_assert_ptr_null(tok);
    ck_assert_int_eq(err.code, HL_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "gpt2, llama, bert"), "%s", err.msg);
    hl_gguf_writer *w = tiny_gguf("gpt2", 256);
    int32_t short_types[3] = {1, 1, 1};
    hl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", HL_GGUF_INT32, short_types, 3);
    ck_assert_ptr_null(tok_from_writer(w, &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "token_type"), "%s", err.msg);
}
END_TEST

// ---- SmolLM2 (the default model) against Hugging Face ----

START_TEST(test_smollm2_hf_corpus) {
    const char *mp = find_path("main/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!mp) mp = find_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!mp) {
        fprintf(stderr, "SKIP: SmolLM2 GGUF not found\n");
        return;
    }
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open(mp, &err);
    ck_assert_msg(g, "%s", err.msg);
    hl_tokenizer *tok = hl_tokenizer_create_from_gguf(g, &err);
    hl_gguf_free(g);
    ck_assert_msg(tok, "%s", err.msg);
    ck_assert_str_eq(hl_tokenizer_pre_name(tok), "smollm");
    ck_assert(hl_tokenizer_is_eog(tok, 2)); // <|im_end|>
    ck_assert_ptr_nonnull(hl_tokenizer_chat_template(tok));
    const char *fx = find_path("main/tests/fixtures/tokenizer/smollm2_expect.jsonl");
    if (!fx) fx = find_path("tests/fixtures/tokenizer/smollm2_expect.jsonl");
    ck_assert_msg(fx, "tests/fixtures/tokenizer/smollm2_expect.jsonl is missing");
    char p[1100];
    snprintf(p, sizeof p, "%s", fx);
    int n_bad;
    int n = check_jsonl(tok, p, "ids", 0, &n_bad);
    ck_assert_int_ge(n, 500);
    ck_assert_msg(n_bad == 0, "%d of %d strings differ from HF", n_bad, n);
    n = check_jsonl(tok, p, "ids_special", HL_TOKENIZER_PARSE_SPECIAL, &n_bad);
    ck_assert_msg(n_bad == 0, "%d of %d strings differ with special parsing", n_bad, n);
    // Round trip: bytes without a token (SmolLM2 lacks 21, e.g. 0x04, 0xF1) are dropped.
    bool has[256];
    int n_missing = 0;
    for (int b = 0; b < 256; b++) {
        char u[4];
        int ul = hl_utf8_encode(hl_unicode_byte_to_cp((uint8_t)b), u);
        has[b] = hl_tokenizer_token_id(tok, u, (size_t)ul) >= 0;
        n_missing += !has[b];
    }
    ck_assert_int_eq(n_missing, 21);
    hl_rng r = {99};
    char buf[200], kept[200];
    for (int it = 0; it < 500; it++) {
        size_t len = random_bytes(&r, buf, sizeof buf), n_kept = 0;
        for (size_t i = 0; i < len; i++) {
            if (has[(uint8_t)buf[i]]) kept[n_kept++] = buf[i];
        }
        hl_tokens ids = encode(tok, buf, len, 0);
        size_t dl;
        char *back = decode(tok, &ids, 0, &dl);
        ck_assert(dl == n_kept && memcmp(back, kept, n_kept) == 0);
        free(back);
        if (it < 100) check_stream(tok, &ids, 0);
        hl_tokens_free(&ids);
    }
    hl_tokenizer_free(tok);
}
END_TEST

Suite *tokenizer_suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("llama3");
    tcase_add_unchecked_fixture(tc, llama3_setup, llama3_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_llama3_reference_vectors);
    tcase_add_test(tc, test_llama3_hf_corpus);
    tcase_add_test(tc, test_llama3_special_tokens);
    tcase_add_test(tc, test_llama3_eog_and_lookup);
    tcase_add_test(tc, test_llama3_round_trip_random_bytes);
    tcase_add_test(tc, test_llama3_stream_equals_decode);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("core");
    tcase_set_timeout(tc2, 120);
    tcase_add_test(tc2, test_utf8_lossy_rules);
    tcase_add_test(tc2, test_bpe_merge_order);
    tcase_add_test(tc2, test_spm_small_vocab);
    tcase_add_test(tc2, test_errors);
    tcase_add_test(tc2, test_wordpiece_dispatch);
    tcase_add_test(tc2, test_gguf_metadata);
    tcase_add_test(tc2, test_smollm2_hf_corpus);
    suite_add_tcase(s, tc2);
    return s;
}
