// metrics: Prometheus text rendering of counters and histograms (see metrics.h).
#include "server/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_SERIES 64
#define MAX_BUCKETS 16

typedef struct histogram {
    const char *name;
    const char *help;
    int n_bounds;
    double bounds[MAX_BUCKETS];  // upper bounds in seconds; +Inf is implicit
    uint64_t counts[MAX_BUCKETS + 1];
    double sum;
    uint64_t count;
} histogram;

typedef struct series {
    char model[64];
    char endpoint[24];
    int status;
    uint64_t count;
} series;

struct hl_metrics {
    pthread_mutex_t mu;
    series requests[MAX_SERIES]; // guarded by mu
    int n_series;
    int n_models;
    histogram ttft, tpot, e2e, queue;
    uint64_t prompt_tokens, completion_tokens;
    int in_flight;
};

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5,
                                        0.75, 1, 2.5, 5, 10, 30, 60};
static const double tpot_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075,
                                     0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5};

static void hist_init(histogram *h, const char *name, const char *help, const double *b, int n) {
    HL_ASSERT(n <= MAX_BUCKETS);
    *h = (histogram){.name = name, .help = help, .n_bounds = n};
    memcpy(h->bounds, b, (size_t)n * sizeof *b);
}

static void hist_observe(histogram *h, double seconds) {
    int i = 0;
    while (i < h->n_bounds && seconds > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += seconds;
    h->count++;
}

hl_metrics *hl_metrics_create(void) {
    hl_metrics *m = hl_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    int nl = (int)(sizeof latency_bounds / sizeof latency_bounds[0]);
    int nt = (int)(sizeof tpot_bounds / sizeof tpot_bounds[0]);
    hist_init(&m->ttft, "halyard_time_to_first_token_seconds",
              "Time from request arrival to the first generated token.", latency_bounds, nl);
    hist_init(&m->tpot, "halyard_time_per_output_token_seconds",
              "Mean time between output tokens of one request (after the first).", tpot_bounds, nt);
    hist_init(&m->e2e, "halyard_e2e_request_latency_seconds",
              "Time from request arrival to its last byte.", latency_bounds, nl);
    hist_init(&m->queue, "halyard_request_queue_time_seconds",
              "Time a request waited in the engine queue before it was first scheduled.",
              latency_bounds, nl);
    return m;
}

void hl_metrics_free(hl_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static bool model_known(const hl_metrics *m, const char *model) {
    for (int i = 0; i < m->n_series; i++)
        if (strcmp(m->requests[i].model, model) == 0) return true;
    return false;
}

// Finds or adds the (model, endpoint, status) series; the last slot absorbs overflow.
static series *find_series(hl_metrics *m, const char *model, const char *endpoint, int status) {
    if (!model_known(m, model) && m->n_models >= 32) model = "other";
    for (int i = 0; i < m->n_series; i++) {
        series *s = &m->requests[i];
        if (s->status == status && strcmp(s->model, model) == 0 && strcmp(s->endpoint, endpoint) == 0)
            return s;
    }
    if (m->n_series == MAX_SERIES) return &m->requests[MAX_SERIES - 1];
    if (!model_known(m, model)) m->n_models++;
    series *s = &m->requests[m->n_series++];
    snprintf(s->model, sizeof s->model, "%s", model);
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    s->status = status;
    return s;
}

void hl_metrics_observe(hl_metrics *m, const hl_metrics_sample *s) {
    pthread_mutex_lock(&m->mu);
    find_series(m, s->model ? s->model : "", s->endpoint ? s->endpoint : "", s->status)->count++;
    if (s->ttft_ms >= 0) hist_observe(&m->ttft, s->ttft_ms / 1000.0);
    if (s->tpot_ms >= 0) hist_observe(&m->tpot, s->tpot_ms / 1000.0);
    if (s->e2e_ms >= 0) hist_observe(&m->e2e, s->e2e_ms / 1000.0);
    if (s->queue_ms >= 0) hist_observe(&m->queue, s->queue_ms / 1000.0);
    m->prompt_tokens += (uint64_t)(s->prompt_tokens > 0 ? s->prompt_tokens : 0);
    m->completion_tokens += (uint64_t)(s->completion_tokens > 0 ? s->completion_tokens : 0);
    pthread_mutex_unlock(&m->mu);
}

void hl_metrics_in_flight(hl_metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->in_flight += delta;
    pthread_mutex_unlock(&m->mu);
}

// Label values are escaped as the text format asks: backslash, quote and newline.
static void label_value(hl_buf *out, const char *v) {
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') hl_buf_printf(out, "\\%c", *v);
        else if (*v == '\n') hl_buf_puts(out, "\\n");
        else hl_buf_append(out, v, 1);
    }
}

static void header(hl_buf *out, const char *name, const char *type, const char *help) {
    hl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(hl_buf *out, const char *name, const char *type, const char *help, double v) {
    header(out, name, type, help);
    hl_buf_printf(out, "%s %.17g\n", name, v);
}

static void render_hist(hl_buf *out, const histogram *h) {
    header(out, h->name, "histogram", h->help);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        hl_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    hl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, (unsigned long long)cum);
    hl_buf_printf(out, "%s_sum %.17g\n%s_count %llu\n", h->name, h->sum, h->name,
                  (unsigned long long)h->count);
}

// The engine's steps by batch size: buckets 1, 2-3, 4-7, ..., 64-127, 128+.
static void render_batch_hist(hl_buf *out, const hl_engine_stats *st) {
    const char *name = "halyard_batch_size";
    header(out, name, "histogram", "Engine steps by the number of sequences in the batch.");
    uint64_t cum = 0;
    double sum = 0;
    for (int i = 0; i < 8; i++) {
        cum += st->batch_size_hist[i];
        sum += (double)st->batch_size_hist[i] * (double)(1 << i); // lower bound of the bucket
        if (i < 7) hl_buf_printf(out, "%s_bucket{le=\"%d\"} %llu\n", name, (2 << i) - 1, (unsigned long long)cum);
    }
    hl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name,
                  (unsigned long long)cum, name, sum, name, (unsigned long long)cum);
}

