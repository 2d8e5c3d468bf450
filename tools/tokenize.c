// tokenize: `halyard tokenize` (text -> ids) and `halyard detokenize` (ids -> text).
//
//   halyard tokenize -m MODEL [--add-special] [--parse-special] [TEXT]      prints [id, ...]
//   halyard tokenize -m MODEL --jsonl < lines of {"text": ...}             {"ids": [...]} per line
//   halyard tokenize -m MODEL --bench FILE                                  encode speed, one thread
//   halyard detokenize -m MODEL [--skip-special] '[id, ...]'                prints the bytes
//   halyard detokenize -m MODEL --jsonl < lines of {"ids": [...]}          {"text": ...} per line
//
// MODEL is a GGUF file or a folder holding Hugging Face vocab.json + merges.txt (and optionally
// special_tokens.json), read with --pre NAME (default llama-bpe). JSON lines are validated by
// cJSON; the "text" string is then decoded here so that U+0000 survives (cJSON stops there).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "engine/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tools/cli.h"

#define MAX_INPUT_BYTES ((size_t)1 << 30)

typedef struct tok_args {
    const char *model, *pre, *bench, *arg;
    bool add_special, parse_special, skip_special, jsonl;
} tok_args;

static void usage(FILE *f, bool detok) {
    if (detok) {
        fprintf(f, "usage: halyard detokenize -m MODEL [--skip-special] [--jsonl] [--pre NAME] ['[ID, ...]']\n"
                   "Prints the bytes the ids decode to; with --jsonl reads {\"ids\": [...]} lines from\n"
                   "stdin and writes {\"text\": ...} lines (invalid UTF-8 shown as U+FFFD).\n");
        return;
    }
    fprintf(f, "usage: halyard tokenize -m MODEL [--add-special] [--parse-special] [--jsonl]\n"
               "                        [--bench FILE] [--pre NAME] [TEXT]\n"
               "Prints the token ids of TEXT (or of stdin) as a JSON array. --add-special adds BOS/EOS\n"
               "as the model asks; --parse-special turns special-token text into special tokens.\n"
               "--jsonl reads {\"text\": ...} lines from stdin and writes {\"ids\": [...]} lines.\n"
               "--bench FILE encodes FILE line by line and prints the speed as JSON.\n"
               "MODEL: a GGUF file or a folder with vocab.json + merges.txt [+ special_tokens.json]\n"
               "(--pre names its pre-tokenizer, default llama-bpe).\n");
}

static int parse_args(int argc, char **argv, bool detok, tok_args *a) {
    memset(a, 0, sizeof *a);
    a->pre = "llama-bpe";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout, detok);
            return 1;
        }
        if (strcmp(s, "--add-special") == 0) a->add_special = true;
        else if (strcmp(s, "--parse-special") == 0) a->parse_special = true;
        else if (strcmp(s, "--skip-special") == 0) a->skip_special = true;
        else if (strcmp(s, "--jsonl") == 0) a->jsonl = true;
        else if ((strcmp(s, "-m") == 0 || strcmp(s, "--model") == 0) && has_val) a->model = argv[++i];
        else if (strcmp(s, "--pre") == 0 && has_val) a->pre = argv[++i];
        else if (strcmp(s, "--bench") == 0 && has_val && !detok) a->bench = argv[++i];
        else if (s[0] == '-' && s[1] != '\0' && s[1] != '[' && !(s[1] >= '0' && s[1] <= '9')) {
            fprintf(stderr, "halyard %s: unknown option or missing value: %s\n", argv[0], s);
            return 2;
        } else if (!a->arg) {
            a->arg = s;
        } else {
            fprintf(stderr, "halyard %s: more than one positional argument\n", argv[0]);
            return 2;
        }
    }
    if (!a->model) {
        usage(stderr, detok);
        return 2;
    }
    return 0;
}

static hl_tokenizer *load(const tok_args *a, hl_error *err) {
    struct stat st;
    if (stat(a->model, &st) == 0 && S_ISDIR(st.st_mode)) {
        char v[4096], m[4096], s[4096];
        snprintf(v, sizeof v, "%s/vocab.json", a->model);
        snprintf(m, sizeof m, "%s/merges.txt", a->model);
        snprintf(s, sizeof s, "%s/special_tokens.json", a->model);
        return hl_tokenizer_create_from_hf_files(v, m, stat(s, &st) == 0 ? s : NULL, a->pre, err);
    }
    hl_gguf *g = hl_gguf_open(a->model, err);
    if (!g) return NULL;
    hl_tokenizer *tok = hl_tokenizer_create_from_gguf(g, err);
    hl_gguf_free(g);
    return tok;
}

// Reads all of stdin (caller frees); NULL when it is larger than MAX_INPUT_BYTES.
static char *read_stdin(size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *buf = hl_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += got;
        if (len + 1 < cap) continue;
        if (cap >= MAX_INPUT_BYTES) {
            free(buf);
            return NULL;
        }
        cap *= 2;
        buf = hl_xrealloc(buf, cap);
    }
    buf[len] = '\0';
    *n = len;
    return buf;
}

