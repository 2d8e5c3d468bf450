// quantize: `halyard quantize IN OUT --type T` converts a GGUF or safetensors model to a
// quantized GGUF, choosing each tensor's type as llama.cpp does (engine/quantize.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/quantize.h"
#include "engine/st_import.h"
#include "tools/cli.h"

static void quantize_usage(FILE *f) {
    fprintf(f,
            "usage: halyard quantize IN OUT --type q8_0|q4_0|q4_1|q4_k|q6_k|q4_k_m|f16|f32\n"
            "                        [--tokenizer-from FILE.gguf]\n"
            "IN is a GGUF file, or a safetensors model (a .safetensors file or a Hugging Face folder\n"
            "with config.json; its tokenizer comes from --tokenizer-from or the folder's\n"
            "vocab.json + merges.txt).\n");
}

// One source tensor being converted; shared by the fill and rows callbacks.
typedef struct job {
    const hl_gguf_tensor *src;
    int out_type;
    uint64_t *done_bytes, total_bytes; // progress over the whole file
} job;

static int gguf_rows(void *ctx, int64_t row0, int64_t n_rows, float *dst, hl_error *err) {
    const job *j = ctx;
    size_t row_bytes = 0;
    int rc = hl_quant_row_bytes(j->src->type, j->src->ne[0], &row_bytes, err);
    if (rc != HL_OK) return rc;
    const uint8_t *p = (const uint8_t *)j->src->data + (size_t)row0 * row_bytes;
    return hl_quant_dequantize(j->src->type, p, dst, n_rows * j->src->ne[0], err);
}

static int job_fill(void *ctx, const char *name, void *dst, size_t n_bytes, hl_error *err) {
    job *j = ctx;
    int64_t n_rows = 1;
    for (int d = 1; d < j->src->n_dims; d++) n_rows *= j->src->ne[d];
    int rc;
    if (j->out_type == j->src->type) { // already the target type: copy bytes exactly
        memcpy(dst, j->src->data, n_bytes);
        rc = HL_OK;
    } else {
        rc = hl_quantize_tensor(j->out_type, j->src->ne[0], n_rows, gguf_rows, j, dst, n_bytes, err);
    }
    if (rc != HL_OK) return hl_error_wrap(err, "tensor %s", name);
    *j->done_bytes += j->src->n_bytes;
    hl_cli_progress("quantizing", *j->done_bytes, j->total_bytes);
    return HL_OK;
}

static bool is_tied(const hl_gguf *g) { return hl_gguf_find_tensor(g, "output.weight") == NULL; }

static int quantize_gguf(const char *in, const char *out, int ftype, hl_error *err) {
    hl_gguf *g = hl_gguf_open(in, err);
    if (!g) return err->code;
    hl_gguf_writer *w = hl_gguf_writer_create();
    for (int64_t i = 0; i < hl_gguf_n_kv(g); i++) hl_gguf_writer_copy_kv(w, g, i);
    hl_gguf_writer_set_u32(w, "general.file_type", (uint32_t)hl_quantize_ftype_gguf_id(ftype));
    hl_gguf_writer_set_u32(w, "general.quantization_version", 2);
    int64_t n_layers = 0;
    hl_gguf_str arch = {0};
    char key[128];
    if (hl_gguf_get_str(g, "general.architecture", &arch, NULL) == HL_OK) {
        snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 64 ? arch.len : 64), arch.ptr);
        hl_gguf_get_int(g, key, &n_layers, NULL);
    }
    int64_t n = hl_gguf_n_tensors(g);
    job *jobs = hl_xcalloc((size_t)(n ? n : 1), sizeof(job));
    uint64_t done = 0, total = 0;
    for (int64_t i = 0; i < n; i++) total += hl_gguf_tensor_at(g, i)->n_bytes;
    int rc = HL_OK;
    for (int64_t i = 0; i < n && rc == HL_OK; i++) {
        const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
        jobs[i] = (job){.src = t, .done_bytes = &done, .total_bytes = total};
        jobs[i].out_type = hl_quantize_tensor_type(ftype, t->name, t->n_dims, t->ne, (int)n_layers, is_tied(g));
        if (t->n_dims > 2) jobs[i].out_type = t->type; // not a llama weight matrix: keep as is
        rc = hl_gguf_writer_add_tensor(w, t->name, jobs[i].out_type, t->n_dims, t->ne, NULL, job_fill,
                                       &jobs[i], err);
    }
    if (rc == HL_OK) rc = hl_gguf_writer_write(w, out, err);
    hl_gguf_writer_free(w);
    free(jobs);
    hl_gguf_free(g);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int hl_cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL, *tok_from = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            quantize_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--type") == 0 || strcmp(argv[i], "--tokenizer-from") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "halyard quantize: %s needs a value\n", argv[i]);
                return 2;
            }
            *(strcmp(argv[i], "--type") == 0 ? &type : &tok_from) = argv[i + 1];
            i++;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "halyard quantize: unknown option %s\n", argv[i]);
            return 2;
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            quantize_usage(stderr);
            return 2;
        }
    }
    if (!in || !out || !type) {
        quantize_usage(stderr);
        return 2;
    }
    int ftype = hl_quantize_ftype_from_name(type);
    if (ftype < 0) {
        fprintf(stderr, "halyard quantize: unknown type '%s' (known: q8_0, q4_0, q4_1, q4_k, q6_k, q4_k_m, f16, f32)\n",
                type);
        return 2;
    }
    hl_error err = {0};
    double t0 = hl_time_ms();
    int rc = ends_with(in, ".gguf") ? quantize_gguf(in, out, ftype, &err)
                                    : hl_st_import_gguf(in, out, ftype, tok_from, &err);
    if (rc != HL_OK) {
        fprintf(stderr, "halyard quantize: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "halyard quantize: wrote %s (%s) in %.1f s\n", out, hl_quantize_ftype_name(ftype),
            (hl_time_ms() - t0) / 1000.0);
    return 0;
}
