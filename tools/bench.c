// bench: `halyard bench serve | engine | kernels` — dispatches to the benchmark modes
// (tools/bench_serve.c, bench_engine.c, bench_kernels.c; shared internals in bench.h).
#include <stdio.h>

#include "tools/bench.h"
#include "tools/cli.h"

static const char usage_text[] =
    "usage: halyard bench MODE [ARGS]\n\n"
    "modes:\n"
    "  serve     load-test any OpenAI-compatible server: TTFT, TPOT, ITL, throughput, goodput\n"
    "  engine    prompt and generation tokens/s of the batching engine per batch size (no HTTP)\n"
    "  kernels   time backend matmul and attention against measured memory and FLOP ceilings\n"
    "\n'halyard bench MODE --help' describes one mode.\n";

static void usage(FILE *f) { fputs(usage_text, f); }

int hl_cmd_bench(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "serve") == 0) return hl_bench_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "engine") == 0) return hl_bench_engine(argc - 1, argv + 1);
    if (strcmp(argv[1], "kernels") == 0) return hl_bench_kernels(argc - 1, argv + 1);
    fprintf(stderr, "halyard bench: unknown mode '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
