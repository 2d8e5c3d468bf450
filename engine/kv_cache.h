// kv_cache: the paged K/V pool every layer's attention reads and writes — a fixed number of
// 16-token blocks (HL_KV_BLOCK) per layer, allocated once from the backend — plus reference
// counts, per-sequence block tables and a prefix cache of full blocks.
//
// Invariants: block id b addresses the same slot range in every layer (one id covers all
// layers); a sequence's table lists its blocks in position order, so position p lives in
// blocks[p / HL_KV_BLOCK] at offset p % HL_KV_BLOCK. A block is in one of three states:
// used (refcount > 0: held by one or more sequences), cached (refcount 0 but registered in the
// prefix cache: its K/V are kept, in LRU order, and evicted only when a block is needed) or
// free. A registered block is full and never written again: its key is the chained hash of
// every token from position 0 to its end, and lookups also compare its 16 tokens and its
// parent's hash. Sequences only write positions past their shared blocks (fork copies a
// partial last block), so sharing never changes what another sequence reads.
// Not thread-safe: the engine thread owns the cache.
//
//   hl_kv_cache *kv = hl_kv_cache_create(be, n_layers, &(hl_kv_geom){.n_blocks = 256,
//                                        .n_kv_heads = 8, .head_dim = 64, .kv_type = HL_DTYPE_F16}, &err);
//   hl_kv_seq seq = {0};
//   int n_hit = hl_kv_cache_seq_match(kv, &seq, ids, n - 1);   // cached prefix blocks, refs taken
//   hl_kv_cache_seq_reserve(kv, &seq, n, &err);               // blocks for positions [0, n)
//   ... forward positions [n_hit, n) with seq.blocks ..., hl_kv_cache_seq_commit(kv, &seq, ids, n);
//   hl_kv_cache_seq_release(kv, &seq); hl_kv_cache_free(kv);
#pragma once

#include "common/hl.h"
#include "kernels/backend.h"

typedef struct hl_kv_cache hl_kv_cache;

// One sequence's blocks. Plain data the caller owns (zero-initialize it); it holds one
// reference on each of its blocks.
typedef struct hl_kv_seq {
    int32_t *blocks;   // (n_blocks) block ids in position order; owned (heap)
    int n_blocks;
    int cap;
    int n_hashed;      // leading full blocks whose chained hash is known (prefix cache)
    uint64_t hash;     // chained hash of block n_hashed - 1 (when n_hashed > 0)
} hl_kv_seq;

// Allocates geom->n_blocks blocks of K and V for each of n_layers layers from be (borrowed,
// must outlive the cache); kv_type HL_DTYPE_F16, F32 or I8 (int8 also gets the k_scale /
// v_scale row scales of kernels/backend.h). NULL + HL_ERR_INVAL for a bad geometry or another
// kv_type, HL_ERR_UNSUPPORTED when the backend has no ROPE_KV or ATTENTION for kv_type,
// HL_ERR_NOMEM when the backend cannot allocate the pool.
hl_kv_cache *hl_kv_cache_create(hl_backend *be, int n_layers, const hl_kv_geom *geom, hl_error *err);
void hl_kv_cache_free(hl_kv_cache *kv); // accepts NULL

const hl_kv_geom *hl_kv_cache_geom(const hl_kv_cache *kv);
const hl_kv_layer *hl_kv_cache_layer(const hl_kv_cache *kv, int il); // 0 <= il < n_layers
// Blocks that can be taken now: free ones plus cached ones with no reference (evictable).
int hl_kv_cache_n_free(const hl_kv_cache *kv);
// Cached blocks with no reference (a subset of hl_kv_cache_n_free).
int hl_kv_cache_n_cached(const hl_kv_cache *kv);
// Blocks held by at least one sequence.
int hl_kv_cache_n_used(const hl_kv_cache *kv);
// References on block id (0 when free or cached); for tests.
int hl_kv_cache_refcount(const hl_kv_cache *kv, int32_t id);

