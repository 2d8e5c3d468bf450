// model: load a llama-family model from GGUF, safetensors or a synthetic name (see model.h).
#include "engine/model.h"

#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/quantize.h"
#include "engine/safetensors.h"
#include "engine/st_import.h"
#include "engine/synth.h"

#define SYNTH_PREFIX "synthetic:"

enum src_kind { SRC_GGUF, SRC_ST, SRC_SYNTH };

// A heap buffer reused for every fused weight of a load (grown to the largest), so stacking
// parts does not leave one freed buffer per weight in the heap: peak memory stays flat.
typedef struct fuse_buf {
    uint8_t *p; // owned
    size_t cap;
} fuse_buf;

// Where weights come from during a load; closed when the load ends.
typedef struct loader {
    enum src_kind kind;
    hl_gguf *g;
    hl_safetensors *st;
    hl_synth_model *syn;
    uint64_t seed;               // synthetic weights
    bool no_fuse;                // hl_model_params.no_fuse
    fuse_buf *tmp;               // borrowed: the load's fused-weight buffer
    const hl_model_config *cfg;
} loader;

// One tensor's bytes in GGUF layout (type, rows of ne[0]).
typedef struct src_tensor {
    int type;
    int64_t ne[2];
    const void *data; // borrowed from the source, or == owned
    void *owned;      // heap copy (permuted, generated or aligned), or NULL
    size_t n_bytes;
} src_tensor;

hl_model_params hl_model_default_params(void) { return (hl_model_params){0}; }

// ---- tensor sources ----

static int get_gguf(const loader *ld, const char *name, src_tensor *s, hl_error *err) {
    const hl_gguf_tensor *t = hl_gguf_find_tensor(ld->g, name);
    if (!t) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", name);
    *s = (src_tensor){.type = t->type, .ne = {t->ne[0], t->ne[1]}, .data = t->data, .n_bytes = t->n_bytes};
    return HL_OK;
}

// safetensors data may be unaligned and q/k need their rows permuted: always copy.
static int get_st(const loader *ld, const char *name, src_tensor *s, hl_error *err) {
    char hf[128];
    int rc = hl_model_config_gguf_to_hf_name(name, hf, sizeof hf, err);
    if (rc != HL_OK) return rc;
    const hl_safetensors_tensor *t = hl_safetensors_find_tensor(ld->st, hf);
    if (!t) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", hf);
    if (t->dtype != HL_DTYPE_F32 && t->dtype != HL_DTYPE_F16 && t->dtype != HL_DTYPE_BF16)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor %s: dtype %s (F32, F16 or BF16 only)", hf,
                         hl_safetensors_dtype_name(t->dtype));
    *s = (src_tensor){.type = t->dtype, .ne = {t->ne[0], t->n_dims == 2 ? t->ne[1] : 1},
                      .n_bytes = t->n_bytes};
    s->owned = malloc(t->n_bytes ? t->n_bytes : 1);
    if (!s->owned) return hl_errorf(err, HL_ERR_NOMEM, "tensor %s: %zu bytes", hf, t->n_bytes);
    const int n_heads = hl_st_import_perm_heads(ld->cfg, name);
    const size_t rb = t->n_bytes / (size_t)s->ne[1];
    for (int64_t r = 0; r < s->ne[1]; r++) {
        const int64_t from = hl_st_import_source_row(r, s->ne[1], n_heads);
        memcpy((uint8_t *)s->owned + (size_t)r * rb, (const uint8_t *)t->data + (size_t)from * rb, rb);
    }
    s->data = s->owned;
    return HL_OK;
}

static int get_synth(const loader *ld, const char *name, src_tensor *s, hl_error *err) {
    int i = hl_synth_model_find(ld->syn, name);
    if (i < 0) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", name);
    hl_synth_tensor_info info = hl_synth_model_tensor(ld->syn, i);
    *s = (src_tensor){.type = info.type, .ne = {info.ne[0], info.ne[1]}, .n_bytes = info.n_bytes};
    s->owned = malloc(info.n_bytes);
    if (!s->owned) return hl_errorf(err, HL_ERR_NOMEM, "tensor %s: %zu bytes", name, info.n_bytes);
    s->data = s->owned;
    return hl_synth_model_fill(ld->syn, i, s->owned, info.n_bytes, err);
}

static int src_get(const loader *ld, const char *name, src_tensor *s, hl_error *err) {
    memset(s, 0, sizeof(*s));
    switch (ld->kind) {
    case SRC_GGUF: return get_gguf(ld, name, s, err);
    case SRC_ST: return get_st(ld, name, s, err);
    default: return get_synth(ld, name, s, err);
    }
}

