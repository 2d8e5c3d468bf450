// fetch: resumable, verified downloads over libcurl (see fetch.h).
//
// One easy handle per call, reused across attempts. Each attempt asks for the bytes not
// yet in PATH.part (CURLOPT_RANGE, not CURLOPT_RESUME_FROM: libcurl itself fails a resume
// that gets 200, and we want to restart instead). The header callback remembers the
// latest response's status line and Content-Range; the body callback decides on its
// first chunk whether the body belongs in the file (200, 206 at the right offset) or is
// an error page (not written, the transfer is stopped and the status reported).
#include "server/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOW_SPEED_BYTES    1024 // below this many bytes/s for stall_timeout_s, an attempt is stalled
#define MAX_RESTARTS       2    // from-zero restarts per call (server ignored or refused a range)
#define MAX_RETRY_DELAY_MS 30000

enum outcome { DONE, RESTART, RETRY, FAIL };

typedef struct fetch_state {
    const hl_fetch_opts *opts; // borrowed
    const char *url;           // borrowed: what the user asked for (messages never show CDN URLs)
    char *part;                // owned: PATH.part
    CURL *curl;                // owned
    bool sent_token;
    bool is_hf; // a Hub URL: its X-Linked-Etag is the file's sha256
    bool hub_sha_known;
    uint8_t hub_sha[HL_SHA256_BYTES];
    // the .part file: its bytes are exactly what sha has hashed
    int fd;
    uint64_t offset;        // bytes in the .part
    uint64_t resumed_bytes; // bytes found in the .part at the start and still kept
    hl_sha256 sha;
    // the current attempt
    long status;                // of the latest response head
    char reason[64];            // its reason phrase ("" over HTTP/2)
    int64_t cr_start, cr_total; // its Content-Range, -1 when absent or '*'
    long retry_after_s;         // its Retry-After in seconds, 0 when absent
    bool body_started;
    uint64_t total;             // expected size of the whole file, 0 when unknown
    bool cb_failed, cb_restart; // a callback stopped the transfer; cb_err says why
    hl_error cb_err;
    int n_attempts;
    char errbuf[CURL_ERROR_SIZE];
} fetch_state;

hl_fetch_opts hl_fetch_default_opts(void) {
    return (hl_fetch_opts){
        .connect_timeout_s = 30,
        .stall_timeout_s = 60,
        .max_redirects = 10,
        .max_retries = 3,
        .retry_delay_ms = 1000,
    };
}

// ---- URLs ----

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT; // written once, under curl_once

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

// Returns a URL handle for url (caller frees with curl_url_cleanup), or NULL + err.
static CURLU *parse_url(const char *url, hl_error *err) {
    CURLU *u = curl_url();
    if (!u) hl_panic(__FILE__, __LINE__, "out of memory in curl_url");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        hl_errorf(err, HL_ERR_INVAL, "bad URL '%.150s': %s", url, curl_url_strerror(uc));
        curl_url_cleanup(u);
        return NULL;
    }
    return u;
}

// Copies one URL part into a heap string (caller frees), NULL when the URL has none.
static char *url_part(CURLU *u, CURLUPart what) {
    char *s = NULL;
    if (curl_url_get(u, what, &s, 0) != CURLUE_OK) return NULL;
    char *copy = hl_xstrdup(s);
    curl_free(s);
    return copy;
}

static bool host_is_hf(const char *host) {
    static const char *domains[] = {"huggingface.co", "hf.co"};
    size_t n = strlen(host);
    for (int i = 0; i < 2; i++) {
        size_t nd = strlen(domains[i]);
        if (strcasecmp(host, domains[i]) == 0) return true;
        if (n > nd && host[n - nd - 1] == '.' && strcasecmp(host + n - nd, domains[i]) == 0)
            return true;
    }
    return false;
}

bool hl_fetch_is_hf_url(const char *url) {
    if (!url) return false;
    CURLU *u = parse_url(url, NULL);
    if (!u) return false;
    char *host = url_part(u, CURLUPART_HOST);
    bool hf = host && host_is_hf(host);
    free(host);
    curl_url_cleanup(u);
    return hf;
}

