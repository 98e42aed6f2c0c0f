"""Benchmark: how close the OpenAI-compatible generator gets to ideal concurrency.

A scripted loopback server answers every request after a fixed delay d. N questions x S steps
at concurrency C (one `generate` call of N requests per step, as the multi-step loop sends them)
should take about N*S*d/C. Run with `pytest -m perf tests/perf/test_concurrency_perf.py -s`.

The tight bound uses d = 200 ms (a short LLM step; real ones take seconds). At d = 50 ms the
stdlib test server itself (2-4 ms of CPU per request in Python, sharing 2 cores with the client)
becomes the bottleneck, so that figure only gets a loose bound (4x the ideal).
"""

from __future__ import annotations

import time

import pytest
from support.servers import fixed_text, scripted_server

from steper_bench.generation import StepRequest
from steper_bench.generation.openai_compat import OpenAIGenerator
from steper_bench.recipe import GeneratorConfig
from steper_bench.records import Question

pytestmark = pytest.mark.perf
N, S, C = 64, 5, 16
Q = Question("q", "hotpotqa", "?", ["a"], [])


def _steps(g: OpenAIGenerator, n: int, s: int, tag: str) -> float:
    t = time.perf_counter()
    for step in range(s):  # distinct prompts: no cache involved anyway (cache=None)
        out = g.generate([StepRequest(f"{tag} q{i} step{step}", Q, [], []) for i in range(n)])
        assert all(r.text and not r.error for r in out), [r.error for r in out if r.error][:3]
    return time.perf_counter() - t


def measure(d: float, repeats: int) -> tuple[float, list[float], float]:
    with scripted_server(fixed_text("A sentence.", delay_s=d)) as server:
        cfg = dict(backend="openai", model="m", base_url=server, timeout_s=10, max_retries=0)
        with OpenAIGenerator(GeneratorConfig(**cfg, concurrency=C), None, max_new_tokens=16) as g:
            _steps(g, C, 1, "warm")  # open the connections
            runs = [_steps(g, N, S, f"run{r}") for r in range(repeats)]
        with OpenAIGenerator(GeneratorConfig(**cfg, concurrency=1), None, max_new_tokens=16) as g1:
            n1 = 16  # one at a time on a subset, scaled to N*S
            serial = _steps(g1, n1, 1, "serial") * (N * S / n1)
    ideal = N * S * d / C
    print(f"\n{N} questions x {S} steps, d={d * 1000:.0f} ms, C={C}: ideal {ideal:.2f}s, measured "
          f"{', '.join(f'{r:.2f}' for r in runs)}s (best {min(runs) / ideal:.2f}x ideal, goal <= 1.25x); "
          f"one at a time {serial:.1f}s (scaled from {n1}) -> speed-up {serial / min(runs):.1f}x (goal >= 10x)")
    return ideal, runs, serial


def test_generator_concurrency_efficiency():
    # At 50 ms the test server's CPU bounds it (1.53x the ideal on the dev machine, 2.6x under a
    # load of 7 on 2 cores): a loose bound that still fails if requests go out one at a time (16x).
    ideal50, runs50, _ = measure(0.05, 2)
    assert min(runs50) <= 4.0 * ideal50
    ideal, runs, serial = measure(0.2, 2)
    assert min(runs) <= 1.25 * ideal
    assert serial / min(runs) >= 10


def _teacher(questions, steps: int, d: float):
    """Answers every question after exactly `steps` sentences, each after the delay d."""
    from support.servers import Reply

    gold = {q.question.strip(): q.answer for q in questions}

    def handle(req):
        prompt = req.body["prompt"]
        question = prompt.rsplit("\nQ: ", 1)[1].split("\nA:", 1)[0].strip()
        done = prompt.rsplit("\nA:", 1)[1].count(". ") + prompt.rstrip().endswith(".")
        if done + 1 >= steps:
            return Reply.text(req, f" So the answer is: {gold[question]}.", delay_s=d)
        return Reply.text(req, f" Fact number {done + 1} is about the question.", delay_s=d)

    return handle


def test_loop_concurrency_efficiency():
    """The whole loop (BM25 retrieval, prompt rendering, one generation batch per step) over N
    questions x S steps against a teacher with a fixed delay: at most 1.25x N*S*d/C."""
    from pathlib import Path

    from steper_bench.reasoning.loop import LoopSettings, run_loop
    from steper_bench.retrieval.bm25 import BM25Retriever
    from steper_bench.retrieval.corpus import build_corpus
    from steper_bench.sources import load_file

    data = Path(__file__).resolve().parents[2] / "data" / "hotpotqa"
    qs = load_file("hotpotqa", data / "train.jsonl", split="train").questions[:N]
    retriever = BM25Retriever(build_corpus(qs, "pooled"))
    d = 0.2
    with scripted_server(_teacher(qs, S, d)) as server:
        cfg = GeneratorConfig(backend="openai", model="m", base_url=server, timeout_s=10, max_retries=0, concurrency=C)
        with OpenAIGenerator(cfg, None, max_new_tokens=32) as g:
            t = time.perf_counter()
            trajs = run_loop(qs, retriever, g, LoopSettings(max_steps=S), progress=False)
            took = time.perf_counter() - t
    assert all(t.stop_reason == "answered" and len(t.steps) == S for t in trajs), {t.stop_reason for t in trajs}
    ideal = len(qs) * S * d / C
    print(f"\nloop: {len(qs)} questions x {S} steps, d={d * 1000:.0f} ms, C={C}: ideal {ideal:.2f}s, "
          f"measured {took:.2f}s ({took / ideal:.2f}x ideal, goal <= 1.25x)")
    assert took <= 1.25 * ideal
