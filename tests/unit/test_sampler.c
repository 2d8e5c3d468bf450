// Unit tests for engine/sampler: greedy and truncation rules, seeded reproducibility,
// distributions (fixed seeds, so deterministic, with chi-square bounds far from the typical
// value), penalties against a plain reimplementation, logit bias, raw logprobs against a
// double-precision log-softmax, stop ids and parameter validation; draws from top-k candidates
// (greedy, top-k, and the walk without top-k with its NEED_ROW fallback) against the whole row.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/quant.h"
#include "engine/sampler.h"
#include "kernels/cpu/ref.h"

// ---- helpers ----

static float *random_logits(int n, uint64_t seed, float scale) {
    float *l = malloc(sizeof(float) * (size_t)n);
    hl_rng rng = {seed};
    for (int i = 0; i < n; i++) l[i] = (hl_rng_uniform(&rng) - 0.5f) * scale;
    return l;
}

static hl_sampler *make(const hl_sampler_params *p, int n_vocab) {
    hl_error err = {0};
    hl_sampler *s = hl_sampler_create(p, n_vocab, &err);
    ck_assert_msg(s != NULL, "create: %s", err.msg);
    return s;
}

static int32_t sample1(hl_sampler *s, const float *logits) {
    hl_error err = {0};
    hl_sample_result r;
    int rc = hl_sampler_sample(s, logits, &r, &err);
    // ck_abort only on failure: Check logs every ck_assert, which is slow over many draws.
    if (rc != HL_OK || r.token < 0) ck_abort_msg("sample: %s", err.msg);
    return r.token;
}

static int ref_argmax(const float *l, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (l[i] > l[best]) best = i;
    }
    return best;
}

// softmax(l / t) in double over the tokens with keep[i] (NULL: all).
static void ref_softmax(const float *l, int n, double t, const bool *keep, double *p) {
    double max = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) {
        if ((!keep || keep[i]) && l[i] > max) max = l[i];
    }
    for (int i = 0; i < n; i++) {
        p[i] = (!keep || keep[i]) ? exp(((double)l[i] - max) / t) : 0.0;
        sum += p[i];
    }
    for (int i = 0; i < n; i++) p[i] /= sum;
}

// Token ids sorted by logit, best first (ties: lower id first).
static void ref_order(const float *l, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++) { // insertion sort: small n in tests
        int x = order[i], j = i - 1;
        while (j >= 0 && (l[order[j]] < l[x] || (l[order[j]] == l[x] && order[j] > x))) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = x;
    }
}

// Draws n_draws tokens; asserts each is allowed by p (p[tok] > 0) and that the counts fit p:
// Pearson chi-square over the cells with expected count >= 5 (rarer cells pooled) stays below
// a bound that a correct sampler exceeds with probability < 1e-9 (df <= 60: mean df, sd
// sqrt(2 df); bound = df + 12 sqrt(2 df) + 20). The seed is fixed, so the test is
// deterministic; the bound only guards against choosing a lucky seed for a wrong sampler.
static void check_distribution(hl_sampler *s, const float *logits, const double *p, int n,
                               int n_draws) {
    long *count = calloc((size_t)n, sizeof(long));
    for (int d = 0; d < n_draws; d++) {
        int32_t t = sample1(s, logits);
        if (t >= n || p[t] <= 0.0) ck_abort_msg("token %d drawn but has probability 0", (int)t);
        count[t]++;
    }
    double chi2 = 0.0, pooled_e = 0.0, pooled_o = 0.0;
    int df = -1;
    for (int i = 0; i < n; i++) {
        double e = p[i] * n_draws;
        if (e < 5.0) {
            pooled_e += e;
            pooled_o += (double)count[i];
            continue;
        }
        chi2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    if (pooled_e >= 5.0) {
        chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
        df++;
    } else {
        ck_assert_msg(pooled_o <= pooled_e + 10.0, "rare tokens drawn %g times, expected %g",
                      pooled_o, pooled_e);
    }
    if (df < 1) df = 1;
    double bound = df + 12.0 * sqrt(2.0 * df) + 20.0;
    ck_assert_msg(chi2 < bound, "chi-square %.1f over %d df (bound %.1f)", chi2, df, bound);
    free(count);
}

// ---- greedy and top-k = 1 ----

START_TEST(test_greedy_is_argmax_lowest_id_on_ties) {
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = 0.0f;
    for (int n = 1; n <= 70; n++) { // every tail length around the 8-wide blocks
        float *l = random_logits(n, 100 + (uint64_t)n, 10.0f);
        hl_sampler *s = make(&p, n);
        ck_assert_int_eq(sample1(s, l), ref_argmax(l, n));
        // Ties: the maximum copied to several places, the lowest id wins.
        int a = (n * 7) % n, b = (n * 3 + 1) % n;
        l[a] = l[b] = 100.0f;
        ck_assert_int_eq(sample1(s, l), a < b ? a : b);
        hl_sampler_free(s);
        free(l);
    }
    float tie[6] = {1, 5, 3, 5, -INFINITY, 5};
    hl_sampler *s = make(&p, 6);
    ck_assert_int_eq(sample1(s, tie), 1);
    hl_sampler_free(s);
}
END_TEST

START_TEST(test_top_k_1_is_greedy_at_any_temperature) {
    const float temps[] = {0.05f, 0.7f, 1.0f, 2.0f};
    for (int ti = 0; ti < 4; ti++) {
        hl_sampler_params p = hl_sampler_default_params();
        p.temperature = temps[ti];
        p.top_k = 1;
        p.has_seed = true;
        p.seed = 9;
        hl_sampler *s = make(&p, 1000);
        for (int k = 0; k < 50; k++) {
            float *l = random_logits(1000, 500 + (uint64_t)k, 4.0f);
            if (k % 5 == 0) l[999] = l[3] = 50.0f; // a tie: id 3 wins
            ck_assert_int_eq(sample1(s, l), ref_argmax(l, 1000));
            free(l);
        }
        hl_sampler_free(s);
    }
}
END_TEST

// ---- seeds ----

static void draw_seq(uint64_t seed, const hl_sampler_params *base, const float *l, int n,
                     int32_t *out, int n_out, hl_sampler *noise) {
    hl_sampler_params p = *base;
    p.has_seed = true;
    p.seed = seed;
    hl_sampler *s = make(&p, n);
    for (int i = 0; i < n_out; i++) {
        out[i] = sample1(s, l);
        if (noise) sample1(noise, l); // another request drawing in between
    }
    hl_sampler_free(s);
}

START_TEST(test_seed_reproducible_and_independent) {
    const int n = 300, n_out = 200;
    float *l = random_logits(n, 77, 3.0f);
    hl_sampler_params cfgs[3];
    cfgs[0] = hl_sampler_default_params();
    cfgs[1] = cfgs[0];
    cfgs[1].top_k = 40;
    cfgs[1].top_p = 0.9f;
    cfgs[2] = cfgs[0];
    cfgs[2].top_p = 0.8f;
    cfgs[2].min_p = 0.05f;
    hl_sampler_params np = hl_sampler_default_params();
    for (int c = 0; c < 3; c++) {
        int32_t a[200], b[200], d[200];
        hl_sampler *noise = make(&np, n); // clock-seeded: draws differ run to run
        draw_seq(1234, &cfgs[c], l, n, a, n_out, NULL);
        draw_seq(1234, &cfgs[c], l, n, b, n_out, noise);
        draw_seq(1235, &cfgs[c], l, n, d, n_out, NULL);
        hl_sampler_free(noise);
        int same_ab = 0, same_ad = 0;
        for (int i = 0; i < n_out; i++) {
            same_ab += a[i] == b[i];
            same_ad += a[i] == d[i];
        }
        ck_assert_int_eq(same_ab, n_out);
        // Tokens differ most of the time between seeds (each distribution has many options).
        ck_assert_msg(same_ad < n_out / 2, "config %d: seeds 1234/1235 agree on %d of %d", c,
                      same_ad, n_out);
    }
    free(l);
}
END_TEST

// ---- distributions ----

START_TEST(test_temperature_distribution) {
    const float temps[] = {0.5f, 1.0f, 1.7f};
    const int sizes[] = {8, 37, 1000};
    for (int si = 0; si < 3; si++) {
        for (int ti = 0; ti < 3; ti++) {
            int n = sizes[si];
            float *l = random_logits(n, 31 + (uint64_t)si, n > 100 ? 12.0f : 5.0f);
            double *pr = malloc(sizeof(double) * (size_t)n);
            ref_softmax(l, n, temps[ti], NULL, pr);
            hl_sampler_params p = hl_sampler_default_params();
            p.temperature = temps[ti];
            p.has_seed = true;
            p.seed = 4242 + (uint64_t)(si * 3 + ti);
            hl_sampler *s = make(&p, n);
            check_distribution(s, l, pr, n, 40000);
            hl_sampler_free(s);
            free(pr);
            free(l);
        }
    }
}
END_TEST

START_TEST(test_top_k_distribution_and_support) {
    const int n = 500, k = 10;
    float *l = random_logits(n, 5, 6.0f);
    int order[500];
    ref_order(l, n, order);
    bool keep[500] = {false};
    for (int i = 0; i < k; i++) keep[order[i]] = true;
    double pr[500];
    ref_softmax(l, n, 1.5, keep, pr);
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = 1.5f;
    p.top_k = k;
    p.has_seed = true;
    p.seed = 11;
    hl_sampler *s = make(&p, n);
    check_distribution(s, l, pr, n, 30000); // also asserts nothing outside the k best
    hl_sampler_free(s);
    free(l);
}
END_TEST

// Nucleus by HF's rule in double: token i (best first) stays when the mass before it < top_p.
// Returns the nucleus size; *margin is how far the cut is from a rounding-sensitive tie.
static int ref_nucleus(const double *pr, const int *order, int n, double top_p, double *margin) {
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        if (cum >= top_p) {
            *margin = fmin(cum - top_p, top_p - (cum - pr[order[i - 1]]));
            return i;
        }
        cum += pr[order[i]];
    }
    *margin = 1.0;
    return n;
}

