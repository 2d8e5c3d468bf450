// Unit tests for engine/engine on synthetic:tiny:q8_0 with a 512-token vocabulary. The
// reference for every greedy request is a plain single-sequence loop written here over a
// separately loaded copy of the model (own backend): prefill the prompt in one forward pass,
// then one token per pass, with an hl_sampler of the same params. Covered:
//   - tokens, finish reasons, usage and logprobs of single requests equal the reference;
//   - batch invariance: logprobs (and so logits) bit-identical alone, under load, with
//     different chunkings (max_batched_tokens) and through the prefix cache;
//   - prefix cache accounting (queries / hits exact) and cached_tokens in usage;
//   - n > 1: seeded choices reproducible and different from each other, greedy choices equal;
//   - cancel, deadlines, submit errors, queue full, the eventfd, read timeouts;
//   - many threads submitting, reading and cancelling at once (run this suite under TSan);
//   - stress: a KV pool small enough to force preemption, hundreds of requests with random
//     lengths, arrival times, shared prefixes and cancellations: every request not cancelled
//     gives exactly its reference tokens, a cancelled one a prefix of them, no request is
//     lost, and every block is free at the end. HALYARD_STRESS_REQUESTS sets the count
//     (default 300, 60 under sanitizers).
#include <check.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"

#define MODEL "synthetic:tiny:q8_0"
#define N_VOCAB 512
#define SEED 5
#define MAX_OUT 512

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRESS_DEFAULT 60
#else
#define STRESS_DEFAULT 300
#endif

static hl_engine_params params(int kv_mb, int max_seqs, int budget) {
    hl_engine_params p = hl_engine_default_params();
    p.model = MODEL;
    p.synth_n_vocab = N_VOCAB;
    p.synth_seed = SEED;
    p.n_threads = 2;
    p.kv_cache_mb = (size_t)kv_mb;
    p.max_seqs = max_seqs;
    p.max_batched_tokens = budget;
    return p;
}

static hl_engine *engine(const hl_engine_params *p) {
    hl_error err = {0};
    hl_engine *e = hl_engine_create(p, &err);
    ck_assert_msg(e, "%s", err.msg);
    return e;
}

static hl_request_params greedy(int max_tokens) {
    hl_request_params rp = hl_request_default_params();
    rp.sampling.temperature = 0;
    rp.sampling.max_tokens = max_tokens;
    return rp;
}

static void make_prompt(int32_t *t, int n, uint64_t seed) {
    hl_rng rng = {seed};
    for (int i = 0; i < n; i++) t[i] = (int32_t)(hl_rng_next(&rng) % N_VOCAB);
}

// ---- the reference: one sequence, no engine ----

typedef struct result {
    int32_t tokens[MAX_OUT];
    float logprob[MAX_OUT];
    int n;
    enum hl_finish_reason finish;
    int completion_tokens, cached_tokens, n_finish;
} result;

typedef struct ref_ctx {
    hl_backend *be;
    hl_model *m;
    hl_kv_cache *kv;
    hl_llama *l;
} ref_ctx;

static ref_ctx ref;

static void ref_open(void) {
    hl_error err = {0};
    ref.be = hl_backend_cpu_create(1, &err);
    ck_assert_msg(ref.be, "%s", err.msg);
    hl_model_params mp = hl_model_default_params();
    mp.synth_n_vocab = N_VOCAB;
    mp.synth_seed = SEED;
    ref.m = hl_model_load(MODEL, ref.be, &mp, &err);
    ck_assert_msg(ref.m, "%s", err.msg);
    hl_kv_geom g = {.n_blocks = 64, .n_kv_heads = ref.m->cfg.n_kv_heads, .head_dim = ref.m->cfg.head_dim,
                    .kv_type = HL_DTYPE_F16};
    ref.kv = hl_kv_cache_create(ref.be, ref.m->cfg.n_layers, &g, &err);
    ck_assert_msg(ref.kv, "%s", err.msg);
    ref.l = hl_llama_create(ref.m, ref.kv, 1024, 1, 1, &err);
    ck_assert_msg(ref.l, "%s", err.msg);
}

