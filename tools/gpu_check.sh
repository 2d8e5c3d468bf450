#!/bin/sh
# gpu_check: `make gpu-check` — on a machine with an NVIDIA GPU: build for the local card,
# run the CUDA unit suite (every kernel against the CPU scalar reference), then print the
# kernel benchmark table (tests/gpu/bench_cuda.c). Needs nothing from the network; each
# step has a timeout; everything is also written under $GPU_CHECK_OUT (default
# build/gpu_check/): gpu.txt, build.log, tests.log, bench.txt, summary.txt.
#
#   make gpu-check                    # or: sh tools/gpu_check.sh
#   GPU_CHECK_SKIP_TESTS=1 sh tools/gpu_check.sh   # the table only
set -eu
cd "$(dirname "$0")/.."

OUT=${GPU_CHECK_OUT:-build/gpu_check}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
T0=$(date +%s)

say() { echo "gpu-check: $*" | tee -a "$SUMMARY"; }
fail() {
    say "FAILED: $*"
    exit 1
}
elapsed() { echo $(($(date +%s) - T0)); }

# ---- the card ----
command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi not found (no NVIDIA driver on this machine)"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm --format=csv \
    > "$OUT/gpu.txt" 2>&1 || fail "nvidia-smi cannot query the GPU: $(cat "$OUT/gpu.txt")"
cat "$OUT/gpu.txt" | tee -a "$SUMMARY"
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
case "$ARCH" in
    [0-9][0-9]*) ;;
    *) say "could not read the compute capability; building for sm_90"; ARCH=90 ;;
esac
[ "$ARCH" -ge 80 ] || fail "compute capability $ARCH: halyard's CUDA kernels need sm_80 or newer"

NVCC=${NVCC:-$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)}
[ -n "$NVCC" ] || fail "nvcc not found (install the CUDA toolkit or set NVCC=/path/to/nvcc)"
CUDA_HOME=${NVCC%/bin/nvcc}

# ---- build: its own folder per arch, so objects of another arch are never reused ----
B=build/gpu_sm$ARCH
JOBS=$(nproc 2>/dev/null || echo 4)
say "building for sm_$ARCH into $B ($JOBS jobs)"
if ! timeout 300 make -j"$JOBS" CUDA=1 NVCC="$NVCC" CUDA_ARCHS="$ARCH" BUILD="$B" "$B/libhalyard.a" "$B/test_unit" \
        > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    fail "build (full log: $OUT/build.log)"
fi
PKG_LIBS=$(pkg-config --libs libpcre2-8 libmicrohttpd libcjson libcurl 2>/dev/null || true)
if ! timeout 120 cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I. -DHL_CUDA=1 -I"$CUDA_HOME/include" \
        tests/gpu/bench_cuda.c "$B/libhalyard.a" -L"$CUDA_HOME/lib64" -lcudart -lcublas \
        -Wl,-rpath,"$CUDA_HOME/lib64" $PKG_LIBS -lm -lpthread -o "$B/bench_cuda" >> "$OUT/build.log" 2>&1; then
    tail -20 "$OUT/build.log"
    fail "building tests/gpu/bench_cuda.c (log: $OUT/build.log)"
fi
say "build done after $(elapsed) s"

# ---- correctness: every kernel against the scalar reference ----
if [ "${GPU_CHECK_SKIP_TESTS:-0}" != 1 ]; then
    say "running the CUDA unit suite (backend_cuda)"
    if ! CK_RUN_SUITE=backend_cuda CK_DEFAULT_TIMEOUT=240 timeout 270 "./$B/test_unit" > "$OUT/tests.log" 2>&1; then
        tail -40 "$OUT/tests.log"
        fail "CUDA unit suite (full log: $OUT/tests.log; rerun one seed with HL_TEST_SEED=...)"
    fi
    grep -q "SKIP: no CUDA device" "$OUT/tests.log" && fail "the unit suite saw no CUDA device"
    tail -1 "$OUT/tests.log" | tee -a "$SUMMARY"
    say "tests done after $(elapsed) s"
fi

# ---- benchmark table ----
say "kernel benchmark (results also in $OUT/bench.txt)"
if ! timeout 240 "./$B/bench_cuda" "$OUT/bench.txt"; then
    fail "benchmark (partial results in $OUT/bench.txt)"
fi
say "all done after $(elapsed) s"
