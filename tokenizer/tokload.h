// tokload: reads a tokenizer description from a file into an hl_tokenizer_spec — GGUF
// tokenizer.* metadata, or Hugging Face vocab.json + merges.txt (+ a special-token list).
// hl_tokenizer_create_from_gguf / _from_hf_files are the public entry points; this module
// only parses and validates, so the tokenizer itself never touches file formats.
//
// Every count, id and array length read from a file is checked before use; a bad file is an
// HL_ERR_FORMAT with the key or file named, never a crash.
//
//   hl_tokload l;
//   if (hl_tokload_gguf(&l, gguf, &err) == HL_OK) tok = hl_tokenizer_create(&l.spec, &err);
//   hl_tokload_deinit(&l);
#pragma once

#include "engine/gguf.h"
#include "tokenizer/tokenizer.h"

typedef struct hl_tokload {
    hl_tokenizer_spec spec; // arrays point into the fields below (or into the hl_gguf)
    const char **tokens;    // owned array; strings borrowed from the gguf / the JSON tree
    size_t *token_lens;     // owned
    int32_t *types;         // owned
    float *scores;          // owned
    const char **merges;    // owned array; strings borrowed from the gguf / merges_buf
    size_t *merge_lens;     // owned
    char *pre;              // owned
    char *chat_template;    // owned
    char *merges_buf;       // owned: merges.txt contents
    char *respelled;        // owned: BERT tokens turned back from llama.cpp's phantom spaces
    void *json;             // owned cJSON trees (vocab, special tokens)
    void *json_special;
} hl_tokload;

// Fills l from a GGUF's metadata; l borrows strings from g, which must outlive l's use.
// HL_OK, or HL_ERR_FORMAT / HL_ERR_UNSUPPORTED (unknown tokenizer.ggml.model) with the key
// named. l is always safe to deinit.
int hl_tokload_gguf(hl_tokload *l, const hl_gguf *g, hl_error *err);

// Fills l from Hugging Face files (see hl_tokenizer_create_from_hf_files). HL_OK, HL_ERR_IO
// or HL_ERR_FORMAT with the file named. l is always safe to deinit.
int hl_tokload_hf_files(hl_tokload *l, const char *vocab_json, const char *merges_txt,
                        const char *special_json, const char *pre, hl_error *err);

void hl_tokload_deinit(hl_tokload *l);
