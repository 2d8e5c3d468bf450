// matmul_x16_vnni: matmul over X16 weights (repack.h) with AVX-512 VNNI — 16 weight rows per
// 512-bit register, one row per 32-bit lane, so a block's dot for 16 rows is a chain of
// vpdpbusd against broadcast 4-byte activation chunks and no horizontal sums are needed.
//
// Per group block (16 rows x 32 values) and token: 8 vpdpbusd (Q4_0/Q4_1: low nibbles with
// x[0..16), high nibbles kept as 16·u with x[16..32), shifted back after; Q5_0: the 5-bit
// values rebuilt from the permuted high-bit word). The integer block dot is exact; its offset
// (Q4_0: -8·sum x, Q5_0: -16·sum x, Q8_0: -128·sum x) starts the accumulator.
// Then acc += float(isum) · (d_w · d_x) (Q4_1: + m_w · d_x · sum x), block after block, one
// accumulator per token and row: every output's float sequence is fixed by (row, token)
// alone, whatever the tile, the batch or the thread split (matmul.h's invariant).
//
// Tokens go in tiles of up to X16_TILE, each group block unpacked once per tile; groups of
// one thread's range are walked in order, so a decode step streams the weights once.
#include <immintrin.h>

#include "engine/quant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/repack.h"

#define X16_TILE 4 // tokens per register tile

#define X16_INLINE static inline __attribute__((always_inline))

// Bytes of one group block, and where its quants start (after the f16 scale rows).
X16_INLINE size_t group_block_bytes(int type) {
    switch (type) {
    case HL_DTYPE_Q4_0: return 288;
    case HL_DTYPE_Q4_1: return 320;
    case HL_DTYPE_Q5_0: return 352;
    default: return 544;
    }
}

X16_INLINE size_t quant_offset(int type) { return type == HL_DTYPE_Q4_1 ? 64 : type == HL_DTYPE_Q5_0 ? 96 : 32; }

// The 4 activation bytes at p in every lane.
X16_INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

X16_INLINE __m512 f16x16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

// One group block unpacked: v[c] are the unsigned quants of chunk c (Q4: v[0..4) low
// nibbles, v[4..8) high nibbles times 16; Q5_0: 5-bit values, high nibbles not scaled), d
// and m the rows' scales (and Q4_1 mins).
typedef struct x16_weights {
    __m512i v[8];
    __m512 d, m;
} x16_weights;

X16_INLINE void unpack(int type, const uint8_t *g, x16_weights *w) {
    w->d = f16x16(g);
    if (type == HL_DTYPE_Q4_1) w->m = f16x16(g + 32);
    const uint8_t *q = g + quant_offset(type);
    if (type == HL_DTYPE_Q8_0) {
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) w->v[c] = _mm512_loadu_si512((const void *)(q + 64 * c));
        return;
    }
    if (type == HL_DTYPE_Q5_0) {
        // bit k of each byte of h is the high bit of chunk k: shift it to bit 4, then
        // ternlog 0xEC = (h & 0x10) | nibble.
        const __m512i h = _mm512_loadu_si512((const void *)(g + 32)), b4 = _mm512_set1_epi8(0x10);
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            const __m512i v = _mm512_loadu_si512((const void *)(q + 64 * c));
            const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            w->v[c] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(h, 4 - c), lo, b4, 0xEC);
            w->v[4 + c] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(h, c), hi, b4, 0xEC);
        }
        return;
    }
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        const __m512i v = _mm512_loadu_si512((const void *)(q + 64 * c));
        w->v[c] = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
        w->v[4 + c] = _mm512_and_si512(v, _mm512_set1_epi8((char)0xF0));
    }
}

// hot: one token's activation block against one group block; returns the updated acc.
X16_INLINE __m512 block_dot(int type, const x16_weights *w, const hl_q8_block *y, __m512 acc) {
    __m512i isum;
    if (type == HL_DTYPE_Q8_0 || type == HL_DTYPE_Q5_0) {
        isum = _mm512_set1_epi32((type == HL_DTYPE_Q8_0 ? -128 : -16) * y->sum);
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) isum = _mm512_dpbusd_epi32(isum, w->v[c], bcast4(y->qs + 4 * c));
    } else {
        __m512i lo = type == HL_DTYPE_Q4_0 ? _mm512_set1_epi32(-8 * y->sum) : _mm512_setzero_si512();
        __m512i hi = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            lo = _mm512_dpbusd_epi32(lo, w->v[c], bcast4(y->qs + 4 * c));
            hi = _mm512_dpbusd_epi32(hi, w->v[4 + c], bcast4(y->qs + 16 + 4 * c));
        }
        isum = _mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(w->d, _mm512_set1_ps(y->d)), acc);
    if (type == HL_DTYPE_Q4_1) acc = _mm512_fmadd_ps(w->m, _mm512_set1_ps(y->d * (float)y->sum), acc);
    return acc;
}

// Group g (rows 16g .. 16g + n_rows) for tokens [t0, t0 + nt).
X16_INLINE void tile(const hl_matmul_args *a, int type, int64_t g, int t0, int nt, int n_rows) {
    const int64_t nb = a->k / HL_QK;
    const size_t gb = group_block_bytes(type);
    const uint8_t *gp = a->w + (size_t)g * (size_t)nb * gb;
    const hl_q8_block *y[X16_TILE];
    __m512 acc[X16_TILE];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        y[t] = (const hl_q8_block *)((const uint8_t *)a->act + (size_t)(t0 + t) * a->act_row_bytes);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        x16_weights w;
        unpack(type, gp + (size_t)b * gb, &w);
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = block_dot(type, &w, y[t] + b, acc[t]);
    }
    const __mmask16 mask = n_rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n_rows) - 1);
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
        _mm512_mask_storeu_ps(a->out + (size_t)(t0 + t) * a->out_row_floats + g * 16, mask, acc[t]);
}

// Rows [r0, r1): group by group, full token tiles, then the token tail.
X16_INLINE void rows_type(const hl_matmul_args *a, int type, int64_t r0, int64_t r1) {
    for (int64_t g = r0 / 16; g * 16 < r1; g++) {
        const int n_rows = (int)(r1 - g * 16 < 16 ? r1 - g * 16 : 16);
        int t0 = 0;
        for (; t0 + X16_TILE <= a->n; t0 += X16_TILE) tile(a, type, g, t0, X16_TILE, n_rows);
        switch (a->n - t0) { // the tail tile, with its size known to the compiler
        case 1: tile(a, type, g, t0, 1, n_rows); break;
        case 2: tile(a, type, g, t0, 2, n_rows); break;
        case 3: tile(a, type, g, t0, 3, n_rows); break;
        default: break;
        }
    }
}

static void rows_q4_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_0, r0, r1); }
static void rows_q4_1(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_1, r0, r1); }
static void rows_q5_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q5_0, r0, r1); }
static void rows_q8_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q8_0, r0, r1); }

void hl_matmul_x16_vnni_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) {
    switch (a->type) {
    case HL_DTYPE_Q4_0: rows_q4_0(a, r0, r1); return;
    case HL_DTYPE_Q4_1: rows_q4_1(a, r0, r1); return;
    case HL_DTYPE_Q5_0: rows_q5_0(a, r0, r1); return;
    case HL_DTYPE_Q8_0: rows_q8_0(a, r0, r1); return;
    default: HL_ASSERT(!"matmul x16: unsupported weight type");
    }
}
