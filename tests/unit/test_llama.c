// Unit tests for engine/llama, engine/model and engine/kv_cache on synthetic:tiny models
// (dim 256, 4 layers, 8 heads, 2 KV heads, FFN 768; vocabulary of 512 tokens, no tokenizer):
//   - one prefill == chunks of 1, 3, 7 tokens, bit for bit (the CPU backend's per-row
//     determinism contract), and == the same tokens mixed with another sequence in one step;
//   - KV paging: scattered (shuffled) block ids give the same logits bit for bit;
//   - the forward pass against an independent scalar reference written here (double loops over
//     dequantized weights, adjacent-pair RoPE, plain softmax): tiny f32 within 0.02 (the F16 KV
//     cache is the only approximation), tiny q8_0 within 0.35 (8-bit activations; 0.23 seen), logits
//     have a standard deviation of about 3;
//   - load-time errors (unknown shapes and types, a backend that cannot run a weight type) and
//     forward errors (bad ids, short block tables), and the block allocator.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/synth.h"
#include "kernels/backend.h"

#define N_VOCAB 512
#define SEED 11
#define N_PROMPT 23

static hl_backend *be;

static void setup(void) {
    hl_error err = {0};
    be = hl_backend_cpu_create(2, &err);
    ck_assert_msg(be, "%s", err.msg);
}

static void teardown(void) {
    hl_backend_free(be);
    be = NULL;
}

static hl_model *load(const char *name) {
    hl_error err = {0};
    hl_model_params p = hl_model_default_params();
    p.synth_n_vocab = N_VOCAB;
    p.synth_seed = SEED;
    hl_model *m = hl_model_load(name, be, &p, &err);
    ck_assert_msg(m, "%s: %s", name, err.msg);
    return m;
}

static void prompt(int32_t *ids, int n, uint64_t seed) {
    hl_rng rng = {seed};
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(hl_rng_next(&rng) % N_VOCAB);
}

static hl_kv_cache *cache(const hl_model *m, int n_blocks) {
    hl_error err = {0};
    hl_kv_geom g = {.n_blocks = n_blocks, .n_kv_heads = m->cfg.n_kv_heads, .head_dim = m->cfg.head_dim,
                    .kv_type = HL_DTYPE_F16};
    hl_kv_cache *kv = hl_kv_cache_create(be, m->cfg.n_layers, &g, &err);
    ck_assert_msg(kv, "%s", err.msg);
    return kv;
}

// Logits of every position of ids, processed in chunks of `chunk` tokens. Blocks come from a
// fresh cache, shuffled when shuffle_seed != 0. Returns (n, n_vocab) floats (caller frees).
static float *run_chunks(const hl_model *m, const int32_t *ids, int n, int chunk, uint64_t shuffle_seed) {
    hl_error err = {0};
    hl_kv_cache *kv = cache(m, 32);
    if (shuffle_seed) hl_kv_cache_shuffle_free(kv, shuffle_seed);
    hl_llama *l = hl_llama_create(m, kv, 64, 2, 64, &err);
    ck_assert_msg(l, "%s", err.msg);
    hl_kv_seq seq = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &seq, n, &err), HL_OK);
    float *out = malloc(sizeof(float) * (size_t)n * N_VOCAB);
    for (int p = 0; p < n; p += chunk) {
        int nt = n - p < chunk ? n - p : chunk;
        hl_llama_seq s = {.tokens = ids + p, .n_tokens = nt, .n_past = p, .blocks = seq.blocks,
                          .n_blocks = seq.n_blocks, .n_logits = nt};
        ck_assert_msg(hl_llama_forward(l, &s, 1, out + (size_t)p * N_VOCAB, &err) == HL_OK, "%s", err.msg);
    }
    hl_kv_cache_seq_release(kv, &seq);
    hl_llama_free(l);
    hl_kv_cache_free(kv);
    return out;
}

