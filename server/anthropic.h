// anthropic: Anthropic's Messages API (POST /v1/messages) over the local engine, so clients
// written for Claude (the official SDK, curl examples) can use a local model. The request is
// parsed into the same hl_gen_request as the OpenAI endpoints (system prompt first, content as a
// string or text blocks); responses are Message objects and the stream is Anthropic's event
// sequence: message_start, content_block_start, ping, content_block_delta*, content_block_stop,
// message_delta (stop_reason, usage), message_stop. Errors: {"type":"error","error":{...}}.
//
//   hl_anthropic_parse(root, &limits, &req, &ae);
//   hl_anthropic_stream_start(&req, &meta, &out); ... hl_anthropic_stream_delta(...); ...
//   hl_anthropic_stream_end(&req, gen, &meta, &out);
#pragma once

#include "server/openai.h"

// Parses a /v1/messages body (max_tokens and messages required). HL_ERR_INVAL + e (400).
// *out must be freed with hl_gen_request_free whatever the result.
int hl_anthropic_parse(const cJSON *root, const hl_api_limits *lim, hl_gen_request *out,
                       hl_api_error *e);

// {"type": "error", "error": {"type": ..., "message": ...}} with Anthropic's type for e->status.
void hl_anthropic_error_json(const hl_api_error *e, hl_buf *out);

// A complete Message for the finished session g (one choice).
void hl_anthropic_response(const hl_gen_request *req, const hl_gen *g, const hl_api_meta *m,
                           hl_buf *out);

// Stream events: the opening three, one text delta, and the closing four.
void hl_anthropic_stream_start(const hl_gen_request *req, const hl_api_meta *m, hl_buf *out);
void hl_anthropic_stream_delta(const hl_gen_delta *d, hl_buf *out);
void hl_anthropic_stream_end(const hl_gen_request *req, const hl_gen *g, const hl_api_meta *m,
                             hl_buf *out);
// An error event in the middle of a stream.
void hl_anthropic_stream_error(const hl_api_error *e, hl_buf *out);
