// model: a llama-family model ready to run — its config, its tokenizer and its weights
// uploaded to a backend (which may repack them), plus the RoPE parameters the forward pass
// hands to the backend.
//
// Sources: a GGUF file (mmap'd for the load only: weights are uploaded from the mapping and
// the file is closed), a Hugging Face safetensors model (file or folder with config.json;
// F32/F16/BF16 weights; q/k rows permuted to GGUF's RoPE pairing exactly as st_import does),
// and `synthetic:<shape>:<type>` names (engine/synth.h: the same bytes `halyard synth` writes).
// Everything is checked at load: config, every tensor's presence and shape, and that the
// backend supports every weight type for its op — a model that loads never fails mid-step.
//
//   hl_model *m = hl_model_load("models/SmolLM2-135M-Instruct.Q4_1.gguf", be, NULL, &err);
//   printf("%d layers\n", m->cfg.n_layers);
//   hl_model_free(m);
#pragma once

#include "common/hl.h"
#include "engine/config.h"
#include "kernels/backend.h"
#include "tokenizer/tokenizer.h"

#define HL_MODEL_DEFAULT_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct hl_model_params {
    // A GGUF whose tokenizer to use (synthetic and safetensors models; optional for both).
    const char *tokenizer_from;
    // Synthetic models: seed of the weights (`halyard synth --seed`).
    uint64_t synth_seed;
    // Synthetic models: > 0 makes a model with this many tokens and no tokenizer (tests).
    int synth_n_vocab;
    // Keep q/k/v and gate/up as separate weights instead of fusing them (tests compare the two).
    bool no_fuse;
} hl_model_params;

hl_model_params hl_model_default_params(void);

// One transformer block's weights (backend tensors; shapes in GGUF order {ne0, ne1}).
// Fused at load: when wq, wk and wv have the same type (and row length), wqkv holds their rows
// one after the other (GGUF rows are independent blocks, so that is a valid weight of the type)
// and wq/wk/wv are empty (data NULL); likewise w_gate_up for w_gate and w_up. One matmul then
// makes all three projections. Layers whose types differ (Q4_K_M files) keep them separate.
typedef struct hl_model_layer {
    hl_tensor attn_norm; // F32 {dim}
    hl_tensor wqkv;      // {dim, (n_heads + 2 * n_kv_heads) * head_dim}, or data NULL (not fused)
    hl_tensor wq;        // {dim, n_heads * head_dim}; data NULL when fused
    hl_tensor wk;        // {dim, n_kv_heads * head_dim}; data NULL when fused
    hl_tensor wv;        // {dim, n_kv_heads * head_dim}; data NULL when fused
    hl_tensor wo;        // {n_heads * head_dim, dim}
    hl_tensor ffn_norm;  // F32 {dim}
    hl_tensor w_gate_up; // {dim, 2 * ffn_dim}: gate rows, then up rows; or data NULL (not fused)
    hl_tensor w_gate;    // {dim, ffn_dim}; data NULL when fused
    hl_tensor w_up;      // {dim, ffn_dim}; data NULL when fused
    hl_tensor w_down;    // {ffn_dim, dim}
} hl_model_layer;

typedef struct hl_model {
    hl_model_config cfg;
    hl_tokenizer *tok;          // owned; NULL only for synthetic models made with synth_n_vocab
    const char *chat_template_name; // built-in template to use when tok has none, or NULL
    char *name;                 // owned: general.name, the folder or the synthetic name
    hl_backend *be;             // borrowed; must outlive the model
    hl_tensor token_embd;       // {dim, n_vocab}
    hl_tensor output_norm;      // F32 {dim}
    hl_tensor output;           // {dim, n_vocab}; when tied, the same memory as token_embd
    hl_model_layer *layers;     // (n_layers), owned
    float *rope_factors;        // (n_rot / 2) frequency divisors, owned; NULL when none
    hl_rope rope;               // what rope_kv gets (freq_factors points at rope_factors)
    size_t weight_bytes;        // bytes of the weights as stored in the source
} hl_model;

// Loads a model from `path`: a .gguf file, a safetensors file or folder, or
// "synthetic:<shape>:<type>" (shapes and types as `halyard synth`). p may be NULL (defaults).
// The tokenizer is the GGUF's own; for safetensors, p->tokenizer_from or vocab.json +
// merges.txt (+ special_tokens.json) in the folder; for synthetic models p->tokenizer_from, else
// the default model's (HL_MODEL_DEFAULT_PATH, under $HALYARD_ROOT or the cwd), else the Llama 3
// fixture vocabulary (../shared/fixtures/llama3-tokenizer) — the vocabulary size follows it.
// NULL + err: HL_ERR_IO (files), HL_ERR_FORMAT (malformed file, missing or misshapen tensor),
// HL_ERR_INVAL (bad synthetic name), HL_ERR_UNSUPPORTED (architecture feature or weight type
// the backend cannot run, naming the tensor), HL_ERR_NOMEM.
hl_model *hl_model_load(const char *path, hl_backend *be, const hl_model_params *p, hl_error *err);

// Releases the weights (through the backend) and everything else; accepts NULL.
void hl_model_free(hl_model *m);
