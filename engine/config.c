// config: llama-family hyperparameters from GGUF or HF config.json (see config.h).
#include "engine/config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

// Upper bounds: far above any released llama-family model, low enough that products of
// them stay well inside int64 and that a corrupt file cannot ask for absurd buffers.
#define MAX_VOCAB (1 << 22)
#define MAX_DIM 65536
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 1024
#define MAX_FFN (1 << 20)
#define MAX_CTX (1 << 24)
#define MAX_CONFIG_JSON_BYTES (16u * 1024 * 1024)

const char *hl_model_config_arch_name(enum hl_arch arch) {
    switch (arch) {
    case HL_ARCH_LLAMA: return "llama";
    case HL_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

const char *hl_model_config_rope_scaling_name(enum hl_rope_scaling_type type) {
    switch (type) {
    case HL_ROPE_SCALING_NONE: return "none";
    case HL_ROPE_SCALING_LINEAR: return "linear";
    case HL_ROPE_SCALING_LLAMA3: return "llama3";
    case HL_ROPE_SCALING_FREQ_TENSOR: return "rope_freqs tensor";
    }
    return "?";
}

// ---- shared by both constructors ----

// -1 marks "not given": head_dim is then derived, n_kv_heads and n_rot default.
static void config_init(hl_model_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->arch = HL_ARCH_LLAMA;
    cfg->head_dim = -1;
    cfg->n_kv_heads = -1;
    cfg->n_rot = -1;
    cfg->rope_theta = 10000.0f;
    cfg->rms_eps = 1e-6f;
    cfg->bos_id = -1;
    cfg->eos_id = -1;
}

static int add_eos(hl_model_config *cfg, int64_t id, hl_error *err) {
    for (int i = 0; i < cfg->n_eos_ids; i++) {
        if (cfg->eos_ids[i] == id) return HL_OK;
    }
    if (cfg->n_eos_ids == HL_CONFIG_MAX_EOS) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "more than %d end-of-sequence ids",
                         HL_CONFIG_MAX_EOS);
    }
    if (id < 0 || id > INT_MAX) {
        return hl_errorf(err, HL_ERR_INVAL, "end-of-sequence id %lld is out of range",
                         (long long)id);
    }
    cfg->eos_ids[cfg->n_eos_ids++] = (int)id;
    cfg->eos_id = cfg->eos_ids[0];
    return HL_OK;
}

// Fills the defaults that depend on other fields, then validates.
static int config_finish(hl_model_config *cfg, hl_error *err) {
    if (cfg->n_kv_heads == -1) cfg->n_kv_heads = cfg->n_heads;
    if (cfg->head_dim == -1 && cfg->n_heads > 0 && cfg->dim > 0) {
        if (cfg->dim % cfg->n_heads != 0) {
            return hl_errorf(err, HL_ERR_INVAL,
                             "dim (%d) is not a multiple of n_heads (%d) and no head_dim is "
                             "given", cfg->dim, cfg->n_heads);
        }
        cfg->head_dim = cfg->dim / cfg->n_heads;
    }
    if (cfg->n_rot == -1) cfg->n_rot = cfg->head_dim;
    return hl_model_config_validate(cfg, err);
}

static int check_range(const char *what, int64_t v, int64_t lo, int64_t hi, hl_error *err) {
    if (v >= lo && v <= hi) return HL_OK;
    return hl_errorf(err, HL_ERR_INVAL, "%s (%lld) must be in %lld..%lld", what, (long long)v,
                     (long long)lo, (long long)hi);
}

static int validate_sizes(const hl_model_config *cfg, hl_error *err) {
    int rc = HL_OK;
    if (rc == HL_OK) rc = check_range("n_vocab", cfg->n_vocab, 1, MAX_VOCAB, err);
    if (rc == HL_OK) rc = check_range("dim", cfg->dim, 1, MAX_DIM, err);
    if (rc == HL_OK) rc = check_range("n_layers", cfg->n_layers, 1, MAX_LAYERS, err);
    if (rc == HL_OK) rc = check_range("n_heads", cfg->n_heads, 1, MAX_HEADS, err);
    if (rc == HL_OK) rc = check_range("n_kv_heads", cfg->n_kv_heads, 1, cfg->n_heads, err);
    if (rc == HL_OK) rc = check_range("head_dim", cfg->head_dim, 2, MAX_HEAD_DIM, err);
    if (rc == HL_OK) rc = check_range("ffn_dim", cfg->ffn_dim, 1, MAX_FFN, err);
    if (rc == HL_OK) rc = check_range("n_ctx_train", cfg->n_ctx_train, 1, MAX_CTX, err);
    if (rc == HL_OK) rc = check_range("n_rot", cfg->n_rot, 2, cfg->head_dim, err);
    if (rc == HL_OK) rc = check_range("sliding_window", cfg->sliding_window, 0, MAX_CTX, err);
    if (rc != HL_OK) return rc;
    if (cfg->n_heads % cfg->n_kv_heads != 0) {
        return hl_errorf(err, HL_ERR_INVAL, "n_heads (%d) is not a multiple of n_kv_heads (%d)",
                         cfg->n_heads, cfg->n_kv_heads);
    }
    if (cfg->head_dim % 2 != 0 || cfg->n_rot % 2 != 0) {
        return hl_errorf(err, HL_ERR_INVAL, "head_dim (%d) and n_rot (%d) must be even",
                         cfg->head_dim, cfg->n_rot);
    }
    return HL_OK;
}

