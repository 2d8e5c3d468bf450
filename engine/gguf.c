// gguf: GGUF v2/v3 reader (mmap, validated up front) and v3 writer (see gguf.h).
//
// The reader walks the file once, front to back, with a bounds-checked cursor; every
// count is compared with the bytes that remain before anything proportional to it is
// allocated, and the arrays of entries grow only as entries actually parse.
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/quant.h"

#define MAX_NAME_BYTES 65535 // keys and tensor names (the spec's limit for keys)
#define MAX_NESTING 8        // arrays of arrays nested deeper are rejected (bounds the recursion)
#define MIN_KV_BYTES 14      // key length 8 + key 1 + type 4 + smallest value 1
#define MIN_TENSOR_BYTES 33  // name length 8 + name 1 + n_dims 4 + ne 8 + type 4 + offset 8

typedef struct kv_entry {
    char *key;             // owned, NUL-terminated
    enum hl_gguf_type type;
    const uint8_t *val;    // the encoded value (after the type field), inside the buffer
    size_t val_bytes;      // its length
    hl_gguf_arr arr;       // type == ARRAY; arr.str_offs owned
} kv_entry;

struct hl_gguf {
    const uint8_t *base;    // the mapping or the caller's buffer (borrowed)
    size_t n_bytes;
    void *map;              // owned mapping of n_bytes, NULL for hl_gguf_open_memory
    uint32_t version;
    uint32_t alignment;
    size_t data_offset;
    int64_t n_kv;
    kv_entry *kvs;          // owned, n_kv entries in file order
    kv_entry **kv_by_key;   // owned, sorted by key: lookups and the duplicate check
    int64_t n_tensors;
    hl_gguf_tensor *tensors;          // owned, file order; names owned
    hl_gguf_tensor **tensor_by_name;  // owned, sorted by name
};

// A read position inside the buffer; every read checks what remains.
typedef struct cursor {
    const uint8_t *p;
    size_t n;
    size_t pos;
} cursor;

