// Unit tests for the CPU backend (kernels/cpu): every op at every ISA level this CPU has,
// against the scalar reference (kernels/cpu/ref.c) on fresh random inputs. The seed comes
// from the clock (or HL_TEST_SEED) and is printed in every failure message. Outputs are
// poisoned with NaN first so an unwritten element fails.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/quant.h"
#include "kernels/cpu/backend_cpu.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/repack.h"
#include "kernels/cpu/threadpool.h"

static const int matmul_types[] = {HL_DTYPE_F32, HL_DTYPE_F16, HL_DTYPE_BF16, HL_DTYPE_Q4_0,
                                   HL_DTYPE_Q4_1, HL_DTYPE_Q5_0, HL_DTYPE_Q8_0, HL_DTYPE_Q4_K,
                                   HL_DTYPE_Q5_K, HL_DTYPE_Q6_K};
#define N_MATMUL_TYPES (int)(sizeof(matmul_types) / sizeof(matmul_types[0]))

static uint64_t fresh_seed(void) {
    const char *env = getenv("HL_TEST_SEED");
    if (env && *env) return strtoull(env, NULL, 10);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000007ull + (uint64_t)ts.tv_nsec;
}

static float uniform(hl_rng *rng, float lo, float hi) { return lo + (hi - lo) * hl_rng_uniform(rng); }

// A host F32 matrix (rows, cols), poisoned with NaN. Free with free(t.data).
static hl_tensor f32_matrix(int64_t rows, int64_t cols) {
    hl_tensor t = {.type = HL_DTYPE_F32, .ne = {cols, rows}, .row_bytes = (size_t)cols * 4};
    t.data = hl_xmalloc((size_t)(rows * cols) * 4 + 4);
    float *p = t.data;
    for (int64_t i = 0; i < rows * cols; i++) p[i] = NAN;
    return t;
}

static hl_tensor random_matrix(hl_rng *rng, int64_t rows, int64_t cols, float lo, float hi) {
    hl_tensor t = f32_matrix(rows, cols);
    float *p = t.data;
    for (int64_t i = 0; i < rows * cols; i++) p[i] = uniform(rng, lo, hi);
    return t;
}

// GGUF bytes of `rows` random rows of `type` (quantized with the reference quantizer), and
// their dequantized values in *deq (rows * k floats, caller frees).
static uint8_t *random_weight(hl_rng *rng, int type, int64_t k, int64_t rows, float **deq) {
    size_t rb;
    ck_assert_int_eq(hl_quant_row_bytes(type, k, &rb, NULL), HL_OK);
    uint8_t *w = hl_xmalloc(rb * (size_t)rows);
    float *src = hl_xmalloc((size_t)k * 4);
    *deq = hl_xmalloc((size_t)(k * rows) * 4);
    for (int64_t r = 0; r < rows; r++) {
        const float scale = uniform(rng, 0.1f, 2.0f); // rows of different magnitude
        for (int64_t j = 0; j < k; j++) src[j] = scale * uniform(rng, -1, 1);
        ck_assert_int_eq(hl_quant_quantize(type, src, w + rb * (size_t)r, k, NULL), HL_OK);
        ck_assert_int_eq(hl_quant_dequantize(type, w + rb * (size_t)r, *deq + r * k, k, NULL), HL_OK);
    }
    free(src);
    return w;
}

static int n_isas(void) { return hl_cpu_features_detect() + 1; }

static hl_backend *make_backend(int n_threads, int isa) {
    hl_error err = {0};
    hl_backend *be = hl_backend_cpu_create_isa(n_threads, isa, &err);
    ck_assert_msg(be != NULL, "%s", err.msg);
    return be;
}

// ---- matmul ----

