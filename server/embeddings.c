// embeddings: /v1/embeddings request parsing and response JSON (see embeddings.h).
#include "server/embeddings.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/prompt.h"

static int bad(hl_api_error *e, const char *param, const char *msg) {
    return hl_api_errorf(e, 400, "invalid_request_error", NULL, param, "%s", msg);
}

void hl_embeddings_request_free(hl_embeddings_request *r) {
    if (!r) return;
    for (int i = 0; r->texts && i < r->n_inputs; i++) free(r->texts[i]);
    free(r->texts);
    free(r->ids);
    free(r->start);
    free(r->model);
    free(r->user);
    *r = (hl_embeddings_request){0};
}

// ---- parsing ----

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_string(const cJSON *o, const char *name, char **out, hl_api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return HL_OK;
    if (!cJSON_IsString(v))
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, name, "'%s' must be a string", name);
    *out = hl_xstrdup(v->valuestring);
    return HL_OK;
}

static bool is_token_id(const cJSON *t) {
    return cJSON_IsNumber(t) && t->valuedouble == floor(t->valuedouble) && t->valuedouble >= 0 &&
           t->valuedouble <= INT32_MAX;
}

// Appends the token ids of arr (a JSON array) to r as input number r->n_inputs.
static int add_id_input(hl_embeddings_request *r, const cJSON *arr, hl_api_error *e) {
    const int n = cJSON_GetArraySize(arr);
    if (n == 0) return bad(e, "input", "a token-id input must not be empty");
    const cJSON *t;
    cJSON_ArrayForEach(t, arr) {
        if (!is_token_id(t)) return bad(e, "input", "token ids must be non-negative integers");
        r->ids[r->n_tokens++] = (int32_t)t->valuedouble;
    }
    r->start[++r->n_inputs] = r->n_tokens;
    return HL_OK;
}

// Token-id input(s): one array of ids (nested false) or an array of such arrays.
static int parse_ids(hl_embeddings_request *r, const cJSON *v, bool nested, hl_api_error *e) {
    const int n_inputs = nested ? cJSON_GetArraySize(v) : 1;
    long long total = nested ? 0 : cJSON_GetArraySize(v);
    const cJSON *a;
    if (nested) {
        cJSON_ArrayForEach(a, v) {
            if (!cJSON_IsArray(a)) return bad(e, "input", "'input' mixes token-id arrays with other values");
            total += cJSON_GetArraySize(a);
        }
    }
    if (total > HL_EMBEDDINGS_MAX_TOKENS)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "input",
                             "'input' holds %lld tokens; at most %d per request", total, HL_EMBEDDINGS_MAX_TOKENS);
    r->ids = hl_xmalloc(sizeof(int32_t) * (size_t)(total > 0 ? total : 1));
    r->start = hl_xcalloc((size_t)n_inputs + 1, sizeof(int));
    if (!nested) return add_id_input(r, v, e);
    cJSON_ArrayForEach(a, v) {
        if (add_id_input(r, a, e) != HL_OK) return HL_ERR_INVAL;
    }
    return HL_OK;
}

static int add_text_input(hl_embeddings_request *r, const cJSON *s, hl_api_error *e) {
    if (!cJSON_IsString(s)) return bad(e, "input", "'input' mixes strings with other values");
    if (!s->valuestring[0])
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "input",
                             "input %d is an empty string; every input must hold text", r->n_inputs);
    r->texts[r->n_inputs++] = hl_xstrdup(s->valuestring);
    return HL_OK;
}

// Text input(s): a string or an array of strings.
static int parse_texts(hl_embeddings_request *r, const cJSON *v, hl_api_error *e) {
    if (cJSON_IsString(v)) {
        r->texts = hl_xcalloc(1, sizeof(char *));
        return add_text_input(r, v, e);
    }
    r->texts = hl_xcalloc((size_t)cJSON_GetArraySize(v), sizeof(char *));
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (add_text_input(r, s, e) != HL_OK) return HL_ERR_INVAL;
    }
    return HL_OK;
}

static int parse_input(const cJSON *root, hl_embeddings_request *r, hl_api_error *e) {
    const cJSON *v = field(root, "input");
    if (!v) return bad(e, "input", "'input' is required");
    if (cJSON_IsString(v)) return parse_texts(r, v, e);
    const char *what = "'input' must be a string, an array of strings, an array of token ids or an array "
                       "of token-id arrays";
    if (!cJSON_IsArray(v)) return bad(e, "input", what);
    const int n = cJSON_GetArraySize(v);
    if (n == 0) return bad(e, "input", "'input' must not be an empty array");
    const cJSON *first = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsNumber(first)) return parse_ids(r, v, false, e);
    if (n > HL_EMBEDDINGS_MAX_INPUTS)
        return hl_api_errorf(e, 400, "invalid_request_error", NULL, "input",
                             "'input' has %d entries; at most %d", n, HL_EMBEDDINGS_MAX_INPUTS);
    if (cJSON_IsString(first)) return parse_texts(r, v, e);
    if (cJSON_IsArray(first)) return parse_ids(r, v, true, e);
    return bad(e, "input", what);
}

