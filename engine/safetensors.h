// safetensors: reader for Hugging Face `.safetensors` model files, one file or sharded.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON naming each tensor's
// dtype, shape and [begin, end) byte range in the data section that follows. The reader
// mmaps the file (or borrows a buffer) and validates everything before returning: header
// length against the file size and a 100 MB cap, JSON syntax, each dtype, shape and offset
// pair (begin <= end <= data size, end - begin == product(shape) * dtype size with overflow
// checks), no two tensors overlapping, no duplicate names. A sharded model is a
// `model.safetensors.index.json` whose weight_map names the shard files (in the same
// folder); every shard is opened and checked, and every weight_map entry must be in the
// shard it names. After open, every accessor is a plain lookup.
//
// Shapes are reported in GGUF order: ne[0] is the LAST safetensors dimension (the
// contiguous one), so an HF Linear weight [out, in] has ne = {in, out}, as in GGUF.
// Tensor data is not necessarily aligned: read it with memcpy or hl_rd_*.
//
//   hl_safetensors *st = hl_safetensors_open("models/Llama-3.2-1B", &err);
//   const hl_safetensors_tensor *t = hl_safetensors_find_tensor(st, "model.norm.weight");
//   float w0 = hl_bf16_to_f32(hl_rd_u16(t->data));
#pragma once

#include "common/hl.h"

#define HL_SAFETENSORS_MAX_DIMS 8
#define HL_SAFETENSORS_MAX_HEADER_BYTES (100u * 1024 * 1024)

typedef struct hl_safetensors hl_safetensors;

// A view of one tensor; everything is borrowed from the hl_safetensors.
typedef struct hl_safetensors_tensor {
    const char *name;       // NUL-terminated
    int dtype;              // enum hl_dtype (engine/quant.h): HL_DTYPE_F32, _F16, _BF16, ...
    int n_dims;             // 0 (a scalar) .. HL_SAFETENSORS_MAX_DIMS
    int64_t ne[HL_SAFETENSORS_MAX_DIMS]; // ne[0] = last (contiguous) dim; unused dims are 1
    const void *data;       // inside the mapping; possibly unaligned
    size_t n_bytes;         // == product(ne) * dtype size
    int shard;              // index of the file that holds it (0 for a single file)
} hl_safetensors_tensor;

// Opens and validates a model. `path` is a .safetensors file, a
// model.safetensors.index.json, or a folder holding model.safetensors (preferred) or
// model.safetensors.index.json. NULL + err on failure: HL_ERR_IO (missing or unreadable
// file, including a shard named by the index), HL_ERR_FORMAT (any malformed header or
// index), HL_ERR_UNSUPPORTED (a dtype other than F32/F16/BF16/F64/I8/I16/I32/I64, named in
// the message, or more than HL_SAFETENSORS_MAX_DIMS dims). Free with hl_safetensors_free.
hl_safetensors *hl_safetensors_open(const char *path, hl_error *err);

// Same for one file already in memory. The buffer is borrowed and must outlive the result
// (fuzzing, tests). Errors as hl_safetensors_open.
hl_safetensors *hl_safetensors_open_memory(const void *data, size_t n_bytes, hl_error *err);

void hl_safetensors_free(hl_safetensors *st); // accepts NULL; unmaps every shard

int64_t hl_safetensors_n_tensors(const hl_safetensors *st);
int hl_safetensors_n_shards(const hl_safetensors *st);

// Tensor i (0 <= i < n_tensors, checked by HL_ASSERT), in name order.
const hl_safetensors_tensor *hl_safetensors_tensor_at(const hl_safetensors *st, int64_t i);

// The tensor called `name`, or NULL when there is none.
const hl_safetensors_tensor *hl_safetensors_find_tensor(const hl_safetensors *st,
                                                        const char *name);

// Value of `key` in the `__metadata__` object (string to string) of the file, or of the
// first shard that has it; NULL when absent. Borrowed from st.
const char *hl_safetensors_metadata(const hl_safetensors *st, const char *key);

// Bytes per element of a dtype the reader accepts, 0 for any other id.
size_t hl_safetensors_dtype_bytes(int dtype);

// The safetensors spelling of an accepted dtype id ("BF16"), "?" for any other.
const char *hl_safetensors_dtype_name(int dtype);
