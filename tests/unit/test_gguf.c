// Unit tests for engine/gguf: writer -> reader round trips of every value type and of
// tensors under several alignments, files built by an independent writer (the Python
// fixtures in tests/fixtures/gguf-good, the real default model), the malformed corpus in
// tests/fixtures/gguf-bad (every file must fail with the expected code and message),
// truncation of a good file at every byte, and random mutations (clean errors or clean opens).
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/quant.h"

#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"

// ---- helpers ----

// The byte pattern make_bad_gguf.py fills tensor i with.
static uint8_t pattern(size_t i, int seed) {
    return (uint8_t)((i * 131 + (size_t)seed * 29 + (i >> 7)) & 0xff);
}

static const char *root(void) {
    const char *r = getenv("HALYARD_ROOT");
    return r ? r : ".";
}

static void fixture_path(char *out, size_t n, const char *dir, const char *name) {
    int k = snprintf(out, n, "%s/tests/fixtures/%s/%s", root(), dir, name);
    ck_assert(k > 0 && (size_t)k < n);
}

static char tmp_dir[64];

static void make_tmp_dir(void) {
    strcpy(tmp_dir, "/tmp/hl_gguf_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void) {
    DIR *d = opendir(tmp_dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

static void tmp_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmp_dir, name);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static uint8_t *read_all(const char *path, size_t *n) {
    hl_error err = {0};
    uint8_t *p = (uint8_t *)hl_read_file(path, (size_t)1 << 30, n, &err);
    ck_assert_msg(p != NULL, "%s", err.msg);
    return p;
}

static bool str_eq(hl_gguf_str s, const char *want, size_t want_len) {
    return s.len == want_len && memcmp(s.ptr, want, want_len) == 0;
}

// Touches every value and tensor byte range through the public accessors, the way a
// consumer would; under ASan this proves every pointer the reader hands out is in bounds.
static uint64_t walk_all(const hl_gguf *g) {
    uint64_t sum = 0;
    for (int64_t i = 0; i < hl_gguf_n_kv(g); i++) {
        sum += strlen(hl_gguf_kv_key(g, i));
        int64_t iv;
        double fv;
        bool bv;
        hl_gguf_str sv;
        hl_gguf_arr av;
        if (hl_gguf_kv_int(g, i, &iv, NULL) == HL_OK) sum += (uint64_t)iv;
        if (hl_gguf_kv_float(g, i, &fv, NULL) == HL_OK) sum += fv == fv;
        if (hl_gguf_kv_bool(g, i, &bv, NULL) == HL_OK) sum += bv;
        if (hl_gguf_kv_str(g, i, &sv, NULL) == HL_OK && sv.len) sum += (uint8_t)sv.ptr[sv.len - 1];
        if (hl_gguf_kv_arr(g, i, &av, NULL) != HL_OK) continue;
        for (uint64_t k = 0; k < av.n; k++) {
            if (av.elem_type == HL_GGUF_STRING) {
                hl_gguf_str s = hl_gguf_arr_str(&av, k);
                sum += s.len ? (uint8_t)s.ptr[s.len - 1] : 0;
            } else if (av.elem_type == HL_GGUF_FLOAT32 || av.elem_type == HL_GGUF_FLOAT64) {
                sum += hl_gguf_arr_float(&av, k) > 0;
            } else if (av.elem_type == HL_GGUF_ARRAY) {
                sum += hl_rd_u32(av.data + av.str_offs[k]);
            } else {
                sum += (uint64_t)hl_gguf_arr_int(&av, k);
            }
        }
    }
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) {
        const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
        const uint8_t *d = t->data;
        sum += d[0] + d[t->n_bytes - 1] + strlen(t->name);
        ck_assert_ptr_eq(hl_gguf_find_tensor(g, t->name), t);
    }
    return sum;
}

// ---- writer -> reader round trips ----

typedef struct fill_ctx {
    int seed;
    int n_calls;
    int fail;  // return an error instead of filling
} fill_ctx;

static int fill_pattern(void *ctx, const char *name, void *dst, size_t n_bytes, hl_error *err) {
    fill_ctx *f = ctx;
    f->n_calls++;
    if (f->fail) return hl_errorf(err, HL_ERR_IO, "source for %s went away", name);
    for (size_t i = 0; i < n_bytes; i++) ((uint8_t *)dst)[i] = pattern(i, f->seed);
    return HL_OK;
}

static void set_every_type(hl_gguf_writer *w) {
    uint8_t u8 = 250;
    int8_t i8 = -7;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    int64_t i64 = INT64_MIN + 3;
    double f64 = 3.0e300;
    uint8_t b = 1;
    hl_gguf_writer_set_scalar(w, "t.u8", HL_GGUF_UINT8, &u8);
    hl_gguf_writer_set_scalar(w, "t.i8", HL_GGUF_INT8, &i8);
    hl_gguf_writer_set_scalar(w, "t.u16", HL_GGUF_UINT16, &u16);
    hl_gguf_writer_set_scalar(w, "t.i16", HL_GGUF_INT16, &i16);
    hl_gguf_writer_set_u32(w, "t.u32", 4294967295u);
    hl_gguf_writer_set_i32(w, "t.i32", INT32_MIN);
    hl_gguf_writer_set_f32(w, "t.f32", -2.5f);
    hl_gguf_writer_set_bool(w, "t.bool", false);
    hl_gguf_writer_set_scalar(w, "t.bool2", HL_GGUF_BOOL, &b);
    hl_gguf_writer_set_str(w, "t.str", "first value");
    hl_gguf_writer_set_u64(w, "t.u64", 1ull << 62);
    hl_gguf_writer_set_u64(w, "t.u64_big", UINT64_MAX);
    hl_gguf_writer_set_scalar(w, "t.i64", HL_GGUF_INT64, &i64);
    hl_gguf_writer_set_scalar(w, "t.f64", HL_GGUF_FLOAT64, &f64);
    hl_gguf_writer_set_strn(w, "t.strn", "a\0b", 3);
    hl_gguf_writer_set_str(w, "t.str", "replaced");   // same key: replaced in place
    hl_gguf_writer_set_u32(w, "t.retyped", 1);
    hl_gguf_writer_set_str(w, "t.retyped", "now a string");
    int32_t i32s[] = {-1, 0, 1, INT32_MAX};
    float f32s[] = {0.5f, -1e30f};
    uint64_t u64s[] = {0, UINT64_MAX};
    uint8_t bools[] = {1, 0, 1};
    hl_gguf_writer_set_arr(w, "t.arr_i32", HL_GGUF_INT32, i32s, 4);
    hl_gguf_writer_set_arr(w, "t.arr_f32", HL_GGUF_FLOAT32, f32s, 2);
    hl_gguf_writer_set_arr(w, "t.arr_u64", HL_GGUF_UINT64, u64s, 2);
    hl_gguf_writer_set_arr(w, "t.arr_bool", HL_GGUF_BOOL, bools, 3);
    hl_gguf_writer_set_arr(w, "t.arr_empty", HL_GGUF_UINT8, NULL, 0);
    const char *strs[] = {"x", "", "zé\xf0\x9f\x98\x80", "n\0ul"};
    size_t lens[] = {1, 0, 7, 4};
    hl_gguf_writer_set_arr_str(w, "t.arr_str", strs, lens, 4);
    hl_gguf_writer_set_arr_str(w, "t.arr_str_empty", NULL, NULL, 0);
}

static void check_scalars(const hl_gguf *g) {
    hl_error err = {0};
    int64_t v;
    static const struct { const char *key; int64_t want; } ints[] = {
        {"t.u8", 250}, {"t.i8", -7}, {"t.u16", 65000}, {"t.i16", -32000}, {"t.u32", 4294967295ll},
        {"t.i32", INT32_MIN}, {"t.u64", 1ll << 62}, {"t.i64", INT64_MIN + 3},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        ck_assert_int_eq(hl_gguf_get_int(g, ints[i].key, &v, &err), HL_OK);
        ck_assert_msg(v == ints[i].want, "%s: %lld", ints[i].key, (long long)v);
    }
    ck_assert_int_eq(hl_gguf_get_int(g, "t.u64_big", &v, &err), HL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "t.u64_big"));
    double f;
    ck_assert_int_eq(hl_gguf_get_float(g, "t.f32", &f, &err), HL_OK);
    ck_assert(f == -2.5);
    ck_assert_int_eq(hl_gguf_get_float(g, "t.f64", &f, &err), HL_OK);
    ck_assert(f == 3.0e300);
    bool b = true;
    ck_assert_int_eq(hl_gguf_get_bool(g, "t.bool", &b, &err), HL_OK);
    ck_assert(!b);
    ck_assert_int_eq(hl_gguf_get_bool(g, "t.bool2", &b, &err), HL_OK);
    ck_assert(b);
    hl_gguf_str s;
    ck_assert_int_eq(hl_gguf_get_str(g, "t.str", &s, &err), HL_OK);
    ck_assert(str_eq(s, "replaced", 8));
    ck_assert_int_eq(hl_gguf_get_str(g, "t.strn", &s, &err), HL_OK);
    ck_assert(str_eq(s, "a\0b", 3));
    ck_assert_int_eq(hl_gguf_get_str(g, "t.retyped", &s, &err), HL_OK);
    ck_assert(str_eq(s, "now a string", 12));
    // Replacing a key keeps its place: t.str is still the 10th key set.
    ck_assert_str_eq(hl_gguf_kv_key(g, 9), "t.str");
    ck_assert_int_eq(hl_gguf_kv_type(g, 9), HL_GGUF_STRING);
}

