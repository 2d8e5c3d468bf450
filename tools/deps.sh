#!/bin/sh
# What halyard needs from the system, in one place.
#   deps.sh check    exit 0 when every Debian package is present
#   deps.sh install  apt-get install them (as root), or print the command
#   deps.sh python   create .venv with the Python packages tests use as references
set -e
APT_PKGS="build-essential pkg-config check libsubunit-dev libpcre2-dev libmicrohttpd-dev \
libcjson-dev libcurl4-openssl-dev python3 python3-venv unzip curl clang cmake"
PC_MODULES="check libpcre2-8 libmicrohttpd libcjson libcurl"
PY_PKGS="numpy gguf openai anthropic"
# llama.cpp, built from source by llama-cpp-python (about 4 minutes on 2 cores): the peer that
# synth/quantize output is checked against and that benchmarks compare with.
LLAMA_CPP_PKG="llama-cpp-python[server]==0.3.36"

have_all() {
    command -v pkg-config >/dev/null 2>&1 || return 1
    for m in $PC_MODULES; do pkg-config --exists "$m" || return 1; done
    command -v python3 >/dev/null 2>&1 || return 1
    command -v unzip >/dev/null 2>&1 || return 1
    return 0
}

case "$1" in
check)
    have_all
    ;;
install)
    if have_all; then echo "deps: all present"; exit 0; fi
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages; run as root:"
        echo "  apt-get update && apt-get install -y $APT_PKGS"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $APT_PKGS
    ;;
python)
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import numpy, gguf, llama_cpp, openai, anthropic" 2>/dev/null; then exit 0; fi
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q $PY_PKGS
    echo "deps: building $LLAMA_CPP_PKG (llama.cpp) into .venv"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" .venv/bin/pip install -q "$LLAMA_CPP_PKG"
    ;;
*)
    echo "usage: deps.sh check|install|python" >&2
    exit 2
    ;;
esac