static void ref_close(void) {
    hl_llama_free(ref.l);
    hl_kv_cache_free(ref.kv);
    hl_model_free(ref.m);
    hl_backend_free(ref.be);
    memset(&ref, 0, sizeof ref);
}

static void ref_run(const int32_t *prompt, int n, const hl_sampler_params *sp, result *out) {
    hl_error err = {0};
    memset(out, 0, sizeof(*out));
    int32_t *toks = hl_xmalloc(sizeof(int32_t) * 1024);
    memcpy(toks, prompt, sizeof(int32_t) * (size_t)n);
    float *logits = hl_xmalloc(sizeof(float) * N_VOCAB);
    hl_sampler *smp = hl_sampler_create(sp, N_VOCAB, &err);
    ck_assert_msg(smp, "%s", err.msg);
    hl_sampler_accept_prompt(smp, prompt, n, NULL);
    hl_kv_seq seq = {0};
    int n_past = 0, n_new = n;
    for (;;) {
        ck_assert_int_eq(hl_kv_cache_seq_reserve(ref.kv, &seq, n_past + n_new, &err), HL_OK);
        hl_llama_seq s = {.tokens = toks + n_past, .n_tokens = n_new, .n_past = n_past, .blocks = seq.blocks,
                          .n_blocks = seq.n_blocks, .n_logits = 1};
        ck_assert_int_eq(hl_llama_forward(ref.l, &s, 1, logits, &err), HL_OK);
        n_past += n_new;
        hl_sample_result sr;
        ck_assert_int_eq(hl_sampler_sample(smp, logits, &sr, &err), HL_OK);
        hl_sampler_accept(smp, sr.token, NULL);
        out->completion_tokens++;
        enum hl_sampler_finish f = hl_sampler_finish_reason(smp, sr.token);
        if (f == HL_SAMPLER_FINISH_STOP) {
            out->finish = HL_FINISH_STOP;
            break;
        }
        out->logprob[out->n] = sr.logprob;
        out->tokens[out->n++] = sr.token;
        toks[n_past] = sr.token;
        n_new = 1;
        if (f == HL_SAMPLER_FINISH_LENGTH) {
            out->finish = HL_FINISH_LENGTH;
            break;
        }
    }
    hl_kv_cache_seq_release(ref.kv, &seq);
    hl_sampler_free(smp);
    free(logits);
    free(toks);
}

// ---- reading a request's stream ----

// Reads request id to the end (index 0 only unless all is set) into out; releases it.
static void read_all(hl_engine *e, uint64_t id, result *out, int n_choices) {
    memset(out, 0, sizeof(*out));
    hl_event ev[8];
    int n = 0;
    hl_error err = {0};
    while (out->n_finish < n_choices) {
        ck_assert_int_eq(hl_engine_read(e, id, ev, 8, -1, &n, &err), HL_OK);
        ck_assert_int_gt(n, 0);
        for (int i = 0; i < n; i++) {
            if (ev[i].type == HL_EVENT_FINISH) {
                out->n_finish++;
                if (ev[i].index != 0) continue;
                out->finish = ev[i].finish;
                out->completion_tokens = ev[i].completion_tokens;
                out->cached_tokens = ev[i].cached_tokens;
                continue;
            }
            if (ev[i].index != 0) continue;
            ck_assert_int_lt(out->n, MAX_OUT);
            out->logprob[out->n] = ev[i].logprob;
            out->tokens[out->n++] = ev[i].token;
        }
    }
    ck_assert_int_eq(hl_engine_read(e, id, ev, 8, -1, &n, &err), HL_OK); // ended: returns at once
    ck_assert_int_eq(n, 0);
    hl_engine_release(e, id);
}