static void check_arrays(const hl_gguf *g) {
    hl_error err = {0};
    hl_gguf_arr a;
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_i32", &a, &err), HL_OK);
    ck_assert(a.elem_type == HL_GGUF_INT32 && a.n == 4 && a.str_offs == NULL);
    ck_assert(hl_gguf_arr_int(&a, 0) == -1 && hl_gguf_arr_int(&a, 3) == INT32_MAX);
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_f32", &a, &err), HL_OK);
    ck_assert(a.n == 2 && hl_gguf_arr_float(&a, 0) == 0.5);
    ck_assert(hl_gguf_arr_float(&a, 1) == (double)-1e30f);
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_u64", &a, &err), HL_OK);
    ck_assert(hl_gguf_arr_int(&a, 0) == 0 && hl_gguf_arr_int(&a, 1) == INT64_MAX); // clamped
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_bool", &a, &err), HL_OK);
    ck_assert(a.elem_type == HL_GGUF_BOOL);
    ck_assert(hl_gguf_arr_int(&a, 0) == 1 && hl_gguf_arr_int(&a, 1) == 0);
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_empty", &a, &err), HL_OK);
    ck_assert(a.elem_type == HL_GGUF_UINT8 && a.n == 0);
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_str", &a, &err), HL_OK);
    ck_assert(a.elem_type == HL_GGUF_STRING && a.n == 4);
    ck_assert(str_eq(hl_gguf_arr_str(&a, 0), "x", 1));
    ck_assert(str_eq(hl_gguf_arr_str(&a, 1), "", 0));
    ck_assert(str_eq(hl_gguf_arr_str(&a, 2), "zé\xf0\x9f\x98\x80", 7));
    ck_assert(str_eq(hl_gguf_arr_str(&a, 3), "n\0ul", 4));
    ck_assert_int_eq(hl_gguf_get_arr(g, "t.arr_str_empty", &a, &err), HL_OK);
    ck_assert(a.elem_type == HL_GGUF_STRING && a.n == 0);
}

