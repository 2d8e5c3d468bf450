// sampler: token selection for one request. See sampler.h for the contract and the order of
// the processing steps.
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu/topk.h"

#define N_BUCKETS 4096 // logit buckets of a walk past the best candidates (see bucket_row)

// One candidate token: its value (an adjusted logit, later an unnormalized probability) and id;
// the entry of the CPU top-k selection, which the sampler shares (hl_cpu_topk_select).
typedef hl_cpu_topk_entry cand;

// Penalty counts of one distinct token.
typedef struct tok_count {
    int32_t id;
    int32_t n_window; // occurrences inside the repetition window
    int32_t n_gen;    // occurrences among the generated tokens
} tok_count;

struct hl_sampler {
    hl_sampler_params p; // copy; its pointer fields are NULL (the copies live below)
    int n_vocab;
    hl_rng rng;
    hl_logit_bias *bias; // owned (n_bias)
    int n_bias;
    int32_t *stop_ids;   // owned (n_stop_ids)
    int n_stop_ids;
    int32_t eog_ids[HL_SAMPLER_MAX_EOG_IDS];
    int n_eog;
    bool rep_on; // repetition penalty active (r != 1 and a non-empty window)
    bool fp_on;  // frequency or presence penalty active
    // Distinct-token counts: dense array + open-addressing index (slot -> counts index or -1).
    tok_count *counts; // owned (cap_counts)
    int n_counts, cap_counts;
    int32_t *slots;    // owned (n_slots, a power of two, at most half full)
    int n_slots;
    // Repetition window when penalty_last_n > 0: ring of the last tokens, oldest at ring_head.
    int32_t *ring;     // owned (ring_cap <= penalty_last_n)
    int ring_cap, ring_head, ring_len;
    int n_generated;
    float *work; // owned (n_vocab): adjusted logits
    float *wts;  // owned (n_vocab): exp weights of a whole-row draw
    uint16_t *bkt; // owned (n_vocab): walk_deep's logit bucket of each token
    cand *cands; // owned (n_vocab): top-k heap, candidates, sorted prefixes of a walk
    int32_t bucket_n[N_BUCKETS]; // walk_deep: tokens and weight per logit bucket
    double bucket_sum[N_BUCKETS];
};

// ---- parameters ----

hl_sampler_params hl_sampler_default_params(void) {
    hl_sampler_params p;
    memset(&p, 0, sizeof(p));
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.penalty_last_n = -1;
    p.penalty_prompt = true;
    p.max_tokens = -1;
    return p;
}

static bool in_range(float x, float lo, float hi) { return isfinite(x) && x >= lo && x <= hi; }

static int check_ids(const int32_t *ids, int n, int n_vocab, const char *what, hl_error *err) {
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return hl_errorf(err, HL_ERR_INVAL, "%s[%d] = %d is not a token id (vocabulary: %d)",
                             what, i, (int)ids[i], n_vocab);
    }
    return HL_OK;
}

static int check_bias(const hl_sampler_params *p, int n_vocab, hl_error *err) {
    if (p->n_logit_bias < 0 || p->n_logit_bias > HL_SAMPLER_MAX_LOGIT_BIAS)
        return hl_errorf(err, HL_ERR_INVAL, "logit_bias has %d entries, at most %d allowed",
                         p->n_logit_bias, HL_SAMPLER_MAX_LOGIT_BIAS);
    if (p->n_logit_bias > 0 && !p->logit_bias)
        return hl_errorf(err, HL_ERR_INVAL, "logit_bias is NULL with %d entries", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        hl_logit_bias b = p->logit_bias[i];
        if (b.id < 0 || b.id >= n_vocab)
            return hl_errorf(err, HL_ERR_INVAL, "logit_bias: %d is not a token id (vocabulary: %d)",
                             (int)b.id, n_vocab);
        if (!in_range(b.bias, -100.0f, 100.0f))
            return hl_errorf(err, HL_ERR_INVAL, "logit_bias for token %d must be in [-100, 100], "
                             "got %g", (int)b.id, (double)b.bias);
        for (int j = 0; j < i; j++) {
            if (p->logit_bias[j].id == b.id)
                return hl_errorf(err, HL_ERR_INVAL, "logit_bias: token %d given twice", (int)b.id);
        }
    }
    return HL_OK;
}

static int check_truncation(const hl_sampler_params *p, hl_error *err) {
    if (!in_range(p->temperature, 0.0f, HL_SAMPLER_MAX_TEMPERATURE))
        return hl_errorf(err, HL_ERR_INVAL, "temperature must be in [0, %g], got %g",
                         (double)HL_SAMPLER_MAX_TEMPERATURE, (double)p->temperature);
    if (p->top_k < 0)
        return hl_errorf(err, HL_ERR_INVAL, "top_k must be >= 0 (0 = off), got %d", p->top_k);
    if (!in_range(p->top_p, 0.0f, 1.0f) || p->top_p == 0.0f)
        return hl_errorf(err, HL_ERR_INVAL, "top_p must be in (0, 1], got %g", (double)p->top_p);
    if (!in_range(p->min_p, 0.0f, 1.0f))
        return hl_errorf(err, HL_ERR_INVAL, "min_p must be in [0, 1], got %g", (double)p->min_p);
    return HL_OK;
}

