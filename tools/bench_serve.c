// bench_serve: `halyard bench serve` — a load generator for any OpenAI-compatible server.
//
// One thread drives every request through libcurl's multi interface (no thread per
// request). Closed loop: keep --concurrency requests in flight. Open loop: send at --rate
// requests/s with gamma-distributed gaps (shape --burstiness; 1 = Poisson, as vLLM's
// benchmark_serving), optionally capped by --concurrency. Streamed responses are parsed
// as they arrive so that the time of every content chunk is the time it reached us.
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tools/bench.h"
#include "tools/cli.h"

#define MAX_SWEEP 32
#define MAX_SSE_LINE (4u << 20)   // a streamed line longer than this is not a chat chunk
#define MAX_BODY (8u << 20)       // non-streamed response bodies kept at most
#define ERR_BODY 512              // bytes of an error response kept for the message

enum { DIST_FIXED, DIST_UNIFORM, DIST_NORMAL };

typedef struct serve_opts {
    const char *url, *model, *api_key, *dataset, *json_path, *svg_path, *label, *compare;
    const char *logit_bias;          // "ID=BIAS,..." sent as logit_bias
    long long concurrency, n_requests, prompt_len, output_len, seed, warmup;
    double rate, burstiness, duration_s, spread, temperature, timeout_s, slo_ttft_ms, slo_tpot_ms;
    int prompt_dist, output_dist;
    bool ignore_eos, no_stream, completions, has_temperature, has_requests;
    int sweep[MAX_SWEEP];
    int n_sweep;
} serve_opts;

typedef struct loadgen {
    const serve_opts *o;
    char *endpoint;                  // full URL of chat/completions or completions
    char *model;                     // owned
    cJSON **data;                    // (n_data) dataset requests, owned
    int n_data;
    CURLM *multi;
    hl_rng rng;
    uint64_t next_seq;               // requests issued over all levels (prompt seeds)
} loadgen;

// One request in flight.
typedef struct req {
    loadgen *g;
    CURL *h;
    struct curl_slist *hdrs;
    char *body;
    hl_bench_run *run;
    int idx;                         // its record in run->recs
    hl_bench_sse sse;
    double t0, t_last;               // hl_time_ms() at send and at the last content chunk
    bool stream, chat, done_marker, finished;
    int n_events;
    int bad;                         // an error kind found in the body, 0 while fine
    long status;
    char *resp;                      // the body (non-streamed) or its start (errors)
    size_t resp_n, resp_cap;
} req;

static hl_bench_record *rec_of(req *q) { return &q->run->recs[q->idx]; }

// ---- options ----

static const char usage_text[] =
    "usage: halyard bench serve --url URL [--model M] [--api-key K]\n"
    "         [--concurrency N | --rate R [--burstiness B]] [--requests N | --duration S]\n"
    "         [--prompt-len N] [--output-len N] [--prompt-len-dist fixed|uniform|normal]\n"
    "         [--output-len-dist D] [--len-spread F] [--dataset FILE.jsonl] [--ignore-eos]\n"
    "         [--temperature T] [--logit-bias ID=B,...] [--no-stream] [--completions]\n"
    "         [--slo-ttft-ms MS] [--slo-tpot-ms MS] [--timeout S] [--seed S] [--warmup N]\n"
    "         [--sweep 1,8,32,64] [--label NAME] [--json FILE] [--svg FILE]\n"
    "       halyard bench serve --compare A.json,B.json[,...] [--svg FILE]\n"
    "Drives an OpenAI-compatible server (URL: its base, e.g. http://127.0.0.1:8080, or the full\n"
    "/v1/chat/completions or /v1/completions URL) and reports TTFT, TPOT, ITL and end-to-end\n"
    "latency percentiles, throughput and goodput. Closed loop by default (--concurrency 1);\n"
    "--rate sends R requests/s with gamma gaps (--burstiness 1 = Poisson), --concurrency then\n"
    "caps requests in flight. Defaults: --requests 100 (sweep: 4 x concurrency, at least 16),\n"
    "--prompt-len 128 words (about one token each), --output-len 128, fixed lengths,\n"
    "--len-spread 0.25 (uniform: N(1 +- F), normal: sd F*N), --timeout 600 s. --ignore-eos\n"
    "sends ignore_eos and min_tokens (vLLM, llama.cpp) to force the output length; servers\n"
    "without them may stop early: --logit-bias ID=-100 bans a token (the model's EOS) instead.\n"
    "--dataset: one chat request per line ({\"messages\": [...], \"max_tokens\": N}), cycled.\n"
    "--sweep runs each concurrency in turn and charts throughput and p99 TTFT against it.\n"
    "--compare prints a side-by-side table of JSON files written by --json (and charts them).\n"
    "The model defaults to the first of GET /v1/models; --api-key defaults to $OPENAI_API_KEY.\n";

