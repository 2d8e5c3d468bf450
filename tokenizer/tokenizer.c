// tokenizer: the facade over BPE, SentencePiece and WordPiece (see tokenizer.h).
#include "tokenizer/tokenizer.h"

#include <stdlib.h>

#include "tokenizer/bpe.h"
#include "tokenizer/pretok.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokload.h"
#include "tokenizer/unicode.h"
#include "tokenizer/wordpiece.h"

struct hl_tokenizer {
    enum hl_tokenizer_model model;
    hl_vocab vocab;           // owned
    hl_pretok *pretok;        // owned (BPE)
    hl_bpe *bpe;              // owned (BPE)
    hl_spm *spm;              // owned (SPM)
    hl_wordpiece *wp;         // owned (WORDPIECE)
    hl_tokenizer_ids ids;
    bool add_bos, add_eos, add_space_prefix;
    uint8_t *eog;             // owned, (n_tokens): 1 for end-of-generation tokens
    int32_t *special;         // owned, (n_special): matchable tokens by first byte, longest first
    int32_t n_special;
    int32_t special_start[257]; // special[special_start[b] .. special_start[b + 1]) start with b
    char *pre_name;           // owned
    char *chat_template;      // owned, may be NULL
};

hl_tokenizer_spec hl_tokenizer_default_spec(void) {
    return (hl_tokenizer_spec){.bos_id = -1, .eos_id = -1, .eot_id = -1, .eom_id = -1,
                               .pad_id = -1, .unk_id = -1, .add_space_prefix = true,
                               .ignore_merges = -1};
}

// ---- construction ----

static bool is_matchable(int type) {
    return type == HL_TOKEN_CONTROL || type == HL_TOKEN_USER_DEFINED || type == HL_TOKEN_UNKNOWN;
}

typedef struct special_key {
    uint8_t first;
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; // longest first
    return x->id < y->id ? -1 : x->id > y->id;
}

static void build_special_index(hl_tokenizer *tok) {
    const hl_vocab *v = &tok->vocab;
    special_key *keys = hl_xmalloc(((size_t)v->n_tokens + 1) * sizeof *keys);
    int32_t n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        size_t len;
        const char *text = hl_vocab_text(v, id, &len);
        if (!is_matchable(v->type[id]) || len == 0) continue;
        keys[n++] = (special_key){.first = (uint8_t)text[0], .len = (uint32_t)len, .id = id};
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_special);
    tok->special = hl_xmalloc(((size_t)n + 1) * sizeof *tok->special);
    tok->n_special = n;
    int32_t k = 0;
    for (int b = 0; b < 256; b++) {
        tok->special_start[b] = k;
        for (; k < n && keys[k].first == b; k++) tok->special[k] = keys[k].id;
    }
    tok->special_start[256] = n;
    free(keys);
}

static void build_eog(hl_tokenizer *tok) {
    static const char *const names[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
                                        "<|endoftext|>", "<|end|>", "<end_of_turn>", "</s>", "<EOT>"};
    const hl_vocab *v = &tok->vocab;
    tok->eog = hl_xcalloc((size_t)v->n_tokens, 1);
    int32_t fixed[] = {tok->ids.eos, tok->ids.eot, tok->ids.eom};
    for (size_t i = 0; i < 3; i++) {
        if (fixed[i] >= 0) tok->eog[fixed[i]] = 1;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = hl_strmap_get(v->text_map, names[i], strlen(names[i]));
        if (id >= 0 && v->type[id] == HL_TOKEN_CONTROL) tok->eog[id] = 1;
    }
}

