// stop: stop strings over streamed text. Fed the successive UTF-8 pieces of the incremental
// detokenizer, it releases the text that can no longer be part of a stop string and holds
// back the longest suffix that could still start one; when a stop string completes, it
// releases the text before it, discards the stop string and everything after, and says
// which stop matched.
//
// Invariants: released text never contains a stop string and never splits a UTF-8 character
// (stop strings are valid UTF-8, so a held suffix starts at a character boundary). When
// several stop strings complete within one piece, the one that ends first in the text wins
// (ties: the longer one); this is what feeding one byte at a time would give.
//
//   hl_stop_matcher *m = hl_stop_matcher_create((const char *[]){"\nUser:", "###"}, 2, &err);
//   hl_stop_result r;
//   hl_stop_matcher_feed(m, piece, piece_len, &r);  // write r.text[0..r.n_bytes); stop if r.stop >= 0
//   hl_stop_matcher_flush(m, &r);                   // at the end of generation: the held suffix
//   hl_stop_matcher_free(m);
#pragma once

#include <stddef.h>

#include "common/hl.h"

#define HL_STOP_MAX_STRINGS 16 // OpenAI allows 4; a few more for chat templates
#define HL_STOP_MAX_BYTES 256  // per stop string

typedef struct hl_stop_matcher hl_stop_matcher;

typedef struct hl_stop_result {
    const char *text; // text to emit now, borrowed until the next call on the matcher
    size_t n_bytes;   // its length (may be 0)
    int stop;         // index of the stop string that completed, or -1
} hl_stop_result;

// A matcher for n_stops (0..HL_STOP_MAX_STRINGS) NUL-terminated stop strings, copied.
// NULL + HL_ERR_INVAL when there are too many, or one is empty, longer than
// HL_STOP_MAX_BYTES or not valid UTF-8. With no stop strings every piece passes through.
hl_stop_matcher *hl_stop_matcher_create(const char *const *stops, int n_stops, hl_error *err);
void hl_stop_matcher_free(hl_stop_matcher *m); // accepts NULL

// Feeds one piece (len bytes, borrowed for the call; may be empty) and fills *out. After a stop
// has matched, further feeds release nothing and report the same stop.
void hl_stop_matcher_feed(hl_stop_matcher *m, const char *piece, size_t len, hl_stop_result *out);

// Generation ended for another reason: releases the held-back suffix (nothing after a stop).
void hl_stop_matcher_flush(hl_stop_matcher *m, hl_stop_result *out);

// The index of the stop string that matched, or -1.
int hl_stop_matcher_matched(const hl_stop_matcher *m);
