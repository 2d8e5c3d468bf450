"""`halyard run --chat` on the default model answers a question in English and stops by itself.

Greedy decoding of "What is the capital of France?" (system prompt "You are a helpful
assistant."): the answer must be non-empty, mostly ASCII letters, name Paris, and end at the
model's end of turn (<|im_end|>: finish "eog", not "length"), well before -n. Also checks
that stdout carries only the answer (no template markup) and stderr the two speeds, that a
stop string cuts the text, that a raw (non-chat) prompt continues text, and that
--interactive keeps the history: the second turn reuses the first turn's KV cache (a
non-zero "cached" count) and answers about Germany.
"""
import os
import re
import subprocess
import sys

ROOT = os.environ.get("HALYARD_ROOT", os.getcwd())
BIN = os.environ.get("HALYARD_BIN", "build/halyard")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def run(*args):
    p = subprocess.run([BIN, "run", "-m", MODEL, "-t", "2", "--temp", "0", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, f"halyard run {args} failed ({p.returncode}): {p.stderr}"
    return p.stdout, p.stderr


def main():
    if not os.path.exists(MODEL):
        print(f"SKIP: {MODEL} not fetched (sh tools/fetch_model.sh models)")
        sys.exit(77)
    out, err = run("--chat", "--system", "You are a helpful assistant.", "-p", "What is the capital of France?",
                   "-n", "128")
    print("answer:", repr(out))
    print(err.strip().splitlines()[-1])
    answer = out.strip()
    assert answer, "empty answer"
    letters = sum(c.isascii() and c.isalpha() for c in answer)
    assert letters >= 0.6 * len(answer), f"not English-looking: {answer!r}"
    assert "Paris" in answer, answer
    assert "<|im" not in out and "assistant\n" not in out, f"template markup leaked: {out!r}"
    m = re.search(r"generation: (\d+) tokens .* ([\d.]+) tok/s \| finish: (\w+)", err)
    assert m, f"no generation stats on stderr: {err!r}"
    assert m.group(3) == "eog" and int(m.group(1)) < 128, f"did not stop at <|im_end|>: {err!r}"
    assert re.search(r"prompt: \d+ tokens .* [\d.]+ tok/s", err), err

    cut, err = run("--chat", "--system", "You are a helpful assistant.", "-p", "What is the capital of France?",
                   "--stop", "Paris")
    assert "Paris" not in cut and answer.startswith(cut.strip()), (cut, answer)
    assert "finish: stop" in err, err

    text, err = run("-p", "The capital of France is", "-n", "8")
    assert text.strip() and "finish: length" in err, (text, err)

    p = subprocess.run([BIN, "run", "-m", MODEL, "-t", "2", "--temp", "0", "--interactive", "--system",
                        "You are a helpful assistant.", "-n", "64"],
                       input="What is the capital of France?\nAnd of Germany?\n", capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    turns = [line for line in p.stdout.splitlines() if line.strip()]
    cached = [int(c) for c in re.findall(r"\((\d+) cached\)", p.stderr)]
    print("interactive:", turns, cached)
    assert len(turns) == 2 and "Paris" in turns[0] and "Berlin" in turns[1], p.stdout
    assert len(cached) == 2 and cached[0] == 0 and cached[1] > 20, p.stderr
    print("ok")


if __name__ == "__main__":
    main()
