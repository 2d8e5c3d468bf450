// st_import: converts a Hugging Face llama-family model in safetensors (a .safetensors file
// or a folder, sharded or not, with config.json) into a GGUF of a chosen file type — what
// llama.cpp's convert_hf_to_gguf.py + llama-quantize do, in one pass.
//
// Conversion details that matter for correctness: tensor names map HF → GGUF; q_proj and
// k_proj rows are permuted from HF's half-split RoPE pairing to GGUF llama's adjacent pairs
// (Qwen2 keeps NeoX order and is not permuted); llama3 RoPE scaling becomes a
// rope_freqs.weight tensor as llama.cpp expects.
//
//   hl_st_import_gguf("Llama-3.2-1B/", "l1b-q4_k_m.gguf", HL_FTYPE_Q4_K_M, NULL, &err);
#pragma once

#include "common/hl.h"
#include "engine/config.h"

// Writes `out` from the model at `in`. The tokenizer comes from tokenizer_gguf (a GGUF whose
// tokenizer.* keys are copied) or, when NULL, from vocab.json + merges.txt in the model's
// folder. HL_ERR_IO / HL_ERR_FORMAT / HL_ERR_UNSUPPORTED with a message naming the file or tensor.
int hl_st_import_gguf(const char *in, const char *out, int ftype, const char *tokenizer_gguf,
                      hl_error *err);

// Rows of a q_proj/k_proj weight that loaders of HF llama models permute the same way (the
// engine's safetensors loader uses these two, so import and direct load cannot disagree).
// The number of heads to permute GGUF tensor gguf_name's rows over: n_heads for attn_q,
// n_kv_heads for attn_k of the llama arch; 0 (no permutation) for anything else.
int hl_st_import_perm_heads(const hl_model_config *c, const char *gguf_name);
// The HF row that GGUF row `row` of an (n_rows)-row matrix of n_heads heads comes from; `row`
// itself when n_heads <= 0.
int64_t hl_st_import_source_row(int64_t row, int64_t n_rows, int n_heads);