static void check_top_p(int n, int top_k, float top_p, float temp, float scale, uint64_t seed) {
    float *l = random_logits(n, seed, scale);
    int *order = malloc(sizeof(int) * (size_t)n);
    double *pr = malloc(sizeof(double) * (size_t)n);
    bool *keep = calloc((size_t)n, sizeof(bool));
    ref_order(l, n, order);
    int kk = top_k > 0 ? top_k : n;
    for (int i = 0; i < kk; i++) keep[order[i]] = true;
    ref_softmax(l, n, temp, keep, pr);
    double margin;
    int m = ref_nucleus(pr, order, kk, top_p, &margin);
    ck_assert_msg(margin > 1e-4, "test data too close to the top-p cut (%g)", margin);
    ck_assert_msg(m > 1 && m < kk, "nucleus of %d tokens is not a real cut", m);
    memset(keep, 0, sizeof(bool) * (size_t)n);
    for (int i = 0; i < m; i++) keep[order[i]] = true;
    ref_softmax(l, n, temp, keep, pr);
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.has_seed = true;
    p.seed = seed * 7;
    hl_sampler *s = make(&p, n);
    check_distribution(s, l, pr, n, 30000);
    hl_sampler_free(s);
    free(keep);
    free(pr);
    free(order);
    free(l);
}

START_TEST(test_top_p_distribution_and_support) {
    check_top_p(200, 0, 0.9f, 1.0f, 8.0f, 21);   // whole-vocabulary nucleus, small
    check_top_p(300, 50, 0.7f, 0.8f, 6.0f, 22);  // nucleus inside the top-k set
    // A flat distribution over 5000 tokens: the nucleus holds thousands, so the candidate
    // search grows past its first 64 and 512 (support only; too many cells for chi-square).
    const int n = 5000;
    float *l = random_logits(n, 23, 1.0f);
    int *order = malloc(sizeof(int) * (size_t)n);
    double *pr = malloc(sizeof(double) * (size_t)n);
    ref_order(l, n, order);
    ref_softmax(l, n, 1.0, NULL, pr);
    double margin;
    int m = ref_nucleus(pr, order, n, 0.6, &margin);
    ck_assert(m > 600 && margin > 1e-6);
    bool *in = calloc((size_t)n, sizeof(bool));
    for (int i = 0; i < m; i++) in[order[i]] = true;
    hl_sampler_params p = hl_sampler_default_params();
    p.top_p = 0.6f;
    p.has_seed = true;
    p.seed = 3;
    hl_sampler *s = make(&p, n);
    int distinct = 0;
    bool *seen = calloc((size_t)n, sizeof(bool));
    for (int d = 0; d < 10000; d++) {
        int32_t t = sample1(s, l);
        if (!in[t]) ck_abort_msg("token %d outside the nucleus", (int)t);
        distinct += !seen[t];
        seen[t] = true;
    }
    ck_assert_int_gt(distinct, m * 9 / 10); // and most of the nucleus does occur
    hl_sampler_free(s);
    free(seen);
    free(in);
    free(pr);
    free(order);
    free(l);
}
END_TEST

static void check_min_p(int top_k, float top_p, float min_p, float temp, uint64_t seed) {
    const int n = 400;
    float *l = random_logits(n, seed, 10.0f);
    int order[400];
    double pr[400];
    bool keep[400] = {false};
    ref_order(l, n, order);
    int kk = top_k > 0 ? top_k : n;
    for (int i = 0; i < kk; i++) keep[order[i]] = true;
    ref_softmax(l, n, temp, keep, pr);
    double margin = 1.0;
    int m = top_p < 1.0f ? ref_nucleus(pr, order, kk, top_p, &margin) : kk;
    ck_assert(margin > 1e-4);
    memset(keep, 0, sizeof(keep));
    double pmax = pr[order[0]];
    int kept = 0;
    for (int i = 0; i < m; i++) {
        double rel = pr[order[i]] / pmax;
        ck_assert_msg(fabs(rel - min_p) > 1e-4, "test data too close to the min-p cut");
        keep[order[i]] = rel >= min_p;
        kept += keep[order[i]];
    }
    ck_assert_msg(kept > 1 && kept < m, "min-p keeps %d of %d: not a real cut", kept, m);
    ref_softmax(l, n, temp, keep, pr);
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.has_seed = true;
    p.seed = seed + 1000;
    hl_sampler *s = make(&p, n);
    check_distribution(s, l, pr, n, 30000);
    hl_sampler_free(s);
    free(l);
}

