"""The OpenAI-compatible generator against a REAL `transformers serve` (tiny model) and against a
scripted loopback server for the faults a real server will not produce on demand."""

from __future__ import annotations

import threading
import time

import pytest
from support.servers import Reply, fixed_text, scripted_server, sequence, serve_transformers

from steper_bench.cache import RequestCache
from steper_bench.generation import GeneratorError, StepRequest, make_generator
from steper_bench.generation.openai_compat import OpenAIGenerator, public_url
from steper_bench.recipe import GeneratorConfig, RecipeError
from steper_bench.records import Question

Q = Question("q1", "hotpotqa", "Who?", ["x"], [])


def reqs(n: int, prefix: str = "Question: who wrote it?\nAnswer:") -> list[StepRequest]:
    return [StepRequest(prompt=f"{prefix} {i}", question=Q, context=[], previous=[]) for i in range(n)]


def gen(url: str, cache=None, **cfg) -> OpenAIGenerator:
    cfg = {"backend": "openai", "model": "m", "base_url": url, "timeout_s": 5, "max_retries": 3, **cfg}
    return OpenAIGenerator(GeneratorConfig(**cfg), cache, max_new_tokens=8, backoff_base_s=0.01)


# -- real transformers serve ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    with serve_transformers(tiny_model_dir) as url:
        yield url, str(tiny_model_dir)


@pytest.mark.slow
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_real_server_returns_text(served, api, tmp_path):
    url, model = served
    cfg = GeneratorConfig(backend="openai", model=model, base_url=url, api=api, timeout_s=60)
    g = make_generator(cfg, RequestCache(tmp_path / "c.sqlite"), max_new_tokens=8)
    try:
        out = g.generate(reqs(3))
    finally:
        g.close()
    assert all(r.text.strip() and not r.error and not r.cached and r.tokens > 0 for r in out)
    assert g.identity.base_url == url and g.identity.backend == "openai"
    assert g.stats == {"requests": 3, "calls": 3, "retries": 0, "errors": 0, "cache_hits": 0}


@pytest.mark.slow
def test_real_server_repeat_is_served_from_cache(served, tmp_path):
    url, model = served
    cache = RequestCache(tmp_path / "c.sqlite")
    cfg = GeneratorConfig(backend="openai", model=model, base_url=url, timeout_s=60)
    with make_generator(cfg, cache, max_new_tokens=8) as g1:
        first = g1.generate(reqs(2))
    with make_generator(cfg, cache, max_new_tokens=8) as g2:
        t = time.monotonic()
        again = g2.generate(reqs(2))
        elapsed = time.monotonic() - t
    assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)
    assert g2.stats["calls"] == 0 and g2.stats["cache_hits"] == 2 and elapsed < 0.1
    # A different sample index is a different request.
    with make_generator(cfg, cache, max_new_tokens=8) as g3:
        r = reqs(1)[0]
        r.sample_index = 1
        assert not g3.generate([r])[0].cached and g3.stats["calls"] == 1


# -- scripted faults --------------------------------------------------------------------------------


