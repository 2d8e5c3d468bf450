// bench_compare: `halyard bench serve --compare A.json,B.json` — puts the runs of several
// `bench serve --json` files side by side (a markdown table and an SVG chart), so that one
// server against another is one command after the two sweeps (see bench.h).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "tools/bench.h"
#include "tools/svg.h"

#define MAX_FILES 8

enum { C_TPUT, C_TTFT99, C_TPOT50, C_E2E99, N_CHARTS };

typedef struct file_runs {
    char *label;
    int n;
    double *conc, *req_s, *tput, *ttft50, *ttft99, *tpot50, *tpot99, *e2e99, *failed; // (n) each
    double *buf;
} file_runs;

static double num(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItem(o, a);
    if (b) v = cJSON_GetObjectItem(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN; // null (NaN when written) reads as NaN
}

static void take_run(file_runs *f, int i, const cJSON *run) {
    const cJSON *s = cJSON_GetObjectItem(run, "summary");
    double rate = num(run, "rate", NULL);
    f->conc[i] = rate > 0 ? rate : num(run, "concurrency", NULL);
    f->req_s[i] = num(s, "request_throughput", NULL);
    f->tput[i] = num(s, "output_throughput", NULL);
    f->ttft50[i] = num(s, "ttft_ms", "p50");
    f->ttft99[i] = num(s, "ttft_ms", "p99");
    f->tpot50[i] = num(s, "tpot_ms", "p50");
    f->tpot99[i] = num(s, "tpot_ms", "p99");
    f->e2e99[i] = num(s, "e2e_ms", "p99");
    f->failed[i] = num(s, "failed", NULL);
}

static int load_file(const char *path, file_runs *f) {
    hl_error err = {0};
    size_t n = 0;
    char *text = hl_read_file(path, (size_t)1 << 31, &n, &err);
    cJSON *j = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    const cJSON *runs = cJSON_GetObjectItem(j, "runs");
    if (!cJSON_IsArray(runs) || cJSON_GetArraySize(runs) == 0) {
        fprintf(stderr, "halyard bench serve: %s: %s\n", path,
                text ? "not a bench serve JSON file" : err.msg);
        cJSON_Delete(j);
        return 1;
    }
    const cJSON *label = cJSON_GetObjectItem(j, "label");
    f->label = hl_xstrdup(cJSON_IsString(label) ? label->valuestring : path);
    f->n = cJSON_GetArraySize(runs);
    f->buf = hl_xcalloc((size_t)f->n * 9, sizeof(double));
    double **cols[] = {&f->conc,   &f->req_s,  &f->tput,  &f->ttft50, &f->ttft99,
                       &f->tpot50, &f->tpot99, &f->e2e99, &f->failed};
    for (int c = 0; c < 9; c++) *cols[c] = f->buf + (size_t)c * f->n;
    for (int i = 0; i < f->n; i++) take_run(f, i, cJSON_GetArrayItem(runs, i));
    cJSON_Delete(j);
    return 0;
}

static int find_load(const file_runs *f, double load) {
    for (int i = 0; i < f->n; i++) {
        if (f->conc[i] == load) return i;
    }
    return -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The distinct loads of every file, ascending, into out (room for the sum of f->n); the count.
static int distinct_loads(const file_runs *fs, int n_files, double *out) {
    int n = 0;
    for (int k = 0; k < n_files; k++) {
        for (int i = 0; i < fs[k].n; i++) {
            bool seen = false;
            for (int j = 0; j < n && !seen; j++) seen = out[j] == fs[k].conc[i];
            if (!seen) out[n++] = fs[k].conc[i];
        }
    }
    qsort(out, (size_t)n, sizeof(double), cmp_double);
    return n;
}

static void print_ratios(const file_runs *a, const file_runs *b, const double *loads, int n_loads) {
    printf("\n| load | output tok/s, %s / %s | TTFT p99, %s / %s |\n|---:|---:|---:|\n", a->label,
           b->label, a->label, b->label);
    for (int l = 0; l < n_loads; l++) {
        int i = find_load(a, loads[l]), j = find_load(b, loads[l]);
        if (i < 0 || j < 0) continue;
        printf("| %g | %.2fx | %.2fx |\n", loads[l], a->tput[i] / b->tput[j],
               a->ttft99[i] / b->ttft99[j]);
    }
}

static void print_table(const file_runs *fs, int n_files) {
    int total = 0;
    for (int k = 0; k < n_files; k++) total += fs[k].n;
    double *loads = hl_xmalloc((size_t)total * sizeof(double));
    int n_loads = distinct_loads(fs, n_files, loads);
    printf("| load | server | req/s | output tok/s | TTFT p50 (ms) | TTFT p99 (ms) | TPOT p50 (ms) "
           "| TPOT p99 (ms) | E2E p99 (ms) | failed |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int l = 0; l < n_loads; l++) {
        for (int k = 0; k < n_files; k++) {
            const file_runs *f = &fs[k];
            int i = find_load(f, loads[l]);
            if (i < 0) continue;
            printf("| %g | %s | %.2f | %.1f | %.1f | %.1f | %.2f | %.2f | %.0f | %.0f |\n",
                   loads[l], f->label, f->req_s[i], f->tput[i], f->ttft50[i], f->ttft99[i],
                   f->tpot50[i], f->tpot99[i], f->e2e99[i], f->failed[i]);
        }
    }
    if (n_files == 2) print_ratios(&fs[0], &fs[1], loads, n_loads);
    free(loads);
}

static int write_chart(const char *path, const file_runs *fs, int n_files) {
    static const char *const titles[N_CHARTS] = {
        "output token throughput", "p99 time to first token", "p50 time per output token",
        "p99 end-to-end latency"};
    static const char *const ylab[N_CHARTS] = {"tokens/s", "ms", "ms", "ms"};
    hl_svg_series ser[N_CHARTS][MAX_FILES];
    hl_svg_plot plots[N_CHARTS];
    for (int c = 0; c < N_CHARTS; c++) {
        for (int k = 0; k < n_files; k++) {
            const file_runs *f = &fs[k];
            const double *y = c == C_TPUT ? f->tput
                : c == C_TTFT99           ? f->ttft99
                : c == C_TPOT50           ? f->tpot50
                                          : f->e2e99;
            ser[c][k] = (hl_svg_series){.name = f->label, .x = f->conc, .y = y, .n = (size_t)f->n};
        }
        plots[c] = (hl_svg_plot){.title = titles[c],
                                 .x_label = "concurrent requests",
                                 .y_label = ylab[c],
                                 .series = ser[c],
                                 .n_series = n_files,
                                 .log_x = true,
                                 .markers = true};
    }
    hl_error err = {0};
    if (hl_svg_write(path, "bench serve comparison", plots, N_CHARTS, &err) == HL_OK) return 0;
    fprintf(stderr, "halyard bench serve: %s\n", err.msg);
    return 1;
}

int hl_bench_compare(const char *files, const char *svg_path) {
    file_runs fs[MAX_FILES] = {0};
    int n_files = 0, rc = 0;
    char *copy = hl_xstrdup(files), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        if (n_files == MAX_FILES) {
            fprintf(stderr, "halyard bench serve: --compare takes at most %d files\n", MAX_FILES);
            rc = 2;
            break;
        }
        rc = load_file(t, &fs[n_files]);
        if (rc == 0) n_files++;
    }
    free(copy);
    if (rc == 0 && n_files > 0) print_table(fs, n_files);
    if (rc == 0 && n_files > 0 && svg_path) rc = write_chart(svg_path, fs, n_files);
    for (int k = 0; k < n_files; k++) {
        free(fs[k].label);
        free(fs[k].buf);
    }
    return rc;
}
