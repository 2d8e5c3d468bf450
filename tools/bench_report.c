// bench_report: from `bench serve` records to the summary, the table, JSON and SVG (bench.h).
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "tools/bench.h"
#include "tools/svg.h"

#define CDF_POINTS 400 // points per CDF series: enough for a smooth curve, small files

static const char *const err_names[HL_BENCH_ERR_COUNT] = {
    "ok", "connect", "timeout", "http_4xx", "http_5xx", "http_other",
    "closed", "malformed", "stream_error", "other",
};

const char *hl_bench_err_name(int kind) {
    if (kind < 0 || kind >= HL_BENCH_ERR_COUNT) return "unknown";
    return err_names[kind];
}

void hl_bench_record_add_itl(hl_bench_record *r, double gap_ms) {
    if (r->n_itl == r->cap_itl) {
        r->cap_itl = r->cap_itl ? 2 * r->cap_itl : 64;
        r->itl_ms = hl_xrealloc(r->itl_ms, (size_t)r->cap_itl * sizeof(double));
    }
    r->itl_ms[r->n_itl++] = gap_ms;
}

void hl_bench_run_free(hl_bench_run *run) {
    if (!run) return;
    for (int i = 0; i < run->n; i++) free(run->recs[i].itl_ms);
    free(run->recs);
    run->recs = NULL;
    run->n = 0;
}

// TPOT of one successful request: the mean gap after the first token; NaN for <= 1 token.
static double record_tpot(const hl_bench_record *r) {
    if (r->output_tokens <= 1 || isnan(r->ttft_ms)) return NAN;
    return (r->e2e_ms - r->ttft_ms) / (r->output_tokens - 1);
}

// ---- summary ----

void hl_bench_summarize(const hl_bench_run *run, double slo_ttft_ms, double slo_tpot_ms,
                        hl_bench_summary *out) {
    *out = (hl_bench_summary){.slo_ttft_ms = slo_ttft_ms, .slo_tpot_ms = slo_tpot_ms};
    size_t n = (size_t)run->n, n_itl = 0, k = 0;
    for (int i = 0; i < run->n; i++) n_itl += (size_t)run->recs[i].n_itl;
    double *ttft = hl_xmalloc((n + 1) * sizeof(double)),
           *tpot = hl_xmalloc((n + 1) * sizeof(double));
    double *e2e = hl_xmalloc((n + 1) * sizeof(double)),
           *itl = hl_xmalloc((n_itl + 1) * sizeof(double));
    size_t m = 0;
    for (int i = 0; i < run->n; i++) {
        const hl_bench_record *r = &run->recs[i];
        out->errors[r->err]++;
        if (r->err != HL_BENCH_OK) continue;
        out->completed++;
        out->usage_reported += r->usage;
        out->input_tokens += r->prompt_tokens > 0 ? r->prompt_tokens : 0;
        out->output_tokens += r->output_tokens;
        ttft[m] = r->ttft_ms;
        tpot[m] = record_tpot(r);
        e2e[m] = r->e2e_ms;
        m++;
        for (int j = 0; j < r->n_itl; j++) itl[k++] = r->itl_ms[j];
    }
    out->failed = run->n - out->completed;
    hl_stats_summarize(ttft, m, &out->ttft);
    hl_stats_summarize(tpot, m, &out->tpot);
    hl_stats_summarize(e2e, m, &out->e2e);
    hl_stats_summarize(itl, k, &out->itl);
    out->good = (int)hl_stats_goodput(ttft, tpot, m, slo_ttft_ms, slo_tpot_ms);
    double d = run->duration_s > 0 ? run->duration_s : NAN;
    out->request_throughput = out->completed / d;
    out->output_throughput = (double)out->output_tokens / d;
    out->total_token_throughput = (double)(out->input_tokens + out->output_tokens) / d;
    out->goodput = out->good / d;
    free(ttft);
    free(tpot);
    free(e2e);
    free(itl);
}

// ---- the human table ----

static void print_metric(FILE *f, const char *name, const hl_stats_summary *s) {
    fprintf(f, "%-10s %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, s->mean, s->sd, s->p50,
            s->p90, s->p95, s->p99);
}

static void print_errors(FILE *f, const hl_bench_summary *s) {
    fprintf(f, "%-34s", "Errors by kind:");
    bool any = false;
    for (int k = 1; k < HL_BENCH_ERR_COUNT; k++) {
        if (!s->errors[k]) continue;
        fprintf(f, " %s=%d", hl_bench_err_name(k), s->errors[k]);
        any = true;
    }
    fprintf(f, "%s\n", any ? "" : " none");
}

