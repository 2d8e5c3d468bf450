// Unit tests for engine/kv_cache: block states and reference counts, the prefix cache (chained
// keys, exact hit counts, LRU eviction only when no free block is left, duplicate prefixes,
// truncation), fork (full blocks shared, the partial block copied in every layer), and a
// randomized run checking that every hit hands back blocks holding exactly that prefix (each
// block's K pool is stamped with an id of the prefix it was computed for).
#include <check.h>
#include <stdlib.h>

#include "engine/kv_cache.h"
#include "engine/quant.h"
#include "kernels/backend.h"

#define N_LAYERS 2

static hl_backend *be;

static void setup(void) {
    hl_error err = {0};
    be = hl_backend_cpu_create(1, &err);
    ck_assert_msg(be, "%s", err.msg);
}

static void teardown(void) {
    hl_backend_free(be);
    be = NULL;
}

static hl_kv_cache *cache(int n_blocks) {
    hl_error err = {0};
    hl_kv_geom g = {.n_blocks = n_blocks, .n_kv_heads = 2, .head_dim = 8, .kv_type = HL_DTYPE_F16};
    hl_kv_cache *kv = hl_kv_cache_create(be, N_LAYERS, &g, &err);
    ck_assert_msg(kv, "%s", err.msg);
    return kv;
}

static void fill(int32_t *t, int n, uint64_t seed) {
    hl_rng rng = {seed};
    for (int i = 0; i < n; i++) t[i] = (int32_t)(hl_rng_next(&rng) % 1000);
}

// A sequence that "computed" tokens[0..n): blocks reserved and committed.
static void computed(hl_kv_cache *kv, hl_kv_seq *s, const int32_t *t, int n) {
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, s, n, NULL), HL_OK);
    hl_kv_cache_seq_commit(kv, s, t, n);
}

static void check_counts(const hl_kv_cache *kv, int used, int free_total, int cached) {
    ck_assert_int_eq(hl_kv_cache_n_used(kv), used);
    ck_assert_int_eq(hl_kv_cache_n_free(kv), free_total);
    ck_assert_int_eq(hl_kv_cache_n_cached(kv), cached);
}

START_TEST(test_refcounts_and_states) {
    hl_kv_cache *kv = cache(6);
    int32_t a = hl_kv_cache_alloc_block(kv), b = hl_kv_cache_alloc_block(kv);
    ck_assert_int_eq(a, 0); // a fresh pool hands out 0, 1, 2, ...
    ck_assert_int_eq(b, 1);
    check_counts(kv, 2, 4, 0);
    ck_assert_int_eq(hl_kv_cache_refcount(kv, a), 1);
    hl_kv_seq s = {0};
    int32_t t[40];
    fill(t, 40, 1);
    computed(kv, &s, t, 40); // 3 blocks, 2 of them full (registered)
    check_counts(kv, 5, 1, 0);
    int32_t c = hl_kv_cache_alloc_block(kv);
    ck_assert_int_eq(hl_kv_cache_alloc_block(kv), -1);
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &s, 60, NULL), HL_ERR_BUSY);
    ck_assert_int_eq(s.n_blocks, 3);
    hl_kv_cache_free_block(kv, a);
    hl_kv_cache_free_block(kv, b);
    hl_kv_cache_free_block(kv, c);
    hl_kv_cache_seq_release(kv, &s);
    check_counts(kv, 0, 6, 2); // the 2 full blocks stay cached (and count as free)
    ck_assert_int_eq(s.n_blocks, 0);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_prefix_hits_exact) {
    hl_kv_cache *kv = cache(16);
    int32_t t[70];
    fill(t, 70, 2);
    hl_kv_seq a = {0};
    computed(kv, &a, t, 70); // 4 full blocks + 1 partial
    ck_assert_int_eq(a.n_hashed, 4);
    int unused = -1;
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t, 70, &unused), 4);
    ck_assert_int_eq(unused, 0);                                  // all held by a
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t, 63, NULL), 3); // whole blocks inside n only
    hl_kv_cache_seq_release(kv, &a);
    check_counts(kv, 0, 16, 4);
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t, 70, &unused), 4);
    ck_assert_int_eq(unused, 4);

    // a change in block 2 keeps blocks 0, 1; a change in block 0 breaks the whole chain
    int32_t u[70];
    memcpy(u, t, sizeof t);
    u[40] ^= 1;
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, u, 70, NULL), 2);
    memcpy(u, t, sizeof t);
    u[3] ^= 1;
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, u, 70, NULL), 0);

    // matching takes references and leaves the LRU; the blocks are a's, in order
    hl_kv_seq b = {0};
    ck_assert_int_eq(hl_kv_cache_seq_match(kv, &b, t, 3), 48);
    ck_assert_int_eq(b.n_blocks, 3);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(hl_kv_cache_refcount(kv, b.blocks[i]), 1);
    check_counts(kv, 3, 13, 1);
    hl_kv_seq c = {0};
    ck_assert_int_eq(hl_kv_cache_seq_match(kv, &c, t, 4), 64);
    ck_assert_int_eq(hl_kv_cache_refcount(kv, b.blocks[0]), 2);
    check_counts(kv, 4, 12, 0);
    hl_kv_cache_seq_release(kv, &b);
    hl_kv_cache_seq_release(kv, &c);
    check_counts(kv, 0, 16, 4);
    hl_kv_cache_free(kv);
}
END_TEST