// Bytes one block takes over all layers (K and V, plus the row scales for int8), for sizing a
// pool from a memory budget.
size_t hl_kv_cache_block_bytes(int n_layers, const hl_kv_geom *geom);

// The kv_type a --kv-cache-dtype name selects: "f16" (or "auto", the default), "f32", "int8".
// HL_ERR_INVAL naming the choices for anything else (NULL included); *kv_type unchanged then.
int hl_kv_cache_dtype_parse(const char *name, int *kv_type, hl_error *err);
// "f16", "f32", "int8" (the names hl_kv_cache_dtype_parse takes), "?" for other types.
const char *hl_kv_cache_dtype_name(int kv_type);

// Takes a block with one reference: a free one, else the least recently used cached one
// (evicting it from the prefix cache); -1 when every block is in use.
int32_t hl_kv_cache_alloc_block(hl_kv_cache *kv);
// Drops one reference on block id; at zero the block becomes cached (if registered) or free.
// An id out of range or without references is a programmer error (HL_ASSERT).
void hl_kv_cache_free_block(hl_kv_cache *kv, int32_t id);

// Makes seq hold enough blocks for positions [0, n_tokens), taking new blocks as needed (it
// never gives blocks back). HL_ERR_BUSY when the pool has too few blocks (seq is then
// unchanged).
int hl_kv_cache_seq_reserve(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens, hl_error *err);
// Keeps the blocks for positions [0, n_tokens) and drops the rest (truncating a sequence). A
// kept partial block that is registered leaves the prefix cache (it will be overwritten); it
// must not be shared with another sequence (HL_ASSERT).
void hl_kv_cache_seq_truncate(hl_kv_cache *kv, hl_kv_seq *seq, int n_tokens);
// Drops all of seq's blocks (last block first, so a prefix outlives its tails in the LRU) and
// frees its table; seq is zeroed and can be reused.
void hl_kv_cache_seq_release(hl_kv_cache *kv, hl_kv_seq *seq);

// ---- prefix cache ----

// How many leading full blocks of tokens[0..n_tokens) are cached (only whole blocks inside
// n_tokens count); *n_unused (optional) gets how many of those have no reference now (taking
// them lowers hl_kv_cache_n_free). Changes nothing.
int hl_kv_cache_prefix_lookup(const hl_kv_cache *kv, const int32_t *tokens, int n_tokens, int *n_unused);
// Makes the empty seq (n_blocks == 0) share the first n_blocks cached blocks of tokens (at most
// what hl_kv_cache_prefix_lookup reports; fewer when it reports fewer), taking a reference on
// each. Returns the tokens covered (n_blocks * HL_KV_BLOCK).
int hl_kv_cache_seq_match(hl_kv_cache *kv, hl_kv_seq *seq, const int32_t *tokens, int n_blocks);
// Registers seq's full blocks among positions [0, n_computed) — whose K/V are written and
// whose tokens are tokens[0..n_computed) — in the prefix cache. A block whose key is already
// cached (another sequence computed the same prefix) stays private and is freed normally.
void hl_kv_cache_seq_commit(hl_kv_cache *kv, hl_kv_seq *seq, const int32_t *tokens, int n_computed);

// Makes the empty dst share src's blocks for positions [0, n_tokens): full blocks by reference,
// a partial last block by copying its K/V (and int8 row scales) into a new block (the two
// sequences then write different tokens there). HL_ERR_BUSY when no block is left for the copy
// (dst unchanged), HL_ERR_INVAL when src does not cover n_tokens; the backend's copy errors
// otherwise.
int hl_kv_cache_seq_fork(hl_kv_cache *kv, hl_kv_seq *dst, const hl_kv_seq *src, int n_tokens, hl_error *err);

// Reorders the free list with a seeded shuffle, so that the next allocations hand out block
// ids in a scattered order (tests of the paging; has no effect on results).
void hl_kv_cache_shuffle_free(hl_kv_cache *kv, uint64_t seed);