static void print_ids(const hl_tokens *ids) {
    putchar('[');
    for (size_t i = 0; i < ids->n; i++) printf(i ? ", %d" : "%d", ids->ids[i]);
    putchar(']');
}

// A JSON string with every byte kept (cJSON would stop at U+0000).
static void print_json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

// ---- JSON strings with NUL bytes (the line was validated by cJSON first) ----

static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end && *p != '"'; p++) {
        if (*p == '\\') p++;
    }
    return p + 1;
}

// Skips one value (string, number, literal, object or array).
static const char *skip_value(const char *p, const char *end) {
    int depth = 0;
    while (p < end) {
        if (*p == '"') {
            p = skip_string(p, end);
        } else {
            if (depth == 0 && (*p == ',' || *p == '}' || *p == ']')) break;
            depth += (*p == '{' || *p == '[') - (*p == '}' || *p == ']');
            p++;
        }
        if (depth == 0 && p < end && (*p == ',' || *p == '}')) break;
    }
    return p;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static uint32_t hex4(const char *p) {
    char h[5] = {p[0], p[1], p[2], p[3], 0};
    return (uint32_t)strtoul(h, NULL, 16);
}

// Decodes the JSON string at p (its opening quote) into out (big enough: escapes only shrink).
static size_t decode_string(const char *p, char *out) {
    static const char esc_in[] = "ntrbf/\\\"", esc_out[] = "\n\t\r\b\f/\\\"";
    size_t n = 0;
    for (p++; *p != '"';) {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        if (p[1] != 'u') {
            out[n++] = esc_out[strchr(esc_in, p[1]) - esc_in];
            p += 2;
            continue;
        }
        uint32_t cp = hex4(p + 2);
        p += 6;
        bool pair = cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u' &&
                    hex4(p + 2) >= 0xDC00 && hex4(p + 2) < 0xE000;
        if (pair) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
            p += 6;
        } else if (cp >= 0xD800 && cp < 0xE000) {
            cp = 0xFFFD; // a lone surrogate
        }
        n += (size_t)hl_utf8_encode(cp, out + n);
    }
    return n;
}

// The string value of key in the top-level object of a valid JSON line, decoded with every
// byte kept (caller frees); NULL when the key is absent or not a string.
static char *json_string_field(const char *line, size_t len, const char *key, size_t *out_len) {
    const char *p = line, *end = line + len;
    size_t kl = strlen(key);
    p = skip_ws(p, end);
    if (p == end || *p != '{') return NULL;
    for (p++; p < end;) {
        p = skip_ws(p, end);
        if (p == end || *p != '"') return NULL;
        const char *k = p + 1;
        p = skip_string(p, end);
        bool match = (size_t)(p - 1 - k) == kl && memcmp(k, key, kl) == 0;
        p = skip_ws(skip_ws(p, end) + 1, end); // past ':'
        if (match) {
            if (p == end || *p != '"') return NULL;
            char *out = hl_xmalloc(len + 1);
            *out_len = decode_string(p, out);
            return out;
        }
        p = skip_ws(skip_value(p, end), end);
        if (p < end && *p == ',') p++;
        else break;
    }
    return NULL;
}

// ---- tokenize ----

static int encode_print(const hl_tokenizer *tok, const char *text, size_t len, unsigned flags,
                        bool jsonl) {
    hl_tokens ids = {0};
    hl_error err = {0};
    int rc = hl_tokenizer_encode(tok, text, len, flags, &ids, &err);
    if (rc == HL_OK) {
        if (jsonl) fputs("{\"ids\": ", stdout);
        print_ids(&ids);
        puts(jsonl ? "}" : "");
    } else {
        fprintf(stderr, "halyard tokenize: %s\n", err.msg);
    }
    hl_tokens_free(&ids);
    return rc == HL_OK ? 0 : 1;
}

static int tokenize_jsonl(const hl_tokenizer *tok, unsigned flags) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0, lineno = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
        size_t tl = 0;
        char *t = cJSON_IsString(text) ? json_string_field(line, (size_t)n, "text", &tl) : NULL;
        if (!t) {
            fprintf(stderr, "halyard tokenize: line %d: want {\"text\": \"...\"}\n", lineno);
            puts("{\"error\": \"want {\\\"text\\\": ...}\"}");
            status = 1;
        } else if (encode_print(tok, t, tl, flags, true)) {
            status = 1;
        }
        free(t);
        cJSON_Delete(j);
        fflush(stdout);
    }
    free(line);
    return status;
}