// The bound on |cpu - ref| for out[t][r]. The activations are rounded to 8 bits per block of
// `bs` values with step d = amax/127, so each x_j moves by at most d/2 (slack 1% for the
// float rounding of d and 1/d): |Δ| <= Σ_j |w_j| d_block(j) / 2. On top, float accumulation
// of the block sums: (n_blocks + 16) · 2⁻²³ · Σ|w_j x_j| (γ_n bound with room for hsum).
// Float weight types have no activation rounding: k · 2⁻²³ · Σ|w_j x_j| + tiny.
static double matmul_bound(int type, const float *w, const float *x, int64_t k) {
    const int kind = hl_matmul_act_kind(type);
    const int bs = kind == HL_MATMUL_ACT_Q8 ? 32 : 256;
    double sum_abs = 0, quant = 0;
    for (int64_t j = 0; j < k; j++) sum_abs += fabs((double)w[j] * x[j]);
    const double eps = 1.0 / (1 << 23);
    if (kind == HL_MATMUL_ACT_F32) return (double)(k + 16) * eps * sum_abs + 1e-6;
    for (int64_t b = 0; b < k / bs; b++) {
        double amax = 0, wsum = 0;
        for (int j = 0; j < bs; j++) {
            amax = fmax(amax, fabs(x[b * bs + j]));
            wsum += fabs(w[b * bs + j]);
        }
        quant += wsum * amax / 127.0 / 2.0 * 1.01;
    }
    return quant + (double)(k / bs + 16) * eps * sum_abs * 4 + 1e-6;
}

static void check_matmul(hl_backend *be, hl_rng *rng, uint64_t seed, int type, int64_t k,
                         int64_t rows, int n) {
    float *deq;
    uint8_t *wbytes = random_weight(rng, type, k, rows, &deq);
    hl_error err = {0};
    hl_tensor w;
    const int64_t ne[2] = {k, rows};
    ck_assert_msg(be->ops->upload_weight(be, &w, type, ne, wbytes, &err) == HL_OK, "%s", err.msg);
    const bool x16 = hl_backend_cpu_isa(be) == HL_CPU_ISA_VNNI && hl_repack_supports(type);
    ck_assert_int_eq(w.layout, x16 ? HL_CPU_LAYOUT_X16 : 0); // the repacked kernels are the ones tested
    hl_tensor x = random_matrix(rng, n, k, -3, 3);
    hl_tensor y = f32_matrix(n, rows), yref = f32_matrix(n, rows);
    be->ops->matmul(be, &y, &w, &x);
    hl_tensor wref = {.type = type, .ne = {k, rows}, .row_bytes = w.row_bytes, .data = wbytes};
    hl_ref_matmul(&yref, &wref, &x);
    for (int t = 0; t < n; t++) {
        for (int64_t r = 0; r < rows; r++) {
            const float got = ((float *)y.data)[t * rows + r], want = ((float *)yref.data)[t * rows + r];
            const double bound = matmul_bound(type, deq + r * k, (float *)x.data + t * k, k);
            ck_assert_msg(fabs((double)got - want) <= bound,
                          "seed %llu isa %s %s k=%lld rows=%lld n=%d: out[%d][%lld] = %g, ref %g (bound %g)",
                          (unsigned long long)seed, hl_cpu_features_name(hl_backend_cpu_isa(be)),
                          hl_quant_name(type), (long long)k, (long long)rows, n, t, (long long)r,
                          (double)got, (double)want, bound);
        }
    }
    be->ops->release_weight(be, &w);
    free(x.data), free(y.data), free(yref.data), free(wbytes), free(deq);
}

// Every type at every ISA level; token counts 1 2 3 7 17 64; row lengths at block multiples
// incl. 256·k and non-powers of two (576 1536 2880), odd lengths for the float types.
START_TEST(test_matmul_against_ref) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    static const int ns[] = {1, 2, 3, 7, 17, 64};
    static const int64_t k_legacy[] = {32, 576, 2880, 1536};
    static const int64_t k_kquant[] = {256, 1536, 2304, 512};
    static const int64_t k_float[] = {37, 576, 2880, 8};
    for (int isa = 0; isa < n_isas(); isa++) {
        hl_backend *be = make_backend(2, isa);
        for (int ti = 0; ti < N_MATMUL_TYPES; ti++) {
            const int type = matmul_types[ti];
            const int kind = hl_matmul_act_kind(type);
            const int64_t *ks = kind == HL_MATMUL_ACT_Q8 ? k_legacy : kind == HL_MATMUL_ACT_Q8K ? k_kquant : k_float;
            for (int i = 0; i < 6; i++) {
                const int64_t k = ks[(i + ti) % 4];
                const int64_t rows = ns[i] >= 17 && k > 1000 ? 19 : 37;
                check_matmul(be, &rng, seed, type, k, rows, ns[i]);
            }
        }
        hl_backend_free(be);
    }
}
END_TEST

