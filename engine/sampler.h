// sampler: picks the next token of one sequence from its logits row (greedy, temperature,
// top-k, top-p, min-p, repetition / frequency / presence penalties, logit bias, seeded RNG),
// reports logprobs, and says when generation ends (end-of-generation / stop ids, max_tokens).
//
// One hl_sampler per request (per choice when n > 1), used by the engine thread only: no locks.
// It owns the request's RNG and its token counts (a hash table over the distinct tokens seen,
// never rescanned per vocabulary entry) and scratch buffers allocated once at create, so
// hl_sampler_sample never allocates. Order of processing, as in HF transformers / llama.cpp:
// logit bias -> repetition penalty -> frequency/presence penalties -> temperature -> top-k
// -> top-p -> min-p -> draw. Logprobs follow vLLM's default ("raw"): log-softmax of the model's
// logits before any of those steps, whatever token was drawn.
//
// The draw walks the kept tokens best first (equal logits: lower id first) and takes the first
// whose running weight passes u * (their total weight), u uniform in [0, 1) from the request's
// RNG (one number per draw). Without top-k the total of an uncut row is Z = Σ exp((x - max)/T)
// as the row's log-sum-exp at 1/T gives it, so that the best few candidates of a row (the
// backend's topk op) settle almost every draw exactly as the whole row would.
//
//   hl_sampler_params p = hl_sampler_default_params();
//   p.temperature = 0.7f; p.top_p = 0.9f; p.has_seed = true; p.seed = 42;
//   hl_sampler *s = hl_sampler_create(&p, n_vocab, &err);
//   hl_sampler_set_eog_ids(s, eog, n_eog, &err); hl_sampler_accept_prompt(s, ids, n, &err);
//   hl_sampler_sample(s, logits, &res, &err); hl_sampler_accept(s, res.token, &err);
//   if (hl_sampler_finish_reason(s, res.token) != HL_SAMPLER_FINISH_NONE) ...
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/hl.h"

#define HL_SAMPLER_MAX_LOGPROBS 20      // OpenAI's top_logprobs limit
#define HL_SAMPLER_MAX_TEMPERATURE 2.0f // OpenAI's limit; larger is noise, not sampling
#define HL_SAMPLER_MAX_LOGIT_BIAS 1024  // entries in one request's logit_bias
#define HL_SAMPLER_MAX_STOP_IDS 256     // request stop token ids
#define HL_SAMPLER_MAX_EOG_IDS 64       // the model's end-of-generation ids
// Below this temperature sampling is greedy (as vLLM): dividing by it would overflow.
#define HL_SAMPLER_GREEDY_EPS 1e-5f
// Candidates a draw without top-k asks for (hl_sampler_can_use_topk): HL_TOPK_MAX, the most the
// topk op gives (they cost 8 bytes each per row). On SmolLM2-135M generating chat answers the
// walk leaves the best 256 on 6.1% of draws at temperature 1 (9.8% with top_p 0.9), 0.23% at
// 0.7 (0% with top_p 0.9); larger models are more peaked.
#define HL_SAMPLER_WALK_K 256
// hl_sample_result.token of hl_sampler_sample_topk when the candidates do not settle the draw.
#define HL_SAMPLER_NEED_ROW (-1)

typedef struct hl_logit_bias {
    int32_t id;
    float bias; // added to the logit; <= -100 bans the token outright (OpenAI: "-100 bans")
} hl_logit_bias;

