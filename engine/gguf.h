// gguf: reader and writer for GGUF model files (versions 2 and 3).
//
// The reader mmaps the file (or borrows a memory buffer) and validates everything up
// front: every count, string length, array length, type id, tensor shape, offset and
// alignment is bounds-checked before use, so a malformed file gives an error with a
// message and never a crash. After a successful open all accessors are plain lookups.
// Values live in the mapping; strings are NOT NUL-terminated (use ptr + len), except
// keys and tensor names, which the reader copies into NUL-terminated strings.
//
// The writer collects metadata and tensors and writes a GGUF v3 file; tensor data can
// come from memory or from a callback, so multi-GB files are written without holding
// them in memory.
//
//   hl_gguf *g = hl_gguf_open("model.gguf", &err);
//   int64_t n_layers; hl_gguf_get_int(g, "llama.block_count", &n_layers, &err);
//   const hl_gguf_tensor *t = hl_gguf_find_tensor(g, "token_embd.weight");
#pragma once

#include "common/hl.h"

// Metadata value types, numbered as in the GGUF specification.
enum hl_gguf_type {
    HL_GGUF_UINT8 = 0,
    HL_GGUF_INT8 = 1,
    HL_GGUF_UINT16 = 2,
    HL_GGUF_INT16 = 3,
    HL_GGUF_UINT32 = 4,
    HL_GGUF_INT32 = 5,
    HL_GGUF_FLOAT32 = 6,
    HL_GGUF_BOOL = 7,
    HL_GGUF_STRING = 8,
    HL_GGUF_ARRAY = 9,
    HL_GGUF_UINT64 = 10,
    HL_GGUF_INT64 = 11,
    HL_GGUF_FLOAT64 = 12,
    HL_GGUF_TYPE_COUNT
};

#define HL_GGUF_MAX_DIMS 4
#define HL_GGUF_DEFAULT_ALIGNMENT 32

typedef struct hl_gguf hl_gguf;

// A string inside the file: not NUL-terminated, borrowed from the hl_gguf.
typedef struct hl_gguf_str {
    const char *ptr;
    uint64_t len;
} hl_gguf_str;

// An array value. For numeric arrays `data` points at n little-endian elements of
// elem_type; for string arrays use hl_gguf_arr_str(). Arrays of arrays (rare; validated
// up to 8 levels deep) have elem_type HL_GGUF_ARRAY, and element i is the raw encoded
// array at data + str_offs[i] (u32 element type, u64 count, elements). Borrowed from the hl_gguf.
typedef struct hl_gguf_arr {
    enum hl_gguf_type elem_type;
    uint64_t n;
    const uint8_t *data;       // first element (unaligned: read with hl_rd_*)
    const uint64_t *str_offs;  // STRING/ARRAY elements: byte offset of element i in data; else NULL
} hl_gguf_arr;

typedef struct hl_gguf_tensor {
    const char *name;          // NUL-terminated, owned by the hl_gguf
    int type;                  // ggml type id (enum hl_dtype in engine/quant.h)
    int n_dims;                // 1..4
    int64_t ne[HL_GGUF_MAX_DIMS]; // ne[0] is the contiguous (row) dimension; unused dims are 1
    uint64_t offset;           // from the start of the data section (a multiple of alignment)
    size_t n_bytes;            // validated against type and shape
    const void *data;          // inside the mapping
} hl_gguf_tensor;

// ---- reader ----

// Opens and validates a GGUF file through mmap. NULL + err on failure: HL_ERR_IO (open,
// stat, mmap), HL_ERR_UNSUPPORTED (big-endian files, versions other than 2 and 3, unknown
// tensor types), HL_ERR_FORMAT (anything malformed; the message names the kv or tensor and
// the byte offset). Rejected: keys/tensor names that are empty, not UTF-8, contain NUL or
// repeat; bools other than 0/1; n_dims outside 1..4; dims <= 0; sizes that overflow;
// tensors outside the file, unaligned or overlapping; general.alignment that is not a
// uint32 power of two.
hl_gguf *hl_gguf_open(const char *path, hl_error *err);

// Same over a caller's buffer, which is borrowed and must outlive the hl_gguf (fuzzing, tests).
hl_gguf *hl_gguf_open_memory(const void *data, size_t n_bytes, hl_error *err);

void hl_gguf_free(hl_gguf *g); // accepts NULL; unmaps the file

uint32_t hl_gguf_version(const hl_gguf *g);
uint32_t hl_gguf_alignment(const hl_gguf *g);
size_t hl_gguf_file_bytes(const hl_gguf *g);
size_t hl_gguf_data_offset(const hl_gguf *g); // where the tensor data section starts

// ---- metadata ----
// kv indexes follow file order; i out of range is a programmer error (HL_ASSERT).
int64_t hl_gguf_n_kv(const hl_gguf *g);
const char *hl_gguf_kv_key(const hl_gguf *g, int64_t i);     // NUL-terminated, owned by g
enum hl_gguf_type hl_gguf_kv_type(const hl_gguf *g, int64_t i);
int64_t hl_gguf_find_kv(const hl_gguf *g, const char *key);   // index or -1 (binary search)

