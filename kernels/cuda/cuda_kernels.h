// cuda_kernels: the extern "C" launchers of every CUDA kernel family (one .cu per family),
// called by backend_cuda.cu. Plain C types only, so the declarations read the same from C.
// Every launcher queues work on `stream` and returns at once; launch errors are recorded through
// HL_CUDA_CHECK and reported by the backend's next sync (cuda_common.cuh). Shapes are the caller's to check.
// Device pointers everywhere unless a parameter says "host".
//
//   hl_cuda_qweight w = ...;                           // from upload_weight (backend_cuda.cu)
//   hl_cuda_act_to_half(s, x16, kp, tp, x, ldx, t, k, false);
//   hl_cuda_matmul_q(s, &w, x16, kp, t, out, ldo, ws, splits);
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *hl_cuda_stream;

// Device weight layouts (hl_tensor.layout of a CUDA weight).
enum hl_cuda_layout {
    HL_CUDA_LAYOUT_GGUF = 0, // not used for CUDA weights
    HL_CUDA_LAYOUT_I4 = 1,   // int4 codes + (scale, min) per 32 columns  (Q4_0, Q4_1, Q4_K)
    HL_CUDA_LAYOUT_I8 = 2,   // int8 codes + (scale, min) per 32 or 16   (Q8_0, Q5_0, Q5_K, Q6_K)
    HL_CUDA_LAYOUT_F16 = 3,  // plain (N, K) fp16 row-major             (F16, F32)
    HL_CUDA_LAYOUT_BF16 = 4, // plain (N, K) bf16 row-major             (BF16)
};

// A repacked weight: n rows of k columns, padded to np (multiple of 64) x kp (multiple of 64).
typedef struct hl_cuda_qweight {
    const void *codes;   // (np/16, kp/64, 32 lanes, 16 or 32 bytes) see cuda_common.cuh
    const void *params;  // (np/16, kp/gs, 16) half2 (scale, min)
    int64_t n, k, np, kp;
    int bits;            // 4 or 8
    int gs;              // group size: 32, or 16 (Q6_K)
} hl_cuda_qweight;

// Bytes of the code area and of the parameter area for a layout (bits, gs) of n x k.
size_t hl_cuda_qweight_code_bytes(int bits, int64_t n, int64_t k);
size_t hl_cuda_qweight_param_bytes(int gs, int64_t n, int64_t k);

// ---- repack.cu ----
// Repacks rows [row0, row0 + n_rows) of a GGUF weight of `type` (src: those rows, row_bytes
// apart, in device memory) into w (whose codes/params buffers are writable). row0 is a multiple
// of 64; the call writes whole 64-row tiles, so rows past w->n (up to w->np) and columns past
// w->k (up to w->kp) of the tiles it covers get zero codes and parameters.
void hl_cuda_repack(hl_cuda_stream s, int type, const void *src, size_t row_bytes, int64_t row0,
                    int64_t n_rows, const hl_cuda_qweight *w);
// Test helper: codes (n, k) int8 (int4: 0..15; int8: signed code) and params (n, k/gs) half2
// as uint32, read back from the packed layout.
void hl_cuda_unpack(hl_cuda_stream s, const hl_cuda_qweight *w, int8_t *codes, uint32_t *params);
// out (n, ld_out) = rows ids[0..n) of w dequantized (ids NULL: rows row0 + i). out_f16 picks
// fp16 output (for cuBLAS), else f32. plain (F16/BF16 layouts): w->codes is the (N, K) matrix
// and w->bits is 16 (fp16) or -16 (bf16).
void hl_cuda_dequant_rows(hl_cuda_stream s, const hl_cuda_qweight *w, const int32_t *ids, int64_t row0,
                          int n, void *out, int64_t ld_out, int out_f16);

// ---- elementwise.cu ----
// dst (tp, kp) half (or bf16) = src (t, k) f32 rows ldx floats apart, zero-padded.
void hl_cuda_act_to_half(hl_cuda_stream s, void *dst, int64_t kp, int64_t tp, const float *src,
                         int64_t ldx, int64_t t, int64_t k, int to_bf16);
void hl_cuda_rmsnorm(hl_cuda_stream s, float *out, int64_t ldo, const float *x, int64_t ldx,
                     const float *w, int64_t rows, int64_t n, float eps);
// x += y (skipped when y is NULL), then out = rmsnorm(x) * w, row by row; out must not alias x or y.
void hl_cuda_add_rmsnorm(hl_cuda_stream s, float *out, int64_t ldo, float *x, int64_t ldx, const float *y,
                         int64_t ldy, const float *w, int64_t rows, int64_t n, float eps);
void hl_cuda_swiglu(hl_cuda_stream s, float *out, int64_t ldo, const float *g, int64_t ldg,
                    const float *u, int64_t ldu, int64_t rows, int64_t n);
void hl_cuda_add(hl_cuda_stream s, float *out, int64_t ldo, const float *a, int64_t lda,
                 const float *b, int64_t ldb, int64_t rows, int64_t n);
void hl_cuda_get_rows(hl_cuda_stream s, float *out, int64_t ldo, const float *x, int64_t ldx,
                      const int32_t *rows, int n, int64_t ncols);

// ---- rope_kv.cu ----
// Element type of the paged K/V pools (kernels/backend.h: fp16, fp32, or int8 codes with one
// float scale per (block, head, token) row).
enum hl_cuda_kv { HL_CUDA_KV_F32 = 0, HL_CUDA_KV_F16 = 1, HL_CUDA_KV_I8 = 2 };

