// backend_cpu: the CPU backend's vtable (see backend_cpu.h, kernels/backend.h).
#include "kernels/cpu/backend_cpu.h"

#include <math.h>
#include <stdlib.h>

#include "engine/quant.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/repack.h"
#include "kernels/cpu/threadpool.h"
#include "kernels/cpu/topk.h"
#include "kernels/cpu/vec.h"

#define MAX_HEAD_DIM 1024    // per-thread stack scratch in rope and attention
#define PARALLEL_MIN 16384   // elementwise work below this runs on the caller alone

typedef struct cpu_ctx {
    hl_threadpool *pool;     // owned
    int isa;                 // enum hl_cpu_isa
    const hl_vec_ops *vec;   // static table for isa
    void *act;               // owned: quantized activations for matmul, act_bytes long
    size_t act_bytes;
} cpu_ctx;

static inline cpu_ctx *ctx_of(hl_backend *be) { return be->ctx; }

static inline float *row_f32(const hl_tensor *t, int64_t i) {
    return (float *)((uint8_t *)t->data + (size_t)i * t->row_bytes);
}

// [lo, hi) of share ith of nth over n items.
static inline void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

// Runs fn on the pool, or on the caller alone when `work` is too small to pay for waking it.
static void run(cpu_ctx *c, hl_threadpool_fn fn, void *arg, int64_t work) {
    if (work < PARALLEL_MIN) fn(arg, 0, 1);
    else hl_threadpool_run(c->pool, fn, arg);
}

// Like run, in more shares than threads when the work is large (one per SHARE_WORK units, up
// to SHARES_PER_THREAD per thread, at most n_items): a thread that the OS interrupts leaves
// its unstarted shares to the others. Small ops keep one share per thread (claiming a share
// costs a cache-line transfer).
#define SHARES_PER_THREAD 8
#define SHARE_WORK (1 << 21)
static void run_shared(cpu_ctx *c, hl_threadpool_fn fn, void *arg, int64_t work, int64_t n_items) {
    if (work < PARALLEL_MIN) {
        fn(arg, 0, 1);
        return;
    }
    const int64_t nth = hl_threadpool_n_threads(c->pool);
    int64_t n = work / SHARE_WORK;
    n = n < nth * SHARES_PER_THREAD ? n : nth * SHARES_PER_THREAD;
    n = n > nth ? n : nth;
    n = n < n_items ? n : n_items;
    hl_threadpool_run_n(c->pool, fn, arg, (int)(n > 1 ? n : 1));
}

// ---- memory ----

// 64-byte aligned and zero-filled. calloc rather than posix_memalign + memset: glibc serves
// large requests with fresh mmap'd pages that are already zero, so a multi-GB KV pool costs
// no time and no resident memory until it is used. The pointer calloc returned is kept just
// below the aligned one for cpu_release.
static void *cpu_alloc(hl_backend *be, size_t n_bytes) {
    (void)be;
    size_t total;
    if (!hl_add_ok(n_bytes, 64 + sizeof(void *), &total)) return NULL;
    uint8_t *raw = calloc(1, total);
    if (!raw) return NULL;
    uintptr_t aligned = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    memcpy((void *)(aligned - sizeof(void *)), &raw, sizeof raw);
    return (void *)aligned;
}

static void cpu_release(hl_backend *be, void *ptr) {
    (void)be;
    if (!ptr) return;
    void *raw;
    memcpy(&raw, (uint8_t *)ptr - sizeof(void *), sizeof raw);
    free(raw);
}

static int cpu_copy(hl_backend *be, void *dst, const void *src, size_t n_bytes, hl_error *err) {
    (void)be;
    if (n_bytes && (!dst || !src)) return hl_errorf(err, HL_ERR_INVAL, "cpu copy: NULL buffer");
    if (n_bytes) memcpy(dst, src, n_bytes);
    return HL_OK;
}

