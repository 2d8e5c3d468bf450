// synth: deterministic random models of real shapes (see synth.h).
#include "engine/synth.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/quant.h"
#include "engine/quantize.h"

static const hl_synth_shape shapes[] = {
    {.name = "tiny", .dim = 256, .n_layers = 4, .n_heads = 8, .n_kv_heads = 2, .ffn_dim = 768,
     .n_ctx = 4096, .tied = false, .rope_theta = 500000.0f, .rms_eps = 1e-5f},
    // SmolLM2-135M: tied embeddings like the real model.
    {.name = "s135", .dim = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .ffn_dim = 1536,
     .n_ctx = 8192, .tied = true, .rope_theta = 500000.0f, .rms_eps = 1e-5f},
    // Llama-3.2-1B: tied embeddings and llama3 RoPE scaling (factor 32, 1, 4, 8192).
    {.name = "l1b", .dim = 2048, .n_layers = 16, .n_heads = 32, .n_kv_heads = 8, .ffn_dim = 8192,
     .n_ctx = 131072, .tied = true, .rope_theta = 500000.0f, .rms_eps = 1e-5f, .rope_scale = 32.0f,
     .rope_low_freq = 1.0f, .rope_high_freq = 4.0f, .rope_orig_ctx = 8192},
    // Llama-3-8B.
    {.name = "l8b", .dim = 4096, .n_layers = 32, .n_heads = 32, .n_kv_heads = 8, .ffn_dim = 14336,
     .n_ctx = 8192, .tied = false, .rope_theta = 500000.0f, .rms_eps = 1e-5f},
};

const hl_synth_shape *hl_synth_shape_find(const char *name) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (strcmp(shapes[i].name, name) == 0) return &shapes[i];
    }
    return NULL;
}

const char *hl_synth_shape_names(void) { return "tiny, s135, l1b, l8b"; }

static uint64_t name_hash(const char *name) { // FNV-1a: stable across runs and backends
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return h;
}

float hl_synth_value(uint64_t seed, const char *name, uint64_t i, float std) {
    uint64_t r = hl_hash64(hl_hash64(seed ^ name_hash(name)) + i);
    float u = (float)(r >> 40) * (1.0f / 16777216.0f); // [0, 1)
    return (2.0f * u - 1.0f) * std * 1.7320508f;       // uniform with the given std
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

float hl_synth_std(const char *name, int64_t ne0, int dim) {
    if (has_suffix(name, "norm.weight")) return 0.0f; // norms are exactly 1
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0)
        return 3.0f / sqrtf((float)dim); // logits = rms-normed x · row: std ≈ 3
    return 1.0f / sqrtf((float)ne0);
}

// ---- tensor plan ----

typedef struct synth_tensor {
    char name[64];
    int n_dims;
    int64_t ne[2];
    int type;
    float std;
    const float *values; // rope_freqs only: precomputed, else generated
    uint64_t seed;
} synth_tensor;

typedef struct synth_plan {
    synth_tensor *t; // owned
    int n;
    float *rope_freqs; // owned, head_dim/2 values or NULL
} synth_plan;

