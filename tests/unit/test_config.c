// Unit tests for engine/config: the public HF config.json files of Llama-3.1-8B,
// Llama-3.2-1B, SmolLM2-135M-Instruct, Mistral-7B-v0.1 and Qwen2.5-0.5B
// (tests/fixtures/configs), checked against their published parameter counts; the default
// model's GGUF; small GGUF and safetensors files written here; every validation error.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/quant.h"

#define CONFIG_DIR "tests/fixtures/configs/"
#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static hl_model_config load_hf(const char *file) {
    hl_model_config cfg;
    hl_error err = {0};
    int rc = hl_model_config_from_hf_file(file, &cfg, &err);
    ck_assert_msg(rc == HL_OK, "%s: %s", file, err.msg);
    return cfg;
}

static size_t kv_bytes(const hl_model_config *cfg, int64_t n_ctx, size_t elem) {
    size_t n = 0;
    hl_error err = {0};
    ck_assert_int_eq(hl_model_config_kv_bytes(cfg, n_ctx, elem, &n, &err), HL_OK);
    return n;
}

// ---- real configs ----

START_TEST(test_llama31_8b) {
    hl_model_config c = load_hf(CONFIG_DIR "llama-3.1-8b.json");
    ck_assert_int_eq(c.arch, HL_ARCH_LLAMA);
    ck_assert(c.n_vocab == 128256 && c.dim == 4096 && c.n_layers == 32);
    ck_assert(c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 128 && c.n_rot == 128);
    ck_assert(c.ffn_dim == 14336 && c.n_ctx_train == 131072);
    ck_assert_float_eq(c.rope_theta, 500000.0f);
    ck_assert_float_eq(c.rms_eps, 1e-5f);
    ck_assert_int_eq(c.rope_scaling.type, HL_ROPE_SCALING_LLAMA3);
    ck_assert_float_eq(c.rope_scaling.factor, 8.0f);
    ck_assert_float_eq(c.rope_scaling.low_freq_factor, 1.0f);
    ck_assert_float_eq(c.rope_scaling.high_freq_factor, 4.0f);
    ck_assert_int_eq(c.rope_scaling.original_ctx, 8192);
    ck_assert(!c.tied_embeddings && !c.qkv_bias);
    ck_assert(c.bos_id == 128000 && c.eos_id == 128001 && c.n_eos_ids == 1);
    ck_assert_int_eq(c.sliding_window, 0);
    // Meta's published count for Llama-3.1-8B; 128 KiB of fp16 KV per token.
    ck_assert_int_eq(hl_model_config_n_params(&c), 8030261248LL);
    ck_assert_uint_eq(kv_bytes(&c, 1, 2), 131072);
    ck_assert_uint_eq(kv_bytes(&c, 8192, 2), 1ull << 30);
}
END_TEST

START_TEST(test_llama32_1b) {
    hl_model_config c = load_hf(CONFIG_DIR "llama-3.2-1b.json");
    ck_assert(c.n_vocab == 128256 && c.dim == 2048 && c.n_layers == 16);
    ck_assert(c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 64 && c.ffn_dim == 8192);
    ck_assert(c.tied_embeddings);
    ck_assert_int_eq(c.rope_scaling.type, HL_ROPE_SCALING_LLAMA3);
    ck_assert_float_eq(c.rope_scaling.factor, 32.0f);
    ck_assert_int_eq(hl_model_config_n_params(&c), 1235814400LL);
    ck_assert_uint_eq(kv_bytes(&c, 1, 2), 2 * 16 * 8 * 64 * 2);
}
END_TEST

START_TEST(test_smollm2_135m) {
    hl_model_config c = load_hf(CONFIG_DIR "smollm2-135m-instruct.json");
    ck_assert(c.n_vocab == 49152 && c.dim == 576 && c.n_layers == 30 && c.ffn_dim == 1536);
    ck_assert(c.n_heads == 9 && c.n_kv_heads == 3 && c.head_dim == 64);
    ck_assert_float_eq(c.rope_theta, 100000.0f);
    ck_assert_int_eq(c.rope_scaling.type, HL_ROPE_SCALING_NONE);
    ck_assert(c.tied_embeddings && c.bos_id == 1 && c.eos_id == 2);
    ck_assert_int_eq(hl_model_config_n_params(&c), 134515008LL);
    ck_assert_uint_eq(kv_bytes(&c, 8192, 2), 2ull * 30 * 3 * 64 * 8192 * 2);
}
END_TEST

START_TEST(test_mistral_7b) {
    hl_model_config c = load_hf(CONFIG_DIR "mistral-7b-v0.1.json");
    ck_assert_int_eq(c.arch, HL_ARCH_LLAMA);
    ck_assert(c.n_vocab == 32000 && c.dim == 4096 && c.n_kv_heads == 8 && c.head_dim == 128);
    ck_assert(c.n_ctx_train == 32768 && c.sliding_window == 4096 && !c.tied_embeddings);
    ck_assert_float_eq(c.rope_theta, 10000.0f);
    ck_assert_int_eq(hl_model_config_n_params(&c), 7241732096LL);
}
END_TEST

