// http: libmicrohttpd server, routing, suspend/resume waiter, limits, drain (see http.h).
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "server/anthropic.h"
#include "server/embeddings.h"
#include "server/log.h"
#include "server/prompt.h"
#include "server/sse.h"

enum route {
    R_NONE = 0, R_CHAT, R_COMPLETIONS, R_MESSAGES, R_EMBEDDINGS, R_MODELS, R_MODEL,
    R_TOKENIZE, R_DETOKENIZE, R_HEALTH, R_METRICS,
};

typedef struct route_entry {
    const char *path;
    const char *method;
    enum route route;
    const char *name; // metrics endpoint label
} route_entry;

static const route_entry routes[] = {
    {"/v1/chat/completions", "POST", R_CHAT, "chat"},
    {"/v1/completions", "POST", R_COMPLETIONS, "completions"},
    {"/v1/messages", "POST", R_MESSAGES, "messages"},
    {"/v1/embeddings", "POST", R_EMBEDDINGS, "embeddings"},
    {"/v1/models", "GET", R_MODELS, "models"},
    {"/tokenize", "POST", R_TOKENIZE, "tokenize"},
    {"/detokenize", "POST", R_DETOKENIZE, "detokenize"},
    {"/health", "GET", R_HEALTH, "health"},
    {"/metrics", "GET", R_METRICS, "metrics"},
};

typedef struct conn conn;

// What an epoll event of the waiter is about: a connection's engine stream, or its client socket.
typedef struct watch {
    conn *c;
    bool sock;
} watch;

struct hl_server {
    hl_server_params p;
    char *served_name;            // owned
    struct MHD_Daemon *mhd;
    int port;
    hl_auth *auth;                // borrowed
    hl_metrics *metrics;          // borrowed
    hl_engine *engine;            // borrowed; NULL while loading
    const hl_tokenizer *tok;      // borrowed
    const hl_chat_template *tmpl; // borrowed, may be NULL
    int max_ctx;
    int listen_fd;                // from MHD_quiesce_daemon, closed after MHD stops
    uint64_t id_seed;
    // waiter
    int epoll_fd;
    int wake_fd;
    pthread_t waiter;
    bool waiter_started;
    pthread_mutex_t mu;
    bool ready;                   // guarded by mu
    bool draining;                // guarded by mu
    bool stopping;                // guarded by mu
    int in_flight;                // guarded by mu
    uint64_t next_id;             // guarded by mu
    conn *active;                 // guarded by mu: generation connections
    conn *graveyard;              // guarded by mu: freed by the waiter
};

typedef struct conn {
    hl_server *s;
    struct MHD_Connection *mc;
    enum route route;
    const char *endpoint;
    char method[8];
    char path[128];
    double t_start;
    hl_buf body;
    bool too_big;
    bool responded;               // a response has been queued
    int key;                      // API key index, -1 before auth
    int status;
    char error[320];
    // generation
    bool is_gen;
    hl_gen_request req;
    hl_gen *gen;
    hl_embeddings_request *emb;   // /v1/embeddings: the parsed request, owned
    uint64_t engine_id;
    bool has_engine;
    int fd;
    char id[48];
    char model[96];
    hl_api_meta meta;
    hl_buf out;                   // response bytes not yet written
    bool finalized;               // every byte of the response is in out
    bool waiting;                 // non-streaming: suspended until done
    bool suspended;               // guarded by s->mu
    bool registered;              // guarded by s->mu: fd is in the epoll set
    int sock;                     // the client's socket, -1 when unknown
    bool sock_registered;         // guarded by s->mu: sock is in the epoll set
    bool sock_armed;              // guarded by s->mu: its one-shot watch has not fired yet
    bool client_gone;             // guarded by s->mu: the client closed while we waited
    watch w_engine, w_sock;       // epoll tags
    bool dead;                    // guarded by s->mu
    conn *prev, *next;            // guarded by s->mu (active list / graveyard)
} conn;

hl_server_params hl_server_default_params(void) {
    return (hl_server_params){.host = "127.0.0.1", .port = 8080, .served_model_name = "default",
                              .n_threads = 4, .max_body_bytes = 8u << 20,
                              .connection_timeout_s = 15, .max_connections = 1024,
                              .limits = hl_api_default_limits(), .log_fd = 1};
}

// ---- waiter: resumes suspended connections when their engine fd is readable ----

