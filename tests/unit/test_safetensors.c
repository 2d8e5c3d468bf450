// Unit tests for engine/safetensors: real files written here (one file and sharded, every
// float dtype) read back value by value, plus the malformed corpus in
// tests/fixtures/safetensors-bad (made by tests/fixtures/make_bad_safetensors.py) and
// truncation / mutation sweeps that must fail cleanly (run under ASan with SANITIZE=1).
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/quant.h"
#include "engine/safetensors.h"

#define BAD_DIR "tests/fixtures/safetensors-bad"

// ---- a tiny writer: the format is simple enough to spell out byte by byte ----

typedef struct builder {
    char header[4096];
    size_t n_header;
    uint8_t data[8192];
    size_t n_data;
} builder;

static void b_init(builder *b) {
    memset(b, 0, sizeof(*b));
    b->n_header = (size_t)snprintf(b->header, sizeof(b->header), "{");
}

// Adds a tensor with safetensors shape `shape` (row-major, last dim contiguous).
static void b_add(builder *b, const char *name, const char *dtype, size_t elem_bytes,
                  int n_dims, const int64_t *shape, const void *bytes) {
    size_t n = elem_bytes;
    char dims[256] = "";
    size_t nd = 0;
    for (int i = 0; i < n_dims; i++) {
        n *= (size_t)shape[i];
        nd += (size_t)snprintf(dims + nd, sizeof(dims) - nd, "%s%lld", i ? ", " : "",
                               (long long)shape[i]);
    }
    ck_assert_uint_le(b->n_data + n, sizeof(b->data));
    b->n_header += (size_t)snprintf(
        b->header + b->n_header, sizeof(b->header) - b->n_header,
        "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [%s], \"data_offsets\": [%zu, %zu]}",
        b->n_header > 1 ? ", " : "", name, dtype, dims, b->n_data, b->n_data + n);
    if (n) memcpy(b->data + b->n_data, bytes, n);
    b->n_data += n;
}

// The file bytes (caller frees): length, header padded with spaces to 8 bytes, data.
static uint8_t *b_finish(builder *b, const char *meta, size_t *n_bytes) {
    if (meta) {
        b->n_header += (size_t)snprintf(b->header + b->n_header, sizeof(b->header) - b->n_header,
                                        "%s\"__metadata__\": %s", b->n_header > 1 ? ", " : "",
                                        meta);
    }
    b->n_header += (size_t)snprintf(b->header + b->n_header, sizeof(b->header) - b->n_header, "}");
    while (b->n_header % 8) b->header[b->n_header++] = ' ';
    *n_bytes = 8 + b->n_header + b->n_data;
    uint8_t *out = malloc(*n_bytes);
    hl_wr_u64(out, b->n_header);
    memcpy(out + 8, b->header, b->n_header);
    memcpy(out + 8 + b->n_header, b->data, b->n_data);
    return out;
}

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void make_tmpdir(char *dir) {
    strcpy(dir, "/tmp/hl_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_in(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    unlink(p);
}

// ---- the reference model: three float dtypes plus edge shapes ----

typedef struct ref_values {
    float a[3 * 5];      // F32 [3, 5]
    uint16_t b[2 * 3 * 4]; // F16 [2, 3, 4]
    uint16_t c[7];       // BF16 [7]
    float b_src[24];
    float c_src[7];
} ref_values;

static void ref_fill(ref_values *v, uint64_t seed) {
    hl_rng rng = {seed};
    for (int i = 0; i < 15; i++) v->a[i] = hl_rng_uniform(&rng) * 8.0f - 4.0f;
    for (int i = 0; i < 24; i++) {
        v->b_src[i] = hl_rng_uniform(&rng) * 2.0f - 1.0f;
        v->b[i] = hl_f32_to_f16(v->b_src[i]);
    }
    for (int i = 0; i < 7; i++) {
        v->c_src[i] = hl_rng_uniform(&rng) * 100.0f - 50.0f;
        v->c[i] = hl_f32_to_bf16(v->c_src[i]);
    }
}

static void add_ref_tensors(builder *b, const ref_values *v) {
    int64_t sa[] = {3, 5}, sb[] = {2, 3, 4}, sc[] = {7};
    b_add(b, "a", "F32", 4, 2, sa, v->a);
    b_add(b, "b", "F16", 2, 3, sb, v->b);
    b_add(b, "c", "BF16", 2, 1, sc, v->c);
}

// Every value of a, b, c reads back; shapes come out in GGUF order.
static void check_ref_tensors(const hl_safetensors *st, const ref_values *v) {
    const hl_safetensors_tensor *a = hl_safetensors_find_tensor(st, "a");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->dtype, HL_DTYPE_F32);
    ck_assert_int_eq(a->n_dims, 2);
    ck_assert_int_eq(a->ne[0], 5);
    ck_assert_int_eq(a->ne[1], 3);
    ck_assert_int_eq(a->ne[2], 1);
    ck_assert_uint_eq(a->n_bytes, 60);
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 5; c++) {
            float got = hl_rd_f32((const uint8_t *)a->data + 4 * (r * a->ne[0] + c));
            ck_assert_float_eq(got, v->a[r * 5 + c]);
        }
    }
    const hl_safetensors_tensor *b = hl_safetensors_find_tensor(st, "b");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->dtype, HL_DTYPE_F16);
    ck_assert_int_eq(b->n_dims, 3);
    ck_assert(b->ne[0] == 4 && b->ne[1] == 3 && b->ne[2] == 2);
    ck_assert_uint_eq(b->n_bytes, 48);
    for (int i = 0; i < 24; i++) {
        float got = hl_f16_to_f32(hl_rd_u16((const uint8_t *)b->data + 2 * i));
        ck_assert_float_eq_tol(got, v->b_src[i], 1e-3f);
    }
    const hl_safetensors_tensor *c = hl_safetensors_find_tensor(st, "c");
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->dtype, HL_DTYPE_BF16);
    ck_assert(c->n_dims == 1 && c->ne[0] == 7 && c->ne[1] == 1);
    for (int i = 0; i < 7; i++) {
        float got = hl_bf16_to_f32(hl_rd_u16((const uint8_t *)c->data + 2 * i));
        ck_assert_float_eq_tol(got, v->c_src[i], fabsf(v->c_src[i]) / 128.0f);
    }
}