static int check_spec(const hl_tokenizer_spec *s, hl_error *err) {
    if (s->n_tokens <= 0 || !s->tokens)
        return hl_errorf(err, HL_ERR_INVAL, "tokenizer: no tokens");
    if (s->n_merges < 0 || (s->n_merges > 0 && !s->merges))
        return hl_errorf(err, HL_ERR_INVAL, "tokenizer: bad merge list");
    const int32_t ids[] = {s->bos_id, s->eos_id, s->eot_id, s->eom_id, s->pad_id, s->unk_id};
    static const char *const names[] = {"bos", "eos", "eot", "eom", "pad", "unk"};
    for (size_t i = 0; i < 6; i++) {
        if (ids[i] < -1 || ids[i] >= s->n_tokens)
            return hl_errorf(err, HL_ERR_INVAL, "tokenizer: %s id %d is not in [0, %d)", names[i],
                             ids[i], s->n_tokens);
    }
    return HL_OK;
}

// Lengths of n strings: the given ones, or strlen of each (returned array is owned).
static size_t *string_lens(const char *const *strs, const size_t *lens, int32_t n) {
    size_t *out = hl_xmalloc(((size_t)n + 1) * sizeof *out);
    for (int32_t i = 0; i < n; i++) out[i] = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
    return out;
}

static int setup_bpe(hl_tokenizer *tok, const hl_tokenizer_spec *s, hl_error *err) {
    tok->pretok = hl_pretok_create(tok->pre_name, err);
    if (!tok->pretok) return err ? err->code : HL_ERR_UNSUPPORTED;
    bool ignore = s->ignore_merges > 0;
    if (s->ignore_merges < 0)
        ignore = strcmp(tok->pre_name, "llama-bpe") == 0 || strcmp(tok->pre_name, "llama3") == 0;
    size_t *lens = string_lens(s->merges, s->merge_lens, s->n_merges);
    tok->bpe = hl_bpe_create(&tok->vocab, s->merges, lens, s->n_merges, ignore, err);
    free(lens);
    return tok->bpe ? HL_OK : (err ? err->code : HL_ERR_FORMAT);
}

static int setup_model(hl_tokenizer *tok, const hl_tokenizer_spec *s, hl_error *err) {
    if (s->model == HL_TOKENIZER_BPE) return setup_bpe(tok, s, err);
    if (s->model == HL_TOKENIZER_SPM) {
        tok->spm = hl_spm_create(&tok->vocab, s->unk_id, err);
        return tok->spm ? HL_OK : (err ? err->code : HL_ERR_INVAL);
    }
    size_t *lens = string_lens(s->tokens, s->token_lens, s->n_tokens);
    tok->wp = hl_wordpiece_create(s->tokens, lens, s->n_tokens, s->lowercase, s->lowercase, err);
    free(lens);
    return tok->wp ? HL_OK : (err ? err->code : HL_ERR_FORMAT);
}

hl_tokenizer *hl_tokenizer_create(const hl_tokenizer_spec *s, hl_error *err) {
    if (check_spec(s, err) != HL_OK) return NULL;
    hl_tokenizer *tok = hl_xcalloc(1, sizeof *tok);
    tok->model = s->model;
    tok->ids = (hl_tokenizer_ids){s->bos_id, s->eos_id, s->eot_id, s->eom_id, s->pad_id, s->unk_id};
    tok->add_bos = s->add_bos;
    tok->add_eos = s->add_eos;
    tok->add_space_prefix = s->add_space_prefix;
    tok->pre_name = hl_xstrdup(s->model == HL_TOKENIZER_BPE ? (s->pre ? s->pre : "default") : "");
    tok->chat_template = s->chat_template ? hl_xstrdup(s->chat_template) : NULL;
    enum hl_vocab_kind kind = s->model == HL_TOKENIZER_BPE   ? HL_VOCAB_BYTE_LEVEL
                              : s->model == HL_TOKENIZER_SPM ? HL_VOCAB_SENTENCEPIECE
                                                             : HL_VOCAB_WORDPIECE;
    size_t *lens = string_lens(s->tokens, s->token_lens, s->n_tokens);
    int rc = hl_vocab_init(&tok->vocab, s->n_tokens, s->tokens, lens, s->token_types, s->scores,
                           kind, err);
    free(lens);
    if (rc == HL_OK) rc = setup_model(tok, s, err);
    if (rc != HL_OK) {
        hl_tokenizer_free(tok);
        return NULL;
    }
    build_special_index(tok);
    build_eog(tok);
    return tok;
}