START_TEST(test_qwen2_05b) {
    hl_model_config c = load_hf(CONFIG_DIR "qwen2.5-0.5b.json");
    ck_assert_int_eq(c.arch, HL_ARCH_QWEN2);
    ck_assert(c.qkv_bias && c.tied_embeddings);
    ck_assert(c.n_heads == 14 && c.n_kv_heads == 2 && c.head_dim == 64);
    ck_assert_int_eq(c.sliding_window, 0); // use_sliding_window: false
    ck_assert_float_eq(c.rms_eps, 1e-6f);
    ck_assert_int_eq(hl_model_config_n_params(&c), 494032768LL);
}
END_TEST

START_TEST(test_eos_list_and_folder) {
    hl_model_config c = load_hf(CONFIG_DIR "llama-3.1-8b-instruct-eos.json");
    ck_assert_int_eq(c.n_eos_ids, 3);
    ck_assert(c.eos_ids[0] == 128001 && c.eos_ids[1] == 128008 && c.eos_ids[2] == 128009);
    ck_assert_int_eq(c.eos_id, 128001);
    // A folder holding config.json works too.
    char dir[] = "/tmp/hl_cfg_XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    hl_error err = {0};
    ck_assert_int_eq(hl_model_config_from_hf_file(dir, &c, &err), HL_ERR_IO);
    size_t n;
    char *text = hl_read_file(CONFIG_DIR "mistral-7b-v0.1.json", 1 << 20, &n, &err);
    FILE *f = fopen(path, "w");
    fwrite(text, 1, n, f);
    fclose(f);
    free(text);
    ck_assert_int_eq(hl_model_config_from_hf_file(dir, &c, &err), HL_OK);
    ck_assert_int_eq(c.n_vocab, 32000);
    unlink(path);
    rmdir(dir);
}
END_TEST

// ---- the default model's GGUF ----

