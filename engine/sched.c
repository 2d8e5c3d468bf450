// sched: continuous batching with chunked prefill, prefix cache and preemption (see sched.h).
#include "engine/sched.h"

#include <stdlib.h>

typedef struct seq_list {
    hl_seq *head, *tail; // oldest first
    int n;
} seq_list;

struct hl_sched {
    hl_kv_cache *kv;      // borrowed
    hl_sched_params p;
    seq_list waiting, running;
    uint64_t next_arrival;
    hl_sched_step step;
    hl_sched_stats stats; // running / waiting filled on read
};

void hl_seq_init(hl_seq *seq, const int32_t *tokens, int n, int priority, int index, void *user) {
    HL_ASSERT(n >= 1);
    memset(seq, 0, sizeof(*seq));
    seq->cap = n + 16;
    seq->tokens = hl_xmalloc(sizeof(int32_t) * (size_t)seq->cap);
    memcpy(seq->tokens, tokens, sizeof(int32_t) * (size_t)n);
    seq->n_tokens = seq->n_prompt = n;
    seq->priority = priority;
    seq->index = index;
    seq->user = user;
    seq->n_cached = -1;
}

void hl_seq_deinit(hl_seq *seq) {
    if (!seq) return;
    HL_ASSERT(seq->kv.n_blocks == 0);
    free(seq->kv.blocks);
    free(seq->tokens);
    seq->tokens = NULL;
    seq->kv.blocks = NULL;
}

// ---- ordered lists ----

static bool older(const hl_seq *a, const hl_seq *b) {
    if (a->priority != b->priority) return a->priority < b->priority;
    if (a->arrival != b->arrival) return a->arrival < b->arrival;
    return a->index < b->index;
}

// Inserts seq keeping the list ordered oldest first (scans from the tail: new ones are newest).
static void list_insert(seq_list *l, hl_seq *seq) {
    hl_seq *after = l->tail;
    while (after && older(seq, after)) after = after->prev;
    seq->prev = after;
    seq->next = after ? after->next : l->head;
    if (seq->next) seq->next->prev = seq;
    else l->tail = seq;
    if (after) after->next = seq;
    else l->head = seq;
    l->n++;
}

static void list_remove(seq_list *l, hl_seq *seq) {
    if (seq->prev) seq->prev->next = seq->next;
    else l->head = seq->next;
    if (seq->next) seq->next->prev = seq->prev;
    else l->tail = seq->prev;
    seq->prev = seq->next = NULL;
    l->n--;
}

// ---- lifecycle ----

hl_sched *hl_sched_create(hl_kv_cache *kv, const hl_sched_params *p, hl_error *err) {
    if (p->max_seqs < 1 || p->max_batched_tokens < 1 || p->max_seqs > p->max_batched_tokens) {
        hl_errorf(err, HL_ERR_INVAL, "sched: bad limits (%d batched tokens, %d sequences; need 1 <= seqs <= tokens)",
                  p->max_batched_tokens, p->max_seqs);
        return NULL;
    }
    hl_sched *s = hl_xcalloc(1, sizeof(*s));
    s->kv = kv;
    s->p = *p;
    const size_t n = (size_t)p->max_seqs;
    s->step.items = hl_xcalloc(n, sizeof(hl_sched_item));
    // a step preempts or admits at most every running sequence (<= max_seqs)
    s->step.preempted = hl_xcalloc(n, sizeof(hl_seq *));
    s->step.admitted = hl_xcalloc(n, sizeof(hl_seq *));
    return s;
}

void hl_sched_free(hl_sched *s) {
    if (!s) return;
    free(s->step.items);
    free(s->step.preempted);
    free(s->step.admitted);
    free(s);
}

void hl_sched_add(hl_sched *s, hl_seq *seq) {
    HL_ASSERT(seq->state == HL_SEQ_NEW && seq->n_tokens >= 1);
    seq->arrival = s->next_arrival++;
    seq->state = HL_SEQ_WAITING;
    list_insert(&s->waiting, seq);
}

int hl_sched_max_tokens(const hl_sched *s) { return hl_kv_cache_geom(s->kv)->n_blocks * HL_KV_BLOCK; }