START_TEST(test_single_file) {
    ref_values v;
    ref_fill(&v, 42);
    builder b;
    b_init(&b);
    add_ref_tensors(&b, &v);
    int64_t s_pos[] = {4};
    int64_t pos[4] = {0, 1, -2, INT64_MAX};
    b_add(&b, "pos", "I64", 8, 1, s_pos, pos);
    size_t n = 0;
    uint8_t *bytes = b_finish(&b, "{\"format\": \"pt\"}", &n);
    char dir[64], path[128];
    make_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    write_file(path, bytes, n);

    hl_error err = {0};
    const char *paths[] = {path, dir};
    for (int k = 0; k < 2; k++) {
        hl_safetensors *st = hl_safetensors_open(paths[k], &err);
        ck_assert_msg(st != NULL, "%s: %s", paths[k], err.msg);
        ck_assert_int_eq(hl_safetensors_n_tensors(st), 4);
        ck_assert_int_eq(hl_safetensors_n_shards(st), 1);
        check_ref_tensors(st, &v);
        ck_assert_str_eq(hl_safetensors_metadata(st, "format"), "pt");
        ck_assert_ptr_null(hl_safetensors_metadata(st, "nope"));
        ck_assert_ptr_null(hl_safetensors_find_tensor(st, "d"));
        const hl_safetensors_tensor *p = hl_safetensors_find_tensor(st, "pos");
        ck_assert_int_eq(p->dtype, HL_DTYPE_I64);
        ck_assert_int_eq((int64_t)hl_rd_u64((const uint8_t *)p->data + 16), -2);
        // tensor_at walks in name order
        ck_assert_str_eq(hl_safetensors_tensor_at(st, 0)->name, "a");
        ck_assert_str_eq(hl_safetensors_tensor_at(st, 3)->name, "pos");
        hl_safetensors_free(st);
    }
    hl_safetensors *st = hl_safetensors_open_memory(bytes, n, &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    check_ref_tensors(st, &v);
    ck_assert_ptr_eq(hl_safetensors_find_tensor(st, "a")->data, bytes + 8 + b.n_header);
    hl_safetensors_free(st);
    hl_safetensors_free(NULL);
    free(bytes);
    unlink(path);
    rmdir(dir);
}
END_TEST

// Two shards + index: the folder, the index path and a relative index path all open.
START_TEST(test_sharded) {
    ref_values v;
    ref_fill(&v, 7);
    int64_t sa[] = {3, 5}, sb[] = {2, 3, 4}, sc[] = {7};
    builder b1, b2;
    b_init(&b1);
    b_add(&b1, "a", "F32", 4, 2, sa, v.a);
    b_init(&b2);
    b_add(&b2, "b", "F16", 2, 3, sb, v.b);
    b_add(&b2, "c", "BF16", 2, 1, sc, v.c);
    size_t n1, n2;
    uint8_t *f1 = b_finish(&b1, NULL, &n1), *f2 = b_finish(&b2, "{\"k\": \"v\"}", &n2);
    char dir[64], p[256];
    make_tmpdir(dir);
    snprintf(p, sizeof(p), "%s/model-00001-of-00002.safetensors", dir);
    write_file(p, f1, n1);
    snprintf(p, sizeof(p), "%s/model-00002-of-00002.safetensors", dir);
    write_file(p, f2, n2);
    const char *index = "{\"metadata\": {\"total_size\": 122}, \"weight_map\": {"
                        "\"a\": \"model-00001-of-00002.safetensors\","
                        "\"b\": \"model-00002-of-00002.safetensors\","
                        "\"c\": \"model-00002-of-00002.safetensors\"}}";
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    write_file(p, index, strlen(index));

    hl_error err = {0};
    const char *paths[] = {dir, p};
    for (int k = 0; k < 2; k++) {
        hl_safetensors *st = hl_safetensors_open(paths[k], &err);
        ck_assert_msg(st != NULL, "%s: %s", paths[k], err.msg);
        ck_assert_int_eq(hl_safetensors_n_tensors(st), 3);
        ck_assert_int_eq(hl_safetensors_n_shards(st), 2);
        check_ref_tensors(st, &v);
        ck_assert_int_eq(hl_safetensors_find_tensor(st, "a")->shard, 0);
        ck_assert_int_eq(hl_safetensors_find_tensor(st, "c")->shard, 1);
        ck_assert_str_eq(hl_safetensors_metadata(st, "k"), "v");
        hl_safetensors_free(st);
    }
    // A bare file name (no folder part) resolves shards against the current directory.
    char cwd[512];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(dir), 0);
    hl_safetensors *st = hl_safetensors_open("model.safetensors.index.json", &err);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_msg(st != NULL, "%s", err.msg);
    hl_safetensors_free(st);

    // One shard gone: a clean I/O error that names the file.
    rm_in(dir, "model-00002-of-00002.safetensors");
    ck_assert_ptr_null(hl_safetensors_open(dir, &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "model-00002-of-00002.safetensors"));
    rm_in(dir, "model-00001-of-00002.safetensors");
    rm_in(dir, "model.safetensors.index.json");
    rmdir(dir);
    free(f1);
    free(f2);
}
END_TEST