const char *hl_fetch_token_for(const char *url, const char *explicit_token) {
    if (explicit_token) return explicit_token;
    const char *env = getenv("HF_TOKEN");
    if (!env || !*env || !hl_fetch_is_hf_url(url)) return NULL;
    return env;
}

// Start of path segment i (0-based; path begins with '/'), or NULL; *n gets its length.
static const char *path_segment(const char *path, int i, size_t *n) {
    const char *p = path;
    for (int k = 0; *p == '/'; k++) {
        p++;
        size_t len = strcspn(p, "/");
        if (k == i) {
            *n = len;
            return p;
        }
        p += len;
    }
    return NULL;
}

static bool segment_is(const char *path, int i, const char *word) {
    size_t n = 0;
    const char *s = path_segment(path, i, &n);
    return s && n == strlen(word) && memcmp(s, word, n) == 0;
}

// Index of the "blob" in a Hub web-page path (/ORG/REPO/blob/REV/FILE, /REPO/blob/REV/FILE,
// /datasets/ORG/REPO/blob/...), or -1.
static int hf_blob_segment(const char *path) {
    if (segment_is(path, 0, "datasets") || segment_is(path, 0, "spaces"))
        return segment_is(path, 3, "blob") ? 3 : -1;
    if (segment_is(path, 2, "blob")) return 2;
    if (segment_is(path, 1, "blob")) return 1;
    return -1;
}

// The URL to request: a Hub ".../blob/REV/FILE" link (the HTML page a browser shows)
// becomes ".../resolve/REV/FILE" (the file itself). Other URLs are unchanged. Caller frees.
static char *hf_file_url(const char *url) {
    CURLU *u = parse_url(url, NULL);
    char *host = u ? url_part(u, CURLUPART_HOST) : NULL;
    char *path = host && host_is_hf(host) ? url_part(u, CURLUPART_PATH) : NULL;
    int blob = path ? hf_blob_segment(path) : -1;
    char *out = NULL;
    if (blob >= 0) {
        size_t n = 0;
        const char *seg = path_segment(path, blob, &n);
        size_t head = (size_t)(seg - path);
        char *fixed = hl_xmalloc(strlen(path) + 8);
        snprintf(fixed, strlen(path) + 8, "%.*sresolve%s", (int)head, path, seg + n);
        if (curl_url_set(u, CURLUPART_PATH, fixed, 0) == CURLUE_OK)
            out = url_part(u, CURLUPART_URL);
        free(fixed);
    }
    if (out) hl_log(HL_LOG_INFO, "using the file URL %s", out);
    free(path);
    free(host);
    curl_url_cleanup(u);
    return out ? out : hl_xstrdup(url);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decodes s[0..n) into out (out_size bytes with the NUL); false when it does not fit.
static bool percent_decode(const char *s, size_t n, char *out, size_t out_size) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 1 >= out_size) return false;
        int hi = s[i] == '%' && i + 2 < n ? hex_digit(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
        if (lo < 0) {
            out[o++] = s[i];
            continue;
        }
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[o] = '\0';
    return true;
}

static bool usable_name(const char *name) {
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
    for (const char *p = name; *p; p++) {
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20) return false;
    }
    return true;
}

int hl_fetch_default_name(const char *url, char *name, size_t name_size, hl_error *err) {
    if (!url || !name || name_size == 0)
        return hl_errorf(err, HL_ERR_INVAL, "default name: no URL");
    CURLU *u = parse_url(url, err);
    if (!u) return HL_ERR_INVAL;
    char *path = url_part(u, CURLUPART_PATH);
    curl_url_cleanup(u);
    const char *slash = path ? strrchr(path, '/') : NULL;
    const char *last = slash ? slash + 1 : "";
    int rc = HL_OK;
    if (!percent_decode(last, strlen(last), name, name_size))
        rc = hl_errorf(err, HL_ERR_INVAL, "the file name in URL '%.150s' is too long; use -o", url);
    else if (strstr(last, "%00") || !usable_name(name)) // %00 would cut the name short
        rc = hl_errorf(err, HL_ERR_INVAL, "URL '%.150s' ends in no usable file name; use -o", url);
    free(path);
    return rc;
}

