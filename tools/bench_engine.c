// bench_engine: `halyard bench engine` — prompt-processing and generation throughput of the
// batching engine in process (no HTTP), per batch size, mean ± sd over repetitions, in
// llama-bench's spirit (its pp512 / tg128 tests, run for B sequences at once).
//
// ppP: B requests of P random prompt tokens and max_tokens 1 are submitted together; the
// rate is B * P tokens over the time until the last first token (as llama-bench's pp, it
// includes computing the logits of the last prompt token). tgN: B requests of a one-token
// prompt generate N tokens each with ignore_eos; the rate is all generated tokens over the
// time until the last finish. Times come from the engine's own event timestamps.
//
// --serve-sim: an in-process serving simulation through the same engine API a server uses (no
// HTTP): requests of random prompt tokens arrive closed-loop (--sessions N, each submitting its
// next request when the last one finished) or open-loop (Poisson arrivals at --rate R/s), with
// prompt and output lengths drawn uniformly in [L (1 - r), L (1 + r)] (--range-ratio r, vLLM's
// random-range-ratio); reports TTFT, TPOT and end-to-end latency percentiles and the aggregate
// tokens/s. Token times are the engine's, so how fast this loop polls does not change them.
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/stats.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "tools/bench.h"
#include "tools/cli.h"

#define MAX_BATCHES 32

typedef struct eng_opts {
    const char *model, *device, *json_path;
    long long n_prompt, n_gen, reps, threads, chunk, kv_mb;
    int batch[MAX_BATCHES], n_batch;
    double kv_fraction;
    bool no_graphs, batch_given;
    long long synth_vocab;
    int kv_type;        // --kv-cache-dtype
    int profile_first, profile_last; // --profile-steps
    // --serve-sim
    bool sim;
    long long sessions, requests, seed;
    double rate, range_ratio;
} eng_opts;

typedef struct eng_result {
    bool pp;            // prompt processing (else generation)
    int batch;
    hl_stats_summary tok_s;
} eng_result;

static const char usage_text[] =
    "usage: halyard bench engine -m MODEL [--device cpu|cuda[:N]] [-p 512] [-n 128]\n"
    "         [--batch 1,4,16,64] [--reps 3] [-t THREADS] [--max-batched-tokens 512]\n"
    "         [--kv-cache-mb MB] [--kv-cache-fraction 0.9] [--kv-cache-dtype f16|f32|int8]\n"
    "         [--no-graphs] [--synth-vocab N] [--json FILE] [--profile-steps A-B]\n"
    "       halyard bench engine -m MODEL --serve-sim [--sessions 64] [--requests 2*sessions]\n"
    "         [--rate R] [-p 512] [-n 128] [--range-ratio 0] [--seed 1] [other options as above]\n"
    "Runs the batching engine in this process and reports, for each batch size B, prompt\n"
    "processing (ppP: B prompts of P random tokens, max_tokens 1) and generation (tgN: B\n"
    "sequences generating N tokens each, ignore_eos) in tokens/s, mean +- sd over --reps runs\n"
    "after one warm-up. -p 0 or -n 0 skips that test. MODEL: GGUF, safetensors folder or\n"
    "synthetic:<shape>:<type>.\n"
    "--serve-sim simulates serving: --requests requests of -p random prompt tokens generating -n\n"
    "tokens each (ignore_eos), lengths uniform within +-range-ratio, arriving closed-loop from\n"
    "--sessions concurrent sessions, or open-loop as a Poisson process of --rate requests/s;\n"
    "reports TTFT, TPOT and end-to-end p50/p90/p99 and aggregate tokens/s. With an explicit\n"
    "--batch, the pp/tg table runs first on the same loaded model (--json then names the table's\n"
    "file; the simulation's goes to FILE.sim.json). --synth-vocab N gives a synthetic model N\n"
    "tokens and no tokenizer (no tokenizer file needed).\n";

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

// A number within [lo, hi]; false after saying what is wrong.
static bool parse_range(const char *opt, const char *v, double lo, double hi, double *out) {
    if (!hl_cli_parse_float(opt, v, out)) return false;
    if (*out >= lo && *out <= hi) return true;
    fprintf(stderr, "halyard bench engine: %s must be within [%g, %g]\n", opt, lo, hi);
    return false;
}

