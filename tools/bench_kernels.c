// bench_kernels: `halyard bench kernels` — times the backend's matmul for every weight type
// at Llama-3-8B's projection shapes and its paged attention at several batch/context sizes,
// through kernels/backend.h only, and prints achieved GB/s and GFLOP/s next to the machine's
// measured ceilings (bench_probe.c), in llama-bench's spirit.
//
// GEMV numbers are only honest when the weights come from memory, not from cache: each
// (type, shape) is uploaded as many times as it takes to exceed twice the last-level cache
// and every call uses the next copy. Weight values are real quantized blocks (a few rows
// quantized by the reference quantizer, repeated): kernel speed does not depend on them.
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/quant.h"
#include "kernels/backend.h"
#include "kernels/cpu/backend_cpu.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cuda/cuda_info.h"
#include "tools/bench.h"
#include "tools/cli.h"

#define MAX_ITEMS 32
#define MAX_COPIES 4096
#define DISTINCT_ROWS 16      // rows quantized for real; the rest repeat them
#define L3_N_HEADS 32         // Llama-3-8B attention: 32 query heads, 8 KV heads of 128
#define L3_N_KV_HEADS 8
#define L3_HEAD_DIM 128

typedef struct kern_opts {
    const char *device, *json_path;
    int types[MAX_ITEMS], n_types;
    // weight of n rows of k: y (b, n) = x (b, k) . w^T
    int64_t shape_k[MAX_ITEMS], shape_n[MAX_ITEMS];
    int n_shapes;
    int batch[MAX_ITEMS], n_batch;
    // b > 0: b decodes at context ctx; b == 0: one prefill of ctx tokens
    int attn_b[MAX_ITEMS], attn_ctx[MAX_ITEMS];
    int n_attn;
    long long threads, rotate_mb;
    double min_ms;
    bool quick, no_matmul, no_attention;
} kern_opts;

typedef struct kern_ctx {
    const kern_opts *o;
    hl_backend *be;
    hl_bench_ceilings ceil;
    bool have_ceil;
    double device_gbps;     // CUDA: bandwidth of the backend's add op (2 reads + 1 write)
    cJSON *json;            // results as they come
} kern_ctx;

// ---- options ----

static const char usage_text[] =
    "usage: halyard bench kernels [--device cpu|cuda] [--threads N] [--quick]\n"
    "         [--types q4_0,q4_1,q5_0,q8_0,q4_k,q5_k,q6_k,f16] [--shapes KxN,...]\n"
    "         [--batch 1,4,16,64,256] [--attention BxCTX,...,pN] [--no-matmul] [--no-attention]\n"
    "         [--min-ms MS] [--rotate-mb MB] [--json FILE]\n"
    "Measures the machine's ceilings first (CPU: memcpy bandwidth over buffers larger than the\n"
    "last-level cache, fp32 FMA peak on the widest ISA the CPU kernels use), then times\n"
    "matmul y (B, N) = x (B, K) . W^T for each weight type, shape KxN and batch B, and paged\n"
    "attention (Llama-3-8B heads: 32 query, 8 KV, dim 128, fp16 KV in 16-token blocks) for B\n"
    "sequences decoding at context CTX (BxCTX) or one prefill of N tokens (pN). Shapes\n"
    "default to Llama-3-8B's: 4096x4096, 4096x14336, 14336x4096, 4096x128256. Weights rotate\n"
    "over copies larger than twice the last-level cache (--rotate-mb sets the total).\n"
    "--quick: shapes 4096x4096 and 4096x14336, batch 1 and 16, fewer attention cases and\n"
    "shorter timings (meant for small CPUs). Each case runs for at least --min-ms (300).\n"
    "--device cuda uses the CUDA backend through the same interface (ceilings: the add op's\n"
    "bandwidth; no FLOP probe).\n";

static void usage(FILE *f) { fputs(usage_text, f); }

static bool parse_list(const char *opt, const char *v, int *out, int *n,
                       bool (*one)(const char *, int *)) {
    *n = 0;
    char *copy = hl_xstrdup(v), *save = NULL;
    bool ok = true;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        ok = *n < MAX_ITEMS && one(t, &out[*n]);
        if (ok) (*n)++;
        else fprintf(stderr, "halyard bench kernels: %s: bad item '%s'\n", opt, t);
    }
    free(copy);
    return ok && *n > 0;
}