static void render_engine(hl_buf *out, const hl_engine_stats *st) {
    metric(out, "halyard_requests_running", "gauge", "Sequences the engine is running.", st->running);
    metric(out, "halyard_requests_waiting", "gauge", "Requests waiting for the engine.", st->waiting);
    metric(out, "halyard_kv_cache_blocks_total", "gauge", "KV-cache blocks in the pool.", st->kv_blocks_total);
    metric(out, "halyard_kv_cache_blocks_used", "gauge", "KV-cache blocks held by sequences.", st->kv_blocks_used);
    metric(out, "halyard_kv_cache_blocks_cached", "gauge", "Unreferenced KV-cache blocks kept for prefix reuse.",
           st->kv_blocks_cached);
    double usage = st->kv_blocks_total > 0 ? (double)st->kv_blocks_used / st->kv_blocks_total : 0;
    metric(out, "halyard_kv_cache_usage_ratio", "gauge", "Fraction of KV-cache blocks in use.", usage);
    metric(out, "halyard_prefix_cache_queries_total", "counter", "Prompt blocks looked up in the prefix cache.",
           (double)st->prefix_queries);
    metric(out, "halyard_prefix_cache_hits_total", "counter", "Prompt blocks found in the prefix cache.",
           (double)st->prefix_hits);
    double ratio = st->prefix_queries ? (double)st->prefix_hits / (double)st->prefix_queries : 0;
    metric(out, "halyard_prefix_cache_hit_ratio", "gauge", "Prefix-cache hits over lookups.", ratio);
    metric(out, "halyard_preemptions_total", "counter", "Sequences preempted for lack of KV blocks.",
           (double)st->preemptions);
    metric(out, "halyard_engine_steps_total", "counter", "Engine steps run.", (double)st->steps);
    metric(out, "halyard_engine_prompt_tokens_total", "counter", "Prompt tokens the engine processed.",
           (double)st->prompt_tokens);
    metric(out, "halyard_engine_generation_tokens_total", "counter", "Tokens the engine generated.",
           (double)st->generated_tokens);
    metric(out, "halyard_sampling_candidate_rows_total", "counter",
           "Logit rows sampled from their top-k candidates instead of the whole row.", (double)st->candidate_rows);
    metric(out, "halyard_sampling_candidate_fallbacks_total", "counter",
           "Candidate rows whose draw fell past the candidates and fetched the whole row.",
           (double)st->candidate_fallbacks);
    render_batch_hist(out, st);
}

void hl_metrics_render(hl_metrics *m, const hl_engine_stats *st, hl_buf *out) {
    pthread_mutex_lock(&m->mu);
    header(out, "halyard_requests_total", "counter", "Finished HTTP requests by model, endpoint and status.");
    for (int i = 0; i < m->n_series; i++) {
        const series *s = &m->requests[i];
        hl_buf_puts(out, "halyard_requests_total{model=\"");
        label_value(out, s->model);
        hl_buf_puts(out, "\",endpoint=\"");
        label_value(out, s->endpoint);
        hl_buf_printf(out, "\",status=\"%d\"} %llu\n", s->status, (unsigned long long)s->count);
    }
    metric(out, "halyard_http_requests_in_flight", "gauge", "Generation requests being served.", m->in_flight);
    metric(out, "halyard_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
           (double)m->prompt_tokens);
    metric(out, "halyard_generation_tokens_total", "counter", "Completion tokens of finished requests.",
           (double)m->completion_tokens);
    render_hist(out, &m->ttft);
    render_hist(out, &m->tpot);
    render_hist(out, &m->e2e);
    render_hist(out, &m->queue);
    pthread_mutex_unlock(&m->mu);
    if (st) render_engine(out, st);
}