static void plan_add(synth_plan *p, const char *name, int n_dims, int64_t ne0, int64_t ne1) {
    synth_tensor *t = &p->t[p->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
}

// llama.cpp applies llama3 RoPE scaling through a rope_freqs tensor of per-frequency divisors,
// computed exactly as its HF converter does.
static float *llama3_rope_freqs(const hl_synth_shape *s) {
    int hd = s->dim / s->n_heads;
    float *f = hl_xmalloc(sizeof(float) * (size_t)(hd / 2));
    double low_wavelen = s->rope_orig_ctx / s->rope_low_freq;
    double high_wavelen = s->rope_orig_ctx / s->rope_high_freq;
    for (int i = 0; i < hd / 2; i++) {
        double freq = 1.0 / pow(s->rope_theta, (2.0 * i) / hd);
        double wavelen = 2.0 * M_PI / freq;
        if (wavelen < high_wavelen) {
            f[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            f[i] = s->rope_scale;
        } else {
            double smooth = (s->rope_orig_ctx / wavelen - s->rope_low_freq) /
                            (s->rope_high_freq - s->rope_low_freq);
            f[i] = (float)(1.0 / ((1.0 - smooth) / s->rope_scale + smooth));
        }
    }
    return f;
}

static void plan_build(synth_plan *p, const hl_synth_shape *s, int64_t n_vocab, int ftype, uint64_t seed) {
    int hd = s->dim / s->n_heads;
    p->t = hl_xcalloc((size_t)(4 + 9 * s->n_layers), sizeof(synth_tensor));
    p->n = 0;
    p->rope_freqs = NULL;
    plan_add(p, "token_embd.weight", 2, s->dim, n_vocab);
    plan_add(p, "output_norm.weight", 1, s->dim, 1);
    if (!s->tied) plan_add(p, "output.weight", 2, s->dim, n_vocab);
    if (s->rope_scale > 0) {
        p->rope_freqs = llama3_rope_freqs(s);
        plan_add(p, "rope_freqs.weight", 1, hd / 2, 1);
        p->t[p->n - 1].values = p->rope_freqs;
    }
    for (int il = 0; il < s->n_layers; il++) {
        char name[64];
        struct { const char *suffix; int n_dims; int64_t ne0, ne1; } layer[] = {
            {"attn_norm", 1, s->dim, 1},
            {"attn_q", 2, s->dim, (int64_t)s->n_heads * hd},
            {"attn_k", 2, s->dim, (int64_t)s->n_kv_heads * hd},
            {"attn_v", 2, s->dim, (int64_t)s->n_kv_heads * hd},
            {"attn_output", 2, (int64_t)s->n_heads * hd, s->dim},
            {"ffn_norm", 1, s->dim, 1},
            {"ffn_gate", 2, s->dim, s->ffn_dim},
            {"ffn_up", 2, s->dim, s->ffn_dim},
            {"ffn_down", 2, s->ffn_dim, s->dim},
        };
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", il, layer[k].suffix);
            plan_add(p, name, layer[k].n_dims, layer[k].ne0, layer[k].ne1);
        }
    }
    for (int i = 0; i < p->n; i++) {
        synth_tensor *t = &p->t[i];
        t->type = hl_quantize_tensor_type(ftype, t->name, t->n_dims, t->ne, s->n_layers, s->tied);
        t->std = hl_synth_std(t->name, t->ne[0], s->dim);
        t->seed = seed;
    }
}

static int synth_rows(void *ctx, int64_t row0, int64_t n_rows, float *dst, hl_error *err) {
    const synth_tensor *t = ctx;
    (void)err;
    uint64_t first = (uint64_t)row0 * (uint64_t)t->ne[0];
    uint64_t n = (uint64_t)n_rows * (uint64_t)t->ne[0];
    for (uint64_t i = 0; i < n; i++) {
        if (t->values) dst[i] = t->values[first + i];
        else if (t->std == 0.0f) dst[i] = 1.0f;
        else dst[i] = hl_synth_value(t->seed, t->name, first + i, t->std);
    }
    return HL_OK;
}

static int synth_fill(void *ctx, const char *name, void *dst, size_t n_bytes, hl_error *err) {
    const synth_tensor *t = ctx;
    (void)name;
    return hl_quantize_tensor(t->type, t->ne[0], t->n_dims == 2 ? t->ne[1] : 1, synth_rows,
                              ctx, dst, n_bytes, err);
}

// ---- tokenizer ----

static const char *llama3_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static int64_t copy_gguf_tokenizer(hl_gguf_writer *w, const hl_gguf *src, hl_error *err) {
    hl_gguf_arr tokens;
    if (hl_gguf_get_arr(src, "tokenizer.ggml.tokens", &tokens, err) != HL_OK) return -1;
    for (int64_t i = 0; i < hl_gguf_n_kv(src); i++) {
        if (strncmp(hl_gguf_kv_key(src, i), "tokenizer.", 10) == 0) hl_gguf_writer_copy_kv(w, src, i);
    }
    return (int64_t)tokens.n;
}

static char *path_join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = hl_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static cJSON *read_json(const char *dir, const char *file, bool required, hl_error *err) {
    char *path = path_join(dir, file);
    hl_error missing = {0}; // an optional file that is absent is not an error
    char *text = hl_read_file(path, 64u << 20, NULL, required ? err : &missing);
    cJSON *j = NULL;
    if (!text) {
        free(path);
        return NULL;
    }
    j = cJSON_Parse(text);
    if (!j) hl_errorf(err, HL_ERR_FORMAT, "%s: invalid JSON", path);
    free(text);
    free(path);
    return j;
}

// vocab.json → tokens in id order; the ids must be exactly 0..n-1.
static int hf_vocab(const cJSON *vocab, char ***tokens_out, size_t **lens_out, int64_t *n_out, hl_error *err) {
    int64_t n = cJSON_GetArraySize(vocab);
    char **tokens = hl_xcalloc((size_t)n, sizeof(char *));
    size_t *lens = hl_xcalloc((size_t)n, sizeof(size_t));
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        double id = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (id < 0 || id >= (double)n || tokens[(int64_t)id]) {
            for (int64_t i = 0; i < n; i++) free(tokens[i]);
            free(tokens);
            free(lens);
            return hl_errorf(err, HL_ERR_FORMAT, "vocab.json: ids are not exactly 0..%lld", (long long)n - 1);
        }
        tokens[(int64_t)id] = hl_xstrdup(it->string);
        lens[(int64_t)id] = strlen(it->string);
    }
    *tokens_out = tokens;
    *lens_out = lens;
    *n_out = n;
    return HL_OK;
}

