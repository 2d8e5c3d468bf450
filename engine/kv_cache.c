// kv_cache: paged K/V pool, reference counts, block tables and the prefix cache (see kv_cache.h).
#include "engine/kv_cache.h"

#include <stdlib.h>

#include "engine/quant.h"

#define HASH_ROOT 0x68616c7961726421ULL // parent key of a sequence's first block

struct hl_kv_cache {
    hl_backend *be;       // borrowed
    hl_kv_geom geom;
    int n_layers;
    hl_kv_layer *layers;  // (n_layers) k/v pools from be->ops->alloc
    int32_t *ref;         // (n_blocks) references held by sequences
    // free blocks: a stack, the top is handed out next
    int32_t *free_ids;    // (n_blocks)
    int n_free;
    // prefix cache: registered blocks, keyed by chained hash (open addressing, linear probing)
    uint8_t *reg;         // (n_blocks) 1 when registered
    uint64_t *key;        // (n_blocks) chained hash of a registered block
    uint64_t *parent;     // (n_blocks) its parent's chained hash (HASH_ROOT for position 0)
    int32_t *tokens;      // (n_blocks, HL_KV_BLOCK) its tokens, compared on lookup
    int32_t *table;       // (table_mask + 1) block ids, -1 = empty slot
    uint32_t table_mask;
    // registered blocks without references, least recently used first (evicted first)
    int32_t *lru_prev, *lru_next; // (n_blocks) links; -1 ends
    int32_t lru_head, lru_tail;
    int n_lru;
    void *staging;        // (one block of one layer's K) host copy buffer for fork; lazy
};

static size_t elem_bytes(int kv_type) {
    if (kv_type == HL_DTYPE_I8) return 1;
    return kv_type == HL_DTYPE_F32 ? 4 : 2;
}

// Bytes of one block's K (or V) elements in one layer.
static size_t code_bytes(const hl_kv_geom *g) {
    return (size_t)g->n_kv_heads * HL_KV_BLOCK * (size_t)g->head_dim * elem_bytes(g->kv_type);
}

// Bytes of one block's K (or V) row scales in one layer: one float per (head, token), int8 only.
static size_t scale_bytes(const hl_kv_geom *g) {
    return g->kv_type == HL_DTYPE_I8 ? (size_t)g->n_kv_heads * HL_KV_BLOCK * sizeof(float) : 0;
}

size_t hl_kv_cache_block_bytes(int n_layers, const hl_kv_geom *g) {
    return 2 * (size_t)n_layers * (code_bytes(g) + scale_bytes(g));
}

int hl_kv_cache_dtype_parse(const char *name, int *kv_type, hl_error *err) {
    if (name && (strcmp(name, "f16") == 0 || strcmp(name, "auto") == 0)) *kv_type = HL_DTYPE_F16;
    else if (name && strcmp(name, "f32") == 0) *kv_type = HL_DTYPE_F32;
    else if (name && strcmp(name, "int8") == 0) *kv_type = HL_DTYPE_I8;
    else
        return hl_errorf(err, HL_ERR_INVAL, "unknown KV cache dtype '%s' (f16, f32 or int8)", name ? name : "");
    return HL_OK;
}

const char *hl_kv_cache_dtype_name(int kv_type) {
    switch (kv_type) {
    case HL_DTYPE_F16: return "f16";
    case HL_DTYPE_F32: return "f32";
    case HL_DTYPE_I8: return "int8";
    default: return "?";
    }
}

static int check_geom(hl_backend *be, int n_layers, const hl_kv_geom *g, hl_error *err) {
    if (n_layers <= 0 || g->n_blocks <= 0 || g->n_blocks > (1 << 28) || g->n_kv_heads <= 0 || g->head_dim <= 0)
        return hl_errorf(err, HL_ERR_INVAL, "kv cache: bad geometry (%d layers, %d blocks, %d heads, dim %d)",
                         n_layers, g->n_blocks, g->n_kv_heads, g->head_dim);
    if (g->kv_type != HL_DTYPE_F16 && g->kv_type != HL_DTYPE_F32 && g->kv_type != HL_DTYPE_I8)
        return hl_errorf(err, HL_ERR_INVAL, "kv cache: type %s is not supported", hl_quant_name(g->kv_type));
    if (!be->ops->supports(be, HL_OP_ATTENTION, g->kv_type) || !be->ops->supports(be, HL_OP_ROPE_KV, g->kv_type))
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "kv cache: backend %s has no %s attention", be->ops->name,
                         hl_quant_name(g->kv_type));
    return HL_OK;
}