static void usage(FILE *f) { fputs(usage_text, f); }

static int parse_dist(const char *opt, const char *v, int *out) {
    if (!v) return false;
    if (strcmp(v, "fixed") == 0) *out = DIST_FIXED;
    else if (strcmp(v, "uniform") == 0) *out = DIST_UNIFORM;
    else if (strcmp(v, "normal") == 0) *out = DIST_NORMAL;
    else {
        fprintf(stderr, "halyard bench serve: %s: expected fixed, uniform or normal, not '%s'\n",
                opt, v);
        return false;
    }
    return true;
}

static bool parse_sweep(serve_opts *o, const char *v) {
    o->n_sweep = 0;
    char *copy = hl_xstrdup(v), *save = NULL;
    bool ok = true;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        long long c = 0;
        ok = o->n_sweep < MAX_SWEEP && hl_cli_parse_int("--sweep", t, 1, 100000, &c);
        if (ok) o->sweep[o->n_sweep++] = (int)c;
    }
    free(copy);
    if (ok && o->n_sweep == 0) fprintf(stderr, "halyard bench serve: --sweep needs values\n");
    return ok && o->n_sweep > 0;
}

static bool parse_string_opt(serve_opts *o, const char *s, const char *v) {
    if (strcmp(s, "--url") == 0) o->url = v;
    else if (strcmp(s, "--model") == 0 || strcmp(s, "-m") == 0) o->model = v;
    else if (strcmp(s, "--api-key") == 0) o->api_key = v;
    else if (strcmp(s, "--dataset") == 0) o->dataset = v;
    else if (strcmp(s, "--json") == 0) o->json_path = v;
    else if (strcmp(s, "--svg") == 0) o->svg_path = v;
    else if (strcmp(s, "--label") == 0) o->label = v;
    else if (strcmp(s, "--compare") == 0) o->compare = v;
    else if (strcmp(s, "--logit-bias") == 0) o->logit_bias = v;
    else return false;
    return true;
}

// Options with a value that is a number, a distribution or a list; *known = false otherwise.
static bool parse_value_opt(serve_opts *o, const char *s, const char *v, bool *known) {
    *known = true;
    if (strcmp(s, "--concurrency") == 0 || strcmp(s, "-c") == 0)
        return hl_cli_parse_int(s, v, 1, 100000, &o->concurrency);
    if (strcmp(s, "--requests") == 0 || strcmp(s, "-n") == 0)
        return (o->has_requests = hl_cli_parse_int(s, v, 1, 100000000, &o->n_requests));
    if (strcmp(s, "--prompt-len") == 0) return hl_cli_parse_int(s, v, 1, 1 << 24, &o->prompt_len);
    if (strcmp(s, "--output-len") == 0) return hl_cli_parse_int(s, v, 1, 1 << 24, &o->output_len);
    if (strcmp(s, "--seed") == 0) return hl_cli_parse_int(s, v, 0, INT64_MAX, &o->seed);
    if (strcmp(s, "--warmup") == 0) return hl_cli_parse_int(s, v, 0, 100000, &o->warmup);
    if (strcmp(s, "--rate") == 0) return hl_cli_parse_float(s, v, &o->rate);
    if (strcmp(s, "--burstiness") == 0) return hl_cli_parse_float(s, v, &o->burstiness);
    if (strcmp(s, "--duration") == 0) return hl_cli_parse_float(s, v, &o->duration_s);
    if (strcmp(s, "--len-spread") == 0) return hl_cli_parse_float(s, v, &o->spread);
    if (strcmp(s, "--timeout") == 0) return hl_cli_parse_float(s, v, &o->timeout_s);
    if (strcmp(s, "--slo-ttft-ms") == 0) return hl_cli_parse_float(s, v, &o->slo_ttft_ms);
    if (strcmp(s, "--slo-tpot-ms") == 0) return hl_cli_parse_float(s, v, &o->slo_tpot_ms);
    if (strcmp(s, "--temperature") == 0)
        return (o->has_temperature = hl_cli_parse_float(s, v, &o->temperature));
    if (strcmp(s, "--prompt-len-dist") == 0) return parse_dist(s, v, &o->prompt_dist);
    if (strcmp(s, "--output-len-dist") == 0) return parse_dist(s, v, &o->output_dist);
    if (strcmp(s, "--sweep") == 0) return parse_sweep(o, v);
    *known = false;
    return false;
}

static bool check_opts(const serve_opts *o) {
    const char *bad = NULL;
    if (!o->url && !o->compare) bad = "--url is required";
    else if (o->rate < 0 || o->burstiness <= 0) bad = "--rate must be >= 0 and --burstiness > 0";
    else if (o->duration_s < 0 || o->timeout_s <= 0)
        bad = "--duration must be >= 0 and --timeout > 0";
    else if (o->spread < 0 || o->spread > 1) bad = "--len-spread must be in [0, 1]";
    else if (o->n_sweep > 0 && o->rate > 0) bad = "--sweep varies concurrency; it excludes --rate";
    if (bad) fprintf(stderr, "halyard bench serve: %s\n", bad);
    return bad == NULL;
}

