// wordpiece_tables: the Unicode data BERT's basic tokenizer needs, generated from Hugging Face
// tokenizers' own BertNormalizer / BertPreTokenizer by tests/fixtures/make_bert_expect.py
// --tables (so halyard agrees with `tokenizers`, not with some other Unicode version): a class
// per code point (dropped control, whitespace, CJK ideograph, punctuation) and the per-character
// lower-case and accent-stripping (NFD minus nonspacing marks) mappings.
//
//   uint32_t out[HL_WPT_MAP_MAX];
//   if (hl_wordpiece_tables_class(cp) & HL_WPT_PUNCT) { ... }
//   int n = hl_wordpiece_tables_strip(cp, out); // 0..HL_WPT_MAP_MAX code points
#pragma once

#include <stdint.h>

enum {
    HL_WPT_REMOVE = 1, // dropped by clean_text: NUL, U+FFFD, control/format/unassigned (not \t\n\r)
    HL_WPT_SPACE = 2,  // whitespace: a word boundary
    HL_WPT_CJK = 4,    // CJK ideograph: always a word of its own
    HL_WPT_PUNCT = 8,  // punctuation (Unicode P* and ASCII symbols): a word of its own
};

// Longest mapping a single code point can produce.
#define HL_WPT_MAP_MAX 4

// Class bits of cp (0 for ordinary characters and for cp >= 0x110000).
uint8_t hl_wordpiece_tables_class(uint32_t cp);

// Writes the lower-case form of cp to out (room for HL_WPT_MAP_MAX); returns how many code
// points (1 with out[0] = cp when cp has no lower-case mapping).
int hl_wordpiece_tables_lower(uint32_t cp, uint32_t *out);

// Writes cp with accents stripped (NFD, nonspacing marks removed) to out; returns how many code
// points, 0 when cp is itself a nonspacing mark.
int hl_wordpiece_tables_strip(uint32_t cp, uint32_t *out);