static bool one_type(const char *t, int *out) {
    *out = hl_quant_from_name(t);
    return *out >= 0;
}

static bool one_int(const char *t, int *out) {
    char *end = NULL;
    long v = strtol(t, &end, 10);
    *out = (int)v;
    return end != t && *end == '\0' && v >= 1 && v <= 1 << 20;
}

static bool parse_pairs(const char *v, kern_opts *o, bool attention) {
    int n = 0;
    char *copy = hl_xstrdup(v), *save = NULL;
    bool ok = true;
    for (char *t = strtok_r(copy, ",", &save); t && ok && n < MAX_ITEMS;
         t = strtok_r(NULL, ",", &save), n++) {
        long long a = 0, b = 0;
        if (attention && (t[0] == 'p' || t[0] == 'P'))
            ok = sscanf(t + 1, "%lld", &b) == 1 && b >= 1;
        else ok = sscanf(t, "%lldx%lld", &a, &b) == 2 && a >= 1 && b >= 1;
        ok = ok && a <= 1 << 20 && b <= 1 << 24;
        if (!ok)
            fprintf(stderr, "halyard bench kernels: bad %s '%s'\n",
                    attention ? "attention case" : "shape", t);
        if (attention) {
            o->attn_b[n] = (int)a;
            o->attn_ctx[n] = (int)b;
        } else {
            o->shape_k[n] = a;
            o->shape_n[n] = b;
        }
    }
    free(copy);
    if (attention) o->n_attn = n;
    else o->n_shapes = n;
    return ok && n > 0;
}

static void default_lists(kern_opts *o) {
    static const int types[] = {HL_DTYPE_Q4_0, HL_DTYPE_Q4_1, HL_DTYPE_Q5_0, HL_DTYPE_Q8_0,
                                HL_DTYPE_Q4_K, HL_DTYPE_Q5_K, HL_DTYPE_Q6_K, HL_DTYPE_F16};
    if (o->n_types == 0) {
        o->n_types = (int)(sizeof types / sizeof types[0]);
        memcpy(o->types, types, sizeof types);
    }
    if (o->n_shapes == 0)
        parse_pairs(o->quick ? "4096x4096,4096x14336"
                             : "4096x4096,4096x14336,14336x4096,4096x128256",
                    o, false);
    if (o->n_batch == 0)
        parse_list("--batch", o->quick ? "1,16" : "1,4,16,64,256", o->batch, &o->n_batch, one_int);
    if (o->n_attn == 0)
        parse_pairs(o->quick ? "1x512,1x2048,8x1024,p256"
                             : "1x512,1x4096,16x1024,64x1024,64x4096,p512",
                    o, true);
    if (o->min_ms <= 0) o->min_ms = o->quick ? 150 : 300;
}

static bool parse_opt(kern_opts *o, const char *s, const char *v) {
    if (strcmp(s, "--device") == 0) return (o->device = v) != NULL;
    if (strcmp(s, "--json") == 0) return (o->json_path = v) != NULL;
    if (strcmp(s, "--types") == 0) return v && parse_list(s, v, o->types, &o->n_types, one_type);
    if (strcmp(s, "--batch") == 0) return v && parse_list(s, v, o->batch, &o->n_batch, one_int);
    if (strcmp(s, "--shapes") == 0) return v && parse_pairs(v, o, false);
    if (strcmp(s, "--attention") == 0) return v && parse_pairs(v, o, true);
    if (strcmp(s, "--threads") == 0 || strcmp(s, "-t") == 0)
        return hl_cli_parse_int(s, v, 0, 1024, &o->threads);
    if (strcmp(s, "--rotate-mb") == 0) return hl_cli_parse_int(s, v, 0, 1 << 20, &o->rotate_mb);
    if (strcmp(s, "--min-ms") == 0) return hl_cli_parse_float(s, v, &o->min_ms);
    fprintf(stderr, "halyard bench kernels: unknown option: %s\n", s);
    return false;
}

