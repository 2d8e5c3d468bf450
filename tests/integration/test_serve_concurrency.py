#!/usr/bin/env python3
"""`halyard serve` under concurrency, disconnects and shutdown (tiny synthetic model).

- 64 concurrent streaming clients on a server with only 2 HTTP threads (waiting streams are
  suspended, so they must not need a thread each): every stream ends with a finish_reason, a
  usage chunk and [DONE]; its token count matches usage; greedy text equals the text of the same
  request run alone.
- A client killed mid-stream: its request is cancelled and its KV blocks are freed at once
  (halyard_kv_cache_blocks_used and halyard_requests_running go back to 0 in /metrics).
- SIGTERM drains: an in-flight stream still completes, then the process exits 0.
"""
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import TINY, Server, require_sdks, run_tests  # noqa: E402

require_sdks()
import openai  # noqa: E402

srv = None
MSG = [{"role": "user", "content": "Count to ten."}]
N_TOK = 24


def client():
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=120)


def one_stream(results, i):
    try:
        chunks = list(client().chat.completions.create(
            model="default", messages=MSG, max_tokens=N_TOK, temperature=0, stream=True, logprobs=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        n_lp = sum(len(c.choices[0].logprobs.content) for c in chunks if c.choices and c.choices[0].logprobs)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        results[i] = (text, n_lp, finish, chunks[-1].usage)
    except Exception as e:  # noqa: BLE001
        results[i] = e


def test_64_streams():
    ref = client().chat.completions.create(model="default", messages=MSG, max_tokens=N_TOK, temperature=0,
                                           extra_body={"ignore_eos": True})
    results = [None] * 64
    threads = [threading.Thread(target=one_stream, args=(results, i)) for i in range(64)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(55)
    assert all(not t.is_alive() for t in threads), "streams still open after 55 s"
    errors = [r for r in results if isinstance(r, Exception) or r is None]
    assert not errors, errors[:3]
    for text, n_lp, finish, usage in results:
        assert finish == ["length"], finish
        assert usage.completion_tokens == N_TOK == n_lp, (usage, n_lp)
        assert text == ref.choices[0].message.content, (text, ref.choices[0].message.content)
    print(f"64 streams x {N_TOK} tokens in {time.time() - t0:.1f}s")
    m = srv.metrics()
    assert m['halyard_requests_running'] == 0 and m['halyard_http_requests_in_flight'] == 0


def kv_used():
    m = srv.metrics()
    return m["halyard_kv_cache_blocks_used"], m["halyard_requests_running"]


def test_killed_client_frees_blocks():
    base, _ = kv_used()
    body = json.dumps({"model": "default", "messages": MSG, "max_tokens": 1500, "stream": True,
                       "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    got = s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    while got.count(b"data: ") < 5:
        got += s.recv(65536)
    used, running = kv_used()
    assert used > base and running >= 1, (used, running)
    s.close()  # the client goes away mid-stream
    deadline = time.time() + 5
    while time.time() < deadline and kv_used() != (base, 0):
        time.sleep(0.05)
    assert kv_used() == (base, 0), f"blocks not freed: {kv_used()} (base {base})"
    st, _, _ = srv.request("POST", "/v1/chat/completions", {"messages": MSG, "max_tokens": 2})
    assert st == 200


def test_sigterm_drains():
    with Server(TINY, ["--drain-seconds", "30"]) as s2:
        body = json.dumps({"model": "default", "messages": MSG, "max_tokens": 48, "stream": True,
                           "ignore_eos": True}).encode()
        c = socket.create_connection(("127.0.0.1", s2.port), timeout=30)
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = c.recv(65536)
        assert b"200 OK" in got
        s2.proc.send_signal(signal.SIGTERM)
        while b"data: [DONE]" not in got:
            b = c.recv(65536)
            if not b:
                break
            got += b
        c.close()
        assert b"data: [DONE]" in got and b'"finish_reason":"length"' in got, got[-500:]
        assert s2.proc.wait(timeout=20) == 0
        assert "draining" in s2._read(s2._err)


def main():
    global srv
    with Server(TINY, ["--http-threads", "2", "--max-seqs", "64", "--ctx", "2048"]) as s:
        srv = s
        run_tests([test_64_streams, test_killed_client_frees_blocks, test_sigterm_drains])


if __name__ == "__main__":
    main()
