// generate: single-sequence prefill + decode loop (see generate.h).
#include "engine/generate.h"

#include <stdlib.h>

#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/quant.h"
#include "engine/stop.h"

struct hl_generator {
    const hl_model *model;  // borrowed
    hl_kv_cache *kv;        // owned: n_ctx tokens of blocks
    hl_llama *llama;        // owned
    hl_kv_seq seq;
    int32_t *tokens;        // (n_ctx) tokens whose K/V are in seq's blocks
    int n_tokens;
    int n_ctx, chunk;
    float *logits;          // (n_vocab) of the last token
    int32_t eog[HL_SAMPLER_MAX_EOG_IDS]; // the model's end-of-generation ids
    int n_eog;
};

hl_generate_params hl_generate_default_params(void) {
    hl_generate_params p = {.sampling = hl_sampler_default_params()};
    p.sampling.temperature = 0.0f;
    return p;
}

const char *hl_generate_finish_name(enum hl_generate_finish f) {
    switch (f) {
    case HL_GENERATE_EOG: return "eog";
    case HL_GENERATE_STOP_STRING: return "stop";
    case HL_GENERATE_LENGTH: return "length";
    case HL_GENERATE_CONTEXT: return "context";
    case HL_GENERATE_CANCELLED: return "cancelled";
    default: return "?";
    }
}

static void add_eog(hl_generator *g, int32_t id) {
    if (id < 0 || id >= g->model->cfg.n_vocab || g->n_eog == HL_SAMPLER_MAX_EOG_IDS) return;
    for (int i = 0; i < g->n_eog; i++) {
        if (g->eog[i] == id) return;
    }
    g->eog[g->n_eog++] = id;
}

hl_generator *hl_generator_create(const hl_model *model, int n_ctx, int prefill_chunk, hl_error *err) {
    return hl_generator_create_kv(model, n_ctx, prefill_chunk, HL_DTYPE_F16, err);
}

hl_generator *hl_generator_create_kv(const hl_model *model, int n_ctx, int prefill_chunk, int kv_type,
                                     hl_error *err) {
    const hl_model_config *c = &model->cfg;
    if (!model->tok || n_ctx < 2 || prefill_chunk < 1) {
        hl_errorf(err, HL_ERR_INVAL, "generator: needs a tokenizer, n_ctx >= 2 and a chunk >= 1");
        return NULL;
    }
    hl_generator *g = hl_xcalloc(1, sizeof(*g));
    g->model = model;
    g->n_ctx = n_ctx;
    g->chunk = prefill_chunk < n_ctx ? prefill_chunk : n_ctx;
    hl_kv_geom geom = {.n_blocks = (n_ctx + HL_KV_BLOCK - 1) / HL_KV_BLOCK, .n_kv_heads = c->n_kv_heads,
                       .head_dim = c->head_dim, .kv_type = kv_type};
    g->kv = hl_kv_cache_create(model->be, c->n_layers, &geom, err);
    if (g->kv) g->llama = hl_llama_create(model, g->kv, g->chunk, 1, 1, err);
    if (!g->llama) {
        hl_generator_free(g);
        return NULL;
    }
    g->tokens = hl_xmalloc(sizeof(int32_t) * (size_t)n_ctx);
    g->logits = hl_xmalloc(sizeof(float) * (size_t)c->n_vocab);
    for (int i = 0; i < c->n_eos_ids; i++) add_eog(g, c->eos_ids[i]);
    const int n_tok = hl_tokenizer_n_tokens(model->tok);
    for (int32_t id = 0; id < n_tok; id++) {
        if (hl_tokenizer_is_eog(model->tok, id)) add_eog(g, id);
    }
    return g;
}

void hl_generator_free(hl_generator *g) {
    if (!g) return;
    if (g->kv) hl_kv_cache_seq_release(g->kv, &g->seq);
    hl_llama_free(g->llama);
    hl_kv_cache_free(g->kv);
    free(g->tokens);
    free(g->logits);
    free(g);
}

const int32_t *hl_generator_tokens(const hl_generator *g, int *n) {
    *n = g->n_tokens;
    return g->tokens;
}

// Runs ids[0..n) after the cached tokens; keeps the last token's logits.
static int feed(hl_generator *g, const int32_t *ids, int n, hl_error *err) {
    for (int done = 0; done < n;) {
        const int nt = n - done < g->chunk ? n - done : g->chunk;
        int rc = hl_kv_cache_seq_reserve(g->kv, &g->seq, g->n_tokens + nt, err);
        hl_llama_seq s = {.tokens = ids + done, .n_tokens = nt, .n_past = g->n_tokens,
                          .blocks = g->seq.blocks, .n_blocks = g->seq.n_blocks,
                          .n_logits = done + nt == n ? 1 : 0};
        if (rc == HL_OK) rc = hl_llama_forward(g->llama, &s, 1, g->logits, err);
        if (rc != HL_OK) return rc;
        memcpy(g->tokens + g->n_tokens, ids + done, sizeof(int32_t) * (size_t)nt);
        g->n_tokens += nt;
        done += nt;
    }
    return HL_OK;
}

// ---- the loop ----

typedef struct run_state {
    hl_sampler *sampler;
    hl_stop_matcher *stop;
    hl_tokenizer_stream *stream;
    hl_generate_text_fn on_text;
    void *ctx;
    bool cancelled;
    double t0, t_first; // start of the call, first sampled token (hl_time_ms)
} run_state;

static void emit(run_state *st, const hl_stop_result *r) {
    if (r->n_bytes == 0 || st->cancelled || !st->on_text) return;
    if (!st->on_text(st->ctx, r->text, r->n_bytes)) st->cancelled = true;
}