static int parse_args(int argc, char **argv, kern_opts *o) {
    *o = (kern_opts){.device = "cpu", .rotate_mb = -1};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(s, "--quick") == 0) o->quick = true;
        else if (strcmp(s, "--no-matmul") == 0) o->no_matmul = true;
        else if (strcmp(s, "--no-attention") == 0) o->no_attention = true;
        else if (!parse_opt(o, s, v)) return 2;
        else i++;
    }
    if (strcmp(o->device, "cpu") != 0 && strcmp(o->device, "cuda") != 0) {
        fprintf(stderr, "halyard bench kernels: --device must be cpu or cuda\n");
        return 2;
    }
    default_lists(o);
    return 0;
}

// ---- timing ----

typedef void (*op_fn)(kern_ctx *c, void *arg, int rep);

// Mean ms of one call of fn: repeats in growing batches until one batch lasts min_ms (the
// first call is a warm-up). Syncs after each batch so device backends are timed fully.
static int time_op(kern_ctx *c, op_fn fn, void *arg, double *ms, hl_error *err) {
    fn(c, arg, 0);
    int rc = c->be->ops->sync(c->be, err);
    int reps = 1, done = 1;
    while (rc == HL_OK) {
        double t0 = hl_time_ms();
        for (int r = 0; r < reps; r++) fn(c, arg, done + r);
        rc = c->be->ops->sync(c->be, err);
        double dt = hl_time_ms() - t0;
        done += reps;
        *ms = dt / reps;
        if (dt >= c->o->min_ms || reps >= (1 << 20)) break;
        int want = dt > 0 ? (int)(reps * c->o->min_ms / dt * 1.2) + 1 : reps * 10;
        reps = want > reps * 10 ? reps * 10 : want;
    }
    return rc;
}

// A device buffer holding host bytes (random F32 when src is NULL). NULL + err on failure.
static void *device_floats(kern_ctx *c, size_t n, uint64_t seed, hl_error *err) {
    float *h = hl_xmalloc(n * sizeof(float));
    hl_rng rng = {seed};
    for (size_t i = 0; i < n; i++) h[i] = hl_rng_uniform(&rng) * 2 - 1;
    void *d = c->be->ops->alloc(c->be, n * sizeof(float));
    int rc = d ? c->be->ops->upload(c->be, d, h, n * sizeof(float), err)
               : hl_errorf(err, HL_ERR_NOMEM, "cannot allocate %zu floats on %s", n, c->o->device);
    free(h);
    if (rc == HL_OK) return d;
    c->be->ops->release(c->be, d);
    return NULL;
}

static hl_tensor f32_matrix(void *data, int64_t cols, int64_t rows) {
    return (hl_tensor){.type = HL_DTYPE_F32,
                       .ne = {cols, rows},
                       .row_bytes = (size_t)cols * sizeof(float),
                       .data = data};
}

// ---- matmul ----

typedef struct mm_case {
    hl_tensor *w;           // (n_copies) the same weight uploaded n_copies times
    int n_copies;
    hl_tensor x, y;         // x (b, k), y (b, n)
} mm_case;

static void mm_call(kern_ctx *c, void *arg, int rep) {
    mm_case *m = arg;
    c->be->ops->matmul(c->be, &m->y, &m->w[rep % m->n_copies], &m->x); // hot: the timed call
}

// GGUF-layout bytes of an (n rows of k) weight of `type` (caller frees): DISTINCT_ROWS rows
// quantized from random values by the reference quantizer, repeated.
static uint8_t *host_weight(int type, int64_t k, int64_t n, size_t *rb, hl_error *err) {
    size_t total;
    if (hl_quant_row_bytes(type, k, rb, err) != HL_OK) return NULL;
    if (!hl_mul_ok(*rb, (size_t)n, &total)) {
        hl_errorf(err, HL_ERR_INVAL, "weight %lldx%lld is too large", (long long)k, (long long)n);
        return NULL;
    }
    uint8_t *buf = malloc(total);
    float *row = hl_xmalloc((size_t)k * sizeof(float));
    if (!buf) hl_errorf(err, HL_ERR_NOMEM, "cannot allocate %zu bytes of weights", total);
    hl_rng rng = {(uint64_t)type * 7919 + (uint64_t)k};
    for (int64_t r = 0; buf && r < n && r < DISTINCT_ROWS; r++) {
        for (int64_t i = 0; i < k; i++) row[i] = (hl_rng_uniform(&rng) * 2 - 1) * 0.05f;
        if (hl_quant_quantize(type, row, buf + (size_t)r * *rb, k, err) != HL_OK) {
            free(buf);
            buf = NULL;
        }
    }
    for (int64_t r = DISTINCT_ROWS; buf && r < n; r++)
        memcpy(buf + (size_t)r * *rb, buf + (size_t)(r % DISTINCT_ROWS) * *rb, *rb);
    free(row);
    return buf;
}