static uint64_t submit(hl_engine *e, const int32_t *t, int n, const hl_request_params *rp) {
    hl_error err = {0};
    uint64_t id = 0;
    ck_assert_msg(hl_engine_submit(e, t, n, rp, &id, &err) == HL_OK, "%s", err.msg);
    return id;
}

static void expect_same(const result *got, const result *want, bool logprobs) {
    ck_assert_int_eq(got->finish, want->finish);
    ck_assert_int_eq(got->n, want->n);
    ck_assert_int_eq(got->completion_tokens, want->completion_tokens);
    for (int i = 0; i < want->n; i++) {
        ck_assert_int_eq(got->tokens[i], want->tokens[i]);
        if (logprobs) ck_assert_msg(memcmp(&got->logprob[i], &want->logprob[i], sizeof(float)) == 0,
                                    "logprob %d: %.9g vs %.9g", i, got->logprob[i], want->logprob[i]);
    }
}

// Every block is back (none used) once the engine is idle.
static void expect_idle(hl_engine *e) {
    hl_engine_stats st;
    for (int i = 0; i < 200; i++) {
        hl_engine_get_stats(e, &st);
        if (st.running == 0 && st.waiting == 0 && st.kv_blocks_used == 0) break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(st.running, 0);
    ck_assert_int_eq(st.waiting, 0);
    ck_assert_int_eq(st.kv_blocks_used, 0);
    ck_assert_int_eq(st.kv_blocks_free, st.kv_blocks_total);
}

static void setup(void) { ref_open(); }
static void teardown(void) { ref_close(); }

// ---- tests ----

START_TEST(test_single_matches_reference) {
    hl_engine_params p = params(4, 8, 64); // prompt chunked in 64-token pieces
    hl_engine *e = engine(&p);
    int32_t t[150];
    make_prompt(t, 150, 1);
    hl_request_params rp = greedy(40);
    rp.sampling.logprobs = true;
    rp.sampling.ignore_eos = true;
    result want, got;
    ref_run(t, 150, &rp.sampling, &want);
    read_all(e, submit(e, t, 150, &rp), &got, 1);
    expect_same(&got, &want, true);
    ck_assert_int_eq(got.finish, HL_FINISH_LENGTH);
    ck_assert_int_eq(got.n, 40);

    // a stop id ends with STOP; the stop token is counted but not streamed
    const int32_t stop_id = want.tokens[5];
    rp.sampling.stop_ids = &stop_id;
    rp.sampling.n_stop_ids = 1;
    ref_run(t, 150, &rp.sampling, &want);
    read_all(e, submit(e, t, 150, &rp), &got, 1);
    expect_same(&got, &want, true);
    ck_assert_int_eq(got.finish, HL_FINISH_STOP);
    ck_assert_int_eq(got.completion_tokens, got.n + 1);
    expect_idle(e);
    hl_engine_free(e);
}
END_TEST

// The same request alone, among 12 others, with 16-token chunks, and with a cached prefix:
// bit-identical logprobs each time.
START_TEST(test_batch_invariance) {
    int32_t t[100], other[40];
    make_prompt(t, 100, 2);
    hl_request_params rp = greedy(24);
    rp.sampling.logprobs = true;
    rp.sampling.n_logprobs = 3;
    rp.sampling.ignore_eos = true;
    result want, got;
    ref_run(t, 100, &rp.sampling, &want);
    const int budgets[] = {512, 16, 37};
    for (int b = 0; b < 3; b++) {
        hl_engine_params p = params(4, 16, budgets[b]);
        p.prefix_cache = b != 2;
        hl_engine *e = engine(&p);
        uint64_t ids[12];
        for (int i = 0; i < 12; i++) {
            make_prompt(other, 40, 100 + (uint64_t)i);
            ids[i] = submit(e, other, 10 + 2 * i, &rp);
        }
        read_all(e, submit(e, t, 100, &rp), &got, 1);
        expect_same(&got, &want, true);
        read_all(e, submit(e, t, 100, &rp), &got, 1); // second time: prefix cached (b != 2)
        expect_same(&got, &want, true);
        ck_assert_int_eq(got.cached_tokens, b != 2 ? 96 : 0);
        for (int i = 0; i < 12; i++) read_all(e, ids[i], &got, 1);
        expect_idle(e);
        hl_engine_free(e);
    }
}
END_TEST

START_TEST(test_prefix_accounting) {
    hl_engine_params p = params(4, 4, 256);
    hl_engine *e = engine(&p);
    int32_t t[80];
    make_prompt(t, 80, 3);
    hl_request_params rp = greedy(3);
    rp.sampling.ignore_eos = true;
    result got;
    read_all(e, submit(e, t, 70, &rp), &got, 1);  // 69 / 16 = 4 blocks asked, none cached
    ck_assert_int_eq(got.cached_tokens, 0);
    read_all(e, submit(e, t, 70, &rp), &got, 1);  // 4 found
    ck_assert_int_eq(got.cached_tokens, 64);
    read_all(e, submit(e, t, 40, &rp), &got, 1);  // 39 / 16 = 2, both found
    ck_assert_int_eq(got.cached_tokens, 32);
    t[20] ^= 1;
    read_all(e, submit(e, t, 80, &rp), &got, 1);  // 79 / 16 = 4, only block 0 matches
    ck_assert_int_eq(got.cached_tokens, 16);
    hl_engine_stats st;
    hl_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.prefix_queries, 4 + 4 + 2 + 4);
    ck_assert_uint_eq(st.prefix_hits, 0 + 4 + 2 + 1);
    ck_assert_uint_eq(st.generated_tokens, 12);
    ck_assert_uint_eq(st.prompt_tokens, 70 + 6 + 8 + 64);
    ck_assert_int_gt(st.kv_blocks_cached, 0);
    hl_engine_free(e);
}
END_TEST

