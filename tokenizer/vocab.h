// vocab: the token table every tokenizer model shares — each token's text as the model
// file spells it, the bytes it decodes to, its type and score — plus the growable id
// vector (hl_tokens) that encoders append to.
//
// Decoded bytes are computed once at load: byte-level BPE vocabularies undo GPT-2's byte
// alphabet ("Ġhello" -> " hello"), SentencePiece vocabularies turn '▁' into a space and
// "<0x0A>" byte tokens into the byte, WordPiece vocabularies put a space before each token
// that starts a word and drop "##" from continuations; control, unknown and (byte-level)
// user-defined tokens decode to their text unchanged. The table is read-only after hl_vocab_init.
//
//   hl_vocab v;
//   if (hl_vocab_init(&v, n, texts, lens, types, scores, HL_VOCAB_BYTE_LEVEL, &err)) ...;
//   int32_t id = hl_strmap_get(v.text_map, "Ġhello", 7);
//   hl_vocab_deinit(&v);
#pragma once

#include "common/hl.h"
#include "tokenizer/strmap.h"

// GGUF's tokenizer.ggml.token_type values (llama.cpp's numbering).
enum hl_token_type {
    HL_TOKEN_UNDEFINED = 0,
    HL_TOKEN_NORMAL = 1,
    HL_TOKEN_UNKNOWN = 2,
    HL_TOKEN_CONTROL = 3,      // <|eot_id|>, <s>: text parsed only when the caller allows it
    HL_TOKEN_USER_DEFINED = 4, // added tokens that are always matched whole in text
    HL_TOKEN_UNUSED = 5,
    HL_TOKEN_BYTE = 6,         // SentencePiece byte fallback <0xXX>
    HL_TOKEN_TYPE_COUNT
};

// A growable array of token ids. Zero-initialise; hl_tokens_free releases it.
typedef struct hl_tokens {
    int32_t *ids; // owned
    size_t n;
    size_t cap;
} hl_tokens;

void hl_tokens_push(hl_tokens *t, int32_t id);
void hl_tokens_free(hl_tokens *t); // frees ids and zeroes the struct; accepts NULL

enum hl_vocab_kind {
    HL_VOCAB_BYTE_LEVEL = 0,    // GPT-2 byte alphabet (tokenizer.ggml.model = gpt2)
    HL_VOCAB_SENTENCEPIECE = 1, // '▁' for spaces, <0xXX> byte tokens (model = llama)
    HL_VOCAB_WORDPIECE = 2,     // "##x" continues a word, other normal tokens start one (" x")
};

typedef struct hl_vocab {
    int32_t n_tokens;
    char *arena;          // owned: every text and decoded byte string, NUL-separated
    uint32_t *text_off;   // owned, (n_tokens): token text as the file spells it
    uint32_t *text_len;   // owned, (n_tokens)
    uint32_t *bytes_off;  // owned, (n_tokens): what the token decodes to
    uint32_t *bytes_len;  // owned, (n_tokens)
    uint8_t *type;        // owned, (n_tokens): enum hl_token_type
    float *score;         // owned, (n_tokens): SentencePiece scores (0 when the file has none)
    hl_strmap *text_map;  // owned: text -> id (the first id wins when texts repeat)
} hl_vocab;

// Copies n tokens (texts[i], lens[i] bytes; types and scores may be NULL for all-normal
// and all-zero). HL_OK, or HL_ERR_INVAL/HL_ERR_FORMAT for a bad count, an unknown type or
// more than 4 GiB of text; v is then left empty (hl_vocab_deinit is still safe).
int hl_vocab_init(hl_vocab *v, int32_t n, const char *const *texts, const size_t *lens,
                  const int32_t *types, const float *scores, enum hl_vocab_kind kind,
                  hl_error *err);
void hl_vocab_deinit(hl_vocab *v);

// Token text / decoded bytes of id (0 <= id < n_tokens, checked by HL_ASSERT).
static inline const char *hl_vocab_text(const hl_vocab *v, int32_t id, size_t *len) {
    HL_ASSERT(id >= 0 && id < v->n_tokens);
    *len = v->text_len[id];
    return v->arena + v->text_off[id];
}
static inline const char *hl_vocab_bytes(const hl_vocab *v, int32_t id, size_t *len) {
    HL_ASSERT(id >= 0 && id < v->n_tokens);
    *len = v->bytes_len[id];
    return v->arena + v->bytes_off[id];
}
