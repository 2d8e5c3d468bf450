// attention_avx512: GQA-grouped paged attention with AVX-512 (see attention.h).
#include <immintrin.h>
#include <math.h>

#include "engine/quant.h"
#include "kernels/cpu/attention.h"

#define MAX_GROUP 16
#define MAX_HD 256

#define ATT_INLINE static inline __attribute__((always_inline))

bool hl_attention_avx512_fits(int head_dim, int group) {
    return head_dim % 16 == 0 && head_dim <= MAX_HD && group >= 1 && group <= MAX_GROUP;
}

static inline size_t kv_at(const hl_kv_geom *g, int32_t slot, int h) {
    const size_t b = (size_t)(slot / HL_KV_BLOCK), t = (size_t)(slot % HL_KV_BLOCK);
    return ((b * (size_t)g->n_kv_heads + (size_t)h) * HL_KV_BLOCK + t) * (size_t)g->head_dim;
}

// exp(x) for x <= 0 (Cephes' expf polynomial on x - n·ln2, scaled by 2^n); 0 below -87.3
// and for -inf.
ATT_INLINE __m512 exp512(__m512 x) {
    const __m512 lim = _mm512_set1_ps(-87.33654f);
    const __mmask16 ok = _mm512_cmp_ps_mask(x, lim, _CMP_GE_OQ);
    x = _mm512_max_ps(x, lim);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(ok, p, n);
}

// 16 K/V elements from `at` as floats; kt (enum hl_dtype: F16, F32 or I8, a compile-time
// constant in each instance) picks the conversion. int8 gives the codes: the row scale is
// applied by the caller, once per row.
ATT_INLINE __m512 load16(const void *base, int kt, size_t at) {
    if (kt == HL_DTYPE_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + at)));
    if (kt == HL_DTYPE_I8) {
        const __m128i codes = _mm_loadu_si128((const __m128i *)((const int8_t *)base + at));
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes));
    }
    return _mm512_loadu_ps((const float *)base + at);
}

// Scores of the group's G heads (queries q, G rows of hd) against the nj keys at slots
// base .. base + nj: sc[h][j] = q_h · k_j (unscaled; int8: the codes' dot times the row scale).
ATT_INLINE void block_scores(const hl_attn_args *a, int kt, int kvh, int32_t base, int nj,
                             const float *q, int G, float (*sc)[16]) {
    const int hd = a->geom->head_dim, nc = hd / 16;
    for (int j = 0; j < nj; j++) {
        const size_t at = kv_at(a->geom, base + j, kvh);
        const float ks = kt == HL_DTYPE_I8 ? a->kv->k_scale[at / (size_t)hd] : 1.0f;
        __m512 k[MAX_HD / 16];
        for (int c = 0; c < nc; c++) k[c] = load16(a->kv->k, kt, at + 16 * (size_t)c);
        for (int h = 0; h < G; h++) {
            __m512 d = _mm512_mul_ps(_mm512_loadu_ps(q + h * hd), k[0]);
            for (int c = 1; c < nc; c++) d = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * hd + 16 * c), k[c], d);
            sc[h][j] = kt == HL_DTYPE_I8 ? _mm512_reduce_add_ps(d) * ks : _mm512_reduce_add_ps(d);
        }
    }
}

// Online-softmax update of head h for one block: sc (scores, nj valid) becomes the block's
// probabilities relative to the new running max m; acc and l are rescaled when m grows.
ATT_INLINE void block_softmax(float *sc, int nj, float scale, float *m, float *l, float *acc, int hd) {
    const __mmask16 valid = (__mmask16)((1u << nj) - 1);
    const __m512 s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid,
                                        _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, sc), _mm512_set1_ps(scale)));
    const float bm = _mm512_reduce_max_ps(s);
    if (bm > *m) {
        const __m512 r = exp512(_mm512_set1_ps(*m - bm));
        for (int d = 0; d < hd; d += 16) _mm512_storeu_ps(acc + d, _mm512_mul_ps(r, _mm512_loadu_ps(acc + d)));
        *l *= _mm512_cvtss_f32(r);
        *m = bm;
    }
    const __m512 p = exp512(_mm512_sub_ps(s, _mm512_set1_ps(*m)));
    *l += _mm512_reduce_add_ps(p);
    _mm512_storeu_ps(sc, p);
}

