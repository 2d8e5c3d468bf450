// Unit tests for the topk op (kernels/backend.h): the scalar reference (hl_ref_topk) against a
// naive selection written here; the CPU backend and the CUDA backend (skipped without a device,
// also inside a captured graph) against the reference, bit for bit on values and ids, lse within
// 1e-6 relative; hl_llama_forward_topk against hl_llama_forward on the same step; and the engine:
// greedy, seeded top-k and seeded temperature / top_p / min_p requests (the walk, with its
// fallback to whole rows) give the same tokens (and logprobs) from candidates as from whole rows
// (hl_engine_params.full_logits). The op's lse at an inv_temp per row is checked the same way.
// Rows: random, heavy ties, -inf holes, ±0, NaN/+inf. Seed from the clock or HL_TEST_SEED,
// printed in failures.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/sampler.h"
#include "kernels/backend.h"
#include "kernels/cpu/ref.h"
#include "kernels/cuda/cuda_info.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static uint64_t test_seed(void) {
    static uint64_t seed;
    if (seed) return seed;
    const char *env = getenv("HL_TEST_SEED");
    seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    if (!seed) seed = 1;
    return seed;
}

enum row_kind { ROW_RANDOM, ROW_TIES, ROW_HOLES, ROW_ZEROS, ROW_EQUAL, ROW_NAN, ROW_PINF, ROW_NEG_INF, N_KINDS };

// Fills row x[0..n) of a kind: random logits; few distinct values; random with -inf holes; a mix
// of -0, +0 and small values; all equal; random with NaNs; random with a +inf; all -inf.
static void fill_row(float *x, int n, int kind, hl_rng *rng) {
    for (int j = 0; j < n; j++) {
        const float u = hl_rng_uniform(rng);
        switch (kind) {
        case ROW_TIES: x[j] = floorf(u * 7.0f) - 3.0f; break;
        case ROW_HOLES: x[j] = u < 0.5f ? -INFINITY : (u - 0.75f) * 40.0f; break;
        case ROW_ZEROS: x[j] = u < 0.3f ? -0.0f : (u < 0.6f ? 0.0f : (u - 0.8f) * 1e-3f); break;
        case ROW_EQUAL: x[j] = 2.5f; break;
        case ROW_NEG_INF: x[j] = -INFINITY; break;
        default: x[j] = (u - 0.5f) * 30.0f; break;
        }
    }
    if (kind == ROW_NAN) {
        for (int i = 0; i < 1 + n / 3; i++) x[hl_rng_next(rng) % (uint64_t)n] = NAN;
    }
    if (kind == ROW_PINF) x[hl_rng_next(rng) % (uint64_t)n] = INFINITY;
}

static hl_tensor host_tensor(void *data, int type, int64_t cols, int64_t rows, size_t row_bytes) {
    return (hl_tensor){.type = type, .ne = {cols, rows}, .row_bytes = row_bytes, .data = data};
}

static bool better(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

// The naive selection: k times, the best value not taken yet (NaN skipped).
static void naive_topk(const float *x, int n, int k, float *vals, int32_t *ids) {
    bool *taken = calloc((size_t)n, 1);
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int j = 0; j < n; j++) {
            if (taken[j] || isnan(x[j])) continue;
            if (best < 0 || better(x[j], j, x[best], best)) best = j;
        }
        vals[i] = best < 0 ? -INFINITY : x[best];
        ids[i] = best;
        if (best >= 0) taken[best] = true;
    }
    free(taken);
}

static long double naive_lse(const float *x, int n) {
    long double sum = 0, max = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (isnan(x[j]) || x[j] == INFINITY) return NAN;
        if (x[j] > max) max = x[j];
    }
    if (max == -INFINITY) return -INFINITY;
    for (int j = 0; j < n; j++) sum += expl((long double)x[j] - max);
    return max + logl(sum);
}

