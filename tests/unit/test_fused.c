// Unit tests for the fused forward pass (issue #7: about six fused kernels per layer):
//   - the add_rmsnorm op: CPU == the CPU's add followed by its rmsnorm bit for bit (x and out),
//     == hl_ref_add_rmsnorm within 1e-6 relative, the y == NULL case, inputs and output that
//     are column views of wider matrices (columns outside the views untouched), small and
//     threaded sizes; CUDA against the reference (skips without a device);
//   - synth_weight with several parts on the CUDA backend == the CPU's bytes part by part
//     (compared through embed, which dequantizes rows; skips without a device);
//   - fused weights at load: the default model (Q4_1, every layer fused) and synthetic:tiny:q4_k_m
//     (layers 2 and 3 have a Q6_K attn_v: q/k/v stay separate there, gate/up fuse everywhere);
//     logits of a mixed prefill/decode batch equal those of the unfused model bit for bit on the
//     CPU (a weight row's dot products do not depend on its neighbours), and so do the hidden
//     states of hl_llama_forward_hidden;
//   - the ops a step queues, counted through a wrapping vtable: 9 per fused layer, 2 more for
//     separate q/k/v, 1 more for separate gate/up, plus embed and the final 2 get_rows +
//     add_rmsnorm + output matmul.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/synth.h"
#include "kernels/backend.h"
#include "kernels/cpu/ref.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define N_VOCAB 512
#define SEED 13

// ---- helpers ----

// A host F32 matrix of rows x cols inside a wider one (row_bytes = wide * 4), at column col0.
typedef struct host_mat {
    float *buf;   // rows * wide floats, owned
    hl_tensor t;  // the view
    int64_t wide; // floats per row of buf
} host_mat;