// A row's result is bit-identical alone, inside batches of 1..64 rows (at any place), and
// with 1, 2 or 3 threads.
START_TEST(test_matmul_batch_invariance) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    const int64_t k = 512, rows = 45;
    const int n = 64;
    for (int isa = 0; isa < n_isas(); isa++) {
        hl_backend *be[3] = {make_backend(1, isa), make_backend(2, isa), make_backend(3, isa)};
        for (int ti = 0; ti < N_MATMUL_TYPES; ti++) {
            const int type = matmul_types[ti];
            float *deq;
            uint8_t *wb = random_weight(&rng, type, k, rows, &deq);
            hl_tensor w;
            const int64_t ne[2] = {k, rows};
            ck_assert_int_eq(be[0]->ops->upload_weight(be[0], &w, type, ne, wb, NULL), HL_OK);
            hl_tensor x = random_matrix(&rng, n, k, -2, 2);
            hl_tensor full = f32_matrix(n, rows);
            be[1]->ops->matmul(be[1], &full, &w, &x);
            for (int trial = 0; trial < 12; trial++) {
                const int m = trial == 0 ? 1 : trial == 11 ? n : 1 + (int)(hl_rng_next(&rng) % n);
                const int t0 = (int)(hl_rng_next(&rng) % (uint64_t)(n - m + 1));
                hl_tensor xs = x, ys = f32_matrix(m, rows);
                xs.ne[1] = m;
                xs.data = (float *)x.data + (size_t)t0 * k;
                hl_backend *b = be[trial % 3];
                b->ops->matmul(b, &ys, &w, &xs);
                ck_assert_msg(memcmp(ys.data, (float *)full.data + (size_t)t0 * rows,
                                     (size_t)(m * rows) * 4) == 0,
                              "seed %llu isa %s %s: rows %d..%d as a batch of %d with %d threads "
                              "differ from the batch of %d", (unsigned long long)seed,
                              hl_cpu_features_name(isa), hl_quant_name(type), t0, t0 + m, m,
                              trial % 3 + 1, n);
                free(ys.data);
            }
            be[0]->ops->release_weight(be[0], &w);
            free(x.data), free(full.data), free(wb), free(deq);
        }
        for (int i = 0; i < 3; i++) hl_backend_free(be[i]);
    }
}
END_TEST

// Every ISA's activation quantizer writes the same bytes as the scalar one (the kernels rely
// on it for cross-ISA agreement): random rows, an all-zero block, ties at x · 127 / amax.
START_TEST(test_quantize_same_bytes_every_isa) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    const int64_t k = 1536;
    const int n = 5;
    hl_tensor x = random_matrix(&rng, n, k, -3, 3);
    float *xv = x.data;
    for (int j = 0; j < 256; j++) xv[k + j] = 0.0f;                 // row 1: a zero (super-)block
    for (int j = 0; j < 64; j++) xv[2 * k + j] = (float)(j % 5) - 2; // row 2: halves after scaling
    xv[2 * k] = 127.0f * 2;
    static const int types[] = {HL_DTYPE_Q4_0, HL_DTYPE_Q4_K};
    for (int ti = 0; ti < 2; ti++) {
        const size_t arb = hl_matmul_act_row_bytes(types[ti], k);
        uint8_t *want = hl_xcalloc((size_t)n, arb), *got = hl_xcalloc((size_t)n, arb);
        hl_matmul_args a = {.type = types[ti], .k = k, .x = xv, .x_row_floats = (size_t)k, .act = want,
                            .act_row_bytes = arb, .n = n};
        hl_matmul_quantize(HL_CPU_ISA_SCALAR, &a, 0, n);
        for (int isa = 1; isa < n_isas(); isa++) {
            memset(got, 0x55, (size_t)n * arb);
            a.act = got;
            hl_matmul_quantize(isa, &a, 0, n);
            a.act = want;
            for (size_t i = 0; i < (size_t)n * arb; i++) // the blocks have no padding bytes
                ck_assert_msg(got[i] == want[i], "seed %llu isa %s %s: byte %zu differs", (unsigned long long)seed,
                              hl_cpu_features_name(isa), hl_quant_name(types[ti]), i);
        }
        free(want), free(got);
    }
    free(x.data);
}
END_TEST