static void expect_lse(float got, double want, const char *what, int row) {
    if (isnan(want)) {
        ck_assert_msg(isnan(got), "%s row %d: lse %g, want NaN (seed %llu)", what, row, (double)got,
                      (unsigned long long)test_seed());
        return;
    }
    if (isinf(want)) {
        ck_assert_msg(got == (float)want, "%s row %d: lse %g, want %g", what, row, (double)got, want);
        return;
    }
    ck_assert_msg(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s row %d: lse %.9g vs %.9g (seed %llu)", what,
                  row, (double)got, want, (unsigned long long)test_seed());
}

// ---- the reference against the naive selection ----

START_TEST(test_ref_matches_naive) {
    hl_rng rng = {test_seed()};
    float *x = malloc(sizeof(float) * 4000), vals[HL_TOPK_MAX], nv[HL_TOPK_MAX], lse;
    int32_t ids[HL_TOPK_MAX], ni[HL_TOPK_MAX];
    for (int t = 0; t < 400; t++) {
        const int n = 1 + (int)(hl_rng_next(&rng) % (t % 4 == 0 ? 4000 : 300));
        const int max_k = n < HL_TOPK_MAX ? n : HL_TOPK_MAX;
        int k = 1 + (int)(hl_rng_next(&rng) % (uint64_t)max_k);
        if (t % 5 == 1) k = 1;
        if (t % 5 == 2) k = max_k; // k = ncols for short rows, 256 for long ones
        const int kind = t % N_KINDS;
        fill_row(x, n, kind, &rng);
        hl_tensor tx = host_tensor(x, HL_DTYPE_F32, n, 1, (size_t)n * 4);
        hl_tensor tv = host_tensor(vals, HL_DTYPE_F32, k, 1, (size_t)k * 4);
        hl_tensor ti = host_tensor(ids, HL_DTYPE_I32, k, 1, (size_t)k * 4);
        hl_tensor tl = host_tensor(&lse, HL_DTYPE_F32, 1, 1, 4);
        hl_ref_topk(&tv, &ti, &tl, &tx, NULL, k);
        naive_topk(x, n, k, nv, ni);
        for (int i = 0; i < k; i++) {
            ck_assert_msg(ids[i] == ni[i] && memcmp(&vals[i], &nv[i], 4) == 0,
                          "case %d (n %d k %d kind %d) slot %d: %d %g vs %d %g (seed %llu)", t, n, k, kind, i,
                          ids[i], (double)vals[i], ni[i], (double)nv[i], (unsigned long long)test_seed());
        }
        expect_lse(lse, (double)naive_lse(x, n), "ref", t);
        if (kind == ROW_NAN || kind == ROW_PINF) ck_assert(isnan(lse));
        if (kind == ROW_NEG_INF) ck_assert(lse == -INFINITY && ids[0] == 0);
    }
    free(x);
}
END_TEST

// ---- a backend against the reference ----

typedef struct shape {
    int ncols, rows, k;
} shape;

static const shape SHAPES[] = {
    {49152, 8, 40}, {128256, 4, 256}, {128256, 3, 1}, {1, 1, 1}, {7, 3, 7}, {257, 5, 256},
    {1003, 9, 20},  {32001, 16, 50},  {4099, 64, 256}, {300, 2, 255},
};

// Random inv_temp per row (temperatures 0.05 .. 2, and 1), as the engine passes them.
static float *random_inv_temp(int rows, hl_rng *rng) {
    float *it = malloc(sizeof(float) * (size_t)rows);
    for (int r = 0; r < rows; r++) it[r] = r % 3 == 0 ? 1.0f : 1.0f / (0.05f + 1.95f * hl_rng_uniform(rng));
    return it;
}

