// matmul_x86: the x86 SIMD matmul kernels, written once and compiled once per ISA file
// (matmul_avx2.c, matmul_avx512.c, matmul_vnni.c), each built with its own -m flags. The ISA
// decides a few primitives at file scope below: the u8·s8 dot is vpdpbusd with AVX-512 VNNI
// and vpmaddubsw + vpmaddwd otherwise; the K-quant super-block dot uses 512-bit registers
// with AVX-512BW. Integer block sums are exact either way, so all three levels give the same
// bits; the float accumulation order is fixed per output element.
//
// Structure: rows are walked in chunks of ROW_CHUNK; inside a chunk, tokens go in tiles of
// TILE (4): each weight block is unpacked once (nibbles → bytes, scales) and dotted with the
// 4 tokens' activation blocks held in registers — prefill reuses every weight load 4 times.
// A tile of fewer tokens runs exactly the same per-token operations, so results never
// depend on the batch (see matmul.h).
//
// Only an ISA file includes this header; it defines static functions only.
#pragma once

#include <immintrin.h>

#include "engine/quant.h"
#include "kernels/cpu/matmul.h"

#define TILE 4       // tokens per register tile
#define ROW_CHUNK 16 // weight rows whose tiles run back to back (weights stay in L1)

#define X86_INLINE static inline __attribute__((always_inline))

// ---- primitives ----

#if defined(__AVX512VNNI__)
// 8 int32 lanes, each the sum of 4 adjacent u8·s8 products.
X86_INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}
#else
X86_INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
#endif

X86_INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

X86_INLINE float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// 16 bytes of packed nibbles → 32 bytes: low nibbles (values 0..15) then high nibbles.
X86_INLINE __m256i nibbles_32(const uint8_t *qs) {
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// The 32 bits at p → 32 bytes, 0xFF where bit j is set (ggml's bytes_from_bits_32).
X86_INLINE __m256i bits_32(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// ---- 32-value blocks: Q4_0 Q4_1 Q5_0 Q8_0 ----

X86_INLINE size_t legacy_bytes(int type) {
    return type == HL_DTYPE_Q4_0 ? 18 : type == HL_DTYPE_Q4_1 ? 20 : type == HL_DTYPE_Q5_0 ? 22 : 34;
}

// Weight block → bytes u (unsigned 0..31, or signed for Q8_0), value = dw * u + constant;
// the constant enters the dot as c * (activation block sum), c = *c.
X86_INLINE __m256i unpack_legacy(int type, const uint8_t *b, float *dw, float *c) {
    *dw = f16_at(b);
    switch (type) {
    case HL_DTYPE_Q4_0:
        *c = -8.0f * *dw;
        return nibbles_32(b + 2);
    case HL_DTYPE_Q4_1:
        *c = f16_at(b + 2);
        return nibbles_32(b + 4);
    case HL_DTYPE_Q5_0:
        *c = -16.0f * *dw;
        return _mm256_or_si256(nibbles_32(b + 6),
                               _mm256_and_si256(bits_32(b + 2), _mm256_set1_epi8(0x10)));
    default:
        *c = 0.0f;
        return _mm256_loadu_si256((const __m256i *)(b + 2));
    }
}

// One weight block (index b) against the tile's activation blocks.
X86_INLINE void legacy_step(int type, const uint8_t *w, int64_t b, const hl_q8_block *const *y,
                            int nt, __m256 *acc, float *ms) {
    float dw, c;
    const __m256i u = unpack_legacy(type, w + b * legacy_bytes(type), &dw, &c);
    // Q8_0 is signed: |u| · (q with u's sign) keeps vpmaddubsw's first operand unsigned.
    const __m256i au = type == HL_DTYPE_Q8_0 ? _mm256_sign_epi8(u, u) : u;
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        const hl_q8_block *yb = y[t] + b;
        __m256i q = _mm256_loadu_si256((const __m256i *)yb->qs);
        if (type == HL_DTYPE_Q8_0) q = _mm256_sign_epi8(q, u);
        const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(au, q));
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * yb->d), p, acc[t]);
        ms[t] = __builtin_fmaf(c, yb->d * (float)yb->sum, ms[t]);
    }
}

