// llama: the llama-family forward pass over a mixed batch (see llama.h).
#include "engine/llama.h"

#include <math.h>
#include <stdlib.h>

#include "engine/quant.h"

// Activation buffers (backend memory), each with room for max_tokens rows.
typedef struct arena {
    void *x;      // (T, dim) residual stream
    void *xb;     // (T, dim) normed input of a block / output of a projection
    void *q;      // (T, n_heads * head_dim)
    void *k;      // (T, n_kv_heads * head_dim)
    void *v;      // (T, n_kv_heads * head_dim)
    void *att;    // (T, n_heads * head_dim) attention output
    void *gate;   // (T, ffn_dim)
    void *up;     // (T, ffn_dim)
    void *hb;     // (T, ffn_dim) swiglu output
    void *xr;     // (max_logits, dim) rows whose logits are wanted
    void *logits; // (max_logits, n_vocab)
} arena;

struct hl_llama {
    const hl_model *model;  // borrowed
    hl_kv_cache *kv;        // borrowed
    int max_tokens, max_seqs, max_logits;
    arena a;
    // Host-side description of the current step (hl_batch points into these).
    int32_t *tokens;        // (max_tokens)
    int32_t *pos;           // (max_tokens)
    int32_t *slot;          // (max_tokens)
    int32_t *seq_start;     // (max_seqs + 1)
    int32_t *ctx_len;       // (max_seqs)
    int32_t *block_table;   // (max_seqs, n_pool_blocks)
    int32_t *rows;          // (max_logits) token rows whose logits are wanted
    hl_batch batch;
    int n_rows;
};

static hl_tensor act(void *data, int64_t cols, int64_t rows) {
    return (hl_tensor){.type = HL_DTYPE_F32, .ne = {cols, rows}, .row_bytes = (size_t)cols * sizeof(float),
                       .data = data};
}

