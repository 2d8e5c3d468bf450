// llama: the llama-family forward pass over a mixed batch (see llama.h).
#include "engine/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/graphs.h"
#include "engine/quant.h"

#define MAX_GRAPHS 64       // step shapes remembered by the graph cache
#define MIN_GRAPH_BLOCKS 8  // narrowest block table of a graph step (128 tokens)

// Activation buffers (backend memory), each with room for max_tokens rows.
typedef struct arena {
    void *x;      // (T, dim) residual stream, less the last block's output (added by the next norm)
    void *xn;     // (T, dim) normed input of a block
    void *xb;     // (T, dim) output of a block (o or down projection)
    void *qkv;    // (T, (n_heads + 2 * n_kv_heads) * head_dim): q, k, v side by side in each row
    void *att;    // (T, n_heads * head_dim) attention output
    void *gu;     // (T, 2 * ffn_dim): gate, up side by side in each row
    void *hb;     // (T, ffn_dim) swiglu output
    void *xr;     // (max_logits, dim) residual rows whose logits are wanted
    void *dr;     // (max_logits, dim) the last block's output on those rows
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
    int n_real_rows;        // logit rows the caller asked for (n_rows less graph padding)
    hl_graphs *graphs;      // owned; NULL when the backend has no graphs or they are off
    char (*layer_names)[24]; // (n_layers) profiler range names, "layer 7"
    // Backend memory of the topk op (hl_llama_forward_topk); NULL when the backend has none.
    void *tk_vals;          // (max_logits, HL_TOPK_MAX) F32
    void *tk_ids;           // (max_logits, HL_TOPK_MAX) int32
    void *tk_lse;           // (max_logits) F32
};

static hl_tensor act(void *data, int64_t cols, int64_t rows) {
    return (hl_tensor){.type = HL_DTYPE_F32, .ne = {cols, rows}, .row_bytes = (size_t)cols * sizeof(float),
                       .data = data};
}

// Columns [col0, col0 + cols) of an activation matrix t: a view with t's row stride.
static hl_tensor cols_view(const hl_tensor *t, int64_t col0, int64_t cols) {
    return (hl_tensor){.type = HL_DTYPE_F32, .ne = {cols, t->ne[1]}, .row_bytes = t->row_bytes,
                       .data = (float *)t->data + col0};
}

