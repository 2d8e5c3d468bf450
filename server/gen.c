// gen: token events -> text per choice (see gen.h).
#include "server/gen.h"

#include <stdio.h>
#include <stdlib.h>

#include "engine/stop.h"

struct hl_gen {
    const hl_tokenizer *tok;      // borrowed
    int n;
    bool logprobs;
    hl_gen_choice *choices;       // owned, n
    hl_tokenizer_stream **detok;  // owned, n
    hl_stop_matcher **stop;       // owned, n
    int n_done;
    double first_token_ms;
    double queue_ms;
    char error[128];
};

hl_gen *hl_gen_create(const hl_tokenizer *tok, const char *const *stops, int n_stops, int n,
                      bool logprobs, hl_error *err) {
    if (n < 1) {
        hl_errorf(err, HL_ERR_INVAL, "n must be >= 1");
        return NULL;
    }
    hl_gen *g = hl_xcalloc(1, sizeof *g);
    g->tok = tok;
    g->n = n;
    g->logprobs = logprobs;
    g->choices = hl_xcalloc((size_t)n, sizeof *g->choices);
    g->detok = hl_xcalloc((size_t)n, sizeof *g->detok);
    g->stop = hl_xcalloc((size_t)n, sizeof *g->stop);
    for (int i = 0; i < n; i++) {
        g->choices[i].stop_index = -1;
        g->choices[i].engine_completion_tokens = -1;
        g->detok[i] = hl_tokenizer_stream_create(tok, HL_TOKENIZER_SKIP_SPECIAL);
        g->stop[i] = hl_stop_matcher_create(stops, n_stops, err);
        if (!g->stop[i]) {
            hl_gen_free(g);
            return NULL;
        }
    }
    return g;
}

void hl_gen_free(hl_gen *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        hl_buf_free(&g->choices[i].text);
        free(g->choices[i].lps);
        hl_tokenizer_stream_free(g->detok[i]);
        hl_stop_matcher_free(g->stop[i]);
    }
    free(g->choices);
    free(g->detok);
    free(g->stop);
    free(g);
}

static void end_choice(hl_gen *g, int i, enum hl_finish_reason why, hl_gen_delta *d) {
    g->choices[i].done = true;
    g->choices[i].finish = why;
    g->n_done++;
    d->finished = true;
    d->finish = why;
}

static void push_logprob(hl_gen_choice *c, const hl_event *ev) {
    if (c->n_lps == c->cap_lps) {
        c->cap_lps = c->cap_lps ? 2 * c->cap_lps : 16;
        c->lps = hl_xrealloc(c->lps, (size_t)c->cap_lps * sizeof *c->lps);
    }
    hl_gen_logprob *lp = &c->lps[c->n_lps++];
    lp->token = ev->token;
    lp->logprob = ev->logprob;
    lp->n_top = ev->n_top < 0 ? 0 : ev->n_top > HL_SAMPLER_MAX_LOGPROBS ? HL_SAMPLER_MAX_LOGPROBS : ev->n_top;
    memcpy(lp->top, ev->top, (size_t)lp->n_top * sizeof lp->top[0]);
}

// Releases text through the stop matcher into the choice and the delta.
static void release(hl_gen *g, int i, const hl_stop_result *r, hl_gen_delta *d) {
    hl_gen_choice *c = &g->choices[i];
    if (r->n_bytes == 0) return;
    size_t start = c->text.len - d->n_text; // the releases of one event are contiguous
    hl_buf_append(&c->text, r->text, r->n_bytes);
    d->text = c->text.data + start;
    d->n_text += r->n_bytes;
}

static void feed_token(hl_gen *g, const hl_event *ev, hl_gen_delta *d) {
    int i = ev->index;
    hl_gen_choice *c = &g->choices[i];
    if (g->first_token_ms == 0) g->first_token_ms = ev->t_ms > 0 ? ev->t_ms : hl_time_ms();
    c->n_tokens++;
    if (g->logprobs) {
        d->first_lp = c->n_lps;
        d->n_lp = 1;
        push_logprob(c, ev);
    }
    const char *piece = "";
    size_t n_piece = 0;
    if (hl_tokenizer_stream_push(g->detok[i], ev->token, &piece, &n_piece, NULL) != HL_OK) return;
    hl_stop_result r;
    hl_stop_matcher_feed(g->stop[i], piece, n_piece, &r);
    release(g, i, &r, d);
    if (r.stop >= 0) {
        c->stop_index = r.stop;
        end_choice(g, i, HL_FINISH_STOP, d);
    }
}

static void feed_finish(hl_gen *g, const hl_event *ev, hl_gen_delta *d) {
    int i = ev->index;
    hl_gen_choice *c = &g->choices[i];
    if (ev->queue_ms > g->queue_ms) g->queue_ms = ev->queue_ms;
    if (!g->error[0] && ev->finish == HL_FINISH_ERROR)
        snprintf(g->error, sizeof g->error, "%s", ev->error[0] ? ev->error : "engine error");
    c->engine_completion_tokens = ev->completion_tokens;
    const char *tail = "";
    size_t n_tail = 0;
    hl_tokenizer_stream_finish(g->detok[i], &tail, &n_tail);
    hl_stop_result r;
    hl_stop_matcher_feed(g->stop[i], tail, n_tail, &r);
    release(g, i, &r, d);
    if (r.stop >= 0) {
        c->stop_index = r.stop;
        end_choice(g, i, HL_FINISH_STOP, d);
        return;
    }
    hl_stop_matcher_flush(g->stop[i], &r);
    release(g, i, &r, d);
    end_choice(g, i, ev->finish, d);
}

void hl_gen_feed(hl_gen *g, const hl_event *ev, hl_gen_delta *d) {
    *d = (hl_gen_delta){.index = ev->index, .text = ""};
    if (ev->index < 0 || ev->index >= g->n || g->choices[ev->index].done) return;
    if (ev->type == HL_EVENT_TOKEN) {
        feed_token(g, ev, d);
        return;
    }
    feed_finish(g, ev, d);
}

bool hl_gen_done(const hl_gen *g) { return g->n_done == g->n; }
int hl_gen_n_choices(const hl_gen *g) { return g->n; }

const hl_gen_choice *hl_gen_choice_at(const hl_gen *g, int index) {
    HL_ASSERT(index >= 0 && index < g->n);
    return &g->choices[index];
}

int hl_gen_completion_tokens(const hl_gen *g) {
    int sum = 0;
    for (int i = 0; i < g->n; i++) {
        const hl_gen_choice *c = &g->choices[i];
        bool engine_count = c->stop_index < 0 && c->engine_completion_tokens >= 0;
        sum += engine_count ? c->engine_completion_tokens : c->n_tokens;
    }
    return sum;
}

double hl_gen_first_token_ms(const hl_gen *g) { return g->first_token_ms; }
double hl_gen_queue_ms(const hl_gen *g) { return g->queue_ms; }
const char *hl_gen_error(const hl_gen *g) { return g->error; }
