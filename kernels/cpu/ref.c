// ref: scalar reference ops (see ref.h). Clarity first: double sums, no threads, no SIMD.
#include "kernels/cpu/ref.h"

#include <math.h>
#include <stdlib.h>

#include "engine/quant.h"

static inline float *row_f32(const hl_tensor *t, int64_t i) {
    return (float *)((uint8_t *)t->data + (size_t)i * t->row_bytes);
}

static inline const uint8_t *row_bytes(const hl_tensor *t, int64_t i) {
    return (const uint8_t *)t->data + (size_t)i * t->row_bytes;
}

static void dequant_row(const hl_tensor *t, int64_t i, float *dst) {
    hl_error err = {0};
    int rc = hl_quant_dequantize(t->type, row_bytes(t, i), dst, t->ne[0], &err);
    HL_ASSERT(rc == HL_OK);
}

void hl_ref_embed(hl_tensor *out, const hl_tensor *table, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) {
        HL_ASSERT(ids[i] >= 0 && ids[i] < table->ne[1]);
        dequant_row(table, ids[i], row_f32(out, i));
    }
}

void hl_ref_matmul(hl_tensor *out, const hl_tensor *w, const hl_tensor *x) {
    const int64_t k = w->ne[0];
    float *wrow = hl_xmalloc((size_t)k * sizeof(float));
    for (int64_t r = 0; r < w->ne[1]; r++) {
        dequant_row(w, r, wrow);
        for (int64_t t = 0; t < x->ne[1]; t++) {
            const float *xr = row_f32(x, t);
            double sum = 0;
            for (int64_t j = 0; j < k; j++) sum += (double)wrow[j] * xr[j];
            row_f32(out, t)[r] = (float)sum;
        }
    }
    free(wrow);
}

void hl_ref_rmsnorm(hl_tensor *out, const hl_tensor *x, const hl_tensor *w, float eps) {
    const int64_t n = x->ne[0];
    const float *wv = w->data;
    for (int64_t i = 0; i < x->ne[1]; i++) {
        const float *xr = row_f32(x, i);
        double ss = 0;
        for (int64_t j = 0; j < n; j++) ss += (double)xr[j] * xr[j];
        const double inv = 1.0 / sqrt(ss / (double)n + eps);
        float *o = row_f32(out, i);
        for (int64_t j = 0; j < n; j++) o[j] = (float)(xr[j] * inv * wv[j]);
    }
}

// Rotates one head vector x[0..head_dim) in place by the angles of `pos`.
static void rope_head(float *x, int pos, const hl_rope *rope) {
    const int half = rope->n_rot / 2;
    for (int i = 0; i < half; i++) {
        double angle = pos * (double)rope->freq_scale * pow(rope->theta, -2.0 * i / rope->n_rot);
        if (rope->freq_factors) angle /= rope->freq_factors[i];
        const double c = cos(angle), s = sin(angle);
        const int i0 = rope->neox ? i : 2 * i;
        const int i1 = rope->neox ? i + half : 2 * i + 1;
        const double x0 = x[i0], x1 = x[i1];
        x[i0] = (float)(x0 * c - x1 * s);
        x[i1] = (float)(x0 * s + x1 * c);
    }
}

// rintf(x) as an int8 code; NaN and out-of-range values (only from non-finite rows) are
// clamped instead of being undefined conversions.
static int8_t i8_code(float x) {
    const float r = rintf(x);
    if (r >= -127.0f && r <= 127.0f) return (int8_t)r;
    if (r > 0) return 127;
    return r < 0 ? -127 : 0;
}

// The int8 K/V row format of kernels/backend.h: codes of src[0..n) into dst, the scale into
// *scale.
static void kv_store_i8(int8_t *dst, float *scale, const float *src, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fabsf(src[i]) > amax ? fabsf(src[i]) : amax;
    *scale = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < n; i++) dst[i] = i8_code(src[i] * inv);
}