static void list_remove(conn **head, conn *c) {
    if (c->prev) c->prev->next = c->next;
    else if (*head == c) *head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_push(conn **head, conn *c) {
    c->prev = NULL;
    c->next = *head;
    if (*head) (*head)->prev = c;
    *head = c;
}

static void conn_destroy(conn *c) {
    hl_buf_free(&c->body);
    hl_buf_free(&c->out);
    hl_gen_request_free(&c->req);
    hl_gen_free(c->gen);
    hl_embeddings_request_free(c->emb);
    free(c->emb);
    free(c);
}

static void free_graveyard(hl_server *s) {
    while (s->graveyard) {
        conn *c = s->graveyard;
        list_remove(&s->graveyard, c);
        conn_destroy(c);
    }
}

// The client of suspended c closed its socket (nginx's test: EOF or an error on a peek). Its
// request is cancelled; the engine then ends the stream, which resumes c, and MHD closes it.
static void on_client_event(hl_server *s, conn *c, uint32_t events) {
    char b;
    ssize_t r = recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    bool gone = (events & (EPOLLHUP | EPOLLERR)) || r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    if (!gone) return; // bytes before a half-close: not an abort (not re-armed)
    c->client_gone = true;
    if (c->has_engine) hl_engine_cancel(s->engine, c->engine_id);
}

static void *waiter_main(void *arg) {
    hl_server *s = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(s->epoll_fd, evs, 64, -1);
        if (n < 0 && errno != EINTR) break;
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < n; i++) {
            watch *w = evs[i].data.ptr;
            if (!w) {
                uint64_t v;
                ssize_t r = read(s->wake_fd, &v, sizeof v);
                (void)r;
                continue;
            }
            conn *c = w->c;
            if (c->dead || !c->suspended || !s->mhd) continue;
            if (w->sock) {
                c->sock_armed = false;
                on_client_event(s, c, evs[i].events);
                continue;
            }
            c->suspended = false;
            MHD_resume_connection(c->mc);
        }
        free_graveyard(s);
        bool quit = s->stopping && s->mhd == NULL;
        pthread_mutex_unlock(&s->mu);
        if (quit) break;
    }
    return NULL;
}

static void wake_waiter(hl_server *s) {
    uint64_t one = 1;
    ssize_t r = write(s->wake_fd, &one, sizeof one);
    (void)r;
}

// Watches c's client socket for a hang-up while c is suspended, so that a request still waiting
// for its first token is cancelled when its client goes away (it has nothing to write yet that
// could fail). Called with s->mu held.
static void watch_client(hl_server *s, conn *c) {
    if (c->sock < 0 || c->client_gone || c->sock_armed) return; // still armed: no syscall per token
    c->w_sock = (watch){c, true};
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLONESHOT, .data.ptr = &c->w_sock};
    int op = c->sock_registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(s->epoll_fd, op, c->sock, &ev) == 0) c->sock_registered = c->sock_armed = true;
}

// Suspends c until its engine fd has events. Called on an MHD thread while it handles c.
static void suspend_for_events(conn *c) {
    hl_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    c->suspended = true;
    MHD_suspend_connection(c->mc);
    watch_client(s, c);
    c->w_engine = (watch){c, false};
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = &c->w_engine};
    int op = c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(s->epoll_fd, op, c->fd, &ev) == 0) c->registered = true;
    else { // cannot watch: resume at once rather than hang (the next pass polls again)
        hl_log(HL_LOG_WARN, "server: epoll_ctl: %s", strerror(errno));
        c->suspended = false;
        MHD_resume_connection(c->mc);
    }
    pthread_mutex_unlock(&s->mu);
}

// Ends c's engine request (cancelling it if it still runs) and stops watching its fd.
static void engine_detach(conn *c) {
    if (!c->has_engine) return;
    hl_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    if (c->registered) epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->sock_registered) epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->sock, NULL);
    c->registered = false;
    c->sock_registered = c->sock_armed = false;
    pthread_mutex_unlock(&s->mu);
    hl_engine_release(s->engine, c->engine_id);
    c->has_engine = false;
}

// ---- responses ----

static enum MHD_Result queue(conn *c, int status, struct MHD_Response *r) {
    c->status = status;
    c->responded = true;
    MHD_add_response_header(r, "Server", "halyard");
    enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_buf(conn *c, int status, const char *ctype, hl_buf *b,
                                   int retry_after_s) {
    size_t len = 0;
    char *data = hl_buf_take(b, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after_s);
        MHD_add_response_header(r, "Retry-After", v);
    }
    if (status == 405) {
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
            if (routes[i].route == c->route) MHD_add_response_header(r, "Allow", routes[i].method);
    }
    return queue(c, status, r);
}

static enum MHD_Result respond_json(conn *c, int status, cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    hl_buf b = {0};
    hl_buf_puts(&b, s);
    cJSON_free(s);
    return respond_buf(c, status, "application/json", &b, 0);
}

static enum MHD_Result respond_error(conn *c, const hl_api_error *e) {
    hl_buf b = {0};
    if (c->route == R_MESSAGES) hl_anthropic_error_json(e, &b);
    else hl_openai_error_json(e, &b);
    snprintf(c->error, sizeof c->error, "%s", e->message);
    return respond_buf(c, e->status, "application/json", &b, e->retry_after_s);
}

static enum MHD_Result fail(conn *c, int status, const char *type, const char *code,
                            const char *msg) {
    hl_api_error e;
    hl_api_errorf(&e, status, type, code, NULL, "%s", msg);
    return respond_error(c, &e);
}

// ---- small endpoints ----

static bool model_ok(const hl_server *s, const char *name) {
    return !name || strcmp(name, "default") == 0 || strcmp(name, s->served_name) == 0;
}

static cJSON *model_json(const hl_server *s) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->served_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "halyard");
    cJSON_AddNumberToObject(m, "max_model_len", s->max_ctx);
    return m;
}