static int check_penalties(const hl_sampler_params *p, hl_error *err) {
    if (!in_range(p->repetition_penalty, 0.0f, 100.0f) || p->repetition_penalty == 0.0f)
        return hl_errorf(err, HL_ERR_INVAL, "repetition_penalty must be in (0, 100], got %g",
                         (double)p->repetition_penalty);
    if (p->penalty_last_n < -1)
        return hl_errorf(err, HL_ERR_INVAL, "penalty_last_n must be >= -1 (-1 = all), got %d",
                         p->penalty_last_n);
    if (!in_range(p->frequency_penalty, -2.0f, 2.0f))
        return hl_errorf(err, HL_ERR_INVAL, "frequency_penalty must be in [-2, 2], got %g",
                         (double)p->frequency_penalty);
    if (!in_range(p->presence_penalty, -2.0f, 2.0f))
        return hl_errorf(err, HL_ERR_INVAL, "presence_penalty must be in [-2, 2], got %g",
                         (double)p->presence_penalty);
    return HL_OK;
}

static int check_outputs(const hl_sampler_params *p, int n_vocab, hl_error *err) {
    if (p->n_logprobs < 0 || p->n_logprobs > HL_SAMPLER_MAX_LOGPROBS)
        return hl_errorf(err, HL_ERR_INVAL, "top_logprobs must be in [0, %d], got %d",
                         HL_SAMPLER_MAX_LOGPROBS, p->n_logprobs);
    if (p->n_logprobs > 0 && !p->logprobs)
        return hl_errorf(err, HL_ERR_INVAL, "top_logprobs needs logprobs to be true");
    if (p->n_logprobs > n_vocab)
        return hl_errorf(err, HL_ERR_INVAL, "top_logprobs (%d) exceeds the vocabulary of %d tokens", p->n_logprobs,
                         n_vocab);
    if (p->max_tokens < -1 || p->max_tokens == 0)
        return hl_errorf(err, HL_ERR_INVAL, "max_tokens must be >= 1 (or -1 = no limit), got %d",
                         p->max_tokens);
    if (p->n_stop_ids < 0 || p->n_stop_ids > HL_SAMPLER_MAX_STOP_IDS)
        return hl_errorf(err, HL_ERR_INVAL, "%d stop token ids, at most %d allowed", p->n_stop_ids,
                         HL_SAMPLER_MAX_STOP_IDS);
    if (p->n_stop_ids > 0 && !p->stop_ids)
        return hl_errorf(err, HL_ERR_INVAL, "stop_ids is NULL with %d entries", p->n_stop_ids);
    return check_ids(p->stop_ids, p->n_stop_ids, n_vocab, "stop_token_ids", err);
}

int hl_sampler_params_validate(const hl_sampler_params *p, int n_vocab, hl_error *err) {
    HL_ASSERT(p);
    if (n_vocab < 1)
        return hl_errorf(err, HL_ERR_INVAL, "vocabulary size must be >= 1, got %d", n_vocab);
    int rc = check_truncation(p, err);
    if (rc == HL_OK) rc = check_penalties(p, err);
    if (rc == HL_OK) rc = check_bias(p, n_vocab, err);
    if (rc == HL_OK) rc = check_outputs(p, n_vocab, err);
    return rc;
}

// ---- create / free ----

static uint64_t clock_seed(const void *salt) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return hl_hash64(t ^ hl_hash64((uint64_t)(uintptr_t)salt));
}

hl_sampler *hl_sampler_create(const hl_sampler_params *p, int n_vocab, hl_error *err) {
    HL_ASSERT(p);
    if (hl_sampler_params_validate(p, n_vocab, err) != HL_OK) return NULL;
    hl_sampler *s = hl_xcalloc(1, sizeof(*s));
    s->p = *p;
    s->p.logit_bias = NULL;
    s->p.stop_ids = NULL;
    s->n_vocab = n_vocab;
    // Hash the seed so nearby seeds start far apart in the splitmix64 sequence.
    s->rng.state = hl_hash64(p->has_seed ? p->seed : clock_seed(s));
    s->n_bias = p->n_logit_bias;
    s->bias = hl_xmalloc(sizeof(*s->bias) * (size_t)(s->n_bias + 1));
    if (s->n_bias > 0) memcpy(s->bias, p->logit_bias, sizeof(*s->bias) * (size_t)s->n_bias);
    s->n_stop_ids = p->n_stop_ids;
    s->stop_ids = hl_xmalloc(sizeof(int32_t) * (size_t)(s->n_stop_ids + 1));
    if (s->n_stop_ids > 0) memcpy(s->stop_ids, p->stop_ids, sizeof(int32_t) * (size_t)s->n_stop_ids);
    s->rep_on = p->repetition_penalty != 1.0f && p->penalty_last_n != 0;
    s->fp_on = p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    s->work = malloc(sizeof(float) * (size_t)n_vocab);
    s->wts = malloc(sizeof(float) * (size_t)n_vocab);
    s->bkt = malloc(sizeof(uint16_t) * (size_t)n_vocab);
    s->cands = malloc(sizeof(cand) * (size_t)n_vocab);
    if (!s->work || !s->wts || !s->bkt || !s->cands) {
        hl_sampler_free(s);
        hl_errorf(err, HL_ERR_NOMEM, "sampler scratch for %d tokens", n_vocab);
        return NULL;
    }
    return s;
}

