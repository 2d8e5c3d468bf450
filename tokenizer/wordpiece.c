// wordpiece: BERT basic tokenizer + greedy longest-match-first WordPiece (see wordpiece.h).
// Character classes and mappings come from wordpiece_tables.c, which is generated from the
// reference implementation itself.
#include "tokenizer/wordpiece.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/wordpiece_tables.h"

#define MAX_WORD_CHARS 100 // max_input_chars_per_word: longer words become [UNK]
#define MAX_WORD_BYTES (MAX_WORD_CHARS * 4)

struct hl_wordpiece {
    char **tokens;      // owned, n_tokens NUL-terminated copies
    uint32_t *lens;     // owned, byte length of each token
    int32_t n_tokens;
    int32_t *slots;     // owned, open-addressing hash table of ids, -1 = empty
    uint32_t n_slots;   // a power of two, at least 2 * n_tokens
    uint32_t max_len;   // longest token in bytes
    bool lowercase, strip_accents;
    int32_t cls, sep, pad, unk, mask;
};

// ---- vocabulary lookup ----

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h;
}

// Id of the token with bytes s[0..n), or -1.
static int32_t lookup(const hl_wordpiece *wp, const char *s, size_t n) {
    if (n > wp->max_len) return -1;
    uint32_t mask = wp->n_slots - 1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = wp->slots[i];
        if (id < 0) return -1;
        if (wp->lens[id] == n && memcmp(wp->tokens[id], s, n) == 0) return id;
    }
}

// Inserts id; an equal token already present is replaced (the later id wins).
static void insert(hl_wordpiece *wp, int32_t id) {
    uint32_t mask = wp->n_slots - 1;
    const char *s = wp->tokens[id];
    size_t n = wp->lens[id];
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t old = wp->slots[i];
        if (old < 0 || (wp->lens[old] == n && memcmp(wp->tokens[old], s, n) == 0)) {
            wp->slots[i] = id;
            return;
        }
    }
}

static int32_t lookup_str(const hl_wordpiece *wp, const char *s) { return lookup(wp, s, strlen(s)); }

hl_wordpiece *hl_wordpiece_create(const char *const *tokens, const size_t *lens, int32_t n_tokens,
                                  bool lowercase, bool strip_accents, hl_error *err) {
    if (n_tokens < 1 || n_tokens > (1 << 28)) {
        hl_errorf(err, HL_ERR_INVAL, "wordpiece: bad vocabulary size %d", (int)n_tokens);
        return NULL;
    }
    hl_wordpiece *wp = hl_xcalloc(1, sizeof(*wp));
    wp->n_tokens = n_tokens;
    wp->tokens = hl_xcalloc((size_t)n_tokens, sizeof(*wp->tokens));
    wp->lens = hl_xcalloc((size_t)n_tokens, sizeof(*wp->lens));
    for (int32_t i = 0; i < n_tokens; i++) {
        if ((!tokens[i] && lens[i] > 0) || lens[i] > UINT32_MAX / 2) {
            hl_errorf(err, HL_ERR_INVAL, "wordpiece: token %d is NULL or too long", (int)i);
            hl_wordpiece_free(wp);
            return NULL;
        }
        wp->tokens[i] = hl_xstrndup(tokens[i] ? tokens[i] : "", lens[i]);
        wp->lens[i] = (uint32_t)lens[i];
        if (wp->lens[i] > wp->max_len) wp->max_len = wp->lens[i];
    }
    for (wp->n_slots = 16; wp->n_slots < 2u * (uint32_t)n_tokens;) wp->n_slots *= 2;
    wp->slots = hl_xmalloc(wp->n_slots * sizeof(*wp->slots));
    memset(wp->slots, 0xff, wp->n_slots * sizeof(*wp->slots));
    for (int32_t i = 0; i < n_tokens; i++) insert(wp, i);
    wp->lowercase = lowercase;
    wp->strip_accents = strip_accents;
    wp->unk = lookup_str(wp, "[UNK]");
    wp->cls = lookup_str(wp, "[CLS]");
    wp->sep = lookup_str(wp, "[SEP]");
    wp->pad = lookup_str(wp, "[PAD]");
    wp->mask = lookup_str(wp, "[MASK]");
    if (wp->unk < 0) {
        hl_errorf(err, HL_ERR_FORMAT, "wordpiece: the vocabulary has no [UNK] token");
        hl_wordpiece_free(wp);
        return NULL;
    }
    return wp;
}

