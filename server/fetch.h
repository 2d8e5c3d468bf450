// fetch: downloads one http(s) URL to a file with libcurl — model files for `halyard pull`
// and for anything in server/ that needs a file from the network.
//
// Invariants: bytes go to PATH.part (locked while a download writes it), never to PATH.
// An existing PATH.part is resumed with a Range request; a server that ignores Range
// (200) restarts it from zero, a 416 whose size matches means it is already complete.
// The SHA-256 of the whole file is always computed; when an expected digest is given (or,
// for a Hugging Face URL, announced by the Hub in X-Linked-Etag) and differs, PATH.part is
// deleted (its bytes are wrong, resuming cannot fix them).
// Only a complete, verified file is fsync'd and renamed to PATH, so PATH is either
// absent, the old file, or the new complete one. Redirects are followed (Hugging Face
// resolve/ URLs answer 302 to a CDN) up to a limit; a bearer token goes to the URL's
// own host only, never across a redirect to another host.
//
//   hl_fetch_opts o = hl_fetch_default_opts();
//   o.sha256_hex = "ab12...";                      // optional
//   hl_fetch_result r;
//   if (hl_fetch_to_file(url, "models/x.gguf", &o, &r, &err) != HL_OK) ...;
#pragma once

#include "common/hl.h"
#include "common/sha256.h"

// Called after each received chunk (often: throttle any drawing). done counts the whole
// file, resumed bytes included; total is the expected size or 0 when the server did not
// say. Return 0 to go on, anything else cancels the download (the .part is kept).
typedef int (*hl_fetch_progress_fn)(void *user, uint64_t done_bytes, uint64_t total_bytes);

typedef struct hl_fetch_opts {
    const char *sha256_hex;     // expected digest, 64 hex digits; NULL: compute only
    const char *token;          // bearer token for the URL's host; NULL: none
    const char *const *headers; // borrowed: n_headers extra "Name: value" headers
    int n_headers;
    const char *const *resolve; // borrowed: n_resolve "HOST:PORT:ADDR" pins (curl --resolve)
    int n_resolve;
    long connect_timeout_s; // give up connecting after this long (30)
    long stall_timeout_s;   // abort an attempt under 1 KiB/s for this long (60; 0: never)
    long max_redirects;     // redirects followed per attempt (10)
    int max_retries;        // extra attempts after a dropped connection, timeout, 5xx, 429 (3)
    long retry_delay_ms;    // wait before the first retry, doubled for each next one (1000)
    hl_fetch_progress_fn progress; // NULL: no progress reports
    void *progress_user;           // borrowed, passed to progress
} hl_fetch_opts;

typedef struct hl_fetch_result {
    uint64_t n_bytes;                     // size of the file (on failure: bytes in PATH.part)
    char sha256_hex[HL_SHA256_HEX_BYTES]; // its digest ("" when the download failed early)
    uint64_t resumed_bytes;               // bytes of an earlier PATH.part that were kept
    long http_status;                     // status of the last response, 0 if none came
    int n_attempts;                       // requests made, retries and restarts included
    bool verified;                        // the digest was checked: opts->sha256_hex, or for
                                          // a Hub URL without one, the Hub's X-Linked-Etag
} hl_fetch_result;

// Defaults as listed next to each field; everything optional is NULL/0.
hl_fetch_opts hl_fetch_default_opts(void);

// Downloads url into path (see the invariants above). opts may be NULL (defaults); res
// may be NULL. On failure path is untouched; PATH.part keeps the bytes received unless
// they failed the digest check (or were none). Errors: HL_ERR_INVAL for a bad argument
// (URL scheme, header, digest) or an HTTP 4xx (the message says which status, and for
// 401/403 how to pass a token); HL_ERR_FORMAT for a digest mismatch (names both digests);
// HL_ERR_IO for network failures, 5xx after the retries, file-system errors, or a cancel
// from the progress callback; HL_ERR_BUSY when another download holds PATH.part.
// Thread-safe for distinct paths.
int hl_fetch_to_file(const char *url, const char *path, const hl_fetch_opts *opts,
                     hl_fetch_result *res, hl_error *err);

// True when url's host is huggingface.co or hf.co (or a subdomain of either).
bool hl_fetch_is_hf_url(const char *url);

// The token to send for url: explicit_token when non-NULL, else $HF_TOKEN when url is a
// Hugging Face URL (so a token meant for the Hub never leaks to other hosts), else NULL.
// The result is borrowed (from the argument or the environment).
const char *hl_fetch_token_for(const char *url, const char *explicit_token);

// Writes the file name a download of url should get: the last path segment, URL-decoded,
// query and fragment dropped ("https://h/o/r/resolve/main/m.gguf?download=true" ->
// "m.gguf"). HL_ERR_INVAL when the URL does not parse or ends in no usable name (empty,
// ".", "..", a '/' after decoding) or the name does not fit in name_size bytes.
int hl_fetch_default_name(const char *url, char *name, size_t name_size, hl_error *err);