// X16 repacking is lossless: every row comes back bit for bit, for row counts on and off the
// 16-row grid, and the padding rows of the last group are zero.
START_TEST(test_repack_round_trip) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    static const int types[] = {HL_DTYPE_Q4_0, HL_DTYPE_Q4_1, HL_DTYPE_Q8_0, HL_DTYPE_Q5_0,
                                HL_DTYPE_Q4_K, HL_DTYPE_Q5_K, HL_DTYPE_Q6_K};
    static const int64_t shapes[][2] = {{32, 1}, {576, 15}, {96, 16}, {2880, 17}, {64, 45}};
    for (int ti = 0; ti < 7; ti++) {
        ck_assert(hl_repack_supports(types[ti]));
        const int64_t qk = hl_repack_block_values(types[ti]);
        ck_assert_int_eq(qk, hl_quant_info(types[ti])->block_size);
        for (int si = 0; si < 5; si++) {
            const int64_t k = qk == 32 ? shapes[si][0] : 256 * (si % 3 + 1), rows = shapes[si][1];
            float *deq;
            uint8_t *w = random_weight(&rng, types[ti], k, rows, &deq);
            size_t rb;
            ck_assert_int_eq(hl_quant_row_bytes(types[ti], k, &rb, NULL), HL_OK);
            const size_t n = hl_repack_bytes(types[ti], k, rows);
            ck_assert_uint_eq(n, (size_t)((rows + 15) / 16 * 16) * rb);
            uint8_t *x = hl_xmalloc(n), *row = hl_xmalloc(rb);
            memset(x, 0xAB, n);
            hl_repack_x16(types[ti], k, rows, w, x);
            for (int64_t r = 0; r < (rows + 15) / 16 * 16; r++) {
                hl_repack_row(types[ti], k, x, r, row);
                if (r < rows) {
                    ck_assert_msg(memcmp(row, w + (size_t)r * rb, rb) == 0, "seed %llu %s k=%lld row %lld",
                                  (unsigned long long)seed, hl_quant_name(types[ti]), (long long)k, (long long)r);
                    continue;
                }
                for (size_t j = 0; j < rb; j++) { // padding: zero scales, zero (Q8_0: 0x80 ^ 0x80) quants
                    const bool hdr = (j % (rb / (size_t)(k / qk))) < 2u; // Q8_0's d
                    ck_assert_int_eq(row[j], hdr || types[ti] != HL_DTYPE_Q8_0 ? 0 : 0x80);
                }
            }
            free(x), free(row), free(w), free(deq);
        }
    }
    ck_assert(!hl_repack_supports(HL_DTYPE_F16));
}
END_TEST

// ---- elementwise ops, embed, get_rows ----

static void assert_close(const hl_tensor *got, const hl_tensor *want, double rel, double abs_tol,
                         uint64_t seed, const char *what, int isa) {
    for (int64_t i = 0; i < got->ne[1]; i++) {
        for (int64_t j = 0; j < got->ne[0]; j++) {
            const double g = ((float *)((uint8_t *)got->data + i * got->row_bytes))[j];
            const double w = ((float *)((uint8_t *)want->data + i * want->row_bytes))[j];
            ck_assert_msg(fabs(g - w) <= rel * fabs(w) + abs_tol,
                          "seed %llu isa %s %s: [%lld][%lld] = %.9g, ref %.9g", (unsigned long long)seed,
                          hl_cpu_features_name(isa), what, (long long)i, (long long)j, g, w);
        }
    }
}

