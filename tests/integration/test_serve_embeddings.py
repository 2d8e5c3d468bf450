#!/usr/bin/env python3
"""POST /v1/embeddings of `halyard serve` against the official `openai` SDK (client.embeddings.create).

The default model (SmolLM2-135M, --ctx 1024) serves the content checks; the tiny synthetic model
serves the key/rate-limit checks. Covered: shapes (576 dimensions), usage (== /tokenize's count),
unit norm by default, base64 (the SDK's default wire format) == "float" bit for bit, batch input
== one request per input bit for bit, token-id and token-id-array inputs == the same text, the
"pooling" / "normalize" extensions, 2048 entries accepted and 2049 refused, every error as its SDK
exception (empty input, wrong types, dimensions mismatch, bad encoding_format, too long, ids out of
the vocabulary, unknown model, bad key, rate limit), requests in flight not holding the HTTP
threads (/health answers meanwhile), /metrics and the access log, and a semantic sanity check:
cosine("The cat sat on the mat", "A cat is sitting on a mat") > cosine(the first,
"Quarterly revenue grew by 12%") with mean pooling; the docs/API.md example runs as written.
"""
import base64
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import DEFAULT_MODEL, ROOT, TINY, Server, require_sdks, run_tests, skip  # noqa: E402

require_sdks()
import numpy as np  # noqa: E402
import openai  # noqa: E402

if not os.path.exists(DEFAULT_MODEL):
    skip(f"{DEFAULT_MODEL} missing (sh tools/fetch_model.sh models)")

CAT = "The cat sat on the mat"
CAT2 = "A cat is sitting on a mat"
MONEY = "Quarterly revenue grew by 12%"
DIM = 576
srv = None


def client(s=None, key="none"):
    return openai.OpenAI(base_url=(s or srv).url + "/v1", api_key=key, max_retries=0, timeout=120)


def raw(body, s=None):
    st, _, data = (s or srv).request("POST", "/v1/embeddings", body, timeout=120)
    return st, json.loads(data)


def vec(item):
    return np.asarray(item.embedding, dtype=np.float32)


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shapes_and_usage():
    r = client().embeddings.create(model="default", input=CAT)
    assert r.object == "list" and r.model == srv_name()
    assert len(r.data) == 1 and r.data[0].object == "embedding" and r.data[0].index == 0
    v = vec(r.data[0])
    assert v.shape == (DIM,) and np.all(np.isfinite(v)) and np.any(v != 0)
    assert abs(float(np.linalg.norm(v.astype(np.float64))) - 1) < 1e-5  # normalized by default
    st, _, body = srv.request("POST", "/tokenize", {"prompt": CAT})
    assert st == 200
    assert r.usage.prompt_tokens == json.loads(body)["count"] > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens
    # dimensions equal to the model's is accepted; the served name works like the alias
    r2 = client().embeddings.create(model=srv_name(), input=CAT, dimensions=DIM, user="u1")
    assert np.array_equal(vec(r2.data[0]), v)


def srv_name():
    return os.path.basename(DEFAULT_MODEL)[: -len(".gguf")]


def test_base64_round_trip():
    st, f = raw({"model": "default", "input": [CAT, MONEY], "encoding_format": "float"})
    assert st == 200, f
    st, b = raw({"model": "default", "input": [CAT, MONEY], "encoding_format": "base64"})
    assert st == 200, b
    for i in range(2):
        as_float = np.asarray(f["data"][i]["embedding"], dtype=np.float32)
        data = base64.b64decode(b["data"][i]["embedding"], validate=True)
        assert len(data) == 4 * DIM
        as_b64 = np.frombuffer(data, dtype="<f4")
        assert np.array_equal(as_float, as_b64), "base64 and float encodings differ"
    assert f["usage"] == b["usage"]
    # The SDK asks for base64 unless told otherwise and decodes it; an explicit "float" agrees.
    sdk = client().embeddings.create(model="default", input=CAT)
    sdk_f = client().embeddings.create(model="default", input=CAT, encoding_format="float")
    assert np.array_equal(vec(sdk.data[0]), vec(sdk_f.data[0]))
    assert np.array_equal(vec(sdk.data[0]), np.asarray(f["data"][0]["embedding"], dtype=np.float32))