static host_mat mat_make(int64_t rows, int64_t cols, int64_t wide, int64_t col0, uint64_t seed, float scale) {
    host_mat m = {.buf = hl_xmalloc(sizeof(float) * (size_t)(rows * wide)), .wide = wide};
    hl_rng rng = {seed};
    for (int64_t i = 0; i < rows * wide; i++)
        m.buf[i] = ((float)(hl_rng_next(&rng) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
    m.t = (hl_tensor){.type = HL_DTYPE_F32, .ne = {cols, rows}, .row_bytes = (size_t)wide * 4,
                      .data = m.buf + col0};
    return m;
}

static host_mat mat_copy(const host_mat *a) {
    host_mat m = *a;
    m.buf = hl_xmalloc(sizeof(float) * (size_t)(a->t.ne[1] * a->wide));
    memcpy(m.buf, a->buf, sizeof(float) * (size_t)(a->t.ne[1] * a->wide));
    m.t.data = m.buf + ((float *)a->t.data - a->buf);
    return m;
}

static void assert_bits(const host_mat *a, const host_mat *b, const char *what) {
    for (int64_t i = 0; i < a->t.ne[1] * a->wide; i++)
        ck_assert_msg(memcmp(&a->buf[i], &b->buf[i], 4) == 0, "%s: element %lld: %.9g != %.9g", what, (long long)i,
                      (double)a->buf[i], (double)b->buf[i]);
}

// max |a - b| over the view, relative to max |b|.
static double rel_err(const hl_tensor *a, const hl_tensor *b) {
    double worst = 0, peak = 1e-30;
    for (int64_t i = 0; i < a->ne[1]; i++) {
        const float *ra = (const float *)((const uint8_t *)a->data + (size_t)i * a->row_bytes);
        const float *rb = (const float *)((const uint8_t *)b->data + (size_t)i * b->row_bytes);
        for (int64_t j = 0; j < a->ne[0]; j++) {
            worst = fmax(worst, fabs((double)ra[j] - rb[j]));
            peak = fmax(peak, fabs((double)rb[j]));
        }
    }
    return worst / peak;
}

static hl_backend *cpu(void) {
    hl_error err = {0};
    hl_backend *be = hl_backend_cpu_create(2, &err);
    ck_assert_msg(be, "%s", err.msg);
    return be;
}

// ---- add_rmsnorm on the CPU ----

// rows x n, with x, y and out column views of wider matrices at different offsets.
static void check_cpu_add_rmsnorm(int64_t rows, int64_t n, bool with_y) {
    hl_backend *be = cpu();
    host_mat x = mat_make(rows, n, n + 13, 5, 1, 4.0f), y = mat_make(rows, n, 3 * n, n, 2, 2.0f);
    host_mat out = mat_make(rows, n, n + 7, 7, 3, 9.0f), w = mat_make(1, n, n, 0, 4, 1.5f);
    host_mat x2 = mat_copy(&x), out2 = mat_copy(&out), x3 = mat_copy(&x), out3 = mat_copy(&out);
    const float eps = 1e-5f;

    be->ops->add_rmsnorm(be, &out.t, &x.t, with_y ? &y.t : NULL, &w.t, eps);
    if (with_y) be->ops->add(be, &x2.t, &x2.t, &y.t);
    be->ops->rmsnorm(be, &out2.t, &x2.t, &w.t, eps);
    assert_bits(&x, &x2, "x after add_rmsnorm vs add");
    assert_bits(&out, &out2, "out of add_rmsnorm vs add + rmsnorm (columns outside the view included)");

    hl_ref_add_rmsnorm(&out3.t, &x3.t, with_y ? &y.t : NULL, &w.t, eps);
    assert_bits(&x, &x3, "x after add_rmsnorm vs the reference's add");
    const double e = rel_err(&out.t, &out3.t);
    ck_assert_msg(e < 1e-6, "add_rmsnorm vs reference: relative error %.3g", e);
    if (!with_y) { // x is left alone
        host_mat x0 = mat_make(rows, n, n + 13, 5, 1, 4.0f);
        assert_bits(&x, &x0, "x with y == NULL");
        free(x0.buf);
    }
    host_mat *all[] = {&x, &y, &out, &w, &x2, &out2, &x3, &out3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->buf);
    hl_backend_free(be);
}

START_TEST(test_add_rmsnorm_cpu) {
    check_cpu_add_rmsnorm(3, 67, true);   // one thread
    check_cpu_add_rmsnorm(64, 576, true); // the pool
    check_cpu_add_rmsnorm(64, 576, false);
    check_cpu_add_rmsnorm(1, 4096, false);
}
END_TEST

// ---- CUDA (skips without a device) ----

static hl_backend *cuda_or_skip(void) {
    static int printed = 0;
    hl_error err = {0};
    hl_backend *be = hl_backend_cuda_create(0, &err);
    if (!be && !printed++) printf("SKIP: no CUDA device (%s)\n", err.msg);
    return be;
}

static void *dev_put(hl_backend *be, const host_mat *m) {
    const size_t n = sizeof(float) * (size_t)(m->t.ne[1] * m->wide);
    void *d = be->ops->alloc(be, n);
    ck_assert(d);
    ck_assert_int_eq(be->ops->upload(be, d, m->buf, n, NULL), HL_OK);
    return d;
}

static hl_tensor dev_view(const host_mat *m, void *d) {
    hl_tensor t = m->t;
    t.data = (float *)d + ((float *)m->t.data - m->buf);
    return t;
}

START_TEST(test_add_rmsnorm_cuda) {
    hl_backend *be = cuda_or_skip();
    if (!be) return;
    const int64_t rows = 37, n = 4096;
    for (int with_y = 0; with_y < 2; with_y++) {
        host_mat x = mat_make(rows, n, n + 64, 32, 1, 4.0f), y = mat_make(rows, n, 2 * n, n, 2, 2.0f);
        host_mat out = mat_make(rows, n, n + 96, 64, 3, NAN), w = mat_make(1, n, n, 0, 4, 1.5f);
        void *dx = dev_put(be, &x), *dy = dev_put(be, &y), *dout = dev_put(be, &out), *dw = dev_put(be, &w);
        hl_tensor tx = dev_view(&x, dx), ty = dev_view(&y, dy), tout = dev_view(&out, dout), tw = dev_view(&w, dw);
        be->ops->add_rmsnorm(be, &tout, &tx, with_y ? &ty : NULL, &tw, 1e-5f);
        host_mat gx = mat_copy(&x), gout = mat_copy(&out);
        ck_assert_int_eq(be->ops->download(be, gx.buf, dx, sizeof(float) * (size_t)(rows * x.wide), NULL), HL_OK);
        ck_assert_int_eq(be->ops->download(be, gout.buf, dout, sizeof(float) * (size_t)(rows * out.wide), NULL),
                         HL_OK);
        hl_ref_add_rmsnorm(&out.t, &x.t, with_y ? &y.t : NULL, &w.t, 1e-5f);
        assert_bits(&gx, &x, "cuda x += y (fp32 adds are exact to the reference's)");
        const double e = rel_err(&gout.t, &out.t);
        ck_assert_msg(e < 1e-5, "cuda add_rmsnorm vs reference: relative error %.3g", e);
        for (int64_t i = 0; i < rows; i++) { // columns outside the view keep their NaN poison
            ck_assert(isnan(gout.buf[i * out.wide]) && isnan(gout.buf[i * out.wide + out.wide - 1]));
        }
        void *d[] = {dx, dy, dout, dw};
        for (int i = 0; i < 4; i++) be->ops->release(be, d[i]);
        host_mat *all[] = {&x, &y, &out, &w, &gx, &gout};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->buf);
    }
    hl_backend_free(be);
}
END_TEST

// A three-part weight generated on the device == the parts generated on the CPU, stacked and
// uploaded; part boundaries (256, 64) off the repack's 64-row chunks of the tiny shape's q/k/v.
START_TEST(test_synth_parts_cuda) {
    hl_backend *be = cuda_or_skip();
    if (!be) return;
    const int64_t k = 256, rows[3] = {256, 64, 64};
    const char *names[3] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"};
    const int types[2] = {HL_DTYPE_Q8_0, HL_DTYPE_Q4_0};
    for (int ti = 0; ti < 2; ti++) {
        size_t rb;
        ck_assert_int_eq(hl_quant_row_bytes(types[ti], k, &rb, NULL), HL_OK);
        uint8_t *bytes = hl_xmalloc(rb * 384);
        float *vals = hl_xmalloc(sizeof(float) * (size_t)k);
        hl_synth_part parts[3];
        for (int p = 0, r0 = 0; p < 3; r0 += (int)rows[p], p++) {
            parts[p] = (hl_synth_part){names[p], rows[p], 0.06f + 0.01f * (float)p};
            for (int64_t r = 0; r < rows[p]; r++) {
                for (int64_t j = 0; j < k; j++)
                    vals[j] = hl_synth_value(SEED, names[p], (uint64_t)(r * k + j), parts[p].std);
                ck_assert_int_eq(hl_quant_quantize(types[ti], vals, bytes + rb * (size_t)(r0 + r), k, NULL), HL_OK);
            }
        }
        hl_tensor a, b, bad;
        hl_error err = {0};
        ck_assert_int_eq(be->ops->upload_weight(be, &a, types[ti], (int64_t[2]){k, 384}, bytes, &err), HL_OK);
        ck_assert_msg(be->ops->synth_weight(be, &b, types[ti], (int64_t[2]){k, 384}, SEED, parts, 3, &err) == HL_OK,
                      "%s", err.msg);
        ck_assert_int_eq(be->ops->synth_weight(be, &bad, types[ti], (int64_t[2]){k, 383}, SEED, parts, 3, &err),
                         HL_ERR_INVAL); // rows that do not add up
        int32_t ids[384];
        for (int i = 0; i < 384; i++) ids[i] = i;
        const size_t n_bytes = sizeof(float) * (size_t)(384 * k);
        void *da = be->ops->alloc(be, n_bytes), *db = be->ops->alloc(be, n_bytes);
        hl_tensor ta = {.type = HL_DTYPE_F32, .ne = {k, 384}, .row_bytes = (size_t)k * 4, .data = da}, tb = ta;
        tb.data = db;
        be->ops->embed(be, &ta, &a, ids, 384);
        be->ops->embed(be, &tb, &b, ids, 384);
        float *ha = hl_xmalloc(n_bytes), *hb = hl_xmalloc(n_bytes);
        ck_assert_int_eq(be->ops->download(be, ha, da, n_bytes, NULL), HL_OK);
        ck_assert_int_eq(be->ops->download(be, hb, db, n_bytes, NULL), HL_OK);
        ck_assert_msg(memcmp(ha, hb, n_bytes) == 0, "%s: device parts differ from the CPU's",
                      hl_quant_name(types[ti]));
        be->ops->release(be, da), be->ops->release(be, db);
        be->ops->release_weight(be, &a), be->ops->release_weight(be, &b);
        free(ha), free(hb), free(bytes), free(vals);
    }
    hl_backend_free(be);
}
END_TEST

// ---- counting ops through a wrapping vtable ----

enum { C_EMBED, C_MATMUL, C_RMSNORM, C_ROPE, C_ATTN, C_SWIGLU, C_ADD, C_ROWS, C_ADD_NORM, C_N };
static int counts[C_N];
static const hl_backend_ops *inner_ops; // the CPU's; its functions read only be->ctx

static void c_embed(hl_backend *be, hl_tensor *o, const hl_tensor *t, const int32_t *ids, int n) {
    counts[C_EMBED]++, inner_ops->embed(be, o, t, ids, n);
}
static void c_matmul(hl_backend *be, hl_tensor *o, const hl_tensor *w, const hl_tensor *x) {
    counts[C_MATMUL]++, inner_ops->matmul(be, o, w, x);
}
static void c_rmsnorm(hl_backend *be, hl_tensor *o, const hl_tensor *x, const hl_tensor *w, float eps) {
    counts[C_RMSNORM]++, inner_ops->rmsnorm(be, o, x, w, eps);
}
static void c_rope(hl_backend *be, hl_tensor *q, const hl_tensor *k, const hl_tensor *v, const hl_kv_layer *kv,
                   const hl_kv_geom *g, const hl_batch *b, const hl_rope *r) {
    counts[C_ROPE]++, inner_ops->rope_kv(be, q, k, v, kv, g, b, r);
}
static void c_attn(hl_backend *be, hl_tensor *o, const hl_tensor *q, const hl_kv_layer *kv, const hl_kv_geom *g,
                   const hl_batch *b, int n_heads, float scale) {
    counts[C_ATTN]++, inner_ops->attention(be, o, q, kv, g, b, n_heads, scale);
}
static void c_swiglu(hl_backend *be, hl_tensor *o, const hl_tensor *g, const hl_tensor *u) {
    counts[C_SWIGLU]++, inner_ops->swiglu(be, o, g, u);
}
static void c_add(hl_backend *be, hl_tensor *o, const hl_tensor *a, const hl_tensor *b) {
    counts[C_ADD]++, inner_ops->add(be, o, a, b);
}
static void c_rows(hl_backend *be, hl_tensor *o, const hl_tensor *x, const int32_t *rows, int n) {
    counts[C_ROWS]++, inner_ops->get_rows(be, o, x, rows, n);
}
static void c_add_norm(hl_backend *be, hl_tensor *o, hl_tensor *x, const hl_tensor *y, const hl_tensor *w,
                       float eps) {
    counts[C_ADD_NORM]++, inner_ops->add_rmsnorm(be, o, x, y, w, eps);
}

static hl_backend_ops counting_ops;

// A backend that shares inner's context and counts every op call.
static hl_backend counting(hl_backend *inner) {
    inner_ops = inner->ops;
    counting_ops = *inner->ops;
    counting_ops.embed = c_embed, counting_ops.matmul = c_matmul, counting_ops.rmsnorm = c_rmsnorm;
    counting_ops.rope_kv = c_rope, counting_ops.attention = c_attn, counting_ops.swiglu = c_swiglu;
    counting_ops.add = c_add, counting_ops.get_rows = c_rows, counting_ops.add_rmsnorm = c_add_norm;
    return (hl_backend){.ops = &counting_ops, .ctx = inner->ctx};
}

// ---- fused vs unfused models ----

static hl_model *load(const char *name, hl_backend *be, bool no_fuse) {
    hl_error err = {0};
    hl_model_params p = hl_model_default_params();
    p.synth_n_vocab = N_VOCAB;
    p.synth_seed = SEED;
    p.no_fuse = no_fuse;
    hl_model *m = hl_model_load(name, be, &p, &err);
    ck_assert_msg(m, "%s: %s", name, err.msg);
    return m;
}

// Layers whose q/k/v (which = 0) or gate/up (which = 1) are one weight.
static int n_fused(const hl_model *m, int which) {
    int n = 0;
    for (int il = 0; il < m->cfg.n_layers; il++) {
        const hl_model_layer *L = &m->layers[il];
        const hl_tensor *f = which == 0 ? &L->wqkv : &L->w_gate_up;
        const hl_tensor *part = which == 0 ? &L->wq : &L->w_gate;
        ck_assert_msg((f->data != NULL) != (part->data != NULL), "layer %d: fused and separate weights", il);
        n += f->data != NULL;
    }
    return n;
}

typedef struct run_out {
    float *logits;  // (N_ROWS, n_vocab)
    float *hidden;  // (N_HIDDEN, dim)
} run_out;

#define N_ROWS 5    // logit rows of the two steps below: 3 + 2
#define N_HIDDEN 6  // tokens of the hidden-state step

// Two mixed steps on a fresh cache: [A: 9-token prefill (2 logits), B: 4-token prefill (1)],
// then [A: decode (1), B: 3-token chunk (1)]; then a hidden-state step of C (6 tokens).
static run_out run_mixed(const hl_model *m) {
    hl_error err = {0};
    const int n_vocab = m->cfg.n_vocab;
    hl_kv_geom g = {.n_blocks = 16, .n_kv_heads = m->cfg.n_kv_heads, .head_dim = m->cfg.head_dim,
                    .kv_type = HL_DTYPE_F16};
    hl_kv_cache *kv = hl_kv_cache_create(m->be, m->cfg.n_layers, &g, &err);
    ck_assert_msg(kv, "%s", err.msg);
    hl_llama *l = hl_llama_create(m, kv, 32, 4, 8, &err);
    ck_assert_msg(l, "%s", err.msg);
    int32_t ids[32];
    hl_rng rng = {7};
    for (int i = 0; i < 32; i++) ids[i] = (int32_t)(hl_rng_next(&rng) % (uint64_t)(n_vocab < 512 ? n_vocab : 512));
    hl_kv_seq a = {0}, b = {0}, c = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &a, 10, &err), HL_OK);
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &b, 7, &err), HL_OK);
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &c, N_HIDDEN, &err), HL_OK);
    run_out r = {hl_xmalloc(sizeof(float) * (size_t)N_ROWS * (size_t)n_vocab),
                 hl_xmalloc(sizeof(float) * (size_t)N_HIDDEN * (size_t)m->cfg.dim)};
    hl_llama_seq s1[2] = {{ids, 9, 0, a.blocks, a.n_blocks, 2}, {ids + 10, 4, 0, b.blocks, b.n_blocks, 1}};
    ck_assert_msg(hl_llama_forward(l, s1, 2, r.logits, &err) == HL_OK, "%s", err.msg);
    hl_llama_seq s2[2] = {{ids + 9, 1, 9, a.blocks, a.n_blocks, 1}, {ids + 14, 3, 4, b.blocks, b.n_blocks, 1}};
    ck_assert_msg(hl_llama_forward(l, s2, 2, r.logits + 3 * (size_t)n_vocab, &err) == HL_OK, "%s", err.msg);
    hl_llama_seq s3 = {ids + 20, N_HIDDEN, 0, c.blocks, c.n_blocks, 0};
    ck_assert_msg(hl_llama_forward_hidden(l, &s3, 1, r.hidden, &err) == HL_OK, "%s", err.msg);
    hl_kv_cache_seq_release(kv, &a), hl_kv_cache_seq_release(kv, &b), hl_kv_cache_seq_release(kv, &c);
    hl_llama_free(l);
    hl_kv_cache_free(kv);
    return r;
}

