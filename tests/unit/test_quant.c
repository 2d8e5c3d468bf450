// Unit tests for engine/quant: byte-for-byte agreement with ggml's own reference code
// (tests/fixtures/quant, made by tests/fixtures/make_quant_fixture.py through libggml),
// round-trip error bounds on fresh random data, error paths and the type table.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/hl.h"
#include "engine/quant.h"

// Every id halyard knows, in ggml's enum order.
static const int all_types[] = {
    HL_DTYPE_F32,  HL_DTYPE_F16,  HL_DTYPE_Q4_0, HL_DTYPE_Q4_1, HL_DTYPE_Q5_0,
    HL_DTYPE_Q5_1, HL_DTYPE_Q8_0, HL_DTYPE_Q8_1, HL_DTYPE_Q2_K, HL_DTYPE_Q3_K,
    HL_DTYPE_Q4_K, HL_DTYPE_Q5_K, HL_DTYPE_Q6_K, HL_DTYPE_Q8_K, HL_DTYPE_I8,
    HL_DTYPE_I16,  HL_DTYPE_I32,  HL_DTYPE_I64,  HL_DTYPE_F64,  HL_DTYPE_BF16,
};
#define N_ALL_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

// ---- fixture helpers ----

static void fixture_path(char *out, size_t cap, const char *name) {
    const char *root = getenv("HALYARD_ROOT");
    snprintf(out, cap, "%s%stests/fixtures/quant/%s", root ? root : "", root ? "/" : "", name);
}

static uint8_t *read_fixture(const char *name, size_t *n_bytes) {
    char path[512];
    fixture_path(path, sizeof path, name);
    hl_error err = {0};
    uint8_t *data = (uint8_t *)hl_read_file(path, 1 << 24, n_bytes, &err);
    ck_assert_msg(data != NULL, "fixture %s: %s", name, err.msg);
    return data;
}

static float *read_f32(const char *name, int64_t *n) {
    size_t n_bytes;
    uint8_t *raw = read_fixture(name, &n_bytes);
    ck_assert_uint_eq(n_bytes % 4, 0);
    *n = (int64_t)(n_bytes / 4);
    float *x = hl_xmalloc(n_bytes + 4);
    for (int64_t i = 0; i < *n; i++) x[i] = hl_rd_f32(raw + 4 * i);
    free(raw);
    return x;
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) return i;
    }
    return n;
}

// halyard's quantization of in_<dist>.f32 equals ggml's q_<dist>.<type>.
static void check_quantize_case(const char *dist, const char *tname) {
    char name[128];
    int type = hl_quant_from_name(tname);
    ck_assert_msg(type >= 0, "fixture names unknown type %s", tname);
    snprintf(name, sizeof name, "in_%s.f32", dist);
    int64_t n;
    float *x = read_f32(name, &n);
    snprintf(name, sizeof name, "q_%s.%s", dist, tname);
    size_t want_bytes;
    uint8_t *want = read_fixture(name, &want_bytes);
    size_t got_bytes;
    hl_error err = {0};
    ck_assert_int_eq(hl_quant_row_bytes(type, n, &got_bytes, &err), HL_OK);
    ck_assert_uint_eq(got_bytes, want_bytes);
    uint8_t *got = hl_xmalloc(got_bytes);
    ck_assert_int_eq(hl_quant_quantize(type, x, got, n, &err), HL_OK);
    size_t at = first_diff(got, want, got_bytes);
    ck_assert_msg(at == got_bytes, "quantize %s %s: first differing byte %zu (block %zu): "
                  "halyard 0x%02x, ggml 0x%02x", tname, dist, at,
                  at / hl_quant_info(type)->block_bytes, got[at], want[at]);
    free(x);
    free(want);
    free(got);
}

