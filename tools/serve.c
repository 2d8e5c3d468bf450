// serve: `halyard serve`, the OpenAI- and Anthropic-compatible HTTP endpoint over the engine.
//
//   halyard serve -m MODEL [--host 127.0.0.1] [--port 8080] [--served-model-name NAME]
//                 [--api-keys FILE] [-t N] [--kv-cache-mb N] [--max-seqs N] ...
//
// Order of events: bind and answer (503 "loading" on generation endpoints), load the model,
// become ready, serve until SIGTERM/SIGINT, then drain: stop accepting, let in-flight requests
// finish within --drain-seconds, cancel the rest, exit 0.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/metrics.h"
#include "tokenizer/chat.h"
#include "tools/cli.h"

typedef struct serve_args {
    hl_server_params http;
    hl_engine_params engine;
    const char *api_keys;
    const char *chat_template;
    double drain_s;
    double rpm, tpm;
    cJSON *config; // owned: --config FILE; option strings point into it
} serve_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: halyard serve -m MODEL [options]\n"
            "Serves MODEL (GGUF file, safetensors folder or synthetic:<shape>:<type>) over HTTP:\n"
            "OpenAI /v1/chat/completions, /v1/completions, /v1/models; Anthropic /v1/messages;\n"
            "/tokenize, /detokenize, /health, /metrics.\n\n"
            "  --host ADDR               bind address (default 127.0.0.1)\n"
            "  --port N                  port (default 8080; 0 picks a free one)\n"
            "  --served-model-name NAME  model name clients use (default: the file name); 'default' always works\n"
            "  --api-keys FILE           API keys, one per line: KEY [rpm=N] [tpm=N]; also $HALYARD_API_KEYS\n"
            "  --rate-limit-rpm N        default requests per minute per key (0 = unlimited)\n"
            "  --rate-limit-tpm N        default tokens per minute per key (0 = unlimited)\n"
            "  -t, --threads N           CPU threads for the engine (default: one per core)\n"
            "  --device cpu|cuda[:N]     where the model runs (default cpu)\n"
            "  --kv-cache-fraction F     CUDA: share of the memory free after weights and activations for\n"
            "                            the KV cache (default 0.9)\n"
            "  --no-graphs               CUDA: run decode steps directly, not from CUDA graphs\n"
            "  --profile-steps A-B       start the profiler's capture at forward step A, stop it after B\n"
            "                            (CUDA: nsys profile --capture-range=cudaProfilerApi ...)\n"
            "  --tokenizer-from GGUF     tokenizer for synthetic models\n"
            "  --kv-cache-mb N           KV cache size on the CPU\n"
            "  --kv-cache-dtype T        K/V cache elements: f16 (default), f32 or int8 (int8: about half\n"
            "                            the memory of f16 per token, so twice the tokens in the same size)\n"
            "  --max-seqs N              running sequences at most (default 64)\n"
            "  --max-batched-tokens N    tokens per engine step (default 512)\n"
            "  --max-waiting N           queued requests before 429 (default 1024)\n"
            "  --ctx N                   context length per sequence (default: the model's)\n"
            "  --max-tokens N            cap on max_tokens of one request\n"
            "  --max-body-bytes N        request bodies larger get 413 (default 8 MiB)\n"
            "  --max-messages N          chat messages per request (default 1024)\n"
            "  --http-threads N          HTTP worker threads (default 4)\n"
            "  --chat-template NAME      built-in template (%s) instead of the model's\n"
            "  --connection-timeout N    close connections idle this many seconds (default 15)\n"
            "  --drain-seconds N         grace period for in-flight requests on SIGTERM (default 30)\n"
            "  --no-access-log           no JSON line per request on stdout\n"
            "  --config FILE             JSON object of these options without the leading dashes (inner\n"
            "                            dashes may be underscores), e.g.\n"
            "                            {\"port\": 8080, \"max-seqs\": 32, \"no-access-log\": true};\n"
            "                            options on the command line override the file\n",
            HL_CHAT_NAMES);
}

static const char *model_base_name(const char *path) {
    static char name[128];
    const char *slash = strrchr(path, '/');
    snprintf(name, sizeof name, "%s", slash && slash[1] ? slash + 1 : path);
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, ".gguf") == 0) name[n - 5] = '\0';
    return name;
}

