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
// The K types (Q4_K Q5_K Q6_K, 256-value super-blocks against hl_q8k_block activations): per
// sub-block (Q4_K, Q5_K: 32 values; Q6_K: 16) a vpdpbusd chain gives the 16 rows' dots, each
// times its row's sub-block scale (vpmulld): isum = Σ sc·(q·y); the min part msum = Σ m·bsum
// is a vpdpwssd of the rows' 16-bit mins with the token's bsums pairs. Both are exact in
// int32 (|isum| < 2^29). Per super-block and token, as matmul.c's scalar kernel:
//   Q4_K, Q5_K: acc += (d_w·d_x)·isum − (dmin_w·d_x)·msum
//   Q6_K:       acc += (d_w·d_x)·(isum − 32·msum)          (value = d·sc·(q − 32))
//
// Tokens go in tiles of up to X16_TILE, each group block unpacked once per tile (a K
// super-block: scales decoded once, quants 64 values at a time); groups of one thread's range
// are walked in order, so a decode step streams the weights once.
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
    case HL_DTYPE_Q4_K: return 2304;
    case HL_DTYPE_Q5_K: return 2816;
    case HL_DTYPE_Q6_K: return 3360;
    default: return 544;
    }
}

X16_INLINE bool is_k(int type) {
    return type == HL_DTYPE_Q4_K || type == HL_DTYPE_Q5_K || type == HL_DTYPE_Q6_K;
}

X16_INLINE size_t quant_offset(int type) { return type == HL_DTYPE_Q4_1 ? 64 : type == HL_DTYPE_Q5_0 ? 96 : 32; }

// The 4 activation bytes at p in every lane.
X16_INLINE __m512i bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

X16_INLINE __m512 f16x16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

X16_INLINE __m512i ld(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }

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

// ---- K super-blocks: Q4_K Q5_K Q6_K ----

// Byte offsets inside a group block (repack.h): header rows, then 64-byte chunks.
#define XK_SCALES 64      // Q4_K, Q5_K: scale chunks 0..2
#define XK_Q5_QH 256      // Q5_K: qh chunks
#define XK_Q4_QS 256      // Q4_K: qs chunks
#define XK_Q5_QS 768      // Q5_K: qs chunks
#define XK_Q6_SCALES 32   // Q6_K: scale chunks
#define XK_Q6_QUANTS 288  // Q6_K: per quarter, 4 x (ql chunk a, ql chunk b, qh chunk), 768 bytes



// a ? b : c, bit by bit.
X16_INLINE __m512i select_bits(__m512i a, __m512i b, __m512i c) {
    return _mm512_ternarylogic_epi32(a, b, c, 0xCA);
}

// One group super-block's scales, decoded for all 16 rows (one per 32-bit lane).
typedef struct xk_scales {
    __m512i sc[16]; // sub-block scales (Q4_K, Q5_K: 8 of 0..63; Q6_K: 16 signed)
    __m512i mp[8];  // 16-bit pairs dotted with bsums pair p: Q4_K/Q5_K (m_p, m_p), Q6_K (sc_2p, sc_2p+1)
    __m512 d, m;    // d, and dmin (Q4_K, Q5_K)
} xk_scales;

// Q4_K/Q5_K: the 12 scale bytes as 3 words (bytes 0..3, 4..7, 8..11), 6 bits per scale and min.
X16_INLINE void scales_q45(const uint8_t *g, xk_scales *s) {
    s->d = f16x16(g);
    s->m = f16x16(g + 32);
    const __m512i w0 = ld(g + XK_SCALES), w1 = ld(g + XK_SCALES + 64), w2 = ld(g + XK_SCALES + 128);
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(0x0F);
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        const __m512i mn = _mm512_and_si512(_mm512_srli_epi32(w1, 8 * j), m6);
        s->sc[j] = _mm512_and_si512(_mm512_srli_epi32(w0, 8 * j), m6);
        s->mp[j] = _mm512_or_si512(mn, _mm512_slli_epi32(mn, 16));
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) { // j = 4 + i: low 4 bits from w2, top 2 from w0 / w1
        const __m512i sc = select_bits(m4, _mm512_srli_epi32(w2, 8 * i), _mm512_srli_epi32(w0, 8 * i + 2));
        const __m512i mn = select_bits(m4, _mm512_srli_epi32(w2, 8 * i + 4), _mm512_srli_epi32(w1, 8 * i + 2));
        const __m512i mn6 = _mm512_and_si512(mn, m6);
        s->sc[4 + i] = _mm512_and_si512(sc, m6);
        s->mp[4 + i] = _mm512_or_si512(mn6, _mm512_slli_epi32(mn6, 16));
    }
}

// Q6_K: 16 signed byte scales as 4 words.
X16_INLINE void scales_q6(const uint8_t *g, xk_scales *s) {
    s->d = f16x16(g);
    _Pragma("GCC unroll 4") for (int w = 0; w < 4; w++) {
        const __m512i v = ld(g + XK_Q6_SCALES + 64 * w);
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
            s->sc[4 * w + i] = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * i), 24);
    }
    const __m512i lo16 = _mm512_set1_epi32(0xFFFF);
    _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)
        s->mp[p] = select_bits(lo16, s->sc[2 * p], _mm512_slli_epi32(s->sc[2 * p + 1], 16));
}

