// safetensors: validating reader over mmap (see safetensors.h for the format and contract).
#include "engine/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/quant.h"

// An index file lists every tensor once; 64 MB is far above any real one (405B: ~100 KB).
#define MAX_INDEX_BYTES (64u * 1024 * 1024)
// Largest integer a JSON number (a double in cJSON) holds exactly.
#define MAX_JSON_INT 9007199254740992.0

typedef struct shard {
    char *path;            // owned; NULL when the bytes are a caller's buffer
    const uint8_t *base;   // whole file: mapped (path != NULL) or borrowed
    size_t n_bytes;
    const uint8_t *data;   // data section: base + 8 + header length
    size_t data_bytes;
} shard;

typedef struct meta_kv {
    char *key;   // owned
    char *value; // owned
} meta_kv;

struct hl_safetensors {
    shard *shards;                  // owned, n_shards
    int n_shards;
    hl_safetensors_tensor *tensors; // owned, sorted by name once open returns
    int64_t n_tensors;
    int64_t cap_tensors;
    meta_kv *meta;                  // owned, in file order (first shard first)
    int n_meta;
    int cap_meta;
};

// ---- dtypes ----

typedef struct dtype_entry {
    const char *name; // safetensors spelling
    int id;           // enum hl_dtype, or -1 when the format has it but halyard does not
    size_t n_bytes;
} dtype_entry;

static const dtype_entry dtype_table[] = {
    {"F32", HL_DTYPE_F32, 4},  {"F16", HL_DTYPE_F16, 2},  {"BF16", HL_DTYPE_BF16, 2},
    {"F64", HL_DTYPE_F64, 8},  {"I8", HL_DTYPE_I8, 1},    {"I16", HL_DTYPE_I16, 2},
    {"I32", HL_DTYPE_I32, 4},  {"I64", HL_DTYPE_I64, 8},
};

static const dtype_entry *dtype_by_name(const char *name) {
    for (size_t i = 0; i < sizeof(dtype_table) / sizeof(dtype_table[0]); i++) {
        if (strcmp(dtype_table[i].name, name) == 0) return &dtype_table[i];
    }
    return NULL;
}

static const dtype_entry *dtype_by_id(int id) {
    for (size_t i = 0; i < sizeof(dtype_table) / sizeof(dtype_table[0]); i++) {
        if (dtype_table[i].id == id) return &dtype_table[i];
    }
    return NULL;
}

size_t hl_safetensors_dtype_bytes(int dtype) {
    const dtype_entry *e = dtype_by_id(dtype);
    return e ? e->n_bytes : 0;
}

const char *hl_safetensors_dtype_name(int dtype) {
    const dtype_entry *e = dtype_by_id(dtype);
    return e ? e->name : "?";
}

// ---- small helpers ----

// A JSON number that is a non-negative integer a double holds exactly.
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > MAX_JSON_INT) return false;
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return false;
    *out = u;
    return true;
}

static bool is_json_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static hl_safetensors_tensor *push_tensor(hl_safetensors *st) {
    if (st->n_tensors == st->cap_tensors) {
        st->cap_tensors = st->cap_tensors ? st->cap_tensors * 2 : 64;
        st->tensors = hl_xrealloc(st->tensors, (size_t)st->cap_tensors * sizeof(*st->tensors));
    }
    hl_safetensors_tensor *t = &st->tensors[st->n_tensors++];
    memset(t, 0, sizeof(*t));
    return t;
}

static void push_meta(hl_safetensors *st, const char *key, const char *value) {
    if (st->n_meta == st->cap_meta) {
        st->cap_meta = st->cap_meta ? st->cap_meta * 2 : 8;
        st->meta = hl_xrealloc(st->meta, (size_t)st->cap_meta * sizeof(*st->meta));
    }
    st->meta[st->n_meta].key = hl_xstrdup(key);
    st->meta[st->n_meta].value = hl_xstrdup(value);
    st->n_meta++;
}

// ---- one header entry ----