hl_wordpiece *hl_wordpiece_create_from_vocab_txt(const char *path, bool lowercase,
                                                 bool strip_accents, hl_error *err) {
    size_t n_bytes = 0;
    char *text = hl_read_file(path, (size_t)1 << 30, &n_bytes, err);
    if (!text) return NULL;
    size_t cap = 1024, n = 0;
    const char **toks = hl_xmalloc(cap * sizeof(*toks));
    size_t *lens = hl_xmalloc(cap * sizeof(*lens));
    for (size_t pos = 0; pos < n_bytes;) {
        const char *nl = memchr(text + pos, '\n', n_bytes - pos);
        size_t end = nl ? (size_t)(nl - text) : n_bytes;
        size_t len = end - pos;
        if (len > 0 && text[pos + len - 1] == '\r') len--;
        if (n == cap) {
            cap *= 2;
            toks = hl_xrealloc(toks, cap * sizeof(*toks));
            lens = hl_xrealloc(lens, cap * sizeof(*lens));
        }
        toks[n] = text + pos;
        lens[n++] = len;
        pos = end + 1;
    }
    hl_wordpiece *wp = NULL;
    if (n > (size_t)INT32_MAX) hl_errorf(err, HL_ERR_FORMAT, "%s: too many lines", path);
    else wp = hl_wordpiece_create(toks, lens, (int32_t)n, lowercase, strip_accents, err);
    if (!wp) hl_error_wrap(err, "%s", path);
    free(toks);
    free(lens);
    free(text);
    return wp;
}

void hl_wordpiece_free(hl_wordpiece *wp) {
    if (!wp) return;
    for (int32_t i = 0; wp->tokens && i < wp->n_tokens; i++) free(wp->tokens[i]);
    free(wp->tokens);
    free(wp->lens);
    free(wp->slots);
    free(wp);
}

int32_t hl_wordpiece_cls(const hl_wordpiece *wp) { return wp->cls; }
int32_t hl_wordpiece_sep(const hl_wordpiece *wp) { return wp->sep; }
int32_t hl_wordpiece_pad(const hl_wordpiece *wp) { return wp->pad; }
int32_t hl_wordpiece_unk(const hl_wordpiece *wp) { return wp->unk; }
int32_t hl_wordpiece_mask(const hl_wordpiece *wp) { return wp->mask; }
int32_t hl_wordpiece_n_tokens(const hl_wordpiece *wp) { return wp->n_tokens; }

const char *hl_wordpiece_token(const hl_wordpiece *wp, int32_t id) {
    return id >= 0 && id < wp->n_tokens ? wp->tokens[id] : NULL;
}

// ---- encoding ----

typedef struct id_list {
    int32_t *ids;
    size_t n, cap;
} id_list;

static void push_id(id_list *l, int32_t id) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->ids = hl_xrealloc(l->ids, l->cap * sizeof(*l->ids));
    }
    l->ids[l->n++] = id;
}

// The word being collected: its UTF-8 bytes and where each character starts. Words longer than
// MAX_WORD_CHARS only count their characters (they become [UNK]).
typedef struct word {
    char bytes[MAX_WORD_BYTES + 2 + 4]; // room for a "##" prefix while matching
    uint16_t starts[MAX_WORD_CHARS + 1];
    size_t n_bytes, n_chars;
} word;

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// Decodes one code point at s[0..n) into *cp and returns its length; invalid or truncated
// sequences, overlongs and surrogates give *cp = 0xFFFD (dropped later) and length 1.
static size_t utf8_get(const unsigned char *s, size_t n, uint32_t *cp) {
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = s[0] < 0x80 ? 1 : s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] < 0xf5 ? 4 : 0;
    *cp = 0xfffd;
    if (len == 0 || len > n) return 1;
    uint32_t c = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 1;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min_cp[len] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) return 1;
    *cp = c;
    return len;
}

static void word_add(word *w, uint32_t cp) {
    w->n_chars++;
    if (w->n_chars > MAX_WORD_CHARS) return;
    w->starts[w->n_chars - 1] = (uint16_t)w->n_bytes;
    w->n_bytes += utf8_put(w->bytes + w->n_bytes, cp);
}