static enum MHD_Result on_models(conn *c) {
    if (c->route == R_MODEL) {
        const char *name = c->path + strlen("/v1/models/");
        if (strcmp(name, c->s->served_name) != 0 && strcmp(name, "default") != 0)
            return fail(c, 404, "invalid_request_error", "model_not_found", "model not found");
        return respond_json(c, 200, model_json(c->s));
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddItemToArray(data, model_json(c->s));
    return respond_json(c, 200, root);
}

static enum MHD_Result on_health(conn *c) {
    hl_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    const char *state = s->draining ? "draining" : s->ready ? "ok" : "loading";
    pthread_mutex_unlock(&s->mu);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", state);
    return respond_json(c, strcmp(state, "ok") == 0 ? 200 : 503, root);
}

static enum MHD_Result on_metrics(conn *c) {
    hl_engine_stats st;
    bool have = c->s->engine != NULL;
    if (have) hl_engine_get_stats(c->s->engine, &st);
    hl_buf b = {0};
    hl_metrics_render(c->s->metrics, have ? &st : NULL, &b);
    return respond_buf(c, 200, "text/plain; version=0.0.4; charset=utf-8", &b, 0);
}

// Parses c's body as a JSON object, answering 400 itself on failure (returns NULL then).
static cJSON *body_json(conn *c, hl_api_error *e) {
    cJSON *root = NULL;
    const char *data = c->body.data ? c->body.data : "";
    if (hl_openai_parse_json(data, c->body.len, c->s->p.limits.max_depth, &root, e) != HL_OK)
        return NULL;
    return root;
}

static enum MHD_Result on_tokenize(conn *c) {
    hl_api_error e;
    cJSON *root = body_json(c, &e);
    if (!root) return respond_error(c, &e);
    hl_gen_request req = {0};
    hl_tokens ids = {0};
    hl_error err = {0};
    enum MHD_Result ret;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    int rc;
    if (cJSON_IsString(prompt)) {
        bool add_special = true;
        if (hl_api_get_bool(root, "add_special_tokens", &add_special, &e)) goto bad;
        unsigned flags = HL_TOKENIZER_PARSE_SPECIAL | (add_special ? HL_TOKENIZER_ADD_SPECIAL : 0);
        rc = hl_tokenizer_encode(c->s->tok, prompt->valuestring, strlen(prompt->valuestring), flags, &ids, &err);
    } else {
        if (hl_openai_parse_chat(root, &c->s->p.limits, &req, &e)) goto bad;
        if (!c->s->tmpl) {
            hl_api_errorf(&e, 400, "invalid_request_error", NULL, "messages", "the model has no chat template");
            goto bad;
        }
        rc = hl_prompt_encode_chat(c->s->tok, c->s->tmpl, req.msgs, req.n_msgs, &ids, &err);
    }
    if (rc != HL_OK) {
        hl_api_errorf(&e, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
        goto bad;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", (double)ids.n);
    cJSON_AddNumberToObject(out, "max_model_len", c->s->max_ctx);
    cJSON *arr = cJSON_AddArrayToObject(out, "tokens");
    for (size_t i = 0; i < ids.n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids.ids[i]));
    ret = respond_json(c, 200, out);
    goto done;
bad:
    ret = respond_error(c, &e);
done:
    hl_tokens_free(&ids);
    hl_gen_request_free(&req);
    cJSON_Delete(root);
    return ret;
}

static enum MHD_Result on_detokenize(conn *c) {
    hl_api_error e;
    cJSON *root = body_json(c, &e);
    if (!root) return respond_error(c, &e);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (!cJSON_IsArray(t)) {
        cJSON_Delete(root);
        return fail(c, 400, "invalid_request_error", NULL, "'tokens' must be an array of token ids");
    }
    int n = cJSON_GetArraySize(t), k = 0;
    int32_t *ids = hl_xcalloc((size_t)(n ? n : 1), sizeof *ids);
    const cJSON *v;
    bool ok = true;
    cJSON_ArrayForEach(v, t) {
        ok = ok && cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0 &&
             v->valuedouble == (double)(int32_t)v->valuedouble;
        ids[k++] = ok ? (int32_t)v->valuedouble : 0;
    }
    cJSON_Delete(root);
    char *text = NULL;
    size_t len = 0;
    hl_error err = {0};
    if (!ok || hl_tokenizer_decode(c->s->tok, ids, (size_t)n, HL_TOKENIZER_VALID_UTF8, &text, &len, &err)) {
        free(ids);
        return fail(c, 400, "invalid_request_error", NULL,
                    ok ? err.msg : "'tokens' must hold non-negative integer ids");
    }
    free(ids);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "prompt", text);
    free(text);
    return respond_json(c, 200, out);
}

// ---- generation ----

static void new_id(conn *c, const char *prefix) {
    hl_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->next_id++;
    pthread_mutex_unlock(&s->mu);
    snprintf(c->id, sizeof c->id, "%s%016llx", prefix, (unsigned long long)hl_hash64(s->id_seed + n));
}

static int encode_prompt(conn *c, hl_tokens *ids, hl_api_error *e) {
    hl_server *s = c->s;
    hl_error err = {0};
    hl_gen_request *r = &c->req;
    if (r->prompt_ids) {
        int n_vocab = hl_tokenizer_n_tokens(s->tok);
        for (int i = 0; i < r->n_prompt_ids; i++) {
            if (r->prompt_ids[i] >= n_vocab)
                return hl_api_errorf(e, 400, "invalid_request_error", NULL, "prompt",
                                     "token id %d is out of the vocabulary (%d tokens)", r->prompt_ids[i], n_vocab);
            hl_tokens_push(ids, r->prompt_ids[i]);
        }
        return HL_OK;
    }
    int rc;
    if (r->prompt) {
        rc = hl_prompt_encode_text(s->tok, r->prompt, ids, &err);
    } else if (!s->tmpl) {
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "messages",
                             "the model has no chat template; use /v1/completions or --chat-template");
    } else {
        rc = hl_prompt_encode_chat(s->tok, s->tmpl, r->msgs, r->n_msgs, ids, &err);
    }
    if (rc != HL_OK) return hl_api_errorf(e, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
    if (ids->n == 0)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "prompt", "the prompt is empty");
    return HL_OK;
}