static bool finite_pos(float v) { return isfinite(v) && v > 0.0f; }

static int validate_rope(const hl_rope_scaling *rs, hl_error *err) {
    switch (rs->type) {
    case HL_ROPE_SCALING_NONE:
    case HL_ROPE_SCALING_FREQ_TENSOR:
        return HL_OK;
    case HL_ROPE_SCALING_LINEAR:
        if (finite_pos(rs->factor)) return HL_OK;
        return hl_errorf(err, HL_ERR_INVAL, "linear rope scaling factor (%g) must be > 0",
                         (double)rs->factor);
    case HL_ROPE_SCALING_LLAMA3:
        if (!finite_pos(rs->factor) || !finite_pos(rs->low_freq_factor) ||
            !finite_pos(rs->high_freq_factor) || rs->original_ctx <= 0) {
            return hl_errorf(err, HL_ERR_INVAL, "llama3 rope scaling needs factor, "
                             "low_freq_factor, high_freq_factor and original context > 0");
        }
        if (rs->high_freq_factor <= rs->low_freq_factor) {
            return hl_errorf(err, HL_ERR_INVAL, "llama3 rope scaling: high_freq_factor (%g) "
                             "must exceed low_freq_factor (%g)", (double)rs->high_freq_factor,
                             (double)rs->low_freq_factor);
        }
        return HL_OK;
    }
    return hl_errorf(err, HL_ERR_INVAL, "unknown rope scaling type %d", (int)rs->type);
}

static int validate_token(const char *what, int id, int n_vocab, hl_error *err) {
    if (id >= -1 && id < n_vocab) return HL_OK;
    return hl_errorf(err, HL_ERR_INVAL, "%s (%d) is not a token id below n_vocab (%d)", what, id,
                     n_vocab);
}

int hl_model_config_validate(const hl_model_config *cfg, hl_error *err) {
    if (cfg->arch != HL_ARCH_LLAMA && cfg->arch != HL_ARCH_QWEN2) {
        return hl_errorf(err, HL_ERR_INVAL, "unknown arch %d", (int)cfg->arch);
    }
    int rc = validate_sizes(cfg, err);
    if (rc != HL_OK) return rc;
    if (!finite_pos(cfg->rope_theta)) {
        return hl_errorf(err, HL_ERR_INVAL, "rope_theta (%g) must be > 0",
                         (double)cfg->rope_theta);
    }
    if (!finite_pos(cfg->rms_eps) || cfg->rms_eps >= 1.0f) {
        return hl_errorf(err, HL_ERR_INVAL, "rms_eps (%g) must be in (0, 1)",
                         (double)cfg->rms_eps);
    }
    rc = validate_rope(&cfg->rope_scaling, err);
    if (rc != HL_OK) return rc;
    rc = validate_token("bos_id", cfg->bos_id, cfg->n_vocab, err);
    if (cfg->n_eos_ids < 0 || cfg->n_eos_ids > HL_CONFIG_MAX_EOS) {
        return hl_errorf(err, HL_ERR_INVAL, "n_eos_ids (%d) out of range", cfg->n_eos_ids);
    }
    for (int i = 0; i < cfg->n_eos_ids && rc == HL_OK; i++) {
        rc = validate_token("eos id", cfg->eos_ids[i], cfg->n_vocab, err);
    }
    return rc;
}

// ---- GGUF ----

// Reads integer key `<arch>.<suffix>` (arch NULL: key is `suffix`). A missing key is an
// error when required and leaves *out alone otherwise.
static int gguf_int(const hl_gguf *g, const char *arch, const char *suffix, bool required,
                    int *out, hl_error *err) {
    char key[160];
    snprintf(key, sizeof(key), "%s%s%s", arch ? arch : "", arch ? "." : "", suffix);
    if (hl_gguf_find_kv(g, key) < 0) {
        if (!required) return HL_OK;
        return hl_errorf(err, HL_ERR_FORMAT, "GGUF key %s is missing", key);
    }
    int64_t v;
    int rc = hl_gguf_get_int(g, key, &v, err);
    if (rc != HL_OK) return rc;
    if (v < INT_MIN || v > INT_MAX) {
        return hl_errorf(err, HL_ERR_FORMAT, "GGUF key %s = %lld is out of range", key,
                         (long long)v);
    }
    *out = (int)v;
    return HL_OK;
}

static int gguf_float(const hl_gguf *g, const char *arch, const char *suffix, bool required,
                      float *out, hl_error *err) {
    char key[160];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    if (hl_gguf_find_kv(g, key) < 0) {
        if (!required) return HL_OK;
        return hl_errorf(err, HL_ERR_FORMAT, "GGUF key %s is missing", key);
    }
    double v;
    int rc = hl_gguf_get_float(g, key, &v, err);
    if (rc != HL_OK) return rc;
    if (!(fabs(v) <= FLT_MAX)) {
        return hl_errorf(err, HL_ERR_FORMAT, "GGUF key %s = %g is not a float", key, v);
    }
    *out = (float)v;
    return HL_OK;
}