START_TEST(test_round_trip_every_value_type) {
    make_tmp_dir();
    char path[128];
    tmp_path(path, sizeof path, "kv.gguf");
    hl_gguf_writer *w = hl_gguf_writer_create();
    set_every_type(w);
    hl_error err = {0};
    ck_assert_int_eq(hl_gguf_writer_write(w, path, &err), HL_OK);
    hl_gguf_writer_free(w);
    hl_gguf *g = hl_gguf_open(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    ck_assert_int_eq(hl_gguf_version(g), 3);
    ck_assert_int_eq(hl_gguf_alignment(g), HL_GGUF_DEFAULT_ALIGNMENT);
    ck_assert_int_eq(hl_gguf_n_kv(g), 23);
    ck_assert_int_eq(hl_gguf_n_tensors(g), 0);
    check_scalars(g);
    check_arrays(g);
    walk_all(g);
    hl_gguf_free(g);
    remove_tmp_dir();
}
END_TEST

typedef struct tensor_spec {
    const char *name;
    int type;
    int n_dims;
    int64_t ne[4];
    bool use_fill;
} tensor_spec;

static const tensor_spec specs[] = {
    {"a.f32", HL_DTYPE_F32, 2, {7, 3}, false},
    {"b.f16", HL_DTYPE_F16, 1, {5}, true},
    {"c.q8_0", HL_DTYPE_Q8_0, 2, {64, 3}, false},
    {"d.q4_1", HL_DTYPE_Q4_1, 3, {32, 2, 2}, true},
    {"e.q4_k", HL_DTYPE_Q4_K, 4, {256, 1, 1, 2}, false},
    {"f.bf16", HL_DTYPE_BF16, 1, {3}, true},
};
#define N_SPECS (int)(sizeof specs / sizeof specs[0])

// Writes the specs with the given alignment (0: leave general.alignment unset), plus
// every value type when with_kvs; bufs[i] gets tensor i's bytes (caller frees).
static void write_tensors(const char *path, uint32_t align, bool with_kvs, uint8_t **bufs,
                          fill_ctx *fills) {
    hl_gguf_writer *w = hl_gguf_writer_create();
    hl_error err = {0};
    if (with_kvs) set_every_type(w);
    if (align) hl_gguf_writer_set_u32(w, "general.alignment", align);
    hl_gguf_writer_set_str(w, "general.architecture", "llama");
    for (int i = 0; i < N_SPECS; i++) {
        const tensor_spec *s = &specs[i];
        size_t n_bytes;
        ck_assert_int_eq(hl_quant_row_bytes(s->type, s->ne[0], &n_bytes, &err), HL_OK);
        for (int d = 1; d < s->n_dims; d++) n_bytes *= (size_t)s->ne[d];
        bufs[i] = malloc(n_bytes);
        for (size_t k = 0; k < n_bytes; k++) bufs[i][k] = pattern(k, i);
        fills[i] = (fill_ctx){.seed = i};
        const void *data = s->use_fill ? NULL : bufs[i];
        int rc = hl_gguf_writer_add_tensor(w, s->name, s->type, s->n_dims, s->ne, data,
                                           fill_pattern, &fills[i], &err);
        ck_assert_msg(rc == HL_OK, "%s", err.msg);
    }
    ck_assert_msg(hl_gguf_writer_write(w, path, &err) == HL_OK, "%s", err.msg);
    hl_gguf_writer_free(w);
}

static void check_tensors(const hl_gguf *g, uint32_t align, uint8_t **bufs, const fill_ctx *fills) {
    ck_assert_int_eq(hl_gguf_alignment(g), align);
    ck_assert_int_eq(hl_gguf_data_offset(g) % align, 0);
    ck_assert_int_eq(hl_gguf_n_tensors(g), N_SPECS);
    for (int i = 0; i < N_SPECS; i++) {
        const tensor_spec *s = &specs[i];
        const hl_gguf_tensor *t = hl_gguf_find_tensor(g, s->name);
        ck_assert_ptr_nonnull(t);
        ck_assert_ptr_eq(t, hl_gguf_tensor_at(g, i));
        ck_assert_str_eq(t->name, s->name);
        ck_assert_int_eq(t->type, s->type);
        ck_assert_int_eq(t->n_dims, s->n_dims);
        for (int d = 0; d < 4; d++) ck_assert_int_eq(t->ne[d], d < s->n_dims ? s->ne[d] : 1);
        ck_assert_int_eq(t->offset % align, 0);
        ck_assert_int_eq(fills[i].n_calls, s->use_fill ? 1 : 0);
        const hl_gguf_tensor *t0 = hl_gguf_tensor_at(g, 0);
        const uint8_t *section = (const uint8_t *)t0->data - t0->offset;
        ck_assert_ptr_eq(t->data, section + t->offset);
        ck_assert_msg(memcmp(t->data, bufs[i], t->n_bytes) == 0, "data of %s (align %u)", s->name,
                      align);
    }
    ck_assert_ptr_null(hl_gguf_find_tensor(g, "missing"));
    ck_assert_ptr_null(hl_gguf_tensor_at(g, N_SPECS));
    ck_assert_ptr_null(hl_gguf_tensor_at(g, -1));
}

START_TEST(test_round_trip_tensors_and_alignments) {
    static const uint32_t aligns[] = {0, 1, 8, 32, 64, 4096};
    make_tmp_dir();
    char path[128];
    tmp_path(path, sizeof path, "t.gguf");
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        uint8_t *bufs[N_SPECS];
        fill_ctx fills[N_SPECS];
        write_tensors(path, aligns[a], false, bufs, fills);
        hl_error err = {0};
        hl_gguf *g = hl_gguf_open(path, &err);
        ck_assert_msg(g != NULL, "align %u: %s", aligns[a], err.msg);
        uint32_t align = aligns[a] ? aligns[a] : HL_GGUF_DEFAULT_ALIGNMENT;
        check_tensors(g, align, bufs, fills);
        // The last tensor is padded too, as llama.cpp and the gguf package do.
        ck_assert_int_eq(hl_gguf_file_bytes(g) % align, 0);
        walk_all(g);
        hl_gguf_free(g);
        for (int i = 0; i < N_SPECS; i++) free(bufs[i]);
    }
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert(!exists(tmp));
    remove_tmp_dir();
}
END_TEST

