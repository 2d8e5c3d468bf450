// libFuzzer harness for server request parsing: arbitrary bytes as the body of
// /v1/chat/completions, /v1/completions and /v1/messages (the first byte picks the endpoint).
// Checks: parsing never crashes or leaks; an accepted request satisfies the documented limits
// (1..max_messages messages with non-NULL role and content, n in [1, max_n], max_tokens -1 or in
// [1, max_tokens], stop strings 1..HL_STOP_MAX_BYTES bytes, valid sampler ranges); a rejected one
// carries status 400 and a message; every error body is valid JSON.
// Build and run: sh tests/fuzz/build.sh (FUZZ_SECONDS=N to fuzz).
#include <stdio.h>
#include <stdlib.h>

#include "server/anthropic.h"
#include "server/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(const hl_gen_request *r, const hl_api_limits *lim) {
    HL_ASSERT(r->n >= 1 && r->n <= lim->max_n);
    HL_ASSERT(r->max_tokens == -1 || (r->max_tokens >= 1 && r->max_tokens <= lim->max_tokens));
    HL_ASSERT(r->n_stop >= 0 && r->n_stop <= HL_STOP_MAX_STRINGS);
    for (int i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        HL_ASSERT(n >= 1 && n <= HL_STOP_MAX_BYTES);
    }
    if (r->kind != HL_API_COMPLETION) {
        HL_ASSERT(r->n_msgs >= 1 && r->n_msgs <= lim->max_messages + 1);
        for (int i = 0; i < r->n_msgs; i++) HL_ASSERT(r->msgs[i].role && r->msgs[i].content);
    } else {
        HL_ASSERT((r->prompt != NULL) != (r->prompt_ids != NULL));
    }
    HL_ASSERT(r->sampling.temperature >= 0 && r->sampling.temperature <= HL_SAMPLER_MAX_TEMPERATURE);
    HL_ASSERT(r->sampling.top_p > 0 && r->sampling.top_p <= 1);
    HL_ASSERT(r->top_logprobs >= 0 && r->top_logprobs <= HL_SAMPLER_MAX_LOGPROBS);
    HL_ASSERT(r->sampling.n_logit_bias >= 0 && r->sampling.n_logit_bias <= HL_SAMPLER_MAX_LOGIT_BIAS);
}

static void check_error_json(const hl_api_error *e, bool anthropic) {
    HL_ASSERT(e->status == 400 && e->message[0]);
    hl_buf b = {0};
    if (anthropic) hl_anthropic_error_json(e, &b);
    else hl_openai_error_json(e, &b);
    cJSON *j = cJSON_Parse(b.data);
    HL_ASSERT(j != NULL);
    cJSON_Delete(j);
    hl_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 3;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    hl_api_limits lim = hl_api_default_limits();
    lim.max_messages = 64;
    lim.max_tokens = 4096;
    cJSON *root = NULL;
    hl_api_error e = {0};
    if (hl_openai_parse_json(body, len, lim.max_depth, &root, &e) != HL_OK) {
        HL_ASSERT(root == NULL);
        check_error_json(&e, which == 2);
        return 0;
    }
    hl_gen_request r;
    int rc = which == 0   ? hl_openai_parse_chat(root, &lim, &r, &e)
             : which == 1 ? hl_openai_parse_completion(root, &lim, &r, &e)
                          : hl_anthropic_parse(root, &lim, &r, &e);
    if (rc == HL_OK) check_accepted(&r, &lim);
    else check_error_json(&e, which == 2);
    hl_gen_request_free(&r);
    cJSON_Delete(root);
    return 0;
}