static int blocks_for(int n_tokens) { return (n_tokens + HL_KV_BLOCK - 1) / HL_KV_BLOCK; }

// ---- scheduling ----

static void preempt(hl_sched *s, hl_seq *victim) {
    list_remove(&s->running, victim);
    hl_kv_cache_seq_release(s->kv, &victim->kv);
    victim->n_computed = 0;
    victim->n_preemptions++;
    victim->state = HL_SEQ_WAITING;
    list_insert(&s->waiting, victim);
    s->stats.preemptions++;
    HL_ASSERT(s->step.n_preempted < s->p.max_seqs); // at most every running sequence
    s->step.preempted[s->step.n_preempted++] = victim;
}

// The newest running sequence not scheduled in this step, or NULL.
static hl_seq *newest_unscheduled(hl_sched *s) {
    hl_seq *v = s->running.tail;
    while (v && v->scheduled) v = v->prev;
    return v;
}

// Frees blocks by preempting newer unscheduled sequences (seq itself too when self_ok) until
// seq can hold n_tokens. False when seq was preempted or not enough could be freed.
static bool make_room(hl_sched *s, hl_seq *seq, int n_tokens, bool self_ok) {
    while (blocks_for(n_tokens) - seq->kv.n_blocks > hl_kv_cache_n_free(s->kv)) {
        hl_seq *v = newest_unscheduled(s);
        if (!v || (v == seq && !self_ok)) return false;
        preempt(s, v);
        if (v == seq) return false;
    }
    return true;
}

static void add_item(hl_sched *s, hl_seq *seq, int n_tokens) {
    HL_ASSERT(s->step.n_items < s->p.max_seqs);
    int rc = hl_kv_cache_seq_reserve(s->kv, &seq->kv, seq->n_computed + n_tokens, NULL);
    HL_ASSERT(rc == HL_OK);
    seq->scheduled = true;
    s->step.items[s->step.n_items++] = (hl_sched_item){
        .seq = seq, .n_past = seq->n_computed, .n_tokens = n_tokens,
        .logits = seq->n_computed + n_tokens == seq->n_tokens};
    s->step.n_tokens += n_tokens;
}

// Pass 1: one token for every running sequence that is one token behind.
static void schedule_decodes(hl_sched *s) {
    for (hl_seq *seq = s->running.head; seq;) {
        if (seq->n_tokens - seq->n_computed != 1 || seq->scheduled) {
            seq = seq->next;
            continue;
        }
        if (make_room(s, seq, seq->n_computed + 1, true) && s->step.n_items < s->p.max_seqs)
            add_item(s, seq, 1);
        seq = seq->state == HL_SEQ_RUNNING ? seq->next : NULL;
    }
}

// Tokens of seq's next chunk that fit the budget and the blocks it has or can take (0: none).
static int chunk_fit(const hl_sched *s, const hl_seq *seq, int want) {
    const int room = (seq->kv.n_blocks + hl_kv_cache_n_free(s->kv)) * HL_KV_BLOCK - seq->n_computed;
    return want < room ? want : room;
}

// Pass 2: chunks of running sequences that are still prefilling (or recomputing).
static void schedule_prefills(hl_sched *s) {
    for (hl_seq *seq = s->running.head; seq; seq = seq->next) {
        const int budget = s->p.max_batched_tokens - s->step.n_tokens;
        if (budget <= 0 || s->step.n_items == s->p.max_seqs) return;
        const int remaining = seq->n_tokens - seq->n_computed;
        if (seq->scheduled || remaining <= 1) continue;
        int want = remaining < budget ? remaining : budget;
        make_room(s, seq, seq->n_computed + want, false);
        want = chunk_fit(s, seq, want);
        if (want > 0) add_item(s, seq, want);
    }
}

