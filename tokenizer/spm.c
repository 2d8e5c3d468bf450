// spm: score-ordered merges over UTF-8 characters, byte fallback (see spm.h).
#include "tokenizer/spm.h"

#include <stdio.h>
#include <stdlib.h>

#include "tokenizer/unicode.h"

struct hl_spm {
    const hl_vocab *vocab; // borrowed, must outlive the hl_spm
    int32_t byte_id[256];  // <0xXX> token of each byte, -1 when none
    int32_t unk_id;
};

typedef struct symbol {
    int32_t off;  // into the escaped text
    int32_t n;    // bytes; 0 once merged into the left neighbour
    int32_t prev, next;
} symbol;

typedef struct bigram {
    float score;
    int32_t left, right; // symbol indexes
    int32_t size;        // bytes of left + right when queued (stale if it changed)
} bigram;

typedef struct work {
    const hl_spm *sp;
    const char *text; // escaped text, owned by the caller
    symbol *sym;      // owned
    bigram *heap;     // owned, max-heap by (score, -left)
    size_t heap_n, heap_cap;
} work;

hl_spm *hl_spm_create(const hl_vocab *vocab, int32_t unk_id, hl_error *err) {
    if (unk_id >= vocab->n_tokens) {
        hl_errorf(err, HL_ERR_INVAL, "spm: unk id %d out of range", unk_id);
        return NULL;
    }
    hl_spm *sp = hl_xcalloc(1, sizeof *sp);
    sp->vocab = vocab;
    sp->unk_id = unk_id;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        sp->byte_id[b] = hl_strmap_get(vocab->text_map, name, 6);
    }
    return sp;
}

void hl_spm_free(hl_spm *sp) { free(sp); }

static bool bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(work *w, bigram g) {
    if (w->heap_n == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
        w->heap = hl_xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    size_t i = w->heap_n++;
    while (i > 0 && bigram_before(&g, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = g;
}

static bigram heap_pop(work *w) {
    bigram top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bigram_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

// Queues symbols left and right if their joined text is a token.
static void try_bigram(work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t id = hl_strmap_get(w->sp->vocab->text_map, w->text + l->off, (size_t)(l->n + r->n));
    if (id < 0) return;
    heap_push(w, (bigram){.score = w->sp->vocab->score[id], .left = left, .right = right,
                          .size = l->n + r->n});
}

// '▁' for every space, one more in front when asked. Caller frees.
static char *escape(const char *text, size_t len, bool prefix, size_t *out_len) {
    char *s = hl_xmalloc(3 * len + 4);
    size_t o = 0;
    if (prefix) {
        memcpy(s, "\xE2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            s[o++] = text[i];
        }
    }
    *out_len = o;
    return s;
}

static int emit_symbol(const work *w, const symbol *s, hl_tokens *out, hl_error *err) {
    const hl_spm *sp = w->sp;
    int32_t id = hl_strmap_get(sp->vocab->text_map, w->text + s->off, (size_t)s->n);
    if (id >= 0) {
        hl_tokens_push(out, id);
        return HL_OK;
    }
    for (int32_t j = 0; j < s->n; j++) {
        uint8_t byte = (uint8_t)w->text[s->off + j];
        id = sp->byte_id[byte] >= 0 ? sp->byte_id[byte] : sp->unk_id;
        if (id < 0)
            return hl_errorf(err, HL_ERR_UNSUPPORTED, "spm: byte 0x%02x has no token and no unk",
                             byte);
        // unk covers the whole character, not each of its bytes (llama.cpp, SentencePiece)
        hl_tokens_push(out, id);
        if (sp->byte_id[byte] < 0) break;
    }
    return HL_OK;
}

// Splits into one symbol per UTF-8 character (invalid bytes alone) and queues every pair.
static int32_t init_symbols(work *w, size_t len) {
    int32_t n = 0;
    size_t i = 0;
    while (i < len) {
        size_t clen = 1;
        if (hl_utf8_check((const uint8_t *)w->text + i, len - i, &clen) != HL_UTF8_VALID) clen = 1;
        w->sym[n] = (symbol){.off = (int32_t)i, .n = (int32_t)clen, .prev = n - 1, .next = n + 1};
        n++;
        i += clen;
    }
    if (n) w->sym[n - 1].next = -1;
    for (int32_t k = 0; k + 1 < n; k++) try_bigram(w, k, k + 1);
    return n;
}

int hl_spm_encode(const hl_spm *sp, const char *text, size_t len, bool add_space_prefix,
                  hl_tokens *out, hl_error *err) {
    if (len > (1u << 30)) return hl_errorf(err, HL_ERR_INVAL, "spm: text of %zu bytes", len);
    if (len == 0 && !add_space_prefix) return HL_OK;
    size_t n_esc;
    work w = {.sp = sp};
    char *esc = escape(text, len, add_space_prefix, &n_esc);
    w.text = esc;
    w.sym = hl_xmalloc((n_esc + 1) * sizeof *w.sym);
    int32_t n = init_symbols(&w, n_esc);
    while (w.heap_n) { // hot: one pop per merge
        bigram g = heap_pop(&w);
        symbol *l = &w.sym[g.left], *r = &w.sym[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; // stale
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w.sym[r->next].prev = g.left;
        try_bigram(&w, l->prev, g.left);
        try_bigram(&w, g.left, l->next);
    }
    int rc = HL_OK;
    for (int32_t i = 0; i >= 0 && n > 0 && rc == HL_OK; i = w.sym[i].next)
        rc = emit_symbol(&w, &w.sym[i], out, err);
    free(esc);
    free(w.sym);
    free(w.heap);
    return rc;
}