void hl_sampler_free(hl_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->stop_ids);
    free(s->counts);
    free(s->slots);
    free(s->ring);
    free(s->work);
    free(s->wts);
    free(s->bkt);
    free(s->cands);
    free(s);
}

int hl_sampler_set_eog_ids(hl_sampler *s, const int32_t *ids, int n_ids, hl_error *err) {
    HL_ASSERT(s && (ids || n_ids == 0));
    if (n_ids < 0 || n_ids > HL_SAMPLER_MAX_EOG_IDS)
        return hl_errorf(err, HL_ERR_INVAL, "%d end-of-generation ids, at most %d allowed", n_ids,
                         HL_SAMPLER_MAX_EOG_IDS);
    int rc = check_ids(ids, n_ids, s->n_vocab, "end-of-generation ids", err);
    if (rc != HL_OK) return rc;
    if (n_ids > 0) memcpy(s->eog_ids, ids, sizeof(int32_t) * (size_t)n_ids);
    s->n_eog = n_ids;
    return HL_OK;
}

// ---- token counts (O(distinct tokens), grown geometrically in accept) ----

static uint32_t slot_of(int32_t id, int n_slots) {
    return (uint32_t)hl_hash64((uint64_t)(uint32_t)id) & (uint32_t)(n_slots - 1);
}

static void rehash(hl_sampler *s, int n_slots) {
    free(s->slots);
    s->slots = hl_xmalloc(sizeof(int32_t) * (size_t)n_slots);
    memset(s->slots, 0xff, sizeof(int32_t) * (size_t)n_slots); // all -1
    s->n_slots = n_slots;
    for (int i = 0; i < s->n_counts; i++) {
        uint32_t h = slot_of(s->counts[i].id, n_slots);
        while (s->slots[h] >= 0) h = (h + 1) & (uint32_t)(n_slots - 1);
        s->slots[h] = i;
    }
}

// The counts entry of id, created (zeroed) when new.
static tok_count *count_entry(hl_sampler *s, int32_t id) {
    if (2 * (s->n_counts + 1) > s->n_slots) rehash(s, s->n_slots ? 2 * s->n_slots : 64);
    uint32_t h = slot_of(id, s->n_slots);
    while (s->slots[h] >= 0) {
        if (s->counts[s->slots[h]].id == id) return &s->counts[s->slots[h]];
        h = (h + 1) & (uint32_t)(s->n_slots - 1);
    }
    if (s->n_counts == s->cap_counts) {
        s->cap_counts = s->cap_counts ? 2 * s->cap_counts : 32;
        s->counts = hl_xrealloc(s->counts, sizeof(tok_count) * (size_t)s->cap_counts);
    }
    s->slots[h] = s->n_counts;
    s->counts[s->n_counts] = (tok_count){.id = id};
    return &s->counts[s->n_counts++];
}

// Grows the window ring (oldest first after the copy), never past penalty_last_n.
static void ring_grow(hl_sampler *s) {
    int cap = s->ring_cap ? s->ring_cap : 32;
    cap = cap > s->p.penalty_last_n / 2 ? s->p.penalty_last_n : 2 * cap;
    int32_t *r = hl_xmalloc(sizeof(int32_t) * (size_t)cap);
    for (int i = 0; i < s->ring_len; i++) r[i] = s->ring[(s->ring_head + i) % s->ring_cap];
    free(s->ring);
    s->ring = r;
    s->ring_cap = cap;
    s->ring_head = 0;
}

static void window_push(hl_sampler *s, int32_t id) {
    count_entry(s, id)->n_window++;
    if (s->p.penalty_last_n < 0) return; // the window is the whole history
    if (s->ring_len == s->p.penalty_last_n) {
        int32_t old = s->ring[s->ring_head];
        count_entry(s, old)->n_window--;
        s->ring_head = (s->ring_head + 1) % s->ring_cap;
        s->ring_len--;
    }
    if (s->ring_len == s->ring_cap) ring_grow(s);
    s->ring[(s->ring_head + s->ring_len) % s->ring_cap] = id;
    s->ring_len++;
}