// Admits the waiting head with its first chunk; false when it does not fit (admission stops).
static bool admit_head(hl_sched *s) {
    hl_seq *seq = s->waiting.head;
    const int budget = s->p.max_batched_tokens - s->step.n_tokens;
    const int limit = seq->n_tokens - 1; // the last token always runs: its logits are needed
    int n_hit = 0, n_unused = 0;
    if (s->p.prefix_cache) n_hit = hl_kv_cache_prefix_lookup(s->kv, seq->tokens, limit, &n_unused);
    const int cached = n_hit * HL_KV_BLOCK, remaining = seq->n_tokens - cached;
    const int room = (n_hit + hl_kv_cache_n_free(s->kv) - n_unused) * HL_KV_BLOCK - cached;
    int want = remaining < budget ? remaining : budget;
    want = want < room ? want : room;
    if (want <= 0) return false;
    if (s->p.prefix_cache) {
        s->stats.prefix_queries += (uint64_t)(limit / HL_KV_BLOCK);
        s->stats.prefix_hits += (uint64_t)n_hit;
        hl_kv_cache_seq_match(s->kv, &seq->kv, seq->tokens, n_hit);
    }
    seq->n_computed = cached;
    if (seq->n_cached < 0) seq->n_cached = cached;
    list_remove(&s->waiting, seq);
    seq->state = HL_SEQ_RUNNING;
    list_insert(&s->running, seq);
    add_item(s, seq, want);
    s->step.admitted[s->step.n_admitted++] = seq;
    return true;
}

const hl_sched_step *hl_sched_schedule(hl_sched *s) {
    hl_sched_step *st = &s->step;
    st->n_items = st->n_tokens = st->n_preempted = st->n_admitted = 0;
    for (hl_seq *seq = s->running.head; seq; seq = seq->next) seq->scheduled = false;
    schedule_decodes(s);
    schedule_prefills(s);
    // No admission in a step that had to preempt: the pool is short already.
    while (st->n_preempted == 0 && s->waiting.head && s->running.n < s->p.max_seqs &&
           st->n_tokens < s->p.max_batched_tokens && st->n_items < s->p.max_seqs) {
        if (!admit_head(s)) break;
    }
    return st;
}

void hl_sched_commit(hl_sched *s) {
    for (int i = 0; i < s->step.n_items; i++) {
        hl_sched_item *it = &s->step.items[i];
        hl_seq *seq = it->seq;
        HL_ASSERT(seq->state == HL_SEQ_RUNNING && seq->scheduled);
        seq->n_computed = it->n_past + it->n_tokens;
        seq->scheduled = false;
        if (s->p.prefix_cache) hl_kv_cache_seq_commit(s->kv, &seq->kv, seq->tokens, seq->n_computed);
    }
}

void hl_sched_append(hl_sched *s, hl_seq *seq, int32_t token) {
    if (seq->n_tokens == seq->cap) {
        seq->cap *= 2;
        seq->tokens = hl_xrealloc(seq->tokens, sizeof(int32_t) * (size_t)seq->cap);
    }
    seq->tokens[seq->n_tokens++] = token;
}

bool hl_sched_fork(hl_sched *s, hl_seq *parent, hl_seq *child) {
    HL_ASSERT(child->state == HL_SEQ_NEW && parent->state == HL_SEQ_RUNNING);
    HL_ASSERT(parent->n_computed == child->n_tokens);
    child->arrival = parent->arrival;
    child->priority = parent->priority;
    if (s->running.n < s->p.max_seqs &&
        hl_kv_cache_seq_fork(s->kv, &child->kv, &parent->kv, child->n_tokens, NULL) == HL_OK) {
        child->n_computed = child->n_tokens;
        child->n_cached = parent->n_cached;
        child->state = HL_SEQ_RUNNING;
        list_insert(&s->running, child);
        return true;
    }
    child->state = HL_SEQ_WAITING;
    list_insert(&s->waiting, child);
    return false;
}

void hl_sched_remove(hl_sched *s, hl_seq *seq) {
    if (seq->state == HL_SEQ_WAITING) list_remove(&s->waiting, seq);
    if (seq->state == HL_SEQ_RUNNING) list_remove(&s->running, seq);
    hl_kv_cache_seq_release(s->kv, &seq->kv);
    seq->state = HL_SEQ_REMOVED;
    seq->scheduled = false;
}

void hl_sched_get_stats(const hl_sched *s, hl_sched_stats *out) {
    *out = s->stats;
    out->running = s->running.n;
    out->waiting = s->waiting.n;
}