hl_tokenizer *hl_tokenizer_create_from_gguf(const hl_gguf *g, hl_error *err) {
    hl_tokload l;
    hl_tokenizer *tok = NULL;
    if (hl_tokload_gguf(&l, g, err) == HL_OK) tok = hl_tokenizer_create(&l.spec, err);
    hl_tokload_deinit(&l);
    return tok;
}

hl_tokenizer *hl_tokenizer_create_from_hf_files(const char *vocab_json, const char *merges_txt,
                                                const char *special_json, const char *pre,
                                                hl_error *err) {
    hl_tokload l;
    hl_tokenizer *tok = NULL;
    if (hl_tokload_hf_files(&l, vocab_json, merges_txt, special_json, pre, err) == HL_OK)
        tok = hl_tokenizer_create(&l.spec, err);
    hl_tokload_deinit(&l);
    return tok;
}

void hl_tokenizer_free(hl_tokenizer *tok) {
    if (!tok) return;
    hl_pretok_free(tok->pretok);
    hl_bpe_free(tok->bpe);
    hl_spm_free(tok->spm);
    hl_wordpiece_free(tok->wp);
    hl_vocab_deinit(&tok->vocab);
    free(tok->eog);
    free(tok->special);
    free(tok->pre_name);
    free(tok->chat_template);
    free(tok);
}

// ---- encoding ----

static bool special_allowed(int type, unsigned flags) {
    return type == HL_TOKEN_USER_DEFINED || (flags & HL_TOKENIZER_PARSE_SPECIAL);
}

int32_t hl_tokenizer_find_special(const hl_tokenizer *tok, const char *text, size_t len,
                                  unsigned flags, size_t *pos, size_t *n_bytes) {
    const hl_vocab *v = &tok->vocab;
    for (size_t i = 0; i < len; i++) { // hot: most bytes have an empty bucket
        uint8_t b = (uint8_t)text[i];
        for (int32_t k = tok->special_start[b]; k < tok->special_start[b + 1]; k++) {
            int32_t id = tok->special[k];
            size_t tl;
            const char *t = hl_vocab_text(v, id, &tl);
            if (tl > len - i || !special_allowed(v->type[id], flags) || memcmp(t, text + i, tl) != 0)
                continue;
            *pos = i;
            *n_bytes = tl;
            return id;
        }
    }
    return -1;
}

typedef struct encode_ctx {
    const hl_tokenizer *tok;
    hl_bpe_scratch *scratch; // owned by the encode call
    hl_tokens *out;
} encode_ctx;

static int bpe_piece(void *ctx, const char *piece, size_t len, hl_error *err) {
    encode_ctx *c = ctx;
    return hl_bpe_encode_piece(c->tok->bpe, c->scratch, piece, len, c->out, err);
}

static int wordpiece_fragment(encode_ctx *c, const char *text, size_t len, hl_error *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = hl_wordpiece_encode(c->tok->wp, text, len, false, &ids, &n, err);
    for (size_t i = 0; rc == HL_OK && i < n; i++) hl_tokens_push(c->out, ids[i]);
    free(ids);
    return rc;
}

// Encodes text that holds no special token. after_special: SentencePiece's space prefix is
// added at the start and after every special token (llama.cpp).
static int encode_fragment(encode_ctx *c, const char *text, size_t len, bool after_special,
                           hl_error *err) {
    const hl_tokenizer *tok = c->tok;
    if (tok->model == HL_TOKENIZER_SPM)
        return hl_spm_encode(tok->spm, text, len, tok->add_space_prefix && after_special, c->out,
                             err);
    if (tok->model == HL_TOKENIZER_WORDPIECE) return wordpiece_fragment(c, text, len, err);
    if (!c->scratch) c->scratch = hl_bpe_scratch_create();
    return hl_pretok_split(tok->pretok, text, len, bpe_piece, c, err);
}