static uint8_t zeros[1024];

static int add_mem(hl_gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                   hl_error *err) {
    return hl_gguf_writer_add_tensor(w, name, type, n_dims, ne, zeros, NULL, NULL, err);
}

START_TEST(test_writer_rejects_bad_input) {
    hl_gguf_writer *w = hl_gguf_writer_create();
    hl_error err = {0};
    int64_t ne[4] = {32, 2, 1, 1};
    ck_assert_int_eq(add_mem(w, "x", HL_DTYPE_Q8_0, 2, ne, &err), HL_OK);
    ck_assert_int_eq(add_mem(w, "x", HL_DTYPE_F32, 1, ne, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "duplicate"));
    ck_assert_int_eq(add_mem(w, "y", 99, 1, ne, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown type"));
    int64_t odd[4] = {33, 1, 1, 1};
    ck_assert_int_eq(add_mem(w, "y", HL_DTYPE_Q8_0, 1, odd, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "block size"));
    ck_assert_int_eq(add_mem(w, "y", HL_DTYPE_F32, 0, ne, &err), HL_ERR_INVAL);
    ck_assert_int_eq(add_mem(w, "y", HL_DTYPE_F32, 5, ne, &err), HL_ERR_INVAL);
    int64_t zero[4] = {4, 0, 1, 1};
    ck_assert_int_eq(add_mem(w, "y", HL_DTYPE_F32, 2, zero, &err), HL_ERR_INVAL);
    ck_assert_int_eq(add_mem(w, "", HL_DTYPE_F32, 1, ne, &err), HL_ERR_INVAL);
    make_tmp_dir();
    char path[128];
    tmp_path(path, sizeof path, "a.gguf");
    static const uint32_t bad_aligns[] = {0, 3, 48};
    for (int i = 0; i < 3; i++) {
        hl_gguf_writer_set_u32(w, "general.alignment", bad_aligns[i]);
        ck_assert_int_eq(hl_gguf_writer_write(w, path, &err), HL_ERR_INVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "alignment"));
    }
    hl_gguf_writer_set_u64(w, "general.alignment", 32);
    ck_assert_int_eq(hl_gguf_writer_write(w, path, &err), HL_ERR_INVAL);
    ck_assert(!exists(path));
    hl_gguf_writer_set_u32(w, "general.alignment", 16);
    ck_assert_int_eq(hl_gguf_writer_write(w, path, &err), HL_OK);
    ck_assert(exists(path));
    hl_gguf_writer_free(w);
    remove_tmp_dir();
}
END_TEST

// A failing fill aborts the write: the old file under the final name survives untouched
// and no .tmp is left behind. An unwritable directory is HL_ERR_IO.
START_TEST(test_writer_failure_is_atomic) {
    make_tmp_dir();
    char path[128], tmp[160];
    tmp_path(path, sizeof path, "m.gguf");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(path, "wb");
    fputs("old contents", f);
    fclose(f);
    hl_gguf_writer *w = hl_gguf_writer_create();
    hl_error err = {0};
    fill_ctx ok = {.seed = 1}, bad = {.seed = 2, .fail = 1};
    int64_t ne[4] = {64, 1, 1, 1};
    int rc = hl_gguf_writer_add_tensor(w, "ok", HL_DTYPE_F32, 1, ne, NULL, fill_pattern, &ok, &err);
    ck_assert_int_eq(rc, HL_OK);
    rc = hl_gguf_writer_add_tensor(w, "bad", HL_DTYPE_F32, 1, ne, NULL, fill_pattern, &bad, &err);
    ck_assert_int_eq(rc, HL_OK);
    ck_assert_int_eq(hl_gguf_writer_write(w, path, &err), HL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "bad"));
    ck_assert_ptr_nonnull(strstr(err.msg, "went away"));
    ck_assert(!exists(tmp));
    size_t n;
    uint8_t *old = read_all(path, &n);
    ck_assert_str_eq((char *)old, "old contents");
    free(old);
    ck_assert_int_eq(hl_gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err), HL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent-dir/x.gguf.tmp"));
    hl_gguf_writer_free(w);
    remove_tmp_dir();
}
END_TEST

// ---- files from the independent (Python) builder ----

static hl_gguf *open_fixture(const char *name) {
    char path[512];
    fixture_path(path, sizeof path, "gguf-good", name);
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open(path, &err);
    ck_assert_msg(g != NULL, "%s: %s", name, err.msg);
    return g;
}

