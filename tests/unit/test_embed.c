// Unit tests for embeddings: hl_llama_forward_hidden, the engine's embedding jobs
// (hl_engine_embed / hl_engine_embed_submit) and the /v1/embeddings request/response code
// (server/embeddings). Models are synthetic:tiny (dim 256, 512-token vocabulary, no tokenizer).
//   - hidden states are the final-norm states: output-weight · hidden == the forward pass's
//     logits (tiny f32, output weights dequantized here from the synthetic model's bytes);
//   - an embedding equals, bit for bit, the mean (double sum in token order, / n, to float) or
//     the last row of the hidden states captured here by a reference run on a separately loaded
//     model (one forward pass over the whole prompt): with prompts run whole, chunked
//     (budget 16 < length), and packed with other inputs in one job;
//   - mean and last differ; normalization gives unit vectors equal to hl_embed_l2_normalize of
//     the raw ones;
//   - embedding jobs running between generation steps change no generated token or logprob,
//     also when the KV pool is too small for both (the job waits), and every block is free after;
//   - errors: empty / too long input, bad ids, pooling and dim, unknown ids, queue full, cancel
//     (a cancelled job behind a long one ends at once), release without reading, freeing an
//     engine with queued jobs;
//   - server side: every `input` form, each 400, base64 (RFC 4648 vectors) and the response JSON
//     read back exactly (numbers and base64), text inputs tokenized as completion prompts.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/synth.h"
#include "server/embeddings.h"
#include "server/prompt.h"

#define N_VOCAB 512
#define SEED 5
#define DIM 256
#define TOK_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static void make_prompt(int32_t *t, int n, uint64_t seed) {
    hl_rng rng = {seed};
    for (int i = 0; i < n; i++) t[i] = (int32_t)(hl_rng_next(&rng) % N_VOCAB);
}

// ---- reference: the hidden states of one prompt, run whole on a separate model ----

typedef struct ref_ctx {
    hl_backend *be;
    hl_model *m;
    hl_kv_cache *kv;
    hl_llama *l;
} ref_ctx;

static ref_ctx ref_open(const char *model) {
    hl_error err = {0};
    ref_ctx r = {0};
    r.be = hl_backend_cpu_create(1, &err);
    ck_assert_msg(r.be, "%s", err.msg);
    hl_model_params mp = hl_model_default_params();
    mp.synth_n_vocab = N_VOCAB;
    mp.synth_seed = SEED;
    r.m = hl_model_load(model, r.be, &mp, &err);
    ck_assert_msg(r.m, "%s", err.msg);
    hl_kv_geom g = {.n_blocks = 64, .n_kv_heads = r.m->cfg.n_kv_heads, .head_dim = r.m->cfg.head_dim,
                    .kv_type = HL_DTYPE_F16};
    r.kv = hl_kv_cache_create(r.be, r.m->cfg.n_layers, &g, &err);
    ck_assert_msg(r.kv, "%s", err.msg);
    r.l = hl_llama_create(r.m, r.kv, 1024, 2, 1024, &err);
    ck_assert_msg(r.l, "%s", err.msg);
    return r;
}

static void ref_close(ref_ctx *r) {
    hl_llama_free(r->l);
    hl_kv_cache_free(r->kv);
    hl_model_free(r->m);
    hl_backend_free(r->be);
}

// Hidden states (n, DIM) of ids in one step; logits (n, N_VOCAB) too when asked (separate run).
static float *ref_hidden(ref_ctx *r, const int32_t *ids, int n, float *logits) {
    hl_error err = {0};
    hl_kv_seq seq = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(r->kv, &seq, n, &err), HL_OK);
    hl_llama_seq s = {.tokens = ids, .n_tokens = n, .blocks = seq.blocks, .n_blocks = seq.n_blocks};
    float *h = malloc(sizeof(float) * (size_t)n * DIM);
    ck_assert_msg(hl_llama_forward_hidden(r->l, &s, 1, h, &err) == HL_OK, "%s", err.msg);
    if (logits) {
        s.n_logits = n;
        ck_assert_msg(hl_llama_forward(r->l, &s, 1, logits, &err) == HL_OK, "%s", err.msg);
    }
    hl_kv_cache_seq_release(r->kv, &seq);
    return h;
}

