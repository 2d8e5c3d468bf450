// kv_cache: the paged K/V pool every layer's attention reads and writes — a fixed number of
// 16-token blocks (HL_KV_BLOCK) per layer, allocated once from the backend, plus a free list
// of block ids and per-sequence block tables.
//
// Invariants: block id b addresses the same slot range in every layer (one id covers all
// layers); a block is either free or owned by exactly one sequence (prefix sharing and
// reference counts come with the batching engine); a sequence's table lists its blocks in
// position order, so position p lives in blocks[p / HL_KV_BLOCK] at offset p % HL_KV_BLOCK.
// Not thread-safe: the engine thread owns the cache.
//
//   hl_kv_cache *kv = hl_kv_cache_create(be, n_layers, &(hl_kv_geom){.n_blocks = 256,
//                                        .n_kv_heads = 8, .head_dim = 64, .kv_type = HL_DTYPE_F16}, &err);
//   hl_kv_seq seq = {0};
//   hl_kv_cache_seq_reserve(kv, &seq, n_tokens, &err);  // blocks for positions [0, n_tokens)
//   ... forward with seq.blocks ...
//   hl_kv_cache_seq_release(kv, &seq);
//   hl_kv_cache_free(kv);
#pragma once

#include "common/hl.h"
#include "kernels/backend.h"

typedef struct hl_kv_cache hl_kv_cache;

// One sequence's blocks. Plain data the caller owns (zero-initialize it); its blocks belong
// to the cache it was reserved from.
typedef struct hl_kv_seq {
    int32_t *blocks; // (n_blocks) block ids in position order; owned (heap)
    int n_blocks;
    int cap;
} hl_kv_seq;

// Allocates geom->n_blocks blocks of K and V for each of n_layers layers from be (borrowed,
// must outlive the cache). NULL + HL_ERR_INVAL for a bad geometry or kv_type the backend
// does not support for attention, HL_ERR_NOMEM when the backend cannot allocate the pool.
hl_kv_cache *hl_kv_cache_create(hl_backend *be, int n_layers, const hl_kv_geom *geom, hl_error *err);
void hl_kv_cache_free(hl_kv_cache *kv); // accepts NULL

const hl_kv_geom *hl_kv_cache_geom(const hl_kv_cache *kv);
const hl_kv_layer *hl_kv_cache_layer(const hl_kv_cache *kv, int il); // 0 <= il < n_layers
int hl_kv_cache_n_free(const hl_kv_cache *kv);

// Bytes one block takes over all layers (K and V), for sizing a pool from a memory budget.
size_t hl_kv_cache_block_bytes(int n_layers, const hl_kv_geom *geom);

// Takes a free block: its id, or -1 when none is left.
int32_t hl_kv_cache_alloc_block(hl_kv_cache *kv);
// Returns block id to the free list (an id that is out of range or already free is a
// programmer error: HL_ASSERT).
void hl_kv_cache_free_block(hl_kv_cache *kv, int32_t id);

// Makes seq hold enough blocks for positions [0, n_tokens), taking new blocks as needed (it
// never gives blocks back). HL_ERR_BUSY when the pool has too few free blocks (seq is then
// unchanged).
int hl_kv_cache_seq_reserve(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens, hl_error *err);
// Keeps the blocks for positions [0, n_tokens) and frees the rest (truncating a sequence).
void hl_kv_cache_seq_truncate(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens);
// Frees all of seq's blocks and its table; seq is zeroed and can be reused.
void hl_kv_cache_seq_release(hl_kv_cache *kv, hl_kv_seq *seq);

// Reorders the free list with a seeded shuffle, so that the next allocations hand out block
// ids in a scattered order (tests of the paging; has no effect on results).
void hl_kv_cache_shuffle_free(hl_kv_cache *kv, uint64_t seed);