// Scalars, empty tensors, an empty header and padding are all valid.
START_TEST(test_edge_shapes) {
    builder b;
    b_init(&b);
    float one = 1.5f;
    int64_t s_zero[] = {0, 3};
    b_add(&b, "scalar", "F32", 4, 0, NULL, &one);
    b_add(&b, "empty", "BF16", 2, 2, s_zero, NULL);
    size_t n;
    uint8_t *bytes = b_finish(&b, NULL, &n);
    hl_error err = {0};
    hl_safetensors *st = hl_safetensors_open_memory(bytes, n, &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    const hl_safetensors_tensor *s = hl_safetensors_find_tensor(st, "scalar");
    ck_assert_int_eq(s->n_dims, 0);
    ck_assert_int_eq(s->ne[0], 1);
    ck_assert_float_eq(hl_rd_f32(s->data), 1.5f);
    const hl_safetensors_tensor *e = hl_safetensors_find_tensor(st, "empty");
    ck_assert(e->n_dims == 2 && e->ne[0] == 3 && e->ne[1] == 0 && e->n_bytes == 0);
    hl_safetensors_free(st);
    free(bytes);

    const uint8_t empty[] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    st = hl_safetensors_open_memory(empty, sizeof(empty), &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    ck_assert_int_eq(hl_safetensors_n_tensors(st), 0);
    hl_safetensors_free(st);
}
END_TEST

// Dtypes halyard cannot use fail with HL_ERR_UNSUPPORTED and the dtype in the message.
START_TEST(test_unsupported_dtype_named) {
    const char *names[] = {"U8", "BOOL", "F8_E5M2", "U64", "Q4_K"};
    for (int i = 0; i < 5; i++) {
        builder b;
        b_init(&b);
        uint8_t zeros[8] = {0};
        int64_t shape[] = {1};
        b_add(&b, "t", names[i], 1, 1, shape, zeros);
        size_t n;
        uint8_t *bytes = b_finish(&b, NULL, &n);
        hl_error err = {0};
        ck_assert_ptr_null(hl_safetensors_open_memory(bytes, n, &err));
        ck_assert_int_eq(err.code, HL_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(err.msg, names[i]) != NULL, "%s", err.msg);
        free(bytes);
    }
    ck_assert_uint_eq(hl_safetensors_dtype_bytes(HL_DTYPE_BF16), 2);
    ck_assert_uint_eq(hl_safetensors_dtype_bytes(HL_DTYPE_Q4_0), 0);
    ck_assert_str_eq(hl_safetensors_dtype_name(HL_DTYPE_F16), "F16");
}
END_TEST

static bool in_list(char list[][128], int n, const char *name) {
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i], name) == 0) return true;
    }
    return false;
}