// Context checks and the default max_tokens (what is left of the context).
static int fit_context(conn *c, int n_prompt, hl_api_error *e) {
    hl_server *s = c->s;
    hl_gen_request *r = &c->req;
    if (n_prompt >= s->max_ctx)
        return hl_api_errorf(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                             "the prompt has %d tokens; this model's maximum context length is %d tokens",
                             n_prompt, s->max_ctx);
    if (r->max_tokens < 0) {
        int left = s->max_ctx - n_prompt;
        r->max_tokens = left < s->p.limits.max_tokens ? left : s->p.limits.max_tokens;
    }
    if (n_prompt + r->max_tokens > s->max_ctx)
        return hl_api_errorf(e, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                             "this model's maximum context length is %d tokens; the prompt has %d and "
                             "max_tokens asks for %d", s->max_ctx, n_prompt, r->max_tokens);
    r->sampling.max_tokens = r->max_tokens;
    return HL_OK;
}

static int parse_request(conn *c, hl_api_error *e) {
    cJSON *root = body_json(c, e);
    if (!root) return HL_ERR_INVAL;
    const hl_api_limits *lim = &c->s->p.limits;
    int rc = c->route == R_CHAT          ? hl_openai_parse_chat(root, lim, &c->req, e)
             : c->route == R_COMPLETIONS ? hl_openai_parse_completion(root, lim, &c->req, e)
                                         : hl_anthropic_parse(root, lim, &c->req, e);
    cJSON_Delete(root);
    if (rc != HL_OK) return rc;
    if (!model_ok(c->s, c->req.model))
        return hl_api_errorf(e, 404, "invalid_request_error", "model_not_found", "model",
                             "the model '%.100s' does not exist; this server serves '%.100s' (alias 'default')",
                             c->req.model, c->s->served_name);
    return HL_OK;
}

