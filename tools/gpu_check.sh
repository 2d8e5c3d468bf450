#!/bin/sh
# gpu_check: `make gpu-check` — on a machine with an NVIDIA GPU: build for the local card,
# run the CUDA unit suites (every kernel against the CPU scalar reference; the whole model,
# CUDA vs CPU logits on synthetic tiny/s135/l1b over mixed prefill/decode steps and graph
# replays), print the kernel benchmark table (tests/gpu/bench_cuda.c), then the end-to-end
# rows on synthetic:l8b:q4_0 and synthetic:l8b:q4_k_m (Llama-3-8B shapes, 128256-token
# vocabulary, no tokenizer file needed): batch-1 decode tokens/s, aggregate decode tokens/s at
# 16 and 64 sequences, prefill tokens/s, and the serving simulation (64 sessions, 512-token
# prompts, 128-token outputs): TTFT / TPOT p50 and p99 and aggregate tokens/s. Needs nothing
# from the network; each step has a timeout; everything is also written under $GPU_CHECK_OUT
# (default build/gpu_check/): gpu.txt, build.log, tests.log, llama_cuda.log, bench.txt,
# engine_<type>.txt/.json (+ .json.sim.json), e2e.txt, summary.txt.
#
#   make gpu-check                    # or: sh tools/gpu_check.sh
#   GPU_CHECK_SKIP_TESTS=1 sh tools/gpu_check.sh   # the tables only
#   GPU_CHECK_SKIP_E2E=1 sh tools/gpu_check.sh     # no end-to-end rows
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
if ! timeout 300 make -j"$JOBS" CUDA=1 NVCC="$NVCC" CUDA_ARCHS="$ARCH" BUILD="$B" "$B/libhalyard.a" "$B/test_unit" "$B/halyard" \
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
    say "running the whole-model suite (llama_cuda: CUDA vs CPU logits, graph replays)"
    if ! CK_RUN_SUITE=llama_cuda CK_DEFAULT_TIMEOUT=240 timeout 270 "./$B/test_unit" > "$OUT/llama_cuda.log" 2>&1; then
        tail -40 "$OUT/llama_cuda.log"
        fail "llama_cuda suite (full log: $OUT/llama_cuda.log)"
    fi
    grep -q "SKIP: no CUDA device" "$OUT/llama_cuda.log" && fail "the llama_cuda suite saw no CUDA device"
    grep "^llama_cuda " "$OUT/llama_cuda.log" | tee -a "$SUMMARY"
    tail -1 "$OUT/llama_cuda.log" | tee -a "$SUMMARY"
    say "tests done after $(elapsed) s"
fi

# ---- benchmark table ----
say "kernel benchmark (results also in $OUT/bench.txt)"
if ! timeout 240 "./$B/bench_cuda" "$OUT/bench.txt"; then
    fail "benchmark (partial results in $OUT/bench.txt)"
fi
say "kernel benchmark done after $(elapsed) s"

# ---- end to end: bench engine (pp/tg per batch) then the serving simulation, one load each ----
# Column 4 of a table row "| tg128 | 16 | 1234.5 ± 6.7 | ... |" is the mean tokens/s.
tg_at() { awk -F'|' -v t="$2" -v b="$3" '$2 ~ t && $3 + 0 == b { split($4, v, " "); print v[1] }' "$1"; }
sim_at() { awk -F'|' -v m="$2" -v c="$3" '$2 ~ m { split($c, v, " "); print v[1] }' "$1"; }
sim_tok() { sed -n 's/.*; output \([0-9.]*\) tok\/s.*/\1/p' "$1"; }
if [ "${GPU_CHECK_SKIP_E2E:-0}" != 1 ]; then
    E2E="$OUT/e2e.txt"
    printf "%-24s %10s %10s %10s %9s %9s %9s %9s %9s %9s\n" "model" "tg b=1" "tg b=16" "tg b=64" \
        "pp b=1" "TTFT p50" "TTFT p99" "TPOT p50" "TPOT p99" "sim tok/s" > "$E2E"
    for TYPE in q4_0 q4_k_m; do
        M="synthetic:l8b:$TYPE"
        LOG="$OUT/engine_$TYPE.txt"
        say "end to end: $M (bench engine --device cuda, then --serve-sim 64 x 512/128)"
        if ! timeout 200 "./$B/halyard" bench engine -m "$M" --device cuda --synth-vocab 128256 \
                --batch 1,16,64 -p 512 -n 128 --reps 2 --serve-sim --sessions 64 --requests 128 \
                --json "$OUT/engine_$TYPE.json" > "$LOG" 2>&1; then
            tail -20 "$LOG"
            fail "end to end on $M (log: $LOG)"
        fi
        printf "%-24s %10s %10s %10s %9s %9s %9s %9s %9s %9s\n" "$M" "$(tg_at "$LOG" tg 1)" \
            "$(tg_at "$LOG" tg 16)" "$(tg_at "$LOG" tg 64)" "$(tg_at "$LOG" pp 1)" "$(sim_at "$LOG" TTFT 3)" \
            "$(sim_at "$LOG" TTFT 5)" "$(sim_at "$LOG" TPOT 3)" "$(sim_at "$LOG" TPOT 5)" "$(sim_tok "$LOG")" >> "$E2E"
        say "$M done after $(elapsed) s"
    done
    say "end-to-end rows (tokens/s; ms; goals on an H100: tg b=1 >= 500, p99 TTFT < 200, p99 TPOT < 25,"
    say "aggregate >= 5000 at 64 sessions); the memory plan of each run is in its log"
    tee -a "$SUMMARY" < "$E2E"
fi
say "all done after $(elapsed) s"