// Runs the op on `be` (device buffers when dev) over rows of the kinds in turn and compares.
// The input is a column view (row_bytes past ne[0] * 4) when view is set; odd salts give each
// row an inv_temp (the lse at that temperature), even ones none.
static void check_backend(hl_backend *be, const shape *sh, bool view, uint64_t salt) {
    const hl_backend_ops *op = be->ops;
    hl_rng rng = {test_seed() ^ salt};
    const int n = sh->ncols, R = sh->rows, k = sh->k, ld = view ? n + 5 : n;
    float *x = malloc(sizeof(float) * (size_t)ld * (size_t)R);
    for (int r = 0; r < R; r++) fill_row(x + (size_t)r * (size_t)ld, n, (r + (int)salt) % N_KINDS, &rng);
    hl_tensor hx = host_tensor(x, HL_DTYPE_F32, n, R, (size_t)ld * 4);
    float *rv = malloc(sizeof(float) * (size_t)R * (size_t)k), *rl = malloc(sizeof(float) * (size_t)R);
    int32_t *ri = malloc(sizeof(int32_t) * (size_t)R * (size_t)k);
    hl_tensor tv = host_tensor(rv, HL_DTYPE_F32, k, R, (size_t)k * 4);
    hl_tensor ti = host_tensor(ri, HL_DTYPE_I32, k, R, (size_t)k * 4);
    hl_tensor tl = host_tensor(rl, HL_DTYPE_F32, 1, R, 4);
    float *it = salt % 2 ? random_inv_temp(R, &rng) : NULL;
    hl_ref_topk(&tv, &ti, &tl, &hx, it, k);

    const size_t xb = (size_t)ld * (size_t)R * 4, cb = (size_t)R * (size_t)k * 4;
    void *dx = op->alloc(be, xb), *dv = op->alloc(be, cb), *di = op->alloc(be, cb);
    void *dl = op->alloc(be, (size_t)R * 4);
    ck_assert(dx && dv && di && dl);
    float *gv = malloc(cb), *gl = malloc((size_t)R * 4);
    int32_t *gi = malloc(cb);
    memset(gv, 0xff, cb); // poisoned: NaN values, -1 ids
    memset(gi, 0x7f, cb);
    hl_error err = {0};
    ck_assert_int_eq(op->upload(be, dx, x, xb, &err), HL_OK);
    ck_assert_int_eq(op->upload(be, dv, gv, cb, &err), HL_OK);
    ck_assert_int_eq(op->upload(be, di, gi, cb, &err), HL_OK);
    hl_tensor bx = host_tensor(dx, HL_DTYPE_F32, n, R, (size_t)ld * 4);
    hl_tensor bv = host_tensor(dv, HL_DTYPE_F32, k, R, (size_t)k * 4);
    hl_tensor bi = host_tensor(di, HL_DTYPE_I32, k, R, (size_t)k * 4);
    hl_tensor bl = host_tensor(dl, HL_DTYPE_F32, 1, R, 4);
    op->topk(be, &bv, &bi, &bl, &bx, it, k);
    ck_assert_int_eq(op->download(be, gv, dv, cb, &err), HL_OK);
    ck_assert_int_eq(op->download(be, gi, di, cb, &err), HL_OK);
    ck_assert_int_eq(op->download(be, gl, dl, (size_t)R * 4, &err), HL_OK);
    ck_assert_int_eq(op->sync(be, &err), HL_OK);
    for (int r = 0; r < R; r++) {
        const size_t at = (size_t)r * (size_t)k;
        const int kind = (r + (int)salt) % N_KINDS;
        for (int i = 0; i < k; i++) {
            ck_assert_msg(gi[at + i] == ri[at + i] && memcmp(&gv[at + i], &rv[at + i], 4) == 0,
                          "%s %dx%d k %d row %d (kind %d) slot %d: %d %g vs ref %d %g (seed %llu)", op->name, R, n,
                          k, r, kind, i, gi[at + i], (double)gv[at + i], ri[at + i], (double)rv[at + i],
                          (unsigned long long)test_seed());
        }
        expect_lse(gl[r], rl[r], op->name, r);
    }
    op->release(be, dx);
    op->release(be, dv);
    op->release(be, di);
    op->release(be, dl);
    free(x), free(rv), free(ri), free(rl), free(gv), free(gi), free(gl), free(it);
}