static int submit(conn *c, const hl_tokens *ids, hl_api_error *e) {
    hl_server *s = c->s;
    hl_error err = {0};
    hl_request_params rp = hl_request_default_params();
    rp.sampling = c->req.sampling;
    rp.n = c->req.n;
    if (hl_sampler_params_validate(&rp.sampling, hl_tokenizer_n_tokens(s->tok), &err) != HL_OK)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
    c->gen = hl_gen_create(s->tok, (const char *const *)c->req.stop, c->req.n_stop, c->req.n,
                           c->req.logprobs, &err);
    if (!c->gen) return hl_api_errorf(e, 400, "invalid_request_error", NULL, "stop", "%s", err.msg);
    int rc = hl_engine_submit(s->engine, ids->ids, (int)ids->n, &rp, &c->engine_id, &err);
    if (rc == HL_ERR_BUSY) {
        hl_api_errorf(e, 429, "rate_limit_error", "queue_full", NULL, "the server is busy: %s", err.msg);
        e->retry_after_s = 1;
        return rc;
    }
    if (rc != HL_OK) return hl_api_errorf(e, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
    c->has_engine = true;
    c->fd = hl_engine_fd(s->engine, c->engine_id);
    return HL_OK;
}

// Appends the closing frames (or the whole body) once every choice has ended.
static void finalize(conn *c) {
    engine_detach(c);
    c->finalized = true;
    const char *engine_error = hl_gen_error(c->gen);
    if (engine_error[0]) snprintf(c->error, sizeof c->error, "%s", engine_error);
    if (!c->req.stream) return; // the body is built in on_resumed
    if (c->route == R_MESSAGES) {
        hl_anthropic_stream_end(&c->req, c->gen, &c->meta, &c->out);
        return;
    }
    if (engine_error[0]) {
        hl_api_error e;
        hl_api_errorf(&e, 500, "server_error", NULL, NULL, "%s", engine_error);
        hl_buf b = {0};
        hl_openai_error_json(&e, &b);
        hl_sse_data(&c->out, b.data, b.len);
        hl_buf_free(&b);
    }
    hl_openai_chunk_usage(&c->req, c->gen, &c->meta, &c->out);
    hl_openai_chunk_done(&c->out);
}

// Drains c's engine events into c->gen (and stream frames into c->out).
static void pump(conn *c) {
    hl_event ev[32];
    while (c->has_engine && !hl_gen_done(c->gen)) {
        int n = 0;
        if (hl_engine_read(c->s->engine, c->engine_id, ev, 32, 0, &n, NULL) != HL_OK || n == 0) break;
        for (int i = 0; i < n && !hl_gen_done(c->gen); i++) {
            hl_gen_delta d;
            hl_gen_feed(c->gen, &ev[i], &d);
            if (ev[i].type == HL_EVENT_FINISH) c->meta.cached_tokens = ev[i].cached_tokens;
            if (!c->req.stream) continue;
            if (c->route == R_MESSAGES) hl_anthropic_stream_delta(&d, &c->out);
            else hl_openai_chunk_delta(&c->req, c->gen, &d, c->s->tok, &c->meta, &c->out);
        }
    }
    if (!c->finalized && (hl_gen_done(c->gen) || !c->has_engine)) finalize(c);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    conn *c = cls;
    if (c->out.len == 0 && !c->finalized) pump(c);
    if (c->out.len > 0) {
        size_t n = c->out.len < max ? c->out.len : max;
        memcpy(buf, c->out.data, n);
        hl_buf_consume(&c->out, n);
        return (ssize_t)n;
    }
    if (c->finalized) return MHD_CONTENT_READER_END_OF_STREAM;
    pthread_mutex_lock(&c->s->mu);
    bool stopping = c->s->stopping && !c->has_engine;
    pthread_mutex_unlock(&c->s->mu);
    if (stopping) return MHD_CONTENT_READER_END_WITH_ERROR;
    suspend_for_events(c);
    return 0;
}

static enum MHD_Result start_stream(conn *c) {
    if (c->route == R_MESSAGES) hl_anthropic_stream_start(&c->req, &c->meta, &c->out);
    else hl_openai_chunk_start(&c->req, &c->meta, &c->out);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                               stream_reader, c, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Request-Id", c->id);
    return queue(c, 200, r);
}

static enum MHD_Result on_embeddings_resumed(conn *c);

// A non-streaming request was resumed: finish it or wait again.
static enum MHD_Result on_resumed(conn *c) {
    if (c->route == R_EMBEDDINGS) return on_embeddings_resumed(c);
    pump(c);
    if (!c->finalized) {
        suspend_for_events(c);
        return MHD_YES;
    }
    c->waiting = false;
    const char *engine_error = hl_gen_error(c->gen);
    if (engine_error[0]) return fail(c, 500, "server_error", NULL, engine_error);
    hl_buf b = {0};
    if (c->route == R_MESSAGES) hl_anthropic_response(&c->req, c->gen, &c->meta, &b);
    else hl_openai_response(&c->req, c->gen, c->s->tok, &c->meta, &b);
    return respond_buf(c, 200, "application/json", &b, 0);
}

static void track(conn *c) {
    hl_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    list_push(&s->active, c);
    s->in_flight++;
    pthread_mutex_unlock(&s->mu);
    c->is_gen = true;
    hl_metrics_in_flight(s->metrics, 1);
}

// The key's request-rate limit: false (and a 429 in *e, with Retry-After) when it is reached.
static bool admit(conn *c, hl_api_error *e) {
    double wait_s = 0;
    if (hl_auth_admit(c->s->auth, c->key, hl_time_ms(), &wait_s) == HL_OK) return true;
    hl_api_errorf(e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                  "rate limit reached for this API key; retry in %.0f s", wait_s);
    e->retry_after_s = (int)wait_s;
    return false;
}

static enum MHD_Result on_generate(conn *c) {
    hl_server *s = c->s;
    hl_api_error e;
    if (!admit(c, &e)) return respond_error(c, &e);
    if (parse_request(c, &e) != HL_OK) return respond_error(c, &e);
    hl_tokens ids = {0};
    int rc = encode_prompt(c, &ids, &e);
    if (rc == HL_OK) rc = fit_context(c, (int)ids.n, &e);
    if (rc == HL_OK) rc = submit(c, &ids, &e);
    c->meta.prompt_tokens = (int)ids.n;
    hl_tokens_free(&ids);
    if (rc != HL_OK) return respond_error(c, &e);
    new_id(c, c->route == R_CHAT ? "chatcmpl-" : c->route == R_MESSAGES ? "msg_" : "cmpl-");
    snprintf(c->model, sizeof c->model, "%s", s->served_name);
    c->meta.id = c->id;
    c->meta.model = c->model;
    c->meta.created = (long long)time(NULL);
    track(c);
    if (c->req.stream) return start_stream(c);
    c->waiting = true;
    suspend_for_events(c);
    return MHD_YES;
}

// ---- embeddings ----
// Like a non-streaming generation: the job is submitted, the connection suspended until the
// engine's FINISH, and the vectors are written on resume (no MHD thread waits on the engine).

// The model name and dimensions of c->emb against the served model.
static int embeddings_check(conn *c, hl_api_error *e) {
    hl_server *s = c->s;
    const hl_embeddings_request *r = c->emb;
    if (!model_ok(s, r->model))
        return hl_api_errorf(e, 404, "invalid_request_error", "model_not_found", "model",
                             "the model '%.100s' does not exist; this server serves '%.100s' (alias 'default')",
                             r->model, s->served_name);
    const int dim = hl_engine_embed_dim(s->engine);
    if (r->dimensions && r->dimensions != dim)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "dimensions",
                             "'dimensions' is %d, but this model's embeddings have %d dimensions and cannot be "
                             "shortened; give %d or leave 'dimensions' out", r->dimensions, dim, dim);
    return HL_OK;
}