// 0 to go on, 1 after --help, 2 on a usage error.
static int parse_args(int argc, char **argv, serve_opts *o) {
    *o = (serve_opts){.concurrency = 0, .n_requests = 100, .prompt_len = 128, .output_len = 128,
                      .seed = 0, .burstiness = 1.0, .spread = 0.25, .timeout_s = 600};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool known = true;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(s, "--ignore-eos") == 0) o->ignore_eos = true;
        else if (strcmp(s, "--no-stream") == 0) o->no_stream = true;
        else if (strcmp(s, "--completions") == 0) o->completions = true;
        else if (v && parse_string_opt(o, s, v)) i++;
        else if (!v || !parse_value_opt(o, s, v, &known)) {
            if (!known || !v)
                fprintf(stderr, "halyard bench serve: unknown option or missing value: %s\n", s);
            return 2;
        } else i++;
    }
    if (!o->api_key) o->api_key = getenv("OPENAI_API_KEY");
    return check_opts(o) ? 0 : 2;
}

// ---- random lengths, prompts, arrivals ----

static double rng_unit(hl_rng *r) { return ((double)(hl_rng_next(r) >> 11) + 0.5) * 0x1p-53; }

static double rng_normal(hl_rng *r) {
    return sqrt(-2.0 * log(rng_unit(r))) * cos(2.0 * M_PI * rng_unit(r));
}

// Gamma(shape k, scale 1) by Marsaglia and Tsang; shapes below 1 through Gamma(k + 1) * U^(1/k).
static double rng_gamma(hl_rng *r, double k) {
    if (k < 1) return rng_gamma(r, k + 1) * pow(rng_unit(r), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(r), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = rng_unit(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

static int draw_len(hl_rng *r, long long mean, int dist, double spread) {
    double v = (double)mean;
    if (dist == DIST_UNIFORM) {
        double lo = mean * (1 - spread), hi = mean * (1 + spread);
        v = lo + (hi - lo) * rng_unit(r);
    } else if (dist == DIST_NORMAL) {
        v = mean + spread * mean * rng_normal(r);
    }
    v = round(v);
    return v < 1 ? 1 : v > (1 << 24) ? 1 << 24 : (int)v;
}

// Everyday English words that are one token (with their leading space) in the GPT-2,
// Llama 3 and SmolLM2 vocabularies, so that N words are about N prompt tokens.
static const char *const words[] = {
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at",
    "from", "his", "it", "an", "were", "are", "which", "this", "be", "or", "has", "had", "not",
    "but", "first", "one", "their", "its", "new", "after", "who", "they", "have", "her", "she",
    "he", "been", "two", "all", "time", "other", "years", "more", "when", "there", "only", "into",
    "most", "also", "some", "over", "would", "people", "during", "city", "three", "where",
    "world", "year", "about", "between", "many", "school", "then", "later", "state", "while",
    "used", "made", "may", "such", "known", "part", "life", "well", "work", "team", "both",
    "house", "water", "music", "game", "family", "public", "small", "large", "long", "early",
    "government", "history", "second", "number", "good", "great", "season", "river", "local",
    "until", "under", "national", "through", "before", "since", "each", "these", "could",
    "place", "several", "area", "film", "book", "line", "system", "power", "light", "story",
};

static char *synth_prompt(hl_rng *r, int n_words) {
    size_t n_list = sizeof words / sizeof words[0], cap = (size_t)n_words * 12 + 1, n = 0;
    char *s = hl_xmalloc(cap);
    for (int i = 0; i < n_words; i++) {
        const char *w = words[hl_rng_next(r) % n_list];
        size_t l = strlen(w);
        if (i) s[n++] = ' ';
        memcpy(s + n, w, l);
        n += l;
    }
    s[n] = '\0';
    return s;
}

// ---- request bodies ----

static void add_logit_bias(cJSON *body, const char *spec) {
    cJSON *lb = cJSON_AddObjectToObject(body, "logit_bias");
    char *copy = hl_xstrdup(spec), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq) continue;
        *eq = '\0';
        cJSON_AddNumberToObject(lb, t, atof(eq + 1));
    }
    free(copy);
}

// Model, streaming, length forcing and sampling fields shared by both prompt sources.
static void add_common_fields(const loadgen *g, cJSON *body, int max_tokens) {
    const serve_opts *o = g->o;
    cJSON_DeleteItemFromObject(body, "model");
    cJSON_AddStringToObject(body, "model", g->model);
    cJSON_DeleteItemFromObject(body, "stream");
    cJSON_DeleteItemFromObject(body, "stream_options");
    cJSON_AddBoolToObject(body, "stream", !o->no_stream);
    if (!o->no_stream)
        cJSON_AddTrueToObject(cJSON_AddObjectToObject(body, "stream_options"), "include_usage");
    if (!cJSON_HasObjectItem(body, "max_tokens"))
        cJSON_AddNumberToObject(body, "max_tokens", max_tokens);
    if (o->ignore_eos) {
        cJSON_AddTrueToObject(body, "ignore_eos");
        cJSON_AddNumberToObject(body, "min_tokens", max_tokens);
    }
    if (o->has_temperature) cJSON_AddNumberToObject(body, "temperature", o->temperature);
    if (o->logit_bias) add_logit_bias(body, o->logit_bias);
}

// The JSON body of the seq-th request (caller frees); fills the record's targets.
static char *make_body(loadgen *g, uint64_t seq, hl_bench_record *r) {
    const serve_opts *o = g->o;
    hl_rng rng = {.state = hl_hash64((uint64_t)o->seed * 1000003u + seq)};
    cJSON *body;
    if (g->n_data > 0) {
        body = cJSON_Duplicate(g->data[seq % (uint64_t)g->n_data], true);
        cJSON *mt = cJSON_GetObjectItem(body, "max_tokens");
        r->target_output_len = cJSON_IsNumber(mt) ? (int)mt->valuedouble : (int)o->output_len;
    } else {
        r->target_prompt_len = draw_len(&rng, o->prompt_len, o->prompt_dist, o->spread);
        r->target_output_len = draw_len(&rng, o->output_len, o->output_dist, o->spread);
        char *text = synth_prompt(&rng, r->target_prompt_len);
        body = cJSON_CreateObject();
        if (o->completions) {
            cJSON_AddStringToObject(body, "prompt", text);
        } else {
            cJSON *msg = cJSON_CreateObject();
            cJSON_AddStringToObject(msg, "role", "user");
            cJSON_AddStringToObject(msg, "content", text);
            cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "messages"), msg);
        }
        free(text);
    }
    add_common_fields(g, body, r->target_output_len);
    char *s = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    HL_ASSERT(s);
    return s;
}