// Values exactly as tests/fixtures/make_bad_gguf.py all_types() wrote them.
static void check_all_types_kvs(const hl_gguf *g) {
    hl_error err = {0};
    int64_t v;
    static const struct { const char *key; int64_t want; enum hl_gguf_type type; } ints[] = {
        {"test.u8", 200, HL_GGUF_UINT8}, {"test.i8", -100, HL_GGUF_INT8},
        {"test.u16", 60000, HL_GGUF_UINT16}, {"test.i16", -30000, HL_GGUF_INT16},
        {"test.u32", 4000000000ll, HL_GGUF_UINT32}, {"test.i32", -2000000000, HL_GGUF_INT32},
        {"test.i64", -(1ll << 62), HL_GGUF_INT64}, {"general.alignment", 64, HL_GGUF_UINT32},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        ck_assert_int_eq(hl_gguf_get_int(g, ints[i].key, &v, &err), HL_OK);
        ck_assert_msg(v == ints[i].want, "%s: %lld", ints[i].key, (long long)v);
        ck_assert_int_eq(hl_gguf_kv_type(g, hl_gguf_find_kv(g, ints[i].key)), ints[i].type);
    }
    ck_assert_int_eq(hl_gguf_get_int(g, "test.u64", &v, &err), HL_ERR_FORMAT); // 2^63 + 5
    double f;
    ck_assert(hl_gguf_get_float(g, "test.f32", &f, &err) == HL_OK && f == 1.5);
    ck_assert(hl_gguf_get_float(g, "test.f64", &f, &err) == HL_OK && f == -0.125);
    bool b;
    ck_assert(hl_gguf_get_bool(g, "test.bool", &b, &err) == HL_OK && b);
    hl_gguf_str s;
    ck_assert(hl_gguf_get_str(g, "test.str", &s, &err) == HL_OK);
    ck_assert(str_eq(s, "h\xc3\xa9llo w\xc3\xb6rld", 13));
    ck_assert(hl_gguf_get_str(g, "test.empty_str", &s, &err) == HL_OK && s.len == 0);
    hl_gguf_arr a;
    ck_assert(hl_gguf_get_arr(g, "test.arr_i16", &a, &err) == HL_OK);
    ck_assert(a.elem_type == HL_GGUF_INT16);
    ck_assert(a.n == 3 && hl_gguf_arr_int(&a, 0) == -1 && hl_gguf_arr_int(&a, 2) == -3);
    ck_assert(hl_gguf_get_arr(g, "test.arr_f64", &a, &err) == HL_OK);
    ck_assert(hl_gguf_arr_float(&a, 1) == -2.25);
    ck_assert(hl_gguf_get_arr(g, "test.arr_str", &a, &err) == HL_OK && a.n == 3);
    ck_assert(str_eq(hl_gguf_arr_str(&a, 2), "\xc3\xbcn\xc3\xaf", 5));
    ck_assert(hl_gguf_get_arr(g, "test.arr_empty", &a, &err) == HL_OK && a.n == 0);
}

// test.arr_nested = [[1, 2] as u8, ["x", "yz"], [[-7] as i32]]: elements are raw encoded arrays.
static void check_nested_array(const hl_gguf *g) {
    hl_error err = {0};
    hl_gguf_arr a;
    ck_assert_int_eq(hl_gguf_get_arr(g, "test.arr_nested", &a, &err), HL_OK);
    ck_assert(a.elem_type == HL_GGUF_ARRAY && a.n == 3);
    const uint8_t *e0 = a.data + a.str_offs[0];
    const uint8_t *e1 = a.data + a.str_offs[1];
    const uint8_t *e2 = a.data + a.str_offs[2];
    ck_assert(hl_rd_u32(e0) == HL_GGUF_UINT8 && hl_rd_u64(e0 + 4) == 2);
    ck_assert(e0[12] == 1 && e0[13] == 2);
    ck_assert_int_eq(a.str_offs[1], 14);
    ck_assert(hl_rd_u32(e1) == HL_GGUF_STRING && hl_rd_u64(e1 + 4) == 2);
    ck_assert(hl_rd_u64(e1 + 12) == 1 && e1[20] == 'x');
    ck_assert_int_eq(a.str_offs[2], 14 + 12 + 9 + 10);
    ck_assert(hl_rd_u32(e2) == HL_GGUF_ARRAY && hl_rd_u64(e2 + 4) == 1);
    ck_assert(hl_rd_u32(e2 + 12) == HL_GGUF_INT32 && (int32_t)hl_rd_u32(e2 + 24) == -7);
}

START_TEST(test_read_python_built_files) {
    hl_gguf *g = open_fixture("all_types.gguf");
    ck_assert_int_eq(hl_gguf_n_kv(g), 20);
    ck_assert_int_eq(hl_gguf_alignment(g), 64);
    check_all_types_kvs(g);
    check_nested_array(g);
    static const struct { const char *name; int type; int64_t ne[4]; } want[] = {
        {"f16", HL_DTYPE_F16, {4, 3, 1, 1}}, {"q4_0", HL_DTYPE_Q4_0, {64, 1, 1, 1}},
        {"q4_1", HL_DTYPE_Q4_1, {32, 2, 1, 1}}, {"q4_k", HL_DTYPE_Q4_K, {256, 1, 2, 1}},
        {"q6_k", HL_DTYPE_Q6_K, {256, 1, 1, 1}}, {"bf16", HL_DTYPE_BF16, {2, 2, 2, 2}},
    };
    static const size_t want_bytes[] = {24, 36, 40, 288, 210, 32};
    ck_assert_int_eq(hl_gguf_n_tensors(g), 6);
    for (int i = 0; i < 6; i++) {
        const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
        ck_assert_str_eq(t->name, want[i].name);
        ck_assert_int_eq(t->type, want[i].type);
        ck_assert_int_eq(t->n_bytes, want_bytes[i]);
        ck_assert_int_eq(t->offset % 64, 0);
        for (int d = 0; d < 4; d++) ck_assert_int_eq(t->ne[d], want[i].ne[d]);
        const uint8_t *d = t->data;
        for (size_t k = 0; k < t->n_bytes; k++) ck_assert_uint_eq(d[k], pattern(k, i));
    }
    hl_gguf_free(g);

    g = open_fixture("v2.gguf");
    ck_assert_int_eq(hl_gguf_version(g), 2);
    ck_assert_int_eq(hl_gguf_n_tensors(g), 2);
    hl_gguf_str s;
    ck_assert(hl_gguf_get_str(g, "general.architecture", &s, NULL) == HL_OK);
    ck_assert(str_eq(s, "llama", 5));
    hl_gguf_free(g);
    g = open_fixture("no_tensors_no_padding.gguf");
    ck_assert_int_eq(hl_gguf_n_tensors(g), 0);
    ck_assert_int_eq(hl_gguf_data_offset(g), hl_gguf_file_bytes(g));
    hl_gguf_free(g);
    g = open_fixture("unpadded_last_tensor.gguf");
    const hl_gguf_tensor *t = hl_gguf_find_tensor(g, "blk.0.w");
    ck_assert(t && t->type == HL_DTYPE_Q8_0 && t->n_bytes == 68);
    ck_assert_int_eq(hl_gguf_data_offset(g) + t->offset + t->n_bytes, hl_gguf_file_bytes(g));
    hl_gguf_free(g);
}
END_TEST

