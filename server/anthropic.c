// anthropic: the Messages API (see anthropic.h).
#include "server/anthropic.h"

#include <stdlib.h>

#include "server/sse.h"

static int bad(hl_api_error *e, const char *param, const char *msg) {
    return hl_api_errorf(e, 400, "invalid_request_error", NULL, param, "%s", msg);
}

// A string or an array of {"type": "text", "text": ...} blocks.
static int blocks_text(const cJSON *c, const char *what, hl_buf *out, hl_api_error *e) {
    if (cJSON_IsString(c)) {
        hl_buf_puts(out, c->valuestring);
        return HL_OK;
    }
    if (!cJSON_IsArray(c)) return hl_api_errorf(e, 400, "invalid_request_error", NULL, what,
                                                "'%s' must be a string or an array of text blocks", what);
    const cJSON *b;
    cJSON_ArrayForEach(b, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(b, "text");
        if (!cJSON_IsObject(b) || !cJSON_IsString(type)) return bad(e, what, "each content block needs a 'type'");
        if (strcmp(type->valuestring, "text") != 0)
            return hl_api_errorf(e, 400, "invalid_request_error", NULL, what,
                                 "content block type '%.40s' is not supported (text only)", type->valuestring);
        if (!cJSON_IsString(text)) return bad(e, what, "a text block needs a string 'text'");
        hl_buf_puts(out, text->valuestring);
    }
    return HL_OK;
}

static void add_msg(hl_gen_request *r, const char *role, hl_buf *text) {
    if (!text->data) hl_buf_puts(text, "");
    r->msgs[r->n_msgs].role = hl_xstrdup(role);
    r->msgs[r->n_msgs].content = hl_buf_take(text, NULL);
    r->n_msgs++;
}

static int parse_messages(const cJSON *root, const hl_api_limits *lim, hl_gen_request *r,
                          hl_api_error *e) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(m)) return bad(e, "messages", "'messages' is required and must be an array");
    int n = cJSON_GetArraySize(m);
    if (n == 0) return bad(e, "messages", "'messages' must not be empty");
    if (n > lim->max_messages) return bad(e, "messages", "too many messages");
    r->msgs = hl_xcalloc((size_t)n + 1, sizeof *r->msgs);
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(root, "system");
    if (sys && !cJSON_IsNull(sys)) {
        hl_buf t = {0};
        if (blocks_text(sys, "system", &t, e)) {
            hl_buf_free(&t);
            return HL_ERR_INVAL;
        }
        add_msg(r, "system", &t);
    }
    const cJSON *msg;
    cJSON_ArrayForEach(msg, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) return bad(e, "messages", "each message needs a string 'role'");
        if (strcmp(role->valuestring, "user") != 0 && strcmp(role->valuestring, "assistant") != 0)
            return hl_api_errorf(e, 400, "invalid_request_error", NULL, "messages",
                                 "unknown role '%.40s' (user or assistant)", role->valuestring);
        hl_buf t = {0};
        if (blocks_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), "content", &t, e)) {
            hl_buf_free(&t);
            return HL_ERR_INVAL;
        }
        add_msg(r, role->valuestring, &t);
    }
    return HL_OK;
}

int hl_anthropic_parse(const cJSON *root, const hl_api_limits *lim, hl_gen_request *out,
                       hl_api_error *e) {
    *out = (hl_gen_request){0};
    out->kind = HL_API_MESSAGES;
    out->sampling = hl_sampler_default_params();
    out->n = 1;
    if (parse_messages(root, lim, out, e)) return HL_ERR_INVAL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) return bad(e, "model", "'model' must be a string");
    if (cJSON_IsString(model)) out->model = hl_xstrdup(model->valuestring);
    long long k = -1;
    if (hl_api_get_int(root, "max_tokens", 1, lim->max_tokens, &k, e)) return HL_ERR_INVAL;
    if (k < 0) return bad(e, "max_tokens", "'max_tokens' is required");
    out->max_tokens = (int)k;
    out->sampling.max_tokens = (int)k;
    double x = out->sampling.temperature;
    if (hl_api_get_number(root, "temperature", 0, 1, &x, e)) return HL_ERR_INVAL;
    out->sampling.temperature = (float)x;
    x = out->sampling.top_p;
    if (hl_api_get_number(root, "top_p", 0, 1, &x, e)) return HL_ERR_INVAL;
    if (x <= 0) return bad(e, "top_p", "'top_p' must be in (0, 1]");
    out->sampling.top_p = (float)x;
    k = 0;
    if (hl_api_get_int(root, "top_k", 0, INT32_MAX, &k, e)) return HL_ERR_INVAL;
    out->sampling.top_k = (int)k;
    if (hl_api_get_stop(root, "stop_sequences", out, e)) return HL_ERR_INVAL;
    if (hl_api_get_bool(root, "stream", &out->stream, e)) return HL_ERR_INVAL;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0) return bad(e, "tools", "tool use is not supported");
    return HL_OK;
}