def test_batch_input():
    texts = [CAT, CAT2, MONEY, "x", "A much longer input sentence " * 20]
    r = client().embeddings.create(model="default", input=texts)
    assert [d.index for d in r.data] == list(range(len(texts)))
    total = 0
    for i, t in enumerate(texts):
        one = client().embeddings.create(model="default", input=t)
        assert np.array_equal(vec(r.data[i]), vec(one.data[0])), f"input {i} differs in a batch"
        total += one.usage.prompt_tokens
    assert r.usage.prompt_tokens == total


def test_token_id_inputs():
    st, _, body = srv.request("POST", "/tokenize", {"prompt": CAT})
    ids = json.loads(body)["tokens"]
    st, _, body = srv.request("POST", "/tokenize", {"prompt": MONEY})
    ids2 = json.loads(body)["tokens"]
    by_text = client().embeddings.create(model="default", input=[CAT, MONEY])
    one = client().embeddings.create(model="default", input=ids)
    assert one.usage.prompt_tokens == len(ids)
    assert np.array_equal(vec(one.data[0]), vec(by_text.data[0]))
    two = client().embeddings.create(model="default", input=[ids, ids2])
    assert len(two.data) == 2 and two.usage.prompt_tokens == len(ids) + len(ids2)
    assert np.array_equal(vec(two.data[1]), vec(by_text.data[1]))


def test_pooling_extension():
    c = client()
    mean = vec(c.embeddings.create(model="default", input=CAT).data[0])
    mean2 = vec(c.embeddings.create(model="default", input=CAT, extra_body={"pooling": "mean"}).data[0])
    last = vec(c.embeddings.create(model="default", input=CAT, extra_body={"pooling": "last"}).data[0])
    assert np.array_equal(mean, mean2)
    assert not np.allclose(mean, last, atol=1e-3)
    assert abs(float(np.linalg.norm(last.astype(np.float64))) - 1) < 1e-5
    rawv = vec(c.embeddings.create(model="default", input=CAT, extra_body={"normalize": False}).data[0])
    n = float(np.linalg.norm(rawv.astype(np.float64)))
    assert abs(n - 1) > 1e-3, "unnormalized vector has unit norm"
    assert np.allclose(rawv / n, mean, atol=1e-6)


def test_entry_limits():
    c = client()
    r = c.embeddings.create(model="default", input=["x"] * 2048)
    assert len(r.data) == 2048 and r.data[-1].index == 2047
    assert np.array_equal(vec(r.data[0]), vec(r.data[2047]))
    try:
        c.embeddings.create(model="default", input=["x"] * 2049)
    except openai.BadRequestError as e:
        assert "2048" in str(e)
    else:
        raise AssertionError("2049 entries accepted")


def expect(exc, needle=None, **kw):
    kw.setdefault("model", "default")
    try:
        client().embeddings.create(**kw)
    except exc as e:
        assert e.body and "message" in e.body, e.body
        if needle:
            assert needle in e.body["message"], e.body
        return e
    raise AssertionError(f"{kw} did not raise {exc.__name__}")


def test_errors_map_to_sdk_exceptions():
    B = openai.BadRequestError
    expect(B, "empty", input="")
    expect(B, "empty", input=[])
    expect(B, "empty", input=[CAT, ""])
    expect(B, None, input=5)
    expect(B, "mixes", input=[CAT, 5])
    expect(B, None, input=[1, "a"])
    expect(B, "non-negative", input=[1, -2])
    expect(B, None, input=[[1, 2], []])
    expect(B, None, input={"text": CAT})
    e = expect(B, "576", input=CAT, dimensions=100)
    assert e.body.get("param") == "dimensions"
    expect(B, "encoding_format", input=CAT, encoding_format="hex")
    expect(B, "pooling", input=CAT, extra_body={"pooling": "max"})
    expect(B, "normalize", input=CAT, extra_body={"normalize": "yes"})
    e = expect(B, "1024", input="word " * 1100)
    assert e.body.get("code") == "context_length_exceeded"
    expect(B, "vocabulary", input=[1, 10**8])
    expect(openai.NotFoundError, "does not exist", model="gpt-17", input=CAT)
    st, body = raw(b"{not json")
    assert st == 400 and "error" in body
    # the server keeps serving
    assert len(client().embeddings.create(model="default", input=CAT).data) == 1


