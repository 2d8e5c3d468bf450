// auth: API keys and per-key rate limits.
//
// Keys come from a file (one per line: `KEY [rpm=N] [tpm=N]`, '#' starts a comment) and/or the
// environment (HALYARD_API_KEYS, comma-separated). With no key configured, authentication is off
// and every caller shares one anonymous rate-limit entry. A presented key is checked against every
// configured key by comparing SHA-256 digests in constant time, so neither the match position
// nor the key length leaks through timing.
//
// Rate limits are token buckets refilled continuously, each holding one minute's worth:
// requests (rpm: one per request) and tokens (tpm: prompt + completion tokens, charged after
// the fact, so the balance may go negative and then blocks until refilled). 0 means unlimited.
// Thread-safe (one mutex).
//
//   hl_auth *a = hl_auth_create(60, 100000);  hl_auth_load_file(a, "keys.txt", &err);
//   int k = hl_auth_check(a, bearer);          // -1: 401
//   double wait_s; if (hl_auth_admit(a, k, hl_time_ms(), &wait_s) == HL_ERR_BUSY) ... 429
//   hl_auth_charge_tokens(a, k, n_tokens, hl_time_ms());
#pragma once

#include "common/hl.h"

typedef struct hl_auth hl_auth;

// Default per-key limits (requests and tokens per minute; 0 = unlimited). Never fails.
hl_auth *hl_auth_create(double rpm, double tpm);
void hl_auth_free(hl_auth *a); // accepts NULL

// Adds one key (copied; 1..256 printable ASCII bytes, no spaces) with its own limits (< 0: the
// defaults). HL_ERR_INVAL for a bad or duplicate key.
int hl_auth_add_key(hl_auth *a, const char *key, double rpm, double tpm, hl_error *err);

// Adds every key of a key file (format above). HL_ERR_IO, or HL_ERR_FORMAT with the line number.
int hl_auth_load_file(hl_auth *a, const char *path, hl_error *err);

// Adds the comma-separated keys of s (e.g. $HALYARD_API_KEYS) with default limits.
int hl_auth_load_list(hl_auth *a, const char *s, hl_error *err);

// True when at least one key is configured.
bool hl_auth_enabled(const hl_auth *a);
int hl_auth_n_keys(const hl_auth *a);

// The index of the key matching presented (NUL-terminated; NULL = none given), or -1. With
// authentication off, always 0 (the anonymous entry).
int hl_auth_check(const hl_auth *a, const char *presented);

// Takes one request from key's buckets at time now_ms (hl_time_ms clock). HL_OK, or HL_ERR_BUSY
// with *retry_after_s (>= 1) when the request or token bucket is empty.
int hl_auth_admit(hl_auth *a, int key, double now_ms, double *retry_after_s);

// Charges n_tokens to key's token bucket.
void hl_auth_charge_tokens(hl_auth *a, int key, int n_tokens, double now_ms);
