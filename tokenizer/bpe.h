// bpe: byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen2): turns one pre-tokenized piece
// of raw bytes into token ids by applying merges in rank order.
//
// A piece starts as one symbol per byte (the token spelling that byte in GPT-2's alphabet).
// The adjacent pair with the lowest merge rank is merged first, ties going to the leftmost
// pair, until no adjacent pair has a merge — Hugging Face `tokenizers`' order. Pairs wait in
// a binary heap keyed by (rank, position), so a piece of n bytes costs O(n log n), not the
// quadratic rescans of naive BPE. With ignore_merges (Llama 3) a piece that is itself a
// token is emitted at once, as Hugging Face and tiktoken do.
//
//   hl_bpe *b = hl_bpe_create(&vocab, merges, merge_lens, n_merges, true, &err);
//   hl_bpe_scratch *s = hl_bpe_scratch_create();
//   hl_bpe_encode_piece(b, s, " hello", 6, &ids, &err);
#pragma once

#include "tokenizer/vocab.h"

typedef struct hl_bpe hl_bpe;
typedef struct hl_bpe_scratch hl_bpe_scratch;

// Builds the merge table from n_merges lines "left right" (merges[i], merge_lens[i] bytes,
// rank i; the split is the first space after the first byte, as llama.cpp reads them).
// vocab is borrowed and must outlive the hl_bpe. A merge whose left, right or joined text
// is not a token, or that repeats an earlier pair, is skipped with one warning for all.
// NULL + HL_ERR_FORMAT for a merge line without a space.
hl_bpe *hl_bpe_create(const hl_vocab *vocab, const char *const *merges, const size_t *merge_lens,
                      int32_t n_merges, bool ignore_merges, hl_error *err);
void hl_bpe_free(hl_bpe *b); // accepts NULL

// Number of merges kept, and the pair of token ids merged at a rank (0 <= rank < n).
int32_t hl_bpe_n_merges(const hl_bpe *b);
void hl_bpe_merge_at(const hl_bpe *b, int32_t rank, int32_t *left, int32_t *right);

// Per-thread working memory for hl_bpe_encode_piece (grows as needed).
hl_bpe_scratch *hl_bpe_scratch_create(void);
void hl_bpe_scratch_free(hl_bpe_scratch *s); // accepts NULL

// Appends the ids of piece[0..len) to out. A byte that has no token (SmolLM2 lacks 21 of
// the 256, e.g. 0x04 and 0xF1) is dropped, as Hugging Face's BPE does without an unk token;
// llama.cpp throws there, and mapping it to unk would put an end-of-text id into a prompt.
// HL_OK, or HL_ERR_INVAL for a piece longer than 2^31 bytes. Thread-safe for distinct
// scratches.
int hl_bpe_encode_piece(const hl_bpe *b, hl_bpe_scratch *s, const char *piece, size_t len,
                        hl_tokens *out, hl_error *err);
