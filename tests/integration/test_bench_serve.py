"""`halyard bench serve` against local servers written here (and `halyard serve` when it exists).

1. A deliberately failing endpoint (500s, 429s, garbage SSE, error events, connections closed
   before or during a response, a request that hangs past --timeout) and a closed port: every
   request must end as exactly one record with the right error kind; the JSON stays complete.
2. A fake OpenAI-compatible streaming server with deterministic token timing: the JSON must
   account for every request, token counts must add up, and TTFT / ITL must match the fake's
   delays. Also: sweeps, --compare, --svg, requests without usage, and the request fields sent.
3. `halyard serve -m synthetic:tiny:q8_0` when the binary has it (SKIP for that case otherwise).
4. A smoke test of `bench engine` (in process, no HTTP) on the same tiny model.
Bounded: about 30 s in all.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = os.environ.get("HALYARD_BIN", "build/halyard")
TMP = tempfile.mkdtemp(prefix="hl_bench_serve_")
FIRST_S = 0.08   # fake server: delay before the first token
GAP_S = 0.02     # fake server: delay between tokens
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def bench(*args, timeout=60):
    cmd = [BIN, "bench", "serve", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        print(" ".join(cmd), "->", p.returncode, "\n", p.stdout[-2000:], p.stderr[-2000:])
    return p


def start(handler):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def sse(wfile, obj, crlf=False, split=False):
    end = "\r\n" if crlf else "\n"
    text = "data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + end + end
    data = text.encode()
    if split:  # the event arrives in pieces: the client must reassemble lines
        for i in range(0, len(data), 7):
            wfile.write(data[i:i + 7])
            wfile.flush()
    else:
        wfile.write(data)
        wfile.flush()


def chunk(content=None, finish=None, usage=None):
    c = {"id": "x", "object": "chat.completion.chunk", "model": "fake-model",
         "choices": [] if usage else [{"index": 0, "delta": {} if content is None else {"content": content},
                                      "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    return c


# ---------------------------------------------------------------- fake good server

class Fake(BaseHTTPRequestHandler):
    bodies = []
    lock = threading.Lock()
    with_usage = True

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Fake.lock:
            Fake.bodies.append(req)
            n_req = len(Fake.bodies)
        n_out = int(req.get("max_tokens", 16))
        n_prompt = len(req["messages"][0]["content"].split())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        crlf, split = n_req % 2 == 0, n_req % 3 == 0
        sse(self.wfile, chunk(content=""), crlf)  # role-only chunk: not a token
        time.sleep(FIRST_S)
        for i in range(n_out):
            if i:
                time.sleep(GAP_S)
            sse(self.wfile, chunk(content=f" w{i}"), crlf, split)
        sse(self.wfile, chunk(finish="length"), crlf)
        if Fake.with_usage:
            sse(self.wfile, chunk(usage={"prompt_tokens": n_prompt + 7, "completion_tokens": n_out,
                                         "total_tokens": n_prompt + 7 + n_out}), crlf)
        sse(self.wfile, "[DONE]", crlf)


def load(path):
    with open(path) as f:
        return json.load(f)


def check_consistent(doc, n_expected, name):
    """Every request accounted for and the summary adds up from the records."""
    for run in doc["runs"]:
        recs, s = run["requests"], run["summary"]
        check(len(recs) == n_expected, f"{name}: {len(recs)} records, expected {n_expected}")
        check(sorted(r["id"] for r in recs) == list(range(len(recs))), f"{name}: ids are 0..n-1")
        ok = [r for r in recs if r["ok"]]
        check(s["completed"] == len(ok) and s["failed"] == len(recs) - len(ok), f"{name}: completed/failed")
        check(sum(s["errors"].values()) == s["failed"], f"{name}: errors by kind add up to failed")
        check(s["output_tokens"] == sum(r["output_tokens"] for r in ok), f"{name}: output tokens add up")
        check(s["input_tokens"] == sum(max(r["prompt_tokens"], 0) for r in ok), f"{name}: input tokens add up")
        check(s["ttft_ms"]["n"] == len([r for r in ok if r["ttft_ms"] is not None]), f"{name}: ttft n")
        check(s["itl_ms"]["n"] == sum(len(r["itl_ms"]) for r in ok), f"{name}: itl n")
        if s["duration_s"] > 0 and ok:
            want = s["output_tokens"] / s["duration_s"]
            check(abs(s["output_throughput"] - want) <= 1e-6 * want + 1e-9, f"{name}: throughput")


def test_fake_server():
    srv, url = start(Fake)
    out = os.path.join(TMP, "fake.json")
    svg = os.path.join(TMP, "fake.svg")
    p = bench("--url", url, "--concurrency", "4", "--requests", "12", "--output-len", "8",
              "--prompt-len", "20", "--ignore-eos", "--temperature", "0", "--logit-bias", "2=-100",
              "--slo-ttft-ms", "2000", "--slo-tpot-ms", "1000", "--json", out, "--svg", svg)
    check(p.returncode == 0, "fake: exit 0")
    check("TTFT" in p.stdout and "Output token throughput" in p.stdout, "fake: table on stdout")
    doc = load(out)
    check_consistent(doc, 12, "fake")
    run = doc["runs"][0]
    s = run["summary"]
    check(doc["config"]["model"] == "fake-model", "fake: model discovered from /v1/models")
    check(s["completed"] == 12 and s["failed"] == 0, f"fake: all 12 ok ({s['errors']})")
    check(s["output_tokens"] == 96 and s["usage_reported"] == 12, "fake: 12 x 8 tokens from usage")
    recs = run["requests"]
    check(all(r["output_tokens"] == 8 and r["chunks"] == 8 and len(r["itl_ms"]) == 7 for r in recs),
          "fake: every request has 8 tokens, 8 chunks, 7 gaps")
    check(all(r["prompt_tokens"] == 27 for r in recs), "fake: prompt tokens from usage (20 words + 7)")
    # The fake sleeps FIRST_S before the first token and GAP_S between tokens: measured times
    # cannot be shorter, and on a loaded machine (or under sanitizers) not much longer.
    check(all(r["ttft_ms"] >= FIRST_S * 1000 * 0.95 for r in recs), "fake: no ttft below the fake's delay")
    check(s["ttft_ms"]["p50"] <= FIRST_S * 1000 + 400, f"fake: ttft p50 {s['ttft_ms']['p50']}")
    check(all(r["e2e_ms"] >= r["ttft_ms"] + 7 * GAP_S * 1000 * 0.95 for r in recs), "fake: e2e covers every gap")
    itl = s["itl_ms"]
    check(GAP_S * 1000 * 0.7 <= itl["p50"] <= GAP_S * 1000 + 30, f"fake: itl p50 {itl['p50']}")
    check(GAP_S * 1000 * 0.7 <= s["tpot_ms"]["p50"] <= GAP_S * 1000 + 30, "fake: tpot p50")
    check(s["goodput"]["good_requests"] == 12, "fake: all meet loose SLOs")
    sent = Fake.bodies[-1]
    check(sent.get("stream") is True and sent.get("stream_options", {}).get("include_usage") is True,
          "fake: streaming with usage requested")
    check(sent.get("ignore_eos") is True and sent.get("min_tokens") == 8 and sent.get("max_tokens") == 8,
          "fake: ignore_eos/min_tokens/max_tokens sent")
    check(sent.get("temperature") == 0 and sent.get("logit_bias") == {"2": -100}, "fake: sampling fields")
    check(18 <= len(sent["messages"][0]["content"].split()) <= 22, "fake: ~20-word prompt")
    root = ET.parse(svg).getroot()
    check(root.tag.endswith("svg") and len(root.findall(".//{http://www.w3.org/2000/svg}polyline")) >= 4,
          "fake: svg has CDF lines")

    # A tight TPOT SLO nobody meets, uniform lengths, a sweep of two levels.
    out2 = os.path.join(TMP, "sweep.json")
    svg2 = os.path.join(TMP, "sweep.svg")
    p = bench("--url", url + "/v1/chat/completions", "--model", "m2", "--sweep", "1,3", "--requests", "6",
              "--output-len", "6", "--output-len-dist", "uniform", "--len-spread", "0.5",
              "--slo-tpot-ms", "1", "--json", out2, "--svg", svg2, "--label", "fake")
    check(p.returncode == 0, "sweep: exit 0")
    doc = load(out2)
    check([r["concurrency"] for r in doc["runs"]] == [1, 3], "sweep: two levels")
    check_consistent(doc, 6, "sweep")
    for run in doc["runs"]:
        check(run["summary"]["goodput"]["good_requests"] == 0, "sweep: nobody meets a 1 ms TPOT")
        lens = [r["target_output_len"] for r in run["requests"]]
        check(all(3 <= n <= 9 for n in lens), f"sweep: uniform lengths in [3, 9]: {lens}")
        check(all(r["output_tokens"] == r["target_output_len"] for r in run["requests"]), "sweep: lengths")
    check(Fake.bodies[-1]["model"] == "m2", "sweep: --model sent")
    ET.parse(svg2)

    p = bench("--compare", f"{out},{out2}", "--svg", os.path.join(TMP, "cmp.svg"))
    check(p.returncode == 0 and p.stdout.count("\n| ") >= 3 and "fake" in p.stdout, "compare: table")

    # No usage in the stream: tokens are counted as content chunks.
    Fake.with_usage = False
    out3 = os.path.join(TMP, "nousage.json")
    p = bench("--url", url, "--requests", "3", "--output-len", "5", "--json", out3)
    Fake.with_usage = True
    doc = load(out3)
    check_consistent(doc, 3, "no-usage")
    for r in doc["runs"][0]["requests"]:
        check(r["ok"] and not r["usage"] and r["output_tokens"] == 5 and r["prompt_tokens"] == -1,
              "no-usage: counted from chunks")

    # Dataset of chat requests, open loop.
    ds = os.path.join(TMP, "ds.jsonl")
    with open(ds, "w") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "one two three"}], "max_tokens": 3}) + "\n\n")
        f.write(json.dumps({"messages": [{"role": "user", "content": "four five"}], "max_tokens": 4}) + "\n")
    out4 = os.path.join(TMP, "ds.json")
    p = bench("--url", url, "--dataset", ds, "--rate", "50", "--requests", "6", "--json", out4)
    doc = load(out4)
    check_consistent(doc, 6, "dataset")
    check(sorted(r["output_tokens"] for r in doc["runs"][0]["requests"]) == [3, 3, 3, 4, 4, 4],
          "dataset: max_tokens from the file, cycled")
    # Open loop: Poisson arrivals at 100/s have 10 ms mean gaps (sd of the mean of 59 gaps:
    # 1.3 ms); a time-bounded closed loop sends nothing after its duration.
    out5 = os.path.join(TMP, "rate.json")
    bench("--url", url, "--rate", "100", "--requests", "60", "--output-len", "1", "--json", out5)
    starts = sorted(r["start_ms"] for r in load(out5)["runs"][0]["requests"])
    gap = (starts[-1] - starts[0]) / (len(starts) - 1)
    check(len(starts) == 60 and 6 <= gap <= 16, f"rate: mean gap {gap:.1f} ms for 100 req/s")
    out6 = os.path.join(TMP, "duration.json")
    bench("--url", url, "--duration", "1", "--concurrency", "2", "--output-len", "2", "--json", out6)
    doc = load(out6)
    recs = doc["runs"][0]["requests"]
    check_consistent(doc, len(recs), "duration")
    check(len(recs) >= 4 and all(r["ok"] and r["start_ms"] < 1000 for r in recs), "duration: 1 s")
    bad = os.path.join(TMP, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"messages": []}\nnot json\n')
    p = bench("--url", url, "--dataset", bad, "--requests", "1")
    check(p.returncode == 1 and "bad.jsonl:2" in p.stderr, "dataset: a bad line is reported with its number")
    srv.shutdown()


# ---------------------------------------------------------------- failing server

KINDS = ["http_5xx", "malformed", "closed", "http_4xx", "stream_error", "timeout", "ok", "closed_mid"]


class Failing(BaseHTTPRequestHandler):
    n = 0
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with Failing.lock:
            kind = KINDS[Failing.n % len(KINDS)]
            Failing.n += 1
        if kind == "closed":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind in ("http_5xx", "http_4xx"):
            body = b'{"error": {"message": "nope", "type": "server_error"}}'
            self.send_response(500 if kind == "http_5xx" else 429)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if kind == "timeout":
            time.sleep(3)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if kind == "malformed":
            sse(self.wfile, chunk(content="a"))
            sse(self.wfile, "{this is not json")
            sse(self.wfile, "[DONE]")
        elif kind == "stream_error":
            sse(self.wfile, chunk(content="a"))
            sse(self.wfile, {"error": {"message": "engine failed", "code": 500}})
        elif kind == "closed_mid":  # a token, then the connection ends without a finish or [DONE]
            sse(self.wfile, chunk(content="a"))
        else:
            sse(self.wfile, chunk(content="a"))
            sse(self.wfile, chunk(content="b", finish="stop"))
            sse(self.wfile, "[DONE]")


def test_failing_server():
    srv, url = start(Failing)
    out = os.path.join(TMP, "fail.json")
    p = bench("--url", url, "--model", "x", "--concurrency", "4", "--requests", "16", "--timeout", "1",
              "--json", out, "--svg", os.path.join(TMP, "fail.svg"))
    check(p.returncode == 0, "failing: the generator does not fail")
    doc = load(out)
    check_consistent(doc, 16, "failing")
    s = doc["runs"][0]["summary"]
    want = {"http_5xx": 2, "malformed": 2, "closed": 4, "http_4xx": 2, "stream_error": 2, "timeout": 2}
    got = {k: v for k, v in s["errors"].items() if v}
    check(got == want, f"failing: errors by kind {got}, expected {want}")
    check(s["completed"] == 2 and s["output_tokens"] == 4, f"failing: 2 ok requests with 2 tokens ({s})")
    statuses = sorted(r["http_status"] for r in doc["runs"][0]["requests"] if r["error"].startswith("http"))
    check(statuses == [429, 429, 500, 500], f"failing: HTTP statuses recorded {statuses}")
    check(all(r["error_message"] for r in doc["runs"][0]["requests"] if not r["ok"]), "failing: messages")
    srv.shutdown()

    # Nothing listens on this port: every request is a connect error.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = os.path.join(TMP, "refused.json")
    p = bench("--url", f"http://127.0.0.1:{port}", "--model", "x", "--requests", "5", "--concurrency", "2",
              "--json", out)
    check(p.returncode == 0, "refused: exit 0")
    doc = load(out)
    check_consistent(doc, 5, "refused")
    check(doc["runs"][0]["summary"]["errors"]["connect"] == 5, "refused: 5 connect errors")


# ---------------------------------------------------------------- halyard serve

def test_halyard_serve():
    probe = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("SKIP (case 3): halyard serve is not in this binary")
        return
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = subprocess.Popen([BIN, "serve", "-m", "synthetic:tiny:q8_0", "--host", "127.0.0.1",
                            "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:  # 503 while the model loads, 200 when ready
            try:
                if urllib.request.urlopen(url + "/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        out = os.path.join(TMP, "halyard.json")
        p = bench("--url", url, "--concurrency", "4", "--duration", "3", "--output-len", "16",
                  "--prompt-len", "32", "--ignore-eos", "--json", out, timeout=60)
        check(p.returncode == 0, "halyard serve: exit 0")
        doc = load(out)
        run = doc["runs"][0]
        check_consistent(doc, len(run["requests"]), "halyard serve")
        s = run["summary"]
        check(s["completed"] >= 1 and s["failed"] == 0, f"halyard serve: requests ok ({s['errors']})")
        recs = [r for r in run["requests"] if r["ok"]]
        check(all(r["usage"] and r["prompt_tokens"] > 0 for r in recs), "halyard serve: usage reported")
        check(all(r["output_tokens"] == 16 for r in recs), "halyard serve: 16 tokens each (ignore_eos)")
        check(all(r["chunks"] >= 1 and len(r["itl_ms"]) == r["chunks"] - 1 for r in recs),
              "halyard serve: one gap per chunk after the first")
    finally:
        srv.terminate()
        srv.wait(timeout=10)


# ---------------------------------------------------------------- bench engine (no HTTP)

def test_bench_engine():
    """A smoke test of `bench engine` on the tiny synthetic model: it shares this file because
    it reports through the same statistics; every (test, batch) pair must have a finite rate."""
    out = os.path.join(TMP, "engine.json")
    p = subprocess.run([BIN, "bench", "engine", "-m", "synthetic:tiny:q8_0", "-p", "16", "-n", "8",
                        "--batch", "1,3", "--reps", "2", "--json", out], capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"bench engine: exit 0 ({p.stderr[-300:]})")
    if p.returncode != 0:
        return
    res = load(out)["results"]
    check([(r["test"], r["batch"]) for r in res] == [("pp", 1), ("tg", 1), ("pp", 3), ("tg", 3)],
          "bench engine: pp and tg for each batch")
    check(all(r["tok_s_mean"] > 0 and r["tok_s_sd"] >= 0 for r in res), "bench engine: rates")
    check(all(abs(r["tok_s_per_seq"] * r["batch"] - r["tok_s_mean"]) < 1e-6 * r["tok_s_mean"] for r in res),
          "bench engine: per-sequence rate")
    p = subprocess.run([BIN, "bench", "engine", "-m", os.path.join(TMP, "missing.gguf")], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 1 and "missing.gguf" in p.stderr, "bench engine: a missing model is an error")


def main():
    if not os.path.exists(BIN):
        print(f"SKIP: {BIN} not built")
        sys.exit(77)
    t0 = time.time()
    test_failing_server()
    test_fake_server()
    test_halyard_serve()
    test_bench_engine()
    print(f"bench serve: {len(failures)} failures in {time.time() - t0:.1f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