int hl_sampler_accept_prompt(hl_sampler *s, const int32_t *ids, int n_ids, hl_error *err) {
    HL_ASSERT(s && (ids || n_ids == 0));
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return hl_errorf(err, HL_ERR_INVAL, "prompt token %d at position %d is out of range "
                             "(vocabulary: %d)", (int)ids[i], i, s->n_vocab);
        if (s->rep_on && s->p.penalty_prompt) window_push(s, ids[i]);
    }
    return HL_OK;
}

int hl_sampler_accept(hl_sampler *s, int32_t token, hl_error *err) {
    HL_ASSERT(s);
    if (token < 0 || token >= s->n_vocab)
        return hl_errorf(err, HL_ERR_INVAL, "token %d is out of range (vocabulary: %d)",
                         (int)token, s->n_vocab);
    s->n_generated++;
    if (s->rep_on) window_push(s, token);
    if (s->fp_on) count_entry(s, token)->n_gen++;
    return HL_OK;
}

// ---- stop conditions ----

static bool in_list(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++) {
        if (ids[i] == id) return true;
    }
    return false;
}

bool hl_sampler_is_stop_token(const hl_sampler *s, int32_t id) {
    HL_ASSERT(s);
    if (in_list(s->stop_ids, s->n_stop_ids, id)) return true;
    return !s->p.ignore_eos && in_list(s->eog_ids, s->n_eog, id);
}

enum hl_sampler_finish hl_sampler_finish_reason(const hl_sampler *s, int32_t token) {
    if (hl_sampler_is_stop_token(s, token)) return HL_SAMPLER_FINISH_STOP;
    if (s->p.max_tokens > 0 && s->n_generated >= s->p.max_tokens) return HL_SAMPLER_FINISH_LENGTH;
    return HL_SAMPLER_FINISH_NONE;
}

int hl_sampler_n_generated(const hl_sampler *s) { return s->n_generated; }

// ---- logits -> adjusted logits ----

// 1 for NaN or +inf, else 0; integer tests on the bits so that loops over it vectorize.
static inline uint32_t is_bad(float f) {
    union { float f; uint32_t u; } x = {.f = f};
    return (x.u - 0x7f800000u < 0x00800000u) | (x.u > 0xff800000u); // +inf or +NaN | -NaN
}

// True when v[0..n) holds a NaN or +inf.
static bool any_bad(const float *v, int n) {
    uint32_t lane[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) lane[j] += is_bad(v[i + j]);
    }
    uint32_t bad = 0;
    for (; i < n; i++) bad += is_bad(v[i]);
    for (int j = 0; j < 8; j++) bad += lane[j];
    return bad > 0;
}

// Copies logits into s->work, rejecting NaN and +inf, then applies bias and penalties to the
// few tokens they touch.
static int load_logits(hl_sampler *s, const float *logits, hl_error *err) {
    float *w = s->work;
    memcpy(w, logits, sizeof(float) * (size_t)s->n_vocab);
    if (any_bad(w, s->n_vocab)) {
        int i = 0;
        while (logits[i] < INFINITY) i++;
        return hl_errorf(err, HL_ERR_INVAL, "logits[%d] is %g", i, (double)logits[i]);
    }
    for (int i = 0; i < s->n_bias; i++) {
        hl_logit_bias b = s->bias[i];
        w[b.id] = b.bias <= -100.0f ? -INFINITY : w[b.id] + b.bias;
    }
    const float r = s->p.repetition_penalty;
    for (int i = 0; i < s->n_counts; i++) {
        tok_count c = s->counts[i];
        float x = w[c.id];
        if (s->rep_on && c.n_window > 0) x = x > 0.0f ? x / r : x * r;
        if (s->fp_on && c.n_gen > 0)
            x -= (float)c.n_gen * s->p.frequency_penalty + s->p.presence_penalty;
        w[c.id] = x;
    }
    return HL_OK;
}

// ---- selection ----

// The k best of v[0..n) into out[0..k), best first (ties: lower id first); v holds no NaN, so
// all k are found.
static void select_top(const float *v, int n, int k, cand *out) {
    const int found = hl_cpu_topk_select(v, n, k, out);
    HL_ASSERT(found == k);
}

// Largest of v[0..n) (no NaN), in 8 lanes so the compiler vectorizes it.
static float max_value(const float *v, int n) {
    float lane[8];
    for (int j = 0; j < 8; j++) lane[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) lane[j] = v[i + j] > lane[j] ? v[i + j] : lane[j];
    }
    for (; i < n; i++) lane[0] = v[i] > lane[0] ? v[i] : lane[0];
    float m = lane[0];
    for (int j = 1; j < 8; j++) m = lane[j] > m ? lane[j] : m;
    return m;
}

// Lowest index holding the largest value of v[0..n) (no NaN).
static int argmax(const float *v, int n) {
    float m = max_value(v, n);
    int i = 0;
    while (v[i] != m) i++;
    return i;
}