// The pooling the engine documents: mean = (float)(double sum in token order / n); last row.
static void ref_pool(const float *h, int n, enum hl_pooling pooling, float *out) {
    if (pooling == HL_POOLING_LAST) {
        memcpy(out, h + (size_t)(n - 1) * DIM, sizeof(float) * DIM);
        return;
    }
    for (int d = 0; d < DIM; d++) {
        double s = 0;
        for (int t = 0; t < n; t++) s += h[(size_t)t * DIM + d];
        out[d] = (float)(s / n);
    }
}

static hl_engine *engine(int kv_mb, int max_seqs, int budget, int max_ctx, int max_waiting) {
    hl_engine_params p = hl_engine_default_params();
    p.model = "synthetic:tiny:q8_0";
    p.synth_n_vocab = N_VOCAB;
    p.synth_seed = SEED;
    p.n_threads = 2;
    p.kv_cache_mb = (size_t)kv_mb;
    p.max_seqs = max_seqs;
    p.max_batched_tokens = budget;
    p.max_ctx = max_ctx;
    if (max_waiting > 0) p.max_waiting = max_waiting;
    hl_error err = {0};
    hl_engine *e = hl_engine_create(&p, &err);
    ck_assert_msg(e, "%s", err.msg);
    return e;
}

static void assert_bits(const float *a, const float *b, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s: element %d: %.9g != %.9g", what, i,
                      (double)a[i], (double)b[i]);
}