// One option with a value; false (after printing why) when the value is bad.
static bool parse_opt(serve_args *a, const char *opt, const char *v) {
    long long x = 0;
    if (strcmp(opt, "-m") == 0 || strcmp(opt, "--model") == 0) a->engine.model = v;
    else if (strcmp(opt, "--host") == 0) a->http.host = v;
    else if (strcmp(opt, "--served-model-name") == 0) a->http.served_model_name = v;
    else if (strcmp(opt, "--api-keys") == 0) a->api_keys = v;
    else if (strcmp(opt, "--chat-template") == 0) a->chat_template = v;
    else if (strcmp(opt, "--device") == 0) a->engine.device = v;
    else if (strcmp(opt, "--tokenizer-from") == 0) a->engine.tokenizer_from = v;
    else if (strcmp(opt, "--kv-cache-dtype") == 0) {
        hl_error err = {0};
        if (hl_kv_cache_dtype_parse(v, &a->engine.kv_cache_dtype, &err) != HL_OK) {
            fprintf(stderr, "halyard serve: --kv-cache-dtype: %s\n", err.msg);
            return false;
        }
    } else if (strcmp(opt, "--profile-steps") == 0) {
        hl_error err = {0};
        if (hl_engine_parse_profile_steps(v, &a->engine, &err) != HL_OK) {
            fprintf(stderr, "halyard serve: --profile-steps: %s\n", err.msg);
            return false;
        }
    } else if (strcmp(opt, "--port") == 0) {
        if (!hl_cli_parse_int(opt, v, 0, 65535, &x)) return false;
        a->http.port = (int)x;
    } else if (strcmp(opt, "-t") == 0 || strcmp(opt, "--threads") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 1024, &x)) return false;
        a->engine.n_threads = (int)x;
    } else if (strcmp(opt, "--kv-cache-mb") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 1LL << 24, &x)) return false;
        a->engine.kv_cache_mb = (size_t)x;
    } else if (strcmp(opt, "--kv-cache-fraction") == 0) {
        double f = 0;
        if (!hl_cli_parse_float(opt, v, &f)) return false;
        if (f <= 0 || f > 1) {
            fprintf(stderr, "halyard serve: --kv-cache-fraction must be in (0, 1]\n");
            return false;
        }
        a->engine.kv_cache_fraction = (float)f;
    } else if (strcmp(opt, "--max-seqs") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 4096, &x)) return false;
        a->engine.max_seqs = (int)x;
    } else if (strcmp(opt, "--max-batched-tokens") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 1 << 20, &x)) return false;
        a->engine.max_batched_tokens = (int)x;
    } else if (strcmp(opt, "--max-waiting") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 1 << 20, &x)) return false;
        a->engine.max_waiting = (int)x;
    } else if (strcmp(opt, "--ctx") == 0) {
        if (!hl_cli_parse_int(opt, v, 16, 1 << 24, &x)) return false;
        a->engine.max_ctx = (int)x;
    } else if (strcmp(opt, "--max-tokens") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 1 << 24, &x)) return false;
        a->http.limits.max_tokens = (int)x;
    } else if (strcmp(opt, "--max-body-bytes") == 0) {
        if (!hl_cli_parse_int(opt, v, 1024, 1LL << 32, &x)) return false;
        a->http.max_body_bytes = (size_t)x;
    } else if (strcmp(opt, "--max-messages") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 1 << 20, &x)) return false;
        a->http.limits.max_messages = (int)x;
    } else if (strcmp(opt, "--http-threads") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 256, &x)) return false;
        a->http.n_threads = (int)x;
    } else if (strcmp(opt, "--connection-timeout") == 0) {
        if (!hl_cli_parse_int(opt, v, 1, 3600, &x)) return false;
        a->http.connection_timeout_s = (int)x;
    } else if (strcmp(opt, "--drain-seconds") == 0) {
        if (!hl_cli_parse_int(opt, v, 0, 86400, &x)) return false;
        a->drain_s = (double)x;
    } else if (strcmp(opt, "--rate-limit-rpm") == 0) {
        if (!hl_cli_parse_int(opt, v, 0, 1LL << 40, &x)) return false;
        a->rpm = (double)x;
    } else if (strcmp(opt, "--rate-limit-tpm") == 0) {
        if (!hl_cli_parse_int(opt, v, 0, 1LL << 40, &x)) return false;
        a->tpm = (double)x;
    } else {
        fprintf(stderr, "halyard serve: unknown option %s\n", opt);
        return false;
    }
    return true;
}

