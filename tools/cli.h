// cli: the `halyard` subcommands and the small argument helpers they share.
//
// Each subcommand lives in tools/<name>.c as `int hl_cmd_<name>(int argc, char **argv)`
// (argv[0] is the subcommand name) and returns the process exit code: 0 success,
// 1 failure (message already printed), 2 usage error.
#pragma once

#include "common/hl.h"

int hl_cmd_bench(int argc, char **argv);
int hl_cmd_detokenize(int argc, char **argv);
int hl_cmd_info(int argc, char **argv);
int hl_cmd_logits(int argc, char **argv);
int hl_cmd_pull(int argc, char **argv);
int hl_cmd_quantize(int argc, char **argv);
int hl_cmd_quant_row(int argc, char **argv);
int hl_cmd_run(int argc, char **argv);
int hl_cmd_serve(int argc, char **argv);
int hl_cmd_synth(int argc, char **argv);
int hl_cmd_tokenize(int argc, char **argv);
int hl_cmd_version(int argc, char **argv);

// Parses a non-negative integer option value; prints a usage error and returns false
// when it is not a number or out of [lo, hi].
bool hl_cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
bool hl_cli_parse_float(const char *opt, const char *s, double *out);

// Draws a progress bar on stderr when it is a terminal (done of total, with a label).
void hl_cli_progress(const char *label, uint64_t done, uint64_t total);