static const char *const type_names[HL_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

const char *hl_gguf_type_name(enum hl_gguf_type t) {
    if ((unsigned)t >= HL_GGUF_TYPE_COUNT) return "?";
    return type_names[t];
}

// Bytes of one element of a fixed-size type; 0 for STRING, ARRAY and unknown ids.
static size_t scalar_bytes(enum hl_gguf_type t) {
    switch (t) {
    case HL_GGUF_UINT8: case HL_GGUF_INT8: case HL_GGUF_BOOL: return 1;
    case HL_GGUF_UINT16: case HL_GGUF_INT16: return 2;
    case HL_GGUF_UINT32: case HL_GGUF_INT32: case HL_GGUF_FLOAT32: return 4;
    case HL_GGUF_UINT64: case HL_GGUF_INT64: case HL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

// ---- cursor reads ----

static size_t remaining(const cursor *c) { return c->n - c->pos; }

static int truncated(const cursor *c, const char *what, size_t need, hl_error *err) {
    return hl_errorf(err, HL_ERR_FORMAT, "%s at offset %zu needs %zu bytes, file ends at %zu",
                     what, c->pos, need, c->n);
}

static int read_u32(cursor *c, const char *what, uint32_t *out, hl_error *err) {
    if (remaining(c) < 4) return truncated(c, what, 4, err);
    *out = hl_rd_u32(c->p + c->pos);
    c->pos += 4;
    return HL_OK;
}

static int read_u64(cursor *c, const char *what, uint64_t *out, hl_error *err) {
    if (remaining(c) < 8) return truncated(c, what, 8, err);
    *out = hl_rd_u64(c->p + c->pos);
    c->pos += 8;
    return HL_OK;
}

static int read_type(cursor *c, const char *what, enum hl_gguf_type *out, hl_error *err) {
    size_t at = c->pos;
    uint32_t t = 0;
    int rc = read_u32(c, what, &t, err);
    if (rc != HL_OK) return rc;
    if (t >= HL_GGUF_TYPE_COUNT)
        return hl_errorf(err, HL_ERR_FORMAT, "%s at offset %zu: unknown value type %u", what, at, t);
    *out = (enum hl_gguf_type)t;
    return HL_OK;
}

static int read_str(cursor *c, const char *what, hl_gguf_str *out, hl_error *err) {
    size_t at = c->pos;
    uint64_t len = 0;
    int rc = read_u64(c, what, &len, err);
    if (rc != HL_OK) return rc;
    if (len > remaining(c))
        return hl_errorf(err, HL_ERR_FORMAT,
                         "%s at offset %zu: length %llu runs past the end of the file (%zu bytes left)",
                         what, at, (unsigned long long)len, remaining(c));
    out->ptr = (const char *)c->p + c->pos;
    out->len = len;
    c->pos += (size_t)len;
    return HL_OK;
}

// Length of the valid UTF-8 sequence at s (n bytes available), or 0 when it is invalid
// (bad lead or continuation byte, overlong form, surrogate, above U+10FFFF, cut short).
static size_t utf8_seq_len(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((b & 0xe0) == 0xc0) { len = 2; cp = b & 0x1f; min = 0x80; }
    else if ((b & 0xf0) == 0xe0) { len = 3; cp = b & 0x0f; min = 0x800; }
    else if ((b & 0xf8) == 0xf0) { len = 4; cp = b & 0x07; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(s + i, n - i);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

// A key or tensor name: 1..65535 bytes of UTF-8 without NUL, copied NUL-terminated.
static int read_name(cursor *c, const char *what, char **out, hl_error *err) {
    size_t at = c->pos;
    hl_gguf_str s;
    int rc = read_str(c, what, &s, err);
    if (rc != HL_OK) return rc;
    const char *bad = NULL;
    if (s.len == 0) bad = "is empty";
    else if (s.len > MAX_NAME_BYTES) bad = "is longer than 65535 bytes";
    else if (memchr(s.ptr, 0, (size_t)s.len)) bad = "contains a NUL byte";
    else if (!utf8_valid((const uint8_t *)s.ptr, (size_t)s.len)) bad = "is not valid UTF-8";
    if (bad) return hl_errorf(err, HL_ERR_FORMAT, "%s at offset %zu %s", what, at, bad);
    *out = hl_xstrndup(s.ptr, (size_t)s.len);
    return HL_OK;
}

// ---- values ----

static int skip_value(cursor *c, enum hl_gguf_type type, int depth, hl_error *err);

// n fixed-size elements; bools must be 0 or 1.
static int skip_scalars(cursor *c, enum hl_gguf_type t, uint64_t n, hl_error *err) {
    size_t es = scalar_bytes(t);
    if (n > remaining(c) / es)
        return hl_errorf(err, HL_ERR_FORMAT,
                         "%llu %s value(s) at offset %zu run past the end of the file (%zu bytes left)",
                         (unsigned long long)n, type_names[t], c->pos, remaining(c));
    size_t n_bytes = (size_t)n * es;
    for (size_t i = 0; t == HL_GGUF_BOOL && i < n_bytes; i++) {
        if (c->p[c->pos + i] > 1)
            return hl_errorf(err, HL_ERR_FORMAT, "bool at offset %zu is %u (must be 0 or 1)",
                             c->pos + i, c->p[c->pos + i]);
    }
    c->pos += n_bytes;
    return HL_OK;
}

// The n elements of an array whose header was just read; depth = nesting level of the elements.
static int skip_array_body(cursor *c, enum hl_gguf_type elem, uint64_t n, int depth,
                           hl_error *err) {
    if (scalar_bytes(elem) > 0) return skip_scalars(c, elem, n, err);
    size_t min_bytes = elem == HL_GGUF_STRING ? 8 : 12;
    if (n > remaining(c) / min_bytes)
        return hl_errorf(err, HL_ERR_FORMAT,
                         "array of %llu %ss at offset %zu cannot fit in the %zu bytes left",
                         (unsigned long long)n, type_names[elem], c->pos, remaining(c));
    for (uint64_t i = 0; i < n; i++) {
        int rc = skip_value(c, elem, depth, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

static int read_array_header(cursor *c, enum hl_gguf_type *elem, uint64_t *n, hl_error *err) {
    int rc = read_type(c, "array element type", elem, err);
    if (rc != HL_OK) return rc;
    return read_u64(c, "array length", n, err);
}

// Validates one value of `type` at the cursor and moves past it.
static int skip_value(cursor *c, enum hl_gguf_type type, int depth, hl_error *err) {
    if (scalar_bytes(type) > 0) return skip_scalars(c, type, 1, err);
    if (type == HL_GGUF_STRING) {
        hl_gguf_str s;
        return read_str(c, "string", &s, err);
    }
    if (depth >= MAX_NESTING)
        return hl_errorf(err, HL_ERR_FORMAT, "arrays nested deeper than %d levels at offset %zu",
                         MAX_NESTING, c->pos);
    enum hl_gguf_type elem = HL_GGUF_UINT8;
    uint64_t n = 0;
    int rc = read_array_header(c, &elem, &n, err);
    if (rc != HL_OK) return rc;
    return skip_array_body(c, elem, n, depth + 1, err);
}

// Offsets of each element of an already validated string array or array of arrays.
static uint64_t *element_offsets(const uint8_t *data, size_t n_bytes, enum hl_gguf_type elem,
                                 uint64_t n) {
    uint64_t *offs = hl_xmalloc((size_t)n * sizeof *offs);
    cursor sub = {data, n_bytes, 0};
    for (uint64_t i = 0; i < n; i++) {
        offs[i] = sub.pos;
        int rc = skip_value(&sub, elem, 1, NULL);
        HL_ASSERT(rc == HL_OK); // validated by read_array
    }
    return offs;
}

static int read_array(cursor *c, kv_entry *e, hl_error *err) {
    enum hl_gguf_type elem = HL_GGUF_UINT8;
    uint64_t n = 0;
    int rc = read_array_header(c, &elem, &n, err);
    if (rc != HL_OK) return rc;
    size_t body = c->pos;
    rc = skip_array_body(c, elem, n, 1, err);
    if (rc != HL_OK) return rc;
    e->arr.elem_type = elem;
    e->arr.n = n;
    e->arr.data = c->p + body;
    if (scalar_bytes(elem) == 0 && n > 0)
        e->arr.str_offs = element_offsets(c->p + body, c->pos - body, elem, n);
    return HL_OK;
}

static int read_kv(cursor *c, int64_t i, kv_entry *e, hl_error *err) {
    int rc = read_name(c, "key", &e->key, err);
    if (rc != HL_OK) {
        hl_error_wrap(err, "kv %lld", (long long)i);
        return rc;
    }
    rc = read_type(c, "value type", &e->type, err);
    size_t start = c->pos;
    if (rc == HL_OK && e->type == HL_GGUF_ARRAY) rc = read_array(c, e, err);
    else if (rc == HL_OK) rc = skip_value(c, e->type, 0, err);
    if (rc != HL_OK) {
        hl_error_wrap(err, "kv %lld '%.60s'", (long long)i, e->key);
        return rc;
    }
    e->val = c->p + start;
    e->val_bytes = c->pos - start;
    return HL_OK;
}

// ---- tensor infos ----

static int read_dims(cursor *c, hl_gguf_tensor *t, hl_error *err) {
    size_t at = c->pos;
    uint32_t n_dims = 0;
    int rc = read_u32(c, "n_dims", &n_dims, err);
    if (rc != HL_OK) return rc;
    if (n_dims == 0 || n_dims > HL_GGUF_MAX_DIMS)
        return hl_errorf(err, HL_ERR_FORMAT, "n_dims at offset %zu is %u (must be 1..%d)", at,
                         n_dims, HL_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < HL_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        uint64_t v = 0;
        rc = read_u64(c, "dimension", &v, err);
        if (rc != HL_OK) return rc;
        if (v == 0 || v > INT64_MAX)
            return hl_errorf(err, HL_ERR_FORMAT, "dimension %d at offset %zu is %lld (must be > 0)",
                             d, c->pos - 8, (long long)v);
        t->ne[d] = (int64_t)v;
    }
    return HL_OK;
}

// Checks the type and shape and sets n_bytes.
static int tensor_size(hl_gguf_tensor *t, hl_error *err) {
    const hl_dtype_info *info = hl_quant_info(t->type);
    if (!info) return hl_errorf(err, HL_ERR_UNSUPPORTED, "unknown tensor type %d", t->type);
    if (t->ne[0] % info->block_size != 0)
        return hl_errorf(err, HL_ERR_FORMAT,
                         "row of %lld elements is not a multiple of the %s block size %d",
                         (long long)t->ne[0], info->name, info->block_size);
    int64_t n_elems = t->ne[0];
    size_t n_bytes;
    int rc = hl_quant_row_bytes(t->type, t->ne[0], &n_bytes, err);
    if (rc != HL_OK) {
        if (err) err->code = HL_ERR_FORMAT;
        return HL_ERR_FORMAT;
    }
    for (int d = 1; d < HL_GGUF_MAX_DIMS; d++) {
        bool ok = !__builtin_mul_overflow(n_elems, t->ne[d], &n_elems) &&
                  hl_mul_ok(n_bytes, (size_t)t->ne[d], &n_bytes);
        if (!ok) return hl_errorf(err, HL_ERR_FORMAT, "shape [%lld, %lld, %lld, %lld] overflows",
                                  (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                                  (long long)t->ne[3]);
    }
    t->n_bytes = n_bytes;
    return HL_OK;
}

static int read_tensor_info(cursor *c, int64_t i, hl_gguf_tensor *t, hl_error *err) {
    char *name = NULL;
    int rc = read_name(c, "tensor name", &name, err);
    if (rc != HL_OK) {
        hl_error_wrap(err, "tensor %lld", (long long)i);
        return rc;
    }
    t->name = name;
    rc = read_dims(c, t, err);
    uint32_t type = 0;
    if (rc == HL_OK) rc = read_u32(c, "tensor type", &type, err);
    if (rc == HL_OK && type > INT32_MAX)
        rc = hl_errorf(err, HL_ERR_UNSUPPORTED, "unknown tensor type %u", type);
    t->type = (int)type;
    if (rc == HL_OK) rc = read_u64(c, "tensor offset", &t->offset, err);
    if (rc == HL_OK) rc = tensor_size(t, err);
    if (rc != HL_OK) hl_error_wrap(err, "tensor %lld '%.60s'", (long long)i, name);
    return rc;
}

// ---- whole file ----

static int read_header(cursor *c, hl_gguf *g, uint64_t *n_tensors, uint64_t *n_kv,
                       hl_error *err) {
    if (c->n < 4 || memcmp(c->p, "GGUF", 4) != 0)
        return hl_errorf(err, HL_ERR_FORMAT, "not a GGUF file (no 'GGUF' magic in the first 4 bytes)");
    c->pos = 4;
    int rc = read_u32(c, "version", &g->version, err);
    if (rc != HL_OK) return rc;
    uint32_t v = g->version, swapped = __builtin_bswap32(v);
    if ((v & 0xffff) == 0 && swapped >= 1 && swapped <= 3)
        return hl_errorf(err, HL_ERR_UNSUPPORTED,
                         "big-endian GGUF is not supported (version field reads 0x%08x)", v);
    if (v != 2 && v != 3)
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "GGUF version %u is not supported (only 2 and 3)", v);
    rc = read_u64(c, "tensor count", n_tensors, err);
    if (rc == HL_OK) rc = read_u64(c, "kv count", n_kv, err);
    if (rc != HL_OK) return rc;
    if (*n_kv > remaining(c) / MIN_KV_BYTES)
        return hl_errorf(err, HL_ERR_FORMAT,
                         "kv count %llu cannot fit in the %zu bytes after the header",
                         (unsigned long long)*n_kv, remaining(c));
    if (*n_tensors > remaining(c) / MIN_TENSOR_BYTES)
        return hl_errorf(err, HL_ERR_FORMAT,
                         "tensor count %llu cannot fit in the %zu bytes after the header",
                         (unsigned long long)*n_tensors, remaining(c));
    return HL_OK;
}

// Makes room for one more element in a growing array (doubling).
static void *grow(void *arr, int64_t n, int64_t *cap, size_t elem_bytes) {
    if (n < *cap) return arr;
    *cap = *cap ? *cap * 2 : 16;
    return hl_xrealloc(arr, (size_t)*cap * elem_bytes);
}

static int read_kvs(cursor *c, hl_gguf *g, uint64_t n_kv, hl_error *err) {
    int64_t cap = 0;
    for (int64_t i = 0; i < (int64_t)n_kv; i++) {
        g->kvs = grow(g->kvs, g->n_kv, &cap, sizeof *g->kvs);
        kv_entry *e = &g->kvs[g->n_kv++];
        memset(e, 0, sizeof *e);
        int rc = read_kv(c, i, e, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

static int read_tensor_infos(cursor *c, hl_gguf *g, uint64_t n_tensors, hl_error *err) {
    int64_t cap = 0;
    for (int64_t i = 0; i < (int64_t)n_tensors; i++) {
        g->tensors = grow(g->tensors, g->n_tensors, &cap, sizeof *g->tensors);
        hl_gguf_tensor *t = &g->tensors[g->n_tensors++];
        memset(t, 0, sizeof *t);
        int rc = read_tensor_info(c, i, t, err);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(kv_entry *const *)a)->key, (*(kv_entry *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(hl_gguf_tensor *const *)a)->name, (*(hl_gguf_tensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    uint64_t x = (*(hl_gguf_tensor *const *)a)->offset, y = (*(hl_gguf_tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}

static int index_kvs(hl_gguf *g, hl_error *err) {
    g->kv_by_key = hl_xmalloc((size_t)g->n_kv * sizeof *g->kv_by_key);
    for (int64_t i = 0; i < g->n_kv; i++) g->kv_by_key[i] = &g->kvs[i];
    qsort(g->kv_by_key, (size_t)g->n_kv, sizeof *g->kv_by_key, cmp_kv_key);
    for (int64_t i = 1; i < g->n_kv; i++) {
        const kv_entry *a = g->kv_by_key[i - 1], *b = g->kv_by_key[i];
        if (strcmp(a->key, b->key) == 0)
            return hl_errorf(err, HL_ERR_FORMAT, "duplicate key '%.100s' (kv %lld and kv %lld)", a->key,
                             (long long)(a - g->kvs), (long long)(b - g->kvs));
    }
    return HL_OK;
}

static int index_tensors(hl_gguf *g, hl_error *err) {
    g->tensor_by_name = hl_xmalloc((size_t)g->n_tensors * sizeof *g->tensor_by_name);
    for (int64_t i = 0; i < g->n_tensors; i++) g->tensor_by_name[i] = &g->tensors[i];
    qsort(g->tensor_by_name, (size_t)g->n_tensors, sizeof *g->tensor_by_name, cmp_tensor_name);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const hl_gguf_tensor *a = g->tensor_by_name[i - 1], *b = g->tensor_by_name[i];
        if (strcmp(a->name, b->name) == 0)
            return hl_errorf(err, HL_ERR_FORMAT, "duplicate tensor name '%.100s' (tensor %lld and %lld)",
                             a->name, (long long)(a - g->tensors), (long long)(b - g->tensors));
    }
    return HL_OK;
}

// general.alignment, when present, must be a uint32 power of two.
static int read_alignment(hl_gguf *g, hl_error *err) {
    g->alignment = HL_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = hl_gguf_find_kv(g, "general.alignment");
    if (i < 0) return HL_OK;
    const kv_entry *e = &g->kvs[i];
    if (e->type != HL_GGUF_UINT32)
        return hl_errorf(err, HL_ERR_FORMAT, "general.alignment (kv %lld) has type %s, must be uint32",
                         (long long)i, type_names[e->type]);
    uint32_t a = hl_rd_u32(e->val);
    if (a == 0 || (a & (a - 1)) != 0)
        return hl_errorf(err, HL_ERR_FORMAT, "general.alignment (kv %lld) is %u, must be a power of two",
                         (long long)i, a);
    g->alignment = a;
    return HL_OK;
}

// Every tensor lies inside the data section at an aligned offset, and no two overlap.
static int place_tensors(hl_gguf *g, hl_error *err) {
    size_t avail = g->n_bytes - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        hl_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return hl_errorf(err, HL_ERR_FORMAT,
                             "tensor %lld '%.60s': offset %llu is not a multiple of the alignment %u",
                             (long long)i, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return hl_errorf(err, HL_ERR_FORMAT,
                             "tensor %lld '%.60s': %zu bytes at data offset %llu run past the end "
                             "of the file (data section is %zu bytes)",
                             (long long)i, t->name, t->n_bytes, (unsigned long long)t->offset, avail);
        t->data = g->base + g->data_offset + t->offset;
    }
    hl_gguf_tensor **by_off = hl_xmalloc((size_t)g->n_tensors * sizeof *by_off);
    for (int64_t i = 0; i < g->n_tensors; i++) by_off[i] = &g->tensors[i];
    qsort(by_off, (size_t)g->n_tensors, sizeof *by_off, cmp_tensor_offset);
    int rc = HL_OK;
    for (int64_t i = 1; i < g->n_tensors && rc == HL_OK; i++) {
        const hl_gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (a->offset + a->n_bytes > b->offset)
            rc = hl_errorf(err, HL_ERR_FORMAT,
                           "tensors '%.60s' (offset %llu, %zu bytes) and '%.60s' (offset %llu) overlap",
                           a->name, (unsigned long long)a->offset, a->n_bytes, b->name,
                           (unsigned long long)b->offset);
    }
    free(by_off);
    return rc;
}

// The data section starts at the first multiple of the alignment after the tensor infos.
static int find_data_section(hl_gguf *g, size_t end_of_infos, hl_error *err) {
    size_t a = g->alignment, padded;
    if (!hl_add_ok(end_of_infos, a - 1, &padded))
        return hl_errorf(err, HL_ERR_FORMAT, "data section offset overflows");
    g->data_offset = padded / a * a;
    if (g->data_offset <= g->n_bytes) return HL_OK;
    if (g->n_tensors == 0) { // nothing to read there: a missing final padding is harmless
        g->data_offset = g->n_bytes;
        return HL_OK;
    }
    return hl_errorf(err, HL_ERR_FORMAT,
                     "data section at offset %zu starts past the end of the file (%zu bytes)",
                     g->data_offset, g->n_bytes);
}

static int parse(hl_gguf *g, hl_error *err) {
    cursor c = {g->base, g->n_bytes, 0};
    uint64_t n_tensors = 0, n_kv = 0;
    int rc = read_header(&c, g, &n_tensors, &n_kv, err);
    if (rc == HL_OK) rc = read_kvs(&c, g, n_kv, err);
    if (rc == HL_OK) rc = index_kvs(g, err);
    if (rc == HL_OK) rc = read_alignment(g, err);
    if (rc == HL_OK) rc = read_tensor_infos(&c, g, n_tensors, err);
    if (rc == HL_OK) rc = index_tensors(g, err);
    if (rc == HL_OK) rc = find_data_section(g, c.pos, err);
    if (rc == HL_OK) rc = place_tensors(g, err);
    return rc;
}

static hl_gguf *open_buffer(const void *data, size_t n_bytes, void *map, hl_error *err) {
    hl_gguf *g = hl_xcalloc(1, sizeof *g);
    g->base = data;
    g->n_bytes = n_bytes;
    g->map = map;
    if (parse(g, err) != HL_OK) {
        hl_gguf_free(g);
        return NULL;
    }
    return g;
}

hl_gguf *hl_gguf_open_memory(const void *data, size_t n_bytes, hl_error *err) {
    HL_ASSERT(data || n_bytes == 0);
    return open_buffer(data, n_bytes, NULL, err);
}

hl_gguf *hl_gguf_open(const char *path, hl_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    int rc = HL_OK;
    if (fstat(fd, &st) != 0) rc = hl_errorf(err, HL_ERR_IO, "stat %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = hl_errorf(err, HL_ERR_IO, "%s is not a regular file", path);
    else if (st.st_size < 4)
        rc = hl_errorf(err, HL_ERR_FORMAT, "%s: not a GGUF file (%lld bytes)", path,
                       (long long)st.st_size);
    void *map = MAP_FAILED;
    if (rc == HL_OK) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) rc = hl_errorf(err, HL_ERR_IO, "mmap %s: %s", path, strerror(errno));
    }
    close(fd);
    if (rc != HL_OK) return NULL;
    hl_gguf *g = open_buffer(map, (size_t)st.st_size, map, err);
    if (!g) hl_error_wrap(err, "%s", path);
    return g;
}

void hl_gguf_free(hl_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free((void *)g->kvs[i].arr.str_offs);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->kvs);
    free(g->kv_by_key);
    free(g->tensors);
    free(g->tensor_by_name);
    if (g->map) munmap(g->map, g->n_bytes);
    free(g);
}

uint32_t hl_gguf_version(const hl_gguf *g) { return g->version; }
uint32_t hl_gguf_alignment(const hl_gguf *g) { return g->alignment; }
size_t hl_gguf_file_bytes(const hl_gguf *g) { return g->n_bytes; }
size_t hl_gguf_data_offset(const hl_gguf *g) { return g->data_offset; }

// ---- metadata ----

int64_t hl_gguf_n_kv(const hl_gguf *g) { return g->n_kv; }

const char *hl_gguf_kv_key(const hl_gguf *g, int64_t i) {
    HL_ASSERT(i >= 0 && i < g->n_kv);
    return g->kvs[i].key;
}

enum hl_gguf_type hl_gguf_kv_type(const hl_gguf *g, int64_t i) {
    HL_ASSERT(i >= 0 && i < g->n_kv);
    return g->kvs[i].type;
}

static int cmp_key_entry(const void *key, const void *elem) {
    return strcmp(key, (*(kv_entry *const *)elem)->key);
}

int64_t hl_gguf_find_kv(const hl_gguf *g, const char *key) {
    if (g->n_kv == 0) return -1;
    kv_entry **hit = bsearch(key, g->kv_by_key, (size_t)g->n_kv, sizeof *g->kv_by_key, cmp_key_entry);
    return hit ? *hit - g->kvs : -1;
}

static int type_error(const kv_entry *e, const char *wanted, hl_error *err) {
    return hl_errorf(err, HL_ERR_FORMAT, "key '%.100s' has type %s, expected %s", e->key,
                     type_names[e->type], wanted);
}

static int entry_int(const kv_entry *e, int64_t *out, hl_error *err) {
    const uint8_t *v = e->val;
    switch (e->type) {
    case HL_GGUF_UINT8: *out = v[0]; return HL_OK;
    case HL_GGUF_INT8: *out = (int8_t)v[0]; return HL_OK;
    case HL_GGUF_UINT16: *out = hl_rd_u16(v); return HL_OK;
    case HL_GGUF_INT16: *out = (int16_t)hl_rd_u16(v); return HL_OK;
    case HL_GGUF_UINT32: *out = hl_rd_u32(v); return HL_OK;
    case HL_GGUF_INT32: *out = (int32_t)hl_rd_u32(v); return HL_OK;
    case HL_GGUF_INT64: *out = (int64_t)hl_rd_u64(v); return HL_OK;
    case HL_GGUF_UINT64:
        if (hl_rd_u64(v) > INT64_MAX)
            return hl_errorf(err, HL_ERR_FORMAT, "key '%.100s': value %llu does not fit in int64",
                             e->key, (unsigned long long)hl_rd_u64(v));
        *out = (int64_t)hl_rd_u64(v);
        return HL_OK;
    default: return type_error(e, "an integer", err);
    }
}

static double rd_f64(const uint8_t *p) {
    uint64_t u = hl_rd_u64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static int entry_float(const kv_entry *e, double *out, hl_error *err) {
    if (e->type == HL_GGUF_FLOAT32) *out = hl_rd_f32(e->val);
    else if (e->type == HL_GGUF_FLOAT64) *out = rd_f64(e->val);
    else return type_error(e, "float32 or float64", err);
    return HL_OK;
}

static int entry_bool(const kv_entry *e, bool *out, hl_error *err) {
    if (e->type != HL_GGUF_BOOL) return type_error(e, "bool", err);
    *out = e->val[0] != 0;
    return HL_OK;
}

static int entry_str(const kv_entry *e, hl_gguf_str *out, hl_error *err) {
    if (e->type != HL_GGUF_STRING) return type_error(e, "string", err);
    out->len = hl_rd_u64(e->val);
    out->ptr = (const char *)e->val + 8;
    return HL_OK;
}

static int entry_arr(const kv_entry *e, hl_gguf_arr *out, hl_error *err) {
    if (e->type != HL_GGUF_ARRAY) return type_error(e, "array", err);
    *out = e->arr;
    return HL_OK;
}

// The entry for a key, or NULL with HL_ERR_INVAL in err.
static const kv_entry *entry_by_key(const hl_gguf *g, const char *key, hl_error *err) {
    int64_t i = hl_gguf_find_kv(g, key);
    if (i >= 0) return &g->kvs[i];
    hl_errorf(err, HL_ERR_INVAL, "key '%.200s' not found", key);
    return NULL;
}

static const kv_entry *entry_at(const hl_gguf *g, int64_t i, hl_error *err) {
    if (i >= 0 && i < g->n_kv) return &g->kvs[i];
    hl_errorf(err, HL_ERR_INVAL, "kv index %lld out of range (%lld kvs)", (long long)i,
              (long long)g->n_kv);
    return NULL;
}

int hl_gguf_get_int(const hl_gguf *g, const char *key, int64_t *out, hl_error *err) {
    const kv_entry *e = entry_by_key(g, key, err);
    return e ? entry_int(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_get_float(const hl_gguf *g, const char *key, double *out, hl_error *err) {
    const kv_entry *e = entry_by_key(g, key, err);
    return e ? entry_float(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_get_bool(const hl_gguf *g, const char *key, bool *out, hl_error *err) {
    const kv_entry *e = entry_by_key(g, key, err);
    return e ? entry_bool(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_get_str(const hl_gguf *g, const char *key, hl_gguf_str *out, hl_error *err) {
    const kv_entry *e = entry_by_key(g, key, err);
    return e ? entry_str(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_get_arr(const hl_gguf *g, const char *key, hl_gguf_arr *out, hl_error *err) {
    const kv_entry *e = entry_by_key(g, key, err);
    return e ? entry_arr(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_kv_int(const hl_gguf *g, int64_t i, int64_t *out, hl_error *err) {
    const kv_entry *e = entry_at(g, i, err);
    return e ? entry_int(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_kv_float(const hl_gguf *g, int64_t i, double *out, hl_error *err) {
    const kv_entry *e = entry_at(g, i, err);
    return e ? entry_float(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_kv_bool(const hl_gguf *g, int64_t i, bool *out, hl_error *err) {
    const kv_entry *e = entry_at(g, i, err);
    return e ? entry_bool(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_kv_str(const hl_gguf *g, int64_t i, hl_gguf_str *out, hl_error *err) {
    const kv_entry *e = entry_at(g, i, err);
    return e ? entry_str(e, out, err) : HL_ERR_INVAL;
}

int hl_gguf_kv_arr(const hl_gguf *g, int64_t i, hl_gguf_arr *out, hl_error *err) {
    const kv_entry *e = entry_at(g, i, err);
    return e ? entry_arr(e, out, err) : HL_ERR_INVAL;
}

hl_gguf_str hl_gguf_arr_str(const hl_gguf_arr *arr, uint64_t i) {
    HL_ASSERT(arr->elem_type == HL_GGUF_STRING && i < arr->n);
    const uint8_t *p = arr->data + arr->str_offs[i];
    return (hl_gguf_str){(const char *)p + 8, hl_rd_u64(p)};
}

int64_t hl_gguf_arr_int(const hl_gguf_arr *arr, uint64_t i) {
    HL_ASSERT(i < arr->n);
    const uint8_t *p = arr->data + i * scalar_bytes(arr->elem_type);
    switch (arr->elem_type) {
    case HL_GGUF_UINT8: case HL_GGUF_BOOL: return p[0];
    case HL_GGUF_INT8: return (int8_t)p[0];
    case HL_GGUF_UINT16: return hl_rd_u16(p);
    case HL_GGUF_INT16: return (int16_t)hl_rd_u16(p);
    case HL_GGUF_UINT32: return hl_rd_u32(p);
    case HL_GGUF_INT32: return (int32_t)hl_rd_u32(p);
    case HL_GGUF_INT64: return (int64_t)hl_rd_u64(p);
    case HL_GGUF_UINT64: return hl_rd_u64(p) > INT64_MAX ? INT64_MAX : (int64_t)hl_rd_u64(p);
    default:
        hl_panic(__FILE__, __LINE__, "hl_gguf_arr_int on an array of %s",
                 hl_gguf_type_name(arr->elem_type));
    }
}

double hl_gguf_arr_float(const hl_gguf_arr *arr, uint64_t i) {
    HL_ASSERT(i < arr->n);
    if (arr->elem_type == HL_GGUF_FLOAT32) return hl_rd_f32(arr->data + i * 4);
    HL_ASSERT(arr->elem_type == HL_GGUF_FLOAT64);
    return rd_f64(arr->data + i * 8);
}

// ---- tensors ----

int64_t hl_gguf_n_tensors(const hl_gguf *g) { return g->n_tensors; }

const hl_gguf_tensor *hl_gguf_tensor_at(const hl_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_tensors) return NULL;
    return &g->tensors[i];
}

static int cmp_name_tensor(const void *name, const void *elem) {
    return strcmp(name, (*(hl_gguf_tensor *const *)elem)->name);
}

const hl_gguf_tensor *hl_gguf_find_tensor(const hl_gguf *g, const char *name) {
    if (g->n_tensors == 0) return NULL;
    hl_gguf_tensor **hit = bsearch(name, g->tensor_by_name, (size_t)g->n_tensors,
                                   sizeof *g->tensor_by_name, cmp_name_tensor);
    return hit ? *hit : NULL;
}

// ---- writer ----

typedef struct byte_buf {
    uint8_t *p;   // owned
    size_t n, cap;
} byte_buf;

typedef struct writer_kv {
    char *key;             // owned
    enum hl_gguf_type type;
    byte_buf val;          // the encoded value, exactly as it goes after the type field
} writer_kv;

typedef struct writer_tensor {
    char *name;            // owned
    int type, n_dims;
    int64_t ne[HL_GGUF_MAX_DIMS];
    size_t n_bytes;
    uint64_t offset;       // set by hl_gguf_writer_write
    const void *data;      // borrowed, or NULL when fill supplies the bytes
    hl_gguf_fill_fn fill;
    void *fill_ctx;
} writer_tensor;

struct hl_gguf_writer {
    writer_kv *kvs;        // owned, in the order they were first set
    int64_t n_kv, cap_kv;
    writer_tensor *tensors; // owned, in the order they were added
    int64_t n_tensors, cap_tensors;
};

static void buf_put(byte_buf *b, const void *src, size_t n) {
    size_t need;
    HL_ASSERT(hl_add_ok(b->n, n, &need));
    if (need > b->cap) {
        b->cap = need > 2 * b->cap ? need : 2 * b->cap;
        b->p = hl_xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n = need;
}

static void buf_u32(byte_buf *b, uint32_t v) {
    uint8_t le[4];
    hl_wr_u32(le, v);
    buf_put(b, le, 4);
}

static void buf_u64(byte_buf *b, uint64_t v) {
    uint8_t le[8];
    hl_wr_u64(le, v);
    buf_put(b, le, 8);
}

static void buf_str(byte_buf *b, const char *s, size_t len) {
    buf_u64(b, len);
    buf_put(b, s, len);
}

hl_gguf_writer *hl_gguf_writer_create(void) { return hl_xcalloc(1, sizeof(hl_gguf_writer)); }

void hl_gguf_writer_free(hl_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    for (int64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

// The value buffer for key, emptied, with its type set (an existing key keeps its place).
static byte_buf *writer_slot(hl_gguf_writer *w, const char *key, enum hl_gguf_type type) {
    size_t len = strlen(key);
    HL_ASSERT(len > 0 && len <= MAX_NAME_BYTES && utf8_valid((const uint8_t *)key, len));
    writer_kv *e = NULL;
    for (int64_t i = 0; i < w->n_kv && !e; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) e = &w->kvs[i];
    }
    if (!e) {
        w->kvs = grow(w->kvs, w->n_kv, &w->cap_kv, sizeof *w->kvs);
        e = &w->kvs[w->n_kv++];
        memset(e, 0, sizeof *e);
        e->key = hl_xstrdup(key);
    }
    e->type = type;
    e->val.n = 0;
    return &e->val;
}

void hl_gguf_writer_set_scalar(hl_gguf_writer *w, const char *key, enum hl_gguf_type type,
                               const void *value) {
    size_t n = scalar_bytes(type);
    HL_ASSERT(n > 0);
    HL_ASSERT(type != HL_GGUF_BOOL || *(const uint8_t *)value <= 1);
    buf_put(writer_slot(w, key, type), value, n);
}

void hl_gguf_writer_set_u32(hl_gguf_writer *w, const char *key, uint32_t v) {
    buf_u32(writer_slot(w, key, HL_GGUF_UINT32), v);
}

void hl_gguf_writer_set_i32(hl_gguf_writer *w, const char *key, int32_t v) {
    buf_u32(writer_slot(w, key, HL_GGUF_INT32), (uint32_t)v);
}

void hl_gguf_writer_set_u64(hl_gguf_writer *w, const char *key, uint64_t v) {
    buf_u64(writer_slot(w, key, HL_GGUF_UINT64), v);
}

void hl_gguf_writer_set_f32(hl_gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    buf_u32(writer_slot(w, key, HL_GGUF_FLOAT32), u);
}

void hl_gguf_writer_set_bool(hl_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    buf_put(writer_slot(w, key, HL_GGUF_BOOL), &b, 1);
}

void hl_gguf_writer_set_str(hl_gguf_writer *w, const char *key, const char *v) {
    hl_gguf_writer_set_strn(w, key, v, strlen(v));
}

void hl_gguf_writer_set_strn(hl_gguf_writer *w, const char *key, const char *v, size_t len) {
    buf_str(writer_slot(w, key, HL_GGUF_STRING), v, len);
}

void hl_gguf_writer_set_arr(hl_gguf_writer *w, const char *key, enum hl_gguf_type elem_type,
                            const void *data, uint64_t n) {
    size_t es = scalar_bytes(elem_type), n_bytes;
    HL_ASSERT(es > 0 && hl_mul_ok((size_t)n, es, &n_bytes));
    for (uint64_t i = 0; elem_type == HL_GGUF_BOOL && i < n; i++)
        HL_ASSERT(((const uint8_t *)data)[i] <= 1);
    byte_buf *b = writer_slot(w, key, HL_GGUF_ARRAY);
    buf_u32(b, elem_type);
    buf_u64(b, n);
    buf_put(b, data, n_bytes);
}

void hl_gguf_writer_set_arr_str(hl_gguf_writer *w, const char *key, const char *const *ptrs,
                                const size_t *lens, uint64_t n) {
    byte_buf *b = writer_slot(w, key, HL_GGUF_ARRAY);
    buf_u32(b, HL_GGUF_STRING);
    buf_u64(b, n);
    for (uint64_t i = 0; i < n; i++) buf_str(b, ptrs[i], lens[i]);
}

void hl_gguf_writer_copy_kv(hl_gguf_writer *w, const hl_gguf *src, int64_t i) {
    HL_ASSERT(i >= 0 && i < src->n_kv);
    const kv_entry *e = &src->kvs[i];
    buf_put(writer_slot(w, e->key, e->type), e->val, e->val_bytes);
}

static int check_new_tensor(const hl_gguf_writer *w, const char *name, int type, int n_dims,
                            const int64_t *ne, hl_error *err) {
    size_t len = strlen(name);
    if (len == 0 || len > MAX_NAME_BYTES || !utf8_valid((const uint8_t *)name, len))
        return hl_errorf(err, HL_ERR_INVAL, "tensor name '%.60s' must be 1..65535 bytes of UTF-8", name);
    for (int64_t i = 0; i < w->n_tensors; i++) {
        if (strcmp(w->tensors[i].name, name) == 0)
            return hl_errorf(err, HL_ERR_INVAL, "duplicate tensor name '%.100s'", name);
    }
    if (!hl_quant_info(type))
        return hl_errorf(err, HL_ERR_INVAL, "tensor '%.60s': unknown type %d", name, type);
    if (n_dims < 1 || n_dims > HL_GGUF_MAX_DIMS)
        return hl_errorf(err, HL_ERR_INVAL, "tensor '%.60s': n_dims %d (must be 1..4)", name, n_dims);
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return hl_errorf(err, HL_ERR_INVAL, "tensor '%.60s': dimension %d is %lld", name, d,
                             (long long)ne[d]);
    }
    return HL_OK;
}

int hl_gguf_writer_add_tensor(hl_gguf_writer *w, const char *name, int type, int n_dims,
                              const int64_t *ne, const void *data, hl_gguf_fill_fn fill,
                              void *fill_ctx, hl_error *err) {
    HL_ASSERT(data || fill);
    int rc = check_new_tensor(w, name, type, n_dims, ne, err);
    if (rc != HL_OK) return rc;
    writer_tensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .fill_ctx = fill_ctx};
    for (int d = 0; d < HL_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    hl_gguf_tensor probe = {.type = type, .ne = {t.ne[0], t.ne[1], t.ne[2], t.ne[3]}};
    rc = tensor_size(&probe, err);
    if (rc != HL_OK) {
        hl_error_wrap(err, "tensor '%.60s'", name);
        if (err) err->code = HL_ERR_INVAL;
        return HL_ERR_INVAL;
    }
    t.n_bytes = probe.n_bytes;
    t.name = hl_xstrdup(name);
    w->tensors = grow(w->tensors, w->n_tensors, &w->cap_tensors, sizeof *w->tensors);
    w->tensors[w->n_tensors++] = t;
    return HL_OK;
}

static int writer_alignment(const hl_gguf_writer *w, uint32_t *out, hl_error *err) {
    *out = HL_GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        const writer_kv *e = &w->kvs[i];
        if (strcmp(e->key, "general.alignment") != 0) continue;
        uint32_t a = e->type == HL_GGUF_UINT32 ? hl_rd_u32(e->val.p) : 0;
        if (a == 0 || (a & (a - 1)) != 0)
            return hl_errorf(err, HL_ERR_INVAL, "general.alignment must be a uint32 power of two");
        *out = a;
    }
    return HL_OK;
}

// Header, kvs and tensor infos (unpadded); sets each tensor's offset.
static int build_header(hl_gguf_writer *w, uint32_t align, byte_buf *b, hl_error *err) {
    buf_put(b, "GGUF", 4);
    buf_u32(b, 3);
    buf_u64(b, (uint64_t)w->n_tensors);
    buf_u64(b, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        buf_str(b, w->kvs[i].key, strlen(w->kvs[i].key));
        buf_u32(b, w->kvs[i].type);
        buf_put(b, w->kvs[i].val.p, w->kvs[i].val.n);
    }
    size_t off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        buf_str(b, t->name, strlen(t->name));
        buf_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) buf_u64(b, (uint64_t)t->ne[d]);
        buf_u32(b, (uint32_t)t->type);
        buf_u64(b, off);
        t->offset = off;
        if (!hl_add_ok(off, t->n_bytes, &off) || !hl_add_ok(off, align - 1, &off))
            return hl_errorf(err, HL_ERR_INVAL, "tensor data exceeds the address space");
        off = off / align * align;
    }
    return HL_OK;
}

static int write_bytes(FILE *f, const void *p, size_t n, const char *path, hl_error *err) {
    if (n > 0 && fwrite(p, 1, n, f) != n)
        return hl_errorf(err, HL_ERR_IO, "write %s: %s", path, strerror(errno));
    return HL_OK;
}

static int write_zeros(FILE *f, size_t n, const char *path, hl_error *err) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        int rc = write_bytes(f, zeros, k, path, err);
        if (rc != HL_OK) return rc;
        n -= k;
    }
    return HL_OK;
}

// Tensor data in order, each padded to the alignment. Filled tensors go through one
// scratch buffer the size of the largest of them, so memory stays at one tensor.
static int write_tensors(hl_gguf_writer *w, FILE *f, uint32_t align, const char *path,
                         hl_error *err) {
    size_t scratch_bytes = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (!t->data && t->n_bytes > scratch_bytes) scratch_bytes = t->n_bytes;
    }
    void *scratch = scratch_bytes ? malloc(scratch_bytes) : NULL;
    if (scratch_bytes && !scratch)
        return hl_errorf(err, HL_ERR_NOMEM, "no memory for a %zu-byte tensor buffer", scratch_bytes);
    int rc = HL_OK;
    for (int64_t i = 0; i < w->n_tensors && rc == HL_OK; i++) {
        const writer_tensor *t = &w->tensors[i];
        const void *src = t->data;
        if (!src) {
            rc = t->fill(t->fill_ctx, t->name, scratch, t->n_bytes, err);
            if (rc != HL_OK) hl_error_wrap(err, "filling tensor '%.60s'", t->name);
            src = scratch;
        }
        if (rc == HL_OK) rc = write_bytes(f, src, t->n_bytes, path, err);
        if (rc == HL_OK) rc = write_zeros(f, (align - t->n_bytes % align) % align, path, err);
    }
    free(scratch);
    return rc;
}

static int close_file(FILE *f, const char *path, hl_error *err) {
    int rc = HL_OK;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = hl_errorf(err, HL_ERR_IO, "write %s: %s", path, strerror(errno));
    if (fclose(f) != 0 && rc == HL_OK)
        rc = hl_errorf(err, HL_ERR_IO, "close %s: %s", path, strerror(errno));
    return rc;
}

int hl_gguf_writer_write(hl_gguf_writer *w, const char *path, hl_error *err) {
    uint32_t align;
    byte_buf head = {0};
    int rc = writer_alignment(w, &align, err);
    if (rc == HL_OK) rc = build_header(w, align, &head, err);
    if (rc != HL_OK) {
        free(head.p);
        return rc;
    }
    size_t len = strlen(path);
    char *tmp = hl_xmalloc(len + 5);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = hl_errorf(err, HL_ERR_IO, "create %s: %s", tmp, strerror(errno));
        goto done;
    }
    rc = write_bytes(f, head.p, head.n, tmp, err);
    if (rc == HL_OK) rc = write_zeros(f, (align - head.n % align) % align, tmp, err);
    if (rc == HL_OK) rc = write_tensors(w, f, align, tmp, err);
    int rc_close = close_file(f, tmp, rc == HL_OK ? err : NULL);
    if (rc == HL_OK) rc = rc_close;
    if (rc == HL_OK && rename(tmp, path) != 0)
        rc = hl_errorf(err, HL_ERR_IO, "rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc != HL_OK) unlink(tmp);
done:
    free(tmp);
    free(head.p);
    return rc;
}
