// bench_sse: incremental Server-Sent Events parser for `bench serve` (see bench.h).
//
// Follows the WHATWG event-stream rules that matter for OpenAI-style streams: lines end in
// "\n", "\r\n" or "\r"; "data:" (one optional space after the colon) appends to the event's
// data, joined with '\n'; a blank line dispatches the event; ":" lines are comments.
#include <stdlib.h>

#include "tools/bench.h"

void hl_bench_sse_init(hl_bench_sse *s, size_t max_line) {
    *s = (hl_bench_sse){.max_line = max_line};
}

void hl_bench_sse_free(hl_bench_sse *s) {
    free(s->line);
    free(s->data);
    *s = (hl_bench_sse){0};
}

static void grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    *buf = hl_xrealloc(*buf, c);
    *cap = c;
}

static void append_data(hl_bench_sse *s, const char *v, size_t n) {
    size_t sep = s->has_data ? 1 : 0;
    grow(&s->data, &s->data_cap, s->data_n + sep + n + 1);
    if (sep) s->data[s->data_n++] = '\n';
    memcpy(s->data + s->data_n, v, n);
    s->data_n += n;
    s->data[s->data_n] = '\0';
    s->has_data = true;
}

static bool dispatch(hl_bench_sse *s, hl_bench_sse_fn fn, void *user) {
    if (!s->has_data) return true;
    bool go_on = fn(user, s->data, s->data_n);
    s->data_n = 0;
    s->has_data = false;
    return go_on;
}

// One complete line (without its ending).
static bool handle_line(hl_bench_sse *s, const char *l, size_t n, hl_bench_sse_fn fn, void *user) {
    if (n == 0) return dispatch(s, fn, user);
    if (l[0] == ':') return true;
    if (n >= 5 && memcmp(l, "data", 4) == 0 && l[4] == ':') {
        size_t skip = (n > 5 && l[5] == ' ') ? 6 : 5;
        append_data(s, l + skip, n - skip);
        return true;
    }
    if (n == 4 && memcmp(l, "data", 4) == 0) append_data(s, "", 0);
    return true; // event:, id:, retry: and unknown fields do not matter here
}

bool hl_bench_sse_feed(hl_bench_sse *s, const char *buf, size_t n, hl_bench_sse_fn fn, void *user) {
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        bool crlf_tail = c == '\n' && s->last_cr; // "\r\n" is one line ending
        s->last_cr = c == '\r';
        if (crlf_tail) continue;
        if (c == '\r' || c == '\n') {
            if (!handle_line(s, s->line ? s->line : "", s->line_n, fn, user)) return false;
            s->line_n = 0;
            continue;
        }
        if (s->line_n >= s->max_line) return false;
        grow(&s->line, &s->line_cap, s->line_n + 1);
        s->line[s->line_n++] = c;
    }
    return true;
}

bool hl_bench_sse_finish(hl_bench_sse *s, hl_bench_sse_fn fn, void *user) {
    if (s->line_n > 0) {
        if (!handle_line(s, s->line, s->line_n, fn, user)) return false;
        s->line_n = 0;
    }
    return dispatch(s, fn, user);
}
