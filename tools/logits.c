// logits: `halyard logits -m MODEL --top K` — for every line {"ids": [...]} on stdin, one line
// {"top": [[[id, logit], ...] for every position]} on stdout: the K largest logits of each
// position, best first (a debugging tool for kernel work and comparisons with other engines).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "tools/cli.h"

#define MAX_LINE_BYTES ((size_t)64 << 20)

typedef struct logits_args {
    const char *model, *tokenizer_from, *device;
    long long top, threads, ctx, chunk, seed;
} logits_args;

static void usage(FILE *f) {
    fprintf(f, "usage: halyard logits -m MODEL [--top K] [-t THREADS] [--ctx N] [--chunk N]\n"
               "                      [--tokenizer-from FILE.gguf] [--seed S] [--device cpu|cuda[:N]]\n"
               "Reads lines {\"ids\": [...]} from stdin; writes one line per input:\n"
               "{\"top\": [[[id, logit], ...] for every position]} with the K (default 10) largest\n"
               "logits of each position, best first. The prompt is run in prefill chunks of --chunk\n"
               "tokens (default 256). MODEL: GGUF, safetensors folder or synthetic:<shape>:<type>.\n");
}

static int parse_args(int argc, char **argv, logits_args *a) {
    *a = (logits_args){.top = 10, .threads = 0, .ctx = 4096, .chunk = 256};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        bool ok = true;
        if (!val) {
            fprintf(stderr, "halyard logits: unknown option or missing value: %s\n", s);
            return 2;
        }
        if (strcmp(s, "-m") == 0 || strcmp(s, "--model") == 0) a->model = val;
        else if (strcmp(s, "--tokenizer-from") == 0) a->tokenizer_from = val;
        else if (strcmp(s, "--device") == 0) a->device = val;
        else if (strcmp(s, "--top") == 0) ok = hl_cli_parse_int(s, val, 1, 1000, &a->top);
        else if (strcmp(s, "-t") == 0 || strcmp(s, "--threads") == 0)
            ok = hl_cli_parse_int(s, val, 0, 1024, &a->threads);
        else if (strcmp(s, "--ctx") == 0) ok = hl_cli_parse_int(s, val, 16, 1 << 20, &a->ctx);
        else if (strcmp(s, "--chunk") == 0) ok = hl_cli_parse_int(s, val, 1, 8192, &a->chunk);
        else if (strcmp(s, "--seed") == 0) ok = hl_cli_parse_int(s, val, 0, INT64_MAX, &a->seed);
        else {
            fprintf(stderr, "halyard logits: unknown option %s\n", s);
            return 2;
        }
        if (!ok) return 2;
        i++;
    }
    if (!a->model) {
        usage(stderr);
        return 2;
    }
    return 0;
}

// The k largest of row[0..n) into top (ids, best first; equal logits: lower id first).
static void top_k(const float *row, int n, int k, int32_t *top) {
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have == k && row[i] <= row[top[k - 1]]) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && row[top[j - 1]] < row[i]) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
}

typedef struct runner {
    const hl_model *m;
    hl_kv_cache *kv;
    hl_llama *l;
    float *logits;  // (chunk, n_vocab)
    int32_t *top;   // (k)
    int chunk, k;
} runner;

// Runs ids through the model chunk by chunk and prints the JSON line.
static int run_line(runner *r, const int32_t *ids, int n, hl_error *err) {
    hl_kv_seq seq = {0};
    int rc = hl_kv_cache_seq_reserve(r->kv, &seq, n, err);
    const int nv = r->m->cfg.n_vocab, k = r->k < nv ? r->k : nv;
    fputs("{\"top\": [", stdout);
    for (int p = 0; p < n && rc == HL_OK; p += r->chunk) {
        int nt = n - p < r->chunk ? n - p : r->chunk;
        hl_llama_seq s = {.tokens = ids + p, .n_tokens = nt, .n_past = p, .blocks = seq.blocks,
                          .n_blocks = seq.n_blocks, .n_logits = nt};
        rc = hl_llama_forward(r->l, &s, 1, r->logits, err);
        for (int t = 0; t < nt && rc == HL_OK; t++) {
            const float *row = r->logits + (size_t)t * (size_t)nv;
            top_k(row, nv, k, r->top);
            printf("%s[", p + t ? ", " : "");
            for (int j = 0; j < k; j++) printf("%s[%d, %.9g]", j ? ", " : "", r->top[j], row[r->top[j]]);
            putchar(']');
        }
    }
    fputs("]}\n", stdout);
    fflush(stdout);
    hl_kv_cache_seq_release(r->kv, &seq);
    return rc;
}