// Typed getters by key. HL_OK; HL_ERR_INVAL when the key is missing (message names it);
// HL_ERR_FORMAT when it has another type. Integers accept any integer type whose value
// fits in int64_t; floats accept FLOAT32/FLOAT64; bools accept BOOL.
int hl_gguf_get_int(const hl_gguf *g, const char *key, int64_t *out, hl_error *err);
int hl_gguf_get_float(const hl_gguf *g, const char *key, double *out, hl_error *err);
int hl_gguf_get_bool(const hl_gguf *g, const char *key, bool *out, hl_error *err);
int hl_gguf_get_str(const hl_gguf *g, const char *key, hl_gguf_str *out, hl_error *err);
int hl_gguf_get_arr(const hl_gguf *g, const char *key, hl_gguf_arr *out, hl_error *err);

// The same by index (for listing every key, e.g. `halyard info`); HL_ERR_INVAL when i is
// out of range.
int hl_gguf_kv_int(const hl_gguf *g, int64_t i, int64_t *out, hl_error *err);
int hl_gguf_kv_float(const hl_gguf *g, int64_t i, double *out, hl_error *err);
int hl_gguf_kv_bool(const hl_gguf *g, int64_t i, bool *out, hl_error *err);
int hl_gguf_kv_str(const hl_gguf *g, int64_t i, hl_gguf_str *out, hl_error *err);
int hl_gguf_kv_arr(const hl_gguf *g, int64_t i, hl_gguf_arr *out, hl_error *err);

// Element i of an array (i < arr->n and the element type are checked by HL_ASSERT: the
// caller knows both).
hl_gguf_str hl_gguf_arr_str(const hl_gguf_arr *arr, uint64_t i);
// Any integer or bool element type; uint64 values above INT64_MAX come back as INT64_MAX.
int64_t hl_gguf_arr_int(const hl_gguf_arr *arr, uint64_t i);
double hl_gguf_arr_float(const hl_gguf_arr *arr, uint64_t i);  // FLOAT32/FLOAT64 elements

const char *hl_gguf_type_name(enum hl_gguf_type t); // "uint32", …; "?" for unknown

// ---- tensors ----
int64_t hl_gguf_n_tensors(const hl_gguf *g);
const hl_gguf_tensor *hl_gguf_tensor_at(const hl_gguf *g, int64_t i); // NULL if out of range
const hl_gguf_tensor *hl_gguf_find_tensor(const hl_gguf *g, const char *name); // NULL if absent

// ---- writer ----
typedef struct hl_gguf_writer hl_gguf_writer;

// Produces a tensor's bytes on demand: fill exactly n_bytes at dst. HL_OK or an error code
// (with err filled), which aborts the write.
typedef int (*hl_gguf_fill_fn)(void *ctx, const char *name, void *dst, size_t n_bytes,
                               hl_error *err);

hl_gguf_writer *hl_gguf_writer_create(void);
void hl_gguf_writer_free(hl_gguf_writer *w); // accepts NULL

// Setters copy key and value. Setting an existing key replaces its value in place.
// Keys must be 1..65535 bytes of UTF-8 (HL_ASSERT).
void hl_gguf_writer_set_u32(hl_gguf_writer *w, const char *key, uint32_t v);
void hl_gguf_writer_set_i32(hl_gguf_writer *w, const char *key, int32_t v);
void hl_gguf_writer_set_u64(hl_gguf_writer *w, const char *key, uint64_t v);
void hl_gguf_writer_set_f32(hl_gguf_writer *w, const char *key, float v);
void hl_gguf_writer_set_bool(hl_gguf_writer *w, const char *key, bool v);
void hl_gguf_writer_set_str(hl_gguf_writer *w, const char *key, const char *v);
void hl_gguf_writer_set_strn(hl_gguf_writer *w, const char *key, const char *v, size_t len);
// Any fixed-size type (integers, floats, bool 0/1): one little-endian element at `value`.
void hl_gguf_writer_set_scalar(hl_gguf_writer *w, const char *key, enum hl_gguf_type type,
                               const void *value);
// Numeric array of n elements of elem_type, copied from little-endian `data`.
void hl_gguf_writer_set_arr(hl_gguf_writer *w, const char *key, enum hl_gguf_type elem_type,
                            const void *data, uint64_t n);
// String array: n strings (ptrs[i], lens[i]).
void hl_gguf_writer_set_arr_str(hl_gguf_writer *w, const char *key, const char *const *ptrs,
                                const size_t *lens, uint64_t n);
// Copies key-value i of another file, whatever its type (synth --tokenizer-from).
void hl_gguf_writer_copy_kv(hl_gguf_writer *w, const hl_gguf *src, int64_t i);

// Adds a tensor. `data` (borrowed until hl_gguf_writer_write returns) or, when data is
// NULL, `fill(fill_ctx, …)` supplies its bytes. HL_ERR_INVAL for a duplicate name, an
// unknown type, or a row size that is not a multiple of the type's block size.
int hl_gguf_writer_add_tensor(hl_gguf_writer *w, const char *name, int type, int n_dims,
                              const int64_t *ne, const void *data, hl_gguf_fill_fn fill,
                              void *fill_ctx, hl_error *err);

// Writes the file (GGUF v3, general.alignment if set, else 32; every tensor's data starts
// at a multiple of it) to path + ".tmp", fsyncs and renames it into place, so a failed write
// never leaves a half file under the final name (the .tmp is removed). Tensors are written
// in the order added; filled tensors go through one buffer the size of the largest of them.
// HL_ERR_INVAL for a bad general.alignment, HL_ERR_IO, HL_ERR_NOMEM, or a fill callback's error.
// The writer can be written again afterwards.
int hl_gguf_writer_write(hl_gguf_writer *w, const char *path, hl_error *err);