// ---- the .part file ----

// Records why a callback stopped the transfer; restart asks to drop the .part and go again.
static void cb_fail(fetch_state *st, bool restart, int code, const char *msg) {
    st->cb_failed = true;
    st->cb_restart = restart;
    hl_errorf(&st->cb_err, code, "%s", msg);
}

// Opens and locks PATH.part and hashes what it already holds (the bytes to resume after).
static int open_part(fetch_state *st, hl_error *err) {
    st->fd = open(st->part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->fd < 0) return hl_errorf(err, HL_ERR_IO, "open %s: %s", st->part, strerror(errno));
    if (flock(st->fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return hl_errorf(err, HL_ERR_BUSY, "another download is writing %s", st->part);
        return hl_errorf(err, HL_ERR_IO, "lock %s: %s", st->part, strerror(errno));
    }
    size_t n_buf = 1 << 20;
    uint8_t *buf = hl_xmalloc(n_buf);
    int rc = HL_OK;
    for (;;) {
        ssize_t n = pread(st->fd, buf, n_buf, (off_t)st->offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = hl_errorf(err, HL_ERR_IO, "read %s: %s", st->part, strerror(errno));
        if (n <= 0) break;
        hl_sha256_update(&st->sha, buf, (size_t)n);
        st->offset += (uint64_t)n;
    }
    free(buf);
    st->resumed_bytes = st->offset;
    return rc;
}

// Empties the .part: its bytes are not a prefix of what the server sends now.
static int drop_part(fetch_state *st, hl_error *err) {
    if (ftruncate(st->fd, 0) != 0)
        return hl_errorf(err, HL_ERR_IO, "truncate %s: %s", st->part, strerror(errno));
    hl_sha256_init(&st->sha);
    st->offset = 0;
    st->resumed_bytes = 0;
    return HL_OK;
}

static int write_part(fetch_state *st, const char *data, size_t n, hl_error *err) {
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(st->fd, data + done, n - done, (off_t)(st->offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return hl_errorf(err, HL_ERR_IO, "write %s: %s", st->part, strerror(errno));
        done += (size_t)w;
    }
    hl_sha256_update(&st->sha, data, n);
    st->offset += n;
    return HL_OK;
}

// fsync + rename + fsync of the directory, so a crash leaves either no PATH or the whole file.
static int publish(fetch_state *st, const char *path, hl_error *err) {
    if (fsync(st->fd) != 0)
        return hl_errorf(err, HL_ERR_IO, "fsync %s: %s", st->part, strerror(errno));
    if (rename(st->part, path) != 0)
        return hl_errorf(err, HL_ERR_IO, "rename %s to %s: %s", st->part, path, strerror(errno));
    char *dir = hl_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); // best effort: some file systems refuse fsync on directories
        close(dfd);
    }
    free(dir);
    return HL_OK;
}

// ---- libcurl callbacks ----

static void parse_content_range(fetch_state *st, const char *v) {
    // "bytes START-END/TOTAL" or "bytes */TOTAL"; anything else leaves both unknown.
    while (*v == ' ' || *v == '\t') v++;
    if (strncasecmp(v, "bytes ", 6) != 0) return;
    v += 6;
    char *end = NULL;
    long long start = -1;
    if (*v != '*') {
        start = strtoll(v, &end, 10);
        if (end == v || *end != '-' || start < 0) return;
    }
    const char *slash = strchr(v, '/');
    if (!slash || slash[1] < '0' || slash[1] > '9') return;
    long long total = strtoll(slash + 1, &end, 10);
    if (total < 0) return;
    st->cr_start = start;
    st->cr_total = total;
}

// A new response head (redirects give several per attempt): "HTTP/1.1 206 Partial Content".
static void new_response(fetch_state *st, const char *line) {
    st->cr_start = st->cr_total = -1;
    st->retry_after_s = 0;
    st->reason[0] = '\0';
    const char *sp = strchr(line, ' ');
    if (!sp) return;
    sp = strchr(sp + 1, ' ');
    if (!sp) return;
    snprintf(st->reason, sizeof st->reason, "%s", sp + 1);
    st->reason[strcspn(st->reason, "\r\n")] = '\0';
}

// The Hub's resolve/ answer carries X-Linked-Etag: "<sha256 of the LFS file>" (absent for
// small non-LFS files, whose ETag is a git hash and not used).
static void parse_hub_digest(fetch_state *st, const char *v) {
    while (*v == ' ' || *v == '\t') v++;
    if (strncmp(v, "W/", 2) == 0) v += 2;
    if (*v == '"') v++;
    char hex[HL_SHA256_HEX_BYTES];
    if (strlen(v) < 64 || strchr("\" \r\n", v[64]) == NULL) return;
    memcpy(hex, v, 64);
    hex[64] = '\0';
    st->hub_sha_known = hl_sha256_parse_hex(hex, st->hub_sha, NULL) == HL_OK;
}

static size_t on_header(char *buf, size_t size, size_t n, void *user) {
    fetch_state *st = user;
    size_t len = size * n;
    char line[256];
    size_t keep = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buf, keep);
    line[keep] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) new_response(st, line);
    if (strncasecmp(line, "content-range:", 14) == 0) parse_content_range(st, line + 14);
    if (st->is_hf && strncasecmp(line, "x-linked-etag:", 14) == 0) parse_hub_digest(st, line + 14);
    if (strncasecmp(line, "retry-after:", 12) == 0) { // seconds; an HTTP-date reads as 0 (ignored)
        long s = strtol(line + 12, NULL, 10);
        st->retry_after_s = s < 0 ? 0 : s > 3600 ? 3600 : s;
    }
    return len;
}