START_TEST(test_min_p_and_combinations) {
    check_min_p(0, 1.0f, 0.1f, 1.0f, 41);   // min-p alone, whole vocabulary
    check_min_p(0, 0.95f, 0.2f, 1.3f, 42);  // after a whole-vocabulary nucleus
    check_min_p(30, 1.0f, 0.6f, 0.9f, 43);  // after top-k
    check_min_p(60, 0.9f, 0.5f, 1.0f, 44);  // top-k, top-p, min-p
}
END_TEST

// A 128256-token vocabulary (Llama 3): the sampled token is always among the k best.
START_TEST(test_large_vocab_top_k_support) {
    const int n = 128256;
    float *l = random_logits(n, 8, 20.0f);
    int *order = malloc(sizeof(int) * 64);
    // The 40 best by a partial scan in the test (n is too big for the insertion sort).
    bool *top = calloc((size_t)n, sizeof(bool));
    for (int k = 0; k < 40; k++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (!top[i] && (best < 0 || l[i] > l[best])) best = i;
        }
        top[best] = true;
        order[k] = best;
    }
    hl_sampler_params p = hl_sampler_default_params();
    p.top_k = 40;
    p.top_p = 0.95f;
    p.temperature = 3.0f / 2.0f;
    p.has_seed = true;
    p.seed = 1;
    hl_sampler *s = make(&p, n);
    for (int d = 0; d < 200; d++) {
        if (!top[sample1(s, l)]) ck_abort_msg("a token outside the 40 best");
    }
    hl_sampler_free(s);
    p = hl_sampler_default_params();
    p.temperature = 0.0f;
    s = make(&p, n);
    ck_assert_int_eq(sample1(s, l), order[0]);
    hl_sampler_free(s);
    free(top);
    free(order);
    free(l);
}
END_TEST

// ---- penalties and bias ----

// The formulas of sampler.h, applied the obvious way over the full history.
static void ref_adjust(const float *raw, int n, const hl_sampler_params *p, const int32_t *prompt,
                       int n_prompt, const int32_t *gen, int n_gen, float *out) {
    memcpy(out, raw, sizeof(float) * (size_t)n);
    for (int i = 0; i < p->n_logit_bias; i++) {
        hl_logit_bias b = p->logit_bias[i];
        out[b.id] = b.bias <= -100.0f ? -INFINITY : out[b.id] + b.bias;
    }
    int *hist = malloc(sizeof(int) * (size_t)(n_prompt + n_gen + 1));
    int n_hist = 0;
    if (p->penalty_prompt) {
        for (int i = 0; i < n_prompt; i++) hist[n_hist++] = prompt[i];
    }
    for (int i = 0; i < n_gen; i++) hist[n_hist++] = gen[i];
    int from = p->penalty_last_n < 0 ? 0 : n_hist - p->penalty_last_n;
    if (p->penalty_last_n == 0) from = n_hist;
    if (from < 0) from = 0;
    for (int t = 0; t < n; t++) {
        bool in_window = false;
        for (int i = from; i < n_hist; i++) in_window |= hist[i] == t;
        int count = 0;
        for (int i = 0; i < n_gen; i++) count += gen[i] == t;
        float x = out[t];
        if (in_window && p->repetition_penalty != 1.0f)
            x = x > 0.0f ? x / p->repetition_penalty : x * p->repetition_penalty;
        if (count > 0 && (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f))
            x -= (float)count * p->frequency_penalty + p->presence_penalty;
        out[t] = x;
    }
    free(hist);
}

static void assert_same_logits(const float *got, const float *want, int n, const char *what) {
    for (int t = 0; t < n; t++) {
        if (got[t] == want[t]) continue; // -inf == -inf too
        ck_abort_msg("%s: token %d: %g != %g", what, t, (double)got[t], (double)want[t]);
    }
}

static void check_penalties(int last_n, bool with_prompt, uint64_t seed) {
    const int n = 300;
    hl_logit_bias bias[3] = {{5, 2.5f}, {17, -100.0f}, {250, -3.0f}};
    hl_sampler_params p = hl_sampler_default_params();
    p.repetition_penalty = 1.3f;
    p.penalty_last_n = last_n;
    p.penalty_prompt = with_prompt;
    p.frequency_penalty = 0.7f;
    p.presence_penalty = -0.4f;
    p.logit_bias = bias;
    p.n_logit_bias = 3;
    hl_sampler *s = make(&p, n);
    hl_rng rng = {seed};
    int32_t prompt[150], gen[400];
    for (int i = 0; i < 150; i++) prompt[i] = (int32_t)(hl_rng_next(&rng) % 60);
    hl_error err = {0};
    ck_assert_int_eq(hl_sampler_accept_prompt(s, prompt, 150, &err), HL_OK);
    float *raw = random_logits(n, seed + 1, 8.0f);
    float *got = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
    char what[64];
    for (int g = 0; g < 400; g++) {
        if (g % 37 == 0 || g == 399) { // along the way, window sliding included
            ck_assert_int_eq(hl_sampler_adjust_logits(s, raw, got, &err), HL_OK);
            ref_adjust(raw, n, &p, prompt, 150, gen, g, want);
            snprintf(what, sizeof(what), "last_n %d, prompt %d, %d generated", last_n,
                     with_prompt, g);
            assert_same_logits(got, want, n, what);
        }
        gen[g] = (int32_t)(hl_rng_next(&rng) % 120);
        ck_assert_int_eq(hl_sampler_accept(s, gen[g], &err), HL_OK);
    }
    ck_assert_int_eq(hl_sampler_n_generated(s), 400);
    free(got);
    free(want);
    free(raw);
    hl_sampler_free(s);
}

START_TEST(test_penalties_match_formulas) {
    const int last_ns[] = {-1, 0, 1, 16, 100};
    for (int li = 0; li < 5; li++) {
        check_penalties(last_ns[li], true, 900 + (uint64_t)li);
        check_penalties(last_ns[li], false, 950 + (uint64_t)li);
    }
}
END_TEST