// halyard's dequantization of dq_<type>.bin equals ggml's dq_<type>.f32 bit for bit.
static void check_dequantize_case(const char *tname) {
    char name[128];
    int type = hl_quant_from_name(tname);
    ck_assert_msg(type >= 0, "fixture names unknown type %s", tname);
    snprintf(name, sizeof name, "dq_%s.bin", tname);
    size_t n_bytes;
    uint8_t *blocks = read_fixture(name, &n_bytes);
    snprintf(name, sizeof name, "dq_%s.f32", tname);
    int64_t n;
    float *want = read_f32(name, &n);
    size_t need;
    ck_assert_int_eq(hl_quant_row_bytes(type, n, &need, NULL), HL_OK);
    ck_assert_uint_eq(need, n_bytes);
    float *got = hl_xmalloc((size_t)n * sizeof(float));
    ck_assert_int_eq(hl_quant_dequantize(type, blocks, got, n, NULL), HL_OK);
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        ck_assert_msg(a == b, "dequantize %s: element %lld is 0x%08x (%g), ggml 0x%08x (%g)",
                      tname, (long long)i, a, (double)got[i], b, (double)want[i]);
    }
    free(blocks);
    free(want);
    free(got);
}

START_TEST(test_fixture_matches_ggml) {
    size_t n_bytes;
    char *manifest = (char *)read_fixture("MANIFEST", &n_bytes);
    int n_quant[HL_DTYPE_COUNT] = {0}, n_dequant[HL_DTYPE_COUNT] = {0};
    char *save = NULL;
    for (char *line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char op[16], a[32], b[32];
        if (line[0] == '#') continue;
        int n_fields = sscanf(line, "%15s %31s %31s", op, a, b);
        if (n_fields == 3 && strcmp(op, "quantize") == 0) {
            check_quantize_case(a, b);
            n_quant[hl_quant_from_name(b)]++;
        } else if (n_fields == 2 && strcmp(op, "dequantize") == 0) {
            check_dequantize_case(a);
            n_dequant[hl_quant_from_name(a)]++;
        } else {
            ck_abort_msg("bad MANIFEST line '%s'", line);
        }
    }
    free(manifest);
    // The fixture must cover every quantizer but f32 (a copy), Q4_K and Q6_K on every input.
    for (int i = 0; i < N_ALL_TYPES; i++) {
        int t = all_types[i];
        if (t == HL_DTYPE_F32 || !hl_quant_info(t)->can_quantize) continue;
        ck_assert_msg(n_quant[t] > 0, "fixture has no quantize case for %s", hl_quant_name(t));
    }
    ck_assert_int_ge(n_quant[HL_DTYPE_Q4_K], 7);
    ck_assert_int_ge(n_quant[HL_DTYPE_Q6_K], 7);
    ck_assert_int_gt(n_dequant[HL_DTYPE_Q4_K], 0);
    ck_assert_int_gt(n_dequant[HL_DTYPE_F16], 0);
}
END_TEST

// ---- round trips on fresh random data ----

