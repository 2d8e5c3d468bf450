// bpe: byte-level BPE merges with a rank heap (see bpe.h).
#include "tokenizer/bpe.h"

#include <stdlib.h>

#define EMPTY_KEY UINT64_MAX
#define DEAD (-2) // symbol merged into its left neighbour

typedef struct pair_entry {
    uint64_t key;   // (left << 32) | right, EMPTY_KEY when unused
    int32_t rank;
    int32_t merged; // id of left+right
} pair_entry;

struct hl_bpe {
    const hl_vocab *vocab;  // borrowed, must outlive the hl_bpe
    hl_strmap *bytes_map;   // owned: decoded bytes -> id (non-control tokens), for ignore_merges
    int32_t byte_id[256];   // token of each single byte, -1 when none
    pair_entry *pairs;      // owned, n_pair_slots entries (power of two)
    size_t n_pair_slots;
    int32_t *merge_pairs;   // owned, (n_merges, 2): left and right id of each rank
    int32_t n_merges;
    bool ignore_merges;
};

struct hl_bpe_scratch {
    int32_t *sym;  // owned, (cap): token id of each symbol, DEAD or -1 (byte without token)
    int32_t *prev; // owned, (cap)
    int32_t *next; // owned, (cap)
    uint64_t *heap; // owned, (heap_cap): (rank << 32) | position, min-heap
    size_t cap, heap_n, heap_cap;
};

// ---- merge table ----

static uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static const pair_entry *pair_find(const hl_bpe *b, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right);
    size_t mask = b->n_pair_slots - 1;
    for (size_t i = hl_hash64(key) & mask;; i = (i + 1) & mask) {
        const pair_entry *e = &b->pairs[i];
        if (e->key == key) return e;
        if (e->key == EMPTY_KEY) return NULL;
    }
}

// Adds a pair unless present; false for a repeat.
static bool pair_add(hl_bpe *b, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = pair_key(left, right);
    size_t mask = b->n_pair_slots - 1;
    size_t i = hl_hash64(key) & mask;
    while (b->pairs[i].key != EMPTY_KEY) {
        if (b->pairs[i].key == key) return false;
        i = (i + 1) & mask;
    }
    b->pairs[i] = (pair_entry){.key = key, .rank = rank, .merged = merged};
    return true;
}

// Parses one merge line into its ids; false when a part is not a token or it repeats.
static bool add_merge(hl_bpe *b, const char *line, size_t len, char **join, size_t *join_cap) {
    const char *sp = len > 1 ? memchr(line + 1, ' ', len - 1) : NULL;
    size_t nl = (size_t)(sp - line), nr = len - nl - 1;
    int32_t left = hl_strmap_get(b->vocab->text_map, line, nl);
    int32_t right = hl_strmap_get(b->vocab->text_map, sp + 1, nr);
    if (left < 0 || right < 0) return false;
    if (nl + nr > *join_cap) {
        *join_cap = (nl + nr) * 2;
        *join = hl_xrealloc(*join, *join_cap);
    }
    memcpy(*join, line, nl);
    memcpy(*join + nl, sp + 1, nr);
    int32_t merged = hl_strmap_get(b->vocab->text_map, *join, nl + nr);
    if (merged < 0 || !pair_add(b, left, right, b->n_merges, merged)) return false;
    b->merge_pairs[2 * b->n_merges] = left;
    b->merge_pairs[2 * b->n_merges + 1] = right;
    b->n_merges++;
    return true;
}

static int build_merges(hl_bpe *b, const char *const *merges, const size_t *lens, int32_t n,
                        hl_error *err) {
    b->n_pair_slots = 16;
    while (b->n_pair_slots < (size_t)n * 2) b->n_pair_slots *= 2;
    b->pairs = hl_xmalloc(b->n_pair_slots * sizeof *b->pairs);
    for (size_t i = 0; i < b->n_pair_slots; i++) b->pairs[i].key = EMPTY_KEY;
    b->merge_pairs = hl_xmalloc(((size_t)n + 1) * 2 * sizeof *b->merge_pairs);
    char *join = NULL;
    size_t join_cap = 0;
    int32_t n_skipped = 0;
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] < 3 || !memchr(merges[i] + 1, ' ', lens[i] - 1)) {
            free(join);
            return hl_errorf(err, HL_ERR_FORMAT, "merge %d is not 'left right': '%.*s'", i,
                             (int)(lens[i] < 64 ? lens[i] : 64), merges[i]);
        }
        if (!add_merge(b, merges[i], lens[i], &join, &join_cap)) n_skipped++;
    }
    free(join);
    if (n_skipped)
        hl_log(HL_LOG_WARN, "bpe: skipped %d of %d merges (unknown token or repeated pair)",
               n_skipped, n);
    return HL_OK;
}

// ---- construction ----

static void build_bytes_map(hl_bpe *b) {
    const hl_vocab *v = b->vocab;
    b->bytes_map = hl_strmap_create((size_t)v->n_tokens);
    for (int i = 0; i < 256; i++) b->byte_id[i] = -1;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        if (v->type[id] == HL_TOKEN_CONTROL || v->type[id] == HL_TOKEN_UNKNOWN) continue;
        size_t len;
        const char *bytes = hl_vocab_bytes(v, id, &len);
        if (len == 0 || !hl_strmap_put(b->bytes_map, bytes, len, id)) continue;
        if (len == 1) b->byte_id[(uint8_t)bytes[0]] = id;
    }
}