static size_t rotate_bytes(const kern_ctx *c) {
    if (c->o->rotate_mb >= 0) return (size_t)c->o->rotate_mb << 20;
    if (strcmp(c->o->device, "cuda") == 0) return (size_t)512 << 20; // > any GPU's L2 today
    size_t want = 2 * hl_bench_llc_bytes();
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t cap = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 4 : want;
    return want < cap ? want : cap;
}

static void release_copies(kern_ctx *c, mm_case *m) {
    for (int i = 0; i < m->n_copies; i++) c->be->ops->release_weight(c->be, &m->w[i]);
    free(m->w);
    m->w = NULL;
    m->n_copies = 0;
}

static int upload_copies(kern_ctx *c, mm_case *m, int type, int64_t k, int64_t n, size_t *w_bytes,
                         hl_error *err) {
    size_t rb;
    uint8_t *host = host_weight(type, k, n, &rb, err);
    if (!host) return err ? err->code : HL_ERR_INVAL;
    *w_bytes = rb * (size_t)n;
    size_t want = (rotate_bytes(c) + *w_bytes - 1) / *w_bytes;
    int copies = want < 1 ? 1 : want > MAX_COPIES ? MAX_COPIES : (int)want;
    m->w = hl_xcalloc((size_t)copies, sizeof(hl_tensor));
    const int64_t ne[2] = {k, n};
    int rc = HL_OK;
    for (; m->n_copies < copies && rc == HL_OK; m->n_copies++)
        rc = c->be->ops->upload_weight(c->be, &m->w[m->n_copies], type, ne, host, err);
    if (rc != HL_OK) m->n_copies--;
    free(host);
    if (rc != HL_OK) release_copies(c, m);
    return rc;
}

static void report_mm(kern_ctx *c, int type, int64_t k, int64_t n, int b, double ms,
                      size_t w_bytes) {
    double gbps = (double)w_bytes / (ms * 1e6),
           gflops = 2.0 * b * (double)k * (double)n / (ms * 1e6);
    char shape[48];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)k, (long long)n);
    double mem = c->have_ceil ? c->ceil.memcpy_gbps : c->device_gbps;
    printf("%-6s %-12s %6d %10.3f %9.1f %6.0f%% %10.1f", hl_quant_name(type), shape, b, ms, gbps,
           mem > 0 ? 100 * gbps / mem : NAN, gflops);
    if (c->have_ceil) printf(" %6.0f%%", 100 * gflops / c->ceil.peak_gflops);
    printf("\n");
    fflush(stdout);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", hl_quant_name(type));
    cJSON_AddNumberToObject(r, "k", (double)k);
    cJSON_AddNumberToObject(r, "n", (double)n);
    cJSON_AddNumberToObject(r, "batch", b);
    cJSON_AddNumberToObject(r, "ms", ms);
    cJSON_AddNumberToObject(r, "weight_bytes", (double)w_bytes);
    cJSON_AddNumberToObject(r, "gbps", gbps);
    cJSON_AddNumberToObject(r, "gflops", gflops);
    cJSON_AddItemToArray(cJSON_GetObjectItem(c->json, "matmul"), r);
}