// Reads "shape" into t->ne (reversed: GGUF order) and returns the element count.
static int parse_shape(const cJSON *shape, const char *name, hl_safetensors_tensor *t,
                       uint64_t *n_elem, hl_error *err) {
    if (!cJSON_IsArray(shape)) {
        return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s': shape is not an array", name);
    }
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > HL_SAFETENSORS_MAX_DIMS) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor '%.64s': %d dims, at most %d supported",
                         name, n_dims, HL_SAFETENSORS_MAX_DIMS);
    }
    for (int i = 0; i < HL_SAFETENSORS_MAX_DIMS; i++) t->ne[i] = 1;
    t->n_dims = n_dims;
    size_t count = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v)) {
            return hl_errorf(err, HL_ERR_FORMAT,
                             "tensor '%.64s': shape[%d] is not a non-negative integer", name, i);
        }
        if (!hl_mul_ok(count, (size_t)v, &count) || count > (size_t)INT64_MAX) {
            return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s': element count overflows",
                             name);
        }
        t->ne[n_dims - 1 - i] = (int64_t)v;
    }
    *n_elem = count;
    return HL_OK;
}

// Checks "data_offsets" against the shape and the data section and sets t->data.
static int parse_offsets(const cJSON *offs, const char *name, const shard *sh,
                         hl_safetensors_tensor *t, hl_error *err) {
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(offs->child, &begin) || !json_uint(offs->child->next, &end)) {
        return hl_errorf(err, HL_ERR_FORMAT,
                         "tensor '%.64s': data_offsets is not [begin, end] of integers "
                         "in 0..2^53", name);
    }
    if (begin > end) {
        return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s': data_offsets begin %llu > end %llu",
                         name, (unsigned long long)begin, (unsigned long long)end);
    }
    if (end > sh->data_bytes) {
        return hl_errorf(err, HL_ERR_FORMAT,
                         "tensor '%.64s': data_offsets [%llu, %llu] outside the %zu-byte data "
                         "section",
                         name, (unsigned long long)begin, (unsigned long long)end,
                         sh->data_bytes);
    }
    if (end - begin != t->n_bytes) {
        return hl_errorf(err, HL_ERR_FORMAT,
                         "tensor '%.64s': data_offsets span %llu bytes, shape and dtype need %zu",
                         name, (unsigned long long)(end - begin), t->n_bytes);
    }
    t->data = sh->data + begin;
    return HL_OK;
}

static int parse_tensor(hl_safetensors *st, int is, const cJSON *item, hl_error *err) {
    const char *name = item->string;
    if (name[0] == '\0') return hl_errorf(err, HL_ERR_FORMAT, "a tensor has an empty name");
    if (!cJSON_IsObject(item)) {
        return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s': entry is not an object", name);
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dtype)) {
        return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s': dtype missing or not a string",
                         name);
    }
    const dtype_entry *de = dtype_by_name(dtype->valuestring);
    if (!de) {
        return hl_errorf(err, HL_ERR_UNSUPPORTED, "tensor '%.64s': unsupported dtype '%.32s'",
                         name, dtype->valuestring);
    }
    hl_safetensors_tensor tmp = {0};
    uint64_t n_elem = 0;
    int rc = parse_shape(cJSON_GetObjectItemCaseSensitive(item, "shape"), name, &tmp, &n_elem,
                         err);
    if (rc != HL_OK) return rc;
    if (!hl_mul_ok((size_t)n_elem, de->n_bytes, &tmp.n_bytes)) {
        return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s': byte size overflows", name);
    }
    rc = parse_offsets(cJSON_GetObjectItemCaseSensitive(item, "data_offsets"), name,
                       &st->shards[is], &tmp, err);
    if (rc != HL_OK) return rc;
    tmp.dtype = de->id;
    tmp.shard = is;
    hl_safetensors_tensor *t = push_tensor(st);
    *t = tmp;
    t->name = hl_xstrdup(name);
    return HL_OK;
}

static int parse_metadata(hl_safetensors *st, const cJSON *meta, hl_error *err) {
    if (!cJSON_IsObject(meta)) {
        return hl_errorf(err, HL_ERR_FORMAT, "__metadata__ is not an object");
    }
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) {
            return hl_errorf(err, HL_ERR_FORMAT, "__metadata__ value '%.64s' is not a string",
                             kv->string);
        }
        push_meta(st, kv->string, kv->valuestring);
    }
    return HL_OK;
}

// ---- one file ----