// Parses {"ids": [...]} into a new array.
static int32_t *parse_ids(const char *line, int n_vocab, int *n_out, hl_error *err) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *arr = j ? cJSON_GetObjectItemCaseSensitive(j, "ids") : NULL;
    int32_t *ids = NULL;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1) {
        hl_errorf(err, HL_ERR_INVAL, "expected a line {\"ids\": [id, ...]} with at least one id");
        goto done;
    }
    int n = cJSON_GetArraySize(arr), i = 0;
    ids = hl_xmalloc(sizeof(int32_t) * (size_t)n);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= n_vocab) {
            hl_errorf(err, HL_ERR_INVAL, "id %d is not a token id below %d", i, n_vocab);
            free(ids);
            ids = NULL;
            goto done;
        }
        ids[i++] = (int32_t)it->valuedouble;
    }
    *n_out = n;
done:
    cJSON_Delete(j);
    return ids;
}

static int serve_lines(runner *r) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int status = 0;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        hl_error err = {0};
        int n = 0;
        if ((size_t)len > MAX_LINE_BYTES)
            hl_errorf(&err, HL_ERR_INVAL, "line longer than %zu bytes", MAX_LINE_BYTES);
        int32_t *ids = err.code ? NULL : parse_ids(line, r->m->cfg.n_vocab, &n, &err);
        if (ids && run_line(r, ids, n, &err) == HL_OK) {
            free(ids);
            continue;
        }
        free(ids);
        fprintf(stderr, "halyard logits: %s\n", err.msg);
        status = 1;
        break;
    }
    free(line);
    return status;
}

int hl_cmd_logits(int argc, char **argv) {
    logits_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    hl_error err = {0};
    hl_model_params mp = hl_model_default_params();
    mp.tokenizer_from = a.tokenizer_from;
    mp.synth_seed = (uint64_t)a.seed;
    runner r = {.chunk = (int)a.chunk, .k = (int)a.top};
    hl_backend *be = hl_backend_create_named(a.device, (int)a.threads, &err);
    hl_model *m = be ? hl_model_load(a.model, be, &mp, &err) : NULL;
    r.m = m;
    if (m) {
        hl_kv_geom g = {.n_blocks = (int)((a.ctx + HL_KV_BLOCK - 1) / HL_KV_BLOCK),
                        .n_kv_heads = m->cfg.n_kv_heads, .head_dim = m->cfg.head_dim,
                        .kv_type = HL_DTYPE_F16};
        r.kv = hl_kv_cache_create(be, m->cfg.n_layers, &g, &err);
    }
    if (r.kv) r.l = hl_llama_create(m, r.kv, r.chunk, 1, r.chunk, &err);
    int status = 1;
    if (r.l) {
        r.logits = hl_xmalloc(sizeof(float) * (size_t)r.chunk * (size_t)m->cfg.n_vocab);
        r.top = hl_xmalloc(sizeof(int32_t) * (size_t)r.k);
        status = serve_lines(&r);
    } else {
        fprintf(stderr, "halyard logits: %s\n", err.msg);
    }
    free(r.logits);
    free(r.top);
    hl_llama_free(r.l);
    hl_kv_cache_free(r.kv);
    hl_model_free(m);
    hl_backend_free(be);
    return status;
}