static bool parse_kv_dtype(eng_opts *o, const char *v) {
    hl_error err = {0};
    if (hl_kv_cache_dtype_parse(v, &o->kv_type, &err) == HL_OK) return true;
    fprintf(stderr, "halyard bench engine: --kv-cache-dtype: %s\n", err.msg);
    return false;
}

static bool parse_profile_steps(eng_opts *o, const char *v) {
    hl_engine_params p = hl_engine_default_params();
    hl_error err = {0};
    if (hl_engine_parse_profile_steps(v, &p, &err) != HL_OK) {
        fprintf(stderr, "halyard bench engine: --profile-steps: %s\n", err.msg);
        return false;
    }
    o->profile_first = p.profile_first;
    o->profile_last = p.profile_last;
    return true;
}

static bool parse_opt(eng_opts *o, const char *s, const char *v) {
    if (strcmp(s, "-m") == 0 || strcmp(s, "--model") == 0) return (o->model = v) != NULL;
    if (strcmp(s, "--device") == 0) return (o->device = v) != NULL;
    if (strcmp(s, "--json") == 0) return (o->json_path = v) != NULL;
    if (strcmp(s, "--batch") == 0) return v && (o->batch_given = parse_batches(o, v));
    if (strcmp(s, "--synth-vocab") == 0) return hl_cli_parse_int(s, v, 1, 1 << 24, &o->synth_vocab);
    if (strcmp(s, "-p") == 0) return hl_cli_parse_int(s, v, 0, 1 << 20, &o->n_prompt);
    if (strcmp(s, "-n") == 0) return hl_cli_parse_int(s, v, 0, 1 << 20, &o->n_gen);
    if (strcmp(s, "--reps") == 0 || strcmp(s, "-r") == 0)
        return hl_cli_parse_int(s, v, 1, 1000, &o->reps);
    if (strcmp(s, "-t") == 0 || strcmp(s, "--threads") == 0)
        return hl_cli_parse_int(s, v, 0, 1024, &o->threads);
    if (strcmp(s, "--max-batched-tokens") == 0)
        return hl_cli_parse_int(s, v, 1, 1 << 20, &o->chunk);
    if (strcmp(s, "--kv-cache-mb") == 0) return hl_cli_parse_int(s, v, 0, 1 << 24, &o->kv_mb);
    if (strcmp(s, "--kv-cache-fraction") == 0)
        return parse_range(s, v, 1e-3, 1.0, &o->kv_fraction);
    if (strcmp(s, "--kv-cache-dtype") == 0) return parse_kv_dtype(o, v);
    if (strcmp(s, "--profile-steps") == 0) return parse_profile_steps(o, v);
    if (strcmp(s, "--sessions") == 0) return hl_cli_parse_int(s, v, 1, 4096, &o->sessions);
    if (strcmp(s, "--requests") == 0) return hl_cli_parse_int(s, v, 1, 1 << 20, &o->requests);
    if (strcmp(s, "--seed") == 0) return hl_cli_parse_int(s, v, 0, INT64_MAX, &o->seed);
    if (strcmp(s, "--rate") == 0) return parse_range(s, v, 1e-6, 1e9, &o->rate);
    if (strcmp(s, "--range-ratio") == 0) return parse_range(s, v, 0.0, 0.99, &o->range_ratio);
    fprintf(stderr, "halyard bench engine: unknown option or missing value: %s\n", s);
    return false;
}

