#!/usr/bin/env python3
"""`halyard pull` against a local HTTP server (127.0.0.1 only, ephemeral port).

The server (an http.server subclass defined here) serves one random 3 MiB file under
several behaviours: Range support, a Hugging-Face-like redirect chain to a CDN host,
404, 401, a connection dropped halfway, a server that ignores Range, a stalled
transfer, 503 and a redirect loop. Hosts other than 127.0.0.1 ("huggingface.co",
"cdn.test") are pinned to 127.0.0.1 with --resolve, so nothing leaves the machine.
Every request is recorded, so the tests check what the client sent (Range,
Authorization), not only what it saved.
"""
import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.abspath(os.environ.get("HALYARD_BIN", "build/halyard"))
DATA = os.urandom(3 * 1024 * 1024)
SHA = hashlib.sha256(DATA).hexdigest()
TOKEN = "tok-123"
HF_TOKEN = "hf_secret_456"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log = []  # (path, Host, Range, Authorization) per request
    counts = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def record(self, path):
        h = self.headers
        with self.lock:
            self.log.append((path, h.get("Host", ""), h.get("Range"), h.get("Authorization")))
            self.counts[path] = self.counts.get(path, 0) + 1
            return self.counts[path]

    def send_status(self, code, headers=(), body=b""):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve_file(self, honour_range=True, cut_at=None, stall=False):
        """200 or 206 of DATA; cut_at: send that many body bytes, then drop or stall."""
        rng = self.headers.get("Range") if honour_range else None
        start, code, extra = 0, 200, []
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m, f"unexpected Range {rng!r}"
            start = int(m.group(1))
            if start >= len(DATA):
                return self.send_status(416, [("Content-Range", f"bytes */{len(DATA)}")])
            code, extra = 206, [("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")]
        body = DATA[start:]
        self.send_response(code)
        for k, v in extra + [("Content-Type", "application/octet-stream")]:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut_at is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut_at])
        self.wfile.flush()
        if stall:
            time.sleep(6)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self):
        path = self.path.split("?")[0]
        n = self.record(path)
        port = self.server.server_address[1]
        try:
            self.route(path, n, port)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def route(self, path, n, port):
        if path in ("/files/model.bin", "/cdn/blobs/model.bin"):
            return self.serve_file()
        if path == "/chain/model.bin":  # not the Hub: its X-Linked-Etag means nothing
            return self.send_status(302, [("Location", "/files/model.bin"), ("X-Linked-Etag", f'"{"0" * 64}"')])
        if path == "/org/repo/resolve/main/model.bin":  # the Hub answers resolve/ with a redirect
            return self.send_status(302, [("Location", "/api/resolve-cache/model.bin"),
                                          ("X-Linked-Etag", f'"{SHA}"'), ("X-Linked-Size", str(len(DATA)))])
        if path == "/org/repo/resolve/main/stale.bin":  # announces another file's digest
            return self.send_status(302, [("Location", "/api/resolve-cache/model.bin"),
                                          ("X-Linked-Etag", f'"{"ab" * 32}"')])
        if path == "/api/resolve-cache/model.bin":
            return self.send_status(307, [("Location", f"http://cdn.test:{port}/cdn/blobs/model.bin?sig=x")])
        if path == "/org/repo/blob/main/model.bin":  # the web page, not the file
            return self.send_status(200, [("Content-Type", "text/html")], b"<html>model page</html>")
        if path == "/private/model.bin":
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self.send_status(401, [("WWW-Authenticate", "Bearer")], b"unauthorized")
            return self.serve_file()
        if path.startswith("/drop"):  # the first request of each such path breaks off halfway
            return self.serve_file(cut_at=len(DATA) // 2 if n == 1 else None)
        if path == "/norange/model.bin":
            return self.serve_file(honour_range=False)
        if path == "/stall/model.bin":
            return self.serve_file(cut_at=1000, stall=True)
        if path == "/busy/model.bin":
            return self.send_status(503, [("Retry-After", "0")], b"busy")
        if path == "/deadend/model.bin":  # port 1 on loopback: nothing listens there
            return self.send_status(302, [("Location", "http://127.0.0.1:1/model.bin")])
        if path == "/loop":
            return self.send_status(302, [("Location", "/loop")])
        return self.send_status(404, [], b"not found")


def requests_for(path):
    with Handler.lock:
        return [r for r in Handler.log if r[0] == path]


def pull(*args, env=None, cwd=None, timeout=10):
    e = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    e.update(env or {})
    return subprocess.run([BIN, "pull", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=e)


def expect(p, rc, *needles):
    out = p.stdout + p.stderr
    assert p.returncode == rc, f"exit {p.returncode}, want {rc}:\n{out}"
    for s in needles:
        assert s in out, f"{s!r} not in output:\n{out}"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


class Cases:
    def __init__(self, base, tmp):
        self.base, self.tmp = base, tmp
        self.port = int(base.rsplit(":", 1)[1])

    def out(self, name):
        return os.path.join(self.tmp, name)

    def hf_args(self):
        return ["--resolve", f"huggingface.co:{self.port}:127.0.0.1", "--resolve", f"cdn.test:{self.port}:127.0.0.1"]

    def test_basic(self):
        o = self.out("basic.bin")
        p = pull(self.base + "/files/model.bin", "-o", o)
        expect(p, 0, SHA, str(len(DATA)))
        assert read(o) == DATA
        assert not os.path.exists(o + ".part")
        assert requests_for("/files/model.bin")[-1][2] is None  # no Range on a fresh pull

    def test_default_name_into_models(self):
        d = self.out("cwd")
        os.mkdir(d)
        p = pull(self.base + "/files/model.bin?download=true", cwd=d)
        expect(p, 0, "models/model.bin")
        assert read(os.path.join(d, "models", "model.bin")) == DATA

    def test_sha256_match(self):
        o = self.out("sha_ok.bin")
        expect(pull(self.base + "/files/model.bin", "-o", o, "--sha256", SHA.upper()), 0)
        assert read(o) == DATA

    def test_sha256_mismatch_leaves_nothing(self):
        o = self.out("sha_bad.bin")
        wrong = hashlib.sha256(b"something else").hexdigest()
        p = pull(self.base + "/files/model.bin", "-o", o, "--sha256", wrong)
        expect(p, 1, "sha256 mismatch", wrong, SHA)
        assert not os.path.exists(o) and not os.path.exists(o + ".part")

    def test_404(self):
        o = self.out("missing.bin")
        expect(pull(self.base + "/missing.bin", "-o", o), 1, "HTTP 404")
        assert not os.path.exists(o) and not os.path.exists(o + ".part")

    def test_401_and_tokens(self):
        o = self.out("private.bin")
        url = self.base + "/private/model.bin"
        expect(pull(url, "-o", o), 1, "HTTP 401", "--token or HF_TOKEN")
        assert not os.path.exists(o)
        # HF_TOKEN is for the Hub only: not sent to 127.0.0.1.
        expect(pull(url, "-o", o, env={"HF_TOKEN": TOKEN}), 1, "HTTP 401")
        assert requests_for("/private/model.bin")[-1][3] is None
        expect(pull(url, "-o", o, "--token", "wrong"), 1, "HTTP 401", "token was refused")
        expect(pull(url, "-o", o, "--token", TOKEN), 0, SHA)
        assert read(o) == DATA

    def test_redirect(self):
        o = self.out("chain.bin")
        p = pull(self.base + "/chain/model.bin", "-o", o)
        expect(p, 0)
        assert read(o) == DATA and "verified" not in p.stdout

    def test_hf_resolve_redirects_to_cdn(self):
        o = self.out("hf.bin")
        url = f"http://huggingface.co:{self.port}/org/repo/resolve/main/model.bin"
        p = pull(url, "-o", o, *self.hf_args(), env={"HF_TOKEN": HF_TOKEN})
        expect(p, 0, SHA + ", verified")
        assert read(o) == DATA
        first = requests_for("/org/repo/resolve/main/model.bin")[-1]
        cdn = requests_for("/cdn/blobs/model.bin")[-1]
        assert first[1].startswith("huggingface.co") and first[3] == f"Bearer {HF_TOKEN}", first
        assert cdn[1].startswith("cdn.test") and cdn[3] is None, f"token leaked to the CDN host: {cdn}"

    def test_hf_digest_mismatch(self):
        o = self.out("stale.bin")
        url = f"http://huggingface.co:{self.port}/org/repo/resolve/main/stale.bin"
        expect(pull(url, "-o", o, *self.hf_args()), 1, "sha256 mismatch", "ab" * 32, "X-Linked-Etag")
        assert not os.path.exists(o) and not os.path.exists(o + ".part")

    def test_hf_blob_link_becomes_resolve(self):
        o = self.out("hf_blob.bin")
        n_blob = len(requests_for("/org/repo/blob/main/model.bin"))
        url = f"http://huggingface.co:{self.port}/org/repo/blob/main/model.bin"
        expect(pull(url, "-o", o, *self.hf_args()), 0)
        assert read(o) == DATA  # the blob page is HTML: only the resolve/ file matches
        assert len(requests_for("/org/repo/blob/main/model.bin")) == n_blob

    def test_redirect_to_dead_host(self):
        o = self.out("deadend.bin")
        expect(pull(self.base + "/deadend/model.bin", "-o", o, "--retries", "0"), 1, "connect")
        assert not os.path.exists(o) and not os.path.exists(o + ".part")

    def test_redirect_loop(self):
        o = self.out("loop.bin")
        expect(pull(self.base + "/loop", "-o", o, "--max-redirects", "3"), 1, "too many redirects")
        assert not os.path.exists(o) and not os.path.exists(o + ".part")
        assert len(requests_for("/loop")) == 4

    def test_resume_after_drop(self):
        o = self.out("drop.bin")
        url = self.base + "/drop-a/model.bin"
        p = pull(url, "-o", o, "--retries", "0")
        expect(p, 1, "run the same command again")
        assert not os.path.exists(o)
        part = read(o + ".part")
        assert 0 < len(part) < len(DATA) and part == DATA[: len(part)], len(part)
        p = pull(url, "-o", o, "--sha256", SHA)
        expect(p, 0, f"resumed {o} at {len(part)} bytes")
        assert read(o) == DATA and not os.path.exists(o + ".part")
        assert requests_for("/drop-a/model.bin")[-1][2] == f"bytes={len(part)}-"

    def test_retry_resumes_within_one_run(self):
        o = self.out("drop_b.bin")
        expect(pull(self.base + "/drop-b/model.bin", "-o", o, "--retries", "2", "--sha256", SHA), 0)
        assert read(o) == DATA
        reqs = requests_for("/drop-b/model.bin")
        assert len(reqs) == 2 and reqs[0][2] is None and reqs[1][2].startswith("bytes="), reqs

    def test_server_ignoring_range_restarts(self):
        o = self.out("norange.bin")
        write(o + ".part", bytes(b ^ 0xFF for b in DATA[:1000]))  # wrong bytes: must not survive
        expect(pull(self.base + "/norange/model.bin", "-o", o), 0, SHA)
        assert read(o) == DATA
        assert requests_for("/norange/model.bin")[-1][2] == "bytes=1000-"

    def test_corrupt_part_fails_digest_and_is_deleted(self):
        o = self.out("corrupt.bin")
        write(o + ".part", bytes(b ^ 0xFF for b in DATA[:5000]))
        p = pull(self.base + "/files/model.bin", "-o", o, "--sha256", SHA)
        expect(p, 1, "sha256 mismatch")
        assert not os.path.exists(o) and not os.path.exists(o + ".part")
        expect(pull(self.base + "/files/model.bin", "-o", o, "--sha256", SHA), 0)
        assert read(o) == DATA

    def test_complete_part_416(self):
        o = self.out("complete.bin")
        write(o + ".part", DATA)
        n_before = len(requests_for("/files/model.bin"))
        expect(pull(self.base + "/files/model.bin", "-o", o, "--sha256", SHA), 0, "resumed")
        assert read(o) == DATA
        reqs = requests_for("/files/model.bin")[n_before:]
        assert [r[2] for r in reqs] == [f"bytes={len(DATA)}-"], reqs

    def test_oversized_part_restarts(self):
        o = self.out("oversized.bin")
        write(o + ".part", DATA + b"trailing junk")
        expect(pull(self.base + "/files/model.bin", "-o", o), 0, SHA)
        assert read(o) == DATA

    def test_stall_timeout_lock_and_atomicity(self):
        o = self.out("stall.bin")
        t0 = time.time()
        proc = subprocess.Popen([BIN, "pull", self.base + "/stall/model.bin", "-o", o, "--retries", "0",
                                 "--stall-timeout", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        while not (os.path.exists(o + ".part") and os.path.getsize(o + ".part") > 0):
            assert proc.poll() is None and time.time() - t0 < 5, "no bytes arrived"
            time.sleep(0.02)
        assert not os.path.exists(o), "final file visible before the download finished"
        # A second pull into the same file while the first holds the .part is refused.
        expect(pull(self.base + "/files/model.bin", "-o", o), 1, "another download")
        _, err = proc.communicate(timeout=9)
        assert proc.returncode == 1 and "stalled" in err, err
        assert time.time() - t0 < 8
        assert not os.path.exists(o) and read(o + ".part") == DATA[:1000]

    def test_503_is_retried_then_reported(self):
        o = self.out("busy.bin")
        expect(pull(self.base + "/busy/model.bin", "-o", o, "--retries", "1"), 1, "HTTP 503")
        assert len(requests_for("/busy/model.bin")) == 2
        assert not os.path.exists(o) and not os.path.exists(o + ".part")

    def test_existing_output(self):
        o = self.out("exists.bin")
        write(o, DATA)
        n_before = len(Handler.log)
        expect(pull(self.base + "/files/model.bin", "-o", o), 1, "exists")
        expect(pull(self.base + "/files/model.bin", "-o", o, "--sha256", SHA), 0, "up to date")
        assert len(Handler.log) == n_before
        write(o, b"old")
        expect(pull(self.base + "/files/model.bin", "-o", o, "--force"), 0)
        assert read(o) == DATA

    def test_bad_arguments(self):
        o = self.out("bad.bin")
        expect(pull("file:///etc/passwd", "-o", o), 1, "only http:// and https://")
        expect(pull("ftp://127.0.0.1/x", "-o", o), 1, "only http:// and https://")
        expect(pull(self.base + "/files/model.bin", "-o", o, "--sha256", "abc"), 2, "64 hex digits")
        expect(pull(self.base + "/files/model.bin", "-o", o, "--header", "no colon"), 1, "bad header")
        expect(pull(self.base + "/", cwd=self.tmp), 1, "no usable file name")
        expect(pull(), 2)
        assert not os.path.exists(o)


def main():
    if not os.access(BIN, os.X_OK):
        print(f"SKIP: {BIN} not built")
        return 77
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases = Cases(base, tmp)
        for name in sorted(n for n in dir(Cases) if n.startswith("test_")):
            t0 = time.time()
            try:
                getattr(cases, name)()
                dt = time.time() - t0
                assert dt < 10, f"took {dt:.1f} s"
                print(f"ok   {name} ({dt:.1f}s)")
            except Exception as e:  # report every case, then fail
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
    server.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
