"""--kv-cache-dtype f16|f32|int8 on `halyard run`, `serve` (also "kv_cache_dtype" in --config) and
`bench engine`: listed in --help, unknown values are usage errors (exit 2) naming the choices, and
int8 really reaches the engine: the same --kv-cache-mb holds more blocks (int8 codes + a float
scale per row instead of f16), requests are served and `run` generates text."""
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import BIN, DEFAULT_MODEL, ROOT, TINY, Server, skip  # noqa: E402


def halyard(*args, timeout=120):
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def blocks_total(srv):
    text = urllib.request.urlopen(f"{srv.url}/metrics").read().decode()
    m = re.search(r"^halyard_kv_cache_blocks_total (\d+)", text, re.M)
    assert m, text
    return int(m.group(1))


def complete(srv):
    body = json.dumps({"prompt": "The sea is", "max_tokens": 6, "temperature": 0}).encode()
    req = urllib.request.Request(f"{srv.url}/v1/completions", body, {"Content-Type": "application/json"})
    out = json.load(urllib.request.urlopen(req))
    assert out["usage"]["completion_tokens"] >= 1, out
    return out["choices"][0]["text"]


def main():
    if not os.path.exists(BIN):
        skip(f"{BIN} not built")
    for cmd in (["run", "-p", "hi"], ["serve"], ["bench", "engine"]):
        p = halyard(*cmd, "--help")
        assert p.returncode == 0 and "--kv-cache-dtype" in p.stdout, (cmd, p.returncode, p.stdout)
        p = halyard(*cmd, "-m", TINY, "--kv-cache-dtype", "fp8")
        assert p.returncode == 2, (cmd, p.returncode, p.stderr)
        assert "fp8" in p.stderr and "f16, f32 or int8" in p.stderr, (cmd, p.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"kv_cache_dtype": "int4"}, f)
        p = halyard("serve", "-m", TINY, "--config", bad)
        assert p.returncode == 2 and "int4" in p.stderr, (p.returncode, p.stderr)
        if not os.path.exists(DEFAULT_MODEL):
            skip(f"{DEFAULT_MODEL} absent (the synthetic model borrows its tokenizer)")
        good = os.path.join(tmp, "int8.json")
        with open(good, "w") as f:
            json.dump({"kv_cache_dtype": "int8", "kv-cache-mb": 4}, f)
        with Server(TINY, ["--kv-cache-mb", "4"]) as srv:
            n_f16 = blocks_total(srv)
            complete(srv)
        with Server(TINY, ["--config", good]) as srv:
            n_int8 = blocks_total(srv)
            complete(srv)
        # synthetic:tiny: 4 layers, 2 KV heads of 32: a block is 16 KiB in f16, 9 KiB in int8 (with scales)
        assert n_int8 > 1.7 * n_f16, (n_f16, n_int8)
        with Server(TINY, ["--config", good, "--kv-cache-dtype", "f16"]) as srv:  # the command line wins
            assert blocks_total(srv) == n_f16
    p = halyard("run", "-m", DEFAULT_MODEL, "-p", "The capital of France is", "-n", "12", "--temp", "0",
                "-t", "2", "--kv-cache-dtype", "int8")
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.stdout.strip(), p.stdout
    assert "generation: 12 tokens" in p.stderr, p.stderr
    print("ok")


if __name__ == "__main__":
    main()
