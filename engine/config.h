// config: the hyperparameters of a llama-family model (Llama 2/3/3.1/3.2, SmolLM2,
// Mistral, Qwen2), read from a GGUF file's metadata or from a Hugging Face config.json,
// validated, and checked against the tensors a file actually holds.
//
// hl_model_config is plain data: constructors fill a caller's struct and validate it
// (positive sizes, dim == n_heads * head_dim unless head_dim is given explicitly,
// n_heads % n_kv_heads == 0, even head_dim, sane upper bounds), so a config that came out
// of a constructor is safe to size buffers with. Tensor names follow GGUF
// (token_embd.weight, blk.N.attn_q.weight, ...); the HF names of safetensors files
// (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ...) map to them
// with hl_model_config_hf_to_gguf_name. Shapes are in GGUF order (ne[0] contiguous), so an
// HF Linear [out, in] and its GGUF tensor both read ne = {in, out}.
//
//   hl_model_config cfg;
//   if (hl_model_config_from_gguf(g, &cfg, &err) != HL_OK) return err.code;
//   if (hl_model_config_check_tensors(&cfg, HL_NAMING_GGUF, hl_model_config_lookup_gguf, g,
//                                     &err) != HL_OK) return err.code;
#pragma once

#include "common/hl.h"
#include "engine/gguf.h"
#include "engine/safetensors.h"

enum hl_arch {
    HL_ARCH_LLAMA = 0, // Llama 2/3/3.x, SmolLM2, Mistral (GGUF "llama"; HF llama, mistral)
    HL_ARCH_QWEN2 = 1, // llama layout plus q/k/v biases
};

enum hl_rope_scaling_type {
    HL_ROPE_SCALING_NONE = 0,
    HL_ROPE_SCALING_LINEAR = 1,      // positions divided by factor
    HL_ROPE_SCALING_LLAMA3 = 2,      // Llama 3.1 per-frequency scaling (factor, low/high, orig)
    HL_ROPE_SCALING_FREQ_TENSOR = 3, // GGUF from llama.cpp: per-frequency divisors stored in
                                     // tensor rope_freqs.weight (n_rot/2 F32), llama3 baked in
};

typedef struct hl_rope_scaling {
    enum hl_rope_scaling_type type;
    float factor;           // LINEAR, LLAMA3
    float low_freq_factor;  // LLAMA3
    float high_freq_factor; // LLAMA3
    int original_ctx;       // LLAMA3: original_max_position_embeddings
} hl_rope_scaling;

#define HL_CONFIG_MAX_EOS 8

typedef struct hl_model_config {
    enum hl_arch arch;
    int n_vocab;         // rows of token_embd
    int dim;             // residual width (hidden_size, embedding_length)
    int n_layers;
    int n_heads;         // query heads
    int n_kv_heads;      // key/value heads (GQA); divides n_heads
    int head_dim;        // per head; q is n_heads * head_dim wide (== dim unless explicit)
    int ffn_dim;         // SwiGLU hidden width
    int n_ctx_train;     // context length the model was trained for
    int n_rot;           // leading dims of each head that RoPE rotates (even, <= head_dim)
    float rope_theta;    // base frequency
    hl_rope_scaling rope_scaling;
    float rms_eps;
    bool tied_embeddings; // output projection reuses token_embd (no output.weight)
    bool qkv_bias;       // q/k/v projections have biases (Qwen2)
    int sliding_window;  // attention window in tokens (Mistral v0.1); 0 = full attention
    int bos_id;          // -1 when unknown
    int eos_id;          // the first end-of-sequence id, -1 when unknown
    int n_eos_ids;       // every id that ends generation (eos, eot, eom), eos_id first
    int eos_ids[HL_CONFIG_MAX_EOS];
} hl_model_config;

const char *hl_model_config_arch_name(enum hl_arch arch); // "llama", "qwen2"
const char *hl_model_config_rope_scaling_name(enum hl_rope_scaling_type type); // "llama3"

// Fills cfg from GGUF metadata (`<arch>.block_count`, `.embedding_length`, ...; vocab from
// `<arch>.vocab_size`, else the tokenizer.ggml.tokens length; tied when output.weight is
// absent) and validates it. HL_ERR_UNSUPPORTED for another architecture or RoPE scaling
// type; HL_ERR_FORMAT for missing or mistyped keys; HL_ERR_INVAL when validation fails.
int hl_model_config_from_gguf(const hl_gguf *g, hl_model_config *cfg, hl_error *err);