static void print_load(FILE *f, const hl_bench_run *run) {
    if (run->rate > 0) {
        fprintf(f, "%-34s %.2f req/s", "Load:", run->rate);
        if (run->concurrency > 0) fprintf(f, " (at most %d in flight)", run->concurrency);
        fputc('\n', f);
        return;
    }
    fprintf(f, "%-34s %d concurrent (closed loop)\n", "Load:", run->concurrency);
}

void hl_bench_print_summary(FILE *f, const char *label, const hl_bench_run *run,
                            const hl_bench_summary *s) {
    fprintf(f, "=============== serving benchmark: %s ===============\n", label);
    print_load(f, run);
    fprintf(f, "%-34s %d\n", "Successful requests:", s->completed);
    fprintf(f, "%-34s %d\n", "Failed requests:", s->failed);
    print_errors(f, s);
    fprintf(f, "%-34s %.2f\n", "Benchmark duration (s):", run->duration_s);
    fprintf(f, "%-34s %lld\n", "Total input tokens:", s->input_tokens);
    fprintf(f, "%-34s %lld%s\n", "Total generated tokens:", s->output_tokens,
            s->usage_reported < s->completed ? " (some counted as chunks: no usage)" : "");
    fprintf(f, "%-34s %.2f\n", "Request throughput (req/s):", s->request_throughput);
    fprintf(f, "%-34s %.2f\n", "Output token throughput (tok/s):", s->output_throughput);
    fprintf(f, "%-34s %.2f\n", "Total token throughput (tok/s):", s->total_token_throughput);
    if (s->slo_ttft_ms > 0 || s->slo_tpot_ms > 0) {
        fprintf(f, "%-34s %.2f req/s, %d of %d (%.1f%%) [TTFT <= %g ms, TPOT <= %g ms]\n",
                "Goodput:", s->goodput, s->good, run->n, run->n ? 100.0 * s->good / run->n : 0.0,
                s->slo_ttft_ms, s->slo_tpot_ms);
    }
    fprintf(f, "%-10s %10s %10s %10s %10s %10s %10s\n", "(ms)", "mean", "sd", "p50", "p90", "p95",
            "p99");
    print_metric(f, "TTFT", &s->ttft);
    print_metric(f, "TPOT", &s->tpot);
    print_metric(f, "ITL", &s->itl);
    print_metric(f, "E2E", &s->e2e);
    fprintf(f, "==================================================================\n");
}

void hl_bench_print_sweep(FILE *f, const hl_bench_run *runs, const hl_bench_summary *sums, int n) {
    fprintf(f, "%-12s %8s %8s %10s %10s %10s %10s %10s %7s\n", "load", "ok", "req/s", "out tok/s",
            "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "errors");
    for (int i = 0; i < n; i++) {
        char load[32];
        if (runs[i].rate > 0) snprintf(load, sizeof load, "rate=%g", runs[i].rate);
        else snprintf(load, sizeof load, "c=%d", runs[i].concurrency);
        const hl_bench_summary *s = &sums[i];
        fprintf(f, "%-12s %8d %8.2f %10.1f %10.1f %10.1f %10.2f %10.2f %7d\n", load, s->completed,
                s->request_throughput, s->output_throughput, s->ttft.p50, s->ttft.p99, s->tpot.p50,
                s->tpot.p99, s->failed);
    }
}

// ---- JSON ----

static cJSON *stats_json(const hl_stats_summary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON_AddNumberToObject(o, "mean", s->mean); // cJSON writes NaN as null
    cJSON_AddNumberToObject(o, "sd", s->sd);
    cJSON_AddNumberToObject(o, "min", s->min);
    cJSON_AddNumberToObject(o, "p50", s->p50);
    cJSON_AddNumberToObject(o, "p90", s->p90);
    cJSON_AddNumberToObject(o, "p95", s->p95);
    cJSON_AddNumberToObject(o, "p99", s->p99);
    cJSON_AddNumberToObject(o, "max", s->max);
    return o;
}

static cJSON *summary_json(const hl_bench_run *run, const hl_bench_summary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "requests", run->n);
    cJSON_AddNumberToObject(o, "completed", s->completed);
    cJSON_AddNumberToObject(o, "failed", s->failed);
    cJSON *e = cJSON_AddObjectToObject(o, "errors");
    for (int k = 1; k < HL_BENCH_ERR_COUNT; k++)
        cJSON_AddNumberToObject(e, hl_bench_err_name(k), s->errors[k]);
    cJSON_AddNumberToObject(o, "duration_s", run->duration_s);
    cJSON_AddNumberToObject(o, "input_tokens", (double)s->input_tokens);
    cJSON_AddNumberToObject(o, "output_tokens", (double)s->output_tokens);
    cJSON_AddNumberToObject(o, "usage_reported", s->usage_reported);
    cJSON_AddNumberToObject(o, "request_throughput", s->request_throughput);
    cJSON_AddNumberToObject(o, "output_throughput", s->output_throughput);
    cJSON_AddNumberToObject(o, "total_token_throughput", s->total_token_throughput);
    cJSON_AddItemToObject(o, "ttft_ms", stats_json(&s->ttft));
    cJSON_AddItemToObject(o, "tpot_ms", stats_json(&s->tpot));
    cJSON_AddItemToObject(o, "itl_ms", stats_json(&s->itl));
    cJSON_AddItemToObject(o, "e2e_ms", stats_json(&s->e2e));
    cJSON *g = cJSON_AddObjectToObject(o, "goodput");
    cJSON_AddNumberToObject(g, "slo_ttft_ms", s->slo_ttft_ms);
    cJSON_AddNumberToObject(g, "slo_tpot_ms", s->slo_tpot_ms);
    cJSON_AddNumberToObject(g, "good_requests", s->good);
    cJSON_AddNumberToObject(g, "share", run->n ? (double)s->good / run->n : NAN);
    cJSON_AddNumberToObject(g, "rate", s->goodput);
    return o;
}