// Times every batch size of one (type, shape); an allocation failure skips the rest.
static int bench_mm_shape(kern_ctx *c, int type, int64_t k, int64_t n, hl_error *err) {
    mm_case m = {0};
    size_t w_bytes = 0;
    int rc = upload_copies(c, &m, type, k, n, &w_bytes, err);
    for (int i = 0; i < c->o->n_batch && rc == HL_OK; i++) {
        int b = c->o->batch[i];
        void *x = device_floats(c, (size_t)b * (size_t)k, 42, err);
        void *y = x ? c->be->ops->alloc(c->be, (size_t)b * (size_t)n * sizeof(float)) : NULL;
        if (x && !y) rc = hl_errorf(err, HL_ERR_NOMEM, "cannot allocate the output of batch %d", b);
        if (!x) rc = err->code;
        m.x = f32_matrix(x, k, b);
        m.y = f32_matrix(y, n, b);
        double ms = 0;
        if (rc == HL_OK) rc = time_op(c, mm_call, &m, &ms, err);
        if (rc == HL_OK) report_mm(c, type, k, n, b, ms, w_bytes);
        c->be->ops->release(c->be, x);
        c->be->ops->release(c->be, y);
    }
    release_copies(c, &m);
    return rc;
}

static void bench_matmul(kern_ctx *c) {
    printf("\nmatmul: y (B, N) = x (B, K) . W^T; weights rotate over copies of >= %zu MiB in all\n",
           rotate_bytes(c) >> 20);
    printf("%-6s %-12s %6s %10s %9s %7s %10s", "type", "KxN", "B", "ms", "GB/s", "%mem", "GFLOP/s");
    if (c->have_ceil) printf(" %7s", "%peak");
    printf("\n");
    for (int t = 0; t < c->o->n_types; t++) {
        int type = c->o->types[t];
        if (!c->be->ops->supports(c->be, HL_OP_MATMUL, type)) {
            printf("%-6s (not supported by the %s backend)\n", hl_quant_name(type), c->o->device);
            continue;
        }
        for (int s = 0; s < c->o->n_shapes; s++) {
            hl_error err = {0};
            if (bench_mm_shape(c, type, c->o->shape_k[s], c->o->shape_n[s], &err) != HL_OK)
                printf("%-6s %lldx%lld: %s\n", hl_quant_name(type), (long long)c->o->shape_k[s],
                       (long long)c->o->shape_n[s], err.msg);
        }
    }
}

// ---- attention ----

typedef struct attn_case {
    hl_kv_layer kv;
    hl_kv_geom geom;
    hl_batch batch;
    hl_tensor q, out;       // (n_tokens, 32 * 128)
    int32_t *pos, *slot, *seq_start, *ctx_len, *bt; // host arrays the batch points at
} attn_case;

static void attn_call(kern_ctx *c, void *arg, int rep) {
    attn_case *a = arg;
    (void)rep;
    c->be->ops->attention(c->be, &a->out, &a->q, &a->kv, &a->geom, &a->batch, L3_N_HEADS,
                          1.0f / sqrtf((float)L3_HEAD_DIM));
}

// Random fp16 in [-1, 1) over n_bytes of device memory at dst, uploaded in 4 MiB pieces.
static int fill_f16(kern_ctx *c, void *dst, size_t n_bytes, uint64_t seed, hl_error *err) {
    size_t piece = (size_t)4 << 20;
    uint16_t *h = hl_xmalloc(piece);
    hl_rng rng = {seed};
    for (size_t i = 0; i < piece / 2; i++) h[i] = hl_f32_to_f16(hl_rng_uniform(&rng) * 2 - 1);
    int rc = HL_OK;
    for (size_t off = 0; off < n_bytes && rc == HL_OK; off += piece) {
        size_t n = n_bytes - off < piece ? n_bytes - off : piece;
        rc = c->be->ops->upload(c->be, (char *)dst + off, h, n, err);
    }
    free(h);
    return rc;
}