// ---- streamed and whole responses ----

// Records one content chunk arriving now.
static void on_content(req *q, double now) {
    hl_bench_record *r = rec_of(q);
    if (r->n_chunks == 0) r->ttft_ms = now - q->t0;
    else hl_bench_record_add_itl(r, now - q->t_last);
    q->t_last = now;
    r->n_chunks++;
}

static void take_usage(req *q, const cJSON *usage) {
    const cJSON *pt = cJSON_GetObjectItem(usage, "prompt_tokens");
    const cJSON *ct = cJSON_GetObjectItem(usage, "completion_tokens");
    if (!cJSON_IsNumber(ct)) return;
    hl_bench_record *r = rec_of(q);
    r->output_tokens = (int)ct->valuedouble;
    r->prompt_tokens = cJSON_IsNumber(pt) ? (int)pt->valuedouble : -1;
    r->usage = true;
}

static void set_bad(req *q, int kind, const char *what, const char *data, size_t n) {
    q->bad = kind;
    snprintf(rec_of(q)->err_msg, sizeof rec_of(q)->err_msg, "%s: %.*s", what,
             (int)(n > 100 ? 100 : n), data);
}

// Text of choices[0] in a chunk (delta.content) or a whole response (message.content);
// completions use "text". NULL when absent.
static const char *choice_text(const cJSON *choice, bool chat, bool stream) {
    if (!chat) {
        const cJSON *t = cJSON_GetObjectItem(choice, "text");
        return cJSON_IsString(t) ? t->valuestring : NULL;
    }
    const cJSON *m = cJSON_GetObjectItem(choice, stream ? "delta" : "message");
    const cJSON *c = cJSON_GetObjectItem(m, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

// Interprets one chunk or response object; false (and q->bad) when it is not one.
static bool take_object(req *q, const cJSON *j, const char *data, size_t n, double now) {
    if (!cJSON_IsObject(j)) {
        set_bad(q, HL_BENCH_ERR_MALFORMED, "not a JSON object", data, n);
        return false;
    }
    if (cJSON_GetObjectItem(j, "error")) {
        set_bad(q, HL_BENCH_ERR_STREAM_ERROR, "error from server", data, n);
        return false;
    }
    const cJSON *choices = cJSON_GetObjectItem(j, "choices");
    const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    const char *text = c0 ? choice_text(c0, q->chat, q->stream) : NULL;
    if (text && text[0]) on_content(q, now);
    const cJSON *fr = c0 ? cJSON_GetObjectItem(c0, "finish_reason") : NULL;
    if (cJSON_IsString(fr)) q->finished = true;
    const cJSON *usage = cJSON_GetObjectItem(j, "usage");
    if (cJSON_IsObject(usage)) take_usage(q, usage);
    return true;
}

static bool on_event(void *user, const char *data, size_t n) {
    req *q = user;
    q->n_events++;
    if (strcmp(data, "[DONE]") == 0) {
        q->done_marker = true;
        return true;
    }
    double now = hl_time_ms();
    cJSON *j = cJSON_ParseWithLength(data, n);
    if (!j) {
        set_bad(q, HL_BENCH_ERR_MALFORMED, "bad JSON in stream", data, n);
        return false;
    }
    bool ok = take_object(q, j, data, n, now);
    cJSON_Delete(j);
    return ok;
}

static void keep_body(req *q, const char *p, size_t n, size_t limit) {
    if (q->resp_n + n > limit) n = limit > q->resp_n ? limit - q->resp_n : 0;
    if (n == 0) return;
    if (q->resp_n + n + 1 > q->resp_cap) {
        q->resp_cap = (q->resp_n + n + 1) * 2;
        q->resp = hl_xrealloc(q->resp, q->resp_cap);
    }
    memcpy(q->resp + q->resp_n, p, n);
    q->resp_n += n;
    q->resp[q->resp_n] = '\0';
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *user) {
    req *q = user;
    size_t n = size * nmemb;
    if (q->status == 0) curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->status);
    if (q->status != 200) {
        keep_body(q, p, n, ERR_BODY);
        return n;
    }
    if (!q->stream) {
        keep_body(q, p, n, MAX_BODY);
        return n;
    }
    if (hl_bench_sse_feed(&q->sse, p, n, on_event, q)) return n;
    if (!q->bad) set_bad(q, HL_BENCH_ERR_MALFORMED, "SSE line too long", "", 0);
    return 0; // aborts the transfer: the request has failed already
}

// ---- finishing a request ----

static int curl_kind(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
        return HL_BENCH_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return HL_BENCH_ERR_TIMEOUT;
    case CURLE_GOT_NOTHING: case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_PARTIAL_FILE:
        return HL_BENCH_ERR_CLOSED;
    case CURLE_WEIRD_SERVER_REPLY: case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_BAD_CONTENT_ENCODING:
        return HL_BENCH_ERR_MALFORMED;
    default: return HL_BENCH_ERR_OTHER;
    }
}