START_TEST(test_default_model_gguf) {
    if (access(DEFAULT_MODEL, R_OK) != 0) {
        printf("SKIP: %s missing (sh tools/fetch_model.sh models)\n", DEFAULT_MODEL);
        return;
    }
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open(DEFAULT_MODEL, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    hl_model_config c;
    ck_assert_msg(hl_model_config_from_gguf(g, &c, &err) == HL_OK, "%s", err.msg);
    ck_assert_int_eq(c.arch, HL_ARCH_LLAMA);
    ck_assert(c.n_layers == 30 && c.dim == 576 && c.n_heads == 9 && c.n_kv_heads == 3);
    ck_assert(c.ffn_dim == 1536 && c.n_vocab == 49152 && c.head_dim == 64 && c.n_rot == 64);
    ck_assert_float_eq(c.rope_theta, 100000.0f);
    ck_assert_float_eq_tol(c.rms_eps, 1e-5f, 1e-10f);
    ck_assert(c.tied_embeddings && !c.qkv_bias && c.n_ctx_train == 8192);
    ck_assert_int_eq(c.rope_scaling.type, HL_ROPE_SCALING_NONE);
    ck_assert(c.bos_id == 1 && c.eos_id == 2);
    ck_assert_int_eq(hl_model_config_check_tensors(&c, HL_NAMING_GGUF,
                                                   hl_model_config_lookup_gguf, g, &err),
                     HL_OK);
    // The parameter count is the sum of the file's tensor sizes.
    int64_t n_file = 0;
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) {
        const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
        n_file += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    ck_assert_int_eq(hl_model_config_n_params(&c), n_file);
    // ... and the HF config of the same model describes the same network.
    hl_model_config h = load_hf(CONFIG_DIR "smollm2-135m-instruct.json");
    ck_assert(h.n_vocab == c.n_vocab && h.dim == c.dim && h.n_layers == c.n_layers &&
              h.n_heads == c.n_heads && h.n_kv_heads == c.n_kv_heads &&
              h.ffn_dim == c.ffn_dim && h.n_ctx_train == c.n_ctx_train &&
              h.tied_embeddings == c.tied_embeddings && h.bos_id == c.bos_id);
    hl_gguf_free(g);
}
END_TEST

// ---- a tiny GGUF written here, in variants ----
// dim 8, 2 heads of 4, 1 KV head, ffn 12, vocab 10, 2 layers.

static const float zeros[256];

static void add_f32(hl_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1) {
    int64_t ne[2] = {ne0, ne1};
    hl_error err = {0};
    ck_assert_int_eq(hl_gguf_writer_add_tensor(w, name, HL_DTYPE_F32, ne1 > 1 ? 2 : 1, ne,
                                               zeros, NULL, NULL, &err), HL_OK);
}

static void add_layer(hl_gguf_writer *w, int il, const char *variant) {
    char n[64];
    const char *names[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                           "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
    // "wide_heads": head_dim 6 given explicitly, so q is 12 wide while dim is 8.
    int64_t q = strcmp(variant, "wide_heads") == 0 ? 12 : 8, kv = q / 2;
    const int64_t shapes[][2] = {{8, 1}, {8, q}, {8, kv}, {8, kv}, {q, 8},
                                 {8, 1}, {8, 12}, {8, 12}, {12, 8}};
    for (int i = 0; i < 9; i++) {
        if (il == 1 && i == 3 && strcmp(variant, "missing_tensor") == 0) continue;
        int64_t ne1 = shapes[i][1];
        if (il == 1 && i == 2 && strcmp(variant, "bad_shape") == 0) ne1 = 8;
        snprintf(n, sizeof(n), "blk.%d.%s.weight", il, names[i]);
        add_f32(w, n, shapes[i][0], ne1);
    }
}

static void write_tiny_gguf(const char *path, const char *variant) {
    hl_gguf_writer *w = hl_gguf_writer_create();
    bool qwen = strcmp(variant, "qwen2") == 0;
    const char *arch = qwen ? "qwen2" : "llama";
    hl_gguf_writer_set_str(w, "general.architecture",
                           strcmp(variant, "arch_gpt2") == 0 ? "gpt2" : arch);
    char key[96];
    const char *ints[] = {"block_count", "embedding_length", "feed_forward_length",
                          "attention.head_count", "attention.head_count_kv", "context_length"};
    const uint32_t vals[] = {2, 8, 12, 2, 1, 64};
    for (int i = 0; i < 6; i++) {
        if (i == 0 && strcmp(variant, "no_block_count") == 0) continue;
        snprintf(key, sizeof(key), "%s.%s", arch, ints[i]);
        hl_gguf_writer_set_u32(w, key, vals[i]);
    }
    snprintf(key, sizeof(key), "%s.rope.freq_base", arch);
    hl_gguf_writer_set_f32(w, key, 10000.0f);
    snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", arch);
    hl_gguf_writer_set_f32(w, key, 1e-5f);
    const char *tokens[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    size_t lens[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    hl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, lens, 10);
    hl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 9);
    hl_gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", 8);
    if (strcmp(variant, "wide_heads") == 0) {
        hl_gguf_writer_set_u32(w, "llama.attention.key_length", 6);
        hl_gguf_writer_set_u32(w, "llama.attention.value_length", 6);
        hl_gguf_writer_set_u32(w, "llama.rope.dimension_count", 4);
    }
    if (strcmp(variant, "linear") == 0 || strcmp(variant, "yarn") == 0) {
        hl_gguf_writer_set_str(w, "llama.rope.scaling.type", variant);
        hl_gguf_writer_set_f32(w, "llama.rope.scaling.factor", 4.0f);
    }
    if (strcmp(variant, "rope_freqs") == 0) add_f32(w, "rope_freqs.weight", 2, 1);
    add_f32(w, "token_embd.weight", 8, 10);
    add_f32(w, "output_norm.weight", 8, 1);
    if (strcmp(variant, "untied") == 0) add_f32(w, "output.weight", 8, 10);
    int n_layers = strcmp(variant, "extra_layer") == 0 ? 3 : 2;
    for (int il = 0; il < n_layers; il++) add_layer(w, il, variant);
    for (int il = 0; qwen && il < 2; il++) {
        const char *b[] = {"attn_q", "attn_k", "attn_v"};
        for (int i = 0; i < 3; i++) {
            snprintf(key, sizeof(key), "blk.%d.%s.bias", il, b[i]);
            add_f32(w, key, i == 0 ? 8 : 4, 1);
        }
    }
    hl_error err = {0};
    ck_assert_msg(hl_gguf_writer_write(w, path, &err) == HL_OK, "%s", err.msg);
    hl_gguf_writer_free(w);
}

// Loads variant: the from_gguf status, then (when that is HL_OK) the check_tensors status.
static int tiny_variant(const char *variant, hl_model_config *cfg, hl_error *err) {
    char path[] = "/tmp/hl_cfg_gguf_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    write_tiny_gguf(path, variant);
    hl_gguf *g = hl_gguf_open(path, err);
    ck_assert_msg(g != NULL, "%s", err->msg);
    int rc = hl_model_config_from_gguf(g, cfg, err);
    if (rc == HL_OK) {
        rc = hl_model_config_check_tensors(cfg, HL_NAMING_GGUF, hl_model_config_lookup_gguf, g,
                                           err);
    }
    hl_gguf_free(g);
    unlink(path);
    return rc;
}

START_TEST(test_tiny_gguf_variants) {
    hl_model_config c;
    hl_error err = {0};
    ck_assert_msg(tiny_variant("ok", &c, &err) == HL_OK, "%s", err.msg);
    ck_assert(c.dim == 8 && c.n_heads == 2 && c.n_kv_heads == 1 && c.head_dim == 4);
    ck_assert(c.n_vocab == 10 && c.tied_embeddings && c.n_eos_ids == 2);
    ck_assert(c.eos_ids[0] == 9 && c.eos_ids[1] == 8 && c.bos_id == -1);
    ck_assert_int_eq(hl_model_config_n_params(&c), 80 + 8 + 2 * (8 + 64 + 32 + 32 + 64 + 8 +
                                                                  96 + 96 + 96));
    ck_assert_msg(tiny_variant("wide_heads", &c, &err) == HL_OK, "%s", err.msg);
    ck_assert(c.dim == 8 && c.head_dim == 6 && c.n_rot == 4);
    ck_assert_int_eq(hl_model_config_n_params(&c), 80 + 8 + 2 * (8 + 96 + 48 + 48 + 96 + 8 +
                                                                  96 + 96 + 96));
    ck_assert_uint_eq(kv_bytes(&c, 10, 2), 2 * 2 * 10 * 6 * 2);
    ck_assert_int_eq(tiny_variant("untied", &c, &err), HL_OK);
    ck_assert(!c.tied_embeddings);
    ck_assert_int_eq(tiny_variant("linear", &c, &err), HL_OK);
    ck_assert_int_eq(c.rope_scaling.type, HL_ROPE_SCALING_LINEAR);
    ck_assert_float_eq(c.rope_scaling.factor, 4.0f);
    ck_assert_int_eq(tiny_variant("rope_freqs", &c, &err), HL_OK);
    ck_assert_int_eq(c.rope_scaling.type, HL_ROPE_SCALING_FREQ_TENSOR);
    ck_assert_int_eq(tiny_variant("qwen2", &c, &err), HL_OK);
    ck_assert(c.arch == HL_ARCH_QWEN2 && c.qkv_bias);

    ck_assert_int_eq(tiny_variant("yarn", &c, &err), HL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "yarn"));
    ck_assert_int_eq(tiny_variant("arch_gpt2", &c, &err), HL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "gpt2"));
    ck_assert_int_eq(tiny_variant("no_block_count", &c, &err), HL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "llama.block_count"));
    ck_assert_int_eq(tiny_variant("missing_tensor", &c, &err), HL_ERR_FORMAT);
    ck_assert_str_eq(err.msg, "missing tensor blk.1.attn_v.weight");
    ck_assert_int_eq(tiny_variant("bad_shape", &c, &err), HL_ERR_FORMAT);
    ck_assert_str_eq(err.msg, "tensor blk.1.attn_k.weight has shape [8, 8], expected [8, 4]");
    ck_assert_int_eq(tiny_variant("extra_layer", &c, &err), HL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "blk.2.attn_norm.weight"));
}
END_TEST

