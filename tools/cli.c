// cli: shared argument helpers for the subcommands (see cli.h).
#include "tools/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

bool hl_cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    if (!s) {
        fprintf(stderr, "halyard: %s needs a value\n", opt);
        return false;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "halyard: %s: '%s' is not an integer in [%lld, %lld]\n", opt, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool hl_cli_parse_float(const char *opt, const char *s, double *out) {
    if (!s) {
        fprintf(stderr, "halyard: %s needs a value\n", opt);
        return false;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "halyard: %s: '%s' is not a number\n", opt, s);
        return false;
    }
    *out = v;
    return true;
}

void hl_cli_progress(const char *label, uint64_t done, uint64_t total) {
    if (!isatty(STDERR_FILENO) || total == 0) return;
    int width = 40;
    int filled = (int)((double)done / (double)total * width);
    if (filled > width) filled = width;
    fprintf(stderr, "\r%-24.24s [", label);
    for (int i = 0; i < width; i++) fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %5.1f%%", 100.0 * (double)done / (double)total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}