static void assert_same(const float *a, const float *b, int n, const char *what) {
    for (int i = 0; i < n * N_VOCAB; i++)
        ck_assert_msg(a[i] == b[i], "%s: position %d token %d: %.9g != %.9g", what, i / N_VOCAB, i % N_VOCAB,
                      (double)a[i], (double)b[i]);
}

// ---- chunking and paging ----

static void check_chunks(const char *name) {
    hl_model *m = load(name);
    int32_t ids[N_PROMPT];
    prompt(ids, N_PROMPT, 5);
    float *whole = run_chunks(m, ids, N_PROMPT, N_PROMPT, 0);
    const int chunks[] = {1, 3, 7};
    for (int i = 0; i < 3; i++) {
        float *part = run_chunks(m, ids, N_PROMPT, chunks[i], 0);
        char what[64];
        snprintf(what, sizeof what, "%s chunk %d", name, chunks[i]);
        assert_same(whole, part, N_PROMPT, what);
        free(part);
    }
    float *shuffled = run_chunks(m, ids, N_PROMPT, 5, 0x5eed);
    assert_same(whole, shuffled, N_PROMPT, "shuffled blocks");
    free(shuffled);
    free(whole);
    hl_model_free(m);
}

START_TEST(test_chunks_f32) { check_chunks("synthetic:tiny:f32"); }
END_TEST

START_TEST(test_chunks_q8_0) { check_chunks("synthetic:tiny:q8_0"); }
END_TEST

START_TEST(test_chunks_q4_k_m) { check_chunks("synthetic:tiny:q4_k_m"); }
END_TEST

// The shuffle really scatters blocks (else the paging test above proves nothing).
START_TEST(test_shuffle_scatters_blocks) {
    hl_model *m = load("synthetic:tiny:f32");
    hl_kv_cache *kv = cache(m, 32);
    hl_kv_cache_shuffle_free(kv, 0x5eed);
    hl_kv_seq seq = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &seq, N_PROMPT, NULL), HL_OK);
    ck_assert_int_eq(seq.n_blocks, 2);
    ck_assert(seq.blocks[0] != 0 || seq.blocks[1] != 1);
    hl_kv_cache_seq_release(kv, &seq);
    hl_kv_cache_free(kv);
    hl_model_free(m);
}
END_TEST

// Sequence B's prefill chunk and sequence A's decode in one step give the logits each gets alone.
START_TEST(test_mixed_batch) {
    hl_error err = {0};
    hl_model *m = load("synthetic:tiny:q8_0");
    int32_t a[N_PROMPT], b[N_PROMPT];
    prompt(a, N_PROMPT, 1);
    prompt(b, N_PROMPT, 2);
    float *ra = run_chunks(m, a, N_PROMPT, N_PROMPT, 0), *rb = run_chunks(m, b, N_PROMPT, N_PROMPT, 0);
    hl_kv_cache *kv = cache(m, 32);
    hl_llama *l = hl_llama_create(m, kv, 64, 2, 64, &err);
    hl_kv_seq sa = {0}, sb = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &sa, N_PROMPT, &err), HL_OK);
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &sb, N_PROMPT, &err), HL_OK);
    const int na = N_PROMPT - 1, nb = 10; // A: all but its last token; B: its first 10
    hl_llama_seq s1 = {.tokens = a, .n_tokens = na, .n_past = 0, .blocks = sa.blocks, .n_blocks = sa.n_blocks};
    ck_assert_int_eq(hl_llama_forward(l, &s1, 1, NULL, &err), HL_OK);
    hl_llama_seq step[2] = {
        {.tokens = a + na, .n_tokens = 1, .n_past = na, .blocks = sa.blocks, .n_blocks = sa.n_blocks,
         .n_logits = 1},
        {.tokens = b, .n_tokens = nb, .n_past = 0, .blocks = sb.blocks, .n_blocks = sb.n_blocks,
         .n_logits = nb},
    };
    float *out = malloc(sizeof(float) * (1 + nb) * N_VOCAB);
    ck_assert_msg(hl_llama_forward(l, step, 2, out, &err) == HL_OK, "%s", err.msg);
    assert_same(out, ra + (size_t)na * N_VOCAB, 1, "decode in a mixed step");
    assert_same(out + N_VOCAB, rb, nb, "prefill in a mixed step");
    free(out);
    free(ra);
    free(rb);
    hl_kv_cache_seq_release(kv, &sa);
    hl_kv_cache_seq_release(kv, &sb);
    hl_llama_free(l);
    hl_kv_cache_free(kv);
    hl_model_free(m);
}
END_TEST