START_TEST(test_elementwise_ops) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    static const int shapes[][2] = {{1, 576}, {7, 2880}, {17, 37}, {64, 1536}, {3, 8}};
    for (int isa = 0; isa < n_isas(); isa++) {
        hl_backend *be = make_backend(2, isa);
        for (int s = 0; s < 5; s++) {
            const int n = shapes[s][0], d = shapes[s][1];
            hl_tensor a = random_matrix(&rng, n, d, -4, 4), b = random_matrix(&rng, n, d, -4, 4);
            hl_tensor w = random_matrix(&rng, 1, d, -2, 2);
            hl_tensor o = f32_matrix(n, d), r = f32_matrix(n, d);
            be->ops->rmsnorm(be, &o, &a, &w, 1e-5f);
            hl_ref_rmsnorm(&r, &a, &w, 1e-5f);
            assert_close(&o, &r, 1e-5, 1e-6, seed, "rmsnorm", isa);
            be->ops->swiglu(be, &o, &a, &b);
            hl_ref_swiglu(&r, &a, &b);
            assert_close(&o, &r, 1e-5, 1e-6, seed, "swiglu", isa);
            hl_ref_add(&r, &a, &b);
            be->ops->add(be, &a, &a, &b); // out aliases a
            assert_close(&a, &r, 0, 0, seed, "add", isa);
            int32_t ids[5] = {n - 1, 0, n / 2, n - 1, 0};
            hl_tensor g = f32_matrix(5, d), gr = f32_matrix(5, d);
            be->ops->get_rows(be, &g, &a, ids, 5);
            hl_ref_get_rows(&gr, &a, ids, 5);
            assert_close(&g, &gr, 0, 0, seed, "get_rows", isa);
            free(a.data), free(b.data), free(w.data), free(o.data), free(r.data), free(g.data), free(gr.data);
        }
        hl_backend_free(be);
    }
}
END_TEST

START_TEST(test_embed_every_type) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    hl_backend *be = make_backend(2, -1);
    for (int ti = 0; ti < N_MATMUL_TYPES; ti++) {
        const int type = matmul_types[ti];
        const int64_t d = hl_quant_info(type)->block_size == 256 ? 512 : 576, vocab = 50;
        float *deq;
        uint8_t *wb = random_weight(&rng, type, d, vocab, &deq);
        hl_tensor table;
        const int64_t ne[2] = {d, vocab};
        ck_assert(be->ops->supports(be, HL_OP_EMBED, type));
        ck_assert_int_eq(be->ops->upload_weight(be, &table, type, ne, wb, NULL), HL_OK);
        const bool x16 = hl_backend_cpu_isa(be) == HL_CPU_ISA_VNNI && hl_repack_supports(type);
        ck_assert_int_eq(table.layout, x16 ? HL_CPU_LAYOUT_X16 : 0); // hl_repack_block on VNNI CPUs
        int32_t ids[9];
        for (int i = 0; i < 9; i++) ids[i] = (int32_t)(hl_rng_next(&rng) % vocab);
        hl_tensor o = f32_matrix(9, d);
        be->ops->embed(be, &o, &table, ids, 9);
        for (int i = 0; i < 9; i++)
            ck_assert_msg(memcmp((float *)o.data + i * d, deq + ids[i] * d, (size_t)d * 4) == 0,
                          "seed %llu embed %s row %d", (unsigned long long)seed, hl_quant_name(type), i);
        be->ops->release_weight(be, &table);
        free(o.data), free(wb), free(deq);
    }
    hl_backend_free(be);
}
END_TEST

// ---- paged KV: rope_kv and attention on a mixed batch ----

typedef struct paged_case {
    hl_kv_geom geom;
    hl_kv_layer kv;
    int n_seqs, n_tokens, max_blocks;
    int32_t pos[64], slot[64], seq_start[8], ctx_len[8], table[8 * 16];
    hl_batch batch;
} paged_case;

static size_t kv_elem_bytes(int kv_type) { return kv_type == HL_DTYPE_F16 ? 2 : 4; }