START_TEST(test_cpu_matches_ref) {
    hl_error err = {0};
    hl_backend *be = hl_backend_cpu_create(2, &err);
    ck_assert_msg(be, "%s", err.msg);
    ck_assert(be->ops->topk && be->ops->supports(be, HL_OP_TOPK, HL_DTYPE_F32));
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) check_backend(be, &SHAPES[i], i % 2 == 1, i);
    hl_backend_free(be);
}
END_TEST

// The CPU op's lse is hl_sampler_log_sum_exp's arithmetic at every inv_temp, so the engine's
// draws without top-k and its logprobs are the same bits from candidates as from whole rows.
START_TEST(test_cpu_lse_is_samplers) {
    hl_error err = {0};
    hl_backend *be = hl_backend_cpu_create(1, &err);
    ck_assert_msg(be, "%s", err.msg);
    hl_rng rng = {test_seed()};
    const int sizes[] = {1, 9, 1003, 49152};
    const float temps[] = {1.0f, 0.7f, 1.3f, 0.05f, 2.0f};
    float *x = malloc(sizeof(float) * 49152), v, lse, want;
    int32_t id;
    for (int t = 0; t < 80; t++) {
        const int n = sizes[t % 4];
        const float it = 1.0f / temps[t % 5];
        fill_row(x, n, t % N_KINDS, &rng);
        hl_tensor tx = host_tensor(x, HL_DTYPE_F32, n, 1, (size_t)n * 4);
        hl_tensor tv = host_tensor(&v, HL_DTYPE_F32, 1, 1, 4);
        hl_tensor ti = host_tensor(&id, HL_DTYPE_I32, 1, 1, 4), tl = host_tensor(&lse, HL_DTYPE_F32, 1, 1, 4);
        be->ops->topk(be, &tv, &ti, &tl, &tx, t % 2 ? &it : NULL, 1);
        want = hl_sampler_log_sum_exp(x, n, t % 2 ? it : 1.0f);
        ck_assert_msg(memcmp(&lse, &want, 4) == 0 || (isnan(lse) && isnan(want)), "n %d kind %d it %g: %.9g vs %.9g",
                      n, t % N_KINDS, (double)it, (double)lse, (double)want);
    }
    free(x);
    hl_backend_free(be);
}
END_TEST

// ---- CUDA ----

static bool have_device(void) {
    static int printed = 0;
    if (hl_cuda_device_count(NULL) > 0) return true;
    if (!printed++) printf("SKIP: no CUDA device (topk CUDA tests)\n");
    return false;
}

#if HL_CUDA
#include "kernels/cuda/backend_cuda.h"

START_TEST(test_cuda_matches_ref) {
    if (!have_device()) return;
    hl_error err = {0};
    hl_backend *be = hl_backend_cuda_create(0, &err);
    ck_assert_msg(be, "%s", err.msg);
    ck_assert(be->ops->topk && be->ops->supports(be, HL_OP_TOPK, HL_DTYPE_F32));
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) check_backend(be, &SHAPES[i], i % 2 == 0, i);
    // every kind at the largest vocabulary, several times (ties, equal rows: the exact-key path)
    for (int s = 0; s < N_KINDS; s++) {
        shape big = {128256, N_KINDS, 1 + s * 36};
        check_backend(be, &big, false, 100 + (uint64_t)s);
    }
    hl_backend_free(be);
}
END_TEST

