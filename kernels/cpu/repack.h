// repack: the CPU backend's interleaved weight layout, HL_CPU_LAYOUT_X16, and the conversions
// to and from GGUF blocks (layout 0).
//
// X16 groups weight rows by 16 (the last group padded with zero rows). For every block index
// b of a row, the 16 rows' blocks are stored together as one "group block", scales first and
// then the quants in 4-byte chunks, row after row: chunk c of rows 0..15 is 64 bytes, so one
// 512-bit load gives 4 consecutive quants of 16 rows, one row per 32-bit lane. A u8·s8 dot
// (vpdpbusd) against a broadcast 4-byte activation chunk then accumulates 16 rows at once,
// with no horizontal sums. Group g's nb group blocks are contiguous (a GEMV streams them).
//
//   Q4_0  d[16] f16 | qs[4][16][4]: chunk c = GGUF bytes 4c..4c+3 (low nibble value 4c+i,
//         high nibble value 16+4c+i)                                          288 bytes
//   Q4_1  d[16] f16 | m[16] f16 | qs as Q4_0                                 320 bytes
//   Q5_0  d[16] f16 | h[16] u32 | qs as Q4_0: bit k of byte j of h is the high bit of chunk
//         k's value 4k+j (k < 4), or of chunk (k-4)'s high-nibble value 16+4(k-4)+j  352 bytes
//   Q8_0  d[16] f16 | qs[8][16][4]: chunk c = values 4c..4c+3, stored as q + 128 (unsigned)
//                                                                             544 bytes
// The K types (256 values a block) keep the GGUF bytes after the f16 header(s) as 4-byte
// chunks, scales included (the kernels decode the 6-bit scales of 16 rows at once):
//   Q4_K  d[16] | dmin[16] f16 | chunks 0..2 = scales[12], 3..34 = qs[128]   2304 bytes
//   Q5_K  d[16] | dmin[16] f16 | chunks 0..2 scales, 3..10 qh[32], 11..42 qs  2816 bytes
//   Q6_K  d[16] f16 (last in GGUF) | the 52 chunks of ql[128] qh[64] scales[16] in the order
//         the kernel reads them: scales, then per 64 values the ql and qh chunks they use
//         (repack.c's q6k_source_chunk)                                      3360 bytes
// A group block is exactly 16 GGUF blocks, so a repacked weight takes ceil(rows/16) * 16 rows.
//
//   size_t n = hl_repack_bytes(HL_DTYPE_Q4_0, k, rows);
//   hl_repack_x16(HL_DTYPE_Q4_0, k, rows, gguf_bytes, dst);
//   hl_repack_row(HL_DTYPE_Q4_0, k, dst, r, gguf_row);       // row r back in GGUF blocks
#pragma once

#include "common/hl.h"

#define HL_CPU_LAYOUT_X16 1 // hl_tensor.layout of a weight repacked by hl_repack_x16
#define HL_REPACK_ROWS 16   // rows per group

// True when `type` has an X16 layout (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K).
bool hl_repack_supports(int type);

// Values per GGUF block of a supported type (32, or 256 for the K types).
int64_t hl_repack_block_values(int type);

// Bytes of a repacked (rows, k) weight of a supported type: ceil(rows / 16) * 16 GGUF rows.
// k must be a multiple of hl_repack_block_values(type).
size_t hl_repack_bytes(int type, int64_t k, int64_t rows);

// Rewrites `rows` GGUF rows of k elements (src, rows packed back to back) into X16 at dst
// (hl_repack_bytes long; padding rows are zero). Cannot fail for a supported type.
void hl_repack_x16(int type, int64_t k, int64_t rows, const void *src, void *dst);

// Writes block b of row r of an X16 weight w (k elements per row) as one GGUF block at dst.
void hl_repack_block(int type, int64_t k, const void *w, int64_t r, int64_t b, void *dst);

// Writes row r of an X16 weight w back as one GGUF row (hl_quant_row_bytes(type, k) bytes) at
// dst: the inverse of hl_repack_x16, bit for bit.
void hl_repack_row(int type, int64_t k, const void *w, int64_t r, void *dst);