static cJSON *record_json(const hl_bench_record *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", r->id);
    cJSON_AddBoolToObject(o, "ok", r->err == HL_BENCH_OK);
    cJSON_AddStringToObject(o, "error", hl_bench_err_name(r->err));
    if (r->err_msg[0]) cJSON_AddStringToObject(o, "error_message", r->err_msg);
    cJSON_AddNumberToObject(o, "http_status", (double)r->http_status);
    cJSON_AddNumberToObject(o, "start_ms", r->start_ms);
    cJSON_AddNumberToObject(o, "ttft_ms", r->ttft_ms);
    cJSON_AddNumberToObject(o, "e2e_ms", r->e2e_ms);
    cJSON_AddNumberToObject(o, "tpot_ms", r->err == HL_BENCH_OK ? record_tpot(r) : NAN);
    cJSON_AddNumberToObject(o, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(o, "output_tokens", r->output_tokens);
    cJSON_AddBoolToObject(o, "usage", r->usage);
    cJSON_AddNumberToObject(o, "chunks", r->n_chunks);
    cJSON_AddNumberToObject(o, "target_prompt_len", r->target_prompt_len);
    cJSON_AddNumberToObject(o, "target_output_len", r->target_output_len);
    cJSON *itl = cJSON_AddArrayToObject(o, "itl_ms");
    for (int j = 0; j < r->n_itl; j++) {
        double v = round(r->itl_ms[j] * 1000.0) / 1000.0; // microseconds are plenty
        cJSON_AddItemToArray(itl, cJSON_CreateNumber(v));
    }
    return o;
}

int hl_bench_write_json(const char *path, const char *label, const char *config_json,
                        const hl_bench_run *runs, const hl_bench_summary *sums, int n,
                        hl_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "tool", "halyard bench serve");
    cJSON_AddStringToObject(root, "label", label);
    cJSON *cfg = config_json ? cJSON_Parse(config_json) : NULL;
    cJSON_AddItemToObject(root, "config", cfg ? cfg : cJSON_CreateObject());
    cJSON *arr = cJSON_AddArrayToObject(root, "runs");
    for (int i = 0; i < n; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "concurrency", runs[i].concurrency);
        cJSON_AddNumberToObject(r, "rate", runs[i].rate);
        cJSON_AddItemToObject(r, "summary", summary_json(&runs[i], &sums[i]));
        cJSON *recs = cJSON_AddArrayToObject(r, "requests");
        for (int j = 0; j < runs[i].n; j++)
            cJSON_AddItemToArray(recs, record_json(&runs[i].recs[j]));
        cJSON_AddItemToArray(arr, r);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return hl_errorf(err, HL_ERR_NOMEM, "json: out of memory");
    FILE *f = fopen(path, "w");
    if (!f) {
        free(text);
        return hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
    }
    fputs(text, f);
    fputc('\n', f);
    free(text);
    if (ferror(f) | fclose(f))
        return hl_errorf(err, HL_ERR_IO, "write %s: %s", path, strerror(errno));
    return HL_OK;
}

// ---- SVG ----

// A CDF of v[0..n) (NaN skipped) as a staircase of at most CDF_POINTS points (x = value,
// y = share of values <= x) written to xs/ys (room for CDF_POINTS); returns the count.
static size_t cdf_points(const double *v, size_t n, double *xs, double *ys) {
    double *s = hl_xmalloc((n + 1) * sizeof(double));
    size_t m = hl_stats_sorted_copy(v, n, s);
    size_t k = m < CDF_POINTS / 2 ? m : CDF_POINTS / 2;
    for (size_t i = 0; i < k; i++) {
        size_t idx = k == m ? i : (size_t)((double)i * (double)(m - 1) / (double)(k - 1));
        xs[2 * i] = s[idx];
        ys[2 * i] = i == 0 ? 0.0 : ys[2 * i - 1]; // the step up at this value starts here
        xs[2 * i + 1] = s[idx];
        ys[2 * i + 1] = (double)(idx + 1) / (double)m;
    }
    free(s);
    return 2 * k;
}

