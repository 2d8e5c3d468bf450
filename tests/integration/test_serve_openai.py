#!/usr/bin/env python3
"""`halyard serve` against the official `openai` SDK (and the `anthropic` SDK on /v1/messages).

Two real servers on 127.0.0.1 (ephemeral ports): the tiny synthetic model for protocol checks
(fast), and the default SmolLM2 model for checks on content (a greedy answer names Paris; a stop
string cuts the greedy text exactly where it occurs). Covered: chat and completions, streaming
and not, n > 1, stop, seed reproducibility, logprobs/top_logprobs, usage (checked against
/tokenize), stream_options.include_usage, the SDK exception type of each error status, API keys
and per-key rate limits (429 + Retry-After), /v1/models, /tokenize + /detokenize round trip, the
Anthropic SDK streaming and not, the access log lines, and the README examples.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import DEFAULT_MODEL, ROOT, TINY, Server, require_sdks, run_tests  # noqa: E402

require_sdks()
import anthropic  # noqa: E402
import openai  # noqa: E402

MSG = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
KEYS = None
tiny = None
smol = None


def client(srv, key="none"):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=60)


def test_chat_basic():
    c = client(tiny)
    r = c.chat.completions.create(model="default", messages=MSG, max_tokens=8, temperature=0)
    assert r.object == "chat.completion"
    assert r.model == TINY
    ch = r.choices[0]
    assert ch.message.role == "assistant" and isinstance(ch.message.content, str)
    assert ch.finish_reason in ("stop", "length")
    assert 1 <= r.usage.completion_tokens <= 8
    # Usage counts the prompt exactly as /tokenize encodes the same messages.
    st, _, body = tiny.request("POST", "/tokenize", {"messages": MSG})
    assert st == 200
    assert r.usage.prompt_tokens == json.loads(body)["count"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if r.usage.completion_tokens < 8:
        assert ch.finish_reason == "stop"
    else:
        assert ch.finish_reason in ("length", "stop")
    # The served name works as well as the alias.
    r2 = c.chat.completions.create(model=TINY, messages=MSG, max_tokens=8, temperature=0)
    assert r2.choices[0].message.content == ch.message.content  # greedy is deterministic


def test_chat_stream_matches_non_stream():
    c = client(tiny)
    full = c.chat.completions.create(model="default", messages=MSG, max_tokens=12, temperature=0)
    chunks = list(c.chat.completions.create(model="default", messages=MSG, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert all(ch.id == chunks[0].id for ch in chunks)
    # Without include_usage no chunk carries usage.
    chunks = list(c.chat.completions.create(model="default", messages=MSG, max_tokens=4, stream=True))
    assert all(ch.usage is None for ch in chunks)


def test_completions_stream_and_not():
    c = client(tiny)
    r = c.completions.create(model="default", prompt="Once upon a time", max_tokens=10, temperature=0)
    assert r.object == "text_completion"
    assert r.usage.completion_tokens >= 1
    chunks = list(c.completions.create(model="default", prompt="Once upon a time", max_tokens=10,
                                       temperature=0, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == r.choices[0].text
    # A token-id prompt gives the same result as the text it encodes.
    st, _, body = tiny.request("POST", "/tokenize", {"prompt": "Once upon a time"})
    ids = json.loads(body)["tokens"]
    r2 = c.completions.create(model="default", prompt=ids, max_tokens=10, temperature=0)
    assert r2.choices[0].text == r.choices[0].text
    assert r2.usage.prompt_tokens == len(ids) == r.usage.prompt_tokens


def test_n_choices():
    c = client(tiny)
    r = c.chat.completions.create(model="default", messages=MSG, max_tokens=6, n=3, seed=7)
    assert sorted(ch.index for ch in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == sum(1 for _ in range(0)) or r.usage.completion_tokens >= 3
    texts = {}
    for ch in c.chat.completions.create(model="default", messages=MSG, max_tokens=6, n=2, seed=7, stream=True):
        for choice in ch.choices:
            texts.setdefault(choice.index, "")
            texts[choice.index] += choice.delta.content or ""
    assert sorted(texts) == [0, 1]
    rc = c.completions.create(model="default", prompt="Hello", max_tokens=5, n=2)
    assert sorted(ch.index for ch in rc.choices) == [0, 1]


def test_seed_reproducible():
    c = client(tiny)
    kw = dict(model="default", messages=MSG, max_tokens=16, temperature=1.0)
    a = c.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = c.chat.completions.create(seed=1234, **kw).choices[0].message.content
    assert a == b
    others = {c.chat.completions.create(seed=s, **kw).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "different seeds never changed the sample"


def test_logprobs():
    c = client(tiny)
    r = c.chat.completions.create(model="default", messages=MSG, max_tokens=6, temperature=0,
                                  logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for e in content:
        assert e.logprob <= 0
        assert len(e.top_logprobs) == 3
        tops = [t.logprob for t in e.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert abs(e.logprob - tops[0]) < 1e-4 and e.token == e.top_logprobs[0].token
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token or "\ufffd" in e.token
    # Streaming carries the same entries chunk by chunk.
    chunks = c.chat.completions.create(model="default", messages=MSG, max_tokens=6, temperature=0,
                                       logprobs=True, top_logprobs=3, stream=True)
    streamed = [e for ch in chunks if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in content]
    # Completions: OpenAI's legacy shape.
    rc = c.completions.create(model="default", prompt="Hello", max_tokens=4, temperature=0, logprobs=2)
    lp = rc.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == rc.usage.completion_tokens
    assert all(len(t) <= 2 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0


def test_errors_map_to_sdk_exceptions():
    c = client(tiny)
    cases = [
        (openai.BadRequestError, dict(messages=[], max_tokens=4)),
        (openai.BadRequestError, dict(messages=MSG, temperature=5)),
        (openai.BadRequestError, dict(messages=[{"role": "wizard", "content": "x"}])),
        (openai.BadRequestError, dict(messages=MSG, max_tokens=10**7)),
        (openai.NotFoundError, dict(messages=MSG, model="no-such-model")),
    ]
    for exc, kw in cases:
        kw.setdefault("model", "default")
        try:
            c.chat.completions.create(**kw)
        except exc as e:
            assert e.body and "message" in e.body, e.body
        else:
            raise AssertionError(f"{kw} did not raise {exc.__name__}")
    try:
        c.embeddings.create(model="default", input="")
    except openai.BadRequestError as e:
        assert e.body and "message" in e.body, e.body
    else:
        raise AssertionError("empty embeddings input did not raise BadRequestError")
    # A context overflow names the limit.
    try:
        c.completions.create(model="default", prompt="word " * 5000, max_tokens=4)
    except openai.BadRequestError as e:
        assert "context" in str(e)
    else:
        raise AssertionError("over-long prompt accepted")


def test_models_and_tokenize():
    c = client(tiny)
    models = c.models.list()
    assert [m.id for m in models.data] == [TINY]
    assert c.models.retrieve(TINY).id == TINY
    st, _, body = tiny.request("POST", "/tokenize", {"prompt": "Hello, world!"})
    ids = json.loads(body)["tokens"]
    st, _, body = tiny.request("POST", "/detokenize", {"tokens": ids})
    assert st == 200 and json.loads(body)["prompt"].endswith("Hello, world!")
    st, _, body = tiny.request("POST", "/detokenize", {"tokens": [10**8]})
    assert st == 400 and "error" in json.loads(body)


def test_keys_and_rate_limits():
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    keys.write("# test keys\nsk-test-1\nsk-limited rpm=2\n")
    keys.close()
    try:
        with Server(TINY, ["--api-keys", keys.name]) as srv:
            ok = client(srv, "sk-test-1")
            assert ok.chat.completions.create(model="default", messages=MSG, max_tokens=2).choices
            for bad in ("wrong", "sk-test-", "sk-test-1x"):
                try:
                    client(srv, bad).chat.completions.create(model="default", messages=MSG, max_tokens=2)
                except openai.AuthenticationError as e:
                    assert e.status_code == 401
                else:
                    raise AssertionError(f"key {bad!r} accepted")
            st, _, _ = srv.request("GET", "/v1/models")
            assert st == 401
            st, _, _ = srv.request("GET", "/health")
            assert st == 200  # probes need no key
            lim = client(srv, "sk-limited")
            lim.chat.completions.create(model="default", messages=MSG, max_tokens=2)
            lim.chat.completions.create(model="default", messages=MSG, max_tokens=2)
            try:
                lim.chat.completions.create(model="default", messages=MSG, max_tokens=2)
            except openai.RateLimitError as e:
                assert int(e.response.headers["retry-after"]) >= 1
            else:
                raise AssertionError("third request within a minute was not limited")
            # Another key is not affected.
            assert ok.chat.completions.create(model="default", messages=MSG, max_tokens=2).choices
            # The Anthropic SDK sends x-api-key.
            ac = anthropic.Anthropic(base_url=srv.url, api_key="sk-test-1", max_retries=0)
            assert ac.messages.create(model="default", max_tokens=2, messages=MSG).content
            try:
                anthropic.Anthropic(base_url=srv.url, api_key="nope", max_retries=0).messages.create(
                    model="default", max_tokens=2, messages=MSG)
            except anthropic.AuthenticationError:
                pass
            else:
                raise AssertionError("anthropic: bad key accepted")
    finally:
        os.unlink(keys.name)


def test_anthropic_sdk():
    ac = anthropic.Anthropic(base_url=tiny.url, api_key="none", max_retries=0)
    m = ac.messages.create(model="default", max_tokens=10, system="Be brief.", messages=MSG,
                           extra_body={"top_k": 1})
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text"
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert 1 <= m.usage.output_tokens <= 10 and m.usage.input_tokens > 0
    with ac.messages.stream(model="default", max_tokens=10, system="Be brief.", messages=MSG,
                           extra_body={"top_k": 1}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == m.content[0].text
    assert final.stop_reason == m.stop_reason and final.usage.output_tokens == m.usage.output_tokens
    events = [e.type for e in ac.messages.create(model="default", max_tokens=3, messages=MSG, stream=True)]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "message_delta" in events
    for exc, kw in [(anthropic.BadRequestError, dict(max_tokens=0)),
                    (anthropic.NotFoundError, dict(model="nope", max_tokens=3))]:
        kw.setdefault("model", "default")
        try:
            ac.messages.create(messages=MSG, **kw)
        except exc as e:
            assert e.body["type"] == "error"
        else:
            raise AssertionError(f"{kw} accepted")


def test_content_default_model():
    c = client(smol)
    r = c.chat.completions.create(model="default", messages=MSG, max_tokens=16, temperature=0)
    answer = r.choices[0].message.content
    assert "Paris" in answer, answer
    # Stop: cut the greedy completion at a word in its middle.
    prompt = "The three primary colors are"
    base = c.completions.create(model="default", prompt=prompt, max_tokens=24, temperature=0).choices[0].text
    words = base.split()
    assert len(words) >= 4, base
    stop = " " + words[len(words) // 2]
    at = base.find(stop)
    assert at > 0
    r = c.completions.create(model="default", prompt=prompt, max_tokens=24, temperature=0, stop=[stop])
    assert r.choices[0].text == base[:at], (r.choices[0].text, base[:at])
    assert r.choices[0].finish_reason == "stop"
    # Streaming stops at the same place.
    s = c.completions.create(model="default", prompt=prompt, max_tokens=24, temperature=0, stop=stop, stream=True)
    assert "".join(ch.choices[0].text for ch in s if ch.choices) == base[:at]
    ac = anthropic.Anthropic(base_url=smol.url, api_key="none", max_retries=0)
    m = ac.messages.create(model="default", max_tokens=16, messages=MSG, extra_body={"top_k": 1})
    assert "Paris" in m.content[0].text


def readme_block(lang, marker):
    """The first ```lang block of README.md that contains marker, with the README's port replaced."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for block in re.findall(r"```" + lang + r"\n(.*?)```", text, re.S):
        if marker in block:
            return block.replace("http://127.0.0.1:8080", smol.url)
    raise AssertionError(f"README has no {lang} block with {marker!r}")


def test_readme_examples():
    """The curl and Python examples of the README, run verbatim apart from the port."""
    out = subprocess.run(["sh", "-c", readme_block("sh", "curl -s")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Paris" in json.loads(out.stdout)["choices"][0]["message"]["content"], out.stdout
    out = subprocess.run([sys.executable, "-c", readme_block("python", "from openai import OpenAI")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout, out.stdout


def main():
    global tiny, smol
    tests = [test_chat_basic, test_chat_stream_matches_non_stream, test_completions_stream_and_not,
             test_n_choices, test_seed_reproducible, test_logprobs, test_errors_map_to_sdk_exceptions,
             test_models_and_tokenize, test_anthropic_sdk, test_keys_and_rate_limits]
    content = [test_content_default_model, test_readme_examples]
    with Server(TINY, ["--ctx", "1024"]) as tiny_srv:
        tiny = tiny_srv
        if os.path.exists(DEFAULT_MODEL):
            with Server(DEFAULT_MODEL) as smol_srv:
                smol = smol_srv
                run_tests_no_exit(tests + content)
        else:
            print("note: default model missing; content checks skipped (sh tools/fetch_model.sh models)")
            run_tests_no_exit(tests)
    # One JSON access-log line per request, with the documented fields.
    lines = [json.loads(l) for l in tiny.stdout_text.splitlines() if l.startswith("{")]
    assert lines, "no access log"
    for k in ("ts", "id", "model", "status", "prompt_tokens", "completion_tokens", "queue_ms", "ttft_ms", "total_ms"):
        assert k in lines[0], k
    assert any(l["status"] == 200 and l["completion_tokens"] > 0 and l["ttft_ms"] is not None for l in lines)
    assert any(l["status"] == 400 for l in lines) and any(l["status"] == 404 for l in lines)
    print("access log ok")
    sys.exit(1 if FAILED else 0)


FAILED = []


def run_tests_no_exit(tests):
    import io
    try:
        run_tests(tests)
    except SystemExit as e:
        if e.code:
            FAILED.append(e.code)


if __name__ == "__main__":
    main()