// ---- scalar reference ----

typedef struct ref_model {
    int dim, n_layers, n_heads, n_kv, hd, ffn;
    float eps, theta;
    float *w[64]; // dequantized tensors by plan index
    const hl_synth_model *syn;
} ref_model;

static const float *W(const ref_model *r, const char *name) {
    int i = hl_synth_model_find(r->syn, name);
    ck_assert_msg(i >= 0, "%s", name);
    return r->w[i];
}

static const float *WL(const ref_model *r, int il, const char *suffix) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", il, suffix);
    return W(r, name);
}

static void ref_load(ref_model *r, const hl_synth_model *syn, const hl_model_config *c) {
    *r = (ref_model){.dim = c->dim, .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv = c->n_kv_heads,
                     .hd = c->head_dim, .ffn = c->ffn_dim, .eps = c->rms_eps, .theta = c->rope_theta, .syn = syn};
    ck_assert_int_le(hl_synth_model_n_tensors(syn), 64);
    for (int i = 0; i < hl_synth_model_n_tensors(syn); i++) {
        hl_synth_tensor_info t = hl_synth_model_tensor(syn, i);
        void *raw = malloc(t.n_bytes);
        ck_assert_int_eq(hl_synth_model_fill(syn, i, raw, t.n_bytes, NULL), HL_OK);
        r->w[i] = malloc(sizeof(float) * (size_t)(t.ne[0] * t.ne[1]));
        ck_assert_int_eq(hl_quant_dequantize(t.type, raw, r->w[i], t.ne[0] * t.ne[1], NULL), HL_OK);
        free(raw);
    }
}

static void ref_free(ref_model *r) {
    for (int i = 0; i < hl_synth_model_n_tensors(r->syn); i++) free(r->w[i]);
}

static void ref_rmsnorm(double *o, const double *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * inv * w[i];
}

// o (rows) = W (rows, cols) · x (cols)
static void ref_matvec(double *o, const float *w, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[(size_t)r * cols + c] * x[c];
        o[r] = s;
    }
}

static void ref_rope(double *v, int n_heads, int hd, int pos, float theta) {
    for (int h = 0; h < n_heads; h++) {
        for (int i = 0; i < hd / 2; i++) {
            double a = pos * pow(theta, -2.0 * i / hd), c = cos(a), s = sin(a);
            double *p = v + h * hd + 2 * i, x0 = p[0], x1 = p[1];
            p[0] = x0 * c - x1 * s;
            p[1] = x0 * s + x1 * c;
        }
    }
}

// Attention of one position over keys/values 0..pos (K, V: (n_ctx, n_kv * hd) doubles).
static void ref_attend(const ref_model *r, double *out, const double *q, const double *K, const double *V,
                       int pos) {
    const int kvd = r->n_kv * r->hd;
    double *sc = malloc(sizeof(double) * (size_t)(pos + 1));
    for (int h = 0; h < r->n_heads; h++) {
        const int kh = h / (r->n_heads / r->n_kv);
        double mx = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) {
            double s = 0;
            for (int d = 0; d < r->hd; d++) s += q[h * r->hd + d] * K[(size_t)t * kvd + kh * r->hd + d];
            sc[t] = s / sqrt((double)r->hd);
            mx = sc[t] > mx ? sc[t] : mx;
        }
        for (int t = 0; t <= pos; t++) sum += (sc[t] = exp(sc[t] - mx));
        for (int d = 0; d < r->hd; d++) {
            double o = 0;
            for (int t = 0; t <= pos; t++) o += sc[t] / sum * V[(size_t)t * kvd + kh * r->hd + d];
            out[h * r->hd + d] = o;
        }
    }
    free(sc);
}