START_TEST(test_logit_bias_bans_and_boosts) {
    const int n = 50;
    float *l = random_logits(n, 3, 4.0f);
    int best = ref_argmax(l, n);
    hl_logit_bias ban = {best, -100.0f};
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = 0.0f;
    p.logit_bias = &ban;
    p.n_logit_bias = 1;
    hl_sampler *s = make(&p, n);
    ck_assert_int_ne(sample1(s, l), best);
    hl_sampler_free(s);
    // Even at high temperature over many draws, a banned token never comes.
    l[best] = 40.0f;
    p.temperature = 2.0f;
    p.has_seed = true;
    p.seed = 5;
    s = make(&p, n);
    for (int d = 0; d < 20000; d++) {
        if (sample1(s, l) == best) ck_abort_msg("banned token %d drawn", best);
    }
    hl_sampler_free(s);
    // +100 makes the lowest token the greedy choice.
    int worst = 0;
    for (int i = 1; i < n; i++) worst = l[i] < l[worst] ? i : worst;
    hl_logit_bias boost = {worst, 100.0f};
    p = hl_sampler_default_params();
    p.temperature = 0.0f;
    p.logit_bias = &boost;
    p.n_logit_bias = 1;
    s = make(&p, n);
    ck_assert_int_eq(sample1(s, l), worst);
    hl_sampler_free(s);
    // Everything banned (or masked): an error, not a token.
    hl_logit_bias all[3] = {{0, -100.0f}, {1, -100.0f}, {2, -100.0f}};
    float three[3] = {1.0f, 2.0f, -INFINITY};
    for (int greedy = 0; greedy < 2; greedy++) {
        p = hl_sampler_default_params();
        p.temperature = greedy ? 0.0f : 1.0f;
        p.logit_bias = all;
        p.n_logit_bias = 2;
        s = make(&p, 3);
        hl_error err = {0};
        hl_sample_result r;
        ck_assert_int_eq(hl_sampler_sample(s, three, &r, &err), HL_ERR_INVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "banned"));
        hl_sampler_free(s);
    }
    free(l);
}
END_TEST

// ---- logprobs ----

START_TEST(test_logprobs_are_raw_log_softmax) {
    const int n = 1003;
    float *l = random_logits(n, 17, 30.0f);
    l[10] = -INFINITY;
    l[11] = l[12] = 14.9f; // a tie in the top list: lower id first
    // Reference in double: log-softmax of the raw logits.
    double max = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) max = fmax(max, l[i]);
    for (int i = 0; i < n; i++) sum += exp((double)l[i] - max);
    double lse = max + log(sum);
    int order[1003];
    ref_order(l, n, order);
    hl_logit_bias bias = {order[0], -5.0f};
    hl_sampler_params p = hl_sampler_default_params();
    p.logprobs = true;
    p.n_logprobs = 20;
    p.temperature = 0.6f;   // none of these change the reported logprobs
    p.top_k = 30;
    p.repetition_penalty = 1.5f;
    p.frequency_penalty = 1.0f;
    p.logit_bias = &bias;
    p.n_logit_bias = 1;
    p.has_seed = true;
    p.seed = 2;
    hl_sampler *s = make(&p, n);
    hl_error err = {0};
    for (int d = 0; d < 50; d++) {
        hl_sample_result r;
        ck_assert_int_eq(hl_sampler_sample(s, l, &r, &err), HL_OK);
        // Tolerance: float logits up to |15| and a float result: 2e-5 absolute.
        ck_assert_msg(fabs(r.logprob - ((double)l[r.token] - lse)) < 2e-5, "token %d: %g vs %g",
                      (int)r.token, (double)r.logprob, (double)l[r.token] - lse);
        ck_assert_int_eq(r.n_top, 20);
        for (int i = 0; i < 20; i++) {
            ck_assert_int_eq(r.top[i].id, order[i]);
            ck_assert(fabs(r.top[i].logprob - ((double)l[order[i]] - lse)) < 2e-5);
        }
        ck_assert_int_eq(hl_sampler_accept(s, r.token, &err), HL_OK);
    }
    hl_sampler_free(s);
    // Without logprobs: NaN and no list.
    p = hl_sampler_default_params();
    s = make(&p, n);
    hl_sample_result r;
    ck_assert_int_eq(hl_sampler_sample(s, l, &r, &err), HL_OK);
    ck_assert(isnan(r.logprob));
    ck_assert_int_eq(r.n_top, 0);
    hl_sampler_free(s);
    free(l);
}
END_TEST

// ---- stop ids, finish reasons ----

START_TEST(test_stop_tokens_and_finish) {
    hl_sampler_params p = hl_sampler_default_params();
    int32_t stops[2] = {7, 9};
    p.stop_ids = stops;
    p.n_stop_ids = 2;
    p.max_tokens = 3;
    hl_sampler *s = make(&p, 100);
    hl_error err = {0};
    int32_t eog[3] = {2, 50, 99};
    ck_assert_int_eq(hl_sampler_set_eog_ids(s, eog, 3, &err), HL_OK);
    ck_assert(hl_sampler_is_stop_token(s, 2) && hl_sampler_is_stop_token(s, 99));
    ck_assert(hl_sampler_is_stop_token(s, 7) && hl_sampler_is_stop_token(s, 9));
    ck_assert(!hl_sampler_is_stop_token(s, 3) && !hl_sampler_is_stop_token(s, 0));
    ck_assert_int_eq(hl_sampler_accept(s, 4, &err), HL_OK);
    ck_assert_int_eq(hl_sampler_finish_reason(s, 4), HL_SAMPLER_FINISH_NONE);
    ck_assert_int_eq(hl_sampler_accept(s, 50, &err), HL_OK);
    ck_assert_int_eq(hl_sampler_finish_reason(s, 50), HL_SAMPLER_FINISH_STOP);
    ck_assert_int_eq(hl_sampler_accept(s, 5, &err), HL_OK);
    ck_assert_int_eq(hl_sampler_finish_reason(s, 5), HL_SAMPLER_FINISH_LENGTH);
    ck_assert_int_eq(hl_sampler_set_eog_ids(s, (int32_t[]){100}, 1, &err), HL_ERR_INVAL);
    ck_assert(hl_sampler_is_stop_token(s, 50)); // a failed set keeps the old list
    hl_sampler_free(s);
    // ignore_eos: the model's ids no longer stop; the request's own stop ids still do.
    p.ignore_eos = true;
    p.max_tokens = -1;
    s = make(&p, 100);
    ck_assert_int_eq(hl_sampler_set_eog_ids(s, eog, 3, &err), HL_OK);
    ck_assert(!hl_sampler_is_stop_token(s, 2) && !hl_sampler_is_stop_token(s, 50));
    ck_assert(hl_sampler_is_stop_token(s, 7));
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(hl_sampler_accept(s, 2, &err), HL_OK);
    ck_assert_int_eq(hl_sampler_finish_reason(s, 2), HL_SAMPLER_FINISH_NONE);
    hl_sampler_free(s);
}
END_TEST

// ---- validation ----