static void assert_same_floats(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], 4) == 0, "%s: element %zu: %.9g != %.9g", what, i, (double)a[i],
                      (double)b[i]);
}

// Fused == unfused bit for bit, the expected fusion, and the op count of one step.
static void check_model(const char *name, int want_qkv, int want_gu) {
    hl_backend *inner = cpu();
    hl_backend be = counting(inner);
    hl_model *fused = load(name, &be, false), *plain = load(name, &be, true);
    const int L = fused->cfg.n_layers;
    ck_assert_int_eq(n_fused(fused, 0), want_qkv < 0 ? L : want_qkv);
    ck_assert_int_eq(n_fused(fused, 1), want_gu < 0 ? L : want_gu);
    ck_assert_int_eq(n_fused(plain, 0), 0);
    ck_assert_int_eq(n_fused(plain, 1), 0);
    ck_assert_uint_eq(fused->weight_bytes, plain->weight_bytes);

    memset(counts, 0, sizeof counts);
    run_out a = run_mixed(fused);
    // per step: embed, 2 add_rmsnorm + rope + attention + swiglu + 4 matmuls per fused layer
    // (2 more matmuls for separate q/k/v, 1 for gate/up), then 2 get_rows + add_rmsnorm + matmul
    // (steps with logits; the hidden step adds its own add_rmsnorm instead)
    const int nq = n_fused(fused, 0), ng = n_fused(fused, 1);
    ck_assert_int_eq(counts[C_EMBED], 3);
    ck_assert_int_eq(counts[C_ADD_NORM], 3 * 2 * L + 3);
    ck_assert_int_eq(counts[C_MATMUL], 3 * (4 * L + 2 * (L - nq) + (L - ng)) + 2);
    ck_assert_int_eq(counts[C_ROPE], 3 * L);
    ck_assert_int_eq(counts[C_ATTN], 3 * L);
    ck_assert_int_eq(counts[C_SWIGLU], 3 * L);
    ck_assert_int_eq(counts[C_ROWS], 2 * 2);
    ck_assert_int_eq(counts[C_RMSNORM] + counts[C_ADD], 0);
    if (nq == L && ng == L) { // the design: 9 ops per layer
        int total = 0;
        for (int i = 0; i < C_N; i++) total += counts[i];
        ck_assert_int_eq(total, 3 * (1 + 9 * L) + 2 * 4 + 1);
    }

    run_out b = run_mixed(plain);
    assert_same_floats(a.logits, b.logits, (size_t)N_ROWS * (size_t)fused->cfg.n_vocab, "logits fused vs unfused");
    assert_same_floats(a.hidden, b.hidden, (size_t)N_HIDDEN * (size_t)fused->cfg.dim, "hidden fused vs unfused");
    float peak = 0;
    for (size_t i = 0; i < (size_t)N_ROWS * (size_t)fused->cfg.n_vocab; i++) peak = fmaxf(peak, fabsf(a.logits[i]));
    ck_assert_msg(peak > 1.0f && isfinite(peak), "logits look degenerate (max |logit| %g)", (double)peak);
    free(a.logits), free(a.hidden), free(b.logits), free(b.hidden);
    hl_model_free(fused);
    hl_model_free(plain);
    hl_backend_free(inner);
}

