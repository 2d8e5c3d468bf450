// openai: request parsing and response JSON of the OpenAI API (see openai.h).
#include "server/openai.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/sse.h"
#include "tokenizer/unicode.h"

int hl_api_errorf(hl_api_error *e, int status, const char *type, const char *code,
                  const char *param, const char *fmt, ...) {
    if (!e) return HL_ERR_INVAL;
    e->status = status;
    e->type = type;
    e->code = code;
    e->retry_after_s = 0;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return HL_ERR_INVAL;
}

static int bad(hl_api_error *e, const char *param, const char *fmt, const char *what) {
    return hl_api_errorf(e, 400, "invalid_request_error", NULL, param, fmt, what);
}

hl_api_limits hl_api_default_limits(void) {
    return (hl_api_limits){.max_depth = 32, .max_messages = 1024, .max_tokens = 1 << 20,
                           .max_n = 16};
}

void hl_gen_request_free(hl_gen_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    free(r->logit_bias);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->user);
    *r = (hl_gen_request){0};
}

// ---- body checks ----

int hl_json_depth(const char *s, size_t len, int limit) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len && max <= limit; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '[' || c == '{') max = ++depth > max ? depth : max;
        else if ((c == ']' || c == '}') && depth > 0) depth--;
    }
    return max;
}

// True when a string literal holds the escape \u0000 (cJSON would cut the string there).
static bool has_escaped_nul(const char *s, size_t len) {
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        if (!in_str) {
            in_str = s[i] == '"';
            continue;
        }
        if (s[i] == '"') in_str = false;
        if (s[i] != '\\') continue;
        if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) return true;
        i++;
    }
    return false;
}

int hl_openai_parse_json(const char *body, size_t len, int max_depth, cJSON **out,
                         hl_api_error *e) {
    *out = NULL;
    if (len == 0) return bad(e, NULL, "%s", "the request body is empty; expected a JSON object");
    if (memchr(body, '\0', len)) return bad(e, NULL, "%s", "the request body contains a NUL byte");
    if (!hl_utf8_valid((const uint8_t *)body, len))
        return bad(e, NULL, "%s", "the request body is not valid UTF-8");
    if (has_escaped_nul(body, len))
        return bad(e, NULL, "%s", "strings must not contain NUL characters (\\u0000)");
    if (hl_json_depth(body, len, max_depth) > max_depth)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, NULL,
                             "JSON nesting is deeper than %d levels", max_depth);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, NULL,
                             "invalid JSON in the request body near byte %zu", at);
    }
    while (end && (size_t)(end - body) < len && strchr(" \t\r\n", *end)) end++;
    if (end && (size_t)(end - body) < len) {
        cJSON_Delete(root);
        return bad(e, NULL, "%s", "invalid JSON: trailing characters after the object");
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bad(e, NULL, "%s", "the request body must be a JSON object");
    }
    *out = root;
    return HL_OK;
}

// ---- field readers ----

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int hl_api_get_number(const cJSON *o, const char *name, double lo, double hi, double *out,
                      hl_api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return HL_OK;
    if (!cJSON_IsNumber(v))
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name, "'%s' must be a number",
                             name);
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "'%s' is %g; it must be in [%g, %g]", name, x, lo, hi);
    *out = x;
    return HL_OK;
}

int hl_api_get_int(const cJSON *o, const char *name, long long lo, long long hi, long long *out,
                   hl_api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return HL_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "'%s' must be an integer", name);
    double x = v->valuedouble;
    if (!isfinite(x) || x < (double)lo || x > (double)hi)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "'%s' is %.0f; it must be in [%lld, %lld]", name, x, lo, hi);
    *out = (long long)x;
    return HL_OK;
}

int hl_api_get_bool(const cJSON *o, const char *name, bool *out, hl_api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return HL_OK;
    if (!cJSON_IsBool(v))
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return HL_OK;
}

static int get_string(const cJSON *o, const char *name, char **out, hl_api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return HL_OK;
    if (!cJSON_IsString(v))
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "'%s' must be a string", name);
    free(*out);
    *out = hl_xstrdup(v->valuestring);
    return HL_OK;
}

