// unicode: UTF-8 checking and repair, GPT-2 byte-level alphabet (see unicode.h).
#include "tokenizer/unicode.h"

// Bytes allowed right after a lead byte (Unicode Table 3-7); later continuation bytes are 80..BF.
static bool second_byte_ok(uint8_t lead, uint8_t b) {
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    return b >= 0x80 && b <= 0xBF;
}

// Sequence length announced by a lead byte; 0 when the byte can never start a character.
static size_t lead_len(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

enum hl_utf8_state hl_utf8_check(const uint8_t *s, size_t n, size_t *len) {
    HL_ASSERT(n >= 1);
    size_t need = lead_len(s[0]);
    if (need == 0) {
        *len = 1;
        return HL_UTF8_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *len = n;
            return HL_UTF8_INCOMPLETE;
        }
        bool ok = i == 1 ? second_byte_ok(s[0], s[1]) : (s[i] & 0xC0) == 0x80;
        if (!ok) {
            *len = i;
            return HL_UTF8_INVALID;
        }
    }
    *len = need;
    return HL_UTF8_VALID;
}

static void append(char **out, size_t *out_len, size_t *out_cap, const void *p, size_t n) {
    if (n == 0) return;
    if (*out_len + n + 1 > *out_cap) {
        size_t cap = *out_cap ? *out_cap : 64;
        while (cap < *out_len + n + 1) cap *= 2;
        *out = hl_xrealloc(*out, cap);
        *out_cap = cap;
    }
    memcpy(*out + *out_len, p, n);
    *out_len += n;
    (*out)[*out_len] = '\0';
}

size_t hl_utf8_lossy_append(const uint8_t *s, size_t n, bool keep_tail, char **out,
                            size_t *out_len, size_t *out_cap) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, run = 0; // s[run..i) is valid and not yet copied
    while (i < n) {
        if (s[i] < 0x80) { // hot: ASCII
            i++;
            continue;
        }
        size_t len;
        enum hl_utf8_state st = hl_utf8_check(s + i, n - i, &len);
        if (st == HL_UTF8_VALID) {
            i += len;
            continue;
        }
        append(out, out_len, out_cap, s + run, i - run);
        if (st == HL_UTF8_INCOMPLETE && keep_tail) return n - i;
        append(out, out_len, out_cap, fffd, sizeof fffd);
        i += len;
        run = i;
    }
    append(out, out_len, out_cap, s + run, i - run);
    return 0;
}

bool hl_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t len;
        if (hl_utf8_check(s + i, n - i, &len) != HL_UTF8_VALID) return false;
        i += len;
    }
    return true;
}

int hl_utf8_encode(uint32_t cp, char out[4]) {
    HL_ASSERT(cp < 0x110000);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// The 68 bytes that are not printable Latin-1 are 0x00-0x20 (33), 0x7F-0xA0 (34) and 0xAD;
// in that order they are spelled U+0100 + k.
uint32_t hl_unicode_byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 0x100 + 67;
    return b;
}

int hl_unicode_cp_to_byte(uint32_t cp) {
    if (cp >= 0x100 && cp < 0x100 + 68) {
        uint32_t k = cp - 0x100;
        if (k < 33) return (int)k;
        if (k < 67) return (int)(0x7F + k - 33);
        return 0xAD;
    }
    if (cp > 0xFF) return -1;
    if (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return -1;
    return (int)cp;
}
