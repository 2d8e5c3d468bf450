// synth: `halyard synth` writes a model of a real shape with deterministic random weights.
#include <stdio.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quantize.h"
#include "engine/synth.h"
#include "tools/cli.h"

#define DEFAULT_TOKENIZER "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static void synth_usage(FILE *f) {
    fprintf(f,
            "usage: halyard synth --shape tiny|s135|l1b|l8b --type f32|f16|q8_0|q4_0|q4_1|q4_k|q6_k|q4_k_m\n"
            "                     [--seed N] [--tokenizer-from FILE.gguf | --tokenizer-dir DIR] -o FILE\n"
            "Writes a llama-family GGUF of that exact shape with deterministic random weights.\n"
            "The tokenizer comes from another GGUF (default %s) or from a Hugging Face\n"
            "vocab.json + merges.txt folder; the vocabulary size follows it.\n",
            DEFAULT_TOKENIZER);
}

typedef struct synth_args {
    const char *shape, *type, *out, *tok_gguf, *tok_dir;
    long long seed;
} synth_args;

static int parse_args(int argc, char **argv, synth_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            synth_usage(stdout);
            return 1;
        }
        if (!val) {
            fprintf(stderr, "halyard synth: %s needs a value\n", arg);
            return 2;
        }
        if (strcmp(arg, "--shape") == 0) a->shape = val;
        else if (strcmp(arg, "--type") == 0) a->type = val;
        else if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) a->out = val;
        else if (strcmp(arg, "--tokenizer-from") == 0) a->tok_gguf = val;
        else if (strcmp(arg, "--tokenizer-dir") == 0) a->tok_dir = val;
        else if (strcmp(arg, "--seed") == 0) {
            if (!hl_cli_parse_int("--seed", val, 0, INT64_MAX, &a->seed)) return 2;
        } else {
            fprintf(stderr, "halyard synth: unknown option %s\n", arg);
            return 2;
        }
        i++;
    }
    if (!a->shape || !a->type || !a->out) {
        synth_usage(stderr);
        return 2;
    }
    return 0;
}

int hl_cmd_synth(int argc, char **argv) {
    synth_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    const hl_synth_shape *shape = hl_synth_shape_find(a.shape);
    if (!shape) {
        fprintf(stderr, "halyard synth: unknown shape '%s' (known: %s)\n", a.shape, hl_synth_shape_names());
        return 2;
    }
    int ftype = hl_quantize_ftype_from_name(a.type);
    if (ftype < 0) {
        fprintf(stderr, "halyard synth: unknown type '%s' (known: f32, f16, q8_0, q4_0, q4_1, q4_k, q6_k, q4_k_m)\n",
                a.type);
        return 2;
    }
    hl_error err = {0};
    hl_gguf *src = NULL;
    hl_synth_tokenizer tok = {.hf_dir = a.tok_dir};
    if (!a.tok_dir) {
        src = hl_gguf_open(a.tok_gguf ? a.tok_gguf : DEFAULT_TOKENIZER, &err);
        if (!src) {
            fprintf(stderr, "halyard synth: tokenizer: %s\n", err.msg);
            return 1;
        }
        tok.from_gguf = src;
    }
    double t0 = hl_time_ms();
    rc = hl_synth_write_gguf(shape, ftype, (uint64_t)a.seed, &tok, a.out, &err);
    hl_gguf_free(src);
    if (rc != HL_OK) {
        fprintf(stderr, "halyard synth: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "halyard synth: wrote %s (%s, %s, seed %lld) in %.1f s\n", a.out, shape->name,
            hl_quantize_ftype_name(ftype), a.seed, (hl_time_ms() - t0) / 1000.0);
    return 0;
}