static int add_stop(hl_gen_request *r, const cJSON *s, const char *name, hl_api_error *e) {
    if (!cJSON_IsString(s))
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "'%s' must be a string or an array of strings", name);
    size_t n = strlen(s->valuestring);
    if (n == 0 || n > HL_STOP_MAX_BYTES)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "each stop string must be 1 to %d bytes", HL_STOP_MAX_BYTES);
    if (r->n_stop == HL_STOP_MAX_STRINGS)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name,
                             "at most %d stop strings", HL_STOP_MAX_STRINGS);
    r->stop[r->n_stop++] = hl_xstrdup(s->valuestring);
    return HL_OK;
}

int hl_api_get_stop(const cJSON *o, const char *name, hl_gen_request *r, hl_api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return HL_OK;
    if (!cJSON_IsArray(v)) return add_stop(r, v, name, e);
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (add_stop(r, s, name, e) != HL_OK) return HL_ERR_INVAL;
    }
    return HL_OK;
}

// logit_bias: {"token id": bias}.
static int get_logit_bias(const cJSON *o, hl_gen_request *r, hl_api_error *e) {
    const cJSON *v = field(o, "logit_bias");
    if (!v) return HL_OK;
    if (!cJSON_IsObject(v)) return bad(e, "logit_bias", "%s", "'logit_bias' must be an object");
    int n = cJSON_GetArraySize(v);
    if (n > HL_SAMPLER_MAX_LOGIT_BIAS)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "logit_bias",
                             "'logit_bias' has %d entries; at most %d", n, HL_SAMPLER_MAX_LOGIT_BIAS);
    r->logit_bias = hl_xcalloc((size_t)(n ? n : 1), sizeof *r->logit_bias);
    const cJSON *b;
    cJSON_ArrayForEach(b, v) {
        char *end = NULL;
        long id = strtol(b->string, &end, 10);
        if (!b->string[0] || *end || id < 0 || id > INT32_MAX)
            return bad(e, "logit_bias", "'logit_bias' keys must be token ids, not '%s'", b->string);
        if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble) || fabs(b->valuedouble) > 100)
            return bad(e, "logit_bias", "%s", "'logit_bias' values must be numbers in [-100, 100]");
        for (int i = 0; i < r->sampling.n_logit_bias; i++) {
            if (r->logit_bias[i].id == (int32_t)id)
                return bad(e, "logit_bias", "'logit_bias' repeats token %s", b->string);
        }
        r->logit_bias[r->sampling.n_logit_bias++] =
            (hl_logit_bias){.id = (int32_t)id, .bias = (float)b->valuedouble};
    }
    r->sampling.logit_bias = r->logit_bias;
    return HL_OK;
}

// Sampling fields shared by chat and completions.
static int parse_sampling(const cJSON *o, const hl_api_limits *lim, hl_gen_request *r,
                          hl_api_error *e) {
    hl_sampler_params *s = &r->sampling;
    double x;
    long long k;
    x = s->temperature;
    if (hl_api_get_number(o, "temperature", 0, HL_SAMPLER_MAX_TEMPERATURE, &x, e)) return HL_ERR_INVAL;
    s->temperature = (float)x;
    x = s->top_p;
    if (hl_api_get_number(o, "top_p", 0, 1, &x, e)) return HL_ERR_INVAL;
    if (x <= 0) return bad(e, "top_p", "%s", "'top_p' must be in (0, 1]");
    s->top_p = (float)x;
    x = s->min_p;
    if (hl_api_get_number(o, "min_p", 0, 1, &x, e)) return HL_ERR_INVAL;
    s->min_p = (float)x;
    k = s->top_k;
    if (hl_api_get_int(o, "top_k", -1, INT32_MAX, &k, e)) return HL_ERR_INVAL;
    s->top_k = k < 0 ? 0 : (int)k;
    x = s->presence_penalty;
    if (hl_api_get_number(o, "presence_penalty", -2, 2, &x, e)) return HL_ERR_INVAL;
    s->presence_penalty = (float)x;
    x = s->frequency_penalty;
    if (hl_api_get_number(o, "frequency_penalty", -2, 2, &x, e)) return HL_ERR_INVAL;
    s->frequency_penalty = (float)x;
    x = s->repetition_penalty;
    if (hl_api_get_number(o, "repetition_penalty", 0, 100, &x, e)) return HL_ERR_INVAL;
    if (x <= 0) return bad(e, "repetition_penalty", "%s", "'repetition_penalty' must be in (0, 100]");
    s->repetition_penalty = (float)x;
    k = LLONG_MIN;
    if (hl_api_get_int(o, "seed", INT64_MIN, INT64_MAX, &k, e)) return HL_ERR_INVAL;
    if (k != LLONG_MIN) {
        s->has_seed = true;
        s->seed = (uint64_t)k;
    }
    if (hl_api_get_bool(o, "ignore_eos", &s->ignore_eos, e)) return HL_ERR_INVAL;
    k = 1;
    if (hl_api_get_int(o, "n", 1, lim->max_n, &k, e)) return HL_ERR_INVAL;
    r->n = (int)k;
    k = -1;
    if (hl_api_get_int(o, "max_tokens", 1, lim->max_tokens, &k, e)) return HL_ERR_INVAL;
    if (hl_api_get_int(o, "max_completion_tokens", 1, lim->max_tokens, &k, e)) return HL_ERR_INVAL;
    r->max_tokens = (int)k;
    s->max_tokens = r->max_tokens;
    if (hl_api_get_stop(o, "stop", r, e)) return HL_ERR_INVAL;
    if (hl_api_get_bool(o, "stream", &r->stream, e)) return HL_ERR_INVAL;
    if (get_string(o, "user", &r->user, e)) return HL_ERR_INVAL;
    if (get_string(o, "model", &r->model, e)) return HL_ERR_INVAL;
    const cJSON *so = field(o, "stream_options");
    if (so && !cJSON_IsObject(so)) return bad(e, "stream_options", "%s", "'stream_options' must be an object");
    if (so && hl_api_get_bool(so, "include_usage", &r->include_usage, e)) return HL_ERR_INVAL;
    return get_logit_bias(o, r, e);
}

