// strmap: open addressing with linear probing over a power-of-two table (see strmap.h).
#include "tokenizer/strmap.h"

#include <stdlib.h>

typedef struct slot {
    const char *key; // borrowed; NULL marks an empty slot
    uint32_t len;
    uint32_t hash32; // upper hash bits, compared before the bytes
    int32_t value;
} slot;

struct hl_strmap {
    slot *slots; // owned, n_slots entries
    size_t n_slots; // power of two
    size_t count;
};

uint64_t hl_strmap_hash(const void *key, size_t len) {
    const uint8_t *p = key;
    uint64_t h = 0x243f6a8885a308d3ULL ^ (len * 0x9e3779b97f4a7c15ULL);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    return hl_hash64(h ^ tail);
}

hl_strmap *hl_strmap_create(size_t n_expected) {
    hl_strmap *m = hl_xcalloc(1, sizeof *m);
    size_t n = 16;
    while (n < n_expected * 2) n *= 2;
    m->slots = hl_xcalloc(n, sizeof *m->slots);
    m->n_slots = n;
    return m;
}

void hl_strmap_free(hl_strmap *m) {
    if (!m) return;
    free(m->slots);
    free(m);
}

// Index of key's slot, or of the empty slot where it would go.
static size_t find_slot(const hl_strmap *m, const char *key, size_t len, uint64_t h) {
    size_t mask = m->n_slots - 1;
    size_t i = (size_t)h & mask;
    uint32_t h32 = (uint32_t)(h >> 32);
    for (;;) {
        const slot *s = &m->slots[i];
        if (!s->key) return i;
        if (s->hash32 == h32 && s->len == len && memcmp(s->key, key, len) == 0) return i;
        i = (i + 1) & mask;
    }
}

static void grow(hl_strmap *m) {
    slot *old = m->slots;
    size_t n_old = m->n_slots;
    m->n_slots *= 2;
    m->slots = hl_xcalloc(m->n_slots, sizeof *m->slots);
    for (size_t i = 0; i < n_old; i++) {
        if (!old[i].key) continue;
        uint64_t h = hl_strmap_hash(old[i].key, old[i].len);
        m->slots[find_slot(m, old[i].key, old[i].len, h)] = old[i];
    }
    free(old);
}

bool hl_strmap_put(hl_strmap *m, const char *key, size_t len, int32_t value) {
    HL_ASSERT(value >= 0 && len <= UINT32_MAX);
    if ((m->count + 1) * 2 > m->n_slots) grow(m);
    uint64_t h = hl_strmap_hash(key, len);
    slot *s = &m->slots[find_slot(m, key, len, h)];
    if (s->key) return false;
    *s = (slot){.key = key, .len = (uint32_t)len, .hash32 = (uint32_t)(h >> 32), .value = value};
    m->count++;
    return true;
}

int32_t hl_strmap_get(const hl_strmap *m, const char *key, size_t len) {
    if (len > UINT32_MAX) return -1;
    const slot *s = &m->slots[find_slot(m, key, len, hl_strmap_hash(key, len))];
    return s->key ? s->value : -1;
}

size_t hl_strmap_count(const hl_strmap *m) { return m->count; }
