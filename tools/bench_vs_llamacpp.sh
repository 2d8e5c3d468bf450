#!/bin/sh
# bench_vs_llamacpp: halyard's server against llama.cpp's OpenAI-compatible server
# (llama-cpp-python's `python -m llama_cpp.server`) on this machine. One server at a time on
# loopback (they would fight for the same cores), the same GGUF, the same thread count, and the
# same `halyard bench serve` sweep against each: same seed (so the same prompts), same forced
# output lengths. Writes into $OUT (docs/bench/):
#   halyard.json, halyard.svg, halyard.txt      halyard's sweep: every request, summaries, CDFs
#   llamacpp.json, llamacpp.svg, llamacpp.txt   the same for llama.cpp
#   compare.md, compare.svg                     side-by-side table, throughput and p99 TTFT chart
#   *-server.log                                the servers' own output
#
# usage: sh tools/bench_vs_llamacpp.sh [MODEL.gguf]   (default: the SmolLM2-135M Q4_1 file)
# Environment (defaults in brackets):
#   THREADS [nproc]  SWEEP [1,8,32,64]  PROMPT_LEN [128]  OUTPUT_LEN [128]  WARMUP [4]
#   REQUESTS [bench's default: 4 x concurrency, at least 16]  SEED [1]
#   BAN_IDS [0,2]: token ids banned through logit_bias so that both servers generate OUTPUT_LEN
#     tokens (SmolLM2: <|endoftext|> = 0, <|im_end|> = 2; change for other models). halyard also
#     gets ignore_eos/min_tokens; llama-cpp-python ignores those fields.
#   HALYARD_BIN [build/halyard]  PY [.venv/bin/python]  OUT [docs/bench]
#
# What to know when reading the numbers:
# - llama-cpp-python's server runs one request at a time (one llama context behind a lock, no
#   continuous batching). It is started with --interrupt_requests False; its default aborts
#   the request in flight whenever a new one arrives.
# - Its stream carries no usage: its output tokens are counted as content chunks (one token
#   each) and its input tokens show as 0.
# - Expect about 10-25 minutes on 2 cores, most of it llama.cpp at concurrency 32 and 64.
set -eu
cd "$(dirname "$0")/.."

MODEL="${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-$(nproc)}"
SWEEP="${SWEEP:-1,8,32,64}"
PROMPT_LEN="${PROMPT_LEN:-128}"
OUTPUT_LEN="${OUTPUT_LEN:-128}"
WARMUP="${WARMUP:-4}"
SEED="${SEED:-1}"
BAN_IDS="${BAN_IDS:-0,2}"
HALYARD_BIN="${HALYARD_BIN:-build/halyard}"
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-docs/bench}"
SERVER_PID=""

die() { echo "bench_vs_llamacpp: $*" >&2; exit 1; }

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap stop_server EXIT INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until URL answers 200 (servers answer 503 while they load).
wait_ready() {
    i=0
    while [ $i -lt 300 ]; do
        curl -sf -o /dev/null "$1" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see its log in $OUT"
        sleep 0.5
        i=$((i + 1))
    done
    die "no answer from $1 after 150 s"
}

# run_bench LABEL FILE_STEM URL: the sweep against one server.
run_bench() {
    stem="$2"
    bias=$(echo "$BAN_IDS" | sed 's/\([0-9][0-9]*\)/\1=-100/g')
    set -- --url "$3" --label "$1" --sweep "$SWEEP" --prompt-len "$PROMPT_LEN" \
        --output-len "$OUTPUT_LEN" --ignore-eos --temperature 0 --warmup "$WARMUP" --seed "$SEED" \
        --timeout 3600 --json "$OUT/$stem.json" --svg "$OUT/$stem.svg"
    if [ -n "$bias" ]; then set -- "$@" --logit-bias "$bias"; fi
    if [ -n "${REQUESTS:-}" ]; then set -- "$@" --requests "$REQUESTS"; fi
    "$HALYARD_BIN" bench serve "$@" | tee "$OUT/$stem.txt"
}

[ -f "$MODEL" ] || die "no model at $MODEL (sh tools/fetch_model.sh models)"
[ -x "$HALYARD_BIN" ] || die "no binary at $HALYARD_BIN (make)"
"$HALYARD_BIN" serve --help >/dev/null 2>&1 || die "$HALYARD_BIN has no 'serve' command yet"
[ -x "$PY" ] || die "no Python at $PY (make pydeps)"
if ! "$PY" -c "import llama_cpp.server.app, uvicorn, fastapi, sse_starlette" 2>/dev/null; then
    echo "bench_vs_llamacpp: installing llama-cpp-python's server extras into $(dirname "$(dirname "$PY")")"
    "$PY" -m pip install -q "llama-cpp-python[server]==$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')"
fi
mkdir -p "$OUT"
echo "model $MODEL, $THREADS threads, sweep $SWEEP, prompt $PROMPT_LEN words, output $OUTPUT_LEN tokens"

port=$(free_port)
"$HALYARD_BIN" serve -m "$MODEL" --host 127.0.0.1 --port "$port" -t "$THREADS" --max-seqs 64 \
    --no-access-log >"$OUT/halyard-server.log" 2>&1 &
SERVER_PID=$!
wait_ready "http://127.0.0.1:$port/health"
run_bench halyard halyard "http://127.0.0.1:$port"
stop_server

port=$(free_port)
"$PY" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$port" --n_threads "$THREADS" \
    --n_threads_batch "$THREADS" --n_ctx 4096 --interrupt_requests False --verbose False \
    >"$OUT/llamacpp-server.log" 2>&1 &
SERVER_PID=$!
wait_ready "http://127.0.0.1:$port/v1/models"
run_bench llama.cpp llamacpp "http://127.0.0.1:$port"
stop_server

"$HALYARD_BIN" bench serve --compare "$OUT/halyard.json,$OUT/llamacpp.json" --svg "$OUT/compare.svg" \
    | tee "$OUT/compare.md"
echo "bench_vs_llamacpp: results in $OUT/"