// Bit `bit` of every byte of h moved to bit 4 (bits 0..7 stay inside their byte).
X16_INLINE __m512i bit_to_4(__m512i h, int bit) {
    if (bit < 4) return _mm512_slli_epi16(h, 4 - bit);
    if (bit > 4) return _mm512_srli_epi16(h, bit - 4);
    return h;
}

// Q4_K/Q5_K values 64j .. 64j+64 (sub-blocks 2j, 2j+1): v[c] chunk c of the first 32, v[8+c]
// of the second (Q4_K: kept as 16·u, from the high nibbles in place).
X16_INLINE void unpack_q45(int type, const uint8_t *g, int j, __m512i *v) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == HL_DTYPE_Q4_K) {
        const uint8_t *q = g + XK_Q4_QS + 512 * j;
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {
            const __m512i x = ld(q + 64 * c);
            v[c] = _mm512_and_si512(x, m4);
            v[8 + c] = _mm512_and_si512(x, _mm512_set1_epi8((char)0xF0));
        }
        return;
    }
    // ternlog 0xEC = (h & 0x10) | nibble.
    const uint8_t *q = g + XK_Q5_QS + 512 * j, *qh = g + XK_Q5_QH;
    const __m512i b4 = _mm512_set1_epi8(0x10);
    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {
        const __m512i x = ld(q + 64 * c), h = ld(qh + 64 * c);
        const __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        v[c] = _mm512_ternarylogic_epi32(bit_to_4(h, 2 * j), lo, b4, 0xEC);
        v[8 + c] = _mm512_ternarylogic_epi32(bit_to_4(h, 2 * j + 1), hi, b4, 0xEC);
    }
}

// Q6_K half n, quarter h: v[4q + c] = chunk c of values 128n + 32q + 16h .. +16 (sub-block
// 8n + 2q + h), 6-bit: low nibble from ql (A for q = 0, 2; B for q = 1, 3), 2 bits from qh.
X16_INLINE void unpack_q6(const uint8_t *g, int n, int h, __m512i *v) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33), mcc = _mm512_set1_epi8((char)0xCC);
    const uint8_t *q = g + XK_Q6_QUANTS + 768 * (2 * n + h);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        const __m512i a = ld(q + 192 * c), b = ld(q + 192 * c + 64), hb = ld(q + 192 * c + 128);
        // hm keeps qh bits 0,1 and 4,5, hn bits 2,3 and 6,7: each shift puts one pair at bits
        // 4,5 with zeros at 6,7; what lands in bits 0..3 is replaced by the nibble.
        const __m512i hm = _mm512_and_si512(hb, m33), hn = _mm512_and_si512(hb, mcc);
        v[c] = select_bits(m4, a, _mm512_slli_epi16(hm, 4));
        v[4 + c] = select_bits(m4, b, _mm512_slli_epi16(hn, 2));
        v[8 + c] = select_bits(m4, _mm512_srli_epi16(a, 4), hm);
        v[12 + c] = select_bits(m4, _mm512_srli_epi16(b, 4), _mm512_srli_epi16(hn, 2));
    }
}

// hot: one token's values 64j .. 64j+64 against unpack_q45's v; returns isum updated.
X16_INLINE __m512i dot_q45(int type, const __m512i *v, const int8_t *y, const xk_scales *s, int j, __m512i isum) {
    __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {
        lo = _mm512_dpbusd_epi32(lo, v[c], bcast4(y + 4 * c));
        hi = _mm512_dpbusd_epi32(hi, v[8 + c], bcast4(y + 32 + 4 * c));
    }
    if (type == HL_DTYPE_Q4_K) hi = _mm512_srai_epi32(hi, 4); // exact: a multiple of 16
    isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(lo, s->sc[2 * j]));
    return _mm512_add_epi32(isum, _mm512_mullo_epi32(hi, s->sc[2 * j + 1]));
}

// hot: one token's values of unpack_q6's (n, h) against v; returns isum updated.
X16_INLINE __m512i dot_q6(const __m512i *v, const int8_t *y, const xk_scales *s, int n, int h, __m512i isum) {
    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
        __m512i d = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
            d = _mm512_dpbusd_epi32(d, v[4 * q + c], bcast4(y + 128 * n + 32 * q + 16 * h + 4 * c));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(d, s->sc[8 * n + 2 * q + h]));
    }
    return isum;
}

// The super-block's float step for one token (the header's formulas).
X16_INLINE __m512 finish(int type, const xk_scales *s, const hl_q8k_block *y, __m512i isum, __m512 acc) {
    __m512i msum = _mm512_setzero_si512();
    _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)
        msum = _mm512_dpwssd_epi32(msum, s->mp[p], bcast4(y->bsums + 2 * p));
    const __m512 dy = _mm512_mul_ps(s->d, _mm512_set1_ps(y->d));
    if (type == HL_DTYPE_Q6_K) {
        const __m512i total = _mm512_sub_epi32(isum, _mm512_slli_epi32(msum, 5));
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), dy, acc);
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dy, acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(s->m, _mm512_set1_ps(y->d)), acc);
}