static void arena_free(hl_backend *be, arena *a) {
    void *bufs[] = {a->x, a->xn, a->xb, a->qkv, a->att, a->gu, a->hb, a->xr, a->dr, a->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->release(be, bufs[i]);
    memset(a, 0, sizeof(*a));
}

#define N_ARENA 10

// Bytes of each arena buffer, in the order of arena_slots.
static void arena_sizes(const hl_model_config *c, int T, int R, size_t n_bytes[N_ARENA]) {
    const size_t f = sizeof(float), t = (size_t)T, r = (size_t)R;
    const size_t qd = (size_t)c->n_heads * (size_t)c->head_dim;
    const size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    const size_t dim = (size_t)c->dim, ffn = (size_t)c->ffn_dim;
    const size_t sizes[N_ARENA] = {t * dim * f,         t * dim * f,     t * dim * f, t * (qd + 2 * kvd) * f,
                                   t * qd * f,          t * 2 * ffn * f, t * ffn * f, r * dim * f,
                                   r * dim * f,         r * (size_t)c->n_vocab * f};
    memcpy(n_bytes, sizes, sizeof sizes);
}

size_t hl_llama_activation_bytes(const hl_model_config *c, int max_tokens, int max_logits) {
    size_t n_bytes[N_ARENA], sum = 0;
    arena_sizes(c, max_tokens, max_logits, n_bytes);
    for (int i = 0; i < N_ARENA; i++) sum += n_bytes[i];
    return sum;
}

static int arena_alloc(hl_backend *be, arena *a, const hl_model_config *c, int T, int R, hl_error *err) {
    void **slots[N_ARENA] = {&a->x, &a->xn, &a->xb, &a->qkv, &a->att, &a->gu, &a->hb, &a->xr, &a->dr, &a->logits};
    size_t n_bytes[N_ARENA];
    arena_sizes(c, T, R, n_bytes);
    for (int i = 0; i < N_ARENA; i++) {
        *slots[i] = be->ops->alloc(be, n_bytes[i]);
        if (!*slots[i]) return hl_errorf(err, HL_ERR_NOMEM, "llama: cannot allocate %zu bytes of activations",
                                         n_bytes[i]);
    }
    return HL_OK;
}

// The topk op's output buffers, when the backend has the op (about 2 KB per logit row).
static int topk_alloc(hl_llama *l, hl_error *err) {
    hl_backend *be = l->model->be;
    if (!be->ops->topk) return HL_OK;
    const size_t r = (size_t)l->max_logits, row = (size_t)HL_TOPK_MAX * 4;
    l->tk_vals = be->ops->alloc(be, r * row);
    l->tk_ids = be->ops->alloc(be, r * row);
    l->tk_lse = be->ops->alloc(be, r * sizeof(float));
    if (!l->tk_vals || !l->tk_ids || !l->tk_lse)
        return hl_errorf(err, HL_ERR_NOMEM, "llama: cannot allocate %zu bytes of top-k candidates", r * (2 * row + 4));
    return HL_OK;
}

static void topk_release(hl_llama *l) {
    hl_backend *be = l->model->be;
    be->ops->release(be, l->tk_vals);
    be->ops->release(be, l->tk_ids);
    be->ops->release(be, l->tk_lse);
    l->tk_vals = l->tk_ids = l->tk_lse = NULL;
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
    if (!hl_backend_attention_fits(model->be, c->head_dim, c->n_heads / c->n_kv_heads)) {
        hl_errorf(err, HL_ERR_UNSUPPORTED,
                  "llama: the %s backend's attention does not handle heads of %d values with %d query heads "
                  "per KV head", model->be->ops->name, c->head_dim, c->n_heads / c->n_kv_heads);
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
    if (topk_alloc(l, err) != HL_OK) {
        hl_llama_free(l);
        return NULL;
    }
    l->layer_names = hl_xmalloc(sizeof(*l->layer_names) * (size_t)c->n_layers);
    for (int il = 0; il < c->n_layers; il++)
        snprintf(l->layer_names[il], sizeof l->layer_names[il], "layer %d", il);
    hl_llama_set_graphs(l, true);
    return l;
}

void hl_llama_set_graphs(hl_llama *l, bool on) {
    if (!on) {
        hl_graphs_free(l->graphs);
        l->graphs = NULL;
        return;
    }
    if (!l->graphs) l->graphs = hl_graphs_create(l->model->be, MAX_GRAPHS);
}

bool hl_llama_graph_stats(const hl_llama *l, hl_graphs_stats *out) {
    memset(out, 0, sizeof(*out));
    if (!l->graphs) return false;
    hl_graphs_get_stats(l->graphs, out);
    return true;
}

void hl_llama_free(hl_llama *l) {
    if (!l) return;
    hl_graphs_free(l->graphs);
    arena_free(l->model->be, &l->a);
    topk_release(l);
    free(l->layer_names);
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

// Sequences a graph step is padded to: the next power of two, or n itself past the limits.
static int seq_bucket(const hl_llama *l, int n) {
    int b = 1;
    while (b < n) b *= 2;
    return b <= l->max_seqs && b <= l->max_logits && b <= l->max_tokens ? b : n;
}

// Block-table width of a graph step: a power of two (at least MIN_GRAPH_BLOCKS) within the pool.
static int blocks_bucket(int need, int n_pool) {
    int b = MIN_GRAPH_BLOCKS;
    while (b < need) b *= 2;
    return b < n_pool ? b : n_pool;
}

// A step a graph can replay: decodes only, every one wanting its logits.
static bool graph_step(const hl_llama *l, const hl_llama_seq *seqs, int n_seqs) {
    if (!l->graphs || n_seqs < 1) return false;
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i].n_tokens != 1 || seqs[i].n_logits != 1) return false;
    }
    return true;
}

