// bench_cuda: the kernel benchmark table of `make gpu-check` (tools/gpu_check.sh builds and
// runs it; it is not part of the halyard binary). Per matmul shape of Llama-3-8B and batch
// size: time, GB/s of weight + activation traffic, % of the measured device-to-device copy
// bandwidth, TFLOP/s, and the speed-up over a cuBLAS fp16 GEMM of the same shape; then paged
// decode attention at 64 sequences x 2048 tokens (fp16 and int8 K/V) and causal prefill
// attention (TFLOP/s). Weights are generated on the device
// (synthetic Q4_0 / Q8_0 / F16) and rotated over copies larger than the L2 cache together,
// so the cache does not flatter the numbers.
//
//   build/gpu_sm90/bench_cuda results.txt     # table on stdout and in results.txt
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/quant.h"
#include "kernels/backend.h"
#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/cuda_info.h"

#define ROTATE_BYTES (256ull << 20) // > 50 MB L2 of an H100 with room to spare
#define MAX_COPIES 32

static FILE *results;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (results) {
        va_start(ap, fmt);
        vfprintf(results, fmt, ap);
        va_end(ap);
    }
    fflush(stdout);
}

static void die(const char *what, const hl_error *err) {
    fprintf(stderr, "bench_cuda: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

// Weight copies of one shape and type, enough to exceed ROTATE_BYTES together.
typedef struct weights {
    hl_tensor w[MAX_COPIES];
    int n;
    double bytes; // per copy, as read by the kernel
} weights;

static void weights_make(hl_backend *be, weights *ws, int type, int64_t k, int64_t n) {
    const double per = type == HL_DTYPE_F16 ? 2.0 * (double)(k * n)
                       : type == HL_DTYPE_Q4_0 ? (double)(k * n) * (0.5 + 4.0 / 32)
                                               : (double)(k * n) * (1.0 + 4.0 / 32);
    ws->bytes = per;
    ws->n = (int)ceil(ROTATE_BYTES / per);
    if (ws->n < 1) ws->n = 1;
    if (ws->n > MAX_COPIES) ws->n = MAX_COPIES;
    for (int i = 0; i < ws->n; i++) {
        char name[64];
        hl_error err = {0};
        snprintf(name, sizeof name, "bench.%d.weight", i);
        if (hl_backend_cuda_synth_weight(be, &ws->w[i], type, (int64_t[2]){k, n}, 7,
                                         &(hl_synth_part){name, n, 0.02f}, 1, &err) != HL_OK)
            die("synthetic weight", &err);
    }
}

static void weights_free(hl_backend *be, weights *ws) {
    for (int i = 0; i < ws->n; i++) be->ops->release_weight(be, &ws->w[i]);
    ws->n = 0;
}

static hl_tensor dev_f32(hl_backend *be, int64_t rows, int64_t cols) {
    hl_tensor t = {.type = HL_DTYPE_F32, .ne = {cols, rows}, .row_bytes = (size_t)cols * 4};
    t.data = be->ops->alloc(be, (size_t)(rows * cols) * 4);
    if (!t.data) die("alloc activations", NULL);
    return t;
}

// Milliseconds per call of our matmul over the rotating copies.
static double time_ours(hl_backend *be, weights *ws, hl_tensor *y, hl_tensor *x) {
    for (int i = 0; i < 3; i++) be->ops->matmul(be, y, &ws->w[i % ws->n], x);
    const int iters = ws->n * (ws->n < 8 ? 8 : 2);
    hl_backend_cuda_timer_start(be);
    for (int i = 0; i < iters; i++) be->ops->matmul(be, y, &ws->w[i % ws->n], x);
    return hl_backend_cuda_timer_stop(be) / iters;
}

static double time_cublas(hl_backend *be, weights *f16, float *y, const void *x16, int64_t k, int64_t n, int64_t t) {
    hl_error err = {0};
    for (int i = 0; i < 3; i++)
        if (hl_backend_cuda_gemm_f16(be, y, f16->w[i % f16->n].data, x16, n, k, t, &err) != HL_OK) die("cuBLAS", &err);
    const int iters = f16->n * (f16->n < 8 ? 8 : 2);
    hl_backend_cuda_timer_start(be);
    for (int i = 0; i < iters; i++) hl_backend_cuda_gemm_f16(be, y, f16->w[i % f16->n].data, x16, n, k, t, &err);
    return hl_backend_cuda_timer_stop(be) / iters;
}

static void bench_shape(hl_backend *be, double copy_gbps, int64_t k, int64_t n) {
    // 128..512 (Q4_0 only) find where dequantize + cuBLAS overtakes the tensor-core kernel: the
    // large-prefill switch (HL_CUDA_CUBLAS_MIN_TOKENS, default 128) must be measured, not assumed.
    static const int batches[] = {1, 16, 64, 128, 256, 512};
    static const int types[] = {HL_DTYPE_Q4_0, HL_DTYPE_Q8_0};
    weights f16;
    weights_make(be, &f16, HL_DTYPE_F16, k, n);
    int crossover = 0;
    for (int ti = 0; ti < 2; ti++) {
        weights q;
        weights_make(be, &q, types[ti], k, n);
        for (int bi = 0; bi < (ti == 0 ? 6 : 3); bi++) {
            const int t = batches[bi];
            hl_tensor x = dev_f32(be, t, k), y = dev_f32(be, t, n);
            hl_tensor x16;
            hl_error err = {0};
            if (hl_backend_cuda_synth_weight(be, &x16, HL_DTYPE_F16, (int64_t[2]){k, t}, 3,
                                             &(hl_synth_part){"x", t, 1.0f}, 1, &err) != HL_OK)
                die("activations", &err);
            hl_backend_cuda_set_cublas_min_tokens(be, 1 << 30);
            const double ms = time_ours(be, &q, &y, &x);
            hl_backend_cuda_set_cublas_min_tokens(be, 1);
            const double ms_deq = time_ours(be, &q, &y, &x);
            const double ms_blas = time_cublas(be, &f16, (float *)y.data, x16.data, k, n, t);
            const double bytes = q.bytes + (double)(t * k) * 4 + (double)(t * n) * 4;
            const double gbps = bytes / (ms * 1e-3) / 1e9;
            emit("%-5s %6lld x %-6lld %4d  %9.4f  %8.1f  %5.1f%%  %7.2f  %8.4f  %8.4f  %6.2fx\n",
                 hl_quant_name(types[ti]), (long long)k, (long long)n, t, ms, gbps, 100 * gbps / copy_gbps,
                 2.0 * (double)(k * n) * t / (ms * 1e-3) / 1e12, ms_deq, ms_blas, ms_blas / ms);
            if (ti == 0 && !crossover && t >= 64 && ms_deq < ms) crossover = t;
            be->ops->release_weight(be, &x16);
            be->ops->release(be, x.data), be->ops->release(be, y.data);
        }
        weights_free(be, &q);
    }
    weights_free(be, &f16);
    hl_backend_cuda_set_cublas_min_tokens(be, 128);
    if (crossover) emit("q4_0  %6lld x %-6lld dequant+cuBLAS is faster from %d tokens (HL_CUDA_CUBLAS_MIN_TOKENS)\n",
                        (long long)k, (long long)n, crossover);
    else emit("q4_0  %6lld x %-6lld the tensor-core kernel is faster up to 512 tokens\n", (long long)k, (long long)n);
}

// A zero-filled K/V pool of n_blocks blocks (int8: with its zero scales): attention reads the
// same bytes whatever they hold.
static hl_kv_layer kv_pool(hl_backend *be, const hl_kv_geom *g, size_t *code_bytes, size_t *scale_bytes) {
    const size_t rows = (size_t)g->n_blocks * (size_t)g->n_kv_heads * HL_KV_BLOCK;
    *code_bytes = rows * (size_t)g->head_dim * (g->kv_type == HL_DTYPE_I8 ? 1 : 2);
    *scale_bytes = g->kv_type == HL_DTYPE_I8 ? rows * sizeof(float) : 0;
    hl_kv_layer kv = {be->ops->alloc(be, *code_bytes), be->ops->alloc(be, *code_bytes), NULL, NULL};
    if (*scale_bytes) {
        kv.k_scale = be->ops->alloc(be, *scale_bytes);
        kv.v_scale = be->ops->alloc(be, *scale_bytes);
        if (!kv.k_scale || !kv.v_scale) die("alloc KV scales", NULL);
    }
    if (!kv.k || !kv.v) die("alloc KV pool", NULL);
    return kv;
}

static void kv_pool_free(hl_backend *be, hl_kv_layer *kv) {
    be->ops->release(be, kv->k), be->ops->release(be, kv->v);
    be->ops->release(be, kv->k_scale), be->ops->release(be, kv->v_scale);
}

// Milliseconds per attention call (3 warm-up calls, then iters timed).
static double time_attention(hl_backend *be, hl_tensor *o, const hl_tensor *q, const hl_kv_layer *kv,
                             const hl_kv_geom *geom, const hl_batch *batch, int n_heads, int iters) {
    const float scale = 1.0f / sqrtf((float)geom->head_dim);
    for (int i = 0; i < 3; i++) be->ops->attention(be, o, q, kv, geom, batch, n_heads, scale);
    hl_backend_cuda_timer_start(be);
    for (int i = 0; i < iters; i++) be->ops->attention(be, o, q, kv, geom, batch, n_heads, scale);
    return hl_backend_cuda_timer_stop(be) / iters;
}

// Paged decode attention, 64 sequences x 2048 tokens of context, Llama-3-8B heads (32 query,
// 8 KV, 128 dims). GB/s counts the bytes the kernel reads: every K and V row of the contexts
// (codes, plus one float scale per row for int8). The pool (256 MB fp16) exceeds the L2 cache.
static void bench_attention(hl_backend *be, double copy_gbps, int kv_type) {
    const int n_seqs = 64, ctx = 2048, n_heads = 32, n_kv = 8, hd = 128, max_blocks = ctx / HL_KV_BLOCK;
    hl_kv_geom geom = {.n_blocks = n_seqs * max_blocks, .n_kv_heads = n_kv, .head_dim = hd, .kv_type = kv_type};
    size_t code_bytes, scale_bytes;
    hl_kv_layer kv = kv_pool(be, &geom, &code_bytes, &scale_bytes);
    int32_t *pos = malloc(n_seqs * 4), *start = malloc((n_seqs + 1) * 4), *len = malloc(n_seqs * 4);
    int32_t *table = malloc((size_t)n_seqs * max_blocks * 4), *slot = malloc(n_seqs * 4);
    for (int s = 0; s < n_seqs; s++) {
        pos[s] = ctx - 1, start[s] = s, len[s] = ctx;
        for (int b = 0; b < max_blocks; b++) table[s * max_blocks + b] = b * n_seqs + s; // interleaved
        slot[s] = table[s * max_blocks + max_blocks - 1] * HL_KV_BLOCK + HL_KV_BLOCK - 1;
    }
    start[n_seqs] = n_seqs;
    hl_batch batch = {.n_tokens = n_seqs, .n_seqs = n_seqs, .pos = pos, .slot = slot, .seq_start = start,
                      .ctx_len = len, .block_table = table, .max_blocks = max_blocks};
    hl_tensor q = dev_f32(be, n_seqs, n_heads * hd), o = dev_f32(be, n_seqs, n_heads * hd);
    const double ms = time_attention(be, &o, &q, &kv, &geom, &batch, n_heads, 20);
    const double gbps = 2.0 * (double)(code_bytes + scale_bytes) / (ms * 1e-3) / 1e9;
    emit("paged decode attention 64 seqs x 2048 ctx (32/8 heads, 128 dims, %-4s KV): %.4f ms, %7.1f GB/s, "
         "%5.1f%% of copy\n", kv_type == HL_DTYPE_I8 ? "int8" : "fp16", ms, gbps, 100 * gbps / copy_gbps);
    kv_pool_free(be, &kv);
    be->ops->release(be, q.data), be->ops->release(be, o.data);
    free(pos), free(start), free(len), free(table), free(slot);
}

// Prefill attention (the tensor-core kernel at head_dim 128): n_seqs sequences of n_new tokens
// over n_cached cached ones, causal. TFLOP/s counts the unmasked work of Q·Kᵀ and P·V,
// 4 · n_heads · head_dim FLOP per (query, key) pair with key <= query.
static void bench_prefill(hl_backend *be, int kv_type, int n_seqs, int n_cached, int n_new) {
    const int n_heads = 32, n_kv = 8, hd = 128, ctx = n_cached + n_new, max_blocks = (ctx + 15) / HL_KV_BLOCK;
    const int n = n_seqs * n_new;
    hl_kv_geom geom = {.n_blocks = n_seqs * max_blocks, .n_kv_heads = n_kv, .head_dim = hd, .kv_type = kv_type};
    size_t code_bytes, scale_bytes;
    hl_kv_layer kv = kv_pool(be, &geom, &code_bytes, &scale_bytes);
    int32_t *pos = malloc((size_t)n * 4), *slot = malloc((size_t)n * 4), *start = malloc((n_seqs + 1) * 4);
    int32_t *len = malloc(n_seqs * 4), *table = malloc((size_t)n_seqs * max_blocks * 4);
    double pairs = 0;
    for (int s = 0; s < n_seqs; s++) {
        start[s] = s * n_new, len[s] = ctx;
        for (int b = 0; b < max_blocks; b++) table[s * max_blocks + b] = b * n_seqs + s;
        for (int i = 0; i < n_new; i++) {
            const int p = n_cached + i;
            pos[s * n_new + i] = p;
            slot[s * n_new + i] = table[s * max_blocks + p / HL_KV_BLOCK] * HL_KV_BLOCK + p % HL_KV_BLOCK;
            pairs += p + 1;
        }
    }
    start[n_seqs] = n;
    hl_batch batch = {.n_tokens = n, .n_seqs = n_seqs, .pos = pos, .slot = slot, .seq_start = start,
                      .ctx_len = len, .block_table = table, .max_blocks = max_blocks};
    hl_tensor q = dev_f32(be, n, n_heads * hd), o = dev_f32(be, n, n_heads * hd);
    const double ms = time_attention(be, &o, &q, &kv, &geom, &batch, n_heads, 10);
    emit("prefill attention %2d seqs x %4d new over %4d cached (32/8 heads, 128 dims, %-4s KV): %.4f ms, "
         "%6.1f TFLOP/s\n", n_seqs, n_new, n_cached, kv_type == HL_DTYPE_I8 ? "int8" : "fp16", ms,
         4.0 * n_heads * hd * pairs / (ms * 1e-3) / 1e12);
    kv_pool_free(be, &kv);
    be->ops->release(be, q.data), be->ops->release(be, o.data);
    free(pos), free(slot), free(start), free(len), free(table);
}

int main(int argc, char **argv) {
    hl_error err = {0};
    if (hl_cuda_device_count(&err) <= 0) die("no CUDA device", &err);
    hl_backend *be = hl_backend_cuda_create(0, &err);
    if (!be) die("create backend", &err);
    if (argc > 1 && !(results = fopen(argv[1], "w"))) {
        perror(argv[1]);
        return 1;
    }
    const double copy_gbps = hl_backend_cuda_copy_gbps(be, 1ull << 30, &err);
    if (copy_gbps <= 0) die("copy bandwidth", &err);
    emit("device: %s (%d SMs); device-to-device copy: %.1f GB/s (read + write)\n", hl_backend_cuda_device_name(be),
         hl_backend_cuda_n_sms(be), copy_gbps);
    emit("ms: our op (tensor-core kernel, incl. activation conversion and split-K reduce); deq+cuBLAS: the op's\n"
         "cuBLAS path (dequantized tiles); cuBLAS fp16: a plain fp16 GEMM on a dense weight; GB/s counts the\n"
         "quantized weight + scales + f32 activations in and out\n\n");
    emit("%-5s %-15s %4s  %9s  %8s  %6s  %7s  %8s  %8s  %7s\n", "type", "K x N", "tok", "ms", "GB/s", "%copy",
         "TFLOP/s", "deq+blas", "cublas16", "speedup");
    static const int64_t shapes[4][2] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {4096, 128256}};
    for (int i = 0; i < 4; i++) bench_shape(be, copy_gbps, shapes[i][0], shapes[i][1]);
    emit("\n");
    bench_attention(be, copy_gbps, HL_DTYPE_F16);
    bench_attention(be, copy_gbps, HL_DTYPE_I8);
    bench_prefill(be, HL_DTYPE_F16, 1, 0, 2048);
    bench_prefill(be, HL_DTYPE_I8, 1, 0, 2048);
    bench_prefill(be, HL_DTYPE_F16, 8, 1536, 512);
    bench_prefill(be, HL_DTYPE_I8, 8, 1536, 512);
    if (be->ops->sync(be, &err) != HL_OK) die("sync", &err);
    hl_backend_free(be);
    if (results) fclose(results);
    return 0;
}