// Fields that would change the meaning of a response if silently ignored.
static int reject_unsupported(const cJSON *o, hl_api_error *e) {
    const cJSON *t = field(o, "tools");
    if (t && (!cJSON_IsArray(t) || cJSON_GetArraySize(t) > 0))
        return bad(e, "tools", "%s", "tool calling is not supported by this server");
    const cJSON *rf = field(o, "response_format");
    if (!rf) return HL_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(type))
        return bad(e, "response_format", "%s", "'response_format' must be an object with a 'type'");
    if (strcmp(type->valuestring, "text") != 0)
        return bad(e, "response_format", "response_format type '%s' is not supported", type->valuestring);
    return HL_OK;
}

// ---- chat ----

static bool known_role(const char *role) {
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(role, roles[i]) == 0) return true;
    return false;
}

// content: a string, an array of {"type": "text", "text": ...} parts, or null (assistant).
static int message_content(const cJSON *c, const char *role, hl_buf *text, hl_api_error *e) {
    if (!c || cJSON_IsNull(c)) {
        if (strcmp(role, "assistant") == 0) return HL_OK;
        return bad(e, "messages", "a '%s' message needs 'content'", role);
    }
    if (cJSON_IsString(c)) {
        hl_buf_puts(text, c->valuestring);
        return HL_OK;
    }
    if (!cJSON_IsArray(c))
        return bad(e, "messages", "%s", "message 'content' must be a string or an array of parts");
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type))
            return bad(e, "messages", "%s", "each content part must be an object with a 'type'");
        if (strcmp(type->valuestring, "text") != 0)
            return bad(e, "messages", "content part type '%s' is not supported (text only)",
                       type->valuestring);
        if (!cJSON_IsString(t)) return bad(e, "messages", "%s", "a text part needs a string 'text'");
        hl_buf_puts(text, t->valuestring);
    }
    return HL_OK;
}

static int parse_messages(const cJSON *o, const hl_api_limits *lim, hl_gen_request *r,
                          hl_api_error *e) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!m || cJSON_IsNull(m))
        return bad(e, "messages", "%s", "'messages' is required");
    if (!cJSON_IsArray(m)) return bad(e, "messages", "%s", "'messages' must be an array");
    int n = cJSON_GetArraySize(m);
    if (n == 0) return bad(e, "messages", "%s", "'messages' must not be empty");
    if (n > lim->max_messages)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "messages",
                             "%d messages; at most %d", n, lim->max_messages);
    r->msgs = hl_xcalloc((size_t)n, sizeof *r->msgs);
    const cJSON *msg;
    cJSON_ArrayForEach(msg, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsObject(msg)) return bad(e, "messages", "%s", "each message must be an object");
        if (!cJSON_IsString(role)) return bad(e, "messages", "%s", "each message needs a string 'role'");
        if (!known_role(role->valuestring))
            return bad(e, "messages", "unknown role '%.40s' (system, developer, user, assistant, tool)",
                       role->valuestring);
        const char *rname = strcmp(role->valuestring, "developer") == 0 ? "system" : role->valuestring;
        hl_buf text = {0};
        if (message_content(cJSON_GetObjectItemCaseSensitive(msg, "content"), rname, &text, e)) {
            hl_buf_free(&text);
            return HL_ERR_INVAL;
        }
        if (!text.data) hl_buf_puts(&text, "");
        r->msgs[r->n_msgs].role = hl_xstrdup(rname);
        r->msgs[r->n_msgs].content = hl_buf_take(&text, NULL);
        r->n_msgs++;
    }
    return HL_OK;
}

