// tokenizer: text <-> token ids for the models halyard serves. One facade over byte-level
// BPE (tokenizer.ggml.model = gpt2: Llama 3, SmolLM2, Qwen2), SentencePiece BPE (llama:
// Llama 2, Mistral, TinyLlama) and WordPiece (bert), built from GGUF metadata, from plain
// arrays or from Hugging Face vocab.json + merges.txt.
//
// Special tokens: text that spells a control token (<|eot_id|>, <|im_start|>) becomes that
// token only with HL_TOKENIZER_PARSE_SPECIAL; otherwise it is ordinary text, so text from a
// user can never open or close a turn. User-defined (added, non-special) tokens are always
// matched whole, as in Hugging Face and llama.cpp. Matching is leftmost-longest.
//
// Decoding returns the exact bytes (decode(encode(x)) == x for byte-level BPE, even for
// invalid UTF-8). HL_TOKENIZER_VALID_UTF8 repairs invalid UTF-8 the way Hugging Face's
// decode does (String::from_utf8_lossy: one U+FFFD per maximal invalid subpart); the
// streaming detokenizer always repairs, holds back an incomplete trailing character until
// the next token completes it, and so never emits a broken sequence: the concatenation of
// its output equals decode(ids, VALID_UTF8) however the ids are split.
//
// An hl_tokenizer is immutable after creation: encode/decode are safe from many threads.
//
//   hl_tokenizer *tok = hl_tokenizer_create_from_gguf(gguf, &err);
//   hl_tokens ids = {0};
//   hl_tokenizer_encode(tok, "Hello", 5, HL_TOKENIZER_ADD_SPECIAL, &ids, &err);
//   hl_tokens_free(&ids); hl_tokenizer_free(tok);
#pragma once

#include "common/hl.h"
#include "tokenizer/vocab.h"

typedef struct hl_tokenizer hl_tokenizer;
typedef struct hl_gguf hl_gguf; // engine/gguf.h; only tokload.c reads it

enum hl_tokenizer_model {
    HL_TOKENIZER_BPE = 0,       // byte-level BPE (gpt2)
    HL_TOKENIZER_SPM = 1,       // SentencePiece BPE (llama)
    HL_TOKENIZER_WORDPIECE = 2, // bert
};

enum hl_tokenizer_flag {
    HL_TOKENIZER_ADD_SPECIAL = 1 << 0,   // encode: add BOS / EOS where the model asks for them
    HL_TOKENIZER_PARSE_SPECIAL = 1 << 1, // encode: control-token text becomes the control token
    HL_TOKENIZER_SKIP_SPECIAL = 1 << 2,  // decode: leave out control and unknown tokens
    HL_TOKENIZER_VALID_UTF8 = 1 << 3,    // decode: repair invalid UTF-8 with U+FFFD
    HL_TOKENIZER_STRIP_SPACE = 1 << 4,   // decode: drop one leading space (SentencePiece prefix)
};

// Everything a tokenizer is made of, as borrowed arrays (copied by hl_tokenizer_create).
typedef struct hl_tokenizer_spec {
    enum hl_tokenizer_model model;
    const char *pre;                 // BPE pre-tokenizer (hl_pretok names); NULL = "default"
    int32_t n_tokens;
    const char *const *tokens;       // (n_tokens) token texts as the model file spells them
    const size_t *token_lens;        // (n_tokens) byte lengths; NULL: tokens are NUL-terminated
    const int32_t *token_types;      // (n_tokens) enum hl_token_type; NULL: all normal
    const float *scores;             // (n_tokens) SentencePiece scores; NULL: all 0
    int32_t n_merges;
    const char *const *merges;       // (n_merges) "left right", best rank first (BPE)
    const size_t *merge_lens;        // NULL: merges are NUL-terminated
    int32_t bos_id, eos_id, eot_id, eom_id, pad_id, unk_id; // -1 = none
    bool add_bos, add_eos;           // what HL_TOKENIZER_ADD_SPECIAL adds
    bool add_space_prefix;           // SentencePiece: '▁' in front of the text
    int ignore_merges;               // BPE: 1 on, 0 off, -1 from pre (on for llama-bpe/llama3)
    bool lowercase;                  // WordPiece: lower-case and strip accents
    const char *chat_template;       // Jinja source or NULL
} hl_tokenizer_spec;

// A spec with no tokens, every id -1, add_space_prefix true, ignore_merges -1.
hl_tokenizer_spec hl_tokenizer_default_spec(void);

// Builds a tokenizer from spec (everything copied). NULL + err: HL_ERR_INVAL for a bad
// count or an id out of range, HL_ERR_FORMAT for malformed merges or token types,
// HL_ERR_UNSUPPORTED for an unknown pre-tokenizer (the message lists the known ones) or a
// model this build cannot run.
hl_tokenizer *hl_tokenizer_create(const hl_tokenizer_spec *spec, hl_error *err);

// Reads tokenizer.ggml.{model, pre, tokens, token_type, scores, merges, bos/eos/eot/eom/
// padding/unknown_token_id, add_bos_token, add_eos_token, add_space_prefix} and
// tokenizer.chat_template. The result does not borrow from g. NULL + err as above, or
// HL_ERR_FORMAT for missing/mistyped keys and arrays whose length disagrees with the tokens.
hl_tokenizer *hl_tokenizer_create_from_gguf(const hl_gguf *g, hl_error *err);