// Reads every choice of request id; tokens[i] gets choice i's tokens.
static void read_choices(hl_engine *e, uint64_t id, int n, int32_t (*tokens)[64], int *n_tok) {
    hl_event ev[16];
    int got = 0, n_fin = 0;
    memset(n_tok, 0, sizeof(int) * (size_t)n);
    while (n_fin < n) {
        ck_assert_int_eq(hl_engine_read(e, id, ev, 16, -1, &got, NULL), HL_OK);
        for (int i = 0; i < got; i++) {
            ck_assert(ev[i].index >= 0 && ev[i].index < n);
            if (ev[i].type == HL_EVENT_FINISH) {
                ck_assert_int_eq(ev[i].finish, HL_FINISH_LENGTH);
                ck_assert_int_eq(ev[i].completion_tokens, n_tok[ev[i].index]);
                n_fin++;
                continue;
            }
            tokens[ev[i].index][n_tok[ev[i].index]++] = ev[i].token;
        }
    }
    hl_engine_release(e, id);
}

START_TEST(test_n_choices) {
    hl_engine_params p = params(4, 3, 64); // 3 sequences: some choices wait for a seat
    hl_engine *e = engine(&p);
    int32_t t[37], a[5][64], b[5][64];
    int na[5], nb[5];
    make_prompt(t, 37, 4);
    hl_request_params rp = hl_request_default_params();
    rp.n = 5;
    rp.sampling.temperature = 1.5f;
    rp.sampling.has_seed = true;
    rp.sampling.seed = 42;
    rp.sampling.max_tokens = 12;
    rp.sampling.ignore_eos = true;
    read_choices(e, submit(e, t, 37, &rp), 5, a, na);
    read_choices(e, submit(e, t, 37, &rp), 5, b, nb);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(na[i], 12);
        ck_assert(memcmp(a[i], b[i], sizeof(int32_t) * 12) == 0); // reproducible
        for (int j = 0; j < i; j++) ck_assert(memcmp(a[i], a[j], sizeof(int32_t) * 12) != 0); // different
    }
    rp.n = 1; // choice 0 is what the request alone gives
    read_choices(e, submit(e, t, 37, &rp), 1, b, nb);
    ck_assert(memcmp(a[0], b[0], sizeof(int32_t) * 12) == 0);
    rp = greedy(10);
    rp.n = 4;
    rp.sampling.ignore_eos = true;
    read_choices(e, submit(e, t, 37, &rp), 4, a, na);
    for (int i = 1; i < 4; i++) ck_assert(memcmp(a[i], a[0], sizeof(int32_t) * 10) == 0);
    expect_idle(e);
    hl_engine_free(e);
}
END_TEST