// Fills cfg from the text of a Hugging Face config.json (n_bytes of json; need not be
// NUL-terminated) and validates it. model_type llama, mistral or qwen2; rope_scaling none,
// linear or llama3. HL_ERR_FORMAT for bad JSON or mistyped fields, HL_ERR_UNSUPPORTED for
// other model types / scaling types / biases / activations, HL_ERR_INVAL as validate.
int hl_model_config_from_hf_json(const char *json, size_t n_bytes, hl_model_config *cfg,
                                 hl_error *err);

// Same from a file: `path` is a config.json or a folder that holds one. HL_ERR_IO when it
// cannot be read.
int hl_model_config_from_hf_file(const char *path, hl_model_config *cfg, hl_error *err);

// HL_OK when every field is in range and consistent; HL_ERR_INVAL naming the first field
// that is not. The constructors call it; call it again after editing a config by hand.
int hl_model_config_validate(const hl_model_config *cfg, hl_error *err);

// ---- tensors ----

enum hl_tensor_naming {
    HL_NAMING_GGUF = 0, // blk.N.attn_q.weight
    HL_NAMING_HF = 1,   // model.layers.N.self_attn.q_proj.weight
};

typedef struct hl_model_tensor_info {
    int dtype;  // enum hl_dtype
    int n_dims;
    int64_t ne[HL_SAFETENSORS_MAX_DIMS]; // GGUF order; unused dims 1
} hl_model_tensor_info;

// Looks a tensor up by name in some file: true and *out filled when present.
typedef bool (*hl_model_tensor_lookup_fn)(void *ctx, const char *name,
                                          hl_model_tensor_info *out);

// Lookups over the two file formats; ctx is the hl_gguf * or hl_safetensors *.
bool hl_model_config_lookup_gguf(void *ctx, const char *name, hl_model_tensor_info *out);
bool hl_model_config_lookup_safetensors(void *ctx, const char *name,
                                        hl_model_tensor_info *out);

// Checks that every tensor of the llama layout exists with its shape: token_embd,
// output_norm, output (required unless tied; checked when present), and per layer
// attn_norm, attn_q/k/v, attn_output, ffn_norm, ffn_gate/up/down (+ q/k/v biases when
// qkv_bias, + rope_freqs.weight for FREQ_TENSOR scaling), and that there is no layer
// n_layers. Names are spelled per `naming`. HL_ERR_FORMAT naming the first missing or
// misshapen tensor.
int hl_model_config_check_tensors(const hl_model_config *cfg, enum hl_tensor_naming naming,
                                  hl_model_tensor_lookup_fn lookup, void *ctx, hl_error *err);

// Writes the GGUF name of an HF llama-layout tensor name into out (out_size bytes).
// HL_ERR_UNSUPPORTED when the name is not part of the layout (e.g. rotary_emb.inv_freq:
// callers skip those), HL_ERR_INVAL when out is too small. Note: converting weights needs
// more than renaming: llama.cpp's GGUF "llama" RoPE pairs adjacent dims while HF pairs
// halves, so q_proj/k_proj rows must be permuted (convert_hf_to_gguf.py's permute); Qwen2
// is not permuted.
int hl_model_config_hf_to_gguf_name(const char *hf_name, char *out, size_t out_size,
                                    hl_error *err);

// The reverse mapping; same errors (rope_freqs.weight has no HF name).
int hl_model_config_gguf_to_hf_name(const char *gguf_name, char *out, size_t out_size,
                                    hl_error *err);

// ---- sizes ----

// Number of weights of the layout described by cfg (embeddings counted once when tied).
int64_t hl_model_config_n_params(const hl_model_config *cfg);

// Bytes of a K+V cache for n_ctx tokens of every layer at elem_bytes per value
// (2 for fp16): 2 * n_layers * n_ctx * n_kv_heads * head_dim * elem_bytes.
// HL_ERR_INVAL for n_ctx < 0 or elem_bytes == 0, HL_ERR_NOMEM when it overflows size_t.
int hl_model_config_kv_bytes(const hl_model_config *cfg, int64_t n_ctx, size_t elem_bytes,
                             size_t *out, hl_error *err);

// out[i] for i < n_rot/2: the divisor of RoPE frequency i (theta^(-2i/n_rot)) implied by
// the scaling: 1 for NONE, factor for LINEAR, the Llama 3.1 smooth ramp for LLAMA3 (as
// convert_hf_to_gguf.py writes into rope_freqs.weight). n must be n_rot/2. HL_ERR_INVAL for
// another n, or for FREQ_TENSOR scaling (read rope_freqs.weight instead).
int hl_model_config_rope_freq_factors(const hl_model_config *cfg, float *out, int n,
                                      hl_error *err);