X86_INLINE void tile_legacy(const hl_matmul_args *a, int type, int64_t r, int t0, int nt) {
    const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
    const int64_t nb = a->k / HL_QK;
    const hl_q8_block *y[TILE];
    __m256 acc0[TILE], acc1[TILE];
    float ms[TILE];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        y[t] = (const hl_q8_block *)((const uint8_t *)a->act + (size_t)(t0 + t) * a->act_row_bytes);
        acc0[t] = acc1[t] = _mm256_setzero_ps();
        ms[t] = 0.0f;
    }
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) { // two accumulators: even and odd blocks
        legacy_step(type, w, b, y, nt, acc0, ms);
        legacy_step(type, w, b + 1, y, nt, acc1, ms);
    }
    if (b < nb) legacy_step(type, w, b, y, nt, acc0, ms);
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        a->out[(size_t)(t0 + t) * a->out_row_floats + r] =
            hsum_ps(_mm256_add_ps(acc0[t], acc1[t])) + ms[t];
    }
}

// ---- 256-value super-blocks: Q4_K Q5_K Q6_K ----

// A K super-block unpacked once per tile: value = D * scale * q - M * min per 16 values.
typedef struct kunpacked {
    uint8_t q[256] __attribute__((aligned(64))); // unsigned 0..63
    __m256i sc[8];   // int16 scales for q[32i .. 32i+32): lanes 0-7 first 16, 8-15 second 16
    __m256i mn;      // int16 mins, one per 16 values (dotted with the activation bsums)
    float D, M;
} kunpacked;

#if defined(__AVX512BW__)
// Stores a then b (64 bytes) as one store, so kdot's 64-byte loads forward from it.
X86_INLINE void store_pair(uint8_t *p, __m256i a, __m256i b) {
    _mm512_store_si512((void *)p, _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));
}
#else
X86_INLINE void store_pair(uint8_t *p, __m256i a, __m256i b) {
    _mm256_store_si256((__m256i *)p, a);
    _mm256_store_si256((__m256i *)(p + 32), b);
}
#endif

X86_INLINE void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

X86_INLINE void unpack_q45k(int type, const uint8_t *b, kunpacked *k) {
    k->D = f16_at(b);
    k->M = f16_at(b + 2);
    int16_t mn[16];
    for (int s = 0; s < 8; s++) {
        int d, m;
        scale_min_k4(s, b + 4, &d, &m);
        k->sc[s] = _mm256_set1_epi16((int16_t)d);
        mn[2 * s] = mn[2 * s + 1] = (int16_t)m;
    }
    k->mn = _mm256_loadu_si256((const __m256i *)mn);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = type == HL_DTYPE_Q5_K ? b + 48 : b + 16;
    __m256i hb = _mm256_loadu_si256((const __m256i *)(b + 16));
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (type == HL_DTYPE_Q5_K) {
            const __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
            hb = _mm256_srli_epi16(hb, 2);
        }
        store_pair(k->q + 64 * j, lo, hi);
    }
}

X86_INLINE __m256i q6_part(__m256i l, int lshift, __m256i h, int hshift) {
    const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(l, lshift), _mm256_set1_epi8(0x0F));
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(h, hshift), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

X86_INLINE void unpack_q6k(const uint8_t *b, kunpacked *k) {
    k->D = k->M = f16_at(b + 208);
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int i = 0; i < 8; i++)
        k->sc[i] = _mm256_set_m128i(_mm_set1_epi16(sc[2 * i + 1]), _mm_set1_epi16(sc[2 * i]));
    // value = D * sc * (q - 32): the -32 goes into the min term as 32 * sc.
    k->mn = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)), 5);
    for (int n = 0; n < 2; n++) {
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * n));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * n + 32));
        const __m256i h = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
        store_pair(k->q + 128 * n, q6_part(l0, 0, h, 0), q6_part(l1, 0, h, 2));
        store_pair(k->q + 128 * n + 64, q6_part(l0, 4, h, 4), q6_part(l1, 4, h, 6));
    }
}

#if defined(__AVX512BW__)
// sum over i of scale_i · (q · y) for one super-block, 8 int32 lanes (exact), 64 bytes a step.
X86_INLINE __m256i kdot(const kunpacked *k, const int8_t *y) {
    __m512i p = _mm512_setzero_si512();
    for (int i = 0; i < 4; i++) {
        const __m512i q = _mm512_load_si512((const void *)(k->q + 64 * i));
        const __m512i s = _mm512_inserti64x4(_mm512_castsi256_si512(k->sc[2 * i]), k->sc[2 * i + 1], 1);
        const __m512i prod = _mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)(y + 64 * i)));
        p = _mm512_add_epi32(p, _mm512_madd_epi16(prod, s));
    }
    return _mm256_add_epi32(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64(p, 1));
}
#else
X86_INLINE __m256i kdot(const kunpacked *k, const int8_t *y) {
    __m256i p = _mm256_setzero_si256();
    for (int i = 0; i < 8; i++) {
        const __m256i q = _mm256_load_si256((const __m256i *)(k->q + 32 * i));
        const __m256i prod = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(y + 32 * i)));
        p = _mm256_add_epi32(p, _mm256_madd_epi16(prod, k->sc[i]));
    }
    return p;
}
#endif