// Every KV block is free again (embedding jobs only borrow them).
static void expect_idle(hl_engine *e) {
    hl_engine_stats st;
    for (int i = 0; i < 400; i++) {
        hl_engine_get_stats(e, &st);
        if (st.running == 0 && st.waiting == 0 && st.kv_blocks_used == 0) break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(st.kv_blocks_used, 0);
    ck_assert_int_eq(st.kv_blocks_free, st.kv_blocks_total);
}

// Reads job id to its FINISH and returns the finish reason (the event's prompt_tokens in *n_tokens).
static enum hl_finish_reason wait_job(hl_engine *e, uint64_t id, int *n_tokens) {
    hl_event ev;
    int n = 0;
    hl_error err = {0};
    ck_assert_int_eq(hl_engine_read(e, id, &ev, 1, -1, &n, &err), HL_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ev.type, HL_EVENT_FINISH);
    if (n_tokens) *n_tokens = ev.prompt_tokens;
    ck_assert_int_eq(hl_engine_read(e, id, &ev, 1, -1, &n, &err), HL_OK); // ended: returns at once
    ck_assert_int_eq(n, 0);
    return ev.finish;
}

// ---- hidden states ----

START_TEST(test_hidden_is_final_norm) {
    ref_ctx r = ref_open("synthetic:tiny:f32");
    hl_synth_model *syn = hl_synth_model_create(hl_synth_shape_find("tiny"), 0 /* F32 */, SEED, N_VOCAB, NULL);
    ck_assert_ptr_nonnull(syn);
    int wi = hl_synth_model_find(syn, "output.weight");
    if (wi < 0) wi = hl_synth_model_find(syn, "token_embd.weight"); // tied
    ck_assert_int_ge(wi, 0);
    hl_synth_tensor_info ti = hl_synth_model_tensor(syn, wi);
    ck_assert_int_eq(ti.ne[0], DIM);
    ck_assert_int_eq(ti.ne[1], N_VOCAB);
    void *raw = malloc(ti.n_bytes);
    float *w = malloc(sizeof(float) * DIM * N_VOCAB);
    ck_assert_int_eq(hl_synth_model_fill(syn, wi, raw, ti.n_bytes, NULL), HL_OK);
    ck_assert_int_eq(hl_quant_dequantize(ti.type, raw, w, (int64_t)DIM * N_VOCAB, NULL), HL_OK);
    free(raw);
    enum { N = 19 };
    int32_t ids[N];
    make_prompt(ids, N, 3);
    float *logits = malloc(sizeof(float) * N * N_VOCAB);
    float *h = ref_hidden(&r, ids, N, logits);
    double max_err = 0, ss = 0;
    for (int t = 0; t < N; t++) {
        for (int v = 0; v < N_VOCAB; v++) {
            double dot = 0;
            for (int d = 0; d < DIM; d++) dot += (double)w[(size_t)v * DIM + d] * h[(size_t)t * DIM + d];
            max_err = fmax(max_err, fabs(dot - logits[(size_t)t * N_VOCAB + v]));
            ss += dot * dot;
        }
    }
    const double rms = sqrt(ss / (N * N_VOCAB));
    fprintf(stderr, "embed: |W_out . hidden - logits| max %.3g (rms logit %.3g)\n", max_err, rms);
    ck_assert_msg(rms > 0.5, "flat logits (rms %g)", rms);
    ck_assert_msg(max_err <= 1e-3 * rms, "W_out . hidden differs from the logits by %g", max_err);
    // n_logits must be 0 in a hidden-state step
    hl_kv_seq seq = {0};
    ck_assert_int_eq(hl_kv_cache_seq_reserve(r.kv, &seq, N, NULL), HL_OK);
    hl_llama_seq s = {.tokens = ids, .n_tokens = N, .blocks = seq.blocks, .n_blocks = seq.n_blocks, .n_logits = 1};
    hl_error err = {0};
    ck_assert_int_eq(hl_llama_forward_hidden(r.l, &s, 1, h, &err), HL_ERR_INVAL);
    hl_kv_cache_seq_release(r.kv, &seq);
    free(h);
    free(logits);
    free(w);
    hl_synth_model_free(syn);
    ref_close(&r);
}
END_TEST

// ---- embeddings against the reference ----

// Embeds ids (n) with hl_engine_embed under both poolings and checks them against ref.
static void check_prompt(hl_engine *e, ref_ctx *r, const int32_t *ids, int n, const char *what) {
    float *h = ref_hidden(r, ids, n, NULL);
    float want[DIM], got[DIM], last[DIM];
    hl_error err = {0};
    char msg[96];
    ref_pool(h, n, HL_POOLING_MEAN, want);
    ck_assert_msg(hl_engine_embed(e, ids, n, HL_POOLING_MEAN, got, DIM, &err) == HL_OK, "%s", err.msg);
    snprintf(msg, sizeof msg, "%s: mean of %d tokens", what, n);
    assert_bits(got, want, DIM, msg);
    ref_pool(h, n, HL_POOLING_LAST, want);
    ck_assert_msg(hl_engine_embed(e, ids, n, HL_POOLING_LAST, last, DIM, &err) == HL_OK, "%s", err.msg);
    snprintf(msg, sizeof msg, "%s: last of %d tokens", what, n);
    assert_bits(last, want, DIM, msg);
    if (n > 1) ck_assert_msg(memcmp(got, last, sizeof got) != 0, "%s: mean == last", what);
    free(h);
}

START_TEST(test_matches_reference) {
    ref_ctx r = ref_open("synthetic:tiny:q8_0");
    int32_t ids[200];
    make_prompt(ids, 200, 11);
    hl_engine *whole = engine(4, 4, 256, 0, 0), *chunked = engine(4, 4, 16, 0, 0);
    const int lens[] = {1, 2, 23, 64, 200};
    for (int i = 0; i < 5; i++) {
        check_prompt(whole, &r, ids, lens[i], "budget 256");
        check_prompt(chunked, &r, ids, lens[i], "budget 16");
    }
    expect_idle(whole);
    expect_idle(chunked);
    hl_engine_free(whole);
    hl_engine_free(chunked);
    ref_close(&r);
}
END_TEST

START_TEST(test_jobs_and_normalize) {
    hl_engine *e = engine(4, 4, 64, 0, 0);
    int32_t ids[400];
    make_prompt(ids, 400, 21);
    // 7 inputs: packed several per forward pass (budget 64, 4 sequences) and one chunked (100)
    const int start[] = {0, 3, 26, 27, 127, 160, 200, 240};
    enum { N_IN = 7 };
    float *raw = malloc(sizeof(float) * N_IN * DIM), *unit = malloc(sizeof(float) * N_IN * DIM);
    float one[DIM];
    hl_error err = {0};
    for (int pooling = HL_POOLING_MEAN; pooling <= HL_POOLING_LAST; pooling++) {
        hl_embed_params p = {.pooling = (enum hl_pooling)pooling, .normalize = false};
        uint64_t id_raw = 0, id_unit = 0;
        ck_assert_int_eq(hl_engine_embed_submit(e, ids, start, N_IN, &p, &id_raw, &err), HL_OK);
        p.normalize = true;
        ck_assert_int_eq(hl_engine_embed_submit(e, ids, start, N_IN, &p, &id_unit, &err), HL_OK);
        int n_tokens = 0;
        ck_assert_int_eq(wait_job(e, id_raw, &n_tokens), HL_FINISH_STOP);
        ck_assert_int_eq(n_tokens, start[N_IN]);
        ck_assert_int_eq(wait_job(e, id_unit, NULL), HL_FINISH_STOP);
        ck_assert_int_eq(hl_engine_embed_result(e, id_raw, raw, N_IN, DIM, &err), HL_OK);
        ck_assert_int_eq(hl_engine_embed_result(e, id_unit, unit, N_IN, DIM, &err), HL_OK);
        ck_assert_int_eq(hl_engine_embed_result(e, id_raw, raw, N_IN - 1, DIM, &err), HL_ERR_INVAL);
        hl_engine_release(e, id_raw);
        hl_engine_release(e, id_unit);
        ck_assert_int_eq(hl_engine_embed_result(e, id_raw, raw, N_IN, DIM, &err), HL_ERR_INVAL); // released
        for (int i = 0; i < N_IN; i++) {
            const float *v = raw + (size_t)i * DIM, *u = unit + (size_t)i * DIM;
            ck_assert_int_eq(hl_engine_embed(e, ids + start[i], start[i + 1] - start[i], p.pooling, one, DIM, &err),
                             HL_OK);
            assert_bits(v, one, DIM, "a job's input == the input alone");
            double norm = 0;
            for (int d = 0; d < DIM; d++) norm += (double)u[d] * u[d];
            ck_assert_msg(fabs(sqrt(norm) - 1) < 1e-6, "input %d: norm %.9f", i, sqrt(norm));
            memcpy(one, v, sizeof one);
            hl_embed_l2_normalize(one, DIM);
            assert_bits(u, one, DIM, "normalized == hl_embed_l2_normalize(raw)");
        }
    }
    float zero[4] = {0};
    hl_embed_l2_normalize(zero, 4);
    ck_assert(zero[0] == 0 && zero[3] == 0);
    expect_idle(e);
    hl_engine_free(e);
    free(raw);
    free(unit);
}
END_TEST

// ---- embeddings between generation steps ----

typedef struct gen_out {
    int32_t tokens[64];
    float logprob[64];
    int n;
} gen_out;

static void read_gen(hl_engine *e, uint64_t id, gen_out *out) {
    memset(out, 0, sizeof *out);
    hl_event ev[8];
    int n = 0;
    for (bool done = false; !done;) {
        ck_assert_int_eq(hl_engine_read(e, id, ev, 8, -1, &n, NULL), HL_OK);
        for (int i = 0; i < n; i++) {
            done = done || ev[i].type == HL_EVENT_FINISH;
            if (ev[i].type != HL_EVENT_TOKEN) continue;
            ck_assert_int_lt(out->n, 64);
            out->logprob[out->n] = ev[i].logprob;
            out->tokens[out->n++] = ev[i].token;
        }
    }
    hl_engine_release(e, id);
}

// Greedy generations of 4 prompts; with embed_jobs, embedding jobs are submitted once the
// generations hold most of the KV pool, so their 300-token input waits for blocks.
static void generate(hl_engine *e, bool embed_jobs, gen_out *out) {
    int32_t ids[4][200], big[610];
    make_prompt(big, 610, 77);
    hl_request_params rp = hl_request_default_params();
    rp.sampling.temperature = 0;
    rp.sampling.max_tokens = 40;
    rp.sampling.ignore_eos = true;
    rp.sampling.logprobs = true;
    uint64_t gid[4], jid[4];
    const int start[] = {0, 150, 300, 310, 610};
    hl_error err = {0};
    for (int i = 0; i < 4; i++) {
        make_prompt(ids[i], 200, 100 + (uint64_t)i);
        ck_assert_int_eq(hl_engine_submit(e, ids[i], 200, &rp, &gid[i], &err), HL_OK);
    }
    hl_engine_stats st = {0};
    for (int i = 0; embed_jobs && i < 20000 && st.kv_blocks_used < 52; i++) { // 4 x 13 blocks: decoding
        hl_engine_get_stats(e, &st);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; embed_jobs && i < 4; i++)
        ck_assert_int_eq(hl_engine_embed_submit(e, big, start, 4, NULL, &jid[i], &err), HL_OK);
    for (int i = 0; i < 4; i++) read_gen(e, gid[i], &out[i]);
    for (int i = 0; embed_jobs && i < 4; i++) {
        ck_assert_int_eq(wait_job(e, jid[i], NULL), HL_FINISH_STOP);
        hl_engine_release(e, jid[i]);
    }
}

START_TEST(test_between_generation_steps) {
    // 1 MiB of KV: 64 blocks; four 240-token generations need 52 to 60 of them, a 300-token input 19
    hl_engine *e = engine(1, 4, 64, 512, 0);
    gen_out alone[4], mixed[4];
    generate(e, false, alone);
    generate(e, true, mixed);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(mixed[i].n, alone[i].n);
        for (int t = 0; t < alone[i].n; t++) {
            ck_assert_int_eq(mixed[i].tokens[t], alone[i].tokens[t]);
            ck_assert_msg(memcmp(&mixed[i].logprob[t], &alone[i].logprob[t], sizeof(float)) == 0,
                          "request %d token %d: logprob changed by embedding jobs", i, t);
        }
    }
    expect_idle(e);
    hl_engine_free(e);
}
END_TEST