static int blocks_needed(const hl_llama_seq *s) { return (s->n_past + s->n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK; }

// Padding sequences of a graph step: one token at position 0 whose K/V are not written (slot
// -1), reading block 0; its logit row is computed and never downloaded.
static void layout_padding(hl_llama *l, int first, int n_total, int max_blocks, int *t, int *r) {
    for (int i = first; i < n_total; i++) {
        l->seq_start[i] = *t;
        l->ctx_len[i] = 1;
        memset(l->block_table + (size_t)i * (size_t)max_blocks, 0, sizeof(int32_t) * (size_t)max_blocks);
        l->tokens[*t] = 0;
        l->pos[*t] = 0;
        l->slot[*t] = -1;
        l->rows[(*r)++] = *t;
        (*t)++;
    }
}

// Fills the host arrays and l->batch for seqs; HL_ERR_INVAL when they do not fit the limits.
// The block table is as wide as the longest sequence needs; pad (graph steps) rounds the
// sequences and the table width up to their buckets.
static int layout(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, bool pad, hl_error *err) {
    const int n_pool = hl_kv_cache_geom(l->kv)->n_blocks;
    int64_t n_tokens = 0, n_rows = 0;
    int max_need = 1;
    if (n_seqs < 1 || n_seqs > l->max_seqs) return hl_errorf(err, HL_ERR_INVAL, "llama: %d sequences", n_seqs);
    for (int i = 0; i < n_seqs; i++) {
        int rc = check_seq(l, &seqs[i], i, err);
        if (rc != HL_OK) return rc;
        n_tokens += seqs[i].n_tokens;
        n_rows += seqs[i].n_logits;
        if (blocks_needed(&seqs[i]) > max_need) max_need = blocks_needed(&seqs[i]);
    }
    if (n_tokens > l->max_tokens || n_rows > l->max_logits)
        return hl_errorf(err, HL_ERR_INVAL, "llama: step of %lld tokens and %lld logit rows (limits %d, %d)",
                         (long long)n_tokens, (long long)n_rows, l->max_tokens, l->max_logits);
    const int n_total = pad ? seq_bucket(l, n_seqs) : n_seqs;
    const int max_blocks = pad ? blocks_bucket(max_need, n_pool) : max_need;
    int t = 0, r = 0;
    for (int i = 0; i < n_seqs; i++) {
        const hl_llama_seq *s = &seqs[i];
        const int need = blocks_needed(s);
        int32_t *row = l->block_table + (size_t)i * (size_t)max_blocks;
        l->seq_start[i] = t;
        l->ctx_len[i] = s->n_past + s->n_tokens;
        memcpy(row, s->blocks, sizeof(int32_t) * (size_t)need);
        memset(row + need, 0, sizeof(int32_t) * (size_t)(max_blocks - need));
        for (int j = 0; j < s->n_tokens; j++, t++) {
            const int32_t p = s->n_past + j;
            l->tokens[t] = s->tokens[j];
            l->pos[t] = p;
            l->slot[t] = s->blocks[p / HL_KV_BLOCK] * HL_KV_BLOCK + p % HL_KV_BLOCK;
            if (j >= s->n_tokens - s->n_logits) l->rows[r++] = t;
        }
    }
    l->n_real_rows = r;
    layout_padding(l, n_seqs, n_total, max_blocks, &t, &r);
    l->seq_start[n_total] = t;
    l->n_rows = r;
    l->batch = (hl_batch){.n_tokens = t, .n_seqs = n_total, .pos = l->pos, .slot = l->slot,
                          .seq_start = l->seq_start, .ctx_len = l->ctx_len, .block_table = l->block_table,
                          .max_blocks = max_blocks};
    return HL_OK;
}

// ---- forward ----

// Queues every op of the step laid out in l->batch (nothing that waits: a graph captures
// exactly this). The logits of the l->n_rows wanted rows end in l->a.logits. Each block's
// output (xb) is added to the residual stream x by the norm that follows it (add_rmsnorm), so
// a fused layer is 9 ops; the last block's output is added only on the rows whose logits are
// wanted, so x ends the step without it (hl_llama_forward_hidden adds it).
static void queue_step(hl_llama *l) {
    const hl_model *m = l->model;
    const hl_model_config *c = &m->cfg;
    hl_backend *be = m->be;
    const hl_backend_ops *op = be->ops;
    const hl_kv_geom *geom = hl_kv_cache_geom(l->kv);
    const int T = l->batch.n_tokens, R = l->n_rows;
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, ffn = c->ffn_dim;
    const float scale = 1.0f / sqrtf((float)c->head_dim);

    hl_tensor x = act(l->a.x, c->dim, T), xn = act(l->a.xn, c->dim, T), xb = act(l->a.xb, c->dim, T);
    hl_tensor qkv = act(l->a.qkv, qd + 2 * kvd, T), att = act(l->a.att, qd, T);
    hl_tensor q = cols_view(&qkv, 0, qd), k = cols_view(&qkv, qd, kvd), v = cols_view(&qkv, qd + kvd, kvd);
    hl_tensor gu = act(l->a.gu, 2 * ffn, T), hb = act(l->a.hb, ffn, T);
    hl_tensor gate = cols_view(&gu, 0, ffn), up = cols_view(&gu, ffn, ffn);

    hl_backend_range_push(be, "step");
    op->embed(be, &x, &m->token_embd, l->tokens, T);
    for (int il = 0; il < c->n_layers; il++) {
        const hl_model_layer *w = &m->layers[il];
        const hl_kv_layer *kv = hl_kv_cache_layer(l->kv, il);
        hl_backend_range_push(be, l->layer_names[il]);

        // attention: x += xb (the previous block), xn = rmsnorm(x),
        // xb = wo · attn(rope(wq·xn), rope(wk·xn), wv·xn)
        op->add_rmsnorm(be, &xn, &x, il > 0 ? &xb : NULL, &w->attn_norm, c->rms_eps);
        if (w->wqkv.data) {
            op->matmul(be, &qkv, &w->wqkv, &xn);
        } else { // types differ (Q4_K_M): one matmul each, into the same columns
            op->matmul(be, &q, &w->wq, &xn);
            op->matmul(be, &k, &w->wk, &xn);
            op->matmul(be, &v, &w->wv, &xn);
        }
        op->rope_kv(be, &q, &k, &v, kv, geom, &l->batch, &m->rope);
        op->attention(be, &att, &q, kv, geom, &l->batch, c->n_heads, scale);
        op->matmul(be, &xb, &w->wo, &att);

        // feed-forward: x += xb, xn = rmsnorm(x), xb = w_down · (silu(w_gate·xn) * (w_up·xn))
        op->add_rmsnorm(be, &xn, &x, &xb, &w->ffn_norm, c->rms_eps);
        if (w->w_gate_up.data) {
            op->matmul(be, &gu, &w->w_gate_up, &xn);
        } else {
            op->matmul(be, &gate, &w->w_gate, &xn);
            op->matmul(be, &up, &w->w_up, &xn);
        }
        op->swiglu(be, &hb, &gate, &up);
        op->matmul(be, &xb, &w->w_down, &hb);
        hl_backend_range_pop(be);
    }
    if (R > 0) { // the last residual add and the final norm only for the rows that want logits
        hl_tensor xr = act(l->a.xr, c->dim, R), dr = act(l->a.dr, c->dim, R), xrn = act(l->a.xn, c->dim, R);
        hl_tensor out = act(l->a.logits, c->n_vocab, R);
        op->get_rows(be, &xr, &x, l->rows, R);
        op->get_rows(be, &dr, &xb, l->rows, R);
        op->add_rmsnorm(be, &xrn, &xr, &dr, &m->output_norm, c->rms_eps);
        op->matmul(be, &out, &m->output, &xrn);
    }
    hl_backend_range_pop(be);
}

// Lays the step out and queues it (through a graph where it can); the logits of the wanted
// rows end in l->a.logits, the caller's rows first (l->n_real_rows of them).
static int run_step(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, hl_error *err) {
    const bool graph = graph_step(l, seqs, n_seqs);
    int rc = layout(l, seqs, n_seqs, graph, err);
    if (rc != HL_OK) return rc;
    if (graph) hl_graphs_begin(l->graphs, l->batch.n_seqs, l->batch.max_blocks);
    queue_step(l);
    if (graph) {
        bool ran = true;
        rc = hl_graphs_end(l->graphs, &ran, err);
        if (rc != HL_OK) return rc;
        if (!ran) queue_step(l); // the capture failed: run the step directly
    }
    return HL_OK;
}

int hl_llama_forward(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, float *logits, hl_error *err) {
    int rc = run_step(l, seqs, n_seqs, err);
    if (rc != HL_OK) return rc;
    hl_backend *be = l->model->be;
    if (l->n_real_rows == 0) return be->ops->sync(be, err);
    const size_t n_bytes = (size_t)l->n_real_rows * (size_t)l->model->cfg.n_vocab * sizeof(float);
    rc = be->ops->download(be, logits, l->a.logits, n_bytes, err);
    if (rc != HL_OK) return rc;
    return be->ops->sync(be, err);
}

// ---- top-k candidates ----

// Downloads the logit rows r with full[r] set into logits, one copy per run of such rows.
static int download_full_rows(hl_llama *l, const bool *full, float *logits, hl_error *err) {
    hl_backend *be = l->model->be;
    const size_t row = (size_t)l->model->cfg.n_vocab * sizeof(float);
    for (int r = 0; full && r < l->n_real_rows;) {
        if (!full[r]) {
            r++;
            continue;
        }
        int end = r + 1;
        while (end < l->n_real_rows && full[end]) end++;
        int rc = be->ops->download(be, (uint8_t *)logits + (size_t)r * row, (uint8_t *)l->a.logits + (size_t)r * row,
                                   (size_t)(end - r) * row, err);
        if (rc != HL_OK) return rc;
        r = end;
    }
    return HL_OK;
}

// The topk op runs after the step (outside any captured graph) over the caller's rows only.
int hl_llama_forward_topk(hl_llama *l, const hl_llama_seq *seqs, int n_seqs, int k, const float *inv_temp,
                          float *vals, int32_t *ids, float *lse, const bool *full, float *logits, hl_error *err) {
    hl_backend *be = l->model->be;
    const int n_vocab = l->model->cfg.n_vocab;
    if (!be->ops->topk || !l->tk_vals)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "llama: backend %s has no topk op", be->ops->name);
    if (k < 1 || k > HL_TOPK_MAX || k > n_vocab)
        return hl_errorf(err, HL_ERR_INVAL, "llama: %d candidates per row (1 .. %d)", k,
                         HL_TOPK_MAX < n_vocab ? HL_TOPK_MAX : n_vocab);
    int rc = run_step(l, seqs, n_seqs, err);
    if (rc != HL_OK) return rc;
    const int R = l->n_real_rows;
    if (R == 0) return be->ops->sync(be, err);
    hl_tensor x = act(l->a.logits, n_vocab, R), tv = act(l->tk_vals, k, R), tl = act(l->tk_lse, 1, R);
    hl_tensor ti = act(l->tk_ids, k, R);
    ti.type = HL_DTYPE_I32;
    be->ops->topk(be, &tv, &ti, &tl, &x, inv_temp, k);
    const size_t cand_bytes = (size_t)R * (size_t)k * 4;
    rc = be->ops->download(be, vals, l->tk_vals, cand_bytes, err);
    if (rc == HL_OK) rc = be->ops->download(be, ids, l->tk_ids, cand_bytes, err);
    if (rc == HL_OK) rc = be->ops->download(be, lse, l->tk_lse, (size_t)R * sizeof(float), err);
    if (rc == HL_OK) rc = download_full_rows(l, full, logits, err);
    if (rc != HL_OK) return rc;
    return be->ops->sync(be, err);
}