// ---- the same tiny model as an HF safetensors file ----

static char *tiny_hf_safetensors(bool with_lm_head, size_t *n_bytes) {
    static const char *names[] = {"input_layernorm.weight", "self_attn.q_proj.weight",
        "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
        "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
        "mlp.down_proj.weight"};
    static const char *shapes[] = {"[8]", "[8, 8]", "[4, 8]", "[4, 8]", "[8, 8]", "[8]",
                                   "[12, 8]", "[12, 8]", "[8, 12]"};
    static const size_t sizes[] = {8, 64, 32, 32, 64, 8, 96, 96, 96};
    char *h = malloc(8192);
    size_t off = 0, n = 0;
    n += (size_t)sprintf(h + n, "{\"model.embed_tokens.weight\": {\"dtype\": \"BF16\", "
                         "\"shape\": [10, 8], \"data_offsets\": [0, 160]}, "
                         "\"model.norm.weight\": {\"dtype\": \"BF16\", \"shape\": [8], "
                         "\"data_offsets\": [160, 176]}");
    off = 176;
    if (with_lm_head) {
        n += (size_t)sprintf(h + n, ", \"lm_head.weight\": {\"dtype\": \"BF16\", \"shape\": "
                             "[10, 8], \"data_offsets\": [176, 336]}");
        off = 336;
    }
    for (int il = 0; il < 2; il++) {
        for (int i = 0; i < 9; i++) {
            n += (size_t)sprintf(h + n, ", \"model.layers.%d.%s\": {\"dtype\": \"BF16\", "
                                 "\"shape\": %s, \"data_offsets\": [%zu, %zu]}", il, names[i],
                                 shapes[i], off, off + 2 * sizes[i]);
            off += 2 * sizes[i];
        }
    }
    n += (size_t)sprintf(h + n, "}");
    *n_bytes = 8 + n + off;
    char *file = calloc(1, *n_bytes);
    hl_wr_u64((uint8_t *)file, n);
    memcpy(file + 8, h, n);
    free(h);
    return file;
}

