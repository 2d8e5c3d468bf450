// spm: SentencePiece-style BPE (GGUF tokenizer.ggml.model = llama: Llama 2, Mistral,
// TinyLlama), as llama.cpp runs it.
//
// Spaces become '▁' (U+2581) and, when asked, one '▁' is put in front. The text starts as
// one symbol per UTF-8 character; the adjacent pair whose joined text is a token with the
// highest score merges first (ties: leftmost), until no pair joins into a token. A final
// symbol that is not a token falls back to its bytes' <0xXX> tokens, or to unk.
//
//   hl_spm *sp = hl_spm_create(&vocab, unk_id, &err);
//   hl_spm_encode(sp, "Hello world", 11, true, &ids, &err);  // ▁Hello ▁world
//   hl_spm_free(sp);
#pragma once

#include "tokenizer/vocab.h"

typedef struct hl_spm hl_spm;

// vocab is borrowed and must outlive the hl_spm; unk_id is -1 when the model has none.
hl_spm *hl_spm_create(const hl_vocab *vocab, int32_t unk_id, hl_error *err);
void hl_spm_free(hl_spm *sp); // accepts NULL

// Appends the ids of text[0..len) to out, with a leading '▁' when add_space_prefix.
// HL_OK, or HL_ERR_UNSUPPORTED when a byte has neither a <0xXX> token nor unk,
// HL_ERR_INVAL for text over 2^30 bytes. Thread-safe.
int hl_spm_encode(const hl_spm *sp, const char *text, size_t len, bool add_space_prefix,
                  hl_tokens *out, hl_error *err);