// Stores the row src[0..n) at element offset `at` of a KV buffer of type kv_type (int8 rows:
// their scale at scales[at / n]).
static void kv_store(void *base, float *scales, int kv_type, size_t at, const float *src, int n) {
    if (kv_type == HL_DTYPE_F32) {
        memcpy((float *)base + at, src, (size_t)n * sizeof(float));
        return;
    }
    if (kv_type == HL_DTYPE_I8) {
        kv_store_i8((int8_t *)base + at, scales + at / (size_t)n, src, n);
        return;
    }
    HL_ASSERT(kv_type == HL_DTYPE_F16);
    uint16_t *dst = (uint16_t *)base + at;
    for (int i = 0; i < n; i++) dst[i] = hl_f32_to_f16(src[i]);
}

// Element offset of (slot, kv head h, dim 0) in the paged layout.
static size_t kv_offset(const hl_kv_geom *g, int slot, int h) {
    const size_t block = (size_t)(slot / HL_KV_BLOCK), t = (size_t)(slot % HL_KV_BLOCK);
    return ((block * (size_t)g->n_kv_heads + (size_t)h) * HL_KV_BLOCK + t) * (size_t)g->head_dim;
}

void hl_ref_rope_kv(hl_tensor *q, const hl_tensor *k, const hl_tensor *v, const hl_kv_layer *kv,
                    const hl_kv_geom *geom, const hl_batch *batch, const hl_rope *rope) {
    const int hd = geom->head_dim;
    const int n_heads = (int)(q->ne[0] / hd);
    float *tmp = hl_xmalloc((size_t)hd * sizeof(float));
    for (int i = 0; i < batch->n_tokens; i++) {
        float *qr = row_f32(q, i);
        for (int h = 0; h < n_heads; h++) rope_head(qr + (size_t)h * hd, batch->pos[i], rope);
        for (int h = 0; h < geom->n_kv_heads; h++) {
            const size_t at = kv_offset(geom, batch->slot[i], h);
            memcpy(tmp, row_f32(k, i) + (size_t)h * hd, (size_t)hd * sizeof(float));
            rope_head(tmp, batch->pos[i], rope);
            kv_store(kv->k, kv->k_scale, geom->kv_type, at, tmp, hd);
            kv_store(kv->v, kv->v_scale, geom->kv_type, at, row_f32(v, i) + (size_t)h * hd, hd);
        }
    }
    free(tmp);
}

// Element `at` of a KV buffer; int8: code * scale of its row (rows of hd elements).
static double kv_load(const void *base, const float *scales, int kv_type, size_t at, int hd) {
    if (kv_type == HL_DTYPE_F32) return ((const float *)base)[at];
    if (kv_type == HL_DTYPE_I8) return (double)((const int8_t *)base)[at] * scales[at / (size_t)hd];
    return hl_f16_to_f32(((const uint16_t *)base)[at]);
}

// One query head of one token over positions 0..n_ctx-1 of sequence s.
static void attend_head(float *o, const float *qh, int kvh, int n_ctx, const int32_t *table,
                        const hl_kv_layer *kv, const hl_kv_geom *g, float scale, double *p) {
    const int hd = g->head_dim;
    double max = -INFINITY;
    for (int j = 0; j < n_ctx; j++) {
        const size_t at = kv_offset(g, table[j / HL_KV_BLOCK] * HL_KV_BLOCK + j % HL_KV_BLOCK, kvh);
        double dot = 0;
        for (int d = 0; d < hd; d++)
            dot += qh[d] * kv_load(kv->k, kv->k_scale, g->kv_type, at + (size_t)d, hd);
        p[j] = dot * scale;
        if (p[j] > max) max = p[j];
    }
    double sum = 0;
    for (int j = 0; j < n_ctx; j++) {
        p[j] = exp(p[j] - max);
        sum += p[j];
    }
    for (int d = 0; d < hd; d++) {
        double acc = 0;
        for (int j = 0; j < n_ctx; j++) {
            const size_t at = kv_offset(g, table[j / HL_KV_BLOCK] * HL_KV_BLOCK + j % HL_KV_BLOCK, kvh);
            acc += p[j] * kv_load(kv->v, kv->v_scale, g->kv_type, at + (size_t)d, hd);
        }
        o[d] = (float)(acc / sum);
    }
}