typedef struct hl_cuda_rope_args {
    float *q; int64_t ldq;               // (n_tokens, n_heads * head_dim), rotated in place
    const float *k; int64_t ldk;         // (n_tokens, n_kv_heads * head_dim)
    const float *v; int64_t ldv;
    void *kc, *vc;                       // paged pools (n_blocks, n_kv_heads, 16, head_dim) of kv_type
    float *k_scale, *v_scale;            // int8: (n_blocks, n_kv_heads, 16) row scales; else NULL
    const int32_t *pos, *slot;           // (n_tokens)
    const float *freq_factors;           // (n_rot / 2) or NULL
    int n_tokens, n_heads, n_kv_heads, head_dim, n_rot, neox;
    int kv_type;                         // enum hl_cuda_kv; int8 needs head_dim <= 256
    float theta, freq_scale;
} hl_cuda_rope_args;
void hl_cuda_rope_kv(hl_cuda_stream s, const hl_cuda_rope_args *a);

// ---- attention.cu ----
typedef struct hl_cuda_attn_args {
    float *out; int64_t ldo;             // (n_tokens, n_heads * head_dim)
    const float *q; int64_t ldq;
    const void *kc, *vc;                 // paged pools: fp16, or int8 codes (kv_i8)
    const float *k_scale, *v_scale;      // int8: (n_blocks, n_kv_heads, 16) row scales; else NULL
    int kv_i8;                           // 1: int8 pools, value = code * row scale
    const int32_t *pos;                  // (n_tokens)
    const int32_t *block_table;          // (n_seqs, max_blocks)
    int max_blocks, n_heads, n_kv_heads, head_dim;
    float scale;
    // decode: one query token per listed sequence
    const int32_t *dec_seq, *dec_tok;    // (n_dec) sequence and its token
    int n_dec;
    int n_splits;                        // chunks of HL_CUDA_ATTN_CHUNK tokens (from max_blocks)
    float *ws;                           // (n_dec, n_heads, n_splits, head_dim + 2) partials
    // prefill: tiles of pf_rows rows (token x head-in-group) of the other sequences
    const int32_t *pf_item;              // (n_pf, 4): sequence, its first token, its token count, first row
    int n_pf;
    int pf_rows;                         // hl_cuda_attn_prefill_rows(head_dim)
} hl_cuda_attn_args;
#define HL_CUDA_ATTN_CHUNK 256
// True when hl_cuda_attention (and rope_kv) handle head_dim with `group` query heads per KV head.
bool hl_cuda_attn_fits(int head_dim, int group);
void hl_cuda_attention(hl_cuda_stream s, const hl_cuda_attn_args *a);
// Rows per prefill tile, which also picks the prefill kernel: 64 for head_dim 64 and 128
// (tensor-core kernel), 16 for the others (scalar fp32 kernel).
int hl_cuda_attn_prefill_rows(int head_dim);

// ---- matmul.cu ----
// out (t, ld_out) f32 = x16 (t rows of kp halfs; rows up to t rounded to 64 zero) · wᵀ with w
// repacked (int4/int8). splits > 1 uses ws (splits, round_up(t, 64), w->np) floats.
void hl_cuda_matmul_q(hl_cuda_stream s, const hl_cuda_qweight *w, const void *x16, int64_t t,
                      float *out, int64_t ld_out, float *ws, int splits);
// Tokens per n-tile group of the kernel for t tokens (8, 16, 32 or 64): x16 needs
// round_up(t, this) rows, zero past t.
int64_t hl_cuda_matmul_tile_tokens(int64_t t);
// Split count for the tensor-core kernel at t tokens on a device with n_sms SMs.
int hl_cuda_matmul_splits(const hl_cuda_qweight *w, int64_t t, int n_sms);
// Sets the dynamic shared memory limits of every matmul instantiation (once per device).
int hl_cuda_matmul_init(void);

// ---- synth.cu ----
// dst[i] = hl_synth_value(seed, name, i0 + i, std) for i < n (f32), or 1 when std == 0.
void hl_cuda_synth_fill(hl_cuda_stream s, float *dst, int64_t n, uint64_t seed, uint64_t name_hash,
                        uint64_t i0, float std);
// dst = GGUF Q4_0 (bits 4) or Q8_0 (bits 8) blocks of src (n_blocks x 32 floats), exactly as
// engine/quant.c's reference quantizers.
void hl_cuda_quant_blocks(hl_cuda_stream s, int bits, const float *src, void *dst, int64_t n_blocks);
void hl_cuda_f32_to_f16(hl_cuda_stream s, const float *src, void *dst, int64_t n);

// ---- topk.cu ----
// Per row r < rows of x (ncols floats, rows ldx apart): vals[r * ldv + i] / ids[r * ldi + i]
// for i < k (1 <= k <= HL_TOPK_MAX, k <= ncols) get the k best values and their columns,
// best first (equal values: lower column first), lse[r * ldl] the row's log-sum-exp at
// inv_temp[r] (device memory, rows floats; NULL: 1), NaN when the row holds a NaN or +inf —
// the topk op of kernels/backend.h. One block per row, no scratch memory: capturable in a graph.
void hl_cuda_topk(hl_cuda_stream s, float *vals, int64_t ldv, int32_t *ids, int64_t ldi, float *lse,
                  int64_t ldl, const float *x, int64_t ldx, const float *inv_temp, int64_t rows, int64_t ncols,
                  int k);

#ifdef __cplusplus
}
#endif