X86_INLINE void tile_k(const hl_matmul_args *a, int type, int64_t r, int t0, int nt) {
    const size_t bb = type == HL_DTYPE_Q4_K ? 144 : type == HL_DTYPE_Q5_K ? 176 : 210;
    const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
    const int64_t nb = a->k / HL_QK_K;
    const hl_q8k_block *y[TILE];
    __m256 acc[TILE], accm[TILE];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        y[t] = (const hl_q8k_block *)((const uint8_t *)a->act + (size_t)(t0 + t) * a->act_row_bytes);
        acc[t] = accm[t] = _mm256_setzero_ps();
    }
    kunpacked k;
    for (int64_t b = 0; b < nb; b++) {
        if (type == HL_DTYPE_Q6_K) unpack_q6k(w + b * bb, &k);
        else unpack_q45k(type, w + b * bb, &k);
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const hl_q8k_block *yb = y[t] + b;
            const __m256 p = _mm256_cvtepi32_ps(kdot(&k, yb->qs));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(k.D * yb->d), p, acc[t]);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)yb->bsums);
            const __m256 pm = _mm256_cvtepi32_ps(_mm256_madd_epi16(k.mn, bs));
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(k.M * yb->d), pm, accm[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
        a->out[(size_t)(t0 + t) * a->out_row_floats + r] = hsum_ps(acc[t]) - hsum_ps(accm[t]);
}

// ---- float weights: F32 F16 BF16 ----

X86_INLINE __m256 load8(int type, const uint8_t *w, int64_t j) {
    if (type == HL_DTYPE_F32) return _mm256_loadu_ps((const float *)(w + 4 * j));
    const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * j));
    if (type == HL_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

X86_INLINE float load1(int type, const uint8_t *w, int64_t j) {
    if (type == HL_DTYPE_F32) return hl_rd_f32(w + 4 * j);
    if (type == HL_DTYPE_F16) return f16_at(w + 2 * j);
    return hl_bf16_to_f32(hl_rd_u16(w + 2 * j));
}

X86_INLINE void tile_float(const hl_matmul_args *a, int type, int64_t r, int t0, int nt) {
    const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
    const float *x[TILE];
    __m256 acc[TILE];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        x[t] = a->x + (size_t)(t0 + t) * a->x_row_floats;
        acc[t] = _mm256_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 8 <= a->k; j += 8) {
        const __m256 wv = load8(type, w, j);
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + j), acc[t]);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        float s = hsum_ps(acc[t]);
        for (int64_t jj = j; jj < a->k; jj++) s = __builtin_fmaf(load1(type, w, jj), x[t][jj], s);
        a->out[(size_t)(t0 + t) * a->out_row_floats + r] = s;
    }
}

// ---- activation quantization ----
// The same values as matmul.c's scalar quantizer, bit for bit: the abs max is exact, x · (127 /
// amax) is the same float product, and cvtps2dq rounds to nearest even like nearest_int.

X86_INLINE int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