// w[i] = exp((v[i] - max) * inv_t) (max >= every v[i]); returns their sum, each block of 8
// summed in float and the blocks in double (the topk op of the CPU backend sums the same way, so
// its log-sum-exp is this one's bits). hot: a whole-row draw spends its time here.
static double exp_weights(const float *restrict v, float *restrict w, int n, float max, float inv_t) {
    double sum = 0.0;
    int i = 0;
    for (; i + 8 <= n; i += 8) { // vectorized
        for (int j = 0; j < 8; j++) w[i + j] = hl_cpu_topk_exp_nonpos((v[i + j] - max) * inv_t);
        float acc = 0.0f;
        for (int j = 0; j < 8; j++) acc += w[i + j];
        sum += acc;
    }
    for (; i < n; i++) {
        w[i] = hl_cpu_topk_exp_nonpos((v[i] - max) * inv_t);
        sum += w[i];
    }
    return sum;
}

// The log-sum-exp at 1 / inv_t of a row with maximum max and exp_weights sum `sum`.
static float lse_of(double sum, float max, float inv_t) {
    return (float)((double)max * (double)inv_t + log(sum));
}

// Σ exp((x - max) * inv_t) over the row, as its float log-sum-exp carries it: both paths of a
// walk derive the row's mass from the same float, so they agree to the bit (the rounding of
// the float, about 1e-7 relative of the log, scales the mass by 1 ± a few 1e-6).
static double mass_of(float lse_t, float max, float inv_t) {
    return exp((double)lse_t - (double)max * (double)inv_t);
}

static double uniform(hl_rng *r) { return (double)(hl_rng_next(r) >> 11) * 0x1.0p-53; }

// Draws from weights c[0..n) (not all zero): the first whose running sum passes u * total.
static int32_t draw(hl_rng *rng, const cand *c, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i].v;
    double r = uniform(rng) * total, cum = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].v <= 0.0f) continue;
        cum += c[i].v;
        last = i;
        if (r < cum) return c[i].id;
    }
    return c[last].id; // rounding left r at the very top
}

// Length of the smallest best-first prefix of c whose weight reaches top_p * total (HF's rule:
// a token stays when the mass strictly before it is below top_p); 0 when c[0..n) falls short.
static int nucleus_len(const cand *c, int n, double total, float top_p) {
    double want = (double)top_p * total, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += c[i].v;
        if (cum >= want) return i + 1;
    }
    return 0;
}

// Keeps candidates with weight >= min_p (weights are relative to the best, which is 1).
static int min_p_filter(cand *c, int n, float min_p) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].v >= min_p) c[k++] = c[i];
    }
    return k;
}

static int all_banned(hl_error *err) {
    return hl_errorf(err, HL_ERR_INVAL, "every token is banned or masked (-inf)");
}

// Draws from c[0..k), the k best adjusted logits, best first: weights exp((v - max) / t),
// top-p on them, then min-p. The top-k step of both the full-row and the candidate paths.
static int pick_sorted(hl_sampler *s, cand *c, int k, int32_t *token, hl_error *err) {
    float max = c[0].v, inv_t = 1.0f / s->p.temperature;
    if (max == -INFINITY) return all_banned(err);
    double total = 0.0;
    for (int i = 0; i < k; i++) {
        c[i].v = hl_cpu_topk_exp_nonpos((c[i].v - max) * inv_t);
        total += c[i].v;
    }
    int n = s->p.top_p < 1.0f ? nucleus_len(c, k, total, s->p.top_p) : k;
    if (n == 0) n = k; // rounding: keep all k
    if (s->p.min_p > 0.0f) n = min_p_filter(c, n, s->p.min_p);
    *token = draw(&s->rng, c, n);
    return HL_OK;
}

// Top-k first (partial selection), then top-p on the sorted k, then min-p.
static int pick_top_k(hl_sampler *s, int k, int32_t *token, hl_error *err) {
    select_top(s->work, s->n_vocab, k, s->cands);
    return pick_sorted(s, s->cands, k, token, err);
}

// ---- the walk: draws without top-k, from the best candidates or the whole row ----
//
// A draw with top_k off walks the tokens best first (adjusted logits descending, equal values:
// lower id first) with weights w = exp((x - max) / T). top_p keeps the shortest prefix whose
// mass reaches top_p * Z (Z = the row's mass, from its log-sum-exp at 1 / T), min_p the prefix
// of w >= min_p; the kept prefix is the shorter. Then the first token whose running mass passes
// u * (the kept mass, or Z when nothing is cut) is drawn. Everything depends only on a prefix
// of that order, so the best n candidates either settle the draw — and then any longer prefix,
// the whole row included, settles it the same way — or say that they cannot (walk returns -1).

