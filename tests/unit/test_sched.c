// Unit tests for engine/sched without a model: a driver schedules, "runs" the step (commit),
// and appends a token for every item that asked for logits — the token is a function of the
// sequence and its position, so a lost or doubled sample shows. Covered: chunked prefill
// under the token budget in FCFS order with decodes first; priorities; admission only into
// free blocks; preemption of the newest sequence and its recomputation through the prefix
// cache; exact prefix-hit accounting; fork; and a randomized run (random arrivals, lengths,
// shared prefixes, removals) checking the step invariants, that every sequence ends with
// exactly its expected tokens, and that every block is free at the end.
#include <check.h>
#include <stdlib.h>

#include "engine/kv_cache.h"
#include "engine/quant.h"
#include "engine/sched.h"
#include "kernels/backend.h"

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
    hl_kv_geom g = {.n_blocks = n_blocks, .n_kv_heads = 1, .head_dim = 4, .kv_type = HL_DTYPE_F16};
    hl_kv_cache *kv = hl_kv_cache_create(be, 1, &g, &err);
    ck_assert_msg(kv, "%s", err.msg);
    return kv;
}

static hl_sched *sched(hl_kv_cache *kv, int budget, int max_seqs, bool prefix) {
    hl_error err = {0};
    hl_sched_params p = {.max_batched_tokens = budget, .max_seqs = max_seqs, .prefix_cache = prefix};
    hl_sched *s = hl_sched_create(kv, &p, &err);
    ck_assert_msg(s, "%s", err.msg);
    return s;
}

// The token a sequence "samples" after position p.
static int32_t next_token(const hl_seq *seq, int p) { return (int32_t)(1000 + (seq->index * 7919 + p) % 5000); }

static void prompt_seq(hl_seq *seq, int n, int pattern, int index, int priority) {
    int32_t t[512];
    ck_assert_int_le(n, 512);
    for (int i = 0; i < n; i++) t[i] = pattern * 100 + i % 100;
    hl_seq_init(seq, t, n, priority, index, NULL);
}

// One step: schedule, commit, sample. Returns the step.
static const hl_sched_step *run(hl_sched *s) {
    const hl_sched_step *st = hl_sched_schedule(s);
    hl_sched_commit(s);
    for (int i = 0; i < st->n_items; i++) {
        hl_seq *seq = st->items[i].seq;
        if (st->items[i].logits) hl_sched_append(s, seq, next_token(seq, seq->n_tokens));
    }
    return st;
}

static void expect_item(const hl_sched_step *st, int i, const hl_seq *seq, int n_past, int n_tokens, bool logits) {
    ck_assert_int_gt(st->n_items, i);
    ck_assert_ptr_eq(st->items[i].seq, seq);
    ck_assert_int_eq(st->items[i].n_past, n_past);
    ck_assert_int_eq(st->items[i].n_tokens, n_tokens);
    ck_assert_int_eq(st->items[i].logits, logits);
}

START_TEST(test_chunked_prefill_fcfs) {
    hl_kv_cache *kv = cache(64);
    hl_sched *s = sched(kv, 64, 4, false);
    hl_seq a, b, c;
    prompt_seq(&a, 100, 1, 0, 0);
    prompt_seq(&b, 30, 2, 0, 0);
    prompt_seq(&c, 10, 3, 0, 0);
    hl_sched_add(s, &a);
    hl_sched_add(s, &b);
    hl_sched_add(s, &c);
    const hl_sched_step *st = run(s); // a's first chunk takes the whole budget
    ck_assert_int_eq(st->n_items, 1);
    expect_item(st, 0, &a, 0, 64, false);
    ck_assert_int_eq(st->n_admitted, 1);
    st = run(s); // a's rest, then b admitted into what is left
    ck_assert_int_eq(st->n_items, 2);
    expect_item(st, 0, &a, 64, 36, true);
    expect_item(st, 1, &b, 0, 28, false);
    st = run(s); // a decodes first, then b's rest, then c
    ck_assert_int_eq(st->n_items, 3);
    expect_item(st, 0, &a, 100, 1, true);
    expect_item(st, 1, &b, 28, 2, true);
    expect_item(st, 2, &c, 0, 10, true);
    ck_assert_int_eq(st->n_tokens, 13);
    st = run(s); // all decoding, oldest first
    ck_assert_int_eq(st->n_items, 3);
    expect_item(st, 0, &a, 101, 1, true);
    expect_item(st, 1, &b, 30, 1, true);
    expect_item(st, 2, &c, 10, 1, true);
    ck_assert_int_eq(a.n_tokens, 103);
    ck_assert_int_eq(a.tokens[100], next_token(&a, 100));
    hl_sched_stats ss;
    hl_sched_get_stats(s, &ss);
    ck_assert_int_eq(ss.running, 3);
    ck_assert_int_eq(ss.waiting, 0);
    hl_seq *all[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        hl_sched_remove(s, all[i]);
        hl_seq_deinit(all[i]);
    }
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 0);
    hl_sched_free(s);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_priority_and_seq_cap) {
    hl_kv_cache *kv = cache(64);
    hl_sched *s = sched(kv, 64, 1, false);
    hl_seq low, high;
    prompt_seq(&low, 5, 1, 0, 5);
    prompt_seq(&high, 5, 2, 0, 0);
    hl_sched_add(s, &low);
    hl_sched_add(s, &high); // later, but priority 0 < 5
    const hl_sched_step *st = run(s);
    ck_assert_int_eq(st->n_items, 1); // max_seqs = 1
    expect_item(st, 0, &high, 0, 5, true);
    hl_sched_remove(s, &high);
    st = run(s);
    expect_item(st, 0, &low, 0, 5, true);
    hl_sched_remove(s, &low);
    hl_seq_deinit(&low);
    hl_seq_deinit(&high);
    hl_sched_free(s);
    hl_kv_cache_free(kv);
}
END_TEST