typedef struct span {
    const uint8_t *begin;
    const uint8_t *end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return 0;
}

// No two non-empty tensors of one file [first, n_tensors) share a byte.
static int check_overlaps(const hl_safetensors *st, int64_t first, hl_error *err) {
    int64_t n = st->n_tensors - first;
    if (n < 2) return HL_OK;
    span *spans = hl_xmalloc((size_t)n * sizeof(*spans));
    for (int64_t i = 0; i < n; i++) {
        const hl_safetensors_tensor *t = &st->tensors[first + i];
        spans[i] = (span){t->data, (const uint8_t *)t->data + t->n_bytes, t->name};
    }
    qsort(spans, (size_t)n, sizeof(*spans), cmp_span);
    int rc = HL_OK;
    const span *prev = NULL;
    for (int64_t i = 0; i < n && rc == HL_OK; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (prev && spans[i].begin < prev->end) {
            rc = hl_errorf(err, HL_ERR_FORMAT, "tensors '%.64s' and '%.64s' overlap",
                           prev->name, spans[i].name);
        }
        if (!prev || spans[i].end > prev->end) prev = &spans[i];
    }
    free(spans);
    return rc;
}

// Locates the header, checks its length, and parses it into a cJSON tree (caller frees).
static int parse_header_json(shard *sh, cJSON **out, hl_error *err) {
    if (sh->n_bytes < 8) {
        return hl_errorf(err, HL_ERR_FORMAT, "file is %zu bytes, too short for a header",
                         sh->n_bytes);
    }
    uint64_t n_header = hl_rd_u64(sh->base);
    if (n_header > HL_SAFETENSORS_MAX_HEADER_BYTES) {
        return hl_errorf(err, HL_ERR_FORMAT, "header length %llu exceeds the %u-byte cap",
                         (unsigned long long)n_header, HL_SAFETENSORS_MAX_HEADER_BYTES);
    }
    if (n_header > sh->n_bytes - 8) {
        return hl_errorf(err, HL_ERR_FORMAT, "header length %llu runs past the end of the "
                         "%zu-byte file", (unsigned long long)n_header, sh->n_bytes);
    }
    if (n_header < 2 || sh->base[8] != '{') {
        return hl_errorf(err, HL_ERR_FORMAT, "header is not a JSON object");
    }
    sh->data = sh->base + 8 + n_header;
    sh->data_bytes = sh->n_bytes - 8 - (size_t)n_header;
    // cJSON wants a NUL-terminated string; a copy also stops an embedded NUL from hiding bytes.
    char *text = hl_xstrndup((const char *)sh->base + 8, (size_t)n_header);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    size_t pos = end ? (size_t)(end - text) : 0;
    free(text);
    if (!root) {
        return hl_errorf(err, HL_ERR_FORMAT, "header is not valid JSON (error near byte %zu)",
                         pos);
    }
    for (size_t i = pos; i < n_header; i++) {
        if (is_json_space(sh->base[8 + i])) continue;
        cJSON_Delete(root);
        return hl_errorf(err, HL_ERR_FORMAT, "unexpected byte 0x%02x after the header JSON "
                         "at byte %zu", sh->base[8 + i], i);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return hl_errorf(err, HL_ERR_FORMAT, "header is not a JSON object");
    }
    *out = root;
    return HL_OK;
}

static int parse_shard(hl_safetensors *st, int is, hl_error *err) {
    cJSON *root = NULL;
    int rc = parse_header_json(&st->shards[is], &root, err);
    if (rc != HL_OK) return rc;
    int64_t first = st->n_tensors;
    for (const cJSON *item = root->child; item && rc == HL_OK; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            rc = parse_metadata(st, item, err);
        } else {
            rc = parse_tensor(st, is, item, err);
        }
    }
    cJSON_Delete(root);
    if (rc != HL_OK) return rc;
    return check_overlaps(st, first, err);
}

// ---- whole model ----

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const hl_safetensors_tensor *)a)->name,
                  ((const hl_safetensors_tensor *)b)->name);
}