static bool lookup_synth(void *ctx, const char *name, hl_model_tensor_info *out) {
    const hl_synth_model *syn = ctx;
    int i = hl_synth_model_find(syn, name);
    if (i < 0) return false;
    hl_synth_tensor_info info = hl_synth_model_tensor(syn, i);
    memset(out, 0, sizeof(*out));
    out->dtype = info.type;
    out->n_dims = info.n_dims;
    for (int d = 0; d < HL_SAFETENSORS_MAX_DIMS; d++) out->ne[d] = d < 2 ? info.ne[d] : 1;
    return true;
}

// ---- upload ----

// Reads tensor `name` as floats into a new heap array of ne[0] * ne[1] values.
static float *read_f32(const loader *ld, const char *name, int64_t *n_out, hl_error *err) {
    src_tensor s;
    float *f = NULL;
    if (src_get(ld, name, &s, err) == HL_OK) {
        const int64_t n = s.ne[0] * s.ne[1];
        f = hl_xmalloc(sizeof(float) * (size_t)n);
        if (hl_quant_dequantize(s.type, s.data, f, n, err) != HL_OK) {
            free(f);
            f = NULL;
        }
        *n_out = n;
    }
    free(s.owned);
    return f;
}

// ---- synthetic weights ----

// ld's fused-weight buffer with room for n bytes, or NULL (out of memory).
static uint8_t *fuse_bytes(const loader *ld, size_t n) {
    if (n <= ld->tmp->cap) return ld->tmp->p;
    free(ld->tmp->p);
    ld->tmp->cap = 0;
    if (!(ld->tmp->p = malloc(n))) return NULL;
    ld->tmp->cap = n;
    return ld->tmp->p;
}

#define MAX_PARTS 3 // tensors of one fused weight (q, k, v)
#define SYNTH_MAX_THREADS 32
#define SYNTH_CHUNK_FLOATS (1 << 18) // generated per quantize call by one thread

// Element values of a synthetic matrix: hl_synth_value with the name hashed once (FNV-1a, as
// engine/synth.c and kernels/cuda/backend_extra.cu do). synth_rows_fill checks the shortcut
// against hl_synth_value and falls back to it if they ever differ.
typedef struct synth_job {
    const char *name;
    uint64_t seed, key;
    float std;
    int type;
    int64_t ne0, row0, n_rows;
    size_t row_bytes;
    uint8_t *dst;                 // the whole tensor; this job writes rows [row0, row0 + n_rows)
    bool exact;                   // the shortcut matches hl_synth_value
    int rc;
    hl_error err;
} synth_job;

static uint64_t synth_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return hl_hash64(seed ^ h);
}

static float synth_fast(const synth_job *j, uint64_t i) {
    const float u = (float)(hl_hash64(j->key + i) >> 40) * (1.0f / 16777216.0f);
    return (2.0f * u - 1.0f) * j->std * 1.7320508f;
}

static bool synth_fast_ok(const synth_job *j) {
    for (uint64_t i = 0; i < 64; i++) {
        const float a = synth_fast(j, i * 7919), b = hl_synth_value(j->seed, j->name, i * 7919, j->std);
        if (memcmp(&a, &b, sizeof a) != 0) return false;
    }
    return true;
}

static void *synth_rows_fill(void *arg) {
    synth_job *j = arg;
    int64_t chunk = SYNTH_CHUNK_FLOATS / j->ne0;
    if (chunk < 1) chunk = 1;
    float *buf = malloc(sizeof(float) * (size_t)(chunk * j->ne0));
    j->rc = buf ? HL_OK : hl_errorf(&j->err, HL_ERR_NOMEM, "synthetic weight %s: no conversion buffer", j->name);
    for (int64_t r = j->row0; r < j->row0 + j->n_rows && j->rc == HL_OK; r += chunk) {
        const int64_t n = j->row0 + j->n_rows - r < chunk ? j->row0 + j->n_rows - r : chunk;
        const uint64_t first = (uint64_t)r * (uint64_t)j->ne0;
        for (uint64_t i = 0; i < (uint64_t)(n * j->ne0); i++)
            buf[i] = j->exact ? synth_fast(j, first + i) : hl_synth_value(j->seed, j->name, first + i, j->std);
        j->rc = hl_quant_quantize(j->type, buf, j->dst + (size_t)r * j->row_bytes, n * j->ne0, &j->err);
    }
    free(buf);
    return NULL;
}