static void alloc_tables(hl_kv_cache *kv, int n) {
    const size_t nb = (size_t)n;
    kv->ref = hl_xcalloc(nb, sizeof(int32_t));
    kv->free_ids = hl_xmalloc(sizeof(int32_t) * nb);
    kv->reg = hl_xcalloc(nb, 1);
    kv->key = hl_xcalloc(nb, sizeof(uint64_t));
    kv->parent = hl_xcalloc(nb, sizeof(uint64_t));
    kv->tokens = hl_xcalloc(nb * HL_KV_BLOCK, sizeof(int32_t));
    kv->lru_prev = hl_xmalloc(sizeof(int32_t) * nb);
    kv->lru_next = hl_xmalloc(sizeof(int32_t) * nb);
    uint32_t cap = 16;
    while (cap < 2 * (uint32_t)n) cap *= 2;
    kv->table = hl_xmalloc(sizeof(int32_t) * cap);
    memset(kv->table, 0xff, sizeof(int32_t) * cap); // -1
    kv->table_mask = cap - 1;
    kv->lru_head = kv->lru_tail = -1;
    // Lowest ids on top of the stack: a fresh cache hands out 0, 1, 2, ...
    for (int i = 0; i < n; i++) kv->free_ids[i] = n - 1 - i;
    kv->n_free = n;
}

// One layer's K and V pools (and, for int8, their row scales) from the backend.
static int alloc_layer(hl_kv_cache *kv, hl_kv_layer *l, size_t n_bytes, size_t n_scale_bytes) {
    hl_backend *be = kv->be;
    l->k = be->ops->alloc(be, n_bytes);
    l->v = be->ops->alloc(be, n_bytes);
    if (n_scale_bytes > 0) {
        l->k_scale = be->ops->alloc(be, n_scale_bytes);
        l->v_scale = be->ops->alloc(be, n_scale_bytes);
        if (!l->k_scale || !l->v_scale) return HL_ERR_NOMEM;
    }
    return l->k && l->v ? HL_OK : HL_ERR_NOMEM;
}

hl_kv_cache *hl_kv_cache_create(hl_backend *be, int n_layers, const hl_kv_geom *geom, hl_error *err) {
    if (check_geom(be, n_layers, geom, err) != HL_OK) return NULL;
    hl_kv_cache *kv = hl_xcalloc(1, sizeof(*kv));
    kv->be = be;
    kv->geom = *geom;
    kv->n_layers = n_layers;
    kv->layers = hl_xcalloc((size_t)n_layers, sizeof(hl_kv_layer));
    alloc_tables(kv, geom->n_blocks);
    size_t n_bytes, n_scale_bytes;
    if (!hl_mul_ok(code_bytes(geom), (size_t)geom->n_blocks, &n_bytes) ||
        !hl_mul_ok(scale_bytes(geom), (size_t)geom->n_blocks, &n_scale_bytes)) {
        hl_errorf(err, HL_ERR_NOMEM, "kv cache: %d blocks overflow the address space", geom->n_blocks);
        hl_kv_cache_free(kv);
        return NULL;
    }
    for (int il = 0; il < n_layers; il++) {
        if (alloc_layer(kv, &kv->layers[il], n_bytes, n_scale_bytes) != HL_OK) {
            hl_errorf(err, HL_ERR_NOMEM, "kv cache: cannot allocate %zu bytes for layer %d",
                      2 * (n_bytes + n_scale_bytes), il);
            hl_kv_cache_free(kv);
            return NULL;
        }
    }
    return kv;
}

void hl_kv_cache_free(hl_kv_cache *kv) {
    if (!kv) return;
    for (int il = 0; il < kv->n_layers; il++) {
        kv->be->ops->release(kv->be, kv->layers[il].k);
        kv->be->ops->release(kv->be, kv->layers[il].v);
        kv->be->ops->release(kv->be, kv->layers[il].k_scale);
        kv->be->ops->release(kv->be, kv->layers[il].v_scale);
    }
    free(kv->layers);
    free(kv->ref);
    free(kv->free_ids);
    free(kv->reg);
    free(kv->key);
    free(kv->parent);
    free(kv->tokens);
    free(kv->table);
    free(kv->lru_prev);
    free(kv->lru_next);
    free(kv->staging);
    free(kv);
}