START_TEST(test_cancel_and_deadline) {
    hl_engine_params p = params(4, 4, 64);
    hl_engine *e = engine(&p);
    int32_t t[30];
    make_prompt(t, 30, 5);
    hl_request_params rp = greedy(-1);
    rp.sampling.ignore_eos = true;
    uint64_t id = submit(e, t, 30, &rp);
    hl_event ev[4];
    int n = 0;
    ck_assert_int_eq(hl_engine_read(e, id, ev, 1, -1, &n, NULL), HL_OK); // the first token
    ck_assert_int_eq(ev[0].type, HL_EVENT_TOKEN);
    hl_engine_cancel(e, id);
    result got;
    read_all(e, id, &got, 1);
    ck_assert_int_eq(got.finish, HL_FINISH_CANCELLED);
    hl_engine_cancel(e, id); // released: ignored
    hl_engine_cancel(e, 9999);

    // Unlimited generation until the deadline: how many tokens fit in 300 ms depends on the
    // machine, so count them instead of storing them (read_all holds at most MAX_OUT).
    rp.deadline_ms = hl_time_ms() + 300;
    id = submit(e, t, 30, &rp);
    int n_tokens = 0;
    enum hl_finish_reason finish = HL_FINISH_NONE;
    while (finish == HL_FINISH_NONE) {
        ck_assert_int_eq(hl_engine_read(e, id, ev, 4, -1, &n, NULL), HL_OK);
        for (int i = 0; i < n; i++) {
            if (ev[i].type == HL_EVENT_TOKEN) n_tokens++;
            else finish = ev[i].finish;
        }
    }
    hl_engine_release(e, id);
    ck_assert_int_eq(finish, HL_FINISH_TIMEOUT);
    ck_assert_int_gt(n_tokens, 0);
    expect_idle(e);

    // release without reading cancels too
    rp.deadline_ms = 0;
    id = submit(e, t, 30, &rp);
    hl_engine_release(e, id);
    ck_assert_int_eq(hl_engine_fd(e, id), -1);
    ck_assert_int_eq(hl_engine_read(e, id, ev, 4, 0, &n, NULL), HL_ERR_INVAL);
    expect_idle(e);
    hl_engine_free(e);
}
END_TEST

