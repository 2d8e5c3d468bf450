// bench: the internals of `halyard bench serve | engine | kernels`, shared by tools/bench*.c.
//
// `bench serve` (bench_serve.c) drives any OpenAI-compatible server with libcurl's multi
// interface and keeps one hl_bench_record per request; bench_sse.c parses the streamed
// Server-Sent Events incrementally; bench_report.c turns records into the summary, the
// human table, the JSON file and the SVG charts. `bench kernels` (bench_kernels.c) times
// backend ops against measured machine ceilings; `bench engine` (bench_engine.c) times the
// engine API in process.
//
// Invariants: a request always ends as exactly one record, successful or with one error
// kind; errors are counted, never fatal. Times are milliseconds from hl_time_ms().
//
//   hl_bench_run run = {...};                  // records filled by the load generator
//   hl_bench_summary s; hl_bench_summarize(&run, slo_ttft_ms, slo_tpot_ms, &s);
//   hl_bench_print_summary(stdout, &run, &s);
#pragma once

#include <stdio.h>

#include "common/hl.h"
#include "common/stats.h"

// ---- subcommands (argv[0] is the mode name) ----
int hl_bench_serve(int argc, char **argv);
int hl_bench_kernels(int argc, char **argv);
int hl_bench_engine(int argc, char **argv);

// ---- machine ceilings for `bench kernels` (bench_probe.c, bench_fma_*.c) ----

// Peak-FLOP loops: iters x HL_BENCH_FMA_CHAINS fused multiply-adds on 8 (AVX2) or 16
// (AVX-512) fp32 lanes; the result only keeps the work from being optimized away. Call one
// only when the CPU has that ISA (they are compiled with it).
#define HL_BENCH_FMA_CHAINS 12
double hl_bench_fma_avx2(int64_t iters, float seed);
double hl_bench_fma_avx512(int64_t iters, float seed);

typedef struct hl_bench_ceilings {
    int n_threads;          // threads the probes ran on
    size_t llc_bytes;       // last-level cache as the OS reports it (a guess when it does not)
    size_t probe_bytes;     // size of each memcpy probe buffer (> the last-level cache)
    double memcpy_gbps;     // memcpy bandwidth, bytes read + written per second / 1e9
    double peak_gflops;     // fp32 FMA peak, 2 flops per lane per FMA
    const char *fma_isa;    // which loop measured the peak: "sse2", "avx2", "avx512"
} hl_bench_ceilings;

// The last-level cache size of this machine in bytes (sysfs / sysconf; 32 MiB when unknown).
size_t hl_bench_llc_bytes(void);

// Measures the CPU's ceilings on n_threads threads (<= 0: one per core), the FMA loop on the
// widest of isa (enum hl_cpu_isa) it has. Each probe runs for about min_ms. HL_ERR_NOMEM
// when the probe buffers cannot be allocated, HL_ERR_IO when threads cannot start.
int hl_bench_probe_cpu(int n_threads, int isa, double min_ms, hl_bench_ceilings *out,
                       hl_error *err);

// ---- incremental SSE parsing (bench_sse.c) ----

// Called once per complete event with its data (data lines joined by '\n', NUL-terminated,
// borrowed for the call). Returns false to stop parsing.
typedef bool (*hl_bench_sse_fn)(void *user, const char *data, size_t n);

typedef struct hl_bench_sse {
    char *line;       // the current, incomplete line
    size_t line_n, line_cap;
    char *data;       // data of the current event so far
    size_t data_n, data_cap;
    bool has_data;
    bool last_cr;     // the previous byte was a '\r' (its '\n' may come in the next feed)
    size_t max_line;  // longer lines make feed fail (a server that never sends '\n')
} hl_bench_sse;

// Ready to parse; max_line bounds a line's length in bytes.
void hl_bench_sse_init(hl_bench_sse *s, size_t max_line);
void hl_bench_sse_free(hl_bench_sse *s);

// Consumes buf[0..n) (any split of the stream: partial lines, "\r\n" or "\n" endings);
// calls fn for each event completed by a blank line. False when a line exceeds max_line
// or fn asked to stop. Comments (":" lines) and fields other than data are ignored.
bool hl_bench_sse_feed(hl_bench_sse *s, const char *buf, size_t n, hl_bench_sse_fn fn, void *user);

// Delivers an event left without its closing blank line at the end of the stream.
bool hl_bench_sse_finish(hl_bench_sse *s, hl_bench_sse_fn fn, void *user);

// ---- per-request records and reports (bench_report.c) ----