static bool report_progress(fetch_state *st) {
    const hl_fetch_opts *o = st->opts;
    if (!o->progress || o->progress(o->progress_user, st->offset, st->total) == 0) return true;
    cb_fail(st, false, HL_ERR_IO, "download cancelled");
    return false;
}

// First body bytes of an attempt: does this body go into the .part, and from where?
static bool begin_body(fetch_state *st) {
    long status = 0;
    curl_off_t n_content = -1;
    curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(st->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &n_content);
    if (status == 206) {
        if (st->cr_start < 0 || (uint64_t)st->cr_start != st->offset) {
            char msg[128];
            snprintf(msg, sizeof msg, "server sent a range starting at %lld, asked for %llu",
                     (long long)st->cr_start, (unsigned long long)st->offset);
            cb_fail(st, true, HL_ERR_IO, msg);
            return false;
        }
        st->total = 0;
        if (n_content >= 0) st->total = st->offset + (uint64_t)n_content;
        if (st->cr_total >= 0) st->total = (uint64_t)st->cr_total;
        return report_progress(st);
    }
    if (status != 200) return false; // an error page: not ours to keep; reported after the transfer
    if (st->offset > 0) {
        hl_log(HL_LOG_INFO, "server ignored the range request; downloading from the start");
        hl_error e = {0};
        if (drop_part(st, &e) != HL_OK) {
            cb_fail(st, false, e.code, e.msg);
            return false;
        }
    }
    st->total = n_content >= 0 ? (uint64_t)n_content : 0;
    return report_progress(st);
}

static size_t on_body(char *data, size_t size, size_t n, void *user) {
    fetch_state *st = user;
    size_t len = size * n;
    if (!st->body_started) {
        st->body_started = true;
        if (!begin_body(st)) return 0;
    }
    hl_error e = {0};
    if (write_part(st, data, len, &e) != HL_OK) {
        cb_fail(st, false, e.code, e.msg);
        return 0;
    }
    return report_progress(st) ? len : 0;
}

// ---- attempts ----

#if LIBCURL_VERSION_NUM >= 0x075500 // 7.85 replaced the bitmask options with strings
static void allow_http_only(CURL *c) {
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
}
#else
static void allow_http_only(CURL *c) {
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
}
#endif

static bool has_crlf(const char *s) { return strpbrk(s, "\r\n") != NULL; }

// curl_slist_append that aborts on OOM like hl_xmalloc (it would return NULL and drop the list).
static struct curl_slist *slist_add(struct curl_slist *list, const char *s) {
    struct curl_slist *out = curl_slist_append(list, s);
    if (!out) hl_panic(__FILE__, __LINE__, "out of memory in curl_slist_append");
    return out;
}

