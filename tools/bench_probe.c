// bench_probe: what this machine can do at best — memcpy bandwidth over buffers larger than
// the last-level cache and fp32 FMA throughput on every core — measured before `bench
// kernels` times the real kernels, so each result can be read as a share of a ceiling.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels/cpu/cpu_features.h"
#include "tools/bench.h"

#define MAX_PROBE_BYTES ((size_t)1 << 30) // per buffer: two of them must fit next to the weights
#define MIN_PROBE_BYTES ((size_t)256 << 20)

enum { JOB_MEMCPY, JOB_FMA };

typedef struct probe_job {
    int kind, ith, nth, isa;
    const char *src;
    char *dst;
    size_t n_bytes;
    int reps;
    int64_t iters;
    double sink;
} probe_job;

typedef float v4sf __attribute__((vector_size(16))); // SSE2 on x86-64, NEON elsewhere

// The baseline ISA's loop: separate multiply and add (the baseline has no FMA).
static double fma_baseline(int64_t iters, float seed) {
    v4sf m = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, a = m * (seed * 1e-7f);
    v4sf c0 = m * seed, c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    v4sf c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (int64_t i = 0; i < iters; i++) {
        c0 = c0 * m + a;
        c1 = c1 * m + a;
        c2 = c2 * m + a;
        c3 = c3 * m + a;
        c4 = c4 * m + a;
        c5 = c5 * m + a;
        c6 = c6 * m + a;
        c7 = c7 * m + a;
        c8 = c8 * m + a;
        c9 = c9 * m + a;
        c10 = c10 * m + a;
        c11 = c11 * m + a;
    }
    v4sf s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    return (double)s[0] + s[3];
}

static int fma_lanes(int isa) {
    return isa >= HL_CPU_ISA_AVX512 ? 16 : isa >= HL_CPU_ISA_AVX2 ? 8 : 4;
}

static double fma_run(int isa, int64_t iters, float seed) {
    if (isa >= HL_CPU_ISA_AVX512) return hl_bench_fma_avx512(iters, seed);
    if (isa >= HL_CPU_ISA_AVX2) return hl_bench_fma_avx2(iters, seed);
    return fma_baseline(iters, seed);
}

static void *job_main(void *arg) {
    probe_job *j = arg;
    if (j->kind == JOB_FMA) {
        j->sink = fma_run(j->isa, j->iters, 1.0f + (float)j->ith);
        return NULL;
    }
    size_t lo = j->n_bytes * (size_t)j->ith / (size_t)j->nth,
           hi = j->n_bytes * (size_t)(j->ith + 1) / (size_t)j->nth;
    for (int r = 0; r < j->reps; r++) memcpy(j->dst + lo, j->src + lo, hi - lo);
    return NULL;
}

// Runs jobs[0..n) on n threads (job 0 on the caller) and puts the wall time in *ms.
static int run_jobs(probe_job *jobs, int n, double *ms, hl_error *err) {
    pthread_t *th = hl_xcalloc((size_t)n, sizeof(pthread_t));
    double t0 = hl_time_ms();
    int started = 1, rc = 0;
    for (; started < n && rc == 0; started++)
        rc = pthread_create(&th[started], NULL, job_main, &jobs[started]);
    if (rc != 0) started--;
    job_main(&jobs[0]);
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    *ms = hl_time_ms() - t0;
    free(th);
    if (rc != 0) return hl_errorf(err, HL_ERR_IO, "probe: pthread_create: %s", strerror(rc));
    return HL_OK;
}

static int probe_memcpy(int nth, size_t n_bytes, double min_ms, double *gbps, hl_error *err) {
    char *src = malloc(n_bytes), *dst = malloc(n_bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        return hl_errorf(err, HL_ERR_NOMEM, "probe: cannot allocate 2 x %zu bytes", n_bytes);
    }
    memset(src, 1, n_bytes);
    probe_job *jobs = hl_xcalloc((size_t)nth, sizeof(probe_job));
    for (int i = 0; i < nth; i++)
        jobs[i] = (probe_job){.kind = JOB_MEMCPY,
                              .ith = i,
                              .nth = nth,
                              .src = src,
                              .dst = dst,
                              .n_bytes = n_bytes,
                              .reps = 1};
    double ms = 0;
    int rc = run_jobs(jobs, nth, &ms, err); // the first pass also faults the destination in
    if (rc == HL_OK) rc = run_jobs(jobs, nth, &ms, err);
    int reps = ms > 0 ? (int)(min_ms / ms) + 1 : 1;
    for (int i = 0; i < nth; i++) jobs[i].reps = reps < 2 ? 2 : reps;
    if (rc == HL_OK) rc = run_jobs(jobs, nth, &ms, err);
    *gbps = 2.0 * (double)n_bytes * jobs[0].reps / (ms * 1e6);
    free(jobs);
    free(src);
    free(dst);
    return rc;
}

static int probe_fma(int nth, int isa, double min_ms, double *gflops, hl_error *err) {
    probe_job *jobs = hl_xcalloc((size_t)nth, sizeof(probe_job));
    int64_t iters = 1 << 20;
    double ms = 0;
    int rc = HL_OK;
    for (int attempt = 0; attempt < 2 && rc == HL_OK; attempt++) {
        for (int i = 0; i < nth; i++)
            jobs[i] =
                (probe_job){.kind = JOB_FMA, .ith = i, .nth = nth, .isa = isa, .iters = iters};
        rc = run_jobs(jobs, nth, &ms, err);
        if (attempt == 0) iters = (int64_t)((double)iters * min_ms / (ms > 0.1 ? ms : 0.1)) + 1;
    }
    *gflops = (double)nth * (double)iters * HL_BENCH_FMA_CHAINS * fma_lanes(isa) * 2.0 / (ms * 1e6);
    free(jobs);
    return rc;
}

static size_t sysfs_cache_bytes(int index) {
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    char unit = 0;
    int n = fscanf(f, "%llu%c", &v, &unit);
    fclose(f);
    if (n < 1) return 0;
    if (unit == 'K') v <<= 10;
    else if (unit == 'M') v <<= 20;
    return (size_t)v;
}

size_t hl_bench_llc_bytes(void) {
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0) return (size_t)v;
    for (int i = 4; i >= 2; i--) {
        size_t b = sysfs_cache_bytes(i);
        if (b > 0) return b;
    }
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return v > 0 ? (size_t)v : (size_t)32 << 20;
}

int hl_bench_probe_cpu(int n_threads, int isa, double min_ms, hl_bench_ceilings *out,
                       hl_error *err) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = n_threads > 0 ? n_threads : (int)(cores > 0 ? cores : 1);
    int widest = hl_cpu_features_detect();
    if (isa > widest) isa = widest;
    size_t llc = hl_bench_llc_bytes(), probe = 2 * llc;
    if (probe < MIN_PROBE_BYTES) probe = MIN_PROBE_BYTES;
    if (probe > MAX_PROBE_BYTES) probe = MAX_PROBE_BYTES;
    *out = (hl_bench_ceilings){.n_threads = nth,
                               .llc_bytes = llc,
                               .probe_bytes = probe,
                               .fma_isa = isa >= HL_CPU_ISA_AVX512 ? "avx512"
                                   : isa >= HL_CPU_ISA_AVX2        ? "avx2"
                                                                   : "sse2"};
    int rc = probe_memcpy(nth, probe, min_ms, &out->memcpy_gbps, err);
    if (rc != HL_OK) return rc;
    return probe_fma(nth, isa, min_ms, &out->peak_gflops, err);
}
