// stats: the descriptive statistics benchmarks report — percentiles with linear
// interpolation between order statistics (numpy.percentile's default "linear" method),
// mean, sample standard deviation, and goodput (requests meeting latency SLOs).
//
// Invariants: inputs are never modified (summaries sort a private copy); NaN values are
// skipped as "not measured" (a request with one output token has no TPOT); an empty input
// gives NaN statistics and n = 0, never a crash. Pure functions, thread-safe.
//
//   double lat_ms[] = {12.0, 15.5, 11.2};
//   hl_stats_summary s;
//   hl_stats_summarize(lat_ms, 3, &s);   // s.p50 == 12.0, s.mean == 12.9
//   size_t good = hl_stats_goodput(ttft, tpot, n, 200.0, 50.0);
#pragma once

#include <stddef.h>

typedef struct hl_stats_summary {
    size_t n;         // values that were not NaN
    double mean;
    double sd; // sample standard deviation (n - 1 denominator, numpy std(ddof=1)); 0 when n == 1
    double min, max;
    double p50, p90, p95, p99;
} hl_stats_summary;

// The p-th percentile (0 <= p <= 100) of sorted[0..n), ascending and NaN-free, interpolated
// linearly: rank r = p / 100 * (n - 1), value = sorted[floor r] + (r - floor r) *
// (sorted[ceil r] - sorted[floor r]). NaN when n == 0; p outside [0, 100] is clamped.
double hl_stats_percentile_sorted(const double *sorted, size_t n, double p);

// Sorts the non-NaN values of x[0..n) into out (caller-owned, room for n) ascending and
// returns how many there are.
size_t hl_stats_sorted_copy(const double *x, size_t n, double *out);

// Fills *out with the statistics of the non-NaN values of x[0..n). All fields but n are NaN
// when no value is left. Allocates a scratch copy (aborts only on out-of-memory).
void hl_stats_summarize(const double *x, size_t n, hl_stats_summary *out);

// Counts the requests i in [0, n) that meet both service-level objectives:
// ttft_ms[i] <= slo_ttft_ms and tpot_ms[i] <= slo_tpot_ms. An SLO <= 0 is "no bound".
// A NaN TTFT (no first token) fails a TTFT bound; a NaN TPOT (at most one output token,
// so nothing to pace) meets any TPOT bound, as in vLLM's benchmark_serving. Callers pass
// successful requests only; failed requests are not goodput by definition.
size_t hl_stats_goodput(const double *ttft_ms, const double *tpot_ms, size_t n, double slo_ttft_ms,
                        double slo_tpot_ms);