// A flag (an option without a value); false when opt is not one.
static bool parse_flag(serve_args *a, const char *opt) {
    if (strcmp(opt, "--no-access-log") == 0) a->http.log_fd = -1;
    else if (strcmp(opt, "--no-graphs") == 0) a->engine.graphs = false;
    else return false;
    return true;
}

// One key of the --config object, as if "--key value" had been given; underscores in keys
// read as dashes ("kv_cache_dtype" is --kv-cache-dtype, as vLLM's config files spell it).
static bool parse_config_item(serve_args *a, const cJSON *item) {
    char opt[80];
    if (strlen(item->string) > 64 || strcmp(item->string, "config") == 0) {
        fprintf(stderr, "halyard serve: --config: unknown option '%.64s'\n", item->string);
        return false;
    }
    bool short_opt = strcmp(item->string, "m") == 0 || strcmp(item->string, "t") == 0;
    snprintf(opt, sizeof opt, "%s%s", short_opt ? "-" : "--", item->string);
    for (char *c = opt + 2; *c; c++) *c = *c == '_' ? '-' : *c;
    if (cJSON_IsBool(item)) {
        if (cJSON_IsTrue(item) && !parse_flag(a, opt)) {
            fprintf(stderr, "halyard serve: --config: '%s' is not a flag\n", item->string);
            return false;
        }
        return true;
    }
    if (cJSON_IsString(item)) return parse_opt(a, opt, item->valuestring);
    if (!cJSON_IsNumber(item)) {
        fprintf(stderr, "halyard serve: --config: '%s' must be a string, number or boolean\n",
                item->string);
        return false;
    }
    char num[64];
    double v = item->valuedouble;
    if (v == (double)(long long)v) snprintf(num, sizeof num, "%lld", (long long)v);
    else snprintf(num, sizeof num, "%.17g", v);
    return parse_opt(a, opt, num);
}

// Applies --config FILE (a JSON object of options) before the command line, so flags win.
static int load_config(serve_args *a, const char *path) {
    hl_error err = {0};
    char *text = hl_read_file(path, 1u << 20, NULL, &err);
    if (!text) {
        fprintf(stderr, "halyard serve: --config: %s\n", err.msg);
        return 2;
    }
    a->config = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(a->config)) {
        fprintf(stderr, "halyard serve: --config %s: not a JSON object\n", path);
        return 2;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, a->config) {
        if (!parse_config_item(a, item)) return 2;
    }
    return 0;
}

static int parse_args(int argc, char **argv, serve_args *a) {
    memset(a, 0, sizeof *a);
    a->http = hl_server_default_params();
    a->http.served_model_name = NULL;
    a->engine = hl_engine_default_params();
    a->drain_s = 30;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") != 0) continue;
        int rc = load_config(a, argv[i + 1]);
        if (rc) return rc;
        break;
    }
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (parse_flag(a, s)) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "halyard serve: %s needs a value\n", s);
            return 2;
        }
        if (strcmp(s, "--config") == 0) {
            i++; // applied first, above
            continue;
        }
        if (!parse_opt(a, s, argv[++i])) return 2;
    }
    if (!a->engine.model) {
        usage(stderr);
        return 2;
    }
    if (!a->http.served_model_name) a->http.served_model_name = model_base_name(a->engine.model);
    return 0;
}

static hl_auth *load_auth(const serve_args *a) {
    hl_auth *auth = hl_auth_create(a->rpm, a->tpm);
    hl_error err = {0};
    const char *env = getenv("HALYARD_API_KEYS");
    if (a->api_keys && hl_auth_load_file(auth, a->api_keys, &err) != HL_OK) goto fail;
    if (env && env[0] && hl_auth_load_list(auth, env, &err) != HL_OK) goto fail;
    return auth;
fail:
    fprintf(stderr, "halyard serve: API keys: %s\n", err.msg);
    hl_auth_free(auth);
    return NULL;
}

