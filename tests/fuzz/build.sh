#!/bin/sh
# Builds every tests/fuzz/fuzz_*.c into build/fuzz/<name> with clang, libFuzzer, ASan and
# UBSan. The library sources are compiled here with clang (coverage-instrumented) into
# build/fuzz/libhalyard_fuzz.a, so each harness links only the objects it uses; a library
# file that does not compile is reported and left out (a harness that needs it then fails
# to link). Afterwards each harness runs once over the seeds (every file under
# tests/fixtures smaller than 1 MiB): a quick regression check.
#
#   sh tests/fuzz/build.sh                   build + replay the seeds (make fuzz)
#   FUZZ_SECONDS=120 sh tests/fuzz/build.sh  also fuzz each harness for 120 s; the corpus
#                                            grows in tests/fuzz/corpus-<name>/ (git-ignored)
#   FUZZ_ONLY=gguf sh tests/fuzz/build.sh    only harnesses whose name contains "gguf"
#
# Crashes are saved as build/fuzz/artifacts/<name>-crash-*; replay one with
# build/fuzz/<name> FILE.
set -u
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
OUT=build/fuzz
PKGS="libpcre2-8 libmicrohttpd libcjson libcurl"
LIB_DIRS="common engine kernels kernels/cpu tokenizer rag server"
# -O1 -g: fast enough to fuzz, readable stacks; UB is fatal so the fuzzer reports it.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -I. $(pkg-config --cflags $PKGS 2>/dev/null)"
LIBS="$(pkg-config --libs $PKGS 2>/dev/null) -lm -lpthread"

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (libFuzzer needs clang: apt-get install clang)" >&2
    exit 1
fi
mkdir -p "$OUT/obj" "$OUT/artifacts"

# True when $1 (object) is missing or older than its source or any header in its .d file.
stale() {
    [ -f "$1" ] && [ -f "${1%.o}.d" ] || return 0
    for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "${1%.o}.d"); do
        [ "$dep" -nt "$1" ] && return 0
    done
    return 1
}

# Per-file ISA flags, as in the Makefile: wider-ISA kernels live in their own files.
isa_flags() {
    case "$1" in
    *_avx2.c) echo "-mavx2 -mfma -mf16c" ;;
    *_avx512.c) echo "-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq" ;;
    *_vnni.c) echo "-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni" ;;
    esac
}

objs=""
for src in $(for d in $LIB_DIRS; do ls "$d"/*.c 2>/dev/null; done) kernels/cuda/nocuda.c; do
    [ -f "$src" ] || continue
    obj="$OUT/obj/$(echo "${src%.c}" | tr / _).o"
    if stale "$obj"; then
        if ! $CC $CFLAGS $(isa_flags "$src") $SAN -fsanitize=fuzzer-no-link -MMD -c -o "$obj" "$src"; then
            echo "fuzz: warning: $src does not compile with $CC; left out" >&2
            rm -f "$obj"
            continue
        fi
    fi
    objs="$objs $obj"
done
rm -f "$OUT/libhalyard_fuzz.a"
ar rcs "$OUT/libhalyard_fuzz.a" $objs || exit 1

# Seeds: small files from tests/fixtures, flattened into one folder.
seeds="$OUT/seeds"
rm -rf "$seeds"
mkdir -p "$seeds"
find tests/fixtures -type f -size -1024k | while read -r f; do
    cp "$f" "$seeds/$(echo "$f" | tr / _)"
done

failed=""
for h in tests/fuzz/fuzz_*.c; do
    [ -f "$h" ] || continue
    name=$(basename "$h" .c)
    case "$name" in *"${FUZZ_ONLY:-}"*) ;; *) continue ;; esac
    echo "fuzz: building $name"
    if ! $CC $CFLAGS $SAN -fsanitize=fuzzer -o "$OUT/$name" "$h" "$OUT/libhalyard_fuzz.a" $LIBS; then
        failed="$failed $name(build)"
        continue
    fi
    # -runs=0 executes every seed once and stops.
    if ! "$OUT/$name" -runs=0 -artifact_prefix="$OUT/artifacts/$name-" "$seeds" >"$OUT/$name.replay.log" 2>&1; then
        tail -40 "$OUT/$name.replay.log" >&2
        failed="$failed $name(seeds)"
        continue
    fi
    [ -n "${FUZZ_SECONDS:-}" ] || continue
    corpus="tests/fuzz/corpus-${name#fuzz_}"
    mkdir -p "$corpus"
    echo "fuzz: running $name for ${FUZZ_SECONDS}s (corpus $corpus)"
    if ! "$OUT/$name" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$name-" "$corpus" "$seeds" \
        >"$OUT/$name.log" 2>&1; then
        tail -60 "$OUT/$name.log" >&2
        failed="$failed $name"
        continue
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added)|^Done' "$OUT/$name.log" | sed "s/^/fuzz: $name: /"
done
if [ -n "$failed" ]; then
    echo "fuzz: FAILED:$failed" >&2
    exit 1
fi
echo "fuzz: all harnesses ok"
