// tokload: tokenizer descriptions from GGUF metadata and Hugging Face files (see tokload.h).
#include "tokenizer/tokload.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define MAX_JSON_BYTES ((size_t)512 << 20)

void hl_tokload_deinit(hl_tokload *l) {
    if (!l) return;
    free(l->tokens);
    free(l->token_lens);
    free(l->types);
    free(l->scores);
    free(l->merges);
    free(l->merge_lens);
    free(l->pre);
    free(l->chat_template);
    free(l->merges_buf);
    free(l->respelled);
    cJSON_Delete(l->json);
    cJSON_Delete(l->json_special);
    *l = (hl_tokload){0};
}

static void tokload_start(hl_tokload *l) {
    *l = (hl_tokload){0};
    l->spec = hl_tokenizer_default_spec();
}

// ---- GGUF ----

static bool is_int_type(enum hl_gguf_type t) {
    return t == HL_GGUF_UINT8 || t == HL_GGUF_INT8 || t == HL_GGUF_UINT16 || t == HL_GGUF_INT16 ||
           t == HL_GGUF_UINT32 || t == HL_GGUF_INT32 || t == HL_GGUF_UINT64 || t == HL_GGUF_INT64;
}

static int opt_str(const hl_gguf *g, const char *key, char **out, hl_error *err) {
    if (hl_gguf_find_kv(g, key) < 0) return HL_OK;
    hl_gguf_str s;
    int rc = hl_gguf_get_str(g, key, &s, err);
    if (rc) return rc;
    *out = hl_xstrndup(s.ptr, (size_t)s.len);
    return HL_OK;
}

static int opt_bool(const hl_gguf *g, const char *key, bool *out, hl_error *err) {
    if (hl_gguf_find_kv(g, key) < 0) return HL_OK;
    return hl_gguf_get_bool(g, key, out, err);
}

// A special id: absent keeps -1; out of range is ignored with a warning (files in the wild
// carry pad ids equal to the vocabulary size).
static int opt_id(const hl_gguf *g, const char *key, int32_t n, int32_t *out, hl_error *err) {
    if (hl_gguf_find_kv(g, key) < 0) return HL_OK;
    int64_t v;
    int rc = hl_gguf_get_int(g, key, &v, err);
    if (rc) return rc;
    if (v < 0 || v >= n) {
        hl_log(HL_LOG_WARN, "tokenizer: %s = %lld is not a token id (vocabulary of %d); ignored",
               key, (long long)v, n);
        return HL_OK;
    }
    *out = (int32_t)v;
    return HL_OK;
}

static int gguf_tokens(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    hl_gguf_arr a;
    int rc = hl_gguf_get_arr(g, "tokenizer.ggml.tokens", &a, err);
    if (rc) return rc;
    if (a.elem_type != HL_GGUF_STRING || a.n == 0 || a.n > INT32_MAX)
        return hl_errorf(err, HL_ERR_FORMAT, "tokenizer.ggml.tokens: want 1..2^31 strings, got %llu %s",
                         (unsigned long long)a.n, hl_gguf_type_name(a.elem_type));
    int32_t n = (int32_t)a.n;
    l->tokens = hl_xmalloc((size_t)n * sizeof *l->tokens);
    l->token_lens = hl_xmalloc((size_t)n * sizeof *l->token_lens);
    for (int32_t i = 0; i < n; i++) {
        hl_gguf_str s = hl_gguf_arr_str(&a, (uint64_t)i);
        l->tokens[i] = s.ptr;
        l->token_lens[i] = (size_t)s.len;
    }
    l->spec.n_tokens = n;
    l->spec.tokens = l->tokens;
    l->spec.token_lens = l->token_lens;
    return HL_OK;
}

// token_type and scores: optional, but when present one per token.
static int gguf_types_scores(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    int32_t n = l->spec.n_tokens;
    hl_gguf_arr a;
    int rc;
    if (hl_gguf_find_kv(g, "tokenizer.ggml.token_type") >= 0) {
        if ((rc = hl_gguf_get_arr(g, "tokenizer.ggml.token_type", &a, err))) return rc;
        if (!is_int_type(a.elem_type) || a.n != (uint64_t)n)
            return hl_errorf(err, HL_ERR_FORMAT, "tokenizer.ggml.token_type: want %d integers, got %llu %s",
                             n, (unsigned long long)a.n, hl_gguf_type_name(a.elem_type));
        l->types = hl_xmalloc((size_t)n * sizeof *l->types);
        for (int32_t i = 0; i < n; i++) {
            int64_t t = hl_gguf_arr_int(&a, (uint64_t)i);
            l->types[i] = t >= 0 && t < HL_TOKEN_TYPE_COUNT ? (int32_t)t : -1;
        }
        l->spec.token_types = l->types;
    }
    if (hl_gguf_find_kv(g, "tokenizer.ggml.scores") >= 0) {
        if ((rc = hl_gguf_get_arr(g, "tokenizer.ggml.scores", &a, err))) return rc;
        bool fl = a.elem_type == HL_GGUF_FLOAT32 || a.elem_type == HL_GGUF_FLOAT64;
        if (!fl || a.n != (uint64_t)n)
            return hl_errorf(err, HL_ERR_FORMAT, "tokenizer.ggml.scores: want %d floats, got %llu %s",
                             n, (unsigned long long)a.n, hl_gguf_type_name(a.elem_type));
        l->scores = hl_xmalloc((size_t)n * sizeof *l->scores);
        for (int32_t i = 0; i < n; i++) l->scores[i] = (float)hl_gguf_arr_float(&a, (uint64_t)i);
        l->spec.scores = l->scores;
    }
    return HL_OK;
}

