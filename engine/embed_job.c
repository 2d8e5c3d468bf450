// embed_job: checking, forward passes and pooling of embedding jobs (see embed_job.h). Also the
// embedding helpers of engine.h that need no engine: hl_embed_default_params and
// hl_embed_l2_normalize.
#include "engine/embed_job.h"

#include <math.h>
#include <stdlib.h>

hl_embed_params hl_embed_default_params(void) {
    return (hl_embed_params){.pooling = HL_POOLING_MEAN, .normalize = true};
}

void hl_embed_l2_normalize(float *v, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)v[i] * v[i];
    if (!(ss > 0)) return;
    const double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < n; i++) v[i] = (float)(v[i] * inv);
}

// ---- building (any thread) ----

static int check_inputs(const hl_embed_job_ctx *c, const int32_t *tokens, const int *start, int n_inputs,
                        const hl_embed_params *p, hl_error *err) {
    if (!tokens || !start || n_inputs < 1) return hl_errorf(err, HL_ERR_INVAL, "no input to embed");
    if (p->pooling != HL_POOLING_MEAN && p->pooling != HL_POOLING_LAST)
        return hl_errorf(err, HL_ERR_INVAL, "unknown pooling %d", (int)p->pooling);
    if (start[0] < 0) return hl_errorf(err, HL_ERR_INVAL, "input offsets must start at >= 0");
    for (int i = 0; i < n_inputs; i++) {
        const int64_t n = (int64_t)start[i + 1] - start[i];
        if (n < 1) return hl_errorf(err, HL_ERR_INVAL, "input %d is empty", i);
        if (n > c->max_ctx)
            return hl_errorf(err, HL_ERR_INVAL, "input %d has %lld tokens; the context holds %d", i, (long long)n,
                             c->max_ctx);
        for (int t = start[i]; t < start[i + 1]; t++) {
            if (tokens[t] < 0 || tokens[t] >= c->n_vocab)
                return hl_errorf(err, HL_ERR_INVAL, "input %d: token id %d is outside the vocabulary of %d", i,
                                 tokens[t], c->n_vocab);
        }
    }
    return HL_OK;
}

int hl_embed_job_init(hl_embed_job *j, const hl_embed_job_ctx *c, const int32_t *tokens, const int *start,
                      int n_inputs, const hl_embed_params *p, hl_error *err) {
    memset(j, 0, sizeof(*j));
    int rc = check_inputs(c, tokens, start, n_inputs, p, err);
    if (rc != HL_OK) return rc;
    const size_t n_tokens = (size_t)(start[n_inputs] - start[0]);
    j->p = *p;
    j->n_inputs = n_inputs;
    j->out = malloc((size_t)n_inputs * (size_t)c->dim * sizeof(float));
    j->tokens = malloc(n_tokens * sizeof(int32_t));
    j->start = malloc((size_t)(n_inputs + 1) * sizeof(int));
    if (!j->out || !j->tokens || !j->start) {
        hl_embed_job_deinit(j);
        return hl_errorf(err, HL_ERR_NOMEM, "cannot allocate an embedding job of %d inputs", n_inputs);
    }
    memcpy(j->tokens, tokens + start[0], n_tokens * sizeof(int32_t));
    for (int i = 0; i <= n_inputs; i++) j->start[i] = start[i] - start[0];
    return HL_OK;
}

void hl_embed_job_deinit(hl_embed_job *j) {
    if (!j) return;
    free(j->tokens);
    free(j->start);
    free(j->out);
    memset(j, 0, sizeof(*j));
}

// ---- pooling ----

static int input_len(const hl_embed_job *j, int i) { return j->start[i + 1] - j->start[i]; }