// A byte-level BPE from Hugging Face files: vocab_json ({"token": id, ...}), merges_txt (one
// "left right" per line, optional "#version" header) and special_json (NULL, or a JSON array
// of {"id", "content"[, "special"]} objects: control tokens, or user-defined when "special"
// is false). Ids must cover 0..n-1 with no hole. BOS/EOS/EOT/EOM are found by their usual
// names (<|begin_of_text|>/<s>, <|end_of_text|>/</s>/<|endoftext|>, <|eot_id|>/<|im_end|>,
// <|eom_id|>); add_bos is on when a BOS was found. pre as in hl_tokenizer_spec.
// NULL + err (HL_ERR_IO, HL_ERR_FORMAT with file and reason).
hl_tokenizer *hl_tokenizer_create_from_hf_files(const char *vocab_json, const char *merges_txt,
                                                const char *special_json, const char *pre,
                                                hl_error *err);

void hl_tokenizer_free(hl_tokenizer *tok); // accepts NULL

// Appends the ids of text[0..len) to out (flags: ADD_SPECIAL, PARSE_SPECIAL). Byte-level
// BPE drops a byte its vocabulary has no token for (as Hugging Face does); SentencePiece
// uses <0xXX> tokens, then unk. HL_OK, or HL_ERR_INVAL / HL_ERR_UNSUPPORTED (SentencePiece:
// neither a byte token nor unk); out may then hold a partial result.
int hl_tokenizer_encode(const hl_tokenizer *tok, const char *text, size_t len, unsigned flags,
                        hl_tokens *out, hl_error *err);

// Decodes ids into a new NUL-terminated heap buffer *out of *out_len bytes (caller frees;
// flags: SKIP_SPECIAL, VALID_UTF8, STRIP_SPACE). HL_ERR_INVAL for an id out of range
// (nothing is allocated then).
int hl_tokenizer_decode(const hl_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                        char **out, size_t *out_len, hl_error *err);

// Finds the leftmost-longest special token in text[0..len): user-defined tokens always,
// control and unknown tokens only when flags has PARSE_SPECIAL. Returns its id with its
// position in *pos and length in *n_bytes, or -1 when there is none.
int32_t hl_tokenizer_find_special(const hl_tokenizer *tok, const char *text, size_t len,
                                  unsigned flags, size_t *pos, size_t *n_bytes);

// ---- vocabulary ----
int32_t hl_tokenizer_n_tokens(const hl_tokenizer *tok);
enum hl_tokenizer_model hl_tokenizer_model(const hl_tokenizer *tok);
// The token's text as the model spells it ("Ġhello") / the bytes it decodes to (" hello").
// NULL when id is out of range. Borrowed from tok; not NUL-terminated in general.
const char *hl_tokenizer_token_text(const hl_tokenizer *tok, int32_t id, size_t *len);
const char *hl_tokenizer_token_bytes(const hl_tokenizer *tok, int32_t id, size_t *len);
// enum hl_token_type of id; -1 when out of range.
int hl_tokenizer_token_type(const hl_tokenizer *tok, int32_t id);
// Id of the token whose text is exactly text[0..len), or -1.
int32_t hl_tokenizer_token_id(const hl_tokenizer *tok, const char *text, size_t len);

// Special ids (-1 when the model has none) and what ADD_SPECIAL adds.
typedef struct hl_tokenizer_ids {
    int32_t bos, eos, eot, eom, pad, unk;
} hl_tokenizer_ids;
hl_tokenizer_ids hl_tokenizer_special_ids(const hl_tokenizer *tok);
bool hl_tokenizer_adds_bos(const hl_tokenizer *tok);
bool hl_tokenizer_adds_eos(const hl_tokenizer *tok);

// True for every id that ends generation: eos, eot, eom and control tokens named
// <|im_end|>, <|eot_id|>, <|eom_id|>, <|end_of_text|>, <|endoftext|>, <|end|>,
// <end_of_turn>, </s>, <EOT>. False for ids out of range.
bool hl_tokenizer_is_eog(const hl_tokenizer *tok, int32_t id);

// tokenizer.chat_template (Jinja source) or NULL; the pre-tokenizer name ("" for non-BPE).
const char *hl_tokenizer_chat_template(const hl_tokenizer *tok);
const char *hl_tokenizer_pre_name(const hl_tokenizer *tok);

// ---- streaming detokenizer ----
typedef struct hl_tokenizer_stream hl_tokenizer_stream;

// A stream over tok (borrowed, must outlive it); flags: SKIP_SPECIAL, STRIP_SPACE.
hl_tokenizer_stream *hl_tokenizer_stream_create(const hl_tokenizer *tok, unsigned flags);
void hl_tokenizer_stream_free(hl_tokenizer_stream *s); // accepts NULL

// Feeds one id. *text/*len receive the valid UTF-8 that is now complete (possibly empty),
// borrowed until the next call on s. HL_ERR_INVAL for an id out of range (s unchanged).
int hl_tokenizer_stream_push(hl_tokenizer_stream *s, int32_t id, const char **text, size_t *len,
                             hl_error *err);

// Ends the stream: an incomplete trailing character comes out as U+FFFD. The stream is then
// empty and can be reused.
void hl_tokenizer_stream_finish(hl_tokenizer_stream *s, const char **text, size_t *len);
