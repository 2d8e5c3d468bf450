// info: `halyard info FILE [--json] [--ctx N]` describes a model file: architecture,
// hyper-parameters, tokenizer, chat template, tensors, parameter count, bytes per type
// and the memory for weights plus an fp16 KV cache at a given context.
//
// Everything is collected into one cJSON document; --json prints it, otherwise a
// human-readable rendering of the same document, so the two never disagree.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/safetensors.h"
#include "tokenizer/chat.h"
#include "tools/cli.h"

static void info_usage(FILE *f) {
    fprintf(f, "usage: halyard info FILE [--json] [--ctx N]\n"
               "FILE is a GGUF file, a .safetensors file or a Hugging Face model folder.\n"
               "--ctx N: context length for the KV-cache estimate (default: the model's training context).\n");
}

// ---- collection ----

static void add_config(cJSON *doc, const hl_model_config *c) {
    cJSON *h = cJSON_AddObjectToObject(doc, "hparams");
    cJSON_AddStringToObject(h, "arch", hl_model_config_arch_name(c->arch));
    cJSON_AddNumberToObject(h, "n_vocab", c->n_vocab);
    cJSON_AddNumberToObject(h, "dim", c->dim);
    cJSON_AddNumberToObject(h, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(h, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(h, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(h, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(h, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(h, "n_ctx_train", c->n_ctx_train);
    cJSON_AddNumberToObject(h, "n_rot", c->n_rot);
    cJSON_AddNumberToObject(h, "rope_theta", c->rope_theta);
    cJSON_AddStringToObject(h, "rope_scaling", hl_model_config_rope_scaling_name(c->rope_scaling.type));
    if (c->rope_scaling.type == HL_ROPE_SCALING_LINEAR || c->rope_scaling.type == HL_ROPE_SCALING_LLAMA3)
        cJSON_AddNumberToObject(h, "rope_scaling_factor", c->rope_scaling.factor);
    cJSON_AddNumberToObject(h, "rms_eps", c->rms_eps);
    cJSON_AddBoolToObject(h, "tied_embeddings", c->tied_embeddings);
    cJSON_AddNumberToObject(h, "n_params", (double)hl_model_config_n_params(c));
}

static char *gguf_strdup(const hl_gguf *g, const char *key) {
    hl_gguf_str s;
    if (hl_gguf_get_str(g, key, &s, NULL) != HL_OK) return NULL;
    return hl_xstrndup(s.ptr, s.len);
}

static void add_id(cJSON *obj, const hl_gguf *g, const char *key, const char *name) {
    int64_t v;
    if (hl_gguf_get_int(g, key, &v, NULL) == HL_OK) cJSON_AddNumberToObject(obj, name, (double)v);
}

static void add_tokenizer(cJSON *doc, const hl_gguf *g) {
    cJSON *t = cJSON_AddObjectToObject(doc, "tokenizer");
    char *model = gguf_strdup(g, "tokenizer.ggml.model");
    char *pre = gguf_strdup(g, "tokenizer.ggml.pre");
    cJSON_AddStringToObject(t, "model", model ? model : "none");
    if (pre) cJSON_AddStringToObject(t, "pre", pre);
    free(model);
    free(pre);
    hl_gguf_arr a;
    if (hl_gguf_get_arr(g, "tokenizer.ggml.tokens", &a, NULL) == HL_OK) cJSON_AddNumberToObject(t, "n_tokens", (double)a.n);
    if (hl_gguf_get_arr(g, "tokenizer.ggml.merges", &a, NULL) == HL_OK) cJSON_AddNumberToObject(t, "n_merges", (double)a.n);
    add_id(t, g, "tokenizer.ggml.bos_token_id", "bos_id");
    add_id(t, g, "tokenizer.ggml.eos_token_id", "eos_id");
    add_id(t, g, "tokenizer.ggml.eot_token_id", "eot_id");
    add_id(t, g, "tokenizer.ggml.padding_token_id", "pad_id");
    add_id(t, g, "tokenizer.ggml.unknown_token_id", "unk_id");
    bool b;
    if (hl_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL) == HL_OK) cJSON_AddBoolToObject(t, "add_bos", b);
    char *jinja = gguf_strdup(g, "tokenizer.chat_template");
    const char *name = NULL;
    hl_error err = {0};
    if (!jinja) cJSON_AddStringToObject(doc, "chat_template", "none");
    else if (hl_chat_detect(jinja, &name, &err) == HL_OK) cJSON_AddStringToObject(doc, "chat_template", name);
    else cJSON_AddStringToObject(doc, "chat_template", "unknown (use --chat-template NAME)");
    free(jinja);
}

// Tensor rows plus per-type byte totals.
static void add_tensor(cJSON *tensors, cJSON *by_type, const char *name, int type, int n_dims,
                       const int64_t *ne, size_t n_bytes) {
    const hl_dtype_info *ti = hl_quant_info(type);
    const char *tname = ti ? ti->name : "?";
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "name", name);
    cJSON_AddStringToObject(row, "type", tname);
    cJSON *shape = cJSON_AddArrayToObject(row, "shape");
    for (int d = 0; d < n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ne[d]));
    cJSON_AddNumberToObject(row, "bytes", (double)n_bytes);
    cJSON_AddItemToArray(tensors, row);
    cJSON *slot = cJSON_GetObjectItemCaseSensitive(by_type, tname);
    if (!slot) {
        slot = cJSON_AddObjectToObject(by_type, tname);
        cJSON_AddNumberToObject(slot, "n_tensors", 0);
        cJSON_AddNumberToObject(slot, "bytes", 0);
    }
    cJSON *n = cJSON_GetObjectItemCaseSensitive(slot, "n_tensors");
    cJSON *bytes = cJSON_GetObjectItemCaseSensitive(slot, "bytes");
    cJSON_SetNumberValue(n, n->valuedouble + 1);
    cJSON_SetNumberValue(bytes, bytes->valuedouble + (double)n_bytes);
}

// Weights + fp16 KV cache at ctx; the weight bytes are the sum of the bytes_by_type table.
static void add_memory(cJSON *doc, const hl_model_config *c, int64_t ctx) {
    double weight_bytes = 0;
    const cJSON *slot;
    cJSON_ArrayForEach(slot, cJSON_GetObjectItemCaseSensitive(doc, "bytes_by_type")) {
        weight_bytes += cJSON_GetObjectItemCaseSensitive(slot, "bytes")->valuedouble;
    }
    size_t kv = 0;
    hl_error err = {0};
    if (ctx <= 0) ctx = c->n_ctx_train;
    if (hl_model_config_kv_bytes(c, ctx, 2, &kv, &err) != HL_OK) kv = 0;
    cJSON *m = cJSON_AddObjectToObject(doc, "memory");
    cJSON_AddNumberToObject(m, "ctx", (double)ctx);
    cJSON_AddNumberToObject(m, "weights_bytes", weight_bytes);
    cJSON_AddNumberToObject(m, "kv_cache_bytes_f16", (double)kv);
    cJSON_AddNumberToObject(m, "total_bytes", weight_bytes + (double)kv);
}

static cJSON *collect_gguf(const char *path, int64_t ctx, hl_error *err) {
    hl_gguf *g = hl_gguf_open(path, err);
    if (!g) return NULL;
    hl_model_config cfg;
    if (hl_model_config_from_gguf(g, &cfg, err) != HL_OK) {
        hl_gguf_free(g);
        return NULL;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "file", path);
    cJSON_AddStringToObject(doc, "format", "gguf");
    cJSON_AddNumberToObject(doc, "gguf_version", hl_gguf_version(g));
    cJSON_AddNumberToObject(doc, "file_bytes", (double)hl_gguf_file_bytes(g));
    char *name = gguf_strdup(g, "general.name");
    if (name) cJSON_AddStringToObject(doc, "name", name);
    free(name);
    add_config(doc, &cfg);
    add_tokenizer(doc, g);
    int check = hl_model_config_check_tensors(&cfg, HL_NAMING_GGUF, hl_model_config_lookup_gguf, g, err);
    cJSON_AddStringToObject(doc, "tensor_check", check == HL_OK ? "ok" : err->msg);
    cJSON *tensors = cJSON_AddArrayToObject(doc, "tensors");
    cJSON *by_type = cJSON_AddObjectToObject(doc, "bytes_by_type");
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) {
        const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
        add_tensor(tensors, by_type, t->name, t->type, t->n_dims, t->ne, t->n_bytes);
    }
    add_memory(doc, &cfg, ctx);
    hl_gguf_free(g);
    return doc;
}

static cJSON *collect_safetensors(const char *path, int64_t ctx, hl_error *err) {
    hl_safetensors *st = hl_safetensors_open(path, err);
    if (!st) return NULL;
    hl_model_config cfg;
    if (hl_model_config_from_hf_file(path, &cfg, err) != HL_OK) {
        hl_safetensors_free(st);
        return NULL;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "file", path);
    cJSON_AddStringToObject(doc, "format", "safetensors");
    cJSON_AddNumberToObject(doc, "n_shards", hl_safetensors_n_shards(st));
    add_config(doc, &cfg);
    int check = hl_model_config_check_tensors(&cfg, HL_NAMING_HF, hl_model_config_lookup_safetensors, st, err);
    cJSON_AddStringToObject(doc, "tensor_check", check == HL_OK ? "ok" : err->msg);
    cJSON *tensors = cJSON_AddArrayToObject(doc, "tensors");
    cJSON *by_type = cJSON_AddObjectToObject(doc, "bytes_by_type");
    for (int64_t i = 0; i < hl_safetensors_n_tensors(st); i++) {
        const hl_safetensors_tensor *t = hl_safetensors_tensor_at(st, i);
        add_tensor(tensors, by_type, t->name, t->dtype, t->n_dims, t->ne, t->n_bytes);
    }
    add_memory(doc, &cfg, ctx);
    hl_safetensors_free(st);
    return doc;
}

// ---- human rendering ----

static double num(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

static void print_bytes(double b) {
    if (b >= 1e9) printf("%.2f GB", b / 1e9);
    else if (b >= 1e6) printf("%.2f MB", b / 1e6);
    else printf("%.1f KB", b / 1e3);
}

static void print_hparams(const cJSON *h) {
    printf("architecture:   %s\n", str(h, "arch"));
    printf("hyper-params:   vocab %.0f, dim %.0f, layers %.0f, heads %.0f, kv heads %.0f, head dim %.0f, ffn %.0f\n",
           num(h, "n_vocab"), num(h, "dim"), num(h, "n_layers"), num(h, "n_heads"), num(h, "n_kv_heads"),
           num(h, "head_dim"), num(h, "ffn_dim"));
    printf("                context %.0f, rope theta %g (%s scaling, %.0f dims), rms eps %g, %s embeddings\n",
           num(h, "n_ctx_train"), num(h, "rope_theta"), str(h, "rope_scaling"), num(h, "n_rot"),
           num(h, "rms_eps"), cJSON_IsTrue(cJSON_GetObjectItem(h, "tied_embeddings")) ? "tied" : "untied");
    printf("parameters:     %.0f (%.1f M)\n", num(h, "n_params"), num(h, "n_params") / 1e6);
}

static void print_tokenizer(const cJSON *doc) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "tokenizer");
    if (!t) return;
    printf("tokenizer:      %s (pre %s), %.0f tokens, %.0f merges, bos %.0f, eos %.0f\n", str(t, "model"),
           str(t, "pre"), num(t, "n_tokens"), num(t, "n_merges"), num(t, "bos_id"), num(t, "eos_id"));
    printf("chat template:  %s\n", str(doc, "chat_template"));
}

