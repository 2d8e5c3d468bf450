// libFuzzer harness for engine/safetensors: any input either opens (and then every tensor
// lies inside the input) or fails with a negative status and a message; never a crash.
// Seed corpus: tests/fixtures/safetensors-bad/*.safetensors.
#include <stdint.h>
#include <stdlib.h>

#include "engine/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hl_error err = {0};
    hl_safetensors *st = hl_safetensors_open_memory(data, size, &err);
    if (!st) {
        if (err.code >= 0 || err.msg[0] == '\0') abort();
        return 0;
    }
    int64_t n = hl_safetensors_n_tensors(st);
    for (int64_t i = 0; i < n; i++) {
        const hl_safetensors_tensor *t = hl_safetensors_tensor_at(st, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->n_bytes > data + size) abort();
        if (hl_safetensors_find_tensor(st, t->name) != t) abort();
        size_t n_elem = 1;
        for (int d = 0; d < t->n_dims; d++) n_elem *= (size_t)t->ne[d];
        if (n_elem * hl_safetensors_dtype_bytes(t->dtype) != t->n_bytes) abort();
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < t->n_bytes; k++) sink ^= p[k]; // touch every byte for ASan
        (void)sink;
    }
    hl_safetensors_metadata(st, "format");
    hl_safetensors_free(st);
    return 0;
}