START_TEST(test_validation_errors) {
    hl_logit_bias bias_bad_id = {1000, 1.0f}, bias_bad_val = {3, -101.0f};
    hl_logit_bias bias_dup[2] = {{3, 1.0f}, {3, 2.0f}};
    int32_t stop_bad = 1000;
    struct {
        hl_sampler_params p;
        const char *needle;
    } cases[24];
    int nc = 0;
    hl_sampler_params d = hl_sampler_default_params();
#define CASE(field, value, text) \
    do {                         \
        cases[nc].p = d;         \
        cases[nc].p.field = value; \
        cases[nc++].needle = text; \
    } while (0)
    CASE(temperature, -0.1f, "temperature");
    CASE(temperature, 2.5f, "temperature");
    CASE(temperature, NAN, "temperature");
    CASE(top_k, -1, "top_k");
    CASE(top_p, 0.0f, "top_p");
    CASE(top_p, 1.01f, "top_p");
    CASE(min_p, -0.01f, "min_p");
    CASE(min_p, 1.5f, "min_p");
    CASE(repetition_penalty, 0.0f, "repetition_penalty");
    CASE(repetition_penalty, INFINITY, "repetition_penalty");
    CASE(penalty_last_n, -2, "penalty_last_n");
    CASE(frequency_penalty, 2.01f, "frequency_penalty");
    CASE(presence_penalty, -2.5f, "presence_penalty");
    CASE(n_logprobs, 21, "top_logprobs");
    CASE(n_logprobs, 3, "logprobs to be true"); // logprobs stays false
    CASE(max_tokens, 0, "max_tokens");
    CASE(max_tokens, -5, "max_tokens");
    CASE(n_logit_bias, HL_SAMPLER_MAX_LOGIT_BIAS + 1, "logit_bias");
    CASE(n_stop_ids, -1, "stop token ids");
#undef CASE
    cases[nc].p = d;
    cases[nc].p.logit_bias = &bias_bad_id;
    cases[nc].p.n_logit_bias = 1;
    cases[nc++].needle = "not a token id";
    cases[nc].p = d;
    cases[nc].p.logit_bias = &bias_bad_val;
    cases[nc].p.n_logit_bias = 1;
    cases[nc++].needle = "[-100, 100]";
    cases[nc].p = d;
    cases[nc].p.logit_bias = bias_dup;
    cases[nc].p.n_logit_bias = 2;
    cases[nc++].needle = "twice";
    cases[nc].p = d;
    cases[nc].p.stop_ids = &stop_bad;
    cases[nc].p.n_stop_ids = 1;
    cases[nc++].needle = "stop_token_ids";
    for (int i = 0; i < nc; i++) {
        hl_error err = {0};
        ck_assert_int_eq(hl_sampler_params_validate(&cases[i].p, 1000, &err), HL_ERR_INVAL);
        ck_assert_msg(strstr(err.msg, cases[i].needle), "case %d: '%s' lacks '%s'", i, err.msg,
                      cases[i].needle);
        hl_error err2 = {0};
        ck_assert_ptr_null(hl_sampler_create(&cases[i].p, 1000, &err2));
        ck_assert_int_eq(err2.code, HL_ERR_INVAL);
    }
    // Edges that are valid.
    hl_sampler_params ok = d;
    ok.temperature = 2.0f;
    ok.top_p = 1.0f;
    ok.min_p = 1.0f;
    ok.frequency_penalty = -2.0f;
    ok.logprobs = true;
    ok.n_logprobs = 20;
    ok.max_tokens = 1;
    ck_assert_int_eq(hl_sampler_params_validate(&ok, 1000, NULL), HL_OK);
    ck_assert_int_eq(hl_sampler_params_validate(&ok, 0, NULL), HL_ERR_INVAL);
    ck_assert_int_eq(hl_sampler_params_validate(&ok, 20, NULL), HL_OK);
    ck_assert_int_eq(hl_sampler_params_validate(&ok, 19, NULL), HL_ERR_INVAL); // 20 top logprobs of 19 tokens
    // Bad input at run time.
    hl_sampler *s = make(&d, 4);
    hl_error err = {0};
    hl_sample_result r;
    float nan_row[4] = {0, 1, NAN, 2}, inf_row[4] = {0, INFINITY, 1, 2};
    ck_assert_int_eq(hl_sampler_sample(s, nan_row, &r, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "logits[2]"));
    ck_assert_int_eq(hl_sampler_sample(s, inf_row, &r, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "logits[1]"));
    ck_assert_int_eq(hl_sampler_accept(s, 4, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_sampler_accept(s, -1, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_sampler_accept_prompt(s, (int32_t[]){1, 2, 9}, 3, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "position 2"));
    hl_sampler_free(s);
    hl_sampler_free(NULL);
}
END_TEST

// ---- candidates (hl_sampler_sample_topk) ----

// A row of n logits: kind 0 random, 1 few distinct values (many ties), 2 random with -inf holes.
static void candidate_row(float *l, int n, int kind, hl_rng *rng) {
    for (int i = 0; i < n; i++) {
        const float u = hl_rng_uniform(rng);
        if (kind == 1) l[i] = floorf(u * 6.0f) * 1.5f - 3.0f;
        else l[i] = (u - 0.5f) * (kind == 2 ? 12.0f : 30.0f);
        if (kind == 2 && hl_rng_uniform(rng) < 0.3f) l[i] = -INFINITY;
    }
}

// Random parameters hl_sampler_can_use_topk accepts for a vocabulary of n.
static hl_sampler_params eligible_params(int n, hl_rng *rng) {
    hl_sampler_params p = hl_sampler_default_params();
    const int max_k = n - 1 < HL_TOPK_MAX ? n - 1 : HL_TOPK_MAX;
    p.temperature = hl_rng_uniform(rng) < 0.3f ? 0.0f : 0.05f + 1.95f * hl_rng_uniform(rng);
    p.top_k = 1 + (int)(hl_rng_next(rng) % (uint64_t)max_k);
    if (hl_rng_uniform(rng) < 0.5f) p.top_p = 0.3f + 0.7f * hl_rng_uniform(rng);
    if (hl_rng_uniform(rng) < 0.4f) p.min_p = 0.3f * hl_rng_uniform(rng);
    p.logprobs = hl_rng_uniform(rng) < 0.6f;
    const int max_lp = n < HL_SAMPLER_MAX_LOGPROBS ? n : HL_SAMPLER_MAX_LOGPROBS;
    if (p.logprobs) p.n_logprobs = (int)(hl_rng_next(rng) % (uint64_t)(max_lp + 1));
    p.has_seed = true;
    p.seed = hl_rng_next(rng);
    return p;
}

static void topk_of(const float *l, int n, int k, float *vals, int32_t *ids, float *lse) {
    hl_tensor x = {.type = HL_DTYPE_F32, .ne = {n, 1}, .row_bytes = (size_t)n * 4, .data = (void *)l};
    hl_tensor tv = {.type = HL_DTYPE_F32, .ne = {k, 1}, .row_bytes = (size_t)k * 4, .data = vals};
    hl_tensor ti = {.type = HL_DTYPE_I32, .ne = {k, 1}, .row_bytes = (size_t)k * 4, .data = ids};
    hl_tensor tl = {.type = HL_DTYPE_F32, .ne = {1, 1}, .row_bytes = 4, .data = lse};
    hl_ref_topk(&tv, &ti, &tl, &x, NULL, k);
}

// Thousands of (row, params, seed) cases: drawing from the candidates (as many as needed, or
// more) gives what the whole row gives — token, RNG use over several draws, and logprobs bit
// for bit with the sampler's own log-sum-exp; with the reference lse (double) the tokens are
// the same and logprobs agree within float rounding of the lse.
START_TEST(test_topk_candidates_match_full_row) {
    hl_rng rng = {77};
    float *l = malloc(sizeof(float) * 3000), vals[HL_TOPK_MAX];
    int32_t ids[HL_TOPK_MAX];
    hl_error err = {0};
    int n_cases = 0;
    for (int c = 0; c < 3000; c++) {
        const int n = 2 + (int)(hl_rng_next(&rng) % (c % 10 == 0 ? 2999 : 400));
        candidate_row(l, n, c % 3, &rng);
        if (c % 3 == 2) l[hl_rng_next(&rng) % (uint64_t)n] = 1.0f; // not every token masked
        hl_sampler_params p = eligible_params(n, &rng);
        hl_sampler *full = make(&p, n), *cand = make(&p, n);
        int k = 0;
        ck_assert(hl_sampler_can_use_topk(cand, HL_TOPK_MAX, &k));
        ck_assert_int_eq(k, p.temperature < HL_SAMPLER_GREEDY_EPS && p.n_logprobs < 1 ? 1 : k);
        const int max_n = n < HL_TOPK_MAX ? n : HL_TOPK_MAX;
        const int n_cand = k + (int)(hl_rng_next(&rng) % (uint64_t)(max_n - k + 1));
        float ref_lse;
        topk_of(l, n, n_cand, vals, ids, &ref_lse);
        const float lse = c % 2 ? hl_sampler_log_sum_exp(l, n, 1.0f) : ref_lse;
        for (int d = 0; d < 3; d++) {
            hl_sample_result a, b;
            const int ra = hl_sampler_sample(full, l, &a, &err);
            const int rb = hl_sampler_sample_topk(cand, vals, ids, n_cand, lse, &b, &err);
            if (ra != rb || a.token != b.token || a.n_top != b.n_top)
                ck_abort_msg("case %d draw %d: rc %d/%d token %d/%d", c, d, ra, rb, (int)a.token, (int)b.token);
            if (ra != HL_OK) break;
            for (int i = 0; i < a.n_top; i++) {
                if (a.top[i].id != b.top[i].id) ck_abort_msg("case %d: top %d id", c, i);
            }
            const bool exact = c % 2 == 1;
            for (int i = -1; i < a.n_top; i++) {
                const float x = i < 0 ? a.logprob : a.top[i].logprob, y = i < 0 ? b.logprob : b.top[i].logprob;
                const bool same = memcmp(&x, &y, sizeof x) == 0 || (isnan(x) && isnan(y));
                if (exact ? !same : !(same || fabsf(x - y) <= 4e-6f * fmaxf(1.0f, fabsf(lse))))
                    ck_abort_msg("case %d: logprob %d %.9g vs %.9g", c, i, (double)x, (double)y);
            }
            hl_sampler_accept(full, a.token, NULL);
            hl_sampler_accept(cand, b.token, NULL);
            n_cases++;
        }
        hl_sampler_free(full);
        hl_sampler_free(cand);
    }
    ck_assert_int_gt(n_cases, 6000);
    free(l);
}
END_TEST

// Greedy ties: the lowest id of the best value, from the candidates as from the row.
START_TEST(test_topk_greedy_ties) {
    float l[64], vals[8], lse;
    int32_t ids[8];
    for (int i = 0; i < 64; i++) l[i] = (float)(i % 5);
    l[63] = 4.0f; // the best value at 4, 9, ..., 59, 63: greedy takes 4
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = 0;
    hl_sampler *s = make(&p, 64);
    topk_of(l, 64, 8, vals, ids, &lse);
    hl_sample_result r;
    ck_assert_int_eq(hl_sampler_sample_topk(s, vals, ids, 8, lse, &r, NULL), HL_OK);
    ck_assert_int_eq(r.token, 4);
    ck_assert_int_eq(sample1(s, l), 4);
    hl_sampler_free(s);
}
END_TEST

// Parameters that need the whole row are reported, and refused by sample_topk; a NaN lse and
// an all -inf row are errors as on the full path.
START_TEST(test_topk_ineligible_and_errors) {
    const int n = 100;
    float *l = random_logits(n, 3, 10.0f), vals[HL_TOPK_MAX], lse;
    int32_t ids[HL_TOPK_MAX];
    topk_of(l, n, 50, vals, ids, &lse);
    hl_logit_bias bias = {3, 2.0f};
    hl_sampler_params base = hl_sampler_default_params();
    base.top_k = 10;
    hl_sampler_params bad[8];
    for (int i = 0; i < 8; i++) bad[i] = base;
    bad[0].logit_bias = &bias;
    bad[0].n_logit_bias = 1;
    bad[1].repetition_penalty = 1.2f;
    bad[2].frequency_penalty = 0.5f;
    bad[3].presence_penalty = -0.5f;
    bad[4].top_k = 0;          // a walk with logprobs away from temperature 1
    bad[4].temperature = 0.8f;
    bad[4].logprobs = true;
    bad[5].top_k = n;          // k >= n_vocab is off: the same
    bad[5].temperature = 1.5f;
    bad[5].logprobs = true;
    bad[6].top_k = 60;         // more than max_k below
    bad[7].logprobs = true;    // n_logprobs over max_k below
    bad[7].n_logprobs = 20;
    bad[7].top_k = 5;
    hl_error err = {0};
    hl_sample_result r;
    for (int i = 0; i < 8; i++) {
        hl_sampler *s = make(&bad[i], n);
        int k = -1;
        ck_assert_msg(!hl_sampler_can_use_topk(s, i >= 6 ? 15 : HL_TOPK_MAX, &k), "case %d", i);
        ck_assert_int_eq(k, 0);
        if (i < 6) ck_assert_int_eq(hl_sampler_sample_topk(s, vals, ids, 50, lse, &r, &err), HL_ERR_INVAL);
        hl_sampler_free(s);
    }
    hl_sampler *s = make(&base, n);
    ck_assert_int_eq(hl_sampler_sample_topk(s, vals, ids, 5, lse, &r, &err), HL_ERR_INVAL); // too few
    ck_assert_int_eq(hl_sampler_sample_topk(s, vals, ids, 50, NAN, &r, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "NaN"));
    l[7] = NAN;
    ck_assert(isnan(hl_sampler_log_sum_exp(l, n, 1.0f)));
    for (int i = 0; i < n; i++) l[i] = -INFINITY;
    topk_of(l, n, 50, vals, ids, &lse);
    ck_assert(lse == -INFINITY && hl_sampler_log_sum_exp(l, n, 1.0f) == -INFINITY);
    ck_assert_int_eq(hl_sampler_sample(s, l, &r, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_sampler_sample_topk(s, vals, ids, 50, lse, &r, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "banned"));
    hl_sampler_free(s);
    free(l);
}
END_TEST

// ---- the walk: draws without top-k from candidates ----

// A row of n logits for the walk tests: 0 peaked (range 30), 1 few distinct values, 2 -inf
// holes, 3 flat (range 2: long tails), 4 one clear best over a flat tail.
static void walk_row(float *l, int n, int kind, hl_rng *rng) {
    for (int i = 0; i < n; i++) {
        const float u = hl_rng_uniform(rng);
        switch (kind) {
        case 1: l[i] = floorf(u * 6.0f) * 1.5f - 3.0f; break;
        case 2: l[i] = hl_rng_uniform(rng) < 0.3f ? -INFINITY : (u - 0.5f) * 12.0f; break;
        case 3: l[i] = (u - 0.5f) * 2.0f; break;
        case 4: l[i] = (u - 0.5f) * 3.0f; break;
        default: l[i] = (u - 0.5f) * 30.0f; break;
        }
    }
    l[hl_rng_next(rng) % (uint64_t)n] = kind == 4 ? 9.0f : 1.0f; // not every token masked
}

// Random parameters of a walk (top_k off); logprobs only at temperature 1, where the
// candidates serve them.
static hl_sampler_params walk_params(int n, hl_rng *rng) {
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = hl_rng_uniform(rng) < 0.3f ? 1.0f : 0.05f + 1.95f * hl_rng_uniform(rng);
    p.top_k = hl_rng_uniform(rng) < 0.15f ? n : 0; // k >= n_vocab is off too
    if (hl_rng_uniform(rng) < 0.5f) p.top_p = 0.2f + 0.8f * hl_rng_uniform(rng);
    if (hl_rng_uniform(rng) < 0.4f) p.min_p = 0.3f * hl_rng_uniform(rng);
    p.logprobs = p.temperature == 1.0f && hl_rng_uniform(rng) < 0.6f;
    const int max_lp = n < HL_SAMPLER_MAX_LOGPROBS ? n : HL_SAMPLER_MAX_LOGPROBS;
    if (p.logprobs) p.n_logprobs = (int)(hl_rng_next(rng) % (uint64_t)(max_lp + 1));
    p.has_seed = true;
    p.seed = hl_rng_next(rng);
    return p;
}

// Whether the best n_cand candidates must settle a walk with top_p / min_p (1), must not (0),
// or the case is too close to a cut to say from double arithmetic (-1); -1 without cuts.
static int walk_should_settle(const float *l, int n, const float *vals, int n_cand, const hl_sampler_params *p) {
    if (n_cand == n) return 1;
    if (p->top_p >= 1.0f && p->min_p <= 0.0f) return -1;
    const double it = 1.0 / (double)p->temperature, max = vals[0], tol = 1e-3;
    double z = 0.0, cum = 0.0;
    for (int i = 0; i < n; i++) z += exp(((double)l[i] - max) * it);
    for (int i = 0; i < n_cand; i++) cum += exp(((double)vals[i] - max) * it);
    const double last = exp(((double)vals[n_cand - 1] - max) * it);
    int by_p = 0, by_m = 0; // 1 settled, 0 not, -1 unsure
    if (p->top_p < 1.0f) by_p = cum >= p->top_p * z * (1 + tol) ? 1 : (cum < p->top_p * z * (1 - tol) ? 0 : -1);
    if (p->min_p > 0.0f) by_m = last < p->min_p * (1 - tol) ? 1 : (last >= p->min_p * (1 + tol) ? 0 : -1);
    if (by_p == 1 || by_m == 1) return 1;
    return by_p == -1 || by_m == -1 ? -1 : 0;
}

// True when every token outside ids[0..n_cand) weighs 0 at the sampler's arithmetic (the
// only case where a walk without cuts falls back and still draws a candidate: rounding).
static bool tail_weighs_nothing(const float *l, int n, const int32_t *ids, int n_cand, float max, float temp) {
    bool *in = calloc((size_t)n, sizeof(bool));
    for (int i = 0; i < n_cand; i++) in[ids[i]] = true;
    bool zero = true;
    for (int j = 0; j < n && zero; j++) zero = in[j] || (l[j] - max) * (1.0f / temp) < -87.0f;
    free(in);
    return zero;
}

static bool in_ids(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++) {
        if (ids[i] == id) return true;
    }
    return false;
}

static void expect_same_result(const hl_sample_result *a, const hl_sample_result *b, int c) {
    if (a->token != b->token || a->n_top != b->n_top)
        ck_abort_msg("case %d: token %d / %d", c, (int)a->token, (int)b->token);
    for (int i = -1; i < a->n_top; i++) {
        const float x = i < 0 ? a->logprob : a->top[i].logprob, y = i < 0 ? b->logprob : b->top[i].logprob;
        if (!(memcmp(&x, &y, sizeof x) == 0 || (isnan(x) && isnan(y))) || (i >= 0 && a->top[i].id != b->top[i].id))
            ck_abort_msg("case %d: logprob %d %.9g vs %.9g", c, i, (double)x, (double)y);
    }
}

// Thousands of (row, params, seed) cases without top-k: the candidates (from 1 to 256 of
// them) give the whole row's token and logprobs bit for bit with the sampler's log-sum-exp at
// 1/T (what the CPU topk op computes), or NEED_ROW — then the sampler is untouched: the same
// attempt says NEED_ROW again and the whole row, sampled next, gives the reference sampler's
// draw (one RNG use in all), and later draws stay in step. NEED_ROW comes exactly when the
// candidates cannot settle the draw (checked against double arithmetic away from the cuts).
START_TEST(test_walk_candidates_match_full_row) {
    hl_rng rng = {91};
    float *l = malloc(sizeof(float) * 6000), vals[HL_TOPK_MAX];
    int32_t ids[HL_TOPK_MAX];
    hl_error err = {0};
    int n_settled = 0, n_fallback = 0, n_checked = 0;
    for (int c = 0; c < 2500; c++) {
        const int n = 2 + (int)(hl_rng_next(&rng) % (c % 10 == 0 ? 5999 : 700));
        walk_row(l, n, c % 5, &rng);
        hl_sampler_params p = walk_params(n, &rng);
        hl_sampler *full = make(&p, n), *cand = make(&p, n);
        int k = 0;
        ck_assert(hl_sampler_can_use_topk(cand, HL_TOPK_MAX, &k));
        ck_assert_int_eq(k, n < HL_SAMPLER_WALK_K ? n : HL_SAMPLER_WALK_K);
        const int max_n = n < HL_TOPK_MAX ? n : HL_TOPK_MAX, min_n = p.n_logprobs > 1 ? p.n_logprobs : 1;
        const int span = c % 3 == 0 && min_n < 8 ? 8 : max_n; // a third with a few candidates: forced tails
        int n_cand = min_n + (int)(hl_rng_next(&rng) % (uint64_t)(span - min_n + 1));
        n_cand = n_cand < max_n ? n_cand : max_n;
        float lse;
        topk_of(l, n, n_cand, vals, ids, &lse);
        const float it = hl_sampler_topk_inv_temp(cand);
        ck_assert(it == 1.0f / p.temperature);
        lse = hl_sampler_log_sum_exp(l, n, it);
        for (int d = 0; d < 3; d++) {
            hl_sample_result a, b;
            const int ra = hl_sampler_sample(full, l, &a, &err);
            ck_assert_int_eq(ra, HL_OK);
            ck_assert_int_eq(hl_sampler_sample_topk(cand, vals, ids, n_cand, lse, &b, &err), HL_OK);
            const bool settled = b.token != HL_SAMPLER_NEED_ROW;
            if (settled) {
                n_settled++;
            } else {
                n_fallback++;
                ck_assert_int_eq(hl_sampler_sample_topk(cand, vals, ids, n_cand, lse, &b, &err), HL_OK);
                ck_assert_int_eq(b.token, HL_SAMPLER_NEED_ROW);
                ck_assert_int_eq(hl_sampler_sample(cand, l, &b, &err), HL_OK);
            }
            expect_same_result(&a, &b, c);
            const int want = walk_should_settle(l, n, vals, n_cand, &p);
            if (want >= 0 && want != settled)
                ck_abort_msg("case %d (n %d, %d candidates, top_p %g, min_p %g): settled %d, want %d", c, n,
                             n_cand, (double)p.top_p, (double)p.min_p, settled, want);
            if (p.top_p >= 1.0f && p.min_p <= 0.0f && !settled && in_ids(ids, n_cand, a.token) &&
                !tail_weighs_nothing(l, n, ids, n_cand, vals[0], p.temperature))
                ck_abort_msg("case %d: fell back but drew candidate %d", c, (int)a.token);
            n_checked += want >= 0;
            hl_sampler_accept(full, a.token, NULL);
            hl_sampler_accept(cand, b.token, NULL);
        }
        hl_sampler_free(full);
        hl_sampler_free(cand);
    }
    ck_assert_int_gt(n_settled, 2000);
    ck_assert_int_gt(n_fallback, 500);
    ck_assert_int_gt(n_checked, 1500);
    free(l);
}
END_TEST

// Pearson chi-square of count[] (n_draws draws over n tokens) against p, the tokens grouped in
// n_bins bins of consecutive rank (order: best first); tokens with p = 0 must never occur.
static double chi2_by_rank(const long *count, const double *p, const int *order, int n, int n_bins, int n_draws) {
    double chi2 = 0.0;
    const int per = (n + n_bins - 1) / n_bins;
    for (int b = 0; b * per < n; b++) {
        double e = 0.0, o = 0.0;
        for (int i = b * per; i < n && i < (b + 1) * per; i++) {
            if (p[order[i]] <= 0.0 && count[order[i]] > 0) ck_abort_msg("token %d drawn with p = 0", order[i]);
            e += p[order[i]] * n_draws;
            o += (double)count[order[i]];
        }
        if (e > 0.0) chi2 += (o - e) * (o - e) / e;
    }
    return chi2;
}

// The bound of check_distribution for df degrees of freedom.
static double chi2_bound(int df) { return df + 12.0 * sqrt(2.0 * df) + 20.0; }

// Draws through the whole-row walk of temperature t (top_p / min_p) from l and checks the
// counts against softmax(l / t) over the kept tokens, by rank bins; and that the same counts
// are rejected against softmax(l / t_wrong): the check has the power to see a wrong walk.
// Returns how many draws fell past rank 512 (walk_deep's territory).
static long check_walk(const float *l, int n, float t, float top_p, float min_p, float t_wrong, int n_bins,
                       int n_draws, uint64_t seed) {
    int *order = malloc(sizeof(int) * (size_t)n);
    double *pr = malloc(sizeof(double) * (size_t)n), *wrong = malloc(sizeof(double) * (size_t)n);
    bool *keep = calloc((size_t)n, sizeof(bool));
    long *count = calloc((size_t)n, sizeof(long));
    ref_order(l, n, order);
    ref_softmax(l, n, t, NULL, pr);
    double margin = 1.0;
    const int m = top_p < 1.0f ? ref_nucleus(pr, order, n, top_p, &margin) : n;
    ck_assert(margin > 1e-5);
    for (int i = 0; i < n; i++) {
        const double rel = pr[order[i]] / pr[order[0]];
        ck_assert(min_p <= 0.0f || fabs(rel - min_p) > 1e-5);
        keep[order[i]] = i < m && rel >= min_p;
    }
    ref_softmax(l, n, t, keep, pr);
    ref_softmax(l, n, t_wrong, keep, wrong);
    hl_sampler_params p = hl_sampler_default_params();
    p.temperature = t;
    p.top_p = top_p;
    p.min_p = min_p;
    p.has_seed = true;
    p.seed = seed;
    hl_sampler *s = make(&p, n);
    long deep = 0;
    int *rank = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) rank[order[i]] = i;
    for (int d = 0; d < n_draws; d++) {
        const int32_t tok = sample1(s, l);
        count[tok]++;
        deep += rank[tok] >= 512;
    }
    const int bins = n < n_bins ? n : n_bins;
    const double good = chi2_by_rank(count, pr, order, n, bins, n_draws);
    const double bad = chi2_by_rank(count, wrong, order, n, bins, n_draws);
    ck_assert_msg(good < chi2_bound(bins - 1), "chi-square %.1f over %d bins (bound %.1f)", good, bins,
                  chi2_bound(bins - 1));
    ck_assert_msg(bad > chi2_bound(bins - 1), "a wrong temperature passes: chi-square %.1f", bad);
    hl_sampler_free(s);
    free(rank), free(count), free(keep), free(wrong), free(pr), free(order);
    return deep;
}

// The whole-row walk samples softmax(x / T) over what top_p / min_p keep: a small vocabulary
// token by token, and flat rows of 3000 tokens where most draws fall past the best 512 (the
// bucketed walk) or the kept set is longer than 512.
START_TEST(test_walk_distribution) {
    float *l = random_logits(12, 8, 4.0f);
    check_walk(l, 12, 0.7f, 1.0f, 0.0f, 0.8f, 12, 60000, 1);
    check_walk(l, 12, 1.3f, 0.8f, 0.0f, 1.6f, 12, 60000, 2);
    check_walk(l, 12, 1.0f, 1.0f, 0.2f, 1.3f, 12, 60000, 3);
    free(l);
    const int n = 3000;
    l = random_logits(n, 9, 2.0f);
    ck_assert_int_gt(check_walk(l, n, 1.5f, 1.0f, 0.0f, 3.0f, 30, 20000, 4), 20000 / 2);
    ck_assert_int_gt(check_walk(l, n, 1.0f, 0.9f, 0.0f, 2.0f, 30, 20000, 5), 20000 / 2);
    ck_assert_int_gt(check_walk(l, n, 1.0f, 1.0f, 0.45f, 2.0f, 30, 20000, 6), 20000 / 4);
    free(l);
}
END_TEST

Suite *sampler_suite(void) {
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_greedy_is_argmax_lowest_id_on_ties);
    tcase_add_test(tc, test_top_k_1_is_greedy_at_any_temperature);
    tcase_add_test(tc, test_seed_reproducible_and_independent);
    tcase_add_test(tc, test_temperature_distribution);
    tcase_add_test(tc, test_top_k_distribution_and_support);
    tcase_add_test(tc, test_top_p_distribution_and_support);
    tcase_add_test(tc, test_min_p_and_combinations);
    tcase_add_test(tc, test_large_vocab_top_k_support);
    tcase_add_test(tc, test_penalties_match_formulas);
    tcase_add_test(tc, test_logit_bias_bans_and_boosts);
    tcase_add_test(tc, test_logprobs_are_raw_log_softmax);
    tcase_add_test(tc, test_stop_tokens_and_finish);
    tcase_add_test(tc, test_validation_errors);
    tcase_add_test(tc, test_topk_candidates_match_full_row);
    tcase_add_test(tc, test_topk_greedy_ties);
    tcase_add_test(tc, test_topk_ineligible_and_errors);
    tcase_add_test(tc, test_walk_candidates_match_full_row);
    tcase_add_test(tc, test_walk_distribution);
    suite_add_tcase(s, tc);
    return s;
}
