// buf: a growable byte buffer for building HTTP bodies, JSON and SSE frames.
//
// The bytes are always NUL-terminated (one spare byte past len), so a buffer of text can be
// handed to functions that want a C string. Growth is geometric; small allocations go through
// hl_xrealloc, which aborts on OOM (response bodies are small and bounded by the server's caps).
//
//   hl_buf b = {0};
//   hl_buf_printf(&b, "data: %s\n\n", json);
//   send(b.data, b.len); hl_buf_free(&b);
#pragma once

#include <stdarg.h>

#include "common/hl.h"

typedef struct hl_buf {
    char *data; // owned; NULL while empty and never grown
    size_t len;
    size_t cap;
} hl_buf;

// Appends n bytes of p (p may be NULL when n is 0).
void hl_buf_append(hl_buf *b, const void *p, size_t n);

// Appends a NUL-terminated string.
void hl_buf_puts(hl_buf *b, const char *s);

// Appends printf-formatted text.
void hl_buf_printf(hl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Drops the first n bytes (n <= len), keeping the rest.
void hl_buf_consume(hl_buf *b, size_t n);

// Empties the buffer, keeping its storage.
void hl_buf_reset(hl_buf *b);

// Frees the storage and zeroes b; accepts a zeroed buffer.
void hl_buf_free(hl_buf *b);

// Hands the bytes to the caller (free with free(); never NULL) and zeroes b.
char *hl_buf_take(hl_buf *b, size_t *len);