static int n_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > SYNTH_MAX_THREADS ? SYNTH_MAX_THREADS : (int)n;
}

// Generates a synthetic matrix's bytes (those of hl_synth_model_fill) into dst, rows split over
// the cores: an 8B model would take minutes on one.
static int synth_fill_parallel(const hl_synth_tensor_info *info, uint64_t seed, float std, void *dst,
                               hl_error *err) {
    synth_job base = {.name = info->name, .seed = seed, .key = synth_key(seed, info->name), .std = std,
                      .type = info->type, .ne0 = info->ne[0], .dst = dst};
    base.row_bytes = info->n_bytes / (size_t)info->ne[1];
    base.exact = synth_fast_ok(&base);
    int n_thr = n_cpus();
    if ((int64_t)n_thr > info->ne[1]) n_thr = (int)info->ne[1];
    if (info->ne[0] * info->ne[1] < (1 << 20)) n_thr = 1;
    synth_job jobs[SYNTH_MAX_THREADS];
    pthread_t th[SYNTH_MAX_THREADS];
    bool started[SYNTH_MAX_THREADS] = {false};
    for (int t = 0; t < n_thr; t++) {
        jobs[t] = base;
        jobs[t].row0 = info->ne[1] * t / n_thr;
        jobs[t].n_rows = info->ne[1] * (t + 1) / n_thr - jobs[t].row0;
        started[t] = t > 0 && pthread_create(&th[t], NULL, synth_rows_fill, &jobs[t]) == 0;
        if (t > 0 && !started[t]) synth_rows_fill(&jobs[t]); // no thread: do it here
    }
    synth_rows_fill(&jobs[0]);
    int rc = HL_OK;
    for (int t = 0; t < n_thr; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        if (rc == HL_OK && jobs[t].rc != HL_OK) rc = hl_errorf(err, jobs[t].rc, "%s", jobs[t].err.msg);
    }
    return rc;
}

// A synthetic matrix made of the tensors names[0..n) stacked by rows (one tensor, or the parts
// of a fused weight, all of one type and row length): generated by the backend where it lives
// when it can (the CUDA backend makes F32/F16/Q4_0/Q8_0 on the device: seconds for an 8B
// model), else on the CPU, part by part into one buffer, and uploaded. The same bytes either way.
static int upload_synth(const loader *ld, hl_backend *be, const char *const *names, int n, enum hl_op op,
                        hl_tensor *out, size_t *n_bytes, hl_error *err) {
    hl_synth_tensor_info info[MAX_PARTS];
    hl_synth_part parts[MAX_PARTS];
    size_t total = 0;
    int64_t rows = 0;
    HL_ASSERT(n >= 1 && n <= MAX_PARTS);
    for (int p = 0; p < n; p++) {
        const int i = hl_synth_model_find(ld->syn, names[p]);
        if (i < 0) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", names[p]);
        info[p] = hl_synth_model_tensor(ld->syn, i);
        parts[p] = (hl_synth_part){names[p], info[p].ne[1], hl_synth_std(names[p], info[p].ne[0], ld->cfg->dim)};
        total += info[p].n_bytes;
        rows += info[p].ne[1];
    }
    if (!be->ops->supports(be, op, info[0].type))
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor %s: the %s backend cannot run %s weights", names[0],
                         be->ops->name, hl_quant_name(info[0].type));
    *n_bytes += total;
    const int64_t ne[2] = {info[0].ne[0], rows};
    if (be->ops->synth_weight) {
        hl_error dev_err = {0};
        int rc = be->ops->synth_weight(be, out, info[0].type, ne, ld->seed, parts, n, &dev_err);
        if (rc != HL_ERR_UNSUPPORTED && rc != HL_ERR_INVAL)
            return rc == HL_OK ? HL_OK : hl_errorf(err, rc, "tensor %s: %s", names[0], dev_err.msg);
    }
    uint8_t *bytes = n > 1 ? fuse_bytes(ld, total) : malloc(total);
    if (!bytes) return hl_errorf(err, HL_ERR_NOMEM, "tensor %s: %zu bytes", names[0], total);
    int rc = HL_OK;
    for (size_t p = 0, at = 0; p < (size_t)n && rc == HL_OK; at += info[p].n_bytes, p++)
        rc = synth_fill_parallel(&info[p], ld->seed, parts[p].std, bytes + at, err);
    if (rc == HL_OK) rc = be->ops->upload_weight(be, out, info[0].type, ne, bytes, err);
    if (n == 1) free(bytes);
    return rc;
}