// Copies a string value into buf (NUL-terminated); "" when the key is absent.
static int gguf_string(const hl_gguf *g, const char *key, char *buf, size_t n, hl_error *err) {
    buf[0] = '\0';
    if (hl_gguf_find_kv(g, key) < 0) return HL_OK;
    hl_gguf_str s;
    int rc = hl_gguf_get_str(g, key, &s, err);
    if (rc != HL_OK) return rc;
    if (s.len >= n) return hl_errorf(err, HL_ERR_FORMAT, "GGUF key %s is too long", key);
    memcpy(buf, s.ptr, (size_t)s.len);
    buf[s.len] = '\0';
    return HL_OK;
}

static int gguf_arch(const hl_gguf *g, hl_model_config *cfg, char *arch, size_t n,
                     hl_error *err) {
    int rc = gguf_string(g, "general.architecture", arch, n, err);
    if (rc != HL_OK) return rc;
    if (strcmp(arch, "llama") == 0) {
        cfg->arch = HL_ARCH_LLAMA;
    } else if (strcmp(arch, "qwen2") == 0) {
        cfg->arch = HL_ARCH_QWEN2;
    } else if (arch[0] == '\0') {
        return hl_errorf(err, HL_ERR_FORMAT, "GGUF key general.architecture is missing");
    } else {
        return hl_errorf(err, HL_ERR_UNSUPPORTED,
                         "architecture '%.40s' is not supported (llama, qwen2)", arch);
    }
    return HL_OK;
}

// n_vocab: <arch>.vocab_size, else the tokenizer's token count, else token_embd's rows.
static int gguf_vocab(const hl_gguf *g, const char *arch, hl_model_config *cfg,
                      hl_error *err) {
    int rc = gguf_int(g, arch, "vocab_size", false, &cfg->n_vocab, err);
    if (rc != HL_OK || cfg->n_vocab != 0) return rc;
    if (hl_gguf_find_kv(g, "tokenizer.ggml.tokens") >= 0) {
        hl_gguf_arr arr;
        rc = hl_gguf_get_arr(g, "tokenizer.ggml.tokens", &arr, err);
        if (rc != HL_OK) return rc;
        cfg->n_vocab = arr.n > (uint64_t)INT_MAX ? INT_MAX : (int)arr.n;
        return HL_OK;
    }
    const hl_gguf_tensor *t = hl_gguf_find_tensor(g, "token_embd.weight");
    if (t && t->n_dims == 2 && t->ne[1] <= INT_MAX) {
        cfg->n_vocab = (int)t->ne[1];
        return HL_OK;
    }
    return hl_errorf(err, HL_ERR_FORMAT, "no vocab size (%s.vocab_size, tokenizer.ggml.tokens)",
                     arch);
}

static int gguf_sizes(const hl_gguf *g, const char *arch, hl_model_config *cfg,
                      hl_error *err) {
    int rc = gguf_int(g, arch, "block_count", true, &cfg->n_layers, err);
    if (rc == HL_OK) rc = gguf_int(g, arch, "embedding_length", true, &cfg->dim, err);
    if (rc == HL_OK) rc = gguf_int(g, arch, "feed_forward_length", true, &cfg->ffn_dim, err);
    if (rc == HL_OK) rc = gguf_int(g, arch, "attention.head_count", true, &cfg->n_heads, err);
    if (rc == HL_OK) {
        rc = gguf_int(g, arch, "attention.head_count_kv", false, &cfg->n_kv_heads, err);
    }
    if (rc == HL_OK) rc = gguf_int(g, arch, "context_length", true, &cfg->n_ctx_train, err);
    if (rc == HL_OK) rc = gguf_int(g, arch, "attention.key_length", false, &cfg->head_dim, err);
    int value_length = cfg->head_dim;
    if (rc == HL_OK) rc = gguf_int(g, arch, "attention.value_length", false, &value_length, err);
    if (rc == HL_OK && value_length != cfg->head_dim) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "key_length %d != value_length %d",
                         cfg->head_dim, value_length);
    }
    if (rc == HL_OK) rc = gguf_int(g, arch, "rope.dimension_count", false, &cfg->n_rot, err);
    if (rc == HL_OK) rc = gguf_int(g, arch, "attention.sliding_window", false,
                                   &cfg->sliding_window, err);
    if (rc == HL_OK) rc = gguf_vocab(g, arch, cfg, err);
    return rc;
}

static int gguf_rope_scaling(const hl_gguf *g, const char *arch, hl_model_config *cfg,
                             hl_error *err) {
    hl_rope_scaling *rs = &cfg->rope_scaling;
    char key[160], type[32];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
    int rc = gguf_string(g, key, type, sizeof(type), err);
    if (rc != HL_OK) return rc;
    rs->factor = 0.0f;
    rc = gguf_float(g, arch, "rope.scale_linear", false, &rs->factor, err); // older files
    if (rc == HL_OK && rs->factor != 0.0f && type[0] == '\0') strcpy(type, "linear");
    if (rc == HL_OK) rc = gguf_float(g, arch, "rope.scaling.factor", false, &rs->factor, err);
    if (rc != HL_OK) return rc;
    if (type[0] == '\0' || strcmp(type, "none") == 0) {
        rs->type = HL_ROPE_SCALING_NONE;
    } else if (strcmp(type, "linear") == 0) {
        rs->type = HL_ROPE_SCALING_LINEAR;
    } else if (strcmp(type, "llama3") == 0) { // written by halyard's own converter
        rs->type = HL_ROPE_SCALING_LLAMA3;
        rc = gguf_float(g, arch, "rope.scaling.low_freq_factor", true, &rs->low_freq_factor,
                        err);
        if (rc == HL_OK) rc = gguf_float(g, arch, "rope.scaling.high_freq_factor", true,
                                         &rs->high_freq_factor, err);
        if (rc == HL_OK) rc = gguf_int(g, arch, "rope.scaling.original_context_length", true,
                                       &rs->original_ctx, err);
    } else {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "rope scaling type '%s' is not supported",
                         type);
    }
    if (rc != HL_OK) return rc;
    if (hl_gguf_find_tensor(g, "rope_freqs.weight")) {
        if (rs->type != HL_ROPE_SCALING_NONE) {
            return hl_errorf(err, HL_ERR_UNSUPPORTED, "rope_freqs.weight together with %s "
                             "rope scaling", type);
        }
        rs->type = HL_ROPE_SCALING_FREQ_TENSOR;
    }
    return HL_OK;
}