// The op captured alone in a graph: the replay gives the reference for the data uploaded before
// each launch, at the inv_temp of each restage.
START_TEST(test_cuda_topk_in_graph) {
    if (!have_device()) return;
    hl_error err = {0};
    hl_backend *be = hl_backend_cuda_create(0, &err);
    ck_assert_msg(be, "%s", err.msg);
    const hl_backend_ops *op = be->ops;
    const int n = 49152, R = 6, k = 64;
    const size_t xb = (size_t)n * R * 4, cb = (size_t)R * k * 4;
    float *x = malloc(xb), *rv = malloc(cb), *gv = malloc(cb), rl[6], gl[6];
    int32_t *ri = malloc(cb), *gi = malloc(cb);
    void *dx = op->alloc(be, xb), *dv = op->alloc(be, cb), *di = op->alloc(be, cb), *dl = op->alloc(be, R * 4);
    hl_tensor bx = host_tensor(dx, HL_DTYPE_F32, n, R, (size_t)n * 4);
    hl_tensor bv = host_tensor(dv, HL_DTYPE_F32, k, R, k * 4);
    hl_tensor bi = host_tensor(di, HL_DTYPE_I32, k, R, k * 4), bl = host_tensor(dl, HL_DTYPE_F32, 1, R, 4);
    float it[6];
    for (int r = 0; r < R; r++) it[r] = 1.0f / (0.5f + 0.25f * (float)r);
    ck_assert_int_eq(hl_backend_cuda_graph_begin(be, &err), HL_OK);
    op->topk(be, &bv, &bi, &bl, &bx, it, k);
    hl_cuda_graph *g = hl_backend_cuda_graph_end(be, &err);
    ck_assert_msg(g, "%s", err.msg);
    hl_rng rng = {test_seed()};
    for (int rep = 0; rep < 3; rep++) {
        for (int r = 0; r < R; r++) fill_row(x + (size_t)r * n, n, (r + rep) % N_KINDS, &rng);
        hl_tensor hx = host_tensor(x, HL_DTYPE_F32, n, R, (size_t)n * 4);
        hl_tensor tv = host_tensor(rv, HL_DTYPE_F32, k, R, k * 4);
        hl_tensor ti = host_tensor(ri, HL_DTYPE_I32, k, R, k * 4), tl = host_tensor(rl, HL_DTYPE_F32, 1, R, 4);
        for (int r = 0; r < R; r++) it[r] = 1.0f / (0.5f + 0.25f * (float)(r + rep)); // restaged
        hl_ref_topk(&tv, &ti, &tl, &hx, it, k);
        ck_assert_int_eq(op->upload(be, dx, x, xb, &err), HL_OK);
        if (rep > 0) {
            ck_assert_int_eq(hl_backend_cuda_graph_restage(be, g, &err), HL_OK);
            op->topk(be, &bv, &bi, &bl, &bx, it, k);
        }
        ck_assert_int_eq(hl_backend_cuda_graph_launch(be, g, &err), HL_OK);
        ck_assert_int_eq(op->download(be, gv, dv, cb, &err), HL_OK);
        ck_assert_int_eq(op->download(be, gi, di, cb, &err), HL_OK);
        ck_assert_int_eq(op->download(be, gl, dl, R * 4, &err), HL_OK);
        ck_assert_int_eq(op->sync(be, &err), HL_OK);
        ck_assert(memcmp(gi, ri, cb) == 0 && memcmp(gv, rv, cb) == 0);
        for (int r = 0; r < R; r++) expect_lse(gl[r], rl[r], "cuda graph", r);
    }
    hl_cuda_graph_free(g);
    op->release(be, dx), op->release(be, dv), op->release(be, di), op->release(be, dl);
    free(x), free(rv), free(gv), free(ri), free(gi);
    hl_backend_free(be);
}
END_TEST
#endif

START_TEST(test_cuda_skips_cleanly) {
    if (have_device()) return;
    hl_error err = {0};
    ck_assert_ptr_null(hl_backend_cuda_create(0, &err));
    ck_assert(err.msg[0] != '\0');
}
END_TEST

// ---- llama: candidates of a step against its whole rows ----

static const char *model_path(void) {
    return access(DEFAULT_MODEL, R_OK) == 0 ? DEFAULT_MODEL : "synthetic:tiny:q8_0";
}

