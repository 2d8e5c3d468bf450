// engine: the thread-safe serving engine (see engine.h).
//
// Threads. Any thread calls submit / cancel / read / fd / release / stats; they share with the
// engine thread only what is marked "guarded by e->mu": the pending-request queue, the
// stream table, each stream's event ring and flags, and the stats snapshot. Everything else
// (model, KV cache, scheduler, samplers, the live requests) belongs to the engine thread.
// A request is built (prompt copied, samplers created) by the submitting thread and handed
// over through the pending queue; from then on only the engine thread touches it.
//
// Streams. Each request has a stream: a growable ring of events (never full, so the engine
// never waits for a slow reader and nothing is dropped), a condition variable for blocking
// reads and an eventfd that is readable exactly while the ring is non-empty. A stream is
// freed once both sides are done with it: the reader (hl_engine_release) and the engine
// (the last FINISH pushed).
//
// Each engine step: take new requests and cancellations under the lock; end cancelled and
// timed-out requests (their blocks go back at once); schedule (engine/sched); run one forward
// pass over the batch; sample each sequence whose chunk reached its end (forking the n > 1
// choices off choice 0 when its prompt is done); push the events and the stats under the lock.
//
// Embedding jobs share the streams, the lock and the queue limit with generation; what a job
// computes (checks, forward passes, pooling) is engine/embed_job's, called from embed_step.
#include "engine/engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "engine/embed_job.h"
#include "engine/kv_cache.h"
#include "engine/llama.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/sched.h"

#define N_BUCKETS 1024  // stream table buckets (chained)
#define MAX_N 128       // completions of one request at most (OpenAI's n limit)
#define DEVICE_RESERVE ((size_t)512 << 20) // device scratch beyond the activations

typedef struct stream {
    uint64_t id;
    int efd;                 // eventfd: readable while n > 0
    pthread_cond_t cv;       // signalled when events arrive
    // guarded by e->mu:
    hl_event *ev;            // (cap) ring
    int head, n, cap;
    int n_choices, n_finished; // FINISH events pushed so far
    bool cancel;             // hl_engine_cancel / release asked to end the request
    bool released;           // the reader is done (hl_engine_release)
    bool engine_done;        // the engine pushed the last FINISH and dropped the stream
    int n_readers;           // threads blocked in hl_engine_read on it (it outlives them)
    float *embed;            // embedding jobs: (n_embed, dim) vectors once finished, owned
    int n_embed;
    struct stream *hnext;    // bucket chain (while not released)
} stream;

typedef struct choice {
    hl_seq seq;              // its tokens and blocks
    hl_sampler *sampler;     // owned
    bool done;
} choice;

typedef struct request {
    uint64_t id;
    stream *st;              // shared; its guarded fields under e->mu
    int n;
    choice *ch;              // (n) owned
    int n_done;
    bool forked;             // choices 1.. were forked off choice 0
    bool cancelled;          // copied from st->cancel under the lock (engine thread)
    double deadline_ms;
    double t_submit, t_sched, t_first;
    struct request *next;    // pending queue, then the engine's live list
} request;

// An embedding job (hl_engine_embed_submit): built by the submitting thread, then the engine's.
typedef struct embed_job {
    stream *st;              // shared; its guarded fields under e->mu
    hl_embed_job job;        // its inputs and vectors (out: owned until handed to the stream)
    bool cancelled;          // copied from st->cancel under the lock (engine thread)
    double t_submit, t_sched;
    struct embed_job *next_job; // pending queue, then the engine's live list
} embed_job;

typedef struct outbox_item {
    stream *st;
    hl_event ev;
    bool last;               // the stream's final event: the engine lets go of it after
} outbox_item;

struct hl_engine {
    hl_engine_params p;
    char *model_path, *tokenizer_from, *device; // owned copies of p's strings
    hl_backend *be;          // owned
    hl_model *model;         // owned
    hl_kv_cache *kv;         // owned
    hl_llama *llama;         // owned
    hl_sched *sched;         // owned
    size_t dev_free_at_start; // backend memory free before the weights (0: the backend cannot say)
    int64_t n_forward;       // forward steps run (engine thread): counts --profile-steps
    int max_ctx, n_vocab;
    int32_t eog[HL_SAMPLER_MAX_EOG_IDS];
    int n_eog;
    pthread_t thread;
    bool thread_started;
    // engine thread only:
    float *logits;           // (max_seqs, n_vocab)
    // Steps that sample from top-k candidates (the backend's topk op; see plan_rows):
    float *tk_vals;          // (max_seqs, tk_k) the rows' best logits
    int32_t *tk_ids;         // (max_seqs, tk_k) their token ids
    float *tk_lse;           // (max_seqs) the rows' log-sum-exp at tk_itemp
    float *tk_itemp;         // (max_seqs) each row's inv_temp for the topk op (the samplers' choice)
    bool *tk_full;           // (max_seqs) rows downloaded whole (a sampler needs the full row, or
                             // a draw fell past the candidates and fetched it after the step)
    int tk_k;                // candidates per row this step; 0: every row whole
    uint64_t step_cand_rows, step_fallbacks; // this step's candidate rows / rows fetched whole after
    hl_llama_seq *lseqs;     // (max_seqs)
    request *live;           // requests handed over and not finished
    outbox_item *out;        // (cap_out) events of the current step
    int n_out, cap_out;
    uint64_t step_prompt_tokens, step_generated;
    // shared:
    pthread_mutex_t mu;
    pthread_cond_t cv;       // wakes the engine thread
    request *pending_head, *pending_tail; // guarded by e->mu
    int n_pending;           // guarded by e->mu
    int n_cancel;            // guarded by e->mu: cancellations not yet seen by the engine
    bool stopping;           // guarded by e->mu
    uint64_t next_id;        // guarded by e->mu
    stream *buckets[N_BUCKETS]; // guarded by e->mu
    hl_engine_stats stats;   // guarded by e->mu
    // embeddings:
    embed_job *embed_head, *embed_tail; // guarded by e->mu: submitted, not yet taken
    int n_embed_jobs;        // guarded by e->mu: submitted and not finished
    embed_job *embed_live;   // engine thread: taken jobs, oldest first
    hl_embed_job_ctx emb;    // limits set at load (read by any thread); scratch: engine thread
};

hl_engine_params hl_engine_default_params(void) {
    return (hl_engine_params){.device = "cpu", .kv_cache_fraction = 0.9f, .kv_cache_dtype = HL_DTYPE_F16,
                              .max_batched_tokens = 512, .max_seqs = 64, .max_waiting = 1024,
                              .prefix_cache = true, .graphs = true};
}

