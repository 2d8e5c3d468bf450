"""`halyard serve --config FILE`: options from a JSON object, overridden by the command line;
bad files are usage errors (exit 2) with a message, never a crash."""
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import BIN, ROOT, TINY, Server  # noqa: E402


def write(tmp, name, obj):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # port 1 in the file would fail to bind: the command line's --port 0 must win.
        cfg = write(tmp, "ok.json", {"port": 1, "served-model-name": "from-config", "max-seqs": 4,
                                     "ctx": 512, "no-access-log": True, "t": 1})
        with Server(TINY, ["--config", cfg]) as srv:
            models = json.load(urllib.request.urlopen(f"{srv.url}/v1/models"))
            assert [m["id"] for m in models["data"]] == ["from-config"], models
            assert models["data"][0].get("max_model_len") == 512, models
            body = json.dumps({"model": "from-config", "prompt": "hi", "max_tokens": 2}).encode()
            req = urllib.request.Request(f"{srv.url}/v1/completions", body, {"Content-Type": "application/json"})
            assert json.load(urllib.request.urlopen(req))["usage"]["completion_tokens"] >= 1
        assert '"path"' not in srv.stdout_text, "no-access-log from the file was ignored"
        with Server(TINY, ["--config", cfg, "--served-model-name", "from-cli"]) as srv:
            models = json.load(urllib.request.urlopen(f"{srv.url}/v1/models"))
            assert [m["id"] for m in models["data"]] == ["from-cli"], models
        bad = [
            ("[1, 2]", "not a JSON object"),
            ("{not json", "not a JSON object"),
            ({"no-such-option": 3}, "unknown option"),
            ({"port": [8080]}, "must be a string, number or boolean"),
            ({"port": "eighty"}, "--port"),
            ({"max-seqs": -1}, "--max-seqs"),
            ({"host": True}, "is not a flag"),
        ]
        for i, (content, message) in enumerate(bad):
            path = write(tmp, f"bad{i}.json", content)
            p = subprocess.run([BIN, "serve", "-m", TINY, "--config", path], capture_output=True, text=True,
                               cwd=ROOT, timeout=30)
            assert p.returncode == 2, (content, p.returncode, p.stderr)
            assert message in p.stderr, (content, p.stderr)
        p = subprocess.run([BIN, "serve", "-m", TINY, "--config", os.path.join(tmp, "missing.json")],
                           capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert p.returncode == 2 and "missing.json" in p.stderr, p.stderr
    print("ok")


if __name__ == "__main__":
    main()
