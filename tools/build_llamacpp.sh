#!/bin/sh
# Builds llama.cpp's own benchmark tools (llama-bench, llama-batched-bench) from the source
# that the PyPI package llama-cpp-python vendors, with every x86 ISA extension halyard uses
# (AVX2, FMA, F16C, AVX-512, VNNI, BF16) — the fastest build of it for this kind of CPU. Not
# GGML_NATIVE: on Sapphire Rapids that turns on ggml's AMX path, which crashes here (SIGSEGV in
# amx::tensor_traits::compute_forward). Output: build/llama.cpp/cmake/bin/. They are the peer
# that docs/BENCHMARKS.md measures halyard against.
#   build_llamacpp.sh        (about 5 minutes on 2 cores)
set -e
VERSION=0.3.36
OUT=build/llama.cpp
BIN="$OUT/cmake/bin" # llama.cpp's CMakeLists puts every binary under <build>/bin
if [ -x "$BIN/llama-bench" ] && [ -x "$BIN/llama-batched-bench" ]; then exit 0; fi
command -v cmake >/dev/null || { echo "build_llamacpp: cmake is missing (make deps)" >&2; exit 1; }
mkdir -p "$OUT"
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
PIP="python3 -m pip"
[ -x .venv/bin/pip ] && PIP=.venv/bin/pip
$PIP download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SRC"
tar xzf "$SRC/llama_cpp_python-$VERSION.tar.gz" -C "$SRC"
LC="$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$LC" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON \
    -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DBUILD_SHARED_LIBS=OFF > "$OUT/cmake.log"
cmake --build "$OUT/cmake" -j "$(nproc)" --target llama-bench llama-batched-bench >> "$OUT/cmake.log"
echo "build_llamacpp: $BIN/llama-bench and $BIN/llama-batched-bench (llama.cpp from llama-cpp-python $VERSION)"
