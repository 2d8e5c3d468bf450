// vocab: token table and decoded bytes (see vocab.h).
#include "tokenizer/vocab.h"

#include <stdlib.h>

#include "tokenizer/unicode.h"

void hl_tokens_push(hl_tokens *t, int32_t id) {
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->ids = hl_xrealloc(t->ids, t->cap * sizeof *t->ids);
    }
    t->ids[t->n++] = id;
}

void hl_tokens_free(hl_tokens *t) {
    if (!t) return;
    free(t->ids);
    *t = (hl_tokens){0};
}

// Byte-level text -> bytes: each alphabet character is one byte; anything else (a
// mislabelled token, invalid UTF-8) is copied unchanged. Returns the number of bytes written.
static size_t decode_byte_level(const uint8_t *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t len;
        if (hl_utf8_check(s + i, n - i, &len) != HL_UTF8_VALID) {
            out[o++] = (char)s[i++];
            continue;
        }
        uint32_t cp = s[i];
        if (len == 2) cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
        int b = len <= 2 ? hl_unicode_cp_to_byte(cp) : -1;
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, s + i, len);
            o += len;
        }
        i += len;
    }
    return o;
}

// SentencePiece text -> bytes: '▁' (E2 96 81) becomes ' '.
static size_t decode_spm(const uint8_t *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
            out[o++] = ' ';
            i += 2;
            continue;
        }
        out[o++] = (char)s[i];
    }
    return o;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// "<0xXX>" -> the byte, or -1.
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// WordPiece: "##ing" -> "ing", "walk" -> " walk".
static size_t decode_wordpiece(const char *s, size_t n, char *out) {
    if (n >= 2 && s[0] == '#' && s[1] == '#') {
        memcpy(out, s + 2, n - 2);
        return n - 2;
    }
    out[0] = ' ';
    memcpy(out + 1, s, n);
    return n + 1;
}

static size_t decode_token(enum hl_vocab_kind kind, int type, const char *s, size_t n, char *out) {
    bool raw = type == HL_TOKEN_CONTROL || type == HL_TOKEN_UNKNOWN;
    if (raw) {
        memcpy(out, s, n);
        return n;
    }
    if (kind == HL_VOCAB_WORDPIECE) return decode_wordpiece(s, n, out);
    if (kind == HL_VOCAB_BYTE_LEVEL) {
        if (type == HL_TOKEN_USER_DEFINED) {
            memcpy(out, s, n);
            return n;
        }
        return decode_byte_level((const uint8_t *)s, n, out);
    }
    // Any "<0xXX>" is a byte, whatever its type says (Hugging Face's ByteFallback decoder).
    int b = byte_token_value(s, n);
    if (b >= 0) {
        out[0] = (char)b;
        return 1;
    }
    return decode_spm((const uint8_t *)s, n, out);
}

static int check_input(int32_t n, const char *const *texts, const size_t *lens,
                       const int32_t *types, size_t *total, hl_error *err) {
    if (n <= 0) return hl_errorf(err, HL_ERR_INVAL, "vocabulary is empty");
    size_t sum = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!texts[i] && lens[i]) return hl_errorf(err, HL_ERR_INVAL, "token %d has no text", i);
        if (types && (types[i] < 0 || types[i] >= HL_TOKEN_TYPE_COUNT))
            return hl_errorf(err, HL_ERR_FORMAT, "token %d has unknown type %d", i, types[i]);
        if (!hl_add_ok(sum, 2 * (lens[i] + 2), &sum) || sum > UINT32_MAX)
            return hl_errorf(err, HL_ERR_FORMAT, "vocabulary text is larger than 4 GiB");
    }
    *total = sum;
    return HL_OK;
}

int hl_vocab_init(hl_vocab *v, int32_t n, const char *const *texts, const size_t *lens,
                  const int32_t *types, const float *scores, enum hl_vocab_kind kind,
                  hl_error *err) {
    *v = (hl_vocab){0};
    size_t total = 0;
    int rc = check_input(n, texts, lens, types, &total, err);
    if (rc) return rc;
    v->n_tokens = n;
    v->arena = hl_xmalloc(total);
    v->text_off = hl_xmalloc((size_t)n * sizeof *v->text_off);
    v->text_len = hl_xmalloc((size_t)n * sizeof *v->text_len);
    v->bytes_off = hl_xmalloc((size_t)n * sizeof *v->bytes_off);
    v->bytes_len = hl_xmalloc((size_t)n * sizeof *v->bytes_len);
    v->type = hl_xmalloc((size_t)n);
    v->score = hl_xcalloc((size_t)n, sizeof *v->score);
    v->text_map = hl_strmap_create((size_t)n);
    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        v->type[i] = (uint8_t)(types ? types[i] : HL_TOKEN_NORMAL);
        if (scores) v->score[i] = scores[i];
        v->text_off[i] = (uint32_t)off;
        v->text_len[i] = (uint32_t)lens[i];
        if (lens[i]) memcpy(v->arena + off, texts[i], lens[i]);
        off += lens[i];
        v->arena[off++] = '\0';
        v->bytes_off[i] = (uint32_t)off;
        v->bytes_len[i] = (uint32_t)decode_token(kind, v->type[i], v->arena + v->text_off[i],
                                                  lens[i], v->arena + off);
        off += v->bytes_len[i];
        v->arena[off++] = '\0';
        hl_strmap_put(v->text_map, v->arena + v->text_off[i], lens[i], i);
    }
    return HL_OK;
}

void hl_vocab_deinit(hl_vocab *v) {
    if (!v) return;
    free(v->arena);
    free(v->text_off);
    free(v->text_len);
    free(v->bytes_off);
    free(v->bytes_len);
    free(v->type);
    free(v->score);
    hl_strmap_free(v->text_map);
    *v = (hl_vocab){0};
}
