// bench_engine: `halyard bench engine` — prompt-processing and generation throughput of the
// batching engine in process (no HTTP), per batch size, mean ± sd over repetitions, in
// llama-bench's spirit (its pp512 / tg128 tests, run for B sequences at once).
//
// ppP: B requests of P random prompt tokens and max_tokens 1 are submitted together; the
// rate is B * P tokens over the time until the last first token (as llama-bench's pp, it
// includes computing the logits of the last prompt token). tgN: B requests of a one-token
// prompt generate N tokens each with ignore_eos; the rate is all generated tokens over the
// time until the last finish. Times come from the engine's own event timestamps.
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/stats.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "tools/bench.h"
#include "tools/cli.h"

#define MAX_BATCHES 32

typedef struct eng_opts {
    const char *model, *device, *json_path;
    long long n_prompt, n_gen, reps, threads, chunk, kv_mb;
    int batch[MAX_BATCHES], n_batch;
} eng_opts;

typedef struct eng_result {
    bool pp;            // prompt processing (else generation)
    int batch;
    hl_stats_summary tok_s;
} eng_result;

static const char usage_text[] =
    "usage: halyard bench engine -m MODEL [--device cpu|cuda] [-p 512] [-n 128]\n"
    "         [--batch 1,4,16,64] [--reps 3] [-t THREADS] [--max-batched-tokens 512]\n"
    "         [--kv-cache-mb MB] [--json FILE]\n"
    "Runs the batching engine in this process and reports, for each batch size B, prompt\n"
    "processing (ppP: B prompts of P random tokens, max_tokens 1) and generation (tgN: B\n"
    "sequences generating N tokens each, ignore_eos) in tokens/s, mean +- sd over --reps runs\n"
    "after one warm-up. -p 0 or -n 0 skips that test. MODEL: GGUF, safetensors folder or\n"
    "synthetic:<shape>:<type>.\n";

static void usage(FILE *f) { fputs(usage_text, f); }

static bool parse_batches(eng_opts *o, const char *v) {
    o->n_batch = 0;
    char *copy = hl_xstrdup(v), *save = NULL;
    bool ok = true;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        long long b = 0;
        ok = o->n_batch < MAX_BATCHES && hl_cli_parse_int("--batch", t, 1, 4096, &b);
        if (ok) o->batch[o->n_batch++] = (int)b;
    }
    free(copy);
    return ok && o->n_batch > 0;
}

static bool parse_opt(eng_opts *o, const char *s, const char *v) {
    if (strcmp(s, "-m") == 0 || strcmp(s, "--model") == 0) return (o->model = v) != NULL;
    if (strcmp(s, "--device") == 0) return (o->device = v) != NULL;
    if (strcmp(s, "--json") == 0) return (o->json_path = v) != NULL;
    if (strcmp(s, "--batch") == 0) return v && parse_batches(o, v);
    if (strcmp(s, "-p") == 0) return hl_cli_parse_int(s, v, 0, 1 << 20, &o->n_prompt);
    if (strcmp(s, "-n") == 0) return hl_cli_parse_int(s, v, 0, 1 << 20, &o->n_gen);
    if (strcmp(s, "--reps") == 0 || strcmp(s, "-r") == 0)
        return hl_cli_parse_int(s, v, 1, 1000, &o->reps);
    if (strcmp(s, "-t") == 0 || strcmp(s, "--threads") == 0)
        return hl_cli_parse_int(s, v, 0, 1024, &o->threads);
    if (strcmp(s, "--max-batched-tokens") == 0)
        return hl_cli_parse_int(s, v, 1, 1 << 20, &o->chunk);
    if (strcmp(s, "--kv-cache-mb") == 0) return hl_cli_parse_int(s, v, 0, 1 << 24, &o->kv_mb);
    fprintf(stderr, "halyard bench engine: unknown option or missing value: %s\n", s);
    return false;
}

