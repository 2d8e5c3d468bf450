// strmap: an open-addressing hash map from byte strings to int32 values, built once and
// then only read (token text -> id, merge pair text -> rank). Keys are borrowed: the
// bytes must outlive the map (the tokenizer keeps every token text in one owned arena).
// Lookups are safe from many threads at once as long as nobody inserts.
//
//   hl_strmap *m = hl_strmap_create(n_tokens);
//   hl_strmap_put(m, text, len, id);
//   int32_t id = hl_strmap_get(m, "hello", 5);   // -1 when absent
#pragma once

#include "common/hl.h"

typedef struct hl_strmap hl_strmap;

// An empty map sized for about n_expected keys (it grows when needed).
hl_strmap *hl_strmap_create(size_t n_expected);
void hl_strmap_free(hl_strmap *m); // accepts NULL

// Inserts key -> value (value >= 0). The key bytes are borrowed. Returns false and keeps the
// old value when the key is already present.
bool hl_strmap_put(hl_strmap *m, const char *key, size_t len, int32_t value);

// The value stored for key, or -1.
int32_t hl_strmap_get(const hl_strmap *m, const char *key, size_t len);

size_t hl_strmap_count(const hl_strmap *m);

// The hash the map uses (64-bit, good on short keys); exposed for other id-keyed tables.
uint64_t hl_strmap_hash(const void *key, size_t len);