static int blocks_for(int n_tokens) { return (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK; }

// Adds rows (n rows of dim floats) to sum, in row order.
static void sum_rows(double *sum, const float *rows, int n, int dim) {
    for (int r = 0; r < n; r++) {
        const float *row = rows + (size_t)r * (size_t)dim;
        for (int d = 0; d < dim; d++) sum[d] += row[d];
    }
}

// Writes input i's vector: the mean (sum / its length) or its last row, then normalized if asked.
static void store(const hl_embed_job_ctx *c, hl_embed_job *j, int i, const double *sum, const float *last_row) {
    const int dim = c->dim, n = input_len(j, i);
    float *v = j->out + (size_t)i * (size_t)dim;
    if (j->p.pooling == HL_POOLING_LAST) {
        memcpy(v, last_row, sizeof(float) * (size_t)dim);
    } else {
        for (int d = 0; d < dim; d++) v[d] = (float)(sum[d] / n);
    }
    if (j->p.normalize) hl_embed_l2_normalize(v, dim);
}

// ---- forward passes (engine thread) ----

// How many whole inputs of j, from j->next on, fit one forward pass (budget, sequences, free
// blocks); *n_tokens gets their tokens.
static int count_packed(const hl_embed_job_ctx *c, const hl_embed_job *j, int *n_tokens) {
    const int n_free = hl_kv_cache_n_free(c->kv);
    int k = 0, n_blocks = 0;
    *n_tokens = 0;
    while (j->next + k < j->n_inputs && k < c->max_seqs) {
        const int n = input_len(j, j->next + k);
        if (*n_tokens + n > c->max_batched_tokens || n_blocks + blocks_for(n) > n_free) break;
        *n_tokens += n;
        n_blocks += blocks_for(n);
        k++;
    }
    return k;
}

// Pools the k inputs of the last packed pass (c->hidden, input after input) into j->out.
static void pool_packed(hl_embed_job_ctx *c, hl_embed_job *j, int k) {
    const int dim = c->dim;
    const float *rows = c->hidden;
    for (int i = 0; i < k; i++) {
        const int n = input_len(j, j->next + i);
        memset(c->pool_sum, 0, sizeof(double) * (size_t)dim);
        sum_rows(c->pool_sum, rows, n, dim);
        store(c, j, j->next + i, c->pool_sum, rows + (size_t)(n - 1) * (size_t)dim);
        rows += (size_t)n * (size_t)dim;
    }
}

// Runs as many whole inputs of j as fit one forward pass. HL_ERR_BUSY when not even the next
// input has enough free blocks now.
static int run_packed(hl_embed_job_ctx *c, hl_embed_job *j, uint64_t *n_run, hl_error *err) {
    int n_tokens = 0;
    const int k = count_packed(c, j, &n_tokens);
    if (k == 0) return hl_errorf(err, HL_ERR_BUSY, "too few free KV blocks");
    int rc = HL_OK;
    for (int i = 0; i < k && rc == HL_OK; i++) {
        const int in = j->next + i;
        rc = hl_kv_cache_seq_reserve(c->kv, &c->kv_seqs[i], input_len(j, in), err);
        c->lseqs[i] = (hl_llama_seq){.tokens = j->tokens + j->start[in], .n_tokens = input_len(j, in),
                                     .blocks = c->kv_seqs[i].blocks, .n_blocks = c->kv_seqs[i].n_blocks};
    }
    if (rc == HL_OK) rc = hl_llama_forward_hidden(c->llama, c->lseqs, k, c->hidden, err);
    for (int i = 0; i < k; i++) hl_kv_cache_seq_release(c->kv, &c->kv_seqs[i]);
    if (rc != HL_OK) return rc;
    pool_packed(c, j, k);
    j->next += k;
    *n_run += (uint64_t)n_tokens;
    return HL_OK;
}

// Runs j's next input, longer than one pass's budget, in back-to-back chunks on blocks held only
// meanwhile. HL_ERR_BUSY when too few blocks are free.
static int run_long(hl_embed_job_ctx *c, hl_embed_job *j, uint64_t *n_run, hl_error *err) {
    const int dim = c->dim, in = j->next, n = input_len(j, in), budget = c->max_batched_tokens;
    if (blocks_for(n) > hl_kv_cache_n_free(c->kv)) return hl_errorf(err, HL_ERR_BUSY, "too few free KV blocks");
    hl_kv_seq *seq = &c->kv_seqs[0];
    int rc = hl_kv_cache_seq_reserve(c->kv, seq, n, err), nt = 0;
    memset(c->pool_sum, 0, sizeof(double) * (size_t)dim);
    for (int p = 0; p < n && rc == HL_OK; p += nt) {
        nt = n - p < budget ? n - p : budget;
        const hl_llama_seq s = {.tokens = j->tokens + j->start[in] + p, .n_tokens = nt, .n_past = p,
                                .blocks = seq->blocks, .n_blocks = seq->n_blocks};
        rc = hl_llama_forward_hidden(c->llama, &s, 1, c->hidden, err);
        if (rc == HL_OK) sum_rows(c->pool_sum, c->hidden, nt, dim);
    }
    hl_kv_cache_seq_release(c->kv, seq);
    if (rc != HL_OK) return rc;
    store(c, j, in, c->pool_sum, c->hidden + (size_t)(nt - 1) * (size_t)dim); // last chunk's last row
    j->next++;
    *n_run += (uint64_t)n;
    return HL_OK;
}

// Scratch of the runs, allocated for the first one. HL_ERR_NOMEM when it cannot be.
static int alloc_scratch(hl_embed_job_ctx *c, hl_error *err) {
    if (c->hidden) return HL_OK;
    const size_t dim = (size_t)c->dim;
    c->hidden = malloc(sizeof(float) * (size_t)c->max_batched_tokens * dim);
    if (!c->hidden) return hl_errorf(err, HL_ERR_NOMEM, "cannot allocate the hidden-state buffer");
    c->pool_sum = hl_xmalloc(sizeof(double) * dim);
    c->kv_seqs = hl_xcalloc((size_t)c->max_seqs, sizeof(hl_kv_seq));
    c->lseqs = hl_xcalloc((size_t)c->max_seqs, sizeof(hl_llama_seq));
    return HL_OK;
}

int hl_embed_job_run(hl_embed_job_ctx *c, hl_embed_job *j, uint64_t *n_tokens, hl_error *err) {
    HL_ASSERT(j->next < j->n_inputs);
    const int rc = alloc_scratch(c, err);
    if (rc != HL_OK) return rc;
    if (input_len(j, j->next) > c->max_batched_tokens) return run_long(c, j, n_tokens, err);
    return run_packed(c, j, n_tokens, err);
}

void hl_embed_job_ctx_deinit(hl_embed_job_ctx *c) {
    if (!c) return;
    free(c->hidden);
    free(c->pool_sum);
    free(c->kv_seqs);
    free(c->lseqs);
    c->hidden = NULL;
    c->pool_sum = NULL;
    c->kv_seqs = NULL;
    c->lseqs = NULL;
}
