// buf: growable byte buffer (see buf.h).
#include "server/buf.h"

#include <stdio.h>
#include <stdlib.h>

static void reserve(hl_buf *b, size_t extra) {
    size_t need;
    HL_ASSERT(hl_add_ok(b->len, extra + 1, &need));
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = hl_xrealloc(b->data, cap);
    b->cap = cap;
}

void hl_buf_append(hl_buf *b, const void *p, size_t n) {
    reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void hl_buf_puts(hl_buf *b, const char *s) { hl_buf_append(b, s, strlen(s)); }

void hl_buf_printf(hl_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) hl_panic(__FILE__, __LINE__, "out of memory formatting a buffer");
    hl_buf_append(b, s, (size_t)n);
    free(s);
}

void hl_buf_consume(hl_buf *b, size_t n) {
    HL_ASSERT(n <= b->len);
    if (n == 0) return;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void hl_buf_reset(hl_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void hl_buf_free(hl_buf *b) {
    free(b->data);
    *b = (hl_buf){0};
}

char *hl_buf_take(hl_buf *b, size_t *len) {
    reserve(b, 0);
    char *p = b->data;
    if (len) *len = b->len;
    *b = (hl_buf){0};
    return p;
}
