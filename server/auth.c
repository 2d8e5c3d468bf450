// auth: API keys (constant-time check) and token-bucket rate limits (see auth.h).
#include "server/auth.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/sha256.h"

#define MAX_KEY_BYTES 256

typedef struct bucket {
    double rate_per_min; // 0 = unlimited
    double level;        // current balance, capped at rate_per_min
    double t_ms;         // last refill
} bucket;

typedef struct key_entry {
    uint8_t digest[HL_SHA256_BYTES];
    bucket requests;
    bucket tokens;
} key_entry;

struct hl_auth {
    pthread_mutex_t mu;
    double rpm, tpm;   // defaults
    key_entry *keys;   // owned; guarded by mu (buckets); keys[0] is anonymous when none added
    int n_keys, cap_keys;
    bool enabled;
};

static bucket bucket_make(double rate) { return (bucket){.rate_per_min = rate, .level = rate, .t_ms = -1}; }

static void bucket_refill(bucket *b, double now_ms) {
    if (b->t_ms >= 0 && now_ms > b->t_ms) b->level += (now_ms - b->t_ms) * b->rate_per_min / 60000.0;
    if (b->level > b->rate_per_min) b->level = b->rate_per_min;
    b->t_ms = now_ms;
}

// Seconds until the bucket holds `need`.
static double bucket_wait_s(const bucket *b, double need) {
    double missing = need - b->level;
    double s = missing * 60.0 / b->rate_per_min;
    return s < 1 ? 1 : ceil(s);
}

hl_auth *hl_auth_create(double rpm, double tpm) {
    hl_auth *a = hl_xcalloc(1, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    a->rpm = rpm > 0 ? rpm : 0;
    a->tpm = tpm > 0 ? tpm : 0;
    a->cap_keys = 4;
    a->keys = hl_xcalloc((size_t)a->cap_keys, sizeof *a->keys);
    a->keys[0].requests = bucket_make(a->rpm);
    a->keys[0].tokens = bucket_make(a->tpm);
    a->n_keys = 1; // the anonymous entry until the first key replaces it
    return a;
}

void hl_auth_free(hl_auth *a) {
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    free(a->keys);
    free(a);
}

static bool key_ok(const char *key) {
    size_t n = strlen(key);
    if (n == 0 || n > MAX_KEY_BYTES) return false;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)key[i])) return false;
    return true;
}

int hl_auth_add_key(hl_auth *a, const char *key, double rpm, double tpm, hl_error *err) {
    if (!key_ok(key))
        return hl_errorf(err, HL_ERR_INVAL, "an API key must be 1-%d printable characters without spaces",
                         MAX_KEY_BYTES);
    key_entry k = {0};
    hl_sha256_buf(key, strlen(key), k.digest);
    k.requests = bucket_make(rpm < 0 ? a->rpm : rpm);
    k.tokens = bucket_make(tpm < 0 ? a->tpm : tpm);
    pthread_mutex_lock(&a->mu);
    for (int i = 0; a->enabled && i < a->n_keys; i++) {
        if (memcmp(a->keys[i].digest, k.digest, HL_SHA256_BYTES) == 0) {
            pthread_mutex_unlock(&a->mu);
            return hl_errorf(err, HL_ERR_INVAL, "duplicate API key");
        }
    }
    if (!a->enabled) a->n_keys = 0;
    if (a->n_keys == a->cap_keys) {
        a->cap_keys *= 2;
        a->keys = hl_xrealloc(a->keys, (size_t)a->cap_keys * sizeof *a->keys);
    }
    a->keys[a->n_keys++] = k;
    a->enabled = true;
    pthread_mutex_unlock(&a->mu);
    return HL_OK;
}

// "rpm=N" / "tpm=N" option of a key line.
static int parse_limit(const char *tok, double *rpm, double *tpm) {
    char *end = NULL;
    double *dst = strncmp(tok, "rpm=", 4) == 0 ? rpm : strncmp(tok, "tpm=", 4) == 0 ? tpm : NULL;
    if (!dst) return HL_ERR_FORMAT;
    double v = strtod(tok + 4, &end);
    if (end == tok + 4 || *end || !isfinite(v) || v < 0) return HL_ERR_FORMAT;
    *dst = v;
    return HL_OK;
}