// Pool of 4 blocks, two 30-token prompts: when a (older) needs its third block, b (newest) is
// preempted; b comes back through the prefix cache once a is done, and ends with the same
// tokens as if nothing had happened.
START_TEST(test_preempt_newest_and_recompute) {
    hl_kv_cache *kv = cache(4);
    hl_sched *s = sched(kv, 64, 4, true);
    hl_seq a, b;
    prompt_seq(&a, 30, 1, 0, 0);
    prompt_seq(&b, 30, 2, 1, 0);
    hl_sched_add(s, &a);
    hl_sched_add(s, &b);
    const hl_sched_step *st = run(s);
    ck_assert_int_eq(st->n_items, 2);
    run(s); // positions 30
    run(s); // positions 31: both have 2 full blocks now
    ck_assert_int_eq(hl_kv_cache_n_free(kv), 0);
    st = run(s); // a needs block 2: b goes
    ck_assert_int_eq(st->n_preempted, 1);
    ck_assert_ptr_eq(st->preempted[0], &b);
    ck_assert_int_eq(st->n_items, 1);
    expect_item(st, 0, &a, 32, 1, true);
    ck_assert_int_eq(b.state, HL_SEQ_WAITING);
    ck_assert_int_eq(b.n_computed, 0);
    ck_assert_int_eq(b.n_tokens, 33); // its generated tokens are kept
    ck_assert_int_eq(b.n_preemptions, 1);
    st = run(s); // b cannot come back yet: its cached block 0 alone leaves no room
    ck_assert_int_eq(st->n_items, 1);
    while (a.n_tokens < 40) run(s);
    hl_sched_remove(s, &a);
    st = run(s); // b: block 0 from the cache, the rest recomputed, logits at the end
    ck_assert_int_eq(st->n_items, 1);
    expect_item(st, 0, &b, 16, 17, true);
    ck_assert_int_eq(b.n_cached, 0); // counted at its first admission
    for (int p = 30; p < b.n_tokens; p++) ck_assert_int_eq(b.tokens[p], next_token(&b, p));
    ck_assert_int_eq(b.n_tokens, 34);
    hl_sched_stats ss;
    hl_sched_get_stats(s, &ss);
    ck_assert_uint_eq(ss.preemptions, 1);
    ck_assert_uint_eq(ss.prefix_queries, 1 + 1 + 2); // a: 29/16, b: 29/16, b again: 32/16
    ck_assert_uint_eq(ss.prefix_hits, 1);
    hl_sched_remove(s, &b);
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 0);
    hl_seq_deinit(&a);
    hl_seq_deinit(&b);
    hl_sched_free(s);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_prefix_accounting) {
    hl_kv_cache *kv = cache(32);
    hl_sched *s = sched(kv, 256, 4, true);
    hl_seq a, b, c;
    prompt_seq(&a, 50, 1, 0, 0);
    prompt_seq(&b, 50, 1, 0, 0); // same prompt
    prompt_seq(&c, 33, 1, 0, 0); // the first 32 tokens: but the last must run, so 2 blocks
    hl_sched_add(s, &a);
    run(s);
    hl_sched_add(s, &b);
    hl_sched_add(s, &c);
    const hl_sched_step *st = run(s);
    expect_item(st, 1, &b, 48, 2, true);
    expect_item(st, 2, &c, 32, 1, true);
    ck_assert_int_eq(b.n_cached, 48);
    ck_assert_int_eq(c.n_cached, 32);
    hl_sched_stats ss;
    hl_sched_get_stats(s, &ss);
    ck_assert_uint_eq(ss.prefix_queries, 3 + 3 + 2);
    ck_assert_uint_eq(ss.prefix_hits, 0 + 3 + 2);
    ck_assert_int_eq(hl_kv_cache_refcount(kv, a.kv.blocks[0]), 3);
    hl_seq *all[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        hl_sched_remove(s, all[i]);
        hl_seq_deinit(all[i]);
    }
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 0);
    hl_sched_free(s);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_fork) {
    hl_kv_cache *kv = cache(16);
    hl_sched *s = sched(kv, 64, 2, true);
    hl_seq p, c1, c2;
    prompt_seq(&p, 20, 1, 0, 0);
    prompt_seq(&c1, 20, 1, 1, 0);
    prompt_seq(&c2, 20, 1, 2, 0);
    hl_sched_add(s, &p);
    hl_sched_schedule(s);
    hl_sched_commit(s);
    ck_assert(hl_sched_fork(s, &p, &c1));
    ck_assert(!hl_sched_fork(s, &p, &c2)); // max_seqs = 2: c2 waits
    ck_assert_int_eq(c1.state, HL_SEQ_RUNNING);
    ck_assert_int_eq(c1.n_computed, 20);
    ck_assert_int_eq(c1.kv.blocks[0], p.kv.blocks[0]);
    ck_assert_int_ne(c1.kv.blocks[1], p.kv.blocks[1]);
    ck_assert_int_eq(c2.state, HL_SEQ_WAITING);
    hl_sched_append(s, &p, 5);
    hl_sched_append(s, &c1, 6);
    const hl_sched_step *st = run(s);
    ck_assert_int_eq(st->n_items, 2);
    expect_item(st, 0, &p, 20, 1, true);
    expect_item(st, 1, &c1, 20, 1, true);
    hl_sched_remove(s, &p);
    st = run(s); // c2 recomputes its prompt: block 0 comes from the cache
    ck_assert_int_eq(st->n_items, 2);
    expect_item(st, 0, &c1, 21, 1, true);
    expect_item(st, 1, &c2, 16, 4, true);
    hl_seq *all[] = {&p, &c1, &c2};
    for (int i = 0; i < 3; i++) {
        hl_sched_remove(s, all[i]);
        hl_seq_deinit(all[i]);
    }
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 0);
    hl_sched_free(s);
    hl_kv_cache_free(kv);
}
END_TEST