typedef struct hl_sampler_params {
    float temperature;        // [0, 2]; 0 (or < HL_SAMPLER_GREEDY_EPS) = greedy. Default 1
    int top_k;                // >= 0; 0 = off (k >= n_vocab is off too). Default 0
    float top_p;              // (0, 1]; 1 = off. Default 1
    float min_p;              // [0, 1]; keep p >= min_p * p_max; 0 = off. Default 0
    // Repetition penalty, HF / llama.cpp style: a logit l of a token in the window becomes
    // l / r if l > 0, else l * r (r > 1 discourages). Counts presence, not frequency.
    float repetition_penalty; // (0, 100]; 1 = off. Default 1
    int penalty_last_n;       // window: the last n tokens; -1 = all; 0 = penalty off. Default -1
    bool penalty_prompt;      // window covers prompt + output (true, HF/vLLM/llama.cpp) or the
                              // generated tokens only (false). Default true
    // OpenAI penalties over the generated tokens only (never the prompt):
    // l -= count * frequency_penalty + (count > 0) * presence_penalty.
    float frequency_penalty;  // [-2, 2]. Default 0
    float presence_penalty;   // [-2, 2]. Default 0
    const hl_logit_bias *logit_bias; // borrowed for hl_sampler_create (copied); ids distinct
    int n_logit_bias;                // 0..HL_SAMPLER_MAX_LOGIT_BIAS; bias in [-100, 100]
    bool has_seed;            // false: seeded from the clock (not reproducible)
    uint64_t seed;            // same seed + same logits -> same tokens, whatever else runs
    bool logprobs;            // fill hl_sample_result.logprob (costs one exp per vocab entry)
    int n_logprobs;           // top_logprobs: 0..20; > 0 needs logprobs
    int max_tokens;           // generated tokens at most; -1 = no limit (the context ends it)
    const int32_t *stop_ids;  // borrowed for hl_sampler_create (copied); each < n_vocab
    int n_stop_ids;           // 0..HL_SAMPLER_MAX_STOP_IDS
    // Do not stop at the model's end-of-generation ids (benchmarks). As in vLLM, the request's
    // own stop_ids and max_tokens still end generation.
    bool ignore_eos;
} hl_sampler_params;

typedef struct hl_token_logprob {
    int32_t id;
    float logprob;
} hl_token_logprob;

typedef struct hl_sample_result {
    int32_t token;   // the drawn token
    float logprob;   // its raw logprob (see top of file); NAN when params.logprobs is false
    int n_top;       // = params.n_logprobs
    hl_token_logprob top[HL_SAMPLER_MAX_LOGPROBS]; // best first; equal logprobs: lower id first
} hl_sample_result;

enum hl_sampler_finish {
    HL_SAMPLER_FINISH_NONE = 0,
    HL_SAMPLER_FINISH_STOP = 1,   // an end-of-generation or stop id (OpenAI "stop")
    HL_SAMPLER_FINISH_LENGTH = 2, // max_tokens reached (OpenAI "length")
};

typedef struct hl_sampler hl_sampler;

// Defaults: OpenAI's (temperature 1, top_p 1, no penalties, no bias), unseeded, no limit.
hl_sampler_params hl_sampler_default_params(void);

// HL_OK, or HL_ERR_INVAL naming the first bad field and its allowed range (token ids are
// checked against n_vocab). Non-finite floats are rejected.
int hl_sampler_params_validate(const hl_sampler_params *p, int n_vocab, hl_error *err);

// A sampler for one request over a vocabulary of n_vocab (>= 1) entries. Copies what p points
// to. NULL + HL_ERR_INVAL for invalid params. Scratch: about 18 * n_vocab bytes. Caller frees.
hl_sampler *hl_sampler_create(const hl_sampler_params *p, int n_vocab, hl_error *err);
void hl_sampler_free(hl_sampler *s); // accepts NULL

// The model's end-of-generation ids (eos, eot, eom, <|im_end|>, ...); replaces earlier ones.
// HL_ERR_INVAL for an id outside [0, n_vocab) or more than HL_SAMPLER_MAX_EOG_IDS.
int hl_sampler_set_eog_ids(hl_sampler *s, const int32_t *ids, int n_ids, hl_error *err);

// Records prompt tokens (for the repetition window when penalty_prompt is set). Call before
// the first accepted generated token. HL_ERR_INVAL for an id outside [0, n_vocab), recording
// nothing from that id on.
int hl_sampler_accept_prompt(hl_sampler *s, const int32_t *ids, int n_ids, hl_error *err);

