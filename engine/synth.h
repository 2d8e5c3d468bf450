// synth: models of real shapes with deterministic random weights, for benchmarks and
// kernel work on machines that cannot download weights.
//
// A weight's value depends only on (seed, tensor name, element index) through
// hl_hash64, so any backend (the CUDA one included) can generate identical weights
// element by element, and the same model is produced whatever the order of generation.
// Shapes: tiny (dim 256, 4 layers, 8 heads, 2 KV heads, FFN 768), s135 (SmolLM2-135M),
// l1b (Llama-3.2-1B), l8b (Llama-3-8B); all with RoPE theta 500000 and RMS eps 1e-5.
// Matrices are uniform with std 1/sqrt(fan_in); embeddings and the output matrix are
// scaled so the logits have a standard deviation of about 3 (not flat); norms are 1.
//
//   const hl_synth_shape *s = hl_synth_shape_find("tiny");
//   hl_synth_write_gguf(s, HL_FTYPE_Q8_0, 42, tokenizer_src, "tiny.gguf", &err);
//
// The same tensors can be made in memory (hl_synth_model: `synthetic:<shape>:<type>` models):
// one plan serves both, so the bytes equal those of the file written with that seed and vocabulary.
#pragma once

#include "common/hl.h"
#include "engine/gguf.h"

typedef struct hl_synth_shape {
    const char *name;
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, n_ctx;
    bool tied;             // no output.weight: logits use token_embd
    float rope_theta, rms_eps;
    float rope_scale;      // llama3 RoPE scaling factor; 0 = none
    float rope_low_freq, rope_high_freq;
    int rope_orig_ctx;
} hl_synth_shape;

// The named shape, or NULL (the caller lists hl_synth_shape_names() in its error).
const hl_synth_shape *hl_synth_shape_find(const char *name);
const char *hl_synth_shape_names(void); // "tiny, s135, l1b, l8b"

// Weight value of element i of the tensor called `name`, for a tensor whose std is `std`.
float hl_synth_value(uint64_t seed, const char *name, uint64_t i, float std);

// Standard deviation used for a tensor of the llama layout with row length ne0 (1 for norms).
float hl_synth_std(const char *name, int64_t ne0, int dim);

// A tokenizer to embed: either the tokenizer.* metadata of another GGUF, or a Hugging Face
// byte-level BPE vocabulary (vocab.json + merges.txt [+ special_tokens.json]) in a folder.
typedef struct hl_synth_tokenizer {
    const hl_gguf *from_gguf; // borrowed; or NULL
    const char *hf_dir;       // borrowed; or NULL
} hl_synth_tokenizer;

// Adds the tokenizer.* metadata of tok to w (a GGUF's copied verbatim; a Hugging Face folder's
// converted to tokenizer.ggml.* keys with the llama-bpe pre-tokenizer). Returns the vocabulary
// size, or -1 with err filled.
int64_t hl_synth_add_tokenizer(hl_gguf_writer *w, const hl_synth_tokenizer *tok, hl_error *err);

// Writes a GGUF with the shape, file type (enum hl_ftype) and tokenizer given; the vocabulary
// size follows the tokenizer. Streams tensor data, so l8b needs no more memory than a chunk.
// HL_ERR_INVAL / HL_ERR_FORMAT / HL_ERR_IO with a message.
int hl_synth_write_gguf(const hl_synth_shape *shape, int ftype, uint64_t seed,
                        const hl_synth_tokenizer *tok, const char *path, hl_error *err);

// ---- in memory ----

typedef struct hl_synth_model hl_synth_model;

typedef struct hl_synth_tensor_info {
    const char *name; // GGUF name, owned by the hl_synth_model
    int type;         // enum hl_dtype, as hl_synth_write_gguf would store it
    int n_dims;       // 1 or 2
    int64_t ne[2];    // ne[0] contiguous; ne[1] = 1 for 1-D tensors
    size_t n_bytes;
} hl_synth_tensor_info;

// The tensor plan of hl_synth_write_gguf(shape, ftype, seed) for a vocabulary of n_vocab tokens
// (names, order and types as in the file). NULL + HL_ERR_INVAL for an unknown ftype or a
// vocabulary outside 1..2^24. Free with hl_synth_model_free.
hl_synth_model *hl_synth_model_create(const hl_synth_shape *shape, int ftype, uint64_t seed,
                                      int64_t n_vocab, hl_error *err);
void hl_synth_model_free(hl_synth_model *m); // accepts NULL

int hl_synth_model_n_tensors(const hl_synth_model *m);
// Tensor i (0 <= i < n_tensors, HL_ASSERT).
hl_synth_tensor_info hl_synth_model_tensor(const hl_synth_model *m, int i);
// Index of the tensor called name, or -1.
int hl_synth_model_find(const hl_synth_model *m, const char *name);

// Writes tensor i's bytes (exactly those of the file) to dst, which holds n_bytes ==
// hl_synth_model_tensor(m, i).n_bytes (else HL_ERR_INVAL). Thread-safe for distinct dst.
int hl_synth_model_fill(const hl_synth_model *m, int i, void *dst, size_t n_bytes, hl_error *err);
