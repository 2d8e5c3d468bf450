// engine: the public, thread-safe serving engine. One engine thread owns the model, the
// paged KV cache, the scheduler and the samplers; any thread may submit, cancel and read.
//
// A request is a token sequence plus sampling parameters. The engine thread runs
// iteration-level continuous batching (engine/sched): every step takes every running
// decode plus prefill chunks under a token budget, runs one forward pass, samples, and
// pushes events into each request's stream. A request ends with exactly one FINISH event
// (stop, length, cancelled, timeout or error) — no request is ever dropped silently.
// Text is not the engine's business: detokenization and stop strings happen in the
// caller (the server), which cancels a request once a stop string has matched.
//
//   hl_engine *e = hl_engine_create(&params, &err);
//   uint64_t id; hl_engine_submit(e, ids, n, &rp, &id, &err);
//   hl_event ev[16]; int n; while (hl_engine_read(e, id, ev, 16, -1, &n, &err) == HL_OK) { ... }
//   hl_engine_release(e, id); hl_engine_free(e);
#pragma once

#include "common/hl.h"
#include "engine/sampler.h"

typedef struct hl_engine hl_engine;
typedef struct hl_model hl_model;

typedef struct hl_engine_params {
    const char *model;            // GGUF path, safetensors folder or "synthetic:<shape>:<type>"
    const char *tokenizer_from;   // GGUF whose tokenizer synthetic models use; NULL: default model
    const char *device;           // "cpu" (default) or "cuda"
    int n_threads;                // CPU threads; <= 0: one per core
    size_t kv_cache_mb;           // CPU: size of the KV block pool; 0: enough for max_seqs x 2048 tokens
    float kv_cache_fraction;      // CUDA: fraction of the device memory free after weights and
                                  // activations that holds KV blocks (default 0.9); kv_cache_mb wins
    int kv_cache_dtype;           // K/V element type: HL_DTYPE_F16 (default), HL_DTYPE_F32 or HL_DTYPE_I8
                                  // (int8 codes + a float scale per row: about half of f16's bytes)
    int max_batched_tokens;       // token budget of one step (decodes + prefill chunks); default 512
    int max_seqs;                 // running sequences at most; default 64
    int max_ctx;                  // prompt + output tokens of one sequence at most; 0: the model's
    int max_waiting;              // queued requests beyond which submit says HL_ERR_BUSY; default 1024
    bool prefix_cache;            // reuse cached KV blocks of shared prompt prefixes; default true
    bool graphs;                  // replay decode steps from graphs where the backend can (CUDA); default true
    // Sample every row from its whole downloaded logits even where the backend's top-k
    // candidates give the same result (no bias/penalties: greedy, top_k, or temperature / top_p /
    // min_p draws, which fetch the whole row only when the draw falls past the candidates).
    // Tests; default false.
    bool full_logits;
    // Profiler capture around forward steps profile_first .. profile_last (1-based, counted over
    // the steps that run the model; 0 = off): the backend's profiler_start before the first and
    // profiler_stop after the last (`--profile-steps A-B`; CUDA: nsys --capture-range=cudaProfilerApi).
    int profile_first, profile_last;
    // Synthetic models only (tests, benchmarks): > 0 makes a model with this many tokens and no
    // tokenizer; the seed of its weights. Default 0, 0.
    int synth_n_vocab;
    uint64_t synth_seed;
} hl_engine_params;

hl_engine_params hl_engine_default_params(void);

// Parses `--profile-steps` text: "A-B" (forward steps A through B, 1-based) or "A" (step A
// only) into p->profile_first / profile_last. HL_ERR_INVAL (p unchanged) for anything else,
// A < 1, B < A or numbers past 10^9.
int hl_engine_parse_profile_steps(const char *text, hl_engine_params *p, hl_error *err);

// Loads the model and starts the engine thread. NULL + err (HL_ERR_IO, HL_ERR_FORMAT,
// HL_ERR_UNSUPPORTED, HL_ERR_NOMEM, HL_ERR_DEVICE) on failure. Strings in p are copied.
hl_engine *hl_engine_create(const hl_engine_params *p, hl_error *err);