// Logits (n, n_vocab) of ids by the plain reference: one position at a time, full K/V history.
static void ref_forward(const ref_model *r, const int32_t *ids, int n, float *logits) {
    const int qd = r->n_heads * r->hd, kvd = r->n_kv * r->hd, big = r->ffn > qd ? r->ffn : qd;
    double *K = calloc((size_t)r->n_layers * n * kvd, sizeof(double));
    double *V = calloc((size_t)r->n_layers * n * kvd, sizeof(double));
    double *x = malloc(sizeof(double) * r->dim), *h = malloc(sizeof(double) * r->dim);
    double *q = malloc(sizeof(double) * qd), *att = malloc(sizeof(double) * qd);
    double *o = malloc(sizeof(double) * r->dim);
    double *g = malloc(sizeof(double) * big), *u = malloc(sizeof(double) * big);
    const float *out_w = hl_synth_model_find(r->syn, "output.weight") >= 0 ? W(r, "output.weight")
                                                                             : W(r, "token_embd.weight");
    for (int p = 0; p < n; p++) {
        for (int i = 0; i < r->dim; i++) x[i] = W(r, "token_embd.weight")[(size_t)ids[p] * r->dim + i];
        for (int il = 0; il < r->n_layers; il++) {
            double *Kl = K + (size_t)il * n * kvd, *Vl = V + (size_t)il * n * kvd;
            ref_rmsnorm(h, x, WL(r, il, "attn_norm"), r->dim, r->eps);
            ref_matvec(q, WL(r, il, "attn_q"), h, qd, r->dim);
            ref_matvec(Kl + (size_t)p * kvd, WL(r, il, "attn_k"), h, kvd, r->dim);
            ref_matvec(Vl + (size_t)p * kvd, WL(r, il, "attn_v"), h, kvd, r->dim);
            ref_rope(q, r->n_heads, r->hd, p, r->theta);
            ref_rope(Kl + (size_t)p * kvd, r->n_kv, r->hd, p, r->theta);
            ref_attend(r, att, q, Kl, Vl, p);
            ref_matvec(o, WL(r, il, "attn_output"), att, r->dim, qd);
            for (int i = 0; i < r->dim; i++) x[i] += o[i];
            ref_rmsnorm(h, x, WL(r, il, "ffn_norm"), r->dim, r->eps);
            ref_matvec(g, WL(r, il, "ffn_gate"), h, r->ffn, r->dim);
            ref_matvec(u, WL(r, il, "ffn_up"), h, r->ffn, r->dim);
            for (int i = 0; i < r->ffn; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(o, WL(r, il, "ffn_down"), g, r->dim, r->ffn);
            for (int i = 0; i < r->dim; i++) x[i] += o[i];
        }
        ref_rmsnorm(h, x, W(r, "output_norm.weight"), r->dim, r->eps);
        for (int v = 0; v < N_VOCAB; v++) {
            double s = 0;
            for (int i = 0; i < r->dim; i++) s += (double)out_w[(size_t)v * r->dim + i] * h[i];
            logits[(size_t)p * N_VOCAB + v] = (float)s;
        }
    }
    free(K), free(V), free(x), free(h), free(q), free(att), free(o), free(g), free(u);
}

static int argmax(const float *row) {
    int best = 0;
    for (int i = 1; i < N_VOCAB; i++) best = row[i] > row[best] ? i : best;
    return best;
}

static void check_reference(const char *shape_type, int ftype, double tol) {
    hl_model *m = load(shape_type);
    hl_synth_model *syn = hl_synth_model_create(hl_synth_shape_find("tiny"), ftype, SEED, N_VOCAB, NULL);
    ref_model r;
    ref_load(&r, syn, &m->cfg);
    int32_t ids[N_PROMPT];
    prompt(ids, N_PROMPT, 9);
    float *got = run_chunks(m, ids, N_PROMPT, 8, 0), *want = malloc(sizeof(float) * N_PROMPT * N_VOCAB);
    ref_forward(&r, ids, N_PROMPT, want);
    double max_err = 0, ss = 0;
    for (int i = 0; i < N_PROMPT * N_VOCAB; i++) {
        max_err = fmax(max_err, fabs((double)got[i] - want[i]));
        ss += (double)want[i] * want[i];
    }
    const double rms = sqrt(ss / (N_PROMPT * N_VOCAB));
    ck_assert_msg(rms > 1.0, "%s: reference logits are flat (rms %g)", shape_type, rms);
    ck_assert_msg(max_err <= tol, "%s: max |logit error| %g > %g", shape_type, max_err, tol);
    for (int p = 0; p < N_PROMPT; p++) { // top-1 agrees, or both picks are within tol in the reference
        const float *w = want + (size_t)p * N_VOCAB;
        const int a = argmax(got + (size_t)p * N_VOCAB), b = argmax(w);
        ck_assert_msg(a == b || w[b] - w[a] <= 2 * tol, "%s: position %d: top-1 %d vs %d", shape_type, p, a, b);
    }
    fprintf(stderr, "llama reference %s: max |logit error| %.4g (rms logit %.3g)\n", shape_type, max_err, rms);
    free(got);
    free(want);
    ref_free(&r);
    hl_synth_model_free(syn);
    hl_model_free(m);
}

START_TEST(test_reference_f32) { check_reference("synthetic:tiny:f32", 0 /* HL_FTYPE_F32 */, 0.02); }
END_TEST

START_TEST(test_reference_q8_0) { check_reference("synthetic:tiny:q8_0", 2 /* HL_FTYPE_Q8_0 */, 0.35); }
END_TEST

// ---- errors ----

START_TEST(test_load_errors) {
    hl_error err = {0};
    hl_model_params p = hl_model_default_params();
    p.synth_n_vocab = N_VOCAB;
    const char *bad[] = {"synthetic:huge:f32", "synthetic:tiny:q9_9", "synthetic:tiny", "synthetic:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(hl_model_load(bad[i], be, &p, &err));
        ck_assert_int_eq(err.code, HL_ERR_INVAL);
    }
    ck_assert_ptr_null(hl_model_load("/nonexistent/model.gguf", be, &p, &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
}
END_TEST

// A backend that cannot multiply Q8_0 weights: the load fails naming a tensor, before any step.
static const hl_backend_ops *cpu_ops;
static bool no_q8_supports(hl_backend *b, enum hl_op op, int type) {
    if (op == HL_OP_MATMUL && type == HL_DTYPE_Q8_0) return false;
    return cpu_ops->supports(b, op, type);
}

START_TEST(test_unsupported_weight_type) {
    hl_error err = {0};
    cpu_ops = be->ops;
    hl_backend_ops ops = *be->ops;
    ops.supports = no_q8_supports;
    hl_backend limited = {.ops = &ops, .ctx = be->ctx};
    hl_model_params p = hl_model_default_params();
    p.synth_n_vocab = N_VOCAB;
    ck_assert_ptr_null(hl_model_load("synthetic:tiny:q8_0", &limited, &p, &err));
    ck_assert_int_eq(err.code, HL_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "q8_0") && strstr(err.msg, ".weight"), "%s", err.msg);
    hl_model *m = hl_model_load("synthetic:tiny:f16", &limited, &p, &err);
    ck_assert_msg(m, "%s", err.msg);
    hl_model_free(m);
}
END_TEST

START_TEST(test_forward_errors) {
    hl_error err = {0};
    hl_model *m = load("synthetic:tiny:f32");
    hl_kv_cache *kv = cache(m, 4);
    hl_llama *l = hl_llama_create(m, kv, 16, 1, 16, &err);
    hl_kv_seq seq = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &seq, 16, &err), HL_OK);
    int32_t ids[20] = {0};
    float *out = malloc(sizeof(float) * 16 * N_VOCAB);
    hl_llama_seq s = {.tokens = ids, .n_tokens = 4, .n_past = 0, .blocks = seq.blocks, .n_blocks = 1, .n_logits = 1};
    ids[2] = N_VOCAB;
    ck_assert_int_eq(hl_llama_forward(l, &s, 1, out, &err), HL_ERR_INVAL); // id out of range
    ids[2] = 0;
    s.n_past = 14; // positions 14..17 need two blocks
    ck_assert_int_eq(hl_llama_forward(l, &s, 1, out, &err), HL_ERR_INVAL);
    s.n_past = 0;
    s.n_tokens = 17; // over max_tokens
    ck_assert_int_eq(hl_llama_forward(l, &s, 1, out, &err), HL_ERR_INVAL);
    s.n_tokens = 4;
    s.n_logits = 5;
    ck_assert_int_eq(hl_llama_forward(l, &s, 1, out, &err), HL_ERR_INVAL);
    s.n_logits = 1;
    int32_t bad_block = 99;
    s.blocks = &bad_block;
    ck_assert_int_eq(hl_llama_forward(l, &s, 1, out, &err), HL_ERR_INVAL);
    s.blocks = seq.blocks;
    ck_assert_msg(hl_llama_forward(l, &s, 1, out, &err) == HL_OK, "%s", err.msg);
    for (int i = 0; i < N_VOCAB; i++) ck_assert(isfinite(out[i]));
    free(out);
    hl_kv_cache_seq_release(kv, &seq);
    hl_llama_free(l);
    hl_kv_cache_free(kv);
    hl_model_free(m);
}
END_TEST

