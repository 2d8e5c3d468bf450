// hl: what every module shares — status codes and the error buffer, always-on
// asserts, allocation helpers that abort on OOM, logging, fp16/bf16 conversion
// and little-endian readers.
//
// Invariants: a function that can fail returns HL_OK or a negative hl_status and
// fills the optional `hl_error *err` (always its last parameter). Constructors
// return NULL and fill err. Programmer errors go through HL_ASSERT, which is
// compiled in everywhere and aborts with file:line.
//
//   hl_error err = {0};
//   hl_gguf *g = hl_gguf_open(path, &err);
//   if (!g) { hl_log(HL_LOG_ERROR, "%s", err.msg); return err.code; }
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

enum hl_status {
    HL_OK = 0,
    HL_ERR_INVAL = -1,   // bad argument or bad input from a user
    HL_ERR_IO = -2,      // a system call failed
    HL_ERR_FORMAT = -3,  // a file or message is malformed
    HL_ERR_NOMEM = -4,   // a large allocation failed
    HL_ERR_DEVICE = -5,  // the accelerator or its runtime failed
    HL_ERR_BUSY = -6,    // try again later (queue full, draining)
    HL_ERR_UNSUPPORTED = -7, // valid input that this build cannot handle
};

typedef struct hl_error {
    int code;
    char msg[256];
} hl_error;

// Fills err (if non-NULL) with code and a printf-formatted message; returns code so
// callers can write `return hl_errorf(err, HL_ERR_IO, ...)`.
int hl_errorf(hl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Prefixes err->msg with more context ("loading x: " + old message); returns err->code.
int hl_error_wrap(hl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Name of a status code ("HL_ERR_FORMAT"), never NULL.
const char *hl_status_name(int code);

void hl_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define HL_ASSERT(cond)                                                  \
    do {                                                                 \
        if (!(cond)) hl_panic(__FILE__, __LINE__, "assertion failed: %s", #cond); \
    } while (0)

// ---- memory ----
// Small bookkeeping allocations: abort on OOM (there is no useful recovery).
// Large buffers (weights, KV pool, arenas) use plain malloc and return HL_ERR_NOMEM.
void *hl_xmalloc(size_t n_bytes);
void *hl_xcalloc(size_t n, size_t size);
void *hl_xrealloc(void *p, size_t n_bytes);
char *hl_xstrdup(const char *s);
char *hl_xstrndup(const char *s, size_t n);

// Test hook (SQLite-style fault injection): when n > 0, the n-th following
// hl_x* allocation panics as if out of memory. 0 disables.
void hl_xmalloc_fail_after(long n);

// Checked size arithmetic: false when the result does not fit in size_t.
static inline bool hl_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool hl_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

// ---- logging ----
enum hl_log_level { HL_LOG_DEBUG = 0, HL_LOG_INFO = 1, HL_LOG_WARN = 2, HL_LOG_ERROR = 3 };
// The one mutable global: set once at startup (default INFO, or HL_LOG=debug|info|warn|error).
void hl_log_set_level(enum hl_log_level level);
void hl_log(enum hl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- time ----
double hl_time_ms(void); // monotonic clock in milliseconds

// ---- half precision ----
// IEEE binary16 and bfloat16 <-> float. Round to nearest even; NaN stays NaN.
float hl_f16_to_f32(uint16_t h);
uint16_t hl_f32_to_f16(float f);
static inline float hl_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t hl_f32_to_bf16(float f);

// ---- little-endian readers (files are parsed field by field, never by casting structs) ----
static inline uint16_t hl_rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t hl_rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t hl_rd_u64(const uint8_t *p) {
    return (uint64_t)hl_rd_u32(p) | ((uint64_t)hl_rd_u32(p + 4) << 32);
}
static inline float hl_rd_f32(const uint8_t *p) {
    uint32_t u = hl_rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline void hl_wr_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void hl_wr_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void hl_wr_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// ---- files ----
// Tells the kernel that the pages of a read-only file mapping covering [p, p + n_bytes) are not
// needed any more (they are re-read from the file if touched again). Lets model loading drop
// the file's pages once a weight has been copied into backend memory, so peak memory is the
// weights once, not twice. No-op for n_bytes == 0.
void hl_mmap_dontneed(const void *p, size_t n_bytes);

// Reads a whole file into a NUL-terminated heap buffer (caller frees). NULL + err on failure
// or when the file is larger than max_bytes.
char *hl_read_file(const char *path, size_t max_bytes, size_t *n_bytes, hl_error *err);

// ---- deterministic random numbers (synthetic weights, tests) ----
// splitmix64 hash: the same (seed, index) gives the same value on every backend,
// so CPU and CUDA can generate identical synthetic weights element by element.
static inline uint64_t hl_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
typedef struct hl_rng { uint64_t state; } hl_rng;
static inline uint64_t hl_rng_next(hl_rng *r) { return hl_hash64(r->state++); }
// Uniform in [0, 1) with 24 bits of precision.
static inline float hl_rng_uniform(hl_rng *r) { return (float)(hl_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

#ifdef __cplusplus
}
#endif