// Every case of the malformed corpus fails with its expected status and a message.
START_TEST(test_bad_corpus) {
    FILE *f = fopen(BAD_DIR "/MANIFEST", "r");
    ck_assert_msg(f != NULL, "run from the repo root; " BAD_DIR "/MANIFEST missing");
    static char names[256][128];
    int n_cases = 0;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char name[128], code[64];
        if (line[0] == '#' || sscanf(line, "%127s %63s", name, code) != 2) continue;
        char path[256];
        snprintf(path, sizeof(path), BAD_DIR "/%s", name);
        hl_error err = {0};
        hl_safetensors *st = hl_safetensors_open(path, &err);
        ck_assert_msg(st == NULL, "%s was accepted", name);
        ck_assert_msg(strcmp(hl_status_name(err.code), code) == 0, "%s: got %s (%s), want %s",
                      name, hl_status_name(err.code), err.msg, code);
        ck_assert_msg(err.msg[0] != '\0', "%s: empty message", name);
        ck_assert_int_lt(n_cases, 256);
        strcpy(names[n_cases++], name);
    }
    fclose(f);
    ck_assert_int_ge(n_cases, 15);
    // Every file in the folder is a listed case (so none is silently skipped).
    DIR *d = opendir(BAD_DIR);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "MANIFEST") == 0) continue;
        ck_assert_msg(in_list(names, n_cases, e->d_name), "%s not in MANIFEST", e->d_name);
    }
    closedir(d);
}
END_TEST

static uint8_t *ref_file(size_t *n) {
    ref_values v;
    ref_fill(&v, 3);
    builder b;
    b_init(&b);
    add_ref_tensors(&b, &v);
    return b_finish(&b, "{\"a\": \"b\"}", n);
}

// Every proper prefix of a valid file is rejected (a copy of exactly that size, so ASan
// sees any read past the end).
START_TEST(test_truncation_sweep) {
    size_t n;
    uint8_t *full = ref_file(&n);
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, full, len);
        hl_error err = {0};
        hl_safetensors *st = hl_safetensors_open_memory(cut, len, &err);
        ck_assert_msg(st == NULL, "prefix of %zu/%zu bytes accepted", len, n);
        ck_assert_int_eq(err.code, HL_ERR_FORMAT);
        free(cut);
    }
    free(full);
}
END_TEST

// Random byte changes in the header never crash, and whatever is accepted stays in bounds.
START_TEST(test_mutation_sweep) {
    size_t n;
    uint8_t *orig = ref_file(&n);
    size_t n_header = (size_t)hl_rd_u64(orig);
    uint8_t *buf = malloc(n);
    hl_rng rng = {99};
    int n_ok = 0;
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(buf, orig, n);
        int n_flips = 1 + (int)(hl_rng_next(&rng) % 3);
        for (int k = 0; k < n_flips; k++) {
            size_t at = hl_rng_next(&rng) % (8 + n_header);
            const char pool[] = "0123456789{}[],:\" -.eE";
            uint64_t r = hl_rng_next(&rng);
            buf[at] = (r & 1) ? (uint8_t)pool[(r >> 1) % (sizeof(pool) - 1)] : (uint8_t)(r >> 8);
        }
        hl_error err = {0};
        hl_safetensors *st = hl_safetensors_open_memory(buf, n, &err);
        if (!st) {
            ck_assert_int_lt(err.code, 0);
            continue;
        }
        n_ok++;
        for (int64_t i = 0; i < hl_safetensors_n_tensors(st); i++) {
            const hl_safetensors_tensor *t = hl_safetensors_tensor_at(st, i);
            const uint8_t *p = t->data;
            ck_assert(p >= buf + 8 + n_header && p + t->n_bytes <= buf + n);
        }
        hl_safetensors_free(st);
    }
    ck_assert_int_lt(n_ok, 4000); // the mutations did reach the validator
    free(buf);
    free(orig);
}
END_TEST

START_TEST(test_missing_paths) {
    hl_error err = {0};
    ck_assert_ptr_null(hl_safetensors_open("/nonexistent/model.safetensors", &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    char dir[64];
    make_tmpdir(dir);
    ck_assert_ptr_null(hl_safetensors_open(dir, &err));
    ck_assert_int_eq(err.code, HL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "model.safetensors"));
    rmdir(dir);
}
END_TEST

Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_single_file);
    tcase_add_test(tc, test_sharded);
    tcase_add_test(tc, test_edge_shapes);
    tcase_add_test(tc, test_unsupported_dtype_named);
    tcase_add_test(tc, test_bad_corpus);
    tcase_add_test(tc, test_truncation_sweep);
    tcase_add_test(tc, test_mutation_sweep);
    tcase_add_test(tc, test_missing_paths);
    suite_add_tcase(s, tc);
    return s;
}
