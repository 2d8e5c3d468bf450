// quant-row: a debugging subcommand that runs one reference (de)quantizer over a file,
// so tests and people can compare halyard's blocks with another implementation's.
//
//   halyard quant-row --type q4_K --quantize   in.f32 out.bin   (raw little-endian f32 in)
//   halyard quant-row --type q4_K --dequantize in.bin out.f32   (raw blocks in)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/quant.h"
#include "tools/cli.h"

#define QUANT_ROW_MAX_BYTES ((size_t)1 << 30) // inputs are test rows, not whole models

typedef struct quant_row_args {
    int type;
    int quantize; // 1 quantize, 0 dequantize, -1 not given
    const char *in_path;
    const char *out_path;
} quant_row_args;

static void quant_row_usage(FILE *f) {
    fprintf(f, "usage: halyard quant-row --type T (--quantize|--dequantize) IN OUT\n"
               "  --quantize    IN holds little-endian f32 values; OUT gets T's blocks\n"
               "  --dequantize  IN holds T's blocks; OUT gets little-endian f32 values\n"
               "  T is a ggml type name: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q8_1\n"
               "  q2_K q3_K q4_K q5_K q6_K q8_K i8 i16 i32 i64 f64\n");
}

// Returns 0 on success, 2 (after a message) on a usage error.
static int parse_args(int argc, char **argv, quant_row_args *a) {
    *a = (quant_row_args){.type = -1, .quantize = -1};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--type") == 0 && i + 1 < argc) {
            a->type = hl_quant_from_name(argv[++i]);
            if (a->type < 0) {
                fprintf(stderr, "halyard quant-row: unknown type '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(s, "--quantize") == 0 || strcmp(s, "--dequantize") == 0) {
            int q = strcmp(s, "--quantize") == 0;
            if (a->quantize >= 0 && a->quantize != q) {
                fprintf(stderr, "halyard quant-row: give only one of --quantize, --dequantize\n");
                return 2;
            }
            a->quantize = q;
        } else if (s[0] == '-' && s[1] != '\0') {
            fprintf(stderr, "halyard quant-row: unknown or incomplete option '%s'\n", s);
            return 2;
        } else if (n_pos < 2) {
            if (n_pos++ == 0) a->in_path = s;
            else a->out_path = s;
        } else {
            fprintf(stderr, "halyard quant-row: unexpected argument '%s'\n", s);
            return 2;
        }
    }
    if (a->type < 0 || a->quantize < 0 || n_pos != 2) {
        quant_row_usage(stderr);
        return 2;
    }
    return 0;
}

static int write_all(const char *path, const void *buf, size_t n_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "halyard quant-row: open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t wrote = n_bytes ? fwrite(buf, 1, n_bytes, f) : 0;
    int close_rc = fclose(f);
    if (wrote != n_bytes || close_rc != 0) {
        fprintf(stderr, "halyard quant-row: write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static int do_quantize(const quant_row_args *a, const uint8_t *in, size_t in_bytes) {
    const hl_dtype_info *info = hl_quant_info(a->type);
    if (in_bytes % 4 != 0) {
        fprintf(stderr, "halyard quant-row: %s: %zu bytes is not a whole number of f32 values\n",
                a->in_path, in_bytes);
        return 1;
    }
    int64_t n = (int64_t)(in_bytes / 4);
    hl_error err = {0};
    size_t out_bytes = 0;
    if (hl_quant_row_bytes(a->type, n, &out_bytes, &err) != HL_OK) {
        fprintf(stderr, "halyard quant-row: %s: %s\n", a->in_path, err.msg);
        return 1;
    }
    if (!info->can_quantize) {
        fprintf(stderr, "halyard quant-row: no quantizer for %s\n", info->name);
        return 1;
    }
    float *x = malloc(in_bytes ? in_bytes : 1);
    uint8_t *out = malloc(out_bytes ? out_bytes : 1);
    int rc = 1;
    if (!x || !out) {
        fprintf(stderr, "halyard quant-row: out of memory\n");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) x[i] = hl_rd_f32(in + 4 * i);
    if (hl_quant_quantize(a->type, x, out, n, &err) != HL_OK) {
        fprintf(stderr, "halyard quant-row: %s\n", err.msg);
        goto done;
    }
    rc = write_all(a->out_path, out, out_bytes);
done:
    free(x);
    free(out);
    return rc;
}

static int do_dequantize(const quant_row_args *a, const uint8_t *in, size_t in_bytes) {
    const hl_dtype_info *info = hl_quant_info(a->type);
    if (in_bytes % info->block_bytes != 0) {
        fprintf(stderr, "halyard quant-row: %s: %zu bytes is not a whole number of %s blocks "
                "(%zu bytes each)\n", a->in_path, in_bytes, info->name, info->block_bytes);
        return 1;
    }
    int64_t n = (int64_t)(in_bytes / info->block_bytes) * info->block_size;
    float *y = malloc(n ? (size_t)n * sizeof(float) : 1);
    uint8_t *out = malloc(n ? (size_t)n * 4 : 1);
    int rc = 1;
    hl_error err = {0};
    if (!y || !out) {
        fprintf(stderr, "halyard quant-row: out of memory\n");
        goto done;
    }
    if (hl_quant_dequantize(a->type, in, y, n, &err) != HL_OK) {
        fprintf(stderr, "halyard quant-row: %s\n", err.msg);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &y[i], 4);
        hl_wr_u32(out + 4 * i, u);
    }
    rc = write_all(a->out_path, out, (size_t)n * 4);
done:
    free(y);
    free(out);
    return rc;
}

int hl_cmd_quant_row(int argc, char **argv) {
    quant_row_args a;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            quant_row_usage(stdout);
            return 0;
        }
    }
    int urc = parse_args(argc, argv, &a);
    if (urc) return urc;
    hl_error err = {0};
    size_t in_bytes = 0;
    char *in = hl_read_file(a.in_path, QUANT_ROW_MAX_BYTES, &in_bytes, &err);
    if (!in) {
        fprintf(stderr, "halyard quant-row: %s\n", err.msg);
        return 1;
    }
    int rc = a.quantize ? do_quantize(&a, (const uint8_t *)in, in_bytes)
                        : do_dequantize(&a, (const uint8_t *)in, in_bytes);
    free(in);
    return rc;
}