// Copying every kv and tensor of the Python-built file through the writer reproduces it
// byte for byte (same layout rules: v3, kvs then infos, every tensor padded).
START_TEST(test_copy_reproduces_python_file) {
    char src_path[512];
    fixture_path(src_path, sizeof src_path, "gguf-good", "all_types.gguf");
    hl_gguf *g = open_fixture("all_types.gguf");
    hl_gguf_writer *w = hl_gguf_writer_create();
    for (int64_t i = 0; i < hl_gguf_n_kv(g); i++) hl_gguf_writer_copy_kv(w, g, i);
    hl_error err = {0};
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) {
        const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
        int rc = hl_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL,
                                           NULL, &err);
        ck_assert_int_eq(rc, HL_OK);
    }
    make_tmp_dir();
    char path[128];
    tmp_path(path, sizeof path, "copy.gguf");
    ck_assert_msg(hl_gguf_writer_write(w, path, &err) == HL_OK, "%s", err.msg);
    size_t n_a, n_b;
    uint8_t *a = read_all(src_path, &n_a), *b = read_all(path, &n_b);
    ck_assert_int_eq(n_a, n_b);
    ck_assert(memcmp(a, b, n_a) == 0);
    free(a);
    free(b);
    hl_gguf_writer_free(w);
    hl_gguf_free(g);
    remove_tmp_dir();
}
END_TEST

// ---- accessor and open errors ----

START_TEST(test_accessor_errors) {
    hl_gguf *g = open_fixture("base.gguf");
    hl_error err = {0};
    int64_t v;
    ck_assert_int_eq(hl_gguf_get_int(g, "no.such.key", &v, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "no.such.key"));
    ck_assert_int_eq(hl_gguf_get_int(g, "general.name", &v, &err), HL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "general.name"));
    ck_assert_ptr_nonnull(strstr(err.msg, "string"));
    double f;
    ck_assert_int_eq(hl_gguf_get_float(g, "llama.block_count", &f, &err), HL_ERR_FORMAT);
    bool b;
    ck_assert_int_eq(hl_gguf_get_bool(g, "llama.block_count", &b, &err), HL_ERR_FORMAT);
    hl_gguf_str s;
    ck_assert_int_eq(hl_gguf_get_str(g, "tokenizer.ggml.tokens", &s, &err), HL_ERR_FORMAT);
    hl_gguf_arr a;
    ck_assert_int_eq(hl_gguf_get_arr(g, "general.name", &a, &err), HL_ERR_FORMAT);
    ck_assert_int_eq(hl_gguf_kv_int(g, hl_gguf_n_kv(g), &v, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_gguf_kv_str(g, -1, &s, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_gguf_find_kv(g, "llama.block_count"), 2);
    ck_assert_int_eq(hl_gguf_find_kv(g, "llama"), -1);
    ck_assert_str_eq(hl_gguf_type_name(HL_GGUF_FLOAT64), "float64");
    ck_assert_str_eq(hl_gguf_type_name(HL_GGUF_TYPE_COUNT), "?");
    hl_gguf_free(g);
    hl_gguf_free(NULL);
    hl_gguf_writer_free(NULL);
}
END_TEST

START_TEST(test_open_errors) {
    hl_error err = {0};
    ck_assert_ptr_null(hl_gguf_open("/nonexistent/model.gguf", &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/model.gguf"));
    ck_assert_ptr_null(hl_gguf_open("/tmp", &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    ck_assert_ptr_null(hl_gguf_open_memory(NULL, 0, &err));
    ck_assert_int_eq(err.code, HL_ERR_FORMAT);
    ck_assert_ptr_null(hl_gguf_open_memory("GGUF", 4, NULL)); // a NULL err is allowed
}
END_TEST

// ---- malformed corpus ----

static int status_from_name(const char *name) {
    static const int codes[] = {HL_ERR_INVAL, HL_ERR_IO, HL_ERR_FORMAT, HL_ERR_NOMEM,
                                HL_ERR_UNSUPPORTED};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(hl_status_name(codes[i]), name) == 0) return codes[i];
    }
    ck_abort_msg("unknown status %s in expected.tsv", name);
    return 0;
}

// Opens one bad file from disk (mmap) and from an exact-size heap copy (so ASan sees any
// read past its end); both must fail with the expected code and message.
static void check_bad_file(const char *name, int code, const char *substr) {
    char path[512];
    fixture_path(path, sizeof path, "gguf-bad", name);
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open(path, &err);
    ck_assert_msg(g == NULL, "%s opened", name);
    ck_assert_msg(err.code == code, "%s: %s, expected %s: %s", name, hl_status_name(err.code),
                  hl_status_name(code), err.msg);
    ck_assert_msg(err.msg[0] != '\0', "%s: empty message", name);
    ck_assert_msg(strstr(err.msg, substr) != NULL, "%s: '%s' lacks '%s'", name, err.msg, substr);
    ck_assert_msg(strstr(err.msg, name) != NULL, "%s: message does not name the file", name);
    size_t n;
    uint8_t *bytes = read_all(path, &n);
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, bytes, n);
    hl_error err2 = {0};
    ck_assert_ptr_null(hl_gguf_open_memory(copy, n, &err2));
    ck_assert_int_eq(err2.code, code);
    ck_assert_msg(strstr(err2.msg, substr) != NULL, "%s (memory): '%s' lacks '%s'", name, err2.msg,
                  substr);
    free(copy);
    free(bytes);
}

// Reads expected.tsv into names/codes/substrings; returns the number of entries.
static int read_expected(char names[][96], int *codes, char subs[][96], int max) {
    char path[512], line[512];
    fixture_path(path, sizeof path, "gguf-bad", "expected.tsv");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = '\0';
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        ck_assert_msg(tab2 != NULL, "bad line in expected.tsv: %s", line);
        *tab1 = *tab2 = '\0';
        ck_assert(strlen(line) < 96 && strlen(tab2 + 1) < 96);
        strcpy(names[n], line);
        codes[n] = status_from_name(tab1 + 1);
        strcpy(subs[n], tab2 + 1);
        n++;
    }
    fclose(f);
    return n;
}

START_TEST(test_malformed_corpus) {
    enum { MAX = 256 };
    static char names[MAX][96], subs[MAX][96];
    static int codes[MAX];
    int n = read_expected(names, codes, subs, MAX);
    ck_assert_int_ge(n, 25);
    for (int i = 0; i < n; i++) check_bad_file(names[i], codes[i], subs[i]);
    // Every .gguf in the folder is listed, so none is skipped silently.
    char dir[512];
    fixture_path(dir, sizeof dir, "gguf-bad", "");
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n_files = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf") != 0) continue;
        n_files++;
        bool listed = false;
        for (int i = 0; i < n && !listed; i++) listed = strcmp(names[i], e->d_name) == 0;
        ck_assert_msg(listed, "%s is not in expected.tsv", e->d_name);
    }
    closedir(d);
    ck_assert_int_eq(n_files, n);
}
END_TEST