static int gguf_merges(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    if (hl_gguf_find_kv(g, "tokenizer.ggml.merges") < 0) return HL_OK;
    hl_gguf_arr a;
    int rc = hl_gguf_get_arr(g, "tokenizer.ggml.merges", &a, err);
    if (rc) return rc;
    if (a.elem_type != HL_GGUF_STRING || a.n > INT32_MAX)
        return hl_errorf(err, HL_ERR_FORMAT, "tokenizer.ggml.merges: want strings, got %s",
                         hl_gguf_type_name(a.elem_type));
    l->merges = hl_xmalloc((a.n + 1) * sizeof *l->merges);
    l->merge_lens = hl_xmalloc((a.n + 1) * sizeof *l->merge_lens);
    for (uint64_t i = 0; i < a.n; i++) {
        hl_gguf_str s = hl_gguf_arr_str(&a, i);
        l->merges[i] = s.ptr;
        l->merge_lens[i] = (size_t)s.len;
    }
    l->spec.n_merges = (int32_t)a.n;
    l->spec.merges = l->merges;
    l->spec.merge_lens = l->merge_lens;
    return HL_OK;
}

static int gguf_model(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    hl_gguf_str s;
    int rc = hl_gguf_get_str(g, "tokenizer.ggml.model", &s, err);
    if (rc) return rc;
    static const struct { const char *name; enum hl_tokenizer_model model; } models[] = {
        {"gpt2", HL_TOKENIZER_BPE}, {"llama", HL_TOKENIZER_SPM}, {"bert", HL_TOKENIZER_WORDPIECE}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (s.len == strlen(models[i].name) && memcmp(s.ptr, models[i].name, s.len) == 0) {
            l->spec.model = models[i].model;
            return HL_OK;
        }
    }
    return hl_errorf(err, HL_ERR_UNSUPPORTED, "tokenizer.ggml.model '%.*s' is not supported (known: gpt2, llama, bert)",
                     (int)(s.len < 64 ? s.len : 64), s.ptr);
}

static int gguf_ids_flags(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    hl_tokenizer_spec *sp = &l->spec;
    int32_t n = sp->n_tokens;
    // Defaults where the file is silent, as llama.cpp assumes them.
    sp->add_bos = sp->model == HL_TOKENIZER_SPM || sp->model == HL_TOKENIZER_WORDPIECE ||
                  (sp->pre && (strcmp(sp->pre, "llama-bpe") == 0 || strcmp(sp->pre, "llama3") == 0));
    sp->add_eos = sp->model == HL_TOKENIZER_WORDPIECE;
    sp->add_space_prefix = sp->model == HL_TOKENIZER_SPM;
    static const char *const id_keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"};
    int32_t *ids[] = {&sp->bos_id, &sp->eos_id, &sp->eot_id, &sp->eom_id, &sp->pad_id, &sp->unk_id};
    int rc = HL_OK;
    for (size_t i = 0; i < 6 && rc == HL_OK; i++) rc = opt_id(g, id_keys[i], n, ids[i], err);
    if (rc == HL_OK) rc = opt_bool(g, "tokenizer.ggml.add_bos_token", &sp->add_bos, err);
    if (rc == HL_OK) rc = opt_bool(g, "tokenizer.ggml.add_eos_token", &sp->add_eos, err);
    if (rc == HL_OK) rc = opt_bool(g, "tokenizer.ggml.add_space_prefix", &sp->add_space_prefix, err);
    return rc;
}