// Cancels every request (their streams get a CANCELLED finish), stops the thread, frees all.
// Accepts NULL. Streams not yet released become invalid.
void hl_engine_free(hl_engine *e);

// The loaded model (tokenizer, config): read-only and safe to use from any thread while the
// engine lives. Borrowed.
const hl_model *hl_engine_model(const hl_engine *e);

typedef struct hl_request_params {
    hl_sampler_params sampling;   // what the sampler gets; pointers in it are copied at submit
    int n;                        // completions sharing the prompt (its KV blocks are shared); default 1
    int priority;                 // lower runs first among waiting requests (vLLM); default 0, FCFS within
    double deadline_ms;           // hl_time_ms() after which the request ends with TIMEOUT; 0: none
} hl_request_params;

hl_request_params hl_request_default_params(void);

// Queues a request. The tokens are copied. *id identifies its event stream until
// hl_engine_release. HL_ERR_INVAL (empty prompt, prompt or prompt + max_tokens over max_ctx,
// bad sampling params — the message says which), HL_ERR_BUSY (queue full: retry later).
int hl_engine_submit(hl_engine *e, const int32_t *tokens, int n_tokens, const hl_request_params *p,
                     uint64_t *id, hl_error *err);

// Asks the engine to end request id (at any stage); its KV blocks are freed at the next step
// boundary and the stream ends with a CANCELLED finish. Unknown or finished ids are ignored.
void hl_engine_cancel(hl_engine *e, uint64_t id);

enum hl_event_type { HL_EVENT_TOKEN = 0, HL_EVENT_FINISH = 1 };

enum hl_finish_reason {
    HL_FINISH_NONE = 0,
    HL_FINISH_STOP = 1,      // an end-of-generation or stop token (not included in usage text)
    HL_FINISH_LENGTH = 2,    // max_tokens or the context limit
    HL_FINISH_CANCELLED = 3, // hl_engine_cancel or engine shutdown
    HL_FINISH_TIMEOUT = 4,   // the deadline passed
    HL_FINISH_ERROR = 5,     // the engine failed this request; message in hl_event.error
};

const char *hl_finish_reason_name(enum hl_finish_reason r); // "stop", "length", ...

typedef struct hl_event {
    enum hl_event_type type;
    int index;                    // which of the n completions
    // TOKEN:
    int32_t token;
    float logprob;                // NAN unless sampling.logprobs
    int n_top;
    hl_token_logprob top[HL_SAMPLER_MAX_LOGPROBS];
    double t_ms;                  // hl_time_ms() when the token was sampled
    // FINISH (one per completion index; the stream ends after the last index's FINISH):
    enum hl_finish_reason finish;
    int prompt_tokens;            // usage
    int completion_tokens;        // sampled tokens, a final stop token (never streamed) included
    int cached_tokens;            // prompt tokens served from the prefix cache
    double queue_ms;              // submit → first scheduled
    double ttft_ms;               // submit → first token
    double total_ms;              // submit → finish
    char error[128];
} hl_event;

// Reads up to max events of request id into ev (*n_out of them). timeout_ms < 0 waits until at
// least one event is there, 0 polls, > 0 waits at most that long (then *n_out may be 0).
// HL_OK; HL_ERR_INVAL for an unknown id. After the last FINISH has been read, reads return
// HL_OK with *n_out = 0 at once.
int hl_engine_read(hl_engine *e, uint64_t id, hl_event *ev, int max, int timeout_ms, int *n_out,
                   hl_error *err);

// A file descriptor that is readable while request id has unread events (an eventfd), for event
// loops; -1 for an unknown id. Owned by the engine; valid until hl_engine_release.
int hl_engine_fd(hl_engine *e, uint64_t id);

// Frees request id's stream. Cancels the request first if it is still running. Accepts
// unknown ids.
void hl_engine_release(hl_engine *e, uint64_t id);

