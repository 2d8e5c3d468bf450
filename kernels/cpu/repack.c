// repack: GGUF blocks <-> the X16 interleaved layout (see repack.h).
#include "kernels/cpu/repack.h"

#include "engine/quant.h"

// How one GGUF block of a supported type maps into its group block.
typedef struct x16_desc {
    int n_fields;     // f16 header fields (d, or d and m), each stored as 16 values in a row
    bool qh;          // Q5_0: a 32-bit high-bit word follows the header (stored permuted)
    int n_chunks;     // 4-byte chunks per block (scales and quants)
    uint8_t flip;     // xor applied to each quant byte (Q8_0: signed -> q + 128)
    size_t bb;        // GGUF block bytes
    int64_t qk;       // values per block
    bool q6k;         // Q6_K: the f16 header ends the GGUF block (it still leads the group
                      //   block) and the chunks are reordered (q6k_source_chunk)
} x16_desc;

static bool desc_of(int type, x16_desc *d) {
    switch (type) {
    case HL_DTYPE_Q4_0: *d = (x16_desc){1, false, 4, 0, 18, HL_QK, false}; return true;
    case HL_DTYPE_Q4_1: *d = (x16_desc){2, false, 4, 0, 20, HL_QK, false}; return true;
    case HL_DTYPE_Q5_0: *d = (x16_desc){1, true, 4, 0, 22, HL_QK, false}; return true;
    case HL_DTYPE_Q8_0: *d = (x16_desc){1, false, 8, 0x80, 34, HL_QK, false}; return true;
    case HL_DTYPE_Q4_K: *d = (x16_desc){2, false, 35, 0, 144, HL_QK_K, false}; return true;
    case HL_DTYPE_Q5_K: *d = (x16_desc){2, false, 43, 0, 176, HL_QK_K, false}; return true;
    case HL_DTYPE_Q6_K: *d = (x16_desc){1, false, 52, 0, 210, HL_QK_K, true}; return true;
    default: return false;
    }
}

bool hl_repack_supports(int type) {
    x16_desc d;
    return desc_of(type, &d);
}

int64_t hl_repack_block_values(int type) {
    x16_desc d;
    HL_ASSERT(desc_of(type, &d));
    return d.qk;
}

size_t hl_repack_bytes(int type, int64_t k, int64_t rows) {
    x16_desc d;
    HL_ASSERT(desc_of(type, &d) && k % d.qk == 0 && rows > 0);
    const size_t groups = (size_t)((rows + HL_REPACK_ROWS - 1) / HL_REPACK_ROWS);
    return groups * HL_REPACK_ROWS * (size_t)(k / d.qk) * d.bb;
}

// The GGUF high bit (qh bit) that lands at bit k of byte j of the X16 word: k < 4 is chunk k's
// low-nibble value 4k + j, k >= 4 chunk k - 4's high-nibble value 16 + 4(k - 4) + j.
static int qh_source_bit(int j, int k) { return k < 4 ? 4 * k + j : 16 + 4 * (k - 4) + j; }

static uint32_t qh_permute(uint32_t v, bool to_x16) {
    uint32_t out = 0;
    for (int j = 0; j < 4; j++) {
        for (int k = 0; k < 8; k++) {
            const int src = qh_source_bit(j, k), dst = 8 * j + k;
            if (to_x16) out |= ((v >> src) & 1u) << dst;
            else out |= ((v >> dst) & 1u) << src;
        }
    }
    return out;
}

// The GGUF chunk (4 bytes at 4·result) stored as chunk p of a Q6_K group block, in the order
// the kernel reads them: the 4 scale chunks (48..51), then for each quarter q = 2n + h and
// c = 0..3: ql chunk 16n + 4h + c, ql chunk 16n + 8 + 4h + c, qh chunk 32 + 8n + 4h + c.
static int q6k_source_chunk(int p) {
    if (p < 4) return 48 + p;
    const int q = (p - 4) / 12, c = (p - 4) % 12 / 3, part = (p - 4) % 3, n = q / 2, h = q % 2;
    if (part == 0) return 16 * n + 4 * h + c;
    if (part == 1) return 16 * n + 8 + 4 * h + c;
    return 32 + 8 * n + 4 * h + c;
}