// Sorts by name so find_tensor can bisect; a name twice (within or across files) is an error.
static int finish(hl_safetensors *st, hl_error *err) {
    if (st->n_tensors > 1) {
        qsort(st->tensors, (size_t)st->n_tensors, sizeof(*st->tensors), cmp_tensor_name);
    }
    for (int64_t i = 1; i < st->n_tensors; i++) {
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
            return hl_errorf(err, HL_ERR_FORMAT, "tensor '%.64s' appears twice",
                             st->tensors[i].name);
        }
    }
    return HL_OK;
}

void hl_safetensors_free(hl_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_shards; i++) {
        shard *sh = &st->shards[i];
        if (sh->path && sh->base) munmap((void *)sh->base, sh->n_bytes);
        free(sh->path);
    }
    for (int64_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->shards);
    free(st->tensors);
    free(st->meta);
    free(st);
}

hl_safetensors *hl_safetensors_open_memory(const void *data, size_t n_bytes, hl_error *err) {
    if (!data && n_bytes > 0) {
        hl_errorf(err, HL_ERR_INVAL, "NULL buffer");
        return NULL;
    }
    hl_safetensors *st = hl_xcalloc(1, sizeof(*st));
    st->shards = hl_xcalloc(1, sizeof(*st->shards));
    st->n_shards = 1;
    st->shards[0].base = data;
    st->shards[0].n_bytes = n_bytes;
    if (parse_shard(st, 0, err) != HL_OK || finish(st, err) != HL_OK) {
        hl_safetensors_free(st);
        return NULL;
    }
    return st;
}

// Maps `path` into shard slot `is`.
static int map_shard(hl_safetensors *st, int is, const char *path, hl_error *err) {
    shard *sh = &st->shards[is];
    sh->path = hl_xstrdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return hl_errorf(err, HL_ERR_IO, "stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return hl_errorf(err, HL_ERR_IO, "%s is not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return hl_errorf(err, HL_ERR_FORMAT, "%s: file is %lld bytes, too short for a header",
                         path, (long long)sb.st_size);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return hl_errorf(err, HL_ERR_IO, "mmap %s: %s", path, strerror(e));
    sh->base = p;
    sh->n_bytes = (size_t)sb.st_size;
    return HL_OK;
}

static hl_safetensors *open_single(const char *path, hl_error *err) {
    hl_safetensors *st = hl_xcalloc(1, sizeof(*st));
    st->shards = hl_xcalloc(1, sizeof(*st->shards));
    st->n_shards = 1;
    int rc = map_shard(st, 0, path, err);
    if (rc == HL_OK && parse_shard(st, 0, err) != HL_OK) {
        rc = hl_error_wrap(err, "%s", path);
    }
    if (rc == HL_OK && finish(st, err) != HL_OK) rc = hl_error_wrap(err, "%s", path);
    if (rc != HL_OK) {
        hl_safetensors_free(st);
        return NULL;
    }
    return st;
}

// ---- sharded: model.safetensors.index.json ----

// A shard file name from the index: a plain name in the index's folder, never a path.
static bool shard_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return false;
    return strchr(s, '/') == NULL && strchr(s, '\\') == NULL;
}

// Index of `file` in names[0..n), or -1.
static int shard_find(const char *const *names, int n, const char *file) {
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], file) == 0) return i;
    }
    return -1;
}

// Collects the distinct shard file names of weight_map (borrowed from the tree).
static int index_shard_names(const cJSON *map, const char ***names, int *n_names,
                             hl_error *err) {
    int n_entries = cJSON_GetArraySize(map);
    if (n_entries == 0) return hl_errorf(err, HL_ERR_FORMAT, "weight_map is empty");
    const char **out = hl_xcalloc((size_t)n_entries, sizeof(*out));
    int n = 0;
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            free(out);
            return hl_errorf(err, HL_ERR_FORMAT,
                             "weight_map entry '%.64s' does not name a shard file", e->string);
        }
        if (shard_find(out, n, e->valuestring) < 0) out[n++] = e->valuestring;
    }
    *names = out;
    *n_names = n;
    return HL_OK;
}

// Every weight_map entry is in the shard it names.
static int check_weight_map(const hl_safetensors *st, const cJSON *map, const char **names,
                            int n_names, hl_error *err) {
    for (const cJSON *e = map->child; e; e = e->next) {
        int is = shard_find(names, n_names, e->valuestring);
        const hl_safetensors_tensor *t = hl_safetensors_find_tensor(st, e->string);
        if (!t || t->shard != is) {
            return hl_errorf(err, HL_ERR_FORMAT, "weight_map: tensor '%.64s' is not in %.64s",
                             e->string, e->valuestring);
        }
    }
    return HL_OK;
}

