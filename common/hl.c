// hl: shared basics (see hl.h).
#include "hl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

int hl_errorf(hl_error *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int hl_error_wrap(hl_error *err, const char *fmt, ...) {
    if (!err) return HL_ERR_INVAL;
    char prefix[sizeof err->msg];
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof err->msg, "%.120s: %.130s", prefix, old);
    return err->code;
}

const char *hl_status_name(int code) {
    switch (code) {
    case HL_OK: return "HL_OK";
    case HL_ERR_INVAL: return "HL_ERR_INVAL";
    case HL_ERR_IO: return "HL_ERR_IO";
    case HL_ERR_FORMAT: return "HL_ERR_FORMAT";
    case HL_ERR_NOMEM: return "HL_ERR_NOMEM";
    case HL_ERR_DEVICE: return "HL_ERR_DEVICE";
    case HL_ERR_BUSY: return "HL_ERR_BUSY";
    case HL_ERR_UNSUPPORTED: return "HL_ERR_UNSUPPORTED";
    default: return "HL_ERR_UNKNOWN";
    }
}

void hl_panic(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "halyard: panic at %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

// ---- memory ----

static long fail_after; // test hook only; see hl_xmalloc_fail_after

void hl_xmalloc_fail_after(long n) { fail_after = n; }

static void check_fault(size_t n_bytes) {
    if (fail_after <= 0) return;
    if (--fail_after == 0) hl_panic(__FILE__, __LINE__, "out of memory (injected, %zu bytes)", n_bytes);
}

void *hl_xmalloc(size_t n_bytes) {
    check_fault(n_bytes);
    void *p = malloc(n_bytes ? n_bytes : 1);
    if (!p) hl_panic(__FILE__, __LINE__, "out of memory allocating %zu bytes", n_bytes);
    return p;
}

void *hl_xcalloc(size_t n, size_t size) {
    check_fault(n * size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) hl_panic(__FILE__, __LINE__, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *hl_xrealloc(void *p, size_t n_bytes) {
    check_fault(n_bytes);
    void *q = realloc(p, n_bytes ? n_bytes : 1);
    if (!q) hl_panic(__FILE__, __LINE__, "out of memory reallocating %zu bytes", n_bytes);
    return q;
}

char *hl_xstrndup(const char *s, size_t n) {
    char *d = hl_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *hl_xstrdup(const char *s) { return hl_xstrndup(s, strlen(s)); }

// ---- logging ----

static enum hl_log_level log_level = HL_LOG_INFO;

void hl_log_set_level(enum hl_log_level level) { log_level = level; }

void hl_log(enum hl_log_level level, const char *fmt, ...) {
    if (level < log_level) return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "halyard %s: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

double hl_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

// ---- half precision ----

float hl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { // subnormal: normalise
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t hl_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t exp = (u >> 23) & 0xff;
    uint32_t man = u & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; // may carry into exp: correct
    return (uint16_t)(sign | half);
}

uint16_t hl_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); // quiet NaN
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

// ---- files ----

void hl_mmap_dontneed(const void *p, size_t n_bytes) {
    if (n_bytes == 0) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)p & ~(page - 1);
    uintptr_t end = ((uintptr_t)p + n_bytes + page - 1) & ~(page - 1);
    madvise((void *)start, end - start, MADV_DONTNEED); // advice only: failure changes nothing
}

char *hl_read_file(const char *path, size_t max_bytes, size_t *n_bytes, hl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        hl_errorf(err, HL_ERR_IO, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    if ((size_t)st.st_size > max_bytes) {
        hl_errorf(err, HL_ERR_INVAL, "%s: %lld bytes is over the limit of %zu", path,
                  (long long)st.st_size, max_bytes);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        hl_errorf(err, HL_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
        fclose(f);
        return NULL;
    }
    if (fread(buf, 1, n, f) != n) {
        hl_errorf(err, HL_ERR_IO, "read %s: %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    if (n_bytes) *n_bytes = n;
    return buf;
}
