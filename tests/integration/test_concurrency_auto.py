"""`concurrency: auto` against capacity-model servers on loopback: a server that serves B requests
at once and queues the rest (a vLLM-like queue: more concurrency only adds latency), and one that
answers 429 beyond B (an OpenAI-like rate limit). The client finds the knee by itself."""

from __future__ import annotations

import statistics
import threading
import time

from steper_bench.generation import StepRequest
from steper_bench.generation.openai_compat import OpenAIGenerator
from steper_bench.recipe import GeneratorConfig
from steper_bench.records import Question
from support.servers import Reply, fixed_text, scripted_server

Q = Question("q1", "hotpotqa", "Who?", ["x"], [])
B, D, N = 8, 0.05, 480  # the server's capacity, its time per request, requests sent


def _gen(url: str, **cfg) -> OpenAIGenerator:
    cfg = {"backend": "openai", "model": "m", "base_url": url, "timeout_s": 10, "max_retries": 6, **cfg}
    return OpenAIGenerator(GeneratorConfig(**cfg), None, max_new_tokens=8, backoff_base_s=0.01)


def _run(g: OpenAIGenerator) -> tuple[float, list]:
    t = time.perf_counter()
    out = g.generate([StepRequest(f"Q: question {i}?\nA:", Q, [], []) for i in range(N)])
    assert all(r.text == "ok." and not r.error for r in out), next(r.error for r in out if r.error)
    return N / (time.perf_counter() - t), out


def test_auto_finds_the_knee_of_a_queueing_server():
    queueing = scripted_server(fixed_text("ok.", delay_s=D), capacity=B, inline=True)
    with queueing as server, _gen(server, concurrency="auto", max_concurrency=64) as g:
        rate, out = _run(g)
        limit = g.endpoints()[0]["limit"]
        history = g.transport.endpoints[0].knee.history
    median = statistics.median(r.latency_s for r in out)
    # The knee is B plus what covers the round trip between answers (B is reached at about B + 1..B);
    # at the bound (64 in flight) the same throughput would cost 64 / B x d = 400 ms per request.
    assert rate >= 0.8 * B / D, (rate, history)
    assert B <= limit <= 3 * B, (limit, history)
    assert median <= 2.5 * D, (median, history)
    assert max(h[0] for h in history) <= 64


def test_auto_backs_off_on_429s():
    lock, state = threading.Lock(), {"busy": 0, "rejected": 0}

    def limited(req):  # B at once; beyond that, 429 with Retry-After (no queue)
        with lock:
            if state["busy"] >= B:
                state["rejected"] += 1
                return Reply(status=429, headers={"Retry-After": "0.05"}, json={"error": {"message": "slow down"}})
            state["busy"] += 1
        time.sleep(D)
        with lock:
            state["busy"] -= 1
        return Reply.text(req, "ok.")

    with scripted_server(limited) as server, _gen(server, concurrency="auto", max_concurrency=64) as g:
        rate, _ = _run(g)
        limit = g.endpoints()[0]["limit"]
        retries = g.stats["retries"]
    assert state["rejected"] <= 0.15 * N and retries == state["rejected"], (state, retries)
    assert limit <= 2 * B and rate >= 0.6 * B / D, (limit, rate)
