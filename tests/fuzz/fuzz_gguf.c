// libFuzzer harness for engine/gguf: hl_gguf_open_memory on arbitrary bytes must either
// fail cleanly (FORMAT or UNSUPPORTED, with a message) or open a file whose every kv,
// array element and tensor byte range can be walked through the accessors in bounds.
// libFuzzer hands over an exact-size copy of each input, so ASan catches any over-read.
// Build and run: sh tests/fuzz/build.sh (FUZZ_SECONDS=N to fuzz).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink; // keeps the walk from being optimised away

static uint64_t walk_array(const hl_gguf_arr *a) {
    uint64_t sum = 0;
    for (uint64_t k = 0; k < a->n; k++) {
        if (a->elem_type == HL_GGUF_STRING) {
            hl_gguf_str s = hl_gguf_arr_str(a, k);
            sum += s.len ? (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1] : 0;
        } else if (a->elem_type == HL_GGUF_FLOAT32 || a->elem_type == HL_GGUF_FLOAT64) {
            sum += hl_gguf_arr_float(a, k) > 0;
        } else if (a->elem_type == HL_GGUF_ARRAY) {
            sum += hl_rd_u32(a->data + a->str_offs[k]) + hl_rd_u64(a->data + a->str_offs[k] + 4);
        } else {
            sum += (uint64_t)hl_gguf_arr_int(a, k);
        }
    }
    return sum;
}

static uint64_t walk_kv(const hl_gguf *g, int64_t i) {
    const char *key = hl_gguf_kv_key(g, i);
    if (hl_gguf_find_kv(g, key) != i) __builtin_trap(); // keys are unique
    uint64_t sum = strlen(key) + (uint64_t)hl_gguf_kv_type(g, i);
    int64_t iv;
    double fv;
    bool bv;
    hl_gguf_str sv;
    hl_gguf_arr av;
    if (hl_gguf_kv_int(g, i, &iv, NULL) == HL_OK) sum += (uint64_t)iv;
    if (hl_gguf_kv_float(g, i, &fv, NULL) == HL_OK) sum += fv > 0;
    if (hl_gguf_kv_bool(g, i, &bv, NULL) == HL_OK) sum += bv;
    if (hl_gguf_kv_str(g, i, &sv, NULL) == HL_OK && sv.len) sum += (uint8_t)sv.ptr[sv.len - 1];
    if (hl_gguf_kv_arr(g, i, &av, NULL) == HL_OK) sum += walk_array(&av);
    return sum;
}

static uint64_t walk_tensor(const hl_gguf *g, int64_t i) {
    const hl_gguf_tensor *t = hl_gguf_tensor_at(g, i);
    if (hl_gguf_find_tensor(g, t->name) != t) __builtin_trap(); // names are unique
    if (t->n_bytes == 0 || t->offset % hl_gguf_alignment(g) != 0) __builtin_trap();
    const uint8_t *d = t->data;
    return d[0] + d[t->n_bytes - 1] + (uint64_t)t->ne[t->n_dims - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hl_error err = {0};
    hl_gguf *g = hl_gguf_open_memory(data, size, &err);
    if (!g) {
        bool clean = err.msg[0] != '\0' && (err.code == HL_ERR_FORMAT || err.code == HL_ERR_UNSUPPORTED);
        if (!clean) __builtin_trap();
        return 0;
    }
    if (hl_gguf_data_offset(g) > hl_gguf_file_bytes(g)) __builtin_trap();
    uint64_t sum = 0;
    for (int64_t i = 0; i < hl_gguf_n_kv(g); i++) sum += walk_kv(g, i);
    for (int64_t i = 0; i < hl_gguf_n_tensors(g); i++) sum += walk_tensor(g, i);
    // Copying every kv into a writer exercises copy_kv on whatever values the file holds.
    hl_gguf_writer *w = hl_gguf_writer_create();
    for (int64_t i = 0; i < hl_gguf_n_kv(g); i++) hl_gguf_writer_copy_kv(w, g, i);
    hl_gguf_writer_free(w);
    sink = sum;
    hl_gguf_free(g);
    return 0;
}
