// metrics: the server's Prometheus counters and histograms, rendered as text format 0.0.4 for
// GET /metrics. Every name starts with halyard_. Request outcomes are counted by model and HTTP
// status; latencies (time to first token, time per output token, end-to-end) go into fixed
// histograms; the engine's live numbers (running/waiting, KV blocks, prefix cache, preemptions,
// batch sizes, tokens) are read from an hl_engine_stats snapshot at render time.
// Thread-safe (one mutex); observing costs a few additions.
//
//   hl_metrics *m = hl_metrics_create();
//   hl_metrics_observe(m, &(hl_metrics_sample){.model = "smol", .status = 200, .ttft_ms = 41});
//   hl_buf b = {0}; hl_metrics_render(m, &stats, &b);   // text/plain; version=0.0.4
#pragma once

#include "engine/engine.h"
#include "server/buf.h"

typedef struct hl_metrics hl_metrics;

typedef struct hl_metrics_sample {
    const char *model;     // label value (copied); at most 32 distinct values are kept apart,
                           // later ones count as "other"
    const char *endpoint;  // "chat", "completions", "messages", ... (label value)
    int status;            // HTTP status
    double ttft_ms;        // < 0: not measured (error before the first token)
    double tpot_ms;        // < 0: fewer than two tokens
    double e2e_ms;         // < 0: not measured
    double queue_ms;       // < 0: not measured
    int prompt_tokens;
    int completion_tokens;
} hl_metrics_sample;

hl_metrics *hl_metrics_create(void);
void hl_metrics_free(hl_metrics *m); // accepts NULL

// Records one finished request.
void hl_metrics_observe(hl_metrics *m, const hl_metrics_sample *s);

// Open HTTP requests (generation requests being served); delta is +1 or -1.
void hl_metrics_in_flight(hl_metrics *m, int delta);

// Appends the Prometheus text for everything recorded plus st (NULL: engine not loaded yet).
void hl_metrics_render(hl_metrics *m, const hl_engine_stats *st, hl_buf *out);