static hl_model *load_model(hl_backend *be) {
    hl_error err = {0};
    hl_model_params mp = hl_model_default_params();
    if (strncmp(model_path(), "synthetic:", 10) == 0) {
        mp.synth_n_vocab = 512;
        mp.synth_seed = 5;
    }
    hl_model *m = hl_model_load(model_path(), be, &mp, &err);
    ck_assert_msg(m, "%s: %s", model_path(), err.msg);
    return m;
}

START_TEST(test_llama_forward_topk) {
    hl_error err = {0};
    hl_backend *be = hl_backend_cpu_create(2, &err);
    ck_assert_msg(be, "%s", err.msg);
    hl_model *m = load_model(be);
    const int V = m->cfg.n_vocab, k = 50;
    hl_kv_geom g = {.n_blocks = 16, .n_kv_heads = m->cfg.n_kv_heads, .head_dim = m->cfg.head_dim,
                    .kv_type = HL_DTYPE_F16};
    hl_kv_cache *kv = hl_kv_cache_create(be, m->cfg.n_layers, &g, &err);
    ck_assert_msg(kv, "%s", err.msg);
    hl_llama *l = hl_llama_create(m, kv, 64, 3, 4, &err);
    ck_assert_msg(l, "%s", err.msg);
    int32_t toks[3][8], blocks[3][1] = {{0}, {1}, {2}};
    hl_rng rng = {test_seed()};
    for (int s = 0; s < 3; s++) {
        for (int t = 0; t < 8; t++) toks[s][t] = (int32_t)(hl_rng_next(&rng) % (uint64_t)V);
    }
    hl_llama_seq seqs[3];
    for (int s = 0; s < 3; s++)
        seqs[s] = (hl_llama_seq){.tokens = toks[s], .n_tokens = 8, .n_past = 0, .blocks = blocks[s], .n_blocks = 1,
                                 .n_logits = s == 1 ? 2 : 1};
    float *full = malloc(sizeof(float) * 4 * (size_t)V), *part = malloc(sizeof(float) * 4 * (size_t)V);
    ck_assert_msg(hl_llama_forward(l, seqs, 3, full, &err) == HL_OK, "%s", err.msg);
    float vals[4 * 50], lse[4], rv[4 * 50], rl[4];
    int32_t ids[4 * 50], ri[4 * 50];
    const bool want_full[4] = {false, true, false, true};
    memset(part, 0xff, sizeof(float) * 4 * (size_t)V);
    ck_assert_int_eq(hl_llama_forward_topk(l, seqs, 3, k, NULL, vals, ids, lse, want_full, part, &err), HL_OK);
    hl_tensor hx = host_tensor(full, HL_DTYPE_F32, V, 4, (size_t)V * 4);
    hl_tensor tv = host_tensor(rv, HL_DTYPE_F32, k, 4, k * 4);
    hl_tensor ti = host_tensor(ri, HL_DTYPE_I32, k, 4, k * 4), tl = host_tensor(rl, HL_DTYPE_F32, 1, 4, 4);
    hl_ref_topk(&tv, &ti, &tl, &hx, NULL, k);
    ck_assert(memcmp(ids, ri, sizeof ids) == 0 && memcmp(vals, rv, sizeof vals) == 0);
    for (int r = 0; r < 4; r++) {
        expect_lse(lse[r], rl[r], "llama", r);
        const float *got = part + (size_t)r * V, *want = full + (size_t)r * V;
        if (want_full[r]) ck_assert(memcmp(got, want, sizeof(float) * (size_t)V) == 0);
        else ck_assert(isnan(got[0]) && isnan(got[V - 1])); // not downloaded
    }
    ck_assert_int_eq(hl_llama_forward_topk(l, seqs, 3, HL_TOPK_MAX + 1, NULL, vals, ids, lse, NULL, NULL, &err),
                     HL_ERR_INVAL);
    free(full), free(part);
    hl_llama_free(l);
    hl_kv_cache_free(kv);
    hl_model_free(m);
    hl_backend_free(be);
}
END_TEST