enum hl_bench_err {
    HL_BENCH_OK = 0,
    HL_BENCH_ERR_CONNECT,      // could not connect or resolve
    HL_BENCH_ERR_TIMEOUT,      // the request took longer than --timeout
    HL_BENCH_ERR_HTTP_4XX,
    HL_BENCH_ERR_HTTP_5XX,
    HL_BENCH_ERR_HTTP_OTHER,   // 1xx/3xx or anything else not 200
    HL_BENCH_ERR_CLOSED,       // connection closed or reset before the response was complete
    HL_BENCH_ERR_MALFORMED,    // 200 but the body or an SSE event was not the expected JSON
    HL_BENCH_ERR_STREAM_ERROR, // the server sent an {"error": ...} object in the stream
    HL_BENCH_ERR_OTHER,        // any other transport failure
    HL_BENCH_ERR_COUNT
};

// "ok", "connect", "timeout", "http_4xx", ...; static storage.
const char *hl_bench_err_name(int kind);

typedef struct hl_bench_record {
    int id;                 // issue order within the run
    double start_ms;        // when it was sent, from the run's start
    double ttft_ms;         // to the first content chunk; NaN when none arrived
    double e2e_ms;          // to the end of the response
    double *itl_ms;         // (n_itl) gaps between consecutive content chunks; owned
    int n_itl, cap_itl;
    int prompt_tokens;      // from usage; -1 when the server did not say
    int output_tokens;      // usage.completion_tokens, else the number of content chunks
    bool usage;             // the token counts came from the server's usage
    int n_chunks;           // content chunks received
    int target_prompt_len;  // synthetic prompt length asked for (words); 0 for a dataset
    int target_output_len;  // max_tokens sent
    int err;                // enum hl_bench_err
    long http_status;       // 0 when no response
    char err_msg[160];
} hl_bench_record;

// Appends one inter-token gap.
void hl_bench_record_add_itl(hl_bench_record *r, double gap_ms);

// One load level: a closed loop at a concurrency or an open loop at a rate.
typedef struct hl_bench_run {
    int concurrency;        // closed loop: requests in flight; open loop: cap (0 = none)
    double rate;            // open loop requests/s; 0 = closed loop
    double duration_s;      // first send to last completion
    hl_bench_record *recs;  // (n) owned
    int n;
} hl_bench_run;

void hl_bench_run_free(hl_bench_run *run);

typedef struct hl_bench_summary {
    int completed, failed;
    int errors[HL_BENCH_ERR_COUNT];
    int usage_reported;                 // successful requests whose counts came from usage
    long long input_tokens, output_tokens;
    double request_throughput;          // completed / duration (req/s)
    double output_throughput;           // output tokens / duration (tok/s)
    double total_token_throughput;      // (input + output) / duration (tok/s)
    hl_stats_summary ttft, tpot, itl, e2e; // ms, successful requests only
    double slo_ttft_ms, slo_tpot_ms;    // <= 0: no bound
    int good;                           // successful requests meeting both SLOs
    double goodput;                     // good / duration (req/s)
} hl_bench_summary;

// Summarizes a finished run. Cannot fail.
void hl_bench_summarize(const hl_bench_run *run, double slo_ttft_ms, double slo_tpot_ms,
                        hl_bench_summary *out);

// The human-readable result table of one run.
void hl_bench_print_summary(FILE *f, const char *label, const hl_bench_run *run,
                            const hl_bench_summary *s);

// One line per run (concurrency or rate, throughput, TTFT/TPOT percentiles, errors).
void hl_bench_print_sweep(FILE *f, const hl_bench_run *runs, const hl_bench_summary *sums, int n);

// Writes {"label", "config": <config_json text>, "runs": [{summary, requests}]} to path.
// config_json is a JSON object's text (borrowed). HL_ERR_IO on write failure.
int hl_bench_write_json(const char *path, const char *label, const char *config_json,
                        const hl_bench_run *runs, const hl_bench_summary *sums, int n,
                        hl_error *err);

// Latency CDFs (TTFT, TPOT, ITL, E2E; one series per run) and, for more than one run,
// output throughput and p99 TTFT against concurrency (or rate). HL_ERR_IO on failure.
int hl_bench_write_svg(const char *path, const char *title, const hl_bench_run *runs,
                       const hl_bench_summary *sums, int n, hl_error *err);

// `bench serve --compare A.json,B.json`: prints a side-by-side markdown table of the runs in
// files written by hl_bench_write_json and, when svg_path is set, draws throughput and p99
// TTFT against concurrency with one series per file. Returns the exit code.
int hl_bench_compare(const char *files, const char *svg_path);