// ---- truncation and mutation ----

// A good file with every kind of field, as bytes.
static uint8_t *good_file_bytes(size_t *n, size_t *data_end) {
    make_tmp_dir();
    char path[128];
    tmp_path(path, sizeof path, "good.gguf");
    uint8_t *bufs[N_SPECS];
    fill_ctx fills[N_SPECS];
    write_tensors(path, 16, true, bufs, fills);
    for (int i = 0; i < N_SPECS; i++) free(bufs[i]);
    hl_error err = {0};
    uint8_t *bytes = read_all(path, n);
    hl_gguf *g = hl_gguf_open_memory(bytes, *n, &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(hl_gguf_n_kv(g), 25);
    *data_end = 0;
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) {
        const hl_gguf_tensor *x = hl_gguf_tensor_at(g, i);
        size_t end = hl_gguf_data_offset(g) + x->offset + x->n_bytes;
        if (end > *data_end) *data_end = end;
    }
    hl_gguf_free(g);
    remove_tmp_dir();
    return bytes;
}

// Every prefix shorter than the end of the last tensor is rejected with HL_ERR_FORMAT;
// each prefix lives in its own exact-size allocation so ASan catches any over-read.
START_TEST(test_truncation_at_every_offset) {
    size_t n, data_end;
    uint8_t *good = good_file_bytes(&n, &data_end);
    ck_assert_int_gt(data_end, 1000);
    for (size_t cut = 0; cut < data_end; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, good, cut);
        hl_error err = {0};
        hl_gguf *g = hl_gguf_open_memory(p, cut, &err);
        ck_assert_msg(g == NULL, "prefix of %zu bytes opened", cut);
        ck_assert_msg(err.code == HL_ERR_FORMAT, "cut %zu: %s %s", cut, hl_status_name(err.code),
                      err.msg);
        ck_assert(err.msg[0] != '\0');
        free(p);
    }
    uint8_t *p = malloc(data_end);
    memcpy(p, good, data_end);
    hl_gguf *g = hl_gguf_open_memory(p, data_end, NULL);
    ck_assert_ptr_nonnull(g);
    walk_all(g);
    hl_gguf_free(g);
    free(p);
    free(good);
}
END_TEST

// Random 1..4-byte mutations of a good file: each either opens (and every accessor stays in
// bounds) or fails with a message and a FORMAT/UNSUPPORTED code. Deterministic seed.
START_TEST(test_random_mutations) {
    size_t n, data_end;
    uint8_t *good = good_file_bytes(&n, &data_end);
    hl_rng rng = {20240607};
    int n_opened = 0;
    for (int iter = 0; iter < 4000; iter++) {
        uint8_t *p = malloc(n);
        memcpy(p, good, n);
        int n_flips = 1 + (int)(hl_rng_next(&rng) % 4);
        for (int k = 0; k < n_flips; k++) {
            size_t at = hl_rng_next(&rng) % n;
            p[at] = (hl_rng_next(&rng) & 1) ? (uint8_t)hl_rng_next(&rng) : (uint8_t)(p[at] ^ 0x80);
        }
        hl_error err = {0};
        hl_gguf *g = hl_gguf_open_memory(p, n, &err);
        if (g) {
            n_opened++;
            walk_all(g);
        } else {
            ck_assert(err.code == HL_ERR_FORMAT || err.code == HL_ERR_UNSUPPORTED);
            ck_assert(err.msg[0] != '\0');
        }
        hl_gguf_free(g);
        free(p);
    }
    // Most flips land in tensor data, which the reader does not interpret.
    ck_assert_int_gt(n_opened, 100);
    ck_assert_int_lt(n_opened, 4000);
    free(good);
}
END_TEST