START_TEST(test_submit_errors) {
    hl_engine_params p = params(1, 1, 16); // 64 blocks: max_ctx 1024 (synthetic n_ctx is larger)
    p.max_ctx = 100;
    p.max_waiting = 2;
    hl_engine *e = engine(&p);
    int32_t t[120];
    make_prompt(t, 120, 6);
    hl_request_params rp = greedy(10);
    hl_error err = {0};
    uint64_t id;
    ck_assert_int_eq(hl_engine_submit(e, t, 0, &rp, &id, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_engine_submit(e, t, 100, &rp, &id, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_engine_submit(e, t, 95, &rp, &id, &err), HL_ERR_INVAL); // 95 + 10 > 100
    ck_assert_ptr_nonnull(strstr(err.msg, "max_tokens"));
    int32_t bad = N_VOCAB;
    ck_assert_int_eq(hl_engine_submit(e, &bad, 1, &rp, &id, &err), HL_ERR_INVAL);
    rp.n = 0;
    ck_assert_int_eq(hl_engine_submit(e, t, 5, &rp, &id, &err), HL_ERR_INVAL);
    rp = greedy(10);
    rp.sampling.temperature = -1;
    ck_assert_int_eq(hl_engine_submit(e, t, 5, &rp, &id, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "temperature"));

    // a full queue says BUSY; everything accepted still finishes
    rp = greedy(15);
    rp.sampling.ignore_eos = true;
    uint64_t ids[20];
    int n_ok = 0, n_busy = 0;
    for (int i = 0; i < 20; i++) {
        int rc = hl_engine_submit(e, t, 80, &rp, &ids[n_ok], &err);
        ck_assert(rc == HL_OK || rc == HL_ERR_BUSY);
        n_ok += rc == HL_OK;
        n_busy += rc == HL_ERR_BUSY;
    }
    ck_assert_int_gt(n_busy, 0);
    result got;
    for (int i = 0; i < n_ok; i++) {
        read_all(e, ids[i], &got, 1);
        ck_assert_int_eq(got.finish, HL_FINISH_LENGTH);
    }
    expect_idle(e);
    hl_engine_free(e);

    p.max_seqs = 8;
    hl_engine_params q = p;
    q.max_batched_tokens = 4; // fewer than max_seqs
    ck_assert_ptr_null(hl_engine_create(&q, &err));
    q = p;
    q.model = "synthetic:nope:q8_0";
    ck_assert_ptr_null(hl_engine_create(&q, &err));
    q = p;
    q.device = "tpu";
    ck_assert_ptr_null(hl_engine_create(&q, &err));
}
END_TEST

START_TEST(test_fd_and_timeouts) {
    hl_engine_params p = params(4, 4, 64);
    hl_engine *e = engine(&p);
    int32_t t[20];
    make_prompt(t, 20, 7);
    hl_request_params rp = greedy(3);
    rp.sampling.ignore_eos = true;
    uint64_t id = submit(e, t, 20, &rp);
    int fd = hl_engine_fd(e, id);
    ck_assert_int_ge(fd, 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 5000), 1); // events arrive
    hl_event ev[8];
    int n = 0, total = 0;
    while (total < 4) { // 3 tokens + FINISH
        ck_assert_int_eq(hl_engine_read(e, id, ev, 8, 1000, &n, NULL), HL_OK);
        ck_assert_int_gt(n, 0);
        total += n;
    }
    ck_assert_int_eq(total, 4);
    ck_assert_int_eq(ev[n - 1].type, HL_EVENT_FINISH);
    ck_assert_int_eq(poll(&pfd, 1, 0), 0); // drained: not readable
    ck_assert_int_eq(hl_engine_read(e, id, ev, 8, 50, &n, NULL), HL_OK);
    ck_assert_int_eq(n, 0);
    hl_engine_release(e, id);

    // a timed read on a running request may come back empty, and never blocks forever
    rp = greedy(-1);
    rp.sampling.ignore_eos = true;
    id = submit(e, t, 20, &rp);
    double t0 = hl_time_ms();
    ck_assert_int_eq(hl_engine_read(e, id, ev, 1, 20, &n, NULL), HL_OK);
    ck_assert(hl_time_ms() - t0 < 2000);
    hl_engine_release(e, id);
    expect_idle(e);
    hl_engine_free(e);
}
END_TEST

// ---- many threads ----

#define N_THREADS 6
#define PER_THREAD 8

typedef struct thread_arg {
    hl_engine *e;
    int ith;
    result want[PER_THREAD];
    int32_t prompt[PER_THREAD][48];
    int n_prompt[PER_THREAD];
    int failures;
} thread_arg;

static uint64_t g_ids[N_THREADS * PER_THREAD];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    thread_arg *a = arg;
    hl_request_params rp = greedy(12);
    rp.sampling.ignore_eos = true;
    uint64_t ids[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        hl_error err = {0};
        if (hl_engine_submit(a->e, a->prompt[i], a->n_prompt[i], &rp, &ids[i], &err) != HL_OK) a->failures++;
        pthread_mutex_lock(&g_mu);
        g_ids[a->ith * PER_THREAD + i] = ids[i];
        pthread_mutex_unlock(&g_mu);
        if (i % 3 == 2) hl_engine_cancel(a->e, ids[i]); // cancel own
        pthread_mutex_lock(&g_mu);
        uint64_t other = g_ids[(a->ith * PER_THREAD + i * 7 + 5) % (N_THREADS * PER_THREAD)];
        pthread_mutex_unlock(&g_mu);
        if (i % 4 == 1 && other) hl_engine_cancel(a->e, other); // and someone else's, maybe
        hl_engine_stats st;
        hl_engine_get_stats(a->e, &st);
    }
    for (int i = 0; i < PER_THREAD; i++) {
        result got;
        hl_event ev[4];
        int n, fin = 0;
        memset(&got, 0, sizeof got);
        while (!fin) {
            if (hl_engine_read(a->e, ids[i], ev, 4, 100, &n, NULL) != HL_OK) {
                a->failures++;
                break;
            }
            for (int k = 0; k < n; k++) {
                if (ev[k].type == HL_EVENT_FINISH) {
                    fin = 1;
                    got.finish = ev[k].finish;
                } else if (got.n < MAX_OUT) {
                    got.tokens[got.n++] = ev[k].token;
                }
            }
        }
        hl_engine_release(a->e, ids[i]);
        // cancelled or not, what came is a prefix of the reference; uncancelled means all of it
        if (got.n > a->want[i].n || memcmp(got.tokens, a->want[i].tokens, sizeof(int32_t) * (size_t)got.n))
            a->failures++;
        if (got.finish != HL_FINISH_CANCELLED && (got.n != a->want[i].n || got.finish != a->want[i].finish))
            a->failures++;
    }
    return NULL;
}

