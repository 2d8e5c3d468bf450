// pull: `halyard pull URL` downloads a model file (server/fetch does the transfer).
//
// Without -o the file goes to models/<last URL path segment>. An existing output is kept
// unless --force, or skipped when --sha256 says it is already the wanted file. A failed
// pull leaves OUT.part behind; running the same command again resumes it.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "server/fetch.h"
#include "tools/cli.h"

#define MODELS_DIR "models"

typedef struct pull_args {
    const char *url;
    const char *out; // -o, or NULL for models/NAME
    const char *sha256_hex;
    const char *token;    // --token; HF_TOKEN is looked up later, for Hub URLs only
    const char **headers; // owned array of borrowed argv strings
    int n_headers;
    const char **resolve; // owned array of borrowed argv strings
    int n_resolve;
    bool force;
    hl_fetch_opts opts;
} pull_args;

typedef struct progress_state {
    const char *label; // borrowed: the output path
    double last_ms;
} progress_state;

static void usage(FILE *f) {
    fprintf(f,
            "usage: halyard pull URL [-o FILE] [--sha256 HEX] [--header 'K: V']... [--token T]\n"
            "                        [--retries N] [--connect-timeout S] [--stall-timeout S]\n"
            "                        [--max-redirects N] [--resolve HOST:PORT:ADDR]... [--force]\n"
            "\n"
            "Downloads URL (http or https) to FILE, default " MODELS_DIR
            "/<last path segment of URL>.\n"
            "Bytes go to FILE.part first; an interrupted pull resumes from it when run again.\n"
            "The file is renamed into place only once complete (and matching --sha256).\n"
            "Hugging Face: https://huggingface.co/ORG/REPO/resolve/REV/FILE (a /blob/ link is\n"
            "turned into its /resolve/ form); $HF_TOKEN is sent to huggingface.co and hf.co only.\n"
            "\n"
            "  -o FILE              output path\n"
            "  --sha256 HEX         expected SHA-256; on mismatch FILE.part is deleted (Hub LFS\n"
            "                       files are checked against the Hub's X-Linked-Etag without it)\n"
            "  --header 'K: V'      extra request header (repeatable)\n"
            "  --token T            bearer token for the URL's host (never sent across redirects)\n"
            "  --retries N          retries after dropped connections, stalls, 5xx, 429 (3)\n"
            "  --connect-timeout S  seconds to wait for a connection (30)\n"
            "  --stall-timeout S    abort an attempt under 1 KiB/s for S seconds (60)\n"
            "  --max-redirects N    redirects to follow (10)\n"
            "  --resolve H:P:A      connect to address A for host H port P, like curl --resolve\n"
            "  --force              download again even if FILE exists\n");
}

static bool parse_long(const char *opt, const char *v, long long lo, long long hi, long *out) {
    long long x = 0;
    if (!hl_cli_parse_int(opt, v, lo, hi, &x)) return false;
    *out = (long)x;
    return true;
}

// Options that take a value; false (message printed) on a bad one.
static bool parse_valued(pull_args *a, const char *opt, const char *v) {
    if (!v) {
        fprintf(stderr, "halyard pull: %s needs a value\n", opt);
        return false;
    }
    hl_fetch_opts *o = &a->opts;
    long retries = 0;
    if (strcmp(opt, "--connect-timeout") == 0) return parse_long(opt, v, 1, 3600, &o->connect_timeout_s);
    if (strcmp(opt, "--stall-timeout") == 0) return parse_long(opt, v, 1, 3600, &o->stall_timeout_s);
    if (strcmp(opt, "--max-redirects") == 0) return parse_long(opt, v, 0, 100, &o->max_redirects);
    if (strcmp(opt, "--retries") == 0) {
        if (!parse_long(opt, v, 0, 100, &retries)) return false;
        o->max_retries = (int)retries;
    }
    if (strcmp(opt, "--header") == 0) a->headers[a->n_headers++] = v;
    if (strcmp(opt, "--resolve") == 0) a->resolve[a->n_resolve++] = v;
    if (strcmp(opt, "-o") == 0) a->out = v;
    if (strcmp(opt, "--sha256") == 0) a->sha256_hex = v;
    if (strcmp(opt, "--token") == 0) a->token = v;
    return true;
}

static bool takes_value(const char *opt) {
    static const char *valued[] = {
        "-o",        "--sha256",          "--token",         "--header",       "--resolve",
        "--retries", "--connect-timeout", "--stall-timeout", "--max-redirects"};
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (strcmp(opt, valued[i]) == 0) return true;
    return false;
}