// ---- errors ----

START_TEST(test_errors) {
    hl_engine *e = engine(1, 2, 32, 100, 2);
    int32_t ids[200];
    make_prompt(ids, 200, 4);
    float v[DIM];
    hl_error err = {0};
    ck_assert_int_eq(hl_engine_embed_dim(e), DIM);
    ck_assert_int_eq(hl_engine_embed(e, ids, 0, HL_POOLING_MEAN, v, DIM, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
    ck_assert_int_eq(hl_engine_embed(e, NULL, 3, HL_POOLING_MEAN, v, DIM, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_engine_embed(e, ids, 101, HL_POOLING_MEAN, v, DIM, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "context"));
    ck_assert_int_eq(hl_engine_embed(e, ids, 100, HL_POOLING_LAST, v, DIM, &err), HL_OK); // the whole context
    ck_assert_int_eq(hl_engine_embed(e, ids, 5, HL_POOLING_MEAN, v, DIM - 1, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_engine_embed(e, ids, 5, (enum hl_pooling)7, v, DIM, &err), HL_ERR_INVAL);
    int32_t bad[2] = {1, N_VOCAB};
    ck_assert_int_eq(hl_engine_embed(e, bad, 2, HL_POOLING_MEAN, v, DIM, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "vocabulary"));
    const int empty_second[] = {0, 4, 4};
    uint64_t id = 0;
    ck_assert_int_eq(hl_engine_embed_submit(e, ids, empty_second, 2, NULL, &id, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_engine_embed_submit(e, ids, empty_second, 0, NULL, &id, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_engine_embed_result(e, 12345, v, 1, DIM, &err), HL_ERR_INVAL);

    // a full queue (max_waiting 2) says BUSY; every accepted job still ends with its vectors
    int start[41];
    for (int i = 0; i <= 40; i++) start[i] = i * 5;
    uint64_t ids_ok[20];
    int n_ok = 0, n_busy = 0;
    for (int i = 0; i < 20; i++) {
        int rc = hl_engine_embed_submit(e, ids, start, 40, NULL, &ids_ok[n_ok], &err);
        ck_assert(rc == HL_OK || rc == HL_ERR_BUSY);
        n_ok += rc == HL_OK;
        n_busy += rc == HL_ERR_BUSY;
    }
    ck_assert_int_gt(n_busy, 0);
    float *out = malloc(sizeof(float) * 40 * DIM);
    for (int i = 0; i < n_ok; i++) {
        ck_assert_int_eq(wait_job(e, ids_ok[i], NULL), HL_FINISH_STOP);
        ck_assert_int_eq(hl_engine_embed_result(e, ids_ok[i], out, 40, DIM, &err), HL_OK);
        hl_engine_release(e, ids_ok[i]);
    }
    // cancel: the job ends CANCELLED (or had already finished) and has vectors only then
    ck_assert_int_eq(hl_engine_embed_submit(e, ids, start, 40, NULL, &id, &err), HL_OK);
    hl_engine_cancel(e, id);
    enum hl_finish_reason fin = wait_job(e, id, NULL);
    ck_assert(fin == HL_FINISH_CANCELLED || fin == HL_FINISH_STOP);
    ck_assert_int_eq(hl_engine_embed_result(e, id, out, 40, DIM, &err), fin == HL_FINISH_STOP ? HL_OK : HL_ERR_INVAL);
    hl_engine_release(e, id);
    // a cancelled job queued behind a long one ends at once, not after it
    int32_t *many = malloc(sizeof(int32_t) * 100 * 100);
    int long_start[101];
    make_prompt(many, 100 * 100, 8);
    for (int i = 0; i <= 100; i++) long_start[i] = i * 100; // 100 inputs of 100 tokens, 4 chunks each
    uint64_t id_long = 0;
    ck_assert_int_eq(hl_engine_embed_submit(e, many, long_start, 100, NULL, &id_long, &err), HL_OK);
    ck_assert_int_eq(hl_engine_embed_submit(e, ids, start, 40, NULL, &id, &err), HL_OK);
    hl_engine_cancel(e, id);
    ck_assert_int_eq(wait_job(e, id, NULL), HL_FINISH_CANCELLED);
    hl_event ev;
    int n_ev = -1;
    ck_assert_int_eq(hl_engine_read(e, id_long, &ev, 1, 0, &n_ev, &err), HL_OK);
    ck_assert_int_eq(n_ev, 0); // the long job is still running
    ck_assert_int_eq(wait_job(e, id_long, NULL), HL_FINISH_STOP);
    hl_engine_release(e, id);
    hl_engine_release(e, id_long);
    free(many);
    // released without reading; a generation id has no vectors
    ck_assert_int_eq(hl_engine_embed_submit(e, ids, start, 40, NULL, &id, &err), HL_OK);
    hl_engine_release(e, id);
    hl_request_params rp = hl_request_default_params();
    rp.sampling.max_tokens = 2;
    ck_assert_int_eq(hl_engine_submit(e, ids, 5, &rp, &id, &err), HL_OK);
    ck_assert_int_eq(hl_engine_embed_result(e, id, out, 1, DIM, &err), HL_ERR_INVAL);
    hl_engine_release(e, id);
    expect_idle(e);
    // freed with jobs queued: they end, nothing leaks or hangs
    ck_assert_int_eq(hl_engine_embed_submit(e, ids, start, 40, NULL, &id, &err), HL_OK);
    hl_engine_free(e);
    free(out);
}
END_TEST

// ---- server: /v1/embeddings requests and responses ----

static int parse(const char *body, hl_embeddings_request *r) {
    hl_api_error e;
    cJSON *root = cJSON_Parse(body);
    ck_assert_msg(root, "bad test JSON: %s", body);
    int rc = hl_embeddings_parse(root, r, &e);
    cJSON_Delete(root);
    if (rc == HL_OK) return 200;
    ck_assert_str_eq(e.type, "invalid_request_error");
    ck_assert_msg(e.param[0], "no param for %s", body);
    return e.status;
}

START_TEST(test_parse_inputs) {
    hl_embeddings_request r;
    ck_assert_int_eq(parse("{\"input\": \"hello\"}", &r), 200);
    ck_assert_int_eq(r.n_inputs, 1);
    ck_assert_str_eq(r.texts[0], "hello");
    ck_assert(!r.base64 && r.params.pooling == HL_POOLING_MEAN && r.params.normalize && r.dimensions == 0);
    hl_embeddings_request_free(&r);
    ck_assert_int_eq(parse("{\"input\": [\"a\", \"b\", \"c\"], \"model\": \"m\", \"user\": \"u\", "
                           "\"encoding_format\": \"base64\", \"dimensions\": 576, \"pooling\": \"last\", "
                           "\"normalize\": false}", &r), 200);
    ck_assert_int_eq(r.n_inputs, 3);
    ck_assert_str_eq(r.texts[2], "c");
    ck_assert_str_eq(r.model, "m");
    ck_assert(r.base64 && r.dimensions == 576 && r.params.pooling == HL_POOLING_LAST && !r.params.normalize);
    hl_embeddings_request_free(&r);
    ck_assert_int_eq(parse("{\"input\": [5, 6, 7], \"encoding_format\": \"float\"}", &r), 200);
    ck_assert_int_eq(r.n_inputs, 1);
    ck_assert_int_eq(r.n_tokens, 3);
    ck_assert(r.ids[0] == 5 && r.ids[2] == 7 && r.start[1] == 3 && !r.texts);
    hl_embeddings_request_free(&r);
    ck_assert_int_eq(parse("{\"input\": [[1, 2], [3], [4, 5, 6]]}", &r), 200);
    ck_assert_int_eq(r.n_inputs, 3);
    ck_assert(r.start[1] == 2 && r.start[2] == 3 && r.start[3] == 6 && r.ids[5] == 6);
    hl_embeddings_request_free(&r);

    const char *bad[] = {
        "{}", "{\"input\": null}", "{\"input\": \"\"}", "{\"input\": []}", "{\"input\": 5}",
        "{\"input\": {\"a\": 1}}", "{\"input\": [\"a\", \"\"]}", "{\"input\": [\"a\", 1]}", "{\"input\": [1, \"a\"]}",
        "{\"input\": [1.5]}", "{\"input\": [-1]}", "{\"input\": [[1], []]}", "{\"input\": [[1], 2]}",
        "{\"input\": [[1], [\"a\"]]}", "{\"input\": [true]}", "{\"input\": \"a\", \"encoding_format\": \"hex\"}",
        "{\"input\": \"a\", \"encoding_format\": 1}", "{\"input\": \"a\", \"pooling\": \"max\"}",
        "{\"input\": \"a\", \"dimensions\": \"8\"}", "{\"input\": \"a\", \"dimensions\": 0}",
        "{\"input\": \"a\", \"normalize\": \"yes\"}", "{\"input\": \"a\", \"model\": 3}",
        "{\"input\": \"a\", \"user\": []}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(parse(bad[i], &r) == 400, "accepted: %s", bad[i]);
        hl_embeddings_request_free(&r);
    }
    // entries: 2048 allowed, 2049 not
    for (int n = HL_EMBEDDINGS_MAX_INPUTS; n <= HL_EMBEDDINGS_MAX_INPUTS + 1; n++) {
        hl_buf b = {0};
        hl_buf_puts(&b, "{\"input\": [\"x\"");
        for (int i = 1; i < n; i++) hl_buf_puts(&b, ",\"x\"");
        hl_buf_puts(&b, "]}");
        ck_assert_int_eq(parse(b.data, &r), n == HL_EMBEDDINGS_MAX_INPUTS ? 200 : 400);
        ck_assert_int_eq(r.n_inputs, n == HL_EMBEDDINGS_MAX_INPUTS ? n : 0);
        hl_embeddings_request_free(&r);
        hl_buf_free(&b);
    }
}
END_TEST

START_TEST(test_encode) {
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open(TOK_MODEL, &err);
    ck_assert_msg(g != NULL, "%s (run: sh tools/fetch_model.sh models)", err.msg);
    hl_tokenizer *tok = hl_tokenizer_create_from_gguf(g, &err);
    hl_gguf_free(g);
    ck_assert_msg(tok, "%s", err.msg);
    hl_embeddings_request r;
    hl_api_error e;
    ck_assert_int_eq(parse("{\"input\": [\"The cat sat on the mat\", \"hi\"]}", &r), 200);
    ck_assert_int_eq(hl_embeddings_encode(&r, tok, 2048, &e), HL_OK);
    hl_tokens want = {0};
    ck_assert_int_eq(hl_prompt_encode_text(tok, "The cat sat on the mat", &want, NULL), HL_OK);
    ck_assert_int_eq(r.start[1], (int)want.n);
    ck_assert_int_eq(memcmp(r.ids, want.ids, want.n * sizeof(int32_t)), 0);
    ck_assert_int_eq(r.n_tokens, r.start[2]);
    ck_assert_int_gt(r.start[2], r.start[1]);
    hl_tokens_free(&want);
    hl_embeddings_request_free(&r);
    // too long for the context; ids outside the vocabulary
    ck_assert_int_eq(parse("{\"input\": \"one two three four five six\"}", &r), 200);
    ck_assert_int_eq(hl_embeddings_encode(&r, tok, 3, &e), HL_ERR_INVAL);
    ck_assert_str_eq(e.code, "context_length_exceeded");
    hl_embeddings_request_free(&r);
    ck_assert_int_eq(parse("{\"input\": [[1, 2], [3, 1000000]]}", &r), 200);
    ck_assert_int_eq(hl_embeddings_encode(&r, tok, 2048, &e), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(e.message, "vocabulary"));
    hl_embeddings_request_free(&r);
    hl_tokenizer_free(tok);
}
END_TEST

static int b64_value(char c) {
    const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(abc, c);
    return p && c ? (int)(p - abc) : -1;
}

// A plain decoder written here (4 characters -> 3 bytes) to read base64 back.
static size_t b64_decode(const char *s, uint8_t *out) {
    size_t n = 0, len = strlen(s);
    ck_assert_int_eq(len % 4, 0);
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            pad += s[i + k] == '=';
            int x = s[i + k] == '=' ? 0 : b64_value(s[i + k]);
            ck_assert_int_ge(x, 0);
            v = v << 6 | (uint32_t)x;
        }
        for (int k = 0; k < 3 - pad; k++) out[n++] = (uint8_t)(v >> (16 - 8 * k));
    }
    return n;
}

START_TEST(test_response) {
    // RFC 4648 test vectors
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        hl_buf b = {0};
        hl_embeddings_base64((const uint8_t *)in[i], strlen(in[i]), &b);
        ck_assert_str_eq(b.data ? b.data : "", want[i]);
        hl_buf_free(&b);
    }
    float v[2][5] = {{1.0f, -0.0f, 3.14159274f, 1e-30f, -123456.789f}, {0.1f, 0.2f, 1.17549435e-38f, 7.0f, -1.5f}};
    hl_embeddings_request r;
    for (int fmt = 0; fmt < 2; fmt++) {
        ck_assert_int_eq(parse(fmt ? "{\"input\": [[1], [2, 3]], \"encoding_format\": \"base64\"}"
                                   : "{\"input\": [[1], [2, 3]]}", &r), 200);
        hl_buf b = {0};
        hl_api_error e;
        ck_assert_int_eq(hl_embeddings_response(&r, &v[0][0], 5, "tiny", &b, &e), HL_OK);
        cJSON *root = cJSON_Parse(b.data);
        ck_assert_ptr_nonnull(root);
        ck_assert_str_eq(cJSON_GetObjectItem(root, "object")->valuestring, "list");
        ck_assert_str_eq(cJSON_GetObjectItem(root, "model")->valuestring, "tiny");
        cJSON *u = cJSON_GetObjectItem(root, "usage");
        ck_assert_int_eq(cJSON_GetObjectItem(u, "prompt_tokens")->valueint, 3);
        ck_assert_int_eq(cJSON_GetObjectItem(u, "total_tokens")->valueint, 3);
        cJSON *data = cJSON_GetObjectItem(root, "data");
        ck_assert_int_eq(cJSON_GetArraySize(data), 2);
        for (int i = 0; i < 2; i++) {
            cJSON *d = cJSON_GetArrayItem(data, i);
            ck_assert_str_eq(cJSON_GetObjectItem(d, "object")->valuestring, "embedding");
            ck_assert_int_eq(cJSON_GetObjectItem(d, "index")->valueint, i);
            cJSON *emb = cJSON_GetObjectItem(d, "embedding");
            float got[5];
            if (fmt) {
                uint8_t bytes[20];
                ck_assert_int_eq(b64_decode(emb->valuestring, bytes), 20);
                for (int k = 0; k < 5; k++) { // little-endian float32
                    uint32_t x = (uint32_t)bytes[4 * k] | (uint32_t)bytes[4 * k + 1] << 8 |
                                 (uint32_t)bytes[4 * k + 2] << 16 | (uint32_t)bytes[4 * k + 3] << 24;
                    memcpy(&got[k], &x, 4);
                }
            } else {
                ck_assert_int_eq(cJSON_GetArraySize(emb), 5);
                for (int k = 0; k < 5; k++) got[k] = (float)cJSON_GetArrayItem(emb, k)->valuedouble;
            }
            assert_bits(got, v[i], 5, fmt ? "base64 round trip" : "JSON numbers round trip");
        }
        cJSON_Delete(root);
        hl_buf_free(&b);
        v[1][3] = fmt ? NAN : v[1][3];
        hl_embeddings_request_free(&r);
    }
    // a non-finite value is a 500, not invalid JSON
    ck_assert_int_eq(parse("{\"input\": [[1], [2, 3]]}", &r), 200);
    hl_buf b = {0};
    hl_api_error e;
    ck_assert_int_eq(hl_embeddings_response(&r, &v[0][0], 5, "tiny", &b, &e), HL_ERR_INVAL);
    ck_assert_int_eq(e.status, 500);
    ck_assert_uint_eq(b.len, 0);
    hl_embeddings_request_free(&r);
}
END_TEST

Suite *embed_suite(void) {
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_hidden_is_final_norm);
    tcase_add_test(tc, test_matches_reference);
    tcase_add_test(tc, test_jobs_and_normalize);
    tcase_add_test(tc, test_between_generation_steps);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("server");
    tcase_add_test(ts, test_parse_inputs);
    tcase_add_test(ts, test_encode);
    tcase_add_test(ts, test_response);
    suite_add_tcase(s, ts);
    return s;
}