static int embeddings_submit(conn *c, hl_api_error *e) {
    hl_server *s = c->s;
    hl_embeddings_request *r = c->emb;
    hl_error err = {0};
    int rc = hl_engine_embed_submit(s->engine, r->ids, r->start, r->n_inputs, &r->params, &c->engine_id, &err);
    if (rc == HL_ERR_BUSY) {
        hl_api_errorf(e, 429, "rate_limit_error", "queue_full", NULL, "the server is busy: %s", err.msg);
        e->retry_after_s = 1;
        return rc;
    }
    if (rc == HL_ERR_INVAL) return hl_api_errorf(e, 400, "invalid_request_error", NULL, "input", "%s", err.msg);
    if (rc != HL_OK) return hl_api_errorf(e, 500, "server_error", NULL, NULL, "%s", err.msg);
    c->has_engine = true;
    c->fd = hl_engine_fd(s->engine, c->engine_id);
    return HL_OK;
}

static enum MHD_Result on_embeddings(conn *c) {
    hl_server *s = c->s;
    hl_api_error e;
    if (!admit(c, &e)) return respond_error(c, &e);
    cJSON *root = body_json(c, &e);
    if (!root) return respond_error(c, &e);
    c->emb = hl_xcalloc(1, sizeof *c->emb);
    int rc = hl_embeddings_parse(root, c->emb, &e);
    cJSON_Delete(root);
    if (rc == HL_OK) rc = embeddings_check(c, &e);
    if (rc == HL_OK) rc = hl_embeddings_encode(c->emb, s->tok, s->max_ctx, &e);
    if (rc == HL_OK) rc = embeddings_submit(c, &e);
    if (rc != HL_OK) return respond_error(c, &e);
    new_id(c, "embd-");
    snprintf(c->model, sizeof c->model, "%s", s->served_name);
    c->meta.prompt_tokens = c->emb->n_tokens;
    track(c);
    c->waiting = true;
    suspend_for_events(c);
    return MHD_YES;
}

// The job's FINISH arrived (or not yet: wait again); answers with the vectors or the error.
static enum MHD_Result on_embeddings_resumed(conn *c) {
    hl_server *s = c->s;
    hl_event ev[4], fin;
    int n = 0;
    bool done = false;
    while (!done && hl_engine_read(s->engine, c->engine_id, ev, 4, 0, &n, NULL) == HL_OK && n > 0) {
        for (int i = 0; i < n && !done; i++) {
            done = ev[i].type == HL_EVENT_FINISH;
            if (done) fin = ev[i];
        }
    }
    if (!done) {
        suspend_for_events(c);
        return MHD_YES;
    }
    c->waiting = false;
    c->finalized = true;
    if (fin.finish != HL_FINISH_STOP) {
        engine_detach(c);
        if (fin.finish == HL_FINISH_CANCELLED)
            return fail(c, 503, "server_error", "service_unavailable", "the embedding was cancelled: shutting down");
        return fail(c, 500, "server_error", NULL, fin.error);
    }
    const int dim = hl_engine_embed_dim(s->engine), n_inputs = c->emb->n_inputs;
    float *vecs = malloc(sizeof(float) * (size_t)n_inputs * (size_t)dim);
    hl_error err = {0};
    int rc = vecs ? hl_engine_embed_result(s->engine, c->engine_id, vecs, n_inputs, dim, &err)
                  : hl_errorf(&err, HL_ERR_NOMEM, "out of memory for %d embeddings", n_inputs);
    engine_detach(c);
    hl_api_error e;
    hl_buf b = {0};
    if (rc == HL_OK) rc = hl_embeddings_response(c->emb, vecs, dim, c->model, &b, &e);
    else hl_api_errorf(&e, 500, "server_error", NULL, NULL, "%s", err.msg);
    free(vecs);
    if (rc != HL_OK) return respond_error(c, &e);
    return respond_buf(c, 200, "application/json", &b, 0);
}

// ---- dispatch ----

static const char *bearer(struct MHD_Connection *mc) {
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) return h + 7;
    return MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "x-api-key");
}