static void print_tensors(const cJSON *doc) {
    printf("\n%-40s %-6s %-22s %12s\n", "tensor", "type", "shape", "bytes");
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(doc, "tensors")) {
        char shape[64] = "";
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(row, "shape")) {
            size_t n = strlen(shape);
            snprintf(shape + n, sizeof shape - n, "%s%.0f", n ? " x " : "", d->valuedouble);
        }
        printf("%-40s %-6s %-22s %12.0f\n", str(row, "name"), str(row, "type"), shape, num(row, "bytes"));
    }
    printf("\nbytes by type:\n");
    const cJSON *slot;
    cJSON_ArrayForEach(slot, cJSON_GetObjectItemCaseSensitive(doc, "bytes_by_type")) {
        printf("  %-6s %4.0f tensors  ", slot->string, num(slot, "n_tensors"));
        print_bytes(num(slot, "bytes"));
        printf("\n");
    }
}

static void print_human(const cJSON *doc) {
    printf("file:           %s (%s", str(doc, "file"), str(doc, "format"));
    if (num(doc, "gguf_version") > 0) printf(" v%.0f", num(doc, "gguf_version"));
    printf(")\n");
    if (cJSON_GetObjectItem(doc, "name")) printf("name:           %s\n", str(doc, "name"));
    print_hparams(cJSON_GetObjectItemCaseSensitive(doc, "hparams"));
    print_tokenizer(doc);
    printf("tensor check:   %s\n", str(doc, "tensor_check"));
    print_tensors(doc);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "memory");
    printf("\nmemory at ctx %.0f: weights ", num(m, "ctx"));
    print_bytes(num(m, "weights_bytes"));
    printf(" + KV cache (f16) ");
    print_bytes(num(m, "kv_cache_bytes_f16"));
    printf(" = ");
    print_bytes(num(m, "total_bytes"));
    printf(" (per sequence)\n");
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int hl_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    long long ctx = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            info_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--ctx") == 0) {
            if (!hl_cli_parse_int("--ctx", i + 1 < argc ? argv[i + 1] : NULL, 1, 1LL << 24, &ctx)) return 2;
            i++;
        } else if (argv[i][0] == '-' || path) {
            info_usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        info_usage(stderr);
        return 2;
    }
    hl_error err = {0};
    cJSON *doc = has_suffix(path, ".gguf") ? collect_gguf(path, ctx, &err) : collect_safetensors(path, ctx, &err);
    if (!doc) {
        fprintf(stderr, "halyard info: %s\n", err.msg);
        return 1;
    }
    if (json) {
        char *text = cJSON_PrintUnformatted(doc);
        printf("%s\n", text);
        cJSON_free(text);
    } else {
        print_human(doc);
    }
    cJSON_Delete(doc);
    return 0;
}
