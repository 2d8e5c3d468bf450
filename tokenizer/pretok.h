// pretok: the pre-tokenizers of byte-level BPE models — the regex splits that cut text
// into pieces before merges run, chosen by GGUF's `tokenizer.ggml.pre`.
//
// A pre-tokenizer is one or more PCRE2 patterns (UTF + UCP, JIT-compiled) applied in
// sequence, each splitting every piece of the previous stage into matches and the gaps
// between them (Hugging Face's `Split(..., behavior="isolated")`); the pieces always
// concatenate back to the input. `\s` is read as Unicode White_Space (U+0085 included), as
// Rust's regex and Oniguruma read it. Invalid UTF-8 never matches a pattern, so invalid
// bytes end up in gap pieces of their own and still round-trip.
//
//   hl_pretok *p = hl_pretok_create("llama-bpe", &err);
//   hl_pretok_split(p, text, len, on_piece, ctx, &err);   // on_piece(ctx, piece, n, err)
//   hl_pretok_free(p);
#pragma once

#include "common/hl.h"

typedef struct hl_pretok hl_pretok;

// Compiles the named pre-tokenizer: "default" and "gpt2" (GPT-2's pattern), "llama-bpe" and
// "llama3" (Llama 3 / cl100k), "smollm" (each \p{N} alone, then GPT-2's pattern, as SmolLM2's
// Digits + ByteLevel pre-tokenizer), "qwen2" (Llama 3's pattern with single digits).
// NULL + HL_ERR_UNSUPPORTED listing the known names for any other name.
hl_pretok *hl_pretok_create(const char *name, hl_error *err);
void hl_pretok_free(hl_pretok *p); // accepts NULL

// Comma-separated list of the names hl_pretok_create accepts.
const char *hl_pretok_names(void);

// Receives one piece (never empty); a non-HL_OK return stops the split and is passed on.
typedef int (*hl_pretok_piece_fn)(void *ctx, const char *piece, size_t len, hl_error *err);

// Splits text[0..len) and calls fn for each piece in order. Thread-safe: the compiled
// patterns are shared read-only and match data is per call. HL_OK, fn's error, or
// HL_ERR_INVAL when PCRE2 fails (e.g. its match limit).
int hl_pretok_split(const hl_pretok *p, const char *text, size_t len, hl_pretok_piece_fn fn,
                    void *ctx, hl_error *err);
