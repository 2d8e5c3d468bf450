// pretok: regex pre-tokenizers over PCRE2 (see pretok.h).
#include "tokenizer/pretok.h"

#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MAX_STAGES 2

// GPT-2's ByteLevel pattern (Hugging Face ByteLevel(use_regex=true)).
static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Llama 3 (= tiktoken cl100k_base); ../shared/fixtures/llama3-tokenizer/pretokenizer_regex.txt.
static const char PAT_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Qwen2: Llama 3's pattern with one digit per piece.
static const char PAT_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Hugging Face Digits(individual_digits=true): every numeric character alone.
static const char PAT_DIGIT[] = "\\p{N}";

typedef struct pretok_def {
    const char *name;
    int n_stages;
    const char *patterns[MAX_STAGES];
} pretok_def;

static const pretok_def DEFS[] = {
    {"default", 1, {PAT_GPT2}},
    {"gpt2", 1, {PAT_GPT2}},
    {"llama-bpe", 1, {PAT_LLAMA3}},
    {"llama3", 1, {PAT_LLAMA3}},
    {"qwen2", 1, {PAT_QWEN2}},
    {"smollm", 2, {PAT_DIGIT, PAT_GPT2}},
};

struct hl_pretok {
    int n_stages;
    pcre2_code *code[MAX_STAGES]; // owned
    bool jit[MAX_STAGES];         // JIT compilation succeeded
};

const char *hl_pretok_names(void) { return "default, gpt2, llama-bpe, llama3, qwen2, smollm"; }

static const pretok_def *find_def(const char *name) {
    for (size_t i = 0; i < sizeof DEFS / sizeof DEFS[0]; i++) {
        if (strcmp(DEFS[i].name, name) == 0) return &DEFS[i];
    }
    return NULL;
}

hl_pretok *hl_pretok_create(const char *name, hl_error *err) {
    if (!name) name = "default";
    const pretok_def *def = find_def(name);
    if (!def) {
        hl_errorf(err, HL_ERR_UNSUPPORTED, "unknown pre-tokenizer '%s' (known: %s)", name,
                  hl_pretok_names());
        return NULL;
    }
    hl_pretok *p = hl_xcalloc(1, sizeof *p);
    p->n_stages = def->n_stages;
    for (int i = 0; i < def->n_stages; i++) {
        int ec;
        PCRE2_SIZE eoff;
        uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
        p->code[i] = pcre2_compile((PCRE2_SPTR)def->patterns[i], PCRE2_ZERO_TERMINATED, opts, &ec,
                                   &eoff, NULL);
        if (!p->code[i]) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            hl_errorf(err, HL_ERR_UNSUPPORTED, "pre-tokenizer %s: PCRE2 at offset %zu: %s", name,
                      (size_t)eoff, (const char *)msg);
            hl_pretok_free(p);
            return NULL;
        }
        p->jit[i] = pcre2_jit_compile(p->code[i], PCRE2_JIT_COMPLETE) == 0;
        if (!p->jit[i]) hl_log(HL_LOG_WARN, "pre-tokenizer %s: no PCRE2 JIT, matching is slower", name);
    }
    return p;
}

void hl_pretok_free(hl_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_stages; i++) pcre2_code_free(p->code[i]);
    free(p);
}

// Finds the next non-empty match of stage's pattern in s[start..n): 1 and [*ms, *me), 0 when
// there is none, or an error code.
static int next_match(const hl_pretok *p, int stage, pcre2_match_data *md, const char *s, size_t n,
                      size_t start, size_t *ms, size_t *me, hl_error *err) {
    int rc = PCRE2_ERROR_JIT_BADOPTION;
    if (p->jit[stage])
        rc = pcre2_jit_match(p->code[stage], (PCRE2_SPTR)s, n, start, PCRE2_NOTEMPTY, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_JIT_BADOPTION)
        rc = pcre2_match(p->code[stage], (PCRE2_SPTR)s, n, start, PCRE2_NOTEMPTY | PCRE2_NO_JIT, md,
                         NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return hl_errorf(err, HL_ERR_INVAL, "pre-tokenizer: PCRE2 match failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

// Splits s[0..n) at stage's matches: matches and the gaps between them go to fn in order.
static int split_stage(const hl_pretok *p, int stage, pcre2_match_data *md, const char *s,
                       size_t n, hl_pretok_piece_fn fn, void *ctx, hl_error *err) {
    size_t pos = 0;
    while (pos < n) {
        size_t ms = n, me = n;
        int rc = next_match(p, stage, md, s, n, pos, &ms, &me, err);
        if (rc < 0) return rc;
        if (rc == 0) ms = me = n;
        if (ms > pos && (rc = fn(ctx, s + pos, ms - pos, err)) != HL_OK) return rc;
        if (me > ms && (rc = fn(ctx, s + ms, me - ms, err)) != HL_OK) return rc;
        pos = me;
    }
    return HL_OK;
}

// ---- multi-stage splitting: earlier stages collect spans, the last one calls the user ----

typedef struct span_vec {
    const char *base;
    size_t *off; // owned; pairs (offset, length)
    size_t n, cap;
} span_vec;

static int collect_span(void *ctx, const char *piece, size_t len, hl_error *err) {
    span_vec *v = ctx;
    if (v->n + 2 > v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->off = hl_xrealloc(v->off, v->cap * sizeof *v->off);
    }
    v->off[v->n++] = (size_t)(piece - v->base);
    v->off[v->n++] = len;
    return HL_OK;
}

int hl_pretok_split(const hl_pretok *p, const char *text, size_t len, hl_pretok_piece_fn fn,
                    void *ctx, hl_error *err) {
    if (len == 0) return HL_OK;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return hl_errorf(err, HL_ERR_NOMEM, "pre-tokenizer: out of memory");
    int rc = HL_OK;
    int last = p->n_stages - 1;
    span_vec cur = {.base = text};
    span_vec next = {.base = text};
    collect_span(&cur, text, len, err);
    for (int st = 0; st < last && rc == HL_OK; st++) {
        next.n = 0;
        for (size_t i = 0; i < cur.n && rc == HL_OK; i += 2)
            rc = split_stage(p, st, md, text + cur.off[i], cur.off[i + 1], collect_span, &next, err);
        span_vec t = cur;
        cur = next;
        next = t;
    }
    for (size_t i = 0; i < cur.n && rc == HL_OK; i += 2)
        rc = split_stage(p, last, md, text + cur.off[i], cur.off[i + 1], fn, ctx, err);
    free(cur.off);
    free(next.off);
    pcre2_match_data_free(md);
    return rc;
}
