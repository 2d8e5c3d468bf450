// log: the access log — one JSON object per line per finished request, written with a single
// write(2) so lines from concurrent requests never interleave. Fields: ts (ISO 8601 UTC), id,
// method, path, model, status, key (index of the API key, -1 none), prompt_tokens,
// completion_tokens, queue_ms, ttft_ms, total_ms, finish, error.
//
//   hl_request_log rec = {.id = "chatcmpl-1", .path = "/v1/chat/completions", .status = 200};
//   hl_request_log_write(STDOUT_FILENO, &rec);
#pragma once

#include "server/buf.h"

typedef struct hl_request_log {
    const char *id;          // request id or NULL
    const char *method;
    const char *path;
    const char *model;       // NULL when none
    int status;
    int key;                 // API key index, -1 when none
    int prompt_tokens;
    int completion_tokens;
    double queue_ms, ttft_ms, total_ms; // < 0: not measured (written as null)
    const char *finish;      // "stop", "length", "cancelled", ... or NULL
    const char *error;       // error message or NULL
} hl_request_log;

// Formats rec as one JSON line (ending in '\n') into out.
void hl_request_log_format(const hl_request_log *rec, hl_buf *out);

// Formats and writes rec to fd (fd < 0: nothing). Errors are ignored: logging never fails a request.
void hl_request_log_write(int fd, const hl_request_log *rec);