const hl_kv_geom *hl_kv_cache_geom(const hl_kv_cache *kv) { return &kv->geom; }

const hl_kv_layer *hl_kv_cache_layer(const hl_kv_cache *kv, int il) {
    HL_ASSERT(il >= 0 && il < kv->n_layers);
    return &kv->layers[il];
}

int hl_kv_cache_n_free(const hl_kv_cache *kv) { return kv->n_free + kv->n_lru; }
int hl_kv_cache_n_cached(const hl_kv_cache *kv) { return kv->n_lru; }
int hl_kv_cache_n_used(const hl_kv_cache *kv) { return kv->geom.n_blocks - kv->n_free - kv->n_lru; }

int hl_kv_cache_refcount(const hl_kv_cache *kv, int32_t id) {
    HL_ASSERT(id >= 0 && id < kv->geom.n_blocks);
    return kv->ref[id];
}

// ---- LRU of unreferenced registered blocks ----

static void lru_push(hl_kv_cache *kv, int32_t id) {
    kv->lru_prev[id] = kv->lru_tail;
    kv->lru_next[id] = -1;
    if (kv->lru_tail >= 0) kv->lru_next[kv->lru_tail] = id;
    else kv->lru_head = id;
    kv->lru_tail = id;
    kv->n_lru++;
}

static void lru_remove(hl_kv_cache *kv, int32_t id) {
    const int32_t p = kv->lru_prev[id], n = kv->lru_next[id];
    if (p >= 0) kv->lru_next[p] = n;
    else kv->lru_head = n;
    if (n >= 0) kv->lru_prev[n] = p;
    else kv->lru_tail = p;
    kv->n_lru--;
}

// ---- hash table of registered blocks ----

static uint64_t block_key(uint64_t parent, const int32_t *t) {
    uint64_t h = parent;
    for (int i = 0; i < HL_KV_BLOCK; i++) h = hl_hash64(h ^ (uint64_t)(uint32_t)t[i]);
    return h;
}

// The registered block with this key, parent and tokens, or -1.
static int32_t table_find(const hl_kv_cache *kv, uint64_t key, uint64_t parent, const int32_t *t) {
    for (uint32_t i = (uint32_t)key & kv->table_mask;; i = (i + 1) & kv->table_mask) {
        const int32_t id = kv->table[i];
        if (id < 0) return -1;
        if (kv->key[id] == key && kv->parent[id] == parent &&
            memcmp(kv->tokens + (size_t)id * HL_KV_BLOCK, t, sizeof(int32_t) * HL_KV_BLOCK) == 0)
            return id;
    }
}

static void table_insert(hl_kv_cache *kv, int32_t id, uint64_t key, uint64_t parent, const int32_t *t) {
    kv->key[id] = key;
    kv->parent[id] = parent;
    memcpy(kv->tokens + (size_t)id * HL_KV_BLOCK, t, sizeof(int32_t) * HL_KV_BLOCK);
    kv->reg[id] = 1;
    uint32_t i = (uint32_t)key & kv->table_mask;
    while (kv->table[i] >= 0) i = (i + 1) & kv->table_mask;
    kv->table[i] = id;
}

// True when the entry whose home slot is k may stay at slot j once slot i (cyclically before
// j) is emptied: k lies cyclically in (i, j].
static bool stays(uint32_t i, uint32_t j, uint32_t k) {
    return i <= j ? (k > i && k <= j) : (k > i || k <= j);
}

// Removes block id from the table (backward-shift deletion keeps probe chains intact).
static void table_remove(hl_kv_cache *kv, int32_t id) {
    uint32_t i = (uint32_t)kv->key[id] & kv->table_mask;
    while (kv->table[i] != id) i = (i + 1) & kv->table_mask;
    for (uint32_t j = (i + 1) & kv->table_mask; kv->table[j] >= 0; j = (j + 1) & kv->table_mask) {
        if (stays(i, j, (uint32_t)kv->key[kv->table[j]] & kv->table_mask)) continue;
        kv->table[i] = kv->table[j];
        i = j;
    }
    kv->table[i] = -1;
    kv->reg[id] = 0;
}

// ---- blocks ----

