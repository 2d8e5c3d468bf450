// cpu_features: which SIMD level the CPU backend's kernels may use on this machine.
//
// Levels are ordered: every level implies the ones below it. Detection uses cpuid (through
// __builtin_cpu_supports); the environment variable HL_CPU_ISA=scalar|avx2|avx512|vnni
// lowers the level (for tests and benchmarks), it never raises it above what the CPU has.
// Pure functions of the CPU and the environment; thread-safe.
//
//   int isa = hl_cpu_features_select();
//   hl_log(HL_LOG_INFO, "cpu kernels: %s", hl_cpu_features_name(isa));
#pragma once

enum hl_cpu_isa {
    HL_CPU_ISA_SCALAR = 0, // portable C, x86-64 baseline
    HL_CPU_ISA_AVX2 = 1,   // AVX2 + FMA + F16C
    HL_CPU_ISA_AVX512 = 2, // + AVX-512 F/BW/VL/DQ
    HL_CPU_ISA_VNNI = 3,   // + AVX-512 VNNI (vpdpbusd)
    HL_CPU_ISA_COUNT
};

// The best level this CPU (and OS) supports, ignoring the environment.
int hl_cpu_features_detect(void);

// hl_cpu_features_detect() lowered by HL_CPU_ISA when set to a known, lower level. An unknown
// or higher value is ignored (with a warning in the log).
int hl_cpu_features_select(void);

// "scalar", "avx2", "avx512", "vnni"; "unknown" for other values. Static storage.
const char *hl_cpu_features_name(int isa);

// The level for a name (as printed by hl_cpu_features_name), or -1.
int hl_cpu_features_from_name(const char *name);