// A decimal number of 1 to 9 digits at *s; advances *s. -1 when there is none.
static int parse_count(const char **s) {
    int v = 0, n = 0;
    for (; **s >= '0' && **s <= '9' && n < 10; (*s)++, n++) v = v * 10 + (**s - '0');
    return n >= 1 && n <= 9 ? v : -1;
}

int hl_engine_parse_profile_steps(const char *text, hl_engine_params *p, hl_error *err) {
    const char *s = text ? text : "";
    const int first = parse_count(&s);
    int last = first;
    if (*s == '-') {
        s++;
        last = parse_count(&s);
    }
    if (*s != '\0' || first < 1 || last < first)
        return hl_errorf(err, HL_ERR_INVAL, "profile steps '%s': want A-B (forward steps A to B, 1 <= A <= B) or A",
                         text ? text : "");
    p->profile_first = first;
    p->profile_last = last;
    return HL_OK;
}

hl_request_params hl_request_default_params(void) {
    return (hl_request_params){.sampling = hl_sampler_default_params(), .n = 1};
}

const char *hl_finish_reason_name(enum hl_finish_reason r) {
    switch (r) {
    case HL_FINISH_NONE: return "none";
    case HL_FINISH_STOP: return "stop";
    case HL_FINISH_LENGTH: return "length";
    case HL_FINISH_CANCELLED: return "cancelled";
    case HL_FINISH_TIMEOUT: return "timeout";
    case HL_FINISH_ERROR: return "error";
    default: return "?";
    }
}

const hl_model *hl_engine_model(const hl_engine *e) { return e->model; }

// ---- streams (callers hold e->mu) ----

static stream **bucket_of(hl_engine *e, uint64_t id) { return &e->buckets[hl_hash64(id) % N_BUCKETS]; }

static stream *find_stream(hl_engine *e, uint64_t id) {
    for (stream *s = *bucket_of(e, id); s; s = s->hnext) {
        if (s->id == id) return s;
    }
    return NULL;
}

static void unlink_stream(hl_engine *e, stream *st) {
    stream **pp = bucket_of(e, st->id);
    while (*pp != st) pp = &(*pp)->hnext;
    *pp = st->hnext;
    st->hnext = NULL;
}

static void stream_free(stream *st) {
    if (!st) return;
    if (st->efd >= 0) close(st->efd);
    pthread_cond_destroy(&st->cv);
    free(st->ev);
    free(st->embed);
    free(st);
}

static stream *stream_create(int efd, int n_choices) {
    stream *st = hl_xcalloc(1, sizeof(*st));
    st->efd = efd;
    st->n_choices = n_choices;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cv, &a);
    pthread_condattr_destroy(&a);
    return st;
}

static void efd_set(int efd) {
    uint64_t one = 1;
    ssize_t rc = write(efd, &one, sizeof one);
    (void)rc; // cannot fail short of a bug: the counter never nears its limit
}

static void efd_clear(int efd) {
    uint64_t v;
    ssize_t rc = read(efd, &v, sizeof v);
    (void)rc; // EAGAIN when already clear
}

static void stream_push(stream *st, const hl_event *ev) {
    if (st->n == st->cap) {
        const int cap = st->cap ? 2 * st->cap : 16;
        hl_event *nev = hl_xmalloc(sizeof(hl_event) * (size_t)cap);
        for (int i = 0; i < st->n; i++) nev[i] = st->ev[(st->head + i) % st->cap];
        free(st->ev);
        st->ev = nev;
        st->head = 0;
        st->cap = cap;
    }
    st->ev[(st->head + st->n) % st->cap] = *ev;
    if (st->n++ == 0) efd_set(st->efd);
    if (ev->type == HL_EVENT_FINISH) st->n_finished++;
    pthread_cond_broadcast(&st->cv);
}

static int stream_pop(stream *st, hl_event *ev, int max) {
    int k = 0;
    for (; k < max && st->n > 0; k++) {
        ev[k] = st->ev[st->head];
        st->head = (st->head + 1) % st->cap;
        st->n--;
    }
    if (k > 0 && st->n == 0) efd_clear(st->efd);
    return k;
}

// A new stream with its eventfd; NULL + HL_ERR_IO when there is no eventfd to be had.
static stream *stream_open(int n_choices, hl_error *err) {
    const int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
        hl_errorf(err, HL_ERR_IO, "eventfd: %s", strerror(errno));
        return NULL;
    }
    return stream_create(efd, n_choices);
}

// Gives st a new id and puts it in the table, unless the engine is stopping or n_queued
// requests and jobs wait already (HL_ERR_BUSY; st is left to the caller to free).
static int stream_register_locked(hl_engine *e, stream *st, int n_queued, hl_error *err) {
    if (e->stopping || n_queued >= e->p.max_waiting)
        return hl_errorf(err, HL_ERR_BUSY, e->stopping ? "the engine is shutting down"
                                                       : "too many queued requests (max_waiting)");
    st->id = ++e->next_id;
    st->hnext = *bucket_of(e, st->id);
    *bucket_of(e, st->id) = st;
    return HL_OK;
}

// ---- requests (engine thread, except build/free at submit) ----

static void request_free(request *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        hl_sampler_free(r->ch[i].sampler);
        hl_seq_deinit(&r->ch[i].seq);
    }
    free(r->ch);
    free(r);
}

// Seeds of the choices: the request's seed for choice 0 (as a single request), a hash of it
// for the others, so choices differ and every one is reproducible.
static uint64_t choice_seed(uint64_t base, int i) { return i == 0 ? base : hl_hash64(base + (uint64_t)i); }