static uint64_t fresh_seed(void) {
    return (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid() * 7919u ^ (uint64_t)clock();
}

static float rnd_normal(hl_rng *r) {
    float u1 = hl_rng_uniform(r) + 0.5f / 16777216.0f;
    float u2 = hl_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

enum dist { DIST_NORMAL, DIST_UNIFORM, DIST_OUTLIERS, DIST_POSITIVE, DIST_TINY, N_DIST };
static const char *dist_names[N_DIST] = {"normal", "uniform", "outliers", "positive", "tiny"};

static void fill(hl_rng *r, enum dist d, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        switch (d) {
        case DIST_NORMAL: x[i] = rnd_normal(r); break;
        case DIST_UNIFORM: x[i] = 2.0f * hl_rng_uniform(r) - 1.0f; break;
        case DIST_OUTLIERS:
            x[i] = rnd_normal(r) * (hl_rng_uniform(r) < 0.01f ? 40.0f : 1.0f);
            break;
        case DIST_POSITIVE: x[i] = 0.5f + hl_rng_uniform(r); break;
        default: x[i] = rnd_normal(r) * 1e-4f; break;
        }
    }
}

// Half a step of an asymmetric type with `levels` steps over `range`, plus what the f16
// rounding of the step (d16) and of the min (min_err) can add over all levels.
static float asym_bound(float range, int levels, float d16, float min_err) {
    return range / levels / 2 + levels * fabsf(range / levels - d16) + fabsf(min_err);
}

// Worst-case error of one legacy block given its stored scale d16 (and min m16 for the
// _1 types), derived from the quantizer: the exact scale d, the rounding step it allows,
// and what the f16 rounding of d and m adds over all levels.
static float legacy_bound(int type, const float *x, float d16, float m16) {
    float amax = 0, max = 0, min = x[0], hi = x[0];
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
        min = fminf(min, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    float eps = 1e-6f * (amax + fabsf(min)) + 1e-30f;
    switch (type) {
    case HL_DTYPE_Q8_0:
    case HL_DTYPE_Q8_1: return amax / 127 / 2 + 127 * fabsf(amax / 127 - d16) + eps;
    case HL_DTYPE_Q4_0: return fabsf(max / 8) + 8 * fabsf(max / -8 - d16) + eps;
    case HL_DTYPE_Q5_0: return fabsf(max / 16) + 16 * fabsf(max / -16 - d16) + eps;
    case HL_DTYPE_Q4_1: return asym_bound(hi - min, 15, d16, min - m16) + eps;
    case HL_DTYPE_Q5_1: return asym_bound(hi - min, 31, d16, min - m16) + eps;
    default: return 0;
    }
}

static void check_legacy_blocks(int type, const float *x, const float *y, const uint8_t *q,
                                int64_t n, uint64_t seed, const char *dist) {
    const hl_dtype_info *info = hl_quant_info(type);
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *blk = q + b * info->block_bytes;
        float d16 = hl_f16_to_f32(hl_rd_u16(blk));
        float m16 = hl_f16_to_f32(hl_rd_u16(blk + 2));
        float bound = legacy_bound(type, x + 32 * b, d16, m16);
        for (int j = 0; j < 32; j++) {
            float e = fabsf(x[32 * b + j] - y[32 * b + j]);
            ck_assert_msg(e <= bound, "%s %s seed %llu: block %lld error %g > bound %g", info->name,
                          dist, (unsigned long long)seed, (long long)b, (double)e, (double)bound);
        }
    }
}

// Largest allowed RMS error relative to the RMS of the data, for well-spread data
// (normal, uniform); about 1.4x the worst seen over many runs.
static double rel_rms_limit(int type) {
    switch (type) {
    case HL_DTYPE_Q2_K: return 0.42;
    case HL_DTYPE_Q3_K: return 0.22;
    case HL_DTYPE_Q4_K: return 0.105;
    case HL_DTYPE_Q5_K: return 0.053;
    case HL_DTYPE_Q6_K: return 0.027;
    case HL_DTYPE_Q8_K: return 0.011;
    case HL_DTYPE_F16: return 4e-4;
    case HL_DTYPE_BF16: return 3e-3;
    default: return 0.13; // legacy types; their per-block bound is checked exactly as well
    }
}

static void check_round_trip(int type, enum dist d, hl_rng *rng, uint64_t seed) {
    const int64_t n = 4096;
    const hl_dtype_info *info = hl_quant_info(type);
    float *x = hl_xmalloc(n * sizeof(float)), *y = hl_xmalloc(n * sizeof(float));
    size_t n_bytes;
    ck_assert_int_eq(hl_quant_row_bytes(type, n, &n_bytes, NULL), HL_OK);
    uint8_t *q = hl_xmalloc(n_bytes);
    fill(rng, d, x, n);
    ck_assert_int_eq(hl_quant_quantize(type, x, q, n, NULL), HL_OK);
    ck_assert_int_eq(hl_quant_dequantize(type, q, y, n, NULL), HL_OK);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        se += (double)(x[i] - y[i]) * (x[i] - y[i]);
        sx += (double)x[i] * x[i];
    }
    double rel = sqrt(se / sx);
    if (type == HL_DTYPE_F32) ck_assert_msg(se == 0, "f32 round trip is not exact");
    if (info->block_size == 32) check_legacy_blocks(type, x, y, q, n, seed, dist_names[d]);
    if (type == HL_DTYPE_Q8_K) { // exact f32 scale: every error is at most half a step
        for (int64_t b = 0; b < n / 256; b++) {
            float step = fabsf(hl_rd_f32(q + b * info->block_bytes));
            for (int j = 0; j < 256; j++)
                ck_assert(fabsf(x[256 * b + j] - y[256 * b + j]) <= step * 0.5f * 1.0001f);
        }
    }
    if (d == DIST_NORMAL || d == DIST_UNIFORM)
        ck_assert_msg(rel <= rel_rms_limit(type), "%s %s seed %llu: relative RMS error %g > %g",
                      info->name, dist_names[d], (unsigned long long)seed, rel,
                      rel_rms_limit(type));
    free(x);
    free(y);
    free(q);
}

