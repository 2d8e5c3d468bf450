// embed_job: the compute side of an embedding job (hl_engine_embed_submit): checking and copying
// its inputs, driving its forward passes on borrowed KV blocks and pooling the final-norm hidden
// states into one vector per input (mean or last token, then L2 normalization if asked). It knows
// nothing of streams, locks or the request queue: engine/engine.c keeps those, builds a job on
// the submitting thread and calls hl_embed_job_run between two generation steps.
//
// One run is one forward pass: as many whole inputs as fit max_batched_tokens, max_seqs and the
// free KV blocks, or one input longer than max_batched_tokens in back-to-back chunks. The blocks
// are reserved for the run and given back before it returns, so no generation step sees them and
// nothing enters the prefix cache. A job is done when next == n_inputs; out then holds every
// input's vector. Not thread-safe: after init, only the engine thread touches a job or the ctx.
//
//   hl_embed_job_ctx c = {.llama = l, .kv = kv, .dim = 576, .n_vocab = V, .max_ctx = 2048,
//                         .max_batched_tokens = 512, .max_seqs = 64};
//   hl_embed_job j;
//   if (hl_embed_job_init(&j, &c, tokens, start, n_inputs, &p, &err) == HL_OK)
//       while (j.next < j.n_inputs && hl_embed_job_run(&c, &j, &n_tok, &err) == HL_OK) {}
//   ... j.out ..., hl_embed_job_deinit(&j); hl_embed_job_ctx_deinit(&c);
#pragma once

#include "common/hl.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/llama.h"

// What runs embedding jobs: the engine's model and cache, and its limits. The caller fills the
// borrowed fields and the limits; the scratch starts NULL and belongs to the ctx.
typedef struct hl_embed_job_ctx {
    hl_llama *llama;          // borrowed, must outlive the ctx
    hl_kv_cache *kv;          // borrowed, must outlive the ctx
    int dim;                  // hidden size: floats per vector
    int n_vocab, max_ctx;     // token ids in [0, n_vocab); an input holds at most max_ctx tokens
    int max_batched_tokens;   // tokens per forward pass (>= 1)
    int max_seqs;             // sequences per forward pass (>= 1)
    // Scratch of hl_embed_job_run, allocated by its first call, freed by hl_embed_job_ctx_deinit:
    float *hidden;            // owned (max_batched_tokens, dim) hidden states of one pass
    double *pool_sum;         // owned (dim) the running sum of one input's rows
    hl_kv_seq *kv_seqs;       // owned (max_seqs) blocks borrowed for one pass
    hl_llama_seq *lseqs;      // owned (max_seqs) the pass's sequences
} hl_embed_job_ctx;

// One job: n_inputs inputs, input i = tokens[start[i] .. start[i + 1]).
typedef struct hl_embed_job {
    hl_embed_params p;
    int n_inputs;
    int32_t *tokens;          // owned: every input back to back
    int *start;               // owned (n_inputs + 1) offsets into tokens, start[0] = 0
    float *out;               // owned (n_inputs, dim) vectors; a caller may take it (and set NULL)
    int next;                 // inputs done: out rows [0, next) are final
} hl_embed_job;

// Checks inputs as hl_engine_embed_submit documents them (tokens[start[i] .. start[i + 1]) for
// i < n_inputs; non-empty inputs of at most c->max_ctx tokens, ids in [0, c->n_vocab); pooling
// MEAN or LAST) and copies them into *j (offsets rebased to 0). p is copied. Reads only the
// limits of c, so any thread may call it. HL_ERR_INVAL for bad inputs, HL_ERR_NOMEM when the job
// cannot be allocated; on error *j holds nothing (hl_embed_job_deinit is still safe).
int hl_embed_job_init(hl_embed_job *j, const hl_embed_job_ctx *c, const int32_t *tokens, const int *start,
                      int n_inputs, const hl_embed_params *p, hl_error *err);

// Frees what j owns (out too, unless taken); j may be zeroed or failed init. NULL is fine.
void hl_embed_job_deinit(hl_embed_job *j);

// Runs j's next forward pass (j->next < j->n_inputs): whole inputs packed into one pass, or one
// long input in chunks; writes their vectors to j->out, advances j->next and adds the tokens run
// to *n_tokens. HL_ERR_BUSY (nothing run) when too few KV blocks are free for the next input now,
// HL_ERR_NOMEM when the scratch cannot be allocated, or the forward pass's error (the blocks are
// given back either way). Engine thread only.
int hl_embed_job_run(hl_embed_job_ctx *c, hl_embed_job *j, uint64_t *n_tokens, hl_error *err);

// Frees the scratch of c (not what it borrows). NULL is fine.
void hl_embed_job_ctx_deinit(hl_embed_job_ctx *c);