void hl_ref_attention(hl_tensor *out, const hl_tensor *q, const hl_kv_layer *kv,
                      const hl_kv_geom *geom, const hl_batch *batch, int n_heads, float scale) {
    const int hd = geom->head_dim;
    const int group = n_heads / geom->n_kv_heads;
    for (int s = 0; s < batch->n_seqs; s++) {
        const int32_t *table = batch->block_table + (size_t)s * batch->max_blocks;
        double *p = hl_xmalloc((size_t)(batch->ctx_len[s] > 0 ? batch->ctx_len[s] : 1) * sizeof(double));
        for (int i = batch->seq_start[s]; i < batch->seq_start[s + 1]; i++) {
            const int n_ctx = batch->pos[i] + 1;
            HL_ASSERT(n_ctx <= batch->ctx_len[s]);
            for (int h = 0; h < n_heads; h++) {
                attend_head(row_f32(out, i) + (size_t)h * hd, row_f32(q, i) + (size_t)h * hd,
                            h / group, n_ctx, table, kv, geom, scale, p);
            }
        }
        free(p);
    }
}

void hl_ref_swiglu(hl_tensor *out, const hl_tensor *gate, const hl_tensor *up) {
    for (int64_t i = 0; i < gate->ne[1]; i++) {
        const float *g = row_f32(gate, i), *u = row_f32(up, i);
        float *o = row_f32(out, i);
        for (int64_t j = 0; j < gate->ne[0]; j++) {
            const double x = g[j];
            o[j] = (float)(x / (1.0 + exp(-x)) * u[j]);
        }
    }
}

void hl_ref_add(hl_tensor *out, const hl_tensor *a, const hl_tensor *b) {
    for (int64_t i = 0; i < a->ne[1]; i++) {
        const float *x = row_f32(a, i), *y = row_f32(b, i);
        float *o = row_f32(out, i);
        for (int64_t j = 0; j < a->ne[0]; j++) o[j] = x[j] + y[j];
    }
}

void hl_ref_add_rmsnorm(hl_tensor *out, hl_tensor *x, const hl_tensor *y, const hl_tensor *w, float eps) {
    if (y) hl_ref_add(x, x, y);
    hl_ref_rmsnorm(out, x, w, eps);
}

void hl_ref_get_rows(hl_tensor *out, const hl_tensor *x, const int32_t *rows, int n) {
    for (int i = 0; i < n; i++) {
        HL_ASSERT(rows[i] >= 0 && rows[i] < x->ne[1]);
        memmove(row_f32(out, i), row_f32(x, rows[i]), (size_t)x->ne[0] * sizeof(float));
    }
}

// ---- topk ----

typedef struct ref_cand {
    float v;
    int32_t id;
} ref_cand;

static int cmp_ref_cand(const void *pa, const void *pb) {
    const ref_cand *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

// max * it + log Σ exp((x - max) * it) over xr[0..n) in double, with the topk op's special
// cases.
static float ref_lse(const float *xr, int64_t n, double it) {
    double max = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        if (isnan(xr[j]) || xr[j] == INFINITY) return NAN;
        if (xr[j] > max) max = xr[j];
    }
    if (max == -INFINITY) return -INFINITY;
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += exp(((double)xr[j] - max) * it);
    return (float)(max * it + log(sum));
}

void hl_ref_topk(hl_tensor *vals, hl_tensor *ids, hl_tensor *lse, const hl_tensor *x, const float *inv_temp,
                 int k) {
    const int64_t n = x->ne[0];
    HL_ASSERT(k >= 1 && k <= n);
    ref_cand *c = hl_xmalloc((size_t)n * sizeof(*c));
    for (int64_t r = 0; r < x->ne[1]; r++) {
        const float *xr = row_f32(x, r);
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++) {
            if (!isnan(xr[j])) c[m++] = (ref_cand){xr[j], (int32_t)j};
        }
        qsort(c, (size_t)m, sizeof(*c), cmp_ref_cand);
        float *v = row_f32(vals, r);
        int32_t *id = (int32_t *)row_f32(ids, r);
        for (int i = 0; i < k; i++) {
            v[i] = i < m ? c[i].v : -INFINITY;
            id[i] = i < m ? c[i].id : -1;
        }
        row_f32(lse, r)[0] = ref_lse(xr, n, inv_temp ? (double)inv_temp[r] : 1.0);
    }
    free(c);
}