// ---- upload ----

// Uploads tensor `name` for op: norms as F32, matrices in their own type once the backend
// says it can run `op` on it.
static int upload(const loader *ld, hl_backend *be, const char *name, enum hl_op op, hl_tensor *out,
                  size_t *n_bytes, hl_error *err) {
    if (op == HL_OP_RMSNORM) {
        int64_t n = 0;
        float *f = read_f32(ld, name, &n, err);
        if (!f) return err ? err->code : HL_ERR_FORMAT;
        *n_bytes += (size_t)n * sizeof(float);
        int rc = be->ops->upload_weight(be, out, HL_DTYPE_F32, (int64_t[2]){n, 1}, f, err);
        free(f);
        return rc;
    }
    if (ld->kind == SRC_SYNTH) return upload_synth(ld, be, &name, 1, op, out, n_bytes, err);
    src_tensor s;
    int rc = src_get(ld, name, &s, err);
    if (rc == HL_OK && !be->ops->supports(be, op, s.type))
        rc = hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor %s: the %s backend cannot run %s weights", name,
                       be->ops->name, hl_quant_name(s.type));
    if (rc == HL_OK) rc = be->ops->upload_weight(be, out, s.type, s.ne, s.data, err);
    // The backend holds its own copy now: drop the file's pages so the weights are not resident twice.
    if (!s.owned) hl_mmap_dontneed(s.data, s.n_bytes);
    *n_bytes += s.n_bytes;
    free(s.owned);
    return rc;
}

// ---- fused weights ----

// Type and shape of tensor `name` as src_get would give them, without reading its data.
static int src_info(const loader *ld, const char *name, int *type, int64_t ne[2], hl_error *err) {
    if (ld->kind == SRC_GGUF) {
        const hl_gguf_tensor *t = hl_gguf_find_tensor(ld->g, name);
        if (!t) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", name);
        *type = t->type, ne[0] = t->ne[0], ne[1] = t->ne[1];
        return HL_OK;
    }
    if (ld->kind == SRC_SYNTH) {
        const int i = hl_synth_model_find(ld->syn, name);
        if (i < 0) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", name);
        const hl_synth_tensor_info info = hl_synth_model_tensor(ld->syn, i);
        *type = info.type, ne[0] = info.ne[0], ne[1] = info.ne[1];
        return HL_OK;
    }
    char hf[128];
    int rc = hl_model_config_gguf_to_hf_name(name, hf, sizeof hf, err);
    if (rc != HL_OK) return rc;
    const hl_safetensors_tensor *t = hl_safetensors_find_tensor(ld->st, hf);
    if (!t) return hl_errorf(err, HL_ERR_FORMAT, "tensor %s is missing", hf);
    *type = t->dtype, ne[0] = t->ne[0], ne[1] = t->n_dims == 2 ? t->ne[1] : 1;
    return HL_OK;
}

// True when names[0..n) can be one weight: one type the backend multiplies, one row length.
static bool fusable(const loader *ld, hl_backend *be, const char *const *names, int n) {
    int type0 = -1;
    int64_t ne0 = -1;
    for (int p = 0; p < n; p++) {
        int type;
        int64_t ne[2];
        if (src_info(ld, names[p], &type, ne, NULL) != HL_OK || ne[1] < 1) return false;
        if (p > 0 && (type != type0 || ne[0] != ne0)) return false;
        type0 = type, ne0 = ne[0];
    }
    return be->ops->supports(be, HL_OP_MATMUL, type0);
}