static int parse_args(int argc, char **argv, eng_opts *o) {
    *o = (eng_opts){.device = "cpu", .n_prompt = 512, .n_gen = 128, .reps = 3, .sessions = 64, .seed = 1,
                    .kv_type = HL_DTYPE_F16};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(s, "--serve-sim") == 0) {
            o->sim = true;
            continue;
        }
        if (strcmp(s, "--no-graphs") == 0) {
            o->no_graphs = true;
            continue;
        }
        if (!parse_opt(o, s, v)) return 2;
        i++;
    }
    if (o->requests == 0) o->requests = 2 * o->sessions;
    if (o->sim && (o->n_prompt < 1 || o->n_gen < 1)) {
        fprintf(stderr, "halyard bench engine: --serve-sim needs -p and -n of at least 1\n");
        return 2;
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
    p.max_seqs = o->sim && o->sessions > max_b ? (int)o->sessions : max_b;
    p.synth_n_vocab = (int)o->synth_vocab;
    if (o->sim) p.prefix_cache = true; // as a server runs it (random prompts share nothing anyway)
    if (o->chunk > 0) p.max_batched_tokens = (int)o->chunk;
    if (p.max_batched_tokens < p.max_seqs) p.max_batched_tokens = p.max_seqs;
    if (o->kv_mb > 0) p.kv_cache_mb = (size_t)o->kv_mb;
    if (o->kv_fraction > 0) p.kv_cache_fraction = (float)o->kv_fraction;
    p.kv_cache_dtype = o->kv_type;
    p.profile_first = o->profile_first;
    p.profile_last = o->profile_last;
    p.graphs = !o->no_graphs;
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
    cJSON_AddStringToObject(j, "kv_cache_dtype", hl_kv_cache_dtype_name(o->kv_type));
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

// ---- serving simulation ----

typedef struct sim_req {
    uint64_t id;
    int n_prompt, n_out, n_tokens;
    double t_submit, t_first, t_last, t_end; // hl_time_ms(); token times from the engine
    bool active, failed;
} sim_req;

typedef struct sim {
    hl_engine *e;
    const eng_opts *o;
    hl_rng rng;
    sim_req *req;              // (n) in submission order
    int n, n_submitted, n_finished;
    int32_t *ids;              // prompt buffer
    double t0, next_arrival;
    char first_error[256];
} sim;

// A length around L: uniform in [L (1 - r), L (1 + r)], at least 1.
static int sim_len(sim *s, long long L) {
    const double r = s->o->range_ratio, u = hl_rng_uniform(&s->rng);
    const long long n = llround((double)L * (1.0 - r + 2.0 * r * u));
    return n < 1 ? 1 : (int)n;
}

static void sim_fail(sim *s, sim_req *q, const char *msg) {
    q->failed = true;
    if (!s->first_error[0]) snprintf(s->first_error, sizeof s->first_error, "%s", msg);
}

static void sim_submit(sim *s) {
    sim_req *q = &s->req[s->n_submitted++];
    const int n_vocab = hl_engine_model(s->e)->cfg.n_vocab;
    q->n_prompt = sim_len(s, s->o->n_prompt);
    q->n_out = sim_len(s, s->o->n_gen);
    for (int i = 0; i < q->n_prompt; i++) s->ids[i] = (int32_t)(hl_rng_next(&s->rng) % (uint64_t)n_vocab);
    hl_request_params rp = hl_request_default_params();
    rp.sampling.temperature = 0;
    rp.sampling.max_tokens = q->n_out;
    rp.sampling.ignore_eos = true;
    hl_error err = {0};
    q->t_submit = hl_time_ms();
    if (hl_engine_submit(s->e, s->ids, q->n_prompt, &rp, &q->id, &err) != HL_OK) {
        sim_fail(s, q, err.msg);
        q->t_end = q->t_submit;
        s->n_finished++;
        return;
    }
    q->active = true;
}

// Takes request q's new events; at its FINISH releases it (and, closed-loop, submits the next).
static void sim_drain(sim *s, sim_req *q) {
    hl_event ev[64];
    int n = 0;
    hl_error err = {0};
    while (q->active && hl_engine_read(s->e, q->id, ev, 64, 0, &n, &err) == HL_OK && n > 0) {
        for (int i = 0; i < n; i++) {
            if (ev[i].type == HL_EVENT_TOKEN) {
                if (q->n_tokens++ == 0) q->t_first = ev[i].t_ms;
                q->t_last = ev[i].t_ms;
                continue;
            }
            if (ev[i].finish != HL_FINISH_LENGTH && ev[i].finish != HL_FINISH_STOP)
                sim_fail(s, q, ev[i].error[0] ? ev[i].error : hl_finish_reason_name(ev[i].finish));
            q->t_end = ev[i].t_ms;
            q->active = false;
        }
    }
    if (q->active) return;
    hl_engine_release(s->e, q->id);
    s->n_finished++;
    if (s->o->rate <= 0 && s->n_submitted < s->n) sim_submit(s);
}

// Waits until an active request has events or the next arrival is due, then handles both.
static void sim_tick(sim *s, struct pollfd *pfd, int *idx) {
    const bool open_loop = s->o->rate > 0;
    while (open_loop && s->n_submitted < s->n && hl_time_ms() >= s->next_arrival) {
        sim_submit(s);
        s->next_arrival += -log(1.0 - hl_rng_uniform(&s->rng)) / s->o->rate * 1000.0;
    }
    int n_fds = 0;
    for (int i = 0; i < s->n_submitted; i++) {
        if (!s->req[i].active) continue;
        pfd[n_fds] = (struct pollfd){.fd = hl_engine_fd(s->e, s->req[i].id), .events = POLLIN};
        idx[n_fds++] = i;
    }
    int timeout = 100;
    if (open_loop && s->n_submitted < s->n) {
        const double wait = s->next_arrival - hl_time_ms();
        timeout = wait <= 0 ? 0 : wait < 100 ? (int)ceil(wait) : 100;
    }
    if (poll(pfd, (nfds_t)n_fds, timeout) <= 0) return;
    for (int k = 0; k < n_fds; k++) {
        if (pfd[k].revents) sim_drain(s, &s->req[idx[k]]);
    }
}

typedef struct sim_result {
    hl_stats_summary ttft, tpot, e2e;
    int ok, failed;
    long long out_tokens, in_tokens;
    double wall_s;
} sim_result;

static void sim_summarize(const sim *s, sim_result *r) {
    double *ttft = hl_xcalloc((size_t)s->n, sizeof(double)), *tpot = hl_xcalloc((size_t)s->n, sizeof(double));
    double *e2e = hl_xcalloc((size_t)s->n, sizeof(double)), t_end = s->t0;
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < s->n; i++) {
        const sim_req *q = &s->req[i];
        ttft[i] = tpot[i] = e2e[i] = NAN;
        t_end = q->t_end > t_end ? q->t_end : t_end;
        if (q->failed) {
            r->failed++;
            continue;
        }
        r->ok++;
        r->out_tokens += q->n_tokens;
        r->in_tokens += q->n_prompt;
        if (q->n_tokens > 0) ttft[i] = q->t_first - q->t_submit;
        if (q->n_tokens > 1) tpot[i] = (q->t_last - q->t_first) / (q->n_tokens - 1);
        e2e[i] = q->t_end - q->t_submit;
    }
    hl_stats_summarize(ttft, (size_t)s->n, &r->ttft);
    hl_stats_summarize(tpot, (size_t)s->n, &r->tpot);
    hl_stats_summarize(e2e, (size_t)s->n, &r->e2e);
    r->wall_s = (t_end - s->t0) / 1000.0;
    free(ttft);
    free(tpot);
    free(e2e);
}

