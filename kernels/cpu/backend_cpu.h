// backend_cpu: the CPU implementation of kernels/backend.h — a persistent thread pool, runtime
// ISA dispatch (cpu_features.h), quantized matmul (matmul.h), online-softmax paged attention.
//
// Weights stay in GGUF block layout (hl_tensor.layout 0), except Q4_0, Q4_1, Q5_0, Q8_0, Q4_K,
// Q5_K and Q6_K at the VNNI level, which are repacked to 16-row groups (repack.h, layout
// HL_CPU_LAYOUT_X16); embed reads either. Ops run synchronously on the calling thread plus the
// pool, so sync() has nothing to wait for. For one ISA level, every
// op's result for a token row depends only on that row's inputs (never on the batch or the
// thread count). Scratch for quantized activations grows to the largest matmul seen and is
// reused; ops themselves cannot fail (shapes are the caller's to check) and panic only if
// that scratch cannot be allocated.
//
//   hl_backend *be = hl_backend_cpu_create_isa(2, HL_CPU_ISA_AVX2, &err);  // or _create
//   be->ops->matmul(be, &y, &w, &x);
//   hl_backend_free(be);
#pragma once

#include "kernels/backend.h"

// Like hl_backend_cpu_create, with the kernels of ISA level `isa` (enum hl_cpu_isa), which
// must not exceed hl_cpu_features_detect(); -1 means hl_cpu_features_select(). NULL +
// HL_ERR_INVAL for a level the CPU lacks, HL_ERR_IO when threads cannot start.
hl_backend *hl_backend_cpu_create_isa(int n_threads, int isa, hl_error *err);

// The ISA level a CPU backend runs (enum hl_cpu_isa).
int hl_backend_cpu_isa(const hl_backend *be);