// Cached blocks are evicted only once the free list is empty, least recently released first,
// the tail of a sequence before its head.
START_TEST(test_lru_eviction) {
    hl_kv_cache *kv = cache(6);
    int32_t t1[32], t2[32];
    fill(t1, 32, 3);
    fill(t2, 32, 4);
    hl_kv_seq a = {0}, b = {0};
    computed(kv, &a, t1, 32);
    computed(kv, &b, t2, 32);
    const int32_t a0 = a.blocks[0], a1 = a.blocks[1];
    hl_kv_cache_seq_release(kv, &a); // released first: evicted first, a1 before a0
    hl_kv_cache_seq_release(kv, &b);
    check_counts(kv, 0, 6, 4);
    int32_t x = hl_kv_cache_alloc_block(kv), y = hl_kv_cache_alloc_block(kv);
    ck_assert(x != a0 && x != a1 && y != a0 && y != a1); // the 2 free blocks go first
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t1, 32, NULL), 2);
    ck_assert_int_eq(hl_kv_cache_alloc_block(kv), a1);
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t1, 32, NULL), 1);
    ck_assert_int_eq(hl_kv_cache_alloc_block(kv), a0);
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t1, 32, NULL), 0);
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t2, 32, NULL), 2);
    check_counts(kv, 4, 2, 2);
    hl_kv_cache_free(kv);
}
END_TEST

// Two sequences computing the same prefix: the first registers, the second's blocks stay
// private and go back to the free list.
START_TEST(test_duplicate_prefix) {
    hl_kv_cache *kv = cache(8);
    int32_t t[32];
    fill(t, 32, 5);
    hl_kv_seq a = {0}, b = {0};
    computed(kv, &a, t, 32);
    computed(kv, &b, t, 32);
    hl_kv_cache_seq_release(kv, &b);
    check_counts(kv, 2, 6, 0);
    hl_kv_cache_seq_release(kv, &a);
    check_counts(kv, 0, 8, 2);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_truncate_unregisters_partial) {
    hl_kv_cache *kv = cache(4);
    int32_t t[32];
    fill(t, 32, 6);
    hl_kv_seq a = {0};
    computed(kv, &a, t, 32);
    hl_kv_cache_seq_truncate(kv, &a, 20); // block 1 kept but will be rewritten
    ck_assert_int_eq(a.n_blocks, 2);
    ck_assert_int_eq(hl_kv_cache_prefix_lookup(kv, t, 32, NULL), 1);
    ck_assert_int_eq(a.n_hashed, 0); // restarts the chain: commit again registers block 0 only once
    hl_kv_cache_seq_commit(kv, &a, t, 20);
    ck_assert_int_eq(a.n_hashed, 1);
    hl_kv_cache_seq_release(kv, &a);
    check_counts(kv, 0, 4, 1);
    hl_kv_cache_free(kv);
}
END_TEST