// Builds the request header list: the user's headers, then the token unless the user
// already sent an Authorization header. NULL list is fine (no extra headers).
static int build_headers(fetch_state *st, struct curl_slist **list, hl_error *err) {
    const hl_fetch_opts *o = st->opts;
    bool has_auth = false;
    for (int i = 0; i < o->n_headers; i++) {
        const char *h = o->headers[i];
        const char *colon = h ? strchr(h, ':') : NULL;
        if (!colon || colon == h || has_crlf(h) || strcspn(h, " \t") < (size_t)(colon - h))
            return hl_errorf(err, HL_ERR_INVAL, "bad header '%.100s': want 'Name: value'",
                             h ? h : "");
        has_auth |= (size_t)(colon - h) == 13 && strncasecmp(h, "authorization", 13) == 0;
        *list = slist_add(*list, h);
    }
    if (!o->token || has_auth) return HL_OK;
    if (!*o->token || has_crlf(o->token))
        return hl_errorf(err, HL_ERR_INVAL, "bad token: empty or has a line break");
    size_t n = strlen(o->token) + 32;
    char *auth = hl_xmalloc(n);
    snprintf(auth, n, "Authorization: Bearer %s", o->token);
    *list = slist_add(*list, auth);
    free(auth);
    st->sent_token = true;
    return HL_OK;
}

static int build_resolve(const hl_fetch_opts *o, struct curl_slist **list, hl_error *err) {
    for (int i = 0; i < o->n_resolve; i++) {
        const char *r = o->resolve[i];
        const char *c1 = r ? strchr(r, ':') : NULL;
        if (!c1 || c1 == r || !strchr(c1 + 1, ':') || has_crlf(r))
            return hl_errorf(err, HL_ERR_INVAL, "bad resolve entry '%.100s': want HOST:PORT:ADDR",
                             r ? r : "");
        *list = slist_add(*list, r);
    }
    return HL_OK;
}

static void setup_curl(fetch_state *st, const char *url, struct curl_slist *headers,
                       struct curl_slist *resolve) {
    CURL *c = st->curl;
    const hl_fetch_opts *o = st->opts;
    curl_easy_setopt(c, CURLOPT_URL, url);
    allow_http_only(c);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, o->max_redirects);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "halyard-pull/1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, st->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, st);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, st);
}

static enum outcome http_failure(fetch_state *st, hl_error *err) {
    long s = st->status;
    const char *hint = "";
    if (s == 401 || s == 403)
        hint = st->sent_token ? " (the token was refused)" : " (set --token or HF_TOKEN)";
    if (s >= 300 && s < 400) hint = " (a redirect that could not be followed)";
    int code = s >= 400 && s < 500 ? HL_ERR_INVAL : HL_ERR_IO;
    hl_errorf(err, code, "HTTP %ld%s%s%s: %.150s", s, st->reason[0] ? " " : "", st->reason, hint,
              st->url);
    return s == 408 || s == 429 || s >= 500 ? RETRY : FAIL;
}

static enum outcome net_failure(fetch_state *st, CURLcode rc, hl_error *err) {
    const char *detail = st->errbuf[0] ? st->errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT && st->body_started)
        hl_errorf(err, HL_ERR_IO, "stalled after %llu bytes (under %d bytes/s for %ld s): %s",
                  (unsigned long long)st->offset, LOW_SPEED_BYTES, st->opts->stall_timeout_s,
                  detail);
    else
        hl_errorf(err, HL_ERR_IO, "download of %.100s failed after %llu bytes: %s", st->url,
                  (unsigned long long)st->offset, detail);
    switch (rc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_COULDNT_CONNECT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return RETRY;
    default:
        return FAIL;
    }
}

// 416 to "bytes=N-": complete when the server's size is exactly N, else start over.
static enum outcome range_refused(fetch_state *st, hl_error *err) {
    if (st->cr_total >= 0 && (uint64_t)st->cr_total == st->offset) {
        st->total = st->offset;
        return DONE;
    }
    hl_errorf(err, HL_ERR_IO, "server refused to resume at %llu bytes (its size: %lld)",
              (unsigned long long)st->offset, (long long)st->cr_total);
    return RESTART;
}