// Records one generated token (counts for the penalties, the max_tokens count). Tables grow
// geometrically here, never in hl_sampler_sample. HL_ERR_INVAL for an id out of range.
int hl_sampler_accept(hl_sampler *s, int32_t token, hl_error *err);

// Draws the next token from logits (n_vocab floats, borrowed for the call; -inf masks a
// token) and fills *out. Does not accept the token: call hl_sampler_accept with it.
// HL_ERR_INVAL when logits hold a NaN or +inf, or when every token is banned or masked.
// hot: once per sequence per decode step.
int hl_sampler_sample(hl_sampler *s, const float *logits, hl_sample_result *out, hl_error *err);

// The row's log-sum-exp at temperature 1 / inv_temp (inv_temp > 0; 1 for logprobs) as the
// full-row path computes it: max * inv_temp + log Σ exp((x - max) * inv_temp) (-inf when every
// logit is -inf, NaN when one is NaN or +inf). The CPU backend's topk op computes the same bits.
float hl_sampler_log_sum_exp(const float *logits, int n, float inv_temp);

// True when s can draw from the best candidates of a row (hl_sampler_sample_topk) with exactly
// the result of the whole row: no logit bias, no repetition / frequency / presence penalty; and
// greedy, 1 <= top_k < n_vocab, or top_k off (temperature / top_p / min_p: the walk; with
// logprobs only at temperature 1, whose log-sum-exp serves both). *k_needed gets the candidates
// to ask for: top_k (1 when greedy), min(HL_SAMPLER_WALK_K, max_k, n_vocab) without top-k (any
// number works; more make a fallback to the whole row rarer), or n_logprobs if more; false
// (and 0) when that exceeds max_k or n_vocab.
bool hl_sampler_can_use_topk(const hl_sampler *s, int max_k, int *k_needed);

// The inv_temp at which the topk op must compute the row's log-sum-exp for s (the lse argument
// of hl_sampler_sample_topk): 1 / temperature for a draw without top-k, else 1.
float hl_sampler_topk_inv_temp(const hl_sampler *s);

// hl_sampler_sample from the n best entries of the row instead of the row: vals[0..n) the
// values, best first (equal values: lower id first), ids[0..n) their token ids, lse the row's
// log-sum-exp at hl_sampler_topk_inv_temp(s) (the backend's topk op gives all three). For
// parameters hl_sampler_can_use_topk accepts (with n >= k_needed, or n >= n_logprobs without
// top-k) it returns what hl_sampler_sample returns on the whole row: the same token drawn with
// the same RNG use, and logprobs value - lse (bit-identical when lse is
// hl_sampler_log_sum_exp of the row) — or, only without top-k, out->token = HL_SAMPLER_NEED_ROW
// when the draw falls past the candidates (or lse is +inf): the sampler is then unchanged (no
// RNG use) and the caller samples the whole row with hl_sampler_sample. HL_ERR_INVAL for other
// parameters or too few candidates, for a NaN lse (the row held a NaN or +inf), or when every
// candidate is -inf.
int hl_sampler_sample_topk(hl_sampler *s, const float *vals, const int32_t *ids, int n, float lse,
                           hl_sample_result *out, hl_error *err);

// The logits after logit bias and penalties, before temperature and truncation (what
// hl_sampler_sample draws from), into out (n_vocab floats; may be logits itself). For tests
// and debugging tools. Errors as hl_sampler_sample.
int hl_sampler_adjust_logits(hl_sampler *s, const float *logits, float *out, hl_error *err);

// True when id ends generation: a model end-of-generation id (unless ignore_eos) or one of
// the request's stop_ids.
bool hl_sampler_is_stop_token(const hl_sampler *s, int32_t id);

// Why generation ends after accepting `token` (stop id first, then max_tokens), or NONE.
enum hl_sampler_finish hl_sampler_finish_reason(const hl_sampler *s, int32_t token);

// Generated tokens accepted so far.
int hl_sampler_n_generated(const hl_sampler *s);
