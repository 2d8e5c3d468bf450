// cpu_features: ISA detection and the HL_CPU_ISA override (see cpu_features.h).
#include "kernels/cpu/cpu_features.h"

#include <stdlib.h>
#include <strings.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "common/hl.h"

static const char *const names[HL_CPU_ISA_COUNT] = {"scalar", "avx2", "avx512", "vnni"};

#if defined(__x86_64__) || defined(__i386__)
// F16C through cpuid: clang 14's __builtin_cpu_supports does not know "f16c".
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

int hl_cpu_features_detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return HL_CPU_ISA_SCALAR;
    if (!has_f16c()) return HL_CPU_ISA_SCALAR;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
        return HL_CPU_ISA_AVX2;
    if (!__builtin_cpu_supports("avx512vnni")) return HL_CPU_ISA_AVX512;
    return HL_CPU_ISA_VNNI;
#else
    return HL_CPU_ISA_SCALAR;
#endif
}

int hl_cpu_features_select(void) {
    const int best = hl_cpu_features_detect();
    const char *env = getenv("HL_CPU_ISA");
    if (!env || !*env) return best;
    const int want = hl_cpu_features_from_name(env);
    if (want < 0 || want > best) {
        hl_log(HL_LOG_WARN, "HL_CPU_ISA=%s ignored (this CPU supports up to %s)", env,
               hl_cpu_features_name(best));
        return best;
    }
    return want;
}

const char *hl_cpu_features_name(int isa) {
    if (isa < 0 || isa >= HL_CPU_ISA_COUNT) return "unknown";
    return names[isa];
}

int hl_cpu_features_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < HL_CPU_ISA_COUNT; i++) {
        if (strcasecmp(name, names[i]) == 0) return i;
    }
    return -1;
}