// The kept prefix [0, return) of c[0..n) under top_p / min_p and its mass (*mass); -1 (with
// *mass the mass of all n) when the cut lies past c[n - 1].
static int kept_prefix(const hl_sampler *s, const cand *c, int n, float inv_t, double z, double *mass) {
    const float max = c[0].v;
    const double want = (double)s->p.top_p * z;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        const float w = hl_cpu_topk_exp_nonpos((c[i].v - max) * inv_t);
        if (w < s->p.min_p) { // never at i = 0 (w = 1), never without min_p
            *mass = cum;
            return i;
        }
        cum += w;
        if (s->p.top_p < 1.0f && cum >= want) { // the mass before the token was below top_p
            *mass = cum;
            return i + 1;
        }
    }
    *mass = cum;
    return -1;
}

// The walk over the best-first prefix c[0..n) of the row (complete: the whole row; c[0].v is
// the row's finite maximum), lse_t the row's log-sum-exp at 1 / T, u the draw's uniform number:
// the drawn token, or -1 when the prefix does not settle it (never when complete).
static int32_t walk(const hl_sampler *s, const cand *c, int n, bool complete, float lse_t, double u) {
    const float max = c[0].v, inv_t = 1.0f / s->p.temperature;
    const double z = mass_of(lse_t, max, inv_t);
    const bool cuts = s->p.top_p < 1.0f || s->p.min_p > 0.0f;
    int keep = n;
    double mass = z;
    if (cuts) {
        keep = kept_prefix(s, c, n, inv_t, z, &mass);
        if (keep < 0 && !complete) return -1;
        if (keep < 0) keep = n; // rounding: the nucleus never reached its mass; keep all
    }
    const double target = u * mass;
    double cum = 0.0;
    int last = 0;
    for (int i = 0; i < keep; i++) {
        const float w = hl_cpu_topk_exp_nonpos((c[i].v - max) * inv_t);
        if (w <= 0.0f) continue;
        cum += w;
        last = i;
        if (target < cum) return c[i].id;
    }
    if (!cuts && !complete) return -1; // the target lies past the prefix
    return c[last].id;                 // rounding left the target at the very top
}

// s->bkt[i] = the logit bucket of token i: (max - x) / T in steps of 1/32 (a factor e^(1/32) in
// weight), the last one for everything past the weight's underflow; and the tokens and weight
// (s->wts) of each bucket. Monotone in x, so the tokens of buckets 0..b are always a best-first
// prefix of the row (equal logits share their bucket).
static void bucket_row(hl_sampler *s, float max, float inv_t) {
    const float *restrict x = s->work;
    uint16_t *restrict bk = s->bkt;
    for (int i = 0; i < s->n_vocab; i++) { // vectorized
        float d = (max - x[i]) * inv_t * 32.0f;
        d = d < (float)(N_BUCKETS - 1) ? d : (float)(N_BUCKETS - 1);
        bk[i] = (uint16_t)(int)d;
    }
    memset(s->bucket_n, 0, sizeof(s->bucket_n));
    memset(s->bucket_sum, 0, sizeof(s->bucket_sum));
    for (int i = 0; i < s->n_vocab; i++) {
        s->bucket_n[bk[i]]++;
        s->bucket_sum[bk[i]] += s->wts[i];
    }
}

static int cmp_cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

// The tokens of buckets first..last (s->bkt) into s->cands, best first; returns their number.
static int sorted_buckets(hl_sampler *s, int first, int last) {
    int n = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        if (s->bkt[i] >= first && s->bkt[i] <= last) s->cands[n++] = (cand){s->work[i], i};
    }
    qsort(s->cands, (size_t)n, sizeof(cand), cmp_cand_desc);
    return n;
}

// The walk over the whole row sorted (the rounding corner of walk_deep).
static int32_t walk_sorted_row(hl_sampler *s, float lse_t, double u) {
    const int n = sorted_buckets(s, 0, N_BUCKETS - 1);
    return walk(s, s->cands, n, true, lse_t, u);
}

// A point of the walk past the best HL_SAMPLER_WALK_K: a token's rank (best first), its id,
// and the mass of the tokens up to it, itself included.
typedef struct walk_pos {
    int rank;
    int32_t id;
    double mass;
} walk_pos;

// The first token, best first, where the running mass passes target (strict: mass > target,
// else mass >= target): whole buckets are added by their sums (in id order) until the one that
// holds the crossing, whose tokens alone are sorted and walked. False when the row's mass
// falls short (rounding).
static bool walk_cross(hl_sampler *s, double target, bool strict, walk_pos *at) {
    double cum = 0.0;
    int rank = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        const double end = cum + s->bucket_sum[b];
        if (s->bucket_n[b] == 0 || (strict ? !(target < end) : !(end >= target))) {
            cum = end;
            rank += s->bucket_n[b];
            continue;
        }
        const int n = sorted_buckets(s, b, b);
        for (int i = 0; i < n; i++, rank++) {
            const float w = s->wts[s->cands[i].id];
            if (w <= 0.0f) continue;
            cum += w;
            if (strict ? target < cum : cum >= target) {
                *at = (walk_pos){rank, s->cands[i].id, cum};
                return true;
            }
        }
    }
    return false;
}