// ---- the real default model ----

static void check_model_kvs(const hl_gguf *g) {
    hl_error err = {0};
    int64_t v;
    ck_assert(hl_gguf_get_int(g, "llama.block_count", &v, &err) == HL_OK && v == 30);
    ck_assert(hl_gguf_get_int(g, "llama.embedding_length", &v, &err) == HL_OK && v == 576);
    ck_assert(hl_gguf_get_int(g, "llama.attention.head_count_kv", &v, &err) == HL_OK && v == 3);
    ck_assert(hl_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v, &err) == HL_OK && v == 2);
    double f;
    ck_assert(hl_gguf_get_float(g, "llama.rope.freq_base", &f, &err) == HL_OK && f == 100000.0);
    bool b = true;
    ck_assert(hl_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err) == HL_OK && !b);
    hl_gguf_str s;
    ck_assert(hl_gguf_get_str(g, "general.architecture", &s, &err) == HL_OK);
    ck_assert(str_eq(s, "llama", 5));
    hl_gguf_arr a;
    ck_assert(hl_gguf_get_arr(g, "tokenizer.ggml.tokens", &a, &err) == HL_OK);
    ck_assert(a.elem_type == HL_GGUF_STRING && a.n == 49152);
    ck_assert(str_eq(hl_gguf_arr_str(&a, 0), "<|endoftext|>", 13));
    ck_assert(str_eq(hl_gguf_arr_str(&a, 1), "<|im_start|>", 12));
    ck_assert(str_eq(hl_gguf_arr_str(&a, 49151), "ectable", 7));
    ck_assert(hl_gguf_get_arr(g, "tokenizer.ggml.merges", &a, &err) == HL_OK && a.n == 48900);
    ck_assert(str_eq(hl_gguf_arr_str(&a, 0), "\xc4\xa0 t", 4));
    ck_assert(str_eq(hl_gguf_arr_str(&a, 48899), "ect able", 8));
    ck_assert(hl_gguf_get_arr(g, "tokenizer.ggml.token_type", &a, &err) == HL_OK);
    ck_assert(a.elem_type == HL_GGUF_INT32 && a.n == 49152);
    ck_assert(hl_gguf_arr_int(&a, 0) == 3 && hl_gguf_arr_int(&a, 17) == 1);
}

// Expected numbers come from the gguf Python package reading the same file.
START_TEST(test_real_model) {
    if (access(MODEL_PATH, R_OK) != 0) {
        printf("SKIP test_real_model: %s not present (sh tools/fetch_model.sh models)\n",
               MODEL_PATH);
        return;
    }
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open(MODEL_PATH, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    ck_assert_int_eq(hl_gguf_version(g), 3);
    ck_assert_int_eq(hl_gguf_n_kv(g), 33);      // gguf.GGUFReader adds 3 GGUF.* pseudo-fields
    ck_assert_int_eq(hl_gguf_n_tensors(g), 272);
    ck_assert_int_eq(hl_gguf_alignment(g), 32);
    ck_assert_int_eq(hl_gguf_data_offset(g), 1785664);
    check_model_kvs(g);
    const hl_gguf_tensor *t = hl_gguf_find_tensor(g, "token_embd.weight");
    ck_assert(t && t->type == HL_DTYPE_Q8_0 && t->n_dims == 2 && t->offset == 0);
    ck_assert(t->ne[0] == 576 && t->ne[1] == 49152 && t->n_bytes == 30081024);
    t = hl_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    ck_assert(t && t->type == HL_DTYPE_Q4_1 && t->ne[0] == 1536 && t->ne[1] == 576);
    ck_assert_int_eq(t->n_bytes, 552960);
    ck_assert_int_eq(t->offset, 31868992 - 1785664);
    t = hl_gguf_find_tensor(g, "output_norm.weight");
    ck_assert(t && t->type == HL_DTYPE_F32 && t->n_bytes == 2304);
    const uint8_t *norm = t->data;
    ck_assert(hl_rd_f32(norm) == 1.7578125f && hl_rd_f32(norm + 12) == 1.6015625f);
    int n_q41 = 0, n_f32 = 0;
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) {
        int type = hl_gguf_tensor_at(g, i)->type;
        n_q41 += type == HL_DTYPE_Q4_1;
        n_f32 += type == HL_DTYPE_F32;
    }
    ck_assert(n_q41 == 210 && n_f32 == 61);
    walk_all(g);
    hl_gguf_free(g);
}
END_TEST

Suite *gguf_suite(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip_every_value_type);
    tcase_add_test(tc, test_round_trip_tensors_and_alignments);
    tcase_add_test(tc, test_writer_rejects_bad_input);
    tcase_add_test(tc, test_writer_failure_is_atomic);
    tcase_add_test(tc, test_read_python_built_files);
    tcase_add_test(tc, test_copy_reproduces_python_file);
    tcase_add_test(tc, test_accessor_errors);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_malformed_corpus);
    tcase_add_test(tc, test_truncation_at_every_offset);
    tcase_add_test(tc, test_random_mutations);
    tcase_add_test(tc, test_real_model);
    suite_add_tcase(s, tc);
    return s;
}