static uint16_t *k_at(hl_kv_cache *kv, int il, int32_t block) {
    const size_t per = hl_kv_cache_block_bytes(1, hl_kv_cache_geom(kv)) / 2 / sizeof(uint16_t);
    return (uint16_t *)hl_kv_cache_layer(kv, il)->k + (size_t)block * per;
}

static uint16_t *v_at(hl_kv_cache *kv, int il, int32_t block) {
    const size_t per = hl_kv_cache_block_bytes(1, hl_kv_cache_geom(kv)) / 2 / sizeof(uint16_t);
    return (uint16_t *)hl_kv_cache_layer(kv, il)->v + (size_t)block * per;
}

START_TEST(test_fork_shares_and_copies) {
    hl_kv_cache *kv = cache(8);
    const size_t per = hl_kv_cache_block_bytes(1, hl_kv_cache_geom(kv)) / 2 / sizeof(uint16_t);
    hl_kv_seq a = {0}, b = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &a, 37, NULL), HL_OK);
    for (int il = 0; il < N_LAYERS; il++) {
        for (size_t i = 0; i < per; i++) {
            k_at(kv, il, a.blocks[2])[i] = (uint16_t)(il * 1000 + i);
            v_at(kv, il, a.blocks[2])[i] = (uint16_t)(il * 1000 + i + 7);
        }
    }
    ck_assert_int_eq(hl_kv_cache_seq_fork(kv, &b, &a, 37, NULL), HL_OK);
    ck_assert_int_eq(b.n_blocks, 3);
    ck_assert_int_eq(b.blocks[0], a.blocks[0]);
    ck_assert_int_eq(b.blocks[1], a.blocks[1]);
    ck_assert_int_ne(b.blocks[2], a.blocks[2]);
    ck_assert_int_eq(hl_kv_cache_refcount(kv, a.blocks[0]), 2);
    ck_assert_int_eq(hl_kv_cache_refcount(kv, a.blocks[2]), 1);
    for (int il = 0; il < N_LAYERS; il++) {
        ck_assert(memcmp(k_at(kv, il, a.blocks[2]), k_at(kv, il, b.blocks[2]), per * 2) == 0);
        ck_assert(memcmp(v_at(kv, il, a.blocks[2]), v_at(kv, il, b.blocks[2]), per * 2) == 0);
    }
    hl_kv_seq c = {0};
    ck_assert_int_eq(hl_kv_cache_seq_fork(kv, &c, &a, 32, NULL), HL_OK); // block-aligned: no copy
    ck_assert_int_eq(c.n_blocks, 2);
    ck_assert_int_eq(hl_kv_cache_refcount(kv, a.blocks[1]), 3);
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 4);
    hl_kv_seq d = {0};
    ck_assert_int_eq(hl_kv_cache_seq_fork(kv, &d, &a, 64, NULL), HL_ERR_INVAL); // beyond a
    hl_kv_cache_seq_release(kv, &a);
    hl_kv_cache_seq_release(kv, &b);
    hl_kv_cache_seq_release(kv, &c);
    check_counts(kv, 0, 8, 0);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_fork_busy) {
    hl_kv_cache *kv = cache(3);
    hl_kv_seq a = {0}, b = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(kv, &a, 20, NULL), HL_OK);
    hl_error err = {0};
    ck_assert_int_eq(hl_kv_cache_seq_fork(kv, &b, &a, 20, NULL), HL_OK);
    hl_kv_seq c = {0};
    ck_assert_int_eq(hl_kv_cache_seq_fork(kv, &c, &a, 20, &err), HL_ERR_BUSY);
    ck_assert_int_eq(c.n_blocks, 0);
    hl_kv_cache_seq_release(kv, &a);
    hl_kv_cache_seq_release(kv, &b);
    check_counts(kv, 0, 3, 0);
    hl_kv_cache_free(kv);
}
END_TEST

// ---- randomized: hits always hand back blocks computed for exactly that prefix ----