// Block tables of n_seqs sequences of ctx tokens over a shuffled pool, as a busy cache
// looks; fills the token layout of b decodes (b > 0) or one prefill of ctx tokens (b == 0).
static void attn_layout(attn_case *a, int b, int ctx) {
    int n_seqs = b > 0 ? b : 1, n_tokens = b > 0 ? b : ctx,
        mb = (ctx + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    int n_blocks = n_seqs * mb;
    a->bt = hl_xmalloc((size_t)n_blocks * sizeof(int32_t));
    for (int i = 0; i < n_blocks; i++) a->bt[i] = i;
    hl_rng rng = {7};
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(hl_rng_next(&rng) % (uint64_t)(i + 1)), t = a->bt[i];
        a->bt[i] = a->bt[j];
        a->bt[j] = t;
    }
    a->pos = hl_xmalloc((size_t)n_tokens * sizeof(int32_t));
    a->slot = hl_xmalloc((size_t)n_tokens * sizeof(int32_t));
    a->seq_start = hl_xmalloc((size_t)(n_seqs + 1) * sizeof(int32_t));
    a->ctx_len = hl_xmalloc((size_t)n_seqs * sizeof(int32_t));
    for (int t = 0; t < n_tokens; t++) {
        int s = b > 0 ? t : 0, p = b > 0 ? ctx - 1 : t;
        a->pos[t] = p;
        a->slot[t] = a->bt[s * mb + p / HL_KV_BLOCK] * HL_KV_BLOCK + p % HL_KV_BLOCK;
    }
    for (int s = 0; s <= n_seqs; s++) a->seq_start[s] = b > 0 ? s : (s ? ctx : 0);
    for (int s = 0; s < n_seqs; s++) a->ctx_len[s] = ctx;
    a->geom = (hl_kv_geom){.n_blocks = n_blocks,
                           .n_kv_heads = L3_N_KV_HEADS,
                           .head_dim = L3_HEAD_DIM,
                           .kv_type = HL_DTYPE_F16};
    a->batch = (hl_batch){.n_tokens = n_tokens, .n_seqs = n_seqs, .pos = a->pos, .slot = a->slot,
                          .seq_start = a->seq_start, .ctx_len = a->ctx_len, .block_table = a->bt,
                          .max_blocks = mb};
}

static void attn_free(kern_ctx *c, attn_case *a) {
    c->be->ops->release(c->be, a->kv.k);
    c->be->ops->release(c->be, a->kv.v);
    c->be->ops->release(c->be, a->q.data);
    c->be->ops->release(c->be, a->out.data);
    free(a->pos);
    free(a->slot);
    free(a->seq_start);
    free(a->ctx_len);
    free(a->bt);
}

static int attn_setup(kern_ctx *c, attn_case *a, int b, int ctx, hl_error *err) {
    attn_layout(a, b, ctx);
    size_t kv_bytes = (size_t)a->geom.n_blocks * L3_N_KV_HEADS * HL_KV_BLOCK * L3_HEAD_DIM * 2;
    size_t qd = (size_t)L3_N_HEADS * L3_HEAD_DIM, n_tokens = (size_t)a->batch.n_tokens;
    a->kv.k = c->be->ops->alloc(c->be, kv_bytes);
    a->kv.v = c->be->ops->alloc(c->be, kv_bytes);
    void *q = device_floats(c, n_tokens * qd, 3, err);
    void *out = c->be->ops->alloc(c->be, n_tokens * qd * sizeof(float));
    a->q = f32_matrix(q, (int64_t)qd, (int64_t)n_tokens);
    a->out = f32_matrix(out, (int64_t)qd, (int64_t)n_tokens);
    if (!a->kv.k || !a->kv.v || !q || !out)
        return hl_errorf(err, HL_ERR_NOMEM, "cannot allocate a KV pool of 2 x %zu MiB",
                         kv_bytes >> 20);
    int rc = fill_f16(c, a->kv.k, kv_bytes, 11, err);
    return rc == HL_OK ? fill_f16(c, a->kv.v, kv_bytes, 13, err) : rc;
}