START_TEST(test_fused_default_model) {
    if (access(DEFAULT_MODEL, R_OK) != 0) {
        printf("SKIP: %s not found (sh tools/fetch_model.sh models)\n", DEFAULT_MODEL);
        return;
    }
    check_model(DEFAULT_MODEL, -1, -1);
}
END_TEST

// Q4_K_M: layers 2 and 3 of 4 get a Q6_K attn_v (llama.cpp's use_more_bits), so only layers 0
// and 1 fuse q/k/v; gate/up are Q4_K everywhere.
START_TEST(test_fused_q4_k_m) { check_model("synthetic:tiny:q4_k_m", 2, -1); }
END_TEST

START_TEST(test_fused_q8_0) { check_model("synthetic:tiny:q8_0", -1, -1); }
END_TEST

Suite *fused_suite(void) {
    Suite *s = suite_create("fused");
    TCase *tc = tcase_create("fused");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_add_rmsnorm_cpu);
    tcase_add_test(tc, test_add_rmsnorm_cuda);
    tcase_add_test(tc, test_synth_parts_cuda);
    tcase_add_test(tc, test_fused_default_model);
    tcase_add_test(tc, test_fused_q4_k_m);
    tcase_add_test(tc, test_fused_q8_0);
    suite_add_tcase(s, tc);
    return s;
}
