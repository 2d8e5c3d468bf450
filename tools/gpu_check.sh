#!/bin/sh
# gpu_check: `make gpu-check` — on a machine with an NVIDIA GPU: build for the local card,
# run the CUDA unit suites (every kernel against the CPU scalar reference; the whole model,
# CUDA vs CPU logits on synthetic tiny/s135/l1b over mixed prefill/decode steps and graph
# replays), print the kernel benchmark table (tests/gpu/bench_cuda.c), then the end-to-end
# rows on synthetic:l8b:q4_0 and synthetic:l8b:q4_k_m (Llama-3-8B shapes, 128256-token
# vocabulary, no tokenizer file needed): batch-1 decode tokens/s, aggregate decode tokens/s at
# 16 and 64 sequences, prefill tokens/s, and the serving simulation (64 sessions, 512-token
# prompts, 128-token outputs): TTFT / TPOT p50 and p99 and aggregate tokens/s. Needs nothing
# from the network; each step has a timeout and the whole run a deadline; everything is also
# written under $GPU_CHECK_OUT (default build/gpu_check/): gpu.txt, build.log, tests.log,
# llama_cuda.log, bench.txt, engine_<type>.txt/.json (+ .json.sim.json), e2e.txt, summary.txt.
#
# A bare GPU machine (CUDA toolkit only) lacks the -dev packages the build needs (check,
# pcre2, cJSON, libmicrohttpd, libcurl: tools/deps.sh) and often the network to get them.
# Then build a bundle on a machine that has them (same x86-64 glibc or older, nvcc of the
# same major version), carry build/gpu_bundle there, and the check runs the bundle's binaries
# with its libraries instead of building:
#
#   sh tools/gpu_check.sh bundle [ARCH]            # here: build for sm_ARCH (default 90) into build/gpu_bundle
#   make gpu-check                                 # there: uses build/gpu_bundle when present, else builds
#   GPU_CHECK_OUT=build/gpu_check GPU_CHECK_TAR=/path/all.tgz sh tools/gpu_check.sh   # + one tarball of it all
#   GPU_CHECK_SKIP_TESTS=1 sh tools/gpu_check.sh   # the tables only
#   GPU_CHECK_SKIP_E2E=1 sh tools/gpu_check.sh     # no end-to-end rows
#   GPU_CHECK_DEADLINE=540 (seconds, default 540): no step starts or runs past it
set -eu
cd "$(dirname "$0")/.."

BUNDLE=${GPU_CHECK_BUNDLE:-build/gpu_bundle}

find_nvcc() {
    NVCC=${NVCC:-$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)}
    [ -n "$NVCC" ] || { echo "gpu-check: nvcc not found (install the CUDA toolkit or set NVCC=/path/to/nvcc)" >&2; exit 1; }
    CUDA_HOME=${NVCC%/bin/nvcc}
}

# Builds libhalyard.a, test_unit, halyard and bench_cuda for sm_$1 into build/gpu_sm$1; logs to $2.
build_all() {
    B=build/gpu_sm$1
    JOBS=$(nproc 2>/dev/null || echo 4)
    timeout "$3" make -j"$JOBS" CUDA=1 NVCC="$NVCC" CUDA_ARCHS="$1" BUILD="$B" "$B/libhalyard.a" "$B/test_unit" \
        "$B/halyard" > "$2" 2>&1 || { tail -40 "$2"; return 1; }
    PKG_LIBS=$(pkg-config --libs libpcre2-8 libmicrohttpd libcjson libcurl 2>/dev/null || true)
    timeout 120 cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I. -DHL_CUDA=1 -I"$CUDA_HOME/include" \
        tests/gpu/bench_cuda.c "$B/libhalyard.a" -L"$CUDA_HOME/lib64" -lcudart -lcublas -lstdc++ \
        -Wl,-rpath,"$CUDA_HOME/lib64" $PKG_LIBS -lm -lpthread -o "$B/bench_cuda" >> "$2" 2>&1 ||
        { tail -20 "$2"; return 1; }
}

# ---- bundle mode: build here, collect every shared library that is not glibc's, the
# compiler's or CUDA's (those the GPU machine has), strip the debug info ----
if [ "${1:-}" = bundle ]; then
    ARCH=${2:-90}
    find_nvcc
    mkdir -p build
    echo "gpu-check bundle: building for sm_$ARCH (log: build/gpu_bundle_build.log)"
    build_all "$ARCH" build/gpu_bundle_build.log 3600 || { echo "gpu-check bundle: build failed" >&2; exit 1; }
    rm -rf "$BUNDLE"
    mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
    for f in test_unit halyard bench_cuda; do
        cp "build/gpu_sm$ARCH/$f" "$BUNDLE/bin/$f"
        strip --strip-debug "$BUNDLE/bin/$f" 2>/dev/null || true
        ldd "$BUNDLE/bin/$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
            grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|libutil|libgcc_s|libstdc\+\+|libcuda|libcudart|libcublas|libcublasLt)\.so' |
            while read -r lib; do cp -L "$lib" "$BUNDLE/lib/"; done
    done
    echo "$ARCH" > "$BUNDLE/ARCH"
    echo "gpu-check bundle: $BUNDLE for sm_$ARCH, $(du -sh "$BUNDLE" | cut -f1); carry it to the GPU machine"
    exit 0
fi

OUT=${GPU_CHECK_OUT:-build/gpu_check}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
T0=$(date +%s)
DEADLINE=$((T0 + ${GPU_CHECK_DEADLINE:-540}))