START_TEST(test_bad_limits) {
    hl_kv_cache *kv = cache(4);
    hl_error err = {0};
    hl_sched_params p = {.max_batched_tokens = 8, .max_seqs = 16};
    ck_assert_ptr_null(hl_sched_create(kv, &p, &err));
    ck_assert_int_eq(err.code, HL_ERR_INVAL);
    p = (hl_sched_params){.max_batched_tokens = 0, .max_seqs = 0};
    ck_assert_ptr_null(hl_sched_create(kv, &p, &err));
    hl_kv_cache_free(kv);
}
END_TEST

// ---- randomized ----

#define N_RND 120

typedef struct rnd_req {
    hl_seq seq;
    int target;  // total tokens at which it ends
    bool added, done;
} rnd_req;

static void check_step(hl_sched *s, hl_kv_cache *kv, const hl_sched_step *st, int budget, int max_seqs) {
    ck_assert_int_le(st->n_items, max_seqs);
    ck_assert_int_le(st->n_tokens, budget);
    int sum = 0;
    for (int i = 0; i < st->n_items; i++) {
        const hl_sched_item *it = &st->items[i];
        ck_assert_int_eq(it->seq->state, HL_SEQ_RUNNING);
        ck_assert_int_eq(it->n_past, it->seq->n_computed);
        ck_assert_int_ge(it->n_tokens, 1);
        ck_assert_int_le(it->n_past + it->n_tokens, it->seq->n_tokens);
        ck_assert_int_ge(it->seq->kv.n_blocks * HL_KV_BLOCK, it->n_past + it->n_tokens);
        ck_assert_int_eq(it->logits, it->n_past + it->n_tokens == it->seq->n_tokens);
        sum += it->n_tokens;
        for (int j = 0; j < i; j++) ck_assert_ptr_ne(st->items[j].seq, it->seq);
    }
    ck_assert_int_eq(sum, st->n_tokens);
    hl_sched_stats ss;
    hl_sched_get_stats(s, &ss);
    ck_assert_int_le(ss.running, max_seqs);
    ck_assert_int_eq(hl_kv_cache_n_used(kv) + hl_kv_cache_n_free(kv), hl_kv_cache_geom(kv)->n_blocks);
}