static void request_init(hl_gen_request *r, enum hl_api_kind kind) {
    *r = (hl_gen_request){0};
    r->kind = kind;
    r->sampling = hl_sampler_default_params();
    r->n = 1;
    r->max_tokens = -1;
}

int hl_openai_parse_chat(const cJSON *root, const hl_api_limits *lim, hl_gen_request *out,
                         hl_api_error *e) {
    request_init(out, HL_API_CHAT);
    if (parse_messages(root, lim, out, e)) return HL_ERR_INVAL;
    if (parse_sampling(root, lim, out, e)) return HL_ERR_INVAL;
    if (reject_unsupported(root, e)) return HL_ERR_INVAL;
    if (hl_api_get_bool(root, "logprobs", &out->logprobs, e)) return HL_ERR_INVAL;
    long long k = 0;
    if (hl_api_get_int(root, "top_logprobs", 0, HL_SAMPLER_MAX_LOGPROBS, &k, e)) return HL_ERR_INVAL;
    if (k > 0 && !out->logprobs)
        return bad(e, "top_logprobs", "%s", "'top_logprobs' needs 'logprobs': true");
    out->top_logprobs = (int)k;
    out->sampling.logprobs = out->logprobs;
    out->sampling.n_logprobs = out->top_logprobs;
    return HL_OK;
}

// ---- completions ----

static int prompt_ids(const cJSON *p, hl_gen_request *r, hl_api_error *e) {
    int n = cJSON_GetArraySize(p);
    r->prompt_ids = hl_xcalloc((size_t)(n ? n : 1), sizeof *r->prompt_ids);
    const cJSON *t;
    cJSON_ArrayForEach(t, p) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble > INT32_MAX)
            return bad(e, "prompt", "%s", "a token prompt must hold non-negative integer ids");
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)t->valuedouble;
    }
    return HL_OK;
}

static int parse_prompt(const cJSON *o, hl_gen_request *r, hl_api_error *e) {
    const cJSON *p = field(o, "prompt");
    if (!p) return bad(e, "prompt", "%s", "'prompt' is required");
    if (cJSON_IsString(p)) {
        r->prompt = hl_xstrdup(p->valuestring);
        return HL_OK;
    }
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return bad(e, "prompt", "%s", "'prompt' must be a string, a list of token ids or one string in a list");
    const cJSON *first = cJSON_GetArrayItem(p, 0);
    if (cJSON_IsNumber(first)) return prompt_ids(p, r, e);
    if (cJSON_GetArraySize(p) != 1 || !cJSON_IsString(first))
        return bad(e, "prompt", "%s", "only one prompt per request is supported");
    r->prompt = hl_xstrdup(first->valuestring);
    return HL_OK;
}

int hl_openai_parse_completion(const cJSON *root, const hl_api_limits *lim, hl_gen_request *out,
                               hl_api_error *e) {
    request_init(out, HL_API_COMPLETION);
    if (parse_prompt(root, out, e)) return HL_ERR_INVAL;
    if (parse_sampling(root, lim, out, e)) return HL_ERR_INVAL;
    if (out->max_tokens < 0) out->max_tokens = out->sampling.max_tokens = 16; // OpenAI's default
    bool echo = false;
    if (hl_api_get_bool(root, "echo", &echo, e)) return HL_ERR_INVAL;
    if (echo) return bad(e, "echo", "%s", "'echo' is not supported");
    long long best_of = out->n;
    if (hl_api_get_int(root, "best_of", 1, lim->max_n, &best_of, e)) return HL_ERR_INVAL;
    if (best_of != out->n) return bad(e, "best_of", "%s", "'best_of' other than n is not supported");
    long long k = -1;
    if (hl_api_get_int(root, "logprobs", 0, HL_SAMPLER_MAX_LOGPROBS, &k, e)) return HL_ERR_INVAL;
    out->logprobs = k >= 0;
    out->top_logprobs = k > 0 ? (int)k : 0;
    out->sampling.logprobs = out->logprobs;
    out->sampling.n_logprobs = out->top_logprobs;
    return HL_OK;
}

