// st_import: safetensors (HF) → GGUF conversion (see st_import.h).
#include "engine/st_import.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "engine/config.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/quantize.h"
#include "engine/safetensors.h"
#include "engine/synth.h"

typedef struct import_tensor {
    const hl_safetensors_tensor *src; // borrowed from the hl_safetensors; NULL for rope_freqs
    char name[96];                    // GGUF name
    int type;                         // output type
    int n_heads_perm;                 // > 0: permute rows for GGUF RoPE pairing with this many heads
    const float *values;              // rope_freqs only
    int64_t ne[2];
    int n_dims;
} import_tensor;

// GGUF row h*hd + 2i + k comes from HF row h*hd + k*hd/2 + i (convert_hf_to_gguf.py's permute).
int64_t hl_st_import_source_row(int64_t row, int64_t n_rows, int n_heads) {
    if (n_heads <= 0) return row;
    int64_t hd = n_rows / n_heads;
    int64_t h = row / hd, j = row % hd;
    return h * hd + (j % 2) * (hd / 2) + j / 2;
}

int hl_st_import_perm_heads(const hl_model_config *c, const char *gguf_name) {
    if (c->arch != HL_ARCH_LLAMA) return 0;
    if (strstr(gguf_name, ".attn_q.weight")) return c->n_heads;
    if (strstr(gguf_name, ".attn_k.weight")) return c->n_kv_heads;
    return 0;
}

static int64_t source_row(const import_tensor *t, int64_t row) {
    return hl_st_import_source_row(row, t->ne[1], t->n_heads_perm);
}

static float source_value(const hl_safetensors_tensor *s, int64_t i) {
    const uint8_t *p = s->data;
    switch (s->dtype) {
    case HL_DTYPE_F32: return hl_rd_f32(p + 4 * i);
    case HL_DTYPE_F16: return hl_f16_to_f32(hl_rd_u16(p + 2 * i));
    default: return hl_bf16_to_f32(hl_rd_u16(p + 2 * i));
    }
}

static int import_rows(void *ctx, int64_t row0, int64_t n_rows, float *dst, hl_error *err) {
    const import_tensor *t = ctx;
    (void)err;
    int64_t ne0 = t->ne[0];
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t src_row = source_row(t, row0 + r);
        for (int64_t c = 0; c < ne0; c++) {
            dst[r * ne0 + c] = t->values ? t->values[c] : source_value(t->src, src_row * ne0 + c);
        }
    }
    return HL_OK;
}

static int import_fill(void *ctx, const char *name, void *dst, size_t n_bytes, hl_error *err) {
    import_tensor *t = ctx;
    int rc = hl_quantize_tensor(t->type, t->ne[0], t->n_dims == 2 ? t->ne[1] : 1, import_rows, t, dst,
                                n_bytes, err);
    return rc == HL_OK ? rc : hl_error_wrap(err, "tensor %s", name);
}

static void set_hparams(hl_gguf_writer *w, const hl_model_config *c, int ftype) {
    const char *arch = hl_model_config_arch_name(c->arch);
    char key[96];
    hl_gguf_writer_set_str(w, "general.architecture", arch);
    hl_gguf_writer_set_u32(w, "general.file_type", (uint32_t)hl_quantize_ftype_gguf_id(ftype));
    hl_gguf_writer_set_u32(w, "general.quantization_version", 2);
    struct { const char *suffix; uint32_t v; } u[] = {
        {"context_length", (uint32_t)c->n_ctx_train}, {"embedding_length", (uint32_t)c->dim},
        {"block_count", (uint32_t)c->n_layers},       {"feed_forward_length", (uint32_t)c->ffn_dim},
        {"attention.head_count", (uint32_t)c->n_heads}, {"attention.head_count_kv", (uint32_t)c->n_kv_heads},
        {"rope.dimension_count", (uint32_t)c->n_rot}, {"vocab_size", (uint32_t)c->n_vocab},
        {"attention.key_length", (uint32_t)c->head_dim}, {"attention.value_length", (uint32_t)c->head_dim},
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, u[i].suffix);
        hl_gguf_writer_set_u32(w, key, u[i].v);
    }
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    hl_gguf_writer_set_f32(w, key, c->rope_theta);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    hl_gguf_writer_set_f32(w, key, c->rms_eps);
    if (c->rope_scaling.type == HL_ROPE_SCALING_LINEAR) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        hl_gguf_writer_set_str(w, key, "linear");
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        hl_gguf_writer_set_f32(w, key, c->rope_scaling.factor);
    }
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// The folder holding config.json and the tokenizer files: `in` itself or its parent.
static char *model_dir(const char *in) {
    if (is_dir(in)) return hl_xstrdup(in);
    char *copy = hl_xstrdup(in);
    char *dir = hl_xstrdup(dirname(copy));
    free(copy);
    return dir;
}