static int gguf_tokens(const hl_gguf *g, hl_model_config *cfg, hl_error *err) {
    int rc = gguf_int(g, NULL, "tokenizer.ggml.bos_token_id", false, &cfg->bos_id, err);
    const char *stops[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                           "tokenizer.ggml.eom_token_id"};
    for (int i = 0; i < 3 && rc == HL_OK; i++) {
        int id = -1;
        rc = gguf_int(g, NULL, stops[i], false, &id, err);
        if (rc == HL_OK && id != -1) rc = add_eos(cfg, id, err);
    }
    return rc;
}

int hl_model_config_from_gguf(const hl_gguf *g, hl_model_config *cfg, hl_error *err) {
    config_init(cfg);
    char arch[48];
    int rc = gguf_arch(g, cfg, arch, sizeof(arch), err);
    if (rc == HL_OK) rc = gguf_sizes(g, arch, cfg, err);
    if (rc == HL_OK) rc = gguf_float(g, arch, "rope.freq_base", false, &cfg->rope_theta, err);
    if (rc == HL_OK) {
        rc = gguf_float(g, arch, "attention.layer_norm_rms_epsilon", true, &cfg->rms_eps, err);
    }
    if (rc == HL_OK) rc = gguf_rope_scaling(g, arch, cfg, err);
    if (rc == HL_OK) rc = gguf_tokens(g, cfg, err);
    if (rc != HL_OK) return rc;
    cfg->tied_embeddings = hl_gguf_find_tensor(g, "output.weight") == NULL;
    cfg->qkv_bias = cfg->arch == HL_ARCH_QWEN2 || hl_gguf_find_tensor(g, "blk.0.attn_q.bias");
    return config_finish(cfg, err);
}

// ---- Hugging Face config.json ----

static const cJSON *js_get(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(v) ? NULL : v; // null means "not set", as in transformers
}

// Integer field. Absent or null: an error when required, else *out is left alone.
static int js_int(const cJSON *root, const char *key, bool required, int *out, hl_error *err) {
    const cJSON *v = js_get(root, key);
    if (!v) {
        if (!required) return HL_OK;
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: '%s' is missing", key);
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= INT_MIN && d <= INT_MAX) || d != (double)(int)d) {
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: '%s' is not an integer", key);
    }
    *out = (int)d;
    return HL_OK;
}

static int js_float(const cJSON *root, const char *key, bool required, float *out,
                    hl_error *err) {
    const cJSON *v = js_get(root, key);
    if (!v) {
        if (!required) return HL_OK;
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: '%s' is missing", key);
    }
    if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX)) {
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: '%s' is not a float number", key);
    }
    *out = (float)v->valuedouble;
    return HL_OK;
}

static int js_bool(const cJSON *root, const char *key, bool *out, hl_error *err) {
    const cJSON *v = js_get(root, key);
    if (!v) return HL_OK;
    if (!cJSON_IsBool(v)) {
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: '%s' is not true/false", key);
    }
    *out = cJSON_IsTrue(v);
    return HL_OK;
}

// model_type plus the features halyard's llama forward pass does not have.
static int hf_arch(const cJSON *root, hl_model_config *cfg, hl_error *err) {
    const cJSON *mt = js_get(root, "model_type");
    if (!cJSON_IsString(mt)) {
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: 'model_type' is missing");
    }
    const char *t = mt->valuestring;
    if (strcmp(t, "llama") == 0 || strcmp(t, "mistral") == 0) {
        cfg->arch = HL_ARCH_LLAMA;
    } else if (strcmp(t, "qwen2") == 0) {
        cfg->arch = HL_ARCH_QWEN2;
        cfg->qkv_bias = true;
    } else {
        return hl_errorf(err, HL_ERR_UNSUPPORTED,
                         "model_type '%.40s' is not supported (llama, mistral, qwen2)", t);
    }
    const cJSON *act = js_get(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "config.json: hidden_act must be \"silu\"");
    }
    bool attn_bias = false, mlp_bias = false;
    int rc = js_bool(root, "attention_bias", &attn_bias, err);
    if (rc == HL_OK) rc = js_bool(root, "mlp_bias", &mlp_bias, err);
    if (rc == HL_OK && (attn_bias || mlp_bias)) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED,
                         "config.json: attention_bias / mlp_bias are not supported");
    }
    return rc;
}