// ---- output ----

void hl_openai_error_json(const hl_api_error *e, hl_buf *out) {
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    char *s = cJSON_PrintUnformatted(root);
    hl_buf_puts(out, s);
    cJSON_free(s);
    cJSON_Delete(root);
}

const char *hl_openai_finish_name(enum hl_finish_reason r) {
    switch (r) {
    case HL_FINISH_LENGTH: return "length";
    case HL_FINISH_ERROR: return "error";
    case HL_FINISH_TIMEOUT: return "length";
    default: return "stop";
    }
}

// A token's text: its bytes, repaired to valid UTF-8 for the JSON string.
static cJSON *token_string(const hl_tokenizer *tok, int32_t id) {
    size_t n = 0;
    const char *b = hl_tokenizer_token_bytes(tok, id, &n);
    char *s = NULL;
    size_t len = 0, cap = 0;
    if (b && n) hl_utf8_lossy_append((const uint8_t *)b, n, false, &s, &len, &cap);
    cJSON *j = cJSON_CreateString(s ? s : "");
    free(s);
    return j;
}

static cJSON *token_bytes(const hl_tokenizer *tok, int32_t id) {
    size_t n = 0;
    const char *b = hl_tokenizer_token_bytes(tok, id, &n);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; b && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((uint8_t)b[i]));
    return a;
}

static cJSON *chat_lp_entry(const hl_tokenizer *tok, int32_t id, float lp) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "token", token_string(tok, id));
    cJSON_AddNumberToObject(o, "logprob", isfinite(lp) ? lp : -9999.0);
    cJSON_AddItemToObject(o, "bytes", token_bytes(tok, id));
    return o;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}, ...]}
static cJSON *chat_logprobs(const hl_gen_logprob *lps, int n, const hl_tokenizer *tok) {
    cJSON *root = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(root, "content");
    for (int i = 0; i < n; i++) {
        cJSON *o = chat_lp_entry(tok, lps[i].token, lps[i].logprob);
        cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
        for (int j = 0; j < lps[i].n_top; j++)
            cJSON_AddItemToArray(top, chat_lp_entry(tok, lps[i].top[j].id, lps[i].top[j].logprob));
        cJSON_AddItemToArray(content, o);
    }
    return root;
}

