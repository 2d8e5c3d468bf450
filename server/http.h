// http: the HTTP server of `halyard serve` — libmicrohttpd with an internal epoll thread pool,
// routing of the OpenAI (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models),
// Anthropic (/v1/messages) and utility (/tokenize, /detokenize, /health, /metrics) endpoints,
// auth and rate limits, body/JSON caps, one access-log line per request, and draining.
//
// Threads: MHD's pool threads parse requests and write responses; they never block on the
// engine. A connection that waits for tokens (streaming or not) is suspended, and the engine
// eventfd of its request is armed (EPOLLONESHOT) in one waiter thread's epoll set; when tokens
// arrive the waiter resumes the connection, which drains the events and writes. So open streams
// cost no threads. A client that disconnects ends its request through MHD's completion callback,
// which releases the engine request at once (its KV blocks are freed at the next step).
//
// Lifecycle: create (listening; generation endpoints answer 503 "loading") -> set_engine (ready)
// -> drain (stop accepting; new requests get 503) -> wait until hl_server_in_flight() is 0 or the
// grace period ends -> free (cancels what is left, resumes every connection, stops MHD).
//
//   hl_server *s = hl_server_create(&params, auth, metrics, &err);
//   hl_server_set_engine(s, engine, model_name, tmpl);
//   ... SIGTERM: hl_server_drain(s); while (hl_server_in_flight(s) && !late) sleep; hl_server_free(s);
#pragma once

#include "engine/engine.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "tokenizer/chat.h"

typedef struct hl_server_params {
    const char *host;            // default "127.0.0.1"
    int port;                    // 0: an ephemeral port (see hl_server_port)
    const char *served_model_name; // name requests use besides "default"; copied
    int n_threads;               // MHD pool threads; default 4
    size_t max_body_bytes;       // larger bodies get 413; default 8 MiB
    int connection_timeout_s;    // idle connections (slow headers/bodies) are closed; default 15
    int max_connections;         // default 1024
    hl_api_limits limits;        // JSON depth, messages, max_tokens, n
    int log_fd;                  // access log (one JSON line per request); -1: off. Default 1
} hl_server_params;

hl_server_params hl_server_default_params(void);

typedef struct hl_server hl_server;

// Binds and starts serving (generation endpoints answer 503 until hl_server_set_engine).
// auth and metrics are borrowed and must outlive the server. NULL + HL_ERR_IO when the address
// cannot be bound, HL_ERR_INVAL for a bad host.
hl_server *hl_server_create(const hl_server_params *p, hl_auth *auth, hl_metrics *metrics,
                            hl_error *err);

// The port actually bound.
int hl_server_port(const hl_server *s);

// Makes the server ready: e (and its model's tokenizer) and tmpl (may be NULL: chat endpoints
// then answer 400) are borrowed and must outlive the server; max_ctx is the context the
// engine accepts (prompt + max_tokens).
void hl_server_set_engine(hl_server *s, hl_engine *e, const hl_tokenizer *tok,
                          const hl_chat_template *tmpl, int max_ctx);

// Stops accepting connections; requests that arrive on open connections get 503. In-flight
// requests continue.
void hl_server_drain(hl_server *s);

// Generation requests still running.
int hl_server_in_flight(hl_server *s);

// Cancels what is still running, waits up to a few seconds for those connections to end,
// stops MHD and frees everything. Accepts NULL.
void hl_server_free(hl_server *s);
