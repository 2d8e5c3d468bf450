// stop: stop strings over streamed text, one KMP automaton per stop string, so each byte is
// looked at once per stop string and the held-back suffix is simply the longest partial match.
#include "engine/stop.h"

#include <stdlib.h>

#include "tokenizer/unicode.h"

typedef struct stop_string {
    char *s;      // owned, NUL-terminated
    size_t len;
    size_t *fail; // owned (len): KMP failure function, fail[i] = longest proper border of s[0..i]
    size_t state; // bytes of s matched by the end of the text fed so far (< len)
} stop_string;

struct hl_stop_matcher {
    stop_string stops[HL_STOP_MAX_STRINGS];
    int n_stops;
    char *buf;       // owned (cap): released bytes [0, consumed), held bytes [consumed, len)
    size_t cap, len;
    size_t consumed; // released by the last call; dropped at the start of the next
    int stop;        // index of the matched stop string, or -1
};

static void build_fail(stop_string *st) {
    st->fail[0] = 0;
    size_t k = 0;
    for (size_t i = 1; i < st->len; i++) {
        while (k > 0 && st->s[i] != st->s[k]) k = st->fail[k - 1];
        if (st->s[i] == st->s[k]) k++;
        st->fail[i] = k;
    }
}

static int check_stop(const char *s, int i, hl_error *err) {
    if (!s) return hl_errorf(err, HL_ERR_INVAL, "stop[%d] is NULL", i);
    size_t n = strlen(s);
    if (n == 0) return hl_errorf(err, HL_ERR_INVAL, "stop[%d] is an empty string", i);
    if (n > HL_STOP_MAX_BYTES)
        return hl_errorf(err, HL_ERR_INVAL, "stop[%d] is %zu bytes long, at most %d allowed", i, n,
                         HL_STOP_MAX_BYTES);
    if (!hl_utf8_valid((const uint8_t *)s, n))
        return hl_errorf(err, HL_ERR_INVAL, "stop[%d] is not valid UTF-8", i);
    return HL_OK;
}

hl_stop_matcher *hl_stop_matcher_create(const char *const *stops, int n_stops, hl_error *err) {
    if (n_stops < 0 || n_stops > HL_STOP_MAX_STRINGS) {
        hl_errorf(err, HL_ERR_INVAL, "%d stop strings, at most %d allowed", n_stops,
                  HL_STOP_MAX_STRINGS);
        return NULL;
    }
    if (n_stops > 0 && !stops) {
        hl_errorf(err, HL_ERR_INVAL, "stop strings are NULL with %d entries", n_stops);
        return NULL;
    }
    for (int i = 0; i < n_stops; i++) {
        if (check_stop(stops[i], i, err) != HL_OK) return NULL;
    }
    hl_stop_matcher *m = hl_xcalloc(1, sizeof(*m));
    for (int i = 0; i < n_stops; i++) {
        stop_string *st = &m->stops[i];
        st->s = hl_xstrdup(stops[i]);
        st->len = strlen(st->s);
        st->fail = hl_xmalloc(sizeof(size_t) * st->len);
        build_fail(st);
    }
    m->n_stops = n_stops;
    m->cap = 2 * HL_STOP_MAX_BYTES;
    m->buf = hl_xmalloc(m->cap);
    m->stop = -1;
    return m;
}

void hl_stop_matcher_free(hl_stop_matcher *m) {
    if (!m) return;
    for (int i = 0; i < m->n_stops; i++) {
        free(m->stops[i].s);
        free(m->stops[i].fail);
    }
    free(m->buf);
    free(m);
}

// Drops the bytes released by the previous call.
static void compact(hl_stop_matcher *m) {
    if (m->consumed == 0) return;
    memmove(m->buf, m->buf + m->consumed, m->len - m->consumed);
    m->len -= m->consumed;
    m->consumed = 0;
}

static size_t kmp_step(const stop_string *st, size_t state, char c) {
    while (state > 0 && st->s[state] != c) state = st->fail[state - 1];
    return st->s[state] == c ? state + 1 : state;
}

// Advances every automaton over byte c; returns the stop that completes with it, or -1
// (of several, the longest: it starts first).
static int step_all(hl_stop_matcher *m, char c) {
    int hit = -1;
    for (int i = 0; i < m->n_stops; i++) {
        stop_string *st = &m->stops[i];
        st->state = kmp_step(st, st->state, c);
        if (st->state < st->len) continue;
        if (hit < 0 || st->len > m->stops[hit].len) hit = i;
    }
    return hit;
}

static size_t longest_partial(const hl_stop_matcher *m) {
    size_t held = 0;
    for (int i = 0; i < m->n_stops; i++) {
        if (m->stops[i].state > held) held = m->stops[i].state;
    }
    return held;
}

void hl_stop_matcher_feed(hl_stop_matcher *m, const char *piece, size_t len, hl_stop_result *out) {
    HL_ASSERT(m && out && (piece || len == 0));
    compact(m);
    *out = (hl_stop_result){.text = m->buf, .n_bytes = 0, .stop = m->stop};
    if (m->stop >= 0) return;
    if (m->len + len > m->cap) {
        while (m->len + len > m->cap) m->cap *= 2;
        m->buf = hl_xrealloc(m->buf, m->cap);
        out->text = m->buf;
    }
    if (len > 0) memcpy(m->buf + m->len, piece, len);
    size_t begin = m->len;
    m->len += len;
    for (size_t pos = begin; pos < m->len; pos++) {
        int hit = step_all(m, m->buf[pos]);
        if (hit < 0) continue;
        m->stop = hit;
        out->stop = hit;
        out->n_bytes = pos + 1 - m->stops[hit].len;
        m->consumed = m->len; // the stop string and anything after it are dropped
        return;
    }
    out->n_bytes = m->len - longest_partial(m);
    m->consumed = out->n_bytes;
}

void hl_stop_matcher_flush(hl_stop_matcher *m, hl_stop_result *out) {
    HL_ASSERT(m && out);
    compact(m);
    *out = (hl_stop_result){.text = m->buf, .n_bytes = 0, .stop = m->stop};
    if (m->stop >= 0) return;
    out->n_bytes = m->len;
    m->consumed = m->len;
    for (int i = 0; i < m->n_stops; i++) m->stops[i].state = 0;
}

int hl_stop_matcher_matched(const hl_stop_matcher *m) { return m->stop; }