static int parse_args(int argc, char **argv, eng_opts *o) {
    *o = (eng_opts){.device = "cpu", .n_prompt = 512, .n_gen = 128, .reps = 3};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (!parse_opt(o, s, v)) return 2;
        i++;
    }
    if (o->n_batch == 0) parse_batches(o, "1,4,16,64");
    if (!o->model) {
        usage(stderr);
        return 2;
    }
    return 0;
}

static hl_engine *open_engine(const eng_opts *o, hl_error *err) {
    hl_engine_params p = hl_engine_default_params();
    p.model = o->model;
    p.device = o->device;
    p.n_threads = (int)o->threads;
    p.prefix_cache = false; // random prompts never share blocks; measure compute, not the cache
    int max_b = 1;
    for (int i = 0; i < o->n_batch; i++) max_b = o->batch[i] > max_b ? o->batch[i] : max_b;
    p.max_seqs = max_b;
    if (o->chunk > 0) p.max_batched_tokens = (int)o->chunk;
    if (o->kv_mb > 0) p.kv_cache_mb = (size_t)o->kv_mb;
    return hl_engine_create(&p, err);
}

// Waits for request id's FINISH; *end_ms = submit time + (first token or finish) time.
static int wait_finish(hl_engine *e, uint64_t id, double t_submit, bool pp, double *end_ms,
                       int *n_tokens, hl_error *err) {
    hl_event ev[32];
    for (;;) {
        int n = 0;
        int rc = hl_engine_read(e, id, ev, 32, -1, &n, err);
        if (rc != HL_OK) return rc;
        for (int i = 0; i < n; i++) {
            if (ev[i].type != HL_EVENT_FINISH) continue;
            if (ev[i].finish != HL_FINISH_LENGTH && ev[i].finish != HL_FINISH_STOP)
                return hl_errorf(err, HL_ERR_DEVICE, "request ended with %s: %s",
                                 hl_finish_reason_name(ev[i].finish), ev[i].error);
            *end_ms = t_submit + (pp ? ev[i].ttft_ms : ev[i].total_ms);
            *n_tokens = ev[i].completion_tokens;
            return HL_OK;
        }
    }
}

// One run of B requests; *tok_s is prompt (pp) or generated tokens per second.
static int run_once(hl_engine *e, bool pp, int b, int n_prompt, int n_gen, uint64_t seed,
                    double *tok_s, hl_error *err) {
    int n_vocab = hl_engine_model(e)->cfg.n_vocab, len = pp ? n_prompt : 1;
    int32_t *ids = hl_xmalloc((size_t)len * sizeof(int32_t));
    uint64_t *rid = hl_xcalloc((size_t)b, sizeof(uint64_t));
    double *t_sub = hl_xcalloc((size_t)b, sizeof(double));
    hl_request_params rp = hl_request_default_params();
    rp.sampling.temperature = 0;
    rp.sampling.max_tokens = pp ? 1 : n_gen;
    rp.sampling.ignore_eos = true;
    hl_rng rng = {seed};
    double t0 = hl_time_ms(), t_end = t0;
    int rc = HL_OK, n_sub = 0;
    long long tokens = 0;
    for (; n_sub < b && rc == HL_OK; n_sub++) {
        for (int i = 0; i < len; i++) ids[i] = (int32_t)(hl_rng_next(&rng) % (uint64_t)n_vocab);
        t_sub[n_sub] = hl_time_ms();
        rc = hl_engine_submit(e, ids, len, &rp, &rid[n_sub], err);
    }
    if (rc != HL_OK) n_sub--;
    for (int i = 0; i < n_sub && rc == HL_OK; i++) {
        double end = 0;
        int n_tok = 0;
        rc = wait_finish(e, rid[i], t_sub[i], pp, &end, &n_tok, err);
        t_end = end > t_end ? end : t_end;
        tokens += pp ? len : n_tok;
    }
    for (int i = 0; i < n_sub; i++) hl_engine_release(e, rid[i]);
    *tok_s = (double)tokens / ((t_end - t0) / 1000.0);
    free(ids);
    free(rid);
    free(t_sub);
    return rc;
}