// Uploads names[0..n) stacked by rows as one weight. Each part is copied into the load's
// reused buffer (ld->tmp) and its file pages are dropped at once, as upload() does, so peak
// memory stays that of the largest single weight plus its backend copy.
static int upload_fused(const loader *ld, hl_backend *be, const char *const *names, int n, hl_tensor *out,
                        size_t *n_bytes, hl_error *err) {
    if (ld->kind == SRC_SYNTH) return upload_synth(ld, be, names, n, HL_OP_MATMUL, out, n_bytes, err);
    size_t total = 0;
    int64_t rows = 0, ne0 = 0;
    int type = 0;
    for (int p = 0; p < n; p++) {
        int64_t ne[2];
        size_t rb;
        int rc = src_info(ld, names[p], &type, ne, err);
        if (rc == HL_OK) rc = hl_quant_row_bytes(type, ne[0], &rb, err);
        if (rc != HL_OK) return rc;
        total += rb * (size_t)ne[1];
        rows += ne[1], ne0 = ne[0];
    }
    uint8_t *buf = fuse_bytes(ld, total);
    if (!buf) return hl_errorf(err, HL_ERR_NOMEM, "tensor %s: %zu bytes to fuse", names[0], total);
    int rc = HL_OK;
    for (size_t p = 0, at = 0; p < (size_t)n && rc == HL_OK; p++) {
        src_tensor s;
        rc = src_get(ld, names[p], &s, err);
        if (rc == HL_OK && at + s.n_bytes > total)
            rc = hl_errorf(err, HL_ERR_FORMAT, "tensor %s: %zu bytes, more than its shape says", names[p],
                           s.n_bytes);
        if (rc == HL_OK) memcpy(buf + at, s.data, s.n_bytes);
        if (rc == HL_OK && !s.owned) hl_mmap_dontneed(s.data, s.n_bytes);
        at += s.n_bytes;
        free(s.owned);
    }
    if (rc == HL_OK) rc = be->ops->upload_weight(be, out, type, (int64_t[2]){ne0, rows}, buf, err);
    if (rc == HL_OK) *n_bytes += total;
    return rc;
}