START_TEST(test_check_tensors_safetensors) {
    const char *json = "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 8, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
                       "\"num_key_value_heads\": 1, \"intermediate_size\": 12, "
                       "\"tie_word_embeddings\": true}";
    hl_model_config c;
    hl_error err = {0};
    ck_assert_int_eq(hl_model_config_from_hf_json(json, strlen(json), &c, &err), HL_OK);
    size_t n;
    char *file = tiny_hf_safetensors(false, &n);
    hl_safetensors *st = hl_safetensors_open_memory(file, n, &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    ck_assert_msg(hl_model_config_check_tensors(&c, HL_NAMING_HF,
                                                hl_model_config_lookup_safetensors, st,
                                                &err) == HL_OK, "%s", err.msg);
    // Every HF name maps to a GGUF name the GGUF check would ask for.
    char gname[128];
    for (int64_t i = 0; i < hl_safetensors_n_tensors(st); i++) {
        const char *name = hl_safetensors_tensor_at(st, i)->name;
        ck_assert_int_eq(hl_model_config_hf_to_gguf_name(name, gname, sizeof(gname), &err),
                         HL_OK);
    }
    // Untied: lm_head.weight is now required.
    c.tied_embeddings = false;
    ck_assert_int_eq(hl_model_config_check_tensors(&c, HL_NAMING_HF,
                                                   hl_model_config_lookup_safetensors, st,
                                                   &err), HL_ERR_FORMAT);
    ck_assert_str_eq(err.msg, "missing tensor lm_head.weight");
    // A config that disagrees with the file is caught with both shapes named.
    c.tied_embeddings = true;
    c.ffn_dim = 16;
    ck_assert_int_eq(hl_model_config_check_tensors(&c, HL_NAMING_HF,
                                                   hl_model_config_lookup_safetensors, st,
                                                   &err), HL_ERR_FORMAT);
    ck_assert_str_eq(err.msg, "tensor model.layers.0.mlp.gate_proj.weight has shape [8, 12], "
                              "expected [8, 16]");
    hl_safetensors_free(st);
    free(file);
    file = tiny_hf_safetensors(true, &n);
    st = hl_safetensors_open_memory(file, n, &err);
    c.ffn_dim = 12;
    c.tied_embeddings = false;
    ck_assert_int_eq(hl_model_config_check_tensors(&c, HL_NAMING_HF,
                                                   hl_model_config_lookup_safetensors, st,
                                                   &err), HL_OK);
    hl_safetensors_free(st);
    free(file);
}
END_TEST

// ---- names ----

START_TEST(test_name_mapping) {
    const char *pairs[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight"},
        {"model.layers.3.self_attn.k_proj.weight", "blk.3.attn_k.weight"},
        {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"model.layers.12.self_attn.o_proj.weight", "blk.12.attn_output.weight"},
        {"model.layers.31.post_attention_layernorm.weight", "blk.31.ffn_norm.weight"},
        {"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
        {"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
        {"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
        {"model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"},
        {"model.layers.0.self_attn.v_proj.bias", "blk.0.attn_v.bias"},
    };
    hl_error err = {0};
    char out[128];
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        ck_assert_int_eq(hl_model_config_hf_to_gguf_name(pairs[i][0], out, sizeof(out), &err),
                         HL_OK);
        ck_assert_str_eq(out, pairs[i][1]);
        ck_assert_int_eq(hl_model_config_gguf_to_hf_name(pairs[i][1], out, sizeof(out), &err),
                         HL_OK);
        ck_assert_str_eq(out, pairs[i][0]);
    }
    const char *bad[] = {"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.x.mlp",
                         "model.layers.01.mlp.up_proj.weight", "model.layers..mlp.up_proj.weight",
                         "model.layers.-1.mlp.up_proj.weight", "model.layers.5",
                         "model.layers.99999999.mlp.up_proj.weight", "embed_tokens.weight", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(hl_model_config_hf_to_gguf_name(bad[i], out, sizeof(out), &err) ==
                      HL_ERR_UNSUPPORTED, "%s mapped", bad[i]);
    }
    ck_assert_int_eq(hl_model_config_gguf_to_hf_name("rope_freqs.weight", out, sizeof(out),
                                                     &err), HL_ERR_UNSUPPORTED);
    ck_assert_int_eq(hl_model_config_hf_to_gguf_name("model.layers.3.mlp.up_proj.weight", out,
                                                     10, &err), HL_ERR_INVAL);
}
END_TEST

// ---- RoPE frequency factors ----

// Llama 3.1 as transformers writes it: scale inv_freq, then factor = inv_freq / scaled.
static double hf_llama3_factor(double theta, int i, int dim) {
    double inv_freq = 1.0 / pow(theta, (2.0 * i) / dim);
    double wavelen = 2 * M_PI / inv_freq;
    double low_wavelen = 8192 / 1.0, high_wavelen = 8192 / 4.0;
    double scaled = wavelen > low_wavelen ? inv_freq / 8.0 : inv_freq;
    if (wavelen <= low_wavelen && wavelen >= high_wavelen) {
        double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
        scaled = (1 - smooth) * scaled / 8.0 + smooth * scaled;
    }
    return inv_freq / scaled;
}

START_TEST(test_rope_factors) {
    hl_model_config c = load_hf(CONFIG_DIR "llama-3.1-8b.json");
    float f[64];
    hl_error err = {0};
    ck_assert_int_eq(hl_model_config_rope_freq_factors(&c, f, 64, &err), HL_OK);
    int n_one = 0, n_full = 0, n_mid = 0;
    for (int i = 0; i < 64; i++) {
        ck_assert_float_eq_tol(f[i], hf_llama3_factor(500000.0, i, 128), 1e-4);
        if (i > 0) ck_assert(f[i] >= f[i - 1]);
        n_one += f[i] == 1.0f;
        n_full += f[i] == 8.0f;
        n_mid += f[i] > 1.0f && f[i] < 8.0f;
    }
    ck_assert(n_one > 0 && n_full > 0 && n_mid > 0); // all three regimes occur
    ck_assert_int_eq(hl_model_config_rope_freq_factors(&c, f, 63, &err), HL_ERR_INVAL);
    c.rope_scaling.type = HL_ROPE_SCALING_LINEAR;
    c.rope_scaling.factor = 2.5f;
    ck_assert_int_eq(hl_model_config_rope_freq_factors(&c, f, 64, &err), HL_OK);
    ck_assert(f[0] == 2.5f && f[63] == 2.5f);
    c.rope_scaling.type = HL_ROPE_SCALING_NONE;
    ck_assert_int_eq(hl_model_config_rope_freq_factors(&c, f, 64, &err), HL_OK);
    ck_assert(f[0] == 1.0f && f[63] == 1.0f);
    c.rope_scaling.type = HL_ROPE_SCALING_FREQ_TENSOR;
    ck_assert_int_eq(hl_model_config_rope_freq_factors(&c, f, 64, &err), HL_ERR_INVAL);
}
END_TEST

// ---- validation errors ----

// A small valid config to break one field at a time.
static hl_model_config tiny_config(void) {
    const char *json = "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                       "\"num_key_value_heads\": 2, \"intermediate_size\": 128, "
                       "\"bos_token_id\": 1, \"eos_token_id\": 2}";
    hl_model_config c;
    hl_error err = {0};
    ck_assert_msg(hl_model_config_from_hf_json(json, strlen(json), &c, &err) == HL_OK, "%s",
                  err.msg);
    ck_assert(c.head_dim == 16 && c.n_rot == 16 && c.n_ctx_train == 2048);
    ck_assert_float_eq(c.rope_theta, 10000.0f);
    return c;
}

static void expect_invalid(const hl_model_config *b, const char *word, const char *what) {
    hl_error err = {0};
    ck_assert_msg(hl_model_config_validate(b, &err) == HL_ERR_INVAL, "%s accepted", what);
    ck_assert_msg(strstr(err.msg, word) != NULL, "%s: %s", what, err.msg);
}

START_TEST(test_validate_fields) {
    hl_error err = {0};
    const hl_model_config c = tiny_config();
    ck_assert_int_eq(hl_model_config_validate(&c, &err), HL_OK);
    hl_model_config b;
    b = c; b.n_vocab = 0; expect_invalid(&b, "n_vocab", "n_vocab 0");
    b = c; b.n_vocab = 1 << 23; expect_invalid(&b, "n_vocab", "n_vocab huge");
    b = c; b.dim = -64; expect_invalid(&b, "dim", "dim < 0");
    b = c; b.n_layers = 0; expect_invalid(&b, "n_layers", "n_layers 0");
    b = c; b.n_layers = 5000; expect_invalid(&b, "n_layers", "n_layers huge");
    b = c; b.n_heads = 0; expect_invalid(&b, "n_heads", "n_heads 0");
    b = c; b.n_kv_heads = 0; expect_invalid(&b, "n_kv_heads", "n_kv_heads 0");
    b = c; b.n_kv_heads = 8; expect_invalid(&b, "n_kv_heads", "n_kv_heads > n_heads");
    b = c; b.n_kv_heads = 3; expect_invalid(&b, "multiple of n_kv_heads", "4 % 3 heads");
    b = c; b.head_dim = 0; expect_invalid(&b, "head_dim", "head_dim 0");
    b = c; b.head_dim = 15; b.n_rot = 14; expect_invalid(&b, "even", "odd head_dim");
    b = c; b.n_rot = 15; expect_invalid(&b, "even", "odd n_rot");
    b = c; b.n_rot = 32; expect_invalid(&b, "n_rot", "n_rot > head_dim");
    b = c; b.ffn_dim = 0; expect_invalid(&b, "ffn_dim", "ffn_dim 0");
    b = c; b.n_ctx_train = 0; expect_invalid(&b, "n_ctx_train", "n_ctx_train 0");
    b = c; b.sliding_window = -1; expect_invalid(&b, "sliding_window", "window < 0");
    b = c; b.rope_theta = 0.0f; expect_invalid(&b, "rope_theta", "theta 0");
    b = c; b.rope_theta = NAN; expect_invalid(&b, "rope_theta", "theta NaN");
    b = c; b.rms_eps = 0.0f; expect_invalid(&b, "rms_eps", "eps 0");
    b = c; b.rms_eps = 2.0f; expect_invalid(&b, "rms_eps", "eps 2");
    b = c; b.rope_scaling = (hl_rope_scaling){HL_ROPE_SCALING_LINEAR, 0, 0, 0, 0};
    expect_invalid(&b, "linear", "linear factor 0");
    b = c; b.rope_scaling = (hl_rope_scaling){HL_ROPE_SCALING_LLAMA3, 8, 4, 1, 8192};
    expect_invalid(&b, "high_freq_factor", "llama3 high < low");
    b = c; b.rope_scaling = (hl_rope_scaling){HL_ROPE_SCALING_LLAMA3, 8, 1, 4, 0};
    expect_invalid(&b, "llama3", "llama3 no original context");
    b = c; b.bos_id = 100; expect_invalid(&b, "bos_id", "bos >= n_vocab");
    b = c; b.eos_ids[0] = -5; expect_invalid(&b, "eos", "eos < 0");
    b = c; b.n_eos_ids = 99; expect_invalid(&b, "n_eos_ids", "n_eos_ids huge");
    b = c; b.arch = (enum hl_arch)7; expect_invalid(&b, "arch", "arch 7");
}
END_TEST

// Each HF text fails with the expected status and a message containing `word`.
START_TEST(test_hf_errors) {
    const char *base = "\"vocab_size\": 100, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"intermediate_size\": 128";
    struct {
        const char *json_fmt; // %s: base fields
        int code;
        const char *word;
    } cases[] = {
        {"{\"model_type\": \"llama\", %s", HL_ERR_FORMAT, "not valid JSON"},
        {"[\"llama\"]%.0s", HL_ERR_FORMAT, "not an object"},
        {"{%s}", HL_ERR_FORMAT, "model_type"},
        {"{\"model_type\": \"gpt2\", %s}", HL_ERR_UNSUPPORTED, "gpt2"},
        {"{\"model_type\": \"llama\", \"hidden_act\": \"gelu\", %s}", HL_ERR_UNSUPPORTED,
         "hidden_act"},
        {"{\"model_type\": \"llama\", \"attention_bias\": true, %s}", HL_ERR_UNSUPPORTED,
         "attention_bias"},
        {"{\"model_type\": \"llama\", \"attention_bias\": 1, %s}", HL_ERR_FORMAT,
         "attention_bias"},
        {"{\"model_type\": \"llama\", \"vocab_size\": 100}", HL_ERR_FORMAT, "hidden_size"},
        {"{\"model_type\": \"llama\", %s, \"num_key_value_heads\": \"2\"}", HL_ERR_FORMAT,
         "num_key_value_heads"},
        {"{\"model_type\": \"llama\", %s, \"max_position_embeddings\": 1.5}", HL_ERR_FORMAT,
         "max_position_embeddings"},
        {"{\"model_type\": \"llama\", %s, \"max_position_embeddings\": 1e12}", HL_ERR_FORMAT,
         "max_position_embeddings"},
        {"{\"model_type\": \"llama\", %s, \"rope_theta\": \"big\"}", HL_ERR_FORMAT,
         "rope_theta"},
        {"{\"model_type\": \"llama\", %s, \"rope_theta\": 1e300}", HL_ERR_FORMAT,
         "rope_theta"},
        {"{\"model_type\": \"llama\", %s, \"num_key_value_heads\": 3}", HL_ERR_INVAL,
         "n_kv_heads"},
        {"{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 5, \"intermediate_size\": 128}"
         "%.0s", HL_ERR_INVAL, "not a multiple of n_heads"},
        {"{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, "
         "\"num_hidden_layers\": -3, \"num_attention_heads\": 4, \"intermediate_size\": 128}"
         "%.0s", HL_ERR_INVAL, "n_layers"},
        {"{\"model_type\": \"llama\", %s, \"head_dim\": 0}", HL_ERR_INVAL, "head_dim"},
        {"{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"yarn\", "
         "\"factor\": 4}}", HL_ERR_UNSUPPORTED, "yarn"},
        {"{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"dynamic\", "
         "\"factor\": 4}}", HL_ERR_UNSUPPORTED, "dynamic"},
        {"{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"factor\": 4}}", HL_ERR_FORMAT,
         "rope_type"},
        {"{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"linear\"}}",
         HL_ERR_FORMAT, "factor"},
        {"{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"llama3\", "
         "\"factor\": 8, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
         HL_ERR_FORMAT, "low_freq_factor"},
        {"{\"model_type\": \"llama\", %s, \"rope_scaling\": 3}", HL_ERR_FORMAT, "rope_scaling"},
        {"{\"model_type\": \"llama\", %s, \"eos_token_id\": 100}", HL_ERR_INVAL, "eos"},
        {"{\"model_type\": \"llama\", %s, \"eos_token_id\": [1, \"2\"]}", HL_ERR_FORMAT,
         "eos_token_id"},
        {"{\"model_type\": \"llama\", %s, \"eos_token_id\": [1,2,3,4,5,6,7,8,9]}",
         HL_ERR_UNSUPPORTED, "end-of-sequence"},
        {"{\"model_type\": \"llama\", %s, \"bos_token_id\": -7}", HL_ERR_INVAL, "bos_id"},
        {"{\"model_type\": \"llama\", %s, \"rms_norm_eps\": 0}", HL_ERR_INVAL, "rms_eps"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[1024];
        snprintf(json, sizeof(json), cases[i].json_fmt, base);
        hl_model_config c;
        hl_error err = {0};
        int rc = hl_model_config_from_hf_json(json, strlen(json), &c, &err);
        ck_assert_msg(rc == cases[i].code, "case %zu: got %s (%s)", i, hl_status_name(rc),
                      err.msg);
        ck_assert_msg(strstr(err.msg, cases[i].word) != NULL, "case %zu: %s", i, err.msg);
    }
    // An explicit head_dim lifts dim == n_heads * head_dim (Llama-3.2-style configs).
    char json[512];
    snprintf(json, sizeof(json), "{\"model_type\": \"llama\", \"vocab_size\": 100, "
             "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 5, "
             "\"intermediate_size\": 128, \"head_dim\": 16}");
    hl_model_config c;
    hl_error err = {0};
    ck_assert_int_eq(hl_model_config_from_hf_json(json, strlen(json), &c, &err), HL_OK);
    ck_assert(c.n_heads == 5 && c.head_dim == 16 && c.dim == 64);
    // Not NUL-terminated: only n_bytes are read.
    ck_assert_int_eq(hl_model_config_from_hf_json(json, 10, &c, &err), HL_ERR_FORMAT);
    ck_assert_int_eq(hl_model_config_from_hf_file("/nonexistent/config.json", &c, &err),
                     HL_ERR_IO);
}
END_TEST

START_TEST(test_kv_bytes_errors) {
    hl_model_config c = tiny_config();
    size_t n = 0;
    hl_error err = {0};
    ck_assert_int_eq(hl_model_config_kv_bytes(&c, 0, 2, &n, &err), HL_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(hl_model_config_kv_bytes(&c, 100, 1, &n, &err), HL_OK);
    ck_assert_uint_eq(n, 2 * 2 * 100 * 2 * 16);
    ck_assert_int_eq(hl_model_config_kv_bytes(&c, -1, 2, &n, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_model_config_kv_bytes(&c, 1, 0, &n, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_model_config_kv_bytes(&c, INT64_MAX, 2, &n, &err), HL_ERR_NOMEM);
    ck_assert_str_eq(hl_model_config_arch_name(HL_ARCH_QWEN2), "qwen2");
    ck_assert_str_eq(hl_model_config_rope_scaling_name(HL_ROPE_SCALING_LLAMA3), "llama3");
}
END_TEST

Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_llama31_8b);
    tcase_add_test(tc, test_llama32_1b);
    tcase_add_test(tc, test_smollm2_135m);
    tcase_add_test(tc, test_mistral_7b);
    tcase_add_test(tc, test_qwen2_05b);
    tcase_add_test(tc, test_eos_list_and_folder);
    tcase_add_test(tc, test_default_model_gguf);
    tcase_add_test(tc, test_tiny_gguf_variants);
    tcase_add_test(tc, test_check_tensors_safetensors);
    tcase_add_test(tc, test_name_mapping);
    tcase_add_test(tc, test_rope_factors);
    tcase_add_test(tc, test_validate_fields);
    tcase_add_test(tc, test_hf_errors);
    tcase_add_test(tc, test_kv_bytes_errors);
    suite_add_tcase(s, tc);
    return s;
}