START_TEST(test_threads) {
    hl_engine_params p = params(2, 8, 64);
    hl_engine *e = engine(&p);
    thread_arg *args = hl_xcalloc(N_THREADS, sizeof(thread_arg));
    memset(g_ids, 0, sizeof g_ids);
    hl_request_params rp = greedy(12);
    rp.sampling.ignore_eos = true;
    for (int t = 0; t < N_THREADS; t++) {
        args[t].e = e;
        args[t].ith = t;
        for (int i = 0; i < PER_THREAD; i++) {
            args[t].n_prompt[i] = 5 + (t * 11 + i * 5) % 40;
            make_prompt(args[t].prompt[i], 48, (uint64_t)(i % 3)); // shared prefixes
            args[t].prompt[i][args[t].n_prompt[i] - 1] = t * PER_THREAD + i;
            ref_run(args[t].prompt[i], args[t].n_prompt[i], &rp.sampling, &args[t].want[i]);
        }
    }
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) pthread_create(&th[t], NULL, worker, &args[t]);
    for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++) ck_assert_int_eq(args[t].failures, 0);
    expect_idle(e);
    free(args);
    hl_engine_free(e);
}
END_TEST

// Freeing the engine with requests in flight ends their streams (CANCELLED) first.
START_TEST(test_free_with_requests) {
    hl_engine_params p = params(2, 2, 32);
    hl_engine *e = engine(&p);
    int32_t t[40];
    make_prompt(t, 40, 8);
    hl_request_params rp = greedy(-1);
    rp.sampling.ignore_eos = true;
    for (int i = 0; i < 6; i++) submit(e, t, 10 + i, &rp);
    hl_engine_free(e);
}
END_TEST

// ---- stress ----

typedef struct stress_req {
    int32_t prompt[200];
    int n_prompt;
    hl_request_params rp;
    result want, got;
    uint64_t id;
    bool cancel;
} stress_req;

static int stress_count(void) {
    const char *s = getenv("HALYARD_STRESS_REQUESTS");
    int n = s ? atoi(s) : STRESS_DEFAULT;
    return n > 0 ? n : STRESS_DEFAULT;
}