static void report_attn(kern_ctx *c, int b, int ctx, double ms) {
    double per_tok = (double)L3_N_KV_HEADS * L3_HEAD_DIM * 2 * 2; // K and V, fp16
    double bytes = b > 0 ? b * (double)ctx * per_tok : (double)ctx * per_tok;
    double flops = b > 0
        ? 4.0 * b * ctx * L3_HEAD_DIM * L3_N_HEADS
        : 2.0 * ctx * (ctx + 1.0) * L3_HEAD_DIM * L3_N_HEADS; // causal: sum of 4 t d h
    double gbps = bytes / (ms * 1e6), gflops = flops / (ms * 1e6);
    char name[48];
    if (b > 0) snprintf(name, sizeof name, "decode %dx%d", b, ctx);
    else snprintf(name, sizeof name, "prefill %d", ctx);
    double mem = c->have_ceil ? c->ceil.memcpy_gbps : c->device_gbps;
    printf("%-20s %10.3f %9.1f %6.0f%% %10.1f", name, ms, gbps, mem > 0 ? 100 * gbps / mem : NAN,
           gflops);
    if (c->have_ceil) printf(" %6.0f%%", 100 * gflops / c->ceil.peak_gflops);
    printf("\n");
    fflush(stdout);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "case", b > 0 ? "decode" : "prefill");
    cJSON_AddNumberToObject(r, "seqs", b > 0 ? b : 1);
    cJSON_AddNumberToObject(r, "ctx", ctx);
    cJSON_AddNumberToObject(r, "ms", ms);
    cJSON_AddNumberToObject(r, "kv_bytes", bytes);
    cJSON_AddNumberToObject(r, "gbps", gbps);
    cJSON_AddNumberToObject(r, "gflops", gflops);
    cJSON_AddItemToArray(cJSON_GetObjectItem(c->json, "attention"), r);
}

static void bench_attention(kern_ctx *c) {
    printf(
        "\nattention: Llama-3-8B heads (32 query, 8 KV, dim 128), fp16 paged KV (16-token blocks,\n"
        "shuffled pool); GB/s counts K and V read once\n");
    printf("%-20s %10s %9s %7s %10s", "case", "ms", "GB/s", "%mem", "GFLOP/s");
    if (c->have_ceil) printf(" %7s", "%peak");
    printf("\n");
    if (!c->be->ops->supports(c->be, HL_OP_ATTENTION, HL_DTYPE_F16)) {
        printf("(fp16 attention is not supported by the %s backend)\n", c->o->device);
        return;
    }
    for (int i = 0; i < c->o->n_attn; i++) {
        hl_error err = {0};
        attn_case a = {0};
        int b = c->o->attn_b[i], ctx = c->o->attn_ctx[i];
        double ms = 0;
        int rc = attn_setup(c, &a, b, ctx, &err);
        if (rc == HL_OK) rc = time_op(c, attn_call, &a, &ms, &err);
        if (rc == HL_OK) report_attn(c, b, ctx, ms);
        else printf("%dx%d: %s\n", b, ctx, err.msg);
        attn_free(c, &a);
    }
}

// ---- ceilings ----

typedef struct add_case {
    hl_tensor a, b, out;
} add_case;

static void add_call(kern_ctx *c, void *arg, int rep) {
    add_case *a = arg;
    (void)rep;
    c->be->ops->add(c->be, &a->out, &a->a, &a->b);
}

// A device's memory ceiling through the interface: out = a + b over 3 x 256 MiB.
static int probe_device_add(kern_ctx *c, hl_error *err) {
    const int64_t cols = 4096, rows = 16384; // 64 Mi floats
    size_t n = (size_t)cols * rows;
    add_case a = {.a = f32_matrix(device_floats(c, n, 1, err), cols, rows),
                  .b = f32_matrix(device_floats(c, n, 2, err), cols, rows),
                  .out = f32_matrix(c->be->ops->alloc(c->be, n * sizeof(float)), cols, rows)};
    double ms = 0;
    int rc = a.a.data && a.b.data && a.out.data
        ? time_op(c, add_call, &a, &ms, err)
        : hl_errorf(err, HL_ERR_NOMEM, "cannot allocate 3 x 256 MiB");
    if (rc == HL_OK) c->device_gbps = 3.0 * (double)n * sizeof(float) / (ms * 1e6);
    c->be->ops->release(c->be, a.a.data);
    c->be->ops->release(c->be, a.b.data);
    c->be->ops->release(c->be, a.out.data);
    return rc;
}

