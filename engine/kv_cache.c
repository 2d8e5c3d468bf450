// kv_cache: paged K/V pool and block tables (see kv_cache.h).
#include "engine/kv_cache.h"

#include <stdlib.h>

#include "engine/quant.h"

struct hl_kv_cache {
    hl_backend *be;       // borrowed
    hl_kv_geom geom;
    int n_layers;
    hl_kv_layer *layers;  // (n_layers) k/v pools from be->ops->alloc
    int32_t *free_ids;    // (geom.n_blocks) stack of free ids; the top is handed out next
    int n_free;
    uint8_t *is_free;     // (geom.n_blocks) 1 when free: catches double frees
};

static size_t elem_bytes(int kv_type) { return kv_type == HL_DTYPE_F32 ? 4 : 2; }

size_t hl_kv_cache_block_bytes(int n_layers, const hl_kv_geom *g) {
    return 2 * (size_t)n_layers * (size_t)g->n_kv_heads * HL_KV_BLOCK * (size_t)g->head_dim *
           elem_bytes(g->kv_type);
}

static int check_geom(hl_backend *be, int n_layers, const hl_kv_geom *g, hl_error *err) {
    if (n_layers <= 0 || g->n_blocks <= 0 || g->n_kv_heads <= 0 || g->head_dim <= 0)
        return hl_errorf(err, HL_ERR_INVAL, "kv cache: bad geometry (%d layers, %d blocks, %d heads, dim %d)",
                         n_layers, g->n_blocks, g->n_kv_heads, g->head_dim);
    if (g->kv_type != HL_DTYPE_F16 && g->kv_type != HL_DTYPE_F32)
        return hl_errorf(err, HL_ERR_INVAL, "kv cache: type %s is not supported", hl_quant_name(g->kv_type));
    if (!be->ops->supports(be, HL_OP_ATTENTION, g->kv_type) || !be->ops->supports(be, HL_OP_ROPE_KV, g->kv_type))
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "kv cache: backend %s has no %s attention", be->ops->name,
                         hl_quant_name(g->kv_type));
    return HL_OK;
}

hl_kv_cache *hl_kv_cache_create(hl_backend *be, int n_layers, const hl_kv_geom *geom, hl_error *err) {
    if (check_geom(be, n_layers, geom, err) != HL_OK) return NULL;
    hl_kv_cache *kv = hl_xcalloc(1, sizeof(*kv));
    kv->be = be;
    kv->geom = *geom;
    kv->n_layers = n_layers;
    kv->layers = hl_xcalloc((size_t)n_layers, sizeof(hl_kv_layer));
    kv->free_ids = hl_xmalloc(sizeof(int32_t) * (size_t)geom->n_blocks);
    kv->is_free = hl_xmalloc((size_t)geom->n_blocks);
    size_t per_layer = hl_kv_cache_block_bytes(1, geom) / 2, n_bytes;
    if (!hl_mul_ok(per_layer, (size_t)geom->n_blocks, &n_bytes)) {
        hl_errorf(err, HL_ERR_NOMEM, "kv cache: %d blocks overflow the address space", geom->n_blocks);
        hl_kv_cache_free(kv);
        return NULL;
    }
    for (int il = 0; il < n_layers; il++) {
        kv->layers[il].k = be->ops->alloc(be, n_bytes);
        kv->layers[il].v = be->ops->alloc(be, n_bytes);
        if (!kv->layers[il].k || !kv->layers[il].v) {
            hl_errorf(err, HL_ERR_NOMEM, "kv cache: cannot allocate %zu bytes for layer %d", 2 * n_bytes, il);
            hl_kv_cache_free(kv);
            return NULL;
        }
    }
    // Lowest ids on top of the stack: a fresh cache hands out 0, 1, 2, ...
    for (int i = 0; i < geom->n_blocks; i++) kv->free_ids[i] = geom->n_blocks - 1 - i;
    memset(kv->is_free, 1, (size_t)geom->n_blocks);
    kv->n_free = geom->n_blocks;
    return kv;
}

void hl_kv_cache_free(hl_kv_cache *kv) {
    if (!kv) return;
    for (int il = 0; il < kv->n_layers; il++) {
        kv->be->ops->release(kv->be, kv->layers[il].k);
        kv->be->ops->release(kv->be, kv->layers[il].v);
    }
    free(kv->layers);
    free(kv->free_ids);
    free(kv->is_free);
    free(kv);
}

const hl_kv_geom *hl_kv_cache_geom(const hl_kv_cache *kv) { return &kv->geom; }

const hl_kv_layer *hl_kv_cache_layer(const hl_kv_cache *kv, int il) {
    HL_ASSERT(il >= 0 && il < kv->n_layers);
    return &kv->layers[il];
}

int hl_kv_cache_n_free(const hl_kv_cache *kv) { return kv->n_free; }

int32_t hl_kv_cache_alloc_block(hl_kv_cache *kv) {
    if (kv->n_free == 0) return -1;
    int32_t id = kv->free_ids[--kv->n_free];
    kv->is_free[id] = 0;
    return id;
}

void hl_kv_cache_free_block(hl_kv_cache *kv, int32_t id) {
    HL_ASSERT(id >= 0 && id < kv->geom.n_blocks && !kv->is_free[id]);
    kv->is_free[id] = 1;
    kv->free_ids[kv->n_free++] = id;
}

int hl_kv_cache_seq_reserve(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens, hl_error *err) {
    if (n_tokens < 0) return hl_errorf(err, HL_ERR_INVAL, "kv cache: %d tokens", n_tokens);
    int need = (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    if (need <= seq->n_blocks) return HL_OK;
    if (need - seq->n_blocks > kv->n_free)
        return hl_errorf(err, HL_ERR_BUSY, "kv cache: %d more blocks needed for %d tokens, %d free",
                         need - seq->n_blocks, n_tokens, kv->n_free);
    if (need > seq->cap) {
        seq->cap = need > 2 * seq->cap ? need : 2 * seq->cap;
        seq->blocks = hl_xrealloc(seq->blocks, sizeof(int32_t) * (size_t)seq->cap);
    }
    while (seq->n_blocks < need) seq->blocks[seq->n_blocks++] = hl_kv_cache_alloc_block(kv);
    return HL_OK;
}

void hl_kv_cache_seq_truncate(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens) {
    int keep = n_tokens <= 0 ? 0 : (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    while (seq->n_blocks > keep) hl_kv_cache_free_block(kv, seq->blocks[--seq->n_blocks]);
}

void hl_kv_cache_seq_release(hl_kv_cache *kv, hl_kv_seq *seq) {
    hl_kv_cache_seq_truncate(kv, seq, 0);
    free(seq->blocks);
    memset(seq, 0, sizeof(*seq));
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