static int hf_sizes(const cJSON *root, hl_model_config *cfg, hl_error *err) {
    // transformers' defaults for max_position_embeddings, per model type
    cfg->n_ctx_train = cfg->arch == HL_ARCH_QWEN2 ? 32768 : 2048;
    int rc = js_int(root, "vocab_size", true, &cfg->n_vocab, err);
    if (rc == HL_OK) rc = js_int(root, "hidden_size", true, &cfg->dim, err);
    if (rc == HL_OK) rc = js_int(root, "num_hidden_layers", true, &cfg->n_layers, err);
    if (rc == HL_OK) rc = js_int(root, "num_attention_heads", true, &cfg->n_heads, err);
    if (rc == HL_OK) rc = js_int(root, "num_key_value_heads", false, &cfg->n_kv_heads, err);
    if (rc == HL_OK) rc = js_int(root, "head_dim", false, &cfg->head_dim, err);
    if (rc == HL_OK) rc = js_int(root, "intermediate_size", true, &cfg->ffn_dim, err);
    if (rc == HL_OK) rc = js_int(root, "max_position_embeddings", false, &cfg->n_ctx_train, err);
    if (rc == HL_OK) rc = js_float(root, "rope_theta", false, &cfg->rope_theta, err);
    if (rc == HL_OK) rc = js_float(root, "rms_norm_eps", false, &cfg->rms_eps, err);
    if (rc == HL_OK) rc = js_bool(root, "tie_word_embeddings", &cfg->tied_embeddings, err);
    if (rc != HL_OK) return rc;
    // Qwen2 lists sliding_window but uses it only with use_sliding_window.
    bool use_sw = cfg->arch != HL_ARCH_QWEN2;
    rc = js_bool(root, "use_sliding_window", &use_sw, err);
    if (rc == HL_OK && use_sw) rc = js_int(root, "sliding_window", false, &cfg->sliding_window,
                                           err);
    return rc;
}

static int hf_rope_scaling(const cJSON *root, hl_model_config *cfg, hl_error *err) {
    const cJSON *rs = js_get(root, "rope_scaling");
    if (!rs) return HL_OK;
    if (!cJSON_IsObject(rs)) {
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: 'rope_scaling' is not an object");
    }
    const cJSON *type = js_get(rs, "rope_type");
    if (!type) type = js_get(rs, "type"); // before transformers 4.43
    if (!cJSON_IsString(type)) {
        return hl_errorf(err, HL_ERR_FORMAT, "config.json: rope_scaling has no rope_type");
    }
    hl_rope_scaling *out = &cfg->rope_scaling;
    const char *t = type->valuestring;
    if (strcmp(t, "default") == 0) return HL_OK;
    if (strcmp(t, "linear") == 0) {
        out->type = HL_ROPE_SCALING_LINEAR;
        return js_float(rs, "factor", true, &out->factor, err);
    }
    if (strcmp(t, "llama3") != 0) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "rope scaling type '%.40s' is not supported "
                         "(linear, llama3)", t);
    }
    out->type = HL_ROPE_SCALING_LLAMA3;
    int rc = js_float(rs, "factor", true, &out->factor, err);
    if (rc == HL_OK) rc = js_float(rs, "low_freq_factor", true, &out->low_freq_factor, err);
    if (rc == HL_OK) rc = js_float(rs, "high_freq_factor", true, &out->high_freq_factor, err);
    if (rc == HL_OK) {
        rc = js_int(rs, "original_max_position_embeddings", true, &out->original_ctx, err);
    }
    return rc;
}

// bos_token_id: int or null; eos_token_id: int, list of ints, or null.
static int hf_tokens(const cJSON *root, hl_model_config *cfg, hl_error *err) {
    int rc = js_int(root, "bos_token_id", false, &cfg->bos_id, err);
    const cJSON *eos = js_get(root, "eos_token_id");
    if (rc != HL_OK || !eos) return rc;
    if (!cJSON_IsArray(eos)) {
        int id = -1;
        rc = js_int(root, "eos_token_id", true, &id, err);
        return rc == HL_OK ? add_eos(cfg, id, err) : rc;
    }
    for (const cJSON *e = eos->child; e && rc == HL_OK; e = e->next) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!(d >= 0 && d <= INT_MAX) || d != (double)(int)d) {
            return hl_errorf(err, HL_ERR_FORMAT, "config.json: eos_token_id has a non-integer");
        }
        rc = add_eos(cfg, (int64_t)d, err);
    }
    return rc;
}

int hl_model_config_from_hf_json(const char *json, size_t n_bytes, hl_model_config *cfg,
                                 hl_error *err) {
    config_init(cfg);
    cJSON *root = cJSON_ParseWithLength(json, n_bytes);
    if (!root) return hl_errorf(err, HL_ERR_FORMAT, "config.json is not valid JSON");
    int rc = HL_OK;
    if (!cJSON_IsObject(root)) rc = hl_errorf(err, HL_ERR_FORMAT, "config.json is not an object");
    if (rc == HL_OK) rc = hf_arch(root, cfg, err);
    if (rc == HL_OK) rc = hf_sizes(root, cfg, err);
    if (rc == HL_OK) rc = hf_rope_scaling(root, cfg, err);
    if (rc == HL_OK) rc = hf_tokens(root, cfg, err);
    cJSON_Delete(root);
    if (rc != HL_OK) return rc;
    return config_finish(cfg, err);
}