#define N_BASES 6
#define MAX_TOK 96

typedef struct rnd_seq {
    hl_kv_seq kv;
    int32_t t[MAX_TOK];
    int n;
} rnd_seq;

// The id of the prefix t[0 .. 16 * (b + 1)): a hash folded to 16 bits, stamped into block b.
static uint16_t stamp(const int32_t *t, int b) {
    uint64_t h = 99;
    for (int i = 0; i < (b + 1) * HL_KV_BLOCK; i++) h = hl_hash64(h ^ (uint64_t)t[i]);
    return (uint16_t)(h & 0x7bff);
}

static void rnd_prompt(hl_rng *rng, int32_t *t, int n) {
    // prompts share prefixes: blocks are drawn from a few patterns, mostly pattern 0 early on
    for (int b = 0; b * HL_KV_BLOCK < n; b++) {
        int pat = (int)(hl_rng_next(rng) % (b < 2 ? 2 : N_BASES));
        for (int i = 0; i < HL_KV_BLOCK && b * HL_KV_BLOCK + i < n; i++) t[b * HL_KV_BLOCK + i] = pat * 100 + i;
    }
}

static void rnd_start(hl_kv_cache *kv, hl_rng *rng, rnd_seq *s) {
    s->n = 1 + (int)(hl_rng_next(rng) % MAX_TOK);
    rnd_prompt(rng, s->t, s->n);
    int n_hit = hl_kv_cache_prefix_lookup(kv, s->t, s->n, NULL);
    ck_assert_int_eq(hl_kv_cache_seq_match(kv, &s->kv, s->t, n_hit), n_hit * HL_KV_BLOCK);
    for (int b = 0; b < n_hit; b++) ck_assert_int_eq(k_at(kv, 0, s->kv.blocks[b])[0], stamp(s->t, b));
    if (hl_kv_cache_seq_reserve(kv, &s->kv, s->n, NULL) != HL_OK) {
        hl_kv_cache_seq_release(kv, &s->kv);
        s->n = 0;
        return;
    }
    for (int b = n_hit; (b + 1) * HL_KV_BLOCK <= s->n; b++) k_at(kv, 0, s->kv.blocks[b])[0] = stamp(s->t, b);
    hl_kv_cache_seq_commit(kv, &s->kv, s->t, s->n);
}

START_TEST(test_random_prefix_integrity) {
    hl_kv_cache *kv = cache(40);
    rnd_seq seqs[8];
    memset(seqs, 0, sizeof seqs);
    hl_rng rng = {77};
    int hits = 0;
    for (int it = 0; it < 4000; it++) {
        rnd_seq *s = &seqs[hl_rng_next(&rng) % 8];
        if (s->n > 0) {
            hl_kv_cache_seq_release(kv, &s->kv);
            s->n = 0;
            continue;
        }
        rnd_start(kv, &rng, s);
        hits += s->kv.n_hashed > 0;
        int held = 0;
        for (int i = 0; i < 8; i++) held += seqs[i].kv.n_blocks;
        ck_assert_int_le(hl_kv_cache_n_used(kv), held);
        ck_assert_int_eq(hl_kv_cache_n_used(kv) + hl_kv_cache_n_free(kv), 40);
    }
    ck_assert_int_gt(hits, 100);
    for (int i = 0; i < 8; i++) hl_kv_cache_seq_release(kv, &seqs[i].kv);
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 0);
    hl_kv_cache_free(kv);
}
END_TEST

Suite *kv_cache_suite(void) {
    Suite *s = suite_create("kv_cache");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_refcounts_and_states);
    tcase_add_test(tc, test_prefix_hits_exact);
    tcase_add_test(tc, test_lru_eviction);
    tcase_add_test(tc, test_duplicate_prefix);
    tcase_add_test(tc, test_truncate_unregisters_partial);
    tcase_add_test(tc, test_fork_shares_and_copies);
    tcase_add_test(tc, test_fork_busy);
    tcase_add_test(tc, test_random_prefix_integrity);
    suite_add_tcase(s, tc);
    return s;
}