def test_cache_hit_never_reaches_the_server(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    with scripted_server(fixed_text("Paris.")) as server:
        with gen(server, cache) as g:
            g.generate(reqs(4))
        with gen(server, cache) as g:
            out = g.generate(reqs(4))
        assert server.count == 4 and all(r.cached and r.text == "Paris." for r in out)


def test_429_honours_retry_after():
    handler = sequence(lambda r: Reply(status=429, headers={"Retry-After": "1"}), fixed_text("ok."))
    with scripted_server(handler) as server, gen(server) as g:
        out = g.generate(reqs(1))
    waited = server.requests[1].time - server.requests[0].time
    assert out[0].text == "ok." and g.stats["retries"] == 1
    assert 0.95 <= waited < 1.6, waited


def test_500_then_success():
    handler = sequence(lambda r: Reply(status=500, json={"error": "boom"}), fixed_text("ok."))
    with scripted_server(handler) as server, gen(server) as g:
        out = g.generate(reqs(1))
    assert out[0].text == "ok." and not out[0].error and server.count == 2 and g.stats["retries"] == 1


def test_hang_times_out_and_is_retried():
    handler = sequence(lambda r: Reply(delay_s=30), fixed_text("ok."))
    with scripted_server(handler) as server, gen(server, timeout_s=0.5) as g:
        t = time.monotonic()
        out = g.generate(reqs(1))
        elapsed = time.monotonic() - t
    assert out[0].text == "ok." and server.count == 2 and 0.5 <= elapsed < 2.5


@pytest.mark.parametrize("fault", [
    Reply(raw=b'{"choices": [{"text": "tru'), Reply(drop=True), Reply(raw=b"<html>502 upstream</html>"),
    Reply(json={"object": "text_completion"}), Reply(json={"choices": []}), Reply(json={"choices": [{"text": 7}]}),
], ids=["truncated-json", "dropped-connection", "not-json", "no-choices", "empty-choices", "text-not-a-string"])
def test_broken_answer_is_retried(fault):
    with scripted_server(sequence(lambda r: fault, fixed_text("ok."))) as server, gen(server) as g:
        out = g.generate(reqs(1))
    assert out[0].text == "ok." and g.stats["retries"] == 1 and server.count == 2


def test_a_malformed_200_that_persists_fails_the_request_naming_the_endpoint():
    with scripted_server(lambda r: Reply(raw=b"<html>oops</html>")) as server, gen(server, max_retries=2) as g:
        out = g.generate(reqs(1))
    assert server.count == 3 and g.stats["retries"] == 2 and g.stats["errors"] == 1
    assert out[0].error == f"malformed response: not JSON: '<html>oops</html>' from {server.base_url} (after 3 attempts)"


def test_server_dies_and_comes_back():
    # Backoff 0.01 s doubling: 8 retries wait ~1.3-2.6 s in all, well past the 0.3 s outage.
    with scripted_server(fixed_text("ok.")) as server, gen(server, max_retries=8) as g:
        server.down_for(0.3)
        out = g.generate(reqs(2))
    assert [(r.text, r.error) for r in out] == [("ok.", "")] * 2 and g.stats["retries"] >= 2


def test_401_stops_with_url_and_model_but_never_the_key(monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("STEPER_TEST_KEY", secret)
    echo = {"error": {"message": f"Incorrect API key provided: {secret}", "type": "invalid_request_error"}}
    with scripted_server(lambda r: Reply(status=401, json=echo)) as server:
        with gen(server, api_key="${env:STEPER_TEST_KEY}", model="teacher-70b") as g:
            with pytest.raises(GeneratorError) as err:
                g.generate(reqs(3))
        assert server.requests[0].headers["authorization"] == f"Bearer {secret}"  # the key was used
    msg = str(err.value)
    assert server.base_url in msg and "teacher-70b" in msg and "401" in msg
    assert secret not in msg and server.count <= 3  # no retries


def test_missing_env_var_is_named():
    with pytest.raises(RecipeError, match="STEPER_NOT_SET"):
        gen("${env:STEPER_NOT_SET}")


def test_empty_text_is_a_recorded_failure(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    with scripted_server(fixed_text("")) as server, gen(server, cache, max_retries=2) as g:
        out = g.generate(reqs(1))
        key = g._cache_key(reqs(1)[0])
    assert out[0].text == "" and "empty completion" in out[0].error and server.count == 3
    assert cache.get(key) is None and "empty completion" in cache.failure(key)
    assert g.stats["errors"] == 1 and cache.stats()["failures"] == 1


def test_400_is_not_retried():
    with scripted_server(lambda r: Reply(status=400, json={"error": {"message": "prompt too long"}})) as server:
        with gen(server) as g:
            out = g.generate(reqs(1))
    assert server.count == 1 and "400" in out[0].error and "prompt too long" in out[0].error


def test_concurrency_is_bounded():
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def handler(req):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return Reply.text(req, "ok.")

    with scripted_server(handler) as server, gen(server, concurrency=4) as g:
        out = g.generate(reqs(12))
    assert all(r.text == "ok." for r in out) and state["max"] == 4


def test_chat_sends_one_user_message_and_stop():
    with scripted_server(fixed_text('{"score": 1}')) as server, gen(server, api="chat", temperature=0.7, seed=3) as g:
        out = g.generate(reqs(1, "Judge this"))
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/chat/completions" and out[0].text == '{"score": 1}'
    assert body["messages"] == [{"role": "user", "content": "Judge this 0"}]
    assert body["stop"] == ["\n"] and body["temperature"] == 0.7 and body["seed"] == 3 and body["max_tokens"] == 8


def test_identity_url_has_no_credentials():
    assert public_url("http://user:pw@127.0.0.1:8000/v1/?api-key=abc") == "http://127.0.0.1:8000/v1"