static int measure_ceilings(kern_ctx *c, hl_error *err) {
    cJSON *j = cJSON_AddObjectToObject(c->json, "ceilings");
    if (strcmp(c->o->device, "cuda") == 0) {
        int rc = probe_device_add(c, err);
        if (rc != HL_OK) return rc;
        printf("ceiling: device memory %.1f GB/s (the add op: 2 reads + 1 write of 256 MiB);\n"
               "         no FLOP probe through the backend interface\n", c->device_gbps);
        cJSON_AddNumberToObject(j, "add_gbps", c->device_gbps);
        return HL_OK;
    }
    int rc = hl_bench_probe_cpu((int)c->o->threads, hl_backend_cpu_isa(c->be), c->o->min_ms * 2,
                                &c->ceil, err);
    if (rc != HL_OK) return rc;
    c->have_ceil = true;
    printf("ceilings: memcpy %.1f GB/s (read + write, 2 x %zu MiB buffers; LLC %zu MiB),\n"
           "          fp32 FMA peak %.1f GFLOP/s (%s, %d threads)\n",
           c->ceil.memcpy_gbps, c->ceil.probe_bytes >> 20, c->ceil.llc_bytes >> 20,
           c->ceil.peak_gflops, c->ceil.fma_isa, c->ceil.n_threads);
    cJSON_AddNumberToObject(j, "memcpy_gbps", c->ceil.memcpy_gbps);
    cJSON_AddNumberToObject(j, "peak_gflops", c->ceil.peak_gflops);
    cJSON_AddStringToObject(j, "fma_isa", c->ceil.fma_isa);
    cJSON_AddNumberToObject(j, "llc_bytes", (double)c->ceil.llc_bytes);
    cJSON_AddNumberToObject(j, "probe_bytes", (double)c->ceil.probe_bytes);
    cJSON_AddNumberToObject(j, "threads", c->ceil.n_threads);
    return HL_OK;
}

// ---- main ----

static hl_backend *open_backend(const kern_opts *o, hl_error *err) {
    if (strcmp(o->device, "cuda") == 0) return hl_backend_cuda_create(0, err);
    return hl_backend_cpu_create((int)o->threads, err);
}

static void describe(kern_ctx *c) {
    cJSON_AddStringToObject(c->json, "device", c->o->device);
    if (strcmp(c->o->device, "cuda") == 0) {
        hl_cuda_device_info info = {0};
        if (hl_cuda_device_get_info(0, &info, NULL) == HL_OK) {
            printf("bench kernels: cuda device 0: %s (sm_%d%d, %d SMs)\n", info.name, info.major,
                   info.minor, info.n_sms);
            cJSON_AddStringToObject(c->json, "gpu", info.name);
        }
        return;
    }
    const char *isa = hl_cpu_features_name(hl_backend_cpu_isa(c->be));
    printf("bench kernels: cpu backend, %s kernels\n", isa);
    cJSON_AddStringToObject(c->json, "isa", isa);
}

static int write_json(const char *path, cJSON *j) {
    char *text = cJSON_Print(j);
    FILE *f = text ? fopen(path, "w") : NULL;
    int rc = f && fputs(text, f) >= 0 ? 0 : 1;
    if (f && fclose(f) != 0) rc = 1;
    if (rc) fprintf(stderr, "halyard bench kernels: cannot write %s: %s\n", path, strerror(errno));
    free(text);
    return rc;
}

int hl_bench_kernels(int argc, char **argv) {
    kern_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : rc;
    hl_error err = {0};
    kern_ctx c = {.o = &o, .json = cJSON_CreateObject()};
    c.be = open_backend(&o, &err);
    if (!c.be) {
        fprintf(stderr, "halyard bench kernels: --device %s: %s\n", o.device, err.msg);
        cJSON_Delete(c.json);
        return 1;
    }
    cJSON_AddArrayToObject(c.json, "matmul");
    cJSON_AddArrayToObject(c.json, "attention");
    describe(&c);
    rc = measure_ceilings(&c, &err);
    if (rc != HL_OK) fprintf(stderr, "halyard bench kernels: ceilings: %s\n", err.msg);
    if (rc == HL_OK && !o.no_matmul) bench_matmul(&c);
    if (rc == HL_OK && !o.no_attention) bench_attention(&c);
    int exit_code = rc == HL_OK ? 0 : 1;
    if (rc == HL_OK && o.json_path) exit_code = write_json(o.json_path, c.json);
    cJSON_Delete(c.json);
    hl_backend_free(c.be);
    return exit_code;
}
