"""Shared helpers for the `halyard serve` integration tests (tests/integration/test_serve_*.py).

Server(...) starts a real `halyard serve` on 127.0.0.1 with an ephemeral port (--port 0; the
port is read from the "listening on" line), waits until /health says ok, and stops it with
SIGTERM (checking the exit code) when the `with` block ends. Everything it printed is kept in
.stderr_text / .stdout_text (stdout holds the JSON access log).
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.environ.get("HALYARD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
BIN = os.path.abspath(os.environ.get("HALYARD_BIN", os.path.join(ROOT, "build/halyard")))
DEFAULT_MODEL = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
TINY = "synthetic:tiny:q8_0"


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def require_sdks():
    try:
        import anthropic  # noqa: F401
        import openai  # noqa: F401
    except ImportError:
        skip("the openai/anthropic SDKs are not in the venv (make pydeps)")
    if not os.path.exists(BIN):
        skip(f"{BIN} not built")
    if subprocess.run([BIN, "serve", "--help"], capture_output=True).returncode != 0:
        skip("this halyard has no serve command")


class Server:
    def __init__(self, model=TINY, args=(), env=None, ready_timeout=60):
        self.model = model
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("HALYARD_ROOT", ROOT)
        self.ready_timeout = ready_timeout
        self.proc = None
        self.port = None
        self.stderr_text = ""
        self.stdout_text = ""

    def start(self):
        self._err = tempfile.TemporaryFile()
        self._out = tempfile.TemporaryFile()
        cmd = [BIN, "serve", "-m", self.model, "--host", "127.0.0.1", "--port", "0", "-t", "2"] + self.args
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._out, stderr=self._err, env=self.env)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            text = self._read(self._err)
            m = re.search(r"listening on http://[^:]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"halyard serve exited with {self.proc.returncode}:\n{text}")
            if self.port and self.health()[0] == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"halyard serve not ready after {self.ready_timeout}s:\n{self._read(self._err)}")

    @staticmethod
    def _read(f):
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def health(self):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except OSError:
            return 0, {}

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers, body bytes) of one plain HTTP request."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None and "Content-Type" not in (headers or {}):
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def metrics(self):
        """{name{labels}: value} of /metrics."""
        status, _, body = self.request("GET", "/metrics")
        assert status == 200, status
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.stderr_text = self._read(self._err)
        self.stdout_text = self._read(self._out)
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        rc = self.stop()
        if exc[0] is None:
            assert rc == 0, f"halyard serve exited with {rc} after SIGTERM:\n{self.stderr_text[-3000:]}"
        elif self.stderr_text:
            print(self.stderr_text[-3000:], file=sys.stderr)


def run_with_timeout(fn, seconds):
    """Runs fn() in a thread; fails when it takes longer than seconds (tests stay bounded)."""
    result, error = [], []

    def target():
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            error.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise AssertionError(f"{getattr(fn, '__name__', 'test')} took longer than {seconds}s")
    if error:
        raise error[0]
    return result[0] if result else None


def run_tests(tests, per_test_s=60):
    failed = 0
    for fn in tests:
        t0 = time.time()
        try:
            run_with_timeout(fn, per_test_s)
            print(f"ok   {fn.__name__} ({time.time() - t0:.1f}s)")
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print(f"FAIL {fn.__name__}: {e!r}")
    print(f"{len(tests) - failed}/{len(tests)} passed")
    sys.exit(1 if failed else 0)