int hl_tokenizer_encode(const hl_tokenizer *tok, const char *text, size_t len, unsigned flags,
                        hl_tokens *out, hl_error *err) {
    if (!text && len) return hl_errorf(err, HL_ERR_INVAL, "tokenizer: NULL text");
    bool add = flags & HL_TOKENIZER_ADD_SPECIAL;
    if (add && tok->add_bos && tok->ids.bos >= 0) hl_tokens_push(out, tok->ids.bos);
    encode_ctx c = {.tok = tok, .out = out};
    int rc = HL_OK;
    bool after_special = true;
    size_t pos = 0;
    while (pos < len && rc == HL_OK) {
        size_t at = 0, n = 0;
        int32_t id = hl_tokenizer_find_special(tok, text + pos, len - pos, flags, &at, &n);
        size_t frag = id >= 0 ? at : len - pos;
        if (frag) rc = encode_fragment(&c, text + pos, frag, after_special, err);
        after_special = false;
        if (id < 0 || rc != HL_OK) break;
        hl_tokens_push(out, id);
        after_special = true;
        pos += at + n;
    }
    hl_bpe_scratch_free(c.scratch);
    if (rc == HL_OK && add && tok->add_eos && tok->ids.eos >= 0) hl_tokens_push(out, tok->ids.eos);
    return rc;
}

// ---- decoding ----

static bool skipped(const hl_tokenizer *tok, int32_t id, unsigned flags) {
    int t = tok->vocab.type[id];
    return (flags & HL_TOKENIZER_SKIP_SPECIAL) && (t == HL_TOKEN_CONTROL || t == HL_TOKEN_UNKNOWN);
}

int hl_tokenizer_decode(const hl_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                        char **out, size_t *out_len, hl_error *err) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab.n_tokens)
            return hl_errorf(err, HL_ERR_INVAL, "tokenizer: id %d at %zu is not in [0, %d)", ids[i],
                             i, tok->vocab.n_tokens);
        total += tok->vocab.bytes_len[ids[i]];
    }
    char *raw = hl_xmalloc(total);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (skipped(tok, ids[i], flags)) continue;
        size_t bl;
        const char *b = hl_vocab_bytes(&tok->vocab, ids[i], &bl);
        memcpy(raw + len, b, bl);
        len += bl;
    }
    size_t start = (flags & HL_TOKENIZER_STRIP_SPACE) && len > 0 && raw[0] == ' ' ? 1 : 0;
    memmove(raw, raw + start, len - start);
    len -= start;
    raw[len] = '\0';
    if (flags & HL_TOKENIZER_VALID_UTF8) {
        char *fixed = NULL;
        size_t fixed_len = 0, cap = 0;
        hl_utf8_lossy_append((const uint8_t *)raw, len, false, &fixed, &fixed_len, &cap);
        free(raw);
        raw = fixed ? fixed : hl_xcalloc(1, 1);
        len = fixed_len;
    }
    *out = raw;
    *out_len = len;
    return HL_OK;
}

// ---- streaming ----

struct hl_tokenizer_stream {
    const hl_tokenizer *tok; // borrowed, must outlive the stream
    unsigned flags;
    bool started;            // a non-empty token has been seen (STRIP_SPACE is done)
    uint8_t pending[4];      // incomplete character held back
    size_t n_pending;
    char *work;              // owned: pending + the new token's bytes
    size_t work_cap;
    char *out;               // owned: what the last call emitted
    size_t out_len, out_cap;
};

hl_tokenizer_stream *hl_tokenizer_stream_create(const hl_tokenizer *tok, unsigned flags) {
    hl_tokenizer_stream *s = hl_xcalloc(1, sizeof *s);
    s->tok = tok;
    s->flags = flags;
    return s;
}