static enum MHD_Result dispatch(conn *c) {
    hl_server *s = c->s;
    if (c->route == R_NONE)
        return fail(c, 404, "invalid_request_error", "unknown_route", "no such route");
    if (c->status == 405)
        return fail(c, 405, "invalid_request_error", "method_not_allowed", "method not allowed on this route");
    if (c->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->p.max_body_bytes);
        return fail(c, 413, "invalid_request_error", "request_too_large", msg);
    }
    if (c->route == R_HEALTH) return on_health(c);
    if (c->route == R_METRICS) return on_metrics(c);
    c->key = hl_auth_check(s->auth, bearer(c->mc));
    if (c->key < 0)
        return fail(c, 401, "authentication_error", "invalid_api_key", "missing or invalid API key");
    if (c->route == R_MODELS || c->route == R_MODEL) return on_models(c);
    pthread_mutex_lock(&s->mu);
    const char *why = s->draining ? "the server is shutting down" : !s->ready ? "the model is loading" : NULL;
    pthread_mutex_unlock(&s->mu);
    if (why) return fail(c, 503, "server_error", "service_unavailable", why);
    if (c->route == R_EMBEDDINGS) return on_embeddings(c);
    if (c->route == R_TOKENIZE) return on_tokenize(c);
    if (c->route == R_DETOKENIZE) return on_detokenize(c);
    return on_generate(c);
}

static void find_route(conn *c, const char *url, const char *method) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        c->route = routes[i].route;
        c->endpoint = routes[i].name;
        if (strcmp(method, routes[i].method) != 0) c->status = 405;
        return;
    }
    if (strncmp(url, "/v1/models/", 11) == 0 && url[11]) {
        c->route = R_MODEL;
        c->endpoint = "models";
        if (strcmp(method, "GET") != 0) c->status = 405;
        return;
    }
    c->endpoint = "unknown";
}

static conn *conn_create(hl_server *s, struct MHD_Connection *mc, const char *url, const char *method) {
    conn *c = hl_xcalloc(1, sizeof *c);
    c->s = s;
    c->mc = mc;
    c->key = -1;
    c->fd = -1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->sock = ci ? ci->connect_fd : -1;
    c->t_start = hl_time_ms();
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", url);
    find_route(c, url, method);
    return c;
}

// Content-Length over the cap: answer 413 before reading the body (MHD then closes).
static bool declared_too_big(conn *c) {
    const char *cl = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Content-Length");
    if (!cl) return false;
    char *end = NULL;
    unsigned long long n = strtoull(cl, &end, 10);
    return end != cl && n > c->s->p.max_body_bytes;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    hl_server *s = cls;
    conn *c = *con_cls;
    if (!c) {
        c = conn_create(s, mc, url, method);
        *con_cls = c;
        if (!declared_too_big(c)) return MHD_YES;
        c->too_big = true;
        return dispatch(c);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->responded) return MHD_YES;
        if (c->body.len + n > s->p.max_body_bytes) {
            c->too_big = true;
            hl_buf_free(&c->body);
            return dispatch(c);
        }
        hl_buf_append(&c->body, upload, n);
        return MHD_YES;
    }
    if (c->responded) return MHD_YES;
    if (c->waiting) return on_resumed(c);
    return dispatch(c);
}

static void log_and_count(conn *c) {
    hl_server *s = c->s;
    double now = hl_time_ms();
    int completion = c->gen ? hl_gen_completion_tokens(c->gen) : 0;
    double first = c->gen ? hl_gen_first_token_ms(c->gen) : 0;
    double ttft = first > 0 ? first - c->t_start : -1;
    double tpot = first > 0 && completion > 1 ? (now - first) / (completion - 1) : -1;
    double queue_ms = c->gen && first > 0 ? hl_gen_queue_ms(c->gen) : -1;
    const char *finish = NULL;
    if (c->gen && hl_gen_n_choices(c->gen) > 0 && hl_gen_choice_at(c->gen, 0)->done)
        finish = hl_finish_reason_name(hl_gen_choice_at(c->gen, 0)->finish);
    if (c->is_gen && !c->finalized) finish = "cancelled";
    // 499: the client went away before a response (or while its request waited)
    int status = c->status && !c->client_gone ? c->status : 499;
    const char *model = c->model[0] ? c->model : c->req.model;
    hl_metrics_sample ms = {.model = model ? model : "", .endpoint = c->endpoint, .status = status,
                            .ttft_ms = ttft, .tpot_ms = tpot, .e2e_ms = c->is_gen ? now - c->t_start : -1,
                            .queue_ms = queue_ms, .prompt_tokens = c->is_gen ? c->meta.prompt_tokens : 0,
                            .completion_tokens = completion};
    hl_metrics_observe(s->metrics, &ms);
    if (c->is_gen) hl_auth_charge_tokens(s->auth, c->key, c->meta.prompt_tokens + completion, now);
    hl_request_log rec = {.id = c->id[0] ? c->id : NULL, .method = c->method, .path = c->path,
                          .model = model, .status = status, .key = c->key,
                          .prompt_tokens = c->meta.prompt_tokens, .completion_tokens = completion,
                          .queue_ms = queue_ms, .ttft_ms = ttft, .total_ms = now - c->t_start,
                          .finish = finish, .error = c->error[0] ? c->error : NULL};
    if (c->route != R_HEALTH && c->route != R_METRICS) hl_request_log_write(s->p.log_fd, &rec);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    hl_server *s = cls;
    conn *c = *con_cls;
    *con_cls = NULL;
    if (!c) return;
    engine_detach(c); // a client that went away frees its KV blocks now
    log_and_count(c);
    pthread_mutex_lock(&s->mu);
    c->dead = true;
    if (c->is_gen) {
        list_remove(&s->active, c);
        s->in_flight--;
    }
    list_push(&s->graveyard, c);
    pthread_mutex_unlock(&s->mu);
    if (c->is_gen) hl_metrics_in_flight(s->metrics, -1);
    wake_waiter(s);
}