int hl_model_config_from_hf_file(const char *path, hl_model_config *cfg, hl_error *err) {
    struct stat sb;
    char *file = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + sizeof("/config.json");
        file = hl_xmalloc(n);
        snprintf(file, n, "%s/config.json", path);
    }
    hl_error local = {0};
    if (!err) err = &local; // the code of a failed read lives in err
    size_t n_bytes = 0;
    char *text = hl_read_file(file ? file : path, MAX_CONFIG_JSON_BYTES, &n_bytes, err);
    int rc = text ? hl_model_config_from_hf_json(text, n_bytes, cfg, err) : err->code;
    if (text && rc != HL_OK) hl_error_wrap(err, "%s", file ? file : path);
    free(text);
    free(file);
    return rc;
}

// ---- tensor layout ----

enum shape_kind {
    SHAPE_NORM,    // [dim]
    SHAPE_EMBD,    // [dim, n_vocab]
    SHAPE_Q,       // [dim, n_heads*head_dim]
    SHAPE_KV,      // [dim, n_kv_heads*head_dim]
    SHAPE_O,       // [n_heads*head_dim, dim]
    SHAPE_FFN_IN,  // [dim, ffn_dim]
    SHAPE_FFN_OUT, // [ffn_dim, dim]
    SHAPE_Q_BIAS,  // [n_heads*head_dim]
    SHAPE_KV_BIAS, // [n_kv_heads*head_dim]
    SHAPE_ROPE,    // [n_rot/2]
};

typedef struct tensor_spec {
    const char *gguf; // per-layer specs: the part after "blk.N."
    const char *hf;   // per-layer specs: the part after "model.layers.N."; NULL: no HF name
    enum shape_kind shape;
} tensor_spec;

static const tensor_spec global_specs[] = {
    {"token_embd.weight", "model.embed_tokens.weight", SHAPE_EMBD},
    {"output_norm.weight", "model.norm.weight", SHAPE_NORM},
    {"output.weight", "lm_head.weight", SHAPE_EMBD},
    {"rope_freqs.weight", NULL, SHAPE_ROPE},
};
enum { SPEC_TOKEN_EMBD, SPEC_OUTPUT_NORM, SPEC_OUTPUT, SPEC_ROPE_FREQS, N_GLOBAL_SPECS };

static const tensor_spec layer_specs[] = {
    {"attn_norm.weight", "input_layernorm.weight", SHAPE_NORM},
    {"attn_q.weight", "self_attn.q_proj.weight", SHAPE_Q},
    {"attn_k.weight", "self_attn.k_proj.weight", SHAPE_KV},
    {"attn_v.weight", "self_attn.v_proj.weight", SHAPE_KV},
    {"attn_output.weight", "self_attn.o_proj.weight", SHAPE_O},
    {"ffn_norm.weight", "post_attention_layernorm.weight", SHAPE_NORM},
    {"ffn_gate.weight", "mlp.gate_proj.weight", SHAPE_FFN_IN},
    {"ffn_up.weight", "mlp.up_proj.weight", SHAPE_FFN_IN},
    {"ffn_down.weight", "mlp.down_proj.weight", SHAPE_FFN_OUT},
    {"attn_q.bias", "self_attn.q_proj.bias", SHAPE_Q_BIAS}, // qkv_bias only, from here on
    {"attn_k.bias", "self_attn.k_proj.bias", SHAPE_KV_BIAS},
    {"attn_v.bias", "self_attn.v_proj.bias", SHAPE_KV_BIAS},
};
#define N_LAYER_SPECS ((int)(sizeof(layer_specs) / sizeof(layer_specs[0])))
#define FIRST_BIAS_SPEC 9

// Expected GGUF-order shape; returns n_dims.
static int expected_shape(const hl_model_config *cfg, enum shape_kind kind, int64_t ne[2]) {
    int64_t q = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t kv = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    ne[1] = 1;
    switch (kind) {
    case SHAPE_NORM: ne[0] = cfg->dim; return 1;
    case SHAPE_EMBD: ne[0] = cfg->dim; ne[1] = cfg->n_vocab; return 2;
    case SHAPE_Q: ne[0] = cfg->dim; ne[1] = q; return 2;
    case SHAPE_KV: ne[0] = cfg->dim; ne[1] = kv; return 2;
    case SHAPE_O: ne[0] = q; ne[1] = cfg->dim; return 2;
    case SHAPE_FFN_IN: ne[0] = cfg->dim; ne[1] = cfg->ffn_dim; return 2;
    case SHAPE_FFN_OUT: ne[0] = cfg->ffn_dim; ne[1] = cfg->dim; return 2;
    case SHAPE_Q_BIAS: ne[0] = q; return 1;
    case SHAPE_KV_BIAS: ne[0] = kv; return 1;
    case SHAPE_ROPE: ne[0] = cfg->n_rot / 2; return 1;
    }
    HL_ASSERT(!"unknown shape kind");
    return 0;
}

static int64_t shape_count(const hl_model_config *cfg, enum shape_kind kind) {
    int64_t ne[2];
    expected_shape(cfg, kind, ne);
    return ne[0] * ne[1];
}

static void format_shape(char *buf, size_t n, const int64_t *ne, int n_dims) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && used < n; i++) {
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)ne[i]);
    }
    if (used < n) snprintf(buf + used, n - used, "]");
}

