// openai: the OpenAI API surface — request bodies of /v1/chat/completions and /v1/completions
// parsed and validated into an hl_gen_request, and the JSON the SDKs expect back (responses,
// stream chunks, errors). Unknown fields are ignored as OpenAI does; a known field with the
// wrong type or out of range is a 400 naming the field (param).
//
// Bodies are checked before cJSON sees them (hl_openai_parse_json): valid UTF-8, no NUL bytes
// (raw or \u0000), nesting at most max_depth, so hostile input costs one linear scan.
//
//   cJSON *root; hl_api_error ae;
//   if (hl_openai_parse_json(body, n, 32, &root, &ae) == HL_OK &&
//       hl_openai_parse_chat(root, &limits, &req, &ae) == HL_OK) { ...submit... }
//   else { hl_buf b = {0}; hl_openai_error_json(&ae, &b); reply(ae.status, b.data); }
#pragma once

#include <cJSON.h>

#include "engine/sampler.h"
#include "engine/stop.h"
#include "server/buf.h"
#include "server/gen.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

enum hl_api_kind { HL_API_CHAT = 0, HL_API_COMPLETION = 1, HL_API_MESSAGES = 2 };

// An error as the client sees it: HTTP status plus OpenAI's {"error": {...}} fields.
typedef struct hl_api_error {
    int status;        // 400, 401, 404, 413, 429, 500, 501, 503
    const char *type;  // "invalid_request_error", ...; static string
    const char *code;  // static string or NULL
    char param[64];    // offending field or ""
    char message[320];
    int retry_after_s; // > 0: send Retry-After
} hl_api_error;

// Fills e; returns HL_ERR_INVAL so callers can `return hl_api_errorf(...)`.
int hl_api_errorf(hl_api_error *e, int status, const char *type, const char *code,
                  const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

// Caps applied while parsing (server flags).
typedef struct hl_api_limits {
    int max_depth;     // JSON nesting
    int max_messages;  // chat messages
    int max_tokens;    // max_tokens at most (also the context limit the server knows)
    int max_n;         // choices per request
} hl_api_limits;

hl_api_limits hl_api_default_limits(void); // 32, 1024, 1 << 20, 16

// One generation request, whichever API it came from. Everything is owned.
typedef struct hl_gen_request {
    enum hl_api_kind kind;
    char *model;                 // requested model name or NULL
    hl_chat_message *msgs;       // chat/messages: n_msgs entries, role and content owned
    int n_msgs;
    char *prompt;                // completions: text prompt, or NULL when prompt_ids is used
    int32_t *prompt_ids;         // completions: token prompt
    int n_prompt_ids;
    hl_sampler_params sampling;  // logit_bias points to logit_bias below
    hl_logit_bias *logit_bias;
    int n;                       // choices
    int max_tokens;              // -1 when the request gave none
    char *stop[HL_STOP_MAX_STRINGS];
    int n_stop;
    bool stream;
    bool include_usage;          // stream_options.include_usage
    bool logprobs;
    int top_logprobs;
    char *user;
} hl_gen_request;

void hl_gen_request_free(hl_gen_request *r); // accepts a zeroed request

// Checks body[0..len) (UTF-8, NUL bytes, depth <= max_depth) and parses it; the root must be an
// object. *out is freed by the caller with cJSON_Delete. HL_ERR_INVAL + a 400 error otherwise.
int hl_openai_parse_json(const char *body, size_t len, int max_depth, cJSON **out,
                         hl_api_error *e);

// Nesting depth of JSON text (brackets outside strings); stops counting past limit + 1.
int hl_json_depth(const char *s, size_t len, int limit);

// Parse /v1/chat/completions and /v1/completions bodies into *out (zeroed first; free it with
// hl_gen_request_free whatever the result). HL_ERR_INVAL + e (status 400) on invalid input.
int hl_openai_parse_chat(const cJSON *root, const hl_api_limits *lim, hl_gen_request *out,
                         hl_api_error *e);
int hl_openai_parse_completion(const cJSON *root, const hl_api_limits *lim, hl_gen_request *out,
                               hl_api_error *e);

// Shared field readers (also used by server/anthropic). Absent or null fields leave *out
// untouched and succeed. HL_ERR_INVAL + e naming the field otherwise.
int hl_api_get_number(const cJSON *o, const char *name, double lo, double hi, double *out,
                      hl_api_error *e);
int hl_api_get_int(const cJSON *o, const char *name, long long lo, long long hi, long long *out,
                   hl_api_error *e);
int hl_api_get_bool(const cJSON *o, const char *name, bool *out, hl_api_error *e);
// A stop list: string or array of strings (1..HL_STOP_MAX_STRINGS, each 1..HL_STOP_MAX_BYTES).
int hl_api_get_stop(const cJSON *o, const char *name, hl_gen_request *r, hl_api_error *e);

// ---- output ----
// {"error": {"message", "type", "param", "code"}}
void hl_openai_error_json(const hl_api_error *e, hl_buf *out);

// What a response needs besides the generation itself.
typedef struct hl_api_meta {
    const char *id;        // "chatcmpl-..." / "cmpl-..."
    const char *model;     // served model name
    long long created;     // unix seconds
    int prompt_tokens;
    int cached_tokens;
} hl_api_meta;

// A complete (non-streaming) response for req from the finished session g.
void hl_openai_response(const hl_gen_request *req, const hl_gen *g, const hl_tokenizer *tok,
                        const hl_api_meta *m, hl_buf *out);

// SSE chunks (each "data: {...}\n\n"). The first chunk of a chat stream carries the role for
// every choice; then one chunk per delta; then, when asked, the usage chunk; then [DONE].
void hl_openai_chunk_start(const hl_gen_request *req, const hl_api_meta *m, hl_buf *out);
void hl_openai_chunk_delta(const hl_gen_request *req, const hl_gen *g, const hl_gen_delta *d,
                           const hl_tokenizer *tok, const hl_api_meta *m, hl_buf *out);
void hl_openai_chunk_usage(const hl_gen_request *req, const hl_gen *g, const hl_api_meta *m,
                           hl_buf *out);
void hl_openai_chunk_done(hl_buf *out);

// OpenAI's name of a finish reason: "stop", "length" (cancelled/timeout/error: "stop"/"length"/
// "error" as vLLM reports them).
const char *hl_openai_finish_name(enum hl_finish_reason r);