// ---- engine: candidates vs whole rows ----

typedef struct gen {
    int32_t tok[2][64];
    float lp[2][64];
    int n[2];
} gen;

static void generate(bool full_logits, const hl_request_params *rp, const int32_t *prompt, int n_prompt, gen *out,
                     hl_engine_stats *stats) {
    hl_engine_params p = hl_engine_default_params();
    p.model = model_path();
    if (strncmp(p.model, "synthetic:", 10) == 0) {
        p.synth_n_vocab = 512;
        p.synth_seed = 5;
    }
    p.n_threads = 2;
    p.kv_cache_mb = 16;
    p.max_seqs = 4;
    p.full_logits = full_logits;
    hl_error err = {0};
    hl_engine *e = hl_engine_create(&p, &err);
    ck_assert_msg(e, "%s", err.msg);
    uint64_t id = 0;
    ck_assert_msg(hl_engine_submit(e, prompt, n_prompt, rp, &id, &err) == HL_OK, "%s", err.msg);
    memset(out, 0, sizeof(*out));
    hl_event ev[8];
    int n_fin = 0, n = 0;
    while (n_fin < rp->n) {
        ck_assert_int_eq(hl_engine_read(e, id, ev, 8, -1, &n, &err), HL_OK);
        for (int i = 0; i < n; i++) {
            const int c = ev[i].index;
            if (ev[i].type == HL_EVENT_FINISH) {
                ck_assert_msg(ev[i].finish != HL_FINISH_ERROR, "%s", ev[i].error);
                n_fin++;
                continue;
            }
            if (ev[i].type != HL_EVENT_TOKEN || out->n[c] >= 64) continue;
            out->lp[c][out->n[c]] = ev[i].logprob;
            out->tok[c][out->n[c]++] = ev[i].token;
        }
    }
    hl_engine_release(e, id);
    if (stats) hl_engine_get_stats(e, stats);
    hl_engine_free(e);
}

static void expect_same_gen(const gen *a, const gen *b, int n_choices, const char *what) {
    for (int c = 0; c < n_choices; c++) {
        ck_assert_msg(a->n[c] == b->n[c] && a->n[c] > 0, "%s choice %d: %d vs %d tokens", what, c, a->n[c], b->n[c]);
        for (int i = 0; i < a->n[c]; i++) {
            ck_assert_msg(a->tok[c][i] == b->tok[c][i], "%s choice %d token %d: %d vs %d", what, c, i,
                          a->tok[c][i], b->tok[c][i]);
            ck_assert_msg(memcmp(&a->lp[c][i], &b->lp[c][i], 4) == 0 || (isnan(a->lp[c][i]) && isnan(b->lp[c][i])),
                          "%s logprob %d: %.9g vs %.9g", what, i, (double)a->lp[c][i], (double)b->lp[c][i]);
        }
    }
}

START_TEST(test_engine_candidates_match_full_rows) {
    int32_t prompt[12];
    hl_rng rng = {test_seed()};
    for (int i = 0; i < 12; i++) prompt[i] = (int32_t)(1 + hl_rng_next(&rng) % 400);
    gen a, b;
    hl_request_params rp = hl_request_default_params();
    rp.sampling.temperature = 0;
    rp.sampling.max_tokens = 24;
    rp.sampling.ignore_eos = true;
    rp.sampling.logprobs = true;
    rp.sampling.n_logprobs = 3;
    generate(false, &rp, prompt, 12, &a, NULL);
    generate(true, &rp, prompt, 12, &b, NULL);
    expect_same_gen(&a, &b, 1, "greedy");
    rp.sampling.temperature = 0.8f;
    rp.sampling.top_k = 40;
    rp.sampling.has_seed = true;
    rp.sampling.seed = 1234;
    rp.sampling.logprobs = false;
    rp.sampling.n_logprobs = 0;
    rp.n = 2; // choice 1 forks off choice 0's first row
    generate(false, &rp, prompt, 12, &a, NULL);
    generate(true, &rp, prompt, 12, &b, NULL);
    expect_same_gen(&a, &b, 2, "top_k 40");
}
END_TEST

