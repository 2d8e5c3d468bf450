#!/usr/bin/env python3
"""A client that goes away while its request still waits in the queue (no token yet) is noticed
at once: the request is cancelled and leaves the queue, its access-log line says 499, and the
request that holds the only running slot is not disturbed.

Without the socket watch, a queued request would notice its client only when its first token
could not be written, i.e. after the running request finished and the dead one had been
prefilled for nobody.
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import Server, run_tests  # noqa: E402

MODEL = "synthetic:s135:q4_0"  # slow enough on 2 cores that a long request is still running
MSG = [{"role": "user", "content": "Tell me a long story."}]
srv = None


def post(body):
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return s


def gauges():
    m = srv.metrics()
    return int(m["halyard_requests_running"]), int(m["halyard_requests_waiting"])


def wait_for(cond, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; running/waiting = {gauges()}")


def log_lines():
    out = []
    for line in srv._read(srv._out).splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def gone_while_queued(stream):
    a = post({"model": "default", "messages": MSG, "max_tokens": 1900, "stream": True, "ignore_eos": True})
    got = a.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    while got.count(b"data: ") < 3:
        got += a.recv(65536)
    n_before = len([r for r in log_lines() if r.get("status") == 499])
    b = post({"model": "default", "messages": MSG, "max_tokens": 16, "stream": stream})
    wait_for(lambda: gauges() == (1, 1), 10, "the second request to queue")
    b.close()  # the client of the queued request goes away
    wait_for(lambda: gauges() == (1, 0), 3, "the queued request to be cancelled")
    wait_for(lambda: len([r for r in log_lines() if r.get("status") == 499]) == n_before + 1, 3,
             "the access-log line of the cancelled request")
    rec = [r for r in log_lines() if r.get("status") == 499][-1]
    assert rec.get("finish") == "cancelled" and rec.get("completion_tokens", 0) == 0, rec
    assert gauges()[0] == 1, "the running request was disturbed"
    a.close()
    wait_for(lambda: gauges() == (0, 0), 5, "the running request to be cancelled")


def test_nonstreaming_client_gone_while_queued():
    gone_while_queued(False)


def test_streaming_client_gone_while_queued():
    gone_while_queued(True)


def test_server_still_serves():
    st, _, body = srv.request("POST", "/v1/chat/completions", {"messages": MSG, "max_tokens": 2})
    assert st == 200, body


def main():
    global srv
    with Server(MODEL, ["--max-seqs", "1", "--ctx", "4096"], ready_timeout=120) as s:
        srv = s
        run_tests([test_nonstreaming_client_gone_while_queued, test_streaming_client_gone_while_queued,
                   test_server_still_serves], per_test_s=90)


if __name__ == "__main__":
    main()
