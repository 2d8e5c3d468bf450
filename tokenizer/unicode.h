// unicode: the few Unicode facts the tokenizers need — UTF-8 sequence checking with the
// "maximal subpart" rule, lossy UTF-8 repair, and GPT-2's byte <-> code point mapping.
//
// Lossy repair follows Unicode's recommended practice (the one Rust's
// String::from_utf8_lossy and Python's bytes.decode("utf-8", "replace") use): every
// maximal invalid subpart becomes one U+FFFD, so "\xE2\x82A" gives "\uFFFDA" and
// "\xF0\x80" gives two U+FFFD. Byte-level BPE vocabularies spell byte b as the code point
// hl_unicode_byte_to_cp(b): printable Latin-1 bytes stand for themselves and the other
// 68 bytes map, in increasing order, to U+0100..U+0143 (so the space byte is 'Ġ').
//
//   size_t len;
//   if (hl_utf8_check(s, n, &len) == HL_UTF8_VALID) s += len;   // one whole character
//   uint32_t cp = hl_unicode_byte_to_cp(' ');                   // 0x120
#pragma once

#include "common/hl.h"

enum hl_utf8_state {
    HL_UTF8_VALID = 0,      // a complete, valid sequence of *len bytes
    HL_UTF8_INCOMPLETE = 1, // the n bytes are a valid prefix that more bytes could complete
    HL_UTF8_INVALID = 2,    // a maximal invalid subpart of *len bytes (1..3)
};

// Classifies the bytes at s (n >= 1 available) and stores in *len how many bytes the
// valid character, incomplete prefix (then *len == n) or invalid subpart spans.
enum hl_utf8_state hl_utf8_check(const uint8_t *s, size_t n, size_t *len);

// Appends the lossy UTF-8 repair of s[0..n) to *out (a heap buffer of *out_cap bytes holding
// *out_len bytes; grown with hl_xrealloc). When keep_tail is true an incomplete sequence at the
// very end is not repaired; its length is returned so the caller can hold it back (streaming).
// Otherwise the whole input is consumed and 0 is returned.
size_t hl_utf8_lossy_append(const uint8_t *s, size_t n, bool keep_tail, char **out,
                            size_t *out_len, size_t *out_cap);

// True when s[0..n) is entirely valid UTF-8.
bool hl_utf8_valid(const uint8_t *s, size_t n);

// Writes the UTF-8 encoding of cp (< 0x110000) to out; returns its length (1..4).
int hl_utf8_encode(uint32_t cp, char out[4]);

// GPT-2 byte-level alphabet: the code point that spells byte b, and the byte a code point
// spells (-1 when cp is not in the alphabet).
uint32_t hl_unicode_byte_to_cp(uint8_t b);
int hl_unicode_cp_to_byte(uint32_t cp);