static void rnd_finish(hl_sched *s, rnd_req *r, bool removed_early) {
    hl_sched_remove(s, &r->seq);
    r->done = true;
    if (removed_early) return;
    ck_assert_int_eq(r->seq.n_tokens, r->target);
    for (int p = r->seq.n_prompt; p < r->target; p++) ck_assert_int_eq(r->seq.tokens[p], next_token(&r->seq, p));
}

static void rnd_run(bool prefix) {
    const int budget = 48, max_seqs = 6;
    hl_kv_cache *kv = cache(24);
    hl_sched *s = sched(kv, budget, max_seqs, prefix);
    rnd_req *rq = hl_xcalloc(N_RND, sizeof(rnd_req));
    hl_rng rng = {prefix ? 5 : 6};
    for (int i = 0; i < N_RND; i++) {
        const int n = 1 + (int)(hl_rng_next(&rng) % 120);
        prompt_seq(&rq[i].seq, n, (int)(hl_rng_next(&rng) % 3), i, (int)(hl_rng_next(&rng) % 2));
        rq[i].target = n + 1 + (int)(hl_rng_next(&rng) % 100);
        if (rq[i].target > 24 * HL_KV_BLOCK) rq[i].target = 24 * HL_KV_BLOCK; // one sequence fits the pool
    }
    int n_added = 0, n_done = 0, steps = 0, preempted = 0;
    while (n_done < N_RND) {
        ck_assert_int_lt(steps++, 100000);
        while (n_added < N_RND && hl_rng_next(&rng) % 3 == 0) hl_sched_add(s, &rq[n_added++].seq);
        rnd_req *victim = &rq[hl_rng_next(&rng) % N_RND]; // random removal now and then
        if (hl_rng_next(&rng) % 50 == 0 && victim->seq.state != HL_SEQ_NEW && !victim->done) {
            rnd_finish(s, victim, true);
            n_done++;
        }
        const hl_sched_step *st = hl_sched_schedule(s);
        check_step(s, kv, st, budget, max_seqs);
        hl_sched_commit(s);
        for (int i = 0; i < st->n_items; i++) {
            hl_seq *seq = st->items[i].seq;
            if (st->items[i].logits) hl_sched_append(s, seq, next_token(seq, seq->n_tokens));
        }
        preempted += st->n_preempted;
        for (int i = 0; i < N_RND; i++) {
            if (rq[i].done || rq[i].seq.n_tokens < rq[i].target) continue;
            rnd_finish(s, &rq[i], false);
            n_done++;
        }
        if (n_added == N_RND && n_done < N_RND) ck_assert_int_gt(st->n_items, 0); // never stuck
    }
    ck_assert_int_gt(preempted, 5);
    ck_assert_int_eq(hl_kv_cache_n_used(kv), 0);
    hl_sched_stats ss;
    hl_sched_get_stats(s, &ss);
    ck_assert_int_eq(ss.running + ss.waiting, 0);
    if (prefix) ck_assert_uint_gt(ss.prefix_hits, 0);
    for (int i = 0; i < N_RND; i++) hl_seq_deinit(&rq[i].seq);
    free(rq);
    hl_sched_free(s);
    hl_kv_cache_free(kv);
}

START_TEST(test_random_prefix) { rnd_run(true); }
END_TEST

START_TEST(test_random_no_prefix) { rnd_run(false); }
END_TEST

Suite *sched_suite(void) {
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_chunked_prefill_fcfs);
    tcase_add_test(tc, test_priority_and_seq_cap);
    tcase_add_test(tc, test_preempt_newest_and_recompute);
    tcase_add_test(tc, test_prefix_accounting);
    tcase_add_test(tc, test_fork);
    tcase_add_test(tc, test_bad_limits);
    tcase_add_test(tc, test_random_prefix);
    tcase_add_test(tc, test_random_no_prefix);
    suite_add_tcase(s, tc);
    return s;
}