def test_semantic_sanity():
    r = client().embeddings.create(model="default", input=[CAT, CAT2, MONEY])
    a, b, c = (vec(d) for d in r.data)
    near, far = cosine(a, b), cosine(a, c)
    print(f"    cos(cat, cat2) = {near:.4f}, cos(cat, revenue) = {far:.4f} (mean pooling, SmolLM2-135M)")
    assert near > far, f"cos(cat, cat2) {near} <= cos(cat, revenue) {far}"


def test_requests_do_not_hold_http_threads():
    # 6 concurrent requests of 48 inputs each keep the engine busy for seconds; the 4 MHD threads
    # would all be stuck if a request held one, so /health answers meanwhile.
    texts = [f"sentence number {i} about nothing in particular" for i in range(48)]
    done, errors = [], []

    def heavy():
        try:
            r = client().embeddings.create(model="default", input=texts)
            done.append(len(r.data))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=heavy) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.time()
    st, _ = srv.health()
    health_s = time.time() - t0
    busy = len(done) < 6
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert done == [48] * 6
    assert st == 200
    if busy:
        assert health_s < 2.0, f"/health took {health_s:.2f}s while embeddings ran"
    else:
        print("    note: the embeddings finished before /health was asked (machine too fast to tell)")


def test_keys_rate_limits_metrics():
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    keys.write("sk-ok\nsk-limited rpm=2\n")
    keys.close()
    try:
        with Server(TINY, ["--api-keys", keys.name]) as tiny:
            r = client(tiny, "sk-ok").embeddings.create(model="default", input=[[1, 2, 3], [4, 5]])
            assert len(r.data) == 2 and len(r.data[0].embedding) == 256
            try:
                client(tiny, "wrong").embeddings.create(model="default", input=[1, 2])
            except openai.AuthenticationError as e:
                assert e.status_code == 401
            else:
                raise AssertionError("bad key accepted")
            lim = client(tiny, "sk-limited")
            lim.embeddings.create(model="default", input=[1])
            lim.embeddings.create(model="default", input=[1])
            try:
                lim.embeddings.create(model="default", input=[1])
            except openai.RateLimitError as e:
                assert int(e.response.headers["retry-after"]) >= 1
            else:
                raise AssertionError("third request within a minute was not limited")
            m = tiny.metrics()
            ok = [v for k, v in m.items() if k.startswith("halyard_requests_total") and 'endpoint="embeddings"' in k
                  and 'status="200"' in k]
            assert ok and sum(ok) == 3, m
        lines = [json.loads(l) for l in tiny.stdout_text.splitlines() if l.startswith("{")]
        emb = [l for l in lines if l["path"] == "/v1/embeddings"]
        assert [l["status"] for l in emb] == [200, 401, 200, 200, 429], emb
        assert emb[0]["prompt_tokens"] == 5 and emb[0]["id"].startswith("embd-")
    finally:
        os.unlink(keys.name)


def test_doc_example():
    # The Python example of docs/API.md's embeddings section, verbatim but for the port.
    import re
    import subprocess
    with open(os.path.join(ROOT, "docs/API.md")) as f:
        doc = f.read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "embeddings.create" in b]
    assert len(blocks) == 1, "docs/API.md has no embeddings example"
    code = blocks[0].replace("http://127.0.0.1:8080", srv.url)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    n, dim, tokens = (int(x) for x in out.stdout.split())
    assert (n, dim) == (2, DIM) and tokens > 0, out.stdout


def main():
    global srv
    code = 0
    with Server(DEFAULT_MODEL, ["--ctx", "1024"]) as s:  # exits 0 on SIGTERM, checked on the way out
        srv = s
        try:
            run_tests([test_shapes_and_usage, test_base64_round_trip, test_batch_input, test_token_id_inputs,
                       test_pooling_extension, test_entry_limits, test_errors_map_to_sdk_exceptions,
                       test_semantic_sanity, test_requests_do_not_hold_http_threads,
                       test_keys_rate_limits_metrics, test_doc_example], per_test_s=180)
        except SystemExit as e:
            code = e.code
    sys.exit(code)


if __name__ == "__main__":
    main()