X86_INLINE float abs_max(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

X86_INLINE __m256i quant8(const float *x, __m256 id) {
    const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    return _mm256_max_epi32(_mm256_min_epi32(q, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
}

// x[0..n) (n a multiple of 32) → qs with d = amax / 127; bsums (when non-NULL) gets the sum of
// every 16 quants. Returns the sum of all quants.
X86_INLINE int quantize_span(const float *x, int n, int8_t *qs, float *d, int16_t *bsums) {
    const float amax = abs_max(x, n);
    *d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i total = _mm256_setzero_si256();
    for (int j = 0; j < n; j += 32) {
        const __m256i q0 = quant8(x + j, id), q1 = quant8(x + j + 8, id);
        const __m256i q2 = quant8(x + j + 16, id), q3 = quant8(x + j + 24, id);
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        _mm256_storeu_si256((__m256i *)(qs + j), _mm256_permutevar8x32_epi32(b, perm));
        const __m256i s01 = _mm256_add_epi32(q0, q1), s23 = _mm256_add_epi32(q2, q3);
        total = _mm256_add_epi32(total, _mm256_add_epi32(s01, s23));
        if (!bsums) continue;
        bsums[j / 16] = (int16_t)hsum_epi32(s01);
        bsums[j / 16 + 1] = (int16_t)hsum_epi32(s23);
    }
    return hsum_epi32(total);
}

// Activation rows [t0, t1) of a->x into a->act (matmul.h's hl_matmul_quantize).
static void x86_quantize(const hl_matmul_args *a, int t0, int t1) {
    const int kind = hl_matmul_act_kind(a->type);
    for (int t = t0; t < t1; t++) {
        const float *x = a->x + (size_t)t * a->x_row_floats;
        uint8_t *dst = (uint8_t *)a->act + (size_t)t * a->act_row_bytes;
        if (kind == HL_MATMUL_ACT_Q8) {
            hl_q8_block *y = (hl_q8_block *)dst;
            for (int64_t b = 0; b < a->k / HL_QK; b++)
                y[b].sum = quantize_span(x + b * HL_QK, HL_QK, y[b].qs, &y[b].d, NULL);
        }
        if (kind == HL_MATMUL_ACT_Q8K) {
            hl_q8k_block *y = (hl_q8k_block *)dst;
            for (int64_t b = 0; b < a->k / HL_QK_K; b++)
                quantize_span(x + b * HL_QK_K, HL_QK_K, y[b].qs, &y[b].d, y[b].bsums);
        }
    }
}

// ---- driver ----

X86_INLINE void tile(const hl_matmul_args *a, int type, int64_t r, int t0, int nt) {
    switch (hl_matmul_act_kind(type)) {
    case HL_MATMUL_ACT_Q8: tile_legacy(a, type, r, t0, nt); return;
    case HL_MATMUL_ACT_Q8K: tile_k(a, type, r, t0, nt); return;
    default: tile_float(a, type, r, t0, nt); return;
    }
}

// Rows [r0, r1) for every token: chunks of rows, full token tiles, then the token tail.
X86_INLINE void rows_type(const hl_matmul_args *a, int type, int64_t r0, int64_t r1) {
    for (int64_t rc = r0; rc < r1; rc += ROW_CHUNK) {
        const int64_t re = rc + ROW_CHUNK < r1 ? rc + ROW_CHUNK : r1;
        int t0 = 0;
        for (; t0 + TILE <= a->n; t0 += TILE) {
            for (int64_t r = rc; r < re; r++) tile(a, type, r, t0, TILE);
        }
        const int rest = a->n - t0;
        for (int64_t r = rc; r < re && rest > 0; r++) {
            if (rest == 1) tile(a, type, r, t0, 1);
            else if (rest == 2) tile(a, type, r, t0, 2);
            else tile(a, type, r, t0, 3);
        }
    }
}

static void rows_f32(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_F32, r0, r1); }
static void rows_f16(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_F16, r0, r1); }
static void rows_bf16(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_BF16, r0, r1); }
static void rows_q4_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_0, r0, r1); }
static void rows_q4_1(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_1, r0, r1); }
static void rows_q5_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q5_0, r0, r1); }
static void rows_q8_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q8_0, r0, r1); }
static void rows_q4_k(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_K, r0, r1); }
static void rows_q5_k(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q5_K, r0, r1); }
static void rows_q6_k(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q6_K, r0, r1); }

// Every supported weight type, each with its own specialised copy of the kernels.
static void x86_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) {
    switch (a->type) {
    case HL_DTYPE_F32: rows_f32(a, r0, r1); return;
    case HL_DTYPE_F16: rows_f16(a, r0, r1); return;
    case HL_DTYPE_BF16: rows_bf16(a, r0, r1); return;
    case HL_DTYPE_Q4_0: rows_q4_0(a, r0, r1); return;
    case HL_DTYPE_Q4_1: rows_q4_1(a, r0, r1); return;
    case HL_DTYPE_Q5_0: rows_q5_0(a, r0, r1); return;
    case HL_DTYPE_Q8_0: rows_q8_0(a, r0, r1); return;
    case HL_DTYPE_Q4_K: rows_q4_k(a, r0, r1); return;
    case HL_DTYPE_Q5_K: rows_q5_k(a, r0, r1); return;
    case HL_DTYPE_Q6_K: rows_q6_k(a, r0, r1); return;
    default: HL_ASSERT(!"matmul: unsupported weight type");
    }
}
