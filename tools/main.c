// halyard: the command-line entry point. Dispatches to one subcommand per tools/*.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_info.h"
#include "tools/cli.h"

#define HALYARD_VERSION "0.1.0"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    // keep sorted; one line per subcommand
    {"bench", hl_cmd_bench, "benchmark a server (serve), the engine (engine) or single kernels (kernels)"},
    {"detokenize", hl_cmd_detokenize, "turn token ids back into text (JSON array or --jsonl)"},
    {"info", hl_cmd_info, "describe a model file: hyper-parameters, tokenizer, tensors, memory"},
    {"logits", hl_cmd_logits, "top-K logits of every position of token id lines (debugging, comparisons)"},
    {"pull", hl_cmd_pull, "download a model file over HTTP(S): resume, sha256 check"},
    {"quant-row", hl_cmd_quant_row, "(debug) run one reference (de)quantizer over a file"},
    {"quantize", hl_cmd_quantize, "convert a GGUF or safetensors model to a quantized GGUF"},
    {"run", hl_cmd_run, "generate text from a prompt or chat (--chat, --interactive) on the CPU"},
    {"serve", hl_cmd_serve, "serve a model over HTTP: OpenAI and Anthropic APIs, SSE, metrics"},
    {"synth", hl_cmd_synth, "write a model of a real shape with deterministic random weights"},
    {"tokenize", hl_cmd_tokenize, "print the token ids of a text (JSON array or --jsonl)"},
    {"version", hl_cmd_version, "print the version and build features"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: halyard COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'halyard COMMAND --help' describes one command.\n");
}

int hl_cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("halyard %s (cuda: %s)\n", HALYARD_VERSION, hl_cuda_built() ? "built" : "not built");
    return 0;
}

int main(int argc, char **argv) {
    const char *lvl = getenv("HL_LOG");
    if (lvl && strcmp(lvl, "debug") == 0) hl_log_set_level(HL_LOG_DEBUG);
    if (lvl && strcmp(lvl, "warn") == 0) hl_log_set_level(HL_LOG_WARN);
    if (lvl && strcmp(lvl, "error") == 0) hl_log_set_level(HL_LOG_ERROR);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "halyard: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
