#!/usr/bin/env python3
"""Encode throughput, one thread: halyard's tokenizer against Hugging Face `tokenizers`.

    .venv/bin/python tools/bench_tokenizer.py [--mb 4] [--halyard build/halyard]

Builds a few MB of mixed text (prose, code, numbers, whitespace runs, emoji, CJK, Arabic, other
scripts; one ~1 KB paragraph per line, from the fixture generator's corpus), then encodes it line
by line with
  - `halyard tokenize -m MODEL --bench FILE` (timing covers encode only, no I/O), and
  - `tokenizers` built exactly as in tests/fixtures/make_tokenizer_expect.py, one encode() call
    per line, special-token text as ordinary text, TOKENIZERS_PARALLELISM=false,
for SmolLM2 (the default model's GGUF) and Llama 3 (the shared fixture), and prints MB/s and
the token counts (which must agree: both sides produce the same ids). Each side runs --repeat
times; the best run counts.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_tokenizer_expect as fx  # noqa: E402


def bench_text(mb, seed=7):
    rng = random.Random(seed)
    pool = fx.corpus(seed)
    weights = [(fx.PROSE, 6), (fx.CODE, 3), (pool, 2), (fx.NUMBERS, 1), (fx.CJK, 1), (fx.ARABIC, 1),
               (fx.OTHER_SCRIPTS, 1), (fx.EMOJI, 1), (fx.WHITESPACE, 1)]
    lists = [l for l, w in weights for _ in range(w)]
    lines, size = [], 0
    while size < mb * 1_000_000:
        parts, n = [], 0
        while n < 1000:
            s = rng.choice(rng.choice(lists)).replace("\n", " ")
            parts.append(s)
            n += len(s.encode()) + 1
        line = " ".join(parts) + "\n"
        lines.append(line)
        size += len(line.encode())
    return "".join(lines)


def run_halyard(binary, model, path, repeat, pre=None):
    best = None
    for _ in range(repeat):
        cmd = [binary, "tokenize", "-m", model, "--bench", path] + (["--pre", pre] if pre else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    return best


def run_hf(tok, text, repeat):
    lines = text.split("\n")
    lines = [l + "\n" for l in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    tok.encode_special_tokens = True
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        n_tokens = sum(len(tok.encode(l, add_special_tokens=False).ids) for l in lines)
        secs = time.perf_counter() - t0
        if best is None or secs < best[0]:
            best = (secs, n_tokens)
    n_bytes = len(text.encode())
    return {"bytes": n_bytes, "tokens": best[1], "seconds": round(best[0], 4),
            "mb_per_s": round(n_bytes / 1e6 / best[0], 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--halyard", default=os.path.join(ROOT, "build", "halyard"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--llama3", default=os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "llama3-tokenizer"))
    a = ap.parse_args()
    text = bench_text(a.mb)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        rows = []
        if os.path.exists(a.model):
            rows.append(("SmolLM2 (smollm)", run_halyard(a.halyard, a.model, path, a.repeat),
                         run_hf(fx.smollm2_tokenizer(a.model), text, a.repeat)))
        if os.path.isdir(a.llama3):
            rows.append(("Llama 3 (llama-bpe)", run_halyard(a.halyard, a.llama3, path, a.repeat, "llama-bpe"),
                         run_hf(fx.llama3_tokenizer(a.llama3), text, a.repeat)))
        print(f"text: {len(text.encode()) / 1e6:.2f} MB, {text.count(chr(10))} lines; one thread, best of {a.repeat}")
        print(f"{'tokenizer':22} {'halyard MB/s':>13} {'HF tokenizers MB/s':>19} {'speed-up':>9} {'tokens':>10}  same")
        for name, h, hf in rows:
            same = "yes" if h["tokens"] == hf["tokens"] else f"NO ({hf['tokens']})"
            print(f"{name:22} {h['mb_per_s']:13.2f} {hf['mb_per_s']:19.2f} {h['mb_per_s'] / hf['mb_per_s']:8.2f}x "
                  f"{h['tokens']:10d}  {same}")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
