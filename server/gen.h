// gen: the text side of one generation request. It turns the engine's token events into what an
// API response needs: per choice (n > 1 gives several) the incremental UTF-8-safe detokenizer,
// the stop-string matcher, the released text, token counts, logprob entries and the finish
// reason. It knows nothing of HTTP or JSON; server/openai and server/anthropic format its output.
//
// A choice ends with the engine's FINISH event for its index or as soon as one of the request's
// stop strings completes (finish "stop"); hl_gen_done() then says whether every choice has ended,
// so the caller can cancel the engine request at once instead of generating tokens nobody reads.
// Not thread-safe: one connection owns one hl_gen.
//
//   hl_gen *g = hl_gen_create(tok, stops, n_stops, n, want_logprobs, &err);
//   hl_gen_delta d; hl_gen_feed(g, &ev, &d);   // d.text: newly released text of choice d.index
//   if (hl_gen_done(g)) hl_engine_release(e, id);
//   hl_gen_free(g);
#pragma once

#include "common/hl.h"
#include "engine/engine.h"
#include "server/buf.h"
#include "tokenizer/tokenizer.h"

typedef struct hl_gen_logprob {
    int32_t token;
    float logprob;
    int n_top;
    hl_token_logprob top[HL_SAMPLER_MAX_LOGPROBS];
} hl_gen_logprob;

typedef struct hl_gen_choice {
    hl_buf text;                 // all text released so far
    int n_tokens;                // tokens received (up to and including a stop string's end)
    hl_gen_logprob *lps;         // owned, n_lps entries (only when logprobs were asked for)
    int n_lps, cap_lps;
    bool done;
    enum hl_finish_reason finish;
    int stop_index;              // which stop string ended it, or -1
    int engine_completion_tokens; // from the engine's FINISH, or -1
} hl_gen_choice;

typedef struct hl_gen_delta {
    int index;                   // choice
    const char *text;            // newly released text, borrowed until the next feed
    size_t n_text;
    int first_lp, n_lp;          // logprob entries of this event: choice->lps[first_lp..+n_lp)
    bool finished;               // this choice ended with this event
    enum hl_finish_reason finish;
} hl_gen_delta;

typedef struct hl_gen hl_gen;

// A session for n (>= 1) choices over tok (borrowed, must outlive it) with the given stop
// strings (copied; see engine/stop.h for their limits). logprobs: keep a logprob entry per
// token. NULL + HL_ERR_INVAL for bad stop strings or n < 1.
hl_gen *hl_gen_create(const hl_tokenizer *tok, const char *const *stops, int n_stops, int n,
                      bool logprobs, hl_error *err);
void hl_gen_free(hl_gen *g); // accepts NULL

// Feeds one engine event and says what changed. Events of choices that have already ended
// (their tokens after a stop string, a CANCELLED finish caused by hl_gen_done) change nothing
// (d->n_text = 0, d->finished = false).
void hl_gen_feed(hl_gen *g, const hl_event *ev, hl_gen_delta *d);

// True once every choice has ended.
bool hl_gen_done(const hl_gen *g);

int hl_gen_n_choices(const hl_gen *g);
const hl_gen_choice *hl_gen_choice_at(const hl_gen *g, int index);

// Completion tokens over all choices (the engine's count unless a stop string cut a choice).
int hl_gen_completion_tokens(const hl_gen *g);

// Timings seen in the events: first token time (hl_time_ms clock, 0 if none), engine queue ms.
double hl_gen_first_token_ms(const hl_gen *g);
double hl_gen_queue_ms(const hl_gen *g);
// The first FINISH error message, or "" when the engine reported none.
const char *hl_gen_error(const hl_gen *g);
