// generate: single-sequence generation, the loop behind `halyard run` — prefill the prompt in
// chunks, then decode token by token with the sampler, streaming text pieces from the
// incremental detokenizer through a stop-string matcher, until an end-of-generation token,
// a stop string, max_tokens, the context limit or the caller says stop.
//
// An hl_generator keeps its sequence's KV blocks and tokens between calls: a new prompt that
// starts with tokens already in the cache (the next turn of a chat that re-renders its whole
// history) only prefills what is new. The batching engine (engine/engine.h) is the path for
// concurrent requests; this one is for one user at a terminal and for measurements.
//
//   hl_generator *g = hl_generator_create(model, 4096, 256, &err);
//   hl_generate_params p = hl_generate_default_params();
//   hl_generate_result res;
//   hl_generator_run(g, ids, n, &p, print_piece, NULL, &res, &err);
//   hl_generator_free(g);
#pragma once

#include "common/hl.h"
#include "engine/model.h"
#include "engine/sampler.h"

typedef struct hl_generator hl_generator;

typedef struct hl_generate_params {
    hl_sampler_params sampling;   // max_tokens, stop ids, penalties, seed ... (copied per call)
    const char *const *stop;      // stop strings (not emitted), borrowed for the call
    int n_stop;
    const int32_t *eog_ids;       // extra end-of-generation ids (a chat template's turn end), or NULL
    int n_eog_ids;
} hl_generate_params;

// Greedy sampling, no limit but the context, no stop strings.
hl_generate_params hl_generate_default_params(void);

enum hl_generate_finish {
    HL_GENERATE_EOG = 0,         // an end-of-generation or stop id
    HL_GENERATE_STOP_STRING = 1, // a stop string matched
    HL_GENERATE_LENGTH = 2,      // max_tokens
    HL_GENERATE_CONTEXT = 3,     // the context (n_ctx of the generator) is full
    HL_GENERATE_CANCELLED = 4,   // the text callback returned false
};

const char *hl_generate_finish_name(enum hl_generate_finish f); // "eog", "stop", "length", ...

typedef struct hl_generate_result {
    enum hl_generate_finish finish;
    int n_prompt;        // prompt tokens of the call
    int n_cached;        // of which were already in the KV cache (not prefilled again)
    int n_generated;     // tokens sampled (the end-of-generation token included)
    double prompt_ms;    // prefill time, up to the first sampled token
    double gen_ms;       // decode time after the first sampled token
} hl_generate_result;

// Receives text as it becomes final (valid UTF-8, possibly empty pieces are skipped); return
// false to stop generating.
typedef bool (*hl_generate_text_fn)(void *ctx, const char *text, size_t len);

// A generator for model (borrowed, with a tokenizer) holding up to n_ctx tokens, prefilling
// at most prefill_chunk tokens per step. NULL + HL_ERR_INVAL for bad sizes or a model without
// a tokenizer; HL_ERR_NOMEM.
hl_generator *hl_generator_create(const hl_model *model, int n_ctx, int prefill_chunk, hl_error *err);
// As hl_generator_create, with K/V elements of kv_type (HL_DTYPE_F16, F32 or I8; the cache's
// errors of hl_kv_cache_create for another type or one the backend lacks).
hl_generator *hl_generator_create_kv(const hl_model *model, int n_ctx, int prefill_chunk, int kv_type,
                                     hl_error *err);
void hl_generator_free(hl_generator *g); // accepts NULL

// Generates after prompt[0..n_prompt) (n_prompt >= 1). Text goes to on_text (may be NULL).
// End-of-generation ids: every id the tokenizer reports as such (hl_tokenizer_is_eog), the
// config's eos_ids and p->eog_ids, unless p->sampling.ignore_eos. res (optional) gets counts
// and timings. HL_ERR_INVAL for a prompt that does not fit n_ctx or bad sampling params; the
// forward pass's errors otherwise. After an error the generator's cache is emptied.
int hl_generator_run(hl_generator *g, const int32_t *prompt, int n_prompt, const hl_generate_params *p,
                     hl_generate_text_fn on_text, void *ctx, hl_generate_result *res, hl_error *err);

// The tokens now in the generator's KV cache (prompt and generated, in order): borrowed.
const int32_t *hl_generator_tokens(const hl_generator *g, int *n);