static bool cpu_supports(hl_backend *be, enum hl_op op, int type) {
    (void)be;
    const hl_dtype_info *info = hl_quant_info(type);
    switch (op) {
    case HL_OP_EMBED: return info && info->can_dequantize;
    case HL_OP_MATMUL: return hl_matmul_supports(type);
    case HL_OP_ROPE_KV: case HL_OP_ATTENTION:
        return type == HL_DTYPE_F16 || type == HL_DTYPE_F32 || type == HL_DTYPE_I8;
    case HL_OP_RMSNORM: case HL_OP_SWIGLU: case HL_OP_ADD: case HL_OP_GET_ROWS: case HL_OP_ADD_RMSNORM:
        return type == HL_DTYPE_F32;
    case HL_OP_TOPK: return type == HL_DTYPE_F32;
    default: return false;
    }
}

// Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K weights are repacked to X16 (repack.h) where
// the VNNI kernels run.
static bool wants_x16(const cpu_ctx *c, int type, int64_t k) {
    return c->isa == HL_CPU_ISA_VNNI && hl_repack_supports(type) && k % hl_repack_block_values(type) == 0;
}

static int cpu_upload_weight(hl_backend *be, hl_tensor *out, int type, const int64_t ne[2],
                             const void *src, hl_error *err) {
    const hl_dtype_info *info = hl_quant_info(type);
    if (!info || !info->can_dequantize)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "cpu: weight type %d is not supported", type);
    if (ne[0] <= 0 || ne[1] <= 0) return hl_errorf(err, HL_ERR_INVAL, "cpu: empty weight shape");
    size_t rb, total;
    int rc = hl_quant_row_bytes(type, ne[0], &rb, err);
    if (rc != HL_OK) return rc;
    if (!hl_mul_ok(rb, (size_t)ne[1] + HL_REPACK_ROWS, &total))
        return hl_errorf(err, HL_ERR_INVAL, "cpu: weight of %lld rows is too large", (long long)ne[1]);
    const bool x16 = wants_x16(ctx_of(be), type, ne[0]);
    if (x16) total = hl_repack_bytes(type, ne[0], ne[1]);
    else total = rb * (size_t)ne[1];
    void *data = cpu_alloc(be, total);
    if (!data) return hl_errorf(err, HL_ERR_NOMEM, "cpu: cannot allocate %zu bytes of weights", total);
    if (x16) hl_repack_x16(type, ne[0], ne[1], src, data);
    else memcpy(data, src, total);
    *out = (hl_tensor){.type = type, .layout = x16 ? HL_CPU_LAYOUT_X16 : 0, .ne = {ne[0], ne[1]},
                       .row_bytes = rb, .data = data};
    return HL_OK;
}

static void cpu_release_weight(hl_backend *be, hl_tensor *w) {
    if (!w) return;
    cpu_release(be, w->data);
    memset(w, 0, sizeof(*w));
}

// ---- embed, get_rows ----

typedef struct rows_args {
    hl_tensor *out;
    const hl_tensor *src;
    const int32_t *ids;
    int n;
} rows_args;

// Row `id` of an X16 table, dequantized block by block from its GGUF form.
static void embed_x16_row(const hl_tensor *t, int64_t id, float *dst) {
    uint8_t blk[256]; // the largest supported GGUF block: Q6_K, 210 bytes
    const int64_t qk = hl_repack_block_values(t->type);
    HL_ASSERT(hl_quant_info(t->type)->block_bytes <= sizeof(blk));
    for (int64_t b = 0; b < t->ne[0] / qk; b++) {
        hl_repack_block(t->type, t->ne[0], t->data, id, b, blk);
        int rc = hl_quant_dequantize(t->type, blk, dst + b * qk, qk, NULL);
        HL_ASSERT(rc == HL_OK);
    }
}

static void embed_fn(void *arg, int ith, int nth) {
    rows_args *a = arg;
    int64_t lo, hi;
    split(a->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        if (a->src->layout == HL_CPU_LAYOUT_X16) {
            embed_x16_row(a->src, a->ids[i], row_f32(a->out, i));
            continue;
        }
        const uint8_t *src = (const uint8_t *)a->src->data + (size_t)a->ids[i] * a->src->row_bytes;
        int rc = hl_quant_dequantize(a->src->type, src, row_f32(a->out, i), a->src->ne[0], NULL);
        HL_ASSERT(rc == HL_OK);
    }
}

static void cpu_embed(hl_backend *be, hl_tensor *out, const hl_tensor *table, const int32_t *ids, int n) {
    rows_args a = {out, table, ids, n};
    run(ctx_of(be), embed_fn, &a, (int64_t)n * table->ne[0]);
}