// Draws without top-k (the walk): seeded temperature / top_p / min_p requests give the same
// tokens and logprobs from candidates (falling back to the whole row where a draw passes them)
// as from whole rows; the stats count candidate rows, and at temperature 2 some fallbacks.
START_TEST(test_engine_walk_matches_full_rows) {
    int32_t prompt[12];
    hl_rng rng = {test_seed()};
    for (int i = 0; i < 12; i++) prompt[i] = (int32_t)(1 + hl_rng_next(&rng) % 400);
    gen a, b;
    hl_engine_stats sa, sb;
    hl_request_params rp = hl_request_default_params();
    rp.sampling.temperature = 0.8f;
    rp.sampling.top_p = 0.9f;
    rp.sampling.max_tokens = 32;
    rp.sampling.ignore_eos = true;
    rp.sampling.has_seed = true;
    rp.sampling.seed = 99;
    rp.n = 2;
    generate(false, &rp, prompt, 12, &a, &sa);
    generate(true, &rp, prompt, 12, &b, &sb);
    expect_same_gen(&a, &b, 2, "temperature 0.8 top_p 0.9");
    // every row a candidate row (choice 1's first draw shares choice 0's when the fork succeeds)
    ck_assert(sa.candidate_rows + 1 >= sa.generated_tokens && sa.candidate_rows <= sa.generated_tokens);
    ck_assert_uint_eq(sb.candidate_rows, 0);
    rp.sampling.temperature = 1.0f; // logprobs come with the candidates at temperature 1
    rp.sampling.top_p = 1.0f;
    rp.sampling.min_p = 0.02f;
    rp.sampling.logprobs = true;
    rp.sampling.n_logprobs = 3;
    generate(false, &rp, prompt, 12, &a, &sa);
    generate(true, &rp, prompt, 12, &b, NULL);
    expect_same_gen(&a, &b, 2, "temperature 1 min_p 0.02 logprobs");
    ck_assert_uint_gt(sa.candidate_rows, 0);
    rp.sampling.temperature = 2.0f;
    rp.sampling.min_p = 0.0f;
    rp.sampling.logprobs = false;
    rp.sampling.n_logprobs = 0;
    rp.sampling.max_tokens = 64;
    generate(false, &rp, prompt, 12, &a, &sa);
    generate(true, &rp, prompt, 12, &b, NULL);
    expect_same_gen(&a, &b, 2, "temperature 2");
    printf("engine walk at temperature 2: %llu of %llu candidate rows fetched whole\n",
           (unsigned long long)sa.candidate_fallbacks, (unsigned long long)sa.candidate_rows);
    if (strcmp(model_path(), DEFAULT_MODEL) == 0) ck_assert_uint_gt(sa.candidate_fallbacks, 0);
    ck_assert_uint_le(sa.candidate_fallbacks, sa.candidate_rows);
}
END_TEST

Suite *topk_suite(void) {
    Suite *s = suite_create("topk");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_ref_matches_naive);
    tcase_add_test(tc, test_cpu_matches_ref);
    tcase_add_test(tc, test_cpu_lse_is_samplers);
    tcase_add_test(tc, test_cuda_skips_cleanly);
#if HL_CUDA
    tcase_add_test(tc, test_cuda_matches_ref);
    tcase_add_test(tc, test_cuda_topk_in_graph);
#endif
    tcase_add_test(tc, test_llama_forward_topk);
    tcase_add_test(tc, test_engine_candidates_match_full_rows);
    tcase_add_test(tc, test_engine_walk_matches_full_rows);
    suite_add_tcase(s, tc);
    return s;
}