// A 2xx without a body never reached on_body: an empty file, or a status we cannot use.
static enum outcome empty_body(fetch_state *st, hl_error *err) {
    if (begin_body(st)) return DONE;
    if (!st->cb_failed) {
        hl_errorf(err, HL_ERR_IO, "unexpected HTTP %ld: %.150s", st->status, st->url);
        return FAIL;
    }
    *err = st->cb_err;
    return st->cb_restart ? RESTART : FAIL;
}

// One request for the bytes not yet in the .part.
static enum outcome run_attempt(fetch_state *st, hl_error *err) {
    char range[32];
    snprintf(range, sizeof range, "%llu-", (unsigned long long)st->offset);
    curl_easy_setopt(st->curl, CURLOPT_RANGE, st->offset > 0 ? range : NULL);
    uint64_t asked = st->offset;
    st->body_started = st->cb_failed = st->cb_restart = false;
    st->status = 0;
    st->total = 0;
    st->errbuf[0] = '\0';
    st->n_attempts++;
    CURLcode rc = curl_easy_perform(st->curl);
    curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &st->status);
    if (st->cb_failed) {
        *err = st->cb_err;
        return st->cb_restart ? RESTART : FAIL;
    }
    if (rc == CURLE_TOO_MANY_REDIRECTS) {
        hl_errorf(err, HL_ERR_INVAL, "too many redirects (more than %ld): %.150s",
                  st->opts->max_redirects, st->url);
        return FAIL;
    }
    if (st->status == 416 && asked > 0) return range_refused(st, err);
    // WRITE_ERROR here means on_body refused an error page; other failures after a 3xx
    // happened while following it (the next host did not answer) and are network errors.
    bool answered = rc == CURLE_OK || rc == CURLE_WRITE_ERROR;
    if (st->status >= 400 || (st->status >= 300 && answered)) return http_failure(st, err);
    if (rc != CURLE_OK) return net_failure(st, rc, err);
    if (!st->body_started) return empty_body(st, err);
    if (st->total > 0 && st->offset != st->total) {
        hl_errorf(err, HL_ERR_IO, "body ended at %llu of %llu bytes",
                  (unsigned long long)st->offset, (unsigned long long)st->total);
        return RETRY;
    }
    return DONE;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

// Attempts until done: restarts from zero when the .part cannot be resumed, retries
// transient failures with exponential backoff (at least the server's Retry-After).
static int download(fetch_state *st, hl_error *err) {
    const hl_fetch_opts *o = st->opts;
    long delay_ms = o->retry_delay_ms > 0 ? o->retry_delay_ms : 0;
    int n_restarts = 0, n_retries = 0;
    for (;;) {
        enum outcome oc = run_attempt(st, err);
        if (oc == DONE) return HL_OK;
        if (oc == RESTART && n_restarts < MAX_RESTARTS) {
            n_restarts++;
            hl_log(HL_LOG_INFO, "%s; downloading from the start", err->msg);
            if (drop_part(st, err) != HL_OK) return err->code;
            continue;
        }
        if (oc != RETRY || n_retries >= o->max_retries) return err->code;
        n_retries++;
        long wait_ms = delay_ms;
        if (st->retry_after_s > 0 && st->retry_after_s * 1000 > wait_ms)
            wait_ms = st->retry_after_s * 1000;
        if (wait_ms > MAX_RETRY_DELAY_MS) wait_ms = MAX_RETRY_DELAY_MS;
        hl_log(HL_LOG_WARN, "%s; retry %d of %d in %ld ms", err->msg, n_retries, o->max_retries,
               wait_ms);
        sleep_ms(wait_ms);
        delay_ms = delay_ms * 2 > MAX_RETRY_DELAY_MS ? MAX_RETRY_DELAY_MS : delay_ms * 2;
    }
}