static void get_rows_fn(void *arg, int ith, int nth) {
    rows_args *a = arg;
    int64_t lo, hi;
    split(a->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        memmove(row_f32(a->out, i), row_f32(a->src, a->ids[i]), (size_t)a->src->ne[0] * sizeof(float));
}

static void cpu_get_rows(hl_backend *be, hl_tensor *out, const hl_tensor *x, const int32_t *rows, int n) {
    rows_args a = {out, x, rows, n};
    run(ctx_of(be), get_rows_fn, &a, (int64_t)n * x->ne[0]);
}

// ---- matmul ----

typedef struct mm_args {
    hl_matmul_args mm;
    int isa;
    int64_t rows;
} mm_args;

static void mm_quantize_fn(void *arg, int ith, int nth) {
    mm_args *a = arg;
    int64_t lo, hi;
    split(a->mm.n, ith, nth, &lo, &hi);
    hl_matmul_quantize(a->isa, &a->mm, (int)lo, (int)hi);
}

// hot: most of the step is here. Threads take contiguous ranges of weight rows (whole groups
// of 16 for X16 weights).
static void mm_rows_fn(void *arg, int ith, int nth) {
    mm_args *a = arg;
    int64_t lo, hi;
    if (a->mm.layout != HL_CPU_LAYOUT_X16) {
        split(a->rows, ith, nth, &lo, &hi);
        hl_matmul_rows(a->isa, &a->mm, lo, hi);
        return;
    }
    split((a->rows + HL_REPACK_ROWS - 1) / HL_REPACK_ROWS, ith, nth, &lo, &hi);
    hl_matmul_rows(a->isa, &a->mm, lo * HL_REPACK_ROWS, hi * HL_REPACK_ROWS < a->rows ? hi * HL_REPACK_ROWS : a->rows);
}

static void *act_scratch(cpu_ctx *c, size_t n_bytes) {
    if (n_bytes <= c->act_bytes) return c->act;
    free(c->act);
    c->act = NULL;
    c->act_bytes = 0;
    void *p = NULL;
    // The op has no error path: running out of memory for activations is fatal.
    if (posix_memalign(&p, 64, n_bytes) != 0)
        hl_panic(__FILE__, __LINE__, "cpu matmul: cannot allocate %zu bytes of scratch", n_bytes);
    c->act = p;
    c->act_bytes = n_bytes;
    return p;
}

static void cpu_matmul(hl_backend *be, hl_tensor *out, const hl_tensor *w, const hl_tensor *x) {
    cpu_ctx *c = ctx_of(be);
    HL_ASSERT((w->layout == 0 || w->layout == HL_CPU_LAYOUT_X16) && hl_matmul_supports(w->type));
    const int n = (int)x->ne[1];
    const size_t arb = hl_matmul_act_row_bytes(w->type, w->ne[0]);
    mm_args a = {
        .mm = {.type = w->type, .layout = w->layout, .k = w->ne[0], .w = w->data, .w_row_bytes = w->row_bytes,
               .x = x->data, .x_row_floats = x->row_bytes / sizeof(float),
               .act = arb ? act_scratch(c, arb * (size_t)n) : NULL, .act_row_bytes = arb,
               .out = out->data, .out_row_floats = out->row_bytes / sizeof(float), .n = n},
        .isa = c->isa,
        .rows = w->ne[1],
    };
    if (arb) run(c, mm_quantize_fn, &a, (int64_t)n * w->ne[0] / 4);
    run_shared(c, mm_rows_fn, &a, w->ne[0] * w->ne[1] * n, (w->ne[1] + HL_REPACK_ROWS - 1) / HL_REPACK_ROWS);
}

// ---- rmsnorm, swiglu, add ----

typedef struct ew_args {
    hl_tensor *out;
    const hl_tensor *a, *b;
    float eps;
    const hl_vec_ops *vec;
} ew_args;

static void rmsnorm_fn(void *arg, int ith, int nth) {
    ew_args *e = arg;
    const int n = (int)e->a->ne[0];
    const float *w = e->b->data;
    int64_t lo, hi;
    split(e->a->ne[1], ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const float *x = row_f32(e->a, i);
        float *o = row_f32(e->out, i);
        const float inv = 1.0f / sqrtf(e->vec->sum_sq(x, n) / (float)n + e->eps);
        for (int j = 0; j < n; j++) o[j] = x[j] * inv * w[j];
    }
}

static void cpu_rmsnorm(hl_backend *be, hl_tensor *out, const hl_tensor *x, const hl_tensor *w, float eps) {
    ew_args e = {out, x, w, eps, ctx_of(be)->vec};
    run(ctx_of(be), rmsnorm_fn, &e, x->ne[0] * x->ne[1]);
}

static void swiglu_fn(void *arg, int ith, int nth) {
    ew_args *e = arg;
    int64_t lo, hi;
    split(e->a->ne[1], ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const float *g = row_f32(e->a, i), *u = row_f32(e->b, i);
        float *o = row_f32(e->out, i);
        for (int64_t j = 0; j < e->a->ne[0]; j++) o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
    }
}

static void cpu_swiglu(hl_backend *be, hl_tensor *out, const hl_tensor *gate, const hl_tensor *up) {
    ew_args e = {out, gate, up, 0, NULL};
    run(ctx_of(be), swiglu_fn, &e, gate->ne[0] * gate->ne[1] * 8);
}

static void add_fn(void *arg, int ith, int nth) {
    ew_args *e = arg;
    int64_t lo, hi;
    split(e->a->ne[1], ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const float *x = row_f32(e->a, i), *y = row_f32(e->b, i);
        float *o = row_f32(e->out, i);
        for (int64_t j = 0; j < e->a->ne[0]; j++) o[j] = x[j] + y[j];
    }
}

static void cpu_add(hl_backend *be, hl_tensor *out, const hl_tensor *a, const hl_tensor *b) {
    ew_args e = {out, a, b, 0, NULL};
    run(ctx_of(be), add_fn, &e, a->ne[0] * a->ne[1]);
}

// The residual add and the next norm in one pass over each row: the same arithmetic as add_fn
// followed by rmsnorm_fn (same sum order), so results equal those two ops bit for bit.
typedef struct add_norm_args {
    hl_tensor *out, *x;
    const hl_tensor *y, *w;
    float eps;
    const hl_vec_ops *vec;
} add_norm_args;

static void add_rmsnorm_fn(void *arg, int ith, int nth) {
    add_norm_args *e = arg;
    const int n = (int)e->x->ne[0];
    const float *w = e->w->data;
    int64_t lo, hi;
    split(e->x->ne[1], ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *x = row_f32(e->x, i), *o = row_f32(e->out, i);
        if (e->y) {
            const float *y = row_f32(e->y, i);
            for (int j = 0; j < n; j++) x[j] = x[j] + y[j];
        }
        const float inv = 1.0f / sqrtf(e->vec->sum_sq(x, n) / (float)n + e->eps);
        for (int j = 0; j < n; j++) o[j] = x[j] * inv * w[j];
    }
}

static void cpu_add_rmsnorm(hl_backend *be, hl_tensor *out, hl_tensor *x, const hl_tensor *y, const hl_tensor *w,
                            float eps) {
    add_norm_args e = {out, x, y, w, eps, ctx_of(be)->vec};
    run(ctx_of(be), add_rmsnorm_fn, &e, x->ne[0] * x->ne[1]);
}

// ---- rope + KV write ----

typedef struct rope_args {
    hl_tensor *q;
    const hl_tensor *k, *v;
    const hl_kv_layer *kv;
    const hl_kv_geom *geom;
    const hl_batch *batch;
    const hl_rope *rope;
    const hl_vec_ops *vec;
    double base[MAX_HEAD_DIM / 2]; // theta^(-2j / n_rot), computed once per op
} rope_args;

// Rotates x[0..head_dim) by the angles whose cos/sin are cs/sn (n_rot / 2 of each).
static void rotate(float *x, const float *cs, const float *sn, const hl_rope *rope) {
    const int half = rope->n_rot / 2;
    for (int i = 0; i < half; i++) {
        const int i0 = rope->neox ? i : 2 * i, i1 = rope->neox ? i + half : 2 * i + 1;
        const float x0 = x[i0], x1 = x[i1];
        x[i0] = x0 * cs[i] - x1 * sn[i];
        x[i1] = x0 * sn[i] + x1 * cs[i];
    }
}

// Stores the row src[0..n) at element `at` of a KV pool (int8: its scale at scales[at / n]).
static void kv_put(const hl_vec_ops *vec, void *base, float *scales, int kv_type, size_t at, const float *src,
                   int n) {
    if (kv_type == HL_DTYPE_F32) {
        memcpy((float *)base + at, src, (size_t)n * sizeof(float));
        return;
    }
    if (kv_type == HL_DTYPE_I8) {
        scales[at / (size_t)n] = hl_vec_quantize_i8((int8_t *)base + at, src, n);
        return;
    }
    vec->to_f16((uint16_t *)base + at, src, n);
}

static inline size_t kv_at(const hl_kv_geom *g, int32_t slot, int h) {
    const size_t b = (size_t)(slot / HL_KV_BLOCK), t = (size_t)(slot % HL_KV_BLOCK);
    return ((b * (size_t)g->n_kv_heads + (size_t)h) * HL_KV_BLOCK + t) * (size_t)g->head_dim;
}

static void rope_token(const rope_args *a, int i, float *cs, float *sn, float *tmp) {
    const hl_rope *r = a->rope;
    const int hd = a->geom->head_dim;
    for (int j = 0; j < r->n_rot / 2; j++) { // angles in double: positions reach 10^5+
        double angle = a->batch->pos[i] * (double)r->freq_scale * a->base[j];
        if (r->freq_factors) angle /= r->freq_factors[j];
        cs[j] = (float)cos(angle);
        sn[j] = (float)sin(angle);
    }
    float *q = row_f32(a->q, i);
    for (int64_t h = 0; h < a->q->ne[0] / hd; h++) rotate(q + h * hd, cs, sn, r);
    for (int h = 0; h < a->geom->n_kv_heads; h++) {
        const size_t at = kv_at(a->geom, a->batch->slot[i], h);
        memcpy(tmp, row_f32(a->k, i) + (size_t)h * hd, (size_t)hd * sizeof(float));
        rotate(tmp, cs, sn, r);
        kv_put(a->vec, a->kv->k, a->kv->k_scale, a->geom->kv_type, at, tmp, hd);
        kv_put(a->vec, a->kv->v, a->kv->v_scale, a->geom->kv_type, at, row_f32(a->v, i) + (size_t)h * hd, hd);
    }
}

static void rope_fn(void *arg, int ith, int nth) {
    rope_args *a = arg;
    float cs[MAX_HEAD_DIM / 2], sn[MAX_HEAD_DIM / 2], tmp[MAX_HEAD_DIM];
    int64_t lo, hi;
    split(a->batch->n_tokens, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) rope_token(a, (int)i, cs, sn, tmp);
}

static void cpu_rope_kv(hl_backend *be, hl_tensor *q, const hl_tensor *k, const hl_tensor *v,
                        const hl_kv_layer *kv, const hl_kv_geom *geom, const hl_batch *batch,
                        const hl_rope *rope) {
    HL_ASSERT(geom->head_dim <= MAX_HEAD_DIM && rope->n_rot <= geom->head_dim);
    rope_args a = {q, k, v, kv, geom, batch, rope, ctx_of(be)->vec, {0}};
    for (int j = 0; j < rope->n_rot / 2; j++) a.base[j] = pow(rope->theta, -2.0 * j / rope->n_rot);
    run(ctx_of(be), rope_fn, &a, (int64_t)batch->n_tokens * (q->ne[0] + 2 * k->ne[0]) * 4);
}

// ---- attention ----

typedef struct attn_args {
    hl_tensor *out;
    const hl_tensor *q;
    const hl_kv_layer *kv;
    const hl_kv_geom *geom;
    const hl_batch *batch;
    int n_heads;
    float scale;
    const hl_vec_ops *vec;
} attn_args;

// The sequence holding token i (seq_start is increasing).
static int seq_of(const hl_batch *b, int i) {
    int lo = 0, hi = b->n_seqs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (b->seq_start[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// q · k of the K row at element `at` (int8: the codes' dot times the row scale).
static float kv_dot(const attn_args *a, size_t at, const float *q) {
    const int hd = a->geom->head_dim;
    if (a->geom->kv_type == HL_DTYPE_F32) return a->vec->dot_f32((const float *)a->kv->k + at, q, hd);
    if (a->geom->kv_type == HL_DTYPE_I8)
        return a->vec->dot_i8((const int8_t *)a->kv->k + at, q, hd) * a->kv->k_scale[at / (size_t)hd];
    return a->vec->dot_f16((const uint16_t *)a->kv->k + at, q, hd);
}

// acc += p · v of the V row at element `at` (int8: p times the row scale, times the codes).
static void kv_axpy(const attn_args *a, size_t at, float p, float *acc) {
    const int hd = a->geom->head_dim;
    if (a->geom->kv_type == HL_DTYPE_F32) a->vec->axpy_f32(acc, p, (const float *)a->kv->v + at, hd);
    else if (a->geom->kv_type == HL_DTYPE_I8)
        a->vec->axpy_i8(acc, p * a->kv->v_scale[at / (size_t)hd], (const int8_t *)a->kv->v + at, hd);
    else a->vec->axpy_f16(acc, p, (const uint16_t *)a->kv->v + at, hd);
}

// One query head of token i: online softmax over KV blocks of 16 positions (flash-style: the
// running max changes once per block, and acc is rescaled only then).
static void attend(const attn_args *a, int i, int h, float *acc) {
    const hl_batch *b = a->batch;
    const int s = seq_of(b, i), hd = a->geom->head_dim;
    const int kvh = h / (a->n_heads / a->geom->n_kv_heads);
    const int32_t *table = b->block_table + (size_t)s * b->max_blocks;
    const int n_ctx = b->pos[i] + 1;
    const float *q = row_f32(a->q, i) + (size_t)h * hd;
    float m = -INFINITY, l = 0.0f, sc[HL_KV_BLOCK];
    memset(acc, 0, (size_t)hd * sizeof(float));
    for (int j0 = 0; j0 < n_ctx; j0 += HL_KV_BLOCK) {
        const int nj = n_ctx - j0 < HL_KV_BLOCK ? n_ctx - j0 : HL_KV_BLOCK;
        const int32_t base = table[j0 / HL_KV_BLOCK] * HL_KV_BLOCK;
        float bm = -INFINITY;
        for (int j = 0; j < nj; j++) {
            sc[j] = kv_dot(a, kv_at(a->geom, base + j, kvh), q) * a->scale;
            bm = sc[j] > bm ? sc[j] : bm;
        }
        if (bm > m) {
            const float r = expf(m - bm);
            a->vec->scale(acc, r, hd);
            l *= r;
            m = bm;
        }
        for (int j = 0; j < nj; j++) {
            const float p = expf(sc[j] - m);
            l += p;
            kv_axpy(a, kv_at(a->geom, base + j, kvh), p, acc);
        }
    }
    float *o = row_f32(a->out, i) + (size_t)h * hd;
    for (int d = 0; d < hd; d++) o[d] = acc[d] / l;
}

static void attn_fn(void *arg, int ith, int nth) {
    attn_args *a = arg;
    float acc[MAX_HEAD_DIM];
    int64_t lo, hi;
    split((int64_t)a->batch->n_tokens * a->n_heads, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) attend(a, (int)(t / a->n_heads), (int)(t % a->n_heads), acc);
}

// AVX-512: one task per (token, KV head), the GQA group's query heads together.
static void attn_group_fn(void *arg, int ith, int nth) {
    const hl_attn_args *a = arg;
    const int n_kv = a->geom->n_kv_heads;
    int64_t lo, hi;
    split((int64_t)a->batch->n_tokens * n_kv, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const int i = (int)(t / n_kv);
        hl_attention_avx512_group(a, i, seq_of(a->batch, i), (int)(t % n_kv));
    }
}

static void cpu_attention(hl_backend *be, hl_tensor *out, const hl_tensor *q, const hl_kv_layer *kv,
                          const hl_kv_geom *geom, const hl_batch *batch, int n_heads, float scale) {
    HL_ASSERT(geom->head_dim <= MAX_HEAD_DIM && n_heads % geom->n_kv_heads == 0);
    cpu_ctx *c = ctx_of(be);
    int64_t work = 0;
    for (int i = 0; i < batch->n_tokens; i++) work += (int64_t)(batch->pos[i] + 1) * n_heads * geom->head_dim;
    if (c->isa >= HL_CPU_ISA_AVX512 && hl_attention_avx512_fits(geom->head_dim, n_heads / geom->n_kv_heads)) {
        hl_attn_args g = {out, q, kv, geom, batch, n_heads, scale};
        run_shared(c, attn_group_fn, &g, work, (int64_t)batch->n_tokens * geom->n_kv_heads);
        return;
    }
    attn_args a = {out, q, kv, geom, batch, n_heads, scale, c->vec};
    run(c, attn_fn, &a, work);
}

// ---- topk ----

typedef struct topk_args {
    hl_tensor *vals, *ids, *lse;
    const hl_tensor *x;
    const float *inv_temp; // (rows) or NULL
    int k;
} topk_args;

static void topk_fn(void *arg, int ith, int nth) {
    topk_args *a = arg;
    int64_t lo, hi;
    split(a->x->ne[1], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        hl_cpu_topk_row(row_f32(a->x, r), (int)a->x->ne[0], a->k, a->inv_temp ? a->inv_temp[r] : 1.0f,
                        row_f32(a->vals, r), (int32_t *)row_f32(a->ids, r), row_f32(a->lse, r));
}

// One row per share: rows are independent and each costs about one pass over ncols.
static void cpu_topk(hl_backend *be, hl_tensor *vals, hl_tensor *ids, hl_tensor *lse, const hl_tensor *x,
                     const float *inv_temp, int k) {
    HL_ASSERT(k >= 1 && k <= HL_TOPK_MAX && k <= x->ne[0]);
    topk_args a = {vals, ids, lse, x, inv_temp, k};
    cpu_ctx *c = ctx_of(be);
    const int64_t rows = x->ne[1];
    if (rows <= 1 || x->ne[0] * rows < PARALLEL_MIN) topk_fn(&a, 0, 1);
    else hl_threadpool_run_n(c->pool, topk_fn, &a, (int)(rows < 65535 ? rows : 65535));
}

// Any even head_dim up to the stack scratch; any GQA group.
static bool cpu_attention_fits(hl_backend *be, int head_dim, int group) {
    (void)be;
    return head_dim >= 2 && head_dim <= MAX_HEAD_DIM && head_dim % 2 == 0 && group >= 1;
}

// ---- lifecycle ----

static int cpu_sync(hl_backend *be, hl_error *err) {
    (void)be;
    (void)err;
    return HL_OK;
}

static void cpu_free(hl_backend *be) {
    cpu_ctx *c = ctx_of(be);
    hl_threadpool_free(c->pool);
    free(c->act);
    free(c);
    free(be);
}

static const hl_backend_ops cpu_ops = {
    .name = "cpu",
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .supports = cpu_supports,
    .upload_weight = cpu_upload_weight,
    .release_weight = cpu_release_weight,
    .embed = cpu_embed,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope_kv = cpu_rope_kv,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .get_rows = cpu_get_rows,
    .add_rmsnorm = cpu_add_rmsnorm,
    .sync = cpu_sync,
    .topk = cpu_topk,
    .attention_fits = cpu_attention_fits,
};

hl_backend *hl_backend_cpu_create_isa(int n_threads, int isa, hl_error *err) {
    if (isa < 0) isa = hl_cpu_features_select();
    if (isa >= HL_CPU_ISA_COUNT || isa > hl_cpu_features_detect()) {
        hl_errorf(err, HL_ERR_INVAL, "cpu backend: this CPU does not support ISA level %s",
                  hl_cpu_features_name(isa));
        return NULL;
    }
    hl_threadpool *pool = hl_threadpool_create(n_threads, err);
    if (!pool) return NULL;
    cpu_ctx *c = hl_xcalloc(1, sizeof(*c));
    c->pool = pool;
    c->isa = isa;
    c->vec = hl_vec_get(isa);
    hl_backend *be = hl_xcalloc(1, sizeof(*be));
    be->ops = &cpu_ops;
    be->ctx = c;
    return be;
}

hl_backend *hl_backend_cpu_create(int n_threads, hl_error *err) {
    return hl_backend_cpu_create_isa(n_threads, -1, err);
}

int hl_backend_cpu_isa(const hl_backend *be) { return ((const cpu_ctx *)be->ctx)->isa; }
