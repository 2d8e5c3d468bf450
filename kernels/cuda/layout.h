// layout: where each code of a repacked CUDA weight lives (plain C, shared by the kernels,
// the device repack and the host tests, so the mapping is written once and testable without
// a GPU).
//
// A weight of N rows x K columns is padded to Np (N rounded up to 64) x Kp (K rounded up to
// 64) and cut into m-tiles of 16 rows and k-chunks of 64 columns. One (m-tile, k-chunk) holds
// 32 lanes x 16 bytes (int4: four u32 per lane, u32 j = k-tile j) or 2 x 32 lanes x 16 bytes
// (int8: uint4 h holds k-tiles 2h and 2h + 1, two u32 per k-tile). Lane L = 4g + t owns the
// mma.sync m16n8k16 A-fragment elements of rows g, g + 8 and columns 2t, 2t + 1, 2t + 8,
// 2t + 9 of each 16-column k-tile, in the order the kernel's lop3 / prmt dequantization
// produces them (matmul.cu).
//
//   int shift; size_t at = hl_i4_code_byte(mt, kc, KC, r, kk, &shift);  // byte + nibble of a code
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define HL_HOST_DEVICE __host__ __device__
#else
#define HL_HOST_DEVICE
#endif

// Row r (0..15) and column kk (0..63) inside its (m-tile, k-chunk) of nibble n (0..7) of int4
// word w (0..127 = lane * 4 + k-tile). Nibble n of the word: row g + 8 * (n % 2), column
// 2t + n / 4 + 8 * ((n / 2) % 2) of k-tile w % 4.
HL_HOST_DEVICE static inline void hl_i4_word_elem(int w, int n, int *r, int *kk) {
    const int lane = w / 4, g = lane / 4, t = lane % 4;
    *r = g + 8 * (n % 2);
    *kk = (w % 4) * 16 + 2 * t + n / 4 + 8 * ((n / 2) % 2);
}

// Row and column of byte b (0..3) of int8 word w (0..255 = (h * 32 + lane) * 4 + word): row
// g + 8 * (b % 2), column 2t + b / 2 + 8 * (word % 2) of k-tile 2h + word / 2.
HL_HOST_DEVICE static inline void hl_i8_word_elem(int w, int b, int *r, int *kk) {
    const int h = w / 128, lane = (w % 128) / 4, word = w % 4, g = lane / 4, t = lane % 4;
    *r = g + 8 * (b % 2);
    *kk = (2 * h + word / 2) * 16 + 2 * t + b / 2 + 8 * (word % 2);
}

// Byte offset (from the start of the codes) of the int4 code of element (16 mt + r, 64 kc + kk)
// of a weight with KC k-chunks per row, and the shift of its nibble. Inverse of hl_i4_word_elem.
HL_HOST_DEVICE static inline size_t hl_i4_code_byte(int64_t mt, int64_t kc, int64_t KC, int r, int kk,
                                                    int *shift) {
    const int c = kk % 16, j = kk / 16;
    const int lane = (r % 8) * 4 + (c % 8) / 2;
    const int nib = (r >= 8 ? 1 : 0) + (c >= 8 ? 2 : 0) + 4 * (c % 2);
    *shift = (nib % 2) * 4;
    return ((size_t)(mt * KC + kc) * 32 + (size_t)lane) * 16 + (size_t)j * 4 + (size_t)(nib / 2);
}

// Byte offset of the int8 code of element (16 mt + r, 64 kc + kk). Inverse of hl_i8_word_elem.
HL_HOST_DEVICE static inline size_t hl_i8_code_byte(int64_t mt, int64_t kc, int64_t KC, int r, int kk) {
    const int c = kk % 16, j = kk / 16;
    const int lane = (r % 8) * 4 + (c % 8) / 2;
    const int word = (j % 2) * 2 + (c >= 8 ? 1 : 0);
    const int byte = (r >= 8 ? 1 : 0) + 2 * (c % 2);
    return ((((size_t)(mt * KC + kc) * 2 + (size_t)(j / 2)) * 32 + (size_t)lane) * 16) + (size_t)word * 4 +
           (size_t)byte;
}