// Streams token id's text; true when a stop string matched or the caller cancelled.
static bool push_text(run_state *st, int32_t id) {
    const char *text = NULL;
    size_t len = 0;
    hl_stop_result r;
    if (hl_tokenizer_stream_push(st->stream, id, &text, &len, NULL) != HL_OK) return false;
    hl_stop_matcher_feed(st->stop, text, len, &r);
    emit(st, &r);
    return r.stop >= 0 || st->cancelled;
}

// The end of generation: the detokenizer's held bytes, then the matcher's held suffix.
static void flush_text(run_state *st) {
    const char *text = NULL;
    size_t len = 0;
    hl_stop_result r;
    hl_tokenizer_stream_finish(st->stream, &text, &len);
    hl_stop_matcher_feed(st->stop, text, len, &r);
    emit(st, &r);
    if (r.stop >= 0) return;
    hl_stop_matcher_flush(st->stop, &r);
    emit(st, &r);
}

static int start(hl_generator *g, const int32_t *prompt, int n_prompt, const hl_generate_params *p,
                 run_state *st, hl_error *err) {
    const int n_vocab = g->model->cfg.n_vocab;
    if (!(st->sampler = hl_sampler_create(&p->sampling, n_vocab, err))) return err ? err->code : HL_ERR_INVAL;
    int32_t eog[HL_SAMPLER_MAX_EOG_IDS];
    int n_eog = g->n_eog;
    memcpy(eog, g->eog, sizeof(int32_t) * (size_t)n_eog);
    for (int i = 0; i < p->n_eog_ids && n_eog < HL_SAMPLER_MAX_EOG_IDS; i++)
        eog[n_eog++] = p->eog_ids[i];
    int rc = hl_sampler_set_eog_ids(st->sampler, eog, n_eog, err);
    if (rc == HL_OK) rc = hl_sampler_accept_prompt(st->sampler, prompt, n_prompt, err);
    if (rc != HL_OK) return rc;
    if (!(st->stop = hl_stop_matcher_create(p->stop, p->n_stop, err))) return err ? err->code : HL_ERR_INVAL;
    st->stream = hl_tokenizer_stream_create(g->model->tok, 0);
    return HL_OK;
}

// Drops cached tokens that the new prompt does not share (keeping at least one to prefill).
static int reuse_prefix(hl_generator *g, const int32_t *prompt, int n_prompt) {
    int n = 0;
    while (n < g->n_tokens && n < n_prompt - 1 && g->tokens[n] == prompt[n]) n++;
    g->n_tokens = n;
    hl_kv_cache_seq_truncate(g->kv, &g->seq, n);
    return n;
}

// Samples and decodes until something ends generation.
static int decode_loop(hl_generator *g, run_state *st, hl_generate_result *res, hl_error *err) {
    for (;;) {
        hl_sample_result sr;
        int rc = hl_sampler_sample(st->sampler, g->logits, &sr, err);
        if (rc == HL_OK) rc = hl_sampler_accept(st->sampler, sr.token, err);
        if (rc != HL_OK) return rc;
        if (res->n_generated++ == 0) st->t_first = hl_time_ms();
        enum hl_sampler_finish fin = hl_sampler_finish_reason(st->sampler, sr.token);
        if (fin == HL_SAMPLER_FINISH_STOP) return HL_OK; // res->finish is EOG already
        if (push_text(st, sr.token)) {
            res->finish = st->cancelled ? HL_GENERATE_CANCELLED : HL_GENERATE_STOP_STRING;
            return HL_OK;
        }
        if (fin == HL_SAMPLER_FINISH_LENGTH) {
            res->finish = HL_GENERATE_LENGTH;
            return HL_OK;
        }
        if (g->n_tokens + 1 > g->n_ctx) {
            res->finish = HL_GENERATE_CONTEXT;
            return HL_OK;
        }
        rc = feed(g, &sr.token, 1, err);
        if (rc != HL_OK) return rc;
    }
}

int hl_generator_run(hl_generator *g, const int32_t *prompt, int n_prompt, const hl_generate_params *p,
                     hl_generate_text_fn on_text, void *ctx, hl_generate_result *res_out, hl_error *err) {
    hl_generate_result res = {.finish = HL_GENERATE_EOG, .n_prompt = n_prompt};
    if (n_prompt < 1 || n_prompt >= g->n_ctx)
        return hl_errorf(err, HL_ERR_INVAL, "prompt of %d tokens does not fit a context of %d", n_prompt,
                         g->n_ctx);
    run_state st = {.on_text = on_text, .ctx = ctx};
    int rc = start(g, prompt, n_prompt, p, &st, err);
    if (rc == HL_OK) {
        st.t0 = hl_time_ms();
        res.n_cached = reuse_prefix(g, prompt, n_prompt);
        rc = feed(g, prompt + res.n_cached, n_prompt - res.n_cached, err);
    }
    if (rc == HL_OK) {
        rc = decode_loop(g, &st, &res, err);
        res.prompt_ms = st.t_first - st.t0;
        res.gen_ms = hl_time_ms() - st.t_first;
    }
    if (rc == HL_OK) flush_text(&st);
    if (rc != HL_OK) {
        g->n_tokens = 0;
        hl_kv_cache_seq_truncate(g->kv, &g->seq, 0);
    }
    hl_sampler_free(st.sampler);
    hl_stop_matcher_free(st.stop);
    hl_tokenizer_stream_free(st.stream);
    if (res_out) *res_out = res;
    return rc;
}