static void arena_free(hl_backend *be, arena *a) {
    void *bufs[] = {a->x, a->xb, a->q, a->k, a->v, a->att, a->gate, a->up, a->hb, a->xr, a->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->release(be, bufs[i]);
    memset(a, 0, sizeof(*a));
}

static int arena_alloc(hl_backend *be, arena *a, const hl_model_config *c, int T, int R, hl_error *err) {
    const size_t f = sizeof(float), t = (size_t)T;
    const size_t qd = (size_t)c->n_heads * (size_t)c->head_dim;
    const size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    struct { void **p; size_t n_bytes; } bufs[] = {
        {&a->x, t * (size_t)c->dim * f},   {&a->xb, t * (size_t)c->dim * f},    {&a->q, t * qd * f},
        {&a->k, t * kvd * f},              {&a->v, t * kvd * f},                {&a->att, t * qd * f},
        {&a->gate, t * (size_t)c->ffn_dim * f}, {&a->up, t * (size_t)c->ffn_dim * f},
        {&a->hb, t * (size_t)c->ffn_dim * f},   {&a->xr, (size_t)R * (size_t)c->dim * f},
        {&a->logits, (size_t)R * (size_t)c->n_vocab * f},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = be->ops->alloc(be, bufs[i].n_bytes);
        if (!*bufs[i].p) return hl_errorf(err, HL_ERR_NOMEM, "llama: cannot allocate %zu bytes of activations",
                                          bufs[i].n_bytes);
    }
    return HL_OK;
}

hl_llama *hl_llama_create(const hl_model *model, hl_kv_cache *kv, int max_tokens, int max_seqs, int max_logits,
                          hl_error *err) {
    const hl_model_config *c = &model->cfg;
    const hl_kv_geom *g = hl_kv_cache_geom(kv);
    if (max_tokens < 1 || max_tokens > (1 << 20) || max_seqs < 1 || max_seqs > max_tokens || max_logits < 1 ||
        max_logits > max_tokens) {
        hl_errorf(err, HL_ERR_INVAL, "llama: bad limits (%d tokens, %d sequences, %d logit rows)", max_tokens,
                  max_seqs, max_logits);
        return NULL;
    }
    if (g->n_kv_heads != c->n_kv_heads || g->head_dim != c->head_dim) {
        hl_errorf(err, HL_ERR_INVAL, "llama: KV cache of %d heads x %d does not fit the model's %d x %d",
                  g->n_kv_heads, g->head_dim, c->n_kv_heads, c->head_dim);
        return NULL;
    }
    hl_llama *l = hl_xcalloc(1, sizeof(*l));
    l->model = model;
    l->kv = kv;
    l->max_tokens = max_tokens;
    l->max_seqs = max_seqs;
    l->max_logits = max_logits;
    l->tokens = hl_xmalloc(sizeof(int32_t) * (size_t)max_tokens);
    l->pos = hl_xmalloc(sizeof(int32_t) * (size_t)max_tokens);
    l->slot = hl_xmalloc(sizeof(int32_t) * (size_t)max_tokens);
    l->seq_start = hl_xmalloc(sizeof(int32_t) * (size_t)(max_seqs + 1));
    l->ctx_len = hl_xmalloc(sizeof(int32_t) * (size_t)max_seqs);
    l->block_table = hl_xmalloc(sizeof(int32_t) * (size_t)max_seqs * (size_t)g->n_blocks);
    l->rows = hl_xmalloc(sizeof(int32_t) * (size_t)max_logits);
    if (arena_alloc(model->be, &l->a, c, max_tokens, max_logits, err) != HL_OK) {
        hl_llama_free(l);
        return NULL;
    }
    return l;
}

void hl_llama_free(hl_llama *l) {
    if (!l) return;
    arena_free(l->model->be, &l->a);
    free(l->tokens);
    free(l->pos);
    free(l->slot);
    free(l->seq_start);
    free(l->ctx_len);
    free(l->block_table);
    free(l->rows);
    free(l);
}

// ---- batch layout ----

static int check_seq(const hl_llama *l, const hl_llama_seq *s, int i, hl_error *err) {
    const int n_pool = hl_kv_cache_geom(l->kv)->n_blocks;
    if (s->n_tokens < 1 || s->n_past < 0 || s->n_logits < 0 || s->n_logits > s->n_tokens || !s->tokens)
        return hl_errorf(err, HL_ERR_INVAL, "llama: sequence %d: %d tokens after %d, %d logits", i, s->n_tokens,
                         s->n_past, s->n_logits);
    const int64_t need = ((int64_t)s->n_past + s->n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    if (s->n_blocks < need || s->n_blocks > n_pool || !s->blocks)
        return hl_errorf(err, HL_ERR_INVAL, "llama: sequence %d: %d blocks for %d positions", i, s->n_blocks,
                         s->n_past + s->n_tokens);
    for (int b = 0; b < s->n_blocks; b++) {
        if (s->blocks[b] < 0 || s->blocks[b] >= n_pool)
            return hl_errorf(err, HL_ERR_INVAL, "llama: sequence %d: block id %d outside the pool", i,
                             s->blocks[b]);
    }
    for (int t = 0; t < s->n_tokens; t++) {
        if (s->tokens[t] < 0 || s->tokens[t] >= l->model->cfg.n_vocab)
            return hl_errorf(err, HL_ERR_INVAL, "llama: token id %d outside the vocabulary", s->tokens[t]);
    }
    return HL_OK;
}

// Fills the host arrays and l->batch for seqs; HL_ERR_INVAL when they do not fit the limits.
static int layout(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, hl_error *err) {
    const int n_pool = hl_kv_cache_geom(l->kv)->n_blocks;
    int64_t n_tokens = 0, n_rows = 0;
    if (n_seqs < 1 || n_seqs > l->max_seqs) return hl_errorf(err, HL_ERR_INVAL, "llama: %d sequences", n_seqs);
    for (int i = 0; i < n_seqs; i++) {
        int rc = check_seq(l, &seqs[i], i, err);
        if (rc != HL_OK) return rc;
        n_tokens += seqs[i].n_tokens;
        n_rows += seqs[i].n_logits;
    }
    if (n_tokens > l->max_tokens || n_rows > l->max_logits)
        return hl_errorf(err, HL_ERR_INVAL, "llama: step of %lld tokens and %lld logit rows (limits %d, %d)",
                         (long long)n_tokens, (long long)n_rows, l->max_tokens, l->max_logits);
    int t = 0, r = 0;
    for (int i = 0; i < n_seqs; i++) {
        const hl_llama_seq *s = &seqs[i];
        l->seq_start[i] = t;
        l->ctx_len[i] = s->n_past + s->n_tokens;
        memcpy(l->block_table + (size_t)i * (size_t)n_pool, s->blocks,
               sizeof(int32_t) * (size_t)s->n_blocks);
        for (int j = 0; j < s->n_tokens; j++, t++) {
            const int32_t p = s->n_past + j;
            l->tokens[t] = s->tokens[j];
            l->pos[t] = p;
            l->slot[t] = s->blocks[p / HL_KV_BLOCK] * HL_KV_BLOCK + p % HL_KV_BLOCK;
            if (j >= s->n_tokens - s->n_logits) l->rows[r++] = t;
        }
    }
    l->seq_start[n_seqs] = t;
    l->n_rows = r;
    l->batch = (hl_batch){.n_tokens = t, .n_seqs = n_seqs, .pos = l->pos, .slot = l->slot,
                          .seq_start = l->seq_start, .ctx_len = l->ctx_len, .block_table = l->block_table,
                          .max_blocks = n_pool};
    return HL_OK;
}

// ---- forward ----

int hl_llama_forward(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, float *logits, hl_error *err) {
    int rc = layout(l, seqs, n_seqs, err);
    if (rc != HL_OK) return rc;
    const hl_model *m = l->model;
    const hl_model_config *c = &m->cfg;
    hl_backend *be = m->be;
    const hl_backend_ops *op = be->ops;
    const hl_kv_geom *geom = hl_kv_cache_geom(l->kv);
    const int T = l->batch.n_tokens, R = l->n_rows;
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const float scale = 1.0f / sqrtf((float)c->head_dim);

    hl_tensor x = act(l->a.x, c->dim, T);          // residual stream
    hl_tensor xb = act(l->a.xb, c->dim, T);        // normed input / projection output
    hl_tensor q = act(l->a.q, qd, T), att = act(l->a.att, qd, T);
    hl_tensor k = act(l->a.k, kvd, T), v = act(l->a.v, kvd, T);
    hl_tensor gate = act(l->a.gate, c->ffn_dim, T), up = act(l->a.up, c->ffn_dim, T);
    hl_tensor hb = act(l->a.hb, c->ffn_dim, T);

    op->embed(be, &x, &m->token_embd, l->tokens, T);
    for (int il = 0; il < c->n_layers; il++) {
        const hl_model_layer *w = &m->layers[il];
        const hl_kv_layer *kv = hl_kv_cache_layer(l->kv, il);

        // attention: x += wo · attn(rope(wq·xb), rope(wk·xb), wv·xb), xb = rmsnorm(x)
        op->rmsnorm(be, &xb, &x, &w->attn_norm, c->rms_eps);
        op->matmul(be, &q, &w->wq, &xb);
        op->matmul(be, &k, &w->wk, &xb);
        op->matmul(be, &v, &w->wv, &xb);
        op->rope_kv(be, &q, &k, &v, kv, geom, &l->batch, &m->rope);
        op->attention(be, &att, &q, kv, geom, &l->batch, c->n_heads, scale);
        op->matmul(be, &xb, &w->wo, &att);
        op->add(be, &x, &x, &xb);

        // feed-forward: x += w_down · (silu(w_gate·xb) * (w_up·xb)), xb = rmsnorm(x)
        op->rmsnorm(be, &xb, &x, &w->ffn_norm, c->rms_eps);
        op->matmul(be, &gate, &w->w_gate, &xb);
        op->matmul(be, &up, &w->w_up, &xb);
        op->swiglu(be, &hb, &gate, &up);
        op->matmul(be, &xb, &w->w_down, &hb);
        op->add(be, &x, &x, &xb);
    }
    if (R == 0) return op->sync(be, err);

    // logits only for the rows that want them
    hl_tensor xr = act(l->a.xr, c->dim, R), out = act(l->a.logits, c->n_vocab, R);
    op->rmsnorm(be, &xb, &x, &m->output_norm, c->rms_eps);
    op->get_rows(be, &xr, &xb, l->rows, R);
    op->matmul(be, &out, &m->output, &xr);
    rc = op->download(be, logits, out.data, (size_t)R * (size_t)c->n_vocab * sizeof(float), err);
    if (rc != HL_OK) return rc;
    return op->sync(be, err);
}

// ---- hidden states (embeddings) ----

// The layers run through hl_llama_forward with no logit rows, which leaves the residual stream
// of the step in l->a.x; the final norm is then applied here and downloaded.
int hl_llama_forward_hidden(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, float *hidden, hl_error *err) {
    int T = 0; // the real tokens: they come first in the batch even if a step were padded
    for (int i = 0; i < n_seqs && seqs; i++) {
        if (seqs[i].n_logits != 0)
            return hl_errorf(err, HL_ERR_INVAL, "llama: sequence %d asks for %d logit rows in a hidden-state step",
                             i, seqs[i].n_logits);
        T += seqs[i].n_tokens;
    }
    int rc = hl_llama_forward(l, seqs, n_seqs, NULL, err);
    if (rc != HL_OK) return rc;
    const hl_model *m = l->model;
    const hl_model_config *c = &m->cfg;
    hl_backend *be = m->be;
    hl_tensor x = act(l->a.x, c->dim, T), xb = act(l->a.xb, c->dim, T);
    be->ops->rmsnorm(be, &xb, &x, &m->output_norm, c->rms_eps);
    rc = be->ops->download(be, hidden, xb.data, (size_t)T * (size_t)c->dim * sizeof(float), err);
    if (rc != HL_OK) return rc;
    return be->ops->sync(be, err);
}