static int http_kind(long status) {
    if (status >= 400 && status < 500) return HL_BENCH_ERR_HTTP_4XX;
    if (status >= 500 && status < 600) return HL_BENCH_ERR_HTTP_5XX;
    return HL_BENCH_ERR_HTTP_OTHER;
}

// A whole (non-streamed) 200 response.
static void take_whole(req *q, double now) {
    cJSON *j = q->resp ? cJSON_ParseWithLength(q->resp, q->resp_n) : NULL;
    if (!j) {
        set_bad(q, HL_BENCH_ERR_MALFORMED, "bad JSON body", q->resp ? q->resp : "", q->resp_n);
        return;
    }
    if (take_object(q, j, q->resp, q->resp_n, now)) q->finished = true;
    cJSON_Delete(j);
}

// Which error kind a finished transfer is (HL_BENCH_OK when none); fills the message.
static int classify(req *q, CURLcode rc, double now) {
    hl_bench_record *r = rec_of(q);
    if (q->bad) return q->bad;
    if (rc != CURLE_OK) {
        snprintf(r->err_msg, sizeof r->err_msg, "%s", curl_easy_strerror(rc));
        return curl_kind(rc);
    }
    if (r->http_status != 200) {
        snprintf(r->err_msg, sizeof r->err_msg, "HTTP %ld: %.120s", r->http_status,
                 q->resp ? q->resp : "");
        return http_kind(r->http_status);
    }
    if (!q->stream) take_whole(q, now);
    else hl_bench_sse_finish(&q->sse, on_event, q);
    if (q->bad) return q->bad;
    if (q->stream && q->n_events == 0) {
        snprintf(r->err_msg, sizeof r->err_msg, "200 without any SSE event");
        return HL_BENCH_ERR_MALFORMED;
    }
    if (!q->done_marker && !q->finished) {
        snprintf(r->err_msg, sizeof r->err_msg, "stream ended without [DONE] or finish_reason");
        return HL_BENCH_ERR_CLOSED;
    }
    return HL_BENCH_OK;
}

static void req_free(req *q) {
    if (!q) return;
    if (q->h) {
        curl_multi_remove_handle(q->g->multi, q->h);
        curl_easy_cleanup(q->h);
    }
    curl_slist_free_all(q->hdrs);
    hl_bench_sse_free(&q->sse);
    free(q->body);
    free(q->resp);
    free(q);
}