static int run_test(hl_engine *e, const eng_opts *o, bool pp, int b, eng_result *out,
                    hl_error *err) {
    double *v = hl_xcalloc((size_t)o->reps, sizeof(double));
    int rc = HL_OK;
    for (int r = 0; r < o->reps && rc == HL_OK; r++) {
        uint64_t seed = hl_hash64((uint64_t)b * 1000 + (uint64_t)r * 2 + pp);
        rc = run_once(e, pp, b, (int)o->n_prompt, (int)o->n_gen, seed, &v[r], err);
    }
    *out = (eng_result){.pp = pp, .batch = b};
    hl_stats_summarize(v, (size_t)o->reps, &out->tok_s);
    free(v);
    return rc;
}

static void print_row(const eng_opts *o, const eng_result *r) {
    char test[32];
    snprintf(test, sizeof test, "%s%lld", r->pp ? "pp" : "tg", r->pp ? o->n_prompt : o->n_gen);
    printf("| %-8s | %5d | %11.2f ± %9.2f | %12.2f |\n", test, r->batch, r->tok_s.mean, r->tok_s.sd,
           r->tok_s.mean / r->batch);
    fflush(stdout);
}

static int write_json(const eng_opts *o, const eng_result *res, int n) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "device", o->device);
    cJSON_AddNumberToObject(j, "threads", (double)o->threads);
    cJSON_AddNumberToObject(j, "reps", (double)o->reps);
    cJSON *arr = cJSON_AddArrayToObject(j, "results");
    for (int i = 0; i < n; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "test", res[i].pp ? "pp" : "tg");
        cJSON_AddNumberToObject(r, "tokens", (double)(res[i].pp ? o->n_prompt : o->n_gen));
        cJSON_AddNumberToObject(r, "batch", res[i].batch);
        cJSON_AddNumberToObject(r, "tok_s_mean", res[i].tok_s.mean);
        cJSON_AddNumberToObject(r, "tok_s_sd", res[i].tok_s.sd);
        cJSON_AddNumberToObject(r, "tok_s_per_seq", res[i].tok_s.mean / res[i].batch);
        cJSON_AddItemToArray(arr, r);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    FILE *f = text ? fopen(o->json_path, "w") : NULL;
    int rc = f && fputs(text, f) >= 0 ? 0 : 1;
    if (f && fclose(f) != 0) rc = 1;
    if (rc)
        fprintf(stderr, "halyard bench engine: cannot write %s: %s\n", o->json_path,
                strerror(errno));
    free(text);
    return rc;
}

static int run_all(hl_engine *e, const eng_opts *o, eng_result *res, int *n_res, hl_error *err) {
    double warm = 0;
    int rc = run_once(e, true, 1, o->n_prompt > 32 ? 32 : (int)(o->n_prompt ? o->n_prompt : 1), 4,
                      1, &warm, err);
    printf("| test     | batch |    tokens/s (mean ± sd) | per sequence |\n");
    printf("|----------|------:|------------------------:|-------------:|\n");
    for (int i = 0; i < o->n_batch && rc == HL_OK; i++) {
        for (int pp = 1; pp >= 0 && rc == HL_OK; pp--) {
            if ((pp && o->n_prompt == 0) || (!pp && o->n_gen == 0)) continue;
            rc = run_test(e, o, pp, o->batch[i], &res[*n_res], err);
            if (rc == HL_OK) print_row(o, &res[(*n_res)++]);
        }
    }
    return rc;
}

int hl_bench_engine(int argc, char **argv) {
    eng_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : rc;
    hl_error err = {0};
    hl_engine *e = open_engine(&o, &err);
    if (!e) {
        fprintf(stderr, "halyard bench engine: %s\n", err.msg);
        return 1;
    }
    printf("bench engine: %s on %s, %lld threads (0: one per core), %lld reps\n", o.model, o.device,
           o.threads, o.reps);
    eng_result res[2 * MAX_BATCHES];
    int n_res = 0;
    rc = run_all(e, &o, res, &n_res, &err);
    hl_engine_free(e);
    if (rc != HL_OK) {
        fprintf(stderr, "halyard bench engine: %s\n", err.msg);
        return 1;
    }
    return o.json_path ? write_json(&o, res, n_res) : 0;
}