// One tensor: present (unless optional) with the expected shape; trailing 1-dims ignored.
static int check_one(const hl_model_config *cfg, const char *name, enum shape_kind kind,
                     bool required, hl_model_tensor_lookup_fn lookup, void *ctx, hl_error *err) {
    hl_model_tensor_info info;
    memset(&info, 0, sizeof(info));
    if (!lookup(ctx, name, &info)) {
        if (!required) return HL_OK;
        return hl_errorf(err, HL_ERR_FORMAT, "missing tensor %s", name);
    }
    int64_t want[HL_SAFETENSORS_MAX_DIMS];
    for (int i = 0; i < HL_SAFETENSORS_MAX_DIMS; i++) want[i] = 1;
    int n_want = expected_shape(cfg, kind, want);
    bool same = info.n_dims >= 0 && info.n_dims <= HL_SAFETENSORS_MAX_DIMS;
    for (int i = 0; i < HL_SAFETENSORS_MAX_DIMS && same; i++) {
        same = (i < info.n_dims ? info.ne[i] : 1) == want[i];
    }
    if (same) return HL_OK;
    char got_s[96], want_s[96];
    int n_got = info.n_dims < 0 ? 0 : info.n_dims > 8 ? 8 : info.n_dims;
    format_shape(got_s, sizeof(got_s), info.ne, n_got);
    format_shape(want_s, sizeof(want_s), want, n_want);
    return hl_errorf(err, HL_ERR_FORMAT, "tensor %s has shape %s, expected %s", name, got_s,
                     want_s);
}

static void spec_name(const tensor_spec *spec, enum hl_tensor_naming naming, int il, char *buf,
                      size_t n) {
    const char *part = naming == HL_NAMING_HF ? spec->hf : spec->gguf;
    if (il < 0) {
        snprintf(buf, n, "%s", part);
    } else if (naming == HL_NAMING_HF) {
        snprintf(buf, n, "model.layers.%d.%s", il, part);
    } else {
        snprintf(buf, n, "blk.%d.%s", il, part);
    }
}