// Sequences with (cached tokens, new tokens): decodes, a fresh prefill chunk, a continued
// chunk; block ids are a random permutation of the pool (shuffled tables).
static void make_case(paged_case *pc, hl_rng *rng, int kv_type, int n_kv_heads, int head_dim) {
    static const int cached[5] = {36, 0, 20, 0, 70}, fresh[5] = {1, 17, 7, 1, 3};
    memset(pc, 0, sizeof(*pc));
    pc->n_seqs = 5;
    pc->max_blocks = 16;
    pc->geom = (hl_kv_geom){.n_blocks = 40, .n_kv_heads = n_kv_heads, .head_dim = head_dim, .kv_type = kv_type};
    int perm[40];
    for (int i = 0; i < 40; i++) perm[i] = i;
    for (int i = 39; i > 0; i--) {
        const int j = (int)(hl_rng_next(rng) % (uint64_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    int next_block = 0, t = 0;
    for (int s = 0; s < 5; s++) {
        pc->seq_start[s] = t;
        pc->ctx_len[s] = cached[s] + fresh[s];
        const int nb = (pc->ctx_len[s] + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
        for (int b = 0; b < nb; b++) pc->table[s * 16 + b] = perm[next_block++];
        for (int i = 0; i < fresh[s]; i++, t++) {
            const int p = cached[s] + i;
            pc->pos[t] = p;
            pc->slot[t] = pc->table[s * 16 + p / HL_KV_BLOCK] * HL_KV_BLOCK + p % HL_KV_BLOCK;
        }
    }
    pc->seq_start[5] = pc->n_tokens = t;
    const size_t n_el = (size_t)40 * n_kv_heads * HL_KV_BLOCK * head_dim;
    pc->kv.k = hl_xmalloc(n_el * kv_elem_bytes(kv_type));
    pc->kv.v = hl_xmalloc(n_el * kv_elem_bytes(kv_type));
    for (size_t i = 0; i < n_el; i++) { // random cached K/V everywhere
        const float kx = uniform(rng, -1, 1), vx = uniform(rng, -1, 1);
        if (kv_type == HL_DTYPE_F16) {
            ((uint16_t *)pc->kv.k)[i] = hl_f32_to_f16(kx);
            ((uint16_t *)pc->kv.v)[i] = hl_f32_to_f16(vx);
        } else {
            ((float *)pc->kv.k)[i] = kx;
            ((float *)pc->kv.v)[i] = vx;
        }
    }
    pc->batch = (hl_batch){.n_tokens = t, .n_seqs = 5, .pos = pc->pos, .slot = pc->slot,
                           .seq_start = pc->seq_start, .ctx_len = pc->ctx_len,
                           .block_table = pc->table, .max_blocks = 16};
}

static float kv_value(const void *base, int kv_type, size_t i) {
    return kv_type == HL_DTYPE_F16 ? hl_f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

START_TEST(test_rope_kv) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    const float factors[32] = {1, 1, 1.5f, 2, 4, 8, 8, 8, 1, 2, 3, 4, 5, 6, 7, 8,
                               1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4};
    for (int isa = 0; isa < n_isas(); isa++) {
        hl_backend *be = make_backend(2, isa);
        for (int variant = 0; variant < 4; variant++) {
            const int kv_type = variant & 1 ? HL_DTYPE_F32 : HL_DTYPE_F16, hd = 64, n_kv = 2, n_heads = 6;
            hl_rope rope = {.theta = variant < 2 ? 10000.0f : 500000.0f, .n_rot = variant == 3 ? 48 : 64,
                            .neox = variant & 1, .freq_factors = variant == 2 ? factors : NULL,
                            .freq_scale = variant == 3 ? 0.25f : 1.0f};
            paged_case a, b;
            hl_rng r2 = rng;
            make_case(&a, &rng, kv_type, n_kv, hd);
            make_case(&b, &r2, kv_type, n_kv, hd); // same contents
            const int n = a.n_tokens;
            hl_tensor q = random_matrix(&rng, n, n_heads * hd, -2, 2), k = random_matrix(&rng, n, n_kv * hd, -2, 2);
            hl_tensor v = random_matrix(&rng, n, n_kv * hd, -2, 2), qr = q;
            qr.data = hl_xmalloc((size_t)n * n_heads * hd * 4);
            memcpy(qr.data, q.data, (size_t)n * n_heads * hd * 4);
            hl_tensor k_before = random_matrix(&rng, n, n_kv * hd, 0, 1);
            memcpy(k_before.data, k.data, (size_t)n * n_kv * hd * 4);
            be->ops->rope_kv(be, &q, &k, &v, &a.kv, &a.geom, &a.batch, &rope);
            hl_ref_rope_kv(&qr, &k, &v, &b.kv, &b.geom, &b.batch, &rope);
            assert_close(&q, &qr, 2e-5, 2e-5, seed, "rope q", isa);
            ck_assert_msg(memcmp(k.data, k_before.data, (size_t)n * n_kv * hd * 4) == 0, "k buffer changed");
            const size_t n_el = (size_t)40 * n_kv * HL_KV_BLOCK * hd;
            const double tol = kv_type == HL_DTYPE_F16 ? 1e-3 : 2e-5;
            for (size_t i = 0; i < n_el; i++) {
                const double kg = kv_value(a.kv.k, kv_type, i), kw = kv_value(b.kv.k, kv_type, i);
                const double vg = kv_value(a.kv.v, kv_type, i), vw = kv_value(b.kv.v, kv_type, i);
                ck_assert_msg(fabs(kg - kw) <= tol * fabs(kw) + 1e-6 && vg == vw,
                              "seed %llu isa %s rope variant %d: kv element %zu k %g/%g v %g/%g",
                              (unsigned long long)seed, hl_cpu_features_name(isa), variant, i, kg, kw, vg, vw);
            }
            free(q.data), free(qr.data), free(k.data), free(v.data), free(k_before.data);
            free(a.kv.k), free(a.kv.v), free(b.kv.k), free(b.kv.v);
        }
        hl_backend_free(be);
    }
}
END_TEST

START_TEST(test_attention_mixed_batch) {
    const uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    static const int geoms[][3] = {{6, 2, 64}, {4, 4, 72}, {8, 1, 32}}; // n_heads, n_kv_heads, head_dim
    for (int isa = 0; isa < n_isas(); isa++) {
        hl_backend *be = make_backend(2, isa);
        for (int gi = 0; gi < 6; gi++) {
            const int n_heads = geoms[gi % 3][0], n_kv = geoms[gi % 3][1], hd = geoms[gi % 3][2];
            const int kv_type = gi < 3 ? HL_DTYPE_F16 : HL_DTYPE_F32;
            paged_case pc;
            make_case(&pc, &rng, kv_type, n_kv, hd);
            const int n = pc.n_tokens;
            hl_tensor q = random_matrix(&rng, n, n_heads * hd, -1.5f, 1.5f);
            hl_tensor o = f32_matrix(n, n_heads * hd), r = f32_matrix(n, n_heads * hd);
            const float scale = 1.0f / sqrtf((float)hd);
            be->ops->attention(be, &o, &q, &pc.kv, &pc.geom, &pc.batch, n_heads, scale);
            hl_ref_attention(&r, &q, &pc.kv, &pc.geom, &pc.batch, n_heads, scale);
            // Outputs are convex combinations of V in [-1, 1]: float vs double softmax and sums.
            assert_close(&o, &r, 0, 2e-5, seed, "attention", isa);
            free(q.data), free(o.data), free(r.data), free(pc.kv.k), free(pc.kv.v);
        }
        hl_backend_free(be);
    }
}
END_TEST

// ---- infrastructure ----

typedef struct pool_probe {
    int counts[8];
    int nth_seen;
} pool_probe;

static void probe_fn(void *arg, int ith, int nth) {
    pool_probe *p = arg;
    __atomic_add_fetch(&p->counts[ith], 1, __ATOMIC_RELAXED);
    p->nth_seen = nth;
}

START_TEST(test_threadpool_runs_each_share_once) {
    for (int n = 1; n <= 5; n++) {
        hl_threadpool *pool = hl_threadpool_create(n, NULL);
        ck_assert_ptr_nonnull(pool);
        ck_assert_int_eq(hl_threadpool_n_threads(pool), n);
        pool_probe p = {{0}, 0};
        for (int it = 0; it < 2000; it++) hl_threadpool_run(pool, probe_fn, &p);
        for (int i = 0; i < n; i++) ck_assert_int_eq(p.counts[i], 2000);
        ck_assert_int_eq(p.nth_seen, n);
        hl_threadpool_free(pool);
    }
    hl_threadpool_free(NULL);
}
END_TEST

typedef struct share_probe {
    int counts[64];
    int bad_nth;
} share_probe;

static void share_fn(void *arg, int ith, int nth) {
    share_probe *p = arg;
    __atomic_add_fetch(&p->counts[ith], 1, __ATOMIC_RELAXED);
    if (nth != 37) __atomic_add_fetch(&p->bad_nth, 1, __ATOMIC_RELAXED);
}

// run_n: every share exactly once per run, whatever the thread count, with back-to-back runs
// (a late worker must never run a share of a finished run).
START_TEST(test_threadpool_run_n_shares) {
    for (int n = 1; n <= 4; n++) {
        hl_threadpool *pool = hl_threadpool_create(n, NULL);
        share_probe p = {{0}, 0};
        for (int it = 0; it < 3000; it++) hl_threadpool_run_n(pool, share_fn, &p, 37);
        for (int i = 0; i < 64; i++) ck_assert_int_eq(p.counts[i], i < 37 ? 3000 : 0);
        ck_assert_int_eq(p.bad_nth, 0);
        hl_threadpool_free(pool);
    }
}
END_TEST

START_TEST(test_cpu_features_and_override) {
    for (int i = 0; i < HL_CPU_ISA_COUNT; i++)
        ck_assert_int_eq(hl_cpu_features_from_name(hl_cpu_features_name(i)), i);
    ck_assert_int_eq(hl_cpu_features_from_name("sse9"), -1);
    const char *old = getenv("HL_CPU_ISA");
    char *saved = old ? hl_xstrdup(old) : NULL;
    setenv("HL_CPU_ISA", "scalar", 1);
    ck_assert_int_eq(hl_cpu_features_select(), HL_CPU_ISA_SCALAR);
    setenv("HL_CPU_ISA", "nonsense", 1);
    ck_assert_int_eq(hl_cpu_features_select(), hl_cpu_features_detect());
    if (saved) setenv("HL_CPU_ISA", saved, 1);
    else unsetenv("HL_CPU_ISA");
    free(saved);
    hl_error err = {0};
    if (hl_cpu_features_detect() < HL_CPU_ISA_VNNI) {
        ck_assert_ptr_null(hl_backend_cpu_create_isa(1, HL_CPU_ISA_VNNI, &err));
        ck_assert_int_eq(err.code, HL_ERR_INVAL);
    }
}
END_TEST

START_TEST(test_upload_weight_errors) {
    hl_backend *be = make_backend(1, -1);
    hl_error err = {0};
    hl_tensor w;
    uint8_t bytes[64] = {0};
    const int64_t bad_len[2] = {33, 1}, ok[2] = {32, 1};
    ck_assert_int_eq(be->ops->upload_weight(be, &w, HL_DTYPE_Q4_0, bad_len, bytes, &err), HL_ERR_INVAL);
    ck_assert_int_eq(be->ops->upload_weight(be, &w, 5, ok, bytes, &err), HL_ERR_UNSUPPORTED);
    ck_assert(!be->ops->supports(be, HL_OP_MATMUL, HL_DTYPE_Q2_K));
    ck_assert(be->ops->supports(be, HL_OP_MATMUL, HL_DTYPE_Q4_K));
    ck_assert_int_eq(be->ops->upload_weight(be, &w, HL_DTYPE_Q4_0, ok, bytes, &err), HL_OK);
    ck_assert_int_eq(w.row_bytes, 18);
    be->ops->release_weight(be, &w);
    ck_assert_ptr_null(w.data);
    ck_assert_int_eq(be->ops->sync(be, &err), HL_OK);
    hl_backend_free(be);
}
END_TEST

Suite *backend_suite(void) {
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("cpu");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_matmul_against_ref);
    tcase_add_test(tc, test_matmul_batch_invariance);
    tcase_add_test(tc, test_repack_round_trip);
    tcase_add_test(tc, test_quantize_same_bytes_every_isa);
    tcase_add_test(tc, test_elementwise_ops);
    tcase_add_test(tc, test_embed_every_type);
    tcase_add_test(tc, test_rope_kv);
    tcase_add_test(tc, test_attention_mixed_batch);
    tcase_add_test(tc, test_threadpool_runs_each_share_once);
    tcase_add_test(tc, test_threadpool_run_n_shares);
    tcase_add_test(tc, test_cpu_features_and_override);
    tcase_add_test(tc, test_upload_weight_errors);
    suite_add_tcase(s, tc);
    return s;
}
