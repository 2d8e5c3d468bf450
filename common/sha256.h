// sha256: SHA-256 (FIPS 180-4) for checking downloaded model files.
//
// Hand-written rather than taken from the TLS library libcurl links against: which
// TLS library that is (OpenSSL, GnuTLS, mbedTLS) varies by distribution, and the
// hash is ~150 lines, so common/ stays free of that dependency. It is not a hot
// path: scalar code hashes a few hundred MB/s, faster than most downloads.
//
// Incremental: feed any number of update() calls with pieces of any size; the
// digest is the same as one call over the concatenation.
//
//   hl_sha256 h;
//   hl_sha256_init(&h);
//   hl_sha256_update(&h, buf, n);          // as often as needed
//   uint8_t d[32]; char hex[65];
//   hl_sha256_final(&h, d); hl_sha256_hex(d, hex);
#pragma once

#include "common/hl.h"

#define HL_SHA256_BYTES     32
#define HL_SHA256_HEX_BYTES 65 // 64 lowercase hex digits + NUL

typedef struct hl_sha256 {
    uint32_t state[8];
    uint64_t n_bytes;  // total bytes fed so far
    uint8_t block[64]; // pending input that does not fill a block yet
    size_t n_block;    // bytes used in block, < 64
} hl_sha256;

// Starts a new hash in caller-owned storage. Cannot fail.
void hl_sha256_init(hl_sha256 *h);

// Feeds n_bytes of data (data may be NULL when n_bytes is 0). Cannot fail.
void hl_sha256_update(hl_sha256 *h, const void *data, size_t n_bytes);

// Writes the 32-byte digest. h must be re-initialised before it is used again.
void hl_sha256_final(hl_sha256 *h, uint8_t digest[HL_SHA256_BYTES]);

// One call over a whole buffer.
void hl_sha256_buf(const void *data, size_t n_bytes, uint8_t digest[HL_SHA256_BYTES]);

// Formats a digest as 64 lowercase hex digits plus NUL.
void hl_sha256_hex(const uint8_t digest[HL_SHA256_BYTES], char hex[HL_SHA256_HEX_BYTES]);

// Parses exactly 64 hex digits (either case, no prefix or spaces) into a digest.
// HL_OK, or HL_ERR_INVAL naming what is wrong with the string.
int hl_sha256_parse_hex(const char *hex, uint8_t digest[HL_SHA256_BYTES], hl_error *err);

// Hashes a whole file by reading it in chunks. HL_OK, or HL_ERR_IO with strerror text.
int hl_sha256_file(const char *path, uint8_t digest[HL_SHA256_BYTES], hl_error *err);