// Maps and parses every shard; a failure names the shard file.
static int open_shards(hl_safetensors *st, const char *dir, const char **names, int n_names,
                       hl_error *err) {
    st->shards = hl_xcalloc((size_t)n_names, sizeof(*st->shards));
    st->n_shards = n_names;
    for (int i = 0; i < n_names; i++) {
        size_t n = strlen(dir) + strlen(names[i]) + 2;
        char *path = hl_xmalloc(n);
        snprintf(path, n, "%s/%s", dir, names[i]);
        int rc = map_shard(st, i, path, err);
        if (rc == HL_OK && parse_shard(st, i, err) != HL_OK) rc = hl_error_wrap(err, "%s", path);
        free(path);
        if (rc != HL_OK) return rc;
    }
    return HL_OK;
}

// The index itself: its JSON and weight_map, and whether the shards agree with it.
static int parse_index(hl_safetensors *st, const char *path, const char *text, hl_error *err) {
    cJSON *root = cJSON_Parse(text);
    if (!root) return hl_errorf(err, HL_ERR_FORMAT, "%s: not valid JSON", path);
    const char **names = NULL;
    int n_names = 0;
    int rc = HL_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map)) {
        rc = hl_errorf(err, HL_ERR_FORMAT, "no weight_map object");
    }
    if (rc == HL_OK) rc = index_shard_names(map, &names, &n_names, err);
    char *dir = hl_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    bool shard_failed = false;
    if (rc == HL_OK) {
        rc = open_shards(st, slash ? dir : ".", names, n_names, err);
        shard_failed = rc != HL_OK;
    }
    if (rc == HL_OK) rc = finish(st, err);
    if (rc == HL_OK) rc = check_weight_map(st, map, names, n_names, err);
    if (rc != HL_OK && !shard_failed) hl_error_wrap(err, "%s", path);
    free(dir);
    free(names);
    cJSON_Delete(root);
    return rc;
}

static hl_safetensors *open_index(const char *path, hl_error *err) {
    size_t n_bytes = 0;
    char *text = hl_read_file(path, MAX_INDEX_BYTES, &n_bytes, err);
    if (!text) return NULL;
    hl_safetensors *st = hl_xcalloc(1, sizeof(*st));
    int rc = parse_index(st, path, text, err);
    free(text);
    if (rc != HL_OK) {
        hl_safetensors_free(st);
        return NULL;
    }
    return st;
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static hl_safetensors *open_dir(const char *dir, hl_error *err) {
    size_t n = strlen(dir) + sizeof("/model.safetensors.index.json");
    char *path = hl_xmalloc(n);
    hl_safetensors *st = NULL;
    snprintf(path, n, "%s/model.safetensors", dir);
    if (is_file(path)) {
        st = open_single(path, err);
        free(path);
        return st;
    }
    snprintf(path, n, "%s/model.safetensors.index.json", dir);
    if (is_file(path)) {
        st = open_index(path, err);
    } else {
        hl_errorf(err, HL_ERR_IO, "no model.safetensors or model.safetensors.index.json in %s",
                  dir);
    }
    free(path);
    return st;
}

hl_safetensors *hl_safetensors_open(const char *path, hl_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) return open_dir(path, err);
    if (ends_with(path, ".json")) return open_index(path, err);
    return open_single(path, err);
}

// ---- accessors ----

int64_t hl_safetensors_n_tensors(const hl_safetensors *st) { return st->n_tensors; }

int hl_safetensors_n_shards(const hl_safetensors *st) { return st->n_shards; }

const hl_safetensors_tensor *hl_safetensors_tensor_at(const hl_safetensors *st, int64_t i) {
    HL_ASSERT(i >= 0 && i < st->n_tensors);
    return &st->tensors[i];
}

const hl_safetensors_tensor *hl_safetensors_find_tensor(const hl_safetensors *st,
                                                        const char *name) {
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

const char *hl_safetensors_metadata(const hl_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++) {
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    }
    return NULL;
}