int32_t hl_kv_cache_alloc_block(hl_kv_cache *kv) {
    int32_t id;
    if (kv->n_free > 0) {
        id = kv->free_ids[--kv->n_free];
    } else if (kv->lru_head >= 0) { // evict the least recently used cached block
        id = kv->lru_head;
        lru_remove(kv, id);
        table_remove(kv, id);
    } else {
        return -1;
    }
    kv->ref[id] = 1;
    return id;
}

void hl_kv_cache_free_block(hl_kv_cache *kv, int32_t id) {
    HL_ASSERT(id >= 0 && id < kv->geom.n_blocks && kv->ref[id] > 0);
    if (--kv->ref[id] > 0) return;
    if (kv->reg[id]) {
        lru_push(kv, id);
        return;
    }
    kv->free_ids[kv->n_free++] = id;
}

static void seq_grow(hl_kv_seq *seq, int need) {
    if (need <= seq->cap) return;
    seq->cap = need > 2 * seq->cap ? need : 2 * seq->cap;
    seq->blocks = hl_xrealloc(seq->blocks, sizeof(int32_t) * (size_t)seq->cap);
}

int hl_kv_cache_seq_reserve(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens, hl_error *err) {
    if (n_tokens < 0) return hl_errorf(err, HL_ERR_INVAL, "kv cache: %d tokens", n_tokens);
    int need = (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    if (need <= seq->n_blocks) return HL_OK;
    if (need - seq->n_blocks > hl_kv_cache_n_free(kv))
        return hl_errorf(err, HL_ERR_BUSY, "kv cache: %d more blocks needed for %d tokens, %d free",
                         need - seq->n_blocks, n_tokens, hl_kv_cache_n_free(kv));
    seq_grow(seq, need);
    while (seq->n_blocks < need) seq->blocks[seq->n_blocks++] = hl_kv_cache_alloc_block(kv);
    return HL_OK;
}

void hl_kv_cache_seq_truncate(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens) {
    int keep = n_tokens <= 0 ? 0 : (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    while (seq->n_blocks > keep) hl_kv_cache_free_block(kv, seq->blocks[--seq->n_blocks]);
    const int n_full = n_tokens <= 0 ? 0 : n_tokens / HL_KV_BLOCK;
    if (n_full < seq->n_blocks) { // a partial last block will be written again
        const int32_t id = seq->blocks[n_full];
        HL_ASSERT(kv->ref[id] == 1 || !kv->reg[id]);
        if (kv->reg[id]) table_remove(kv, id);
    }
    if (seq->n_hashed > n_full) { // the chain's hash at n_full is not kept: start over
        seq->n_hashed = 0;
        seq->hash = 0;
    }
}

void hl_kv_cache_seq_release(hl_kv_cache *kv, hl_kv_seq *seq) {
    while (seq->n_blocks > 0) hl_kv_cache_free_block(kv, seq->blocks[--seq->n_blocks]);
    free(seq->blocks);
    memset(seq, 0, sizeof(*seq));
}

// ---- prefix cache ----

int hl_kv_cache_prefix_lookup(const hl_kv_cache *kv, const int32_t *tokens, int n_tokens, int *n_unused) {
    int n = 0, unused = 0;
    uint64_t h = HASH_ROOT;
    for (int b = 0; (b + 1) * HL_KV_BLOCK <= n_tokens; b++) {
        const int32_t *t = tokens + (size_t)b * HL_KV_BLOCK;
        const uint64_t parent = h;
        h = block_key(parent, t);
        const int32_t id = table_find(kv, h, parent, t);
        if (id < 0) break;
        unused += kv->ref[id] == 0;
        n++;
    }
    if (n_unused) *n_unused = unused;
    return n;
}

int hl_kv_cache_seq_match(hl_kv_cache *kv, hl_kv_seq *seq, const int32_t *tokens, int n_blocks) {
    HL_ASSERT(seq->n_blocks == 0);
    seq_grow(seq, n_blocks);
    uint64_t h = HASH_ROOT;
    for (int b = 0; b < n_blocks; b++) {
        const int32_t *t = tokens + (size_t)b * HL_KV_BLOCK;
        const uint64_t key = block_key(h, t);
        const int32_t id = table_find(kv, key, h, t);
        if (id < 0) break;
        if (kv->ref[id]++ == 0) lru_remove(kv, id);
        seq->blocks[seq->n_blocks++] = id;
        h = key;
    }
    seq->n_hashed = seq->n_blocks;
    seq->hash = h;
    return seq->n_blocks * HL_KV_BLOCK;
}

void hl_kv_cache_seq_commit(hl_kv_cache *kv, hl_kv_seq *seq, const int32_t *tokens, int n_computed) {
    int n_full = n_computed / HL_KV_BLOCK;
    if (n_full > seq->n_blocks) n_full = seq->n_blocks;
    uint64_t h = seq->n_hashed > 0 ? seq->hash : HASH_ROOT;
    for (int b = seq->n_hashed; b < n_full; b++) {
        const int32_t *t = tokens + (size_t)b * HL_KV_BLOCK;
        const uint64_t parent = h;
        h = block_key(parent, t);
        const int32_t id = seq->blocks[b];
        if (!kv->reg[id] && table_find(kv, h, parent, t) < 0) table_insert(kv, id, h, parent, t);
    }
    if (n_full > seq->n_hashed) {
        seq->n_hashed = n_full;
        seq->hash = h;
    }
}

// Copies block src of a pool whose blocks are bb bytes into block dst, through the staging
// buffer (host memory: the backend interface has no device-to-device copy).
static int copy_pool_block(hl_kv_cache *kv, void *pool, size_t bb, int32_t dst, int32_t src, hl_error *err) {
    char *base = pool;
    int rc = kv->be->ops->download(kv->be, kv->staging, base + (size_t)src * bb, bb, err);
    if (rc != HL_OK) return rc;
    return kv->be->ops->upload(kv->be, base + (size_t)dst * bb, kv->staging, bb, err);
}

// Copies block src's K and V (and int8 row scales) in every layer into block dst; this runs
// once per fork.
static int copy_block(hl_kv_cache *kv, int32_t dst, int32_t src, hl_error *err) {
    const size_t bb = code_bytes(&kv->geom), sb = scale_bytes(&kv->geom);
    if (!kv->staging) kv->staging = hl_xmalloc(bb > sb ? bb : sb);
    for (int il = 0; il < kv->n_layers; il++) {
        const hl_kv_layer *l = &kv->layers[il];
        int rc = copy_pool_block(kv, l->k, bb, dst, src, err);
        if (rc == HL_OK) rc = copy_pool_block(kv, l->v, bb, dst, src, err);
        if (rc == HL_OK && sb > 0) rc = copy_pool_block(kv, l->k_scale, sb, dst, src, err);
        if (rc == HL_OK && sb > 0) rc = copy_pool_block(kv, l->v_scale, sb, dst, src, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

int hl_kv_cache_seq_fork(hl_kv_cache *kv, hl_kv_seq *dst, const hl_kv_seq *src, int n_tokens, hl_error *err) {
    HL_ASSERT(dst->n_blocks == 0);
    const int need = (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK, n_full = n_tokens / HL_KV_BLOCK;
    if (n_tokens < 0 || need > src->n_blocks)
        return hl_errorf(err, HL_ERR_INVAL, "kv cache: fork of %d tokens from %d blocks", n_tokens, src->n_blocks);
    int32_t copy = -1;
    if (need > n_full) {
        copy = hl_kv_cache_alloc_block(kv);
        if (copy < 0) return hl_errorf(err, HL_ERR_BUSY, "kv cache: no block left to fork a sequence");
        int rc = copy_block(kv, copy, src->blocks[n_full], err);
        if (rc != HL_OK) {
            hl_kv_cache_free_block(kv, copy);
            return rc;
        }
    }
    seq_grow(dst, need);
    for (int b = 0; b < n_full; b++) {
        kv->ref[src->blocks[b]]++;
        dst->blocks[b] = src->blocks[b];
    }
    if (copy >= 0) dst->blocks[n_full] = copy;
    dst->n_blocks = need;
    dst->n_hashed = src->n_hashed <= n_full ? src->n_hashed : 0;
    dst->hash = dst->n_hashed > 0 ? src->hash : 0;
    return HL_OK;
}

void hl_kv_cache_shuffle_free(hl_kv_cache *kv, uint64_t seed) {
    hl_rng rng = {seed};
    for (int i = kv->n_free - 1; i > 0; i--) { // Fisher-Yates
        int j = (int)(hl_rng_next(&rng) % (uint64_t)(i + 1));
        int32_t t = kv->free_ids[i];
        kv->free_ids[i] = kv->free_ids[j];
        kv->free_ids[j] = t;
    }
}