// Returns 0 to go on, 2 on a usage error, -1 after --help.
static int parse_args(pull_args *a, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(s, "--force") == 0) {
            a->force = true;
        } else if (takes_value(s)) {
            if (!parse_valued(a, s, i + 1 < argc ? argv[i + 1] : NULL)) return 2;
            i++;
        } else if (s[0] == '-' || a->url) {
            fprintf(stderr, "halyard pull: unexpected argument '%s'\n", s);
            return 2;
        } else {
            a->url = s;
        }
    }
    if (!a->url) {
        usage(stderr);
        return 2;
    }
    uint8_t digest[HL_SHA256_BYTES];
    hl_error err = {0};
    if (a->sha256_hex && hl_sha256_parse_hex(a->sha256_hex, digest, &err) != HL_OK) {
        fprintf(stderr, "halyard pull: --sha256: %s\n", err.msg);
        return 2;
    }
    return 0;
}

// models/NAME from the URL; creates models/ when missing. Caller frees.
static char *default_output(const char *url, hl_error *err) {
    char name[256];
    if (hl_fetch_default_name(url, name, sizeof name, err) != HL_OK) return NULL;
    if (mkdir(MODELS_DIR, 0755) != 0 && errno != EEXIST) {
        hl_errorf(err, HL_ERR_IO, "mkdir %s: %s", MODELS_DIR, strerror(errno));
        return NULL;
    }
    size_t n = strlen(MODELS_DIR) + strlen(name) + 2;
    char *path = hl_xmalloc(n);
    snprintf(path, n, "%s/%s", MODELS_DIR, name);
    return path;
}

// An existing output: 0 when --sha256 shows it is already right (nothing to do),
// 1 when it must not be replaced (message printed), -1 to go on and download.
static int check_existing(const pull_args *a, const char *out) {
    struct stat sb;
    if (a->force || stat(out, &sb) != 0) return -1;
    if (!a->sha256_hex) {
        fprintf(stderr, "halyard pull: %s exists (use --force to download it again)\n", out);
        return 1;
    }
    uint8_t want[HL_SHA256_BYTES], got[HL_SHA256_BYTES];
    char got_hex[HL_SHA256_HEX_BYTES];
    hl_error err = {0};
    hl_sha256_parse_hex(a->sha256_hex, want, NULL);
    if (hl_sha256_file(out, got, &err) != HL_OK) {
        fprintf(stderr, "halyard pull: %s\n", err.msg);
        return 1;
    }
    hl_sha256_hex(got, got_hex);
    if (memcmp(want, got, sizeof want) == 0) {
        printf("%s is up to date (%lld bytes, sha256 %s)\n", out, (long long)sb.st_size, got_hex);
        return 0;
    }
    fprintf(stderr, "halyard pull: %s exists with sha256 %s, not the one asked for (use --force)\n",
            out, got_hex);
    return 1;
}

// Redraws at most every 100 ms, and always at the end.
static int on_progress(void *user, uint64_t done, uint64_t total) {
    progress_state *p = user;
    double now = hl_time_ms();
    if (done < total && now - p->last_ms < 100) return 0;
    p->last_ms = now;
    hl_cli_progress(p->label, done, total);
    return 0;
}

static int pull(pull_args *a, const char *out) {
    int skip = check_existing(a, out);
    if (skip >= 0) return skip;
    progress_state prog = {.label = out, .last_ms = -1e9};
    a->opts.sha256_hex = a->sha256_hex;
    a->opts.token = hl_fetch_token_for(a->url, a->token);
    a->opts.headers = a->headers;
    a->opts.n_headers = a->n_headers;
    a->opts.resolve = a->resolve;
    a->opts.n_resolve = a->n_resolve;
    a->opts.progress = on_progress;
    a->opts.progress_user = &prog;
    hl_fetch_result res;
    hl_error err = {0};
    if (hl_fetch_to_file(a->url, out, &a->opts, &res, &err) != HL_OK) {
        fprintf(stderr, "halyard pull: %s\n", err.msg);
        if (res.n_bytes > 0 && err.code != HL_ERR_FORMAT && err.code != HL_ERR_BUSY)
            fprintf(
                stderr,
                "halyard pull: %llu bytes kept in %s.part; run the same command again to resume\n",
                (unsigned long long)res.n_bytes, out);
        return 1;
    }
    if (res.resumed_bytes > 0)
        printf("resumed %s at %llu bytes\n", out, (unsigned long long)res.resumed_bytes);
    printf("saved %s (%llu bytes, sha256 %s%s)\n", out, (unsigned long long)res.n_bytes,
           res.sha256_hex, res.verified ? ", verified" : "");
    return 0;
}

int hl_cmd_pull(int argc, char **argv) {
    pull_args a = {.opts = hl_fetch_default_opts()};
    a.headers = hl_xcalloc((size_t)argc, sizeof *a.headers);
    a.resolve = hl_xcalloc((size_t)argc, sizeof *a.resolve);
    int rc = parse_args(&a, argc, argv);
    char *out = NULL;
    if (rc == 0 && !a.out) {
        hl_error err = {0};
        out = default_output(a.url, &err);
        if (!out) fprintf(stderr, "halyard pull: %s\n", err.msg);
        rc = out ? 0 : 1;
    }
    if (rc == 0) rc = pull(&a, a.out ? a.out : out);
    free(out);
    free(a.headers);
    free(a.resolve);
    return rc < 0 ? 0 : rc;
}
