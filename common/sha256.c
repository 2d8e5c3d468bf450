// sha256: SHA-256 after FIPS 180-4 sections 4.1.2, 4.2.2, 5.1.1 and 6.2 (see sha256.h).
#include "common/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

// First 32 bits of the fractional parts of the cube roots of the first 64 primes (4.2.2).
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t rd_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

// One 64-byte block into the state (6.2.2 steps 1-4).
static void compress(uint32_t state[8], const uint8_t *block) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++) w[t] = rd_be32(block + 4 * t);
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 =
            h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void hl_sha256_init(hl_sha256 *h) {
    // First 32 bits of the fractional parts of the square roots of the first 8 primes (5.3.3).
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(h->state, iv, sizeof iv);
    h->n_bytes = 0;
    h->n_block = 0;
}

void hl_sha256_update(hl_sha256 *h, const void *data, size_t n_bytes) {
    if (n_bytes == 0) return; // data may be NULL then, and memcpy must not see it
    const uint8_t *p = data;
    h->n_bytes += n_bytes;
    if (h->n_block > 0) {
        size_t take = 64 - h->n_block;
        if (take > n_bytes) take = n_bytes;
        memcpy(h->block + h->n_block, p, take);
        h->n_block += take;
        p += take;
        n_bytes -= take;
        if (h->n_block < 64) return;
        compress(h->state, h->block);
        h->n_block = 0;
    }
    for (; n_bytes >= 64; p += 64, n_bytes -= 64) compress(h->state, p);
    if (n_bytes > 0) memcpy(h->block, p, n_bytes);
    h->n_block = n_bytes;
}

void hl_sha256_final(hl_sha256 *h, uint8_t digest[HL_SHA256_BYTES]) {
    // Padding (5.1.1): a 1 bit, zeros up to 56 mod 64, then the length in bits, big-endian.
    uint64_t n_bits = h->n_bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t n_pad = (h->n_block < 56 ? 56 : 120) - h->n_block;
    for (int i = 0; i < 8; i++) pad[n_pad + i] = (uint8_t)(n_bits >> (56 - 8 * i));
    hl_sha256_update(h, pad, n_pad + 8);
    HL_ASSERT(h->n_block == 0);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(h->state[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
        digest[4 * i + 3] = (uint8_t)h->state[i];
    }
}

void hl_sha256_buf(const void *data, size_t n_bytes, uint8_t digest[HL_SHA256_BYTES]) {
    hl_sha256 h;
    hl_sha256_init(&h);
    hl_sha256_update(&h, data, n_bytes);
    hl_sha256_final(&h, digest);
}

void hl_sha256_hex(const uint8_t digest[HL_SHA256_BYTES], char hex[HL_SHA256_HEX_BYTES]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < HL_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int hl_sha256_parse_hex(const char *hex, uint8_t digest[HL_SHA256_BYTES], hl_error *err) {
    if (!hex) return hl_errorf(err, HL_ERR_INVAL, "sha256: no digest given");
    size_t n = strlen(hex);
    if (n != 64)
        return hl_errorf(err, HL_ERR_INVAL, "sha256: want 64 hex digits, got %zu characters", n);
    for (int i = 0; i < HL_SHA256_BYTES; i++) {
        int hi = hex_value(hex[2 * i]);
        int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return hl_errorf(err, HL_ERR_INVAL, "sha256: '%.64s' is not hex (position %d)", hex,
                             hi < 0 ? 2 * i : 2 * i + 1);
        digest[i] = (uint8_t)(hi << 4 | lo);
    }
    return HL_OK;
}

int hl_sha256_file(const char *path, uint8_t digest[HL_SHA256_BYTES], hl_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return hl_errorf(err, HL_ERR_IO, "open %s: %s", path, strerror(errno));
    size_t n_buf = 1 << 20;
    uint8_t *buf = hl_xmalloc(n_buf);
    hl_sha256 h;
    hl_sha256_init(&h);
    int rc = HL_OK;
    for (;;) {
        ssize_t n = read(fd, buf, n_buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = hl_errorf(err, HL_ERR_IO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        hl_sha256_update(&h, buf, (size_t)n);
    }
    free(buf);
    close(fd);
    if (rc == HL_OK) hl_sha256_final(&h, digest);
    return rc;
}