// Super-block `blk` of a group for the tile's nt tokens (activation blocks yb).
X16_INLINE void super_block(int type, const uint8_t *blk, const hl_q8k_block *const *yb, int nt, __m512 *acc) {
    xk_scales s;
    __m512i isum[X16_TILE], v[16];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
    if (type == HL_DTYPE_Q6_K) {
        scales_q6(blk, &s);
        for (int n = 0; n < 2; n++) {
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
                unpack_q6(blk, n, h, v);
                _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
                    isum[t] = dot_q6(v, yb[t]->qs, &s, n, h, isum[t]);
            }
        }
    } else {
        scales_q45(blk, &s);
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            unpack_q45(type, blk, j, v);
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
                isum[t] = dot_q45(type, v, yb[t]->qs + 64 * j, &s, j, isum[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = finish(type, &s, yb[t], isum[t], acc[t]);
}

// Asks for the gb bytes at p (a group block) to be brought into L1.
X16_INLINE void prefetch_block(const uint8_t *p, size_t gb) {
    for (size_t off = 0; off < gb; off += 64) _mm_prefetch((const char *)p + off, _MM_HINT_T0);
}

// Group g (rows 16g .. 16g + n_rows) for tokens [t0, t0 + nt); `more`: group g + 1 is read next.
X16_INLINE void tile(const hl_matmul_args *a, int type, int64_t g, int t0, int nt, int n_rows, bool more) {
    const int64_t nb = a->k / (is_k(type) ? HL_QK_K : HL_QK);
    const size_t gb = group_block_bytes(type);
    const uint8_t *gp = a->w + (size_t)g * (size_t)nb * gb, *y[X16_TILE];
    __m512 acc[X16_TILE];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        y[t] = (const uint8_t *)a->act + (size_t)(t0 + t) * a->act_row_bytes;
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        if (is_k(type)) {
            const hl_q8k_block *yb[X16_TILE];
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) yb[t] = (const hl_q8k_block *)y[t] + b;
            // Q6_K runs longest per byte; measured, the hardware prefetcher falls behind it
            // (not the other types): ask for the group block two ahead.
            if (type == HL_DTYPE_Q6_K && b + 2 < nb + (more ? 2 : 0)) prefetch_block(gp + (size_t)(b + 2) * gb, gb);
            super_block(type, gp + (size_t)b * gb, yb, nt, acc);
            continue;
        }
        x16_weights w;
        unpack(type, gp + (size_t)b * gb, &w);
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
            acc[t] = block_dot(type, &w, (const hl_q8_block *)y[t] + b, acc[t]);
    }
    const __mmask16 mask = n_rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n_rows) - 1);
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
        _mm512_mask_storeu_ps(a->out + (size_t)(t0 + t) * a->out_row_floats + g * 16, mask, acc[t]);
}

// Rows [r0, r1): group by group, full token tiles, then the token tail.
X16_INLINE void rows_type(const hl_matmul_args *a, int type, int64_t r0, int64_t r1) {
    for (int64_t g = r0 / 16; g * 16 < r1; g++) {
        const int n_rows = (int)(r1 - g * 16 < 16 ? r1 - g * 16 : 16);
        const bool more = (g + 1) * 16 < r1;
        int t0 = 0;
        for (; t0 + X16_TILE <= a->n; t0 += X16_TILE) tile(a, type, g, t0, X16_TILE, n_rows, more);
        switch (a->n - t0) { // the tail tile, with its size known to the compiler
        case 1: tile(a, type, g, t0, 1, n_rows, more); break;
        case 2: tile(a, type, g, t0, 2, n_rows, more); break;
        case 3: tile(a, type, g, t0, 3, n_rows, more); break;
        default: break;
        }
    }
}

static void rows_q4_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_0, r0, r1); }
static void rows_q4_1(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_1, r0, r1); }
static void rows_q5_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q5_0, r0, r1); }
static void rows_q8_0(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q8_0, r0, r1); }
static void rows_q4_k(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q4_K, r0, r1); }
static void rows_q5_k(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q5_K, r0, r1); }
static void rows_q6_k(const hl_matmul_args *a, int64_t r0, int64_t r1) { rows_type(a, HL_DTYPE_Q6_K, r0, r1); }

void hl_matmul_x16_vnni_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) {
    switch (a->type) {
    case HL_DTYPE_Q4_0: rows_q4_0(a, r0, r1); return;
    case HL_DTYPE_Q4_1: rows_q4_1(a, r0, r1); return;
    case HL_DTYPE_Q5_0: rows_q5_0(a, r0, r1); return;
    case HL_DTYPE_Q8_0: rows_q8_0(a, r0, r1); return;
    case HL_DTYPE_Q4_K: rows_q4_k(a, r0, r1); return;
    case HL_DTYPE_Q5_K: rows_q5_k(a, r0, r1); return;
    case HL_DTYPE_Q6_K: rows_q6_k(a, r0, r1); return;
    default: HL_ASSERT(!"matmul x16: unsupported weight type");
    }
}