static int plan_tensors(const hl_safetensors *st, const hl_model_config *c, int ftype, import_tensor *plan,
                        int *n_plan, float *rope_freqs, hl_error *err) {
    int n = 0;
    for (int64_t i = 0; i < hl_safetensors_n_tensors(st); i++) {
        const hl_safetensors_tensor *s = hl_safetensors_tensor_at(st, i);
        import_tensor *t = &plan[n];
        hl_error skip = {0};
        if (hl_model_config_hf_to_gguf_name(s->name, t->name, sizeof t->name, &skip) != HL_OK) continue;
        if (s->n_dims < 1 || s->n_dims > 2)
            return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor %s has %d dims", s->name, s->n_dims);
        if (s->dtype != HL_DTYPE_F32 && s->dtype != HL_DTYPE_F16 && s->dtype != HL_DTYPE_BF16)
            return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor %s: dtype %s", s->name, hl_safetensors_dtype_name(s->dtype));
        t->src = s;
        t->n_dims = s->n_dims;
        t->ne[0] = s->ne[0];
        t->ne[1] = s->n_dims == 2 ? s->ne[1] : 1;
        t->n_heads_perm = hl_st_import_perm_heads(c, t->name);
        t->type = hl_quantize_tensor_type(ftype, t->name, t->n_dims, t->ne, c->n_layers, c->tied_embeddings);
        n++;
    }
    if (c->rope_scaling.type == HL_ROPE_SCALING_LLAMA3) {
        int rc = hl_model_config_rope_freq_factors(c, rope_freqs, c->n_rot / 2, err);
        if (rc != HL_OK) return rc;
        import_tensor *t = &plan[n++];
        snprintf(t->name, sizeof t->name, "rope_freqs.weight");
        t->n_dims = 1;
        t->ne[0] = c->n_rot / 2;
        t->ne[1] = 1;
        t->type = HL_DTYPE_F32;
        t->values = rope_freqs;
    }
    *n_plan = n;
    return HL_OK;
}

int hl_st_import_gguf(const char *in, const char *out, int ftype, const char *tokenizer_gguf, hl_error *err) {
    char *dir = model_dir(in);
    hl_safetensors *st = NULL;
    hl_gguf *tok_src = NULL;
    hl_gguf_writer *w = NULL;
    import_tensor *plan = NULL;
    float *rope_freqs = NULL;
    hl_model_config cfg;
    int rc = hl_model_config_from_hf_file(dir, &cfg, err);
    if (rc != HL_OK) goto done;
    st = hl_safetensors_open(in, err);
    if (!st) {
        rc = err ? err->code : HL_ERR_IO;
        goto done;
    }
    rc = hl_model_config_check_tensors(&cfg, HL_NAMING_HF, hl_model_config_lookup_safetensors, st, err);
    if (rc != HL_OK) goto done;
    if (tokenizer_gguf && !(tok_src = hl_gguf_open(tokenizer_gguf, err))) {
        rc = err ? err->code : HL_ERR_IO;
        goto done;
    }
    w = hl_gguf_writer_create();
    hl_synth_tokenizer tok = {.from_gguf = tok_src, .hf_dir = tok_src ? NULL : dir};
    if (hl_synth_add_tokenizer(w, &tok, err) < 0) {
        rc = err ? err->code : HL_ERR_FORMAT;
        goto done;
    }
    set_hparams(w, &cfg, ftype);
    plan = hl_xcalloc((size_t)hl_safetensors_n_tensors(st) + 1, sizeof(import_tensor));
    rope_freqs = hl_xcalloc((size_t)cfg.n_rot / 2 + 1, sizeof(float));
    int n_plan = 0;
    rc = plan_tensors(st, &cfg, ftype, plan, &n_plan, rope_freqs, err);
    for (int i = 0; i < n_plan && rc == HL_OK; i++)
        rc = hl_gguf_writer_add_tensor(w, plan[i].name, plan[i].type, plan[i].n_dims, plan[i].ne, NULL, import_fill,
                                       &plan[i], err);
    if (rc == HL_OK) rc = hl_gguf_writer_write(w, out, err);
done:
    hl_gguf_writer_free(w);
    hl_gguf_free(tok_src);
    hl_safetensors_free(st);
    free(plan);
    free(rope_freqs);
    free(dir);
    return rc;
}
