// sse: Server-Sent Events framing (see sse.h).
#include "server/sse.h"

void hl_sse_event(hl_buf *out, const char *name, const char *data, size_t n) {
    if (name) {
        hl_buf_puts(out, "event: ");
        hl_buf_puts(out, name);
        hl_buf_puts(out, "\n");
    }
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        bool eol = i == n || data[i] == '\n' || data[i] == '\r';
        if (!eol) continue;
        hl_buf_puts(out, "data: ");
        hl_buf_append(out, data + start, i - start);
        hl_buf_puts(out, "\n");
        if (i < n && data[i] == '\r' && i + 1 < n && data[i + 1] == '\n') i++;
        start = i + 1;
    }
    hl_buf_puts(out, "\n");
}

void hl_sse_data(hl_buf *out, const char *data, size_t n) { hl_sse_event(out, NULL, data, n); }

void hl_sse_comment(hl_buf *out, const char *text) {
    hl_buf_puts(out, ": ");
    hl_buf_puts(out, text);
    hl_buf_puts(out, "\n\n");
}