// Checks the digest (the caller's, else the Hub's), then publishes PATH; a mismatching
// .part is deleted.
static int finish(fetch_state *st, const char *path, const uint8_t *want, hl_fetch_result *res,
                  hl_error *err) {
    const char *source = "";
    if (!want && st->hub_sha_known) {
        want = st->hub_sha;
        source = " (the Hub's X-Linked-Etag)";
    }
    uint8_t got[HL_SHA256_BYTES];
    hl_sha256_final(&st->sha, got);
    hl_sha256_hex(got, res->sha256_hex);
    res->verified = want != NULL;
    if (want && memcmp(want, got, HL_SHA256_BYTES) != 0) {
        char want_hex[HL_SHA256_HEX_BYTES];
        hl_sha256_hex(want, want_hex);
        unlink(st->part);
        return hl_errorf(err, HL_ERR_FORMAT, "sha256 mismatch: expected %s%s, got %s; deleted %s",
                         want_hex, source, res->sha256_hex, st->part);
    }
    return publish(st, path, err);
}

static int check_args(const char *url, const char *path, const hl_fetch_opts *o, uint8_t *want,
                      hl_error *err) {
    if (!url || !path || !*path)
        return hl_errorf(err, HL_ERR_INVAL, "fetch: no URL or no output path");
    if (o->sha256_hex && hl_sha256_parse_hex(o->sha256_hex, want, err) != HL_OK) return err->code;
    if (o->max_redirects < 0 || o->max_retries < 0 || o->connect_timeout_s < 0 ||
        o->stall_timeout_s < 0)
        return hl_errorf(err, HL_ERR_INVAL, "fetch: negative limit in options");
    CURLU *u = parse_url(url, err);
    if (!u) return err->code;
    char *scheme = url_part(u, CURLUPART_SCHEME);
    bool ok = scheme && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    free(scheme);
    curl_url_cleanup(u);
    if (!ok)
        return hl_errorf(err, HL_ERR_INVAL,
                         "'%.150s': only http:// and https:// URLs can be pulled", url);
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return hl_errorf(err, HL_ERR_IO, "libcurl init: %s", curl_easy_strerror(curl_init_rc));
    return HL_OK;
}

int hl_fetch_to_file(const char *url, const char *path, const hl_fetch_opts *opts,
                     hl_fetch_result *res, hl_error *err) {
    hl_fetch_opts defaults = hl_fetch_default_opts();
    hl_fetch_result scratch;
    hl_error e = {0};
    uint8_t want[HL_SHA256_BYTES];
    if (!opts) opts = &defaults;
    if (!res) res = &scratch;
    memset(res, 0, sizeof *res);
    if (check_args(url, path, opts, want, &e) != HL_OK) return err ? (*err = e).code : e.code;

    fetch_state st = {.opts = opts, .url = url, .fd = -1, .is_hf = hl_fetch_is_hf_url(url)};
    hl_sha256_init(&st.sha);
    size_t n_part = strlen(path) + 6;
    st.part = hl_xmalloc(n_part);
    snprintf(st.part, n_part, "%s.part", path);
    char *file_url = hf_file_url(url);
    struct curl_slist *headers = NULL, *resolve = NULL;
    st.curl = curl_easy_init();
    int rc = st.curl ? HL_OK : hl_errorf(&e, HL_ERR_IO, "libcurl: cannot create a handle");
    if (rc == HL_OK) rc = build_headers(&st, &headers, &e);
    if (rc == HL_OK) rc = build_resolve(opts, &resolve, &e);
    if (rc == HL_OK) rc = open_part(&st, &e);
    if (rc == HL_OK) {
        setup_curl(&st, file_url, headers, resolve);
        rc = download(&st, &e);
    }
    if (rc == HL_OK) rc = finish(&st, path, opts->sha256_hex ? want : NULL, res, &e);
    if (rc != HL_OK && st.fd >= 0 && st.offset == 0 && e.code != HL_ERR_BUSY)
        unlink(st.part); // nothing worth keeping

    res->n_bytes = st.offset;
    res->resumed_bytes = st.resumed_bytes;
    res->http_status = st.status;
    res->n_attempts = st.n_attempts;
    if (st.fd >= 0) close(st.fd);
    curl_easy_cleanup(st.curl);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    free(file_url);
    free(st.part);
    if (err && rc != HL_OK) *err = e;
    return rc;
}