static hl_chat_template *load_template(const serve_args *a, const hl_model *m) {
    const hl_tokenizer *tok = m->tok;
    hl_chat_template_params tp = {.name = a->chat_template, .jinja = hl_tokenizer_chat_template(tok)};
    if (!tp.name && !tp.jinja) tp.name = m->chat_template_name;
    hl_tokenizer_ids ids = hl_tokenizer_special_ids(tok);
    size_t n = 0;
    char bos[64] = "", eos[64] = "";
    const char *t = ids.bos >= 0 ? hl_tokenizer_token_text(tok, ids.bos, &n) : NULL;
    if (t && n < sizeof bos) memcpy(bos, t, n), bos[n] = '\0', tp.bos_text = bos;
    t = ids.eos >= 0 ? hl_tokenizer_token_text(tok, ids.eos, &n) : NULL;
    if (t && n < sizeof eos) memcpy(eos, t, n), eos[n] = '\0', tp.eos_text = eos;
    if (!tp.name && !tp.jinja) {
        fprintf(stderr, "halyard serve: the model has no chat template; chat endpoints disabled "
                        "(use --chat-template NAME)\n");
        return NULL;
    }
    hl_error err = {0};
    hl_chat_template *tmpl = hl_chat_template_create(&tp, &err);
    if (!tmpl) fprintf(stderr, "halyard serve: chat template: %s; chat endpoints disabled\n", err.msg);
    return tmpl;
}

// Waits for SIGTERM or SIGINT (blocked in every thread, so only this wait sees them).
static void wait_signal(const sigset_t *set) {
    int sig = 0;
    sigwait(set, &sig);
    fprintf(stderr, "halyard serve: %s: draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void drain(hl_server *s, const sigset_t *set, double grace_s) {
    hl_server_drain(s);
    double end = hl_time_ms() + grace_s * 1000.0;
    struct timespec tick = {0, 50 * 1000 * 1000};
    while (hl_server_in_flight(s) > 0 && hl_time_ms() < end) {
        if (sigtimedwait(set, NULL, &tick) > 0) break; // a second signal: stop waiting
    }
    int left = hl_server_in_flight(s);
    if (left > 0) fprintf(stderr, "halyard serve: cancelling %d request(s) after the grace period\n", left);
}

int hl_cmd_serve(int argc, char **argv) {
    serve_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        cJSON_Delete(a.config);
        return rc == 1 ? 0 : rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); // before any thread starts: they inherit the mask
    signal(SIGPIPE, SIG_IGN);
    hl_auth *auth = load_auth(&a);
    if (!auth) {
        cJSON_Delete(a.config);
        return 1;
    }
    hl_metrics *metrics = hl_metrics_create();
    hl_error err = {0};
    hl_server *srv = hl_server_create(&a.http, auth, metrics, &err);
    hl_engine *engine = NULL;
    hl_chat_template *tmpl = NULL;
    rc = 1;
    if (!srv) {
        fprintf(stderr, "halyard serve: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "halyard serve: listening on http://%s:%d (loading %s)\n", a.http.host,
            hl_server_port(srv), a.engine.model);
    engine = hl_engine_create(&a.engine, &err);
    if (!engine) {
        fprintf(stderr, "halyard serve: %s\n", err.msg);
        goto done;
    }
    const hl_model *m = hl_engine_model(engine);
    int max_ctx = a.engine.max_ctx > 0 ? a.engine.max_ctx : m->cfg.n_ctx_train;
    tmpl = load_template(&a, m);
    hl_server_set_engine(srv, engine, m->tok, tmpl, max_ctx);
    fprintf(stderr, "halyard serve: ready: model '%s' (alias 'default'), context %d, chat template %s, "
                    "%s\n", a.http.served_model_name, max_ctx, tmpl ? hl_chat_template_name(tmpl) : "none",
            hl_auth_enabled(auth) ? "API keys required" : "no API keys");
    wait_signal(&set);
    drain(srv, &set, a.drain_s);
    rc = 0;
done:
    hl_server_free(srv);
    hl_engine_free(engine);
    hl_chat_template_free(tmpl);
    hl_metrics_free(metrics);
    hl_auth_free(auth);
    cJSON_Delete(a.config);
    if (rc == 0) fprintf(stderr, "halyard serve: stopped\n");
    return rc;
}