static int parse_options(const cJSON *root, hl_embeddings_request *r, hl_api_error *e) {
    const cJSON *f = field(root, "encoding_format");
    if (f && (!cJSON_IsString(f) || (strcmp(f->valuestring, "float") && strcmp(f->valuestring, "base64"))))
        return bad(e, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    r->base64 = f && strcmp(f->valuestring, "base64") == 0;
    const cJSON *p = field(root, "pooling");
    if (p && (!cJSON_IsString(p) || (strcmp(p->valuestring, "mean") && strcmp(p->valuestring, "last"))))
        return bad(e, "pooling", "'pooling' must be \"mean\" or \"last\"");
    if (p && strcmp(p->valuestring, "last") == 0) r->params.pooling = HL_POOLING_LAST;
    long long dims = 0;
    if (hl_api_get_int(root, "dimensions", 1, INT32_MAX, &dims, e) != HL_OK) return HL_ERR_INVAL;
    r->dimensions = (int)dims;
    if (hl_api_get_bool(root, "normalize", &r->params.normalize, e) != HL_OK) return HL_ERR_INVAL;
    if (get_string(root, "model", &r->model, e) != HL_OK) return HL_ERR_INVAL;
    return get_string(root, "user", &r->user, e);
}

int hl_embeddings_parse(const cJSON *root, hl_embeddings_request *out, hl_api_error *e) {
    *out = (hl_embeddings_request){.params = hl_embed_default_params()};
    if (parse_options(root, out, e) != HL_OK) return HL_ERR_INVAL;
    return parse_input(root, out, e);
}

// ---- tokens ----

// Encodes the text inputs into r->ids / r->start.
static int encode_texts(hl_embeddings_request *r, const hl_tokenizer *tok, hl_api_error *e) {
    hl_tokens all = {0};
    r->start = hl_xcalloc((size_t)r->n_inputs + 1, sizeof(int));
    int rc = HL_OK;
    for (int i = 0; i < r->n_inputs && rc == HL_OK; i++) {
        hl_error err = {0};
        if (hl_prompt_encode_text(tok, r->texts[i], &all, &err) != HL_OK)
            rc = hl_api_errorf(e, 400, "invalid_request_error", NULL, "input", "input %d: %s", i, err.msg);
        else if (all.n > HL_EMBEDDINGS_MAX_TOKENS)
            rc = hl_api_errorf(e, 400, "invalid_request_error", NULL, "input",
                               "'input' holds more than %d tokens; at most %d per request",
                               HL_EMBEDDINGS_MAX_TOKENS, HL_EMBEDDINGS_MAX_TOKENS);
        r->start[i + 1] = (int)all.n;
    }
    r->ids = all.ids;
    r->n_tokens = (int)all.n;
    return rc;
}

int hl_embeddings_encode(hl_embeddings_request *r, const hl_tokenizer *tok, int max_ctx, hl_api_error *e) {
    if (r->texts && encode_texts(r, tok, e) != HL_OK) return HL_ERR_INVAL;
    const int n_vocab = hl_tokenizer_n_tokens(tok);
    for (int i = 0; i < r->n_inputs; i++) {
        const int n = r->start[i + 1] - r->start[i];
        if (n < 1)
            return hl_api_errorf(e, 400, "invalid_request_error", NULL, "input", "input %d has no tokens", i);
        if (n > max_ctx)
            return hl_api_errorf(e, 400, "invalid_request_error", "context_length_exceeded", "input",
                                 "input %d has %d tokens; this model's maximum context length is %d tokens", i,
                                 n, max_ctx);
        for (int t = r->start[i]; t < r->start[i + 1]; t++) {
            if (r->ids[t] >= n_vocab)
                return hl_api_errorf(e, 400, "invalid_request_error", NULL, "input",
                                     "input %d: token id %d is out of the vocabulary (%d tokens)", i, r->ids[t],
                                     n_vocab);
        }
    }
    return HL_OK;
}

// ---- response ----

void hl_embeddings_base64(const uint8_t *p, size_t n, hl_buf *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                           (i + 2 < n ? (uint32_t)p[i + 2] : 0);
        q[0] = abc[v >> 18 & 63];
        q[1] = abc[v >> 12 & 63];
        q[2] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? abc[v & 63] : '=';
        hl_buf_append(out, q, 4);
    }
}

// One vector: a JSON array of numbers (%.9g: every float32 reads back exactly) or a base64
// string of its little-endian float32 bytes.
static void vector_json(const float *v, int dim, bool base64, hl_buf *out) {
    if (!base64) {
        hl_buf_puts(out, "[");
        for (int d = 0; d < dim; d++) hl_buf_printf(out, d ? ",%.9g" : "%.9g", (double)v[d]);
        hl_buf_puts(out, "]");
        return;
    }
    uint8_t *bytes = hl_xmalloc((size_t)dim * 4);
    for (int d = 0; d < dim; d++) {
        uint32_t u;
        memcpy(&u, &v[d], 4);
        for (int b = 0; b < 4; b++) bytes[(size_t)d * 4 + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    hl_buf_puts(out, "\"");
    hl_embeddings_base64(bytes, (size_t)dim * 4, out);
    hl_buf_puts(out, "\"");
    free(bytes);
}

int hl_embeddings_response(const hl_embeddings_request *r, const float *vecs, int dim, const char *model,
                           hl_buf *out, hl_api_error *e) {
    for (size_t i = 0; i < (size_t)r->n_inputs * (size_t)dim; i++) {
        if (!isfinite(vecs[i]))
            return hl_api_errorf(e, 500, "server_error", NULL, NULL,
                                 "the embedding of input %zu is not finite", i / (size_t)dim);
    }
    hl_buf data = {0};
    hl_buf_puts(&data, "[");
    for (int i = 0; i < r->n_inputs; i++) {
        hl_buf_printf(&data, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
        vector_json(vecs + (size_t)i * (size_t)dim, dim, r->base64, &data);
        hl_buf_puts(&data, "}");
    }
    hl_buf_puts(&data, "]");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddRawToObject(root, "data", data.data);
    hl_buf_free(&data);
    cJSON_AddStringToObject(root, "model", model);
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", r->n_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", r->n_tokens);
    char *s = cJSON_PrintUnformatted(root);
    hl_buf_puts(out, s);
    cJSON_free(s);
    cJSON_Delete(root);
    return HL_OK;
}
