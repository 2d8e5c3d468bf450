// matmul_avx512: the x86 matmul kernels (matmul_x86.h) built for the avx512 level; selected at run
// time by hl_matmul_rows (see matmul.h, cpu_features.h).
#include "kernels/cpu/matmul_x86.h"

void hl_matmul_avx512_rows(const hl_matmul_args *a, int64_t r0, int64_t r1) { x86_rows(a, r0, r1); }

void hl_matmul_avx512_quantize(const hl_matmul_args *a, int t0, int t1) { x86_quantize(a, t0, t1); }