enum { M_TTFT, M_TPOT, M_ITL, M_E2E, N_METRICS };

// The values of one metric over a run's successful requests (caller frees).
static double *metric_values(const hl_bench_run *run, int metric, size_t *n) {
    size_t cap = 1, k = 0;
    for (int i = 0; i < run->n; i++) cap += (size_t)(metric == M_ITL ? run->recs[i].n_itl : 1);
    double *v = hl_xmalloc(cap * sizeof(double));
    for (int i = 0; i < run->n; i++) {
        const hl_bench_record *r = &run->recs[i];
        if (r->err != HL_BENCH_OK) continue;
        if (metric == M_ITL) {
            for (int j = 0; j < r->n_itl; j++) v[k++] = r->itl_ms[j];
            continue;
        }
        v[k++] = metric == M_TTFT ? r->ttft_ms : metric == M_TPOT ? record_tpot(r) : r->e2e_ms;
    }
    *n = k;
    return v;
}

static void run_name(const hl_bench_run *run, char *buf, size_t n) {
    if (run->rate > 0) snprintf(buf, n, "rate %g/s", run->rate);
    else snprintf(buf, n, "concurrency %d", run->concurrency);
}

int hl_bench_write_svg(const char *path, const char *title, const hl_bench_run *runs,
                       const hl_bench_summary *sums, int n, hl_error *err) {
    static const char *const titles[N_METRICS] = {"TTFT CDF", "TPOT CDF", "ITL CDF",
                                                  "E2E latency CDF"};
    static const char *const xl[N_METRICS] = {
        "time to first token (ms)", "time per output token (ms)", "inter-token latency (ms)",
        "end-to-end latency (ms)"};
    hl_svg_series *ser = hl_xcalloc((size_t)(N_METRICS * n + 2), sizeof(hl_svg_series));
    double *buf = hl_xmalloc((size_t)(N_METRICS * n) * 2 * CDF_POINTS * sizeof(double));
    char (*names)[48] = hl_xcalloc((size_t)n, sizeof(*names));
    hl_svg_plot plots[N_METRICS + 2];
    for (int i = 0; i < n; i++) run_name(&runs[i], names[i], sizeof names[i]);
    for (int m = 0; m < N_METRICS; m++) {
        for (int i = 0; i < n; i++) {
            size_t nv;
            double *v = metric_values(&runs[i], m, &nv);
            double *xs = buf + (size_t)(m * n + i) * 2 * CDF_POINTS, *ys = xs + CDF_POINTS;
            size_t k = cdf_points(v, nv, xs, ys);
            free(v);
            ser[m * n + i] = (hl_svg_series){.name = names[i], .x = xs, .y = ys, .n = k};
        }
        plots[m] = (hl_svg_plot){.title = titles[m],
                                 .x_label = xl[m],
                                 .y_label = "share of requests",
                                 .series = &ser[m * n],
                                 .n_series = n};
    }
    int n_plots = N_METRICS;
    double *lx = hl_xmalloc((size_t)n * 3 * sizeof(double)), *tput = lx + n, *p99 = lx + 2 * n;
    bool by_rate = runs[0].rate > 0;
    for (int i = 0; i < n; i++) {
        lx[i] = by_rate ? runs[i].rate : runs[i].concurrency;
        tput[i] = sums[i].output_throughput;
        p99[i] = sums[i].ttft.p99;
    }
    if (n > 1) {
        const char *xlab = by_rate ? "request rate (req/s)" : "concurrent requests";
        ser[N_METRICS * n] =
            (hl_svg_series){.name = "output tokens/s", .x = lx, .y = tput, .n = (size_t)n};
        ser[N_METRICS * n + 1] =
            (hl_svg_series){.name = "p99 TTFT", .x = lx, .y = p99, .n = (size_t)n};
        plots[n_plots++] = (hl_svg_plot){.title = "output token throughput", .x_label = xlab,
                                         .y_label = "tokens/s", .series = &ser[N_METRICS * n],
                                         .n_series = 1, .log_x = !by_rate, .markers = true};
        plots[n_plots++] = (hl_svg_plot){.title = "p99 time to first token", .x_label = xlab,
                                         .y_label = "ms", .series = &ser[N_METRICS * n + 1],
                                         .n_series = 1, .log_x = !by_rate, .markers = true};
    }
    int rc = hl_svg_write(path, title, plots, n_plots, err);
    free(lx);
    free(names);
    free(buf);
    free(ser);
    return rc;
}