static void sim_print(const eng_opts *o, const sim_result *r) {
    printf("| metric   |      p50 |      p90 |      p99 |     mean |\n");
    printf("|----------|---------:|---------:|---------:|---------:|\n");
    const struct { const char *name; const hl_stats_summary *st; } rows[] = {
        {"TTFT ms", &r->ttft}, {"TPOT ms", &r->tpot}, {"E2E ms", &r->e2e}};
    for (int i = 0; i < 3; i++)
        printf("| %-8s | %8.2f | %8.2f | %8.2f | %8.2f |\n", rows[i].name, rows[i].st->p50, rows[i].st->p90,
               rows[i].st->p99, rows[i].st->mean);
    const double w = r->wall_s > 0 ? r->wall_s : NAN;
    printf("requests: %d ok, %d failed; wall %.2f s; output %.1f tok/s; prompt + output %.1f tok/s\n", r->ok,
           r->failed, r->wall_s, (double)r->out_tokens / w, (double)(r->out_tokens + r->in_tokens) / w);
    (void)o;
}

static void json_stats(cJSON *j, const char *name, const hl_stats_summary *st) {
    cJSON *x = cJSON_AddObjectToObject(j, name);
    const struct { const char *k; double v; } f[] = {
        {"p50", st->p50}, {"p90", st->p90}, {"p99", st->p99}, {"mean", st->mean}, {"n", (double)st->n}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (isnan(f[i].v)) cJSON_AddNullToObject(x, f[i].k);
        else cJSON_AddNumberToObject(x, f[i].k, f[i].v);
    }
}