static void stress_build(stress_req *r, hl_rng *rng, int i) {
    int32_t bases[4][128];
    for (int b = 0; b < 4; b++) make_prompt(bases[b], 128, 1000 + (uint64_t)b);
    const int shared = (int)(hl_rng_next(rng) % 129);        // a shared prefix of 0..128 tokens
    const int own = 1 + (int)(hl_rng_next(rng) % 60);
    memcpy(r->prompt, bases[hl_rng_next(rng) % 4], sizeof(int32_t) * (size_t)shared);
    make_prompt(r->prompt + shared, own, 5000 + (uint64_t)i);
    r->n_prompt = shared + own;
    r->rp = greedy(1 + (int)(hl_rng_next(rng) % 48));
    r->rp.sampling.ignore_eos = true;
    r->rp.sampling.logprobs = hl_rng_next(rng) % 4 == 0;
    r->rp.priority = (int)(hl_rng_next(rng) % 3);
    r->cancel = hl_rng_next(rng) % 8 == 0;
    ref_run(r->prompt, r->n_prompt, &r->rp.sampling, &r->want);
}

START_TEST(test_stress) {
    const int n = stress_count();
    stress_req *rq = hl_xcalloc((size_t)n, sizeof(stress_req));
    hl_rng rng = {99};
    for (int i = 0; i < n; i++) stress_build(&rq[i], &rng, i);
    // 64 blocks = 1024 tokens for up to 12 sequences of up to 236 tokens: preemption is certain
    hl_engine_params p = params(0, 12, 96);
    p.kv_cache_mb = 1;
    hl_engine *e = engine(&p);
    hl_engine_stats st;
    hl_engine_get_stats(e, &st);
    ck_assert_int_eq(st.kv_blocks_total, 64); // 1 MiB of 16 KiB blocks
    for (int i = 0; i < n; i++) {
        rq[i].id = submit(e, rq[i].prompt, rq[i].n_prompt, &rq[i].rp);
        if (hl_rng_next(&rng) % 3 == 0) { // random arrival: let the engine run a little
            struct timespec ts = {0, (long)(hl_rng_next(&rng) % 2000000)};
            nanosleep(&ts, NULL);
        }
        const int back = (int)(hl_rng_next(&rng) % 8); // cancel a recent one, at any stage
        if (i >= back && rq[i - back].cancel) hl_engine_cancel(e, rq[i - back].id);
    }
    int n_cancelled = 0;
    for (int i = 0; i < n; i++) {
        read_all(e, rq[i].id, &rq[i].got, 1);
        const result *g = &rq[i].got, *w = &rq[i].want;
        ck_assert_int_le(g->n, w->n);
        for (int k = 0; k < g->n; k++) ck_assert_msg(g->tokens[k] == w->tokens[k], "request %d token %d", i, k);
        if (g->finish == HL_FINISH_CANCELLED) {
            ck_assert(rq[i].cancel);
            n_cancelled++;
            continue;
        }
        expect_same(g, w, rq[i].rp.sampling.logprobs);
    }
    expect_idle(e);
    hl_engine_get_stats(e, &st);
    ck_assert_uint_gt(st.preemptions, 0);
    ck_assert_uint_gt(st.prefix_hits, 0);
    fprintf(stderr, "engine stress: %d requests, %d cancelled, %llu steps, %llu preemptions, prefix %llu/%llu\n", n,
            n_cancelled, (unsigned long long)st.steps, (unsigned long long)st.preemptions,
            (unsigned long long)st.prefix_hits, (unsigned long long)st.prefix_queries);
    free(rq);
    hl_engine_free(e);
}
END_TEST

Suite *engine_suite(void) {
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_single_matches_reference);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_prefix_accounting);
    tcase_add_test(tc, test_n_choices);
    tcase_add_test(tc, test_cancel_and_deadline);
    tcase_add_test(tc, test_submit_errors);
    tcase_add_test(tc, test_fd_and_timeouts);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_free_with_requests);
    tcase_add_test(tc, test_stress);
    suite_add_tcase(s, tc);
    return s;
}
