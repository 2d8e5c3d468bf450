// sched: iteration-level continuous batching over the paged KV cache. It decides, step by
// step, which tokens of which sequences run, and owns their block tables; it runs no model
// and samples nothing (engine/engine.c does, around hl_sched_schedule / hl_sched_commit).
//
// A sequence is its token array (prompt, then generated tokens) and n_computed, the tokens
// whose K/V are in its blocks; each step runs some of tokens[n_computed .. n_tokens). So a
// decode is a sequence one token behind, a prefill one many tokens behind, and a sequence
// preempted by recomputation simply drops its blocks and goes back to n_computed = 0 (the
// prefix cache usually hands most of them back). Each step:
//   1. every running decode, oldest first; when a block is missing the newest running
//      sequence not yet scheduled this step is preempted (possibly the one asking);
//   2. chunks of running, partly prefilled sequences, oldest first, under the token budget
//      (they may preempt newer unscheduled sequences too);
//   3. admission of waiting sequences in (priority, arrival) order while the budget, the
//      sequence cap and the free blocks allow: the prefix cache is looked up first (only
//      whole blocks before the last prompt token), then a chunk is reserved. A waiting head
//      that does not fit stops admission (strict order; no request is skipped or dropped).
// "Older" means lower (priority, arrival, index). Not thread-safe: the engine thread owns it.
//
//   hl_sched *s = hl_sched_create(kv, &(hl_sched_params){512, 64, true}, &err);
//   hl_sched_add(s, &seq);                       // seq.tokens / n_tokens / n_prompt set
//   const hl_sched_step *st = hl_sched_schedule(s);
//   ... forward st->items, sample ..., hl_sched_commit(s); hl_sched_append(s, &seq, token);
//   hl_sched_remove(s, &seq); hl_sched_free(s);
#pragma once

#include "common/hl.h"
#include "engine/kv_cache.h"

typedef struct hl_sched hl_sched;

enum hl_seq_state { HL_SEQ_NEW = 0, HL_SEQ_WAITING, HL_SEQ_RUNNING, HL_SEQ_REMOVED };

// One sequence. The caller owns the struct (it must stay put while added) and fills the
// fields above the line; the scheduler owns the rest.
typedef struct hl_seq {
    int32_t *tokens;      // (cap) prompt then generated tokens; owned (heap, grown by append)
    int n_tokens, cap;
    int n_prompt;         // the request's prompt length (n_tokens >= n_prompt >= 1)
    int priority;         // lower runs first
    int index;            // tie-break after arrival (the choice index of n > 1)
    void *user;           // borrowed: the caller's context
    // ---- scheduler state ----
    enum hl_seq_state state;
    uint64_t arrival;     // FCFS order, set by hl_sched_add (inherited by forks)
    int n_computed;       // tokens whose K/V are in kv's blocks
    int n_cached;         // tokens the prefix cache gave at the first admission (-1: not yet)
    int n_preemptions;    // times this sequence was preempted
    bool scheduled;       // part of the current step
    hl_kv_seq kv;         // block table
    struct hl_seq *prev, *next; // in the waiting or running list
} hl_seq;

// Copies tokens[0..n) into seq (zeroing it first) as a prompt: n_tokens = n_prompt = n.
void hl_seq_init(hl_seq *seq, const int32_t *tokens, int n, int priority, int index, void *user);
// Frees seq's token array (its blocks must have been given back by hl_sched_remove).
void hl_seq_deinit(hl_seq *seq);

typedef struct hl_sched_params {
    int max_batched_tokens; // tokens of one step (decodes + prefill chunks), >= max_seqs
    int max_seqs;           // running sequences at most
    bool prefix_cache;      // look up and register full blocks in the prefix cache
} hl_sched_params;

// One sequence's share of a step: tokens[n_past .. n_past + n_tokens) of seq.
typedef struct hl_sched_item {
    hl_seq *seq;
    int n_past;
    int n_tokens;
    bool logits;          // the chunk reaches the end of seq's tokens: sample after it
} hl_sched_item;

typedef struct hl_sched_step {
    hl_sched_item *items; // (n_items) decodes first, then prefill chunks; owned by the scheduler
    int n_items;
    int n_tokens;         // sum of the items' n_tokens
    hl_seq **preempted;   // (n_preempted) sequences preempted while scheduling this step
    int n_preempted;
    hl_seq **admitted;    // (n_admitted) waiting sequences that got their first chunk now
    int n_admitted;
} hl_sched_step;

typedef struct hl_sched_stats {
    int running, waiting;
    uint64_t prefix_queries, prefix_hits; // full blocks looked up / found, per admission
    uint64_t preemptions;
} hl_sched_stats;

// A scheduler over kv (borrowed, must outlive it). NULL + HL_ERR_INVAL for limits below 1 or
// max_seqs > max_batched_tokens.
hl_sched *hl_sched_create(hl_kv_cache *kv, const hl_sched_params *p, hl_error *err);
void hl_sched_free(hl_sched *s); // accepts NULL; sequences still added keep their blocks: remove first

// Queues seq (state NEW, n_tokens >= 1) as waiting, newest arrival.
void hl_sched_add(hl_sched *s, hl_seq *seq);

// Plans the next step (see the top of the file); the result lives until the next call. An
// empty step (n_items == 0) means nothing can run: no sequence, or (a bug: a single sequence
// always fits the pool when the caller checks hl_sched_max_tokens) nothing fits.
const hl_sched_step *hl_sched_schedule(hl_sched *s);

// After the step's forward pass, before any sequence is removed: advances every item's
// n_computed and registers newly completed blocks in the prefix cache. (When the forward pass
// fails, remove the items' sequences instead and do not commit.)
void hl_sched_commit(hl_sched *s);

// Appends a sampled token to seq (growing its array).
void hl_sched_append(hl_sched *s, hl_seq *seq, int32_t token);

// Makes child (state NEW, set up with hl_seq_init over parent's tokens) a fork of parent,
// which has just computed its whole prompt: child shares parent's blocks and runs from the
// same point (returns true), or, when the sequence cap or the pool do not allow it now, waits
// to be recomputed through the prefix cache (returns false: do not sample for it now).
bool hl_sched_fork(hl_sched *s, hl_seq *parent, hl_seq *child);

// Takes seq out of the scheduler (any state) and drops its blocks; state becomes REMOVED.
void hl_sched_remove(hl_sched *s, hl_seq *seq);

void hl_sched_get_stats(const hl_sched *s, hl_sched_stats *out);

// Tokens one sequence may hold: the pool's capacity (a longer one could never run).
int hl_sched_max_tokens(const hl_sched *s);
