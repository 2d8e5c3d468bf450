// wordpiece: BERT's WordPiece tokenizer, matching Hugging Face `tokenizers` (BertNormalizer +
// BertPreTokenizer + WordPiece) id for id. The basic tokenizer cleans the text (drops NUL,
// U+FFFD, control and format characters; whitespace becomes a boundary), puts every CJK
// ideograph in a word of its own, optionally strips accents (NFD minus nonspacing marks) and
// lower-cases, and splits punctuation off; each word is then split greedily, longest match
// first, into vocabulary pieces with "##" continuations. A word longer than 100 characters or
// with no complete split becomes [UNK].
//
// Text that spells a special token ("[SEP]") is encoded as ordinary text, never as the token.
// Invalid UTF-8 bytes are dropped like U+FFFD.
//
//   hl_wordpiece *wp = hl_wordpiece_create_from_vocab_txt("vocab.txt", true, true, &err);
//   int32_t *ids; size_t n;
//   if (hl_wordpiece_encode(wp, "Hello!", 6, true, &ids, &n, &err) == HL_OK) { ...; free(ids); }
//   hl_wordpiece_free(wp);
#pragma once

#include "common/hl.h"

typedef struct hl_wordpiece hl_wordpiece;

// Builds a tokenizer from n_tokens vocabulary strings (token i has id i; tokens[i] holds lens[i]
// bytes, not necessarily NUL-terminated; all are copied). When a string occurs twice the later
// id wins, as in `tokenizers`. lowercase / strip_accents as in the model's tokenizer config
// (uncased BERT: both true). NULL + HL_ERR_INVAL for n_tokens < 1 or a NULL token with a
// nonzero length; NULL + HL_ERR_FORMAT when the vocabulary has no "[UNK]".
hl_wordpiece *hl_wordpiece_create(const char *const *tokens, const size_t *lens, int32_t n_tokens,
                                  bool lowercase, bool strip_accents, hl_error *err);

// Reads a BERT vocab.txt (one token per line, id = line number, trailing "\r" ignored). NULL +
// HL_ERR_IO when the file cannot be read, otherwise as hl_wordpiece_create.
hl_wordpiece *hl_wordpiece_create_from_vocab_txt(const char *path, bool lowercase,
                                                 bool strip_accents, hl_error *err);

void hl_wordpiece_free(hl_wordpiece *wp); // accepts NULL

// Encodes text[0..len) into *ids (heap array of *n_ids ids, caller frees; non-NULL even when
// *n_ids is 0). add_special wraps the ids in [CLS] ... [SEP]. HL_ERR_INVAL when add_special is
// set and the vocabulary lacks [CLS] or [SEP], or text is NULL with len > 0.
int hl_wordpiece_encode(const hl_wordpiece *wp, const char *text, size_t len, bool add_special,
                        int32_t **ids, size_t *n_ids, hl_error *err);

// Ids of the special tokens, -1 when the vocabulary lacks them ([UNK] always exists).
int32_t hl_wordpiece_cls(const hl_wordpiece *wp);
int32_t hl_wordpiece_sep(const hl_wordpiece *wp);
int32_t hl_wordpiece_pad(const hl_wordpiece *wp);
int32_t hl_wordpiece_unk(const hl_wordpiece *wp);
int32_t hl_wordpiece_mask(const hl_wordpiece *wp);

int32_t hl_wordpiece_n_tokens(const hl_wordpiece *wp);

// Text of token id (borrowed from wp, NUL-terminated), NULL when id is out of range.
const char *hl_wordpiece_token(const hl_wordpiece *wp, int32_t id);