// q/k/v (or gate/up) of layer il: one fused weight when their types allow it (and the caller
// did not ask for separate ones), else one weight each.
static int upload_group(const loader *ld, hl_model *m, int il, const char *const *suffixes, int n,
                        hl_tensor *const *parts, hl_tensor *fused, hl_error *err) {
    char names[MAX_PARTS][96];
    const char *ptrs[MAX_PARTS];
    for (int p = 0; p < n; p++) {
        snprintf(names[p], sizeof names[p], "blk.%d.%s.weight", il, suffixes[p]);
        ptrs[p] = names[p];
    }
    if (!ld->no_fuse && fusable(ld, m->be, ptrs, n))
        return upload_fused(ld, m->be, ptrs, n, fused, &m->weight_bytes, err);
    for (int p = 0; p < n; p++) {
        int rc = upload(ld, m->be, ptrs[p], HL_OP_MATMUL, parts[p], &m->weight_bytes, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

static int upload_layer(const loader *ld, hl_model *m, int il, hl_error *err) {
    hl_model_layer *L = &m->layers[il];
    static const char *const qkv[] = {"attn_q", "attn_k", "attn_v"}, *const gate_up[] = {"ffn_gate", "ffn_up"};
    struct { const char *suffix; hl_tensor *t; enum hl_op op; } w[] = {
        {"attn_norm", &L->attn_norm, HL_OP_RMSNORM}, {"attn_output", &L->wo, HL_OP_MATMUL},
        {"ffn_norm", &L->ffn_norm, HL_OP_RMSNORM},   {"ffn_down", &L->w_down, HL_OP_MATMUL},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.weight", il, w[i].suffix);
        int rc = upload(ld, m->be, name, w[i].op, w[i].t, &m->weight_bytes, err);
        if (rc != HL_OK) return rc;
    }
    int rc = upload_group(ld, m, il, qkv, 3, (hl_tensor *const[]){&L->wq, &L->wk, &L->wv}, &L->wqkv, err);
    if (rc != HL_OK) return rc;
    return upload_group(ld, m, il, gate_up, 2, (hl_tensor *const[]){&L->w_gate, &L->w_up}, &L->w_gate_up, err);
}

static int upload_all(const loader *ld, hl_model *m, hl_error *err) {
    hl_backend *be = m->be;
    size_t *n_bytes = &m->weight_bytes;
    if (!be->ops->add_rmsnorm || !be->ops->supports(be, HL_OP_ADD_RMSNORM, HL_DTYPE_F32))
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "the %s backend has no add_rmsnorm op", be->ops->name);
    int rc = upload(ld, be, "token_embd.weight", HL_OP_EMBED, &m->token_embd, n_bytes, err);
    if (rc == HL_OK && m->cfg.tied_embeddings && !be->ops->supports(be, HL_OP_MATMUL, m->token_embd.type))
        rc = hl_errorf(err, HL_ERR_UNSUPPORTED, "token_embd.weight (tied output): the %s backend cannot "
                       "run %s weights", be->ops->name, hl_quant_name(m->token_embd.type));
    if (rc == HL_OK) rc = upload(ld, be, "output_norm.weight", HL_OP_RMSNORM, &m->output_norm, n_bytes, err);
    if (rc == HL_OK && !m->cfg.tied_embeddings)
        rc = upload(ld, be, "output.weight", HL_OP_MATMUL, &m->output, n_bytes, err);
    if (rc == HL_OK && m->cfg.tied_embeddings) m->output = m->token_embd;
    for (int il = 0; il < m->cfg.n_layers && rc == HL_OK; il++) rc = upload_layer(ld, m, il, err);
    return rc;
}

// RoPE as the backend wants it: frequency divisors from rope_freqs.weight or the config.
static int setup_rope(const loader *ld, hl_model *m, hl_error *err) {
    const hl_model_config *c = &m->cfg;
    m->rope = (hl_rope){.theta = c->rope_theta, .n_rot = c->n_rot, .neox = c->arch == HL_ARCH_QWEN2,
                        .freq_scale = 1.0f};
    switch (c->rope_scaling.type) {
    case HL_ROPE_SCALING_LINEAR: m->rope.freq_scale = 1.0f / c->rope_scaling.factor; return HL_OK;
    case HL_ROPE_SCALING_LLAMA3:
        m->rope_factors = hl_xmalloc(sizeof(float) * (size_t)(c->n_rot / 2));
        m->rope.freq_factors = m->rope_factors;
        return hl_model_config_rope_freq_factors(c, m->rope_factors, c->n_rot / 2, err);
    case HL_ROPE_SCALING_FREQ_TENSOR: {
        int64_t n = 0;
        m->rope_factors = read_f32(ld, "rope_freqs.weight", &n, err);
        if (!m->rope_factors) return err ? err->code : HL_ERR_FORMAT;
        if (n != c->n_rot / 2)
            return hl_errorf(err, HL_ERR_FORMAT, "rope_freqs.weight has %lld values, want %d", (long long)n,
                             c->n_rot / 2);
        m->rope.freq_factors = m->rope_factors;
        return HL_OK;
    }
    default: return HL_OK;
    }
}

// ---- finding files ----

static bool readable(const char *path) { return access(path, R_OK) == 0; }

// rel under $HALYARD_ROOT, the cwd, its parent or /work; NULL when absent. Static buffer.
static const char *find_file(const char *rel) {
    static char buf[1024];
    const char *root = getenv("HALYARD_ROOT");
    const char *bases[] = {root ? root : ".", ".", "..", "/work"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        snprintf(buf, sizeof buf, "%s/%s", bases[i], rel);
        if (readable(buf)) return buf;
    }
    return NULL;
}

static hl_tokenizer *tokenizer_from_gguf_path(const char *path, hl_error *err) {
    hl_gguf *g = hl_gguf_open(path, err);
    if (!g) return NULL;
    hl_tokenizer *tok = hl_tokenizer_create_from_gguf(g, err);
    hl_gguf_free(g);
    if (!tok) hl_error_wrap(err, "tokenizer of %s", path);
    return tok;
}

// vocab.json + merges.txt (+ special_tokens.json) in dir.
static hl_tokenizer *tokenizer_from_hf_dir(const char *dir, hl_error *err) {
    char v[1024], mg[1024], sp[1024];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(mg, sizeof mg, "%s/merges.txt", dir);
    snprintf(sp, sizeof sp, "%s/special_tokens.json", dir);
    return hl_tokenizer_create_from_hf_files(v, mg, readable(sp) ? sp : NULL, "llama-bpe", err);
}

// Synthetic models: --tokenizer-from, else the default model's, else the Llama 3 fixture.
static hl_tokenizer *synth_tokenizer(const hl_model_params *p, hl_model *m, hl_error *err) {
    if (p->tokenizer_from) return tokenizer_from_gguf_path(p->tokenizer_from, err);
    const char *path = find_file(HL_MODEL_DEFAULT_PATH);
    if (path) return tokenizer_from_gguf_path(path, err);
    path = find_file("shared/fixtures/llama3-tokenizer/vocab.json");
    if (!path) {
        hl_errorf(err, HL_ERR_IO, "synthetic model: no tokenizer (give --tokenizer-from FILE.gguf; "
                  "neither %s nor ../shared/fixtures/llama3-tokenizer was found)", HL_MODEL_DEFAULT_PATH);
        return NULL;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    m->chat_template_name = "llama3";
    return tokenizer_from_hf_dir(dirname(dir), err);
}

// ---- sources ----

static int open_gguf(const char *path, loader *ld, hl_model *m, hl_error *err) {
    ld->kind = SRC_GGUF;
    if (!(ld->g = hl_gguf_open(path, err))) return err ? err->code : HL_ERR_IO;
    int rc = hl_model_config_from_gguf(ld->g, &m->cfg, err);
    if (rc == HL_OK)
        rc = hl_model_config_check_tensors(&m->cfg, HL_NAMING_GGUF, hl_model_config_lookup_gguf, ld->g,
                                           err);
    if (rc != HL_OK) return rc;
    hl_gguf_str name = {0};
    hl_error ignore = {0};
    bool named = hl_gguf_get_str(ld->g, "general.name", &name, &ignore) == HL_OK;
    m->name = named ? hl_xstrndup(name.ptr, name.len) : hl_xstrdup(path);
    m->tok = hl_tokenizer_create_from_gguf(ld->g, err);
    return m->tok ? HL_OK : hl_error_wrap(err, "tokenizer of %s", path);
}

static int open_st(const char *path, const hl_model_params *p, loader *ld, hl_model *m, hl_error *err) {
    struct stat sb;
    char *copy = hl_xstrdup(path);
    char *dir = hl_xstrdup(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? path : dirname(copy));
    free(copy);
    ld->kind = SRC_ST;
    m->name = hl_xstrdup(dir);
    int rc = hl_model_config_from_hf_file(dir, &m->cfg, err);
    if (rc == HL_OK && !(ld->st = hl_safetensors_open(path, err))) rc = err ? err->code : HL_ERR_IO;
    if (rc == HL_OK)
        rc = hl_model_config_check_tensors(&m->cfg, HL_NAMING_HF, hl_model_config_lookup_safetensors, ld->st,
                                           err);
    if (rc == HL_OK) {
        m->tok = p->tokenizer_from ? tokenizer_from_gguf_path(p->tokenizer_from, err)
                                   : tokenizer_from_hf_dir(dir, err);
        if (!m->tok) rc = err ? err->code : HL_ERR_IO;
    }
    free(dir);
    return rc;
}

static void synth_config(const hl_synth_shape *s, int n_vocab, const hl_tokenizer *tok,
                         hl_model_config *c) {
    *c = (hl_model_config){.arch = HL_ARCH_LLAMA, .n_vocab = n_vocab, .dim = s->dim,
                           .n_layers = s->n_layers, .n_heads = s->n_heads, .n_kv_heads = s->n_kv_heads,
                           .head_dim = s->dim / s->n_heads, .ffn_dim = s->ffn_dim, .n_ctx_train = s->n_ctx,
                           .n_rot = s->dim / s->n_heads, .rope_theta = s->rope_theta, .rms_eps = s->rms_eps,
                           .tied_embeddings = s->tied, .bos_id = -1, .eos_id = -1};
    if (s->rope_scale > 0) c->rope_scaling.type = HL_ROPE_SCALING_FREQ_TENSOR; // as the file stores it
    if (!tok) return;
    hl_tokenizer_ids ids = hl_tokenizer_special_ids(tok);
    c->bos_id = ids.bos;
    c->eos_id = ids.eos;
    int32_t eog[] = {ids.eos, ids.eot, ids.eom};
    for (size_t i = 0; i < sizeof eog / sizeof eog[0]; i++) {
        if (eog[i] >= 0) c->eos_ids[c->n_eos_ids++] = eog[i];
    }
}

// "synthetic:<shape>:<type>"
static int open_synth(const char *path, const hl_model_params *p, loader *ld, hl_model *m,
                      hl_error *err) {
    char shape_name[32] = "", type_name[32] = "";
    const char *spec = path + strlen(SYNTH_PREFIX), *colon = strchr(spec, ':');
    if (!colon || colon - spec >= (long)sizeof shape_name || strlen(colon + 1) >= sizeof type_name)
        return hl_errorf(err, HL_ERR_INVAL, "'%s': expected synthetic:<shape>:<type>", path);
    memcpy(shape_name, spec, (size_t)(colon - spec));
    strcpy(type_name, colon + 1);
    const hl_synth_shape *shape = hl_synth_shape_find(shape_name);
    if (!shape) return hl_errorf(err, HL_ERR_INVAL, "unknown synthetic shape '%s' (known: %s)", shape_name,
                                 hl_synth_shape_names());
    int ftype = hl_quantize_ftype_from_name(type_name);
    if (ftype < 0)
        return hl_errorf(err, HL_ERR_INVAL, "unknown synthetic type '%s' (known: f32, f16, q8_0, q4_0, q4_1, "
                         "q4_k, q6_k, q4_k_m)", type_name);
    ld->kind = SRC_SYNTH;
    m->name = hl_xstrdup(path);
    int n_vocab = p->synth_n_vocab;
    if (n_vocab <= 0) {
        if (!(m->tok = synth_tokenizer(p, m, err))) return err ? err->code : HL_ERR_IO;
        n_vocab = hl_tokenizer_n_tokens(m->tok);
    }
    synth_config(shape, n_vocab, m->tok, &m->cfg);
    int rc = hl_model_config_validate(&m->cfg, err);
    if (rc != HL_OK) return rc;
    ld->syn = hl_synth_model_create(shape, ftype, p->synth_seed, n_vocab, err);
    if (!ld->syn) return err ? err->code : HL_ERR_INVAL;
    return hl_model_config_check_tensors(&m->cfg, HL_NAMING_GGUF, lookup_synth, ld->syn, err);
}

// A weight did not fit: say how far the load got and what the device has.
static void explain_nomem(const hl_model *m, hl_error *err) {
    size_t free_b = 0, total_b = 0;
    hl_error ignore = {0};
    if (hl_backend_mem_info(m->be, &free_b, &total_b, &ignore) != HL_OK) return;
    hl_error_wrap(err, "the weights do not fit in %s memory (%.2f GiB loaded so far, %.2f GiB free of %.2f GiB)",
                  m->be->ops->name, (double)m->weight_bytes / (1 << 30), (double)free_b / (1 << 30),
                  (double)total_b / (1 << 30));
}

static int check_supported(const hl_model_config *c, hl_error *err) {
    if (c->qkv_bias) return hl_errorf(err, HL_ERR_UNSUPPORTED, "q/k/v biases (%s) are not supported yet",
                                      hl_model_config_arch_name(c->arch));
    if (c->sliding_window > 0)
        hl_log(HL_LOG_WARN, "model: sliding-window attention (%d) is run as full attention", c->sliding_window);
    return HL_OK;
}

hl_model *hl_model_load(const char *path, hl_backend *be, const hl_model_params *params, hl_error *err) {
    hl_model_params defaults = hl_model_default_params();
    const hl_model_params *p = params ? params : &defaults;
    hl_model *m = hl_xcalloc(1, sizeof(*m));
    m->be = be;
    fuse_buf tmp = {0};
    loader ld = {.cfg = &m->cfg, .seed = p->synth_seed, .no_fuse = p->no_fuse, .tmp = &tmp};
    size_t n = strlen(path);
    int rc;
    if (strncmp(path, SYNTH_PREFIX, strlen(SYNTH_PREFIX)) == 0) rc = open_synth(path, p, &ld, m, err);
    else if (n > 5 && strcmp(path + n - 5, ".gguf") == 0) rc = open_gguf(path, &ld, m, err);
    else rc = open_st(path, p, &ld, m, err);
    if (rc == HL_OK) rc = check_supported(&m->cfg, err);
    if (rc == HL_OK) {
        m->layers = hl_xcalloc((size_t)m->cfg.n_layers, sizeof(hl_model_layer));
        rc = upload_all(&ld, m, err);
        if (rc == HL_ERR_NOMEM) explain_nomem(m, err);
    }
    if (rc == HL_OK) rc = setup_rope(&ld, m, err);
    hl_gguf_free(ld.g);
    hl_safetensors_free(ld.st);
    hl_synth_model_free(ld.syn);
    free(tmp.p);
    if (rc != HL_OK) {
        hl_error_wrap(err, "%s", path);
        hl_model_free(m);
        return NULL;
    }
    return m;
}

void hl_model_free(hl_model *m) {
    if (!m) return;
    hl_backend *be = m->be;
    if (m->layers) {
        for (int il = 0; il < m->cfg.n_layers; il++) {
            hl_model_layer *L = &m->layers[il];
            hl_tensor *w[] = {&L->attn_norm, &L->wqkv, &L->wq, &L->wk, &L->wv, &L->wo,
                              &L->ffn_norm, &L->w_gate_up, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
                if (w[i]->data) be->ops->release_weight(be, w[i]);
            }
        }
    }
    if (m->output.data && m->output.data != m->token_embd.data) be->ops->release_weight(be, &m->output);
    if (m->token_embd.data) be->ops->release_weight(be, &m->token_embd);
    if (m->output_norm.data) be->ops->release_weight(be, &m->output_norm);
    free(m->layers);
    free(m->rope_factors);
    free(m->name);
    hl_tokenizer_free(m->tok);
    free(m);
}
