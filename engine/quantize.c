// quantize: per-tensor type plans and chunked float → quantized conversion (see quantize.h).
#include "engine/quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "engine/quant.h"

static const char *ftype_names[HL_FTYPE_COUNT] = {
    [HL_FTYPE_F32] = "f32",   [HL_FTYPE_F16] = "f16",   [HL_FTYPE_Q8_0] = "q8_0",
    [HL_FTYPE_Q4_0] = "q4_0", [HL_FTYPE_Q4_1] = "q4_1", [HL_FTYPE_Q4_K] = "q4_k",
    [HL_FTYPE_Q6_K] = "q6_k", [HL_FTYPE_Q4_K_M] = "q4_k_m",
};

// llama.cpp's enum llama_ftype values (LLAMA_FTYPE_ALL_F32 = 0, MOSTLY_F16 = 1, …).
static const int ftype_gguf_ids[HL_FTYPE_COUNT] = {
    [HL_FTYPE_F32] = 0,   [HL_FTYPE_F16] = 1,   [HL_FTYPE_Q8_0] = 7,   [HL_FTYPE_Q4_0] = 2,
    [HL_FTYPE_Q4_1] = 3,  [HL_FTYPE_Q4_K] = 14, [HL_FTYPE_Q6_K] = 18,  [HL_FTYPE_Q4_K_M] = 15,
};

int hl_quantize_ftype_from_name(const char *name) {
    for (int i = 0; i < HL_FTYPE_COUNT; i++) {
        if (strcasecmp(name, ftype_names[i]) == 0) return i;
    }
    if (strcasecmp(name, "q4_k_s") == 0) return HL_FTYPE_Q4_K;
    return -1;
}

const char *hl_quantize_ftype_name(int ftype) {
    return ftype >= 0 && ftype < HL_FTYPE_COUNT ? ftype_names[ftype] : "?";
}

int hl_quantize_ftype_gguf_id(int ftype) {
    return ftype >= 0 && ftype < HL_FTYPE_COUNT ? ftype_gguf_ids[ftype] : -1;
}

// llama.cpp gives more bits to the first and last eighth of the layers and every third between.
static bool use_more_bits(int il, int n_layers) {
    return il < n_layers / 8 || il >= 7 * n_layers / 8 || (il - n_layers / 8) % 3 == 2;
}

// Layer index of "blk.N.…", or -1.
static int layer_of(const char *name) {
    int il = -1;
    if (sscanf(name, "blk.%d.", &il) != 1) return -1;
    return il;
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int base_type(int ftype) {
    switch (ftype) {
    case HL_FTYPE_F32: return HL_DTYPE_F32;
    case HL_FTYPE_F16: return HL_DTYPE_F16;
    case HL_FTYPE_Q8_0: return HL_DTYPE_Q8_0;
    case HL_FTYPE_Q4_0: return HL_DTYPE_Q4_0;
    case HL_FTYPE_Q4_1: return HL_DTYPE_Q4_1;
    case HL_FTYPE_Q6_K: return HL_DTYPE_Q6_K;
    default: return HL_DTYPE_Q4_K;
    }
}

// K types need rows that are whole 256-element super-blocks; llama.cpp's fallbacks.
static int fit_row(int type, int64_t ne0) {
    if (ne0 % HL_QK_K == 0) return type;
    if (type == HL_DTYPE_Q4_K) return ne0 % HL_QK == 0 ? HL_DTYPE_Q5_0 : HL_DTYPE_F16;
    if (type == HL_DTYPE_Q6_K) return ne0 % HL_QK == 0 ? HL_DTYPE_Q8_0 : HL_DTYPE_F16;
    if (type != HL_DTYPE_F32 && type != HL_DTYPE_F16 && ne0 % HL_QK != 0) return HL_DTYPE_F16;
    return type;
}

static int output_type(int ftype) {
    if (ftype == HL_FTYPE_F32 || ftype == HL_FTYPE_F16 || ftype == HL_FTYPE_Q8_0) return base_type(ftype);
    if (ftype == HL_FTYPE_Q4_0 || ftype == HL_FTYPE_Q4_1) return HL_DTYPE_Q8_0;
    return HL_DTYPE_Q6_K;
}

int hl_quantize_tensor_type(int ftype, const char *name, int n_dims, const int64_t *ne,
                            int n_layers, bool tied) {
    if (n_dims < 2) return HL_DTYPE_F32;
    bool is_output = strcmp(name, "output.weight") == 0 ||
                     (tied && strcmp(name, "token_embd.weight") == 0);
    int type = base_type(ftype);
    if (is_output) {
        type = output_type(ftype);
    } else if (ftype == HL_FTYPE_Q4_K_M) {
        int il = layer_of(name);
        bool more = il >= 0 && use_more_bits(il, n_layers);
        if (more && (has_suffix(name, "attn_v.weight") || has_suffix(name, "ffn_down.weight")))
            type = HL_DTYPE_Q6_K;
    }
    return fit_row(type, ne[0]);
}

int hl_quantize_tensor(int type, int64_t ne0, int64_t n_rows, hl_quantize_rows_fn rows,
                       void *ctx, void *dst, size_t n_bytes, hl_error *err) {
    size_t row_bytes = 0;
    int rc = hl_quant_row_bytes(type, ne0, &row_bytes, err);
    if (rc != HL_OK) return rc;
    if (row_bytes * (size_t)n_rows != n_bytes)
        return hl_errorf(err, HL_ERR_INVAL, "tensor needs %zu bytes, buffer has %zu",
                         row_bytes * (size_t)n_rows, n_bytes);
    // Chunks of about 4 MB of floats bound memory whatever the tensor size.
    int64_t chunk = (int64_t)((4u << 20) / sizeof(float)) / ne0;
    if (chunk < 1) chunk = 1;
    float *buf = malloc(sizeof(float) * (size_t)(chunk * ne0));
    if (!buf) return hl_errorf(err, HL_ERR_NOMEM, "cannot allocate a conversion buffer");
    uint8_t *out = dst;
    for (int64_t r = 0; r < n_rows && rc == HL_OK; r += chunk) {
        int64_t n = n_rows - r < chunk ? n_rows - r : chunk;
        rc = rows(ctx, r, n, buf, err);
        if (rc == HL_OK) rc = hl_quant_quantize(type, buf, out + (size_t)r * row_bytes, n * ne0, err);
    }
    free(buf);
    return rc;
}