// llama.cpp writes BERT vocabularies with "phantom spaces": "▁word" starts a word and "ing"
// continues one ("##ing" in vocab.txt); "[CLS]"-style names stay. This turns them back.
static void bert_respell(hl_tokload *l) {
    int32_t n = l->spec.n_tokens;
    bool phantom = false;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        phantom |= l->token_lens[i] >= 3 && memcmp(l->tokens[i], "\xe2\x96\x81", 3) == 0;
        total += l->token_lens[i] + 3;
    }
    if (!phantom) return;
    l->respelled = hl_xmalloc(total);
    char *o = l->respelled;
    for (int32_t i = 0; i < n; i++) {
        const char *t = l->tokens[i];
        size_t len = l->token_lens[i];
        bool named = len >= 2 && t[0] == '[' && t[len - 1] == ']';
        bool starts = len >= 3 && memcmp(t, "\xe2\x96\x81", 3) == 0;
        const char *prefix = named || starts ? "" : "##";
        size_t skip = starts && !named ? 3 : 0;
        size_t pl = strlen(prefix);
        memcpy(o, prefix, pl);
        memcpy(o + pl, t + skip, len - skip);
        l->tokens[i] = o;
        l->token_lens[i] = pl + len - skip;
        o += l->token_lens[i];
    }
}

// BERT: [CLS]/[SEP] are BOS/EOS; a vocabulary without upper-case letters is uncased.
static int bert_defaults(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    hl_tokenizer_spec *sp = &l->spec;
    int rc = HL_OK;
    if (sp->bos_id < 0) rc = opt_id(g, "tokenizer.ggml.cls_token_id", sp->n_tokens, &sp->bos_id, err);
    if (rc == HL_OK && sp->eos_id < 0)
        rc = opt_id(g, "tokenizer.ggml.seperator_token_id", sp->n_tokens, &sp->eos_id, err);
    sp->lowercase = true;
    for (int32_t i = 0; i < sp->n_tokens && sp->lowercase; i++) {
        bool named = l->token_lens[i] >= 2 && l->tokens[i][0] == '[';
        for (size_t k = 0; k < l->token_lens[i] && !named; k++) {
            if (l->tokens[i][k] >= 'A' && l->tokens[i][k] <= 'Z') sp->lowercase = false;
        }
    }
    bert_respell(l);
    return rc;
}

int hl_tokload_gguf(hl_tokload *l, const hl_gguf *g, hl_error *err) {
    tokload_start(l);
    int rc = gguf_model(l, g, err);
    if (rc == HL_OK) rc = opt_str(g, "tokenizer.ggml.pre", &l->pre, err);
    if (rc == HL_OK) rc = opt_str(g, "tokenizer.chat_template", &l->chat_template, err);
    l->spec.pre = l->pre;
    l->spec.chat_template = l->chat_template;
    if (rc == HL_OK) rc = gguf_tokens(l, g, err);
    if (rc == HL_OK) rc = gguf_types_scores(l, g, err);
    if (rc == HL_OK) rc = gguf_merges(l, g, err);
    if (rc == HL_OK) rc = gguf_ids_flags(l, g, err);
    if (rc == HL_OK && l->spec.model == HL_TOKENIZER_WORDPIECE) rc = bert_defaults(l, g, err);
    if (rc) hl_error_wrap(err, "tokenizer");
    return rc;
}

// ---- Hugging Face files ----

static cJSON *parse_json_file(const char *path, hl_error *err) {
    size_t n;
    char *buf = hl_read_file(path, MAX_JSON_BYTES, &n, err);
    if (!buf) return NULL;
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!j) hl_errorf(err, HL_ERR_FORMAT, "%s: not valid JSON", path);
    return j;
}

// Highest id in vocab.json and special tokens; -1 on a bad entry.
static int max_id(const cJSON *vocab, const cJSON *special, const char *vpath, int64_t *out,
                  hl_error *err) {
    int64_t m = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (d < 0 || d >= INT32_MAX || d != (double)(int64_t)d)
            return hl_errorf(err, HL_ERR_FORMAT, "%s: token '%.40s' has no valid id", vpath,
                             it->string ? it->string : "");
        if ((int64_t)d > m) m = (int64_t)d;
    }
    cJSON_ArrayForEach(it, special) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        double d = cJSON_IsNumber(id) ? id->valuedouble : -1;
        if (d < 0 || d >= INT32_MAX || d != (double)(int64_t)d || !cJSON_IsString(content))
            return hl_errorf(err, HL_ERR_FORMAT, "special tokens: entry without a valid id and content");
        if ((int64_t)d > m) m = (int64_t)d;
    }
    *out = m;
    return HL_OK;
}