// A walk the best HL_SAMPLER_WALK_K did not settle (so no candidate set, at most that many,
// can observe how it goes on): the row bucketed by logit (weights from s->wts), then the
// nucleus end, the min_p cut and the draw each found by walk_cross. Where rounding leaves a
// target past the end, the whole row is sorted and walked.
static int32_t walk_deep(hl_sampler *s, float max, float lse_t, double u) {
    const float inv_t = 1.0f / s->p.temperature;
    const double z = mass_of(lse_t, max, inv_t);
    bucket_row(s, max, inv_t);
    int n_min_p = 0; // tokens that min_p keeps (the best n_min_p: weights fall with rank)
    double mass_min_p = 0.0;
    for (int i = 0; s->p.min_p > 0.0f && i < s->n_vocab; i++) {
        if (s->wts[i] >= s->p.min_p) {
            n_min_p++;
            mass_min_p += s->wts[i];
        }
    }
    int keep = s->n_vocab;
    double mass = z;
    walk_pos at;
    if (s->p.top_p < 1.0f) {
        if (!walk_cross(s, (double)s->p.top_p * z, false, &at)) return walk_sorted_row(s, lse_t, u);
        keep = at.rank + 1;
        mass = at.mass;
    }
    if (s->p.min_p > 0.0f && n_min_p < keep) {
        keep = n_min_p;
        mass = mass_min_p;
    }
    if (walk_cross(s, u * mass, true, &at) && at.rank < keep) return at.id;
    return walk_sorted_row(s, lse_t, u);
}

// The full-row walk: the best 64, then HL_SAMPLER_WALK_K, by partial selection settle almost
// every draw (a candidate path with up to that many gets the same); walk_deep the rest. One
// uniform number per draw, as on the candidate path.
static int pick_walk(hl_sampler *s, int32_t *token, hl_error *err) {
    const int V = s->n_vocab;
    const float max = max_value(s->work, V), inv_t = 1.0f / s->p.temperature;
    if (max == -INFINITY) return all_banned(err);
    const float lse_t = lse_of(exp_weights(s->work, s->wts, V, max, inv_t), max, inv_t);
    const double u = uniform(&s->rng);
    const int stages[2] = {64, HL_SAMPLER_WALK_K};
    for (int i = 0; i < 2; i++) {
        const int k = stages[i] < V ? stages[i] : V;
        select_top(s->work, V, k, s->cands);
        *token = walk(s, s->cands, k, k == V, lse_t, u);
        if (*token >= 0) return HL_OK;
    }
    *token = walk_deep(s, max, lse_t, u);
    return HL_OK;
}

static int pick_random(hl_sampler *s, int32_t *token, hl_error *err) {
    if (s->p.top_k > 0 && s->p.top_k < s->n_vocab) return pick_top_k(s, s->p.top_k, token, err);
    return pick_walk(s, token, err);
}

// Raw logprobs (vLLM's default) from the row's log-sum-exp: the drawn token's logit `value`
// and the best n_logprobs logits top[0..n_logprobs), best first. Shared by both paths.
static void put_logprobs(const hl_sampler *s, float value, const cand *top, float lse, hl_sample_result *out) {
    out->logprob = (float)((double)value - (double)lse);
    out->n_top = s->p.n_logprobs;
    for (int i = 0; i < out->n_top; i++) {
        out->top[i].id = top[i].id;
        out->top[i].logprob = (float)((double)top[i].v - (double)lse);
    }
}

float hl_sampler_log_sum_exp(const float *logits, int n, float inv_temp) {
    HL_ASSERT(logits && n >= 1);
    if (any_bad(logits, n)) return NAN;
    float max = max_value(logits, n);
    if (max == -INFINITY) return -INFINITY;
    double sum = 0.0;
    int i = 0;
    for (; i + 8 <= n; i += 8) { // exp_weights' order, without writing the weights
        float acc = 0.0f;
        for (int j = 0; j < 8; j++) acc += hl_cpu_topk_exp_nonpos((logits[i + j] - max) * inv_temp);
        sum += acc;
    }
    for (; i < n; i++) sum += hl_cpu_topk_exp_nonpos((logits[i] - max) * inv_temp);
    return lse_of(sum, max, inv_temp);
}

// Raw logprobs of the full-row path: log-softmax of the unmodified logits.
static void fill_logprobs(hl_sampler *s, const float *logits, hl_sample_result *out) {
    const float lse = hl_sampler_log_sum_exp(logits, s->n_vocab, 1.0f);
    if (s->p.n_logprobs > 0) select_top(logits, s->n_vocab, s->p.n_logprobs, s->cands);
    put_logprobs(s, logits[out->token], s->cands, lse, out);
}