static int check_globals(const hl_model_config *cfg, enum hl_tensor_naming naming,
                         hl_model_tensor_lookup_fn lookup, void *ctx, hl_error *err) {
    for (int i = 0; i < N_GLOBAL_SPECS; i++) {
        const tensor_spec *spec = &global_specs[i];
        bool required = true;
        if (i == SPEC_OUTPUT) required = !cfg->tied_embeddings;
        if (i == SPEC_ROPE_FREQS) {
            if (cfg->rope_scaling.type != HL_ROPE_SCALING_FREQ_TENSOR) continue;
            if (naming == HL_NAMING_HF) {
                return hl_errorf(err, HL_ERR_INVAL, "rope_freqs tensor scaling in an HF file");
            }
        }
        char name[128];
        spec_name(spec, naming, -1, name, sizeof(name));
        int rc = check_one(cfg, name, spec->shape, required, lookup, ctx, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

int hl_model_config_check_tensors(const hl_model_config *cfg, enum hl_tensor_naming naming,
                                  hl_model_tensor_lookup_fn lookup, void *ctx, hl_error *err) {
    int rc = check_globals(cfg, naming, lookup, ctx, err);
    int n_specs = cfg->qkv_bias ? N_LAYER_SPECS : FIRST_BIAS_SPEC;
    char name[128];
    for (int il = 0; il < cfg->n_layers && rc == HL_OK; il++) {
        for (int i = 0; i < n_specs && rc == HL_OK; i++) {
            spec_name(&layer_specs[i], naming, il, name, sizeof(name));
            rc = check_one(cfg, name, layer_specs[i].shape, true, lookup, ctx, err);
        }
    }
    if (rc != HL_OK) return rc;
    hl_model_tensor_info info;
    spec_name(&layer_specs[0], naming, cfg->n_layers, name, sizeof(name));
    if (lookup(ctx, name, &info)) {
        return hl_errorf(err, HL_ERR_FORMAT, "the file has more than n_layers (%d) layers: %s",
                         cfg->n_layers, name);
    }
    return HL_OK;
}

bool hl_model_config_lookup_gguf(void *ctx, const char *name, hl_model_tensor_info *out) {
    const hl_gguf_tensor *t = hl_gguf_find_tensor(ctx, name);
    if (!t) return false;
    out->dtype = t->type;
    out->n_dims = t->n_dims;
    for (int i = 0; i < HL_SAFETENSORS_MAX_DIMS; i++) {
        out->ne[i] = i < HL_GGUF_MAX_DIMS ? t->ne[i] : 1;
    }
    return true;
}

bool hl_model_config_lookup_safetensors(void *ctx, const char *name,
                                        hl_model_tensor_info *out) {
    const hl_safetensors_tensor *t = hl_safetensors_find_tensor(ctx, name);
    if (!t) return false;
    out->dtype = t->dtype;
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof(out->ne));
    return true;
}

// ---- names ----

// Parses "N." at *s (a layer index without sign or leading zeros); advances past the dot.
static bool parse_layer(const char **s, int *il) {
    const char *p = *s;
    int v = 0, n_digits = 0;
    while (*p >= '0' && *p <= '9' && n_digits < 7) {
        v = v * 10 + (*p++ - '0');
        n_digits++;
    }
    if (n_digits == 0 || *p != '.' || (n_digits > 1 && **s == '0')) return false;
    *s = p + 1;
    *il = v;
    return true;
}

// Shared by both directions: from_hf selects which spelling is the input.
static int map_name(const char *in, bool from_hf, char *out, size_t out_size, hl_error *err) {
    const char *layer_prefix = from_hf ? "model.layers." : "blk.";
    size_t n_prefix = strlen(layer_prefix);
    int il = -1;
    const char *rest = in;
    if (strncmp(in, layer_prefix, n_prefix) == 0) {
        rest = in + n_prefix;
        if (!parse_layer(&rest, &il)) rest = NULL;
    }
    const tensor_spec *specs = il < 0 ? global_specs : layer_specs;
    int n_specs = il < 0 ? N_GLOBAL_SPECS : N_LAYER_SPECS;
    for (int i = 0; rest && i < n_specs; i++) {
        const char *from = from_hf ? specs[i].hf : specs[i].gguf;
        if (!from || !specs[i].hf || strcmp(from, rest) != 0) continue;
        char buf[160];
        spec_name(&specs[i], from_hf ? HL_NAMING_GGUF : HL_NAMING_HF, il, buf, sizeof(buf));
        if (strlen(buf) >= out_size) {
            return hl_errorf(err, HL_ERR_INVAL, "output buffer too small for %s", buf);
        }
        strcpy(out, buf);
        return HL_OK;
    }
    return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor %.100s is not part of the llama layout",
                     in);
}

int hl_model_config_hf_to_gguf_name(const char *hf_name, char *out, size_t out_size,
                                    hl_error *err) {
    return map_name(hf_name, true, out, out_size, err);
}

int hl_model_config_gguf_to_hf_name(const char *gguf_name, char *out, size_t out_size,
                                    hl_error *err) {
    return map_name(gguf_name, false, out, out_size, err);
}

// ---- sizes ----

int64_t hl_model_config_n_params(const hl_model_config *cfg) {
    int64_t n = shape_count(cfg, SHAPE_EMBD) + shape_count(cfg, SHAPE_NORM);
    if (!cfg->tied_embeddings) n += shape_count(cfg, SHAPE_EMBD);
    int n_specs = cfg->qkv_bias ? N_LAYER_SPECS : FIRST_BIAS_SPEC;
    int64_t per_layer = 0;
    for (int i = 0; i < n_specs; i++) per_layer += shape_count(cfg, layer_specs[i].shape);
    return n + per_layer * cfg->n_layers;
}

int hl_model_config_kv_bytes(const hl_model_config *cfg, int64_t n_ctx, size_t elem_bytes,
                             size_t *out, hl_error *err) {
    if (n_ctx < 0 || elem_bytes == 0) {
        return hl_errorf(err, HL_ERR_INVAL, "kv_bytes: n_ctx %lld, elem_bytes %zu",
                         (long long)n_ctx, elem_bytes);
    }
    size_t n = 2 * (size_t)cfg->n_layers;
    bool ok = hl_mul_ok(n, (size_t)n_ctx, &n) &&
              hl_mul_ok(n, (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim, &n) &&
              hl_mul_ok(n, elem_bytes, &n);
    if (!ok) {
        return hl_errorf(err, HL_ERR_NOMEM, "a KV cache of %lld tokens does not fit in memory",
                         (long long)n_ctx);
    }
    *out = n;
    return HL_OK;
}

// Llama 3.1's ramp (transformers _compute_llama3_parameters): long wavelengths are
// slowed by `factor`, short ones kept, the band between interpolated smoothly.
static float llama3_factor(const hl_rope_scaling *rs, double freq) {
    const double pi = 3.14159265358979323846;
    double wavelen = 2.0 * pi / freq;
    double low_wavelen = rs->original_ctx / (double)rs->low_freq_factor;
    double high_wavelen = rs->original_ctx / (double)rs->high_freq_factor;
    if (wavelen < high_wavelen) return 1.0f;
    if (wavelen > low_wavelen) return rs->factor;
    double smooth = (rs->original_ctx / wavelen - rs->low_freq_factor) /
                    ((double)rs->high_freq_factor - rs->low_freq_factor);
    return (float)(1.0 / ((1.0 - smooth) / rs->factor + smooth));
}

int hl_model_config_rope_freq_factors(const hl_model_config *cfg, float *out, int n,
                                      hl_error *err) {
    if (n != cfg->n_rot / 2) {
        return hl_errorf(err, HL_ERR_INVAL, "rope factors: n is %d, n_rot/2 is %d", n,
                         cfg->n_rot / 2);
    }
    const hl_rope_scaling *rs = &cfg->rope_scaling;
    if (rs->type == HL_ROPE_SCALING_FREQ_TENSOR) {
        return hl_errorf(err, HL_ERR_INVAL, "rope factors are in tensor rope_freqs.weight");
    }
    for (int i = 0; i < n; i++) {
        double freq = pow((double)cfg->rope_theta, -2.0 * i / cfg->n_rot);
        switch (rs->type) {
        case HL_ROPE_SCALING_LINEAR: out[i] = rs->factor; break;
        case HL_ROPE_SCALING_LLAMA3: out[i] = llama3_factor(rs, freq); break;
        default: out[i] = 1.0f; break;
        }
    }
    return HL_OK;
}