static int fill_hf_tokens(hl_tokload *l, const cJSON *vocab, const cJSON *special,
                          const char *vpath, hl_error *err) {
    int64_t m = -1;
    int rc = max_id(vocab, special, vpath, &m, err);
    if (rc) return rc;
    if (m < 0) return hl_errorf(err, HL_ERR_FORMAT, "%s: no tokens", vpath);
    int32_t n = (int32_t)(m + 1);
    l->tokens = hl_xcalloc((size_t)n, sizeof *l->tokens);
    l->token_lens = hl_xcalloc((size_t)n, sizeof *l->token_lens);
    l->types = hl_xmalloc((size_t)n * sizeof *l->types);
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)it->valuedouble;
        l->tokens[id] = it->string;
        l->types[id] = HL_TOKEN_NORMAL;
    }
    cJSON_ArrayForEach(it, special) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "special");
        l->tokens[id] = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        l->types[id] = cJSON_IsFalse(sp) ? HL_TOKEN_USER_DEFINED : HL_TOKEN_CONTROL;
    }
    for (int32_t i = 0; i < n; i++) {
        if (!l->tokens[i]) return hl_errorf(err, HL_ERR_FORMAT, "%s: no token has id %d", vpath, i);
        l->token_lens[i] = strlen(l->tokens[i]);
    }
    l->spec.n_tokens = n;
    l->spec.tokens = l->tokens;
    l->spec.token_lens = l->token_lens;
    l->spec.token_types = l->types;
    return HL_OK;
}

static int read_merges_txt(hl_tokload *l, const char *path, hl_error *err) {
    size_t n;
    l->merges_buf = hl_read_file(path, MAX_JSON_BYTES, &n, err);
    if (!l->merges_buf) return err ? err->code : HL_ERR_IO;
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) cap += l->merges_buf[i] == '\n';
    l->merges = hl_xmalloc(cap * sizeof *l->merges);
    l->merge_lens = hl_xmalloc(cap * sizeof *l->merge_lens);
    int32_t k = 0;
    for (char *p = l->merges_buf, *end = l->merges_buf + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len && p[len - 1] == '\r') len--;
        bool header = k == 0 && len >= 8 && memcmp(p, "#version", 8) == 0;
        if (len && !header && k < INT32_MAX) {
            l->merges[k] = p;
            l->merge_lens[k++] = len;
        }
        p += (nl ? (size_t)(nl - p) + 1 : len);
    }
    l->spec.n_merges = k;
    l->spec.merges = l->merges;
    l->spec.merge_lens = l->merge_lens;
    return HL_OK;
}

// First control token whose text is one of names, or -1.
static int32_t find_named(const hl_tokload *l, const char *const *names) {
    for (; *names; names++) {
        for (int32_t i = 0; i < l->spec.n_tokens; i++) {
            if (l->types[i] == HL_TOKEN_CONTROL && strcmp(l->tokens[i], *names) == 0) return i;
        }
    }
    return -1;
}

static void guess_special_ids(hl_tokload *l) {
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>", NULL};
    static const char *const eos[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", NULL};
    static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", NULL};
    static const char *const eom[] = {"<|eom_id|>", NULL};
    static const char *const pad[] = {"<|finetune_right_pad_id|>", "<pad>", NULL};
    static const char *const unk[] = {"<unk>", NULL};
    l->spec.bos_id = find_named(l, bos);
    l->spec.eos_id = find_named(l, eos);
    l->spec.eot_id = find_named(l, eot);
    l->spec.eom_id = find_named(l, eom);
    l->spec.pad_id = find_named(l, pad);
    l->spec.unk_id = find_named(l, unk);
    l->spec.add_bos = l->spec.bos_id >= 0;
}

int hl_tokload_hf_files(hl_tokload *l, const char *vocab_json, const char *merges_txt,
                        const char *special_json, const char *pre, hl_error *err) {
    tokload_start(l);
    l->spec.model = HL_TOKENIZER_BPE;
    l->pre = pre ? hl_xstrdup(pre) : NULL;
    l->spec.pre = l->pre;
    int rc = HL_OK;
    l->json = parse_json_file(vocab_json, err);
    if (!l->json) return err ? err->code : HL_ERR_FORMAT;
    if (!cJSON_IsObject((cJSON *)l->json))
        return hl_errorf(err, HL_ERR_FORMAT, "%s: want a JSON object token -> id", vocab_json);
    if (special_json) {
        l->json_special = parse_json_file(special_json, err);
        if (!l->json_special) return err ? err->code : HL_ERR_FORMAT;
        if (!cJSON_IsArray((cJSON *)l->json_special))
            return hl_errorf(err, HL_ERR_FORMAT, "%s: want a JSON array of {id, content}", special_json);
    }
    rc = fill_hf_tokens(l, l->json, l->json_special, vocab_json, err);
    if (rc == HL_OK) rc = read_merges_txt(l, merges_txt, err);
    if (rc == HL_OK) guess_special_ids(l);
    return rc;
}