say() { echo "gpu-check: $*" | tee -a "$SUMMARY"; }
fail() {
    say "FAILED: $*"
    exit 1
}
# A failed test suite or benchmark does not stop the run: one device session should bring back
# every table it can (a kernel bug in one suite says nothing about the others' numbers). The
# run exits 1 at the end when anything failed.
FAILED=""
failed() {
    say "FAILED: $*"
    FAILED="$FAILED; $*"
}
elapsed() { echo $(($(date +%s) - T0)); }
# The timeout of a step: its own limit, or what is left before the deadline if that is less
# (1 s once it has passed: the step then fails at once). deadline_ok stops the run there.
limit() {
    left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 1 ]; then echo 1; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
deadline_ok() { [ $((DEADLINE - $(date +%s))) -gt 5 ] || fail "deadline reached after $(elapsed) s (GPU_CHECK_DEADLINE)"; }
if [ -n "${GPU_CHECK_TAR:-}" ]; then
    trap 'tar czf "$GPU_CHECK_TAR" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null || true' EXIT
fi

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

# ---- build: its own folder per arch, so objects of another arch are never reused; or the
# carried bundle (sm_90 code runs on any sm_90 card; a newer card JITs its PTX) ----
if [ -x "$BUNDLE/bin/test_unit" ] && [ -x "$BUNDLE/bin/halyard" ] && [ -x "$BUNDLE/bin/bench_cuda" ]; then
    B=$BUNDLE/bin
    BARCH=$(cat "$BUNDLE/ARCH" 2>/dev/null || echo "?")
    [ "$BARCH" = "$ARCH" ] || say "note: the bundle is built for sm_$BARCH, the card is sm_$ARCH (PTX JIT if newer)"
    # CUDA's libraries from the toolkit here (the bundle's run path names the build machine's)
    CUDA_LIBS=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$d" ] && CUDA_LIBS="$CUDA_LIBS:$d"
    done
    if command -v nvcc >/dev/null 2>&1; then
        H=$(dirname "$(dirname "$(command -v nvcc)")")
        CUDA_LIBS="$CUDA_LIBS:$H/lib64:$H/targets/x86_64-linux/lib"
    fi
    export LD_LIBRARY_PATH="$BUNDLE/lib$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    MISSING=$(for f in test_unit halyard bench_cuda; do ldd "$B/$f" 2>&1 | grep "not found" || true; done | sort -u)
    [ -z "$MISSING" ] || fail "the bundle's binaries miss libraries: $MISSING (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
    say "using the prebuilt bundle $BUNDLE (sm_$BARCH); no build"
else
    find_nvcc
    say "building for sm_$ARCH into build/gpu_sm$ARCH"
    build_all "$ARCH" "$OUT/build.log" "$(limit 300)" || fail "build (full log: $OUT/build.log)"
    B=build/gpu_sm$ARCH
    say "build done after $(elapsed) s"
fi
case "$B" in /*) ;; *) B=./$B ;; esac

# Runs unit suite $1 with its log in $OUT/$2 and a limit of $3 s ($4 names it): a failure is
# recorded and the run goes on; a suite that sees no device ends the run (nothing else would).
run_suite() {
    deadline_ok
    say "running $4"
    if ! CK_RUN_SUITE=$1 CK_DEFAULT_TIMEOUT=$(($3 - 30)) timeout "$(limit "$3")" "$B/test_unit" > "$OUT/$2" 2>&1; then
        tail -40 "$OUT/$2"
        failed "$1 suite (full log: $OUT/$2)"
    fi
    grep -q "SKIP: no CUDA device" "$OUT/$2" && fail "the $1 suite saw no CUDA device"
    printf '%s: ' "$1" | tee -a "$SUMMARY"
    tail -1 "$OUT/$2" | tee -a "$SUMMARY"
}

# ---- correctness: every kernel against the scalar reference ----
if [ "${GPU_CHECK_SKIP_TESTS:-0}" != 1 ]; then
    run_suite backend_cuda tests.log 270 "the CUDA unit suite (backend_cuda; rerun one seed with HL_TEST_SEED=...)"
    run_suite llama_cuda llama_cuda.log 270 "the whole-model suite (llama_cuda: CUDA vs CPU logits, graph replays)"
    grep "^llama_cuda " "$OUT/llama_cuda.log" | tee -a "$SUMMARY"
    # The suites whose CUDA cases sit next to their CPU ones: device top-k, fused add_rmsnorm and
    # fused weights (CUDA vs CPU), the attention geometry table, the cuBLAS loader.
    for SUITE in topk fused attn_fits cublas_host; do
        run_suite "$SUITE" "$SUITE.log" 150 "the $SUITE suite"
    done
    say "tests done after $(elapsed) s"
fi

# ---- benchmark table ----
deadline_ok
say "kernel benchmark (results also in $OUT/bench.txt)"
if ! timeout "$(limit 240)" "$B/bench_cuda" "$OUT/bench.txt"; then
    failed "benchmark (partial results in $OUT/bench.txt)"
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
        deadline_ok
        say "end to end: $M (bench engine --device cuda, then --serve-sim 64 x 512/128)"
        if ! timeout "$(limit 200)" "$B/halyard" bench engine -m "$M" --device cuda --synth-vocab 128256 \
                --batch 1,16,64 -p 512 -n 128 --reps 2 --serve-sim --sessions 64 --requests 128 \
                --json "$OUT/engine_$TYPE.json" > "$LOG" 2>&1; then
            tail -20 "$LOG"
            failed "end to end on $M (log: $LOG)"
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
if [ -n "$FAILED" ]; then
    say "done after $(elapsed) s with failures:${FAILED#;}"
    exit 1
fi
say "all done after $(elapsed) s"