void hl_tokenizer_stream_free(hl_tokenizer_stream *s) {
    if (!s) return;
    free(s->work);
    free(s->out);
    free(s);
}

int hl_tokenizer_stream_push(hl_tokenizer_stream *s, int32_t id, const char **text, size_t *len,
                             hl_error *err) {
    const hl_tokenizer *tok = s->tok;
    if (id < 0 || id >= tok->vocab.n_tokens)
        return hl_errorf(err, HL_ERR_INVAL, "tokenizer: id %d is not in [0, %d)", id,
                         tok->vocab.n_tokens);
    s->out_len = 0;
    size_t bl = 0;
    const char *b = skipped(tok, id, s->flags) ? "" : hl_vocab_bytes(&tok->vocab, id, &bl);
    if (bl && !s->started) {
        s->started = true;
        if ((s->flags & HL_TOKENIZER_STRIP_SPACE) && b[0] == ' ') {
            b++;
            bl--;
        }
    }
    size_t n = s->n_pending + bl;
    if (n > s->work_cap) {
        s->work_cap = n * 2;
        s->work = hl_xrealloc(s->work, s->work_cap);
    }
    if (n == 0) { // nothing new (a skipped or empty token)
        *text = "";
        *len = 0;
        return HL_OK;
    }
    memcpy(s->work, s->pending, s->n_pending);
    if (bl) memcpy(s->work + s->n_pending, b, bl);
    size_t kept = hl_utf8_lossy_append((const uint8_t *)s->work, n, true, &s->out, &s->out_len,
                                       &s->out_cap);
    HL_ASSERT(kept < sizeof s->pending);
    memcpy(s->pending, s->work + n - kept, kept);
    s->n_pending = kept;
    *text = s->out ? s->out : "";
    *len = s->out_len;
    return HL_OK;
}

void hl_tokenizer_stream_finish(hl_tokenizer_stream *s, const char **text, size_t *len) {
    s->out_len = 0;
    hl_utf8_lossy_append(s->pending, s->n_pending, false, &s->out, &s->out_len, &s->out_cap);
    s->n_pending = 0;
    s->started = false;
    *text = s->out ? s->out : "";
    *len = s->out_len;
}

// ---- accessors ----

int32_t hl_tokenizer_n_tokens(const hl_tokenizer *tok) { return tok->vocab.n_tokens; }
enum hl_tokenizer_model hl_tokenizer_model(const hl_tokenizer *tok) { return tok->model; }

const char *hl_tokenizer_token_text(const hl_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab.n_tokens) return NULL;
    return hl_vocab_text(&tok->vocab, id, len);
}

const char *hl_tokenizer_token_bytes(const hl_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab.n_tokens) return NULL;
    return hl_vocab_bytes(&tok->vocab, id, len);
}

int hl_tokenizer_token_type(const hl_tokenizer *tok, int32_t id) {
    return id < 0 || id >= tok->vocab.n_tokens ? -1 : tok->vocab.type[id];
}

int32_t hl_tokenizer_token_id(const hl_tokenizer *tok, const char *text, size_t len) {
    return text ? hl_strmap_get(tok->vocab.text_map, text, len) : -1;
}

hl_tokenizer_ids hl_tokenizer_special_ids(const hl_tokenizer *tok) { return tok->ids; }
bool hl_tokenizer_adds_bos(const hl_tokenizer *tok) { return tok->add_bos && tok->ids.bos >= 0; }
bool hl_tokenizer_adds_eos(const hl_tokenizer *tok) { return tok->add_eos && tok->ids.eos >= 0; }

bool hl_tokenizer_is_eog(const hl_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab.n_tokens && tok->eog[id];
}

const char *hl_tokenizer_chat_template(const hl_tokenizer *tok) { return tok->chat_template; }
const char *hl_tokenizer_pre_name(const hl_tokenizer *tok) { return tok->pre_name; }
