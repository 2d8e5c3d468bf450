#!/usr/bin/env python3
"""`halyard serve` bad-input matrix: each hostile or malformed request gets its documented status
and an OpenAI-shaped error body ({"error": {"message", "type", "param", "code"}}; Anthropic's
{"type": "error", ...} on /v1/messages), and after every case the server still answers a normal
request. Raw sockets are used where an HTTP library would refuse to send the input (slow-loris
headers, a declared 100 MB body, broken request lines).
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import TINY, Server, require_sdks, run_tests  # noqa: E402

require_sdks()
srv = None
OKMSG = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"


def chat(**kw):
    body = {"model": "default", "messages": OKMSG, "max_tokens": 2}
    body.update(kw)
    return body


def healthy():
    st, _, body = srv.request("POST", CHAT, chat())
    assert st == 200, (st, body[:300])
    assert json.loads(body)["choices"][0]["message"]["role"] == "assistant"


def check_error(st, body, want_status, anthropic=False):
    assert st == want_status, (st, want_status, body[:300])
    j = json.loads(body)
    if anthropic:
        assert j["type"] == "error" and j["error"]["message"], j
        return
    e = j["error"]
    assert isinstance(e["message"], str) and e["message"], j
    assert isinstance(e["type"], str) and "param" in e and "code" in e, j


def deep(n):
    return "[" * n + "]" * n


# (name, method, path, raw body bytes or JSON-able, expected status)
CASES = [
    ("invalid JSON", "POST", CHAT, b"{not json", 400),
    ("truncated JSON", "POST", CHAT, b'{"messages": [', 400),
    ("trailing garbage", "POST", CHAT, b'{"messages": []} xyz', 400),
    ("empty body", "POST", CHAT, b"", 400),
    ("JSON array root", "POST", CHAT, b"[1, 2]", 400),
    ("JSON string root", "POST", CHAT, b'"hello"', 400),
    ("messages missing", "POST", CHAT, {"model": "default"}, 400),
    ("messages empty", "POST", CHAT, chat(messages=[]), 400),
    ("messages wrong type", "POST", CHAT, chat(messages="hi"), 400),
    ("message not an object", "POST", CHAT, chat(messages=[1]), 400),
    ("unknown role", "POST", CHAT, chat(messages=[{"role": "wizard", "content": "x"}]), 400),
    ("role missing", "POST", CHAT, chat(messages=[{"content": "x"}]), 400),
    ("content wrong type", "POST", CHAT, chat(messages=[{"role": "user", "content": 42}]), 400),
    ("image content part", "POST", CHAT, chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 400),
    ("temperature string", "POST", CHAT, chat(temperature="hot"), 400),
    ("temperature negative", "POST", CHAT, chat(temperature=-1), 400),
    ("temperature huge", "POST", CHAT, chat(temperature=1e308), 400),
    ("top_p zero", "POST", CHAT, chat(top_p=0), 400),
    ("max_tokens negative", "POST", CHAT, chat(max_tokens=-5), 400),
    ("max_tokens huge", "POST", CHAT, chat(max_tokens=10**12), 400),
    ("max_tokens float", "POST", CHAT, chat(max_tokens=1.5), 400),
    ("max_tokens over context", "POST", CHAT, chat(max_tokens=100000), 400),
    ("n zero", "POST", CHAT, chat(n=0), 400),
    ("n huge", "POST", CHAT, chat(n=1000), 400),
    ("stop wrong type", "POST", CHAT, chat(stop=5), 400),
    ("too many stops", "POST", CHAT, chat(stop=[str(i) for i in range(40)]), 400),
    ("logit_bias bad key", "POST", CHAT, chat(logit_bias={"abc": 1}), 400),
    ("logit_bias out of vocab", "POST", CHAT, chat(logit_bias={"999999999": 1}), 400),
    ("top_logprobs without logprobs", "POST", CHAT, chat(top_logprobs=5), 400),
    ("stream not bool", "POST", CHAT, chat(stream="yes"), 400),
    ("invalid UTF-8", "POST", CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
    ("NUL byte", "POST", CHAT, b'{"messages": [{"role": "user", "content": "a\x00b"}]}', 400),
    ("escaped NUL", "POST", CHAT, b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}', 400),
    ("lone surrogate", "POST", CHAT, b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400),
    ("deep nesting", "POST", CHAT, ('{"messages": [], "x": ' + deep(100000) + "}").encode(), 400),
    ("too many messages", "POST", CHAT, chat(messages=OKMSG * 5000), 400),
    ("unknown model", "POST", CHAT, chat(model="gpt-17"), 404),
    ("model wrong type", "POST", CHAT, chat(model=5), 400),
    ("unknown route", "POST", "/v1/nothing", chat(), 404),
    ("wrong method", "GET", CHAT, None, 405),
    ("completions prompt missing", "POST", "/v1/completions", {"model": "default"}, 400),
    ("completions token out of vocab", "POST", "/v1/completions", {"prompt": [10**9], "max_tokens": 2}, 400),
    ("completions negative token", "POST", "/v1/completions", {"prompt": [-1], "max_tokens": 2}, 400),
    ("detokenize bad ids", "POST", "/detokenize", {"tokens": ["a"]}, 400),
    ("embeddings empty input", "POST", "/v1/embeddings", {"model": "default", "input": ""}, 400),
    ("embeddings wrong input type", "POST", "/v1/embeddings", {"model": "default", "input": {"a": 1}}, 400),
]

ANTHROPIC_CASES = [
    ("messages: max_tokens missing", {"model": "default", "messages": OKMSG}, 400),
    ("messages: system role in list", {"max_tokens": 2, "messages": [{"role": "system", "content": "x"}]}, 400),
    ("messages: unknown model", {"model": "nope", "max_tokens": 2, "messages": OKMSG}, 404),
    ("messages: invalid JSON", b"{", 400),
]


def test_matrix():
    assert len(CASES) + len(ANTHROPIC_CASES) >= 30
    for name, method, path, body, want in CASES:
        st, headers, out = srv.request(method, path, body)
        try:
            check_error(st, out, want)
            if want == 405:
                assert "POST" in headers.get("Allow", ""), headers
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        healthy()
    for name, body, want in ANTHROPIC_CASES:
        st, _, out = srv.request("POST", "/v1/messages", body)
        try:
            check_error(st, out, want, anthropic=True)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        healthy()


def raw(data, read_timeout=10, shutdown=False):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            chunks.append(b)
            if b"\r\n\r\n" in b"".join(chunks) and b"Content-Length" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                if len(rest) >= n:
                    break
        return b"".join(chunks)
    finally:
        s.close()


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else 0


def test_body_too_large():
    # Declared 100 MB: refused before the body is read.
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n").encode()
    resp = raw(head + b'{"messages": [' + b" " * 65536)
    assert status_of(resp) == 413, resp[:200]
    body = resp.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"]["code"] == "request_too_large"
    healthy()
    # Chunked upload without a length: cut off once it passes the cap (here 1 MiB).
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b" " * 65536
    got = b""
    try:
        for _ in range(100 * 16):  # up to 100 MB
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        s.settimeout(5)
        got = s.recv(65536)
    except OSError:
        pass
    s.close()
    assert got == b"" or status_of(got) == 413, got[:200]
    healthy()


def test_slow_loris():
    # Headers trickled in and never finished: the connection is closed after the idle timeout
    # (--connection-timeout 3 here) and does not block others meanwhile.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    t0 = time.time()
    healthy()
    s.sendall(b"X-Slow: 1\r\n")
    data = b""
    try:
        data = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert time.time() - t0 < 15 and data in (b"",) or status_of(data) >= 400, data
    healthy()


def test_broken_requests():
    assert status_of(raw(b"GARBAGE\r\n\r\n", shutdown=True)) in (0, 400)
    assert status_of(raw(b"GET /health HTTP/1.1\r\n\r\n", shutdown=True)) in (200, 400)  # no Host
    resp = raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 200000 + b"\r\n\r\n")
    assert status_of(resp) in (0, 413, 431, 400), resp[:100]
    healthy()


def main():
    global srv
    with Server(TINY, ["--ctx", "512", "--max-body-bytes", str(1024 * 1024), "--max-messages", "1000",
                       "--connection-timeout", "3"]) as s:
        srv = s
        run_tests([test_matrix, test_body_too_large, test_slow_loris, test_broken_requests])


if __name__ == "__main__":
    main()