// Completions: {"tokens", "token_logprobs", "top_logprobs": [{tok: lp}], "text_offset"}
static cJSON *completion_logprobs(const hl_gen_logprob *lps, int n, const hl_tokenizer *tok,
                                  size_t offset0) {
    cJSON *root = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(root, "tokens");
    cJSON *lp = cJSON_AddArrayToObject(root, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(root, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(root, "text_offset");
    size_t off = offset0;
    for (int i = 0; i < n; i++) {
        cJSON *ts = token_string(tok, lps[i].token);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += strlen(ts->valuestring);
        cJSON_AddItemToArray(tokens, ts);
        cJSON_AddItemToArray(lp, cJSON_CreateNumber(isfinite(lps[i].logprob) ? lps[i].logprob : -9999.0));
        cJSON *top = cJSON_CreateObject();
        for (int j = 0; j < lps[i].n_top; j++) {
            cJSON *name = token_string(tok, lps[i].top[j].id);
            if (!cJSON_GetObjectItemCaseSensitive(top, name->valuestring))
                cJSON_AddNumberToObject(top, name->valuestring, lps[i].top[j].logprob);
            cJSON_Delete(name);
        }
        cJSON_AddItemToArray(tops, top);
    }
    return root;
}

static cJSON *usage_json(const hl_gen *g, const hl_api_meta *m) {
    cJSON *u = cJSON_CreateObject();
    int completion = hl_gen_completion_tokens(g);
    cJSON_AddNumberToObject(u, "prompt_tokens", m->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", m->prompt_tokens + completion);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", m->cached_tokens);
    return u;
}

static cJSON *envelope(const hl_gen_request *req, const hl_api_meta *m, bool chunk) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", m->id);
    const char *obj = req->kind == HL_API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                               : "text_completion";
    cJSON_AddStringToObject(root, "object", obj);
    cJSON_AddNumberToObject(root, "created", (double)m->created);
    cJSON_AddStringToObject(root, "model", m->model);
    cJSON_AddStringToObject(root, "system_fingerprint", "halyard");
    return root;
}

static void print_json(cJSON *root, hl_buf *out) {
    char *s = cJSON_PrintUnformatted(root);
    hl_buf_puts(out, s);
    cJSON_free(s);
    cJSON_Delete(root);
}

static void emit_chunk(cJSON *root, hl_buf *out) {
    char *s = cJSON_PrintUnformatted(root);
    hl_sse_data(out, s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(root);
}

void hl_openai_response(const hl_gen_request *req, const hl_gen *g, const hl_tokenizer *tok,
                        const hl_api_meta *m, hl_buf *out) {
    cJSON *root = envelope(req, m, false);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    for (int i = 0; i < hl_gen_n_choices(g); i++) {
        const hl_gen_choice *c = hl_gen_choice_at(g, i);
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        const char *text = c->text.data ? c->text.data : "";
        if (req->kind == HL_API_CHAT) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", text);
        } else {
            cJSON_AddStringToObject(ch, "text", text);
        }
        if (!req->logprobs) cJSON_AddNullToObject(ch, "logprobs");
        else if (req->kind == HL_API_CHAT) cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(c->lps, c->n_lps, tok));
        else cJSON_AddItemToObject(ch, "logprobs", completion_logprobs(c->lps, c->n_lps, tok, 0));
        cJSON_AddStringToObject(ch, "finish_reason", hl_openai_finish_name(c->finish));
        if (c->stop_index >= 0) cJSON_AddStringToObject(ch, "stop_reason", req->stop[c->stop_index]);
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_AddItemToObject(root, "usage", usage_json(g, m));
    print_json(root, out);
}

void hl_openai_chunk_start(const hl_gen_request *req, const hl_api_meta *m, hl_buf *out) {
    if (req->kind != HL_API_CHAT) return;
    for (int i = 0; i < req->n; i++) {
        cJSON *root = envelope(req, m, true);
        cJSON *choices = cJSON_AddArrayToObject(root, "choices");
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        cJSON_AddStringToObject(delta, "role", "assistant");
        cJSON_AddStringToObject(delta, "content", "");
        cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(choices, ch);
        if (req->include_usage) cJSON_AddNullToObject(root, "usage");
        emit_chunk(root, out);
    }
}

void hl_openai_chunk_delta(const hl_gen_request *req, const hl_gen *g, const hl_gen_delta *d,
                           const hl_tokenizer *tok, const hl_api_meta *m, hl_buf *out) {
    if (d->n_text == 0 && d->n_lp == 0 && !d->finished) return;
    const hl_gen_choice *c = hl_gen_choice_at(g, d->index);
    cJSON *root = envelope(req, m, true);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", d->index);
    char *piece = hl_xstrndup(d->text, d->n_text);
    cJSON *text = cJSON_CreateString(piece);
    free(piece);
    if (req->kind == HL_API_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (d->n_text || !d->finished) cJSON_AddItemToObject(delta, "content", text);
        else cJSON_Delete(text);
    } else {
        cJSON_AddItemToObject(ch, "text", text);
    }
    const hl_gen_logprob *lps = c->lps ? c->lps + d->first_lp : NULL;
    if (!req->logprobs || d->n_lp == 0) cJSON_AddNullToObject(ch, "logprobs");
    else if (req->kind == HL_API_CHAT) cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(lps, d->n_lp, tok));
    else cJSON_AddItemToObject(ch, "logprobs", completion_logprobs(lps, d->n_lp, tok, c->text.len - d->n_text));
    if (d->finished) cJSON_AddStringToObject(ch, "finish_reason", hl_openai_finish_name(d->finish));
    else cJSON_AddNullToObject(ch, "finish_reason");
    if (d->finished && c->stop_index >= 0) cJSON_AddStringToObject(ch, "stop_reason", req->stop[c->stop_index]);
    cJSON_AddItemToArray(choices, ch);
    if (req->include_usage) cJSON_AddNullToObject(root, "usage");
    emit_chunk(root, out);
}

void hl_openai_chunk_usage(const hl_gen_request *req, const hl_gen *g, const hl_api_meta *m,
                           hl_buf *out) {
    if (!req->include_usage) return;
    cJSON *root = envelope(req, m, true);
    cJSON_AddArrayToObject(root, "choices");
    cJSON_AddItemToObject(root, "usage", usage_json(g, m));
    emit_chunk(root, out);
}

void hl_openai_chunk_done(hl_buf *out) { hl_sse_data(out, "[DONE]", 6); }