// ---- lifecycle ----

static int bind_addr(const hl_server_params *p, struct sockaddr_storage *ss, bool *v6, hl_error *err) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    *v6 = strchr(p->host, ':') != NULL;
    if (!*v6 && inet_pton(AF_INET, p->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p->port);
        return HL_OK;
    }
    if (*v6 && inet_pton(AF_INET6, p->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p->port);
        return HL_OK;
    }
    if (strcmp(p->host, "localhost") == 0) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p->port);
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *v6 = false;
        return HL_OK;
    }
    return hl_errorf(err, HL_ERR_INVAL, "--host %s: not a numeric IPv4/IPv6 address", p->host);
}

static int start_waiter(hl_server *s, hl_error *err) {
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->epoll_fd < 0 || s->wake_fd < 0) return hl_errorf(err, HL_ERR_IO, "epoll/eventfd: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &ev) != 0)
        return hl_errorf(err, HL_ERR_IO, "epoll_ctl: %s", strerror(errno));
    if (pthread_create(&s->waiter, NULL, waiter_main, s) != 0)
        return hl_errorf(err, HL_ERR_IO, "cannot start the waiter thread");
    s->waiter_started = true;
    return HL_OK;
}

static void mhd_panic(void *cls, const char *file, unsigned int line, const char *reason) {
    hl_panic(file, (int)line, "libmicrohttpd: %s", reason ? reason : "panic");
}

hl_server *hl_server_create(const hl_server_params *p, hl_auth *auth, hl_metrics *metrics,
                            hl_error *err) {
    hl_server *s = hl_xcalloc(1, sizeof *s);
    s->p = *p;
    s->served_name = hl_xstrdup(p->served_model_name ? p->served_model_name : "default");
    s->auth = auth;
    s->metrics = metrics;
    s->listen_fd = -1;
    s->epoll_fd = s->wake_fd = -1;
    s->id_seed = hl_hash64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_storage ss;
    bool v6 = false;
    if (bind_addr(p, &ss, &v6, err) != HL_OK || start_waiter(s, err) != HL_OK) goto fail;
    MHD_set_panic_func(mhd_panic, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     (v6 ? MHD_USE_IPv6 : 0);
    s->mhd = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(p->n_threads > 0 ? p->n_threads : 4),
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->connection_timeout_s,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        hl_errorf(err, HL_ERR_IO, "cannot listen on %s:%d (address in use or not permitted)", p->host, p->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : p->port;
    return s;
fail:
    hl_server_free(s);
    return NULL;
}

int hl_server_port(const hl_server *s) { return s->port; }

void hl_server_set_engine(hl_server *s, hl_engine *e, const hl_tokenizer *tok,
                          const hl_chat_template *tmpl, int max_ctx) {
    pthread_mutex_lock(&s->mu);
    s->engine = e;
    s->tok = tok;
    s->tmpl = tmpl;
    s->max_ctx = max_ctx;
    s->ready = true;
    pthread_mutex_unlock(&s->mu);
}

void hl_server_drain(hl_server *s) {
    pthread_mutex_lock(&s->mu);
    bool was = s->draining;
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
    if (!was && s->mhd) s->listen_fd = MHD_quiesce_daemon(s->mhd);
}

int hl_server_in_flight(hl_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->in_flight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

// Cancels every running request; their FINISH events resume the connections, which then end.
static void cancel_all(hl_server *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (conn *c = s->active; c && s->engine; c = c->next)
        if (c->has_engine) hl_engine_cancel(s->engine, c->engine_id);
    pthread_mutex_unlock(&s->mu);
}

// MHD must not stop with suspended connections: resume whatever still is.
static void resume_all(hl_server *s) {
    pthread_mutex_lock(&s->mu);
    for (conn *c = s->active; c; c = c->next) {
        if (!c->suspended) continue;
        c->suspended = false;
        MHD_resume_connection(c->mc);
    }
    pthread_mutex_unlock(&s->mu);
}

void hl_server_free(hl_server *s) {
    if (!s) return;
    if (s->mhd) {
        cancel_all(s);
        for (int i = 0; i < 300 && hl_server_in_flight(s) > 0; i++) usleep(10 * 1000);
        resume_all(s);
        usleep(20 * 1000);
        MHD_stop_daemon(s->mhd);
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->mhd = NULL;
    pthread_mutex_unlock(&s->mu);
    if (s->waiter_started) {
        wake_waiter(s);
        pthread_join(s->waiter, NULL);
    }
    free_graveyard(s);
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->epoll_fd >= 0) close(s->epoll_fd);
    if (s->wake_fd >= 0) close(s->wake_fd);
    pthread_mutex_destroy(&s->mu);
    free(s->served_name);
    free(s);
}