static int sim_write_json(const eng_opts *o, const sim_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "device", o->device);
    cJSON_AddStringToObject(j, "kv_cache_dtype", hl_kv_cache_dtype_name(o->kv_type));
    cJSON_AddStringToObject(j, "mode", o->rate > 0 ? "poisson" : "closed-loop");
    cJSON_AddNumberToObject(j, "sessions", (double)o->sessions);
    cJSON_AddNumberToObject(j, "rate", o->rate);
    cJSON_AddNumberToObject(j, "requests", (double)o->requests);
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)o->n_prompt);
    cJSON_AddNumberToObject(j, "output_tokens", (double)o->n_gen);
    cJSON_AddNumberToObject(j, "range_ratio", o->range_ratio);
    cJSON_AddNumberToObject(j, "ok", r->ok);
    cJSON_AddNumberToObject(j, "failed", r->failed);
    cJSON_AddNumberToObject(j, "wall_s", r->wall_s);
    cJSON_AddNumberToObject(j, "prompt_tokens_total", (double)r->in_tokens);
    cJSON_AddNumberToObject(j, "generated_tokens_total", (double)r->out_tokens);
    cJSON_AddNumberToObject(j, "output_tok_s", r->wall_s > 0 ? (double)r->out_tokens / r->wall_s : 0);
    cJSON_AddNumberToObject(j, "total_tok_s",
                            r->wall_s > 0 ? (double)(r->out_tokens + r->in_tokens) / r->wall_s : 0);
    json_stats(j, "ttft_ms", &r->ttft);
    json_stats(j, "tpot_ms", &r->tpot);
    json_stats(j, "e2e_ms", &r->e2e);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    FILE *f = text ? fopen(o->json_path, "w") : NULL;
    int rc = f && fputs(text, f) >= 0 ? 0 : 1;
    if (f && fclose(f) != 0) rc = 1;
    if (rc) fprintf(stderr, "halyard bench engine: cannot write %s: %s\n", o->json_path, strerror(errno));
    free(text);
    return rc;
}

// Runs the simulation; 0 when every request finished normally, 1 otherwise.
static int serve_sim(hl_engine *e, const eng_opts *o) {
    sim s = {.e = e, .o = o, .rng = {hl_hash64((uint64_t)o->seed)}, .n = (int)o->requests};
    s.req = hl_xcalloc((size_t)s.n, sizeof(sim_req));
    s.ids = hl_xmalloc(sizeof(int32_t) * (size_t)(o->n_prompt * 2 + 1));
    struct pollfd *pfd = hl_xcalloc((size_t)s.n, sizeof(struct pollfd));
    int *idx = hl_xcalloc((size_t)s.n, sizeof(int));
    printf("serve-sim: %s on %s: %d requests, %s, prompts %lld and outputs %lld tokens (range ratio %.2f)\n",
           o->model, o->device, s.n, o->rate > 0 ? "Poisson arrivals" : "closed loop", o->n_prompt, o->n_gen,
           o->range_ratio);
    if (o->rate > 0) printf("serve-sim: %.2f requests/s\n", o->rate);
    else printf("serve-sim: %lld concurrent sessions\n", o->sessions);
    fflush(stdout);
    s.t0 = s.next_arrival = hl_time_ms();
    for (int i = 0; o->rate <= 0 && i < o->sessions && s.n_submitted < s.n; i++) sim_submit(&s);
    while (s.n_finished < s.n) sim_tick(&s, pfd, idx);
    sim_result r;
    sim_summarize(&s, &r);
    sim_print(o, &r);
    if (s.first_error[0]) fprintf(stderr, "halyard bench engine: first failure: %s\n", s.first_error);
    int rc = r.failed > 0 ? 1 : 0;
    if (o->json_path && sim_write_json(o, &r) != 0) rc = 1;
    free(s.req);
    free(s.ids);
    free(pfd);
    free(idx);
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
    if (o.sim && !o.batch_given) {
        rc = serve_sim(e, &o);
        hl_engine_free(e);
        return rc;
    }
    printf("bench engine: %s on %s, %lld threads (0: one per core), %lld reps, %s KV cache\n", o.model,
           o.device, o.threads, o.reps, hl_kv_cache_dtype_name(o.kv_type));
    eng_result res[2 * MAX_BATCHES];
    int n_res = 0;
    rc = run_all(e, &o, res, &n_res, &err);
    if (rc != HL_OK) {
        fprintf(stderr, "halyard bench engine: %s\n", err.msg);
        hl_engine_free(e);
        return 1;
    }
    int status = o.json_path ? write_json(&o, res, n_res) : 0;
    if (o.sim) { // --serve-sim with an explicit --batch: the simulation follows the table
        char sim_json[1024];
        eng_opts so = o;
        if (o.json_path) snprintf(sim_json, sizeof sim_json, "%s.sim.json", o.json_path);
        so.json_path = o.json_path ? sim_json : NULL;
        if (serve_sim(e, &so) != 0) status = 1;
    }
    hl_engine_free(e);
    return status;
}