int hl_sampler_sample(hl_sampler *s, const float *logits, hl_sample_result *out, hl_error *err) {
    HL_ASSERT(s && logits && out);
    out->n_top = 0;
    out->logprob = NAN;
    int rc = load_logits(s, logits, err);
    if (rc != HL_OK) return rc;
    if (s->p.temperature < HL_SAMPLER_GREEDY_EPS) {
        out->token = argmax(s->work, s->n_vocab);
        if (s->work[out->token] == -INFINITY) return all_banned(err);
    } else {
        rc = pick_random(s, &out->token, err);
        if (rc != HL_OK) return rc;
    }
    if (s->p.logprobs) fill_logprobs(s, logits, out);
    return HL_OK;
}

int hl_sampler_adjust_logits(hl_sampler *s, const float *logits, float *out, hl_error *err) {
    HL_ASSERT(s && logits && out);
    int rc = load_logits(s, logits, err);
    if (rc != HL_OK) return rc;
    memcpy(out, s->work, sizeof(float) * (size_t)s->n_vocab);
    return HL_OK;
}

// ---- candidates (the backend's topk op) ----

// True for a random draw with top_k off: the walk (see above).
static bool walks(const hl_sampler *s) {
    return s->p.temperature >= HL_SAMPLER_GREEDY_EPS && (s->p.top_k < 1 || s->p.top_k >= s->n_vocab);
}

bool hl_sampler_can_use_topk(const hl_sampler *s, int max_k, int *k_needed) {
    HL_ASSERT(s && k_needed);
    *k_needed = 0;
    if (s->n_bias > 0 || s->rep_on || s->fp_on) return false;
    const bool greedy = s->p.temperature < HL_SAMPLER_GREEDY_EPS;
    int k = greedy ? 1 : s->p.top_k;
    if (walks(s)) {
        // logprobs need the row's log-sum-exp at temperature 1, the walk the one at T
        if (s->p.logprobs && 1.0f / s->p.temperature != 1.0f) return false;
        k = HL_SAMPLER_WALK_K < max_k ? HL_SAMPLER_WALK_K : max_k;
        k = k < s->n_vocab ? k : s->n_vocab;
    }
    if (s->p.logprobs && s->p.n_logprobs > k) k = s->p.n_logprobs;
    if (k < 1 || k > max_k || k > s->n_vocab) return false;
    *k_needed = k;
    return true;
}

float hl_sampler_topk_inv_temp(const hl_sampler *s) {
    HL_ASSERT(s);
    return walks(s) ? 1.0f / s->p.temperature : 1.0f;
}

// The walk over the candidates, on a copy of the RNG that is kept only when they settle it.
static int walk_candidates(hl_sampler *s, const cand *c, int n, float lse, int32_t *token, hl_error *err) {
    if (c[0].v == -INFINITY) return all_banned(err);
    *token = HL_SAMPLER_NEED_ROW;
    if (!(lse < INFINITY)) return HL_OK; // |x| / T overflowed: leave it to the whole row
    hl_rng rng = s->rng;
    n = n < HL_SAMPLER_WALK_K ? n : HL_SAMPLER_WALK_K; // what the whole-row path walks in order
    const int32_t tok = walk(s, c, n, n == s->n_vocab, lse, uniform(&rng));
    if (tok < 0) return HL_OK;
    s->rng = rng;
    *token = tok;
    return HL_OK;
}

int hl_sampler_sample_topk(hl_sampler *s, const float *vals, const int32_t *ids, int n, float lse,
                           hl_sample_result *out, hl_error *err) {
    HL_ASSERT(s && vals && ids && out);
    out->n_top = 0;
    out->logprob = NAN;
    int k = 0;
    if (n < 1 || n > s->n_vocab || !hl_sampler_can_use_topk(s, n, &k))
        return hl_errorf(err, HL_ERR_INVAL, "sampler: these parameters need the whole logit row, not %d "
                         "candidates", n);
    if (isnan(lse)) return hl_errorf(err, HL_ERR_INVAL, "logits row holds a NaN or +inf");
    cand *c = s->cands;
    for (int i = 0; i < n; i++) c[i] = (cand){vals[i], ids[i]};
    int rc = HL_OK;
    if (s->p.temperature < HL_SAMPLER_GREEDY_EPS) {
        if (c[0].v == -INFINITY) return all_banned(err);
        out->token = c[0].id;
    } else if (walks(s)) {
        rc = walk_candidates(s, c, n, lse, &out->token, err);
    } else {
        rc = pick_sorted(s, c, s->p.top_k, &out->token, err);
    }
    if (rc != HL_OK || out->token == HL_SAMPLER_NEED_ROW || !s->p.logprobs) return rc;
    int at = 0;
    while (ids[at] != out->token) at++; // drawn from the candidates: found
    for (int i = 0; i < s->p.n_logprobs; i++) c[i] = (cand){vals[i], ids[i]};
    put_logprobs(s, vals[at], c, lse, out);
    return HL_OK;
}