// Copies one GGUF block (gguf) to or from row i (0..15) of a group block (grp): the f16
// header fields 2 bytes at a time, the chunks 4 bytes at a time (flipped by d->flip).
static void move_block(const x16_desc *d, int i, uint8_t *grp, uint8_t *gguf, bool to_x16) {
    const size_t hdr = 2 * (size_t)d->n_fields + (d->qh ? 4 : 0);
    const uint32_t flip = d->flip * 0x01010101u;
    uint8_t *gguf_hdr = d->q6k ? gguf + d->bb - hdr : gguf;
    uint8_t *gguf_chunks = d->q6k ? gguf : gguf + hdr;
    for (int f = 0; f < d->n_fields; f++) {
        uint8_t *x = grp + (size_t)f * 2 * HL_REPACK_ROWS + 2 * (size_t)i, *y = gguf_hdr + 2 * (size_t)f;
        if (to_x16) memcpy(x, y, 2);
        else memcpy(y, x, 2);
    }
    if (d->qh) {
        uint8_t *x = grp + (size_t)d->n_fields * 2 * HL_REPACK_ROWS + 4 * (size_t)i;
        uint8_t *y = gguf_hdr + 2 * (size_t)d->n_fields;
        uint32_t v;
        memcpy(&v, to_x16 ? y : x, 4);
        v = qh_permute(v, to_x16);
        memcpy(to_x16 ? x : y, &v, 4);
    }
    for (int c = 0; c < d->n_chunks; c++) {
        uint8_t *x = grp + hdr * HL_REPACK_ROWS + (size_t)c * 4 * HL_REPACK_ROWS + 4 * (size_t)i;
        uint8_t *y = gguf_chunks + 4 * (size_t)(d->q6k ? q6k_source_chunk(c) : c);
        uint32_t v;
        memcpy(&v, to_x16 ? y : x, 4);
        v ^= flip;
        memcpy(to_x16 ? x : y, &v, 4);
    }
}

void hl_repack_x16(int type, int64_t k, int64_t rows, const void *src, void *dst) {
    x16_desc d;
    HL_ASSERT(desc_of(type, &d));
    const int64_t nb = k / d.qk, groups = (rows + HL_REPACK_ROWS - 1) / HL_REPACK_ROWS;
    const size_t gb = d.bb * HL_REPACK_ROWS, row_bytes = d.bb * (size_t)nb;
    memset(dst, 0, (size_t)groups * (size_t)nb * gb);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *s = (uint8_t *)src + (size_t)r * row_bytes; // only read (to_x16)
        uint8_t *g = (uint8_t *)dst + (size_t)(r / HL_REPACK_ROWS) * (size_t)nb * gb;
        for (int64_t b = 0; b < nb; b++)
            move_block(&d, (int)(r % HL_REPACK_ROWS), g + (size_t)b * gb, s + (size_t)b * d.bb, true);
    }
}

void hl_repack_block(int type, int64_t k, const void *w, int64_t r, int64_t b, void *dst) {
    x16_desc d;
    HL_ASSERT(desc_of(type, &d));
    const int64_t nb = k / d.qk;
    const size_t gb = d.bb * HL_REPACK_ROWS;
    uint8_t *g = (uint8_t *)w + ((size_t)(r / HL_REPACK_ROWS) * (size_t)nb + (size_t)b) * gb; // only read
    move_block(&d, (int)(r % HL_REPACK_ROWS), g, dst, false);
}

void hl_repack_row(int type, int64_t k, const void *w, int64_t r, void *dst) {
    x16_desc d;
    HL_ASSERT(desc_of(type, &d));
    for (int64_t b = 0; b < k / d.qk; b++) hl_repack_block(type, k, w, r, b, (uint8_t *)dst + (size_t)b * d.bb);
}
