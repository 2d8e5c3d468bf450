// embeddings: the OpenAI /v1/embeddings surface — the request body parsed and checked into an
// hl_embeddings_request, its inputs turned into token ids, and the response JSON (vectors as
// JSON numbers or as base64 of little-endian float32, OpenAI's two encoding_formats).
//
// input is a string, an array of strings, an array of token ids, or an array of arrays of token
// ids: 1 to HL_EMBEDDINGS_MAX_INPUTS inputs, none empty, each at most the context, all together at
// most HL_EMBEDDINGS_MAX_TOKENS tokens. halyard extensions: "pooling": "mean" | "last" and
// "normalize": bool (default true: unit vectors, as OpenAI's models return). The engine computes
// the vectors (hl_engine_embed_submit); server/http.c glues the two together.
//
//   hl_embeddings_request r; hl_api_error ae;
//   if (hl_embeddings_parse(root, &r, &ae) == HL_OK &&
//       hl_embeddings_encode(&r, tok, max_ctx, &ae) == HL_OK) { ...submit r.ids / r.start... }
//   hl_embeddings_response(&r, vecs, dim, "default", &body, &ae); hl_embeddings_request_free(&r);
#pragma once

#include <cJSON.h>

#include "engine/engine.h"
#include "server/buf.h"
#include "server/openai.h"
#include "tokenizer/tokenizer.h"

#define HL_EMBEDDINGS_MAX_INPUTS 2048     // OpenAI's limit on input entries
#define HL_EMBEDDINGS_MAX_TOKENS 300000   // OpenAI's limit on the tokens of one request

// One embeddings request. Everything is owned.
typedef struct hl_embeddings_request {
    char *model;           // requested model name or NULL
    char *user;
    int n_inputs;
    char **texts;          // (n_inputs) text inputs, or NULL when token ids were given
    int32_t *ids;          // every input's token ids back to back (after hl_embeddings_encode)
    int *start;            // (n_inputs + 1) offsets of the inputs in ids
    int n_tokens;          // start[n_inputs]
    bool base64;           // encoding_format "base64" (else "float")
    int dimensions;        // the "dimensions" field; 0 when absent
    hl_embed_params params; // pooling ("pooling") and normalize ("normalize")
} hl_embeddings_request;

// Frees everything r owns and zeroes it; accepts a zeroed request.
void hl_embeddings_request_free(hl_embeddings_request *r);

// Parses a /v1/embeddings body (root: a JSON object) into *out (zeroed first; free it with
// hl_embeddings_request_free whatever the result). Token-id inputs are stored in out->ids at
// once (checked non-negative integers, not yet against a vocabulary). HL_ERR_INVAL + e (400,
// param naming the field) for a missing, empty or mistyped input, too many inputs or tokens, a
// bad encoding_format, pooling, normalize, dimensions, model or user.
int hl_embeddings_parse(const cJSON *root, hl_embeddings_request *out, hl_api_error *e);

// Turns text inputs into token ids with tok (as completion prompts: special tokens parsed, BOS
// added when the model adds one), then checks every input: not empty, at most max_ctx tokens,
// ids inside tok's vocabulary, HL_EMBEDDINGS_MAX_TOKENS in all. HL_ERR_INVAL + e (400; code
// context_length_exceeded for a long input) otherwise.
int hl_embeddings_encode(hl_embeddings_request *r, const hl_tokenizer *tok, int max_ctx, hl_api_error *e);

// Appends the response to out: {"object": "list", "data": [{"object": "embedding", "index": i,
// "embedding": [...] or "base64"}], "model": model, "usage": {"prompt_tokens", "total_tokens"}}.
// vecs: (r->n_inputs, dim) floats. HL_ERR_INVAL + e (500) when a value is not finite (nothing is
// appended then).
int hl_embeddings_response(const hl_embeddings_request *r, const float *vecs, int dim, const char *model,
                           hl_buf *out, hl_api_error *e);

// Standard base64 (RFC 4648, with padding) of n bytes of p, appended to out.
void hl_embeddings_base64(const uint8_t *p, size_t n, hl_buf *out);