static const char *error_type(int status) {
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return "api_error";
    }
}

static cJSON *error_obj(const hl_api_error *e) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "type", "error");
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "type", error_type(e->status));
    cJSON_AddStringToObject(err, "message", e->message);
    return root;
}

static void print(cJSON *root, hl_buf *out) {
    char *s = cJSON_PrintUnformatted(root);
    hl_buf_puts(out, s);
    cJSON_free(s);
    cJSON_Delete(root);
}

static void event(const char *name, cJSON *root, hl_buf *out) {
    char *s = cJSON_PrintUnformatted(root);
    hl_sse_event(out, name, s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(root);
}

void hl_anthropic_error_json(const hl_api_error *e, hl_buf *out) { print(error_obj(e), out); }

void hl_anthropic_stream_error(const hl_api_error *e, hl_buf *out) { event("error", error_obj(e), out); }

static const char *stop_reason(const hl_gen_choice *c) {
    if (c->stop_index >= 0) return "stop_sequence";
    return c->finish == HL_FINISH_LENGTH ? "max_tokens" : "end_turn";
}

static void add_stop(cJSON *o, const hl_gen_request *req, const hl_gen_choice *c) {
    cJSON_AddStringToObject(o, "stop_reason", stop_reason(c));
    if (c->stop_index >= 0) cJSON_AddStringToObject(o, "stop_sequence", req->stop[c->stop_index]);
    else cJSON_AddNullToObject(o, "stop_sequence");
}

static cJSON *message(const hl_api_meta *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "role", "assistant");
    cJSON_AddStringToObject(o, "model", m->model);
    return o;
}

static cJSON *usage(int input, int output) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", input);
    cJSON_AddNumberToObject(u, "output_tokens", output);
    return u;
}

void hl_anthropic_response(const hl_gen_request *req, const hl_gen *g, const hl_api_meta *m,
                           hl_buf *out) {
    const hl_gen_choice *c = hl_gen_choice_at(g, 0);
    cJSON *o = message(m);
    cJSON *content = cJSON_AddArrayToObject(o, "content");
    cJSON *block = cJSON_CreateObject();
    cJSON_AddStringToObject(block, "type", "text");
    cJSON_AddStringToObject(block, "text", c->text.data ? c->text.data : "");
    cJSON_AddItemToArray(content, block);
    add_stop(o, req, c);
    cJSON_AddItemToObject(o, "usage", usage(m->prompt_tokens, hl_gen_completion_tokens(g)));
    print(o, out);
}

void hl_anthropic_stream_start(const hl_gen_request *req, const hl_api_meta *m, hl_buf *out) {
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "message_start");
    cJSON *msg = message(m);
    cJSON_AddArrayToObject(msg, "content");
    cJSON_AddNullToObject(msg, "stop_reason");
    cJSON_AddNullToObject(msg, "stop_sequence");
    cJSON_AddItemToObject(msg, "usage", usage(m->prompt_tokens, 0));
    cJSON_AddItemToObject(ev, "message", msg);
    event("message_start", ev, out);
    ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "content_block_start");
    cJSON_AddNumberToObject(ev, "index", 0);
    cJSON *block = cJSON_AddObjectToObject(ev, "content_block");
    cJSON_AddStringToObject(block, "type", "text");
    cJSON_AddStringToObject(block, "text", "");
    event("content_block_start", ev, out);
    ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "ping");
    event("ping", ev, out);
}

void hl_anthropic_stream_delta(const hl_gen_delta *d, hl_buf *out) {
    if (d->n_text == 0 || d->index != 0) return;
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "content_block_delta");
    cJSON_AddNumberToObject(ev, "index", 0);
    cJSON *delta = cJSON_AddObjectToObject(ev, "delta");
    cJSON_AddStringToObject(delta, "type", "text_delta");
    char *t = hl_xstrndup(d->text, d->n_text);
    cJSON_AddStringToObject(delta, "text", t);
    free(t);
    event("content_block_delta", ev, out);
}

void hl_anthropic_stream_end(const hl_gen_request *req, const hl_gen *g, const hl_api_meta *m,
                             hl_buf *out) {
    const hl_gen_choice *c = hl_gen_choice_at(g, 0);
    if (hl_gen_error(g)[0]) {
        hl_api_error e;
        hl_api_errorf(&e, 500, "api_error", NULL, NULL, "%s", hl_gen_error(g));
        hl_anthropic_stream_error(&e, out);
        return;
    }
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "content_block_stop");
    cJSON_AddNumberToObject(ev, "index", 0);
    event("content_block_stop", ev, out);
    ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "message_delta");
    cJSON *delta = cJSON_AddObjectToObject(ev, "delta");
    add_stop(delta, req, c);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "output_tokens", hl_gen_completion_tokens(g));
    cJSON_AddItemToObject(ev, "usage", u);
    event("message_delta", ev, out);
    ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "message_stop");
    event("message_stop", ev, out);
}