// acc_h += sum over the block's keys j of p[h][j] · v_j, for the G heads (int8: p[h][j] times
// the row scale, times the codes).
ATT_INLINE void block_pv(const hl_attn_args *a, int kt, int kvh, int32_t base, int nj,
                         float (*p)[16], int G, float *acc) {
    const int hd = a->geom->head_dim, nc = hd / 16;
    for (int j = 0; j < nj; j++) {
        const size_t at = kv_at(a->geom, base + j, kvh);
        const float vs = kt == HL_DTYPE_I8 ? a->kv->v_scale[at / (size_t)hd] : 1.0f;
        __m512 v[MAX_HD / 16];
        for (int c = 0; c < nc; c++) v[c] = load16(a->kv->v, kt, at + 16 * (size_t)c);
        for (int h = 0; h < G; h++) {
            const __m512 pj = _mm512_set1_ps(kt == HL_DTYPE_I8 ? p[h][j] * vs : p[h][j]);
            float *ah = acc + h * hd;
            for (int c = 0; c < nc; c++)
                _mm512_storeu_ps(ah + 16 * c, _mm512_fmadd_ps(pj, v[c], _mm512_loadu_ps(ah + 16 * c)));
        }
    }
}

ATT_INLINE void group_kv(const hl_attn_args *a, int kt, int i, int s, int kvh) {
    const hl_batch *b = a->batch;
    const int hd = a->geom->head_dim, G = a->n_heads / a->geom->n_kv_heads;
    const int32_t *table = b->block_table + (size_t)s * b->max_blocks;
    const int n_ctx = b->pos[i] + 1;
    const size_t q_off = (size_t)kvh * G * hd;
    const float *q = (const float *)((const uint8_t *)a->q->data + (size_t)i * a->q->row_bytes) + q_off;
    float acc[MAX_GROUP * MAX_HD] __attribute__((aligned(64)));
    float m[MAX_GROUP], l[MAX_GROUP], sc[MAX_GROUP][16];
    memset(acc, 0, sizeof(float) * (size_t)G * hd);
    for (int h = 0; h < G; h++) m[h] = -INFINITY, l[h] = 0.0f;
    for (int j0 = 0; j0 < n_ctx; j0 += HL_KV_BLOCK) {
        const int nj = n_ctx - j0 < HL_KV_BLOCK ? n_ctx - j0 : HL_KV_BLOCK;
        const int32_t base = table[j0 / HL_KV_BLOCK] * HL_KV_BLOCK;
        block_scores(a, kt, kvh, base, nj, q, G, sc);
        for (int h = 0; h < G; h++) block_softmax(sc[h], nj, a->scale, &m[h], &l[h], acc + h * hd, hd);
        block_pv(a, kt, kvh, base, nj, sc, G, acc);
    }
    float *o = (float *)((uint8_t *)a->out->data + (size_t)i * a->out->row_bytes) + q_off;
    for (int h = 0; h < G; h++) {
        const __m512 inv = _mm512_set1_ps(1.0f / l[h]);
        for (int d = 0; d < hd; d += 16)
            _mm512_storeu_ps(o + h * hd + d, _mm512_mul_ps(_mm512_loadu_ps(acc + h * hd + d), inv));
    }
}

static void group_f16(const hl_attn_args *a, int i, int s, int kvh) { group_kv(a, HL_DTYPE_F16, i, s, kvh); }
static void group_f32(const hl_attn_args *a, int i, int s, int kvh) { group_kv(a, HL_DTYPE_F32, i, s, kvh); }
static void group_i8(const hl_attn_args *a, int i, int s, int kvh) { group_kv(a, HL_DTYPE_I8, i, s, kvh); }

void hl_attention_avx512_group(const hl_attn_args *a, int i, int s, int kvh) {
    if (a->geom->kv_type == HL_DTYPE_F16) group_f16(a, i, s, kvh);
    else if (a->geom->kv_type == HL_DTYPE_I8) group_i8(a, i, s, kvh);
    else group_f32(a, i, s, kvh);
}