START_TEST(test_round_trip_error_bounds) {
    uint64_t seed = fresh_seed();
    hl_rng rng = {seed};
    for (int i = 0; i < N_ALL_TYPES; i++) {
        if (!hl_quant_info(all_types[i])->can_quantize) continue;
        for (int d = 0; d < N_DIST; d++) check_round_trip(all_types[i], (enum dist)d, &rng, seed);
    }
}
END_TEST

// All-zero input gives blocks that decode to exact zeros, for every quantizer.
START_TEST(test_zero_blocks_stay_zero) {
    float x[512] = {0}, y[512];
    uint8_t q[4096];
    for (int i = 0; i < N_ALL_TYPES; i++) {
        int t = all_types[i];
        if (!hl_quant_info(t)->can_quantize) continue;
        for (int j = 0; j < 512; j++) y[j] = 1.0f;
        ck_assert_int_eq(hl_quant_quantize(t, x, q, 512, NULL), HL_OK);
        ck_assert_int_eq(hl_quant_dequantize(t, q, y, 512, NULL), HL_OK);
        for (int j = 0; j < 512; j++)
            ck_assert_msg(y[j] == 0.0f, "%s: element %d is %g", hl_quant_name(t), j, (double)y[j]);
    }
}
END_TEST

// Blocks built by hand from the layout decode to the values the layout defines.
START_TEST(test_hand_built_blocks) {
    uint8_t b[36] = {0};
    float y[32];
    hl_wr_u16(b, 0x3800); // d = 0.5
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    ck_assert_int_eq(hl_quant_dequantize(HL_DTYPE_Q4_0, b, y, 32, NULL), HL_OK);
    for (int j = 0; j < 16; j++) {
        ck_assert_float_eq(y[j], (j - 8) * 0.5f);
        ck_assert_float_eq(y[j + 16], (7 - j) * 0.5f);
    }
    hl_wr_u16(b, 0xc000); // d = -2
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    ck_assert_int_eq(hl_quant_dequantize(HL_DTYPE_Q8_0, b, y, 32, NULL), HL_OK);
    for (int j = 0; j < 32; j++) ck_assert_float_eq(y[j], (j - 16) * -2.0f);
    // Q8_0 quantization of a ramp: d = 31/127 and the largest magnitude becomes -127.
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * (31.0f / 16);
    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_Q8_0, x, b, 32, NULL), HL_OK);
    ck_assert_int_eq((int8_t)b[2], -127);
    ck_assert_uint_eq(hl_rd_u16(b), hl_f32_to_f16(31.0f / 127));
}
END_TEST

// f16 dequantization quiets signalling NaNs as ggml does; bf16 keeps every bit.
START_TEST(test_half_nan_and_inf) {
    uint8_t h[8];
    float y[4];
    hl_wr_u16(h, 0x7c01);     // signalling NaN
    hl_wr_u16(h + 2, 0xfc00); // -inf
    hl_wr_u16(h + 4, 0x0001); // smallest subnormal
    hl_wr_u16(h + 6, 0x7e00);
    ck_assert_int_eq(hl_quant_dequantize(HL_DTYPE_F16, h, y, 4, NULL), HL_OK);
    uint32_t u;
    memcpy(&u, &y[0], 4);
    ck_assert_uint_eq(u, 0x7fc02000u);
    ck_assert(isinf(y[1]) && y[1] < 0);
    ck_assert_float_eq(y[2], 5.9604644775390625e-08f);
    float nan_in[2] = {-NAN, INFINITY};
    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_F16, nan_in, h, 2, NULL), HL_OK);
    ck_assert_uint_eq(hl_rd_u16(h), 0xfe00);
    ck_assert_uint_eq(hl_rd_u16(h + 2), 0x7c00);
}
END_TEST

// ---- errors, names and the table ----