hl_bpe *hl_bpe_create(const hl_vocab *vocab, const char *const *merges, const size_t *merge_lens,
                      int32_t n_merges, bool ignore_merges, hl_error *err) {
    if (n_merges < 0) {
        hl_errorf(err, HL_ERR_INVAL, "bpe: negative merge count");
        return NULL;
    }
    hl_bpe *b = hl_xcalloc(1, sizeof *b);
    b->vocab = vocab;
    b->ignore_merges = ignore_merges;
    build_bytes_map(b);
    if (build_merges(b, merges, merge_lens, n_merges, err) != HL_OK) {
        hl_bpe_free(b);
        return NULL;
    }
    return b;
}

void hl_bpe_free(hl_bpe *b) {
    if (!b) return;
    hl_strmap_free(b->bytes_map);
    free(b->pairs);
    free(b->merge_pairs);
    free(b);
}

int32_t hl_bpe_n_merges(const hl_bpe *b) { return b->n_merges; }

void hl_bpe_merge_at(const hl_bpe *b, int32_t rank, int32_t *left, int32_t *right) {
    HL_ASSERT(rank >= 0 && rank < b->n_merges);
    *left = b->merge_pairs[2 * rank];
    *right = b->merge_pairs[2 * rank + 1];
}

// ---- encoding ----

hl_bpe_scratch *hl_bpe_scratch_create(void) { return hl_xcalloc(1, sizeof(hl_bpe_scratch)); }

void hl_bpe_scratch_free(hl_bpe_scratch *s) {
    if (!s) return;
    free(s->sym);
    free(s->prev);
    free(s->next);
    free(s->heap);
    free(s);
}

static void scratch_reserve(hl_bpe_scratch *s, size_t n) {
    if (n <= s->cap) return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    s->sym = hl_xrealloc(s->sym, cap * sizeof *s->sym);
    s->prev = hl_xrealloc(s->prev, cap * sizeof *s->prev);
    s->next = hl_xrealloc(s->next, cap * sizeof *s->next);
    s->cap = cap;
}

static void heap_push(hl_bpe_scratch *s, uint64_t key) {
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
        s->heap = hl_xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = s->heap_n++;
    while (i > 0 && s->heap[(i - 1) / 2] > key) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = key;
}

static uint64_t heap_pop(hl_bpe_scratch *s) {
    uint64_t top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && s->heap[c + 1] < s->heap[c]) c++;
        if (s->heap[c] >= last) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

// Queues the pair starting at symbol pos (whose right neighbour is next[pos]) if it merges.
static void queue_pair(const hl_bpe *b, hl_bpe_scratch *s, int32_t pos) {
    int32_t nx = s->next[pos];
    if (nx < 0 || s->sym[pos] < 0 || s->sym[nx] < 0) return;
    const pair_entry *e = pair_find(b, s->sym[pos], s->sym[nx]);
    if (e) heap_push(s, ((uint64_t)e->rank << 32) | (uint32_t)pos);
}

// hot: runs once per piece that is not a whole token.
static void merge_all(const hl_bpe *b, hl_bpe_scratch *s) {
    while (s->heap_n) {
        uint64_t top = heap_pop(s);
        int32_t pos = (int32_t)(top & 0xffffffffu), rank = (int32_t)(top >> 32);
        int32_t nx = s->next[pos];
        if (s->sym[pos] < 0 || nx < 0 || s->sym[nx] < 0) continue;
        const pair_entry *e = pair_find(b, s->sym[pos], s->sym[nx]);
        if (!e || e->rank != rank) continue; // stale: a neighbour changed since it was queued
        s->sym[pos] = e->merged;
        s->sym[nx] = DEAD;
        s->next[pos] = s->next[nx];
        if (s->next[nx] >= 0) s->prev[s->next[nx]] = pos;
        if (s->prev[pos] >= 0) queue_pair(b, s, s->prev[pos]);
        queue_pair(b, s, pos);
    }
}

int hl_bpe_encode_piece(const hl_bpe *b, hl_bpe_scratch *s, const char *piece, size_t len,
                        hl_tokens *out, hl_error *err) {
    if (len > INT32_MAX) return hl_errorf(err, HL_ERR_INVAL, "bpe: piece of %zu bytes", len);
    if (len == 0) return HL_OK;
    if (b->ignore_merges || len == 1) {
        int32_t id = hl_strmap_get(b->bytes_map, piece, len);
        if (id >= 0) {
            hl_tokens_push(out, id);
            return HL_OK;
        }
    }
    scratch_reserve(s, len);
    int32_t n = (int32_t)len;
    for (int32_t i = 0; i < n; i++) {
        s->sym[i] = b->byte_id[(uint8_t)piece[i]];
        s->prev[i] = i - 1;
        s->next[i] = i + 1 < n ? i + 1 : -1;
    }
    s->heap_n = 0;
    for (int32_t i = 0; i + 1 < n; i++) queue_pair(b, s, i);
    merge_all(b, s);
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        if (s->sym[i] >= 0) hl_tokens_push(out, s->sym[i]); // a byte without token is dropped
    }
    return HL_OK;
}