static int32_t find_token(char **tokens, int64_t n, const char *text) {
    for (int64_t i = n - 1; i >= 0; i--) { // specials live at the end
        if (strcmp(tokens[i], text) == 0) return (int32_t)i;
    }
    return -1;
}

static int hf_merges(hl_gguf_writer *w, const char *dir, hl_error *err) {
    char *path = path_join(dir, "merges.txt");
    size_t n_bytes = 0;
    char *text = hl_read_file(path, 256u << 20, &n_bytes, err);
    free(path);
    if (!text) return err ? err->code : HL_ERR_IO;
    size_t cap = 1024, n = 0;
    const char **ptrs = hl_xmalloc(cap * sizeof(char *));
    size_t *lens = hl_xmalloc(cap * sizeof(size_t));
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 0 && strncmp(line, "#version", 8) != 0) {
            if (n == cap) {
                cap *= 2;
                ptrs = hl_xrealloc(ptrs, cap * sizeof(char *));
                lens = hl_xrealloc(lens, cap * sizeof(size_t));
            }
            ptrs[n] = line;
            lens[n++] = len;
        }
        line += len + (end ? 1 : 0);
    }
    hl_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", ptrs, lens, n);
    free(ptrs);
    free(lens);
    free(text);
    return HL_OK;
}

static void hf_special_ids(hl_gguf_writer *w, char **tokens, int64_t n) {
    struct { const char *key; const char *text; } ids[] = {
        {"tokenizer.ggml.bos_token_id", "<|begin_of_text|>"},
        {"tokenizer.ggml.eos_token_id", "<|end_of_text|>"},
        {"tokenizer.ggml.eot_token_id", "<|eot_id|>"},
        {"tokenizer.ggml.eom_token_id", "<|eom_id|>"},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int32_t id = find_token(tokens, n, ids[i].text);
        if (id >= 0) hl_gguf_writer_set_u32(w, ids[i].key, (uint32_t)id);
    }
}

static int64_t copy_hf_tokenizer(hl_gguf_writer *w, const char *dir, hl_error *err) {
    cJSON *vocab = read_json(dir, "vocab.json", true, err);
    if (!vocab) return -1;
    char **tokens = NULL;
    size_t *lens = NULL;
    int64_t n = 0;
    int rc = hf_vocab(vocab, &tokens, &lens, &n, err);
    cJSON_Delete(vocab);
    if (rc != HL_OK) return -1;
    int32_t *types = hl_xmalloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) types[i] = 1; // normal
    cJSON *specials = read_json(dir, "special_tokens.json", false, err);
    const cJSON *sp;
    cJSON_ArrayForEach(sp, specials) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < (double)n)
            types[(int64_t)id->valuedouble] = 3; // control
    }
    cJSON_Delete(specials);
    hl_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    hl_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    hl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, lens, (uint64_t)n);
    hl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", HL_GGUF_INT32, types, (uint64_t)n);
    hf_special_ids(w, tokens, n);
    hl_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", find_token(tokens, n, "<|begin_of_text|>") >= 0);
    if (find_token(tokens, n, "<|start_header_id|>") >= 0)
        hl_gguf_writer_set_str(w, "tokenizer.chat_template", llama3_template);
    free(types);
    for (int64_t i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
    free(lens);
    rc = hf_merges(w, dir, err);
    return rc == HL_OK ? n : -1;
}

int64_t hl_synth_add_tokenizer(hl_gguf_writer *w, const hl_synth_tokenizer *tok, hl_error *err) {
    if (tok && tok->from_gguf) return copy_gguf_tokenizer(w, tok->from_gguf, err);
    if (tok && tok->hf_dir) return copy_hf_tokenizer(w, tok->hf_dir, err);
    hl_errorf(err, HL_ERR_INVAL, "a tokenizer is needed (a GGUF file or a Hugging Face folder)");
    return -1;
}

// ---- writer ----