START_TEST(test_error_paths) {
    hl_error err = {0};
    size_t n_bytes = 0;
    float x[256] = {0};
    uint8_t q[512];
    ck_assert_int_eq(hl_quant_row_bytes(HL_DTYPE_Q4_K, 100, &n_bytes, &err), HL_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "q4_K"));
    ck_assert_ptr_nonnull(strstr(err.msg, "256"));
    ck_assert_int_eq(hl_quant_row_bytes(HL_DTYPE_Q8_0, -32, &n_bytes, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_row_bytes(4, 32, &n_bytes, &err), HL_ERR_INVAL); // removed Q4_2
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown"));
    ck_assert_int_eq(hl_quant_row_bytes(-1, 32, &n_bytes, NULL), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_row_bytes(HL_DTYPE_COUNT, 32, &n_bytes, NULL), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_row_bytes(HL_DTYPE_F32, INT64_C(1) << 62, &n_bytes, &err),
                     HL_ERR_FORMAT);
    ck_assert_int_eq(hl_quant_row_bytes(HL_DTYPE_Q6_K, 0, &n_bytes, &err), HL_OK);
    ck_assert_uint_eq(n_bytes, 0);
    ck_assert_int_eq(hl_quant_row_bytes(HL_DTYPE_Q6_K, 512, &n_bytes, &err), HL_OK);
    ck_assert_uint_eq(n_bytes, 420);

    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_Q4_0, x, q, 33, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_dequantize(HL_DTYPE_Q6_K, q, x, 255, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_quantize(99, x, q, 32, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_I32, x, q, 32, &err), HL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "i32"));
    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_F64, x, q, 32, NULL), HL_ERR_UNSUPPORTED);
    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_Q8_0, NULL, q, 32, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_dequantize(HL_DTYPE_Q8_0, q, NULL, 32, &err), HL_ERR_INVAL);
    ck_assert_int_eq(hl_quant_quantize(HL_DTYPE_Q8_0, NULL, NULL, 0, &err), HL_OK);
}
END_TEST

START_TEST(test_names_and_table) {
    ck_assert_int_eq(hl_quant_from_name("q4_K"), HL_DTYPE_Q4_K);
    ck_assert_int_eq(hl_quant_from_name("Q4_K"), HL_DTYPE_Q4_K);
    ck_assert_int_eq(hl_quant_from_name("q4_k"), HL_DTYPE_Q4_K);
    ck_assert_int_eq(hl_quant_from_name("BF16"), HL_DTYPE_BF16);
    ck_assert_int_eq(hl_quant_from_name("q4"), -1);
    ck_assert_int_eq(hl_quant_from_name(""), -1);
    ck_assert_int_eq(hl_quant_from_name(NULL), -1);
    ck_assert_str_eq(hl_quant_name(HL_DTYPE_Q8_K), "q8_K");
    ck_assert_str_eq(hl_quant_name(5), "unknown");
    int n_known = 0;
    for (int t = -2; t < HL_DTYPE_COUNT + 2; t++) {
        const hl_dtype_info *info = hl_quant_info(t);
        if (!info) continue;
        n_known++;
        ck_assert_int_eq(hl_quant_from_name(info->name), t);
        int bs = info->block_size;
        ck_assert(bs == 1 || bs == HL_QK || bs == HL_QK_K);
        ck_assert_uint_gt(info->block_bytes, 0);
        // The flags say exactly what the functions do.
        float x[256] = {0};
        uint8_t q[1024];
        int n = info->block_size;
        ck_assert_int_eq(hl_quant_quantize(t, x, q, n, NULL) == HL_OK, info->can_quantize);
        memset(q, 0, sizeof q);
        ck_assert_int_eq(hl_quant_dequantize(t, q, x, n, NULL) == HL_OK, info->can_dequantize);
    }
    ck_assert_int_eq(n_known, N_ALL_TYPES);
    for (int i = 0; i < N_ALL_TYPES; i++) ck_assert_ptr_nonnull(hl_quant_info(all_types[i]));
}
END_TEST

Suite *quant_suite(void) {
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fixture_matches_ggml);
    tcase_add_test(tc, test_round_trip_error_bounds);
    tcase_add_test(tc, test_zero_blocks_stay_zero);
    tcase_add_test(tc, test_hand_built_blocks);
    tcase_add_test(tc, test_half_nan_and_inf);
    tcase_add_test(tc, test_error_paths);
    tcase_add_test(tc, test_names_and_table);
    suite_add_tcase(s, tc);
    return s;
}