typedef struct hl_engine_stats {
    int running, waiting;
    // used + free = total; cached: unreferenced blocks kept for the prefix cache (part of free:
    // they are evicted, least recently used first, only when a block is needed)
    int kv_blocks_total, kv_blocks_used, kv_blocks_free, kv_blocks_cached;
    // full prompt blocks (before the last prompt token) looked up / found, at every admission
    uint64_t prefix_queries, prefix_hits;
    uint64_t preemptions;
    uint64_t steps;
    uint64_t prompt_tokens, generated_tokens; // prompt tokens run (cache hits excluded) / sampled
    int last_batch_tokens, last_batch_seqs;
    uint64_t batch_size_hist[8];            // steps by sequences: 1, 2-3, 4-7, ..., 64-127, 128+
    // logit rows downloaded as top-k candidates / those of them fetched whole after all (a draw
    // without top-k that fell past the candidates)
    uint64_t candidate_rows, candidate_fallbacks;
} hl_engine_stats;

// A consistent snapshot of the engine's counters (taken under the engine's lock).
void hl_engine_get_stats(hl_engine *e, hl_engine_stats *out);

// ---- embeddings ----
//
// An embedding is a pooled hidden state of the loaded (decoder) model: the engine thread runs a
// prefill of each input on borrowed KV blocks (chunked under max_batched_tokens; several short
// inputs share one forward pass), takes the final-norm hidden states (after output_norm, before
// the output matmul), pools them and gives the blocks back — no sampling, nothing enters the
// prefix cache. Embedding jobs take turns with generation steps: at most one forward pass of a
// job (or one whole chunked input) runs between two generation steps. A job waits while the
// KV pool has too few free blocks for its next input.

enum hl_pooling {
    HL_POOLING_MEAN = 0, // mean over the input's tokens
    HL_POOLING_LAST = 1, // the last token's state (what a causal model has seen all of)
};

typedef struct hl_embed_params {
    enum hl_pooling pooling; // default HL_POOLING_MEAN
    bool normalize;          // scale each vector to unit L2 norm (a zero vector stays zero); default true
} hl_embed_params;

hl_embed_params hl_embed_default_params(void);

// Size of one embedding: the model's hidden dimension.
int hl_engine_embed_dim(const hl_engine *e);

// Queues an embedding job over n_inputs inputs; input i is tokens[start[i] .. start[i + 1])
// (start has n_inputs + 1 ascending offsets; the tokens are copied). *id names the job's stream
// until hl_engine_release: hl_engine_fd / hl_engine_read / hl_engine_cancel work as for a
// generation request, and the stream ends with one FINISH event (index 0): STOP when the
// vectors are ready (prompt_tokens = every input's tokens), CANCELLED, or ERROR (message in
// hl_event.error). HL_ERR_INVAL (no input, an empty input or one longer than max_ctx, a token id
// outside the vocabulary, bad params — the message says which), HL_ERR_BUSY (queue full:
// generation requests and embedding jobs together are over max_waiting, or shutting down).
int hl_engine_embed_submit(hl_engine *e, const int32_t *tokens, const int *start, int n_inputs,
                           const hl_embed_params *p, uint64_t *id, hl_error *err);

// Copies the vectors of finished job id into out ((n_inputs, dim) floats, input by input,
// caller-owned). HL_ERR_INVAL when id is unknown, not an embedding job, not finished with STOP,
// or n_inputs / dim differ from the job's.
int hl_engine_embed_result(hl_engine *e, uint64_t id, float *out, int n_inputs, int dim, hl_error *err);

// The embedding of one input, blocking the calling thread until the engine has computed it
// (submit + read + result + release). out: dim floats (dim must be hl_engine_embed_dim), not
// normalized (hl_embed_l2_normalize does that). Any thread but the engine's. Errors as
// hl_engine_embed_submit (HL_ERR_INVAL: empty or too long input, bad pooling or dim;
// HL_ERR_BUSY: queue full), HL_ERR_BUSY when the engine stops before the job ends, or the
// engine's error.
int hl_engine_embed(hl_engine *e, const int32_t *tokens, int n_tokens, enum hl_pooling pooling, float *out,
                    int dim, hl_error *err);

// Scales v (n floats) to unit L2 norm in place (the norm is summed in double); a zero vector is
// left as it is.
void hl_embed_l2_normalize(float *v, int n);