// Greedy longest-match-first split of w into pieces; the whole word is [UNK] when some
// position has no matching piece.
static void word_flush(const hl_wordpiece *wp, word *w, id_list *out) {
    if (w->n_chars == 0) return;
    if (w->n_chars > MAX_WORD_CHARS) {
        push_id(out, wp->unk);
        w->n_chars = w->n_bytes = 0;
        return;
    }
    size_t n_before = out->n;
    w->starts[w->n_chars] = (uint16_t)w->n_bytes;
    char piece[MAX_WORD_BYTES + 2];
    for (size_t start = 0; start < w->n_chars;) {
        int32_t id = -1;
        size_t end = w->n_chars;
        for (; end > start; end--) {
            size_t n = w->starts[end] - w->starts[start], pre = start > 0 ? 2 : 0;
            memcpy(piece, "##", pre);
            memcpy(piece + pre, w->bytes + w->starts[start], n);
            if ((id = lookup(wp, piece, n + pre)) >= 0) break;
        }
        if (id < 0) {
            out->n = n_before;
            push_id(out, wp->unk);
            break;
        }
        push_id(out, id);
        start = end;
    }
    w->n_chars = w->n_bytes = 0;
}

// Lower-case / accent-strip mapping of one character (at most 2 * HL_WPT_MAP_MAX^2 code points).
static int map_char(const hl_wordpiece *wp, uint32_t cp, uint32_t *out) {
    uint32_t stripped[HL_WPT_MAP_MAX];
    int n = 1;
    stripped[0] = cp;
    if (wp->strip_accents) n = hl_wordpiece_tables_strip(cp, stripped);
    if (!wp->lowercase) {
        memcpy(out, stripped, (size_t)n * sizeof(*out));
        return n;
    }
    int n_out = 0;
    for (int i = 0; i < n; i++) n_out += hl_wordpiece_tables_lower(stripped[i], out + n_out);
    return n_out;
}

// Feeds one (already mapped) character to the pre-tokenizer: whitespace ends a word,
// punctuation is a word of its own.
static void feed(const hl_wordpiece *wp, word *w, uint32_t cp, id_list *out) {
    uint8_t cls = hl_wordpiece_tables_class(cp);
    if (cls & HL_WPT_SPACE) {
        word_flush(wp, w, out);
        return;
    }
    if (cls & HL_WPT_PUNCT) {
        word_flush(wp, w, out);
        word_add(w, cp);
        word_flush(wp, w, out);
        return;
    }
    word_add(w, cp);
}

int hl_wordpiece_encode(const hl_wordpiece *wp, const char *text, size_t len, bool add_special,
                        int32_t **ids, size_t *n_ids, hl_error *err) {
    if (!text && len > 0) return hl_errorf(err, HL_ERR_INVAL, "wordpiece: NULL text");
    if (add_special && (wp->cls < 0 || wp->sep < 0))
        return hl_errorf(err, HL_ERR_INVAL, "wordpiece: the vocabulary has no [CLS] or [SEP]");
    id_list out = {0};
    word *w = hl_xcalloc(1, sizeof(*w));
    if (add_special) push_id(&out, wp->cls);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp, mapped[4 * HL_WPT_MAP_MAX];
        pos += utf8_get(s + pos, len - pos, &cp);
        uint8_t cls = hl_wordpiece_tables_class(cp);
        if (cls & HL_WPT_REMOVE) continue; // clean_text runs first: removed, not a boundary
        if (cls & HL_WPT_SPACE) {
            word_flush(wp, w, &out);
            continue;
        }
        int n = map_char(wp, cp, mapped);
        if (cls & HL_WPT_CJK) word_flush(wp, w, &out);
        for (int i = 0; i < n; i++) feed(wp, w, mapped[i], &out);
        if (cls & HL_WPT_CJK) word_flush(wp, w, &out);
    }
    word_flush(wp, w, &out);
    if (add_special) push_id(&out, wp->sep);
    free(w);
    if (!out.ids) out.ids = hl_xmalloc(sizeof(int32_t));
    *ids = out.ids;
    *n_ids = out.n;
    return HL_OK;
}
