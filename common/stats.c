// stats: percentiles, mean/sd and goodput for benchmark reports (see stats.h).
#include "common/stats.h"

#include <math.h>
#include <stdlib.h>

#include "common/hl.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double hl_stats_percentile_sorted(const double *sorted, size_t n, double p) {
    if (n == 0) return NAN;
    if (!(p > 0)) p = 0; // also catches NaN
    if (p > 100) p = 100;
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double frac = rank - (double)lo;
    return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

size_t hl_stats_sorted_copy(const double *x, size_t n, double *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isnan(x[i])) out[m++] = x[i];
    }
    qsort(out, m, sizeof(double), cmp_double);
    return m;
}

void hl_stats_summarize(const double *x, size_t n, hl_stats_summary *out) {
    *out = (hl_stats_summary){.n = 0, .mean = NAN, .sd = NAN, .min = NAN, .max = NAN,
                              .p50 = NAN, .p90 = NAN, .p95 = NAN, .p99 = NAN};
    if (n == 0) return;
    double *s = hl_xmalloc(n * sizeof(double));
    size_t m = hl_stats_sorted_copy(x, n, s);
    if (m == 0) {
        free(s);
        return;
    }
    double sum = 0;
    for (size_t i = 0; i < m; i++) sum += s[i];
    double mean = sum / (double)m;
    double ss = 0; // two-pass variance: no cancellation for large, close values
    for (size_t i = 0; i < m; i++) ss += (s[i] - mean) * (s[i] - mean);
    out->n = m;
    out->mean = mean;
    out->sd = m > 1 ? sqrt(ss / (double)(m - 1)) : 0.0;
    out->min = s[0];
    out->max = s[m - 1];
    out->p50 = hl_stats_percentile_sorted(s, m, 50);
    out->p90 = hl_stats_percentile_sorted(s, m, 90);
    out->p95 = hl_stats_percentile_sorted(s, m, 95);
    out->p99 = hl_stats_percentile_sorted(s, m, 99);
    free(s);
}

static bool meets(double v, double slo, bool nan_meets) {
    if (slo <= 0) return true;
    if (isnan(v)) return nan_meets;
    return v <= slo;
}

size_t hl_stats_goodput(const double *ttft_ms, const double *tpot_ms, size_t n, double slo_ttft_ms,
                        double slo_tpot_ms) {
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        if (meets(ttft_ms[i], slo_ttft_ms, false) && meets(tpot_ms[i], slo_tpot_ms, true)) good++;
    }
    return good;
}