// Encodes FILE line by line (each line with its '\n', as tools/bench_tokenizer.py feeds
// Hugging Face) and prints {"bytes", "lines", "tokens", "seconds", "mb_per_s"}.
static int bench(const hl_tokenizer *tok, const char *path, unsigned flags) {
    hl_error err = {0};
    size_t n;
    char *buf = hl_read_file(path, MAX_INPUT_BYTES, &n, &err);
    if (!buf) {
        fprintf(stderr, "halyard tokenize: %s\n", err.msg);
        return 1;
    }
    hl_tokens ids = {0};
    size_t n_lines = 0, n_tokens = 0;
    double t0 = hl_time_ms();
    for (size_t pos = 0; pos < n; n_lines++) {
        const char *nl = memchr(buf + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (buf + pos)) + 1 : n - pos;
        ids.n = 0;
        if (hl_tokenizer_encode(tok, buf + pos, len, flags, &ids, &err) != HL_OK) {
            fprintf(stderr, "halyard tokenize: %s\n", err.msg);
            break;
        }
        n_tokens += ids.n;
        pos += len;
    }
    double secs = (hl_time_ms() - t0) / 1000.0;
    printf("{\"bytes\": %zu, \"lines\": %zu, \"tokens\": %zu, \"seconds\": %.4f, \"mb_per_s\": %.2f}\n",
           n, n_lines, n_tokens, secs, secs > 0 ? (double)n / 1e6 / secs : 0.0);
    hl_tokens_free(&ids);
    free(buf);
    return err.code ? 1 : 0;
}

int hl_cmd_tokenize(int argc, char **argv) {
    tok_args a;
    int rc = parse_args(argc, argv, false, &a);
    if (rc) return rc == 1 ? 0 : rc;
    hl_error err = {0};
    hl_tokenizer *tok = load(&a, &err);
    if (!tok) {
        fprintf(stderr, "halyard tokenize: %s: %s\n", a.model, err.msg);
        return 1;
    }
    unsigned flags = (a.add_special ? HL_TOKENIZER_ADD_SPECIAL : 0) |
                     (a.parse_special ? HL_TOKENIZER_PARSE_SPECIAL : 0);
    int status;
    if (a.bench) {
        status = bench(tok, a.bench, flags);
    } else if (a.jsonl) {
        status = tokenize_jsonl(tok, flags);
    } else if (a.arg) {
        status = encode_print(tok, a.arg, strlen(a.arg), flags, false);
    } else {
        size_t n;
        char *text = read_stdin(&n);
        status = text ? encode_print(tok, text, n, flags, false) : 1;
        if (!text) fprintf(stderr, "halyard tokenize: stdin is larger than 1 GiB\n");
        free(text);
    }
    hl_tokenizer_free(tok);
    return status;
}

// ---- detokenize ----

// Reads a JSON array of ids; false (message printed) when it is not one.
static bool parse_ids(const cJSON *arr, hl_tokens *ids, const char *where) {
    if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "halyard detokenize: %s: want a JSON array of ids\n", where);
        return false;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (d < 0 || d > INT32_MAX || d != (double)(int32_t)d) {
            fprintf(stderr, "halyard detokenize: %s: '%s' is not a token id\n", where,
                    cJSON_IsNumber(it) ? "number" : "value");
            return false;
        }
        hl_tokens_push(ids, (int32_t)d);
    }
    return true;
}

static int decode_print(const hl_tokenizer *tok, const hl_tokens *ids, unsigned flags, bool jsonl) {
    char *text = NULL;
    size_t n = 0;
    hl_error err = {0};
    if (hl_tokenizer_decode(tok, ids->ids, ids->n, flags, &text, &n, &err) != HL_OK) {
        fprintf(stderr, "halyard detokenize: %s\n", err.msg);
        if (jsonl) puts("{\"error\": \"bad token id\"}");
        return 1;
    }
    if (jsonl) {
        fputs("{\"text\": ", stdout);
        print_json_string(text, n);
        puts("}");
    } else {
        fwrite(text, 1, n, stdout);
    }
    free(text);
    return 0;
}

static int detokenize_jsonl(const hl_tokenizer *tok, unsigned flags) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0, lineno = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        char where[32];
        snprintf(where, sizeof where, "line %d", lineno);
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        hl_tokens ids = {0};
        if (parse_ids(cJSON_GetObjectItemCaseSensitive(j, "ids"), &ids, where)) {
            status |= decode_print(tok, &ids, flags | HL_TOKENIZER_VALID_UTF8, true);
        } else {
            puts("{\"error\": \"want {\\\"ids\\\": [...]}\"}");
            status = 1;
        }
        hl_tokens_free(&ids);
        cJSON_Delete(j);
        fflush(stdout);
    }
    free(line);
    return status;
}

int hl_cmd_detokenize(int argc, char **argv) {
    tok_args a;
    int rc = parse_args(argc, argv, true, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if (!a.jsonl && !a.arg) {
        usage(stderr, true);
        return 2;
    }
    hl_error err = {0};
    hl_tokenizer *tok = load(&a, &err);
    if (!tok) {
        fprintf(stderr, "halyard detokenize: %s: %s\n", a.model, err.msg);
        return 1;
    }
    unsigned flags = a.skip_special ? HL_TOKENIZER_SKIP_SPECIAL : 0;
    int status = 1;
    if (a.jsonl) {
        status = detokenize_jsonl(tok, flags);
    } else {
        cJSON *j = cJSON_Parse(a.arg);
        hl_tokens ids = {0};
        if (parse_ids(j, &ids, "argument")) status = decode_print(tok, &ids, flags, false);
        else status = 2;
        hl_tokens_free(&ids);
        cJSON_Delete(j);
    }
    hl_tokenizer_free(tok);
    return status;
}