static int make_samplers(hl_engine *e, request *r, const int32_t *tokens, int n_tokens,
                         const hl_sampler_params *sp, hl_error *err) {
    hl_sampler_params p = *sp;
    if (!p.has_seed) p.seed = hl_hash64((uint64_t)(hl_time_ms() * 1e6) ^ (uint64_t)(uintptr_t)r);
    p.has_seed = true;
    const uint64_t base = p.seed;
    for (int i = 0; i < r->n; i++) {
        p.seed = choice_seed(base, i);
        r->ch[i].sampler = hl_sampler_create(&p, e->n_vocab, err);
        if (!r->ch[i].sampler) return err ? err->code : HL_ERR_INVAL;
        int rc = hl_sampler_set_eog_ids(r->ch[i].sampler, e->eog, e->n_eog, err);
        if (rc == HL_OK) rc = hl_sampler_accept_prompt(r->ch[i].sampler, tokens, n_tokens, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

static int check_submit(hl_engine *e, const int32_t *tokens, int n_tokens, const hl_request_params *p,
                        hl_error *err) {
    if (!tokens || n_tokens < 1) return hl_errorf(err, HL_ERR_INVAL, "the prompt is empty");
    if (n_tokens >= e->max_ctx)
        return hl_errorf(err, HL_ERR_INVAL, "the prompt has %d tokens; the context holds %d (prompt + output)",
                         n_tokens, e->max_ctx);
    const int max_tokens = p->sampling.max_tokens;
    if (max_tokens > 0 && (int64_t)n_tokens + max_tokens > e->max_ctx)
        return hl_errorf(err, HL_ERR_INVAL, "prompt (%d tokens) + max_tokens (%d) exceed the context of %d tokens",
                         n_tokens, max_tokens, e->max_ctx);
    if (p->n < 1 || p->n > MAX_N) return hl_errorf(err, HL_ERR_INVAL, "n = %d is outside [1, %d]", p->n, MAX_N);
    if (!isfinite(p->deadline_ms) || p->deadline_ms < 0)
        return hl_errorf(err, HL_ERR_INVAL, "deadline_ms must be a finite time >= 0");
    for (int i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= e->n_vocab)
            return hl_errorf(err, HL_ERR_INVAL, "prompt token %d (id %d) is outside the vocabulary of %d", i,
                             tokens[i], e->n_vocab);
    }
    return hl_sampler_params_validate(&p->sampling, e->n_vocab, err);
}

static request *request_build(hl_engine *e, const int32_t *tokens, int n_tokens, const hl_request_params *p,
                              hl_error *err) {
    request *r = hl_xcalloc(1, sizeof(*r));
    r->n = p->n;
    r->ch = hl_xcalloc((size_t)r->n, sizeof(choice));
    for (int i = 0; i < r->n; i++) hl_seq_init(&r->ch[i].seq, tokens, n_tokens, p->priority, i, r);
    r->deadline_ms = p->deadline_ms;
    r->t_submit = hl_time_ms();
    if (make_samplers(e, r, tokens, n_tokens, &p->sampling, err) != HL_OK) {
        request_free(r);
        return NULL;
    }
    return r;
}

int hl_engine_submit(hl_engine *e, const int32_t *tokens, int n_tokens, const hl_request_params *p,
                     uint64_t *id, hl_error *err) {
    hl_request_params defaults = hl_request_default_params();
    if (!p) p = &defaults;
    int rc = check_submit(e, tokens, n_tokens, p, err);
    if (rc != HL_OK) return rc;
    request *r = request_build(e, tokens, n_tokens, p, err);
    if (!r) return err ? err->code : HL_ERR_INVAL;
    stream *st = stream_open(r->n, err);
    if (!st) {
        request_free(r);
        return HL_ERR_IO;
    }
    pthread_mutex_lock(&e->mu);
    rc = stream_register_locked(e, st, e->n_pending + e->stats.waiting, err);
    if (rc != HL_OK) {
        pthread_mutex_unlock(&e->mu);
        stream_free(st);
        request_free(r);
        return rc;
    }
    r->id = st->id;
    r->st = st;
    if (e->pending_tail) e->pending_tail->next = r;
    else e->pending_head = r;
    e->pending_tail = r;
    e->n_pending++;
    *id = st->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return HL_OK;
}

// Asks the engine to end st's request (caller holds e->mu).
static void request_cancel_locked(hl_engine *e, stream *st) {
    if (st->engine_done || st->cancel) return;
    st->cancel = true;
    e->n_cancel++;
    pthread_cond_signal(&e->cv);
}

void hl_engine_cancel(hl_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    stream *st = find_stream(e, id);
    if (st) request_cancel_locked(e, st);
    pthread_mutex_unlock(&e->mu);
}

static struct timespec deadline_after(int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int hl_engine_read(hl_engine *e, uint64_t id, hl_event *ev, int max, int timeout_ms, int *n_out, hl_error *err) {
    *n_out = 0;
    if (max < 1 || !ev) return hl_errorf(err, HL_ERR_INVAL, "read: max must be >= 1");
    pthread_mutex_lock(&e->mu);
    stream *st = find_stream(e, id);
    if (!st) {
        pthread_mutex_unlock(&e->mu);
        return hl_errorf(err, HL_ERR_INVAL, "unknown request id %llu", (unsigned long long)id);
    }
    const struct timespec until = deadline_after(timeout_ms > 0 ? timeout_ms : 0);
    // Wait while nothing is there and the stream has not ended.
    st->n_readers++;
    while (st->n == 0 && st->n_finished < st->n_choices && timeout_ms != 0) {
        if (timeout_ms < 0) pthread_cond_wait(&st->cv, &e->mu);
        else if (pthread_cond_timedwait(&st->cv, &e->mu, &until) == ETIMEDOUT) break;
    }
    st->n_readers--;
    *n_out = stream_pop(st, ev, max);
    // released by another thread meanwhile: the last one out frees it
    const bool free_now = st->released && st->engine_done && st->n_readers == 0;
    pthread_mutex_unlock(&e->mu);
    if (free_now) stream_free(st);
    return HL_OK;
}

int hl_engine_fd(hl_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    stream *st = find_stream(e, id);
    int fd = st ? st->efd : -1;
    pthread_mutex_unlock(&e->mu);
    return fd;
}

void hl_engine_release(hl_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    stream *st = find_stream(e, id);
    if (!st) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    unlink_stream(e, st);
    st->released = true;
    request_cancel_locked(e, st);
    const bool free_now = st->engine_done && st->n_readers == 0;
    pthread_mutex_unlock(&e->mu);
    if (free_now) stream_free(st);
}

void hl_engine_get_stats(hl_engine *e, hl_engine_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->waiting += e->n_pending;
    pthread_mutex_unlock(&e->mu);
}

// ---- events (engine thread) ----

static hl_event *outbox_add(hl_engine *e, stream *st, bool last) {
    if (e->n_out == e->cap_out) {
        e->cap_out = e->cap_out ? 2 * e->cap_out : 64;
        e->out = hl_xrealloc(e->out, sizeof(outbox_item) * (size_t)e->cap_out);
    }
    outbox_item *it = &e->out[e->n_out++];
    memset(it, 0, sizeof(*it));
    it->st = st;
    it->last = last;
    return &it->ev;
}

static void emit_token(hl_engine *e, request *r, int index, const hl_sample_result *sr, double t_ms) {
    hl_event *ev = outbox_add(e, r->st, false);
    ev->type = HL_EVENT_TOKEN;
    ev->index = index;
    ev->token = sr->token;
    ev->logprob = sr->logprob;
    ev->n_top = sr->n_top;
    memcpy(ev->top, sr->top, sizeof(hl_token_logprob) * (size_t)sr->n_top);
    ev->t_ms = t_ms;
}

// Ends choice index of r: gives its blocks back and queues its FINISH event.
static void finish_choice(hl_engine *e, request *r, int index, enum hl_finish_reason why, const char *msg) {
    choice *c = &r->ch[index];
    if (c->done) return;
    c->done = true;
    hl_sched_remove(e->sched, &c->seq);
    const double now = hl_time_ms();
    hl_event *ev = outbox_add(e, r->st, ++r->n_done == r->n);
    ev->type = HL_EVENT_FINISH;
    ev->index = index;
    ev->finish = why;
    ev->logprob = NAN;
    ev->t_ms = now;
    ev->prompt_tokens = c->seq.n_prompt;
    ev->completion_tokens = c->sampler ? hl_sampler_n_generated(c->sampler) : 0;
    ev->cached_tokens = r->ch[0].seq.n_cached > 0 ? r->ch[0].seq.n_cached : 0;
    ev->queue_ms = (r->t_sched > 0 ? r->t_sched : now) - r->t_submit;
    ev->ttft_ms = r->t_first > 0 ? r->t_first - r->t_submit : 0;
    ev->total_ms = now - r->t_submit;
    if (msg) snprintf(ev->error, sizeof ev->error, "%s", msg);
}

static void finish_request(hl_engine *e, request *r, enum hl_finish_reason why, const char *msg) {
    for (int i = 0; i < r->n; i++) finish_choice(e, r, i, why, msg);
}

// Pushes the step's events into their streams, lets go of finished streams, updates stats.
static void flush(hl_engine *e, const hl_sched_step *st) {
    hl_sched_stats ss;
    hl_sched_get_stats(e->sched, &ss);
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->n_out; i++) {
        outbox_item *it = &e->out[i];
        stream_push(it->st, &it->ev);
        if (!it->last) continue;
        it->st->engine_done = true;
        if (it->st->released && it->st->n_readers == 0) stream_free(it->st);
    }
    hl_engine_stats *s = &e->stats;
    s->running = ss.running;
    s->waiting = ss.waiting;
    s->kv_blocks_total = hl_kv_cache_geom(e->kv)->n_blocks;
    s->kv_blocks_used = hl_kv_cache_n_used(e->kv);
    s->kv_blocks_free = hl_kv_cache_n_free(e->kv);
    s->kv_blocks_cached = hl_kv_cache_n_cached(e->kv);
    s->prefix_queries = ss.prefix_queries;
    s->prefix_hits = ss.prefix_hits;
    s->preemptions = ss.preemptions;
    s->prompt_tokens += e->step_prompt_tokens;
    s->generated_tokens += e->step_generated;
    s->candidate_rows += e->step_cand_rows;
    s->candidate_fallbacks += e->step_fallbacks;
    if (st && st->n_items > 0) {
        int b = 0;
        while (b < 7 && (2 << b) <= st->n_items) b++;
        s->steps++;
        s->last_batch_tokens = st->n_tokens;
        s->last_batch_seqs = st->n_items;
        s->batch_size_hist[b]++;
    }
    pthread_mutex_unlock(&e->mu);
    e->n_out = 0;
    e->step_prompt_tokens = e->step_generated = 0;
    e->step_cand_rows = e->step_fallbacks = 0;
}

// ---- the step (engine thread) ----

// One logit row as the step delivered it: whole, or as its best candidates.
typedef struct row_src {
    int row;                 // its index among the step's logit rows
    const float *logits;     // (n_vocab), or NULL: candidates
    const float *vals;       // (n) best first
    const int32_t *ids;      // (n)
    int n;
    float lse;
} row_src;

// The whole logit row `row` of the step, fetched from the backend on first use after the step
// (a draw fell past its candidates); NULL + err when the download fails.
static const float *fetch_row(hl_engine *e, int row, hl_error *err) {
    float *dst = e->logits + (size_t)row * (size_t)e->n_vocab;
    if (e->tk_full[row]) return dst;
    if (hl_llama_download_row(e->llama, row, dst, err) != HL_OK) return NULL;
    e->tk_full[row] = true;
    e->step_fallbacks++;
    return dst;
}

// Draws from src: its whole row, or its candidates and, when they do not settle the draw, the
// whole row fetched now (the sampler is unchanged by the attempt).
static int sample_row(hl_engine *e, hl_sampler *s, const row_src *src, hl_sample_result *sr, hl_error *err) {
    if (src->logits) return hl_sampler_sample(s, src->logits, sr, err);
    int rc = hl_sampler_sample_topk(s, src->vals, src->ids, src->n, src->lse, sr, err);
    if (rc != HL_OK || sr->token != HL_SAMPLER_NEED_ROW) return rc;
    const float *logits = fetch_row(e, src->row, err);
    if (!logits) return HL_ERR_DEVICE;
    return hl_sampler_sample(s, logits, sr, err);
}

// Samples choice index of r from its logits row; queues its events.
static void sample_choice(hl_engine *e, request *r, int index, const row_src *src) {
    choice *c = &r->ch[index];
    hl_error err = {0};
    hl_sample_result sr;
    int rc = sample_row(e, c->sampler, src, &sr, &err);
    if (rc == HL_OK) rc = hl_sampler_accept(c->sampler, sr.token, &err);
    if (rc != HL_OK) {
        finish_choice(e, r, index, HL_FINISH_ERROR, err.msg);
        return;
    }
    e->step_generated++;
    const double now = hl_time_ms();
    if (r->t_first == 0) r->t_first = now;
    const enum hl_sampler_finish fin = hl_sampler_finish_reason(c->sampler, sr.token);
    if (fin == HL_SAMPLER_FINISH_STOP) {
        finish_choice(e, r, index, HL_FINISH_STOP, NULL);
        return;
    }
    emit_token(e, r, index, &sr, now);
    hl_sched_append(e->sched, &c->seq, sr.token);
    if (fin == HL_SAMPLER_FINISH_LENGTH || c->seq.n_tokens >= e->max_ctx)
        finish_choice(e, r, index, HL_FINISH_LENGTH, NULL);
}

// Choice 0 of r has just computed its prompt: fork the other choices off it and sample those
// that could start now from the same logits (the others recompute through the prefix cache).
static void fork_choices(hl_engine *e, request *r, const row_src *src) {
    r->forked = true;
    for (int i = 1; i < r->n; i++) {
        if (hl_sched_fork(e->sched, &r->ch[0].seq, &r->ch[i].seq)) sample_choice(e, r, i, src);
    }
}

// The row of logits number `row` of the step.
static row_src step_row(const hl_engine *e, int row) {
    if (e->tk_k == 0 || e->tk_full[row])
        return (row_src){.row = row, .logits = e->logits + (size_t)row * (size_t)e->n_vocab};
    const size_t at = (size_t)row * (size_t)e->tk_k;
    return (row_src){.row = row, .vals = e->tk_vals + at, .ids = e->tk_ids + at, .n = e->tk_k,
                     .lse = e->tk_lse[row]};
}

static void sample_step(hl_engine *e, const hl_sched_step *st) {
    int row = 0;
    for (int i = 0; i < st->n_items; i++) {
        const hl_sched_item *it = &st->items[i];
        if (it->n_past < it->seq->n_prompt) {
            const int end = it->n_past + it->n_tokens;
            e->step_prompt_tokens += (uint64_t)((end < it->seq->n_prompt ? end : it->seq->n_prompt) - it->n_past);
        }
        if (!it->logits) continue;
        const row_src src = step_row(e, row++);
        request *r = it->seq->user;
        if (r->n_done == r->n || r->ch[it->seq->index].done) continue;
        if (it->seq->index == 0 && r->n > 1 && !r->forked) fork_choices(e, r, &src);
        sample_choice(e, r, it->seq->index, &src);
    }
}

static void fail_items(hl_engine *e, const hl_sched_step *st, const char *msg) {
    for (int i = 0; i < st->n_items; i++) finish_request(e, st->items[i].seq->user, HL_FINISH_ERROR, msg);
}

// Candidates the row of choice index of r needs for every choice that samples from it (all of
// them when it is choice 0's first row and the others fork off it), and the inv_temp of its
// log-sum-exp (*inv_temp); 0: one needs the whole row (or they want different temperatures).
static int row_k_needed(const request *r, int index, float *inv_temp) {
    const bool fork = index == 0 && r->n > 1 && !r->forked;
    int k = 0;
    *inv_temp = hl_sampler_topk_inv_temp(r->ch[index].sampler);
    for (int i = index; i < (fork ? r->n : index + 1); i++) {
        int ki = 0;
        if (!hl_sampler_can_use_topk(r->ch[i].sampler, HL_TOPK_MAX, &ki)) return 0;
        if (hl_sampler_topk_inv_temp(r->ch[i].sampler) != *inv_temp) return 0;
        k = ki > k ? ki : k;
    }
    return k;
}

// Decides per logit row of st whether it is downloaded whole or as candidates, and the step's
// candidates per row (e->tk_k; 0 when no row takes candidates, the backend has no topk op or
// the engine was told to sample from whole rows).
static void plan_rows(hl_engine *e, const hl_sched_step *st) {
    e->tk_k = 0;
    if (e->p.full_logits || !e->be->ops->topk) return;
    int row = 0;
    for (int i = 0; i < st->n_items; i++) {
        const hl_sched_item *it = &st->items[i];
        if (!it->logits) continue;
        const int k = row_k_needed(it->seq->user, it->seq->index, &e->tk_itemp[row]);
        e->tk_full[row++] = k == 0;
        e->step_cand_rows += k > 0;
        e->tk_k = k > e->tk_k ? k : e->tk_k;
    }
}

// Runs one scheduled step; returns the step (NULL when nothing could run).
// Starts or stops the profiler capture of --profile-steps, and says so in the log (the only
// trace on a backend without a profiler).
static void profile_mark(hl_engine *e, bool start) {
    const bool has = start ? e->be->ops->profiler_start != NULL : e->be->ops->profiler_stop != NULL;
    hl_log(HL_LOG_INFO, "engine: profiler capture %s %s step %lld%s", start ? "starts at" : "stops after",
           "forward", (long long)e->n_forward, has ? "" : " (this backend has no profiler)");
    if (start) hl_backend_profiler_start(e->be);
    else hl_backend_profiler_stop(e->be);
}

static const hl_sched_step *run_step(hl_engine *e) {
    const hl_sched_step *st = hl_sched_schedule(e->sched);
    if (st->n_items == 0) return NULL;
    const double now = hl_time_ms();
    for (int i = 0; i < st->n_admitted; i++) {
        request *r = st->admitted[i]->user;
        if (r->t_sched == 0) r->t_sched = now;
    }
    for (int i = 0; i < st->n_items; i++) {
        const hl_sched_item *it = &st->items[i];
        e->lseqs[i] = (hl_llama_seq){.tokens = it->seq->tokens + it->n_past, .n_tokens = it->n_tokens,
                                     .n_past = it->n_past, .blocks = it->seq->kv.blocks,
                                     .n_blocks = it->seq->kv.n_blocks, .n_logits = it->logits ? 1 : 0};
    }
    hl_error err = {0};
    plan_rows(e, st);
    e->n_forward++;
    if (e->n_forward == e->p.profile_first) profile_mark(e, true);
    const int rc = e->tk_k > 0 ? hl_llama_forward_topk(e->llama, e->lseqs, st->n_items, e->tk_k, e->tk_itemp,
                                                       e->tk_vals, e->tk_ids, e->tk_lse, e->tk_full, e->logits,
                                                       &err)
                               : hl_llama_forward(e->llama, e->lseqs, st->n_items, e->logits, &err);
    if (e->n_forward == e->p.profile_last) profile_mark(e, false);
    if (rc != HL_OK) {
        hl_log(HL_LOG_ERROR, "engine: forward pass failed: %s", err.msg);
        fail_items(e, st, err.msg);
        return st;
    }
    hl_sched_commit(e->sched);
    sample_step(e, st);
    return st;
}

// Ends cancelled and timed-out requests, then frees every finished request.
static void reap(hl_engine *e) {
    const double now = hl_time_ms();
    for (request **pp = &e->live; *pp;) {
        request *r = *pp;
        if (r->cancelled) finish_request(e, r, HL_FINISH_CANCELLED, NULL);
        else if (r->deadline_ms > 0 && now >= r->deadline_ms) finish_request(e, r, HL_FINISH_TIMEOUT, NULL);
        if (r->n_done < r->n) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        request_free(r);
    }
}

// Moves new requests into the live list and the scheduler, and notes cancellations (the
// caller holds e->mu).
static void intake_locked(hl_engine *e) {
    request *in = e->pending_head;
    e->pending_head = e->pending_tail = NULL;
    e->n_pending = 0;
    while (in) {
        request *r = in;
        in = r->next;
        r->next = e->live;
        e->live = r;
        hl_sched_add(e->sched, &r->ch[0].seq);
    }
    if (e->n_cancel == 0) return;
    e->n_cancel = 0;
    for (request *r = e->live; r; r = r->next) r->cancelled = r->st->cancel;
}

// ---- embeddings (engine thread, except submit / result / embed) ----

int hl_engine_embed_dim(const hl_engine *e) { return e->model->cfg.dim; }

static void embed_job_free(embed_job *j) {
    if (!j) return;
    hl_embed_job_deinit(&j->job);
    free(j);
}

int hl_engine_embed_submit(hl_engine *e, const int32_t *tokens, const int *start, int n_inputs,
                           const hl_embed_params *p, uint64_t *id, hl_error *err) {
    hl_embed_params defaults = hl_embed_default_params();
    if (!p) p = &defaults;
    embed_job *j = hl_xcalloc(1, sizeof(*j));
    int rc = hl_embed_job_init(&j->job, &e->emb, tokens, start, n_inputs, p, err);
    stream *st = rc == HL_OK ? stream_open(1, err) : NULL;
    if (!st) {
        embed_job_free(j);
        return rc != HL_OK ? rc : HL_ERR_IO;
    }
    j->t_submit = hl_time_ms();
    pthread_mutex_lock(&e->mu);
    rc = stream_register_locked(e, st, e->n_pending + e->stats.waiting + e->n_embed_jobs, err);
    if (rc != HL_OK) {
        pthread_mutex_unlock(&e->mu);
        stream_free(st);
        embed_job_free(j);
        return rc;
    }
    j->st = st;
    if (e->embed_tail) e->embed_tail->next_job = j;
    else e->embed_head = j;
    e->embed_tail = j;
    e->n_embed_jobs++;
    *id = st->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return HL_OK;
}

int hl_engine_embed_result(hl_engine *e, uint64_t id, float *out, int n_inputs, int dim, hl_error *err) {
    const int model_dim = e->model->cfg.dim;
    int rc = HL_OK;
    pthread_mutex_lock(&e->mu);
    stream *st = find_stream(e, id);
    if (!st || !st->embed)
        rc = hl_errorf(err, HL_ERR_INVAL, "request %llu has no embeddings (unknown, unfinished or failed)",
                       (unsigned long long)id);
    else if (n_inputs != st->n_embed || dim != model_dim)
        rc = hl_errorf(err, HL_ERR_INVAL, "request %llu holds %d x %d floats, not %d x %d", (unsigned long long)id,
                       st->n_embed, model_dim, n_inputs, dim);
    else
        memcpy(out, st->embed, sizeof(float) * (size_t)n_inputs * (size_t)dim);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int hl_engine_embed(hl_engine *e, const int32_t *tokens, int n_tokens, enum hl_pooling pooling, float *out,
                    int dim, hl_error *err) {
    if (dim != e->model->cfg.dim)
        return hl_errorf(err, HL_ERR_INVAL, "embeddings have %d dimensions, not %d", e->model->cfg.dim, dim);
    const int start[2] = {0, n_tokens};
    const hl_embed_params p = {.pooling = pooling, .normalize = false};
    uint64_t id = 0;
    int rc = hl_engine_embed_submit(e, tokens, start, 1, &p, &id, err);
    if (rc != HL_OK) return rc;
    hl_event ev;
    int n = 0;
    rc = hl_engine_read(e, id, &ev, 1, -1, &n, err); // the only event is the FINISH
    if (rc == HL_OK && (n != 1 || ev.finish == HL_FINISH_CANCELLED))
        rc = hl_errorf(err, HL_ERR_BUSY, "the embedding was cancelled (engine shutting down)");
    else if (rc == HL_OK && ev.finish != HL_FINISH_STOP)
        rc = hl_errorf(err, HL_ERR_DEVICE, "embedding failed: %s", ev.error);
    if (rc == HL_OK) rc = hl_engine_embed_result(e, id, out, 1, dim, err);
    hl_engine_release(e, id);
    return rc;
}

// Moves submitted jobs to the live list and notes cancellations (the caller holds e->mu).
static void embed_intake_locked(hl_engine *e) {
    embed_job **tail = &e->embed_live;
    while (*tail) tail = &(*tail)->next_job;
    *tail = e->embed_head;
    e->embed_head = e->embed_tail = NULL;
    for (embed_job *j = e->embed_live; j; j = j->next_job) j->cancelled = j->st->cancel;
}

// Ends live job j: hands its vectors to the stream when it succeeded, queues its FINISH, frees it.
static void embed_finish(hl_engine *e, embed_job *j, enum hl_finish_reason why, const char *msg) {
    pthread_mutex_lock(&e->mu);
    if (why == HL_FINISH_STOP) {
        j->st->embed = j->job.out;
        j->st->n_embed = j->job.n_inputs;
        j->job.out = NULL;
    }
    e->n_embed_jobs--;
    pthread_mutex_unlock(&e->mu);
    const double now = hl_time_ms();
    hl_event *ev = outbox_add(e, j->st, true);
    ev->type = HL_EVENT_FINISH;
    ev->finish = why;
    ev->logprob = NAN;
    ev->t_ms = now;
    ev->prompt_tokens = j->job.start[j->job.n_inputs];
    ev->queue_ms = (j->t_sched > 0 ? j->t_sched : now) - j->t_submit;
    ev->total_ms = now - j->t_submit;
    if (msg) snprintf(ev->error, sizeof ev->error, "%s", msg);
    embed_job **pp = &e->embed_live;
    while (*pp != j) pp = &(*pp)->next_job;
    *pp = j->next_job;
    embed_job_free(j);
}

// Ends every cancelled job at once (not only the oldest: a client that went away frees its
// job without waiting for the jobs before it), then runs one forward pass (or one long input) of
// the oldest live job, between two generation steps; ends that job when it is done or failed.
static void embed_step(hl_engine *e) {
    for (embed_job *c = e->embed_live, *next; c; c = next) {
        next = c->next_job;
        if (c->cancelled) embed_finish(e, c, HL_FINISH_CANCELLED, NULL);
    }
    embed_job *j = e->embed_live;
    if (!j) return;
    if (j->t_sched == 0) j->t_sched = hl_time_ms();
    hl_error err = {0};
    const int rc = hl_embed_job_run(&e->emb, &j->job, &e->step_prompt_tokens, &err);
    if (rc == HL_ERR_BUSY && e->live) return; // generation holds the blocks: retry after its next step
    if (rc != HL_OK) {
        hl_log(HL_LOG_ERROR, "engine: embedding failed: %s", err.msg);
        embed_finish(e, j, HL_FINISH_ERROR, err.msg);
        return;
    }
    if (j->job.next == j->job.n_inputs) embed_finish(e, j, HL_FINISH_STOP, NULL);
}

static void *engine_main(void *arg) {
    hl_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stopping && !e->pending_head && e->n_cancel == 0 && !e->live && !e->embed_head &&
               !e->embed_live)
            pthread_cond_wait(&e->cv, &e->mu);
        const bool stopping = e->stopping;
        intake_locked(e);
        embed_intake_locked(e);
        pthread_mutex_unlock(&e->mu);
        if (stopping) break;
        reap(e);
        const hl_sched_step *st = run_step(e);
        if (!st && e->live) { // nothing fits: a bug, but never spin on it
            for (request *r = e->live; r; r = r->next) finish_request(e, r, HL_FINISH_ERROR, "cannot be scheduled");
        }
        embed_step(e);
        reap(e);
        flush(e, st);
    }
    for (request *r = e->live; r; r = r->next) finish_request(e, r, HL_FINISH_CANCELLED, NULL);
    while (e->embed_live) embed_finish(e, e->embed_live, HL_FINISH_CANCELLED, NULL);
    reap(e);
    flush(e, NULL);
    return NULL;
}

// ---- create / free ----

static hl_backend *backend_for(const hl_engine_params *p, hl_error *err) {
    return hl_backend_create_named(p->device, p->n_threads, err);
}

static void add_eog(hl_engine *e, int32_t id) {
    if (id < 0 || id >= e->n_vocab || e->n_eog == HL_SAMPLER_MAX_EOG_IDS) return;
    for (int i = 0; i < e->n_eog; i++) {
        if (e->eog[i] == id) return;
    }
    e->eog[e->n_eog++] = id;
}

static void collect_eog(hl_engine *e) {
    const hl_model *m = e->model;
    for (int i = 0; i < m->cfg.n_eos_ids; i++) add_eog(e, m->cfg.eos_ids[i]);
    if (!m->tok) return;
    const int n_tok = hl_tokenizer_n_tokens(m->tok);
    for (int32_t id = 0; id < n_tok; id++) {
        if (hl_tokenizer_is_eog(m->tok, id)) add_eog(e, id);
    }
}

static int check_params(const hl_engine_params *p, hl_error *err) {
    if (!p->model || !p->model[0]) return hl_errorf(err, HL_ERR_INVAL, "engine: no model given");
    if (p->max_seqs < 1 || p->max_batched_tokens < p->max_seqs)
        return hl_errorf(err, HL_ERR_INVAL, "engine: need 1 <= max_seqs (%d) <= max_batched_tokens (%d)",
                         p->max_seqs, p->max_batched_tokens);
    if (p->max_ctx < 0 || p->max_waiting < 1)
        return hl_errorf(err, HL_ERR_INVAL, "engine: bad max_ctx (%d) or max_waiting (%d)", p->max_ctx,
                         p->max_waiting);
    return HL_OK;
}

// Memory planning on a backend that reports its memory (CUDA): the weights are loaded, the
// activations hl_llama_create allocates come next (plus DEVICE_RESERVE of backend scratch), and
// kv_cache_fraction of what is left holds the KV pool. HL_ERR_UNSUPPORTED when the backend
// cannot say (the CPU: the pool is sized from kv_cache_mb instead).
static int plan_device_kv(hl_engine *e, size_t block_bytes, int max_ctx, int64_t *n_blocks, hl_error *err) {
    const double gib = (double)(1 << 30);
    size_t free_b = 0, total_b = 0;
    hl_error ignore = {0};
    if (hl_backend_mem_info(e->be, &free_b, &total_b, &ignore) != HL_OK) return HL_ERR_UNSUPPORTED;
    const size_t act = hl_llama_activation_bytes(&e->model->cfg, e->p.max_batched_tokens, e->p.max_seqs);
    const size_t weights = e->dev_free_at_start > free_b ? e->dev_free_at_start - free_b : 0;
    if (act + DEVICE_RESERVE >= free_b)
        return hl_errorf(err, HL_ERR_NOMEM, "engine: activations for %d tokens per step (%.2f GiB + %.2f GiB of "
                         "scratch) do not fit in the %.2f GiB left after %.2f GiB of weights; lower "
                         "--max-batched-tokens", e->p.max_batched_tokens, (double)act / gib,
                         (double)DEVICE_RESERVE / gib, (double)free_b / gib, (double)weights / gib);
    const float frac = e->p.kv_cache_fraction > 0 && e->p.kv_cache_fraction <= 1 ? e->p.kv_cache_fraction : 0.9f;
    const double kv_bytes = (double)(free_b - act - DEVICE_RESERVE) * frac;
    *n_blocks = e->p.kv_cache_mb > 0 ? (int64_t)(e->p.kv_cache_mb * 1024 * 1024 / block_bytes)
                                     : (int64_t)(kv_bytes / (double)block_bytes);
    const int64_t one_seq = (max_ctx + HL_KV_BLOCK - 1) / HL_KV_BLOCK;
    if (*n_blocks < one_seq)
        return hl_errorf(err, HL_ERR_NOMEM, "engine: the KV cache gets %lld blocks (%lld tokens, %.2f GiB: %.2f of "
                         "%.2f GiB free after weights and activations), fewer than one sequence of %d tokens "
                         "needs; lower --ctx or raise --kv-cache-fraction", (long long)*n_blocks,
                         (long long)*n_blocks * HL_KV_BLOCK, (double)*n_blocks * (double)block_bytes / gib, frac,
                         (double)(free_b - act - DEVICE_RESERVE) / gib, max_ctx);
    hl_log(HL_LOG_INFO, "memory plan (%s, %.2f GiB total): weights %.2f GiB, activations %.1f MiB for %d tokens "
           "per step (+ %.0f MiB scratch), KV cache %lld blocks = %lld tokens (%.2f GiB, %d bytes per token)",
           e->be->ops->name, (double)total_b / gib, (double)weights / gib, (double)act / (1 << 20),
           e->p.max_batched_tokens, (double)DEVICE_RESERVE / (1 << 20), (long long)*n_blocks,
           (long long)*n_blocks * HL_KV_BLOCK, (double)*n_blocks * (double)block_bytes / gib,
           (int)(block_bytes / HL_KV_BLOCK));
    return HL_OK;
}

// Sizes the KV pool and creates the cache, the forward context and the scheduler.
static int setup_cache(hl_engine *e, hl_error *err) {
    const hl_model_config *c = &e->model->cfg;
    hl_kv_geom g = {.n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim, .kv_type = e->p.kv_cache_dtype};
    const size_t block_bytes = hl_kv_cache_block_bytes(c->n_layers, &g);
    const int want_ctx = e->p.max_ctx > 0 ? e->p.max_ctx : (c->n_ctx_train > 0 ? c->n_ctx_train : 2048);
    int64_t n_blocks = (int64_t)e->p.max_seqs * 2048 / HL_KV_BLOCK;
    if (e->p.kv_cache_mb > 0) n_blocks = (int64_t)(e->p.kv_cache_mb * 1024 * 1024 / block_bytes);
    int rc = plan_device_kv(e, block_bytes, want_ctx, &n_blocks, err);
    if (rc != HL_OK && rc != HL_ERR_UNSUPPORTED) return rc;
    if (n_blocks < 1 || n_blocks > (1 << 28))
        return hl_errorf(err, HL_ERR_INVAL, "engine: a KV pool of %lld blocks of %zu bytes", (long long)n_blocks,
                         block_bytes);
    g.n_blocks = (int)n_blocks;
    if (!(e->kv = hl_kv_cache_create(e->be, c->n_layers, &g, err))) return err ? err->code : HL_ERR_NOMEM;
    hl_sched_params sp = {.max_batched_tokens = e->p.max_batched_tokens, .max_seqs = e->p.max_seqs,
                          .prefix_cache = e->p.prefix_cache};
    if (!(e->sched = hl_sched_create(e->kv, &sp, err))) return err ? err->code : HL_ERR_INVAL;
    e->llama = hl_llama_create(e->model, e->kv, e->p.max_batched_tokens, e->p.max_seqs, e->p.max_seqs, err);
    if (!e->llama) return err ? err->code : HL_ERR_NOMEM;
    if (!e->p.graphs) hl_llama_set_graphs(e->llama, false);
    e->max_ctx = want_ctx;
    if (e->max_ctx > hl_sched_max_tokens(e->sched)) e->max_ctx = hl_sched_max_tokens(e->sched);
    return HL_OK;
}

static int load(hl_engine *e, hl_error *err) {
    if (!(e->be = backend_for(&e->p, err))) return err ? err->code : HL_ERR_DEVICE;
    size_t total_b = 0;
    hl_error ignore = {0};
    if (hl_backend_mem_info(e->be, &e->dev_free_at_start, &total_b, &ignore) != HL_OK) e->dev_free_at_start = 0;
    hl_model_params mp = hl_model_default_params();
    mp.tokenizer_from = e->tokenizer_from;
    mp.synth_n_vocab = e->p.synth_n_vocab;
    mp.synth_seed = e->p.synth_seed;
    if (!(e->model = hl_model_load(e->model_path, e->be, &mp, err))) return err ? err->code : HL_ERR_IO;
    e->n_vocab = e->model->cfg.n_vocab;
    collect_eog(e);
    int rc = setup_cache(e, err);
    if (rc != HL_OK) return rc;
    e->logits = hl_xmalloc(sizeof(float) * (size_t)e->p.max_seqs * (size_t)e->n_vocab);
    e->tk_vals = hl_xmalloc(sizeof(float) * (size_t)e->p.max_seqs * HL_TOPK_MAX);
    e->tk_ids = hl_xmalloc(sizeof(int32_t) * (size_t)e->p.max_seqs * HL_TOPK_MAX);
    e->tk_lse = hl_xmalloc(sizeof(float) * (size_t)e->p.max_seqs);
    e->tk_itemp = hl_xmalloc(sizeof(float) * (size_t)e->p.max_seqs);
    e->tk_full = hl_xcalloc((size_t)e->p.max_seqs, sizeof(bool));
    e->lseqs = hl_xcalloc((size_t)e->p.max_seqs, sizeof(hl_llama_seq));
    e->emb = (hl_embed_job_ctx){.llama = e->llama, .kv = e->kv, .dim = e->model->cfg.dim, .n_vocab = e->n_vocab,
                                .max_ctx = e->max_ctx, .max_batched_tokens = e->p.max_batched_tokens,
                                .max_seqs = e->p.max_seqs};
    return HL_OK;
}

hl_engine *hl_engine_create(const hl_engine_params *p, hl_error *err) {
    if (check_params(p, err) != HL_OK) return NULL;
    hl_engine *e = hl_xcalloc(1, sizeof(*e));
    e->p = *p;
    e->model_path = hl_xstrdup(p->model);
    e->tokenizer_from = p->tokenizer_from ? hl_xstrdup(p->tokenizer_from) : NULL;
    e->device = hl_xstrdup(p->device ? p->device : "cpu");
    e->p.model = e->model_path;
    e->p.tokenizer_from = e->tokenizer_from;
    e->p.device = e->device;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (load(e, err) != HL_OK) {
        hl_engine_free(e);
        return NULL;
    }
    e->stats.kv_blocks_total = e->stats.kv_blocks_free = hl_kv_cache_geom(e->kv)->n_blocks;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        hl_errorf(err, HL_ERR_IO, "engine: cannot start the engine thread");
        hl_engine_free(e);
        return NULL;
    }
    e->thread_started = true;
    return e;
}

void hl_engine_free(hl_engine *e) {
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    for (int b = 0; b < N_BUCKETS; b++) {
        for (stream *s = e->buckets[b], *next; s; s = next) {
            next = s->hnext;
            stream_free(s);
        }
    }
    for (request *r = e->pending_head, *next; r; r = next) { // only when the thread never ran
        next = r->next;
        request_free(r);
    }
    for (embed_job *j = e->embed_head, *next; j; j = next) { // likewise
        next = j->next_job;
        embed_job_free(j);
    }
    hl_embed_job_ctx_deinit(&e->emb);
    free(e->out);
    free(e->logits);
    free(e->tk_vals);
    free(e->tk_ids);
    free(e->tk_lse);
    free(e->tk_itemp);
    free(e->tk_full);
    free(e->lseqs);
    hl_llama_free(e->llama);
    hl_sched_free(e->sched);
    hl_kv_cache_free(e->kv);
    hl_model_free(e->model);
    hl_backend_free(e->be);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->model_path);
    free(e->tokenizer_from);
    free(e->device);
    free(e);
}