int hl_llama_download_row(hl_llama *l, int row, float *out, hl_error *err) {
    if (row < 0 || row >= l->n_real_rows)
        return hl_errorf(err, HL_ERR_INVAL, "llama: logit row %d of a step with %d", row, l->n_real_rows);
    hl_backend *be = l->model->be;
    const size_t n_bytes = (size_t)l->model->cfg.n_vocab * sizeof(float);
    int rc = be->ops->download(be, out, (uint8_t *)l->a.logits + (size_t)row * n_bytes, n_bytes, err);
    if (rc != HL_OK) return rc;
    return be->ops->sync(be, err);
}

// ---- hidden states (embeddings) ----

// The layers run through hl_llama_forward with no logit rows, which leaves the residual stream
// of the step in l->a.x less the last block's output (l->a.xb); the last add and the final norm
// are applied here and the result downloaded.
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
    hl_tensor x = act(l->a.x, c->dim, T), xb = act(l->a.xb, c->dim, T), xn = act(l->a.xn, c->dim, T);
    be->ops->add_rmsnorm(be, &xn, &x, &xb, &m->output_norm, c->rms_eps);
    rc = be->ops->download(be, hidden, xn.data, (size_t)T * (size_t)c->dim * sizeof(float), err);
    if (rc != HL_OK) return rc;
    return be->ops->sync(be, err);
}