static void set_hparams(hl_gguf_writer *w, const hl_synth_shape *s, int ftype, int64_t n_vocab) {
    char name[64];
    snprintf(name, sizeof name, "halyard synth %s %s", s->name, hl_quantize_ftype_name(ftype));
    hl_gguf_writer_set_str(w, "general.architecture", "llama");
    hl_gguf_writer_set_str(w, "general.name", name);
    hl_gguf_writer_set_u32(w, "general.file_type", (uint32_t)hl_quantize_ftype_gguf_id(ftype));
    hl_gguf_writer_set_u32(w, "general.quantization_version", 2);
    hl_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->n_ctx);
    hl_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->dim);
    hl_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layers);
    hl_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->ffn_dim);
    hl_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_heads);
    hl_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv_heads);
    hl_gguf_writer_set_f32(w, "llama.rope.freq_base", s->rope_theta);
    hl_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", s->rms_eps);
    hl_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(s->dim / s->n_heads));
    hl_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
}

int hl_synth_write_gguf(const hl_synth_shape *shape, int ftype, uint64_t seed,
                        const hl_synth_tokenizer *tok, const char *path, hl_error *err) {
    if (ftype < 0 || ftype >= HL_FTYPE_COUNT) return hl_errorf(err, HL_ERR_INVAL, "unknown file type %d", ftype);
    hl_gguf_writer *w = hl_gguf_writer_create();
    int64_t n_vocab = hl_synth_add_tokenizer(w, tok, err);
    if (n_vocab <= 0) {
        hl_gguf_writer_free(w);
        return err ? err->code : HL_ERR_INVAL;
    }
    set_hparams(w, shape, ftype, n_vocab);
    synth_plan plan;
    plan_build(&plan, shape, n_vocab, ftype, seed);
    int rc = HL_OK;
    for (int i = 0; i < plan.n && rc == HL_OK; i++) {
        synth_tensor *t = &plan.t[i];
        rc = hl_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL, synth_fill, t, err);
    }
    if (rc == HL_OK) rc = hl_gguf_writer_write(w, path, err);
    hl_gguf_writer_free(w);
    free(plan.t);
    free(plan.rope_freqs);
    return rc;
}

// ---- in memory ----

struct hl_synth_model {
    synth_plan plan;
};

hl_synth_model *hl_synth_model_create(const hl_synth_shape *shape, int ftype, uint64_t seed,
                                      int64_t n_vocab, hl_error *err) {
    if (ftype < 0 || ftype >= HL_FTYPE_COUNT) {
        hl_errorf(err, HL_ERR_INVAL, "unknown file type %d", ftype);
        return NULL;
    }
    if (n_vocab <= 0 || n_vocab > (1 << 24)) {
        hl_errorf(err, HL_ERR_INVAL, "synthetic vocabulary of %lld tokens", (long long)n_vocab);
        return NULL;
    }
    hl_synth_model *m = hl_xcalloc(1, sizeof(*m));
    plan_build(&m->plan, shape, n_vocab, ftype, seed);
    return m;
}

void hl_synth_model_free(hl_synth_model *m) {
    if (!m) return;
    free(m->plan.t);
    free(m->plan.rope_freqs);
    free(m);
}

int hl_synth_model_n_tensors(const hl_synth_model *m) { return m->plan.n; }

hl_synth_tensor_info hl_synth_model_tensor(const hl_synth_model *m, int i) {
    HL_ASSERT(i >= 0 && i < m->plan.n);
    const synth_tensor *t = &m->plan.t[i];
    hl_synth_tensor_info info = {.name = t->name, .type = t->type, .n_dims = t->n_dims,
                                 .ne = {t->ne[0], t->ne[1]}};
    int rc = hl_quant_row_bytes(t->type, t->ne[0], &info.n_bytes, NULL);
    HL_ASSERT(rc == HL_OK); // the plan only holds shapes its types divide
    info.n_bytes *= (size_t)t->ne[1];
    return info;
}

int hl_synth_model_find(const hl_synth_model *m, const char *name) {
    for (int i = 0; i < m->plan.n; i++) {
        if (strcmp(m->plan.t[i].name, name) == 0) return i;
    }
    return -1;
}

int hl_synth_model_fill(const hl_synth_model *m, int i, void *dst, size_t n_bytes, hl_error *err) {
    HL_ASSERT(i >= 0 && i < m->plan.n);
    synth_tensor *t = &m->plan.t[i];
    if (n_bytes != hl_synth_model_tensor(m, i).n_bytes)
        return hl_errorf(err, HL_ERR_INVAL, "%s: %zu bytes asked for", t->name, n_bytes);
    return synth_fill(t, t->name, dst, n_bytes, err);
}