static int parse_line(hl_auth *a, char *line, int lineno, hl_error *err) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *save = NULL;
    char *key = strtok_r(line, " \t\r\n", &save);
    if (!key) return HL_OK;
    double rpm = -1, tpm = -1;
    for (char *t = strtok_r(NULL, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (parse_limit(t, &rpm, &tpm) != HL_OK)
            return hl_errorf(err, HL_ERR_FORMAT, "line %d: bad option '%s' (rpm=N or tpm=N)", lineno, t);
    }
    if (hl_auth_add_key(a, key, rpm, tpm, err) != HL_OK) return hl_error_wrap(err, "line %d: ", lineno);
    return HL_OK;
}

int hl_auth_load_file(hl_auth *a, const char *path, hl_error *err) {
    size_t n = 0;
    char *text = hl_read_file(path, 16u << 20, &n, err);
    if (!text) return err ? err->code : HL_ERR_IO;
    int rc = HL_OK, lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && rc == HL_OK; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        rc = parse_line(a, line, lineno, err);
    }
    free(text);
    if (rc != HL_OK) hl_error_wrap(err, "%s: ", path);
    return rc;
}

int hl_auth_load_list(hl_auth *a, const char *s, hl_error *err) {
    char *copy = hl_xstrdup(s);
    char *save = NULL;
    int rc = HL_OK;
    for (char *k = strtok_r(copy, ", \t\n", &save); k && rc == HL_OK; k = strtok_r(NULL, ", \t\n", &save))
        rc = hl_auth_add_key(a, k, -1, -1, err);
    free(copy);
    return rc;
}

bool hl_auth_enabled(const hl_auth *a) { return a->enabled; }
int hl_auth_n_keys(const hl_auth *a) { return a->n_keys; }

int hl_auth_check(const hl_auth *a, const char *presented) {
    if (!a->enabled) return 0;
    if (!presented) return -1;
    uint8_t d[HL_SHA256_BYTES];
    hl_sha256_buf(presented, strlen(presented), d);
    int found = -1;
    // Every key is compared in full whatever matched: the time does not depend on the key.
    for (int i = 0; i < a->n_keys; i++) {
        uint8_t diff = 0;
        for (int j = 0; j < HL_SHA256_BYTES; j++) diff |= (uint8_t)(d[j] ^ a->keys[i].digest[j]);
        found = diff == 0 ? i : found;
    }
    return found;
}

int hl_auth_admit(hl_auth *a, int key, double now_ms, double *retry_after_s) {
    HL_ASSERT(key >= 0 && key < a->n_keys);
    pthread_mutex_lock(&a->mu);
    key_entry *k = &a->keys[key];
    bucket_refill(&k->requests, now_ms);
    bucket_refill(&k->tokens, now_ms);
    int rc = HL_OK;
    if (k->requests.rate_per_min > 0 && k->requests.level < 1) {
        *retry_after_s = bucket_wait_s(&k->requests, 1);
        rc = HL_ERR_BUSY;
    } else if (k->tokens.rate_per_min > 0 && k->tokens.level <= 0) {
        *retry_after_s = bucket_wait_s(&k->tokens, 1);
        rc = HL_ERR_BUSY;
    } else if (k->requests.rate_per_min > 0) {
        k->requests.level -= 1;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void hl_auth_charge_tokens(hl_auth *a, int key, int n_tokens, double now_ms) {
    if (key < 0 || key >= a->n_keys || n_tokens <= 0) return;
    pthread_mutex_lock(&a->mu);
    bucket *b = &a->keys[key].tokens;
    if (b->rate_per_min > 0) {
        bucket_refill(b, now_ms);
        b->level -= n_tokens;
    }
    pthread_mutex_unlock(&a->mu);
}
