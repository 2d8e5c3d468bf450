// sse: Server-Sent Events framing (text/event-stream), as OpenAI and Anthropic stream.
//
// An event is optional "event: NAME" plus one "data: ..." line per line of the payload, ended by
// a blank line. Payloads are single-line JSON in practice, but a newline in data is still framed
// correctly (split into several data lines), so no payload can end an event early or inject one.
//
//   hl_buf b = {0};
//   hl_sse_event(&b, "message_start", json, strlen(json));  // event: message_start\ndata: {...}\n\n
//   hl_sse_data(&b, "[DONE]", 6);                            // data: [DONE]\n\n
#pragma once

#include "server/buf.h"

// Appends one event named name (NULL: no event line) with payload data[0..n) to out.
void hl_sse_event(hl_buf *out, const char *name, const char *data, size_t n);

// Appends a data-only event.
void hl_sse_data(hl_buf *out, const char *data, size_t n);

// Appends a comment line (": text\n\n"), which clients ignore; used as a keep-alive.
void hl_sse_comment(hl_buf *out, const char *text);