START_TEST(test_kv_cache_blocks) {
    hl_error err = {0};
    hl_kv_geom g = {.n_blocks = 4, .n_kv_heads = 2, .head_dim = 8, .kv_type = HL_DTYPE_F16};
    hl_kv_cache *kv = hl_kv_cache_create(be, 2, &g, &err);
    ck_assert_msg(kv, "%s", err.msg);
    ck_assert_uint_eq(hl_kv_cache_block_bytes(2, &g), 2 * 2 * 2 * 16 * 8 * 2);
    hl_kv_seq a = {0}, b = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &a, 17, &err), HL_OK); // 2 blocks
    ck_assert_int_eq(a.n_blocks, 2);
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &b, 48, &err), HL_ERR_BUSY); // 3 > 2 free
    ck_assert_int_eq(b.n_blocks, 0);
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &b, 32, &err), HL_OK);
    ck_assert_int_eq(hl_kv_cache_n_free(kv), 0);
    ck_assert_int_eq(hl_kv_cache_alloc_block(kv), -1);
    hl_kv_cache_seq_truncate(kv, &a, 16); // keeps one block
    ck_assert_int_eq(a.n_blocks, 1);
    ck_assert_int_eq(hl_kv_cache_n_free(kv), 1);
    hl_kv_cache_seq_release(kv, &a);
    hl_kv_cache_seq_release(kv, &b);
    ck_assert_int_eq(hl_kv_cache_n_free(kv), 4);
    hl_kv_cache_free(kv);
    g.kv_type = HL_DTYPE_Q8_0;
    ck_assert_ptr_null(hl_kv_cache_create(be, 2, &g, &err));
    ck_assert_int_eq(err.code, HL_ERR_INVAL);
}
END_TEST

Suite *llama_suite(void) {
    Suite *s = suite_create("llama");
    TCase *tc = tcase_create("forward");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_chunks_f32);
    tcase_add_test(tc, test_chunks_q8_0);
    tcase_add_test(tc, test_chunks_q4_k_m);
    tcase_add_test(tc, test_shuffle_scatters_blocks);
    tcase_add_test(tc, test_mixed_batch);
    tcase_add_test(tc, test_reference_f32);
    tcase_add_test(tc, test_reference_q8_0);
    tcase_add_test(tc, test_load_errors);
    tcase_add_test(tc, test_unsupported_weight_type);
    tcase_add_test(tc, test_forward_errors);
    tcase_add_test(tc, test_kv_cache_blocks);
    suite_add_tcase(s, tc);
    return s;
}