static void finish(req *q, CURLcode rc) {
    double now = hl_time_ms();
    hl_bench_record *r = rec_of(q);
    long status = 0;
    curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &status);
    r->http_status = status;
    r->err = classify(q, rc, now);
    r->e2e_ms = now - q->t0;
    if (!r->usage) r->output_tokens = r->n_chunks; // the server did not count: chunks do
    req_free(q);
}

// ---- sending ----

static struct curl_slist *make_headers(const serve_opts *o, bool stream) {
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); // no 100-continue round trip for large bodies
    if (stream) h = curl_slist_append(h, "Accept: text/event-stream");
    if (o->api_key && o->api_key[0]) {
        char auth[512];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
        h = curl_slist_append(h, auth);
    }
    return h;
}

static void send_request(loadgen *g, hl_bench_run *run, double run_t0) {
    int idx = run->n++;
    run->recs = hl_xrealloc(run->recs, (size_t)run->n * sizeof(hl_bench_record));
    hl_bench_record *r = &run->recs[idx];
    *r = (hl_bench_record){.id = idx, .ttft_ms = NAN, .e2e_ms = NAN, .prompt_tokens = -1};
    req *q = hl_xcalloc(1, sizeof(req));
    *q = (req){
        .g = g, .run = run, .idx = idx, .stream = !g->o->no_stream, .chat = !g->o->completions};
    hl_bench_sse_init(&q->sse, MAX_SSE_LINE);
    q->body = make_body(g, g->next_seq++, r);
    q->hdrs = make_headers(g->o, q->stream);
    q->h = curl_easy_init();
    HL_ASSERT(q->h);
    curl_easy_setopt(q->h, CURLOPT_URL, g->endpoint);
    curl_easy_setopt(q->h, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(q->h, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(q->h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(q->h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(q->h, CURLOPT_PRIVATE, q);
    curl_easy_setopt(q->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(q->h, CURLOPT_TIMEOUT_MS, (long)(g->o->timeout_s * 1000));
    curl_easy_setopt(q->h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    q->t0 = hl_time_ms();
    r->start_ms = q->t0 - run_t0;
    curl_multi_add_handle(g->multi, q->h);
}

// Finishes every completed transfer; returns how many.
static int reap(loadgen *g) {
    int n_done = 0, left = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(g->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        req *q = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        finish(q, m->data.result);
        n_done++;
    }
    return n_done;
}

// ---- one load level ----

typedef struct level {
    int concurrency;        // in flight at most (0: no cap, open loop only)
    double rate;            // 0: closed loop
    long long n_requests;   // 0: no count limit
    double duration_s;      // 0: no time limit
    const char *label;      // progress bar text; NULL: no progress bar
} level;

static bool may_send(const level *lv, const hl_bench_run *run, int in_flight, double now, double t0,
                     double next_arrival) {
    if (lv->n_requests > 0 && run->n >= lv->n_requests) return false;
    if (lv->duration_s > 0 && now - t0 >= lv->duration_s * 1000) return false;
    if (lv->concurrency > 0 && in_flight >= lv->concurrency) return false;
    return lv->rate <= 0 || now >= next_arrival;
}

static void progress(const level *lv, int done, double now, double t0) {
    if (!lv->label) return;
    if (lv->n_requests > 0) {
        hl_cli_progress(lv->label, (uint64_t)done, (uint64_t)lv->n_requests);
        return;
    }
    double total_ms = lv->duration_s * 1000;
    hl_cli_progress(lv->label, (uint64_t)fmin(now - t0, total_ms - 1), (uint64_t)total_ms);
}

// Runs one level to completion: every request sent is finished (or failed) before it returns.
static void run_level(loadgen *g, const level *lv, hl_bench_run *run) {
    *run = (hl_bench_run){.concurrency = lv->concurrency, .rate = lv->rate};
    double t0 = hl_time_ms(), next_arrival = t0, last_draw = 0;
    int in_flight = 0, done = 0;
    for (;;) {
        double now = hl_time_ms();
        while (may_send(lv, run, in_flight, now, t0, next_arrival)) {
            send_request(g, run, t0);
            in_flight++;
            if (lv->rate > 0)
                next_arrival +=
                    1000.0 * rng_gamma(&g->rng, g->o->burstiness) / (lv->rate * g->o->burstiness);
        }
        if (in_flight == 0 && !may_send(lv, run, 0, now, t0, -HUGE_VAL)) break;
        int running = 0;
        curl_multi_perform(g->multi, &running);
        int n = reap(g);
        in_flight -= n;
        done += n;
        now = hl_time_ms();
        if (now - last_draw > 100 || n) {
            progress(lv, done, now, t0);
            last_draw = now;
        }
        int wait_ms = 50;
        if (lv->rate > 0 && next_arrival - now < wait_ms)
            wait_ms = next_arrival > now ? (int)(next_arrival - now) : 0;
        if (in_flight > 0 || wait_ms > 0) curl_multi_poll(g->multi, NULL, 0, wait_ms, NULL);
    }
    run->duration_s = (hl_time_ms() - t0) / 1000.0;
    if (lv->label && lv->n_requests <= 0) hl_cli_progress(lv->label, 1, 1);
}

// ---- setup: endpoint, model, dataset ----

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// The server's base URL (without /v1/...) and the endpoint requests go to (caller frees both).
static void derive_urls(const serve_opts *o, char **base, char **endpoint) {
    const char *v1 = strstr(o->url, "/v1/");
    size_t n = v1 ? (size_t)(v1 - o->url) : strlen(o->url);
    while (n > 0 && o->url[n - 1] == '/') n--;
    *base = hl_xstrndup(o->url, n);
    if (ends_with(o->url, "/completions")) {
        *endpoint = hl_xstrdup(o->url);
        return;
    }
    const char *path = o->completions ? "/v1/completions" : "/v1/chat/completions";
    *endpoint = hl_xmalloc(n + strlen(path) + 1);
    snprintf(*endpoint, n + strlen(path) + 1, "%s%s", *base, path);
}

static size_t collect(char *p, size_t size, size_t nmemb, void *user) {
    req *q = user;
    keep_body(q, p, size * nmemb, 1u << 20);
    return size * nmemb;
}

// The first model id of GET base/v1/models, or NULL (caller frees).
static char *discover_model(const serve_opts *o, const char *base) {
    char url[2048];
    snprintf(url, sizeof url, "%s/v1/models", base);
    req q = {0};
    struct curl_slist *h = make_headers(o, false);
    CURL *c = curl_easy_init();
    HL_ASSERT(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &q);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    cJSON *j = rc == CURLE_OK && status == 200 && q.resp ? cJSON_Parse(q.resp) : NULL;
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 0);
    const cJSON *id = cJSON_GetObjectItem(first, "id");
    char *model = cJSON_IsString(id) ? hl_xstrdup(id->valuestring) : NULL;
    cJSON_Delete(j);
    free(q.resp);
    return model;
}

static int load_dataset(loadgen *g, const char *path) {
    hl_error err = {0};
    size_t n = 0;
    char *text = hl_read_file(path, (size_t)1 << 31, &n, &err);
    if (!text) {
        fprintf(stderr, "halyard bench serve: %s\n", err.msg);
        return 1;
    }
    int line_no = 0, rc = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && rc == 0; l = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if (strspn(l, " \t\r") == strlen(l)) continue;
        cJSON *j = cJSON_Parse(l);
        bool ok = cJSON_IsObject(j) &&
            (g->o->completions ? cJSON_IsString(cJSON_GetObjectItem(j, "prompt"))
                               : cJSON_IsArray(cJSON_GetObjectItem(j, "messages")));
        if (!ok) {
            fprintf(stderr, "halyard bench serve: %s:%d: expected a JSON object with %s\n", path,
                    line_no, g->o->completions ? "\"prompt\"" : "\"messages\"");
            cJSON_Delete(j);
            rc = 1;
            break;
        }
        g->data = hl_xrealloc(g->data, (size_t)(g->n_data + 1) * sizeof(cJSON *));
        g->data[g->n_data++] = j;
    }
    free(text);
    if (rc == 0 && g->n_data == 0) {
        fprintf(stderr, "halyard bench serve: %s has no requests\n", path);
        rc = 1;
    }
    return rc;
}

static int loadgen_init(loadgen *g, const serve_opts *o) {
    *g = (loadgen){.o = o, .rng = {.state = hl_hash64((uint64_t)o->seed ^ 0x5eed)}};
    char *base = NULL;
    derive_urls(o, &base, &g->endpoint);
    g->model = o->model ? hl_xstrdup(o->model) : discover_model(o, base);
    if (!g->model) {
        fprintf(
            stderr,
            "halyard bench serve: no --model and GET %s/v1/models named none; using \"default\"\n",
            base);
        g->model = hl_xstrdup("default");
    }
    free(base);
    if (o->dataset && load_dataset(g, o->dataset) != 0) return 1;
    g->multi = curl_multi_init();
    HL_ASSERT(g->multi);
    return 0;
}

static void loadgen_free(loadgen *g) {
    if (g->multi) curl_multi_cleanup(g->multi);
    for (int i = 0; i < g->n_data; i++) cJSON_Delete(g->data[i]);
    free(g->data);
    free(g->endpoint);
    free(g->model);
}

// ---- the whole benchmark ----

static char *config_json(const loadgen *g) {
    const serve_opts *o = g->o;
    static const char *const dists[] = {"fixed", "uniform", "normal"};
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "url", g->endpoint);
    cJSON_AddStringToObject(c, "model", g->model);
    cJSON_AddStringToObject(c, "prompts", o->dataset ? o->dataset : "synthetic");
    cJSON_AddNumberToObject(c, "prompt_len", (double)o->prompt_len);
    cJSON_AddStringToObject(c, "prompt_len_dist", dists[o->prompt_dist]);
    cJSON_AddNumberToObject(c, "output_len", (double)o->output_len);
    cJSON_AddStringToObject(c, "output_len_dist", dists[o->output_dist]);
    cJSON_AddNumberToObject(c, "len_spread", o->spread);
    cJSON_AddBoolToObject(c, "ignore_eos", o->ignore_eos);
    cJSON_AddBoolToObject(c, "stream", !o->no_stream);
    cJSON_AddNumberToObject(c, "rate", o->rate);
    cJSON_AddNumberToObject(c, "burstiness", o->burstiness);
    cJSON_AddNumberToObject(c, "seed", (double)o->seed);
    cJSON_AddNumberToObject(c, "warmup", (double)o->warmup);
    cJSON_AddNumberToObject(c, "timestamp", (double)time(NULL));
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}

// The load levels to run: the sweep's concurrencies, or the single level of the options.
static int plan_levels(const serve_opts *o, level *lv) {
    if (o->n_sweep == 0) {
        long long c = o->concurrency > 0 ? o->concurrency : (o->rate > 0 ? 0 : 1);
        lv[0] = (level){.concurrency = (int)c, .rate = o->rate, .duration_s = o->duration_s,
                        .n_requests = o->duration_s > 0 && !o->has_requests ? 0 : o->n_requests};
        return 1;
    }
    for (int i = 0; i < o->n_sweep; i++) {
        long long n = o->has_requests ? o->n_requests : (o->duration_s > 0 ? 0 : 4LL * o->sweep[i]);
        if (!o->has_requests && n > 0 && n < 16) n = 16;
        lv[i] = (level){.concurrency = o->sweep[i], .duration_s = o->duration_s, .n_requests = n};
    }
    return o->n_sweep;
}

static void warm_up(loadgen *g, const level *lv) {
    if (g->o->warmup <= 0) return;
    long long c = lv->concurrency > 0 ? lv->concurrency : 1;
    level w = {.concurrency = (int)(c < g->o->warmup ? c : g->o->warmup),
               .n_requests = g->o->warmup,
               .label = "warm-up"};
    hl_bench_run run;
    run_level(g, &w, &run);
    hl_bench_run_free(&run);
}

static int write_outputs(const serve_opts *o, const loadgen *g, const char *label,
                         hl_bench_run *runs, hl_bench_summary *sums, int n) {
    hl_error err = {0};
    int rc = 0;
    if (o->json_path) {
        char *cfg = config_json(g);
        if (hl_bench_write_json(o->json_path, label, cfg, runs, sums, n, &err) != HL_OK) rc = 1;
        free(cfg);
    }
    if (rc == 0 && o->svg_path &&
        hl_bench_write_svg(o->svg_path, label, runs, sums, n, &err) != HL_OK)
        rc = 1;
    if (rc) fprintf(stderr, "halyard bench serve: %s\n", err.msg);
    return rc;
}

static int bench(const serve_opts *o) {
    loadgen g;
    int rc = loadgen_init(&g, o);
    if (rc != 0) {
        loadgen_free(&g);
        return rc;
    }
    const char *label = o->label ? o->label : g.endpoint;
    level lv[MAX_SWEEP];
    int n = plan_levels(o, lv);
    hl_bench_run *runs = hl_xcalloc((size_t)n, sizeof(hl_bench_run));
    hl_bench_summary *sums = hl_xcalloc((size_t)n, sizeof(hl_bench_summary));
    for (int i = 0; i < n; i++) {
        char name[64];
        if (lv[i].rate > 0) snprintf(name, sizeof name, "rate %g/s", lv[i].rate);
        else snprintf(name, sizeof name, "concurrency %d", lv[i].concurrency);
        lv[i].label = name;
        warm_up(&g, &lv[i]);
        run_level(&g, &lv[i], &runs[i]);
        hl_bench_summarize(&runs[i], o->slo_ttft_ms, o->slo_tpot_ms, &sums[i]);
        hl_bench_print_summary(stdout, label, &runs[i], &sums[i]);
        fflush(stdout);
    }
    if (n > 1) hl_bench_print_sweep(stdout, runs, sums, n);
    rc = write_outputs(o, &g, label, runs, sums, n);
    for (int i = 0; i < n; i++) hl_bench_run_free(&runs[i]);
    free(runs);
    free(sums);
    loadgen_free(&g);
    return rc;
}

int hl_bench_serve(int argc, char **argv) {
    serve_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : rc;
    if (o.compare) return hl_bench_compare(o.compare, o.svg_path);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "halyard bench serve: libcurl failed to initialize\n");
        return 1;
    }
    rc = bench(&o);
    curl_global_cleanup();
    return rc;
}
